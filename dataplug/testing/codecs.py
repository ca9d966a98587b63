"""Encoders for the conformance kit: an object's bytes stored under each codec dataplug reads, as the usual
tools write them (``gzip``, ``bgzip``, ``zstd``, ``bzip2``)."""

from __future__ import annotations

import bz2
import gzip
import struct
import zlib

import zstandard

#: The empty BGZF block that ends every BGZF file (the SAM/BAM specification, section 4.1.2).
BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")
#: Codec name -> file name suffix.
SUFFIXES = {"plain": "", "gzip": ".gz", "bgzf": ".gz", "zstd": ".zst", "bzip2": ".bz2"}


def bgzf(data: bytes, level: int = 6, block: int = 65280) -> bytes:
    """BGZF as ``bgzip`` writes it: members of at most 64 KiB with the 'BC' extra field, then the EOF block."""
    out = []
    for i in range(0, len(data), block):
        chunk = data[i : i + block]
        c = zlib.compressobj(level, zlib.DEFLATED, -15)
        cdata = c.compress(chunk) + c.flush()
        header = b"\x1f\x8b\x08\x04\0\0\0\0\0\xff\x06\0BC\x02\0" + struct.pack("<H", 18 + len(cdata) + 8 - 1)
        out.append(header + cdata + struct.pack("<II", zlib.crc32(chunk), len(chunk)))
    return b"".join(out) + BGZF_EOF


def encode(data: bytes, codec: str) -> bytes:
    """``data`` stored under ``codec``: ``gzip`` at level 6 (one member), ``bgzf``, ``zstd`` as the ``zstd``
    tool writes by default (one frame), ``bzip2`` with 100 kB blocks (so small samples span several)."""
    if codec == "plain":
        return data
    if codec == "gzip":
        return gzip.compress(data, 6, mtime=0)
    if codec == "bgzf":
        return bgzf(data)
    if codec == "zstd":
        return zstandard.ZstdCompressor(level=3).compress(data)
    if codec == "bzip2":
        return bz2.compress(data, 1)
    raise ValueError(f"unknown codec {codec!r}; known: {sorted(SUFFIXES)}")
