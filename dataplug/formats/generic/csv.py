"""CSV: slices of whole rows, cut only at true record starts found quote-aware (RFC 4180).

Preprocessing indexes record starts over any codec (quoted fields may hold delimiters, doubled quotes and
newlines; LF, CRLF or a bare CR; a UTF-8 BOM), reads the header, and infers every column's type over the
whole file in the same pass (:mod:`dataplug.formats.generic.csvtypes`). Every slice parses with those names
and types, so the slices of a partition concatenate to the table pyarrow gives for the whole file.
"""

from __future__ import annotations

import csv as pycsv
import dataclasses
import io
import re
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from dataplug.errors import CorruptIndexError, InvalidFormatError, StrategyArgumentError
from dataplug.format import Detection, IndexData, PreprocessContext, Sample
from dataplug.framings.base import StreamAttributes, StreamFormat, codec_attributes, cut_offsets, preprocess_reader
from dataplug.formats.generic.csvtypes import CSVScanner, arrow_type, as_utf8, fix_up, merge_types, parse_options, sample_schema
from dataplug.framings.lines import (
    DEFAULT_SAMPLE_BYTES,
    ENCODING_OPTION,
    SAMPLE_BYTES_OPTION,
    UTF8_BOM,
    Dialect,
    LineIndex,
    LineRangeSlice,
    LineScanner,
    line_slices,
    read_records,
    reduce_scans,
    terminators,
    text_encoding,
)
from dataplug.strategies import positive_int, step_bounds, strategy

#: Bytes of the file's head parsed to infer column types (pyarrow's own default block size).
SCHEMA_SAMPLE_BYTES = 2**20
#: Integers up to this magnitude are exactly doubles: an int64 column read as double changes none of them.
_EXACT_DOUBLE = 2**53
#: Any byte that ``bytes.strip()`` keeps: a slice without one holds blank lines only.
_NON_BLANK = re.compile(rb"[^ \t\n\r\x0b\x0c]")


@dataclass(frozen=True)
class CSVAttributes(StreamAttributes):
    #: Data rows (records after the header line, if any), as pyarrow counts them: blank lines skipped.
    rows: int
    #: Blank lines among the records after the header (CSV parsers skip them).
    blank_lines: int
    columns: tuple[str, ...]
    #: pyarrow type names, e.g. ``"int64"``, ``"double"``, ``"string"``, ``"timestamp[s]"``.
    column_types: tuple[str, ...]
    has_header: bool
    #: The header record as it is in the file (newline included), "" without a header.
    header: str
    delimiter: str
    quotechar: str | None
    data_start: int
    sample_bytes: int
    #: Python codec name of the text (checked over every byte in the index pass).
    encoding: str = "utf-8"


def _single_byte(url: str, name: str, value: str | None) -> int | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value.encode()) != 1 or value in "\r\n":
        raise StrategyArgumentError(url, f"{name} must be one ASCII character other than a newline, got {value!r}")
    return value.encode()[0]


def _dialect(url: str, delimiter: str, quotechar: str | None, encoding: str = "utf-8") -> Dialect:
    """Records end at LF, CRLF or a bare CR (as pyarrow reads them), outside quoted fields."""
    return Dialect(_single_byte(url, "quotechar", quotechar), _single_byte(url, "delimiter", delimiter), bare_cr=True, encoding=encoding)


#: Delimiters format detection tries, in this order.
_SNIFF_DELIMITERS = ",\t;|"


class CSV(StreamFormat):
    """Comma-separated values.

    Preprocessing options: ``delimiter`` (or the original's ``separator``, default ``","``), ``quotechar``
    (default ``'"'``, ``None`` for no quoting), ``header`` (default ``True``), ``sample_bytes`` (index
    density), ``compression`` and ``spacing`` (see :class:`~dataplug.framings.base.StreamFormat`), ``infer_types``:
    ``"file"`` (default) infers column types over every row in the index pass, which costs about one
    pyarrow parse of the file spread over the pass's workers (``python benchmarks/csv_index.py`` prints the
    pass both ways); ``"head"`` infers them from the first MiB only, as pyarrow does, for files known to be
    uniform.
    """

    Attributes = CSVAttributes
    #: 3: the line index keeps the record numbers of blank lines (``blanks``), so slices count rows exactly.
    index_version = 3
    options = {
        "delimiter": "field separator, one character (default ',')",
        "separator": "the original Dataplug's name for delimiter",
        "quotechar": "quote character, or None for no quoting (default '\"')",
        "header": "whether the first record names the columns (default True)",
        **SAMPLE_BYTES_OPTION,
        **ENCODING_OPTION,
        "infer_types": "'file' (default): column types over every row; 'head': from the first MiB",
    }

    sniff_priority = 10

    @classmethod
    def sniff(cls, sample: Sample) -> Detection | None:
        """One delimiter (``,`` tab ``;`` ``|``) splits every sampled record into the same number (at least 2)
        of fields, quotes respected (a record may span lines); the delimiter with the most fields wins."""
        lines = sample.lines()
        if not lines or b"\x00" in sample.decoded:
            return None
        text = "\n".join(lines[:200]) + "\n"
        best: tuple[int, str] | None = None
        for delimiter in _SNIFF_DELIMITERS:
            try:
                rows = [row for row in pycsv.reader(io.StringIO(text), delimiter=delimiter) if row]
            except pycsv.Error:
                continue
            if not sample.complete and len(rows) > 1:
                rows = rows[:-1]  # the sample may end inside a quoted field
            widths = {len(row) for row in rows}
            if len(widths) == 1 and (width := widths.pop()) >= 2 and (best is None or width > best[0]):
                best = (width, delimiter)
        if best is None:
            return None
        width, delimiter = best
        few = " (a few lines only)" if len(lines) < 3 else ""
        options = () if delimiter == "," else (("delimiter", delimiter),)
        return cls.detected(sample, f"{width} columns separated by {delimiter!r} on {len(lines)} lines{few}", ("UTF8Text",), options)

    @classmethod
    def preprocess(cls, ctx: PreprocessContext) -> IndexData:
        url, size, opts = ctx.obj.url, ctx.info.size, ctx.options
        delimiter = opts.get("delimiter", opts.get("separator", ","))
        quotechar = opts.get("quotechar", '"')
        has_header = bool(opts.get("header", True))
        sample_bytes = int(opts.get("sample_bytes", DEFAULT_SAMPLE_BYTES))
        encoding = text_encoding(url, opts.get("encoding", "utf-8"))
        dialect = _dialect(url, delimiter, quotechar, encoding)
        head = cls.logical_head(ctx, SCHEMA_SAMPLE_BYTES)
        data_start = len(UTF8_BOM) if encoding == "utf-8" and head.startswith(UTF8_BOM) else 0
        data_start = len(head) - len(head[data_start:].lstrip(b"\r\n"))  # blank lines before the first record, as pyarrow skips them
        names, sample_types = sample_schema(url, _whole_records(head, data_start, dialect), has_header, delimiter, quotechar, encoding)
        infer = opts.get("infer_types", "file")
        if infer not in ("file", "head"):
            raise StrategyArgumentError(url, f"infer_types must be 'file' or 'head', got {infer!r}")
        check = tuple(name for name in names if sample_types.get(name) != "string") if infer == "file" else ()
        lines = LineScanner(url, dialect, sample_bytes, data_start)
        scans, codec_index = cls.scan_stream(ctx, CSVScanner(lines, names, check, delimiter, quotechar, has_header))
        index = reduce_scans(url, [s.lines for s in scans], data_start, codec_index.logical_size, keep_blanks=True)
        read = preprocess_reader(ctx, codec_index)
        first = 1 if has_header and index.total else 0
        types = merge_types(names, sample_types, _range_types(url, scans, read, index, dialect, first, names, check, delimiter, quotechar))
        header = read_records(url, read, index, 0, first, dialect)
        try:
            header_text = header.decode(encoding)
        except UnicodeDecodeError as exc:
            raise InvalidFormatError(url, f"header is not valid {encoding}; pass encoding= to preprocess, e.g. encoding='latin-1'", offset=data_start + exc.start) from None
        attributes = CSVAttributes(
            **codec_attributes(size, codec_index),
            rows=index.total - first - index.blanks.size,
            blank_lines=index.blanks.size,
            columns=names,
            column_types=types,
            has_header=has_header,
            header=header_text,
            delimiter=delimiter,
            quotechar=quotechar,
            data_start=data_start,
            sample_bytes=sample_bytes,
            encoding=encoding,
        )
        return IndexData(attributes, tables={**codec_index.tables, **index.tables()}, blobs=codec_index.blobs)

    @classmethod
    def validate_records(cls, url: str, attributes: Any, tables: dict, logical_size: int) -> None:
        index = LineIndex.from_tables(url, tables, logical_size, blanks=True)
        first = 1 if attributes.has_header and index.total else 0
        blank_rows = index.blanks.size != attributes.blank_lines or (index.blanks.size and index.blanks[0] < first)
        if attributes.rows + attributes.blank_lines != index.total - first or blank_rows or len(attributes.columns) != len(attributes.column_types):
            raise CorruptIndexError(url, "CSV attributes disagree with the line index")


def _whole_records(head: bytes, data_start: int, dialect: Dialect) -> bytes:
    """The head of the file up to its last record terminator (all of it when it has none). Only names and
    the columns to check come from it: the pass infers the types of every row."""
    ends = terminators(head[data_start:], dialect)
    return head[: data_start + int(ends[-1]) + 1] if ends.size else head


def _states(scans: list[Any]) -> list[int]:
    """The quote state each range really starts in (the reduce's chaining, repeated)."""
    states, state = [], 0
    for scan in scans:
        states.append(state)
        state ^= int(scan.lines.flips)
    return states


def _range_types(
    url: str, scans: list[Any], read: Any, index: LineIndex, dialect: Dialect, first: int, names: tuple[str, ...], check: tuple[str, ...], delimiter: str, quotechar: str | None
) -> list[dict[str, str]]:
    """Each range's column types, for the quote state it really starts in; ranges whose last row ran past
    the look-ahead are parsed again here through the finished index (the first range from data record
    ``first``: record 0 starts the object, the header when there is one)."""
    found, before = [], 1
    for scan, state in zip(scans, _states(scans)):
        count = scan.lines.states[state].count
        lo = first if before == 1 else before
        if scan.errors[state] is not None:
            raise scan.errors[state]
        if scan.types[state] is not None:
            found.append(scan.types[state])
        elif check and before + count > lo:
            found.append(fix_up(url, read, index, dialect, lo, before + count, names, check, delimiter, quotechar))
        before += count
    return found


@dataclass
class CSVSlice(LineRangeSlice):
    """Rows of a CSV object, with what is needed to parse them alone: header, names, types, dialect."""

    header: str
    columns: tuple[str, ...]
    column_types: tuple[str, ...]
    delimiter: str
    quotechar: str | None
    #: Blank lines among the slice's records: CSV parsers skip them, so they are no rows.
    blank_lines: int = 0
    #: True when the index inferred ``column_types`` over every row (``infer_types='file'``): rows that do
    #: not parse as those types, or integers they would change, mean the index does not fit the object.
    types_from_file: bool = False
    #: The object's own column types when ``column_types`` are a dataset's, widened over its objects
    #: (:meth:`widened`); empty when they are the object's.
    file_column_types: tuple[str, ...] = ()

    def widened(self, column_types: tuple[str, ...]) -> CSVSlice:
        """This slice parsing with ``column_types``, the types of a dataset's objects widened together as
        over one file (:func:`~dataplug.formats.generic.csvtypes.widen_columns`), so that every slice of a
        dataset partition has one schema. The index's checks keep to the object's own types."""
        own = self.file_column_types or self.column_types
        return dataclasses.replace(self, column_types=tuple(column_types), file_column_types=own if tuple(column_types) != own else ())

    @property
    def num_records(self) -> int:
        """Rows: the slice's records less its blank lines, as many as :meth:`to_arrow` returns."""
        return self.stop - self.first - self.blank_lines

    def get(self) -> str:
        """The slice's text with the header line first (as the original Dataplug returned it)."""
        return self.header + self.text()

    def dump(self, fp: BinaryIO) -> None:
        """The header line, then the slice's rows as the file holds them: a CSV file of its own."""
        fp.write(self.header.encode(self.dialect.encoding))
        fp.write(self.raw())

    def schema(self, column_types: dict[str, Any] | None = None) -> pa.Schema:
        types = {name: arrow_type(t) for name, t in zip(self.columns, self.column_types)}
        types.update({k: (v if isinstance(v, pa.DataType) else arrow_type(str(v))) for k, v in (column_types or {}).items()})
        return pa.schema([(name, types[name]) for name in self.columns])

    def as_arrow(self, column_types: dict[str, Any] | None = None, columns: list[str] | None = None) -> pa.Table:
        """:meth:`to_arrow` with the original argument order."""
        return self.to_arrow(columns, column_types)

    def to_arrow(self, columns: list[str] | None = None, column_types: dict[str, Any] | None = None) -> pa.Table:
        """The slice's rows as a ``pyarrow.Table`` with the file's column names and (inferred) types.

        ``column_types`` overrides types by column name (a ``pyarrow.DataType`` or a type name);
        ``columns`` keeps only those columns, which pyarrow then does not convert at all.
        """
        schema = self.schema(column_types)
        if columns is not None:
            schema = pa.schema([schema.field(name) for name in columns])
        offset, data = self._fetch()
        if _NON_BLANK.search(data) is None:  # stops at the first byte of a row, unlike a strip() copying the slice
            return schema.empty_table()
        try:
            data = as_utf8(data, self.dialect.encoding)
        except UnicodeDecodeError as exc:
            raise InvalidFormatError(self.url, f"not valid {self.dialect.encoding}: {exc.reason}", offset=offset + exc.start) from None
        convert = pacsv.ConvertOptions(column_types=dict(zip(schema.names, schema.types)), include_columns=list(schema.names))
        parse = parse_options(self.delimiter, self.quotechar)
        # pyarrow's default block (1 MiB) must hold a whole record; a slice with a longer one parses again
        # as one block. Single-threaded: a threaded read_csv can return while a pyarrow pool thread still
        # holds the reader and its Python input, whose release takes the GIL; if the interpreter is
        # finalizing by then, that thread is unwound through a noexcept destructor and the process aborts
        # with "terminate called without an active exception" (apache/arrow#34314): 15 of 80 fresh index
        # builds four at a time, 0 of 80 single-threaded. Slices run in parallel workers anyway, so threads
        # inside one slice's parse gain little.
        for block in (None, len(data) + 1):
            read = pacsv.ReadOptions(column_names=list(self.columns), use_threads=False, **({"block_size": block} if block else {}))
            try:
                table = pacsv.read_csv(pa.BufferReader(data), read_options=read, parse_options=parse, convert_options=convert)
            except pa.ArrowInvalid as exc:
                error = exc
                if len(data) < 2**20:
                    break
            else:
                self._check_widened(table, data, read, parse, set(column_types or ()))
                return table
        column = re.match(r"In CSV column #(\d+)", str(error))
        name = self.columns[int(column.group(1))] if column and int(column.group(1)) < len(self.columns) else None
        if self.types_from_file and name is not None and name not in (column_types or {}):
            raise CorruptIndexError(
                self.url,
                f"the index types column {name!r} as {self.column_types[self.columns.index(name)]}, which it inferred from every row, but rows [{self.first}, {self.stop}) "
                f"do not parse as that ({error}): the index does not describe this object; run preprocess(force=True)",
            )
        raise InvalidFormatError(self.url, f"rows do not parse with the file's schema ({error}); pass column_types= to override", offset=offset)

    def _check_widened(self, table: pa.Table, data: bytes, read: pacsv.ReadOptions, parse: pacsv.ParseOptions, overridden: set[str]) -> None:
        """Refuse a ``double`` the index gives a column whose values here are all integers and not all
        exactly doubles (beyond 2**53): an int64 column widened by an edited index would change them
        silently. Cheap: the column is parsed again only when a value is that large."""
        if not self.types_from_file:
            return
        for name, t in zip(self.columns, self.file_column_types or self.column_types):
            if t != "double" or name in overridden or name not in table.column_names:
                continue
            bounds = pc.min_max(table[name]).as_py()  # no array of absolute values, as pc.abs would make
            if bounds["min"] is None:
                continue
            largest = max(abs(bounds["min"]), abs(bounds["max"]))
            if not _EXACT_DOUBLE < largest < 2**63:
                continue
            try:
                ints = pacsv.read_csv(io.BytesIO(data), read_options=read, parse_options=parse, convert_options=pacsv.ConvertOptions(column_types={name: pa.int64()}, include_columns=[name]))
            except pa.ArrowInvalid:
                continue  # not all integers: a double column
            changed = pc.not_equal(pc.cast(table[name], pa.int64(), safe=False), ints[name])
            if pc.any(changed).as_py():
                example = ints[name].filter(changed)[0].as_py()
                raise CorruptIndexError(
                    self.url,
                    f"the index types column {name!r} as double, but in rows [{self.first}, {self.stop}) it holds only integers, some of which a double "
                    f"changes (e.g. {example}): an int64 column widened by an edited index; run preprocess(force=True)",
                )

    def to_pandas(self, columns: list[str] | None = None, column_types: dict[str, Any] | None = None):
        """The slice's rows as a pandas DataFrame."""
        return self.to_arrow(columns, column_types).to_pandas()

    def as_pandas(self, column_types: dict[str, Any] | None = None, columns: list[str] | None = None):
        """:meth:`to_pandas` with the original argument order (also the original's ``get_as_pandas``)."""
        return self.to_pandas(columns, column_types)

    get_as_pandas = as_pandas


def _index(co: Any) -> tuple[LineIndex, int]:
    """The line index, and the number of the first data record (1 after a header line)."""
    index = LineIndex.from_tables(co.url, co.index().tables, co.attributes.uncompressed_size, blanks=True)
    return index, 1 if co.attributes.has_header and index.total else 0


def _slices(co: Any, index: LineIndex, bounds: np.ndarray) -> list[CSVSlice]:
    """One slice per run of records ``[bounds[i], bounds[i+1])``, its blank lines counted for all at once."""
    a = co.attributes
    return line_slices(
        co,
        CSVSlice,
        index,
        bounds,
        _dialect(co.url, a.delimiter, a.quotechar, a.encoding),
        per_slice={"blank_lines": index.blank_count(bounds[:-1], bounds[1:]).tolist()},
        header=a.header,
        columns=a.columns,
        column_types=a.column_types,
        delimiter=a.delimiter,
        quotechar=a.quotechar,
        types_from_file=co.index().options.get("infer_types", "file") == "file",
    )


@strategy(CSV)
def partition_num_chunks(co: Any, num_chunks: int) -> list[CSVSlice]:
    """``num_chunks`` slices of about equal bytes, cut at record starts."""
    n = positive_int(co.url, "num_chunks", num_chunks)
    index, first = _index(co)
    return _slices(co, index, index.bounds_by_bytes(n, first, cuts=cut_offsets(co)))


@strategy(CSV)
def partition_chunk_size(co: Any, chunk_size: int) -> list[CSVSlice]:
    """Slices of about ``chunk_size`` bytes each, cut at record starts."""
    size = positive_int(co.url, "chunk_size", chunk_size)
    index, first = _index(co)
    n = max(1, -(-(int(index.offsets[-1]) - int(index.offsets[0])) // size))
    return _slices(co, index, index.bounds_by_bytes(n, first, cuts=cut_offsets(co)))


@strategy(CSV)
def partition_rows(co: Any, rows_per_chunk: int) -> list[CSVSlice]:
    """Slices of exactly ``rows_per_chunk`` records (the last one shorter; blank lines count as records)."""
    step = positive_int(co.url, "rows_per_chunk", rows_per_chunk)
    index, first = _index(co)
    return _slices(co, index, step_bounds(index.total - first, step) + first)
