"""LiDAR point clouds (LAS and LAZ): every point in exactly one slice, LAS and LAZ alike, bad input named."""

from __future__ import annotations

import io
import multiprocessing
import pickle
import struct
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from dataplug.testing.data import cloud, las_bytes, laz_bytes

laspy = pytest.importorskip("laspy")
lazrs = pytest.importorskip("lazrs")

from laspy.vlrs.vlrlist import VLRList

from dataplug import CloudObject, IndexMissingError, InvalidFormatError, StaleIndexError, StrategyArgumentError
from dataplug.formats.geospatial.laspc import (
    LiDARPointCloud,
    LiDARSlice,
    grid_shape,
    partition_bbox,
    partition_num_points,
    partition_points_per_chunk,
    partition_spatial_chunks,
    square_split_strategy,
)
from dataplug.formats.geospatial.las.blocks import decode_runs, encode_runs
from dataplug.storage import plan
from dataplug.storage.object import read_stats
from dataplug.synthetic import morton_ordered_cloud, scan_ordered_cloud, write_cloud
from dataplug.testing import FormatTests
from tests.copc_files import arrow_tuples, point_tuples, scan_tile
from tests.read_spy import read_ranges_calls

GRID_COUNTS = (1, 2, 4, 7, 9, 16, 100)
#: Raw X and Y span 0..20160 at scale 0.25: the extent is [0, 5040], and 5040 = 7! puts the cell edges of
#: every grid up to 10 x 10 exactly on representable coordinates, where the cloud has points.
SPAN = 20160


def ids(las: laspy.LasData) -> np.ndarray:
    """The unique id :func:`cloud` gave each point."""
    if "gps_time" in las.point_format.dimension_names:
        return np.asarray(las.gps_time).astype(np.int64)
    return np.asarray(las.intensity).astype(np.int64) * 2**16 + np.asarray(las.point_source_id)


def indexed(store, name: str, data: bytes, **options) -> CloudObject:
    co = CloudObject.from_url(LiDARPointCloud, store.put(name, data), storage_options=store.options)
    return co.preprocess(progress=False, **options)


def assert_exactly_once(parts: list[laspy.LasData], full: laspy.LasData) -> None:
    got = np.concatenate([ids(p) for p in parts]) if parts else np.zeros(0, np.int64)
    assert got.size == full.header.point_count == sum(p.header.point_count for p in parts)
    assert np.array_equal(np.sort(got), np.sort(ids(full)))


def in_window(las: laspy.LasData, window, closed) -> np.ndarray:
    x, y = np.asarray(las.x), np.asarray(las.y)
    x0, y0, x1, y1 = window
    return (x >= x0) & ((x <= x1) if closed[0] else (x < x1)) & (y >= y0) & ((y <= y1) if closed[1] else (y < y1))


# -- every point exactly once ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt,extra", [(0, False), (1, False), (3, False), (6, False), (7, False), (8, False), (6, True), (3, True)])
def test_square_split_every_point_once_las_equals_laz(local_store, fmt, extra):
    full = cloud(3000, fmt, seed=fmt, extra_bytes=extra)
    las = indexed(local_store, f"c{fmt}.las", las_bytes(full), block_points=250)
    laz = indexed(local_store, f"c{fmt}.laz", laz_bytes(full, cuts=[400, 401, 1200, 2000, 2999]))
    assert las.attributes.blocks == 12 and laz.attributes.blocks == 6 and laz.attributes.compressed
    assert las.attributes.mins == laz.attributes.mins == (0.0, 0.0, float(full.header.z_min))
    for n in GRID_COUNTS:
        las_slices, laz_slices = las.partition(square_split_strategy, n), laz.partition(square_split_strategy, n)
        assert len(las_slices) == np.prod(grid_shape(n))
        las_parts = [s.get() for s in las_slices]
        assert_exactly_once(las_parts, full)
        for s, p, q in zip(las_slices, las_parts, [s.get() for s in laz_slices]):
            assert np.array_equal(p.points.array, q.points.array)
            assert np.all(in_window(p, s.bounds, s.closed))


def test_square_split_edges_are_half_open(local_store):
    full = cloud(4000, 6, seed=3)
    co = indexed(local_store, "e.las", las_bytes(full), block_points=20)
    slices = co.partition(square_split_strategy, 4)
    assert [s.bounds for s in slices] == [(0, 0, 2520, 2520), (0, 2520, 2520, 5040), (2520, 0, 5040, 2520), (2520, 2520, 5040, 5040)]
    assert [s.closed for s in slices] == [(False, False), (False, True), (True, False), (True, True)]
    x, y = np.asarray(full.x), np.asarray(full.y)
    assert ((x == 2520) | (y == 2520)).sum() > 30  # points on the shared edges
    for s in slices:  # a row marked whole skips the window test: all its points must be in the window
        for _, _, first, count, whole in s.blocks:
            assert not whole or np.all(in_window(full[first : first + count], s.bounds, s.closed))
    parts = [s.get() for s in slices]
    assert_exactly_once(parts, full)
    assert np.all(np.asarray(parts[3].x) >= 2520) and np.asarray(parts[0].x).max() < 2520
    assert np.asarray(parts[3].x).max() == 5040 and np.asarray(parts[3].y).max() == 5040


def test_square_split_on_s3_and_local(store):
    full = cloud(5000, 7, seed=11)
    las = indexed(store, "s.las", las_bytes(full), block_points=400)
    laz = indexed(store, "s.laz", laz_bytes(full, cuts=[1000, 2500, 4000]))
    for n in (1, 7, 16):
        a, b = [s.get() for s in las.partition(square_split_strategy, n)], [s.get() for s in laz.partition(square_split_strategy, n)]
        assert_exactly_once(a, full)
        assert all(np.array_equal(p.points.array, q.points.array) for p, q in zip(a, b))


def test_count_strategies_runs_in_file_order(store):
    full = cloud(4321, 3, seed=5)
    las = indexed(store, "r.las", las_bytes(full), block_points=500)
    laz = indexed(store, "r.laz", laz_bytes(full, cuts=[700, 1400, 2100, 3000]))
    cases = [(partition_num_points, 1), (partition_num_points, 7), (partition_points_per_chunk, 1000), (partition_points_per_chunk, 10**6)]
    if store.kind == "local":
        cases += [(partition_num_points, 50), (partition_points_per_chunk, 777), (partition_points_per_chunk, 4321)]
    for strat, arg in cases:
        a, b = las.partition(strat, arg), laz.partition(strat, arg)
        assert [s.num_points for s in a] == [s.num_points for s in b]
        if strat is partition_points_per_chunk:
            assert all(s.num_points == arg for s in a[:-1]) and 0 < a[-1].num_points <= arg
        else:
            assert len(a) == arg and max(s.num_points for s in a) - min(s.num_points for s in a) <= 1
        parts = [s.get() for s in a]
        assert np.array_equal(np.concatenate([ids(p) for p in parts]), ids(full))
        assert all(np.array_equal(p.points.array, s.get().points.array) for p, s in zip(parts, b))


def test_fixed_size_chunks_and_more_slices_than_points(local_store):
    full = cloud(120_001, 1, seed=2)
    co = indexed(local_store, "f.laz", laz_bytes(full))
    assert co.attributes.blocks == 3 and co.attributes.block_points == 50_000
    whole = laspy.read(io.BytesIO(laz_bytes(full)))
    for strat, arg in ((partition_num_points, 4), (partition_points_per_chunk, 49_999), (square_split_strategy, 9)):
        parts = [s.get() for s in co.partition(strat, arg)]
        assert_exactly_once(parts, whole)
    small = indexed(local_store, "small.laz", laz_bytes(cloud(5, 6)))
    slices = small.partition(partition_num_points, 8)
    assert [s.num_points for s in slices] == [0, 1, 0, 1, 1, 0, 1, 1] and sum(len(s.get().points) for s in slices) == 5


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    n=st.integers(1, 600),
    fmt=st.sampled_from([0, 1, 2, 3, 6, 7, 8]),
    span=st.sampled_from([0, 3, 50, SPAN]),
    seed=st.integers(0, 2**16),
    num_chunks=st.integers(1, 40),
    data=st.data(),
)
def test_random_clouds_every_point_once(local_store, n, fmt, span, seed, num_chunks, data):
    full = cloud(n, fmt, seed=seed, span=span)
    cuts = sorted(data.draw(st.lists(st.integers(0, n), max_size=6)))
    las_options = {"block_points": data.draw(st.integers(1, 200)), "run_points": data.draw(st.integers(0, 70))}
    las = indexed(local_store, f"h{seed}.las", las_bytes(full), force=True, **las_options)
    laz = indexed(local_store, f"h{seed}.laz", laz_bytes(full, cuts=cuts), force=True)
    for co in (las, laz):
        assert_exactly_once([s.get() for s in co.partition(square_split_strategy, num_chunks)], full)
        assert_exactly_once([s.get() for s in co.partition(partition_spatial_chunks, num_chunks)], full)
        assert np.array_equal(np.concatenate([ids(s.get()) for s in co.partition(partition_num_points, num_chunks)]), ids(full))
    x0, x1 = sorted(data.draw(st.floats(-10, span / 4 + 10)) for _ in range(2))
    y0, y1 = sorted(data.draw(st.floats(-10, span / 4 + 10)) for _ in range(2))
    closed = (x1 >= full.header.maxs[0], y1 >= full.header.maxs[1])  # half-open, closed on the cloud's maximum
    want = np.sort(ids(full)[in_window(full, (x0, y0, x1, y1), closed)])
    for co in (las, laz):
        (window,) = co.partition(partition_bbox, x0, y0, x1, y1)
        assert np.array_equal(np.sort(ids(window.get())), want)


def test_balanced_split_evens_out_a_skewed_cloud(local_store):
    full = cloud(20_000, 6, seed=9)
    rng = np.random.default_rng(1)
    full.X = np.where(rng.random(20_000) < 0.8, rng.integers(0, SPAN // 10, 20_000), full.X)  # 80 % in a tenth of the width
    full.update_header()
    co = indexed(local_store, "skew.las", las_bytes(full), block_points=1000, histogram_grid=16)
    assert co.index().tables["block_histogram"].sum() == 20_000
    plain = [len(s.get().points) for s in co.partition(square_split_strategy, 16)]
    slices = co.partition(square_split_strategy, 16, balance=True)
    balanced = [s.get() for s in slices]
    assert_exactly_once(balanced, full)
    counts = [len(p.points) for p in balanced]
    assert max(counts) < 2 * 20_000 / 16 < max(plain)
    bare = indexed(local_store, "bare.las", las_bytes(full))
    with pytest.raises(StrategyArgumentError, match="histogram_grid"):
        bare.partition(square_split_strategy, 4, balance=True)


# -- real point orders: scan lines along flight strips, and Morton ------------------------------------


def time_ids(las: laspy.LasData) -> np.ndarray:
    """The synthetic clouds' GPS times, unique and increasing in file order."""
    return np.asarray(las.gps_time)


def assert_each_point_once(parts: list[laspy.LasData], full: laspy.LasData) -> None:
    got = np.sort(np.concatenate([time_ids(p) for p in parts]))
    assert got.size == len(full.points) and np.array_equal(got, time_ids(full))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    order=st.sampled_from(["scan", "morton"]),
    n=st.integers(1, 3000),
    strips=st.integers(1, 7),
    line_points=st.integers(1, 500),
    size=st.sampled_from([0.05, 3.0, 1000.0]),
    seed=st.integers(0, 2**16),
    num_chunks=st.integers(1, 70),
    data=st.data(),
)
def test_point_orders_every_point_once_every_strategy(local_store, order, n, strips, line_points, size, seed, num_chunks, data):
    if order == "scan":
        full = scan_ordered_cloud(n, size=size, strips=strips, line_points=line_points, seed=seed)
    else:
        full = morton_ordered_cloud(n, size=size, tiles=2 ** (strips - 1), seed=seed)
    las_options = {"block_points": data.draw(st.integers(1, 1000)), "run_points": data.draw(st.sampled_from([0, 1, 7, 32, 100]))}
    las = indexed(local_store, f"o{seed}.las", las_bytes(full), force=True, **las_options)
    laz = indexed(local_store, f"o{seed}.laz", laz_bytes(full, cuts=sorted(data.draw(st.lists(st.integers(0, n), max_size=8)))), force=True)
    for co in (las, laz):
        cells = co.partition(square_split_strategy, num_chunks)
        parts = [s.get() for s in cells]
        assert_each_point_once(parts, full)
        assert all(np.all(in_window(p, s.bounds, s.closed)) for s, p in zip(cells, parts))
        chunks = co.partition(partition_spatial_chunks, num_chunks)
        assert len(chunks) == num_chunks
        parts = [s.get() for s in chunks]
        assert_each_point_once(parts, full)
        assert sum(row[3] for s in chunks for row in s.blocks) == n  # every point decoded once
        for s, p in zip(chunks, parts):
            assert s.num_points == len(p.points)
            if len(p.points):
                assert s.min_x <= np.asarray(p.x).min() and np.asarray(p.x).max() <= s.max_x
                assert s.min_y <= np.asarray(p.y).min() and np.asarray(p.y).max() <= s.max_y
            else:
                assert s.chunk_bounds is None
            assert s.bounds is None
        runs = co.partition(partition_num_points, num_chunks)
        assert np.array_equal(np.concatenate([time_ids(s.get()) for s in runs]), time_ids(full))


def test_scan_ordered_las_cells_read_little_more_than_they_keep(local_store):
    """The index's run bounds hold the decode factor (points read ÷ points kept) of LAS cells near 1 on a
    scan-ordered tile, where block bounds alone read most points twice; LAZ chunks cannot do better."""
    full = scan_ordered_cloud(600_000, strips=5, line_points=400, seed=3)
    las = indexed(local_store, "scan.las", las_bytes(full))
    coarse = indexed(local_store, "coarse.las", las_bytes(full), run_points=0)
    per_block = -(-np.diff(las.index().tables["block_first"]) // 32)
    assert las.attributes.run_points == 32 and las.index().tables["run_bounds"].shape == (per_block.sum(), 4)
    for cells in (16, 64):
        fine = las.partition(square_split_strategy, cells)
        factor = sum(row[3] for s in fine for row in s.blocks) / 600_000
        assert factor <= 1.2, (cells, factor)
        assert sum(row[3] for s in coarse.partition(square_split_strategy, cells) for row in s.blocks) / 600_000 > 1.5
    parts = [s.get() for s in las.partition(square_split_strategy, 16)]
    assert_each_point_once(parts, full)


def test_spatial_chunks_balance_points_and_cover_space(local_store):
    full = scan_ordered_cloud(60_000, strips=5, line_points=300, seed=4)
    laz = indexed(local_store, "k.laz", laz_bytes(full, cuts=list(range(1000, 60_000, 1000))))
    assert laz.attributes.blocks == 60
    slices = laz.partition(partition_spatial_chunks, 8)
    counts = [s.num_points for s in slices]
    assert sum(counts) == 60_000 and max(counts) - min(counts) <= 2000  # chunks of 1000 points: within two chunks
    assert all(len(s.blocks) >= 1 for s in slices)
    chunks = [row[0] for s in slices for row in s.blocks]
    assert sorted(chunks) == sorted(set(chunks)) and len(chunks) == 60
    many = laz.partition(partition_spatial_chunks, 100)
    assert len(many) == 100 and sum(1 for s in many if s.blocks) == 60 and all(len(s.blocks) <= 1 for s in many)
    assert all(s.chunk_bounds is None and len(s.get().points) == 0 for s in many if not s.blocks)
    las = indexed(local_store, "k.las", las_bytes(full), block_points=5000)
    blocks = las.partition(partition_spatial_chunks, 4)
    assert sum(s.num_points for s in blocks) == 60_000 and all(len(s.blocks) >= 1 for s in blocks)
    assert_each_point_once([s.get() for s in blocks], full)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), n=st.integers(1, 50))
def test_quantized_run_bounds_contain_their_points(data, n):
    """Run bounds are stored as bytes of their block's extent; decoded, they must still hold every point."""
    ints = st.integers(-(2**31), 2**31 - 1)
    lo_block = np.array([[data.draw(ints), data.draw(ints)]], dtype=np.int64)
    hi_block = np.array([[data.draw(st.integers(int(v), 2**31 - 1)) for v in lo_block[0]]], dtype=np.int64)
    lo = np.array([[data.draw(st.integers(int(a), int(b))) for a, b in zip(lo_block[0], hi_block[0])] for _ in range(n)], dtype=np.int64)
    hi = np.array([[data.draw(st.integers(int(a), int(b))) for a, b in zip(row, hi_block[0])] for row in lo], dtype=np.int64)
    frame = np.repeat(np.concatenate([lo_block, hi_block], axis=1).astype(np.int32), n, axis=0)
    decoded = decode_runs(frame, encode_runs(frame, lo, hi))
    assert np.all(decoded[:, :2] <= lo) and np.all(decoded[:, 2:] >= hi)
    assert np.all(decoded[:, :2] >= lo_block) and np.all(decoded[:, 2:] <= hi_block)


def test_index_of_an_older_version_asks_for_preprocess(local_store, monkeypatch):
    co = indexed(local_store, "old.las", las_bytes(cloud(500, 6)))
    monkeypatch.setattr(LiDARPointCloud, "index_version", 1)
    old = indexed(local_store, "old.las", las_bytes(cloud(500, 6)), force=True)
    monkeypatch.undo()
    fresh = CloudObject.from_url(LiDARPointCloud, old.url)
    with pytest.raises(IndexMissingError, match=r"index version 1.*preprocess\(force=True\)"):
        fresh.partition(square_split_strategy, 4)
    assert co.url == old.url


# -- what a slice gives ----------------------------------------------------------------------------------


def test_slice_get_header_to_file_xyz(local_store, tmp_path):
    full = cloud(3000, 8, seed=4, extra_bytes=True)
    laz = indexed(local_store, "g.laz", laz_bytes(full, cuts=[1000, 2000]))
    s = laz.partition(square_split_strategy, 4)[1]
    las = s.get()
    x, y, z = np.asarray(las.x), np.asarray(las.y), np.asarray(las.z)
    assert las.header.point_count == len(las.points) > 0
    assert np.allclose(las.header.mins, [x.min(), y.min(), z.min()]) and np.allclose(las.header.maxs, [x.max(), y.max(), z.max()])
    assert sum(las.header.number_of_points_by_return) == len(las.points)
    assert np.array_equal(s.xyz(), np.column_stack([x, y, z]))
    assert np.array_equal(np.asarray(las.height_above), np.asarray(full.height_above)[np.isin(ids(full), ids(las))])
    for suffix in ("las", "laz"):
        s.to_file(tmp_path / f"out.{suffix}")
        back = laspy.read(tmp_path / f"out.{suffix}")
        assert back.header.are_points_compressed == (suffix == "laz")
        assert np.array_equal(back.points.array, las.points.array) and back.header.point_count == len(las.points)


@pytest.mark.parametrize("version,fmt", [("1.1", 1), ("1.2", 2), ("1.3", 3), ("1.3", 4), ("1.4", 10)])
def test_las_versions_and_waveform_formats(local_store, version, fmt):
    full = cloud(1500, fmt, seed=2, version=version)
    for name, data in (("w.las", las_bytes(full)), ("w.laz", laz_bytes(full, cuts=[600]))):
        co = indexed(local_store, name, data, block_points=200)
        assert co.attributes.version == version and co.attributes.point_format_id == fmt
        parts = [s.get() for s in co.partition(square_split_strategy, 9)]
        assert_exactly_once(parts, full)
        assert parts[0].header.version == version


def test_evlrs_and_header_from_the_object(local_store):
    full = cloud(2000, 6, seed=8)
    full.evlrs = VLRList([laspy.VLR("dataplug", 7, "a test EVLR", b"x" * 1000)])
    for name, data in (("v.las", las_bytes(full)), ("v.laz", laz_bytes(full))):
        co = indexed(local_store, name, data, block_points=300)
        parts = [s.get() for s in co.partition(square_split_strategy, 4)]
        assert_exactly_once(parts, full)
        assert parts[0].header.version == "1.4" and parts[0].header.number_of_evlrs == 0


def test_strategies_read_nothing_and_get_is_one_call(store, monkeypatch):
    full = cloud(6000, 6, seed=6)
    calls = read_ranges_calls(monkeypatch)
    for name, data in (("q.las", las_bytes(full)), ("q.laz", laz_bytes(full, cuts=[1000, 2000, 3000, 4000, 5000]))):
        co = indexed(store, name, data, block_points=500)
        read_stats.reset()
        slices = square_split_strategy(co, 9) + partition_num_points(co, 5) + partition_spatial_chunks(co, 3)
        assert read_stats.bytes.get(co.url, 0) == 0 and read_stats.requests.get(co.url, 0) == 0
        assert all(len(pickle.dumps(s)) < 2000 for s in slices)
        calls.clear()
        counts = [s.num_records for s in slices[9:]]  # runs and whole chunks: counted by the index
        assert not calls and sum(counts[:5]) == sum(counts[5:]) == 6000
        cell = square_split_strategy(co, 9)[4]
        assert cell.num_records == cell.num_records == len(cell.get().points) and len(calls) == 2  # one read to count, kept
        for s in slices:
            calls.clear()
            read_stats.reset()
            points = s.get().points
            ((url, fetched),) = calls
            assert url == co.url and fetched[0] == (0, co.attributes.offset_to_point_data)
            ranges = fetched[1:]
            assert all(b <= c for (_, b), (c, _) in zip(ranges, ranges[1:]))  # in file order, each byte asked once
            # The store joins near ranges (adjacent blocks always): at most the header and one request per block.
            assert read_stats.requests[co.url] == len(plan(fetched, co.obj.policy.max_gap, co.obj.policy.max_block).requests) <= 1 + co.attributes.blocks
            assert s.num_records == len(points) and len(calls) == 1  # get() keeps the count


def test_preprocess_on_a_spawned_process_pool(local_store):
    full = cloud(3000, 7, seed=12)
    data = laz_bytes(full, cuts=[500, 1000, 1500, 2000, 2500])
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        co = indexed(local_store, "p.laz", data, executor=pool, chunk_size=1)
        got = np.concatenate(list(pool.map(_ids_of, co.partition(square_split_strategy, 4))))
    assert np.array_equal(np.sort(got), ids(full))
    here = indexed(local_store, "p2.laz", data)
    assert np.array_equal(co.index().tables["block_bounds"], here.index().tables["block_bounds"])


def _ids_of(s) -> np.ndarray:
    """Worker function: laspy's LasData does not pickle, so workers send back what they computed."""
    return ids(s.get())


def test_stale_object_is_refused(local_store):
    full = cloud(500, 6)
    co = indexed(local_store, "st.las", las_bytes(full))
    (s,) = co.partition(partition_num_points, 1)
    local_store.put("st.las", las_bytes(cloud(600, 6)))
    with pytest.raises(StaleIndexError):
        s.get()


# -- bad input -------------------------------------------------------------------------------------------


def _bad(store, name: str, data: bytes, match: str) -> InvalidFormatError:
    co = CloudObject.from_url(LiDARPointCloud, store.put(name, data), storage_options=store.options)
    with pytest.raises(InvalidFormatError, match=match) as info:
        co.preprocess(progress=False)
    assert co.url in str(info.value)
    return info.value


def test_not_a_las_file(store):
    _bad(store, "x.las", b"x,y,z\n1,2,3\n" * 100, "not a LAS/LAZ file")
    _bad(store, "tiny.las", b"LASF" + b"\0" * 50, "cannot hold a LAS header")
    _bad(store, "empty.las", b"", "not a LAS/LAZ file")


def test_truncated_and_miscounted_las(store):
    data = las_bytes(cloud(1000, 3))
    assert _bad(store, "t.las", data[:-100], "truncated point section").offset > 0
    count_field = 107  # legacy point count of a LAS 1.2 header
    fewer = data[:count_field] + struct.pack("<I", 990) + data[count_field + 4 :]
    _bad(store, "c.las", fewer, "disagrees with the data: its point section holds 1000 points")
    more = data[:count_field] + struct.pack("<I", 1010) + data[count_field + 4 :]
    _bad(store, "m.las", more, "truncated point section")


def test_bad_laz(local_store):
    full = cloud(2000, 6)
    fixed = laz_bytes(full)
    _bad(local_store, "t.laz", fixed[:-40], "truncated LAZ|chunk table")
    _bad(local_store, "t2.laz", fixed[: len(fixed) // 2], "truncated LAZ")
    start = laspy.LasHeader.read_from(io.BytesIO(fixed)).offset_to_point_data
    table_at = struct.unpack("<q", fixed[start : start + 8])[0]
    unset = fixed[:start] + struct.pack("<q", -1) + fixed[start + 8 :]
    err = _bad(local_store, "u.laz", unset, "without a usable chunk table")
    assert err.offset == start
    trailer = unset + struct.pack("<q", table_at)  # a streaming writer puts the offset at the end instead
    co = indexed(local_store, "trailer.laz", trailer)
    assert_exactly_once([s.get() for s in co.partition(square_split_strategy, 4)], full)
    variable = laz_bytes(full, cuts=[700, 1400])
    header = laspy.LasHeader.read_from(io.BytesIO(variable))
    header_count_at = 247  # the 64-bit point count of a LAS 1.4 header
    assert struct.unpack("<Q", variable[header_count_at : header_count_at + 8])[0] == header.point_count == 2000
    miscounted = variable[:header_count_at] + struct.pack("<Q", 1999) + variable[header_count_at + 8 :]
    _bad(local_store, "mc.laz", miscounted, "disagrees with the LAZ chunk table, which holds 2000 points")
    fixed_miscounted = fixed[:header_count_at] + struct.pack("<Q", 60_000) + fixed[header_count_at + 8 :]
    _bad(local_store, "mf.laz", fixed_miscounted, "disagrees with the LAZ chunk table")
    chunks_at = header.offset_to_point_data + 8
    corrupt = variable[: chunks_at + 100] + bytes(300) + variable[chunks_at + 400 :]
    assert _bad(local_store, "corrupt.laz", corrupt, "LAZ chunk of 700 points does not decode").offset == chunks_at


def test_empty_cloud(store):
    _bad(store, "none.las", las_bytes(cloud(0, 6)), "empty point cloud")
    _bad(store, "none.laz", laz_bytes(cloud(0, 1)), "empty point cloud")


def test_strategy_arguments(local_store):
    co = indexed(local_store, "a.las", las_bytes(cloud(100, 0)))
    bad = ((square_split_strategy, (0,)), (partition_num_points, (-1,)), (partition_points_per_chunk, (1.5,)), (partition_bbox, (5, 0, 1, 1)))
    for strat, args in bad:
        with pytest.raises(StrategyArgumentError):
            co.partition(strat, *args)


@pytest.mark.parametrize("fmt,extra", [(1, True), (6, True), (8, False)])
def test_slice_header_is_what_laspy_computes(local_store, fmt, extra):
    full = cloud(2500, fmt, seed=fmt, extra_bytes=extra)
    co = indexed(local_store, "h.laz", laz_bytes(full, cuts=[900]))
    for s in co.partition(square_split_strategy, 4) + co.partition(partition_num_points, 3):
        got = s.get()
        want = laspy.LasData(got.header.copy(), laspy.PackedPointRecord(got.points.array.copy(), got.point_format))
        want.update_header()
        for field in ("point_count", "mins", "maxs", "number_of_points_by_return", "min_gps_time", "max_gps_time", "number_of_evlrs"):
            assert np.array_equal(getattr(got.header, field), getattr(want.header, field)), field


@settings(max_examples=300, deadline=None)
@given(scale=st.floats(1e-5, 1e3), offset=st.floats(-1e7, 1e7), value=st.floats(-1e10, 1e10), strict=st.booleans())
def test_raw_thresholds_keep_what_coordinates_keep(scale, offset, value, strict):
    """Slices filter raw integers against thresholds; that must keep exactly what laspy's coordinates would."""
    from dataplug.formats.geospatial.las.slices import INT32_MAX, INT32_MIN, _first_reaching

    first = _first_reaching(value, scale, offset, strict)
    raw = np.arange(max(first - 3, INT32_MIN), min(first + 3, INT32_MAX) + 1, dtype=np.int32)
    coordinate = raw * np.float64(scale) + np.float64(offset)
    assert np.array_equal(raw >= first, coordinate > value if strict else coordinate >= value)


def test_preprocess_options_are_checked(local_store):
    data = las_bytes(cloud(100, 0))
    for option in ({"block_points": 0}, {"histogram_grid": -1}, {"block_points": 2.5}):
        with pytest.raises(StrategyArgumentError):
            indexed(local_store, "o.las", data, force=True, **option)


@pytest.mark.parametrize("suffix", ["las", "laz"])
def test_adjacent_bbox_boxes_hold_every_point_once(local_store, suffix):
    """Boxes are half-open, closed only on the cloud's own maximum edge: split at an x that points have
    exactly, two adjacent boxes hold every point once, and a box ending at the maximum keeps the maximum."""
    full = cloud(3000, 6, seed=21)
    data = las_bytes(full) if suffix == "las" else laz_bytes(full, cuts=[500, 1700])
    co = indexed(local_store, f"b.{suffix}", data, **({"block_points": 200} if suffix == "las" else {}))
    x, y = np.asarray(full.x), np.asarray(full.y)
    assert (x == 2520).sum() > 10 and x.max() == y.max() == 5040
    (left,) = co.partition(partition_bbox, 0, 0, 2520, 5040)
    (right,) = co.partition(partition_bbox, 2520, 0, 5040, 5040)
    parts = [left.get(), right.get()]
    assert_exactly_once(parts, full)
    assert np.asarray(parts[0].x).max() < 2520 and np.asarray(parts[1].x).min() == 2520
    assert left.bounds == (0, 0, 2520, 5040) and right.bounds == (2520, 0, 5040, 5040)
    (corner,) = co.partition(partition_bbox, 5000, 5000, 5040, 5040)
    assert (5040.0, 5040.0) in set(zip(np.asarray(corner.get().x).tolist(), np.asarray(corner.get().y).tolist()))
    (inner,) = co.partition(partition_bbox, 0, 0, 2520, 2520)
    assert not np.any(np.asarray(inner.get().x) == 2520) and not np.any(np.asarray(inner.get().y) == 2520)


@pytest.mark.parametrize("suffix", ["las", "laz"])
def test_dump_writes_the_object_format_and_counts_are_exact(local_store, suffix):
    """``dump`` writes LAZ for a LAZ and LAS for a LAS, which laspy reads back to the same points; every
    slice's ``num_records`` is the points it returns; ``partition_num_chunks`` is ``partition_num_points``."""
    full = cloud(2000, 7, seed=31)
    data = las_bytes(full) if suffix == "las" else laz_bytes(full, cuts=[600, 1300])
    co = indexed(local_store, f"d.{suffix}", data, **({"block_points": 300} if suffix == "las" else {}))
    slices = square_split_strategy(co, 4) + partition_bbox(co, 100, 100, 3000, 3000) + partition_spatial_chunks(co, 3)
    slices += co.partition("partition_num_chunks", 5)
    assert [s.num_records for s in slices[-5:]] == [400] * 5 and all(s.bounds is None for s in slices[-8:])
    for s in slices:
        assert s.num_records == s.to_arrow().num_rows == len(s.get().points)
        out = io.BytesIO()
        s.dump(out)
        assert laspy.LasHeader.read_from(io.BytesIO(out.getvalue())).are_points_compressed == (suffix == "laz")
        back = laspy.read(io.BytesIO(out.getvalue()))
        assert np.array_equal(back.points.array, s.get().points.array)


class TestLiDARConformance(FormatTests):
    """The conformance kit on scan-ordered tiles (zig-zag lines along flight strips, as airborne data is
    delivered): LAS 1.2 and LAZ 1.4 as laspy writes them, a LAZ of uneven chunks (one of a single point) with
    extra bytes, and small ones for more slices than points. A record is a point as laspy reads it: raw X,
    Y, Z and its attributes, in file order, which ``partition_num_chunks`` (``partition_num_points``) keeps."""

    format = LiDARPointCloud

    def samples(self) -> dict[str, dict[str, bytes]]:
        small = scan_tile(900, 7, seed=43)
        small.add_extra_dim(laspy.ExtraBytesParams("height", np.float32))
        small.height = np.linspace(0, 30, 900, dtype=np.float32)
        return {
            "scan_las": {"scan.las": las_bytes(scan_tile(36_000, 1, seed=41))},
            "scan_laz": {"scan.laz": laz_bytes(scan_tile(120_000, 6, seed=42))},
            "uneven_laz": {"uneven.laz": laz_bytes(small, cuts=[300, 301, 650])},
            "small_las": {"small.las": las_bytes(scan_tile(700, 3, seed=44))},
        }

    def oracle(self, path: Path) -> list[tuple]:
        return point_tuples(laspy.read(path))

    def rows(self, table: pa.Table) -> list[tuple]:
        return arrow_tuples(table)

    def dump_slice(self, piece: LiDARSlice, path: Path) -> Path:
        """``dump`` writes the object's own form: LAZ from a LAZ, LAS from a LAS (checked by its header)."""
        path = path.with_suffix(".laz" if piece.compressed else ".las")
        with open(path, "wb") as fp:
            piece.dump(fp)
        assert laspy.LasHeader.read_from(io.BytesIO(path.read_bytes())).are_points_compressed == piece.compressed
        return path

    def large(self, folder: Path) -> tuple[str, int]:
        """A scan-ordered LAS of 2.4 M points of format 6 (72 MB)."""
        write_cloud(scan_ordered_cloud(2_400_000, seed=45), folder / "large.las")
        return "large.las", 2_400_000
