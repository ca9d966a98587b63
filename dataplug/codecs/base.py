"""Byte sources: the logical (decoded) byte stream of an object, whatever compresses it.

A codec does two things, and record framings (lines, CSV, FASTQ) build on both without knowing which
codec is behind them:

- **The index pass.** :meth:`Codec.scan` runs a framing's :class:`Scanner` over the whole logical stream,
  cut into consecutive ranges, and returns the scanner's results in order plus the codec's own index (for
  gzip: checkpoints and windows). The plain codec maps the scanner over byte ranges in parallel; a gzip
  object must be inflated front to back, so its ranges come from one sequential pass, cut at checkpoints.
- **Reading.** :meth:`Codec.readers` gives, from a :class:`CodecIndex` (the pass's, in memory, or a loaded
  sidecar's), a factory of small, picklable :class:`LogicalReader` for the decoded bytes ``[a, b)``: one
  range read of the object each (a gzip reader carries its checkpoint's window).

Codecs whose data decodes from known places (gzip, BGZF, zstd, bzip2) describe them with one
:class:`~dataplug.codecs.checkpoints.CheckpointTable` (:meth:`Codec.checkpoints`), which answers where a
range decodes from, which bytes it needs and where decoding starts without waste.

A scanner sees each range with one byte of context before it and *look-ahead* after it, as much as
:meth:`Scanner.enough` asks for (a line framing wants one byte, FASTQ the next four lines), so the same
scanner gives the same answer over every codec.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np

from dataplug.codecs.checkpoints import CheckpointTable

if TYPE_CHECKING:
    from dataplug.format import PreprocessContext
    from dataplug.sidecar import BlobRef, Sidecar
    from dataplug.storage import ObjectInfo, StorageObject

    #: A blob as a codec sees it: bytes while preprocessing, a sidecar reference once written.
    Blob = bytes | BlobRef


class Scanner(Protocol):
    """A framing's map step over one range of the logical stream (picklable: it may run in other processes)."""

    def enough(self, after: np.ndarray) -> bool:
        """True when ``after`` (the bytes seen past the range's end so far) is all the look-ahead needed."""
        ...

    def __call__(self, full: np.ndarray, first: int, start: int, end: int, eof: bool) -> Any:
        """Scan the logical bytes ``[start, end)``, which are ``full[first : first + end - start]``.

        ``full[first - 1]`` is the byte before ``start`` when ``start > 0``; the bytes after the range are
        look-ahead. ``eof`` is True when ``full`` ends where the stream ends.
        """
        ...


class LogicalReader(Protocol):
    """The decoded bytes ``[start, end)`` of one object, ready to read on any worker."""

    start: int
    end: int

    def read(self) -> bytes:
        """Exactly ``end - start`` decoded bytes; raises a :class:`~dataplug.errors.DataplugError` otherwise."""
        ...


@dataclass
class CodecIndex:
    """A codec's index of one object: how to read any logical range of it. The same for the pass's result
    (tables and blobs in memory, before the sidecar is written) and for a loaded sidecar
    (:meth:`of_sidecar`: tables read when used, blobs as references).

    ``tables`` and ``blobs`` go into the sidecar beside the framing's own; ``attributes`` into the format's
    attributes (compression, uncompressed size, checkpoint spacing and count).
    """

    codec: str
    logical_size: int
    tables: Mapping[str, np.ndarray] = field(default_factory=dict)
    blobs: Mapping[str, Blob] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of_sidecar(cls, sidecar: Sidecar, codec: str, logical_size: int) -> CodecIndex:
        """The codec's part of a loaded sidecar (which holds the framing's tables too, read only when used)."""
        return cls(codec, logical_size, sidecar.tables, sidecar.blobs)


class Codec:
    """Base class of a byte source. Subclasses register with :func:`register_codec`."""

    name: ClassVar[str]
    #: Preprocessing options this codec reads, with one line of help each (the framing offers them all).
    options: ClassVar[dict[str, str]] = {}

    @classmethod
    def detect(cls, head: bytes) -> bool:
        """True when an object starting with ``head`` (its first bytes) is in this encoding."""
        raise NotImplementedError

    @classmethod
    def head(cls, url: str, raw: bytes, n: int) -> bytes:
        """Up to the first ``n`` logical bytes, decoded from ``raw`` (the object's first bytes)."""
        return raw[:n]

    @classmethod
    def head_bytes(cls, n: int) -> int:
        """How many of the object's first bytes :meth:`head` needs for ``n`` logical bytes (more than ``n``
        where data decodes only in whole blocks, as bzip2's)."""
        return n

    @classmethod
    def scan(cls, ctx: PreprocessContext, scanner: Scanner) -> tuple[list[Any], CodecIndex]:
        """Run ``scanner`` over the whole logical stream; its results in order, and the codec's index."""
        raise NotImplementedError

    @classmethod
    def checkpoints(cls, url: str, index: CodecIndex, size: int) -> CheckpointTable | None:
        """Where decoding may start in the object of ``size`` bytes that ``index`` describes (None: anywhere,
        for the plain codec). Tables that do not parse are a :class:`CorruptIndexError`."""
        return None

    @classmethod
    def cuts(cls, url: str, index: CodecIndex, size: int) -> np.ndarray:
        """Logical offsets where a reader starts decoding without waste (empty: anywhere is as good)."""
        table = cls.checkpoints(url, index, size)
        return np.zeros(0, np.int64) if table is None else table.cuts()

    @classmethod
    def validate(cls, url: str, tables: Mapping[str, np.ndarray], blob_sizes: dict[str, int], size: int, logical_size: Any) -> int:
        """Check the codec's part of a loaded index (:class:`CorruptIndexError` otherwise) against an object
        of ``size`` bytes whose attributes claim ``logical_size`` decoded bytes; returns the logical size."""
        raise NotImplementedError

    @classmethod
    def unit_decoder(cls, url: str, index: CodecIndex) -> Callable[[bytes, int, int], bytes] | None:
        """``decode(raw, at, size)``: the decoded bytes of one checkpoint stretch from its compressed bytes alone
        (``raw``, object bytes from ``at``), which must be ``size`` bytes; for the long-lived reader
        (:class:`dataplug.reader.Reader`), which keeps each decoded stretch. None (the default) where a
        stretch needs more than its bytes (a gzip window): the reader then decodes through :meth:`readers`."""
        return None

    @classmethod
    def readers(cls, obj: StorageObject, info: ObjectInfo, index: CodecIndex) -> Callable[[int, int], LogicalReader]:
        """``reader(start, end)``: readers of the logical bytes ``[start, end)`` of ``obj`` through ``index``
        (resolved once, for the many slices of a partition). The callable may offer ``prepare(starts, ends)``,
        which a partition calls once with all its ranges before making their readers one by one, lazily: what
        must happen at planning (gzip loads its windows blob, zstd warns of slices deep inside frames)."""
        raise NotImplementedError


_CODECS: dict[str, type[Codec]] = {}


def register_codec(cls: type[Codec]) -> type[Codec]:
    """Class decorator: make a codec findable by name and by detection (most recently registered first)."""
    _CODECS[cls.name] = cls
    return cls


def registered_codecs() -> list[type[Codec]]:
    """Every registered codec, built-in ones first."""
    from dataplug import codecs  # noqa: F401 - registers the built-in codecs

    return list(_CODECS.values())


def get_codec(name: str) -> type[Codec]:
    from dataplug import codecs  # noqa: F401 - registers the built-in codecs

    try:
        return _CODECS[name]
    except KeyError:
        raise ValueError(f"unknown compression {name!r}; known: {sorted(_CODECS)}") from None


def detect_codec(head: bytes) -> str:
    """The name of the codec whose magic bytes start ``head`` ("none" when no codec claims it)."""
    from dataplug import codecs  # noqa: F401

    for name, cls in reversed(list(_CODECS.items())):
        if name != "none" and cls.detect(head):
            return name
    return "none"


class StreamRanges:
    """Runs a scanner over a stream that arrives in order, in chunks (a sequential decoding pass).

    Ranges end where the codec says (:meth:`cut`, e.g. at every checkpoint) or after ``max_range`` bytes;
    a range is scanned once the scanner has enough look-ahead or the stream has ended. Scans run on one
    helper thread while the codec decodes the next range (numpy and pyarrow release the GIL), so a scanner
    that costs about as much as decoding does not double the pass. Memory stays at a few ranges. Use it as
    a context manager: the helper thread is joined on the way out.

    A map step over one part of a stream (codecs whose frames or blocks decode alone) scans only the
    ranges from ``start`` to ``stop``: it feeds the decoded bytes from ``start - 1`` (the byte of context)
    on, and bytes past ``stop`` serve as look-ahead until :attr:`done`.
    """

    #: Scans queued at most; the decoder waits for the oldest beyond that.
    QUEUE = 2

    def __init__(self, scanner: Scanner, max_range: int, start: int = 0, stop: int | None = None) -> None:
        self.scanner, self.max_range, self.stop = scanner, max_range, stop
        self.buf = bytearray()
        self.base = max(start - 1, 0)  # logical offset of buf[0]
        self.start = start  # start of the next range to scan
        self.cuts: list[int] = []  # ends of ranges not yet scanned
        self.results: list[Future[Any]] = []
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="dataplug-scan")

    def __enter__(self) -> StreamRanges:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    @property
    def position(self) -> int:
        return self.base + len(self.buf)

    @property
    def done(self) -> bool:
        """True when every range up to ``stop`` has gone to the scanner: more bytes would not be used."""
        return self.stop is not None and self.start >= self.stop and not self.cuts

    def cut(self, offset: int) -> None:
        """End a range at ``offset`` (ignored at the stream start or where a range already ends)."""
        last = self.cuts[-1] if self.cuts else self.start
        if offset > last:
            self.cuts.append(offset)

    def data(self, chunk: memoryview | bytes) -> None:
        while len(chunk):
            last = self.cuts[-1] if self.cuts else self.start
            limit = last + self.max_range if self.stop is None else min(last + self.max_range, self.stop)
            room = limit - self.position if last < limit else len(chunk)  # past ``stop``: look-ahead only
            take = chunk[:room] if room < len(chunk) else chunk
            self.buf += take
            chunk = chunk[len(take) :]
            if last < limit <= self.position:
                self.cut(limit)
            self._drain(eof=False)

    def finish(self, eof: bool = True) -> list[Any]:
        """Scan what is left; the scanner's results for every range, in order. ``eof``: the bytes fed end
        where the stream ends (False only for a map step that stopped feeding once :attr:`done`)."""
        if self.stop is None:
            self.cut(self.position)
        self._drain(eof=eof)
        if not self.results:
            return [self.scanner(np.zeros(0, np.uint8), 0, 0, 0, True)]
        return [future.result() for future in self.results]

    def _drain(self, eof: bool) -> None:
        while self.cuts:
            end = self.cuts[0]
            if end > self.position:
                return
            arr = np.frombuffer(self.buf, np.uint8)
            if not (eof or self.scanner.enough(arr[end - self.base :])):
                return
            pending = [f for f in self.results[-self.QUEUE :] if not f.done()]
            if len(pending) >= self.QUEUE:
                pending[0].result()
            self.results.append(self.pool.submit(self.scanner, arr, self.start - self.base, self.start, end, eof))
            self.cuts.pop(0)
            self.start = end
            keep = max(end - 1 - self.base, 0)  # the byte before the next range stays as its context
            # A new buffer, never a resize of the old one: the queued scan still reads it.
            self.buf = self.buf[keep:]
            self.base += keep


def map_plain_ranges(read: Callable[[int, int], bytes], size: int, scanner: Scanner, rng: tuple[int, int]) -> Any:
    """The plain codec's map step: read the range with one byte before it and look-ahead after it."""
    start, end = rng
    lo = max(start - 1, 0)
    extra = 64 * 1024
    while True:
        hi = min(end + extra, size)
        full = np.frombuffer(read(lo, hi), np.uint8)
        if hi == size or scanner.enough(full[end - lo :]):
            break
        extra *= 4
    return scanner(full, start - lo, start, end, hi == size)
