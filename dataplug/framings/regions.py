"""One tabix-style region index for text records that name a sequence and an interval (VCF, BED, GFF3/GTF),
configured per format as htslib's ``tbx_conf_t`` configures tabix: which column holds the sequence name,
which the begin and which the end (or a rule the format computes, as VCF's REF length and ``END=``),
whether coordinates are 0-based half-open or 1-based inclusive, which lines are meta lines, how many lines
to skip.

The index pass is a map over ranges of the codec's logical stream (:class:`RegionScanner`) and a reduce
(:func:`reduce_regions`). Each range's records are checked and summarised into fine **sub-blocks**, cut at
every change of sequence, every line-index anchor and the first record after every :data:`FINE_BYTES` of
decoded bytes: ``(first record, its offset, sequence, first begin, last position covered, least position
covered)``. The reduce chains the ranges (a sorted file has each sequence in one run, begins
non-decreasing within it) and joins sub-blocks into **blocks** cut at sequence changes and at the codec's
cuts (BGZF member starts, gzip checkpoints, zstd frames, bzip2 blocks: the first sub-block at or after
each), or every ``sample_bytes`` where the codec has none or few, like tabix's 16 kb linear index: a
region then reads whole codec units, and only those whose blocks can overlap it. Every block start is a
line-index anchor, so a region slice's decoded span starts and ends exactly on its blocks.

Coordinates inside the index are 1-based inclusive, whatever the format's: a record covers ``[start,
last]`` (an empty BED interval has ``last = start - 1``) and overlaps the region ``[beg, end]`` when
``start <= end`` and ``last >= beg``, which is htslib's test on 0-based half-open intervals.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from dataplug.codecs.base import LogicalReader, get_codec
from dataplug.errors import CorruptIndexError, InvalidFormatError, StrategyArgumentError
from dataplug.format import IndexData, PreprocessContext
from dataplug.framings.base import HEAD_BYTES, StreamAttributes, StreamFormat, codec_attributes, cut_offsets, readers
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
from dataplug.sidecar import BlobRef
from dataplug.strategies import positive_int

TAB, NEWLINE, CARRIAGE_RETURN, ZERO = 9, 10, 13, 48
#: Region end when a region string gives none (``"chr1"``, ``"chr1:100"``).
REGION_MAX = 2**62
#: Decoded bytes between candidate block starts kept by the pass (the first record after each multiple):
#: the reduce cuts blocks at the first candidate after each codec cut. The pass holds six narrow integers per
#: candidate until its reduce (24 bytes as uint32: 0.3 % of the decoded bytes).
FINE_BYTES = 8192
#: Decoded bytes read first to find the header's end (read again, four times larger, until it is found).
HEADER_PROBE = 2**20
#: Block table columns: first record, sequence id, first begin, last position covered, least position covered.
BLOCK_COLUMNS = ("record", "chrom", "start", "end", "low")
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

    def span(self, line: str) -> tuple[str, int, int]:
        """(sequence, first position, last position covered), 1-based inclusive, of a record line."""
        assert self.end is not None
        cols = line.split("\t", max(self.seq, self.begin, self.end) + 1)
        begin, end = int(cols[self.begin]), int(cols[self.end].rstrip("\r"))
        return cols[self.seq], max(begin + 1 if self.zero_based else begin, 1), end


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
    record, offset, chrom, start, stop, low = (np.concatenate([p[i] for p in parts]) if parts else np.zeros(0, np.int64) for i in range(6))
    if record.size and dense:  # the block starts are as dense as the sampled anchors: they replace them (a smaller sidecar)
        ends = [0, index.offsets.size - 1, int(np.searchsorted(index.offsets, data_start))]
        index = LineIndex(index.offsets[ends], index.records[ends])
    index = _with_anchors(index, offset, record)
    return RegionIndex(LineIndex(index.offsets, index.records, blanks), list(ids), (record, chrom, start, stop, low), records_end)


def _blocks(sub: tuple[np.ndarray, ...], run_ids: np.ndarray, before: int, cuts: np.ndarray, sampled: np.ndarray | None) -> tuple[np.ndarray, ...]:
    """One range's sub-blocks joined into blocks (first record, its offset, sequence id, first begin, last
    covered, least covered): cut at its first sub-block, at sequence changes, at the first sub-block after
    each codec cut and, when ``sampled`` is given, at those line-index anchors."""
    record, offset, run, start, stop, low = (part.astype(np.int64) for part in sub)
    chrom = run_ids[run]
    inner = cuts[(cuts > offset[0]) & (cuts <= offset[-1])]
    chosen = [np.zeros(1, np.int64), np.flatnonzero(np.diff(chrom) != 0) + 1, np.searchsorted(offset, inner)]
    if sampled is not None:
        chosen.append(np.flatnonzero(np.isin(offset, sampled)))
    at = np.unique(np.concatenate(chosen))
    return record[at] + before - 1, offset[at], chrom[at], start[at], np.maximum.reduceat(stop, at), np.minimum.reduceat(low, at)


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
    record, chrom, start, end, low = (t.astype(np.int64) for t in parts)
    if record.size and (not a.sorted or record[0] < a.header_lines or np.any(np.diff(record) <= 0) or record[-1] >= index.total):
        raise CorruptIndexError(url, f"{what} blocks are not increasing record numbers of a sorted file")
    if record.size and (chrom.min() < 0 or chrom.max() >= a.chromosomes or np.any(np.diff(chrom) < 0)):
        raise CorruptIndexError(url, f"{what} block chromosomes out of range or out of order")
    if record.size and (np.any(low > start) or np.any(low > end)):
        raise CorruptIndexError(url, f"{what} blocks cover less than their least position")
    if a.sorted and a.records and not record.size:
        raise CorruptIndexError(url, f"a sorted {what} with records has no blocks")
    if not np.isin(record, index.records).all():
        raise CorruptIndexError(url, f"{what} blocks do not start on line-index anchors")


def parse_region(url: str, region: str, chromosomes: Sequence[str]) -> tuple[str, int, int]:
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

    header_ref: BlobRef
    region: tuple[str, int, int] | None = None
    inside: int = 0
    edges: tuple[EdgeBlock, ...] = ()
    #: (sequence, first position) the index's block summary gives the slice's first record: checked when it
    #: is read, so a sidecar whose blocks were shifted (and re-signed) is refused rather than giving wrong records.
    summary: tuple[str, int] | None = None
    #: Meta and blank lines among the slice's lines (not records).
    skipped: int = 0
    _header: str | None = field(default=None, init=False, repr=False, compare=False)
    _count: int | None = field(default=None, init=False, repr=False, compare=False)

    def span_of(self, line: str) -> tuple[str, int, int]:
        """(sequence, first position, last position covered) of a record line, as tabix computes them."""
        return self.config.span(line)

    @property
    def num_records(self) -> int:
        """Records of the slice: for a region, those tabix returns for it (see the class docstring)."""
        if self.region is None:
            return self.stop - self.first - self.skipped
        if self._count is None:
            self._count = self.inside + sum(len(self._in_region(self._edge_lines(edge))) for edge in self.edges)
        return self._count

    @property
    def known_num_records(self) -> int | None:
        """The count when the index gives it (a run of records, a region without edge blocks) or a read did."""
        if self.region is None:
            return self.stop - self.first - self.skipped
        return self.inside if not self.edges else self._count

    def _edge_lines(self, edge: EdgeBlock) -> list[str]:
        data = cut_records(self.url, edge.source.read(), edge.span, edge.first, edge.stop, self.dialect)[1]
        return self._checked(split_lines(data.decode("utf-8")), edge.summary, edge.first)

    def _checked(self, lines: list[str], summary: tuple[str, int] | None, record: int) -> list[str]:
        """``lines`` (records from ``record`` on), once the first is the one the index's summary names."""
        if summary is not None and lines:
            try:
                seq, pos, _ = self.span_of(lines[0])
            except (ValueError, IndexError):
                seq, pos = lines[0][:40], -1
            if (seq, pos) != tuple(summary):
                raise CorruptIndexError(
                    self.url,
                    f"the index's block summary puts record {record} at {summary[0]}:{summary[1]}, but the object has {seq}:{pos} there: "
                    "the index does not describe this object; run preprocess(force=True)",
                )
        return lines

    def _in_region(self, lines: list[str]) -> list[str]:
        assert self.region is not None
        chrom, beg, end = self.region
        out = []
        for line in lines:
            if self.config.is_meta(line):
                continue
            c, first, last = self.span_of(line)
            if c == chrom and first <= end and last >= beg:
                out.append(line)
        return out

    @property
    def header(self) -> str:
        """The header lines, newlines included."""
        if self._header is None:
            self._header = self.header_ref.read().decode("utf-8")
        return self._header

    def records(self) -> list[str]:
        """The slice's record lines, without their newlines (meta and blank lines left out)."""
        lines = split_lines(self.text())
        if self.region is None:
            return [line for line in lines if not self.config.is_meta(line)] if self.skipped else lines
        out = self._in_region(self._checked(lines, self.summary, self.first))
        self._count = len(out)
        return out

    def record_bytes(self) -> bytes:
        """The records' bytes, one line each, newlines included (for the formats' table readers)."""
        if self.region is None and not self.skipped:
            return self.raw()
        return "".join(line + "\n" for line in self.records()).encode("utf-8")

    def get(self) -> str:
        """The header, then the slice's lines as the object holds them (a region slice: its records)."""
        if self.region is None:
            return self.header + self.text()
        return self.header + "".join(line + "\n" for line in self.records())

    def dump(self, fp: Any) -> None:
        """:meth:`get` as bytes: a file of its own in the object's format."""
        fp.write(self.get().encode("utf-8"))


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

    #: 3: the block tables of :mod:`dataplug.framings.regions` (blocks at codec cuts, a least-covered column).
    index_version = 3
    config: ClassVar[ColumnConfig]
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


def region_slices(co: Any, slice_class: type[RegionSlice], regions: str | Sequence[str], declared: Callable[[], Iterable[str]] = lambda: (), **extra: Any) -> list[Any]:
    """One slice per region, holding exactly the records tabix returns for it; each reads only the blocks
    whose sequence and positions can overlap its region. ``declared()`` names sequences the header declares
    without records (a region there holds none). No data is read here (see :class:`RegionSlice`)."""
    a = co.attributes
    if not a.sorted:
        raise StrategyArgumentError(
            co.url,
            f"partition_regions needs a sorted {co.format.name} (each sequence in one run, begins non-decreasing within it), as tabix does; "
            "sort it or use partition_num_chunks",
        )
    sidecar = co.index()
    names = sidecar.blob(co.format.chromosomes_blob).read().decode().split("\n") if a.chromosomes else []
    if len(names) != a.chromosomes:
        raise CorruptIndexError(co.url, "the chromosome blob does not hold as many names as the attributes say")
    ids = {name: i for i, name in enumerate(names)}
    parsed = [parse_region(co.url, r, names) for r in ([regions] if isinstance(regions, str) else list(regions))]
    unknown = sorted({name for name, _, _ in parsed if name not in ids})
    if unknown:  # htslib refuses a region on a sequence it does not know
        known = set(declared())
        if [name for name in unknown if name not in known]:
            shown = ", ".join(names[:20]) + (f", ... ({len(names)} in all)" if len(names) > 20 else "")
            raise StrategyArgumentError(co.url, f"no chromosome {', '.join(repr(n) for n in unknown if n not in known)} in the file; it has {shown}")
    record, chrom, start, covered, low = (sidecar.tables[name].astype(np.int64) for name in co.format.block_tables())
    index = line_index(co)
    stop = np.append(record[1:], index.total)
    same_next = np.append(chrom[1:] == chrom[:-1], False)  # the next block is on the same sequence
    next_start = np.append(start[1:], REGION_MAX)
    info, read, ref = sidecar.object_info, readers(co), sidecar.blob(co.format.header_blob)
    first, last, inside, edges, summaries = [], [], [], [], []

    def summary(block: int) -> tuple[str, int]:
        return names[int(chrom[block])], int(start[block])

    for name, beg, end in parsed:
        on = chrom == ids.get(name, -1)
        hit = on & (start <= end) & (covered >= beg)
        # Every record of a held block starts in [beg, end] (begins are sorted, and its last begin is at
        # most the next block's first) and covers beg (the least position it covers is at least beg).
        held = hit & (low >= beg) & ((same_next & (next_start <= end)) | (end == REGION_MAX))
        where = np.flatnonzero(hit)
        first.append(int(record[where[0]]) if where.size else a.header_lines)
        summaries.append(summary(int(where[0])) if where.size else None)
        last.append(int(stop[where[-1]]) if where.size else a.header_lines)
        inside.append(int((stop - record)[held].sum() - index.blank_count(record[held], stop[held]).sum()))
        edges.append(_edge_runs(record, stop, hit & ~held))
    runs = [run for region_runs in edges for run in region_runs]
    edge_spans = iter(index.spans(np.array([r[0] for r in runs], np.int64), np.array([r[1] for r in runs], np.int64)) if runs else [])
    spans = index.spans(np.array(first, np.int64), np.array(last, np.int64))
    cuts = cut_offsets(co)
    out = []
    for n, (f, s, span, region, held, region_runs, first_summary) in enumerate(zip(first, last, spans, parsed, inside, edges, summaries)):
        source = read(span.start, span.end)
        edge = tuple(
            EdgeBlock(a0, b0, edge_span, read(edge_span.start, edge_span.end), summary(int(np.searchsorted(record, a0))))
            for (a0, b0), edge_span in zip(region_runs, edge_spans)
        )
        if edge and sum(_decoded(cuts, e.span) for e in edge) >= _decoded(cuts, span):
            held, edge = 0, (EdgeBlock(f, s, span, source, first_summary),)  # counting the whole slice decodes less
        out.append(
            slice_class(
                obj=co.obj, object_info=info, number=n, first=f, stop=s, span=span, dialect=Dialect(),
                source=source, header_ref=ref, region=region, inside=held, edges=edge, summary=first_summary, **extra,
            )
        )
    return out


def _decoded(cuts: np.ndarray, span: Span) -> int:
    """Decoded bytes a reader of ``span`` goes through: from the codec cut before it (gzip checkpoints
    are far apart, so reading two edge blocks can cost more than reading their whole slice)."""
    if not cuts.size:
        return span.end - span.start
    at = int(np.searchsorted(cuts, span.start, side="right")) - 1
    return span.end - (int(cuts[at]) if at >= 0 else 0)


def _edge_runs(record: np.ndarray, stop: np.ndarray, edge: np.ndarray) -> list[tuple[int, int]]:
    """Record ranges ``[first, stop)`` of the blocks marked in ``edge``, adjacent blocks joined."""
    runs: list[tuple[int, int]] = []
    for i in np.flatnonzero(edge).tolist():
        if runs and runs[-1][1] == int(record[i]):
            runs[-1] = (runs[-1][0], int(stop[i]))
        else:
            runs.append((int(record[i]), int(stop[i])))
    return runs

