"""BAM (binary alignments, BGZF-compressed): slices that start on a record, region slices that hold exactly
the alignments ``samtools view file region`` returns, with no ``.bai`` needed and no htslib.

**The index pass** is the BGZF codec's pass (:mod:`dataplug.codecs.bgzf`) with :class:`BamScanner` as its map
step. A range of the decoded stream does not say where its first record starts, so each range guesses it
(the first offset from which a chain of plausible records follows, as spark-bam's checker does) and walks
the ``block_size`` chain from there; the reduce then joins the ranges in order from the first record after
the header, and re-walks (reading the decoded bytes again) every range whose guess was not where the
previous range's chain ended. A guess is only a shortcut: every record is on the chain from the header.

The pass records **blocks**: runs of records cut at the first record after every BGZF member start (and
after every ``block_bytes`` of decoded bytes from it within the member: a member holds at most 64 KiB, so by
default two blocks a member) and at every change of reference. The scan of a range does not see the member
starts inside it, so it cuts sub-blocks every 4 KiB, which the reduce joins into blocks. Each block keeps its
first record's number and decoded offset, its reference, its first position and the largest alignment end
of its records (``pos`` plus the CIGAR's reference length, htslib's ``bam_endpos``). A slice starts on a
block (a record at a virtual offset: a member and an offset in it).

**Regions** follow samtools: ``"chr1:1000-2000"`` is 1-based inclusive, ``"chr2"`` a whole reference, ``"*"``
the unplaced unmapped reads at the end, and a record overlaps when it is on that reference, starts at or
before the region's end and its alignment ends after the region's begin. A region needs a coordinate-sorted
BAM (checked on the records, whatever the ``@HD SO:`` tag says), as ``samtools index`` does. A region reads
from the first block that can hold its records (found by bisect on the blocks' positions and running maximum
of ends) and stops at the first record past it, so it inflates the members of its records and rarely one
more, as htslib does from a ``.bai``'s linear index. A ``.bai`` or ``.csi`` beside the object is not read:
the pass walks every record anyway (to count and check them).

**Few records, no NumPy.** A region's records are walked and, when they are few (:data:`FEW_RECORDS`),
decoded one by one with :mod:`struct` into one Arrow conversion; the vectorised columns (some 40 NumPy and
Arrow calls whatever the count) serve slices of many records. ``co.reader()`` is a :class:`BamReader`:
:meth:`BamReader.records` keeps the object open, the block lists built once and decoded members in its LRU.
"""

from __future__ import annotations

import struct
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa

from dataplug.codecs.base import LogicalReader, get_codec
from dataplug.codecs.bgzf import BGZF_EOF, bgzf_compress
from dataplug.errors import CorruptIndexError, InvalidFormatError, StrategyArgumentError
from dataplug.format import Detection, IndexData, PreprocessContext, Sample
from dataplug.formats.genomics.bam_records import (
    COLUMNS,
    FIXED_SIZE,
    MAGIC,
    Header,
    Layout,
    alignment_ends,
    check_records,
    columns,
    fixed_fields,
    parse_header,
    record_rows,
    rows_table,
    sam_lines,
    scan_region,
    walk,
)
from dataplug.framings.base import StreamAttributes, StreamFormat, codec_attributes, codec_index, preprocess_reader, readers
from dataplug.framings.regions import REGION_MAX, UnitReader
from dataplug.framings.regions import parse_region as parse_tabix_region
from dataplug.reader import Reader
from dataplug.sidecar import BlobRef
from dataplug.slice import CloudObjectSlice
from dataplug.strategies import positive_int, strategy

HEADER_BLOB = "bam_header"
BLOCK_TABLES = ("bam_block_record", "bam_block_offset", "bam_block_ref", "bam_block_start", "bam_block_end")
#: Decoded bytes between block cuts by default, counted from each BGZF member's start (a member holds at most
#: 64 KiB: two blocks a member, the first on its first record). A region inflates the members of its records
#: and rarely one more, and walks on average a quarter of a member's records before its own; the block
#: tables cost 36 bytes a block.
DEFAULT_BLOCK_BYTES = 32 * 1024
#: The scan cuts sub-blocks this often (or every ``block_bytes`` when less); blocks are joined from them, so
#: a block starts at most this far (and a record) after its target.
SUB_BLOCK_BYTES = 4096
#: Decoded bytes read first to find the header's end (four times more each time until it is found).
HEADER_PROBE = 2**20
#: Look-ahead a range's scan asks for: records longer than this past a range's end are walked in the reduce.
LOOKAHEAD = 64 * 1024
#: Decoded bytes a range searches for its first record (the rest of the range after that).
RESYNC_SEARCH = 256 * 1024
#: Records after a candidate first record that must be plausible too for the guess to stand.
RESYNC_CHAIN = 4
#: A region's end when the region string gives none (``"chr1"``, ``"chr1:100"``).
#: The region ``"*"``: the unplaced unmapped reads at the end of a sorted BAM (``samtools view file '*'``),
#: as (name, reference id, begin, end): begin -1 so that their position (-1) and end (0) overlap it.
UNPLACED = ("*", -1, -1, REGION_MAX)
#: A region's records are read one by one in Python (:func:`record_rows`) up to this many; more go through
#: the vectorised NumPy/Arrow columns, whose fixed cost (some 40 calls) a few records do not pay back.
FEW_RECORDS = 64
_KEY_SHIFT = 33


@dataclass(frozen=True)
class BAMAttributes(StreamAttributes):
    #: Alignment records, mapped (flag 0x4 clear) and unmapped (placed beside a mate or at the end).
    records: int
    mapped: int
    unmapped: int
    #: Reference sequences in the header (names and lengths in the ``bam_header`` blob).
    references: int
    #: Decoded bytes of the header, magic to the reference list: the first record's offset.
    header_size: int
    #: The header's ``@HD SO:`` (``"unknown"`` without one).
    sort_order: str
    #: Records in coordinate order (reference by reference as the header lists them, positions never
    #: decreasing, unplaced reads last), checked on every record: region slices need it.
    sorted: bool
    blocks: int
    block_bytes: int


@dataclass
class RangeWalk:
    """Map result for one range of the decoded stream: the records starting in it, from its guessed first
    record (``first``), summarised into blocks; or why the guess failed (``error``, ``incomplete``)."""

    start: int
    end: int
    first: int | None = None
    stop: int = 0
    records: int = 0
    mapped: int = 0
    error: tuple[int | None, str] | None = None
    incomplete: bool = False
    unsorted: bool = False
    first_key: int = 0
    last_key: int = 0
    #: Block tables: first record's number within the range, its offset, reference, first position, end.
    blocks: tuple[np.ndarray, ...] = ()


def _walk_range(url: str, full: np.ndarray, base: int, first: int, end: int, eof: bool, n_ref: int, block_bytes: int) -> RangeWalk:
    """The records from ``first`` (a record start) while they start before ``end``; ``full`` holds the
    decoded bytes from logical ``base`` (ending at the stream's end when ``eof``)."""
    at, stop, incomplete = walk(url, full, base, first, end)
    if incomplete and eof:
        raise InvalidFormatError(url, "the last BAM record is cut short: the stream ends inside it (a truncated file?)", offset=stop)
    out = RangeWalk(first, end, first=first, stop=stop, incomplete=incomplete)
    if not at.size:
        out.blocks = tuple(np.zeros(0, np.int64) for _ in BLOCK_TABLES)
        return out
    i = at - base
    fixed = fixed_fields(full, i)
    check_records(url, full, i, fixed, base, n_ref)
    ends = alignment_ends(full, i, fixed)
    ref = fixed["ref"].astype(np.int64)
    pos = fixed["pos"].astype(np.int64)
    key = _keys(ref, pos, n_ref)
    cut = np.flatnonzero(((at[1:] // block_bytes) != (at[:-1] // block_bytes)) | (ref[1:] != ref[:-1])) + 1
    cut = np.concatenate(([0], cut))
    out.records = int(at.size)
    out.mapped = int(np.count_nonzero((fixed["flag"] & 4) == 0))
    out.unsorted = bool(np.any(np.diff(key) < 0))
    out.first_key, out.last_key = int(key[0]), int(key[-1])
    out.blocks = (cut.astype(np.int64), at[cut], ref[cut], pos[cut], np.maximum.reduceat(ends, cut))
    return out


def _keys(ref: np.ndarray, pos: np.ndarray, n_ref: int) -> np.ndarray:
    """Coordinate sort keys: reference (unplaced reads after every reference), then position."""
    unplaced = ref < 0
    return (np.where(unplaced, n_ref, ref) << _KEY_SHIFT) + np.where(unplaced, 0, pos + 1)


def _int32(full: np.ndarray, at: np.ndarray) -> np.ndarray:
    b = full[at[:, None] + np.arange(4)]
    return np.ascontiguousarray(b).view("<i4").ravel().astype(np.int64)


def _plausible(full: np.ndarray, at: np.ndarray, n_ref: int) -> np.ndarray:
    """Which positions ``at`` of ``full`` (each with at least 36 bytes after it) start a plausible record:
    fields inside its ``block_size`` and the header's references, a NUL-terminated printable name."""
    size, ref, pos = _int32(full, at), _int32(full, at + 4), _int32(full, at + 8)
    l_name = full[at + 12].astype(np.int64)
    n_cigar = full[at + 16].astype(np.int64) | (full[at + 17].astype(np.int64) << 8)
    l_seq, next_ref, next_pos = _int32(full, at + 20), _int32(full, at + 24), _int32(full, at + 28)
    ok = (size >= FIXED_SIZE - 4) & (ref >= -1) & (ref < n_ref) & (next_ref >= -1) & (next_ref < n_ref)
    ok &= (pos >= -1) & (next_pos >= -1) & (l_name >= 2) & (l_seq >= 0)
    ok &= FIXED_SIZE - 4 + l_name + 4 * n_cigar + (l_seq + 1) // 2 + l_seq <= size
    name_end = np.minimum(at + FIXED_SIZE + l_name - 1, full.size - 1)
    ok &= full[name_end] == 0
    ok &= (full[np.minimum(at + FIXED_SIZE, full.size - 1)] >= 33) & (full[np.minimum(at + FIXED_SIZE, full.size - 1)] <= 126)
    return ok


def _resync(full: np.ndarray, first: int, stop: int, n_ref: int) -> int | None:
    """The first position of ``full[first:stop]`` from which :data:`RESYNC_CHAIN` plausible records follow
    (fewer where ``full`` ends), or None."""
    limit = min(stop, full.size - FIXED_SIZE)
    for lo in range(first, max(limit, first), RESYNC_SEARCH):
        at = np.arange(lo, min(lo + RESYNC_SEARCH, limit), dtype=np.int64)
        for c in at[_plausible(full, at, n_ref)].tolist():
            q, good = c, True
            for _ in range(RESYNC_CHAIN):
                q += 4 + int(_int32(full, np.array([q]))[0])
                if q + FIXED_SIZE > full.size:
                    break
                if not _plausible(full, np.array([q], np.int64), n_ref)[0]:
                    good = False
                    break
            if good:
                return c
    return None


@dataclass(frozen=True)
class BamScanner:
    """The index pass's map step over one range: its records from a guessed first one, as blocks (see the
    module docstring). Picklable; look-ahead: :data:`LOOKAHEAD` bytes."""

    url: str
    header_size: int
    n_ref: int
    block_bytes: int

    def enough(self, after: np.ndarray) -> bool:
        return after.size >= LOOKAHEAD

    def __call__(self, full: np.ndarray, first: int, start: int, end: int, eof: bool) -> RangeWalk:
        base = start - first
        if end <= self.header_size:
            return RangeWalk(start, end, first=None)
        if start <= self.header_size:
            guess: int | None = self.header_size
        else:
            found = _resync(full, first, first + end - start, self.n_ref)
            guess = None if found is None else base + found
        if guess is None:
            return RangeWalk(start, end)
        try:
            out = _walk_range(self.url, full, base, guess, end, eof, self.n_ref, self.block_bytes)
        except InvalidFormatError as exc:
            return RangeWalk(start, end, first=guess, error=(exc.offset, exc.cause))
        out.start = start
        return out


def _rewalk(url: str, read: Any, first: int, end: int, logical: int, n_ref: int, block_bytes: int) -> RangeWalk:
    """:func:`_walk_range` from the record at ``first`` to ``end``, reading the decoded bytes again (with
    more look-ahead while the last record runs past them)."""
    ahead = LOOKAHEAD
    while True:
        hi = min(end + ahead, logical)
        full = np.frombuffer(read(first, hi), np.uint8)
        out = _walk_range(url, full, first, first, end, hi >= logical, n_ref, block_bytes)
        if not out.incomplete:
            return out
        ahead *= 4


def _reduce(url: str, scans: list[RangeWalk], read: Any, header: Header, logical: int, block_bytes: int) -> tuple[RangeWalk, list[RangeWalk]]:
    """The ranges' walks joined on the chain from the first record; totals in the first returned value."""
    n_ref = len(header.names)
    expected, parts = header.size, []
    for scan in scans:
        if scan.end <= expected:
            continue  # the header, or the inside of a record longer than the range
        if scan.first != expected or scan.error is not None or scan.incomplete:
            scan = _rewalk(url, read, expected, scan.end, logical, n_ref, block_bytes)
        parts.append(scan)
        expected = scan.stop
    if expected > logical:
        raise InvalidFormatError(url, "the last BAM record is cut short: the stream ends inside it (a truncated file?)", offset=logical)
    total = RangeWalk(0, logical, first=header.size, stop=expected)
    last = -1
    for part in parts:
        if part.records:
            total.unsorted |= part.unsorted or part.first_key < last
            last = part.last_key
            total.records += part.records
            total.mapped += part.mapped
    return total, parts


def _block_targets(cuts: np.ndarray, logical: int, block_bytes: int) -> np.ndarray:
    """Where blocks start (at the first record from there): every member start (``cuts``) and every
    ``block_bytes`` after it within the member; every ``block_bytes`` where the codec gives no cuts."""
    starts = np.asarray(cuts, np.int64)
    if not starts.size or starts[0] != 0:
        starts = np.concatenate(([0], starts))
    lengths = np.diff(np.append(starts, logical))
    per = np.maximum(-(-lengths // block_bytes), 1)
    step = np.arange(int(per.sum()), dtype=np.int64) - np.repeat(np.cumsum(per) - per, per)
    return np.repeat(starts, per) + step * block_bytes


def _merged_blocks(tables: dict[str, np.ndarray], targets: np.ndarray) -> dict[str, np.ndarray]:
    """The scan's sub-blocks (cut every :data:`SUB_BLOCK_BYTES` and at every change of reference) joined into
    blocks that start at the first sub-block at or after each target, and at every change of reference."""
    record, offset, ref, start, end = (tables[name] for name in BLOCK_TABLES)
    if not offset.size:
        return tables
    at = np.searchsorted(offset, targets)
    cut = np.zeros(offset.size, bool)
    cut[at[at < offset.size]] = True
    cut[0] = True
    cut[1:] |= ref[1:] != ref[:-1]
    keep = np.flatnonzero(cut)
    merged = (record[keep], offset[keep], ref[keep], start[keep], np.maximum.reduceat(end, keep))
    return {name: column.astype(tables[name].dtype) for name, column in zip(BLOCK_TABLES, merged)}


def _block_tables(parts: list[RangeWalk]) -> dict[str, np.ndarray]:
    before, out = 0, [[] for _ in BLOCK_TABLES]
    for part in parts:
        if part.records:
            record, *rest = part.blocks
            out[0].append(record + before)
            for i, column in enumerate(rest, 1):
                out[i].append(column)
            before += part.records
    dtypes = (np.int64, np.int64, np.int32, np.int64, np.int64)
    return {name: (np.concatenate(c) if c else np.zeros(0)).astype(dtype) for name, c, dtype in zip(BLOCK_TABLES, out, dtypes)}


class BlockIndex:
    """The index's blocks as Python lists, searched with bisect (no NumPy call per region), and the header's
    references: what a region needs, built once per reader (:meth:`Reader.memo`) or partition call."""

    def __init__(self, co: Any) -> None:
        a = co.attributes
        self.url, self.sorted, self.records, self.header_size = co.url, a.sorted, a.records, a.header_size
        self.header_ref, self.header = _header_of(co)
        self.ids = {name: i for i, name in enumerate(self.header.names)}
        record, offset, ref, start, end = _blocks(co)
        self.first, self.offset, self.ref, self.start = record.tolist(), offset.tolist(), ref.tolist(), start.tolist()
        self.end = end.tolist()
        self.stop_record = np.append(record[1:], a.records).tolist()
        self.stop_offset = np.append(offset[1:], a.uncompressed_size).tolist()
        #: Each reference's run of blocks [lo, hi) (a sorted BAM holds one run per reference, unplaced reads
        #: last), and the running maximum of the blocks' alignment ends within it, nondecreasing for bisect.
        self.runs: dict[int, tuple[int, int]] = {}
        reach = end.copy()
        if ref.size:
            bounds = np.flatnonzero(np.diff(ref)) + 1
            for lo, hi in zip(np.concatenate(([0], bounds)).tolist(), np.append(bounds, ref.size).tolist()):
                self.runs.setdefault(int(ref[lo]), (lo, hi))
                reach[lo:hi] = np.maximum.accumulate(end[lo:hi])
        self.reach = reach.tolist()
        #: The codec's units (BGZF members) as (decoded start, decoded end, compressed start, compressed end),
        #: and their decoded starts: a region reads its run of blocks unit by unit and stops at its end.
        info, codec = co.index().object_info, get_codec(a.compression)
        cindex = codec_index(co)
        table = codec.checkpoints(co.url, cindex, info.size)
        self.obj, self.info, self.units, self.cuts = co.obj, info, [], []
        self.decode = codec.unit_decoder(co.url, cindex) if table is not None else None
        if table is not None and self.decode is not None:
            n = len(table)
            ends = np.minimum(table.compressed[1:] + table.margin, table.data_end)
            ends[-1:] = table.data_end
            self.units = list(zip(table.logical[:n].tolist(), table.logical[1:].tolist(), table.compressed[:n].tolist(), ends.tolist()))
            self.cuts = table.logical[1:n].tolist()

    def units_of(self, start: int, end: int) -> tuple[tuple[int, int, int, int], ...]:
        """The units that decode ``[start, end)``, in order (none without a unit decoder)."""
        if end <= start or not self.units:
            return ()
        k = bisect_right(self.cuts, start)
        return tuple(self.units[k : bisect_left(self.cuts, end, k) + 1])

    def parse(self, region: str) -> tuple[str, int, int, int]:
        """A region string as (name, reference id, 0-based begin, 0-based exclusive end); ``"*"`` is
        :data:`UNPLACED`. A :class:`StrategyArgumentError` for an unsorted BAM or an unknown reference."""
        if not self.sorted:
            raise StrategyArgumentError(
                self.url, "regions need a coordinate-sorted BAM, as samtools index does; sort it (samtools sort) or use partition_num_chunks"
            )
        if region == "*" and "*" not in self.ids:
            return UNPLACED
        name, beg, end = parse_region(self.url, region, self.header.names)
        tid = self.ids.get(name)
        if tid is None:
            names = self.header.names
            shown = ", ".join(names[:20]) + (f", ... ({len(names)} in all)" if len(names) > 20 else "")
            raise StrategyArgumentError(self.url, f"no reference {name!r} in the BAM header; it has {shown}")
        return name, tid, beg, end

    def run(self, tid: int, beg: int, end: int) -> tuple[int, int] | None:
        """The first and last block that can hold records overlapping the region, or None."""
        lo, hi = self.runs.get(tid, (0, 0))
        j = bisect_left(self.start, end, lo, hi) - 1
        i = bisect_right(self.reach, beg, lo, j + 1)
        while j >= i and self.end[j] <= beg:
            j -= 1
        return (i, j) if i <= j else None


class BamReader(Reader):
    """``co.reader()`` of a BAM: :meth:`records`, :meth:`region` and :meth:`table` give the alignments
    ``samtools view file region`` gives (as SAM lines, or as the columns of :meth:`BAMSlice.to_arrow`),
    reading from the first block that can hold them (BGZF members decoded once, kept in the reader's LRU)
    and stopping at the first record past the region; :meth:`records_many` reads a region set's first
    members in few requests. A region's few records are decoded one by one in Python, many through the
    vectorised columns."""

    def blocks(self) -> BlockIndex:
        """The index's blocks and header, built once per reader."""
        return self.memo("bam_blocks", lambda: BlockIndex(self.co))

    def records(self, region: str) -> list[str]:
        """The alignments overlapping ``region`` (``"chr1:1,000-2,000"``, 1-based inclusive; ``"chr2"``;
        ``"*"``: the unplaced unmapped reads) as SAM text lines (without newlines), as ``samtools view file
        region`` prints them; an unknown reference is a :class:`StrategyArgumentError`, as samtools refuses it."""
        return self._lines(self._scan(self.blocks().parse(region)))

    def region(self, name: str, start: int | None = None, end: int | None = None) -> list[str]:
        """The alignments overlapping bases ``[start, end)`` (0-based, half-open, as pysam's
        ``AlignmentFile.fetch(name, start, end)``; None: from the reference's start, to its end) of ``name``,
        as :meth:`records` gives them."""
        return self._lines(self._scan(self._parsed(name, start, end)))

    def table(self, region: str, columns: Sequence[str] | None = None) -> pa.Table:
        """:meth:`records` of ``region`` as the columns of :meth:`BAMSlice.to_arrow` (``columns``: some of them)."""
        wanted = _wanted(self.url, columns)
        data, base, kept = self._scan(self.blocks().parse(region))
        return region_table(self.url, data, base, kept, self.blocks().header.names, wanted)

    def records_many(self, regions: Sequence[str]) -> list[list[str]]:
        """:meth:`records` of each region, in order, read together: the first member of each region's blocks
        comes from :meth:`~dataplug.reader.Reader.decoded_many` (near ones in one request, each member decoded
        once), the rest (a region running past it) as :meth:`records` reads it."""
        index = self.blocks()
        parsed = [index.parse(region) for region in regions]
        found = [index.run(*p[1:]) for p in parsed]
        spans = [self._first_span(index, f) for f in found if f is not None]
        firsts = iter(self.decoded_many(spans))
        return [self._lines(self._scan(p, f, next(firsts))) if f is not None else [] for p, f in zip(parsed, found)]

    def _parsed(self, name: str, start: int | None, end: int | None) -> tuple[str, int, int, int]:
        index = self.blocks()
        parsed = index.parse(name) if name in index.ids or name == "*" else index.parse(f"{name}:1")
        if parsed[1] < 0:
            return parsed
        beg, fin = max(0, start or 0), REGION_MAX if end is None else int(end)
        if fin < beg:
            raise StrategyArgumentError(self.url, f"region {name}:[{start}, {end}): the end is before the start")
        return parsed[0], parsed[1], beg, fin

    def _lines(self, scanned: tuple[bytes, int, list[int]]) -> list[str]:
        data, base, kept = scanned
        names = self.blocks().header.names
        if len(kept) <= FEW_RECORDS:
            return _rows(self.url, data, base, kept, names, as_lines=True)
        return sam_lines(region_table(self.url, data, base, kept, names, COLUMNS))

    @staticmethod
    def _first_span(index: BlockIndex, found: tuple[int, int]) -> tuple[int, int]:
        """The decoded bytes a region reads first: from its first block to the member start after it."""
        s, e = index.offset[found[0]], index.stop_offset[found[1]]
        k = bisect_right(index.cuts, s)
        return s, min(e, index.cuts[k]) if k < len(index.cuts) else e

    def _scan(
        self, parsed: tuple[str, int, int, int], found: tuple[int, int] | None = None, first: bytes | None = None
    ) -> tuple[bytes, int, list[int]]:
        """The decoded bytes read (from logical ``base``) and the starts of the records overlapping the
        region: its run of blocks read member by member (each read at least doubling what is held; ``first``:
        the first read, done already) until a record past the region."""
        index = self.blocks()
        _, tid, beg, end = parsed
        found = found or index.run(tid, beg, end)
        if found is None:
            return b"", 0, []
        s, e = index.offset[found[0]], index.stop_offset[found[1]]
        cuts, region, n_ref = index.cuts, (tid, beg, end), len(index.header.names)
        data, q, kept = b"", s, []
        expect = (index.ref[found[0]], index.start[found[0]])
        while True:
            hi = s + len(data)
            if first is not None:
                data, first = first, None
            else:
                k = bisect_right(cuts, hi + len(data))
                data += self.decoded(hi, min(e, cuts[k]) if k < len(cuts) else e)
            q, done = scan_region(self.url, data, s, q, e, region, n_ref, kept, expect if q == s else None)
            if done:
                return data, s, kept
            if s + len(data) >= e:
                raise CorruptIndexError(
                    self.url, f"a BAM record runs past decoded byte {e}, where the index's block ends; run preprocess(force=True)"
                )


def _wanted(url: str, columns: Sequence[str] | None) -> tuple[str, ...]:
    wanted = tuple(COLUMNS if columns is None else columns)
    unknown = [name for name in wanted if name not in COLUMNS]
    if unknown:
        raise StrategyArgumentError(url, f"no BAM column {', '.join(map(repr, unknown))}; the columns are {', '.join(COLUMNS)}")
    return wanted


def _rows(url: str, data: bytes, base: int, kept: list[int], names: tuple[str, ...], as_lines: bool = False) -> list[Any]:
    try:
        return record_rows(url, data, base, kept, names, as_lines)
    except (IndexError, ValueError, struct.error) as exc:  # a record whose fields point past it, read from a crafted object
        raise InvalidFormatError(url, f"a malformed BAM record ({exc})", offset=None) from None


@lru_cache(maxsize=64)
def _schema(wanted: tuple[str, ...]) -> tuple[pa.Schema, pa.Table]:
    """The schema of the columns ``wanted``, and its empty table (tables are immutable: one serves every
    empty region)."""
    schema = pa.schema([SCHEMA.field(name) for name in wanted])
    return schema, schema.empty_table()


def region_table(url: str, data: bytes, base: int, kept: list[int], names: tuple[str, ...], wanted: tuple[str, ...]) -> pa.Table:
    """The table of the records at logical ``kept`` of ``data`` (decoded bytes from ``base``): by
    :func:`record_rows` for :data:`FEW_RECORDS` or fewer, else by the vectorised columns."""
    schema, empty = _schema(wanted)
    if not kept:
        return empty
    if len(kept) <= FEW_RECORDS:
        return rows_table(_rows(url, data, base, kept, names), SCHEMA, wanted)
    buf = np.frombuffer(data, np.uint8)
    at = np.array(kept, np.int64) - base
    values = _columns(url, Layout(buf, at, fixed_fields(buf, at)), names, wanted)
    return pa.table([values[name].cast(schema.field(name).type) for name in wanted], schema=schema)


class BAM(StreamFormat):
    """BAM alignments (BGZF). Options: ``block_bytes`` (decoded bytes between block cuts within a BGZF member:
    how far before its region a region read starts walking records) and the BGZF codec's."""

    Attributes = BAMAttributes
    reader_class = BamReader
    options = {"block_bytes": f"decoded bytes between the index's block cuts within a BGZF member (default {DEFAULT_BLOCK_BYTES})"}
    sniff_priority = 40

    @classmethod
    def sniff(cls, sample: Sample) -> Detection | None:
        """BGZF whose first block decodes to ``BAM\\1``."""
        if sample.codec == "bgzf" and sample.decoded.startswith(MAGIC):
            return cls.detected(sample, "its first BGZF block starts with 'BAM\\1'")
        return None

    @classmethod
    def preprocess(cls, ctx: PreprocessContext) -> IndexData:
        url = ctx.obj.url
        block_bytes = positive_int(url, "block_bytes", ctx.options.get("block_bytes", DEFAULT_BLOCK_BYTES))
        codec = cls.codec_for(ctx)
        if codec.name != "bgzf":
            raise InvalidFormatError(url, f"not a BAM: a BAM is BGZF-compressed, this object is {codec.name!r}", offset=0)
        n = HEADER_PROBE
        while True:
            head = cls.logical_head(ctx, n)
            header = parse_header(url, head, len(head) < n)
            if header is not None:
                break
            n *= 4
        sub = min(block_bytes, SUB_BLOCK_BYTES)
        scans, index = cls.scan_stream(ctx, BamScanner(url, header.size, len(header.names), sub))
        total, parts = _reduce(url, scans, preprocess_reader(ctx, index), header, index.logical_size, sub)
        targets = _block_targets(get_codec(index.codec).cuts(url, index, ctx.info.size), index.logical_size, block_bytes)
        tables = _merged_blocks(_block_tables(parts), targets)
        attributes = cls.Attributes(
            **codec_attributes(ctx.info.size, index),
            records=total.records,
            mapped=total.mapped,
            unmapped=total.records - total.mapped,
            references=len(header.names),
            header_size=header.size,
            sort_order=header.sort_order,
            sorted=not total.unsorted,
            blocks=int(tables[BLOCK_TABLES[0]].size),
            block_bytes=block_bytes,
        )
        return IndexData(attributes, tables={**index.tables, **tables}, blobs={**index.blobs, HEADER_BLOB: bytes(head[: header.size])})

    @classmethod
    def validate_records(cls, url: str, attributes: Any, tables: dict, logical_size: int) -> None:
        a = attributes
        if any(name not in tables for name in BLOCK_TABLES):
            raise CorruptIndexError(url, "BAM block tables missing")
        record, offset, ref, start, end = (np.asarray(tables[name]) for name in BLOCK_TABLES)
        if any(t.ndim != 1 or t.size != a.blocks or (t.size and t.dtype.kind not in "iu") for t in (record, offset, ref, start, end)):
            raise CorruptIndexError(url, "BAM block tables have inconsistent shapes or types")
        if not 0 <= a.mapped <= a.records or a.unmapped != a.records - a.mapped or not 8 <= a.header_size <= logical_size:
            raise CorruptIndexError(url, "BAM attributes disagree with each other")
        if (a.records > 0) != (a.blocks > 0):
            raise CorruptIndexError(url, "BAM blocks do not match the record count")
        if a.blocks:
            record, offset, ref = record.astype(np.int64), offset.astype(np.int64), ref.astype(np.int64)
            if record[0] != 0 or np.any(np.diff(record) <= 0) or record[-1] >= a.records:
                raise CorruptIndexError(url, "BAM blocks are not increasing record numbers")
            if offset[0] != a.header_size or np.any(np.diff(offset) < FIXED_SIZE) or offset[-1] + FIXED_SIZE > logical_size:
                raise CorruptIndexError(url, "BAM block offsets are not increasing record starts inside the decoded stream")
            if np.any(np.diff(offset) < FIXED_SIZE * np.diff(record)):
                raise CorruptIndexError(url, "BAM blocks hold more records than their bytes can")
            if ref.min() < -1 or ref.max() >= a.references:
                raise CorruptIndexError(url, "BAM block references out of range")

    @classmethod
    def validate_index(cls, url: str, attributes: Any, tables: dict[str, np.ndarray], blob_sizes: dict[str, int], size: int) -> None:
        super().validate_index(url, attributes, tables, blob_sizes, size)
        if blob_sizes.get(HEADER_BLOB) != attributes.header_size:
            raise CorruptIndexError(url, "BAM header blob missing or of the wrong size")


def _header_of(co: Any) -> tuple[BlobRef, Header]:
    ref = co.index().blob(HEADER_BLOB)
    return ref, _checked_header(co.url, ref.read(), co.attributes.references)


#: Parsed headers by blob digest: the many slices of one BAM read in one process parse its header once.
_HEADERS: dict[tuple[str, str, int], Header] = {}


def _slice_header(url: str, ref: BlobRef, references: int) -> Header:
    key = (url, ref.sha256, references)
    header = _HEADERS.get(key)
    if header is None:
        if len(_HEADERS) >= 32:
            _HEADERS.clear()
        header = _HEADERS[key] = _checked_header(url, ref.read(), references)
    return header


def _checked_header(url: str, data: bytes, references: int) -> Header:
    try:
        header = parse_header(url, data, True)
    except InvalidFormatError as exc:
        raise CorruptIndexError(url, f"the index's BAM header blob does not parse: {exc.cause}") from None
    assert header is not None
    if header.size != len(data) or len(header.names) != references:
        raise CorruptIndexError(url, "the index's BAM header blob disagrees with its attributes")
    return header


def _blocks(co: Any) -> tuple[np.ndarray, ...]:
    return tuple(co.index().tables[name].astype(np.int64) for name in BLOCK_TABLES)


@dataclass(eq=False)
class BAMSlice(CloudObjectSlice):
    """Alignment records ``[first, stop)`` of a BAM object: the decoded bytes ``[start, end)``, which start on
    a record. A region slice keeps the records overlapping ``region`` (name, reference id, 0-based begin,
    0-based exclusive end), counted when first read."""

    header_ref: BlobRef
    references: int
    start: int
    end: int
    first: int
    stop: int
    source: LogicalReader | None
    region: tuple[str, int, int, int] | None = None
    #: (reference id, position) of the first record as the index's block summary says: checked when read,
    #: so that a crafted or shifted index is refused rather than giving other records.
    summary: tuple[int, int] | None = None
    #: A region slice's codec units (see :meth:`BlockIndex.units_of`) and their decoder: read one by one
    #: through the process's shared handle (each decoded once per process), stopping past the region.
    units: tuple[tuple[int, int, int, int], ...] = ()
    decode: Callable[[bytes, int, int], bytes] | None = None
    binary_output = True
    _header: Header | None = field(default=None, init=False, repr=False, compare=False)
    _count: int | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def num_records(self) -> int:
        """Records of the slice: for a region, those samtools returns for it (read once, then kept)."""
        if self.region is None:
            return self.stop - self.first
        if self._count is None:
            self._count = len(self._scan()[1])
        return self._count

    @property
    def known_num_records(self) -> int | None:
        return self.stop - self.first if self.region is None else self._count

    def byte_range(self) -> tuple[int, int]:
        return self.start, self.end

    def header_bytes(self) -> bytes:
        """The decoded binary BAM header: magic, text and the reference list, as a BAM file starts."""
        return self.header_ref.read()

    def _parsed(self) -> Header:
        if self._header is None:
            self._header = _slice_header(self.url, self.header_ref, self.references)
        return self._header

    @property
    def header(self) -> str:
        """The SAM header text (``@HD``, ``@SQ``, ``@RG``, ``@PG`` lines)."""
        return self._parsed().text

    def _scan(self) -> tuple[bytes, list[int]]:
        """A region slice's decoded bytes and the starts (logical offsets) of its records in them, walked
        until the first record past the region (:func:`scan_region`)."""
        kept: list[int] = []
        if self.end <= self.start:
            self._count = 0
            return b"", kept
        _, tid, beg, end = self.region  # type: ignore[misc]
        pieces = iter(
            [self.source]
            if self.decode is None or not self.units
            else [UnitReader(self.obj, self.object_info, max(self.start, u[0]), min(self.end, u[1]), (u,), self.decode) for u in self.units]
        )
        data, q = b"", self.start
        for piece in pieces:
            data += piece.read()  # type: ignore[union-attr]
            q, done = scan_region(
                self.url, data, self.start, q, self.end, (tid, beg, end), self.references, kept, self.summary if q == self.start else None
            )
            if done:
                self._count = len(kept)
                return data, kept
        raise CorruptIndexError(self.url, f"a BAM record runs past decoded byte {self.end}, where the index's block ends; run preprocess(force=True)")

    def _records(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The decoded bytes, the positions of the slice's records in them and their fixed fields; a chain
        that does not end where the index says is a :class:`CorruptIndexError`."""
        data = self.source.read() if self.source is not None and self.end > self.start else b""
        buf = np.frombuffer(data, np.uint8)
        try:
            at, stop, incomplete = walk(self.url, buf, self.start, self.start, self.end)
        except InvalidFormatError as exc:
            raise CorruptIndexError(
                self.url, f"the index's record boundaries do not fit the object ({exc.cause}); run preprocess(force=True)"
            ) from None
        if incomplete or stop != self.end or at.size != self.stop - self.first:
            raise CorruptIndexError(
                self.url,
                f"the index says {self.stop - self.first} records end at decoded byte {self.end}; the object's records do not: run preprocess(force=True)",
            )
        at -= self.start
        fixed = fixed_fields(buf, at)
        check_records(self.url, buf, at, fixed, self.start, self.references)
        if self.summary is not None and at.size and (int(fixed["ref"][0]), int(fixed["pos"][0])) != tuple(self.summary):
            raise CorruptIndexError(self.url, "the index's block summary does not describe the slice's first record; run preprocess(force=True)")
        return buf, at, fixed

    def schema(self) -> pa.Schema:
        return SCHEMA

    def to_arrow(self, columns: list[str] | None = None) -> pa.Table:
        """The records as SAM columns: ``qname``, ``flag``, ``rname``, ``pos`` (1-based, 0 unplaced),
        ``mapq``, ``cigar``, ``rnext`` (``=`` for the same reference), ``pnext``, ``tlen``, ``seq``, ``qual``
        (phred+33, ``*`` when absent) and ``tags`` (SAM text, tab-separated), as samtools view prints them."""
        wanted = _wanted(self.url, columns)
        if self.region is not None:
            data, kept = self._scan()
            return region_table(self.url, data, self.start, kept, self._parsed().names, wanted)
        schema, empty = _schema(wanted)
        buf, at, fixed = self._records()
        if not at.size:
            return empty
        values = _columns(self.url, Layout(buf, at, fixed), self._parsed().names, wanted)
        return pa.table([values[name].cast(schema.field(name).type) for name in wanted], schema=schema)

    def get(self) -> list[str]:
        """The records as SAM text lines (without newlines), as ``samtools view`` prints them; the header is
        :attr:`header`."""
        if self.region is not None:
            data, kept = self._scan()
            if len(kept) <= FEW_RECORDS:
                return _rows(self.url, data, self.start, kept, self._parsed().names, as_lines=True)
            return sam_lines(region_table(self.url, data, self.start, kept, self._parsed().names, COLUMNS))
        return sam_lines(self.to_arrow())

    def dump(self, fp: BinaryIO) -> None:
        """A BAM file of the slice: the header, its records and the BGZF end-of-file block."""
        if self.region is not None:
            data, kept = self._scan()
            size = struct.Struct("<i").unpack_from
            body = b"".join(data[q - self.start : q - self.start + 4 + size(data, q - self.start)[0]] for q in kept)
        else:
            buf, at, fixed = self._records()
            lengths = 4 + fixed["block_size"].astype(np.int64)
            keep = np.repeat(at - (np.cumsum(lengths) - lengths), lengths) + np.arange(int(lengths.sum()), dtype=np.int64)
            body = buf[keep].tobytes()
        fp.write(bgzf_compress(self.header_bytes()))
        fp.write(bgzf_compress(body))
        fp.write(BGZF_EOF)


def _columns(url: str, layout: Layout, names: tuple[str, ...], wanted: tuple[str, ...]) -> dict[str, pa.Array]:
    try:
        return columns(url, layout, names, wanted)
    except InvalidFormatError:
        raise
    except (IndexError, ValueError) as exc:  # a record whose fields point past it, read from a crafted object
        raise InvalidFormatError(url, f"a malformed BAM record ({exc})", offset=None) from None


SCHEMA = pa.schema(
    [
        ("qname", pa.string()),
        ("flag", pa.uint16()),
        ("rname", pa.string()),
        ("pos", pa.int64()),
        ("mapq", pa.uint8()),
        ("cigar", pa.string()),
        ("rnext", pa.string()),
        ("pnext", pa.int64()),
        ("tlen", pa.int64()),
        ("seq", pa.string()),
        ("qual", pa.string()),
        ("tags", pa.string()),
    ]
)


def _slices(
    co: Any,
    first: Sequence[int],
    stop: Sequence[int],
    start: Sequence[int],
    end: Sequence[int],
    regions: Sequence[Any],
    summaries: Sequence[Any],
    ref: BlobRef,
    index: BlockIndex | None = None,
) -> list[BAMSlice]:
    read, info = readers(co), co.index().object_info
    return [
        BAMSlice(
            obj=co.obj,
            object_info=info,
            number=n,
            header_ref=ref,
            references=co.attributes.references,
            start=int(s),
            end=int(e),
            first=int(f),
            stop=int(t),
            source=read(int(s), int(e)) if e > s and not units else None,
            region=region,
            summary=summary,
            units=units,
            decode=index.decode if units else None,  # type: ignore[union-attr]
        )
        for n, (f, t, s, e, region, summary) in enumerate(zip(first, stop, start, end, regions, summaries))
        for units in [index.units_of(int(s), int(e)) if index is not None and index.decode is not None else ()]
    ]


@strategy(BAM)
def partition_num_chunks(co: Any, num_chunks: int) -> list[BAMSlice]:
    """``num_chunks`` slices of about equal decoded bytes, cut at block starts: every alignment in exactly one,
    in file order, the unplaced unmapped reads at the end included (slices are empty when there are
    fewer blocks than slices)."""
    n = positive_int(co.url, "num_chunks", num_chunks)
    a = co.attributes
    record, offset, ref, start, _ = _blocks(co)
    cut_offsets = np.append(offset, a.uncompressed_size)
    cut_records = np.append(record, a.records)
    if not a.records:
        cut_offsets, cut_records = np.array([a.header_size, a.header_size]), np.zeros(2, np.int64)
    targets = cut_offsets[0] + (cut_offsets[-1] - cut_offsets[0]) * np.arange(n + 1) / n
    k = np.clip(np.searchsorted(cut_offsets, targets), 1, cut_offsets.size - 1)
    nearer = np.where(targets - cut_offsets[k - 1] <= cut_offsets[k] - targets, k - 1, k)
    bounds = np.maximum.accumulate(nearer)
    bounds[0], bounds[-1] = 0, cut_offsets.size - 1
    b0, b1 = bounds[:-1], bounds[1:]
    summaries = [(int(ref[b]), int(start[b])) if b < record.size and b < e else None for b, e in zip(b0.tolist(), b1.tolist())]
    return _slices(co, cut_records[b0], cut_records[b1], cut_offsets[b0], cut_offsets[b1], [None] * n, summaries, _header_of(co)[0])


def parse_region(url: str, region: str, names: Sequence[str]) -> tuple[str, int, int]:
    """``"chr2"``, ``"chr1:1000"`` or ``"chr1:1,000-2,000"`` (1-based, inclusive) as (name, 0-based begin,
    0-based exclusive end), as samtools reads it: tabix's reading (:func:`dataplug.framings.regions.parse_region`)
    with the begin made 0-based."""
    name, beg, end = parse_tabix_region(url, region, names)
    return name, beg - 1, end


@strategy(BAM)
def partition_regions(co: Any, regions: str | Sequence[str]) -> list[BAMSlice]:
    """One slice per region (``"chr2"``, ``"chr1:1000-2000"``, 1-based inclusive; ``"*"``: the unplaced
    unmapped reads at the end), holding exactly the alignments ``samtools view file region`` returns, in
    file order; each reads only the run of blocks that can overlap its region, and stops at the first record
    past it. Needs a coordinate-sorted BAM (:class:`StrategyArgumentError` otherwise, and for a reference the
    header does not name). The blocks are searched through the object's kept reader (built once)."""
    index = co.kept_reader().blocks()
    parsed = [index.parse(r) for r in ([regions] if isinstance(regions, str) else list(regions))]
    first, stop, s, e, summaries = [], [], [], [], []
    for _, tid, beg, fin in parsed:
        found = index.run(tid, beg, fin)
        if found is None:
            first.append(0)
            stop.append(0)
            s.append(index.header_size)
            e.append(index.header_size)
            summaries.append(None)
        else:
            i, j = found
            first.append(index.first[i])
            stop.append(index.stop_record[j])
            s.append(index.offset[i])
            e.append(index.stop_offset[j])
            summaries.append((index.ref[i], index.start[i]))
    return _slices(co, first, stop, s, e, parsed, summaries, index.header_ref, index)
