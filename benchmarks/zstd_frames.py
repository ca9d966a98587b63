"""zstd slices against one decompression and ``pzstd -p2`` (issue 21), on Illumina-shaped FASTQ and a CSV.

Generates (seeded, in a temporary folder) Illumina-shaped reads (``dataplug.testing.data.illumina_fastq``,
``--reads``, default 390 000: about 143 MB) and the demo CSV (``--csv-mb``, default 64), and stores each as

- ``one``: ``zstd`` with defaults (level 3, one frame: what users get);
- ``long``: ``zstd --long`` (one frame with a 128 MiB window), with ``--long``;
- ``seekable``: python-zstandard frames of ``--frame-mb`` (default 1) plus a seek table;
- ``pzstd``: ``pzstd -p2`` (frames of its own choosing, with skippable frames between).

For each it prints one decompression with python-zstandard (a stream reader across frames, 4 MiB reads, in
one thread) and ``pzstd -p2 -dc`` (two threads where the file has several frames), then ``--slices`` (default
64) slices' records (``raw()``) read in one process in order and on ``--workers`` (default 2) spawned
processes (started before the clock runs), the slices handed out in order one at a time (a pool's ``map``) and
in contiguous runs (``chunksize``: each worker's slices follow each other, so its decoder continues from one to
the next), each ÷ both anchors; then, untimed, what each worker decoded in both ways (x the data). Every figure is the
best of ``--repeats`` runs (default 3), contenders interleaved; the load average is printed beside each.
The goal lines: a one-frame file's slices ≤ 1.2 x one decompression, a seekable file's slices on 2 workers ≤
1.5 x ``pzstd -p2``.

    python benchmarks/zstd_frames.py [--reads 390000] [--csv-mb 64] [--frame-mb 1] [--slices 64] [--workers 2] [--long]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import tempfile
import warnings
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import zstandard
from _common import goal_line, interleaved_best, load_average, warm_page_cache

from dataplug import CheckpointSpacingWarning, CloudObject
from dataplug.codecs.zstd import SliceInsideFrameWarning, seek_table
from dataplug.demo import generate_csv
from dataplug.formats.generic.csv import CSV
from dataplug.formats.generic.csv import partition_num_chunks as csv_chunks
from dataplug.formats.genomics.fastq import FASTQ, partition_reads_batches
from dataplug.storage.handle import clear_shared
from dataplug.testing.data import illumina_fastq


def slice_bytes(piece: Any) -> int:
    """A worker's task: read one slice's records."""
    return len(piece.raw())


#: Decoded bytes this process's zstd cursors yielded (counted by :func:`count_decoded`, outside the timed runs).
DECODED = [0]


def count_decoded() -> None:
    """Count what the cursors of this process decode (wraps their one decoding step), to say what each
    worker decodes; a separate, untimed run."""
    from dataplug.codecs import zstd

    step = zstd._Cursor._next

    def counted(cursor: Any, reader: Any) -> bytes:
        chunk = step(cursor, reader)
        DECODED[0] += len(chunk)
        return chunk

    zstd._Cursor._next = counted  # type: ignore[method-assign]


def decoded_by(piece: Any) -> tuple[int, int]:
    """A counting worker's task: its process id and the bytes its cursors decoded for this slice."""
    before = DECODED[0]
    piece.raw()
    return os.getpid(), DECODED[0] - before


def in_order(slices: list[Any]) -> int:
    """Every slice read in this process, in order, starting with no decoder kept."""
    clear_shared()
    return sum(slice_bytes(s) for s in slices)


def one_decompression(path: str) -> int:
    with open(path, "rb") as fh:
        reader = zstandard.ZstdDecompressor().stream_reader(fh, read_across_frames=True)
        total = 0
        while chunk := reader.read(4 * 2**20):
            total += len(chunk)
    return total


def pzstd_dc(path: str) -> None:
    subprocess.run(f"pzstd -q -p2 -dc {path} > /dev/null", shell=True, check=True)


def encodings(plain: str, frame_mb: int, long: bool) -> dict[str, str]:
    """``plain`` stored as each kind of zstd (see the module docstring): kind -> path."""
    paths = {"one": plain + ".zst", "seekable": plain + ".seekable.zst", "pzstd": plain + ".pzstd.zst"}
    subprocess.run(["zstd", "-q", "-f", plain, "-o", paths["one"]], check=True)
    if long:
        paths["long"] = plain + ".long.zst"
        subprocess.run(["zstd", "-q", "-f", "--long", plain, "-o", paths["long"]], check=True)
    subprocess.run(["pzstd", "-q", "-f", "-p2", plain, "-o", paths["pzstd"]], check=True)
    step, compressor = frame_mb * 2**20, zstandard.ZstdCompressor(level=3)
    with open(plain, "rb") as fh, open(paths["seekable"], "wb") as out:
        csizes, dsizes = [], []
        while part := fh.read(step):
            framed = compressor.compress(part)
            out.write(framed)
            csizes.append(len(framed))
            dsizes.append(len(part))
        out.write(seek_table(csizes, dsizes))
    for path in paths.values():
        warm_page_cache(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reads", type=int, default=390_000)
    parser.add_argument("--csv-mb", type=int, default=64)
    parser.add_argument("--frame-mb", type=int, default=1)
    parser.add_argument("--slices", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--long", action="store_true", help="also zstd --long (a 128 MiB window)")
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    goals: list[str] = []
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        fastq, csv = os.path.join(tmp, "reads.fastq"), os.path.join(tmp, "table.csv")
        with open(fastq, "wb") as fh:
            fh.write(illumina_fastq(args.reads, 21))
        generate_csv(csv, args.csv_mb)
        inputs = [("FASTQ", FASTQ, partition_reads_batches, fastq), ("CSV", CSV, csv_chunks, csv)]
        spawn = multiprocessing.get_context("spawn")
        with (
            ProcessPoolExecutor(args.workers, mp_context=spawn) as pool,
            ProcessPoolExecutor(args.workers, mp_context=spawn, initializer=count_decoded) as counting,
        ):
            list(pool.map(abs, range(args.workers)))
            for label, fmt, strategy, plain in inputs:
                print(f"{label}: {os.path.getsize(plain) / 1e6:.0f} MB; {load_average()}")
                for kind, path in encodings(plain, args.frame_mb, args.long).items():
                    co = CloudObject.from_url(fmt, path).preprocess()
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", SliceInsideFrameWarning)  # a one-frame file: the case measured
                        warnings.simplefilter("ignore", CheckpointSpacingWarning)  # frames of 1 MiB for slices of 2 MiB: measured as the issue asks
                        slices = co.partition(strategy, args.slices)
                    size = co.attributes.uncompressed_size
                    run = -(-len(slices) // args.workers)
                    (one, total), (pz, _), (ordered, got), (pooled, sizes), (runs, in_runs) = interleaved_best(
                        [
                            lambda path=path: one_decompression(path),
                            lambda path=path: pzstd_dc(path),
                            lambda slices=slices: in_order(slices),
                            lambda slices=slices: sum(pool.map(slice_bytes, slices)),
                            lambda slices=slices, run=run: sum(pool.map(slice_bytes, slices, chunksize=run)),
                        ],
                        args.repeats,
                    )
                    assert total == size and got == sizes == in_runs and sizes <= size
                    print(
                        f"  {kind:9} {os.path.getsize(path) / 1e6:6.1f} MB, {co.attributes.checkpoints:4} frames: one decompression {one:.3f} s, "
                        f"pzstd -p2 -dc {pz:.3f} s; {len(slices)} slices in order {ordered:.3f} s = {ordered / one:.2f} x one; on {args.workers} "
                        f"workers one at a time {pooled:.3f} s = {pooled / one:.2f} x one = {pooled / pz:.2f} x pzstd -p2, in runs of {run} "
                        f"{runs:.3f} s = {runs / one:.2f} x one = {runs / pz:.2f} x pzstd -p2; {load_average()}"
                    )
                    shares = []
                    for chunksize in (1, run):
                        per: dict[int, int] = {}
                        for pid, n in counting.map(decoded_by, slices, chunksize=chunksize):
                            per[pid] = per.get(pid, 0) + n
                        shares.append(" + ".join(f"{n / size:.2f}" for n in sorted(per.values())))
                    print(f"            decoded by each worker, x the data: one at a time {shares[0]}, in runs of {run} {shares[1]}")
                    what = f"{label} {kind} x{len(slices)}"
                    workers = [(f"{args.workers} workers, 1 at a time", pooled), (f"{args.workers} workers, runs of {run}", runs)]
                    if kind in ("one", "long"):
                        goals.append(goal_line(f"{what} in order, 1 process", ordered, "one decompression", one, 1.2))
                        goals += [goal_line(f"{what} on {how}", t, "one decompression", one, 1.2) for how, t in workers]
                    else:
                        goals += [goal_line(f"{what} on {how}", t, "pzstd -p2 -dc", pz, 1.5) for how, t in workers]
    print(f"goals ({load_average()}):")
    print("\n".join(goals))


if __name__ == "__main__":
    main()
