"""Range requests, planned once: which requests serve a list of asked ranges, and file objects over them.

A caller lists the byte ranges it needs, in any order, overlapping or not; :func:`plan` turns them into the
requests a store should see (near ranges joined, no request grown past a bound) and cuts each asked range
back out of the bodies. :meth:`dataplug.storage.StorageObject.read_ranges` runs a plan with the store's
:class:`~dataplug.storage.stores.StorePolicy`; :class:`RangeFile` and :class:`SequentialReader` are file
objects over those reads for libraries that want one.
"""

from __future__ import annotations

import io
from collections import OrderedDict, deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dataplug.errors import DataplugError, StorageError

if TYPE_CHECKING:
    from dataplug.storage.object import ObjectInfo, StorageObject

#: A pass's read-ahead (:meth:`StorageObject.stream <dataplug.storage.object.StorageObject.stream>`): a first
#: range small enough that decoding starts after one short request, ranges doubling to 4 MiB (AWS's guidance is
#: 8-16 MB per request; smaller keeps the pass fed sooner), 6 connections at once (one S3 connection carries
#: 85-90 MB/s), at most 10 ranges held. One 32 MiB block first left the gzip pass idle for most of a 37 MB
#: object's download on the S3 latency bed (``python benchmarks/gzip_fastq.py`` prints the S3 pass next to the
#: local one).
STREAM_FIRST_RANGE = 2**20
STREAM_BLOCK = 4 * 2**20
STREAM_CONNECTIONS = 6
STREAM_AHEAD = 10
#: Bytes :class:`RangeFile` fetches per block (a COG keeps its IFDs and tile tables in its first few KiB; a
#: big tiled GeoTIFF's tables take a block per 64 KiB they span).
RANGE_FILE_BLOCK = 64 * 2**10
#: Blocks a :class:`RangeFile` keeps (least recently used dropped first): 16 MiB at the default block.
RANGE_FILE_BLOCKS = 256


@dataclass(frozen=True)
class Plan:
    """The requests that serve some asked ranges, and where each asked range lies in them."""

    #: The asked ranges, in the caller's order.
    asked: tuple[tuple[int, int], ...]
    #: The requests ``[a, b)`` to make, in object order.
    requests: tuple[tuple[int, int], ...]
    #: For each asked range, the request holding it and its offset in that request's body (``(-1, 0)`` for an
    #: empty range, which needs no request).
    where: tuple[tuple[int, int], ...]

    def cut(self, bodies: Sequence[bytes]) -> list[bytes]:
        """Each asked range's bytes from the requests' ``bodies``; identical asked ranges share one bytes object,
        and a range that is a whole request is its body, uncopied."""
        out: list[bytes] = []
        seen: dict[tuple[int, int], bytes] = {}
        for (a, b), (k, offset) in zip(self.asked, self.where):
            if k < 0:
                out.append(b"")
                continue
            data = seen.get((a, b))
            if data is None:
                body = bodies[k]
                data = seen[(a, b)] = body if offset == 0 and len(body) == b - a else body[offset : offset + b - a]
            out.append(data)
        return out


def plan(ranges: Sequence[tuple[int, int]], max_gap: int, max_block: int) -> Plan:
    """The requests for ``ranges``: sorted, a range joined to the request before it when it starts at most
    ``max_gap`` bytes past that request's end (overlaps included), so long as the request then carries at most
    ``max_block`` bytes besides its largest range. Small ranges thus join into requests of about a block,
    which a store reads in parallel, while a range larger than a block is one request, never split (its bytes
    are needed whole, and a split adds requests without reading less), that takes in its small neighbours
    rather than leave them a request each (a slice's data and the small table beside it). There are never
    more requests than non-empty ranges."""
    if max_gap < 0 or max_block < 1:
        raise ValueError(f"max_gap must be >= 0 and max_block >= 1, not {max_gap} and {max_block}")
    asked = tuple((int(a), int(b)) for a, b in ranges)
    order = sorted((i for i, (a, b) in enumerate(asked) if b > a), key=asked.__getitem__)
    requests: list[list[int]] = []  # start, end, largest range
    where = [(-1, 0)] * len(asked)
    for i in order:
        a, b = asked[i]
        if requests and a - requests[-1][1] <= max_gap:
            start, end, largest = requests[-1]
            largest = max(largest, b - a)
            if max(b, end) - start - largest <= max_block:
                requests[-1] = [start, max(b, end), largest]
                where[i] = (len(requests) - 1, a - start)
                continue
        requests.append([a, b, b - a])
        where[i] = (len(requests) - 1, 0)
    return Plan(asked, tuple((a, b) for a, b, _ in requests), tuple(where))


class RangeFile(io.RawIOBase):
    """A read-only, seekable file object over an object, for libraries that parse from a file (tifffile).

    It reads aligned blocks of ``block`` bytes on demand and keeps the ``cache_blocks`` most recently used; the
    blocks one ``read`` misses come in one :meth:`~dataplug.storage.StorageObject.read_ranges` call (adjacent
    ones in one request). Reads are pinned to ``info`` where the store pins; elsewhere the object's identity is
    checked once, at the first miss.
    """

    def __init__(self, obj: StorageObject, info: ObjectInfo, block: int = RANGE_FILE_BLOCK, cache_blocks: int = RANGE_FILE_BLOCKS) -> None:
        super().__init__()
        if block < 1 or cache_blocks < 1:
            raise ValueError(f"block and cache_blocks must be >= 1, not {block} and {cache_blocks}")
        self.obj, self.info, self.block, self.cache_blocks = obj, info, block, cache_blocks
        self.blocks: OrderedDict[int, bytes] = OrderedDict()
        self.pos = 0
        self._checked = False

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.info.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def readinto(self, target: Any) -> int:
        end = min(self.pos + len(target), self.info.size)
        if end <= self.pos:
            return 0
        first, last = self.pos // self.block, (end - 1) // self.block
        wanted = {k: self.blocks.get(k) for k in range(first, last + 1)}
        missing = [k for k, data in wanted.items() if data is None]
        if missing:
            ranges = [(k * self.block, min((k + 1) * self.block, self.info.size)) for k in missing]
            for k, data in zip(missing, self.obj.read_ranges(ranges, expect=self.info, checked=self._checked)):
                wanted[k] = data
            self._checked = True
        view = memoryview(target)
        at = 0
        for k, data in wanted.items():
            lo = max(self.pos, k * self.block) - k * self.block
            hi = min(end, (k + 1) * self.block) - k * self.block
            view[at : at + hi - lo] = data[lo:hi]  # type: ignore[index]
            at += hi - lo
            self.blocks[k] = data  # type: ignore[assignment]
            self.blocks.move_to_end(k)
        while len(self.blocks) > self.cache_blocks:
            self.blocks.popitem(last=False)
        self.pos = end
        return at


class SequentialReader(io.RawIOBase):
    """Front-to-back reads of one object for one pass, its ranges fetched ahead on ``connections`` background
    threads while the caller decodes what has arrived, so download and decoding overlap.

    The first range is ``first_range`` bytes (a pass can start decoding after one short request), and ranges
    then double up to ``block_size``. At most ``ahead`` ranges are fetched or waiting, so memory stays
    bounded. Every range is pinned to ``expect`` where the store pins; elsewhere the first range checks the
    object's identity before any other is asked for. A failed range surfaces from :meth:`readinto` as a
    dataplug error naming the object; :meth:`close` cancels what is queued and waits for the running reads,
    so no thread outlives it."""

    def __init__(
        self, obj: StorageObject, expect: ObjectInfo, block_size: int, ahead: int, first_range: int | None = None, connections: int = 1
    ) -> None:
        super().__init__()
        first_range = block_size if first_range is None else min(first_range, block_size)
        if first_range < 1 or connections < 1 or ahead < 1:
            raise ValueError(f"bad read-ahead sizes: first_range={first_range}, block_size={block_size}, connections={connections}, ahead={ahead}")
        self.obj, self.expect = obj, expect
        self.block_size, self.ahead = block_size, ahead
        self.next_size, self.next_start = first_range, 0
        self.pending: deque[Future[bytes]] = deque()
        self.buffer = memoryview(b"")
        self.pool = ThreadPoolExecutor(connections, thread_name_prefix="dataplug-readahead")
        self.checked = obj.transport.pins(expect)  # where reads are not pinned, the first one checks for all
        self._submit()
        if self.checked:
            self._fill_queue()

    def _read(self, start: int, end: int, checked: bool) -> bytes:
        try:
            return self.obj.read_ranges([(start, end)], expect=self.expect, checked=checked)[0]
        except DataplugError:
            raise
        except Exception as exc:  # a store outside dataplug's own (a plugin's) may raise anything
            raise StorageError(self.obj.url, f"reading bytes {start}-{end} ahead of the pass failed: {exc!r}") from exc

    def _submit(self) -> None:
        end = min(self.next_start + self.next_size, self.expect.size)
        self.pending.append(self.pool.submit(self._read, self.next_start, end, self.checked))
        self.next_start = end
        self.next_size = min(2 * self.next_size, self.block_size)

    def _fill_queue(self) -> None:
        while self.next_start < self.expect.size and len(self.pending) < self.ahead:
            self._submit()

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        if self.closed:
            raise ValueError("read from a closed SequentialReader")
        if not self.buffer:
            if not self.pending:
                return 0
            self.buffer = memoryview(self.pending.popleft().result())  # a failed range raises here
            self.checked = True
            self._fill_queue()
        n = min(len(target), len(self.buffer))
        target[:n] = self.buffer[:n]
        self.buffer = self.buffer[n:]
        return n

    def close(self) -> None:
        if not self.closed:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pending.clear()
            self.buffer = memoryview(b"")
        super().close()
