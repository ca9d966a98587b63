"""The storage layer: one object behind an fsspec URL, read by byte ranges.

Nothing else in dataplug opens files or clients. A :class:`StorageObject` is a small, picklable value
(URL + storage options); the fsspec filesystem behind it is created lazily in each process and never
pickled, so slices can travel to any worker and resolve credentials there.
"""

from __future__ import annotations

import io
import os
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Sequence

import fsspec

from dataplug.errors import (
    DataplugError,
    IndexLocationNotWritableError,
    ObjectNotFoundError,
    StaleIndexError,
    StorageError,
)

#: Attempts for a storage call that fails with a transient error (connection reset, timeout, 5xx).
RETRIES = 4


class ReadStats:
    """Process-wide counters of reads per URL, so tests and benchmarks can prove what a step fetched."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[str, int] = {}
        self.bytes: dict[str, int] = {}

    def add(self, url: str, requests: int, nbytes: int) -> None:
        with self._lock:
            self.requests[url] = self.requests.get(url, 0) + requests
            self.bytes[url] = self.bytes.get(url, 0) + nbytes

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.bytes.clear()


#: Counts every ranged read made through :meth:`StorageObject.read_ranges`.
read_stats = ReadStats()


@dataclass(frozen=True)
class ObjectInfo:
    """What the index records about an object to detect later changes."""

    size: int
    identity: str

    def to_json(self) -> dict[str, Any]:
        return {"size": self.size, "identity": self.identity}


def _identity(info: dict[str, Any]) -> str:
    """A string that changes when the object's content changes: ETag/version on object stores, mtime locally."""
    for key in ("VersionId", "version_id", "generation"):
        if info.get(key):
            return f"version:{info[key]}"
    for key in ("ETag", "etag", "md5Hash", "md5", "checksum"):
        if info.get(key):
            return f"etag:{str(info[key]).strip()}"
    for key in ("mtime", "LastModified", "last_modified", "updated", "created"):
        value = info.get(key)
        if value is not None:
            if hasattr(value, "timestamp"):
                value = value.timestamp()
            return f"mtime:{value}"
    return "unknown"


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)):
        return False
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    text = str(exc)
    return any(code in text for code in ("SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", " 503", " 500"))


def _is_precondition_failed(exc: BaseException | None) -> bool:
    """True for S3's answer to a failed ``If-Match`` (HTTP 412), however s3fs wrapped it."""
    while exc is not None:
        response = getattr(exc, "response", None) or {}
        if "PreconditionFailed" in str(exc) or response.get("Error", {}).get("Code") == "PreconditionFailed":
            return True
        if response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 412:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def split_url(url: str) -> tuple[str, str]:
    """``("s3", "bucket/key")`` for a URL; plain paths are ``file``."""
    protocol, path = fsspec.core.split_protocol(url)
    return protocol or "file", path


@dataclass
class StorageObject:
    """An object (or any path) behind an fsspec URL plus the options of its filesystem.

    ``storage_options`` are passed to fsspec as given (for S3: ``endpoint_url``, ``key``, ``secret``,
    ``client_kwargs`` ...). Leave them empty to let each worker resolve credentials from its environment.
    """

    url: str
    storage_options: dict[str, Any] = field(default_factory=dict)
    _fs: Any = field(default=None, init=False, repr=False, compare=False)
    _path: str | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if "://" not in self.url and not self.url.startswith("/"):
            self.url = os.path.abspath(self.url)

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url, "storage_options": self.storage_options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.url = state["url"]
        self.storage_options = state["storage_options"]
        self._fs = None
        self._path = None

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        if self._fs is None:
            self._fs, self._path = fsspec.core.url_to_fs(self.url, **self.storage_options)
        return self._fs

    @property
    def path(self) -> str:
        """The filesystem-specific path (bucket/key for S3)."""
        self.fs
        assert self._path is not None
        return self._path

    @property
    def protocol(self) -> str:
        return split_url(self.url)[0]

    def child(self, name: str) -> StorageObject:
        """The object ``name`` inside this URL taken as a folder (same storage options)."""
        return StorageObject(self.url.rstrip("/") + "/" + name, self.storage_options)

    # -- metadata ---------------------------------------------------------------------------------------

    def info(self, refresh: bool = True) -> ObjectInfo:
        """Size and identity, fresh from the store. Raises :class:`ObjectNotFoundError`."""
        if refresh:
            self.fs.invalidate_cache(self.path)
        raw = self._call(self.fs.info, self.path)
        if raw.get("type") == "directory":
            raise ObjectNotFoundError(self.url, "is a directory, not an object")
        return ObjectInfo(size=int(raw["size"]), identity=_identity(raw))

    def exists(self) -> bool:
        try:
            self.info()
        except ObjectNotFoundError:
            return False
        return True

    # -- reads -------------------------------------------------------------------------------------------

    def read_range(self, start: int, end: int, expect: ObjectInfo | None = None) -> bytes:
        """Bytes ``[start, end)`` of the object."""
        return self.read_ranges([(start, end)], expect=expect)[0]

    def read_ranges(self, ranges: Sequence[tuple[int, int]], expect: ObjectInfo | None = None) -> list[bytes]:
        """Several byte ranges in one call (concurrent requests where the filesystem is async).

        With ``expect``, raises :class:`StaleIndexError` if the object is no longer the one described.
        On S3 the check rides on the reads themselves (``If-Match`` on the ETag), so it costs no request;
        elsewhere it is one metadata call.
        """
        ranges = [(int(a), int(b)) for a, b in ranges]
        if not ranges:
            return []
        if expect is not None and self._can_match_etag(expect):
            out = self._read_ranges_if_match(ranges, expect.identity[len("etag:"):])
        else:
            if expect is not None:
                self.check_unchanged(expect)
            nonempty = [(a, b) for a, b in ranges if b > a]
            got = iter(
                self._call(self.fs.cat_ranges, [self.path] * len(nonempty), [a for a, _ in nonempty], [b for _, b in nonempty])
                if nonempty
                else []
            )
            out = [next(got) if b > a else b"" for a, b in ranges]
        for (a, b), data in zip(ranges, out):
            if isinstance(data, BaseException):
                raise self._translate(data)
            if len(data) != b - a:
                raise StaleIndexError(self.url, f"short read at bytes [{a}, {b}): got {len(data)} bytes; the object is smaller than indexed")
        read_stats.add(self.url, sum(1 for a, b in ranges if b > a), sum(b - a for a, b in ranges))
        return out

    def check_unchanged(self, expect: ObjectInfo) -> None:
        """Raise :class:`StaleIndexError` unless the object still has the indexed size and identity."""
        now = self.info()
        if now.size != expect.size or now.identity != expect.identity:
            raise StaleIndexError(
                self.url,
                f"the object changed after it was indexed (indexed size {expect.size}, {expect.identity}; "
                f"now size {now.size}, {now.identity}); run preprocess(force=True)",
            )

    def _can_match_etag(self, expect: ObjectInfo) -> bool:
        return self.protocol in ("s3", "s3a") and expect.identity.startswith("etag:")

    def _read_ranges_if_match(self, ranges: list[tuple[int, int]], etag: str) -> list[bytes]:
        from fsspec.asyn import sync

        fs = self.fs
        bucket, key, _ = fs.split_path(self.path)

        async def one(start: int, end: int) -> bytes:
            if end <= start:
                return b""
            resp = await fs._call_s3("get_object", Bucket=bucket, Key=key, Range=f"bytes={start}-{end - 1}", IfMatch=etag)
            try:
                return await resp["Body"].read()
            finally:
                resp["Body"].close()

        async def all_ranges() -> list[Any]:
            import asyncio

            return await asyncio.gather(*(one(a, b) for a, b in ranges), return_exceptions=True)

        results = self._call(sync, fs.loop, all_ranges)
        for res in results:
            if isinstance(res, BaseException) and _is_precondition_failed(res):
                raise StaleIndexError(self.url, "the object changed after it was indexed (ETag no longer matches); run preprocess(force=True)")
        return results

    def stream(self, expect: ObjectInfo, block_size: int = 32 * 2**20, ahead: int = 2) -> SequentialReader:
        """A read-only file object over the whole object for one front-to-back pass.

        It fetches ``block_size`` ranges ``ahead`` blocks in advance on a background thread, so download
        and decoding overlap; every range carries the staleness check of :meth:`read_ranges`.
        """
        return SequentialReader(self, expect, block_size, ahead)

    # -- writes (sidecar locations only; data objects are never written) --------------------------------

    def write_bytes(self, data: bytes) -> None:
        """Write the whole object; a failure becomes :class:`IndexLocationNotWritableError`."""
        try:
            if self.protocol == "file":
                self.fs.makedirs(self.fs._parent(self.path), exist_ok=True)
                tmp = f"{self.path}.tmp-{os.getpid()}-{threading.get_ident()}"
                with open(tmp, "wb") as fh:
                    fh.write(data)
                os.replace(tmp, self.path)
            else:
                self._call(self.fs.pipe_file, self.path, data)
        except DataplugError as exc:
            raise IndexLocationNotWritableError(self.url, f"cannot write: {exc.cause}") from exc
        except Exception as exc:  # noqa: BLE001
            raise IndexLocationNotWritableError(self.url, f"cannot write: {type(exc).__name__}: {exc}") from exc

    def read_all(self) -> bytes:
        """The whole object (used for small sidecar files, never for data objects)."""
        data = self._call(self.fs.cat_file, self.path)
        read_stats.add(self.url, 1, len(data))
        return data

    def delete(self, recursive: bool = False) -> None:
        try:
            self.fs.rm(self.path, recursive=recursive)
        except FileNotFoundError:
            pass

    def list_names(self) -> list[str]:
        """Names directly inside this URL taken as a folder ([] when it does not exist)."""
        try:
            self.fs.invalidate_cache(self.path)
            return [p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(self.path, detail=False)]
        except FileNotFoundError:
            return []

    # -- errors and retries ------------------------------------------------------------------------------

    def _translate(self, exc: BaseException) -> DataplugError:
        if isinstance(exc, DataplugError):
            return exc
        if isinstance(exc, (FileNotFoundError, NotADirectoryError)):
            return ObjectNotFoundError(self.url, "object not found")
        if _is_precondition_failed(exc):
            return StaleIndexError(self.url, "the object changed after it was indexed; run preprocess(force=True)")
        return StorageError(self.url, f"{type(exc).__name__}: {exc}")

    def _call(self, fn, *args: Any, **kwargs: Any) -> Any:
        delay = 0.2
        for attempt in range(RETRIES):
            try:
                return fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - classified below
                if attempt + 1 < RETRIES and _is_transient(exc):
                    time.sleep(delay)
                    delay *= 2
                    continue
                raise self._translate(exc) from exc
        raise AssertionError("unreachable")



class SequentialReader(io.RawIOBase):
    """Front-to-back reads of one object with ranges prefetched on a background thread."""

    def __init__(self, obj: StorageObject, expect: ObjectInfo, block_size: int, ahead: int) -> None:
        super().__init__()
        self.obj, self.expect, self.block_size = obj, expect, block_size
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="dataplug-prefetch")
        self.pending: deque[Future[bytes]] = deque()
        self.next_start = 0
        self.buffer = memoryview(b"")
        for _ in range(max(1, ahead)):
            self._prefetch()

    def _prefetch(self) -> None:
        if self.next_start < self.expect.size:
            end = min(self.next_start + self.block_size, self.expect.size)
            self.pending.append(self.pool.submit(self.obj.read_range, self.next_start, end, self.expect))
            self.next_start = end

    def readable(self) -> bool:
        return True

    def readinto(self, target) -> int:  # type: ignore[override]
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
