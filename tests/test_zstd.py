"""zstd under every line framing: the seekable format (seek table only, no decoding pass), several frames
(found by walking headers, some without their content size, with skippable and empty frames between) and
one frame; every record exactly once for every slice count, and clear errors for corrupt objects."""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import multiprocessing
import os
import time
import warnings
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from dataplug import CloudObject, CorruptIndexError, DataplugWarning, InvalidFormatError, StaleIndexError
from dataplug.codecs import detect_codec, zstd
from dataplug.codecs.zstd import SliceInsideFrameWarning, ZstdCodec, read_seek_table, seek_table
from dataplug.formats.generic.csv import CSV
from dataplug.formats.generic.text import UTF8Text
from dataplug.formats.generic.text import partition_num_chunks as text_chunks
from dataplug.formats.genomics.fasta import FASTA, partition_chunks_strategy
from dataplug.formats.genomics.fastq import FASTQ, partition_reads_batches
from dataplug.formats.genomics.vcf import VCF
from dataplug.formats.genomics.vcf import partition_num_chunks as vcf_chunks
from dataplug.framings.base import readers
from dataplug.storage.handle import clear_shared, shared
from dataplug.storage.object import StorageObject, read_stats
from dataplug.testing.codecs import frame, seekable
from dataplug.testing.data import illumina_fastq, make_fastq
from tests.codec_cases import SLOW, every_line_once, every_read_once, every_row_once, fastq_oracle
from tests.test_csv import csv_files
from tests.test_large import LARGE, _fastq, _text
from tests.test_text import TEXT, expected_lines

KINDS = ["seekable", "frames", "single"]
SKIPPABLE = (0x184D2A53).to_bytes(4, "little") + (5).to_bytes(4, "little") + b"hello"


def encode(data: bytes, kind: str, seed: int = 0) -> bytes:
    """``data`` as zstd of ``kind``. Seekable frames hold a few dozen bytes so small inputs get many; plain
    frames are cut at random places, some without their content size or with a checksum, with empty and
    skippable frames between (as pzstd writes)."""
    rng = np.random.default_rng(seed)
    if kind == "seekable":
        return seekable(data, 1 + seed % 60)
    if kind == "single":
        return frame(data, known=seed % 2 == 0, checksum=seed % 3 == 0)
    cuts = sorted(int(x) for x in rng.integers(0, len(data) + 1, 4))
    out = []
    for a, b in zip([0, *cuts], [*cuts, len(data)]):
        if rng.random() < 0.3:
            out.append(SKIPPABLE)
        out.append(frame(data[a:b], known=bool(rng.random() < 0.6), checksum=bool(rng.random() < 0.5)))
    return b"".join(out)


@SLOW
@given(text=TEXT, kind=st.sampled_from(KINDS), chunk_size=st.integers(1, 60), seed=st.integers(0, 99))
def test_text_every_line_once(local_store, text, kind, chunk_size, seed):
    data = text.encode()
    co = CloudObject.from_url(UTF8Text, local_store.put(f"t{len(data)}-{kind}-{chunk_size}-{seed}.zst", encode(data, kind, seed)))
    co.preprocess(force=True, chunk_size=chunk_size, sample_bytes=7)
    assert co.attributes.compression == "zstd" and co.attributes.uncompressed_size == len(data)
    lines = expected_lines(text)
    assert co.attributes.lines == len(lines)
    every_line_once(co, text, lines)


@SLOW
@given(file=csv_files(), kind=st.sampled_from(KINDS), chunk_size=st.integers(1, 60), seed=st.integers(0, 99))
def test_csv_every_row_once(local_store, file, kind, chunk_size, seed):
    data, nrows, ncols = file
    co = CloudObject.from_url(CSV, local_store.put(f"c{len(data)}-{kind}-{chunk_size}-{seed}.csv.zst", encode(data, kind, seed)))
    co.preprocess(force=True, chunk_size=chunk_size, sample_bytes=5)
    assert co.attributes.rows == nrows
    every_row_once(co, data, nrows, ncols)


@SLOW
@given(reads=st.one_of(st.integers(0, 20), st.integers(21, 150)), kind=st.sampled_from(KINDS), chunk_size=st.integers(16, 3000), seed=st.integers(0, 2**16))
def test_fastq_every_read_once(local_store, reads, kind, chunk_size, seed):
    data = make_fastq(reads, seed)
    co = CloudObject.from_url(FASTQ, local_store.put(f"q{reads}-{kind}-{chunk_size}-{seed}.fq.zst", encode(data, kind, seed * 7 + 1)))
    co.preprocess(force=True, chunk_size=chunk_size, sample_bytes=97)
    assert co.attributes.reads == reads
    every_read_once(co, fastq_oracle(data), range(1, reads + 3) if reads <= 20 else (1, 2, 7, reads + 2))


@pytest.mark.parametrize("kind", KINDS)
def test_fastq_on_s3_and_locally(store, kind):
    data = make_fastq(3000, 5)
    co = CloudObject.from_url(FASTQ, store.put(f"r.fastq.{kind}.zst", encode(data, kind, 11)), storage_options=store.options)
    co.preprocess(chunk_size=50_000)
    assert co.attributes.compression == "zstd"
    assert [r for s in co.partition(partition_reads_batches, 9) for r in s.reads()] == fastq_oracle(data)


def test_fasta_and_vcf_over_zstd(local_store):
    seqs = {f"chr{i}": "ACGT" * (15 * (i + 3)) for i in range(40)}
    fasta = "".join(f">{name} description\n" + "\n".join(seq[j : j + 60] for j in range(0, len(seq), 60)) + "\n" for name, seq in seqs.items()).encode()
    co = CloudObject.from_url(FASTA, local_store.put("g.fa.zst", seekable(fasta, 777))).preprocess(chunk_size=5000)
    assert co.attributes.compression == "zstd" and co.attributes.sequences == 40
    for n in (1, 5, 90):
        table = pa.concat_tables([s.to_arrow() for s in co.partition(partition_chunks_strategy, n)])
        joined: dict[str, str] = {}
        for name, piece in zip(table.column("name").to_pylist(), table.column("sequence").to_pylist()):
            joined[name] = joined.get(name, "") + piece
        assert joined == seqs
    header = "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
    records = [f"chr1\t{i}\t.\tA\tC\t50\tPASS\t.\n" for i in range(1, 2001)]
    co = CloudObject.from_url(VCF, local_store.put("v.vcf.zst", encode((header + "".join(records)).encode(), "frames", 3))).preprocess(chunk_size=5000)
    assert co.attributes.compression == "zstd" and co.attributes.records == 2000
    assert [r + "\n" for s in co.partition(vcf_chunks, 7) for r in s.records()] == records


def test_detected_from_the_bytes(local_store):
    data = b"".join(b"line %d\n" % i for i in range(5000))
    for kind in KINDS:
        assert detect_codec(encode(data, kind, 59)) == "zstd"
        co = CloudObject.from_url(UTF8Text, local_store.put(f"no-suffix-{kind}.txt", encode(data, kind, 59)))
        assert "".join(s.get() for s in co.preprocess().partition(text_chunks, 4)).encode() == data
    assert detect_codec(SKIPPABLE + frame(data)) == "zstd" and detect_codec(b"\x28\xb5\x2f") == "none"


def test_byte_order_mark_behind_a_whole_block(local_store):
    """Nothing decodes before a whole block (up to 128 KiB) has arrived: more than the usual first read."""
    rng = np.random.default_rng(8)
    data = "\ufeff".encode() + b"".join(b"%s\n" % bytes(rng.integers(33, 127, 99, dtype=np.uint8)) for _ in range(5000))
    stored = frame(data)
    assert ZstdCodec.head("u", stored[: 64 * 1024], 3) == b""
    co = CloudObject.from_url(UTF8Text, local_store.put("bom.txt.zst", stored)).preprocess()
    assert co.attributes.data_start == 3
    assert "".join(s.get() for s in co.partition(text_chunks, 4)).encode() == data[3:]


def test_seek_table_alone_indexes_the_frames(local_store):
    data = b"".join(b"record %d\n" % i for i in range(200_000))
    stored = seekable(data, 100_000)
    obj = StorageObject(local_store.put("s.txt.zst", stored))
    read_stats.reset()
    frames = read_seek_table(obj, obj.info())
    assert read_stats.requests[obj.url] == 1 and read_stats.bytes[obj.url] <= 64 * 1024
    assert frames.decoded.tolist() == list(range(0, len(data), 100_000)) + [len(data)]
    plain = StorageObject(local_store.put("plain.zst", frame(data)))
    assert read_seek_table(plain, plain.info()) is None


def test_seek_table_with_checksums_and_skippable_entries(local_store):
    parts = [b"a\n" * 300, b"", b"b\n" * 200]
    frames = [frame(p) for p in parts[:1]] + [SKIPPABLE] + [frame(parts[2])]
    entries = b"".join(len(f).to_bytes(4, "little") + len(p).to_bytes(4, "little") + bytes(4) for f, p in zip(frames, parts))
    body = entries + (3).to_bytes(4, "little") + b"\x80" + (0x8F92EAB1).to_bytes(4, "little")
    stored = b"".join(frames) + (0x184D2A5E).to_bytes(4, "little") + len(body).to_bytes(4, "little") + body
    co = CloudObject.from_url(UTF8Text, local_store.put("cs.txt.zst", stored)).preprocess()
    assert co.attributes.checkpoints == 2 and co.attributes.lines == 500
    assert "".join(s.get() for s in co.partition(text_chunks, 3)) == "a\n" * 300 + "b\n" * 200


def test_single_frame_warns_when_slices_start_deep_inside_it(local_store):
    data = b"".join(b"line number %09d\n" % i for i in range(400_000))  # 8.4 MB
    co = CloudObject.from_url(UTF8Text, local_store.put("one.txt.zst", frame(data))).preprocess()
    assert co.attributes.checkpoints == 1
    with pytest.warns(DataplugWarning, match="seekable format") as caught:
        slices = co.partition(text_chunks, 4)
    assert all(isinstance(w.message, SliceInsideFrameWarning) for w in caught)
    assert "".join(s.get() for s in slices).encode() == data
    seek = CloudObject.from_url(UTF8Text, local_store.put("seek.txt.zst", seekable(data, 2**20))).preprocess()
    with warnings.catch_warnings():
        warnings.simplefilter("error", SliceInsideFrameWarning)
        assert "".join(s.get() for s in seek.partition(text_chunks, 16)).encode() == data


def _corrupt(stored: bytes, at: int) -> bytes:
    bad = bytearray(stored)
    bad[at] ^= 0x5A
    return bytes(bad)


@pytest.mark.parametrize("kind", KINDS)
def test_corrupt_frames_are_clear_errors(local_store, kind):
    """Frames with checksums, as the zstd tool writes them (without one, a changed literal byte decodes)."""
    data = b"".join(b"line %d of some text\n" % i for i in range(30_000))
    parts = [data[i : i + 50_000] for i in range(0, len(data), 50_000)]
    stored = {
        "seekable": seekable(data, 50_000, checksum=True),
        "frames": b"".join(frame(p, known=i % 2 == 0, checksum=True) for i, p in enumerate(parts)),
        "single": frame(data, checksum=True),
    }[kind]
    for name, bad in (("truncated", stored[: len(stored) // 2]), ("flipped", _corrupt(stored, len(stored) // 3))):
        co = CloudObject.from_url(UTF8Text, local_store.put(f"{name}-{kind}.zst", bad))
        with pytest.raises(InvalidFormatError, match="zstd") as err:
            co.preprocess()
        assert co.url in str(err.value) and err.value.offset is not None


def test_seek_table_that_does_not_fit_is_a_clear_error(local_store):
    data = b"".join(b"line %d\n" % i for i in range(20_000))
    parts = [data[i : i + 10_000] for i in range(0, len(data), 10_000)]
    frames = [frame(p) for p in parts]
    wrong_total = b"".join(frames) + seek_table([len(f) + 1 for f in frames], [len(p) for p in parts])
    wrong_sizes = b"".join(frames) + seek_table([len(f) for f in frames], [len(p) + (i == 3) - (i == 4) for i, p in enumerate(parts)])
    first_empty = b"".join(frames) + seek_table([len(f) for f in frames], [0] + [len(p) for p in parts[1:]])
    cases = (("total", wrong_total, "seek table does not match"), ("sizes", wrong_sizes, "frame index does not match"), ("empty", first_empty, "frame index does not match"))
    for name, stored, message in cases:
        with pytest.raises(InvalidFormatError, match=message):
            CloudObject.from_url(UTF8Text, local_store.put(f"{name}.zst", stored)).preprocess(chunk_size=30_000)


def test_forced_zstd_on_other_bytes_is_a_clear_error(local_store):
    co = CloudObject.from_url(UTF8Text, local_store.put("plain.txt", b"just text\n"))
    with pytest.raises(InvalidFormatError, match="not zstd"):
        co.preprocess(compression="zstd")


def test_crafted_frame_tables_are_refused():
    good = {"zstd_compressed": np.array([0, 50, 90], np.uint64), "zstd_decoded": np.array([0, 1000, 1500], np.uint64)}
    assert ZstdCodec.validate("u", good, {}, 100, 1500) == 1500
    for tables, logical in (
        ({**good, "zstd_decoded": np.array([0, 1000, 999], np.uint64)}, 999),
        ({**good, "zstd_compressed": np.array([0, 50, 200], np.uint64)}, 1500),
        ({**good, "zstd_decoded": np.array([0, 2**40, 2**40 + 1], np.uint64)}, 2**40 + 1),
        (good, 1501),
    ):
        with pytest.raises(CorruptIndexError):
            ZstdCodec.validate("u", tables, {}, 100, logical)


@pytest.fixture(scope="session")
def large_zstd(tmp_path_factory):
    """≥ 64 MiB of text as seekable zstd (frames of 4 MiB) and of FASTQ as one frame; level 1 keeps it quick."""
    rng = np.random.default_rng(77)
    root = tmp_path_factory.mktemp("large-zstd")
    text, fastq = _text(rng, LARGE), _fastq(rng, 320_000)
    parts = [text[i : i + 4 * 2**20] for i in range(0, len(text), 4 * 2**20)]
    frames = [zstandard.ZstdCompressor(level=1).compress(p) for p in parts]
    (root / "text.zst").write_bytes(b"".join(frames) + seek_table([len(f) for f in frames], [len(p) for p in parts]))
    (root / "fastq.zst").write_bytes(zstandard.ZstdCompressor(level=1).compress(fastq))
    return {"text": (str(root / "text.zst"), text), "fastq": (str(root / "fastq.zst"), fastq)}


def _digest(parts) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part)
    return h.hexdigest()


def test_large_seekable_text_at_default_settings(large_zstd):
    url, plain = large_zstd["text"]
    co = CloudObject.from_url(UTF8Text, url).preprocess()
    assert co.attributes.lines == plain.count(b"\n") and co.attributes.checkpoints == len(plain) // (4 * 2**20) + 1
    for n in (1, 7, 64):
        assert _digest(s.raw() for s in co.partition(text_chunks, n)) == hashlib.sha256(plain).hexdigest()


def test_large_single_frame_fastq_at_default_settings(large_zstd):
    url, plain = large_zstd["fastq"]
    co = CloudObject.from_url(FASTQ, url).preprocess()
    assert co.attributes.reads == plain.count(b"\n") // 4 and co.attributes.checkpoints == 1
    with pytest.warns(SliceInsideFrameWarning):
        slices = co.partition(partition_reads_batches, 3)
    assert _digest(s.raw() for s in slices) == hashlib.sha256(plain).hexdigest()


# -- the per-process decoder cursor: slices of one frame decode it once between them, in order ------------------


@pytest.fixture(scope="module")
def one_frame_reads(tmp_path_factory):
    """Illumina-shaped reads (about 5 MB, two decoded batches and more) in one frame as the ``zstd`` tool writes
    it, and a twin of the same decoded size (bases swapped), so both have the same frame layout."""
    root = tmp_path_factory.mktemp("cursor")
    data = illumina_fastq(15_000, 3)
    twin = data.translate(bytes.maketrans(b"ACGT", b"TGCA"))
    paths = []
    for name, plain in (("a.fq.zst", data), ("b.fq.zst", twin)):
        (root / name).write_bytes(zstandard.ZstdCompressor(level=3).compress(plain))
        paths.append(str(root / name))
    return paths, (data, twin)


def _indexed(path: str, sample_bytes: int = 64 * 1024) -> CloudObject:
    return CloudObject.from_url(FASTQ, path).preprocess(force=True, sample_bytes=sample_bytes)


@pytest.mark.parametrize("sample_bytes", [97, 64 * 1024])
def test_cursor_every_read_once_in_one_frame(one_frame_reads, sample_bytes):
    """Slices read in order continue one decoder: every read once, and every compressed byte fetched once
    (decoding each slice's frame from its start would fetch the object about n / 2 times)."""
    (path, _), (data, _) = one_frame_reads
    co = _indexed(path, sample_bytes)
    expected, size = fastq_oracle(data), co.index().object_info.size
    for n in (1, 7, 64, len(expected) + 5):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SliceInsideFrameWarning)
            slices = co.partition(partition_reads_batches, n)
        clear_shared()
        read_stats.reset()
        assert [r for s in slices for r in s.reads()] == expected
        assert read_stats.bytes[co.url] == size


def test_cursor_out_of_order_and_interleaved(one_frame_reads):
    """Slices of two objects with the same frame layout, read shuffled, interleaved, backwards and again: each
    gives its own bytes (a cursor behind or past a slice's start is never used for it)."""
    paths, plains = one_frame_reads
    objects = [_indexed(p) for p in paths]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SliceInsideFrameWarning)
        parts = [co.partition(partition_reads_batches, 23) for co in objects]
    truth = [[s.raw() for s in slices] for slices in parts]
    for k in range(2):
        assert b"".join(truth[k]) == plains[k]
    rng = np.random.default_rng(5)
    order = [(k, int(i)) for i in range(23) for k in range(2)] + [(int(rng.integers(2)), int(i)) for i in rng.integers(0, 23, 60)]
    order += [(k, i) for i in reversed(range(23)) for k in range(2)]
    clear_shared()
    for k, i in order:
        assert parts[k][i].raw() == truth[k][i], (k, i)
    with ThreadPoolExecutor(4) as pool:  # threads of one process take cursors of the same objects concurrently
        assert list(pool.map(lambda ki: parts[ki[0]][ki[1]].raw(), order)) == [truth[k][i] for k, i in order]


def test_cursor_after_fork_and_after_a_rewrite(one_frame_reads, tmp_path):
    """A forked child never continues its parent's decoder, and a cursor's next slice still checks the
    object's identity (a rewritten object is a StaleIndexError, not bytes of the old one)."""
    (path, _), (data, _) = one_frame_reads
    co = _indexed(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SliceInsideFrameWarning)
        slices = co.partition(partition_reads_batches, 8)
    clear_shared()
    head = b"".join(s.raw() for s in slices[:4])
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        tail = pool.apply(_raw_of, (slices[4:],))
    assert head + tail == data and b"".join(s.raw() for s in slices[4:]) == tail
    moved = tmp_path / "moved.fq.zst"
    moved.write_bytes(Path(path).read_bytes())
    co = _indexed(str(moved))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SliceInsideFrameWarning)
        slices = co.partition(partition_reads_batches, 8)
    assert slices[0].raw() == data[: len(slices[0].raw())]
    stored = zstandard.ZstdCompressor(level=3).compress(data.replace(b"ACGT", b"TTTT"))
    moved.write_bytes(stored[: moved.stat().st_size].ljust(moved.stat().st_size, b"\0"))
    os.utime(moved, ns=(time.time_ns(), time.time_ns() + 10**9))
    with pytest.raises(StaleIndexError):
        slices[1].raw()


def _raw_of(slices) -> bytes:
    return b"".join(s.raw() for s in slices)


def test_cursors_go_with_their_handle(one_frame_reads):
    """Cursors are kept on the object's shared handle: once the shared handles are cleared, neither the
    handle (its open file) nor a cursor (its decoder and bytes) stays alive."""
    (path, _), _ = one_frame_reads
    co = _indexed(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SliceInsideFrameWarning)
        slices = co.partition(partition_reads_batches, 8)
    clear_shared()
    for s in slices[:5]:
        s.raw()
    handle = shared(co.obj, co.index().object_info)
    cursors = zstd._cursors(handle)[0]
    assert 0 < len(cursors) <= zstd.CURSORS
    refs = [weakref.ref(handle), *map(weakref.ref, cursors)]
    del handle, cursors
    clear_shared()
    gc.collect()
    assert [ref() for ref in refs] == [None] * len(refs)


def test_cursor_reads_ahead_no_further_than_its_ranges(local_store):
    """A cursor whose first request fell short of its range reads on in growing requests, but never past the
    compressed end of the frames its ranges need."""
    data = make_fastq(3000, 9)
    co = CloudObject.from_url(FASTQ, local_store.put("ahead.fq.zst", seekable(data, len(data) // 3)))
    co.preprocess(force=True)
    reader = readers(co)(1000, len(data) // 3 - 1000)
    reader = dataclasses.replace(reader, fetch=reader.fetch._replace(first_end=reader.fetch.start + 1))
    assert reader.fetch.end < reader.data_end  # frames follow: a read-ahead to their end fetched them
    clear_shared()
    read_stats.reset()
    assert reader.read() == data[1000 : len(data) // 3 - 1000]
    assert read_stats.bytes[co.url] == reader.fetch.end - reader.fetch.start
