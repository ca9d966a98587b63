"""Decoding from one gzip checkpoint (what a worker runs), with the fastest inflate installed.

Given one checkpoint (with its window) and the compressed bytes from that checkpoint on, ``inflate_from``
yields the decompressed data from the checkpoint's uncompressed offset, continuing across gzip members.
The inflate is :func:`dataplug.codecs.deflate.backend`'s (ISA-L, zlib-ng or Python's zlib): only the
zlib interface is used, so each gives the same bytes and the same errors.
"""

from __future__ import annotations

import functools
from collections.abc import Generator, Iterable, Iterator

from dataplug.codecs.deflate import Backend, backend
from dataplug.codecs.gzip.headers import MAGIC
from dataplug.codecs.gzip.index import Checkpoint
from dataplug.errors import InvalidFormatError

DEFAULT_CHUNK_SIZE = 2**20  # largest decompressed chunk yielded by inflate_from
_PIECE = 2**20  # inflate_from feeds the decoder at most this many bytes at a time


@functools.cache
def _bit_prefix(bits: int) -> tuple[bytes, int]:
    """Deflate data that lets a zlib-like decoder start ``bits`` bits before a byte boundary.

    Python's zlib, like the other backends' modules, has no ``inflatePrime``. Shifting all the compressed
    bytes instead is wrong: stored blocks and the gzip trailer are aligned to the object's byte boundaries,
    not to the shifted ones. So instead the
    decoder is fed non-final blocks that output nothing (so the dictionary stays intact) and are
    ``8 - bits`` bits long modulo 8: an empty fixed-Huffman block is 10 bits (2 mod 8), and an empty dynamic
    block whose only code is end-of-block, with 19 code-length codes, is 333 bits (5 mod 8). Their last
    ``8 - bits`` bits share a byte with the checkpoint's first ``bits`` bits, and the object's bytes follow
    unchanged. Returns the whole bytes and that last partial byte.
    """
    fields: list[tuple[int, int]] = []  # (value, width), packed least significant bit first
    residue = 8 - bits
    if residue % 2:
        order = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15]
        fields += [(0, 1), (2, 2), (0, 5), (0, 5), (15, 4)]  # not final, dynamic, 257 + 1 codes, 19 CL codes
        fields += [(1 if symbol in (0, 1) else 0, 3) for symbol in order]  # code lengths 0 and 1: 1 bit each
        fields += [(0, 1)] * 256 + [(1, 1), (1, 1)]  # literals absent; end-of-block and one distance: 1 bit
        fields += [(0, 1)]  # end-of-block
        residue -= 5
    fields += [(0, 1), (1, 2), (0, 7)] * (residue % 8 // 2)  # not final, fixed Huffman, end-of-block
    packed = width = 0
    for value, size in fields:
        packed |= value << width
        width += size
    prefix = packed.to_bytes((width + 7) // 8, "little")
    return prefix[:-1], prefix[-1]


def pieces(fetched: bytes | bytearray | memoryview | Iterable[bytes]) -> Iterator[memoryview]:
    if isinstance(fetched, (bytes, bytearray, memoryview)):
        fetched = (fetched,)
    for chunk in fetched:
        view = memoryview(chunk).cast("B")
        for i in range(0, len(view), _PIECE):
            yield view[i : i + _PIECE]


class Inflater:
    """State machine behind ``inflate_from``. Modes: "raw" (deflate data from a block-boundary checkpoint),
    "gzip" (whole members), "next" (after a member: expect the next header) and "zeros" (padding after
    the last member)."""

    def __init__(self, checkpoint: Checkpoint, url: str | None, chunk_size: int, inflate: Backend) -> None:
        self.url, self.chunk_size, self.inflate = url, chunk_size, inflate
        self.pos = checkpoint.fetch_start  # object offset of the next piece
        self.bits = checkpoint.bits  # > 0 until the first byte has been merged with the bit prefix
        self.pending = b""  # start of what follows a member, in "next" mode
        self.pending_at = 0
        self.skip = 0  # trailer bytes still in `pending` (8 after raw data, 0 after a gzip member)
        if checkpoint.window or checkpoint.bits:
            self.mode = "raw"
            self.decoder = inflate.decompressobj(-15, checkpoint.window)
            if self.bits:
                self.decoder.decompress(_bit_prefix(self.bits)[0])
        else:
            self.mode = "gzip"
            self.decoder = self.inflate.decompressobj(31)

    def run(self, pieces: Iterator[memoryview]) -> Iterator[bytes]:
        for piece in pieces:
            at = self.pos
            self.pos += len(piece)
            data: bytes | memoryview = piece
            while data:  # a mode switch hands the rest of the piece to the next mode
                if self.mode == "raw":
                    data, at = yield from self.raw(data, at)
                elif self.mode == "gzip":
                    data, at = yield from self.gzip(data, at)
                elif self.mode == "next":
                    data, at = self.next_member(data, at, final=False)
                else:
                    self.zeros(data, at)
                    data = b""
        if self.mode == "next":
            self.next_member(b"", self.pos, final=True)

    def decode(self, data: bytes | memoryview, at: int) -> Iterator[bytes]:
        """Feed data to the decoder, yielding at most chunk_size bytes at a time."""
        d = self.decoder
        try:
            while True:
                out = d.decompress(data, self.chunk_size)
                if out:
                    yield out
                if d.eof:
                    return
                data = d.unconsumed_tail
                if not data and len(out) < self.chunk_size:
                    return
        except self.inflate.error as exc:
            raise InvalidFormatError(self.url, f"corrupt gzip data: {exc}", offset=at) from None

    def raw(self, data: bytes | memoryview, at: int) -> Generator[bytes, None, tuple[bytes, int]]:
        if self.bits:  # the checkpoint's first bits are the high bits of the first byte: see _bit_prefix
            tail = _bit_prefix(self.bits)[1]
            low = (1 << (8 - self.bits)) - 1
            data = bytes([(tail & low) | (data[0] & ~low & 0xFF)]) + bytes(data[1:])
            self.bits = 0
        yield from self.decode(data, at)
        return self.member_end(data, at, trailer=8)

    def gzip(self, data: bytes | memoryview, at: int) -> Generator[bytes, None, tuple[bytes, int]]:
        yield from self.decode(data, at)
        return self.member_end(data, at, trailer=0)  # the decoder has checked and consumed the trailer

    def member_end(self, data: bytes | memoryview, at: int, trailer: int) -> tuple[bytes, int]:
        """If the member ended, switch to "next" and return the bytes after its deflate data."""
        if not self.decoder.eof:
            return b"", 0
        rest = self.decoder.unused_data
        self.mode, self.skip, self.pending = "next", trailer, b""
        return rest, at + len(data) - len(rest)

    def next_member(self, data: bytes | memoryview, at: int, final: bool) -> tuple[bytes, int]:
        """After a member's trailer: another member's header, zero padding, or (an error) anything else."""
        if not self.pending:
            self.pending_at = at
        self.pending += bytes(data)
        if len(self.pending) < self.skip + 2 and not final:
            return b"", 0
        rest = self.pending[self.skip :]
        if rest[:2] == MAGIC:
            self.mode = "gzip"
            self.decoder = self.inflate.decompressobj(31)
            return rest, self.pending_at + self.skip
        if rest.strip(b"\0") and not (final and rest == MAGIC[:1]):
            raise InvalidFormatError(
                self.url, "corrupt gzip data: no gzip member header after a member's trailer",
                offset=self.pending_at + self.skip,
            )
        self.mode = "zeros"
        return b"", 0

    def zeros(self, data: bytes | memoryview, at: int) -> None:
        data = bytes(data)
        rest = data.lstrip(b"\0")
        if rest:
            raise InvalidFormatError(
                self.url, "unexpected data after the last gzip member", offset=at + len(data) - len(rest)
            )


def inflate_from(
    fetched: bytes | bytearray | memoryview | Iterable[bytes],
    checkpoint: Checkpoint,
    *,
    url: str | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    inflate: Backend | None = None,
) -> Iterator[bytes]:
    """Decompress from ``checkpoint``, yielding chunks of at most ``chunk_size`` bytes.

    ``fetched`` holds the object's compressed bytes from ``checkpoint.fetch_start`` on (one buffer or an
    iterable of consecutive buffers, e.g. as a download arrives), typically the range
    :meth:`CheckpointTable.fetch <dataplug.codecs.checkpoints.CheckpointTable.fetch>` gives. The output is the uncompressed data from ``checkpoint.uncompressed_offset`` on, across member
    boundaries, for as far as the input reaches: input ending mid-stream is not an error. Corrupt data
    raises InvalidFormatError with the (approximate) compressed offset. Whole members are CRC-checked; the
    partial member a checkpoint starts in cannot be. ``inflate`` picks the backend (default:
    :func:`dataplug.codecs.deflate.backend`, the fastest installed).
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    return Inflater(checkpoint, url, chunk_size, inflate or backend()).run(pieces(fetched))
