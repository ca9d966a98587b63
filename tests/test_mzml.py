"""mzML: spectra as pyteomics reads them, from psims-written documents (indexed and not, raw and zlib, 32- and
64-bit, MS1 and MS2), every spectrum in exactly one slice; the index pass of an indexedmzML reads only its
index; wrong indexes and cut files are named errors."""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import pickle
import re
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

pytest.importorskip("pyteomics")
pytest.importorskip("psims")

from pyteomics import mzml as pyteomics_mzml

from dataplug import CloudObject
from dataplug.detect import sniff
from dataplug.errors import CorruptIndexError, InvalidFormatError, StrategyArgumentError
from dataplug.formats.metabolomics.mzml import MzML, partition_num_chunks, partition_rt, partition_spectra
from dataplug.formats.metabolomics.mzml_slice import MzMLSlice
from dataplug.storage import (
    StorageObject,
    read_stats,
)
from dataplug.testing import FormatTests
from tests.mzml_files import in_seconds, make_mzml, with_param_groups


def read_ranges_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[tuple[int, int]]]]:
    """Every ``StorageObject.read_ranges`` call from now on as (URL, ranges); the reads go through."""
    calls: list[tuple[str, list[tuple[int, int]]]] = []
    original = StorageObject.read_ranges

    def spy(self, ranges, *args, **kwargs):
        calls.append((self.url, [(int(a), int(b)) for a, b in ranges]))
        return original(self, ranges, *args, **kwargs)

    monkeypatch.setattr(StorageObject, "read_ranges", spy)
    return calls


def reference(source: Path | bytes) -> list[dict]:
    """Every spectrum as pyteomics' ``MzML`` reader gives it."""
    with pyteomics_mzml.MzML(io.BytesIO(source) if isinstance(source, bytes) else str(source)) as reader:
        return list(reader)


def seconds(spectrum: dict) -> float | None:
    """pyteomics' scan start time in seconds."""
    scans = spectrum.get("scanList", {}).get("scan", [])
    if not scans or "scan start time" not in scans[0]:
        return None
    value = scans[0]["scan start time"]
    return float(value) * {"minute": 60.0, "second": 1.0}[value.unit_info]


def as_row(spectrum: dict) -> tuple:
    return (spectrum["id"], spectrum.get("ms level"), seconds(spectrum), spectrum["m/z array"].tolist(), spectrum["intensity array"].tolist())


def indexed(store, name: str, data: bytes, **options) -> CloudObject:
    url = store.put(name, data)
    return CloudObject.from_url(MzML, url, storage_options=store.options).preprocess(progress=False, **options)


def assert_matches_pyteomics(slices: list[MzMLSlice], expected: list[dict]) -> None:
    got = [(piece, spectrum) for piece in slices for spectrum in piece.spectra()]
    assert len(got) == len(expected)
    for (piece, spectrum), ref in zip(got, expected):
        assert (spectrum.id, spectrum.index, spectrum.ms_level, spectrum.rt) == (ref["id"], ref["index"], ref.get("ms level"), seconds(ref))
        for mine, theirs in ((spectrum.mz, ref["m/z array"]), (spectrum.intensity, ref["intensity array"])):
            assert mine.dtype == theirs.dtype and np.array_equal(mine, theirs)


# -- spectra as pyteomics reads them ------------------------------------------------------------------------


CASES = {
    "indexed-zlib": {"indexed": True, "compression": "zlib"},
    "indexed-raw-64bit": {"indexed": True, "compression": "none", "intensity_type": np.float64},
    "plain-zlib-int": {"indexed": False, "compression": "zlib", "mz_bits": 32, "intensity_type": np.int32},
    "plain-raw": {"indexed": False, "compression": "none", "chromatograms": False},
}


@pytest.mark.parametrize("case", list(CASES))
def test_spectra_match_pyteomics(store, case):
    data = make_mzml(90, seed=len(case), **CASES[case])
    co = indexed(store, f"{case}.mzML", data)
    a = co.attributes
    assert (a.spectra, a.chromatograms, a.indexed, a.scanned) == (90, 2 if CASES[case].get("chromatograms", True) else 0, CASES[case]["indexed"], not CASES[case]["indexed"])
    expected = reference(data)
    assert any(len(s["m/z array"]) == 0 for s in expected) and {s["ms level"] for s in expected} == {1, 2}
    for strategy, args in ((partition_num_chunks, (4,)), (partition_spectra, (5,)), (partition_num_chunks, (1,))):
        slices = co.partition(strategy, *args)
        assert [s.number for s in slices] == list(range(len(slices)))
        assert_matches_pyteomics(slices, expected)
    first = co.partition(partition_spectra, 1)[0].get()
    assert [(i, m.tolist(), x.tolist()) for i, m, x in first] == [(s["id"], s["m/z array"].tolist(), s["intensity array"].tolist()) for s in expected]


def test_param_groups_and_seconds(store):
    data = with_param_groups(in_seconds(make_mzml(40, seed=3, indexed=False)))
    co = indexed(store, "groups.mzML", data)
    assert len(co.attributes.param_groups) == 3
    expected = reference(data)
    assert seconds(expected[1]) == pytest.approx(0.5) and expected[1]["scanList"]["scan"][0]["scan start time"].unit_info == "second"
    assert_matches_pyteomics(co.partition(partition_num_chunks, 3), expected)


def test_to_arrow_columns_and_types(store):
    for intensity_type, arrow_type in ((np.float32, pa.float32()), (np.float64, pa.float64()), (np.int32, pa.float64())):
        data = make_mzml(30, seed=4, intensity_type=intensity_type)
        co = indexed(store, f"arrow-{np.dtype(intensity_type).name}.mzML", data)
        piece = co.partition(partition_spectra, 3)[1]
        table = piece.to_arrow()
        assert table.schema == piece.schema() and table.schema.field("intensity").type == pa.list_(arrow_type)
        assert table.column_names == ["id", "index", "ms_level", "rt", "mz", "intensity"]
        expected = reference(data)[10:20]
        assert table["index"].to_pylist() == list(range(10, 20)) == piece.spectrum_indices.tolist()
        assert table["rt"].to_pylist() == [seconds(s) for s in expected]  # read from the spectra: the index pass kept none
        assert list(zip(table["id"].to_pylist(), table["ms_level"].to_pylist())) == [(s["id"], s["ms level"]) for s in expected]
        assert table["intensity"].to_pylist() == [s["intensity array"].astype(np.float64).tolist() for s in expected]
        assert piece.to_arrow(["ms_level", "id"]).column_names == ["ms_level", "id"]
        with pytest.raises(KeyError, match="nope"):
            piece.to_arrow(["nope"])


# -- the index pass ----------------------------------------------------------------------------------------


def test_index_pass_on_an_indexed_file_reads_under_5_percent(store, monkeypatch):
    data = make_mzml(600, seed=5, peaks=(20, 200))
    url = store.put("big-indexed.mzML", data)
    calls = read_ranges_calls(monkeypatch)
    read_stats.reset()
    co = CloudObject.from_url(MzML, url, storage_options=store.options).preprocess(progress=False)
    object_calls = [ranges for called, ranges in calls if called == url]
    assert 2 <= len(object_calls) <= 3, object_calls  # tail, index (unless the tail holds it), head with the probes
    assert read_stats.bytes[url] < 0.05 * len(data), f"the index pass read {read_stats.bytes[url]} of {len(data)} bytes"
    assert co.attributes.spectra == 600 and not co.attributes.scanned
    offsets = co.index().tables["spectrum_offset"]
    assert all(data[o : o + 10] == b"<spectrum " for o in offsets[:-1].tolist())
    assert co.index().tables["chromatogram_offset"].tolist() == [data.index(b'<chromatogram index="0"'), data.index(b'<chromatogram index="1"')]


def test_full_scan_and_partition_rt(store):
    data = make_mzml(120, seed=6)
    expected = reference(data)
    co = indexed(store, "rt.mzML", data)
    with pytest.raises(StrategyArgumentError, match=r"full_scan=True"):
        co.partition(partition_rt, 10.0, 20.0)
    fast = co.index().tables["spectrum_offset"].copy()
    co = indexed(store, "rt.mzML", data, full_scan=True, force=True)
    assert co.attributes.scanned and co.attributes.indexed
    assert np.array_equal(co.index().tables["spectrum_offset"][:-1], fast[:-1])  # the scan finds the index's offsets
    rts = np.array([seconds(s) for s in expected])
    assert np.array_equal(co.index().tables["spectrum_rt"], rts)
    for lo, hi, n in ((10.0, 20.0, 1), (0.0, 0.0, 1), (-5.0, 1e9, 4), (21.25, 30.0, 3), (500.0, 600.0, 2)):
        slices = co.partition(partition_rt, lo, hi, num_chunks=n)
        assert len(slices) == n
        got = [s for piece in slices for s in piece.spectra(decode=False)]
        want = [s for s in expected if lo <= seconds(s) <= hi]
        assert [s.id for s in got] == [s["id"] for s in want] and all(lo <= s.rt <= hi for s in got)
    for args in ((20.0, 10.0), (float("nan"), 1.0), ("a", 2)):
        with pytest.raises(StrategyArgumentError):
            co.partition(partition_rt, *args)
    with pytest.raises(StrategyArgumentError, match="full_scan"):
        indexed(store, "rt.mzML", data, full_scan="yes", force=True)


def test_partition_num_chunks_is_balanced_by_bytes(local_store):
    rng = np.random.default_rng(7)
    data = make_mzml(300, seed=7, peaks=(0, 400))
    co = indexed(local_store, "bytes.mzML", data)
    offsets = co.index().tables["spectrum_offset"]
    largest = int(np.diff(offsets).max())
    for n in rng.integers(1, 40, 6).tolist():
        slices = co.partition(partition_num_chunks, n)
        assert np.array_equal(np.concatenate([s.spectrum_indices for s in slices]), np.arange(300))
        sizes = [(s.byte_range()[1] - s.byte_range()[0]) if s.num_records else 0 for s in slices]
        assert max(sizes) <= (offsets[-1] - offsets[0]) / n + largest
        counts = [s.num_records for s in co.partition(partition_spectra, n)]
        assert max(counts) - min(counts) <= 1


def test_slices_read_their_spectra_in_one_call(store, monkeypatch):
    data = make_mzml(60, seed=8)
    co = indexed(store, "one-call.mzML", data)
    calls = read_ranges_calls(monkeypatch)
    for piece in co.partition(partition_num_chunks, 4):
        calls.clear()
        piece.get()
        ((url, ranges),) = calls
        assert url == co.url and ranges == [piece.byte_range()]
    rt = indexed(store, "one-call.mzML", data, full_scan=True, force=True)
    (piece,) = rt.partition(partition_rt, 5.0, 10.0)
    calls.clear()
    piece.to_arrow()
    assert len(calls) == 1 and len(calls[0][1]) == 1


# -- detection ---------------------------------------------------------------------------------------------


def test_detection(local_store, tmp_path):
    for data in (make_mzml(5), make_mzml(5, indexed=False)):
        assert sniff("x.mzML", data[:65536]).format == "MzML"
        url = local_store.put("detected.mzML", data)
        assert CloudObject.from_url(url).format is MzML
    pyimzml = pytest.importorskip("pyimzml.ImzMLWriter")
    with pyimzml.ImzMLWriter(str(tmp_path / "i")) as writer:
        writer.addSpectrum(np.array([100.0, 200.0]), np.array([1.0, 2.0]), (1, 1))
    imzml = (tmp_path / "i.imzML").read_bytes()
    assert sniff("i.imzML", imzml).format == "ImzML"
    with pytest.raises(InvalidFormatError, match="imzML"):
        indexed(local_store, "i.imzML", imzml)


# -- dump --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("indexed_source", [True, False])
def test_dump_writes_an_mzml_pyteomics_reads(local_store, tmp_path, indexed_source):
    data = make_mzml(50, seed=9, indexed=indexed_source)
    co = indexed(local_store, "dump.mzML", data)
    expected = reference(data)
    for piece in co.partition(partition_num_chunks, 3):
        path = tmp_path / f"out{piece.number}.mzML"
        with open(path, "wb") as fp:
            piece.dump(fp)
        dumped = reference(path)
        assert [as_row(s) for s in dumped] == [as_row(expected[i]) for i in piece.spectrum_indices.tolist()]
        assert [s["index"] for s in dumped] == list(range(piece.num_records))
        written = path.read_bytes()
        assert re.search(rb'<spectrumList count="' + str(piece.num_records).encode() + b'"', written)
        again = CloudObject.from_url(MzML, str(path)).preprocess()
        assert again.attributes.indexed == indexed_source and again.attributes.spectra == piece.num_records
        if indexed_source:
            checksum = re.search(rb"<fileChecksum>([0-9a-f]{40})</fileChecksum>", written)
            assert checksum.group(1).decode() == hashlib.sha1(written[: checksum.start(1)]).hexdigest()
            offsets = {name.decode(): int(at) for name, at in re.findall(rb'<offset idRef="([^"]*)">([0-9]+)</offset>', written)}
            assert list(offsets) == [s["id"] for s in dumped]
            assert all(written[at : at + 10] == b"<spectrum " for at in offsets.values())


# -- pickling and processes --------------------------------------------------------------------------------


def test_slices_pickle_small_and_read_in_spawned_processes(store):
    co = indexed(store, "pickle.mzML", make_mzml(200, seed=10))
    slices = co.partition(partition_num_chunks, 4)
    assert all(len(pickle.dumps(s)) < 20_000 for s in slices)
    assert pickle.loads(pickle.dumps(slices[0])) == slices[0] and slices[0] != slices[1]
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        tables = list(pool.map(MzMLSlice.to_arrow, slices))
    assert pa.concat_tables(tables).equals(pa.concat_tables([s.to_arrow() for s in slices]))


# -- bad input ---------------------------------------------------------------------------------------------


def test_numpress_is_refused(local_store):
    data = make_mzml(12, seed=11)
    second = data.index(b'<spectrum index="1"')
    late = data[:second] + data[second:].replace(b'accession="MS:1000574"', b'accession="MS:1002746"')  # same length: the index still fits
    co = indexed(local_store, "numpress-late.mzML", late)  # the index pass decodes the first spectrum only
    with pytest.raises(InvalidFormatError, match=r"spectrum 'scan=2': its m/z array is encoded with MS-Numpress linear prediction followed by zlib") as info:
        co.partition(partition_spectra, 1)[0].get()
    assert info.value.url == co.url
    assert co.partition(partition_spectra, 12)[0].get()[0][0] == "scan=1"
    with pytest.raises(InvalidFormatError, match="does not decode"):
        indexed(local_store, "numpress.mzML", data.replace(b'accession="MS:1000574"', b'accession="MS:1002746"'))
    plain = make_mzml(12, seed=11, indexed=False).replace(b'accession="MS:1000574"', b'accession="MS:1002312"')
    with pytest.raises(InvalidFormatError, match="MS-Numpress linear prediction"):
        indexed(local_store, "numpress-plain.mzML", plain)


def test_truncated_file(store):
    data = make_mzml(40, seed=12)
    for cut in (len(data) // 2, len(data) - 300):
        with pytest.raises(InvalidFormatError) as info:
            indexed(store, f"cut{cut}.mzML", data[:cut])
        assert info.value.url == store.url(f"cut{cut}.mzML")
    with pytest.raises(InvalidFormatError, match="empty"):
        indexed(store, "empty.mzML", b"")
    with pytest.raises(InvalidFormatError, match="root element is <html>"):
        indexed(store, "html.mzML", b"<html><body>not mzML</body></html>")


def set_offset(data: bytes, spectrum: int, value: int) -> bytes:
    """``data`` with the index's offset of ``spectrum`` set to ``value`` (the index is the document's last
    part: its length may change, indexListOffset still points at its start)."""
    found = list(re.finditer(rb'<offset idRef="scan=[0-9]+">([0-9]+)</offset>', data))[spectrum]
    return data[: found.start(1)] + str(value).encode() + data[found.end(1) :]


def test_crafted_index_offsets(store):
    data = make_mzml(41, seed=13)
    offsets = [int(v) for v in re.findall(rb'<offset idRef="scan=[0-9]+">([0-9]+)</offset>', data)]
    name = "crafted.mzML"
    # A probed spectrum (the middle one) moved: the index pass refuses the file, naming it.
    with pytest.raises(InvalidFormatError, match=r"index puts spectrum 20 .* at byte .*the index is wrong") as info:
        indexed(store, name, set_offset(data, 20, offsets[20] + 7))
    assert info.value.url == store.url(name)
    # Offsets that go backwards, and an indexListOffset outside the object or beside its index.
    with pytest.raises(InvalidFormatError, match="do not increase"):
        indexed(store, name, set_offset(data, 10, offsets[9] - 5))
    tail = re.search(rb"<indexListOffset>([0-9]+)</indexListOffset>", data)
    with pytest.raises(InvalidFormatError, match="outside the object"):
        indexed(store, name, data[: tail.start(1)] + str(len(data) * 10).encode() + data[tail.end(1) :])
    with pytest.raises(InvalidFormatError, match="no <indexList> starts"):
        indexed(store, name, data[: tail.start(1)] + str(int(tail.group(1)) - 5).encode() + data[tail.end(1) :])
    # An unprobed spectrum moved: the index pass cannot see it; the slice that reads it refuses, the others read.
    co = indexed(store, name, set_offset(data, 7, offsets[7] + 3))
    slices = co.partition(partition_spectra, 4)
    with pytest.raises(CorruptIndexError, match="run preprocess") as info:
        slices[0].to_arrow()
    assert info.value.url == store.url(name)
    assert sum(piece.to_arrow().num_rows for piece in slices[1:]) == 31
    # With full_scan the spectra are found by reading them, the index aside.
    scanned = indexed(store, name, set_offset(data, 7, offsets[7] + 3), full_scan=True, force=True)
    assert_matches_pyteomics(scanned.partition(partition_num_chunks, 3), reference(data))


# -- the conformance kit ---------------------------------------------------------------------------------


class TestMzMLConformance(FormatTests):
    format = MzML
    dump_suffix = ".mzML"

    def samples(self) -> dict[str, dict[str, bytes]]:
        """Indexed and not; zlib and raw; 32-bit, 64-bit and integer intensities; arrays through parameter
        groups with retention times in seconds; spectra without peaks; one without chromatograms."""
        return {
            "indexed-zlib-32bit": {"x.mzML": make_mzml(70, seed=1)},
            "indexed-raw-64bit": {"x.mzML": make_mzml(45, seed=2, compression="none", intensity_type=np.float64, chromatograms=False)},
            "plain-zlib-int": {"x.mzML": make_mzml(50, seed=3, indexed=False, mz_bits=32, intensity_type=np.int32)},
            "plain-groups-seconds": {"x.mzML": with_param_groups(in_seconds(make_mzml(33, seed=4, indexed=False, peaks=(0, 5))))},
        }

    def oracle(self, path: Path) -> list:
        return [as_row(s) for s in reference(path)]

    def rows(self, table: pa.Table) -> list:
        return list(zip(*(table[c].to_pylist() for c in ("id", "ms_level", "rt", "mz", "intensity"))))

    def large(self, folder: Path) -> tuple[str, int]:
        """2,600 spectra of 1,500 to 2,500 peaks, raw 64-bit m/z and 32-bit intensities: about 80 MB."""
        count = 2600
        (folder / "large.mzML").write_bytes(make_mzml(count, seed=64, compression="none", peaks=(1500, 2500)))
        return "large.mzML", count
