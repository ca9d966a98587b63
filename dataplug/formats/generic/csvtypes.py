"""Column types of a whole CSV, found in the index pass, so every slice parses with the same schema.

pyarrow infers a column's type from the first block it parses and then fails on a later value that does not
fit (an int column with ``2.5`` after the first MiB). dataplug's index pass already sees every byte, so its
scanner also parses each range's rows with type inference, for the columns the head of the file did not
already make strings, and the reduce widens the types the way pyarrow would over one block holding the
whole file: ``null`` < ``int64`` < ``double``, dates < timestamps, anything else mixed is ``string``.
pyarrow's blocks are cut at the record starts the scan sampled (its anchors), so the rows are tokenized once
by pyarrow and their ends are not searched a second time: ``python benchmarks/csv_index.py`` prints the pass,
its CPU seconds and ``pandas.read_csv``'s.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from dataplug.errors import InvalidFormatError
from dataplug.framings.lines import Dialect, LineScanner, RangeScan, read_records, terminators

_LINE_END = re.compile(b"[\r\n]")
_NUMBERS = ("int64", "double")
#: An int64 column whose values are all 0 or 1: pyarrow reads those as booleans too, so with ``true`` or
#: ``false`` elsewhere in the file the column is ``bool``, not ``string``.
_BOOLISH = "int64[0/1]"
_TIMES = ("date32[day]", "timestamp[s]", "timestamp[ms]", "timestamp[us]", "timestamp[ns]")
#: Bytes of rows pyarrow parses at once for type inference (its memory is a few times that), and the
#: longest field whose type is inferred from its text: a longer one is a string (see :func:`_shorten`).
INFER_BLOCK, LONG_FIELD = 8 * 2**20, 2**16
#: Look-ahead the pass keeps for a range's last row: one running further is typed after the pass, through
#: the finished index, a block at a time; and the bytes searched for record ends at once.
_AHEAD, _PIECE = 2**20, 2**20
#: Bytes of look-ahead searched at once for the end of a range's last row, which is usually short.
_ROW_PIECE = 2**14


def widen(a: str, b: str) -> str:
    """The type pyarrow infers for a column holding the values of a column of type ``a`` and one of ``b``."""
    if a == b or b == "null":
        return a
    if a == "null":
        return b
    if {a, b} == {_BOOLISH, "bool"}:
        return "bool"
    a, b = ("int64" if t == _BOOLISH else t for t in (a, b))
    if a == b:
        return a
    for ladder in (_NUMBERS, _TIMES):
        if a in ladder and b in ladder:
            return max(a, b, key=ladder.index)
    return "string"


def parse_options(delimiter: str, quotechar: str | None) -> pacsv.ParseOptions:
    return pacsv.ParseOptions(delimiter=delimiter, quote_char=quotechar or False, newlines_in_values=True)


def as_utf8(data: bytes | np.ndarray, encoding: str) -> bytes | np.ndarray:
    """``data`` re-encoded as UTF-8 for pyarrow, which parses UTF-8 only (unchanged when it is UTF-8)."""
    return data if encoding == "utf-8" else bytes(data).decode(encoding).encode("utf-8")


def infer_types(
    url: str,
    data: bytes | np.ndarray,
    names: tuple[str, ...],
    check: tuple[str, ...],
    delimiter: str,
    quotechar: str | None,
    offset: int,
    encoding: str = "utf-8",
    dialect: Dialect | None = None,
    starts: np.ndarray | None = None,
) -> dict[str, str]:
    """Types pyarrow infers for the columns ``check`` of ``data`` (header-less rows, bytes or a uint8 array
    read in place, in ``encoding``). Given the ``dialect``, rows of more than :data:`INFER_BLOCK` bytes are
    parsed a block of whole records at a time and the blocks' types widened, so pyarrow's memory (a few
    times what it parses) stays bounded; a record longer than a block is parsed with its long fields
    replaced (see :func:`_shorten`). ``starts`` (sorted offsets in ``data`` of some of its records, such as
    the anchors the record scan sampled) give the blocks' edges without searching for record ends again."""
    if not check or not bytes(data[:1 << 16]).strip() and not bytes(data).strip():
        return {}
    if dialect is None or len(data) <= INFER_BLOCK:
        return _parse_types(url, data, names, check, delimiter, quotechar, offset, encoding)
    arr = np.frombuffer(data, np.uint8) if isinstance(data, bytes) else data
    found: dict[str, str] = {}
    blocks = _blocks(url, arr, dialect, len(names), offset) if starts is None else _blocks_at(url, arr, dialect, len(names), offset, starts)
    for at, block in blocks:
        for name, t in _parse_types(url, block, names, check, delimiter, quotechar, offset + at, encoding).items():
            found[name] = widen(found.get(name, "null"), t)
    return found


def _parse_types(
    url: str, data: bytes | np.ndarray, names: tuple[str, ...], check: tuple[str, ...], delimiter: str, quotechar: str | None, offset: int, encoding: str
) -> dict[str, str]:
    """Types of the columns ``check`` of ``data`` parsed by pyarrow as one block."""
    data = as_utf8(data, encoding)
    # One block for the whole range (block_size is an int32 in pyarrow), and no threads: the pass maps
    # ranges on the caller's pool already.
    read = pacsv.ReadOptions(column_names=list(names), block_size=min(len(data) + 1, 2**31 - 1), use_threads=False)
    convert = pacsv.ConvertOptions(include_columns=list(check))
    try:
        table = pacsv.read_csv(pa.BufferReader(pa.py_buffer(data)), read_options=read, parse_options=parse_options(delimiter, quotechar), convert_options=convert)
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise InvalidFormatError(url, f"rows do not parse as CSV with {len(names)} columns: {exc}", offset=offset) from None
    return table_types(table)


def _record_ends(arr: np.ndarray, dialect: Dialect, in_quotes: bool = False, piece_bytes: int = _PIECE) -> Iterator[np.ndarray]:
    """The ends (one past each terminator) of the records in ``arr``, found ``piece_bytes`` at a time with
    the quote parity carried over, so the work arrays stay small whatever the record sizes."""
    for at in range(0, arr.size, piece_bytes):
        piece = arr[at : at + piece_bytes]
        yield terminators(piece, dialect, in_quotes) + (at + 1)
        if dialect.quote is not None:
            in_quotes ^= bool(np.count_nonzero(piece == dialect.quote) & 1)


def _blocks(url: str, arr: np.ndarray, dialect: Dialect, columns: int, offset: int) -> Iterator[tuple[int, bytes | np.ndarray]]:
    """``arr`` (whole records) as blocks of whole records of at most :data:`INFER_BLOCK` bytes, each with its
    offset in ``arr``; a record longer than that is one block of its own, shortened by :func:`_shorten`."""
    start, last = 0, 0  # the block being built, and the end of its last whole record so far
    for ends in _record_ends(arr, dialect):
        while ends.size:
            k = int(np.searchsorted(ends, start + INFER_BLOCK, side="right"))
            if k == ends.size:
                last = int(ends[-1])
                break
            if k:
                last = int(ends[k - 1])
            if last > start:
                yield start, arr[start:last]
            else:
                last = int(ends[k])
                yield start, _shorten(url, arr[start:last], dialect, columns, offset + start)
            start = last
            ends = ends[np.searchsorted(ends, start, side="right") :]
    if start < arr.size:
        if arr.size - start > INFER_BLOCK and last > start:
            yield start, arr[start:last]
            start = last
        rest = arr[start:]
        yield start, rest if rest.size <= INFER_BLOCK else _shorten(url, rest, dialect, columns, offset + start)


def _blocks_at(url: str, arr: np.ndarray, dialect: Dialect, columns: int, offset: int, starts: np.ndarray) -> Iterator[tuple[int, bytes | np.ndarray]]:
    """:func:`_blocks` cut at the known record ``starts`` in ``arr``: each block runs to the last start at
    most :data:`INFER_BLOCK` bytes after its own. Only a stretch with no known start in that reach (a long
    record, or starts sampled sparsely) is searched for record ends, by :func:`_blocks`."""
    edges = np.unique(np.concatenate((np.asarray(starts, np.int64), [arr.size])))
    edges = edges[(edges > 0) & (edges <= arr.size)]
    start = 0
    while start < arr.size:
        k = int(np.searchsorted(edges, start + INFER_BLOCK, side="right"))
        stop = int(edges[k - 1]) if k and edges[k - 1] > start else int(edges[np.searchsorted(edges, start, side="right")])
        if stop - start <= INFER_BLOCK:
            yield start, arr[start:stop]
        else:
            for at, block in _blocks(url, arr[start:stop], dialect, columns, offset + start):
                yield start + at, block
        start = stop


def _shorten(url: str, record: np.ndarray, dialect: Dialect, columns: int, offset: int) -> bytes:
    """One record with each field longer than :data:`LONG_FIELD` bytes replaced by ``x``: no number, date,
    boolean or null is that long, so the field is text either way, and pyarrow parses the record in a few
    times ``columns`` x ``LONG_FIELD`` bytes. A record with more fields than ``columns`` is an error, found
    without parsing it."""
    seps: list[np.ndarray] = []
    quotes, count = 0, 0
    for at in range(0, record.size, _PIECE):
        piece = record[at : at + _PIECE]
        found = np.flatnonzero(piece == dialect.delimiter) if dialect.delimiter is not None else np.zeros(0, np.int64)
        if dialect.quote is not None:
            q = np.flatnonzero(piece == dialect.quote)
            found = found[(np.searchsorted(q, found) + quotes) & 1 == 0]
            quotes += q.size
        count += found.size
        if count >= columns:
            raise InvalidFormatError(url, f"rows do not parse as CSV with {columns} columns: a record of {record.size} bytes has more fields", offset=offset)
        seps.append(found + at)
    body = record.size
    for terminator in (0x0A, 0x0D):  # the record's own LF, CRLF or CR
        body -= 1 if body and record[body - 1] == terminator else 0
    bounds = np.concatenate(([-1], *seps, [body]))
    out = []
    for lo, hi in zip(bounds[:-1] + 1, bounds[1:]):
        out.append(b"x" if hi - lo > LONG_FIELD else record[lo:hi].tobytes())
    return (bytes([dialect.delimiter]) if dialect.delimiter is not None else b"").join(out) + b"\n"


@dataclass
class CSVRangeScan:
    """Map result: the line scan and, for each quote state the range may start in, the types of the rows
    that start in it (None when its last row runs past the look-ahead) or the parse error they gave. Only
    the reduce knows the real state, so an error is raised there, not here."""

    lines: RangeScan
    types: tuple[dict[str, str] | None, dict[str, str] | None]
    errors: tuple[InvalidFormatError | None, InvalidFormatError | None] = (None, None)


@dataclass(frozen=True)
class CSVScanner:
    """The line scanner plus type inference over the rows that start in the range, for both quote states
    (a range cut at an arbitrary byte may start inside a quoted field)."""

    lines: LineScanner
    names: tuple[str, ...]
    check: tuple[str, ...]
    delimiter: str
    quotechar: str | None
    has_header: bool

    def enough(self, after: np.ndarray) -> bool:
        # A search stops at the first line break; a sequential pass asks again as its buffer grows.
        return self.lines.enough(after) and (not self.check or after.size >= _AHEAD or _LINE_END.search(after) is not None)

    def __call__(self, full: np.ndarray, first: int, start: int, end: int, eof: bool) -> CSVRangeScan:
        scan = self.lines(full, first, start, end, eof)
        if not self.check:
            return CSVRangeScan(scan, ({}, {}))
        # A state whose parity puts a quote in the middle of an unquoted field cannot be the range's real
        # one (the reduce would reject the file), so its rows are not parsed: in quoted files one of the
        # two states almost always shows such a quote, which halves the cost of inference.
        found = [self._types(scan, st, full, first, start, end, eof) if scan.states[st].bad_quote < 0 else ({}, None) for st in (0, 1)]
        return CSVRangeScan(scan, (found[0][0], found[1][0]), (found[0][1], found[1][1]))

    def _types(self, scan: RangeScan, st: int, full: np.ndarray, first: int, start: int, end: int, eof: bool) -> tuple[dict[str, str] | None, InvalidFormatError | None]:
        """Types of the rows starting in the range if it starts in quote state ``st``, or the parse error."""
        state, data_start = scan.states[st], self.lines.data_start
        first_row = int(state.anchor_offsets[0]) if state.count else None
        last_row = state.last_start if state.count else None
        if st == 0 and start <= data_start < end and not self.has_header:
            first_row = data_start
            last_row = data_start if last_row is None else last_row
        if first_row is None or last_row is None:
            return {}, None
        stop = self._row_end(full, first, start, end, eof, last_row)
        if stop is None:
            return None, None
        data = full[first + first_row - start : first + stop - start]
        # The scan's anchors are record starts in this state: blocks for pyarrow are cut there, so the rows
        # are not searched for their ends a second time.
        starts = state.anchor_offsets - first_row
        try:
            return infer_types(self.lines.url, data, self.names, self.check, self.delimiter, self.quotechar, first_row, self.lines.dialect.encoding, self.lines.dialect, starts), None
        except InvalidFormatError as exc:
            exc.__context__ = None
            return None, exc.with_traceback(None)

    def _row_end(self, full: np.ndarray, first: int, start: int, end: int, eof: bool, row: int) -> int | None:
        """End of the row starting at ``row`` (which runs past ``end``), found in the look-ahead; None when
        the look-ahead ends first."""
        quote = self.lines.dialect.quote
        in_quotes = quote is not None and bool(np.count_nonzero(full[first + row - start : first + end - start] == quote) & 1)
        for ends in _record_ends(full[first + end - start :], self.lines.dialect, in_quotes, _ROW_PIECE):
            if ends.size:
                return end + int(ends[0])
        return start + full.size - first if eof else None


def merge_types(names: tuple[str, ...], sample: dict[str, str], found: list[dict[str, str]]) -> tuple[str, ...]:
    """Each column's type over the head sample and every range; a column of nothing but nulls is a string."""
    out = dict(sample)
    for types in found:
        for name, t in types.items():
            out[name] = widen(out.get(name, "null"), t)
    final = {"null": "string", _BOOLISH: "int64"}
    return tuple(final.get(out.get(name, "null"), out.get(name, "null")) for name in names)


def widen_columns(per_object: list[tuple[str, ...]]) -> tuple[str, ...]:
    """One type per column over several CSV objects' column types (a dataset's), widened as pyarrow would
    over one file holding them all: ``int64`` and ``double`` give ``double``, a date and a timestamp the
    timestamp, anything else mixed ``string``. Pass only objects with rows: a header-only object's columns
    are typed ``string`` for want of values. An object's column of only ``0``/``1`` is ``int64`` by then, so
    with a ``bool`` column elsewhere it widens to ``string`` where one file would give ``bool``."""
    if not per_object:
        return ()
    out = list(per_object[0])
    for types in per_object[1:]:
        out = [widen(a, b) for a, b in zip(out, types)]
    return tuple(out)


def table_types(table: pa.Table) -> dict[str, str]:
    """Each column's type name, with int64 columns of only 0 and 1 told apart (see :data:`_BOOLISH`)."""
    out = {}
    for field, column in zip(table.schema, table.columns):
        out[field.name] = str(field.type)
        if pa.types.is_int64(field.type):
            bounds = pc.min_max(column).as_py()
            if bounds["min"] is not None and 0 <= bounds["min"] and bounds["max"] <= 1:
                out[field.name] = _BOOLISH
    return out


def sample_schema(url: str, sample: bytes, has_header: bool, delimiter: str, quotechar: str | None, encoding: str = "utf-8") -> tuple[tuple[str, ...], dict[str, str]]:
    """Column names and types from the head of the file, parsed as pyarrow parses a file."""
    if not sample.strip():
        return (), {}
    try:
        sample = bytes(as_utf8(sample, encoding))
    except UnicodeDecodeError as exc:
        raise InvalidFormatError(url, f"not valid {encoding} text ({exc.reason}); pass encoding= to preprocess, e.g. encoding='latin-1'", offset=exc.start) from None
    if not sample.endswith((b"\n", b"\r")):
        sample += b"\n"  # pyarrow cannot infer columns from a last line without its line break
    read = pacsv.ReadOptions(autogenerate_column_names=not has_header, block_size=len(sample) + 1, use_threads=False)
    try:
        table = pacsv.read_csv(io.BytesIO(sample), read_options=read, parse_options=parse_options(delimiter, quotechar))
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise InvalidFormatError(url, f"not a CSV that pyarrow can parse: {exc}", offset=0) from None
    return tuple(table.schema.names), table_types(table)


def arrow_type(name: str) -> pa.DataType:
    try:
        return pa.type_for_alias(name)
    except ValueError:
        return pa.string()


def fix_up(url: str, read: Any, index: Any, dialect: Any, lo: int, hi: int, names: tuple[str, ...], check: tuple[str, ...], delimiter: str, quotechar: str | None) -> dict[str, str]:
    """Types of records ``[lo, hi)`` read through the finished index (for ranges the map could not infer)."""
    return infer_types(url, read_records(url, read, index, lo, hi, dialect), names, check, delimiter, quotechar, 0, dialect.encoding, dialect)
