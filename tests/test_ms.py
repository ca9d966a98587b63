"""MeasurementSet: slices read only their rows' byte ranges and match python-casacore's ``getcol``, on local
files and on the moto S3 server (the folder uploaded file by file)."""

from __future__ import annotations

import io
import json
import re
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("casacore.tables", reason="the MeasurementSet tests need python-casacore (the ms extra)")

from casacore import tables

from dataplug import CloudObject
from dataplug.detect import sniff
from dataplug.errors import CorruptIndexError, DataplugError, InvalidFormatError, StaleIndexError, StrategyArgumentError
from dataplug.formats.astronomy.ms import MeasurementSet
from dataplug.formats.astronomy.ms_layout import SSM_HEADER_BYTES, read_ssm_header, read_table_dat
from dataplug.storage import StorageObject, read_stats
from dataplug.testing import FormatTests
from dataplug.testing.sidecar import entry_bytes, load_table, npy, put_entry, read_manifest, write_manifest
from tests.ms_files import folder_files, make_ms

#: The issue's MeasurementSet: 66 baselines (12 antennas) x 120 times, DATA 64 channels x 4 correlations.
ANTENNAS, TIMES = 12, 120


@pytest.fixture(scope="module")
def ms_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_ms(tmp_path_factory.mktemp("ms") / "obs.ms", ANTENNAS, TIMES)


@pytest.fixture(scope="module")
def shaped_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_ms(tmp_path_factory.mktemp("shaped") / "obs.ms", 5, 9, channels=8, tile_rows=7, shaped=True)


def upload(store: Any, path: Path, prefix: str = "") -> str:
    """The MeasurementSet folder at ``path`` in ``store``; the URL of its ``table.dat``."""
    urls = [store.put(f"{prefix}{name}", data) for name, data in folder_files(path).items()]
    return urls[0]


def check_against_casacore(path: Path, slices: list[Any], columns: list[str]) -> None:
    reference = tables.table(str(path), ack=False)
    try:
        for piece in slices:
            got = piece.get(columns)
            assert list(got) == columns
            for name in columns:
                want = reference.getcol(name, piece.start, piece.num_records) if piece.num_records else None
                if want is None:
                    assert len(got[name]) == 0
                    continue
                assert got[name].shape == want.shape and got[name].dtype == want.dtype, name
                assert np.array_equal(got[name], want), f"column {name}, rows {piece.start}..{piece.stop}"
    finally:
        reference.close()


def test_slices_match_casacore_getcol(store: Any, ms_path: Path) -> None:
    url = upload(store, ms_path)
    co = CloudObject.from_url(MeasurementSet, url, storage_options=store.options).preprocess(progress=False)
    a = co.attributes
    assert a.rows == ANTENNAS * (ANTENNAS - 1) // 2 * TIMES and a.timestamps == TIMES
    assert {"TIME", "ANTENNA1", "ANTENNA2", "UVW", "DATA", "FLAG", "WEIGHT", "FLAG_ROW"} <= set(a.columns)
    slices = co.partition("partition_num_chunks", 7)
    assert [p.start for p in slices][1:] == [p.stop for p in slices][:-1] and slices[-1].stop == a.rows
    check_against_casacore(ms_path, slices, list(a.columns))
    defaults = slices[2].get()
    assert list(defaults) == ["TIME", "ANTENNA1", "ANTENNA2", "UVW", "DATA", "FLAG"]


def test_one_slice_of_seven_reads_under_a_third_of_the_folder(s3_store: Any, ms_path: Path) -> None:
    url = upload(s3_store, ms_path)
    co = CloudObject.from_url(MeasurementSet, url, storage_options=s3_store.options).preprocess(progress=False)
    piece = co.partition("partition_num_chunks", 7)[3]
    folder = url.rsplit("/", 1)[0]
    read_stats.reset()
    piece.get()
    read = sum(n for u, n in read_stats.bytes.items() if u.startswith(folder + "/"))
    total = sum(len(data) for data in folder_files(ms_path).values())
    assert 0 < read < total / 3, f"one slice of 7 read {read} of the folder's {total} bytes"
    # DATA and FLAG are a seventh of their tiles each, give or take a tile of rows at each end.
    tiles = sum((ms_path / name).stat().st_size for name in ("table.f0_TSM0", "table.f1_TSM0"))
    assert read < tiles / 7 + 2 * 32 * 64 * 4 * 9 + (ms_path / "table.f2").stat().st_size / 7 + 2 * 4096


@pytest.mark.parametrize("endian", ["little", "big"])
def test_a_bucket_index_over_several_index_buckets(store: Any, tmp_path: Path, endian: str) -> None:
    """A StandardStMan whose bucket index outgrows one bucket chains its index buckets by numbers casacore
    writes big-endian whatever the table's byte order: small buckets make a small table's index span several."""
    path = tmp_path / "obs.ms"
    made = make_ms(path if endian == "little" else tmp_path / "made.ms", 6, 80, channels=8, tile_rows=16, ssm_bucket=256)
    if endian == "big":
        with tables.table(str(made), ack=False) as little:
            little.copy(str(path), deep=True, valuecopy=True, endian="big").close()
    table = read_table_dat(str(path), (path / "table.dat").read_bytes())
    assert table.big_endian == (endian == "big")
    headers = [
        read_ssm_header(str(path), (path / f"table.f{seqnr}").read_bytes()[:SSM_HEADER_BYTES], table.big_endian)
        for seqnr, kind in table.managers.items()
        if kind == "StandardStMan"
    ]
    assert max(h.index_buckets for h in headers) > 2, headers
    co = CloudObject.from_url(MeasurementSet, upload(store, path), storage_options=store.options).preprocess(progress=False)
    assert co.attributes.rows == 15 * 80
    check_against_casacore(path, co.partition("partition_num_chunks", 9), list(co.attributes.columns))


def test_partition_time_gives_whole_timestamps(ms_path: Path) -> None:
    co = CloudObject.from_url(MeasurementSet, str(ms_path / "table.dat")).preprocess(progress=False)
    time = tables.table(str(ms_path), ack=False).getcol("TIME")
    for n in (1, 7, 11, TIMES, TIMES + 5):
        slices = co.partition("partition_time", n)
        assert len(slices) == n and sum(p.num_records for p in slices) == len(time)
        for piece in slices:
            if piece.num_records:
                assert piece.start == 0 or time[piece.start - 1] != time[piece.start]
                assert piece.stop == len(time) or time[piece.stop - 1] != time[piece.stop]
        sizes = [p.num_records for p in slices if p.num_records]
        assert max(sizes) - min(sizes) <= 66 or n > TIMES
    check_against_casacore(ms_path, co.partition("partition_time", 5), ["TIME", "DATA"])


def test_tiled_shape_stman_and_columns_argument(shaped_path: Path) -> None:
    co = CloudObject.from_url(MeasurementSet, str(shaped_path / "table.dat")).preprocess(progress=False)
    slices = co.partition("partition_num_chunks", 4, columns=["DATA", "SIGMA", "SCAN_NUMBER"])
    check_against_casacore(shaped_path, slices, ["DATA", "SIGMA", "SCAN_NUMBER"])
    assert list(slices[0].get()) == ["DATA", "SIGMA", "SCAN_NUMBER"]
    for piece in co.partition("partition_num_chunks", 90):  # more slices than rows: empty ones too
        assert set(piece.get()) == {"TIME", "ANTENNA1", "ANTENNA2", "UVW", "DATA", "FLAG"}


def test_to_arrow_matches_get(ms_path: Path) -> None:
    co = CloudObject.from_url(MeasurementSet, str(ms_path)).preprocess(progress=False)  # the folder names its table.dat
    assert co.url == str(ms_path / "table.dat")
    piece = co.partition("partition_num_chunks", 7)[1]
    table, got = piece.to_arrow(), piece.get()
    assert table.num_rows == piece.num_records and table.schema == piece.schema()
    data = np.array(table["DATA"].to_pylist(), dtype=np.float32)
    assert np.array_equal(data[..., 0] + 1j * data[..., 1], got["DATA"])
    assert np.array_equal(np.array(table["FLAG"].to_pylist()), got["FLAG"])
    assert np.array_equal(table["TIME"].to_numpy(), got["TIME"])


def test_dump_to_writes_a_measurement_set_casacore_opens(ms_path: Path, tmp_path: Path) -> None:
    co = CloudObject.from_url(MeasurementSet, str(ms_path / "table.dat")).preprocess(progress=False)
    piece = co.partition("partition_time", 7)[2]
    out = piece.dump_to(tmp_path / "part.ms")
    dumped = tables.table(str(out), ack=False)
    source = tables.table(str(ms_path), ack=False)
    try:
        assert dumped.nrows() == piece.num_records and dumped.info()["type"] == "Measurement Set"
        for name in ("TIME", "ANTENNA1", "ANTENNA2", "UVW", "DATA", "FLAG", "WEIGHT"):
            assert np.array_equal(dumped.getcol(name), source.getcol(name, piece.start, piece.num_records)), name
        antenna = tables.table(dumped.getkeyword("ANTENNA"), ack=False)
        assert list(antenna.getcol("NAME")) == [f"ANT{i:02d}" for i in range(ANTENNAS)]
        antenna.close()
    finally:
        dumped.close()
        source.close()
    with open(tmp_path / "x", "wb") as fp, pytest.raises(DataplugError, match="dump_to"):
        piece.dump(fp)


def test_a_column_that_cannot_be_read_by_range_is_an_error_naming_it(ms_path: Path) -> None:
    co = CloudObject.from_url(MeasurementSet, str(ms_path / "table.dat")).preprocess(progress=False)
    assert dict(co.attributes.unreadable)["FLAG_CATEGORY"]
    with pytest.raises(InvalidFormatError, match="FLAG_CATEGORY"):
        co.partition("partition_num_chunks", 2, columns=["FLAG_CATEGORY"])
    with pytest.raises(InvalidFormatError, match="FLAG_CATEGORY"):
        co.partition("partition_num_chunks", 2)[0].get(["TIME", "FLAG_CATEGORY"])
    with pytest.raises(StrategyArgumentError, match="NO_SUCH"):
        co.partition("partition_num_chunks", 2, columns=["NO_SUCH"])


def test_a_truncated_tile_file_is_an_error_naming_it(store: Any, ms_path: Path) -> None:
    files = folder_files(ms_path)
    files["obs.ms/table.f0_TSM0"] = files["obs.ms/table.f0_TSM0"][:-70_000]
    urls = [store.put(f"cut/{name}", data) for name, data in files.items()]
    with pytest.raises(InvalidFormatError, match=r"obs\.ms/table\.f0_TSM0.*truncated"):
        CloudObject.from_url(MeasurementSet, urls[0], storage_options=store.options).preprocess(progress=False)


def test_a_replaced_data_file_makes_index_and_slices_stale(store: Any, ms_path: Path) -> None:
    url = upload(store, ms_path, "stale/")
    co = CloudObject.from_url(MeasurementSet, url, storage_options=store.options).preprocess(progress=False)
    before = co.partition("partition_num_chunks", 2)
    store.put("stale/obs.ms/table.f0_TSM0", (ms_path / "table.f0_TSM0").read_bytes()[::-1])
    with pytest.raises(StaleIndexError):
        co.partition("partition_num_chunks", 2)
    with pytest.raises(StaleIndexError):
        before[0].get()


def test_detected_from_table_dat(ms_path: Path, tmp_path: Path) -> None:
    found = sniff(str(ms_path / "table.dat"), (ms_path / "table.dat").read_bytes())
    assert found.format == "MeasurementSet" and "MeasurementSet's main table" in found.reason
    fresh = tmp_path / "obs.ms"
    fresh.mkdir()
    (fresh / "table.dat").write_bytes((ms_path / "table.dat").read_bytes())
    assert CloudObject.from_url(str(fresh / "table.dat")).format is MeasurementSet


def test_the_object_must_be_table_dat(ms_path: Path) -> None:
    with pytest.raises(InvalidFormatError, match="table.dat"):
        CloudObject.from_url(MeasurementSet, str(ms_path / "table.f0")).preprocess(progress=False)


# -- a sidecar that lies, re-signed as anyone who can write it could ---------------------------------------


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 baselines x 6 times, DATA in a TiledShapeStMan (a row map), FLAG in a TiledColumnStMan, the rest in a StandardStMan."""
    return make_ms(tmp_path_factory.mktemp("tiny") / "obs.ms", 4, 6, channels=8, tile_rows=4, shaped=True)


def indexed_copy(tiny_path: Path, tmp_path: Path) -> CloudObject:
    """A copy of the tiny MeasurementSet, indexed beside its table.dat (the sidecar's URL names the object)."""
    folder = shutil.copytree(tiny_path, tmp_path / "obs.ms")
    return CloudObject.from_url(MeasurementSet, str(folder / "table.dat")).preprocess(progress=False)


def lie(co: CloudObject, layout: Any = None, tables: dict[str, np.ndarray] | None = None, skeleton: bytes | None = None) -> CloudObject:
    """Write a column layout, tables or a skeleton over ``co``'s sidecar and re-sign it; a fresh CloudObject loading it."""
    loc = co.index_location
    manifest = read_manifest(loc)
    if layout is not None:
        manifest["attributes"]["layout"] = json.dumps(layout)
    for name, table in (tables or {}).items():
        put_entry(loc, manifest, "tables", name, npy(table))
    if skeleton is not None:
        put_entry(loc, manifest, "blobs", "skeleton", skeleton)
    write_manifest(loc, manifest)
    return CloudObject.from_url(MeasurementSet, co.url)


def retag(blob: bytes, member: str, **headers: str | None) -> bytes:
    """The skeleton ``blob`` with pax headers of ``member`` replaced (``None`` drops one)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:") as src, tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as dst:
        for info in src:
            data = src.extractfile(info).read()  # type: ignore[union-attr]
            if info.name == member:
                pax = {k: v for k, v in {**info.pax_headers, **headers}.items() if v is not None}
                info = tarfile.TarInfo(info.name)
                info.size, info.pax_headers = len(data), pax
            dst.addfile(info, io.BytesIO(data))
    return out.getvalue()


@pytest.mark.parametrize(
    "member, headers",
    [
        ("table.f0_TSM1@0", {"dataplug.size": str(2**40)}),  # a data file's placeholder past its indexed size
        ("table.info@0", {"dataplug.size": str(2**40)}),  # a small main-table file stretched
        ("table.f2@9480", {"dataplug.offset": "13000"}),  # a bucket kept past its file's end
        ("table.dat@0", {"dataplug.offset": "-4"}),
        ("ANTENNA/table.f0@0", {"dataplug.size": str(2**27)}),  # a subtable file stretched: copytree would copy it whole
        ("ANTENNA/table.dat@0", {"dataplug.offset": "4096"}),
        ("table.lock@0", {"dataplug.size": None}),
        ("table.lock@0", {"dataplug.size": "3_33"}),
    ],
)
def test_a_crafted_skeleton_is_refused_before_anything_is_laid_out(
    tiny_path: Path, tmp_path: Path, member: str, headers: dict[str, str | None]
) -> None:
    co = indexed_copy(tiny_path, tmp_path)
    skeleton = entry_bytes(co.index_location, read_manifest(co.index_location), "blobs", "skeleton")
    crafted = retag(skeleton, member, **headers)
    assert crafted != skeleton
    piece = lie(co, skeleton=crafted).partition("partition_num_chunks", 2)[0]
    with pytest.raises(CorruptIndexError, match=re.escape(co.url) + ".*skeleton"):
        piece.dump_to(tmp_path / "out.ms")
    assert not (tmp_path / "out.ms").exists()


def test_a_skeleton_that_is_no_tar_is_refused(tiny_path: Path, tmp_path: Path) -> None:
    co = indexed_copy(tiny_path, tmp_path)
    piece = lie(co, skeleton=b"\x00not a tar" * 100).partition("partition_num_chunks", 2)[0]
    with pytest.raises(CorruptIndexError, match=re.escape(co.url) + ".*skeleton"):
        piece.dump_to(tmp_path / "out.ms")


def _wrapping_shape(layout: dict[str, Any]) -> None:
    layout["ANTENNA1"]["shape"] = [2**30, 2**30, 16]  # 2**64 values: 0 in int64


def _many_axes(layout: dict[str, Any]) -> None:
    layout["ANTENNA1"]["shape"] = [1] * 12


def _wrapping_tile(layout: dict[str, Any]) -> None:
    layout["FLAG"]["cubes"][0][1] = [2**30, 2**30, 16]


def _wrapping_grid(layout: dict[str, Any]) -> None:
    layout["DATA"]["cubes"][1][0] = [2**30, 2**30, 2**4 * 36]  # 2**64 x 9 tiles of one value
    layout["DATA"]["cubes"][1][1] = [1, 1, 1]


def _wrong_slot_width(layout: dict[str, Any]) -> None:
    layout["DATA"]["tile_sizes"] = [4]


def _cube_of_other_cells(layout: dict[str, Any]) -> None:
    layout["DATA"]["cubes"][1][0] = [8, 4, 36]


def _negative_bucket_size(layout: dict[str, Any]) -> None:
    layout["TIME"]["bucket_size"] = -4484


@pytest.mark.parametrize(
    "edit", [_wrapping_shape, _many_axes, _wrapping_tile, _wrapping_grid, _wrong_slot_width, _cube_of_other_cells, _negative_bucket_size]
)
def test_a_crafted_layout_is_refused(tiny_path: Path, tmp_path: Path, edit: Any) -> None:
    co = indexed_copy(tiny_path, tmp_path)
    layout = json.loads(co.attributes.layout)
    edit(layout)
    with pytest.raises(CorruptIndexError, match=re.escape(co.index_location.url)):  # the index beside the folder
        lie(co, layout=layout).partition("partition_num_chunks", 2)


@pytest.mark.parametrize(
    "name, column, value",
    [
        ("ssm2_0", 1, 2**61),  # a bucket whose offset wraps past 2**63
        ("ssm2_0", 0, -1),
        ("tsm0", 2, 3),  # 36 rows ending at position 3 of their cube
        ("tsm0", 1, 0),  # the placeholder cube
    ],
)
def test_a_crafted_bucket_index_or_row_map_is_refused(tiny_path: Path, tmp_path: Path, name: str, column: int, value: int) -> None:
    co = indexed_copy(tiny_path, tmp_path)
    table = load_table(co.index_location, read_manifest(co.index_location), name).copy()
    table[-1, column] = value
    with pytest.raises(CorruptIndexError, match=re.escape(co.index_location.url)):  # the index beside the folder
        lie(co, tables={name: table}).partition("partition_num_chunks", 2)


class TestMeasurementSetConformance(FormatTests):
    """The conformance kit on a small MeasurementSet (15 baselines x 20 times): a record is a row's TIME,
    antennas, UVW and DATA bytes."""

    format = MeasurementSet
    s3_slice_counts = (7,)

    def samples(self) -> dict[str, dict[str, bytes]]:
        with tempfile.TemporaryDirectory() as folder:
            return {"small": folder_files(make_ms(Path(folder) / "obs.ms", 6, 20, channels=8, tile_rows=16))}

    def oracle(self, path: Path) -> list[Any]:
        table = tables.table(str(path.parent), ack=False)
        try:
            columns = [table.getcol(name) for name in ("TIME", "ANTENNA1", "ANTENNA2", "UVW", "DATA")]
        finally:
            table.close()
        return [(float(t), int(a), int(b), tuple(uvw.tolist()), data.astype(np.complex64).tobytes()) for t, a, b, uvw, data in zip(*columns)]

    def rows(self, table: Any) -> list[Any]:
        if not table.num_rows:
            return []
        data = np.array(table["DATA"].to_pylist(), dtype=np.float32).reshape(table.num_rows, -1, 2)
        values = (data[..., 0] + 1j * data[..., 1]).astype(np.complex64)
        return [
            (t, a, b, tuple(uvw), v.tobytes())
            for t, a, b, uvw, v in zip(
                table["TIME"].to_pylist(), table["ANTENNA1"].to_pylist(), table["ANTENNA2"].to_pylist(), table["UVW"].to_pylist(), values
            )
        ]

    def dump_slice(self, piece: Any, path: Path) -> Path:
        return piece.dump_to(path) / "table.dat"

    def large(self, folder: Path) -> tuple[str, int]:
        """66 baselines x 520 times, DATA of 64 channels x 4 correlations: a folder of about 73 MB."""
        make_ms(folder / "obs.ms", 12, 520)
        return "obs.ms/table.dat", 66 * 520


def test_the_folder_opens_and_its_index_lies_beside_it(store: Any, ms_path: Path) -> None:
    """``dataplug.open("…/obs.ms")`` detects the MeasurementSet from the folder's ``table.dat``, and the index
    goes in ``obs.ms.dataplug/`` beside the folder: nothing is written inside the user's MeasurementSet."""
    import dataplug

    table = upload(store, ms_path, "open/")
    folder = table.rsplit("/", 1)[0]
    before = sorted(StorageObject(folder, store.options).list_names())
    co = dataplug.open(folder, storage_options=store.options)
    assert co.format is MeasurementSet and co.url == table
    assert co.index_location.url == folder + ".dataplug"
    assert sorted(StorageObject(folder, store.options).list_names()) == before
    assert sum(piece.num_records for piece in co.partition("partition_time", 4)) == co.attributes.rows
    again = dataplug.open(folder, storage_options=store.options)
    assert not again.built_index and "recorded by its index" in again.detection.reason
