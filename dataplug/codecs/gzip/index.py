"""The gzip checkpoint index: where decoding may start in a gzip object (compressed byte and bit,
uncompressed offset, the 32 KiB window before it), as numpy tables plus a blob of windows.

The pass that makes it is :mod:`dataplug.codecs.gzip.index_pass`; decoding from one checkpoint is
:mod:`dataplug.codecs.gzip.inflate`. Layout rules, checked by the pass (they are what lets decoding be
simple): a checkpoint without a window sits on a member header (checkpoint 0 is always the object start);
one with a window sits on a deflate block boundary inside a member. BGZF objects only get member-header
checkpoints.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from dataplug.codecs.checkpoints import CheckpointTable, column
from dataplug.errors import CorruptIndexError

DEFAULT_SPACING = 4 * 2**20  # uncompressed bytes between checkpoints, the most ``default_spacing`` picks
#: The least spacing ``default_spacing`` picks. Where windows are wide (Illumina reads: about 3 KB stored
#: per window) the pass's window budget spaces checkpoints further
#: (:data:`~dataplug.codecs.gzip.index_pass.WINDOW_BUDGET`; ``python benchmarks/gzip_fastq.py --no-s3``
#: prints the sidecar share, goal 2).
MIN_DEFAULT_SPACING = 6 * 2**18
WINDOW_SIZE = 32768  # deflate's maximum back-reference distance


def default_spacing(compressed_size: int) -> int:
    """Checkpoint spacing for an object of ``compressed_size`` bytes: about one checkpoint per 1/512 of
    the object (so N slices up to a few hundred each start near one and decode little they then drop),
    but no closer than ``MIN_DEFAULT_SPACING`` (the sidecar budget) nor further than ``DEFAULT_SPACING``.

    With a checkpoint near every slice start, reading every slice costs little more than one whole
    decompression split into lines (``python benchmarks/gzip_fastq.py --no-s3`` prints it as goal 1 for
    N = 64 and 256, against 1.15)."""
    guess = 2 * compressed_size // 512  # decoded bytes per 1/512 of the object, at a typical ratio of 2
    return int(min(max(guess, MIN_DEFAULT_SPACING), DEFAULT_SPACING))


#: The gzip codec's sidecar tables, one row per checkpoint.
TABLE_DTYPES: dict[str, type] = {
    "compressed_offset": np.uint64,
    "bits": np.uint8,
    "uncompressed_offset": np.uint64,
    "window_offset": np.uint64,
    "window_length": np.uint32,
    "window_crc32": np.uint32,
}
#: Decoded bytes past a range's end whose compressed bytes a reader's first request covers: a margin for
#: data less compressible there than on average (inflating yields each byte once its input is in).
END_AHEAD = 256 * 1024
#: deflate expands at most 1032:1 (258-byte matches of 2 bits), so a stretch decoding to more is crafted.
MAX_RATIO = 1032


@dataclass(frozen=True)
class Checkpoint:
    """Everything a worker needs to decompress from one checkpoint (small and picklable).

    The compressed data starts ``bits`` bits before byte ``compressed_offset`` (in the high bits of the
    previous byte) when ``bits`` > 0, so a worker fetches from ``fetch_start``. ``window`` is the
    decompressed dictionary (empty at a member header).
    """

    compressed_offset: int
    bits: int
    uncompressed_offset: int
    window: bytes = b""

    def __post_init__(self) -> None:
        if not 0 <= self.bits <= 7:
            raise ValueError(f"bits must be in 0..7, got {self.bits}")
        if self.compressed_offset < (1 if self.bits else 0):
            raise ValueError(f"bad compressed offset {self.compressed_offset} for {self.bits} bits")
        if len(self.window) > WINDOW_SIZE:
            raise ValueError(f"window longer than {WINDOW_SIZE} bytes")

    @property
    def fetch_start(self) -> int:
        """Object offset of the byte holding the checkpoint's first bit."""
        return self.compressed_offset - (1 if self.bits else 0)


def checkpoint_table(url: str, tables: Mapping[str, np.ndarray], size: int, logical_size: int) -> CheckpointTable:
    """The :class:`CheckpointTable` of the gzip tables of an object of ``size`` bytes decoding to
    ``logical_size``: a checkpoint's data starts in the byte before ``compressed_offset`` when it has
    ``bits``, and the end row is the object's end. Tables that do not parse are a :class:`CorruptIndexError`."""
    what = "gzip checkpoint index"
    cols = {name: column(url, what, tables, name) for name in TABLE_DTYPES}
    if len({a.size for a in cols.values()}) != 1:
        raise CorruptIndexError(url, f"bad {what}: tables of mismatched lengths")
    offset, bits = cols["compressed_offset"], cols["bits"]
    compressed = np.append(offset - (bits > 0), size)
    logical = np.append(cols["uncompressed_offset"], logical_size)
    extra = {name: cols[name] for name in TABLE_DTYPES if name != "uncompressed_offset"}
    return CheckpointTable.of(url, what, compressed, logical, margin=1, ahead=END_AHEAD, columns=extra)


@dataclass(eq=False)
class GzipIndex:
    """What :func:`~dataplug.codecs.gzip.build_index` found: the checkpoints of one gzip object, as numpy
    columns plus one blob of separately zlib-compressed windows."""

    compressed_size: int
    uncompressed_size: int
    spacing: int
    bgzf: bool
    compressed_offset: np.ndarray  # uint64, first whole byte of the deflate data at the checkpoint
    bits: np.ndarray  # uint8, 0..7: the data starts that many bits earlier, in byte compressed_offset-1
    uncompressed_offset: np.ndarray  # uint64, strictly increasing, checkpoint 0 at 0
    window_offset: np.ndarray  # uint64, offset of the checkpoint's compressed window inside `windows`
    window_length: np.ndarray  # uint32, its length (0: no window, the checkpoint is on a member header)
    windows: bytes = field(repr=False)

    def __len__(self) -> int:
        return len(self.uncompressed_offset)

    def tables(self) -> dict[str, np.ndarray]:
        """The sidecar tables (:data:`TABLE_DTYPES`), with each stored window's CRC-32."""
        crcs = [zlib.crc32(self.windows[o : o + n]) for o, n in zip(self.window_offset.tolist(), self.window_length.tolist())]
        columns = {name: getattr(self, name) for name in TABLE_DTYPES if name != "window_crc32"}
        return {**columns, "window_crc32": np.array(crcs, np.uint32)}

    def checkpoints(self, url: str = "") -> CheckpointTable:
        """The index as a :class:`CheckpointTable` (where a logical range decodes from, which bytes it needs)."""
        return checkpoint_table(url, self.tables(), self.compressed_size, self.uncompressed_size)

    def window(self, k: int) -> bytes:
        """Checkpoint k's decompressed window (b"" when it has none)."""
        length = int(self.window_length[k])
        if length == 0:
            return b""
        start = int(self.window_offset[k])
        return zlib.decompress(self.windows[start : start + length])

    def checkpoint(self, k: int) -> Checkpoint:
        """Checkpoint k with its decompressed window, ready to send to a worker."""
        return Checkpoint(
            compressed_offset=int(self.compressed_offset[k]),
            bits=int(self.bits[k]),
            uncompressed_offset=int(self.uncompressed_offset[k]),
            window=self.window(k),
        )
