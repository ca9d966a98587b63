"""LiDAR benchmark: index pass, reading all slices and sidecar size, against laspy in the same run.

Generates a city-like cloud (``--points``, default 20 million, point format 6) as LAS and LAZ. Its points
are sorted along a Morton curve of 256 x 256 tiles, as ``lassort`` leaves city tiles, so each block covers
a compact patch. Prints, for LAS and LAZ:
- index pass (``preprocess`` on the default thread pool) ÷ one single-threaded ``laspy.read`` of the file;
- reading all slices (``--slices``, default 16; ``square_split_strategy`` and ``partition_num_points``) on
  a spawned pool of ``--workers`` processes (default 2), each slice's ``get()``, ÷ the same ``laspy.read``;
- how many points the spatial slices decode per point they keep (blocks that straddle a cell edge are
  read by each cell they meet);
- sidecar size (tables and manifest) ÷ object size.
Each time is the better of ``--repeat`` runs (default 2). The load average is printed before and after:
other work on the machine slows every figure.

    python benchmarks/lidar.py --points 20000000 --slices 16 --workers 2
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

import laspy
import numpy as np

from dataplug import CloudObject
from dataplug.formats.geospatial.laspc import LiDARPointCloud, LiDARSlice, partition_num_points, square_split_strategy


def generate(points: int, point_format: int = 6, seed: int = 0) -> laspy.LasData:
    """A 2 km x 2 km tile of ``points`` points (ground plus boxy buildings), Morton-sorted by 7.8 m tiles."""
    rng = np.random.default_rng(seed)
    x, y = np.round(rng.uniform(0, 2000, points), 2), np.round(rng.uniform(0, 2000, points), 2)  # stored at 1 cm
    tx, ty = np.minimum(x / 2000 * 256, 255).astype(np.uint32), np.minimum(y / 2000 * 256, 255).astype(np.uint32)
    code = np.zeros(points, dtype=np.uint32)
    for bit in range(8):
        code |= ((tx >> bit) & 1) << (2 * bit) | ((ty >> bit) & 1) << (2 * bit + 1)
    order = np.argsort(code, kind="stable")
    x, y = x[order], y[order]
    ground = 50 + 10 * np.sin(x / 300) * np.cos(y / 250)
    block = (np.floor(x / 40) * 53 + np.floor(y / 40) * 97) % 7
    building = np.where((block < 3) & (x % 40 > 8) & (y % 40 > 8), 5 + block * 12, 0)
    header = laspy.LasHeader(point_format=point_format, version="1.4")
    header.scales, header.offsets = np.array([0.01, 0.01, 0.01]), np.array([0.0, 0.0, 0.0])
    las = laspy.LasData(header)
    las.x, las.y, las.z = x, y, ground + building + rng.normal(0, 0.05, points)
    las.intensity = rng.integers(0, 4096, points)
    las.return_number = las.number_of_returns = np.ones(points, dtype=np.uint8)
    las.classification = np.where(building > 0, 6, 2)
    las.gps_time = np.arange(points, dtype=np.float64) * 1e-5
    return las


def count_points(piece: LiDARSlice) -> int:
    """The work of each process: fetch and decode its slice, build its LasData, return the point count."""
    return len(piece.get().points)


def decoded_points(slices: list[LiDARSlice]) -> int:
    """Points in the blocks the slices fetch (each block once per slice that needs it)."""
    return sum(row[3] for s in slices for row in s.blocks)


def best(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=20_000_000)
    parser.add_argument("--slices", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()

    load_before = os.getloadavg()
    rows = []
    spawn = multiprocessing.get_context("spawn")  # lazrs's threads make forked workers hang
    with tempfile.TemporaryDirectory(dir=args.dir) as folder, ProcessPoolExecutor(args.workers, mp_context=spawn) as pool:
        list(pool.map(abs, range(args.workers)))  # start the workers before timing
        t_gen, cloud = best(lambda: generate(args.points), 1)
        for suffix in ("las", "laz"):
            path = os.path.join(folder, f"city.{suffix}")
            cloud.write(path, laz_backend=laspy.LazBackend.LazrsParallel)
            size = os.path.getsize(path)
            with open(path, "rb") as fh:  # warm the page cache for every reader alike
                while fh.read(64 * 2**20):
                    pass
            t_read, whole = best(lambda: laspy.read(path, laz_backend=laspy.LazBackend.Lazrs), args.repeat)
            total = whole.header.point_count
            del whole
            co = CloudObject.from_url(LiDARPointCloud, path)
            t_index, _ = best(lambda: co.preprocess(force=True, progress=False), args.repeat)
            sidecar = co.index().nbytes() + len(co.index_location.child("manifest.json").read_all())
            t_hist, _ = best(lambda: co.preprocess(force=True, progress=False, histogram_grid=16), 1)
            hist_sidecar = co.index().nbytes() + len(co.index_location.child("manifest.json").read_all())
            cells = co.partition(square_split_strategy, args.slices)
            runs = co.partition(partition_num_points, args.slices)
            t_cells, got_cells = best(lambda: sum(pool.map(count_points, cells)), args.repeat)
            t_runs, got_runs = best(lambda: sum(pool.map(count_points, runs)), args.repeat)
            assert got_cells == got_runs == total, (got_cells, got_runs, total)
            rows.append(
                (suffix.upper(), size, total, t_read, t_index, t_hist, t_cells, t_runs, decoded_points(cells) / total, sidecar, hist_sidecar, co.attributes.blocks)
            )
            os.remove(path)
    load_after = os.getloadavg()

    print(f"LiDAR benchmark: {args.points:,} points (format 6), {args.slices} slices on {args.workers} spawned processes, best of {args.repeat}")
    print(f"load average before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
    print(f"cloud generated in {t_gen:.1f} s")
    for kind, size, total, t_read, t_index, t_hist, t_cells, t_runs, redundancy, sidecar, hist_sidecar, blocks in rows:
        print(f"\n{kind}: {size / 1e6:.0f} MB, {blocks} blocks")
        print(f"  laspy.read, single-threaded                       {t_read:7.2f} s")
        print(f"  index pass                                        {t_index:7.2f} s   ÷ laspy.read = {t_index / t_read:.2f}")
        print(f"  index pass with 16 x 16 histograms                {t_hist:7.2f} s   ÷ laspy.read = {t_hist / t_read:.2f}")
        print(f"  all slices, square_split_strategy                 {t_cells:7.2f} s   ÷ laspy.read = {t_cells / t_read:.2f}   ({redundancy:.3f} points decoded per point)")
        print(f"  all slices, partition_num_points                  {t_runs:7.2f} s   ÷ laspy.read = {t_runs / t_read:.2f}")
        print(f"  sidecar {sidecar:,} bytes ÷ object = {100 * sidecar / size:.4f} %   (with histograms {hist_sidecar:,} bytes = {100 * hist_sidecar / size:.4f} %)")


if __name__ == "__main__":
    main()
