"""dataplug: process big, raw scientific objects in object storage in parallel, without rewriting them.

One read-only pass writes a small sidecar index beside the object; partitioning strategies turn the index
into small, picklable slices that any worker fetches with range reads.
"""

from dataplug.cloudobject import CloudObject
from dataplug.cloudobject import open_url as open  # noqa: A001 - dataplug.open(url), like gzip.open
from dataplug.datasets import Dataset, DatasetAttributes, open_dataset
from dataplug.detect import Detection, detect_format
from dataplug.codecs.zstd import SliceInsideFrameWarning
from dataplug.errors import (
    AccessDeniedError,
    CorruptIndexError,
    DataplugDeprecationWarning,
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
    UnverifiableObjectWarning,
)
from dataplug.format import DataFormat, available_formats, get_format, register_format
from dataplug.framings.lines import CheckpointSpacingWarning
from dataplug.slice import CloudObjectSlice
from dataplug.strategies import PartitioningStrategy, strategy

__version__ = "0.1.0"

__all__ = [
    "AccessDeniedError",
    "CheckpointSpacingWarning",
    "CloudObject",
    "CloudObjectSlice",
    "CorruptIndexError",
    "DataFormat",
    "DataplugDeprecationWarning",
    "DataplugError",
    "DataplugWarning",
    "Dataset",
    "DatasetAttributes",
    "Detection",
    "EmptyResultWarning",
    "FormatDetectionWarning",
    "IndexLocationNotWritableError",
    "IndexMissingError",
    "InvalidFormatError",
    "ObjectNotFoundError",
    "PartitioningStrategy",
    "SliceInsideFrameWarning",
    "StaleIndexError",
    "StorageError",
    "StrategyArgumentError",
    "UnverifiableObjectWarning",
    "__version__",
    "available_formats",
    "detect_format",
    "get_format",
    "open",
    "open_dataset",
    "register_format",
    "strategy",
]
