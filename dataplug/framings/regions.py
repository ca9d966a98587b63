"""One tabix-style region index for text records that name a sequence and an interval (VCF, BED, GFF3/GTF),
configured per format as htslib's ``tbx_conf_t`` configures tabix: which column holds the sequence name,
which the begin and which the end (or a rule the format computes, as VCF's REF length and ``END=``),
whether coordinates are 0-based half-open or 1-based inclusive, which lines are meta lines, how many lines
to skip.

The index pass is a map over ranges of the codec's logical stream (:class:`RegionScanner`) and a reduce
(:func:`reduce_regions`). Each range's records are checked and summarised into fine **sub-blocks**, cut at
every change of sequence, every line-index anchor and the first record after every :data:`FINE_BYTES` of
decoded bytes: ``(first record, its offset, sequence, first begin, last position covered, least position
covered, longest reach)``. The reduce chains the ranges (a sorted file has each sequence in one run, begins
non-decreasing within it) and joins sub-blocks into **blocks** cut at sequence changes and at the codec's
cuts (BGZF member starts, gzip checkpoints, zstd frames, bzip2 blocks: the first sub-block at or after
each), or every ``sample_bytes`` where the codec has none or few, like tabix's 16 kb linear index: a
region then reads whole codec units, and only those whose blocks can overlap it. Every block start is a
line-index anchor, so a region slice's decoded span starts and ends exactly on its blocks.

Reading a region (:class:`RegionReader`, ``co.reader()``; region slices) is tabix's scan: the first block
that can overlap it is one bisection of the blocks' running maximum of positions covered, the last one
another; in the blocks' decoded bytes (their first BGZF member alone, when the records end there) the
records beginning after the region and those beginning more than the blocks' longest reach before it are
found by bisecting the bytes, and only the few between are split (:func:`region_lines`). A region set
(``partition_regions`` with many regions) plans its slices' compressed ranges together with the store's
gap, and decodes each BGZF member once per process (:class:`SetReaders`, :class:`UnitReader`).

Coordinates inside the index are 1-based inclusive, whatever the format's: a record covers ``[start,
last]`` (an empty BED interval has ``last = start - 1``) and overlaps the region ``[beg, end]`` when
``start <= end`` and ``last >= beg``, which is htslib's test on 0-based half-open intervals.
"""

from __future__ import annotations

import io
import re
import weakref
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from dataplug.codecs.base import CodecIndex, LogicalReader, get_codec
from dataplug.codecs.checkpoints import CheckpointTable
from dataplug.errors import CorruptIndexError, InvalidFormatError, StrategyArgumentError
from dataplug.format import IndexData, PreprocessContext
from dataplug.framings.base import HEAD_BYTES, LOCAL_PROTOCOLS, StreamAttributes, StreamFormat, codec_attributes, codec_index, cut_offsets
from dataplug.framings.lines import (
    DEFAULT_SAMPLE_BYTES,
    Dialect,
    LineIndex,
    LineRangeSlice,
    RangeScan,
    Span,
    check_text,
    cut_records,
    line_slices,
    reduce_scans,
    scan_buffer,
    split_lines,
)
from dataplug.reader import Reader
from dataplug.sidecar import BlobRef
from dataplug.storage import ObjectInfo, StorageObject
from dataplug.storage.handle import WindowedObject, shared
from dataplug.storage.ranges import plan
from dataplug.strategies import positive_int

TAB, NEWLINE, CARRIAGE_RETURN, ZERO = 9, 10, 13, 48
#: Region end when a region string gives none (``"chr1"``, ``"chr1:100"``).
REGION_MAX = 2**62
#: Decoded bytes between candidate block starts kept by the pass (the first record after each multiple):
#: the reduce cuts blocks at the first candidate after each codec cut. The pass holds seven narrow integers per
#: candidate until its reduce (24 bytes as uint32: 0.3 % of the decoded bytes).
FINE_BYTES = 8192
#: Decoded bytes read first to find the header's end (read again, four times larger, until it is found).
HEADER_PROBE = 2**20
#: Block table columns: first record, sequence id, first begin, last position covered, least position covered,
#: and the longest reach of a record (its last position covered less its first position): a region's records
#: in a block begin at most that far before the region, as tabix's linear index bounds where a scan starts.
BLOCK_COLUMNS = ("record", "chrom", "start", "end", "low", "reach")
_MAX_POS_DIGITS = 18
_REGION = re.compile(r"([0-9]+)(?:-([0-9]*))?")


@dataclass(frozen=True)
class ColumnConfig:
    """Where a format's records keep their interval, as htslib's ``tbx_conf_t``: the 0-based columns of the
    sequence name, the begin and the end (``None``: the format's scanner computes the last position, as
    VCF's does), whether begin and end are 0-based half-open (BED) or 1-based inclusive (VCF, GFF), the
    prefixes of meta lines, and the lines at the start that are header whatever they hold."""

    seq: int
    begin: int
    end: int | None
    zero_based: bool
    meta: tuple[bytes, ...] = (b"#",)
    skip: int = 0
    #: Records need at least this many tab-separated columns.
    min_columns: int = 3
    #: Blank lines are skipped like meta lines (else they are records, refused for their columns).
    skip_blank: bool = True
    #: A meta line that ends the records: it and every line after it belong to no slice (GFF3's ``##FASTA``).
    end_marker: bytes | None = None
    #: Names of the begin and end columns, for messages.
    labels: tuple[str, str] = ("the begin", "the end")

    def is_meta(self, line: str) -> bool:
        """Whether a record line (no newline) is a meta line (or a skipped blank one)."""
        return (self.skip_blank and not line.strip("\r")) or any(line.startswith(p.decode()) for p in self.meta)


@dataclass(frozen=True)
class RegionAttributes(StreamAttributes):
    """What every region-indexed format records."""

    #: Records (lines that are neither header, meta nor blank).
    records: int
    #: Header lines (the line index numbers them first).
    header_lines: int
    #: Decoded offset of the first line after the header: the header's length in bytes.
    data_start: int
    #: Each sequence in one run, begins non-decreasing within it: region slices need it.
    sorted: bool
    #: Distinct sequence names of the records (names in the chromosome blob; 0 when unsorted).
    chromosomes: int
    sample_bytes: int
    #: Meta and blank lines after the header (not records; the line index lists them).
    skipped: int
    #: Decoded offset where the records end: the stream's end, or an end marker's line (GFF3's ``##FASTA``).
    records_end: int


@dataclass
class RegionRangeScan:
    """Map result for one range: its line scan, its first malformed record as (newlines before it in the
    range, offset, cause), its skipped lines and end marker (as ordinals among the range's line starts), and
    for a locally sorted range its sequence runs and sub-blocks."""

    lines: RangeScan
    bad: tuple[int, int, str] | None
    skipped: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    marker: tuple[int, int] | None = None
    records: int = 0
    unsorted: bool = False
    runs: list[str] = field(default_factory=list)
    first_pos: int = 0
    last_pos: int = 0
    blocks: tuple[np.ndarray, ...] = ()


@dataclass(frozen=True)
class Records:
    """A range's record lines (positions in ``full``) and their tab-separated columns."""

    full: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    tabs: np.ndarray
    first_tab: np.ndarray
    fields: np.ndarray

    def column(self, c: int) -> tuple[np.ndarray, np.ndarray]:
        """Start and end positions of column ``c`` of every record (meaningless where it has fewer)."""
        last = max(self.tabs.size - 1, 0)
        tabs = self.tabs if self.tabs.size else np.zeros(1, np.int64)
        a = self.starts if c == 0 else tabs[np.minimum(self.first_tab + c - 1, last)] + 1
        b = np.where(c < self.fields - 1, tabs[np.minimum(self.first_tab + c, last)], self.ends)
        return a, b


@dataclass(frozen=True)
class RegionScanner:
    """The region framings' map step (see :class:`dataplug.codecs.base.Scanner`): line starts of one range,
    its records checked (columns, integer coordinates, end not before begin) and summarised into sub-blocks.
    Formats with their own checks or coordinate rules subclass it. Look-ahead: the rest of the last line."""

    url: str
    sample_bytes: int
    data_start: int
    config: ColumnConfig
    #: The cause of a meta line after the first record when the format has none there (VCF), else None.
    meta_inside: str | None = None

    def enough(self, after: np.ndarray) -> bool:
        return first_newline(after) >= 0

    def check_columns(self, rec: Records) -> tuple[np.ndarray, Callable[[int], str]]:
        """Records refused for their columns, and the cause for one of them."""
        n = self.config.min_columns
        return rec.fields < n, lambda i: f"a record needs at least {n} tab-separated columns"

    def covered(self, rec: Records, begin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The last position (1-based) each record covers, and which records are refused for it."""
        assert self.config.end is not None
        end, bad = integers(rec.full, *rec.column(self.config.end))
        return end, bad

    def line_span(self, line: bytes) -> tuple[bytes, int, int]:
        """(sequence, first position, last position covered) of one record line the pass accepted (no line
        break), as :meth:`covered` computes them: a reader's few records need no NumPy pass."""
        cfg = self.config
        assert cfg.end is not None
        cols = line.split(b"\t", max(cfg.seq, cfg.begin, cfg.end) + 1)
        begin = int(cols[cfg.begin])
        return cols[cfg.seq], max(begin + 1 if cfg.zero_based else begin, 1), int(cols[cfg.end])

    def __call__(self, full: np.ndarray, first: int, start: int, end: int, eof: bool) -> RegionRangeScan:
        cfg = self.config
        arr = full[first : first + end - start]
        nl = np.flatnonzero(arr == NEWLINE)
        lines = scan_buffer(full, first, start, end, eof, Dialect(), self.sample_bytes, 0, breaks=nl)
        bad: list[tuple[int, int, str]] = []
        try:
            check_text(self.url, arr, start)
        except InvalidFormatError as exc:
            assert exc.offset is not None
            bad.append((int(np.searchsorted(nl, exc.offset - start)), exc.offset, exc.cause))
        lo = start - first  # decoded offset of full[0]
        own = nl + first + 1  # line starts after the range's newlines, as positions in full
        if eof and own.size and own[-1] == full.size:
            own = own[:-1]  # the stream's final newline starts no line
        lead = int(start == 0 and self.data_start == 0 and full.size > 0)  # the stream's first line follows no newline
        if lead:
            own = np.concatenate(([first], own))
        skip = int(np.count_nonzero(own < self.data_start - lo))
        starts = own[skip:]
        ordinal0 = skip - lead  # ordinal of starts[0] among the range's line starts after newlines
        if not starts.size:
            return RegionRangeScan(lines, min(bad) if bad else None)
        ahead = first_newline(full[first + arr.size :])
        breaks = np.concatenate((nl + first, [first + arr.size + ahead] if ahead >= 0 else [full.size]))
        ends = breaks[np.searchsorted(breaks, starts)]
        meta = _meta_lines(full, starts, ends, cfg)
        marker = None
        if cfg.end_marker is not None:
            hits = np.flatnonzero(meta & _has_prefix(full, starts, ends, cfg.end_marker))
            if hits.size:
                at = int(hits[0])
                marker = (ordinal0 + at, lo + int(starts[at]))
                bad = [b for b in bad if b[1] < marker[1]]
                starts, ends, meta = starts[:at], ends[:at], meta[:at]
        if self.meta_inside is not None and meta.any():  # no meta line after the first record: the records before it are checked
            at = int(np.argmax(meta))
            bad.append((ordinal0 + at + 1, lo + int(starts[at]), self.meta_inside))
            starts, ends, meta = starts[:at], ends[:at], meta[:at]
        skipped = (np.flatnonzero(meta) + ordinal0).astype(np.int64)
        keep = np.flatnonzero(~meta)
        if not keep.size:
            return RegionRangeScan(lines, min(bad) if bad else None, skipped, marker)
        r_starts, r_ends = starts[keep], ends[keep]
        r_ends = r_ends - ((r_ends > r_starts) & (full[np.maximum(r_ends - 1, 0)] == CARRIAGE_RETURN))  # CRLF: the CR ends no column
        tabs = np.flatnonzero(full[r_starts[0] : r_ends[-1]] == TAB) + r_starts[0]
        k = np.searchsorted(tabs, r_starts)
        rec = Records(full, r_starts, r_ends, tabs, k, np.searchsorted(tabs, r_ends) - k + 1)
        wrong, cause = self.check_columns(rec)
        good = first_true(wrong)
        rec = Records(full, r_starts[:good], r_ends[:good], tabs, k[:good], rec.fields[:good])
        begin, begin_bad = integers(full, *rec.column(cfg.begin))
        last, last_bad = self.covered(rec, begin)
        pos = np.maximum(begin + 1 if cfg.zero_based else begin, 1)
        inverted = (last < pos - 1) if cfg.end is not None else np.zeros(pos.size, bool)
        at = min(first_true(begin_bad | last_bad | inverted), good)
        if at < r_starts.size:
            if at < good and begin_bad[at]:
                why = f"{cfg.labels[0]} is not an integer (column {cfg.begin + 1})"
            elif at < good and last_bad[at]:
                why = f"{cfg.labels[1]} is not an integer (column {(cfg.end or 0) + 1})"
            elif at < good:
                why = f"{cfg.labels[1]} is before {cfg.labels[0]} (htslib refuses the record)"
            else:
                why = cause(at)
            bad.append((int(keep[at]) + ordinal0 + 1, lo + int(r_starts[at]), why))
        if bad:
            return RegionRangeScan(lines, min(bad), skipped, marker)
        seq_a, seq_b = rec.column(cfg.seq)
        return _summarise(lines, full, rec, seq_a, seq_b, pos, last, keep + ordinal0, skipped, marker, lo)


def _has_prefix(full: np.ndarray, starts: np.ndarray, ends: np.ndarray, prefix: bytes) -> np.ndarray:
    out = (ends - starts) >= len(prefix)
    for i, b in enumerate(prefix):
        out &= full[np.minimum(starts + i, full.size - 1)] == b
    return out


def _meta_lines(full: np.ndarray, starts: np.ndarray, ends: np.ndarray, cfg: ColumnConfig) -> np.ndarray:
    """Which lines are meta lines (or blank ones the configuration skips)."""
    meta = np.zeros(starts.size, bool)
    for prefix in cfg.meta:
        meta |= _has_prefix(full, starts, ends, prefix)
    if cfg.skip_blank:
        length = ends - starts
        meta |= (length == 0) | ((length == 1) & (full[np.minimum(starts, full.size - 1)] == CARRIAGE_RETURN))
    return meta


def first_true(mask: np.ndarray) -> int:
    """Index of the first True of ``mask``, or its size."""
    return int(np.argmax(mask)) if mask.any() else mask.size


def first_newline(after: np.ndarray) -> int:
    """Position of the first newline of ``after``, or -1 (a short search first: it is usually near)."""
    near = np.flatnonzero(after[: 1 << 16] == NEWLINE)
    if near.size or after.size <= 1 << 16:
        return int(near[0]) if near.size else -1
    found = np.flatnonzero(after == NEWLINE)
    return int(found[0]) if found.size else -1


def integers(full: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The decimal integers ``full[a[i]:b[i]]``, and which of them are not 1 to 18 digits."""
    length = b - a
    bad = (length < 1) | (length > _MAX_POS_DIGITS)
    width = int(np.clip(length, 0, _MAX_POS_DIGITS).max(initial=0))
    value = np.zeros(a.size, np.int64)
    for j in range(width):
        inside = j < length
        digit = full[np.minimum(a + j, full.size - 1)].astype(np.int64) - ZERO
        bad |= inside & ((digit < 0) | (digit > 9))
        value = np.where(inside, value * 10 + digit, value)
    return value, bad


def _chrom_changes(full: np.ndarray, starts: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Indices of the records whose sequence name (``full[starts[i]:starts[i] + length[i]]``) differs from
    the previous record's (0 always)."""
    out = [np.zeros(1, np.int64)]
    batch = max(1, 2**22 // max(1, int(length.max(initial=1))))
    for a in range(0, starts.size, batch):
        s, ln = starts[max(a - 1, 0) : a + batch], length[max(a - 1, 0) : a + batch]
        cols = np.arange(int(ln.max(initial=1)))
        mat = full[np.minimum(s[:, None] + cols, full.size - 1)]
        mat[cols >= ln[:, None]] = 0
        change = (mat[1:] != mat[:-1]).any(axis=1) | (ln[1:] != ln[:-1])
        out.append(np.flatnonzero(change) + max(a - 1, 0) + 1)
    return np.unique(np.concatenate(out))


def _summarise(
    lines: RangeScan, full: np.ndarray, rec: Records, seq_a: np.ndarray, seq_b: np.ndarray, pos: np.ndarray, last: np.ndarray,
    ordinals: np.ndarray, skipped: np.ndarray, marker: tuple[int, int] | None, lo: int,
) -> RegionRangeScan:
    """Sequence runs and sub-blocks (cut at runs, line-index anchors and every :data:`FINE_BYTES`) of a
    range's valid records."""
    runs = _chrom_changes(full, seq_a, seq_b - seq_a)
    names = [bytes(full[int(seq_a[r]) : int(seq_b[r])]).decode("utf-8", "replace") for r in runs.tolist()]
    step_down = np.flatnonzero(np.diff(pos) < 0) + 1
    base = RegionRangeScan(lines, None, skipped, marker, records=int(pos.size), first_pos=int(pos[0]), last_pos=int(pos[-1]))
    if len(set(names)) < len(names) or not np.isin(step_down, runs).all():
        base.unsorted = True
        return base
    offsets = rec.starts + lo
    grid = np.arange((int(offsets[0]) // FINE_BYTES + 1) * FINE_BYTES, int(offsets[-1]) + 1, FINE_BYTES)
    points = np.concatenate((lines.states[0].anchor_offsets, grid))
    at = np.searchsorted(offsets, points)
    cuts = np.unique(np.concatenate((runs, at[at < offsets.size])))
    base.runs = names
    blocks = (
        ordinals[cuts] + 1,  # + 1: the lead line's ordinal is -1
        offsets[cuts],
        np.searchsorted(runs, cuts, side="right") - 1,
        pos[cuts],
        np.maximum.reduceat(last, cuts),
        np.minimum.reduceat(np.minimum(pos, last), cuts),
        np.maximum.reduceat(np.maximum(last - pos, 0), cuts),
    )
    base.blocks = tuple(narrow(part) for part in blocks)  # the pass holds every range's sub-blocks until the reduce
    return base


@dataclass
class RegionIndex:
    """The reduce's result: the line index (with an anchor at every block start), the skipped lines, the
    sequence names in file order and the block tables (None when the file is not sorted)."""

    lines: LineIndex
    names: list[str]
    blocks: tuple[np.ndarray, ...] | None
    records_end: int


def reduce_regions(url: str, scans: list[RegionRangeScan], logical_size: int, data_start: int, header_lines: int, cuts: np.ndarray, sample_bytes: int) -> RegionIndex:
    """Raise the first malformed record; chain the ranges: the line index, skipped lines, sequence names
    and blocks cut at sequence changes, at each range's first record and at the first sub-block after each
    of the codec's ``cuts`` (and at the line-index anchors where the cuts are fewer than one per
    ``2 * sample_bytes``; else the block starts replace those anchors)."""
    dense = cuts.size > 0 and logical_size / cuts.size <= 2 * sample_bytes
    before = 1  # line 0 starts the stream; the others follow a newline
    ids: dict[str, int] = {}
    last: tuple[str, int] | None = None
    parts: list[tuple[np.ndarray, ...]] = []
    skipped: list[np.ndarray] = []
    in_order = True
    end: tuple[int, int] | None = None
    used = []
    for scan in scans:
        if scan.bad is not None:
            newlines, offset, cause = scan.bad
            raise InvalidFormatError(url, cause, offset=offset, line=before + newlines)
        used.append(scan.lines)
        skipped.append(scan.skipped + before)
        if in_order and scan.records:
            in_order = not scan.unsorted
            run_ids = []
            for r, name in enumerate(scan.runs):
                if r == 0 and last is not None and last[0] == name:
                    in_order = in_order and scan.first_pos >= last[1]
                elif name in ids:
                    in_order = False
                run_ids.append(ids.setdefault(name, len(ids)))
            if in_order:
                sampled = None if dense else scan.lines.states[0].anchor_offsets
                parts.append(_blocks(scan.blocks, np.asarray(run_ids, np.int64), before, cuts, sampled))
                last = (scan.runs[-1], scan.last_pos)
        if scan.marker is not None:
            end = (scan.marker[0] + before, scan.marker[1])
            break
        before += scan.lines.states[0].count
    index = reduce_scans(url, used, 0, logical_size)
    if end is not None:  # the records end at the marker line: the line index ends there
        keep = index.offsets < end[1]
        index = LineIndex(np.append(index.offsets[keep], end[1]), np.append(index.records[keep], end[0]))
    records_end = int(index.offsets[-1])
    blanks = np.concatenate(skipped).astype(np.int64) if skipped else np.zeros(0, np.int64)
    blanks = blanks[blanks < index.total]
    index = _with_anchors(index, np.array([data_start], np.int64), np.array([header_lines], np.int64))
    if not in_order:
        return RegionIndex(LineIndex(index.offsets, index.records, blanks), [], None, records_end)
    record, offset, chrom, start, stop, low, reach = (np.concatenate([p[i] for p in parts]) if parts else np.zeros(0, np.int64) for i in range(7))
    if record.size and dense:  # the block starts are as dense as the sampled anchors: they replace them (a smaller sidecar)
        ends = [0, index.offsets.size - 1, int(np.searchsorted(index.offsets, data_start))]
        index = LineIndex(index.offsets[ends], index.records[ends])
    index = _with_anchors(index, offset, record)
    return RegionIndex(LineIndex(index.offsets, index.records, blanks), list(ids), (record, chrom, start, stop, low, reach), records_end)


def _blocks(sub: tuple[np.ndarray, ...], run_ids: np.ndarray, before: int, cuts: np.ndarray, sampled: np.ndarray | None) -> tuple[np.ndarray, ...]:
    """One range's sub-blocks joined into blocks (first record, its offset, sequence id, first begin, last
    covered, least covered, longest reach): cut at its first sub-block, at sequence changes, at the first
    sub-block after each codec cut and, when ``sampled`` is given, at those line-index anchors."""
    record, offset, run, start, stop, low, reach = (part.astype(np.int64) for part in sub)
    chrom = run_ids[run]
    inner = cuts[(cuts > offset[0]) & (cuts <= offset[-1])]
    chosen = [np.zeros(1, np.int64), np.flatnonzero(np.diff(chrom) != 0) + 1, np.searchsorted(offset, inner)]
    if sampled is not None:
        chosen.append(np.flatnonzero(np.isin(offset, sampled)))
    at = np.unique(np.concatenate(chosen))
    joined = (np.maximum.reduceat(stop, at), np.minimum.reduceat(low, at), np.maximum.reduceat(reach, at))
    return (record[at] + before - 1, offset[at], chrom[at], start[at], *joined)


def _with_anchors(index: LineIndex, offsets: np.ndarray, records: np.ndarray) -> LineIndex:
    """``index`` with anchors at the record starts ``(offsets, records)`` too."""
    if not offsets.size:
        return index
    both = np.concatenate((np.stack((index.offsets, index.records), 1), np.stack((offsets, records), 1)))
    both = np.unique(both, axis=0)
    return LineIndex(both[:, 0].copy(), both[:, 1].copy())


def narrow(table: np.ndarray) -> np.ndarray:
    """``table`` (non-negative integers) in the narrowest unsigned dtype that holds it: a small sidecar."""
    top = int(table.max(initial=0))
    for dtype in (np.uint8, np.uint16, np.uint32):
        if top <= np.iinfo(dtype).max:
            return table.astype(dtype)
    return table.astype(np.uint64)


def validate_blocks(url: str, what: str, names: Sequence[str], attributes: Any, tables: dict[str, np.ndarray], index: LineIndex) -> None:
    """Bounds checks of the block tables ``names`` against the attributes and the line index (:class:`CorruptIndexError`)."""
    a = attributes
    if any(name not in tables for name in names):
        raise CorruptIndexError(url, f"{what} block tables missing")
    parts = [tables[name] for name in names]
    record = parts[0]
    if any(t.ndim != 1 or t.size != record.size or t.dtype.kind not in "iu" or (t.size and (t.min() < 0 or t.max() >= REGION_MAX)) for t in parts):
        raise CorruptIndexError(url, f"{what} block tables have inconsistent shapes, types or values")
    record, chrom, start, end, low, reach = (t.astype(np.int64) for t in parts)
    if record.size and (not a.sorted or record[0] < a.header_lines or np.any(np.diff(record) <= 0) or record[-1] >= index.total):
        raise CorruptIndexError(url, f"{what} blocks are not increasing record numbers of a sorted file")
    if record.size and (chrom.min() < 0 or chrom.max() >= a.chromosomes or np.any(np.diff(chrom) < 0)):
        raise CorruptIndexError(url, f"{what} block chromosomes out of range or out of order")
    if record.size and (np.any(low > start) or np.any(low > end)):
        raise CorruptIndexError(url, f"{what} blocks cover less than their least position")
    if record.size and np.any(reach > np.maximum(end - start, 0)):  # a record reaches at most from the block's first begin to its last position
        raise CorruptIndexError(url, f"{what} blocks reach further than they cover")
    if a.sorted and a.records and not record.size:
        raise CorruptIndexError(url, f"a sorted {what} with records has no blocks")
    if not np.isin(record, index.records).all():
        raise CorruptIndexError(url, f"{what} blocks do not start on line-index anchors")


def region_lines(
    url: str, locator: RegionScanner, data: bytes, region: tuple[str, int, int], reach: int, summary: tuple[str, int] | None, complete: bool
) -> list[str] | None:
    """The record lines (without line breaks) of ``data`` overlapping ``region``, htslib's test, found the way
    tabix scans: ``data`` holds the records of one sequence's blocks from the first block's first record on
    (no meta lines), begins sorted, so the records that begin after the region and those that begin more than
    ``reach`` (the blocks' longest record) before it are found by bisection, and only the few between are
    split. The first record must be the one the index's ``summary`` names, and every record read on the
    region's sequence (:class:`CorruptIndexError` otherwise). None when ``data`` is not ``complete`` (it ends
    at a codec unit, maybe inside a record) and holds no record beginning after the region: more is needed."""
    name, beg, end = region
    usable = len(data) if complete else data.rfind(b"\n") + 1
    column, shift = locator.config.begin, int(locator.config.zero_based)
    find = data.find

    def pos_at(at: int) -> int:
        for _ in range(column):
            at = data.index(b"\t", at) + 1
        return max(int(data[at : data.index(b"\t", at)]) + shift, 1)

    def first_after(x: int, lo: int, hi: int) -> int:
        """The first line start in ``[lo, hi)`` (``lo`` a line start) whose record begins after ``x``, else ``hi``."""
        if lo >= hi or pos_at(lo) > x:
            return min(hi, lo)
        while True:  # pos_at(lo) <= x; hi is the end or a line start past x
            at = find(b"\n", (lo + hi) // 2, hi) + 1
            if at <= 0 or at >= hi:
                at = find(b"\n", lo, hi) + 1
                if at <= 0 or at >= hi:
                    return hi
            if pos_at(at) > x:
                hi = at
            else:
                lo = at

    try:
        stop = first_after(end, 0, usable)
        if stop == usable and not complete:
            return None
        begin = first_after(beg - reach - 1, 0, stop)
        target = name.encode()
        if summary is not None and usable:
            first_end = find(b"\n", 0, usable)
            seq, pos, _ = locator.line_span(data[: first_end if first_end >= 0 else usable].rstrip(b"\r"))
            if (seq, pos) != (summary[0].encode(), summary[1]):
                raise CorruptIndexError(
                    url,
                    f"the index's block summary puts a record at {summary[0]}:{summary[1]}, but the object has {seq[:40]!r}:{pos} there: "
                    "the index does not describe this object; run preprocess(force=True)",
                )
        chunk = data[begin:stop]
        lines = chunk.split(b"\n") if chunk else []
        if chunk.endswith(b"\n"):
            lines.pop()
        kept = []
        for line in lines:
            if line.endswith(b"\r"):
                line = line[:-1]
            seq, pos, last = locator.line_span(line)
            if seq != target:
                raise CorruptIndexError(url, f"the index's blocks for {name} hold records of {seq[:40]!r}: the index does not describe this object; run preprocess(force=True)")
            if last >= beg:
                kept.append(line)
    except (ValueError, IndexError):
        raise CorruptIndexError(url, "a record the index points to does not parse as the index pass read it: the index does not describe this object; run preprocess(force=True)") from None
    try:
        return [line.decode("utf-8") for line in kept]
    except UnicodeDecodeError as exc:
        raise InvalidFormatError(url, f"not valid UTF-8: {exc.reason}") from None


@dataclass(frozen=True, eq=False)
class RecordTable:
    """The records of a decoded stretch that starts on a line start, parsed once with numpy: where each
    record line starts and ends (without its line break or CR), its first position and the last position
    it covers (1-based inclusive, computed by the format's scanner exactly as the index pass computes them).
    A region keeps its records by comparing two arrays, not by splitting every line in Python."""

    url: str
    data: bytes
    #: Decoded offset of ``data[0]``, for messages.
    offset: int
    starts: np.ndarray
    ends: np.ndarray
    #: End of each record's first column (its sequence name).
    seq_ends: np.ndarray
    pos: np.ndarray
    last: np.ndarray

    @classmethod
    def parse(cls, url: str, locator: RegionScanner, data: bytes, offset: int) -> RecordTable:
        """The records of ``data`` (decoded bytes from ``offset``; meta and blank lines left out). Records the
        index pass accepted always parse: one that does not is a :class:`CorruptIndexError` (the index does
        not describe these bytes)."""
        cfg = locator.config
        full = np.frombuffer(data, np.uint8)
        nl = np.flatnonzero(full == NEWLINE)
        starts = np.concatenate((np.zeros(1, np.int64), nl + 1))
        ends = np.append(nl, full.size)
        if starts[-1] == full.size:  # the final newline starts no line
            starts, ends = starts[:-1], ends[:-1]
        if not starts.size:
            empty = np.zeros(0, np.int64)
            return cls(url, data, offset, empty, empty, empty, empty, empty)
        keep = ~_meta_lines(full, starts, ends, cfg)
        if not keep.all():
            starts, ends = starts[keep], ends[keep]
        ends = ends - ((ends > starts) & (full[np.maximum(ends - 1, 0)] == CARRIAGE_RETURN))  # CRLF: the CR ends no column
        tabs = np.flatnonzero(full == TAB)
        k = np.searchsorted(tabs, starts)
        fields = np.searchsorted(tabs, ends) - k + 1
        rec = Records(full, starts, ends, tabs, k, fields)
        begin, begin_bad = integers(full, *rec.column(cfg.begin))
        last, last_bad = locator.covered(rec, begin)
        wrong = (fields < cfg.min_columns) | begin_bad | last_bad
        if wrong.any():
            at = int(starts[int(np.argmax(wrong))]) + offset
            raise CorruptIndexError(url, f"the record at decoded offset {at} does not parse as the index pass read it: the index does not describe this object; run preprocess(force=True)")
        pos = np.maximum(begin + 1 if cfg.zero_based else begin, 1)
        seq_ends = rec.column(cfg.seq)[1] if cfg.seq == 0 else np.zeros(starts.size, np.int64)
        return cls(url, data, offset, starts, ends, seq_ends, pos, last)

    def __len__(self) -> int:
        return int(self.starts.size)

    def overlapping(self, beg: int, end: int) -> np.ndarray:
        """Rows of the records overlapping ``[beg, end]`` (1-based inclusive), in order: a record starting at
        or before ``end`` and covering ``beg``, htslib's test. Begins are sorted within a sequence's blocks."""
        hi = int(np.searchsorted(self.pos, end, side="right")) if len(self) < 2 or self.pos[-1] > end else len(self)
        return np.flatnonzero(self.last[:hi] >= beg)

    def sequence(self, row: int) -> str:
        """The sequence name of record ``row``."""
        return self.data[int(self.starts[row]) : int(self.seq_ends[row])].decode("utf-8", "replace")

    def lines(self, rows: np.ndarray) -> list[str]:
        """The record lines ``rows``, without their line breaks."""
        data = self.data
        try:
            return [data[s:e].decode("utf-8") for s, e in zip(self.starts[rows].tolist(), self.ends[rows].tolist())]
        except UnicodeDecodeError as exc:
            raise InvalidFormatError(self.url, f"not valid UTF-8: {exc.reason}", offset=self.offset) from None

    def raw(self, rows: np.ndarray) -> bytes:
        """The record lines ``rows``, a newline after each (for the formats' table readers)."""
        data = self.data
        return b"".join(data[s:e] + b"\n" for s, e in zip(self.starts[rows].tolist(), self.ends[rows].tolist()))

    def check(self, summary: tuple[str, int] | None, record: int, sequence: str | None = None) -> None:
        """Refuse a stretch whose first record is not the one the index's block ``summary`` names (a sidecar
        whose blocks were shifted and re-signed, a stale index), or whose last record is on another
        ``sequence`` than the region's blocks."""
        if not len(self):
            return
        if summary is not None and (self.sequence(0), int(self.pos[0])) != tuple(summary):
            raise CorruptIndexError(
                self.url,
                f"the index's block summary puts record {record} at {summary[0]}:{summary[1]}, but the object has "
                f"{self.sequence(0)[:40]}:{int(self.pos[0])} there: the index does not describe this object; run preprocess(force=True)",
            )
        if sequence is not None and self.sequence(len(self) - 1) != sequence:
            raise CorruptIndexError(self.url, f"the index's blocks for {sequence} hold records of {self.sequence(len(self) - 1)[:40]}: the index does not describe this object; run preprocess(force=True)")


@dataclass(eq=False)
class RegionTables:
    """A loaded region index as readers look it up, built once per loaded sidecar (:func:`region_tables`) and
    held as Python lists, so a region is a few bisections and no NumPy call: the sequence names, the block
    tables, each sequence's run of blocks, the running maximum of the last position covered within each run
    (the first block that can overlap a region is one bisection), the decoded offset where each block
    starts, the line index's anchors and blank lines, and how the object's codec reads it."""

    url: str
    names: list[str]
    ids: dict[str, int]
    #: Each sequence's run of blocks, by sequence id.
    runs: dict[int, tuple[int, int]]
    start_list: list[int]
    #: The running maximum of ``covered`` within each sequence's run of blocks.
    running_list: list[int]
    covered_list: list[int]
    reach_list: list[int]
    #: Decoded offset of each block's first record, then where the records end.
    offset_list: list[int]
    record_list: list[int]
    stop_list: list[int]
    low_list: list[int]
    chrom_list: list[int]
    header_lines: int
    declared: Callable[[], Collection[str]]
    #: The object as indexed, and how its codec reads it: the checkpoint table (None for a plain object),
    #: readers of decoded ranges, and a decoder of one unit when units decode alone (BGZF members).
    info: ObjectInfo
    codec: Any
    codec_index: CodecIndex
    checkpoints: CheckpointTable | None
    readers: Callable[[int, int], LogicalReader]
    decode: Callable[[bytes, int, int], bytes] | None
    #: The checkpoint table's decoded and compressed offsets, and where each unit's compressed bytes end, as lists.
    unit_logical: list[int]
    unit_compressed: list[int]
    unit_ends: list[int]
    #: The line index's anchors, its blank lines and the codec's cuts, as lists.
    anchor_offsets: list[int]
    anchor_records: list[int]
    blank_list: list[int]
    cuts_list: list[int]

    @classmethod
    def build(cls, co: Any) -> RegionTables:
        """The tables of ``co``'s loaded (validated) index."""
        a, sidecar, fmt = co.attributes, co.index(), co.format
        names = sidecar.blob(fmt.chromosomes_blob).read().decode().split("\n") if a.chromosomes else []
        if len(names) != a.chromosomes:
            raise CorruptIndexError(co.url, "the chromosome blob does not hold as many names as the attributes say")
        record, chrom, start, covered, low, reach = (sidecar.tables[name].astype(np.int64) for name in fmt.block_tables())
        index = line_index(co)
        at = np.searchsorted(index.records, record)
        offset = np.append(index.offsets[np.minimum(at, index.records.size - 1)], a.records_end)
        if record.size and (not np.array_equal(index.records[np.minimum(at, index.records.size - 1)], record) or np.any(np.diff(offset) <= 0)):
            raise CorruptIndexError(co.url, f"{fmt.name} blocks do not start on line-index anchors")
        bounds = np.searchsorted(chrom, np.arange(len(names) + 1))
        runs = {c: (int(bounds[c]), int(bounds[c + 1])) for c in range(len(names)) if bounds[c + 1] > bounds[c]}
        running = covered.copy()
        for c0, c1 in runs.values():
            running[c0:c1] = np.maximum.accumulate(covered[c0:c1])
        header = sidecar.blob(fmt.header_blob)
        declared: dict[str, frozenset[str]] = {}

        def declared_names() -> frozenset[str]:
            if "names" not in declared:
                declared["names"] = frozenset(fmt.declared_sequences(header.read()))
            return declared["names"]

        info = sidecar.object_info
        codec, cindex = get_codec(a.compression), codec_index(co)
        table = codec.checkpoints(co.url, cindex, info.size)
        units: tuple[list[int], list[int], list[int]] = ([], [], [])
        if table is not None:
            ends = np.minimum(table.compressed[1:] + table.margin, table.data_end)
            units = (table.logical.tolist(), table.compressed.tolist(), ends.tolist())
        stop = np.append(record[1:], index.total)
        cuts = table.cuts() if table is not None else np.zeros(0, np.int64)
        return cls(
            url=co.url, names=names, ids={name: i for i, name in enumerate(names)},
            runs=runs,
            start_list=start.tolist(), running_list=running.tolist(), covered_list=covered.tolist(), reach_list=reach.tolist(),
            offset_list=offset.tolist(), record_list=record.tolist(), stop_list=stop.tolist(), low_list=low.tolist(), chrom_list=chrom.tolist(),
            header_lines=a.header_lines, declared=declared_names, info=info, codec=codec, codec_index=cindex, checkpoints=table,
            readers=codec.readers(co.obj, info, cindex), decode=codec.unit_decoder(co.url, cindex) if table is not None else None,
            unit_logical=units[0], unit_compressed=units[1], unit_ends=units[2],
            anchor_offsets=index.offsets.tolist(), anchor_records=index.records.tolist(),
            blank_list=index.blanks.tolist() if index.blanks is not None else [], cuts_list=cuts.tolist(),
        )

    def parse(self, regions: str | Sequence[str]) -> list[tuple[str, int, int]]:
        """Region strings as (sequence, begin, end), 1-based inclusive; a sequence the file neither holds nor
        declares is a :class:`StrategyArgumentError`, as htslib refuses it."""
        parsed = [parse_region(self.url, r, self.ids) for r in ([regions] if isinstance(regions, str) else list(regions))]
        self.known(name for name, _, _ in parsed)
        return parsed

    def known(self, names: Iterable[str]) -> None:
        """Refuse (:class:`StrategyArgumentError`) a sequence name the file neither holds nor declares."""
        unknown = sorted({name for name in names if name not in self.ids})
        if unknown:
            known = self.declared()
            missing = [name for name in unknown if name not in known]
            if missing:
                names = self.names
                shown = ", ".join(names[:20]) + (f", ... ({len(names)} in all)" if len(names) > 20 else "")
                raise StrategyArgumentError(self.url, f"no chromosome {', '.join(repr(n) for n in missing)} in the file; it has {shown}")

    def locate(self, name: str, beg: int, end: int) -> tuple[int, int] | None:
        """The first and last blocks that can overlap the region (every block between them is read with them),
        or None: the blocks of ``name`` starting at or before ``end`` whose records cover ``beg`` or later."""
        run = self.runs.get(self.ids.get(name, -1))
        if run is None:
            return None
        first = bisect_left(self.running_list, beg, *run)
        last = bisect_right(self.start_list, end, *run) - 1
        if first > last:
            return None
        covered = self.covered_list
        while covered[last] < beg:
            last -= 1
        return first, last

    def span(self, a: int, b: int) -> Span:
        """The :class:`Span` of records ``[a, b)`` (as :meth:`LineIndex.spans`, from the anchors' lists)."""
        o, r = self.anchor_offsets, self.anchor_records
        last = len(r) - 1
        i = bisect_right(r, a) - 1
        p = bisect_right(r, b) - 1
        j = min(bisect_left(r, b), last)
        n = min(i + 1, last)
        return Span(o[i], r[i], o[n], r[n], o[p], r[p], o[j], r[j], o[-1])

    def blanks(self, a: int, b: int) -> int:
        """How many of the records ``[a, b)`` are meta or blank lines."""
        return bisect_left(self.blank_list, b) - bisect_left(self.blank_list, a)

    def unit_rows(self, start: int, end: int) -> range:
        """The checkpoint rows (codec units) that decode ``[start, end)`` (as :meth:`CheckpointTable.locate`
        and :meth:`CheckpointTable.stop`, from the lists)."""
        u = self.unit_logical
        n = len(u) - 1
        k = max(bisect_right(u, start, 0, n) - 1, 0)
        return range(k, min(max(bisect_left(u, end), k + 1), n))

    def summary(self, block: int) -> tuple[str, int]:
        """(sequence, first position) of block ``block``'s first record, by the index."""
        return self.names[self.chrom_list[block]], self.start_list[block]


#: The region tables of each loaded sidecar (by its id, while it lives).
_TABLES: dict[int, tuple[weakref.ref[Any], RegionTables]] = {}


def region_tables(co: Any) -> RegionTables:
    """``co``'s :class:`RegionTables`, built once per loaded index: partitioning and readers on one
    :class:`~dataplug.CloudObject` neither re-read the chromosome names nor re-validate the line index."""
    sidecar = co.index()
    key = id(sidecar)
    held = _TABLES.get(key)
    if held is not None and held[0]() is sidecar:
        return held[1]
    tables = RegionTables.build(co)
    _TABLES[key] = (weakref.ref(sidecar, lambda _, key=key: _TABLES.pop(key, None)), tables)
    return tables


def parse_region(url: str, region: str, chromosomes: Collection[str]) -> tuple[str, int, int]:
    """``"chr2"``, ``"chr1:1000"`` or ``"chr1:1,000-2,000"`` (1-based, inclusive, as tabix reads them) as
    (sequence, begin, end); a whole sequence name wins over a reading with a range (names may hold ``:``)."""
    if not isinstance(region, str) or not region:
        raise StrategyArgumentError(url, f"a region is a non-empty string like 'chr1:1000-2000', got {region!r}")
    name, colon, span = region.rpartition(":")
    if region in chromosomes or not colon:
        return region, 1, REGION_MAX
    found = _REGION.fullmatch(span.replace(",", ""))
    if found is None or not name:
        raise StrategyArgumentError(url, f"region {region!r} is not 'CHROM', 'CHROM:BEGIN' or 'CHROM:BEGIN-END'")
    beg, end = int(found.group(1)), int(found.group(2)) if found.group(2) else REGION_MAX
    if beg < 1 or end < beg:
        raise StrategyArgumentError(url, f"region {region!r}: positions are 1-based and BEGIN <= END")
    return name, beg, end


@dataclass(frozen=True)
class EdgeBlock:
    """Records ``[first, stop)`` read to count a region slice, and the reader of their decoded bytes: blocks
    at the region's edges, holding records both inside and outside it (or the whole slice, when reading
    it decodes less)."""

    first: int
    stop: int
    span: Span
    source: LogicalReader
    #: (sequence, first position) the index's block summary gives record ``first``: checked when it is read.
    summary: tuple[str, int] | None = None


@dataclass
class RegionSlice(LineRangeSlice):
    """Records of a region-indexed object; a region slice keeps only those overlapping its ``region``
    (sequence, 1-based inclusive begin and end). The header is read lazily from the sidecar (one checked blob).

    A region slice's :attr:`num_records` is ``inside`` (the records of the blocks the region holds whole,
    counted from the index) plus the region's records in its ``edges``: those blocks are read (a codec unit
    or a few ``sample_bytes`` of decoded bytes each, or the whole slice when gzip checkpoints are far apart)
    the first time the count is asked, unless the slice has read its records already; the count is then
    kept, and travels with the slice when it is pickled."""

    config: ClassVar[ColumnConfig]
    #: The format's scanner, for the positions its records cover (see :class:`RecordTable`).
    locator: ClassVar[RegionScanner]

    header_ref: BlobRef
    region: tuple[str, int, int] | None = None
    inside: int = 0
    edges: tuple[EdgeBlock, ...] = ()
    #: (sequence, first position) the index's block summary gives the slice's first record: checked when it
    #: is read, so a sidecar whose blocks were shifted (and re-signed) is refused rather than giving wrong records.
    summary: tuple[str, int] | None = None
    #: Meta and blank lines among the slice's lines (not records).
    skipped: int = 0
    #: The longest reach of a record in the region's blocks (see :data:`BLOCK_COLUMNS`), when the object has
    #: no meta lines among its records: :meth:`records` then bisects its bytes (:func:`region_lines`).
    reach: int | None = None
    _header: str | None = field(default=None, init=False, repr=False, compare=False)
    _count: int | None = field(default=None, init=False, repr=False, compare=False)

    def span_of(self, line: str) -> tuple[str, int, int]:
        """(sequence, first position, last position covered) of a record line, as tabix computes them (and
        :class:`RecordTable` for the slice's records; htsget tickets cut their edge members with it)."""
        seq, first, last = self.locator.line_span(line.encode("utf-8"))
        return seq.decode("utf-8"), first, last

    @property
    def num_records(self) -> int:
        """Records of the slice: for a region, those tabix returns for it (see the class docstring)."""
        if self.region is None:
            return self.stop - self.first - self.skipped
        if self._count is None:
            self._count = self.inside + sum(self._edge_count(edge) for edge in self.edges)
        return self._count

    @property
    def known_num_records(self) -> int | None:
        """The count when the index gives it (a run of records, a region without edge blocks) or a read did."""
        if self.region is None:
            return self.stop - self.first - self.skipped
        return self.inside if not self.edges else self._count

    def _edge_count(self, edge: EdgeBlock) -> int:
        offset, data = cut_records(self.url, edge.source.read(), edge.span, edge.first, edge.stop, self.dialect)
        assert self.region is not None
        return int(self._table(data, offset, edge.summary, edge.first).overlapping(self.region[1], self.region[2]).size)

    def _table(self, data: bytes, offset: int, summary: tuple[str, int] | None, record: int) -> RecordTable:
        """The records of ``data`` (from record ``record``, at decoded ``offset``), once the first is the one
        the index's ``summary`` names and the last is on the region's sequence."""
        assert self.region is not None
        table = RecordTable.parse(self.url, self.locator, data, offset)
        table.check(summary, record, self.region[0])
        return table

    def _region_rows(self) -> tuple[RecordTable, np.ndarray]:
        """The slice's records and the rows of those in its region (counted: :attr:`num_records` reads no more)."""
        assert self.region is not None
        offset, data = self._fetch()
        table = self._table(data, offset, self.summary, self.first)
        rows = table.overlapping(self.region[1], self.region[2])
        self._count = int(rows.size)
        return table, rows

    @property
    def header(self) -> str:
        """The header lines, newlines included."""
        if self._header is None:
            self._header = self.header_ref.read().decode("utf-8")
        return self._header

    def records(self) -> list[str]:
        """The slice's record lines, without their newlines (meta and blank lines left out)."""
        if self.region is None:
            lines = split_lines(self.text())
            return [line for line in lines if not self.config.is_meta(line)] if self.skipped else lines
        if self.reach is not None:
            head = self.source.head() if isinstance(self.source, UnitReader) and self.stop > self.first else None
            lines = region_lines(self.url, self.locator, head, self.region, self.reach, self.summary, complete=False) if head is not None else None
            if lines is None:
                lines = region_lines(self.url, self.locator, self._fetch()[1], self.region, self.reach, self.summary, complete=True)
            assert lines is not None
            self._count = len(lines)
            return lines
        table, rows = self._region_rows()
        return table.lines(rows)

    def record_bytes(self) -> bytes:
        """The records' bytes, one line each, newlines included (for the formats' table readers)."""
        if self.region is None:
            return self.raw() if not self.skipped else "".join(line + "\n" for line in self.records()).encode("utf-8")
        table, rows = self._region_rows()
        return table.raw(rows)

    def get(self) -> str:
        """The header, then the slice's lines as the object holds them (a region slice: its records)."""
        if self.region is None:
            return self.header + self.text()
        return self.header + "".join(line + "\n" for line in self.records())

    def dump(self, fp: Any) -> None:
        """:meth:`get` as bytes: a file of its own in the object's format."""
        fp.write(self.get().encode("utf-8"))


class RegionReader(Reader):
    """A long-lived reader of one region-indexed object (``co.reader()`` of VCF, BED, GFF): the index's
    block tables are turned into lists once (:func:`region_tables`), the object stays open and decoded
    BGZF members (gzip stretches, zstd frames) are kept in the LRU. A region costs two bisections of the
    block lists, the decoded bytes of its first codec unit (the next one only when its records go on
    there), and a bisection of those bytes (:func:`region_lines`). Records are exactly those ``tabix``
    returns, the overlap rules of :class:`RegionSlice`."""

    def _tables(self) -> RegionTables:
        return self.memo("regions.tables", lambda: self._checked_tables())

    def _checked_tables(self) -> RegionTables:
        a = self.co.attributes
        if not a.sorted:
            raise StrategyArgumentError(self.url, f"regions need a sorted {self.co.format.name} (each sequence in one run, begins non-decreasing within it), as tabix does")
        return region_tables(self.co)

    def _lines(self, t: RegionTables, region: tuple[str, int, int], found: tuple[int, int], data: list[bytes] | None = None) -> list[str]:
        """The records overlapping ``region`` in blocks ``found``; ``data``: their decoded bytes, when read already."""
        first, last = found
        lo, hi = t.offset_list[first], t.offset_list[last + 1]
        summary = t.summary(first)
        if self.co.attributes.skipped:  # meta or blank lines among the records: one NumPy pass over the blocks
            table = RecordTable.parse(self.url, self.co.format.locator, data[0] if data else self.decoded(lo, hi), lo)
            table.check(summary, t.record_list[first], region[0])
            return table.lines(table.overlapping(region[1], region[2]))
        reach = max(t.reach_list[first : last + 1])
        locator = self.co.format.locator
        if data is None:
            cuts = t.cuts_list
            k = bisect_right(cuts, lo)
            if k < len(cuts) and cuts[k] < hi:  # the first unit alone, unless its records go on past it
                found_lines = region_lines(self.url, locator, self.decoded(lo, cuts[k]), region, reach, summary, complete=False)
                if found_lines is not None:
                    return found_lines
        lines = region_lines(self.url, locator, data[0] if data else self.decoded(lo, hi), region, reach, summary, complete=True)
        assert lines is not None
        return lines

    def records(self, region: str) -> list[str]:
        """The record lines (without line breaks) overlapping ``region`` (``"chr1:1,000-2,000"``, 1-based
        inclusive, ``"chr1:1000"`` or ``"chr1"``), as ``pysam.TabixFile.fetch(region=...)`` returns them; a
        sequence the file neither holds nor declares is a :class:`StrategyArgumentError`, as htslib refuses it."""
        t = self._tables()
        parsed = t.parse(region)[0]
        found = t.locate(*parsed)
        return self._lines(t, parsed, found) if found is not None else []

    def region(self, name: str, start: int | None = None, end: int | None = None) -> list[str]:
        """The record lines overlapping bases ``[start, end)`` (0-based, half-open, as
        ``pysam.TabixFile.fetch(name, start, end)``; None: from the sequence's start, to its end) of ``name``."""
        t = self._tables()
        t.known((name,))
        parsed = (name, 1 if start is None else max(int(start), 0) + 1, REGION_MAX if end is None else int(end))
        found = t.locate(*parsed) if parsed[2] >= parsed[1] else None
        return self._lines(t, parsed, found) if found is not None else []

    def table(self, region: str, columns: Sequence[str] | None = None) -> pa.Table:
        """:meth:`records` of ``region`` as the table the format's slices' ``to_arrow()`` gives (``columns``:
        some of its columns)."""
        lines = self.records(region)
        header = self.memo("regions.header", lambda: self.sidecar.blob(self.co.format.header_blob).read().decode("utf-8"))
        data = "".join(line + "\n" for line in lines).encode("utf-8")
        return self.co.format.records_table(self.url, header, self.co.attributes, data, columns, 0)

    def records_many(self, regions: Sequence[str]) -> list[list[str]]:
        """:meth:`records` of each region, in order, read together: their blocks' decoded bytes come from
        :meth:`~dataplug.reader.Reader.decoded_many` (near ones in one request, each codec unit decoded once)."""
        t = self._tables()
        parsed = t.parse(regions)
        found = [t.locate(*region) for region in parsed]
        spans = [(t.offset_list[f[0]], t.offset_list[f[1] + 1]) for f in found if f is not None]
        data = iter(self.decoded_many(spans))
        return [self._lines(t, region, f, [next(data)]) if f is not None else [] for region, f in zip(parsed, found)]


def region_records(co: Any, region: str) -> list[str]:
    """The record lines overlapping ``region`` (see :meth:`RegionReader.records`) through the reader ``co``
    keeps (:meth:`~dataplug.CloudObject.kept_reader`), so repeated calls on one
    :class:`~dataplug.CloudObject` share its open object, block tables and decoded blocks."""
    return co.kept_reader().records(region)  # type: ignore[no-any-return]


def read_tsv(url: str, data: bytes, names: list[str], schema: pa.Schema, offset: int) -> pa.Table:
    """Tab-separated records (no quoting, ``.`` null in typed columns) as a table of ``schema``'s columns,
    ``names`` naming every column of the records; :class:`InvalidFormatError` when they do not parse."""
    if not data:
        return schema.empty_table()
    read = pacsv.ReadOptions(column_names=names, use_threads=False, block_size=max(2**20, min(len(data) + 1, 2**30)))
    parse = pacsv.ParseOptions(delimiter="\t", quote_char=False, escape_char=False, ignore_empty_lines=False)
    convert = pacsv.ConvertOptions(column_types=dict(zip(schema.names, schema.types)), include_columns=schema.names, null_values=["."], strings_can_be_null=False)
    try:
        return pacsv.read_csv(io.BytesIO(data), read_options=read, parse_options=parse, convert_options=convert)
    except pa.ArrowInvalid as exc:
        raise InvalidFormatError(url, f"records do not parse as {len(names)} typed tab-separated columns: {str(exc)[:200]}", offset=offset) from None


class RegionFormat(StreamFormat):
    """Base of the region-indexed text formats: the header probe, the index pass (:class:`RegionScanner`
    over the codec's stream, :func:`reduce_regions`), the sidecar's tables and their validation. A format
    sets ``config`` and ``Attributes``, and may override :meth:`read_header`, :meth:`scanner` and
    :meth:`format_attributes`."""

    #: 4: the block tables of :mod:`dataplug.framings.regions` (blocks at codec cuts, a least-covered column, a
    #: reach column).
    index_version = 4
    config: ClassVar[ColumnConfig]
    #: The format's scanner, for the positions its records cover when they are read (see :class:`RecordTable`).
    locator: ClassVar[RegionScanner]
    reader_class = RegionReader
    Attributes: ClassVar[type] = RegionAttributes
    header_blob: ClassVar[str] = "region_header"
    chromosomes_blob: ClassVar[str] = "region_chromosomes"
    #: Prefix of the block tables' names (``<prefix>_record``, ``_chrom``, ``_start``, ``_end``, ``_low``).
    block_prefix: ClassVar[str] = "region_block"

    @classmethod
    def block_tables(cls) -> tuple[str, ...]:
        """The names of the block tables, in :data:`BLOCK_COLUMNS` order."""
        return tuple(f"{cls.block_prefix}_{column}" for column in BLOCK_COLUMNS)

    @classmethod
    def read_header(cls, url: str, head: bytes, complete: bool) -> tuple[bytes, int, Any] | None:
        """The header's bytes, its number of lines and what the format keeps of it; None when ``head`` ends
        before the header does and is not the ``complete`` stream. Default: the configuration's ``skip`` lines,
        then every meta line before the first other line."""
        at, number = 0, 0
        while True:
            stop = head.find(b"\n", at)
            if stop < 0 and not complete:
                return None
            line = head[at : len(head) if stop < 0 else stop]
            if at >= len(head) or (number >= cls.config.skip and not cls.config.is_meta(line.decode("utf-8", "replace"))):
                return head[:at], number, None
            if cls.config.end_marker is not None and line.startswith(cls.config.end_marker):
                return head[:at], number, None
            at, number = (len(head) if stop < 0 else stop + 1), number + 1

    @classmethod
    def first_record(cls, head: bytes, at: int, complete: bool) -> bytes | None:
        """The first record line at or after offset ``at`` of ``head`` (without its line break), ``b""`` when
        the stream has none, None when ``head`` ends before it does and is not the ``complete`` stream."""
        while True:
            stop = head.find(b"\n", at)
            if stop < 0 and not complete:
                return None
            if at >= len(head):
                return b""
            line = head[at : len(head) if stop < 0 else stop].rstrip(b"\r")
            if cls.config.end_marker is not None and line.startswith(cls.config.end_marker):
                return b""
            if not cls.config.is_meta(line.decode("utf-8", "replace")):
                return line
            at = len(head) if stop < 0 else stop + 1

    @classmethod
    def scanner(cls, url: str, sample_bytes: int, data_start: int, header: Any) -> RegionScanner:
        """The map step of the index pass."""
        return RegionScanner(url, sample_bytes, data_start, cls.config)

    @classmethod
    def format_attributes(cls, url: str, header: Any, index: RegionIndex) -> dict[str, Any]:
        """The format's own attribute fields."""
        return {}

    @classmethod
    def records_table(cls, url: str, header: str, attributes: Any, data: bytes, columns: Sequence[str] | None, offset: int) -> pa.Table:
        """Record lines ``data`` (newline-ended; ``header``: the object's header text) as the table the
        format's slices' ``to_arrow()`` gives (``columns``: some of its columns)."""
        raise NotImplementedError

    @classmethod
    def declared_sequences(cls, header: bytes) -> Collection[str]:
        """Sequences the header declares, which a region may name though no record is on them (VCF's
        ``##contig`` lines): htslib refuses a region on any other sequence it does not know."""
        return ()

    @classmethod
    def preprocess(cls, ctx: PreprocessContext) -> IndexData:
        url = ctx.obj.url
        sample_bytes = positive_int(url, "sample_bytes", int(ctx.options.get("sample_bytes", DEFAULT_SAMPLE_BYTES)))
        n = HEADER_PROBE
        while True:
            head = cls.logical_head(ctx, n)
            found = cls.read_header(url, head, max(HEAD_BYTES, n) >= ctx.info.size and len(head) < n)
            if found is not None:
                break
            n *= 4
        header, header_lines, kept = found
        scans, codec_index = cls.scan_stream(ctx, cls.scanner(url, sample_bytes, len(header), kept))
        cuts = get_codec(codec_index.codec).cuts(url, codec_index, ctx.info.size)
        index = reduce_regions(url, scans, codec_index.logical_size, len(header), header_lines, cuts, sample_bytes)
        lines, blocks = index.lines, index.blocks
        skipped = int(lines.blanks.size) if lines.blanks is not None else 0
        attributes = cls.Attributes(
            **codec_attributes(ctx.info.size, codec_index),
            records=lines.total - header_lines - skipped,
            header_lines=header_lines,
            data_start=len(header),
            sorted=blocks is not None,
            chromosomes=len(index.names),
            sample_bytes=sample_bytes,
            skipped=skipped,
            records_end=index.records_end,
            **cls.format_attributes(url, kept, index),
        )
        empty = np.zeros(0, np.uint8)
        tables = {name: narrow(t) for name, t in zip(cls.block_tables(), blocks or (empty,) * len(BLOCK_COLUMNS))}
        line_tables = {"offsets": narrow(lines.offsets), "records": narrow(lines.records), "blanks": narrow(lines.blanks if lines.blanks is not None else empty)}
        blobs = {**codec_index.blobs, cls.header_blob: header, cls.chromosomes_blob: "\n".join(index.names).encode()}
        return IndexData(attributes, tables={**codec_index.tables, **line_tables, **tables}, blobs=blobs)

    @classmethod
    def validate_records(cls, url: str, attributes: Any, tables: dict, logical_size: int) -> None:
        a = attributes
        if not 0 <= a.records_end <= logical_size:
            raise CorruptIndexError(url, f"{cls.name} records end outside the decoded stream")
        index = LineIndex.from_tables(url, tables, a.records_end, blanks=True)
        skipped = index.blanks.size if index.blanks is not None else 0
        if a.records != index.total - a.header_lines - skipped or a.records < 0 or a.skipped != skipped or not 0 <= a.data_start <= a.records_end:
            raise CorruptIndexError(url, f"{cls.name} attributes disagree with the line index")
        if skipped and index.blanks[0] < a.header_lines:  # type: ignore[index]
            raise CorruptIndexError(url, f"{cls.name} skipped lines inside the header")
        validate_blocks(url, cls.name, cls.block_tables(), a, tables, index)

    @classmethod
    def validate_index(cls, url: str, attributes: Any, tables: dict[str, np.ndarray], blob_sizes: dict[str, int], size: int) -> None:
        super().validate_index(url, attributes, tables, blob_sizes, size)
        if blob_sizes.get(cls.header_blob) != attributes.data_start or cls.chromosomes_blob not in blob_sizes:
            raise CorruptIndexError(url, f"{cls.name} header or chromosome blob missing or of the wrong size")


def line_index(co: Any) -> LineIndex:
    """The loaded, validated line index of a region-indexed object."""
    return LineIndex.from_tables(co.url, co.index().tables, co.attributes.records_end, blanks=True)


def chunk_slices(co: Any, slice_class: type[RegionSlice], num_chunks: int, **extra: Any) -> list[Any]:
    """``num_chunks`` slices of about equal bytes, every record in exactly one, in file order (cut at the
    first record after a codec cut where that keeps them balanced)."""
    n = positive_int(co.url, "num_chunks", num_chunks)
    index = line_index(co)
    bounds = index.bounds_by_bytes(n, co.attributes.header_lines, cuts=cut_offsets(co))
    slices = line_slices(co, slice_class, index, bounds, Dialect(), header_ref=co.index().blob(co.format.header_blob), **extra)
    for piece, count in zip(slices, index.blank_count(bounds[:-1], bounds[1:]).tolist()):
        piece.skipped = int(count)
    return slices


def region_slices(co: Any, slice_class: type[RegionSlice], regions: str | Sequence[str], **extra: Any) -> list[Any]:
    """One slice per region, holding exactly the records tabix returns for it; each reads only the blocks
    whose sequence and positions can overlap its region. No data is read here (see :class:`RegionSlice`);
    the index's tables are looked up as :func:`region_tables` keeps them, built once per loaded index."""
    a = co.attributes
    if not a.sorted:
        raise StrategyArgumentError(
            co.url,
            f"partition_regions needs a sorted {co.format.name} (each sequence in one run, begins non-decreasing within it), as tabix does; "
            "sort it or use partition_num_chunks",
        )
    t = region_tables(co)
    parsed = t.parse(regions)
    info, ref, cuts = t.info, co.index().blob(co.format.header_blob), t.cuts_list
    planned = [_region_plan(t, region, co.attributes.skipped > 0) for region in parsed]
    spans = [t.span(f, s) for f, s, *_ in planned]
    read = SetReaders(co, t, [(span.start, span.end) for span in spans]).reader
    out = []
    for n, ((f, s, held_count, runs, first_summary, reach), span, region) in enumerate(zip(planned, spans, parsed)):
        source = read(n, span.start, span.end)
        edge = []
        for a0, b0 in runs:
            edge_span = t.span(a0, b0)
            edge.append(EdgeBlock(a0, b0, edge_span, read(n, edge_span.start, edge_span.end), t.summary(bisect_left(t.record_list, a0))))
        if edge and sum(_decoded(cuts, e.span) for e in edge) >= _decoded(cuts, span):
            held_count, edge = 0, [EdgeBlock(f, s, span, source, first_summary)]  # counting the whole slice decodes less
        out.append(
            slice_class(
                obj=co.obj, object_info=info, number=n, first=f, stop=s, span=span, dialect=Dialect(), source=source, header_ref=ref,
                region=region, inside=held_count, edges=tuple(edge), summary=first_summary, reach=reach, **extra,
            )
        )
    return out


def _region_plan(
    t: RegionTables, region: tuple[str, int, int], meta: bool
) -> tuple[int, int, int, list[tuple[int, int]], tuple[str, int] | None, int | None]:
    """For one region: its slice's records ``[first, stop)``, the records of the blocks it holds whole (counted
    from the index), the record runs of its edge blocks (read to count), its first block's summary, and the
    longest reach of its blocks (None when ``meta`` lines are among the records)."""
    name, beg, end = region
    found = t.locate(name, beg, end)
    if found is None:
        return t.header_lines, t.header_lines, 0, [], None, None if meta else 0
    i, j = found
    record, stop, covered, low, start = t.record_list, t.stop_list, t.covered_list, t.low_list, t.start_list
    run_end = t.runs[t.chrom_list[i]][1]
    inside, runs = 0, []
    for k in range(i, j + 1):
        if covered[k] < beg:
            continue
        # Every record of a held block starts in [beg, end] (begins are sorted, and its last begin is at
        # most the next block's first) and covers beg (the least position it covers is at least beg).
        if low[k] >= beg and (end == REGION_MAX or (k + 1 < run_end and start[k + 1] <= end)):
            inside += stop[k] - record[k] - t.blanks(record[k], stop[k])
        elif runs and runs[-1][1] == record[k]:
            runs[-1] = (runs[-1][0], stop[k])
        else:
            runs.append((record[k], stop[k]))
    return record[i], stop[j], inside, runs, t.summary(i), None if meta else max(t.reach_list[i : j + 1])


@dataclass(frozen=True)
class UnitReader:
    """Decoded bytes ``[start, end)`` of a region slice over a codec whose units (checkpoint stretches: BGZF
    members) decode from their own bytes. Each unit is decoded once per process and kept in the cache of the
    object's shared handle (:func:`~dataplug.storage.handle.shared`: the file kept open, reads pinned or
    checked as the handle checks them), so the slices of one process that share a block, or repeated
    regions on one object, decode it once. The missing units come from the ``window``'s fetch (a region
    set's) or in one planned read. ``units`` holds ``(decoded start, decoded end, compressed start,
    compressed end)`` of each unit the range needs, in order. Units found decoded are the indexed object's
    (the shared handle is the object's as indexed), so a read of them alone asks the store nothing."""

    obj: StorageObject
    info: ObjectInfo
    start: int
    end: int
    units: tuple[tuple[int, int, int, int], ...]
    decode: Callable[[bytes, int, int], bytes]
    window: WindowedObject | None = None

    def read(self) -> bytes:
        if self.end <= self.start:
            return b""
        found = self._units(self.units)
        skip = self.start - self.units[0][0]
        joined = found[0] if len(found) == 1 else b"".join(found)
        return joined[skip : skip + self.end - self.start]

    def head(self) -> bytes | None:
        """The range's bytes in its first unit alone, when the range goes on past it (else None): a region's
        records usually end there, and the next unit need not be decoded (see :func:`region_lines`)."""
        if len(self.units) < 2:
            return None
        return self._units(self.units[:1])[0][self.start - self.units[0][0] :]

    def _units(self, units: Sequence[tuple[int, int, int, int]]) -> list[bytes]:
        """The decoded ``units``: from the shared handle's cache, the missing ones read together and decoded."""
        handle = shared(self.obj, self.info)
        found = [handle.cache.get(("unit", c0, c1)) for _, _, c0, c1 in units]
        missing = [unit for unit, data in zip(units, found) if data is None]
        if not missing:
            handle.check_due()  # every unit came from the cache: the identity check a read would have made
        else:
            ranges = [(c0, c1) for _, _, c0, c1 in missing]
            raws = self.window.read_ranges(ranges) if self.window is not None else handle.read_ranges(ranges)
            decoded = iter([handle.cache.put(("unit", c0, c1), self.decode(raw, c0, u1 - u0)) for (u0, u1, c0, c1), raw in zip(missing, raws)])
            found = [data if data is not None else next(decoded) for data in found]
        return found  # type: ignore[return-value]


class SetReaders:
    """Readers for the slices of one ``partition_regions`` call. Over BGZF (a codec whose units decode alone),
    :class:`UnitReader`: units decoded once per process. For a region set on a remote store, each slice's
    compressed range is also planned with the others as the store plans reads
    (:func:`~dataplug.storage.ranges.plan`: its ``max_gap`` joins near ranges, up to ``max_block``), so that
    reading every slice in one process makes one request per window
    (:class:`~dataplug.storage.handle.WindowedObject`, fetched once per process); a slice whose range alone
    passes ``max_block`` reads by itself (a window is kept in the shared handle's cache while its slices
    are read). Local reads are a ``pread`` each: nothing to join."""

    def __init__(self, co: Any, t: RegionTables, wanted: Sequence[tuple[int, int]]) -> None:
        self.obj, self.info, self.t = co.obj, t.info, t
        self.groups: list[WindowedObject | None] = [None] * len(wanted)
        if len(wanted) > 1 and co.obj.protocol not in LOCAL_PROTOCOLS:
            ranges = [self.compressed(a, b) for a, b in wanted]
            policy = co.obj.policy
            grouped = [(a, b) if b - a <= policy.max_block else (0, 0) for a, b in ranges]
            jobs = plan(grouped, policy.max_gap, policy.max_block)
            self.groups = [WindowedObject(co.obj, t.info, jobs.requests[at]) if at >= 0 else None for at, _ in jobs.where]
        self._readers: dict[tuple[int, int], Callable[[int, int], LogicalReader]] = {}

    def compressed(self, start: int, end: int) -> tuple[int, int]:
        """The object bytes that decode ``[start, end)``."""
        t = self.t
        if end <= start:
            return 0, 0
        if t.checkpoints is None:
            return start, end
        rows = t.unit_rows(start, end)
        return t.unit_compressed[rows[0]], t.unit_ends[rows[-1]]

    def reader(self, slice_number: int, start: int, end: int) -> LogicalReader:
        """The reader of decoded ``[start, end)`` for slice ``slice_number``."""
        group, t = self.groups[slice_number], self.t
        if t.decode is not None and t.checkpoints is not None and end > start:
            u, c = t.unit_logical, t.unit_compressed
            units = tuple((u[r], u[r + 1], c[r], t.unit_ends[r]) for r in t.unit_rows(start, end))
            return UnitReader(self.obj, self.info, start, end, units, t.decode, group)
        if group is None:
            return t.readers(start, end)
        if group.window not in self._readers:
            self._readers[group.window] = t.codec.readers(group, self.info, t.codec_index)  # type: ignore[arg-type]
        return self._readers[group.window](start, end)


def _decoded(cuts: list[int], span: Span) -> int:
    """Decoded bytes a reader of ``span`` goes through: from the codec cut before it (gzip checkpoints
    are far apart, so reading two edge blocks can cost more than reading their whole slice)."""
    if not cuts:
        return span.end - span.start
    at = bisect_right(cuts, span.start) - 1
    return span.end - (cuts[at] if at >= 0 else 0)


