"""End-to-end demo on local files (no server): generate a CSV, index it, partition it, process the slices
in parallel on a process pool, and check the result against a plain read of the whole file.

Run with ``python -m dataplug.demo`` (``--help`` for sizes and slice counts).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from dataplug import CloudObject
from dataplug.formats.generic.csv import CSV, CSVSlice, partition_num_chunks

STATIONS = np.array([f"station-{i:03d}" for i in range(200)])


def generate_csv(path: str, size_mb: int, seed: int = 7) -> int:
    """Write a CSV of about ``size_mb`` MB (1 % of its notes hold a quoted newline); return its rows."""
    rng = np.random.default_rng(seed)
    schema = pa.schema([("id", pa.int64()), ("station", pa.string()), ("temp", pa.float64()), ("note", pa.string())])
    rows, batch = 0, 500_000
    with pa.OSFile(path, "wb") as sink, pacsv.CSVWriter(sink, schema) as out:
        while sink.tell() < size_mb * 1_000_000:
            notes = np.where(rng.random(batch) < 0.01, 'checked twice,\nsensor said "ok"', "ok")
            columns = {
                "id": np.arange(rows, rows + batch),
                "station": STATIONS[rng.integers(0, STATIONS.size, batch)],
                "temp": np.round(rng.normal(12.0, 8.0, batch), 2),
                "note": notes,
            }
            out.write_table(pa.table(columns, schema=schema))
            rows += batch
    return rows


def summarize(piece: CSVSlice) -> tuple[int, float]:
    """The work each process does on its slice: row count and sum of temperatures."""
    table = piece.as_arrow()
    return table.num_rows, float(pc.sum(table.column("temp")).as_py() or 0.0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mb", type=int, default=300, help="size of the generated CSV (default 300)")
    parser.add_argument("--slices", type=int, default=32, help="number of slices (default 32)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="processes in the pool")
    parser.add_argument("--dir", default=None, help="folder for the data (default: a temporary folder)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        path = os.path.join(folder, "weather.csv")
        t0 = time.perf_counter()
        rows = generate_csv(path, args.size_mb)
        t_gen = time.perf_counter() - t0

        co = CloudObject.from_url(CSV, path)
        t0 = time.perf_counter()
        co.preprocess()
        t_index = time.perf_counter() - t0

        t0 = time.perf_counter()
        slices = co.partition(partition_num_chunks, args.slices)
        t_part = time.perf_counter() - t0

        t0 = time.perf_counter()
        with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            results = list(pool.map(summarize, slices))
        t_work = time.perf_counter() - t0
        got_rows = sum(r for r, _ in results)
        got_sum = sum(s for _, s in results)

        t0 = time.perf_counter()
        whole = pacsv.read_csv(path, parse_options=pacsv.ParseOptions(newlines_in_values=True))
        t_plain = time.perf_counter() - t0
        want_sum = float(pc.sum(whole.column("temp")).as_py())

        size = co.size
        index_bytes = co.index().nbytes()
        ok = got_rows == rows == whole.num_rows and abs(got_sum - want_sum) < 1e-6 * max(1.0, abs(want_sum))
        print(f"dataplug demo: {size / 1e6:.0f} MB CSV, {rows:,} rows, {args.slices} slices on {args.workers} processes")
        print(f"  {'step':<34}{'seconds':>9}")
        for name, secs in [
            ("generate the CSV", t_gen),
            ("preprocess (index pass)", t_index),
            (f"partition into {args.slices} slices", t_part),
            ("process all slices in parallel", t_work),
            ("plain pyarrow read of the whole file", t_plain),
        ]:
            print(f"  {name:<34}{secs:>9.3f}")
        print(f"  index size: {index_bytes:,} bytes ({100 * index_bytes / size:.4f} % of the object)")
        print(f"  rows: slices {got_rows:,} / plain read {whole.num_rows:,}; temp sum: slices {got_sum:.2f} / plain read {want_sum:.2f}")
        print("  result: " + ("OK, every row exactly once" if ok else "MISMATCH"))
        if not ok:
            raise SystemExit(1)


if __name__ == "__main__":
    main()
