"""imzML mass-spectrometry imaging: the ``.imzML`` XML (the object) with its ``.ibd`` binary beside it,
sliced by runs of spectra or by rectangles of pixels, each slice reading only its arrays from the ``.ibd``.

The index pass streams the XML once through pyimzml's parser (the ``.ibd`` is not read, but for its
16-byte UUID) and keeps, per spectrum, its pixel and the byte offset and element count of its m/z and
intensity arrays, in continuous and processed mode alike. Sidecar tables (int64): ``position`` (n, 3) x, y,
z as the file states them; ``arrays`` (n, 4) m/z offset, m/z count, intensity offset, intensity count.

The XML is parsed in one streaming pass (``chunk_size`` does not apply). Collecting each spectrum's stated
lowest and highest m/z for ``mz_range`` makes pyimzml's parser 1.21 times slower (0.81 s against 0.67 s on
3,333 spectra, load average 4.7 on 2 cores; the line "ImzMLParser with lowest/highest m/z" of
``python benchmarks/imzml.py --size-mb 40 --slices 16``). The ``.ibd`` is a second object: its URL, size and
identity are in the attributes, every strategy checks them with one metadata request
(:class:`StaleIndexError` when the ``.ibd`` changed: run ``preprocess(force=True)``), and every slice read is
pinned to them as reads of the object itself are.
"""

from __future__ import annotations

import functools
import io
import itertools
import math
import uuid
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from xml.etree.ElementTree import ParseError

import numpy as np

from dataplug.cloudobject import CloudObject
from dataplug.errors import (
    CorruptIndexError,
    DataplugDeprecationWarning,
    DataplugError,
    InvalidFormatError,
    ObjectNotFoundError,
    StaleIndexError,
    StrategyArgumentError,
)
from dataplug.executors import map_ordered
from dataplug.format import DataFormat, Detection, IndexData, PreprocessContext, Sample
from dataplug.formats.metabolomics.imzml_slice import INTENSITY_COUNT, MZ_COUNT, ROW_WIDTH, ImzMLSlice, X, Y
from dataplug.storage import ObjectInfo, StorageObject, split_url
from dataplug.strategies import even_bounds, grid_shape, positive_int, strategy

try:
    from pyimzml.ImzMLParser import ImzMLParser
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("imzML support needs pyimzml: pip install 'dataplug[imzml]'") from exc

#: pyimzml's type codes, as little-endian numpy types (imzML stores little-endian numbers).
_DTYPES = {"f": "<f4", "d": "<f8", "i": "<i4", "l": "<i8"}
_UUID = "IMS:1000080"
_CONTINUOUS, _PROCESSED = "IMS:1000030", "IMS:1000031"
_LOWEST_MZ, _HIGHEST_MZ = "MS:1000528", "MS:1000527"
_ZLIB = "MS:1000574"
#: Bytes of ``.ibd`` arrays per slice when :func:`ion_image` partitions an object itself.
ION_IMAGE_SLICE_BYTES = 64 * 2**20
TABLES = ("position", "arrays")
#: Pixels an ion image may have (float64: 1 GiB); a file stating a larger grid is refused, not allocated.
MAX_ION_IMAGE_PIXELS = 2**27


@dataclass(frozen=True)
class ImzMLAttributes:
    """What the index pass found. ``image`` is the pixel grid (x origin, y origin, width, height): the
    stated image size, grown to hold every spectrum, from pixel (1, 1) unless a spectrum lies left or above
    it; ``extent`` the pixels that hold spectra (min x, min y, max x, max y)."""

    size: int
    spectra: int
    is_continuous: bool
    mz_dtype: str
    intensity_dtype: str
    image: tuple[int, int, int, int]
    extent: tuple[int, int, int, int]
    #: Lowest and highest m/z, when every spectrum states them (``lowest/highest observed m/z``).
    mz_range: tuple[float, float] | None
    spectrum_type: str | None
    polarity: str | None
    uuid: str
    ibd_url: str
    ibd_size: int
    ibd_identity: str


class ImzML(DataFormat):
    """An imzML dataset: the ``.imzML`` (the object's URL) and the ``.ibd`` with the same stem beside it."""

    Attributes = ImzMLAttributes
    options = {"ibd_url": "URL of the .ibd (default: the .imzML's URL with the extension .ibd, then .IBD)"}

    @classmethod
    def check_companions(cls, obj: StorageObject, attributes: Any, given: dict[str, Any]) -> None:
        """The index's ``.ibd`` must be the one beside the ``.imzML`` or the one given as ``ibd_url=`` now."""
        named = companion(obj, attributes.ibd_url).url
        chosen = companion(obj, str(given["ibd_url"])).url if given.get("ibd_url") else None
        if named not in [companion(obj, url).url for url in _beside(obj.url)] and named != chosen:
            raise CorruptIndexError(
                obj.url,
                f"the index names {attributes.ibd_url!r} as the .ibd, which is not beside the .imzML; "
                "pass ibd_url= to preprocess() to read that one (a sidecar alone never chooses another object to read)",
            )

    @classmethod
    def companions(cls, obj: StorageObject, attributes: Any) -> list[tuple[StorageObject, ObjectInfo]]:
        """The ``.ibd``: a changed one makes the index stale, as a changed ``.imzML`` does."""
        return [(companion(obj, attributes.ibd_url), ObjectInfo(attributes.ibd_size, attributes.ibd_identity))]

    sniff_priority = 20

    @classmethod
    def sniff(cls, sample: Sample) -> Detection | None:
        """An uncompressed XML document with an ``<mzML`` root and imzML's controlled vocabulary (``IMS:`` terms):
        a plain mzML is :class:`~dataplug.formats.metabolomics.mzml.MzML`'s."""
        body = sample.decoded
        imaging = b"IMS:" in body or b"imzML" in body
        if sample.codec == "none" and sample.lines() and body.lstrip().startswith(b"<?xml") and b"<mzML" in body and imaging:
            return cls.detected(sample, "an imzML XML document", ("UTF8Text",))
        return None

    @classmethod
    def preprocess(cls, ctx: PreprocessContext) -> IndexData:
        url = ctx.obj.url
        ibd, ibd_info = _find_ibd(ctx)
        head = ibd.read_range(0, min(16, ibd_info.size), expect=ibd_info)
        parser = _parse(ctx)
        mz_dtype, intensity_dtype = (
            _dtype(url, name, code) for name, code in (("m/z", parser.mzPrecision), ("intensity", parser.intensityPrecision))
        )
        groups = parser.metadata.referenceable_param_groups
        if any(_ZLIB in groups[g] for g in (parser.mzGroupId, parser.intGroupId)):
            raise InvalidFormatError(url, "zlib-compressed arrays are not supported (pyimzml cannot read them either)")
        description = parser.metadata.file_description
        stated_uuid = _check_uuid(url, ibd.url, description.param_by_accession.get(_UUID), head)
        try:
            position = np.asarray(parser.coordinates, dtype=np.int64).reshape(-1, 3)
            arrays = np.array([parser.mzOffsets, parser.mzLengths, parser.intensityOffsets, parser.intensityLengths], dtype=np.int64).T.copy()
        except OverflowError:
            raise InvalidFormatError(url, "a pixel coordinate, offset or array length does not fit 64 bits") from None
        _check_arrays(url, ibd.url, ibd_info.size, position, arrays, np.dtype(mz_dtype).itemsize, np.dtype(intensity_dtype).itemsize)
        if ibd.info() != ibd_info:
            raise StaleIndexError(ibd.url, "the .ibd changed while its imzML was being indexed; nothing was written")
        if _CONTINUOUS in description or _PROCESSED in description:
            continuous = _CONTINUOUS in description
        else:
            continuous = bool(np.all(arrays[:, :2] == arrays[0, :2]))
        attributes = ImzMLAttributes(
            size=ctx.info.size,
            spectra=len(position),
            is_continuous=continuous,
            mz_dtype=mz_dtype,
            intensity_dtype=intensity_dtype,
            image=_image(parser.imzmldict, position),
            extent=tuple(int(v) for v in (*position[:, :2].min(axis=0), *position[:, :2].max(axis=0))),  # type: ignore[arg-type]
            mz_range=_mz_range(parser.spectrum_metadata_fields),
            spectrum_type=parser.spectrum_mode,
            polarity=parser.polarity,
            uuid=stated_uuid,
            ibd_url=ibd.url,
            ibd_size=ibd_info.size,
            ibd_identity=ibd_info.identity,
        )
        return IndexData(attributes, tables={"position": position, "arrays": arrays})

    @classmethod
    def validate_index(cls, url: str, attributes: Any, tables: dict[str, np.ndarray], blob_sizes: dict[str, int], size: int) -> None:
        a = attributes
        missing = [name for name in TABLES if name not in tables]
        if missing:
            raise CorruptIndexError(url, f"imzML index tables missing: {missing}")
        position, arrays = tables["position"], tables["arrays"]
        n = a.spectra
        x0, y0, width, height = a.image
        ok = (
            a.size == size
            and n >= 1
            and a.mz_dtype in _DTYPES.values()
            and a.intensity_dtype in _DTYPES.values()
            and position.shape == (n, 3)
            and arrays.shape == (n, 4)
            and position.dtype.kind == arrays.dtype.kind == "i"
            and width >= 1
            and height >= 1
            and np.all(position[:, 0] >= x0)
            and np.all(position[:, 0] < x0 + width)
            and np.all(position[:, 1] >= y0)
            and np.all(position[:, 1] < y0 + height)
        )
        if not ok:
            raise CorruptIndexError(url, "imzML index does not fit its attributes (table shapes, data types or pixels)")
        try:
            _check_arrays(url, a.ibd_url, a.ibd_size, position, arrays, np.dtype(a.mz_dtype).itemsize, np.dtype(a.intensity_dtype).itemsize)
        except InvalidFormatError as exc:
            raise CorruptIndexError(url, f"imzML index does not fit the .ibd: {exc.cause}") from None


# -- the index pass ---------------------------------------------------------------------------------------


def companion(obj: StorageObject, url: str) -> StorageObject:
    """The object at ``url`` beside ``obj``: with ``obj``'s storage options when on the same protocol."""
    return StorageObject(url, dict(obj.storage_options) if split_url(url)[0] == obj.protocol else {})


def _beside(url: str) -> list[str]:
    """Where an ``.imzML``'s ``.ibd`` is looked for: the same stem with ``.ibd``, then ``.IBD``."""
    stem = url[: -len(".imzml")] if url.lower().endswith(".imzml") else url
    return [stem + ".ibd", stem + ".IBD"]


def _find_ibd(ctx: PreprocessContext) -> tuple[StorageObject, ObjectInfo]:
    """The ``.ibd`` named by ``ibd_url=``, else the one beside the ``.imzML`` (``.ibd``, then ``.IBD``)."""
    url, given = ctx.obj.url, ctx.options.get("ibd_url")
    if url.lower().endswith(".ibd"):
        cause = (
            "this is the .ibd: the object of an ImzML dataset is its .imzML, and the .ibd is found beside it (the original Dataplug took the .ibd)"
        )
        raise InvalidFormatError(url, cause)
    if given is not None:
        if not isinstance(given, str) or not given:
            raise StrategyArgumentError(url, f"ibd_url must be the URL of the .ibd, got {given!r}")
        ibd = companion(ctx.obj, given)
        try:
            return ibd, ibd.info()
        except ObjectNotFoundError:
            raise ObjectNotFoundError(ibd.url, f"the .ibd given as ibd_url= for {url} does not exist") from None
    tried = []
    for beside in _beside(url):
        ibd = companion(ctx.obj, beside)
        try:
            return ibd, ibd.info()
        except ObjectNotFoundError:
            tried.append(ibd.url)
    raise ObjectNotFoundError(url, f"no .ibd beside the imzML (looked for {' and '.join(tried)}); pass ibd_url= to preprocess()")


def _parse(ctx: PreprocessContext) -> ImzMLParser:
    """pyimzml's parser over the ``.imzML`` streamed from storage (blocks prefetched while it parses)."""
    url = ctx.obj.url
    with ctx.obj.stream(ctx.info) as raw:
        try:
            return ImzMLParser(io.BufferedReader(raw, 2**20), ibd_file=None, include_spectra_metadata=[_LOWEST_MZ, _HIGHEST_MZ])
        except DataplugError:
            raise
        except ParseError as exc:
            raise InvalidFormatError(url, f"not well-formed XML: {exc.msg}", line=exc.position[0]) from None
        except (ValueError, KeyError, IndexError, AttributeError, TypeError, RuntimeError) as exc:
            raise InvalidFormatError(url, f"not an imzML file pyimzml can read: {type(exc).__name__}: {str(exc)[:200]}") from None


def _dtype(url: str, what: str, code: str | None) -> str:
    if code not in _DTYPES:
        raise InvalidFormatError(url, f"the {what} array's data type is not stated, or is not a 32/64-bit float or integer")
    return _DTYPES[code]


def _check_uuid(url: str, ibd_url: str, stated: Any, head: bytes) -> str:
    """The imzML's UUID (canonical form; "" when it states none) after checking it against the ``.ibd``'s."""
    if len(head) < 16:
        raise InvalidFormatError(ibd_url, f"the .ibd has {len(head)} bytes, fewer than its 16-byte UUID header")
    if stated is None:
        return ""
    try:
        expected = uuid.UUID(str(stated).strip())
    except ValueError:
        raise InvalidFormatError(url, f"the imzML's universally unique identifier {str(stated)[:80]!r} is not a UUID") from None
    if head != expected.bytes:
        cause = f"the .ibd's UUID {uuid.UUID(bytes=head)} differs from {expected} stated by {url}: the two files are not one dataset"
        raise InvalidFormatError(ibd_url, cause, offset=0)
    return str(expected)


def _check_arrays(url: str, ibd_url: str, ibd_size: int, position: np.ndarray, arrays: np.ndarray, mz_size: int, intensity_size: int) -> None:
    """Every array inside the ``.ibd`` after its UUID, with as many m/z values as intensities."""
    if arrays.shape[0] == 0:
        raise InvalidFormatError(url, "the imzML holds no spectra")
    mz_off, mz_n, int_off, int_n = arrays.T
    bad = np.flatnonzero(mz_n != int_n)
    if bad.size:
        i = int(bad[0])
        raise InvalidFormatError(url, f"spectrum {i}: its m/z array has {mz_n[i]} values and its intensity array {int_n[i]}")
    bad = np.flatnonzero((arrays < 0).any(axis=1))
    if bad.size:
        raise InvalidFormatError(url, f"spectrum {int(bad[0])}: negative offset or length {arrays[bad[0]].tolist()}")
    for name, offset, count, itemsize in (("m/z", mz_off, mz_n, mz_size), ("intensity", int_off, int_n, intensity_size)):
        most = ibd_size // itemsize
        outside = (offset > ibd_size) | (count > most)  # tested first, so that the sum below cannot overflow
        end = np.where(outside, ibd_size + 1, np.minimum(offset, ibd_size) + np.minimum(count, most) * itemsize)
        bad = np.flatnonzero((end > ibd_size) | ((offset < 16) & (count > 0)))
        if bad.size:
            i = int(bad[0])
            x, y = position[i, :2].tolist()
            cause = (
                f"spectrum {i} (pixel {x}, {y}): its {name} array [{offset[i]}, +{count[i]} values) lies outside the .ibd's data "
                f"(bytes 16 to {ibd_size}): the .ibd is truncated, or is not the one {url} describes"
            )
            raise InvalidFormatError(ibd_url, cause)


def _image(stated: dict[str, Any], position: np.ndarray) -> tuple[int, int, int, int]:
    """(x origin, y origin, width, height): pixels from (1, 1) to the stated size, grown to hold every spectrum."""
    out = []
    for axis, name in ((0, "x"), (1, "y")):
        size = stated.get(f"max count of pixels {name}")
        size = int(size) if isinstance(size, (int, float)) and not isinstance(size, bool) and math.isfinite(size) else 0
        origin = min(1, int(position[:, axis].min()))
        out.append((origin, max(size, int(position[:, axis].max())) - origin + 1))
    (x0, width), (y0, height) = out
    return x0, y0, width, height


def _mz_range(fields: dict[str, list[Any]]) -> tuple[float, float] | None:
    lows, highs = fields[_LOWEST_MZ], fields[_HIGHEST_MZ]
    try:
        low, high = float(np.min(np.asarray(lows, dtype=np.float64))), float(np.max(np.asarray(highs, dtype=np.float64)))
    except (TypeError, ValueError):
        return None
    return (low, high) if math.isfinite(low) and math.isfinite(high) and low <= high else None


# -- strategies ------------------------------------------------------------------------------------------


def _fresh_ibd(co: Any) -> tuple[StorageObject, ObjectInfo]:
    """The ``.ibd`` and its indexed size and identity (checked unchanged by the strategy decorator, through
    :meth:`ImzML.companions`)."""
    ((ibd, info),) = ImzML.companions(co.obj, co.attributes)
    return ibd, info


def _all_rows(co: Any) -> np.ndarray:
    """(n, 8) rows of every spectrum: index, x, y, m/z offset, m/z count, intensity offset, intensity count, z."""
    tables = co.index().tables
    n = co.attributes.spectra
    return np.column_stack([np.arange(n, dtype=np.int64), tables["position"][:, :2], tables["arrays"], tables["position"][:, 2]])


def _slices(co: Any, groups: Iterable[np.ndarray], windows: Iterable[tuple[int, int, int, int] | None] | None = None) -> list[ImzMLSlice]:
    """One slice per group of rows (each in file order)."""
    a = co.attributes
    ibd, info = _fresh_ibd(co)
    windows = windows if windows is not None else itertools.repeat(None)
    return [
        ImzMLSlice(
            obj=co.obj,
            object_info=co.index().object_info,
            number=number,
            ibd=ibd,
            ibd_info=info,
            mz_dtype=a.mz_dtype,
            intensity_dtype=a.intensity_dtype,
            rows=np.ascontiguousarray(rows, dtype=np.int64).reshape(-1, ROW_WIDTH),
            image=a.image,
            window=window,
            continuous=a.is_continuous,
            spectrum_type=a.spectrum_type,
            polarity=a.polarity,
        )
        for number, (rows, window) in enumerate(zip(groups, windows))
    ]


@strategy(ImzML)
def partition_spectra(co: Any, num_chunks: int) -> list[ImzMLSlice]:
    """``num_chunks`` runs of consecutive spectra (file order) whose counts differ by at most one (with more
    slices than spectra, the extra slices are empty)."""
    rows = _all_rows(co)
    bounds = even_bounds(len(rows), positive_int(co.url, "num_chunks", num_chunks)).tolist()
    return _slices(co, (rows[a:b] for a, b in itertools.pairwise(bounds)))


@strategy(ImzML)
def partition_num_chunks(co: Any, num_chunks: int) -> list[ImzMLSlice]:
    """Every format's name for :func:`partition_spectra`: ``num_chunks`` runs of consecutive spectra."""
    return partition_spectra.__wrapped__(co, num_chunks)  # type: ignore[attr-defined]


@strategy(ImzML)
def square_split_strategy(co: Any, num_chunks: int) -> list[ImzMLSlice]:
    """Rectangles of pixels over the spectra's extent, a near-square grid of ``grid_shape(num_chunks)``
    columns by rows whose widths (and heights) differ by at most one pixel; every spectrum is in exactly one
    slice, and a slice lists its spectra in file order. Cells are ordered column by column; each slice's
    ``window`` is its cell ``(col_off, row_off, width, height)`` in pixel x/y."""
    columns, rows_ = grid_shape(positive_int(co.url, "num_chunks", num_chunks))
    x0, y0, x1, y1 = co.attributes.extent
    x_edges = x0 + even_bounds(x1 - x0 + 1, columns)
    y_edges = y0 + even_bounds(y1 - y0 + 1, rows_)
    rows = _all_rows(co)
    cell = (np.searchsorted(x_edges, rows[:, X], side="right") - 1) * rows_ + np.searchsorted(y_edges, rows[:, Y], side="right") - 1
    order = np.argsort(cell, kind="stable")
    bounds = np.searchsorted(cell[order], np.arange(columns * rows_ + 1)).tolist()
    widths, heights = np.diff(x_edges), np.diff(y_edges)
    windows = [(int(x_edges[i]), int(y_edges[j]), int(widths[i]), int(heights[j])) for i in range(columns) for j in range(rows_)]
    return _slices(co, (rows[order[a:b]] for a, b in itertools.pairwise(bounds)), windows)


@strategy(ImzML)
def partition_region(co: Any, x0: int, y0: int, x1: int, y1: int) -> list[ImzMLSlice]:
    """One slice with the spectra of pixels ``x0 <= x <= x1``, ``y0 <= y <= y1`` (file order); its
    ``window`` is ``(x0, y0, x1 - x0 + 1, y1 - y0 + 1)``."""
    c0, r0, c1, r1 = (_whole(co.url, name, v) for name, v in (("x0", x0), ("y0", y0), ("x1", x1), ("y1", y1)))
    if c0 > c1 or r0 > r1:
        raise StrategyArgumentError(co.url, f"partition_region needs x0 <= x1 and y0 <= y1, got {(c0, r0, c1, r1)}")
    rows = _all_rows(co)
    keep = (rows[:, X] >= c0) & (rows[:, X] <= c1) & (rows[:, Y] >= r0) & (rows[:, Y] <= r1)
    return _slices(co, [rows[keep]], [(c0, r0, c1 - c0 + 1, r1 - r0 + 1)])


@strategy(ImzML)
def partition_chunk_size(co: Any, chunk_size: int) -> list[ImzMLSlice]:
    """Runs of consecutive spectra of at most ``chunk_size`` bytes of ``.ibd`` arrays each (a continuous
    dataset's shared m/z array counts once per slice). A spectrum bigger than that is a slice of its own."""
    budget = positive_int(co.url, "chunk_size", chunk_size)
    attributes, rows = co.attributes, _all_rows(co)
    mz_size, int_size = np.dtype(attributes.mz_dtype).itemsize, np.dtype(attributes.intensity_dtype).itemsize
    sizes = rows[:, INTENSITY_COUNT] * int_size
    if attributes.is_continuous:
        budget -= int(rows[0, MZ_COUNT]) * mz_size
    else:
        sizes = sizes + rows[:, MZ_COUNT] * mz_size
    cumulative = np.concatenate(([0], np.cumsum(sizes)))
    bounds, start = [0], 0
    while start < len(rows):
        start = max(start + 1, int(np.searchsorted(cumulative, cumulative[start] + budget, side="right")) - 1)
        bounds.append(start)
    return _slices(co, (rows[a:b] for a, b in itertools.pairwise(bounds)))


@strategy(ImzML)
def partition_chunks_strategy(co: Any, chunk_size: int) -> list[ImzMLSlice]:
    """The original Dataplug's name for :func:`partition_chunk_size` (``chunk_size`` in bytes, where FASTA's
    ``partition_chunks_strategy`` takes a count of slices); deprecated."""
    warnings.warn(
        "imzML's partition_chunks_strategy(co, chunk_size) is deprecated: use partition_chunk_size(co, chunk_size), "
        "which takes the same bytes per slice (or partition_num_chunks(co, n) for n slices)",
        DataplugDeprecationWarning,
        stacklevel=3,
    )
    return partition_chunk_size.__wrapped__(co, chunk_size)  # type: ignore[attr-defined]


def _whole(url: str, name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise StrategyArgumentError(url, f"{name} must be a whole pixel coordinate, got {value!r}")
    return int(value)


# -- ion images ------------------------------------------------------------------------------------------


def _ion_sums(piece: ImzMLSlice, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A worker's share of an ion image: pixel x, y and summed intensity of each of its spectra."""
    return piece.rows[:, X], piece.rows[:, Y], piece.ion_sums(lo, hi)


def ion_image(co_or_slices: CloudObject | ImzMLSlice | Iterable[ImzMLSlice], mz: float, tol: float, executor: Any = None) -> np.ndarray:
    """The ion image of ``mz``: per pixel, the sum of the intensities whose m/z lies within ``mz ± tol``.

    Returns a float64 array of (height, width) of the dataset's ``image`` grid, pixel (x, y) at
    ``[y - y origin, x - x origin]`` (``[y - 1, x - 1]`` as pyimzml's ``getionimage``); spectra at one pixel
    (several z planes) add up. Given a CloudObject, reads it as slices of about
    :data:`ION_IMAGE_SLICE_BYTES`; given slices, reads those (e.g. of one region). Slices run on
    ``executor`` (any engine :func:`dataplug.executors.map_ordered` accepts; default a local thread pool).
    """
    if isinstance(co_or_slices, CloudObject):
        if not issubclass(co_or_slices.format, ImzML):
            raise StrategyArgumentError(co_or_slices.url, f"ion_image is for ImzML objects, not {co_or_slices.format.name}")
        parts = max(1, math.ceil(co_or_slices.attributes.ibd_size / ION_IMAGE_SLICE_BYTES))
        slices = partition_spectra(co_or_slices, min(parts, co_or_slices.attributes.spectra))
    else:
        slices = [co_or_slices] if isinstance(co_or_slices, ImzMLSlice) else list(co_or_slices)
    url = slices[0].url if slices else None
    if not slices or not all(isinstance(s, ImzMLSlice) and s.image == slices[0].image for s in slices):
        raise StrategyArgumentError(url, "ion_image needs an ImzML CloudObject or imzML slices of one dataset")
    mz, tol = float(mz), float(tol)
    if not (math.isfinite(mz) and math.isfinite(tol) and tol >= 0):
        raise StrategyArgumentError(url, f"ion_image needs a finite mz and tol >= 0, got mz={mz}, tol={tol}")
    x0, y0, width, height = slices[0].image
    if width * height > MAX_ION_IMAGE_PIXELS:
        raise InvalidFormatError(
            url,
            f"the image grid is {width} x {height} pixels (as the file states it, or as far as its spectra reach): "
            f"an ion image of it would take {width * height * 8 / 2**30:.1f} GiB, over the {MAX_ION_IMAGE_PIXELS * 8 / 2**30:.0f} GiB limit "
            "(dataplug.formats.metabolomics.imzml.MAX_ION_IMAGE_PIXELS)",
        )
    image = np.zeros((height, width))
    for x, y, sums in map_ordered(functools.partial(_ion_sums, lo=mz - tol, hi=mz + tol), slices, executor, desc=f"ion image of {url}"):
        np.add.at(image, (y - y0, x - x0), sums)
    return image
