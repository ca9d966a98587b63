"""CSV: slices of whole rows, cut only at true record starts found quote-aware (RFC 4180).

Preprocessing indexes record starts (quoted fields may hold delimiters, doubled quotes and newlines; LF or
CRLF; a UTF-8 BOM), reads the header and infers column types from the head of the file, as
``pyarrow.csv`` does from its first block. Every slice parses with those names and types, so the slices of
a partition concatenate to the same table as a parse of the whole file.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from dataplug.errors import CorruptIndexError, InvalidFormatError, StrategyArgumentError
from dataplug.format import DataFormat, IndexData, PreprocessContext
from dataplug.lineindex import (
    DEFAULT_SAMPLE_BYTES,
    UTF8_BOM,
    Dialect,
    LineIndex,
    LineRangeSlice,
    build_line_index,
    line_slices,
    read_records,
)
from dataplug.strategies import positive_int, step_bounds, strategy

#: Bytes of the file's head parsed to infer column types (pyarrow's own default block size).
SCHEMA_SAMPLE_BYTES = 2**20


@dataclass(frozen=True)
class CSVAttributes:
    size: int
    #: Data rows (records after the header line, if any).
    rows: int
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


def _single_byte(url: str, name: str, value: str | None) -> int | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value.encode()) != 1 or value in "\r\n":
        raise StrategyArgumentError(url, f"{name} must be one ASCII character other than a newline, got {value!r}")
    return value.encode()[0]


def _dialect(url: str, delimiter: str, quotechar: str | None) -> Dialect:
    """Records end at LF, CRLF or a bare CR (as pyarrow reads them), outside quoted fields."""
    return Dialect(_single_byte(url, "quotechar", quotechar), _single_byte(url, "delimiter", delimiter), bare_cr=True)


class CSV(DataFormat):
    """Comma-separated values.

    Preprocessing options: ``delimiter`` (or the original's ``separator``, default ``","``), ``quotechar``
    (default ``'"'``, ``None`` for no quoting), ``header`` (default ``True``), ``sample_bytes`` (index
    density).
    """

    Attributes = CSVAttributes

    @classmethod
    def preprocess(cls, ctx: PreprocessContext) -> IndexData:
        url, size, opts = ctx.obj.url, ctx.info.size, ctx.options
        delimiter = opts.get("delimiter", opts.get("separator", ","))
        quotechar = opts.get("quotechar", '"')
        has_header = bool(opts.get("header", True))
        sample_bytes = int(opts.get("sample_bytes", DEFAULT_SAMPLE_BYTES))
        dialect = _dialect(url, delimiter, quotechar)
        data_start = len(UTF8_BOM) if ctx.obj.read_range(0, min(size, 3)) == UTF8_BOM else 0
        index = build_line_index(ctx, dialect, data_start, sample_bytes)
        first = 1 if has_header and index.total else 0
        header = read_records(ctx.obj, index, 0, first, dialect)
        stop = int(index.records[max(1, np.searchsorted(index.offsets, data_start + SCHEMA_SAMPLE_BYTES, side="right") - 1)])
        sample = header + read_records(ctx.obj, index, first, max(stop, first), dialect)
        columns, types = _infer_schema(url, sample, has_header, delimiter, quotechar)
        try:
            header_text = header.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidFormatError(url, "header is not valid UTF-8", offset=data_start + exc.start) from None
        attributes = CSVAttributes(
            size=size,
            rows=index.total - first,
            columns=columns,
            column_types=types,
            has_header=has_header,
            header=header_text,
            delimiter=delimiter,
            quotechar=quotechar,
            data_start=data_start,
            sample_bytes=sample_bytes,
        )
        return IndexData(attributes, tables=index.tables())

    @classmethod
    def validate_index(cls, url: str, attributes: Any, tables: dict, blob_sizes: dict[str, int], size: int) -> None:
        index = LineIndex.from_tables(url, tables, size)
        first = 1 if attributes.has_header and index.total else 0
        if attributes.rows != index.total - first or attributes.size != size or len(attributes.columns) != len(attributes.column_types):
            raise CorruptIndexError(url, "CSV attributes disagree with the line index")


def _options(columns: tuple[str, ...] | None, delimiter: str, quotechar: str | None, column_types: dict[str, pa.DataType] | None = None):
    # Single-threaded: a threaded read_csv can return while a pyarrow pool thread still holds the reader and its
    # Python input, whose release takes the GIL; if the interpreter is finalizing by then, that thread is unwound
    # through a noexcept destructor and the process aborts with "terminate called without an active exception"
    # (apache/arrow#34314): 15 of 80 fresh index builds four at a time, 0 of 80 single-threaded. Slices run in
    # parallel workers anyway; a 46 MB slice alone parses in 0.15 s, 0.11 s threaded (2 cores).
    read = pacsv.ReadOptions(column_names=list(columns) if columns is not None else None, use_threads=False)
    parse = pacsv.ParseOptions(delimiter=delimiter, quote_char=quotechar or False, newlines_in_values=True)
    convert = pacsv.ConvertOptions(column_types=column_types or {})
    return read, parse, convert


def _infer_schema(url: str, sample: bytes, has_header: bool, delimiter: str, quotechar: str | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Column names and pyarrow type names from the head of the file (an all-empty column is a string)."""
    if not sample.strip():
        return (), ()
    if not sample.endswith((b"\n", b"\r")):
        sample += b"\n"  # pyarrow cannot infer columns from a last line without its line break
    read, parse, convert = _options(None, delimiter, quotechar)
    read.autogenerate_column_names = not has_header
    try:
        table = pacsv.read_csv(io.BytesIO(sample), read_options=read, parse_options=parse, convert_options=convert)
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise InvalidFormatError(url, f"not a CSV that pyarrow can parse: {exc}", offset=0) from None
    types = tuple("string" if pa.types.is_null(f.type) else str(f.type) for f in table.schema)
    return tuple(table.schema.names), types


def _arrow_type(name: str) -> pa.DataType:
    try:
        return pa.type_for_alias(name)
    except ValueError:
        return pa.string()


@dataclass
class CSVSlice(LineRangeSlice):
    """Rows of a CSV object, with what is needed to parse them alone: header, names, types, dialect."""

    header: str
    columns: tuple[str, ...]
    column_types: tuple[str, ...]
    delimiter: str
    quotechar: str | None

    def get(self) -> str:
        """The slice's text with the header line first (as the original Dataplug returned it)."""
        return self.header + self.text()

    def schema(self, column_types: dict[str, Any] | None = None) -> pa.Schema:
        types = {name: _arrow_type(t) for name, t in zip(self.columns, self.column_types)}
        types.update({k: (v if isinstance(v, pa.DataType) else _arrow_type(str(v))) for k, v in (column_types or {}).items()})
        return pa.schema([(name, types[name]) for name in self.columns])

    def as_arrow(self, column_types: dict[str, Any] | None = None, columns: list[str] | None = None) -> pa.Table:
        """The slice's rows as a ``pyarrow.Table`` with the file's column names and (inferred) types.

        ``column_types`` overrides types by column name (a ``pyarrow.DataType`` or a type name);
        ``columns`` keeps only those columns, which pyarrow then does not convert at all.
        """
        schema = self.schema(column_types)
        if columns is not None:
            schema = pa.schema([schema.field(name) for name in columns])
        offset, data = self._fetch()
        if not data.strip():
            return schema.empty_table()
        read, parse, convert = _options(self.columns, self.delimiter, self.quotechar, dict(zip(schema.names, schema.types)))
        if columns is not None:
            convert.include_columns = list(columns)
        try:
            return pacsv.read_csv(io.BytesIO(data), read_options=read, parse_options=parse, convert_options=convert)
        except pa.ArrowInvalid as exc:
            raise InvalidFormatError(
                self.url, f"rows do not parse with the file's schema ({exc}); pass column_types= to override", offset=offset
            ) from None

    def as_pandas(self, column_types: dict[str, Any] | None = None, columns: list[str] | None = None):
        """The slice's rows as a pandas DataFrame."""
        return self.as_arrow(column_types, columns).to_pandas()

    get_as_pandas = as_pandas


def _index(co: Any) -> tuple[LineIndex, int]:
    sidecar = co.index()
    index = LineIndex.from_tables(co.url, sidecar.tables, sidecar.object_info.size)
    return index, index.total - co.attributes.rows


def _slices(co: Any, index: LineIndex, bounds: np.ndarray) -> list[CSVSlice]:
    a = co.attributes
    return line_slices(
        co,
        CSVSlice,
        index,
        bounds,
        _dialect(co.url, a.delimiter, a.quotechar),
        header=a.header,
        columns=a.columns,
        column_types=a.column_types,
        delimiter=a.delimiter,
        quotechar=a.quotechar,
    )


@strategy(CSV)
def partition_num_chunks(co: Any, num_chunks: int) -> list[CSVSlice]:
    """``num_chunks`` slices of about equal bytes, cut at record starts."""
    n = positive_int(co.url, "num_chunks", num_chunks)
    index, first = _index(co)
    return _slices(co, index, index.bounds_by_bytes(n, first))


@strategy(CSV)
def partition_chunk_size(co: Any, chunk_size: int) -> list[CSVSlice]:
    """Slices of about ``chunk_size`` bytes each, cut at record starts."""
    size = positive_int(co.url, "chunk_size", chunk_size)
    index, first = _index(co)
    n = max(1, -(-(int(index.offsets[-1]) - int(index.offsets[0])) // size))
    return _slices(co, index, index.bounds_by_bytes(n, first))


@strategy(CSV)
def partition_rows(co: Any, rows_per_chunk: int) -> list[CSVSlice]:
    """Slices of exactly ``rows_per_chunk`` rows (the last one shorter)."""
    step = positive_int(co.url, "rows_per_chunk", rows_per_chunk)
    index, first = _index(co)
    return _slices(co, index, step_bounds(co.attributes.rows, step) + first)
