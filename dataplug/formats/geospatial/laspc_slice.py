"""The LiDAR slice: the blocks (or runs) of points it fetches, and which of their points it keeps.

A worker fetches the object's header and VLRs and the slice's byte ranges in one ``read_ranges`` call,
decodes LAZ chunks with lazrs, and keeps: all points (a k-d slice of whole chunks), a run of point numbers
``[first, stop)``, or the points in a rectangle (a cell or box, its ``bounds``). Window tests compare raw integer coordinates with
thresholds computed once per slice, which keeps exactly what comparing laspy's scaled coordinates would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dataplug.codecs.las import laszip_record
from dataplug.formats.geospatial.points import PointSlice

try:
    import laspy

    from dataplug.codecs.laz import decode_chunks
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("LiDAR support needs laspy and lazrs: pip install 'dataplug[lidar]'") from exc

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
#: Fetched ranges a worker filters one by one; more are joined first (numpy calls cost microseconds each).
MAX_PIECES = 64
#: A slice's row: byte start, byte end, first point, point count, and 1 when all its points are kept.
Row = tuple[int, int, int, int, int]


@dataclass
class LiDARSlice(PointSlice):
    """Points of a LAS/LAZ object: the points of some rows, all of them (whole chunks), a run
    (``first``/``stop``) or those in a rectangle (``bounds``).

    ``blocks`` rows are (byte start, byte end, first point, point count, whole) in file order: LAS ranges of
    records, or single LAZ chunks (their chunk-table entries); ``whole`` is 1 when ``bounds`` holds every
    point of the row, so its points need no test. A point is kept when ``min <= coordinate < max`` on each
    axis of ``bounds``, or ``<= max`` on an axis whose ``closed`` flag is set (the cloud's maximum edge).
    ``chunk_bounds`` is the closed extent (min x, min y, max x, max y) of the whole chunks a
    ``partition_spatial_chunks`` slice keeps, from the index; those of neighbouring slices may overlap.
    """

    header_size: int
    compressed: bool
    point_size: int
    blocks: tuple[Row, ...]
    first: int | None = None
    stop: int | None = None
    bounds: tuple[float, float, float, float] | None = None
    closed: tuple[bool, bool] = (False, False)
    chunk_bounds: tuple[float, float, float, float] | None = None
    _count: int | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def dump_compressed(self) -> bool:
        """LAZ objects dump as LAZ, LAS objects as LAS."""
        return self.compressed

    def _indexed_count(self) -> int | None:
        if self.first is not None and self.stop is not None:
            return self.stop - self.first
        if self.bounds is None or all(row[4] for row in self.blocks):
            return sum(row[3] for row in self.blocks)
        return None

    @property
    def extent(self) -> tuple[float, float, float, float] | None:
        """The rectangle ``bounds``, or the ``chunk_bounds`` of a slice of whole chunks; ``None`` for a run."""
        return self.bounds if self.bounds is not None else self.chunk_bounds

    def _records(self, selection: Any = None) -> tuple[laspy.LasHeader, np.ndarray]:
        header, parts = self._fetch((row[0], row[1]) for row in self.blocks)
        dtype = header.point_format.dtype()
        # Records travel as one-item void values: numpy copies and filters those whole, where a 2-D byte
        # array filtered by rows goes byte by byte.
        record = np.dtype((np.void, dtype.itemsize))
        if self.compressed:
            laszip = laszip_record(self.url, header)
            rows = np.array([row[:4] for row in self.blocks], dtype=np.int64).reshape(-1, 4)
            payload = parts[0] if len(parts) == 1 else b"".join(parts)
            decoded = decode_chunks(self.url, laszip, payload, rows[:, 3], rows[:, 1] - rows[:, 0], rows[:, 0], self.point_size, selection)
            pieces = [np.frombuffer(decoded, dtype=record)]
            starts = [int(rows[0, 2])] if len(rows) else []
        else:
            pieces, starts = _las_pieces(parts, self.blocks, record)
        if self.first is not None and self.stop is not None:
            pieces = [p[max(self.first - s, 0) : max(self.stop - s, 0)] for p, s in zip(pieces, starts)]
        if len(pieces) > MAX_PIECES:
            pieces = [np.concatenate(pieces)]
        if self.bounds is not None and not all(row[4] for row in self.blocks):
            x = _raw_range(self.bounds[0], self.bounds[2], self.closed[0], header.scales[0], header.offsets[0])
            y = _raw_range(self.bounds[1], self.bounds[3], self.closed[1], header.scales[1], header.offsets[1])
            pieces = [p[_in_window(p, x, y)] for p in pieces]
        if len(pieces) == 1:
            points = pieces[0] if pieces[0].flags.writeable else pieces[0].copy()
        else:
            points = np.concatenate(pieces) if pieces else np.zeros(0, record)
        return self._counted(header, points.view(dtype))

    def byte_range(self) -> tuple[int, int] | None:
        """``[start, end)`` of the object's point data the slice reads: from its first block's start to its
        last block's end (it may skip blocks between; every slice also reads the header and VLRs,
        ``[0, header_size)``). ``None`` when it reads no block."""
        return (min(row[0] for row in self.blocks), max(row[1] for row in self.blocks)) if self.blocks else None


def _in_window(points: np.ndarray, x: tuple[int, int], y: tuple[int, int]) -> np.ndarray:
    """Which ``points`` (void records) have ``x[0] <= X < x[1]`` and ``y[0] <= Y < y[1]``."""
    xy = points.view(np.dtype({"names": ["X", "Y"], "formats": ["<i4", "<i4"], "offsets": [0, 4], "itemsize": points.dtype.itemsize}))
    return _within(xy["X"], *x) & _within(xy["Y"], *y)


def _las_pieces(ranges: list[bytes], rows: tuple[Row, ...], record: np.dtype) -> tuple[list[np.ndarray], list[int]]:
    """The records of each fetched range (adjacent ``rows`` fetched as one) as void arrays viewing
    it, and the number of the first point of each."""
    pieces, starts, at = [], [], 0
    for data in ranges:
        pieces.append(np.frombuffer(data, dtype=record))
        starts.append(rows[at][2])
        covered = 0
        while covered < len(data):
            covered += rows[at][1] - rows[at][0]
            at += 1
    return pieces, starts


def _first_reaching(value: float, scale: float, offset: float, strict: bool) -> int:
    """The smallest raw integer X whose coordinate ``X * scale + offset`` (computed as laspy does, in float64)
    is >= ``value`` (> when ``strict``), searched in the int32 range; ``INT32_MAX + 1`` when there is none.

    The coordinate grows with X (scales are positive), so comparing raw integers with these thresholds
    keeps exactly the points that comparing coordinates would, without computing any coordinate."""
    lo, hi = INT32_MIN, INT32_MAX + 1
    while lo < hi:
        mid = (lo + hi) // 2
        coordinate = mid * float(scale) + float(offset)
        if coordinate > value or (not strict and coordinate == value):
            hi = mid
        else:
            lo = mid + 1
    return lo


def _raw_range(lo: float, hi: float, closed: bool, scale: float, offset: float) -> tuple[int, int]:
    """Raw integers ``[a, b)`` whose coordinates lie in ``[lo, hi)``, or ``[lo, hi]`` when ``closed``."""
    return _first_reaching(lo, scale, offset, False), _first_reaching(hi, scale, offset, closed)


def _within(column: np.ndarray, a: int, b: int) -> np.ndarray:
    """``a <= column < b`` for an int32 column and thresholds from :func:`_raw_range`, as one subtraction
    and one unsigned comparison (``column - a`` wraps modulo 2**32, so values below ``a`` come out huge)."""
    if a >= b:
        return np.zeros(column.size, dtype=bool)
    if b - a > INT32_MAX - INT32_MIN:
        return np.ones(column.size, dtype=bool)
    shifted = np.subtract(column, np.int32(a), dtype=np.int32)
    return shifted.view(np.uint32) < np.uint32(b - a)
