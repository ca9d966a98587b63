"""imzML (the .imzML with its .ibd): spectra as pyimzml reads them, every spectrum in exactly one slice, the
.ibd found, checked and pinned, bad pairs named."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import re
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pyimzml = pytest.importorskip("pyimzml")

from pyimzml.compression import ZlibCompression  # noqa: E402
from pyimzml.ImzMLParser import ImzMLParser, getionimage  # noqa: E402
from pyimzml.ImzMLWriter import ImzMLWriter  # noqa: E402

from dataplug import CloudObject  # noqa: E402
from dataplug.errors import (  # noqa: E402
    CorruptIndexError,
    DataplugError,
    InvalidFormatError,
    ObjectNotFoundError,
    StaleIndexError,
    StrategyArgumentError,
)
from dataplug.formats.metabolomics.imzml import (  # noqa: E402
    ImzML,
    grid_shape,
    ion_image,
    partition_chunk_size,
    partition_chunks_strategy,
    partition_num_chunks,
    partition_region,
    partition_spectra,
    square_split_strategy,
)
from dataplug.formats.metabolomics.imzml_slice import ImzMLSlice  # noqa: E402
from dataplug.storage.object import read_stats  # noqa: E402
from dataplug.testing import FormatTests  # noqa: E402
from tests.read_spy import read_ranges_calls  # noqa: E402

#: (m/z type, intensity type): 32-bit, 64-bit, and integer intensities.
DTYPES = {"32bit": (np.float32, np.float32), "64bit": (np.float64, np.float64), "int": (np.float64, np.int32)}


def spectra(n: int, width: int, height: int, seed: int = 0, peaks: tuple[int, int] = (1, 60), shuffle: bool = True) -> list:
    """``n`` spectra on distinct pixels of a ``width`` x ``height`` grid (in random order when ``shuffle``),
    each with a random sorted m/z array in [100, 200] and random intensities."""
    rng = np.random.default_rng(seed)
    pixels = rng.choice(width * height, size=n, replace=False)
    if not shuffle:
        pixels.sort()
    out = []
    for p in pixels.tolist():
        k = int(rng.integers(peaks[0], peaks[1] + 1))
        out.append((np.sort(rng.uniform(100, 200, k)), rng.uniform(0, 1000, k), (p % width + 1, p // width + 1)))
    return out


def write(folder: Path, name: str, data: list, mode: str, dtypes: tuple = DTYPES["32bit"], **kw) -> tuple[bytes, bytes]:
    """The (.imzML, .ibd) bytes pyimzml's writer makes of ``data``; continuous mode uses the first m/z array."""
    (folder / "written").mkdir(exist_ok=True)
    base = folder / "written" / name
    with ImzMLWriter(str(base), mode=mode, mz_dtype=dtypes[0], intensity_dtype=dtypes[1], **kw) as writer:
        for mz, intensity, coords in data:
            if mode == "continuous":
                mz, intensity = data[0][0], np.resize(intensity, data[0][0].size)
            writer.addSpectrum(mz, intensity.astype(dtypes[1]), coords)
    return (base.with_suffix(".imzML")).read_bytes(), (base.with_suffix(".ibd")).read_bytes()


def put(store, name: str, pair: tuple[bytes, bytes], ibd_name: str | None = None) -> str:
    url = store.put(f"{name}.imzML", pair[0])
    store.put(ibd_name or f"{name}.ibd", pair[1])
    return url


def indexed(store, url: str, **options) -> CloudObject:
    return CloudObject.from_url(ImzML, url, storage_options=store.options).preprocess(progress=False, **options)


def parser_of(pair: tuple[bytes, bytes], folder: Path) -> ImzMLParser:
    (folder / "ref.imzML").write_bytes(pair[0])
    (folder / "ref.ibd").write_bytes(pair[1])
    return ImzMLParser(str(folder / "ref.imzML"))


def read_all(slices: list[ImzMLSlice]) -> tuple[np.ndarray, list]:
    """Spectrum indices in slice order, and every (x, y, mz, intensity)."""
    got = [s.get() for s in slices]
    return np.concatenate([s.spectrum_indices for s in slices]), [r for g in got for r in g]


def assert_matches_pyimzml(slices: list[ImzMLSlice], parser: ImzMLParser) -> None:
    indices, records = read_all(slices)
    assert np.array_equal(np.sort(indices), np.arange(len(parser.coordinates)))
    for i, (x, y, mz, intensity) in zip(indices.tolist(), records):
        ref_mz, ref_intensity = parser.getspectrum(i)
        assert (x, y) == parser.coordinates[i][:2]
        assert mz.dtype == ref_mz.dtype and intensity.dtype == ref_intensity.dtype
        assert np.array_equal(mz, ref_mz) and np.array_equal(intensity, ref_intensity)


# -- spectra as pyimzml reads them ---------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["continuous", "processed"])
@pytest.mark.parametrize("kind", list(DTYPES))
def test_spectra_match_pyimzml(store, tmp_path, mode, kind):
    pair = write(tmp_path, "d", spectra(150, 20, 10, seed=len(kind)), mode, DTYPES[kind])
    co = indexed(store, put(store, "d", pair))
    a = co.attributes
    assert (a.spectra, a.is_continuous, a.image) == (150, mode == "continuous", (1, 1, 20, 10))
    assert (a.mz_dtype, a.intensity_dtype) == tuple(np.dtype(t).newbyteorder("<").str for t in DTYPES[kind])
    assert a.ibd_url == store.url("d.ibd") and a.ibd_size == len(pair[1]) and len(a.uuid) == 36
    assert a.mz_range is not None and 100 <= a.mz_range[0] < a.mz_range[1] <= 200
    parser = parser_of(pair, tmp_path)
    for strat, arg in ((partition_spectra, 4), (square_split_strategy, 5), (partition_chunk_size, 20_000)):
        assert_matches_pyimzml(co.partition(strat, arg), parser)
    if mode == "continuous":
        (_, _, first, _), (_, _, second, _) = co.partition(partition_spectra, 1)[0].get()[:2]
        assert first is second  # the shared m/z array is read and decoded once


def test_format_by_name_and_uppercase_ibd(local_store, tmp_path):
    pair = write(tmp_path, "u", spectra(10, 5, 5), "processed")
    url = put(local_store, "u", pair, ibd_name="u.IBD")
    co = CloudObject.from_url("imzml", url).preprocess()
    assert co.format is ImzML and co.attributes.ibd_url.endswith("u.IBD")
    assert_matches_pyimzml(co.partition(partition_spectra, 3), parser_of(pair, tmp_path))


def test_ibd_url_option(store, tmp_path):
    pair = write(tmp_path, "o", spectra(30, 6, 6), "processed")
    url = store.put("meta/o.imzML", pair[0])
    ibd = store.put("binary/other-name.ibd", pair[1])
    with pytest.raises(ObjectNotFoundError, match=r"o\.ibd.*ibd_url="):
        indexed(store, url)
    co = indexed(store, url, ibd_url=ibd)
    assert co.attributes.ibd_url == ibd
    assert_matches_pyimzml(co.partition(partition_spectra, 2), parser_of(pair, tmp_path))
    with pytest.raises(ObjectNotFoundError, match="ibd_url"):
        indexed(store, url, ibd_url=store.url("binary/missing.ibd"), force=True)


# -- every spectrum exactly once --------------------------------------------------------------------------


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    n=st.integers(1, 40),
    width=st.integers(1, 9),
    height=st.integers(1, 9),
    mode=st.sampled_from(["continuous", "processed"]),
    shuffle=st.booleans(),
    counts=st.lists(st.integers(1, 60), min_size=3, max_size=3),
    seed=st.integers(0, 2**16),
)
def test_every_spectrum_exactly_once(n, width, height, mode, shuffle, counts, seed):
    n = min(n, width * height)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write(folder, "h", spectra(n, width, height, seed, peaks=(1, 8), shuffle=shuffle), mode)
        co = CloudObject.from_url(ImzML, str(folder / "written" / "h.imzML")).preprocess()
        position = co.index().tables["position"]
        for strat, arg in ((partition_spectra, counts[0]), (square_split_strategy, counts[1]), (partition_chunk_size, counts[2] * 8)):
            slices = co.partition(strat, arg)
            indices, records = read_all(slices)
            assert np.array_equal(np.sort(indices), np.arange(n))
            assert all(np.all(np.diff(s.spectrum_indices) > 0) for s in slices)  # file order inside a slice
            assert [s.number for s in slices] == list(range(len(slices)))
            assert all((x, y) == tuple(position[i, :2]) for i, (x, y, _, _) in zip(indices.tolist(), records))
            if strat is partition_spectra:
                assert len(slices) == arg and np.array_equal(indices, np.arange(n))
                assert max(s.num_spectra for s in slices) - min(s.num_spectra for s in slices) <= 1
            elif strat is square_split_strategy:
                assert len(slices) == np.prod(grid_shape(arg))
                for s in slices:
                    col, row, w, h = s.window
                    assert s.bounds == (col, row, col + w, row + h)
                    assert np.all((s.rows[:, 1] >= col) & (s.rows[:, 1] < col + w) & (s.rows[:, 2] >= row) & (s.rows[:, 2] < row + h))
            else:
                assert np.array_equal(indices, np.arange(n)) and all(s.num_spectra >= 1 for s in slices)


def test_square_split_tiles_the_extent(local_store, tmp_path):
    data = [(np.array([150.0]), np.array([float(x * 100 + y)]), (x, y)) for x in range(3, 13) for y in range(5, 9)]
    co = indexed(local_store, put(local_store, "g", write(tmp_path, "g", data, "processed")))
    assert co.attributes.extent == (3, 5, 12, 8) and co.attributes.image == (1, 1, 12, 8)
    slices = co.partition(square_split_strategy, 4)
    assert [s.window for s in slices] == [(3, 5, 5, 2), (3, 7, 5, 2), (8, 5, 5, 2), (8, 7, 5, 2)]  # (col_off, row_off, width, height)
    assert [s.bounds for s in slices] == [(3, 5, 8, 7), (3, 7, 8, 9), (8, 5, 13, 7), (8, 7, 13, 9)]  # half-open
    assert [s.num_spectra for s in slices] == [10, 10, 10, 10]
    many = co.partition(square_split_strategy, 400)  # more cells than pixels: some are empty
    assert sum(s.num_spectra for s in many) == 40 and any(s.num_spectra == 0 for s in many)
    assert all(s.get() == [] and s.to_arrow().num_rows == 0 for s in many if s.num_spectra == 0)


def test_partition_region(store, tmp_path):
    data = spectra(60, 10, 10, seed=4)
    pair = write(tmp_path, "r", data, "processed")
    co = indexed(store, put(store, "r", pair))
    (piece,) = co.partition(partition_region, 2, 3, 6, 8)
    expected = [i for i, (_, _, (x, y)) in enumerate(data) if 2 <= x <= 6 and 3 <= y <= 8]
    assert piece.window == (2, 3, 5, 6) and piece.bounds == (2, 3, 7, 9) and piece.spectrum_indices.tolist() == expected
    parser = parser_of(pair, tmp_path)
    for i, (x, y, mz, intensity) in zip(expected, piece.get()):
        assert (x, y) == parser.coordinates[i][:2] and np.array_equal(intensity, parser.getspectrum(i)[1])
    assert co.partition(partition_region, 50, 50, 60, 60)[0].num_spectra == 0
    for args in ((3, 0, 2, 5), (0, 0, 1.5, 2), (True, 0, 1, 1)):
        with pytest.raises(StrategyArgumentError):
            co.partition(partition_region, *args)
    with pytest.raises(StrategyArgumentError, match="num_chunks"):
        co.partition(partition_spectra, 0)


def test_partition_chunk_size_sizes(local_store, tmp_path):
    data = spectra(50, 10, 10, seed=6, peaks=(10, 40))
    co = indexed(local_store, put(local_store, "c", write(tmp_path, "c", data, "processed", DTYPES["64bit"])))
    budget = 2000
    slices = co.partition(partition_chunk_size, budget)
    sizes = [int(s.rows[:, [4, 6]].sum()) * 8 for s in slices]
    assert all(size <= budget or s.num_spectra == 1 for size, s in zip(sizes, slices))
    assert all(a + int(b.rows[0, [4, 6]].sum()) * 8 > budget for a, b in zip(sizes, slices[1:]))  # greedy: no slice could take one more
    assert len(co.partition(partition_chunk_size, 1)) == 50


def test_partition_chunks_strategy_is_the_deprecated_name(local_store, tmp_path):
    co = indexed(local_store, put(local_store, "d", write(tmp_path, "d", spectra(30, 6, 6, seed=3), "processed")))
    expected = co.partition(partition_chunk_size, 500)
    with pytest.warns(DeprecationWarning, match=r"partition_chunks_strategy.*partition_chunk_size\(co, chunk_size\)"):
        assert co.partition(partition_chunks_strategy, 500) == expected
    with pytest.warns(DeprecationWarning, match="partition_chunk_size"):
        assert co.partition("partition_chunks_strategy", 500) == expected


def test_partition_num_chunks_is_partition_spectra(local_store, tmp_path):
    co = indexed(local_store, put(local_store, "n", write(tmp_path, "n", spectra(12, 4, 4, seed=5), "processed")))
    for n in (1, 5, 12, 14):
        slices = co.partition("partition_num_chunks", n)
        assert slices == co.partition(partition_spectra, n) == co.partition(partition_num_chunks, n)
        assert len(slices) == n and [s.num_records for s in slices].count(0) == max(0, n - 12)


# -- reads ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["continuous", "processed"])
def test_slices_fetch_only_their_ranges_in_one_call(store, tmp_path, monkeypatch, mode):
    data = spectra(64, 8, 8, seed=8, shuffle=False)
    co = indexed(store, put(store, "m", write(tmp_path, "m", data, mode)))
    calls = read_ranges_calls(monkeypatch)
    for strat, arg, most in ((partition_spectra, 4, 2), (square_split_strategy, 4, 9)):
        for piece in co.partition(strat, arg):
            calls.clear()
            read_stats.reset()
            piece.get()
            ((url, ranges),) = calls
            assert url == co.attributes.ibd_url
            needed = set()
            for mz_off, mz_n, int_off, int_n in piece.rows[:, 3:7].tolist():
                needed |= set(range(mz_off, mz_off + 4 * mz_n)) | set(range(int_off, int_off + 4 * int_n))
            asked = [b for a, e in ranges for b in range(a, e)]
            assert sorted(asked) == sorted(needed)  # each byte it needs asked once, nothing else
            # The store joins near arrays: a run of spectra is one request, a window one per row at most.
            assert read_stats.requests.get(co.url, 0) == 0 and 1 <= read_stats.requests[url] <= most


def test_to_arrow_and_schema(store, tmp_path):
    data = spectra(40, 8, 8, seed=9)
    for kind, intensity_type in (("32bit", pa.float32()), ("int", pa.float64())):
        pair = write(tmp_path, kind, data, "processed", DTYPES[kind])
        co = indexed(store, put(store, kind, pair))
        piece = co.partition(partition_spectra, 3)[1]
        table = piece.to_arrow()
        assert table.schema == piece.schema()
        assert table.schema.field("mz").type == pa.list_(pa.float64()) and table.schema.field("intensity").type == pa.list_(intensity_type)
        assert table.num_rows == piece.num_spectra
        for row, (x, y, mz, intensity) in zip(table.to_pylist(), piece.get()):
            assert (row["x"], row["y"]) == (x, y)
            assert row["mz"] == mz.astype(np.float64).tolist() and row["intensity"] == intensity.astype(np.float64).tolist()
        assert piece.to_arrow(["intensity", "x"]).column_names == ["intensity", "x"]
        frame = piece.to_pandas(["x", "y"])
        assert frame["x"].tolist() == piece.rows[:, 1].tolist()
        with pytest.raises(KeyError, match="nope"):
            piece.to_arrow(["nope"])


@pytest.mark.parametrize("mode", ["continuous", "processed"])
def test_num_records_and_byte_range(store, tmp_path, monkeypatch, mode):
    co = indexed(store, put(store, "b", write(tmp_path, "b", spectra(40, 8, 8, seed=11), mode)))
    calls = read_ranges_calls(monkeypatch)
    for strat, *args in ((partition_spectra, 3), (square_split_strategy, 5), (partition_region, 2, 2, 4, 4), (partition_spectra, 45)):
        for piece in co.partition(strat, *args):
            calls.clear()
            rows = piece.to_arrow().num_rows
            assert piece.num_records == rows == len(piece.get()) == piece.num_spectra
            if rows == 0:
                assert piece.byte_range() is None
                continue
            ranges = [r for _, rs in calls for r in rs]
            assert piece.byte_range() == (min(a for a, _ in ranges), max(b for _, b in ranges))  # the span of the .ibd it reads
            assert 16 <= piece.byte_range()[0] < piece.byte_range()[1] <= co.attributes.ibd_size


@pytest.mark.parametrize("mode", ["continuous", "processed"])
@pytest.mark.parametrize("kind", list(DTYPES))
def test_dump_to_writes_an_imzml_pyimzml_reads(local_store, tmp_path, mode, kind):
    data = [(mz, intensity, (x, y, 1 + i % 3)) for i, (mz, intensity, (x, y)) in enumerate(spectra(30, 6, 6, seed=13))]  # z planes too
    pair = write(tmp_path, "w", data, mode, DTYPES[kind])
    co = indexed(local_store, put(local_store, "w", pair))
    source = parser_of(pair, tmp_path)
    for piece in co.partition(square_split_strategy, 4):
        path = piece.dump_to(tmp_path / f"out{piece.number}")
        assert path == tmp_path / f"out{piece.number}.imzML" and path.with_suffix(".ibd").exists()
        with ImzMLParser(str(path)) as parser:
            assert parser.coordinates == [source.coordinates[i] for i in piece.spectrum_indices.tolist()]
            for j, i in enumerate(piece.spectrum_indices.tolist()):
                mz, intensity = parser.getspectrum(j)
                ref_mz, ref_intensity = source.getspectrum(i)
                assert mz.dtype == ref_mz.dtype and intensity.dtype == ref_intensity.dtype
                assert np.array_equal(mz, ref_mz) and np.array_equal(intensity, ref_intensity)
        dumped = CloudObject.from_url(ImzML, str(path)).preprocess()
        assert dumped.attributes.is_continuous == (mode == "continuous")
        assert (dumped.attributes.mz_dtype, dumped.attributes.intensity_dtype) == (co.attributes.mz_dtype, co.attributes.intensity_dtype)
    assert piece.dump_to(str(tmp_path / "named.imzML")) == tmp_path / "named.imzML"
    with pytest.raises(DataplugError, match=r"two files.*dump_to\(path\)"):
        piece.dump(open(tmp_path / "one.bin", "wb"))
    assert ImzMLSlice.binary_output


def without_peaks(imzml: bytes, spectrum: int) -> bytes:
    """The .imzML with spectrum ``spectrum``'s two arrays made empty (real processed data has such pixels;
    pyimzml's writer cannot make them)."""
    text = imzml.decode("latin-1")
    start = -1
    for _ in range(spectrum + 1):
        start = text.index("<spectrum ", start + 1)
    end = text.index("</spectrum>", start)
    block = re.sub(r'(name="external (?:array|encoded) length" value=")\d+"', r'\g<1>0"', text[start:end])
    return (text[:start] + block + text[end:]).encode("latin-1")


def test_dump_to_writes_spectra_without_peaks(local_store, tmp_path):
    imzml, ibd = write(tmp_path, "e", spectra(12, 4, 4, seed=14), "processed")
    co = indexed(local_store, put(local_store, "e", (without_peaks(without_peaks(imzml, 0), 5), ibd)))
    (piece,) = co.partition(partition_num_chunks, 1)
    expected = [(x, y, mz.tolist(), intensity.tolist()) for x, y, mz, intensity in piece.get()]
    assert expected[0][2:] == expected[5][2:] == ([], []) and all(row[2] for i, row in enumerate(expected) if i not in (0, 5))
    with ImzMLParser(str(piece.dump_to(tmp_path / "out"))) as parser:
        got = [(x, y, *(a.tolist() for a in parser.getspectrum(i))) for i, (x, y, _) in enumerate(parser.coordinates)]
    assert got == expected
    again = CloudObject.from_url(ImzML, str(tmp_path / "out.imzML")).preprocess()  # NaN stated as their lowest m/z
    assert again.attributes.mz_range is None and again.partition(partition_num_chunks, 1)[0].to_arrow().equals(piece.to_arrow())
    (empty,) = co.partition(partition_region, 50, 50, 51, 51)
    with pytest.raises(DataplugError, match="no spectra"):
        empty.dump_to(tmp_path / "empty")


def test_slices_pickle_small_and_read_in_spawned_processes(store, tmp_path):
    pair = write(tmp_path, "p", spectra(200, 20, 20, seed=10), "processed")
    co = indexed(store, put(store, "p", pair))
    slices = co.partition(partition_spectra, 4)
    assert all(len(pickle.dumps(s)) < 20_000 for s in slices)
    assert pickle.loads(pickle.dumps(slices[0])) == slices[0] and slices[0] != slices[1]
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        tables = list(pool.map(ImzMLSlice.to_arrow, slices))
    assert pa.concat_tables(tables).equals(pa.concat_tables([s.to_arrow() for s in slices]))


# -- ion images -------------------------------------------------------------------------------------------


def brute_ion_image(parser: ImzMLParser, mz: float, tol: float, shape: tuple[int, int]) -> np.ndarray:
    image = np.zeros(shape)
    for i, (x, y, _) in enumerate(parser.coordinates):
        m, intensity = parser.getspectrum(i)
        image[y - 1, x - 1] += intensity[(m >= mz - tol) & (m <= mz + tol)].sum(dtype=np.float64)
    return image


@pytest.mark.parametrize("mode", ["continuous", "processed"])
def test_ion_image(store, tmp_path, mode):
    data = spectra(120, 16, 12, seed=12, peaks=(200, 300))
    pair = write(tmp_path, "i", data, mode)
    co = indexed(store, put(store, "i", pair))
    parser = parser_of(pair, tmp_path)
    for mz, tol in ((150.0, 0.5), (100.0, 5.0), (175.25, 0.0), (400.0, 1.0)):
        expected = brute_ion_image(parser, mz, tol, (12, 16))
        image = ion_image(co, mz, tol)
        assert image.shape == (12, 16) and np.allclose(image, expected, rtol=1e-12, atol=0)
        assert np.allclose(ion_image(co.partition(square_split_strategy, 5), mz, tol), expected, rtol=1e-12, atol=0)
    assert np.allclose(ion_image(co, 150.0, 0.5), getionimage(parser, 150.0, 0.5), rtol=1e-6)  # pyimzml's own (float32 sums)
    (region,) = co.partition(partition_region, 1, 1, 4, 4)
    partial = ion_image(region, 150.0, 2.0)
    assert np.array_equal(partial[4:, :], np.zeros((8, 16))) and np.allclose(partial[:4, :4], brute_ion_image(parser, 150.0, 2.0, (12, 16))[:4, :4])
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        assert np.array_equal(ion_image(co, 150.0, 0.5, executor=pool), ion_image(co, 150.0, 0.5))
    for bad in ((float("nan"), 1.0), (150.0, -1.0)):
        with pytest.raises(StrategyArgumentError):
            ion_image(co, *bad)
    with pytest.raises(StrategyArgumentError):
        ion_image([], 150.0, 1.0)
    with pytest.raises(StrategyArgumentError, match="ImzML"):
        ion_image(CloudObject.from_url("CSV", co.url, storage_options=store.options), 150.0, 1.0)


# -- bad input --------------------------------------------------------------------------------------------


def test_missing_ibd(store, tmp_path):
    pair = write(tmp_path, "n", spectra(5, 3, 3), "processed")
    url = store.put("n.imzML", pair[0])
    with pytest.raises(ObjectNotFoundError, match=r"no \.ibd beside the imzML.*n\.ibd.*n\.IBD"):
        indexed(store, url)
    with pytest.raises(InvalidFormatError, match=r"this is the \.ibd.*\.imzML"):
        indexed(store, store.put("n.ibd", pair[1]))


def test_truncated_ibd(store, tmp_path):
    pair = write(tmp_path, "t", spectra(20, 5, 5), "processed")
    url = put(store, "t", (pair[0], pair[1][:-100]))
    with pytest.raises(InvalidFormatError, match=r"spectrum 19 .*outside the \.ibd's data.*truncated") as info:
        indexed(store, url)
    assert info.value.url == store.url("t.ibd")
    store.put("t.ibd", pair[1][:10])
    with pytest.raises(InvalidFormatError, match="16-byte UUID"):
        indexed(store, url)


def test_uuid_mismatch(store, tmp_path):
    first = write(tmp_path, "a", spectra(10, 4, 4, seed=1), "processed")
    second = write(tmp_path, "b", spectra(10, 4, 4, seed=1), "processed")
    assert first[1][16:] == second[1][16:] and first[1][:16] != second[1][:16]
    url = put(store, "a", (first[0], second[1]))
    with pytest.raises(InvalidFormatError, match="UUID .* differs from .*not one dataset"):
        indexed(store, url)


def test_offset_past_the_ibd_and_unequal_arrays(local_store, tmp_path):
    imzml, ibd = write(tmp_path, "x", spectra(4, 2, 2, peaks=(5, 5)), "processed")
    text = imzml.decode("latin-1")
    last = text.rfind('name="external offset" value="')
    start = last + len('name="external offset" value="')
    end = text.index('"', start)
    past = text[:start] + str(len(ibd) - 8) + text[end:]
    url = put(local_store, "x", (past.encode("latin-1"), ibd))
    with pytest.raises(InvalidFormatError, match=r"spectrum 3 .*intensity array .*outside the \.ibd"):
        indexed(local_store, url)
    length = text.find('name="external array length" value="5"')
    unequal = text[:length] + text[length:].replace('value="5"', 'value="4"', 1)
    put(local_store, "x", (unequal.encode("latin-1"), ibd))
    with pytest.raises(InvalidFormatError, match="spectrum 0: its m/z array has 4 values and its intensity array 5"):
        indexed(local_store, url)


def test_not_imzml_and_compressed(local_store, tmp_path):
    pair = write(tmp_path, "z", spectra(4, 2, 2), "processed")
    url = put(local_store, "z", (b"<mzML><unclosed>", pair[1]))
    with pytest.raises(InvalidFormatError, match="not well-formed XML"):
        indexed(local_store, url)
    put(local_store, "z", (b"<root/>", pair[1]))
    with pytest.raises(InvalidFormatError, match="pyimzml"):
        indexed(local_store, url)
    url = put(local_store, "zc", write(tmp_path, "zc", spectra(4, 2, 2), "processed", intensity_compression=ZlibCompression()))
    with pytest.raises(InvalidFormatError, match="zlib"):
        indexed(local_store, url)
    with pytest.raises(StrategyArgumentError, match="ibd_url"):
        indexed(local_store, url, ibd_path="x")


def test_changed_ibd_is_stale(store, tmp_path):
    pair = write(tmp_path, "s", spectra(30, 6, 6), "processed")
    url = put(store, "s", pair)
    co = indexed(store, url)
    old = co.partition(partition_spectra, 2)
    store.put("s.ibd", pair[1][:-4])
    for strat, arg in ((partition_spectra, 2), (square_split_strategy, 2)):
        with pytest.raises(StaleIndexError, match=r"s\.ibd.*preprocess\(force=True\)"):
            co.partition(strat, arg)
    with pytest.raises(StaleIndexError):
        old[1].get()
    with pytest.raises(StaleIndexError):
        ion_image(co, 150.0, 1.0)
    assert not co.is_preprocessed()  # the .ibd is a companion: the index is stale without it
    store.put("s.ibd", pair[1])
    co.preprocess()
    assert_matches_pyimzml(co.partition(partition_spectra, 2), parser_of(pair, tmp_path))


def test_replaced_imzml_makes_old_slices_stale(store, tmp_path):
    """The slices read only the .ibd, yet carry the .imzML's pixels: a replaced .imzML must fail them too."""
    pair = write(tmp_path, "q", spectra(30, 6, 6, seed=2), "processed")
    url = put(store, "q", pair)
    co = indexed(store, url)
    old = co.partition(partition_spectra, 2)
    store.put("q.imzML", pair[0].replace(b'name="position x" value="1"', b'name="position x" value="7"'))
    for piece in old:
        with pytest.raises(StaleIndexError, match=r"q\.imzML"):
            piece.to_arrow()
        with pytest.raises(StaleIndexError, match=r"q\.imzML"):
            piece.to_arrow(["x", "y"])  # pixels only: no .ibd read, the .imzML still checked
    with pytest.raises(StaleIndexError):
        co.partition(partition_spectra, 2)


def test_corrupt_index_is_refused(local_store, tmp_path):
    co = indexed(local_store, put(local_store, "k", write(tmp_path, "k", spectra(6, 3, 3), "processed")))
    a, tables = co.attributes, dict(co.index().tables)
    ImzML.validate_index("u", a, tables, {}, a.size)
    broken = dict(tables, arrays=tables["arrays"] + np.array([0, 0, a.ibd_size, 0]))
    with pytest.raises(CorruptIndexError, match=r"does not fit the \.ibd"):
        ImzML.validate_index("u", a, broken, {}, a.size)
    with pytest.raises(CorruptIndexError):
        ImzML.validate_index("u", a, {"position": tables["position"][:-1], "arrays": tables["arrays"]}, {}, a.size)
    with pytest.raises(CorruptIndexError, match="missing"):
        ImzML.validate_index("u", a, {"position": tables["position"]}, {}, a.size)


# -- the conformance kit --------------------------------------------------------------------------------


def written_pair(folder: Path, data: list, mode: str, dtypes: tuple) -> dict[str, bytes]:
    """``{"x.imzML": ..., "x.ibd": ...}`` as pyimzml's writer makes them (``mode`` may be "auto": processed,
    with identical m/z arrays written once and shared)."""
    with ImzMLWriter(str(folder / "x"), mode=mode, mz_dtype=dtypes[0], intensity_dtype=dtypes[1]) as writer:
        for mz, intensity, coords in data:
            writer.addSpectrum(mz, intensity.astype(dtypes[1]), coords)
    return {name: (folder / name).read_bytes() for name in ("x.imzML", "x.ibd")}


class TestImzMLConformance(FormatTests):
    format = ImzML
    dump_suffix = ".imzML"

    def samples(self) -> dict[str, dict[str, bytes]]:
        """Continuous and processed, 32- and 64-bit, pixels in random order; spectra without peaks (the first
        and the 78th of processed-32bit); one case on three z planes with one-peak spectra; one processed
        whose identical m/z arrays are stored once and shared (pyimzml's "auto")."""
        rng = np.random.default_rng(19)
        shared = np.sort(rng.uniform(100, 200, 50))
        continuous = [(shared, rng.uniform(0, 1000, 50), coords) for _, _, coords in spectra(120, 12, 12, seed=1)]
        planes = [(mz, intensity, (x, y, 1 + i % 3)) for i, (mz, intensity, (x, y)) in enumerate(spectra(90, 10, 10, seed=2))]
        planes = [(mz[:1], intensity[:1], coords) if i % 4 == 0 else (mz, intensity, coords) for i, (mz, intensity, coords) in enumerate(planes)]
        three = [np.sort(rng.uniform(100, 200, k)) for k in (30, 50, 70)]  # few, so that pyimzml's cache keeps them all
        reused = [(three[i % 3], rng.uniform(0, 1000, three[i % 3].size), coords) for i, (_, _, coords) in enumerate(spectra(80, 9, 9, seed=3))]
        cases = {
            "continuous-32bit": (continuous, "continuous", DTYPES["32bit"]),
            "continuous-64bit": (continuous, "continuous", DTYPES["64bit"]),
            "processed-32bit": (spectra(150, 15, 12, seed=4), "processed", DTYPES["32bit"]),
            "processed-64bit-z": (planes, "processed", DTYPES["64bit"]),
            "processed-shared-mz": (reused, "auto", (np.float64, np.float32)),
        }
        out = {}
        with tempfile.TemporaryDirectory() as tmp:
            for case, (data, mode, dtypes) in cases.items():
                (Path(tmp) / case).mkdir()
                out[case] = written_pair(Path(tmp) / case, data, mode, dtypes)
        out["processed-32bit"]["x.imzML"] = without_peaks(without_peaks(out["processed-32bit"]["x.imzML"], 0), 77)
        return out

    def oracle(self, path: Path) -> list:
        with ImzMLParser(str(path)) as parser:
            return [(x, y, *(a.tolist() for a in parser.getspectrum(i))) for i, (x, y, _) in enumerate(parser.coordinates)]

    def rows(self, table: pa.Table) -> list:
        return list(zip(*(table[c].to_pylist() for c in ("x", "y", "mz", "intensity"))))

    def dump_slice(self, piece: ImzMLSlice, path: Path) -> Path:
        return piece.dump_to(path)

    def large(self, folder: Path) -> tuple[str, int]:
        """31 000 spectra of 200 peaks (64-bit m/z, 32-bit intensities): an .imzML of about 72 MB and an .ibd
        of about 74 MB, both over 64 MiB."""
        rng = np.random.default_rng(64)
        count = 31_000
        with ImzMLWriter(str(folder / "big"), mode="processed", mz_dtype=np.float64, intensity_dtype=np.float32) as writer:
            for i in range(count):
                writer.addSpectrum(np.sort(rng.uniform(100, 1000, 200)), rng.uniform(0, 1, 200).astype(np.float32), (i % 200 + 1, i // 200 + 1))
        assert (folder / "big.ibd").stat().st_size >= 64 * 2**20
        return "big.imzML", count


# -- at default settings, larger than every buffer --------------------------------------------------------


@pytest.fixture(scope="session")
def large_imzml(tmp_path_factory):
    """A processed dataset of about 70 MB of .ibd (64-bit m/z, 32-bit intensities), seeded."""
    folder = tmp_path_factory.mktemp("imzml")
    rng = np.random.default_rng(2024)
    with ImzMLWriter(str(folder / "big"), mode="processed", mz_dtype=np.float64, intensity_dtype=np.float32) as writer:
        for i in range(5800):
            k = int(rng.integers(900, 1100))
            writer.addSpectrum(np.sort(rng.uniform(100, 1000, k)), rng.uniform(0, 1, k).astype(np.float32), (i % 80 + 1, i // 80 + 1))
    assert os.path.getsize(folder / "big.ibd") >= 64 * 2**20
    return folder / "big.imzML"


@pytest.mark.slow
def test_large_at_default_settings(large_imzml):
    co = CloudObject.from_url(ImzML, str(large_imzml)).preprocess()
    parser = ImzMLParser(str(large_imzml))
    assert co.attributes.spectra == 5800 and co.attributes.image == (1, 1, 80, 73)
    assert_matches_pyimzml(co.partition(square_split_strategy, 7), parser)
    image = ion_image(co, 500.0, 0.25)
    assert np.allclose(image, brute_ion_image(parser, 500.0, 0.25, (73, 80)), rtol=1e-12, atol=0)
