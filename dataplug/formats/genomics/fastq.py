"""FASTQ reads in gzip objects, sliced only at read starts (line numbers that are multiples of 4).

Preprocessing is the gzip checkpoint pass of :mod:`dataplug.formats.compressed.gzipped`, which also checks
the four-line structure of every read as the data streams by (``@`` header, sequence, ``+`` separator,
quality as long as the sequence) and counts the reads. A malformed read is an
:class:`~dataplug.errors.InvalidFormatError` naming its line (1-based).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import pyarrow as pa

from dataplug.errors import InvalidFormatError
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
        data = self.carry + bytes(chunk)
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


@dataclass
class FASTQGZipSlice(GzipLinesSlice):
    """Reads ``[first // 4, stop // 4)`` of a FASTQ.gz object."""

    @property
    def num_reads(self) -> int:
        return (self.stop - self.first) // 4

    def get(self) -> list[str]:  # type: ignore[override]
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


@strategy(FASTQGZip)
def partition_reads_batches(co: Any, num_batches: int) -> list[FASTQGZipSlice]:
    """``num_batches`` slices of about equal uncompressed size, each starting at a read just after a
    checkpoint so that workers decode almost nothing twice."""
    n = positive_int(co.url, "num_batches", num_batches)
    return gzip_line_slices(co, FASTQGZipSlice, snapped_bounds(loaded_gzip_index(co), co.attributes.lines, n, align=4))


@strategy(FASTQGZip)
def partition_sequences_per_chunk(co: Any, seq_per_chunk: int) -> list[FASTQGZipSlice]:
    """Slices of exactly ``seq_per_chunk`` reads (the last one shorter)."""
    step = positive_int(co.url, "seq_per_chunk", seq_per_chunk)
    return gzip_line_slices(co, FASTQGZipSlice, step_bounds(co.attributes.reads, step) * 4)
