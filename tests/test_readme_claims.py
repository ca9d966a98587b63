"""README promises that no other test checks, and the README's ties to its tests: every test the README cites
exists, the codec table and the Guarantees table claim only what the conformance classes run, and the formats
table names each format's strategies."""

from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.util
import io
import json
import multiprocessing
import re
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import dataplug
from dataplug import CloudObject, CorruptIndexError, InvalidFormatError
from dataplug.testing import FormatTests

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
KIT_CODECS = ("plain", "gzip", "bgzf", "zstd", "bzip2")


# -- the README's citations and tables --------------------------------------------------------------------


def _defined(path: Path) -> set[str]:
    """``name`` and ``Class::method`` for every test function and class a test module defines."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names.add(node.name)
            names |= {f"{node.name}::{item.name}" for item in node.body if isinstance(item, ast.FunctionDef)}
    return names


def test_every_test_the_readme_cites_exists():
    cited = re.findall(r"`?(tests/\w+\.py)::([\w:]+)`?", README)
    assert len(cited) > 50, "the README cites its tests"
    missing = sorted(f"{file}::{name}" for file, name in cited if not (ROOT / file).exists() or name not in _defined(ROOT / file))
    assert not missing, f"the README cites tests that do not exist: {missing}"
    kit = re.findall(r"FormatTests\.(\w+)", README)
    assert kit and not [name for name in kit if not callable(getattr(FormatTests, name, None))], f"unknown kit checks: {kit}"


def _table(heading: str) -> list[list[str]]:
    """The cells of the first Markdown table after ``heading``."""
    after = README.split(heading, 1)[1]
    rows = [line for line in after.splitlines() if line.startswith("|")]
    first = after.index(rows[0])
    block = after[first:].split("\n\n", 1)[0].splitlines()
    return [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in block if not set(line) <= set("|-: ")]


def conformance_classes() -> dict[str, type]:
    """Every ``Test*Conformance`` class of the test modules, by the name of the format it tests."""
    from dataplug.format import get_format

    found: dict[str, type] = {}
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        if path.name == Path(__file__).name or "FormatTests" not in path.read_text():
            continue
        try:
            module = importlib.import_module(f"tests.{path.stem}")
        except pytest.skip.Exception:
            continue
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, FormatTests) and value is not FormatTests and value.__module__ == module.__name__:
                fmt = value.format if isinstance(value.format, type) else get_format(value.format)
                found[fmt.name] = value
    return found


def _format_name(cell: str) -> str:
    return re.findall(r"`(\w+)`", cell)[0]


def test_the_codec_table_ticks_only_codecs_the_conformance_classes_run():
    rows = _table("**Record formats × byte sources.**")
    header = rows[0]
    columns = {}
    for k, cell in enumerate(header):
        word = cell.split()[0] if cell else ""
        if word in ("plain", "gzip", "zstd", "bzip2") or (word == "BGZF" and cell == "BGZF"):
            columns[k] = word.lower()
    assert sorted(columns.values()) == sorted(KIT_CODECS)
    classes = conformance_classes()
    unchecked = []
    for row in rows[1:]:
        if not row[0].startswith("`"):
            continue
        name = _format_name(row[0])
        runs = classes[name].codecs if name in classes else ()
        unchecked += [f"{name} over {codec}" for k, codec in columns.items() if row[k] == "✓" and codec not in runs]
    assert not unchecked, f"ticked in the codec table, but no conformance class runs them: {unchecked}"


#: The kit check behind each column of the Guarantees table.
GUARANTEE_CHECKS = {
    "exact": "test_every_record_once",
    "`num_records`": "test_every_record_once",
    "`dump`": "test_dump_is_read_back_by_the_reference_reader",
    "faults": "test_exact_under_faults",
    "fork": "test_process_pools_after_use",
    "spawn": "test_process_pools_after_use",
    "stale": "test_replaced_object_is_stale",
    "64 mib": "test_large_object_at_default_settings",
}


def test_the_guarantees_table_claims_only_what_the_kit_runs():
    """Each tick of the Guarantees table is a kit check that the format's conformance class runs as the kit
    wrote it (not overridden, not marked skip or xfail); a tick under "64 MiB" needs the class's ``large()``."""
    rows = _table("## Guarantees")
    header = [cell.lower() for cell in rows[0]]
    assert set(header[1:]) == set(GUARANTEE_CHECKS), header
    classes = conformance_classes()
    lacking = []
    for row in rows[1:]:
        name = _format_name(row[0])
        ticked = [header[k] for k, cell in enumerate(row) if k and cell.startswith("✓")]
        if not ticked:
            continue
        cls = classes.get(name)
        if cls is None:
            lacking.append(f"{name}: no conformance class")
            continue
        marks = {mark.name for mark in getattr(cls, "pytestmark", [])}
        if marks & {"skip", "skipif", "xfail"}:
            lacking.append(f"{name}: the class is marked {sorted(marks)}")
        for column in ticked:
            check = GUARANTEE_CHECKS[column]
            if getattr(cls, check) is not getattr(FormatTests, check):
                lacking.append(f"{name}: {check} is overridden")
        if "64 mib" in ticked and cls.large is FormatTests.large:
            lacking.append(f"{name}: no large() sample")
    assert len(rows) >= 10 and not lacking, lacking


def test_the_formats_table_names_each_formats_strategies():
    """Both ways: every strategy the table names exists for its format, and every strategy is named."""
    from dataplug.format import get_format

    wrong = []
    for row in _table("### Formats")[1:]:
        names = re.findall(r"`(\w+)`", row[0])
        strategies = set(re.findall(r"`(\w+)\(co\b", row[2]))
        strategies = {s for s in strategies if s.startswith("partition_") or "_strategy" in s}
        for name in names:
            has = set(get_format(name).all_strategies())
            wrong += [f"{name} has no {s}" for s in sorted(strategies - has)]
            wrong += [f"the table leaves out {name}'s {s}" for s in sorted(has - strategies)]
    assert not wrong, wrong


# -- format detection ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("delimiter", [";", "|", "\t", ","])
def test_detection_finds_the_delimiter_and_passes_it_on(local_store, delimiter):
    rows = [["id", "name", "value"]] + [[str(i), f"name {i}", f"{i * 0.5}"] for i in range(50)]
    url = local_store.put("d.data", "".join(delimiter.join(r) + "\n" for r in rows).encode())
    co = CloudObject.from_url(url)
    assert co.format.name == "CSV" and dict(co.detection.options) == ({} if delimiter == "," else {"delimiter": delimiter})
    co.preprocess(progress=False)
    table = pa.concat_tables([s.to_arrow() for s in co.partition("partition_num_chunks", 3)])
    assert table.column_names == ["id", "name", "value"] and table.num_rows == 50


def test_hdf5_is_named():
    from dataplug.detect import sniff

    with pytest.raises(InvalidFormatError, match="HDF5"):
        sniff("x.h5", b"\x89HDF\r\n\x1a\n" + bytes(200))


# -- preprocess ---------------------------------------------------------------------------------------------


def _csv(rows: int = 20_000) -> bytes:
    return ("id,station,temp\n" + "".join(f"{i},s{i % 13},{i * 0.25}\n" for i in range(rows))).encode()


def test_the_progress_bar_counts_bytes_and_is_switched(local_store, capsys, monkeypatch):
    url = local_store.put("d.csv", _csv())
    CloudObject.from_url("CSV", url).preprocess(progress=True, chunk_size=64 * 1024)
    err = capsys.readouterr().err
    assert "B/s" in err, err[-500:]
    CloudObject.from_url("CSV", url).preprocess(force=True, progress=False, chunk_size=64 * 1024)
    CloudObject.from_url("CSV", url).preprocess(force=True, chunk_size=64 * 1024)  # not a terminal: no bar
    assert capsys.readouterr().err == ""
    monkeypatch.setitem(sys.modules, "ipykernel", sys)  # in a notebook (or on a terminal) a bar by default
    CloudObject.from_url("CSV", url).preprocess(force=True, chunk_size=64 * 1024)
    assert "B/s" in capsys.readouterr().err


def test_preprocess_on_a_multiprocessing_pool_matches_the_default(local_store):
    import numpy as np

    url = local_store.put("d.csv", _csv())
    default = CloudObject.from_url("CSV", url).preprocess(progress=False, chunk_size=32 * 1024)
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        pooled = CloudObject.from_url("CSV", url, index_location=local_store.url("pooled"))
        pooled.preprocess(progress=False, chunk_size=32 * 1024, executor=pool)
    assert pooled.attributes == default.attributes
    for name, table in default.index().tables.items():
        assert np.array_equal(pooled.index().tables[name], table)


# -- to_reader ----------------------------------------------------------------------------------------------


class _CountedSlice:
    """A slice stand-in that records when its table is made."""

    started: list[int] = []
    lock = threading.Lock()

    def __init__(self, number: int) -> None:
        self.number = number
        self.url = f"counted-{number}"

    def schema(self) -> pa.Schema:
        return pa.schema([("n", pa.int64())])

    def to_arrow(self, columns: list[str] | None = None) -> pa.Table:
        with self.lock:
            self.started.append(self.number)
        return pa.table({"n": pa.array([self.number], pa.int64())})


@pytest.mark.parametrize("prefetch", [1, 2, 4])
def test_to_reader_reads_at_most_prefetch_slices_ahead(prefetch):
    from dataplug.arrow import to_reader

    _CountedSlice.started = []
    reader = to_reader([_CountedSlice(k) for k in range(20)], prefetch=prefetch)
    seen = []
    for k in range(20):
        seen.append(reader.read_next_batch().column("n")[0].as_py())
        time.sleep(0.01)  # let the threads run ahead as far as they may
        assert len(_CountedSlice.started) <= k + 1 + prefetch, (k, _CountedSlice.started)
    assert seen == list(range(20))


# -- errors -------------------------------------------------------------------------------------------------


def test_every_error_is_a_dataplug_error():
    import pkgutil

    skip = ("dataplug.integrations.", "dataplug.demo", "dataplug.testing.")
    modules = [importlib.import_module(m.name) for m in pkgutil.walk_packages(dataplug.__path__, "dataplug.") if not m.name.startswith(skip)]
    raised = {
        f"{value.__module__}.{value.__name__}"
        for module in modules
        for value in vars(module).values()
        if isinstance(value, type) and issubclass(value, Exception) and not issubclass(value, Warning) and value.__module__.startswith("dataplug")
    }
    # Raised and caught inside a layer (the storage layer's are retried, then a StaleIndexError or StorageError): private names.
    internal = {name for name in raised if name.rsplit(".", 1)[1].startswith("_")}
    outside = sorted(name for name in raised - internal if not issubclass(_resolve(name), dataplug.DataplugError))
    assert raised and not outside, f"errors outside DataplugError: {outside}"


def _resolve(name: str) -> type:
    module, _, attr = name.rpartition(".")
    return getattr(importlib.import_module(module), attr)


def test_ignored_s3_config_keys_warn():
    from dataplug.cloudobject import s3_config_to_storage_options

    for key in ("role_arn", "token_duration_seconds"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert key not in str(s3_config_to_storage_options({"region_name": "r", key: "x"}))
        assert any(key in str(w.message) for w in caught), key


def test_parallel_config_is_ignored_with_a_warning(local_store):
    co = CloudObject.from_url("CSV", local_store.put("d.csv", _csv(100)))
    with pytest.warns(UserWarning, match="parallel_config"):
        co.preprocess(progress=False, parallel_config={"workers": 8})
    assert co.attributes.rows == 100


# -- a crafted index ----------------------------------------------------------------------------------------


def test_a_moved_anchor_at_a_slice_end_is_a_corrupt_index(local_store):
    """An index with recomputed checksums whose anchors no longer sit on record starts: slices raise
    ``CorruptIndexError`` rather than return records cut in the middle of a line."""
    import numpy as np

    text = "".join(f"line {i} with some words\n" for i in range(3000)).encode()
    url = local_store.put("t.txt", text)
    co = CloudObject.from_url("UTF8Text", url).preprocess(progress=False, sample_bytes=1024)
    from dataplug.testing.sidecar import load_table, npy, read_manifest, resign

    offsets = load_table(co.index_location, read_manifest(co.index_location), "offsets")
    offsets[1:-1] += 3  # still monotonic and inside the object, but inside lines
    resign(co.index_location, "tables", "offsets", npy(offsets))
    slices = CloudObject.from_url("UTF8Text", url).partition("partition_num_chunks", 4)
    with pytest.raises(CorruptIndexError, match="records where the index expects"):
        for piece in slices:
            piece.get()


# -- the demo -----------------------------------------------------------------------------------------------


def test_the_demo_checks_its_results_against_plain_reads_and_draws_each_partition(tmp_path):
    """``python -m dataplug.demo``, small: it exits 1 when a slice result differs from the plain read."""
    pytest.importorskip("matplotlib", reason="the plot extra draws the pictures")
    plots = tmp_path / "plots"
    argv = ["--size-mb", "2", "--fastq-mb", "2", "--lidar-points", "30000", "--slices", "4", "--workers", "2", "--plots", str(plots), "--dir", str(tmp_path)]
    done = subprocess.run([sys.executable, "-m", "dataplug.demo", *argv], capture_output=True, text=True, timeout=500)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    pictures = sorted(p.name for p in plots.glob("*.png"))
    assert len(pictures) == (3 if importlib.util.find_spec("laspy") else 2), pictures


# -- the slice surface, for every format the kit runs ---------------------------------------------------------


def _kit_classes() -> list[type]:
    """Every conformance class: the built-in formats' and the plugin format's of ``tests/test_contract.py``."""
    return sorted(conformance_classes().values(), key=lambda cls: cls.__name__)


@pytest.mark.parametrize("kit", _kit_classes(), ids=lambda cls: cls.__name__)
def test_every_slice_offers_the_arrow_surface(kit, local_store):
    """``schema()`` is the schema of ``to_arrow()``, ``to_pandas()`` has the slice's records, and
    ``to_arrow(columns=[...])`` gives those columns, for each slice of each format's first sample."""
    tests = kit()
    sample = tests._store(local_store, kit.codecs[0])[0]
    slices = tests._open(sample).partition("partition_num_chunks", 3)
    assert len(slices) == 3
    for piece in slices:
        table = piece.to_arrow()
        assert piece.schema() == table.schema, f"{kit.__name__}: slice {piece.number}: schema() differs from to_arrow()'s"
        assert len(piece.to_pandas()) == piece.num_records == table.num_rows
        first = table.schema.names[:1]
        assert piece.to_arrow(columns=first).column_names == first


# -- smaller promises ---------------------------------------------------------------------------------------


def test_bare_cr_line_breaks_are_records(local_store):
    data = b"a,b\r1,x\r2,\"y\rz\"\r3,w\r"
    co = CloudObject.from_url("CSV", local_store.put("cr.csv", data)).preprocess(progress=False, chunk_size=3)
    for n in (1, 2, 5):
        table = pa.concat_tables([s.to_arrow() for s in co.partition("partition_num_chunks", n)])
        assert table.column("a").to_pylist() == [1, 2, 3] and table.column("b").to_pylist() == ["x", "y\rz", "w"]


def test_an_index_in_the_old_shared_layout_is_not_read(local_store):
    """An index written straight into ``L/<Format>/`` (the layout before per-object folders) is no index."""
    url = local_store.put("d.csv", _csv(100))
    co = CloudObject.from_url("CSV", url, index_location=local_store.url("idx")).preprocess(progress=False)
    folder = co.index_location
    old = dataplug.storage.object.StorageObject(local_store.url("idx") + "/CSV")
    for name in folder.list_names():
        old.child(name).write_bytes(folder.child(name).read_all())
    co.clean()
    again = CloudObject.from_url("CSV", url, index_location=local_store.url("idx"))
    assert not again.is_preprocessed()


def test_pictures_read_no_object_byte(local_store, tmp_path):
    pytest.importorskip("matplotlib", reason="the plot extra draws the pictures")
    from dataplug.storage.object import read_stats

    objects = {"d.csv": (_csv(), "partition_num_chunks", 6)}
    if importlib.util.find_spec("laspy") and importlib.util.find_spec("lazrs"):
        from dataplug.synthetic import scan_ordered_cloud, write_cloud

        write_cloud(scan_ordered_cloud(20_000, seed=3), tmp_path / "tile.laz")
        objects["tile.laz"] = ((tmp_path / "tile.laz").read_bytes(), "square_split_strategy", 9)
        objects["simple.copc.laz"] = ((ROOT / "tests" / "data" / "simple.copc.laz").read_bytes(), "square_split_strategy", 4)
    for name, (data, strategy, n) in objects.items():
        co = dataplug.open(local_store.put(name, data))
        slices = co.partition(strategy, n)
        read_stats.reset()
        out = co.plot_partition(slices, str(tmp_path / f"{name}.png"))
        assert Path(out).read_bytes().startswith(b"\x89PNG")
        assert read_stats.bytes.get(co.url, 0) == 0, f"{name}: the picture read {read_stats.bytes[co.url]} bytes of the object"


def test_the_original_names_partitioningstrategy_and_cloudobjectslice_work(local_store):
    from dataclasses import dataclass

    from dataplug import CloudObjectSlice, PartitioningStrategy
    from dataplug.formats.generic.text import UTF8Text

    @dataclass
    class Whole(CloudObjectSlice):
        def get(self) -> bytes:
            return self.obj.read_range(0, self.object_info.size, expect=self.object_info)

    @PartitioningStrategy(UTF8Text)
    def whole(co: Any) -> list[Whole]:
        return [Whole(co.obj, co.index().object_info, 0)]

    co = CloudObject.from_url(UTF8Text, local_store.put("t.txt", b"a\nb\n")).preprocess(progress=False)
    (only,) = co.partition(whole)
    assert only.get() == b"a\nb\n"


CI_ONLY = ("dask", "distributed", "lithops", "ray", "copclib", "pysam", "rasterio", "indexed_gzip", "rapidgzip", "duckdb", "polars")

_COLLECT_WITHOUT = """
import importlib.abc, sys
BLOCKED = set(sys.argv[1].split(","))

class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Blocked())
import pytest
sys.exit(pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", "-rs", "tests"]))
"""


@pytest.mark.slow
def test_the_light_test_set_collects_without_the_ci_tools():
    """With the modules only the ci extra installs made unimportable, every test module still collects: the
    ones that need them skip, naming the module."""
    done = subprocess.run([sys.executable, "-c", _COLLECT_WITHOUT, ",".join(CI_ONLY)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "error" not in done.stdout.splitlines()[-1].lower(), done.stdout[-4000:]


def test_fasta_and_vcf_slices_get_str(local_store):
    fasta = CloudObject.from_url("FASTA", local_store.put("g.fa", b">a one\nACGT\nAC\n>b\nGG\n")).preprocess(progress=False)
    vcf_text = "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n" + "".join(f"chr1\t{i}\t.\tA\tC\t.\t.\t.\n" for i in range(1, 9))
    vcf = CloudObject.from_url("VCF", local_store.put("v.vcf", vcf_text.encode())).preprocess(progress=False)
    for co, strategy in ((fasta, "partition_num_sequences"), (vcf, "partition_num_chunks")):
        got = [piece.get() for piece in co.partition(strategy, 2)]
        assert all(isinstance(text, str) for text in got), [type(text) for text in got]
