"""Tests for dataplug.codecs.gzip: every checkpoint must decode exactly, with exact line numbers."""

from __future__ import annotations

import io
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
    fetch_range_for,
    inflate_from,
)
from dataplug.errors import InvalidFormatError
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
    """The index's scalars are exact and every checkpoint decodes exactly, to the end and to a range end."""
    assert index.compressed_size == len(compressed)
    assert index.uncompressed_size == len(data)
    assert index.line_count == data.count(b"\n")
    assert index.ends_with_newline == data.endswith(b"\n")
    u = index.uncompressed_offset
    assert u[0] == 0 and index.compressed_offset[0] == 0
    assert np.all(np.diff(u.astype(np.int64)) >= index.spacing)
    newlines = np.concatenate([[0], np.cumsum(np.frombuffer(data, np.uint8) == 10)])
    assert np.array_equal(index.line, newlines[u])
    again = GzipIndex.from_tables(index.tables(), index.windows, **index.scalars())
    assert all(np.array_equal(a, b) for a, b in zip(again.tables().values(), index.tables().values()))
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
            a, b = fetch_range_for(index, k, stop)
            assert a == cp.fetch_start
            out = decode(pieces(compressed[a:b], 7919), cp)
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


@pytest.mark.parametrize("last_newline", [True, False])
def test_lines_and_lookup(last_newline):
    data = make_lines(3, 1_000_000, 5000, "words")
    data = data.rstrip(b"\n") + (b"\n" if last_newline else b"x")
    compressed = gzip_member(data, 6)
    index = build_index(io.BytesIO(compressed), len(compressed), spacing=40000)
    check_index(index, data, compressed, to_end=False)
    line_starts = np.concatenate([[0], np.flatnonzero(np.frombuffer(data, np.uint8) == 10) + 1])
    for line in range(index.line_count + 1):
        k = index.checkpoint_for_line(line)
        assert index.line[k] < line or k == 0
        assert k + 1 == len(index) or index.line[k + 1] >= line
        # line[k] counts the newlines before the checkpoint, so skipping line - line[k] newlines from it
        # lands on the start of `line` exactly when the checkpoint is not past that start.
        assert index.uncompressed_offset[k] <= line_starts[line]
    for offset in [0, 1, 39999, 40000, 500_000, len(data)]:
        k = index.checkpoint_for_uncompressed(offset)
        assert index.uncompressed_offset[k] <= offset
        assert k + 1 == len(index) or index.uncompressed_offset[k + 1] > offset
    with pytest.raises(ValueError):
        index.checkpoint_for_line(index.line_count + 1)
    with pytest.raises(ValueError):
        index.checkpoint_for_uncompressed(len(data) + 1)


def test_lines_false_gives_the_same_checkpoints_without_line_numbers():
    data = make_lines(4, 600_000, 300, "dna")
    compressed = gzip_member(data, 6)
    counted = build_index(io.BytesIO(compressed), len(compressed), spacing=40000)
    seen = bytearray()
    skipped = build_index(io.BytesIO(compressed), len(compressed), spacing=40000, lines=False, on_data=seen.extend)
    assert bytes(seen) == data and counted.line_count == data.count(b"\n") and skipped.line_count == 0
    assert not skipped.line.any() and skipped.ends_with_newline == counted.ends_with_newline
    for name in ("compressed_offset", "bits", "uncompressed_offset", "window_length"):
        assert np.array_equal(getattr(skipped, name), getattr(counted, name))


def test_empty_stream_and_empty_members():
    for compressed, data in [
        (gzip_member(b"", 6), b""),
        (gzip_member(b"", 6) + gzip_member(b"abc\n", 6) + gzip_member(b"", 6), b"abc\n"),
    ]:
        index = build_index(io.BytesIO(compressed), len(compressed))
        assert len(index) == 1
        check_index(index, data, compressed)
    assert not build_index(io.BytesIO(gzip_member(b"", 1)), 20).ends_with_newline


def test_callable_source_and_progress():
    data = make_lines(11, 300_000, 100, "dna")
    compressed = gzip_member(data, 6)
    calls: list[int] = []
    index = build_index(lambda a, b: compressed[a:b], len(compressed), 20000, progress=calls.append, read_size=4096)
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
    for cut in [1, 2, 5, 10, 15, 20, len(compressed) // 3, len(compressed) // 2, len(compressed) - 9,
                len(compressed) - 8, len(compressed) - 4, len(compressed) - 1]:
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


def test_from_tables_validation():
    data = make_lines(10, 300_000, 100, "dna")
    compressed = gzip_member(data, 6)
    index = build_index(io.BytesIO(compressed), len(compressed), spacing=30000)
    scalars = index.scalars()

    def tampered(name, change):
        tables = {key: value.copy() for key, value in index.tables().items()}
        change(tables[name])
        return tables

    bad = [
        tampered("uncompressed_offset", lambda a: a.__setitem__(2, a[1])),
        tampered("compressed_offset", lambda a: a.__setitem__(0, 5)),
        tampered("bits", lambda a: a.__setitem__(1, 9)),
        tampered("line", lambda a: a.__setitem__(-1, index.line_count + 1)),
        tampered("window_offset", lambda a: a.__setitem__(-1, len(index.windows))),
        {key: value for key, value in index.tables().items() if key != "line"},
        {**index.tables(), "line": index.line[:-1]},
    ]
    for tables in bad:
        with pytest.raises(ValueError):
            GzipIndex.from_tables(tables, index.windows, **scalars)
    with pytest.raises(ValueError):
        GzipIndex.from_tables(index.tables(), index.windows[:-1], **scalars)
    with pytest.raises(ValueError):
        GzipIndex.from_tables(index.tables(), index.windows, **{**scalars, "uncompressed_size": 10})


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
    assert index.line_count == data.count(b"\n")


def test_default_spacing_follows_the_object_size():
    assert default_spacing(1000) == MIN_DEFAULT_SPACING
    assert default_spacing(400 * 2**20) == 400 * 2**20 * 2 // 512
    assert default_spacing(10 * 2**30) == DEFAULT_SPACING
