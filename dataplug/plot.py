"""Pictures of a partition (``co.plot_partition(slices, path)``, ``dataplug plot``), drawn from the index
and the slices alone: no object bytes are read.

- Spatial slices (LiDAR, COPC): the cells over a point-density map made from the index's block bounds
  (LiDAR; COPC cells are drawn over a blank extent).
- Record slices (text, CSV, FASTQ, FASTA, VCF, ...): records and bytes per slice as bars, and for a
  compressed object the checkpoints along its decoded stream under the slices' spans.

Needs matplotlib (``pip install "dataplug[plot]"``). It draws on a bare ``Figure``, never through
``pyplot``, so it changes no backend or state of the user's session.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dataplug.errors import DataplugError


def plot_partition(co: Any, slices: list[Any], path: str) -> str:
    """Write a PNG of ``slices`` (a partition of ``co``) to ``path``; returns ``path``."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise DataplugError(co.url, 'plots need matplotlib: pip install "dataplug[plot]"') from None
    if not slices:
        raise DataplugError(co.url, "no slices to draw")
    windows = [getattr(s, "extent", getattr(s, "window", None)) for s in slices]
    spatial = all(isinstance(w, tuple) and len(w) == 4 for w in windows) and hasattr(co.attributes, "mins")
    fig = Figure(figsize=(9, 7.5) if spatial else (10, 7), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    if spatial:
        _spatial(fig, co, slices, windows)
    else:
        _records(fig, co, slices)
    fig.savefig(path, format="png")
    return path


def _spatial(fig: Any, co: Any, slices: list[Any], windows: list[tuple[float, float, float, float]]) -> None:
    from matplotlib.patches import Rectangle

    a = co.attributes
    ax = fig.add_subplot()
    extent = (a.mins[0], a.maxs[0], a.mins[1], a.maxs[1])
    density = _density(co, extent)
    if density is not None:
        image = ax.imshow(density.T, origin="lower", extent=extent, cmap="viridis", aspect="equal", interpolation="nearest")
        fig.colorbar(image, ax=ax, shrink=0.8, label="points per pixel (from the index's block bounds)")
    for s, (x0, y0, x1, y1) in zip(slices, windows):
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="white", linewidth=1.2))
        label = f"{s.number}" + (f"\n{s.num_records:,}" if s.num_records is not None else "")
        ax.text((x0 + x1) / 2, (y0 + y1) / 2, label, color="white", ha="center", va="center", fontsize=7)
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(f"{len(slices)} spatial slices of {_name(co)} ({co.format.name}): number and points known from the index")


def _density(co: Any, extent: tuple[float, float, float, float], bins: int = 256) -> np.ndarray | None:
    """Points per pixel, spreading each indexed block's points evenly over its bounding box (the index
    keeps per-block bounds and counts, so no point is read)."""
    tables = co.index().tables
    if "block_bounds" not in tables or "block_first" not in tables:
        return None
    bounds = np.asarray(tables["block_bounds"], dtype=np.float64)  # min x, y, z, max x, y, z per block
    x0, y0, x1, y1 = bounds[:, 0], bounds[:, 1], bounds[:, 3], bounds[:, 4]
    n = np.diff(np.asarray(tables["block_first"], dtype=np.float64))
    grid = np.zeros((bins, bins))
    sx = bins / max(extent[1] - extent[0], 1e-12)
    sy = bins / max(extent[3] - extent[2], 1e-12)
    i0 = np.clip(((x0 - extent[0]) * sx).astype(np.int64), 0, bins - 1)
    i1 = np.clip(((x1 - extent[0]) * sx).astype(np.int64), 0, bins - 1)
    j0 = np.clip(((y0 - extent[2]) * sy).astype(np.int64), 0, bins - 1)
    j1 = np.clip(((y1 - extent[2]) * sy).astype(np.int64), 0, bins - 1)
    for a, b, c, d, count in zip(i0.tolist(), i1.tolist(), j0.tolist(), j1.tolist(), n.tolist()):
        grid[a : b + 1, c : d + 1] += count / ((b - a + 1) * (d - c + 1))
    return grid


def _records(fig: Any, co: Any, slices: list[Any]) -> None:
    numbers = np.array([s.number for s in slices])
    records = [s.num_records for s in slices]
    ranges = [s.byte_range() for s in slices]
    compressed = getattr(co.attributes, "compression", "none") not in ("none", None)
    axes = fig.subplots(3 if compressed else 2, 1, squeeze=False)[:, 0]
    if all(r is not None for r in records):
        axes[0].bar(numbers, records, width=0.9, color="tab:blue")
        axes[0].set_ylabel("records")
        empty = sum(1 for r in records if r == 0)
        axes[0].set_title(f"{len(slices)} slices of {_name(co)} ({co.format.name}): {sum(records):,} records" + (f", {empty} empty" if empty else ""))
    else:
        axes[0].set_axis_off()
        axes[0].set_title(f"{len(slices)} slices of {_name(co)} ({co.format.name})")
    sizes = [0 if r is None else r[1] - r[0] for r in ranges]
    axes[1].bar(numbers, np.array(sizes) / 1e6, width=0.9, color="tab:orange")
    axes[1].set_ylabel("decoded MB read" if compressed else "MB read")
    axes[1].set_xlabel("slice")
    if compressed:
        _checkpoints(axes[2], co, ranges)


def _checkpoints(ax: Any, co: Any, ranges: list[tuple[int, int] | None]) -> None:
    """The slices' spans along the decoded stream, with the codec's checkpoints as ticks below them."""
    from dataplug.framing import cut_offsets

    total = co.attributes.uncompressed_size
    for k, r in enumerate(ranges):
        if r is not None:
            ax.axvspan(r[0] / 1e6, r[1] / 1e6, ymin=0.35, ymax=1.0, color=("tab:blue", "tab:cyan")[k % 2], alpha=0.6, linewidth=0)
    cuts = cut_offsets(co)
    ax.vlines(cuts / 1e6, 0, 0.3, color="black", linewidth=0.6)
    ax.set_xlim(0, total / 1e6)
    ax.set_ylim(0, 1)
    ax.set_yticks([])
    ax.set_xlabel("decoded stream (MB)")
    ax.set_title(f"{co.attributes.compression}: {len(cuts)} checkpoints (ticks) and the slices' spans (bands)", fontsize=9)


def _name(co: Any) -> str:
    return co.url.rstrip("/").rsplit("/", 1)[-1]
