"""COPC benchmark: index pass and reading all cells, against plain reads in the same run.

Writes a 2 km x 2 km city-like tile (``--points``, default 6 million, point format 6: ground plus boxy
buildings) as a COPC file with the tests' writer (an octree whose nodes keep up to ``--cap`` points, one
LAZ chunk per node). Prints:
- the index pass (``preprocess``: header, VLRs and hierarchy pages) ÷ reading the whole file, with the
  requests and bytes it read;
- all ``square_split_strategy`` cells (``--slices``, default 16, and 4 x as many), all
  ``partition_spatial_chunks`` slices (whole nodes) and all ``partition_num_points`` runs, each slice's ``get()`` on a spawned pool of ``--workers`` processes
  (default 2), ÷ one ``laspy.read`` of the file (laspy's default, lazrs on all cores) and ÷ a single-threaded
  one; with how many points the cells decode per point they keep (a node that meets several cells is
  decoded by each);
- the sidecar's size ÷ the object's.
Each time is the better of ``--repeat`` runs (default 2); the load average is printed before and after, as
other work on the machine slows every figure.

``--factors`` prints only the points the partitions decode per point they keep, which needs the index and
no slice read: ``square_split_strategy`` at ``--slices`` and 4 x as many cells, with its inner edges moved
off node boundaries (as it does) and left on them, and ``partition_spatial_chunks``.

    python benchmarks/geospatial_copc.py --points 6000000 --slices 16 --workers 2
    python benchmarks/geospatial_copc.py --points 1000000 --slices 16 --factors
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import laspy
import numpy as np
from _common import best_of, warm_page_cache

from dataplug import CloudObject
from dataplug.formats.geospatial import copc
from dataplug.formats.geospatial.copc import COPCSlice, partition_num_points, partition_spatial_chunks, square_split_strategy
from dataplug.storage import read_stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.copc_files import write_copc  # the tests' COPC writer (laspy cannot write COPC)


def generate(points: int, seed: int = 0) -> laspy.LasData:
    """A 2 km x 2 km tile: ground with boxy buildings, 1 cm coordinates, GPS time in acquisition order."""
    rng = np.random.default_rng(seed)
    x, y = np.round(rng.uniform(0, 2000, points), 2), np.round(rng.uniform(0, 2000, points), 2)
    ground = 50 + 10 * np.sin(x / 300) * np.cos(y / 250)
    block = (np.floor(x / 40) * 53 + np.floor(y / 40) * 97) % 7
    building = np.where((block < 3) & (x % 40 > 8) & (y % 40 > 8), 5 + block * 12, 0)
    header = laspy.LasHeader(point_format=6, version="1.4")
    header.scales, header.offsets = np.array([0.01, 0.01, 0.01]), np.array([0.0, 0.0, 0.0])
    las = laspy.LasData(header)
    las.x, las.y, las.z = x, y, ground + building + rng.normal(0, 0.05, points)
    las.intensity = rng.integers(0, 4096, points)
    las.return_number = las.number_of_returns = np.ones(points, dtype=np.uint8)
    las.classification = np.where(building > 0, 6, 2)
    las.gps_time = np.arange(points, dtype=np.float64) * 1e-5
    las.update_header()
    return las


def count_points(piece: COPCSlice) -> int:
    """The work of each process: fetch and decode its slice, build its LasData, return the point count."""
    return len(piece.get().points)


def decoded_points(slices: list[COPCSlice]) -> int:
    """Points in the node chunks the slices fetch (each node once per slice that needs it)."""
    return sum(node[2] for s in slices for node in s.nodes)


def factors(path: str, slices: int) -> None:
    """``--factors``: points decoded per point kept, from the partitions alone (strategies called directly:
    ``co.partition`` may count the cells' points by reading them)."""
    co = CloudObject.from_url("COPC", path).preprocess(progress=False)
    a = co.attributes
    print(f"COPC decode factors: {a.point_count:,} points, {a.nodes} nodes to depth {a.depth}; points decoded per point kept")
    moved = copc._off_boundaries
    for n in (slices, 4 * slices):
        factor = decoded_points(square_split_strategy(co, n)) / a.point_count
        print(f"  square_split_strategy, {n:3d} cells, edges moved off node boundaries  {factor:6.3f}")
        copc._off_boundaries = lambda co, edges, axis, depth: edges  # the grid's own edges
        try:
            factor = decoded_points(square_split_strategy(co, n)) / a.point_count
        finally:
            copc._off_boundaries = moved
        print(f"  square_split_strategy, {n:3d} cells, edges where the grid puts them  {factor:6.3f}")
    factor = decoded_points(partition_spatial_chunks(co, slices)) / a.point_count
    print(f"  partition_spatial_chunks, {slices:3d} slices                            {factor:6.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=6_000_000)
    parser.add_argument("--cap", type=int, default=16_384, help="points a node keeps before its children take the rest (untwine: 128 x 128)")
    parser.add_argument("--slices", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--dir", default=None)
    parser.add_argument("--factors", action="store_true", help="print only the points the partitions decode per point kept (no slice is read)")
    args = parser.parse_args()
    if args.factors:
        with tempfile.TemporaryDirectory(dir=args.dir) as folder:
            path = os.path.join(folder, "city.copc.laz")
            Path(path).write_bytes(write_copc(generate(args.points), cap=args.cap, max_depth=8))
            factors(path, args.slices)
        return

    load_before = os.getloadavg()
    spawn = multiprocessing.get_context("spawn")  # lazrs's threads make forked workers hang
    with tempfile.TemporaryDirectory(dir=args.dir) as folder, ProcessPoolExecutor(args.workers, mp_context=spawn) as pool:
        list(pool.map(abs, range(args.workers)))  # start the workers before timing
        path = os.path.join(folder, "city.copc.laz")
        Path(path).write_bytes(write_copc(generate(args.points), cap=args.cap, max_depth=8))
        size = os.path.getsize(path)
        warm_page_cache(path)
        t_whole, _ = best_of(lambda: Path(path).read_bytes(), args.repeat)
        t_read, whole = best_of(lambda: laspy.read(path), args.repeat)
        t_read1, _ = best_of(lambda: laspy.read(path, laz_backend=laspy.LazBackend.Lazrs), args.repeat)
        total = whole.header.point_count
        del whole
        co = CloudObject.from_url("COPC", path)
        read_stats.reset()
        co.preprocess(progress=False)
        requests, nbytes = read_stats.requests[co.url], read_stats.bytes[co.url]
        t_index, _ = best_of(lambda: co.preprocess(force=True, progress=False), args.repeat)
        sidecar = co.index().nbytes() + len(co.index_location.child("manifest.json").read_all())
        rows = []
        for label, strategy, n in (
            ("square_split_strategy", square_split_strategy, args.slices),
            ("square_split_strategy", square_split_strategy, 4 * args.slices),
            ("partition_spatial_chunks", partition_spatial_chunks, args.slices),
            ("partition_num_points", partition_num_points, args.slices),
        ):
            slices = co.partition(strategy, n)
            t, got = best_of(lambda slices=slices: sum(pool.map(count_points, slices)), args.repeat)
            assert got == total, (label, n, got, total)
            rows.append((f"{label}, {len(slices)} slices", t, decoded_points(slices) / total))
    load_after = os.getloadavg()

    a = co.attributes
    print(f"COPC benchmark: {total:,} points (format 6), {size / 1e6:.0f} MB, {a.nodes} nodes to depth {a.depth} in {a.pages} hierarchy page(s)")
    print(f"{args.workers} spawned processes, best of {args.repeat}")
    print(
        f"load average before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}"
    )
    print(f"  reading the whole file (warm cache)          {t_whole:8.4f} s")
    print(
        f"  index pass                                   {t_index:8.4f} s   ÷ reading the file = {t_index / t_whole:.2f}   ({requests} requests, {nbytes:,} bytes)"
    )
    print(f"  laspy.read (lazrs on all cores)              {t_read:8.2f} s")
    print(f"  laspy.read, single-threaded                  {t_read1:8.2f} s")
    for label, t, factor in rows:
        print(
            f"  {label:<44} {t:8.2f} s   ÷ laspy.read = {t / t_read:.2f}   ÷ single-threaded = {t / t_read1:.2f}   ({factor:.3f} points decoded per point)"
        )
    print(f"  sidecar {sidecar:,} bytes ÷ object = {100 * sidecar / size:.4f} %")


if __name__ == "__main__":
    main()
