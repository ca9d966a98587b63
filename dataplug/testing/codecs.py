"""Encoders shared by the conformance kit, dataplug's tests and benchmarks: an object's bytes stored under each
codec dataplug reads, as the usual tools write them (``gzip``, ``bgzip``, ``zstd``, ``bzip2``), and the odd
layouts they can also write (gzip members with flushed blocks, zstd frames without a size, the seekable format)."""

from __future__ import annotations

import bz2
import gzip
import io
import zlib

import numpy as np
import zstandard

from dataplug.codecs.bgzf import BGZF_BLOCK, BGZF_EOF, bgzf_compress
from dataplug.codecs.zstd import seek_table

#: Codec name -> file name suffix.
SUFFIXES = {"plain": "", "gzip": ".gz", "bgzf": ".gz", "zstd": ".zst", "bzip2": ".bz2"}


def bgzf(data: bytes, level: int = 6, block: int = BGZF_BLOCK) -> tuple[bytes, list[int]]:
    """BGZF (bgzip) encoding: members of at most ``block`` decoded bytes, then the EOF block; and each
    member's start."""
    members = [bgzf_compress(data[i : i + block], level, block) for i in range(0, len(data), block)]
    starts = np.cumsum([0] + [len(m) for m in members[:-1]]).tolist() if members else []
    return b"".join(members) + BGZF_EOF, starts

def gzip_member(data: bytes, level: int, flush: int | None = None, every: int = 4096, name: bytes = b"") -> bytes:
    """One gzip member; `flush` ends a deflate block every `every` bytes (Z_BLOCK leaves it unaligned)."""
    if name:
        out = io.BytesIO()
        with gzip.GzipFile(filename=name.decode(), mode="wb", fileobj=out, compresslevel=level, mtime=0) as f:
            f.write(data)
        return out.getvalue()
    c = zlib.compressobj(level, zlib.DEFLATED, 31)
    if flush is None:
        return c.compress(data) + c.flush()
    parts = []
    for i in range(0, len(data), every):
        parts += [c.compress(data[i : i + every]), c.flush(flush)]
    return b"".join(parts) + c.flush()


def frame(data: bytes, known: bool = True, checksum: bool = False) -> bytes:
    """One zstd frame; ``known=False`` leaves the content size out of its header (streamed compression)."""
    if known:
        return zstandard.ZstdCompressor(write_checksum=checksum).compress(data)
    obj = zstandard.ZstdCompressor(write_checksum=checksum).compressobj()
    return obj.compress(data) + obj.flush()


def seekable(data: bytes, size: int, checksum: bool = False) -> bytes:
    """The seekable format with frames of ``size`` decoded bytes."""
    parts = [data[i : i + size] for i in range(0, len(data), size)]
    frames = [frame(p, checksum=checksum) for p in parts]
    return b"".join(frames) + seek_table([len(f) for f in frames], [len(p) for p in parts])


def encode(data: bytes, codec: str) -> bytes:
    """``data`` stored under ``codec``: ``gzip`` at level 6 (one member), ``bgzf``, ``zstd`` as the ``zstd``
    tool writes by default (one frame), ``bzip2`` with 100 kB blocks (so small samples span several)."""
    if codec == "plain":
        return data
    if codec == "gzip":
        return gzip.compress(data, 6, mtime=0)
    if codec == "bgzf":
        return bgzf(data)[0]
    if codec == "zstd":
        return zstandard.ZstdCompressor(level=3).compress(data)
    if codec == "bzip2":
        return bz2.compress(data, 1)
    raise ValueError(f"unknown codec {codec!r}; known: {sorted(SUFFIXES)}")
