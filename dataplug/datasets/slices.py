"""Slices of a dataset that no single object's format makes: a group of whole small objects read as one slice.

A dataset partition (:func:`dataplug.datasets.partition.partition_dataset`) is a list of slices, each either a
piece of one object (that object's own slice) or a :class:`GroupSlice` of whole objects: a slice never holds
part of two objects. A group keeps each object's one-slice partition, so a worker reads every part exactly as
it would read that object alone, with the object's identity checked the same way.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
import pyarrow as pa

from dataplug.errors import DataplugError

if TYPE_CHECKING:
    import pandas as pd


@dataclass(eq=True)
class GroupSlice:
    """Several whole objects of one dataset as one slice, in dataset order: the slice contract over its parts.

    ``parts`` are the objects' one-slice partitions (of the strategy that made the partition), each with the
    dataset's schema. It holds what its parts hold (URLs, storage options, identities, bits of index), no
    client or secret, so it pickles like them. ``byte_range()`` is ``None``: the parts read ranges of
    several objects.
    """

    parts: tuple[Any, ...]
    #: Position of this slice in its partition (0-based).
    number: int = 0

    def __post_init__(self) -> None:
        if not self.parts:
            raise DataplugError(None, "a GroupSlice needs at least one part")
        self.parts = tuple(self.parts)

    @property
    def url(self) -> str:
        """The first object's URL (errors of the group name the part they come from)."""
        return self.parts[0].url

    @property
    def urls(self) -> tuple[str, ...]:
        """Every object the group reads, in dataset order."""
        return tuple(part.url for part in self.parts)

    @property
    def binary_output(self) -> bool:
        """True when :meth:`dump` would write binary (the parts' format writes binary files)."""
        return any(getattr(part, "binary_output", False) for part in self.parts)

    @property
    def header(self) -> str | None:
        """The header the parts' dumps start with (CSV, VCF), written once by :meth:`dump`; None without one."""
        header = getattr(self.parts[0], "header", None)
        return header if isinstance(header, str) else None

    @property
    def dialect(self) -> Any:
        """The first part's text dialect (its encoding is that of :attr:`header`), when it has one."""
        return getattr(self.parts[0], "dialect", None)

    @property
    def num_records(self) -> int | None:
        """Records of all parts (``None`` when a part knows its count only by reading)."""
        counts = [part.num_records for part in self.parts]
        return None if any(c is None for c in counts) else sum(counts)

    @property
    def known_num_records(self) -> int | None:
        """:attr:`num_records` where every part knows it without reading the objects, else ``None``."""
        counts = [part.known_num_records for part in self.parts]
        return None if any(c is None for c in counts) else sum(counts)

    def byte_range(self) -> None:
        """``None``: the group reads ranges of several objects, not one range."""
        return None

    def schema(self, **options: Any) -> pa.Schema:
        """The columns :meth:`to_arrow` returns (the parts share the dataset's schema); ``options`` are the
        parts' own (a CSV's ``column_types``)."""
        return self.parts[0].schema(**options)

    def to_arrow(self, columns: list[str] | None = None, **options: Any) -> pa.Table:
        """The parts' records as one ``pyarrow.Table`` in dataset order (only ``columns``, when given);
        ``options`` go to every part's ``to_arrow`` (a CSV's ``column_types``)."""
        schema = self.schema(**options)
        if columns is not None:
            schema = pa.schema([schema.field(name) for name in columns])
        tables = [part.to_arrow(columns, **options) for part in self.parts]
        return pa.concat_tables([t.select(schema.names).cast(schema) if t.schema != schema else t for t in tables])

    def to_pandas(self, columns: list[str] | None = None, **options: Any) -> pd.DataFrame:
        """:meth:`to_arrow` as a pandas DataFrame."""
        return self.to_arrow(columns, **options).to_pandas()

    def get(self) -> Any:
        """The parts' results joined as one object's would be: text once with its header (CSV, VCF), lists
        (FASTQ lines, spectra) and arrays concatenated; for results that do not join (a ``laspy.LasData``
        per LiDAR tile), the list of the parts' results."""
        results = [part.get() for part in self.parts]
        if all(isinstance(r, (str, bytes)) for r in results) and len({type(r) for r in results}) == 1:
            return results[0] + type(results[0])().join(_without_header(r, part) for r, part in zip(results[1:], self.parts[1:]))
        if all(isinstance(r, list) for r in results):
            return [item for r in results for item in r]
        if all(isinstance(r, np.ndarray) and r.ndim == 1 for r in results):
            return np.concatenate(results)
        return results

    def dump(self, fp: BinaryIO) -> None:
        """The parts as one file of their format: the first part's dump whole, the others without the header
        it already wrote (each part's own header is cut). Binary formats (LAS, GeoTIFF) write one file per object: a
        :class:`~dataplug.errors.DataplugError` then says to write the parts one by one."""
        if self.binary_output:
            raise DataplugError(
                self.url, f"a group of {len(self.parts)} whole objects of a binary format is not one file; write each of its parts (slice.parts) to a file of its own"
            )
        for k, part in enumerate(self.parts):
            buf = io.BytesIO()
            part.dump(buf)
            fp.write(_without_header(buf.getvalue(), part) if k else buf.getvalue())


def _without_header(data: Any, part: Any) -> Any:
    """``data`` (a later part's result or dump) less the header its object starts with (CSV, VCF): the
    group's first part holds the header once. Each part's own header is cut, so parts whose header lines
    differ only in their line ending join too."""
    header = getattr(part, "header", None)
    if not isinstance(header, str) or not header:
        return data
    if isinstance(data, bytes):
        encoding = getattr(getattr(part, "dialect", None), "encoding", None) or "utf-8"
        header = header.encode(encoding)
    if not data.startswith(header):
        raise DataplugError(part.url, "its slice does not start with the object's header, so it cannot join the group's other parts in one file")
    return data[len(header) :]
