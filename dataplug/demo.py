"""End-to-end demo on local files (no server): generate a CSV, a FASTQ.gz and (with the ``lidar`` extra) a
LAZ tile, index them, partition them, process the slices in parallel on a process pool, and check the
results against plain reads.

Run with ``python -m dataplug.demo`` (``--help`` for sizes and slice counts).
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import multiprocessing
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from dataplug import CloudObject
from dataplug.executors import map_ordered
from dataplug.formats.generic.csv import CSV, CSVSlice, partition_num_chunks
from dataplug.formats.genomics.fastq import FASTQGZip, FASTQGZipSlice, partition_reads_batches

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


def generate_fastq(path: str, size_mb: int, seed: int = 3) -> int:
    """Write a FASTQ of about ``size_mb`` MB of random 100-150 bp reads; return the number of reads."""
    rng = np.random.default_rng(seed)
    bases = np.frombuffer(b"ACGT", np.uint8)
    reads = 0
    with open(path, "wb") as out:
        while out.tell() < size_mb * 1_000_000:
            lengths = rng.integers(100, 151, 20_000)
            seqs = bases[rng.integers(0, 4, lengths.sum())].tobytes()
            quals = rng.integers(35, 74, lengths.sum()).astype(np.uint8).tobytes()
            pos, parts = 0, []
            for length in lengths.tolist():
                parts.append(b"@r%d length=%d\n%s\n+\n%s\n" % (reads, length, seqs[pos : pos + length], quals[pos : pos + length]))
                pos += length
                reads += 1
            out.write(b"".join(parts))
    return reads


def gc_counts(fastq: bytes) -> tuple[int, int, int]:
    """(reads, G+C bases, all bases) of whole FASTQ records, counted on the bytes (no per-read strings)."""
    sequences = fastq.split(b"\n")[1::4]
    joined = b"".join(sequences)
    return len(sequences), joined.count(b"G") + joined.count(b"C"), len(joined)


def count_gc(piece: FASTQGZipSlice) -> tuple[int, int, int]:
    """The work each process does on its FASTQ.gz slice: reads and GC content of its records' bytes."""
    return gc_counts(piece.raw())


def summarize(piece: CSVSlice) -> tuple[int, float]:
    """The work each process does on its slice: row count and sum of temperatures."""
    table = piece.as_arrow()
    return table.num_rows, float(pc.sum(table.column("temp")).as_py() or 0.0)


class _Report:
    """Prints a run's steps as they finish, so a long run shows where it is."""

    def __init__(self, title: str) -> None:
        print(f"\n{title}\n  {'step':<40}{'seconds':>9}", flush=True)

    def step(self, name: str, fn: Callable[[], Any]) -> tuple[float, Any]:
        seconds, result = _timed(fn)
        print(f"  {name:<40}{seconds:>9.3f}", flush=True)
        return seconds, result

    def fact(self, text: str) -> None:
        print(f"  {text}", flush=True)

    def verdict(self, ok: bool, t_slices: float, t_plain: float, what: str) -> bool:
        self.fact(f"all slices on the pool / {what}: {t_slices / t_plain:.2f}")
        self.fact("result: " + ("OK, every record exactly once" if ok else "MISMATCH"))
        return ok


def _process(report: _Report, co: CloudObject, strategy: Any, n: int, pool: ProcessPoolExecutor, work: Any, label: str) -> tuple[float, list[Any], list[Any]]:
    """The dataplug part of every run: preprocess, partition into ``n`` slices, ``work`` on each in the pool
    (with a bar of slices done when interactive)."""
    report.step("preprocess (index pass)", lambda: co.preprocess(progress=None))
    _, slices = report.step(f"partition into {n} slices", lambda: co.partition(strategy, n))
    t_work, results = report.step(label, lambda: map_ordered(work, slices, pool, desc="slices"))
    return t_work, slices, results


def _picture(co: CloudObject, slices: list[Any], folder: str | None, name: str, report: _Report) -> None:
    """One PNG of the partition per format, when matplotlib is installed (the ``plot`` extra)."""
    if folder is None or importlib.util.find_spec("matplotlib") is None:
        return
    os.makedirs(folder, exist_ok=True)
    report.fact(f"picture of the partition: {co.plot_partition(slices, os.path.join(folder, name))}")


def run_csv(folder: str, size_mb: int, n: int, pool: ProcessPoolExecutor, workers: int, plots: str | None = None) -> bool:
    path = os.path.join(folder, "weather.csv")
    report = _Report(f"CSV: about {size_mb} MB of weather rows, {n} slices on {workers} processes")
    _, rows = report.step("generate the CSV", lambda: generate_csv(path, size_mb))
    co = CloudObject.from_url(CSV, path)
    t_work, slices, results = _process(report, co, partition_num_chunks, n, pool, summarize, "sum temperatures of all slices")
    got_rows, got_sum = sum(r for r, _ in results), sum(s for _, s in results)
    t_plain, whole = report.step("plain pyarrow read of the whole file", lambda: pacsv.read_csv(path, parse_options=pacsv.ParseOptions(newlines_in_values=True)))
    want_sum = float(pc.sum(whole.column("temp")).as_py())
    ok = got_rows == rows == whole.num_rows and abs(got_sum - want_sum) < 1e-6 * max(1.0, abs(want_sum))
    report.fact(f"index size: {co.index().nbytes():,} bytes ({100 * co.index().nbytes() / co.size:.4f} % of the {co.size / 1e6:.0f} MB object)")
    report.fact(f"rows: slices {got_rows:,} / plain read {whole.num_rows:,}; temperature sum: slices {got_sum:.2f} / plain read {want_sum:.2f}")
    _picture(co, slices, plots, "csv_slices.png", report)
    return report.verdict(ok, t_work, t_plain, "plain read")


def run_fastq(folder: str, size_mb: int, n: int, pool: ProcessPoolExecutor, workers: int, plots: str | None = None) -> bool:
    plain = os.path.join(folder, "reads.fastq")
    path = plain + ".gz"

    def make() -> int:
        reads = generate_fastq(plain, size_mb)
        with open(plain, "rb") as src, gzip.open(path, "wb", compresslevel=6) as dst:
            shutil.copyfileobj(src, dst, 16 * 2**20)
        return reads

    report = _Report(f"FASTQ.gz: about {size_mb} MB of reads, gzipped, {n} slices on {workers} processes")
    _, reads = report.step("generate and gzip the FASTQ", make)
    co = CloudObject.from_url(FASTQGZip, path)
    t_work, slices, results = _process(report, co, partition_reads_batches, n, pool, count_gc, "GC content of all slices")
    got = tuple(map(sum, zip(*results)))

    def plain_read() -> tuple[int, int, int]:
        with open(path, "rb") as fh:
            return gc_counts(gzip.decompress(fh.read()))

    t_plain, want = report.step("plain gzip read of the whole file", plain_read)
    ok = got == want and got[0] == reads
    report.fact(f"index size: {co.index().nbytes():,} bytes ({100 * co.index().nbytes() / co.size:.3f} % of the {co.size / 1e6:.0f} MB object, {co.attributes.checkpoints} checkpoints)")
    report.fact(f"reads: slices {got[0]:,} / plain read {want[0]:,}; GC: slices {100 * got[1] / max(got[2], 1):.3f} % / plain read {100 * want[1] / max(want[2], 1):.3f} %")
    _picture(co, slices, plots, "fastq_gz_slices.png", report)
    return report.verdict(ok, t_work, t_plain, "plain read")


def height_histogram(piece: Any) -> tuple[int, np.ndarray]:
    """The work each process does on its LiDAR cell: points and a histogram of heights in 1 m bins."""
    z = piece.xyz()[:, 2]
    return z.size, np.bincount(np.clip(z, 0, 99).astype(int), minlength=100)


def run_lidar(folder: str, n: int, pool: ProcessPoolExecutor, workers: int, points: int, plots: str | None = None) -> bool:
    import laspy

    from dataplug.formats.geospatial.laspc import LiDARPointCloud, partition_spatial_chunks
    from dataplug.synthetic import scan_ordered_cloud, write_cloud

    path = os.path.join(folder, "tile.laz")
    report = _Report(f"LiDAR: a scan-ordered LAZ tile of {points:,} points, {n} k-d slices of whole chunks on {workers} processes")
    report.step("generate the LAZ (in scan order)", lambda: write_cloud(scan_ordered_cloud(points, seed=5), path))
    co = CloudObject.from_url(LiDARPointCloud, path)
    t_work, slices, results = _process(report, co, partition_spatial_chunks, n, pool, height_histogram, "height histogram of all slices")
    got, hist = sum(r[0] for r in results), np.sum([r[1] for r in results], axis=0)
    t_plain, whole = report.step("plain laspy read of the whole file", lambda: laspy.read(path))
    want = np.bincount(np.clip(whole.z, 0, 99).astype(int), minlength=100)
    ok = got == points == whole.header.point_count and np.array_equal(hist, want)
    report.fact(f"index size: {co.index().nbytes():,} bytes ({100 * co.index().nbytes() / co.size:.4f} % of the {co.size / 1e6:.0f} MB object, {co.attributes.blocks} LAZ chunks)")
    report.fact(f"points: slices {got:,} / plain read {whole.header.point_count:,}; height histograms equal: {np.array_equal(hist, want)}")
    _picture(co, slices, plots, "lidar_slices.png", report)
    return report.verdict(ok, t_work, t_plain, "plain read")


def _has_lidar() -> bool:
    """The LiDAR part needs the ``lidar`` extra (laspy, lazrs)."""
    return all(importlib.util.find_spec(name) for name in ("laspy", "lazrs"))


def _timed(fn):
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mb", type=int, default=300, help="size of the generated CSV (default 300)")
    parser.add_argument("--fastq-mb", type=int, default=150, help="uncompressed size of the generated FASTQ (default 150)")
    parser.add_argument("--lidar-points", type=int, default=5_000_000, help="points of the generated LAZ tile (default 5 M)")
    parser.add_argument("--slices", type=int, default=16, help="number of slices (default 16)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="processes in the pool")
    parser.add_argument("--only", choices=["csv", "fastq", "lidar"], default=None, help="run one part only")
    parser.add_argument("--dir", default=None, help="folder for the data (default: a temporary folder)")
    parser.add_argument(
        "--plots", default=os.path.join(tempfile.gettempdir(), "dataplug-demo"), help="folder for one PNG of each partition (needs matplotlib; '' for none)"
    )
    args = parser.parse_args(argv)
    plots = args.plots or None

    ok = True
    with tempfile.TemporaryDirectory(dir=args.dir) as folder, ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(abs, range(args.workers)))  # start the workers, so the timings below are the work
        if args.only in (None, "csv"):
            ok &= run_csv(folder, args.size_mb, args.slices, pool, args.workers, plots)
        if args.only in (None, "fastq"):
            ok &= run_fastq(folder, args.fastq_mb, args.slices, pool, args.workers, plots)
        if args.only == "lidar" or (args.only is None and _has_lidar()):
            ok &= run_lidar(folder, args.slices, pool, args.workers, args.lidar_points, plots)
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
