"""FASTA benchmark: the index pass against ``samtools faidx`` (through pysam) and random ``region()`` reads
against pyfaidx, measured in the same run.

Generates a FASTA (long chromosomes and many small contigs, 60 bases a line, soft-masked and N runs),
then prints:
- the index pass (``preprocess``: a parallel map over byte ranges on the local thread pool) ÷
  ``pysam.faidx`` (samtools' ``fai_build``), and checks that ``write_fai`` writes the same ``.fai``;
- the same for the object compressed with BGZF (``pysam.tabix_compress``, i.e. bgzip): the index pass ÷
  ``pysam.faidx`` of the ``.gz``, once without a ``.gzi`` beside it and once with the ``.gzi`` samtools
  wrote (named by ``gzi=``), run in turn three times (wall and CPU seconds, the best of each), checking
  the ``.fai`` and ``.gzi`` that ``write_fai`` writes are samtools';
- 100 random ``region()`` calls (one range read each) ÷ the same 100 calls with pyfaidx (and, for
  reference, ``pysam.FastaFile.fetch``), all from the page cache, checking every answer is identical; the
  same calls on the BGZF object ÷ ``pysam.FastaFile.fetch`` on it, with the compressed bytes they fetched;
- the sidecar's growth from BGZF (the BGZF object's index less the plain object's: the codec's tables) ÷
  the compressed object, for this FASTA and for a bgzipped VCF of ``--vcf-mb`` MB;
- every other time is the best of two runs.

    python benchmarks/genomics_fasta.py --size-mb 300
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pyfaidx
import pysam
from _common import best_of, warm_page_cache, write_fasta_record

from dataplug import CloudObject
from dataplug.formats.genomics.fasta import FASTA, region, write_fai
from dataplug.formats.genomics.vcf import VCF
from dataplug.storage import read_stats


def generate_fasta(path: str, size_mb: int, seed: int = 0) -> list[tuple[str, int]]:
    """Write about ``size_mb`` MB of FASTA: 90 % in chromosomes of 10-40 Mb, the rest in 1-50 kb contigs."""
    rng = np.random.default_rng(seed)
    alphabet = np.frombuffer(b"ACGTacgtNN", np.uint8)
    target = size_mb * 10**6 * 60 // 61
    lengths, total = [], 0
    while total < target * 0.9:
        lengths.append(int(rng.integers(10_000_000, 40_000_000)))
        total += lengths[-1]
    while total < target:
        lengths.append(int(rng.integers(1_000, 50_000)))
        total += lengths[-1]
    sequences = []
    with open(path, "wb") as fh:
        for i, n in enumerate(lengths):
            name = f"chr{i + 1}" if n >= 10_000_000 else f"contig{i}"
            write_fasta_record(fh, f"{name} generated length={n}", n, rng, alphabet)
            sequences.append((name, n))
    return sequences


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=300)
    parser.add_argument("--regions", type=int, default=100)
    parser.add_argument("--region-bases", type=int, default=10_000)
    parser.add_argument("--vcf-mb", type=int, default=100, help="decoded size of the bgzipped VCF whose sidecar growth is measured")
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        path = os.path.join(folder, "bench.fa")
        sequences = generate_fasta(path, args.size_mb)
        size = os.path.getsize(path)
        warm_page_cache(path)

        t_samtools, _ = best_of(lambda: pysam.faidx(path))
        co = CloudObject.from_url(FASTA, path)
        t_index, _ = best_of(lambda: co.preprocess(force=True, progress=False))
        write_fai(co, path + ".dataplug.fai")
        with open(path + ".fai", "rb") as a, open(path + ".dataplug.fai", "rb") as b:
            assert a.read() == b.read(), ".fai differs from samtools'"

        rng = np.random.default_rng(1)
        picks = [sequences[int(i)] for i in rng.integers(0, len(sequences), args.regions)]
        queries = []
        for name, n in picks:
            start = int(rng.integers(0, max(1, n - args.region_bases)))
            queries.append((name, start, min(n, start + args.region_bases)))

        t_region, ours = best_of(lambda: [region(co, *q) for q in queries])
        fasta = pyfaidx.Fasta(path, sequence_always_upper=False, as_raw=True)
        t_pyfaidx, theirs = best_of(lambda: [fasta[name][a:b] for name, a, b in queries])
        with pysam.FastaFile(path) as ff:
            t_pysam, fetched = best_of(lambda: [ff.fetch(*q) for q in queries])
        assert ours == theirs == fetched
        index_bytes = co.index().nbytes()

        bgz = path + ".gz"
        pysam.tabix_compress(path, bgz)
        warm_page_cache(bgz)
        zipped = CloudObject.from_url(FASTA, bgz)
        t_samtools_bgzf, _ = best_of(lambda: pysam.faidx(bgz))
        os.rename(bgz + ".gzi", bgz + ".samtools.gzi")  # no .gzi beside the object: the member headers are walked
        walk, gzi = interleaved(
            [lambda: zipped.preprocess(force=True, progress=False), lambda: zipped.preprocess(force=True, progress=False, gzi=bgz + ".samtools.gzi")]
        )
        (t_index_bgzf, cpu_index_bgzf), (t_index_gzi, cpu_index_gzi) = walk, gzi
        os.rename(bgz + ".samtools.gzi", bgz + ".gzi")
        write_fai(zipped, bgz + ".dataplug.fai")
        for ext in ("fai", "gzi"):
            with open(f"{bgz}.{ext}", "rb") as a, open(f"{bgz}.dataplug.{ext}", "rb") as b:
                assert a.read() == b.read(), f"BGZF .{ext} differs from samtools'"
        bgz_size = os.path.getsize(bgz)
        bgzf_growth = zipped.index().nbytes() - index_bytes
        read_stats.reset()
        t_region_bgzf, ours_bgzf = best_of(lambda: [region(zipped, *q) for q in queries])
        fetched_bytes = read_stats.bytes[zipped.url] / 2  # compressed bytes fetched by one of the two runs
        with pysam.FastaFile(bgz) as ff:
            t_pysam_bgzf, fetched_bgzf = best_of(lambda: [ff.fetch(*q) for q in queries])
        assert ours_bgzf == fetched_bgzf == ours
        vcf_share = vcf_growth(folder, args.vcf_mb)

    print(f"FASTA {size / 1e6:.0f} MB, {len(sequences)} sequences, {co.attributes.bases:,} bases")
    print(f"  pysam.faidx (samtools)                 {t_samtools:7.3f} s")
    print(f"  index pass                             {t_index:7.3f} s   / samtools faidx = {t_index / t_samtools:.2f}")
    print(f"  BGZF {bgz_size / 1e6:.0f} MB: pysam.faidx     {t_samtools_bgzf:7.3f} s")
    print(
        f"  BGZF index pass without a .gzi         {t_index_bgzf:7.3f} s   / samtools faidx = {t_index_bgzf / t_samtools_bgzf:.2f}   CPU {cpu_index_bgzf:.3f} s"
    )
    print(
        f"  BGZF index pass with the .gzi          {t_index_gzi:7.3f} s   / samtools faidx = {t_index_gzi / t_samtools_bgzf:.2f}   CPU {cpu_index_gzi:.3f} s"
    )
    print(f"  BGZF checkpoints: {zipped.attributes.checkpoints:,} for {bgz_size / 65536:,.0f} x 64 KiB of compressed object")
    print(f"  {args.regions} x pyfaidx [{args.region_bases} bases]           {t_pyfaidx:7.4f} s")
    print(f"  {args.regions} x pysam.FastaFile.fetch           {t_pysam:7.4f} s")
    print(
        f"  {args.regions} x region()                        {t_region:7.4f} s   / pyfaidx = {t_region / t_pyfaidx:.2f}   / pysam = {t_region / t_pysam:.2f}"
    )
    print(f"  {args.regions} x pysam.FastaFile.fetch, BGZF     {t_pysam_bgzf:7.4f} s")
    print(
        f"  {args.regions} x region(), BGZF                  {t_region_bgzf:7.4f} s   / pysam = {t_region_bgzf / t_pysam_bgzf:.2f}"
        f"   ({fetched_bytes / args.regions / 1e3:,.0f} kB compressed fetched a region)"
    )
    print(f"  index size: {index_bytes:,} bytes = {100 * index_bytes / size:.4f} % of the object")
    print(f"  sidecar growth from BGZF, FASTA: {bgzf_growth:,} bytes = {100 * bgzf_growth / bgz_size:.4f} % of the compressed object")
    print(f"  sidecar growth from BGZF, VCF {args.vcf_mb} MB: {vcf_share}")


def interleaved(fns: list[Callable[[], Any]], rounds: int = 3) -> list[tuple[float, float]]:
    """The shortest wall and CPU seconds (all threads) of each of ``fns``, run in turn ``rounds`` times, so
    that a busy spell of this shared machine weighs on each alike."""
    best = [(float("inf"), float("inf"))] * len(fns)
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            best[i] = (min(best[i][0], time.perf_counter() - wall), min(best[i][1], time.process_time() - cpu))
    return best


def vcf_growth(folder: str, size_mb: int) -> str:
    """The sidecar growth from BGZF for a VCF of about ``size_mb`` MB: its BGZF index less its plain index."""
    from genomics_vcf import generate_vcf

    path = os.path.join(folder, "bench.vcf")
    generate_vcf(path, size_mb)
    pysam.tabix_compress(path, path + ".gz")
    plain = CloudObject.from_url(VCF, path).preprocess(progress=False).index().nbytes()
    zipped = CloudObject.from_url(VCF, path + ".gz").preprocess(progress=False)
    growth, compressed = zipped.index().nbytes() - plain, os.path.getsize(path + ".gz")
    return f"{growth:,} bytes = {100 * growth / compressed:.4f} % of the compressed object ({compressed / 1e6:.0f} MB)"


if __name__ == "__main__":
    main()
