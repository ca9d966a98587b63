"""bzip2 under every line framing: one stream of many blocks, many streams (pbzip2, ``cat a.bz2 b.bz2``),
block starts found by a bit search and confirmed by decoding, workers that rebuild streams from block bits;
every record exactly once for every slice count, and clear errors for corrupt objects."""

from __future__ import annotations

import bz2
import hashlib
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dataplug.codecs.bzip2 as bzip2_codec
from dataplug import CloudObject, CorruptIndexError, InvalidFormatError
from dataplug.codecs import detect_codec
from dataplug.codecs.bzip2 import BLOCK_MAGIC, END_MAGIC, Bzip2Codec, decode_prefix, find_magic, rebuild
from dataplug.formats.generic.csv import CSV
from dataplug.formats.generic.csv import partition_num_chunks as csv_chunks
from dataplug.formats.generic.text import UTF8Text
from dataplug.formats.generic.text import partition_num_chunks as text_chunks
from dataplug.formats.genomics.fastq import FASTQ, partition_reads_batches, partition_sequences_per_chunk
from dataplug.testing.data import illumina_fastq, make_fastq
from dataplug.testing.sidecar import npy, read_manifest, resign, write_manifest
from tests.codec_cases import SLOW, every_line_once, every_row_once, fastq_oracle
from tests.test_csv import csv_files
from tests.test_large import LARGE, _text
from tests.test_text import TEXT, expected_lines

KINDS = ["stream", "streams"]


def encode(data: bytes, kind: str, seed: int = 0) -> bytes:
    """One stream, or streams cut at random places (some empty), as ``cat a.bz2 b.bz2`` makes them."""
    if kind == "stream":
        return bz2.compress(data, 1 + seed % 9)
    rng = np.random.default_rng(seed)
    cuts = sorted(int(x) for x in rng.integers(0, len(data) + 1, 4))
    return b"".join(bz2.compress(data[a:b], 1) for a, b in zip([0, *cuts], [*cuts, len(data)]))


def many_blocks(n: int, seed: int) -> bytes:
    """Random text lines of about ``n`` bytes: at level 1 (100 kB blocks) one stream of several blocks."""
    rng = np.random.default_rng(seed)
    return _text(rng, n)


@SLOW
@given(text=TEXT, kind=st.sampled_from(KINDS), seed=st.integers(0, 99))
def test_text_every_line_once(local_store, text, kind, seed):
    data = text.encode()
    co = CloudObject.from_url(UTF8Text, local_store.put(f"t{len(data)}-{kind}-{seed}.bz2", encode(data, kind, seed)))
    co.preprocess(force=True, sample_bytes=7)
    assert co.attributes.compression == "bzip2" and co.attributes.uncompressed_size == len(data)
    lines = expected_lines(text)
    assert co.attributes.lines == len(lines)
    every_line_once(co, text, lines)


@SLOW
@given(file=csv_files(), kind=st.sampled_from(KINDS), seed=st.integers(0, 99))
def test_csv_every_row_once(local_store, file, kind, seed):
    data, nrows, ncols = file
    co = CloudObject.from_url(CSV, local_store.put(f"c{len(data)}-{kind}-{seed}.csv.bz2", encode(data, kind, seed)))
    co.preprocess(force=True, sample_bytes=5)
    assert co.attributes.rows == nrows
    every_row_once(co, data, nrows, ncols)


@settings(max_examples=15, deadline=None)
@given(reads=st.one_of(st.integers(0, 30), st.integers(31, 1500)), kind=st.sampled_from(KINDS), seed=st.integers(0, 2**16), slices=st.integers(1, 40))
def test_fastq_every_read_once(tmp_path_factory, reads, kind, seed, slices):
    """Up to ~350 kB of reads: several 100 kB blocks in one stream, or streams of several blocks (every
    slice decodes whole blocks, so slice counts stay low where reads are many)."""
    data = make_fastq(reads, seed)
    path = tmp_path_factory.mktemp("fq") / "r.fq.bz2"
    path.write_bytes(bz2.compress(data, 1) if kind == "stream" else encode(data, kind, seed))
    co = CloudObject.from_url(FASTQ, str(path)).preprocess(sample_bytes=97)
    assert co.attributes.reads == reads
    expected = fastq_oracle(data)
    for n in sorted({1, 2, slices, reads + 2}) if reads <= 30 else (1, slices):
        for strategy, arg in ((partition_reads_batches, n), (partition_sequences_per_chunk, max(1, -(-reads // n)))):
            got = co.partition(strategy, arg)
            assert [r for s in got for r in s.reads()] == expected
            assert all(s.first % 4 == 0 for s in got)


@pytest.mark.parametrize("level", [1, 9])
def test_one_stream_of_many_blocks(store, level):
    data = many_blocks(1_500_000, level)
    co = CloudObject.from_url(UTF8Text, store.put(f"many-{level}.txt.bz2", bz2.compress(data, level)), storage_options=store.options)
    co.preprocess()
    assert co.attributes.checkpoints >= (14 if level == 1 else 2) and co.attributes.lines == data.count(b"\n")
    for n in (1, 2, 3, 17) if level == 9 else (1, 2, 3, 5, 17, 40):
        slices = co.partition(text_chunks, n)
        assert b"".join(s.raw() for s in slices) == data
        assert len(slices) == n


def test_csv_with_quoted_newlines_over_pbzip2_like_streams(local_store):
    """pbzip2 writes one stream per 900 kB block; here per 100 kB, with quoted newlines across them."""
    rows = "".join(f'{i},"name {i}\nsecond line",{i * 0.5}\n' for i in range(60_000))
    data = ("id,name,value\n" + rows).encode()
    stored = b"".join(bz2.compress(data[i : i + 100_000], 9) for i in range(0, len(data), 100_000))
    co = CloudObject.from_url(CSV, local_store.put("p.csv.bz2", stored)).preprocess()
    assert co.attributes.rows == 60_000 and co.attributes.checkpoints == -(-len(data) // 100_000)
    ids = np.concatenate([s.to_arrow(columns=["id"]).column("id").to_numpy() for s in co.partition(csv_chunks, 13)])
    assert np.array_equal(ids, np.arange(60_000))


def test_detected_from_the_bytes(local_store):
    data = b"".join(b"line %d\n" % i for i in range(5000))
    assert detect_codec(bz2.compress(data)) == "bzip2" and detect_codec(bz2.compress(b"")) == "bzip2"
    assert detect_codec(b"BZh9 is how this text starts\n") == "none"
    co = CloudObject.from_url(UTF8Text, local_store.put("no-suffix.txt", bz2.compress(data))).preprocess()
    assert "".join(s.get() for s in co.partition(text_chunks, 3)).encode() == data


def test_byte_order_mark_behind_a_whole_block(local_store):
    """The first decoded bytes need the whole first block, which is longer than the usual first read."""
    data = "\ufeff".encode() + many_blocks(900_000, 3)
    stored = bz2.compress(data, 9)
    assert len(stored) > 64 * 1024
    co = CloudObject.from_url(UTF8Text, local_store.put("bom.txt.bz2", stored)).preprocess()
    assert co.attributes.data_start == 3
    assert "".join(s.get() for s in co.partition(text_chunks, 4)).encode() == data[3:]


@settings(max_examples=40, deadline=None)
@given(prefix=st.binary(max_size=40), suffix=st.binary(min_size=1, max_size=40), shift=st.integers(0, 7), magic=st.sampled_from([BLOCK_MAGIC, END_MAGIC]))
def test_bit_search_finds_the_magic_at_any_bit_offset(prefix, suffix, shift, magic):
    bits = (int.from_bytes(prefix, "big") << (48 + shift) | magic << shift) << (8 * len(suffix)) | int.from_bytes(suffix, "big")
    data = bits.to_bytes(len(prefix) + 7 + len(suffix), "big")
    at = 8 * len(prefix) + 8 - shift
    assert at in find_magic(data, magic, 0, 8 * len(data))
    assert at not in find_magic(data, magic, at + 1, 8 * len(data)) and at not in find_magic(data, magic, 0, at)


def test_rebuilt_streams_decode_any_run_of_blocks(local_store):
    data = many_blocks(700_000, 1)
    stored = bz2.compress(data[:400_000], 1) + bz2.compress(data[400_000:], 2)
    co = CloudObject.from_url(UTF8Text, local_store.put("r.bz2", stored)).preprocess()
    t = co.index().tables
    blocks = list(zip(t["bzip2_start"].tolist(), t["bzip2_end"].tolist()))
    u = t["bzip2_decoded"].tolist()
    assert len(blocks) >= 6 and blocks[0][0] == 32
    for i, j in ((0, 1), (1, 4), (2, len(blocks)), (3, 5)):
        assert bz2.decompress(rebuild(stored, 0, blocks[i:j])) == data[u[i] : u[j]]


def test_decoding_stops_at_the_bytes_wanted():
    """A reader ending inside its last block decodes only up to there, across streams too."""
    parts = [many_blocks(150_000, seed) for seed in range(3)]
    data, stored = b"".join(parts), b"".join(bz2.compress(part, 1) for part in parts)
    for want in (1, 99_999, len(parts[0]), len(parts[0]) + 1, 400_000, len(data), len(data) + 5):
        assert decode_prefix(stored, want) == data[:want]


def test_false_magic_candidates_are_merged_into_their_block(local_store, monkeypatch):
    """A block magic found inside a block's data (one in 2**48 bit offsets) fails to decode and is merged."""
    data = many_blocks(500_000, 4)
    stored = bz2.compress(data, 1)
    true = find_magic(stored, BLOCK_MAGIC, 0, 8 * len(stored))
    fake = [b + 1000 + 37 * k for k, b in enumerate(true) for _ in range(k % 3)]
    real_find = bzip2_codec.find_magic

    def with_false_finds(buf, magic, start, end):
        found = real_find(buf, magic, start, end)
        extra = [f for f in fake if start <= f < end] if magic == BLOCK_MAGIC and len(buf) == len(stored) else []
        return sorted(found + extra)

    monkeypatch.setattr(bzip2_codec, "find_magic", with_false_finds)
    monkeypatch.setattr(bzip2_codec, "_PIECE", len(stored) + 1)  # one read, so the buffer is the object
    co = CloudObject.from_url(UTF8Text, local_store.put("fake.txt.bz2", stored)).preprocess()
    assert co.attributes.checkpoints == len(true)
    assert b"".join(s.raw() for s in co.partition(text_chunks, 9)) == data


def _flip(stored: bytes, at: int) -> bytes:
    bad = bytearray(stored)
    bad[at] ^= 0x5A
    return bytes(bad)


def test_corrupt_blocks_and_streams_are_clear_errors(local_store):
    data = many_blocks(400_000, 5)
    stored = bz2.compress(data, 1)
    crc_at = len(stored) - 2  # inside the stream CRC: only up to 7 padding bits follow it
    cases = [
        ("block", _flip(stored, len(stored) // 2), "corrupt bzip2 block"),
        ("truncated", stored[: len(stored) // 2], "truncated bzip2"),
        ("stream-crc", _flip(stored, crc_at), "corrupt bzip2"),
        ("trailing", stored + b"garbage after the stream", "not a bzip2 stream header"),
    ]
    for name, bad, message in cases:
        co = CloudObject.from_url(UTF8Text, local_store.put(f"{name}.bz2", bad))
        with pytest.raises(InvalidFormatError, match=message) as err:
            co.preprocess()
        assert co.url in str(err.value) and err.value.offset is not None


def test_forced_bzip2_on_other_bytes_is_a_clear_error(local_store):
    co = CloudObject.from_url(UTF8Text, local_store.put("plain.txt", b"just text\n"))
    with pytest.raises(InvalidFormatError, match="not bzip2"):
        co.preprocess(compression="bzip2")


def test_crafted_block_tables_are_refused():
    heads = {"bzip2_head_len": np.array([300, 0], np.uint16), "bzip2_head_crc": np.array([7, 0], np.uint32), "bzip2_layout": np.array([2], np.uint8)}
    good = {"bzip2_start": np.array([32, 5000], np.uint64), "bzip2_end": np.array([5000, 9000], np.uint64), "bzip2_decoded": np.array([0, 800, 1500], np.uint64), **heads}
    blobs = {bzip2_codec.HEADS_BLOB: 40}
    assert Bzip2Codec.validate("u", good, blobs, 1200, 1500) == 1500
    for tables, size, logical, blob_sizes in (
        ({**good, "bzip2_end": np.array([5001, 9000], np.uint64)}, 1200, 1500, blobs),
        (good, 1000, 1500, blobs),
        ({**good, "bzip2_decoded": np.array([0, 800, 10**9], np.uint64)}, 1200, 10**9, blobs),
        ({**good, "bzip2_decoded": np.array([0, 800], np.uint64)}, 1200, 800, blobs),
        ({**good, "bzip2_head_len": np.array([801, 0], np.uint16)}, 1200, 1500, blobs),  # a head longer than its block
        ({**good, "bzip2_head_len": np.array([300], np.uint16)}, 1200, 1500, blobs),
        ({**good, "bzip2_head_crc": np.array([-1, 0], np.int64)}, 1200, 1500, blobs),
        (good, 1200, 1500, {}),
        ({**good, "bzip2_layout": np.array([3], np.uint8)}, 1200, 1500, blobs),
    ):
        with pytest.raises(CorruptIndexError):
            Bzip2Codec.validate("u", tables, blob_sizes, size, logical)


def test_index_pass_decodes_on_several_threads(local_store, monkeypatch):
    data = many_blocks(1_200_000, 6)
    seen: set[int] = set()
    real = bzip2_codec._decode_block

    def recording(*args):
        seen.add(threading.get_ident())
        return real(*args)

    monkeypatch.setattr(bzip2_codec, "_decode_block", recording)
    monkeypatch.setattr(bzip2_codec, "default_workers", lambda: 2)
    co = CloudObject.from_url(UTF8Text, local_store.put("threads.txt.bz2", bz2.compress(data, 1))).preprocess()
    assert co.attributes.checkpoints >= 10 and len(seen) == 2


@pytest.fixture(scope="session")
def large_bzip2(tmp_path_factory):
    """≥ 64 MiB of text as two bzip2 streams of level 1 (compressed on two threads: bz2 releases the GIL)."""
    text = _text(np.random.default_rng(99), LARGE)
    half = len(text) // 2
    with ThreadPoolExecutor(2) as pool:
        parts = list(pool.map(lambda part: bz2.compress(part, 1), (text[:half], text[half:])))
    path = tmp_path_factory.mktemp("large-bzip2") / "text.bz2"
    path.write_bytes(b"".join(parts))
    return str(path), text


def test_large_text_at_default_settings(large_bzip2):
    url, plain = large_bzip2
    co = CloudObject.from_url(UTF8Text, url).preprocess()
    assert co.attributes.lines == plain.count(b"\n") and co.attributes.checkpoints > 600
    slices = co.partition(text_chunks, 16)
    with ThreadPoolExecutor(2) as pool:
        parts = list(pool.map(lambda s: s.raw(), slices))
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    assert digest.hexdigest() == hashlib.sha256(plain).hexdigest()


# -- block heads: a slice finishes its last record from the next block's stored head ---------------------------


def _illumina_bz2(local_store, name: str, reads: int, streams: int = 1) -> tuple[CloudObject, bytes]:
    """Illumina-shaped reads as bzip2 of 100 kB blocks, in ``streams`` streams cut at arbitrary bytes."""
    data = illumina_fastq(reads, 3)
    cuts = [len(data) * k // streams + 17 * k for k in range(streams)] + [len(data)]
    stored = b"".join(bz2.compress(data[a:b], 1) for a, b in pairwise(cuts))
    return CloudObject.from_url(FASTQ, local_store.put(name, stored)).preprocess(), data


def _decoded_blocks(slices) -> int:
    return sum(len(s.source.blocks) for s in slices)


@pytest.mark.parametrize("streams", [1, 3])
def test_fastq_slices_decode_only_their_own_blocks(local_store, streams):
    """Every read once against the oracle for N in 1, 3, 7, 64 and more slices than reads (on a small object);
    where the planner puts every boundary at a block start (N = 3: two blocks a slice), each block is decoded
    by one slice only, the read crossing each edge coming from the next block's stored head.
    ``cat a.bz2 b.bz2 c.bz2`` too."""
    co, data = _illumina_bz2(local_store, f"heads-{streams}.fq.bz2", 2000, streams)
    blocks = co.attributes.checkpoints
    assert blocks >= 6 and co.attributes.reads == 2000
    expected = fastq_oracle(data)
    for n in (1, 3, 7, 64):
        slices = co.partition(partition_reads_batches, n)
        assert [r for s in slices for r in s.reads()] == expected
        if n == 3:
            assert _decoded_blocks(slices) == blocks
            assert sum(bool(s.source.head) for s in slices) == 2
    small, data = _illumina_bz2(local_store, f"few-{streams}.fq.bz2", 40, streams)
    assert [r for s in small.partition(partition_reads_batches, 41) for r in s.reads()] == fastq_oracle(data)


def test_records_longer_than_a_head_or_a_block(local_store):
    """Lines longer than a head (and one spanning three 100 kB blocks) leave heads short or empty: the slice
    before decodes the next block, as without heads, and every line still comes once."""
    rng = np.random.default_rng(8)
    lines = [bytes(rng.integers(97, 123, int(n), dtype=np.uint8)) for n in rng.integers(3000, 9000, 60)]
    lines[30] = lines[30] * 40  # about 250 kB: spans three blocks
    data = b"\n".join(lines) + b"\n"
    co = CloudObject.from_url(UTF8Text, local_store.put("long.txt.bz2", bz2.compress(data, 1))).preprocess()
    assert co.attributes.checkpoints >= 5
    heads = co.index().tables["bzip2_head_len"]
    assert heads.max() <= bzip2_codec.HEAD_MAX
    for n in (1, 3, 7, 61):
        slices = co.partition(text_chunks, n)
        assert b"".join(s.raw() for s in slices) == data
        assert [line for s in slices for line in s.raw().split(b"\n")[:-1]] == lines


def test_csv_quoted_newlines_across_a_block_edge(local_store):
    """One stream of 100 kB blocks whose rows all hold quoted newlines: the head is cut at line feeds, some
    inside quotes, and the rows are still whole and once."""
    rows = "".join(f'{i},"line one of {i}\nline two",{i * 0.25}\n' for i in range(30_000))
    data = ("id,text,value\n" + rows).encode()
    co = CloudObject.from_url(CSV, local_store.put("quoted.csv.bz2", bz2.compress(data, 1))).preprocess()
    assert co.attributes.rows == 30_000 and co.attributes.checkpoints >= 8
    for n in (1, 7, 64):
        table = [s.to_arrow() for s in co.partition(csv_chunks, n)]
        ids = np.concatenate([t.column("id").to_numpy() for t in table])
        assert np.array_equal(ids, np.arange(30_000))
        assert all(text.endswith("\nline two") for t in table for text in t.column("text").to_pylist())


def test_a_crafted_head_is_a_corrupt_index_never_wrong_reads(local_store):
    """A head blob whose bytes differ from the heads' CRCs, or head lengths that shift the heads, fail
    when a slice uses a head: CorruptIndexError, never other reads."""
    co, _ = _illumina_bz2(local_store, "crafted.fq.bz2", 2000)
    tables = co.index().tables
    lengths = tables["bzip2_head_len"].copy()
    raw = zlib.decompress(co.index().blobs[bzip2_codec.HEADS_BLOB].read())
    edits = [
        ("blobs", bzip2_codec.HEADS_BLOB, zlib.compress(raw.replace(b"@", b"#"))),  # other bytes, same length
        ("blobs", bzip2_codec.HEADS_BLOB, zlib.compress(raw[:-1])),  # one byte short of the lengths' sum
        ("blobs", bzip2_codec.HEADS_BLOB, zlib.compress(raw * 50)),  # more than the lengths say: decompression stops
        ("blobs", bzip2_codec.HEADS_BLOB, b"not zlib at all"),
        ("tables", "bzip2_head_len", npy(np.roll(lengths, 1))),  # heads cut at other places
    ]
    for kind, name, payload in edits:
        co.preprocess(force=True)
        resign(co.index_location, kind, name, payload)
        fresh = CloudObject.from_url(FASTQ, co.url)
        with pytest.raises(CorruptIndexError, match="head") as err:
            [s.raw() for s in fresh.partition(partition_reads_batches, 3)]  # slices that end in heads
        assert co.url in str(err.value)


def test_a_heads_blob_decompresses_only_as_far_as_its_lengths(monkeypatch):
    """Heads all empty (lines longer than a head) with a blob that inflates to a megabyte: refused after
    at most one byte is inflated, never the whole blob (zlib reads a bound of 0 as none)."""
    inflated: list[int] = []
    real = zlib.decompressobj

    class Counting:
        def __init__(self) -> None:
            self.d = real()

        def __getattr__(self, name: str):
            return getattr(self.d, name)

        def decompress(self, data: bytes, max_length: int = 0) -> bytes:
            out = self.d.decompress(data, max_length)
            inflated.append(len(out))
            return out

    monkeypatch.setattr(bzip2_codec.zlib, "decompressobj", Counting)
    heads = bzip2_codec.BlockHeads("u", zlib.compress(bytes(2**20)), np.zeros(3, np.int64), np.zeros(3, np.int64))
    with pytest.raises(CorruptIndexError, match="0 bytes"):
        heads.head(1)
    assert 0 < sum(inflated) <= 1


def test_an_index_without_heads_is_refused_and_rebuilt(local_store):
    """An index of layout 1 (no heads; as an earlier dataplug wrote it) is refused with the command that
    rebuilds it, and preprocess() rebuilds it without force."""
    co, data = _illumina_bz2(local_store, "old.fq.bz2", 800)
    manifest = read_manifest(co.index_location)
    for name in ("bzip2_layout", "bzip2_head_len", "bzip2_head_crc"):
        del manifest["tables"][name]
    del manifest["blobs"][bzip2_codec.HEADS_BLOB]
    write_manifest(co.index_location, manifest)
    old = CloudObject.from_url(FASTQ, co.url)
    with pytest.raises(CorruptIndexError, match=r"layout .*preprocess\(force=True\)"):
        old.partition(partition_reads_batches, 3)
    rebuilt = CloudObject.from_url(FASTQ, co.url).preprocess()
    assert rebuilt.index().tables["bzip2_layout"].tolist() == [bzip2_codec.LAYOUT]
    assert [r for s in rebuilt.partition(partition_reads_batches, 3) for r in s.reads()] == fastq_oracle(data)
