"""What every slice of LAS point records offers, whichever format found its records (``LiDARSlice`` of a
LAS/LAZ, ``COPCSlice`` of a COPC): ``get()`` as a ``laspy.LasData`` with a header fitted to the slice's
points, LAS/LAZ files, Arrow columns and coordinates. Not a format: formats share it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any, BinaryIO, ClassVar

import numpy as np
import pyarrow as pa

from dataplug.formats.geospatial.las.header import parse_header
from dataplug.slice import CloudObjectSlice

try:
    import laspy
    from laspy.vlrs.vlrlist import VLRList

    from dataplug.formats.geospatial.las.laz import XYZ_ONLY
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("LiDAR support needs laspy and lazrs: pip install 'dataplug[lidar]'") from exc


class PointSlice(CloudObjectSlice):
    """A slice of LAS point records. A subclass (a dataclass) has the fields ``header_size`` (the object's
    bytes before its first point), ``point_size``, ``bounds`` and ``_count``, and gives :meth:`_records`,
    :meth:`_indexed_count` and :attr:`extent`.

    ``bounds`` is (min x, min y, max x, max y) of the area a spatial slice selects, in the object's
    coordinate units: half-open (``min <= x < max``) except closed on the cloud's own maximum edge, so
    adjacent slices never share a point; ``None`` for a slice that is not a spatial selection (a run of
    points in file order, a group of whole chunks). Point clouds have no ``window``.
    """

    header_size: int
    bounds: tuple[float, float, float, float] | None
    #: The points the slice holds, once a read has counted them (a dataclass field with ``init=False``).
    _count: int | None
    binary_output: ClassVar[bool] = True

    @property
    def dump_compressed(self) -> bool:
        """:meth:`dump` writes LAZ when True, an uncompressed LAS when False (as the object is)."""
        raise NotImplementedError

    def _records(self, selection: Any = None) -> tuple[laspy.LasHeader, np.ndarray]:
        """The object's header (describing a plain LAS of uncompressed points) and the slice's point records;
        LAZ chunks decoded with ``selection`` (``XYZ_ONLY``: only what coordinates need)."""
        raise NotImplementedError

    def _indexed_count(self) -> int | None:
        """The slice's point count when the index gives it (runs, whole chunks); ``None`` when only reading
        the slice tells (a cell keeps the points of its chunks that lie inside it)."""
        raise NotImplementedError

    @property
    def extent(self) -> tuple[float, float, float, float] | None:
        """(min x, min y, max x, max y) of the slice's area when the index knows it; ``None`` otherwise."""
        raise NotImplementedError

    @property
    def num_records(self) -> int:
        """The exact number of points the slice returns. Runs and whole chunks know it from the index; a
        cell or box reads its points the first time (LAZ: decoding only X, Y, Z where it can) and keeps
        the count, as it does after any read of the slice."""
        count = self._indexed_count()
        if count is None:
            if self._count is None:
                self._records(XYZ_ONLY)
            count = self._count
        return count

    @property
    def known_num_records(self) -> int | None:
        """The count from the index (runs, whole chunks) or from an earlier read; ``None`` for an unread cell."""
        count = self._indexed_count()
        return count if count is not None else self._count

    @property
    def num_points(self) -> int:
        """:attr:`num_records`: the points the slice returns."""
        return self.num_records

    def _counted(self, header: laspy.LasHeader, points: np.ndarray) -> tuple[laspy.LasHeader, np.ndarray]:
        """``(header, points)``, remembering how many points the slice holds (for :attr:`num_records`)."""
        self._count = len(points)
        return header, points

    @property
    def min_x(self) -> float | None:
        return None if self.extent is None else self.extent[0]

    @property
    def min_y(self) -> float | None:
        return None if self.extent is None else self.extent[1]

    @property
    def max_x(self) -> float | None:
        return None if self.extent is None else self.extent[2]

    @property
    def max_y(self) -> float | None:
        return None if self.extent is None else self.extent[3]

    def _fetch(self, ranges: Iterable[tuple[int, int]]) -> tuple[laspy.LasHeader, list[bytes]]:
        """The object's header and the bytes of each of ``ranges``, in one ``read_ranges`` call (the store
        joins near ranges into one request)."""
        parts = self.obj.read_ranges([(0, self.header_size), *ranges], expect=self.object_info)
        return parse_header(self.url, parts[0]), parts[1:]

    def get(self) -> laspy.LasData:
        """The slice's points as a ``laspy.LasData`` (a plain LAS or LAZ: no COPC VLRs, no EVLRs) whose header
        has the slice's count, bounds and returns."""
        header, points = self._records()
        las = laspy.LasData(header, laspy.PackedPointRecord(points, header.point_format))
        fit_header(las)
        return las

    def to_file(self, name: str | os.PathLike[str]) -> None:
        """Write the slice as a LAS or LAZ file (by the name's suffix, ``.laz`` compressed)."""
        self.get().write(os.fspath(name))

    def dump(self, fp: BinaryIO) -> None:
        """Write the slice to ``fp`` as the object is stored: a LAZ file (a plain LAZ, not COPC) for a LAZ
        or COPC object, an uncompressed LAS for a LAS (``to_file`` chooses by name)."""
        self.get().write(fp, do_compress=self.dump_compressed)

    def schema(self) -> pa.Schema:
        """``X``, ``Y``, ``Z`` as scaled float64 and the point format's other dimensions (one header read)."""
        header = parse_header(self.url, self.obj.read_range(0, self.header_size, expect=self.object_info))
        return arrow_columns(header.point_format, laspy.ScaleAwarePointRecord.zeros(0, header=header)).schema

    def to_arrow(self, columns: list[str] | None = None) -> pa.Table:
        """The slice's points: ``X``, ``Y``, ``Z`` scaled to real coordinates (float64), then the point
        format's other dimensions as laspy names them (extra bytes with a scale come scaled)."""
        header, points = self._records()
        record = laspy.ScaleAwarePointRecord(points, header.point_format, header.scales, header.offsets)
        table = arrow_columns(header.point_format, record)
        return table if columns is None else table.select(columns)

    def xyz(self) -> np.ndarray:
        """The slice's coordinates as an (n, 3) float64 array (LAZ: decoding only X, Y, Z where it can)."""
        header, points = self._records(XYZ_ONLY)
        out = np.empty((points.size, 3), dtype=np.float64)
        for j, name in enumerate("XYZ"):
            out[:, j] = points[name] * header.scales[j] + header.offsets[j]
        return out


def raw_xy(pieces: list[np.ndarray]) -> np.ndarray:
    """The raw X and Y of the points of ``pieces`` (void records) end to end, as a contiguous (n, 2) int32
    array: one strided copy of 8 bytes a point, after which min/max (the checks of an index's bounds) and window
    filters run at memory speed (reducing the strided fields directly takes about twice as long)."""
    pair = np.dtype({"names": ["XY"], "formats": ["<i8"], "offsets": [0], "itemsize": pieces[0].dtype.itemsize})
    columns = [p.view(pair)["XY"] for p in pieces]
    joined = columns[0].copy() if len(columns) == 1 else np.concatenate(columns)
    return joined.view("<i4").reshape(-1, 2)


def fit_header(las: laspy.LasData) -> None:
    """What ``las.update_header()`` sets (point count, bounds, points by return, GPS time range, extra-bytes
    ranges) and no EVLRs, with the returns counted by ``np.bincount`` in one pass where laspy sorts the
    return numbers to count them."""
    header, points = las.header, las.points
    header.partial_reset()
    header.point_count = len(points)
    if header.version.minor >= 4:
        header.start_of_waveform_data_packet_record = 0
    header.evlrs = VLRList()
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


def arrow_columns(point_format: Any, record: Any) -> pa.Table:
    """The dimensions of ``point_format`` from ``record`` as Arrow columns (``X``, ``Y``, ``Z`` scaled)."""
    names = list(point_format.dimension_names)
    return pa.table({name: np.asarray(record[name.lower()] if name in "XYZ" else record[name]) for name in names})
