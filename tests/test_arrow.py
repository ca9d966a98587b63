"""Slices as one Arrow stream: DuckDB and Polars queries over it equal the same queries over a whole read."""

from __future__ import annotations

import gzip
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

import dataplug
from dataplug.arrow import to_reader

duckdb = pytest.importorskip("duckdb", reason="DuckDB is installed by the ci extra")


def _weather(rows: int = 30_000, seed: int = 4) -> bytes:
    rng = np.random.default_rng(seed)
    stations = rng.choice([f"st-{i}" for i in range(40)], rows)
    temps = np.round(rng.normal(10, 5, rows), 2)
    notes = np.where(rng.random(rows) < 0.02, '"said ""hi"",\nthen left"', "ok")
    return b"station,temp,note\n" + "".join(f"{s},{t},{n}\n" for s, t, n in zip(stations, temps, notes)).encode()


def _fastq(reads: int = 8_000, seed: int = 2) -> bytes:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(reads):
        seq = "".join(rng.choice(list("ACGT"), int(rng.integers(20, 60))))
        out.append(f"@r{i} lane={i % 7}\n{seq}\n+\n{'I' * len(seq)}\n")
    return "".join(out).encode()


GROUP_CSV = "select station, count(*) as n, round(sum(temp), 2) as t from data group by station order by station"
GROUP_FASTQ = "select length(sequence) as len, count(*) as n from data group by len order by len"


def query(sql: str, data: pa.RecordBatchReader | pa.Table) -> list[tuple]:
    """``sql`` over ``data`` registered as the table ``data`` of a fresh DuckDB connection."""
    with duckdb.connect() as con:
        con.register("data", data)
        return con.sql(sql).fetchall()


def test_duckdb_group_by_over_a_csv_gz_equals_a_whole_read(store):
    data = _weather()
    co = dataplug.open(store.put("w.csv.gz", gzip.compress(data)), storage_options=store.options, spacing=2**16)
    got = query(GROUP_CSV, to_reader(co.partition("partition_num_chunks", 9), prefetch=3))
    whole = pacsv.read_csv(pa.py_buffer(data), parse_options=pacsv.ParseOptions(newlines_in_values=True))
    assert len(got) == 40 and got == query(GROUP_CSV, whole)


def test_duckdb_group_by_over_a_fastq_gz_on_a_process_pool(local_store):
    data = _fastq()
    co = dataplug.open(local_store.put("r.fastq.gz", gzip.compress(data)), spacing=2**15)
    with ProcessPoolExecutor(2) as pool:
        got = query(GROUP_FASTQ, to_reader(co.partition("partition_reads_batches", 7), columns=["sequence"], executor=pool))
    lines = data.decode().splitlines()
    assert len(got) == 40 and got == query(GROUP_FASTQ, pa.table({"sequence": lines[1::4]}))


def test_polars_reads_the_stream(local_store):
    pl = pytest.importorskip("polars", reason="Polars is installed by the ci extra")
    data = _weather(5_000)
    co = dataplug.open(local_store.put("w.csv", data))
    frame = pl.from_arrow(to_reader(co.partition("partition_num_chunks", 4)).read_all())
    whole = pl.read_csv(data)

    def totals(df):  # rounded: sums in another order differ in the last bits
        return df.group_by("station").agg(pl.len(), pl.col("temp").sum().round(6)).sort("station")

    assert frame.height == 5_000 and totals(frame).equals(totals(whole))


def test_engines_without_submit_are_fed_windows(local_store):
    import multiprocessing

    data = _weather(3_000)
    co = dataplug.open(local_store.put("w.csv", data))
    slices = co.partition("partition_num_chunks", 5)
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        table = to_reader(slices, executor=pool, prefetch=2).read_all()
    assert table.num_rows == co.attributes.rows and table.column("station").to_pylist() == pa.concat_tables([s.to_arrow() for s in slices]).column("station").to_pylist()


def test_errors_of_a_slice_reach_the_reader(local_store):
    url = local_store.put("w.csv", _weather(2_000))
    co = dataplug.open(url)
    slices = co.partition("partition_num_chunks", 4)
    local_store.put("w.csv", _weather(2_001))  # the object changed after indexing
    with pytest.raises(dataplug.StaleIndexError):
        to_reader(slices).read_all()


def test_dictionary_columns_are_encoded_by_the_workers_and_query_alike(local_store):
    data = _weather(6_000)
    co = dataplug.open(local_store.put("w.csv", data))
    slices = co.partition("partition_num_chunks", 5)
    with ProcessPoolExecutor(2) as pool:
        reader = to_reader(slices, columns=["station", "temp"], executor=pool, dictionary=["station"])
        assert reader.schema.field("station").type == pa.dictionary(pa.int32(), pa.string())
        table = reader.read_all()
    plain = pa.concat_tables([s.to_arrow(["station", "temp"]) for s in slices])
    assert table.column("station").cast(pa.string()).equals(plain.column("station")) and table.column("temp").equals(plain.column("temp"))
    assert query(GROUP_CSV, table) == query(GROUP_CSV, plain)
    with pytest.raises(dataplug.DataplugError, match="not a string column"):
        to_reader(slices, dictionary=["temp"])
