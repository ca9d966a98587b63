"""BAM benchmark: every alignment's ``to_arrow()`` on a process pool ÷ one pysam (htslib) pass over the same
file, and 1,000 region slices ÷ pysam ``fetch`` of the same regions, measured in one run.

Generates a coordinate-sorted BAM of ``--records`` 150 bp single-end reads (random bases and qualities, two
tags) at zlib level ``--level`` (6: samtools' default), indexes it with pysam (``.bai``, for pysam's fetch
only: dataplug does not read it), then prints:
- the index pass (``preprocess``);
- all slices' ``to_arrow()`` (every SAM column) on ``--workers`` spawned processes (best of two) ÷ one pysam
  pass that reads every field of every record (name, flag, reference, position, MAPQ, CIGAR string, mate,
  template length, sequence, quality string, tags);
- ``partition_regions`` over 1,000 random 10 kb regions with every slice's ``to_arrow()`` in this process ÷
  pysam ``fetch`` of the same regions reading the same fields; both give the same record count (checked).

polars-bio and oxbow are compared when installed (``pip install polars-bio oxbow``), else skipped with a note.

    python benchmarks/bam.py --records 600000 --workers 2
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from _common import best_of, rows_on_pool, timed, warm_page_cache

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' BAM generator

from dataplug import CloudObject  # noqa: E402
from dataplug.formats.genomics.bam import partition_num_chunks, partition_regions  # noqa: E402
from tests.bam_files import large_bam  # noqa: E402


def touch(record) -> int:
    """Read every SAM field of one pysam record (what ``to_arrow`` gives)."""
    fields = (
        record.query_name, record.flag, record.reference_name, record.reference_start, record.mapping_quality,
        record.cigarstring, record.next_reference_name, record.next_reference_start, record.template_length,
        record.query_sequence, record.qual, record.get_tags(),
    )
    return len(fields)


def pysam_pass(path: str) -> int:
    import pysam

    n = 0
    with pysam.AlignmentFile(path) as f:
        for record in f.fetch(until_eof=True):
            touch(record)
            n += 1
    return n


def pysam_regions(path: str, regions: list[str]) -> int:
    import pysam

    n = 0
    with pysam.AlignmentFile(path) as f:
        for region in regions:
            for record in f.fetch(region=region):
                touch(record)
                n += 1
    return n


def dataplug_regions(co: CloudObject, regions: list[str]) -> int:
    return sum(piece.to_arrow().num_rows for piece in partition_regions(co, regions))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=600_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--level", type=int, default=6)
    parser.add_argument("--regions", type=int, default=1000)
    args = parser.parse_args()
    import pysam

    with tempfile.TemporaryDirectory() as folder:
        path = str(large_bam(Path(folder) / "bench.bam", args.records, seed=0, level=args.level))
        pysam.index(path)
        size = os.path.getsize(path)
        warm_page_cache(path)
        print(f"BAM: {args.records:,} records, {size / 2**20:.1f} MiB (zlib level {args.level})")

        t_pre, co = timed(lambda: CloudObject.from_url(path).preprocess(progress=False, force=True))
        a = co.attributes
        print(f"index pass: {t_pre:.2f} s ({a.uncompressed_size / 2**20:.0f} MiB decoded, {a.blocks} blocks)")

        slices = partition_num_chunks(co, max(args.workers * 8, 16))
        t_ours, counts = rows_on_pool(slices, args.workers)
        t_pysam, n = best_of(lambda: pysam_pass(path))
        assert sum(counts) == n == a.records
        print(f"whole file to_arrow on {args.workers} workers: {t_ours:.2f} s; pysam pass: {t_pysam:.2f} s; ratio {t_ours / t_pysam:.2f} (goal <= 0.7)")

        rng = np.random.default_rng(1)
        regions = []
        for _ in range(args.regions):
            name = ("chr1", "chr2")[int(rng.integers(0, 2))]
            beg = int(rng.integers(1, 200_000_000 - 10_000))
            regions.append(f"{name}:{beg}-{beg + 10_000}")
        t_reg, got = best_of(lambda: dataplug_regions(co, regions))
        t_fetch, want = best_of(lambda: pysam_regions(path, regions))
        assert got == want, (got, want)
        print(f"{args.regions} regions ({want:,} records): partition_regions + to_arrow {t_reg:.2f} s; pysam fetch {t_fetch:.2f} s; ratio {t_reg / t_fetch:.2f} (goal <= 1.5)")

        for name in ("polars_bio", "oxbow"):
            if importlib.util.find_spec(name) is None:
                print(f"{name}: not installed, skipped")


if __name__ == "__main__":
    main()
