"""COG benchmark: index pass, reading all tiles on a process pool, and random windows through one reader,
against rasterio in the same run.

Writes a seeded COG with rasterio (``--size``-pixel square, default 6144, 3 bands of uint16, deflate with
horizontal predictor, 512-pixel tiles and GDAL's overviews; about 200 MB: the low bits are noise) into a temporary folder, warms
the page cache, then prints:
- index pass (``preprocess``: TIFF header and IFDs over range reads) ÷ one full ``rasterio`` read;
- all tiles of the full resolution (``partition_tiles``, ``--slices`` slices, default 16), each slice's
  ``get()`` on a spawned pool of ``--workers`` processes (default 2) ÷ the same full rasterio read
  (GDAL's default: one decoding thread), and ÷ a rasterio read with ``NUM_THREADS=ALL_CPUS``;
- requests and bytes the index pass read, and the sidecar's size ÷ the object's;
- ``--windows`` (default 300) seeded random windows of 128-1024 pixels a side, overlapping: each contender
  opens the file once per pass and reads every window in one process. ``co.reader().window(...)`` (each
  tile decoded once through the reader's LRU) ÷ rasterio's ``read(window=...)`` on one open dataset (GDAL's
  block cache), and one ``partition_bbox`` slice per window read with ``get()`` (the slices' path: the
  process's shared handle) ÷ rasterio; the tiles the reader decoded against the tiles the windows meet.
Workers return pixel counts, not arrays, so no result crosses a process boundary; rasterio's read stays in
its process too. The contenders run in turn for ``--repeat`` rounds (default 5); times are medians and each
ratio is the median of the rounds' ratios. The load average is printed before and after: other work on the
machine slows every figure. ``--parts`` picks the measurements (``index,tiles,windows``).

    python benchmarks/geospatial_cog.py --size 6144 --slices 16 --workers 2
    python benchmarks/geospatial_cog.py --size 4096 --parts windows --repeat 3
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
from rasterio.windows import Window

from dataplug import CloudObject
from dataplug.formats.geospatial.cog import COG, COGSlice, partition_bbox, partition_tiles
from dataplug.reader import clear_shared
from dataplug.storage import read_stats

Box = tuple[int, int, int, int]


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


def random_windows(size: int, count: int, seed: int = 7) -> list[Box]:
    """``count`` seeded windows ``(row_off, col_off, height, width)`` of 128-1024 pixels a side inside a
    ``size``-pixel square (they overlap: 300 of them cover a 4096-pixel square about six times)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        height, width = (int(v) for v in rng.integers(128, min(1024, size) + 1, 2))
        out.append((int(rng.integers(0, size - height + 1)), int(rng.integers(0, size - width + 1)), height, width))
    return out


def windows_rasterio(path: str, windows: list[Box]) -> int:
    """Every window through one open rasterio dataset; the pixels read (the arrays are dropped as they come)."""
    with rasterio.open(path) as src:
        return sum(src.read(window=Window(col, row, width, height)).size for row, col, height, width in windows)


def windows_reader(path: str, windows: list[Box]) -> tuple[int, int]:
    """Every window through one dataplug reader (index loaded, file opened once); the pixels read and the
    tiles decoded."""
    with CloudObject.from_url(COG, path).reader() as reader:
        return sum(reader.window(*box).size for box in windows), reader.decodes


def bbox_slice(co: CloudObject, box: Box) -> COGSlice:
    """The ``partition_bbox`` slice of a window ``(row_off, col_off, height, width)`` of the full resolution."""
    row, col, height, width = box
    ta, _, tc, _, te, tf = co.attributes.transform
    xs = sorted((tc + ta * col, tc + ta * (col + width)))
    ys = sorted((tf + te * row, tf + te * (row + height)))
    return co.partition(partition_bbox, xs[0], ys[0], xs[1], ys[1])[0]


def windows_slices(path: str, windows: list[Box]) -> int:
    """Every window as one ``partition_bbox`` slice of one object, read with ``get()`` (the process's shared
    handles forgotten first, so no pass starts with the previous one's tiles); the pixels read."""
    clear_shared()
    co = CloudObject.from_url(COG, path)
    total = sum(bbox_slice(co, box).get().size for box in windows)
    co.close()
    return total


def check_windows(path: str, windows: list[Box]) -> None:
    """The reader's and the slices' windows equal rasterio's, window by window (outside the timings)."""
    co = CloudObject.from_url(COG, path)
    with rasterio.open(path) as src, co.reader() as reader:
        for box in windows:
            row, col, height, width = box
            expected = src.read(window=Window(col, row, width, height))
            assert np.array_equal(reader.window(*box), expected) and np.array_equal(bbox_slice(co, box).get(), expected), box
    co.close()


def tiles_met(windows: list[Box], tile: int) -> tuple[int, int]:
    """Tiles the windows meet: counted once per window, and distinct."""
    per_window = [
        {(r, c) for r in range(row // tile, (row + h - 1) // tile + 1) for c in range(col // tile, (col + w - 1) // tile + 1)}
        for row, col, h, w in windows
    ]
    return sum(map(len, per_window)), len(set().union(*per_window))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=6144)
    parser.add_argument("--slices", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--windows", type=int, default=300)
    parser.add_argument("--parts", default="index,tiles,windows", help="comma-separated: index, tiles, windows")
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    parts = set(args.parts.split(","))

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
        windows = random_windows(args.size, args.windows)
        if "windows" in parts:
            check_windows(path, windows)
        runs: dict[str, list[float]] = {name: [] for name in ("read", "threaded", "index", "tiles", "w_rasterio", "w_reader", "w_slices")}
        for _ in range(args.repeat):  # contenders in turn, so a drift in the machine's speed hits each pair alike
            if parts & {"index", "tiles"}:
                t_read, total = timed(lambda: read_all(path))
                t_threaded, _ = timed(lambda: read_all(path, "ALL_CPUS"))
                runs["read"].append(t_read)
                runs["threaded"].append(t_threaded)
            if "index" in parts:
                runs["index"].append(timed(lambda: co.preprocess(force=True, progress=False))[0])
            if "tiles" in parts:
                t_tiles, got = timed(lambda: sum(pool.map(pixels, slices)))
                assert got == total, (got, total)
                runs["tiles"].append(t_tiles)
            if "windows" in parts:
                t_anchor, expected = timed(lambda: windows_rasterio(path, windows))
                t_reader, (found, decoded) = timed(lambda: windows_reader(path, windows))
                t_slices, sliced = timed(lambda: windows_slices(path, windows))
                assert found == sliced == expected, (found, sliced, expected)
                for name, t in zip(("w_rasterio", "w_reader", "w_slices"), (t_anchor, t_reader, t_slices)):
                    runs[name].append(t)
        levels = co.attributes.levels
    load_after = os.getloadavg()

    def ratio(name: str, base: str) -> float:
        return float(np.median(np.array(runs[name]) / np.array(runs[base])))

    med = {name: float(np.median(times)) for name, times in runs.items() if times}
    print(f"COG benchmark: {args.size} x {args.size} x 3 uint16, deflate + predictor, {size / 1e6:.0f} MB, {levels} levels")
    print(f"median of {args.repeat} rounds; a ratio is the median of the rounds' ratios")
    print(
        f"load average before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}"
    )
    print(f"COG written in {t_gen:.1f} s")
    if parts & {"index", "tiles"}:
        print(f"  rasterio full read (GDAL default, 1 thread)       {med['read']:7.3f} s")
        print(f"  rasterio full read, NUM_THREADS=ALL_CPUS          {med['threaded']:7.3f} s")
    if "index" in parts:
        print(
            f"  index pass                                        {med['index']:7.3f} s   ÷ rasterio read = {ratio('index', 'read'):.4f}"
            f"   ({requests} request, {index_bytes:,} bytes)"
        )
    if "tiles" in parts:
        print(
            f"  all tiles, {args.slices} slices on {args.workers} processes            {med['tiles']:7.3f} s   ÷ rasterio read = {ratio('tiles', 'read'):.2f}"
            f"   ÷ threaded read = {ratio('tiles', 'threaded'):.2f}"
        )
    if "windows" in parts:
        uses, distinct = tiles_met(windows, 512)
        print(
            f"  {len(windows)} windows of 128-1024 px, each contender opening the file once per pass: {uses:,} tile uses, {distinct} distinct tiles"
        )
        print(f"  rasterio window reads, one open dataset           {med['w_rasterio']:7.3f} s")
        print(
            f"  co.reader().window(...)                           {med['w_reader']:7.3f} s   ÷ rasterio = {ratio('w_reader', 'w_rasterio'):.2f}   ({decoded} tiles decoded)"
        )
        print(f"  a partition_bbox slice per window, get()          {med['w_slices']:7.3f} s   ÷ rasterio = {ratio('w_slices', 'w_rasterio'):.2f}")
    print(f"  sidecar {sidecar:,} bytes ÷ object = {100 * sidecar / size:.4f} %")


if __name__ == "__main__":
    main()
