"""The long-lived reader of one indexed object: ``co.reader()``, for many small reads in one process.

A slice is read once, on any worker; a scientist at a prompt, or a format answering ``region()`` calls, reads
hundreds of small ranges of one object in one process. :class:`Reader` keeps what those reads share (see
:class:`~dataplug.storage.handle.ObjectHandle`: the open file or session, identity checked once and then on an
interval or on every pinned request, an LRU, a memo) and adds the logical stream of the object's codec:

- :meth:`Reader.decoded` returns decoded bytes ``[start, end)``. A compressed object is decoded in units, one
  per checkpoint of its :class:`~dataplug.codecs.checkpoints.CheckpointTable` (a BGZF member, a gzip
  stretch between checkpoints, a zstd frame, a bzip2 block), and each decoded unit is kept in the LRU under its
  row, so repeated or nearby ranges decode nothing twice. A plain object is read as it is: locally one
  ``pread``, remotely through blocks of :data:`~dataplug.storage.ranges.RANGE_FILE_BLOCK` bytes kept in the LRU.
- :meth:`Reader.decoded_many` serves a set of ranges (a region set): the compressed ranges of the units they
  need are planned once, with the store's gap, into few requests; each unit is decoded once for all the
  ranges in it.

Formats subclass :class:`Reader` (``DataFormat.reader_class``) to add their own calls, e.g. FASTA's
``region(name, start, end)``, and keep what they derive from the index in :meth:`~ObjectHandle.memo`.
``co.reader()`` makes a new reader; ``co.kept_reader()`` is the one a :class:`~dataplug.cloudobject.CloudObject`
keeps for the calls that use one implicitly. Slices never hold a reader: they find the one their process
shares for their object with :func:`shared`.
"""

from __future__ import annotations

import threading
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from dataplug.codecs.base import CodecIndex, get_codec
from dataplug.errors import StrategyArgumentError
from dataplug.storage.handle import DEFAULT_CACHE_BYTES, DEFAULT_CHECK_INTERVAL, LRU, ObjectHandle, clear_shared, shared
from dataplug.storage.ranges import RANGE_FILE_BLOCK

if TYPE_CHECKING:
    from dataplug.cloudobject import CloudObject

__all__ = ["DECODE_BATCH", "LRU", "ObjectHandle", "Reader", "clear_shared", "shared"]

#: Compressed bytes :meth:`Reader.decoded_many` fetches and decodes at once at most (more ranges are served
#: batch after batch, so memory stays bounded whatever the region set).
DECODE_BATCH = 16 * 2**20


#: Checkpoint tables up to this many rows are kept as Python lists (the fastest to search with ``bisect``),
#: larger ones as ``array('q')`` (8 bytes a row rather than about 36; a search costs about a microsecond more).
LIST_ROWS = 2**18


def _sequence(column: np.ndarray) -> Sequence[int]:
    """``column`` as a sequence of Python ints that ``bisect`` searches without a NumPy call."""
    if column.size <= LIST_ROWS:
        return column.tolist()  # type: ignore[no-any-return]
    return array("q", column.astype(np.int64).tobytes())


class _Staged:
    """What a codec's readers see as the object when the reader decodes a unit: the compressed bytes it
    fetched for that unit (planned with others), else the handle's reads."""

    def __init__(self, handle: ObjectHandle) -> None:
        self.handle, self.url = handle, handle.url
        self.local = threading.local()

    def stage(self, start: int, data: bytes) -> None:
        self.local.start, self.local.data = start, data

    def read_range(self, start: int, end: int, expect: Any = None, *, checked: bool = False) -> bytes:
        at, data = getattr(self.local, "start", -1), getattr(self.local, "data", b"")
        if at <= start and end <= at + len(data):
            return data if start == at and end - start == len(data) else data[start - at : end - at]
        return self.handle._read_range(start, end)


class Reader(ObjectHandle):
    """A long-lived reader of one indexed object (``co.reader()``; a context manager).

    ``check_interval``: seconds between checks of the object's identity after the one at opening (0: before
    every call; None: never again); on a store that pins reads, every request is checked instead, at no cost.
    ``cache_bytes``: the LRU's size, for decoded units and what the format keeps (COG tiles).

    Not picklable: slices stay plain descriptions, read through :func:`shared` handles.
    """

    def __init__(self, co: CloudObject, *, check_interval: float | None = DEFAULT_CHECK_INTERVAL, cache_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        sidecar = co.index()
        super().__init__(co.obj, sidecar.object_info, check_interval=check_interval, cache_bytes=cache_bytes)
        #: The object, and the index this reader reads it by.
        self.co, self.sidecar = co, sidecar
        attributes = co.attributes
        # A byte stream under a codec (the framed formats' attributes); any other format's bytes are its own
        # (a COG's "compression" is per tile, not the object's).
        streamed = hasattr(attributes, "uncompressed_size") and isinstance(getattr(attributes, "compression", None), str)
        compression = attributes.compression if streamed else "none"
        #: Decoded bytes in the object (its size when it is not compressed).
        self.logical_size = int(attributes.uncompressed_size) if streamed else self.info.size
        self.codec = get_codec(compression)
        #: Units decoded so far (tests and benchmarks count them).
        self.decodes = 0
        self._plain = compression == "none"
        if self._plain:
            return
        index = CodecIndex.of_sidecar(sidecar, compression, self.logical_size)
        table = self.codec.checkpoints(self.url, index, self.info.size)
        assert table is not None
        n = len(table)
        c = table.compressed
        ends = np.minimum(c[1:] + table.margin, table.data_end)
        ends[-1:] = table.data_end
        # Python sequences searched with bisect: no NumPy call per read.
        self._u = _sequence(table.logical)
        self._fetch_start = _sequence(c[:n])
        self._fetch_end = _sequence(ends)
        self._inflate = self.codec.unit_decoder(self.url, index)
        if self._inflate is None:
            self._staged = _Staged(self)
            self._readers = self.codec.readers(self._staged, self.info, index)  # type: ignore[arg-type]

    # -- one range -----------------------------------------------------------------------------------------

    def decoded(self, start: int, end: int) -> bytes:
        """Decoded (logical) bytes ``[start, end)`` of the object, through the LRU of decoded units."""
        self.check_due()
        if not 0 <= start <= end <= self.logical_size:
            raise StrategyArgumentError(self.url, f"decoded range [{start}, {end}) is outside the object's {self.logical_size} decoded bytes")
        if end == start:
            return b""
        if self._plain:
            return self._pread(start, end) if self._local else self._blocks(start, end)
        u = self._u
        k = bisect_right(u, start) - 1
        if end <= u[k + 1]:
            data = self.cache.get(k)
            if data is None:
                data = self._decode([k])[k]
            at = start - u[k]
            return data[at : at + end - start]  # type: ignore[no-any-return]
        j = bisect_left(u, end, k + 1)
        return self._cut(self._units(range(k, j)), start, end, k, j)

    # -- many ranges ---------------------------------------------------------------------------------------

    def decoded_many(self, spans: Sequence[tuple[int, int]]) -> list[bytes]:
        """Decoded bytes of each range ``[a, b)`` of ``spans``, in the caller's order: the compressed bytes
        they need are fetched in few requests (the store's gap joins near ones), and each unit is decoded
        once for all the ranges in it, :data:`DECODE_BATCH` compressed bytes at a time."""
        self.check_due()
        size = self.logical_size
        for a, b in spans:
            if not 0 <= a <= b <= size:
                raise StrategyArgumentError(self.url, f"decoded range [{a}, {b}) is outside the object's {size} decoded bytes")
        if self._plain:
            return self._read_ranges(spans)
        u, fs, fe = self._u, self._fetch_start, self._fetch_end
        out: list[bytes] = [b""] * len(spans)
        batch: list[tuple[int, int, int, int, int]] = []
        rows: set[int] = set()
        cost = 0

        def flush() -> None:
            units = self._units(sorted(rows))
            for i, a, b, k, j in batch:
                out[i] = self._cut(units, a, b, k, j)
            batch.clear()
            rows.clear()

        for i in sorted(range(len(spans)), key=lambda i: spans[i][0]):
            a, b = spans[i]
            if b <= a:
                continue
            k = bisect_right(u, a) - 1
            j = bisect_left(u, b, k + 1)
            new = [r for r in range(k, j) if r not in rows]
            more = sum(fe[r] - fs[r] for r in new)
            if batch and cost + more > DECODE_BATCH:
                flush()
                cost, new = 0, list(range(k, j))
                more = sum(fe[r] - fs[r] for r in new)
            rows.update(new)
            cost += more
            batch.append((i, a, b, k, j))
        if batch:
            flush()
        return out

    # -- units ---------------------------------------------------------------------------------------------

    def _cut(self, units: dict[int, bytes], start: int, end: int, k: int, j: int) -> bytes:
        """Bytes ``[start, end)`` from the decoded units of rows ``k`` to ``j - 1``."""
        u = self._u
        if j == k + 1:
            at = start - u[k]
            return units[k][at : at + end - start]
        parts = [units[r] for r in range(k, j)]
        parts[0] = parts[0][start - u[k] :]
        parts[-1] = parts[-1][: end - u[j - 1]]
        return b"".join(parts)

    def _units(self, rows: Sequence[int]) -> dict[int, bytes]:
        """The decoded units of ``rows``: from the LRU, the missing ones fetched together and decoded."""
        got: dict[int, bytes] = {}
        missing = []
        get = self.cache.get
        for r in rows:
            data = get(r)
            if data is None:
                missing.append(r)
            else:
                got[r] = data
        if missing:
            got.update(self._decode(missing))
        return got

    def _decode(self, rows: list[int]) -> dict[int, bytes]:
        """Fetch the compressed bytes of ``rows`` (one request per merged range) and decode each, into the LRU."""
        fs, fe, u = self._fetch_start, self._fetch_end, self._u
        if len(rows) == 1:
            raws = [self._read_range(fs[rows[0]], fe[rows[0]])]
        else:
            raws = self._read_ranges([(fs[r], fe[r]) for r in rows])
        out = {}
        put = self.cache.put
        for r, raw in zip(rows, raws):
            if self._inflate is not None:
                data = self._inflate(raw, fs[r], u[r + 1] - u[r])
            else:
                self._staged.stage(fs[r], raw)
                try:
                    data = self._readers(u[r], u[r + 1]).read()
                finally:
                    self._staged.stage(-1, b"")
            self.decodes += 1
            out[r] = put(r, data)
        return out

    def _blocks(self, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of a remote plain object, through blocks kept in the LRU."""
        first, last = start // RANGE_FILE_BLOCK, (end - 1) // RANGE_FILE_BLOCK
        blocks = {k: self.cache.get(("block", k)) for k in range(first, last + 1)}
        missing = [k for k, data in blocks.items() if data is None]
        if missing:
            size = self.info.size
            ranges = [(k * RANGE_FILE_BLOCK, min((k + 1) * RANGE_FILE_BLOCK, size)) for k in missing]
            for k, data in zip(missing, self._read_ranges(ranges)):
                blocks[k] = self.cache.put(("block", k), data)
        joined = b"".join(blocks[k] for k in range(first, last + 1))  # type: ignore[misc]
        at = start - first * RANGE_FILE_BLOCK
        return joined[at : at + end - start]
