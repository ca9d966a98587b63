"""COPC files for tests and benchmarks, written here because laspy reads COPC but cannot write it.

:func:`write_copc` builds the octree of a ``laspy.LasData`` (each node keeps up to ``cap`` points of its
cube, sampled at random, the rest go to its children; the deepest level keeps all), compresses one LAZ chunk
per node with lazrs and lays the file out as the COPC 1.0 specification says: the ``copc`` info VLR first,
variable-size LAZ chunks with their chunk table, then the hierarchy pages in one EVLR.
"""

from __future__ import annotations

import io
import struct
from itertools import pairwise

import laspy
import lazrs
import numpy as np
from laspy.vlrs.known import LasZipVlr

#: Scales and offsets of tests/data/simple.copc.laz (a real COPC), which the conformance samples share, so
#: that their raw integer coordinates follow from the scaled ones that ``to_arrow()`` gives.
SCALES = (0.01, 0.01, 0.01)
OFFSETS = (637301.2, 851217.56, 496.48)

#: LAS 1.4 header size, where its EVLR fields sit, and the size of a VLR's and an EVLR's header.
HEADER_14 = 375
START_OF_FIRST_EVLR = 235
VLR_HEADER, EVLR_HEADER = 54, 60
INFO = struct.Struct("<5d2Q2d88x")
ENTRY = struct.Struct("<4iQii")


def scan_tile(points: int, point_format: int, seed: int) -> laspy.LasData:
    """A scan-ordered tile (``dataplug.synthetic.scan_ordered_cloud``: zig-zag lines along flight strips, in
    GPS-time order) of 200 m x 200 m, moved to :data:`OFFSETS` and quantized with :data:`SCALES`."""
    from dataplug.synthetic import scan_ordered_cloud

    las = scan_ordered_cloud(points, size=200.0, strips=4, line_points=120, point_format=point_format, seed=seed)
    x, y, z = (np.asarray(las.x) + OFFSETS[0], np.asarray(las.y) + OFFSETS[1], np.asarray(las.z) + OFFSETS[2])
    las.change_scaling(scales=np.array(SCALES), offsets=np.array(OFFSETS))
    las.x, las.y, las.z = x, y, z
    las.update_header()
    return las


def point_tuples(las: laspy.LasData) -> list[tuple]:
    """The conformance kit's records: per point, raw X, Y, Z, then the attributes every point format has
    and GPS time where it has one."""
    names = ["X", "Y", "Z", "intensity", "return_number", "number_of_returns", "classification", "point_source_id"]
    names += ["gps_time"] if "gps_time" in las.point_format.dimension_names else []
    return list(zip(*(np.asarray(las.points[name]).tolist() for name in names)))


def arrow_tuples(table) -> list[tuple]:
    """:func:`point_tuples` of a slice's ``to_arrow()`` table (scaled X, Y, Z back to raw integers)."""
    xyz = [np.round((table[name].to_numpy() - offset) / scale).astype(np.int64) for name, scale, offset in zip("XYZ", SCALES, OFFSETS)]
    names = ["intensity", "return_number", "number_of_returns", "classification", "point_source_id"]
    names += ["gps_time"] if "gps_time" in table.column_names else []
    return list(zip(*(column.tolist() for column in xyz), *(table[name].to_pylist() for name in names)))


def octree(las: laspy.LasData, cap: int, max_depth: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, float]:
    """The node (d, x, y, z) of every point, and the root cube's centre (3,) and half size."""
    if not 0 <= max_depth <= 16:
        raise ValueError("max_depth must be in [0, 16]")
    xyz = np.column_stack([np.asarray(las.x), np.asarray(las.y), np.asarray(las.z)])
    lo, hi = xyz.min(axis=0), xyz.max(axis=0)
    center = (lo + hi) / 2
    halfsize = float((hi - lo).max()) / 2 + float(np.max(las.header.scales))
    deepest = np.clip(np.floor((xyz - (center - halfsize)) / (2 * halfsize / 2**max_depth)), 0, 2**max_depth - 1).astype(np.int64)
    n = len(xyz)
    keys = np.zeros((n, 4), dtype=np.int32)
    remaining = np.random.default_rng(seed).permutation(n)
    for d in range(max_depth + 1):
        cells = deepest[remaining] >> (max_depth - d)
        if d < max_depth:
            flat = (cells[:, 0] << (2 * d)) | (cells[:, 1] << d) | cells[:, 2]
            order = np.argsort(flat, kind="stable")
            sorted_flat = flat[order]
            group_start = np.flatnonzero(np.r_[True, sorted_flat[1:] != sorted_flat[:-1]])
            rank = np.arange(len(order)) - np.repeat(group_start, np.diff(np.r_[group_start, len(order)]))
            stay = np.zeros(len(order), dtype=bool)
            stay[order[rank < cap]] = True
        else:
            stay = np.ones(len(remaining), dtype=bool)
        keys[remaining[stay], 0] = d
        keys[remaining[stay], 1:] = cells[stay]
        remaining = remaining[~stay]
    return keys, center, halfsize


def write_copc(
    las: laspy.LasData,
    cap: int = 64,
    max_depth: int = 4,
    page_depth: int | None = None,
    shuffle_chunks: bool = False,
    empty_entries: bool = False,
    seed: int = 0,
) -> bytes:
    """``las`` (point format 6, 7 or 8, header up to date) as a COPC file.

    ``page_depth``: nodes at that depth and below go to one child hierarchy page per node at that depth;
    ``shuffle_chunks``: node chunks in random order in the file; ``empty_entries``: add entries with no points.
    """
    rng = np.random.default_rng(seed)
    keys, center, halfsize = octree(las, cap, max_depth, seed)
    code = keys.astype(np.int64)
    codes, node_of = np.unique((((code[:, 0] << 16 | code[:, 1]) << 16 | code[:, 2]) << 16) | code[:, 3], return_inverse=True)
    nodes = np.column_stack([(codes >> shift) & 0xFFFF for shift in (48, 32, 16, 0)]).astype(np.int32)
    chunk_order = rng.permutation(len(nodes)) if shuffle_chunks else np.arange(len(nodes))
    rank = np.empty(len(nodes), dtype=np.int64)
    rank[chunk_order] = np.arange(len(nodes))
    points = np.argsort(rank[node_of], kind="stable")
    counts = np.bincount(node_of, minlength=len(nodes))[chunk_order]

    raw = io.BytesIO()
    las.write(raw, do_compress=False)
    header = laspy.LasHeader.read_from(io.BytesIO(raw.getvalue()))
    size, start = header.point_format.size, header.offset_to_point_data
    records = np.frombuffer(raw.getvalue(), dtype=np.uint8, count=len(las.points) * size, offset=start).reshape(-1, size)[points]

    vlr = lazrs.LazVlr.new_for_compression(header.point_format.id, header.point_format.num_extra_bytes, True)
    header.vlrs.insert(0, laspy.VLR("copc", 1, "COPC info VLR", bytes(INFO.size)))
    header.vlrs.append(LasZipVlr(vlr.record_data()))
    header.are_points_compressed = True
    out = io.BytesIO()
    header.write_to(out)
    data_start = out.tell()
    compressor = lazrs.LasZipCompressor(out, vlr)
    bounds = np.concatenate(([0], np.cumsum(counts)))
    compressor.compress_chunks([records[a:b].tobytes() for a, b in pairwise(bounds)])
    compressor.done()
    data = bytearray(out.getvalue())
    table_offset = struct.unpack_from("<q", data, data_start)[0]
    table = lazrs.read_chunk_table_only(io.BytesIO(bytes(data[table_offset:])), vlr)
    byte_counts = np.array([b for _, b in table], dtype=np.int64)
    offsets = data_start + 8 + np.concatenate(([0], np.cumsum(byte_counts)[:-1]))

    entries = {tuple(int(v) for v in nodes[i]): (int(offsets[r]), int(byte_counts[r]), int(counts[r])) for r, i in enumerate(chunk_order)}
    if empty_entries:
        for key in list(entries)[:3]:
            d, x, y, z = key
            child = (d + 1, 2 * x + 1, 2 * y, 2 * z + 1)
            entries.setdefault(child, (0, 0, 0))
    pages = _pages(entries, page_depth)
    evlr_start = len(data)
    page_offsets, at = {}, evlr_start + EVLR_HEADER
    for page_key, page in pages.items():
        page_offsets[page_key] = at
        at += ENTRY.size * len(page)
    blob = b""
    for page_key, page in pages.items():
        for key, (offset, nbytes, count) in page.items():
            if count == -1:
                offset, nbytes = page_offsets[key], ENTRY.size * len(pages[key])
            blob += ENTRY.pack(*key, offset, nbytes, count)
    data += struct.pack("<H16sHQ32s", 0, b"copc", 1000, len(blob), b"EPT hierarchy") + blob
    struct.pack_into("<QI", data, START_OF_FIRST_EVLR, evlr_start, 1)
    gps = np.asarray(las.gps_time) if len(las.points) else np.zeros(1)
    root = (0, 0, 0, 0)
    info = INFO.pack(*center, halfsize, halfsize / 64, page_offsets[root], ENTRY.size * len(pages[root]), float(gps.min()), float(gps.max()))
    data[HEADER_14 + VLR_HEADER : HEADER_14 + VLR_HEADER + INFO.size] = info
    return bytes(data)


def _pages(entries: dict[tuple, tuple[int, int, int]], page_depth: int | None) -> dict[tuple, dict[tuple, tuple[int, int, int]]]:
    """Hierarchy pages by the key of their root node: the root page first, then one page per node at
    ``page_depth`` holding its subtree, referenced from the root page by a ``-1`` entry."""
    root: dict[tuple, tuple[int, int, int]] = {}
    pages = {(0, 0, 0, 0): root}
    for key in sorted(entries):
        d, x, y, z = key
        if page_depth is None or d < page_depth:
            root[key] = entries[key]
            continue
        shift = d - page_depth
        top = (page_depth, x >> shift, y >> shift, z >> shift)
        if top not in pages:
            pages[top] = {}
            root[top] = (0, 0, -1)
        pages[top][key] = entries[key]
    return pages
