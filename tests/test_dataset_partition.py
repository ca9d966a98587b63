"""Partitioning datasets across objects, on the moto server: 200 small CSV/CSV.gz parts and 3 larger ones cut
into balanced slices that hold every row once in dataset order, streamed to DuckDB and Polars with one
schema; a 3 x 3 LAZ tile set cut by a box and a grid that read only the tiles they meet; a dataset published
read-only over plain HTTP."""

from __future__ import annotations

import gzip
import io
import json
import pickle
import uuid
from collections import Counter

import fsspec
import numpy as np
import pyarrow as pa
import pytest

from dataplug.arrow import to_reader
from dataplug.datasets import open_dataset
from dataplug.datasets.partition import _plan_units
from dataplug.datasets.slices import GroupSlice
from dataplug.errors import EmptyResultWarning, StrategyArgumentError
from dataplug.testing.fixtures import make_bucket, proxied_options

#: The large gzipped part has the default checkpoint spacing: its small test slices decode more than they hold.
pytestmark = pytest.mark.filterwarnings("ignore::dataplug.framings.lines.CheckpointSpacingWarning")

KEYS = 7
SMALL_PARTS, LARGE_PARTS, LARGE_ROWS = 200, 3, 60_000


def _rows(rng: np.random.Generator, first_id: int, rows: int, halves: bool) -> tuple[str, list[tuple[int, str, float]]]:
    """``rows`` data lines of ``id,key,amount,day``: amounts whole numbers, or halves (the part's column is
    then a double, elsewhere an int64), so sums are exact in both types."""
    keys = rng.integers(0, KEYS, rows)
    amounts = rng.integers(-1000, 1000, rows) + (0.5 * rng.integers(0, 2, rows) if halves else 0)
    days = rng.integers(1, 29, rows)
    records = [(first_id + i, f"k{k}", float(a)) for i, (k, a) in enumerate(zip(keys.tolist(), amounts.tolist()))]
    text = "".join(f"{i},{k},{a if halves else int(a)},2026-02-{d:02d}\n" for (i, k, a), d in zip(records, days.tolist()))
    return text, records


@pytest.fixture(scope="module")
def csv_run(s3_options):
    """Three larger CSVs (one gzipped) then 200 small parts, half gzipped, one with only its header, some
    with halves in ``amount``; ids count rows in dataset (URL) order."""
    rng = np.random.default_rng(22)
    bucket = make_bucket(s3_options)
    fs = fsspec.filesystem("s3", **s3_options)
    names = [f"large-{i}.csv" + (".gz" if i == 1 else "") for i in range(LARGE_PARTS)]
    names += [f"part-{i:03d}.csv" + (".gz" if i % 2 else "") for i in range(SMALL_PARTS)]
    records: list[tuple[int, str, float]] = []
    files = {}
    for k, name in enumerate(names):
        count = LARGE_ROWS if name.startswith("large") else 0 if name == "part-100.csv" else int(rng.integers(20, 400))
        text, rows = _rows(rng, len(records), count, halves=k % 9 == 4)
        records += rows
        data = ("id,key,amount,day\n" + text).encode()
        files[f"{bucket}/run/{name}"] = gzip.compress(data, 6) if name.endswith(".gz") else data
    fs.pipe(files)
    fs.invalidate_cache()
    ds = open_dataset(f"s3://{bucket}/run/*.csv*", s3_options, progress=False)
    return ds, records


def test_num_chunks_balanced_every_row_once_in_dataset_order(csv_run):
    ds, records = csv_run
    objects = {co.url: co.attributes.rows for co in ds.objects}
    slices = ds.partition("partition_num_chunks", 16)
    assert len(slices) == 16 and [s.number for s in slices] == list(range(16))
    counts = [s.num_records for s in slices]
    assert sum(counts) == len(records) and max(counts) <= 1.5 * np.mean(counts), counts
    kinds = Counter(type(s).__name__ for s in slices)
    assert kinds["GroupSlice"] >= 1 and kinds["CSVSlice"] >= LARGE_PARTS, kinds
    for s in slices:  # a group holds whole objects; a piece is of one object
        if isinstance(s, GroupSlice):
            assert all(part.num_records == objects[part.url] for part in s.parts)
        else:
            assert s.url in objects
    table = pa.concat_tables(s.to_arrow() for s in slices)
    assert table["id"].to_pylist() == list(range(len(records)))


def test_one_widened_schema_and_duckdb_group_by_over_the_stream(csv_run):
    duckdb = pytest.importorskip("duckdb")
    ds, records = csv_run
    own = {tuple(co.attributes.column_types) for co in ds.objects if co.attributes.rows}
    assert ("int64", "string", "int64", "date32[day]") in own and ("int64", "string", "double", "date32[day]") in own
    slices = ds.partition("partition_num_chunks", 12)
    schemas = {s.schema() for s in slices}
    assert len(schemas) == 1 and schemas.pop().field("amount").type == pa.float64()
    reader = to_reader(slices)  # noqa: F841 - DuckDB reads it by name
    got = duckdb.sql("select key, count(*), sum(amount) from reader group by key order by key").fetchall()
    totals: dict[str, list[float]] = {}
    for _, key, amount in records:
        totals.setdefault(key, [0, 0.0])
        totals[key][0] += 1
        totals[key][1] += amount
    assert got == [(key, n, total) for key, (n, total) in sorted(totals.items())]
    pl = pytest.importorskip("polars")
    frame = pl.from_arrow(to_reader(ds.partition("partition_num_chunks", 5)).read_all())
    assert frame.height == len(records) and frame["amount"].sum() == sum(r[2] for r in records)


def test_sizes_per_slice_group_whole_objects(csv_run):
    ds, records = csv_run
    slices = ds.partition("partition_rows", 5000)
    assert sum(s.num_records for s in slices) == len(records)
    assert all(s.num_records <= 5000 for s in slices)
    groups = [s for s in slices if isinstance(s, GroupSlice)]
    assert groups and len(slices) < len(ds) - 50  # small parts share slices
    by_bytes = ds.partition("partition_chunk_size", 256 * 1024)
    assert sum(s.num_records for s in by_bytes) == len(records)


def test_a_group_is_a_slice_a_worker_can_take(csv_run):
    ds, _ = csv_run
    group = next(s for s in ds.partition("partition_num_chunks", 16) if isinstance(s, GroupSlice))
    again = pickle.loads(pickle.dumps(group))
    assert again == group and len(pickle.dumps(group)) < 2000 * len(group.parts)
    assert again.byte_range() is None and again.known_num_records == again.num_records == again.to_arrow().num_rows
    text = again.get()
    assert text.startswith("id,key,amount,day\n") and text.count("id,key,amount,day") == 1
    out = io.BytesIO()
    again.dump(out)
    assert out.getvalue().decode() == text and len(text.splitlines()) == again.num_records + 1


def test_strategy_arguments_are_checked_for_the_dataset(csv_run):
    ds, _ = csv_run
    with pytest.raises(StrategyArgumentError, match="has no strategy 'partition_bbox'"):
        ds.partition("partition_bbox", 0, 0, 1, 1)
    with pytest.raises(StrategyArgumentError, match=r"partition_num_chunks\(num_chunks\)"):
        ds.partition("partition_num_chunks")
    with pytest.raises(StrategyArgumentError, match="MAX_SLICES"):
        ds.partition("partition_num_chunks", 10**6)
    from dataplug.formats.generic.csv import partition_num_chunks

    assert ds.partition(partition_num_chunks, 6) == ds.partition("partition_num_chunks", 6)  # a strategy function


def test_plan_bounds_the_largest_slice_as_the_objects_allow():
    rng = np.random.default_rng(5)
    for _ in range(200):
        weights = [float(w) for w in rng.choice([rng.integers(0, 50), rng.integers(100, 5000)], size=int(rng.integers(1, 300)))]
        n = int(rng.integers(1, 64))
        units = _plan_units(weights, n)
        assert sum(u.k for u in units) == n and units[0].lo == 0 and units[-1].hi == len(weights)
        assert all(a.hi == b.lo for a, b in zip(units, units[1:]))
        largest, mean = max(u.share for u in units), sum(weights) / n
        if max(weights) <= mean / 2:  # greedy groups up to 1.5 x the mean then need at most n slices
            assert largest <= 1.5 * mean


# -- a 3 x 3 tile set of LAZ ----------------------------------------------------------------------------------

TILE = 5040.0  # data.SPAN raw units at a scale of 0.25


@pytest.fixture(scope="module")
def tiles(s3_options, fault_proxy):
    """Nine LAZ tiles of a 3 x 3 grid, each holding points on all four of its edges (so tiles that share
    an edge both hold points on it); ``gps_time`` numbers the points across the tile set."""
    pytest.importorskip("lazrs")
    from dataplug.testing.data import cloud, laz_bytes

    bucket = make_bucket(s3_options)
    fs = fsspec.filesystem("s3", **s3_options)
    points = {}
    for k in range(9):
        tx, ty = k % 3, k // 3
        las = cloud(2500, 6, seed=k)
        las.X = las.X + int(tx * TILE / 0.25)  # raw units at the cloud's scale of 0.25
        las.Y = las.Y + int(ty * TILE / 0.25)
        las.gps_time = np.arange(2500, dtype=np.float64) + 2500 * k
        las.update_header()
        name = f"tile-{tx}-{ty}.laz"
        fs.pipe_file(f"{bucket}/survey/{name}", laz_bytes(las))
        points[name] = (np.asarray(las.x), np.asarray(las.y), np.asarray(las.gps_time))
    fs.invalidate_cache()
    options = proxied_options(s3_options, fault_proxy)
    ds = open_dataset(f"s3://{bucket}/survey/*.laz", options, progress=False)
    return ds, points


def _ids(slices) -> np.ndarray:
    return np.concatenate([s.to_arrow(["gps_time"])["gps_time"].to_numpy() for s in slices])


def test_a_box_reads_only_the_tiles_it_meets(tiles, fault_proxy):
    ds, points = tiles
    assert ds.attributes.bounds[0][:2] == (0.0, 0.0) and ds.attributes.bounds[1][:2] == (3 * TILE, 3 * TILE)
    # Tiles (0,0) and (1,0); tiles (0,1) and (1,1) start on the box's open top edge, so they are not read.
    box = (1000.0, 1000.0, TILE + 900.0, TILE)
    fault_proxy.set_mode(None)
    slices = ds.partition("partition_bbox", *box)
    assert fault_proxy.requests == []  # planning reads no object
    assert [s.url.rsplit("/", 1)[-1] for s in slices] == ["tile-0-0.laz", "tile-1-0.laz"]
    got = _ids(slices)
    read = {r.target.split("?")[0].rsplit("/", 1)[-1] for r in fault_proxy.requests}
    assert read == {"tile-0-0.laz", "tile-1-0.laz"}, read
    inside = [t[(x >= box[0]) & (x < box[2]) & (y >= box[1]) & (y < box[3])] for x, y, t in points.values()]
    assert len(got) == len(set(got.tolist())) and sorted(got.tolist()) == sorted(np.concatenate(inside).tolist())


def test_a_grid_over_the_tiles_holds_every_point_once(tiles):
    ds, points = tiles
    with pytest.warns(EmptyResultWarning, match="no object"):
        assert ds.partition("partition_bbox", -10.0, -10.0, -1.0, -1.0) == []
    slices = ds.partition("square_split_strategy", 9)
    everything = np.concatenate([t for _, _, t in points.values()])
    got = _ids(slices)
    assert len(got) == len(everything) and set(got.tolist()) == set(everything.tolist())  # shared edges: once
    cells = Counter(s.bounds[:2] for s in slices)
    assert max(cells.values()) >= 4 and len(cells) == 9  # the cell above the corner meets four tiles
    assert all("tile-" in s.url for s in slices)  # every slice is one tile's
    assert sum(1 for x, _, _ in points.values() if np.any(x == TILE)) >= 2  # two tiles' points on one edge
    counted = ds.partition("partition_num_chunks", 4)
    assert sorted(_ids(counted).tolist()) == sorted(everything.tolist())


# -- a published dataset --------------------------------------------------------------------------------------


def test_a_published_dataset_is_read_over_plain_http(s3_options, moto_endpoint):
    from dataplug.cli import main

    fs = fsspec.filesystem("s3", **s3_options)
    public = f"public-{uuid.uuid4().hex[:10]}"
    fs.mkdir(public)
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{public}/*"}]}
    fs.call_s3("put_bucket_policy", Bucket=public, Policy=json.dumps(policy))
    data = make_bucket(s3_options)
    for i in range(6):
        fs.pipe_file(f"{data}/logs/day-{i}.csv", ("n,v\n" + "".join(f"{i},{j}\n" for j in range(50 + i))).encode())
    fs.invalidate_cache()
    pattern = f"s3://{data}/logs/*.csv"
    credentials = [f"endpoint_url={moto_endpoint}", "key=testing", "secret=testing"]
    argv = ["publish", pattern, f"s3://{public}/logs-index/", "--public-dest", f"{moto_endpoint}/{public}/logs-index/"]
    argv += [a for c in credentials for a in ("-s", c)] + [a for c in credentials for a in ("--dest-storage-option", c)]
    assert main(argv) == 0
    readme = fs.cat_file(f"{public}/logs-index/README.txt").decode()
    assert pattern in readme and "open_dataset" in readme
    ds = open_dataset(pattern, s3_options, index_location=f"{moto_endpoint}/{public}/logs-index/", preprocess=False)
    assert ds.published and sum(s.num_records for s in ds.partition("partition_num_chunks", 3)) == sum(50 + i for i in range(6))


def test_regions_of_a_vcf_dataset_are_per_object_in_order(local_store):
    from dataplug.testing.data import make_vcf

    texts = [make_vcf(300, seed=k) for k in range(3)]
    for k, text in enumerate(texts):
        local_store.put(f"calls/part-{k}.vcf", text.encode())
    ds = open_dataset(local_store.url("calls/*.vcf"), progress=False)
    slices = ds.partition("partition_regions", ["chr2", "chr1:1-50000000"])
    assert [s.url.rsplit("/", 1)[-1] for s in slices] == ["part-0.vcf"] * 2 + ["part-1.vcf"] * 2 + ["part-2.vcf"] * 2
    assert [s.number for s in slices] == list(range(6))
    chr2 = [sum(1 for line in text.splitlines() if line.startswith("chr2\t")) for text in texts]
    assert [s.num_records for s in slices[::2]] == chr2
