"""BED over any codec (plain, gzip, BGZF, zstd, bzip2): slices of whole records, and region slices that hold
exactly the records ``tabix -p bed`` returns, through the tabix-style region index
(:mod:`dataplug.framings.regions`, tabix's BED preset).

A record is a line of at least 3 tab-separated columns: the sequence name, the 0-based begin and the
end (half-open), as UCSC's BED; every record has as many columns as the first one. ``#`` lines,
UCSC's ``track`` and ``browser`` lines and blank lines are meta lines, anywhere (htslib refuses the last
three; dataplug skips them, so a region holds the same records). A record whose end is before its begin is
refused, as htslib refuses it. A zero-length interval (begin = end) overlaps a region as tabix says: when
the region holds a base on both sides of it.

``to_arrow()`` types the columns by their standard names and positions: ``chrom`` (string), ``chromStart``
and ``chromEnd`` (int64), ``score`` (float64, null for ``.``; bedGraph's value and the integer scores of
BED5+ both fit) and every other column as a string (``name``, ``strand``, ``thickStart`` ... ``blockStarts``,
then ``column13`` on), since BED's variants (bedGraph, narrowPeak, ...) give them other meanings.
"""

from __future__ import annotations

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

#: tabix's BED preset: 0-based half-open begin and end in columns 2 and 3; ``track``/``browser`` lines are meta too.
CONFIG = ColumnConfig(
    seq=0, begin=1, end=2, zero_based=True, meta=(b"#", b"track ", b"track\t", b"browser ", b"browser\t"), min_columns=3, labels=("chromStart", "chromEnd")
)
#: UCSC's names of BED's twelve standard columns.
STANDARD_COLUMNS = ("chrom", "chromStart", "chromEnd", "name", "score", "strand", "thickStart", "thickEnd", "itemRgb", "blockCount", "blockSizes", "blockStarts")
_TYPES = {"chromStart": pa.int64(), "chromEnd": pa.int64(), "score": pa.float64()}
#: Lines detection looks at (after meta lines).
SNIFF_LINES = 200


def column_names(columns: int) -> list[str]:
    """The names of a BED file's ``columns`` columns: the standard ones, then ``column13`` on."""
    return [*STANDARD_COLUMNS[:columns], *(f"column{i + 1}" for i in range(len(STANDARD_COLUMNS), columns))]


@dataclass(frozen=True)
class BEDAttributes(RegionAttributes):
    #: Columns of every record (those of the first; 0 without records).
    columns: int


@dataclass(frozen=True)
class BedScanner(RegionScanner):
    """Records checked for tabix's BED preset and for as many columns as the first record has."""

    columns: int = 3

    def check_columns(self, rec: Records) -> tuple[np.ndarray, Any]:
        n = self.columns
        return rec.fields != n, lambda i: f"a record with {int(rec.fields[i])} tab-separated columns where the first record has {n} (BED needs at least 3)"


#: Computes the positions records cover when reading them (see :class:`~dataplug.framings.regions.RecordTable`).
LOCATOR = RegionScanner("", 0, 0, CONFIG)


class BED(RegionFormat):
    """Browser Extensible Data (UCSC BED3 to BED12 and their variants), plain or compressed (gzip, BGZF, zstd,
    bzip2). Options: ``sample_bytes`` (line index and block density), ``compression``, ``spacing``."""

    Attributes = BEDAttributes
    options = SAMPLE_BYTES_OPTION
    config = CONFIG
    locator = LOCATOR
    header_blob = "bed_header"
    chromosomes_blob = "bed_chromosomes"
    block_prefix = "bed_block"

    sniff_priority = 12

    @classmethod
    def sniff(cls, sample: Sample) -> Detection | None:
        """A ``track`` or ``browser`` line, or every sampled record of at least 3 tab-separated columns (as
        many in each) with integer begin and end, begin <= end; when every sequence name is an integer too,
        also names that repeat (a headerless numeric table is CSV's)."""
        lines = sample.lines()
        if not lines:
            return None
        if any(line.startswith(("track ", "track\t", "browser ")) for line in lines[:SNIFF_LINES]):
            return cls.detected(sample, "UCSC track/browser lines", ("UTF8Text",))
        rows = [line.rstrip("\r").split("\t") for line in lines[:SNIFF_LINES] if not CONFIG.is_meta(line)]
        if not rows or len({len(row) for row in rows}) != 1 or len(rows[0]) < 3:
            return None
        if not all(row[1].isdigit() and row[2].isdigit() and int(row[1]) <= int(row[2]) and row[0] for row in rows):
            return None
        names = [row[0] for row in rows]
        if all(name.isdigit() for name in names) and (len(rows) < 4 or len(set(names)) > len(rows) // 2):
            return None
        return cls.detected(sample, f"{len(rows[0])} tab-separated columns with integer begin <= end on {len(rows)} lines", ("CSV", "UTF8Text"))

    @classmethod
    def read_header(cls, url: str, head: bytes, complete: bool) -> tuple[bytes, int, Any] | None:
        found = super().read_header(url, head, complete)
        if found is None:
            return None
        record = cls.first_record(head, len(found[0]), complete)
        if record is None:
            return None
        return found[0], found[1], record.count(b"\t") + 1 if record else 0

    @classmethod
    def scanner(cls, url: str, sample_bytes: int, data_start: int, header: Any) -> BedScanner:
        return BedScanner(url, sample_bytes, data_start, CONFIG, None, max(int(header), 3))

    @classmethod
    def format_attributes(cls, url: str, header: Any, index: RegionIndex) -> dict[str, Any]:
        return {"columns": int(header)}

    @classmethod
    def records_table(cls, url: str, header: str, attributes: Any, data: bytes, columns: Sequence[str] | None, offset: int) -> pa.Table:
        return bed_table(url, attributes.columns, data, columns, offset)


@dataclass
class BEDSlice(RegionSlice):
    """Records of a BED object; a region slice keeps those overlapping its ``region`` (sequence, 1-based
    inclusive begin and end, as tabix reads region strings)."""

    config: ClassVar[ColumnConfig] = CONFIG
    locator: ClassVar[RegionScanner] = LOCATOR
    columns: int = 3

    def schema(self) -> pa.Schema:
        return bed_schema(self.columns)

    def to_arrow(self, columns: list[str] | None = None) -> pa.Table:
        """A table of the records (see the module docstring for the columns and their types)."""
        return bed_table(self.url, self.columns, self.record_bytes(), columns, self.span.start)


def bed_schema(count: int) -> pa.Schema:
    """The table schema of records of ``count`` columns."""
    return pa.schema([(name, _TYPES.get(name, pa.string())) for name in column_names(max(count, 3))])


def bed_table(url: str, count: int, data: bytes, columns: Sequence[str] | None, offset: int) -> pa.Table:
    """Record lines ``data`` (newline-ended) of ``count`` columns as a table of :func:`bed_schema`
    (``columns``: some of them); ``offset`` (decoded) names where they are in messages."""
    schema = bed_schema(count)
    if columns is not None:
        schema = pa.schema([schema.field(name) for name in columns])
    return read_tsv(url, data, column_names(max(count, 3)), schema, offset)


@strategy(BED)
def partition_num_chunks(co: Any, num_chunks: int) -> list[BEDSlice]:
    """``num_chunks`` slices of about equal bytes, every record in exactly one, in file order."""
    return chunk_slices(co, BEDSlice, num_chunks, columns=co.attributes.columns)


@strategy(BED)
def partition_regions(co: Any, regions: str | Sequence[str]) -> list[BEDSlice]:
    """One slice per region (``"chr2"``, ``"chr1:1000-2000"``, 1-based inclusive as for tabix), holding exactly
    the records ``tabix`` returns for it, reading only the blocks that can overlap it. A sorted file is
    needed, as for tabix; an unknown sequence is refused, as htslib does."""
    return region_slices(co, BEDSlice, regions, columns=co.attributes.columns)


#: ``records(co, "chr1:1000-2000")``: the lines tabix returns for a region, through the reader ``co`` keeps
#: (:func:`dataplug.framings.regions.region_records`).
records = region_records
