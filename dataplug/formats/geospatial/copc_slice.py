"""COPC slices: the points of some octree nodes, kept by run or by space, fetched with one ``read_ranges``
call and decoded with lazrs; they come back as a plain LAS 1.4 (``laspy.LasData``), Arrow or pandas."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, BinaryIO, ClassVar

import numpy as np
import pyarrow as pa

from dataplug.errors import InvalidFormatError
from dataplug.formats.geospatial.copc_index import laszip_record, parse_header
from dataplug.slice import CloudObjectSlice

try:
    import laspy
    from laspy.vlrs.vlrlist import VLRList

    from dataplug.codecs.laz import XYZ_ONLY, decode_chunks
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("COPC support needs laspy and lazrs: pip install 'dataplug[lidar]'") from exc

#: A slice's node: chunk offset, byte size, point count, index of its first point among the selected nodes,
#: depth, x and y of its voxel key, and 1 when the slice keeps all its points.
Node = tuple[int, int, int, int, int, int, int, int]


def _merged(nodes: tuple[Node, ...]) -> list[tuple[int, int]]:
    """Byte ranges covering the chunks of ``nodes`` (in file order), adjacent chunks merged into one range."""
    out: list[list[int]] = []
    for offset, nbytes, *_ in nodes:
        if out and out[-1][1] == offset:
            out[-1][1] = offset + nbytes
        else:
            out.append([offset, offset + nbytes])
    return [(a, b) for a, b in out]


def _inside(values: np.ndarray, lo: float, hi: float, closed: bool) -> np.ndarray:
    return (values >= lo) & ((values <= hi) if closed else (values < hi))


@dataclass
class COPCSlice(CloudObjectSlice):
    """Points of a COPC object: those of some octree nodes, kept by run (``first``/``stop``), by space
    (``bounds``) or all of them (whole nodes; ``window`` is then their cubes' bounding box).

    A spatial slice keeps a point when ``bounds[0] <= x < bounds[2]`` and ``bounds[1] <= y < bounds[3]``
    (``<=`` on an axis whose ``closed`` flag is set); ``bounds`` is ``window`` with the grid's outer edges
    moved to infinity. ``root`` is the octree's centre x, centre y, half size and the tolerance of the
    check that a node's points lie in its cube.
    """

    header_size: int
    point_size: int
    root: tuple[float, float, float, float]
    nodes: tuple[Node, ...]
    first: int | None = None
    stop: int | None = None
    window: tuple[float, float, float, float] | None = None
    bounds: tuple[float, float, float, float] | None = None
    closed: tuple[bool, bool] = (False, False)

    #: :meth:`dump` writes LAZ.
    binary_output: ClassVar[bool] = True

    @property
    def num_points(self) -> int | None:
        """Points in a run slice; ``None`` for a spatial slice (known only once read)."""
        return None if self.first is None or self.stop is None else self.stop - self.first

    @property
    def num_records(self) -> int | None:
        return self.num_points

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
        """The object's header (describing a plain LAS of uncompressed points) and the slice's point records."""
        parts = self.obj.read_ranges([(0, self.header_size), *_merged(self.nodes)], expect=self.object_info)
        header = parse_header(self.url, parts[0])
        laszip = laszip_record(self.url, header)
        dtype = header.point_format.dtype()
        if not self.nodes:
            return header, np.zeros(0, dtype)
        rows = np.array(self.nodes, dtype=np.int64).reshape(-1, 8)
        payload = parts[1] if len(parts) == 2 else b"".join(parts[1:])
        decoded = decode_chunks(self.url, laszip, payload, rows[:, 2], rows[:, 1], rows[:, 0], self.point_size, selection)
        points = np.frombuffer(decoded, dtype=dtype)
        if self.first is not None and self.stop is not None:
            start = self.first - int(rows[0, 3])
            points = points[start : start + self.stop - self.first]
        elif self.bounds is not None:
            # Filtered as rows of bytes: numpy copies those at memory speed, a structured dtype field by field.
            keep = self._kept(points, header, rows)
            if not keep.all():
                points = points.view(np.uint8).reshape(-1, dtype.itemsize)[keep].view(dtype)[:, 0]
        return header, points

    def _kept(self, points: np.ndarray, header: laspy.LasHeader, rows: np.ndarray) -> np.ndarray:
        """Which of the decoded ``points`` (those of the nodes ``rows``, end to end) lie inside ``bounds``,
        after checking that every node's points lie in its cube."""
        assert self.bounds is not None
        x = points["X"] * header.scales[0] + header.offsets[0]
        y = points["Y"] * header.scales[1] + header.offsets[1]
        starts = np.concatenate(([0], np.cumsum(rows[:-1, 2])))
        x0, y0, x1, y1 = node_rect(self.root, rows[:, 4], rows[:, 5], rows[:, 6])
        outside = (np.minimum.reduceat(x, starts) < x0) | (np.maximum.reduceat(x, starts) > x1)
        outside |= (np.minimum.reduceat(y, starts) < y0) | (np.maximum.reduceat(y, starts) > y1)
        if outside.any():
            k = int(np.flatnonzero(outside)[0])
            cause = (
                f"a point of octree node {rows[k, 4:7].tolist()} (depth, x, y) lies outside the node's cube [{x0[k]}, {x1[k]}] x [{y0[k]}, {y1[k]}]: "
                "spatial slices rely on the octree; read this file by runs (partition_num_points) or as LiDARPointCloud"
            )
            raise InvalidFormatError(self.url, cause, offset=int(rows[k, 0]))
        bx0, by0, bx1, by1 = self.bounds
        return np.repeat(rows[:, 7].astype(bool), rows[:, 2]) | (_inside(x, bx0, bx1, self.closed[0]) & _inside(y, by0, by1, self.closed[1]))

    def get(self) -> laspy.LasData:
        """The slice's points as a ``laspy.LasData`` (a plain LAS 1.4: the COPC VLRs dropped) whose header
        has the slice's count, bounds and returns."""
        header, points = self._records()
        las = laspy.LasData(header, laspy.PackedPointRecord(points, header.point_format))
        _fit_header(las)
        return las

    def to_file(self, name: str | os.PathLike[str]) -> None:
        """Write the slice as a LAS or LAZ file (by the name's suffix, ``.laz`` compressed)."""
        self.get().write(os.fspath(name))

    def dump(self, fp: BinaryIO) -> None:
        """Write the slice to ``fp`` as a LAZ file (plain LAZ 1.4, not COPC)."""
        self.get().write(fp, do_compress=True)

    def schema(self) -> pa.Schema:
        """``X``, ``Y``, ``Z`` as scaled float64 and the point format's other dimensions (one header read)."""
        header = parse_header(self.url, self.obj.read_range(0, self.header_size, expect=self.object_info))
        return _arrow_columns(header.point_format, laspy.ScaleAwarePointRecord.zeros(0, header=header)).schema

    def to_arrow(self, columns: list[str] | None = None) -> pa.Table:
        """The slice's points: ``X``, ``Y``, ``Z`` scaled to real coordinates (float64), then the point
        format's other dimensions as laspy names them."""
        header, points = self._records()
        record = laspy.ScaleAwarePointRecord(points, header.point_format, header.scales, header.offsets)
        table = _arrow_columns(header.point_format, record)
        return table if columns is None else table.select(columns)

    def xyz(self) -> np.ndarray:
        """The slice's coordinates as an (n, 3) float64 array, decoding only X, Y and Z."""
        header, points = self._records(XYZ_ONLY)
        out = np.empty((points.size, 3), dtype=np.float64)
        for j, name in enumerate("XYZ"):
            out[:, j] = points[name] * header.scales[j] + header.offsets[j]
        return out


def _fit_header(las: laspy.LasData) -> None:
    """What ``las.update_header()`` sets (point count, bounds, points by return, GPS time range, extra-bytes
    ranges) and no EVLRs, with the returns counted by ``np.bincount`` where laspy sorts them: its sort took
    1.5 s of a 6.1 s ``get()`` of 6 M points."""
    header, points = las.header, las.points
    header.partial_reset()
    header.point_count = len(points)
    header.start_of_waveform_data_packet_record = 0
    las.evlrs = header.evlrs = VLRList()
    if not len(points):
        header.mins, header.maxs = np.zeros(3), np.zeros(3)
        return
    header.mins = np.array([points.array[name].min() for name in "XYZ"]) * header.scales + header.offsets
    header.maxs = np.array([points.array[name].max() for name in "XYZ"]) * header.scales + header.offsets
    header.number_of_points_by_return = np.bincount(np.asarray(points.return_number), minlength=16)[1:16].astype(np.uint64)
    if "gps_time" in points.point_format.dimension_names:
        header.min_gps_time, header.max_gps_time = float(points.array["gps_time"].min()), float(points.array["gps_time"].max())
    for vlr in header.vlrs.get("ExtraBytesVlr"):
        vlr.grow(points)


def _arrow_columns(point_format: Any, record: Any) -> pa.Table:
    names = list(point_format.dimension_names)
    return pa.table({name: np.asarray(record[name.lower()] if name in "XYZ" else record[name]) for name in names})


def node_rect(root: tuple[float, float, float, float], depth: Any, x: Any, y: Any) -> tuple[Any, Any, Any, Any]:
    """The footprint (min x, min y, max x, max y) of voxel (``depth``, ``x``, ``y``) of the octree ``root``
    (centre x, centre y, half size, tolerance), widened by the tolerance; for one voxel or arrays of them."""
    cx, cy, half, tol = root
    side = 2 * half / 2**depth
    x0, y0 = cx - half + x * side, cy - half + y * side
    return x0 - tol, y0 - tol, x0 + side + tol, y0 + side + tol
