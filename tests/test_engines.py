"""Real engines on small data: a Dask LocalCluster of 2 processes, Lithops' localhost backend, a spawn
process pool, Ray when installed. Workers get slices or byte ranges, never data, and counts are exact."""

from __future__ import annotations

import io
import multiprocessing
import pickle
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from dataplug import CloudObject
from dataplug.executors import map_ordered
from dataplug.formats.generic.csv import CSV, CSVSlice, partition_num_chunks
from dataplug.formats.generic.text import partition_num_chunks as text_num_chunks
from dataplug.testing.data import make_csv

ROWS = 20_000
#: Byte ranges of the parallel preprocessing maps: ~1 MB of CSV makes ~16 of them.
CHUNK = 64 * 1024
#: A slice's pickle must stay far below this (it travels once per task).
MAX_PICKLED_SLICE = 2048


def whole_table(data: bytes) -> pa.Table:
    return pacsv.read_csv(io.BytesIO(data), parse_options=pacsv.ParseOptions(newlines_in_values=True))


def count_rows(piece: CSVSlice) -> int:
    """A task run on workers: parse the slice and count its rows."""
    return piece.as_arrow().num_rows


def index_equal(a: CloudObject, b: CloudObject) -> bool:
    ta, tb = a.index().tables, b.index().tables
    return a.attributes == b.attributes and ta.keys() == tb.keys() and all(np.array_equal(ta[k], tb[k]) for k in ta)


def serial_twin(co: CloudObject, tmp_path, chunk_size: int = CHUNK) -> CloudObject:
    """The same object indexed elsewhere in one process, with the same byte ranges."""
    twin = CloudObject.from_url(co.format, co.url, co.storage_options, index_location=str(tmp_path / "serial-index"))
    with ThreadPoolExecutor(1) as one:
        twin.preprocess(executor=one, chunk_size=chunk_size)
    return twin


@pytest.fixture(scope="module")
def csv_data() -> bytes:
    return make_csv()


@pytest.fixture(scope="module")
def dask_client():
    pytest.importorskip("dask.dataframe", reason="Dask is installed by the dask and ci extras")
    distributed = pytest.importorskip("distributed", reason="Dask is installed by the dask and ci extras")
    with distributed.LocalCluster(processes=True, n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            yield client


@pytest.fixture(scope="module")
def lithops_executor(tmp_path_factory):
    """Lithops fully offline: localhost compute and storage (under the temp dir), runtime metadata cached in a
    temporary folder instead of ``~/.lithops``."""
    lithops = pytest.importorskip("lithops", reason="Lithops is installed by the lithops and ci extras")
    config = {"lithops": {"backend": "localhost", "storage": "localhost"}, "localhost": {"worker_processes": 2}}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("lithops.storage.storage.CACHE_DIR", str(tmp_path_factory.mktemp("lithops-cache")), raising=False)
        with lithops.FunctionExecutor(config=config, log_level=None) as fexec:
            yield fexec
            fexec.clean()


# -- Dask --------------------------------------------------------------------------------------------------


def test_dask_preprocess_matches_serial(dask_client, store, csv_data, tmp_path):
    url = store.put("quoted.csv", csv_data)
    co = CloudObject.from_url(CSV, url, store.options)
    co.preprocess(executor=dask_client, chunk_size=CHUNK, progress=False)
    assert co.attributes.rows == ROWS
    assert index_equal(co, serial_twin(co, tmp_path))


def test_dask_bag_and_dataframe_count_every_row(dask_client, local_store, csv_data):
    url = local_store.put("quoted.csv", csv_data)
    co = CloudObject.from_url(CSV, url).preprocess(executor=dask_client, chunk_size=CHUNK)
    slices = co.partition(partition_num_chunks, 7)
    from dataplug.integrations.dask import to_bag, to_dataframe

    assert to_bag(slices, count_rows).npartitions == 7
    assert to_bag(slices, count_rows).sum().compute() == ROWS
    assert to_bag(slices).map(lambda text: whole_table(text.encode()).num_rows).sum().compute() == ROWS

    want = whole_table(csv_data)
    df = to_dataframe(slices)
    assert df.npartitions == 7 and list(df.columns) == want.column_names
    assert len(df) == ROWS
    assert df["temp"].sum().compute() == pytest.approx(float(np.sum(want.column("temp").to_numpy())))
    got = df.compute()
    assert (got.dtypes == df.dtypes).all()
    assert got["id"].tolist() == list(range(ROWS))
    assert got["note"].tolist() == want.column("note").to_pylist()

    arrow_df = to_dataframe(slices, arrow_dtypes=True)
    arrow_got = arrow_df.compute()
    assert (arrow_got.dtypes == arrow_df.dtypes).all() and len(arrow_got) == ROWS


def test_dask_progress_bar_on_and_off(dask_client, capsys):
    assert map_ordered(abs, [-1, -2, -3], dask_client, progress=True, desc="dask-bar") == [1, 2, 3]
    assert "dask-bar" in capsys.readouterr().err
    assert map_ordered(abs, [-1, -2, -3], dask_client, progress=False, desc="dask-bar") == [1, 2, 3]
    assert capsys.readouterr().err == ""


# -- Lithops -----------------------------------------------------------------------------------------------


def test_lithops_localhost_on_s3_slices(lithops_executor, s3_store, csv_data, tmp_path):
    """The worker reaches the moto endpoint through the slice's storage options."""
    from dataplug.integrations.lithops import map_slices

    url = s3_store.put("quoted.csv", csv_data)
    co = CloudObject.from_url(CSV, url, s3_store.options)
    co.preprocess(executor=lithops_executor, chunk_size=4 * CHUNK)
    assert co.attributes.rows == ROWS
    assert index_equal(co, serial_twin(co, tmp_path, 4 * CHUNK))

    slices = co.partition(partition_num_chunks, 5)
    assert slices[0].obj.storage_options["endpoint_url"] == s3_store.options["endpoint_url"]
    counts = map_slices(lithops_executor, count_rows, slices, progress=False)
    assert counts == [s.num_records for s in slices] and sum(counts) == ROWS
    futures = lithops_executor.map(count_rows, slices)
    assert sum(lithops_executor.get_result(futures)) == ROWS


# -- process pools -----------------------------------------------------------------------------------------


def test_spawn_pool_over_s3_slices(s3_store, csv_data, tmp_path):
    url = s3_store.put("quoted.csv", csv_data)
    co = CloudObject.from_url(CSV, url, s3_store.options)
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(2, mp_context=spawn) as pool:
        co.preprocess(executor=pool, chunk_size=CHUNK)
    assert index_equal(co, serial_twin(co, tmp_path))
    slices = co.partition(partition_num_chunks, 6)
    with spawn.Pool(2) as pool:
        assert sum(pool.map(count_rows, slices)) == ROWS
        assert map_ordered(count_rows, slices, pool, progress=False) == [s.num_records for s in slices]


# -- Ray ---------------------------------------------------------------------------------------------------


def test_ray_preprocess_and_slices(local_store, csv_data, tmp_path):
    ray = pytest.importorskip("ray", reason="Ray is installed by the ray and ci extras")
    from dataplug.integrations.ray import map_slices, to_dataset

    url = local_store.put("quoted.csv", csv_data)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        co = CloudObject.from_url(CSV, url).preprocess(executor=ray, chunk_size=CHUNK)
        assert index_equal(co, serial_twin(co, tmp_path))
        slices = co.partition(partition_num_chunks, 4)
        assert map_slices(count_rows, slices, progress=False) == [s.num_records for s in slices]
        assert to_dataset(slices).count() == ROWS
    finally:
        ray.shutdown()


# -- what travels ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["CSV", "UTF8Text"])
def test_pickled_slices_stay_small(s3_store, csv_data, fmt):
    cloudpickle = pytest.importorskip("cloudpickle")
    co = CloudObject.from_url(fmt, s3_store.put("data.csv", csv_data), s3_store.options).preprocess()
    strategy = partition_num_chunks if fmt == "CSV" else text_num_chunks
    for n in (1, 50):
        for piece in co.partition(strategy, n):
            piece.raw()  # a used slice (live filesystem) pickles as small as a fresh one
            for dumps in (pickle.dumps, cloudpickle.dumps):
                assert len(dumps(piece)) < MAX_PICKLED_SLICE


def test_import_dataplug_imports_no_engine():
    code = (
        "import sys, dataplug, dataplug.executors, dataplug.integrations\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'dask', 'distributed', 'lithops', 'ray'}))"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


def test_unknown_engine_is_a_type_error():
    with pytest.raises(TypeError, match="cannot map on"):
        map_ordered(abs, [1, 2], executor=object())


def test_default_pool_keeps_order_and_progress_switch(capsys):
    assert map_ordered(lambda x: x * x, range(50), progress=True, desc="local-bar") == [x * x for x in range(50)]
    assert "local-bar" in capsys.readouterr().err
    assert map_ordered(lambda x: x * x, range(50), progress=False) == [x * x for x in range(50)]
    assert capsys.readouterr().err == ""


def test_dask_dataframe_of_fastq_and_lidar_slices(dask_client, local_store):
    """to_dataframe works for every format's slices: FASTQ.gz reads and LAZ points, one partition per slice."""
    import gzip

    from dataplug.formats.genomics.fastq import FASTQGZip, partition_reads_batches
    from dataplug.formats.geospatial.laspc import LiDARPointCloud, square_split_strategy
    from dataplug.integrations.dask import to_dataframe
    from dataplug.testing.data import make_fastq
    from dataplug.testing.data import cloud, laz_bytes

    data = make_fastq(3000, 11)
    fq = CloudObject.from_url(FASTQGZip, local_store.put("r.fastq.gz", gzip.compress(data))).preprocess(spacing=50_000)
    df = to_dataframe(fq.partition(partition_reads_batches, 5))
    assert list(df.columns) == ["name", "sequence", "quality"] and df.npartitions == 5
    assert df["sequence"].compute().tolist() == data.decode().splitlines()[1::4]

    las = cloud(20_000, 6)
    co = CloudObject.from_url(LiDARPointCloud, local_store.put("c.laz", laz_bytes(las))).preprocess()
    points = to_dataframe(co.partition(square_split_strategy, 4))
    assert list(points.columns[:3]) == ["X", "Y", "Z"] and "intensity" in points.columns
    got = points.compute()
    assert len(got) == len(las.points)
    assert sorted(got["X"].tolist()) == sorted(np.asarray(las.x).tolist())
