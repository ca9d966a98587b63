"""CSV: every row lands in exactly one slice, for every strategy and slice count, quote-aware."""

from __future__ import annotations

import datetime
import io
import math
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataplug import CloudObject, InvalidFormatError, StrategyArgumentError
from dataplug.formats.generic.csv import CSV, partition_chunk_size, partition_num_chunks, partition_rows
from dataplug.formats.generic.csvtypes import arrow_type
from dataplug.framings.lines import Dialect
from dataplug.testing import FormatTests

FIELD_CHARS = st.sampled_from(list('ab ,"\n\r;xyzé∑😀0123456789'))


@st.composite
def csv_files(draw, max_rows: int = 25):
    """A random RFC 4180 CSV: an int id column, then string columns holding delimiters, quotes and newlines."""
    ncols = draw(st.integers(1, 3))
    nrows = draw(st.integers(0, max_rows))
    rows = [[str(i)] + [draw(st.text(FIELD_CHARS, max_size=8)) for _ in range(ncols)] for i in range(nrows)]
    always_quote = draw(st.booleans())

    def field(value: str) -> str:
        if always_quote or any(c in value for c in ',"\r\n'):
            return '"' + value.replace('"', '""') + '"'
        return value

    newline = draw(st.sampled_from(["\n", "\r\n"]))
    lines = [",".join(["id"] + [f"c{j}" for j in range(ncols)])] + [",".join(map(field, row)) for row in rows]
    data = "".join(line + newline for line in lines).encode()
    if draw(st.booleans()) and nrows:
        data = data.rstrip(b"\r\n") if not data.endswith(b'"\r\n') else data[:-2]
    if draw(st.booleans()):
        data = b"\xef\xbb\xbf" + data
    return data, nrows, ncols


def whole_file_table(data: bytes, ncols: int) -> pa.Table:
    types = {"id": pa.int64(), **{f"c{j}": pa.string() for j in range(ncols)}}
    return pacsv.read_csv(
        io.BytesIO(data),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(column_types=types),
    )


def check_exact(co: CloudObject, data: bytes, slices: list, n_expected: int | None = None) -> None:
    """Slices cover the rows in order, exactly once, and their bytes re-assemble the body of the file."""
    if n_expected is not None:
        assert len(slices) == n_expected
    assert [s.number for s in slices] == list(range(len(slices)))
    assert slices[0].first == (1 if co.attributes.rows or co.attributes.has_header else 0) or co.attributes.rows == 0
    for a, b in zip(slices, slices[1:]):
        assert a.stop == b.first
    assert sum(s.num_records for s in slices) == co.attributes.rows
    header = co.attributes.header.encode()
    body = b"".join(s.raw() for s in slices)
    assert co.attributes.data_start + len(header) + len(body) == len(data)
    assert data.endswith(body)
    for s in slices:
        assert s.get().startswith(co.attributes.header)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(
    file=csv_files(),
    chunk_size=st.integers(1, 80),
    sample_bytes=st.integers(1, 64),
)
def test_every_row_exactly_once_for_every_slice_count(local_store, file, chunk_size, sample_bytes):
    data, nrows, ncols = file
    url = local_store.put(f"f{chunk_size}-{sample_bytes}-{len(data)}.csv", data)
    co = CloudObject.from_url(CSV, url)
    co.preprocess(force=True, chunk_size=chunk_size, sample_bytes=sample_bytes)
    assert co.attributes.rows == nrows
    assert co.attributes.columns == ("id",) + tuple(f"c{j}" for j in range(ncols))
    whole = whole_file_table(data, ncols)
    types = {"id": "int64", **{f"c{j}": "string" for j in range(ncols)}}
    for n in range(1, nrows + 3):
        for strategy, arg in ((partition_num_chunks, n), (partition_rows, n), (partition_chunk_size, n * 7)):
            slices = co.partition(strategy, arg)
            check_exact(co, data, slices, n if strategy is partition_num_chunks else None)
            if n in (1, 2, nrows + 2) and strategy is not partition_chunk_size:
                table = pa.concat_tables([s.as_arrow(column_types=types) for s in slices])
                assert table.equals(whole)
                assert table.column("id").to_pylist() == list(range(nrows))
    rows = co.partition(partition_rows, 2)
    assert all(s.num_records == 2 for s in rows[:-1])


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(file=csv_files(max_rows=12), chunk_size=st.integers(4, 64))
def test_exact_on_s3(s3_store, file, chunk_size):
    data, nrows, ncols = file
    url = s3_store.put(f"f{chunk_size}-{len(data)}.csv", data)
    co = CloudObject.from_url(CSV, url, storage_options=s3_store.options)
    co.preprocess(force=True, chunk_size=chunk_size, sample_bytes=16)
    whole = whole_file_table(data, ncols)
    types = {"id": "int64", **{f"c{j}": "string" for j in range(ncols)}}
    for n in (1, 2, 3, nrows + 2):
        slices = co.partition(partition_num_chunks, n)
        check_exact(co, data, slices, n)
        assert pa.concat_tables([s.as_arrow(column_types=types) for s in slices]).equals(whole)


def test_types_header_and_pandas(store):
    data = b"id,name,score,when\n1,ann,2.5,2024-01-02\n2,\"bo, b\",3,2024-02-03\n3,\"multi\nline\",,2024-03-04\n"
    co = CloudObject.from_url(CSV, store.put("t.csv", data), storage_options=store.options)
    co.preprocess()
    assert co.attributes.column_types == ("int64", "string", "double", "date32[day]")
    assert co["rows"] == 3
    slices = co.partition(partition_num_chunks, 2)
    table = pa.concat_tables([s.as_arrow() for s in slices])
    assert table.equals(pacsv.read_csv(io.BytesIO(data), parse_options=pacsv.ParseOptions(newlines_in_values=True)))
    frame = slices[0].get_as_pandas()
    assert list(frame.columns) == ["id", "name", "score", "when"]
    assert table.select(["score", "id"]).equals(pa.concat_tables([s.as_arrow(columns=["score", "id"]) for s in slices]))
    assert slices[0].get().startswith("id,name,score,when\n")


def test_other_delimiter_and_no_header(local_store):
    data = b"1;a\n2;'x;y'\n3;c\n"
    co = CloudObject.from_url(CSV, local_store.put("t.csv", data))
    co.preprocess(extra_args={"separator": ";"}, quotechar="'", header=False)
    assert co.attributes.rows == 3 and co.attributes.columns == ("f0", "f1")
    slices = co.partition(partition_rows, 1)
    assert [s.as_arrow().column("f1").to_pylist() for s in slices] == [["a"], ["x;y"], ["c"]]


@pytest.mark.parametrize(
    "data, rows",
    [(b"", 0), (b"a,b", 0), (b"a,b\n", 0), (b"\xef\xbb\xbfa,b\r\n1,2", 1), (b"a,b\n1,2\n3,4", 2)],
)
def test_edge_sizes(local_store, data, rows):
    co = CloudObject.from_url(CSV, local_store.put("t.csv", data))
    co.preprocess()
    assert co.attributes.rows == rows
    for n in (1, 2, 5):
        slices = co.partition(partition_num_chunks, n)
        assert len(slices) == n
        assert sum(len(s.as_arrow()) for s in slices) == rows


@pytest.mark.parametrize(
    "data, offset",
    [
        (b'a,b\n1,"open\n2,3\n', 6),  # unbalanced quote: the field opened at 6 never closes
        (b'a,b\n1,x"y\n2,"z"\n', 7),  # quote inside an unquoted field
    ],
)
def test_malformed_quotes_raise_with_offset(local_store, data, offset):
    url = local_store.put("bad.csv", data)
    co = CloudObject.from_url(CSV, url)
    with pytest.raises(InvalidFormatError) as err:
        co.preprocess(chunk_size=3)
    assert err.value.offset == offset and url in str(err.value)
    assert not co.is_preprocessed()


def test_text_after_a_closing_quote_is_accepted_as_pyarrow_reads_it(local_store):
    data = b'a,b\n1,"x"y\n2,"p\nq"r\n3,z\n'
    co = CloudObject.from_url(CSV, local_store.put("sloppy.csv", data))
    co.preprocess(chunk_size=4, sample_bytes=3)
    whole = pacsv.read_csv(io.BytesIO(data), parse_options=pacsv.ParseOptions(newlines_in_values=True))
    for n in (1, 2, 3):
        assert pa.concat_tables([s.as_arrow() for s in co.partition(partition_rows, n)]).equals(whole)


@pytest.mark.parametrize("strategy, arg", [(partition_num_chunks, 0), (partition_rows, -1), (partition_chunk_size, 1.5), (partition_num_chunks, True)])
def test_bad_strategy_arguments(local_store, strategy, arg):
    co = CloudObject.from_url(CSV, local_store.put("t.csv", b"a\n1\n"))
    co.preprocess()
    with pytest.raises(StrategyArgumentError, match=co.url):
        co.partition(strategy, arg)


def test_preprocess_on_a_process_pool_matches_the_default(local_store):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import numpy as np

    data = b"id,t\n" + b"".join(b'%d,"a\n%s"\n' % (i, b"q" * (i % 50)) for i in range(3000))
    url = local_store.put("d.csv", data)
    default = CloudObject.from_url(CSV, url).preprocess(chunk_size=4096, sample_bytes=1000)
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        pooled = CloudObject.from_url(CSV, url, index_location=local_store.url("pooled"))
        pooled.preprocess(chunk_size=4096, sample_bytes=1000, executor=pool)
    assert pooled.attributes == default.attributes
    for name, table in default.index().tables.items():
        assert np.array_equal(pooled.index().tables[name], table)


def _whole(data: bytes) -> pa.Table:
    """pyarrow's table of the whole file parsed as one block (its types then cover every row)."""
    read = pacsv.ReadOptions(block_size=len(data) + 1)
    return pacsv.read_csv(io.BytesIO(data), read_options=read, parse_options=pacsv.ParseOptions(newlines_in_values=True))


@pytest.mark.parametrize("codec", ["none", "gzip"])
def test_types_that_change_after_the_sample_widen_for_every_slice(local_store, codec):
    import gzip

    rows = [f"{i},{i},{'x' if i % 3 else ''},2024-01-0{1 + i % 9}" for i in range(120_000)]
    rows[100_000] = '100000,2.5,"late, text",2024-01-01 10:00:00'  # past the 1 MiB sample
    data = ("id,value,maybe,when\n" + "\n".join(rows) + "\n").encode()
    assert data.index(b"2.5") > 2**20
    url = local_store.put("late.csv", gzip.compress(data) if codec == "gzip" else data)
    co = CloudObject.from_url(CSV, url)
    co.preprocess(chunk_size=256 * 1024, spacing=256 * 1024)
    whole = _whole(data)
    assert co.attributes.column_types == tuple(str(t) for t in whole.schema.types) == ("int64", "double", "string", "timestamp[s]")
    slices = co.partition(partition_num_chunks, 9)
    tables = [s.to_arrow() for s in slices]
    assert all(t.schema == whole.schema for t in tables)
    assert pa.concat_tables(tables).equals(whole)


def test_blank_lines_are_skipped_as_pyarrow_skips_them(local_store):
    data = b"a,b\n1,x\n\n2,y\r\n\r\n\n3,z\n\n"
    co = CloudObject.from_url(CSV, local_store.put("blank.csv", data))
    co.preprocess(chunk_size=3)
    whole = _whole(data)
    assert co.attributes.rows == whole.num_rows == 3 and co.attributes.blank_lines == 4
    for n in range(1, 9):
        for strategy in (partition_num_chunks, partition_rows):
            slices = co.partition(strategy, n)
            assert pa.concat_tables([s.to_arrow() for s in slices]).equals(whole)
            assert [s.num_records for s in slices] == [s.to_arrow().num_rows for s in slices]


@pytest.mark.parametrize("data", [b"\na,b\n1,2\n", b"\r\n\r\na,b\n1,2\n\n3,4\n", b"\r\ra,b\r1,2\r\n\n3,4\n", b"\xef\xbb\xbf\n\na,b\n1,2\n"])
@pytest.mark.parametrize("header", [True, False])
def test_blank_lines_before_the_first_record_are_skipped_as_pyarrow_skips_them(local_store, data, header):
    """pyarrow (and pandas) skip blank lines before the header too: the header is the first non-blank line.
    They used to be the header, and the real header a row of data."""
    whole = pacsv.read_csv(io.BytesIO(data), read_options=pacsv.ReadOptions(autogenerate_column_names=not header))
    co = CloudObject.from_url(CSV, local_store.put("lead.csv", data))
    for chunk_size in (1, 2, 5, 100):
        co.preprocess(force=True, header=header, chunk_size=chunk_size)
        assert co.attributes.columns == tuple(whole.column_names) and co.attributes.rows == whole.num_rows
        for n in (1, 2, 5):
            slices = co.partition(partition_num_chunks, n)
            assert pa.concat_tables([s.to_arrow() for s in slices]).equals(whole)
            assert [s.num_records for s in slices] == [s.to_arrow().num_rows for s in slices]


def test_a_record_longer_than_pyarrows_block_parses(local_store):
    long = "y" * (3 * 2**20)
    data = f'id,text\n1,short\n2,"{long}"\n3,short\n'.encode()
    co = CloudObject.from_url(CSV, local_store.put("long.csv", data))
    co.preprocess()
    (only,) = co.partition(partition_num_chunks, 1)
    assert only.to_arrow().column("text").to_pylist() == ["short", long, "short"]


def test_head_only_inference_is_an_option(local_store):
    rows = [f"{i},{i}" for i in range(120_000)]
    rows[100_000] = "100000,2.5"
    data = ("id,value\n" + "\n".join(rows) + "\n").encode()
    url = local_store.put("late.csv", data)
    assert CloudObject.from_url(CSV, url).preprocess().attributes.column_types == ("int64", "double")
    head = CloudObject.from_url(CSV, url, index_location=str(local_store.url("other")))
    assert head.preprocess(infer_types="head").attributes.column_types == ("int64", "int64")
    with pytest.raises(StrategyArgumentError):
        CloudObject.from_url(CSV, url).preprocess(force=True, infer_types="all")


def test_a_zero_one_column_with_booleans_later_is_bool_as_pyarrow_reads_it(local_store):
    rows = [f"{i},{i % 2},{i}" for i in range(100_000)] + [f"{i},true,7" for i in range(100_000, 100_010)]
    data = ("id,flag,n\n" + "\n".join(rows) + "\n").encode()
    co = CloudObject.from_url(CSV, local_store.put("flags.csv", data))
    co.preprocess(chunk_size=200_000)
    whole = _whole(data)
    assert co.attributes.column_types == tuple(str(t) for t in whole.schema.types) == ("int64", "bool", "int64")
    assert pa.concat_tables([s.to_arrow() for s in co.partition(partition_num_chunks, 5)]).equals(whole)


@st.composite
def typed_csv_files(draw):
    """A random CSV whose columns pyarrow types differently over the file: ints that turn into floats,
    0/1 flags that meet ``true``, dates that meet timestamps, numbers that meet text, empty columns; every
    value may be empty, and text may hold quoted delimiters, quotes and newlines. Rows end in LF or CRLF."""
    kinds = draw(st.lists(st.sampled_from(["int", "float", "flag", "when", "text", "empty"]), min_size=1, max_size=5))
    nrows = draw(st.integers(1, 120))
    late = draw(st.integers(0, nrows - 1))  # the first row holding the widening value

    def value(kind: str, i: int) -> str:
        if kind == "empty" or draw(st.integers(0, 9)) == 0:
            return ""
        wide = i >= late and draw(st.booleans())
        if kind == "int":
            return f"{i}.5" if wide else str(draw(st.integers(-(10**12), 10**12)))
        if kind == "float":
            return f"{draw(st.integers(-999, 999))}.25" if wide else str(i)
        if kind == "flag":
            return "true" if wide else str(i % 2)
        if kind == "when":
            return f"2024-01-0{1 + i % 9} 10:00:00" if wide else f"2024-01-0{1 + i % 9}"
        text = draw(st.text(FIELD_CHARS, max_size=6)) if wide else str(i)
        return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\r\n') else text

    newline = draw(st.sampled_from(["\n", "\r\n"]))
    header = ",".join(f"{kind}{j}" for j, kind in enumerate(kinds))
    rows = [",".join(value(kind, i) for kind in kinds) for i in range(nrows)]
    return (header + newline + newline.join(rows) + newline).encode()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=typed_csv_files(), chunk_size=st.integers(40, 2000), sample_bytes=st.integers(1, 200), block=st.integers(30, 400))
def test_types_inferred_in_the_pass_are_the_whole_file_types(local_store, monkeypatch, data, chunk_size, sample_bytes, block):
    """The pass types each range's rows in blocks cut at the scan's record starts (blocks shrunk here so a
    small file has many): the types are those of pyarrow parsing the whole file as one block, the same as
    blocks cut by searching the rows for their ends, and every slice reads with them."""
    from dataplug.formats.generic import csvtypes

    monkeypatch.setattr(csvtypes, "INFER_BLOCK", block)
    whole = _whole(data)
    expected = tuple("string" if pa.types.is_null(t) else str(t) for t in whole.schema.types)
    co = CloudObject.from_url(CSV, local_store.put(f"typed-{chunk_size}-{sample_bytes}-{block}.csv", data))
    co.preprocess(force=True, chunk_size=chunk_size, sample_bytes=sample_bytes)
    assert co.attributes.column_types == expected
    body = np.frombuffer(data, np.uint8)[data.index(b"\n") + 1 :]
    dialect, names = Dialect(ord('"'), ord(","), bare_cr=True), tuple(whole.column_names)
    starts = csvtypes.terminators(body, dialect)[:-1] + 1
    searched = csvtypes.infer_types("u", body, names, names, ",", '"', 0, dialect=dialect)
    assert csvtypes.infer_types("u", body, names, names, ",", '"', 0, dialect=dialect, starts=starts[::3]) == searched
    assert csvtypes.infer_types("u", body, names, names, ",", '"', 0, dialect=dialect, starts=starts[:0]) == searched
    slices = co.partition(partition_num_chunks, 3)
    typed = pacsv.ConvertOptions(column_types={n: arrow_type(t) for n, t in zip(names, expected)})  # a column of only nulls reads as strings
    assert pa.concat_tables([s.to_arrow() for s in slices]).equals(pacsv.read_csv(io.BytesIO(data), parse_options=pacsv.ParseOptions(newlines_in_values=True), convert_options=typed))


def test_the_pass_cuts_inference_blocks_at_the_scanned_record_starts(local_store, monkeypatch):
    """Rows are not searched for their ends a second time to cut pyarrow's blocks: the scan's anchors cut
    them (only a stretch with no anchor, such as one long record, is searched)."""
    from dataplug.formats.generic import csvtypes

    searched = []
    real = csvtypes._blocks
    monkeypatch.setattr(csvtypes, "INFER_BLOCK", 4096)
    monkeypatch.setattr(csvtypes, "_blocks", lambda url, arr, *args: searched.append(arr.size) or real(url, arr, *args))
    rows = [f'{i},{i % 7}.5,"note {i},\nmore"' for i in range(20_000)]
    data = ("id,x,note\n" + "\n".join(rows) + "\n").encode()
    co = CloudObject.from_url(CSV, local_store.put("anchored.csv", data))
    co.preprocess(chunk_size=100_000, sample_bytes=1024)
    assert co.attributes.column_types == ("int64", "double", "string") and not searched
    co.preprocess(force=True, chunk_size=100_000, sample_bytes=10_000)  # anchors sparser than a block
    assert co.attributes.column_types == ("int64", "double", "string") and searched


# --- the conformance kit ---------------------------------------------------------------------------------


def csv_sample(rows: int, seed: int, newline: str = "\n", blank_lines: bool = False, trailing_newline: bool = True) -> bytes:
    """Seeded CSV with a header: ints, floats, booleans and timestamps with empty fields, strings with quoted
    delimiters, doubled quotes and newlines, non-ASCII text; optionally blank lines between rows."""
    rng = np.random.default_rng(seed)
    notes = ["plain", '"a, b"', '"say ""hi"""', '"two\nlines"', '"crlf\r\ninside"', "café 東京 😀", "", '""']
    lines = ["id,name,score,ok,when,note"]
    for i in range(rows):
        score = "" if rng.random() < 0.1 else f"{rng.normal(50, 20):.2f}"
        ok = "" if rng.random() < 0.1 else ("true" if rng.random() < 0.5 else "false")
        day, hour = f"2024-{rng.integers(1, 13):02d}-{rng.integers(1, 29):02d}", f"{rng.integers(0, 24):02d}:{rng.integers(0, 60):02d}:00"
        when = "" if rng.random() < 0.1 else f"{day} {hour}"
        name = "" if rng.random() < 0.1 else f"n{rng.integers(0, 10**6)}"
        lines.append(f"{i},{name},{score},{ok},{when},{notes[rng.integers(0, len(notes))]}")
        if blank_lines and rng.random() < 0.2:
            lines.append("")
    text = newline.join(lines) + (newline if trailing_newline else "")
    return text.encode()


def _cell(value: Any) -> Any:
    """One value in a form both pandas and pyarrow give: numbers as float, times as ISO text, and empty
    strings as missing (pandas reads them as NaN, pyarrow as "")."""
    if value is None or value is pd.NaT or (isinstance(value, float) and math.isnan(value)) or value == "":
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    if isinstance(value, (datetime.date, pd.Timestamp)):
        return pd.Timestamp(value).isoformat()
    return value


class TestCSVConformance(FormatTests):
    format = CSV
    codecs = ("plain", "gzip", "bgzf", "zstd", "bzip2")
    dump_suffix = ".csv"

    def samples(self) -> dict[str, dict[str, bytes]]:
        return {
            "mixed": {"mixed.csv": csv_sample(2500, 1)},
            "crlf_no_trailing_newline": {"crlf.csv": csv_sample(300, 2, newline="\r\n", trailing_newline=False)},
            "blank_lines": {"blank.csv": b"\n\r\n" + csv_sample(300, 3, blank_lines=True) + b"\n\n"},
            "bom": {"bom.csv": b"\xef\xbb\xbf" + csv_sample(40, 4)},
            "header_only": {"header.csv": b"id,name,score,ok,when,note\n"},
        }

    def oracle(self, path) -> list[tuple]:
        """pandas' reading (its C parser; quoted newlines, the BOM and blank lines as pandas takes them)."""
        frame = pd.read_csv(path, parse_dates=["when"], encoding="utf-8")
        return [tuple(_cell(v) for v in row) for row in frame.itertuples(index=False)]

    def rows(self, table: pa.Table) -> list[tuple]:
        return [tuple(_cell(v) for v in row.values()) for row in table.to_pylist()]

    def large(self, folder) -> tuple[str, int]:
        block = csv_sample(20_000, 5)
        body = block[block.index(b"\n") + 1 :]
        repeats = 64 * 2**20 // len(body) + 1
        (folder / "large.csv").write_bytes(block[: block.index(b"\n") + 1] + body * repeats)
        return "large.csv", 20_000 * repeats
