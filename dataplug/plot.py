"""Pictures of a partition (``co.plot_partition(slices, path)``, ``dataplug plot``), drawn from the index
and the slices alone (no object bytes are read), except for a COG's preview.

- Spatial slices (LiDAR, COPC): the cells over a point-density map made from the index: LiDAR's block
  bounds and counts, COPC's hierarchy (each node's points spread over its cube's footprint).
- COG slices: their pixel windows over a preview, the smallest overview when it has at most
  ``PREVIEW_PIXELS`` pixels (a few tiles read), else over the compressed bytes of each tile from the index.
- Record slices (text, CSV, FASTQ, FASTA, VCF, ...): records and bytes per slice as bars, and for a
  compressed object the checkpoints along its decoded stream under the slices' spans.

Needs matplotlib (``pip install "dataplug[plot]"``). It draws on a bare ``Figure``, never through
``pyplot``, so it changes no backend or state of the user's session.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dataplug.errors import DataplugError

#: A COG's smallest level is read for the preview when it has at most this many pixels.
PREVIEW_PIXELS = 2**20


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
    raster = hasattr(co.attributes, "level_shapes") and all(hasattr(s, "level") for s in slices)
    fig = Figure(figsize=(9, 7.5) if spatial or raster else (10, 7), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    if raster:
        _raster(fig, co, slices)
    elif spatial:
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
        source = "hierarchy's node counts" if "node_points" in co.index().tables else "block bounds"
        fig.colorbar(image, ax=ax, shrink=0.8, label=f"points per pixel (from the index's {source})")
    for s, (x0, y0, x1, y1) in zip(slices, windows):
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="white", linewidth=1.2))
        label = f"{s.number}" + (f"\n{s.known_num_records:,}" if s.known_num_records is not None else "")
        ax.text((x0 + x1) / 2, (y0 + y1) / 2, label, color="white", ha="center", va="center", fontsize=7)
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(f"{len(slices)} spatial slices of {_name(co)} ({co.format.name}): number and points known from the index")


def _density(co: Any, extent: tuple[float, float, float, float], bins: int = 256) -> np.ndarray | None:
    """Points per pixel, spreading each indexed block's points evenly over its bounding box (LiDAR: the
    index keeps per-block bounds and counts), or each octree node's over its cube's footprint (COPC: the
    hierarchy's keys and point counts); no point is read."""
    tables = co.index().tables
    if "block_bounds" in tables and "block_first" in tables:
        bounds = np.asarray(tables["block_bounds"], dtype=np.float64)  # min x, y, z, max x, y, z per block
        x0, y0, x1, y1 = bounds[:, 0], bounds[:, 1], bounds[:, 3], bounds[:, 4]
        n = np.diff(np.asarray(tables["block_first"], dtype=np.float64))
    elif "node_key" in tables and "node_points" in tables:
        a = co.attributes
        keys = np.asarray(tables["node_key"], dtype=np.float64)  # depth, x, y, z per node
        side = 2 * a.halfsize / 2 ** keys[:, 0]
        x0, y0 = a.center[0] - a.halfsize + keys[:, 1] * side, a.center[1] - a.halfsize + keys[:, 2] * side
        x1, y1 = x0 + side, y0 + side
        n = np.asarray(tables["node_points"], dtype=np.float64)
    else:
        return None
    grid = np.zeros((bins, bins))
    xs = np.linspace(extent[0], extent[1], bins + 1)
    ys = np.linspace(extent[2], extent[3], bins + 1)
    for bx0, by0, bx1, by1, count in zip(x0.tolist(), y0.tolist(), x1.tolist(), y1.tolist(), n.tolist()):
        # each pixel gets the share of the box's area (within the extent) that it covers, so boxes that meet
        # inside a pixel add up to an even density there
        wx = np.clip(np.minimum(xs[1:], bx1) - np.maximum(xs[:-1], bx0), 0, None)
        wy = np.clip(np.minimum(ys[1:], by1) - np.maximum(ys[:-1], by0), 0, None)
        ix, iy = np.flatnonzero(wx), np.flatnonzero(wy)
        if count and ix.size and iy.size:
            grid[ix[0] : ix[-1] + 1, iy[0] : iy[-1] + 1] += count * np.outer(wx[ix[0] : ix[-1] + 1], wy[iy[0] : iy[-1] + 1]) / (wx.sum() * wy.sum())
        elif count:  # a flat box (points on a line): the pixel it lies in
            i = min(max(int(np.searchsorted(xs, bx0, side="right")) - 1, 0), bins - 1)
            j = min(max(int(np.searchsorted(ys, by0, side="right")) - 1, 0), bins - 1)
            grid[i, j] += count
    return grid


def _raster(fig: Any, co: Any, slices: list[Any]) -> None:
    """A COG's slices: their windows (in the pixels of the first slice's level) over a preview."""
    from matplotlib.patches import Rectangle

    a = co.attributes
    level = slices[0].level
    height, width = a.level_shapes[level]
    ax = fig.add_subplot()
    extent = (0, width, height, 0)
    smallest = a.levels - 1
    if a.level_shapes[smallest][0] * a.level_shapes[smallest][1] <= PREVIEW_PIXELS:
        image, what = _preview(co.partition("partition_tiles", 1, level=smallest)[0].get(), a.nodata)
        shown = ax.imshow(image, extent=extent, cmap="gray", aspect="equal", interpolation="nearest")
        what = f"level {smallest} ({a.level_shapes[smallest][1]} x {a.level_shapes[smallest][0]}), {what}"
    else:
        tables = co.index().tables
        (th, tw) = a.tile_shapes[level]
        down, across = -(-height // th), -(-width // tw)
        counts = np.asarray(tables[f"bytecounts_{level}"], dtype=np.float64).reshape(-1, down, across).sum(axis=0)
        grid = (0, across * tw, down * th, 0)  # edge tiles reach past the image
        shown = ax.imshow(counts / 1e3, extent=grid, cmap="viridis", aspect="equal", interpolation="nearest")
        fig.colorbar(shown, ax=ax, shrink=0.8, label="compressed kB per tile (from the index)")
        what = f"compressed bytes per {tw} x {th} tile"
    label = len(slices) <= 100
    for s in slices:
        scale_x, scale_y = width / a.level_shapes[s.level][1], height / a.level_shapes[s.level][0]
        col_off, row_off, w, h = s.window
        if not w or not h:
            continue
        x, y = col_off * scale_x, row_off * scale_y
        ax.add_patch(Rectangle((x, y), w * scale_x, h * scale_y, fill=False, edgecolor="tab:red", linewidth=1.2))
        if label:
            ax.text(x + w * scale_x / 2, y + h * scale_y / 2, f"{s.number}\n{s.num_records:,} px", color="yellow", ha="center", va="center", fontsize=7)
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.set_xlabel(f"column (level {level})")
    ax.set_ylabel(f"row (level {level})")
    ax.set_title(f"{len(slices)} windows of {_name(co)} (COG, level {level}) over {what}", fontsize=9)


def _preview(pixels: np.ndarray, nodata: str | None) -> tuple[np.ndarray, str]:
    """An image to show of ``(bands, rows, cols)`` pixels: 8-bit RGB as it is, else the first band stretched
    between its 2nd and 98th percentiles, nodata and non-finite values masked."""
    if pixels.shape[0] >= 3 and pixels.dtype == np.uint8:
        return np.moveaxis(pixels[:3], 0, -1), "RGB"
    band = pixels[0].astype(np.float64)
    mask = ~np.isfinite(band)
    try:
        if nodata is not None:
            mask |= band == float(nodata)
    except ValueError:
        pass
    values = band[~mask]
    lo, hi = np.percentile(values, (2, 98)) if values.size else (0.0, 1.0)
    return np.ma.masked_array(np.clip((band - lo) / max(hi - lo, 1e-12), 0, 1), mask), "band 1, 2-98 % stretch"


def _records(fig: Any, co: Any, slices: list[Any]) -> None:
    numbers = np.array([s.number for s in slices])
    records = [s.known_num_records for s in slices]
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
    from dataplug.framings.base import cut_offsets

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
