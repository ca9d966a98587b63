"""Engines benchmark: dataplug's preprocessing and slice reads on a process pool and on Dask, in one run.

Generates a CSV (1 % of rows hold a quoted newline) in a temporary folder, then prints:
- ``preprocess`` with 1 and 2 workers on a spawn process pool and on a Dask LocalCluster (processes, one
  thread each), and the 2-worker speed-up of each;
- ``len`` and the sum of a column over all slices through ``dataplug.integrations.dask.to_dataframe``, as a
  ratio to ``dask.dataframe.read_csv`` doing the same on the same cluster (goal: <= 1.0);
- whether ``dask.dataframe.read_csv`` counts the rows right at each block size (its blocks cut at any
  newline, quoted or not);
- unless ``--no-s3``: the same CSV on the latency bed (``benchmarks/latency_bed.py``: moto behind the
  project's proxy at 30 ms to the first byte and 90 MB/s per connection), its ``preprocess`` on the
  2-worker process pool and ``len`` + sum through ``to_dataframe`` on the 2-worker Dask cluster, each next
  to the same figure from the local file (page cache).

    python benchmarks/engines.py --size-mb 200
    python benchmarks/engines.py --size-mb 1000 --no-s3
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable

import dask
import dask.dataframe as dd
import pyarrow.csv as pacsv
from distributed import Client, LocalCluster

from _common import timed, warm_page_cache
from latency_bed import S3Bed

from dataplug import CloudObject
from dataplug.demo import generate_csv
from dataplug.formats.generic.csv import CSV, partition_chunk_size
from dataplug.integrations.dask import to_dataframe



def best_of(repeats: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    """The fastest of ``repeats`` runs (the machine may be shared) and its result."""
    runs = [timed(fn) for _ in range(repeats)]
    return min(runs, key=lambda run: run[0])


def preprocess_on(path: str, folder: str, executor: Any) -> float:
    """Seconds of one forced index pass on ``executor`` (its index goes to a folder of its own)."""
    co = CloudObject.from_url(CSV, path, index_location=os.path.join(folder, "index"))
    seconds, _ = timed(lambda: co.preprocess(force=True, executor=executor, progress=False))
    return seconds


def len_and_sum(frame: dd.DataFrame) -> tuple[int, float]:
    """Row count and ``sum(temp)`` in one pass: both project onto the one column, so each part is read once."""
    rows, total = dask.compute(frame["temp"].size, frame["temp"].sum())
    return int(rows), float(total)


def s3_next_to_local(path: str, folder: str, args: argparse.Namespace, local_pre: float, local_read: float, rows: int) -> None:
    """The CSV on the latency bed: preprocess on a 2-worker process pool and ``len`` + sum through
    ``to_dataframe`` on a 2-worker Dask cluster, printed next to the local figures measured above."""
    with S3Bed() as bed:
        url = f"{bed.bucket('engines')}/bench.csv"
        bed.put(path, url)
        co = CloudObject.from_url(CSV, url, storage_options=bed.options)
        with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
            list(pool.map(abs, range(2)))
            t_pre = min(timed(lambda: co.preprocess(force=True, executor=pool, progress=False))[0] for _ in range(args.repeats))
        slices = co.partition(partition_chunk_size, args.blocksize_mb * 1_000_000)
        with LocalCluster(processes=True, n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, Client(cluster):
            t_read, (got_rows, _) = best_of(args.repeats, lambda: len_and_sum(to_dataframe(slices)))
        assert got_rows == rows
    print(f"S3 bed ({bed.first_byte * 1000:.0f} ms first byte, {bed.bandwidth / 1e6:.0f} MB/s per connection) next to the local file (page cache), best of {args.repeats}")
    print(f"  preprocess, process pool 2 workers   S3 bed {t_pre:7.3f} s   local {local_pre:7.3f} s   S3 / local {t_pre / local_pre:4.2f}")
    print(f"  to_dataframe len + sum, Dask 2 procs S3 bed {t_read:7.3f} s   local {local_read:7.3f} s   S3 / local {t_read / local_read:4.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--blocksize-mb", type=int, default=64, help="dask read_csv block size and dataplug slice size")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--dir", default=None)
    parser.add_argument("--no-s3", action="store_true", help="skip the S3 latency bed")
    args = parser.parse_args()
    print(f"load before: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} cores")

    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        path = os.path.join(folder, "bench.csv")
        rows = generate_csv(path, args.size_mb)
        size = os.path.getsize(path)
        warm_page_cache(path)
        want_sum = float(pacsv.read_csv(path, parse_options=pacsv.ParseOptions(newlines_in_values=True)).column("temp").to_numpy().sum())
        print(f"CSV {size / 1e6:.0f} MB, {rows:,} rows (1 % with a quoted newline)")

        pre: dict[tuple[str, int], float] = {}
        for workers in (1, 2):
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                list(pool.map(abs, range(workers)))  # start the workers before timing
                pre["process pool", workers] = min(preprocess_on(path, os.path.join(folder, f"pool{workers}"), pool) for _ in range(args.repeats))
            with LocalCluster(processes=True, n_workers=workers, threads_per_worker=1, dashboard_address=None) as cluster, Client(cluster) as client:
                pre["dask", workers] = min(preprocess_on(path, os.path.join(folder, f"dask{workers}"), client) for _ in range(args.repeats))

        print("preprocess (index pass), best of", args.repeats)
        for engine in ("process pool", "dask"):
            one, two = pre[engine, 1], pre[engine, 2]
            print(f"  {engine:<13} 1 worker {one:7.3f} s ({size / one / 1e6:4.0f} MB/s)   2 workers {two:7.3f} s   speed-up {one / two:4.2f}")

        co = CloudObject.from_url(CSV, path, index_location=os.path.join(folder, "pool2", "index"))
        slices = co.partition(partition_chunk_size, args.blocksize_mb * 1_000_000)
        blocksize = args.blocksize_mb * 1_000_000
        with LocalCluster(processes=True, n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, Client(cluster):
            t_ours, (got_rows, got_sum) = best_of(args.repeats, lambda: len_and_sum(to_dataframe(slices)))
            assert got_rows == rows and abs(got_sum - want_sum) < 1e-6 * abs(want_sum), (got_rows, got_sum, rows, want_sum)
            t_dask, (dask_rows, dask_sum) = best_of(args.repeats, lambda: len_and_sum(dd.read_csv(path, blocksize=blocksize)))
            print(f"len + sum(temp) on Dask (2 processes), {len(slices)} slices vs read_csv blocksize {args.blocksize_mb} MB, best of {args.repeats}")
            print(f"  to_dataframe(slices) {t_ours:7.3f} s   dd.read_csv {t_dask:7.3f} s   ratio {t_ours / t_dask:4.2f} (goal <= 1.0)")
            print(f"  rows: slices {got_rows:,} (exact)  read_csv {dask_rows:,} ({'right' if dask_rows == rows else 'WRONG'})")
            print("dd.read_csv row counts by block size (every row is one record; quoted newlines must not split rows)")
            for mb in (64, 16, 4, 1):
                try:
                    n = int(dd.read_csv(path, blocksize=mb * 1_000_000).index.size.compute())
                    verdict = "right" if n == rows else f"WRONG by {n - rows:+,}"
                except Exception as exc:  # noqa: BLE001 - read_csv failing on a quoted newline is itself the result
                    verdict = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:100]}"
                print(f"  blocksize {mb:>3} MB: {verdict}")
        if not args.no_s3:
            s3_next_to_local(path, folder, args, pre["process pool", 2], t_ours, rows)
    print(f"load after: {os.getloadavg()[0]:.2f} (1 min)")


if __name__ == "__main__":
    main()
