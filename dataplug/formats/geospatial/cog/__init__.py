"""Cloud-optimized GeoTIFFs (and any tiled GeoTIFF): slices of whole tiles or of a map window, at full
resolution or at any overview, read with range reads and decoded without GDAL.

Preprocessing reads only the TIFF header and IFDs (tifffile over range reads: one or two requests for a
COG). For the full resolution image and each overview (a *level*, 0 = full resolution, then by decreasing
size) the index keeps the tile offsets and byte counts as tables and, in the attributes, the tile size, the
data type, the band count, the planar configuration, the compression and predictor, the geotransform and
the CRS (``"EPSG:<code>"``). Transparency masks are left out; other full-resolution images of a multi-page
TIFF are ignored, as GDAL's main dataset ignores them.

A slice is a pixel window of one level, ``window = (col_off, row_off, width, height)`` as rasterio's
``Window``; one record is one pixel (``num_records``, a row of ``to_arrow()``). Its worker fetches the tiles
that meet the window in one ``read_ranges`` call (the storage layer joins near tiles into one request), decodes them with
imagecodecs (deflate, LZW, ZSTD, JPEG, WebP, PackBits, LZMA; horizontal and floating-point predictors) and
returns the window as a ``(bands, rows, cols)`` array, as ``rasterio``'s ``read(window=...)`` does. Tiles a
writer left out (offset and byte count 0) read as the nodata value, else 0, as in GDAL. ``dump`` writes the
window as a GeoTIFF (tifffile) with the source's GeoKeys, the window's transform and the nodata value.

Many windows in one process (a notebook, a tile server): ``co.reader()`` is a :class:`COGReader`, whose
``window(row_off, col_off, height, width, level=0)`` returns the same array with the file or session kept
open; each tile is decoded once while it stays in the reader's LRU, kept band-sequential in native byte
order, and copied straight into each window's output (``benchmarks/geospatial_cog.py --parts windows``
prints its time against rasterio's window reads). Slices read in one process share the decoded tiles of the
process's handle for their object (:func:`dataplug.reader.shared`), and the strategies check each level's
tile tables once per object (through ``co.kept_reader()``), so a ``partition_bbox`` per box stays cheap.

Strategies: ``partition_num_chunks`` (full-width bands of rows, in the raster's row-major order),
``partition_tiles`` (compact rectangles of whole tiles), ``grid_partition_strategy`` and ``partition_bbox``
(the pixels whose centre lies in a half-open box).

Partitioning (and a reader's first window of a level) checks the index's tile offsets and byte counts of
the level against the TIFF's own TileOffsets and TileByteCounts (StripOffsets, StripByteCounts), whose place
in the object the index pass records: one range read per level and reader (the two arrays of a level lie
together in GDAL's COGs and GTiffs), none in workers. A sidecar rewritten to swap, move or leave out tiles is a
:class:`~dataplug.errors.CorruptIndexError`, not wrong pixels.

A striped (non-tiled) TIFF is read too: each strip counts as a tile as wide as the image, so
``partition_tiles`` cuts it into bands of whole strips.
"""

from __future__ import annotations

import io
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar

import numpy as np
import pyarrow as pa

from dataplug.errors import CorruptIndexError, DataplugError, StrategyArgumentError
from dataplug.format import DataFormat, Detection, IndexData, PreprocessContext, Sample
from dataplug.formats.geospatial.cog.tiff import (
    COMPRESSIONS,
    DTYPES,
    MAX_TILE_BYTES,
    PREDICTORS,
    TABLE_TYPES,
    Level,
    decode_tile,
    geotiff_tags,
    read_ifds,
    tile_tables,
    write_geotiff,
)
from dataplug.reader import LRU, Reader, shared
from dataplug.slice import CloudObjectSlice
from dataplug.storage.handle import DEFAULT_CHECK_INTERVAL
from dataplug.strategies import bbox_window, even_bounds, positive_int, strategy

if TYPE_CHECKING:
    from dataplug.cloudobject import CloudObject

Transform = tuple[float, float, float, float, float, float]


@dataclass(frozen=True)
class COGAttributes:
    """What the IFDs say. Per-level tuples start with the full resolution; shapes are (rows, columns)."""

    size: int
    width: int
    height: int
    bands: int
    #: numpy name of the samples (``uint8``, ``int16``, ``float32``...), and the file's byte order (``<``/``>``).
    dtype: str
    byteorder: str
    #: 1: bands interleaved in each tile; 2: a tile per band.
    planar_config: int
    #: Affine ``(a, b, c, d, e, f)`` of the full resolution (rasterio's order), or None when not georeferenced.
    transform: Transform | None
    crs: str | None
    #: GDAL's nodata value as written in the file (``"0"``, ``"nan"``), or None.
    nodata: str | None
    levels: int
    level_shapes: tuple[tuple[int, int], ...]
    tile_shapes: tuple[tuple[int, int], ...]
    #: False for a striped level (its "tiles" are strips as wide as the image).
    tiled: tuple[bool, ...]
    compression: tuple[str, ...]
    predictor: tuple[int, ...]
    photometric: tuple[int, ...]
    extra_samples: int
    #: Per level, where its IFD keeps the tile (strip) offsets and byte counts: (position of the offsets in
    #: the object, their TIFF type, position of the byte counts, their type). Partitioning reads them there
    #: and checks the index's tables against them, so a sidecar that lies about tiles is refused.
    tile_tables: tuple[tuple[int, int, int, int], ...]


#: Bytes of decoded tiles a :class:`COGReader` keeps by default: every tile of a 4096 x 4096 raster of three
#: 16-bit bands (96 MiB) with room to spare. GDAL's block cache, which rasterio's window reads go through,
#: keeps up to 5 % of the RAM by default.
COG_CACHE_BYTES = 256 * 2**20


class COGReader(Reader):
    """``co.reader()`` of a COG: pixel windows of any level, read as rasterio reads them, with the file or
    session kept open and the identity checked as :class:`~dataplug.reader.Reader` does.

    Each tile is decoded once while it stays in the LRU (``cache_bytes``, :data:`COG_CACHE_BYTES` by default),
    kept band-sequential in native byte order, and copied straight into each window's output; the tiles a
    window misses are fetched in one planned request set. Each level's tile tables are checked against the
    TIFF's once per reader (as partitioning does). ``decodes`` counts the tiles decoded.

        with co.reader() as r:
            pixels = r.window(row_off=1024, col_off=2048, height=512, width=300)
            overview = r.window(0, 0, 256, 256, level=2)
    """

    def __init__(self, co: CloudObject, *, check_interval: float | None = DEFAULT_CHECK_INTERVAL, cache_bytes: int = COG_CACHE_BYTES) -> None:
        super().__init__(co, check_interval=check_interval, cache_bytes=cache_bytes)

    def window(self, row_off: int, col_off: int, height: int, width: int, level: int = 0) -> np.ndarray:
        """Rows ``[row_off, row_off + height)`` and columns ``[col_off, col_off + width)`` of ``level`` (0: full
        resolution, then the overviews by decreasing size) as a native-order ``(bands, height, width)`` array:
        rasterio's ``read(window=Window(col_off, row_off, width, height))`` (level ``k`` is its
        ``overview_level=k - 1``). Tiles a writer left out read as the nodata value, else 0. A window outside
        the level is a :class:`StrategyArgumentError`."""
        lt = self._level(level)
        lv = lt.layout
        values = {"row_off": row_off, "col_off": col_off, "height": height, "width": width}
        for name, value in values.items():
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise StrategyArgumentError(self.url, f"window {name} must be an integer >= 0, got {value!r}")
        row_off, col_off, height, width = int(row_off), int(col_off), int(height), int(width)
        if row_off + height > lv.height or col_off + width > lv.width:
            raise StrategyArgumentError(
                self.url,
                f"window rows [{row_off}, {row_off + height}) x columns [{col_off}, {col_off + width}) lies outside level {lt.i}'s "
                f"{lv.height} x {lv.width} pixels",
            )
        tiles = lt.tiles(row_off, col_off, height, width)
        out, decoded = _read_window(
            self.url, lv, lt.i, tiles, row_off, col_off, height, width, self.co.attributes.nodata, self.read_ranges, self.cache
        )
        if decoded:
            self.decodes += decoded
        else:
            self.check_due()  # nothing was read: the identity check that reads make, when due
        return out

    def _level(self, level: Any) -> _LevelTiles:
        """Level ``level``'s tiles, checked against the TIFF's tile tables once (one read) and kept in the memo."""
        i = _level_index(self.co, level)
        return self.memo(("cog-level", i), lambda: _level_tiles(self.co, i, self.read_ranges))


class COG(DataFormat):
    """A cloud-optimized (or any tiled or striped) GeoTIFF; no preprocessing options."""

    Attributes = COGAttributes
    #: 2: the GeoTIFF keys (``geokeys``, ``geodoubles``, ``geoascii`` tables) that dumped slices carry.
    #: 3: where each level's IFD keeps its tile tables (``tile_tables``), to check the index against them.
    index_version = 3
    options: ClassVar[dict[str, str]] = {}
    reader_class = COGReader

    sniff_priority = 30

    @classmethod
    def sniff(cls, sample: Sample) -> Detection | None:
        """A TIFF byte-order mark (classic or BigTIFF), uncompressed."""
        if sample.codec == "none" and sample.raw.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):
            return cls.detected(sample, "starts with a TIFF byte-order mark")
        return None

    @classmethod
    def preprocess(cls, ctx: PreprocessContext) -> IndexData:
        parsed = read_ifds(ctx.obj, ctx.info)
        base = parsed.levels[0]
        tables: dict[str, np.ndarray] = {}
        for i, level in enumerate(parsed.levels):
            tables[f"offsets_{i}"] = parsed.offsets[i]
            tables[f"bytecounts_{i}"] = parsed.bytecounts[i]
            if level.jpegtables:
                tables[f"jpegtables_{i}"] = np.frombuffer(level.jpegtables, dtype=np.uint8)
        tables["geokeys"], tables["geodoubles"] = parsed.geokeys, parsed.geodoubles
        tables["geoascii"] = np.frombuffer(parsed.geoascii.encode("utf-8"), dtype=np.uint8)
        attributes = COGAttributes(
            size=ctx.info.size,
            width=base.width,
            height=base.height,
            bands=base.bands,
            dtype=np.dtype(base.dtype).name,
            byteorder=parsed.byteorder,
            planar_config=base.planar,
            transform=parsed.transform,
            crs=parsed.crs,
            nodata=parsed.nodata,
            levels=len(parsed.levels),
            level_shapes=tuple((lv.height, lv.width) for lv in parsed.levels),
            tile_shapes=tuple((lv.tile_height, lv.tile_width) for lv in parsed.levels),
            tiled=tuple(lv.tiled for lv in parsed.levels),
            compression=tuple(lv.compression for lv in parsed.levels),
            predictor=tuple(lv.predictor for lv in parsed.levels),
            photometric=tuple(lv.photometric for lv in parsed.levels),
            extra_samples=base.extra_samples,
            tile_tables=tuple(parsed.tables_at),
        )
        return IndexData(attributes, tables=tables)

    @classmethod
    def validate_index(cls, url: str, attributes: Any, tables: dict[str, np.ndarray], blob_sizes: dict[str, int], size: int) -> None:
        a = attributes
        n = a.levels
        per_level = (a.level_shapes, a.tile_shapes, a.tiled, a.compression, a.predictor, a.photometric, a.tile_tables)
        ok = (
            a.size == size
            and n >= 1
            and all(len(values) == n for values in per_level)
            and a.level_shapes[0] == (a.height, a.width)
            and a.bands >= 1
            and a.dtype in DTYPES
            and a.planar_config in (1, 2)
            and a.byteorder in ("<", ">")
            and set(a.compression) <= set(COMPRESSIONS.values())
            and set(a.predictor) <= set(PREDICTORS)
            and all(min(*shape, *tile) >= 1 for shape, tile in zip(a.level_shapes, a.tile_shapes))
        )
        for i in range(n if ok else 0):
            lv = _layout(a, i, None)
            offsets, counts = tables.get(f"offsets_{i}"), tables.get(f"bytecounts_{i}")
            ok = ok and lv.tile_bytes <= MAX_TILE_BYTES and offsets is not None and counts is not None
            ok = ok and offsets.shape == counts.shape == (lv.planes * lv.tiles_down * lv.tiles_across,)
            ok = ok and bool(np.all(offsets >= 0) and np.all(counts >= 0) and np.all(offsets + counts <= size))
            at = a.tile_tables[i]
            for start, kind in (at[:2], at[2:]):
                ok = ok and kind in TABLE_TYPES and 0 <= start <= size - offsets.size * np.dtype(TABLE_TYPES[kind]).itemsize
        if not ok:
            raise CorruptIndexError(url, "COG index does not fit the object (levels, tile tables or attributes)")


#: The original Dataplug's name for this format.
CloudOptimizedGeoTiff = COG


def _layout(a: COGAttributes, i: int, jpegtables: np.ndarray | None) -> Level:
    """Level ``i``'s decoding description, from the attributes (and its JPEG tables, when it has any)."""
    (height, width), (tile_height, tile_width) = a.level_shapes[i], a.tile_shapes[i]
    return Level(
        height,
        width,
        tile_height,
        tile_width,
        a.tiled[i],
        a.bands,
        a.planar_config,
        np.dtype(a.dtype).newbyteorder(a.byteorder).str,
        a.compression[i],
        a.predictor[i],
        a.photometric[i],
        a.extra_samples,
        None if jpegtables is None else jpegtables.tobytes(),
    )


# -- slices ----------------------------------------------------------------------------------------------


@dataclass
class COGSlice(CloudObjectSlice):
    """A pixel window of one level: ``window = (col_off, row_off, width, height)`` in that level's pixels
    (rasterio's ``Window`` order). One record is one pixel.

    ``tiles`` rows are (plane, tile row, tile column, byte offset, byte count) of the tiles that meet the
    window; ``transform`` is the window's own affine (its top-left pixel at column 0, row 0); ``geokeys``,
    ``geodoubles`` and ``geoascii`` are the source's GeoTIFF keys, which :meth:`dump` writes back.
    """

    level: int
    window: tuple[int, int, int, int]
    transform: Transform | None
    crs: str | None
    layout: Level
    nodata: str | None
    tiles: tuple[tuple[int, int, int, int, int], ...]
    geokeys: tuple[int, ...] = ()
    geodoubles: tuple[float, ...] = ()
    geoascii: str = ""
    binary_output: ClassVar[bool] = True

    @property
    def num_records(self) -> int:
        """Pixels in the window (the rows of :meth:`to_arrow`)."""
        return self.window[2] * self.window[3]

    def byte_range(self) -> tuple[int, int] | None:
        """``[start, end)``: the smallest span of the object's bytes that covers every tile the slice reads;
        ``(0, 0)`` when its pixels are all in tiles the writer left out (nodata, no byte read), ``None`` for an
        empty window."""
        if not self.num_records:
            return None
        present = [(t[3], t[3] + t[4]) for t in self.tiles if t[4] > 0]
        if not present:
            return 0, 0
        return min(a for a, _ in present), max(b for _, b in present)

    @property
    def bounds(self) -> tuple[float, float, float, float] | None:
        """The window's extent in the CRS, ``(minx, miny, maxx, maxy)``; ``None`` without a geotransform.

        Half-open: the slice's pixels are those whose centre lies in ``[minx, maxx) x [miny, maxy)``, so
        slices sharing an edge share no pixel (no pixel centre lies on the raster's own edges)."""
        if self.transform is None:
            return None
        a, b, c, d, e, f = self.transform
        _, _, w, h = self.window
        xs = [c + a * col + b * row for col, row in ((0, 0), (w, 0), (0, h), (w, h))]
        ys = [f + d * col + e * row for col, row in ((0, 0), (w, 0), (0, h), (w, h))]
        return min(xs), min(ys), max(xs), max(ys)

    def get(self) -> np.ndarray:
        """The window's pixels as a ``(bands, rows, cols)`` array in native byte order.

        Read through the handle this process shares for the object (:func:`dataplug.reader.shared`): the
        slices of one object read in one process (a ``partition_bbox`` per box) keep its decoded tiles in one
        LRU, and each slice still checks the object's identity."""
        col_off, row_off, width, height = self.window
        handle = shared(self.obj, self.object_info, COG_CACHE_BYTES)
        out, decoded = _read_window(
            self.url, self.layout, self.level, self.tiles, row_off, col_off, height, width, self.nodata, handle.read_ranges, handle.cache
        )
        if not decoded:
            handle.check_due()  # every tile came from the cache: the identity check a read would have made
        return out

    def schema(self) -> pa.Schema:
        """``row`` and ``col`` (int64, pixel indices in the level) and one column per band, ``band_1``..."""
        dtype = pa.from_numpy_dtype(np.dtype(self.layout.dtype).newbyteorder("="))
        return pa.schema([("row", pa.int64()), ("col", pa.int64())] + [(f"band_{i + 1}", dtype) for i in range(self.layout.bands)])

    def to_arrow(self, columns: list[str] | None = None) -> pa.Table:
        """One row per pixel, in row-major order: its ``row`` and ``col`` in the level and its band values."""
        pixels = self.get()
        col_off, row_off, width, height = self.window
        rows, cols = np.divmod(np.arange(height * width, dtype=np.int64), max(width, 1))
        data = {"row": rows + row_off, "col": cols + col_off}
        data.update({f"band_{i + 1}": pixels[i].reshape(-1) for i in range(pixels.shape[0])})
        table = pa.table(data, schema=self.schema())
        return table if columns is None else table.select(columns)

    def dump(self, fp: BinaryIO) -> None:
        """Write the window as a GeoTIFF that GDAL (rasterio) reads back to the same pixels: its bands and
        data type, the source's CRS keys, the window's transform and the nodata value. An empty window has
        no image to write: :class:`DataplugError`."""
        if not self.num_records:
            raise DataplugError(self.url, f"slice {self.number} is an empty window {self.window}: a GeoTIFF needs at least one pixel")
        tags = geotiff_tags(self.transform, np.asarray(self.geokeys, np.uint16), np.asarray(self.geodoubles, np.float64), self.geoascii, self.nodata)
        seekable = getattr(fp, "seekable", lambda: False)()
        target: Any = fp if seekable else io.BytesIO()
        write_geotiff(target, self.get(), self.layout, tags)
        if not seekable:
            fp.write(target.getvalue())


def _read_window(
    url: str,
    lv: Level,
    level: int,
    tiles: Sequence[tuple[int, int, int, int, int]],
    row_off: int,
    col_off: int,
    height: int,
    width: int,
    nodata: str | None,
    fetch: Callable[[list[tuple[int, int]]], list[bytes]],
    cache: LRU | None,
) -> tuple[np.ndarray, int]:
    """Level ``level``'s pixels of a window as a native-order ``(bands, height, width)`` array, from the
    ``tiles`` that meet it ((plane, tile row, tile column, offset, byte count) rows, as a slice keeps them).

    Decoded tiles are looked up in ``cache`` (a reader's LRU, keyed ``("cog", level, plane, tile row, tile
    column)``; None keeps nothing); the missing ones are fetched in one ``fetch`` call (one planned request
    set), decoded once and put there. Each tile's part is copied straight into the output: tiles are kept
    band-sequential in native order, so the copy moves whole rows and nothing is converted twice. Returns
    the array and the number of tiles decoded (0: every tile came from the cache, nothing was read)."""
    dtype = np.dtype(lv.dtype).newbyteorder("=")
    fill = any(t[4] == 0 for t in tiles)
    out = np.full((lv.bands, height, width), _fill_value(nodata, dtype), dtype) if fill else np.empty((lv.bands, height, width), dtype)
    decoded: dict[tuple[int, int, int], np.ndarray] = {}
    missing = []
    for plane, tile_row, tile_col, offset, count in tiles:
        if count:
            pixels = cache.get(("cog", level, plane, tile_row, tile_col)) if cache is not None else None
            if pixels is None:
                missing.append((plane, tile_row, tile_col, offset, count))
            else:
                decoded[plane, tile_row, tile_col] = pixels
    if missing:
        for (plane, tile_row, tile_col, offset, _), data in zip(missing, fetch([(t[3], t[3] + t[4]) for t in missing])):
            pixels = decode_tile(url, lv, data, tile_row, offset)
            decoded[plane, tile_row, tile_col] = pixels
            if cache is not None:
                cache.put(("cog", level, plane, tile_row, tile_col), pixels, pixels.nbytes)
    th, tw, planar = lv.tile_height, lv.tile_width, lv.planar == 2
    bottom_edge, right_edge = row_off + height, col_off + width
    for (plane, tile_row, tile_col), pixels in decoded.items():
        r0, c0 = tile_row * th, tile_col * tw
        top, left = max(r0, row_off), max(c0, col_off)
        bottom, right = min(r0 + pixels.shape[1], bottom_edge), min(c0 + tw, right_edge)
        part = pixels[:, top - r0 : bottom - r0, left - c0 : right - c0]
        bands = slice(plane, plane + 1) if planar else slice(None)
        out[bands, top - row_off : bottom - row_off, left - col_off : right - col_off] = part
    return out, len(missing)


def _fill_value(nodata: str | None, dtype: np.dtype) -> Any:
    """GDAL's fill for tiles a writer left out: the nodata value when the type holds it, else 0."""
    try:
        value = float(nodata) if nodata is not None else 0.0
    except ValueError:
        return 0
    if dtype.kind == "f":
        return value
    info = np.iinfo(dtype)
    return int(value) if value.is_integer() and info.min <= value <= info.max else 0


# -- strategies ------------------------------------------------------------------------------------------


def _level_index(co: Any, value: Any) -> int:
    levels = co.attributes.levels
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value < levels:
        raise StrategyArgumentError(co.url, f"level must be 0 (full resolution) to {levels - 1} (smallest overview), got {value!r}")
    return int(value)


def _level_transform(a: COGAttributes, i: int) -> Transform | None:
    """A level's affine: the full resolution's, scaled by the ratio of the sizes (GDAL's overviews)."""
    if a.transform is None:
        return None
    (height, width) = a.level_shapes[i]
    sx, sy = a.width / width, a.height / height
    ta, tb, tc, td, te, tf = a.transform
    return ta * sx, tb * sy, tc, td * sx, te * sy, tf


def _window_transform(t: Transform | None, col_off: int, row_off: int) -> Transform | None:
    if t is None:
        return None
    a, b, c, d, e, f = t
    return a, b, c + a * col_off + b * row_off, d, e, f + d * col_off + e * row_off


@dataclass(frozen=True)
class _LevelTiles:
    """What reading level ``i`` needs from the index, derived once per reader (its memo): the decoding layout,
    the tile offsets and byte counts as Python lists (no NumPy call per tile), and the slices' GeoTIFF keys."""

    i: int
    layout: Level
    offsets: list[int]
    counts: list[int]
    transform: Transform | None
    geokeys: tuple[int, ...]
    geodoubles: tuple[float, ...]
    geoascii: str

    def tiles(self, row_off: int, col_off: int, height: int, width: int) -> tuple[tuple[int, int, int, int, int], ...]:
        """(plane, tile row, tile column, offset, byte count) of every tile (of every plane) that meets the window."""
        if not height or not width:
            return ()
        lv = self.layout
        th, tw, down, across = lv.tile_height, lv.tile_width, lv.tiles_down, lv.tiles_across
        rows = range(row_off // th, -(-(row_off + height) // th))
        cols = range(col_off // tw, -(-(col_off + width) // tw))
        offsets, counts = self.offsets, self.counts
        out = []
        for plane in range(lv.planes):
            for r in rows:
                base = (plane * down + r) * across
                out += [(plane, r, c, offsets[base + c], counts[base + c]) for c in cols]
        return tuple(out)


def _level_tiles(co: Any, i: int, read: Callable[[list[tuple[int, int]]], list[bytes]]) -> _LevelTiles:
    """Level ``i``'s :class:`_LevelTiles`, after checking the index's tile offsets and byte counts of that level
    against the TIFF's own arrays (one ``read``): a sidecar rewritten to point at other tiles, or to leave tiles
    out, is a :class:`CorruptIndexError` rather than wrong pixels. Tiles the writer left out are 0 in both."""
    a, tables = co.attributes, co.index().tables
    expected = (tables[f"offsets_{i}"], tables[f"bytecounts_{i}"])
    found = tile_tables(read, a.byteorder, expected[0].size, a.tile_tables[i])
    for what, tag, index_values, file_values in zip(("tile offsets", "tile byte counts"), ("Offsets", "ByteCounts"), expected, found):
        differ = np.flatnonzero(index_values != file_values)
        if differ.size:
            k = int(differ[0])
            tag = ("Tile" if a.tiled[i] else "Strip") + tag
            raise CorruptIndexError(
                co.url,
                f"the index's {what} of level {i} disagree with the TIFF's {tag} for {differ.size} of {index_values.size} tiles (first: tile {k}, "
                f"index {int(index_values[k])}, TIFF {int(file_values[k])}): the sidecar does not describe this object",
            )
    return _LevelTiles(
        i=i,
        layout=_layout(a, i, tables.get(f"jpegtables_{i}")),
        offsets=expected[0].tolist(),
        counts=expected[1].tolist(),
        transform=_level_transform(a, i),
        geokeys=tuple(int(v) for v in tables.get("geokeys", ())),
        geodoubles=tuple(float(v) for v in tables.get("geodoubles", ())),
        geoascii=bytes(tables.get("geoascii", np.zeros(0, np.uint8))).decode("utf-8", "replace"),
    )


def _checked_level(co: Any, level: Any) -> _LevelTiles:
    """Level ``level``, checked against the TIFF (:func:`_level_tiles`) once per reader the object keeps
    (``co.kept_reader()``), so repeated partitions of one object (a ``partition_bbox`` per box) read nothing."""
    return co.kept_reader()._level(level)  # type: ignore[no-any-return]


def _slice(co: Any, number: int, lt: _LevelTiles, window: tuple[int, int, int, int]) -> COGSlice:
    """The slice of level ``lt.i``'s pixels ``window``, naming the tiles (of every plane) that meet it."""
    col_off, row_off, width, height = window
    return COGSlice(
        obj=co.obj,
        object_info=co.index().object_info,
        number=number,
        level=lt.i,
        window=window,
        transform=_window_transform(lt.transform, col_off, row_off),
        crs=co.attributes.crs,
        layout=lt.layout,
        nodata=co.attributes.nodata,
        tiles=lt.tiles(row_off, col_off, height, width),
        geokeys=lt.geokeys,
        geodoubles=lt.geodoubles,
        geoascii=lt.geoascii,
    )


def _rectangles(down: int, across: int, parts: int, tile: tuple[int, int] = (1, 1)) -> list[tuple[int, int, int, int]]:
    """``min(parts, down * across)`` rectangles of tiles ``(row0, row1, col0, col1)`` tiling a grid of
    ``down`` x ``across`` tiles: a k-d split that cuts the longer side (in pixels of ``tile``) and gives
    each side a share of the parts proportional to its tiles, so cells come out compact and even."""
    if parts <= 1 or down * across <= 1:
        return [(0, down, 0, across)]
    out: list[tuple[int, int, int, int]] = []
    stack = [(0, down, 0, across, min(parts, down * across))]
    while stack:
        r0, r1, c0, c1, n = stack.pop()
        rows, cols = r1 - r0, c1 - c0
        if n == 1:
            out.append((r0, r1, c0, c1))
            continue
        by_rows = rows > 1 and (cols == 1 or rows * tile[0] >= cols * tile[1])
        length = rows if by_rows else cols
        cut = min(max(round(length * (n // 2) / n), 1), length - 1)
        width = cols if by_rows else rows
        first, second = cut * width, (length - cut) * width
        n1 = min(max(round(n * first / (first + second)), 1, n - second), n - 1, first)
        if by_rows:
            stack += [(r0 + cut, r1, c0, c1, n - n1), (r0, r0 + cut, c0, c1, n1)]
        else:
            stack += [(r0, r1, c0 + cut, c1, n - n1), (r0, r1, c0, c0 + cut, n1)]
    return out


def _tile_window(a: COGAttributes, i: int, rect: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """The pixel window ``(col_off, row_off, width, height)`` of a rectangle of tiles, cut at the level's edge."""
    (height, width), (th, tw) = a.level_shapes[i], a.tile_shapes[i]
    r0, r1, c0, c1 = rect
    top, left = r0 * th, c0 * tw
    return left, top, min(c1 * tw, width) - left, min(r1 * th, height) - top


@strategy(COG)
def partition_tiles(co: Any, num_chunks: int, level: int = 0) -> list[COGSlice]:
    """``num_chunks`` rectangles of whole tiles of ``level`` that cover it, every pixel in exactly one;
    with more slices than tiles, one tile each and the rest empty (zero-size windows)."""
    n = positive_int(co.url, "num_chunks", num_chunks)
    lt, a = _checked_level(co, level), co.attributes
    i = lt.i
    (height, width), (th, tw) = a.level_shapes[i], a.tile_shapes[i]
    rects = sorted(_rectangles(-(-height // th), -(-width // tw), n, (th, tw)))
    windows = [_tile_window(a, i, rect) for rect in rects] + [(width, height, 0, 0)] * (n - len(rects))
    return [_slice(co, number, lt, window) for number, window in enumerate(windows)]


@strategy(COG)
def partition_num_chunks(co: Any, num_chunks: int, level: int = 0) -> list[COGSlice]:
    """``num_chunks`` bands of whole rows of ``level``, top to bottom, so the slices' ``to_arrow()`` rows
    follow one another in the raster's row-major order (rasterio's ``read()`` order) whatever the count.

    Up to the number of tile rows, bands are runs of whole tile rows (each tile read once). Beyond it, each
    tile row is cut into bands of pixel rows (every band of a tile row reads that row's tiles), down to one
    pixel row per slice; slices past the level's rows are empty. :func:`partition_tiles` cuts compact
    rectangles of tiles instead, for spatial work.
    """
    n = positive_int(co.url, "num_chunks", num_chunks)
    lt, a = _checked_level(co, level), co.attributes
    (height, width), th = a.level_shapes[lt.i], a.tile_shapes[lt.i][0]
    tile_rows = -(-height // th)
    if n <= tile_rows:
        cuts = [min(k * th, height) for k in even_bounds(tile_rows, n).tolist()]
    else:
        cuts = [0]
        shares = np.diff(even_bounds(n, tile_rows)).tolist()
        for r, share in enumerate(shares):
            top, rows = r * th, min(th, height - r * th)
            cuts += [top + k for k in even_bounds(rows, min(share, rows)).tolist()[1:]]
    windows = [(0, top, width, bottom - top) for top, bottom in itertools.pairwise(cuts)]
    windows += [(0, height, width, 0)] * (n - len(windows))
    return [_slice(co, number, lt, window) for number, window in enumerate(windows)]


@strategy(COG)
def grid_partition_strategy(co: Any, n_splits: int, level: int = 0) -> list[COGSlice]:
    """The original Dataplug's grid: ``n_splits`` x ``n_splits`` cells, here cut at tile edges so every
    pixel is in exactly one (cells past the tile count are empty)."""
    n = positive_int(co.url, "n_splits", n_splits)
    lt, a = _checked_level(co, level), co.attributes
    i = lt.i
    (height, width), (th, tw) = a.level_shapes[i], a.tile_shapes[i]
    row_cuts, col_cuts = even_bounds(-(-height // th), n).tolist(), even_bounds(-(-width // tw), n).tolist()
    windows = []
    for r0, r1 in itertools.pairwise(row_cuts):
        for c0, c1 in itertools.pairwise(col_cuts):
            window = _tile_window(a, i, (r0, r1, c0, c1))
            windows.append(window if window[2] > 0 and window[3] > 0 else (window[0], window[1], 0, 0))
    return [_slice(co, number, lt, window) for number, window in enumerate(windows)]


@strategy(COG)
def partition_bbox(co: Any, minx: float, miny: float, maxx: float, maxy: float, level: int = 0) -> list[COGSlice]:
    """One slice: the pixels of ``level`` whose centre lies in the box, half-open like every ``bounds``
    (``minx <= x < maxx``, ``miny <= y < maxy`` in the CRS), so boxes that share an edge share no pixel;
    empty when no pixel centre is in the box. Needs a north-up raster (no rotation terms)."""
    box = bbox_window(co.url, minx, miny, maxx, maxy)
    lt, a = _checked_level(co, level), co.attributes
    i, t = lt.i, lt.transform
    if t is None:
        raise StrategyArgumentError(co.url, "partition_bbox needs a georeferenced raster; this TIFF has no geotransform")
    ta, tb, tc, td, te, tf = t
    if tb or td or not ta or not te:
        raise StrategyArgumentError(co.url, f"partition_bbox needs a north-up geotransform (no rotation terms), this one is {t}")
    height, width = a.level_shapes[i]
    c0, c1 = _centres_in(tc, ta, box[0], box[2], width)
    r0, r1 = _centres_in(tf, te, box[1], box[3], height)
    window = (c0, r0, c1 - c0, r1 - r0) if r1 > r0 and c1 > c0 else (c0, r0, 0, 0)
    return [_slice(co, 0, lt, window)]


def _centres_in(origin: float, step: float, lo: float, hi: float, count: int) -> tuple[int, int]:
    """``[k0, k1)``: the pixels ``k`` of an axis (``0 <= k < count``) whose centre ``origin + step * (k + 0.5)``
    lies in ``[lo, hi)``, as the floating-point comparison itself decides (``step`` of either sign)."""

    def inside(k: int) -> bool:
        return lo <= origin + step * (k + 0.5) < hi

    ends = sorted(((lo - origin) / step - 0.5, (hi - origin) / step - 0.5))
    k0 = min(max(math.floor(ends[0]), 0), count)
    k1 = min(max(math.ceil(ends[1]) + 1, 0), count)
    while k0 < k1 and not inside(k0):
        k0 += 1
    while k1 > k0 and not inside(k1 - 1):
        k1 -= 1
    return k0, k1
