"""UTF-8 text: slices of whole lines, from a sampled line-start index.

Slices cut only after a ``\\n``, so a multi-byte character or a word is never split.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dataplug.errors import CorruptIndexError
from dataplug.format import DataFormat, IndexData, PreprocessContext
from dataplug.lineindex import DEFAULT_SAMPLE_BYTES, UTF8_BOM, Dialect, LineIndex, LineRangeSlice, build_line_index, line_slices, split_lines
from dataplug.strategies import positive_int, step_bounds, strategy


@dataclass(frozen=True)
class TextAttributes:
    size: int
    #: Number of lines; a last line without a trailing newline counts.
    lines: int
    #: Byte offset of the first line (3 after a UTF-8 byte order mark, else 0).
    data_start: int
    sample_bytes: int


class UTF8Text(DataFormat):
    """Plain UTF-8 text, split into lines. Preprocessing options: ``sample_bytes`` (index density)."""

    Attributes = TextAttributes

    @classmethod
    def preprocess(cls, ctx: PreprocessContext) -> IndexData:
        size = ctx.info.size
        sample_bytes = int(ctx.options.get("sample_bytes", DEFAULT_SAMPLE_BYTES))
        data_start = len(UTF8_BOM) if ctx.obj.read_range(0, min(size, 3)) == UTF8_BOM else 0
        index = build_line_index(ctx, Dialect(), data_start, sample_bytes)
        attributes = TextAttributes(size=size, lines=index.total, data_start=data_start, sample_bytes=sample_bytes)
        return IndexData(attributes, tables=index.tables())

    @classmethod
    def validate_index(cls, url: str, attributes: Any, tables: dict, blob_sizes: dict[str, int], size: int) -> None:
        index = LineIndex.from_tables(url, tables, size)
        if attributes.lines != index.total or attributes.size != size:
            raise CorruptIndexError(url, "text attributes disagree with the line index")


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


def _index(co: Any) -> LineIndex:
    sidecar = co.index()
    return LineIndex.from_tables(co.url, sidecar.tables, sidecar.object_info.size)


@strategy(UTF8Text)
def partition_num_chunks(co: Any, num_chunks: int) -> list[TextSlice]:
    """``num_chunks`` slices of about equal bytes, cut at line starts."""
    n = positive_int(co.url, "num_chunks", num_chunks)
    index = _index(co)
    return line_slices(co, TextSlice, index, index.bounds_by_bytes(n), Dialect())


@strategy(UTF8Text)
def partition_chunk_lines(co: Any, lines_per_chunk: int) -> list[TextSlice]:
    """Slices of ``lines_per_chunk`` lines each (the last one shorter)."""
    step = positive_int(co.url, "lines_per_chunk", lines_per_chunk)
    index = _index(co)
    return line_slices(co, TextSlice, index, step_bounds(index.total, step), Dialect())


@strategy(UTF8Text)
def whole_words_strategy(co: Any, num_chunks: int) -> list[TextSlice]:
    """The original's word-safe split: ``num_chunks`` slices of about equal bytes that never cut a word
    (they cut at line starts, and a newline always separates words)."""
    return partition_num_chunks.__wrapped__(co, num_chunks)
