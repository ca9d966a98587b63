"""SQL over slices: a DuckDB ``GROUP BY`` over ``dataplug.arrow.to_reader`` on a process pool, against the same
query over the whole table read first, measured in the same run.

Generates a CSV (1 % of rows hold a quoted newline), compresses it with ``gzip -6``, indexes it, then prints
for the query ``select station, count(*), avg(temp) ... group by station``:
- the query over ``to_reader(slices, executor=pool)`` (slices decoded and parsed on ``--workers`` spawned
  processes while DuckDB aggregates) ÷ the query over ``pyarrow.csv.read_csv`` of the ``.csv.gz`` (pyarrow
  decompresses on one thread, parses on all cores) plus the query;
- the same against pandas' ``read_csv`` of the ``.csv.gz`` into DuckDB.
Each figure is the better of two runs; the contenders alternate.

    python benchmarks/arrow_sql.py --size-mb 300
"""

from __future__ import annotations

import multiprocessing
import tempfile
from concurrent.futures import ProcessPoolExecutor

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
from _common import best_of, gzipped_csv, slice_bench_args

from dataplug import CloudObject
from dataplug.arrow import to_reader
from dataplug.formats.generic.csv import CSV, partition_num_chunks

QUERY = "select station, count(*) as n, avg(temp) as t from data group by station order by station"


def query(data: pa.RecordBatchReader | pa.Table) -> list[tuple]:
    with duckdb.connect() as con:
        con.register("data", data)
        return con.sql(QUERY).fetchall()


def main() -> None:
    args = slice_bench_args(__doc__, 300)
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        path, rows = gzipped_csv(folder, args.size_mb)
        co = CloudObject.from_url(CSV, path).preprocess(progress=False)
        slices = co.partition(partition_num_chunks, args.slices)
        parse = pacsv.ParseOptions(newlines_in_values=True)
        columns = ["station", "temp"]

        with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            list(pool.map(abs, range(args.workers)))  # workers started before the clock runs
            t_slices, got = best_of(lambda: query(to_reader(slices, columns=columns, executor=pool, prefetch=2 * args.workers)))
            t_whole, want = best_of(lambda: query(pacsv.read_csv(path, parse_options=parse, convert_options=pacsv.ConvertOptions(include_columns=columns))))
        import pandas as pd

        t_pandas, _ = best_of(lambda: query(pa.Table.from_pandas(pd.read_csv(path, usecols=columns))))
    assert len(got) == len(want) and all(g[:2] == w[:2] and abs(g[2] - w[2]) < 1e-9 for g, w in zip(got, want)), "results differ"

    print(f"CSV.gz of {rows:,} rows, {args.slices} slices on {args.workers} processes; {QUERY}")
    print(f"  whole table (pyarrow read_csv) + query  {t_whole:7.3f} s")
    print(f"  whole table (pandas read_csv) + query   {t_pandas:7.3f} s")
    print(f"  to_reader(slices) + query               {t_slices:7.3f} s   / pyarrow = {t_slices / t_whole:.2f}   / pandas = {t_slices / t_pandas:.2f}")


if __name__ == "__main__":
    main()
