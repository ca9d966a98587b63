"""FASTQ reads over any codec (plain, gzip, BGZF, zstd, bzip2), sliced only at read starts (line numbers that are
multiples of 4). ``FASTQGZip`` is the original Dataplug's name for the same format.

Preprocessing checks the four-line structure of every read (``@`` header, sequence, ``+`` separator,
quality as long as the sequence) in the same map over the logical stream that builds the line index
(:class:`FastqScanner`), and counts the reads; a malformed read is an
:class:`~dataplug.errors.InvalidFormatError` naming its line (1-based).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import pyarrow as pa

from dataplug.errors import CorruptIndexError, InvalidFormatError
from dataplug.format import Detection, IndexData, PreprocessContext, Sample
from dataplug.framings.base import StreamAttributes, StreamFormat, codec_attributes, cut_offsets
from dataplug.framings.lines import DEFAULT_SAMPLE_BYTES, SAMPLE_BYTES_OPTION, Dialect, LineIndex, LineRangeSlice, RangeScan, check_text, line_slices, reduce_scans, scan_buffer, split_lines
from dataplug.strategies import positive_int, step_bounds, strategy

AT, PLUS, NEWLINE, CR = ord("@"), ord("+"), 10, 13


@dataclass
class FastqRangeScan:
    """Map result: the line scan, and for each phase (the line number modulo 4 of the range's first line)
    the first malformed line among the reads whose header starts in the range, as (local line, cause)."""

    lines: RangeScan
    bad: list[tuple[int, str] | None]


@dataclass(frozen=True)
class FastqScanner:
    """Line starts of one range, and the reads that start there checked for every phase (the range does
    not know which line number it starts at; the reduce picks the phase). Look-ahead: the next four lines,
    enough to complete the last read that starts in the range."""

    url: str
    sample_bytes: int

    def enough(self, after: np.ndarray) -> bool:
        return _newlines(after, 4).size == 4

    def __call__(self, full: np.ndarray, first: int, start: int, end: int, eof: bool) -> FastqRangeScan:
        arr = full[first : first + end - start]
        check_text(self.url, arr, start)
        nl = np.flatnonzero(arr == NEWLINE)
        lines = scan_buffer(full, first, start, end, eof, Dialect(), self.sample_bytes, 0, breaks=nl)
        ahead = _newlines(full[first + arr.size :], 4)
        if ahead.size == 4:  # only the look-ahead the reads need: a sequential pass may hold far more
            full, eof = full[: first + arr.size + int(ahead[-1]) + 1], False
        lo = start - first  # logical offset of full[0]
        hi = lo + full.size
        own = nl + start + 1
        if eof:
            own = own[own < hi]  # the stream's final newline starts no line
        if start == 0 and end > 0:
            own = np.concatenate(([0], own))
        if not own.size:
            return FastqRangeScan(lines, [None] * 4)
        newlines = np.concatenate((nl + start, ahead + end))
        later = newlines[newlines >= own[0]]
        starts = np.concatenate((own[:1], later[later + 1 < hi] + 1))
        ends = later[: starts.size]
        if ends.size < starts.size:  # the last line has no newline: it ends with the stream
            ends = np.append(ends, hi)
        return FastqRangeScan(lines, _check_phases(full, lo, starts, ends, own.size, eof))


def _newlines(after: np.ndarray, n: int) -> np.ndarray:
    """Positions of the first ``n`` newlines of ``after`` (fewer when it has fewer)."""
    found = np.flatnonzero(after[: 1 << 16] == NEWLINE)
    if found.size < n and after.size > 1 << 16:
        found = np.flatnonzero(after == NEWLINE)
    return found[:n]


def _check_phases(full: np.ndarray, base: int, starts: np.ndarray, ends: np.ndarray, own: int, eof: bool) -> list[tuple[int, str] | None]:
    """For each phase, the first bad line among the reads whose header is one of the first ``own`` lines.

    ``starts``/``ends`` are logical positions of consecutive lines (``ends`` at their ``\\n`` or the stream
    end), enough of them to complete every such read unless the stream ends first; ``full[i]`` is logical
    byte ``base + i``. The three checks run once over every line as a would-be header, on contiguous
    arrays, and each phase looks at every fourth result, rather than each phase gathering its own lines by
    fancy indexing (four gathers of scattered lines instead of one pass).
    """
    lengths = ends - starts
    lengths -= (lengths > 0) & (full[np.maximum(ends - 1 - base, 0)] == CR)
    first_char = np.where(lengths > 0, full[np.minimum(starts - base, full.size - 1)], 0)
    complete = max(min(starts.size - 3, own), 0)  # lines 0 .. complete - 1 head a read that is all there
    problems = (
        (0, "header line does not start with '@'", first_char[:complete] != AT),
        (2, "separator line does not start with '+'", first_char[2 : complete + 2] != PLUS),
        (3, "quality line is not as long as the sequence line", lengths[1 : complete + 1] != lengths[3 : complete + 3]),
    )
    bad = problems[0][2] | problems[1][2] | problems[2][2]
    out: list[tuple[int, str] | None] = []
    for phase in range(4):
        first = (4 - phase) % 4
        found: tuple[int, str] | None = None
        mine = bad[first::4]
        if mine.any():
            header = first + 4 * int(np.argmax(mine))
            offset, cause = next((offset, cause) for offset, cause, flags in problems if flags[header])
            found = (header + offset, cause)
        elif eof and len(range(first, own, 4)) > len(range(first, complete, 4)):
            found = (starts.size - 1, "truncated FASTQ: the object ends inside a read")
        out.append(found)
    return out


@dataclass(frozen=True)
class FASTQAttributes(StreamAttributes):
    lines: int
    reads: int
    sample_bytes: int


class FASTQ(StreamFormat):
    """FASTQ, plain or compressed (gzip, BGZF, zstd, bzip2). Options: ``sample_bytes`` (line index density),
    ``compression``, ``spacing`` (gzip checkpoint spacing)."""

    Attributes = FASTQAttributes
    options = SAMPLE_BYTES_OPTION

    sniff_priority = 15

    @classmethod
    def sniff(cls, sample: Sample) -> Detection | None:
        """Records of four lines: an ``@`` name, the bases, a ``+`` separator, as many qualities as bases."""
        lines = sample.lines()
        records = [lines[i : i + 4] for i in range(0, len(lines) - len(lines) % 4, 4)] or [lines[:4]]
        if lines and all(len(r) == 4 and r[0].startswith("@") and r[2].startswith("+") and len(r[1]) == len(r[3]) for r in records):
            return cls.detected(sample, "records of four lines, '@' name and '+' separator", ("UTF8Text",))
        return None

    @classmethod
    def preprocess(cls, ctx: PreprocessContext) -> IndexData:
        url = ctx.obj.url
        sample_bytes = int(ctx.options.get("sample_bytes", DEFAULT_SAMPLE_BYTES))
        scans, codec_index = cls.scan_stream(ctx, FastqScanner(url, sample_bytes))
        index = reduce_scans(url, [s.lines for s in scans], 0, codec_index.logical_size)
        before = 1  # lines before a range's first own line: line 0 starts the stream, the rest follow newlines
        for scan in scans:
            first = 0 if scan.lines.start == 0 else before
            bad = scan.bad[first % 4]
            if bad is not None:
                raise InvalidFormatError(url, f"malformed FASTQ record: {bad[1]}", line=first + bad[0] + 1)
            before += scan.lines.states[0].count
        if index.total % 4:
            raise InvalidFormatError(url, "truncated FASTQ: the object ends inside a read", line=index.total)
        attributes = cls.Attributes(**codec_attributes(ctx.info.size, codec_index), lines=index.total, reads=index.total // 4, sample_bytes=sample_bytes)
        return IndexData(attributes, tables={**codec_index.tables, **index.tables()}, blobs=codec_index.blobs)

    @classmethod
    def validate_records(cls, url: str, attributes: Any, tables: dict, logical_size: int) -> None:
        index = LineIndex.from_tables(url, tables, logical_size)
        if attributes.lines != index.total or attributes.reads * 4 != index.total:
            raise CorruptIndexError(url, "FASTQ attributes disagree with the line index")


class FASTQGZip(FASTQ):
    """FASTQ compressed with gzip (one or many members, BGZF included): ``FASTQ`` by the original's name."""


@dataclass
class FASTQSlice(LineRangeSlice):
    """Reads ``[first // 4, stop // 4)`` of a FASTQ object."""

    @property
    def num_reads(self) -> int:
        return (self.stop - self.first) // 4

    @property
    def num_records(self) -> int:
        """Reads in the slice (each of four lines)."""
        return self.num_reads

    def lines(self) -> list[str]:
        """The slice's lines without their ``\\n`` (or ``\\r\\n``)."""
        return split_lines(self.text())

    def get(self) -> list[str]:
        """The slice's lines (four per read), as the original Dataplug returned them."""
        return self.lines()

    def reads(self) -> Iterator[tuple[str, str, str]]:
        """``(name, sequence, quality)`` for each read; the name is the header without ``@``."""
        lines = self.lines()
        for i in range(0, len(lines), 4):
            yield lines[i][1:], lines[i + 1], lines[i + 3]

    def schema(self) -> pa.Schema:
        return pa.schema([("name", pa.string()), ("sequence", pa.string()), ("quality", pa.string())])

    def to_arrow(self, columns: list[str] | None = None) -> pa.Table:
        """A table with columns ``name``, ``sequence`` and ``quality``."""
        lines = self.lines()
        table = pa.table(
            {
                "name": pa.array([h[1:] for h in lines[0::4]], pa.string()),
                "sequence": pa.array(lines[1::4], pa.string()),
                "quality": pa.array(lines[3::4], pa.string()),
            }
        )
        return table if columns is None else table.select(columns)

    as_arrow = to_arrow


#: The original Dataplug's name of the slice class of FASTQ.gz objects.
FASTQGZipSlice = FASTQSlice


def _line_index(co: Any) -> LineIndex:
    return LineIndex.from_tables(co.url, co.index().tables, co.attributes.uncompressed_size)


@strategy(FASTQ)
def partition_reads_batches(co: Any, num_batches: int) -> list[FASTQSlice]:
    """``num_batches`` slices of about equal size, cut at read starts (for FASTQ.gz, at the first read after
    a checkpoint where there are enough checkpoints, so that workers decode almost nothing twice)."""
    return _batches(co, "num_batches", num_batches)


@strategy(FASTQ)
def partition_num_chunks(co: Any, num_chunks: int) -> list[FASTQSlice]:
    """The contract's name of :func:`partition_reads_batches`: ``num_chunks`` slices of whole reads."""
    return _batches(co, "num_chunks", num_chunks)


def _batches(co: Any, name: str, value: int) -> list[FASTQSlice]:
    n = positive_int(co.url, name, value)
    index = _line_index(co)
    return line_slices(co, FASTQSlice, index, index.bounds_by_bytes(n, cuts=cut_offsets(co), align=4), Dialect())


@strategy(FASTQ)
def partition_sequences_per_chunk(co: Any, seq_per_chunk: int) -> list[FASTQSlice]:
    """Slices of exactly ``seq_per_chunk`` reads (the last one shorter)."""
    step = positive_int(co.url, "seq_per_chunk", seq_per_chunk)
    return line_slices(co, FASTQSlice, _line_index(co), step_bounds(co.attributes.reads, step) * 4, Dialect())
