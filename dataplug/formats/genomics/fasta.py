"""FASTA over any codec (plain, gzip, BGZF): a ``samtools faidx``-style index built in one map-reduce pass,
slices of bases cut anywhere (a long sequence split across slices), random ``region()`` reads and a
``.fai`` (and, for BGZF, ``.gzi``) byte-identical to the one ``samtools faidx`` writes.

The index pass maps :class:`FastaScanner` over ranges of the logical stream. A range does not know which
sequence it is in, so it reports its header lines and its sequence lines as *runs* (consecutive lines of
equal bases and bytes); the reduce stitches the runs of each sequence across ranges. A sequence whose
lines all hold the same number of bases except the last (``samtools`` requires that) has one or two runs;
an irregular one keeps every run, so any base still maps to its byte exactly. Sidecar:

- tables ``seq_length``, ``seq_offset`` (logical offset of the first base), ``seq_linebases``,
  ``seq_linewidth`` (bytes per line with its line break), ``seq_runs`` (sequence ``i`` owns runs
  ``seq_runs[i]:seq_runs[i+1]``), and ``run_offset``, ``run_base`` (first base of the run in its
  sequence), ``run_linebases``, ``run_linewidth``: all int64;
- blob ``headers``: the header lines without ``>``, UTF-8, joined by ``\\n`` (names are the text up to the
  first whitespace, as for samtools; the rest is the description).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from dataplug.codecs.base import LogicalReader
from dataplug.errors import CorruptIndexError, InvalidFormatError
from dataplug.format import IndexData, PreprocessContext
from dataplug.framing import StreamAttributes, StreamFormat, codec_attributes, cut_offsets, readers
from dataplug.lineindex import check_text
from dataplug.slice import CloudObjectSlice
from dataplug.storage import StorageObject
from dataplug.strategies import even_bounds, monotonic_bounds, positive_int, strategy

NEWLINE, CR, GT = 10, 13, ord(">")
HEADERS_BLOB = "headers"
_SEQ_TABLES = ("seq_length", "seq_offset", "seq_linebases", "seq_linewidth")
_RUN_TABLES = ("run_offset", "run_base", "run_linebases", "run_linewidth")
#: Longest header line accepted (bytes): a header cut by range edges is carried to the reduce whole.
MAX_HEADER = 2**20
#: Names of irregular sequences kept in the attributes (the count is always exact).
_IRREGULAR_NAMES = 20
#: Compressed bytes read at a time while walking BGZF block headers for the ``.gzi``.
_GZI_CHUNK = 16 * 2**20


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


@dataclass(frozen=True)
class FASTAAttributes(StreamAttributes):
    sequences: int
    bases: int
    #: Sequences whose lines are not all equally long but the last (samtools refuses them; slicing and
    #: ``region()`` stay exact), and the first few of their names.
    irregular_sequences: int
    irregular_names: tuple[str, ...]

    @property
    def num_sequences(self) -> int:
        """The original Dataplug's name of ``sequences``."""
        return self.sequences


class FASTA(StreamFormat):
    """FASTA, plain or compressed (gzip, BGZF). Options: ``compression``, ``spacing`` (gzip checkpoints)."""

    Attributes = FASTAAttributes

    @classmethod
    def preprocess(cls, ctx: PreprocessContext) -> IndexData:
        url = ctx.obj.url
        scans, codec_index = cls.scan_stream(ctx, FastaScanner(url))
        sequences = _stitch(url, scans, codec_index.logical_size)
        tables, headers, irregular = _tables(url, sequences)
        attributes = cls.Attributes(
            **codec_attributes(ctx.info.size, codec_index),
            sequences=len(sequences),
            bases=int(tables["seq_length"].sum()),
            irregular_sequences=len(irregular),
            irregular_names=tuple(irregular[:_IRREGULAR_NAMES]),
        )
        return IndexData(attributes, tables={**codec_index.tables, **tables}, blobs={**codec_index.blobs, HEADERS_BLOB: headers})

    @classmethod
    def validate_records(cls, url: str, attributes: Any, tables: dict, logical_size: int) -> None:
        def need(ok: Any, what: str) -> None:
            if not ok:
                raise CorruptIndexError(url, f"bad FASTA index: {what}")

        names = (*_SEQ_TABLES, "seq_runs", *_RUN_TABLES)
        need(all(n in tables and tables[n].ndim == 1 and tables[n].dtype.kind in "iu" for n in names), "tables missing or not 1-d integers")
        t = {n: tables[n].astype(np.int64) for n in names}
        n, r = attributes.sequences, t["run_offset"].size
        need(all(t[k].size == n for k in _SEQ_TABLES) and t["seq_runs"].size == n + 1 and all(t[k].size == r for k in _RUN_TABLES), "table sizes")
        runs = t["seq_runs"]
        need(runs[0] == 0 and runs[-1] == r and np.all(np.diff(runs) >= 0), "run ranges")
        length, offset = t["seq_length"], t["seq_offset"]
        need(np.all(length >= 0) and np.all(offset >= 0) and np.all(offset <= logical_size) and np.all(np.diff(offset) > 0), "sequence offsets")
        need(int(length.sum()) == attributes.bases, "base count")
        owner = np.repeat(np.arange(n), np.diff(runs))
        owned = np.diff(runs) > 0
        is_last, is_first = np.zeros(r, bool), np.zeros(r, bool)
        is_last[runs[1:][owned] - 1], is_first[runs[:-1][owned]] = True, True
        span = np.where(is_last, length[owner], np.append(t["run_base"][1:], 0)) - t["run_base"]
        need(np.all(t["run_base"][is_first] == 0) and np.all(span > 0) and np.all(t["run_linebases"] > 0), "runs must tile their sequence")
        need(np.all(length[~np.isin(np.arange(n), owner)] == 0), "a sequence with bases has no runs")
        need(np.all(t["run_linewidth"] >= t["run_linebases"]) and np.all(t["run_offset"] >= offset[owner]), "run widths or offsets")
        tail = (
            t["run_offset"] + ((span - 1) // np.maximum(t["run_linebases"], 1)) * t["run_linewidth"] + (span - 1) % np.maximum(t["run_linebases"], 1)
        )
        need(np.all(tail < logical_size), "runs beyond the object")


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


def _stitch(url: str, scans: list[FastaRangeScan], logical_size: int) -> list[_Sequence]:
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


def _tables(url: str, sequences: list[_Sequence]) -> tuple[dict[str, np.ndarray], bytes, list[str]]:
    """The sidecar tables, the headers blob and the names of irregular sequences; checks names."""
    seq = {k: np.zeros(len(sequences), np.int64) for k in _SEQ_TABLES}
    seq_runs = np.zeros(len(sequences) + 1, np.int64)
    run_rows: list[tuple[int, int, int, int]] = []
    texts, irregular, seen = [], [], {}
    for i, s in enumerate(sequences):
        try:
            text = s.text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidFormatError(url, f"header is not UTF-8: {exc.reason}", offset=s.header_offset, line=s.line) from None
        name = _split_header(text)[0]
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
    tables = {**seq, "seq_runs": seq_runs, **{k: runs[:, j].copy() for j, k in enumerate(_RUN_TABLES)}}
    return tables, "\n".join(texts).encode(), irregular


# -- reading the index ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
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


#: Layouts of recently used sidecars, by ``id``, with the sidecar itself (so a reused id never matches).
_LAYOUTS: dict[int, tuple[Any, _Layout]] = {}


def _layout(co: Any) -> _Layout:
    """The base-to-byte layout of ``co``'s loaded index (built once per sidecar: ``region()`` is called often)."""
    sidecar = co.index()
    cached = _LAYOUTS.get(id(sidecar))
    if cached is not None and cached[0] is sidecar:
        return cached[1]
    t = {k: np.asarray(v, np.int64) for k, v in sidecar.tables.items() if k.startswith(("seq_", "run_"))}
    layout = _Layout(
        t["seq_length"],
        t["seq_offset"],
        t["seq_linebases"],
        t["seq_runs"],
        *(t[k] for k in _RUN_TABLES),
        cum=np.concatenate(([0], np.cumsum(t["seq_length"]))),
    )
    if len(_LAYOUTS) >= 16:
        _LAYOUTS.pop(next(iter(_LAYOUTS)))
    _LAYOUTS[id(sidecar)] = (sidecar, layout)
    return layout


def _split_header(text: str) -> tuple[str, str]:
    """(name, description) of a header line without ``>``: the name runs to the first ASCII whitespace
    after any leading whitespace, as samtools reads it (``isspace`` in the C locale, not Unicode's)."""
    parts = text.encode().split(None, 1)
    return (parts[0].decode(), parts[1].decode() if len(parts) > 1 else "") if parts else ("", "")


def _parse_headers(data: bytes) -> tuple[list[str], list[str], dict[str, int]]:
    parts = [_split_header(t) for t in data.decode("utf-8").split("\n")] if data else []
    names = [name for name, _ in parts]
    return names, [desc for _, desc in parts], {n: i for i, n in enumerate(names)}


#: Parsed headers blobs by (blob URL, SHA-256): repeated ``region()`` calls read and parse the blob once.
_HEADER_CACHE: dict[tuple[str, str], tuple[list[str], list[str], dict[str, int]]] = {}


def _headers(co: Any) -> tuple[list[str], list[str], dict[str, int]]:
    """Names, descriptions and the name lookup of ``co``'s sequences (the headers blob, read once)."""
    ref = co.index().blob(HEADERS_BLOB)
    key = (ref.location.url, ref.sha256)
    if key not in _HEADER_CACHE:
        if len(_HEADER_CACHE) >= 16:
            _HEADER_CACHE.pop(next(iter(_HEADER_CACHE)))
        _HEADER_CACHE[key] = _parse_headers(ref.read())
    names, descriptions, lookup = _HEADER_CACHE[key]
    if len(names) != co.attributes.sequences:
        raise CorruptIndexError(co.url, "the FASTA headers blob does not match the sequence table")
    return names, descriptions, lookup


# -- slices -----------------------------------------------------------------------------------------------


@dataclass
class FASTASlice(CloudObjectSlice):
    """Pieces of sequences: piece ``k`` is bases ``[offsets[k], offsets[k] + lengths[k])`` of sequence
    ``names[k]``, held by logical bytes ``[byte_starts[k], byte_ends[k])``; all are read in one range."""

    names: list[str]
    descriptions: list[str]
    offsets: list[int]
    lengths: list[int]
    linebases: list[int]
    byte_starts: list[int]
    byte_ends: list[int]
    #: Reads the decoded bytes from the first piece's start to the last piece's end.
    source: LogicalReader

    @property
    def num_bases(self) -> int:
        return sum(self.lengths)

    def sequences(self) -> list[str]:
        """Each piece's bases, without line breaks, case kept: one read of the slice's bytes."""
        buf = self.source.read() if self.names else b""
        out = []
        for s, e, n in zip(self.byte_starts, self.byte_ends, self.lengths):
            raw = buf[s - self.source.start : e - self.source.start].translate(None, b"\r\n")
            if len(raw) != n:
                raise CorruptIndexError(
                    self.url, f"decoded bytes [{s}, {e}) hold {len(raw)} bases where the index expects {n}: run preprocess(force=True)"
                )
            try:
                out.append(raw.decode("ascii"))
            except UnicodeDecodeError as exc:
                raise InvalidFormatError(self.url, "non-ASCII byte in a sequence", offset=s + exc.start) from None
        return out

    def get(self) -> str:
        """The pieces as FASTA text; a piece that does not start at base 0 is headed ``>{name} offset={offset}``,
        and lines hold as many bases as the sequence's first line (60 when it has none)."""
        parts = []
        for name, desc, offset, width, bases in zip(self.names, self.descriptions, self.offsets, self.linebases, self.sequences()):
            header = f">{name} offset={offset}" if offset else (f">{name} {desc}" if desc else f">{name}")
            width = width or 60
            parts.append("\n".join([header, *(bases[i : i + width] for i in range(0, len(bases), width))]) + "\n")
        return "".join(parts)

    def schema(self) -> pa.Schema:
        return pa.schema([("name", pa.string()), ("description", pa.string()), ("offset", pa.int64()), ("sequence", pa.large_string())])

    def to_arrow(self, columns: list[str] | None = None) -> pa.Table:
        """One row per piece: ``name``, ``description``, ``offset`` (of its first base in the sequence)
        and ``sequence``; the bytes are read only when ``sequence`` is asked for."""
        wanted = self.schema().names if columns is None else list(columns)
        values = {"name": self.names, "description": self.descriptions, "offset": self.offsets}
        if "sequence" in wanted:
            values["sequence"] = self.sequences()
        schema = self.schema()
        return pa.table({c: pa.array(values[c], schema.field(c).type) for c in wanted}, schema=pa.schema([schema.field(c) for c in wanted]))


def _slices(co: Any, layout: _Layout, pieces: list[list[tuple[int, int, int]]]) -> list[FASTASlice]:
    """One slice per list of ``(sequence, first base, end base)`` pieces."""
    names, descriptions, _ = _headers(co)
    info = co.index().object_info
    read = readers(co)
    out = []
    for number, group in enumerate(pieces):
        ranges = [layout.byte_range(i, a, b) for i, a, b in group]
        lo = ranges[0][0] if ranges else 0
        hi = ranges[-1][1] if ranges else 0
        out.append(
            FASTASlice(
                obj=co.obj,
                object_info=info,
                number=number,
                names=[names[i] for i, _, _ in group],
                descriptions=[descriptions[i] for i, _, _ in group],
                offsets=[a for _, a, _ in group],
                lengths=[b - a for _, a, b in group],
                linebases=[int(layout.linebases[i]) for i, _, _ in group],
                byte_starts=[r[0] for r in ranges],
                byte_ends=[r[1] for r in ranges],
                source=read(lo, hi),
            )
        )
    return out


def _pieces_by_bases(layout: _Layout, bounds: np.ndarray) -> list[list[tuple[int, int, int]]]:
    """For each run of global bases ``[bounds[k], bounds[k+1])``, the pieces of sequences it holds; an
    empty sequence goes to the run that its position starts (the last run for those at the very end)."""
    cum, n = layout.cum, layout.length.size
    starts = cum[:-1]
    out = []
    for k in range(bounds.size - 1):
        g0, g1 = int(bounds[k]), int(bounds[k + 1])
        i0 = int(np.searchsorted(starts, g0, side="left"))
        if i0 > 0 and cum[i0] > g0:
            i0 -= 1
        i1 = n if k == bounds.size - 2 else int(np.searchsorted(starts, g1, side="left"))
        group = []
        for i in range(i0, i1):
            a, b = max(g0, int(cum[i])) - int(cum[i]), min(g1, int(cum[i + 1])) - int(cum[i])
            if b > a or (layout.length[i] == 0 and cum[i] >= g0):
                group.append((i, a, max(a, b)))
        out.append(group)
    return out


@strategy(FASTA)
def partition_chunks_strategy(co: Any, num_chunks: int) -> list[FASTASlice]:
    """``num_chunks`` slices of about equal numbers of bases; a long sequence is split across slices. For
    gzip, a cut moves to the first base after the nearest checkpoint when that keeps slices within a
    quarter of their size, so workers decode almost nothing twice."""
    n = positive_int(co.url, "num_chunks", num_chunks)
    layout = _layout(co)
    total = int(layout.cum[-1])
    bounds = even_bounds(total, n)
    cuts = cut_offsets(co)
    if cuts.size > 1 and n > 1 and total:
        tolerance = total / n / 4
        for k in range(1, n):
            g = int(bounds[k])
            i = int(np.searchsorted(layout.cum, g, side="right")) - 1  # the sequence holding base g
            x = layout.byte_of(i, g - int(layout.cum[i]))
            j = int(np.searchsorted(cuts, x))
            near = [int(cuts[m]) for m in (j - 1, j) if 0 <= m < cuts.size]
            snapped = layout.base_at(min(near, key=lambda c: abs(c - x)))
            if abs(snapped - g) <= tolerance:
                bounds[k] = snapped
    bounds = monotonic_bounds(bounds, total)
    return _slices(co, layout, _pieces_by_bases(layout, bounds))


@strategy(FASTA)
def partition_num_sequences(co: Any, num_chunks: int) -> list[FASTASlice]:
    """``num_chunks`` slices of whole sequences in file order, balanced by bases (a sequence goes to the
    slice its middle base falls in; slices may be empty)."""
    n = positive_int(co.url, "num_chunks", num_chunks)
    layout = _layout(co)
    count = layout.length.size
    middle = layout.cum[:-1] + layout.length / 2
    bounds = monotonic_bounds(np.searchsorted(middle, even_bounds(int(layout.cum[-1]), n), side="left"), count)
    pieces = [[(i, 0, int(layout.length[i])) for i in range(int(a), int(b))] for a, b in itertools.pairwise(bounds.tolist())]
    return _slices(co, layout, pieces)


# -- random access and samtools' index ------------------------------------------------------------------


def region(co: Any, name: str, start: int, end: int) -> str:
    """Bases ``[start, end)`` (0-based, clipped to the sequence like ``pysam.FastaFile.fetch``) of sequence
    ``name``, reading only the decoded bytes that hold them (one range read)."""
    _, _, lookup = _headers(co)
    if name not in lookup:
        raise KeyError(f"{co.url} has no sequence named {name!r}")
    i = lookup[name]
    layout = _layout(co)
    length = int(layout.length[i])
    a, b = min(max(int(start), 0), length), min(max(int(end), 0), length)
    if b <= a:
        return ""
    lo, hi = layout.byte_range(i, a, b)
    raw = readers(co)(lo, hi).read().translate(None, b"\r\n")
    if len(raw) != b - a:
        raise CorruptIndexError(
            co.url, f"decoded bytes [{lo}, {hi}) hold {len(raw)} bases where the index expects {b - a}: run preprocess(force=True)"
        )
    return raw.decode("ascii")


def write_fai(co: Any, url: str, gzi_url: str | None = None) -> None:
    """Write the ``.fai`` that ``samtools faidx`` writes for this object to ``url`` (same storage options);
    for BGZF also its ``.gzi`` to ``gzi_url`` (default: ``url`` with ``.fai`` replaced by ``.gzi``).

    Refused, as samtools refuses, for gzip that is not BGZF, for irregular line lengths and for empty
    sequences. The ``.gzi`` needs every BGZF block start, more than the index keeps: the compressed
    object is read once, in large ranges, and only the block headers are parsed (nothing is inflated).
    """
    co.ensure_fresh_index()
    attrs = co.attributes
    if attrs.compression == "gzip":
        raise InvalidFormatError(co.url, "samtools cannot index files compressed with gzip, only BGZF (recompress with bgzip)")
    if attrs.irregular_sequences:
        raise InvalidFormatError(co.url, f"different line lengths in sequence {attrs.irregular_names[0]!r}: samtools faidx refuses it")
    names, _, _ = _headers(co)
    t = co.index().tables
    lines = []
    for name, length, offset, bases, width in zip(names, *(t[k].tolist() for k in _SEQ_TABLES)):
        if not length:
            raise InvalidFormatError(co.url, f"sequence {name!r} is empty: samtools faidx does not index it")
        lines.append(f"{name}\t{length}\t{offset}\t{bases}\t{width}\n")
    StorageObject(url, co.storage_options).write_bytes("".join(lines).encode())
    if attrs.compression == "bgzf":
        target = gzi_url or url.removesuffix(".fai") + ".gzi"
        StorageObject(target, co.storage_options).write_bytes(_gzi(co))


def _gzi(co: Any) -> bytes:
    """htslib's ``.gzi``: a little-endian u64 count, then (compressed, uncompressed) u64 offsets of every
    block start but the first, found by walking the block headers. Like htslib, blocks that decode to
    nothing (the EOF marker) are left out."""
    info = co.index().object_info
    size = info.size
    points: list[tuple[int, int]] = []
    pos = uncompressed = 0
    chunk_start, chunk = 0, b""
    while pos < size:
        if pos + 18 > chunk_start + len(chunk):
            chunk_start, chunk = pos, co.obj.read_range(pos, min(size, pos + _GZI_CHUNK), expect=info)
        at = pos - chunk_start
        if chunk[at : at + 4] != b"\x1f\x8b\x08\x04" or chunk[at + 12 : at + 14] != b"BC":
            raise InvalidFormatError(co.url, "not a BGZF block header", offset=pos)
        block = int.from_bytes(chunk[at + 16 : at + 18], "little") + 1
        if pos + block > chunk_start + len(chunk):
            chunk_start, chunk = pos, co.obj.read_range(pos, min(size, pos + max(_GZI_CHUNK, block)), expect=info)
            at = 0
        if len(chunk) < at + block:
            raise InvalidFormatError(co.url, "truncated BGZF block", offset=pos)
        decoded = int.from_bytes(chunk[at + block - 4 : at + block], "little")
        if decoded:
            points.append((pos, uncompressed))
        uncompressed += decoded
        pos += block
    points = points[1:]
    return len(points).to_bytes(8, "little") + np.array(points, "<u8").reshape(-1, 2).tobytes()
