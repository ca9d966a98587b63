"""The BGZF byte source (bgzip, htslib): gzip members of at most 64 KiB marked by a ``BC`` extra field.

Every member decodes alone, so every member start is a checkpoint and no windows are stored: a range is
read from the member holding its first byte to the one holding its last, and nothing else is inflated.
The sidecar keeps two tables of one row per member, in object order: :data:`BLOCK_SIZES` (uint16, the
member's bytes less one, as its header's BSIZE says) and :data:`DECODED_SIZES` (uint32, its ISIZE). Loading
cumulates them into the :class:`~dataplug.codecs.checkpoints.CheckpointTable`: 6 bytes per member of up to
64 KiB (``python benchmarks/genomics_fasta.py`` prints the sidecar's growth over the compressed object for
a FASTA and a VCF).

The ``spacing`` option is accepted and ignored for BGZF: a member start is the only place decoding starts
without a window, and keeping one costs 6 bytes, so every one is kept.

The index pass is a parallel map over runs of members on the context's executor. The member starts and
their decoded offsets come from a ``.gzi`` index beside the object (as ``bgzip -i`` or ``samtools faidx``
write it) or named by ``gzi=``, else from walking the member headers (BSIZE) and trailers (ISIZE) over the
compressed bytes, which inflates nothing. Each map step inflates its members and reports them, so the pass
checks that they tile the object and that the ``.gzi`` lists member starts at their true decoded offsets.
"""

from __future__ import annotations

import ctypes
import functools
import zlib
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from dataplug.codecs.base import CodecIndex, Scanner, register_codec
from dataplug.codecs.checkpoints import CheckpointTable, Fetch, column, compressed_pieces
from dataplug.codecs.deflate import Backend, backend
from dataplug.codecs.gzip.codec import GzipCodec
from dataplug.codecs.gzip.headers import bgzf_block_size, is_bgzf
from dataplug.codecs.gzip.index import MAX_RATIO
from dataplug.codecs.gzip.zlib_ctypes import Z_BUF_ERROR, Z_NO_FLUSH, Z_OK, Z_STREAM_END, ZStream, libz
from dataplug.codecs.plain import DEFAULT_CHUNK_SIZE
from dataplug.errors import CorruptIndexError, InvalidFormatError, ObjectNotFoundError
from dataplug.executors import default_workers, map_ordered, ordered_ahead
from dataplug.storage import ObjectInfo, StorageObject

#: The sidecar's per-member tables: BSIZE (the member's bytes less one) and ISIZE (its decoded bytes).
BLOCK_SIZES, DECODED_SIZES = "bgzf_block_size", "bgzf_decoded_size"
#: The most bytes a BGZF member holds: its BSIZE is 16 bits (SAM/BAM specification, 4.1). bgzip and htslib
#: decode at most as many from one, but its ISIZE is 32 bits; deflate bounds it (``MAX_RATIO``).
MAX_MEMBER = 65536
#: The fewest decoded bytes per run of members that :func:`default_run` picks.
MIN_RUN = 4 * 2**20
#: Compressed bytes per read of the header walk, and reads kept in flight ahead of it.
_WALK_PIECE, _WALK_AHEAD = 8 * 2**20, 2


#: The empty member that ends every BGZF file (the SAM/BAM specification, section 4.1.2).
BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")
#: Decoded bytes per member written: bgzip's (htslib's ``BGZF_BLOCK_SIZE``), so that even incompressible
#: data fits a member's 64 KiB.
BGZF_BLOCK = 0xFF00


def bgzf_compress(data: bytes, level: int = 6, block: int = BGZF_BLOCK) -> bytes:
    """``data`` as BGZF members of at most ``block`` decoded bytes each, as bgzip writes them (without the
    end-of-file member, :data:`BGZF_EOF`, which a writer adds once at the end)."""
    out = []
    for at in range(0, len(data), block):
        chunk = data[at : at + block]
        deflate = zlib.compressobj(level, zlib.DEFLATED, -15)
        body = deflate.compress(chunk) + deflate.flush()
        header = b"\x1f\x8b\x08\x04\0\0\0\0\0\xff\x06\0BC\x02\0" + (18 + len(body) + 8 - 1).to_bytes(2, "little")
        out += [header, body, zlib.crc32(chunk).to_bytes(4, "little"), len(chunk).to_bytes(4, "little")]
    return b"".join(out)


def read_gzi(url: str, data: bytes, size: int) -> np.ndarray:
    """Member starts from a ``.gzi`` file: an (n + 1, 2) array of (compressed, uncompressed) offsets, the
    object start first. The format is htslib's: a little-endian u64 count, then that many u64 pairs."""
    if len(data) < 8:
        raise InvalidFormatError(url, "not a .gzi index: shorter than its 8-byte entry count", offset=0)
    n = int.from_bytes(data[:8], "little")
    if len(data) != 8 + 16 * n:
        raise InvalidFormatError(url, f"not a .gzi index: {len(data)} bytes for {n} entries", offset=0)
    points = np.concatenate((np.zeros((1, 2), np.int64), np.frombuffer(data, "<u8", offset=8).reshape(n, 2).astype(np.int64)))
    if np.any(np.diff(points, axis=0) <= 0) or points[-1, 0] >= max(size, 1):
        raise InvalidFormatError(url, "the .gzi index does not fit the object: offsets must increase inside it", offset=0)
    return points


class _Inflater:
    """Inflates BGZF members one after the other into one growing buffer, with zlib's C library (zlib-ng
    when installed) through ctypes: decoded bytes are never copied or joined, and the GIL is not held
    while inflating, so the map steps of the pass decode on every core. zlib checks each member's CRC-32
    and ISIZE; a member must end exactly where its header's block size says."""

    def __init__(self, url: str, capacity: int) -> None:
        self.url, self.zlib, self.stream = url, libz(), ZStream()
        if self.zlib.inflateInit2_(ctypes.byref(self.stream), 31, self.zlib.zlibVersion(), ctypes.sizeof(ZStream)) != Z_OK:
            raise MemoryError("zlib inflateInit2 failed")
        self.out = np.empty(max(capacity, MAX_MEMBER), np.uint8)
        self.size = 0  # self.out[:size] is decoded
        self.members: list[tuple[int, int, int]] = []  # (object offset, bytes, decoded bytes)

    def __enter__(self) -> _Inflater:
        return self

    def __exit__(self, *exc: object) -> None:
        self.zlib.inflateEnd(ctypes.byref(self.stream))

    @property
    def decoded(self) -> np.ndarray:
        return self.out[: self.size]

    def feed(self, raw: bytes, at: int, whole: bool) -> int:
        """Inflate the members at the start of ``raw`` (object bytes from ``at``), each cut by its header's
        block size; returns how many bytes of ``raw`` they took. With ``whole`` every member must end inside
        ``raw`` (zero padding may follow the last), else decoding stops before a member that does not."""
        view, pos = memoryview(raw), 0
        address = np.frombuffer(raw, np.uint8).ctypes.data if len(raw) else 0
        while pos < len(view):
            if whole and view[pos] == 0 and not bytes(view[pos:]).strip(b"\0"):
                break  # zero padding after the last member, which gzip and the sequential pass accept
            xlen = int.from_bytes(view[pos + 10 : pos + 12], "little")
            if not whole and pos + 12 + xlen > len(view):
                break  # the read ends inside the next member's header
            size = bgzf_block_size(bytes(view[pos : pos + 12 + xlen]))
            if size is None:
                raise InvalidFormatError(self.url, "not a BGZF member: no 'BC' extra field", offset=at + pos)
            if pos + size > len(view):
                if whole:
                    raise InvalidFormatError(
                        self.url, f"truncated BGZF member: it says it is {size} bytes, {len(view) - pos} follow", offset=at + pos
                    )
                break
            self._member(address + pos, size, at + pos)
            pos += size
        return pos

    def _member(self, address: int, size: int, offset: int) -> None:
        s, z, first = self.stream, self.zlib, self.size
        if z.inflateReset(ctypes.byref(s)) != Z_OK:
            raise RuntimeError("zlib inflateReset failed")
        s.next_in, s.avail_in = address, size
        while True:
            if self.size == len(self.out):
                grown = np.empty(2 * len(self.out), np.uint8)
                grown[: self.size] = self.out[: self.size]
                self.out = grown
            room = len(self.out) - self.size
            s.next_out, s.avail_out = self.out.ctypes.data + self.size, room
            ret = z.inflate(ctypes.byref(s), Z_NO_FLUSH)
            self.size += room - s.avail_out
            if ret == Z_STREAM_END and not s.avail_in:
                break
            if ret == Z_STREAM_END or (ret == Z_BUF_ERROR and s.avail_out):
                raise InvalidFormatError(
                    self.url,
                    f"bad BGZF block size: the member says it is {size} bytes, but its deflate data and trailer end elsewhere",
                    offset=offset,
                )
            if ret not in (Z_OK, Z_BUF_ERROR):
                message = (s.msg or b"zlib error").decode("ascii", "replace")
                raise InvalidFormatError(self.url, f"corrupt BGZF member: {message}", offset=offset)
        self.members.append((offset, size, self.size - first))


def inflate_members(url: str, raw: bytes, at: int, whole: bool) -> tuple[bytes, list[tuple[int, int]]]:
    """Decode the BGZF members in ``raw`` (object bytes from ``at``), each cut by its header's block size;
    returns the decoded bytes and every member's (object offset, decoded offset within them). With
    ``whole`` every member must end inside ``raw`` (zero padding may follow the last), else decoding stops
    before a partial last member."""
    with _Inflater(url, 4 * len(raw)) as inflater:
        inflater.feed(raw, at, whole)
    decoded = np.cumsum([0] + [n for _, _, n in inflater.members[:-1]]).tolist() if inflater.members else []
    return inflater.decoded.tobytes(), [(c, u) for (c, _, _), u in zip(inflater.members, decoded)]


def inflate_pieces(url: str, pieces: Iterable[bytes], at: int) -> Iterator[memoryview]:
    """The decoded bytes of the BGZF members in ``pieces`` (consecutive object bytes from ``at``, cut
    anywhere), a piece at a time; the pieces must end where a member does (or in zero padding)."""
    carry: bytes = b""
    for piece in pieces:
        raw = carry + piece if carry else piece
        with _Inflater(url, 4 * len(raw)) as inflater:
            used = inflater.feed(raw, at, whole=False)
        yield memoryview(inflater.decoded)
        carry, at = raw[used:], at + used
    if carry:
        with _Inflater(url, 4 * len(carry)) as inflater:
            inflater.feed(carry, at, whole=True)
        yield memoryview(inflater.decoded)


def walk_members(obj: StorageObject, info: ObjectInfo) -> np.ndarray:
    """(object offset, decoded offset) of every member start, found by walking the member headers (BSIZE)
    and trailers (ISIZE) over the compressed bytes, which are read in large ranges, a few ahead, and not
    inflated; then one row where the members end (decoded: the logical size). Zero bytes after the last
    member end the walk (the pass checks they are only zeros)."""
    url, size = obj.url, info.size
    pieces = [(a, min(a + _WALK_PIECE, size)) for a in range(0, size, _WALK_PIECE)]

    def read(piece: tuple[int, int]) -> bytes:
        return obj.read_range(*piece, expect=info, checked=piece[0] > 0)

    starts, decoded = [], []
    buf, base, pos, u, previous = bytearray(), 0, 0, 0, -1
    with ThreadPoolExecutor(_WALK_AHEAD, thread_name_prefix="dataplug-bgzf-walk") as pool:
        chunks = ordered_ahead(read, pieces, pool, _WALK_AHEAD)

        def have(n: int) -> int:
            """How many of the bytes [pos, pos + n) are in ``buf`` once read on as needed (fewer at the end)."""
            nonlocal buf, base
            while pos + n > base + len(buf):
                chunk = next(chunks, None)
                if chunk is None:
                    break
                del buf[: pos - base]
                base = pos
                buf += chunk
            return min(n, base + len(buf) - pos)

        while pos < size:
            if not have(12) or buf[pos - base] == 0:
                break  # zero padding, checked by the pass
            at = pos - base
            xlen = int.from_bytes(buf[at + 10 : at + 12], "little")
            got = have(12 + xlen)
            at = pos - base
            head = bytes(buf[at : at + got])
            block = bgzf_block_size(head) if head[:3] == b"\x1f\x8b\x08" else None
            if block is None:
                if previous >= 0:
                    raise InvalidFormatError(
                        url,
                        f"bad BGZF block size: the member at byte {previous} says it is {pos - previous} bytes, but no BGZF member starts where it ends",
                        offset=previous,
                    )
                raise InvalidFormatError(url, "not a BGZF member: no 'BC' extra field", offset=pos)
            got = have(block)
            if got < block:
                raise InvalidFormatError(
                    url, f"truncated BGZF member: it says it is {block} bytes, the object ends {got} bytes after its start", offset=pos
                )
            at = pos - base
            starts.append(pos)
            decoded.append(u)
            u += int.from_bytes(buf[at + block - 4 : at + block], "little")
            previous, pos = pos, pos + block
    return np.column_stack((np.array([*starts, pos], np.int64), np.array([*decoded, u], np.int64)))


def _scan_members(obj: StorageObject, size: int, scanner: Scanner, item: tuple[int, ...]) -> tuple[Any, int, np.ndarray]:
    """Map step: decode the members ``[c0, c1)`` (from the member before them, for the byte of context)
    and enough members after them for the scanner's look-ahead; returns the scan, the decoded end and the
    (object offset, bytes, decoded bytes) of every member from ``c0`` on, an (n, 3) array. ``u1``, the
    decoded offset at ``c1`` when known (else -1), sizes the buffer."""
    c_prev, u_prev, c0, u0, c1, u1 = item
    with _Inflater(obj.url, u1 - u_prev + 4 * MAX_MEMBER if u1 >= 0 else 4 * (c1 - c_prev)) as inflater:
        inflater.feed(obj.read_range(c_prev, c1), c_prev, whole=True)
        walked = np.array([m for m in inflater.members if m[0] >= c0], np.int64).reshape(-1, 3)
        end = u_prev + inflater.size
        carry, at, read_end, ahead = b"", c1, c1, MAX_MEMBER  # first at least one whole member
        while read_end < size and not scanner.enough(inflater.decoded[end - u_prev :]):
            stop = min(read_end + ahead, size)
            raw = carry + obj.read_range(read_end, stop)
            used = inflater.feed(raw, at, whole=stop == size)
            carry, at, read_end, ahead = raw[used:], at + used, stop, 4 * ahead
        return scanner(inflater.decoded, u0 - u_prev, u0, end, read_end >= size), end, walked


def member_checkpoints(url: str, block_sizes: np.ndarray, decoded_sizes: np.ndarray, logical_size: int) -> CheckpointTable:
    """The :class:`CheckpointTable` of the per-member tables: a checkpoint at the first member starting at
    each decoded offset short of the end (members that decode to nothing, as the EOF marker, are read
    with the member before them), and the end row where the members end."""
    c = np.concatenate(([0], np.cumsum(block_sizes + 1)))
    u = np.concatenate(([0], np.cumsum(decoded_sizes)))
    keep = np.concatenate(([True], u[1:-1] > u[:-2])) & (u[:-1] < logical_size)
    keep[0] = True
    what = "BGZF member index"
    return CheckpointTable.of(url, what, np.append(c[:-1][keep], c[-1]), np.append(u[:-1][keep], logical_size))


def inflate_unit(url: str, raw: bytes, at: int, size: int, inflate: Backend | None = None) -> bytes:
    """The decoded bytes of the BGZF members that ``raw`` (object bytes from ``at``) holds, one checkpoint's
    stretch (a member, and any empty ones after it), which the index says decode to ``size`` bytes. The
    inflate is ``inflate`` (default: :func:`dataplug.codecs.deflate.backend`, the fastest installed); it
    checks each member's CRC-32 and ISIZE. Members that do not fill ``raw`` exactly, or decode to another
    size, are a :class:`CorruptIndexError`: the member table does not match the object."""
    inflate = inflate or backend()
    try:
        if raw[12:14] == b"BC" and int.from_bytes(raw[16:18], "little") + 1 == len(raw):
            out = inflate.decompress(raw, 31)  # one member, the usual stretch: one call
        else:
            out, rest = b"", raw
            while rest:
                member = inflate.decompressobj(31)
                out += member.decompress(rest)
                if not member.eof:
                    raise inflate.error("the member ends past its stretch")
                rest = member.unused_data
    except inflate.error as exc:
        raise CorruptIndexError(url, f"the BGZF member index does not match the object: the members at bytes [{at}, {at + len(raw)}) do not decode ({exc})") from None
    if len(out) != size:
        raise CorruptIndexError(
            url, f"the BGZF member index does not match the object: the members at bytes [{at}, {at + len(raw)}) decode to {len(out)} bytes, the index says {size}"
        )
    return out


@dataclass(frozen=True)
class BgzfReader:
    """Decoded bytes ``[start, end)`` of a BGZF object: the members from the one holding ``start`` to the one
    holding ``end - 1`` (``fetch``), in one range read unless they span more than
    :data:`~dataplug.codecs.checkpoints.PIECE` bytes. The members
    must decode to exactly the bytes the index says they hold, so a crafted or stale member table is a
    :class:`CorruptIndexError`, never shifted data."""

    obj: StorageObject
    info: ObjectInfo
    start: int
    end: int
    fetch: Fetch
    #: The decoded offsets where the fetched members start and end, by the index.
    members_start: int
    members_end: int

    def read(self) -> bytes:
        if self.end <= self.start:
            return b""
        url, f = self.obj.url, self.fetch
        skip, want, expected = self.start - self.members_start, self.end - self.start, self.members_end - self.members_start
        out, decoded = bytearray(), 0
        try:
            for chunk in inflate_pieces(url, compressed_pieces(self.obj, self.info, f.start, f.end, f.end), f.start):
                lo, hi = max(skip - decoded, 0), min(skip + want - decoded, len(chunk))
                if hi > lo:
                    out += chunk[lo:hi]
                decoded += len(chunk)
        except InvalidFormatError as exc:
            raise CorruptIndexError(url, f"the BGZF member index does not match the object: {exc.cause} (at byte {exc.offset})") from None
        if decoded != expected or len(out) != want:
            raise CorruptIndexError(
                url,
                f"the BGZF member index does not match the object: the members at bytes [{f.start}, {f.end}) decode to {decoded} bytes, the index says {expected}",
            )
        return bytes(out)


class BgzfReaders:
    """``reader(start, end)`` for one BGZF object's member index (see :meth:`BgzfCodec.readers`)."""

    def __init__(self, obj: StorageObject, info: ObjectInfo, table: CheckpointTable) -> None:
        self.obj, self.info, self.table = obj, info, table

    def __call__(self, start: int, end: int) -> BgzfReader:
        fetch = self.table.fetch(start, end)
        last = self.table.stop(fetch.row, end)
        logical = self.table.logical
        return BgzfReader(self.obj, self.info, start, end, fetch, int(logical[fetch.row]), int(logical[last]))


def gzi_bytes(url: str, index: CodecIndex, size: int) -> bytes | None:
    """htslib's ``.gzi`` of the object from its member index (no read of the object): a little-endian u64
    count, then the (compressed, uncompressed) u64 offsets of every member start but the first, leaving
    out members that decode to nothing as htslib does. None for an index without per-member tables (made
    by the gzip pass, with ``compression="gzip"``)."""
    if BLOCK_SIZES not in index.tables:
        return None
    sizes, decoded = column(url, "BGZF member index", index.tables, BLOCK_SIZES), column(url, "BGZF member index", index.tables, DECODED_SIZES)
    c = np.concatenate(([0], np.cumsum(sizes + 1)[:-1]))
    u = np.concatenate(([0], np.cumsum(decoded)[:-1]))
    points = np.column_stack((c, u))[decoded > 0][1:]
    return len(points).to_bytes(8, "little") + points.astype("<u8").tobytes()


def default_run(logical_size: int) -> int:
    """Decoded bytes per run of members in the pass: :data:`~dataplug.codecs.plain.DEFAULT_CHUNK_SIZE` at
    most, but small enough for four runs per core (three runs on two cores leave one core idle for the last),
    and no less than :data:`MIN_RUN` (a run also decodes the member before it)."""
    return int(min(DEFAULT_CHUNK_SIZE, max(MIN_RUN, logical_size // (4 * default_workers()))))


def _groups(points: np.ndarray, run: int) -> np.ndarray:
    """Indices of the rows of ``points`` (decoded offsets in column 1) that start a run: the first row, then
    the first row of each further ``run`` decoded bytes."""
    bucket = points[:, 1] // max(run, 1)
    return np.concatenate(([0], np.flatnonzero(np.diff(bucket) > 0) + 1))


@register_codec
class BgzfCodec(GzipCodec):
    """BGZF. Options: ``gzi`` (URL of a ``.gzi`` index; by default ``<url>.gzi`` is used when it exists).
    ``spacing`` is accepted and ignored: every member start is a checkpoint (see the module docstring)."""

    name = "bgzf"
    options = {"gzi": "URL of a BGZF .gzi index (default: <url>.gzi when it exists)"}

    @classmethod
    def detect(cls, head: bytes) -> bool:
        return head[:2] == b"\x1f\x8b" and is_bgzf(head)

    @classmethod
    def scan(cls, ctx: Any, scanner: Scanner) -> tuple[list[Any], CodecIndex]:
        url, size = ctx.obj.url, ctx.info.size
        gzi_url, gzi = cls._gzi(ctx)
        if gzi is None:
            walked = walk_members(ctx.obj, ctx.info)
            points, logical_walked = walked[:-1], int(walked[-1, 1])
        else:
            points, logical_walked = gzi, -1
        groups = _groups(points, ctx.chunk_size or default_run(int(points[-1, 1])))
        prev = np.maximum(groups - 1, 0)
        c1 = np.append(points[groups[1:], 0], size)
        u1 = np.append(points[groups[1:], 1], -1 if gzi is not None else logical_walked)
        items = [tuple(row) for row in np.column_stack((points[prev], points[groups], c1, u1)).tolist()]
        step = functools.partial(_scan_members, ctx.obj, size, scanner)
        results = map_ordered(step, items, ctx.executor, ctx.progress, desc=f"indexing {url}", nbytes=size)
        members = np.concatenate([walked for _, _, walked in results])
        ends = np.array([end for _, end, _ in results], np.int64)
        starts = np.concatenate(([0], np.cumsum(members[:, 2])[:-1]))
        # Every point (a .gzi's entries) must be a member start the pass walked, at the decoded offset the
        # pass found: a wrong entry would shift every slice that starts there.
        k = np.minimum(np.searchsorted(members[:, 0], points[:, 0]), len(members) - 1)
        wrong = np.flatnonzero((members[k, 0] != points[:, 0]) | (starts[k] != points[:, 1]))
        shifted = np.flatnonzero(ends[:-1] != points[groups[1:], 1])
        if wrong.size or shifted.size:
            c, u = points[wrong[0]] if wrong.size else points[groups[shifted[0] + 1]]
            if gzi is not None:
                raise InvalidFormatError(
                    url,
                    f"the .gzi index does not match the object: {gzi_url} says a member at byte {c} decodes from offset {u}, none does",
                    offset=int(c),
                )
            raise InvalidFormatError(url, f"BGZF members changed during the pass: no member decodes from offset {u} at byte {c}", offset=int(c))
        logical = int(ends[-1])
        tables = {BLOCK_SIZES: (members[:, 1] - 1).astype(np.uint16), DECODED_SIZES: members[:, 2].astype(np.uint32)}
        checkpoints = len(member_checkpoints(url, tables[BLOCK_SIZES].astype(np.int64), members[:, 2], logical))
        spacing = -(-logical // max(checkpoints, 1))
        attributes = {"compression": cls.name, "uncompressed_size": logical, "spacing": spacing, "checkpoints": checkpoints}
        return [scan for scan, _, _ in results], CodecIndex(cls.name, logical, tables, {}, attributes)

    @classmethod
    def checkpoints(cls, url: str, index: CodecIndex, size: int) -> CheckpointTable:
        if BLOCK_SIZES not in index.tables:
            return super().checkpoints(url, index, size)  # made by the gzip pass (compression="gzip")
        what = "BGZF member index"
        sizes, decoded = column(url, what, index.tables, BLOCK_SIZES), column(url, what, index.tables, DECODED_SIZES)
        if sizes.size != decoded.size:
            raise CorruptIndexError(url, f"bad {what}: tables of mismatched lengths")
        return member_checkpoints(url, sizes, decoded, index.logical_size)

    @classmethod
    def validate(cls, url: str, tables: Mapping[str, np.ndarray], blob_sizes: dict[str, int], size: int, logical_size: Any) -> int:
        if BLOCK_SIZES not in tables:
            return super().validate(url, tables, blob_sizes, size, logical_size)
        what = "BGZF member index"

        def need(ok: Any, why: str) -> None:
            if not ok:
                raise CorruptIndexError(url, f"bad {what}: {why}")

        sizes, decoded = column(url, what, tables, BLOCK_SIZES), column(url, what, tables, DECODED_SIZES)
        need(sizes.size == decoded.size and sizes.size >= 1, "one block size and one decoded size a member")
        need(np.all((sizes >= 0) & (sizes < MAX_MEMBER)), "a member holds at most 64 KiB")
        need(np.all((decoded >= 0) & (decoded <= MAX_RATIO * (sizes + 1))), "more decoded bytes than a member can produce")
        need(int(sizes.sum()) + sizes.size <= size, "the members end past the object")
        need(isinstance(logical_size, int) and int(decoded.sum()) == logical_size, "the decoded sizes do not add up to the uncompressed size")
        table = member_checkpoints(url, sizes, decoded, logical_size)
        table.validate(url, size, what, max_ratio=MAX_RATIO, strict=False)
        need(np.all(np.diff(table.cuts()) > 0), "checkpoints must decode to at least one byte")
        return logical_size

    @classmethod
    def unit_decoder(cls, url: str, index: CodecIndex) -> Any:
        """:func:`inflate_unit` for an index of members; an index of the gzip pass decodes as gzip's."""
        if BLOCK_SIZES not in index.tables:
            return super().unit_decoder(url, index)
        return functools.partial(inflate_unit, url)

    @classmethod
    def readers(cls, obj: StorageObject, info: ObjectInfo, index: CodecIndex) -> Any:
        """Readers of whole members (see :class:`BgzfReader`); an index of the gzip pass reads as gzip's."""
        if BLOCK_SIZES not in index.tables:
            return super().readers(obj, info, index)
        return BgzfReaders(obj, info, cls.checkpoints(obj.url, index, info.size))

    @classmethod
    def _gzi(cls, ctx: Any) -> tuple[str, np.ndarray | None]:
        """Where the object's ``.gzi`` is looked for, and the member starts it lists (None without one)."""
        given = ctx.options.get("gzi")
        location = StorageObject(given or ctx.obj.url + ".gzi", ctx.obj.storage_options)
        try:
            data = location.read_all()
        except ObjectNotFoundError:
            if given:
                raise
            return location.url, None
        return location.url, read_gzi(location.url, data, ctx.info.size)
