"""Lithops: map a function over slices on any Lithops backend, results in slice order.

Slices travel as they are: ``fs = fexec.map(fn, slices)`` then ``fexec.get_result(fs)`` works too, as long
as ``fn``'s first parameter is not named ``obj`` (Lithops reserves that name for its own object chunking).
For preprocessing on Lithops pass the executor itself: ``co.preprocess(executor=fexec)``. Fully offline,
on this machine::

    fexec = lithops.FunctionExecutor(config={"lithops": {"backend": "localhost", "storage": "localhost"}})
"""

from __future__ import annotations

from typing import Any, Callable, Sequence, TypeVar

import lithops

from dataplug.executors import map_ordered

R = TypeVar("R")


def map_slices(fexec: lithops.FunctionExecutor, fn: Callable[[Any], R], slices: Sequence[Any], progress: bool | None = None) -> list[R]:
    """``[fn(s) for s in slices]`` as one Lithops map job, with a progress bar when interactive."""
    return map_ordered(fn, slices, fexec, progress, desc="slices on lithops")
