"""LiDAR benchmark: spatial slices on scan-ordered and Morton-ordered tiles, against laspy in the same run.

Airborne tiles come in GPS-time order (zig-zag scan lines along overlapping flight strips), which is what
``dataplug.synthetic.scan_ordered_cloud`` generates; ``lassort`` leaves them in Morton order
(``morton_ordered_cloud``). For each order (``--orders``) the script writes a ``--points`` tile (default
20 million, point format 6) as LAS and as LAZ (laspy's 50 000-point chunks) and prints, for each:
- ``laspy.read`` of the file on one thread (the yardstick);
- index pass (``preprocess`` on the default executor) ÷ that read, and sidecar size ÷ object size;
- for ``square_split_strategy`` at each of ``--cells`` (default 16 and 64) and ``partition_spatial_chunks``
  (``--kd`` slices, default 16): the decode factor (points the slices read and decode ÷ points they keep:
  every point is kept once) and the time of every slice's ``get()`` on a spawned pool of ``--workers``
  processes (default 2) ÷ the read.
Reads and pool runs alternate (``--repeat`` pairs, default 3) and each ratio is the median of the pairs'
ratios, so drifting load hits both alike. Beside the wall-time ratio, the CPU ratio (CPU seconds of every
worker ÷ CPU seconds of the read) says what the slices cost whatever else the machine runs; the wall ratio
on ``--workers`` cores is at best the CPU ratio ÷ workers. The load average is printed before and after.

``--factors`` prints what the partitions read, which needs the index pass and no decoding: for LAS, the
decode factor and ranges per cell of ``square_split_strategy`` for each ``--run-points`` (the index's run
size; 0: block bounds only), then for each ``--gaps`` (a store's ``max_gap``: ranges closer than this are
fetched in one request) the requests per cell, the bytes they fetch ÷ the bytes of the ranges, and the time
to fetch every cell's ranges with ``read_ranges`` (median of ``--repeat``) from the local file (page cache
warm) and, with ``--s3``, from S3 on the latency-true bed (``benchmarks/latency_bed.py``: 30 ms to the first
byte, 90 MB/s per connection), and there for each ``--blocks`` (a store's ``max_block``) at S3's default gap;
for LAZ, the decode factors of the cells and of ``partition_spatial_chunks``. The stores' default gaps and
blocks (``dataplug.storage.stores``) are chosen from these times.

    python benchmarks/lidar.py --points 20000000 --workers 2
    python benchmarks/lidar.py --points 6000000 --factors --run-points 4096,64,32 --gaps 0,4096,16384
    python benchmarks/lidar.py --points 4000000 --orders scan --formats las --factors --cells 16 --gaps 0,1024,4096,16384,65536,262144,1048576,4194304 --s3
    python benchmarks/lidar.py --points 4000000 --orders scan --formats las --factors --cells 16 --gaps 0,512,1024,4096,16384 --repeat 7
    python benchmarks/lidar.py --points 4000000 --orders scan --formats las --factors --cells 16 --gaps 1048576 --s3 --blocks 1048576,4194304,16777216,67108864
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from multiprocessing import get_context

import laspy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import best_of, timed, warm_page_cache
from latency_bed import S3Bed

from dataplug import CloudObject
from dataplug.formats.geospatial.laspc import LiDARPointCloud, LiDARSlice, partition_spatial_chunks, square_split_strategy
from dataplug.storage import StorageObject, plan
from dataplug.storage.stores import LOCAL
from dataplug.synthetic import morton_ordered_cloud, scan_ordered_cloud, write_cloud

GENERATORS = {"scan": scan_ordered_cloud, "morton": morton_ordered_cloud}


def count_points(piece: LiDARSlice) -> tuple[int, float]:
    """The work of each process: fetch and decode its slice, build its LasData; its point count and the
    CPU seconds it took."""
    cpu = time.process_time()
    return len(piece.get().points), time.process_time() - cpu


def read_whole(path: str) -> tuple[int, float]:
    """The yardstick: ``laspy.read`` on one thread; the point count and the CPU seconds it took."""
    cpu = time.process_time()
    return laspy.read(path, laz_backend=laspy.LazBackend.Lazrs).header.point_count, time.process_time() - cpu


def decode_factor(slices: list[LiDARSlice], total: int) -> float:
    """Points in the ranges or chunks the slices read (each once per slice that reads it) ÷ points."""
    return sum(row[3] for s in slices for row in s.blocks) / total


def sidecar_bytes(co: CloudObject) -> int:
    return co.index().nbytes() + len(co.index_location.child("manifest.json").read_all())


def paired(path: str, pool: ProcessPoolExecutor, slices: list[LiDARSlice], total: int, repeat: int) -> tuple[float, float, float]:
    """``repeat`` pairs of (one read, all slices on the pool), alternating so that drifting load hits
    both alike: the median wall time of the slices, and the medians of the per-pair wall ratio and CPU
    ratio (CPU seconds of every worker ÷ CPU seconds of the read: what the slices cost, whatever the load)."""
    walls, wall_ratios, cpu_ratios = [], [], []
    for _ in range(repeat):
        t_read, (_, cpu_read) = timed(partial(read_whole, path))
        t_all, results = timed(partial(_all, pool, slices))
        assert sum(n for n, _ in results) == total
        walls.append(t_all)
        wall_ratios.append(t_all / t_read)
        cpu_ratios.append(sum(c for _, c in results) / cpu_read)
    return statistics.median(walls), statistics.median(wall_ratios), statistics.median(cpu_ratios)


def _all(pool: ProcessPoolExecutor, slices: list[LiDARSlice]) -> list[tuple[int, float]]:
    return list(pool.map(count_points, slices))


def measure(path: str, pool: ProcessPoolExecutor, args: argparse.Namespace) -> list[str]:
    """The report lines of one file."""
    warm_page_cache(path)
    t_read, (total, _) = best_of(partial(read_whole, path), args.repeat)
    co = CloudObject.from_url(LiDARPointCloud, path)
    t_index, _ = best_of(partial(co.preprocess, force=True, progress=False), 2)
    size = os.path.getsize(path)
    lines = [
        f"  laspy.read, one thread (best)            {t_read:7.2f} s",
        (
            f"  index pass (best of 2)                   {t_index:7.2f} s   ÷ read {t_index / t_read:5.2f}"
            f"   sidecar {sidecar_bytes(co):,} bytes = {100 * sidecar_bytes(co) / size:.3f} % of {size / 1e6:.0f} MB"
        ),
    ]
    plans = [(f"square_split_strategy, {n} cells", square_split_strategy, n) for n in args.cells]
    plans.append((f"partition_spatial_chunks, {args.kd} slices", partition_spatial_chunks, args.kd))
    _all(pool, co.partition(partition_spatial_chunks, args.workers))  # workers import dataplug and laspy
    for label, strategy, n in plans:
        t_part, slices = timed(partial(co.partition, strategy, n))
        t_all, wall_ratio, cpu_ratio = paired(path, pool, slices, total, args.repeat)
        lines.append(
            f"  {label:39s}  {t_all:7.2f} s   ÷ read {wall_ratio:5.2f}   CPU ÷ read's {cpu_ratio:5.2f}"
            f"   decode factor {decode_factor(slices, total):5.3f}   (partition {t_part * 1000:.0f} ms)"
        )
    return lines


def fetch_seconds(obj: StorageObject, asked: list[list[tuple[int, int]]], gap: int, repeat: int, block: int | None = None) -> float:
    """Median seconds of fetching every cell's ranges, one ``read_ranges`` call per cell, with ``max_gap=gap``
    (and ``max_block=block``; None: the store's)."""
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        for spans in asked:
            obj.read_ranges(spans, max_gap=gap, max_block=block)
        runs.append(time.perf_counter() - started)
    return statistics.median(runs)


def factors(path: str, args: argparse.Namespace, bed: S3Bed | None) -> list[str]:
    """The report lines of ``--factors``: decode factors (and, for LAS, requests, bytes and fetch times per gap) from partitions alone."""
    co = CloudObject.from_url(LiDARPointCloud, path)
    lines = []
    if path.endswith(".las"):
        remote = None
        if bed is not None:
            remote = StorageObject(f"{bed.bucket(f'lidar-{os.getpid()}')}/{os.path.basename(path)}", bed.options)
            bed.put(path, remote.url)
        warm_page_cache(path)
        for run_points in args.run_points:
            co.preprocess(force=True, progress=False, run_points=run_points)
            total = co.attributes.point_count
            for n in args.cells:
                slices = square_split_strategy(co, n)  # the strategy alone: co.partition may count the cells' points
                asked = [[row[:2] for row in s.blocks] for s in slices]
                ranges = sum(map(len, asked)) / len(slices)
                lines.append(
                    f"  run_points {run_points:5d}, {n:3d} cells: decode factor {decode_factor(slices, total):5.3f}, {ranges:7,.0f} ranges per cell"
                )
                wanted = sum(b - a for spans in asked for a, b in spans)
                for gap in args.gaps:
                    planned = [plan(spans, gap, LOCAL.max_block).requests for spans in asked]
                    requests = sum(map(len, planned)) / len(slices)
                    fetched = sum(b - a for spans in planned for a, b in spans)
                    line = (
                        f"    gap {gap:8d} B: {requests:7,.0f} requests per cell, bytes fetched ÷ asked {fetched / wanted:6.3f},"
                        f" local {fetch_seconds(co.obj, asked, gap, args.repeat) * 1000:7.1f} ms"
                    )
                    if remote is not None:
                        line += f", S3 on the bed {fetch_seconds(remote, asked, gap, args.repeat) * 1000:7.0f} ms"
                    lines.append(line + " for every cell")
                for block in args.blocks if remote is not None else []:
                    gap = remote.policy.max_gap
                    requests = sum(len(plan(spans, gap, block).requests) for spans in asked) / len(slices)
                    seconds = fetch_seconds(remote, asked, gap, args.repeat, block)
                    lines.append(
                        f"    S3 gap {gap} B, block {block:9d} B: {requests:5,.0f} requests per cell, {seconds * 1000:7.0f} ms for every cell"
                    )
    else:
        co.preprocess(force=True, progress=False)
        total = co.attributes.point_count
        for n in args.cells:
            lines.append(f"  square_split_strategy, {n:3d} cells: decode factor {decode_factor(square_split_strategy(co, n), total):5.3f}")
        kd = decode_factor(partition_spatial_chunks(co, args.kd), total)
        lines.append(f"  partition_spatial_chunks, {args.kd:3d} slices: decode factor {kd:5.3f}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=20_000_000)
    parser.add_argument("--orders", default="scan,morton", help="comma-separated: scan, morton")
    parser.add_argument("--formats", default="las,laz", help="comma-separated: las, laz")
    parser.add_argument("--cells", default="16,64", help="square_split_strategy cell counts, comma-separated")
    parser.add_argument("--kd", type=int, default=16, help="partition_spatial_chunks slice count")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", default=None)
    parser.add_argument("--factors", action="store_true", help="print only the decode factors of the partitions (no slice is read)")
    parser.add_argument("--run-points", default="32", help="with --factors: LAS run_points options, comma-separated")
    parser.add_argument("--gaps", default=str(LOCAL.max_gap), help="with --factors: a store's max_gap in bytes, comma-separated")
    parser.add_argument("--s3", action="store_true", help="with --factors: also time the LAS cells' reads from S3 on the latency-true bed")
    parser.add_argument("--blocks", default="", help="with --factors --s3: a store's max_block in bytes, comma-separated")
    args = parser.parse_args()
    args.cells = [int(n) for n in args.cells.split(",")]
    args.run_points = [int(n) for n in args.run_points.split(",")]
    args.gaps = [int(n) for n in args.gaps.split(",")]
    args.blocks = [int(n) for n in args.blocks.split(",") if n]
    if args.factors:
        print(f"LiDAR decode factors: {args.points:,} points (format 6), points the slices read ÷ points they keep")
        with tempfile.TemporaryDirectory(dir=args.dir) as folder, S3Bed() if args.s3 else contextlib.nullcontext() as bed:
            for order in args.orders.split(","):
                cloud = GENERATORS[order](args.points)
                print(f"\n{order}-ordered tile")
                for suffix in args.formats.split(","):
                    path = os.path.join(folder, f"{order}.{suffix}")
                    write_cloud(cloud, path)
                    print(f"{suffix.upper()}:")
                    print("\n".join(factors(path, args, bed)), flush=True)
                    os.remove(path)
                del cloud
        return

    print(f"LiDAR benchmark: {args.points:,} points (format 6), {args.workers} spawned processes, medians of {args.repeat} pairs")
    print("load average before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    with tempfile.TemporaryDirectory(dir=args.dir) as folder, ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
        list(pool.map(abs, range(args.workers)))  # start the workers before timing
        for order in args.orders.split(","):
            t_gen, cloud = timed(partial(GENERATORS[order], args.points))
            print(f"\n{order}-ordered tile, generated in {t_gen:.1f} s")
            for suffix in args.formats.split(","):
                path = os.path.join(folder, f"{order}.{suffix}")
                write_cloud(cloud, path)
                print(f"{suffix.upper()}:")
                print("\n".join(measure(path, pool, args)), flush=True)
                os.remove(path)
            del cloud
    print("\nload average after: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
