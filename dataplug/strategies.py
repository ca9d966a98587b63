"""Partitioning strategies: pure functions of an object's index that return slices.

A strategy reads no object bytes. :func:`strategy` registers a function on its format and makes it safe to
call directly or through ``co.partition``: it checks the format, loads the index and refuses a stale one.
The helpers below compute exact record boundaries and the spatial grids and window tests shared by several
formats.
"""

from __future__ import annotations

import functools
import inspect
import math
from typing import TYPE_CHECKING, Any, Callable, TypeVar

import numpy as np

from dataplug.errors import StrategyArgumentError

if TYPE_CHECKING:
    from dataplug.cloudobject import CloudObject
    from dataplug.format import DataFormat

F = TypeVar("F", bound=Callable[..., Any])

#: The most slices a strategy call may be asked for by count (``num_chunks``, ``n_chunks``, ``num_batches``, a
#: grid's ``n_splits``). Asking for more (``partition_num_chunks(co, 10**7)`` on a small object held 10^7
#: slices, 3-10 GB) is refused before any slice is built. Strategies that take a size per slice are not capped.
MAX_SLICES = 100_000
#: Strategy parameters that count slices, and the power that gives the slices (a grid of ``n_splits`` per side).
_SLICE_COUNTS = {"num_chunks": 1, "n_chunks": 1, "num_batches": 1, "n_splits": 2}


def strategy(*data_formats: type[DataFormat]) -> Callable[[F], F]:
    """Decorator: ``fn(co, *args, **kwargs) -> list of slices`` becomes a strategy of the given formats."""

    def decorate(fn: F) -> F:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def run(co: CloudObject, *args: Any, **kwargs: Any) -> list[Any]:
            if not issubclass(co.format, data_formats):
                names = " or ".join(f.name for f in data_formats)
                raise StrategyArgumentError(co.url, f"strategy {fn.__name__} is for {names} objects, not {co.format.name}")
            try:
                bound = signature.bind(co, *args, **kwargs)
            except TypeError as exc:
                raise StrategyArgumentError(co.url, f"{fn.__name__}{_parameters(signature)}: {exc}") from None
            _check_slice_count(co.url, fn.__name__, bound.arguments)
            co.ensure_fresh_index()
            return list(fn(co, *args, **kwargs))

        run.data_format = data_formats[0]  # type: ignore[attr-defined]
        for data_format in data_formats:
            data_format.strategies[fn.__name__] = run
        return run  # type: ignore[return-value]

    return decorate


def _check_slice_count(url: str, name: str, arguments: dict[str, Any]) -> None:
    """Refuse a slice count above :data:`MAX_SLICES` before the strategy builds anything."""
    for parameter, power in _SLICE_COUNTS.items():
        value = arguments.get(parameter)
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and int(value) ** power > MAX_SLICES:
            asked = f"{value}" if power == 1 else f"{value} x {value}"
            raise StrategyArgumentError(
                url, f"{name}: {parameter}={value} asks for {asked} slices, over the {MAX_SLICES:,} one call may make (dataplug.strategies.MAX_SLICES)"
            )


def _parameters(signature: inspect.Signature) -> str:
    """``(num_chunks, *, n_chunks=None)``: a strategy's parameters after the object, for error messages."""
    params = [p.replace(annotation=inspect.Parameter.empty) for p in list(signature.parameters.values())[1:]]
    return str(signature.replace(parameters=params, return_annotation=inspect.Signature.empty))


def PartitioningStrategy(dataformat: type[DataFormat]) -> Callable[[F], F]:  # noqa: N802 - original API name
    """The original Dataplug's decorator name for :func:`strategy`."""
    return strategy(dataformat)


def positive_int(url: str, name: str, value: Any) -> int:
    """``value`` as an int >= 1, or :class:`StrategyArgumentError` naming the argument."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise StrategyArgumentError(url, f"{name} must be a whole number >= 1, got {value!r}")
    return int(value)


def even_bounds(total: int, parts: int) -> np.ndarray:
    """``parts + 1`` boundaries splitting ``total`` records into ``parts`` runs whose sizes differ by at most 1.

    Exact for any sizes: bound ``i`` is ``i * total // parts``, computed as ``i * q + i * r // parts`` with
    ``q, r = divmod(total, parts)`` so no product exceeds ``total`` or ``parts ** 2`` (int64 while those fit,
    Python integers beyond).
    """
    total, parts = int(total), int(parts)
    q, r = divmod(total, parts)
    if total < 2**63 and parts < 2**31:
        i = np.arange(parts + 1, dtype=np.int64)
        return i * q + (i * r) // parts
    return np.array([i * q + (i * r) // parts for i in range(parts + 1)], dtype=np.int64 if total < 2**63 else object)


def step_bounds(total: int, step: int) -> np.ndarray:
    """Boundaries every ``step`` records (the last run shorter); one empty run for an empty object."""
    return np.append(np.arange(0, total, step, dtype=np.int64), total) if total else np.zeros(2, np.int64)


def monotonic_bounds(bounds: np.ndarray, total: int, first: int = 0) -> np.ndarray:
    """Clamp estimated boundaries into ``[first, total]``, starting at ``first``, ending at ``total``,
    never decreasing: whatever the estimate, the runs cover every record exactly once."""
    out = np.maximum.accumulate(np.clip(np.asarray(bounds, dtype=np.int64), first, total))
    out[0], out[-1] = first, total
    return out


def grid_shape(num_chunks: int) -> tuple[int, int]:
    """Columns and rows of the near-square grid the original Dataplug's ``square_split_strategy`` used
    (7 cells asked: 3 x 2)."""
    columns = max(1, round(math.sqrt(num_chunks)))
    return columns, max(1, round(num_chunks / columns))


def bbox_window(url: str, minx: float, miny: float, maxx: float, maxy: float) -> tuple[float, float, float, float]:
    """``partition_bbox``'s window as floats, or :class:`StrategyArgumentError` unless it is finite with
    ``minx <= maxx`` and ``miny <= maxy``."""
    window = (float(minx), float(miny), float(maxx), float(maxy))
    if not all(math.isfinite(v) for v in window) or window[0] > window[2] or window[1] > window[3]:
        raise StrategyArgumentError(url, f"partition_bbox needs finite minx <= maxx and miny <= maxy, got {window}")
    return window


def window_overlap(boxes: np.ndarray, window: tuple[float, ...], closed: tuple[bool, bool]) -> tuple[np.ndarray, np.ndarray]:
    """For boxes ((n, 4) min x, min y, max x, max y), whether each meets ``window`` (min x, min y, max x,
    max y; ``min <= x < max``, or ``<= max`` on an axis whose ``closed`` flag is set) and whether the
    window holds it whole."""
    x0, y0, x1, y1 = window
    b = boxes
    meets = (b[:, 2] >= x0) & (b[:, 3] >= y0)
    meets &= (b[:, 0] <= x1) if closed[0] else (b[:, 0] < x1)
    meets &= (b[:, 1] <= y1) if closed[1] else (b[:, 1] < y1)
    inside = (b[:, 0] >= x0) & (b[:, 1] >= y0)
    inside &= (b[:, 2] <= x1) if closed[0] else (b[:, 2] < x1)
    inside &= (b[:, 3] <= y1) if closed[1] else (b[:, 3] < y1)
    return meets, inside
