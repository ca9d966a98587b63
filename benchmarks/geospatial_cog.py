"""COG benchmark: index pass and reading all tiles on a process pool, against rasterio in the same run.

Writes a seeded COG with rasterio (``--size``-pixel square, default 6144, 3 bands of uint16, deflate with
horizontal predictor, 512-pixel tiles and GDAL's overviews; about 200 MB: the low bits are noise) into a temporary folder, warms
the page cache, then prints:
- index pass (``preprocess``: TIFF header and IFDs over range reads) ÷ one full ``rasterio`` read;
- all tiles of the full resolution (``partition_tiles``, ``--slices`` slices, default 16), each slice's
  ``get()`` on a spawned pool of ``--workers`` processes (default 2) ÷ the same full rasterio read
  (GDAL's default: one decoding thread), and ÷ a rasterio read with ``NUM_THREADS=ALL_CPUS``;
- requests and bytes the index pass read, and the sidecar's size ÷ the object's.
Workers return pixel counts, not arrays, so no result crosses a process boundary; rasterio's read stays in
its process too. The contenders run in turn for ``--repeat`` rounds (default 5); times are medians and each
ratio is the median of the rounds' ratios. The load average is printed before and after: other work on the
machine slows every figure.

    python benchmarks/geospatial_cog.py --size 6144 --slices 16 --workers 2
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import rasterio
import rasterio.shutil
from _common import timed, warm_page_cache
from affine import Affine

from dataplug import CloudObject
from dataplug.formats.geospatial.cog import COG, COGSlice, partition_tiles
from dataplug.storage import read_stats


def generate(path: str, size: int, seed: int = 0) -> None:
    """A terrain-like 3-band uint16 COG: smooth relief plus noise in the low bits, written row band by row band."""
    rng = np.random.default_rng(seed)
    profile = {"driver": "GTiff", "width": size, "height": size, "count": 3, "dtype": "uint16", "tiled": True, "blockxsize": 512, "blockysize": 512}
    profile.update(crs="EPSG:32631", transform=Affine(1.0, 0.0, 500000.0, 0.0, -1.0, 4600000.0))
    plain = path + ".plain.tif"
    with rasterio.open(plain, "w", **profile) as dst:
        cols = np.arange(size)
        for top in range(0, size, 512):
            rows = np.arange(top, min(top + 512, size))[:, None]
            relief = 20000 + 8000 * np.sin(rows / 700.0) * np.cos(cols / 900.0)
            for band in range(3):
                noise = rng.integers(0, 256, (rows.size, size))
                dst.write((relief + band * 3000 + noise).astype(np.uint16), band + 1, window=rasterio.windows.Window(0, top, size, rows.size))
    with rasterio.open(plain) as src:
        rasterio.shutil.copy(src, path, driver="COG", compress="deflate", predictor=2, blocksize=512, num_threads="all_cpus")
    os.remove(plain)


def read_all(path: str, threads: str | None = None) -> int:
    """One full-resolution rasterio read of every band; the pixel count."""
    with rasterio.Env(GDAL_NUM_THREADS=threads) if threads else rasterio.Env(), rasterio.open(path) as src:
        return int(src.read().size)


def pixels(piece: COGSlice) -> int:
    """A worker's task: fetch and decode one slice."""
    return int(piece.get().size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=6144)
    parser.add_argument("--slices", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()

    load_before = os.getloadavg()
    spawn = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(dir=args.dir) as folder, ProcessPoolExecutor(args.workers, mp_context=spawn) as pool:
        list(pool.map(abs, range(args.workers)))  # start the workers before timing
        path = os.path.join(folder, "terrain.tif")
        t_gen, _ = timed(lambda: generate(path, args.size))
        size = os.path.getsize(path)
        warm_page_cache(path)
        co = CloudObject.from_url(COG, path)
        read_stats.reset()
        co.preprocess(force=True, progress=False)
        requests, index_bytes = read_stats.requests[co.url], read_stats.bytes[co.url]
        sidecar = co.index().nbytes() + len(co.index_location.child("manifest.json").read_all())
        slices = co.partition(partition_tiles, args.slices)
        runs: dict[str, list[float]] = {"read": [], "threaded": [], "index": [], "tiles": []}
        for _ in range(args.repeat):  # contenders in turn, so a drift in the machine's speed hits each pair alike
            t_read, total = timed(lambda: read_all(path))
            t_threaded, _ = timed(lambda: read_all(path, "ALL_CPUS"))
            t_index, _ = timed(lambda: co.preprocess(force=True, progress=False))
            t_tiles, got = timed(lambda: sum(pool.map(pixels, slices)))
            assert got == total, (got, total)
            for name, t in zip(runs, (t_read, t_threaded, t_index, t_tiles)):
                runs[name].append(t)
        levels = co.attributes.levels
    load_after = os.getloadavg()

    def ratio(name: str, base: str) -> float:
        return float(np.median(np.array(runs[name]) / np.array(runs[base])))

    med = {name: float(np.median(times)) for name, times in runs.items()}
    print(f"COG benchmark: {args.size} x {args.size} x 3 uint16, deflate + predictor, {size / 1e6:.0f} MB, {levels} levels")
    print(f"median of {args.repeat} rounds; a ratio is the median of the rounds' ratios")
    print(
        f"load average before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}"
    )
    print(f"COG written in {t_gen:.1f} s")
    print(f"  rasterio full read (GDAL default, 1 thread)       {med['read']:7.3f} s")
    print(f"  rasterio full read, NUM_THREADS=ALL_CPUS          {med['threaded']:7.3f} s")
    print(
        f"  index pass                                        {med['index']:7.3f} s   ÷ rasterio read = {ratio('index', 'read'):.4f}"
        f"   ({requests} request, {index_bytes:,} bytes)"
    )
    print(
        f"  all tiles, {args.slices} slices on {args.workers} processes            {med['tiles']:7.3f} s   ÷ rasterio read = {ratio('tiles', 'read'):.2f}"
        f"   ÷ threaded read = {ratio('tiles', 'threaded'):.2f}"
    )
    print(f"  sidecar {sidecar:,} bytes ÷ object = {100 * sidecar / size:.4f} %")


if __name__ == "__main__":
    main()
