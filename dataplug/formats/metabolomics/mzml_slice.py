"""mzML spectra: the streaming parser of ``<spectrum>`` elements (the standard library's expat, never a DOM)
and the slice that reads a run of them with range reads.

The parser serves the index pass (over the whole document, or over its head) and the slices (over the
bytes of their spectra, wrapped in a root element of their own). It keeps, per spectrum, its byte
extent, ``id``, ``index``, MS level, retention time (the first scan's ``scan start time``, in seconds) and,
when asked to decode, its m/z and intensity arrays: base64, raw or zlib, 32- or 64-bit floats or integers,
with their parameters given directly or through a ``referenceableParamGroupRef``. MS-Numpress and other
compressions are refused with an :class:`InvalidFormatError` naming the spectrum.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import re
import zlib
from dataclasses import dataclass, field
from typing import Any, BinaryIO, ClassVar
from xml.parsers import expat
from xml.sax.saxutils import escape

import numpy as np
import pyarrow as pa

from dataplug.errors import CorruptIndexError, DataplugError, InvalidFormatError
from dataplug.sidecar import BlobRef
from dataplug.slice import CloudObjectSlice

#: A cvParam as the parser keeps it: accession, name, value, unit accession, unit name.
Param = tuple[str, str, str, str, str]
#: referenceableParamGroup id -> its cvParams.
ParamGroups = tuple[tuple[str, tuple[Param, ...]], ...]

MS_LEVEL, SCAN_START_TIME = "MS:1000511", "MS:1000016"
MZ_ARRAY, INTENSITY_ARRAY = "MS:1000514", "MS:1000515"
ZLIB, NO_COMPRESSION = "MS:1000574", "MS:1000576"
#: Binary data types of the arrays, as little-endian numpy types (mzML stores little-endian numbers).
DTYPES = {"MS:1000521": "<f4", "MS:1000523": "<f8", "MS:1000519": "<i4", "MS:1000522": "<i8"}
#: MS-Numpress compressions, alone or followed by zlib: no dependency of dataplug decodes them.
NUMPRESS = {
    "MS:1002312": "MS-Numpress linear prediction",
    "MS:1002313": "MS-Numpress positive integer",
    "MS:1002314": "MS-Numpress short logged float",
    "MS:1002746": "MS-Numpress linear prediction followed by zlib",
    "MS:1002747": "MS-Numpress positive integer followed by zlib",
    "MS:1002748": "MS-Numpress short logged float followed by zlib",
}
#: Seconds per unit of a retention time, by unit accession and by unit name.
TIME_UNITS = {"UO:0000010": 1.0, "UO:0000031": 60.0, "MS:1000038": 60.0, "UO:0000032": 3600.0}
TIME_UNIT_NAMES = {"second": 1.0, "minute": 60.0, "hour": 3600.0}
#: Root element of a slice's bytes while they are parsed (the spectra are its children).
_FRAGMENT_OPEN, _FRAGMENT_CLOSE = b"<dataplug-fragment>", b"</dataplug-fragment>"
_INDEX_ATTRIBUTE = re.compile(rb"""(\sindex\s*=\s*["'])[0-9]*(["'])""")
_COUNT_ATTRIBUTE = re.compile(rb"""(\scount\s*=\s*["'])[0-9]*(["'])""")


class _Done(Exception):
    """Raised inside a handler to stop expat once a slice's last spectrum ended."""


@dataclass
class Spectrum:
    """One ``<spectrum>`` as the parser read it; ``start`` and ``end`` are byte offsets in the object."""

    start: int
    id: str
    index: int | None
    length: int | None
    end: int = 0
    ms_level: int | None = None
    #: Retention time in seconds (the first scan's ``scan start time``; a value without a unit is taken as seconds).
    rt: float | None = None
    mz: np.ndarray | None = None
    intensity: np.ndarray | None = None
    #: numpy type of the stored intensities (``None``: no intensity array).
    intensity_dtype: str | None = None


@dataclass
class _Array:
    length: int | None
    kind: str | None = None
    dtype: str | None = None
    compression: str = NO_COMPRESSION
    unsupported: str | None = None
    text: list[str] = field(default_factory=list)


def group_dict(groups: ParamGroups) -> dict[str, tuple[Param, ...]]:
    return {name: params for name, params in groups}


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


class SpectrumParser:
    """expat handlers turning ``<spectrum>`` elements into :class:`Spectrum` records.

    ``fragment``: the bytes fed are a run of whole spectra (a slice's), parsing stops after ``expected``
    of them and any element outside a spectrum is an error; otherwise a whole document (or its head) is
    fed, and the parser also records the root element, the referenceable parameter groups, the
    ``spectrumList``'s count and end, and the chromatograms' starts. ``decode``: decode the m/z and
    intensity arrays (else only their types are noted). ``keep``: keep each spectrum (else only its start,
    retention time and intensity type, for the index pass).
    """

    def __init__(
        self,
        url: str,
        encoding: str,
        groups: dict[str, tuple[Param, ...]],
        *,
        fragment: bool,
        decode: bool,
        keep: bool,
        base: int = 0,
        expected: int = 0,
    ) -> None:
        self.url, self.groups, self.fragment, self.decode, self.keep = url, dict(groups), fragment, decode, keep
        self.base, self.expected = base, expected
        self.parser = expat.ParserCreate(encoding)
        self.parser.buffer_text = True
        self.parser.StartElementHandler = self._start
        self.parser.EndElementHandler = self._end
        self.data: bytes = b""
        self.spectra: list[Spectrum] = []
        self.starts: list[int] = []
        self.rts: list[float] = []
        self.intensity_dtypes: set[str] = set()
        self.root: str | None = None
        self.imaging = False
        self.spectrum_count: int | None = None
        self.spectra_end: int | None = None
        self.chromatograms: list[int] = []
        self.chromatograms_end: int | None = None
        self._depth = 0
        self._spectrum: Spectrum | None = None
        self._array: _Array | None = None
        self._scan = 0
        self._scans = 0
        self._group: tuple[str, list[Param]] | None = None

    # -- feeding ------------------------------------------------------------------------------------------

    def feed(self, data: bytes, final: bool = False) -> None:
        """Parse ``data``, the next bytes of a document."""
        try:
            self.parser.Parse(data, final)
        except expat.ExpatError as exc:
            raise InvalidFormatError(
                self.url, f"not well-formed XML: {expat.ErrorString(exc.code)}", offset=self.base + self.parser.ErrorByteIndex
            ) from None

    def feed_file(self, fh: BinaryIO) -> None:
        """Parse a whole document from a file object."""
        try:
            self.parser.ParseFile(fh)
        except expat.ExpatError as exc:
            raise InvalidFormatError(
                self.url, f"not well-formed XML: {expat.ErrorString(exc.code)}", offset=self.base + self.parser.ErrorByteIndex
            ) from None

    def parse_run(self, data: bytes) -> list[Spectrum]:
        """The ``expected`` spectra of ``data``, bytes of the object from ``base`` on that start with a
        ``<spectrum>`` element."""
        self.data = data
        self.base -= len(_FRAGMENT_OPEN)
        try:
            self.feed(_FRAGMENT_OPEN)
            self.feed(data)
            self.feed(_FRAGMENT_CLOSE, True)
        except _Done:
            return self.spectra
        raise CorruptIndexError(
            self.url,
            f"the index puts {self.expected} spectra in bytes [{self.base + len(_FRAGMENT_OPEN)}, +{len(data)}), "
            f"which hold {len(self.spectra)}: the index does not describe this object; run preprocess(force=True)",
        )

    def _here(self) -> int:
        return self.base + self.parser.CurrentByteIndex

    # -- handlers -----------------------------------------------------------------------------------------

    def _start(self, name: str, attrs: dict[str, str]) -> None:
        if ":" in name:
            name = name.rpartition(":")[2]
        self._depth += 1
        if self._depth == 1 and self.root is None:
            self.root = name
        if self.fragment and self._depth == 2 and name != "spectrum":
            raise CorruptIndexError(self.url, f"the index points at a <{name}> element where a <spectrum> should start: run preprocess(force=True)")
        if name == "cvParam":
            if self._spectrum is not None or self._group is not None:
                self._param(
                    (
                        attrs.get("accession", ""),
                        attrs.get("name", ""),
                        attrs.get("value", ""),
                        attrs.get("unitAccession", ""),
                        attrs.get("unitName", ""),
                    )
                )
            elif attrs.get("accession", "").startswith("IMS:"):
                self.imaging = True
        elif name == "binary":
            if self._array is not None and self.decode and self._array.kind is not None:
                self.parser.CharacterDataHandler = self._array.text.append
        elif name == "binaryDataArray":
            if self._spectrum is not None:
                self._array = _Array(_int(attrs.get("arrayLength")))
                if self._array.length is None:
                    self._array.length = self._spectrum.length
        elif name == "referenceableParamGroupRef":
            if self._spectrum is not None:
                ref = attrs.get("ref", "")
                if ref not in self.groups:
                    raise InvalidFormatError(
                        self.url,
                        f"spectrum {self._spectrum.id!r} refers to referenceableParamGroup {ref!r}, which the file does not define",
                        offset=self._here(),
                    )
                for param in self.groups[ref]:
                    self._param(param)
        elif name == "scan":
            if self._spectrum is not None:
                self._scan += 1
        elif name == "spectrum":
            self._open_spectrum(attrs)
        elif name == "referenceableParamGroup":
            self._group = (attrs.get("id", ""), [])
        elif name == "spectrumList":
            self.spectrum_count = _int(attrs.get("count"))
        elif name == "chromatogram":
            self.chromatograms.append(self._here())

    def _open_spectrum(self, attrs: dict[str, str]) -> None:
        if self._spectrum is not None:
            raise InvalidFormatError(self.url, "a <spectrum> inside another", offset=self._here())
        if self.fragment and self._depth != 2:
            raise CorruptIndexError(self.url, "the index points inside an element where a <spectrum> should start: run preprocess(force=True)")
        self._spectrum = Spectrum(self._here(), attrs.get("id", ""), _int(attrs.get("index")), _int(attrs.get("defaultArrayLength")))
        self._scans = 0

    def _param(self, param: Param) -> None:
        accession, name = param[0], param[1]
        if self._group is not None and self._spectrum is None:
            self._group[1].append(param)
            return
        spectrum, array = self._spectrum, self._array
        assert spectrum is not None
        if array is not None:
            if accession in DTYPES:
                array.dtype = DTYPES[accession]
            elif accession in (MZ_ARRAY, INTENSITY_ARRAY):
                array.kind = accession
            elif accession in (ZLIB, NO_COMPRESSION):
                array.compression = accession
            elif accession in NUMPRESS:
                array.unsupported = f"{NUMPRESS[accession]} ({accession})"
            elif name.endswith("compression") or accession == "MS:1001479":
                array.unsupported = f"{name or 'an unknown encoding'} ({accession})"
        elif accession == MS_LEVEL:
            spectrum.ms_level = _int(param[2])
        elif accession == SCAN_START_TIME and self._scan and self._scans == 0 and spectrum.rt is None:
            spectrum.rt = _seconds(self.url, param, self._here())

    def _end(self, name: str) -> None:
        if ":" in name:
            name = name.rpartition(":")[2]
        self._depth -= 1
        if name == "binary":
            self.parser.CharacterDataHandler = None
        elif name == "binaryDataArray":
            if self._array is not None:
                self._close_array(self._array)
            self._array = None
        elif name == "scan":
            if self._spectrum is not None:
                self._scan -= 1
                self._scans += 1
        elif name == "spectrum" and self._spectrum is not None:
            self._close_spectrum(self._spectrum)
        elif name == "referenceableParamGroup" and self._group is not None:
            self.groups[self._group[0]] = tuple(self._group[1])
            self._group = None
        elif name == "spectrumList":
            self.spectra_end = self._here()
        elif name == "chromatogramList":
            self.chromatograms_end = self._here()

    def _close_array(self, array: _Array) -> None:
        spectrum = self._spectrum
        assert spectrum is not None
        if array.kind is None:
            return
        what = "m/z" if array.kind == MZ_ARRAY else "intensity"
        if array.unsupported is not None:
            cause = f"spectrum {spectrum.id!r}: its {what} array is encoded with {array.unsupported}, which dataplug does not decode (write the file without it, e.g. msconvert without --numpress)"
            raise InvalidFormatError(self.url, cause, offset=spectrum.start)
        if array.dtype is None:
            raise InvalidFormatError(
                self.url, f"spectrum {spectrum.id!r}: its {what} array states no data type (32/64-bit float or integer)", offset=spectrum.start
            )
        if array.kind == INTENSITY_ARRAY:
            spectrum.intensity_dtype = array.dtype
        if self.decode:
            values = _decode(self.url, spectrum, what, array)
            if array.kind == MZ_ARRAY:
                spectrum.mz = values
            else:
                spectrum.intensity = values

    def _close_spectrum(self, spectrum: Spectrum) -> None:
        if self.fragment:
            local = self.parser.CurrentByteIndex - len(_FRAGMENT_OPEN)
            if self.data[local : local + 2] == b"</":
                local = self.data.find(b">", local) + 1
            spectrum.end = self.base + len(_FRAGMENT_OPEN) + local
        self._spectrum = None
        if spectrum.intensity_dtype is not None:
            self.intensity_dtypes.add(spectrum.intensity_dtype)
        if self.keep:
            self.spectra.append(spectrum)
        else:
            self.starts.append(spectrum.start)
            self.rts.append(np.nan if spectrum.rt is None else spectrum.rt)
        if self.fragment and len(self.spectra) == self.expected:
            raise _Done


def _seconds(url: str, param: Param, offset: int) -> float:
    """A ``scan start time`` in seconds, from its unit (accession, else name; none: seconds)."""
    try:
        value = float(param[2])
    except ValueError:
        raise InvalidFormatError(url, f"a scan start time {param[2][:40]!r} is not a number", offset=offset) from None
    unit, unit_name = param[3], param[4]
    if unit in TIME_UNITS:
        return value * TIME_UNITS[unit]
    if unit_name in TIME_UNIT_NAMES:
        return value * TIME_UNIT_NAMES[unit_name]
    if unit or unit_name:
        raise InvalidFormatError(url, f"a scan start time in unit {unit_name or unit!r}, not seconds, minutes or hours", offset=offset)
    return value


def _decode(url: str, spectrum: Spectrum, what: str, array: _Array) -> np.ndarray:
    """An array's values: base64, then zlib when stated, as its little-endian type."""
    assert array.dtype is not None
    text = "".join(array.text)
    try:
        raw = base64.b64decode(text) if text else b""
        if array.compression == ZLIB and raw:
            raw = zlib.decompress(raw)
    except (binascii.Error, zlib.error, ValueError) as exc:
        raise InvalidFormatError(url, f"spectrum {spectrum.id!r}: its {what} array does not decode ({exc})", offset=spectrum.start) from None
    itemsize = np.dtype(array.dtype).itemsize
    if len(raw) % itemsize or (array.length is not None and len(raw) // itemsize != array.length):
        cause = f"spectrum {spectrum.id!r}: its {what} array holds {len(raw)} bytes, not {array.length} values of {itemsize} bytes"
        raise InvalidFormatError(url, cause, offset=spectrum.start)
    return np.frombuffer(raw, array.dtype)


def merge_runs(rows: np.ndarray) -> list[tuple[int, int, int]]:
    """Runs of adjacent spectra (one's end is the next's start) as (first row, start, end)."""
    runs: list[tuple[int, int, int]] = []
    for i, (start, end) in enumerate(rows[:, 1:3].tolist()):
        if runs and runs[-1][2] == start:
            runs[-1] = (runs[-1][0], runs[-1][1], end)
        else:
            runs.append((i, start, end))
    return runs


@dataclass(eq=False)
class MzMLSlice(CloudObjectSlice):
    """Spectra of an mzML object, read with one ``read_ranges`` call (adjacent spectra as one range).

    ``rows`` is an (n, 3) int64 array, one row per spectrum in document order: its index in the file, and
    the ``[start, end)`` bytes the index gives it (from its ``<spectrum`` to the next spectrum's, or to
    the end of the spectrum list). The parser checks that each spectrum starts where its row says and
    has that ``index``, so an index that does not fit the object is a :class:`CorruptIndexError`, not
    wrong spectra. ``header_ref`` is the document's bytes before the first spectrum (for :meth:`dump`).
    """

    rows: np.ndarray
    encoding: str
    intensity_dtype: str
    param_groups: ParamGroups
    header_ref: BlobRef
    indexed: bool
    binary_output: ClassVar[bool] = False

    @property
    def num_records(self) -> int:
        """Spectra in the slice: the rows of :meth:`to_arrow`."""
        return int(self.rows.shape[0])

    @property
    def spectrum_indices(self) -> np.ndarray:
        """Index of each of the slice's spectra in the file (pyteomics' ``spectrum['index']``)."""
        return self.rows[:, 0]

    def byte_range(self) -> tuple[int, int] | None:
        """``[start, end)`` covering every spectrum the slice reads (``None`` without spectra)."""
        if not self.num_records:
            return None
        return int(self.rows[0, 1]), int(self.rows[-1, 2])

    def spectra(self, decode: bool = True) -> list[Spectrum]:
        """The slice's spectra, parsed (their arrays decoded unless ``decode`` is false)."""
        return self._parse(*self._read(), decode)

    def _read(self) -> tuple[list[tuple[int, int, int]], list[bytes]]:
        """The slice's runs of adjacent spectra and their bytes, in one ``read_ranges`` call pinned to the
        indexed object."""
        runs = merge_runs(self.rows)
        return runs, self.obj.read_ranges([(start, end) for _, start, end in runs], expect=self.object_info)

    def _parse(self, runs: list[tuple[int, int, int]], parts: list[bytes], decode: bool) -> list[Spectrum]:
        groups = group_dict(self.param_groups)
        bounds = [first for first, _, _ in runs] + [self.num_records]
        out: list[Spectrum] = []
        for (first, start, _), stop, data in zip(runs, bounds[1:], parts):
            parser = SpectrumParser(self.url, self.encoding, groups, fragment=True, decode=decode, keep=True, base=start, expected=stop - first)
            for row, spectrum in zip(self.rows[first:stop].tolist(), parser.parse_run(data)):
                if spectrum.start != row[1] or (spectrum.index is not None and spectrum.index != row[0]):
                    raise CorruptIndexError(
                        self.url,
                        f"the index puts spectrum {row[0]} at byte {row[1]}, but the object has spectrum index {spectrum.index} at byte {spectrum.start}: "
                        "run preprocess(force=True)",
                    )
                out.append(spectrum)
        return out

    def get(self) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """``(id, mz, intensity)`` for each spectrum, the arrays in their stored types (read-only)."""
        empty = np.zeros(0)
        return [(s.id, empty if s.mz is None else s.mz, empty if s.intensity is None else s.intensity) for s in self.spectra()]

    def schema(self) -> pa.Schema:
        """``id`` (string), ``index`` and ``ms_level`` (int64), ``rt`` (float64, seconds), ``mz``
        (list<double>) and ``intensity`` (list<float>, or list<double> when the file stores 64-bit or
        integer intensities)."""
        intensity = pa.float32() if self.intensity_dtype == "<f4" else pa.float64()
        return pa.schema(
            [
                ("id", pa.string()),
                ("index", pa.int64()),
                ("ms_level", pa.int64()),
                ("rt", pa.float64()),
                ("mz", pa.list_(pa.float64())),
                ("intensity", pa.list_(intensity)),
            ]
        )

    def to_arrow(self, columns: list[str] | None = None) -> pa.Table:
        """One row per spectrum, in document order, with the columns of :meth:`schema` (only ``columns``
        when given; without ``mz`` and ``intensity`` no array is decoded)."""
        schema = self.schema()
        wanted = list(schema.names) if columns is None else list(columns)
        unknown = [c for c in wanted if c not in schema.names]
        if unknown:
            raise KeyError(f"{self.url}: no column {unknown} in an mzML slice; columns: {schema.names}")
        spectra = self.spectra(decode=bool({"mz", "intensity"} & set(wanted)))
        data: dict[str, Any] = {
            "id": lambda: pa.array([s.id for s in spectra], pa.string()),
            "index": lambda: pa.array(self.rows[:, 0], pa.int64()),
            "ms_level": lambda: pa.array([s.ms_level for s in spectra], pa.int64()),
            "rt": lambda: pa.array([s.rt for s in spectra], pa.float64()),
            "mz": lambda: self._list([s.mz for s in spectra], schema.field("mz").type),
            "intensity": lambda: self._list([s.intensity for s in spectra], schema.field("intensity").type),
        }
        return pa.table({c: data[c]() for c in wanted}, schema=pa.schema([schema.field(c) for c in wanted]))

    def _list(self, pieces: list[np.ndarray | None], kind: pa.DataType) -> pa.Array:
        """A list<...> column of one array per spectrum (none: an empty list); 64-bit or integer values
        in a list<float> column (the first spectrum stored 32-bit floats) are an error, not rounded."""
        dtype = np.dtype(kind.value_type.to_pandas_dtype())
        arrays = [np.zeros(0, dtype) if p is None else p for p in pieces]
        for array, row in zip(arrays, self.rows[:, 0].tolist()):
            if dtype == np.float32 and array.dtype != dtype and array.size:
                raise InvalidFormatError(
                    self.url,
                    f"spectrum {row} stores {array.dtype} intensities where the index pass found 32-bit floats; "
                    "run preprocess(full_scan=True, force=True) so that the index looks at every spectrum",
                )
        counts = np.fromiter((a.size for a in arrays), dtype=np.int64, count=len(arrays))
        offsets = np.concatenate(([0], np.cumsum(counts)))
        if offsets[-1] >= 2**31:
            raise DataplugError(self.url, f"a slice of {offsets[-1]} values overflows an Arrow list column; partition into more slices")
        values = np.concatenate(arrays).astype(dtype, copy=False) if arrays else np.zeros(0, dtype)
        return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(values), type=kind)

    def dump(self, fp: BinaryIO) -> None:
        """Write the slice as an mzML file of its own: the source's bytes before its first spectrum (the
        ``spectrumList`` count set to the slice's), the slice's spectra as stored (``index`` renumbered from
        0), and the closing tags; an indexedmzML source gives an indexedmzML, with its offset index and
        SHA-1 file checksum."""
        header = self.header_ref.read()
        at = header.rfind(b"<spectrumList")
        runs, parts = self._read()
        spectra = self._parse(runs, parts, decode=False)
        header = header[:at] + _COUNT_ATTRIBUTE.sub(rb"\g<1>" + str(len(spectra)).encode() + rb"\g<2>", header[at:], count=1)
        out = io.BytesIO()
        out.write(header)
        offsets = []
        run = 0
        for i, spectrum in enumerate(spectra):
            while run + 1 < len(runs) and runs[run + 1][0] <= i:
                run += 1
            element = parts[run][spectrum.start - runs[run][1] : spectrum.end - runs[run][1]]
            tag_end = element.find(b">")
            offsets.append((spectrum.id, out.tell()))
            out.write(_INDEX_ATTRIBUTE.sub(rb"\g<1>" + str(i).encode() + rb"\g<2>", element[:tag_end], count=1))
            out.write(element[tag_end:])
            out.write(b"\n")
        out.write(b"</spectrumList>\n</run>\n</mzML>\n")
        if self.indexed:
            index_at = out.tell()
            out.write(b'<indexList count="1">\n<index name="spectrum">\n')
            for name, offset in offsets:
                out.write(f'<offset idRef="{escape(name, {chr(34): "&quot;"})}">{offset}</offset>\n'.encode(self.encoding))
            out.write(f"</index>\n</indexList>\n<indexListOffset>{index_at}</indexListOffset>\n<fileChecksum>".encode())
            out.write(hashlib.sha1(out.getvalue()).hexdigest().encode() + b"</fileChecksum>\n</indexedmzML>\n")
        fp.write(out.getvalue())
