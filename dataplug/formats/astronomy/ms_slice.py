"""Slices of a MeasurementSet: a run of rows of its main table, each column read from the byte ranges that
hold those rows (StandardStMan buckets, tiles of a TiledColumnStMan or TiledShapeStMan hypercube) and
decoded with numpy.

A slice carries, per column, the storage layout the index found (a small JSON-able dict) and the bucket or
row-map entries of its rows, so its worker needs no index. Its reads are one ``read_ranges`` call per data
file, which joins near ranges into requests by the store's policy, each pinned to the file's indexed size
and identity.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

import numpy as np
import pyarrow as pa

from dataplug.errors import DataplugError, InvalidFormatError, StrategyArgumentError
from dataplug.formats.astronomy.ms_layout import DTYPES, SSM_HEADER_BYTES
from dataplug.slice import CloudObjectSlice
from dataplug.storage import ObjectInfo, StorageObject

#: Columns :meth:`MSSlice.get` returns when none are named (those the table has).
DEFAULT_COLUMNS = ("TIME", "ANTENNA1", "ANTENNA2", "UVW", "DATA", "FLAG")
#: Axes a cell may have (casacore allows more; a MeasurementSet's have at most 3); a hypercube has one more, its rows.
MAX_DIMS = 8
#: Bytes a cell of one column, or a tile of one hypercube, may span: each is decoded in one piece in memory.
MAX_CELL_BYTES = MAX_TILE_BYTES = 2**31


def numpy_dtype(code: int, big_endian: bool) -> np.dtype:
    """The numpy type of casacore data type ``code`` as stored (bool for Bool, stored as bits)."""
    kind = DTYPES[code][1]
    if code == 0:
        return np.dtype(bool)
    assert kind is not None
    return np.dtype((">" if big_endian else "<") + kind)


def tile_geometry(sizes: list[int], slot: int, tile: list[int] | tuple[int, ...]) -> tuple[int, int]:
    """Where column ``slot`` starts in a tile of shape ``tile``, and the tile's bytes, for columns of
    ``sizes`` bytes per value in tile order (0: Bool, one bit per value; each column's bits rounded up to bytes)."""
    pixels = math.prod(tile)
    lengths = [(pixels + 7) // 8 if size == 0 else pixels * size for size in sizes]
    return sum(lengths[:slot]), sum(lengths)


def dims(values: Any, low: int, what: str) -> list[int]:
    """``values`` as a shape: at most :data:`MAX_DIMS` + 1 ints, each in ``[low, 2**31)``; else ValueError
    saying which (a layout or header that lies must not reach numpy, whose int64 products wrap)."""
    if not isinstance(values, (list, tuple)) or len(values) > MAX_DIMS + 1:
        raise ValueError(f"{what} {values!r} is not a shape of at most {MAX_DIMS + 1} axes")
    if not all(type(n) is int and low <= n < 2**31 for n in values):
        raise ValueError(f"{what} {list(values)!r} has an axis outside [{low}, 2**31)")
    return list(values)


def cube_geometry(shape: Any, tile: Any, sizes: list[int]) -> tuple[int, int]:
    """The tiles of a hypercube of ``shape`` cut in tiles of ``tile`` and the bytes of one tile holding
    columns of ``sizes`` bytes per value (see :func:`tile_geometry`), in Python ints; ValueError for axes
    that are not a shape, a tile of more than :data:`MAX_TILE_BYTES` or a grid that does not match."""
    shape, tile = dims(shape, 0, "hypercube shape"), dims(tile, 1, "tile shape")
    if len(shape) != len(tile) or not shape:
        raise ValueError(f"hypercube shape {shape} and tile shape {tile} differ in axes")
    tile_bytes = tile_geometry(sizes, 0, tile)[1]
    if tile_bytes > MAX_TILE_BYTES:
        raise ValueError(f"a tile of shape {tile} holds {tile_bytes} bytes, over the {MAX_TILE_BYTES} one is read in")
    return math.prod(-(-c // t) for c, t in zip(shape, tile)), tile_bytes


@dataclass(eq=False)
class MSSlice(CloudObjectSlice):
    """Rows ``[start, stop)`` of a MeasurementSet's main table (``obj`` is its ``table.dat``).

    ``layouts`` maps each column the index can read by range to its layout; ``unreadable`` maps the others
    to the reason. ``files`` holds the indexed size and identity of each data file the slice may read
    (names relative to the MeasurementSet folder). ``entries`` holds the bucket index rows (last row,
    bucket) of each StandardStMan index and the row-map rows (last row, cube, position) of each
    TiledShapeStMan that meet the slice's rows. ``subtables`` and ``skeleton`` locate what :meth:`dump_to`
    needs (the index's kept files), ``None`` in slices made without them.
    """

    start: int
    stop: int
    big_endian: bool
    layouts: dict[str, dict[str, Any]]
    unreadable: dict[str, str]
    files: dict[str, tuple[int, str]]
    entries: dict[str, np.ndarray]
    columns: tuple[str, ...] | None = None
    skeleton: Any = None
    #: :meth:`dump` is refused (a MeasurementSet is a folder): no text form.
    binary_output: ClassVar[bool] = True

    @property
    def num_records(self) -> int:
        """Rows of the main table in the slice."""
        return self.stop - self.start

    @property
    def folder(self) -> str:
        """The MeasurementSet folder's URL."""
        return self.obj.url.rsplit("/", 1)[0]

    def _file(self, name: str) -> StorageObject:
        return StorageObject(f"{self.folder}/{name}", self.obj.storage_options)

    def wanted(self, columns: list[str] | tuple[str, ...] | None) -> list[str]:
        """The columns a read returns: those named, else the slice's, else :data:`DEFAULT_COLUMNS` the table has."""
        names = list(
            columns if columns is not None else self.columns if self.columns is not None else [c for c in DEFAULT_COLUMNS if c in self.layouts]
        )
        for name in names:
            if name in self.unreadable:
                raise InvalidFormatError(self.url, f"column {name!r} cannot be read by byte range: {self.unreadable[name]}")
            if name not in self.layouts:
                raise StrategyArgumentError(
                    self.url, f"no column {name!r} in the main table; columns: {sorted(self.layouts) + sorted(self.unreadable)}"
                )
        return names

    # -- byte ranges ------------------------------------------------------------------------------------

    def _plan(self, name: str) -> list[tuple[str, int, int, Any]]:
        """The reads of column ``name`` for the slice's rows: (file, start, end, what the decoder needs)."""
        layout = self.layouts[name]
        a, b = self.start, self.stop
        if a >= b:
            return []
        if layout["kind"] == "ssm":
            table = self.entries[layout["index"]]
            bits = layout["dtype"] == 0
            size = math.prod(layout["shape"])
            row_bytes = size if bits else size * numpy_dtype(layout["dtype"], self.big_endian).itemsize
            out = []
            first = np.concatenate(([0], table[:-1, 0] + 1)) if len(table) else np.zeros(0, np.int64)
            for (last, bucket), begin in zip(table.tolist(), first.tolist()):
                lo, hi = max(a, begin), min(b, last + 1)
                if lo >= hi:
                    continue
                base = SSM_HEADER_BYTES + bucket * layout["bucket_size"] + layout["offset"]
                if bits:
                    bit0, bit1 = (lo - begin) * size, (hi - begin) * size
                    out.append((layout["file"], base + bit0 // 8, base + (bit1 + 7) // 8, (lo, hi, bit0 % 8)))
                else:
                    out.append((layout["file"], base + (lo - begin) * row_bytes, base + (hi - begin) * row_bytes, (lo, hi, 0)))
            return out
        runs = self._cube_runs(layout)
        out = []
        for cube_number, p0, p1, row0 in runs:
            shape, tile, file_number, offset = layout["cubes"][cube_number]
            per = math.prod(-(-c // t) for c, t in zip(shape[:-1], tile[:-1]))
            k0, k1 = p0 // tile[-1], (p1 - 1) // tile[-1]
            tile_bytes = tile_geometry(layout["tile_sizes"], layout["slot"], tile)[1]
            file = f"{layout['file']}_TSM{file_number}"
            out.append((file, offset + k0 * per * tile_bytes, offset + (k1 + 1) * per * tile_bytes, (cube_number, p0, p1, row0)))
        return out

    def _cube_runs(self, layout: dict[str, Any]) -> list[tuple[int, int, int, int]]:
        """(cube, first position, end position, first row) of each run of the slice's rows in one hypercube."""
        a, b = self.start, self.stop
        if layout["row_map"] is None:
            return [(0, a, b, a)]
        table = self.entries[layout["row_map"]]
        runs = []
        begin = a
        for last, cube, pos in table.tolist():
            hi = min(b, last + 1)
            if begin < hi:
                # Row ``last`` is at position ``pos`` of its cube, the rows before it at the positions before.
                runs.append((cube, pos - (last - begin), pos - (last - hi), begin))
                begin = hi
        if begin < b:
            raise InvalidFormatError(self.url, f"rows {begin} to {b - 1} of column {layout['name']!r} hold no array (undefined cells)")
        return runs

    def byte_range(self) -> tuple[int, int] | None:
        """``[start, end)`` of the largest read of the slice's first array column (its tiles or buckets in
        that column's file); ``None`` for a slice without rows."""
        if self.start >= self.stop:
            return None
        name = next((c for c in self.wanted(None) if self.layouts[c]["kind"] == "tsm"), self.wanted(None)[0])
        plan = self._plan(name)
        return min(p[1] for p in plan), max(p[2] for p in plan)

    def _fetch(self, names: list[str]) -> dict[str, list[tuple[bytes, Any]]]:
        """Each column's pieces as (bytes, decoder info), read with one ``read_ranges`` per file (which joins
        near ranges into requests by the store's policy), each pinned to the file's indexed size and identity,
        after one metadata request that checks ``table.dat``."""
        plans = {name: self._plan(name) for name in names}
        by_file: dict[str, list[tuple[int, int]]] = {}
        for plan in plans.values():
            for file, s, e, _ in plan:
                by_file.setdefault(file, []).append((s, e))
        self.obj.check_unchanged(self.object_info)  # the layout came from this table.dat: one metadata request
        fetched: dict[str, list[bytes]] = {}
        for file, ranges in by_file.items():
            size, identity = self.files[file]
            end = max(e for _, e in ranges)
            if end > size:
                raise InvalidFormatError(
                    f"{self.folder}/{file}", f"the slice needs bytes up to {end}, the file has {size}: truncated, or not the file the index describes"
                )
            fetched[file] = self._file(file).read_ranges(ranges, expect=ObjectInfo(size, identity))
        parts = {file: iter(data) for file, data in fetched.items()}
        return {name: [(next(parts[f]), info) for f, _, _, info in plan] for name, plan in plans.items()}

    # -- decoding ---------------------------------------------------------------------------------------

    def _decode(self, name: str, pieces: list[tuple[bytes, Any]]) -> np.ndarray:
        layout = self.layouts[name]
        dtype = numpy_dtype(layout["dtype"], self.big_endian)
        cell = tuple(reversed(layout["shape"]))
        if not pieces:
            return np.zeros((0, *cell), dtype.newbyteorder("="))
        if layout["kind"] == "ssm":
            size = math.prod(cell)
            parts = []
            for data, (lo, hi, bit) in pieces:
                if layout["dtype"] == 0:
                    bits = np.unpackbits(np.frombuffer(data, np.uint8), bitorder="little")
                    parts.append(bits[bit : bit + (hi - lo) * size].astype(bool))
                else:
                    parts.append(np.frombuffer(data, dtype))
            return np.concatenate(parts).reshape((self.num_records, *cell)).astype(dtype.newbyteorder("="), copy=False)
        out = [self._decode_tiles(layout, dtype, data, *info[:3]) for data, info in pieces]
        return np.concatenate(out) if len(out) > 1 else out[0]

    def _decode_tiles(self, layout: dict[str, Any], dtype: np.dtype, data: bytes, cube_number: int, p0: int, p1: int) -> np.ndarray:
        """Positions ``[p0, p1)`` of a hypercube's last axis from its whole tiles in ``data``."""
        shape, tile, _, _ = layout["cubes"][cube_number]
        n = len(shape) - 1
        grid = [-(-c // t) for c, t in zip(shape[:-1], tile[:-1])]
        k0, k1 = p0 // tile[-1], (p1 - 1) // tile[-1]
        count = (k1 - k0 + 1) * math.prod(grid)
        pixels = math.prod(tile)
        start, tile_bytes = tile_geometry(layout["tile_sizes"], layout["slot"], tile)
        tiles = np.frombuffer(data, np.uint8).reshape(count, tile_bytes)
        if layout["dtype"] == 0:
            raw = tiles[:, start : start + (pixels + 7) // 8]
            values = np.unpackbits(raw, axis=1, bitorder="little")[:, :pixels].astype(bool)
        else:
            values = np.ascontiguousarray(tiles[:, start : start + pixels * dtype.itemsize]).view(dtype)
        values = values.reshape((k1 - k0 + 1, *reversed(grid), tile[-1], *reversed(tile[:-1])))
        axes = [0, n + 1] + [a for j in range(1, n + 1) for a in (j, n + 1 + j)]
        full = values.transpose(axes).reshape(((k1 - k0 + 1) * tile[-1], *[g * t for g, t in zip(reversed(grid), reversed(tile[:-1]))]))
        first = p0 - k0 * tile[-1]
        crop = (slice(first, first + p1 - p0), *[slice(0, c) for c in reversed(shape[:-1])])
        return full[crop].astype(dtype.newbyteorder("="), copy=False)

    # -- results ----------------------------------------------------------------------------------------

    def get(self, columns: list[str] | None = None) -> dict[str, np.ndarray]:
        """``{column: array}`` for the slice's rows: scalars as (rows,), arrays as (rows, *cell shape) in
        python-casacore's axis order (``getcol``'s), in native byte order; complex columns complex64/128."""
        names = self.wanted(columns)
        pieces = self._fetch(names)
        return {name: self._decode(name, pieces[name]) for name in names}

    def schema(self, columns: list[str] | None = None) -> pa.Schema:
        """Arrow types of the columns: scalars as themselves, arrays as nested fixed-size lists (a complex
        value as a fixed-size list of its real and imaginary parts)."""
        return pa.schema([(name, _arrow_type(self.layouts[name], self.big_endian)) for name in self.wanted(columns)])

    def to_arrow(self, columns: list[str] | None = None) -> pa.Table:
        """One row per main-table row, with the columns of :meth:`schema`."""
        values = self.get(columns)
        schema = self.schema(list(values))
        return pa.table({name: _arrow_array(values[name], schema.field(name).type) for name in values}, schema=schema)

    def dump(self, fp: BinaryIO) -> None:
        """Refused: a MeasurementSet is a folder; :meth:`dump_to` writes one."""
        raise DataplugError(self.url, "a MeasurementSet is a folder of files and cannot be written to one stream; use dump_to(path)")

    def dump_to(self, path: str | os.PathLike[str]) -> Path:
        """Write the slice's rows as a MeasurementSet folder at ``path`` (casacore opens it): the main
        table's description, keywords and storage managers, every column the index reads by range, and the
        subtables as indexed. Needs python-casacore (the ``ms`` extra). Returns ``path``."""
        if self.skeleton is None:
            raise DataplugError(self.url, "this slice carries no table skeleton (made by an older index); run preprocess(force=True)")
        from dataplug.formats.astronomy.ms_dump import write_measurement_set

        return write_measurement_set(self, Path(path))


def _arrow_type(layout: dict[str, Any], big_endian: bool) -> pa.DataType:
    dtype = numpy_dtype(layout["dtype"], big_endian).newbyteorder("=")
    if dtype.kind == "c":
        kind: pa.DataType = pa.list_(pa.from_numpy_dtype(np.dtype(f"f{dtype.itemsize // 2}")), 2)
    else:
        kind = pa.from_numpy_dtype(dtype)
    for n in layout["shape"]:  # casacore order: the first axis varies fastest, so it is the innermost list
        kind = pa.list_(kind, n)
    return kind


def _arrow_array(values: np.ndarray, kind: pa.DataType) -> pa.Array:
    if values.dtype.kind == "c":
        values = values.view(values.real.dtype).reshape((*values.shape, 2))
    flat: pa.Array = pa.array(values.reshape(-1))
    inner = []
    t = kind
    while pa.types.is_fixed_size_list(t):
        inner.append(t.list_size)
        t = t.value_type
    for size in reversed(inner):
        flat = pa.FixedSizeListArray.from_arrays(flat, size)
    return flat
