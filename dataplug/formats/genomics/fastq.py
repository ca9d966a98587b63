"""FASTQ reads, gzip-compressed (``FASTQGZip``) or plain (``FASTQ``), sliced only at read starts (line
numbers that are multiples of 4).

Preprocessing checks the four-line structure of every read (``@`` header, sequence, ``+`` separator,
quality as long as the sequence) and counts the reads; a malformed read is an
:class:`~dataplug.errors.InvalidFormatError` naming its line (1-based). For FASTQ.gz the check rides on
the gzip checkpoint pass of :mod:`dataplug.formats.compressed.gzipped`; for plain FASTQ on the map over
byte ranges that builds the line index of :mod:`dataplug.lineindex`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import pyarrow as pa

from dataplug.errors import CorruptIndexError, InvalidFormatError
from dataplug.format import DataFormat, IndexData, PreprocessContext
from dataplug.lineindex import DEFAULT_SAMPLE_BYTES, Dialect, LineIndex, LineRangeSlice, line_slices, map_ranges, reduce_scans, scan_buffer, split_lines
from dataplug.storage import StorageObject
from dataplug.formats.compressed.gzipped import (
    GZipText,
    GZipTextAttributes,
    GzipLinesSlice,
    gzip_line_slices,
    loaded_gzip_index,
    snapped_bounds,
)
from dataplug.strategies import positive_int, step_bounds, strategy

AT, PLUS, NEWLINE, CR = ord("@"), ord("+"), 10, 13


class FastqValidator:
    """Checks FASTQ records in a stream of chunks, carrying the incomplete last record to the next chunk."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.carry = b""
        self.lines = 0  # lines checked so far
        self.reads = 0

    def feed(self, chunk: memoryview | bytes) -> None:
        data = self.carry + chunk
        arr = np.frombuffer(data, dtype=np.uint8)
        ends = np.flatnonzero(arr == NEWLINE)
        complete = ends.size // 4 * 4
        if complete:
            self._check(arr, ends[:complete])
            self.carry = data[int(ends[complete - 1]) + 1 :]
        else:
            self.carry = data

    def finish(self) -> int:
        """Check what is left (a last read without a trailing newline) and return the number of reads."""
        if self.carry:
            data = self.carry + b"\n"
            arr = np.frombuffer(data, dtype=np.uint8)
            ends = np.flatnonzero(arr == NEWLINE)
            if ends.size != 4 or self.carry.endswith(b"\n"):
                last = self.lines + self.carry.count(b"\n") + (0 if self.carry.endswith(b"\n") else 1)
                raise InvalidFormatError(self.url, f"truncated FASTQ: the object ends inside read {self.reads + 1}, after line {last}", line=last)
            self._check(arr, ends)
            self.carry = b""
        return self.reads

    def _check(self, arr: np.ndarray, ends: np.ndarray) -> None:
        starts = np.concatenate(([0], ends[:-1] + 1))
        lengths = ends - starts
        lengths -= (lengths > 0) & (arr[np.maximum(ends - 1, 0)] == CR)
        problems = [
            (arr[starts[0::4]] != AT, 0, "header line does not start with '@'"),
            (arr[starts[2::4]] != PLUS, 2, "separator line does not start with '+'"),
            (lengths[1::4] != lengths[3::4], 3, "quality line is not as long as the sequence line"),
        ]
        first_bad = None
        for bad, line_in_read, cause in problems:
            if bad.any():
                read = int(np.argmax(bad))
                line = self.lines + 4 * read + line_in_read + 1
                if first_bad is None or line < first_bad[0]:
                    first_bad = (line, cause)
        if first_bad is not None:
            raise InvalidFormatError(self.url, f"malformed FASTQ record: {first_bad[1]}", line=first_bad[0])
        self.lines += ends.size
        self.reads += ends.size // 4


@dataclass(frozen=True)
class FASTQGZipAttributes(GZipTextAttributes):
    reads: int


class FASTQGZip(GZipText):
    """FASTQ compressed with gzip (one or many members, BGZF included). Options: ``spacing``."""

    Attributes = FASTQGZipAttributes

    @classmethod
    def record_checker(cls, url: str) -> tuple[Callable[[memoryview], None], Callable[[], dict[str, Any]]]:
        validator = FastqValidator(url)
        return validator.feed, lambda: {"reads": validator.finish()}


class FastqReads:
    """What every FASTQ slice offers; mixed into a slice class that provides ``text()``."""

    first: int
    stop: int
    text: Callable[[], str]

    @property
    def num_reads(self) -> int:
        return (self.stop - self.first) // 4

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

    def as_arrow(self) -> pa.Table:
        """A table with columns ``name``, ``sequence`` and ``quality``."""
        lines = self.lines()
        return pa.table(
            {
                "name": pa.array([h[1:] for h in lines[0::4]], pa.string()),
                "sequence": pa.array(lines[1::4], pa.string()),
                "quality": pa.array(lines[3::4], pa.string()),
            }
        )


@dataclass
class FASTQGZipSlice(FastqReads, GzipLinesSlice):
    """Reads ``[first // 4, stop // 4)`` of a FASTQ.gz object."""


# -- plain FASTQ ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FASTQAttributes:
    size: int
    lines: int
    reads: int
    sample_bytes: int


@dataclass
class _FastqRangeScan:
    """Map result for plain FASTQ: the line scan, and for each phase (the line number modulo 4 of the
    range's first line) the first malformed line found in the range, as (local line, cause)."""

    lines: Any
    bad: list[tuple[int, str] | None]


def _check_phases(full: np.ndarray, base: int, starts: np.ndarray, ends: np.ndarray, own: int) -> list[tuple[int, str] | None]:
    """For each phase, the first bad line among the reads whose header is one of the first ``own`` lines.

    ``starts``/``ends`` are absolute positions of consecutive lines (``ends`` at their ``\\n`` or the object
    end), enough of them to complete every such read unless the object ends first; ``full[i]`` is the
    object's byte ``base + i``.
    """
    lengths = ends - starts
    lengths -= (lengths > 0) & (full[np.maximum(ends - 1 - base, 0)] == CR)
    first_char = np.where(lengths > 0, full[np.minimum(starts - base, full.size - 1)], 0)
    out: list[tuple[int, str] | None] = []
    for phase in range(4):
        headers = np.arange((4 - phase) % 4, own, 4)
        complete = headers[headers + 3 < starts.size]
        found = _first_bad(first_char, lengths, complete)
        if found is None and complete.size < headers.size:
            found = (starts.size - 1, "truncated FASTQ: the object ends inside a read")
        out.append(found)
    return out


def _first_bad(first_char: np.ndarray, lengths: np.ndarray, headers: np.ndarray) -> tuple[int, str] | None:
    problems = [
        (first_char[headers] != AT, 0, "header line does not start with '@'"),
        (first_char[headers + 2] != PLUS, 2, "separator line does not start with '+'"),
        (lengths[headers + 1] != lengths[headers + 3], 3, "quality line is not as long as the sequence line"),
    ]
    found = [(int(headers[np.argmax(bad)]) + offset, cause) for bad, offset, cause in problems if bad.any()]
    return min(found) if found else None


def _scan_fastq(obj: StorageObject, size: int, sample_bytes: int, rng: tuple[int, int]) -> _FastqRangeScan:
    """Scan ``[start, end)`` for line starts and check the reads whose header starts there, reading on
    past ``end`` until the last of them is complete."""
    start, end = rng
    lo, extra = max(start - 1, 0), 64 * 1024
    while True:
        hi = min(end + extra, size)
        full = np.frombuffer(obj.read_range(lo, hi), dtype=np.uint8)
        newlines = np.flatnonzero(full == NEWLINE) + lo
        if hi == size or np.count_nonzero(newlines >= end) >= 4:
            break
        extra *= 4
    scan = scan_buffer(full[: min(end + 1, size) - lo], start - lo, start, end, size, Dialect(), sample_bytes, 0)
    own_starts = newlines[(newlines >= start) & (newlines < end) & (newlines + 1 < size)] + 1
    if start == 0 and size:
        own_starts = np.concatenate(([0], own_starts))
    if not own_starts.size:
        return _FastqRangeScan(scan, [None] * 4)
    later = newlines[newlines >= own_starts[0]]
    starts = np.concatenate((own_starts[:1], later[later + 1 < hi] + 1))
    ends = later[: starts.size]
    if ends.size < starts.size:  # the last line has no newline: it ends with the object
        ends = np.append(ends, size)
    return _FastqRangeScan(scan, _check_phases(full, lo, starts, ends, own_starts.size))


class FASTQ(DataFormat):
    """Plain (uncompressed) FASTQ. Options: ``sample_bytes`` (line index density)."""

    Attributes = FASTQAttributes

    @classmethod
    def preprocess(cls, ctx: PreprocessContext) -> IndexData:
        url, size = ctx.obj.url, ctx.info.size
        sample_bytes = int(ctx.options.get("sample_bytes", DEFAULT_SAMPLE_BYTES))
        scans = map_ranges(ctx, 0, _scan_fastq, ctx.obj, size, sample_bytes)
        index = reduce_scans(url, [s.lines for s in scans], 0, size)
        before = 1  # records before a range's first own line: record 0 starts the object, the rest follow newlines
        for scan in scans:
            first = 0 if scan.lines.start == 0 else before
            bad = scan.bad[first % 4]
            if bad is not None:
                raise InvalidFormatError(url, f"malformed FASTQ record: {bad[1]}", line=first + bad[0] + 1)
            before += scan.lines.states[0].count
        if index.total % 4:
            raise InvalidFormatError(url, "truncated FASTQ: the object ends inside a read", line=index.total)
        return IndexData(FASTQAttributes(size, index.total, index.total // 4, sample_bytes), tables=index.tables())

    @classmethod
    def validate_index(cls, url: str, attributes: Any, tables: dict, blob_sizes: dict[str, int], size: int) -> None:
        index = LineIndex.from_tables(url, tables, size)
        if attributes.lines != index.total or attributes.reads * 4 != index.total or attributes.size != size:
            raise CorruptIndexError(url, "FASTQ attributes disagree with the line index")


@dataclass
class FASTQSlice(FastqReads, LineRangeSlice):
    """Reads ``[first // 4, stop // 4)`` of a plain FASTQ object."""


def _line_index(co: Any) -> LineIndex:
    sidecar = co.index()
    return LineIndex.from_tables(co.url, sidecar.tables, sidecar.object_info.size)


# -- strategies of both ----------------------------------------------------------------------------------


@strategy(FASTQGZip, FASTQ)
def partition_reads_batches(co: Any, num_batches: int) -> list[FASTQGZipSlice] | list[FASTQSlice]:
    """``num_batches`` slices of about equal size, cut at read starts (for FASTQ.gz, at the first read after
    a checkpoint, so that workers decode almost nothing twice)."""
    n = positive_int(co.url, "num_batches", num_batches)
    if issubclass(co.format, FASTQGZip):
        return gzip_line_slices(co, FASTQGZipSlice, snapped_bounds(loaded_gzip_index(co), co.attributes.lines, n, align=4))
    index = _line_index(co)
    bounds = index.bounds_by_bytes(n) // 4 * 4
    bounds[-1] = index.total
    return line_slices(co, FASTQSlice, index, np.maximum.accumulate(bounds), Dialect())


@strategy(FASTQGZip, FASTQ)
def partition_sequences_per_chunk(co: Any, seq_per_chunk: int) -> list[FASTQGZipSlice] | list[FASTQSlice]:
    """Slices of exactly ``seq_per_chunk`` reads (the last one shorter)."""
    step = positive_int(co.url, "seq_per_chunk", seq_per_chunk)
    bounds = step_bounds(co.attributes.reads, step) * 4
    if issubclass(co.format, FASTQGZip):
        return gzip_line_slices(co, FASTQGZipSlice, bounds)
    return line_slices(co, FASTQSlice, _line_index(co), bounds, Dialect())
