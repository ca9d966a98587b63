"""Cloud Optimized Point Clouds (COPC 1.0, copc.io): LAZ 1.4 files whose points are clustered in an octree,
one LAZ chunk per node. Slices by space (grid cells, a box), by runs of points or by whole nodes,
optionally only down to a level of detail, every point in exactly one slice.

Preprocessing reads the header, the VLRs and the hierarchy pages (:mod:`~dataplug.formats.geospatial.las.copc_hierarchy`), a few range reads
whatever the object's size, and decodes no point. The index keeps, for every node with points, its voxel key
(depth, x, y, z), the byte offset and size of its chunk and its point count, in file order.

A spatial slice names the nodes whose cube meets its cell; its worker fetches the header and those chunks in
one ``read_ranges`` call, decodes them with lazrs and keeps the points inside the cell (:mod:`~dataplug.formats.geospatial.las.copc_slices`).
Cells and boxes (a slice's ``bounds``) are half-open (``min <= x < max``), closed on the header's maximum
edge, and the cells on the grid's border reach past the header's extent to infinity, so every point lands
in exactly one cell even if the header's bounds are off. Node selection
trusts that a node's points lie in its cube (give or take a scale step); every slice checks this for every
node it decodes (a min/max per node), and the index's octree root against the object's COPC info VLR. A
point outside its cube is a :class:`CorruptIndexError` when the object's hierarchy disagrees with the index
about that node (a sidecar rewritten to move nodes), else, for a spatial slice, an
:class:`InvalidFormatError` (the file's own octree misplaces points) rather than lost points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from dataplug.formats.geospatial.las.header import parse_header, triple
from dataplug.errors import CorruptIndexError, InvalidFormatError, StrategyArgumentError
from dataplug.format import DataFormat, Detection, IndexData, PreprocessContext, Sample
from dataplug.formats.geospatial.las.copc_hierarchy import MAX_KEY_DEPTH, copc_info, read_header, read_hierarchy
from dataplug.formats.geospatial.las.copc_slices import COPCSlice, node_rect
from dataplug.strategies import bbox_window, even_bounds, grid_shape, positive_int, strategy, window_overlap

#: Sidecar tables: voxel keys (n, 4) and each node's chunk offset, byte size and point count, in file order.
TABLES = ("node_key", "node_offset", "node_bytes", "node_points")


@dataclass(frozen=True)
class COPCAttributes:
    """What preprocessing found. ``mins``/``maxs`` are the header's bounds; ``center`` and ``halfsize`` give
    the octree's root cube; ``root_offset``/``root_size`` locate the root hierarchy page."""

    size: int
    point_count: int
    point_format_id: int
    #: Bytes per uncompressed point record, extra bytes included.
    point_format_size: int
    extra_bytes: int
    version: str
    offset_to_point_data: int
    scales: tuple[float, float, float]
    offsets: tuple[float, float, float]
    mins: tuple[float, float, float]
    maxs: tuple[float, float, float]
    center: tuple[float, float, float]
    halfsize: float
    #: Distance between points at the root; halved at every level.
    spacing: float
    root_offset: int
    root_size: int
    #: Depth of the deepest node with points, the number of such nodes and of hierarchy pages.
    depth: int
    nodes: int
    pages: int


class CloudOptimizedPointCloud(DataFormat):
    """A COPC point cloud (the original Dataplug's class name; registered and importable as ``COPC``). It
    takes no preprocessing option."""

    name = "COPC"
    Attributes = COPCAttributes
    options: ClassVar[dict[str, str]] = {}

    sniff_priority = 40

    @classmethod
    def sniff(cls, sample: Sample) -> Detection | None:
        """COPC puts its info VLR first, right after a 375-byte LAS 1.4 header: user id ``copc`` at byte 377."""
        raw = sample.raw
        if sample.codec == "none" and raw.startswith(b"LASF") and len(raw) >= 393 and raw[377:393].rstrip(b"\x00") == b"copc":
            return cls.detected(sample, "starts with 'LASF' and a COPC info VLR", ("LiDARPointCloud",))
        return None

    @classmethod
    def preprocess(cls, ctx: PreprocessContext) -> IndexData:
        url = ctx.obj.url
        header = parse_header(url, read_header(ctx.obj, ctx.info))
        info = copc_info(url, header)
        hierarchy = read_hierarchy(ctx.obj, ctx.info, header, info)
        total = int(hierarchy.point_counts.sum())
        if total != header.point_count:
            raise InvalidFormatError(url, f"the COPC hierarchy holds {total} points but the header says {header.point_count}")
        if total == 0:
            raise InvalidFormatError(url, "empty point cloud: the header says it holds 0 points")
        attributes = COPCAttributes(
            size=ctx.info.size,
            point_count=total,
            point_format_id=header.point_format.id,
            point_format_size=header.point_format.size,
            extra_bytes=header.point_format.num_extra_bytes,
            version=str(header.version),
            offset_to_point_data=header.offset_to_point_data,
            scales=triple(header.scales),
            offsets=triple(header.offsets),
            mins=triple(header.mins),
            maxs=triple(header.maxs),
            center=triple(info.center),
            halfsize=float(info.halfsize),
            spacing=float(info.spacing),
            root_offset=int(info.hierarchy_root_offset),
            root_size=int(info.hierarchy_root_size),
            depth=int(hierarchy.keys[:, 0].max()),
            nodes=len(hierarchy.keys),
            pages=hierarchy.pages,
        )
        tables = dict(zip(TABLES, (hierarchy.keys, hierarchy.offsets, hierarchy.byte_sizes, hierarchy.point_counts)))
        return IndexData(attributes, tables=tables)

    @classmethod
    def validate_index(cls, url: str, attributes: Any, tables: dict[str, np.ndarray], blob_sizes: dict[str, int], size: int) -> None:
        a = attributes
        missing = [name for name in TABLES if name not in tables]
        if missing:
            raise CorruptIndexError(url, f"COPC index tables missing: {missing}")
        keys, offsets, nbytes, points = (tables[name] for name in TABLES)
        n = a.nodes
        ok = a.size == size and n >= 1 and keys.shape == (n, 4) and offsets.shape == nbytes.shape == points.shape == (n,)
        if ok:
            d = keys[:, 0].astype(np.int64)
            ok = (
                0 <= d.min()
                and d.max() == a.depth <= MAX_KEY_DEPTH
                and bool(np.all(keys[:, 1:] >= 0))
                and bool(np.all(keys[:, 1:] < (np.int64(1) << d)[:, None]))
                and offsets[0] >= a.offset_to_point_data + 8
                and bool(np.all(nbytes > 0))
                and bool(np.all(offsets[:-1] + nbytes[:-1] <= offsets[1:]))
                and offsets[-1] + nbytes[-1] <= size
                and bool(np.all(points > 0))
                and int(points.sum()) == a.point_count
                and all(math.isfinite(v) for v in (*a.mins, *a.maxs, *a.center, a.halfsize))
                and a.halfsize > 0
            )
        if not ok:
            raise CorruptIndexError(url, "COPC node index does not fit the object (keys, chunk offsets or point counts)")


#: The README's name of the format.
COPC = CloudOptimizedPointCloud


# -- strategies ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Nodes:
    """The nodes a strategy may use (those down to ``max_depth``) in file order, with their footprints."""

    rows: np.ndarray  # (n, 7): offset, byte size, point count, first point, depth, x, y
    rects: np.ndarray  # (n, 4): min x, min y, max x, max y, widened by the tolerance
    total: int
    depth: int


def _root(co: Any) -> tuple[float, float, float, float]:
    """The octree's centre x, centre y, half size, and the tolerance of node footprints: one scale step
    (a quantized point may round past its cube's face) plus float rounding."""
    a = co.attributes
    tol = max(a.scales[0], a.scales[1]) + 1e-9 * (a.halfsize + abs(a.center[0]) + abs(a.center[1]))
    return a.center[0], a.center[1], a.halfsize, tol


def _nodes(co: Any, max_depth: int | None) -> _Nodes:
    tables = co.index().tables
    keys = tables["node_key"].astype(np.int64)
    keep = np.ones(len(keys), dtype=bool)
    if max_depth is not None:
        if isinstance(max_depth, bool) or not isinstance(max_depth, (int, np.integer)) or max_depth < 0:
            raise StrategyArgumentError(co.url, f"max_depth must be a whole number >= 0 or None, got {max_depth!r}")
        keep = keys[:, 0] <= max_depth
    keys = keys[keep]
    counts = tables["node_points"][keep].astype(np.int64)
    first = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rows = np.column_stack((tables["node_offset"][keep], tables["node_bytes"][keep], counts, first, keys[:, :3]))
    rects = np.column_stack(node_rect(_root(co), keys[:, 0], keys[:, 1], keys[:, 2]))
    return _Nodes(rows, rects, int(counts.sum()), int(keys[:, 0].max(initial=0)))


def _slice(co: Any, number: int, rows: np.ndarray, **keep: Any) -> COPCSlice:
    a = co.attributes
    return COPCSlice(
        obj=co.obj,
        object_info=co.index().object_info,
        number=number,
        header_size=a.offset_to_point_data,
        point_size=a.point_format_size,
        root=_root(co),
        nodes=tuple(tuple(int(v) for v in row) for row in rows.tolist()),
        **keep,
    )


def _spatial(co: Any, number: int, nodes: _Nodes, bounds: tuple[float, ...], selection: tuple[float, ...], closed: tuple[bool, bool]) -> COPCSlice:
    """The slice of the points in ``selection`` (``bounds``, or wider on a grid's border): the nodes whose
    footprint meets it, flagged whole when ``selection`` holds their footprint."""
    meets, whole = window_overlap(nodes.rects, selection, closed)
    rows = np.column_stack((nodes.rows[meets], whole[meets]))
    return _slice(co, number, rows, bounds=tuple(map(float, bounds)), selection=tuple(map(float, selection)), closed=closed)


def _off_boundaries(co: Any, edges: np.ndarray, axis: int, depth: int) -> np.ndarray:
    """Grid ``edges`` whose inner ones lie within two tolerances of a node boundary moved two tolerances
    above it. A node's footprint is widened by the tolerance, so a cell edge on a boundary would make the
    cells on both sides fetch the nodes on both sides. In a square tile split 4 x 4 every edge is a
    boundary: on the benchmark's 1 M-point tile (105 nodes) its cells decoded 5.2 points per point kept,
    3.1 with the edges moved (``python benchmarks/geospatial_copc.py --points 1000000 --slices 16
    --factors``; a node that straddles an edge is still decoded on both sides, as it must be)."""
    cx, cy, half, tol = _root(co)
    low, side = (cx, cy)[axis] - half, 2 * half / 2**depth
    inner = edges[1:-1]
    boundary = low + np.round((inner - low) / side) * side
    near = np.abs(inner - boundary) <= 2 * tol
    inner[near] = boundary[near] + 2 * tol
    return np.maximum.accumulate(edges)


@strategy(CloudOptimizedPointCloud)
def square_split_strategy(co: Any, num_chunks: int, max_depth: int | None = None) -> list[COPCSlice]:
    """About ``num_chunks`` cells over the header's extent (a near-square grid of ``grid_shape(num_chunks)``
    columns by rows, as in the original), each slice fetching only the nodes whose cube meets its cell.

    Cells (each slice's ``bounds``) are half-open (``min <= x < max``), the last column and row closed on
    the header's maximum edge; the border cells reach on to infinity, so every point (of the nodes down to
    ``max_depth``, the level of detail; all nodes when ``None``) lands in exactly one slice even where the
    header's bounds are off.
    """
    columns, rows = grid_shape(positive_int(co.url, "num_chunks", num_chunks))
    a, nodes = co.attributes, _nodes(co, max_depth)
    x_edges = _off_boundaries(co, np.linspace(a.mins[0], a.maxs[0], columns + 1), 0, nodes.depth)
    y_edges = _off_boundaries(co, np.linspace(a.mins[1], a.maxs[1], rows + 1), 1, nodes.depth)
    out = []
    for i in range(columns):
        for j in range(rows):
            bounds = (x_edges[i], y_edges[j], x_edges[i + 1], y_edges[j + 1])
            selection = (
                -math.inf if i == 0 else bounds[0],
                -math.inf if j == 0 else bounds[1],
                math.inf if i == columns - 1 else bounds[2],
                math.inf if j == rows - 1 else bounds[3],
            )
            out.append(_spatial(co, len(out), nodes, bounds, selection, (False, False)))
    return out


@strategy(CloudOptimizedPointCloud)
def partition_bbox(co: Any, minx: float, miny: float, maxx: float, maxy: float, max_depth: int | None = None) -> list[COPCSlice]:
    """One slice with the points in the half-open box ``minx <= x < maxx``, ``miny <= y < maxy``, closed
    (``<= max``) on an axis where the box reaches the header's maximum (of the nodes down to ``max_depth``;
    all when ``None``): boxes that share an edge never share a point, like the cells of
    ``square_split_strategy``, and a box up to the maximum keeps the points on it."""
    window = bbox_window(co.url, minx, miny, maxx, maxy)
    a = co.attributes
    return [_spatial(co, 0, _nodes(co, max_depth), window, window, (window[2] >= a.maxs[0], window[3] >= a.maxs[1]))]


@strategy(CloudOptimizedPointCloud)
def partition_num_points(co: Any, num_chunks: int, max_depth: int | None = None) -> list[COPCSlice]:
    """``num_chunks`` runs of consecutive points in file order whose sizes differ by at most one (of the
    nodes down to ``max_depth``; all when ``None``)."""
    return _runs(co, num_chunks, max_depth)


@strategy(CloudOptimizedPointCloud)
def partition_num_chunks(co: Any, num_chunks: int, max_depth: int | None = None) -> list[COPCSlice]:
    """Every format's default split, here ``partition_num_points``: exactly ``num_chunks`` runs of points in
    file order (node by node), sizes within one point, counts known without reading (spatial splits:
    ``square_split_strategy``, ``partition_spatial_chunks``)."""
    return _runs(co, num_chunks, max_depth)


def _runs(co: Any, num_chunks: int, max_depth: int | None) -> list[COPCSlice]:
    nodes = _nodes(co, max_depth)
    bounds = even_bounds(nodes.total, positive_int(co.url, "num_chunks", num_chunks))
    starts = nodes.rows[:, 3]
    out = []
    for number, (first, stop) in enumerate(zip(bounds[:-1].tolist(), bounds[1:].tolist())):
        k0 = int(np.searchsorted(starts, first, side="right")) - 1 if stop > first else 0
        k1 = int(np.searchsorted(starts, stop, side="left")) if stop > first else 0
        rows = np.column_stack((nodes.rows[k0:k1], np.ones(max(k1 - k0, 0), dtype=np.int64)))
        out.append(_slice(co, number, rows, first=first, stop=stop))
    return out


@strategy(CloudOptimizedPointCloud)
def partition_spatial_chunks(co: Any, num_chunks: int, max_depth: int | None = None) -> list[COPCSlice]:
    """``num_chunks`` slices of whole octree nodes (LAZ chunks), each node in exactly one slice, so every
    point (of the nodes down to ``max_depth``; all when ``None``) is decoded once.

    Nodes are taken in Z order of their centres and cut into runs of similar point counts, so a slice's deep
    nodes are neighbours; its ``chunk_bounds`` is the bounding box of its nodes' cubes (its ``bounds`` is
    None: it selects nodes, not a rectangle), which the shallow nodes
    (the levels of detail, spread over the whole tile) make wide. Prefer it to ``square_split_strategy``
    when slices need not be exact rectangles: on the benchmark's 6 M-point tile its 16 cells decoded 1.8
    points per point kept, this strategy 1.0 (``python benchmarks/geospatial_copc.py --factors``).
    """
    parts = positive_int(co.url, "num_chunks", num_chunks)
    nodes = _nodes(co, max_depth)
    counts = nodes.rows[:, 2]
    order = np.argsort(_z_order(nodes.rows[:, 4:7], nodes.depth), kind="stable")
    middle = np.cumsum(counts[order]) - counts[order] / 2
    group = np.minimum((middle * parts / max(nodes.total, 1)).astype(np.int64), parts - 1)
    cuts = np.searchsorted(group, np.arange(parts + 1))
    out = []
    for number, (a, b) in enumerate(zip(cuts[:-1].tolist(), cuts[1:].tolist())):
        chosen = np.sort(order[a:b])
        r = nodes.rects[chosen]
        extent = None if not chosen.size else (float(r[:, 0].min()), float(r[:, 1].min()), float(r[:, 2].max()), float(r[:, 3].max()))
        out.append(_slice(co, number, np.column_stack((nodes.rows[chosen], np.ones(chosen.size, dtype=np.int64))), chunk_bounds=extent))
    return out


def _z_order(keys: np.ndarray, depth: int) -> np.ndarray:
    """The Z-order (Morton) code of the centre of each voxel (depth, x, y) on the grid of level ``depth + 1``."""
    d, x, y = (keys[:, j].astype(np.int64) for j in range(3))
    cx, cy = (2 * x + 1) << (depth - d), (2 * y + 1) << (depth - d)
    code = np.zeros(len(keys), dtype=np.int64)
    for bit in range(depth + 1):
        code |= ((cx >> bit) & 1) << (2 * bit) | ((cy >> bit) & 1) << (2 * bit + 1)
    return code
