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

if TYPE_CHECKING:
    from dataplug.storage.object import ObjectInfo, StorageObject

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
    """Front-to-back reads of one object, ``block_size`` ranges fetched ``ahead`` blocks in advance on a
    background thread so download and decoding overlap. Every range is pinned to ``expect`` where the store
    pins; elsewhere the object's identity is checked once, with the first range."""

    def __init__(self, obj: StorageObject, expect: ObjectInfo, block_size: int, ahead: int) -> None:
        super().__init__()
        self.obj, self.expect, self.block_size = obj, expect, block_size
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="dataplug-prefetch")
        self.pending: deque[Future[bytes]] = deque()
        self.next_start = 0
        self.buffer = memoryview(b"")
        for _ in range(max(1, ahead)):
            self._prefetch()

    def _read(self, start: int, end: int, checked: bool) -> bytes:
        return self.obj.read_ranges([(start, end)], expect=self.expect, checked=checked)[0]

    def _prefetch(self) -> None:
        if self.next_start < self.expect.size:
            end = min(self.next_start + self.block_size, self.expect.size)
            # One thread runs the reads in order: the first checks the identity for every later one.
            self.pending.append(self.pool.submit(self._read, self.next_start, end, self.next_start > 0))
            self.next_start = end

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        if not self.buffer:
            if not self.pending:
                return 0
            self.buffer = memoryview(self.pending.popleft().result())
            self._prefetch()
        n = min(len(target), len(self.buffer))
        target[:n] = self.buffer[:n]
        self.buffer = self.buffer[n:]
        return n

    def close(self) -> None:
        for fut in self.pending:
            fut.cancel()
        self.pool.shutdown(wait=True)
        super().close()
