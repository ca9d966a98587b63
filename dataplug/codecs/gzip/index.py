"""The gzip checkpoint index: where decoding may start in a gzip object (compressed byte and bit,
uncompressed offset, line number, the 32 KiB window before it), as numpy tables plus a blob of windows.

The pass that makes it is :mod:`dataplug.codecs.gzip.index_pass`; decoding from one checkpoint is
:mod:`dataplug.codecs.gzip.inflate`. Layout rules, checked by the pass (they are what lets decoding be
simple): a checkpoint without a window sits on a member header (checkpoint 0 is always the object start);
one with a window sits on a deflate block boundary inside a member. BGZF objects only get member-header
checkpoints.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

DEFAULT_SPACING = 4 * 2**20  # uncompressed bytes between checkpoints, the most ``default_spacing`` picks
#: The least spacing ``default_spacing`` picks: one sparse window per 1.5 MiB keeps the sidecar under
#: 0.5 % of a gzip -6 FASTQ (``python benchmarks/gzip_fastq.py --size-mb 130 --no-s3`` prints it, ratio 2).
MIN_DEFAULT_SPACING = 6 * 2**18
WINDOW_SIZE = 32768  # deflate's maximum back-reference distance


def default_spacing(compressed_size: int) -> int:
    """Checkpoint spacing for an object of ``compressed_size`` bytes: about one checkpoint per 1/512 of
    the object (so N slices up to a few hundred each start near one and decode little they then drop),
    but no closer than ``MIN_DEFAULT_SPACING`` (the sidecar budget) nor further than ``DEFAULT_SPACING``.

    With a checkpoint near every slice start, reading every slice costs little more than one whole
    decompression split into lines (``python benchmarks/gzip_fastq.py --size-mb 130 --slices 64 --no-s3``
    prints it as ratio 1, against a goal of 1.15)."""
    guess = 2 * compressed_size // 512  # decoded bytes per 1/512 of the object, at a typical ratio of 2
    return int(min(max(guess, MIN_DEFAULT_SPACING), DEFAULT_SPACING))


TABLE_DTYPES: dict[str, type] = {
    "compressed_offset": np.uint64,
    "bits": np.uint8,
    "uncompressed_offset": np.uint64,
    "line": np.uint64,
    "window_offset": np.uint64,
    "window_length": np.uint32,
}


@dataclass(frozen=True)
class Checkpoint:
    """Everything a worker needs to decompress from one checkpoint (small and picklable).

    The compressed data starts ``bits`` bits before byte ``compressed_offset`` (in the high bits of the
    previous byte) when ``bits`` > 0, so a worker fetches from ``fetch_start``. ``window`` is the
    decompressed dictionary (empty at a member header).
    """

    compressed_offset: int
    bits: int
    uncompressed_offset: int
    line: int
    window: bytes = b""

    def __post_init__(self) -> None:
        if not 0 <= self.bits <= 7:
            raise ValueError(f"bits must be in 0..7, got {self.bits}")
        if self.compressed_offset < (1 if self.bits else 0):
            raise ValueError(f"bad compressed offset {self.compressed_offset} for {self.bits} bits")
        if len(self.window) > WINDOW_SIZE:
            raise ValueError(f"window longer than {WINDOW_SIZE} bytes")

    @property
    def fetch_start(self) -> int:
        """Object offset of the byte holding the checkpoint's first bit."""
        return self.compressed_offset - (1 if self.bits else 0)


@dataclass(eq=False)
class GzipIndex:
    """Checkpoints of one gzip object, as numpy tables plus one blob of separately zlib-compressed windows."""

    compressed_size: int
    uncompressed_size: int
    line_count: int  # number of b"\n" in the whole decompressed stream
    ends_with_newline: bool  # last uncompressed byte is b"\n" (False when empty)
    spacing: int
    bgzf: bool
    compressed_offset: np.ndarray  # uint64, first whole byte of the deflate data at the checkpoint
    bits: np.ndarray  # uint8, 0..7: the data starts that many bits earlier, in byte compressed_offset-1
    uncompressed_offset: np.ndarray  # uint64, strictly increasing, checkpoint 0 at 0
    line: np.ndarray  # uint64, number of b"\n" strictly before uncompressed_offset
    window_offset: np.ndarray  # uint64, offset of the checkpoint's compressed window inside `windows`
    window_length: np.ndarray  # uint32, its length (0: no window, the checkpoint is on a member header)
    #: The windows blob: bytes, or anything with ``len`` and slicing (e.g. a lazily read sidecar blob).
    windows: bytes = field(repr=False)

    def __len__(self) -> int:
        return len(self.uncompressed_offset)

    def tables(self) -> dict[str, np.ndarray]:
        """The per-checkpoint arrays by name (e.g. to save as .npy files)."""
        return {name: getattr(self, name) for name in TABLE_DTYPES}

    def scalars(self) -> dict[str, int | bool]:
        """The per-object values, as keyword arguments for ``from_tables``."""
        return {
            "compressed_size": self.compressed_size,
            "uncompressed_size": self.uncompressed_size,
            "line_count": self.line_count,
            "ends_with_newline": self.ends_with_newline,
            "spacing": self.spacing,
            "bgzf": self.bgzf,
        }

    @classmethod
    def from_tables(
        cls,
        tables: Mapping[str, np.ndarray],
        windows: bytes,
        *,
        compressed_size: int,
        uncompressed_size: int,
        line_count: int,
        ends_with_newline: bool,
        spacing: int,
        bgzf: bool,
    ) -> GzipIndex:
        """Rebuild an index from ``tables()``, ``windows`` and ``scalars()``; ValueError if inconsistent."""
        if set(tables) != set(TABLE_DTYPES):
            raise ValueError(f"index tables must be exactly {sorted(TABLE_DTYPES)}, got {sorted(tables)}")
        arrays = {name: _checked_table(name, tables[name]) for name in TABLE_DTYPES}
        index = cls(
            compressed_size=int(compressed_size),
            uncompressed_size=int(uncompressed_size),
            line_count=int(line_count),
            ends_with_newline=bool(ends_with_newline),
            spacing=int(spacing),
            bgzf=bool(bgzf),
            windows=windows,
            **arrays,
        )
        index._validate()
        return index

    def _validate(self) -> None:
        n = len(self.uncompressed_offset)
        if n == 0 or any(len(a) != n for a in self.tables().values()):
            raise ValueError("index tables must be non-empty and of equal length")
        if min(self.compressed_size, self.uncompressed_size, self.line_count) < 0 or self.spacing < 1:
            raise ValueError("sizes and line count must be non-negative and spacing positive")
        if self.line_count > self.uncompressed_size or (self.ends_with_newline and self.line_count == 0):
            raise ValueError("line count inconsistent with the uncompressed size")
        c, u, line = (a.astype(np.int64) for a in (self.compressed_offset, self.uncompressed_offset, self.line))
        if c[0] or u[0] or line[0] or self.bits[0] or self.window_length[0]:
            raise ValueError("checkpoint 0 must be the start of the object")
        if np.any(np.diff(u) <= 0) or np.any(np.diff(c) < 0) or np.any(np.diff(line) < 0):
            raise ValueError("checkpoint offsets and lines must increase")
        if c[-1] >= max(self.compressed_size, 1) or u[-1] > self.uncompressed_size:
            raise ValueError("checkpoint offsets beyond the object's sizes")
        if line[-1] > self.line_count or np.any(line > u):
            raise ValueError("checkpoint line numbers inconsistent with their offsets")
        if np.any(self.bits > 7) or np.any((self.bits > 0) & (self.window_length == 0)):
            raise ValueError("bad bit offsets (0..7, and only on checkpoints with a window)")
        start = self.window_offset.astype(np.int64)
        end = start + self.window_length.astype(np.int64)
        if np.any(end > len(self.windows)) or np.any(start[1:] < end[:-1]):
            raise ValueError("windows overlap or lie beyond the windows blob")

    def checkpoint_for_uncompressed(self, offset: int) -> int:
        """Index of the last checkpoint with ``uncompressed_offset <= offset``."""
        if not 0 <= offset <= self.uncompressed_size:
            raise ValueError(f"uncompressed offset {offset} outside 0..{self.uncompressed_size}")
        return int(np.searchsorted(self.uncompressed_offset, offset, side="right")) - 1

    def checkpoint_for_line(self, line: int) -> int:
        """Index of the last checkpoint from which a reader reaches the start of line ``line`` (0-based).

        That is the last checkpoint k with ``self.line[k] < line`` (checkpoint 0 for line 0): decoding from
        k, the first byte of line ``line`` is just after the ``line - self.line[k]``-th newline. A checkpoint
        with ``self.line[k] == line`` may sit inside that line, after its first byte, so it is not chosen.
        """
        if not 0 <= line <= self.line_count:
            raise ValueError(f"line {line} outside 0..{self.line_count}")
        return max(int(np.searchsorted(self.line, line, side="left")) - 1, 0)

    def window(self, k: int) -> bytes:
        """Checkpoint k's decompressed window (b"" when it has none)."""
        length = int(self.window_length[k])
        if length == 0:
            return b""
        start = int(self.window_offset[k])
        return zlib.decompress(self.windows[start : start + length])

    def checkpoint(self, k: int) -> Checkpoint:
        """Checkpoint k with its decompressed window, ready to send to a worker."""
        return Checkpoint(
            compressed_offset=int(self.compressed_offset[k]),
            bits=int(self.bits[k]),
            uncompressed_offset=int(self.uncompressed_offset[k]),
            line=int(self.line[k]),
            window=self.window(k),
        )


def _checked_table(name: str, values: np.ndarray) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1 or (array.size and array.dtype.kind not in "ui") or np.any(array < 0):
        raise ValueError(f"index table {name!r} must be a 1-d array of non-negative integers")
    return array.astype(TABLE_DTYPES[name])


def fetch_range_for(index: GzipIndex, k: int, uncompressed_end: int) -> tuple[int, int]:
    """Compressed byte range ``[start, end)`` to fetch to decode from checkpoint k to ``uncompressed_end``.

    The range ends at the first later checkpoint at or beyond ``uncompressed_end``, or at the end of the
    object: checkpoints are the only places where the compressed position of an uncompressed offset is
    known. All the data before a checkpoint lies in the bytes before its ``compressed_offset``.
    """
    if not 0 <= k < len(index):
        raise IndexError(f"checkpoint {k} out of range")
    if not index.uncompressed_offset[k] <= uncompressed_end <= index.uncompressed_size:
        raise ValueError(f"uncompressed end {uncompressed_end} outside checkpoint {k}'s range")
    start = int(index.compressed_offset[k]) - (1 if index.bits[k] else 0)
    j = k + 1 + int(np.searchsorted(index.uncompressed_offset[k + 1 :], uncompressed_end, side="left"))
    return start, int(index.compressed_offset[j]) if j < len(index) else index.compressed_size
