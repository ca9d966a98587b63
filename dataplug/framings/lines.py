"""Record-start index of line-oriented objects (plain text, CSV, plain FASTQ).

A record ends at a line break (``\\n``; for CSV also a bare ``\\r``) that is not inside a quoted field.
Preprocessing is a map over ranges of the object's logical (decoded) stream, run by its codec
(:class:`LineScanner`), and a reduce (:func:`reduce_scans`). A range cannot know whether it starts inside a
quoted field, so each map result holds its answer for both starting states; the reduce chains the ranges
from the start of the object and keeps, for each, the answer of the state it really starts in.

The index is a sampled table of ``(logical offset, record number)`` pairs at true record starts, about one
per ``sample_bytes``, with the object start and end as first and last rows. A slice of records
``[a, b)`` reads from the last anchor at or before ``a`` to the first anchor at or after ``b``, finds the
exact record starts in that range with the same scanner, and checks them against the anchors.
"""

from __future__ import annotations

import codecs
import warnings
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Callable

import numpy as np

from dataplug.codecs.base import CodecIndex, LogicalReader
from dataplug.errors import CorruptIndexError, DataplugWarning, InvalidFormatError, StrategyArgumentError
from dataplug.format import PreprocessContext
from dataplug.framings.base import StreamFormat, cut_offsets, readers
from dataplug.slice import CloudObjectSlice
from dataplug.strategies import monotonic_bounds

DEFAULT_SAMPLE_BYTES = 64 * 1024
#: The preprocessing option every line-indexed format takes (see ``DataFormat.options``).
SAMPLE_BYTES_OPTION = {"sample_bytes": "decoded bytes between sampled record starts in the index (default 64 KiB)"}
#: The option of the formats that decode their text (UTF8Text, CSV).
ENCODING_OPTION = {"encoding": "text encoding: 'utf-8' (default) or a single-byte one such as 'latin-1' or 'cp1252', checked in the index pass"}
NEWLINE = 10
CARRIAGE_RETURN = 13
UTF8_BOM = b"\xef\xbb\xbf"
#: ``LineIndex.bounds_by_bytes`` moves boundaries to codec cuts only as long as no run then holds more
#: than 1 + this of the mean run's bytes.
BALANCE = 0.2
#: Decoding before the slices' starts, as a share of the bytes they hold, beyond which a partition of a
#: compressed object warns (:class:`CheckpointSpacingWarning`): reading every slice then costs 1.5 passes or more.
WASTE_SHARE = 0.5
#: ... and beyond which per slice on average (below it, a worker's extra decoding takes milliseconds).
WASTE_WARNING = 2**18
#: What a codec's cuts are, as the warning names them.
CUT_NAMES = {"zstd": "zstd frame start", "bzip2": "bzip2 block start"}


class CheckpointSpacingWarning(DataplugWarning):
    """Slices are short against the spacing of the codec's checkpoints (gzip/BGZF checkpoints, zstd frames,
    bzip2 blocks): their workers decode much more than they hold. The message says how to fit them: the
    ``spacing`` to index a gzip object with, or how to recompress."""


@dataclass(frozen=True)
class Dialect:
    """How records end: at ``\n`` (and at a bare ``\r`` when ``bare_cr``), outside quoted fields.

    ``delimiter`` is only used to check that quotes open and close at field boundaries; ``encoding`` is
    how the records' bytes become text (a Python codec name, see :func:`text_encoding`).
    """

    quote: int | None = None
    delimiter: int | None = None
    bare_cr: bool = False
    encoding: str = "utf-8"


def text_encoding(url: str, value: object) -> str:
    """The codec name for the ``encoding`` option, if dataplug can cut records in it.

    Records are found by their byte-level line breaks and quotes, which is exact for UTF-8 and for
    single-byte ASCII-compatible encodings (latin-1, cp1252, ...), not for UTF-16 or Shift-JIS.
    """
    try:
        name = codecs.lookup(str(value)).name
    except LookupError:
        raise StrategyArgumentError(url, f"unknown text encoding {value!r}") from None
    if name in ("utf-8", "utf-8-sig"):
        return "utf-8"  # a byte order mark is skipped by the formats themselves
    decoder = codecs.getincrementaldecoder(name)(errors="replace")
    ascii_compatible = bytes(range(128)).decode(name, errors="replace") == "".join(map(chr, range(128)))
    if ascii_compatible and all(len(decoder.decode(bytes([b]))) == 1 for b in range(128, 256)):
        return name
    raise StrategyArgumentError(
        url, f"encoding {value!r} is not supported: records are cut at byte-level line breaks, which needs UTF-8 or a single-byte ASCII-compatible encoding such as 'latin-1' or 'cp1252'"
    )


def line_breaks(arr: np.ndarray, dialect: Dialect, next_byte: int | None = None) -> np.ndarray:
    """Positions that end a line: every ``\n``, plus every ``\r`` not followed by ``\n`` when the dialect
    says so (``next_byte`` is the byte after ``arr``; ``None`` means the end of the object or a record start)."""
    nl = np.flatnonzero(arr == NEWLINE)
    if not dialect.bare_cr:
        return nl
    cr = np.flatnonzero(arr == CARRIAGE_RETURN)
    if cr.size == 0:
        return nl
    following = np.full(cr.size, -1 if next_byte is None else next_byte, dtype=np.int16)
    inner = cr + 1 < arr.size
    following[inner] = arr[cr[inner] + 1]
    bare = cr[following != NEWLINE]
    return np.union1d(nl, bare) if bare.size else nl


def quote_positions(arr: np.ndarray, dialect: Dialect) -> np.ndarray:
    """Positions of the quote byte (none when the dialect has no quoting)."""
    if dialect.quote is None:
        return np.zeros(0, np.int64)
    return np.flatnonzero(arr == dialect.quote)


def terminators(buf: bytes, dialect: Dialect, in_quotes: bool = False) -> np.ndarray:
    """Positions of the bytes of ``buf`` that end a record, for a buffer starting in or out of quotes.

    Quotes are counted by parity, which is exact for RFC 4180 (a quote inside a quoted field is doubled).
    """
    arr = np.frombuffer(buf, dtype=np.uint8)
    breaks = line_breaks(arr, dialect)
    q = quote_positions(arr, dialect) if breaks.size else breaks
    if q.size == 0:
        return breaks if not in_quotes else breaks[:0]
    parity = np.searchsorted(q, breaks) & 1
    return breaks[parity == (1 if in_quotes else 0)]


@dataclass
class StateScan:
    """One byte range's answer for one starting state."""

    count: int  # record starts found in the range (terminators with data after them)
    anchor_offsets: np.ndarray  # sampled record starts (absolute offsets)
    anchor_ordinals: np.ndarray  # their 0-based ordinal among this range's record starts
    bad_quote: int  # offset of the first quote that opens a quoted field inside an unquoted one, or -1
    last_start: int = -1  # absolute offset of the range's last record start, or -1
    #: 0-based ordinals, among the range's record starts, of the records that are empty lines (CSV parsers skip them).
    blanks: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


@dataclass
class RangeScan:
    """Map result for the byte range ``[start, end)``: an answer for each starting state, and whether the
    range flips the state (odd number of quotes)."""

    start: int
    end: int
    flips: bool
    last_quote: int  # absolute offset of the range's last quote, or -1
    states: tuple[StateScan, StateScan]


def _may_open(full: np.ndarray, q: np.ndarray, dialect: Dialect, first: int, base: int, data_start: int) -> np.ndarray:
    """For each quote: may it open a quoted field, i.e. does it follow a delimiter, a line break, another
    quote (an escaped pair) or the start of the data?

    That is the one check record boundaries need: a quote that the parity count takes for an opening one
    but that sits inside an unquoted field is literal text to a CSV parser, so from there on the parity
    count and the parser would disagree. (Text after a closing quote, as in ``"a"b``, is sloppy but
    moves no boundary, and is accepted.) ``full`` holds the byte before the range where the object has
    one; ``first`` is the index in ``full`` of the range's first byte and ``base`` its absolute offset.
    """
    allowed = np.zeros(256, dtype=bool)
    allowed[[NEWLINE, CARRIAGE_RETURN, dialect.quote, dialect.delimiter]] = True
    prev = q + (first - 1)
    prev[0] = max(int(prev[0]), 0)  # sorted, so only the first can fall before the buffer
    may_open = allowed[full[prev]]
    if q[0] + base == data_start:
        may_open[0] = True
    return may_open


def _first_bad_quote(q: np.ndarray, may_open: np.ndarray, in_quotes: bool, base: int) -> int:
    """Offset of the first quote that would open a quoted field in the middle of an unquoted one, or -1."""
    opening = slice(1, None, 2) if in_quotes else slice(0, None, 2)
    ok = may_open[opening]
    return -1 if ok.all() else base + int(q[opening][np.argmin(ok)])


def scan_buffer(
    full: np.ndarray, first: int, start: int, end: int, eof: bool, dialect: Dialect, sample_bytes: int, data_start: int, breaks: np.ndarray | None = None
) -> RangeScan:
    """The map step over the logical bytes ``[start, end)`` = ``full[first : first + end - start]``, with the
    byte before it (when ``start`` > 0) and look-ahead after it; ``eof`` says ``full`` ends with the stream.
    ``breaks`` are the range's line breaks when the caller has them already."""
    arr = full[first : first + (end - start)]
    at_end = eof and full.size - first == arr.size
    nl = line_breaks(arr, dialect, None if at_end else int(full[first + arr.size])) if breaks is None else breaks
    q = quote_positions(arr, dialect)
    parity = np.searchsorted(q, nl) & 1 if q.size else np.zeros(nl.size, np.int64)
    may_open = _may_open(full, q, dialect, first, start, data_start) if q.size and dialect.delimiter is not None else None
    grid = np.arange(((start // sample_bytes) + 1) * sample_bytes, end + 1, sample_bytes) - start
    states = []
    for st in (0, 1):
        if dialect.quote is None and st == 1:
            states.append(StateScan(0, np.zeros(0, np.int64), np.zeros(0, np.int64), -1))
            continue
        term = nl[parity == st]
        if data_start > start:
            term = term[term >= data_start - start]  # before the first record: a BOM, or blank lines CSV skips
        if term.size and at_end and int(term[-1]) == arr.size - 1:
            term = term[:-1]  # the object's final newline starts no record
        rec_starts = term + 1
        # The range's first record start is always an anchor: it stands in for a sample point of the
        # previous range that no record start followed there.
        idx = np.unique(np.concatenate(([0], np.searchsorted(rec_starts, grid))))
        idx = idx[idx < rec_starts.size]
        states.append(
            StateScan(
                count=int(rec_starts.size),
                anchor_offsets=(rec_starts[idx] + start).astype(np.int64),
                anchor_ordinals=idx.astype(np.int64),
                bad_quote=_first_bad_quote(q, may_open, bool(st), start) if may_open is not None else -1,
                last_start=start + int(rec_starts[-1]) if rec_starts.size else -1,
                blanks=_blank_records(full, first, arr, term, dialect),
            )
        )
    return RangeScan(start, end, bool(q.size & 1), start + int(q[-1]) if q.size else -1, (states[0], states[1]))


def _blank_records(full: np.ndarray, first: int, arr: np.ndarray, term: np.ndarray, dialect: Dialect) -> np.ndarray:
    """Which of the records starting after the terminators ``term`` are empty lines (LF, CRLF or a bare CR
    right at their start), as indices into ``term``; the last one is judged on the look-ahead in ``full``."""
    if not term.size:
        return np.zeros(0, np.int64)
    length = term[1:] - term[:-1] - 1
    blank = (length == 0) | ((length == 1) & (arr[np.minimum(term[:-1] + 1, arr.size - 1)] == CARRIAGE_RETURN))
    pos = first + int(term[-1]) + 1
    last = False
    if pos < full.size:
        b0 = int(full[pos])
        crlf = pos + 1 < full.size and full[pos + 1] == NEWLINE
        last = b0 == NEWLINE or (b0 == CARRIAGE_RETURN and (dialect.bare_cr or crlf))
    return np.flatnonzero(np.append(blank, last)).astype(np.int64)


@dataclass(frozen=True)
class LineScanner:
    """The line framings' scanner (see :class:`dataplug.codecs.base.Scanner`): record starts of one range,
    for both quote states. Text must not hold NUL bytes: those mean binary or still-compressed data."""

    url: str
    dialect: Dialect
    sample_bytes: int
    data_start: int

    def enough(self, after: np.ndarray) -> bool:
        return after.size >= 2  # a CR at the range's end is a line break, or half of a CRLF

    def __call__(self, full: np.ndarray, first: int, start: int, end: int, eof: bool) -> RangeScan:
        stop = first + end - start
        if self.dialect.encoding == "utf-8":  # finish a character cut at the range's end from the look-ahead
            while stop < min(full.size, first + end - start + 3) and 0x80 <= full[stop] < 0xC0:
                stop += 1
        # The character is whole, or invalid, once a byte that cannot continue it follows (or the object ends).
        check_text(self.url, full[first:stop], start, self.dialect.encoding, final=eof or stop < full.size)
        return scan_buffer(full, first, start, end, eof, self.dialect, self.sample_bytes, self.data_start)


def check_text(url: str, arr: np.ndarray, base: int, encoding: str = "utf-8", final: bool = False) -> None:
    """:class:`InvalidFormatError` at the first NUL byte of ``arr`` (bytes from logical offset ``base``), or
    at the first byte that does not decode in ``encoding``, so a wrong encoding fails in the index pass and
    not later in a worker.

    numpy's ``min`` and ``max`` tell "no NUL" and "pure ASCII" in two reductions that release the GIL (a
    NUL search with ``re`` is several times slower and holds the GIL, which stalled the decoding thread of
    a pass); only then is the NUL found, or the part from the first
    non-ASCII byte on copied and decoded. ``arr`` is one range of a pass, so up to 3 UTF-8 continuation
    bytes at its start finish a character the previous range began, and a character cut at its end
    (unless ``final``) is left to the next range.
    """
    arr = np.asarray(arr, dtype=np.uint8)
    if not arr.size:
        return
    if arr.min() == 0:
        raise InvalidFormatError(
            url, "binary data (a NUL byte) where text was expected: is this the right format, or compressed with a codec dataplug does not know?",
            offset=base + int(np.argmin(arr)),
        )
    if encoding == "iso8859-1" or arr.max() < 0x80:
        return  # pure ASCII, or latin-1, in which every byte is a character
    at = int(np.argmax(arr >= 0x80))
    data = bytes(arr[at:])
    skip = 0
    if encoding == "utf-8" and at == 0:
        while skip < min(3, len(data)) and 0x80 <= data[skip] < 0xC0:
            skip += 1
    try:
        codecs.getincrementaldecoder(encoding)().decode(data[skip:], final)
    except UnicodeDecodeError as exc:
        hint = "; if the file is in another encoding, pass it to preprocess, e.g. encoding='latin-1'" if encoding == "utf-8" else ""
        raise InvalidFormatError(url, f"not valid {encoding} text ({exc.reason}){hint}", offset=base + at + skip + exc.start) from None


@dataclass(frozen=True)
class Span:
    """The anchors around a run of records ``[a, b)``: everything a worker needs to cut it exactly.

    The worker reads ``[start, end)``. Record ``a`` starts in ``[start, start_next]`` (``start`` is the last
    anchor at or before ``a``) and record ``b`` in ``[last, end]`` (``last`` is the last anchor at or before
    ``b``, ``end`` the first at or after it), so only those two short stretches are scanned.
    """

    start: int
    start_record: int
    start_next: int
    start_next_record: int
    last: int
    last_record: int
    end: int
    end_record: int
    size: int


@dataclass
class LineIndex:
    """Sampled record starts of a whole object: ``offsets[i]`` is where record ``records[i]`` starts.

    The first row is ``(data_start, 0)`` and the last ``(size, total)``.
    """

    offsets: np.ndarray
    records: np.ndarray
    #: Record numbers of the records that are empty lines, for formats whose rows skip them (CSV), else None.
    blanks: np.ndarray | None = None

    @classmethod
    def from_tables(cls, url: str, tables: dict[str, np.ndarray], size: int, blanks: bool = False) -> LineIndex:
        """The validated index stored in a sidecar's ``offsets`` and ``records`` tables (and ``blanks``, when
        the format keeps it)."""
        if "offsets" not in tables or "records" not in tables or (blanks and "blanks" not in tables):
            raise CorruptIndexError(url, "line index tables missing")
        index = cls(tables["offsets"].astype(np.int64), tables["records"].astype(np.int64), tables["blanks"].astype(np.int64) if blanks else None)
        index.validate(url, size)
        return index

    def tables(self) -> dict[str, np.ndarray]:
        return {"offsets": self.offsets, "records": self.records, **({"blanks": self.blanks} if self.blanks is not None else {})}

    def blank_count(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """How many of the records ``[a[k], b[k])`` are empty lines (zeros when the index keeps none)."""
        if self.blanks is None:
            return np.zeros(np.shape(a), np.int64)
        return np.searchsorted(self.blanks, b) - np.searchsorted(self.blanks, a)

    @property
    def total(self) -> int:
        return int(self.records[-1])

    def validate(self, url: str, size: int) -> None:
        """Bounds checks for a loaded index: a crafted sidecar fails here, not later with wrong data."""
        o, r = self.offsets, self.records
        if o.ndim != 1 or r.ndim != 1 or o.size != r.size or o.size < 2:
            raise CorruptIndexError(url, "line index tables have inconsistent shapes")
        if o[0] < 0 or o[-1] != size or np.any(np.diff(o) < 0) or r[0] != 0 or np.any(np.diff(r) < 0):
            raise CorruptIndexError(url, "line index offsets or record numbers are not monotonic within the object")
        if np.any(np.diff(r) > np.diff(o)):
            raise CorruptIndexError(url, "line index places more records between two anchors than there are bytes")
        b = self.blanks
        if b is not None and (b.ndim != 1 or np.any(np.diff(b) <= 0) or (b.size and (b[0] < 0 or b[-1] >= r[-1]))):
            raise CorruptIndexError(url, "line index blank-line numbers are not increasing record numbers of the object")

    def span_columns(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """The fields of the :class:`Span` of each run of records ``[a[k], b[k])`` but ``size``, as the
        columns of one ``(8, len(a))`` array (found for all runs in one pass)."""
        last = self.records.size - 1
        o, r = self.offsets, self.records
        i = np.searchsorted(r, a, side="right") - 1
        p = np.searchsorted(r, b, side="right") - 1
        j = np.minimum(np.searchsorted(r, b, side="left"), last)
        n = np.minimum(i + 1, last)
        return np.stack((o[i], r[i], o[n], r[n], o[p], r[p], o[j], r[j])).astype(np.int64, copy=False)

    def spans(self, a: np.ndarray, b: np.ndarray) -> list[Span]:
        """The :class:`Span` of each run of records ``[a[k], b[k])``."""
        size = int(self.offsets[-1])
        return [Span(*row, size) for row in zip(*self.span_columns(a, b).tolist())]

    def offset_to_record(self, targets: np.ndarray) -> np.ndarray:
        """Record numbers at (approximately) the given byte offsets, by interpolating between anchors.

        Monotonic in the target, so byte-based strategies stay exact: they cut in record space.
        """
        return np.floor(np.interp(targets, self.offsets, self.records)).astype(np.int64)

    def bounds_by_bytes(self, parts: int, first_record: int = 0, cuts: np.ndarray | None = None, align: int = 1) -> np.ndarray:
        """Record boundaries of ``parts`` runs of about equal bytes, from ``first_record`` to the end, at
        multiples of ``align`` records past ``first_record``.

        With ``cuts`` (logical offsets where the codec decodes without waste), each boundary moves to the
        first sampled record start after the cut nearest to it, so its slice starts decoding where it begins,
        as long as no run grows past 1 + :data:`BALANCE` of the mean run's bytes: where cuts are few for the
        runs asked (gzip checkpoints 1.5 MiB apart, 900 kB bzip2 blocks, zstd frames), the boundaries that
        moved furthest stay where equal bytes put them (their workers decode from the cut before them).
        """
        start = self.offsets[np.searchsorted(self.records, first_record, side="right") - 1]
        targets = np.linspace(start, self.offsets[-1], parts + 1)
        bounds = self._align(self.offset_to_record(targets), first_record, align)
        if cuts is not None and cuts.size > 1 and parts > 1:
            inner = targets[1:-1]
            k = np.clip(np.searchsorted(cuts, inner), 0, cuts.size - 1)
            nearer_previous = (k > 0) & (np.abs(cuts[np.maximum(k - 1, 0)] - inner) <= np.abs(cuts[k] - inner))
            k = np.where(nearer_previous, k - 1, k)
            after = np.minimum(np.searchsorted(self.offsets, cuts[k], side="left"), self.offsets.size - 1)
            snap = _balanced_snaps(targets, self.offsets[after].astype(np.float64), (1 + BALANCE) * (targets[1] - targets[0]))
            snapped = self._align(np.concatenate(([first_record], self.records[after], [self.total])), first_record, align)
            snapped[1:-1] = np.where(snap, snapped[1:-1], bounds[1:-1])
            if np.all(np.diff(snapped) > 0):
                bounds = snapped
        return monotonic_bounds(bounds, self.total, first_record)

    def _align(self, bounds: np.ndarray, first_record: int, align: int) -> np.ndarray:
        """Round inner boundaries up to ``first_record`` plus a multiple of ``align`` (the ends stay)."""
        if align == 1:
            return bounds
        out = first_record + -(-(bounds - first_record) // align) * align
        out[0], out[-1] = bounds[0], bounds[-1]
        return np.minimum(out, self.total)


def _balanced_snaps(targets: np.ndarray, snapped: np.ndarray, limit: float) -> np.ndarray:
    """Which inner boundaries move from ``targets[1:-1]`` to ``snapped`` so that every run is longer than 0
    and at most ``limit`` bytes: all of them, less, for each run too long (or empty), the boundary that
    widened (or narrowed) it most."""
    inner = targets[1:-1]
    snap = np.ones(inner.size, dtype=bool)
    for _ in range(inner.size + 1):
        pos = np.concatenate(([targets[0]], np.where(snap, snapped, inner), [targets[-1]]))
        sizes = np.diff(pos)
        bad = np.flatnonzero((sizes > limit) | (sizes <= 0))
        if not bad.size:
            break
        sign = np.where(sizes[bad] > limit, 1.0, -1.0)  # too long: a boundary moved out of the run; empty: into it
        left, right = bad - 1, bad  # the run's boundaries among the inner ones (-1 and inner.size: the ends)
        moved_left = np.where(left >= 0, sign * (inner[np.maximum(left, 0)] - pos[bad]), -np.inf)
        moved_right = np.where(right < inner.size, sign * (pos[bad + 1] - inner[np.minimum(right, inner.size - 1)]), -np.inf)
        drop = np.where(moved_left >= moved_right, left, right)
        snap[drop[(drop >= 0) & (drop < inner.size)]] = False
    return snap


def reduce_scans(url: str, scans: list[RangeScan], data_start: int, size: int, keep_blanks: bool = False) -> LineIndex:
    """The reduce step: chain the ranges' states from the object start and assemble the anchor table (and,
    with ``keep_blanks``, the record numbers of the empty lines)."""
    offsets = [np.array([data_start], np.int64)]
    records = [np.array([0], np.int64)]
    blanks = [np.zeros(0, np.int64)]
    before = 1 if size > data_start else 0  # record 0 starts at data_start
    state = 0
    last_quote = -1
    for scan in scans:
        s = scan.states[state]
        if s.bad_quote >= 0:
            raise InvalidFormatError(url, "quote character inside an unquoted field: CSV parsers take it as text, so record boundaries would be ambiguous (not RFC 4180)", offset=s.bad_quote)
        offsets.append(s.anchor_offsets)
        records.append(s.anchor_ordinals + before)
        blanks.append(s.blanks + before)
        before += s.count
        state ^= int(scan.flips)
        last_quote = max(last_quote, scan.last_quote)
    if state:
        raise InvalidFormatError(url, "a quoted field opened here is never closed (unbalanced quote)", offset=last_quote)
    offsets.append(np.array([size], np.int64))
    records.append(np.array([before], np.int64))
    return LineIndex(np.concatenate(offsets), np.concatenate(records), np.concatenate(blanks) if keep_blanks else None)


def build_line_index(
    fmt: type[StreamFormat], ctx: PreprocessContext, dialect: Dialect, data_start: int, sample_bytes: int = DEFAULT_SAMPLE_BYTES
) -> tuple[LineIndex, CodecIndex]:
    """Scan the object's logical stream with its codec, then reduce: the record-start index and the codec's index."""
    scans, codec_index = fmt.scan_stream(ctx, LineScanner(ctx.obj.url, dialect, sample_bytes, data_start))
    return reduce_scans(ctx.obj.url, scans, data_start, codec_index.logical_size), codec_index


def split_lines(text: str) -> list[str]:
    """Lines of ``text`` without their ``\\n`` or ``\\r\\n``; a trailing newline ends the last line, it
    does not start an empty one."""
    lines = text[:-1].split("\n") if text.endswith("\n") else (text.split("\n") if text else [])
    if "\r" not in text:  # the usual case: no pass over every line
        return lines
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def read_records(url: str, read: Callable[[int, int], bytes], index: LineIndex, a: int, b: int, dialect: Dialect) -> bytes:
    """Records ``[a, b)`` through ``read(start, end)`` of logical bytes (used while preprocessing, e.g. for a header)."""
    if b <= a:
        return b""
    span = index.spans(np.array([a]), np.array([b]))[0]
    return cut_records(url, read(span.start, span.end), span, a, b, dialect)[1]


def _record_starts(url: str, buf: bytes, base: int, lo: int, lo_record: int, hi: int, hi_record: int, size: int, dialect: Dialect) -> np.ndarray:
    """Positions in ``buf`` (object bytes from ``base``) of records ``lo_record .. hi_record - 1``, found
    between the anchors ``lo`` and ``hi`` and checked against them: a disagreement means the object is not
    the one indexed, and raises rather than returning wrong records."""
    region = buf[lo - base : hi - base]
    term = terminators(region, dialect)
    starts = np.concatenate(([0], term + 1))
    if hi == size:
        found = int(np.count_nonzero(starts < len(region)))
    else:
        found = int(term.size) if term.size and term[-1] == len(region) - 1 else -1
    if found != hi_record - lo_record:
        raise CorruptIndexError(
            url, f"decoded bytes [{lo}, {hi}) hold {found} records where the index expects {hi_record - lo_record}: the index does not fit the object; run preprocess(force=True)"
        )
    return starts + (lo - base)


def cut_records(url: str, buf: bytes, span: Span, a: int, b: int, dialect: Dialect) -> tuple[int, bytes]:
    """Cut records ``[a, b)`` out of ``buf`` = object bytes ``[span.start, span.end)``.

    Returns the records' offset in the object and their bytes. Only the stretches between the anchors
    around ``a`` and around ``b`` are scanned, so the cost does not grow with the slice.
    """
    s = span
    lo = 0
    if a != s.start_record:
        lo = int(_record_starts(url, buf, s.start, s.start, s.start_record, s.start_next, s.start_next_record, s.size, dialect)[a - s.start_record])
    hi = s.last - s.start
    if b != s.last_record:
        starts = _record_starts(url, buf, s.start, s.last, s.last_record, s.end, s.end_record, s.size, dialect)
        hi = int(starts[b - s.last_record]) if b - s.last_record < starts.size else len(buf)
    return s.start + lo, buf[lo:hi]


@dataclass
class LineRangeSlice(CloudObjectSlice):
    """Records ``[first, stop)`` of a line-oriented object, with the anchors that bracket them."""

    first: int
    stop: int
    span: Span
    dialect: Dialect
    #: Reads the decoded bytes ``[span.start, span.end)``, whatever the object's codec.
    source: LogicalReader

    @property
    def num_records(self) -> int:
        return self.stop - self.first

    def byte_range(self) -> tuple[int, int]:
        return self.span.start, self.span.end

    def dump(self, fp: BinaryIO) -> None:
        """The slice's records exactly as the object holds them (decoded when compressed)."""
        fp.write(self.raw())

    def raw(self) -> bytes:
        """The slice's records as bytes: one range read, cut exactly at record starts."""
        return self._fetch()[1]

    def text(self) -> str:
        """The slice's records decoded in the object's encoding (UTF-8 unless indexed with another one;
        :class:`InvalidFormatError` with the offset when they do not decode)."""
        offset, data = self._fetch()
        try:
            return data.decode(self.dialect.encoding)
        except UnicodeDecodeError as exc:
            raise InvalidFormatError(self.url, f"not valid {self.dialect.encoding}: {exc.reason}", offset=offset + exc.start) from None

    def _fetch(self) -> tuple[int, bytes]:
        if self.stop <= self.first:
            return self.span.start, b""
        return cut_records(self.url, self.source.read(), self.span, self.first, self.stop, self.dialect)


class LinePlan:
    """What the slices of one line partition share (see :class:`~dataplug.slice.SharedPlan`): the span
    columns of every slice and the codec's readers. A slice takes its :class:`Span` and its reader
    (``source``) from here when first used or pickled, so planning makes neither per slice (a reader of a
    compressed object looks up its checkpoint and window)."""

    fields = frozenset(("span", "source"))

    def __init__(self, columns: np.ndarray, size: int, read: Callable[[int, int], LogicalReader]) -> None:
        self.columns, self.size, self.read = columns, size, read
        prepare = getattr(read, "prepare", None)
        if prepare is not None:  # what the codec does once for all the ranges (gzip: load the windows blob)
            prepare(columns[0], columns[6])

    def resolve(self, row: int) -> dict[str, Any]:
        span = Span(*self.columns[:, row].tolist(), self.size)
        return {"span": span, "source": self.read(span.start, span.end)}


def line_slices(
    co: Any,
    slice_class: type[LineRangeSlice],
    index: LineIndex,
    bounds: np.ndarray,
    dialect: Dialect,
    per_slice: dict[str, Any] | None = None,
    **extra: Any,
) -> list[Any]:
    """One ``slice_class`` per run ``[bounds[i], bounds[i+1])`` of record numbers: spans found for all runs
    in one NumPy pass, then one light object per slice (:meth:`~dataplug.slice.CloudObjectSlice.build_many`);
    ``extra`` are fields every slice shares, ``per_slice`` fields with one value per slice."""
    bounds = np.asarray(bounds, dtype=np.int64)
    columns = index.span_columns(bounds[:-1], bounds[1:])
    _warn_if_checkpoints_are_sparse(co, columns[0], columns[6])
    count = bounds.size - 1
    shared = {"obj": co.obj, "object_info": co.index().object_info, "dialect": dialect, **extra}
    rows = {"number": range(count), "first": bounds[:-1].tolist(), "stop": bounds[1:].tolist(), **(per_slice or {})}
    return slice_class.build_many(shared, rows, LinePlan(columns, int(index.offsets[-1]), readers(co)))


def _warn_if_checkpoints_are_sparse(co: Any, starts: np.ndarray, ends: np.ndarray) -> None:
    """:class:`CheckpointSpacingWarning` when the workers of a compressed object's partition (slices reading
    the decoded bytes ``[starts[k], ends[k])``) decode more than :data:`WASTE_SHARE` of what the slices hold
    before their starts, saying how to fit the index or the object to slices of this size (a zstd slice deep
    inside one frame has its own warning)."""
    codec = co.attributes.compression
    if codec == "none" or starts.size < 2:
        return
    cuts = cut_offsets(co)
    if not cuts.size:
        return
    dropped = starts - cuts[np.maximum(np.searchsorted(cuts, starts, side="right") - 1, 0)]
    count = int(starts.size)
    held, waste = int((ends - starts).sum()), int(dropped.sum())
    apart = co.attributes.uncompressed_size / cuts.size
    fit = max(2**16, held // count // 2 // 2**16 * 2**16)
    if held <= 0 or waste <= WASTE_SHARE * held or waste <= WASTE_WARNING * count or fit >= apart:
        return
    if codec == "zstd":
        from dataplug.codecs.zstd import WASTE_WARNING as FRAME_WARNING

        if dropped.max() > FRAME_WARNING:
            return
    how = {
        "gzip": f"index with closer checkpoints: preprocess(force=True, spacing={fit}) "
        f"(about {co.attributes.spacing / fit:.0f} x the checkpoints, and of the sidecar's windows)",
        "zstd": f"recompress in frames of about {fit} bytes (the seekable format, or split -C {fit} --filter 'zstd -c')",
        "bzip2": "recompress with smaller blocks (bzip2 -1 writes blocks of 100 kB)" if fit >= 100_000 else "",
    }.get(codec, f"index with closer checkpoints: preprocess(force=True, spacing={fit})")
    warnings.warn(
        f"{co.url}: {count} slices of {held / count / 2**20:.2f} MiB on average start {waste / count / 2**20:.2f} MiB after a "
        f"{CUT_NAMES.get(codec, codec + ' checkpoint')} on average ({apart / 2**20:.2f} MiB apart), "
        f"so their workers decode {100 * waste / held:.0f} % more than the "
        f"slices hold. For slices this small, {how + ', or ' if how else ''}ask for fewer slices",
        CheckpointSpacingWarning,
        stacklevel=3,
    )
