"""Partitioning a dataset: the strategies of one object, applied across many, into one list of slices.

``partition_dataset(ds, strategy, *args)`` (``ds.partition``) takes the strategy names (and strategy
functions) of the dataset's format. Every slice is either a piece of ONE object (a slice of that object's own
strategy) or a :class:`~dataplug.datasets.slices.GroupSlice` of whole objects: a slice never holds part of two
objects, and the slices hold every record exactly once, in dataset order (objects in the dataset's order,
each object's records in its own order). How a strategy spans objects depends on what its first argument is:

- a slice count (``num_chunks``, ``num_batches``, ``n_chunks``: ``partition_num_chunks``,
  ``partition_reads_batches``, ``partition_num_points``, ...): that many slices balanced by records over the
  whole dataset: the largest slice holds as few records as the objects allow (``_plan_units``). An object
  heavier than that is cut into ``k`` pieces by its own strategy; runs of lighter objects are grouped whole.
  Slices of an object cut by its own strategy keep that strategy's balance (CSV cuts by bytes).
- a size per slice (``rows_per_chunk``, ``points``, ``seq_per_chunk``, ``lines_per_chunk`` in records;
  ``chunk_size`` in decoded bytes): the strategy runs on each object, and consecutive objects that fit one
  slice whole are grouped up to that size.
- ``square_split_strategy`` and ``partition_bbox`` on a point cloud (LAS/LAZ, COPC): a grid over the
  dataset's bounds, or one box. Each tile's bounds come from its index (``attributes.mins``/``maxs``), and only
  the tiles that meet a cell are planned and read; a cell meeting two tiles gives one slice per tile. Cells
  are half-open across tile edges (``min <= x < max``, closed on the dataset's maximum edge), so a point on
  an edge two tiles share lands in exactly one cell.
- anything else (``partition_regions`` of VCFs, a spatial split of rasters, a strategy with no count): the
  strategy on each object, its slices concatenated in dataset order.

CSV slices get the dataset's schema: each column's types over the objects with rows, widened as over one
file (:func:`~dataplug.formats.generic.csvtypes.widen_columns`), so ``dataplug.arrow.to_reader`` streams the
partition as one table. Planning reads no object and sends no request per object: the objects' identities are
those the dataset's listing found, each slice carries its object's, and its worker refuses an object changed
since.
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dataplug.datasets.slices import GroupSlice
from dataplug.errors import EmptyResultWarning, InvalidFormatError, StrategyArgumentError
from dataplug.strategies import _check_slice_count, _parameters, bbox_window, grid_shape, positive_int, window_overlap

#: First parameters that count slices: the strategy is balanced across the dataset.
COUNT_PARAMETERS = ("num_chunks", "num_batches", "n_chunks")
#: First parameters that size slices in records, and in decoded bytes: objects that fit are grouped.
RECORDS_PER_SLICE = ("rows_per_chunk", "points", "seq_per_chunk", "lines_per_chunk")
BYTES_PER_SLICE = ("chunk_size",)
#: Strategies with a count that split space, not records: per object (point clouds: over the dataset's grid).
GRID_STRATEGIES = ("square_split_strategy", "grid_partition_strategy", "partition_tiles")
#: Strategies that span a point cloud dataset's tiles by their bounds.
SPATIAL_STRATEGIES = ("square_split_strategy", "partition_bbox")


def partition_dataset(ds: Any, strategy: Callable[..., list[Any]] | str, *args: Any, **kwargs: Any) -> list[Any]:
    """The slices of ``strategy(object, *args, **kwargs)`` across the dataset ``ds`` (see the module's
    docstring for how each kind of strategy spans objects), numbered 0.. in order."""
    objects = list(ds.objects)
    if not objects:
        raise StrategyArgumentError(ds.url, "the dataset holds no objects")
    fn, name = _resolve(ds, strategy)
    signature = inspect.signature(fn)
    try:
        bound = signature.bind(objects[0], *args, **kwargs)
    except TypeError as exc:
        raise StrategyArgumentError(ds.url, f"{name}{_parameters(signature)}: {exc}") from None
    _check_slice_count(ds.url, name, bound.arguments)
    first = next(iter(list(signature.parameters)[1:]), None)
    counted = next((p for p in COUNT_PARAMETERS if bound.arguments.get(p) is not None), None)
    plan = _Plan(ds, objects, fn, bound)
    if name in SPATIAL_STRATEGIES and all(_has_bounds(co) for co in objects):
        slices = plan.spatial(name)
    elif counted is not None and name not in GRID_STRATEGIES:
        slices = plan.balanced(counted, positive_int(ds.url, counted, bound.arguments[counted]))
    elif first in RECORDS_PER_SLICE or first in BYTES_PER_SLICE:
        slices = plan.sized(first, positive_int(ds.url, first, bound.arguments[first]), first in BYTES_PER_SLICE)
    else:
        slices = plan.each()
    slices = _one_schema(ds, objects, slices)
    for number, piece in enumerate(slices):
        piece.number = number
    _warn_empty(ds, slices)
    return slices


def _resolve(ds: Any, strategy: Callable[..., list[Any]] | str) -> tuple[Callable[..., list[Any]], str]:
    """The strategy function of the dataset's format, and its name."""
    if isinstance(strategy, str):
        strategies = ds.format.all_strategies()
        if strategy not in strategies:
            raise StrategyArgumentError(ds.url, f"{ds.format.name} has no strategy {strategy!r}; it has {', '.join(sorted(strategies))}")
        return strategies[strategy], strategy
    data_format = getattr(strategy, "data_format", None)
    if data_format is None:
        raise StrategyArgumentError(ds.url, f"{getattr(strategy, '__name__', strategy)!r} is not a dataplug strategy (decorate it with @strategy)")
    if not issubclass(ds.format, data_format):
        raise StrategyArgumentError(ds.url, f"strategy {strategy.__name__} is for {data_format.name} objects, not {ds.format.name}")
    return strategy, strategy.__name__


def _has_bounds(co: Any) -> bool:
    """Whether the object's attributes give its x/y extent (point clouds: ``mins`` and ``maxs``)."""
    attributes = co.attributes
    return hasattr(attributes, "mins") and hasattr(attributes, "maxs")


@dataclass
class _Unit:
    """Objects ``[lo, hi)`` as one slice (``k == 1``), or the object ``lo`` (``hi == lo + 1``) in ``k`` pieces."""

    lo: int
    hi: int
    k: int
    weight: float

    @property
    def share(self) -> float:
        """Records per slice."""
        return self.weight / self.k


class _Plan:
    """One partition call over the dataset's objects: the strategy run on an object with its index loaded
    (no request: the dataset's listing checked the objects), with the call's other arguments."""

    def __init__(self, ds: Any, objects: list[Any], fn: Callable[..., list[Any]], bound: inspect.BoundArguments) -> None:
        self.ds, self.objects, self.fn, self.bound = ds, objects, fn, bound
        #: The strategy's function without the per-call freshness check (one metadata request per object).
        self.run = getattr(fn, "__wrapped__", None)

    def on(self, i: int, **changes: Any) -> list[Any]:
        """The strategy's slices of object ``i``, with arguments ``changes`` replacing the call's."""
        co = self.objects[i]
        bound = inspect.BoundArguments(self.bound.signature, dict(self.bound.arguments))
        bound.arguments.update(changes)
        args, kwargs = bound.args[1:], bound.kwargs
        if self.run is None:
            return co.partition(self.fn, *args, **kwargs)
        co.index()  # loaded once, from the index location; no request to the object
        kept = co._kept_reader
        try:
            return list(self.run(co, *args, **kwargs))
        finally:
            if kept is None:
                co.close()  # a reader the strategy opened (COG tile tables) is not kept: one open file per object otherwise

    # -- a slice count, balanced by records ------------------------------------------------------------

    def balanced(self, parameter: str, n: int) -> list[Any]:
        """``n`` slices balanced by records: big objects cut by their own strategy, small ones grouped."""
        whole = [self.on(i, **{parameter: 1}) for i in range(len(self.objects))]
        counts = [_known(s) for s in whole]
        weights = counts if all(c is not None for c in counts) and sum(counts) else [float(co.size) for co in self.objects]
        units = _plan_units([float(w) for w in weights], n)
        out: list[Any] = []
        for unit in units:
            if unit.k > 1:
                out += self.on(unit.lo, **{parameter: unit.k})
            else:
                out.append(_group([p for i in range(unit.lo, unit.hi) for p in whole[i]]))
        return out

    # -- a size per slice ------------------------------------------------------------------------------

    def sized(self, parameter: str, size: int, in_bytes: bool) -> list[Any]:
        """The strategy per object; runs of objects that are one slice each are grouped up to ``size``."""
        out: list[Any] = []
        run: list[Any] = []
        held = 0
        for i in range(len(self.objects)):
            pieces = self.on(i)
            weight = _bytes(pieces[0], self.objects[i]) if in_bytes else _known(pieces)
            if len(pieces) != 1 or weight is None or weight > size:
                if run:
                    out.append(_group(run))
                out += pieces
                run, held = [], 0
                continue
            if run and held + weight > size:
                out.append(_group(run))
                run, held = [], 0
            run.append(pieces[0])
            held += weight
        if run:
            out.append(_group(run))
        return out

    # -- point clouds by space -------------------------------------------------------------------------

    def spatial(self, name: str) -> list[Any]:
        """A grid over the dataset's bounds (``square_split_strategy``) or one box (``partition_bbox``): each
        tile that meets a cell gives that cell's slice of it (the tile's own ``partition_bbox``)."""
        boxes = np.array([[*co.attributes.mins[:2], *co.attributes.maxs[:2]] for co in self.objects], dtype=np.float64)
        top = (float(boxes[:, 2].max()), float(boxes[:, 3].max()))
        arguments = dict(self.bound.arguments)
        extra = {k: v for k, v in list(arguments.items())[1:] if k not in ("num_chunks", "balance", "minx", "miny", "maxx", "maxy")}
        if name == "partition_bbox":
            window = bbox_window(self.ds.url, arguments["minx"], arguments["miny"], arguments["maxx"], arguments["maxy"])
            cells = [(window, (window[2] >= top[0], window[3] >= top[1]))]
        else:
            if arguments.get("balance"):
                raise StrategyArgumentError(self.ds.url, "square_split_strategy(balance=True) balances one object's cells; a dataset's grid is even over its bounds")
            columns, rows = grid_shape(positive_int(self.ds.url, "num_chunks", arguments["num_chunks"]))
            x = np.linspace(boxes[:, 0].min(), top[0], columns + 1)
            y = np.linspace(boxes[:, 1].min(), top[1], rows + 1)
            cells = [((float(x[i]), float(y[j]), float(x[i + 1]), float(y[j + 1])), (i == columns - 1, j == rows - 1)) for i in range(columns) for j in range(rows)]
        bbox = self.objects[0].format.all_strategies()["partition_bbox"]
        tile = _Plan(self.ds, self.objects, bbox, inspect.signature(bbox).bind(self.objects[0], 0.0, 0.0, 0.0, 0.0, **extra))
        out: list[Any] = []
        for window, closed in cells:
            meets, _ = window_overlap(boxes, window, closed)
            for i in np.flatnonzero(meets).tolist():
                out += tile.on(i, **_tile_window(window, closed, boxes[i]))
        return out

    # -- per object ------------------------------------------------------------------------------------

    def each(self) -> list[Any]:
        """The strategy on every object, slices concatenated in dataset order."""
        return [piece for i in range(len(self.objects)) for piece in self.on(i)]


def _tile_window(window: tuple[float, float, float, float], closed: tuple[bool, bool], box: np.ndarray) -> dict[str, float]:
    """The box to ask one tile's ``partition_bbox`` for, so that it keeps exactly the points of the dataset's
    cell ``window``. A tile closes a box that reaches its own maximum (``x <= max``); where the cell is open
    (``x < max``) and reaches the tile's maximum, the tile is asked for the box up to the float just below,
    which it closes: ``x <= nextafter(max, -inf)`` is ``x < max``."""
    minx, miny, maxx, maxy = window
    if not closed[0] and maxx >= box[2]:
        maxx = float(np.nextafter(maxx, -math.inf))
    if not closed[1] and maxy >= box[3]:
        maxy = float(np.nextafter(maxy, -math.inf))
    return {"minx": minx, "miny": miny, "maxx": max(minx, maxx), "maxy": max(miny, maxy)}


def _plan_units(weights: list[float], n: int) -> list[_Unit]:
    """Units making exactly ``n`` slices whose largest holds as few records as the objects allow (empty
    pieces only when the records are fewer than ``n``).

    For a bound ``m`` on a slice's records, walking the objects in order and closing a group when the next
    object does not fit, and cutting an object heavier than ``m`` into ``ceil(w / m)`` pieces, makes the
    fewest slices (a slice never takes part of two objects, so grouping whole objects greedily is optimal).
    The smallest ``m`` that needs at most ``n`` slices is found by bisection; the units of that walk are then
    split (the one with the largest pieces first: a group at the object boundary nearest its middle, an
    object into one piece more) until there are ``n``, which never raises the largest slice.
    """
    if sum(weights) <= 0:
        weights = [1.0] * len(weights)
    low, high = sum(weights) / n, sum(weights)
    if sum(u.k for u in _walk(weights, low)) <= n:
        high = low
    for _ in range(60):
        if high - low <= 1e-9 * high:
            break
        middle = (low + high) / 2
        low, high = (low, middle) if sum(u.k for u in _walk(weights, middle)) <= n else (middle, high)
    units = _walk(weights, high)
    count = sum(u.k for u in units)
    while count < n:
        at = max(range(len(units)), key=lambda k: units[k].share)
        unit = units[at]
        if unit.hi - unit.lo > 1:
            units[at : at + 1] = _halves(unit, weights)
        else:
            unit.k += 1
        count += 1
    return units


def _walk(weights: list[float], bound: float) -> list[_Unit]:
    """Objects in order as units of at most ``bound`` records per slice: greedy groups of whole objects, an
    object heavier than ``bound`` alone in ``ceil(w / bound)`` pieces."""
    units: list[_Unit] = []
    lo, held = None, 0.0
    for i, w in enumerate(weights):
        if lo is not None and (w > bound or held + w > bound):
            units.append(_Unit(lo, i, 1, held))
            lo = None
        if w > bound:
            units.append(_Unit(i, i + 1, math.ceil(w / bound - 1e-9), w))
            continue
        if lo is None:
            lo, held = i, 0.0
        held += w
    if lo is not None:
        units.append(_Unit(lo, len(weights), 1, held))
    return units


def _halves(unit: _Unit, weights: list[float]) -> list[_Unit]:
    """A group of several objects split at the object boundary nearest half its records."""
    running = np.cumsum(weights[unit.lo : unit.hi])
    cut = int(np.argmin(np.abs(running[:-1] - unit.weight / 2)))
    left = float(running[cut])
    at = unit.lo + cut + 1
    return [_Unit(unit.lo, at, 1, left), _Unit(at, unit.hi, 1, unit.weight - left)]


def _known(pieces: Sequence[Any]) -> int | None:
    """Records of ``pieces`` known from the index, or ``None``."""
    counts = [getattr(p, "known_num_records", None) for p in pieces]
    return None if any(c is None for c in counts) else int(sum(counts))


def _bytes(piece: Any, co: Any) -> int:
    """A whole object's bytes as its strategy measures them: its slice's (decoded) byte range, or its size."""
    span = piece.byte_range()
    return span[1] - span[0] if span else int(co.size)


def _group(parts: list[Any]) -> Any:
    """One object's slice as it is, several objects' slices as a :class:`GroupSlice`."""
    return parts[0] if len(parts) == 1 else GroupSlice(tuple(parts))


def _one_schema(ds: Any, objects: list[Any], slices: list[Any]) -> list[Any]:
    """Slices that parse with their object's column types (CSV) get the dataset's, widened over the objects
    with rows; a dataset whose objects name other columns is an error naming two of them."""
    if not slices or not all(hasattr(_first_part(s), "widened") for s in slices):
        return slices
    from dataplug.formats.generic.csvtypes import widen_columns

    reference = objects[0]
    for co in objects[1:]:
        if tuple(co.attributes.columns) != tuple(reference.attributes.columns):
            raise InvalidFormatError(
                ds.url, f"{co.url} has columns {list(co.attributes.columns)} and {reference.url} {list(reference.attributes.columns)}: one dataset's CSV objects share their columns"
            )
    with_rows = [tuple(co.attributes.column_types) for co in objects if co.attributes.rows]
    types = widen_columns(with_rows) if with_rows else tuple(reference.attributes.column_types)
    return [GroupSlice(tuple(p.widened(types) for p in s.parts)) if isinstance(s, GroupSlice) else s.widened(types) for s in slices]


def _first_part(piece: Any) -> Any:
    return piece.parts[0] if isinstance(piece, GroupSlice) else piece


def _warn_empty(ds: Any, slices: list[Any]) -> None:
    """Warn, as for one object, when some slices are empty because the dataset has fewer records than slices,
    or when there is no slice at all (a box that meets no tile)."""
    if not slices:
        warnings.warn(f"{ds.url}: no object of the dataset meets the strategy's arguments, so there are no slices", EmptyResultWarning, stacklevel=3)
        return
    counts = [getattr(s, "known_num_records", None) for s in slices]
    empty = sum(1 for c in counts if c == 0)
    if empty and len(slices) > 1 and all(c is not None for c in counts) and sum(counts) < len(slices):
        warnings.warn(f"{ds.url}: {empty} of the {len(slices)} slices are empty ({sum(counts)} records for {len(slices)} slices); ask for fewer slices", EmptyResultWarning, stacklevel=3)
