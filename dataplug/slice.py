"""Slices: small, picklable descriptions of one part of an object that any worker can fetch and decode.

A slice carries the object's URL and storage options, the object's indexed size and identity (so a worker
detects a replaced object), and whatever bit of the index its format needs. It holds no live filesystem,
client or index, so pickling one costs a few hundred bytes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar

import numpy as np

from dataplug.errors import DataplugError
from dataplug.storage import ObjectInfo, StorageObject

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa


def _same(a: Any, b: Any) -> bool:
    """Equal values, numpy arrays (also inside dicts) compared whole rather than element-wise."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and np.array_equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return bool(a == b)


@dataclass(eq=False)
class CloudObjectSlice:
    """Base class of every format's slice (the original Dataplug's name).

    Two slices are equal when they are of one class and every field is; a subclass declared with
    ``@dataclass(eq=False)`` keeps this equality, which compares numpy array fields whole."""

    obj: StorageObject
    object_info: ObjectInfo
    #: Position of this slice in its partition (0-based).
    number: int
    #: True when :meth:`dump` writes binary (the command line then refuses to print it on a terminal).
    binary_output: ClassVar[bool] = False

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(_same(getattr(self, f.name), getattr(other, f.name)) for f in dataclasses.fields(self))

    @property
    def url(self) -> str:
        return self.obj.url

    @property
    def num_records(self) -> int | None:
        """Records (lines, rows, reads, points, ...) in this slice when the index knows it without reading;
        ``None`` otherwise."""
        return None

    @property
    def known_num_records(self) -> int | None:
        """:attr:`num_records` when it is known without reading the object (from the index, or from an
        earlier read of this slice), else ``None``: what a driver may show or check without touching data."""
        return self.num_records

    def byte_range(self) -> tuple[int, int] | None:
        """``[start, end)`` of the bytes this slice reads (of the decoded stream for a compressed object),
        when it reads one range; ``None`` otherwise."""
        return None

    def get(self) -> Any:
        """Fetch the slice's bytes with range reads and return the format's natural result."""
        raise NotImplementedError

    def dump(self, fp: BinaryIO) -> None:
        """Write the slice to ``fp`` in its format's own serialisation, as a file of that format would
        hold it (CSV and VCF with their header), so that ``dataplug read`` fits in a pipeline. The default
        writes :meth:`get`'s text."""
        result = self.get()
        if isinstance(result, list) and all(isinstance(line, str) for line in result):
            result = "".join(line + "\n" for line in result)
        if not isinstance(result, (str, bytes)):
            raise DataplugError(self.url, f"{type(self).__name__} has no text form to write; use to_arrow() or to_pandas()")
        fp.write(result.encode("utf-8") if isinstance(result, str) else result)

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
