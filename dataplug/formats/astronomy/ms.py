"""MeasurementSet (radio interferometry): the casacore table folder ``obs.ms/``, sliced by runs of rows of
its main table, each slice reading only the byte ranges of its rows' buckets and tiles.

**The object.** A dataplug object has one URL with a size and an identity, and a MeasurementSet is a
folder; so the object is the main table's ``table.dat`` (``s3://bucket/obs.ms/table.dat``), and the data
files beside it that slices read (``table.f<n>``, ``table.f<n>_TSM<k>``) are its companions: their sizes and
identities are in the index, a changed one makes the index stale, and every read is pinned to them.

**Index pass.** Reads ``table.dat`` (the table description, the storage managers and their columns), the
headers of the tiled storage managers, the header and bucket index of each StandardStMan file, and the
TIME column's bytes (8 a row) to find where each timestamp begins; not the data. It records per column
its storage manager and the byte layout of its rows (TiledColumnStMan and TiledShapeStMan tiles,
StandardStMan buckets). The subtables (ANTENNA, SPECTRAL_WINDOW, ...) are read whole and kept in the
sidecar with the main table's small files (a skeleton: what casacore needs to open the table's
description), for :meth:`MSSlice.dump_to`. Columns of other storage managers (IncrementalStMan,
StManAipsIO, ...), indirect arrays and strings are listed as unreadable: reading one is an error naming it.
The pass needs no casacore; writing a slice out does (the ``ms`` extra, ``python-casacore``).

Sidecar tables (int64): ``ssm<n>_<k>`` (buckets, 2) last row and bucket number of index ``k`` of the
StandardStMan with sequence number ``n``; ``tsm<n>`` (intervals, 3) last row, hypercube and position of a
TiledShapeStMan's row map; ``time_starts`` the first row of each run of equal TIME.
"""

from __future__ import annotations

import io
import itertools
import json
import math
import re
import tarfile
from dataclasses import dataclass
from typing import Any

import numpy as np

from dataplug.errors import CorruptIndexError, InvalidFormatError, ObjectNotFoundError, StrategyArgumentError
from dataplug.format import DataFormat, Detection, IndexData, PreprocessContext, Sample
from dataplug.formats.astronomy.ms_layout import (
    DTYPES,
    OPTION_DIRECT,
    SSM_HEADER_BYTES,
    TableFile,
    read_ssm_header,
    read_ssm_indexes,
    read_table_dat,
    read_tiled_header,
    ssm_column_map,
    ssm_index_bytes,
)
from dataplug.formats.astronomy.ms_slice import (
    DEFAULT_COLUMNS,
    MAX_CELL_BYTES,
    MAX_DIMS,
    MSSlice,
    cube_geometry,
    dims,
    numpy_dtype,
)
from dataplug.storage import ObjectInfo, StorageObject
from dataplug.strategies import even_bounds, positive_int, strategy

#: ``table.dat`` files larger than this are refused (an MS's is a few kB to a few hundred kB).
MAX_TABLE_DAT = 64 * 2**20
#: Subtables and small main-table files kept whole in the sidecar, in all (bytes).
MAX_KEPT_BYTES = 256 * 2**20
#: A main-table file that is no column data file is kept whole up to this size, else by its first bytes.
SMALL_FILE = 2**20
#: Such a file larger than that is laid out (sparse past its first bytes) at its size, up to this one.
MAX_PLACEHOLDER = 2**32
#: Names of the data files a slice may read: the only companions an index may name.
_DATA_FILE = re.compile(r"^table\.f[0-9]{1,6}(_TSM[0-9]{1,6})?$")
#: The files casacore writes in a table's folder (its subtables are folders beside them).
_TABLE_FILE = re.compile(r"^table\.(dat|info|lock|f[0-9]+\w*)$")
_KEPT_NAME = re.compile(r"^([A-Za-z0-9_][A-Za-z0-9_.-]{0,100}/){0,3}[A-Za-z0-9_][A-Za-z0-9_.-]{0,100}$")


@dataclass(frozen=True)
class MeasurementSetAttributes:
    """What the index pass found: the main table's rows, byte order and columns, the data files slices read
    (name, size, identity), the kept subtables and each column's layout (JSON, see :mod:`ms_slice`)."""

    size: int
    rows: int
    big_endian: bool
    columns: tuple[str, ...]
    unreadable: tuple[tuple[str, str], ...]
    files: tuple[tuple[str, int, str], ...]
    subtables: tuple[str, ...]
    timestamps: int
    layout: str


class MeasurementSet(DataFormat):
    """A MeasurementSet: the object is its main table's ``table.dat`` (``.../obs.ms/table.dat``); the
    folder's other files are read beside it."""

    Attributes = MeasurementSetAttributes
    sniff_priority = 20

    @classmethod
    def sniff(cls, sample: Sample) -> Detection | None:
        """A casacore ``table.dat``: AipsIO's magic word and a ``Table`` object."""
        raw = sample.raw
        if sample.codec == "none" and raw[:4] == b"\xbe\xbe\xbe\xbe" and raw[8:17] == b"\x00\x00\x00\x05Table":
            what = "a MeasurementSet's main table" if b"ANTENNA1" in raw and b"UVW" in raw else "a casacore table"
            return cls.detected(sample, f"{what} (table.dat)")
        return None

    @classmethod
    def object_url(cls, url: str) -> str:
        """``obs.ms`` (the folder) names its main table, ``obs.ms/table.dat``; a URL naming one of a table's
        own files (``table.dat``, ``table.f0``, ``table.info``, ...) is kept, so that naming the wrong one is
        an error that says so rather than a missing ``table.f0/table.dat``."""
        url = url.rstrip("/")
        return url if _TABLE_FILE.match(url.rsplit("/", 1)[-1]) else url + "/table.dat"

    @classmethod
    def index_anchor(cls, url: str) -> str:
        """The MeasurementSet's folder: its index goes beside it (``obs.ms.dataplug/``), never inside it."""
        return url.rsplit("/", 1)[0]

    @classmethod
    def companions(cls, obj: StorageObject, attributes: Any) -> list[tuple[StorageObject, ObjectInfo]]:
        """The main table's data files: a changed one makes the index stale, as a changed ``table.dat`` does."""
        folder = obj.url.rsplit("/", 1)[0]
        return [(StorageObject(f"{folder}/{name}", obj.storage_options), ObjectInfo(size, identity)) for name, size, identity in attributes.files]

    @classmethod
    def check_companions(cls, obj: StorageObject, attributes: Any, given: dict[str, Any]) -> None:
        """The index may name only data files of the table itself (``table.f<n>``, ``table.f<n>_TSM<k>``)."""
        bad = [name for name, _, _ in attributes.files if not _DATA_FILE.match(name)]
        if bad:
            raise CorruptIndexError(
                obj.url, f"the index names {bad[0]!r} as a data file of the table; only table.f<n> files beside table.dat are read"
            )

    @classmethod
    def preprocess(cls, ctx: PreprocessContext) -> IndexData:
        url = ctx.obj.url
        if not url.endswith("/table.dat"):
            raise InvalidFormatError(url, "the object of a MeasurementSet is its main table's table.dat (s3://bucket/obs.ms/table.dat)")
        if ctx.info.size > MAX_TABLE_DAT:
            raise InvalidFormatError(url, f"table.dat has {ctx.info.size} bytes, over the {MAX_TABLE_DAT} a table description may have")
        folder = StorageObject(url.rsplit("/", 1)[0], ctx.obj.storage_options)
        table_dat = ctx.obj.read_range(0, ctx.info.size, expect=ctx.info)
        table = read_table_dat(url, table_dat)
        names = [n for n in folder.list_names() if n != "table.dat"]
        infos: dict[str, ObjectInfo] = {}
        subtables: list[str] = []
        for name in names:
            try:
                infos[name] = folder.child(name).info()
            except ObjectNotFoundError:
                if "table.dat" in folder.child(name).list_names():
                    subtables.append(name)
        tables: dict[str, np.ndarray] = {}
        layouts: dict[str, dict[str, Any]] = {}
        unreadable: dict[str, str] = {}
        pieces: dict[str, list[tuple[int, bytes]]] = {}
        data_files: set[str] = set()
        for seqnr, kind in table.managers.items():
            columns = table.manager_columns(seqnr)
            file = f"table.f{seqnr}"
            if kind == "StandardStMan":
                _standard(ctx, folder, table, seqnr, infos, tables, layouts, unreadable, pieces)
                data_files.add(file)
            elif kind in ("TiledColumnStMan", "TiledShapeStMan"):
                data_files |= _tiled(ctx, folder, table, seqnr, infos, tables, layouts, unreadable)
            else:
                for column in columns:
                    unreadable[column.name] = f"its storage manager {kind} keeps no byte layout per row"
        time_starts = _time_starts(ctx, table, layouts, tables, infos, data_files)
        tables["time_starts"] = time_starts
        kept = _keep(url, folder, table_dat, infos, data_files, subtables, pieces)
        order = [c.name for c in table.columns]
        attributes = MeasurementSetAttributes(
            size=ctx.info.size,
            rows=table.rows,
            big_endian=table.big_endian,
            columns=tuple(n for n in order if n in layouts),
            unreadable=tuple((n, unreadable[n]) for n in order if n in unreadable),
            files=tuple((n, infos[n].size, infos[n].identity) for n in sorted(data_files)),
            subtables=tuple(sorted(subtables)),
            timestamps=len(time_starts),
            layout=json.dumps(layouts, sort_keys=True),
        )
        return IndexData(attributes, tables=tables, blobs={"skeleton": kept})

    @classmethod
    def validate_index(cls, url: str, attributes: Any, tables: dict[str, np.ndarray], blob_sizes: dict[str, int], size: int) -> None:
        a = attributes
        try:
            layouts = json.loads(a.layout)
        except ValueError:
            raise CorruptIndexError(url, "the MeasurementSet index's column layout is not JSON") from None
        files = {name: n for name, n, _ in a.files}
        ok = a.size == size and a.rows >= 0 and "skeleton" in blob_sizes and isinstance(layouts, dict) and set(layouts) == set(a.columns)
        ok = ok and "time_starts" in tables and tables["time_starts"].shape == (a.timestamps,)
        for name, layout in layouts.items() if ok else ():
            try:
                _check_layout(layout, files, tables, a.rows)
            except (LookupError, TypeError, ValueError, AssertionError, ZeroDivisionError) as exc:
                raise CorruptIndexError(url, f"the MeasurementSet index's layout of column {name!r} does not fit its files: {exc!r}") from None
        if not ok:
            raise CorruptIndexError(url, "the MeasurementSet index does not fit its attributes (size, columns, tables or blobs)")


def _check_layout(layout: dict[str, Any], files: dict[str, int], tables: dict[str, np.ndarray], rows: int) -> None:
    """Every read a layout implies lies inside its file's indexed size, and every piece it reads decodes to
    the column's cells: reckoned in Python ints, after bounding each value, as numpy's int64 products wrap."""
    assert isinstance(layout, dict)
    dtype = layout["dtype"]
    assert type(dtype) is int and dtype in DTYPES and dtype != 11, f"data type {dtype!r}"
    shape = dims(layout["shape"], 1, "cell shape")
    assert len(shape) <= MAX_DIMS, f"a cell of {len(shape)} axes"
    itemsize = 0 if dtype == 0 else numpy_dtype(dtype, False).itemsize
    cell = math.prod(shape)
    cell_bytes = (cell + 7) // 8 if dtype == 0 else cell * itemsize
    assert cell_bytes <= MAX_CELL_BYTES, f"a cell of shape {shape} holds {cell_bytes} bytes, over the {MAX_CELL_BYTES} one may"
    if layout["kind"] == "ssm":
        _check_ssm(layout, files[layout["file"]], tables[layout["index"]], rows, cell if dtype == 0 else cell_bytes, dtype == 0)
        return
    assert layout["kind"] == "tsm", f"storage kind {layout['kind']!r}"
    sizes, slot, cubes = layout["tile_sizes"], layout["slot"], layout["cubes"]
    assert isinstance(sizes, list) and len(sizes) <= 10_000 and all(type(n) is int and n in (0, 1, 2, 4, 8, 16) for n in sizes)
    assert type(slot) is int and 0 <= slot < len(sizes) and sizes[slot] == itemsize, f"slot {slot!r} of tile sizes {sizes}"
    assert isinstance(cubes, list) and cubes
    real = set()
    for number, (cube_shape, tile, file_number, offset) in enumerate(cubes):
        assert type(file_number) is int and type(offset) is int and isinstance(tile, list)
        if file_number < 0 or not cube_shape or not tile or 0 in tile:  # a placeholder cube (of rows without arrays)
            continue
        per, tile_bytes = cube_geometry(cube_shape, tile, sizes)
        assert offset >= 0 and offset + per * tile_bytes <= files[f"{layout['file']}_TSM{file_number}"], f"cube {number} past its file"
        if cube_shape[:-1] == shape:
            real.add(number)
    if layout["row_map"] is None:
        assert 0 in real and cubes[0][0][-1] >= rows, "no hypercube of the column's cells holding every row"
        return
    table = tables[layout["row_map"]]
    assert table.ndim == 2 and table.shape[1] == 3 and table.dtype.kind == "i"
    if not len(table):
        return
    last, cube, pos = (table[:, k].astype(np.int64) for k in range(3))
    assert int(last.min()) >= 0 and int(last.max()) < rows and np.all(np.diff(last) > 0), "row map rows out of order"
    assert set(cube.tolist()) <= real, "the row map names a cube that is not one of the column's cells"
    first = np.concatenate(([0], last[:-1] + 1))
    lengths = np.array([cubes[c][0][-1] for c in cube.tolist()], dtype=np.int64)
    assert np.all((pos - (last - first) >= 0) & (pos < lengths)), "row map positions outside their cubes"


def _check_ssm(layout: dict[str, Any], size: int, table: np.ndarray, rows: int, row: int, bits: bool) -> None:
    """A StandardStMan column: each bucket of the index lies in the file, and the column's values of that
    bucket's rows (``row`` bytes, or bits, each) lie in the bucket past the column's offset."""
    bucket_size, offset = layout["bucket_size"], layout["offset"]
    assert type(bucket_size) is int and type(offset) is int and 0 <= offset < bucket_size <= size, "bucket size or offset"
    assert table.ndim == 2 and table.shape[1] == 2 and table.dtype.kind == "i"
    if not len(table):
        return
    last, bucket = table[:, 0].astype(np.int64), table[:, 1].astype(np.int64)
    assert int(last.min()) >= 0 and int(last[-1]) == rows - 1 and np.all(np.diff(last) > 0), "bucket index rows out of order"
    assert int(bucket.min()) >= 0 and int(bucket.max()) < (size - SSM_HEADER_BYTES) // bucket_size, "a bucket past the file's end"
    most = int((last - np.concatenate(([-1], last[:-1]))).max())
    span = (most * row + 7) // 8 if bits else most * row
    assert offset + span <= bucket_size, f"a bucket's {most} rows of the column need {span} bytes past byte {offset} of {bucket_size}"


# -- the index pass ---------------------------------------------------------------------------------------


def _standard(
    ctx: PreprocessContext,
    folder: StorageObject,
    table: TableFile,
    seqnr: int,
    infos: dict[str, ObjectInfo],
    tables: dict[str, np.ndarray],
    layouts: dict[str, dict[str, Any]],
    unreadable: dict[str, str],
    pieces: dict[str, list[tuple[int, bytes]]],
) -> None:
    """A StandardStMan: its header and bucket index (read by range), and each direct column's place in a bucket."""
    file = f"table.f{seqnr}"
    url = f"{folder.url}/{file}"
    if file not in infos:
        raise ObjectNotFoundError(url, "the StandardStMan file the table description names is missing")
    obj, info = folder.child(file), infos[file]
    head = obj.read_range(0, min(SSM_HEADER_BYTES, info.size), expect=info)
    header = read_ssm_header(url, head, table.big_endian)
    if SSM_HEADER_BYTES + header.buckets * header.bucket_size > info.size:
        raise InvalidFormatError(url, f"the file has {info.size} bytes, fewer than its {header.buckets} buckets of {header.bucket_size}: truncated")
    kept: dict[int, bytes] = {}

    def bucket(n: int) -> bytes:
        start = SSM_HEADER_BYTES + n * header.bucket_size
        kept[n] = obj.read_range(start, start + header.bucket_size, expect=info)
        return kept[n]

    index = read_ssm_indexes(url, ssm_index_bytes(url, header, bucket), header.indexes, table.big_endian)
    pieces[file] = [(0, head), *((SSM_HEADER_BYTES + n * header.bucket_size, data) for n, data in sorted(kept.items()))]
    _, offsets, index_of = ssm_column_map(url, table.manager_data[seqnr])
    columns = table.manager_columns(seqnr)
    if len(offsets) != len(columns) or len(index_of) != len(columns):
        raise InvalidFormatError(url, f"the StandardStMan lists {len(offsets)} columns, the table description {len(columns)}")
    for k, (_, last, buckets) in enumerate(index):
        tables[f"ssm{seqnr}_{k}"] = np.column_stack([last, buckets]).astype(np.int64).reshape(-1, 2)
    for column, offset, k in zip(columns, offsets.tolist(), index_of.tolist()):
        if column.dtype == 11:
            unreadable[column.name] = "a string column (StandardStMan keeps strings in string buckets)"
        elif column.dtype not in DTYPES:
            unreadable[column.name] = f"casacore data type {column.dtype}"
        elif column.is_array and not (column.option & OPTION_DIRECT and column.shape):
            unreadable[column.name] = "an array column of variable shape (StandardStMan keeps those in its indirect file)"
        elif k >= len(index):
            raise InvalidFormatError(url, f"column {column.name!r} names bucket index {k} of {len(index)}")
        else:
            layouts[column.name] = {
                "name": column.name, "kind": "ssm", "file": file, "index": f"ssm{seqnr}_{k}", "offset": int(offset),
                "bucket_size": header.bucket_size, "dtype": column.dtype, "shape": list(column.shape),
            }  # fmt: skip


def _tiled(
    ctx: PreprocessContext,
    folder: StorageObject,
    table: TableFile,
    seqnr: int,
    infos: dict[str, ObjectInfo],
    tables: dict[str, np.ndarray],
    layouts: dict[str, dict[str, Any]],
    unreadable: dict[str, str],
) -> set[str]:
    """A TiledColumnStMan or TiledShapeStMan: its hypercubes and where each data column lies in a tile.
    Returns the data files its columns read."""
    file = f"table.f{seqnr}"
    url = f"{folder.url}/{file}"
    if file not in infos:
        raise ObjectNotFoundError(url, "the tiled storage manager's header file the table description names is missing")
    obj, info = folder.child(file), infos[file]
    header = read_tiled_header(url, obj.read_range(0, info.size, expect=info))
    columns = [c for c in table.manager_columns(seqnr) if c.is_array]
    # casacore lays out a tile's columns by decreasing bytes per value (Bools last), ties in column order.
    sizes = [0 if c.dtype == 0 else numpy_dtype(c.dtype, False).itemsize if c.dtype in DTYPES and c.dtype != 11 else -1 for c in columns]
    order = sorted(range(len(columns)), key=lambda i: -sizes[i])
    used: set[str] = set()
    for cube in header.cubes:
        if cube.file < 0 or not cube.shape or not cube.tile or 0 in cube.tile:  # a placeholder cube (of rows without arrays)
            continue
        name = f"{file}_TSM{cube.file}"
        if name not in infos:
            raise ObjectNotFoundError(f"{folder.url}/{name}", "the tile file of a hypercube is missing")
        try:
            per, tile_bytes = cube_geometry(list(cube.shape), list(cube.tile), [sizes[i] for i in order])
        except ValueError as exc:
            raise InvalidFormatError(url, f"a hypercube of the tiled storage manager: {exc}") from None
        if cube.offset + per * tile_bytes > infos[name].size:
            raise InvalidFormatError(
                f"{folder.url}/{name}",
                f"the file has {infos[name].size} bytes, fewer than the {per} tiles of {tile_bytes} its hypercube needs from byte {cube.offset}: truncated",
            )
        used.add(name)
    if header.row_map is not None:
        tables[f"tsm{seqnr}"] = header.row_map
    cubes = [[list(c.shape), list(c.tile), c.file, c.offset] for c in header.cubes]
    tile_sizes = [sizes[i] for i in order]
    for slot, i in enumerate(order):
        column = columns[i]
        shape = list(column.shape) or (list(header.cubes[0].shape[:-1]) if header.kind == "TiledColumnStMan" and header.cubes else [])
        if sizes[i] < 0:
            unreadable[column.name] = f"casacore data type {column.dtype} in a tiled storage manager"
        elif not shape:
            unreadable[column.name] = "a tiled array column of varying shape (each hypercube has its own)"
        else:
            layouts[column.name] = {
                "name": column.name, "kind": "tsm", "file": file, "cubes": cubes, "tile_sizes": tile_sizes, "slot": slot,
                "dtype": column.dtype, "shape": shape, "row_map": f"tsm{seqnr}" if header.row_map is not None else None,
            }  # fmt: skip
    return used


def _time_starts(
    ctx: PreprocessContext,
    table: TableFile,
    layouts: dict[str, dict[str, Any]],
    tables: dict[str, np.ndarray],
    infos: dict[str, ObjectInfo],
    files: set[str],
) -> np.ndarray:
    """The first row of each run of equal TIME, read from the TIME column's bytes only."""
    if "TIME" not in layouts or not table.rows:
        return np.zeros(0 if not table.rows else 1, np.int64)
    piece = _slice(
        ctx.obj,
        ctx.info,
        table.big_endian,
        layouts,
        {},
        {n: (infos[n].size, infos[n].identity) for n in files},
        tables,
        0,
        0,
        table.rows,
        ("TIME",),
        None,
    )
    time = piece.get()["TIME"]
    return np.flatnonzero(np.concatenate(([True], time[1:] != time[:-1]))).astype(np.int64)


def _keep(
    url: str,
    folder: StorageObject,
    table_dat: bytes,
    infos: dict[str, ObjectInfo],
    data_files: set[str],
    subtables: list[str],
    pieces: dict[str, list[tuple[int, bytes]]],
) -> bytes:
    """The skeleton: a tar of what casacore needs to open the table's description (``table.dat``, small
    files whole, the StandardStMan headers and bucket indexes at their offsets) and the subtables whole.
    Each member's ``pax`` header ``dataplug.size`` gives the file's size, its ``dataplug.offset`` where
    the piece goes."""
    out = io.BytesIO()
    total = 0
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:

        def add(name: str, data: bytes, size: int, offset: int = 0) -> None:
            nonlocal total
            total += len(data)
            if total > MAX_KEPT_BYTES:
                raise InvalidFormatError(url, f"the subtables and small files add up to over {MAX_KEPT_BYTES} bytes, more than an index keeps")
            member = tarfile.TarInfo(f"{name}@{offset}")
            member.size = len(data)
            member.pax_headers = {"dataplug.size": str(size), "dataplug.offset": str(offset), "dataplug.name": name}
            tar.addfile(member, io.BytesIO(data))

        add("table.dat", table_dat, len(table_dat))
        for name, info in sorted(infos.items()):
            if name in pieces:
                for offset, data in pieces[name]:
                    add(name, data, info.size, offset)
            elif name in data_files:
                add(name, b"", info.size)  # a sparse placeholder: casacore opens it, dataplug never reads it
            elif not name.endswith(".dataplug"):
                if info.size > MAX_PLACEHOLDER:
                    raise InvalidFormatError(f"{folder.url}/{name}", f"a file of {info.size} bytes beside table.dat, over the {MAX_PLACEHOLDER} kept")
                obj = folder.child(name)
                add(name, obj.read_range(0, min(info.size, SMALL_FILE), expect=info), info.size)
        for sub in sorted(subtables):
            _keep_folder(folder.child(sub), sub, add, 0)
    return out.getvalue()


def _keep_folder(folder: StorageObject, prefix: str, add: Any, depth: int) -> None:
    for name in folder.list_names():
        child = folder.child(name)
        try:
            info = child.info()
        except ObjectNotFoundError:
            if depth < 2:
                _keep_folder(child, f"{prefix}/{name}", add, depth + 1)
            continue
        add(f"{prefix}/{name}", child.read_range(0, info.size, expect=info) if info.size else b"", info.size)


def read_skeleton(url: str, blob: bytes, sizes: dict[str, int]) -> list[tuple[str, int, int, bytes]]:
    """The skeleton's pieces: (relative name, file size, offset, bytes), each checked to lie inside its
    file and its folder, as :func:`_keep` writes them, so that laying one out cannot grow past what the index
    vouches for. ``sizes`` are the indexed sizes of the main table's files the index names (``table.dat``
    and its data files): such a file is laid out at that size. Another file of the main table is kept
    whole, or by its first :data:`SMALL_FILE` bytes when it has up to :data:`MAX_PLACEHOLDER`; a
    subtable's files are kept whole. Anything else is a :class:`CorruptIndexError` naming ``url``."""
    out = []
    known: dict[str, int] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r:") as tar:
            for member in tar:
                name = member.pax_headers.get("dataplug.name", "")
                if not member.isfile() or not _KEPT_NAME.match(name) or ".." in name.split("/"):
                    raise CorruptIndexError(url, f"the MeasurementSet skeleton holds {member.name!r}, not a file of the folder")
                handle = tar.extractfile(member)
                assert handle is not None
                data = handle.read()
                size, offset = (_pax_int(url, member, key) for key in ("dataplug.size", "dataplug.offset"))
                _check_piece(url, name, size, offset, len(data), sizes)
                if known.setdefault(name, size) != size:
                    raise CorruptIndexError(url, f"the MeasurementSet skeleton gives {name!r} sizes {known[name]} and {size}")
                out.append((name, size, offset, data))
    except (tarfile.TarError, EOFError, UnicodeError) as exc:
        raise CorruptIndexError(url, f"the MeasurementSet skeleton is not a tar archive: {exc}") from None
    return out


def _pax_int(url: str, member: tarfile.TarInfo, key: str) -> int:
    """The non-negative integer a skeleton member's pax header ``key`` holds (digits only: ``int`` takes signs,
    spaces and underscores too)."""
    value = member.pax_headers.get(key)
    if value is None or not re.fullmatch(r"[0-9]{1,19}", value):
        raise CorruptIndexError(url, f"the MeasurementSet skeleton's {member.name!r} has {key} {value!r}, not a byte count")
    return int(value)


def _check_piece(url: str, name: str, size: int, offset: int, length: int, sizes: dict[str, int]) -> None:
    """A skeleton piece of ``length`` bytes at ``offset`` of file ``name`` of ``size`` bytes fits what :func:`_keep` writes."""
    if name in sizes:
        ok, what = size == sizes[name] and offset + length <= size, f"a file of {sizes[name]} bytes"
    elif "/" not in name:
        ok, what = offset == 0 and length == min(size, SMALL_FILE) and size <= MAX_PLACEHOLDER, "a main-table file kept from its start"
    else:
        ok, what = offset == 0 and length == size, "a subtable's file kept whole"
    if not ok:
        raise CorruptIndexError(url, f"the MeasurementSet skeleton puts {length} bytes at {offset} of {name!r} of {size} bytes; it is {what}")


# -- strategies ------------------------------------------------------------------------------------------


def _slice(
    obj: StorageObject,
    info: ObjectInfo,
    big_endian: bool,
    layouts: dict[str, dict[str, Any]],
    unreadable: dict[str, str],
    files: dict[str, tuple[int, str]],
    tables: dict[str, np.ndarray],
    number: int,
    start: int,
    stop: int,
    columns: tuple[str, ...] | None,
    skeleton: Any,
) -> MSSlice:
    """A slice of rows ``[start, stop)``, with the index entries of those rows only."""
    entries = {}
    for name, table in tables.items():
        if name.startswith(("ssm", "tsm")):
            lo = int(np.searchsorted(table[:, 0], start))
            hi = int(np.searchsorted(table[:, 0], max(stop - 1, start))) + 1
            entries[name] = table[max(lo - 1, 0) : hi] if stop > start else table[:0]  # the entry before gives the first's first row
    return MSSlice(obj, info, number, start, stop, big_endian, layouts, unreadable, files, entries, columns, skeleton)


def _slices(co: Any, bounds: list[int], columns: list[str] | None) -> list[MSSlice]:
    a = co.attributes
    layouts = json.loads(a.layout)
    unreadable = dict(a.unreadable)
    chosen = tuple(columns) if columns is not None else None
    for name in chosen or ():
        if name not in layouts and name not in unreadable:
            raise StrategyArgumentError(co.url, f"no column {name!r} in the main table; columns: {list(a.columns)}")
        if name in unreadable:
            raise InvalidFormatError(co.url, f"column {name!r} cannot be read by byte range: {unreadable[name]}")
    sidecar = co.index()
    files = {name: (size, identity) for name, size, identity in a.files}
    return [
        _slice(
            co.obj, sidecar.object_info, a.big_endian, layouts, unreadable, files, sidecar.tables, number, lo, hi, chosen, sidecar.blob("skeleton")
        )
        for number, (lo, hi) in enumerate(itertools.pairwise(bounds))
    ]


@strategy(MeasurementSet)
def partition_num_chunks(co: Any, num_chunks: int, columns: list[str] | None = None) -> list[MSSlice]:
    """``num_chunks`` runs of consecutive rows whose counts differ by at most one; ``columns`` are the
    columns each slice's ``get()`` returns (default: TIME, ANTENNA1, ANTENNA2, UVW, DATA, FLAG)."""
    n = positive_int(co.url, "num_chunks", num_chunks)
    return _slices(co, even_bounds(co.attributes.rows, n).tolist(), columns)


@strategy(MeasurementSet)
def partition_time(co: Any, num_chunks: int, columns: list[str] | None = None) -> list[MSSlice]:
    """``num_chunks`` runs of consecutive rows, each holding whole timestamps (runs of equal TIME): every
    boundary is the first row of a timestamp, the one nearest an even split of the rows. With more slices
    than timestamps, the extra slices are empty."""
    n = positive_int(co.url, "num_chunks", num_chunks)
    starts = co.index().tables["time_starts"]
    rows = co.attributes.rows
    if not len(starts):
        return _slices(co, [0] * n + [rows], columns)
    targets = even_bounds(rows, n)
    k = np.clip(np.searchsorted(starts, targets), 0, len(starts) - 1)
    previous = np.clip(k - 1, 0, len(starts) - 1)
    nearest = np.where(np.abs(starts[previous] - targets) <= np.abs(starts[k] - targets), starts[previous], starts[k])
    bounds = np.maximum.accumulate(nearest)
    bounds[0], bounds[-1] = 0, rows
    return _slices(co, bounds.tolist(), columns)


@strategy(MeasurementSet)
def ms_partitioning_strategy(co: Any, num_chunks: int) -> list[MSSlice]:
    """The original Dataplug's name: :func:`partition_num_chunks`."""
    return partition_num_chunks.__wrapped__(co, num_chunks)  # type: ignore[attr-defined]


@strategy(MeasurementSet)
def ms_partitioning_strategy_rowsize(co: Any, row_size: int) -> list[MSSlice]:
    """The original Dataplug's runs of ``row_size`` rows each (the last one shorter)."""
    size = positive_int(co.url, "row_size", row_size)
    rows = co.attributes.rows
    return _slices(co, [*range(0, rows, size), rows] if rows else [0, 0], None)


__all__ = ["DEFAULT_COLUMNS", "MSSlice", "MeasurementSet", "MeasurementSetAttributes", "partition_num_chunks", "partition_time"]
