"""The LiDAR index: per-block byte ranges, first points and bounds, and for LAS finer per-run bounds.

A *block* is the unit the index pass maps over and keeps bounds for: a run of ``block_points`` records in
an uncompressed LAS, or one chunk of a LAZ's chunk table (the smallest unit lazrs decodes on its own).

Airborne LiDAR comes in GPS-time order: zig-zag scan lines across flight strips. Any run of points longer
than one scan line spans the strip's whole width, so block bounds (about 70 000 points) tell a spatial slice
little: on a 6 M-point scan-ordered tile, 16 square cells read 1.69 points per point kept through 4 096-point
bounds, 1.11 through 64-point ones and 1.06 through 32-point ones (2.73, 1.25 and 1.13 at 64 cells), each run
read on its own (``python benchmarks/lidar.py --points 6000000 --orders scan --formats las --factors
--run-points 4096,64,32 --gaps 0``). An uncompressed LAS can be read at any
granularity, so its index also keeps the x/y bounds of every *run* of ``run_points`` points (32 by default)
inside each block, as four bytes: each bound quantized to 1/255 of its block's extent, rounded outwards,
so a run's decoded bounds always contain its points. That costs 1/8 byte per point (0.4 % of a point
format 6 LAS). LAZ chunks decode whole, so a LAZ index keeps chunk bounds only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dataplug.errors import InvalidFormatError
from dataplug.storage import ObjectInfo, StorageObject

try:
    import laspy
    import lazrs

    from dataplug.formats.geospatial.las.laz import OFFSET_SIZE, XYZ_ONLY, decode_chunks, read_table, table_offset
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("LiDAR support needs laspy and lazrs: pip install 'dataplug[lidar]'") from exc

#: Table names in the sidecar: every index has the block tables; LAS indexes with runs the run tables.
BLOCK_TABLES = ("block_start", "block_end", "block_first", "block_bounds")
RUN_TABLES = ("block_frame", "run_bounds")
HISTOGRAM = "block_histogram"
#: Steps of a quantized run bound across its block's extent (one byte).
QUANTA = 255


def xyz_dtype(point_size: int) -> np.dtype:
    """The raw X, Y, Z integers at the start of every point record (all LAS point formats)."""
    return np.dtype({"names": ["X", "Y", "Z"], "formats": ["<i4"] * 3, "offsets": [0, 4, 8], "itemsize": point_size})


def _las_point_end(header: laspy.LasHeader, size: int) -> int:
    """Where the records of an uncompressed LAS end: at its EVLRs or internal waveform data, else at its end."""
    end, data_start = size, header.offset_to_point_data
    if header.version.minor >= 4 and header.number_of_evlrs and data_start < header.start_of_first_evlr < end:
        end = header.start_of_first_evlr
    waveform = header.start_of_waveform_data_packet_record
    if header.version.minor >= 3 and header.global_encoding.waveform_data_packets_internal and data_start < waveform < end:
        end = waveform
    return end


def las_blocks(url: str, header: laspy.LasHeader, size: int, block_points: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Byte starts, byte ends and point counts of the blocks of an uncompressed LAS, after checking that its
    point section holds exactly the header's point count."""
    point_size, count, data_start = header.point_format.size, header.point_count, header.offset_to_point_data
    end = _las_point_end(header, size)
    held = (end - data_start) // point_size
    if held < count and end == size:
        raise InvalidFormatError(
            url,
            f"truncated point section: the header says {count} points of {point_size} bytes, the object ends after {held}",
            offset=data_start + held * point_size,
        )
    if held != count:
        raise InvalidFormatError(
            url, f"the header's point count {count} disagrees with the data: its point section holds {held} points", offset=data_start
        )
    first = np.arange(0, count, block_points, dtype=np.int64)
    counts = np.diff(np.append(first, count))
    starts = data_start + first * point_size
    return starts, starts + counts * point_size, counts


def laz_blocks(obj: StorageObject, info: ObjectInfo, header: laspy.LasHeader, laszip: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The chunks of a LAZ from its chunk table: byte starts, byte ends, point counts and the fixed chunk size."""
    url, size, data_start = obj.url, info.size, header.offset_to_point_data
    if lazrs.LazVlr(laszip).item_size() != header.point_format.size:
        raise InvalidFormatError(url, "the LASzip VLR's point size disagrees with the header's point format", offset=0)
    head_end = min(data_start + OFFSET_SIZE, size)
    tail = (size - OFFSET_SIZE, size) if size - OFFSET_SIZE >= head_end else (size, size)
    head, last = obj.read_ranges([(data_start, head_end), tail], expect=info)
    offset = table_offset(url, data_start, size, head, last)
    table_end = size
    if header.version.minor >= 4 and header.number_of_evlrs and offset < header.start_of_first_evlr < size:
        table_end = header.start_of_first_evlr
    table = read_table(url, laszip, obj.read_range(offset, table_end, expect=info), offset, data_start, header.point_count)
    return table.starts, table.ends, table.point_counts, table.chunk_size


def groups(starts: np.ndarray, ends: np.ndarray, counts: np.ndarray, group_bytes: int) -> list[np.ndarray]:
    """Consecutive blocks in groups of about ``group_bytes``: each an array of rows (start, end, points)."""
    rows = np.column_stack((starts, ends, counts))
    group = (starts - starts[0]) // max(int(group_bytes), 1)
    cuts = np.flatnonzero(np.diff(group)) + 1
    return np.split(rows, cuts)


def runs_per_block(counts: np.ndarray, run_points: int) -> np.ndarray:
    """How many runs each block of ``counts`` points holds (the last run of a block may be shorter)."""
    return -(-np.asarray(counts, dtype=np.int64) // run_points)


def encode_runs(frame: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Run bounds ``lo``/``hi`` (raw (r, 2) X, Y) as bytes of their block's ``frame`` (raw (r, 4): min X,
    min Y, max X, max Y of the block of each run), the minimum rounded down and the maximum up."""
    base, span = frame[:, :2].astype(np.int64), np.maximum(frame[:, 2:].astype(np.int64) - frame[:, :2], 1)
    q_lo = (lo - base) * QUANTA // span
    q_hi = -(-(hi - base) * QUANTA // span)
    return np.column_stack((q_lo, q_hi)).astype(np.uint8)


def decode_runs(frame: np.ndarray, runs: np.ndarray) -> np.ndarray:
    """Raw (r, 4) min X, min Y, max X, max Y that contain each run's points, from :func:`encode_runs`'s
    bytes and the frames of the runs' blocks; exact integer arithmetic, so no point falls outside."""
    base, span = frame[:, :2].astype(np.int64), np.maximum(frame[:, 2:].astype(np.int64) - frame[:, :2], 1)
    q = runs.astype(np.int64)
    return np.column_stack((base + q[:, :2] * span // QUANTA, base - (-q[:, 2:] * span // QUANTA)))


@dataclass(frozen=True)
class BlockScan:
    """The map step of preprocessing: bounds (runs, histograms) of one group of blocks. Small and picklable."""

    obj: StorageObject
    info: ObjectInfo
    point_size: int
    laszip: bytes | None
    run_points: int
    grid: int
    extent: tuple[float, float, float, float]
    scales: tuple[float, float, float]
    offsets: tuple[float, float, float]

    def __call__(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """For blocks ``rows`` (start, end, points): their raw min X, Y, Z and max X, Y, Z as a (k, 6) array;
        with runs, their runs' bytes (:func:`encode_runs`); with a grid, their (k, grid * grid) histograms."""
        starts, ends, counts = rows[:, 0], rows[:, 1], rows[:, 2]
        data = self.obj.read_range(int(starts[0]), int(ends[-1]), expect=self.info)
        if self.laszip is not None:
            if np.array_equal(starts[1:], ends[:-1]):
                payload: bytes | bytearray = data
            else:
                view = memoryview(data)
                payload = b"".join(view[a - starts[0] : b - starts[0]] for a, b in zip(starts.tolist(), ends.tolist()))
            data = decode_chunks(self.obj.url, self.laszip, payload, counts, ends - starts, starts, self.point_size, XYZ_ONLY)
        xyz = np.frombuffer(data, dtype=xyz_dtype(self.point_size), count=int(counts.sum()))
        first = np.concatenate(([0], np.cumsum(counts)[:-1]))
        raw = np.empty((len(rows), 6), dtype=np.int64)
        for j, name in enumerate("XYZ"):
            column = xyz[name]
            raw[:, j] = np.minimum.reduceat(column, first)
            raw[:, 3 + j] = np.maximum.reduceat(column, first)
        runs = self._runs(xyz, first, counts, raw) if self.run_points else None
        return raw, runs, (self._histograms(xyz, counts) if self.grid else None)

    def _runs(self, xyz: np.ndarray, first: np.ndarray, counts: np.ndarray, raw: np.ndarray) -> np.ndarray:
        per_block = runs_per_block(counts, self.run_points)
        block = np.repeat(np.arange(counts.size), per_block)
        run_first = np.repeat(first, per_block) + (np.arange(block.size) - np.repeat(np.cumsum(per_block) - per_block, per_block)) * self.run_points
        lo = np.column_stack([np.minimum.reduceat(xyz[name], run_first) for name in "XY"])
        hi = np.column_stack([np.maximum.reduceat(xyz[name], run_first) for name in "XY"])
        return encode_runs(raw[block][:, [0, 1, 3, 4]], lo, hi)

    def _histograms(self, xyz: np.ndarray, counts: np.ndarray) -> np.ndarray:
        g = self.grid
        x0, y0, x1, y1 = self.extent
        cells = np.zeros(xyz.size, dtype=np.int64)
        axes = (("X", x0, x1, self.scales[0], self.offsets[0], g), ("Y", y0, y1, self.scales[1], self.offsets[1], 1))
        for name, lo, hi, scale, offset, weight in axes:
            real = xyz[name] * scale + offset
            cell = np.floor((real - lo) * (g / (hi - lo if hi > lo else 1.0)))
            cells += np.clip(cell, 0, g - 1).astype(np.int64) * weight
        block = np.repeat(np.arange(counts.size), counts)
        return np.bincount(block * g * g + cells, minlength=counts.size * g * g).reshape(counts.size, g * g).astype(np.uint32)


@dataclass(frozen=True)
class Blocks:
    """An index's tables, as strategies use them (real-coordinate block bounds; raw run bounds for LAS)."""

    start: np.ndarray
    end: np.ndarray
    first: np.ndarray
    bounds: np.ndarray
    histogram: np.ndarray | None
    #: Points per LAS run (0: no runs), and for each block the index of its first run (blocks + 1 entries).
    run_points: int
    run_first: np.ndarray | None
    #: Raw (runs, 4) min X, min Y, max X, max Y containing each run's points.
    run_bounds: np.ndarray | None

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.first)


def load_blocks(tables: dict[str, np.ndarray], run_points: int) -> Blocks:
    """The :class:`Blocks` of a loaded (validated) index, run bounds decoded."""
    start, end, first, bounds = (tables[name] for name in BLOCK_TABLES)
    run_first = run_bounds = None
    if run_points:
        per_block = runs_per_block(np.diff(first), run_points)
        run_first = np.concatenate(([0], np.cumsum(per_block)))
        run_bounds = decode_runs(np.repeat(tables["block_frame"], per_block, axis=0), tables["run_bounds"])
    return Blocks(start, end, first, bounds, tables.get(HISTOGRAM), run_points, run_first, run_bounds)


def tables_fit(tables: dict[str, np.ndarray], blocks: int, compressed: bool, run_points: int, grid: int) -> bool:
    """Whether an index's run and histogram tables have the shapes and ranges its block tables imply."""
    first = tables["block_first"]
    if grid and tables[HISTOGRAM].shape != (blocks, grid * grid):
        return False
    if not run_points:
        return True
    frame, runs = tables["block_frame"], tables["run_bounds"]
    total = int(runs_per_block(np.diff(first), run_points).sum())
    return (
        not compressed
        and frame.shape == (blocks, 4)
        and frame.dtype == np.int32
        and bool(np.all(frame[:, :2] <= frame[:, 2:]))
        and runs.shape == (total, 4)
        and runs.dtype == np.uint8
        and bool(np.all(runs[:, :2] <= runs[:, 2:]))
        and bool(np.all(runs <= QUANTA))
    )
