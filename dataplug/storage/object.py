"""The storage layer: one object behind an fsspec URL, read by byte ranges.

Nothing else in dataplug opens files or clients. A :class:`StorageObject` is a small, picklable value
(URL + storage options); the fsspec filesystem behind it is created lazily in each process and never
pickled, so slices can travel to any worker and resolve credentials there.

Retries, in layers:

- On S3, botocore retries each request until its headers arrive: 5xx, throttling (SlowDown), connection
  resets and timeouts, with capped exponential backoff and jitter (``retries={"mode": "standard"}`` is set
  unless the storage options choose another policy). s3fs's own wrapper adds a few more tries of the same.
- Neither sees the response *body*: a truncated body (aiohttp ``ClientPayloadError``, botocore
  ``IncompleteReadError``), a reset or a stall (``read_timeout``) while it streams, or a body shorter than
  the range are raised after botocore returned, and ``cat_ranges`` hands them back as values. So dataplug
  keeps one retry loop of its own over every read (:meth:`StorageObject._read_retrying` for ranges,
  :meth:`StorageObject._call` for the rest): it re-issues only the failed ranges, each re-read whole and never
  appended to a partial body, with bounded exponential backoff and jitter, and names the URL, the range and
  the attempt count when it gives up. It also turns a short read into :class:`StaleIndexError` when a fresh
  size check shows the object really is smaller than indexed.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import http.client
import io
import os
import random
import threading
import time
import uuid
from collections import OrderedDict, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import fsspec

from dataplug.storage.stores import StorePolicy, policy_for
from dataplug.errors import (
    AccessDeniedError,
    DataplugError,
    IndexLocationNotWritableError,
    ObjectNotFoundError,
    StaleIndexError,
    StorageError,
)

#: Attempts dataplug makes for one read or storage call before it raises :class:`StorageError`.
RETRIES = 5
#: Backoff before attempt ``n + 1`` is ``min(BACKOFF_CAP, BACKOFF_BASE * 2**(n - 1))`` seconds, times a random
#: factor in [0.5, 1) so that workers that failed together do not retry together.
BACKOFF_BASE = 0.2
BACKOFF_CAP = 5.0
#: botocore's retry policy for S3 requests when the storage options set none.
DEFAULT_S3_RETRIES = {"mode": "standard", "max_attempts": 3}
#: Seconds a response may go without a byte before the request counts as stalled and is retried, on every
#: store (botocore's ``read_timeout``, aiohttp's ``sock_read``), unless the storage options set another.
READ_TIMEOUT = 20.0
CONNECT_TIMEOUT = 10.0
#: Seconds after which a failed attempt is not retried, however many attempts are left (checked between
#: attempts: an attempt itself ends when a response goes :data:`READ_TIMEOUT` seconds without a byte).
RETRY_DEADLINE = 120.0
#: Concurrent range requests of one :meth:`StorageObject.read_ranges` call.
MAX_CONCURRENT_RANGES = 32
#: :data:`read_stats` keeps totals for at most this many URLs (the most recently read).
READ_STATS_URLS = 1024
#: Name prefix of the probe files :meth:`StorageObject.check_writable` writes and deletes.
PROBE_PREFIX = ".dataplug-probe-"

_S3 = ("s3", "s3a")
#: Error codes of object stores that mean "try again" (botocore's transient and throttling codes).
_TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "ServiceUnavailable",
        "PriorRequestNotComplete",
        "OperationAborted",
    }
)
_TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})
_TRANSIENT_ERRNOS = frozenset({errno.ETIMEDOUT, errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE})
#: Error codes and statuses that mean a location refuses writes (rather than failed to take one).
_REFUSED_CODES = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "AccountProblem",
        "NoSuchBucket",
        "InvalidBucketName",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "MethodNotAllowed",
        "InvalidObjectState",
    }
)
_REFUSED_STATUS = frozenset({401, 403, 405})
_REFUSED_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.ENOSPC, errno.EDQUOT})
#: Error codes and statuses that mean the credentials in use may not read (rather than that nothing is there).
_DENIED_CODES = frozenset({"AccessDenied", "AllAccessDisabled", "AccountProblem", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"})
_DENIED_STATUS = frozenset({401, 403})


class ReadStats:
    """Process-wide counters of reads per URL, so tests and benchmarks can prove what a step fetched.

    ``requests[url]`` counts the requests made (retries included), ``bytes[url]`` the bytes returned. Only the
    ``max_urls`` most recently read URLs are kept, so a long-lived worker does not grow without bound.
    """

    def __init__(self, max_urls: int = READ_STATS_URLS) -> None:
        self._lock = threading.Lock()
        self.max_urls = max_urls
        self.requests: OrderedDict[str, int] = OrderedDict()
        self.bytes: OrderedDict[str, int] = OrderedDict()

    def add(self, url: str, requests: int, nbytes: int) -> None:
        with self._lock:
            for totals, n in ((self.requests, requests), (self.bytes, nbytes)):
                totals[url] = totals.get(url, 0) + n
                totals.move_to_end(url)
                while len(totals) > self.max_urls:
                    totals.popitem(last=False)

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.bytes.clear()


#: Counts every read made through :class:`StorageObject`.
read_stats = ReadStats()


@dataclass(frozen=True)
class ObjectInfo:
    """What the index records about an object to detect later changes."""

    size: int
    identity: str

    def to_json(self) -> dict[str, Any]:
        return {"size": self.size, "identity": self.identity}


def _identity(info: dict[str, Any], protocol: str = "") -> str:
    """A string that changes when the object's content changes: ETag/version on object stores and web
    servers (``Last-Modified`` over HTTP without an ETag; the size is compared beside it). Locally the
    mtime, the inode-change time and the inode: a file restored with its old size and mtime (``cp -p``,
    ``touch -r``) still gets a new ctime, and a file replaced by a rename a new inode."""
    if protocol == "file" and info.get("mtime") is not None:
        return f"mtime:{info['mtime']};ctime:{info.get('created')};ino:{info.get('ino')}"
    for key in ("VersionId", "version_id", "generation"):
        if info.get(key):
            return f"version:{info[key]}"
    for key in ("ETag", "etag", "md5Hash", "md5", "checksum"):
        if info.get(key):
            return f"etag:{str(info[key]).strip()}"
    for key in ("mtime", "LastModified", "last_modified", "Last-Modified", "updated", "created"):
        value = info.get(key)
        if value is not None:
            if hasattr(value, "timestamp"):
                value = value.timestamp()
            return f"mtime:{value}"
    return "unknown"


def _pread_ranges(path: str, ranges: list[tuple[int, int]]) -> list[bytes | BaseException]:
    """Local ranges with one open and a ``pread`` each: fsspec's local ``cat_ranges`` opens the file once per
    range, which made a LAS cell, read as many short runs of points, cost more to open than to decode."""
    fd = os.open(path, os.O_RDONLY)
    try:
        out: list[bytes | BaseException] = []
        for a, b in ranges:
            try:
                out.append(os.pread(fd, b - a, a))
            except OSError as exc:
                out.append(exc)
        return out
    finally:
        os.close(fd)


_UNVERIFIABLE: set[str] = set()


def _warn_unverifiable(url: str) -> None:
    """Warn once per URL and process that the store gives no identity (no ETag, version or Last-Modified)."""
    if url not in _UNVERIFIABLE:
        _UNVERIFIABLE.add(url)
        import warnings

        from dataplug.errors import UnverifiableObjectWarning

        warnings.warn(
            f"{url}: the server sends no ETag, version or Last-Modified, so a replacement of the same size cannot be detected; "
            "an index of it stays valid only while you know the object is unchanged",
            UnverifiableObjectWarning,
            stacklevel=4,
        )


class ShortBodyError(Exception):
    """A response body shorter than the bytes asked for: retried, unless the object really is smaller."""


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    """``exc`` and the exceptions it was raised from (s3fs wraps botocore's errors into OSError)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _response_error(exc: BaseException) -> tuple[str | None, int | None]:
    """The object store's error code and HTTP status behind ``exc``, if a response is behind it."""
    for e in _chain(exc):
        response = getattr(e, "response", None)
        if isinstance(response, dict):
            return response.get("Error", {}).get("Code"), response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return None, None


@functools.cache
def _transient_types() -> tuple[type[BaseException], ...]:
    """Exception types of a request or body that failed in transit (imported lazily: local use needs none)."""
    types: list[type[BaseException]] = [ConnectionError, TimeoutError, http.client.IncompleteRead, ShortBodyError]
    with contextlib.suppress(ImportError):
        import aiohttp

        types += [aiohttp.ClientPayloadError, aiohttp.ClientConnectionError]
    with contextlib.suppress(ImportError):
        from botocore import exceptions as boto

        types += [boto.HTTPClientError, boto.ConnectionError, boto.IncompleteReadError, boto.ResponseStreamingError]
    with contextlib.suppress(ImportError):
        from urllib3 import exceptions as urllib3

        types += [urllib3.ProtocolError, urllib3.IncompleteRead]
    return tuple(types)


def _is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is worth another attempt, by exception type, error code and HTTP status (never by message)."""
    if isinstance(exc, DataplugError):
        return False
    code, status = _response_error(exc)
    if code is not None or status is not None:
        return code in _TRANSIENT_CODES or status in _TRANSIENT_STATUS
    if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError)):
        return False
    if isinstance(exc, _transient_types()):
        return True
    return isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS


def _is_precondition_failed(exc: BaseException | None) -> bool:
    """True for S3's answer to a failed ``If-Match`` (HTTP 412), however s3fs wrapped it."""
    code, status = _response_error(exc) if exc is not None else (None, None)
    return code == "PreconditionFailed" or status == 412


def _is_range_past_end(exc: BaseException) -> bool:
    """True for HTTP 416: the range starts at or past the object's end."""
    code, status = _response_error(exc)
    return code == "InvalidRange" or status == 416


def _refuses_writes(exc: BaseException) -> bool:
    """A location that refuses writes (permissions, read-only, no such bucket), as opposed to a failed write."""
    code, status = _response_error(exc)
    if code is not None or status is not None:
        return code in _REFUSED_CODES or status in _REFUSED_STATUS
    if isinstance(exc, (PermissionError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError)):
        return True
    return isinstance(exc, OSError) and exc.errno in _REFUSED_ERRNOS


def _access_denied(exc: BaseException) -> str | None:
    """The reason when ``exc`` is a refusal (HTTP 401/403, S3's ``AccessDenied`` and bad-credential codes, a
    local permission error), however fsspec wrapped it, else None. fsspec's HTTP ``info`` turns a 403 into
    ``FileNotFoundError`` raised from aiohttp's ``ClientResponseError``, whose ``status`` still says 403."""
    code, status = _response_error(exc)
    if code is not None or status is not None:
        if code in _DENIED_CODES or status in _DENIED_STATUS:
            return code if code and not code.isdigit() else f"HTTP {status}"
        return None
    for e in _chain(exc):
        if getattr(e, "status", None) in _DENIED_STATUS:
            return f"HTTP {e.status}"  # type: ignore[attr-defined]
    return "permission denied" if isinstance(exc, PermissionError) else None


def _denied_advice(protocol: str) -> str:
    """How to read an object after a refusal: credentials, an endpoint, or anonymous access, as its store takes them."""
    if protocol == "file":
        return "the file system denies this user reading it"
    if protocol in _S3:
        return (
            "S3 also answers so for a missing key when the credentials may not list the bucket. Give credentials that may read it (AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or storage_options "
            "key/secret, on the command line -s key=... -s secret=...), the endpoint of a store other than AWS "
            "(AWS_ENDPOINT_URL or storage_options endpoint_url, -s endpoint_url=...), or storage_options anon=true for a public bucket"
        )
    return f"the server refuses this request; give the credentials or headers it needs in storage_options (see fsspec's {protocol} filesystem)"


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _backoff(attempt: int) -> None:
    """Sleep before attempt ``attempt + 1``: exponential, capped, with jitter."""
    time.sleep(min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0))


def stale_error(url: str, indexed: ObjectInfo, now: ObjectInfo) -> StaleIndexError:
    """The error for an object that changed after it was indexed."""
    return StaleIndexError(
        url,
        f"the object changed after it was indexed (indexed size {indexed.size}, {indexed.identity}; "
        f"now size {now.size}, {now.identity}); run preprocess(force=True)",
    )


def split_url(url: str) -> tuple[str, str]:
    """``("s3", "bucket/key")`` for a URL; plain paths are ``file``."""
    protocol, path = fsspec.core.split_protocol(url)
    return protocol or "file", path


def _filesystem_options(protocol: str, options: dict[str, Any]) -> dict[str, Any]:
    """The storage options with dataplug's defaults where the user chose nothing: botocore's retry policy and
    the read and connect timeouts on S3, aiohttp's on HTTP(S)."""
    if protocol in _S3:
        config = dict(options.get("config_kwargs") or {})
        config.setdefault("retries", dict(DEFAULT_S3_RETRIES))
        config.setdefault("read_timeout", READ_TIMEOUT)
        config.setdefault("connect_timeout", CONNECT_TIMEOUT)
        return {**options, "config_kwargs": config}
    if protocol in ("http", "https"):
        import aiohttp

        client = dict(options.get("client_kwargs") or {})
        client.setdefault("timeout", aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT, sock_read=READ_TIMEOUT))
        return {**options, "client_kwargs": client}
    return options


#: Storage option names whose values are secrets: :func:`redact` hides them in every ``repr``.
_SECRET_WORDS = ("secret", "token", "password", "passwd", "credential", "key", "auth", "signature", "sas")


def redact(options: Any) -> Any:
    """``options`` with the values of secret-looking keys (``key``, ``secret``, ``token``, ``password``,
    ``aws_secret_access_key``, ...) replaced by ``'***'``, nested dictionaries included."""
    if isinstance(options, dict):
        return {k: "***" if isinstance(k, str) and any(w in k.lower() for w in _SECRET_WORDS) and v else redact(v) for k, v in options.items()}
    if isinstance(options, (list, tuple)):
        return type(options)(redact(v) for v in options)
    return options


def redact_url(url: str) -> str:
    """``url`` with the values of secret-looking query parameters (a pre-signed URL's ``X-Amz-Signature``,
    ``X-Amz-Security-Token``, a SAS ``sig``) replaced by ``'***'``."""
    base, sep, query = url.partition("?")
    if not sep:
        return url
    parts = []
    for item in query.split("&"):
        name, eq, value = item.partition("=")
        secret = any(w in name.lower() for w in (*_SECRET_WORDS, "sig", "credential"))
        parts.append(f"{name}={'***' if secret and value else value}" if eq else item)
    return f"{base}?{'&'.join(parts)}"


class RangeIgnoredError(StorageError):
    """The server answered a ranged GET with more bytes than the range: it ignores ``Range`` requests."""


class _HTTPStatusError(ConnectionError):
    """A transient HTTP status (429, 5xx) on a ranged GET: retried like a dropped connection."""


@dataclass
class StorageObject:
    """An object (or any path) behind an fsspec URL plus the options of its filesystem.

    ``storage_options`` are passed to fsspec as given (for S3: ``endpoint_url``, ``key``, ``secret``,
    ``client_kwargs``, ``config_kwargs`` such as ``{"read_timeout": 15}`` ...), plus botocore's standard retry
    mode on S3 unless ``config_kwargs["retries"]`` is given. Leave them empty to let each worker resolve
    credentials from its environment.
    """

    url: str
    storage_options: dict[str, Any] = field(default_factory=dict)
    _fs: Any = field(default=None, init=False, repr=False, compare=False)
    _path: str | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if "://" not in self.url and not self.url.startswith("/"):
            self.url = os.path.abspath(self.url)

    def __repr__(self) -> str:
        return f"StorageObject(url={redact_url(self.url)!r}, storage_options={redact(self.storage_options)!r})"

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
            self._fs, self._path = fsspec.core.url_to_fs(self.url, **_filesystem_options(self.protocol, self.storage_options))
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

    @property
    def policy(self) -> StorePolicy:
        """What this object's store supports (writes, listing, deletes, pinning) and how its ranges are read."""
        return policy_for(self.protocol)

    def child(self, name: str) -> StorageObject:
        """The object ``name`` inside this URL taken as a folder (same storage options)."""
        return StorageObject(self.url.rstrip("/") + "/" + name, self.storage_options)

    # -- metadata ---------------------------------------------------------------------------------------

    def info(self, refresh: bool = True) -> ObjectInfo:
        """Size and identity, fresh from the store. Raises :class:`ObjectNotFoundError`."""
        if refresh:
            self.fs.invalidate_cache(self.path)
        raw = self._call(self.fs.info, self.path, what="metadata request")
        if raw.get("type") == "directory":
            raise ObjectNotFoundError(self.url, "is a directory, not an object")
        identity = _identity(raw, self.protocol)
        if identity == "unknown":
            _warn_unverifiable(self.url)
        return ObjectInfo(size=int(raw["size"]), identity=identity)

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

        With ``expect``, raises :class:`StaleIndexError` if the object is no longer the one described. On S3
        the check rides on the reads themselves (``If-Match`` on the ETag, or ``VersionId`` on a versioned
        bucket), so it costs no request; elsewhere it is one metadata call. Failed ranges are retried whole.
        """
        ranges = [(int(a), int(b)) for a, b in ranges]
        if not ranges:
            return []
        pins = self._pins(expect)
        if expect is not None and pins is None:
            self.check_unchanged(expect)
        out = [b""] * len(ranges)
        todo = [i for i, (a, b) in enumerate(ranges) if b > a]
        requests = self._read_retrying(ranges, todo, out, pins or {}, expect) if todo else 0
        read_stats.add(self.url, requests, sum(len(data) for data in out))
        return out

    def check_unchanged(self, expect: ObjectInfo) -> None:
        """Raise :class:`StaleIndexError` unless the object still has the indexed size and identity."""
        now = self.info()
        if now != expect:
            raise stale_error(self.url, expect, now)

    def _pins(self, expect: ObjectInfo | None) -> dict[str, str] | None:
        """``get_object`` arguments that make a read fail unless it returns the indexed bytes (None: cannot pin)."""
        if expect is None:
            return {}
        if self.protocol in _S3:
            kind, _, value = expect.identity.partition(":")
            if kind == "etag":
                return {"IfMatch": value}
            if kind == "version":
                return {"VersionId": value}
        return None

    def _read_retrying(
        self, ranges: list[tuple[int, int]], todo: list[int], out: list[bytes], pins: dict[str, str], expect: ObjectInfo | None
    ) -> int:
        """Fill ``out[i]`` for every ``i`` in ``todo``; re-issue only the ranges that failed. Returns the request count."""
        requests, started = 0, time.monotonic()
        for attempt in range(1, RETRIES + 1):
            results = self._fetch_ranges([ranges[i] for i in todo], pins)
            requests += len(todo)
            failed: dict[int, BaseException] = {}
            for i, result in zip(todo, results):
                a, b = ranges[i]
                if isinstance(result, BaseException):
                    if _is_range_past_end(result):
                        failed[i] = ShortBodyError(f"the store refused bytes [{a}, {b}) as past the object's end")
                    elif _is_transient(result):
                        failed[i] = result
                    else:
                        raise self._translate(result, pins) from result
                elif len(result) != b - a:
                    failed[i] = ShortBodyError(f"got {len(result)} of the {b - a} bytes [{a}, {b})")
                else:
                    out[i] = result
            shorts = [ranges[i] for i, exc in failed.items() if isinstance(exc, ShortBodyError)]
            if shorts:
                self._check_size(max(b for _, b in shorts), expect)
            if not failed:
                return requests
            todo = sorted(failed)
            took = time.monotonic() - started
            if attempt == RETRIES or took > RETRY_DEADLINE:
                a, b = ranges[todo[0]]
                error = failed[todo[0]]
                others = f" ({len(todo)} of {len(ranges)} ranges failed)" if len(todo) > 1 else ""
                raise StorageError(self.url, f"reading bytes [{a}, {b}) failed after {attempt} attempts in {took:.0f} s{others}: {_describe(error)}") from error
            _backoff(attempt)
        raise AssertionError("unreachable")

    def _check_size(self, end: int, expect: ObjectInfo | None) -> None:
        """After a short read: :class:`StaleIndexError` if a fresh look shows the object changed or ends before ``end``."""
        if expect is not None:
            self.check_unchanged(expect)
        size = self.info().size if expect is None else expect.size
        if size < end:
            raise StaleIndexError(self.url, f"short read: the object has {size} bytes, fewer than the {end} indexed; run preprocess(force=True)")

    def _fetch_ranges(self, ranges: list[tuple[int, int]], pins: dict[str, str]) -> list[bytes | BaseException]:
        """One attempt at every range: each result is its bytes or the exception that range failed with."""
        try:
            if self.protocol in _S3:
                from fsspec.asyn import sync

                return sync(self.fs.loop, self._get_s3_ranges, ranges, pins)
            if self.protocol == "file":
                return _pread_ranges(self.path, ranges)
            if self.protocol in ("http", "https"):
                from fsspec.asyn import sync

                return sync(self.fs.loop, self._get_http_ranges, ranges)
            paths = [self.path] * len(ranges)
            return self.fs.cat_ranges(paths, [a for a, _ in ranges], [b for _, b in ranges], on_error="return")
        except Exception as exc:  # noqa: BLE001 - the whole attempt failed: every range gets the error
            return [exc] * len(ranges)

    async def _get_s3_ranges(self, ranges: list[tuple[int, int]], pins: dict[str, str]) -> list[bytes | BaseException]:
        """One ``GetObject`` per range through s3fs (with ``If-Match``/``VersionId`` when pinned), body read in full."""
        gate = asyncio.Semaphore(MAX_CONCURRENT_RANGES)

        async def one(start: int, end: int) -> bytes:
            async with gate:
                return await self._get_s3(end - start, Range=f"bytes={start}-{end - 1}", **pins)

        return await asyncio.gather(*(one(a, b) for a, b in ranges), return_exceptions=True)

    async def _get_s3(self, limit: int | None = None, **kwargs: str) -> bytes:
        """One ``GetObject``; with ``limit``, a body longer than that is refused after reading at most one byte
        past the limit (a server that ignored ``Range``)."""
        fs = self.fs
        bucket, key, version = fs.split_path(self.path)
        if version and "VersionId" not in kwargs:
            kwargs["VersionId"] = version
        resp = await fs._call_s3("get_object", Bucket=bucket, Key=key, **kwargs)
        body = resp["Body"]
        try:
            if limit is None:
                # aiobotocore checks the body against Content-Length (IncompleteReadError when it falls short).
                return await body.read()
            if int(resp.get("ContentLength") or 0) > limit:
                raise self._range_ignored(limit, int(resp["ContentLength"]))
            data = bytearray()
            while len(data) <= limit:  # read(amt) returns what one chunk holds: read on, to one byte past the limit
                chunk = await body.read(limit + 1 - len(data))
                if not chunk:
                    break
                data += chunk
            if len(data) > limit:
                raise self._range_ignored(limit, len(data))
            return bytes(data)
        finally:
            body.close()

    async def _get_http_ranges(self, ranges: list[tuple[int, int]]) -> list[bytes | BaseException]:
        """One GET per range over HTTP(S), each body read as a stream and cut off past its range: fsspec's
        ``cat_ranges`` buffers whatever the server sends, so a server that ignores ``Range`` made every
        attempt download (and hold) the whole object."""
        gate = asyncio.Semaphore(MAX_CONCURRENT_RANGES)

        async def one(start: int, end: int) -> bytes:
            async with gate:
                return await self._get_http(start, end)

        return await asyncio.gather(*(one(a, b) for a, b in ranges), return_exceptions=True)

    async def _get_http(self, start: int, end: int) -> bytes:
        fs = self.fs
        session = await fs.set_session()
        kw = dict(fs.kwargs)
        headers = {**(kw.pop("headers", None) or {}), "Range": f"bytes={start}-{end - 1}"}
        wanted = end - start
        async with session.get(fs.encode_url(self.path), headers=headers, **kw) as r:
            if r.status in (404, 410):
                raise FileNotFoundError(errno.ENOENT, f"HTTP {r.status}", self.url)
            if r.status in _TRANSIENT_STATUS:
                raise _HTTPStatusError(f"HTTP {r.status} {r.reason}")
            r.raise_for_status()
            if r.status != 206 and start > 0:
                raise RangeIgnoredError(
                    self.url, f"the server ignored the Range request for bytes [{start}, {end}) (HTTP {r.status}, the whole object): dataplug reads slices only from servers that honour Range"
                )
            length = r.content_length
            if r.status == 206 and length is not None and length > wanted:
                raise self._range_ignored(wanted, length)
            data = bytearray()
            while len(data) < wanted:  # a 200 for a range from 0 is the object's start: read what was asked, then hang up
                chunk = await r.content.read(wanted - len(data))
                if not chunk:
                    break
                data += chunk
            if r.status == 206 and await r.content.read(1):
                raise self._range_ignored(wanted, wanted + 1)
            return bytes(data)

    def _range_ignored(self, asked: int, sent: int) -> RangeIgnoredError:
        return RangeIgnoredError(self.url, f"the server ignored the Range request: it sends {sent} bytes where {asked} were asked")

    def read_prefix(self, limit: int) -> bytes:
        """The object's first ``limit`` bytes and at most one more, in one request, with no metadata request
        before it: a small file (a manifest) read whole and consistent, its size checked by the caller
        (``len(result) > limit``: it is larger)."""
        if self.protocol == "file":
            def read() -> bytes:
                with open(self.path, "rb") as fh:
                    return fh.read(limit + 1)

            data = self._call(read, what="reading the file")
        elif self.protocol in _S3:
            from fsspec.asyn import sync

            data = self._call(sync, self.fs.loop, self._get_s3_prefix, limit, what="reading the object")
        elif self.protocol in ("http", "https"):
            from fsspec.asyn import sync

            data = self._call(sync, self.fs.loop, self._get_http_prefix, limit, what="reading the object")
        else:
            data = self._call(self.fs.cat_file, self.path, 0, limit + 1, what="reading the object")
        read_stats.add(self.url, 1, len(data))
        return data[: limit + 1]

    async def _get_http_prefix(self, limit: int) -> bytes:
        try:
            return await self._get_http(0, limit + 1)
        except Exception as exc:  # noqa: BLE001 - only "nothing at byte 0" is an answer here
            if getattr(exc, "status", None) == 416:
                return b""
            raise

    async def _get_s3_prefix(self, limit: int) -> bytes:
        try:
            return await self._get_s3(limit + 1, Range=f"bytes=0-{limit}")
        except OSError as exc:
            if _is_range_past_end(exc):  # an empty object has no byte 0
                return b""
            raise

    def read_all(self) -> bytes:
        """The whole object (used for small sidecar files, never for data objects), retried like ranges."""
        if self.protocol in _S3:
            from fsspec.asyn import sync

            data = self._call(sync, self.fs.loop, self._get_s3, what="reading the whole object")
        else:
            data = self._call(self.fs.cat_file, self.path, what="reading the whole object")
        read_stats.add(self.url, 1, len(data))
        return data

    def stream(self, expect: ObjectInfo, block_size: int = 32 * 2**20, ahead: int = 2) -> SequentialReader:
        """A read-only file object over the whole object for one front-to-back pass.

        It fetches ``block_size`` ranges ``ahead`` blocks in advance on a background thread, so download
        and decoding overlap; every range carries the staleness check of :meth:`read_ranges`.
        """
        return SequentialReader(self, expect, block_size, ahead)

    # -- writes (sidecar locations only; data objects are never written) --------------------------------

    def write_bytes(self, data: bytes) -> None:
        """Write the whole object.

        Transient failures are retried, then raised as :class:`StorageError`; a location that refuses writes
        (permissions, read-only, no such bucket) is :class:`IndexLocationNotWritableError`.
        """
        self._refusable(self._write_local if self.protocol == "file" else self._write_remote, data, what="write")

    def _write_local(self, data: bytes) -> None:
        """Write beside the target and rename, so readers never see a partial file; never leave the temporary behind."""
        self.fs.makedirs(self.fs._parent(self.path), exist_ok=True)
        # A random name, created exclusively and never through a link: a file or link planted at a guessable
        # name can neither be overwritten nor redirect the write.
        tmp = f"{self.path}.tmp-{uuid.uuid4().hex}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def _write_remote(self, data: bytes) -> None:
        self.fs.pipe_file(self.path, data)

    def delete(self) -> None:
        """Delete the object (one file, never a folder); a missing one is not an error."""
        self._refusable(self._remove, what="delete")

    def _remove(self) -> None:
        try:
            self.fs.rm(self.path)
        except FileNotFoundError as exc:
            if _response_error(exc)[0] == "NoSuchBucket":
                raise

    def check_writable(self) -> None:
        """Write and delete a small probe file inside this URL taken as a folder.

        A cheap check before an indexing pass, so an index location that refuses writes fails at once
        rather than after the whole pass. Raises :class:`IndexLocationNotWritableError` naming this URL
        (:class:`StorageError` if the store keeps failing). A location that takes writes but refuses deletes
        passes: it can hold an index and only keeps superseded files.
        """
        probe = self.child(f"{PROBE_PREFIX}{uuid.uuid4().hex}")
        try:
            probe.write_bytes(b"")
        except IndexLocationNotWritableError as exc:
            raise IndexLocationNotWritableError(self.url, exc.cause) from exc
        with contextlib.suppress(IndexLocationNotWritableError):
            probe.delete()

    def list_names(self) -> list[str]:
        """Names directly inside this URL taken as a folder ([] when it does not exist)."""
        self.fs.invalidate_cache(self.path)
        try:
            paths = self._call(self.fs.ls, self.path, detail=False, what="listing")
        except ObjectNotFoundError:
            return []
        return [p.rstrip("/").rsplit("/", 1)[-1] for p in paths]

    # -- errors and retries ------------------------------------------------------------------------------

    def _translate(self, exc: BaseException, pins: dict[str, str] | None = None) -> DataplugError:
        if isinstance(exc, DataplugError):
            return exc
        if _is_precondition_failed(exc):
            return StaleIndexError(self.url, "the object changed after it was indexed (ETag no longer matches); run preprocess(force=True)")
        code, _ = _response_error(exc)
        if code == "NoSuchVersion" or (pins and "VersionId" in pins and code == "InvalidArgument"):
            return StaleIndexError(self.url, "the indexed version of the object no longer exists; run preprocess(force=True)")
        why = _access_denied(exc)
        if why is not None:
            return AccessDeniedError(self.url, f"access denied ({why}): {_denied_advice(self.protocol)}")
        if isinstance(exc, (FileNotFoundError, NotADirectoryError)):
            return ObjectNotFoundError(self.url, "object not found")
        return StorageError(self.url, _describe(exc))

    def _retry(self, fn: Callable[..., Any], *args: Any, what: str, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)``, retried on transient errors; raises :class:`StorageError` after the last attempt
        and a non-transient error as it is."""
        started = time.monotonic()
        for attempt in range(1, RETRIES + 1):
            try:
                return fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - classified below
                if not _is_transient(exc):
                    raise
                took = time.monotonic() - started
                if attempt == RETRIES or took > RETRY_DEADLINE:
                    raise StorageError(self.url, f"{what} failed after {attempt} attempts in {took:.0f} s: {_describe(exc)}") from exc
                _backoff(attempt)
        raise AssertionError("unreachable")

    def _call(self, fn: Callable[..., Any], *args: Any, what: str = "storage request", **kwargs: Any) -> Any:
        """:meth:`_retry`, with a non-transient error translated into dataplug's errors."""
        try:
            return self._retry(fn, *args, what=what, **kwargs)
        except DataplugError:
            raise
        except Exception as exc:  # noqa: BLE001 - translated
            raise self._translate(exc) from exc

    def _refusable(self, fn: Callable[..., Any], *args: Any, what: str, **kwargs: Any) -> Any:
        """:meth:`_retry` for writes and deletes: a refusal is :class:`IndexLocationNotWritableError`."""
        try:
            return self._retry(fn, *args, what=what, **kwargs)
        except DataplugError:
            raise
        except Exception as exc:  # noqa: BLE001 - classified
            if _refuses_writes(exc):
                raise IndexLocationNotWritableError(self.url, f"cannot {what}: {_describe(exc)}") from exc
            raise StorageError(self.url, f"cannot {what}: {_describe(exc)}") from exc


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
