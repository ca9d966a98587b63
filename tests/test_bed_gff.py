"""BED and GFF3/GTF through the tabix-style region index: region slices equal to ``tabix`` (htslib through
pysam) on the bgzipped, tabix-indexed file for many random regions over every codec, region edges and
empty intervals included; every record once (the conformance kit); detection; clear errors; blocks cut at
the codec's cuts. Checked against htslib and plain-Python parses, never against dataplug itself."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from dataplug import CloudObject, InvalidFormatError, StrategyArgumentError
from dataplug.detect import sniff
from dataplug.formats.genomics import bed, gff
from dataplug.formats.genomics.bed import BED
from dataplug.formats.genomics.gff import GFF
from dataplug.framings.base import cut_offsets
from dataplug.framings.regions import FINE_BYTES, line_index
from dataplug.storage.object import read_stats
from dataplug.testing import FormatTests, encode

CHROMS = {"chr1": 400_000, "chr2": 250_000, "chr10": 120_000, "chrUn_gl1": 3_000}
CODECS = ["plain", "gzip", "bgzf-htslib", "zstd", "bzip2"]


def reference():
    """pysam (htslib), the oracle of the region and dump tests; they skip without it (the ci extra installs it)."""
    return pytest.importorskip("pysam", reason="the reference, htslib through pysam, is installed by the ci extra")


def make_bed(records: int, seed: int, track: bool = True, comments: bool = True) -> str:
    """A sorted BED6 shaped like peak calls: four sequences (not in name order), empty intervals, intervals
    at 0, long intervals reaching past many others, ``#`` comments inside, a header and a track line."""
    rng = np.random.default_rng(seed)
    lines = (["track name=peaks description=\"test peaks\"", "browser position chr1:1-1000"] if track else []) + ["#chrom\tstart\tend\tname\tscore\tstrand"]
    per = rng.multinomial(records, [0.45, 0.3, 0.2, 0.05])
    n = 0
    for (chrom, length), count in zip(CHROMS.items(), per.tolist()):
        begins = np.sort(rng.integers(0, length, count))
        if count:
            begins[0] = 0 if chrom == "chr2" else begins[0]
        kind = rng.random(count)
        size = np.where(kind < 0.03, 0, np.where(kind > 0.95, rng.integers(2_000, 40_000, count), rng.integers(1, 600, count)))
        for b, s, k in zip(begins.tolist(), size.tolist(), kind.tolist()):
            lines.append(f"{chrom}\t{b}\t{b + s}\tpeak{n}\t{int(k * 1000)}\t{'+-.'[n % 3]}")
            if comments and n % 211 == 100:
                lines.append(f"# comment after peak{n}")
            n += 1
    return "\n".join(lines) + "\n"


def make_gff(features: int, seed: int, gtf: bool = False, fasta: bool = False) -> str:
    """A sorted GFF3 (or GTF) annotation: genes with their mRNAs and exons (nested, so long features overlap
    many later ones), ``###`` directives between genes, ``##sequence-region`` lines, scores and phases
    missing or set, and with ``fasta`` GFF3's ``##FASTA`` section at the end."""
    rng = np.random.default_rng(seed)
    lines = [] if gtf else ["##gff-version 3", *(f"##sequence-region {c} 1 {n}" for c, n in CHROMS.items())]
    per = rng.multinomial(max(features // 4, 1), [0.45, 0.3, 0.2, 0.05])
    n = 0
    for (chrom, length), genes in zip(CHROMS.items(), per.tolist()):
        rows = []
        for start in np.sort(rng.integers(1, length, genes)).tolist():
            end = start + int(rng.integers(0, 30_000))
            gene_id = f"g{seed}_{n}"
            n += 1
            rows.append((start, end, "gene", gene_id, None, ".", gene_id))
            rows.append((start, end, "mRNA", f"{gene_id}.t1", gene_id, ".", gene_id))
            for e in range(int(rng.integers(1, 4))):
                a = start + e * (end - start + 1) // 3
                b = max(a, start + (e + 1) * (end - start + 1) // 3 - 1)
                rows.append((a, b, "exon" if e % 2 else "CDS", f"{gene_id}.e{e}", f"{gene_id}.t1", str(e % 3) if e % 2 == 0 else ".", gene_id))
        for i, (s, e, kind, ident, parent, phase, gene_id) in enumerate(sorted(rows, key=lambda r: r[0])):
            score = "." if (s + e) % 3 else f"{(s % 1000) / 10:.1f}"
            strand = "+-"[len(gene_id) % 2]
            if gtf:
                attributes = f'gene_id "{gene_id}"; transcript_id "{gene_id}.t1";'
            else:
                attributes = f"ID={ident}" + (f";Parent={parent}" if parent else "")
            lines.append(f"{chrom}\tsim\t{kind}\t{s}\t{e}\t{score}\t{strand}\t{phase}\t{attributes}")
            if not gtf and i % 17 == 16:
                lines.append("###")
    if fasta:
        lines += ["##FASTA", *(f">{c}\n{'ACGT' * 30}" for c in CHROMS)]
    return "\n".join(lines) + "\n"


def tabix_copy(folder: Path, name: str, text: str, preset: str):
    """The text without what htslib refuses (track/browser lines, GFF3's FASTA section), bgzipped and
    tabix-indexed by htslib; its TabixFile and the path of the .gz."""
    pysam = reference()
    folder = folder / "htslib"
    folder.mkdir(exist_ok=True)
    kept = text.split("##FASTA\n")[0]
    kept = "".join(line for line in kept.splitlines(keepends=True) if not line.startswith(("track ", "browser ")))
    plain = folder / name
    plain.write_text(kept)
    path = str(pysam.tabix_index(str(plain), preset=preset, force=True))
    return pysam.TabixFile(path), path


def stored(local_store, name: str, text: str, codec: str, htslib_gz: str) -> str:
    data = Path(htslib_gz).read_bytes() if codec == "bgzf-htslib" else encode(text.encode(), codec)
    return local_store.put(f"{codec}-{name}", data)


@pytest.fixture(scope="module")
def bed_case(tmp_path_factory):
    text = make_bed(3000, seed=3)
    tabix, path = tabix_copy(tmp_path_factory.mktemp("bed"), "peaks.bed", text, "bed")
    return text, tabix, path


@pytest.fixture(scope="module")
def gff_case(tmp_path_factory):
    text = make_gff(2400, seed=4)
    tabix, path = tabix_copy(tmp_path_factory.mktemp("gff"), "genes.gff3", text, "gff")
    return text, tabix, path


def random_regions(seed: int, count: int) -> list[str]:
    """Seeded regions: whole sequences, open-ended ones, points, short and long spans, some past a sequence's end."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        chrom = str(rng.choice(list(CHROMS)))
        beg = int(rng.integers(1, CHROMS[chrom] + 10_000))
        kind = rng.random()
        if kind < 0.1:
            out.append(chrom)
        elif kind < 0.2:
            out.append(f"{chrom}:{beg}")
        else:
            out.append(f"{chrom}:{beg}-{beg + int(rng.choice([0, 1, 50, 3000, 200_000]))}")
    return out


def check_regions(co, strategy, tabix, regions: list[str]) -> None:
    slices = co.partition(strategy, regions)
    for region, piece in zip(regions, pickle.loads(pickle.dumps(slices))):
        expected = list(tabix.fetch(region=region))
        assert piece.num_records == len(expected), region
        assert piece.records() == expected, region
        assert piece.to_arrow().num_rows == len(expected), region


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("kind", ["bed", "gff"])
def test_regions_equal_tabix_over_every_codec(local_store, bed_case, gff_case, kind, codec):
    """50 seeded random regions per format and codec, with small and default blocks, against tabix."""
    text, tabix, path = bed_case if kind == "bed" else gff_case
    fmt, strategy = (BED, bed.partition_regions) if kind == "bed" else (GFF, gff.partition_regions)
    co = CloudObject.from_url(fmt, stored(local_store, f"regions.{kind}", text, codec, path))
    co.preprocess(sample_bytes=1024 if CODECS.index(codec) % 2 else 65536, spacing=16_384)
    check_regions(co, strategy, tabix, random_regions(CODECS.index(codec), 50))


def edge_regions(rows: list[tuple[str, int, int]]) -> list[str]:
    """Regions at every edge of some records (1-based inclusive [first, last] each): the base before, the
    first, the last and the base after, alone and as pairs."""
    out = []
    for chrom, first, last in rows:
        for a, b in ((first - 1, first - 1), (first, first), (last, last), (last + 1, last + 1), (first - 1, first), (last, last + 1)):
            if a >= 1:
                out.append(f"{chrom}:{a}-{b}")
    return out


@pytest.mark.parametrize("codec", ["plain", "bgzf-htslib"])
def test_region_edges_and_empty_intervals_equal_tabix(local_store, bed_case, gff_case, codec):
    """Regions ending or starting on a record's first or last base, or next to it, for BED's empty
    intervals (which tabix returns only for a region holding a base on both sides), BED records at 0 and
    long GFF genes."""
    text, tabix, path = bed_case
    co = CloudObject.from_url(BED, stored(local_store, "edges.bed", text, codec, path)).preprocess(sample_bytes=1024)
    rows = [line.split("\t") for line in text.splitlines() if line.startswith("chr")]
    empty = [(r[0], int(r[1]) + 1, int(r[2])) for r in rows if r[1] == r[2]][:12]
    picked = [(r[0], int(r[1]) + 1, int(r[2])) for r in rows[::97]]
    assert len(empty) >= 5 and any(r[1] == "0" for r in rows)
    check_regions(co, bed.partition_regions, tabix, edge_regions(empty + picked) + ["chr2:1-1", "chr2"])
    text, tabix, path = gff_case
    co = CloudObject.from_url(GFF, stored(local_store, "edges.gff3", text, codec, path)).preprocess(sample_bytes=1024)
    rows = [line.split("\t") for line in text.splitlines() if line.startswith("chr")]
    check_regions(co, gff.partition_regions, tabix, edge_regions([(r[0], int(r[3]), int(r[4])) for r in rows[::61]]))


@pytest.mark.parametrize("codec", ["plain", "bgzf-htslib"])
@pytest.mark.parametrize("kind", ["bed", "bed-no-comments", "gff", "gtf"])
def test_reader_records_equal_tabix(local_store, tmp_path, kind, codec):
    """``co.reader()`` and the kept reader (``records(co, ...)``) against tabix, one call per region: seeded
    regions and every edge of some records (BED's empty intervals, records at 0, long GFF genes), with meta
    lines among the records (BED comments, GFF3's ``###``: one NumPy pass over the blocks) and without (BED,
    GTF: a bisection of the blocks' bytes); an unknown sequence is refused."""
    fmt, module, preset = (BED, bed, "bed") if kind.startswith("bed") else (GFF, gff, "gff")
    text = make_bed(2500, seed=31, comments=kind == "bed") if fmt is BED else make_gff(2000, seed=32, gtf=kind == "gtf")
    tabix, path = tabix_copy(tmp_path, f"r.{kind}", text, preset)
    co = CloudObject.from_url(fmt, stored(local_store, f"reader.{kind}", text, codec, path)).preprocess(sample_bytes=1024, spacing=16_384)
    assert (co.attributes.skipped > 0) == (kind in ("bed", "gff"))
    rows = [line.split("\t") for line in text.splitlines() if line.startswith("chr")]
    begin, end = (1, 2) if fmt is BED else (3, 4)
    edges = edge_regions([(r[0], int(r[begin]) + (fmt is BED), int(r[end])) for r in rows[::53]])
    regions = random_regions(33, 150) + edges
    expected = [list(tabix.fetch(region=r)) for r in regions]
    assert sum(map(len, expected)) > 300
    with co.reader() as r:
        assert [r.records(region) for region in regions] == expected
        assert r.records_many(regions) == expected
        assert r.region("chr1", 999, 5000) == list(tabix.fetch("chr1", 999, 5000))
        for region, lines in list(zip(regions, expected))[:10]:
            table = r.table(region)
            assert table.num_rows == len(lines) and table.column(0).to_pylist() == [line.split("\t")[0] for line in lines], region
        assert r.table(regions[0], columns=["start" if fmt is GFF else "chromStart"]).num_columns == 1
        with pytest.raises(StrategyArgumentError, match="no chromosome 'chrX'"):
            r.records("chrX:1-100")
    assert [module.records(co, region) for region in regions[:50]] == expected[:50]


def test_gtf_and_fasta_section(local_store, tmp_path):
    """GTF regions equal tabix's; GFF3's ``##FASTA`` section ends the features (tabix cannot index it: its
    regions are compared with the file cut before it)."""
    text = make_gff(600, seed=8, gtf=True)
    tabix, _ = tabix_copy(tmp_path, "genes.gtf", text, "gff")
    co = CloudObject.from_url(GFF, local_store.put("genes.gtf", text.encode())).preprocess(sample_bytes=2048)
    assert co.attributes.dialect == "gtf" and co.attributes.records == text.count("\n")
    check_regions(co, gff.partition_regions, tabix, ["chr1", "chr2:1000-90000", "chr10:5000-5000"])
    text = make_gff(600, seed=9, fasta=True)
    tabix, _ = tabix_copy(tmp_path, "with_fasta.gff3", text, "gff")
    co = CloudObject.from_url(GFF, local_store.put("with_fasta.gff3.gz", gzip.compress(text.encode()))).preprocess(sample_bytes=2048)
    features = [line for line in text.split("##FASTA")[0].splitlines() if not line.startswith("#")]
    assert co.attributes.dialect == "gff3" and co.attributes.records == len(features)
    assert co.attributes.records_end == text.index("##FASTA")
    for n in (1, 4):
        slices = co.partition(gff.partition_num_chunks, n)
        assert [line for s in slices for line in s.records()] == features
        assert "".join(s.get()[len(slices[0].header) :] for s in slices) == text[co.attributes.data_start : text.index("##FASTA")]
    check_regions(co, gff.partition_regions, tabix, ["chr1", "chrUn_gl1", "chr2:100-200000"])


def test_unknown_sequence_and_unsorted_refused(local_store):
    text = make_bed(300, seed=5)
    co = CloudObject.from_url(BED, local_store.put("x.bed", text.encode())).preprocess()
    with pytest.raises(StrategyArgumentError, match="no chromosome 'chrX'"):
        co.partition(bed.partition_regions, ["chr1", "chrX:1-100"])
    lines = text.splitlines(keepends=True)
    swapped = "".join(lines[:3] + lines[200:] + lines[3:200])  # chr1 appears in two runs
    co = CloudObject.from_url(BED, local_store.put("unsorted.bed", swapped.encode())).preprocess(sample_bytes=256)
    assert co.attributes.sorted is False
    with pytest.raises(StrategyArgumentError, match="sorted"):
        co.partition(bed.partition_regions, "chr1")
    with pytest.raises(StrategyArgumentError, match="sorted"), co.reader() as r:
        r.records("chr1")
    records = [line for s in co.partition(bed.partition_num_chunks, 5) for line in s.records()]
    assert records == [line for line in swapped.splitlines() if line.startswith("chr")]


def test_a_region_slice_read_again_after_the_object_changed_is_refused(local_store):
    """A region slice of a BGZF object whose members are all in this process's shared cache still checks the
    object's identity, as every slice read does: a rewritten object is refused, not answered from the cache."""
    from dataplug import StaleIndexError

    text = make_bed(3000, seed=9)
    url = local_store.put("changed.bed.gz", encode(text.encode(), "bgzf"))
    co = CloudObject.from_url(BED, url).preprocess()
    piece = co.partition(bed.partition_regions, "chr1:1-200000")[0]
    assert piece.records()
    Path(co.obj.path).write_bytes(encode(text.replace("peak", "PEAK").encode(), "bgzf"))
    with pytest.raises(StaleIndexError):
        piece.records()


def test_crlf_lines(local_store):
    """Windows line ends: the CR ends no column (BED3's end is the last one), and no record keeps it."""
    text = make_bed(400, seed=14, track=False)
    crlf = text.replace("\n", "\r\n")
    co = CloudObject.from_url(BED, local_store.put("crlf.bed", crlf.encode())).preprocess(sample_bytes=512)
    plain = CloudObject.from_url(BED, local_store.put("lf.bed", text.encode())).preprocess(sample_bytes=512)
    regions = random_regions(14, 20)
    assert [s.records() for s in co.partition(bed.partition_regions, regions)] == [s.records() for s in plain.partition(bed.partition_regions, regions)]
    tables = [pa.concat_tables(s.to_arrow() for s in c.partition(bed.partition_num_chunks, 3)) for c in (co, plain)]
    assert tables[0].equals(tables[1]) and tables[0].num_rows == 400


BAD = [
    (BED, "chr1\t10\t20\nchr1\t30\t25\n", "chromEnd is before chromStart", 2),
    (BED, "chr1\t10\t20\nchr1\t3x\t40\n", "chromStart is not an integer", 2),
    (BED, "chr1\t10\t20\tn\nchr1\t30\t40\n", "3 tab-separated columns where the first record has 4", 2),
    (BED, "chr1\t10\t20\nchr1 30 40\n", "where the first record has 3", 2),
    (GFF, "##gff-version 3\nc\t.\tgene\t10\t20\t.\t+\t.\tID=a\nc\t.\tgene\t30\t\t.\t+\t.\tID=b\n", "end is not an integer", 3),
    (GFF, "##gff-version 3\nc\t.\tgene\t10\t20\t.\t+\t.\tID=a\nc\t.\tgene\t30\t40\t.\t+\t.\n", "9 tab-separated columns, this one 8", 3),
    (GFF, "##gff-version 3\nc\t.\tgene\t10\t20\t.\t+\t.\tID=a\nc\t.\tgene\t30\t28\t.\t+\t.\tID=b\n", "end is before start", 3),
    (GFF, "##gff-version 3\nc\t.\tgene\t10\t20\t.\t+\t.\tID=a\nc\t.\tgene\t30\t40\t.\t+\t.\tID=\0\n", "NUL", 3),
]


@pytest.mark.parametrize("codec", ["plain", "bgzf"])
@pytest.mark.parametrize("fmt, body, message, line", BAD)
def test_malformed_records_give_clear_errors(local_store, fmt, body, message, line, codec):
    """The error names the cause and the line, also far from the start (a later range of the pass)."""
    head, _, rest = body.partition("\n")
    if fmt is GFF:
        head2, _, rest = rest.partition("\n")
        head = head + "\n" + head2
    good = head.split("\n")[-1]
    filler = "".join(good + "\n" for _ in range(500))
    text = head + "\n" + filler + rest
    with pytest.raises(InvalidFormatError, match=message) as info:
        CloudObject.from_url(fmt, local_store.put(f"bad-{codec}.txt", encode(text.encode(), codec))).preprocess(chunk_size=997)
    assert info.value.line == line + 500
    assert text.count("\n", 0, info.value.offset) + 1 == line + 500


def test_detection(local_store):
    bed_text, gff_text, gtf_text = make_bed(50, 1), make_gff(40, 2), make_gff(40, 2, gtf=True)
    no_track = make_bed(50, 1, track=False)
    cases = {
        "BED": [bed_text, no_track, no_track.replace("chr", ""), "\n".join(line for line in no_track.splitlines() if not line.startswith("#")) + "\n"],
        "GFF": [gff_text, gtf_text],
        "CSV": ["a\tb\tc\n1\t2\t3\n4\t5\t6\n", "1\t2\t3\n4\t5\t6\n7\t8\t9\n10\t11\t12\n", "chrom\tstart\tend\nchr1\t1\t2\n"],
    }
    for expected, texts in cases.items():
        for text in texts:
            for data in (text.encode(), encode(text.encode(), "bgzf")):
                assert sniff("x", data, complete=True).format == expected, text[:80]


def test_blocks_start_at_codec_cuts(local_store):
    """Over BGZF with every member a checkpoint, a block starts within FINE_BYTES (and a line) after every
    member start, so a region maps to whole members; a narrow region reads at most two members."""
    text = make_bed(6000, seed=12, comments=False)
    data = encode(text.encode(), "bgzf")
    url = local_store.put("cuts.bed.gz", data)
    co = CloudObject.from_url(BED, url).preprocess(spacing=1)
    cuts = cut_offsets(co)
    assert cuts.size == len(text) // 65280 + 1 == co.attributes.checkpoints
    index = line_index(co)
    record = co.index().tables[BED.block_tables()[0]].astype(np.int64)
    starts = index.offsets[np.searchsorted(index.records, record)]
    longest = max(len(line) for line in text.splitlines()) + 1
    for c in cuts[1:].tolist():
        after = starts[starts >= c]
        assert after.size and after[0] - c < FINE_BYTES + longest
    rows = [line.split("\t") for line in text.splitlines() if line.startswith("chr1\t")]
    middle = rows[len(rows) // 2]
    region = f"chr1:{int(middle[1]) + 1}-{int(middle[1]) + 1}"
    (piece,) = co.partition(bed.partition_regions, region)
    read_stats.reset()
    assert piece.records()
    assert read_stats.bytes[url] <= 2 * 65536


def test_sidecar_grows_by_under_half_a_percent_of_a_bgzf_object(local_store):
    """Per BGZF member (every one a checkpoint), the index grows by less than 0.5 % of the member's bytes: the
    sidecar of a large BGZF BED stays under 0.5 % of it (the manifest's fixed bytes aside)."""
    sizes = []
    for records in (20_000, 80_000):
        text = make_bed(records, seed=13, track=False, comments=False)
        url = local_store.put(f"size{records}.bed.gz", encode(text.encode(), "bgzf"))
        co = CloudObject.from_url(BED, url).preprocess(spacing=1)
        assert co.attributes.checkpoints == len(text) // 65280 + 1
        sizes.append((co.attributes.size, sum(p.stat().st_size for p in Path(url + ".dataplug").rglob("*") if p.is_file())))
    (small, small_index), (large, large_index) = sizes
    assert (large_index - small_index) <= 0.005 * (large - small), sizes


# -- the conformance kit ------------------------------------------------------------------------------------


def _without_meta_copy(path: Path) -> Path:
    """The file without what pysam's parsers refuse (track/browser lines, a FASTA section)."""
    text = path.read_text().split("##FASTA\n")[0]
    out = path.with_name(path.name + ".oracle")
    out.write_text("".join(line for line in text.splitlines(keepends=True) if not line.startswith(("track ", "browser "))))
    return out


def bed_rows(path: Path) -> list[tuple]:
    """(chrom, start, end, name) of every record: pysam's BED parser when installed, else a plain parse."""
    try:
        import pysam
    except ImportError:
        rows = [line.split("\t") for line in path.read_text().splitlines() if line and not line.startswith(("#", "track ", "browser "))]
        return [(r[0], int(r[1]), int(r[2]), r[3] if len(r) > 3 else None) for r in rows]
    with open(_without_meta_copy(path)) as fh:
        return [(r.contig, r.start, r.end, r.name if len(r) > 3 else None) for r in pysam.tabix_iterator(fh, pysam.asBed())]


def gff_rows(path: Path) -> list[tuple]:
    """(seqid, type, start, end, score, phase) of every feature: pysam's GFF3 parser when installed, else a
    plain parse."""
    try:
        import pysam
    except ImportError:
        text = path.read_text().split("##FASTA\n")[0]
        rows = [line.split("\t") for line in text.splitlines() if line and not line.startswith("#")]
        return [(r[0], r[2], int(r[3]), int(r[4]), None if r[5] == "." else float(r[5]), None if r[7] == "." else int(r[7])) for r in rows]
    with open(_without_meta_copy(path)) as fh:
        return [(r.contig, r.feature, r.start + 1, r.end, r.score, r.frame) for r in pysam.tabix_iterator(fh, pysam.asGFF3())]


class TestBEDConformance(FormatTests):
    format = "BED"
    codecs = ("plain", "gzip", "bgzf", "zstd", "bzip2")
    dump_suffix = ".bed"
    max_slices = 200  # more slices than records on the small samples only (each slice of bzip2 decodes a block)

    def samples(self) -> dict[str, dict[str, bytes]]:
        return {
            "peaks": {"peaks.bed": make_bed(2000, seed=1).encode()},
            "bed3": {"small.bed": b"chr1\t0\t10\nchr1\t5\t5\nchr2\t100\t250\n"},
            "header_only": {"empty.bed": b"track name=empty\n#chrom\tstart\tend\n"},
        }

    def oracle(self, path: Path) -> list[tuple]:
        return bed_rows(path)

    def rows(self, table: pa.Table) -> list[tuple]:
        names = table["name"].to_pylist() if "name" in table.column_names else [None] * table.num_rows
        return list(zip(table["chrom"].to_pylist(), table["chromStart"].to_pylist(), table["chromEnd"].to_pylist(), names))

    def large(self, folder: Path) -> tuple[str, int]:
        records = 1_800_000
        rng = np.random.default_rng(6)
        chrom = np.repeat(["chr1", "chr2", "chr3"], [800_000, 600_000, 400_000])
        begin = np.concatenate([np.sort(rng.integers(0, 2 * 10**8, k)) for k in (800_000, 600_000, 400_000)])
        end = begin + rng.integers(0, 2000, records)
        score = rng.integers(0, 1000, records)
        body = "\n".join(f"{c}\t{b}\t{e}\tp{i}\t{s}\t+" for i, (c, b, e, s) in enumerate(zip(chrom.tolist(), begin.tolist(), end.tolist(), score.tolist())))
        (folder / "large.bed").write_text("#chrom\tstart\tend\tname\tscore\tstrand\n" + body + "\n")
        return "large.bed", records


class TestGFFConformance(FormatTests):
    format = "GFF"
    codecs = ("plain", "gzip", "bgzf", "zstd", "bzip2")
    dump_suffix = ".gff3"
    max_slices = 200

    def samples(self) -> dict[str, dict[str, bytes]]:
        return {
            "genes": {"genes.gff3": make_gff(1600, seed=1, fasta=True).encode()},
            "gtf": {"genes.gtf": make_gff(40, seed=2, gtf=True).encode()},
            "header_only": {"empty.gff3": b"##gff-version 3\n##sequence-region chr1 1 1000\n"},
        }

    def oracle(self, path: Path) -> list[tuple]:
        return gff_rows(path)

    def rows(self, table: pa.Table) -> list[tuple]:
        return list(zip(*(table[c].to_pylist() for c in ("seqid", "type", "start", "end", "score", "phase"))))

    def large(self, folder: Path) -> tuple[str, int]:
        records = 700_000
        rng = np.random.default_rng(7)
        chrom = np.repeat(["chr1", "chr2"], [400_000, 300_000])
        start = np.concatenate([np.sort(rng.integers(1, 2 * 10**8, k)) for k in (400_000, 300_000)])
        end = start + rng.integers(0, 5000, records)
        kind = np.array(["gene", "mRNA", "exon", "CDS"])[rng.integers(0, 4, records)]
        body = "\n".join(
            f"{c}\tsim\t{k}\t{s}\t{e}\t.\t+\t.\tID=f{i};Name=feature_{i};Note=generated+for+the+large+test"
            for i, (c, k, s, e) in enumerate(zip(chrom.tolist(), kind.tolist(), start.tolist(), end.tolist()))
        )
        (folder / "large.gff3").write_text("##gff-version 3\n" + body + "\n")
        return "large.gff3", records
