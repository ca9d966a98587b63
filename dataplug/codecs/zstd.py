"""The zstd byte source: frames decode alone, so checkpoints are frame starts.

Where the frames lie comes, without decoding, from

- the **seek table** of the seekable format (zstd's ``contrib/seekable_format``): a skippable frame at the
  object's end lists every frame's compressed and decoded size, so two small range reads index the object;
- otherwise the **frame and block headers**, walked front to back: a header gives its frame's decoded size
  when the compressor knew it, and only a frame whose header lacks it is decoded to learn it.

The framing's scanner (line numbers, record starts) then runs as a parallel map over runs of frames on the
context's executor, each decoded once and checked against the sizes the table or headers claimed.

One frame cannot be split: a slice starting inside one decodes it from its start, unless the process
already holds a decoder positioned at or just before the slice's start (:class:`_Cursor`, kept after each
range it served on the object's shared handle, so it goes with the handle: evicted, cleared, closed or left
behind by a fork). Slices read in order in one process therefore decode a frame once between them; on ``w``
workers taking slices in order (a process pool's ``map``), each worker decodes the frame up to its last
slice, about ``w`` decompressions of CPU in the time of one; only a slice read behind its process's cursor
(out of order, or alone on its machine) decodes from its frame's start again. A warning says so at planning
when slices start deep inside frames (an object of few, large frames: a one-frame ``zstd`` output).
Decoder checkpoints inside a frame are not possible with python-zstandard: a decoder's state (window,
entropy tables, repeat offsets) can be neither copied, pickled nor restored.

Frames' own content checksums are checked by libzstd; the seek table's optional per-frame checksums
(XXH64, which neither the standard library nor python-zstandard exposes) are not. python-zstandard writes
frames but not the seek table: :func:`seek_table` makes one.
"""

from __future__ import annotations

import functools
import io
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
import zstandard

from dataplug.codecs.base import Codec, CodecIndex, Scanner, StreamRanges, register_codec
from dataplug.codecs.checkpoints import AHEAD, PIECE, CheckpointTable, Fetch, column, compressed_pieces
from dataplug.codecs.plain import DEFAULT_CHUNK_SIZE
from dataplug.errors import CorruptIndexError, DataplugWarning, InvalidFormatError
from dataplug.executors import map_ordered, progress_bar
from dataplug.storage import ObjectInfo, StorageObject
from dataplug.storage.handle import ObjectHandle, WindowedObject, shared

FRAME_MAGIC = b"\x28\xb5\x2f\xfd"
#: Skippable frames have magic numbers 0x184D2A50 to 0x184D2A5F; the seek table uses 0x184D2A5E.
SKIPPABLE_MAGIC, SEEK_TABLE_MAGIC, SEEKABLE_FOOTER_MAGIC = 0x184D2A50, 0x184D2A5E, 0x8F92EAB1
_TAIL = 64 * 1024
#: Bytes of a skippable frame taken at a time.
_PIECE = 16 * 2**20
#: Blocks handed to the decoder per call, and a block's largest decoded size: one call's output is at most
#: 4 MiB whatever the compression ratio (an RLE block of 4 bytes decodes to 128 KiB).
_BATCH_BLOCKS, _MAX_BLOCK = 32, 128 * 1024
#: Decoded bytes a slice may discard inside its first frame before a warning (gzip's checkpoint spacing).
WASTE_WARNING = 4 * 2**20
#: One block of at most 128 KiB decodes from as little as 4 bytes (an RLE block): a crafted index beyond that is refused.
_MAX_RATIO = 2**15 + 1
_TABLES = ("zstd_compressed", "zstd_decoded")


class SliceInsideFrameWarning(DataplugWarning):
    """Slices start deep inside a zstd frame: a worker decodes the frame from its start for the first (or an
    out-of-order) slice it reads there."""


def _u32(data: bytes | memoryview, at: int = 0) -> int:
    return int.from_bytes(data[at : at + 4], "little")


@dataclass(frozen=True)
class Frames:
    """Where an object's frames are: ``compressed[i]`` is the start of frame ``i`` that begins decoded
    offset ``decoded[i]``, for every frame that decodes to at least one byte; the last row is the end of the
    frames (before any seek table) and the logical size."""

    compressed: np.ndarray
    decoded: np.ndarray
    #: Where the first frame starts: frames before the first row decode to nothing, which the pass checks.
    first: int

    @classmethod
    def from_sizes(cls, starts: list[int] | np.ndarray, sizes: list[int] | np.ndarray, end: int) -> Frames:
        starts, sizes = np.asarray(starts, np.int64), np.asarray(sizes, np.int64)
        offsets = np.concatenate(([0], np.cumsum(sizes)))
        keep = sizes > 0
        return cls(np.append(starts[keep], end), np.append(offsets[:-1][keep], offsets[-1]), int(starts[0]) if starts.size else end)

    @property
    def logical_size(self) -> int:
        return int(self.decoded[-1])


def read_seek_table(obj: StorageObject, info: ObjectInfo) -> Frames | None:
    """The frames listed by the seek table at the object's end (two range reads at most), or None when the
    object does not end with one. A table that does not fit the object is an :class:`InvalidFormatError`."""
    url, size = obj.url, info.size
    tail = obj.read_range(max(0, size - _TAIL), size, expect=info) if size >= 17 else b""
    if len(tail) < 17 or _u32(tail, len(tail) - 4) != SEEKABLE_FOOTER_MAGIC:
        return None
    count, descriptor = _u32(tail, len(tail) - 9), tail[-5]
    if descriptor & 0x7C:
        raise InvalidFormatError(url, "zstd seek table: reserved descriptor bits are set (a newer seekable format?)", offset=size - 5)
    entry = 12 if descriptor & 0x80 else 8
    length = 8 + count * entry + 9
    if length > size:
        raise InvalidFormatError(url, f"zstd seek table lists {count} frames, more than the object can hold", offset=size - 9)
    table = tail[-length:] if length <= len(tail) else obj.read_range(size - length, size, expect=info)
    if _u32(table) != SEEK_TABLE_MAGIC or _u32(table, 4) != length - 8:
        raise InvalidFormatError(url, "zstd seek table: its skippable frame header does not match its size", offset=size - length)
    entries = np.frombuffer(table, "<u4", count * entry // 4, offset=8).reshape(count, entry // 4).astype(np.int64)
    ends = np.cumsum(entries[:, 0])
    if count and ends[-1] != size - length:
        raise InvalidFormatError(url, f"zstd seek table does not match the object: its frames add up to {int(ends[-1])} bytes, not {size - length}", offset=size - length)
    return Frames.from_sizes(np.concatenate(([0], ends[:-1])), entries[:, 1], size - length)


def seek_table(compressed_sizes: Iterable[int], decoded_sizes: Iterable[int]) -> bytes:
    """The seek table frame that makes frames of these sizes seekable, appended after them (python-zstandard
    writes frames but not this table): the inverse of :func:`read_seek_table`, without checksums."""
    entries = b"".join(c.to_bytes(4, "little") + d.to_bytes(4, "little") for c, d in zip(compressed_sizes, decoded_sizes))
    body = entries + (len(entries) // 8).to_bytes(4, "little") + b"\0" + SEEKABLE_FOOTER_MAGIC.to_bytes(4, "little")
    return SEEK_TABLE_MAGIC.to_bytes(4, "little") + len(body).to_bytes(4, "little") + body


class _Source:
    """``read(n)`` over an iterator of byte pieces, pulling pieces only as they are needed."""

    def __init__(self, pieces: Iterable[bytes]) -> None:
        self._pieces, self._piece, self._at = iter(pieces), memoryview(b""), 0

    def read(self, n: int) -> bytes | memoryview:
        """The next ``n`` bytes (fewer at the end): a view into the current piece when it holds them (no copy:
        a block's body is copied once, into its batch), else joined from several."""
        at = self._at
        if at + n <= len(self._piece):
            self._at = at + n
            return self._piece[at : at + n]
        out = []
        while n > 0:
            if self._at == len(self._piece):
                piece = next(self._pieces, None)
                if piece is None:
                    break
                self._piece, self._at = memoryview(piece), 0
                continue
            part = self._piece[self._at : self._at + n]
            out.append(part)
            self._at += len(part)
            n -= len(part)
        return b"".join(out)


def _taker(url: str, read: Callable[[int], bytes | memoryview]) -> Callable[[int, int], bytes | memoryview]:
    """``take(n, at)``: exactly ``n`` bytes from ``read``, else an error naming the frame at ``at``."""

    def take(n: int, at: int) -> bytes | memoryview:
        data = read(n)
        if len(data) < n:
            raise InvalidFormatError(url, "truncated zstd frame: the object ends inside it", offset=at)
        return data

    return take


def _skip(take: Callable[[int, int], bytes | memoryview], pos: int) -> int:
    """Skip the skippable frame at ``pos`` (its magic number taken), in bounded reads; returns its end."""
    length = _u32(take(4, pos))
    for done in range(0, length, _PIECE):
        take(min(_PIECE, length - done), pos)
    return pos + 8 + length


def _frame_batches(
    url: str, take: Callable[[int, int], bytes | memoryview], pos: int, magic: bytes | memoryview
) -> Iterator[tuple[bytes, Any, int | None]]:
    """The bytes of the zstd frame at ``pos`` (its magic number ``magic`` taken), cut at block boundaries
    into batches of at most :data:`_BATCH_BLOCKS` blocks, so that decoding one batch yields at most
    ``_BATCH_BLOCKS`` x 128 KiB whatever the ratio (a 4-byte RLE block decodes to 128 KiB). Yields each
    batch with the frame's parameters, and with the frame's end offset on its last batch (else None)."""
    header = bytes(magic) + take(1, pos)
    try:
        header += take(zstandard.frame_header_size(header) - 5, pos)
        params = zstandard.get_frame_parameters(header)
    except zstandard.ZstdError as exc:
        raise InvalidFormatError(url, f"corrupt zstd frame header: {exc}", offset=pos) from None
    batch, blocks, end = [header], 0, pos + len(header)
    while True:
        block = take(3, end)
        kind, length = (block[0] >> 1) & 3, int.from_bytes(block, "little") >> 3
        if kind == 3:
            raise InvalidFormatError(url, "corrupt zstd block: reserved block type", offset=end)
        if length > _MAX_BLOCK:
            raise InvalidFormatError(url, f"corrupt zstd block: it claims {length} bytes, more than a block holds", offset=end)
        body = take(1 if kind == 1 else length, end)
        batch += (block, body)
        end, blocks = end + 3 + len(body), blocks + 1
        if block[0] & 1:
            break
        if blocks == _BATCH_BLOCKS:
            yield b"".join(batch), params, None
            batch, blocks = [], 0
    if params.has_checksum:
        batch.append(take(4, end))
        end += 4
    yield b"".join(batch), params, end


def _decode(url: str, decoder: Any, batch: bytes, frame: int) -> bytes:
    """``batch`` (one of :func:`_frame_batches`) decoded by its frame's decoder."""
    try:
        return decoder.decompress(batch)
    except zstandard.ZstdError as exc:
        raise InvalidFormatError(url, f"corrupt zstd frame: {exc}", offset=frame) from None


def walk_frames(url: str, fh: BinaryIO, size: int, progress: Any = None) -> Frames:
    """The frames of a plain (multi-)frame object, from its frame and block headers read front to back;
    only a frame whose header lacks its decoded size is decoded (in bounded steps, counted, not kept).
    ``progress(done)`` gets the bytes walked."""
    dctx, take = zstandard.ZstdDecompressor(), _taker(url, fh.read)
    pos, starts, sizes = 0, [], []
    while pos < size:
        magic = take(4, pos)
        if _u32(magic) & 0xFFFFFFF0 == SKIPPABLE_MAGIC:
            pos = _skip(take, pos)
            continue
        if magic != FRAME_MAGIC:
            raise InvalidFormatError(url, "not a zstd frame: unknown magic number", offset=pos)
        decoder, decoded, end = None, 0, None
        for batch, params, end in _frame_batches(url, take, pos, magic):
            if params.content_size == zstandard.CONTENTSIZE_UNKNOWN:
                decoder = decoder or dctx.decompressobj()
                decoded += len(_decode(url, decoder, batch, pos))
        if decoder is not None and not decoder.eof:
            raise InvalidFormatError(url, "corrupt zstd frame: it does not end where its last block says", offset=pos)
        starts.append(pos)
        sizes.append(params.content_size if decoder is None else decoded)
        if progress is not None:
            progress(end)
        pos = end
    return Frames.from_sizes(starts, sizes, size)


def inflate_frames(url: str, pieces: Iterable[bytes], at: int) -> Iterator[tuple[bytes, int | None]]:
    """Decode the concatenated frames in ``pieces`` (the object's bytes from offset ``at``, skippable frames
    skipped); yields each decoded chunk (at most :data:`_BATCH_BLOCKS` blocks, 4 MiB, whatever the ratio)
    with the compressed offset where a frame ends after it (else None). Raises :class:`InvalidFormatError`
    on corrupt data, and when the pieces end inside a frame."""
    dctx, source = zstandard.ZstdDecompressor(), _Source(pieces)
    take, pos = _taker(url, source.read), at
    while magic := source.read(4):
        if len(magic) < 4:
            raise InvalidFormatError(url, "truncated zstd frame: the object ends inside it", offset=pos)
        if _u32(magic) & 0xFFFFFFF0 == SKIPPABLE_MAGIC:
            pos = _skip(take, pos)
            yield b"", pos
            continue
        if magic != FRAME_MAGIC:
            raise InvalidFormatError(url, "corrupt zstd frame: unknown magic number", offset=pos)
        decoder = dctx.decompressobj()
        for batch, _, end in _frame_batches(url, take, pos, magic):
            out = _decode(url, decoder, batch, pos)
            if end is None:
                if out:
                    yield out, None
                continue
            if not decoder.eof:
                raise InvalidFormatError(url, "corrupt zstd frame: it does not end where its last block says", offset=pos)
            yield out, end
            pos = end


def _scan_group(obj: StorageObject, info: ObjectInfo, data_end: int, max_range: int, scanner: Scanner, item: tuple[Any, ...]) -> list[Any]:
    """Map step: decode the frames of rows ``compressed[0] .. compressed[-1]`` (checking that every row
    boundary is a frame end with the decoded offset the index claims) and scan the logical ranges from
    ``start`` to ``stop``, decoding later frames only as far as the scanner's look-ahead needs."""
    compressed, decoded, start, stop = item
    url, row = obj.url, 1
    position, exhausted = decoded[0], True
    with StreamRanges(scanner, max_range, start, stop) as ranges:
        for chunk, frame_end in inflate_frames(url, compressed_pieces(obj, info, compressed[0], compressed[-1], data_end), compressed[0]):
            ranges.data(chunk)
            position += len(chunk)
            if frame_end is not None and row < len(compressed) and frame_end >= compressed[row]:
                if frame_end > compressed[row] or position != decoded[row]:
                    where = "no frame ends" if frame_end > compressed[row] else f"the frames before it decode to {position} bytes, not {decoded[row]}"
                    raise InvalidFormatError(url, f"the zstd frame index does not match the object: {where} at byte {compressed[row]}", offset=compressed[row])
                row += 1
            if ranges.done and row == len(compressed):
                exhausted = False
                break
        if row < len(compressed):
            raise InvalidFormatError(url, f"the zstd frame index does not match the object: the frames end before decoded offset {decoded[-1]}", offset=compressed[row - 1])
        return ranges.finish(eof=exhausted)


#: Decoders kept positioned after the last range they served, per shared handle (so per object and identity, at
#: most :data:`~dataplug.storage.handle.SHARED_HANDLES` handles in a process; the least recently used dropped first).
#: Each holds its frame's decoder (the frame's window: by zstd's level table at most 8 MiB at the ``zstd`` tool's
#: levels 1 to 19, 128 MiB with ``--long``), one compressed piece (at most 16 MiB) and up to :data:`BEHIND` decoded
#: bytes it served last.
CURSORS = 4
#: Decoded bytes a cursor keeps behind its position: the slices of a line partition overlap by up to one sampled
#: record start (64 KiB by default), and a slice starting behind the cursor within these continues it.
BEHIND = _BATCH_BLOCKS * _MAX_BLOCK


class _Cursor:
    """A decoder of one object's frames kept in the process after the range it served, so that the next
    range at or after it (or a little behind: :data:`BEHIND`) continues instead of decoding its frame from
    the start. Slices of one frame read in order in one process then decode it once between them.

    ``position`` is the decoded offset of the next byte to serve (the first of ``pending``, the rest of the
    batch decoded last); ``tail`` the bytes served last, ending at ``position``."""

    def __init__(self, reader: ZstdReader) -> None:
        obj, fetch = reader.obj, reader.fetch
        self.url = obj.url
        #: Where the ranges served probably end in the compressed data (the furthest :class:`Fetch` estimate),
        #: and where they surely do (the furthest ``Fetch.end``): read-ahead stops there.
        self.estimate, self.limit = fetch.first_end, fetch.end
        pieces = self._pieces(obj, reader.info, fetch.start, reader.data_end)
        self.chunks: Iterator[tuple[bytes, int | None]] = inflate_frames(obj.url, pieces, fetch.start)
        self.position, self.frame_at = reader.frame_decoded, fetch.start
        self.tail, self.pending = b"", memoryview(b"")

    def _pieces(self, obj: StorageObject, info: ObjectInfo, start: int, end: int) -> Iterator[bytes]:
        """The object's bytes from ``start`` to ``end`` (where the frames end) as the decoder asks for them: up
        to :attr:`estimate` in requests of at most :data:`PIECE`, then in growing requests from :data:`AHEAD`
        up to :attr:`limit` (past it only when the index is wrong, for the frame check to say so). Not
        :func:`compressed_pieces`, whose targets are fixed when it starts: each range a cursor serves moves
        them to its own, so a slice that continues the cursor is one request, as a fresh one is."""
        pos, ahead, checked = start, AHEAD, False
        while pos < end:
            if pos < self.estimate:
                stop, ahead = min(self.estimate, pos + PIECE), AHEAD
            else:
                stop, ahead = min(self.limit if pos < self.limit else end, pos + ahead), min(4 * ahead, PIECE)
            yield obj.read_range(pos, stop, expect=info, checked=checked)
            pos, checked = stop, True

    def serves(self, start: int, first: int) -> bool:
        """True when continuing this decoder costs no more than decoding from ``first``, the start of the
        frame that holds ``start``, and it still holds or will yield ``start``."""
        return first <= self.position and self.position - len(self.tail) <= start

    def read(self, reader: ZstdReader) -> bytes:
        """The decoded bytes ``[reader.start, reader.end)`` (see :meth:`serves`); each frame that ends on the
        way is checked against the reader's rows of the index."""
        start, end = reader.start, reader.end
        self.estimate, self.limit = max(self.estimate, reader.fetch.first_end), max(self.limit, reader.fetch.end)
        parts: list[bytes | memoryview] = []
        if start < self.position:
            behind = len(self.tail) - (self.position - start)
            parts.append(memoryview(self.tail)[behind : behind + end - start])
            if end <= self.position:
                return bytes(parts[0])
        skip, want = max(start - self.position, 0), end - max(start, self.position)
        while want:
            if not self.pending:
                self.pending = memoryview(self._next(reader))
                continue
            drop = min(skip, len(self.pending))
            part = self.pending[drop : drop + want]
            self.pending = self.pending[drop + len(part) :]
            self.position += drop + len(part)
            skip, want = skip - drop, want - len(part)
            if part:  # an empty view would keep its whole decoded batch alive while the skip goes on
                parts.append(part)
        out = b"".join(parts)
        kept = min(len(out), BEHIND)
        self.tail = out if kept == len(out) else out[-kept:]
        return out

    def _next(self, reader: ZstdReader) -> bytes:
        """The next decoded chunk; a frame that ends with it must end where the index says."""
        item = next(self.chunks, None)
        if item is None:
            raise CorruptIndexError(self.url, f"the zstd frames end at decoded offset {self.position}, before {reader.end}: the zstd index does not match the object")
        chunk, frame_end = item
        if frame_end is not None:
            c, u = reader.rows
            at = self.position + len(chunk)
            first, last = np.searchsorted(c, self.frame_at, side="right"), np.searchsorted(c, frame_end, side="left")
            if first < last or (last < len(c) and c[last] == frame_end and u[last] != at):
                row = int(c[first]) if first < last else frame_end
                raise CorruptIndexError(self.url, f"the zstd index does not match the object: the frames up to byte {row} do not decode to what it lists", offset=row)
            self.frame_at = frame_end
        return chunk


def _cursors(handle: ObjectHandle) -> tuple[list[_Cursor], threading.Lock]:
    """The cursors kept on ``handle`` (the object's shared handle in this process), and their lock."""
    return handle.memo("zstd_cursors", lambda: ([], threading.Lock()))


def _take_cursor(handle: ObjectHandle, start: int, first: int) -> _Cursor | None:
    """The cursor kept on ``handle`` that serves ``start`` best (furthest along), taken out while it decodes
    (another thread reading the same object makes its own)."""
    cursors, lock = _cursors(handle)
    with lock:
        fits = [k for k, cursor in enumerate(cursors) if cursor.serves(start, first)]
        return cursors.pop(max(fits, key=lambda k: cursors[k].position)) if fits else None


def _keep_cursor(handle: ObjectHandle, cursor: _Cursor, logical_size: int) -> None:
    """Keep ``cursor`` on ``handle`` for the next range; at the end of the data only its tail (the slices at
    the end of a partition of more slices than records read the same last bytes), its decoder and compressed
    piece freed."""
    if cursor.position >= logical_size:
        cursor.chunks, cursor.pending = iter(()), memoryview(b"")
    cursors, lock = _cursors(handle)
    with lock:
        cursors.append(cursor)
        del cursors[:-CURSORS]


@dataclass(frozen=True, eq=False)
class ZstdReader:
    """Decoded bytes ``[start, end)`` of a zstd object, from the start of the frame that holds ``start``, or
    by continuing this process's decoder that served a range just before (:class:`_Cursor`)."""

    obj: StorageObject
    info: ObjectInfo
    start: int
    end: int
    frame_decoded: int
    #: The frames' compressed bytes: first to where ``end`` probably lies, then on as decoding needs them.
    fetch: Fetch
    #: Where the frames' data ends (later ranges continue up to there), and the object's decoded size.
    data_end: int
    logical_size: int
    #: The index's rows from the frame that holds ``start`` to the first at or after ``end``: compressed and
    #: decoded offsets, which the frames decoded on the way must match.
    rows: tuple[np.ndarray, np.ndarray]

    def read(self) -> bytes:
        if self.end <= self.start:
            return b""
        base = self.obj.obj if isinstance(self.obj, WindowedObject) else self.obj
        if not isinstance(base, StorageObject):  # a long-lived Reader's staged bytes: it keeps decoded units itself
            return _Cursor(self).read(self)
        handle = shared(base, self.info)
        cursor = _take_cursor(handle, self.start, self.frame_decoded)
        if cursor is None:
            cursor = _Cursor(self)
        else:
            handle.check_due()  # its bytes may all be decoded already: the check a read makes
        data = cursor.read(self)  # a cursor that failed is not kept
        _keep_cursor(handle, cursor, self.logical_size)
        return data


class ZstdReaders:
    """``reader(start, end)`` for one zstd object's frames (see :meth:`ZstdCodec.readers`)."""

    def __init__(self, obj: StorageObject, info: ObjectInfo, table: CheckpointTable) -> None:
        self.obj, self.info, self.table = obj, info, table
        self._warned = False

    def prepare(self, starts: np.ndarray, ends: np.ndarray) -> None:
        """Before the readers of a partition's ranges are made one by one (when each slice is first read or
        pickled): the :class:`SliceInsideFrameWarning` now, at planning, for all of them at once."""
        u = self.table.logical
        first = u[np.clip(np.searchsorted(u, starts, side="right") - 1, 0, max(len(self.table) - 1, 0))]
        if bool(np.any((ends > starts) & (starts - first > WASTE_WARNING))):
            self._warn(stacklevel=5)  # the strategy's caller: prepare <- LinePlan <- line_slices <- strategy

    def _warn(self, stacklevel: int) -> None:
        """Say once per partition that slices start deep inside frames."""
        if self._warned:
            return
        self._warned = True
        u = self.table.logical
        warnings.warn(
            f"{self.obj.url}: slices start inside zstd frames of up to {int(np.diff(u).max()) / 2**20:.0f} MiB ({len(self.table)} frames). A process "
            "reading such slices in order continues one decoder (one decompression per process), but a slice read alone or out of order "
            "decodes its frame from the start. For slices on many machines, recompress in frames of a few MiB: the seekable "
            "format (zstd's contrib/seekable_format, t2sz), or concatenated frames, e.g. split -C 4M --filter 'zstd -c' data.csv > data.csv.zst",
            SliceInsideFrameWarning,
            stacklevel=stacklevel,
        )

    def __call__(self, start: int, end: int) -> ZstdReader:
        table = self.table
        fetch = table.fetch(start, end)
        first = int(table.logical[fetch.row])
        if end > start and start - first > WASTE_WARNING:
            self._warn(stacklevel=3)  # the code that asked for the reader
        stop = table.stop(fetch.row, end) + 1
        rows = (table.compressed[fetch.row : stop], table.logical[fetch.row : stop])
        return ZstdReader(self.obj, self.info, start, end, first, fetch, table.data_end, table.logical_size, rows)


@register_codec
class ZstdCodec(Codec):
    """zstd: the seekable format, several frames (concatenated outputs), or one frame (one slice per frame
    decodes without waste). ``spacing`` does not apply: the compressor chose the frames."""

    name = "zstd"

    @classmethod
    def detect(cls, head: bytes) -> bool:
        return head[:4] == FRAME_MAGIC or (len(head) >= 8 and _u32(head) & 0xFFFFFFF0 == SKIPPABLE_MAGIC)

    @classmethod
    def head(cls, url: str, raw: bytes, n: int) -> bytes:
        if not cls.detect(raw):
            raise InvalidFormatError(url, "not zstd: the object does not start with a zstd frame", offset=0)
        reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw), read_across_frames=True)
        out = bytearray()
        try:
            while len(out) < n and (chunk := reader.read(n - len(out))):
                out += chunk
        except zstandard.ZstdError as exc:
            raise InvalidFormatError(url, f"corrupt zstd data: {exc}", offset=0) from None
        return bytes(out)

    @classmethod
    def head_bytes(cls, n: int) -> int:
        return n + 2**17 + 64  # a block (at most 128 KiB) decodes only whole

    @classmethod
    def frames(cls, ctx: Any) -> Frames:
        """The object's frames: from its seek table when it has one, else by walking its headers."""
        frames = read_seek_table(ctx.obj, ctx.info)
        if frames is not None:
            return frames
        url, size = ctx.obj.url, ctx.info.size
        with ctx.obj.stream(ctx.info) as raw, progress_bar(size, f"walking zstd frames of {url}", ctx.progress, unit="B") as bar:
            return walk_frames(url, io.BufferedReader(raw, 2**20), size, lambda done: bar.update(done - bar.n))

    @classmethod
    def scan(cls, ctx: Any, scanner: Scanner) -> tuple[list[Any], CodecIndex]:
        frames = cls.frames(ctx)
        c, u = frames.compressed.tolist(), frames.decoded.tolist()
        logical, chunk = frames.logical_size, ctx.chunk_size or DEFAULT_CHUNK_SIZE
        # Every frame is decoded once, those listed as empty too: the first run starts at the first frame.
        if logical:
            c[0] = frames.first
        elif frames.first < c[0]:
            c, u = [frames.first, *c], [0, *u]
        # Runs of frames of about ``chunk`` decoded bytes. A run's logical range starts one byte into its
        # first frame, so that byte (the scanner's context) comes from the run's own frames, never from
        # decoding the frame before; the last run ends at the stream's end.
        groups, last = [0], 0
        for i in range(1, len(u) - 1):
            if u[i] - u[last] >= chunk and u[i] + 1 < logical:
                groups.append(i)
                last = i
        bounds = [0] + [u[g] + 1 for g in groups[1:]] + [logical]
        items = []
        for k, g in enumerate(groups):
            h = groups[k + 1] if k + 1 < len(groups) else len(u) - 1
            items.append((c[g : h + 1], u[g : h + 1], bounds[k], bounds[k + 1]))
        step = functools.partial(_scan_group, ctx.obj, ctx.info, c[-1], min(chunk, 8 * 2**20), scanner)
        results = map_ordered(step, items, ctx.executor, ctx.progress, desc=f"indexing {ctx.obj.url}", nbytes=ctx.info.size)
        tables = {"zstd_compressed": frames.compressed.astype(np.uint64), "zstd_decoded": frames.decoded.astype(np.uint64)}
        sizes = np.diff(frames.decoded)
        attributes = {"compression": cls.name, "uncompressed_size": logical, "spacing": int(sizes.max(initial=0)), "checkpoints": int(sizes.size)}
        return [scan for group in results for scan in group], CodecIndex(cls.name, logical, tables, {}, attributes)

    @classmethod
    def checkpoints(cls, url: str, index: CodecIndex, size: int) -> CheckpointTable:
        what = "zstd frame index"
        c, u = (column(url, what, index.tables, name) for name in _TABLES)
        return CheckpointTable.of(url, what, c, u, ahead=_BATCH_BLOCKS * _MAX_BLOCK)  # a batch decodes whole

    @classmethod
    def validate(cls, url: str, tables: Mapping[str, np.ndarray], blob_sizes: dict[str, int], size: int, logical_size: Any) -> int:
        table = cls.checkpoints(url, CodecIndex(cls.name, 0, tables), size)
        if not isinstance(logical_size, int) or table.logical_size != logical_size:
            raise CorruptIndexError(url, "bad zstd frame index: decoded offsets must run from 0 to the uncompressed size")
        table.validate(url, size, "zstd frame index", max_ratio=_MAX_RATIO, strict=True)
        return logical_size

    @classmethod
    def readers(cls, obj: StorageObject, info: ObjectInfo, index: CodecIndex) -> ZstdReaders:
        """Readers from the start of the frame that holds each range's start; a :class:`SliceInsideFrameWarning`
        when that is deep inside a frame."""
        return ZstdReaders(obj, info, cls.checkpoints(obj.url, index, info.size))
