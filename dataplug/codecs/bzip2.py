"""The bzip2 byte source: blocks decode alone, so checkpoints are block starts.

A bzip2 block starts with a 48-bit magic number at any *bit* offset: nothing in the format lists the blocks
or aligns them to bytes. The index pass reads the object once, front to back, finds every occurrence of the
block magic and of the end-of-stream magic by a bit search, and confirms each candidate by decoding the
block it starts (a false find inside compressed data fails the block's CRC and is merged into its block).
Blocks decode on a thread pool (``bz2`` releases the GIL) in order of the stream, so the framing's scanner
sees the decoded bytes in order and the pass runs on every local core. The sidecar keeps each block's bit
range and decoded offset; a worker rebuilds a standalone bzip2 file from its blocks' bits and decodes it
with the standard ``bz2`` module. Several streams in one object (``pbzip2``, ``cat a.bz2 b.bz2``) work.

Block heads. A record that crosses a block edge would make the slice before it decode the whole next block
(900 kB) for a few hundred bytes. So the pass also keeps each block's *head*: its decoded bytes up to the
start of its :data:`HEAD_LINES`-th line (at most :data:`HEAD_MAX` bytes), and ends the scanner's ranges at
the block start and at each of those line starts but the last, so that every one of them is a sampled record
start of the framing's index (a range's first record start always is). A partition snaps its boundaries to
the first sampled record start after a block start (FASTQ rounds it up to a read start, one of the next
four lines), so a slice ends inside the next block's head and finishes its last record from the stored head
without decoding that block. No tail is kept: the slice after starts at that record start, inside its own block.
The heads are one zlib-compressed blob with a length and a CRC-32 per block (loaded once per partition);
the CRC is checked before a head is used, so a head that does not match its table is a
:class:`~dataplug.errors.CorruptIndexError`, never wrong records. Indexes without heads (layout 1) are
refused, and ``preprocess()`` rebuilds them.
"""

from __future__ import annotations

import bisect
import bz2
import zlib
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from dataplug.codecs.base import Codec, CodecIndex, Scanner, StreamRanges, register_codec
from dataplug.codecs.checkpoints import CheckpointTable, Fetch, column
from dataplug.errors import CorruptIndexError, InvalidFormatError
from dataplug.executors import default_workers, progress_bar
from dataplug.storage import ObjectInfo, StorageObject

if TYPE_CHECKING:
    from dataplug.sidecar import BlobRef

BLOCK_MAGIC, END_MAGIC = 0x314159265359, 0x177245385090
#: The header of a rebuilt stream: level 9 accepts a block of any level (the level only bounds block size).
_HEADER = int.from_bytes(b"BZh9", "big")
#: A level-9 block holds 900,000 bytes, and its first run-length stage turns 5 of them into at most 255.
_MAX_BLOCK_DECODED = 900_000 // 5 * 255
#: Compressed bytes of one block at most (900,000 incompressible bytes, plus tables): a longer gap between
#: magic numbers is not bzip2.
_MAX_BLOCK_BYTES = 2**20
#: Candidate ends tried for one block: the next magic found, and the following ones in case it was false.
_MERGES = 4
_PIECE = 4 * 2**20
_TABLES = ("bzip2_start", "bzip2_end", "bzip2_decoded")
#: Version of the codec's tables: 2 adds block heads (``bzip2_head_len``, ``bzip2_head_crc`` and the
#: ``bzip2_heads`` blob). A loaded index of another layout is a :class:`CorruptIndexError` (``preprocess()``
#: then rebuilds it).
LAYOUT = 2
HEADS_BLOB = "bzip2_heads"
#: Line starts kept per block head: a FASTQ read is four lines, so whichever line a block starts in, one of
#: its first four line starts is a read start (a line or CSV record needs only the first).
HEAD_LINES = 4
#: Bytes of a block head at most: four lines of reads up to about 1,000 bases. Longer lines keep a shorter
#: head (its line starts within the bound), or none, and the slice before decodes the whole block as it would
#: without heads.
HEAD_MAX = 4096


def find_magic(data: bytes | bytearray, magic: int, start: int, end: int) -> list[int]:
    """Bit offsets in ``[start, end)`` of ``data`` (most significant bit first) where the 48-bit ``magic``
    starts, followed by at least one more byte.

    For each of the 8 bit alignments the magic spans 7 bytes whose middle 5 are whole; ``bytes.find``
    searches for those in C and the partial first and last bytes are checked after: the 16 searches (both
    magics) cost a small part of what ``bz2`` takes to decode the same bytes.
    """
    hits = []
    for shift in range(8):
        window = (magic << (8 - shift)).to_bytes(7, "big")
        mask = ((2**48 - 1) << (8 - shift)).to_bytes(7, "big")
        first = max(0, -(-(start - shift) // 8))  # first byte i with 8 * i + shift >= start
        last = min((end - 1 - shift) // 8, len(data) - 7)  # last byte i that fits
        i = data.find(window[1:6], first + 1, last + 6) - 1
        while i >= 0:
            if data[i] & mask[0] == window[0] and data[i + 6] & mask[6] == window[6]:
                hits.append(8 * i + shift)
            i = data.find(window[1:6], i + 2, last + 6) - 1
    return sorted(hits)


def _bits(data: bytes | bytearray, at: int, start: int, end: int) -> int:
    """The object's bits ``[start, end)`` as an integer; ``data`` holds its bytes from byte ``at``."""
    lo, hi = start // 8 - at, -(-end // 8) - at
    value = int.from_bytes(data[lo:hi], "big") >> (8 * (hi + at) - end)
    return value & ((1 << (end - start)) - 1)


def rebuild(data: bytes | bytearray, at: int, blocks: Sequence[tuple[int, int]]) -> bytes:
    """A standalone bzip2 file of the blocks at bit ranges ``blocks`` (``data`` holds the object's bytes
    from byte ``at``), one stream per run of adjacent blocks, that :func:`bz2.decompress` decodes.

    The bit work: a block's bits are independent of where they sit, but the stream around them is byte
    aligned. So each run of adjacent blocks is read as one big integer of its bits (Python integers shift
    in C, far faster than ``bz2`` decodes the same bits), and a new stream is
    written around it, most significant bit first: the 32-bit header ``BZh9``, the run's bits, the 48-bit
    end-of-stream magic, the 32-bit stream CRC, and zero bits up to the next byte. The stream CRC combines the runs' block CRCs (the
    32 bits after each block magic) as bzip2 does: rotate the total left by one bit, then xor the block's.
    """
    out, i = [], 0
    while i < len(blocks):
        j = i + 1
        while j < len(blocks) and blocks[j][0] == blocks[j - 1][1]:
            j += 1
        crc = 0
        for start, _ in blocks[i:j]:
            crc = (((crc << 1) | (crc >> 31)) & 0xFFFFFFFF) ^ _bits(data, at, start + 48, start + 80)
        n = blocks[j - 1][1] - blocks[i][0]
        value = (((_HEADER << n | _bits(data, at, blocks[i][0], blocks[j - 1][1])) << 48 | END_MAGIC) << 32) | crc
        pad = -(32 + n + 80) % 8
        out.append((value << pad).to_bytes((32 + n + 80 + pad) // 8, "big"))
        i = j
    return b"".join(out)


def _decode_block(data: bytes, at: int, start: int, end: int) -> tuple[bytes, int] | str:
    """The decoded bytes and CRC of the block at bits ``[start, end)``, or why it does not decode."""
    try:
        return bz2.decompress(rebuild(data, at, [(start, end)])), _bits(data, at, start + 48, start + 80)
    except (OSError, EOFError, ValueError) as exc:
        return str(exc)


class BlockPass:
    """The index pass's walk over the object's bytes as they stream in: finds the magic numbers, decodes the
    blocks between them ahead on ``pool`` and hands back their decoded bytes in stream order, checking
    every stream's header and CRC. ``blocks`` and ``decoded`` are the block table it builds."""

    def __init__(self, url: str, size: int, pool: ThreadPoolExecutor, ahead: int) -> None:
        self.url, self.size, self.pool, self.ahead = url, size, pool, ahead
        self.buf, self.at = bytearray(), 0  # the object's bytes from byte ``at`` on
        self.frontier = 0  # every magic starting before this bit has been found
        self.magics: list[int] = []  # those found from the current block on, in order
        self.is_block: dict[int, bool] = {}
        self.pending: dict[tuple[int, int], Future[Any]] = {}
        self.header: int | None = 0  # byte offset of the next stream header, None inside a stream
        self.pos, self.stream_crc = 0, 0  # bit offset of the current block or end magic; its stream's CRC so far
        self.blocks: list[tuple[int, int]] = []
        self.decoded = [0]

    def feed(self, chunk: bytes, final: bool = False) -> Iterator[bytes]:
        """Take the next bytes of the object (``final``: there are no more); yields decoded blocks in order."""
        self.buf += chunk
        frontier = 8 * (self.at + len(self.buf) - 6)
        if frontier > self.frontier:
            lo, hi = self.frontier - 8 * self.at, frontier - 8 * self.at
            found = {bit + 8 * self.at: kind for kind, magic in ((True, BLOCK_MAGIC), (False, END_MAGIC)) for bit in find_magic(self.buf, magic, lo, hi)}
            self.is_block.update(found)
            self.magics += sorted(found)  # all after the ones found before
            self.frontier = frontier
        yield from self._advance(final)
        done = bisect.bisect_left(self.magics, self.pos)  # magics and bytes before the current block are done with
        for bit in self.magics[:done]:
            del self.is_block[bit]
        del self.magics[:done]
        keep = self.pos // 8 - self.at
        if keep > 0:
            del self.buf[:keep]
            self.at += keep

    def _error(self, cause: str, bit: int) -> InvalidFormatError:
        return InvalidFormatError(self.url, cause, offset=bit // 8)

    def _advance(self, final: bool) -> Iterator[bytes]:
        end_bit = 8 * (self.at + len(self.buf))
        while True:
            if self.header is not None:
                h = self.header
                if h >= self.size:
                    return
                if 8 * h + 32 >= self.frontier:
                    if final:
                        raise self._error("truncated bzip2 stream: the object ends after its header", 8 * h)
                    return
                head = bytes(self.buf[h - self.at : h - self.at + 4])
                if head[:3] != b"BZh" or not 49 <= head[3] <= 57:
                    raise self._error("not a bzip2 stream header (data after the last stream?)", 8 * h)
                if 8 * h + 32 not in self.is_block:
                    raise self._error("corrupt bzip2 stream: no block or end marker after its header", 8 * h)
                self.header, self.pos, self.stream_crc = None, 8 * h + 32, 0
                continue
            s = self.pos
            if not self.is_block[s]:
                if s + 80 > end_bit:
                    if final:
                        raise self._error("truncated bzip2 stream: the object ends inside its end marker", s)
                    return
                stored = _bits(self.buf, self.at, s + 48, s + 80)
                if stored != self.stream_crc:
                    raise self._error(f"corrupt bzip2 stream: its CRC is {stored:#010x}, its blocks give {self.stream_crc:#010x}", s)
                self.header = -(-(s + 80) // 8)
                continue
            found = self._block(s, final)
            if found is None:
                return
            out, crc, e = found
            self.blocks.append((s, e))
            self.decoded.append(self.decoded[-1] + len(out))
            self.stream_crc = (((self.stream_crc << 1) | (self.stream_crc >> 31)) & 0xFFFFFFFF) ^ crc
            self.pos = e
            for key in [key for key in self.pending if key[0] < e]:
                self.pending.pop(key).cancel()
            yield out

    def _block(self, s: int, final: bool) -> tuple[bytes, int, int] | None:
        """The block at bit ``s``: its decoded bytes, CRC and end; None until enough bytes have arrived."""
        k = bisect.bisect_right(self.magics, s)
        ends = self.magics[k : k + _MERGES]
        if not ends:
            if final:
                raise self._error("truncated bzip2 stream: the object ends inside a block", s)
            if self.frontier - s > 8 * _MAX_BLOCK_BYTES:
                raise self._error(f"corrupt bzip2 data: no block boundary within {_MAX_BLOCK_BYTES} bytes", s)
            return None
        self._dispatch(k - 1)
        first = self.pending[(s, ends[0])]
        if not (final or first.done() or len(self.pending) >= self.ahead):
            return None
        result = first.result()
        if isinstance(result, str) and len(ends) < _MERGES and not final:
            return None  # wait for more candidates before deciding the block is corrupt
        for e in ends[1:]:
            if not isinstance(result, str):
                break
            result = _decode_block(self._bytes(s, e), s // 8, s, e)
            ends = ends[1:]
        if isinstance(result, str):
            raise self._error(f"corrupt bzip2 block: it does not decode ({first.result()})", s)
        return result[0], result[1], ends[0]

    def _bytes(self, s: int, e: int) -> bytes:
        return bytes(self.buf[s // 8 - self.at : -(-e // 8) - self.at])

    def _dispatch(self, k: int) -> None:
        """Decode ahead: the blocks between known magic numbers from ``magics[k]`` on, up to ``ahead`` at once."""
        for i, (s, e) in enumerate(zip(self.magics[k:], self.magics[k + 1 :])):
            if i and len(self.pending) >= self.ahead:
                return
            if self.is_block[s] and (s, e) not in self.pending:
                self.pending[(s, e)] = self.pool.submit(_decode_block, self._bytes(s, e), s // 8, s, e)


def head_starts(block: bytes) -> list[int]:
    """Offsets in a block's decoded bytes of its first :data:`HEAD_LINES` line starts within :data:`HEAD_MAX`
    bytes (the byte after each line feed); the last one is where the block's head ends."""
    out: list[int] = []
    i = block.find(b"\n", 0, HEAD_MAX)
    while i >= 0 and len(out) < HEAD_LINES:
        out.append(i + 1)
        i = block.find(b"\n", i + 1, HEAD_MAX)
    return out


class BlockHeads:
    """The block heads of one object: the ``bzip2_heads`` blob (zlib-compressed, bytes from the pass or a
    sidecar reference), decompressed on first use, and each head's length and CRC-32."""

    def __init__(self, url: str, blob: bytes | BlobRef, lengths: np.ndarray, crcs: np.ndarray) -> None:
        self.url, self.blob, self.crcs = url, blob, crcs
        self.ends = np.concatenate(([0], np.cumsum(lengths, dtype=np.int64)))
        self.data: bytes | None = None

    def head(self, block: int) -> tuple[bytes, int]:
        """Block ``block``'s head and its stored CRC-32 (checked by the reader that uses it)."""
        if self.data is None:
            raw = self.blob if isinstance(self.blob, bytes) else self.blob.read()
            total = int(self.ends[-1])
            try:
                d = zlib.decompressobj()
                data = d.decompress(raw, total + 1)  # bounded by the tables (0 would mean no bound): a crafted blob cannot exhaust memory
                whole = d.eof and not d.unconsumed_tail and not d.unused_data
            except zlib.error as exc:
                raise CorruptIndexError(self.url, f"bzip2 block heads do not decompress ({exc})") from None
            if len(data) != total or not whole:
                raise CorruptIndexError(self.url, f"bzip2 block heads hold other than the {total} bytes their lengths add up to")
            self.data = data
        return self.data[self.ends[block] : self.ends[block + 1]], int(self.crcs[block])


@dataclass(frozen=True)
class Bzip2Reader:
    """Decoded bytes ``[start, end)`` of a bzip2 object, from the blocks that hold them and, where the range
    ends inside the head of the block after them, that head."""

    obj: StorageObject
    info: ObjectInfo
    start: int
    end: int
    #: The blocks' bit ranges, the decoded offset of the first and the bytes they decode to.
    blocks: tuple[tuple[int, int], ...]
    first_decoded: int
    decoded_size: int
    #: The object bytes that hold the blocks.
    fetch: Fetch
    #: The head of the block after ``blocks`` when the range ends inside it (else b""), and its CRC-32.
    head: bytes = b""
    head_crc: int = 0

    def read(self) -> bytes:
        if self.end <= self.start:
            return b""
        out = self._decode() if self.blocks else b""
        if self.head:
            if zlib.crc32(self.head) != self.head_crc:
                raise CorruptIndexError(self.obj.url, f"bzip2 block head at decoded offset {self.first_decoded + self.decoded_size} does not match its CRC-32: the index is corrupt")
            out += self.head
        skip = self.start - self.first_decoded
        return out[skip : skip + self.end - self.start]

    def _decode(self) -> bytes:
        """The blocks' decoded bytes up to the range's end: a range ending inside its last block stops
        decoding there, saving that block's last stage (the BWT inversion runs as ``bz2`` hands out bytes)."""
        at = self.fetch.start
        data = self.obj.read_range(at, self.fetch.end, expect=self.info)
        want = self.decoded_size if self.head else min(self.decoded_size, self.end - self.first_decoded)
        try:
            out = decode_prefix(rebuild(data, at, self.blocks), want)
        except (OSError, EOFError, ValueError) as exc:
            raise CorruptIndexError(self.obj.url, f"bzip2 blocks from byte {at} do not decode ({exc}): the index does not match the object") from None
        if len(out) != want:
            raise CorruptIndexError(self.obj.url, f"bzip2 blocks from byte {at} decode to {len(out)} bytes, not {want}: the index does not match the object")
        return out


def decode_prefix(raw: bytes, want: int) -> bytes:
    """The first ``want`` decoded bytes of ``raw``, bzip2 streams one after another (fewer if they end first,
    or if what follows a stream is not one).

    ``bz2`` inverts a block's BWT as it hands out bytes, so stopping early saves most of that stage for the
    last block: a slice ending inside a block it shares with the next slice decodes less than the whole
    block (``python benchmarks/codecs_zstd_bzip2.py`` prints what a block's first 5 % cost against the whole
    block). The CRC of a block left unfinished is not checked, as a gzip reader stopping inside a member
    does not check the member's."""
    out: list[bytes] = []
    n = 0
    while raw[:3] == b"BZh" and n < want:
        d = bz2.BZ2Decompressor()
        chunk = d.decompress(raw, want - n)
        out.append(chunk)
        n += len(chunk)
        if not d.eof:
            break
        raw = d.unused_data
    return b"".join(out)


class Bzip2Readers:
    """``reader(start, end)`` for one bzip2 object's blocks (see :meth:`Bzip2Codec.readers`): the blocks
    from the one holding ``start``, and the next block's stored head instead of the whole block when ``end``
    falls inside it."""

    def __init__(self, obj: StorageObject, info: ObjectInfo, table: CheckpointTable, heads: BlockHeads) -> None:
        self.obj, self.info, self.table, self.heads = obj, info, table, heads

    def prepare(self, starts: np.ndarray, ends: np.ndarray) -> None:
        """Load the heads blob once for a whole partition (its slices then carry their heads)."""
        if len(self.table):
            self.heads.head(0)

    def __call__(self, start: int, end: int) -> Bzip2Reader:
        fetch = self.table.fetch(start, end)
        k, u = fetch.row, self.table.logical
        if end <= start or not len(self.table):
            return Bzip2Reader(self.obj, self.info, start, end, (), 0, 0, fetch)
        j = self.table.stop(k, end)
        head, crc = b"", 0
        if end - u[j - 1] <= self.heads.ends[j] - self.heads.ends[j - 1]:
            head, crc = self.heads.head(j - 1)
            j -= 1
        starts, ends = self.table.columns["bzip2_start"], self.table.columns["bzip2_end"]
        blocks = tuple(zip(starts[k:j].tolist(), ends[k:j].tolist()))
        if blocks:
            fetch = fetch._replace(first_end=-(-blocks[-1][1] // 8), end=-(-blocks[-1][1] // 8))
        return Bzip2Reader(self.obj, self.info, start, end, blocks, int(u[k]), int(u[j] - u[k]), fetch, head, crc)


@register_codec
class Bzip2Codec(Codec):
    """bzip2, one stream or many. ``spacing`` does not apply: every block start is a checkpoint. The index
    pass decodes on local threads, not on the context's executor: it must hand decoded bytes to the scanner
    in order, and the block offsets are only known once the blocks before are decoded."""

    name = "bzip2"

    @classmethod
    def detect(cls, head: bytes) -> bool:
        return head[:3] == b"BZh" and head[3:4] in b"123456789" and len(head) >= 10 and int.from_bytes(head[4:10], "big") in (BLOCK_MAGIC, END_MAGIC)

    @classmethod
    def head(cls, url: str, raw: bytes, n: int) -> bytes:
        if not cls.detect(raw):
            raise InvalidFormatError(url, "not bzip2: the object does not start with a bzip2 stream header", offset=0)
        try:
            return decode_prefix(raw, n)
        except OSError as exc:
            raise InvalidFormatError(url, f"corrupt bzip2 data: {exc}", offset=0) from None

    @classmethod
    def head_bytes(cls, n: int) -> int:
        return n + _MAX_BLOCK_BYTES  # a block decodes only whole

    @classmethod
    def scan(cls, ctx: Any, scanner: Scanner) -> tuple[list[Any], CodecIndex]:
        url, size, workers = ctx.obj.url, ctx.info.size, default_workers()
        heads: list[bytes] = []
        with StreamRanges(scanner, max_range=8 * 2**20) as ranges, ThreadPoolExecutor(workers, thread_name_prefix="dataplug-bzip2") as pool:
            walk = BlockPass(url, size, pool, ahead=2 * workers)

            def take(blocks: Iterator[bytes]) -> None:
                for out in blocks:
                    at = walk.decoded[-2]  # the block's decoded offset
                    starts = head_starts(out)
                    for cut in [0, *starts[:-1]]:  # the next line start is the first record start of each range: sampled
                        ranges.cut(at + cut)
                    heads.append(out[: starts[-1]] if starts else b"")
                    ranges.data(out)

            with ctx.obj.stream(ctx.info) as fh, progress_bar(size, f"indexing {url}", ctx.progress, unit="B") as bar:
                while chunk := fh.read(_PIECE):
                    take(walk.feed(chunk))
                    bar.update(len(chunk))
            take(walk.feed(b"", final=True))
            results = ranges.finish()
        blocks = np.array(walk.blocks, np.uint64).reshape(-1, 2)
        decoded = np.array(walk.decoded, np.uint64)
        tables = {
            "bzip2_start": blocks[:, 0].copy(),
            "bzip2_end": blocks[:, 1].copy(),
            "bzip2_decoded": decoded,
            "bzip2_head_len": np.array([len(h) for h in heads], np.uint16),
            "bzip2_head_crc": np.array([zlib.crc32(h) for h in heads], np.uint32),
            "bzip2_layout": np.array([LAYOUT], np.uint8),
        }
        sizes = np.diff(walk.decoded)
        logical = walk.decoded[-1]
        attributes = {"compression": cls.name, "uncompressed_size": logical, "spacing": int(sizes.max(initial=0)), "checkpoints": len(walk.blocks)}
        return results, CodecIndex(cls.name, logical, tables, {HEADS_BLOB: zlib.compress(b"".join(heads), 6)}, attributes)

    @classmethod
    def checkpoints(cls, url: str, index: CodecIndex, size: int) -> CheckpointTable:
        """Blocks as checkpoints: a block's data starts in the byte holding its first bit, and the end row is
        the byte after the last block's last bit."""
        what = "bzip2 block index"
        start, end, decoded = (column(url, what, index.tables, name) for name in _TABLES)
        if start.size != end.size or decoded.size != start.size + 1:
            raise CorruptIndexError(url, f"bad {what}: tables of mismatched lengths")
        compressed = np.append(start // 8, -(-end[-1:] // 8) if end.size else [0])
        return CheckpointTable.of(url, what, compressed, decoded, margin=1, columns={"bzip2_start": start, "bzip2_end": end})

    @classmethod
    def validate(cls, url: str, tables: Mapping[str, np.ndarray], blob_sizes: dict[str, int], size: int, logical_size: Any) -> int:
        def need(ok: Any, what: str) -> None:
            if not ok:
                raise CorruptIndexError(url, f"bad bzip2 block index: {what}")

        layout = column(url, "bzip2 block index", tables, "bzip2_layout") if "bzip2_layout" in tables else np.array([1])
        need(layout.tolist() == [LAYOUT], f"layout {layout.tolist()} of another dataplug, not {LAYOUT} (block heads); run preprocess(force=True)")
        table = cls.checkpoints(url, CodecIndex(cls.name, 0, tables), size)
        start, end = table.columns["bzip2_start"], table.columns["bzip2_end"]
        need(isinstance(logical_size, int) and table.logical_size == logical_size, "decoded offsets must run from 0 to the uncompressed size")
        need(np.all(start >= 32) and np.all(end - start > 80) and np.all(start[1:] >= end[:-1]) and np.all(end <= 8 * size), "block bits must lie in order inside the object")
        # A block decodes to at most _MAX_BLOCK_DECODED bytes whatever its length: the ratio bound is per block.
        table.validate(url, size, "bzip2 block index", max_ratio=0, slack=_MAX_BLOCK_DECODED, strict=False)
        lengths, crcs = (column(url, "bzip2 block index", tables, name) for name in ("bzip2_head_len", "bzip2_head_crc"))
        need(np.all(lengths >= 0) and np.all(crcs >= 0), "negative head lengths or CRCs")
        need(lengths.size == len(table) and crcs.size == len(table), "one head length and CRC per block")
        need(np.all(lengths <= np.minimum(np.diff(table.logical), HEAD_MAX)) and np.all(crcs < 2**32), "head lengths beyond their blocks")
        need(HEADS_BLOB in blob_sizes, "block heads blob missing")
        return logical_size

    @classmethod
    def readers(cls, obj: StorageObject, info: ObjectInfo, index: CodecIndex) -> Bzip2Readers:
        """Readers of the blocks; the index is :meth:`scan`'s or one :meth:`validate` passed (tables and blob there)."""
        heads = BlockHeads(obj.url, index.blobs[HEADS_BLOB], index.tables["bzip2_head_len"], index.tables["bzip2_head_crc"])
        return Bzip2Readers(obj, info, cls.checkpoints(obj.url, index, info.size), heads)
