"""The latency bed: the fault proxy's first-byte delay and per-connection bandwidth, measured, and its object
cache keeping the S3 semantics dataplug relies on (Range and 206, Content-Range, ETag, If-Match -> 412,
versionId, 416 past the end) while answering ranged reads without moto's copy of the whole object."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from dataplug.errors import StaleIndexError
from dataplug.storage import StorageObject
from dataplug.testing.faultproxy import FaultProxy
from dataplug.testing.fixtures import REGION, bed_options, make_bucket

#: Seconds of first-byte delay the timing tests set: far above this machine's own per-request time.
DELAY = 0.25
#: Bytes per second per connection the timing tests set, and the body they time (about a second's worth).
BANDWIDTH = 2e6
BODY = 2 * 10**6


@pytest.fixture(scope="module")
def bed(moto_endpoint):
    """A proxy of this module's own, with the object cache; each test sets its latency."""
    with FaultProxy(moto_endpoint, cache_bytes=256 * 2**20) as running:
        yield running


@pytest.fixture
def client(bed, s3_options):
    """A boto3 client through ``bed``, forwarding everything at full speed until the test sets latency."""
    bed.set_mode(None)
    bed.set_latency()
    return _client(bed.endpoint, s3_options)


def _client(endpoint: str, s3_options: dict[str, Any]) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=s3_options["key"],
        aws_secret_access_key=s3_options["secret"],
        region_name=REGION,
        config=Config(retries={"max_attempts": 1}),
    )


def _put(s3_options: dict[str, Any], bucket: str, key: str, data: bytes) -> str:
    """Write directly to moto (not through the proxy); the new ETag."""
    return _client(s3_options["endpoint_url"], s3_options).put_object(Bucket=bucket, Key=key, Body=data)["ETag"]


def _timed_get(client: Any, bucket: str, key: str, byte_range: str) -> tuple[float, bytes]:
    started = time.monotonic()
    body = client.get_object(Bucket=bucket, Key=key, Range=byte_range)["Body"].read()
    return time.monotonic() - started, body


@pytest.mark.parametrize("cached", [False, True], ids=["forwarded", "cached"])
def test_a_ranged_get_waits_the_first_byte_delay(bed, client, s3_options, cached):
    bucket = make_bucket(s3_options)
    data = os.urandom(100_000)
    _put(s3_options, bucket, "o", data)
    byte_range = "bytes=10-1009" if cached else "bytes=-1000"  # a suffix range is forwarded, never cached
    fast, body = _timed_get(client, bucket, "o", byte_range)
    bed.set_latency(first_byte=DELAY)
    hits = bed.cache_hits
    slow, again = _timed_get(client, bucket, "o", byte_range)
    assert body == again == (data[10:1010] if cached else data[-1000:])
    assert (bed.cache_hits > hits) == cached
    assert fast < DELAY <= slow, (fast, slow)


def test_a_body_takes_its_size_over_the_bandwidth(bed, client, s3_options):
    bucket = make_bucket(s3_options)
    data = os.urandom(BODY + 1000)
    _put(s3_options, bucket, "o", data)
    fast, _ = _timed_get(client, bucket, "o", f"bytes=0-{BODY - 1}")
    bed.set_latency(bandwidth=BANDWIDTH)
    slow, body = _timed_get(client, bucket, "o", f"bytes=0-{BODY - 1}")
    assert body == data[:BODY]
    assert fast < BODY / BANDWIDTH <= slow, (fast, slow)


def test_concurrent_connections_each_get_the_bandwidth(bed, client, s3_options):
    bucket = make_bucket(s3_options)
    data = os.urandom(BODY)
    _put(s3_options, bucket, "o", data)
    clients = [_client(bed.endpoint, s3_options) for _ in range(2)]
    for c in clients:  # fill the cache and open each client's connection before the clock runs
        c.get_object(Bucket=bucket, Key="o", Range="bytes=0-0")["Body"].read()
    bed.set_latency(bandwidth=BANDWIDTH)
    took: list[float] = []
    bodies: list[bytes] = []

    def one(c: Any) -> None:
        seconds, body = _timed_get(c, bucket, "o", f"bytes=0-{BODY - 1}")
        took.append(seconds)
        bodies.append(body)

    started = time.monotonic()
    threads = [threading.Thread(target=one, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - started
    alone = BODY / BANDWIDTH
    assert bodies == [data, data]
    assert min(took) >= alone, took
    assert wall < 1.5 * alone, (wall, alone)  # sharing one rate would take twice as long


def test_faults_and_latency_combine(bed, s3_options):
    """A truncated body under a first-byte delay: dataplug retries, reads the exact bytes, and waits the delay."""
    bucket = make_bucket(s3_options)
    data = os.urandom(300_000)
    _put(s3_options, bucket, "o", data)
    obj = StorageObject(f"s3://{bucket}/o", bed_options(s3_options, bed))
    expect = obj.info()
    bed.set_latency(first_byte=DELAY)
    bed.set_mode("truncate", every=1, first=1)
    started = time.monotonic()
    got = obj.read_ranges([(0, 100_000), (150_000, 300_000)], expect=expect)
    took = time.monotonic() - started
    bed.set_latency()
    faults = bed.faults.get("truncate", 0)
    bed.set_mode(None)
    assert got == [data[:100_000], data[150_000:]]
    assert faults >= 1 and took >= 2 * DELAY  # a faulted attempt and its retry each wait the delay


def test_the_cache_answers_like_s3(bed, client, s3_options):
    bucket = make_bucket(s3_options)
    data = os.urandom(50_000)
    etag = _put(s3_options, bucket, "o", data)
    resp = client.get_object(Bucket=bucket, Key="o", Range="bytes=100-199")
    hits = bed.cache_hits
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 206 and resp["Body"].read() == data[100:200]
    assert resp["ContentRange"] == f"bytes 100-199/{len(data)}" and resp["ETag"] == etag and resp["ContentLength"] == 100
    tail = client.get_object(Bucket=bucket, Key="o", Range=f"bytes={len(data) - 10}-{len(data) + 100}", IfMatch=etag)
    assert tail["Body"].read() == data[-10:] and tail["ContentRange"] == f"bytes {len(data) - 10}-{len(data) - 1}/{len(data)}"
    assert bed.cache_hits == hits + 1
    with pytest.raises(ClientError) as failed:
        client.get_object(Bucket=bucket, Key="o", Range="bytes=0-9", IfMatch='"0123456789abcdef0123456789abcdef"')
    assert failed.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    with pytest.raises(ClientError) as failed:
        client.get_object(Bucket=bucket, Key="o", Range=f"bytes={len(data)}-{len(data) + 9}")
    assert failed.value.response["ResponseMetadata"]["HTTPStatusCode"] == 416
    with pytest.raises(ClientError) as failed:
        client.get_object(Bucket=bucket, Key="missing", Range="bytes=0-9")
    assert failed.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert bed.cache_hits == hits + 1


def test_an_object_replaced_behind_the_cache_is_seen_at_once(bed, client, s3_options):
    bucket = make_bucket(s3_options)
    old, new = os.urandom(20_000), os.urandom(20_000)
    etag = _put(s3_options, bucket, "o", old)
    obj = StorageObject(f"s3://{bucket}/o", bed_options(s3_options, bed))
    expect = obj.info()
    assert obj.read_ranges([(0, 1000)], expect=expect) == [old[:1000]]
    hits = bed.cache_hits
    _put(s3_options, bucket, "o", new)
    with pytest.raises(ClientError) as failed:
        client.get_object(Bucket=bucket, Key="o", Range="bytes=0-9", IfMatch=etag)
    assert failed.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    with pytest.raises(StaleIndexError):
        obj.read_ranges([(0, 1000)], expect=expect)
    assert client.get_object(Bucket=bucket, Key="o", Range="bytes=0-999")["Body"].read() == new[:1000]
    assert bed.cache_hits == hits + 1


def test_a_version_is_served_as_itself(bed, client, s3_options):
    bucket = make_bucket(s3_options)
    _client(s3_options["endpoint_url"], s3_options).put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    first, second = os.urandom(10_000), os.urandom(10_000)
    _put(s3_options, bucket, "o", first)
    version = client.head_object(Bucket=bucket, Key="o")["VersionId"]
    _put(s3_options, bucket, "o", second)
    hits = bed.cache_hits
    old = client.get_object(Bucket=bucket, Key="o", Range="bytes=0-99", VersionId=version)
    latest = client.get_object(Bucket=bucket, Key="o", Range="bytes=0-99")
    assert old["Body"].read() == first[:100] and old["VersionId"] == version
    assert latest["Body"].read() == second[:100] and latest["VersionId"] != version
    assert bed.cache_hits == hits + 2


def test_concurrent_reads_are_exact_and_cached(bed, s3_options):
    """Many concurrent ranged reads of a cold object through dataplug: exact, every one answered by the cache."""
    bucket = make_bucket(s3_options)
    data = os.urandom(4 * 2**20)
    _put(s3_options, bucket, "o", data)
    obj = StorageObject(f"s3://{bucket}/o", bed_options(s3_options, bed))
    expect = obj.info()
    bed.set_mode(None)
    bed.set_latency(first_byte=0.02)
    ranges = [(i * 65536, (i + 1) * 65536 - 7) for i in range(64)]
    got = obj.read_ranges(ranges, expect=expect)
    bed.set_latency()
    assert got == [data[a:b] for a, b in ranges]
    assert bed.cache_hits == len(bed.requests) > 0


def test_the_cache_spares_moto_its_copy_of_the_whole_object(bed, client, s3_options):
    """moto copies the whole object per GET: a small range of a large object costs the object's size
    forwarded, and a small range's cost cached."""
    bucket = make_bucket(s3_options)
    big = os.urandom(64 * 2**20)
    _put(s3_options, bucket, "o", big)
    client.get_object(Bucket=bucket, Key="o", Range="bytes=0-0")["Body"].read()  # fill the cache
    cached = min(_timed_get(client, bucket, "o", "bytes=1000000-1065535")[0] for _ in range(3))
    whole = min(_timed_get(client, bucket, "o", "bytes=-65536")[0] for _ in range(3))  # a suffix range is forwarded
    assert cached * 3 < whole, (cached, whole)


def test_a_write_through_the_proxy_is_seen_at_once_when_validations_are_shared(moto_endpoint, s3_options):
    """With ``revalidate`` (validations shared for a while), a write through the proxy still invalidates."""
    bucket = make_bucket(s3_options)
    with FaultProxy(moto_endpoint, cache_bytes=2**20, revalidate=600) as shared:
        c = _client(shared.endpoint, s3_options)
        c.put_object(Bucket=bucket, Key="o", Body=b"first version")
        assert c.get_object(Bucket=bucket, Key="o", Range="bytes=0-4")["Body"].read() == b"first"
        c.put_object(Bucket=bucket, Key="o", Body=b"again, newer")
        assert c.get_object(Bucket=bucket, Key="o", Range="bytes=0-4")["Body"].read() == b"again"
        assert shared.cache_hits == 2
