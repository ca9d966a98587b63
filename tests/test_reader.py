"""The long-lived reader (``co.reader()``): decoded ranges exact over every codec, units decoded once and kept
in the LRU, region sets planned as few requests, identity checked at opening, on an interval or per pinned
request, and readers that never travel (pickling, fork, spawn)."""

from __future__ import annotations

import random

import pytest

from dataplug import CloudObject
from dataplug.formats.generic.text import UTF8Text
from dataplug.reader import Reader
from dataplug.storage import read_stats
from dataplug.testing.codecs import SUFFIXES, encode, gzip_member, seekable


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
