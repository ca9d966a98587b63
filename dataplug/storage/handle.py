"""A kept-open handle on one object: the storage half of :class:`dataplug.reader.Reader`, and the process-wide
registry that lets the slices read in one worker share one handle and one cache per object.

A :class:`StorageObject` read opens the file (or asks the store) afresh and checks the object's identity on
every call, which is right for a slice read once on some worker but costs more than the read itself when one
process reads many small ranges of one object (regions of a genome, windows of a raster). An
:class:`ObjectHandle` keeps what those reads share:

- the open file (locally: one descriptor, read with ``pread``) or the store's session (the object's
  :class:`~dataplug.storage.stores.Transport`, made once);
- the identity check: once when the handle opens, then every ``check_interval`` seconds (0: before every call;
  None: never again). On a store that pins reads (S3 ``If-Match``/``VersionId``, HTTP ``If-Match``) every
  request carries the check at no extra cost, so no metadata request is ever made;
- an :class:`LRU` of what the caller decodes from the bytes (BGZF members, gzip stretches, COG tiles), and a
  memo of what it derives from the index once (layouts, tables).

:func:`shared` keeps a few handles per process, by object and identity, for slices: a slice stays a plain,
picklable description, and its reader asks :func:`shared` for the handle of its object in the process it runs
in (a forked child never reuses its parent's). Shared handles check identity before every call
(``check_interval=0``), as every slice read did before them: on S3 that is the pinned request itself, locally
one ``stat``.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from dataplug.errors import DataplugError, ObjectNotFoundError, StaleIndexError
from dataplug.storage.object import ObjectInfo, StorageObject, read_stats
from dataplug.storage.ranges import plan
from dataplug.storage.retry import stale_error
from dataplug.storage.stores import FILE_PROTOCOLS, _local_identity

T = TypeVar("T")

#: Bytes of decoded units an :class:`ObjectHandle` keeps by default.
DEFAULT_CACHE_BYTES = 64 * 2**20
#: Seconds between identity checks of a handle by default (stores that pin check on every request instead).
DEFAULT_CHECK_INTERVAL = 30.0
#: Handles :func:`shared` keeps per process (the least recently used is dropped first).
SHARED_HANDLES = 8
#: Bytes of cache each shared handle keeps.
SHARED_CACHE_BYTES = 64 * 2**20


class LRU:
    """A thread-safe least-recently-used cache bounded by the bytes of its values.

    ``put(key, value, nbytes)`` keeps ``value`` (``nbytes`` defaults to ``len(value)``, or its ``nbytes``
    for an array); once the total passes ``max_bytes`` the least recently used entries are dropped. A value
    larger than the whole cache is not kept. ``hits`` and ``misses`` count :meth:`get` answers."""

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"the cache size must be >= 0 bytes, not {max_bytes}")
        self.max_bytes = max_bytes
        self.nbytes = 0
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def get(self, key: Hashable, default: Any = None) -> Any:
        """The value kept under ``key`` (now the most recently used), else ``default``."""
        entries = self._entries
        entry = entries.get(key)  # one atomic step under the GIL: no lock on the hot path
        if entry is None:
            self.misses += 1
            return default
        try:
            entries.move_to_end(key)
        except KeyError:  # dropped by another thread's put meanwhile
            pass
        self.hits += 1
        return entry[0]

    def put(self, key: Hashable, value: Any, nbytes: int | None = None) -> Any:
        """Keep ``value`` under ``key``; returns ``value``."""
        size = _nbytes(value) if nbytes is None else nbytes
        if size > self.max_bytes:
            return value
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self.nbytes -= old[1]
            self._entries[key] = (value, size)
            self.nbytes += size
            while self.nbytes > self.max_bytes:
                _, (_, dropped) = self._entries.popitem(last=False)
                self.nbytes -= dropped
        return value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.nbytes = 0


def _nbytes(value: Any) -> int:
    size = getattr(value, "nbytes", None)
    return int(size) if size is not None else len(value)


class ObjectHandle:
    """Reads of one object as indexed (``info``), through a kept-open file or session (see the module
    docstring). Thread-safe; not picklable (slices carry the object and its info, and find a handle with
    :func:`shared` where they run). Close it, or use it as a context manager."""

    def __init__(
        self, obj: StorageObject, info: ObjectInfo, *, check_interval: float | None = DEFAULT_CHECK_INTERVAL, cache_bytes: int = DEFAULT_CACHE_BYTES
    ) -> None:
        if check_interval is not None and check_interval < 0:
            raise ValueError(f"check_interval must be >= 0 seconds or None, not {check_interval}")
        self.obj, self.info = obj, info
        self.url = obj.url
        self.check_interval = check_interval
        #: Decoded units by key (the reader's checkpoint rows; formats add their own keys, e.g. COG tiles).
        self.cache = LRU(cache_bytes)
        self._memo: dict[Hashable, Any] = {}
        self._memo_lock = threading.Lock()
        self._policy = obj.policy
        self._local = obj.protocol in FILE_PROTOCOLS
        self._fd: int | None = None
        self._closed = False
        self._fetching: dict[Hashable, threading.Lock] = {}
        self._fetching_lock = threading.Lock()
        self._pinned = not self._local and obj.transport.pins(info)
        self._open()

    # -- opening and identity ------------------------------------------------------------------------------

    def _open(self) -> None:
        """Open the file (locally) and check the identity once; a pinned store checks with its first request."""
        if self._local:
            try:
                self._fd = os.open(self.obj.path, os.O_RDONLY)
            except FileNotFoundError:
                raise ObjectNotFoundError(self.url, "object not found") from None
            try:
                self._compare(os.fstat(self._fd))
            except StaleIndexError:
                os.close(self._fd)
                self._fd = None
                raise
        elif not self._pinned:
            self.obj.check_unchanged(self.info)
        #: When the identity is next checked (monotonic seconds); None: never (pinned stores, or interval None).
        self._due: float | None = None if self._pinned or self.check_interval is None else time.monotonic() + self.check_interval

    def _compare(self, st: os.stat_result) -> None:
        now = _local_identity(st)
        if st.st_size != self.info.size or now != self.info.identity:
            raise stale_error(self.url, self.info, ObjectInfo(size=st.st_size, identity=now))

    def check(self) -> None:
        """Check the object's identity now (a :class:`StaleIndexError` when it changed since it was indexed):
        locally one ``stat``, remotely one metadata request (made on a store that pins only when asked for
        here: its requests check themselves)."""
        if self._closed:
            raise DataplugError(self.url, "the reader is closed")
        if self._local:
            try:
                self._compare(os.stat(self.obj.path))
            except FileNotFoundError:
                raise StaleIndexError(self.url, "the object was deleted after it was indexed") from None
        else:
            self.obj.check_unchanged(self.info)
        if self._due is not None:
            self._due = time.monotonic() + (self.check_interval or 0.0)

    def check_due(self) -> None:
        """The identity check, when due (the hot path's one test)."""
        due = self._due
        if due is not None and time.monotonic() >= due:
            self.check()

    # -- reads --------------------------------------------------------------------------------------------

    def read_range(self, start: int, end: int) -> bytes:
        """Object bytes ``[start, end)``."""
        self.check_due()
        return self._read_range(start, end)

    def read_ranges(self, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        """The object bytes of each range ``[a, b)``, in the caller's order, planned as few requests with the
        store's policy (:func:`~dataplug.storage.ranges.plan`: near ranges joined)."""
        self.check_due()
        return self._read_ranges(ranges)

    def _read_range(self, start: int, end: int) -> bytes:
        """:meth:`read_range` within a call that made its identity check already."""
        if self._local:
            return self._pread(start, end)
        return self.obj.read_ranges([(start, end)], expect=self.info, checked=True)[0]

    def _read_ranges(self, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        """:meth:`read_ranges` within a call that made its identity check already."""
        if not self._local:
            return self.obj.read_ranges(ranges, expect=self.info, checked=True)
        jobs = plan(ranges, self._policy.max_gap, self._policy.max_block)
        return jobs.cut([self._pread(a, b) for a, b in jobs.requests])

    def _pread(self, start: int, end: int) -> bytes:
        if end <= start:
            return b""
        fd = self._fd
        if fd is None:
            self.check()  # closed: raises
        # A forked child reads its copy of the descriptor: ``pread`` shares no file position with the parent.
        data = os.pread(fd, end - start, start)  # type: ignore[arg-type]
        read_stats.add(self.url, 1, len(data))
        if len(data) < end - start:
            self.check()
            raise StaleIndexError(self.url, f"short read: the object has fewer than the {end} bytes indexed; run preprocess(force=True)")
        return data

    def fetched(self, start: int, end: int) -> bytes:
        """Object bytes ``[start, end)``, kept in the cache under ``("range", start, end)``: the slices of one
        process that carry the same fetch range (a region set's merged range) make one request for it."""
        key = ("range", start, end)
        data = self.cache.get(key)
        if data is not None:
            self.check_due()
            return data  # type: ignore[no-any-return]
        with self._fetching_lock:
            lock = self._fetching.setdefault(key, threading.Lock())
        with lock:  # threads that want the same range wait for the one request
            self.check_due()
            data = self.cache.get(key)
            if data is None:
                data = self.cache.put(key, self._read_range(start, end))
        with self._fetching_lock:
            self._fetching.pop(key, None)
        return data  # type: ignore[no-any-return]

    # -- memo and lifetime --------------------------------------------------------------------------------

    def memo(self, key: Hashable, build: Callable[[], T]) -> T:
        """``build()`` the first time ``key`` is asked, its result every later time (what the index yields:
        layouts, line indexes, region tables)."""
        try:
            return self._memo[key]  # type: ignore[no-any-return]
        except KeyError:
            pass
        value = build()
        with self._memo_lock:
            return self._memo.setdefault(key, value)  # type: ignore[no-any-return]

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Close the file, drop the cache; later calls raise :class:`DataplugError`."""
        if self._closed:
            return
        self._closed, self._due = True, 0.0
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
        self.cache.clear()
        self._memo.clear()

    def __enter__(self: Any) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass

    def __reduce__(self) -> Any:
        raise TypeError(f"{type(self).__name__} of {self.url} is not picklable: it holds an open file or session; slices carry plain descriptions")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.obj!r}, {'closed' if self._closed else 'open'})"


_shared: OrderedDict[tuple[Any, ...], ObjectHandle] = OrderedDict()
_shared_pid = os.getpid()
_shared_lock = threading.Lock()


def shared(obj: StorageObject, info: ObjectInfo, cache_bytes: int = SHARED_CACHE_BYTES) -> ObjectHandle:
    """The handle of ``obj`` as ``info`` describes it that this process shares among the slices it reads
    (made on first use; :data:`SHARED_HANDLES` kept, the least recently used dropped first). Its identity is
    checked before every call, as a slice read's always was (see the module docstring). A forked child starts
    with none of its parent's handles. ``cache_bytes`` is what the caller's units need kept (a format whose
    decoded units are large, COG tiles, asks for more); the handle's LRU grows to the largest asked."""
    global _shared_pid
    key = (obj.url, repr(sorted(obj.storage_options.items())), info.size, info.identity)
    with _shared_lock:
        if _shared_pid != os.getpid():
            _shared.clear()  # the parent's: their descriptors close with them in this process only
            _shared_pid = os.getpid()
        handle = _shared.get(key)
        if handle is not None and not handle.closed:
            _shared.move_to_end(key)
            handle.cache.max_bytes = max(handle.cache.max_bytes, cache_bytes)
            return handle
    handle = ObjectHandle(obj, info, check_interval=0, cache_bytes=cache_bytes)
    with _shared_lock:
        handle = _shared.setdefault(key, handle)
        _shared.move_to_end(key)
        while len(_shared) > SHARED_HANDLES:
            _shared.popitem(last=False)  # closed by the collector once no slice still reads through it
    return handle


def clear_shared() -> None:
    """Forget every shared handle of this process (tests; a worker between jobs)."""
    with _shared_lock:
        _shared.clear()


@dataclass(frozen=True)
class WindowedObject:
    """An object as a slice's reader sees it when the slice carries a fetch window: reads inside
    ``window`` (object bytes ``[a, b)``, a region set's merged range) are cut from that window, fetched once
    per process through the :func:`shared` handle and kept in its cache, so that the slices of one merged
    range make one request between them; reads outside it go through the shared handle as they are. Small
    and picklable; every other attribute is the underlying :class:`StorageObject`'s."""

    obj: StorageObject
    info: ObjectInfo
    window: tuple[int, int]

    @property
    def url(self) -> str:
        return self.obj.url

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("obj", "info", "window"):
            raise AttributeError(name)
        return getattr(self.obj, name)

    def read_range(self, start: int, end: int, expect: ObjectInfo | None = None, *, checked: bool = False) -> bytes:
        """Object bytes ``[start, end)`` (``expect`` must be the window's ``info`` when given)."""
        return self.read_ranges([(start, end)], expect)[0]

    def read_ranges(self, ranges: Sequence[tuple[int, int]], expect: ObjectInfo | None = None, **_: Any) -> list[bytes]:
        if expect is not None and expect != self.info:
            raise StaleIndexError(self.url, f"a read expects {expect}, the slice's window was planned for {self.info}")
        handle = shared(self.obj, self.info)
        a, b = self.window
        out = []
        for start, end in ranges:
            if a <= start and end <= b:
                data = handle.fetched(a, b)
                out.append(data[start - a : end - a])
            else:
                out.append(handle.read_range(start, end))
        return out
