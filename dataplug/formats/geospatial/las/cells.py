"""Geometry of the LiDAR strategies, pure functions of the index: which blocks and runs meet a window, the
balanced grid, and the k-d split of whole chunks. Nothing here reads data."""

from __future__ import annotations

import numpy as np

from dataplug.formats.geospatial.las.blocks import Blocks
from dataplug.formats.geospatial.las.slices import Row
from dataplug.strategies import window_overlap

Window = tuple[float, float, float, float]


def meeting(blocks: Blocks, window: Window, closed: tuple[bool, bool]) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the blocks whose bounds meet ``window`` (every point in the window is in one of them), and
    for each whether the window holds its bounds (all its points are in the window)."""
    meets, inside = window_overlap(blocks.bounds[:, [0, 1, 3, 4]], window, closed)
    chosen = np.flatnonzero(meets)
    return chosen, inside[chosen]


def block_rows(blocks: Blocks, chosen: np.ndarray, whole: np.ndarray | None, merge: bool) -> list[Row]:
    """Rows for blocks ``chosen`` (sorted indices) and whether each is kept whole (default: all are); with
    ``merge`` (LAS), adjacent blocks alike in that are one row, else (LAZ chunks) one row per block."""
    rows: list[Row] = []
    flags = np.ones(chosen.size, dtype=bool) if whole is None else whole
    for k, flag in zip(chosen.tolist(), flags.tolist()):
        row = (int(blocks.start[k]), int(blocks.end[k]), int(blocks.first[k]), int(blocks.first[k + 1] - blocks.first[k]), int(flag))
        last = rows[-1] if rows else None
        if merge and last is not None and last[1] == row[0] and last[4] == row[4]:
            rows[-1] = (last[0], row[1], last[2], last[3] + row[3], row[4])
        else:
            rows.append(row)
    return rows


def las_window_rows(
    blocks: Blocks,
    window: Window,
    closed: tuple[bool, bool],
    raw: tuple[int, int, int, int],
    layout: tuple[int, int],
) -> list[Row]:
    """The rows of an uncompressed LAS that a window slice reads: the runs that meet the window (raw
    thresholds ``raw`` = a_x, b_x, a_y, b_y keep ``a <= X < b``), in point order, runs that touch
    joined (the storage layer joins near ranges into one request by itself). A row is
    whole when every point in it is in the window. ``layout`` is (offset to point data, point size)."""
    chosen, inside = meeting(blocks, window, closed)
    whole_blocks, partial = chosen[inside], chosen[~inside]
    starts, stops, whole = [blocks.first[whole_blocks]], [blocks.first[whole_blocks + 1]], [np.ones(whole_blocks.size, bool)]
    if partial.size and blocks.run_first is not None and blocks.run_bounds is not None:
        per_block = blocks.run_first[partial + 1] - blocks.run_first[partial]
        block = np.repeat(partial, per_block)
        within = np.arange(block.size) - np.repeat(np.cumsum(per_block) - per_block, per_block)
        b = blocks.run_bounds[blocks.run_first[block] + within]
        ax, bx, ay, by = raw
        meets = (b[:, 2] >= ax) & (b[:, 0] < bx) & (b[:, 3] >= ay) & (b[:, 1] < by)
        held = (b[:, 0] >= ax) & (b[:, 2] < bx) & (b[:, 1] >= ay) & (b[:, 3] < by)
        run_start = blocks.first[block] + within * blocks.run_points
        starts.append(run_start[meets])
        stops.append(np.minimum(run_start + blocks.run_points, blocks.first[block + 1])[meets])
        whole.append(held[meets])
    elif partial.size:
        starts.append(blocks.first[partial])
        stops.append(blocks.first[partial + 1])
        whole.append(np.zeros(partial.size, bool))
    start, stop, flag = np.concatenate(starts), np.concatenate(stops), np.concatenate(whole)
    if not start.size:
        return []
    order = np.argsort(start, kind="stable")
    start, stop, flag = start[order], stop[order], flag[order]
    gap = start[1:] - stop[:-1]
    heads = np.concatenate(([0], np.flatnonzero(gap > 0) + 1))
    row_whole = np.logical_and.reduceat(flag, heads)
    row_start, row_stop = start[heads], stop[np.append(heads[1:], start.size) - 1]
    data_start, size = layout
    return [
        (data_start + a * size, data_start + b * size, a, b - a, int(w)) for a, b, w in zip(row_start.tolist(), row_stop.tolist(), row_whole.tolist())
    ]


def kd_split(centres: np.ndarray, weights: np.ndarray, parts: int) -> list[np.ndarray]:
    """``parts`` groups of indices into ``centres`` ((n, 2) x, y), each sorted: split in two across the
    longer side of the centres' extent at the weighted median (``weights``), recursively, so each group's
    weight is near ``weights.sum() / parts``. Groups come in k-d order (neighbours next to each other); a
    side with at least as many items as groups gives each group one or more, else each at most one."""
    out: list[np.ndarray] = []

    def split(idx: np.ndarray, k: int) -> None:
        if k == 1 or idx.size == 0:
            out.append(np.sort(idx))
            out.extend(idx[:0] for _ in range(k - 1))
            return
        c = centres[idx]
        axis = int(np.argmax(c.max(axis=0) - c.min(axis=0)))
        order = idx[np.argsort(c[:, axis], kind="stable")]
        k1 = k // 2
        cumulative = np.cumsum(weights[order], dtype=np.float64)
        target = cumulative[-1] * k1 / k
        j = int(np.searchsorted(cumulative, target))
        before = cumulative[j - 1] if j > 0 else 0.0
        cut = j + 1 if j < idx.size and cumulative[j] - target < target - before else j
        lo, hi = (k1, idx.size - (k - k1)) if idx.size >= k else (max(0, idx.size - (k - k1)), min(k1, idx.size))
        cut = min(max(cut, lo), hi)
        split(order[:cut], k1)
        split(order[cut:], k - k1)

    split(np.arange(len(weights)), parts)
    return out


def _quantile_cuts(weights: np.ndarray, edges: np.ndarray, parts: int) -> np.ndarray:
    """``parts + 1`` positions splitting a histogram (``weights`` between ``edges``) into parts of equal
    weight, points taken as uniform inside a bin; even spacing when the histogram is empty."""
    total = float(weights.sum())
    if total <= 0:
        return np.linspace(edges[0], edges[-1], parts + 1)
    cdf = np.concatenate(([0.0], np.cumsum(weights, dtype=np.float64)))
    targets = total * np.arange(1, parts) / parts
    k = np.clip(np.searchsorted(cdf, targets, side="left"), 1, weights.size)
    frac = (targets - cdf[k - 1]) / np.maximum(weights[k - 1], 1e-300)
    cuts = edges[k - 1] + np.clip(frac, 0.0, 1.0) * (edges[k] - edges[k - 1])
    return np.concatenate(([edges[0]], cuts, [edges[-1]]))


def balanced_edges(
    histogram: np.ndarray, grid: int, extent: Window, mins: tuple[float, ...], maxs: tuple[float, ...], columns: int, rows: int
) -> tuple[np.ndarray, np.ndarray]:
    """Column edges at quantiles of the x distribution, then row edges of each column at quantiles of its y
    distribution, clipped into the cloud's extent so the cells still tile it."""
    hist = histogram.sum(axis=0, dtype=np.float64).reshape(grid, grid)  # [x cell, y cell]
    hx0, hy0, hx1, hy1 = extent
    gx, gy = np.linspace(hx0, hx1, grid + 1), np.linspace(hy0, hy1, grid + 1)
    x0, y0, x1, y1 = mins[0], mins[1], maxs[0], maxs[1]
    x_edges = _tile(_quantile_cuts(hist.sum(axis=1), gx, columns), x0, x1)
    y_edges = np.empty((columns, rows + 1))
    for i in range(columns):
        overlap = np.clip(np.minimum(gx[1:], x_edges[i + 1]) - np.maximum(gx[:-1], x_edges[i]), 0, None) / np.maximum(np.diff(gx), 1e-300)
        y_edges[i] = _tile(_quantile_cuts(overlap @ hist, gy, rows), y0, y1)
    return x_edges, y_edges


def _tile(edges: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``edges`` clipped into ``[lo, hi]``, non-decreasing, first exactly ``lo`` and last exactly ``hi``."""
    out = np.maximum.accumulate(np.clip(edges, lo, hi))
    out[0], out[-1] = lo, hi
    return out
