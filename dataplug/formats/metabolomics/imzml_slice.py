"""Slices of an imzML dataset: some spectra, read from the ``.ibd`` with range reads.

A slice carries one row per spectrum (its index in the file, pixel x, y and z, and the offset and element
count of its m/z and intensity arrays), so its worker needs no index and no XML. It fetches the byte ranges
of its arrays in one ``read_ranges`` call, each distinct range asked once (a continuous dataset's shared m/z
array is fetched once) and near ones joined into one request by the store (a run of spectra in file order is
one request), after one metadata request that checks the ``.imzML`` is the indexed one. A slice written out is an ``.imzML`` and its ``.ibd``
(:meth:`ImzMLSlice.dump_to`), written by pyimzml's ``ImzMLWriter``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, ClassVar

import numpy as np
import pyarrow as pa

from dataplug.errors import DataplugError
from dataplug.slice import CloudObjectSlice
from dataplug.storage import ObjectInfo, StorageObject

#: Columns of a slice's ``rows``.
INDEX, X, Y, MZ_OFFSET, MZ_COUNT, INTENSITY_OFFSET, INTENSITY_COUNT, Z = range(8)
ROW_WIDTH = 8
#: The spectrum types and polarities pyimzml's ``ImzMLWriter`` can state.
_WRITER_SPECTRUM_TYPES = ("centroid", "profile")
_WRITER_POLARITIES = ("positive", "negative")


@dataclass(eq=False)
class ImzMLSlice(CloudObjectSlice):
    """Spectra of an imzML dataset (``obj`` is the ``.imzML``; the arrays are read from ``ibd``).

    ``rows`` is an (n, 8) int64 array, one row per spectrum in the order the slice returns them (file
    order): spectrum index, x, y, m/z offset, m/z count, intensity offset, intensity count, z (offsets in
    bytes into the ``.ibd``, counts in elements). ``image`` is the dataset's pixel grid (x origin, y origin,
    width, height). ``window`` is the rectangle of pixels a spatial strategy selected, in rasterio's
    ``Window`` order ``(col_off, row_off, width, height)`` in the file's own 1-based pixel coordinates
    (column = x, row = y); ``None`` for a run of spectra in file order. ``continuous``, ``spectrum_type``
    and ``polarity`` are the dataset's, so that :meth:`dump_to` writes the slice as the source states it.
    """

    ibd: StorageObject
    ibd_info: ObjectInfo
    mz_dtype: str
    intensity_dtype: str
    rows: np.ndarray
    image: tuple[int, int, int, int]
    window: tuple[int, int, int, int] | None = None
    continuous: bool = False
    spectrum_type: str | None = None
    polarity: str | None = None
    #: :meth:`dump` writes no text (an imzML slice is an ``.imzML`` and a binary ``.ibd``).
    binary_output: ClassVar[bool] = True

    @property
    def num_spectra(self) -> int:
        return int(self.rows.shape[0])

    @property
    def num_records(self) -> int:
        """Spectra in the slice: the rows of :meth:`to_arrow`."""
        return int(self.rows.shape[0])

    @property
    def bounds(self) -> tuple[int, int, int, int] | None:
        """``(minx, miny, maxx, maxy)`` of :attr:`window` in pixel x/y, half-open: the slice holds the
        spectra with ``minx <= x < maxx`` and ``miny <= y < maxy``. ``None`` when ``window`` is."""
        if self.window is None:
            return None
        col, row, width, height = self.window
        return col, row, col + width, row + height

    def _ranges(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The ``.ibd`` range ``[start, end)`` and the element count of each array (m/z arrays first, then
        intensity arrays)."""
        r, n = self.rows, self.num_spectra
        offsets = np.concatenate((r[:, MZ_OFFSET], r[:, INTENSITY_OFFSET]))
        counts = np.concatenate((r[:, MZ_COUNT], r[:, INTENSITY_COUNT]))
        sizes = np.repeat([np.dtype(self.mz_dtype).itemsize, np.dtype(self.intensity_dtype).itemsize], n)
        return offsets, offsets + counts * sizes, counts

    def byte_range(self) -> tuple[int, int] | None:
        """``[start, end)`` of the ``.ibd``: the smallest span covering every array the slice reads
        (``None`` for a slice without spectra; an empty range at its first array when all are empty)."""
        if not self.num_spectra:
            return None
        starts, ends, counts = self._ranges()
        read = counts > 0
        if not read.any():
            start = int(starts.min())
            return start, start
        return int(starts[read].min()), int(ends[read].max())

    @property
    def spectrum_indices(self) -> np.ndarray:
        """Index of each of the slice's spectra in the ``.imzML`` (pyimzml's ``getspectrum(i)``)."""
        return self.rows[:, INDEX]

    def _arrays(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Each spectrum's (m/z, intensity) arrays: read-only views of the bytes fetched in one call (one view
        for every spectrum that shares an m/z array, as in continuous mode). The ``.ibd`` reads are pinned to
        the indexed ``.ibd``; one metadata request checks the ``.imzML``, whose pixels and offsets the slice
        carries, so a slice made before either file was replaced raises :class:`StaleIndexError`."""
        mz_type, int_type = np.dtype(self.mz_dtype), np.dtype(self.intensity_dtype)
        n = self.num_spectra
        starts, ends, counts = self._ranges()
        spans = list(zip(starts.tolist(), ends.tolist()))
        asked = list(dict.fromkeys(span for span, count in zip(spans, counts.tolist()) if count))
        self.obj.check_unchanged(self.object_info)
        data = dict(zip(asked, self.ibd.read_ranges(asked, expect=self.ibd_info)))
        views: list[np.ndarray] = []
        shared: dict[tuple[int, int], np.ndarray] = {}
        for j, (span, count) in enumerate(zip(spans, counts.tolist())):
            dtype = mz_type if j < n else int_type
            if not count:
                views.append(np.zeros(0, dtype))
            elif j < n:
                views.append(shared.setdefault(span, np.frombuffer(data[span], dtype, count)))
            else:
                views.append(np.frombuffer(data[span], dtype, count))
        return zip(views[:n], views[n:])

    def get(self) -> list[tuple[int, int, np.ndarray, np.ndarray]]:
        """``(x, y, mz, intensity)`` for each spectrum, the arrays in the file's data types (read-only, as
        pyimzml's ``getspectrum`` returns them)."""
        return [(x, y, mz, intensity) for (x, y), (mz, intensity) in zip(self.rows[:, [X, Y]].tolist(), self._arrays())]

    def dump(self, fp: BinaryIO) -> None:
        """Refused: an imzML slice is two files, an ``.imzML`` and its ``.ibd``; :meth:`dump_to` writes them."""
        raise DataplugError(
            self.url, "an imzML slice is two files (an .imzML and its .ibd) and cannot be written to one stream; use dump_to(path), which writes both"
        )

    def dump_to(self, path: str | os.PathLike[str]) -> Path:
        """Write the slice as ``<path>.imzML`` and ``<path>.ibd`` (``path`` may end in ``.imzML`` already)
        with pyimzml's ``ImzMLWriter``: each spectrum's pixel (x, y, z), m/z and intensity arrays in the
        source's data types, continuous or processed as the source is, in the slice's order. Returns the
        path of the ``.imzML``."""
        path = Path(path)
        target = path.with_suffix(".imzML") if path.suffix.lower() == ".imzml" else path.with_name(path.name + ".imzML")
        if not self.num_spectra:
            raise DataplugError(self.url, f"slice {self.number} has no spectra, and an imzML file (pyimzml's writer) needs at least one")
        writer = _writer_class()(
            str(target),
            mz_dtype=np.dtype(self.mz_dtype).type,
            intensity_dtype=np.dtype(self.intensity_dtype).type,
            mode="continuous" if self.continuous else "processed",
            spec_type=self.spectrum_type if self.spectrum_type in _WRITER_SPECTRUM_TYPES else "",
            polarity=self.polarity if self.polarity in _WRITER_POLARITIES else None,
        )
        with writer:
            for (x, y, z), (mz, intensity) in zip(self.rows[:, [X, Y, Z]].tolist(), self._arrays()):
                writer.addSpectrum(mz, intensity, (x, y, z))
        return target

    def schema(self) -> pa.Schema:
        """``x``, ``y`` (int64), ``mz`` (list<double>), ``intensity`` (list<float>; list<double> when the file
        stores 64-bit or integer intensities, so that no value is rounded)."""
        intensity = pa.float32() if np.dtype(self.intensity_dtype) == np.float32 else pa.float64()
        return pa.schema([("x", pa.int64()), ("y", pa.int64()), ("mz", pa.list_(pa.float64())), ("intensity", pa.list_(intensity))])

    def to_arrow(self, columns: list[str] | None = None) -> pa.Table:
        """One row per spectrum, in the slice's order, with the columns of :meth:`schema`."""
        schema = self.schema()
        wanted = list(schema.names) if columns is None else list(columns)
        unknown = [c for c in wanted if c not in schema.names]
        if unknown:
            raise KeyError(f"{self.url}: no column {unknown} in an imzML slice; columns: {schema.names}")
        if {"mz", "intensity"} & set(wanted):
            arrays = list(self._arrays())
        else:  # pixels only: nothing to read from the .ibd, but they come from the .imzML's index
            self.obj.check_unchanged(self.object_info)
            arrays = []
        data = {"x": pa.array(self.rows[:, X]), "y": pa.array(self.rows[:, Y])}
        for name, k in (("mz", 0), ("intensity", 1)):
            if name in wanted:
                kind = schema.field(name).type
                data[name] = _list_array(self.url, [a[k] for a in arrays], kind.value_type.to_pandas_dtype(), kind)
        return pa.table({c: data[c] for c in wanted}, schema=pa.schema([schema.field(c) for c in wanted]))

    def ion_sums(self, lo: float, hi: float) -> np.ndarray:
        """Per spectrum, the sum (float64) of the intensities whose m/z lies in ``[lo, hi]``."""
        out = np.zeros(self.num_spectra)
        mz_seen, mask = None, None
        for i, (mz, intensity) in enumerate(self._arrays()):
            if mz is not mz_seen:  # continuous mode: one m/z array, one mask
                mz_seen, mask = mz, (mz >= lo) & (mz <= hi)
            out[i] = intensity[mask].sum(dtype=np.float64)
        return out


@functools.cache
def _writer_class() -> type:
    """pyimzml's ``ImzMLWriter``, taking spectra without peaks too (its own ``addSpectrum`` computes their
    lowest m/z and base peak, and fails on empty arrays). Such a spectrum states its lowest, highest and
    base peak m/z as ``NaN`` (xsd:double's not-a-number), its base peak intensity and TIC as 0."""
    from pyimzml.ImzMLWriter import ImzMLWriter, _Spectrum

    class Writer(ImzMLWriter):  # type: ignore[misc]
        def addSpectrum(self, mzs: np.ndarray, intensities: np.ndarray, coords: tuple[int, ...]) -> None:
            if len(intensities):
                return super().addSpectrum(mzs, intensities, coords)
            if self.mode != "continuous":
                mz_data = self._encode_and_write(mzs, self.mz_dtype, self.mz_compression)
            else:
                self.first_mz = self.first_mz or self._encode_and_write(mzs, self.mz_dtype, self.mz_compression)
                mz_data = self.first_mz
            mz_offset, mz_len, mz_enc_len = mz_data
            int_offset, int_len, int_enc_len = self._encode_and_write(intensities, self.intensity_dtype, self.intensity_compression)
            spectrum = _Spectrum(coords, mz_len, mz_offset, mz_enc_len, int_len, int_offset, int_enc_len, "NaN", "NaN", "NaN", 0, 0, [])
            self.spectra.append(spectrum)
            return None

    return Writer


def _list_array(url: str, pieces: list[np.ndarray], dtype: type, kind: pa.DataType) -> pa.Array:
    """A list<...> array from one numpy array per row, values converted to ``dtype``."""
    counts = np.fromiter((p.size for p in pieces), dtype=np.int64, count=len(pieces))
    offsets = np.concatenate(([0], np.cumsum(counts)))
    if offsets[-1] >= 2**31:
        raise DataplugError(url, f"a slice of {offsets[-1]} values overflows an Arrow list column; partition into more slices")
    values = np.concatenate(pieces).astype(dtype, copy=False) if pieces else np.zeros(0, dtype)
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(values), type=kind)
