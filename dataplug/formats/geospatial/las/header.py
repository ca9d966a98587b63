"""The LAS container: the header and VLRs before the first point, read and checked without touching a point,
and the LASzip VLR that LAZ chunks need (their decoding is ``laz``'s).

Shared by the formats that read LAS point records: ``LiDARPointCloud`` (LAS and LAZ) and ``COPC`` (LAZ 1.4
with an octree). Errors name the file the caller expects, so a COPC reader says "not a COPC file".
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from dataplug.errors import InvalidFormatError
from dataplug.storage import ObjectInfo, StorageObject

try:
    import laspy
    from laspy.vlrs.vlrlist import VLRList
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("LAS support needs laspy and lazrs: pip install 'dataplug[lidar]'") from exc

#: Bytes read first for the header and VLRs; bigger VLR sections take a second read.
HEADER_PREFETCH = 64 * 1024
#: Size of the smallest LAS header (1.0-1.2) and of a LAS 1.4 header; where a header stores the offset to
#: the point data.
MIN_HEADER_SIZE = 227
HEADER_14 = 375
OFFSET_TO_POINTS_FIELD = 96
HEADER_SIZE_FIELD = 94
VLR_COUNT_FIELD = 100
#: Bytes of a VLR's own header: a VLR takes at least this much of the bytes between the header and the points.
VLR_HEADER_SIZE = 54
#: The headers a reader may require at least, by the name its errors give them.
HEADER_SIZES = {"LAS": MIN_HEADER_SIZE, "LAS 1.4": HEADER_14}


def read_header_bytes(obj: StorageObject, info: ObjectInfo, expected: str = "LAS/LAZ file", header: str = "LAS") -> bytes:
    """The object's header and VLRs (its bytes before the first point), in one read or two.

    :class:`InvalidFormatError` "not a ``expected``" (``"LAS/LAZ file"``, ``"COPC file"``) for an object
    without the LAS signature or too small for a ``header`` header (a key of :data:`HEADER_SIZES`)."""
    url, size, smallest = obj.url, info.size, HEADER_SIZES[header]
    head = obj.read_range(0, min(size, HEADER_PREFETCH), expect=info)
    if head[:4] != b"LASF":
        raise InvalidFormatError(url, f"not a {expected}: it does not start with the LAS signature 'LASF'", offset=0)
    if len(head) < smallest:
        raise InvalidFormatError(url, f"not a {expected}: {size} bytes cannot hold a {header} header", offset=0)
    data_start = int.from_bytes(head[OFFSET_TO_POINTS_FIELD : OFFSET_TO_POINTS_FIELD + 4], "little")
    if not smallest <= data_start <= size:
        raise InvalidFormatError(
            url, f"invalid LAS header: offset to point data {data_start} is outside the object ({size} bytes)", offset=OFFSET_TO_POINTS_FIELD
        )
    if data_start > len(head):
        head += obj.read_range(len(head), data_start, expect=info)
    return head[:data_start]


def parse_header(url: str, data: bytes) -> laspy.LasHeader:
    """The header and VLRs in ``data`` (the object's bytes before its points), parsed by laspy.

    The VLR count is checked against the bytes that must hold the VLRs first: laspy believes it, and a
    header claiming 2^31 VLRs had it build VLRs for minutes, up to 7.6 GB."""
    header_size = int.from_bytes(data[HEADER_SIZE_FIELD : HEADER_SIZE_FIELD + 2], "little")
    vlrs = int.from_bytes(data[VLR_COUNT_FIELD : VLR_COUNT_FIELD + 4], "little")
    if vlrs * VLR_HEADER_SIZE > len(data) - min(header_size, len(data)):
        raise InvalidFormatError(
            url, f"invalid LAS header: {vlrs} VLRs cannot fit in the {len(data) - min(header_size, len(data))} bytes before the points", offset=VLR_COUNT_FIELD
        )
    try:
        return laspy.LasHeader.read_from(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - laspy raises LaspyException, ValueError, struct errors ...
        raise InvalidFormatError(url, f"invalid LAS header or VLRs: {exc}", offset=0) from None


def check_scales(url: str, header: laspy.LasHeader) -> None:
    """:class:`InvalidFormatError` unless the header's scales are positive and its offsets finite."""
    if not (np.all(header.scales > 0) and np.all(np.isfinite(header.scales)) and np.all(np.isfinite(header.offsets))):
        cause = f"invalid LAS header: scales {header.scales.tolist()} must be positive and offsets {header.offsets.tolist()} finite"
        raise InvalidFormatError(url, cause, offset=0)


def laszip_record(url: str, header: laspy.LasHeader, drop: tuple[type, ...] = ()) -> bytes:
    """The LASzip VLR's payload, which lazrs needs to decode chunks; it is taken out of ``header.vlrs`` (as
    laspy does when it reads a LAZ), so the header describes uncompressed points. VLRs of the types ``drop``
    go too (COPC's, which laspy cannot write), through laspy's setter, which rebuilds the extra-bytes VLR."""
    if drop:
        header.vlrs = VLRList([v for v in header.vlrs if not isinstance(v, drop)])
    try:
        vlr = header.vlrs.pop(header.vlrs.index("LasZipVlr"))
    except ValueError:
        raise InvalidFormatError(url, "compressed point format but no LASzip VLR: not a valid LAZ file", offset=0) from None
    header.are_points_compressed = False
    return bytes(vlr.record_data)


def triple(values: Any) -> tuple[float, float, float]:
    """Three numbers of a header (scales, offsets, bounds: x, y, z) as Python floats."""
    x, y, z = (float(v) for v in values)
    return x, y, z
