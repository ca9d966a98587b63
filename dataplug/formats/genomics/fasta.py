"""FASTA over any codec (plain, gzip, BGZF, zstd, bzip2): a ``samtools faidx``-style index built in one map-reduce pass,
slices of bases cut anywhere (a long sequence split across slices), random access and a ``.fai`` (and, for
BGZF, ``.gzi``) byte-identical to the one ``samtools faidx`` writes.

Random access goes through a long-lived :class:`FastaReader` (``co.reader()``, or the one a
:class:`~dataplug.CloudObject` keeps for :func:`region` and :func:`regions`): the layout is turned into Python
lists once, the object stays open and decoded BGZF members (gzip stretches, zstd frames) stay in its LRU, so a
region is a few list lookups and one read; a region set (:func:`regions`) is planned as few requests.

The index pass (:mod:`dataplug.formats.genomics.fasta_index`) is one map-reduce over the logical stream
that records, per sequence, what ``samtools faidx`` records, plus *runs* of equal lines so irregular line
lengths still slice exactly. Sidecar:

- tables ``seq_length``, ``seq_offset`` (logical offset of the first base), ``seq_linebases``,
  ``seq_linewidth`` (bytes per line with its line break), ``seq_runs`` (sequence ``i`` owns runs
  ``seq_runs[i]:seq_runs[i+1]``), and ``run_offset``, ``run_base`` (first base of the run in its
  sequence), ``run_linebases``, ``run_linewidth``: all int64;
- blob ``headers``: the header lines without ``>``, UTF-8, joined by ``\\n`` (names are the text up to the
  first whitespace, as for samtools; the rest is the description).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from dataplug.codecs.base import LogicalReader
from dataplug.codecs.bgzf import gzi_bytes
from dataplug.errors import CorruptIndexError, InvalidFormatError
from dataplug.format import Detection, IndexData, PreprocessContext, Sample
from dataplug.formats.genomics.fasta_index import (
    HEADERS_BLOB,
    RUN_TABLES,
    SEQ_TABLES,
    FastaScanner,
    Layout,
    RegionLayout,
    build_tables,
    split_header,
    stitch,
    validate_tables,
)
from dataplug.framings.base import StreamAttributes, StreamFormat, codec_attributes, codec_index, cut_offsets, readers
from dataplug.framings.regions import REGION_MAX, parse_region
from dataplug.reader import Reader
from dataplug.slice import CloudObjectSlice
from dataplug.storage import StorageObject
from dataplug.strategies import even_bounds, monotonic_bounds, positive_int, strategy

#: Names of irregular sequences kept in the attributes (the count is always exact).
_IRREGULAR_NAMES = 20
#: Compressed bytes read at a time while walking BGZF block headers for the ``.gzi``.
_GZI_CHUNK = 16 * 2**20


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
    """FASTA, plain or compressed (gzip, BGZF, zstd, bzip2). Options: ``compression``, ``spacing`` (gzip checkpoints)."""

    Attributes = FASTAAttributes

    sniff_priority = 15

    @classmethod
    def sniff(cls, sample: Sample) -> Detection | None:
        """A ``>`` sequence header first."""
        if sample.decoded.startswith(b">") and sample.lines():
            return cls.detected(sample, "starts with a '>' sequence header", ("UTF8Text",))
        return None

    @classmethod
    def preprocess(cls, ctx: PreprocessContext) -> IndexData:
        url = ctx.obj.url
        scans, codec_index = cls.scan_stream(ctx, FastaScanner(url))
        sequences = stitch(url, scans, codec_index.logical_size)
        tables, headers, irregular = build_tables(url, sequences)
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
        validate_tables(url, attributes.sequences, attributes.bases, tables, logical_size)


# -- reading the index ----------------------------------------------------------------------------------


#: Layouts of recently used sidecars, by ``id``, with the sidecar itself (so a reused id never matches).
_LAYOUTS: dict[int, tuple[Any, Layout]] = {}


def _layout(co: Any) -> Layout:
    """The base-to-byte layout of ``co``'s loaded index (built once per sidecar: ``region()`` is called often)."""
    sidecar = co.index()
    cached = _LAYOUTS.get(id(sidecar))
    if cached is not None and cached[0] is sidecar:
        return cached[1]
    t = {k: np.asarray(v, np.int64) for k, v in sidecar.tables.items() if k.startswith(("seq_", "run_"))}
    layout = Layout(
        t["seq_length"],
        t["seq_offset"],
        t["seq_linebases"],
        t["seq_runs"],
        *(t[k] for k in RUN_TABLES),
        cum=np.concatenate(([0], np.cumsum(t["seq_length"]))),
    )
    if len(_LAYOUTS) >= 16:
        _LAYOUTS.pop(next(iter(_LAYOUTS)))
    _LAYOUTS[id(sidecar)] = (sidecar, layout)
    return layout


Headers = tuple[list[str], list[str], dict[str, int], list[str]]


def _parse_headers(data: bytes) -> Headers:
    lines = data.decode("utf-8").split("\n") if data else []
    parts = [split_header(t) for t in lines]
    names = [name for name, _ in parts]
    return names, [desc for _, desc in parts], {n: i for i, n in enumerate(names)}, lines


#: Parsed headers blobs by (blob URL, SHA-256): repeated ``region()`` calls read and parse the blob once.
_HEADER_CACHE: dict[tuple[str, str], Headers] = {}
#: A region read starting at most this many bytes after its sequence's first base also reads the header line
#: before it, once per reader (see :meth:`_Sequences.check_header`): within it, on a remote store, the line
#: joins the region's request, and the read costs this much more at most.
_HEADER_REACH = 64 * 1024


def _headers(co: Any) -> Headers:
    """Names, descriptions, the name lookup and the whole header lines (without ``>``) of ``co``'s
    sequences (the headers blob, read once)."""
    return _sidecar_headers(co.url, co.index(), co.attributes.sequences)


def _sidecar_headers(url: str, sidecar: Any, count: int) -> Headers:
    """:func:`_headers` of the index ``sidecar`` of ``count`` sequences."""
    ref = sidecar.blob(HEADERS_BLOB)
    key = (ref.location.url, ref.sha256)
    if key not in _HEADER_CACHE:
        if len(_HEADER_CACHE) >= 16:
            _HEADER_CACHE.pop(next(iter(_HEADER_CACHE)))
        _HEADER_CACHE[key] = _parse_headers(ref.read())
    names, descriptions, lookup, lines = _HEADER_CACHE[key]
    if len(names) != count:
        raise CorruptIndexError(url, "the FASTA headers blob does not match the sequence table")
    return names, descriptions, lookup, lines


def _header_start(offset: int, header: str) -> int:
    """Where a read must start to hold the header line ``>header`` before a first base at ``offset``, its
    line break (LF or CRLF) and the byte before it."""
    return max(0, offset - len(header.encode("utf-8")) - 4)


def _check_header(url: str, buf: bytes, base: int, offset: int, header: str) -> None:
    """The bytes of ``buf`` (logical bytes from ``base``) before the first base at ``offset`` must be the
    line ``>header`` the index gives (after a line break or at the object start), when ``buf`` holds them:
    an index whose headers blob was edited and re-signed would otherwise name the sequence wrongly."""
    expected = b">" + header.encode("utf-8")
    end = offset - base
    for terminator in (b"\n", b"\r"):
        end -= 1 if end > 0 and buf[end - 1 : end] == terminator else 0
    begin = buf.rfind(b"\n", 0, end) + 1
    if begin == 0 and base > 0 and end <= len(expected):
        return  # the read does not reach before the line: nothing to compare
    actual = buf[begin:end]
    if actual != expected:
        shown = actual[:100].decode("utf-8", "replace")
        raise CorruptIndexError(
            url, f"the index gives the header line {'>' + header!r} to the sequence whose bases start at byte {offset}, but the object has {shown!r} there: "
            "the index does not describe this object; run preprocess(force=True)",
        )


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
    #: Reads the decoded bytes from the first piece's start (or its header line's) to the last piece's end.
    source: LogicalReader
    #: The header line (without ``>``) the index gives each piece's sequence: checked against the bytes
    #: read before a piece that starts at base 0 (empty: not checked).
    headers: list[str] = field(default_factory=list)

    @property
    def num_bases(self) -> int:
        return sum(self.lengths)

    @property
    def num_records(self) -> int:
        """Pieces of sequences in the slice."""
        return len(self.names)

    def byte_range(self) -> tuple[int, int] | None:
        return (self.byte_starts[0], self.byte_ends[-1]) if self.names else None

    def sequences(self) -> list[str]:
        """Each piece's bases, without line breaks, case kept: one read of the slice's bytes."""
        buf = self.source.read() if self.names else b""
        out = []
        for k, (s, e, n) in enumerate(zip(self.byte_starts, self.byte_ends, self.lengths)):
            if self.headers and self.offsets[k] == 0 and n:
                _check_header(self.url, buf, self.source.start, s, self.headers[k])
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


def _slices(co: Any, layout: Layout, pieces: list[list[tuple[int, int, int]]]) -> list[FASTASlice]:
    """One slice per list of ``(sequence, first base, end base)`` pieces."""
    names, descriptions, _, headers = _headers(co)
    info = co.index().object_info
    read = readers(co)
    out = []
    for number, group in enumerate(pieces):
        ranges = [layout.byte_range(i, a, b) for i, a, b in group]
        lo = ranges[0][0] if ranges else 0
        hi = ranges[-1][1] if ranges else 0
        if group and group[0][1] == 0 and hi > lo:  # a few bytes more: the first sequence's header line
            lo = _header_start(lo, headers[group[0][0]])
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
                headers=[headers[i] for i, _, _ in group],
            )
        )
    return out


def _pieces_by_bases(layout: Layout, bounds: np.ndarray) -> list[list[tuple[int, int, int]]]:
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
def partition_num_chunks(co: Any, num_chunks: int) -> list[FASTASlice]:
    """``num_chunks`` slices of about equal numbers of bases; a long sequence is split across slices (a
    slice's records are its pieces of sequences). For gzip, a cut moves to the first base after the nearest
    checkpoint when that keeps slices within a quarter of their size, so workers decode almost nothing
    twice. The contract's name of :func:`partition_chunks_strategy`."""
    return _chunks(co, num_chunks)


@strategy(FASTA)
def partition_chunks_strategy(co: Any, num_chunks: int) -> list[FASTASlice]:
    """The original Dataplug's name of :func:`partition_num_chunks`."""
    return _chunks(co, num_chunks)


def _chunks(co: Any, num_chunks: int) -> list[FASTASlice]:
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


@dataclass
class _Sequences:
    """What region reads need from a loaded index, built once per reader: the name lookup, the header lines
    (without ``>``), the layout as lists, and the sequences whose header line the reader has checked."""

    lookup: dict[str, int]
    headers: list[str]
    layout: RegionLayout
    checked: set[int] = field(default_factory=set)

    @classmethod
    def of(cls, url: str, sidecar: Any) -> _Sequences:
        """From the loaded index ``sidecar`` (the one a reader reads by)."""
        t = sidecar.tables
        layout = RegionLayout({k: t[k] for k in (*SEQ_TABLES, "seq_runs", *RUN_TABLES)})
        _, _, lookup, headers = _sidecar_headers(url, sidecar, len(layout.length))
        return cls(lookup, headers, layout)

    def plan(self, url: str, name: str, start: int | None, end: int | None) -> tuple[int, int, int, int] | None:
        """``(sequence, bases, lo, hi)`` for bases ``[start, end)`` of ``name``, clipped to the sequence:
        their logical bytes are ``[lo, hi)``; None when the clipped region is empty."""
        i = self.lookup.get(name)
        if i is None:
            raise KeyError(f"{url} has no sequence named {name!r}")
        length = self.layout.length[i]
        a = 0 if start is None else int(start)
        b = length if end is None else int(end)
        # Conditionals rather than min()/max(): cheaper calls on the per-region path.
        if b > length:  # noqa: PLR1730
            b = length
        if a < 0:  # noqa: PLR1730
            a = 0
        if b <= a:
            return None
        lo, hi = self.layout.byte_range(i, a, b)
        return i, b - a, lo, hi

    def unchecked(self, plan: tuple[int, int, int, int]) -> bool:
        """True when the region of ``plan`` should also read its sequence's header line: not yet checked, and
        the region within :data:`_HEADER_REACH` bytes of it."""
        i = plan[0]
        return i not in self.checked and plan[2] - self.layout.offset[i] <= _HEADER_REACH

    def header_span(self, i: int) -> tuple[int, int]:
        """The logical bytes that hold sequence ``i``'s header line, its line break and the byte before it."""
        first = self.layout.offset[i]
        return _header_start(first, self.headers[i]), first

    def check_header(self, url: str, i: int, data: bytes) -> None:
        """``data``, the bytes of :meth:`header_span`, must hold the header line the index gives sequence ``i``
        (an index whose headers blob was edited and re-signed would otherwise name bases wrongly)."""
        start, first = self.header_span(i)
        _check_header(url, data, start, first, self.headers[i])
        self.checked.add(i)

    def bases(self, url: str, buf: bytes, plan: tuple[int, int, int, int]) -> str:
        """The region's bases from ``buf``, the logical bytes ``[lo, hi)`` of its plan; they must hold exactly
        the bases the index says (:class:`CorruptIndexError` otherwise)."""
        _, n, lo, hi = plan
        raw = buf.replace(b"\n", b"")  # replace, then a CR search: cheaper than translate() with deletions
        if b"\r" in raw:
            raw = raw.replace(b"\r", b"")
        if len(raw) != n:
            raise CorruptIndexError(url, f"decoded bytes [{lo}, {hi}) hold {len(raw)} bases where the index expects {n}: run preprocess(force=True)")
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError as exc:
            raise InvalidFormatError(url, "non-ASCII byte in a sequence", offset=lo + exc.start) from None


class FastaReader(Reader):
    """A long-lived reader of one indexed FASTA (``co.reader()``): the index's layout is turned into lists
    once, the object stays open, and BGZF members or gzip stretches read are kept decoded, so a region
    costs a few list lookups and one read of its bytes (none when they are cached). The first read near the
    start of each sequence also reads its header line, planned with the region's bytes, and checks it is the
    one the index names."""

    def _sequences(self) -> _Sequences:
        return self.memo("fasta.sequences", self._build_sequences)

    def _build_sequences(self) -> _Sequences:
        return _Sequences.of(self.url, self.sidecar)

    def region(self, name: str, start: int | None = 0, end: int | None = None) -> str:
        """Bases ``[start, end)`` (0-based; clipped to the sequence as ``pysam.FastaFile.fetch`` clips the
        end, a negative start read as 0; ``end=None``: to the sequence end) of sequence ``name``, case kept.
        :class:`KeyError` for a name the index does not hold."""
        seqs = self._sequences()
        plan = seqs.plan(self.url, name, start, end)
        if plan is None:
            return ""
        i, _, lo, hi = plan
        if not seqs.unchecked(plan):
            return seqs.bases(self.url, self.decoded(lo, hi), plan)
        head, buf = self.decoded_many([seqs.header_span(i), (lo, hi)])
        seqs.check_header(self.url, i, head)
        return seqs.bases(self.url, buf, plan)

    def regions(self, regions: Iterable[Region]) -> list[str]:
        """:meth:`region` of each region, in order: a ``(name, start, end)`` tuple as :meth:`region` takes, or a
        string as ``samtools faidx`` takes (``"chr1"``, ``"chr1:1,001-2,000"``: 1-based, inclusive). The regions
        are read together: the byte ranges of nearby ones are merged into few requests (the store's gap), and
        each BGZF member or gzip stretch they need is decoded once for all of them."""
        seqs = self._sequences()
        plans = [seqs.plan(self.url, *(_parse(self.url, r, seqs.lookup) if isinstance(r, str) else r)) for r in regions]
        wanted = [p for p in plans if p is not None]
        new = sorted({p[0] for p in wanted if seqs.unchecked(p)})
        bufs = self.decoded_many([seqs.header_span(i) for i in new] + [(p[2], p[3]) for p in wanted])
        for i, head in zip(new, bufs):
            seqs.check_header(self.url, i, head)
        found = iter(bufs[len(new) :])
        return [seqs.bases(self.url, next(found), p) if p is not None else "" for p in plans]


#: A region of :meth:`FastaReader.regions`: ``(name, start, end)``, 0-based and half-open, or ``"name:begin-end"``.
Region = tuple[str, int | None, int | None] | str


def _parse(url: str, region: str, names: Mapping[str, int]) -> tuple[str, int, int | None]:
    """A samtools-style region string as ``(name, start, end)``, 0-based and half-open."""
    name, begin, end = parse_region(url, region, names)  # type: ignore[arg-type]
    return name, begin - 1, None if end == REGION_MAX else end


FASTA.reader_class = FastaReader


def region(co: Any, name: str, start: int | None = 0, end: int | None = None) -> str:
    """Bases ``[start, end)`` of sequence ``name`` (see :meth:`FastaReader.region`) through the reader
    ``co`` keeps, so repeated calls on one :class:`~dataplug.CloudObject` share its open object, layout
    and decoded blocks."""
    return co.kept_reader().region(name, start, end)


def regions(co: Any, regions: Iterable[Region]) -> list[str]:
    """The bases of each region, ``(name, start, end)`` or ``"name:begin-end"`` (see :meth:`FastaReader.regions`),
    through the reader ``co`` keeps: many regions on a remote store are a few merged range requests, and each
    decoded block is decoded once."""
    return co.kept_reader().regions(regions)


def write_fai(co: Any, url: str, gzi_url: str | None = None) -> None:
    """Write the ``.fai`` that ``samtools faidx`` writes for this object to ``url`` (same storage options);
    for BGZF also its ``.gzi`` to ``gzi_url`` (default: ``url`` with ``.fai`` replaced by ``.gzi``).

    Refused, as samtools refuses, for gzip that is not BGZF, for irregular line lengths and for empty
    sequences. The ``.gzi`` is made from the index's BGZF member table, without reading the object; an
    index of the gzip pass (``compression="gzip"``) has none, and then the compressed object is read once,
    in large ranges, and only the block headers are parsed (nothing is inflated).
    """
    co.ensure_fresh_index()
    attrs = co.attributes
    if attrs.compression == "gzip":
        raise InvalidFormatError(co.url, "samtools cannot index files compressed with gzip, only BGZF (recompress with bgzip)")
    if attrs.irregular_sequences:
        raise InvalidFormatError(co.url, f"different line lengths in sequence {attrs.irregular_names[0]!r}: samtools faidx refuses it")
    names, _, _, _ = _headers(co)
    t = co.index().tables
    lines = []
    for name, length, offset, bases, width in zip(names, *(t[k].tolist() for k in SEQ_TABLES)):
        if not length:
            raise InvalidFormatError(co.url, f"sequence {name!r} is empty: samtools faidx does not index it")
        lines.append(f"{name}\t{length}\t{offset}\t{bases}\t{width}\n")
    StorageObject(url, co.storage_options).write_bytes("".join(lines).encode())
    if attrs.compression == "bgzf":
        target = gzi_url or url.removesuffix(".fai") + ".gzi"
        gzi = gzi_bytes(co.url, codec_index(co), co.index().object_info.size)
        StorageObject(target, co.storage_options).write_bytes(_gzi(co) if gzi is None else gzi)


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
