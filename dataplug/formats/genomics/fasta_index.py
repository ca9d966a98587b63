"""The FASTA index pass and the layout it records (see :mod:`dataplug.formats.genomics.fasta`).

:class:`FastaScanner` maps over ranges of the logical stream. A range does not know which sequence it is
in, so it reports its header lines and its sequence lines as *runs* (consecutive lines of equal bases and
bytes), and the fragments of the lines its edges cut; :func:`stitch` (the reduce) joins them in order.
A sequence whose lines all hold the same number of bases except the last (``samtools`` requires that) has
one or two runs; an irregular one keeps every run, so any base still maps to its byte exactly
(:class:`Layout`).
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from typing import Any

import numpy as np

from dataplug.errors import CorruptIndexError, InvalidFormatError
from dataplug.framings.lines import check_text

NEWLINE, CR, GT = 10, 13, ord(">")
HEADERS_BLOB = "headers"
SEQ_TABLES = ("seq_length", "seq_offset", "seq_linebases", "seq_linewidth")
RUN_TABLES = ("run_offset", "run_base", "run_linebases", "run_linewidth")
#: Longest header line accepted (bytes): a header cut by range edges is carried to the reduce whole.
MAX_HEADER = 2**20


@dataclass
class Fragment:
    """Part of a line cut by a range edge: ``content`` bytes (the line break aside), whether the byte
    before the break is ``\\r`` (``cr``), and the bytes themselves when they may be a header (``text``)."""

    content: int
    cr: bool
    text: bytes | None


@dataclass
class FastaRangeScan:
    """Map result for the logical range ``[start, end)``.

    ``head`` is the end of a line started in an earlier range (``head_closed``: it ends in this range),
    ``tail`` the start of a line that goes on past the range (at logical ``tail_offset``, a header when
    ``tail_header``). Lines between are whole: their headers, and their sequence lines as runs;
    ``run_group[k]`` counts the range's headers before run ``k`` (0: the run continues the sequence the
    range starts in). Line numbers are local: 0 is the range's first line start.
    """

    lines: int
    head: Fragment | None
    head_closed: bool
    tail: Fragment | None
    tail_offset: int
    tail_header: bool
    header_line: np.ndarray
    header_offset: np.ndarray
    header_end: np.ndarray
    header_text: list[bytes]
    run_group: np.ndarray
    run_line: np.ndarray
    run_offset: np.ndarray
    run_bases: np.ndarray
    run_bytes: np.ndarray
    run_count: np.ndarray


@dataclass(frozen=True)
class FastaScanner:
    """Lines of one range: whole headers, sequence lines collapsed into runs, and the fragments of the
    lines its edges cut (the reduce joins them). It needs no look-ahead, so an unwrapped chromosome (one
    line of hundreds of megabases) costs no more than a wrapped one."""

    url: str

    def enough(self, after: np.ndarray) -> bool:
        return True

    def __call__(self, full: np.ndarray, first: int, start: int, end: int, eof: bool) -> FastaRangeScan:
        fe = first + (end - start)
        check_text(self.url, full[first:fe], start)
        at_end = eof and fe == full.size  # the range ends the stream: its last line ends there too
        shift = start - first  # logical offset = index in full + shift
        nl = np.flatnonzero(full[first:fe] == NEWLINE) + first
        starts = nl + 1
        starts = starts[starts < fe]
        head, head_closed = None, False
        if end > start and (start == 0 or full[first - 1] == NEWLINE):
            starts = np.concatenate(([first], starts))
        elif end > start:
            stop = int(nl[0]) if nl.size else fe
            head, head_closed = _fragment(full, first, stop, first), bool(nl.size) or at_end
        at = np.searchsorted(nl, starts)  # each line's newline, when the range holds it
        whole = at < nl.size
        ends = nl[np.minimum(at, nl.size - 1)] if nl.size else starts.copy()
        tail, tail_offset, tail_header = None, -1, False
        if starts.size and not whole[-1]:
            if at_end:
                ends[-1], whole[-1] = fe, True
            else:
                s = int(starts[-1])
                tail_header = bool(full[s] == GT)
                tail, tail_offset = _fragment(full, s, fe, s + 1 if tail_header else None), s + shift
        lines = int(starts.size)
        starts, ends = starts[whole], ends[whole]
        is_header = (ends > starts) & (full[np.minimum(starts, full.size - 1)] == GT)
        cr = (ends > starts) & (full[np.maximum(ends - 1, 0)] == CR)
        bases = ends - starts - cr
        width = ends - starts + 1
        h = np.flatnonzero(is_header)
        texts = [full[s + 1 : e - c].tobytes() for s, e, c in zip(starts[h].tolist(), ends[h].tolist(), cr[h].tolist())]
        seq = np.flatnonzero(~is_header)
        new = np.ones(seq.size, bool)
        if seq.size > 1:
            a, b = seq[:-1], seq[1:]
            new[1:] = (b != a + 1) | (bases[b] != bases[a]) | (width[b] != width[a])
        first_line = seq[new]
        return FastaRangeScan(
            lines=lines,
            head=head,
            head_closed=head_closed,
            tail=tail,
            tail_offset=tail_offset,
            tail_header=tail_header,
            header_line=h,
            header_offset=starts[h] + shift,
            header_end=np.minimum(ends[h] + 1, full.size) + shift,  # the stream end after a last header without newline
            header_text=texts,
            run_group=np.cumsum(is_header)[first_line],
            run_line=first_line,
            run_offset=starts[first_line] + shift,
            run_bases=bases[first_line],
            run_bytes=width[first_line],
            run_count=np.diff(np.append(np.flatnonzero(new), seq.size)),
        )


def _fragment(full: np.ndarray, a: int, b: int, text_from: int | None) -> Fragment:
    """The line fragment ``full[a:b]``, with its bytes from ``text_from`` on when they may be a header
    (and are not longer than one may be)."""
    text = full[text_from:b].tobytes() if text_from is not None and b - text_from <= MAX_HEADER else None
    return Fragment(b - a, bool(b > a and full[b - 1] == CR), text)


@dataclass
class _Sequence:
    """A sequence being stitched together by the reduce."""

    text: bytes
    header_offset: int
    line: int
    offset: int
    runs: list[list[int]]  # [offset, bases, bytes, count], merged when consecutive and equal

    def add(self, offset: int, bases: int, width: int, count: int) -> None:
        last = self.runs[-1] if self.runs else None
        if last is not None and last[1] == bases and last[2] == width and last[0] + last[2] * last[3] == offset:
            last[3] += count
        else:
            self.runs.append([offset, bases, width, count])


@dataclass
class _Pending:
    """A line started in an earlier range and not yet ended: where, its line number, what it holds so far."""

    offset: int
    line: int
    header: bool
    content: int
    cr: bool
    text: bytes | None


class _Stitcher:
    """The reduce: joins the ranges' lines in order into sequences (a range's first runs continue the
    sequence the previous range ended in; a line cut by range edges is completed from its fragments)."""

    def __init__(self, url: str, logical_size: int) -> None:
        self.url, self.size = url, logical_size
        self.sequences: list[_Sequence] = []
        self.pending: _Pending | None = None
        self.line = 0  # lines started before the current range

    def header(self, text: bytes, offset: int, line: int, first_base: int) -> None:
        self.sequences.append(_Sequence(text, offset, line, first_base, []))

    def run(self, offset: int, line: int, bases: int, width: int, count: int) -> None:
        if not self.sequences:
            if bases == 0:
                return  # blank lines before the first header
            raise InvalidFormatError(self.url, "data before the first '>' header: not FASTA", offset=offset, line=line)
        self.sequences[-1].add(offset, bases, width, count)

    def add(self, scan: FastaRangeScan) -> None:
        p = self.pending
        if scan.head is not None and p is not None:
            h = scan.head
            p.content += h.content
            p.cr = h.cr if h.content else p.cr
            p.text = p.text + h.text if p.text is not None and h.text is not None and len(p.text) + len(h.text) <= MAX_HEADER else None
            if scan.head_closed:
                self.pending = None
                if not p.header:
                    self.run(p.offset, p.line, p.content - p.cr, p.content + 1, 1)
                elif p.text is None:
                    raise InvalidFormatError(self.url, f"header line longer than {MAX_HEADER} bytes", offset=p.offset, line=p.line)
                else:
                    self.header(p.text[:-1] if p.cr else p.text, p.offset, p.line, min(p.offset + p.content + 1, self.size))
        bounds = np.searchsorted(scan.run_group, np.arange(len(scan.header_text) + 2))
        for g in range(len(scan.header_text) + 1):
            if g:
                k = g - 1
                self.header(scan.header_text[k], int(scan.header_offset[k]), self.line + int(scan.header_line[k]) + 1, int(scan.header_end[k]))
            for j in range(bounds[g], bounds[g + 1]):
                self.run(
                    int(scan.run_offset[j]),
                    self.line + int(scan.run_line[j]) + 1,
                    int(scan.run_bases[j]),
                    int(scan.run_bytes[j]),
                    int(scan.run_count[j]),
                )
        if scan.tail is not None:
            t = scan.tail
            self.pending = _Pending(scan.tail_offset, self.line + scan.lines, scan.tail_header, t.content, t.cr, t.text if scan.tail_header else None)
        self.line += scan.lines


def stitch(url: str, scans: list[FastaRangeScan], logical_size: int) -> list[_Sequence]:
    """The sequences of the whole stream, from the map results in order."""
    stitcher = _Stitcher(url, logical_size)
    for scan in scans:
        stitcher.add(scan)
    return stitcher.sequences


def _regular(runs: list[list[int]]) -> bool:
    """samtools' layout: every line holds the same bases but the last, which holds no more (blank lines
    may only follow the sequence)."""
    while runs and runs[-1][1] == 0:
        runs = runs[:-1]
    if not runs:
        return True
    head, tail = runs[0], runs[1:]
    return head[1] > 0 and (not tail or (len(tail) == 1 and tail[0][3] == 1 and 0 < tail[0][1] <= head[1]))


def build_tables(url: str, sequences: list[_Sequence]) -> tuple[dict[str, np.ndarray], bytes, list[str]]:
    """The sidecar tables, the headers blob and the names of irregular sequences; checks names."""
    seq = {k: np.zeros(len(sequences), np.int64) for k in SEQ_TABLES}
    seq_runs = np.zeros(len(sequences) + 1, np.int64)
    run_rows: list[tuple[int, int, int, int]] = []
    texts, irregular, seen = [], [], {}
    for i, s in enumerate(sequences):
        try:
            text = s.text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidFormatError(url, f"header is not UTF-8: {exc.reason}", offset=s.header_offset, line=s.line) from None
        name = split_header(text)[0]
        if not name:
            raise InvalidFormatError(url, "empty sequence name after '>'", offset=s.header_offset, line=s.line)
        if name in seen:
            raise InvalidFormatError(
                url, f"duplicate sequence name {name!r} (first at line {seen[name]}); samtools refuses it too", offset=s.header_offset, line=s.line
            )
        seen[name] = s.line
        texts.append(text)
        if not _regular(s.runs):
            irregular.append(name)
        base = 0
        for offset, bases, width, count in s.runs:
            if bases:
                run_rows.append((offset, base, bases, width))
                base += bases * count
        head = s.runs[0] if s.runs else [s.offset, 0, 0, 0]
        seq["seq_length"][i], seq["seq_offset"][i] = base, s.offset
        seq["seq_linebases"][i], seq["seq_linewidth"][i] = head[1], head[2]
        seq_runs[i + 1] = len(run_rows)
    runs = np.array(run_rows, np.int64).reshape(-1, 4)
    tables = {**seq, "seq_runs": seq_runs, **{k: runs[:, j].copy() for j, k in enumerate(RUN_TABLES)}}
    return tables, "\n".join(texts).encode(), irregular


def split_header(text: str) -> tuple[str, str]:
    """(name, description) of a header line without ``>``: the name runs to the first ASCII whitespace
    after any leading whitespace, as samtools reads it (``isspace`` in the C locale, not Unicode's)."""
    parts = text.encode().split(None, 1)
    return (parts[0].decode(), parts[1].decode() if len(parts) > 1 else "") if parts else ("", "")


def validate_tables(url: str, sequences: int, bases: int, tables: dict[str, np.ndarray], logical_size: int) -> None:
    """Bounds checks of a loaded index (:class:`CorruptIndexError`): a crafted sidecar fails here, not
    later with wrong bases."""

    def need(ok: Any, what: str) -> None:
        if not ok:
            raise CorruptIndexError(url, f"bad FASTA index: {what}")

    names = (*SEQ_TABLES, "seq_runs", *RUN_TABLES)
    need(all(n in tables and tables[n].ndim == 1 and tables[n].dtype.kind in "iu" for n in names), "tables missing or not 1-d integers")
    t = {n: tables[n].astype(np.int64) for n in names}
    n, r = sequences, t["run_offset"].size
    need(all(t[k].size == n for k in SEQ_TABLES) and t["seq_runs"].size == n + 1 and all(t[k].size == r for k in RUN_TABLES), "table sizes")
    runs = t["seq_runs"]
    need(runs[0] == 0 and runs[-1] == r and np.all(np.diff(runs) >= 0), "run ranges")
    length, offset = t["seq_length"], t["seq_offset"]
    need(np.all(length >= 0) and np.all(offset >= 0) and np.all(offset <= logical_size) and np.all(np.diff(offset) > 0), "sequence offsets")
    need(int(length.sum()) == bases, "base count")
    owner = np.repeat(np.arange(n), np.diff(runs))
    owned = np.diff(runs) > 0
    is_last, is_first = np.zeros(r, bool), np.zeros(r, bool)
    is_last[runs[1:][owned] - 1], is_first[runs[:-1][owned]] = True, True
    span = np.where(is_last, length[owner], np.append(t["run_base"][1:], 0)) - t["run_base"]
    need(np.all(t["run_base"][is_first] == 0) and np.all(span > 0) and np.all(t["run_linebases"] > 0), "runs must tile their sequence")
    need(np.all(length[~np.isin(np.arange(n), owner)] == 0), "a sequence with bases has no runs")
    need(np.all(t["run_linewidth"] >= t["run_linebases"]) and np.all(t["run_offset"] >= offset[owner]), "run widths or offsets")
    tail = t["run_offset"] + ((span - 1) // np.maximum(t["run_linebases"], 1)) * t["run_linewidth"] + (span - 1) % np.maximum(t["run_linebases"], 1)
    following = np.where(is_last, np.append(offset[1:], logical_size)[owner], np.append(t["run_offset"][1:], 0))
    need(np.all(tail < following), "runs overlap the next run or sequence, or pass the object's end")


@dataclass(frozen=True)
class Layout:
    """A loaded index: where every base of every sequence lies in the logical stream."""

    length: np.ndarray
    offset: np.ndarray
    linebases: np.ndarray
    seq_runs: np.ndarray
    run_offset: np.ndarray
    run_base: np.ndarray
    run_linebases: np.ndarray
    run_linewidth: np.ndarray
    cum: np.ndarray  # cum[i]: bases before sequence i, over the whole object

    def byte_of(self, i: int, p: int) -> int:
        """Logical offset of base ``p`` (``0 <= p < length[i]``) of sequence ``i``."""
        lo, hi = int(self.seq_runs[i]), int(self.seq_runs[i + 1])
        k = lo + int(np.searchsorted(self.run_base[lo:hi], p, side="right")) - 1
        q = p - int(self.run_base[k])
        bases = int(self.run_linebases[k])
        return int(self.run_offset[k]) + (q // bases) * int(self.run_linewidth[k]) + q % bases

    def byte_range(self, i: int, a: int, b: int) -> tuple[int, int]:
        """Logical bytes holding bases ``[a, b)`` of sequence ``i`` (an empty range at its start when ``a == b``)."""
        if b <= a:
            return (int(self.offset[i]), int(self.offset[i])) if a == 0 else (self.byte_of(i, a - 1) + 1,) * 2
        return self.byte_of(i, a), self.byte_of(i, b - 1) + 1

    def base_at(self, x: int) -> int:
        """The global number of the first base at or after logical offset ``x``."""
        i = int(np.searchsorted(self.offset, x, side="right")) - 1
        if i < 0:
            return 0
        lo, hi = int(self.seq_runs[i]), int(self.seq_runs[i + 1])
        k = lo + int(np.searchsorted(self.run_offset[lo:hi], x, side="right")) - 1
        if k < lo:
            return int(self.cum[i])
        q = x - int(self.run_offset[k])
        width, bases = int(self.run_linewidth[k]), int(self.run_linebases[k])
        p = int(self.run_base[k]) + (q // width) * bases + min(q % width, bases)
        return int(self.cum[i]) + min(p, int(self.length[i]))


class RegionLayout:
    """The layout of :class:`Layout` as Python lists, for one region at a time: a region's byte range is
    a few list lookups (a NumPy call per base costs more than the whole lookup). Built once per reader.

    A sequence laid out as samtools requires (every line as long as the first, but the last, which is not
    longer) is *uniform*: base ``p`` is at ``stride_offset[i] + (p // stride_bases[i]) * stride_width[i] + p %
    stride_bases[i]``, without looking up its run (``stride_bases[i]`` is 0 for the others)."""

    __slots__ = ("length", "offset", "run_base", "run_linebases", "run_linewidth", "run_offset", "seq_runs", "stride_bases", "stride_offset", "stride_width")

    def __init__(self, tables: dict[str, np.ndarray]) -> None:
        length, seq_runs = tables["seq_length"].astype(np.int64), tables["seq_runs"].astype(np.int64)
        offset, base, bases, width = (tables[k].astype(np.int64) for k in RUN_TABLES)
        self.length: list[int] = length.tolist()
        self.offset: list[int] = tables["seq_offset"].tolist()
        self.seq_runs: list[int] = seq_runs.tolist()
        self.run_base: list[int] = base.tolist()
        self.run_offset: list[int] = offset.tolist()
        self.run_linebases: list[int] = bases.tolist()
        self.run_linewidth: list[int] = width.tolist()
        counts = np.diff(seq_runs)
        owner = np.repeat(np.arange(length.size), counts)
        head = seq_runs[:-1][owner]  # each run's sequence's first run
        off0, lb0, lw0 = offset[head], np.maximum(bases[head], 1), width[head]
        span = np.append(base[1:], 0) - base
        last = np.zeros(base.size, bool)
        last[seq_runs[1:][counts > 0] - 1] = True
        span[last] = length[owner[last]] - base[last]
        # A run follows the first run's stride when it starts where the stride puts its first base and holds
        # lines of the same bases and bytes, or one line no longer than the first run's.
        fits = (base % lb0 == 0) & (offset == off0 + base // lb0 * lw0)
        fits &= ((bases == lb0) & (width == lw0)) | ((span == bases) & (bases <= lb0))
        uniform = (np.bincount(owner[~fits], minlength=length.size) == 0) & (counts > 0)
        k = np.minimum(seq_runs[:-1], max(base.size - 1, 0))  # each sequence's first run (any row when it has none)
        pick = (lambda column: np.where(uniform, column[k], 0).tolist()) if base.size else (lambda column: [0] * length.size)
        self.stride_offset: list[int] = pick(offset)
        self.stride_bases: list[int] = pick(bases)
        self.stride_width: list[int] = pick(width)

    def byte_of(self, i: int, p: int) -> int:
        """Logical offset of base ``p`` (``0 <= p < length[i]``) of sequence ``i``."""
        bases = self.stride_bases[i]
        if bases:
            q, r = divmod(p, bases)
            return self.stride_offset[i] + q * self.stride_width[i] + r
        lo, hi = self.seq_runs[i], self.seq_runs[i + 1]
        k = lo if hi - lo == 1 else bisect_right(self.run_base, p, lo, hi) - 1
        q = p - self.run_base[k]
        bases = self.run_linebases[k]
        return self.run_offset[k] + (q // bases) * self.run_linewidth[k] + q % bases

    def byte_range(self, i: int, a: int, b: int) -> tuple[int, int]:
        """Logical bytes holding bases ``[a, b)`` of sequence ``i`` (``0 <= a < b <= length[i]``)."""
        bases = self.stride_bases[i]
        if bases:
            off, width = self.stride_offset[i], self.stride_width[i]
            q, r = divmod(a, bases)
            q1, r1 = divmod(b - 1, bases)
            return off + q * width + r, off + q1 * width + r1 + 1
        return self.byte_of(i, a), self.byte_of(i, b - 1) + 1
