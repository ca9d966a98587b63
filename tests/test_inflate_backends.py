"""Every installed inflate backend (ISA-L, zlib-ng, Python's zlib) decodes gzip checkpoint stretches and BGZF
members to exactly the bytes of the data, and refuses broken input with the same dataplug error as zlib."""

from __future__ import annotations

import io
import zlib

import numpy as np
import pytest

from dataplug.codecs import deflate
from dataplug.codecs.bgzf import BGZF_EOF, bgzf_compress, inflate_unit
from dataplug.codecs.gzip import Checkpoint, build_index, inflate_from
from dataplug.errors import CorruptIndexError, DataplugError, InvalidFormatError
from dataplug.testing.codecs import gzip_member
from dataplug.testing.data import illumina_fastq


def _backend(name: str) -> deflate.Backend:
    try:
        return deflate.backend(name)
    except DataplugError:
        pytest.skip(f"inflate backend {name} is not installed (module {deflate.MODULES[name]})")


@pytest.fixture(params=list(deflate.MODULES))
def inflate(request: pytest.FixtureRequest) -> deflate.Backend:
    return _backend(request.param)


@pytest.fixture(scope="module")
def mixed() -> bytes:
    """Illumina reads with 100 kB of random bytes in the middle, which deflate stores (stored blocks)."""
    reads = illumina_fastq(3000, 1)
    noise = np.random.default_rng(0).integers(0, 256, 100_000, dtype=np.uint8).tobytes()
    return reads[:200_000] + noise + reads[200_000:]


@pytest.fixture(scope="module")
def unaligned(mixed: bytes) -> tuple[bytes, list[Checkpoint]]:
    """Two members, the first with a deflate block every 2003 bytes (Z_BLOCK: not byte aligned), and its
    checkpoints: they start at every bit offset 0..7, some before stored blocks."""
    compressed = gzip_member(mixed[:700_000], 6, flush=zlib.Z_BLOCK, every=2003) + gzip_member(mixed[700_000:], 6)
    index = build_index(io.BytesIO(compressed), len(compressed), spacing=32768)
    return compressed, [index.checkpoint(k) for k in range(len(index))]


def decode(fetched, checkpoint: Checkpoint, inflate: deflate.Backend, **kwargs) -> bytes:
    return b"".join(inflate_from(fetched, checkpoint, inflate=inflate, **kwargs))


def test_every_bit_offset_to_the_end(inflate, mixed, unaligned):
    compressed, checkpoints = unaligned
    assert {cp.bits for cp in checkpoints} == set(range(8))
    for cp in checkpoints:  # across the member boundary, the trailer checked and skipped
        assert decode(compressed[cp.fetch_start :], cp, inflate) == mixed[cp.uncompressed_offset :], cp


def test_small_pieces_and_chunks(inflate, mixed, unaligned):
    compressed, checkpoints = unaligned
    for cp in checkpoints[::5]:
        pieces = [compressed[i : i + 7919] for i in range(cp.fetch_start, len(compressed), 7919)]
        chunks = list(inflate_from(pieces, cp, inflate=inflate, chunk_size=4000))
        assert max(map(len, chunks)) <= 4000 and b"".join(chunks) == mixed[cp.uncompressed_offset :]


def test_stored_blocks_and_empty_members(inflate, mixed):
    compressed = gzip_member(mixed[:300_000], 0) + gzip_member(b"", 6) + gzip_member(mixed[300_000:], 1) + b"\0" * 9
    index = build_index(io.BytesIO(compressed), len(compressed), spacing=40000)
    assert len(index) > 5
    for k in range(len(index)):
        cp = index.checkpoint(k)
        assert decode(compressed[cp.fetch_start :], cp, inflate) == mixed[cp.uncompressed_offset :], k


def test_broken_input_fails_as_with_zlib(inflate, mixed, unaligned):
    compressed, checkpoints = unaligned
    zlib_backend = deflate.backend("zlib")
    cp = next(cp for cp in checkpoints if cp.bits)
    tail = compressed[cp.fetch_start :]
    # Input ending mid-stream is no error: a correct prefix, as long as the backend's buffering lets out.
    partial = decode(tail[:5000], cp, inflate)
    assert len(partial) > 5000 and mixed[cp.uncompressed_offset :].startswith(partial)
    noise = np.random.default_rng(1).integers(0, 256, 50_000, dtype=np.uint8).tobytes()
    garbage = compressed + b"garbage!"
    for fetched, start in ((noise, cp), (garbage, checkpoints[0])):
        errors = []
        for backend in (inflate, zlib_backend):
            with pytest.raises(InvalidFormatError) as info:
                decode(fetched, start, backend, url="mem://x")
            errors.append((info.value.url, info.value.offset, info.value.cause.split(":")[0]))
        assert errors[0] == errors[1]


def test_bgzf_members(inflate, mixed):
    member = bgzf_compress(mixed[:50_000])
    assert inflate_unit("mem://b", member, 0, 50_000, inflate) == mixed[:50_000]
    assert inflate_unit("mem://b", member + BGZF_EOF, 0, 50_000, inflate) == mixed[:50_000]  # with the empty EOF member
    two = bgzf_compress(mixed[:120_000])
    assert inflate_unit("mem://b", two, 0, 120_000, inflate) == mixed[:120_000]
    for raw, size in ((member[:-5], 50_000), (member, 49_999), (member[:-1] + b"\x7f", 50_000), (two[:-3], 120_000)):
        with pytest.raises(CorruptIndexError, match="BGZF member index does not match"):
            inflate_unit("mem://b", raw, 0, size, inflate)


def test_choosing_a_backend(monkeypatch):
    names = [backend.name for backend in deflate.installed()]
    assert names[-1] == "zlib" and names == [name for name in deflate.MODULES if name in names]
    assert deflate.backend().name == names[0]
    monkeypatch.setenv(deflate.ENV, "zlib")
    assert deflate.backend().name == "zlib" and deflate.backend("zlib").module is zlib
    monkeypatch.setenv(deflate.ENV, "brotli")
    with pytest.raises(DataplugError, match="unknown"):
        deflate.backend()
