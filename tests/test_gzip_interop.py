"""gzip indexes shared with other tools: export GZIDX for indexed_gzip and rapidgzip and gztool's index for
gztool, adopt theirs."""

from __future__ import annotations

import io
import shutil
import struct
import subprocess

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataplug import CloudObject, InvalidFormatError
from dataplug.codecs.gzip import export_index
from dataplug.formats.genomics.fastq import FASTQGZip, partition_reads_batches
from tests.test_fastq_gzip import check_reads, compress, make_fastq

try:
    import indexed_gzip
except ImportError:
    indexed_gzip = None
needs_indexed_gzip = pytest.mark.skipif(indexed_gzip is None, reason="indexed_gzip is not installed")
needs_gztool = pytest.mark.skipif(shutil.which("gztool") is None, reason="gztool is not installed")
SLOW = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def indexed(local_store, name: str, data: bytes, members: int = 1, **options) -> tuple[CloudObject, str]:
    url = local_store.put(name, compress(data, 6, members))
    co = CloudObject.from_url(FASTQGZip, url)
    co.preprocess(force=True, **options)
    return co, url


def igzip_index(path: str, spacing: int) -> bytes:
    """indexed_gzip's own full index of ``path``, exported."""
    with indexed_gzip.IndexedGzipFile(path, spacing=spacing) as f:
        f.build_full_index()
        out = io.BytesIO()
        f.export_index(fileobj=out)
    return out.getvalue()


@needs_indexed_gzip
@pytest.mark.parametrize("members", [1, 3])
def test_indexed_gzip_reads_an_exported_index(local_store, members):
    data = make_fastq(6000, 7)
    co, url = indexed(local_store, "x.fastq.gz", data, members, spacing=40_000)
    assert co.attributes.checkpoints > 10
    export_index(co, url + ".gzidx")
    rng = np.random.default_rng(members)
    with indexed_gzip.IndexedGzipFile(url, index_file=url + ".gzidx") as f:
        assert len(list(f.seek_points())) >= co.attributes.checkpoints - members
        for offset in rng.integers(0, len(data), 100).tolist():
            f.seek(offset)
            assert f.read(1000) == data[offset : offset + 1000], offset


def test_rapidgzip_reads_an_exported_index(local_store):
    rapidgzip = pytest.importorskip("rapidgzip")
    data = make_fastq(6000, 8)
    co, url = indexed(local_store, "x.fastq.gz", data, spacing=40_000)
    export_index(co, url + ".gzidx")
    rng = np.random.default_rng(1)
    with rapidgzip.RapidgzipFile(url, parallelization=1) as f:
        with open(url + ".gzidx", "rb") as index:
            f.import_index(index)
        for offset in rng.integers(0, len(data), 100).tolist():
            f.seek(offset)
            assert f.read(1000) == data[offset : offset + 1000], offset


@needs_indexed_gzip
@SLOW
@given(reads=st.integers(1, 2500), seed=st.integers(0, 2**16), members=st.integers(1, 3), spacing=st.sampled_from([40_000, 65536, 200_000]))
def test_adopted_indexed_gzip_index_gives_every_read_once(local_store, reads, seed, members, spacing):
    data = make_fastq(reads, seed)
    url = local_store.put(f"a{reads}-{seed}-{members}-{spacing}.fastq.gz", compress(data, 6, members))
    local_store.put(f"a{reads}-{seed}-{members}-{spacing}.fastq.gz.gzidx", igzip_index(url, spacing))
    co = CloudObject.from_url(FASTQGZip, url)
    co.preprocess(force=True, adopt_index=url + ".gzidx")
    assert co.attributes.reads == reads and co.attributes.uncompressed_size == len(data)
    for n in sorted({1, 2, 3, 7, reads}):
        check_reads(co, data, co.partition(partition_reads_batches, n))


@needs_indexed_gzip
def test_adopted_index_matches_our_own(store):
    data = make_fastq(8000, 3)
    url = store.put("x.fastq.gz", compress(data, 6, 1))
    ours = CloudObject.from_url(FASTQGZip, url).preprocess(force=True, spacing=65536)
    local = ours.obj.read_all()
    with indexed_gzip.IndexedGzipFile(fileobj=io.BytesIO(local), spacing=65536) as f:
        f.build_full_index()
        exported = io.BytesIO()
        f.export_index(fileobj=exported)
    index_url = store.put("x.fastq.gz.gzidx", exported.getvalue())
    adopted = CloudObject.from_url(FASTQGZip, url, index_location=store.url("other")).preprocess(force=True, adopt_index=index_url)
    assert adopted.attributes.reads == ours.attributes.reads
    assert adopted.attributes.checkpoints > 5
    assert adopted.index().nbytes() < 0.5 * len(exported.getvalue())  # windows kept sparse and compressed
    check_reads(adopted, data, adopted.partition(partition_reads_batches, 9))


def test_adopting_a_rapidgzip_index(local_store):
    rapidgzip = pytest.importorskip("rapidgzip")
    data = make_fastq(8000, 4)
    url = local_store.put("x.fastq.gz", compress(data, 6, 1))
    with rapidgzip.RapidgzipFile(url, parallelization=1, chunk_size=64 * 1024) as f:
        f.read()
        with open(url + ".gzidx", "wb") as out:
            f.export_index(out)
    co = CloudObject.from_url(FASTQGZip, url).preprocess(force=True, adopt_index=url + ".gzidx")
    check_reads(co, data, co.partition(partition_reads_batches, 5))


def corrupt(index: bytes, what: str) -> bytes:
    """A GZIDX index with one thing wrong."""
    out = bytearray(index)
    count = struct.unpack_from("<I", out, 31)[0]
    if what == "size":
        struct.pack_into("<Q", out, 7, struct.unpack_from("<Q", out, 7)[0] + 1)
    elif what == "magic":
        out[:5] = b"GZIPX"
    elif what == "truncated":
        del out[-100:]
    elif what == "window":
        # point 2's window: the first window follows the point table (points 1, 2, ... have windows)
        start = 35 + 18 * count + 32768
        for i in range(start + 100, start + 32768, 97):
            out[i] ^= 0x5A
    elif what == "offset":
        at = 35 + 18 * 2
        struct.pack_into("<Q", out, at, struct.unpack_from("<Q", out, at)[0] + 3)
    elif what == "bits":
        at = 35 + 18 * 2 + 16
        out[at] = (out[at] + 3) % 8
    elif what == "uncompressed":
        at = 35 + 18 * 2 + 8
        struct.pack_into("<Q", out, at, struct.unpack_from("<Q", out, at)[0] + 10)
    return bytes(out)


@needs_indexed_gzip
@pytest.mark.parametrize("what", ["size", "magic", "truncated", "window", "offset", "bits", "uncompressed"])
def test_a_bad_adopted_index_is_a_clear_error(local_store, what):
    data = make_fastq(6000, 5)
    url = local_store.put("x.fastq.gz", compress(data, 6, 1))
    good = igzip_index(url, 65536)
    assert struct.unpack_from("<I", good, 31)[0] >= 4
    index_url = local_store.put("x.gzidx", corrupt(good, what))
    co = CloudObject.from_url(FASTQGZip, url)
    with pytest.raises(InvalidFormatError) as err:
        co.preprocess(force=True, adopt_index=index_url)
    assert url in str(err.value) or index_url in str(err.value)
    assert not co.is_preprocessed()


def test_export_needs_a_gzip_object(local_store):
    url = local_store.put("x.fastq", make_fastq(10, 1))
    co = CloudObject.from_url(FASTQGZip, url).preprocess()
    with pytest.raises(Exception, match="only gzip objects"):
        export_index(co, url + ".gzidx")
    with pytest.raises(ValueError, match="unknown index format"):
        export_index(co, url + ".gzidx", format="zip")


def gztool_extract(index: str, path: str, offset: int) -> bytes:
    """What gztool decodes from uncompressed byte ``offset`` on, through ``index`` (never rewriting it)."""
    return subprocess.run(["gztool", "-W", "-v", "0", "-I", index, "-b", str(offset), path], capture_output=True, check=True).stdout


@needs_gztool
@pytest.mark.parametrize("members", [1, 3])
def test_gztool_reads_an_exported_index(local_store, members):
    data = make_fastq(6000, 7)
    co, url = indexed(local_store, "x.fastq.gz", data, members, spacing=40_000)
    export_index(co, url + ".gzt", format="gztool")
    listing = subprocess.run(["gztool", "-l", "-I", url + ".gzt", url], capture_output=True, text=True, check=True)
    points = 1 + int(np.count_nonzero(co.index().tables["window_length"]))  # checkpoints on member headers are left out
    assert "Size of index file (v0)" in listing.stderr + listing.stdout
    assert f"Number of index points   : {points}\n" in listing.stderr + listing.stdout
    rng = np.random.default_rng(members)
    for offset in [0, len(data) - 1, *rng.integers(0, len(data), 40).tolist()]:
        assert gztool_extract(url + ".gzt", url, offset) == data[offset:], offset


@needs_gztool
@pytest.mark.parametrize("members", [1, 3])
def test_adopting_a_gztool_index(local_store, members):
    data = make_fastq(20_000, 3)  # 3.7 MB: gztool's span is at least 1 MiB
    url = local_store.put(f"g{members}.fastq.gz", compress(data, 6, members))
    subprocess.run(["gztool", "-f", "-v", "0", "-s", "1", "-x", "-I", url + ".gzi", "-i", url], check=True)  # -x: with line numbers
    with open(url + ".gzi", "rb") as fh:
        assert fh.read(16) == bytes(8) + b"gzipindX"
    co = CloudObject.from_url(FASTQGZip, url).preprocess(force=True, adopt_index=url + ".gzi")
    assert co.attributes.checkpoints >= 3 and co.attributes.uncompressed_size == len(data)
    for n in (1, 3, 7):
        check_reads(co, data, co.partition(partition_reads_batches, n))


@pytest.mark.parametrize("members", [1, 3])
def test_an_exported_gztool_index_is_adopted(local_store, members):
    data = make_fastq(6000, 9)
    co, url = indexed(local_store, "x.fastq.gz", data, members, spacing=40_000)
    export_index(co, url + ".gzt", format="gztool")
    with open(url + ".gzt", "rb") as fh:
        assert fh.read(16) == bytes(8) + b"gzipindx"
    adopted = CloudObject.from_url(FASTQGZip, url, index_location=local_store.url("other")).preprocess(force=True, adopt_index=url + ".gzt")
    assert adopted.attributes.reads == 6000
    check_reads(adopted, data, adopted.partition(partition_reads_batches, 5))


def corrupt_gztool(index: bytes, what: str) -> bytes:
    """One of our gztool exports with one thing wrong (points from byte 32: u64 out, u64 in, u32 bits, u32
    window length, the window)."""
    out = bytearray(index)
    second = 32 + 24  # point 0 has no window
    if what == "incomplete":
        struct.pack_into(">Q", out, 16, 0)
    elif what == "truncated":
        del out[second + 30 :]
    elif what == "window":
        out[second + 24 + 5] ^= 0xFF
    elif what == "offset":
        struct.pack_into(">Q", out, second + 8, struct.unpack_from(">Q", out, second + 8)[0] + 3)
    elif what == "uncompressed":
        struct.pack_into(">Q", out, second, struct.unpack_from(">Q", out, second)[0] + 10)
    return bytes(out)


@pytest.mark.parametrize("what", ["incomplete", "truncated", "window", "offset", "uncompressed"])
def test_a_bad_gztool_index_is_a_clear_error(local_store, what):
    data = make_fastq(6000, 5)
    co, url = indexed(local_store, "x.fastq.gz", data, spacing=40_000)
    export_index(co, url + ".gzt", format="gztool")
    with open(url + ".gzt", "rb") as fh:
        index_url = local_store.put("bad.gzt", corrupt_gztool(fh.read(), what))
    fresh = CloudObject.from_url(FASTQGZip, url, index_location=local_store.url("other"))
    with pytest.raises(InvalidFormatError) as err:
        fresh.preprocess(force=True, adopt_index=index_url)
    assert url in str(err.value) or index_url in str(err.value)
