"""Ray: map a function over slices as Ray tasks, or turn Arrow-backed slices into a ``ray.data`` dataset.

Ray is initialised with ``ray.init()`` as usual (the first task also starts it). For preprocessing on Ray
pass the module itself: ``co.preprocess(executor=ray)``.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence, TypeVar

import ray

from dataplug.executors import map_ordered

R = TypeVar("R")


def map_slices(fn: Callable[[Any], R], slices: Sequence[Any], progress: bool | None = None) -> list[R]:
    """``[fn(s) for s in slices]`` as one Ray task per slice, with a progress bar when interactive."""
    return map_ordered(fn, slices, ray, progress, desc="slices on ray")


def _to_arrow(piece: Any) -> Any:
    return piece.to_arrow()


def to_dataset(slices: Sequence[Any]) -> ray.data.Dataset:
    """A ``ray.data`` dataset with one block per slice, for the slices of any format (their ``to_arrow()``)."""
    task = ray.remote(_to_arrow)
    return ray.data.from_arrow_refs([task.remote(piece) for piece in slices])
