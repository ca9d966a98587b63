"""casacore's on-disk table layout, read without casacore: the table description in ``table.dat``, the
StandardStMan file header and bucket index, and the tiled storage managers' headers, as far as a
MeasurementSet's main table needs them to find the bytes of a run of rows.

The formats follow casacore's sources (``tables/Tables/PlainTable.cc``, ``ColumnSet.cc``, ``BaseColDesc.cc``;
``tables/DataMan/SSMBase.cc``, ``SSMIndex.cc``, ``TiledStMan.cc``, ``TiledColumnStMan.cc``,
``TiledShapeStMan.cc``, ``TSMCube.cc``). Every structure is an AipsIO stream: a magic word at the start,
then objects of (total length, type name, version) followed by their fields; ``table.dat`` and the tiled
headers are big-endian, a StandardStMan file and every column's data in the table's own byte order.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dataplug.errors import InvalidFormatError

MAGIC = 0xBEBEBEBE
#: casacore's ``DataType`` codes of the column types read by range, with their numpy kind and bytes per value
#: (``None`` for Bool: one bit per value).
DTYPES: dict[int, tuple[str, str | None]] = {
    0: ("Bool", None),
    1: ("Char", "i1"),
    2: ("UChar", "u1"),
    3: ("Short", "i2"),
    4: ("UShort", "u2"),
    5: ("Int", "i4"),
    6: ("UInt", "u4"),
    7: ("Float", "f4"),
    8: ("Double", "f8"),
    9: ("Complex", "c8"),
    10: ("DComplex", "c16"),
    11: ("String", None),
    29: ("Int64", "i8"),
}
#: Bytes of a scalar column's default value in its description, by data type (String is an AipsIO string).
_DEFAULT_SIZES = {0: 1, 1: 1, 2: 1, 3: 2, 4: 2, 5: 4, 6: 4, 7: 4, 8: 8, 9: 8, 10: 16, 29: 8}
#: ``ColumnDesc`` option bits: Direct (stored in the row itself) and FixedShape.
OPTION_DIRECT, OPTION_FIXED = 1, 4
#: StandardStMan buckets start after a header of this many bytes.
SSM_HEADER_BYTES = 512
TILED_MANAGERS = ("TiledColumnStMan", "TiledShapeStMan")


class AipsIOReader:
    """Fields of an AipsIO stream, bounds-checked: a short or malformed stream is :class:`InvalidFormatError`
    naming ``url`` and the offset."""

    def __init__(self, url: str, data: bytes, big_endian: bool = True, pos: int = 0) -> None:
        self.url, self.data, self.pos = url, data, pos
        #: The type name of the object opened last.
        self.kind = ""
        self.order = ">" if big_endian else "<"

    def fail(self, cause: str) -> InvalidFormatError:
        return InvalidFormatError(self.url, f"{cause} (at byte {self.pos}): not a casacore table file, or truncated", offset=self.pos)

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise self.fail(f"{n} bytes needed, {len(self.data) - self.pos} left")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def _unpack(self, code: str) -> Any:
        return struct.unpack(self.order + code, self.take(struct.calcsize(code)))[0]

    def u32(self) -> int:
        return int(self._unpack("I"))

    def i32(self) -> int:
        return int(self._unpack("i"))

    def u64(self) -> int:
        return int(self._unpack("Q"))

    def boolean(self) -> bool:
        return self.take(1) != b"\x00"

    def string(self) -> str:
        return self.take(self.u32()).decode("utf-8", errors="replace")

    def magic(self) -> None:
        if self.u32() != MAGIC:
            self.pos -= 4
            raise self.fail("no AipsIO magic word")

    def start(self, *types: str, magic: bool = False) -> tuple[int, int]:
        """Open an object of one of ``types``: its version and the offset where it ends."""
        if magic:
            self.magic()
        begin = self.pos
        length = self.u32()
        kind = self.string()
        if types and kind not in types:
            self.pos = begin
            raise self.fail(f"object {kind!r} where {' or '.join(types)} was expected")
        if length < 4 or begin + length > len(self.data):
            raise self.fail(f"object {kind!r} of {length} bytes overruns the file")
        self.kind = kind
        return self.u32(), begin + length

    def skip_object(self) -> None:
        """Skip one object (a keyword record, say) by its stated length."""
        _, end = self.start()
        self.pos = end

    def iposition(self) -> tuple[int, ...]:
        version, end = self.start("IPosition")
        n = self.u32()
        code = "q" if version >= 2 else "i"
        if n > 64:
            raise self.fail(f"a shape of {n} dimensions")
        values = tuple(int(v) for v in struct.unpack(self.order + code * n, self.take(n * struct.calcsize(code))))
        self.pos = end
        return values

    def block(self, wide: bool | None = None) -> np.ndarray:
        """A ``Block`` of unsigned integers (4-byte, or 8-byte when ``wide`` or when its length says so)."""
        _, end = self.start("Block")
        n = self.u32()
        left = end - self.pos
        size = 8 if wide or (wide is None and n and left == 8 * n) else 4
        if n * size != left:
            raise self.fail(f"a block of {n} values in {left} bytes")
        values = np.frombuffer(self.take(n * size), dtype=f"{self.order}u{size}").astype(np.int64)
        self.pos = end
        return values


@dataclass
class ColumnDesc:
    """One column of a table description."""

    name: str
    dtype: int
    is_array: bool
    ndim: int
    shape: tuple[int, ...]
    option: int
    manager: int = -1


@dataclass
class TableFile:
    """What ``table.dat`` says: rows, byte order, columns (in the order storage managers number them) and
    the storage managers (sequence number -> type), with each manager's own data blob."""

    rows: int
    big_endian: bool
    columns: list[ColumnDesc]
    managers: dict[int, str]
    manager_data: dict[int, bytes] = field(default_factory=dict)

    def manager_columns(self, seqnr: int) -> list[ColumnDesc]:
        return [c for c in self.columns if c.manager == seqnr]


def read_table_dat(url: str, data: bytes) -> TableFile:
    """Parse a casacore ``table.dat``."""
    r = AipsIOReader(url, data)
    version, _ = r.start("Table", magic=True)
    rows = r.u32() if version <= 2 else r.u64()
    big_endian = r.u32() == 0
    r.string()  # the table type, "PlainTable"
    _, desc_end = r.start("TableDesc")
    r.string(), r.string(), r.string()  # name, version, comment
    r.skip_object()  # keywords
    r.skip_object()  # private keywords
    columns = [_column_desc(r) for _ in range(_count(r, 100_000, "columns"))]
    r.pos = desc_end
    if version == 1:
        r.skip_object()
    set_version = r.i32()
    if set_version < 0 and -set_version >= 3:
        r.u64()
        r.i32(), r.i32()
    elif set_version < 0:
        r.u32()
    r.u32()  # sequence counter
    order = []
    managers: dict[int, str] = {}
    for _ in range(_count(r, 10_000, "storage managers")):
        kind = r.string()
        seqnr = r.u32()
        managers[seqnr] = kind
        order.append(seqnr)
    by_name = {c.name: c for c in columns}
    for _ in columns:
        if r.u32() == 1:
            r.skip_object()
        name = r.string()
        column = by_name.get(name)
        if column is None:
            raise r.fail(f"column {name!r} is not in the table description")
        r.u32()
        column.manager = r.u32()
        if column.is_array and r.boolean():
            column.shape = r.iposition()
    manager_data = {}
    for seqnr in order:
        manager_data[seqnr] = r.take(r.u32())
    return TableFile(rows, big_endian, columns, managers, manager_data)


def _count(r: AipsIOReader, most: int, what: str) -> int:
    n = r.u32()
    if n > most:
        raise r.fail(f"{n} {what}")
    return n


def _column_desc(r: AipsIOReader) -> ColumnDesc:
    r.u32()
    kind = r.string()
    r.u32()
    name = r.string()
    r.string()  # comment
    r.string(), r.string()  # storage manager type and group
    dtype, option, ndim = r.i32(), r.i32(), r.i32()
    is_array = kind.startswith("ArrayColumnDesc")
    if not is_array and not kind.startswith("ScalarColumnDesc"):
        raise r.fail(f"column {name!r} is a {kind.split('<')[0]}, which dataplug does not read")
    shape = r.iposition() if is_array else ()
    r.i32()  # maximum string length
    r.skip_object()  # keywords
    r.u32()
    if is_array:
        r.boolean()
    elif dtype == 11:
        r.string()
    elif dtype in _DEFAULT_SIZES:
        r.take(_DEFAULT_SIZES[dtype])
    else:
        raise r.fail(f"column {name!r} has casacore data type {dtype}, which dataplug does not read")
    return ColumnDesc(name, dtype, is_array, ndim, tuple(shape), option)


# -- StandardStMan ---------------------------------------------------------------------------------------


@dataclass
class SSMHeader:
    """The header of a StandardStMan file: its buckets and where its bucket index lies."""

    bucket_size: int
    buckets: int
    index_buckets: int
    first_index_bucket: int
    index_offset: int
    index_length: int
    indexes: int


def read_ssm_header(url: str, data: bytes, big_endian: bool) -> SSMHeader:
    r = AipsIOReader(url, data, big_endian)
    version, _ = r.start("StandardStMan", magic=True)
    if version >= 3:
        r.boolean()
    bucket_size, buckets = r.u32(), r.u32()
    r.u32(), r.u32(), r.i32()  # cache size, free buckets, first free bucket
    index_buckets, first_index_bucket = r.u32(), r.i32()
    index_offset = r.u32() if version >= 2 else 0
    r.i32()  # last string bucket
    index_length, indexes = r.u32(), r.u32()
    if bucket_size < 16 or index_length > bucket_size * max(index_buckets, 1):
        raise r.fail(f"a StandardStMan header with buckets of {bucket_size} bytes and an index of {index_length}")
    return SSMHeader(bucket_size, buckets, index_buckets, first_index_bucket, index_offset, index_length, indexes)


def ssm_column_map(url: str, blob: bytes) -> tuple[str, np.ndarray, np.ndarray]:
    """A StandardStMan's name, and per column its byte offset in a bucket and its bucket index, from the
    manager's data in ``table.dat`` (big-endian)."""
    r = AipsIOReader(url, blob)
    r.start("SSM", magic=True)
    name = r.string()
    return name, r.block(wide=False), r.block(wide=False)


def ssm_index_bytes(url: str, header: SSMHeader, read_bucket: Any) -> bytes:
    """The bucket index's bytes, following the chain of index buckets (``read_bucket(n)`` returns bucket ``n``).

    Each index bucket starts with the next one's number twice, written by ``CanonicalConversion`` and so
    big-endian whatever the table's byte order (``SSMBase::writeIndex``); the index itself follows them."""
    out = bytearray()
    bucket = header.first_index_bucket
    room = header.bucket_size - 8
    for _ in range(header.index_buckets):
        if not 0 <= bucket < header.buckets:
            raise InvalidFormatError(url, f"the StandardStMan index names bucket {bucket} of {header.buckets}")
        data = read_bucket(bucket)
        if header.index_offset > 0:
            out += data[header.index_offset : header.index_offset + header.index_length]
        else:
            out += data[8 : 8 + min(room, header.index_length - len(out))]
        bucket = struct.unpack(">i", data[4:8])[0]
    if len(out) != header.index_length:
        raise InvalidFormatError(url, f"the StandardStMan index has {len(out)} of its {header.index_length} bytes")
    return bytes(out)


def read_ssm_indexes(url: str, data: bytes, count: int, big_endian: bool) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """Each bucket index: rows per bucket, the last row in each bucket, and each bucket's number."""
    r = AipsIOReader(url, data, big_endian)
    out = []
    for _ in range(count):
        version, end = r.start("SSMIndex", magic=True)
        used, rows_per_bucket = r.u32(), r.u32()
        r.i32()
        r.skip_object()  # free space map
        last = r.block(wide=version >= 2)
        buckets = r.block(wide=False)
        r.pos = end
        if len(last) < used or len(buckets) < used:
            raise r.fail(f"a StandardStMan index of {used} buckets lists {len(last)}")
        out.append((rows_per_bucket, last[:used], buckets[:used]))
    return out


# -- tiled storage managers ----------------------------------------------------------------------------


@dataclass
class Hypercube:
    """A tiled hypercube: its shape and tile shape (casacore's axis order, rows last), and where its tiles are."""

    shape: tuple[int, ...]
    tile: tuple[int, ...]
    file: int
    offset: int


@dataclass
class TiledHeader:
    """A tiled storage manager's header: its hypercubes, and for TiledShapeStMan which rows are in which cube."""

    kind: str
    cubes: list[Hypercube]
    files: dict[int, int]
    #: TiledShapeStMan only: per interval of rows, its last row, its cube and the cube position of that row.
    row_map: np.ndarray | None = None


def read_tiled_header(url: str, data: bytes) -> TiledHeader:
    """Parse the header file (``table.f<n>``) of a TiledColumnStMan or TiledShapeStMan (always big-endian)."""
    r = AipsIOReader(url, data)
    _, end = r.start(*TILED_MANAGERS, magic=True)
    kind = r.kind
    if kind == "TiledColumnStMan":
        r.iposition()
    cubes, files = _tiled_base(r)
    row_map = None
    if kind == "TiledShapeStMan":
        r.iposition()
        used = r.u32()
        last, cube, pos = r.block(), r.block(wide=False), r.block()
        if min(len(last), len(cube), len(pos)) < used:
            raise r.fail("a TiledShapeStMan row map shorter than it says")
        row_map = np.column_stack([last[:used], cube[:used], pos[:used]]).astype(np.int64)
    r.pos = end
    return TiledHeader(kind, cubes, files, row_map)


def _tiled_base(r: AipsIOReader) -> tuple[list[Hypercube], dict[int, int]]:
    version, end = r.start("TiledStMan")
    if version >= 2:
        r.boolean()
    r.u32()
    r.u64() if version >= 3 else r.u32()
    for _ in range(_count(r, 10_000, "columns")):
        r.i32()
    r.string()
    r.u64() if version >= 3 else r.u32()
    r.u32()  # dimensions
    files: dict[int, int] = {}
    for _ in range(r.u64() if version >= 3 else r.u32()):
        if r.boolean():
            file_version, seqnr = r.u32(), r.u32()
            files[seqnr] = r.u32() if file_version == 1 else r.u64()
    cubes = []
    for _ in range(r.u64() if version >= 3 else r.u32()):
        cube_version = r.u32()
        r.skip_object()  # the cube's id values (a Record)
        r.boolean()
        r.u32()
        shape, tile = r.iposition(), r.iposition()
        seqnr = r.i32()
        offset = r.u32() if cube_version == 1 else r.u64()
        cubes.append(Hypercube(shape, tile, seqnr, offset))
    r.pos = end
    return cubes, files
