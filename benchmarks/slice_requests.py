"""Requests per slice against the size of a slice, for every seekable codec (issue 25: one request per slice).

Generates a random FASTQ (``--size-mb`` uncompressed, default 64) in a temporary folder, stores it as gzip
(``gzip -6``), seekable zstd (frames of 1 MiB plus a seek table) and ``bzip2 -9``, indexes each at default
settings and cuts it into ``--slices`` slices (default 16). For each codec it prints the requests one slice's
read makes (mean and most, object and sidecar together, counted by dataplug's read counters), the bytes
all slices fetch against the object's size (a first request that stops near a slice's end, not at the next
checkpoint, costs a second request when it falls short), and a slice's pickled size (mean and most: what a
task carries to its worker). For gzip it also prints the windows
blob's size and the stored windows' (mean and most), and the same two figures with the windows left in the
sidecar (every slice reading its own window: the layout before slices carried them).

    python benchmarks/slice_requests.py [--size-mb 64] [--slices 16]
"""

from __future__ import annotations

import argparse
import os
import pickle
import subprocess
import tempfile
import warnings
from typing import Any

import numpy as np
import zstandard

import dataplug.codecs.gzip.codec as gzip_codec
from dataplug import CloudObject
from dataplug.codecs.zstd import seek_table
from dataplug.demo import generate_fastq
from dataplug.formats.genomics.fastq import FASTQ, partition_reads_batches
from dataplug.storage.object import read_stats


def write_inputs(tmp: str, size_mb: int) -> dict[str, str]:
    """The FASTQ under each codec: codec name -> path."""
    raw = os.path.join(tmp, "reads.fastq")
    generate_fastq(raw, size_mb)
    with open(raw, "rb") as fh:
        data = fh.read()
    parts = [data[i : i + 2**20] for i in range(0, len(data), 2**20)]
    frames = [zstandard.ZstdCompressor(level=3).compress(p) for p in parts]
    with open(raw + ".zst", "wb") as fh:
        fh.write(b"".join(frames) + seek_table(map(len, frames), map(len, parts)))
    subprocess.run(["gzip", "-6", "-k", raw], check=True)
    subprocess.run(["bzip2", "-9", "-k", raw], check=True)
    return {"gzip": raw + ".gz", "zstd": raw + ".zst", "bzip2": raw + ".bz2"}


def measure(slices: list[Any]) -> tuple[list[int], int, list[int]]:
    """Requests each slice's read makes, the bytes all of them fetch, and each slice's pickled size."""
    requests, fetched, sizes = [], 0, []
    for piece in slices:
        sizes.append(len(pickle.dumps(piece)))
        read_stats.reset()
        piece.raw()
        requests.append(sum(read_stats.requests.values()))
        fetched += sum(read_stats.bytes.values())
    return requests, fetched, sizes


def line(label: str, size: int, measured: tuple[list[int], int, list[int]]) -> str:
    requests, fetched, sizes = measured
    return (
        f"{label:<28} requests per slice {np.mean(requests):.2f} (most {max(requests)}), fetched {fetched / size:.2f} x the object, "
        f"pickled slice {np.mean(sizes) / 1024:.1f} KiB (most {max(sizes) / 1024:.1f} KiB)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=64)
    parser.add_argument("--slices", type=int, default=16)
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # CheckpointSpacingWarning for many slices: what is measured here is requests
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_inputs(tmp, args.size_mb)
        print(f"FASTQ of {args.size_mb} MB, {args.slices} slices, default index settings")
        for codec, path in paths.items():
            co, size = CloudObject.from_url(FASTQ, path).preprocess(progress=False), os.path.getsize(path)
            print(line(f"{codec} ({size / 2**20:.0f} MiB)", size, measure(co.partition(partition_reads_batches, args.slices))))
            if codec != "gzip":
                continue
            lengths = co.index().tables["window_length"].astype(np.int64)
            stored = lengths[lengths > 0]
            print(
                f"  windows blob {co.index().blob('windows').size / 1024:.0f} KiB for {co.attributes.checkpoints} checkpoints; "
                f"a stored window {stored.mean() / 1024:.1f} KiB on average (most {stored.max() / 1024:.1f} KiB)"
            )
            kept, gzip_codec.WINDOWS_LOAD_MAX = gzip_codec.WINDOWS_LOAD_MAX, 0
            try:
                print(line("  gzip, windows in sidecar", size, measure(co.partition(partition_reads_batches, args.slices))))
            finally:
                gzip_codec.WINDOWS_LOAD_MAX = kept


if __name__ == "__main__":
    main()
