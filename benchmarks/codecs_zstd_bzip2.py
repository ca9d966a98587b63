"""zstd and bzip2 byte sources: the ratios of issue 15, each against a baseline measured in the same run.

Generates a random FASTQ (``--size-mb`` uncompressed, default 64) in a temporary folder and compresses it
as seekable zstd (python-zstandard frames of ``--frame-mb`` plus a seek table), as the same frames without
the table, and with ``bzip2 -9``. Prints, every timing the best of two (the machine may be shared):

1. zstd: the seekable codec index (the seek table read) ÷ ``zstd -dc`` (goal ≤ 0.05: no decompression);
   also walking the frame headers of the same frames without a seek table, and the whole FASTQ index pass
   (reads counted frame by frame on a thread pool) ÷ ``zstd -dc``;
2. bzip2: the FASTQ index pass (block search, every block decoded and scanned) ÷ ``bzip2 -dc``;
3. every slice's bytes (``--slices``, default 64) read on a spawned pool of ``--workers`` processes (default
   2) ÷ one decompression of the whole object with python-zstandard or ``bz2`` in one thread; the same
   slices of the uncompressed FASTQ show the pool's own cost.

    python benchmarks/codecs_zstd_bzip2.py [--size-mb 64] [--frame-mb 1] [--slices 64] [--workers 2]
"""

from __future__ import annotations

import argparse
import bz2
import io
import multiprocessing
import os
import subprocess
import tempfile
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import zstandard
from _common import best_of, warm_page_cache

from dataplug import CloudObject
from dataplug.codecs.zstd import read_seek_table, seek_table, walk_frames
from dataplug.demo import generate_fastq
from dataplug.formats.genomics.fastq import FASTQ, partition_reads_batches
from dataplug.storage import StorageObject


def slice_bytes(piece: Any) -> int:
    """A worker's task: read one slice's records."""
    return len(piece.raw())


def write_inputs(tmp: str, size_mb: int, frame_mb: int) -> dict[str, str]:
    raw = os.path.join(tmp, "reads.fastq")
    generate_fastq(raw, size_mb)
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
    print(f"input: {len(data) / 1e6:.0f} MB FASTQ -> zstd -3 in {len(frames)} frames: {os.path.getsize(paths['frames.zst']) / 1e6:.0f} MB; "
          f"bzip2 -9: {os.path.getsize(paths['bz2']) / 1e6:.0f} MB")
    return paths


def index_pass(path: str) -> CloudObject:
    return CloudObject.from_url(FASTQ, path, index_location=path + ".idx/").preprocess(force=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=64)
    parser.add_argument("--frame-mb", type=int, default=1)
    parser.add_argument("--slices", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_inputs(tmp, args.size_mb, args.frame_mb)
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
        print(f"zstd -dc: {zstd_dc:.3f} s")
        print(f"1. zstd seekable codec index (seek table only): {table * 1e3:.2f} ms = {table / zstd_dc:.4f} x zstd -dc (goal <= 0.05)")
        print(f"   frame headers walked without a seek table: {walked:.3f} s = {walked / zstd_dc:.3f} x zstd -dc")
        print(f"   FASTQ index pass over seekable zstd ({zco.attributes.checkpoints} frames, reads counted per frame run): "
              f"{zstd_pass:.3f} s = {zstd_pass / zstd_dc:.2f} x zstd -dc")

        bzip2_dc = best_of(lambda: subprocess.run(f"bzip2 -dc {bzipped} > /dev/null", shell=True, check=True))[0]
        bzip2_pass, bco = best_of(lambda: index_pass(bzipped))
        print(f"2. bzip2 FASTQ index pass ({bco.attributes.checkpoints} blocks on {os.cpu_count()} threads): {bzip2_pass:.2f} s = "
              f"{bzip2_pass / bzip2_dc:.2f} x bzip2 -dc ({bzip2_dc:.2f} s)")

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
            for name, co, whole in (("zstd", zco, zstd_whole), ("bzip2", bco, bz2_whole)):
                one = best_of(whole)[0]
                slices = co.partition(partition_reads_batches, args.slices)
                spent, sizes = best_of(lambda: list(pool.map(slice_bytes, slices)))
                assert sum(sizes) == co.attributes.uncompressed_size
                print(f"3. {name}: {len(slices)} slices on {args.workers} workers: {spent:.2f} s = {spent / one:.2f} x one "
                      f"{'python-zstandard' if name == 'zstd' else 'bz2'} decompression ({one:.2f} s)")


if __name__ == "__main__":
    main()
