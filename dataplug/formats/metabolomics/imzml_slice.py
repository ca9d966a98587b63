"""Slices of an imzML dataset: some spectra, read from the ``.ibd`` with range reads.

A slice carries one row per spectrum (its index in the file, pixel x and y, and the offset and element count
of its m/z and intensity arrays), so its worker needs no index and no XML. It fetches the byte ranges of its
arrays in one ``read_ranges`` call, ranges that touch or overlap merged first (a continuous dataset's shared
m/z array is fetched once; a run of spectra in file order is one range).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from dataplug.errors import DataplugError
from dataplug.slice import CloudObjectSlice
from dataplug.storage import ObjectInfo, StorageObject

#: Columns of a slice's ``rows``.
INDEX, X, Y, MZ_OFFSET, MZ_COUNT, INTENSITY_OFFSET, INTENSITY_COUNT = range(7)
ROW_WIDTH = 7


def merge_ranges(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The union of the non-empty ranges ``[starts[i], ends[i])`` as sorted disjoint ranges, ranges that
    touch or overlap joined."""
    keep = ends > starts
    starts, ends = starts[keep], ends[keep]
    if starts.size == 0:
        return starts, ends
    order = np.argsort(starts, kind="stable")
    starts, ends = starts[order], np.maximum.accumulate(ends[order])
    new = np.concatenate(([True], starts[1:] > ends[:-1]))
    firsts = np.flatnonzero(new)
    lasts = np.concatenate((firsts[1:] - 1, [starts.size - 1]))
    return starts[firsts], ends[lasts]


@dataclass(eq=False)
class ImzMLSlice(CloudObjectSlice):
    """Spectra of an imzML dataset (``obj`` is the ``.imzML``; the arrays are read from ``ibd``).

    ``rows`` is an (n, 7) int64 array, one row per spectrum in the order the slice returns them (file
    order): spectrum index, x, y, m/z offset, m/z count, intensity offset, intensity count (offsets in
    bytes into the ``.ibd``, counts in elements). ``image`` is the dataset's pixel grid (x origin, y origin,
    width, height) and ``window`` the rectangle of pixels the strategy asked for (x0, y0, x1, y1,
    inclusive), if any.
    """

    ibd: StorageObject
    ibd_info: ObjectInfo
    mz_dtype: str
    intensity_dtype: str
    rows: np.ndarray
    image: tuple[int, int, int, int]
    window: tuple[int, int, int, int] | None = None

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(
            np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b
            for a, b in ((getattr(self, f.name), getattr(other, f.name)) for f in dataclasses.fields(self))
        )

    @property
    def num_spectra(self) -> int:
        return int(self.rows.shape[0])

    @property
    def spectrum_indices(self) -> np.ndarray:
        """Index of each of the slice's spectra in the ``.imzML`` (pyimzml's ``getspectrum(i)``)."""
        return self.rows[:, INDEX]

    def _arrays(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Each spectrum's (m/z, intensity) arrays: read-only views of the bytes fetched in one call (one view
        for every spectrum that shares an m/z array, as in continuous mode)."""
        mz_type, int_type = np.dtype(self.mz_dtype), np.dtype(self.intensity_dtype)
        r, n = self.rows, self.num_spectra
        offsets = np.concatenate((r[:, MZ_OFFSET], r[:, INTENSITY_OFFSET]))
        counts = np.concatenate((r[:, MZ_COUNT], r[:, INTENSITY_COUNT]))
        first, last = merge_ranges(offsets, offsets + counts * np.repeat([mz_type.itemsize, int_type.itemsize], n))
        parts = self.ibd.read_ranges(list(zip(first.tolist(), last.tolist())), expect=self.ibd_info)
        part = np.maximum(np.searchsorted(first, offsets, side="right") - 1, 0)
        within = offsets - first[part] if first.size else np.zeros_like(offsets)
        views: list[np.ndarray] = []
        shared: dict[tuple[int, int, int], np.ndarray] = {}
        for j, (k, offset, count) in enumerate(zip(part.tolist(), within.tolist(), counts.tolist())):
            dtype = mz_type if j < n else int_type
            if not count:
                views.append(np.zeros(0, dtype))
            elif j < n:
                views.append(shared.setdefault((k, offset, count), np.frombuffer(parts[k], dtype, count, offset)))
            else:
                views.append(np.frombuffer(parts[k], dtype, count, offset))
        return zip(views[:n], views[n:])

    def get(self) -> list[tuple[int, int, np.ndarray, np.ndarray]]:
        """``(x, y, mz, intensity)`` for each spectrum, the arrays in the file's data types (read-only, as
        pyimzml's ``getspectrum`` returns them)."""
        return [(x, y, mz, intensity) for (x, y), (mz, intensity) in zip(self.rows[:, [X, Y]].tolist(), self._arrays())]

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
        arrays = list(self._arrays()) if {"mz", "intensity"} & set(wanted) else []
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


def _list_array(url: str, pieces: list[np.ndarray], dtype: type, kind: pa.DataType) -> pa.Array:
    """A list<...> array from one numpy array per row, values converted to ``dtype``."""
    counts = np.fromiter((p.size for p in pieces), dtype=np.int64, count=len(pieces))
    offsets = np.concatenate(([0], np.cumsum(counts)))
    if offsets[-1] >= 2**31:
        raise DataplugError(url, f"a slice of {offsets[-1]} values overflows an Arrow list column; partition into more slices")
    values = np.concatenate(pieces).astype(dtype, copy=False) if pieces else np.zeros(0, dtype)
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(values), type=kind)
