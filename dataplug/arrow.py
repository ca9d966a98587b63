"""Slices as one Arrow stream, for SQL engines: DuckDB and Polars query any format dataplug reads.

``to_reader(slices)`` is a ``pyarrow.RecordBatchReader`` over every slice's ``to_arrow()``, in slice order,
read a few slices ahead on any engine :mod:`dataplug.executors` accepts, so a ``GROUP BY`` over a gzipped CSV
or a FASTQ.gz runs while its slices are still being fetched and decoded in parallel::

    import duckdb
    reader = to_reader(co.partition("partition_num_chunks", 64), executor=pool)
    duckdb.sql("select station, avg(temp) from reader group by station")

A dataset's partition streams the same way (``to_reader(ds.partition("partition_num_chunks", 64))``): its
slices, pieces of one object or groups of whole objects, share one schema (a CSV dataset's column types are
widened over its objects, :mod:`dataplug.datasets.partition`).
"""

from __future__ import annotations

import functools
import queue
import threading
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, Iterator, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from dataplug.errors import DataplugError
from dataplug.executors import map_ordered, ordered_ahead


def slice_table(piece: Any, columns: list[str] | None, schema: pa.Schema) -> pa.Table:
    """``piece.to_arrow(columns)`` with exactly ``schema`` (the task each worker runs); a string column the
    schema makes a dictionary is encoded here, in the worker."""
    table = piece.to_arrow(columns) if columns is not None else piece.to_arrow()
    table = table.select(schema.names)
    for i, field in enumerate(schema):
        if pa.types.is_dictionary(field.type) and not pa.types.is_dictionary(table.schema.field(i).type):
            table = table.set_column(i, field, pc.dictionary_encode(table.column(i)))
    return table if table.schema == schema else table.cast(schema)


def to_reader(
    slices: Sequence[Any], columns: list[str] | None = None, executor: Any = None, prefetch: int = 2, dictionary: Sequence[str] = ()
) -> pa.RecordBatchReader:
    """A reader of the slices' records, in order, with at most about ``prefetch`` slices read ahead (2 x
    ``prefetch`` for engines without ``submit``, which are fed ``prefetch`` slices at a time).

    ``executor`` is a ``concurrent.futures.Executor`` (default: ``prefetch`` threads), a ``multiprocessing``
    Pool, a ``dask.distributed.Client``, a ``lithops.FunctionExecutor`` or the ``ray`` module. The schema is
    the first slice's ``schema()`` (only ``columns``, when given), known without reading any data.

    ``dictionary`` names string columns the workers dictionary-encode (each slice with its own dictionary),
    for columns of few distinct values such as a ``GROUP BY`` key: they then cross from the worker
    processes in a fraction of the bytes, and DuckDB groups on their codes. ``python
    benchmarks/arrow_sql.py`` prints the query both ways.
    """
    slices = list(slices)
    if not slices:
        raise DataplugError(None, "to_reader needs at least one slice")
    if prefetch < 1:
        raise DataplugError(slices[0].url, f"prefetch must be >= 1, got {prefetch}")
    schema = slices[0].schema()
    if columns is not None:
        schema = pa.schema([schema.field(name) for name in columns])
    for name in dictionary:
        at = schema.get_field_index(name)
        if at < 0 or not (pa.types.is_string(schema.field(at).type) or pa.types.is_large_string(schema.field(at).type)):
            raise DataplugError(slices[0].url, f"dictionary names {name!r}, which is not a string column of the stream ({schema.names})")
        schema = schema.set(at, schema.field(at).with_type(pa.dictionary(pa.int32(), schema.field(at).type)))
    task = functools.partial(slice_table, columns=columns, schema=schema)
    tables = _submitted(task, slices, executor, prefetch) if executor is None or isinstance(executor, Executor) else _windows(task, slices, executor, prefetch)
    return pa.RecordBatchReader.from_batches(schema, (batch for table in tables for batch in table.to_batches()))


def _submitted(task: Any, slices: list[Any], executor: Executor | None, prefetch: int) -> Iterator[pa.Table]:
    own = executor is None
    pool = ThreadPoolExecutor(prefetch) if own else executor
    try:
        yield from ordered_ahead(task, slices, pool, prefetch)
    finally:
        if own:
            pool.shutdown(wait=True, cancel_futures=True)


def _windows(task: Any, slices: list[Any], engine: Any, prefetch: int) -> Iterator[pa.Table]:
    """For engines mapped a batch at a time: the next window of ``prefetch`` slices runs on the engine (from
    a helper thread) while the consumer reads the current one."""
    ready: queue.Queue[Any] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def produce() -> None:
        try:
            for i in range(0, len(slices), prefetch):
                if stop.is_set():
                    return
                ready.put(map_ordered(task, slices[i : i + prefetch], engine, progress=False))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            ready.put(exc)
            return
        ready.put(None)

    thread = threading.Thread(target=produce, name="dataplug-to-reader", daemon=True)
    thread.start()
    try:
        while (window := ready.get()) is not None:
            if isinstance(window, BaseException):
                raise window
            yield from window
    finally:
        stop.set()
        while thread.is_alive():
            try:
                ready.get(timeout=0.1)
            except queue.Empty:
                pass
