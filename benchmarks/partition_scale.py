"""Planning cost of ``partition()`` at scale: 10,000 and 100,000 slices from a loaded index (issue 20).

Generates, in a temporary folder, a CSV, a text file, a FASTQ and a VCF of about ``--size-mb`` MB each
(seeded), stored plain and gzip-compressed (``gzip -6``; the VCF as BGZF), indexes each once, and times
``co.partition("partition_num_chunks", n)`` for each ``n`` of ``--slices`` (best of ``--repeats``) on a
CloudObject whose index is already loaded. With ``--s3`` the same objects also go to a moto server
started here, reached through the fault proxy, and the requests the timed calls made are printed (the goal
is none: planning reads the loaded index only). ``--profile`` prints the top of a cProfile of one call per
object instead of timing.

    python benchmarks/partition_scale.py [--size-mb 32] [--slices 10000 100000] [--s3] [--formats csv text fastq vcf]
"""

from __future__ import annotations

import argparse
import cProfile
import gzip
import os
import pstats
import sys
import tempfile
import time
import warnings
from typing import Any

import fsspec
import numpy as np

import dataplug
from dataplug.codecs.bgzf import bgzf_compress
from dataplug.demo import generate_csv, generate_fastq
from dataplug.testing.data import make_vcf, random_lines


def plain_inputs(folder: str, size_mb: int, formats: list[str]) -> dict[str, bytes]:
    """Each format's uncompressed bytes, about ``size_mb`` MB (the VCF about a quarter of that: its
    generator is slow, and 100,000 slices need only 100,000 records)."""
    out: dict[str, bytes] = {}
    if "csv" in formats:
        path = os.path.join(folder, "g.csv")
        generate_csv(path, size_mb)
        with open(path, "rb") as fh:
            out["csv"] = fh.read()
    if "text" in formats:
        out["txt"] = random_lines(np.random.default_rng(5), size_mb * 10**6)
    if "fastq" in formats:
        path = os.path.join(folder, "g.fastq")
        generate_fastq(path, size_mb)
        with open(path, "rb") as fh:
            out["fastq"] = fh.read()
    if "vcf" in formats:
        out["vcf"] = make_vcf(max(110_000, size_mb * 4000), seed=3, samples=("s1", "s2")).encode()
    return out


def objects(plain: dict[str, bytes]) -> dict[str, bytes]:
    """name -> bytes: each input plain and compressed (gzip -6; BGZF for the VCF)."""
    out = {}
    for ext, data in plain.items():
        out[f"data.{ext}"] = data
        out[f"data.{ext}.gz"] = bgzf_compress(data) if ext == "vcf" else gzip.compress(data, 6)
    return out


def put(root: str, options: dict[str, Any], name: str, data: bytes) -> str:
    url = f"{root}/{name}"
    with fsspec.open(url, "wb", **options) as fh:
        fh.write(data)
    return url


def time_partitions(co: Any, counts: list[int], repeats: int) -> list[float]:
    """Best wall seconds of ``co.partition("partition_num_chunks", n)`` for each ``n``."""
    out = []
    for n in counts:
        best = float("inf")
        for _ in range(repeats):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t0 = time.perf_counter()
                slices = co.partition("partition_num_chunks", n)
                best = min(best, time.perf_counter() - t0)
            assert len(slices) == n, (co.url, len(slices), n)
            del slices
        out.append(best)
    return out


def profile(co: Any, n: int, top: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prof = cProfile.Profile()
        prof.enable()
        co.partition("partition_num_chunks", n)
        prof.disable()
    print(f"--- {co.url} ({n} slices)")
    pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(top)


def run(root: str, options: dict[str, Any], data: dict[str, bytes], args: argparse.Namespace, proxy: Any = None) -> None:
    where = "S3 (moto, through the proxy)" if proxy else "local"
    print(f"\n{where}: best of {args.repeats}, index loaded, ms per partition() call")
    print(f"{'object':<16}" + "".join(f"{n:>12,}" for n in args.slices) + ("  requests" if proxy else ""))
    for name, payload in data.items():
        url = put(root, options, name, payload)
        dataplug.open(url, options, progress=False)  # indexed once
        co = dataplug.open(url, options, progress=False)
        co.index()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            co.partition("partition_num_chunks", 2)  # loads what planning reads: the index tables
        if args.profile:
            profile(co, args.slices[-1], args.top)
            continue
        if proxy:
            proxy.set_mode(None)
        seconds = time_partitions(co, args.slices, args.repeats)
        asked = f"  {len(proxy.requests):>8}" if proxy else ""
        print(f"{name:<16}" + "".join(f"{s * 1000:>12.1f}" for s in seconds) + asked)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=32)
    parser.add_argument("--slices", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--formats", nargs="+", default=["csv", "text", "fastq", "vcf"])
    parser.add_argument("--s3", action="store_true", help="also on a moto server through the fault proxy")
    parser.add_argument("--local", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--profile", action="store_true", help="print a cProfile of one call per object instead of timing")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        data = objects(plain_inputs(folder, args.size_mb, args.formats))
        print("objects: " + ", ".join(f"{name} {len(b) / 1e6:.1f} MB" for name, b in data.items()))
        if args.local:
            os.makedirs(os.path.join(folder, "objects"))
            run(os.path.join(folder, "objects"), {}, data, args)
        if args.s3:
            from dataplug.testing.faultproxy import FaultProxy
            from dataplug.testing.fixtures import REGION, make_bucket, start_moto

            proc, endpoint = start_moto()
            try:
                s3 = {"endpoint_url": endpoint, "key": "testing", "secret": "testing", "client_kwargs": {"region_name": REGION}}
                bucket = make_bucket(s3)
                with FaultProxy(endpoint) as proxy:
                    run(f"s3://{bucket}", {**s3, "endpoint_url": proxy.endpoint}, data, args, proxy)
            finally:
                proc.terminate()
                proc.wait(10)


if __name__ == "__main__":
    main()
