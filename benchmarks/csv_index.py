"""CSV benchmark: dataplug's index pass and parallel slice reads against whole-file parsers, in one run.

Generates a CSV (1 % of rows hold a quoted newline) in a temporary folder, then prints:
- the index pass (``preprocess``) with column types inferred over every row (``infer_types="file"``, the
  default) and from the first MiB only (``"head"``), as the CSV format's docstring quotes them, each with
  its CPU seconds (all threads), and the goal line: the pass ÷ ``pandas.read_csv`` with default options
  (whole-file type inference), the two run in turn (A, B, A, B) so a busy spell weighs on both;
- the index pass time as a ratio to ``pandas.read_csv``, ``pyarrow.csv.read_csv``
  and ``dask.dataframe.read_csv`` (when dask is installed; its default threaded scheduler, which is faster
  here than its process scheduler) of the whole file;
- reading all slices as Arrow tables on a 2-process pool, as the same ratios;
- ``partition()`` into 10,000 slices: its time and the object bytes it read;
- every time is the best of two runs;
- the index size as a share of the object;
- the load average next to the figures (other work on the machine slows every one of them).

    python benchmarks/csv_index.py --size-mb 300
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import Any

import pyarrow.csv as pacsv

from _common import best_of, goal_line, interleaved_best, load_average, rows_on_pool, slice_bench_args, timed, warm_page_cache

from dataplug import CloudObject
from dataplug.demo import generate_csv
from dataplug.formats.generic.csv import CSV, partition_num_chunks
from dataplug.storage import read_stats


#: The issue 21 goal: the index pass, types inferred over every row, at most this many times pandas.read_csv.
GOAL = 1.0


def with_cpu(fn: Callable[[], Any]) -> Callable[[], tuple[float, Any]]:
    """``fn`` returning its CPU seconds (this process's threads) next to its result."""

    def run() -> tuple[float, Any]:
        before = os.times()
        result = fn()
        after = os.times()
        return after.user + after.system - before.user - before.system, result

    return run


def main() -> None:
    args = slice_bench_args(__doc__, 300)

    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        path = os.path.join(folder, "bench.csv")
        rows = generate_csv(path, args.size_mb)
        size = os.path.getsize(path)
        warm_page_cache(path)

        baselines: dict[str, float] = {}
        import pandas as pd

        co = CloudObject.from_url(CSV, path)
        load_before = load_average()
        (t_pandas, (c_pandas, n_pandas)), (t_index, (c_index, _)), (t_head, (c_head, _)) = interleaved_best(
            [
                with_cpu(lambda: len(pd.read_csv(path))),
                with_cpu(lambda: co.preprocess(force=True, progress=False)),
                with_cpu(lambda: co.preprocess(force=True, progress=False, infer_types="head")),
            ],
            repeats=2,
        )
        load_after = load_average()
        assert n_pandas == rows
        baselines["pandas.read_csv"] = t_pandas
        parse = pacsv.ParseOptions(newlines_in_values=True)
        baselines["pyarrow.csv.read_csv"], table = best_of(lambda: pacsv.read_csv(path, parse_options=parse))
        assert table.num_rows == rows
        del table
        dask_note = ""
        try:
            import dask.dataframe as dd

            frame = dd.read_csv(path, blocksize="64MB")
            t, lengths = best_of(lambda: frame.map_partitions(len).compute(scheduler="threads", num_workers=args.workers))
            n = int(sum(lengths))
            baselines["dask.dataframe.read_csv"] = t
            dask_note = "" if n == rows else f" (WRONG: {n:,} rows of {rows:,})"
        except ImportError:
            dask_note = " (dask not installed)"
        except Exception as exc:  # noqa: BLE001 - dask's failure on quoted newlines is itself a result
            dask_note = f" (failed: {type(exc).__name__}: {str(exc)[:80]})"

        co.preprocess(force=True, progress=False)
        assert co.attributes.rows == rows
        index_bytes = co.index().nbytes()

        fresh = CloudObject.from_url(CSV, path)
        fresh.index()
        read_stats.reset()
        t_part, many = timed(lambda: fresh.partition(partition_num_chunks, 10_000))
        part_bytes = read_stats.bytes.get(fresh.url, 0)
        assert sum(s.num_records for s in many) == rows

        slices = co.partition(partition_num_chunks, args.slices)
        t_read, counts = rows_on_pool(slices, args.workers)
        assert sum(counts) == rows, (sum(counts), rows)

        print(f"CSV {size / 1e6:.0f} MB, {rows:,} rows (1 % with a quoted newline); {args.slices} slices on {args.workers} processes")
        print(f"  index pass:        {t_index:7.3f} s  ({size / t_index / 1e6:.0f} MB/s, CPU {c_index:.3f} s); with infer_types='head' {t_head:.3f} s (CPU {c_head:.3f} s)")
        print(f"  pandas.read_csv:   {t_pandas:7.3f} s  (CPU {c_pandas:.3f} s); {load_before} before, {load_after} after")
        print(goal_line("index pass / pandas.read_csv (defaults)", t_index, "pandas.read_csv", t_pandas, GOAL))
        print(f"  read all slices:   {t_read:7.3f} s  ({size / t_read / 1e6:.0f} MB/s)")
        for name, t in baselines.items():
            print(f"  {name:<25}{t:7.3f} s   index/it {t_index / t:5.2f}   read-all/it {t_read / t:5.2f}")
        if dask_note:
            print(f"  dask.dataframe.read_csv{dask_note}")
        print(f"  partition into 10,000 slices: {t_part * 1000:.1f} ms, {part_bytes} object bytes read")
        print(f"  index size: {index_bytes:,} bytes = {100 * index_bytes / size:.4f} % of the object")
        print(f"  {load_average()}")


if __name__ == "__main__":
    main()
