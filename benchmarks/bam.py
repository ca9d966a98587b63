"""BAM benchmark: every alignment's ``to_arrow()`` on a process pool ÷ one pysam (htslib) pass over the same
file, and 1,000 random regions ÷ pysam ``fetch`` of the same regions on an open file, pairs run in turn in one
run (best of two, or three for regions), with the load average (other work on the machine slows every figure).

Generates a coordinate-sorted BAM of ``--records`` 150 bp single-end reads (random bases and qualities, two
tags) at zlib level ``--level`` (6: samtools' default), indexes it with pysam (``.bai``, for pysam's fetch
only: dataplug does not read it), then prints:
- the index pass (``preprocess``);
- all slices' ``to_arrow()`` (every SAM column) on ``--workers`` spawned processes ÷ one pysam pass that reads
  every field of every record (name, flag, reference, position, MAPQ, CIGAR string, mate, template length,
  sequence, quality string, tags), wall seconds and CPU seconds (the workers' summed);
- ``--regions`` random 10 kb regions, each read with one call, like with like:
  ``co.reader().records(region)`` (SAM lines) ÷ pysam ``fetch`` + ``to_string()`` (SAM lines);
  ``co.reader().table(region)`` (every column) ÷ pysam ``fetch`` reading every field;
  ``partition_regions(co, regions)`` and every slice's ``to_arrow()`` in this process (the slices share the
  process's handle of the object) ÷ pysam ``fetch`` reading every field;
  ``co.reader().records_many(regions)`` (one call, members fetched together) ÷ pysam ``fetch`` + ``to_string()``.
  Every contender starts cold (a new reader, the process's shared handles dropped); both sides give the same
  record count (checked). Each line also gives both sides' CPU seconds, which other work on the machine
  distorts less than wall seconds.

polars-bio and oxbow are compared when installed (``pip install polars-bio oxbow``), else skipped with a note.

    python benchmarks/bam.py --records 600000 --workers 2
"""

from __future__ import annotations

import argparse
import importlib.util
import multiprocessing
import os
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from _common import goal_line, interleaved_best, load_average, timed, warm_page_cache

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' BAM generator

from dataplug import CloudObject  # noqa: E402
from dataplug.formats.genomics.bam import partition_num_chunks, partition_regions  # noqa: E402
from dataplug.reader import clear_shared  # noqa: E402
from tests.bam_files import large_bam  # noqa: E402


def touch(record: Any) -> int:
    """Read every SAM field of one pysam record (what ``to_arrow`` gives)."""
    fields = (
        record.query_name,
        record.flag,
        record.reference_name,
        record.reference_start,
        record.mapping_quality,
        record.cigarstring,
        record.next_reference_name,
        record.next_reference_start,
        record.template_length,
        record.query_sequence,
        record.qual,
        record.get_tags(),
    )
    return len(fields)


def sam_line(record: Any) -> int:
    """One pysam record as its SAM line (what ``records()`` gives)."""
    return len(record.to_string())


def with_cpu(fn: Callable[[], int]) -> Callable[[], tuple[int, float]]:
    """``fn`` returning its result and the CPU seconds it took (this process's)."""

    def run() -> tuple[int, float]:
        cpu = time.process_time()
        return fn(), time.process_time() - cpu

    return run


def pysam_pass(path: str) -> tuple[int, float]:
    """Records of one pysam pass reading every field, and its CPU seconds."""
    import pysam

    cpu, n = time.process_time(), 0
    with pysam.AlignmentFile(path) as f:
        for record in f.fetch(until_eof=True):
            touch(record)
            n += 1
    return n, time.process_time() - cpu


def arrow_rows_cpu(piece: Any) -> tuple[int, float]:
    """A worker's task: one slice's ``to_arrow()`` rows, and the CPU seconds it took."""
    cpu = time.process_time()
    rows = piece.to_arrow().num_rows
    return rows, time.process_time() - cpu


def pysam_regions(path: str, regions: list[str], read: Callable[[Any], int]) -> int:
    import pysam

    n = 0
    with pysam.AlignmentFile(path) as f:
        for region in regions:
            for record in f.fetch(region=region):
                read(record)
                n += 1
    return n


def reader_records(co: CloudObject, regions: list[str]) -> int:
    with co.reader() as r:
        return sum(len(r.records(region)) for region in regions)


def reader_tables(co: CloudObject, regions: list[str]) -> int:
    with co.reader() as r:
        return sum(r.table(region).num_rows for region in regions)


def reader_many(co: CloudObject, regions: list[str]) -> int:
    with co.reader() as r:
        return sum(map(len, r.records_many(regions)))


def region_slices(co: CloudObject, regions: list[str]) -> int:
    clear_shared()
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
        print(f"BAM: {args.records:,} records, {size / 2**20:.1f} MiB (zlib level {args.level}); {load_average()}")

        t_pre, co = timed(lambda: CloudObject.from_url(path).preprocess(progress=False, force=True))
        a = co.attributes
        print(f"index pass: {t_pre:.2f} s ({a.uncompressed_size / 2**20:.0f} MiB decoded, {a.blocks} blocks)")

        slices = partition_num_chunks(co, max(args.workers * 8, 16))
        with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            list(pool.map(arrow_rows_cpu, slices[: args.workers]))  # workers started and warm before the clock runs
            (t_ours, ours), (t_pysam, (n, cpu_pysam)) = interleaved_best(
                [lambda: list(pool.map(arrow_rows_cpu, slices)), lambda: pysam_pass(path)], repeats=2
            )
        assert sum(rows for rows, _ in ours) == n == a.records
        print(f"whole file, {load_average()}")
        print(goal_line(f"to_arrow on {args.workers} workers (wall) ÷ one pass", t_ours, "pysam", t_pysam, 0.7))
        print(f"  CPU seconds: ours {sum(cpu for _, cpu in ours):.2f} (workers summed), pysam {cpu_pysam:.2f}")

        rng = np.random.default_rng(1)
        regions = []
        for _ in range(args.regions):
            name = ("chr1", "chr2")[int(rng.integers(0, 2))]
            beg = int(rng.integers(1, 200_000_000 - 10_000))
            regions.append(f"{name}:{beg}-{beg + 10_000}")
        contenders = {
            "lines": lambda: pysam_regions(path, regions, sam_line),
            "fields": lambda: pysam_regions(path, regions, touch),
            "records": lambda: reader_records(co, regions),
            "table": lambda: reader_tables(co, regions),
            "slices": lambda: region_slices(co, regions),
            "many": lambda: reader_many(co, regions),
        }
        warm = regions[:20]  # first calls (Arrow's and pysam's one-time set-up) before the clock runs
        pysam_regions(path, warm, touch)
        reader_tables(co, warm)
        region_slices(co, warm)
        best = dict(zip(contenders, interleaved_best([with_cpu(fn) for fn in contenders.values()], repeats=3)))
        counts = {name: result[0] for name, (_, result) in best.items()}
        assert len(set(counts.values())) == 1, counts
        print(f"{args.regions:,} regions of 10 kb ({counts['lines']:,} records), one call each, {load_average()}")
        for label, ours, anchor in [
            ("co.reader().records() ÷ fetch + to_string()", "records", "lines"),
            ("co.reader().table() ÷ fetch, every field", "table", "fields"),
            ("partition_regions + to_arrow ÷ fetch, every field", "slices", "fields"),
            ("co.reader().records_many() ÷ fetch + to_string()", "many", "lines"),
        ]:
            print(goal_line(label, best[ours][0], "pysam", best[anchor][0], 1.5))
            cpu_ours, cpu_anchor = best[ours][1][1], best[anchor][1][1]
            print(f"    CPU seconds: ours {cpu_ours:.3f}, pysam {cpu_anchor:.3f}, ratio {cpu_ours / cpu_anchor:.2f}")

        for name in ("polars_bio", "oxbow"):
            if importlib.util.find_spec(name) is None:
                print(f"{name}: not installed, skipped")


if __name__ == "__main__":
    main()
