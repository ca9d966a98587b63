"""VCF over any codec (plain, gzip, BGZF, zstd, bzip2): slices of whole records, and region slices that hold
exactly the records ``tabix`` returns, found from the index without reading records.

VCF is one configuration of the tabix-style region index (:mod:`dataplug.framings.regions`, tabix's VCF
preset): preprocessing reads the header (the ``##`` lines and the ``#CHROM`` line) from the head of the
decoded stream, then maps :class:`VcfScanner` over the stream: the line index (header lines are its first
records, as a CSV header is), every record's column count, ``POS`` and first character checked, and the
region blocks (cut at every change of ``CHROM`` and at the codec's cuts), each with its chromosome, its
first start and the last position any of its records covers. A region slice reads only the blocks that can
overlap its region.

Records are accepted as htslib reads them: CHROM to INFO (8 columns, INFO may be empty), then, when the
#CHROM line names samples, either nothing more or FORMAT and a column per sample; columns after those are
ignored (a trailing tab, as in drop-seq's ``hek_cells_2snps.vcf.gz``, included), and a record with fewer is
an :class:`InvalidFormatError` naming its line. Values inside the columns are not checked.

Coordinates follow tabix's VCF preset (htslib ``tbx_parse1``): a record covers ``POS`` to
``POS + len(REF) - 1``, or to the ``END=`` of its INFO when it has one after ``POS - 1``, and overlaps the
1-based inclusive region ``[beg, end]`` when it starts at or before ``end`` and covers ``beg``. Region queries
need a sorted file (each ``CHROM`` in one run, ``POS`` non-decreasing within it), as tabix does. A region
slice counts its records exactly: the blocks wholly inside the region from the index, the few at its
edges by reading them once (see :class:`~dataplug.framings.regions.RegionSlice`).

For many regions in one process, ``co.reader()`` (:class:`~dataplug.framings.regions.RegionReader`:
``records("chr1:1000-2000")``, ``region("chr1", 999, 2000)`` with pysam's 0-based arguments,
``records_many([...])``) or :func:`records` (through the object's kept reader) keep the object open, the
block tables as lists and the decoded BGZF members, as ``pysam.TabixFile`` does.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from dataplug.errors import InvalidFormatError
from dataplug.format import Detection, Sample
from dataplug.framings.lines import SAMPLE_BYTES_OPTION, check_text, split_lines
from dataplug.framings.regions import (
    REGION_MAX,
    ColumnConfig,
    Records,
    RegionAttributes,
    RegionFormat,
    RegionIndex,
    RegionScanner,
    RegionSlice,
    chunk_slices,
    read_tsv,
    region_records,
    region_slices,
)
from dataplug.strategies import strategy

TAB = 9
FIXED_COLUMNS = ("CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO")
HEADER_BLOB, CHROMOSOMES_BLOB = "vcf_header", "vcf_chromosomes"
#: tabix's VCF preset: CHROM in column 1, POS in column 2, the end from REF or INFO's ``END=``, ``#`` meta.
CONFIG = ColumnConfig(seq=0, begin=1, end=None, zero_based=False, min_columns=8, skip_blank=False, labels=("POS", "END"))
_END = re.compile(rb"END=([0-9]*)")
_INNER_END = re.compile(rb";END=([0-9]*)")


@dataclass(frozen=True)
class VCFAttributes(RegionAttributes):
    samples: int


@dataclass(frozen=True)
class VcfScanner(RegionScanner):
    """Line starts of one range, and its records checked (no ``#`` after the header, the columns htslib
    needs for ``columns`` in the #CHROM line, an integer POS) and summarised into blocks. Look-ahead: the
    rest of the range's last line."""

    columns: int = 8

    def check_columns(self, rec: Records) -> tuple[np.ndarray, Any]:
        wrong, fewer = _wrong_columns(rec.full, rec.fields, rec.ends, self.columns)

        def cause(i: int) -> str:
            if fewer[i]:
                return "a record needs at least 8 tab-separated columns, CHROM to INFO"
            return f"a record with FORMAT needs a column for each of the {self.columns - 9} samples the #CHROM line names"

        return wrong, cause

    def covered(self, rec: Records, begin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not begin.size:
            return begin, np.zeros(0, bool)
        ref_a, ref_b = rec.column(3)
        info_a, _ = rec.column(7)
        info_end = np.where(rec.fields > 8, rec.tabs[np.minimum(rec.first_tab + 7, rec.tabs.size - 1)], rec.ends)
        return _covered(rec.full, begin, ref_a, ref_b, info_a, info_end, rec.starts), np.zeros(begin.size, bool)

    def line_span(self, line: bytes) -> tuple[bytes, int, int]:
        chrom, pos_text, _, ref, _, _, _, info = line.split(b"\t", 8)[:8]
        pos = int(pos_text)
        covered = max(pos - 1, 0) + max(len(ref), 1)
        found = _END.search(info)
        if found and found.start() > 0:
            found = _INNER_END.search(info)
        if found:
            covered = _end_tag(found.group(1), pos, covered)
        return chrom, max(pos, 1), covered


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


#: Computes the positions records cover when reading them (see :class:`~dataplug.framings.regions.RecordTable`).
LOCATOR = VcfScanner("", 0, 0, CONFIG)


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


class VCF(RegionFormat):
    """Variant Call Format, plain or compressed (gzip, BGZF, zstd, bzip2). Options: ``sample_bytes`` (line index and
    block density), ``compression``, ``spacing`` (gzip checkpoint spacing)."""

    Attributes = VCFAttributes
    options = SAMPLE_BYTES_OPTION
    config = CONFIG
    locator = LOCATOR
    header_blob = HEADER_BLOB
    chromosomes_blob = CHROMOSOMES_BLOB
    block_prefix = "vcf_block"

    sniff_priority = 20

    @classmethod
    def sniff(cls, sample: Sample) -> Detection | None:
        """VCF's first line, ``##fileformat=VCF``."""
        if sample.decoded.startswith(b"##fileformat=VCF") and sample.lines():
            return cls.detected(sample, "starts with '##fileformat=VCF'", ("UTF8Text",))
        return None

    @classmethod
    def read_header(cls, url: str, head: bytes, complete: bool) -> tuple[bytes, int, Any] | None:
        return _header(url, head, complete)

    @classmethod
    def scanner(cls, url: str, sample_bytes: int, data_start: int, header: Any) -> VcfScanner:
        return VcfScanner(url, sample_bytes, data_start, CONFIG, "a header line ('#') after the first record", len(header))

    @classmethod
    def format_attributes(cls, url: str, header: Any, index: RegionIndex) -> dict[str, Any]:
        return {"samples": max(0, len(header) - 9)}

    @classmethod
    def records_table(cls, url: str, header: str, attributes: Any, data: bytes, columns: Sequence[str] | None, offset: int) -> pa.Table:
        return vcf_table(url, header_columns(header), data, columns, offset)

    @classmethod
    def declared_sequences(cls, header: bytes) -> Collection[str]:
        """The ``##contig`` IDs: a region on one of them without records holds none, as for htslib."""
        return re.findall(r"^##contig=<ID=([^,>]+)", header.decode("utf-8", "replace"), flags=re.MULTILINE)


@dataclass
class VCFSlice(RegionSlice):
    """Records of a VCF object; a region slice keeps only those overlapping its ``region`` (CHROM, 1-based
    inclusive begin and end), as tabix returns them. The header is read lazily from the sidecar."""

    config: ClassVar[ColumnConfig] = CONFIG
    locator: ClassVar[RegionScanner] = LOCATOR

    @property
    def columns(self) -> tuple[str, ...]:
        """The #CHROM line's column names, without the ``#``."""
        return header_columns(self.header)

    def schema(self) -> pa.Schema:
        return vcf_schema(self.columns)

    def to_arrow(self, columns: list[str] | None = None) -> pa.Table:
        """A table of the records: ``CHROM``, ``POS`` (int64), ``ID``, ``REF``, ``ALT``, ``QUAL`` (float64,
        null for ``.``), ``FILTER``, ``INFO``, then ``FORMAT`` and the samples as strings."""
        return vcf_table(self.url, self.columns, self.record_bytes(), columns, self.span.start)


def header_columns(header: str) -> tuple[str, ...]:
    """The #CHROM line's column names (without the ``#``) of a VCF header."""
    return tuple(header.rstrip("\r\n").rsplit("\n", 1)[-1][1:].rstrip("\r").split("\t"))


def vcf_schema(names: Sequence[str]) -> pa.Schema:
    """The table schema of records with the #CHROM line's columns ``names``."""
    types = {"POS": pa.int64(), "QUAL": pa.float64()}
    return pa.schema([(name, types.get(name, pa.string())) for name in names])


def vcf_table(url: str, names: tuple[str, ...], data: bytes, columns: Sequence[str] | None, offset: int) -> pa.Table:
    """Record lines ``data`` (newline-ended) as a table of :func:`vcf_schema` (``columns``: some of them);
    ``offset`` (decoded) names where they are in messages."""
    schema = vcf_schema(names)
    if columns is not None:
        schema = pa.schema([schema.field(name) for name in columns])
    if not data:
        return schema.empty_table()
    extra = data[: data.find(b"\n")].count(b"\t") + 1 - len(names)  # every record with a trailing tab, say
    try:
        return read_tsv(url, data, [*names, *(f"\0{i}" for i in range(max(extra, 0)))], schema, offset)
    except InvalidFormatError:  # records with different column counts, all of which htslib reads
        return _irregular_table(url, names, data.decode("utf-8"), schema, offset)


def _irregular_table(url: str, names: tuple[str, ...], text: str, schema: pa.Schema, offset: int) -> pa.Table:
    """The table of records whose column counts differ from the #CHROM line's, as htslib reads them
    (checked in the index pass): columns after the samples dropped, FORMAT and samples null when a
    record has none."""
    position = {name: i for i, name in enumerate(names)}
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
            raise InvalidFormatError(url, f"records do not parse as VCF columns ({name}: {exc})", offset=offset) from None
    return pa.table(data, schema=schema)


@strategy(VCF)
def partition_num_chunks(co: Any, num_chunks: int) -> list[VCFSlice]:
    """``num_chunks`` slices of about equal bytes, every record in exactly one, in file order (for gzip,
    cut at the first record after a checkpoint, so that workers decode almost nothing twice)."""
    return chunk_slices(co, VCFSlice, num_chunks)


@strategy(VCF)
def partition_regions(co: Any, regions: str | Sequence[str]) -> list[VCFSlice]:
    """One slice per region (``"chr2"``, ``"chr1:1000-2000"``), holding exactly the records tabix returns for
    it; each reads only the blocks whose chromosome and positions can overlap its region. A sorted file
    is needed, as for tabix (:class:`StrategyArgumentError` otherwise); a ``##contig`` without records
    holds none, any other unknown chromosome is refused, as htslib does.

    No data is read here. A slice's ``num_records`` counts the blocks the region holds whole from the index
    (a whole chromosome reads nothing) and reads the blocks at the region's edges the first time it is
    asked (``known_num_records`` never reads)."""
    return region_slices(co, VCFSlice, regions)


#: ``records(co, "chr1:1000-2000")``: the lines tabix returns for a region, through the reader ``co`` keeps
#: (:func:`dataplug.framings.regions.region_records`).
records = region_records
