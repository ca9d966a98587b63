"""dataplug: process big, raw scientific objects in object storage in parallel, without rewriting them.

One read-only pass writes a small sidecar index beside the object; partitioning strategies turn the index
into small, picklable slices that any worker fetches with range reads.
"""

from dataplug.cloudobject import CloudObject
from dataplug.errors import (
    CorruptIndexError,
    DataplugError,
    IndexLocationNotWritableError,
    IndexMissingError,
    InvalidFormatError,
    ObjectNotFoundError,
    StaleIndexError,
    StorageError,
    StrategyArgumentError,
)
from dataplug.format import DataFormat, available_formats, get_format, register_format
from dataplug.slice import CloudObjectSlice
from dataplug.strategies import PartitioningStrategy, strategy

__version__ = "0.1.0"

__all__ = [
    "CloudObject",
    "CloudObjectSlice",
    "CorruptIndexError",
    "DataFormat",
    "DataplugError",
    "IndexLocationNotWritableError",
    "IndexMissingError",
    "InvalidFormatError",
    "ObjectNotFoundError",
    "PartitioningStrategy",
    "StaleIndexError",
    "StorageError",
    "StrategyArgumentError",
    "__version__",
    "available_formats",
    "get_format",
    "register_format",
    "strategy",
]
