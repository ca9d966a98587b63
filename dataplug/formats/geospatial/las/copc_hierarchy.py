"""The index pass of COPC: the header, the VLRs and the hierarchy pages, read with a few range reads.

A COPC file (copc.io, version 1.0) is a LAZ 1.4 file whose first VLR (``copc``, record 1) gives the octree's
root cube and where the root hierarchy page lies. A page is a run of 32-byte entries: a voxel key (depth, x,
y, z), then an offset, a byte size and a point count. A count above 0 locates one node's LAZ chunk, 0 marks
a node without points and -1 a child page. The pass reads the root page, then every page it references, a
whole level of pages per ``read_ranges`` call, and checks every entry against the object: no point is decoded.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from dataplug.formats.geospatial.las.header import HEADER_14, check_scales, read_header_bytes
from dataplug.errors import InvalidFormatError
from dataplug.storage import ObjectInfo, StorageObject

try:
    import laspy
    from laspy.copc import CopcHierarchyVlr, CopcInfoVlr
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("COPC support needs laspy and lazrs: pip install 'dataplug[lidar]'") from exc

#: The COPC VLRs, which a slice's header drops (laspy cannot write them).
COPC_VLRS = (CopcInfoVlr, CopcHierarchyVlr)
#: One hierarchy entry: voxel key, offset, byte size, point count (little-endian, 32 bytes).
ENTRY = np.dtype([("d", "<i4"), ("x", "<i4"), ("y", "<i4"), ("z", "<i4"), ("offset", "<u8"), ("byte_size", "<i4"), ("point_count", "<i4")])
#: Octree depths beyond this cannot address a voxel with int32 keys.
MAX_KEY_DEPTH = 30


@dataclass(frozen=True)
class Hierarchy:
    """The octree's nodes with points, in file order: keys (n, 4) as depth, x, y, z; each chunk's absolute
    byte offset, byte size and point count; and how many hierarchy pages held them."""

    keys: np.ndarray
    offsets: np.ndarray
    byte_sizes: np.ndarray
    point_counts: np.ndarray
    pages: int


def read_header(obj: StorageObject, info: ObjectInfo) -> bytes:
    """The object's header and VLRs (its bytes before the first point), in one read or two; errors say
    "not a COPC file"."""
    return read_header_bytes(obj, info, "COPC file", "LAS 1.4")


def copc_info(url: str, header: laspy.LasHeader) -> CopcInfoVlr:
    """The COPC info VLR, which the specification puts first; :class:`InvalidFormatError` for a file
    without one (a plain LAZ reads as ``LiDARPointCloud``) or with an unusable octree cube."""
    vlrs = list(header.vlrs)
    if not vlrs or not isinstance(vlrs[0], CopcInfoVlr):
        where = "is not the first VLR" if any(isinstance(v, CopcInfoVlr) for v in vlrs) else "is missing"
        raise InvalidFormatError(
            url, f"not a COPC file: its COPC info VLR (user 'copc', record 1) {where}; read a plain LAS/LAZ as LiDARPointCloud", offset=HEADER_14
        )
    if not header.are_points_compressed or str(header.version) != "1.4":
        raise InvalidFormatError(
            url, f"not a COPC file: COPC is LAZ 1.4, this is {'LAZ' if header.are_points_compressed else 'LAS'} {header.version}", offset=0
        )
    info = vlrs[0]
    if not (np.all(np.isfinite(info.center)) and np.isfinite(info.halfsize) and info.halfsize > 0):
        raise InvalidFormatError(
            url,
            f"invalid COPC info VLR: octree centre {info.center.tolist()} and half size {info.halfsize} must be finite and positive",
            offset=HEADER_14,
        )
    if not (np.all(np.isfinite(header.mins)) and np.all(np.isfinite(header.maxs))):
        raise InvalidFormatError(url, f"invalid LAS header: bounds {header.mins.tolist()} to {header.maxs.tolist()} must be finite", offset=0)
    check_scales(url, header)
    return info


def read_hierarchy(obj: StorageObject, info: ObjectInfo, header: laspy.LasHeader, copc: CopcInfoVlr) -> Hierarchy:
    """Every node with points, from the root page and the pages it references, one level of pages per
    read (the root page comes with the point section's first 8 bytes, which locate the chunk table).
    Checks that pages do not overlap or repeat, that keys lie in the octree, and that chunks lie inside
    the point section without overlapping."""
    url, size = obj.url, info.size
    todo = [(int(copc.hierarchy_root_offset), int(copc.hierarchy_root_size))]
    _check_pages(url, todo, size)
    data_start = header.offset_to_point_data
    head, *data = obj.read_ranges([(data_start, min(data_start + 8, size)), *_spans(todo)], expect=info)
    section = _point_section(header, size, head)
    seen, found, pages = list(todo), [], 0
    while todo:
        pages += len(todo)
        entries = np.frombuffer(b"".join(data), dtype=ENTRY)
        found.append(entries[entries["point_count"] != -1])
        children = entries[entries["point_count"] == -1]
        todo = [(int(o), int(b)) for o, b in zip(children["offset"].tolist(), children["byte_size"].tolist())]
        if todo:
            _check_pages(url, todo, size)
            seen.extend(todo)
            _disjoint(url, np.array(seen, dtype=np.int64), "hierarchy pages")
            data = obj.read_ranges(_spans(todo), expect=info)
    return _nodes(url, np.concatenate(found), section, pages)


def _spans(pages: list[tuple[int, int]]) -> list[tuple[int, int]]:
    return [(offset, offset + nbytes) for offset, nbytes in pages]


def _check_pages(url: str, pages: list[tuple[int, int]], size: int) -> None:
    for offset, nbytes in pages:
        if nbytes <= 0 or nbytes % ENTRY.itemsize or offset < 0 or offset + nbytes > size:
            cause = f"bad COPC hierarchy page of {nbytes} bytes at offset {offset}: a page is a whole number of 32-byte entries inside the object ({size} bytes)"
            raise InvalidFormatError(url, cause, offset=offset)


def _point_section(header: laspy.LasHeader, size: int, head: bytes) -> tuple[int, int]:
    """Where node chunks may lie: after the chunk-table offset that starts the point section (``head``, its
    first 8 bytes), before the chunk table it points to, the EVLRs or the object's end."""
    start = header.offset_to_point_data + 8
    end = size
    if header.number_of_evlrs and start <= header.start_of_first_evlr < end:
        end = header.start_of_first_evlr
    if len(head) == 8:
        table = struct.unpack("<q", head)[0]
        if start <= table < end:
            end = table
    return start, end


def _nodes(url: str, entries: np.ndarray, section: tuple[int, int], pages: int) -> Hierarchy:
    keys = np.column_stack([entries[name] for name in "dxyz"]).astype(np.int32)
    d = keys[:, 0].astype(np.int64)
    bad = (
        (d < 0)
        | (d > MAX_KEY_DEPTH)
        | np.any(keys[:, 1:] < 0, axis=1)
        | np.any(keys[:, 1:] >= (np.int64(1) << np.clip(d, 0, MAX_KEY_DEPTH))[:, None], axis=1)
    )
    if bad.any():
        raise InvalidFormatError(url, f"bad COPC hierarchy entry: voxel key {keys[bad][0].tolist()} (depth, x, y, z) is outside the octree")
    if len(np.unique(keys, axis=0)) != len(keys):
        raise InvalidFormatError(url, "bad COPC hierarchy: a voxel key appears in more than one entry")
    counts = entries["point_count"].astype(np.int64)
    if (counts < 0).any():
        raise InvalidFormatError(url, f"bad COPC hierarchy entry: point count {int(counts.min())} (only -1 marks a child page)")
    nodes = entries[counts > 0]
    offsets, byte_sizes = nodes["offset"].astype(np.int64), nodes["byte_size"].astype(np.int64)
    outside = (byte_sizes <= 0) | (offsets < section[0]) | (offsets + byte_sizes > section[1]) | (nodes["offset"] > 2**62)
    if outside.any():
        k = int(np.flatnonzero(outside)[0])
        cause = f"bad COPC hierarchy entry: the chunk of node {keys[counts > 0][k].tolist()} ({int(byte_sizes[k])} bytes at offset {int(nodes['offset'][k])}) is not inside the point data [{section[0]}, {section[1]})"
        raise InvalidFormatError(url, cause)
    order = np.argsort(offsets, kind="stable")
    _disjoint(url, np.column_stack((offsets, byte_sizes))[order], "node chunks")
    return Hierarchy(keys[counts > 0][order], offsets[order], byte_sizes[order], counts[counts > 0][order], pages)


def _disjoint(url: str, ranges: np.ndarray, what: str) -> None:
    """:class:`InvalidFormatError` unless the (offset, size) ``ranges`` neither overlap nor repeat."""
    ranges = ranges[np.argsort(ranges[:, 0], kind="stable")]
    ends = ranges[:-1, 0] + ranges[:-1, 1]
    clash = np.flatnonzero(ends > ranges[1:, 0])
    if clash.size:
        k = int(clash[0])
        raise InvalidFormatError(
            url,
            f"bad COPC hierarchy: {what} overlap or repeat (at offsets {int(ranges[k, 0])} and {int(ranges[k + 1, 0])})",
            offset=int(ranges[k + 1, 0]),
        )
