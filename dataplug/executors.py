"""Run "map this function over these items, gather the results in order" on the user's engine.

The default is a local thread pool: the preprocessing maps spend their time in I/O and in numpy kernels
that release the GIL, so threads scale without the start-up cost (and fork hazards) of processes. Any
:class:`concurrent.futures.Executor` (process pool, thread pool, Dask's ``client.get_executor()``) can be
passed instead.
"""

from __future__ import annotations

import os
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, Callable, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    """Worker count of the default pool: one per core."""
    return os.cpu_count() or 1


def _progress(total: int, desc: str, enabled: bool | None):
    from tqdm.auto import tqdm

    if enabled is None:
        import sys

        enabled = sys.stderr.isatty()
    return tqdm(total=total, desc=desc, disable=not enabled, leave=False)


def map_ordered(
    fn: Callable[[T], R],
    items: Sequence[T],
    executor: Executor | None = None,
    progress: bool | None = None,
    desc: str = "dataplug",
) -> list[R]:
    """``[fn(x) for x in items]`` on ``executor`` (default: a local thread pool), in input order.

    A single item runs inline. ``progress=None`` shows a tqdm bar only on an interactive terminal.
    """
    if not items:
        return []
    with _progress(len(items), desc, progress) as bar:
        if executor is None and len(items) == 1:
            result = [fn(items[0])]
            bar.update(1)
            return result
        own = executor is None
        pool = executor or ThreadPoolExecutor(max_workers=default_workers())
        try:
            futures = [pool.submit(fn, x) for x in items]
            results: list[Any] = []
            for fut in futures:
                results.append(fut.result())
                bar.update(1)
            return results
        finally:
            if own:
                pool.shutdown(cancel_futures=True)

