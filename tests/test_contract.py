"""The contract itself: the conformance kit run on a third-party format defined here (as a plugin would be),
options that differ from the index's, unknown options, and the shared warning base class."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pytest

from dataplug import CloudObject
from dataplug.errors import InvalidFormatError, StrategyArgumentError
from dataplug.format import DataFormat, IndexData, PreprocessContext, register_format
from dataplug.slice import CloudObjectSlice
from dataplug.strategies import even_bounds, positive_int, strategy
from dataplug.testing import FormatTests


@dataclass(frozen=True)
class FixedAttributes:
    records: int
    width: int


@register_format
class FixedRecords(DataFormat):
    """A third-party format as a plugin writes one: records of ``width`` bytes each."""

    Attributes = FixedAttributes
    options = {"width": "record width in bytes (default 16)"}

    @classmethod
    def preprocess(cls, ctx: PreprocessContext) -> IndexData:
        width = int(ctx.options.get("width", 16))
        if ctx.info.size % width:
            raise InvalidFormatError(ctx.obj.url, f"{ctx.info.size} bytes are not whole {width}-byte records")
        return IndexData(FixedAttributes(ctx.info.size // width, width))


@dataclass
class FixedSlice(CloudObjectSlice):
    first: int = 0
    stop: int = 0
    width: int = 16
    binary_output = True

    @property
    def num_records(self) -> int:
        return self.stop - self.first

    def byte_range(self) -> tuple[int, int] | None:
        return (self.first * self.width, self.stop * self.width) if self.stop > self.first else None

    def get(self) -> bytes:
        span = self.byte_range()
        return self.obj.read_range(*span, expect=self.object_info) if span else b""

    def dump(self, fp: BinaryIO) -> None:
        fp.write(self.get())

    def schema(self) -> pa.Schema:
        return pa.schema([("record", pa.binary())])

    def to_arrow(self, columns: list[str] | None = None) -> pa.Table:
        data = self.get()
        records = [data[i : i + self.width] for i in range(0, len(data), self.width)]
        return pa.table({"record": pa.array(records, pa.binary())})


@strategy(FixedRecords)
def partition_num_chunks(co: Any, num_chunks: int) -> list[FixedSlice]:
    n = positive_int(co.url, "num_chunks", num_chunks)
    a = co.attributes
    bounds = even_bounds(a.records, n).tolist()
    info = co.index().object_info
    return [FixedSlice(co.obj, info, i, lo, hi, a.width) for i, (lo, hi) in enumerate(zip(bounds, bounds[1:]))]


def _records(data: bytes, width: int = 16) -> list[bytes]:
    return [data[i : i + width] for i in range(0, len(data), width)]


class TestPluginConformance(FormatTests):
    """The kit, run on the plugin above: what a third-party format's test module looks like."""

    format = FixedRecords
    dump_suffix = ".bin"

    def samples(self) -> dict[str, dict[str, bytes]]:
        rng = np.random.default_rng(5)
        return {"tiny": {"t.rec": rng.bytes(16 * 5)}, "many": {"m.rec": rng.bytes(16 * 4000)}}

    def oracle(self, path: Path) -> list[Any]:
        return _records(path.read_bytes())

    def rows(self, table: pa.Table) -> list[Any]:
        return table.column("record").to_pylist()

    def large(self, folder: Path) -> tuple[str, int]:
        (folder / "big.rec").write_bytes(np.random.default_rng(1).bytes(64 * 2**20))
        return "big.rec", 64 * 2**20 // 16


def test_the_kit_catches_a_record_read_twice(local_store):
    kit = TestPluginConformance()
    sample = kit._store(local_store, "plain")[1]
    slices = kit._open(sample).partition("partition_num_chunks", 3)
    slices[1] = dataclasses.replace(slices[1], first=slices[1].first - 1)
    with pytest.raises(AssertionError, match="4001 records"):
        kit._check_slices(sample, slices, 3)


def test_the_kit_catches_a_count_that_differs_from_the_rows(local_store, monkeypatch):
    kit = TestPluginConformance()
    sample = kit._store(local_store, "plain")[1]
    slices = kit._open(sample).partition("partition_num_chunks", 3)
    monkeypatch.setattr(FixedSlice, "num_records", property(lambda s: s.stop - s.first + 1))
    with pytest.raises(AssertionError, match="says 1334 records"):
        kit._check_slices(sample, slices, 3)


# -- options: one meaning whether or not an index exists -------------------------------------------------


def _csv(path: Path) -> str:
    path.write_text("a,b\n1,x\n2,y\n3,z\n")
    return str(path)


def test_an_option_that_differs_from_the_index_rebuilds_it(tmp_path):
    """Wrong result 3 of issue 19: ``preprocess(header=False)`` on an indexed CSV kept ``has_header=True``
    and lost a row."""
    url = _csv(tmp_path / "t.csv")
    co = CloudObject.from_url("CSV", url).preprocess(progress=False)
    assert co.built_index and co.attributes.has_header
    assert sum(s.num_records for s in co.partition("partition_num_chunks", 2)) == 3
    co = CloudObject.from_url("CSV", url).preprocess(progress=False, header=False)
    assert co.built_index and not co.attributes.has_header
    assert co.index_options["header"] is False
    assert sum(s.to_arrow().num_rows for s in co.partition("partition_num_chunks", 2)) == 4
    again = CloudObject.from_url("CSV", url).preprocess(progress=False, header=False)
    assert not again.built_index
    assert not CloudObject.from_url("CSV", url).preprocess(progress=False).built_index  # not given: the index's own


def test_extra_args_are_options_too(tmp_path):
    url = _csv(tmp_path / "t.csv")
    CloudObject.from_url("CSV", url).preprocess(progress=False)
    co = CloudObject.from_url("CSV", url).preprocess(extra_args={"header": False}, progress=False)
    assert co.built_index and not co.attributes.has_header


def test_unknown_options_are_refused_by_formats_that_declare_none(tmp_path):
    """COPC and COG accepted ``blockz=5`` silently."""
    copc = str(Path(__file__).parent / "data" / "simple.copc.laz")
    with pytest.raises(StrategyArgumentError, match="blockz"):
        CloudObject.from_url("COPC", copc, index_location=str(tmp_path)).preprocess(progress=False, blockz=5)
    tifffile = pytest.importorskip("tifffile")
    tif = tmp_path / "t.tif"
    tifffile.imwrite(tif, np.zeros((64, 64), np.uint8), tile=(32, 32))
    with pytest.raises(StrategyArgumentError, match="blockz"):
        CloudObject.from_url("COG", str(tif)).preprocess(progress=False, blockz=5)


# -- one surface ----------------------------------------------------------------------------------------


def _dataplug_modules() -> list[Any]:
    import importlib
    import pkgutil

    import dataplug

    skip = ("dataplug.integrations.", "dataplug.demo", "dataplug.testing.fixtures")
    names = [m.name for m in pkgutil.walk_packages(dataplug.__path__, "dataplug.") if not m.name.startswith(skip)]
    return [importlib.import_module(name) for name in names]


def test_every_warning_is_a_dataplug_warning():
    from dataplug.errors import DataplugWarning

    found = {
        f"{value.__module__}.{value.__name__}": value
        for module in _dataplug_modules()
        for value in vars(module).values()
        if isinstance(value, type) and issubclass(value, Warning) and value.__module__.startswith("dataplug")
    }
    assert found
    outside = sorted(name for name, cls in found.items() if not issubclass(cls, DataplugWarning))
    assert not outside, f"warnings outside DataplugWarning: {outside}"


def test_every_format_is_importable_under_its_name():
    """``from dataplug.formats.geospatial.copc import COPC`` as the README writes it, for every format."""
    import importlib

    from dataplug.format import _BUILTIN

    missing = [f"{target.split(':')[0]}.{name}" for name, target in _BUILTIN.items() if not hasattr(importlib.import_module(target.split(":")[0]), name)]
    assert not missing, f"not importable under their names: {missing}"


def test_every_format_has_partition_num_chunks():
    from dataplug.format import _BUILTIN, get_format

    lacking = [name for name in _BUILTIN if "partition_num_chunks" not in get_format(name).all_strategies()]
    assert not lacking, f"formats without partition_num_chunks: {lacking}"


def test_detection_asks_every_format_plugins_included():
    """Detection is a loop over the formats' ``sniff`` hooks; a plugin's hook is asked like a built-in's."""
    from dataplug.detect import sniff, sniffers
    from dataplug.format import _REGISTRY, Sample

    @register_format
    class Tagged(DataFormat):
        """A plugin format whose objects start with ``TAGGED1``."""

        sniff_priority = 50

        @classmethod
        def sniff(cls, sample: Sample):
            return cls.detected(sample, "starts with 'TAGGED1'") if sample.raw.startswith(b"TAGGED1") else None

    try:
        assert Tagged in sniffers()
        assert sniff("x", b"TAGGED1 and more\n").format == "Tagged"
        assert sniff("x", b"a,b\n1,2\n", complete=True).format == "CSV"
        names = [f.name for f in sniffers()]
        assert names.index("COPC") < names.index("LiDARPointCloud") and names[-1] == "UTF8Text"
    finally:
        _REGISTRY.pop("Tagged", None)  # the registry is process-wide: other tests detect without it


def test_partition_reads_no_data_even_where_counts_need_a_read(tmp_path):
    """A LAS cell counts its points by reading them; partitioning (and its empty-slice check) must not."""
    laspy = pytest.importorskip("laspy")
    from dataplug.storage.object import read_stats

    las = laspy.LasData(laspy.LasHeader(point_format=6, version="1.4"))
    rng = np.random.default_rng(2)
    las.x, las.y, las.z = rng.uniform(0, 100, 5000), rng.uniform(0, 100, 5000), rng.uniform(0, 10, 5000)
    path = tmp_path / "c.las"
    las.write(str(path))
    co = CloudObject.from_url("LiDARPointCloud", str(path)).preprocess(progress=False)
    read_stats.reset()
    cells = co.partition("square_split_strategy", 9)
    assert not read_stats.bytes.get(co.url), "partition read the object's points"
    assert [c.known_num_records for c in cells] == [None] * 9
    assert sum(c.num_records for c in cells) == 5000  # counting reads, once
    assert [c.known_num_records for c in cells] == [c.num_records for c in cells]


def test_vcf_regions_partition_without_reading_records(tmp_path):
    """Region slices count their edge blocks by reading them; partitioning must not read them."""
    from dataplug.storage.object import read_stats

    lines = ["##fileformat=VCFv4.2", "##contig=<ID=chr1>", "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
    lines += [f"chr1\t{p}\t.\tA\tC\t50\tPASS\t." for p in range(1, 60001, 3)]
    path = tmp_path / "v.vcf"
    path.write_text("\n".join(lines) + "\n")
    co = CloudObject.from_url("VCF", str(path)).preprocess(progress=False, sample_bytes=4096)
    read_stats.reset()
    slices = co.partition("partition_regions", ["chr1:1000-2000", "chr1:30001-40000"])
    assert not read_stats.bytes.get(co.url), "partition read records"
    expected = [sum(1 for p in range(1, 60001, 3) if a <= p <= b) for a, b in ((1000, 2000), (30001, 40000))]
    assert [s.num_records for s in slices] == expected == [s.to_arrow().num_rows for s in slices]


def test_a_region_on_an_unknown_chromosome_is_refused(tmp_path):
    """``chr1:1-2;chrX:1-5`` silently gave 0 records; htslib refuses a sequence it does not know."""
    lines = ["##fileformat=VCFv4.2", "##contig=<ID=chr1>", "##contig=<ID=chr2>", "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
    lines += [f"chr1\t{p}\t.\tA\tC\t50\tPASS\t." for p in range(1, 300)]
    path = tmp_path / "v.vcf"
    path.write_text("\n".join(lines) + "\n")
    co = CloudObject.from_url("VCF", str(path)).preprocess(progress=False)
    with pytest.raises(StrategyArgumentError, match=r"no chromosome 'chr1:1-2;chrX' .*it has chr1"):
        co.partition("partition_regions", ["chr1:1-2;chrX:1-5"])
    assert [s.num_records for s in co.partition("partition_regions", ["chr2:1-5", "chr1:1-2"])] == [0, 2]  # declared, no records


def test_a_plugin_whose_sniff_fails_does_not_stop_detection():
    from dataplug.detect import sniff
    from dataplug.errors import FormatDetectionWarning
    from dataplug.format import _REGISTRY, Sample

    @register_format
    class Broken(DataFormat):
        """A plugin whose detection hook raises."""

        sniff_priority = 60

        @classmethod
        def sniff(cls, sample: Sample):
            raise IndexError("broken hook")

    try:
        with pytest.warns(FormatDetectionWarning, match="Broken"):
            assert sniff("x", b"a,b\n1,2\n", complete=True).format == "CSV"
    finally:
        _REGISTRY.pop("Broken", None)
