"""Retries, in layers, and the classification of storage errors they rest on.

- On S3, botocore retries each request until its headers arrive: 5xx, throttling (SlowDown), connection
  resets and timeouts, with capped exponential backoff and jitter (``retries={"mode": "standard"}`` is set
  unless the storage options choose another policy). s3fs's own wrapper adds a few more tries of the same.
- Neither sees the response *body*: a truncated body (aiohttp ``ClientPayloadError``, botocore
  ``IncompleteReadError``), a reset or a stall (``read_timeout``) while it streams, or a body shorter than
  the range are raised after botocore returned, and a transport hands them back as values. So dataplug
  keeps one retry loop of its own over every read (:func:`read_retrying` for ranges, :func:`retry` for the
  rest): it re-issues only the failed requests, each re-read whole and never appended to a partial body,
  with bounded exponential backoff and jitter, and names the URL, the range and the attempt count when it
  gives up. A short read becomes :class:`StaleIndexError` when a fresh size check shows the object really is
  smaller than indexed.

Errors are classified by exception type, error code and HTTP status, never by message.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import http.client
import random
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from dataplug.errors import DataplugError, StaleIndexError, StorageError

if TYPE_CHECKING:
    from dataplug.storage.object import ObjectInfo

#: Attempts dataplug makes for one read or storage call before it raises :class:`StorageError`.
RETRIES = 5
#: Backoff before attempt ``n + 1`` is ``min(BACKOFF_CAP, BACKOFF_BASE * 2**(n - 1))`` seconds, times a random
#: factor in [0.5, 1) so that workers that failed together do not retry together.
BACKOFF_BASE = 0.2
BACKOFF_CAP = 5.0
#: Seconds after which a failed attempt is not retried, however many attempts are left (checked between
#: attempts: an attempt itself ends when a response goes :data:`dataplug.storage.stores.READ_TIMEOUT` seconds without a byte).
RETRY_DEADLINE = 120.0
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
TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})
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
_DENIED_CODES = frozenset(
    {"AccessDenied", "AllAccessDisabled", "AccountProblem", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"}
)
_DENIED_STATUS = frozenset({401, 403})


class _ShortBodyError(Exception):
    """A response body shorter than the bytes asked for: retried, unless the object really is smaller."""


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    """``exc`` and the exceptions it was raised from (s3fs wraps botocore's errors into OSError)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def response_error(exc: BaseException) -> tuple[str | None, int | None]:
    """The object store's error code and HTTP status behind ``exc``, if a response is behind it."""
    for e in _chain(exc):
        response = getattr(e, "response", None)
        if isinstance(response, dict):
            return response.get("Error", {}).get("Code"), response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return None, None


@functools.cache
def _transient_types() -> tuple[type[BaseException], ...]:
    """Exception types of a request or body that failed in transit (imported lazily: local use needs none)."""
    types: list[type[BaseException]] = [ConnectionError, TimeoutError, http.client.IncompleteRead, _ShortBodyError]
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


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is worth another attempt, by exception type, error code and HTTP status (never by message)."""
    if isinstance(exc, DataplugError):
        return False
    code, status = response_error(exc)
    if code is not None or status is not None:
        return code in _TRANSIENT_CODES or status in TRANSIENT_STATUS
    if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError)):
        return False
    if isinstance(exc, _transient_types()):
        return True
    return isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS


def is_precondition_failed(exc: BaseException | None) -> bool:
    """True for S3's answer to a failed ``If-Match`` (HTTP 412), however s3fs wrapped it."""
    code, status = response_error(exc) if exc is not None else (None, None)
    return code == "PreconditionFailed" or status == 412


def is_range_past_end(exc: BaseException) -> bool:
    """True for HTTP 416: the range starts at or past the object's end."""
    code, status = response_error(exc)
    return code == "InvalidRange" or status == 416


def refuses_writes(exc: BaseException) -> bool:
    """A location that refuses writes (permissions, read-only, no such bucket), as opposed to a failed write."""
    code, status = response_error(exc)
    if code is not None or status is not None:
        return code in _REFUSED_CODES or status in _REFUSED_STATUS
    if isinstance(exc, (PermissionError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError)):
        return True
    return isinstance(exc, OSError) and exc.errno in _REFUSED_ERRNOS


def access_denied(exc: BaseException) -> str | None:
    """The reason when ``exc`` is a refusal (HTTP 401/403, S3's ``AccessDenied`` and bad-credential codes, a
    local permission error), however fsspec wrapped it, else None. fsspec's HTTP ``info`` turns a 403 into
    ``FileNotFoundError`` raised from aiohttp's ``ClientResponseError``, whose ``status`` still says 403."""
    code, status = response_error(exc)
    if code is not None or status is not None:
        if code in _DENIED_CODES or status in _DENIED_STATUS:
            return code if code and not code.isdigit() else f"HTTP {status}"
        return None
    for e in _chain(exc):
        if getattr(e, "status", None) in _DENIED_STATUS:
            return f"HTTP {e.status}"  # type: ignore[attr-defined]
    return "permission denied" if isinstance(exc, PermissionError) else None


def denied_advice(protocol: str) -> str:
    """How to read an object after a refusal: credentials, an endpoint, or anonymous access, as its store takes them."""
    if protocol == "file":
        return "the file system denies this user reading it"
    if protocol in ("s3", "s3a"):
        return (
            "S3 also answers so for a missing key when the credentials may not list the bucket. Give credentials that may read it (AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or storage_options "
            "key/secret, on the command line -s key=... -s secret=...), the endpoint of a store other than AWS "
            "(AWS_ENDPOINT_URL or storage_options endpoint_url, -s endpoint_url=...), or storage_options anon=true for a public bucket"
        )
    return f"the server refuses this request; give the credentials or headers it needs in storage_options (see fsspec's {protocol} filesystem)"


def describe(exc: BaseException) -> str:
    """``exc`` as its type and message, for error messages."""
    return f"{type(exc).__name__}: {exc}"


def backoff(attempt: int) -> None:
    """Sleep before attempt ``attempt + 1``: exponential, capped, with jitter."""
    time.sleep(min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0))


def stale_error(url: str, indexed: ObjectInfo, now: ObjectInfo) -> StaleIndexError:
    """The error for an object that changed after it was indexed."""
    return StaleIndexError(
        url,
        f"the object changed after it was indexed (indexed size {indexed.size}, {indexed.identity}; "
        f"now size {now.size}, {now.identity}); run preprocess(force=True)",
    )


def retry(fn: Callable[..., Any], *args: Any, url: str, what: str, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``, retried on transient errors; :class:`StorageError` naming ``url`` after the last
    attempt, a non-transient error raised as it is."""
    started = time.monotonic()
    for attempt in range(1, RETRIES + 1):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - classified below
            if not is_transient(exc):
                raise
            took = time.monotonic() - started
            if attempt == RETRIES or took > RETRY_DEADLINE:
                raise StorageError(url, f"{what} failed after {attempt} attempts in {took:.0f} s: {describe(exc)}") from exc
            backoff(attempt)
    raise AssertionError("unreachable")


def read_retrying(
    url: str,
    fetch: Callable[[list[tuple[int, int]]], Sequence[bytes | BaseException]],
    requests: Sequence[tuple[int, int]],
    check_size: Callable[[int], None],
    translate: Callable[[BaseException], DataplugError],
) -> tuple[list[bytes], int]:
    """The body of every request ``[a, b)`` and the number of requests made, retries included.

    ``fetch`` makes one attempt at a list of requests and returns each one's bytes or the exception it failed
    with. Only failed requests are re-issued, whole. A body of the wrong length, or a range the store calls
    past the object's end, is retried after ``check_size(end)`` had the chance to raise
    :class:`StaleIndexError` (the object really is smaller); an error that is not transient is raised as
    ``translate`` makes it.
    """
    out: list[bytes] = [b""] * len(requests)
    todo = list(range(len(requests)))
    count, started = 0, time.monotonic()
    for attempt in range(1, RETRIES + 1):
        results = fetch([requests[i] for i in todo])
        count += len(todo)
        failed: dict[int, BaseException] = {}
        for i, result in zip(todo, results):
            a, b = requests[i]
            if isinstance(result, BaseException):
                if is_range_past_end(result):
                    failed[i] = _ShortBodyError(f"the store refused bytes [{a}, {b}) as past the object's end")
                elif is_transient(result):
                    failed[i] = result
                else:
                    raise translate(result) from result
            elif len(result) != b - a:
                failed[i] = _ShortBodyError(f"got {len(result)} of the {b - a} bytes [{a}, {b})")
            else:
                out[i] = result
        shorts = [requests[i][1] for i, exc in failed.items() if isinstance(exc, _ShortBodyError)]
        if shorts:
            check_size(max(shorts))
        if not failed:
            return out, count
        todo = sorted(failed)
        took = time.monotonic() - started
        if attempt == RETRIES or took > RETRY_DEADLINE:
            a, b = requests[todo[0]]
            error = failed[todo[0]]
            others = f" ({len(todo)} of {len(requests)} requests failed)" if len(todo) > 1 else ""
            raise StorageError(url, f"reading bytes [{a}, {b}) failed after {attempt} attempts in {took:.0f} s{others}: {describe(error)}") from error
        backoff(attempt)
    raise AssertionError("unreachable")
