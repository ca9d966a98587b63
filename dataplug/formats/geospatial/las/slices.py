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

from dataplug.formats.geospatial.las.header import laszip_record
from dataplug.errors import CorruptIndexError
from dataplug.formats.geospatial.las.points import PointSlice, raw_xy

try:
    import laspy

    from dataplug.formats.geospatial.las.laz import decode_chunks
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("LiDAR support needs laspy and lazrs: pip install 'dataplug[lidar]'") from exc

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
#: Fetched ranges a worker filters one by one; more are joined first (numpy calls cost microseconds each).
MAX_PIECES = 64
#: A slice's row: byte start, byte end, first point, point count, and 1 when all its points are kept.
Row = tuple[int, int, int, int, int]
#: A block a slice reads, as its index describes it: block number, first point, end point (exclusive), and
#: the bounds (min x, min y, max x, max y) that hold every one of its points.
Extent = tuple[int, int, int, float, float, float, float]


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
    ``extents`` are the index's bounds of the blocks the rows meet: a slice that selects points by ``bounds``
    checks the points it decodes against them, so an index that lies about where blocks are is a
    :class:`CorruptIndexError`, not lost points. Runs and whole-chunk slices return the same points whatever
    the bounds say, and skip the check (on uncompressed LAS it cost up to half of a run's read time).
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
    extents: tuple[Extent, ...] = ()
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
        xy: np.ndarray | None = None
        if self.compressed:
            laszip = laszip_record(self.url, header)
            rows = np.array([row[:4] for row in self.blocks], dtype=np.int64).reshape(-1, 4)
            payload = parts[0] if len(parts) == 1 else b"".join(parts)
            decoded = decode_chunks(self.url, laszip, payload, rows[:, 3], rows[:, 1] - rows[:, 0], rows[:, 0], self.point_size, selection)
            pieces = [np.frombuffer(decoded, dtype=record)]
            starts = [int(rows[0, 2])] if len(rows) else []
            at = np.concatenate(([0], np.cumsum(rows[:-1, 3])))
            if self.bounds is not None:
                xy = check_extents(self.url, self.extents, header, pieces, at, rows[:, 2], rows[:, 3])
        else:
            pieces, starts = _las_pieces(parts, self.blocks, record)
            sizes = np.array([p.size for p in pieces], dtype=np.int64)
            if len(pieces) > MAX_PIECES and self.first is None:
                pieces = [np.concatenate(pieces)]  # joined before the check, which then reads one array
            if pieces and self.bounds is not None:
                xy = check_extents(self.url, self.extents, header, pieces, np.cumsum(sizes) - sizes, np.array(starts, dtype=np.int64), sizes)
        if self.first is not None and self.stop is not None:
            pieces = [p[max(self.first - s, 0) : max(self.stop - s, 0)] for p, s in zip(pieces, starts)]
            xy = None
        if len(pieces) > MAX_PIECES:
            pieces = [np.concatenate(pieces)]
        if self.bounds is not None and pieces and not all(row[4] for row in self.blocks):
            x = _raw_range(self.bounds[0], self.bounds[2], self.closed[0], header.scales[0], header.offsets[0])
            y = _raw_range(self.bounds[1], self.bounds[3], self.closed[1], header.scales[1], header.offsets[1])
            xy = raw_xy(pieces) if xy is None else xy
            keep = _within(xy[:, 0], *x) & _within(xy[:, 1], *y)
            ends = np.cumsum([p.size for p in pieces])[:-1]
            pieces = [p[k] for p, k in zip(pieces, np.split(keep, ends))]
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


def check_extents(
    url: str, extents: tuple[Extent, ...], header: laspy.LasHeader, pieces: list[np.ndarray], at: np.ndarray, first: np.ndarray, count: np.ndarray
) -> np.ndarray | None:
    """:class:`CorruptIndexError` unless every decoded point lies inside the bounds the index gives its block.

    ``pieces`` hold the decoded points (void records) end to end; run ``i`` of them starts at ``at[i]`` and
    holds the ``count[i]`` points numbered from ``first[i]``. Each piece is cut where a block of ``extents`` starts, and
    each part's minimum and maximum, scaled as the index pass scaled them, must lie within its block's bounds:
    a min/max over points already decoded. Returns the raw X and Y it read (:func:`~dataplug.formats.geospatial.las.points.raw_xy`), which the
    window filter reuses, or None when there was nothing to check.
    """
    keep = count > 0
    if not extents or not keep.any():
        return None
    at, first, count = at[keep], first[keep], count[keep]
    block_first = np.array([e[1] for e in extents], dtype=np.int64)
    b0 = np.maximum(np.searchsorted(block_first, first, side="right") - 1, 0)
    b1 = np.maximum(np.searchsorted(block_first, first + count - 1, side="right") - 1, b0)
    parts = b1 - b0 + 1
    piece = np.repeat(np.arange(parts.size), parts)
    block = np.repeat(b0 - (np.cumsum(parts) - parts), parts) + np.arange(piece.size)
    cuts = at[piece] + np.maximum(block_first[block] - first[piece], 0)
    xy = raw_xy(pieces)
    lows, highs = [], []
    for j in (0, 1):
        column = xy[:, j]
        lows.append(np.minimum.reduceat(column, cuts).astype(np.float64) * header.scales[j] + header.offsets[j])
        highs.append(np.maximum.reduceat(column, cuts).astype(np.float64) * header.scales[j] + header.offsets[j])
    bounds = np.array([e[3:] for e in extents], dtype=np.float64)[block]
    outside = (lows[0] < bounds[:, 0]) | (lows[1] < bounds[:, 1]) | (highs[0] > bounds[:, 2]) | (highs[1] > bounds[:, 3])
    if outside.any():
        k = int(np.flatnonzero(outside)[0])
        number = extents[int(block[k])][0]
        raise CorruptIndexError(
            url,
            f"the index's bounds for block {number} do not contain its points: the sidecar does not describe this object "
            f"(its bounds x [{bounds[k, 0]}, {bounds[k, 2]}], y [{bounds[k, 1]}, {bounds[k, 3]}]; a point at x {lows[0][k]}..{highs[0][k]}, "
            f"y {lows[1][k]}..{highs[1][k]})",
        )
    return xy


def _las_pieces(parts: list[bytes], rows: tuple[Row, ...], record: np.dtype) -> tuple[list[np.ndarray], list[int]]:
    """The records of each row (``parts`` its bytes) as void arrays viewing them, and the number of the first
    point of each."""
    return [np.frombuffer(data, dtype=record) for data in parts], [row[2] for row in rows]


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
