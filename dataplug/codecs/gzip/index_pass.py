"""Where gzip checkpoints are made: ``build_index`` reads a gzip object once, front to back.

It decompresses with zlib's C library (:mod:`dataplug.codecs.gzip.zlib_ctypes`), hands every decoded byte to
the format's framing (``on_data``: records are the framing's business), and every ``spacing`` uncompressed
bytes records a *checkpoint* at a deflate block boundary (or member header) with the 32 KiB of output
before it, stored sparse (:mod:`dataplug.codecs.gzip.windows`). Nothing is decompressed twice.

Layout rules it checks:

* A gzip object is one or more members back to back (``cat a.gz b.gz``, pigz, bgzip). Every member must
  start right after the previous member's 8-byte trailer; bytes between members are rejected.
* After the last member only zero bytes are accepted (padding, which GNU gzip also ignores); any other
  trailing data is an error naming its offset. The padding is part of ``compressed_size`` but adds nothing.
* BGZF members must end where their ``BC`` field says.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO

import numpy as np

from dataplug.codecs.gzip.headers import MAGIC, bgzf_block_size, is_bgzf
from dataplug.codecs.gzip.index import WINDOW_SIZE, GzipIndex, default_spacing
from dataplug.codecs.gzip.windows import AHEAD, pack_window
from dataplug.codecs.gzip.zlib_ctypes import (
    DT_BITS,
    DT_BLOCK_BOUNDARY,
    DT_LAST_BLOCK,
    Z_BLOCK,
    Z_BUF_ERROR,
    Z_MEM_ERROR,
    Z_NO_FLUSH,
    Z_OK,
    Z_STREAM_END,
    ZStream,
    libz,
)
from dataplug.errors import InvalidFormatError

DEFAULT_READ_SIZE = 4 * 2**20  # compressed bytes per read during build_index
#: The share of the compressed bytes read so far that stored windows may take, by default: a checkpoint is
#: only made once the windows stored so far plus one more fit in it. On random text the default spacing keeps
#: well under it; on Illumina-shaped reads (4:1 gzip -6, 2.5-3 KiB per stored window) it widens the spacing so
#: that the whole sidecar (windows, tables, the format's line index) stays under 0.5 % of the object
#: (``python benchmarks/gzip_fastq.py --no-s3`` prints it, goal 2).
WINDOW_BUDGET = 0.0044
_FIRST_WINDOW_GUESS = 4096  # stored bytes assumed for a window before any has been packed
_MIN_FILL = 65536  # compressed bytes fill() waits for at least (fewer only at the object's end)
_BUDGET_STEP = 65536  # decoded bytes to go on before asking the budget again once it said no


class _Builder:
    """State of one ``build_index`` pass (see there)."""

    def __init__(
        self,
        source: BinaryIO,
        size: int,
        spacing: int,
        url: str | None,
        progress: Callable[[int], None] | None,
        read_size: int,
        on_data: Callable[[memoryview], None] | None = None,
        on_checkpoint: Callable[[int], None] | None = None,
        window_budget: float | None = None,
    ) -> None:
        self.zlib = libz()
        self.budget = window_budget
        self.next_due = spacing  # uncompressed offset from which the next windowed checkpoint may be made
        self.sized = 0  # window slots before this one have their stored sizes in `stored`
        self.stored = self.stored_count = 0  # bytes and number of the windows stored so far (budget)
        self.source, self.size, self.spacing, self.url, self.progress = source, size, spacing, url, progress
        self.on_data, self.on_checkpoint = on_data, on_checkpoint
        self.member_start, self.member_size = 0, None  # BGZF: where the current member starts, its BSIZE + 1
        self.stream = ZStream()
        self.pins: list[ctypes.Array] = []  # ctypes views of the buffers zlib writes to, so they never move
        self.inbuf = bytearray(read_size)
        self.in_addr = self.address(self.inbuf)
        self.in_base = 0  # object offset of inbuf[0]
        self.read_total = 0  # bytes taken from the source
        self.out = bytearray(4 * read_size)
        self.out_addr = self.address(self.out)
        self.out_pos = 0  # end of the decompressed data in `out`
        self.handed = 0  # out[:handed] has gone to on_data
        self.total_out = 0  # uncompressed offset of out[out_pos]
        self.dict_buf = bytearray(WINDOW_SIZE)
        self.dict_addr = self.address(self.dict_buf)
        self.checkpoints: list[tuple[int, int, int]] = []  # compressed, bits, uncompressed
        self.windows: list[Future[bytes] | None] = []  # zlib-compressed windows, made on a helper thread
        self.pending: list[tuple[int, bytes, int, bytearray]] = []  # windows waiting for their look-ahead
        self.compressor = ThreadPoolExecutor(1, thread_name_prefix="dataplug-gzip-windows")

    def address(self, buffer: bytearray) -> int:
        self.pins.append((ctypes.c_char * len(buffer)).from_buffer(buffer))
        return ctypes.addressof(self.pins[-1])

    def position(self) -> int:
        """Object offset of the next compressed byte zlib has not taken."""
        return self.in_base + (self.stream.next_in or self.in_addr) - self.in_addr

    def fill(self) -> None:
        """Move the unconsumed input to the buffer start, then fill the rest of the buffer from the source."""
        s = self.stream
        left = s.avail_in
        offset = (s.next_in - self.in_addr) if left else 0
        self.in_base = self.position()
        self.inbuf[:left] = self.inbuf[offset : offset + left]
        end = left + min(len(self.inbuf) - left, self.size - self.read_total)
        # Inflate what has arrived rather than wait for a whole buffer: from a download (the read-ahead of
        # ``StorageObject.stream``) the first bytes come long before the buffer's last, and decoding them
        # meanwhile is the overlap.
        want = min(end, left + _MIN_FILL)
        readinto = getattr(self.source, "readinto", None)
        with memoryview(self.inbuf) as view:
            filled = left
            while filled < want:
                if readinto is not None:
                    got = readinto(view[filled:end]) or 0
                else:
                    data = self.source.read(end - filled)
                    got = len(data)
                    view[filled : filled + got] = data
                if not got:
                    raise InvalidFormatError(
                        self.url,
                        f"truncated gzip stream: the object ended after {self.read_total} of {self.size} bytes",
                        offset=self.read_total,
                    )
                filled += got
                self.read_total += got
        s.next_in = self.in_addr
        s.avail_in = filled
        for _, _, _, ahead in self.pending:
            ahead += self.inbuf[left : min(filled, left + AHEAD - len(ahead))]
        self.pack_windows(final=self.read_total == self.size)
        if self.progress is not None:
            self.progress(self.read_total)

    def hand_on(self) -> None:
        """Hand the output not yet handed on to ``on_data``."""
        if self.out_pos > self.handed and self.on_data is not None:
            self.on_data(memoryview(self.out)[self.handed : self.out_pos])
        self.handed = self.out_pos

    def add_checkpoint(self, compressed: int, bits: int, window: bytes) -> None:
        self.hand_on()
        self.checkpoints.append((compressed, bits, self.total_out))
        self.next_due = self.total_out + self.spacing
        if self.on_checkpoint is not None:
            self.on_checkpoint(self.total_out)
        self.windows.append(None)
        if window:
            # sparse_window needs the compressed bytes after the checkpoint, from the byte holding its
            # first bit (still in the buffer: fill() only runs once it is consumed); fill() adds more.
            start = self.stream.next_in - self.in_addr
            ahead = bytearray(self.inbuf[start - (1 if bits else 0) : start + min(self.stream.avail_in, AHEAD)])
            self.pending.append((len(self.windows) - 1, window, bits, ahead))
            self.pack_windows(final=False)

    def pack_windows(self, final: bool) -> None:
        """Sparsify and compress the windows whose look-ahead is complete (all of them when ``final``);
        zlib releases the GIL, so that runs on another core while this thread inflates."""
        while self.pending and (final or len(self.pending[0][3]) >= AHEAD):
            slot, window, bits, ahead = self.pending.pop(0)
            self.windows[slot] = self.compressor.submit(pack_window, window, bytes(ahead), bits)

    def current_window(self) -> bytes:
        length = ctypes.c_uint(0)
        if self.zlib.inflateGetDictionary(ctypes.byref(self.stream), self.dict_addr, ctypes.byref(length)):
            raise RuntimeError("inflateGetDictionary failed")
        return bytes(self.dict_buf[: length.value])

    def due(self) -> bool:
        return self.total_out - self.checkpoints[-1][2] >= self.spacing

    def window_due(self) -> bool:
        """A checkpoint with a window may be made here: ``spacing`` is reached and the stored windows so far
        plus one more fit in ``budget`` of the compressed bytes consumed. When they do not, the next try is
        put off by about the decoded bytes that would make room (never less than ``_BUDGET_STEP``).

        Sizes of windows being packed are waited for (a pack takes far less than the decoding between two
        checkpoints), and those still waiting for their look-ahead count as the mean of the others, so the
        same object read in the same pieces always gets the same checkpoints."""
        if self.total_out < self.next_due:
            return False
        if self.budget is None:
            return True
        windows, j = self.windows, self.sized
        while j < len(windows) and not (self.pending and self.pending[0][0] == j):
            if windows[j] is not None:
                self.stored += len(windows[j].result())
                self.stored_count += 1
            j += 1
        self.sized = j
        guess = self.stored / self.stored_count if self.stored_count else _FIRST_WINDOW_GUESS
        stored = self.stored + (len(self.pending) + 1) * guess
        consumed = self.position()
        if stored <= self.budget * consumed:
            return True
        ratio = self.total_out / max(consumed, 1)
        self.next_due = self.total_out + max(_BUDGET_STEP, int((stored / self.budget - consumed) * ratio))
        return False

    def error(self, cause: str, offset: int | None = None) -> InvalidFormatError:
        return InvalidFormatError(self.url, cause, offset=self.position() if offset is None else offset)

    def run(self) -> GzipIndex:
        s, z = self.stream, self.zlib
        try:
            self.fill()
            head = bytes(self.inbuf[: min(s.avail_in, 65536)])
            if head[:2] != MAGIC:
                if self.size and MAGIC.startswith(head):
                    raise self.error("truncated gzip stream", offset=self.size)
                raise self.error("not gzip" if self.size else "empty object, not gzip", offset=0)
            bgzf = is_bgzf(head)
            self.member_start, self.member_size = 0, bgzf_block_size(head)
            if z.inflateInit2_(ctypes.byref(s), 31, z.zlibVersion(), ctypes.sizeof(ZStream)) != Z_OK:
                raise MemoryError("zlib inflateInit2 failed")
            try:
                self.inflate_all(bgzf)
            finally:
                z.inflateEnd(ctypes.byref(s))
            return self.result(bgzf)
        finally:
            self.compressor.shutdown(cancel_futures=True)

    def inflate_all(self, bgzf: bool) -> None:
        """Decompress the whole object, adding checkpoints."""
        s, z = self.stream, self.zlib
        self.add_checkpoint(0, 0, b"")
        member_start = 0  # uncompressed offset where the current member starts
        while True:
            if not s.avail_in and self.read_total < self.size:
                self.fill()
            if self.out_pos == len(self.out):
                self.hand_on()
                self.out_pos = self.handed = 0
            room = len(self.out) - self.out_pos
            # Stop at block boundaries (Z_BLOCK) only once a checkpoint may be due: every return costs a GIL
            # hand-over to the scan thread, and Z_BLOCK throughout made 2,105 calls on a 131 MB FASTQ.gz
            # against 190 (CPU of the FASTQ pass with its scan -4 %). BGZF only gets checkpoints on member headers.
            flush = Z_NO_FLUSH if bgzf else Z_BLOCK
            before_due = self.next_due - 1 - self.total_out
            if not bgzf and before_due > 0:
                flush, room = Z_NO_FLUSH, min(room, before_due)
            s.next_out = self.out_addr + self.out_pos
            s.avail_out = room
            ret = z.inflate(ctypes.byref(s), flush)
            self.out_pos += room - s.avail_out
            self.total_out += room - s.avail_out
            if ret == Z_STREAM_END:
                if not self.next_member():
                    break
                member_start = self.total_out
            elif ret == Z_BUF_ERROR and not s.avail_in:  # no progress possible and no input left
                raise self.error("truncated gzip stream")
            elif ret == Z_MEM_ERROR:
                raise MemoryError("zlib ran out of memory")
            elif ret not in (Z_OK, Z_BUF_ERROR):
                message = (s.msg or b"zlib error").decode("ascii", "replace")
                raise self.error(f"corrupt gzip data: {message}")
            elif (
                not bgzf
                and s.data_type & (DT_BLOCK_BOUNDARY | DT_LAST_BLOCK) == DT_BLOCK_BOUNDARY
                and self.total_out > member_start
                and self.window_due()
            ):
                self.add_checkpoint(self.position(), s.data_type & DT_BITS, self.current_window())
        self.hand_on()

    def next_member(self) -> bool:
        """After a member's trailer (checked by zlib): reset for the next member, or check the end."""
        s = self.stream
        self.check_bgzf_size()
        while s.avail_in < 2 and self.read_total < self.size:
            self.fill()
        if not s.avail_in:
            return False
        start = s.next_in - self.in_addr
        if self.inbuf[start : start + 2] == MAGIC:
            if self.member_size is not None:
                self.next_bgzf_header()
            if self.due():
                self.add_checkpoint(self.position(), 0, b"")
            if self.zlib.inflateReset(ctypes.byref(s)) != Z_OK:
                raise RuntimeError("zlib inflateReset failed")
            return True
        if s.avail_in == 1 and self.inbuf[start] == MAGIC[0]:
            raise self.error("truncated gzip stream", offset=self.size)
        self.skip_zero_padding()
        return False

    def check_bgzf_size(self) -> None:
        """A BGZF member must end where its header's BSIZE says (readers seek by it)."""
        end = self.position()
        if self.member_size is not None and end - self.member_start != self.member_size:
            raise self.error(
                f"bad BGZF block size: the member at byte {self.member_start} says it is {self.member_size} bytes, but it ends at byte {end}",
                offset=self.member_start,
            )

    def next_bgzf_header(self) -> None:
        """Read the BSIZE of the BGZF member starting at the next input byte."""
        s = self.stream
        need = 12  # the fixed header, then its extra field (XLEN bytes)
        while True:
            start = s.next_in - self.in_addr
            if s.avail_in >= 12:
                need = 12 + int.from_bytes(self.inbuf[start + 10 : start + 12], "little")
            if s.avail_in >= need or self.read_total >= self.size:
                break
            self.fill()
        self.member_start = self.position()
        self.member_size = bgzf_block_size(bytes(self.inbuf[start : start + min(s.avail_in, need)]))
        if self.member_size is None:
            raise self.error("a member of a BGZF object has no BGZF 'BC' field", offset=self.member_start)

    def skip_zero_padding(self) -> None:
        """Accept zero bytes up to the end of the object; anything else after the last member is an error."""
        s = self.stream
        member_end = self.position()
        while True:
            start = s.next_in - self.in_addr
            data = bytes(self.inbuf[start : start + s.avail_in])
            rest = data.lstrip(b"\0")
            if rest:
                offset = self.position() + len(data) - len(rest)
                raise self.error(
                    f"unexpected data after the gzip member ending at byte {member_end} (only zero padding may follow the last member)",
                    offset=offset,
                )
            s.next_in += s.avail_in
            s.avail_in = 0
            if self.read_total == self.size:
                return
            self.fill()

    def result(self, bgzf: bool) -> GzipIndex:
        self.pack_windows(final=True)
        windows = [b"" if window is None else window.result() for window in self.windows]
        lengths = [len(window) for window in windows]
        offsets = np.cumsum([0, *lengths[:-1]])
        compressed, bits, uncompressed = zip(*self.checkpoints)
        return GzipIndex(
            compressed_size=self.size,
            uncompressed_size=self.total_out,
            spacing=self.spacing,
            bgzf=bgzf,
            compressed_offset=np.array(compressed, np.uint64),
            bits=np.array(bits, np.uint8),
            uncompressed_offset=np.array(uncompressed, np.uint64),
            window_offset=np.array(offsets, np.uint64),
            window_length=np.array(lengths, np.uint32),
            windows=b"".join(windows),
        )


def build_index(
    source: BinaryIO,
    compressed_size: int,
    spacing: int | None = None,
    url: str | None = None,
    progress: Callable[[int], None] | None = None,
    *,
    read_size: int = DEFAULT_READ_SIZE,
    on_data: Callable[[memoryview], None] | None = None,
    on_checkpoint: Callable[[int], None] | None = None,
    window_budget: float | None = None,
) -> GzipIndex:
    """Index a gzip object in one sequential, read-only pass.

    ``source`` is a binary file object read from byte 0 (:meth:`dataplug.storage.StorageObject.stream`,
    an fsspec file, ``io.BytesIO``); exactly ``compressed_size`` bytes are read. A checkpoint is recorded
    at the first deflate block boundary (or member header) at least ``spacing`` uncompressed bytes after the
    previous one (default: ``default_spacing(compressed_size)``); for BGZF (bgzip) objects only member
    headers are used, so no windows are stored. ``progress`` is called with the number of compressed bytes
    read so far. ``on_data`` sees every decompressed byte once, in order, in chunks that are only valid
    during the call (so a format can scan its records in this pass); ``on_checkpoint`` is called with each
    checkpoint's uncompressed offset, after ``on_data`` has seen everything before it. ``window_budget``
    (e.g. :data:`WINDOW_BUDGET`) caps the stored windows at that share of the compressed bytes: a checkpoint
    inside a member waits, beyond ``spacing``, until its window fits (the sidecar's size then follows the
    object's, whatever its data).

    Raises InvalidFormatError (with the compressed offset where it failed) for empty, non-gzip, truncated or
    corrupt objects (CRC and length of every member are checked) and for data after the last member other
    than zero padding; nothing partial is ever returned.
    """
    spacing = default_spacing(compressed_size) if spacing is None else spacing
    if spacing < 1:
        raise ValueError(f"spacing must be positive, got {spacing}")
    if window_budget is not None and not window_budget > 0:
        raise ValueError(f"window_budget must be positive, got {window_budget}")
    if read_size < 1024:
        raise ValueError(f"read_size must be at least 1024, got {read_size}")
    if getattr(source, "seekable", lambda: False)():
        source.seek(0)
    return _Builder(source, compressed_size, spacing, url, progress, read_size, on_data, on_checkpoint, window_budget).run()
