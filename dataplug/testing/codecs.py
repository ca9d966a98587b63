"""Encoders shared by the conformance kit, dataplug's tests and benchmarks: an object's bytes stored under each
codec dataplug reads, as the usual tools write them (``gzip``, ``bgzip``, ``zstd``, ``bzip2``), and the odd
layouts they can also write (gzip members with flushed blocks, zstd frames without a size, the seekable format)."""

from __future__ import annotations

import bz2
import gzip
import io
import struct
import zlib

import zstandard

from dataplug.codecs.zstd import seek_table

#: The empty BGZF block that ends every BGZF file (the SAM/BAM specification, section 4.1.2).
BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")
#: Codec name -> file name suffix.
SUFFIXES = {"plain": "", "gzip": ".gz", "bgzf": ".gz", "zstd": ".zst", "bzip2": ".bz2"}


def bgzf(data: bytes, level: int = 6, block: int = 65280) -> tuple[bytes, list[int]]:
    """BGZF (bgzip) encoding: members of at most 64 KiB with the 'BC' extra field, then the EOF block."""
    out, starts, pos = [], [], 0
    for i in range(0, len(data), block):
        chunk = data[i : i + block]
        c = zlib.compressobj(level, zlib.DEFLATED, -15)
        cdata = c.compress(chunk) + c.flush()
        header = b"\x1f\x8b\x08\x04\0\0\0\0\0\xff\x06\0BC\x02\0" + struct.pack("<H", 18 + len(cdata) + 8 - 1)
        member = header + cdata + struct.pack("<II", zlib.crc32(chunk), len(chunk))
        out.append(member)
        starts.append(pos)
        pos += len(member)
    return b"".join(out) + BGZF_EOF, starts


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
