"""Slices: small, picklable descriptions of one part of an object that any worker can fetch and decode.

A slice carries the object's URL and storage options, the object's indexed size and identity (so a worker
detects a replaced object), and whatever bit of the index its format needs. It holds no live filesystem,
client or index, so pickling one costs a few hundred bytes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar, Protocol, TypeVar

import numpy as np

from dataplug.errors import DataplugError
from dataplug.storage import ObjectInfo, StorageObject

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa


S = TypeVar("S", bound="CloudObjectSlice")


class SharedPlan(Protocol):
    """What the slices of one partition share (index columns, the codec's readers): each slice built by
    :meth:`CloudObjectSlice.build_many` takes the fields in ``fields`` from it, by its row, only when one
    of them is first used or the slice is pickled."""

    fields: frozenset[str]

    def resolve(self, row: int) -> dict[str, Any]:
        """The values of ``fields`` for the slice of row ``row``."""
        ...


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector (when it runs) while many slices are made: their allocations
    would otherwise start collections that walk every tracked object of the process, as many times over as
    the slices fill the collector's generations. Slices hold no reference cycles, so nothing is left
    uncollected."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


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

    @classmethod
    def build_many(cls: type[S], shared: Mapping[str, Any], columns: Mapping[str, Sequence[Any]], plan: SharedPlan | None = None) -> list[S]:
        """Many slices at once, as ``cls(**shared, **row)`` for each row of ``columns`` would make them, but
        without a call of ``__init__`` per slice: each is a new object whose attributes are a copy of one
        dict (``python benchmarks/partition_scale.py`` times partitions of 10,000 and 100,000 slices).
        Fields in ``plan.fields`` are left to ``plan`` (see :class:`SharedPlan`), so the work they need is
        done for the slices that are read or pickled, not while planning. Every field must be given or have
        a plain default (checked once); a class with ``__post_init__`` is built the ordinary way."""
        lazy = plan.fields if plan is not None else frozenset()
        template: dict[str, Any] = {}
        missing = []
        for f in dataclasses.fields(cls):
            if f.name in shared or f.name in columns or f.name in lazy:
                continue
            if f.default is dataclasses.MISSING:
                missing.append(f.name)
            else:
                template[f.name] = f.default
        if missing:
            raise TypeError(f"{cls.__name__}.build_many: no value for {', '.join(missing)}")
        template.update(shared)
        names = tuple(columns)
        if hasattr(cls, "__post_init__"):
            rows: Iterable[tuple[Any, ...]] = zip(*columns.values())
            return [cls(**template, **dict(zip(names, row)), **(plan.resolve(k) if plan is not None else {})) for k, row in enumerate(rows)]
        if plan is not None:
            template["_plan"] = plan
            names += ("_row",)
            rows = zip(*columns.values(), range(min(map(len, columns.values()), default=0)))
        else:
            rows = zip(*columns.values())
        new = object.__new__
        out = []
        with _collector_paused():
            for row in rows:
                piece = new(cls)
                attributes = template.copy()
                attributes.update(zip(names, row))
                piece.__dict__ = attributes
                out.append(piece)
        return out

    def __getattr__(self, name: str) -> Any:
        """A field a :class:`SharedPlan` holds for this slice, taken from it on first use."""
        attributes = self.__dict__
        plan = attributes.get("_plan")
        if plan is not None and name in plan.fields:
            self._resolve()
        try:
            return attributes[name]
        except KeyError:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}") from None

    def _resolve(self) -> None:
        """Take this slice's fields from its partition's plan, once, and let go of the plan. Safe when
        threads race on one slice: the fields are set before the plan is dropped, and setting them twice
        sets the same values."""
        attributes = self.__dict__
        plan, row = attributes.get("_plan"), attributes.get("_row")
        if plan is not None and row is not None:
            attributes.update(plan.resolve(row))
            attributes.pop("_plan", None)
            attributes.pop("_row", None)

    def __getstate__(self) -> dict[str, Any]:
        """The slice's fields, those its partition's plan held among them (so the pickle carries only this
        slice's part, never the shared plan)."""
        self._resolve()
        return self.__dict__

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
