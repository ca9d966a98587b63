"""Slices: small, picklable descriptions of one part of an object that any worker can fetch and decode.

A slice carries the object's URL and storage options, the object's indexed size and identity (so a worker
detects a replaced object), and whatever bit of the index its format needs. It holds no live filesystem,
client or index, so pickling one costs a few hundred bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dataplug.storage import ObjectInfo, StorageObject


@dataclass
class CloudObjectSlice:
    """Base class of every format's slice (the original Dataplug's name)."""

    obj: StorageObject
    object_info: ObjectInfo
    #: Position of this slice in its partition (0-based).
    number: int

    @property
    def url(self) -> str:
        return self.obj.url

    def get(self) -> Any:
        """Fetch the slice's bytes with range reads and return the format's natural result."""
        raise NotImplementedError
