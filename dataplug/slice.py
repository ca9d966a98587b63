"""Slices: small, picklable descriptions of one part of an object that any worker can fetch and decode.

A slice carries the object's URL and storage options, the object's indexed size and identity (so a worker
detects a replaced object), and whatever bit of the index its format needs. It holds no live filesystem,
client or index, so pickling one costs a few hundred bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dataplug.storage import ObjectInfo, StorageObject

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa


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

    def schema(self) -> pa.Schema:
        """The columns :meth:`to_arrow` returns, known without reading the slice (engines use it as ``meta``)."""
        raise NotImplementedError

    def to_arrow(self, columns: list[str] | None = None) -> pa.Table:
        """The slice's records as a ``pyarrow.Table`` (only ``columns``, when given), like a pyarrow.dataset
        fragment: every format's slices offer it, so engine integrations work for all of them."""
        raise NotImplementedError

    def to_pandas(self, columns: list[str] | None = None) -> pd.DataFrame:
        """:meth:`to_arrow` as a pandas DataFrame."""
        return self.to_arrow(columns).to_pandas()
