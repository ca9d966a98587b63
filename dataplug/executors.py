"""Run "map this function over these items, gather the results in order" on the user's engine.

Preprocessing and bulk slice processing are such maps: the items are byte ranges or slices (small, picklable
descriptions, never data), each worker reads its own bytes, and any reduce runs on the driver afterwards.

The engine is whatever the user passes as ``executor=``:

- nothing: a local thread pool. The preprocessing maps spend their time in I/O and in numpy kernels that
  release the GIL, so threads scale without the start-up cost (and fork hazards) of processes. LAZ decoding
  is the exception: lazrs holds the GIL, so a LAZ index pass uses one core unless given a process pool;
- a :class:`concurrent.futures.Executor` (thread or process pool, Dask's ``client.get_executor()``);
- a :class:`multiprocessing.pool.Pool`;
- a ``dask.distributed.Client``;
- a ``lithops.FunctionExecutor`` (or ``LocalhostExecutor``, ``ServerlessExecutor`` ...);
- the ``ray`` module itself.

Engines are recognised by the names of their types (:func:`register_engine`), never by importing them, so
``import dataplug`` does not import Dask, Lithops or Ray. Each adapter imports its engine's helpers only when
it runs, when the user has already imported the engine.
"""

from __future__ import annotations

import os
import sys
import types
from collections import deque
from concurrent.futures import Executor, ThreadPoolExecutor, as_completed
from typing import Any, Callable, Iterator, Protocol, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class MapAdapter(Protocol):
    """Runs ``[fn(x) for x in items]`` on one kind of engine, in input order, calling ``advance(n)`` as
    ``n`` more items finish (for the progress bar). It raises the first error of any item."""

    def __call__(self, engine: Any, fn: Callable[[Any], Any], items: Sequence[Any], advance: Callable[[int], None]) -> list[Any]: ...


_ADAPTERS: dict[str, MapAdapter] = {}


def register_engine(*type_names: str) -> Callable[[MapAdapter], MapAdapter]:
    """Decorator: use the adapter for engines whose type, or one of its base types, is named
    ``"module.QualName"`` (for a module object used as the engine, its name, e.g. ``"ray"``)."""

    def add(adapter: MapAdapter) -> MapAdapter:
        for name in type_names:
            _ADAPTERS[name] = adapter
        return adapter

    return add


def _type_names(engine: Any) -> Iterator[str]:
    if isinstance(engine, types.ModuleType):
        yield engine.__name__
    for cls in type(engine).__mro__:
        yield f"{cls.__module__}.{cls.__qualname__}"


def find_adapter(engine: Any) -> MapAdapter:
    """The adapter registered for ``engine``'s type (the most derived match wins)."""
    for name in _type_names(engine):
        if name in _ADAPTERS:
            return _ADAPTERS[name]
    raise TypeError(
        f"dataplug cannot map on a {type(engine).__module__}.{type(engine).__qualname__}; pass a concurrent.futures.Executor, "
        "a multiprocessing Pool, a dask.distributed.Client, a lithops.FunctionExecutor or the ray module (or register_engine an adapter)"
    )


def default_workers() -> int:
    """Worker count of the default pool: one per core."""
    return os.cpu_count() or 1


def _interactive() -> bool:
    return sys.stderr.isatty() or "ipykernel" in sys.modules


def progress_bar(total: int, desc: str, enabled: bool | None, unit: str = "it"):
    """A tqdm bar, shown when ``enabled`` or, for ``None``, when the session is interactive. ``unit="B"``
    counts bytes, shown with SI prefixes and a rate in MB/s."""
    from tqdm.auto import tqdm

    scale = {"unit_scale": True, "unit_divisor": 1000} if unit == "B" else {}
    return tqdm(total=total, desc=desc, unit=unit, disable=not (_interactive() if enabled is None else enabled), leave=False, **scale)


def map_ordered(
    fn: Callable[[T], R],
    items: Sequence[T],
    executor: Any = None,
    progress: bool | None = None,
    desc: str = "dataplug",
    nbytes: int | None = None,
) -> list[R]:
    """``[fn(x) for x in items]`` on ``executor`` (default: a local thread pool), in input order.

    ``executor`` is any engine listed in this module's docstring. ``fn`` and the items must pickle for
    engines in other processes. A single item without an executor runs inline. ``progress=None`` shows a
    tqdm bar only when interactive (a terminal or a notebook); ``False`` hides it. With ``nbytes`` (the
    bytes all items cover, e.g. byte ranges of about equal size) the bar counts bytes and shows MB/s.
    """
    items = list(items)
    if not items:
        return []
    adapter = find_adapter(executor) if executor is not None else None
    total, step = (nbytes, nbytes / len(items)) if nbytes else (len(items), 1)
    with progress_bar(total, desc, progress, unit="B" if nbytes else "it") as bar:

        def advance(n: int) -> None:
            bar.update(n * step)

        if adapter is not None:
            return adapter(executor, fn, items, advance)
        if len(items) == 1:
            result = [fn(items[0])]
            advance(1)
            return result
        with ThreadPoolExecutor(max_workers=min(default_workers(), len(items))) as pool:
            return _map_executor(pool, fn, items, advance)


def ordered_ahead(fn: Callable[[T], R], items: Sequence[T], pool: Executor, ahead: int) -> Iterator[R]:
    """``fn(x)`` for each item, yielded in input order, with at most ``ahead`` items submitted to ``pool``
    beyond the one being consumed: a stream whose memory stays bounded, unlike :func:`map_ordered`."""
    pending = deque(pool.submit(fn, x) for x in items[:ahead])
    for k in range(len(items)):
        result = pending.popleft().result()
        if k + ahead < len(items):
            pending.append(pool.submit(fn, items[k + ahead]))
        yield result


def _apply(fn: Callable[[T], R], item: T) -> R:
    """``fn(item)``: the task shipped to engines that want a plain top-level function."""
    return fn(item)


@register_engine("concurrent.futures._base.Executor")
def _map_executor(pool: Executor, fn: Callable[[T], R], items: Sequence[T], advance: Callable[[int], None]) -> list[R]:
    futures = [pool.submit(fn, x) for x in items]
    try:
        for fut in as_completed(futures):
            fut.result()
            advance(1)
        return [fut.result() for fut in futures]
    finally:
        for fut in futures:
            fut.cancel()


@register_engine("multiprocessing.pool.Pool")
def _map_pool(pool: Any, fn: Callable[[T], R], items: Sequence[T], advance: Callable[[int], None]) -> list[R]:
    results = []
    for result in pool.imap(fn, items):
        results.append(result)
        advance(1)
    return results


@register_engine("distributed.client.Client")
def _map_dask(client: Any, fn: Callable[[T], R], items: Sequence[T], advance: Callable[[int], None]) -> list[R]:
    from distributed import as_completed as dask_as_completed

    futures = client.map(fn, items, pure=False)
    position = {fut.key: i for i, fut in enumerate(futures)}
    results: list[Any] = [None] * len(futures)
    try:
        for fut, result in dask_as_completed(futures, with_results=True):
            results[position[fut.key]] = result
            advance(1)
    finally:
        client.cancel(futures)
    return results


@register_engine("lithops.executors.FunctionExecutor")
def _map_lithops(fexec: Any, fn: Callable[[T], R], items: Sequence[T], advance: Callable[[int], None]) -> list[R]:
    from lithops.wait import ANY_COMPLETED

    # Each item goes as the tuple (fn, item): lithops unpacks tuples into arguments and would treat a
    # function whose parameter is named ``obj`` as its own object-chunking job.
    futures = fexec.map(_apply, [(fn, x) for x in items])
    pending = futures
    while pending:
        done, pending = fexec.wait(pending, return_when=ANY_COMPLETED, show_progressbar=False)
        advance(len(done))
    return fexec.get_result(futures, show_progressbar=False)


@register_engine("ray")
def _map_ray(ray: Any, fn: Callable[[T], R], items: Sequence[T], advance: Callable[[int], None]) -> list[R]:
    task = ray.remote(_apply)
    fn_ref = ray.put(fn)
    refs = [task.remote(fn_ref, x) for x in items]
    pending = refs
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=len(pending), timeout=0.2)
            ray.get(done)
            advance(len(done))
        return ray.get(refs)
    finally:
        for ref in pending:
            ray.cancel(ref)
