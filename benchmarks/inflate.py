"""Inflate backends benchmark: each installed backend's time ÷ Python zlib's, per codec, in one run.

The backends are :mod:`dataplug.codecs.deflate`'s (ISA-L, zlib-ng, Python's zlib); slices use the first
installed. Generates Illumina-shaped reads (``dataplug.testing.data.illumina_fastq``, seeded) and measures:
- gzip checkpoint stretches: the reads compressed with ``gzip -6``, indexed by the gzip pass, then every
  stretch from one checkpoint to the next decoded with ``inflate_from`` (window, bit offset, trailer);
- BGZF members: the same reads as BGZF members of 64 KiB, each decoded with ``inflate_unit`` (one-shot), and
  libdeflate (the ``deflate`` package, one-shot only, so no backend) beside them when it is installed;
- a CSV.gz slice end to end: the demo CSV compressed with ``gzip -6``, indexed, in 16 slices, each read
  with ``to_arrow`` in this process (``DATAPLUG_INFLATE`` pins the backend).
The contenders run in turn (A, B, C, A, B, C, ...), best of ``--repeats``; each figure is wall seconds and
the process's CPU seconds (CPU time is steadier on a busy machine), with the load average.

    python benchmarks/inflate.py --reads 200000 --csv-mb 60
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from typing import Any

from _common import load_average

from dataplug import CloudObject
from dataplug.codecs import deflate
from dataplug.codecs.bgzf import bgzf_compress, inflate_unit
from dataplug.codecs.gzip import build_index, inflate_from
from dataplug.testing.data import illumina_fastq


def interleaved(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, tuple[float, float, Any]]:
    """Best (wall, CPU) seconds of each function and its result, the functions run in turn ``repeats`` times."""
    best: dict[str, tuple[float, float, Any]] = {}
    for _ in range(repeats):
        for name, fn in fns.items():
            w0, c0 = time.perf_counter(), time.process_time()
            result = fn()
            wall, cpu = time.perf_counter() - w0, time.process_time() - c0
            old = best.get(name)
            best[name] = (min(wall, old[0]), min(cpu, old[1]), result) if old else (wall, cpu, result)
    return best


def report(title: str, best: dict[str, tuple[float, float, Any]]) -> None:
    """One line per contender: wall and CPU seconds, and each ÷ Python zlib's."""
    wall0, cpu0, _ = best["zlib"]
    print(f"{title}   ({load_average()})")
    for name, (wall, cpu, _) in best.items():
        print(f"  {name:<24} wall {wall:7.3f} s  ratio {wall / wall0:5.2f}    CPU {cpu:7.3f} s  ratio {cpu / cpu0:5.2f}   (anchor: Python zlib)")


def gzip_stretches(reads: bytes, folder: str, backends: list[deflate.Backend], repeats: int) -> None:
    path = os.path.join(folder, "reads.fastq")
    with open(path, "wb") as fh:
        fh.write(reads)
    subprocess.run(["gzip", "-6", "-f", path], check=True)
    with open(path + ".gz", "rb") as fh:
        compressed = fh.read()
    index = build_index(io.BytesIO(compressed), len(compressed))
    checkpoints = [index.checkpoint(k) for k in range(len(index))]
    ends = [cp.compressed_offset + 1 for cp in checkpoints[1:]] + [len(compressed)]
    stretches = [(compressed[cp.fetch_start : end], cp) for cp, end in zip(checkpoints, ends)]

    def run(backend: deflate.Backend) -> int:
        return sum(len(chunk) for raw, cp in stretches for chunk in inflate_from(raw, cp, inflate=backend))

    best = interleaved({b.name: (lambda b=b: run(b)) for b in backends}, repeats)
    assert all(result >= len(reads) for _, _, result in best.values())
    report(f"gzip stretches: {len(stretches)} checkpoints, {len(compressed) / 1e6:.1f} MB gzip -6 of {len(reads) / 1e6:.1f} MB of reads", best)


def bgzf_members(reads: bytes, backends: list[deflate.Backend], repeats: int) -> None:
    block = 0xFF00
    members = [(bgzf_compress(reads[i : i + block]), len(reads[i : i + block])) for i in range(0, len(reads), block)]

    def run(backend: deflate.Backend) -> int:
        return sum(len(inflate_unit("bench", raw, 0, size, backend)) for raw, size in members)

    fns: dict[str, Callable[[], Any]] = {b.name: (lambda b=b: run(b)) for b in backends}
    try:
        import deflate as libdeflate

        fns["libdeflate (one-shot)"] = lambda: sum(len(libdeflate.gzip_decompress(raw)) for raw, _ in members)
    except ImportError:
        pass
    best = interleaved(fns, repeats)
    assert all(result == len(reads) for _, _, result in best.values())
    report(f"BGZF members: {len(members)} members of {block} decoded bytes", best)


def csv_slices(folder: str, size_mb: int, backends: list[deflate.Backend], repeats: int) -> None:
    from _common import gzipped_csv

    from dataplug.formats.generic.csv import CSV, partition_num_chunks

    path, rows = gzipped_csv(folder, size_mb)
    co = CloudObject.from_url(CSV, path)
    co.preprocess(force=True, progress=False)
    slices = co.partition(partition_num_chunks, 16)

    def run(backend: deflate.Backend) -> int:
        os.environ[deflate.ENV] = backend.name
        try:
            return sum(piece.to_arrow().num_rows for piece in slices)
        finally:
            del os.environ[deflate.ENV]

    best = interleaved({b.name: (lambda b=b: run(b)) for b in backends}, repeats)
    assert all(result == rows for _, _, result in best.values())
    report(f"CSV.gz slices to_arrow: {os.path.getsize(path) / 1e6:.0f} MB gzip -6, {rows:,} rows, 16 slices read in turn", best)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reads", type=int, default=200_000, help="Illumina reads (about 370 bytes each)")
    parser.add_argument("--csv-mb", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    backends = deflate.installed()
    print(f"backends installed, fastest first: {', '.join(b.name for b in backends)}; slices use {deflate.backend().name}")
    reads = illumina_fastq(args.reads, 21)
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        gzip_stretches(reads, folder, backends, args.repeats)
        bgzf_members(reads, backends, args.repeats)
        csv_slices(folder, args.csv_mb, backends, args.repeats)


if __name__ == "__main__":
    main()
