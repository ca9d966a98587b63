"""Datasets of many objects: listing (glob, prefix, list) with sizes and identities, one format per dataset,
indexing as a map over objects, only new or changed objects read (counted on moto through the proxy), packed
small indexes, a read-only published dataset index, and real engines (a spawn pool, Lithops localhost)."""

from __future__ import annotations

import gzip
import json
import multiprocessing
import time
import uuid
from concurrent.futures import Executor, ProcessPoolExecutor

import fsspec
import pytest

import dataplug
from dataplug import CloudObject, IndexLocationNotWritableError, InvalidFormatError, ObjectNotFoundError
from dataplug.datasets import dataset as dataset_module
from dataplug.datasets.manifest import manifest_name
from dataplug.datasets.packing import PACK_FILE
from dataplug.testing.data import make_fastq
from dataplug.testing.fixtures import make_bucket, proxied_options

#: The goal of the issue: indexing many small objects costs at most this many requests per object, all told.
REQUESTS_PER_NEW_OBJECT = 3


def part(i: int, rows: int = 40, columns: str = "id,part,value") -> bytes:
    """One small CSV part: ``rows`` rows whose ``id`` runs on from part to part."""
    lines = [columns] + [f"{i * 1000 + r},{i},{(i * 31 + r * 7) % 97}" for r in range(rows)]
    return ("\n".join(lines) + "\n").encode()


def put_parts(store, n: int, folder: str = "run", start: int = 0) -> dict[str, bytes]:
    """``n`` parts, the odd ones gzip-compressed; their contents by name."""
    out = {}
    for i in range(start, start + n):
        name = f"{folder}/part-{i:04d}.csv" + (".gz" if i % 2 else "")
        out[name] = part(i)
        store.put(name, gzip.compress(out[name], mtime=0) if i % 2 else out[name])
    return out


def rows_of(ds) -> int:
    return sum(co.attributes.rows for co in ds.objects)


# -- listing and one format ------------------------------------------------------------------------------


def test_glob_prefix_and_list_name_the_same_objects(store):
    parts = put_parts(store, 12)
    store.put("run/notes.txt", b"not a part\n")
    glob = dataplug.open_dataset(store.url("run/part-*.csv*"), store.options, progress=False)
    urls = [store.url(name) for name in sorted(parts)]
    assert [co.url for co in glob.objects] == urls and len(glob) == 12 and glob.indexed == 12
    assert glob.format.name == "CSV"
    assert {co.index().attributes["compression"] for co in glob} == {"none", "gzip"}  # mixed codecs, one dataset
    assert glob.attributes.objects == 12 and glob.attributes.records == rows_of(glob) == 12 * 40
    assert glob.attributes.bytes == sum(co.size for co in glob.objects)
    assert glob.attributes.per_object[3] == glob.objects[3].attributes
    assert glob.objects[5].ensure_fresh_index() is glob.objects[5].index()  # the listing's identity is the object's

    again = dataplug.open_dataset(store.url("run/part-*.csv*"), store.options, progress=False)
    assert again.indexed == 0 and [co.url for co in again] == urls and not any(co.built_index for co in again)
    assert again.attributes == glob.attributes

    given = list(reversed(urls[:5]))
    listed = dataplug.open_dataset(given, store.options, progress=False)
    assert [co.url for co in listed] == given and listed.attributes.records == 5 * 40

    store.put("run/sub/part-9000.csv", part(9000))  # a prefix takes sub-folders, never dataplug's index files
    prefix = dataplug.open_dataset(store.url("run/"), store.options, format="CSV", progress=False, preprocess=False)
    assert len(prefix) == 14  # 12 parts, notes.txt, the sub-folder's part; no _dataplug/ file
    deep = dataplug.open_dataset(store.url("run/**/part-*.csv*"), store.options, progress=False)
    assert len(deep) == 13 and deep.objects[-1].url == store.url("run/sub/part-9000.csv")


def test_an_empty_match_names_the_pattern(store):
    put_parts(store, 1)
    with pytest.raises(ObjectNotFoundError, match=r"nothing-\*\.csv.*no object matches"):
        dataplug.open_dataset(store.url("run/nothing-*.csv"), store.options)
    with pytest.raises(ObjectNotFoundError, match="missing.csv"):
        dataplug.open_dataset([store.url("run/part-0000.csv"), store.url("run/missing.csv")], store.options)


class _NoEngine(Executor):
    """An engine that refuses every task: an open that maps anything over it fails."""

    def submit(self, *args, **kwargs):
        raise AssertionError("no object should be read")


def test_different_formats_or_columns_are_refused_naming_two_objects(local_store):
    put_parts(local_store, 3)
    local_store.put("run/part-0003.csv", gzip.compress(make_fastq(50, 3)))
    with pytest.raises(InvalidFormatError, match=r"part-0003\.csv.* is FASTQ.*part-0000\.csv is CSV"):
        dataplug.open_dataset(local_store.url("run/part-*"), progress=False)
    with pytest.raises(InvalidFormatError, match="is FASTQ"):  # refused again from the index alone: nothing is read
        dataplug.open_dataset(local_store.url("run/part-*"), progress=False, executor=_NoEngine())
    local_store.put("run/part-0003.csv", part(3, columns="id,part,other"))
    with pytest.raises(InvalidFormatError, match=r"part-0003\.csv: has the columns .*'other'.*part-0000\.csv has"):
        dataplug.open_dataset(local_store.url("run/part-*"), progress=False)


def test_options_and_format_given_apply_to_every_object(local_store):
    put_parts(local_store, 4)
    ds = dataplug.open_dataset(local_store.url("run/*"), format="UTF8Text", progress=False)
    assert ds.format.name == "UTF8Text" and ds.attributes.records == 4 * 41
    auto = dataplug.open_dataset(local_store.url("run/*"), progress=False)
    assert auto.format.name == "UTF8Text" and auto.indexed == 0  # "auto" takes the format the manifest records
    csv = dataplug.open_dataset(local_store.url("run/*"), format="csv", progress=False)
    assert csv.format.name == "CSV" and csv.indexed == 4  # another format: indexed as that one
    with pytest.raises(dataplug.StrategyArgumentError, match="no preprocessing option 'nope'"):
        dataplug.open_dataset(local_store.url("run/*"), progress=False, nope=1)


# -- where the index lives, and what a re-index reads ----------------------------------------------------------


def test_small_indexes_are_packed_and_large_objects_keep_a_folder(local_store, monkeypatch):
    put_parts(local_store, 6)
    big = "id,part,value\n" + "".join(f"{r},99,{r % 7}\n" for r in range(20_000))
    local_store.put("run/part-0099.csv", big.encode())
    monkeypatch.setattr(dataset_module, "SMALL_OBJECT_BYTES", 64 * 1024)
    ds = dataplug.open_dataset(local_store.url("run/*.csv*"), progress=False, chunk_size=64 * 1024)
    assert ds.attributes.records == 6 * 40 + 20_000
    folder = fsspec.filesystem("file")
    names = sorted(p.rsplit("/", 1)[-1] for p in folder.ls(local_store.url("run/_dataplug"), detail=False))
    packs = [n for n in names if PACK_FILE.match(n)]
    manifest = json.loads(folder.cat_file(local_store.url(f"run/_dataplug/{manifest_name(ds.url)}")))
    assert len(packs) == 1 and manifest["packs"] == packs
    assert [e.get("pack") for e in manifest["objects"]] == packs * 6 + [None]
    big_folder = manifest["objects"][-1]["folder"]
    assert big_folder in names and big_folder.endswith(".dataplug") and len(names) == 3
    assert folder.exists(local_store.url(f"run/_dataplug/{big_folder}/manifest.json"))


def test_an_index_location_elsewhere_holds_the_dataset_index(s3_store, tmp_path):
    put_parts(s3_store, 5)
    where = str(tmp_path / "indexes")
    ds = dataplug.open_dataset(s3_store.url("run/*"), s3_store.options, index_location=where, progress=False)
    assert ds.index_location.url == where and ds.attributes.records == 5 * 40
    assert not s3_store.exists(s3_store.url("run/_dataplug/" + manifest_name(ds.url)))
    assert (tmp_path / "indexes" / manifest_name(ds.url)).exists()
    again = dataplug.open_dataset(s3_store.url("run/*"), s3_store.options, index_location=where, progress=False)
    assert again.indexed == 0
    assert again.preprocess(force=True).indexed == 5 and again.attributes == ds.attributes


def test_re_indexes_add_packs_until_they_are_repacked(local_store):
    put_parts(local_store, 3)
    pattern = local_store.url("run/*")
    packs = []
    for i in range(3, 3 + dataset_module.REPACK_AFTER_PACKS + 1):
        local_store.put(f"run/part-{i:04d}.csv", part(i))
        ds = dataplug.open_dataset(pattern, progress=False)
        packs.append(json.loads(fsspec.filesystem("file").cat_file(local_store.url(f"run/_dataplug/{manifest_name(ds.url)}")))["packs"])
    assert [len(p) for p in packs] == [*range(1, dataset_module.REPACK_AFTER_PACKS + 1), 1]
    again = dataplug.open_dataset(pattern, progress=False)
    assert again.indexed == 0 and again.attributes.records == (4 + dataset_module.REPACK_AFTER_PACKS) * 40


def test_an_object_that_fails_to_index_leaves_the_others_indexed(local_store):
    put_parts(local_store, 6)
    local_store.put("run/part-0002.csv", b"\x00\x01binary\x00" * 10)
    with pytest.raises(InvalidFormatError, match=r"part-0002\.csv: binary data"):
        dataplug.open_dataset(local_store.url("run/*"), progress=False)
    local_store.put("run/part-0002.csv", part(2))
    ds = dataplug.open_dataset(local_store.url("run/*"), progress=False)
    assert ds.indexed == 1 and ds.attributes.records == 6 * 40


def test_a_corrupt_pack_or_manifest_is_rebuilt_never_trusted(local_store):
    put_parts(local_store, 4)
    pattern = local_store.url("run/*")
    ds = dataplug.open_dataset(pattern, progress=False)
    index = local_store.url("run/_dataplug")
    (pack,) = [p for p in fsspec.filesystem("file").ls(index, detail=False) if PACK_FILE.match(p.rsplit("/", 1)[-1])]
    with open(pack, "wb") as fh:
        fh.write(gzip.compress(b'{"dataplug_pack": 1, "objects": {"x": {"dataplug_index": 2, "tables": 12345678901234567890123}}}'))
    with pytest.warns(dataplug.DataplugWarning, match=r"pack\.json\.gz: pack does not decode: ValueError: integer of 23 digits.*indexed anew"):
        assert dataplug.open_dataset(pattern, progress=False).indexed == 4
    manifest = f"{index}/{manifest_name(ds.url)}"
    body = json.loads(fsspec.filesystem("file").cat_file(manifest))
    body["objects"][0]["pack"] = "../../../etc/passwd"
    fsspec.filesystem("file").pipe_file(manifest, json.dumps(body).encode())
    with pytest.warns(dataplug.DataplugWarning, match="dataset manifest is unreadable"):
        assert dataplug.open_dataset(pattern, progress=False).indexed == 4


def test_a_crash_before_the_manifest_leaves_the_last_one_whole(local_store, monkeypatch):
    put_parts(local_store, 4)
    pattern = local_store.url("run/*")
    dataplug.open_dataset(pattern, progress=False)
    local_store.put("run/part-0009.csv", part(9))

    def crash(*args, **kwargs):
        raise OSError("disk gone")

    monkeypatch.setattr(dataset_module, "write_dataset_manifest", crash)
    with pytest.raises(OSError, match="disk gone"):
        dataplug.open_dataset(pattern, progress=False)  # its pack is written, its manifest is not
    monkeypatch.undo()
    ds = dataplug.open_dataset(pattern, progress=False, preprocess=False)  # the old manifest and its packs load
    with pytest.raises(dataplug.IndexMissingError, match="1 of the dataset's 5 objects are not indexed"):
        _ = ds.objects
    assert ds.preprocess().indexed == 1 and ds.attributes.records == 5 * 40


def _object_reads(proxy, bucket: str) -> list[str]:
    """The data objects the proxy saw read (GETs of a key outside dataplug's index folder)."""
    return [r.target.split("?")[0] for r in proxy.requests if r.method == "GET" and r.target.startswith(f"/{bucket}/run/part-")]


def test_reindexing_reads_only_new_and_changed_objects(fault_proxy, s3_options):
    bucket = make_bucket(s3_options)
    fs = fsspec.filesystem("s3", **s3_options)
    for i in range(40):
        fs.pipe_file(f"{bucket}/run/part-{i:04d}.csv", part(i))
    options = proxied_options(s3_options, fault_proxy)
    pattern = f"s3://{bucket}/run/*.csv"
    dataplug.open_dataset(pattern, options, progress=False)

    for i in range(40, 45):
        fs.pipe_file(f"{bucket}/run/part-{i:04d}.csv", part(i))
    fs.pipe_file(f"{bucket}/run/part-0007.csv", part(7, rows=41))
    fault_proxy.set_mode(None)
    ds = dataplug.open_dataset(pattern, options, progress=False)
    reads = _object_reads(fault_proxy, bucket)
    print(f"re-index of 45 objects, 6 new or changed: {len(fault_proxy.requests)} requests, {len(reads)} object reads")
    assert sorted(reads) == sorted(f"/{bucket}/run/part-{i:04d}.csv" for i in [7, 40, 41, 42, 43, 44])
    assert ds.indexed == 6 and ds.attributes.records == 45 * 40 + 1
    assert not [r for r in fault_proxy.requests if r.method == "HEAD"]  # freshness from the listing alone

    fault_proxy.set_mode(None)
    again = dataplug.open_dataset(pattern, options, progress=False)
    methods = [r.method for r in fault_proxy.requests]
    print(f"open of an indexed 45-object dataset: {len(methods)} requests")
    assert again.indexed == 0 and methods == ["GET"] * len(methods) and len(methods) <= 4  # listing, manifest, packs


def test_200_small_objects_on_a_spawn_pool_cost_at_most_3_requests_each(fault_proxy, s3_options):
    bucket = make_bucket(s3_options)
    fs = fsspec.filesystem("s3", **s3_options)
    n = 200
    for i in range(n):
        data = part(i)
        fs.pipe_file(f"{bucket}/run/part-{i:04d}.csv" + (".gz" if i % 2 else ""), gzip.compress(data, mtime=0) if i % 2 else data)
    options = proxied_options(s3_options, fault_proxy)
    fault_proxy.set_mode(None)
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        ds = dataplug.open_dataset(f"s3://{bucket}/run/", options, executor=pool, progress=False)
    requests = len(fault_proxy.requests)
    print(f"indexing {n} small objects on a spawn pool: {requests} requests, {requests / n:.2f} per object")
    assert ds.indexed == n and ds.attributes.records == n * 40
    assert requests / n <= REQUESTS_PER_NEW_OBJECT
    assert len(_object_reads(fault_proxy, bucket)) == n  # each object read once, whole


def test_fastq_gz_run_on_lithops_localhost(s3_store, tmp_path_factory):
    lithops = pytest.importorskip("lithops", reason="Lithops is installed by the lithops and ci extras")
    reads = {}
    for i in range(30):
        reads[i] = make_fastq(60, 100 + i)
        s3_store.put(f"run42/s{i:02d}.fastq.gz", gzip.compress(reads[i], mtime=0))
    config = {"lithops": {"backend": "localhost", "storage": "localhost"}, "localhost": {"worker_processes": 2}}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("lithops.storage.storage.CACHE_DIR", str(tmp_path_factory.mktemp("lithops-cache")), raising=False)
        with lithops.FunctionExecutor(config=config, log_level=None) as fexec:
            started = time.perf_counter()
            ds = dataplug.open_dataset(s3_store.url("run42/*.fastq.gz"), s3_store.options, executor=fexec, progress=False, objects_per_task=15)
            print(f"30 FASTQ.gz objects on Lithops localhost, 15 a task (2 tasks on 2 workers): {time.perf_counter() - started:.1f} s")
            fexec.clean()
    assert ds.format.name == "FASTQ" and ds.indexed == 30
    assert ds.attributes.records == sum(r.count(b"\n") // 4 for r in reads.values())


# -- a published dataset index ----------------------------------------------------------------------------------


def test_a_published_dataset_index_is_read_without_writes_and_refuses_to_rebuild(s3_options, moto_endpoint):
    fs = fsspec.filesystem("s3", **s3_options)
    bucket = f"public-{uuid.uuid4().hex[:10]}"
    fs.mkdir(bucket)
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*"}]}
    fs.call_s3("put_bucket_policy", Bucket=bucket, Policy=json.dumps(policy))
    for i in range(8):
        fs.pipe_file(f"{bucket}/run/part-{i:04d}.csv", part(i))
    pattern = f"s3://{bucket}/run/*.csv"
    built = dataplug.open_dataset(pattern, s3_options, progress=False)
    for path in fs.find(f"{bucket}/run/_dataplug/"):
        fs.copy(path, path.replace("/run/_dataplug/", "/published/"))
    fs.invalidate_cache()
    public = f"{moto_endpoint}/{bucket}/published"
    before = sorted(fs.find(f"{bucket}/"))
    ds = dataplug.open_dataset(pattern, s3_options, index_location=public, progress=False)
    assert ds.published and ds.indexed == 0 and ds.attributes == built.attributes
    fs.invalidate_cache()
    assert sorted(fs.find(f"{bucket}/")) == before
    fs.pipe_file(f"{bucket}/run/part-0008.csv", part(8))
    with pytest.raises(IndexLocationNotWritableError, match=r"published .*part-0008\.csv.*index the dataset yourself"):
        dataplug.open_dataset(pattern, s3_options, index_location=public, progress=False)


def test_objects_index_as_their_own_cloud_objects(local_store):
    put_parts(local_store, 3)
    ds = dataplug.open_dataset(local_store.url("run/*"), progress=False)
    co = ds.objects[1]
    assert isinstance(co, CloudObject) and co.index().object_info.size == co.obj.info().size
    slices = co.partition("partition_num_chunks", 2)
    assert sum(s.to_arrow().num_rows for s in slices) == 40
