"""The conformance kit: the contract every dataplug format keeps, as tests a format's test module subclasses.

Like fsspec's ``fsspec.tests.abstract`` and zarr's ``zarr.testing.store.StoreTests``: a format (built in, or
a third-party plugin) subclasses :class:`FormatTests`, says which format it tests, gives sample objects and an
oracle (its records in order, read by the reference reader), and inherits every check::

    from dataplug.testing import FormatTests

    class TestVCFConformance(FormatTests):
        format = "VCF"
        codecs = ("plain", "gzip", "bgzf", "zstd", "bzip2")
        dump_suffix = ".vcf"

        def samples(self):
            return {"small": {"x.vcf": make_vcf()}}

        def oracle(self, path):
            return [(r.chrom, r.pos) for r in pysam.VariantFile(str(path))]

        def rows(self, table):
            return list(zip(table["CHROM"].to_pylist(), table["POS"].to_pylist()))

The checks (a plugin loads the moto S3 server and the other fixtures with
``pytest_plugins = ["dataplug.testing.fixtures"]``):

- every record exactly once, in order, with ``partition_num_chunks`` for N in 1, 2, 7, 64 and the records
  plus two (on the samples small enough) on local files, and 1 and 7 on S3, and N slices returned;
- each slice's ``num_records`` equal to its ``to_arrow()`` rows, and ``byte_range()`` inside the object;
- ``dump`` read back by the reference reader (:meth:`FormatTests.read_dump`);
- an unknown preprocessing option refused;
- the fault proxy's 503, reset, truncate and stall modes: the records still exact (every mode on the first
  codec, one mode on each other codec);
- fork- and spawn-started process pools, after the parent used the format;
- a replaced object detected as stale, by ``partition`` and by the slices made before;
- an object of at least 64 MiB at default settings (marked ``slow``).
"""

from __future__ import annotations

import functools
import multiprocessing
import tempfile
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
import pytest

from dataplug.cloudobject import CloudObject
from dataplug.errors import StaleIndexError, StrategyArgumentError
from dataplug.storage.handle import clear_shared
from dataplug.testing.codecs import SUFFIXES, encode

__all__ = ["SUFFIXES", "FormatTests", "encode"]

#: Seconds a pool worker may take for one slice before the pool is taken as hung.
POOL_SLICE_TIMEOUT = 120
#: Fault modes of :class:`dataplug.testing.faultproxy.FaultProxy` and the k of "every k-th request".
FAULT_EVERY = {"503": 6, "reset": 3, "truncate": 3, "stall": 6}


@dataclass(frozen=True)
class Sample:
    """One sample object as stored for a test: its URL, options, and its records as the oracle reads them."""

    case: str
    url: str
    storage_options: dict[str, Any]
    expected: list[Any]


def _arrow(piece: Any) -> pa.Table:
    """A pool worker's job: one slice's table (module level, so spawn-started workers find it)."""
    return piece.to_arrow()


def _num_rows(piece: Any) -> int:
    """A pool worker's job on a large object: one slice's row count (its table stays in the worker)."""
    return piece.to_arrow().num_rows


class FormatTests:
    """Subclass per format; set the class attributes and implement :meth:`samples` and :meth:`oracle`."""

    #: The format under test: its class or registered name.
    format: ClassVar[Any]
    #: Codecs the format reads (``"plain"``, ``"gzip"``, ``"bgzf"``, ``"zstd"``, ``"bzip2"``); binary formats
    #: keep ``("plain",)``. Each sample's object is stored under each.
    codecs: ClassVar[tuple[str, ...]] = ("plain",)
    #: Preprocessing options passed to every ``preprocess()``.
    options: ClassVar[dict[str, Any]] = {}
    #: File name suffix of a dumped slice (``".vcf"``, ``".las"``, ``".tif"``).
    dump_suffix: ClassVar[str] = ""
    #: Slice counts every sample is partitioned into, besides its record count plus two.
    slice_counts: ClassVar[tuple[int, ...]] = (1, 2, 7, 64)
    #: Slice counts on S3 (each slice is a request to the moto server there).
    s3_slice_counts: ClassVar[tuple[int, ...]] = (1, 7)
    #: The record count plus two is tried on samples of at most this many records.
    max_slices: ClassVar[int] = 3000

    # -- what a format's tests provide ---------------------------------------------------------------------

    def samples(self) -> dict[str, dict[str, bytes]]:
        """``{case: {file name: bytes}}``: the first file is the object (uncompressed; the kit stores it under
        each codec), any others companions written beside it (an imzML's ``.ibd``). Small, seeded, shaped
        like real data, with the format's awkward cases; at least one small enough for more slices than
        records (:attr:`max_slices`)."""
        raise NotImplementedError

    def oracle(self, path: Path) -> list[Any]:
        """Every record of the uncompressed local file at ``path``, in order, read by the reference reader."""
        raise NotImplementedError

    def rows(self, table: pa.Table) -> list[Any]:
        """``to_arrow()`` rows in the oracle's form."""
        return table.to_pylist()

    def read_dump(self, path: Path) -> list[Any]:
        """Records of a dumped slice's file, read by the reference reader."""
        return self.oracle(path)

    def dump_slice(self, piece: Any, path: Path) -> Path:
        """Write one slice to a file with its ``dump``; return the file the reference reader opens."""
        with open(path, "wb") as fp:
            piece.dump(fp)
        return path

    def large(self, folder: Path) -> tuple[str, int] | None:
        """Write an object of at least 64 MiB (with its companions) in ``folder``; return its file name and
        record count (``None``: no large test)."""
        return None

    # -- machinery ----------------------------------------------------------------------------------------

    def pytest_generate_tests(self, metafunc: Any) -> None:
        if metafunc.function.__name__ == "test_exact_under_faults":
            # Every fault mode on the first codec, and one mode in turn on each other codec: every codec is
            # read under faults, at a quarter of the full product's time (each case takes seconds).
            modes = list(FAULT_EVERY)
            pairs = [(mode, self.codecs[0]) for mode in modes] + [(modes[i % len(modes)], c) for i, c in enumerate(self.codecs[1:], 1)]
            metafunc.parametrize(("mode", "codec"), pairs)
        elif "codec" in metafunc.fixturenames:
            metafunc.parametrize("codec", self.codecs)

    @classmethod
    @functools.cache
    def _prepared(cls) -> dict[str, tuple[dict[str, bytes], list[Any]]]:
        """Each case's files and oracle records, made once per class."""
        tests = cls()
        out = {}
        with tempfile.TemporaryDirectory() as folder:
            for case, files in tests.samples().items():
                for name, data in files.items():
                    (Path(folder) / name).parent.mkdir(parents=True, exist_ok=True)  # a sample may be a folder (a MeasurementSet)
                    (Path(folder) / name).write_bytes(data)
                out[case] = (files, tests.oracle(Path(folder) / next(iter(files))))
        return out

    def _store(self, store: Any, codec: str, prefix: str = "") -> list[Sample]:
        """Every case's files in ``store``, the object under ``codec``."""
        out = []
        for case, (files, expected) in self._prepared().items():
            names = list(files)
            url = ""
            for i, name in enumerate(names):
                data = encode(files[name], codec) if i == 0 else files[name]
                stored = store.put(f"{prefix}{case}/{name}{SUFFIXES[codec] if i == 0 else ''}", data)
                url = url or stored
            out.append(Sample(case, url, dict(store.options), expected))
        return out

    def _open(self, sample: Sample, storage_options: dict[str, Any] | None = None) -> CloudObject:
        options = sample.storage_options if storage_options is None else storage_options
        return CloudObject.from_url(self.format, sample.url, storage_options=options).preprocess(progress=False, **self.options)

    def _check_slices(self, sample: Sample, slices: list[Any], n: int) -> None:
        assert len(slices) == n, f"{sample.case}: partition_num_chunks(co, {n}) gave {len(slices)} slices"
        got = []
        for piece in slices:
            table = piece.to_arrow()
            assert piece.num_records == table.num_rows, f"{sample.case}, {n} slices: slice {piece.number} says {piece.num_records} records, to_arrow() has {table.num_rows}"
            span = piece.byte_range()
            assert span is None or 0 <= span[0] <= span[1], f"{sample.case}: slice {piece.number} byte_range {span}"
            assert span is not None or table.num_rows == 0, f"{sample.case}: slice {piece.number} has records but no byte_range()"
            got += self.rows(table)
        assert len(got) == len(sample.expected), f"{sample.case}, {n} slices: {len(got)} records, the reference reader has {len(sample.expected)}"
        assert got == sample.expected, f"{sample.case}, {n} slices: the records differ from the reference reader's"

    # -- the checks ---------------------------------------------------------------------------------------

    def test_every_record_once(self, store: Any, codec: str) -> None:
        small = store.kind == "local" or None
        for sample in self._store(store, codec):
            co = self._open(sample)
            records = len(sample.expected)
            counts = self.slice_counts if small else self.s3_slice_counts
            if small and records + 2 <= self.max_slices:
                counts = (*counts, records + 2)
            for n in counts:
                self._check_slices(sample, co.partition("partition_num_chunks", n), n)

    def test_some_sample_has_more_slices_than_records(self) -> None:
        assert any(len(expected) + 2 <= self.max_slices for _, expected in self._prepared().values()), (
            f"no sample has at most {self.max_slices - 2} records, so no test asks for more slices than records"
        )

    def test_dump_is_read_back_by_the_reference_reader(self, local_store: Any, codec: str, tmp_path: Path) -> None:
        for sample in self._store(local_store, codec):
            co = self._open(sample)
            for piece in co.partition("partition_num_chunks", 3):
                if piece.num_records == 0:
                    continue
                path = self.dump_slice(piece, tmp_path / f"{sample.case}-{codec}-{piece.number}{self.dump_suffix}")
                assert self.read_dump(path) == self.rows(piece.to_arrow()), f"{sample.case}: slice {piece.number} dumped and read back differs"

    def test_unknown_option_is_refused(self, local_store: Any) -> None:
        sample = self._store(local_store, self.codecs[0])[0]
        co = CloudObject.from_url(self.format, sample.url)
        with pytest.raises(StrategyArgumentError, match="no_such_option"):
            co.preprocess(progress=False, no_such_option=5, **self.options)

    def test_exact_under_faults(self, mode: str, s3_store: Any, fault_proxy: Any, codec: str) -> None:
        from dataplug.testing.fixtures import proxied_options

        sample = self._store(s3_store, codec, prefix=f"{mode}/")[0]
        options = proxied_options(sample.storage_options, fault_proxy)
        fault_proxy.set_mode(mode, every=FAULT_EVERY[mode], first=2)
        co = self._open(sample, options)
        slices = co.partition("partition_num_chunks", 7)
        # Slices read in order in one process share what they fetched (a zstd frame's decoder continues from the
        # last slice), so a small object's slices may make one request in all: forget the partition's handles
        # and fault the reading phase from its first request.
        clear_shared()
        fault_proxy.set_mode(mode, every=FAULT_EVERY[mode], first=1)
        self._check_slices(sample, slices, 7)
        faulted = fault_proxy.faults.get(mode, 0)
        fault_proxy.set_mode(None)
        assert faulted >= 1, f"no {mode} fault was injected while reading {sample.case}"

    @pytest.mark.parametrize("method", ["fork", "spawn"])
    def test_process_pools_after_use(self, method: str, local_store: Any) -> None:
        sample = self._store(local_store, self.codecs[-1])[0]
        slices = self._open(sample).partition("partition_num_chunks", 4)
        expected = [piece.to_arrow() for piece in slices]  # the parent uses the format (and its native pools) first
        pool = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context(method))
        try:
            futures = [pool.submit(_arrow, piece) for piece in slices]
            for piece, future, want in zip(slices, futures, expected):
                try:
                    got = future.result(timeout=POOL_SLICE_TIMEOUT)
                except FutureTimeout:
                    for process in list(getattr(pool, "_processes", {}).values()):
                        process.kill()
                    pytest.fail(f"{method} pool: slice {piece.number} of {sample.case} did not finish in {POOL_SLICE_TIMEOUT} s")
                assert got.equals(want), f"{method} pool: slice {piece.number} of {sample.case} differs from the parent's"
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def test_replaced_object_is_stale(self, store: Any) -> None:
        sample = self._store(store, self.codecs[0], prefix="stale/")[0]
        co = self._open(sample)
        before = co.partition("partition_num_chunks", 2)
        path = sample.url[len(store.root) + 1 :]
        original = _read(sample.url, sample.storage_options)
        store.put(path, original + b"\n" * 7)
        with pytest.raises(StaleIndexError):
            co.partition("partition_num_chunks", 2)
        with pytest.raises(StaleIndexError):
            CloudObject.from_url(self.format, sample.url, storage_options=sample.storage_options).partition("partition_num_chunks", 2)
        with pytest.raises(StaleIndexError):
            before[0].to_arrow()

    @pytest.mark.slow
    def test_large_object_at_default_settings(self, tmp_path: Path) -> None:
        made = self.large(tmp_path)
        if made is None:
            pytest.skip(f"{type(self).__name__} has no large sample")
        name, records = made
        path = tmp_path / name
        stored = sum(p.stat().st_size for p in tmp_path.rglob("*") if p.is_file())  # the object and its companions
        assert stored >= 64 * 2**20, f"the large sample is {stored} bytes, under 64 MiB"
        co = CloudObject.from_url(self.format, str(path)).preprocess(progress=False, **self.options)
        slices = co.partition("partition_num_chunks", 16)
        assert sum(piece.num_records for piece in slices) == records
        with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
            rows = sum(pool.map(_num_rows, slices, timeout=600))
        assert rows == records


def _read(url: str, storage_options: dict[str, Any]) -> bytes:
    import fsspec

    with fsspec.open(url, "rb", **storage_options) as fh:
        return fh.read()
