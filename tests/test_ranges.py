"""Request planning (``plan``), per-store policies, ``RangeFile``, pinning, and the requests ``read_ranges`` makes."""

from __future__ import annotations

import os

import fsspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataplug import StaleIndexError
from dataplug.storage import RangeFile, StorageObject, plan, policy_for, read_stats, stores
from dataplug.testing.faultproxy import HostileHTTPServer
from dataplug.testing.fixtures import proxied_options

DATA = bytes(range(251)) * 10_000  # 2 510 000 bytes, no period of a power of two

ranges_st = st.lists(st.tuples(st.integers(0, 5000), st.integers(0, 600)).map(lambda t: (t[0], t[0] + t[1])), max_size=40)


@settings(max_examples=300, deadline=None)
@given(ranges=ranges_st, max_gap=st.integers(0, 700), max_block=st.integers(1, 3000))
def test_plan_returns_every_asked_byte_in_the_callers_order(ranges, max_gap, max_block):
    data = bytes(i % 256 for i in range(6000))
    jobs = plan(ranges, max_gap, max_block)
    bodies = [data[a:b] for a, b in jobs.requests]
    assert jobs.cut(bodies) == [data[a:b] for a, b in ranges]
    asked = [(a, b) for a, b in ranges if b > a]
    assert len(jobs.requests) <= len(asked)
    for a, b in jobs.requests:
        inside = [d - c for c, d in asked if a <= c and d <= b]
        assert b > a and b - a - max(inside) <= max_block  # a block at most besides its largest range
    assert [a for a, _ in jobs.requests] == sorted(a for a, _ in jobs.requests)


def test_plan_joins_near_ranges_and_stops_at_the_block():
    assert plan([(100, 200), (0, 10), (10, 20)], max_gap=0, max_block=1000).requests == ((0, 20), (100, 200))
    assert plan([(100, 200), (0, 10)], max_gap=90, max_block=1000).requests == ((0, 200),)
    assert plan([(0, 10), (12, 20), (22, 30)], max_gap=2, max_block=15).requests == ((0, 20), (22, 30))
    assert plan([(0, 5000), (10, 20)], max_gap=10, max_block=100).requests == ((0, 5000),)  # inside a larger range: no request
    assert plan([(5000, 5010), (0, 5000), (5020, 5030)], max_gap=10, max_block=100).requests == ((0, 5030),)  # a large range takes in its neighbours
    assert plan([(0, 50), (50, 100), (100, 150)], max_gap=0, max_block=60).requests == ((0, 100), (100, 150))
    assert plan([(5, 5), (7, 3)], max_gap=10, max_block=100).requests == ()
    with pytest.raises(ValueError):
        plan([(0, 1)], max_gap=-1, max_block=10)


def test_identical_ranges_share_one_bytes_object():
    jobs = plan([(0, 4), (2, 6), (0, 4)], max_gap=0, max_block=100)
    out = jobs.cut([b"abcdef"])
    assert out == [b"abcd", b"cdef", b"abcd"] and out[0] is out[2]
    assert plan([(0, 6)], 0, 100).cut([body := b"abcdef"])[0] is body  # a whole request is not copied


def test_every_store_declares_its_policy():
    local, s3, http, memory = (StorageObject(url).policy for url in ("/tmp/x", "s3://b/k", "https://h/x", "memory://x"))
    assert local.max_gap < s3.max_gap <= s3.max_block and local.supports_pinning and s3.supports_pinning
    assert (http.supports_writes, http.supports_listing, http.supports_deletes, http.supports_pinning) == (False, False, False, True)
    assert s3.supports_writes and s3.supports_listing and s3.supports_deletes
    assert not memory.supports_pinning and memory.supports_writes
    assert policy_for("s3a") == s3 and policy_for("gcs") == policy_for("gs") and policy_for("http") == http
    assert policy_for("abfs") == stores.DEFAULT and not stores.DEFAULT.supports_pinning


# -- RangeFile ----------------------------------------------------------------------------------------------


def test_range_file_reads_like_the_file(tmp_path):
    path = tmp_path / "o.bin"
    path.write_bytes(DATA)
    obj = StorageObject(str(path))
    info = obj.info()
    read_stats.reset()
    with RangeFile(obj, info, block=4096, cache_blocks=8) as fh, open(path, "rb") as ref:
        for offset, size in ((0, 10), (4000, 9000), (4090, 10), (len(DATA) - 5, 100), (123_456, 40_000), (10, 10), (len(DATA) + 5, 4)):
            fh.seek(offset)
            ref.seek(offset)
            assert fh.read(size) == ref.read(size)
            assert len(fh.blocks) <= 8
        requests = read_stats.requests[obj.url]
        fh.seek(20)
        assert fh.read(100) == DATA[20:120]  # block 0, read again last: still cached, no request
        assert read_stats.requests[obj.url] == requests
        fh.seek(-3, os.SEEK_END)
        assert fh.read() == DATA[-3:]


def test_range_file_fetches_the_misses_of_one_read_in_one_request(tmp_path):
    path = tmp_path / "o.bin"
    path.write_bytes(DATA)
    obj = StorageObject(str(path))
    with RangeFile(obj, obj.info(), block=1000, cache_blocks=100) as fh:
        fh.seek(1500)
        fh.read(10)
        read_stats.reset()
        fh.seek(0)
        assert fh.read(5000) == DATA[:5000]  # blocks 0, 2, 3, 4 missing, 1 cached: the store joins them across it
        assert read_stats.requests[obj.url] == 1 and read_stats.bytes[obj.url] == 5000


# -- pinning and the identity check -------------------------------------------------------------------------


def test_a_local_read_is_pinned_to_the_opened_file(tmp_path, monkeypatch):
    path = tmp_path / "o.bin"
    path.write_bytes(DATA)
    obj = StorageObject(str(path))
    expect = obj.info()
    infos = []
    real = StorageObject.info
    monkeypatch.setattr(StorageObject, "info", lambda self, refresh=True: infos.append(1) or real(self, refresh))
    assert obj.read_ranges([(0, 10), (500, 600)], expect=expect) == [DATA[:10], DATA[500:600]]
    assert not infos  # the check rides on the read
    replacement = tmp_path / "new.bin"
    replacement.write_bytes(DATA)  # same size and bytes, another file
    os.replace(replacement, path)
    with pytest.raises(StaleIndexError, match="changed after it was indexed"):
        obj.read_range(0, 10, expect=expect)


def test_a_store_that_cannot_pin_checks_once_per_operation(monkeypatch):
    obj = StorageObject(f"memory://dataplug-ranges/{os.getpid()}/o.bin")
    obj.write_bytes(DATA)
    expect = obj.info()
    infos = []
    real = obj.fs.info
    monkeypatch.setattr(obj.fs, "info", lambda path, **kw: infos.append(path) or real(path, **kw))
    assert obj.read_range(0, 10, expect=expect) == DATA[:10]
    assert len(infos) == 1  # one metadata request checks the identity
    assert obj.read_range(10, 20, expect=expect, checked=True) == DATA[10:20]
    assert len(infos) == 1  # the caller checked it already in this operation
    obj.write_bytes(DATA[::-1])
    with pytest.raises(StaleIndexError):
        obj.read_range(0, 10, expect=expect)


def test_http_reads_are_pinned_with_if_match():
    with HostileHTTPServer({"o.bin": DATA}) as server:
        obj = StorageObject(server.url("o.bin"))
        expect = obj.info()
        assert expect.identity.startswith('etag:"')
        server.requests.clear()
        assert obj.read_ranges([(0, 100), (5000, 5100)], expect=expect) == [DATA[:100], DATA[5000:5100]]
        assert [method for method, _ in server.requests] == ["GET"]  # no HEAD: the GET carries the check, and the ranges join
        assert server.requests[0][1]["If-Match"] == expect.identity.removeprefix("etag:")
        server.files["o.bin"] = DATA[::-1]  # replaced, same size
        with pytest.raises(StaleIndexError, match="ETag no longer matches"):
            obj.read_range(0, 100, expect=expect)


def test_an_http_server_that_ignores_if_match_still_cannot_serve_another_object():
    with HostileHTTPServer({"o.bin": DATA}, mode="ignore-if-match") as server:
        obj = StorageObject(server.url("o.bin"))
        expect = obj.info()
        assert obj.read_range(10, 20, expect=expect) == DATA[10:20]
        server.files["o.bin"] = DATA[::-1]  # another ETag: the response names it
        with pytest.raises(StaleIndexError, match="changed after it was indexed"):
            obj.read_range(10, 20, expect=expect)


# -- requests on S3 -----------------------------------------------------------------------------------------



@pytest.mark.parametrize("transport", ["s3fs", "obstore"])
def test_s3_requests_follow_the_policy(fault_proxy, s3_options, s3_store, transport, monkeypatch):
    if transport == "obstore":
        pytest.importorskip("obstore")
    monkeypatch.setenv("DATAPLUG_S3_TRANSPORT", transport)
    url = s3_store.put("o.bin", DATA)
    fsspec.filesystem("s3", **s3_options).invalidate_cache()
    obj = StorageObject(url, proxied_options(s3_options, fault_proxy))
    assert type(obj.transport).__name__ == {"s3fs": "S3Transport", "obstore": "ObstoreS3Transport"}[transport]
    expect = obj.info()
    gap = obj.policy.max_gap

    def gets(ranges, **options):
        fault_proxy.set_mode(None)
        assert obj.read_ranges(ranges, expect=expect, **options) == [DATA[a:b] for a, b in ranges]
        return [r.headers.get("Range") for r in fault_proxy.requests if r.method == "GET"]

    near = [(900_000, 900_010), (0, 100), (100, 200), (150, 180), (200 + gap, 300 + gap)]
    assert gets(near) == [f"bytes=0-{299 + gap}"]  # one request: every gap is within the policy's
    assert sorted(gets([(0, 100), (101 + gap, 200 + gap)])) == ["bytes=0-99", f"bytes={101 + gap}-{199 + gap}"]
    assert sorted(gets(near, max_gap=0)) == sorted(["bytes=0-199", f"bytes={200 + gap}-{299 + gap}", "bytes=900000-900009"])
    assert sorted(gets([(0, 1000), (1000, 2000), (2000, 3000)], max_block=1500)) == ["bytes=0-1999", "bytes=2000-2999"]
    assert gets([(0, len(DATA))], max_block=1000) == [f"bytes=0-{len(DATA) - 1}"]  # one range larger than a block: kept whole
    assert all(r.headers.get("If-Match") for r in fault_proxy.requests)  # pinned, no HEAD
