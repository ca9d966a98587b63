"""Tests for dataplug.codecs.gzip: every checkpoint must decode exactly, and its table must say which bytes a range needs."""

from __future__ import annotations

import io
import itertools
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataplug.codecs.gzip import (
    DEFAULT_SPACING,
    MIN_DEFAULT_SPACING,
    Checkpoint,
    GzipIndex,
    build_index,
    default_spacing,
    inflate_from,
)
from dataplug.codecs.gzip.codec import GzipCodec
from dataplug.codecs.gzip.windows import WINDOWS_BLOB
from dataplug.errors import CorruptIndexError, InvalidFormatError
from dataplug.storage import StorageObject
from dataplug.testing.codecs import bgzf, gzip_member

FLUSHES = {"none": None, "block": zlib.Z_BLOCK, "sync": zlib.Z_SYNC_FLUSH, "full": zlib.Z_FULL_FLUSH}


# --- data and compression helpers -----------------------------------------------------------------------


def make_lines(seed: int, size: int, max_line: int, kind: str) -> bytes:
    """`size` bytes of random lines (lengths 0..max_line); kind "dna" compresses like FASTQ, "words" has
    long repeats (far back-references), "binary" has every byte value."""
    rng = np.random.default_rng(seed)
    if kind == "words":
        vocabulary = [rng.integers(97, 123, rng.integers(1, 12), dtype=np.uint8).tobytes() for _ in range(300)]
        words = rng.integers(0, len(vocabulary), size // 3 + 1)
        data = np.frombuffer(b" ".join(vocabulary[w] for w in words)[:size], np.uint8).copy()
    else:
        alphabet = np.frombuffer(b"ACGT" if kind == "dna" else bytes(range(256)), np.uint8)
        data = alphabet[rng.integers(0, len(alphabet), size)]
    lengths = rng.integers(0, max_line + 1, size // (max_line // 2 + 1) + 16)
    ends = np.cumsum(lengths + 1) - 1
    data[ends[ends < size]] = 10
    return data.tobytes()


def gzip_members(data: bytes, level: int, members: int, rng: np.random.Generator, **kwargs) -> tuple[bytes, list[int]]:
    """Compress `data` as `members` concatenated members (some may be empty); returns the member starts too."""
    cuts = sorted(int(x) for x in rng.integers(0, len(data) + 1, members - 1))
    bounds = [0, *cuts, len(data)]
    blobs = [gzip_member(data[a:b], level, **kwargs) for a, b in zip(bounds, bounds[1:])]
    starts = list(np.cumsum([0, *map(len, blobs)])[:-1])
    return b"".join(blobs), starts


def decode(fetched, checkpoint: Checkpoint, **kwargs) -> bytes:
    return b"".join(inflate_from(fetched, checkpoint, **kwargs))


def pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def check_index(index: GzipIndex, data: bytes, compressed: bytes, to_end: bool = True) -> None:
    """The index's sizes are exact, its tables pass the codec's validation, and every checkpoint decodes
    exactly, to the end and to a range end through the bytes its checkpoint table says to fetch."""
    assert index.compressed_size == len(compressed)
    assert index.uncompressed_size == len(data)
    u = index.uncompressed_offset
    assert u[0] == 0 and index.compressed_offset[0] == 0
    assert np.all(np.diff(u.astype(np.int64)) >= index.spacing)
    assert GzipCodec.validate("mem://x", index.tables(), {WINDOWS_BLOB: len(index.windows)}, len(compressed), len(data)) == len(data)
    table = index.checkpoints()
    assert len(table) == len(index) and table.logical_size == len(data) and table.data_end == len(compressed)
    for k in range(len(index)):
        cp = index.checkpoint(k)
        start = cp.uncompressed_offset
        assert (cp.bits == 0 and not cp.window) or 0 < len(cp.window) <= 32768
        # Windows are sparse: bytes no later back-reference reaches are zero, the others are the data's.
        expected = np.frombuffer(data[max(0, start - len(cp.window)) : start], np.uint8)
        window = np.frombuffer(cp.window, np.uint8)
        assert window.size == expected.size and np.all((window == 0) | (window == expected))
        if to_end:
            assert decode(compressed[cp.fetch_start :], cp) == data[start:], k
        end = int(u[k + 2]) if k + 2 < len(index) else len(data)
        for stop in {end, (start + end) // 2}:
            fetch = table.fetch(start, stop)
            assert fetch.row == k and fetch.start == cp.fetch_start and fetch.start <= fetch.first_end <= fetch.end
            out = decode(pieces(compressed[fetch.start : fetch.end], 7919), cp)
            assert out[: stop - start] == data[start:stop], (k, stop)
            assert out == data[start : start + len(out)]


# --- properties -------------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    size=st.one_of(st.integers(0, 3000), st.integers(3000, 400_000), st.integers(400_000, 2_000_000)),
    max_line=st.sampled_from([0, 3, 80, 160, 1000, 100_000]),
    kind=st.sampled_from(["dna", "words", "binary"]),
    level=st.sampled_from([1, 6, 9]),
    members=st.sampled_from([1, 1, 2, 4]),
    spacing=st.sampled_from([32768, 65536]),
    flush=st.sampled_from(list(FLUSHES)),
)
def test_every_checkpoint_decodes(seed, size, max_line, kind, level, members, spacing, flush):
    data = make_lines(seed, size, max_line, kind)
    rng = np.random.default_rng(seed)
    compressed, _ = gzip_members(data, level, members, rng, flush=FLUSHES[flush], every=int(rng.integers(50, 9000)))
    index = build_index(io.BytesIO(compressed), len(compressed), spacing=spacing)
    assert not index.bgzf
    check_index(index, data, compressed)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), members=st.integers(1, 5), flush=st.sampled_from(["block", "sync"]))
def test_checkpoint_at_every_block_boundary(seed, members, flush):
    """spacing=1 puts a checkpoint on every block boundary (with every bit offset); input arrives in tiny
    pieces, so the re-alignment carry and the member-trailer search cross piece boundaries."""
    data = make_lines(seed, 40_000, 60, "words")
    rng = np.random.default_rng(seed)
    compressed, _ = gzip_members(data, 6, members, rng, flush=FLUSHES[flush], every=int(rng.integers(200, 3000)))
    index = build_index(io.BytesIO(compressed), len(compressed), spacing=1)
    assert len(index) > 10 and set(index.bits.tolist()) > {0}
    for k in range(len(index)):
        cp = index.checkpoint(k)
        tail = compressed[cp.fetch_start :]
        assert decode(pieces(tail, int(rng.integers(1, 40))), cp, chunk_size=1000) == data[cp.uncompressed_offset :]


def test_large_object_every_checkpoint():
    data = make_lines(7, 6_000_000, 150, "dna")
    compressed, _ = gzip_members(data, 6, 3, np.random.default_rng(7), name=b"reads.fastq")
    index = build_index(io.BytesIO(compressed), len(compressed), spacing=65536)
    assert len(index) > 50
    check_index(index, data, compressed)


def test_lookup():
    data = make_lines(3, 1_000_000, 5000, "words")
    compressed = gzip_member(data, 6)
    index = build_index(io.BytesIO(compressed), len(compressed), spacing=40000)
    check_index(index, data, compressed, to_end=False)
    table, u = index.checkpoints(), index.uncompressed_offset.astype(np.int64)
    assert np.array_equal(table.cuts(), u)
    for offset in [0, 1, 39999, 40000, 500_000, len(data)]:
        k = table.locate(offset)
        assert u[k] <= offset and (k + 1 == len(index) or u[k + 1] > offset)
        j = table.stop(k, offset)
        assert j > k and (j == len(index) or (u[j] >= offset and u[j - 1] < offset) or j == k + 1)
        fetch = table.fetch(offset, offset + 1)  # to the next checkpoint's data, which may share a byte with this one's
        following = len(compressed) if k + 1 == len(index) else int(index.compressed_offset[k + 1])
        assert following <= fetch.end <= following + 1


def test_on_data_sees_every_decoded_byte_and_changes_no_checkpoint():
    data = make_lines(4, 600_000, 300, "dna")
    compressed = gzip_member(data, 6)
    alone = build_index(io.BytesIO(compressed), len(compressed), spacing=40000)
    seen, cuts = bytearray(), []
    watched = build_index(io.BytesIO(compressed), len(compressed), spacing=40000, on_data=seen.extend, on_checkpoint=cuts.append)
    assert bytes(seen) == data and cuts == alone.uncompressed_offset.tolist()
    for name, table in alone.tables().items():
        assert np.array_equal(watched.tables()[name], table)


def test_empty_stream_and_empty_members():
    for compressed, data in [
        (gzip_member(b"", 6), b""),
        (gzip_member(b"", 6) + gzip_member(b"abc\n", 6) + gzip_member(b"", 6), b"abc\n"),
    ]:
        index = build_index(io.BytesIO(compressed), len(compressed))
        assert len(index) == 1
        check_index(index, data, compressed)


def test_storage_stream_source_and_progress(tmp_path):
    data = make_lines(11, 300_000, 100, "dna")
    compressed = gzip_member(data, 6)
    (tmp_path / "x.gz").write_bytes(compressed)
    obj = StorageObject(str(tmp_path / "x.gz"))
    calls: list[int] = []
    with obj.stream(obj.info(), block_size=5000) as fh:
        index = build_index(fh, len(compressed), 20000, progress=calls.append, read_size=4096)
    reference = build_index(io.BytesIO(compressed), len(compressed), 20000)
    assert all(np.array_equal(a, b) for a, b in zip(index.tables().values(), reference.tables().values()))
    assert index.windows == reference.windows
    assert calls == sorted(calls) and calls[-1] == len(compressed)


# --- BGZF -------------------------------------------------------------------------------------------------


def test_bgzf():
    data = make_lines(5, 2_000_000, 150, "dna")
    compressed, starts = bgzf(data)
    index = build_index(io.BytesIO(compressed), len(compressed), spacing=200_000)
    assert index.bgzf
    assert not index.window_length.any() and not index.bits.any() and not index.windows
    assert set(index.compressed_offset.tolist()) <= set(starts)
    assert np.all(np.diff(index.uncompressed_offset.astype(np.int64)) < 200_000 + 65536)
    check_index(index, data, compressed)


# --- trailing data, padding ---------------------------------------------------------------------------------


def test_trailing_zero_padding_is_accepted():
    data = make_lines(2, 200_000, 80, "dna")
    compressed = gzip_member(data, 6) + b"\0" * 5000
    index = build_index(io.BytesIO(compressed), len(compressed), spacing=30000)
    check_index(index, data, compressed)


@pytest.mark.parametrize(
    "suffix, where",
    [(b"garbage", 0), (b"\0\0\0x", 3), (b"\0\0" + gzip_member(b"more\n", 6), 2), (b"\x1f\x8c\0\0", 0)],
)
def test_trailing_data_is_rejected(suffix, where):
    member = gzip_member(make_lines(2, 100_000, 80, "dna"), 6)
    with pytest.raises(InvalidFormatError) as info:
        build_index(io.BytesIO(member + suffix), len(member) + len(suffix))
    assert info.value.offset == len(member) + where


def test_data_between_members_is_rejected():
    first, second = gzip_member(b"a\n" * 1000, 6), gzip_member(b"b\n" * 1000, 6)
    compressed = first + b"junk" + second
    with pytest.raises(InvalidFormatError) as info:
        build_index(io.BytesIO(compressed), len(compressed))
    assert info.value.offset == len(first)


# --- errors -------------------------------------------------------------------------------------------------


def test_empty_and_not_gzip():
    with pytest.raises(InvalidFormatError, match="empty object") as info:
        build_index(io.BytesIO(b""), 0, url="s3://b/k")
    assert info.value.offset == 0 and info.value.url == "s3://b/k"
    for blob in [b"hello world\n", zlib.compress(b"hello" * 100), b"\x1f", b"x"]:
        with pytest.raises(InvalidFormatError) as info:
            build_index(io.BytesIO(blob), len(blob))
        assert info.value.offset == (len(blob) if blob == b"\x1f" else 0)
        assert "truncated" in info.value.cause if blob == b"\x1f" else info.value.cause == "not gzip"


def test_truncated():
    data = make_lines(4, 300_000, 100, "dna")
    compressed = gzip_member(data, 6, name=b"x.txt")
    for cut in [
        1,
        2,
        5,
        10,
        15,
        20,
        len(compressed) // 3,
        len(compressed) // 2,
        len(compressed) - 9,
        len(compressed) - 8,
        len(compressed) - 4,
        len(compressed) - 1,
    ]:
        with pytest.raises(InvalidFormatError, match="truncated") as info:
            build_index(io.BytesIO(compressed[:cut]), cut, spacing=20000)
        assert 0 <= info.value.offset <= cut
    with pytest.raises(InvalidFormatError, match="truncated") as info:  # object shorter than its stated size
        build_index(io.BytesIO(compressed[:-5]), len(compressed))
    assert info.value.offset == len(compressed) - 5


def test_corrupt():
    data = make_lines(8, 300_000, 100, "words")
    compressed = gzip_member(data, 6)
    rng = np.random.default_rng(8)
    for position in [10, 11, 12, 100, *rng.integers(20, len(compressed) - 8, 30).tolist(), len(compressed) - 6]:
        broken = bytearray(compressed)
        broken[position] ^= 0x55
        with pytest.raises(InvalidFormatError) as info:
            build_index(io.BytesIO(bytes(broken)), len(broken), spacing=20000)
        assert 0 <= info.value.offset <= len(broken)


def test_inflate_from_errors_and_partial_input():
    data = make_lines(9, 500_000, 100, "dna")
    compressed = gzip_member(data, 6)
    index = build_index(io.BytesIO(compressed), len(compressed), spacing=50000)
    k = next(k for k in range(1, len(index)) if index.bits[k])
    cp = index.checkpoint(k)
    tail = compressed[cp.fetch_start :]
    partial = decode(tail[:3000], cp)  # ends mid-stream: no error, a correct prefix
    assert 0 < len(partial) and data[cp.uncompressed_offset :].startswith(partial)
    noise = np.random.default_rng(1).integers(0, 256, 50_000, dtype=np.uint8).tobytes()
    with pytest.raises(InvalidFormatError, match="corrupt") as info:
        decode(noise, cp, url="mem://x")
    assert info.value.offset >= cp.fetch_start
    for start in (index.checkpoint(0), cp):  # a member's trailer followed by garbage
        with pytest.raises(InvalidFormatError, match="no gzip member header") as info:
            decode(compressed[start.fetch_start :] + b"garbage!!!", start)
        assert info.value.offset == len(compressed)
    assert decode(compressed + b"\0" * 20, index.checkpoint(0)) == data


def test_crafted_tables_are_refused():
    data = make_lines(10, 300_000, 100, "dna")
    compressed = gzip_member(data, 6)
    index = build_index(io.BytesIO(compressed), len(compressed), spacing=30000)
    blobs = {WINDOWS_BLOB: len(index.windows)}

    def tampered(name, change):
        tables = {key: value.copy() for key, value in index.tables().items()}
        change(tables[name])
        return tables

    bad = [
        tampered("uncompressed_offset", lambda a: a.__setitem__(2, a[1])),
        tampered("compressed_offset", lambda a: a.__setitem__(0, 5)),
        tampered("compressed_offset", lambda a: a.__setitem__(-1, len(compressed))),
        tampered("bits", lambda a: a.__setitem__(1, 9)),
        tampered("window_offset", lambda a: a.__setitem__(-1, len(index.windows))),
        {key: value for key, value in index.tables().items() if key != "window_crc32"},
        {**index.tables(), "bits": index.bits[:-1]},
        {**index.tables(), "bits": index.bits.astype(np.float64)},
    ]
    for tables in bad:
        with pytest.raises(CorruptIndexError, match="gzip checkpoint index"):
            GzipCodec.validate("mem://x", tables, blobs, len(compressed), len(data))
    with pytest.raises(CorruptIndexError):
        GzipCodec.validate("mem://x", index.tables(), {WINDOWS_BLOB: len(index.windows) - 1}, len(compressed), len(data))
    with pytest.raises(CorruptIndexError):  # more decoded bytes than deflate makes of the object
        GzipCodec.validate("mem://x", index.tables(), blobs, len(compressed), 1033 * len(compressed) + 2**20)
    with pytest.raises(CorruptIndexError):
        GzipCodec.validate("mem://x", index.tables(), blobs, len(compressed), int(index.uncompressed_offset[-1]) - 1)


# --- sidecar size -----------------------------------------------------------------------------------------


def fastq(records: int, read_length: int, seed: int) -> bytes:
    """Random FASTQ with fixed-width names, built row-wise with numpy."""
    rng = np.random.default_rng(seed)
    names = np.char.add(b"@read_", np.char.zfill(np.arange(records).astype("S9"), 9)).astype("S15")
    rows = np.empty((records, 15 + 1 + read_length + 3 + read_length + 1), np.uint8)
    rows[:, :15] = np.frombuffer(names.tobytes(), np.uint8).reshape(records, 15)
    rows[:, 15] = 10
    rows[:, 16 : 16 + read_length] = np.frombuffer(b"ACGT", np.uint8)[rng.integers(0, 4, (records, read_length))]
    rows[:, 16 + read_length : 19 + read_length] = np.frombuffer(b"\n+\n", np.uint8)
    rows[:, 19 + read_length : -1] = rng.integers(33, 75, (records, read_length), dtype=np.uint8)
    rows[:, -1] = 10
    return rows.tobytes()


def test_sidecar_under_half_a_percent_at_default_spacing():
    data = fastq(185_000, 120, seed=12)  # ~50 MB
    compressed = gzip_member(data, 6)
    index = build_index(io.BytesIO(compressed), len(compressed))
    assert index.spacing == default_spacing(len(compressed)) == MIN_DEFAULT_SPACING and len(index) >= 30
    sidecar = len(index.windows) + sum(table.nbytes for table in index.tables().values())
    assert sidecar < 0.005 * len(compressed)


def test_default_spacing_follows_the_object_size():
    assert default_spacing(1000) == MIN_DEFAULT_SPACING
    assert default_spacing(400 * 2**20) == 400 * 2**20 * 2 // 512
    assert default_spacing(10 * 2**30) == DEFAULT_SPACING


# --- the sidecar budget -----------------------------------------------------------------------------------


def test_window_budget_caps_the_stored_windows_and_spaces_checkpoints():
    """With a budget, every windowed checkpoint's stored windows so far fit in that share of the compressed
    bytes before it; the pass is deterministic, and every checkpoint still decodes exactly."""
    from dataplug.testing.data import illumina_fastq

    data = illumina_fastq(6000, seed=3)
    compressed = gzip_member(data, 6)
    free = build_index(io.BytesIO(compressed), len(compressed), spacing=16384)
    budget = 0.03
    capped = build_index(io.BytesIO(compressed), len(compressed), spacing=16384, window_budget=budget)
    again = build_index(io.BytesIO(compressed), len(compressed), spacing=16384, window_budget=budget)
    assert 2 <= len(capped) < len(free) // 2
    assert np.array_equal(capped.compressed_offset, again.compressed_offset) and capped.windows == again.windows
    stored = np.cumsum(capped.window_length.astype(np.int64))
    windowed = capped.window_length > 0
    assert np.all(stored[windowed] <= budget * capped.compressed_offset[windowed].astype(np.int64))
    assert np.all(np.diff(capped.uncompressed_offset.astype(np.int64)) >= 16384)
    for k in range(len(capped)):
        u = int(capped.uncompressed_offset[k])
        checkpoint = capped.checkpoint(k)
        got = b"".join(inflate_from(compressed[checkpoint.fetch_start :], checkpoint))
        assert got == data[u:]
    with pytest.raises(ValueError, match="window_budget"):
        build_index(io.BytesIO(compressed), len(compressed), window_budget=0)


@pytest.mark.parametrize("slices", [1, 7, 64, 700])
def test_every_read_once_across_slices_with_a_window_budget(tmp_path, slices):
    """Checkpoints placed by the budget: every read of Illumina-shaped reads exactly once, in order, in N
    slices (N = 700 is more slices than reads)."""
    from dataplug import CloudObject
    from dataplug.formats.genomics.fastq import FASTQGZip, partition_reads_batches
    from dataplug.testing.data import illumina_fastq

    data = illumina_fastq(600, seed=slices)
    path = tmp_path / "reads.fastq.gz"
    path.write_bytes(gzip_member(data, 6))
    co = CloudObject.from_url(FASTQGZip, str(path))
    co.preprocess(force=True, spacing=2048, window_budget=0.2)
    assert 2 <= co.attributes.checkpoints < len(data) // 2048 // 2
    pieces = co.partition(partition_reads_batches, slices)
    assert [line for piece in pieces for line in piece.get()] == data.decode().splitlines()


# --- the read-ahead reader of the pass --------------------------------------------------------------------


class _FlakyObject:
    """A stand-in storage object over ``data`` whose range reads fail from byte ``fail_at`` on."""

    url = "s3://bucket/reads.fastq.gz"

    def __init__(self, data: bytes, fail_at: int | None, error: Exception) -> None:
        import types

        self.data, self.fail_at, self.error = data, fail_at, error
        self.transport = types.SimpleNamespace(pins=lambda expect: True)
        self.ranges: list[tuple[int, int]] = []

    def read_ranges(self, ranges, expect=None, checked=False):
        ((a, b),) = ranges
        self.ranges.append((a, b))
        if self.fail_at is not None and b > self.fail_at:
            raise self.error
        return [self.data[a:b]]


def _readahead_threads() -> list:
    import threading

    return [t for t in threading.enumerate() if t.name.startswith("dataplug-readahead")]


@pytest.mark.parametrize("error", [OSError("connection reset"), InvalidFormatError("s3://bucket/reads.fastq.gz", "boom")])
def test_readahead_fault_in_the_middle_is_a_dataplug_error_and_stops_its_threads(error):
    from dataplug.errors import DataplugError
    from dataplug.storage import ObjectInfo
    from dataplug.storage.ranges import SequentialReader

    data = bytes(range(256)) * 4096  # 1 MiB
    info = ObjectInfo(size=len(data), identity="etag:x")
    got = bytearray()
    with (
        pytest.raises(DataplugError) as err,
        SequentialReader(_FlakyObject(data, 600_000, error), info, block_size=131072, ahead=3, first_range=65536, connections=2) as fh,
    ):
        while chunk := fh.read(50_000):
            got += chunk
    assert err.value.url == _FlakyObject.url and 0 < len(got) <= 600_000 and bytes(got) == data[: len(got)]
    assert not _readahead_threads()


def test_readahead_reads_every_byte_once_in_bounded_ranges():
    from dataplug.storage import ObjectInfo
    from dataplug.storage.ranges import SequentialReader

    data = np.random.default_rng(1).integers(0, 256, 3_000_001, dtype=np.uint8).tobytes()
    obj = _FlakyObject(data, None, OSError())
    with SequentialReader(obj, ObjectInfo(size=len(data), identity="etag:x"), block_size=400_000, ahead=4, first_range=10_000, connections=3) as fh:
        assert fh.read() == data
    ranges = sorted(obj.ranges)
    assert ranges[0] == (0, 10_000) and all(a[1] == b[0] for a, b in itertools.pairwise(ranges)) and ranges[-1][1] == len(data)
    assert max(b - a for a, b in ranges) == 400_000
    assert not _readahead_threads()


def test_a_bad_window_budget_is_refused_naming_the_object(tmp_path):
    from dataplug import CloudObject
    from dataplug.formats.genomics.fastq import FASTQGZip
    from dataplug.testing.data import illumina_fastq

    path = tmp_path / "reads.fastq.gz"
    path.write_bytes(gzip_member(illumina_fastq(50, seed=1), 6))
    co = CloudObject.from_url(FASTQGZip, str(path))
    with pytest.raises(InvalidFormatError, match="window_budget must be a positive share") as err:
        co.preprocess(force=True, window_budget=-1)
    assert err.value.url == str(path)
