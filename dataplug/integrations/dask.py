"""Dask collections over slices: each partition is one slice, fetched and decoded by the worker that runs it.

The graph holds only the slices (a few hundred bytes each); the bytes move from storage straight to the
workers. For preprocessing on a Dask cluster pass the client itself: ``co.preprocess(executor=client)``.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import dask.bag as db
import dask.dataframe as dd
import pandas as pd


def _get(piece: Any) -> Any:
    return piece.get()


def to_bag(slices: Sequence[Any], fn: Callable[[Any], Any] | None = None) -> db.Bag:
    """A bag with one partition per slice holding ``fn(slice)`` (default: ``slice.get()``).

    Results that are lists (``TextSlice.lines``) become a bag of their elements with ``.flatten()``.
    """
    return db.from_sequence(list(slices), partition_size=1).map(fn or _get)


def _frame(piece: Any, columns: list[str] | None = None, column_types: dict[str, Any] | None = None, arrow_dtypes: bool = False) -> pd.DataFrame:
    """One partition: the slice parsed to Arrow, the requested columns kept, converted to pandas."""
    columns = None if columns is None else list(columns)
    table = piece.to_arrow(columns, column_types=column_types) if column_types else piece.to_arrow(columns)
    return table.to_pandas(types_mapper=pd.ArrowDtype if arrow_dtypes else None)


def to_dataframe(slices: Sequence[Any], column_types: dict[str, Any] | None = None, arrow_dtypes: bool = False) -> dd.DataFrame:
    """A dataframe with one partition per slice, for the slices of any format (their ``to_arrow()``).

    ``meta`` is the slices' Arrow schema with zero rows converted like every partition, so Dask knows the
    columns and dtypes without reading the data. ``column_types`` (CSV only) overrides types by column
    name, as in ``CSVSlice.to_arrow``. ``arrow_dtypes=True`` gives ``pd.ArrowDtype`` columns, which also keeps integer
    columns with nulls integer (numpy-backed pandas turns them into float in the partitions that have nulls).
    Column selections are pushed into the partitions, so ``df["temp"].sum()`` converts one column only.
    """
    slices = list(slices)
    if not slices:
        raise ValueError("to_dataframe needs at least one slice")
    first = slices[0]
    mapper = pd.ArrowDtype if arrow_dtypes else None
    schema = first.schema(column_types) if column_types else first.schema()
    meta = schema.empty_table().to_pandas(types_mapper=mapper)
    return dd.from_map(_frame, slices, meta=meta, label="dataplug-slices", column_types=column_types, arrow_dtypes=arrow_dtypes)
