"""Benchmark dataplug.codecs.gzip against `gzip -dc` on a random FASTQ-like file.

Writes ~300 MB of FASTQ into a temporary directory, compresses it with `gzip -6`, then prints, all measured
in this run: build_index time / `gzip -dc > /dev/null` time, sidecar size / compressed size, and the time to
inflate every interval from its own checkpoint / one full decompression. Run:

    python benchmarks/gzip_codec_bench.py [size_mb]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import zlib

from _common import best_of

from dataplug.codecs.gzip import build_index, fetch_range_for, inflate_from
from dataplug.demo import generate_fastq


def main(size_mb: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        raw, gz = os.path.join(tmp, "reads.fastq"), os.path.join(tmp, "reads.fastq.gz")
        generate_fastq(raw, size_mb)
        start = time.perf_counter()
        subprocess.run(f"gzip -6 -c {raw} > {gz}", shell=True, check=True)
        print(f"input: {os.path.getsize(raw) / 1e6:.0f} MB FASTQ -> {os.path.getsize(gz) / 1e6:.0f} MB with gzip -6 "
              f"({time.perf_counter() - start:.0f} s)")
        os.remove(raw)
        size = os.path.getsize(gz)

        gzip_dc = best_of(lambda: subprocess.run(f"gzip -dc {gz} > /dev/null", shell=True, check=True))[0]

        def python_zlib() -> None:
            decoder = zlib.decompressobj(31)
            with open(gz, "rb") as f:
                while chunk := f.read(4 << 20):
                    while chunk:
                        decoder.decompress(chunk, 16 << 20)
                        chunk = decoder.unconsumed_tail

        zlib_full = best_of(python_zlib)[0]
        indexes = []

        def build() -> None:
            with open(gz, "rb") as f:
                indexes.append(build_index(f, size))

        build_time = best_of(build)[0]
        index = indexes[-1]
        sidecar = len(index.windows) + sum(table.nbytes for table in index.tables().values())
        with open(gz, "rb") as f:
            compressed = f.read()
        checkpoints = [index.checkpoint(k) for k in range(len(index))]

        def inflate_all() -> None:
            total = 0
            for k, checkpoint in enumerate(checkpoints):
                end = int(index.uncompressed_offset[k + 1]) if k + 1 < len(index) else index.uncompressed_size
                a, b = fetch_range_for(index, k, end)
                for chunk in inflate_from(memoryview(compressed)[a:b], checkpoint):
                    total += len(chunk)
            assert total >= index.uncompressed_size

        inflate_time = best_of(inflate_all)[0]

        print(f"gzip -dc: {gzip_dc:.2f} s; python zlib full decompression: {zlib_full:.2f} s "
              f"({zlib_full / gzip_dc:.2f} x gzip -dc)")
        print(f"build_index: {build_time:.2f} s = {build_time / gzip_dc:.2f} x gzip -dc "
              f"({len(index)} checkpoints, {index.line_count} lines)")
        print(f"sidecar (windows + tables): {sidecar / 1e6:.2f} MB = {100 * sidecar / size:.2f} % of the compressed size")
        print(f"inflate every interval from its checkpoint: {inflate_time:.2f} s = "
              f"{inflate_time / zlib_full:.2f} x python zlib full decompression, {inflate_time / gzip_dc:.2f} x gzip -dc")
        try:
            import indexed_gzip
        except ImportError:
            return
        with indexed_gzip.IndexedGzipFile(gz, spacing=index.spacing, readbuf_size=4 << 20) as f:
            start = time.perf_counter()
            f.build_full_index()
            print(f"(indexed_gzip build_full_index, no line counts: {(time.perf_counter() - start) / gzip_dc:.2f} x gzip -dc)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
