"""A read-ahead file object for one front-to-back pass over a remote object (the gzip index pass).

:class:`ReadAhead` fetches the object's byte ranges on ``connections`` threads while the caller decodes
what has arrived, so the download and the decoding overlap. The first range is small, so decoding starts
after one short request instead of a whole block, and ranges then double up to ``block_size`` (a whole
32 MiB block first left the pass idle for most of a 37 MB object's download on the S3 latency bed:
``python benchmarks/gzip_fastq.py`` prints the S3 index pass next to the local one). Several connections
at once matter on S3, where one connection carries 85-90 MB/s.

Memory stays bounded: at most ``ahead`` ranges are fetched or waiting at any time. Every range is read with
:meth:`StorageObject.read_ranges <dataplug.storage.object.StorageObject.read_ranges>`, so the store's
retries, pinning (``If-Match``/``VersionId``) and identity check apply as to any read; where the store
cannot pin, the first range checks the object's identity before any other range is asked for. A failed
range surfaces from :meth:`readinto` as a dataplug error naming the object; :meth:`close` cancels what is
queued and waits for the threads, so none is left running.
"""

from __future__ import annotations

import io
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from dataplug.errors import DataplugError, StorageError
from dataplug.storage.object import ObjectInfo, StorageObject

FIRST_RANGE = 2**20  # bytes of the first request: decoding can start after one short request
BLOCK_SIZE = 4 * 2**20  # the largest range
CONNECTIONS = 6  # ranges fetched at once
AHEAD = 10  # ranges fetched or waiting at most: memory is at most AHEAD * BLOCK_SIZE


class ReadAhead(io.RawIOBase):
    """The bytes of ``obj`` (described by ``expect``) front to back, fetched ahead on background threads."""

    def __init__(
        self,
        obj: StorageObject,
        expect: ObjectInfo,
        *,
        first_range: int = FIRST_RANGE,
        block_size: int = BLOCK_SIZE,
        connections: int = CONNECTIONS,
        ahead: int = AHEAD,
    ) -> None:
        super().__init__()
        if first_range < 1 or block_size < first_range or connections < 1 or ahead < 1:
            raise ValueError(f"bad read-ahead sizes: first_range={first_range}, block_size={block_size}, connections={connections}, ahead={ahead}")
        self.obj, self.expect = obj, expect
        self.block_size, self.ahead = block_size, ahead
        self.next_size = first_range
        self.next_start = 0
        self.pending: deque[Future[bytes]] = deque()
        self.buffer = memoryview(b"")
        self.pool = ThreadPoolExecutor(connections, thread_name_prefix="dataplug-readahead")
        # Where the store cannot pin, the first read checks the identity; the others wait for it.
        self.checked = obj.transport.pins(expect)
        self._submit()
        if self.checked:
            self._fill_queue()

    def _read(self, start: int, end: int, checked: bool) -> bytes:
        try:
            data = self.obj.read_ranges([(start, end)], expect=self.expect, checked=checked)[0]
        except DataplugError:
            raise
        except Exception as exc:  # anything else a store raises becomes a dataplug error
            raise StorageError(self.obj.url, f"reading bytes {start}-{end} ahead of the pass failed: {exc!r}") from exc
        if len(data) != end - start:
            raise StorageError(self.obj.url, f"reading bytes {start}-{end} ahead of the pass returned {len(data)} bytes")
        return data

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
            raise ValueError("read from a closed ReadAhead")
        if not self.buffer:
            if not self.pending:
                return 0
            data = self.pending.popleft().result()  # a failed range raises here, in the caller's thread
            self.checked = True
            self.buffer = memoryview(data)
            self._fill_queue()
        n = min(len(target), len(self.buffer))
        target[:n] = self.buffer[:n]
        self.buffer = self.buffer[n:]
        return n

    def close(self) -> None:
        """Cancel the ranges not yet started and wait for the running ones: no thread outlives this."""
        if not self.closed:
            for future in self.pending:
                future.cancel()
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pending.clear()
            self.buffer = memoryview(b"")
        super().close()
