"""What each store supports and how it is read: one :class:`StorePolicy` per protocol, and the transports.

The policy is the one place that knows a store's costs and abilities: how far apart two ranges may be and
still be read in one request (``max_gap``), how large one request may grow (``max_block``), how many requests
run at once (``concurrency``), and, like zarr's ``Store.supports_*``, whether the store takes writes, lists,
deletes and pins reads to one version of an object. Formats never choose gap sizes: they list the ranges they
need and :meth:`dataplug.storage.StorageObject.read_ranges` plans the requests with the store's policy.
"""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from dataplug.errors import StaleIndexError, StorageError
from dataplug.storage.retry import TRANSIENT_STATUS, is_range_past_end, stale_error

if TYPE_CHECKING:
    from dataplug.storage.object import ObjectInfo, StorageObject

KiB = 2**10
MiB = 2**20


@dataclass(frozen=True)
class StorePolicy:
    """How one kind of store is read, and what it supports."""

    #: Two asked ranges at most this many bytes apart are read in one request (the bytes between are fetched
    #: and dropped): worth it while the gap costs less to transfer than a request costs to start.
    max_gap: int
    #: A request carries at most this many bytes besides its largest asked range: small ranges join into
    #: requests of about this size, read in parallel; one asked range larger than this is one request, never
    #: split, that takes in its small neighbours (see :func:`dataplug.storage.ranges.plan`).
    max_block: int
    #: Requests of one read in flight at once.
    concurrency: int
    #: Objects can be written (an index can be built beside the data). False: the location is read-only, such as
    #: an index published over HTTP.
    supports_writes: bool
    #: The children of a folder can be listed.
    supports_listing: bool
    #: Objects can be deleted.
    supports_deletes: bool
    #: A read can be bound to the indexed version of the object, so a replaced object fails the read itself
    #: (S3 ``If-Match``/``VersionId``, HTTP ``If-Match``; locally the identity of the opened file) and needs no
    #: metadata request before it. A store without it checks the object's identity once per operation.
    supports_pinning: bool


#: Local files: a request is a ``pread`` on one open descriptor, a few microseconds, so only near ranges join.
#: Fetching the 16 cells of a 4 M-point scan-ordered LAS tile (419 ranges a cell) took 32-43 ms at gaps of
#: 0-4 KiB (within the noise of a loaded machine; 4 KiB makes 314 requests a cell and fetches 3.5 % more bytes)
#: and 57 ms at 16 KiB (``python benchmarks/lidar.py --points 4000000 --orders scan --formats las --factors
#: --cells 16 --gaps 0,512,1024,4096,16384 --repeat 7``). 4 KiB keeps the time and fewer requests, which
#: matters when the "local" file system is a network one.
LOCAL = StorePolicy(
    max_gap=4 * KiB,
    max_block=64 * MiB,
    concurrency=1,
    supports_writes=True,
    supports_listing=True,
    supports_deletes=True,
    supports_pinning=True,
)
#: Object stores and web servers: a request waits about 30 ms for its first byte and then streams about
#: 90 MB/s per connection (AWS's S3 performance guidelines), so skipping up to ~2.7 MB costs less than another
#: request; 1 MiB leaves room for slower links. On the latency-true bed (those figures), fetching the 16 cells
#: of a 4 M-point scan-ordered LAS tile took 26.5 s at a gap of 0 (419 requests a cell), 20.3 s at 4 KiB, 8.9 s
#: at 16 KiB and 1.87-1.90 s at 64 KiB to 4 MiB (2 requests a cell), with 16 MiB blocks; at a 1 MiB gap, blocks
#: of 1, 4, 16 and 64 MiB took 1.56, 1.52, 1.85 and 1.84 s: requests of a few MiB stream in parallel where one
#: connection carries 90 MB/s (``python benchmarks/lidar.py --points 4000000 --orders scan --formats las
#: --factors --cells 16 --gaps 0,1024,4096,16384,65536,262144,1048576,4194304 --s3``, then ``--gaps 1048576
#: --s3 --blocks 1048576,4194304,16777216,67108864``).
REMOTE_GAP = 1 * MiB
REMOTE_BLOCK = 4 * MiB
#: Concurrent requests of one read on a remote store.
REMOTE_CONCURRENCY = 32

S3 = StorePolicy(
    max_gap=REMOTE_GAP,
    max_block=REMOTE_BLOCK,
    concurrency=REMOTE_CONCURRENCY,
    supports_writes=True,
    supports_listing=True,
    supports_deletes=True,
    supports_pinning=True,
)
#: GCS: generation pinning is not implemented (gcsfs is not among the tested dependencies), so reads check the
#: object's identity once per operation.
GCS = replace(S3, supports_pinning=False)
#: HTTP(S): read-only (a published index is read over it), pinned with ``If-Match`` when the server sends a strong ETag.
HTTP = replace(S3, supports_writes=False, supports_listing=False, supports_deletes=False)
#: fsspec's in-memory filesystem: every range is a slice of a bytes object.
MEMORY = replace(LOCAL, supports_pinning=False)
#: Any other fsspec protocol: taken as remote, with the capabilities fsspec's interface offers.
DEFAULT = replace(S3, supports_pinning=False)

#: The policy of each protocol (:func:`policy_for` falls back to :data:`DEFAULT`).
POLICIES: dict[str, StorePolicy] = {
    "file": LOCAL,
    "local": LOCAL,
    "s3": S3,
    "s3a": S3,
    "gs": GCS,
    "gcs": GCS,
    "http": HTTP,
    "https": HTTP,
    "memory": MEMORY,
}


def policy_for(protocol: str) -> StorePolicy:
    """The policy of a protocol (``"s3"``, ``"file"``...), :data:`DEFAULT` for one without its own."""
    return POLICIES.get(protocol, DEFAULT)


# -- transports -----------------------------------------------------------------------------------------

#: Seconds a response may go without a byte before the request counts as stalled and is retried, on every
#: store (botocore's ``read_timeout``, aiohttp's ``sock_read``), unless the storage options set another.
READ_TIMEOUT = 20.0
CONNECT_TIMEOUT = 10.0
#: botocore's retry policy for S3 requests when the storage options set none.
DEFAULT_S3_RETRIES = {"mode": "standard", "max_attempts": 3}

S3_PROTOCOLS = ("s3", "s3a")
HTTP_PROTOCOLS = ("http", "https")
#: Protocols of files on this machine's file system (read with a file descriptor, identity from ``stat``).
FILE_PROTOCOLS = ("file", "local")


def filesystem_options(protocol: str, options: dict[str, Any]) -> dict[str, Any]:
    """The storage options with dataplug's defaults where the user chose nothing: botocore's retry policy and
    the read and connect timeouts on S3, aiohttp's on HTTP(S)."""
    if protocol in S3_PROTOCOLS:
        config = dict(options.get("config_kwargs") or {})
        config.setdefault("retries", dict(DEFAULT_S3_RETRIES))
        config.setdefault("read_timeout", READ_TIMEOUT)
        config.setdefault("connect_timeout", CONNECT_TIMEOUT)
        return {**options, "config_kwargs": config}
    if protocol in HTTP_PROTOCOLS:
        import aiohttp

        client = dict(options.get("client_kwargs") or {})
        client.setdefault("timeout", aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT, sock_read=READ_TIMEOUT))
        return {**options, "client_kwargs": client}
    return options


def identity(info: dict[str, Any], protocol: str = "") -> str:
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


def _local_identity(st: os.stat_result) -> str:
    """:func:`identity` of a local file from its ``stat``, as fsspec's ``info`` states it (birth time where the
    platform keeps one, else the inode-change time)."""
    return identity({"mtime": st.st_mtime, "created": getattr(st, "st_birthtime", st.st_ctime), "ino": st.st_ino}, "file")


class RangeIgnoredError(StorageError):
    """The server answered a ranged GET with more bytes than the range: it ignores ``Range`` requests."""


class _HTTPStatusError(ConnectionError):
    """A transient HTTP status (429, 5xx) on a ranged GET: retried like a dropped connection."""


class Transport:
    """How one store reads an object: one attempt at a list of ranges (no retries: the caller retries what
    failed), the object's first bytes, the whole object. The fsspec interface, for any protocol."""

    def __init__(self, obj: StorageObject) -> None:
        self.obj = obj

    def pins(self, expect: ObjectInfo) -> bool:
        """Whether reads of this store fail by themselves when the object is no longer ``expect``."""
        return False

    def fetch(self, ranges: list[tuple[int, int]], expect: ObjectInfo | None) -> list[bytes | BaseException]:
        """One attempt at every range, pinned to ``expect`` when given (only when :meth:`pins`): each result is
        its bytes or the exception that range failed with."""
        try:
            fs, path = self.obj.fs, self.obj.path
            return fs.cat_ranges([path] * len(ranges), [a for a, _ in ranges], [b for _, b in ranges], on_error="return")
        except Exception as exc:  # noqa: BLE001 - the whole attempt failed: every range gets the error
            return [exc] * len(ranges)

    def read_prefix(self, limit: int) -> bytes:
        """At least the object's first ``limit + 1`` bytes when it has them, in one request."""
        return self.obj.fs.cat_file(self.obj.path, 0, limit + 1)

    def read_all(self) -> bytes:
        """The whole object in one request."""
        return self.obj.fs.cat_file(self.obj.path)

    def range_ignored(self, asked: int, sent: int) -> RangeIgnoredError:
        return RangeIgnoredError(self.obj.url, f"the server ignored the Range request: it sends {sent} bytes where {asked} were asked")

    def concurrently(self, ranges: list[tuple[int, int]], get: Callable[[int, int], Awaitable[bytes]]) -> list[bytes | BaseException]:
        """``get(start, end)`` for every range on fsspec's event loop thread, at most the policy's concurrency in
        flight: each result is the bytes or the exception that range failed with."""
        from fsspec.asyn import sync

        gate = asyncio.Semaphore(self.obj.policy.concurrency)

        async def one(start: int, end: int) -> bytes:
            async with gate:
                return await get(start, end)

        async def every() -> list[bytes | BaseException]:
            return await asyncio.gather(*(one(a, b) for a, b in ranges), return_exceptions=True)

        try:
            return sync(self.obj.fs.loop, every)
        except Exception as exc:  # noqa: BLE001 - the whole attempt failed: every range gets the error
            return [exc] * len(ranges)


class LocalTransport(Transport):
    """Local files: one open and a ``pread`` per range (fsspec's local ``cat_ranges`` opens the file once per
    range, which made a LAS cell, read as many short runs of points, cost more to open than to decode). A
    pinned read compares the opened file's ``fstat`` with the indexed identity before and after reading, so
    the bytes read are those of the file checked, and no metadata call precedes it."""

    def pins(self, expect: ObjectInfo) -> bool:
        return True

    def fetch(self, ranges: list[tuple[int, int]], expect: ObjectInfo | None) -> list[bytes | BaseException]:
        try:
            fd = os.open(self.obj.path, os.O_RDONLY)
        except OSError as exc:
            return [exc] * len(ranges)
        try:
            if expect is not None:
                self._check(os.fstat(fd), expect)
            out: list[bytes | BaseException] = []
            for a, b in ranges:
                try:
                    out.append(os.pread(fd, b - a, a))
                except OSError as exc:
                    out.append(exc)
            if expect is not None:
                self._check(os.fstat(fd), expect)  # and after: a write into the file during the reads changes its mtime
            return out
        except StaleIndexError as exc:
            return [exc] * len(ranges)
        finally:
            os.close(fd)

    def _check(self, st: os.stat_result, expect: ObjectInfo) -> None:
        now = _local_identity(st)
        if st.st_size != expect.size or now != expect.identity:
            from dataplug.storage.object import ObjectInfo

            raise stale_error(self.obj.url, expect, ObjectInfo(size=st.st_size, identity=now))

    def read_prefix(self, limit: int) -> bytes:
        with open(self.obj.path, "rb") as fh:
            return fh.read(limit + 1)


class S3Transport(Transport):
    """S3 through s3fs's client: one ``GetObject`` per range, concurrently, pinned with ``If-Match`` (the
    ETag) or ``VersionId``, each body read to at most one byte past its range (a server that ignores
    ``Range`` is named, not downloaded whole)."""

    def pins(self, expect: ObjectInfo) -> bool:
        return expect.identity.partition(":")[0] in ("etag", "version")

    @staticmethod
    def pin_arguments(expect: ObjectInfo | None) -> dict[str, str]:
        """``GetObject`` arguments that make a read fail unless it returns ``expect``'s bytes."""
        if expect is None:
            return {}
        kind, _, value = expect.identity.partition(":")
        return {"IfMatch": value} if kind == "etag" else {"VersionId": value} if kind == "version" else {}

    def fetch(self, ranges: list[tuple[int, int]], expect: ObjectInfo | None) -> list[bytes | BaseException]:
        pins = self.pin_arguments(expect)
        return self.concurrently(ranges, lambda start, end: self.get(end - start, Range=f"bytes={start}-{end - 1}", **pins))

    async def _get_object(self, **kwargs: str) -> dict[str, Any]:
        """The one call of s3fs's private ``_call_s3``: ``GetObject`` through s3fs's client and its retries."""
        fs = self.obj.fs
        bucket, key, version = fs.split_path(self.obj.path)
        if version and "VersionId" not in kwargs:
            kwargs["VersionId"] = version
        return await fs._call_s3("get_object", Bucket=bucket, Key=key, **kwargs)

    async def get(self, limit: int | None = None, **kwargs: str) -> bytes:
        """One ``GetObject``; with ``limit``, a body longer than that is refused after reading at most one byte
        past the limit (a server that ignored ``Range``)."""
        resp = await self._get_object(**kwargs)
        body = resp["Body"]
        try:
            if limit is None:
                # aiobotocore checks the body against Content-Length (IncompleteReadError when it falls short).
                return await body.read()
            if int(resp.get("ContentLength") or 0) > limit:
                raise self.range_ignored(limit, int(resp["ContentLength"]))
            data = bytearray()
            while len(data) <= limit:  # read(amt) returns what one chunk holds: read on, to one byte past the limit
                chunk = await body.read(limit + 1 - len(data))
                if not chunk:
                    break
                data += chunk
            if len(data) > limit:
                raise self.range_ignored(limit, len(data))
            return bytes(data)
        finally:
            body.close()

    def read_prefix(self, limit: int) -> bytes:
        from fsspec.asyn import sync

        async def prefix() -> bytes:
            try:
                return await self.get(limit + 1, Range=f"bytes=0-{limit}")
            except OSError as exc:
                if is_range_past_end(exc):  # an empty object has no byte 0
                    return b""
                raise

        return sync(self.obj.fs.loop, prefix)

    def read_all(self) -> bytes:
        from fsspec.asyn import sync

        return sync(self.obj.fs.loop, self.get)


class HTTPTransport(Transport):
    """HTTP(S) through fsspec's aiohttp session: one GET per range, concurrently, each body read as a stream
    and cut off past its range (fsspec's ``cat_ranges`` buffers whatever the server sends, so a server that
    ignores ``Range`` made every attempt download, and hold, the whole object).

    A read pinned to an indexed strong ETag sends ``If-Match`` (a server that honours it answers 412:
    :class:`StaleIndexError`) and checks the response's own ``ETag`` and the total size in its
    ``Content-Range``, so a server that ignores ``If-Match`` still cannot hand back another object's bytes.
    An object known by ``Last-Modified`` only, or by a weak ETag, is not pinned.
    """

    def pins(self, expect: ObjectInfo) -> bool:
        kind, _, value = expect.identity.partition(":")
        return kind == "etag" and not value.startswith("W/")

    def fetch(self, ranges: list[tuple[int, int]], expect: ObjectInfo | None) -> list[bytes | BaseException]:
        return self.concurrently(ranges, lambda start, end: self.get(start, end, expect))

    async def get(self, start: int, end: int, expect: ObjectInfo | None = None) -> bytes:
        """Bytes ``[start, end)`` in one GET (fewer when the object ends first), pinned to ``expect``."""
        obj, fs = self.obj, self.obj.fs
        session = await fs.set_session()
        kw = dict(fs.kwargs)
        headers = {**(kw.pop("headers", None) or {}), "Range": f"bytes={start}-{end - 1}"}
        etag = expect.identity.partition(":")[2] if expect is not None else None
        if etag:
            headers["If-Match"] = etag
        wanted = end - start
        async with session.get(fs.encode_url(obj.path), headers=headers, **kw) as r:
            if r.status in (404, 410):
                raise FileNotFoundError(errno.ENOENT, f"HTTP {r.status}", obj.url)
            if r.status == 412:
                raise StaleIndexError(obj.url, "the object changed after it was indexed (ETag no longer matches); run preprocess(force=True)")
            if r.status in TRANSIENT_STATUS:
                raise _HTTPStatusError(f"HTTP {r.status} {r.reason}")
            r.raise_for_status()
            if expect is not None:
                self._check(r.headers, expect)
            if r.status != 206 and start > 0:
                raise RangeIgnoredError(
                    obj.url,
                    f"the server ignored the Range request for bytes [{start}, {end}) (HTTP {r.status}, the whole object): "
                    "dataplug reads slices only from servers that honour Range",
                )
            length = r.content_length
            if r.status == 206 and length is not None and length > wanted:
                raise self.range_ignored(wanted, length)
            data = bytearray()
            while len(data) < wanted:  # a 200 for a range from 0 is the object's start: read what was asked, then hang up
                chunk = await r.content.read(wanted - len(data))
                if not chunk:
                    break
                data += chunk
            if r.status == 206 and await r.content.read(1):
                raise self.range_ignored(wanted, wanted + 1)
            return bytes(data)

    def _check(self, headers: Any, expect: ObjectInfo) -> None:
        """:class:`StaleIndexError` when a pinned response names another ETag or another total size."""
        etag = headers.get("ETag")
        total = headers.get("Content-Range", "").rpartition("/")[2]
        if (etag is not None and f"etag:{etag.strip()}" != expect.identity) or (total.isdigit() and int(total) != expect.size):
            raise StaleIndexError(
                self.obj.url,
                f"the object changed after it was indexed (indexed size {expect.size}, {expect.identity}; the server now sends "
                f"ETag {etag} and size {total or 'unknown'}); run preprocess(force=True)",
            )

    def read_prefix(self, limit: int) -> bytes:
        from fsspec.asyn import sync

        async def prefix() -> bytes:
            try:
                return await self.get(0, limit + 1)
            except Exception as exc:
                if getattr(exc, "status", None) == 416:
                    return b""
                raise

        return sync(self.obj.fs.loop, prefix)


def transport_for(obj: StorageObject) -> Transport:
    """The transport that reads ``obj``'s store (S3 ranges through obstore where it can, see
    :mod:`dataplug.storage.obstore_s3`)."""
    protocol = obj.protocol
    if protocol in FILE_PROTOCOLS:
        return LocalTransport(obj)
    if protocol in S3_PROTOCOLS:
        from dataplug.storage.obstore_s3 import s3_transport

        return s3_transport(obj)
    if protocol in HTTP_PROTOCOLS:
        return HTTPTransport(obj)
    return Transport(obj)
