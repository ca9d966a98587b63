"""The sidecar layer: what cleanup may delete, one index per object, generations kept through their grace
period, writability checked before the pass, and caps on everything decoded from a sidecar."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import pickle
import time
import types
import zlib

import fsspec
import numpy as np
import pytest

import dataplug.sidecar
from dataplug import CloudObject, CorruptIndexError, DataplugError, IndexLocationNotWritableError, IndexMissingError, StaleIndexError
from dataplug.formats.compressed.gzipped import GZipText
from dataplug.formats.compressed.gzipped import partition_num_chunks as gzip_chunks
from dataplug.formats.generic.csv import CSV, partition_num_chunks, partition_rows
from dataplug.formats.generic.text import UTF8Text
from dataplug.sidecar import GENERATION_GRACE, MANIFEST, BlobRef, Sidecar, load_sidecar, object_index_folder, write_sidecar
from dataplug.storage.object import ObjectInfo, StorageObject, read_stats
from dataplug.strategies import even_bounds
from dataplug.testing.sidecar import npy, put_entry, read_manifest, write_manifest

CSV_DATA = b"id,text\n" + b"".join(b'%d,"row %d, with\nnewline"\n' % (i, i) for i in range(2000))
GENERATION_SHAPED = "1700000000-abcdef123456.offsets.npy"


@pytest.fixture
def clock(monkeypatch):
    """The clock of dataplug.sidecar, moved by hand: ``clock.now += seconds``."""
    fake = types.SimpleNamespace(now=time.time())
    monkeypatch.setattr(dataplug.sidecar, "time", types.SimpleNamespace(time=lambda: fake.now))
    return fake


def all_files(store, root: str) -> dict[str, bytes]:
    fs, path = fsspec.core.url_to_fs(root, **store.options)
    fs.invalidate_cache()
    return {p[len(path) :]: fs.cat_file(p) for p in fs.find(path)}


def generations(co: CloudObject) -> set[str]:
    """Generations with files or a record in the index folder (the user's generation-shaped files aside)."""
    names = co.index_location.list_names()
    return {name.split(".", 1)[0] for name in names if name.endswith((".npy", ".bin", ".files.json"))} - {GENERATION_SHAPED.split(".")[0]}


@pytest.fixture(params=["inline", "files"])
def layout(request, monkeypatch) -> str:
    """Runs a test with small tables and blobs inline in the manifest (the default) and with every one a file."""
    if request.param == "files":
        monkeypatch.setattr(dataplug.sidecar, "INLINE_BYTES", 0)
    return request.param


@pytest.fixture
def files_layout(monkeypatch) -> None:
    """Every table and blob a file of its generation (as an index too large to hold inline is written)."""
    monkeypatch.setattr(dataplug.sidecar, "INLINE_BYTES", 0)


def csv_text(slices) -> bytes:
    return b"".join(s.raw() for s in slices)


# -- never delete what dataplug did not write -----------------------------------------------------------

USER_FILES = {
    "1.txt": b"one",
    "2024-sales.csv": b"a,b\n1,2\n",
    "20240101.csv": b"x\n",
    GENERATION_SHAPED: b"not ours",
    "1700000000-abcdef123456.windows.bin": b"not ours either",
    "sub/1.txt": b"nested",
    "1700000000/2.csv": b"nested under a digit folder",
}


@pytest.mark.parametrize("shared", [True, False], ids=["index_location", "default"])
def test_cleanup_never_deletes_user_files(store, clock, shared, layout):
    """The issue's case: index_location is the data bucket itself, the object sits in CSV/, and user files of
    every name shape lie in the location, beside the object and inside the index folder."""
    url = store.put("CSV/2024-sales.csv", CSV_DATA)
    co = CloudObject.from_url(CSV, url, storage_options=store.options, index_location=store.root if shared else None)
    co.preprocess()
    user = {f"{folder}{name}": data for name, data in USER_FILES.items() for folder in ("", "CSV/")}
    del user["CSV/2024-sales.csv"]  # the object itself
    index_folder = co.index_location.url[len(store.root) + 1 :] + "/"
    user.update({index_folder + name: data for name, data in USER_FILES.items()})
    for name, data in user.items():
        store.put(name, data)
    for _ in range(3):
        clock.now += 3 * GENERATION_GRACE
        co.preprocess(force=True)
    assert len(generations(co)) == 2  # the current one and the one superseded by the last run
    assert co.attributes.rows == 2000
    co.clean()
    assert not co.is_preprocessed() and not generations(co)
    files = all_files(store, store.root)
    assert {name: files.get("/" + name) for name in user} == user
    assert files["/CSV/2024-sales.csv"] == CSV_DATA


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda m: _file_entry(m["tables"]["offsets"], "2024-sales.csv"), id="table"),
        pytest.param(lambda m: m.update(superseded=[{"files": ["2024-sales.csv", "1.txt"], "superseded": 0}]), id="superseded"),
    ],
)
def test_a_manifest_cannot_name_user_files(local_store, clock, change, layout):
    url = local_store.put("d.csv", CSV_DATA)
    co = CloudObject.from_url(CSV, url, index_location=local_store.url("idx"))
    co.preprocess()
    folder = co.index_location.url[len(local_store.root) :]
    for name, data in USER_FILES.items():
        local_store.put(folder[1:] + "/" + name, data)
    manifest = json.loads(co.index_location.child(MANIFEST).read_all())
    change(manifest)
    co.index_location.child(MANIFEST).write_bytes(json.dumps(manifest).encode())
    with pytest.raises(CorruptIndexError, match="file name|superseded"):
        CloudObject.from_url(CSV, url, index_location=local_store.url("idx")).attributes
    for _ in range(2):
        clock.now += 3 * GENERATION_GRACE
        co.preprocess(force=True)
    co.clean()
    files = all_files(local_store, local_store.root)
    assert {name: files.get(f"{folder}/{name}") for name in USER_FILES} == USER_FILES


# -- one index per object -------------------------------------------------------------------------------


def test_objects_sharing_an_index_location_each_get_their_own_index(store, clock):
    a_data = b"x\n" + b"11\n" * 100  # 100 rows
    b_data = b"x\n" + b"1\n" * 150  # 150 rows, same size
    assert len(a_data) == len(b_data)
    a_url, b_url = store.put("a.csv", a_data), store.put("sub/a.csv", b_data)
    if store.kind == "local":
        os.utime(b_url, ns=(os.stat(a_url).st_mtime_ns,) * 2)
    location = store.url("indexes")

    def open_(url):
        return CloudObject.from_url(CSV, url, storage_options=store.options, index_location=location)

    a = open_(a_url).preprocess(sample_bytes=16)
    b = open_(b_url)
    assert not b.is_preprocessed()
    b.preprocess(sample_bytes=16)
    assert a.index_location.url != b.index_location.url
    assert a.index_location.url.startswith(location + "/a.csv.") and b.index_location.url.startswith(location + "/a.csv.")
    assert open_(a_url).attributes.rows == 100 and open_(b_url).attributes.rows == 150
    b_slices = b.partition(partition_rows, 7)
    b_files = all_files(store, b.index_location.url)
    clock.now += 3 * GENERATION_GRACE
    a.preprocess(force=True, sample_bytes=32)
    clock.now += 3 * GENERATION_GRACE
    a.preprocess(force=True)
    assert all_files(store, b.index_location.url) == b_files
    assert csv_text(b_slices) == b_data[2:]
    assert csv_text(open_(a_url).partition(partition_rows, 9)) == a_data[2:]
    assert open_(b_url).attributes.rows == 150


def test_an_index_of_another_object_is_no_index(local_store):
    """A manifest naming another object (an index location shared the old way, or copied) is treated as
    missing: preprocess() without force rebuilds rather than reading through the other object's index."""
    a_url, b_url = local_store.put("a.csv", b"x\n" + b"11\n" * 100), local_store.put("b.csv", b"x\n" + b"1\n" * 150)
    os.utime(b_url, ns=(os.stat(a_url).st_mtime_ns,) * 2)
    a = CloudObject.from_url(CSV, a_url).preprocess()
    b = CloudObject.from_url(CSV, b_url)
    b.index_location.child(MANIFEST).write_bytes(a.index_location.child(MANIFEST).read_all())
    with pytest.raises(IndexMissingError, match="another object"):
        b.attributes
    assert not b.is_preprocessed()
    b.preprocess()
    assert CloudObject.from_url(CSV, b_url).attributes.rows == 150


def test_object_index_folder_is_per_url():
    assert object_index_folder("/data/x.csv") == object_index_folder("file:///data/x.csv")
    assert object_index_folder("s3://b/k/x.csv") == object_index_folder("s3a://b/k/x.csv")
    assert object_index_folder("s3://b/k/x.csv") != object_index_folder("s3://c/k/x.csv")
    assert object_index_folder("s3://b/k/../x y.csv").startswith("x_y.csv.")


# -- generations ---------------------------------------------------------------------------------------


def test_reindex_keeps_the_superseded_generation_for_slices_in_flight(store, clock, files_layout, monkeypatch):
    import dataplug.codecs.gzip.codec as gzip_codec

    monkeypatch.setattr(gzip_codec, "WINDOWS_LOAD_MAX", 0)  # slices read their windows from the sidecar, not carried
    text = b"".join(b"line %d %s\n" % (i, b"abcdefgh" * (i % 13)) for i in range(20000))
    url = store.put("t.txt.gz", gzip.compress(text))
    co = CloudObject.from_url(GZipText, url, storage_options=store.options)
    co.preprocess(spacing=20000)
    in_flight = co.partition(gzip_chunks, 6)
    assert sum(isinstance(s.source.window, gzip_codec.WindowRef) for s in in_flight) >= 3  # they read the sidecar's windows blob
    first = generations(co)

    def read(slices):
        return b"".join(s.raw() for s in slices)

    clock.now += 2 * GENERATION_GRACE  # the first generation is old, but it has not been superseded yet
    co.preprocess(force=True, spacing=30000)
    assert read(in_flight) == text
    clock.now += GENERATION_GRACE // 2
    co.preprocess(force=True, spacing=40000)
    assert read(in_flight) == text and first < generations(co) and len(generations(co)) == 3
    clock.now += GENERATION_GRACE // 2 + 1  # the first generation was superseded more than the grace ago
    co.preprocess(force=True)
    assert not first & generations(co) and len(generations(co)) == 3
    with pytest.raises(CorruptIndexError, match="superseded"):
        read(in_flight)
    assert read(co.partition(gzip_chunks, 5)) == text
    clock.now += 2 * GENERATION_GRACE
    co.preprocess(force=True)
    assert len(generations(co)) == 2
    assert read(CloudObject.from_url(GZipText, url, storage_options=store.options).partition(gzip_chunks, 4)) == text


# -- writability --------------------------------------------------------------------------------------------


def test_unwritable_location_fails_before_the_pass(local_store):
    url = local_store.put("d.csv", CSV_DATA * 20)
    blocker = local_store.put("plain-file", b"x")
    co = CloudObject.from_url(CSV, url, index_location=blocker + "/idx")
    read_stats.reset()
    started = time.perf_counter()
    with pytest.raises(IndexLocationNotWritableError, match="plain-file"):
        co.preprocess()
    assert time.perf_counter() - started < 2
    assert read_stats.requests.get(url, 0) == 0 and read_stats.bytes.get(url, 0) == 0


def test_an_index_write_leaves_only_its_manifest_and_record(store):
    """The generation's record doubles as the writability check: no probe file is written, and a small
    index is its manifest and that record."""
    co = CloudObject.from_url(CSV, store.put("d.csv", CSV_DATA), storage_options=store.options, index_location=store.url("idx"))
    co.preprocess()
    generation = json.loads(co.index_location.child(MANIFEST).read_all())["generation"]
    assert sorted(co.index_location.list_names()) == sorted([MANIFEST, f"{generation}.files.json"])


# -- caps and decode errors -------------------------------------------------------------------------------


def _npy(array) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def _huge_header_npy() -> bytes:
    """A valid ``.npy`` header claiming 10**12 int64 entries, followed by 16 bytes."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<i8", "fortran_order": False, "shape": (10**12,)})
    return buf.getvalue() + b"\0" * 16


def _put_table(loc, manifest, name: str, data: bytes) -> None:
    """Replace table ``name`` (inline or a file) and re-sign it, as anyone who can write the folder can."""
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


def _nested(depth: int):
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


def _as_json(change):
    def rewrite(raw: bytes, loc) -> bytes:
        manifest = json.loads(raw)
        change(manifest, loc)
        return json.dumps(manifest).encode()

    return rewrite


CRAFTED = {
    "npy-claims-1e12-entries": _as_json(lambda m, loc: _put_table(loc, m, "offsets", _huge_header_npy())),
    "npy-structured": _as_json(lambda m, loc: _put_table(loc, m, "offsets", _npy(np.zeros(3, dtype=[("a", "<i8")])))),
    "npy-header-shape-mismatch": _as_json(lambda m, loc: _put_table(loc, m, "offsets", _npy(np.arange(4))[:-8])),
    "npy-version-3": _as_json(lambda m, loc: _put_table(loc, m, "offsets", _npy(np.arange(4)).replace(b"NUMPY\x01\x00", b"NUMPY\x03\x00", 1))),
    "table-too-large-for-the-object": _as_json(lambda m, loc: m["tables"]["offsets"].update(bytes=10**15)),
    "json-nested-1e5": lambda raw, loc: raw.replace(b'"attributes": {', b'"deep": ' + b"[" * 100000 + b"]" * 100000 + b', "attributes": {', 1),
    "json-nested-40": _as_json(lambda m, loc: m["attributes"].update(rows=_nested(40))),
    "int-5000-digits": lambda raw, loc: raw.replace(b'"created": ', b'"created": ' + b"9" * 5000 + b", \"x\": ", 1),
    "int-25-digits": _as_json(lambda m, loc: m["object"].update(size=10**24)),
    "json-infinity": lambda raw, loc: raw.replace(b'"created": ', b'"created": Infinity, "x": ', 1),
    "invalid-utf8": lambda raw, loc: raw.replace(b'"format": "CSV"', b'"format": "\xff\xfe"', 1),
    "manifest-over-4-MiB": lambda raw, loc: raw + b" " * (4 * 2**20),
    "attributes-not-decodable": _as_json(lambda m, loc: m["attributes"].update(columns=["a"] * 3)),
    "superseded-malformed": _as_json(lambda m, loc: m.update(superseded=[{"files": "x"}])),
}


@pytest.mark.parametrize("craft", CRAFTED.values(), ids=CRAFTED.keys())
def test_crafted_sidecar_is_corrupt_and_rebuilt(local_store, craft):
    url = local_store.put("d.csv", CSV_DATA)
    co = CloudObject.from_url(CSV, url).preprocess()
    manifest_loc = co.index_location.child(MANIFEST)
    manifest_loc.write_bytes(craft(manifest_loc.read_all(), co.index_location))
    read_stats.reset()
    with pytest.raises(CorruptIndexError):
        CloudObject.from_url(CSV, url).attributes
    assert read_stats.bytes.get(manifest_loc.url, 0) <= dataplug.sidecar.MAX_MANIFEST_BYTES + 1  # one request: the cap and one byte to see it is over
    assert sum(n for u, n in read_stats.bytes.items() if u.endswith(".npy")) < 10**6
    fresh = CloudObject.from_url(CSV, url)
    assert not fresh.is_preprocessed()
    fresh.preprocess()
    assert CloudObject.from_url(CSV, url).attributes.rows == 2000


@pytest.mark.parametrize("claim", [10**12, 5])
def test_npy_header_is_checked_against_its_bytes_before_allocation(local_store, claim):
    url = local_store.put("d.csv", CSV_DATA)
    co = CloudObject.from_url(CSV, url).preprocess()
    manifest = json.loads(co.index_location.child(MANIFEST).read_all())
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<i8", "fortran_order": False, "shape": (claim,)})
    _put_table(co.index_location, manifest, "offsets", buf.getvalue() + b"\0" * 32)
    co.index_location.child(MANIFEST).write_bytes(json.dumps(manifest).encode())
    with pytest.raises(CorruptIndexError, match=f"claims {claim * 8} bytes of data, the file holds 32"):
        CloudObject.from_url(CSV, url).attributes


def test_an_oversized_manifest_is_refused_after_at_most_its_cap(local_store):
    """One request reads the manifest (so a concurrent re-index is never seen half-written): at most the cap
    and one byte of an oversized one."""
    url = local_store.put("d.csv", CSV_DATA)
    co = CloudObject.from_url(CSV, url).preprocess()
    manifest_loc = co.index_location.child(MANIFEST)
    manifest_loc.write_bytes(manifest_loc.read_all() + b" " * (5 * 2**20))
    read_stats.reset()
    with pytest.raises(CorruptIndexError, match="limit"):
        CloudObject.from_url(CSV, url).attributes
    assert read_stats.bytes.get(manifest_loc.url, 0) == dataplug.sidecar.MAX_MANIFEST_BYTES + 1
    assert read_stats.requests.get(manifest_loc.url, 0) == 1


def test_stale_object_is_refused_before_tables_are_read(local_store):
    url = local_store.put("d.csv", CSV_DATA)
    co = CloudObject.from_url(CSV, url).preprocess()
    local_store.put("d.csv", CSV_DATA + b"1,x\n")
    read_stats.reset()
    with pytest.raises(StaleIndexError):
        CloudObject.from_url(CSV, url).partition(partition_num_chunks, 2)
    assert not [u for u in read_stats.bytes if u.endswith(".npy")]
    assert co.index_location.url in next(iter(read_stats.bytes))


def test_writing_an_index_over_its_cap_is_refused(local_store, monkeypatch):
    monkeypatch.setattr(dataplug.sidecar, "_INDEX_BYTES_BASE", 1000)
    monkeypatch.setattr(dataplug.sidecar, "_INDEX_BYTES_PER_OBJECT_BYTE", 0)
    co = CloudObject.from_url(CSV, local_store.put("d.csv", CSV_DATA))
    with pytest.raises(DataplugError, match="limit"):
        co.preprocess(sample_bytes=4)
    assert MANIFEST not in co.index_location.list_names()


# -- blobs ------------------------------------------------------------------------------------------------


def test_partial_blob_reads_check_the_given_checksum(store, files_layout):
    blob = bytes(range(256)) * 64
    location = StorageObject(store.url("idx"), store.options)
    sidecar = Sidecar("Fmt", 1, store.url("obj"), ObjectInfo(len(blob), "x"), {}, blobs={"windows": blob})
    write_sidecar(location, sidecar)
    ref = load_sidecar(location, store.url("obj"), "Fmt", 1).blob("windows")
    part = blob[1000:3000]
    assert ref.read(1000, 3000, sha256=hashlib.sha256(part).hexdigest()) == part
    assert ref.read(1000, 3000, crc32=zlib.crc32(part)) == part
    location.child(ref.location.url.rsplit("/", 1)[1]).write_bytes(blob[::-1])  # same size, manifest untouched
    with pytest.raises(CorruptIndexError, match="SHA-256"):
        ref.read(1000, 3000, sha256=hashlib.sha256(part).hexdigest())
    with pytest.raises(CorruptIndexError, match="CRC32"):
        ref.read(1000, 3000, crc32=zlib.crc32(part))
    with pytest.raises(CorruptIndexError, match="SHA-256"):
        ref.read()
    with pytest.raises(CorruptIndexError, match="outside"):
        ref.read(0, len(blob) + 1)
    assert isinstance(ref, BlobRef) and ref.loaded() is None


def test_small_blobs_and_tables_load_with_the_manifest_in_one_request(store):
    """An inline blob's bytes are in hand once the manifest is read (:meth:`BlobRef.loaded`), checked
    against its SHA-256; a blob over :data:`INLINE_BLOB_BYTES` stays a file, read when asked."""
    small, large = bytes(range(256)) * 16, os.urandom(dataplug.sidecar.INLINE_BLOB_BYTES + 1)
    location = StorageObject(store.url("idx"), store.options)
    sidecar = Sidecar("Fmt", 1, store.url("obj"), ObjectInfo(10**6, "x"), {}, tables={"t": np.arange(5)}, blobs={"small": small, "large": large})
    write_sidecar(location, sidecar)
    read_stats.reset()
    loaded = load_sidecar(location, store.url("obj"), "Fmt", 1)
    assert loaded.blob("small").loaded(10, 20) == small[10:20] and loaded.blob("small").read() == small
    assert loaded.tables["t"].tolist() == [0, 1, 2, 3, 4]
    assert sum(read_stats.requests.values()) == 1  # the manifest
    assert loaded.blob("large").loaded() is None and loaded.blob("large").read() == large
    assert pickle.loads(pickle.dumps(loaded.blob("small"))).read(0, 3) == small[:3]  # carried to a worker
    manifest = json.loads(location.child(MANIFEST).read_all())
    manifest["blobs"]["small"]["data"] = base64.b64encode(small[::-1]).decode()  # same size, not re-signed
    location.child(MANIFEST).write_bytes(json.dumps(manifest).encode())
    with pytest.raises(CorruptIndexError, match="SHA-256"):
        load_sidecar(location, store.url("obj"), "Fmt", 1)


def test_a_layout_1_index_still_loads(local_store):
    """An index written before tables went inline (every table a file, layout 1) is read as it is."""
    url = local_store.put("d.csv", CSV_DATA)
    co = CloudObject.from_url(CSV, url).preprocess()
    loc = co.index_location
    manifest = json.loads(loc.child(MANIFEST).read_all())
    generation = manifest.pop("generation")
    for name, entry in manifest["tables"].items():
        file = f"{generation}.{name}.npy"
        loc.child(file).write_bytes(base64.b64decode(entry.pop("data")))
        entry["file"] = file
    manifest["dataplug_index"] = 1
    loc.child(MANIFEST).write_bytes(json.dumps(manifest).encode())
    again = CloudObject.from_url(CSV, url)
    assert again.is_preprocessed() and again.attributes.rows == 2000
    assert sum(s.num_records for s in again.partition(partition_num_chunks, 3)) == 2000


def test_a_failed_pass_leaves_no_record(local_store):
    """The generation's record, written before the pass to check the location takes writes, is removed
    when the pass fails."""
    url = local_store.put("d.csv", b"\x00\x01binary")
    co = CloudObject.from_url(CSV, url)
    with pytest.raises(DataplugError):
        co.preprocess()
    assert not [n for n in co.index_location.list_names() if n.endswith(".files.json")]


# -- even_bounds ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("total", "parts"), [(2**40, 2**24), (2**62 + 7, 3), (2**63 - 1, 1000), (2**64 + 5, 3), (10, 3), (0, 4), (5, 8)])
def test_even_bounds_is_exact(total, parts):
    bounds = even_bounds(total, parts)
    sizes = [int(b) - int(a) for a, b in zip(bounds[:-1], bounds[1:])]
    assert len(bounds) == parts + 1 and int(bounds[0]) == 0 and int(bounds[-1]) == total
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == total
    assert [int(b) for b in bounds[:: max(1, parts // 7)]] == [i * total // parts for i in range(0, parts + 1, max(1, parts // 7))]


@pytest.mark.parametrize("reread", [True, False])
def test_an_index_published_during_a_long_pass_is_kept_as_superseded(local_store, clock, files_layout, monkeypatch, reread):
    """Run B publishes its index while run A's pass runs; B's generation is old by its name. After a long pass
    A reads the manifest again, so its own records B's generation as superseded and keeps it for the grace
    period; with the manifest of A's start (a short pass), B's generation is taken for an orphan."""
    import dataplug.cloudobject

    url = local_store.put("d.csv", CSV_DATA)
    other = CloudObject.from_url(CSV, url)
    this = CloudObject.from_url(CSV, url)
    real = CloudObject._index_pass

    def pass_with_a_run_beside_it(self, *args, **kwargs):
        if self is this:
            other.preprocess()  # B, named now, publishes during A's pass
            clock.now += 2 * GENERATION_GRACE
        return real(self, *args, **kwargs)

    monkeypatch.setattr(CloudObject, "_index_pass", pass_with_a_run_beside_it)
    monkeypatch.setattr(dataplug.cloudobject, "REREAD_MANIFEST_AFTER", 0.0 if reread else 10**9)
    this.preprocess()
    if reread:
        assert csv_text(other.partition(partition_num_chunks, 3)) == CSV_DATA.split(b"\n", 1)[1]  # B's files are kept
    else:
        with pytest.raises(CorruptIndexError, match="superseded"):
            csv_text(other.partition(partition_num_chunks, 3))


def test_a_published_layout_1_index_in_its_format_folder_is_read(local_store, monkeypatch):
    """A published index written before the folder held a format at its top (``<url>.dataplug/CSV/``, every
    table a file) is still read over HTTP, where nothing can be rebuilt."""
    from dataplug.testing.faultproxy import HostileHTTPServer

    monkeypatch.setattr(dataplug.sidecar, "INLINE_BYTES", 0)
    co = CloudObject.from_url(CSV, local_store.put("d.csv", CSV_DATA)).preprocess()
    manifest = json.loads(co.index_location.child(MANIFEST).read_all())
    files = {f"d.csv.dataplug/CSV/{entry['file']}": co.index_location.child(entry["file"]).read_all() for entry in manifest["tables"].values()}
    with HostileHTTPServer({"d.csv": CSV_DATA, **files}) as server:
        url = server.url("d.csv")
        manifest.pop("generation")
        manifest.update(dataplug_index=1, superseded=[])
        manifest["object"] = {"url": url, **StorageObject(url).info().to_json()}
        server.files["d.csv.dataplug/CSV/manifest.json"] = json.dumps(manifest).encode()
        published = CloudObject.from_url(CSV, url, index_location=url + ".dataplug")
        assert sum(s.num_records for s in published.partition(partition_num_chunks, 3)) == 2000
        assert published.published and published.index_location.url.endswith("/CSV")


def test_tables_are_stored_through_codecs_and_read_back_exactly(local_store):
    """Sorted offsets go through delta + zlib, other tables through zlib when it saves, small ones as they
    are; every one reads back equal, dtype and all."""
    url = local_store.put("coded.txt", b"x\n")
    co = CloudObject.from_url(UTF8Text, url)
    co.preprocess(progress=False)
    rng = np.random.default_rng(0)
    tables = {
        "offsets": np.cumsum(rng.integers(60_000, 70_000, 5000)).astype(np.uint64),
        "counts": rng.integers(-5, 5, 5000).astype(np.int32),
        "noise": rng.random(3000),
        "flags": rng.random(4000) < 0.1,
        "tiny": np.arange(3, dtype=np.int64),
        "matrix": np.arange(5000, dtype=np.int64).reshape(50, 100),
        "wrap": np.array([2**64 - 1, 0, 5, 2**63] * 300, dtype=np.uint64),
    }
    sidecar = co.index()
    sidecar.tables = tables
    written = write_sidecar(co.index_location, sidecar)
    manifest = json.loads(co.index_location.child(MANIFEST).read_all())
    assert manifest["dataplug_index"] == 3
    assert manifest["tables"]["offsets"]["codecs"] == ["delta", "zlib"]
    assert manifest["tables"]["offsets"]["bytes"] < tables["offsets"].nbytes // 2
    assert "codecs" not in manifest["tables"]["tiny"]
    reloaded = load_sidecar(co.index_location, url, sidecar.format_name, sidecar.format_version)
    for name, table in tables.items():
        for got in (written.tables[name], reloaded.tables[name]):
            assert got.dtype == table.dtype and np.array_equal(got, table), name


@pytest.mark.parametrize("craft", ["bomb", "short", "codecs on a blob", "unknown codec", "delta on floats", "codecs in layout 2", "inflated sizes over the cap"])
def test_crafted_table_codecs_are_corrupt_index_errors(local_store, craft):
    url = local_store.put("crafted.txt", b"x\n")
    co = CloudObject.from_url(UTF8Text, url)
    co.preprocess(progress=False)
    sidecar = co.index()
    sidecar.tables = {"offsets": np.arange(0, 10**6, 7, dtype=np.uint64), "noise": np.random.default_rng(1).random(3000)}
    sidecar.blobs = {"b": b"z" * 100}
    write_sidecar(co.index_location, sidecar)
    loc = co.index_location
    manifest = read_manifest(loc)
    entry = manifest["tables"]["offsets"]
    name = "offsets"
    if craft == "bomb":  # inflates far past the size the entry gives
        put_entry(loc, manifest, "tables", name, zlib.compress(b"\0" * 50_000_000, 9))
        entry.update(codecs=["zlib"], npy_bytes=1000)
    elif craft == "short":
        entry["npy_bytes"] += 8
    elif craft == "codecs on a blob":
        manifest["blobs"]["b"].update(codecs=["zlib"], npy_bytes=100)
    elif craft == "unknown codec":
        entry["codecs"] = ["lzma"]
    elif craft == "delta on floats":
        noise = npy(np.random.default_rng(1).random(3000))
        put_entry(loc, manifest, "tables", "noise", zlib.compress(noise))
        manifest["tables"]["noise"].update(codecs=["delta", "zlib"], npy_bytes=len(noise))
        name = "noise"
    elif craft == "codecs in layout 2":
        manifest["dataplug_index"] = 2
    elif craft == "inflated sizes over the cap":  # each entry within the cap, together over it
        limit = dataplug.sidecar.max_index_bytes(manifest["object"]["size"])
        entry["npy_bytes"] = manifest["tables"]["noise"]["npy_bytes"] = limit
    write_manifest(loc, manifest)
    with pytest.raises(CorruptIndexError):
        load_sidecar(loc, url, sidecar.format_name, sidecar.format_version).tables[name]
