"""The storage object: one object behind an fsspec URL, read by byte ranges.

Nothing else in dataplug opens files or clients. A :class:`StorageObject` is a small, picklable value
(URL + storage options); the fsspec filesystem behind it is created lazily in each process and never
pickled, so slices can travel to any worker and resolve credentials there. Its store's policy and transport
live in :mod:`dataplug.storage.stores`, the request planning in :mod:`dataplug.storage.ranges`, the retries
and error classification in :mod:`dataplug.storage.retry`.
"""

from __future__ import annotations

import contextlib
import os
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import fsspec

from dataplug.errors import AccessDeniedError, DataplugError, IndexLocationNotWritableError, ObjectNotFoundError, StaleIndexError, StorageError
from dataplug.storage.ranges import STREAM_AHEAD, STREAM_BLOCK, STREAM_CONNECTIONS, STREAM_FIRST_RANGE, SequentialReader, plan
from dataplug.storage.retry import (
    access_denied,
    denied_advice,
    describe,
    is_precondition_failed,
    read_retrying,
    refuses_writes,
    response_error,
    retry,
    stale_error,
)
from dataplug.storage.stores import StorePolicy, Transport, filesystem_options, identity, policy_for, transport_for

#: :data:`read_stats` keeps totals for at most this many URLs (the most recently read).
READ_STATS_URLS = 1024


class ReadStats:
    """Process-wide counters of reads per URL, so tests and benchmarks can prove what a step fetched.

    ``requests[url]`` counts the requests made (after :func:`~dataplug.storage.ranges.plan` joined near ranges;
    retries included), ``bytes[url]`` the bytes those requests returned (gaps between joined ranges included). Only the
    ``max_urls`` most recently read URLs are kept, so a long-lived worker does not grow without bound.
    """

    def __init__(self, max_urls: int = READ_STATS_URLS) -> None:
        self._lock = threading.Lock()
        self.max_urls = max_urls
        # Plain dicts in the order of the last read: a total is popped and put back on every read (a long-lived
        # reader adds one per ``pread``, so this stays about a microsecond).
        self.requests: dict[str, int] = {}
        self.bytes: dict[str, int] = {}

    def add(self, url: str, requests: int, nbytes: int) -> None:
        with self._lock:
            req, byt = self.requests, self.bytes
            req[url] = req.pop(url, 0) + requests
            byt[url] = byt.pop(url, 0) + nbytes
            if len(req) > self.max_urls:
                for totals in (req, byt):
                    while len(totals) > self.max_urls:
                        del totals[next(iter(totals))]

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


def split_url(url: str) -> tuple[str, str]:
    """``("s3", "bucket/key")`` for a URL; plain paths are ``file``."""
    protocol, path = fsspec.core.split_protocol(url)
    return protocol or "file", path


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
    _transport: Transport | None = field(default=None, init=False, repr=False, compare=False)
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
        self._transport = None

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        if self._fs is None:
            self._fs, self._path = fsspec.core.url_to_fs(self.url, **filesystem_options(self.protocol, self.storage_options))
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

    @property
    def transport(self) -> Transport:
        """How this object's store is read (:mod:`dataplug.storage.stores`), made once per process."""
        if self._transport is None:
            self._transport = transport_for(self)
        return self._transport

    def info(self, refresh: bool = True) -> ObjectInfo:
        """Size and identity, fresh from the store. Raises :class:`ObjectNotFoundError`."""
        if refresh:
            self.fs.invalidate_cache(self.path)
        raw = self._call(self.fs.info, self.path, what="metadata request")
        if raw.get("type") == "directory":
            raise ObjectNotFoundError(self.url, "is a directory, not an object")
        ident = identity(raw, self.protocol)
        if ident == "unknown":
            _warn_unverifiable(self.url)
        return ObjectInfo(size=int(raw["size"]), identity=ident)

    def exists(self) -> bool:
        try:
            self.info()
        except ObjectNotFoundError:
            return False
        return True

    # -- reads -------------------------------------------------------------------------------------------

    def read_range(self, start: int, end: int, expect: ObjectInfo | None = None, *, checked: bool = False) -> bytes:
        """Bytes ``[start, end)`` of the object (see :meth:`read_ranges`)."""
        return self.read_ranges([(start, end)], expect=expect, checked=checked)[0]

    def read_ranges(
        self,
        ranges: Sequence[tuple[int, int]],
        expect: ObjectInfo | None = None,
        *,
        max_gap: int | None = None,
        max_block: int | None = None,
        checked: bool = False,
    ) -> list[bytes]:
        """The bytes of each range ``[a, b)``, in the caller's order (any order, overlaps allowed).

        The requests are planned once (:func:`~dataplug.storage.ranges.plan`): ranges at most ``max_gap`` bytes
        apart are read in one request of at most ``max_block`` bytes (a single larger range is one request);
        ``None`` takes the store's :attr:`policy`. The requests run concurrently where the store is remote, and
        failed requests are retried whole.

        With ``expect``, raises :class:`StaleIndexError` if the object is no longer the one described. Where
        the store pins (:attr:`StorePolicy.supports_pinning <dataplug.storage.stores.StorePolicy>`: S3
        ``If-Match``/``VersionId``, HTTP ``If-Match``, a local file's ``fstat``) the check rides on the reads
        and costs no request. Elsewhere it is one metadata request, made unless ``checked`` says the caller
        already checked ``expect`` in this operation (a later read of the same slice, after an :meth:`info`
        it compared with ``expect``).
        """
        policy = self.policy
        jobs = plan(ranges, policy.max_gap if max_gap is None else max_gap, policy.max_block if max_block is None else max_block)
        if not jobs.requests:
            return jobs.cut([])
        transport = self.transport
        pinned = expect is not None and transport.pins(expect)
        if expect is not None and not pinned and not checked:
            self.check_unchanged(expect)
        bodies, requests = read_retrying(
            self.url,
            lambda todo: transport.fetch(todo, expect if pinned else None),
            jobs.requests,
            check_size=lambda end: self._check_size(end, expect),
            translate=lambda exc: self._translate(exc, versioned=pinned and expect is not None and expect.identity.startswith("version:")),
        )
        read_stats.add(self.url, requests, sum(len(body) for body in bodies))
        return jobs.cut(bodies)

    def check_unchanged(self, expect: ObjectInfo) -> None:
        """Raise :class:`StaleIndexError` unless the object still has the indexed size and identity."""
        now = self.info()
        if now != expect:
            raise stale_error(self.url, expect, now)

    def _check_size(self, end: int, expect: ObjectInfo | None) -> None:
        """After a short read: :class:`StaleIndexError` if a fresh look shows the object changed or ends before ``end``."""
        if expect is not None:
            self.check_unchanged(expect)
        size = self.info().size if expect is None else expect.size
        if size < end:
            raise StaleIndexError(self.url, f"short read: the object has {size} bytes, fewer than the {end} indexed; run preprocess(force=True)")

    def read_prefix(self, limit: int) -> bytes:
        """The object's first ``limit`` bytes and at most one more, in one request, with no metadata request
        before it: a small file (a manifest) read whole and consistent, its size checked by the caller
        (``len(result) > limit``: it is larger)."""
        data = self._call(self.transport.read_prefix, limit, what="reading the object")
        read_stats.add(self.url, 1, len(data))
        return data[: limit + 1]

    def read_all(self) -> bytes:
        """The whole object (used for small sidecar files, never for data objects), retried like ranges."""
        data = self._call(self.transport.read_all, what="reading the whole object")
        read_stats.add(self.url, 1, len(data))
        return data

    def stream(
        self,
        expect: ObjectInfo,
        block_size: int = STREAM_BLOCK,
        ahead: int = STREAM_AHEAD,
        first_range: int = STREAM_FIRST_RANGE,
        connections: int = STREAM_CONNECTIONS,
    ) -> SequentialReader:
        """A read-only file object over the whole object for one front-to-back pass (:class:`SequentialReader`).

        Ranges from ``first_range`` doubling to ``block_size`` are fetched ``ahead`` in advance on
        ``connections`` threads, so download and decoding overlap; they are checked against ``expect`` as
        :meth:`read_ranges` checks them.
        """
        return SequentialReader(self, expect, block_size, ahead, first_range, connections)

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
            if response_error(exc)[0] == "NoSuchBucket":
                raise

    def list_names(self) -> list[str]:
        """Names directly inside this URL taken as a folder ([] when it does not exist)."""
        self.fs.invalidate_cache(self.path)
        try:
            paths = self._call(self.fs.ls, self.path, detail=False, what="listing")
        except ObjectNotFoundError:
            return []
        return [p.rstrip("/").rsplit("/", 1)[-1] for p in paths]

    # -- errors and retries ------------------------------------------------------------------------------

    def _translate(self, exc: BaseException, versioned: bool = False) -> DataplugError:
        if isinstance(exc, DataplugError):
            return exc
        if is_precondition_failed(exc):
            return StaleIndexError(self.url, "the object changed after it was indexed (ETag no longer matches); run preprocess(force=True)")
        code, _ = response_error(exc)
        if code == "NoSuchVersion" or (versioned and code == "InvalidArgument"):
            return StaleIndexError(self.url, "the indexed version of the object no longer exists; run preprocess(force=True)")
        why = access_denied(exc)
        if why is not None:
            return AccessDeniedError(self.url, f"access denied ({why}): {denied_advice(self.protocol)}")
        if isinstance(exc, (FileNotFoundError, NotADirectoryError)):
            return ObjectNotFoundError(self.url, "object not found")
        return StorageError(self.url, describe(exc))

    def _call(self, fn: Callable[..., Any], *args: Any, what: str = "storage request", **kwargs: Any) -> Any:
        """:func:`~dataplug.storage.retry.retry`, with a non-transient error translated into dataplug's errors."""
        try:
            return retry(fn, *args, url=self.url, what=what, **kwargs)
        except DataplugError:
            raise
        except Exception as exc:  # noqa: BLE001 - translated
            raise self._translate(exc) from exc

    def _refusable(self, fn: Callable[..., Any], *args: Any, what: str, **kwargs: Any) -> Any:
        """:func:`~dataplug.storage.retry.retry` for writes and deletes: a refusal is :class:`IndexLocationNotWritableError`."""
        try:
            return retry(fn, *args, url=self.url, what=what, **kwargs)
        except DataplugError:
            raise
        except Exception as exc:  # noqa: BLE001 - classified
            if refuses_writes(exc):
                raise IndexLocationNotWritableError(self.url, f"cannot {what}: {describe(exc)}") from exc
            raise StorageError(self.url, f"cannot {what}: {describe(exc)}") from exc
