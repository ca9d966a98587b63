"""GFF3 and GTF over any codec (plain, gzip, BGZF, zstd, bzip2): slices of whole features, and region slices
that hold exactly the features ``tabix -p gff`` returns, through the tabix-style region index
(:mod:`dataplug.framings.regions`, tabix's GFF preset: 1-based inclusive start and end in columns 4 and 5).

A feature is a line of exactly 9 tab-separated columns. ``#`` lines (GFF3's ``##`` directives, ``###``
and comments) and blank lines are meta lines, anywhere: not features, and kept in a slice's ``get()`` as
the object holds them. GFF3's ``##FASTA`` line ends the features: it and the sequences after it belong to
no slice (``tabix`` cannot index such a file at all; dataplug indexes the features before it). A feature
whose end is before its start minus one is refused, as htslib refuses it.

``to_arrow()`` has GFF3's nine columns, typed: ``seqid``, ``source``, ``type`` (strings), ``start``, ``end``
(int64), ``score`` (float64, null for ``.``), ``strand`` (string), ``phase`` (int64, null for ``.``) and
``attributes`` (the column's text, GFF3's ``key=value;`` or GTF's ``key "value";``). GTF's columns
(seqname, feature, frame, attribute) get GFF3's names, so both dialects give one schema.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from dataplug.format import Detection, Sample
from dataplug.framings.lines import SAMPLE_BYTES_OPTION
from dataplug.framings.regions import (
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

#: tabix's GFF preset; GFF3's ``##FASTA`` ends the features.
CONFIG = ColumnConfig(seq=0, begin=3, end=4, zero_based=False, meta=(b"#",), min_columns=9, end_marker=b"##FASTA", labels=("start", "end"))
COLUMNS = ("seqid", "source", "type", "start", "end", "score", "strand", "phase", "attributes")
SCHEMA = pa.schema([(name, {"start": pa.int64(), "end": pa.int64(), "score": pa.float64(), "phase": pa.int64()}.get(name, pa.string())) for name in COLUMNS])
#: A GTF attribute column: ``key "value";`` pairs.
_GTF_ATTRIBUTES = re.compile(r'^\s*\w+ "[^"]*";')
#: Lines detection looks at (after meta lines).
SNIFF_LINES = 200


@dataclass(frozen=True)
class GFFAttributes(RegionAttributes):
    #: ``"gff3"`` (a ``##gff-version 3`` line, or ``key=value`` attributes), ``"gtf"`` (``key "value";``
    #: attributes) or ``"gff"`` (neither told apart).
    dialect: str


@dataclass(frozen=True)
class GffScanner(RegionScanner):
    """Features checked for tabix's GFF preset and for GFF's 9 columns."""

    def check_columns(self, rec: Records) -> tuple[np.ndarray, Any]:
        return rec.fields != 9, lambda i: f"a feature has 9 tab-separated columns, this one {int(rec.fields[i])}"


def dialect_of(header: bytes, record: bytes) -> str:
    """``"gff3"``, ``"gtf"`` or ``"gff"`` from the header's version line and the first feature's attributes."""
    if re.search(rb"^##gff-version\s+3", header, flags=re.MULTILINE):
        return "gff3"
    attributes = record.decode("utf-8", "replace").split("\t")[8:9]
    if attributes and _GTF_ATTRIBUTES.match(attributes[0]):
        return "gtf"
    if attributes and "=" in attributes[0]:
        return "gff3"
    return "gff"


def _feature(row: list[str]) -> bool:
    """Whether a split line looks like a GFF/GTF feature: 9 columns, integer start <= end, a strand, a phase."""
    return (
        len(row) == 9 and row[3].isdigit() and row[4].isdigit() and int(row[3]) <= int(row[4])
        and row[6] in ("+", "-", ".", "?") and row[7] in (".", "0", "1", "2")
    )


#: Computes the positions records cover when reading them (see :class:`~dataplug.framings.regions.RecordTable`).
LOCATOR = RegionScanner("", 0, 0, CONFIG)


class GFF(RegionFormat):
    """General Feature Format: GFF3 and GTF (GFF2), plain or compressed (gzip, BGZF, zstd, bzip2). Options:
    ``sample_bytes`` (line index and block density), ``compression``, ``spacing``."""

    Attributes = GFFAttributes
    options = SAMPLE_BYTES_OPTION
    config = CONFIG
    locator = LOCATOR
    header_blob = "gff_header"
    chromosomes_blob = "gff_chromosomes"
    block_prefix = "gff_block"

    sniff_priority = 16

    @classmethod
    def sniff(cls, sample: Sample) -> Detection | None:
        """A first ``##gff-version`` line; or GTF: every sampled line a feature (9 tab-separated columns,
        integer start <= end, a strand, a phase) with ``key "value";`` attributes."""
        if sample.decoded.startswith(b"##gff-version") and sample.lines():
            return cls.detected(sample, "starts with '##gff-version'", ("UTF8Text",))
        rows = [line.rstrip("\r").split("\t") for line in sample.lines()[:SNIFF_LINES] if not CONFIG.is_meta(line)]
        if rows and all(_feature(row) and _GTF_ATTRIBUTES.match(row[8]) for row in rows):
            return cls.detected(sample, f"GTF features (9 columns, key \"value\"; attributes) on {len(rows)} lines", ("CSV", "UTF8Text"))
        return None

    @classmethod
    def read_header(cls, url: str, head: bytes, complete: bool) -> tuple[bytes, int, Any] | None:
        found = super().read_header(url, head, complete)
        if found is None:
            return None
        record = cls.first_record(head, len(found[0]), complete)
        if record is None:
            return None
        return found[0], found[1], dialect_of(found[0], record)

    @classmethod
    def scanner(cls, url: str, sample_bytes: int, data_start: int, header: Any) -> GffScanner:
        return GffScanner(url, sample_bytes, data_start, CONFIG)

    @classmethod
    def format_attributes(cls, url: str, header: Any, index: RegionIndex) -> dict[str, Any]:
        return {"dialect": str(header)}

    @classmethod
    def records_table(cls, url: str, header: str, attributes: Any, data: bytes, columns: Sequence[str] | None, offset: int) -> pa.Table:
        return gff_table(url, data, columns, offset)


@dataclass
class GFFSlice(RegionSlice):
    """Features of a GFF3 or GTF object; a region slice keeps those overlapping its ``region`` (sequence,
    1-based inclusive begin and end)."""

    config: ClassVar[ColumnConfig] = CONFIG
    locator: ClassVar[RegionScanner] = LOCATOR

    def schema(self) -> pa.Schema:
        return SCHEMA

    def to_arrow(self, columns: list[str] | None = None) -> pa.Table:
        """A table of the features (see the module docstring for the columns and their types)."""
        return gff_table(self.url, self.record_bytes(), columns, self.span.start)


def gff_table(url: str, data: bytes, columns: Sequence[str] | None, offset: int) -> pa.Table:
    """Feature lines ``data`` (newline-ended) as a table of :data:`SCHEMA` (``columns``: some of them);
    ``offset`` (decoded) names where they are in messages."""
    schema = SCHEMA if columns is None else pa.schema([SCHEMA.field(name) for name in columns])
    return read_tsv(url, data, list(COLUMNS), schema, offset)


@strategy(GFF)
def partition_num_chunks(co: Any, num_chunks: int) -> list[GFFSlice]:
    """``num_chunks`` slices of about equal bytes, every feature in exactly one, in file order."""
    return chunk_slices(co, GFFSlice, num_chunks)


@strategy(GFF)
def partition_regions(co: Any, regions: str | Sequence[str]) -> list[GFFSlice]:
    """One slice per region (``"chr2"``, ``"chr1:1000-2000"``, 1-based inclusive as for tabix), holding exactly
    the features ``tabix`` returns for it, reading only the blocks that can overlap it. A sorted file is
    needed, as for tabix; an unknown sequence is refused, as htslib does."""
    return region_slices(co, GFFSlice, regions)


#: ``records(co, "chr1:1000-2000")``: the lines tabix returns for a region, through the reader ``co`` keeps
#: (:func:`dataplug.framings.regions.region_records`).
records = region_records
