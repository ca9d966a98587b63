"""mzML mass spectrometry (proteomics, metabolomics): runs of spectra found from the file's own offset index,
each slice reading only its spectra's bytes.

**Index pass.** An ``indexedmzML`` ends with ``<indexListOffset>``: the pass reads the object's last
:data:`TAIL_BYTES`, then the ``<indexList>`` it points at (unless the tail holds it), then, in one call, the
document's head (its bytes before the first spectrum: the root, the referenceable parameter groups, the
``spectrumList`` count) with :data:`PROBE_BYTES` at the first chromatogram and at the middle and last
spectra, and the whole first spectrum (which gives the intensities' stored type). The offsets must
increase and each probe must start with the element and ``id`` the index names; counts must match the
``spectrumList``'s. Without an index (or with ``full_scan=True``) one streaming expat pass over the object
finds every ``<spectrum>``'s start, its retention time and its intensities' type, and each chromatogram's
start. Either way no DOM of the document is built.

Sidecar tables (int64 unless said): ``spectrum_offset`` (n + 1) each spectrum's first byte, then the end of
the last one's region (the first chromatogram, the end of the ``spectrumList``, or the ``indexList``);
``spectrum_rt`` (n, float64) retention times in seconds, NaN unless the pass read every spectrum
(``scanned``); ``chromatogram_offset`` (m) each chromatogram's first byte. Blob ``mzml_header``: the bytes
before the first spectrum, from which a slice's :meth:`~MzMLSlice.dump` writes a document of its own.

Slices check what they read: every spectrum must start at the byte and carry the ``index`` the sidecar
gives it, or the read is a :class:`CorruptIndexError` naming the object.
"""

from __future__ import annotations

import io
import itertools
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from dataplug.errors import CorruptIndexError, InvalidFormatError, StrategyArgumentError
from dataplug.format import DataFormat, Detection, IndexData, PreprocessContext, Sample
from dataplug.formats.metabolomics.mzml_slice import MzMLSlice, ParamGroups, Spectrum, SpectrumParser
from dataplug.strategies import even_bounds, positive_int, strategy

__all__ = ["MzML", "MzMLAttributes", "MzMLSlice", "partition_num_chunks", "partition_rt", "partition_spectra"]

#: Bytes read from the object's end to find ``<indexListOffset>``.
TAIL_BYTES = 4096
#: Bytes read at each probed offset (enough for the element's start tag).
PROBE_BYTES = 2048
#: The most bytes the document may hold before its first spectrum (its head is kept in the sidecar).
MAX_HEAD_BYTES = 64 * 2**20
#: Block size of the streaming pass over an object without an index.
SCAN_BLOCK = 8 * 2**20
HEADER_BLOB = "mzml_header"
TABLES = ("spectrum_offset", "spectrum_rt", "chromatogram_offset")
#: Encodings the byte-level parts of the pass (offsets, probes) read as ASCII supersets, by their XML names.
ENCODINGS = {"utf-8": "UTF-8", "utf8": "UTF-8", "iso-8859-1": "ISO-8859-1", "latin-1": "ISO-8859-1", "latin1": "ISO-8859-1", "us-ascii": "US-ASCII", "ascii": "US-ASCII"}
_INDEX_LIST_OFFSET = re.compile(rb"<indexListOffset>\s*([0-9]{1,18})\s*</indexListOffset>")
_INDEX = re.compile(rb"""<index\s[^>]*?name\s*=\s*["'](spectrum|chromatogram)["'][^>]*>(.*?)</index\s*>""", re.DOTALL)
_OFFSET = re.compile(rb"<offset\b([^>]*)>\s*([0-9]{1,18})\s*</offset\s*>")
_ID_REF = re.compile(rb"""\bidRef\s*=\s*(["'])(.*?)\1""", re.DOTALL)
_ID = re.compile(rb"""\sid\s*=\s*(["'])(.*?)\1""", re.DOTALL)
_DECLARED_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*\bencoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
_IMAGING = (b"IMS:1000", b'cvRef="IMS"')


@dataclass(frozen=True)
class MzMLAttributes:
    """What the index pass found."""

    size: int
    spectra: int
    chromatograms: int
    #: The object is an ``indexedmzML`` (its own offset index at the end).
    indexed: bool
    #: The pass read every spectrum (no index in the file, or ``full_scan=True``): retention times are known.
    scanned: bool
    #: The document's encoding, as expat names it.
    encoding: str
    #: numpy type of the ``to_arrow`` intensities: ``<f4`` when the intensities seen are 32-bit floats, else ``<f8``.
    intensity_dtype: str
    #: ``referenceableParamGroup`` definitions, which spectra and arrays may refer to.
    param_groups: ParamGroups


class MzML(DataFormat):
    """An mzML or indexedmzML document (uncompressed)."""

    Attributes = MzMLAttributes
    options = {
        "full_scan": "read every spectrum in one streaming pass even when the file has its own index "
        "(for retention times, which partition_rt needs; default False: an indexed file's index pass reads only its index)"
    }
    #: Above ImzML's, whose sniff claims every ``<mzML`` document: an mzML without imzML's vocabulary is this format's.
    sniff_priority = 21

    @classmethod
    def sniff(cls, sample: Sample) -> Detection | None:
        """An uncompressed XML document with an ``<mzML`` or ``<indexedmzML`` root and no imzML vocabulary."""
        body = sample.decoded
        if sample.codec != "none" or not sample.lines() or not body.lstrip().startswith(b"<"):
            return None
        root = re.search(rb"<(indexedmzML|mzML)[\s>]", body)
        if root is None or any(marker in body for marker in _IMAGING):
            return None
        return cls.detected(sample, f"an XML document with an <{root.group(1).decode()}> root", ("UTF8Text",))

    @classmethod
    def preprocess(cls, ctx: PreprocessContext) -> IndexData:
        full_scan = ctx.options.get("full_scan", False)
        if not isinstance(full_scan, bool):
            raise StrategyArgumentError(ctx.obj.url, f"full_scan must be True or False, got {full_scan!r}")
        size = ctx.info.size
        if size == 0:
            raise InvalidFormatError(ctx.obj.url, "the object is empty: not an mzML document")
        tail = ctx.obj.read_range(max(0, size - TAIL_BYTES), size, expect=ctx.info)
        found = list(_INDEX_LIST_OFFSET.finditer(tail))
        if not found:
            return _scan(ctx, indexed=False)
        if full_scan:
            return _scan(ctx, indexed=True)
        return _from_index(ctx, tail, int(found[-1].group(1)))

    @classmethod
    def validate_index(cls, url: str, attributes: Any, tables: dict[str, np.ndarray], blob_sizes: dict[str, int], size: int) -> None:
        a = attributes
        missing = [name for name in TABLES if name not in tables]
        if missing or HEADER_BLOB not in blob_sizes:
            raise CorruptIndexError(url, f"mzML index tables or blobs missing: {missing or [HEADER_BLOB]}")
        spectra, rts, chromatograms = (tables[name] for name in TABLES)
        ok = (
            a.size == size
            and a.spectra >= 0
            and a.intensity_dtype in ("<f4", "<f8")
            and spectra.shape == (a.spectra + 1,)
            and rts.shape == (a.spectra,)
            and chromatograms.shape == (a.chromatograms,)
            and spectra.dtype.kind == chromatograms.dtype.kind == "i"
            and rts.dtype.kind == "f"
        )
        if not ok:
            raise CorruptIndexError(url, "mzML index does not fit its attributes (table shapes or data types)")
        offsets = np.concatenate((spectra, chromatograms))
        if np.any(offsets < 0) or np.any(offsets > size) or np.any(np.diff(spectra) <= 0) or np.any(np.diff(chromatograms) <= 0):
            raise CorruptIndexError(url, "mzML index offsets do not increase inside the object")
        if a.spectra and (blob_sizes[HEADER_BLOB] != spectra[0] or (a.chromatograms and chromatograms[0] < spectra[-1])):
            raise CorruptIndexError(url, "mzML index: the header or the chromatograms do not fit the spectra's offsets")


# -- the index pass ---------------------------------------------------------------------------------------


def _encoding(url: str, head: bytes) -> str:
    """The document's encoding (its XML declaration's, UTF-8 by default), if the pass can read it."""
    found = _DECLARED_ENCODING.match(head)
    name = found.group(1).decode().lower() if found else "utf-8"
    if name not in ENCODINGS:
        raise InvalidFormatError(url, f"the document's encoding {name!r} is not UTF-8, ISO-8859-1 or US-ASCII, which dataplug reads by byte offsets", offset=0)
    return ENCODINGS[name]


def _check_head(url: str, head: SpectrumParser, indexed: bool) -> None:
    """The document is an mzML (an indexedmzML when ``indexed``), not an imzML."""
    if head.imaging:
        raise InvalidFormatError(url, "this is an imzML (it uses the imaging vocabulary, IMS:): read it with format ImzML")
    want = "indexedmzML" if indexed else None
    if head.root not in ("indexedmzML", "mzML") or (want and head.root != want):
        raise InvalidFormatError(url, f"not an mzML document: its root element is <{head.root}>, not <{want or 'mzML'}>", offset=0)


def _scan(ctx: PreprocessContext, indexed: bool) -> IndexData:
    """The index of a document read front to back: every spectrum's start, retention time and intensity type."""
    url, info = ctx.obj.url, ctx.info
    head = ctx.obj.read_range(0, min(info.size, PROBE_BYTES), expect=info)
    encoding = _encoding(url, head)
    parser = SpectrumParser(url, encoding, {}, fragment=False, decode=False, keep=False)
    with ctx.obj.stream(info, block_size=min(SCAN_BLOCK, max(info.size, 1))) as raw:
        parser.feed_file(io.BufferedReader(raw, 2**20))
    _check_head(url, parser, indexed)
    starts = np.asarray(parser.starts, dtype=np.int64)
    if starts.size and parser.spectra_end is None:
        raise InvalidFormatError(url, "the <spectrumList> does not end")
    if parser.spectrum_count is not None and parser.spectrum_count != starts.size:
        raise InvalidFormatError(url, f"the <spectrumList> states count={parser.spectrum_count} but holds {starts.size} spectra")
    end = parser.spectra_end if starts.size else 0
    header = ctx.obj.read_range(0, int(starts[0]), expect=info) if starts.size else b""
    return _index_data(ctx, indexed, True, encoding, parser, starts, end, np.asarray(parser.rts, dtype=np.float64), parser.chromatograms, header)


def _index_data(
    ctx: PreprocessContext,
    indexed: bool,
    scanned: bool,
    encoding: str,
    parser: SpectrumParser,
    starts: np.ndarray,
    end: int | None,
    rts: np.ndarray,
    chromatograms: list[int] | np.ndarray,
    header: bytes,
) -> IndexData:
    if starts.size and not (header.rstrip().endswith(b">") and header[header.rfind(b"<") :].startswith(b"<spectrumList")):
        raise InvalidFormatError(ctx.obj.url, "the first <spectrum> does not follow the <spectrumList> start tag", offset=int(starts[0]))
    attributes = MzMLAttributes(
        size=ctx.info.size,
        spectra=int(starts.size),
        chromatograms=len(chromatograms),
        indexed=indexed,
        scanned=scanned,
        encoding=encoding,
        intensity_dtype="<f4" if parser.intensity_dtypes == {"<f4"} or not parser.intensity_dtypes else "<f8",
        param_groups=tuple(sorted(parser.groups.items())),
    )
    tables = {
        "spectrum_offset": np.append(starts, np.int64(end or 0)).astype(np.int64),
        "spectrum_rt": rts,
        "chromatogram_offset": np.asarray(chromatograms, dtype=np.int64),
    }
    return IndexData(attributes, tables=tables, blobs={HEADER_BLOB: header})


def _offsets(url: str, text: bytes, at: int) -> dict[str, tuple[np.ndarray, list[bytes]]]:
    """Offsets and ``idRef`` values of the ``<indexList>`` whose bytes (and what follows them) are ``text``."""
    if not text.lstrip().startswith(b"<indexList"):
        raise InvalidFormatError(url, f"indexListOffset points at byte {at}, where no <indexList> starts: the file's index is wrong", offset=at)
    stop = text.find(b"</indexList")
    if stop < 0:
        raise InvalidFormatError(url, "the <indexList> does not end: the object is truncated", offset=at)
    out: dict[str, tuple[np.ndarray, list[bytes]]] = {"spectrum": (np.zeros(0, np.int64), []), "chromatogram": (np.zeros(0, np.int64), [])}
    for found in _INDEX.finditer(text, 0, stop):
        name, body = found.group(1).decode(), found.group(2)
        entries = _OFFSET.findall(body)
        if len(entries) != body.count(b"<offset"):
            raise InvalidFormatError(url, f"the {name} index holds an <offset> that is not a whole number", offset=at + found.start())
        ids = [m.group(2) if (m := _ID_REF.search(attrs)) else b"" for attrs, _ in entries]
        out[name] = (np.array([int(number) for _, number in entries], dtype=np.int64), ids)
    return out


def _probe_ok(data: bytes, element: bytes, id_ref: bytes) -> bool:
    """Whether ``data`` starts with ``<element`` whose start tag has ``id`` ``id_ref``."""
    if not data.startswith(b"<" + element) or data[len(element) + 1 : len(element) + 2] not in (b" ", b"\t", b"\n", b"\r"):
        return False
    tag = data[: data.find(b">") if b">" in data else len(data)]
    found = _ID.search(tag)
    return found is not None and found.group(2) == id_ref


def _from_index(ctx: PreprocessContext, tail: bytes, at: int) -> IndexData:
    """The index of an indexedmzML from its own index: two or three range reads."""
    url, info, size = ctx.obj.url, ctx.info, ctx.info.size
    tail_start = size - len(tail)
    if not 0 < at < size:
        raise InvalidFormatError(url, f"indexListOffset {at} lies outside the object ({size} bytes)", offset=tail_start)
    text = tail[at - tail_start :] if at >= tail_start else ctx.obj.read_range(at, tail_start, expect=info) + tail
    found = _offsets(url, text, at)
    (starts, ids), (chromatograms, chromatogram_ids) = found["spectrum"], found["chromatogram"]
    end = int(chromatograms[0]) if chromatograms.size else at
    first = int(starts[0]) if starts.size else end
    bad = np.flatnonzero(np.diff(np.concatenate((starts, chromatograms, [at]))) <= 0)
    if bad.size or first <= 0:
        raise InvalidFormatError(url, "the file's index gives offsets that do not increase through the document: the index is wrong; preprocess(full_scan=True) reads the spectra instead", offset=at)
    if first > MAX_HEAD_BYTES:
        raise InvalidFormatError(url, f"the document holds {first} bytes before its first spectrum, over the {MAX_HEAD_BYTES} dataplug keeps (MAX_HEAD_BYTES)")
    bounds = np.append(starts, end)
    picks = sorted({0, starts.size // 2, starts.size - 1}) if starts.size else []
    ranges = [(0, first)] + [(int(bounds[i]), int(bounds[i + 1]) if i == 0 else int(min(bounds[i] + PROBE_BYTES, bounds[i + 1]))) for i in picks]
    if chromatograms.size:
        ranges.append((int(chromatograms[0]), int(min(chromatograms[0] + PROBE_BYTES, at))))
    parts = ctx.obj.read_ranges(ranges, expect=info)
    header = parts[0]
    encoding = _encoding(url, header)
    head = SpectrumParser(url, encoding, {}, fragment=False, decode=False, keep=False)
    head.feed(header)
    _check_head(url, head, indexed=True)
    if head.spectrum_count is not None and head.spectrum_count != starts.size:
        raise InvalidFormatError(url, f"the <spectrumList> states count={head.spectrum_count}, the file's index lists {starts.size} spectra")
    probes = [(b"spectrum", i, int(starts[i]), ids[i], part) for i, part in zip(picks, parts[1:])]
    if chromatograms.size:
        probes.append((b"chromatogram", 0, int(chromatograms[0]), chromatogram_ids[0], parts[-1]))
    for element, i, offset, id_ref, data in probes:
        if not _probe_ok(data, element, id_ref):
            cause = f"the file's index puts {element.decode()} {i} ({id_ref.decode(encoding, 'replace')!r}) at byte {offset}, where the object has {data[:40]!r}"
            raise InvalidFormatError(url, f"{cause}: the index is wrong; preprocess(full_scan=True) reads the spectra instead", offset=offset)
    if starts.size:
        parser = SpectrumParser(url, encoding, head.groups, fragment=True, decode=True, keep=True, base=int(starts[0]), expected=1)
        first_spectrum: Spectrum = parser.parse_run(parts[1])[0]
        if first_spectrum.intensity_dtype is not None:
            head.intensity_dtypes.add(first_spectrum.intensity_dtype)
    rts = np.full(starts.size, np.nan)
    return _index_data(ctx, True, False, encoding, head, starts, end, rts, chromatograms, header)


# -- strategies ------------------------------------------------------------------------------------------


def _slices(co: Any, groups: list[np.ndarray]) -> list[MzMLSlice]:
    """One slice per array of spectrum indices (each in document order)."""
    a, sidecar = co.attributes, co.index()
    offsets = sidecar.tables["spectrum_offset"]
    header = sidecar.blob(HEADER_BLOB)
    out = []
    for number, picks in enumerate(groups):
        picks = np.asarray(picks, dtype=np.int64)
        rows = np.column_stack([picks, offsets[picks], offsets[picks + 1]]).astype(np.int64).reshape(-1, 3)
        out.append(
            MzMLSlice(
                obj=co.obj,
                object_info=sidecar.object_info,
                number=number,
                rows=rows,
                encoding=a.encoding,
                intensity_dtype=a.intensity_dtype,
                param_groups=a.param_groups,
                header_ref=header,
                indexed=a.indexed,
            )
        )
    return out


@strategy(MzML)
def partition_num_chunks(co: Any, num_chunks: int) -> list[MzMLSlice]:
    """``num_chunks`` runs of consecutive spectra of about equal bytes, every spectrum in exactly one, in
    document order (with more slices than spectra, some slices are empty)."""
    n = positive_int(co.url, "num_chunks", num_chunks)
    offsets = co.index().tables["spectrum_offset"]
    spectra = offsets.size - 1
    if not spectra:
        return _slices(co, [np.zeros(0, np.int64)] * n)
    targets = offsets[0] + even_bounds(int(offsets[-1] - offsets[0]), n)
    bounds = np.searchsorted(offsets[:-1], targets, side="left")
    bounds[0], bounds[-1] = 0, spectra
    bounds = np.maximum.accumulate(bounds)
    return _slices(co, [np.arange(a, b) for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist())])


@strategy(MzML)
def partition_spectra(co: Any, num_chunks: int) -> list[MzMLSlice]:
    """``num_chunks`` runs of consecutive spectra (document order) whose counts differ by at most one."""
    bounds = even_bounds(co.attributes.spectra, positive_int(co.url, "num_chunks", num_chunks)).tolist()
    return _slices(co, [np.arange(a, b) for a, b in itertools.pairwise(bounds)])


@strategy(MzML)
def partition_rt(co: Any, rt_min: float, rt_max: float, num_chunks: int = 1) -> list[MzMLSlice]:
    """The spectra whose retention time (seconds) lies in ``[rt_min, rt_max]``, in document order, as
    ``num_chunks`` slices whose counts differ by at most one. Needs retention times in the index: a file
    without its own index has them; an indexedmzML needs ``preprocess(full_scan=True)``."""
    n = positive_int(co.url, "num_chunks", num_chunks)
    try:
        lo, hi = float(rt_min), float(rt_max)
    except (TypeError, ValueError):
        raise StrategyArgumentError(co.url, f"partition_rt needs numbers rt_min <= rt_max (seconds), got {rt_min!r}, {rt_max!r}") from None
    if math.isnan(lo) or math.isnan(hi) or lo > hi:
        raise StrategyArgumentError(co.url, f"partition_rt needs rt_min <= rt_max (seconds), got {rt_min!r}, {rt_max!r}")
    if not co.attributes.scanned:
        raise StrategyArgumentError(
            co.url,
            "the index holds no retention times: the index pass read only the file's own offset index; "
            "run preprocess(full_scan=True, force=True), which reads every spectrum's scan start time in one pass",
        )
    rts = co.index().tables["spectrum_rt"]
    picks = np.flatnonzero((rts >= lo) & (rts <= hi))
    bounds = even_bounds(picks.size, n).tolist()
    return _slices(co, [picks[a:b] for a, b in itertools.pairwise(bounds)])

