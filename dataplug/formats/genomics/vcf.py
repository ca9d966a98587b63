"""VCF over any codec (plain, gzip, BGZF, zstd, bzip2): slices of whole records, and region slices that hold
exactly the records ``tabix`` returns, found from the index without reading records.

Preprocessing reads the header (the ``##`` lines and the ``#CHROM`` line) from the head of the decoded
stream, then maps :class:`VcfScanner` over the stream: the line index (:mod:`dataplug.framings.lines`; header
lines are its first records, as a CSV header is), every record's column count, ``POS`` and first
character checked, and a table of **blocks**: runs of records cut at every line-index anchor (about one per
``sample_bytes``) and at every change of ``CHROM``, each with its chromosome, its first start and the last
position any of its records covers. A region slice reads only the blocks that can overlap its region.

Records are accepted as htslib reads them: CHROM to INFO (8 columns, INFO may be empty), then, when the
#CHROM line names samples, either nothing more or FORMAT and a column per sample; columns after those are
ignored (a trailing tab, as in drop-seq's ``hek_cells_2snps.vcf.gz``, included), and a record with fewer is
an :class:`InvalidFormatError` naming its line. Values inside the columns are not checked.

Coordinates follow tabix's VCF preset (htslib ``tbx_parse1``): a record covers ``POS`` to
``POS + len(REF) - 1``, or to the ``END=`` of its INFO when it has one after ``POS - 1``, and overlaps the
1-based inclusive region ``[beg, end]`` when it starts at or before ``end`` and covers ``beg``. Region queries
need a sorted file (each ``CHROM`` in one run, ``POS`` non-decreasing within it), as tabix does. A region
slice counts its records exactly: the blocks wholly inside the region from the index, the few at its
edges by reading them once (see :class:`VCFSlice`).
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from dataplug.codecs.base import LogicalReader
from dataplug.errors import CorruptIndexError, InvalidFormatError, StrategyArgumentError
from dataplug.format import Detection, IndexData, PreprocessContext, Sample
from dataplug.framings.base import HEAD_BYTES, StreamAttributes, StreamFormat, codec_attributes, cut_offsets, readers
from dataplug.sidecar import BlobRef
from dataplug.framings.lines import (
    DEFAULT_SAMPLE_BYTES,
    SAMPLE_BYTES_OPTION,
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
from dataplug.strategies import positive_int, strategy

TAB, NEWLINE, HASH, ZERO = 9, 10, 35, 48
FIXED_COLUMNS = ("CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO")
HEADER_BLOB, CHROMOSOMES_BLOB = "vcf_header", "vcf_chromosomes"
BLOCK_TABLES = ("vcf_block_record", "vcf_block_chrom", "vcf_block_start", "vcf_block_end")
#: Decoded bytes read first to find the header's end (read again, four times larger, until it is found).
HEADER_PROBE = 2**20
#: Region end when a region string gives none ("chr1", "chr1:100").
REGION_MAX = 2**62
_MAX_POS_DIGITS = 18
_END = re.compile(rb"END=([0-9]*)")
_REGION = re.compile(r"([0-9]+)(?:-([0-9]*))?")


@dataclass(frozen=True)
class VCFAttributes(StreamAttributes):
    #: Data records (lines after the header).
    records: int
    #: Header lines, ``##`` lines and the ``#CHROM`` line (the line index numbers them first).
    header_lines: int
    #: Decoded offset of the first record: the header's length in bytes.
    data_start: int
    samples: int
    #: Each CHROM in one run, POS non-decreasing within it: region slices need it.
    sorted: bool
    #: Distinct CHROM values of the records (names in the ``vcf_chromosomes`` blob; 0 when unsorted).
    chromosomes: int
    sample_bytes: int


@dataclass
class VcfRangeScan:
    """Map result for one range: its line scan, its first malformed record as (newlines before it in the
    range, offset, cause), and for a locally sorted range its CHROM runs and blocks (block ordinals are
    among the range's line starts, as the line index counts them)."""

    lines: RangeScan
    bad: tuple[int, int, str] | None
    records: int = 0
    unsorted: bool = False
    runs: list[str] = field(default_factory=list)
    first_pos: int = 0
    last_pos: int = 0
    blocks: tuple[np.ndarray, ...] = ()


@dataclass(frozen=True)
class VcfScanner:
    """Line starts of one range, and its records checked (no ``#`` after the header, the columns htslib
    needs for ``columns`` in the #CHROM line, an integer POS) and summarised into blocks. Look-ahead: the
    rest of the range's last line."""

    url: str
    sample_bytes: int
    data_start: int
    columns: int

    def enough(self, after: np.ndarray) -> bool:
        return _first_newline(after) >= 0

    def __call__(self, full: np.ndarray, first: int, start: int, end: int, eof: bool) -> VcfRangeScan:
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
        skip = int(np.count_nonzero(own < self.data_start - lo))
        starts = own[skip:]
        if not starts.size:
            return VcfRangeScan(lines, min(bad) if bad else None)
        ahead = _first_newline(full[first + arr.size :])
        breaks = np.concatenate((nl + first, [first + arr.size + ahead] if ahead >= 0 else [full.size]))
        ends = breaks[np.searchsorted(breaks, starts)]
        tabs = np.flatnonzero(full[starts[0] : ends[-1]] == TAB) + starts[0]
        k = np.searchsorted(tabs, starts)
        hashed = full[np.minimum(starts, full.size - 1)] == HASH
        fields = np.searchsorted(tabs, ends) - k + 1
        wrong, fewer = _wrong_columns(full, fields, ends, self.columns)
        good = _first(hashed | wrong)
        k, fields = k[:good], fields[:good]
        t = [tabs[k + j] for j in range(7)]
        pos, pos_bad = _integers(full, t[0] + 1, t[1])
        at = _first(pos_bad)
        if at < starts.size:
            if at < good:
                cause = "POS is not an integer"
            elif hashed[at]:
                cause = "a header line ('#') after the first record"
            else:
                cause = "a record needs at least 8 tab-separated columns, CHROM to INFO"
                if not fewer[at]:
                    cause = f"a record with FORMAT needs a column for each of the {self.columns - 9} samples the #CHROM line names"
            bad.append((skip + at + 1, lo + int(starts[at]), cause))
        if bad:
            return VcfRangeScan(lines, min(bad))
        info_end = np.where(fields > 8, tabs[np.minimum(k + 7, tabs.size - 1)], ends[:good])
        covered = _covered(full, pos, t[2] + 1, t[3], t[6] + 1, info_end, starts)
        return _summarise(lines, full, starts, t[0], pos, covered, skip, lo)


def _wrong_columns(full: np.ndarray, fields: np.ndarray, ends: np.ndarray, columns: int) -> tuple[np.ndarray, np.ndarray]:
    """Which records htslib refuses for their columns, and which of those have fewer than 8. htslib reads
    CHROM to INFO (an empty INFO included) and ignores every column after the samples, and a record with
    no FORMAT; with FORMAT it needs a column per sample, and does not count an empty last column (a
    trailing tab). Without samples, every column after INFO is ignored."""
    fewer = fields < 8
    samples = columns - 9
    if samples <= 0:
        return fewer, fewer
    trailing = (full[np.maximum(ends - 1, 0)] == TAB) & (fields >= 10)
    return fewer | ((fields > 8) & (fields - 9 - trailing < samples)), fewer


def _first(mask: np.ndarray) -> int:
    """Index of the first True of ``mask``, or its size."""
    return int(np.argmax(mask)) if mask.any() else mask.size


def _first_newline(after: np.ndarray) -> int:
    """Position of the first newline of ``after``, or -1 (a short search first: it is usually near)."""
    near = np.flatnonzero(after[: 1 << 16] == NEWLINE)
    if near.size or after.size <= 1 << 16:
        return int(near[0]) if near.size else -1
    found = np.flatnonzero(after == NEWLINE)
    return int(found[0]) if found.size else -1


def _integers(full: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


def _covered(
    full: np.ndarray, pos: np.ndarray, ref_a: np.ndarray, ref_b: np.ndarray, info_a: np.ndarray, info_b: np.ndarray, starts: np.ndarray
) -> np.ndarray:
    """The last position (1-based) each record covers, as tabix computes it: from REF's length, or the
    INFO's ``END=`` (at the INFO's start, else the first ``;END=``) when it is at least POS (htslib ignores
    an ``END=`` before POS, empty or ``.``)."""
    covered = np.maximum(pos - 1, 0) + np.maximum(ref_b - ref_a, 1)
    view = full[starts[0] : int(info_b[-1])]
    found = [(m.start() + int(starts[0]), m.group(1)) for m in _END.finditer(view)]
    if not found:
        return covered
    at = np.array([m for m, _ in found], np.int64)
    line = np.searchsorted(starts, at, side="right") - 1
    prev = full[np.maximum(at - 1, 0)]
    ok = (at >= info_a[line]) & (at + 4 <= info_b[line]) & ((at == info_a[line]) | (prev == ord(";")))
    seen: set[int] = set()
    for i in np.flatnonzero(ok).tolist():
        row = int(line[i])
        if row not in seen:
            seen.add(row)
            covered[row] = _end_tag(found[i][1], int(pos[row]), int(covered[row]))
    return covered


def _end_tag(digits: bytes, pos: int, covered: int) -> int:
    """The last covered position given an INFO ``END=`` value's digits: htslib's ``tbx_parse1`` takes it
    only when it is after ``POS - 1``, else keeps ``covered`` (from REF)."""
    end = min(int(digits), REGION_MAX) if digits else 0
    return end if end > pos - 1 else covered


def _chrom_changes(full: np.ndarray, starts: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Indices of the records whose CHROM differs from the previous record's (0 always)."""
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
    lines: RangeScan, full: np.ndarray, starts: np.ndarray, chrom_end: np.ndarray, pos: np.ndarray, covered: np.ndarray, skip: int, lo: int
) -> VcfRangeScan:
    """Runs of CHROM and blocks (cut at runs and line-index anchors) of a range's valid records."""
    runs = _chrom_changes(full, starts, chrom_end - starts)
    names = [bytes(full[int(starts[r]) : int(chrom_end[r])]).decode("utf-8", "replace") for r in runs.tolist()]
    step_down = np.flatnonzero(np.diff(pos) < 0) + 1
    base = VcfRangeScan(lines, None, records=int(starts.size), first_pos=int(pos[0]), last_pos=int(pos[-1]))
    if len(set(names)) < len(names) or not np.isin(step_down, runs).all():
        base.unsorted = True
        return base
    anchors = lines.states[0].anchor_offsets - lo
    at = np.searchsorted(starts, anchors)
    at = at[(at < starts.size) & (anchors >= starts[0])]
    cuts = np.unique(np.concatenate((runs, at)))
    base.runs = names
    base.blocks = (
        cuts + skip,
        np.searchsorted(runs, cuts, side="right") - 1,
        np.maximum(pos[cuts], 1),
        np.maximum.reduceat(covered, cuts),
    )
    return base


def _header(url: str, head: bytes, complete: bool) -> tuple[bytes, int, tuple[str, ...]] | None:
    """The header's bytes, its number of lines and the #CHROM line's columns (without ``#``); None when
    ``head`` ends before the #CHROM line and is not the ``complete`` stream."""
    at, number = 0, 1
    while True:
        stop = head.find(b"\n", at)
        if stop < 0 and not complete:
            return None
        line = head[at : len(head) if stop < 0 else stop]
        if at >= len(head):
            raise InvalidFormatError(url, "no #CHROM header line: the object ends inside the VCF header", offset=at, line=number)
        if number == 1 and not line.startswith(b"##fileformat=VCF"):
            raise InvalidFormatError(url, "not a VCF: the first line must be ##fileformat=VCFv4.x", offset=0, line=1)
        if line.startswith(b"#CHROM"):
            text = head[: len(head) if stop < 0 else stop + 1]
            check_text(url, np.frombuffer(text, np.uint8), 0)
            try:
                columns = tuple(line.decode("utf-8").rstrip("\r")[1:].split("\t"))
            except UnicodeDecodeError as exc:
                raise InvalidFormatError(url, "the #CHROM line is not valid UTF-8", offset=at + exc.start, line=number) from None
            if columns[:8] != FIXED_COLUMNS or (len(columns) > 8 and columns[8] != "FORMAT"):
                cause = f"the #CHROM line must name {', '.join(FIXED_COLUMNS)}, then FORMAT before any sample"
                raise InvalidFormatError(url, cause, offset=at, line=number)
            return text, number, columns
        if not line.startswith(b"##"):
            cause = "a record before the header ends (no #CHROM line before it)"
            if line.startswith(b"#"):
                cause = "a header line that is neither '##' meta nor '#CHROM'"
            raise InvalidFormatError(url, cause, offset=at, line=number)
        at, number = (len(head) if stop < 0 else stop + 1), number + 1


class VCF(StreamFormat):
    """Variant Call Format, plain or compressed (gzip, BGZF, zstd, bzip2). Options: ``sample_bytes`` (line index and
    block density), ``compression``, ``spacing`` (gzip checkpoint spacing)."""

    Attributes = VCFAttributes
    options = SAMPLE_BYTES_OPTION

    sniff_priority = 20

    @classmethod
    def sniff(cls, sample: Sample) -> Detection | None:
        """VCF's first line, ``##fileformat=VCF``."""
        if sample.decoded.startswith(b"##fileformat=VCF") and sample.lines():
            return cls.detected(sample, "starts with '##fileformat=VCF'", ("UTF8Text",))
        return None

    @classmethod
    def preprocess(cls, ctx: PreprocessContext) -> IndexData:
        url = ctx.obj.url
        sample_bytes = int(ctx.options.get("sample_bytes", DEFAULT_SAMPLE_BYTES))
        n = HEADER_PROBE
        while True:
            head = cls.logical_head(ctx, n)
            found = _header(url, head, max(HEAD_BYTES, n) >= ctx.info.size and len(head) < n)
            if found is not None:
                break
            n *= 4
        header, header_lines, columns = found
        scans, codec_index = cls.scan_stream(ctx, VcfScanner(url, sample_bytes, len(header), len(columns)))
        index = _anchor_records(reduce_scans(url, [s.lines for s in scans], 0, codec_index.logical_size), len(header), header_lines)
        names, blocks = _reduce_blocks(url, scans)
        attributes = cls.Attributes(
            **codec_attributes(ctx.info.size, codec_index),
            records=index.total - header_lines,
            header_lines=header_lines,
            data_start=len(header),
            samples=max(0, len(columns) - 9),
            sorted=blocks is not None,
            chromosomes=len(names),
            sample_bytes=sample_bytes,
        )
        empty = np.zeros(0, np.int64)
        tables = dict(zip(BLOCK_TABLES, blocks or (empty,) * 4))
        blobs = {**codec_index.blobs, HEADER_BLOB: header, CHROMOSOMES_BLOB: "\n".join(names).encode()}
        return IndexData(attributes, tables={**codec_index.tables, **index.tables(), **tables}, blobs=blobs)

    @classmethod
    def validate_records(cls, url: str, attributes: Any, tables: dict, logical_size: int) -> None:
        index = LineIndex.from_tables(url, tables, logical_size)
        a = attributes
        if a.records != index.total - a.header_lines or a.records < 0 or not 0 < a.data_start <= logical_size:
            raise CorruptIndexError(url, "VCF attributes disagree with the line index")
        if any(name not in tables for name in BLOCK_TABLES):
            raise CorruptIndexError(url, "VCF block tables missing")
        record, chrom, start, end = (tables[name] for name in BLOCK_TABLES)
        if any(t.ndim != 1 or t.size != record.size or t.dtype.kind not in "iu" for t in (record, chrom, start, end)):
            raise CorruptIndexError(url, "VCF block tables have inconsistent shapes or types")
        if record.size and (not a.sorted or record[0] != a.header_lines or np.any(np.diff(record) <= 0) or record[-1] >= index.total):
            raise CorruptIndexError(url, "VCF blocks are not increasing record numbers of a sorted file")
        if record.size and (chrom.min() < 0 or chrom.max() >= a.chromosomes or np.any(np.diff(chrom) < 0)):
            raise CorruptIndexError(url, "VCF block chromosomes out of range or out of order")
        if a.sorted and a.records and not record.size:
            raise CorruptIndexError(url, "a sorted VCF with records has no blocks")

    @classmethod
    def validate_index(cls, url: str, attributes: Any, tables: dict[str, np.ndarray], blob_sizes: dict[str, int], size: int) -> None:
        super().validate_index(url, attributes, tables, blob_sizes, size)
        if blob_sizes.get(HEADER_BLOB) != attributes.data_start or CHROMOSOMES_BLOB not in blob_sizes:
            raise CorruptIndexError(url, "VCF header or chromosome blob missing or of the wrong size")


def _anchor_records(index: LineIndex, data_start: int, header_lines: int) -> LineIndex:
    """``index`` with an anchor where the records start, so that slices of equal bytes split the records'
    bytes, not the header's with them (a small file's index has no anchor between its two ends)."""
    at = int(np.searchsorted(index.offsets, data_start))
    if index.offsets[at] == data_start:
        return index
    return LineIndex(np.insert(index.offsets, at, data_start), np.insert(index.records, at, header_lines))


def _reduce_blocks(url: str, scans: list[VcfRangeScan]) -> tuple[list[str], tuple[np.ndarray, ...] | None]:
    """Raise the first malformed record; chain the ranges' CHROM runs: the chromosome names in file order
    and the block tables (record, chromosome id, first start, last covered), or None when unsorted."""
    before = 1  # line 0 starts the stream; the others follow a newline
    ids: dict[str, int] = {}
    last: tuple[str, int] | None = None
    parts: list[tuple[np.ndarray, ...]] = []
    in_order = True
    for scan in scans:
        if scan.bad is not None:
            newlines, offset, cause = scan.bad
            raise InvalidFormatError(url, cause, offset=offset, line=before + newlines)
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
                record, run, start, end = scan.blocks
                parts.append((record + before, np.asarray(run_ids, np.int64)[run], start, end))
                last = (scan.runs[-1], scan.last_pos)
        before += scan.lines.states[0].count
    if not in_order:
        return [], None
    merged = tuple(np.concatenate([p[i] for p in parts]).astype(np.int64) if parts else np.zeros(0, np.int64) for i in range(4))
    return list(ids), merged


def _record_span(line: str) -> tuple[str, int, int]:
    """(CHROM, first position, last covered position) of one record line, as tabix computes them."""
    chrom, pos_text, _, ref, _, _, _, info = line.split("\t", 8)[:8]
    pos = int(pos_text)
    covered = max(pos - 1, 0) + max(len(ref), 1)
    found = _END.search(info.encode())
    if found and found.start() > 0:
        found = re.search(rb";END=([0-9]*)", info.encode())
    if found:
        covered = _end_tag(found.group(1), pos, covered)
    return chrom, max(pos, 1), covered


@dataclass(frozen=True)
class EdgeBlock:
    """Records ``[first, stop)`` read to count a region slice, and the reader of their decoded bytes: blocks
    at the region's edges, holding records both inside and outside it (or the whole slice, when reading
    it decodes less)."""

    first: int
    stop: int
    span: Span
    source: LogicalReader
    #: (CHROM, POS) the index's block summary gives record ``first``: checked when the block is read.
    summary: tuple[str, int] | None = None


@dataclass
class VCFSlice(LineRangeSlice):
    """Records of a VCF object; a region slice keeps only those overlapping its ``region``
    (CHROM, 1-based inclusive begin and end). The header is read lazily from the sidecar (one checked blob).

    A region slice's :attr:`num_records` is ``inside`` (the records of the blocks the region holds whole,
    counted from the index) plus the region's records in its ``edges``: those blocks are read (a few
    ``sample_bytes`` of decoded bytes each, or the whole slice when gzip checkpoints are far apart) the first
    time the count is asked, unless the slice has read its records already; the count is then kept, and
    travels with the slice when it is pickled."""

    header_ref: BlobRef
    region: tuple[str, int, int] | None = None
    inside: int = 0
    edges: tuple[EdgeBlock, ...] = ()
    #: (CHROM, POS) the index's block summary gives the slice's first record: checked when it is read, so a
    #: sidecar whose blocks were shifted (and re-signed) is refused rather than giving the wrong records.
    summary: tuple[str, int] | None = None
    _header: str | None = field(default=None, init=False, repr=False, compare=False)
    _count: int | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def num_records(self) -> int:
        """Records of the slice: for a region, those tabix returns for it (see the class docstring)."""
        if self.region is None:
            return self.stop - self.first
        if self._count is None:
            self._count = self.inside + sum(len(self._in_region(self._edge_lines(edge))) for edge in self.edges)
        return self._count

    @property
    def known_num_records(self) -> int | None:
        """The count when the index gives it (a run of records, a region without edge blocks) or a read did."""
        if self.region is None:
            return self.stop - self.first
        return self.inside if not self.edges else self._count

    def _edge_lines(self, edge: EdgeBlock) -> list[str]:
        data = cut_records(self.url, edge.source.read(), edge.span, edge.first, edge.stop, self.dialect)[1]
        return self._checked(split_lines(data.decode("utf-8")), edge.summary, edge.first)

    def _checked(self, lines: list[str], summary: tuple[str, int] | None, record: int) -> list[str]:
        """``lines`` (records from ``record`` on), once the first is the one the index's summary names."""
        if summary is not None and lines:
            chrom, pos, _ = _record_span(lines[0])
            if (chrom, pos) != tuple(summary):
                raise CorruptIndexError(
                    self.url,
                    f"the index's block summary puts record {record} at {summary[0]}:{summary[1]}, but the object has {chrom}:{pos} there: "
                    "the index does not describe this object; run preprocess(force=True)",
                )
        return lines

    def _in_region(self, lines: list[str]) -> list[str]:
        assert self.region is not None
        chrom, beg, end = self.region
        out = []
        for line in lines:
            c, first, last = _record_span(line)
            if c == chrom and first <= end and last >= beg:
                out.append(line)
        return out

    @property
    def header(self) -> str:
        """The VCF header: every ``##`` line and the ``#CHROM`` line, newlines included."""
        if self._header is None:
            self._header = self.header_ref.read().decode("utf-8")
        return self._header

    @property
    def columns(self) -> tuple[str, ...]:
        """The #CHROM line's column names, without the ``#``."""
        return tuple(self.header.rstrip("\r\n").rsplit("\n", 1)[-1][1:].rstrip("\r").split("\t"))

    def records(self) -> list[str]:
        """The slice's record lines, without their newlines."""
        lines = split_lines(self.text())
        if self.region is None:
            return lines
        out = self._in_region(self._checked(lines, self.summary, self.first))
        self._count = len(out)
        return out

    def get(self) -> str:
        """The header, then the slice's records, as VCF text (the original Dataplug's result)."""
        if self.region is None:
            return self.header + self.text()
        return self.header + "".join(line + "\n" for line in self.records())

    def dump(self, fp: BinaryIO) -> None:
        """:meth:`get` as bytes: a VCF file of its own."""
        fp.write(self.get().encode("utf-8"))

    def schema(self) -> pa.Schema:
        types = {"POS": pa.int64(), "QUAL": pa.float64()}
        return pa.schema([(name, types.get(name, pa.string())) for name in self.columns])

    def to_arrow(self, columns: list[str] | None = None) -> pa.Table:
        """A table of the records: ``CHROM``, ``POS`` (int64), ``ID``, ``REF``, ``ALT``, ``QUAL`` (float64,
        null for ``.``), ``FILTER``, ``INFO``, then ``FORMAT`` and the samples as strings."""
        schema = self.schema()
        if columns is not None:
            schema = pa.schema([schema.field(name) for name in columns])
        data = self.raw() if self.region is None else "".join(line + "\n" for line in self.records()).encode()
        if not data:
            return schema.empty_table()
        names = list(self.columns)
        extra = data[: data.find(b"\n")].count(b"\t") + 1 - len(names)  # every record with a trailing tab, say
        names += [f"\0{i}" for i in range(max(extra, 0))]
        read = pacsv.ReadOptions(column_names=names, use_threads=False, block_size=max(2**20, min(len(data) + 1, 2**30)))
        parse = pacsv.ParseOptions(delimiter="\t", quote_char=False, escape_char=False, ignore_empty_lines=False)
        convert = pacsv.ConvertOptions(
            column_types=dict(zip(schema.names, schema.types)), include_columns=schema.names, null_values=["."], strings_can_be_null=False
        )
        try:
            return pacsv.read_csv(io.BytesIO(data), read_options=read, parse_options=parse, convert_options=convert)
        except pa.ArrowInvalid:  # records with different column counts, all of which htslib reads
            return self._irregular_table(data.decode("utf-8"), schema)

    def _irregular_table(self, text: str, schema: pa.Schema) -> pa.Table:
        """The table of records whose column counts differ from the #CHROM line's, as htslib reads them
        (checked in the index pass): columns after the samples dropped, FORMAT and samples null when a
        record has none."""
        position = {name: i for i, name in enumerate(self.columns)}
        rows = [line.split("\t") for line in split_lines(text)]
        data = {}
        for name in schema.names:
            i = position[name]
            values = [row[i] if i < len(row) else None for row in rows]
            try:
                if name == "POS":
                    data[name] = [int(v) for v in values]  # type: ignore[arg-type]
                elif name == "QUAL":
                    data[name] = [None if v in (None, ".") else float(v) for v in values]
                else:
                    data[name] = values
            except (TypeError, ValueError) as exc:
                raise InvalidFormatError(self.url, f"records do not parse as VCF columns ({name}: {exc})", offset=self.span.start) from None
        return pa.table(data, schema=schema)


def _index(co: Any) -> LineIndex:
    return LineIndex.from_tables(co.url, co.index().tables, co.attributes.uncompressed_size)


@strategy(VCF)
def partition_num_chunks(co: Any, num_chunks: int) -> list[VCFSlice]:
    """``num_chunks`` slices of about equal bytes, every record in exactly one, in file order (for gzip,
    cut at the first record after a checkpoint, so that workers decode almost nothing twice)."""
    n = positive_int(co.url, "num_chunks", num_chunks)
    index = _index(co)
    bounds = index.bounds_by_bytes(n, co.attributes.header_lines, cuts=cut_offsets(co))
    return line_slices(co, VCFSlice, index, bounds, Dialect(), header_ref=co.index().blob(HEADER_BLOB))


def parse_region(url: str, region: str, chromosomes: Sequence[str]) -> tuple[str, int, int]:
    """``"chr2"``, ``"chr1:1000"`` or ``"chr1:1,000-2,000"`` (1-based, inclusive) as (CHROM, begin, end);
    a whole CHROM name wins over a reading with a range (names may hold ``:``)."""
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


@strategy(VCF)
def partition_regions(co: Any, regions: str | Sequence[str]) -> list[VCFSlice]:
    """One slice per region (``"chr2"``, ``"chr1:1000-2000"``), holding exactly the records tabix returns for
    it; each reads only the blocks whose chromosome and positions can overlap its region. A sorted file
    is needed, as for tabix (:class:`StrategyArgumentError` otherwise).

    No data is read here. A slice's ``num_records`` counts the blocks the region holds whole from the index
    (a whole chromosome reads nothing) and reads the blocks at the region's edges the first time it is
    asked (``CloudObject.partition`` asks, for its empty-slice warning)."""
    a = co.attributes
    if not a.sorted:
        raise StrategyArgumentError(
            co.url,
            "partition_regions needs a sorted VCF (each CHROM in one run, POS non-decreasing within it), as tabix does; "
            "sort it (bcftools sort) or use partition_num_chunks",
        )
    sidecar = co.index()
    names = sidecar.blob(CHROMOSOMES_BLOB).read().decode().split("\n") if a.chromosomes else []
    if len(names) != a.chromosomes:
        raise CorruptIndexError(co.url, "the chromosome blob does not hold as many names as the attributes say")
    ids = {name: i for i, name in enumerate(names)}
    parsed = [parse_region(co.url, r, names) for r in ([regions] if isinstance(regions, str) else list(regions))]
    unknown = sorted({name for name, _, _ in parsed if name not in ids})
    if unknown:  # htslib refuses a region on a sequence it does not know; a ##contig without records holds none
        declared = set(re.findall(r"^##contig=<ID=([^,>]+)", sidecar.blob(HEADER_BLOB).read().decode("utf-8", "replace"), flags=re.M))
        if [name for name in unknown if name not in declared]:
            shown = ", ".join(names[:20]) + (f", ... ({len(names)} in all)" if len(names) > 20 else "")
            raise StrategyArgumentError(
                co.url, f"no chromosome {', '.join(repr(n) for n in unknown if n not in declared)} in the file (records or ##contig lines); it has {shown}"
            )
    record, chrom, start, covered = (sidecar.tables[name].astype(np.int64) for name in BLOCK_TABLES)
    index = _index(co)
    stop = np.append(record[1:], index.total)
    same_next = np.append(chrom[1:] == chrom[:-1], False)  # the next block is on the same chromosome
    next_start = np.append(start[1:], REGION_MAX)
    info, read, ref = sidecar.object_info, readers(co), sidecar.blob(HEADER_BLOB)
    first, last, inside, edges, summaries = [], [], [], [], []

    def summary(block: int) -> tuple[str, int]:
        return names[int(chrom[block])], int(start[block])

    for name, beg, end in parsed:
        on = chrom == ids.get(name, -1)
        hit = on & (start <= end) & (covered >= beg)
        # Every record of a held block starts in [beg, end] (positions are sorted, and its last start is at
        # most the next block's first), so it covers beg too: tabix ignores an END before POS.
        held = hit & (start >= beg) & ((same_next & (next_start <= end)) | (end == REGION_MAX))
        where = np.flatnonzero(hit)
        first.append(int(record[where[0]]) if where.size else a.header_lines)
        summaries.append(summary(int(where[0])) if where.size else None)
        last.append(int(stop[where[-1]]) if where.size else a.header_lines)
        inside.append(int((stop - record)[held].sum()))
        edges.append(_edge_runs(record, stop, hit & ~held))
    runs = [run for region_runs in edges for run in region_runs]
    edge_spans = iter(index.spans(np.array([r[0] for r in runs], np.int64), np.array([r[1] for r in runs], np.int64)) if runs else [])
    spans = index.spans(np.array(first, np.int64), np.array(last, np.int64))
    cuts = cut_offsets(co)
    out = []
    for n, (f, s, span, region, held, region_runs, first_summary) in enumerate(zip(first, last, spans, parsed, inside, edges, summaries)):
        source = read(span.start, span.end)
        edge = tuple(
            EdgeBlock(a, b, edge_span, read(edge_span.start, edge_span.end), summary(int(np.searchsorted(record, a))))
            for (a, b), edge_span in zip(region_runs, edge_spans)
        )
        if edge and sum(_decoded(cuts, e.span) for e in edge) >= _decoded(cuts, span):
            held, edge = 0, (EdgeBlock(f, s, span, source, first_summary),)  # counting the whole slice decodes less
        out.append(
            VCFSlice(
                obj=co.obj, object_info=info, number=n, first=f, stop=s, span=span, dialect=Dialect(),
                source=source, header_ref=ref, region=region, inside=held, edges=edge, summary=first_summary,
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
