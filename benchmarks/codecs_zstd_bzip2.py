"""zstd and bzip2 byte sources: the ratios of issues 15 and 21, each against a baseline measured in the same run.

Generates a FASTQ (``--size-mb`` uncompressed, default 143, the size of the project's Illumina reference file)
in a temporary folder, shaped like an Illumina NovaSeq run (``--shape illumina``, the default:
``dataplug.testing.data.illumina_fastq``) or random reads (``--shape random``), and compresses it as seekable
zstd (python-zstandard frames of ``--frame-mb`` plus a seek table), as the same frames without the table, and
with ``bzip2 -9``. Prints, every timing the best of two (the machine may be shared), each with the load
average when it was taken:

1. zstd: the seekable codec index (the seek table read) ÷ ``zstd -dc`` (goal ≤ 0.05: no decompression);
   also walking the frame headers of the same frames without a seek table, and the whole FASTQ index pass
   (reads counted frame by frame on a thread pool) ÷ ``zstd -dc``;
2. bzip2: the FASTQ index pass (block search, every block decoded and scanned) ÷ ``bzip2 -dc``, and the
   sidecar's size as a share of the compressed object (block table, block heads and the reads' index);
3. every slice's bytes read on a spawned pool of ``--workers`` processes (default 2) ÷ one decompression of
   the whole object with python-zstandard or ``bz2`` in one thread: zstd for ``--slices`` (default 64),
   bzip2 for each N of ``--bzip2-slices`` (default 16 and 64; goal ≤ 0.7, issue 21) with the blocks each
   slice decodes on average against the fewest that hold it, and the workers' CPU seconds against those of one
   decompression (the figure a busy machine moves least); ``indexed_bzip2`` reading the whole object
   on the same number of threads when it is installed (a reference); the same slices of the uncompressed
   FASTQ show the pool's own cost. Also what decoding only the first 5 % of a block costs against the whole
   block (why a slice ending inside its last block stops decoding there).

    python benchmarks/codecs_zstd_bzip2.py [--size-mb 143] [--shape illumina] [--frame-mb 1] [--slices 64]
                                           [--bzip2-slices 16,64] [--workers 2]
"""

from __future__ import annotations

import argparse
import bz2
import io
import json
import multiprocessing
import os
import subprocess
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
import zstandard
from _common import best_of, goal_line, load_average, warm_page_cache

from dataplug import CloudObject
from dataplug.codecs.zstd import read_seek_table, seek_table, walk_frames
from dataplug.demo import generate_fastq
from dataplug.formats.genomics.fastq import FASTQ, partition_reads_batches
from dataplug.storage import StorageObject
from dataplug.testing.data import illumina_fastq
from dataplug.testing.sidecar import read_manifest


def slice_bytes(piece: Any) -> int:
    """A worker's task: read one slice's records."""
    return len(piece.raw())


def slice_bytes_cpu(piece: Any) -> tuple[int, float]:
    """A worker's task: read one slice's records; their length and the CPU seconds it took."""
    before = time.process_time()
    size = len(piece.raw())
    return size, time.process_time() - before


def write_fastq(path: str, size_mb: int, shape: str) -> None:
    """About ``size_mb`` MB of reads: Illumina-shaped (in seeded batches) or random."""
    if shape == "random":
        generate_fastq(path, size_mb)
        return
    reads, batch = 0, 20_000
    with open(path, "wb") as out:
        while out.tell() < size_mb * 1_000_000:
            out.write(illumina_fastq(batch, 21 + reads // batch))
            reads += batch


def write_inputs(tmp: str, size_mb: int, frame_mb: int, shape: str) -> dict[str, str]:
    raw = os.path.join(tmp, "reads.fastq")
    write_fastq(raw, size_mb, shape)
    with open(raw, "rb") as fh:
        data = fh.read()
    step = frame_mb * 2**20
    parts = [data[i : i + step] for i in range(0, len(data), step)]
    frames = [zstandard.ZstdCompressor(level=3).compress(p) for p in parts]
    paths = {name: os.path.join(tmp, f"reads.{name}") for name in ("seekable.zst", "frames.zst", "bz2")} | {"plain": raw}
    with open(paths["seekable.zst"], "wb") as out:
        out.write(b"".join(frames) + seek_table([len(f) for f in frames], [len(p) for p in parts]))
    with open(paths["frames.zst"], "wb") as out:
        out.write(b"".join(frames))
    subprocess.run(f"bzip2 -9 -c {raw} > {paths['bz2']}", shell=True, check=True)
    for path in paths.values():
        warm_page_cache(path)
    print(
        f"input: {len(data) / 1e6:.0f} MB FASTQ ({shape} reads) -> zstd -3 in {len(frames)} frames: "
        f"{os.path.getsize(paths['frames.zst']) / 1e6:.0f} MB; bzip2 -9: {os.path.getsize(paths['bz2']) / 1e6:.1f} MB"
    )
    return paths


def index_pass(path: str) -> CloudObject:
    return CloudObject.from_url(FASTQ, path, index_location=path + ".idx/").preprocess(force=True)


def sidecar_bytes(co: CloudObject) -> int:
    """Bytes of ``co``'s index as stored: its manifest, and the tables and blobs kept in files of their own
    (not the files of a generation it replaced, which stay a while)."""
    manifest = read_manifest(co.index_location)
    files = sum(entry["bytes"] for kind in ("tables", "blobs") for entry in manifest[kind].values() if "data" not in entry)
    return len(json.dumps(manifest)) + files


def prefix_share(path: str, block: int) -> float:
    """CPU seconds to decode the first 5 % of the object's first block (``block`` decoded bytes) ÷ those to
    decode the whole block."""
    with open(path, "rb") as fh:
        raw = fh.read(2**20)  # holds the first block: at most 900 kB, and far less for reads

    def first(n: int) -> float:
        return min(timed_cpu(lambda: bz2.BZ2Decompressor().decompress(raw, n)) for _ in range(5))

    return first(block // 20) / first(block)


def timed_cpu(fn: Any) -> float:
    t = time.process_time()
    fn()
    return time.process_time() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=143)
    parser.add_argument("--shape", choices=("illumina", "random"), default="illumina")
    parser.add_argument("--frame-mb", type=int, default=1)
    parser.add_argument("--slices", type=int, default=64)
    parser.add_argument("--bzip2-slices", default="16,64")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    bzip2_slices = [int(n) for n in args.bzip2_slices.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_inputs(tmp, args.size_mb, args.frame_mb, args.shape)
        seekable, frames, bzipped = paths["seekable.zst"], paths["frames.zst"], paths["bz2"]

        zstd_dc = best_of(lambda: subprocess.run(f"zstd -q -dc {seekable} > /dev/null", shell=True, check=True))[0]
        obj = StorageObject(seekable)
        info = obj.info()
        table = best_of(lambda: read_seek_table(obj, info))[0]
        size = os.path.getsize(frames)

        def walk() -> None:
            with open(frames, "rb") as fh:
                walk_frames(frames, io.BufferedReader(fh, 2**20), size)

        walked = best_of(walk)[0]
        zstd_pass, zco = best_of(lambda: index_pass(seekable))
        print(f"zstd -dc: {zstd_dc:.3f} s   ({load_average()})")
        print(f"1. zstd seekable codec index (seek table only): {table * 1e3:.2f} ms = {table / zstd_dc:.4f} x zstd -dc (goal <= 0.05)")
        print(f"   frame headers walked without a seek table: {walked:.3f} s = {walked / zstd_dc:.3f} x zstd -dc")
        print(
            f"   FASTQ index pass over seekable zstd ({zco.attributes.checkpoints} frames, reads counted per frame run): "
            f"{zstd_pass:.3f} s = {zstd_pass / zstd_dc:.2f} x zstd -dc   ({load_average()})"
        )

        bzip2_dc = best_of(lambda: subprocess.run(f"bzip2 -dc {bzipped} > /dev/null", shell=True, check=True))[0]
        bzip2_pass, bco = best_of(lambda: index_pass(bzipped))
        blocks = bco.attributes.checkpoints
        print(
            f"2. bzip2 FASTQ index pass ({blocks} blocks on {os.cpu_count()} threads): {bzip2_pass:.2f} s = "
            f"{bzip2_pass / bzip2_dc:.2f} x bzip2 -dc ({bzip2_dc:.2f} s)   ({load_average()})"
        )
        sidecar = sidecar_bytes(bco)
        print(
            f"   bzip2 sidecar: {sidecar / 1e3:.1f} kB = {100 * sidecar / os.path.getsize(bzipped):.2f} % of the compressed object "
            f"(block heads blob {bco.index().blob_sizes()['bzip2_heads'] / 1e3:.1f} kB)"
        )

        def zstd_whole() -> None:
            with open(seekable, "rb") as fh:
                reader = zstandard.ZstdDecompressor().stream_reader(fh, read_across_frames=True)
                while reader.read(2**24):
                    pass

        def bz2_whole() -> None:
            with open(bzipped, "rb") as fh:
                bz2.decompress(fh.read())

        plain = index_pass(paths["plain"])
        with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            list(pool.map(abs, range(args.workers)))
            slices = plain.partition(partition_reads_batches, args.slices)
            spent = best_of(lambda: list(pool.map(slice_bytes, slices)))[0]
            print(f"   (the same slices of the uncompressed FASTQ: {spent:.2f} s)")
            one = best_of(zstd_whole)[0]
            slices = zco.partition(partition_reads_batches, args.slices)
            spent, sizes = best_of(lambda: list(pool.map(slice_bytes, slices)))
            assert sum(sizes) == zco.attributes.uncompressed_size
            print(
                f"3. zstd: {len(slices)} slices on {args.workers} workers: {spent:.2f} s = {spent / one:.2f} x one "
                f"python-zstandard decompression ({one:.2f} s)   ({load_average()})"
            )
            for n in bzip2_slices:
                one = best_of(bz2_whole)[0]
                one_cpu = min(timed_cpu(bz2_whole) for _ in range(2))
                slices = bco.partition(partition_reads_batches, n)
                spent, results = best_of(lambda slices=slices: list(pool.map(slice_bytes_cpu, slices)))
                assert sum(size for size, _ in results) == bco.attributes.uncompressed_size
                work = sum(cpu for _, cpu in results) / one_cpu
                decoded = np.mean([len(s.source.blocks) for s in slices])
                print(
                    goal_line(f"3. bzip2: {n} slices on {args.workers} workers / one bz2", spent, "bz2.decompress", one, 0.7)
                    + f"   ({load_average()})"
                )
                print(
                    f"     CPU seconds in the workers {work:.2f} x one bz2 decompression's (÷ {args.workers} workers: {work / args.workers:.2f}, "
                    "the ratio with no pool cost and idle cores)\n"
                    f"     blocks decoded per slice {decoded:.2f}, fewest that hold a slice {blocks / n:.2f}; "
                    f"slices finishing from a stored block head: {sum(bool(s.source.head) for s in slices)} of {len(slices)}"
                )
        print(
            f"   decoding a block's first 5 %: {prefix_share(bzipped, int(bco.index().tables['bzip2_decoded'][1])):.2f} of decoding the whole block (CPU seconds)"
        )
        try:
            import indexed_bzip2
        except ImportError:
            print("   indexed_bzip2 not installed: no reference (pip install indexed_bzip2)")
        else:

            def ibz2() -> None:
                with indexed_bzip2.open(bzipped, parallelization=args.workers) as fh:
                    while fh.read(2**24):
                        pass

            spent = best_of(ibz2)[0]
            print(
                f"   reference: indexed_bzip2 parallelization={args.workers} reading the whole object: {spent:.2f} s = "
                f"{spent / best_of(bz2_whole)[0]:.2f} x one bz2 decompression   ({load_average()})"
            )


if __name__ == "__main__":
    main()
