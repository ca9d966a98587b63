"""SQL over slices: a DuckDB ``GROUP BY`` over ``dataplug.arrow.to_reader`` on a process pool, against Polars'
``scan_csv`` of the same ``.csv.gz`` with the same ``GROUP BY``, and against whole-table reads, in one run.

Generates a CSV (1 % of rows hold a quoted newline), compresses it with ``gzip -6``, indexes it, then prints
for the query ``select station, count(*), avg(temp) ... group by station``:
- the query over ``to_reader(slices, executor=pool)`` (``--slices`` slices, default 16, decoded and parsed on
  ``--workers`` spawned processes while DuckDB aggregates), and the same with ``dictionary=["station"]``
  (the workers dictionary-encode the grouping key), each ÷ Polars ``scan_csv(...).group_by(...)`` (which
  inflates the whole object on one thread and parses on every core, in one process): the issue 21 goal
  lines. The contenders run in turn (A, B, C, A, B, C, ...), best of three, with the CPU seconds each
  used in this process and in the workers, and the load average before and after;
- what bounds the ratio: the slices' decoding (fetch and inflate) and parsing, timed one after another in
  this process (no IPC, no query), divided by the workers; that figure ÷ Polars is the least the ratio can be
  with this work split over ``--workers`` processes;
- the query over ``pyarrow.csv.read_csv`` and over pandas' ``read_csv`` of the ``.csv.gz`` (best of two).

    python benchmarks/arrow_sql.py --size-mb 300
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv
from _common import best_of, goal_line, gzipped_csv, interleaved_best, load_average

from dataplug import CloudObject
from dataplug.arrow import to_reader
from dataplug.formats.generic.csv import CSV, partition_num_chunks

QUERY = "select station, count(*) as n, avg(temp) as t from data group by station order by station"
COLUMNS = ["station", "temp"]
#: The issue 21 goal: the query over the slices at most this many times Polars' scan_csv.
GOAL = 1.0


def query(data: pa.RecordBatchReader | pa.Table) -> list[tuple]:
    with duckdb.connect() as con:
        con.register("data", data)
        return con.sql(QUERY).fetchall()


def polars_query(path: str) -> list[tuple]:
    frame = pl.scan_csv(path).group_by("station").agg(pl.len().alias("n"), pl.col("temp").mean().alias("t")).sort("station").collect()
    return frame.rows()


def same(got: list[tuple], want: list[tuple]) -> bool:
    return len(got) == len(want) and all(g[:2] == w[:2] and abs(g[2] - w[2]) < 1e-9 for g, w in zip(got, want))


def cpu_clock(pids: list[int]) -> Callable[[], float]:
    """CPU seconds used so far by this process and the processes ``pids`` (0 for them without psutil)."""
    try:
        import psutil

        workers = [psutil.Process(pid) for pid in pids]
    except ImportError:
        workers = []

    def clock() -> float:
        own = os.times()
        return own.user + own.system + sum(sum(p.cpu_times()[:2]) for p in workers)

    return clock


def with_cpu(fn: Callable[[], Any], clock: Callable[[], float]) -> Callable[[], tuple[float, Any]]:
    def run() -> tuple[float, Any]:
        before = clock()
        result = fn()
        return clock() - before, result

    return run


def slice_bound(slices: list[Any], workers: int) -> tuple[float, float]:
    """Seconds of fetching and inflating, and of parsing, all the slices one after another in this process
    (each the better of two), divided by ``workers``: the wall time the pool needs at the least."""
    fetch = parse = 0.0
    for piece in slices:
        fetch += min(_timed(piece._fetch) for _ in range(2))
        parse += min(_timed(lambda: piece.to_arrow(COLUMNS)) for _ in range(2))
    parse -= fetch  # to_arrow fetches too
    return fetch / workers, parse / workers


def _timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=300)
    parser.add_argument("--slices", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        path, rows = gzipped_csv(folder, args.size_mb)
        co = CloudObject.from_url(CSV, path).preprocess(progress=False)
        slices = co.partition(partition_num_chunks, args.slices)

        with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            list(pool.map(abs, range(args.workers)))  # workers started before the clock runs
            clock = cpu_clock([p.pid for p in pool._processes.values()])
            ahead = 2 * args.workers
            load_before = load_average()
            (t_slices, (c_slices, got)), (t_dict, (c_dict, got_dict)), (t_polars, (c_polars, want)) = interleaved_best(
                [
                    with_cpu(lambda: query(to_reader(slices, columns=COLUMNS, executor=pool, prefetch=ahead)), clock),
                    with_cpu(lambda: query(to_reader(slices, columns=COLUMNS, executor=pool, prefetch=ahead, dictionary=["station"])), clock),
                    with_cpu(lambda: polars_query(path), clock),
                ]
            )
            load_after = load_average()
        fetch, parse = slice_bound(slices, args.workers)
        parse_options = pacsv.ParseOptions(newlines_in_values=True)
        t_whole, whole = best_of(lambda: query(pacsv.read_csv(path, parse_options=parse_options, convert_options=pacsv.ConvertOptions(include_columns=COLUMNS))))
        import pandas as pd

        t_pandas, _ = best_of(lambda: query(pa.Table.from_pandas(pd.read_csv(path, usecols=COLUMNS))))
    assert same(got, whole) and same(got_dict, whole) and same(want, whole), "results differ"

    print(f"CSV.gz of {rows:,} rows, {args.slices} slices on {args.workers} spawned processes; {QUERY}")
    print(f"  {load_before} before, {load_after} after the interleaved runs")
    print(f"  Polars scan_csv + group_by                 {t_polars:7.3f} s   (CPU {c_polars:.3f} s)")
    print(f"  to_reader(slices) + DuckDB                 {t_slices:7.3f} s   (CPU {c_slices:.3f} s, this process and the workers)")
    print(f"  to_reader(slices, dictionary=[station])    {t_dict:7.3f} s   (CPU {c_dict:.3f} s)")
    print(goal_line(f"DuckDB over {args.slices} slices / Polars scan_csv", t_slices, "Polars", t_polars, GOAL))
    print(goal_line("  the same, station dictionary-encoded", t_dict, "Polars", t_polars, GOAL))
    print(
        f"  bound: fetch+inflate {fetch:.3f} s + parse {parse:.3f} s per worker (slices in turn in one process ÷ {args.workers}) "
        f"= {fetch + parse:.3f} s, {(fetch + parse) / t_polars:.2f} x Polars before any IPC or query, if the workers had {args.workers} cores to themselves"
    )
    print(f"  whole table (pyarrow read_csv) + query  {t_whole:7.3f} s   slices / it = {t_slices / t_whole:.2f}")
    print(f"  whole table (pandas read_csv) + query   {t_pandas:7.3f} s   slices / it = {t_slices / t_pandas:.2f}")
    print(f"  {load_average()}")


if __name__ == "__main__":
    main()
