"""Helpers shared by the benchmark scripts (run them as ``python benchmarks/<name>.py``)."""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any, BinaryIO

import numpy as np


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Wall seconds of one call, and its result."""
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def best_of(fn: Callable[[], Any], repeats: int = 2) -> tuple[float, Any]:
    """The shortest of ``repeats`` timed calls (this machine is shared and noisy), and its result."""
    return min((timed(fn) for _ in range(repeats)), key=lambda run: run[0])


def warm_page_cache(path: str) -> None:
    """Read a file once so every contender after it reads from memory."""
    with open(path, "rb") as fh:
        while fh.read(1 << 24):
            pass


def gzipped_csv(folder: str, size_mb: int) -> tuple[str, int]:
    """The demo's CSV of about ``size_mb`` MB, compressed with ``gzip -6`` in ``folder`` and read once into
    the page cache: its path and row count."""
    from dataplug.demo import generate_csv

    plain = os.path.join(folder, "bench.csv")
    rows = generate_csv(plain, size_mb)
    subprocess.run(["gzip", "-6", plain], check=True)
    warm_page_cache(plain + ".gz")
    return plain + ".gz", rows


def slice_bench_args(doc: str, size_mb: int) -> argparse.Namespace:
    """The options every slice benchmark takes: object size, slice count, workers and a scratch folder."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=size_mb)
    parser.add_argument("--slices", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--dir", default=None)
    return parser.parse_args()


def arrow_rows(piece: Any) -> int:
    """A worker's task: parse one slice to Arrow and count its rows."""
    return piece.to_arrow().num_rows


def rows_on_pool(slices: list[Any], workers: int) -> tuple[float, list[int]]:
    """The best of two timed runs of :func:`arrow_rows` over every slice on a spawned pool of ``workers``
    processes (started before the clock runs), and the row counts."""
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(abs, range(workers)))
        return best_of(lambda: list(pool.map(arrow_rows, slices)))


def interleaved_best(fns: list[Callable[[], Any]], repeats: int = 3) -> list[tuple[float, Any]]:
    """The shortest wall seconds of each of ``fns`` and its result, the functions run in turn ``repeats``
    times (A, B, A, B, ...), so that a busy spell of this shared machine weighs on each alike."""
    best: list[tuple[float, Any]] = [(float("inf"), None)] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t, result = timed(fn)
            if t < best[i][0]:
                best[i] = (t, result)
    return best


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, for a benchmark's output (other work slows every figure)."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def goal_line(label: str, ours: float, anchor_name: str, anchor: float, goal: float, unit: str = "s") -> str:
    """One result: our figure, the anchor's, their ratio and the goal for the ratio, and whether it is met."""
    ratio = ours / anchor if anchor else float("inf")
    verdict = "met" if ratio <= goal else "MISSED"
    return f"  {label:<44} {ours:9.4f} {unit}   {anchor_name} {anchor:9.4f} {unit}   ratio {ratio:6.2f}   goal <= {goal:g}   {verdict}"


def write_fasta_record(fh: BinaryIO, header: str, length: int, rng: np.random.Generator, alphabet: np.ndarray) -> None:
    """One FASTA record of ``length`` random bases from ``alphabet`` in lines of 60, as samtools lays them out."""
    fh.write(f">{header}\n".encode())
    lines = -(-length // 60)
    body = np.full((lines, 61), ord("\n"), np.uint8)
    body[:, :60] = alphabet[rng.integers(0, alphabet.size, (lines, 60), dtype=np.uint8)]
    fh.write(body.reshape(-1)[: (lines - 1) * 61 + length - (lines - 1) * 60].tobytes() + b"\n")


def stored_index_bytes(co) -> int:
    """Bytes the object's index takes where it is stored: its manifest plus the files the manifest names
    (tables and blobs inline in the manifest count as their base64 there)."""
    from dataplug.sidecar import MANIFEST
    from dataplug.testing.sidecar import read_manifest

    location = co.index_location
    manifest = read_manifest(location)
    files = [entry["bytes"] for kind in ("tables", "blobs") for entry in manifest[kind].values() if "file" in entry]
    return len(location.child(MANIFEST).read_all()) + sum(files)
