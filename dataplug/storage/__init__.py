"""The storage layer: one object behind an fsspec URL, read by byte ranges.

:mod:`~dataplug.storage.object` (:class:`StorageObject`, :class:`ObjectInfo`), :mod:`~dataplug.storage.stores`
(each store's :class:`StorePolicy` and transport), :mod:`~dataplug.storage.ranges` (request planning,
:class:`RangeFile`, :class:`SequentialReader`), :mod:`~dataplug.storage.retry` (retries and error classification).
"""

from dataplug.storage.object import ObjectInfo, ReadStats, StorageObject, read_stats, redact, redact_url, split_url
from dataplug.storage.ranges import Plan, RangeFile, SequentialReader, plan
from dataplug.storage.retry import RETRY_DEADLINE, stale_error
from dataplug.storage.stores import CONNECT_TIMEOUT, READ_TIMEOUT, RangeIgnoredError, StorePolicy, policy_for

__all__ = [
    "CONNECT_TIMEOUT",
    "READ_TIMEOUT",
    "RETRY_DEADLINE",
    "ObjectInfo",
    "Plan",
    "RangeFile",
    "RangeIgnoredError",
    "ReadStats",
    "SequentialReader",
    "StorageObject",
    "StorePolicy",
    "plan",
    "policy_for",
    "read_stats",
    "redact",
    "redact_url",
    "split_url",
    "stale_error",
]
