"""The storage layer's retry policy, versioned reads, writes and counters, against moto behind the fault proxy.
The S3 read tests run on both range transports (s3fs and obstore)."""

from __future__ import annotations

import errno
import os
import pickle
import time

import aiohttp
import fsspec
import pytest
from botocore.exceptions import ClientError
from fsspec.asyn import sync
from s3fs.errors import translate_boto_error

from dataplug import CloudObject, IndexLocationNotWritableError, StaleIndexError, StorageError
from dataplug.formats.generic.csv import CSV, partition_num_chunks
from dataplug.storage import object as storage
from dataplug.storage import retry
from dataplug.storage.object import ReadStats, StorageObject, read_stats
from dataplug.storage.ranges import plan
from dataplug.storage.retry import is_transient
from dataplug.storage.stores import LocalTransport
from dataplug.testing.faultproxy import FaultProxy

from .conftest import make_bucket

#: The client's read timeout in these tests: a stalled body is abandoned after this many idle seconds.
READ_TIMEOUT = 0.5
DATA = bytes(range(256)) * 2000
RANGES = [(0, 1), (100, 50_000), (50_000, 200_000), (300_000, len(DATA))]
#: The retry tests read RANGES with no gap joined, so that they make several requests (two ranges touch: three).
REQUESTS = plan(RANGES, max_gap=0, max_block=len(DATA)).requests


@pytest.fixture(scope="module")
def proxy(moto_endpoint):
    with FaultProxy(moto_endpoint, stall_seconds=READ_TIMEOUT + 1.5) as running:
        yield running


@pytest.fixture
def via_proxy(proxy, s3_options):
    """Storage options that reach moto through the proxy, which starts with no faults."""
    proxy.set_mode(None)
    return {**s3_options, "endpoint_url": proxy.endpoint, "config_kwargs": {"read_timeout": READ_TIMEOUT, "connect_timeout": 2}}


@pytest.fixture(params=["s3fs", "obstore"])
def transport(request, monkeypatch) -> str:
    """Each S3 range transport in turn (``DATAPLUG_S3_TRANSPORT``), for the tests of S3 reads."""
    if request.param == "obstore":
        pytest.importorskip("obstore")
    monkeypatch.setenv("DATAPLUG_S3_TRANSPORT", request.param)
    return request.param


@pytest.fixture
def fast_backoff(monkeypatch):
    monkeypatch.setattr(retry, "BACKOFF_BASE", 0.01)


def put(options, data: bytes = DATA, name: str = "o.bin") -> str:
    url = f"s3://{make_bucket(options)}/{name}"
    fs = fsspec.filesystem("s3", **options)
    fs.pipe_file(url, data)
    fs.invalidate_cache()
    return url


def uses(obj: StorageObject, transport: str) -> StorageObject:
    """``obj``, after checking its ranges are read through ``transport``."""
    assert type(obj.transport).__name__ == {"s3fs": "S3Transport", "obstore": "ObstoreS3Transport"}[transport]
    return obj



def ranged_gets(proxy: FaultProxy) -> list[str]:
    return [r.headers.get("Range") for r in proxy.requests if r.method == "GET" and r.headers.get("Range")]


@pytest.mark.parametrize("pinned", [False, True])
def test_truncated_bodies_are_re_read_whole(proxy, via_proxy, s3_options, pinned, transport):
    obj = uses(StorageObject(put(s3_options), via_proxy), transport)
    expect = obj.info() if pinned else None
    proxy.set_mode("truncate", every=1)
    assert obj.read_ranges(RANGES, expect=expect, max_gap=0) == [DATA[a:b] for a, b in RANGES]
    assert proxy.faults["truncate"] == sum(1 for a, b in REQUESTS if b - a >= 2)
    asked = {f"bytes={a}-{b - 1}" for a, b in REQUESTS}
    assert set(ranged_gets(proxy)) == asked  # every retry asked for its whole request again
    assert len(ranged_gets(proxy)) == len(REQUESTS) + proxy.faults["truncate"]


def test_whole_reads_writes_and_metadata_survive_every_fault(proxy, via_proxy, s3_options):
    obj = StorageObject(put(s3_options), via_proxy)
    side = StorageObject(obj.url + ".side", via_proxy)
    for mode in ("503", "reset", "truncate"):
        proxy.set_mode(mode, every=1)
        side.write_bytes(mode.encode() * 1000)
        assert side.read_all() == mode.encode() * 1000
        assert obj.read_all() == DATA
        assert obj.info().size == len(DATA)
        assert "o.bin.side" in StorageObject(obj.url.rsplit("/", 1)[0], via_proxy).list_names()
        assert proxy.faults[mode] >= 3


def test_stalled_body_is_retried(proxy, via_proxy, s3_options, transport):
    obj = StorageObject(put(s3_options), via_proxy)
    expect = obj.info()
    proxy.set_mode("stall", every=1)
    started = time.monotonic()
    assert obj.read_ranges(RANGES, expect=expect, max_gap=0) == [DATA[a:b] for a, b in RANGES]
    assert obj.read_all() == DATA
    assert proxy.faults["stall"] == sum(1 for a, b in REQUESTS if b - a >= 2) + 1
    assert time.monotonic() - started < 10 * READ_TIMEOUT + 5


def test_last_error_names_url_range_and_attempts(proxy, via_proxy, s3_options, fast_backoff, transport):
    obj = StorageObject(put(s3_options), via_proxy)
    proxy.set_mode("truncate", every=1, spare=False)
    with pytest.raises(StorageError) as err:
        obj.read_ranges([(10, 70_000)], expect=obj.info())
    message = str(err.value)
    assert obj.url in message and "bytes [10, 70000)" in message and f"after {retry.RETRIES} attempts" in message
    assert len(ranged_gets(proxy)) == retry.RETRIES
    with pytest.raises(StorageError, match=f"reading the whole object failed after {retry.RETRIES} attempts"):
        obj.read_all()


def test_short_body_is_retried_then_a_smaller_object_is_stale(tmp_path, monkeypatch):
    path = tmp_path / "o.bin"
    path.write_bytes(DATA)
    obj = StorageObject(str(path))
    real = LocalTransport.fetch
    calls = []

    def short_once(self, ranges, expect):
        calls.append(list(ranges))
        got = real(self, ranges, expect)
        return [data[:-1] for data in got] if len(calls) == 1 else got

    monkeypatch.setattr(LocalTransport, "fetch", short_once)
    assert obj.read_ranges(RANGES, max_gap=0) == [DATA[a:b] for a, b in RANGES]
    assert calls[1] == list(REQUESTS)
    monkeypatch.undo()
    path.write_bytes(DATA[:1000])
    with pytest.raises(StaleIndexError, match="1000 bytes, fewer than"):
        obj.read_range(0, 5000)


def test_short_s3_object_is_stale_not_retried_forever(s3_options, transport):
    url = put(s3_options, DATA[:1000])
    obj = uses(StorageObject(url, s3_options), transport)
    with pytest.raises(StaleIndexError, match="1000 bytes"):
        obj.read_range(500, 5000)
    with pytest.raises(StaleIndexError, match="1000 bytes"):
        obj.read_range(2000, 5000)


def test_transient_is_judged_by_type_code_and_status_never_by_message():
    def client_error(code: str, status: int) -> ClientError:
        return ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject")

    assert not is_transient(ValueError("got HTTP 500 from a parser"))
    assert not is_transient(OSError("upstream said 500"))
    assert not is_transient(client_error("AccessDenied", 403))
    assert not is_transient(translate_boto_error(client_error("NoSuchKey", 404)))
    assert not is_transient(FileNotFoundError("x"))
    assert is_transient(client_error("InternalError", 500))
    assert is_transient(client_error("503", 503))
    assert is_transient(translate_boto_error(client_error("SlowDown", 503)))
    assert is_transient(ConnectionResetError(errno.ECONNRESET, "reset"))
    assert is_transient(aiohttp.ClientPayloadError("Response payload is not completed"))
    assert is_transient(TimeoutError())


def test_versioned_reads_are_one_pinned_get_per_range(proxy, via_proxy, s3_options, transport):
    bucket = make_bucket(s3_options)
    fs = fsspec.filesystem("s3", **s3_options)
    sync(fs.loop, fs._call_s3, "put_bucket_versioning", Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    url = f"s3://{bucket}/v.bin"
    fs.pipe_file(url, DATA)
    obj = uses(StorageObject(url, via_proxy), transport)
    first = obj.info()
    assert first.identity.startswith("version:")
    proxy.set_mode(None)
    assert obj.read_ranges(RANGES, expect=first, max_gap=0) == [DATA[a:b] for a, b in RANGES]
    version = first.identity.split(":", 1)[1]
    assert [(r.method, f"versionId={version}" in r.target) for r in proxy.requests] == [("GET", True)] * len(REQUESTS)
    fs.pipe_file(url, DATA[::-1])  # a new version: the indexed one still reads its own bytes
    assert obj.read_range(5, 10, expect=first) == DATA[5:10]
    sync(fs.loop, fs._call_s3, "delete_object", Bucket=bucket, Key="v.bin", VersionId=version)
    with pytest.raises(StaleIndexError, match="version"):
        obj.read_range(5, 10, expect=first)


def test_versioned_slices_read_once_each(s3_options, transport):
    bucket = make_bucket(s3_options)
    fs = fsspec.filesystem("s3", **s3_options)
    sync(fs.loop, fs._call_s3, "put_bucket_versioning", Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    text = "id,name\n" + "".join(f"{i},row {i}\n" for i in range(3000))
    url = f"s3://{bucket}/d.csv"
    fs.pipe_file(url, text.encode())
    co = CloudObject.from_url(CSV, url, storage_options=s3_options).preprocess()
    body = []
    for s in co.partition(partition_num_chunks, 8):
        read_stats.reset()
        body.append(s.get()[len("id,name\n") :])
        assert read_stats.requests[url] == 1
    assert "id,name\n" + "".join(body) == text


def test_local_write_failure_leaves_no_temporary(tmp_path, monkeypatch):
    target = StorageObject(str(tmp_path / "idx" / "f.bin"))

    def refuse(src, dst):
        raise PermissionError(errno.EACCES, "denied", dst)

    monkeypatch.setattr(storage.os, "replace", refuse)
    with pytest.raises(IndexLocationNotWritableError, match="f.bin"):
        target.write_bytes(b"abc")
    assert os.listdir(tmp_path / "idx") == []


def test_transient_write_failures_are_retried_then_storage_errors(s3_options, monkeypatch, fast_backoff):
    obj = StorageObject(f"s3://{make_bucket(s3_options)}/f.bin", s3_options)
    calls = []

    def flaky(path, data):
        calls.append(path)
        if len(calls) < 3:
            raise ConnectionResetError(errno.ECONNRESET, "reset by peer")
        return real(path, data)

    real = obj.fs.pipe_file
    monkeypatch.setattr(obj.fs, "pipe_file", flaky)
    obj.write_bytes(b"abc")
    assert len(calls) == 3 and obj.read_all() == b"abc"

    def times_out(path, data):
        calls.append(path)
        raise TimeoutError("write timed out")

    calls.clear()
    monkeypatch.setattr(obj.fs, "pipe_file", times_out)
    with pytest.raises(StorageError, match=f"write failed after {retry.RETRIES} attempts") as err:
        obj.write_bytes(b"abc")
    assert not isinstance(err.value, IndexLocationNotWritableError) and len(calls) == retry.RETRIES


def test_refused_writes_are_not_writable(tmp_path, s3_options):
    with pytest.raises(IndexLocationNotWritableError, match="no-such-bucket-here"):
        StorageObject("s3://no-such-bucket-here/x/f.bin", s3_options).write_bytes(b"abc")
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(IndexLocationNotWritableError, match="file"):
        StorageObject(str(tmp_path / "file" / "f.bin")).write_bytes(b"abc")


def test_read_stats_keep_only_recent_urls():
    stats = ReadStats(max_urls=3)
    for i in range(5):
        stats.add(f"u{i}", 1, 10 * i)
    stats.add("u2", 2, 5)
    assert list(stats.requests) == ["u3", "u4", "u2"] and list(stats.bytes) == ["u3", "u4", "u2"]
    assert stats.requests["u2"] == 3 and stats.bytes["u2"] == 25 and stats.requests.get("u0", 0) == 0
    stats.reset()
    assert not stats.requests and not stats.bytes


def test_storage_objects_pickle_without_their_filesystem(s3_options, transport):
    obj = StorageObject(put(s3_options), s3_options)
    obj.info()
    clone = pickle.loads(pickle.dumps(obj))
    assert clone._fs is None and clone == obj and clone.read_range(0, 10) == DATA[:10]


@pytest.fixture(scope="module")
def strict_s3():
    """A second moto server that checks credentials: its first two requests (create a bucket, put
    ``x.csv``) pass unchecked, every later one needs an IAM key it knows, so ours are refused with 403."""
    import boto3

    from dataplug.testing.fixtures import start_moto

    proc, endpoint = start_moto({**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "2"})
    try:
        client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing", region_name="eu-west-1")
        client.create_bucket(Bucket="strict-bucket", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        client.put_object(Bucket="strict-bucket", Key="x.csv", Body=b"a,b\n1,2\n")
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_refusal_is_access_denied_not_not_found(strict_s3, transport):
    from dataplug import AccessDeniedError
    from dataplug.errors import ObjectNotFoundError

    obj = uses(StorageObject("s3://strict-bucket/x.csv", {"endpoint_url": strict_s3, "key": "testing", "secret": "testing"}), transport)
    for request in (obj.info, obj.read_all, lambda: obj.read_range(0, 3)):
        with pytest.raises(AccessDeniedError, match="access denied") as err:
            request()
        assert not isinstance(err.value, ObjectNotFoundError) and isinstance(err.value, PermissionError)
        assert "AWS_ENDPOINT_URL" in str(err.value) and "storage_options" in str(err.value) and "s3://strict-bucket/x.csv" in str(err.value)
    http = StorageObject(f"{strict_s3}/strict-bucket/x.csv")  # anonymous plain HTTP: fsspec says FileNotFoundError
    with pytest.raises(AccessDeniedError, match=r"access denied \(HTTP 403\)"):
        http.info()


def test_the_cli_says_access_denied(strict_s3, capsys):
    from dataplug.cli import main

    argv = ["info", "s3://strict-bucket/x.csv", "-s", f"endpoint_url={strict_s3}", "-s", "key=testing", "-s", "secret=testing"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("dataplug: s3://strict-bucket/x.csv: access denied") and "AWS_ENDPOINT_URL" in err and "not found" not in err


def test_a_missing_object_is_still_not_found(s3_options, tmp_path, transport):
    from dataplug.errors import ObjectNotFoundError

    missing = uses(StorageObject(f"s3://{make_bucket(s3_options)}/nothing.csv", s3_options), transport)
    for request in (missing.info, lambda: missing.read_range(0, 10)):
        with pytest.raises(ObjectNotFoundError, match="object not found"):
            request()
    with pytest.raises(ObjectNotFoundError, match="object not found"):
        StorageObject(str(tmp_path / "nothing.csv")).info()
