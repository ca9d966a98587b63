"""The long-lived reader (``co.reader()``): decoded ranges exact over every codec, units decoded once and kept
in the LRU, region sets planned as few requests, identity checked at opening, on an interval or per pinned
request, and readers that never travel (pickling, fork, spawn)."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import random
import time

import fsspec
import pytest

from dataplug import CloudObject, CorruptIndexError, DataplugError, StaleIndexError
from dataplug.formats.generic.text import UTF8Text
from dataplug.reader import Reader, shared
from dataplug.storage import read_stats
from dataplug.testing.codecs import SUFFIXES, encode, gzip_member, seekable
from dataplug.testing.fixtures import make_bucket, proxied_options


def text_lines(n: int, seed: int = 0) -> bytes:
    rng = random.Random(seed)
    return "".join(f"{i}\t{rng.random():.12f}\t{'x' * rng.randrange(80)}\n" for i in range(n)).encode()


def stored(codec: str, data: bytes) -> bytes:
    """``data`` under ``codec``, with checkpoints every few KiB where the codec keeps them by itself."""
    if codec == "gzip":
        return gzip_member(data, 6, every=16384)
    if codec == "zstd":
        return seekable(data, 50_000)
    return encode(data, codec)


def open_text(store, name: str, payload: bytes, **options) -> CloudObject:
    url = store.put(name, payload)
    return CloudObject.from_url(UTF8Text, url, store.options).preprocess(progress=False, **options)


@pytest.mark.parametrize("codec", sorted(SUFFIXES))
def test_decoded_ranges_are_exact_over_every_codec(local_store, codec):
    data = text_lines(6000, seed=1)
    options = {"spacing": 32768} if codec == "gzip" else {}
    co = open_text(local_store, "t.txt" + SUFFIXES[codec], stored(codec, data), **options)
    rng = random.Random(2)
    spans = [(a, min(len(data), a + rng.randrange(1, 9000))) for a in (rng.randrange(len(data)) for _ in range(150))]
    spans += [(0, 0), (0, len(data)), (len(data) - 1, len(data)), (len(data), len(data))]
    with co.reader() as r:
        assert isinstance(r, Reader) and r.logical_size == len(data)
        assert [r.decoded(a, b) for a, b in spans] == [data[a:b] for a, b in spans]
        assert r.decoded_many(spans) == [data[a:b] for a, b in spans]


@pytest.fixture(scope="module")
def bgzf_text() -> tuple[bytes, bytes]:
    """About 1.3 MB of text lines as BGZF: some 20 members."""
    data = text_lines(20_000, seed=3)
    return data, stored("bgzf", data)


def local_requests(url: str) -> int:
    return read_stats.requests.get(url, 0)


def test_units_are_decoded_once_and_kept_in_the_lru(local_store, bgzf_text):
    data, payload = bgzf_text
    co = open_text(local_store, "lru.txt.gz", payload)
    with co.reader() as r:
        u = r._u
        assert len(u) > 15
        before = local_requests(r.url)
        assert r.decoded(u[3] + 10, u[3] + 500) == data[u[3] + 10 : u[3] + 500]
        assert (r.decodes, local_requests(r.url) - before) == (1, 1)
        # The same unit again, and another range inside it: no read, no decode.
        assert r.decoded(u[3] + 600, u[4]) == data[u[3] + 600 : u[4]]
        assert r.decoded(u[3] + 10, u[3] + 500) == data[u[3] + 10 : u[3] + 500]
        assert (r.decodes, local_requests(r.url) - before, r.cache.hits) == (1, 1, 2)
        # A range over units 3 to 6: only 4, 5 and 6 are decoded, read in one request (adjacent ranges join).
        assert r.decoded(u[3] + 1, u[6] + 7) == data[u[3] + 1 : u[6] + 7]
        assert (r.decodes, local_requests(r.url) - before) == (4, 2)
    small = co.reader(cache_bytes=int(1.5 * (u[1] - u[0])))  # room for one unit: the LRU drops the older
    for row in (0, 1, 0):
        small.decoded(u[row], u[row] + 10)
    assert small.decodes == 3 and len(small.cache) == 1 and small.cache.nbytes <= small.cache.max_bytes
    small.close()


def test_a_region_set_is_planned_as_few_requests_and_each_unit_decoded_once(s3_store, bgzf_text):
    data, payload = bgzf_text
    co = open_text(s3_store, "set.txt.gz", payload)
    rng = random.Random(4)
    spans = [(a, min(len(data), a + rng.randrange(50, 4000))) for a in (rng.randrange(len(data)) for _ in range(1000))]
    with co.reader() as r:
        before = read_stats.requests.get(r.url, 0)
        assert r.decoded_many(spans) == [data[a:b] for a, b in spans]
        needed = {row for a, b in spans for row in range(len(r._u)) if r._u[row] < b and a < r._u[row + 1]}
        # 1.3 MB of members within S3's 1 MiB gap and 4 MiB blocks: one request, each member inflated once.
        assert read_stats.requests.get(r.url, 0) - before == 1
        assert r.decodes == len(needed)
        again = read_stats.requests.get(r.url, 0)
        assert r.decoded_many(spans[:50]) == [data[a:b] for a, b in spans[:50]]
        assert read_stats.requests.get(r.url, 0) == again and r.decodes == len(needed)


def test_windowed_slice_readers_share_one_request_per_window(s3_store, bgzf_text):
    import dataclasses

    from dataplug.framings.base import readers
    from dataplug.storage.handle import WindowedObject, clear_shared

    data, payload = bgzf_text
    co = open_text(s3_store, "windows.txt.gz", payload)
    rng = random.Random(5)
    spans = [(a, min(len(data), a + rng.randrange(50, 4000))) for a in (rng.randrange(len(data)) for _ in range(1000))]
    read = readers(co)
    plain = [read(a, b) for a, b in spans]
    window = (min(s.fetch.start for s in plain), max(s.fetch.end for s in plain))  # the region set's merged range
    sources = [dataclasses.replace(s, obj=WindowedObject(co.obj, co.index().object_info, window)) for s in plain]
    # Slices travel: each reader pickles small, its window a plain description.
    sources = [pickle.loads(pickle.dumps(s)) for s in sources]
    clear_shared()
    before = read_stats.requests.get(co.url, 0)
    assert [s.read() for s in sources] == [data[a:b] for a, b in spans]
    assert read_stats.requests.get(co.url, 0) - before == len({s.obj.window for s in sources}) == 1
    unwindowed = [read(a, b) for a, b in spans[:20]]
    before = read_stats.requests.get(co.url, 0)
    assert [s.read() for s in unwindowed] == [data[a:b] for a, b in spans[:20]]
    assert read_stats.requests.get(co.url, 0) - before >= 20  # each slice its own request, as before


def replace_file(path: str, data: bytes) -> None:
    """Replace the file at ``path`` by a new one (a new inode), as a tool that rewrites its output does."""
    tmp = path + ".new"
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


@pytest.mark.parametrize("codec", ["plain", "bgzf"])
def test_a_changed_local_object_is_refused_while_a_reader_is_open(local_store, codec):
    data = text_lines(3000, seed=6)
    co = open_text(local_store, "changing.txt" + SUFFIXES[codec], stored(codec, data))
    path = co.obj.path
    per_call, never, timed = co.reader(check_interval=0), co.reader(check_interval=None), co.reader(check_interval=0.2)
    for r in (per_call, never, timed):
        assert r.decoded(0, 100) == data[:100]
    replace_file(path, stored(codec, data.replace(b"\t", b" ")))
    with pytest.raises(StaleIndexError):
        per_call.decoded(0, 100)  # even a range it has decoded: the check comes first
    # Never checked again: it goes on reading the file it opened (the indexed bytes), until asked to check.
    assert never.decoded(200, 300) == data[200:300]
    with pytest.raises(StaleIndexError):
        never.check()
    assert timed.decoded(0, 100) == data[:100]  # within its interval
    time.sleep(0.25)
    with pytest.raises(StaleIndexError):
        timed.decoded(0, 100)
    # A change in place (the same file, the same inode, rewritten) is seen too.
    co.preprocess(force=True, progress=False)
    in_place = co.reader(check_interval=0)
    assert in_place.decoded(0, 100) == data.replace(b"\t", b" ")[:100]
    with open(path, "r+b") as fh:
        fh.write(stored(codec, data.replace(b"\t", b";")))
        fh.truncate()
    with pytest.raises(StaleIndexError):
        in_place.decoded(0, 100)
    for r in (per_call, never, timed, in_place):
        r.close()
    with pytest.raises(DataplugError, match="closed"):
        never.decoded(0, 10)


def test_the_kept_reader_follows_the_index(local_store):
    data = text_lines(3000, seed=8)
    co = open_text(local_store, "kept.txt.gz", stored("bgzf", data))
    kept = co.kept_reader()
    assert co.kept_reader() is kept and kept.decoded(0, 100) == data[:100]
    changed = data.replace(b"\t", b";")
    replace_file(co.obj.path, stored("bgzf", changed))
    with pytest.raises(StaleIndexError):
        co.kept_reader().check()
    co.preprocess(force=True, progress=False)  # indexed anew: a new kept reader, by the new index
    fresh = co.kept_reader()
    assert fresh is not kept and kept.closed and fresh.sidecar is co.index()
    assert fresh.decoded(0, 100) == changed[:100]


def test_a_pinned_store_checks_every_request_and_makes_no_metadata_request(fault_proxy, s3_options, bgzf_text):
    data, payload = bgzf_text
    bucket = make_bucket(s3_options)
    url = f"s3://{bucket}/pinned.txt.gz"
    fs = fsspec.filesystem("s3", **s3_options)
    fs.pipe_file(url, payload)
    options = proxied_options(s3_options, fault_proxy)
    co = CloudObject.from_url(UTF8Text, url, options).preprocess(progress=False)
    fault_proxy.set_mode(None)
    with co.reader(check_interval=0) as r:
        u = r._u
        for row in range(4):
            assert r.decoded(u[row], u[row] + 100) == data[u[row] : u[row] + 100]
        methods = [q.method for q in fault_proxy.requests]
        assert methods == ["GET"] * 4  # the identity rides on each GET (If-Match): no HEAD before any
        assert all(q.headers.get("If-Match") for q in fault_proxy.requests)
        fs.pipe_file(url, stored("bgzf", data.replace(b"\t", b" ")))
        assert r.decoded(u[1], u[1] + 100) == data[u[1] : u[1] + 100]  # decoded before the change, kept
        with pytest.raises(StaleIndexError):
            r.decoded(u[5], u[5] + 100)  # the next request is refused
        with pytest.raises(StaleIndexError):
            r.check()  # asked for: one metadata request


def test_readers_never_travel_and_are_not_shared_across_processes(local_store, bgzf_text):
    data, payload = bgzf_text
    co = open_text(local_store, "travel.txt.gz", payload)
    kept = co.kept_reader()
    assert kept is co.kept_reader() and kept.decoded(5, 50) == data[5:50]
    with pytest.raises(TypeError, match="not picklable"):
        pickle.dumps(kept)
    clone = pickle.loads(pickle.dumps(co))  # the object travels, without its reader
    assert clone._kept_reader is None and clone.kept_reader().decoded(5, 50) == data[5:50]
    handle = shared(co.obj, co.index().object_info)
    assert shared(co.obj, co.index().object_info) is handle
    handle.read_range(0, 10)
    _PARENT["co"] = co
    try:
        for method in ("fork", "spawn"):
            with multiprocessing.get_context(method).Pool(1) as pool:
                # Forked: the parent's object, its kept reader and its shared handles inherited, not pickled.
                child = pool.apply(_in_child, (None if method == "fork" else co, id(handle)))
            assert child == (data[1000:1100], payload[7:9], False), method
    finally:
        _PARENT.clear()
    co.close()
    assert kept.closed and co.kept_reader() is not kept
    co.close()


_PARENT: dict[str, CloudObject] = {}


def _in_child(co: CloudObject | None, parent_handle: int) -> tuple[bytes, bytes, bool]:
    """In a worker process: a range through the object's kept reader (the parent's, when forked), and a
    shared handle of the worker's own."""
    co = co or _PARENT["co"]
    handle = shared(co.obj, co.index().object_info)
    return co.kept_reader().decoded(1000, 1100), handle.read_range(7, 9), id(handle) == parent_handle


def test_members_that_do_not_match_the_index_are_a_corrupt_index(local_store, bgzf_text):
    data, payload = bgzf_text
    co = open_text(local_store, "crafted.txt.gz", payload)
    with co.reader() as r:
        start, end, size = r._fetch_start[2], r._fetch_end[2], r._u[3] - r._u[2]
        raw = payload[start:end]
        assert r._inflate(raw, start, size) == data[r._u[2] : r._u[3]]
        for wrong in (raw[:-1], raw + payload[end : end + 50], raw[:-8] + b"\0" * 8):
            with pytest.raises(CorruptIndexError, match="BGZF member index does not match"):
                r._inflate(wrong, start, size)
        with pytest.raises(CorruptIndexError, match="index says"):
            r._inflate(raw, start, size + 1)


def test_a_format_without_a_stream_codec_reads_its_own_bytes(local_store, tmp_path):
    """A COG's attributes name a compression per tile, not a codec over the object: the base reader reads the
    object's bytes as they are."""
    from tests.test_cog import indexed, raster, write_tiff

    path = write_tiff(tmp_path / "r.tif", raster("uint16", 1, 64, 64), compress="deflate", blocksize=32)
    co = indexed(local_store, path)
    payload = path.read_bytes()
    with Reader(co) as r:
        assert r.logical_size == len(payload) and r.codec.name == "none"
        assert r.decoded(10, 400) == payload[10:400] and r.decoded_many([(0, 8), (100, 120)]) == [payload[:8], payload[100:120]]


def test_large_checkpoint_tables_are_searched_as_arrays(local_store, bgzf_text, monkeypatch):
    import dataplug.reader

    data, payload = bgzf_text
    co = open_text(local_store, "rows.txt.gz", payload)
    monkeypatch.setattr(dataplug.reader, "LIST_ROWS", 4)
    with co.reader() as r:
        assert not isinstance(r._u, list)
        rng = random.Random(7)
        spans = [(a, min(len(data), a + rng.randrange(1, 90_000))) for a in (rng.randrange(len(data)) for _ in range(100))]
        assert [r.decoded(a, b) for a, b in spans] == r.decoded_many(spans) == [data[a:b] for a, b in spans]


def test_a_store_that_cannot_pin_is_checked_at_opening_then_on_the_interval(monkeypatch, bgzf_text):
    from dataplug.storage import StorageObject

    data, payload = bgzf_text
    fs = fsspec.filesystem("memory")
    url = f"memory://reader-{random.random()}/unpinned.txt.gz"
    fs.pipe_file(url, payload)
    co = CloudObject.from_url(UTF8Text, url).preprocess(progress=False)
    assert not co.obj.policy.supports_pinning
    checks = []
    real = StorageObject.check_unchanged
    monkeypatch.setattr(StorageObject, "check_unchanged", lambda self, expect: (checks.append(self.url), real(self, expect))[1])
    once, every = co.reader(check_interval=None), co.reader(check_interval=0)
    assert len(checks) == 2  # one each, at opening
    for r in (once, every):
        assert [r.decoded(a, a + 300) for a in (0, 70_000, 140_000)] == [data[a : a + 300] for a in (0, 70_000, 140_000)]
    assert len(checks) == 2 + 3
    fs.pipe_file(url, stored("bgzf", data.replace(b"\t", b" ")))
    with pytest.raises(StaleIndexError):
        every.decoded(0, 10)
    assert once.decoded(0, 300) == data[:300]  # from its LRU, never asked again
