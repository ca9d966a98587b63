"""COPC: the index pass reads only the header, VLRs and hierarchy pages; every point lands in exactly one
slice; slices match laspy's CopcReader; bad hierarchies are named."""

from __future__ import annotations

import io
import os
import pickle
import signal
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

laspy = pytest.importorskip("laspy")
pytest.importorskip("lazrs")

from laspy.copc import Bounds, CopcInfoVlr, CopcReader

from dataplug import CloudObject, CorruptIndexError, InvalidFormatError, StaleIndexError, StrategyArgumentError
from dataplug.formats.geospatial.copc import (
    COPC,
    CloudOptimizedPointCloud,
    COPCSlice,
    partition_bbox,
    partition_num_points,
    partition_spatial_chunks,
    square_split_strategy,
)
from dataplug.formats.geospatial.laspc import LiDARPointCloud
from dataplug.formats.geospatial.laspc import square_split_strategy as lidar_square_split
from dataplug.storage.object import read_stats
from dataplug.testing import FormatTests
from tests.copc_files import ENTRY, EVLR_HEADER, HEADER_14, VLR_HEADER, arrow_tuples, point_tuples, scan_tile, write_copc
from tests.read_spy import read_ranges_calls

DATA = Path(__file__).parent / "data"
REAL = ("simple.copc.laz", "simple_with_page.copc.laz")
#: Raw X and Y span 0..20160 at scale 0.25: the extent is [0, 5040], and 5040 = 7! puts the cell edges of
#: every grid up to 10 x 10 exactly on representable coordinates, where the cloud has points.
SPAN = 20160
INFO_AT = HEADER_14 + VLR_HEADER


def cloud(n: int, fmt: int = 6, seed: int = 0, span: int = SPAN) -> laspy.LasData:
    """``n`` points whose GPS time is their id; many on grid edges and on the extent's corners, some sharing
    coordinates."""
    rng = np.random.default_rng(seed)
    header = laspy.LasHeader(point_format=fmt, version="1.4")
    header.scales = np.array([0.25, 0.25, 0.01])
    header.offsets = np.array([1000.0, -500.0, 0.0])
    las = laspy.LasData(header)
    raw = rng.integers(0, span + 1, size=(n, 2))
    edges = np.unique(np.concatenate([np.arange(k + 1) * span // k for k in range(1, 11)]))
    for axis in range(2):
        on_edge = rng.random(n) < 0.3
        raw[on_edge, axis] = rng.choice(edges, on_edge.sum())
    if n >= 2:
        raw[: n // 10] = raw[n // 10 : 2 * (n // 10)]
        raw[0], raw[-1] = (0, 0), (span, span)
    las.X, las.Y = raw[:, 0], raw[:, 1]
    las.Z = rng.integers(-500, 5000, n)
    las.intensity = rng.integers(0, 2**16, n)
    las.return_number = rng.integers(1, 4, n)
    las.number_of_returns = np.full(n, 3)
    las.gps_time = np.arange(n, dtype=np.float64)
    las.update_header()
    return las


def ids(points) -> np.ndarray:
    return np.asarray(points.gps_time).astype(np.int64)


def records(points) -> np.ndarray:
    """Whole point records as sortable byte strings (the real files' GPS times are not unique)."""
    array = np.ascontiguousarray(points.array)
    return np.sort(array.view(f"V{array.dtype.itemsize}"))


def indexed(store, name: str, data: bytes) -> CloudObject:
    co = CloudObject.from_url("COPC", store.put(name, data), storage_options=store.options)
    return co.preprocess(progress=False)


def in_box(points, box, maxs) -> np.ndarray:
    """Which ``points`` ``partition_bbox`` keeps: half-open, closed on an axis where ``box`` reaches ``maxs``."""
    x, y = np.asarray(points.x), np.asarray(points.y)
    x0, y0, x1, y1 = box
    return (x >= x0) & ((x <= x1) if x1 >= maxs[0] else (x < x1)) & (y >= y0) & ((y <= y1) if y1 >= maxs[1] else (y < y1))


def union(slices: list[COPCSlice]) -> np.ndarray:
    return np.concatenate([ids(s.get().points) for s in slices])


def assert_once(got: np.ndarray, expected: np.ndarray) -> None:
    assert got.size == expected.size and np.array_equal(np.sort(got), np.sort(expected))


# -- real files and laspy's reader -----------------------------------------------------------------------


@pytest.mark.parametrize("name", REAL)
def test_real_files_every_point_once(store, name):
    data = (DATA / name).read_bytes()
    co = indexed(store, name, data)
    a = co.attributes
    reader = CopcReader(io.BytesIO(data))
    assert (a.point_count, a.point_format_id, a.nodes, a.depth) == (1065, 7, 65, 3)
    assert a.pages == (2 if "page" in name else 1) and a.root_offset == reader.copc_info.hierarchy_root_offset
    full = records(laspy.read(io.BytesIO(data)).points)
    for n in (1, 7, 16) if store.kind == "s3" else (1, 4, 7, 16, 100):
        parts = [s.get() for s in co.partition(square_split_strategy, n)]
        assert sum(p.header.point_count for p in parts) == 1065
        assert np.array_equal(np.sort(np.concatenate([records(p.points) for p in parts])), full)
    runs = co.partition(partition_num_points, 6)
    assert [s.num_points for s in runs] == np.diff(np.arange(7) * 1065 // 6).tolist()
    assert np.array_equal(np.sort(np.concatenate([records(s.get().points) for s in runs])), full)


@pytest.mark.parametrize("name", REAL)
def test_real_files_match_copc_reader_queries(local_store, name):
    data = (DATA / name).read_bytes()
    co = indexed(local_store, name, data)
    reader = CopcReader(io.BytesIO(data))
    (x0, y0, _), (x1, y1, _) = co.attributes.mins, co.attributes.maxs
    rng = np.random.default_rng(1)
    for _ in range(6):
        # Windows on the coordinate grid, where laspy's rounding of the query bounds changes nothing.
        xs = np.sort(rng.integers(round(x0 * 100), round(x1 * 100), 2)) / 100
        ys = np.sort(rng.integers(round(y0 * 100), round(y1 * 100), 2)) / 100
        bounds = Bounds(mins=np.array([xs[0], ys[0]]), maxs=np.array([xs[1], ys[1]]))
        for depth in (None, 0, 1, 2):
            (piece,) = co.partition(partition_bbox, xs[0], ys[0], xs[1], ys[1], max_depth=depth)
            expected = reader.query(bounds, level=None if depth is None else range(depth + 1))  # closed on every edge
            expected = expected[in_box(expected, (xs[0], ys[0], xs[1], ys[1]), co.attributes.maxs)]
            assert np.array_equal(records(piece.get().points), records(expected))
    for depth in (0, 1, 2, 3):
        expected = records(reader.query(level=range(depth + 1)))
        for strategy, n in ((square_split_strategy, 9), (partition_num_points, 4)):
            got = np.concatenate([records(s.get().points) for s in co.partition(strategy, n, max_depth=depth)])
            assert np.array_equal(np.sort(got), expected)


@pytest.mark.parametrize("name", REAL)
def test_copc_still_reads_as_plain_laz(local_store, name):
    data = (DATA / name).read_bytes()
    co = CloudObject.from_url(LiDARPointCloud, local_store.put(name, data)).preprocess(progress=False)
    assert co.attributes.compressed and co.attributes.point_count == 1065
    parts = [s.get() for s in co.partition(lidar_square_split, 9)]
    full = records(laspy.read(io.BytesIO(data)).points)
    assert np.array_equal(np.sort(np.concatenate([records(p.points) for p in parts])), full)


def test_written_copc_still_reads_as_plain_laz(local_store):
    las = cloud(5000, fmt=7)
    data = write_copc(las, cap=200, max_depth=4, page_depth=2, shuffle_chunks=True)
    co = CloudObject.from_url(LiDARPointCloud, local_store.put("w.copc.laz", data)).preprocess(progress=False)
    assert_once(np.concatenate([ids(s.get().points) for s in co.partition(lidar_square_split, 16)]), np.arange(5000))


def test_copclib_written_file(local_store, tmp_path):
    copc = pytest.importorskip("copclib")
    from tests.copc_files import octree

    las = cloud(4000, fmt=7, seed=3)
    keys, center, halfsize = octree(las, cap=150, max_depth=4)
    cfg = copc.CopcConfigWriter(7, tuple(las.header.scales), tuple(las.header.offsets))
    cfg.las_header.min, cfg.las_header.max = copc.Vector3(*las.header.mins), copc.Vector3(*las.header.maxs)
    cfg.copc_info.center_x, cfg.copc_info.center_y, cfg.copc_info.center_z = (float(v) for v in center)
    cfg.copc_info.halfsize, cfg.copc_info.spacing = halfsize, halfsize / 64
    path = tmp_path / "copclib.copc.laz"
    writer = copc.FileWriter(str(path), cfg)
    raw = np.ascontiguousarray(las.points.array).view(np.int8).reshape(len(las.points), -1)
    nodes, node_of = np.unique(keys, axis=0, return_inverse=True)
    for k, (d, x, y, z) in enumerate(nodes.tolist()):
        mine = node_of.reshape(-1) == k
        page = copc.VoxelKey(2, x >> (d - 2), y >> (d - 2), z >> (d - 2)) if d >= 2 else copc.VoxelKey(0, 0, 0, 0)
        compressed = copc.CompressBytes(copc.VectorChar(raw[mine].reshape(-1)), writer.copc_config.las_header)
        writer.AddNodeCompressed(copc.VoxelKey(d, x, y, z), compressed, int(mine.sum()), page)
    writer.Close()
    data = path.read_bytes()
    co = indexed(local_store, "copclib.copc.laz", data)
    assert co.attributes.pages > 1 and co.attributes.nodes == len(nodes)
    reader = CopcReader(io.BytesIO(data))
    for depth in (None, 1, 3):
        expected = ids(reader.query(level=None if depth is None else range(depth + 1)))
        assert_once(union(co.partition(square_split_strategy, 7, max_depth=depth)), expected)


# -- every point exactly once ----------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:.*slices are empty")
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    n=st.integers(1, 2500),
    fmt=st.sampled_from([6, 7, 8]),
    span=st.sampled_from([0, 1, 7, SPAN]),
    cap=st.integers(1, 400),
    max_depth=st.integers(0, 5),
    page_depth=st.sampled_from([None, 1, 2]),
    shuffle=st.booleans(),
    empty=st.booleans(),
    num_chunks=st.integers(1, 40),
    seed=st.integers(0, 2**16),
    data=st.data(),
)
def test_random_octrees_every_point_once(local_store, n, fmt, span, cap, max_depth, page_depth, shuffle, empty, num_chunks, seed, data):
    las = cloud(n, fmt, seed, span)
    raw = write_copc(las, cap=cap, max_depth=max_depth, page_depth=page_depth, shuffle_chunks=shuffle, empty_entries=empty, seed=seed)
    co = indexed(local_store, f"r{seed}.copc.laz", raw)
    reader = CopcReader(io.BytesIO(raw))
    lod = data.draw(st.sampled_from([None, 0, 1, max_depth]))
    expected = ids(reader.query(level=None if lod is None else range(lod + 1)))
    assert_once(union(co.partition(square_split_strategy, num_chunks, max_depth=lod)), expected)
    runs = co.partition(partition_num_points, num_chunks, max_depth=lod)
    assert [s.num_points for s in runs] == np.diff(np.arange(num_chunks + 1) * expected.size // num_chunks).tolist()
    assert_once(union(runs), expected)
    chunks = co.partition(partition_spatial_chunks, num_chunks, max_depth=lod)
    assert len(chunks) == num_chunks and sum(node[2] for piece in chunks for node in piece.nodes) == expected.size
    assert_once(union(chunks), expected)
    x0, x1 = sorted(data.draw(st.integers(0, span), label="x") * 0.25 + 1000 for _ in range(2))
    y0, y1 = sorted(data.draw(st.integers(0, span), label="y") * 0.25 - 500 for _ in range(2))
    (window,) = co.partition(partition_bbox, x0, y0, x1, y1, max_depth=lod)
    all_points = reader.query(level=None if lod is None else range(lod + 1))
    assert_once(ids(window.get().points), ids(all_points)[in_box(all_points, (x0, y0, x1, y1), las.header.maxs)])


def test_cells_are_half_open_and_reach_past_the_header(local_store):
    las = cloud(3000, seed=5)
    data = bytearray(write_copc(las, cap=100, max_depth=3))
    header = laspy.LasHeader.read_from(io.BytesIO(bytes(data)))
    # Shrink the header's x/y bounds: the border cells still take the points outside them.
    struct.pack_into("<4d", data, 179, header.maxs[0] - 100, header.mins[0] + 100, header.maxs[1] - 100, header.mins[1] + 100)
    co = indexed(local_store, "shrunk.copc.laz", bytes(data))
    slices = co.partition(square_split_strategy, 4)
    assert_once(union(slices), np.arange(3000))
    first, last = slices[0], slices[-1]
    assert first.selection[:2] == (-np.inf, -np.inf) and last.selection[2:] == (np.inf, np.inf)
    assert first.bounds[:2] == (header.mins[0] + 100, header.mins[1] + 100)
    for piece in slices:
        xyz = piece.xyz()
        bx0, by0, bx1, by1 = piece.selection
        assert np.all((xyz[:, 0] >= bx0) & (xyz[:, 0] < bx1) & (xyz[:, 1] >= by0) & (xyz[:, 1] < by1))


def test_cells_fetch_only_nodes_their_cell_overlaps(local_store):
    # A square tile: the edges of 2 x 2, 4 x 4 and 8 x 8 grids fall on octree node boundaries.
    las = cloud(20000, seed=9)
    co = indexed(local_store, "square.copc.laz", write_copc(las, cap=100, max_depth=5))
    a = co.attributes
    keys = co.index().tables["node_key"]
    side = 2 * a.halfsize / 2.0 ** keys[:, 0]
    x0, y0 = a.center[0] - a.halfsize + keys[:, 1] * side, a.center[1] - a.halfsize + keys[:, 2] * side
    for n in (4, 16, 64):
        slices = co.partition(square_split_strategy, n)
        fetched = np.zeros(len(keys), dtype=np.int64)
        overlapped = np.zeros(len(keys), dtype=np.int64)
        offsets = co.index().tables["node_offset"]
        for piece in slices:
            fetched[np.searchsorted(offsets, [node[0] for node in piece.nodes])] += 1
            bx0, by0, bx1, by1 = piece.selection
            overlapped += (x0 < bx1) & (bx0 < x0 + side) & (y0 < by1) & (by0 < y0 + side)
        assert np.array_equal(fetched, overlapped)
        assert_once(union(slices), np.arange(20000))


def test_adjacent_bbox_boxes_hold_every_point_once(local_store):
    """Boxes are half-open, closed only on the header's maximum edge: split at an x that points have exactly,
    two adjacent boxes hold every point once, and a box ending at the maximum keeps the maximum."""
    las = cloud(3000, seed=21)
    co = indexed(local_store, "b.copc.laz", write_copc(las, cap=100, max_depth=4))
    x, y = np.asarray(las.x), np.asarray(las.y)
    x0, y0, x1, y1 = x.min(), y.min(), x.max(), y.max()
    assert (x == 3520).sum() > 10 and (x1, y1) == (6040, 4540)
    (left,) = co.partition(partition_bbox, x0, y0, 3520, y1)
    (right,) = co.partition(partition_bbox, 3520, y0, x1, y1)
    assert_once(union([left, right]), np.arange(3000))
    assert left.xyz()[:, 0].max() < 3520 and right.xyz()[:, 0].min() == 3520
    assert left.bounds == (x0, y0, 3520, y1) and right.bounds == (3520, y0, x1, y1)
    (corner,) = co.partition(partition_bbox, x1 - 10, y1 - 10, x1, y1)
    assert 2999 in ids(corner.get().points)  # the point on the maximum corner
    (inner,) = co.partition(partition_bbox, x0, y0, 3520, 2020)
    xyz = inner.xyz()
    assert not np.any(xyz[:, 0] == 3520) and not np.any(xyz[:, 1] == 2020) and np.any(y == 2020)


# -- reads -----------------------------------------------------------------------------------------------


def test_index_pass_reads_header_and_pages_only(store, monkeypatch):
    las = cloud(60000, seed=2)
    data = write_copc(las, cap=500, max_depth=5, page_depth=2)
    co = CloudObject.from_url("COPC", store.put("big.copc.laz", data), storage_options=store.options)
    read_stats.reset()
    calls = read_ranges_calls(monkeypatch)
    co.preprocess(progress=False)
    pages = co.attributes.pages
    assert pages > 2
    # The header (64 KiB prefetch), the root page with the point section's first 8 bytes (two requests unless
    # the store joins them), then a level of child pages per read: the pages of a level lie together, so each
    # of those reads is one request, not one per page.
    reads = [ranges for url, ranges in calls if url == co.url]
    assert len(reads) <= read_stats.requests[co.url] <= len(reads) + 1 < 2 + pages
    asked = sum(b - a for ranges in reads for a, b in ranges)
    assert asked <= 64 * 1024 + 8 + EVLR_HEADER + len(data) - struct.unpack_from("<Q", data, 235)[0]
    assert asked < len(data) / 10


def test_strategies_read_nothing_and_get_is_one_call(store, monkeypatch):
    las = cloud(20000, seed=4)
    co = indexed(store, "c.copc.laz", write_copc(las, cap=300, max_depth=4, shuffle_chunks=True))
    read_stats.reset()
    slices = square_split_strategy(co, 9) + partition_num_points(co, 5) + partition_bbox(co, 1100, 0, 2000, 900)
    slices += partition_spatial_chunks(co, 7)
    assert read_stats.bytes.get(co.url, 0) == 0
    calls = read_ranges_calls(monkeypatch)
    counts = [s.num_records for s in slices[9:14] + slices[15:]]  # runs and whole nodes: counted by the index
    assert not calls and sum(counts[:5]) == sum(counts[5:]) == 20000
    cell = square_split_strategy(co, 9)[4]
    assert cell.num_records == cell.num_records == len(cell.get().points) and len(calls) == 2  # one read to count, kept
    for piece in slices:
        if piece.number == 0:
            assert np.array_equal(pickle.loads(pickle.dumps(piece)).get().points.array, piece.get().points.array)
        calls.clear()
        points = piece.get().points
        assert piece.num_records == len(points)
        ((url, ranges),) = calls
        assert url == co.url and ranges[0] == (0, co.attributes.offset_to_point_data)
        fetched = sum(b - a for a, b in ranges[1:])
        assert fetched == sum(node[1] for node in piece.nodes)
        assert piece.byte_range() == ((ranges[1][0], ranges[-1][1]) if piece.nodes else None)
        assert len(pickle.dumps(piece)) < 600 + 60 * len(piece.nodes)


def test_slice_get_to_file_xyz_arrow_schema(local_store, tmp_path):
    las = cloud(8000, fmt=8, seed=6)
    co = indexed(local_store, "s.copc.laz", write_copc(las, cap=250, max_depth=4))
    piece = co.partition(square_split_strategy, 4)[1]
    out = piece.get()
    assert out.header.point_count == len(out.points) > 0
    assert not any(isinstance(v, CopcInfoVlr) for v in out.header.vlrs)
    assert np.allclose(out.header.mins, [out.x.min(), out.y.min(), out.z.min()])
    for suffix in (".las", ".laz"):
        piece.to_file(tmp_path / f"part{suffix}")
        back = laspy.read(tmp_path / f"part{suffix}")
        assert np.array_equal(records(back.points), records(out.points))
    dumped = io.BytesIO()
    piece.dump(dumped)
    assert np.array_equal(records(laspy.read(io.BytesIO(dumped.getvalue())).points), records(out.points))
    assert piece.num_records == len(out.points) and co.partition(partition_num_points, 3)[1].num_records == 2667
    assert np.array_equal(piece.xyz(), np.column_stack([out.x, out.y, out.z]))
    table = piece.to_arrow()
    assert table.schema == piece.schema() and table.num_rows == len(out.points)
    assert table.column_names[:3] == ["X", "Y", "Z"] and np.array_equal(table["X"].to_numpy(), np.asarray(out.x))
    frame = piece.to_pandas(columns=["gps_time", "intensity"])
    assert list(frame.columns) == ["gps_time", "intensity"] and len(frame) == len(out.points)


def test_empty_cells(local_store):
    las = cloud(500, seed=7)
    las.X = np.where(las.X < SPAN // 2, 0, SPAN)  # two clusters at the far left and right
    las.update_header()
    co = indexed(local_store, "e.copc.laz", write_copc(las, cap=50, max_depth=3))
    slices = co.partition(square_split_strategy, 9)
    sizes = [len(s.get().points) for s in slices]
    assert sum(sizes) == 500 and sizes[3:6] == [0, 0, 0]
    empty = slices[4].get()
    assert empty.header.point_count == 0 and len(empty.points) == 0
    assert slices[4].to_arrow().num_rows == 0


def check_pools_after_parent_use(folder: str) -> None:
    """Read a COPC's slices here, then on a fork and a spawn process pool: the results must be equal."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    path = Path(folder) / "pool.copc.laz"
    path.write_bytes(write_copc(cloud(6000, seed=12), cap=300, max_depth=3))
    co = CloudObject.from_url("COPC", str(path)).preprocess(progress=False)
    pieces = co.partition(square_split_strategy, 4) + co.partition(partition_spatial_chunks, 3)
    want = [_raw_points(piece) for piece in pieces]
    for method in ("fork", "spawn"):
        with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context(method)) as pool:
            assert list(pool.map(_raw_points, pieces, timeout=60)) == want, method
        print(method, "exact", flush=True)


def _raw_points(piece: COPCSlice) -> bytes:
    return piece.get().points.array.tobytes()


def test_fork_and_spawn_pools_after_reading_in_the_parent(tmp_path):
    code = "import sys; from tests.test_copc import check_pools_after_parent_use as check; check(sys.argv[1])"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)],
        cwd=Path(__file__).parent.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=180)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # hung pool workers, if any
        except ProcessLookupError:
            pass
    assert proc.returncode == 0 and out.split() == ["fork", "exact", "spawn", "exact"], err[-2000:]


# -- bad input -------------------------------------------------------------------------------------------


def _entries(data: bytes) -> tuple[int, int, list[list[int]]]:
    """The root page's offset, size and entries of a file from :func:`write_copc` (no child pages)."""
    offset, size = struct.unpack_from("<2Q", data, INFO_AT + 40)
    return offset, size, [list(ENTRY.unpack_from(data, offset + k * ENTRY.size)) for k in range(size // ENTRY.size)]


def _with_entries(data: bytes, entries: list[list[int]]) -> bytes:
    offset, _, _ = _entries(data)
    out = bytearray(data)
    for k, entry in enumerate(entries):
        ENTRY.pack_into(out, offset + k * ENTRY.size, *entry)
    return bytes(out)


@pytest.fixture(scope="module")
def small_copc() -> bytes:
    return write_copc(cloud(3000, seed=8), cap=50, max_depth=3)


def test_not_copc(store):
    las = cloud(100)
    plain = io.BytesIO()
    las.write(plain, do_compress=True)
    for name, data, cause in (
        ("plain.laz", plain.getvalue(), "COPC info VLR"),
        ("text.laz", b"hello world" * 100, "LASF"),
        ("short.laz", b"LASF" + bytes(100), "cannot hold a LAS 1.4 header"),
    ):
        co = CloudObject.from_url("COPC", store.put(name, data), storage_options=store.options)
        with pytest.raises(InvalidFormatError, match=cause) as err:
            co.preprocess(progress=False)
        assert name in str(err.value)


def _bad_root(data: bytes, offset: int, size: int) -> bytes:
    out = bytearray(data)
    struct.pack_into("<2Q", out, INFO_AT + 40, offset, size)
    return bytes(out)


def _bad_entry(data: bytes, k: int, **change: int) -> bytes:
    _, _, entries = _entries(data)
    names = ("d", "x", "y", "z", "offset", "byte_size", "point_count")
    entries[k] = [change.get(name, v) for name, v in zip(names, entries[k])]
    return _with_entries(data, entries)


def test_bad_hierarchy_pages(store, small_copc):
    data = small_copc
    root, size, entries = _entries(data)
    last = entries[-1]
    cases = {
        "page size": (_bad_root(data, root, size - 5), "whole number of 32-byte entries"),
        "page past end": (_bad_root(data, len(data) - 32, 64), "inside the object"),
        "self reference": (_bad_entry(data, 1, offset=root, byte_size=size, point_count=-1), "hierarchy pages overlap or repeat"),
        "chunk outside": (_bad_entry(data, 1, offset=len(data) - 10), "is not inside the point data"),
        "chunk overlap": (_bad_entry(data, 1, offset=entries[2][4]), "node chunks overlap"),
        "key outside": (_bad_entry(data, len(entries) - 1, x=2 ** last[0]), "outside the octree"),
        "repeated key": (_bad_entry(data, 1, d=entries[2][0], x=entries[2][1], y=entries[2][2], z=entries[2][3]), "more than one entry"),
        "count": (_bad_entry(data, 1, point_count=entries[1][6] + 1), "hierarchy holds 3001 points but the header says 3000"),
        "negative count": (_bad_entry(data, 1, point_count=-2), "point count -2"),
        "truncated": (data[: root + size // 2], "inside the object"),
        "bounds": (data[:179] + struct.pack("<d", float("nan")) + data[187:], "bounds .* must be finite"),
    }
    for name, (bad, cause) in cases.items():
        co = CloudObject.from_url("COPC", store.put(f"{name.replace(' ', '_')}.copc.laz", bad), storage_options=store.options)
        with pytest.raises(InvalidFormatError, match=cause):
            co.preprocess(progress=False)


def test_point_outside_its_node_is_refused_not_lost(local_store, small_copc):
    _, _, entries = _entries(small_copc)
    deep = [k for k, e in enumerate(entries) if e[0] == 3]
    a, b = deep[0], deep[-1]  # two far-apart voxels trade keys: their points now lie outside their cubes
    assert abs(entries[a][1] - entries[b][1]) + abs(entries[a][2] - entries[b][2]) > 2
    swapped = [list(e) for e in entries]
    swapped[a][:4], swapped[b][:4] = entries[b][:4], entries[a][:4]
    co = indexed(local_store, "moved.copc.laz", _with_entries(small_copc, swapped))
    assert_once(union(co.partition(partition_num_points, 3)), np.arange(3000))
    with pytest.raises(InvalidFormatError, match="lies outside the node's cube"):
        for piece in co.partition(square_split_strategy, 16):
            piece.get()


def test_corrupt_index_and_stale_object(local_store, small_copc):
    co = indexed(local_store, "x.copc.laz", small_copc)
    tables = dict(co.index().tables)
    tables["node_offset"] = tables["node_offset"][::-1].copy()
    with pytest.raises(CorruptIndexError, match="COPC node index"):
        CloudOptimizedPointCloud.validate_index(co.url, co.attributes, tables, {}, co.attributes.size)
    pieces = co.partition(square_split_strategy, 2)
    local_store.put("x.copc.laz", small_copc[:-1] + b"\0\0")
    with pytest.raises(StaleIndexError):
        pieces[0].get()
    with pytest.raises(StaleIndexError):
        co.partition(square_split_strategy, 2)


@pytest.mark.filterwarnings("ignore:.*slices are empty")
def test_strategy_arguments(local_store, small_copc):
    co = indexed(local_store, "a.copc.laz", small_copc)
    for strategy, args in (
        (square_split_strategy, (0,)),
        (square_split_strategy, (4, -1)),
        (partition_num_points, (2, "deep")),
        (partition_bbox, (10, 0, 5, 1)),
        (partition_bbox, (0, 0, float("nan"), 1)),
    ):
        with pytest.raises(StrategyArgumentError):
            co.partition(strategy, *args)
    assert len(co.partition(partition_num_points, 5000)) == 5000


# -- at scale --------------------------------------------------------------------------------------------


def write_large_copc(path: Path) -> int:
    """A COPC of 3.2 M points of format 8 with random attributes (about 70 MiB) at ``path``; its point count."""
    n = 3_200_000
    rng = np.random.default_rng(11)
    header = laspy.LasHeader(point_format=8, version="1.4")
    header.scales, header.offsets = np.array([0.01, 0.01, 0.01]), np.zeros(3)
    las = laspy.LasData(header)
    las.X, las.Y, las.Z = rng.integers(0, 10**6, n), rng.integers(0, 10**6, n), rng.integers(0, 10**5, n)
    las.intensity, las.red, las.green, las.blue, las.nir = (rng.integers(0, 2**16, n) for _ in range(5))
    las.gps_time = np.arange(n, dtype=np.float64)
    las.update_header()
    path.write_bytes(write_copc(las, cap=20000, max_depth=4))
    return n


@pytest.fixture(scope="session")
def large_copc(tmp_path_factory) -> tuple[str, int]:
    path = tmp_path_factory.mktemp("copc") / "large.copc.laz"
    return str(path), write_large_copc(path)


@pytest.mark.slow
def test_large_copc_at_default_settings(large_copc):
    path, n = large_copc
    assert Path(path).stat().st_size > 64 * 2**20
    co = CloudObject.from_url("COPC", path).preprocess(progress=False)
    slices = co.partition(square_split_strategy, 4)
    seen = np.zeros(n, dtype=np.int64)
    for piece in slices:
        np.add.at(seen, np.asarray(piece.to_arrow(columns=["gps_time"])["gps_time"]).astype(np.int64), 1)
    assert np.all(seen == 1)


def test_readme_name_and_default_strategy(local_store, small_copc):
    """``COPC`` imports under its README name; ``partition_num_chunks`` is ``partition_num_points``."""
    assert COPC is CloudOptimizedPointCloud and COPC.name == "COPC"
    co = indexed(local_store, "n.copc.laz", small_copc)
    total = co.attributes.point_count
    for n in (1, 7, total + 2):
        slices = co.partition("partition_num_chunks", n)
        assert len(slices) == n and [s.num_records for s in slices] == [s.num_records for s in co.partition(partition_num_points, n)]
        assert all(s.bounds is None and (s.byte_range() is None) == (s.num_records == 0) for s in slices)
    with pytest.raises(StrategyArgumentError, match="blockz"):
        CloudObject.from_url(COPC, co.url).preprocess(progress=False, force=True, blockz=5)


class TestCOPCConformance(FormatTests):
    """The conformance kit on COPC files: a real one (``simple.copc.laz``, written by PDAL), scan-ordered
    tiles written by :func:`tests.copc_files.write_copc` with child hierarchy pages, chunks in shuffled
    order and entries without points, and a small one for more slices than points. A record is a point as
    laspy reads the file (raw X, Y, Z and its attributes), in file order (node chunk by node chunk), which
    ``partition_num_chunks`` (``partition_num_points``) keeps."""

    format = COPC
    dump_suffix = ".laz"

    def samples(self) -> dict[str, dict[str, bytes]]:
        return {
            "real": {"simple.copc.laz": (DATA / "simple.copc.laz").read_bytes()},
            "scan_paged": {"scan.copc.laz": write_copc(scan_tile(60_000, 6, seed=51), cap=1500, max_depth=5, page_depth=2, shuffle_chunks=True)},
            "small_empty_entries": {"small.copc.laz": write_copc(scan_tile(800, 8, seed=52), cap=40, max_depth=3, empty_entries=True, seed=3)},
        }

    def oracle(self, path: Path) -> list[tuple]:
        return point_tuples(laspy.read(path))

    def rows(self, table: pa.Table) -> list[tuple]:
        return arrow_tuples(table)

    def large(self, folder: Path) -> tuple[str, int]:
        return "large.copc.laz", write_large_copc(folder / "large.copc.laz")
