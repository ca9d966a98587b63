"""LAS/LAZ header, VLRs and blocks: what the index pass reads before it looks at any point.

A *block* is the unit the index pass maps over and keeps bounds for: a run of ``block_points`` records in
an uncompressed LAS, or one chunk of a LAZ's chunk table (the smallest unit lazrs decodes on its own).
"""

from __future__ import annotations

import io

import numpy as np

from dataplug.errors import InvalidFormatError
from dataplug.storage import ObjectInfo, StorageObject

try:
    import laspy
    import lazrs

    from dataplug.codecs.laz import OFFSET_SIZE, read_table, table_offset
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("LiDAR support needs laspy and lazrs: pip install 'dataplug[lidar]'") from exc

#: Bytes read first for the header; bigger VLR sections take a second read.
HEADER_PREFETCH = 64 * 1024
#: Size of the smallest LAS header (1.0-1.2) and where it stores the offset to the point data.
MIN_HEADER_SIZE = 227
_OFFSET_TO_POINTS_FIELD = 96


def read_header_bytes(obj: StorageObject, info: ObjectInfo) -> bytes:
    """The object's header and VLRs (its bytes before the first point), in one read or two."""
    url, size = obj.url, info.size
    head = obj.read_range(0, min(size, HEADER_PREFETCH), expect=info)
    if head[:4] != b"LASF":
        raise InvalidFormatError(url, "not a LAS/LAZ file: it does not start with the signature 'LASF'", offset=0)
    if len(head) < MIN_HEADER_SIZE:
        raise InvalidFormatError(url, f"not a LAS/LAZ file: {size} bytes cannot hold a LAS header", offset=0)
    data_start = int.from_bytes(head[_OFFSET_TO_POINTS_FIELD : _OFFSET_TO_POINTS_FIELD + 4], "little")
    if not MIN_HEADER_SIZE <= data_start <= size:
        raise InvalidFormatError(
            url, f"invalid LAS header: offset to point data {data_start} is outside the object ({size} bytes)", offset=_OFFSET_TO_POINTS_FIELD
        )
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


def las_blocks(url: str, header: laspy.LasHeader, size: int, block_points: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Byte starts, byte ends and point counts of the blocks of an uncompressed LAS, after checking that its
    point section holds exactly the header's point count."""
    point_size, count, data_start = header.point_format.size, header.point_count, header.offset_to_point_data
    end = _las_point_end(header, size)
    held = (end - data_start) // point_size
    if held < count and end == size:
        raise InvalidFormatError(
            url,
            f"truncated point section: the header says {count} points of {point_size} bytes, the object ends after {held}",
            offset=data_start + held * point_size,
        )
    if held != count:
        raise InvalidFormatError(
            url, f"the header's point count {count} disagrees with the data: its point section holds {held} points", offset=data_start
        )
    first = np.arange(0, count, block_points, dtype=np.int64)
    counts = np.diff(np.append(first, count))
    starts = data_start + first * point_size
    return starts, starts + counts * point_size, counts


def laz_blocks(obj: StorageObject, info: ObjectInfo, header: laspy.LasHeader, laszip: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
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
