"""UTF-8 text: slices of whole lines, from a sampled line-start index, over any codec (plain, gzip, BGZF).

Slices cut only after a ``\\n``, so a multi-byte character or a word is never split.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from dataplug.errors import CorruptIndexError
from dataplug.format import Detection, IndexData, PreprocessContext, Sample
from dataplug.framings.base import StreamAttributes, StreamFormat, codec_attributes, cut_offsets
from dataplug.framings.lines import (
    DEFAULT_SAMPLE_BYTES,
    ENCODING_OPTION,
    SAMPLE_BYTES_OPTION,
    UTF8_BOM,
    Dialect,
    LineIndex,
    LineRangeSlice,
    build_line_index,
    line_slices,
    split_lines,
    text_encoding,
)
from dataplug.strategies import positive_int, step_bounds, strategy


@dataclass(frozen=True)
class TextAttributes(StreamAttributes):
    #: Number of lines; a last line without a trailing newline counts.
    lines: int
    #: Logical offset of the first line (3 after a UTF-8 byte order mark, else 0).
    data_start: int
    sample_bytes: int
    #: Python codec name of the text (checked over every byte in the index pass).
    encoding: str = "utf-8"


class UTF8Text(StreamFormat):
    """Text (UTF-8 unless ``encoding`` says otherwise), split into lines. Options: ``encoding``,
    ``sample_bytes`` (index density), ``compression``, ``spacing``."""

    Attributes = TextAttributes
    options = {**SAMPLE_BYTES_OPTION, **ENCODING_OPTION}

    sniff_priority = -100

    @classmethod
    def sniff(cls, sample: Sample) -> Detection | None:
        """Any text without NUL bytes: the fallback, asked last."""
        if b"\x00" in sample.decoded:
            return None
        lines = sample.lines()
        if not lines:
            return cls.detected(sample, "empty, or one unfinished line", ("CSV",))
        return cls.detected(sample, f"text with no consistent delimiter over {len(lines)} lines", ("CSV",))

    @classmethod
    def preprocess(cls, ctx: PreprocessContext) -> IndexData:
        sample_bytes = int(ctx.options.get("sample_bytes", DEFAULT_SAMPLE_BYTES))
        encoding = text_encoding(ctx.obj.url, ctx.options.get("encoding", "utf-8"))
        data_start = len(UTF8_BOM) if encoding == "utf-8" and cls.logical_head(ctx, 3) == UTF8_BOM else 0
        index, codec_index = build_line_index(cls, ctx, Dialect(encoding=encoding), data_start, sample_bytes)
        attributes = cls.Attributes(
            **codec_attributes(ctx.info.size, codec_index), lines=index.total, data_start=data_start, sample_bytes=sample_bytes, encoding=encoding
        )
        return IndexData(attributes, tables={**codec_index.tables, **index.tables()}, blobs=codec_index.blobs)

    @classmethod
    def validate_records(cls, url: str, attributes: Any, tables: dict, logical_size: int) -> None:
        index = LineIndex.from_tables(url, tables, logical_size)
        if attributes.lines != index.total:
            raise CorruptIndexError(url, "text attributes disagree with the line index")


class GZipText(UTF8Text):
    """The original Dataplug's gzip text format, kept by its name: :class:`UTF8Text` (the codec, gzip, BGZF or
    none, is detected from the bytes), with the same strategies."""


@dataclass
class TextSlice(LineRangeSlice):
    """Lines ``[first, stop)`` of a text object."""

    def get(self) -> str:
        """The slice's text, newlines included."""
        return self.text()

    def lines(self) -> list[str]:
        """The slice's lines without their ``\\n`` (or ``\\r\\n``)."""
        return split_lines(self.text())

    def words(self) -> list[str]:
        """The slice's whitespace-separated words."""
        return self.text().split()

    def schema(self) -> pa.Schema:
        return pa.schema([("line", pa.string())])

    def to_arrow(self, columns: list[str] | None = None) -> pa.Table:
        """A table with one column, ``line`` (without its line break)."""
        table = pa.table({"line": pa.array(self.lines(), pa.string())})
        return table if columns is None else table.select(columns)


def _index(co: Any) -> LineIndex:
    sidecar = co.index()
    return LineIndex.from_tables(co.url, sidecar.tables, co.attributes.uncompressed_size)


def _chunks(co: Any, num_chunks: int | None, n_chunks: int | None) -> int:
    value = num_chunks if num_chunks is not None else n_chunks
    return positive_int(co.url, "num_chunks", value)


@strategy(UTF8Text)
def partition_num_chunks(co: Any, num_chunks: int | None = None, *, n_chunks: int | None = None) -> list[TextSlice]:
    """``num_chunks`` slices of about equal decoded bytes, cut at line starts (for gzip, at the first line
    after a checkpoint where there are enough checkpoints). ``n_chunks`` is the original GZipText's name."""
    n = _chunks(co, num_chunks, n_chunks)
    index = _index(co)
    return line_slices(co, TextSlice, index, index.bounds_by_bytes(n, cuts=cut_offsets(co)), Dialect(encoding=co.attributes.encoding))


@strategy(UTF8Text)
def partition_chunk_lines(co: Any, lines_per_chunk: int) -> list[TextSlice]:
    """Slices of ``lines_per_chunk`` lines each (the last one shorter)."""
    step = positive_int(co.url, "lines_per_chunk", lines_per_chunk)
    index = _index(co)
    return line_slices(co, TextSlice, index, step_bounds(index.total, step), Dialect(encoding=co.attributes.encoding))


@strategy(UTF8Text)
def whole_words_strategy(co: Any, num_chunks: int) -> list[TextSlice]:
    """The original's word-safe split: ``num_chunks`` slices of about equal bytes that never cut a word
    (they cut at line starts, and a newline always separates words)."""
    return partition_num_chunks.__wrapped__(co, num_chunks)
