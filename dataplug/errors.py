"""Exceptions raised by dataplug.

Every error derives from :class:`DataplugError` and its message names the object (URL) and the cause,
so a failure in a remote worker is still readable in the driver's log.
"""

from __future__ import annotations


class DataplugError(Exception):
    """Base class of every dataplug error."""

    def __init__(self, url: str | None, cause: str) -> None:
        self.url = url
        self.cause = cause
        super().__init__(f"{url}: {cause}" if url else cause)

    def __reduce__(self):
        # Keep errors picklable across process pools and distributed workers.
        return (self.__class__, (self.url, self.cause))


class ObjectNotFoundError(DataplugError, FileNotFoundError):
    """The data object does not exist (or cannot be seen with the given credentials)."""


class AccessDeniedError(DataplugError, PermissionError):
    """The store refused the request (HTTP 401/403): the object may well exist, but these credentials may not read it."""


class IndexMissingError(DataplugError):
    """The object has no index for this format yet: call ``co.preprocess()`` first."""


class CorruptIndexError(DataplugError):
    """The sidecar index exists but is malformed, truncated or fails its checksums."""


class StaleIndexError(DataplugError):
    """The object changed (size or identity) after it was indexed: re-run ``preprocess(force=True)``."""


class InvalidFormatError(DataplugError, ValueError):
    """The object's bytes do not match the format (with the byte offset or line where it failed)."""

    def __init__(self, url: str | None, cause: str, offset: int | None = None, line: int | None = None) -> None:
        self.offset = offset
        self.line = line
        where = []
        if offset is not None:
            where.append(f"byte offset {offset}")
        if line is not None:
            where.append(f"line {line}")
        super().__init__(url, f"{cause} (at {', '.join(where)})" if where else cause)
        self.cause = cause

    def __reduce__(self):
        return (_rebuild_invalid_format, (self.__class__, self.url, self.cause, self.offset, self.line))


def _rebuild_invalid_format(cls, url, cause, offset, line):
    err = cls.__new__(cls)
    InvalidFormatError.__init__(err, url, cause, offset, line)
    return err


class IndexLocationNotWritableError(DataplugError, PermissionError):
    """The sidecar index location cannot be written."""


class StrategyArgumentError(DataplugError, ValueError):
    """A partitioning strategy was called with arguments it cannot honour (e.g. ``num_chunks <= 0``)."""


class StorageError(DataplugError, OSError):
    """A storage request failed for a reason other than a missing object (after retries)."""


class DataplugWarning(UserWarning):
    """Base class of dataplug's warnings: requests that run but may not do what was meant."""


class EmptyResultWarning(DataplugWarning):
    """A request returns nothing: an empty object, or more slices than records (some slices are empty)."""


class FormatDetectionWarning(DataplugWarning):
    """Format detection had little to go on (a sample of a line or two) and may have picked the wrong format."""


class UnverifiableObjectWarning(DataplugWarning):
    """The store gives the object no identity (no ETag, version or Last-Modified): a same-size replacement
    cannot be told from the indexed object."""


class DataplugDeprecationWarning(DataplugWarning, DeprecationWarning):
    """A name kept from the original Dataplug (or an older dataplug) that another name replaces."""
