"""FASTQ.gz benchmark: index pass, reading all slices and sidecar size against baselines in the same run.

Generates a random FASTQ (``--size-mb`` uncompressed, default 500), compresses it with ``gzip -6``, puts it
on a moto S3 server on 127.0.0.1 (started here), and prints:
- index pass (``preprocess``) ÷ ``gzip -dc``, on the local file and from the S3 endpoint;
- reading all slices (N = ``--slices``, one after the other in one process) ÷ one full decompression
  (``gzip -dc`` and Python's ``zlib``), on the local file and from the S3 endpoint;
- sidecar size ÷ compressed size;
- bytes each slice fetched beyond its own compressed range (the most, and the average);
- preprocessing ÷ static re-partitioning of the same object (download, decompress, split into N plain
  files, upload them: what users do without dataplug, and the baseline of the original Dataplug's paper).

    python benchmarks/gzip_fastq.py --size-mb 500 --slices 64
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import zlib

import fsspec
import numpy as np

from _common import timed

from dataplug import CloudObject
from dataplug.demo import generate_fastq
from dataplug.formats.genomics.fastq import FASTQGZip, partition_reads_batches
from dataplug.storage import read_stats


def start_moto() -> tuple[subprocess.Popen, dict]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    options = {"endpoint_url": f"http://127.0.0.1:{port}", "key": "k", "secret": "s", "client_kwargs": {"region_name": "eu-west-1"}}
    return proc, options



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=500)
    parser.add_argument("--slices", type=int, default=64)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()

    proc, s3 = start_moto()
    try:
        with tempfile.TemporaryDirectory(dir=args.dir) as folder:
            plain = os.path.join(folder, "reads.fastq")
            reads = generate_fastq(plain, args.size_mb)
            subprocess.run(["gzip", "-6", "-k", plain], check=True)
            gz = plain + ".gz"
            csize, usize = os.path.getsize(gz), os.path.getsize(plain)

            t_gzip, _ = timed(lambda: subprocess.run(["gzip", "-dc", gz], stdout=subprocess.DEVNULL, check=True))
            with open(gz, "rb") as fh:
                blob = fh.read()
            t_zlib, _ = timed(lambda: len(zlib.decompress(blob, 31)))

            fs = fsspec.filesystem("s3", **s3)
            fs.mkdir("bench")
            t_upload, _ = timed(lambda: fs.put_file(gz, "bench/reads.fastq.gz"))
            url = "s3://bench/reads.fastq.gz"

            local = CloudObject.from_url(FASTQGZip, gz)
            t_index_local, _ = timed(lambda: local.preprocess(force=True, progress=False))
            co = CloudObject.from_url(FASTQGZip, url, storage_options=s3)
            t_index, _ = timed(lambda: co.preprocess(force=True, progress=False))
            assert co.attributes.reads == local.attributes.reads == reads
            sidecar = co.index().nbytes()

            def read_all(target: CloudObject, extra: list[int]) -> float:
                slices = target.partition(partition_reads_batches, args.slices)
                read_stats.reset()
                total = 0
                t0 = time.perf_counter()
                for i, piece in enumerate(slices):
                    before = read_stats.bytes.get(target.url, 0)
                    total += len(piece.raw())
                    fetched = read_stats.bytes[target.url] - before
                    start = piece.source.checkpoint_offset - (1 if piece.source.checkpoint_bits else 0)
                    own_end = slices[i + 1].source.checkpoint_offset if i + 1 < len(slices) else csize
                    extra.append(fetched - (own_end - start))
                assert total == usize, (total, usize)
                return time.perf_counter() - t0

            extra: list[int] = []
            t_read_local = read_all(local, extra)
            t_read = read_all(co, [])
            t_get, _ = timed(lambda: [fs.cat_file("bench/reads.fastq.gz", start=0, end=csize // args.slices) for _ in range(args.slices)])

            def static_repartition() -> None:
                """Download, decompress, split at read boundaries into N files, upload them."""
                data = zlib.decompress(fs.cat_file("bench/reads.fastq.gz"), 31)
                lines = np.flatnonzero(np.frombuffer(data, np.uint8) == 10)
                read_ends = lines[3::4] + 1
                cuts = [0] + [int(read_ends[min(len(read_ends) - 1, (i * len(read_ends)) // args.slices)]) for i in range(1, args.slices)] + [len(data)]
                for i, (a, b) in enumerate(zip(cuts[:-1], cuts[1:])):
                    fs.pipe_file(f"bench/split/part-{i:05d}.fastq", data[a:b])

            t_static, _ = timed(static_repartition)
    finally:
        proc.terminate()

    print(f"FASTQ {usize / 1e6:.0f} MB, {reads:,} reads -> gzip -6 {csize / 1e6:.0f} MB on a moto S3 endpoint; {args.slices} slices")
    print(f"  gzip -dc (local file)            {t_gzip:7.2f} s")
    print(f"  python zlib, whole object        {t_zlib:7.2f} s")
    print(f"  upload to the endpoint           {t_upload:7.2f} s")
    print(f"  index pass, local file           {t_index_local:7.2f} s   / gzip -dc = {t_index_local / t_gzip:.2f}")
    print(f"  index pass, from S3              {t_index:7.2f} s   / gzip -dc = {t_index / t_gzip:.2f}")
    print(f"  read all {args.slices} slices, local file  {t_read_local:7.2f} s   / gzip -dc = {t_read_local / t_gzip:.2f}   / zlib = {t_read_local / t_zlib:.2f}")
    print(f"  read all {args.slices} slices, from S3     {t_read:7.2f} s   / gzip -dc = {t_read / t_gzip:.2f}   / zlib = {t_read / t_zlib:.2f}")
    print(f"    (moto alone: {args.slices} plain range GETs of 1/{args.slices} of the object take {t_get:.2f} s; it copies the object per request)")
    print(f"  sidecar {sidecar:,} bytes = {100 * sidecar / csize:.3f} % of the compressed object ({co.attributes.checkpoints} checkpoints)")
    print(f"  bytes fetched beyond a slice's own range: max {max(extra):,}, mean {int(np.mean(extra)):,}")
    print(f"  static re-partitioning (download, decompress, split, upload) {t_static:7.2f} s; preprocess / static = {t_index / t_static:.2f}")


if __name__ == "__main__":
    main()
