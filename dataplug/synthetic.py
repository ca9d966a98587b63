"""Seeded synthetic LiDAR tiles for benchmarks, demos and tests, in the two point orders that matter.

- :func:`scan_ordered_cloud`: what an airborne scanner writes, points in GPS-time order. The aircraft flies
  parallel, overlapping flight strips (north, then south, ...); across each strip a zig-zag scanner sweeps
  scan lines of a few hundred points. Consecutive points are close along a scan line, but any run longer
  than one scan line spans the whole strip width: this is the order of real delivered tiles.
- :func:`morton_ordered_cloud`: the same kind of scene sorted along a Morton curve of small tiles, as
  ``lassort`` leaves a tile, so every run of points covers a compact patch.

Both return a ``laspy.LasData`` (point format 6 by default, 1 cm scale); :func:`write_cloud` writes one as
LAS or LAZ by the file name's suffix.
"""

from __future__ import annotations

import os

import numpy as np

try:
    import laspy
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("synthetic LiDAR needs laspy: pip install 'dataplug[lidar]'") from exc

#: Scanner pulse rate (points per second of GPS time) and the time an aircraft takes to turn between strips.
PULSE_RATE = 200_000.0
TURN_SECONDS = 90.0


def scan_ordered_cloud(
    points: int,
    *,
    size: float = 1000.0,
    strips: int = 6,
    line_points: int = 400,
    overlap: float = 0.3,
    point_format: int = 6,
    seed: int = 0,
) -> laspy.LasData:
    """A ``size`` x ``size`` m tile of ``points`` points in acquisition (GPS-time) order.

    ``strips`` flight strips run along y in alternating directions and overlap their neighbours by
    ``overlap`` of their width; each is a sequence of zig-zag scan lines of ``line_points`` points swept
    across it (alternately west-east and east-west, advancing along the track while sweeping). The flight
    line wanders a few metres, so strips are not perfectly straight. Heights are terrain, box-shaped
    buildings and scattered vegetation; ``point_source_id`` is the strip number, ``gps_time`` strictly
    increases (with a turn between strips), and ``scan_direction_flag``/``edge_of_flight_line`` follow the
    sweeps where the point format has them. The same arguments give the same cloud.
    """
    if points < 0 or strips < 1 or line_points < 1 or not 0 <= overlap < 1 or size <= 0:
        raise ValueError("scan_ordered_cloud needs points >= 0, strips >= 1, line_points >= 1, 0 <= overlap < 1 and size > 0")
    rng = np.random.default_rng(seed)
    width = size / (strips - (strips - 1) * overlap)
    per_strip = np.diff(np.arange(strips + 1) * points // strips)
    xs, ys, sweeps, strip_ids, times, edges = [], [], [], [], [], []
    t0 = 0.0
    for k, n in enumerate(per_strip.tolist()):
        j = np.arange(n)
        line, step = j // line_points, j % line_points
        lines = max(-(-n // line_points), 1)
        spacing = size / lines
        forward = line % 2 == 0
        u = (step + rng.uniform(0.1, 0.9, n)) / line_points  # across-track fraction, in sweep order
        u = np.where(forward, u, 1 - u)
        along = (line + step / line_points) * spacing + rng.normal(0, 0.05 * spacing, n)
        centre = width / 2 + k * width * (1 - overlap) + 3.0 * np.sin(along / 170.0 + k)
        xs.append(centre + (u - 0.5) * width)
        ys.append(along if k % 2 == 0 else size - along)
        sweeps.append(forward)
        strip_ids.append(np.full(n, k + 1))
        times.append(t0 + j / PULSE_RATE)
        edges.append((step == 0) | (step == line_points - 1))
        t0 += n / PULSE_RATE + TURN_SECONDS
    x, y = np.clip(_joined(xs, float), 0.0, size), np.clip(_joined(ys, float), 0.0, size)
    las = _scene(x, y, rng, point_format)
    dims = set(las.point_format.dimension_names)
    las.point_source_id = _joined(strip_ids, int)
    if "gps_time" in dims:
        las.gps_time = 3.0e8 + _joined(times, float)
    las.scan_direction_flag = _joined(sweeps, bool).astype(np.uint8)
    las.edge_of_flight_line = _joined(edges, bool).astype(np.uint8)
    las.update_header()
    return las


def morton_ordered_cloud(points: int, *, size: float = 1000.0, tiles: int = 256, point_format: int = 6, seed: int = 0) -> laspy.LasData:
    """A ``size`` x ``size`` m tile of ``points`` uniformly scattered points sorted along a Morton (Z-order)
    curve of ``tiles`` x ``tiles`` cells (``tiles`` a power of two), as ``lassort`` leaves a tile."""
    if points < 0 or tiles < 1 or tiles & (tiles - 1) or size <= 0:
        raise ValueError("morton_ordered_cloud needs points >= 0, tiles a power of two and size > 0")
    rng = np.random.default_rng(seed)
    x, y = rng.uniform(0, size, points), rng.uniform(0, size, points)
    tx = np.minimum(x / size * tiles, tiles - 1).astype(np.uint64)
    ty = np.minimum(y / size * tiles, tiles - 1).astype(np.uint64)
    code = np.zeros(points, dtype=np.uint64)
    for bit in range(tiles.bit_length() - 1):
        code |= ((tx >> np.uint64(bit)) & np.uint64(1)) << np.uint64(2 * bit)
        code |= ((ty >> np.uint64(bit)) & np.uint64(1)) << np.uint64(2 * bit + 1)
    order = np.argsort(code, kind="stable")
    las = _scene(x[order], y[order], rng, point_format)
    if "gps_time" in las.point_format.dimension_names:
        las.gps_time = 3.0e8 + np.arange(points) / PULSE_RATE
    las.update_header()
    return las


def write_cloud(las: laspy.LasData, path: str | os.PathLike[str]) -> int:
    """Write ``las`` to ``path`` (LAZ when the name ends in ``.laz``, with laspy's default 50 000-point chunks);
    returns the file's size in bytes."""
    las.write(os.fspath(path))
    return os.path.getsize(path)


def _joined(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype)


def _scene(x: np.ndarray, y: np.ndarray, rng: np.random.Generator, point_format: int) -> laspy.LasData:
    """Points at ``x``, ``y`` (m) with terrain, building and vegetation heights and their classes."""
    n = x.size
    header = laspy.LasHeader(point_format=point_format, version="1.4" if point_format >= 6 else "1.2")
    header.scales, header.offsets = np.array([0.01, 0.01, 0.01]), np.zeros(3)
    las = laspy.LasData(header)
    ground = 50 + 10 * np.sin(x / 300) * np.cos(y / 250)
    block = (np.floor(x / 40) * 53 + np.floor(y / 40) * 97) % 7
    roof = np.where((block < 3) & (x % 40 > 8) & (y % 40 > 8), 5 + block * 12, 0.0)
    tree = (roof == 0) & (rng.random(n) < 0.15)
    height = np.where(tree, rng.uniform(0.5, 20, n), roof)
    las.x, las.y, las.z = x, y, ground + height + rng.normal(0, 0.05, n)
    las.intensity = rng.integers(0, 4096, n)
    las.return_number = las.number_of_returns = np.ones(n, dtype=np.uint8)
    las.classification = np.where(roof > 0, 6, np.where(tree, 5, 2))
    return las
