"""COPC slices: the points of some octree nodes, kept by run or by space, fetched with one ``read_ranges``
call and decoded with lazrs; they come back as a plain LAS 1.4 (``laspy.LasData``), Arrow or pandas."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dataplug.formats.geospatial.las.header import laszip_record
from dataplug.errors import CorruptIndexError, InvalidFormatError
from dataplug.formats.geospatial.las.copc_hierarchy import COPC_VLRS, copc_info, read_hierarchy
from dataplug.formats.geospatial.las.points import PointSlice, raw_xy

try:
    import laspy

    from dataplug.formats.geospatial.las.laz import decode_chunks
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("COPC support needs laspy and lazrs: pip install 'dataplug[lidar]'") from exc

#: A slice's node: chunk offset, byte size, point count, index of its first point among the selected nodes,
#: depth, x and y of its voxel key, and 1 when the slice keeps all its points.
Node = tuple[int, int, int, int, int, int, int, int]


def _inside(values: np.ndarray, lo: float, hi: float, closed: bool) -> np.ndarray:
    return (values >= lo) & ((values <= hi) if closed else (values < hi))


@dataclass
class COPCSlice(PointSlice):
    """Points of a COPC object: those of some octree nodes, kept by run (``first``/``stop``), by space
    (``bounds``) or all of them (whole nodes; ``chunk_bounds`` is then their cubes' bounding box).

    ``bounds`` is the rectangle a spatial slice selects: half-open (``min <= x < max``), or ``<= max`` on an
    axis whose ``closed`` flag is set (a box that reaches the header's maximum). The worker tests points
    against ``selection``: ``bounds``, with the outer edges of a grid's border cells moved to infinity, so
    a point outside the header's bounds still lands in one cell. ``root`` is the octree's centre x, centre
    y, half size and the tolerance of the check that a node's points lie in its cube.
    """

    header_size: int
    point_size: int
    root: tuple[float, float, float, float]
    nodes: tuple[Node, ...]
    first: int | None = None
    stop: int | None = None
    bounds: tuple[float, float, float, float] | None = None
    selection: tuple[float, float, float, float] | None = None
    closed: tuple[bool, bool] = (False, False)
    chunk_bounds: tuple[float, float, float, float] | None = None
    _count: int | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def dump_compressed(self) -> bool:
        """COPC slices dump as plain LAZ."""
        return True

    def _indexed_count(self) -> int | None:
        if self.first is not None and self.stop is not None:
            return self.stop - self.first
        if self.selection is None or all(node[7] for node in self.nodes):
            return sum(node[2] for node in self.nodes)
        return None

    @property
    def extent(self) -> tuple[float, float, float, float] | None:
        """The rectangle ``bounds``, or the ``chunk_bounds`` of a slice of whole nodes; ``None`` for a run."""
        return self.bounds if self.bounds is not None else self.chunk_bounds

    def byte_range(self) -> tuple[int, int] | None:
        """``[start, end)`` of the object's bytes the slice's node chunks span (it may skip chunks between;
        every slice also reads the header and VLRs, ``[0, header_size)``). ``None`` when it reads no node."""
        if not self.nodes:
            return None
        return min(node[0] for node in self.nodes), max(node[0] + node[1] for node in self.nodes)

    def _records(self, selection: Any = None) -> tuple[laspy.LasHeader, np.ndarray]:
        header, parts = self._fetch((offset, offset + nbytes) for offset, nbytes, *_ in self.nodes)
        info = copc_info(self.url, header)
        laszip = laszip_record(self.url, header, drop=COPC_VLRS)
        dtype = header.point_format.dtype()
        if not self.nodes:
            return self._counted(header, np.zeros(0, dtype))
        rows = np.array(self.nodes, dtype=np.int64).reshape(-1, 8)
        payload = parts[0] if len(parts) == 1 else b"".join(parts)
        decoded = decode_chunks(self.url, laszip, payload, rows[:, 2], rows[:, 1], rows[:, 0], self.point_size, selection)
        points = np.frombuffer(decoded, dtype=dtype)
        xy = raw_xy([points])
        self._check_nodes(header, info, rows, xy)
        if self.first is not None and self.stop is not None:
            start = self.first - int(rows[0, 3])
            points = points[start : start + self.stop - self.first]
        elif self.selection is not None:
            # Filtered as rows of bytes: numpy copies those at memory speed, a structured dtype field by field.
            keep = self._kept(xy, header, rows)
            if not keep.all():
                points = points.view(np.uint8).reshape(-1, dtype.itemsize)[keep].view(dtype)[:, 0]
        return self._counted(header, points)

    def _check_nodes(self, header: laspy.LasHeader, info: Any, rows: np.ndarray, xy: np.ndarray) -> None:
        """Check that the decoded points (raw X and Y ``xy``) of the nodes ``rows`` lie in the cubes the index
        gives them, from their keys and the octree root: a min/max per node.

        A point outside its cube means the index or the object lies. The object's COPC info VLR (in the header
        every slice reads) must give the index's root, and on a failure the object's hierarchy is read to
        tell which lies: an index whose node disagrees with it is a :class:`CorruptIndexError`; a file whose
        own octree misplaces points is an :class:`InvalidFormatError` for a spatial slice, and harmless to a
        slice of runs or whole nodes (their points do not depend on where the nodes are)."""
        found = (float(info.center[0]), float(info.center[1]), float(info.halfsize))
        if found != tuple(self.root[:3]):
            raise CorruptIndexError(
                self.url,
                f"the index's octree root (centre x, centre y, half size {tuple(self.root[:3])}) disagrees with the object's COPC info VLR "
                f"({found}): the sidecar does not describe this object",
            )
        starts = np.concatenate(([0], np.cumsum(rows[:-1, 2])))
        x0, y0, x1, y1 = node_rect(self.root, rows[:, 4], rows[:, 5], rows[:, 6])
        outside = np.zeros(len(rows), dtype=bool)
        for j, lo, hi in ((0, x0, x1), (1, y0, y1)):
            column = xy[:, j]
            outside |= np.minimum.reduceat(column, starts) * header.scales[j] + header.offsets[j] < lo
            outside |= np.maximum.reduceat(column, starts) * header.scales[j] + header.offsets[j] > hi
        if not outside.any():
            return
        hierarchy = read_hierarchy(self.obj, self.object_info, header, info)
        entries = zip(hierarchy.offsets.tolist(), hierarchy.keys.tolist(), hierarchy.byte_sizes.tolist(), hierarchy.point_counts.tolist())
        files = {offset: (*key[:3], nbytes, count) for offset, key, nbytes, count in entries}
        for k in np.flatnonzero(outside).tolist():
            offset, nbytes, count, _, depth, x, y, _ = (int(v) for v in rows[k])
            held = files.get(offset)
            if held != (depth, x, y, nbytes, count):
                there = "no node" if held is None else f"node {list(held[:3])} (depth, x, y) of {held[4]} points in {held[3]} bytes"
                raise CorruptIndexError(
                    self.url,
                    f"the index's octree node [{depth}, {x}, {y}] (depth, x, y) of {count} points in {nbytes} bytes at byte {offset} "
                    f"disagrees with the object's hierarchy, which has {there} there: the sidecar does not describe this object",
                )
        if self.selection is not None:
            k = int(np.flatnonzero(outside)[0])
            depth, x, y = (int(v) for v in rows[k, 4:7])
            cause = (
                f"a point of octree node {[depth, x, y]} (depth, x, y) lies outside the node's cube [{x0[k]}, {x1[k]}] x [{y0[k]}, {y1[k]}]: "
                "spatial slices rely on the octree; read this file by runs (partition_num_points) or as LiDARPointCloud"
            )
            raise InvalidFormatError(self.url, cause, offset=int(rows[k, 0]))

    def _kept(self, xy: np.ndarray, header: laspy.LasHeader, rows: np.ndarray) -> np.ndarray:
        """Which of the decoded points (raw X and Y ``xy``, those of the nodes ``rows`` end to end) lie inside
        ``selection``."""
        assert self.selection is not None
        x = xy[:, 0] * header.scales[0] + header.offsets[0]
        y = xy[:, 1] * header.scales[1] + header.offsets[1]
        bx0, by0, bx1, by1 = self.selection
        return np.repeat(rows[:, 7].astype(bool), rows[:, 2]) | (_inside(x, bx0, bx1, self.closed[0]) & _inside(y, by0, by1, self.closed[1]))


def node_rect(root: tuple[float, float, float, float], depth: Any, x: Any, y: Any) -> tuple[Any, Any, Any, Any]:
    """The footprint (min x, min y, max x, max y) of voxel (``depth``, ``x``, ``y``) of the octree ``root``
    (centre x, centre y, half size, tolerance), widened by the tolerance; for one voxel or arrays of them."""
    cx, cy, half, tol = root
    side = 2 * half / 2**depth
    x0, y0 = cx - half + x * side, cy - half + y * side
    return x0 - tol, y0 - tol, x0 + side + tol, y0 + side + tol
