"""VCF.gz benchmark: the index pass of a gzip-compressed VCF and reading all its slices, against
``gzip -dc`` and one single-process pass over the records, measured in the same run.

Generates a sorted VCF (three chromosomes, four samples, 1 % long REFs), compresses it with ``gzip -6``,
then prints:
- the index pass (``preprocess``: one sequential inflate with checkpoints, the line index, every record's
  columns and POS checked, the per-block (CHROM, start, last covered) summaries) ÷ ``gzip -dc``;
- all slices parsed with ``to_arrow`` on a ``--workers`` process pool ÷ one pass over the ``.vcf.gz`` in
  plain Python (split every record, int POS, float QUAL) and ÷ cyvcf2 (when installed) reading
  CHROM, POS, REF, ALT, QUAL of every record;
- ``partition_regions`` over 100 random 100 kb regions, and over 20 random 10 Mb ones: the time to plan them
  and count their records exactly (``num_records``: the blocks at each region's edges are read), the
  compressed bytes that counting reads, against the bytes reading the slices reads, checking every count
  against the records the slices return;
- the same VCF BGZF-compressed (pysam's bgzip when installed): its index pass with every BGZF member a
  checkpoint (``spacing=1``), and the sidecar's size against the object (the goal: at most 0.5 %);
- every time is the best of two runs (the regions and the BGZF pass: one run).

    python benchmarks/genomics_vcf.py --size-mb 300
"""

from __future__ import annotations

import gzip
import os
import subprocess
import tempfile

import numpy as np
from _common import best_of, rows_on_pool, slice_bench_args, timed, warm_page_cache

from dataplug import CloudObject
from dataplug.formats.genomics.vcf import VCF, partition_num_chunks, partition_regions
from dataplug.storage import read_stats
from dataplug.testing.codecs import bgzf

SAMPLES = ("S1", "S2", "S3", "S4")


def generate_vcf(path: str, size_mb: int) -> int:
    """Write a sorted VCF of about ``size_mb`` MB; returns its number of records."""
    rng = np.random.default_rng(0)
    meta = [
        "##fileformat=VCFv4.2",
        *(f"##contig=<ID={c},length=200000000>" for c in ("chr1", "chr2", "chr3")),
        '##INFO=<ID=DP,Number=1,Type=Integer,Description="Depth">',
        '##INFO=<ID=AF,Number=A,Type=Float,Description="Allele frequency">',
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
        '##FORMAT=<ID=DP,Number=1,Type=Integer,Description="Depth">',
    ]
    header = "\n".join(meta) + "\n" + "\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT", *SAMPLES]) + "\n"
    per_record = 84
    total = size_mb * 10**6 // per_record
    counts = (total * np.array([0.5, 0.3, 0.2])).astype(int)
    written = 0
    with open(path, "w") as fh:
        fh.write(header)
        for chrom, count in zip(("chr1", "chr2", "chr3"), counts.tolist()):
            pos = np.sort(rng.integers(1, 2 * 10**8, count))
            long_ref = rng.random(count) < 0.01
            qual = rng.integers(0, 1000, count)
            for a in range(0, count, 200_000):
                batch = zip(pos[a : a + 200_000].tolist(), long_ref[a : a + 200_000].tolist(), qual[a : a + 200_000].tolist())
                rows = [
                    f"{chrom}\t{p}\trs{written + a + i}\t{'ACGTACGTACGTACGTACGT' if r else 'A'}\tG\t{q / 10:.1f}\tPASS\t"
                    f"DP={q % 90};AF=0.{q % 97}\tGT:DP\t0/1:{q % 40}\t1/1:12\t0/0:{q % 31}\t0/1:9"
                    for i, (p, r, q) in enumerate(batch)
                ]
                fh.write("\n".join(rows) + "\n")
            written += count
    return written


def python_pass(path: str) -> int:
    """One plain-Python pass: every record split into its columns, POS and QUAL converted."""
    n = 0
    with gzip.open(path, "rt") as fh:
        for line in fh:
            if line.startswith("#"):
                continue
            f = line.rstrip("\n").split("\t")
            int(f[1])
            None if f[5] == "." else float(f[5])
            n += 1
    return n


def cyvcf2_pass(path: str) -> int:
    """One cyvcf2 pass reading CHROM, POS, REF, ALT and QUAL of every record."""
    from cyvcf2 import VCF as CyVCF

    n = 0
    for v in CyVCF(path):
        v.CHROM, v.POS, v.REF, v.ALT, v.QUAL
        n += 1
    return n


def main() -> None:
    args = slice_bench_args(__doc__, 300)
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        plain = os.path.join(folder, "bench.vcf")
        records = generate_vcf(plain, args.size_mb)
        plain_size = os.path.getsize(plain)
        t_bgzf, bgzf_size, bgzf_index, bgzf_members, bgzf_blocks = bgzf_bench(plain, records)
        subprocess.run(["gzip", "-6", plain], check=True)
        path = plain + ".gz"
        size = os.path.getsize(path)
        warm_page_cache(path)

        t_gzip, _ = best_of(lambda: subprocess.run(["gzip", "-dc", path], stdout=subprocess.DEVNULL, check=True))
        t_python, n = best_of(lambda: python_pass(path))
        assert n == records
        try:
            import cyvcf2  # noqa: F401

            t_cyvcf2, n = best_of(lambda: cyvcf2_pass(path))
            assert n == records
        except ImportError:
            t_cyvcf2 = None

        co = CloudObject.from_url(VCF, path)
        t_index, _ = best_of(lambda: co.preprocess(force=True, progress=False))
        assert co.attributes.records == records and co.attributes.compression == "gzip" and co.attributes.sorted
        slices = co.partition(partition_num_chunks, args.slices)
        t_read, counts = rows_on_pool(slices, args.workers)
        assert sum(counts) == records, (sum(counts), records)
        index_bytes = co.index().nbytes()
        regions = [(number, length, *regions_bench(co, path, number, length)) for number, length in ((100, 100_000), (20, 10_000_000))]

    print(f"VCF.gz {size / 1e6:.0f} MB ({plain_size / 1e6:.0f} MB decoded, {records:,} records, {len(SAMPLES)} samples)")
    print(f"  {args.slices} slices on {args.workers} processes")
    print(f"  gzip -dc                          {t_gzip:7.3f} s")
    print(f"  plain-Python pass                 {t_python:7.3f} s")
    if t_cyvcf2 is not None:
        print(f"  cyvcf2 pass                       {t_cyvcf2:7.3f} s")
    print(f"  index pass                        {t_index:7.3f} s   / gzip -dc = {t_index / t_gzip:.2f}")
    line = f"  all slices to_arrow ({args.workers} workers)     {t_read:7.3f} s   / plain Python = {t_read / t_python:.2f}"
    print(line + (f", / cyvcf2 = {t_read / t_cyvcf2:.2f}" if t_cyvcf2 is not None else ""))
    print(f"  index size: {index_bytes:,} bytes = {100 * index_bytes / size:.3f} % of the object ({co.attributes.checkpoints} checkpoints)")
    print(
        f"  BGZF {bgzf_size / 1e6:.0f} MB, every member a checkpoint: index pass {t_bgzf:.3f} s, index size {bgzf_index:,} bytes = "
        f"{100 * bgzf_index / bgzf_size:.3f} % of the object ({bgzf_members} members, {bgzf_blocks} region blocks)"
    )
    for number, length, t_regions, counted, region_bytes, region_records in regions:
        print(
            f"  partition_regions, {number} regions of {length / 1e6:g} Mb ({region_records:,} records): {t_regions:.3f} s, "
            f"{counted / 1e6:.1f} MB read to count them exactly, {region_bytes / 1e6:.1f} MB to read the slices"
        )


def bgzf_bench(plain: str, records: int) -> tuple[float, int, int, int, int]:
    """BGZF-compress ``plain`` and index it with every member a checkpoint: (seconds of the index pass, object
    bytes, sidecar bytes, members, region blocks)."""
    path = plain + ".bgz"
    try:
        import pysam

        pysam.tabix_compress(plain, path, force=True)
    except ImportError:
        with open(plain, "rb") as fh, open(path, "wb") as out:
            out.write(bgzf(fh.read())[0])
    co = CloudObject.from_url(VCF, path)
    t_index, _ = timed(lambda: co.preprocess(force=True, progress=False, spacing=1))
    assert co.attributes.records == records and co.attributes.sorted
    blocks = int(co.index().tables[VCF.block_tables()[0]].size)
    return t_index, os.path.getsize(path), co.index().nbytes(), co.attributes.checkpoints, blocks


def _planned_and_counted(co: CloudObject, regions: list[str]) -> tuple[list, list[int]]:
    slices = co.partition(partition_regions, regions)
    return slices, [piece.num_records for piece in slices]


def regions_bench(co: CloudObject, path: str, number: int, length: int) -> tuple[float, int, int, int]:
    """Partition ``number`` random regions of ``length`` bases and count their records (``num_records``), then
    read them: (seconds, bytes read to count, bytes read to read the slices, records)."""
    rng = np.random.default_rng(length)
    starts = rng.integers(1, 2 * 10**8 - length, number).tolist()
    regions = [f"chr{c}:{b}-{b + length}" for c, b in zip(rng.integers(1, 4, number).tolist(), starts)]
    read_stats.reset()
    t_regions, (slices, counts) = timed(lambda: _planned_and_counted(co, regions))
    counted = read_stats.bytes.get(path, 0)
    read_stats.reset()
    records = [len(piece.records()) for piece in slices]
    assert records == counts
    return t_regions, counted, read_stats.bytes.get(path, 0), sum(records)


if __name__ == "__main__":
    main()
