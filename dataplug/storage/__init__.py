"""The storage layer: one object behind an fsspec URL, read by byte ranges (see :mod:`dataplug.storage.object`)."""

from dataplug.storage.object import (
    CONNECT_TIMEOUT,
    READ_TIMEOUT,
    RETRY_DEADLINE,
    ObjectInfo,
    RangeIgnoredError,
    ReadStats,
    SequentialReader,
    StorageObject,
    read_stats,
    redact,
    redact_url,
    split_url,
    stale_error,
)
from dataplug.storage.stores import StorePolicy, policy_for

__all__ = [
    "CONNECT_TIMEOUT",
    "READ_TIMEOUT",
    "RETRY_DEADLINE",
    "ObjectInfo",
    "RangeIgnoredError",
    "ReadStats",
    "SequentialReader",
    "StorageObject",
    "StorePolicy",
    "read_stats",
    "redact",
    "redact_url",
    "split_url",
    "policy_for",
    "stale_error",
]
