"""LiDAR point clouds in LAS or LAZ (versions 1.1-1.4, point formats 0-10, extra bytes): slices by space
(grid cells, a window, k-d groups of whole chunks) or by runs of points, every point in exactly one slice,
without LAStools.

Preprocessing reads the header and VLRs, then maps over groups of *blocks* (on ``ctx.executor``): runs of
``block_points`` records in LAS (about 2 MiB each by default), the chunks of the chunk table in LAZ, decoded
with lazrs (X, Y and Z only where the point format allows). For each block the index keeps its byte range,
its first point and its bounds in real coordinates; for LAS also the x/y bounds of every run of
``run_points`` points (see :mod:`~dataplug.formats.geospatial.las.blocks`), and optionally a coarse 2-D histogram of each block's points
(``histogram_grid=16``) that ``square_split_strategy(..., balance=True)`` uses to place cell edges.

Which spatial strategy:

- ``square_split_strategy`` and ``partition_bbox`` give exact rectangles, each slice's ``bounds``:
  half-open (``min <= x < max``), closed on the cloud's maximum edge (the last column and row of a grid,
  a box that reaches the maximum), so adjacent rectangles never share a point. On LAS a cell reads only
  the runs that meet it. On LAZ a cell must decode every chunk that meets it, and on a scan-ordered tile
  (GPS-time order, as airborne data is delivered) a chunk spans a flight strip's width, so on a 20 M-point
  tile 16 cells decode 1.75 points per point kept and 64 cells 2.9 (``python benchmarks/lidar.py
  --points 20000000 --orders scan --formats laz --factors``).
- ``partition_spatial_chunks`` gives each block (LAZ chunk) to exactly one slice, by a k-d split of block
  centres weighted by point counts: every point is decoded once and slices hold similar point counts, but
  their edges follow the chunks, so they overlap a little and are not rectangles (each reports the extent
  of its chunks, ``chunk_bounds``; its ``bounds`` is None). Use it when the work is per point or per
  neighbourhood of a few metres (histograms, ground filtering, tiling on output) and an exact grid is not
  needed: on LAZ it is the fast way to read a tile.
- ``partition_num_chunks`` (every format's default, here ``partition_num_points``) splits the points in
  file order into runs whose sizes differ by at most one.

A slice names the byte ranges it needs and what to keep of them; its worker fetches the header and VLRs
and those ranges in one ``read_ranges`` call, decodes LAZ chunks with lazrs, and keeps its points. The slice
also carries the index's bounds of the blocks it reads, and the worker checks every point it decodes
against its block's (a min/max per block): a sidecar rewritten to move blocks is a :class:`CorruptIndexError`
in any slice that reads a moved block, not silently lost points. (A box whose blocks the index moved away
reads none of them, so it cannot notice; a partition that covers the cloud reads every block.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from dataplug.formats.geospatial.las.header import check_scales, laszip_record, parse_header, read_header_bytes, triple
from dataplug.errors import CorruptIndexError, InvalidFormatError, StrategyArgumentError
from dataplug.executors import map_ordered
from dataplug.format import DataFormat, Detection, IndexData, PreprocessContext, Sample
from dataplug.formats.geospatial.las.cells import balanced_edges, block_rows, kd_split, las_window_rows, meeting
from dataplug.formats.geospatial.las.blocks import (
    BLOCK_TABLES,
    HISTOGRAM,
    RUN_TABLES,
    Blocks,
    BlockScan,
    groups,
    las_blocks,
    laz_blocks,
    load_blocks,
    tables_fit,
)
from dataplug.formats.geospatial.las.slices import INT32_MAX, INT32_MIN, Extent, LiDARSlice, Row, _raw_range
from dataplug.strategies import bbox_window, even_bounds, grid_shape, positive_int, step_bounds, strategy

__all__ = [
    "INT32_MAX",
    "INT32_MIN",
    "LiDARAttributes",
    "LiDARPointCloud",
    "LiDARSlice",
    "Row",
    "grid_shape",
    "laszip_record",
    "parse_header",
    "partition_bbox",
    "partition_num_chunks",
    "partition_num_points",
    "partition_points_per_chunk",
    "partition_spatial_chunks",
    "square_split_strategy",
]

#: Target size of a LAS block (``block_points`` defaults to this many bytes of records).
DEFAULT_BLOCK_BYTES = 2 * 2**20
#: Points per LAS run with its own bounds (``run_points`` overrides; 0 keeps block bounds only).
DEFAULT_RUN_POINTS = 32
#: Bytes each task of the index pass reads (``chunk_size=`` overrides): LAS blocks, or LAZ chunks, which the
#: task decodes one by one (lazrs holds the GIL while it decodes: a process executor spreads LAZ over cores).
LAS_GROUP_BYTES = 32 * 2**20
LAZ_GROUP_BYTES = 8 * 2**20


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
    #: Points per LAS run with its own x/y bounds in the index (0: none, and always 0 for LAZ).
    run_points: int
    #: Cells per axis of the per-block histograms (0: none) and the extent they cover (min x, min y, max x, max y).
    histogram_grid: int
    histogram_extent: tuple[float, float, float, float]


class LiDARPointCloud(DataFormat):
    """A LAS or LAZ point cloud. Options: ``block_points`` and ``run_points`` (LAS), ``histogram_grid``."""

    Attributes = LiDARAttributes
    #: 2: LAS indexes gained per-run bounds (``block_frame``, ``run_bounds``); older ones need preprocess(force=True).
    index_version = 2
    options = {
        "block_points": "points per LAS block in the index (default: about 2 MiB of records)",
        "run_points": f"points per LAS run with its own bounds, for spatial slices (default {DEFAULT_RUN_POINTS}; 0: none)",
        "histogram_grid": "cells per axis of per-block point histograms, for balanced splits (default 0: none)",
    }

    sniff_priority = 30

    @classmethod
    def sniff(cls, sample: Sample) -> Detection | None:
        """LAS/LAZ's ``LASF`` signature, uncompressed."""
        if sample.codec == "none" and sample.raw.startswith(b"LASF"):
            return cls.detected(sample, "starts with 'LASF'")
        return None

    @classmethod
    def preprocess(cls, ctx: PreprocessContext) -> IndexData:
        url, size = ctx.obj.url, ctx.info.size
        header = parse_header(url, read_header_bytes(ctx.obj, ctx.info))
        point_size, count, data_start = header.point_format.size, header.point_count, header.offset_to_point_data
        if count == 0:
            raise InvalidFormatError(url, "empty point cloud: the header says it holds 0 points")
        check_scales(url, header)
        grid = _option(ctx, "histogram_grid", 0, minimum=0)
        laszip = laszip_record(url, header) if header.are_points_compressed else None
        run_points = 0
        if laszip is None:
            block_points = _option(ctx, "block_points", max(1, DEFAULT_BLOCK_BYTES // point_size), minimum=1)
            run_points = _option(ctx, "run_points", DEFAULT_RUN_POINTS, minimum=0)
            starts, ends, counts = las_blocks(url, header, size, block_points)
        else:
            starts, ends, counts, block_points = laz_blocks(ctx.obj, ctx.info, header, laszip)
        x0, y0, x1, y1 = (float(v) for v in (header.x_min, header.y_min, header.x_max, header.y_max))
        extent = (x0, y0, x1, y1) if all(math.isfinite(v) for v in (x0, y0, x1, y1)) else (0.0, 0.0, 0.0, 0.0)
        scales, offsets = triple(header.scales), triple(header.offsets)
        scan = BlockScan(ctx.obj, ctx.info, point_size, laszip, run_points, grid, extent, scales, offsets)
        tasks = groups(starts, ends, counts, ctx.chunk_size or (LAS_GROUP_BYTES if laszip is None else LAZ_GROUP_BYTES))
        results = map_ordered(scan, tasks, ctx.executor, ctx.progress, desc=f"indexing {url}", nbytes=size)
        raw = np.concatenate([r for r, _, _ in results])
        bounds = raw.astype(np.float64) * np.tile(header.scales, 2) + np.tile(header.offsets, 2)
        tables = {
            "block_start": starts,
            "block_end": ends,
            "block_first": np.concatenate(([0], np.cumsum(counts))).astype(np.int64),
            "block_bounds": bounds,
        }
        if run_points:
            tables["block_frame"] = raw[:, [0, 1, 3, 4]].astype(np.int32)
            tables["run_bounds"] = np.concatenate([runs for _, runs, _ in results])
        if grid:
            tables[HISTOGRAM] = np.concatenate([h for _, _, h in results])
        attributes = LiDARAttributes(
            size=size,
            point_count=count,
            point_format_size=point_size,
            offset_to_point_data=data_start,
            mins=triple(bounds[:, :3].min(axis=0)),
            maxs=triple(bounds[:, 3:].max(axis=0)),
            point_format_id=header.point_format.id,
            extra_bytes=header.point_format.num_extra_bytes,
            version=str(header.version),
            scales=scales,
            offsets=offsets,
            compressed=laszip is not None,
            blocks=len(starts),
            block_points=block_points,
            run_points=run_points,
            histogram_grid=grid,
            histogram_extent=extent,
        )
        return IndexData(attributes, tables=tables)

    @classmethod
    def validate_index(cls, url: str, attributes: Any, tables: dict[str, np.ndarray], blob_sizes: dict[str, int], size: int) -> None:
        a = attributes
        needed = BLOCK_TABLES + (RUN_TABLES if a.run_points else ()) + ((HISTOGRAM,) if a.histogram_grid else ())
        missing = [name for name in needed if name not in tables]
        if missing:
            raise CorruptIndexError(url, f"LiDAR index tables missing: {missing}")
        start, end, first, bounds = (tables[name] for name in BLOCK_TABLES)
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
            and np.array_equal(bounds[:, :3].min(axis=0), a.mins)
            and np.array_equal(bounds[:, 3:].max(axis=0), a.maxs)
            and (a.compressed or np.array_equal(end - start, np.diff(first) * a.point_format_size))
            and tables_fit(tables, n, a.compressed, a.run_points, a.histogram_grid)
        )
        if not ok:
            raise CorruptIndexError(url, "LiDAR block index does not fit the object (offsets, point counts, bounds or runs)")
        if a.run_points:
            scale, offset = np.tile(a.scales[:2], 2), np.tile(a.offsets[:2], 2)
            if not np.array_equal(tables["block_frame"].astype(np.float64) * scale + offset, bounds[:, [0, 1, 3, 4]]):
                raise CorruptIndexError(url, "LiDAR index tables disagree: block_bounds and block_frame give blocks different x/y bounds")


def _option(ctx: PreprocessContext, name: str, default: int, minimum: int) -> int:
    """A whole-number preprocessing option, or :class:`StrategyArgumentError` naming it."""
    value = ctx.options.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise StrategyArgumentError(ctx.obj.url, f"{name} must be a whole number >= {minimum}, got {value!r}")
    return int(value)


# -- strategies ------------------------------------------------------------------------------------------


def _blocks(co: Any) -> Blocks:
    return load_blocks(co.index().tables, co.attributes.run_points)


def _extents(co: Any, rows: list[Row]) -> tuple[Extent, ...]:
    """The index's number, point range and x/y bounds of every block that ``rows`` meet, for the worker to
    check the points it decodes against (:func:`check_extents`)."""
    spans = np.array([(row[2], row[3]) for row in rows if row[3] > 0], dtype=np.int64).reshape(-1, 2)
    if not spans.size:
        return ()
    tables = co.index().tables
    first, bounds = tables["block_first"], tables["block_bounds"]
    k0 = np.searchsorted(first, spans[:, 0], side="right") - 1
    k1 = np.searchsorted(first, spans[:, 0] + spans[:, 1] - 1, side="right") - 1
    parts = k1 - k0 + 1
    blocks = np.unique(np.repeat(k0 - (np.cumsum(parts) - parts), parts) + np.arange(int(parts.sum())))
    xy = bounds[blocks][:, [0, 1, 3, 4]].tolist()
    return tuple((k, int(first[k]), int(first[k + 1]), *b) for k, b in zip(blocks.tolist(), xy))


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
        extents=_extents(co, rows),
        **keep,
    )


def _window_slice(co: Any, blocks: Blocks, number: int, window: tuple[float, float, float, float], closed: tuple[bool, bool]) -> LiDARSlice:
    """A slice of the points in ``window`` (its ``bounds``; half-open, ``closed`` on the axes where it ends
    on the cloud's maximum edge): LAS runs that meet it, or LAZ chunks that meet it."""
    a = co.attributes
    if a.compressed:
        rows = block_rows(blocks, *meeting(blocks, window, closed), merge=False)
    else:
        raw = (
            *_raw_range(window[0], window[2], closed[0], a.scales[0], a.offsets[0]),
            *_raw_range(window[1], window[3], closed[1], a.scales[1], a.offsets[1]),
        )
        # Only touching runs join into one row: the store's policy joins near rows into one request, and the
        # points between them are fetched but never decoded.
        rows = las_window_rows(blocks, window, closed, raw, (a.offset_to_point_data, a.point_format_size))
    return _slice(co, number, rows, bounds=window, closed=closed)


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
            rows = block_rows(blocks, np.arange(k0, k1), None, merge=False)
        elif stop > first:
            start = a.offset_to_point_data + first * a.point_format_size
            rows = [(start, start + (stop - first) * a.point_format_size, first, stop - first, 1)]
        out.append(_slice(co, number, rows, first=first, stop=stop))
    return out


@strategy(LiDARPointCloud)
def square_split_strategy(co: Any, num_chunks: int, balance: bool = False) -> list[LiDARSlice]:
    """About ``num_chunks`` cells over the cloud's extent (a near-square grid of ``grid_shape(num_chunks)``
    columns by rows, as in the original), each slice reading only what meets its cell: LAS runs of
    ``run_points`` points, LAZ chunks (decoded whole, so on a scan-ordered LAZ the cells together decode
    each point about twice; ``partition_spatial_chunks`` decodes each once).

    Cells are half-open (``min <= x < max``), the last column and row closed on the cloud's maximum edge,
    so every point lands in exactly one slice. ``balance=True`` places the edges at quantiles of the
    index's histograms (preprocess with ``histogram_grid=``) so slices hold similar point counts.
    """
    columns, rows = grid_shape(positive_int(co.url, "num_chunks", num_chunks))
    a, blocks = co.attributes, _blocks(co)
    if balance:
        if blocks.histogram is None:
            raise StrategyArgumentError(co.url, "balance=True needs histograms in the index: preprocess(force=True, histogram_grid=16)")
        x_edges, y_edges = balanced_edges(blocks.histogram, a.histogram_grid, a.histogram_extent, a.mins, a.maxs, columns, rows)
    else:
        x_edges = np.linspace(a.mins[0], a.maxs[0], columns + 1)
        y_edges = np.tile(np.linspace(a.mins[1], a.maxs[1], rows + 1), (columns, 1))
    out = []
    for i in range(columns):
        for j in range(rows):
            window = (float(x_edges[i]), float(y_edges[i, j]), float(x_edges[i + 1]), float(y_edges[i, j + 1]))
            out.append(_window_slice(co, blocks, len(out), window, (i == columns - 1, j == rows - 1)))
    return out


@strategy(LiDARPointCloud)
def partition_bbox(co: Any, minx: float, miny: float, maxx: float, maxy: float) -> list[LiDARSlice]:
    """One slice with the points in the half-open box ``minx <= x < maxx``, ``miny <= y < maxy``, closed
    (``<= max``) on an axis where the box reaches the cloud's maximum: boxes that share an edge never share
    a point, like the cells of ``square_split_strategy``, and a box up to the maximum keeps the points on it."""
    window = bbox_window(co.url, minx, miny, maxx, maxy)
    a = co.attributes
    return [_window_slice(co, _blocks(co), 0, window, (window[2] >= a.maxs[0], window[3] >= a.maxs[1]))]


@strategy(LiDARPointCloud)
def partition_spatial_chunks(co: Any, num_chunks: int) -> list[LiDARSlice]:
    """``num_chunks`` spatially compact slices of whole blocks (LAZ chunks, LAS blocks), each block in
    exactly one slice, so every point is decoded once.

    Blocks are split by a k-d tree over their centres, weighted by their point counts: slices hold similar
    point counts and neighbouring slices come one after the other. A slice keeps all its blocks' points and
    reports their extent as ``chunk_bounds`` (min x, min y, max x, max y, closed; its ``bounds`` is None, as
    it selects chunks, not a rectangle); those of neighbouring slices overlap where chunks do. Slices
    beyond the number of blocks are empty (``chunk_bounds`` None). Prefer it to
    ``square_split_strategy`` on LAZ whenever slices need not be exact rectangles.
    """
    parts = positive_int(co.url, "num_chunks", num_chunks)
    blocks = _blocks(co)
    centres = (blocks.bounds[:, 0:2] + blocks.bounds[:, 3:5]) / 2
    out = []
    for number, chosen in enumerate(kd_split(centres, blocks.counts, parts)):
        b = blocks.bounds[chosen]
        bounds = None if not chosen.size else (float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 3].max()), float(b[:, 4].max()))
        out.append(_slice(co, number, block_rows(blocks, chosen, None, merge=not co.attributes.compressed), chunk_bounds=bounds))
    return out


@strategy(LiDARPointCloud)
def partition_num_points(co: Any, num_chunks: int) -> list[LiDARSlice]:
    """``num_chunks`` runs of consecutive points whose sizes differ by at most one."""
    return _run_slices(co, even_bounds(co.attributes.point_count, positive_int(co.url, "num_chunks", num_chunks)))


@strategy(LiDARPointCloud)
def partition_num_chunks(co: Any, num_chunks: int) -> list[LiDARSlice]:
    """Every format's default split, here ``partition_num_points``: exactly ``num_chunks`` runs of points in
    file order, sizes within one point, counts known without reading (spatial splits give a grid of about
    ``num_chunks`` cells, ``square_split_strategy``, or chunk groups, ``partition_spatial_chunks``)."""
    return _run_slices(co, even_bounds(co.attributes.point_count, positive_int(co.url, "num_chunks", num_chunks)))


@strategy(LiDARPointCloud)
def partition_points_per_chunk(co: Any, points: int) -> list[LiDARSlice]:
    """Runs of exactly ``points`` consecutive points (the last one shorter)."""
    return _run_slices(co, step_bounds(co.attributes.point_count, positive_int(co.url, "points", points)))
