"""The checkpoint table every seekable codec shares (locate, fetch, cuts, validate), one request per slice for
every codec counted through the proxy, and the options the codecs declare."""

from __future__ import annotations

import pickle

import fsspec
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import dataplug.codecs.gzip.codec as gzip_codec
from dataplug import CloudObject, StrategyArgumentError
from dataplug.codecs import CheckpointTable, registered_codecs
from dataplug.codecs.checkpoints import column
from dataplug.codecs.gzip.codec import GzipReader, WindowRef
from dataplug.errors import CorruptIndexError
from dataplug.storage.handle import clear_shared
from dataplug.formats.generic.text import UTF8Text
from dataplug.formats.genomics.fastq import FASTQ, partition_reads_batches
from dataplug.testing.codecs import encode, seekable
from dataplug.testing.data import make_fastq
from dataplug.testing.fixtures import make_bucket, proxied_options


@st.composite
def tables(draw) -> CheckpointTable:
    """A table of 1 to 30 checkpoints with the end row; every checkpoint decodes to at least one byte."""
    sizes = draw(st.lists(st.integers(1, 1000), min_size=1, max_size=30))
    lengths = draw(st.lists(st.integers(0, 500), min_size=len(sizes), max_size=len(sizes)))
    logical = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
    compressed = np.concatenate(([draw(st.integers(0, 50))], np.cumsum(lengths))).astype(np.int64)
    compressed[1:] += compressed[0]
    return CheckpointTable.of("mem://t", "test index", compressed, logical, margin=draw(st.integers(0, 1)), ahead=draw(st.sampled_from([None, 0, 64])))


@given(table=tables(), data=st.data())
def test_fetch_covers_the_range_from_its_checkpoint(table, data):
    u, c = table.logical, table.compressed
    a = data.draw(st.integers(0, table.logical_size))
    b = data.draw(st.integers(a, table.logical_size))
    fetch = table.fetch(a, b)
    k = fetch.row
    assert table.locate(a) == k and u[k] <= a and (k + 1 == len(table) or u[k + 1] > a)
    j = table.stop(k, b)  # the data up to ``b`` lies before checkpoint j's
    assert j > k and (u[j] >= b or j == len(table)) and (j == k + 1 or u[j - 1] < b)
    assert fetch.start == c[k] <= fetch.first_end <= fetch.end <= table.data_end
    assert fetch.end >= min(c[j] + table.margin, table.data_end)
    if table.ahead is None:
        assert fetch.first_end == fetch.end
    assert np.array_equal(table.cuts(), u[:-1])


def test_validate_refuses_tables_that_do_not_fit_the_object():
    def table(c, u):
        return CheckpointTable.of("s3://b/x.gz", "test index", np.array(c), np.array(u))

    table([0, 10, 20], [0, 100, 200]).validate("s3://b/x.gz", 20, "test index", max_ratio=10)
    table([0, 10, 10], [0, 100, 100]).validate("s3://b/x.gz", 20, "test index", max_ratio=10, strict=False)
    bad = [
        (table([0, 10, 20], [5, 100, 200]), 20, "start the decoded stream"),
        (table([0, 10, 20], [0, 100, 90]), 20, "decoded offsets must increase"),
        (table([0, 10, 10], [0, 100, 100]), 20, "decoded offsets must increase"),  # strict: an empty checkpoint
        (table([0, 30, 20], [0, 100, 200]), 30, "inside the object"),
        (table([0, 10, 20], [0, 100, 200]), 19, "inside the object"),
        (table([0, 10, 20], [0, 100, 201]), 20, "more decoded bytes"),
    ]
    for t, size, message in bad:
        with pytest.raises(CorruptIndexError, match=f"bad test index: .*{message}") as err:
            t.validate("s3://b/x.gz", size, "test index", max_ratio=10)
        assert err.value.url == "s3://b/x.gz"
    with pytest.raises(CorruptIndexError, match="mismatched lengths"):
        CheckpointTable.of("u", "test index", np.array([0, 1]), np.array([0, 1]), columns={"bits": np.array([0, 0])})
    with pytest.raises(CorruptIndexError, match="'x' missing"):
        column("u", "test index", {}, "x")
    with pytest.raises(CorruptIndexError, match="1-d array of integers"):
        column("u", "test index", {"x": np.zeros(3)}, "x")


# -- one request per slice, counted through the proxy --------------------------------------------------------


def _stored(codec: str, data: bytes) -> bytes:
    """``data`` under ``codec``, cut so that slices start at several checkpoints (gzip: windows)."""
    return seekable(data, 64 * 1024) if codec == "zstd" else encode(data, codec)


@pytest.fixture
def bucket(s3_options) -> str:
    return make_bucket(s3_options)


def _put(s3_options, bucket: str, name: str, blob: bytes) -> str:
    fs = fsspec.filesystem("s3", **s3_options)
    fs.pipe_file(f"{bucket}/{name}", blob)
    fs.invalidate_cache()
    return f"s3://{bucket}/{name}"


@pytest.mark.parametrize("codec", ["gzip", "bgzf", "zstd", "bzip2"])
def test_reading_a_slice_is_one_request(fault_proxy, s3_options, bucket, codec):
    data = make_fastq(6000, 3)
    url = _put(s3_options, bucket, f"r.fastq.{codec}", _stored(codec, data))
    co = CloudObject.from_url(FASTQ, url, proxied_options(s3_options, fault_proxy)).preprocess(spacing=64 * 1024, progress=False)
    slices = co.partition(partition_reads_batches, 8)
    if codec == "gzip":
        assert sum(bool(s.source.window) for s in slices) >= 4  # most slices start at a checkpoint with a window
    reads = []
    for s in slices:
        clear_shared()  # each slice read as a worker reads it alone (in order, zstd slices share one decoder)
        fault_proxy.set_mode(None)  # clears the log
        reads += s.reads()
        assert [r.method for r in fault_proxy.requests] == ["GET"], (codec, s.number, [r.target for r in fault_proxy.requests])
    assert len(reads) == 6000


def test_gzip_slices_carry_their_windows_and_the_partition_reads_the_blob_once(fault_proxy, s3_options, bucket):
    """A windows blob too large to travel inside the manifest is read once by the partition, not by the
    slices; each slice carries only its own window, CRC-checked on the worker."""
    data = make_fastq(20000, 4)
    url = _put(s3_options, bucket, "r.fastq.gz", encode(data, "gzip"))
    options = proxied_options(s3_options, fault_proxy)
    CloudObject.from_url(FASTQ, url, options).preprocess(spacing=32 * 1024, progress=False)
    co = CloudObject.from_url(FASTQ, url, options)
    windows = co.index().blob("windows")
    assert windows.loaded() is None  # a file of its own, not inline
    fault_proxy.set_mode(None)
    slices = co.partition(partition_reads_batches, 16)
    assert sum("windows" in r.target for r in fault_proxy.requests) == 1
    carried = [s.source.window for s in slices]
    assert all(isinstance(w, bytes) for w in carried) and 0 < max(map(len, carried)) < windows.size
    assert all(len(pickle.dumps(s)) < len(w) + 8 * 1024 for s, w in zip(slices, carried))
    assert [r for s in pickle.loads(pickle.dumps(slices)) for r in s.reads()] == [r for s in slices for r in s.reads()]
    k = next(i for i, w in enumerate(carried) if w)
    source = slices[k].source
    flipped = GzipReader(**{**source.__dict__, "window": bytes([source.window[0] ^ 1]) + source.window[1:]})
    with pytest.raises(CorruptIndexError, match="CRC-32"):
        flipped.read()


def test_a_windows_blob_over_the_load_limit_stays_in_the_sidecar(local_store, monkeypatch):
    data = make_fastq(3000, 5)
    co = CloudObject.from_url(FASTQ, local_store.put("r.fastq.gz", encode(data, "gzip"))).preprocess(spacing=32 * 1024, progress=False)
    monkeypatch.setattr(gzip_codec, "WINDOWS_LOAD_MAX", 0)
    slices = co.partition(partition_reads_batches, 6)
    assert sum(isinstance(s.source.window, WindowRef) for s in slices) >= 3
    assert [r for s in slices for r in s.reads()] == [r for s in co.partition(partition_reads_batches, 1) for r in s.reads()]


# -- options ---------------------------------------------------------------------------------------------------


def test_codecs_declare_their_options_and_framings_offer_them(local_store):
    declared = {name for codec in registered_codecs() for name in codec.options}
    assert {"spacing", "adopt_index", "gzi"} <= declared
    assert declared | {"compression"} <= set(UTF8Text.all_options()) and "gzi" in (UTF8Text.__doc__ or "")
    co = CloudObject.from_url(UTF8Text, local_store.put("t.txt.gz", encode(b"a\nb\n" * 5000, "gzip")))
    with pytest.raises(StrategyArgumentError, match="spacin"):
        co.preprocess(spacin=4096)
    co.preprocess(spacing=4096, progress=False)
    assert co.index().options["spacing"] == 4096 and co.attributes.spacing == 4096


def test_the_pieces_of_one_read_check_the_identity_once(monkeypatch):
    """On a store that cannot pin reads (memory://), a slice's compressed range read in several pieces asks
    for the object's identity once, not once a piece; a replaced object is still refused."""
    import os

    from dataplug.codecs.checkpoints import compressed_pieces
    from dataplug.errors import StaleIndexError
    from dataplug.storage import StorageObject

    data = bytes(range(256)) * 4096
    obj = StorageObject(f"memory://dataplug-pieces/{os.getpid()}/o.bin")
    obj.write_bytes(data)
    info = obj.info()
    infos = []
    real = obj.fs.info
    monkeypatch.setattr(obj.fs, "info", lambda path, **kw: infos.append(path) or real(path, **kw))
    pieces = list(compressed_pieces(obj, info, 0, 1, len(data)))
    assert b"".join(pieces) == data and len(pieces) > 2 and len(infos) == 1
    obj.write_bytes(data[::-1])
    with pytest.raises(StaleIndexError):
        next(compressed_pieces(obj, info, 0, 1, len(data)))
