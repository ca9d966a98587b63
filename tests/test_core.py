"""The foundation: sidecar safety, stale detection, errors, index locations, plugins, slices."""

from __future__ import annotations

import base64
import io
import json
import os
import pickle
import threading
import warnings

import fsspec
import numpy as np
import pyarrow as pa
import pytest

import dataplug
import dataplug.sidecar
from dataplug import (
    CloudObject,
    CorruptIndexError,
    DataFormat,
    IndexLocationNotWritableError,
    IndexMissingError,
    ObjectNotFoundError,
    StaleIndexError,
    StrategyArgumentError,
    register_format,
    strategy,
)
from dataplug.cloudobject import s3_config_to_storage_options
from dataplug.format import IndexData
from dataplug.formats.generic.csv import CSV, partition_num_chunks, partition_rows
from dataplug.formats.generic.text import UTF8Text
from dataplug.formats.generic.text import partition_num_chunks as text_chunks
from dataplug.slice import CloudObjectSlice
from dataplug.storage.object import read_stats

from .conftest import make_bucket

CSV_DATA = b"id,text\n" + b"".join(b'%d,"row %d, with\nnewline"\n' % (i, i) for i in range(2000))


def sidecar_files(co: CloudObject) -> dict[str, bytes]:
    loc = co.index_location
    loc.fs.invalidate_cache()
    return {name: loc.child(name).read_all() for name in loc.list_names()}


def _tables(manifest: dict, files: dict[str, bytes]) -> dict[str, bytes]:
    """The bytes of each table of a manifest, inline or in its file."""
    return {name: base64.b64decode(e["data"]) if "data" in e else files[e["file"]] for name, e in manifest["tables"].items()}


@pytest.mark.parametrize("inline", [True, False], ids=["inline", "files"])
def test_sidecar_is_json_and_plain_npy_no_pickle(store, inline, monkeypatch):
    if not inline:
        monkeypatch.setattr(dataplug.sidecar, "INLINE_BYTES", 0)
    co = CloudObject.from_url(CSV, store.put("d.csv", CSV_DATA), storage_options=store.options)
    co.preprocess(sample_bytes=4096)
    files = sidecar_files(co)
    assert co.index_location.url == co.url + ".dataplug"  # the folder holds the first format's index
    manifest = json.loads(files.pop("manifest.json"))
    assert manifest["object"]["url"] == co.url and manifest["format"] == "CSV"
    (record,) = [name for name in files if name.endswith(".files.json")]  # the generation's files, listed before they were written
    assert sorted(json.loads(files.pop(record))["files"]) == sorted(files)
    assert all(name.endswith(".npy") for name in files) and bool(files) != inline
    tables = _tables(manifest, files)
    assert tables and sorted(tables) == sorted(co.index().tables)
    for data in tables.values():
        assert b"\x80\x04" not in data[:2] and b"\x80\x05" not in data[:2]
        assert np.load(io.BytesIO(data), allow_pickle=False).dtype.kind in "iu"
    anchors = len(CSV_DATA) // 4096 + 3  # one per sample, the object's start and end, each range's first record
    assert co.index().nbytes() <= 16 * anchors  # an (offset, record) pair per sample_bytes: 0.4 % here, 0.02 % at the default


def _tamper(co: CloudObject, change) -> None:
    """Rewrite the manifest through ``change(manifest, files)`` (which may also write table files)."""
    loc = co.index_location
    manifest = json.loads(loc.child("manifest.json").read_all())
    change(manifest, loc)
    loc.child("manifest.json").write_bytes(json.dumps(manifest).encode())


def _put_table(loc, manifest, name: str, data: bytes) -> None:
    """Replace table ``name`` (inline or a file) and re-sign it, as anyone who can write the folder can."""
    import hashlib

    entry = manifest["tables"][name]
    if "data" in entry:
        entry["data"] = base64.b64encode(data).decode()
    else:
        loc.child(entry["file"]).write_bytes(data)
    entry.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())


def _file_entry(entry: dict, file: str) -> None:
    """Make a manifest entry name ``file`` instead of holding its bytes."""
    entry.pop("data", None)
    entry["file"] = file


def _npy(array, allow_pickle: bool = False) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=allow_pickle)
    return buf.getvalue()


class Boom:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/dataplug-pwned",))


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda m, loc: m.update(dataplug_index=99), id="layout-version"),
        pytest.param(lambda m, loc: _file_entry(m["tables"]["offsets"], "../../etc/passwd"), id="path-traversal"),
        pytest.param(lambda m, loc: m["tables"]["offsets"].update(data="not base64!"), id="inline-not-base64"),
        pytest.param(lambda m, loc: m["tables"]["offsets"].update(sha256="0" * 64), id="checksum"),
        pytest.param(lambda m, loc: m["attributes"].update(rows="many"), id="attribute-type"),
        pytest.param(lambda m, loc: m["attributes"].update(rows=5), id="attribute-value"),
        pytest.param(lambda m, loc: _put_table(loc, m, "offsets", _npy(np.array([Boom()], dtype=object), True)), id="pickled-table"),
        pytest.param(lambda m, loc: _put_table(loc, m, "offsets", _npy(np.array([5, 3, 1, 10**12]))), id="non-monotonic"),
    ],
)
def test_crafted_or_corrupt_sidecar_is_an_error_never_code(local_store, change):
    co = CloudObject.from_url(CSV, local_store.put("d.csv", CSV_DATA))
    co.preprocess()
    _tamper(co, change)
    fresh = CloudObject.from_url(CSV, co.url)
    with pytest.raises(CorruptIndexError):
        fresh.partition(partition_num_chunks, 3)
    assert not os.path.exists("/tmp/dataplug-pwned")


def test_manifest_not_json(local_store):
    co = CloudObject.from_url(CSV, local_store.put("d.csv", CSV_DATA))
    co.preprocess()
    co.index_location.child("manifest.json").write_bytes(b"\x80\x04not json")
    with pytest.raises(CorruptIndexError, match="JSON"):
        CloudObject.from_url(CSV, co.url).attributes


@pytest.mark.parametrize("same_size", [True, False])
def test_changed_object_gives_stale_index(store, same_size):
    url = store.put("d.csv", CSV_DATA)
    co = CloudObject.from_url(CSV, url, storage_options=store.options)
    co.preprocess()
    slices = co.partition(partition_num_chunks, 4)
    changed = CSV_DATA.replace(b"row 7,", b"row 8,") if same_size else CSV_DATA + b"9999,x\n"
    store.put("d.csv", changed)
    with pytest.raises(StaleIndexError, match="d.csv"):
        co.partition(partition_num_chunks, 4)
    for s in slices:
        with pytest.raises(StaleIndexError, match="d.csv"):
            s.get()
    assert not co.is_preprocessed()
    co.preprocess()
    assert sum(s.num_records for s in co.partition(partition_num_chunks, 3)) == (2000 if same_size else 2001)


def test_strategies_read_no_object_bytes(store):
    url = store.put("d.csv", CSV_DATA)
    CloudObject.from_url(CSV, url, storage_options=store.options).preprocess(sample_bytes=512)
    co = CloudObject.from_url(CSV, url, storage_options=store.options)
    read_stats.reset()
    slices = co.partition(partition_num_chunks, 500) + co.partition(partition_rows, 7)
    assert read_stats.bytes.get(url, 0) == 0 and read_stats.requests.get(url, 0) == 0
    assert sum(s.num_records for s in slices) == 4000


def test_slice_get_is_one_request_and_reads_little_extra(s3_store):
    url = s3_store.put("d.csv", CSV_DATA)
    co = CloudObject.from_url(CSV, url, storage_options=s3_store.options)
    co.preprocess(sample_bytes=1024)
    slices = co.partition(partition_num_chunks, 16)
    total = 0
    for s in slices:
        read_stats.reset()
        body = s.raw()
        assert read_stats.requests[url] == 1  # the staleness check rides on the read (If-Match)
        assert read_stats.bytes[url] <= len(body) + 2 * 1024 + 200
        total += len(body)
    assert total == len(CSV_DATA) - len(co.attributes.header)


def test_slices_are_small_picklable_and_carry_no_client(s3_store):
    co = CloudObject.from_url(CSV, s3_store.put("d.csv", CSV_DATA), storage_options=s3_store.options)
    co.preprocess()
    s = co.partition(partition_num_chunks, 3)[1]
    s.obj.fs  # a live filesystem in this process ...
    blob = pickle.dumps(s)
    assert len(blob) < 4096
    clone = pickle.loads(blob)
    assert clone.obj._fs is None  # ... is not shipped
    assert clone.get() == s.get()
    assert isinstance(clone, CloudObjectSlice)


def test_index_in_another_bucket_data_bucket_never_written(s3_options):
    data_bucket, meta_bucket = make_bucket(s3_options), make_bucket(s3_options)
    fs = fsspec.filesystem("s3", **s3_options)
    fs.pipe(f"{data_bucket}/public/d.csv", CSV_DATA)
    before = fs.find(data_bucket, detail=True)
    co = CloudObject.from_s3(
        CSV,
        f"s3://{data_bucket}/public/d.csv",
        metadata_bucket=meta_bucket,
        s3_config={"endpoint_url": s3_options["endpoint_url"], "aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "eu-west-1"},
    )
    co.preprocess()
    fs.invalidate_cache()
    assert fs.find(data_bucket, detail=True) == before
    assert fs.exists(f"{meta_bucket}/public/d.csv.dataplug/manifest.json")
    assert sum(s.num_records for s in co.partition(partition_num_chunks, 5)) == 2000


def test_local_index_for_s3_object(s3_store, tmp_path):
    url = s3_store.put("d.csv", CSV_DATA)
    co = CloudObject.from_url(CSV, url, storage_options=s3_store.options, index_location=str(tmp_path / "idx"))
    co.preprocess()
    assert co.index_location.url.startswith(str(tmp_path / "idx"))
    assert co.index_location.child("manifest.json").exists()
    assert not s3_store.exists(url + ".dataplug/CSV/manifest.json")


def test_missing_object(store):
    co = CloudObject.from_url(CSV, store.url("nope.csv"), storage_options=store.options)
    with pytest.raises(ObjectNotFoundError, match="nope.csv"):
        co.preprocess()
    assert not co.exists()


def test_not_preprocessed(local_store):
    co = CloudObject.from_url(CSV, local_store.put("d.csv", CSV_DATA))
    with pytest.raises(IndexMissingError, match="preprocess"):
        co.partition(partition_num_chunks, 2)
    with pytest.raises(IndexMissingError, match="d.csv"):
        co.attributes


def test_index_for_another_format_is_not_used(local_store):
    url = local_store.put("d.csv", CSV_DATA)
    text = CloudObject.from_url(UTF8Text, url).preprocess()
    co = CloudObject.from_url(CSV, url)
    assert not co.is_preprocessed()
    with pytest.raises(StrategyArgumentError, match="UTF8Text"):
        co.partition(text_chunks, 2)
    co.preprocess()  # a second format's index goes in a sub-folder; the first stays in the folder
    assert co.index_location.url == text.index_location.url + "/CSV"
    assert CloudObject.from_url(UTF8Text, url).is_preprocessed() and CloudObject.from_url(CSV, url).is_preprocessed()
    reopened = dataplug.open(url)  # the format of the folder's index, read from it rather than detected
    assert reopened.format is UTF8Text and not reopened.built_index and "recorded by its index" in reopened.detection.reason


def test_unwritable_index_location(local_store, s3_options):
    url = local_store.put("d.csv", CSV_DATA)
    blocker = local_store.put("file-not-dir", b"x")
    co = CloudObject.from_url(CSV, url, index_location=blocker + "/idx")
    with pytest.raises(IndexLocationNotWritableError, match="file-not-dir"):
        co.preprocess()
    co = CloudObject.from_url(CSV, url, index_location="s3://no-such-bucket-here/idx", index_storage_options=s3_options)
    with pytest.raises(IndexLocationNotWritableError, match="no-such-bucket-here"):
        co.preprocess()


def test_preprocess_is_idempotent_and_force_refreshes_memory(local_store):
    url = local_store.put("d.csv", CSV_DATA)
    co = CloudObject.from_url(CSV, url)
    co.preprocess()
    created = co.index().created
    co.preprocess()
    assert co.index().created == created
    other = CloudObject.from_url(CSV, url)
    other.preprocess(force=True, header=False)
    assert other.attributes.rows == 2001
    co.preprocess(force=True)
    assert co.attributes.rows == 2000 and co.index().created > created


def test_concurrent_preprocess_never_tears_the_index(local_store):
    url = local_store.put("d.csv", CSV_DATA)
    errors = []

    def run():
        try:
            CloudObject.from_url(CSV, url).preprocess(force=True, sample_bytes=256)
        except Exception as exc:  # noqa: BLE001 - collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    co = CloudObject.from_url(CSV, url)
    assert sum(s.num_records for s in co.partition(partition_num_chunks, 9)) == 2000


def test_clean_removes_index_only(local_store):
    url = local_store.put("d.csv", CSV_DATA)
    co = CloudObject.from_url(CSV, url).preprocess()
    co.clean()
    assert not co.is_preprocessed() and co.exists()


def test_s3_config_mapping_and_ignored_keys():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        opts = s3_config_to_storage_options(
            {"endpoint_url": "http://x", "region_name": "r", "credentials": {"AccessKeyId": "a", "SecretAccessKey": "s"}, "role_arn": "arn:x"}
        )
    assert opts == {"endpoint_url": "http://x", "key": "a", "secret": "s", "client_kwargs": {"region_name": "r"}}
    assert any("role_arn" in str(w.message) for w in caught)


def test_new_from_file_refuses_overwrite(s3_store, tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(CSV_DATA)
    url = s3_store.url("up.csv")
    co = CloudObject.new_from_file(CSV, str(path), url, s3_config={"endpoint_url": s3_store.options["endpoint_url"], "region_name": "eu-west-1"})
    co.preprocess()
    with pytest.raises(dataplug.DataplugError, match="exists"):
        CloudObject.new_from_file(CSV, str(path), url)
    co2 = CloudObject.new_from_file(CSV, str(path), url, override=True)
    assert not co2.is_preprocessed()
    assert repr(co2) == f"CloudObject<CSV>({url})"


# -- a third-party format plugin -----------------------------------------------------------------------


@register_format
class FixedRecords(DataFormat):
    """Binary records of a fixed size; the record size is a preprocessing option."""

    from dataclasses import dataclass as _dc

    options = {"record_size": "bytes per record (default 4)"}

    @_dc(frozen=True)
    class Attributes:
        record_size: int
        records: int

    @classmethod
    def preprocess(cls, ctx):
        size = int(ctx.options.get("record_size", 4))
        if ctx.info.size % size:
            raise dataplug.InvalidFormatError(ctx.obj.url, "size is not a multiple of the record size", offset=ctx.info.size)
        return IndexData(cls.Attributes(size, ctx.info.size // size))


from dataclasses import dataclass


@dataclass
class FixedSlice(CloudObjectSlice):
    start: int
    stop: int
    record_size: int

    def get(self) -> list[bytes]:
        data = self.obj.read_range(self.start * self.record_size, self.stop * self.record_size, expect=self.object_info)
        return [data[i : i + self.record_size] for i in range(0, len(data), self.record_size)]


@strategy(FixedRecords)
def even_records(co, n):
    bounds = dataplug.strategies.even_bounds(co.attributes.records, dataplug.strategies.positive_int(co.url, "n", n))
    info = co.index().object_info
    return [FixedSlice(co.obj, info, i, int(a), int(b), co.attributes.record_size) for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:]))]


def test_custom_plugin_by_name(store):
    data = bytes(range(200))[:200]
    co = CloudObject.from_url("FixedRecords", store.put("r.bin", data), storage_options=store.options)
    co.preprocess(record_size=8)
    records = [r for s in co.partition(even_records, 7) for r in s.get()]
    assert b"".join(records) == data and len(records) == 25
    assert "FixedRecords" in dataplug.available_formats()


def test_plugin_from_entry_point(tmp_path, monkeypatch, local_store):
    (tmp_path / "myplug.py").write_text(
        "from dataplug.formats.generic.text import UTF8Text\n"
        "class ShoutText(UTF8Text):\n    name = 'ShoutText'\n"
    )
    dist = tmp_path / "myplug-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: myplug\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[dataplug.formats]\nShoutText = myplug:ShoutText\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    co = CloudObject.from_url("ShoutText", local_store.put("t.txt", b"a\nb\n"))
    co.preprocess()
    assert co.format.__module__ == "myplug" and co.attributes.lines == 2
    assert co.index_location.url.endswith("t.txt.dataplug")


def test_preprocess_rebuilds_a_corrupt_index(local_store):
    co = CloudObject.from_url(CSV, local_store.put("d.csv", CSV_DATA))
    co.preprocess()
    co.index_location.child("manifest.json").write_bytes(b"{not json")
    fresh = CloudObject.from_url(CSV, co.url)
    assert not fresh.is_preprocessed()
    fresh.preprocess()
    assert CloudObject.from_url(CSV, co.url).attributes.rows == 2000


def test_a_mistyped_preprocessing_option_is_refused_with_the_valid_ones(local_store):
    from dataplug import StrategyArgumentError

    co = CloudObject.from_url(CSV, local_store.put("d.csv", CSV_DATA))
    with pytest.raises(StrategyArgumentError, match="no preprocessing option 'delimter'") as err:
        co.preprocess(delimter=";")
    assert "delimiter:" in str(err.value) and "compression:" in str(err.value)
    with pytest.raises(StrategyArgumentError):
        co.preprocess(extra_args={"separatr": ";"})
    co.preprocess(extra_args={"separator": ","})
    assert co.attributes.delimiter == ","


def test_a_changed_object_reopened_is_detected_again_with_its_options(local_store):
    """The format and the options sniffing found (a CSV's delimiter) are taken afresh from a changed object's
    bytes, not from its stale index: the re-index kept ``{}`` and read three columns as one."""
    rows = "".join(f"{i};name {i};{i * 0.5}\n" for i in range(200))
    url = local_store.put("semi.csv", ("id;name;value\n" + rows).encode())
    first = dataplug.open(url)
    assert first.format is CSV and first.index_options.get("delimiter") == ";"
    local_store.put("semi.csv", ("id;name;value\n" + rows + "200;name 200;100.0\n").encode())
    again = dataplug.open(url)
    assert again.built_index and again.index_options.get("delimiter") == ";"
    table = pa.concat_tables(s.to_arrow() for s in again.partition("partition_num_chunks", 3))
    assert table.column_names == ["id", "name", "value"] and table.num_rows == 201
