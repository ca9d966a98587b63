"""COG / GeoTIFF: pixels equal to rasterio's windowed reads at every level, every pixel in exactly one slice,
dumped slices that rasterio reads back, bad input named, and the conformance kit. TIFFs are written by
rasterio (GDAL) in the test, and by tifffile for the kit's samples: without rasterio, the kit still runs on
those (tifffile is then the oracle) and the tests that need GDAL skip."""

from __future__ import annotations

import io
import multiprocessing
import pickle
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

tifffile = pytest.importorskip("tifffile")
pytest.importorskip("imagecodecs")

try:
    import rasterio
    from affine import Affine
    from rasterio.windows import Window
except ImportError:  # the tests that need GDAL skip (write_tiff); the conformance kit reads with tifffile
    rasterio = None

from dataplug import CloudObject, DataplugError, InvalidFormatError, StaleIndexError, StrategyArgumentError
from dataplug.formats.geospatial.cog import (
    COG,
    CloudOptimizedGeoTiff,
    _rectangles,
    grid_partition_strategy,
    partition_bbox,
    partition_tiles,
)
from dataplug.storage.object import read_stats
from dataplug.testing import FormatTests

ORIGIN = (500000.0, 4600000.0)
PIXEL = 10.0


def raster(dtype: str, bands: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """Seeded pixels with structure (so JPEG/WebP behave as on images) and noise (so nothing is constant)."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:height, 0:width]
    smooth = (np.sin(rows / 17.0) + np.cos(cols / 23.0) + 2) / 4
    out = np.empty((bands, height, width), dtype=np.float64)
    for b in range(bands):
        out[b] = smooth * (0.6 + 0.1 * b) + 0.2 * rng.random((height, width))
    if np.dtype(dtype).kind == "f":
        return (out * 1000 - 300).astype(dtype)
    info = np.iinfo(dtype)
    span = min(float(info.max) - float(info.min), 60000.0)
    return (out * span + max(float(info.min), -30000.0)).astype(dtype)


def write_tiff(path: Path, data: np.ndarray, driver: str = "COG", crs: str | None = "EPSG:32631", overviews: tuple[int, ...] = (), **options) -> Path:
    """A GeoTIFF of ``data`` written by rasterio; ``overviews`` are built after the image (GTiff)."""
    if rasterio is None:
        pytest.skip("writing this GeoTIFF needs rasterio (GDAL)")
    bands, height, width = data.shape
    profile = dict(driver=driver, width=width, height=height, count=bands, dtype=data.dtype.name, **options)
    if crs:
        profile.update(crs=crs, transform=Affine(PIXEL, 0.0, ORIGIN[0], 0.0, -PIXEL, ORIGIN[1]))
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if overviews:
            dst.build_overviews(list(overviews), rasterio.enums.Resampling.average)
    return path


def reference(path: Path, level: int, window: tuple[int, int, int, int]) -> np.ndarray:
    """rasterio's windowed read of ``window`` (col_off, row_off, width, height) at ``level`` (0: full)."""
    with rasterio.open(path, overview_level=level - 1 if level else None) as src:
        return src.read(window=Window(*window))


def levels_of(path: Path) -> list[np.ndarray]:
    """Every level's pixels as rasterio reads them."""
    with rasterio.open(path) as src:
        count = len(src.overviews(1))
    out = []
    for level in range(count + 1):
        with rasterio.open(path, overview_level=level - 1 if level else None) as src:
            out.append(src.read())
    return out


def indexed(store, path: Path, name: str | None = None) -> CloudObject:
    url = store.put(name or path.name, path.read_bytes())
    return CloudObject.from_url(COG, url, storage_options=store.options).preprocess(progress=False)


def check_exactly_once(slices, full: np.ndarray) -> None:
    """Every pixel of ``full`` in exactly one slice, each slice's pixels equal to ``full`` at its window."""
    cover = np.zeros(full.shape[1:], dtype=np.int32)
    for piece in slices:
        col_off, row_off, width, height = piece.window
        cover[row_off : row_off + height, col_off : col_off + width] += 1
        got = piece.get()
        assert got.shape == (full.shape[0], height, width)
        np.testing.assert_array_equal(got, full[:, row_off : row_off + height, col_off : col_off + width])
    assert (cover == 1).all()


CASES = [
    ("uint8", "deflate", {}),
    ("uint8", "jpeg", {}),
    ("uint8", "jpeg", {"bands": 1}),
    ("uint8", "webp", {}),
    ("uint16", "lzw", {"predictor": 2}),
    ("int16", "zstd", {"predictor": 2}),
    ("float32", "deflate", {"predictor": 3}),
    ("float32", "lzw", {"predictor": 2}),
    ("float32", "none", {}),
    ("int16", "packbits", {}),
    ("uint16", "lzma", {}),
]


@pytest.mark.parametrize("dtype,compress,extra", CASES, ids=[f"{d}-{c}-{e.get('predictor', 1)}-{e.get('bands', 3)}" for d, c, e in CASES])
def test_cog_pixels_match_rasterio(store, tmp_path, dtype, compress, extra):
    options = dict(extra)
    bands = options.pop("bands", 3)
    data = raster(dtype, bands, 300, 420, seed=len(compress))
    path = write_tiff(tmp_path / f"{dtype}-{compress}.tif", data, compress=compress, blocksize=128, **options)
    co = indexed(store, path)
    a = co.attributes
    levels = levels_of(path)
    assert (a.height, a.width, a.bands, a.dtype, a.levels) == (300, 420, bands, dtype, len(levels)) and a.levels >= 3
    if compress == "jpeg" and bands == 3:
        # YCbCr: chroma upsampling is the decoder's choice. imagecodecs (libjpeg-turbo) agrees with tifffile;
        # the rasterio wheels' GDAL uses IJG libjpeg 9 (DCT-scaled upsampling), a few levels apart.
        tiff_levels = [np.moveaxis(tifffile.imread(path, level=i), -1, 0) for i in range(len(levels))]
        for ours, theirs in zip(tiff_levels, levels):
            diff = np.abs(ours.astype(np.int16) - theirs)
            assert diff.max() <= 24 and diff.mean() < 1.5
        levels = tiff_levels
    assert a.compression == (compress,) * a.levels and a.crs == "EPSG:32631"
    assert a.transform == (PIXEL, 0.0, ORIGIN[0], 0.0, -PIXEL, ORIGIN[1])
    assert [lv.shape[1:] for lv in levels] == list(a.level_shapes)
    for level, full in enumerate(levels):
        for n in (1, 5):
            check_exactly_once(co.partition(partition_tiles, n, level=level), full)
    with rasterio.open(path, overview_level=0) as src:
        transform = tuple(src.transform)[:6]
    assert co.partition(partition_tiles, 1, level=1)[0].transform == pytest.approx(transform)


def test_index_pass_reads_only_the_header(tmp_path, local_store):
    path = write_tiff(tmp_path / "a.tif", raster("uint16", 2, 1000, 1200), compress="deflate", blocksize=128)
    read_stats.reset()
    co = indexed(local_store, path)
    assert read_stats.requests[co.url] == 1 and read_stats.bytes[co.url] <= 64 * 1024
    read_stats.reset()
    piece = co.partition(partition_tiles, 16)[5]
    assert read_stats.requests[co.url] == 1  # the level's tile tables in the IFD, to check the index's
    read_stats.reset()
    piece.get()
    assert read_stats.requests[co.url] == len({t[1] for t in piece.tiles})  # a range per row of tiles (merged)
    assert read_stats.bytes[co.url] <= sum(t[4] for t in piece.tiles) + 8 * len(piece.tiles)


def test_gtiff_with_overviews_planar_and_sparse(tmp_path, local_store):
    """Overviews appended after the image, band-interleaved tiles, a nodata value and tiles never written."""
    data = raster("int16", 3, 333, 517, seed=3)
    data[:, 130:, 200:] = -9999
    path = write_tiff(
        tmp_path / "g.tif",
        data,
        driver="GTiff",
        overviews=(2, 4, 8),
        tiled=True,
        blockxsize=64,
        blockysize=48,
        compress="deflate",
        interleave="band",
        nodata=-9999,
        sparse_ok=True,
    )
    co = indexed(local_store, path)
    a = co.attributes
    assert a.planar_config == 2 and a.nodata == "-9999" and a.levels == 4
    assert (co.index().tables["bytecounts_0"] == 0).any()
    for level, full in enumerate(levels_of(path)):
        check_exactly_once(co.partition(partition_tiles, 7, level=level), full)
    # a slice of tiles that were never written reads no byte, yet has pixels (nodata): an empty span, not None
    sparse = [s for s in co.partition(partition_tiles, 200) if s.num_records and all(t[4] == 0 for t in s.tiles)]
    assert sparse and all(s.byte_range() == (0, 0) for s in sparse)
    assert all((s.get() == -9999).all() and s.to_arrow().num_rows == s.num_records for s in sparse[:3])


@pytest.mark.parametrize("interleave", ["pixel", "band"])
def test_striped_tiff_reads_as_bands_of_strips(tmp_path, local_store, interleave):
    data = raster("uint16", 2, 101, 77, seed=5)
    path = write_tiff(tmp_path / "s.tif", data, driver="GTiff", tiled=False, blockysize=7, compress="lzw", interleave=interleave)
    co = indexed(local_store, path)
    assert co.attributes.tiled == (False,) and co.attributes.tile_shapes == ((7, 77),)
    for n in (1, 2, 5, 15, 40):
        slices = co.partition(partition_tiles, n)
        assert all(s.window[0] == 0 and s.window[2] == 77 for s in slices if s.window[3])
        check_exactly_once(slices, data)


def test_big_endian_float_predictor(tmp_path, local_store):
    data = raster("float32", 1, 90, 130, seed=7)
    data[0, 0, :5] = [np.nan, np.inf, -0.0, 1e-38, -1e38]
    path = write_tiff(
        tmp_path / "be.tif", data, driver="GTiff", tiled=True, blockxsize=32, blockysize=32, compress="deflate", predictor=3, endianness="big"
    )
    co = indexed(local_store, path)
    assert co.attributes.byteorder == ">"
    for n in (1, 4):
        check_exactly_once(co.partition(partition_tiles, n), levels_of(path)[0])


@pytest.mark.filterwarnings("ignore:Dataset has no geotransform")
def test_georeferencing(tmp_path, local_store):
    geographic = write_tiff(tmp_path / "geo.tif", raster("uint8", 1, 40, 60), crs="EPSG:4326", compress="deflate")
    assert indexed(local_store, geographic).attributes.crs == "EPSG:4326"
    bare = write_tiff(tmp_path / "bare.tif", raster("uint8", 1, 40, 60), crs=None, compress="deflate")
    co = indexed(local_store, bare)
    assert co.attributes.crs is None and co.attributes.transform is None
    assert co.partition(partition_tiles, 1)[0].transform is None
    with pytest.raises(StrategyArgumentError, match="georeferenced"):
        co.partition(partition_bbox, 0, 0, 1, 1)
    point = write_tiff(tmp_path / "point.tif", raster("uint8", 1, 40, 60), driver="GTiff", compress="deflate")
    with rasterio.open(point, "r+") as dst:
        dst.update_tags(AREA_OR_POINT="Point")
    with rasterio.open(point) as src:
        expected = tuple(src.transform)[:6]
    assert indexed(local_store, point, "point2.tif").attributes.transform == pytest.approx(expected)


def test_partition_bbox(tmp_path, local_store):
    data = raster("uint16", 2, 200, 300, seed=9)
    path = write_tiff(tmp_path / "b.tif", data, compress="zstd", blocksize=128)
    co = indexed(local_store, path)
    x0, y0 = ORIGIN
    # edges on pixel edges: exactly those pixels (window in rasterio's order: col_off, row_off, width, height)
    piece = co.partition(partition_bbox, x0 + 100, y0 - 500, x0 + 250, y0 - 300)[0]
    assert piece.window == (10, 30, 15, 20) and piece.bounds == (x0 + 100, y0 - 500, x0 + 250, y0 - 300)
    np.testing.assert_array_equal(piece.get(), reference(path, 0, piece.window))
    # edges inside pixels: the pixels whose centre is inside; overview level (20 m pixels) in its own pixels
    piece = co.partition(partition_bbox, x0 + 105, y0 - 505, x0 + 251, y0 - 295, level=1)[0]
    assert piece.window == (5, 15, 8, 10) and piece.num_records == 80
    np.testing.assert_array_equal(piece.get(), reference(path, 1, piece.window))
    # cut at the raster's edge, or empty outside it
    piece = co.partition(partition_bbox, x0 - 1e6, y0 - 1e6, x0 + 1e6, y0 + 1e6)[0]
    assert piece.window == (0, 0, 300, 200)
    empty = co.partition(partition_bbox, x0 + 1e6, y0, x0 + 2e6, y0 + 10)[0]
    assert empty.get().shape[1:] == (0, 0) and empty.tiles == () and empty.num_records == 0 and empty.byte_range() is None
    with pytest.raises(StrategyArgumentError):
        co.partition(partition_bbox, 10, 0, 0, 10)


def test_adjacent_boxes_share_no_pixel(tmp_path, local_store):
    """Boxes cut inside pixels (at 1/4 and 3/4 of a pixel) and at a pixel's centre: every pixel in exactly one."""
    data = raster("uint8", 1, 60, 90, seed=19)
    co = indexed(local_store, write_tiff(tmp_path / "adj.tif", data, compress="deflate", blocksize=32))
    x0, y0 = ORIGIN
    xs, ys = [x0, x0 + 302.5, x0 + 455, x0 + 900], [y0 - 600, y0 - 207.5, y0]
    cover = np.zeros(data.shape[1:], dtype=np.int32)
    for xa, xb in zip(xs, xs[1:]):
        for ya, yb in zip(ys, ys[1:]):
            piece = co.partition(partition_bbox, xa, ya, xb, yb)[0]
            col_off, row_off, width, height = piece.window
            cover[row_off : row_off + height, col_off : col_off + width] += 1
            assert piece.num_records == piece.to_arrow().num_rows == width * height
    assert (cover == 1).all()


def test_grid_strategy_and_original_names(tmp_path, local_store):
    data = raster("uint8", 1, 130, 190, seed=11)
    path = write_tiff(tmp_path / "o.tif", data, compress="deflate", blocksize=128)
    co = indexed(local_store, path)
    assert CloudOptimizedGeoTiff is COG and CloudObject.from_url("cog", co.url).format is COG
    for n in (1, 2, 3, 5):
        slices = co.partition(grid_partition_strategy, n)
        assert len(slices) == n * n
        check_exactly_once(slices, data)


def test_slices_are_small_fragments(tmp_path, s3_store):
    data = raster("int16", 2, 150, 170, seed=13)
    path = write_tiff(tmp_path / "f.tif", data, compress="deflate", blocksize=128)
    co = indexed(s3_store, path)
    slices = co.partition(partition_tiles, 4)
    assert max(len(pickle.dumps(s)) for s in slices) < 2048
    piece = pickle.loads(pickle.dumps(slices[3]))
    table = piece.to_arrow()
    assert table.schema == piece.schema() and table.column_names == ["row", "col", "band_1", "band_2"]
    col_off, row_off, width, height = piece.window
    assert table.num_rows == height * width == piece.num_records
    frame = piece.to_pandas(columns=["row", "col", "band_2"])
    first = frame.iloc[width + 1]
    assert (first["row"], first["col"]) == (row_off + 1, col_off + 1)
    assert first["band_2"] == data[1, row_off + 1, col_off + 1]


class _Pipe:
    """A write-only, unseekable binary stream (a shell pipe)."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> int:
        self.data += data
        return len(data)

    def seekable(self) -> bool:
        return False


DUMP_CASES = {
    "cog-overview": dict(dtype="uint16", driver="COG", compress="deflate", blocksize=64, level=1),
    "planar-nodata": dict(dtype="int16", driver="GTiff", tiled=True, blockxsize=64, blockysize=32, interleave="band", nodata=-9999),
    "float-geographic": dict(dtype="float32", crs="EPSG:4326", driver="COG", compress="zstd", blocksize=128, nodata=-3.5),
    "point-big-endian": dict(dtype="uint8", driver="GTiff", tiled=True, blockxsize=32, blockysize=32, endianness="big", point=True, bands=1),
    "rgb-jpeg": dict(dtype="uint8", driver="COG", compress="jpeg", blocksize=128, bands=3),
}


@pytest.mark.filterwarnings("ignore:Dataset has no geotransform")
@pytest.mark.parametrize("case", list(DUMP_CASES) + ["bare"])
def test_dump_writes_a_geotiff_rasterio_reads(tmp_path, local_store, case):
    """Each slice's dump opens in rasterio with the slice's pixels, bands, data type, nodata, CRS and the
    window's transform (rasterio's own window_transform of the source); to a pipe as to a file."""
    options = dict(DUMP_CASES.get(case, dict(dtype="uint16", driver="GTiff", crs=None)))
    dtype, level, bands = options.pop("dtype"), options.pop("level", 0), options.pop("bands", 2)
    point, crs = options.pop("point", False), options.pop("crs", "EPSG:32631")
    path = write_tiff(tmp_path / f"{case}.tif", raster(dtype, bands, 230, 310, seed=21), crs=crs, **options)
    if point:
        with rasterio.open(path, "r+") as dst:
            dst.update_tags(AREA_OR_POINT="Point")
    co = indexed(local_store, path)
    slices = co.partition(partition_tiles, 5, level=level)
    with rasterio.open(path, overview_level=level - 1 if level else None) as src:
        source = (src.crs, src.nodata, src.dtypes, src.count)
        transforms = [src.window_transform(Window(*s.window)) if crs else Affine.identity() for s in slices]
    assert all(s.num_records for s in slices)
    for piece, transform in zip(slices, transforms):
        out = tmp_path / f"{case}-{piece.number}.tif"
        with open(out, "wb") as fp:
            piece.dump(fp)
        pipe = _Pipe()
        piece.dump(pipe)
        assert bytes(pipe.data) == out.read_bytes()
        with rasterio.open(out) as got:
            assert (got.crs, got.nodata, got.dtypes, got.count) == source
            assert got.transform.almost_equals(transform) and (got.width, got.height) == piece.window[2:]
            np.testing.assert_array_equal(got.read(), piece.get())
            if point:
                assert got.tags()["AREA_OR_POINT"] == "Point"
    assert CloudObject.from_url(COG, co.url).partition(partition_tiles, 1)[0].binary_output


def test_num_records_and_byte_range(tmp_path, local_store):
    """num_records is the window's pixels (to_arrow's rows); byte_range spans exactly the tiles read, and a
    slice's reads stay inside it."""
    data = raster("uint16", 2, 333, 517, seed=23)
    co = indexed(local_store, write_tiff(tmp_path / "n.tif", data, compress="deflate", blocksize=128))
    tiles = co.attributes.level_shapes[0]
    slices = co.partition(partition_tiles, 24 + 3)  # 3 x 5 = 15 tiles: the last 12 slices are empty
    assert sum(s.num_records for s in slices) == tiles[0] * tiles[1]
    for piece in slices:
        assert piece.num_records == piece.to_arrow().num_rows == piece.window[2] * piece.window[3]
        if not piece.num_records:
            assert piece.byte_range() is None
            continue
        start, end = piece.byte_range()
        assert start == min(t[3] for t in piece.tiles) and end == max(t[3] + t[4] for t in piece.tiles)
        raw = Path(co.url).read_bytes()[start:end]
        assert all(Path(co.url).read_bytes()[t[3] : t[3] + t[4]] in raw for t in piece.tiles)


def test_empty_slice_dump_is_refused(tmp_path, local_store):
    co = indexed(local_store, write_tiff(tmp_path / "e.tif", raster("uint8", 1, 40, 40), compress="deflate", blocksize=128))
    empty = co.partition(partition_tiles, 2)[1]
    with pytest.raises(DataplugError, match="empty window"):
        empty.dump(_Pipe())


def _get(piece):
    return piece.get()


def test_slices_read_on_a_spawned_process_pool(tmp_path, s3_store):
    data = raster("uint16", 2, 300, 260, seed=15)
    path = write_tiff(tmp_path / "p.tif", data, compress="zstd", predictor=2, blocksize=128)
    slices = indexed(s3_store, path).partition(partition_tiles, 5)
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        parts = list(pool.map(_get, slices))
    for piece, got in zip(slices, parts):
        col_off, row_off, width, height = piece.window
        np.testing.assert_array_equal(got, data[:, row_off : row_off + height, col_off : col_off + width])


def test_bad_input_is_named(tmp_path, local_store):
    with pytest.raises(InvalidFormatError, match="not a readable TIFF"):
        indexed(local_store, _write(tmp_path / "x.tif", b"plain text, not a TIFF" * 100))
    good = write_tiff(tmp_path / "g.tif", raster("uint8", 1, 256, 256), compress="deflate", blocksize=128)
    raw = good.read_bytes()
    with pytest.raises(InvalidFormatError):
        indexed(local_store, _write(tmp_path / "cut.tif", raw[:200]))
    with pytest.raises(InvalidFormatError, match="past the object's end"):
        indexed(local_store, _write(tmp_path / "short.tif", raw[: len(raw) - 100]))
    lerc = write_tiff(tmp_path / "lerc.tif", raster("float32", 1, 64, 64), compress="lerc")
    with pytest.raises(InvalidFormatError, match="compression 34887 is not supported"):
        indexed(local_store, lerc)
    bits = write_tiff(tmp_path / "bits.tif", raster("uint8", 1, 64, 64) % 2, driver="GTiff", nbits=1)
    with pytest.raises(InvalidFormatError, match=r"samples of \[1\] bits"):
        indexed(local_store, bits)
    # a damaged tile is an error naming the object and the tile's offset, never wrong pixels
    co = indexed(local_store, good, "damaged.tif")
    piece = co.partition(partition_tiles, 1)[0]
    offset, count = piece.tiles[0][3:]
    Path(co.url).write_bytes(raw[:offset] + b"\xff" * count + raw[offset + count :])
    co = indexed(local_store, Path(co.url), "damaged2.tif")
    with pytest.raises(InvalidFormatError, match=f"damaged2.tif.*offset {offset}"):
        co.partition(partition_tiles, 1)[0].get()


def test_strategy_arguments_and_stale_objects(tmp_path, local_store):
    path = write_tiff(tmp_path / "a.tif", raster("uint8", 1, 100, 100), compress="deflate", blocksize=128)
    co = indexed(local_store, path)
    with pytest.raises(StrategyArgumentError, match="no preprocessing option 'blockz'"):
        CloudObject.from_url(COG, co.url).preprocess(blockz=5)  # COG reads no option: a typo is refused
    for bad in ({"num_chunks": 0}, {"num_chunks": 2, "level": 9}, {"num_chunks": 2, "level": True}):
        with pytest.raises(StrategyArgumentError):
            co.partition(partition_tiles, **bad)
    piece = co.partition(partition_tiles, 1)[0]
    Path(co.url).write_bytes(Path(co.url).read_bytes() + b"x")
    with pytest.raises(StaleIndexError):
        piece.get()


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# -- every pixel exactly once, for every slice count ---------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(down=st.integers(1, 40), across=st.integers(1, 40), parts=st.integers(1, 2000), th=st.integers(1, 4), tw=st.integers(1, 4))
def test_rectangles_tile_the_grid(down, across, parts, th, tw):
    rects = _rectangles(down, across, parts, (th, tw))
    assert len(rects) == min(parts, down * across)
    cover = np.zeros((down, across), dtype=np.int32)
    for r0, r1, c0, c1 in rects:
        assert 0 <= r0 < r1 <= down and 0 <= c0 < c1 <= across
        cover[r0:r1, c0:c1] += 1
    assert (cover == 1).all()


@pytest.fixture(scope="module")
def small_tiffs(tmp_path_factory):
    """Odd-sized objects: a COG with overviews, band-interleaved tiles, and strips; with their levels' pixels."""
    root = tmp_path_factory.mktemp("cog")
    files = [
        write_tiff(root / "cog.tif", raster("uint16", 2, 333, 517, seed=1), compress="deflate", blocksize=128),
        write_tiff(
            root / "band.tif",
            raster("float32", 3, 150, 130, seed=2),
            driver="GTiff",
            tiled=True,
            blockxsize=32,
            blockysize=16,
            interleave="band",
            compress="zstd",
            overviews=(3,),
        ),
        write_tiff(root / "strips.tif", raster("int16", 1, 101, 77, seed=3), driver="GTiff", tiled=False, blockysize=4, compress="lzw"),
    ]
    out = []
    for path in files:
        co = CloudObject.from_url(COG, str(path)).preprocess(progress=False)
        out.append((co, levels_of(path)))
    return out


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_pixel_exactly_once(small_tiffs, data):
    co, levels = data.draw(st.sampled_from(small_tiffs))
    level = data.draw(st.integers(0, len(levels) - 1))
    n = data.draw(st.integers(1, 150))
    slices = co.partition(partition_tiles, n, level=level)
    assert len(slices) == n and [s.number for s in slices] == list(range(n))
    check_exactly_once(slices, levels[level])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_num_chunks_are_bands_in_row_major_order(small_tiffs, data):
    """partition_num_chunks: full-width bands top to bottom (so to_arrow rows concatenate in rasterio's read
    order), whole tile rows up to their count, one or more slices per tile row beyond, empty past the rows."""
    co, levels = data.draw(st.sampled_from(small_tiffs))
    level = data.draw(st.integers(0, len(levels) - 1))
    n = data.draw(st.integers(1, 400))
    slices = co.partition("partition_num_chunks", n, level=level)
    height, width = co.attributes.level_shapes[level]
    th = co.attributes.tile_shapes[level][0]
    assert len(slices) == n and [s.number for s in slices] == list(range(n))
    check_exactly_once(slices, levels[level])
    tops = [s.window[1] for s in slices if s.num_records]
    assert tops == sorted(tops) and all(s.window[0] == 0 and s.window[2] == width for s in slices if s.num_records)
    assert len(tops) >= min(n, -(-height // th)) and (n > height or len(tops) == n or height % th)
    if n <= -(-height // th):
        assert all(s.window[1] % th == 0 and len({t[1] for t in s.tiles}) == -(-s.window[3] // th) for s in slices)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_bbox_takes_the_pixels_meeting_the_box(small_tiffs, data):
    """partition_bbox's window holds exactly the pixels whose centre lies in the half-open box."""
    co, levels = small_tiffs[0]
    level = data.draw(st.integers(0, len(levels) - 1))
    quarter = st.integers(-400, 24000).map(lambda q: q / 4)
    xs, ys = sorted(data.draw(st.tuples(quarter, quarter))), sorted(data.draw(st.tuples(quarter, quarter)))
    if xs[0] == xs[1] or ys[0] == ys[1]:
        return
    x0, y0 = ORIGIN
    piece = co.partition(partition_bbox, x0 + xs[0], y0 - ys[1], x0 + xs[1], y0 - ys[0], level=level)[0]
    height, width = co.attributes.level_shapes[level]
    step = PIXEL * (co.attributes.width / width), -PIXEL * (co.attributes.height / height)
    cols = [c for c in range(width) if x0 + xs[0] <= x0 + step[0] * (c + 0.5) < x0 + xs[1]]
    rows = [r for r in range(height) if y0 - ys[1] <= y0 + step[1] * (r + 0.5) < y0 - ys[0]]
    col_off, row_off, w, h = piece.window
    if rows and cols:
        assert (row_off, col_off, h, w) == (rows[0], cols[0], len(rows), len(cols))
        np.testing.assert_array_equal(piece.get(), levels[level][:, row_off : row_off + h, col_off : col_off + w])
    else:
        assert h == w == 0 and piece.get().size == 0


# -- a COG larger than every internal buffer, at default settings -------------------------------------------


@pytest.fixture(scope="session")
def large_cog(tmp_path_factory):
    """A 3-band uint16 COG of 4608 x 4608 pixels (>= 64 MiB on disk): deflate at level 1 on noisy pixels."""
    rng = np.random.default_rng(2024)
    height = width = 4608
    data = np.empty((3, height, width), dtype=np.uint16)
    for b in range(3):
        data[b] = rng.integers(0, 2**14, (height, width), dtype=np.uint16) + b * 1000
    path = tmp_path_factory.mktemp("large-cog") / "large.tif"
    write_tiff(path, data, compress="deflate", level=1, num_threads="all_cpus")
    assert path.stat().st_size >= 64 * 2**20
    return path, data


@pytest.mark.slow
def test_large_cog_at_default_settings(large_cog):
    path, data = large_cog
    read_stats.reset()
    co = CloudObject.from_url(COG, str(path)).preprocess(progress=False)
    assert read_stats.requests[co.url] <= 2
    assert co.attributes.levels >= 4 and co.attributes.tile_shapes[0] == (512, 512)
    for n in (1, 7, 16):
        slices = co.partition(partition_tiles, n)
        cover = np.zeros(data.shape[1:], dtype=np.uint8)
        for piece in slices:
            col_off, row_off, width, height = piece.window
            cover[row_off : row_off + height, col_off : col_off + width] += 1
            assert np.array_equal(piece.get(), data[:, row_off : row_off + height, col_off : col_off + width])
        assert (cover == 1).all()
    smallest = co.attributes.levels - 1
    check_exactly_once(co.partition(partition_tiles, 3, level=smallest), levels_of(path)[smallest])
    # a reader at its default cache keeps every tile of the full resolution: overlapping windows decode each once
    windows = reader_windows(data.shape[1:], 40, seed=2025, largest=1024)[1:]
    distinct = {(r, c) for r0, c0, h, w in windows for r in range(r0 // 512, (r0 + h - 1) // 512 + 1) for c in range(c0 // 512, (c0 + w - 1) // 512 + 1)}
    with co.reader() as r:
        for row_off, col_off, height, width in windows:
            assert np.array_equal(r.window(row_off, col_off, height, width), data[:, row_off : row_off + height, col_off : col_off + width])
        assert r.decodes == len(distinct)


def test_bigtiff(tmp_path, local_store):
    data = raster("uint16", 2, 140, 150, seed=17)
    path = write_tiff(tmp_path / "big.tif", data, compress="deflate", blocksize=128, bigtiff="yes")
    assert path.read_bytes()[2:4] == b"\x2b\x00"  # BigTIFF's version 43
    co = indexed(local_store, path)
    for level, full in enumerate(levels_of(path)):
        check_exactly_once(co.partition(partition_tiles, 3, level=level), full)


# -- the long-lived reader: windows through the LRU of decoded tiles ------------------------------------------


def reader_windows(shape: tuple[int, int], count: int, seed: int, largest: int = 300) -> list[tuple[int, int, int, int]]:
    """Windows ``(row_off, col_off, height, width)`` of a level of ``shape``: the whole level, its four corner
    pixels, a strip along its right and its bottom edge, and ``count`` seeded random ones (overlapping)."""
    height, width = shape
    rng = np.random.default_rng(seed)
    out = [(0, 0, height, width), (0, 0, 1, 1), (height - 1, width - 1, 1, 1), (0, width - 1, 1, 1), (height - 1, 0, 1, 1)]
    out += [(0, width - 7, height, 7), (height - 5, 0, 5, width)]
    for _ in range(count):
        h, w = (int(v) for v in rng.integers(1, np.minimum(largest, shape) + 1))
        out.append((int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w))
    return out


def reader_cases(tmp_path: Path) -> list[Path]:
    """A COG with overviews (pixel-interleaved, deflate and predictor), and a big-endian GTiff with band-
    interleaved tiles, overviews, a nodata value and tiles never written."""
    cog = write_tiff(tmp_path / "r.tif", raster("uint16", 3, 700, 900, seed=21), compress="deflate", predictor=2, blocksize=128)
    data = raster("int16", 2, 333, 517, seed=22)
    data[:, 130:, 200:] = -9999
    gtiff = write_tiff(
        tmp_path / "rb.tif",
        data,
        driver="GTiff",
        overviews=(2, 4),
        tiled=True,
        blockxsize=64,
        blockysize=48,
        compress="deflate",
        predictor=2,
        interleave="band",
        endianness="big",
        nodata=-9999,
        sparse_ok=True,
    )
    return [cog, gtiff]


def test_reader_windows_match_rasterio(tmp_path, local_store):
    """Windows of every level, edges and corners included, equal rasterio's windowed reads, native and contiguous."""
    for path in reader_cases(tmp_path):
        co = indexed(local_store, path)
        assert co.attributes.levels >= 3
        with co.reader() as r:
            for level, full in enumerate(levels_of(path)):
                for row_off, col_off, height, width in reader_windows(full.shape[1:], 12, seed=level):
                    got = r.window(row_off, col_off, height, width, level=level)
                    assert got.dtype == full.dtype and got.dtype.isnative and got.flags.c_contiguous
                    np.testing.assert_array_equal(got, full[:, row_off : row_off + height, col_off : col_off + width])
            assert r.window(5, 5, 0, 3).shape == (co.attributes.bands, 0, 3)
    sparse = indexed(local_store, path)
    assert (sparse.index().tables["bytecounts_0"] == 0).any() and sparse.attributes.byteorder == ">"


def test_reader_decodes_each_tile_once(tmp_path, local_store):
    """Overlapping windows decode each tile once, fetch the tiles a window misses in one planned call, read
    nothing the second time, and hand out arrays of their own (writing to one leaves the cache intact)."""
    path = write_tiff(tmp_path / "o.tif", raster("uint16", 3, 600, 700, seed=23), compress="deflate", predictor=2, blocksize=128)
    co = indexed(local_store, path)
    full = levels_of(path)[0]
    windows = reader_windows((600, 700), 40, seed=24, largest=260)[7:]
    per_window = [{(r, c) for r in range(r0 // 128, (r0 + h - 1) // 128 + 1) for c in range(c0 // 128, (c0 + w - 1) // 128 + 1)} for r0, c0, h, w in windows]
    touched = set().union(*per_window)
    assert sum(map(len, per_window)) > 2 * len(touched)  # the windows overlap: most tile uses are repeats
    with co.reader() as r:
        r.window(0, 0, 0, 0)  # the level's tables, checked against the TIFF's (one read)
        calls: list[int] = []
        read_ranges = r.read_ranges
        r.read_ranges = lambda ranges: calls.append(len(ranges)) or read_ranges(ranges)
        got = [r.window(*w) for w in windows]
        assert r.decodes == len(touched) and sum(calls) == len(touched) and len(calls) <= len(windows)
        for (row_off, col_off, height, width), pixels in zip(windows, got):
            np.testing.assert_array_equal(pixels, full[:, row_off : row_off + height, col_off : col_off + width])
        got[0][:] = 0
        read_stats.reset()
        fetches = len(calls)
        again = [r.window(*w) for w in windows]
        assert r.decodes == len(touched) and len(calls) == fetches and read_stats.requests.get(co.url, 0) == 0
        row_off, col_off, height, width = windows[0]
        np.testing.assert_array_equal(again[0], full[:, row_off : row_off + height, col_off : col_off + width])


def test_reader_refuses_a_changed_object(tmp_path, store):
    """An object replaced while a reader is open is refused: locally on the next call (``check_interval=0``)
    even when its tiles are all in the cache; on S3 by the next request, pinned to the indexed object."""
    path = write_tiff(tmp_path / "c.tif", raster("uint8", 1, 300, 300, seed=25), compress="deflate", blocksize=128)
    co = indexed(store, path)
    other = write_tiff(tmp_path / "c2.tif", raster("uint8", 1, 300, 300, seed=26), compress="deflate", blocksize=128).read_bytes()
    with co.reader(check_interval=0) as r:
        r.window(0, 0, 100, 100)
        store.put(path.name, other)
        with pytest.raises(StaleIndexError):
            r.window(0, 0, 100, 100) if store.kind == "local" else r.window(200, 200, 100, 100)
    with pytest.raises(DataplugError, match="closed"):
        r.window(0, 0, 10, 10)


def test_reader_window_arguments(tmp_path, local_store):
    path = write_tiff(tmp_path / "a.tif", raster("uint8", 1, 100, 120), compress="deflate", blocksize=64)
    co = indexed(local_store, path)
    with co.reader() as r:
        for bad in ((0, 0, 101, 1), (0, 100, 1, 21), (-1, 0, 1, 1), (0, 0, 1.5, 1), (True, 0, 1, 1)):
            with pytest.raises(StrategyArgumentError, match="window"):
                r.window(*bad)
        with pytest.raises(StrategyArgumentError, match="level"):
            r.window(0, 0, 1, 1, level=co.attributes.levels)


def test_repeated_bbox_partitions_read_through_the_kept_reader(tmp_path, local_store):
    """``partition_bbox`` per box on one object checks the level's tile tables once; the slices of one
    process share the decoded tiles, so reading a box again reads nothing."""
    path = write_tiff(tmp_path / "b.tif", raster("uint16", 2, 400, 400, seed=27), compress="deflate", blocksize=128)
    co = indexed(local_store, path)
    full = levels_of(path)[0]
    x0, y1 = ORIGIN
    read_stats.reset()
    first = co.partition(partition_bbox, x0, y1 - 2000, x0 + 2000, y1)[0]
    assert read_stats.requests[co.url] == 1
    boxes = [co.partition(partition_bbox, x0 + 10 * k, y1 - 1500, x0 + 1500 + 10 * k, y1 - 10 * k)[0] for k in range(5)]
    assert read_stats.requests[co.url] == 1
    np.testing.assert_array_equal(first.get(), full[:, :200, :200])
    read_stats.reset()
    for piece in boxes:
        col_off, row_off, width, height = piece.window
        np.testing.assert_array_equal(piece.get(), full[:, row_off : row_off + height, col_off : col_off + width])
    assert read_stats.requests.get(co.url, 0) == 0  # every tile they meet was decoded for the first box


# -- the conformance kit ------------------------------------------------------------------------------------

#: GeoKeyDirectory of a projected raster in EPSG:32631 (UTM 31N), PixelIsArea, as GDAL writes it.
UTM31_KEYS = (1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, 32631)
#: Each sample's CRS and full-resolution affine (a, b, c, d, e, f), which read_dump checks a dump against.
GEO = {
    "tiles16": ("EPSG:32631", (PIXEL, 0.0, ORIGIN[0], 0.0, -PIXEL, ORIGIN[1])),
    "planarf32": ("EPSG:32631", (2.5, 0.0, 431000.0, 0.0, -2.5, 4_410_000.0)),
    "small": ("EPSG:32631", (30.0, 0.0, ORIGIN[0], 0.0, -30.0, ORIGIN[1])),
    "rasteriocog": ("EPSG:32631", (PIXEL, 0.0, ORIGIN[0], 0.0, -PIXEL, ORIGIN[1])),
    "sparse": ("EPSG:32631", (PIXEL, 0.0, ORIGIN[0], 0.0, -PIXEL, ORIGIN[1])),
}


def tifffile_geotiff(data: np.ndarray, case: str, tile: tuple[int, int], nodata: float | None, planar: str = "contig") -> bytes:
    """A tiled, deflated GeoTIFF of ``data`` (bands, rows, cols) written by tifffile with the GeoTIFF tags
    GDAL writes (pixel scale, tie point, GeoKeys, GDAL_NODATA), with the horizontal or floating-point predictor."""
    _, (a, _, c, _, e, f) = GEO[case]
    tags = [(33550, "d", 3, (a, -e, 0.0), True), (33922, "d", 6, (0.0, 0.0, 0.0, c, f, 0.0), True), (34735, "H", len(UTM31_KEYS), UTM31_KEYS, True)]
    if nodata is not None:
        tags.append((42113, "s", 0, f"{nodata:g}", True))
    image = data[0] if len(data) == 1 else data if planar == "separate" else np.moveaxis(data, 0, -1)
    out = io.BytesIO()
    tifffile.imwrite(
        out, image, photometric="minisblack", planarconfig=planar if len(data) > 1 else None, tile=tile, compression="zlib", predictor=True, metadata=None, extratags=tags
    )
    return out.getvalue()


def _pixel_records(pixels: np.ndarray, row_off: int = 0, col_off: int = 0) -> list[tuple]:
    """``(row, col, band_1, ...)`` per pixel of ``pixels`` (bands, rows, cols), in row-major order."""
    rows, cols = np.mgrid[0 : pixels.shape[1], 0 : pixels.shape[2]]
    columns = [(rows + row_off).ravel().tolist(), (cols + col_off).ravel().tolist()] + [band.ravel().tolist() for band in pixels]
    return list(zip(*columns))


def _read_pixels(path: Path) -> tuple[np.ndarray, str | None, tuple[float, ...] | None]:
    """A GeoTIFF's full-resolution pixels (bands, rows, cols), CRS and affine: rasterio's, else tifffile's
    pixels with the affine of its tie point and pixel scale (the only georeferencing the samples use)."""
    if rasterio is not None:
        with rasterio.open(path) as src:
            return src.read(), (src.crs.to_string() if src.crs else None), tuple(src.transform)[:6]
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        pixels = page.asarray()
        if pixels.ndim == 2:
            pixels = pixels[None]
        elif page.planarconfig == 1:
            pixels = np.moveaxis(pixels, -1, 0)
        scale, tie = page.tags.valueof(33550), page.tags.valueof(33922)
        keys = page.tags.valueof(34735)
    crs = f"EPSG:{int(keys[-1])}" if keys is not None and int(keys[-4]) == 3072 else None
    affine = (scale[0], 0.0, tie[3] - tie[0] * scale[0], 0.0, -scale[1], tie[4] + tie[1] * scale[1]) if scale is not None else None
    return pixels, crs, affine


class TestCOGConformance(FormatTests):
    """The conformance kit on tiled GeoTIFFs that tifffile writes (deflate with predictors, 1 to 3 bands,
    uint8, uint16 and float32 with nodata, pixel- and band-interleaved, sizes not a multiple of the tile) and,
    with rasterio, a COG that GDAL writes and a GTiff whose nodata tiles GDAL left out (``sparse_ok``). A record is a pixel, ``(row, col, band_1, ...)``, in rasterio's
    read order (row-major), which ``partition_num_chunks``' bands keep."""

    format = COG
    dump_suffix = ".tif"

    def samples(self) -> dict[str, dict[str, bytes]]:
        u16 = raster("uint16", 3, 203, 331, seed=31)
        u16[:, 150:170, 40:90] = 0
        f32 = raster("float32", 2, 150, 170, seed=32)
        f32[1, :30, :30] = -9999.0
        out = {
            "tiles16": {"tiles16.tif": tifffile_geotiff(u16, "tiles16", (48, 64), nodata=0)},
            "planarf32": {"planarf32.tif": tifffile_geotiff(f32, "planarf32", (32, 32), nodata=-9999, planar="separate")},
            "small": {"small.tif": tifffile_geotiff(raster("uint8", 1, 37, 53, seed=33), "small", (16, 16), nodata=None)},
        }
        if rasterio is not None:
            with tempfile.TemporaryDirectory() as folder:
                path = write_tiff(Path(folder) / "r.tif", raster("uint16", 2, 260, 300, seed=34), compress="deflate", predictor=2, blocksize=64, nodata=7)
                out["rasteriocog"] = {"rasteriocog.tif": path.read_bytes()}
                sparse = raster("int16", 2, 150, 170, seed=36)
                sparse[:, 60:, 90:] = -9999
                options = dict(tiled=True, blockxsize=32, blockysize=48, interleave="band", nodata=-9999, sparse_ok=True, compress="deflate")
                path = write_tiff(Path(folder) / "s.tif", sparse, driver="GTiff", **options)
                out["sparse"] = {"sparse.tif": path.read_bytes()}
        return out

    def oracle(self, path: Path) -> list[tuple]:
        return _pixel_records(_read_pixels(path)[0])

    def rows(self, table: pa.Table) -> list[tuple]:
        return list(zip(*(table[name].to_pylist() for name in table.column_names)))

    def read_dump(self, path: Path) -> list[tuple]:
        """The dump's pixels, placed in the source by its transform, after checking its CRS and that its
        affine is the source's moved by whole pixels."""
        pixels, crs, affine = _read_pixels(path)
        want_crs, (a, b, c, d, e, f) = GEO[path.name.split("-")[0]]
        assert crs == want_crs and affine is not None and affine[:2] == (a, b) and affine[3:5] == (d, e)
        col_off, row_off = (affine[2] - c) / a, (affine[5] - f) / e
        assert col_off.is_integer() and row_off.is_integer(), f"{path.name}: transform {affine} is not the source's moved by whole pixels"
        return _pixel_records(pixels, int(row_off), int(col_off))

    def large(self, folder: Path) -> tuple[str, int]:
        """A 3-band uint16 tiled GeoTIFF of 3400 x 3400 noisy pixels, uncompressed (69 MB): tifffile writes it
        in a second, and its 512-pixel tiles are what GDAL's COGs use."""
        rng = np.random.default_rng(35)
        data = rng.integers(0, 2**14, (3400, 3400, 3), dtype=np.uint16)
        tifffile.imwrite(folder / "large.tif", data, photometric="minisblack", planarconfig="contig", tile=(512, 512), metadata=None)
        return "large.tif", 3400 * 3400
