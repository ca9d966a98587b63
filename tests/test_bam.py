"""BAM: every alignment exactly once for every slice count, region slices equal to htslib's fetch (pysam), SAM
text equal to ``samtools view``, dumped slices read back and counted by htslib, hostile input refused;
checked against htslib (pysam), never against dataplug itself."""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from dataplug import CloudObject, InvalidFormatError, StrategyArgumentError
from dataplug.detect import detect_format
from dataplug.errors import CorruptIndexError, DataplugError, StaleIndexError
from dataplug.formats.genomics.bam import BAM, partition_num_chunks, partition_regions
from dataplug.storage import StorageObject
from dataplug.testing import FormatTests

pysam = pytest.importorskip("pysam", reason="BAM tests compare with htslib through pysam (the ci extra installs it)")

from tests.bam_files import REFERENCES, bam_bytes, large_bam, write_bam  # noqa: E402

REGIONS = ["chr1:1000-2000", "chr1", "chr2:50000-50100", "chr2:1-1", "chr10:40000-50000", "chrUn_gl1", "chrM:16000-16569", "chr1:199990-200000"]


def sam_lines(path: Path) -> list[str]:
    return [r.to_string() for r in pysam.AlignmentFile(str(path), check_sq=False)]


@pytest.fixture(scope="module")
def bams(tmp_path_factory):
    """One generated BAM with its .bai (and a copy without), plus its records as htslib prints them."""
    folder = tmp_path_factory.mktemp("bam")
    indexed = write_bam(folder / "indexed.bam", 1500, seed=3, index=True)
    bare = folder / "bare" / "plain.bam"
    bare.parent.mkdir()
    shutil.copy(indexed, bare)
    return indexed, bare, sam_lines(indexed)


def lines_of(slices) -> list[str]:
    return [line for piece in slices for line in piece.get()]


@pytest.mark.parametrize("which", ["indexed", "bare"])
@pytest.mark.parametrize("n", [1, 7, 64])
def test_chunks_hold_every_alignment_once(bams, which, n):
    indexed, bare, expected = bams
    co = CloudObject.from_url(str(indexed if which == "indexed" else bare)).preprocess(progress=False)
    assert co.format is BAM
    slices = partition_num_chunks(co, n)
    assert len(slices) == n
    assert lines_of(slices) == expected
    assert [p.num_records for p in slices] == [len(p.get()) for p in slices]
    a = co.attributes
    assert a.records == len(expected) and a.unmapped == sum(1 for r in pysam.AlignmentFile(str(indexed)) if r.is_unmapped)
    assert a.sorted and a.sort_order == "coordinate" and a.references == len(REFERENCES)
    assert slices[0].header == pysam.AlignmentFile(str(indexed)).text
    spans = [p.byte_range() for p in slices]
    assert all(a0 <= b0 for a0, b0 in spans) and all(spans[i][1] == spans[i + 1][0] for i in range(n - 1))


def test_regions_equal_htslib_fetch(bams):
    indexed, bare, _ = bams
    reader = pysam.AlignmentFile(str(indexed))
    for path in (indexed, bare):
        co = CloudObject.from_url(str(path)).preprocess(progress=False, block_bytes=4096)
        slices = partition_regions(co, REGIONS)
        for region, piece in zip(REGIONS, slices):
            want = [r.to_string() for r in reader.fetch(region=region)]
            assert piece.get() == want, region
            assert piece.num_records == len(want) == piece.to_arrow().num_rows


def test_random_regions_read_only_their_blocks(bams):
    indexed, _, _ = bams
    reader = pysam.AlignmentFile(str(indexed))
    co = CloudObject.from_url(str(indexed)).preprocess(progress=False, block_bytes=2048)
    rng = np.random.default_rng(11)
    regions = []
    for _ in range(40):
        name, length = REFERENCES[int(rng.integers(0, len(REFERENCES)))]
        beg = int(rng.integers(1, length))
        regions.append(f"{name}:{beg}-{min(length, beg + int(rng.integers(0, 3000)))}")
    for region, piece in zip(regions, partition_regions(co, regions)):
        want = [r.to_string() for r in reader.fetch(region=region)]
        assert piece.get() == want, region
        start, end = piece.byte_range()
        assert end - start <= co.attributes.uncompressed_size // 4, region


def test_region_errors(bams, tmp_path):
    indexed, _, _ = bams
    co = CloudObject.from_url(str(indexed)).preprocess(progress=False)
    with pytest.raises(StrategyArgumentError, match="chr99"):
        partition_regions(co, ["chr1:1-10", "chr99:1-10"])
    with pytest.raises(StrategyArgumentError, match="1-based"):
        partition_regions(co, "chr1:0-10")
    shuffled = write_bam(tmp_path / "shuffled.bam", 200, seed=5, shuffled=True)
    unsorted = CloudObject.from_url(str(shuffled)).preprocess(progress=False)
    assert not unsorted.attributes.sorted and unsorted.attributes.sort_order == "unsorted"
    with pytest.raises(StrategyArgumentError, match="coordinate-sorted"):
        partition_regions(unsorted, "chr1")
    assert lines_of(partition_num_chunks(unsorted, 5)) == sam_lines(shuffled)


def test_arrow_columns_as_samtools_prints(bams):
    indexed, _, expected = bams
    co = CloudObject.from_url(str(indexed)).preprocess(progress=False)
    table = pa.concat_tables(p.to_arrow() for p in partition_num_chunks(co, 3))
    rows = [line.split("\t", 11) for line in expected]
    assert table["qname"].to_pylist() == [r[0] for r in rows]
    assert table["flag"].to_pylist() == [int(r[1]) for r in rows]
    assert table["pos"].to_pylist() == [int(r[3]) for r in rows]
    assert table["rnext"].to_pylist() == [r[6] for r in rows]
    assert table["tags"].to_pylist() == [r[11] if len(r) > 11 else "" for r in rows]
    assert set(table["cigar"].to_pylist()) > {"*"} and any("D" in c for c in table["cigar"].to_pylist())
    only = partition_num_chunks(co, 1)[0].to_arrow(["seq", "pos"])
    assert only.column_names == ["seq", "pos"] and only["seq"].to_pylist() == [r[9] for r in rows]
    with pytest.raises(StrategyArgumentError, match="no BAM column"):
        partition_num_chunks(co, 1)[0].to_arrow(["sequence"])


def test_dumped_slices_are_counted_by_htslib(bams, tmp_path):
    indexed, _, _ = bams
    co = CloudObject.from_url(str(indexed)).preprocess(progress=False)
    for piece in partition_num_chunks(co, 4) + partition_regions(co, ["chr2:1000-60000"]):
        path = tmp_path / f"dump{piece.number}-{piece.region is not None}.bam"
        with open(path, "wb") as fp:
            piece.dump(fp)
        assert int(pysam.samtools.view("-c", str(path))) == piece.num_records
        assert sam_lines(path) == piece.get()
        header = piece.header_bytes()
        assert gzip.decompress(path.read_bytes()).startswith(header) and header.startswith(b"BAM\x01")


def test_detection_and_plain_gzip_refused(bams, tmp_path):
    indexed, _, _ = bams
    assert detect_format(StorageObject(str(indexed))).format == "BAM"
    wrapped = tmp_path / "wrapped.bam.gz"
    wrapped.write_bytes(gzip.compress(gzip.decompress(indexed.read_bytes())))
    with pytest.raises(InvalidFormatError, match="BGZF"):
        detect_format(StorageObject(str(wrapped)))


def test_resync_over_many_small_ranges(tmp_path):
    """Ranges far smaller than a member: most range scans guess their first record, the reduce checks each guess."""
    path = write_bam(tmp_path / "small.bam", 400, seed=8)
    co = CloudObject.from_url(str(path)).preprocess(progress=False, spacing=3000, block_bytes=1000)
    assert lines_of(partition_num_chunks(co, 9)) == sam_lines(path)
    assert co.attributes.blocks > 50


def test_truncated_and_corrupt_objects_are_refused(bams, tmp_path):
    indexed, _, _ = bams
    data = indexed.read_bytes()
    decoded = gzip.decompress(data)
    from dataplug.testing.codecs import bgzf

    cut = tmp_path / "cut.bam"
    cut.write_bytes(bgzf(decoded[: len(decoded) - 50])[0])
    with pytest.raises(InvalidFormatError, match="cut short"):
        CloudObject.from_url(str(cut)).preprocess(progress=False)
    broken = bytearray(decoded)
    header_end = CloudObject.from_url(str(indexed)).preprocess(progress=False).attributes.header_size
    broken[header_end : header_end + 4] = (2).to_bytes(4, "little")  # the first record's block_size
    bad = tmp_path / "bad.bam"
    bad.write_bytes(bgzf(bytes(broken))[0])
    with pytest.raises(InvalidFormatError, match="block_size"):
        CloudObject.from_url(str(bad)).preprocess(progress=False)
    member = bytearray(data)
    middle = len(member) // 2
    member[middle : middle + 20] = bytes(20)  # inside some member's deflate data
    corrupt = tmp_path / "corrupt.bam"
    corrupt.write_bytes(bytes(member))
    with pytest.raises(DataplugError):
        CloudObject.from_url("BAM", str(corrupt)).preprocess(progress=False)


def test_crafted_index_is_refused(bams, tmp_path):
    from dataplug.testing.sidecar import npy, put_entry, read_manifest, write_manifest

    indexed, _, _ = bams
    path = tmp_path / "c.bam"
    shutil.copy(indexed, path)
    co = CloudObject.from_url(str(path)).preprocess(progress=False, block_bytes=4096)

    def lying(name: str, change) -> CloudObject:
        """The index with one table changed and re-signed, as anyone who can write its folder can."""
        table = np.array(co.index().tables[name])
        change(table)
        manifest = read_manifest(co.index_location)
        put_entry(co.index_location, manifest, "tables", name, npy(table))
        write_manifest(co.index_location, manifest)
        return CloudObject.from_url("BAM", str(path))

    def shift(t):
        t[1] += 7  # a block start moved off its record

    with pytest.raises(CorruptIndexError):
        lines_of(partition_num_chunks(lying("bam_block_offset", shift), co.attributes.blocks))
    co = CloudObject.from_url(str(path)).preprocess(progress=False, block_bytes=4096, force=True)

    def recount(t):
        t[2] += 1  # a block said to start one record later

    with pytest.raises(CorruptIndexError):
        lines_of(partition_num_chunks(lying("bam_block_record", recount), co.attributes.blocks))
    co = CloudObject.from_url(str(path)).preprocess(progress=False, block_bytes=4096, force=True)

    def reposition(t):
        t[:] = t[::-1]  # block positions swapped around: regions would read the wrong blocks

    with pytest.raises(CorruptIndexError):
        for piece in partition_regions(lying("bam_block_start", reposition), REGIONS):
            piece.get()


def test_s3_store(store):
    data = bam_bytes(300, seed=9, folder=Path(store.root if store.kind == "local" else "/tmp"))
    url = store.put("reads/s.bam", data)
    co = CloudObject.from_url(url, storage_options=store.options).preprocess(progress=False)
    got = lines_of(partition_num_chunks(co, 7))
    assert len(got) == co.attributes.records == 620
    regions = partition_regions(co, ["chr1:1-100000", "chr2"])
    assert sum(p.num_records for p in regions) == sum(
        1 for line in got if line.split("\t")[2] in ("chr1", "chr2") and (line.split("\t")[2] == "chr2" or int(line.split("\t")[3]) <= 100000)
    )


def unplaced(path: Path) -> list[str]:
    """``samtools view file '*'``: the unplaced unmapped reads."""
    return pysam.samtools.view(str(path), "*").splitlines()


def random_regions(seed: int, count: int) -> list[str]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        name, length = REFERENCES[int(rng.integers(0, len(REFERENCES)))]
        beg = int(rng.integers(1, length))
        out.append(f"{name}:{beg}-{min(length, beg + int(rng.integers(0, 3000)))}")
    return out


@pytest.mark.parametrize("which", ["indexed", "bare"])
def test_reader_records_equal_htslib_fetch(bams, which):
    """co.reader(): records() and records_many() as SAM lines, region() in pysam's 0-based coordinates and
    table() columns, all equal to htslib's fetch; '*' the unplaced reads as samtools gives them."""
    indexed, bare, _ = bams
    htslib = pysam.AlignmentFile(str(indexed))
    co = CloudObject.from_url(str(indexed if which == "indexed" else bare)).preprocess(progress=False)
    regions = [*REGIONS, "*", *random_regions(13, 60)]
    with co.reader() as r:
        many = r.records_many(regions)
        for region, together in zip(regions, many):
            want = unplaced(indexed) if region == "*" else [x.to_string() for x in htslib.fetch(region=region)]
            assert r.records(region) == together == want, region
            table = r.table(region, ["qname", "pos", "tags"])
            assert table.column_names == ["qname", "pos", "tags"] and table["qname"].to_pylist() == [line.split("\t")[0] for line in want]
        for name, start, end in [("chr1", 999, 2000), ("chr2", 0, 1), ("chrM", 16000, None), ("chr10", None, 45000)]:
            assert r.region(name, start, end) == [x.to_string() for x in htslib.fetch(name, start, end)], (name, start, end)
        with pytest.raises(StrategyArgumentError, match="chr99"):
            r.records("chr99:1-10")
        with pytest.raises(StrategyArgumentError, match="no BAM column"):
            r.table("chr1", ["sequence"])
        assert r.records("*") == [piece for piece in partition_regions(co, "*")[0].get()]


def test_few_and_many_records_decode_alike(bams, monkeypatch):
    """The pure-Python path for a region's few records and the vectorised columns give the same lines and
    tables, for records with every tag type, CIGAR operation and absent quality."""
    from dataplug.formats.genomics import bam

    indexed, _, _ = bams
    co = CloudObject.from_url(str(indexed)).preprocess(progress=False)
    regions = ["chr1", "chr2:1-60000", "*", "chrUn_gl1"]
    seen = {}
    for few in (0, 10**9):
        monkeypatch.setattr(bam, "FEW_RECORDS", few)
        with co.reader() as r:
            seen[few] = [(r.records(region), r.table(region)) for region in regions]
        seen[few].append(tuple(piece.to_arrow() for piece in partition_regions(co, regions)))
    assert seen[0][:-1] == seen[10**9][:-1]
    assert all(a.equals(b) for a, b in zip(seen[0][-1], seen[10**9][-1]))
    assert sum(len(lines) for lines, _ in seen[0][:-1]) > 2 * 64


def test_reader_reads_the_members_of_its_region_once(bams):
    """Blocks start at every member's first record: a small region inflates one member, or two where its
    records run on; read again, nothing (the reader's LRU)."""
    indexed, _, _ = bams
    co = CloudObject.from_url(str(indexed)).preprocess(progress=False)
    offsets = co.index().tables["bam_block_offset"]
    members = np.cumsum(co.index().tables["bgzf_decoded_size"].astype(np.int64))
    holding = np.unique(np.searchsorted(members, offsets, side="right"))
    assert holding.size >= members.size - 3  # every member that starts a record holds a block start
    with co.reader() as r:
        for region in random_regions(17, 30):
            before = r.decodes
            got = r.records(region)
            assert r.decodes - before <= 2, region
            again = r.decodes
            assert r.records(region) == got and r.decodes == again


def test_a_changed_object_is_refused_while_a_reader_is_open(bams, tmp_path):
    indexed, _, _ = bams
    path = tmp_path / "changing.bam"
    shutil.copy(indexed, path)
    co = CloudObject.from_url(str(path)).preprocess(progress=False)
    with co.reader(check_interval=0) as r:
        assert r.records("chr1:1000-2000")
        other = write_bam(tmp_path / "other.bam", 300, seed=4)
        os.replace(other, path)
        with pytest.raises(StaleIndexError):
            r.records("chr1:1000-2000")
    with pytest.raises(StaleIndexError):
        partition_regions(CloudObject.from_url(str(path)), "chr1:1000-2000")[0].get()


class TestBAMConformance(FormatTests):
    format = "BAM"
    dump_suffix = ".bam"
    slice_counts = (1, 7, 64)

    def samples(self) -> dict[str, dict[str, bytes]]:
        import tempfile

        with tempfile.TemporaryDirectory() as folder:
            return {
                "pairs": {"pairs.bam": bam_bytes(700, seed=21, folder=Path(folder))},
                "tiny": {"tiny.bam": bam_bytes(6, seed=22, folder=Path(folder), unmapped_pairs=2)},
                "empty": {"empty.bam": bam_bytes(0, seed=23, folder=Path(folder), unmapped_pairs=0)},
            }

    def oracle(self, path: Path) -> list[tuple]:
        return [tuple(line.split("\t")[:4]) for line in sam_lines(path)]

    def rows(self, table: pa.Table) -> list[tuple]:
        return [(q, str(f), r, str(p)) for q, f, r, p in zip(*(table[c].to_pylist() for c in ("qname", "flag", "rname", "pos")))]

    def large(self, folder: Path) -> tuple[str, int]:
        records = 240_000
        path = large_bam(folder / "large.bam", records, seed=5)
        assert int(pysam.samtools.view("-c", str(path))) == records
        return "large.bam", records
