"""The TIFF side of the COG format: reading IFDs over range reads, GeoTIFF georeferencing, decoding tiles.

IFDs are parsed by tifffile over the storage layer's :class:`~dataplug.storage.RangeFile`, a read-only file
object that fetches aligned blocks of the object on demand: a COG keeps its IFDs and tile tables at its start,
so the whole pass is one or two range reads, whatever the object's size. Tiles are decoded with imagecodecs, then un-predicted as libtiff
does (horizontal differencing on the samples' integer bit patterns; the floating-point predictor per row).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from dataplug.errors import InvalidFormatError
from dataplug.storage import ObjectInfo, RangeFile, StorageObject

try:
    import imagecodecs
    import tifffile
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("COG support needs tifffile and imagecodecs: pip install 'dataplug[cog]'") from exc

#: TIFF compression codes dataplug decodes, by the name kept in the index.
COMPRESSIONS = {1: "none", 5: "lzw", 8: "deflate", 32946: "deflate", 7: "jpeg", 50000: "zstd", 50001: "webp", 32773: "packbits", 34925: "lzma"}
_BYTE_CODECS: dict[str, Callable[..., Any]] = {
    "lzw": imagecodecs.lzw_decode,
    "deflate": imagecodecs.deflate_decode,  # libdeflate, not zlib
    "zstd": imagecodecs.zstd_decode,
    "packbits": imagecodecs.packbits_decode,
    "lzma": imagecodecs.lzma_decode,
}
#: Predictors: 1 none, 2 horizontal differencing, 3 floating point.
PREDICTORS = (1, 2, 3)
_SAMPLE_KINDS = {1: "u", 2: "i", 3: "f"}
#: Sample types dataplug reads, by numpy name.
DTYPES = frozenset(f"{kind}{bits}" for kind in ("uint", "int") for bits in (8, 16, 32, 64)) | {"float32", "float64"}
#: A tile (or strip) larger than this once decoded is refused: a crafted header must not make a worker
#: allocate without bound (GDAL's COGs use 256-1024 pixel tiles: a few MiB).
MAX_TILE_BYTES = 2**30
#: GeoTIFF tags and keys.
_PIXEL_SCALE, _TIEPOINT, _TRANSFORMATION, _GEOKEYS, _GEO_DOUBLES, _GEO_ASCII = 33550, 33922, 34264, 34735, 34736, 34737
_GDAL_NODATA = 42113
_TILE_OFFSETS, _TILE_BYTE_COUNTS, _STRIP_OFFSETS, _STRIP_BYTE_COUNTS = 324, 325, 273, 279
#: TIFF field types a tile (strip) offset or byte count array may have, as numpy types: SHORT, LONG, LONG8.
TABLE_TYPES = {3: "u2", 4: "u4", 16: "u8"}
_RASTER_TYPE, _GEOGRAPHIC_TYPE, _PROJECTED_TYPE, _CITATION, _PCS_CITATION = 1025, 2048, 3072, 1026, 3073
_USER_DEFINED = 32767


@dataclass(frozen=True)
class Level:
    """One resolution level as its IFD describes it: what a worker needs to decode its tiles.

    Strips are taken as tiles as wide as the image (``tiled`` False): the last strip holds only the rows
    left, where an edge tile is padded to the full tile size.
    """

    height: int
    width: int
    tile_height: int
    tile_width: int
    tiled: bool
    bands: int
    #: 1: samples interleaved in each tile (pixel); 2: one tile per band (band-interleaved).
    planar: int
    #: numpy dtype string with the file's byte order (``<u2``, ``>f4``).
    dtype: str
    compression: str
    predictor: int
    photometric: int
    extra_samples: int
    jpegtables: bytes | None = None

    @property
    def tiles_down(self) -> int:
        return -(-self.height // self.tile_height)

    @property
    def tiles_across(self) -> int:
        return -(-self.width // self.tile_width)

    @property
    def tile_bytes(self) -> int:
        """Bytes of one decoded tile (or strip)."""
        return self.tile_height * self.tile_width * (self.bands if self.planar == 1 else 1) * np.dtype(self.dtype).itemsize

    @property
    def planes(self) -> int:
        return self.bands if self.planar == 2 else 1

    def tile_rows(self, tile_row: int) -> int:
        """Rows a tile in ``tile_row`` decodes to (a last strip is short, a last tile padded)."""
        return self.tile_height if self.tiled else min(self.tile_height, self.height - tile_row * self.tile_height)


# -- the index pass ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Parsed:
    """What the IFDs say: levels (full resolution first), their tile tables, and the georeferencing."""

    levels: list[Level]
    offsets: list[np.ndarray]
    bytecounts: list[np.ndarray]
    #: Per level, where the IFD keeps its tile (strip) offsets and byte counts: (position of the offsets'
    #: values in the object, their TIFF type, position of the byte counts, their type); see :func:`tile_tables`.
    tables_at: list[tuple[int, int, int, int]]
    transform: tuple[float, float, float, float, float, float] | None
    crs: str | None
    nodata: str | None
    byteorder: str
    #: The GeoTIFF tags a dumped slice carries over: GeoKeyDirectory, GeoDoubleParams, GeoAsciiParams.
    geokeys: np.ndarray
    geodoubles: np.ndarray
    geoascii: str


def read_ifds(obj: StorageObject, info: ObjectInfo) -> Parsed:
    """Parse the TIFF header and every IFD with range reads; reduced-resolution IFDs are the overviews,
    transparency masks are left out. Raises :class:`InvalidFormatError` for what dataplug cannot decode."""
    url = obj.url
    try:
        with RangeFile(obj, info) as fh, tifffile.TiffFile(fh) as tif:
            pages = list(tif.pages)
            byteorder = tif.byteorder
            full = pages[0]
            levels = [_level(url, full)]
            tags = {code: full.tags.valueof(code) for code in (_PIXEL_SCALE, _TIEPOINT, _TRANSFORMATION, _GEOKEYS, _GEO_DOUBLES, _GEO_ASCII, _GDAL_NODATA)}
            chosen = [full]
            for page in pages[1:]:
                kind = int(page.subfiletype)
                if kind & 1 and not kind & 4:  # reduced resolution, not a mask
                    levels.append(_level(url, page))
                    chosen.append(page)
            offsets = [np.asarray(p.dataoffsets, dtype=np.int64) for p in chosen]
            bytecounts = [np.asarray(p.databytecounts, dtype=np.int64) for p in chosen]
            tables_at = [_tables_at(url, p) for p in chosen]
    except InvalidFormatError:
        raise
    except (tifffile.TiffFileError, ValueError, IndexError, KeyError, TypeError, OverflowError, struct.error) as exc:
        raise InvalidFormatError(url, f"not a readable TIFF: {type(exc).__name__}: {str(exc)[:200]}", offset=0) from None
    order = sorted(range(1, len(levels)), key=lambda i: -levels[i].width)
    keep = [0, *order]
    base = levels[0]
    for i in order:
        lv = levels[i]
        if (lv.bands, lv.dtype) != (base.bands, base.dtype) or lv.width > base.width or lv.height > base.height:
            raise InvalidFormatError(
                url, f"overview IFD {i} ({lv.width} x {lv.height}, {lv.bands} x {lv.dtype}) does not match the full resolution image"
            )
    nodata = tags[_GDAL_NODATA]
    return Parsed(
        levels=[levels[i] for i in keep],
        offsets=[offsets[i] for i in keep],
        bytecounts=[bytecounts[i] for i in keep],
        tables_at=[tables_at[i] for i in keep],
        transform=geotransform(tags, _geokeys(tags)),
        crs=crs_name(_geokeys(tags), tags[_GEO_ASCII]),
        nodata=str(nodata).strip("\x00 ") if nodata is not None else None,
        byteorder=byteorder,
        geokeys=np.asarray(tags[_GEOKEYS] if tags[_GEOKEYS] is not None else (), dtype=np.uint16).reshape(-1),
        geodoubles=np.asarray(tags[_GEO_DOUBLES] if tags[_GEO_DOUBLES] is not None else (), dtype=np.float64).reshape(-1),
        geoascii=str(tags[_GEO_ASCII] or ""),
    )


def _level(url: str, page: Any) -> Level:
    """A :class:`Level` from a tifffile page, after checking dataplug can decode it."""
    bits = set(np.atleast_1d(page.bitspersample).tolist())
    kinds = set(np.atleast_1d(page.sampleformat).tolist())
    if len(bits) != 1 or len(kinds) != 1 or bits - {8, 16, 32, 64} or kinds - set(_SAMPLE_KINDS) or (kinds == {3} and bits == {8}):
        raise InvalidFormatError(
            url,
            f"IFD {page.index}: samples of {sorted(bits)} bits, sample format {sorted(kinds)} are not supported (8-64 bit integers, 32/64 bit floats)",
        )
    compression = COMPRESSIONS.get(int(page.compression))
    if compression is None:
        names = sorted(set(COMPRESSIONS.values()))
        raise InvalidFormatError(url, f"IFD {page.index}: compression {int(page.compression)} is not supported (supported: {', '.join(names)})")
    predictor = int(page.predictor)
    if predictor not in PREDICTORS or (predictor == 3 and kinds != {3}):
        raise InvalidFormatError(url, f"IFD {page.index}: predictor {predictor} is not supported for these samples")
    if page.imagedepth != 1 or int(page.fillorder) != 1 or (page.is_subsampled and compression != "jpeg"):
        raise InvalidFormatError(url, f"IFD {page.index}: volumetric, bit-reversed or chroma-subsampled images are not supported")
    height, width = int(page.imagelength), int(page.imagewidth)
    tiled = bool(page.is_tiled)
    tile = (int(page.tilelength), int(page.tilewidth)) if tiled else (min(int(page.rowsperstrip), height), width)
    if min(height, width, *tile) < 1:
        raise InvalidFormatError(url, f"IFD {page.index}: empty image or tile ({height} x {width}, tiles {tile})")
    dtype = np.dtype(f"{_SAMPLE_KINDS[kinds.pop()]}{bits.pop() // 8}").newbyteorder(page.parent.byteorder)
    tables = page.jpegtables if compression == "jpeg" else None
    level = Level(
        height,
        width,
        *tile,
        tiled,
        int(page.samplesperpixel),
        int(page.planarconfig),
        dtype.str,
        compression,
        predictor,
        int(page.photometric),
        len(page.extrasamples),
        bytes(tables) if tables else None,
    )
    if level.tile_bytes > MAX_TILE_BYTES:
        raise InvalidFormatError(url, f"IFD {page.index}: tiles of {tile[0]} x {tile[1]} pixels exceed {MAX_TILE_BYTES} bytes decoded")
    expected = level.planes * level.tiles_down * level.tiles_across
    if len(page.dataoffsets) != expected or len(page.databytecounts) != expected:
        raise InvalidFormatError(url, f"IFD {page.index}: {len(page.dataoffsets)} tile offsets for {expected} tiles")
    end = np.asarray(page.dataoffsets, dtype=np.int64) + np.asarray(page.databytecounts, dtype=np.int64)
    if end.size and int(end.max()) > page.parent.filehandle.size:
        raise InvalidFormatError(url, f"IFD {page.index}: tile data ends at byte {int(end.max())}, past the object's end (truncated?)")
    return level


def _tables_at(url: str, page: Any) -> tuple[int, int, int, int]:
    """Where ``page``'s IFD keeps the values of its TileOffsets and TileByteCounts (StripOffsets and
    StripByteCounts), and their TIFF types, so a reader can later check an index's tables against them with
    one range read. A TIFF without them (tifffile would guess the byte counts) is refused."""
    codes = (_TILE_OFFSETS, _TILE_BYTE_COUNTS) if page.is_tiled else (_STRIP_OFFSETS, _STRIP_BYTE_COUNTS)
    out: list[int] = []
    for code, values in zip(codes, (page.dataoffsets, page.databytecounts)):
        tag = page.tags.get(code)
        kind = int(tag.dtype) if tag is not None else 0
        if kind not in TABLE_TYPES or tag.count < len(values):
            names = "TileOffsets/TileByteCounts" if page.is_tiled else "StripOffsets/StripByteCounts"
            raise InvalidFormatError(url, f"IFD {page.index}: no usable {names} tag {code} (dataplug checks its index against them)")
        out += [int(tag.valueoffset), kind]
    return out[0], out[1], out[2], out[3]


def tile_tables(
    read: Callable[[list[tuple[int, int]]], list[bytes]], byteorder: str, count: int, at: tuple[int, int, int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """The first ``count`` tile offsets and byte counts of a level, read from its IFD's arrays at ``at``
    (:attr:`Parsed.tables_at`) with one ``read`` of both ranges (one request unless the arrays lie farther
    apart than the store joins)."""
    spans = [(start, start + count * np.dtype(TABLE_TYPES[kind]).itemsize) for start, kind in (at[:2], at[2:])]
    parts = read(spans)
    return tuple(  # type: ignore[return-value]
        np.frombuffer(data, dtype=np.dtype(TABLE_TYPES[kind]).newbyteorder(byteorder), count=count).astype(np.int64)
        for data, kind in zip(parts, (at[1], at[3]))
    )


def _geokeys(tags: dict[int, Any]) -> dict[int, Any]:
    """GeoKey id -> value (short values inline, ASCII values from GeoAsciiParams)."""
    raw = tags[_GEOKEYS]
    if raw is None or len(raw) < 4:
        return {}
    ascii_params = tags[_GEO_ASCII] or ""
    keys: dict[int, Any] = {}
    for i in range(int(raw[3])):
        entry = raw[4 + 4 * i : 8 + 4 * i]
        if len(entry) < 4:
            break
        key, location, count, value = (int(v) for v in entry)
        if location == 0:
            keys[key] = value
        elif location == _GEO_ASCII:
            keys[key] = ascii_params[value : value + count].rstrip("|\x00")
    return keys


def geotransform(tags: dict[int, Any], keys: dict[int, Any]) -> tuple[float, float, float, float, float, float] | None:
    """The full-resolution affine ``(a, b, c, d, e, f)`` (``x = a*col + b*row + c``, ``y = d*col + e*row + f``,
    rasterio's order) from ModelTransformation, or from one tie point and a pixel scale; shifted half a pixel
    for PixelIsPoint rasters, as GDAL does. ``None`` without georeferencing (or with ground control points)."""
    matrix, tie, scale = tags[_TRANSFORMATION], tags[_TIEPOINT], tags[_PIXEL_SCALE]
    if matrix is not None and len(matrix) == 16:
        a, b, c, d, e, f = (float(matrix[i]) for i in (0, 1, 3, 4, 5, 7))
    elif tie is not None and len(tie) == 6 and scale is not None and len(scale) >= 2:
        i, j, x, y = (float(v) for v in (tie[0], tie[1], tie[3], tie[4]))
        sx, sy = float(scale[0]), float(scale[1])
        a, b, c, d, e, f = sx, 0.0, x - i * sx, 0.0, -sy, y + j * sy
    else:
        return None
    if keys.get(_RASTER_TYPE) == 2:  # PixelIsPoint: the tie point is a pixel's centre
        c, f = c - 0.5 * (a + b), f - 0.5 * (d + e)
    out = (a, b, c, d, e, f)
    return out if all(math.isfinite(v) for v in out) else None


def crs_name(keys: dict[int, Any], geo_ascii: str | None) -> str | None:
    """``"EPSG:<code>"`` when the GeoKeys name a code, WKT when a citation carries an ESRI PE string, else
    ``None`` (a user-defined CRS is not rebuilt without GDAL or PROJ)."""
    for key in (_PROJECTED_TYPE, _GEOGRAPHIC_TYPE):
        code = keys.get(key)
        if isinstance(code, int) and 0 < code < _USER_DEFINED:
            return f"EPSG:{code}"
    for key in (_CITATION, _PCS_CITATION):
        text = keys.get(key)
        if isinstance(text, str) and text.startswith("ESRI PE String = "):
            return text[len("ESRI PE String = ") :]
    return None


# -- decoding ---------------------------------------------------------------------------------------------


def _jpeg_colorspaces(level: Level) -> tuple[Any, Any]:
    """libjpeg's input and output colour spaces for a level's JPEG tiles (tifffile's rule, for libtiff's
    tiles, which carry no JFIF marker): YCbCr and RGB decode to RGB, a band-interleaved tile to grey."""
    if level.planar == 2:
        return None, "GRAYSCALE"
    if level.extra_samples or level.photometric not in (2, 6):
        return None, None
    return ("RGB" if level.photometric == 2 else None), "RGB"


def decode_tile(url: str, level: Level, data: bytes, tile_row: int, offset: int) -> np.ndarray:
    """One tile's pixels as a native-order, C-contiguous ``(samples, rows, tile_width)`` array (``samples`` is
    1 for a band-interleaved tile): band-sequential, so copying a window's part of it into a ``(bands, rows,
    cols)`` output moves whole rows, however many windows reuse the tile. Byte codecs inflate straight into
    the array; the one copy after that de-interleaves the samples (none for one sample). A tile that does not
    decode to its size is an :class:`InvalidFormatError`."""
    dtype = np.dtype(level.dtype)
    samples = level.bands if level.planar == 1 else 1
    shape = (level.tile_rows(tile_row), level.tile_width, samples)
    count = math.prod(shape)
    nbytes = count * dtype.itemsize
    try:
        if level.compression == "jpeg":
            colorspace, outcolorspace = _jpeg_colorspaces(level)
            decoded = imagecodecs.jpeg_decode(data, tables=level.jpegtables, colorspace=colorspace, outcolorspace=outcolorspace)
        elif level.compression == "webp":
            decoded = imagecodecs.webp_decode(data)
        elif level.compression == "none":
            decoded = None
        else:
            decoded = _BYTE_CODECS[level.compression](data, out=np.empty(nbytes, np.uint8))
    except Exception as exc:  # noqa: BLE001 - imagecodecs raises an error class of its own per codec
        raise InvalidFormatError(url, f"{level.compression} tile does not decode: {type(exc).__name__}: {str(exc)[:200]}", offset=offset) from None
    if level.compression in ("jpeg", "webp"):  # they decode to pixels, predictors do not apply
        if decoded.size != count or decoded.dtype != dtype:
            raise InvalidFormatError(
                url, f"{level.compression} tile decodes to {decoded.shape} {decoded.dtype}, expected {shape} {dtype}", offset=offset
            )
        return _planes(decoded.reshape(shape))
    if decoded is None:
        if len(data) < nbytes:
            raise InvalidFormatError(url, f"uncompressed tile holds {len(data)} bytes, expected {nbytes}", offset=offset)
        decoded = np.frombuffer(data, np.uint8, count=nbytes).copy()
    elif decoded.size < nbytes:
        raise InvalidFormatError(url, f"{level.compression} tile decodes to {decoded.size} bytes, expected {nbytes}", offset=offset)
    native = dtype.newbyteorder("=")
    if level.predictor == 3:
        # the floating-point predictor's rows hold each sample's bytes most significant first, whatever the
        # file's byte order, and decode to native order (libtiff's fpAcc)
        pixels = decoded.view(native).reshape(shape)
        return _planes(imagecodecs.floatpred_decode(pixels, axis=-2, out=pixels))
    pixels = decoded.view(dtype).reshape(shape)
    if not dtype.isnative:
        pixels = pixels.byteswap(inplace=True).view(native)
    if level.predictor == 2:
        # libtiff differences the samples' bit patterns as unsigned integers, floats included
        bits = pixels.view(f"u{dtype.itemsize}")
        imagecodecs.delta_decode(bits, axis=-2, out=bits)
    return _planes(pixels)


def _planes(pixels: np.ndarray) -> np.ndarray:
    """``(rows, cols, samples)`` pixels as a C-contiguous ``(samples, rows, cols)`` array (a free reshape for one sample)."""
    if pixels.shape[2] == 1:
        return pixels.reshape(1, *pixels.shape[:2])
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


# -- writing a window as a GeoTIFF ------------------------------------------------------------------------


def _is_pixel_is_point(geokeys: np.ndarray) -> bool:
    """Whether a GeoKeyDirectory says RasterPixelIsPoint (its tie point is a pixel's centre)."""
    for i in range(int(geokeys[3]) if len(geokeys) >= 4 else 0):
        key, location, _, value = (int(v) for v in geokeys[4 + 4 * i : 8 + 4 * i])
        if key == _RASTER_TYPE and location == 0:
            return value == 2
    return False


def geotiff_tags(
    transform: tuple[float, float, float, float, float, float] | None,
    geokeys: np.ndarray,
    geodoubles: np.ndarray,
    geoascii: str,
    nodata: str | None,
) -> list[tuple[int, str, int, Any, bool]]:
    """tifffile ``extratags`` that georeference an image whose top-left pixel has the affine ``transform``:
    ModelPixelScale and ModelTiepoint (ModelTransformation when the affine rotates), and the source's
    GeoKeyDirectory, GeoDoubleParams, GeoAsciiParams and GDAL nodata, carried unchanged. A PixelIsPoint
    raster's tie point is put back on the pixel's centre, so a reader's half-pixel shift finds ``transform``."""
    tags: list[tuple[int, str, int, Any, bool]] = []
    if transform is not None:
        a, b, c, d, e, f = transform
        if _is_pixel_is_point(geokeys):
            c, f = c + 0.5 * (a + b), f + 0.5 * (d + e)
        if b == 0 and d == 0:
            tags.append((_PIXEL_SCALE, "d", 3, (a, -e, 0.0), True))
            tags.append((_TIEPOINT, "d", 6, (0.0, 0.0, 0.0, c, f, 0.0), True))
        else:
            matrix = (a, b, 0.0, c, d, e, 0.0, f, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0)
            tags.append((_TRANSFORMATION, "d", 16, matrix, True))
    if len(geokeys) >= 4:
        tags.append((_GEOKEYS, "H", len(geokeys), tuple(int(v) for v in geokeys), True))
    if len(geodoubles):
        tags.append((_GEO_DOUBLES, "d", len(geodoubles), tuple(float(v) for v in geodoubles), True))
    if geoascii:
        tags.append((_GEO_ASCII, "s", 0, geoascii, True))
    if nodata is not None:
        tags.append((_GDAL_NODATA, "s", 0, nodata, True))
    return tags


def write_geotiff(fp: Any, pixels: np.ndarray, level: Level, extratags: list[tuple[int, str, int, Any, bool]]) -> None:
    """Write ``pixels`` (``(bands, rows, cols)``) to the binary file ``fp`` as one deflated GeoTIFF image, in
    the level's planar configuration, RGB when the level is an 8-bit RGB or YCbCr image, else grey with
    extra samples. Tiled (256 x 256) when the image spans a tile; striped otherwise."""
    bands, height, width = pixels.shape
    rgb = level.photometric in (2, 6) and bands >= 3 and pixels.dtype == np.uint8
    separate = level.planar == 2 and bands > 1
    data = pixels[0] if bands == 1 else pixels if separate else np.moveaxis(pixels, 0, -1)
    tile = (256, 256) if min(height, width) >= 256 else None
    with tifffile.TiffWriter(fp, bigtiff=pixels.nbytes > 2**32 - 2**25) as tif:
        tif.write(
            data,
            photometric="rgb" if rgb else "minisblack",
            planarconfig=None if bands == 1 else "separate" if separate else "contig",
            tile=tile,
            compression="zlib",
            compressionargs={"level": 1},
            metadata=None,
            software=False,
            extratags=extratags,
        )
