"""dataplug: process big, raw scientific objects in object storage in parallel, without rewriting them.

One read-only pass writes a small sidecar index beside the object; partitioning strategies turn the index
into small, picklable slices that any worker fetches with range reads.
"""

from dataplug.cloudobject import CloudObject
from dataplug.cloudobject import open_url as open  # noqa: A001 - dataplug.open(url), like gzip.open
from dataplug.detect import Detection, detect_format
from dataplug.errors import (
    AccessDeniedError,
    CorruptIndexError,
    DataplugError,
    DataplugWarning,
    EmptyResultWarning,
    FormatDetectionWarning,
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
    "AccessDeniedError",
    "CloudObject",
    "CloudObjectSlice",
    "CorruptIndexError",
    "DataFormat",
    "DataplugError",
    "DataplugWarning",
    "Detection",
    "EmptyResultWarning",
    "FormatDetectionWarning",
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
    "detect_format",
    "get_format",
    "open",
    "register_format",
    "strategy",
]
