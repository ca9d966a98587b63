"""LiDAR point clouds in LAS or LAZ (versions 1.1-1.4, point formats 0-10, extra bytes): slices by space
(grid cells, a window) or by runs of points, every point in exactly one slice, without LAStools.

Preprocessing reads the header and VLRs, then maps over groups of *blocks* (on ``ctx.executor``): runs of
``block_points`` records in LAS (about 2 MiB each by default), the chunks of the chunk table in LAZ, decoded
with lazrs (X, Y and Z only where the point format allows). For each block the index keeps its byte range,
its first point and its bounds in real coordinates, and optionally a coarse 2-D histogram of its points
(``histogram_grid=16``: a 16 x 16 grid over the header's extent) that ``square_split_strategy(...,
balance=True)`` uses to place cell edges at quantiles.

A slice names the blocks it needs and what to keep of them: a run of points ``[first, stop)`` or a window.
Its worker fetches the header and VLRs and those blocks in one ``read_ranges`` call, decodes LAZ chunks with
lazrs from the chunk-table entries the slice carries, and keeps its points. Cells are half-open
(``min <= x < max``) except on the cloud's maximum edge, which the last cell of each axis includes.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from dataplug.errors import CorruptIndexError, InvalidFormatError, StrategyArgumentError
from dataplug.executors import map_ordered
from dataplug.format import DataFormat, IndexData, PreprocessContext
from dataplug.slice import CloudObjectSlice
from dataplug.storage import ObjectInfo, StorageObject
from dataplug.strategies import even_bounds, positive_int, step_bounds, strategy

try:
    import laspy
    import lazrs
    from laspy.vlrs.vlrlist import VLRList

    from dataplug.codecs.laz import OFFSET_SIZE, XYZ_ONLY, decode_chunks, read_table, table_offset
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("LiDAR support needs laspy and lazrs: pip install 'dataplug[lidar]'") from exc

#: Target size of a LAS block (``block_points`` defaults to this many bytes of records).
DEFAULT_BLOCK_BYTES = 2 * 2**20
#: Bytes each task of the index pass reads (``chunk_size=`` overrides): LAS blocks, or LAZ chunks, which the
#: task decodes one by one (lazrs holds the GIL while it decodes: a process executor spreads LAZ over cores).
LAS_GROUP_BYTES = 32 * 2**20
LAZ_GROUP_BYTES = 8 * 2**20
#: Bytes read first for the header; bigger VLR sections take a second read.
HEADER_PREFETCH = 64 * 1024
#: Size of the smallest LAS header (1.0-1.2) and where it stores the offset to the point data.
MIN_HEADER_SIZE = 227
_OFFSET_TO_POINTS_FIELD = 96
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
#: A slice's block: byte start, byte end, first point, point count, and 1 when all its points are kept.
Row = tuple[int, int, int, int, int]
#: Table names in the sidecar.
TABLES = ("block_start", "block_end", "block_first", "block_bounds")
HISTOGRAM = "block_histogram"


@dataclass(frozen=True)
class LiDARAttributes:
    """What preprocessing found; ``mins``/``maxs`` are the bounds of the points themselves (real coordinates)."""

    size: int
    point_count: int
    #: Bytes per uncompressed point record, extra bytes included.
    point_format_size: int
    offset_to_point_data: int
    mins: tuple[float, float, float]
    maxs: tuple[float, float, float]
    point_format_id: int
    extra_bytes: int
    version: str
    scales: tuple[float, float, float]
    offsets: tuple[float, float, float]
    compressed: bool
    blocks: int
    #: Points per LAS block or per fixed-size LAZ chunk; 0 for variable-size LAZ chunks.
    block_points: int
    #: Cells per axis of the per-block histograms (0: none) and the extent they cover (min x, min y, max x, max y).
    histogram_grid: int
    histogram_extent: tuple[float, float, float, float]


class LiDARPointCloud(DataFormat):
    """A LAS or LAZ point cloud. Options: ``block_points`` (LAS block size), ``histogram_grid`` (0 = none)."""

    Attributes = LiDARAttributes
    options = {
        "block_points": "points per LAS block in the index (default: about 2 MiB of records)",
        "histogram_grid": "cells per axis of per-block point histograms, for balanced splits (default 0: none)",
    }

    @classmethod
    def preprocess(cls, ctx: PreprocessContext) -> IndexData:
        url, size = ctx.obj.url, ctx.info.size
        header = parse_header(url, _read_header_bytes(ctx.obj, ctx.info))
        point_size, count, data_start = header.point_format.size, header.point_count, header.offset_to_point_data
        if count == 0:
            raise InvalidFormatError(url, "empty point cloud: the header says it holds 0 points")
        if not (np.all(header.scales > 0) and np.all(np.isfinite(header.scales)) and np.all(np.isfinite(header.offsets))):
            cause = f"invalid LAS header: scales {header.scales.tolist()} must be positive and offsets {header.offsets.tolist()} finite"
            raise InvalidFormatError(url, cause, offset=0)
        grid = _option(ctx, "histogram_grid", 0, minimum=0)
        laszip = laszip_record(url, header) if header.are_points_compressed else None
        if laszip is None:
            block_points = _option(ctx, "block_points", max(1, DEFAULT_BLOCK_BYTES // point_size), minimum=1)
            starts, ends, counts = _las_blocks(url, header, size, block_points)
        else:
            starts, ends, counts, block_points = _laz_blocks(ctx.obj, ctx.info, header, laszip)
        x0, y0, x1, y1 = (float(v) for v in (header.x_min, header.y_min, header.x_max, header.y_max))
        extent = (x0, y0, x1, y1) if all(math.isfinite(v) for v in (x0, y0, x1, y1)) else (0.0, 0.0, 0.0, 0.0)
        scan = _BlockScan(ctx.obj, ctx.info, point_size, laszip, grid, extent, _triple(header.scales), _triple(header.offsets))
        groups = _groups(starts, ends, counts, ctx.chunk_size or (LAS_GROUP_BYTES if laszip is None else LAZ_GROUP_BYTES))
        results = map_ordered(scan, groups, ctx.executor, ctx.progress, desc=f"indexing {url}")
        raw = np.concatenate([r for r, _ in results])
        bounds = raw.astype(np.float64) * np.tile(header.scales, 2) + np.tile(header.offsets, 2)
        tables = {
            "block_start": starts,
            "block_end": ends,
            "block_first": np.concatenate(([0], np.cumsum(counts))).astype(np.int64),
            "block_bounds": bounds,
        }
        if grid:
            tables[HISTOGRAM] = np.concatenate([h for _, h in results])
        attributes = LiDARAttributes(
            size=size,
            point_count=count,
            point_format_size=point_size,
            offset_to_point_data=data_start,
            mins=_triple(bounds[:, :3].min(axis=0)),
            maxs=_triple(bounds[:, 3:].max(axis=0)),
            point_format_id=header.point_format.id,
            extra_bytes=header.point_format.num_extra_bytes,
            version=str(header.version),
            scales=scan.scales,
            offsets=scan.offsets,
            compressed=laszip is not None,
            blocks=len(starts),
            block_points=block_points,
            histogram_grid=grid,
            histogram_extent=extent,
        )
        return IndexData(attributes, tables=tables)

    @classmethod
    def validate_index(cls, url: str, attributes: Any, tables: dict[str, np.ndarray], blob_sizes: dict[str, int], size: int) -> None:
        a = attributes
        missing = [name for name in TABLES + ((HISTOGRAM,) if a.histogram_grid else ()) if name not in tables]
        if missing:
            raise CorruptIndexError(url, f"LiDAR index tables missing: {missing}")
        start, end, first, bounds = (tables[name] for name in TABLES)
        n = a.blocks
        ok = (
            a.size == size
            and n >= 1
            and start.shape == end.shape == (n,)
            and first.shape == (n + 1,)
            and bounds.shape == (n, 6)
            and a.offset_to_point_data <= start[0]
            and np.all(start < end)
            and np.all(end[:-1] <= start[1:])
            and end[-1] <= size
            and first[0] == 0
            and np.all(np.diff(first) > 0)
            and first[-1] == a.point_count
            and np.all(np.isfinite(bounds))
            and np.all(bounds[:, :3] <= bounds[:, 3:])
            and (a.compressed or np.array_equal(end - start, np.diff(first) * a.point_format_size))
            and (not a.histogram_grid or tables[HISTOGRAM].shape == (n, a.histogram_grid**2))
        )
        if not ok:
            raise CorruptIndexError(url, "LiDAR block index does not fit the object (offsets, point counts or bounds)")


# -- header and blocks -----------------------------------------------------------------------------------


def _option(ctx: PreprocessContext, name: str, default: int, minimum: int) -> int:
    """A whole-number preprocessing option, or :class:`StrategyArgumentError` naming it."""
    value = ctx.options.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise StrategyArgumentError(ctx.obj.url, f"{name} must be a whole number >= {minimum}, got {value!r}")
    return int(value)


def _triple(values: Any) -> tuple[float, float, float]:
    x, y, z = (float(v) for v in values)
    return x, y, z


def _read_header_bytes(obj: StorageObject, info: ObjectInfo) -> bytes:
    """The object's header and VLRs (its bytes before the first point), in one read or two."""
    url, size = obj.url, info.size
    head = obj.read_range(0, min(size, HEADER_PREFETCH), expect=info)
    if head[:4] != b"LASF":
        raise InvalidFormatError(url, "not a LAS/LAZ file: it does not start with the signature 'LASF'", offset=0)
    if len(head) < MIN_HEADER_SIZE:
        raise InvalidFormatError(url, f"not a LAS/LAZ file: {size} bytes cannot hold a LAS header", offset=0)
    data_start = int.from_bytes(head[_OFFSET_TO_POINTS_FIELD : _OFFSET_TO_POINTS_FIELD + 4], "little")
    if not MIN_HEADER_SIZE <= data_start <= size:
        raise InvalidFormatError(url, f"invalid LAS header: offset to point data {data_start} is outside the object ({size} bytes)", offset=_OFFSET_TO_POINTS_FIELD)
    if data_start > len(head):
        head += obj.read_range(len(head), data_start, expect=info)
    return head[:data_start]


def parse_header(url: str, data: bytes) -> laspy.LasHeader:
    """The header and VLRs in ``data`` (the object's bytes before its points), parsed by laspy."""
    try:
        return laspy.LasHeader.read_from(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - laspy raises LaspyException, ValueError, struct errors ...
        raise InvalidFormatError(url, f"invalid LAS header or VLRs: {exc}", offset=0) from None


def laszip_record(url: str, header: laspy.LasHeader) -> bytes:
    """The LASzip VLR's payload, which lazrs needs to decode chunks; it is taken out of ``header.vlrs`` (as
    laspy does when it reads a LAZ), so the header describes uncompressed points."""
    try:
        vlr = header.vlrs.pop(header.vlrs.index("LasZipVlr"))
    except ValueError:
        raise InvalidFormatError(url, "compressed point format but no LASzip VLR: not a valid LAZ file", offset=0) from None
    header.are_points_compressed = False
    return bytes(vlr.record_data)


def _las_point_end(header: laspy.LasHeader, size: int) -> int:
    """Where the records of an uncompressed LAS end: at its EVLRs or internal waveform data, else at its end."""
    end, data_start = size, header.offset_to_point_data
    if header.version.minor >= 4 and header.number_of_evlrs and data_start < header.start_of_first_evlr < end:
        end = header.start_of_first_evlr
    waveform = header.start_of_waveform_data_packet_record
    if header.version.minor >= 3 and header.global_encoding.waveform_data_packets_internal and data_start < waveform < end:
        end = waveform
    return end


def _las_blocks(url: str, header: laspy.LasHeader, size: int, block_points: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Byte starts, byte ends and point counts of the blocks of an uncompressed LAS, after checking that its
    point section holds exactly the header's point count."""
    point_size, count, data_start = header.point_format.size, header.point_count, header.offset_to_point_data
    end = _las_point_end(header, size)
    held = (end - data_start) // point_size
    if held < count and end == size:
        raise InvalidFormatError(
            url, f"truncated point section: the header says {count} points of {point_size} bytes, the object ends after {held}", offset=data_start + held * point_size
        )
    if held != count:
        raise InvalidFormatError(url, f"the header's point count {count} disagrees with the data: its point section holds {held} points", offset=data_start)
    first = np.arange(0, count, block_points, dtype=np.int64)
    counts = np.diff(np.append(first, count))
    starts = data_start + first * point_size
    return starts, starts + counts * point_size, counts


def _laz_blocks(obj: StorageObject, info: ObjectInfo, header: laspy.LasHeader, laszip: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The chunks of a LAZ from its chunk table: byte starts, byte ends, point counts and the fixed chunk size."""
    url, size, data_start = obj.url, info.size, header.offset_to_point_data
    if lazrs.LazVlr(laszip).item_size() != header.point_format.size:
        raise InvalidFormatError(url, "the LASzip VLR's point size disagrees with the header's point format", offset=0)
    head_end = min(data_start + OFFSET_SIZE, size)
    tail = (size - OFFSET_SIZE, size) if size - OFFSET_SIZE >= head_end else (size, size)
    head, last = obj.read_ranges([(data_start, head_end), tail], expect=info)
    offset = table_offset(url, data_start, size, head, last)
    table_end = size
    if header.version.minor >= 4 and header.number_of_evlrs and offset < header.start_of_first_evlr < size:
        table_end = header.start_of_first_evlr
    table = read_table(url, laszip, obj.read_range(offset, table_end, expect=info), offset, data_start, header.point_count)
    return table.starts, table.ends, table.point_counts, table.chunk_size


def _groups(starts: np.ndarray, ends: np.ndarray, counts: np.ndarray, group_bytes: int) -> list[np.ndarray]:
    """Consecutive blocks in groups of about ``group_bytes``: each an array of rows (start, end, points)."""
    rows = np.column_stack((starts, ends, counts))
    group = (starts - starts[0]) // max(int(group_bytes), 1)
    cuts = np.flatnonzero(np.diff(group)) + 1
    return np.split(rows, cuts)


def _xyz_dtype(point_size: int) -> np.dtype:
    """The raw X, Y, Z integers at the start of every point record (all LAS point formats)."""
    return np.dtype({"names": ["X", "Y", "Z"], "formats": ["<i4"] * 3, "offsets": [0, 4, 8], "itemsize": point_size})


@dataclass(frozen=True)
class _BlockScan:
    """The map step of preprocessing: bounds (and histograms) of one group of blocks. Small and picklable."""

    obj: StorageObject
    info: ObjectInfo
    point_size: int
    laszip: bytes | None
    grid: int
    extent: tuple[float, float, float, float]
    scales: tuple[float, float, float]
    offsets: tuple[float, float, float]

    def __call__(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """For blocks ``rows`` (start, end, points), their raw min X, Y, Z and max X, Y, Z as a (k, 6) array
        and, with a grid, their histograms as a (k, grid * grid) array."""
        starts, ends, counts = rows[:, 0], rows[:, 1], rows[:, 2]
        data = self.obj.read_range(int(starts[0]), int(ends[-1]), expect=self.info)
        if self.laszip is not None:
            if np.array_equal(starts[1:], ends[:-1]):
                payload: bytes | bytearray = data
            else:
                view = memoryview(data)
                payload = b"".join(view[a - starts[0] : b - starts[0]] for a, b in zip(starts.tolist(), ends.tolist()))
            data = decode_chunks(self.obj.url, self.laszip, payload, counts, ends - starts, starts, self.point_size, XYZ_ONLY)
        xyz = np.frombuffer(data, dtype=_xyz_dtype(self.point_size), count=int(counts.sum()))
        first = np.concatenate(([0], np.cumsum(counts)[:-1]))
        raw = np.empty((len(rows), 6), dtype=np.int64)
        for j, name in enumerate("XYZ"):
            column = xyz[name]
            raw[:, j] = np.minimum.reduceat(column, first)
            raw[:, 3 + j] = np.maximum.reduceat(column, first)
        return raw, (self._histograms(xyz, counts) if self.grid else None)

    def _histograms(self, xyz: np.ndarray, counts: np.ndarray) -> np.ndarray:
        g = self.grid
        x0, y0, x1, y1 = self.extent
        cells = np.zeros(xyz.size, dtype=np.int64)
        axes = (("X", x0, x1, self.scales[0], self.offsets[0], g), ("Y", y0, y1, self.scales[1], self.offsets[1], 1))
        for name, lo, hi, scale, offset, weight in axes:
            real = xyz[name] * scale + offset
            cell = np.floor((real - lo) * (g / (hi - lo if hi > lo else 1.0)))
            cells += np.clip(cell, 0, g - 1).astype(np.int64) * weight
        block = np.repeat(np.arange(counts.size), counts)
        return np.bincount(block * g * g + cells, minlength=counts.size * g * g).reshape(counts.size, g * g).astype(np.uint32)


# -- slices ----------------------------------------------------------------------------------------------


def _merged(rows: tuple[Row, ...]) -> list[tuple[int, int]]:
    """Byte ranges covering ``rows`` (sorted by start), adjacent rows merged into one range."""
    out: list[list[int]] = []
    for start, end, *_ in rows:
        if out and out[-1][1] == start:
            out[-1][1] = end
        else:
            out.append([start, end])
    return [(a, b) for a, b in out]


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
    """``a <= column < b`` for an int32 column and thresholds from :func:`_raw_range`."""
    if a >= b:
        return np.zeros(column.size, dtype=bool)
    inside = column <= b - 1
    return inside & (column >= a) if a > INT32_MIN else inside


def _las_pieces(ranges: list[bytes], rows: tuple[Row, ...], point_size: int):
    """The records of each row, as (points, point_size) byte arrays viewing the fetched ``ranges``, which
    :func:`_merged` made from the same rows."""
    data, at = iter(ranges), 0
    current = b""
    for start, end, *_ in rows:
        if at >= len(current):
            current, at = next(data), 0
        yield np.frombuffer(current, dtype=np.uint8, count=end - start, offset=at).reshape(-1, point_size)
        at += end - start


def _fit_header(las: laspy.LasData) -> None:
    """What ``las.update_header()`` sets (point count, bounds, points by return, GPS time range, extra-bytes
    ranges), with the returns counted by ``np.bincount`` where laspy sorts them: the sort alone took a third
    of a LAS slice's ``get()``."""
    header, points = las.header, las.points
    header.partial_reset()
    header.point_count = len(points)
    if header.version.minor >= 4:
        header.start_of_waveform_data_packet_record = 0
    if not len(points):
        header.mins, header.maxs = np.zeros(3), np.zeros(3)
        return
    header.mins = np.array([points.array[name].min() for name in "XYZ"]) * header.scales + header.offsets
    header.maxs = np.array([points.array[name].max() for name in "XYZ"]) * header.scales + header.offsets
    returns = np.bincount(np.asarray(points.return_number), minlength=16)
    header.number_of_points_by_return = returns[1:16].astype(np.uint64)
    if "gps_time" in points.point_format.dimension_names:
        header.min_gps_time, header.max_gps_time = float(points.array["gps_time"].min()), float(points.array["gps_time"].max())
    for vlr in header.vlrs.get("ExtraBytesVlr"):
        vlr.grow(points)


@dataclass
class LiDARSlice(CloudObjectSlice):
    """Points of a LAS/LAZ object: the points of some blocks, kept by run (``first``/``stop``) or by window.

    ``blocks`` rows are (byte start, byte end, first point, point count, whole) in file order: LAS runs of
    records, or single LAZ chunks (their chunk-table entries); ``whole`` is 1 when the window holds the
    block's bounds, so its points need no test. ``window`` is (min x, min y, max x, max y); a point is kept
    when ``min <= coordinate < max``, or ``<= max`` on an axis whose ``closed`` flag is set.
    """

    header_size: int
    compressed: bool
    point_size: int
    blocks: tuple[Row, ...]
    first: int | None = None
    stop: int | None = None
    window: tuple[float, float, float, float] | None = None
    closed: tuple[bool, bool] = (False, False)

    @property
    def num_points(self) -> int | None:
        """Points in a run slice; ``None`` for a spatial slice (known only once read)."""
        return None if self.first is None or self.stop is None else self.stop - self.first

    @property
    def min_x(self) -> float | None:
        return None if self.window is None else self.window[0]

    @property
    def min_y(self) -> float | None:
        return None if self.window is None else self.window[1]

    @property
    def max_x(self) -> float | None:
        return None if self.window is None else self.window[2]

    @property
    def max_y(self) -> float | None:
        return None if self.window is None else self.window[3]

    def _records(self, selection: Any = None) -> tuple[laspy.LasHeader, np.ndarray]:
        """The object's header (describing uncompressed points, no EVLRs) and the slice's raw point records."""
        parts = self.obj.read_ranges([(0, self.header_size), *_merged(self.blocks)], expect=self.object_info)
        header = parse_header(self.url, parts[0])
        header.evlrs = VLRList()
        dtype = header.point_format.dtype()
        # Records are cut, filtered and joined as rows of bytes: numpy copies those at memory speed, while
        # it copies a structured dtype field by field.
        if self.compressed:
            laszip = laszip_record(self.url, header)
            rows = np.array([row[:4] for row in self.blocks], dtype=np.int64).reshape(-1, 4)
            payload = parts[1] if len(parts) == 2 else b"".join(parts[1:])
            decoded = decode_chunks(self.url, laszip, payload, rows[:, 3], rows[:, 1] - rows[:, 0], rows[:, 0], self.point_size, selection)
            records = np.frombuffer(decoded, dtype=np.uint8).reshape(-1, dtype.itemsize)
            pieces = np.split(records, np.cumsum(rows[:-1, 3])) if len(rows) else []
        else:
            pieces = list(_las_pieces(parts[1:], self.blocks, dtype.itemsize))
        x_range = y_range = (INT32_MIN, INT32_MAX + 1)
        if self.window is not None:
            x_range = _raw_range(self.window[0], self.window[2], self.closed[0], header.scales[0], header.offsets[0])
            y_range = _raw_range(self.window[1], self.window[3], self.closed[1], header.scales[1], header.offsets[1])
        kept = []
        for piece, (_, _, first, _, whole) in zip(pieces, self.blocks):
            if self.first is not None and self.stop is not None:
                piece = piece[max(self.first - first, 0) : max(self.stop - first, 0)]
            if not whole:
                fields = piece.view(dtype)[:, 0]
                piece = piece[_within(fields["X"], *x_range) & _within(fields["Y"], *y_range)]
            kept.append(piece)
        if not kept:
            return header, np.zeros(0, dtype)
        points = kept[0] if len(kept) == 1 else np.concatenate(kept)
        if not points.flags.writeable:
            points = points.copy()
        return header, points.view(dtype)[:, 0]

    def get(self) -> laspy.LasData:
        """The slice's points as a ``laspy.LasData`` whose header has the slice's count, bounds and returns."""
        header, points = self._records()
        las = laspy.LasData(header, laspy.PackedPointRecord(points, header.point_format))
        _fit_header(las)
        return las

    def to_file(self, name: str | os.PathLike[str]) -> None:
        """Write the slice as a LAS or LAZ file (by the name's suffix, ``.laz`` compressed)."""
        self.get().write(os.fspath(name))

    def schema(self) -> pa.Schema:
        """``X``, ``Y``, ``Z`` as scaled float64 and the point format's other dimensions (one header read)."""
        header = parse_header(self.url, self.obj.read_range(0, self.header_size, expect=self.object_info))
        return _arrow_columns(header.point_format, laspy.ScaleAwarePointRecord.zeros(0, header=header)).schema

    def to_arrow(self, columns: list[str] | None = None) -> pa.Table:
        """The slice's points: ``X``, ``Y``, ``Z`` scaled to real coordinates (float64), then the point
        format's other dimensions as laspy names them (extra bytes with a scale come scaled)."""
        header, points = self._records()
        record = laspy.ScaleAwarePointRecord(points, header.point_format, header.scales, header.offsets)
        table = _arrow_columns(header.point_format, record)
        return table if columns is None else table.select(columns)

    def xyz(self) -> np.ndarray:
        """The slice's coordinates as an (n, 3) float64 array (LAZ: decoding only X, Y, Z where it can)."""
        header, points = self._records(XYZ_ONLY)
        out = np.empty((points.size, 3), dtype=np.float64)
        for j, name in enumerate("XYZ"):
            out[:, j] = points[name] * header.scales[j] + header.offsets[j]
        return out


def _arrow_columns(point_format: Any, record: Any) -> pa.Table:
    names = list(point_format.dimension_names)
    columns = {name: np.asarray(record[name.lower()] if name in "XYZ" else record[name]) for name in names}
    return pa.table(columns)


# -- strategies ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Blocks:
    start: np.ndarray
    end: np.ndarray
    first: np.ndarray
    bounds: np.ndarray
    histogram: np.ndarray | None


def _blocks(co: Any) -> _Blocks:
    tables = co.index().tables
    return _Blocks(*(tables[name] for name in TABLES), tables.get(HISTOGRAM))


def _slice(co: Any, number: int, rows: list[Row], **keep: Any) -> LiDARSlice:
    a = co.attributes
    return LiDARSlice(
        obj=co.obj,
        object_info=co.index().object_info,
        number=number,
        header_size=a.offset_to_point_data,
        compressed=a.compressed,
        point_size=a.point_format_size,
        blocks=tuple(rows),
        **keep,
    )


def _rows(co: Any, blocks: _Blocks, chosen: np.ndarray, whole: np.ndarray | None = None) -> list[Row]:
    """Rows for blocks ``chosen`` (sorted indices) and whether each is kept whole (default: all are): LAS
    runs of adjacent blocks alike in that merged into one row, LAZ one row per chunk."""
    rows: list[Row] = []
    flags = np.ones(chosen.size, dtype=bool) if whole is None else whole
    for k, flag in zip(chosen.tolist(), flags.tolist()):
        row = (int(blocks.start[k]), int(blocks.end[k]), int(blocks.first[k]), int(blocks.first[k + 1] - blocks.first[k]), int(flag))
        last = rows[-1] if rows else None
        if last is not None and not co.attributes.compressed and last[1] == row[0] and last[4] == row[4]:
            rows[-1] = (last[0], row[1], last[2], last[3] + row[3], row[4])
        else:
            rows.append(row)
    return rows


def _run_slices(co: Any, bounds: np.ndarray) -> list[LiDARSlice]:
    """One slice per run of points ``[bounds[i], bounds[i+1])``: LAS reads exactly its records, LAZ the
    chunks that hold them (cut inside the first and last chunk)."""
    a, blocks = co.attributes, _blocks(co)
    out = []
    for number, (first, stop) in enumerate(zip(bounds[:-1].tolist(), bounds[1:].tolist())):
        rows: list[Row] = []
        if stop > first and a.compressed:
            k0 = int(np.searchsorted(blocks.first, first, side="right")) - 1
            k1 = int(np.searchsorted(blocks.first, stop, side="left"))
            rows = _rows(co, blocks, np.arange(k0, k1))
        elif stop > first:
            start = a.offset_to_point_data + first * a.point_format_size
            rows = [(start, start + (stop - first) * a.point_format_size, first, stop - first, 1)]
        out.append(_slice(co, number, rows, first=first, stop=stop))
    return out


def _meeting(blocks: _Blocks, window: tuple[float, float, float, float], closed: tuple[bool, bool]) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the blocks whose bounds meet ``window`` (every point in the window is in one of them), and
    for each whether the window holds its bounds (all its points are in the window)."""
    x0, y0, x1, y1 = window
    b = blocks.bounds
    meets = (b[:, 3] >= x0) & (b[:, 4] >= y0)
    meets &= (b[:, 0] <= x1) if closed[0] else (b[:, 0] < x1)
    meets &= (b[:, 1] <= y1) if closed[1] else (b[:, 1] < y1)
    inside = (b[:, 0] >= x0) & (b[:, 1] >= y0)
    inside &= (b[:, 3] <= x1) if closed[0] else (b[:, 3] < x1)
    inside &= (b[:, 4] <= y1) if closed[1] else (b[:, 4] < y1)
    chosen = np.flatnonzero(meets)
    return chosen, inside[chosen]


def grid_shape(num_chunks: int) -> tuple[int, int]:
    """Columns and rows of the original Dataplug's near-square grid (7 cells asked: 3 x 2)."""
    columns = max(1, round(math.sqrt(num_chunks)))
    return columns, max(1, round(num_chunks / columns))


def _quantile_cuts(weights: np.ndarray, edges: np.ndarray, parts: int) -> np.ndarray:
    """``parts + 1`` positions splitting a histogram (``weights`` between ``edges``) into parts of equal
    weight, points taken as uniform inside a bin; even spacing when the histogram is empty."""
    total = float(weights.sum())
    if total <= 0:
        return np.linspace(edges[0], edges[-1], parts + 1)
    cdf = np.concatenate(([0.0], np.cumsum(weights, dtype=np.float64)))
    targets = total * np.arange(1, parts) / parts
    k = np.clip(np.searchsorted(cdf, targets, side="left"), 1, weights.size)
    frac = (targets - cdf[k - 1]) / np.maximum(weights[k - 1], 1e-300)
    cuts = edges[k - 1] + np.clip(frac, 0.0, 1.0) * (edges[k] - edges[k - 1])
    return np.concatenate(([edges[0]], cuts, [edges[-1]]))


def _balanced_edges(a: Any, histogram: np.ndarray, columns: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Column edges at quantiles of the x distribution, then row edges of each column at quantiles of its y
    distribution, clipped into the cloud's extent so the cells still tile it."""
    g = a.histogram_grid
    hist = histogram.sum(axis=0, dtype=np.float64).reshape(g, g)  # [x cell, y cell]
    hx0, hy0, hx1, hy1 = a.histogram_extent
    gx, gy = np.linspace(hx0, hx1, g + 1), np.linspace(hy0, hy1, g + 1)
    (x0, y0, _), (x1, y1, _) = a.mins, a.maxs
    x_edges = _tile(_quantile_cuts(hist.sum(axis=1), gx, columns), x0, x1)
    y_edges = np.empty((columns, rows + 1))
    for i in range(columns):
        overlap = np.clip(np.minimum(gx[1:], x_edges[i + 1]) - np.maximum(gx[:-1], x_edges[i]), 0, None) / np.maximum(np.diff(gx), 1e-300)
        y_edges[i] = _tile(_quantile_cuts(overlap @ hist, gy, rows), y0, y1)
    return x_edges, y_edges


def _tile(edges: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``edges`` clipped into ``[lo, hi]``, non-decreasing, first exactly ``lo`` and last exactly ``hi``."""
    out = np.maximum.accumulate(np.clip(edges, lo, hi))
    out[0], out[-1] = lo, hi
    return out


@strategy(LiDARPointCloud)
def square_split_strategy(co: Any, num_chunks: int, balance: bool = False) -> list[LiDARSlice]:
    """About ``num_chunks`` cells over the cloud's extent (a near-square grid of ``grid_shape(num_chunks)``
    columns by rows, as in the original), each slice fetching only the blocks that meet its cell.

    Cells are half-open (``min <= x < max``), the last column and row closed on the cloud's maximum edge,
    so every point lands in exactly one slice. ``balance=True`` places the edges at quantiles of the
    index's histograms (preprocess with ``histogram_grid=``) so slices hold similar point counts.
    """
    columns, rows = grid_shape(positive_int(co.url, "num_chunks", num_chunks))
    a, blocks = co.attributes, _blocks(co)
    if balance:
        if blocks.histogram is None:
            raise StrategyArgumentError(co.url, "balance=True needs histograms in the index: preprocess(force=True, histogram_grid=16)")
        x_edges, y_edges = _balanced_edges(a, blocks.histogram, columns, rows)
    else:
        x_edges = np.linspace(a.mins[0], a.maxs[0], columns + 1)
        y_edges = np.tile(np.linspace(a.mins[1], a.maxs[1], rows + 1), (columns, 1))
    out = []
    for i in range(columns):
        for j in range(rows):
            window = (float(x_edges[i]), float(y_edges[i, j]), float(x_edges[i + 1]), float(y_edges[i, j + 1]))
            closed = (i == columns - 1, j == rows - 1)
            out.append(_slice(co, len(out), _rows(co, blocks, *_meeting(blocks, window, closed)), window=window, closed=closed))
    return out


@strategy(LiDARPointCloud)
def partition_bbox(co: Any, minx: float, miny: float, maxx: float, maxy: float) -> list[LiDARSlice]:
    """One slice with the points in the closed window ``minx <= x <= maxx``, ``miny <= y <= maxy``."""
    window = (float(minx), float(miny), float(maxx), float(maxy))
    if not all(math.isfinite(v) for v in window) or window[0] > window[2] or window[1] > window[3]:
        raise StrategyArgumentError(co.url, f"partition_bbox needs finite minx <= maxx and miny <= maxy, got {window}")
    blocks = _blocks(co)
    return [_slice(co, 0, _rows(co, blocks, *_meeting(blocks, window, (True, True))), window=window, closed=(True, True))]


@strategy(LiDARPointCloud)
def partition_num_points(co: Any, num_chunks: int) -> list[LiDARSlice]:
    """``num_chunks`` runs of consecutive points whose sizes differ by at most one."""
    return _run_slices(co, even_bounds(co.attributes.point_count, positive_int(co.url, "num_chunks", num_chunks)))


@strategy(LiDARPointCloud)
def partition_points_per_chunk(co: Any, points: int) -> list[LiDARSlice]:
    """Runs of exactly ``points`` consecutive points (the last one shorter)."""
    return _run_slices(co, step_bounds(co.attributes.point_count, positive_int(co.url, "points", points)))
