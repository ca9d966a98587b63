"""VCF over plain, gzip and BGZF: every record exactly once for every slice count, region slices equal to
tabix (pysam) for random regions, clear errors for malformed files; checked against a plain-Python parse
and htslib, never against dataplug itself."""

from __future__ import annotations

import gzip
import importlib.util
import pickle
from pathlib import Path

import fsspec
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataplug import CloudObject, InvalidFormatError, StaleIndexError, StrategyArgumentError
from dataplug.formats.genomics import vcf
from dataplug.formats.genomics.vcf import VCF, partition_num_chunks, partition_regions
from dataplug.framings.regions import RegionReader
from dataplug.storage.handle import clear_shared
from dataplug.storage.object import read_stats
from dataplug.testing import FormatTests
from dataplug.testing.data import make_vcf
from dataplug.testing.fixtures import make_bucket, proxied_options
from tests.test_codecs import encode


def reference():
    """pysam (htslib), the reference the oracle tests compare with; those tests skip without it (the ci
    extra installs it), the self-consistency tests run anyway."""
    return pytest.importorskip("pysam", reason="the reference, htslib through pysam, is installed by the ci extra")


CODECS = ["none", "gzip", "gzip-members", "bgzf"]
SLOW = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
SAMPLES = ("NA1", "NA2", "NA3")
CHROMS = {"chr1": 60_000, "chr2": 40_000, "chr10": 30_000, "chrUn_gl1": 2_000}


def split(text: str) -> tuple[str, list[str]]:
    """An independent parse: the header text and the record lines."""
    lines = text.splitlines()
    n = next(i for i, line in enumerate(lines) if line.startswith("#CHROM")) + 1
    return "\n".join(lines[:n]) + "\n", lines[n:]


def expected_table(lines: list[str], samples: tuple[str, ...]) -> dict[str, list]:
    names = ["CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", *(["FORMAT", *samples] if samples else [])]
    columns = list(zip(*(line.split("\t") for line in lines))) if lines else [()] * len(names)
    out = {n: list(c) for n, c in zip(names, columns)}
    out["POS"] = [int(p) for p in out["POS"]]
    out["QUAL"] = [None if q == "." else float(q) for q in out["QUAL"]]
    return out


@pytest.fixture(scope="module")
def tabixed(tmp_path_factory):
    """One generated VCF, BGZF-compressed and indexed by htslib (pysam), for region comparisons."""
    pysam = reference()
    folder = tmp_path_factory.mktemp("vcf")
    text = make_vcf(3000, seed=7)
    plain = folder / "t.vcf"
    plain.write_text(text)
    bgzf = str(folder / "t.vcf.gz")
    pysam.tabix_compress(str(plain), bgzf, force=True)
    pysam.tabix_index(bgzf, preset="vcf", force=True)
    return text, bgzf, pysam.TabixFile(bgzf)


@SLOW
@given(
    records=st.integers(0, 120),
    codec=st.sampled_from(CODECS),
    chunk_size=st.integers(50, 3000),
    sample_bytes=st.integers(40, 2000),
    spacing=st.sampled_from([64, 4096]),
    seed=st.integers(0, 99),
)
def test_every_record_once_over_every_codec(local_store, records, codec, chunk_size, sample_bytes, spacing, seed):
    text = make_vcf(records, seed)
    header, lines = split(text)
    url = local_store.put(f"e{records}-{codec}-{chunk_size}-{sample_bytes}-{seed}.vcf", encode(text.encode(), codec, seed))
    co = CloudObject.from_url(VCF, url)
    co.preprocess(force=True, chunk_size=chunk_size, sample_bytes=sample_bytes, spacing=spacing)
    a = co.attributes
    assert (a.records, a.samples, a.sorted, a.data_start) == (len(lines), 3, True, len(header))
    assert a.chromosomes == len({line.split("\t")[0] for line in lines})
    for n in range(1, min(len(lines), 12) + 3):
        slices = co.partition(partition_num_chunks, n)
        assert len(slices) == n and all(s.header == header for s in slices)
        assert sum((s.records() for s in slices), []) == lines
        assert "".join(s.get()[len(header) :] for s in slices) == text[len(header) :]
    table = pa.concat_tables([s.to_arrow() for s in pickle.loads(pickle.dumps(slices))])
    assert table.schema == slices[0].schema() and table.to_pydict() == expected_table(lines, SAMPLES)
    assert slices[0].to_arrow(columns=["POS", "NA2"]).column_names == ["POS", "NA2"]


@pytest.mark.parametrize("contigs, records", [(0, 60), (3000, 4000)])
def test_slices_balanced_past_a_long_header(local_store, contigs, records):
    """The header's bytes belong to no slice: the first slice holds as many records as the others, even
    when the header is longer than a line-index step (GRCh38 call sets name thousands of contigs)."""
    text = realistic_vcf(records, seed=6).decode()
    extra = "".join(f"##contig=<ID=chrUn_{i:05d}v1_decoy,length={1000 + i}>\n" for i in range(contigs))
    text = text.replace("#CHROM", extra + "#CHROM", 1)
    co = CloudObject.from_url(VCF, local_store.put(f"long-header-{contigs}.vcf", text.encode()))
    co.preprocess()
    for n in (2, 7):
        counts = [s.num_records for s in co.partition(partition_num_chunks, n)]
        assert sum(counts) == records and max(counts) <= 1.3 * records / n and min(counts) >= 0.7 * records / n, counts


def region_strings(draw_chrom, beg, length) -> str:
    return draw_chrom if beg is None else f"{draw_chrom}:{beg}-{beg + length}"


@SLOW
@given(
    queries=st.lists(
        st.tuples(st.sampled_from([*CHROMS, "chrX"]), st.one_of(st.none(), st.integers(1, 62_000)), st.integers(0, 5000)), min_size=1, max_size=6
    ),
    codec=st.sampled_from(["plain", "gzip", "bgzf-htslib"]),
)
def test_region_slices_equal_tabix(local_store, tabixed, queries, codec):
    text, bgzf_path, tabix = tabixed
    data = {"plain": text.encode(), "gzip": gzip.compress(text.encode(), 1)}.get(codec) or open(bgzf_path, "rb").read()
    url = local_store.put(f"r-{codec}.vcf", data)
    co = CloudObject.from_url(VCF, url)
    co.preprocess(chunk_size=20_000, sample_bytes=4096, spacing=16_384)
    regions = [region_strings(*q) for q in queries]
    if any(region.split(":")[0] not in tabix.contigs for region in regions):  # htslib refuses an unknown sequence, and so does dataplug
        with pytest.raises(StrategyArgumentError, match="no chromosome 'chrX'"):
            co.partition(partition_regions, regions)
        return
    slices = co.partition(partition_regions, regions)
    for region, piece in zip(regions, slices):
        expected = list(tabix.fetch(region=region))
        assert piece.records() == expected, region
        assert piece.to_arrow().num_rows == len(expected)
        assert piece.num_records == len(expected), region
        assert piece.get() == split(text)[0] + "".join(line + "\n" for line in expected)


@pytest.mark.parametrize("codec", ["plain", "gzip", "bgzf-htslib"])
def test_region_num_records_equal_tabix_before_and_after_reading(local_store, tabixed, codec):
    """``num_records`` of a region slice counts the records tabix returns, not the blocks' records: asked
    first (from the index and the region's edge blocks, or for gzip with few checkpoints the whole slice),
    on a pickled copy, and after a read."""
    text, bgzf_path, tabix = tabixed
    data = {"plain": text.encode(), "gzip": gzip.compress(text.encode())}.get(codec) or open(bgzf_path, "rb").read()
    co = CloudObject.from_url(VCF, local_store.put(f"count-{codec}.vcf", data))
    co.preprocess(sample_bytes=2048, spacing=16_384)
    regions = ["chr2:5000-6000", "chr1", "chr10:1-", "chr1:1-100", "chr2:39000-41000", "chr1:30000-30000", "chr10:100-29999"]
    expected = [list(tabix.fetch(region=r)) for r in regions]
    assert len(expected[0]) < 40 and len(expected[1]) > 500
    slices = co.partition(partition_regions, regions)
    assert [s.num_records for s in pickle.loads(pickle.dumps(slices))] == [len(e) for e in expected]
    for region, piece, records in zip(regions, slices, expected):
        assert piece.num_records == len(records) == piece.to_arrow().num_rows, region
        assert piece.get().count("\n") - piece.header.count("\n") == len(records)
        assert piece.records() == records and piece.num_records == len(records)


def test_whole_chromosome_regions_are_counted_without_reading(local_store, tabixed):
    text, _, tabix = tabixed
    url = local_store.put("whole.vcf", text.encode())
    co = CloudObject.from_url(VCF, url)
    co.preprocess(sample_bytes=1024)
    read_stats.reset()
    slices = co.partition(partition_regions, ["chr1", "chr2", "chrUn_gl1"])
    assert [s.num_records for s in slices] == [len(list(tabix.fetch(c))) for c in ("chr1", "chr2", "chrUn_gl1")]
    assert read_stats.bytes.get(url, 0) == 0


def test_end_tags_tabix_ignores(local_store, tmp_path):
    """htslib ignores an INFO ``END=`` before POS, empty or ``.``: the record then covers its REF."""
    pysam = reference()
    header = "##fileformat=VCFv4.2\n##contig=<ID=c1>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
    body = "".join(
        f"c1\t{p}\tid{p}\tACGT\tA\t.\tPASS\t{info}\n"
        for p, info in [(100, "END=50"), (200, "END=."), (300, "END="), (400, "X=1;END=450"), (500, "END=499"), (600, "END=603")]
    )
    plain = tmp_path / "ends.vcf"
    plain.write_text(header + body)
    pysam.tabix_index(str(plain), preset="vcf", force=True)
    tabix = pysam.TabixFile(str(plain) + ".gz")
    co = CloudObject.from_url(VCF, local_store.put("ends.vcf", (header + body).encode()))
    co.preprocess(sample_bytes=40)
    regions = [f"c1:{b}-{b}" for b in (50, 99, 100, 103, 104, 203, 303, 420, 450, 451, 503, 603, 604)]
    for region, piece in zip(regions, co.partition(partition_regions, regions)):
        expected = list(tabix.fetch(region=region))
        assert piece.records() == expected and piece.num_records == len(expected), region


def test_regions_at_the_far_end_of_long_records(local_store, tabixed):
    """Small blocks, and regions that only the tail of a long REF or an END= reaches: the blocks' last
    covered positions must find them."""
    text, bgzf_path, tabix = tabixed
    co = CloudObject.from_url(VCF, local_store.put("tails.vcf", text.encode()))
    co.preprocess(sample_bytes=256, chunk_size=10_000)
    long_ones = [line for line in split(text)[1] if _last(line) > int(line.split("\t")[1]) + 100]
    regions = [f"{line.split(chr(9))[0]}:{_last(line)}-{_last(line)}" for line in long_ones[:40]]
    assert len(regions) == 40
    for region, piece in zip(regions, co.partition(partition_regions, regions)):
        expected = list(tabix.fetch(region=region))
        assert piece.records() == expected and len(expected) >= 1, region


@pytest.mark.parametrize("codec", ["plain", "bgzf-htslib"])
def test_region_reads_only_its_blocks(local_store, tabixed, codec):
    text, bgzf_path, tabix = tabixed
    data = text.encode() if codec == "plain" else open(bgzf_path, "rb").read()
    url = local_store.put(f"blocks-{codec}.vcf", data)
    co = CloudObject.from_url(VCF, url)
    co.preprocess(sample_bytes=2048, spacing=16_384)  # BGZF: a member start every 16 KiB is a place to start reading
    (piece,) = co.partition(partition_regions, "chr2:20000-20100")
    read_stats.reset()
    assert piece.records() == list(tabix.fetch(region="chr2:20000-20100"))
    assert 0 < read_stats.bytes[url] < len(data) / (20 if codec == "plain" else 3)  # 2 of the 7 BGZF members at most


def test_unsorted_file_refuses_regions(local_store):
    header, lines = split(make_vcf(200, seed=3))
    swapped = lines[100:] + lines[:100]  # chr1 appears in two runs
    co = CloudObject.from_url(VCF, local_store.put("unsorted.vcf", (header + "\n".join(swapped) + "\n").encode()))
    co.preprocess(chunk_size=500)
    assert co.attributes.sorted is False
    with pytest.raises(StrategyArgumentError, match="sorted"):
        co.partition(partition_regions, ["chr1"])
    assert sum((s.records() for s in co.partition(partition_num_chunks, 5)), []) == swapped
    keys = [line.split("\t")[:2] for line in lines]
    i = next(i for i in range(len(keys) - 1) if keys[i][0] == keys[i + 1][0] and keys[i][1] != keys[i + 1][1])
    inverted = [*lines[:i], lines[i + 1], lines[i], *lines[i + 2 :]]  # POS decreases once, inside one CHROM
    co = CloudObject.from_url(VCF, local_store.put("inverted.vcf", (header + "\n".join(inverted) + "\n").encode()))
    assert co.preprocess().attributes.sorted is False


BAD = [
    ("##fileformat=VCFv4.2\nchr1\t1\t.\tA\tC\t.\tPASS\t.\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n", "record before the header ends", 2),
    ("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\nchr1\t1\t.\tA\tC\t.\tPASS\t.\n##late\n", "header line", 4),
    ("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\nchr1\t1\t.\tA\tC\t.\tPASS\t.\nchr1\t2\t.\tA\tC\t.\tPASS\n", "at least 8 tab-separated columns", 4),
    ("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS1\nchr1\t1\t.\tA\tC\t.\tPASS\t.\tGT\n", "a column for each of the 1 samples", 3),
    ("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\nchr1\t1\t.\tA\tC\t.\tPASS\t.\nchr1\t1x\t.\tA\tC\t.\tPASS\t.\n", "POS is not an integer", 4),
    ("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\nchr1\t1\t.\tA\tC\t.\tPASS\t.\nchr1\t\t.\tA\tC\t.\tPASS\t.\n", "POS is not an integer", 4),
    ("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\nchr1\t1\t.\tA\tC\t.\tPASS\t.\nchr1\t2\t.\tA\0\tC\t.\tPASS\t.\n", "NUL", 4),
    ("##fileformat=VCFv4.2\n##contig=<ID=chr1>\n", "no #CHROM", 3),
    ("chr1\t1\t.\tA\tC\t.\tPASS\t.\n", "not a VCF", 1),
    ("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tS1\n", "FORMAT", 2),
]


TRAILING = "##fileformat=VCFv4.2\n##contig=<ID=chr1>\n##FORMAT=<ID=GT,Number=1,Type=String,Description=\"Genotype\">\n"
COLUMNS = {0: "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n", 2: "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS1\tS2\n"}
#: (samples in the header, the odd record's fields after CHROM and POS): htslib's verdict decides each case.
ODD_RECORDS = [
    (0, ".\tA\tC\t.\tPASS\t.\t"),  # a trailing tab (drop-seq's hek_cells_2snps.vcf.gz)
    (0, ".\tA\tC\t.\tPASS\t.\t\t"),
    (0, ".\tA\tC\t.\tPASS\t.\tGT\t0/1"),  # columns htslib ignores without samples
    (0, ".\tA\tC\t.\tPASS\t"),  # an empty INFO
    (0, ".\tA\tC\t.\tPASS"),  # 7 columns
    (2, ".\tA\tC\t.\tPASS\t.\tGT\t0/1\t1/1\t"),
    (2, ".\tA\tC\t.\tPASS\t.\tGT\t0/1\t1/1\t\t"),
    (2, ".\tA\tC\t.\tPASS\t.\tGT\t0/1\t1/1\t0/0"),
    (2, ".\tA\tC\t.\tPASS\t."),  # no FORMAT: missing genotypes
    (2, ".\tA\tC\t.\tPASS\t.\t"),  # an empty FORMAT and no sample
    (2, ".\tA\tC\t.\tPASS\t.\tGT"),
    (2, ".\tA\tC\t.\tPASS\t.\tGT\t0/1"),  # one sample of two
    (2, ".\tA\tC\t.\tPASS\t.\tGT\t0/1\t"),
]


def htslib_reads(path) -> list[tuple] | None:
    """(CHROM, POS, ID, REF, ALT, genotypes) of every record pysam reads, or None when it refuses the file."""
    try:
        with reference().VariantFile(str(path)) as vcf:
            return [(r.chrom, r.pos, r.id, r.ref, r.alts, tuple(s.get("GT") for s in r.samples.values())) for r in vcf]
    except (OSError, ValueError):
        return None


@pytest.mark.parametrize("codec", ["none", "bgzf"])
@pytest.mark.parametrize("samples, fields", ODD_RECORDS)
def test_records_htslib_reads_are_read_and_those_it_refuses_refused(local_store, tmp_path, samples, fields, codec):
    reference()
    genotypes = "\tGT\t0/0\t1/1" if samples else ""
    good = [f"chr1\t{p}\trs{p}\tG\tT\t50\tPASS\tDP=3{genotypes}" for p in range(1, 300)]
    lines = [*good[:150], f"chr1\t150\todd\t{fields.split(chr(9), 1)[1]}", *good[150:]]
    text = TRAILING + COLUMNS[samples] + "\n".join(lines) + "\n"
    (tmp_path / "odd.vcf").write_text(text)
    expected = htslib_reads(tmp_path / "odd.vcf")
    co = CloudObject.from_url(VCF, local_store.put(f"odd-{codec}.vcf", encode(text.encode(), codec)))
    if expected is None:
        with pytest.raises(InvalidFormatError, match="column") as info:
            co.preprocess(force=True, chunk_size=997)
        assert info.value.line == text.count("\n", 0, text.find("\todd\t")) + 1
        return
    co.preprocess(force=True, chunk_size=997)
    assert co.attributes.records == len(expected)
    slices = co.partition(partition_num_chunks, 3)
    tables = [s.to_arrow() for s in slices]
    assert [s.num_records for s in slices] == [t.num_rows for t in tables]
    table = pa.concat_tables(tables)
    got = [
        (r["CHROM"], r["POS"], None if r["ID"] == "." else r["ID"], r["REF"], None if r["ALT"] == "." else (r["ALT"],),
         tuple(tuple(None if g == "." else int(g) for g in r[name].split("/")) for name in ("S1", "S2")[:samples] if r["FORMAT"] is not None))
        for r in table.to_pylist()
    ]
    assert got == expected
    for n, piece in enumerate(slices):
        with open(tmp_path / f"dump{n}.vcf", "wb") as fh:
            piece.dump(fh)
    assert sum((htslib_reads(tmp_path / f"dump{n}.vcf") for n in range(3)), []) == expected


def test_every_record_with_a_trailing_tab(local_store, tmp_path):
    """drop-seq's hek_cells_2snps.vcf.gz shape: every record ends with a tab; the table is the same as
    without the tabs, and the records are those htslib reads."""
    text = realistic_vcf(300, seed=9, odd=False).decode()
    header, lines = split(text)
    tabbed = header + "".join(line + "\t\n" for line in lines)
    (tmp_path / "tabbed.vcf").write_text(tabbed)
    co = CloudObject.from_url(VCF, local_store.put("tabbed.vcf", tabbed.encode()))
    co.preprocess(sample_bytes=2048)
    plain = CloudObject.from_url(VCF, local_store.put("untabbed.vcf", text.encode())).preprocess()
    for n in (1, 3):
        tables = [s.to_arrow() for s in co.partition(partition_num_chunks, n)]
        assert pa.concat_tables(tables).equals(pa.concat_tables([s.to_arrow() for s in plain.partition(partition_num_chunks, n)]))
    assert co.attributes.records == len(lines)
    if importlib.util.find_spec("pysam") is not None:
        assert len(htslib_reads(tmp_path / "tabbed.vcf") or []) == len(lines)


@pytest.mark.parametrize("codec", ["none", "bgzf"])
@pytest.mark.parametrize("text, message, line", BAD)
def test_malformed_inputs_give_clear_errors(local_store, text, message, line, codec):
    columns = text[text.find("#CHROM") :].split("\n", 1)[0].count("\t") + 1
    extra = "\tx" * (columns - 8)
    filler = "".join(f"chr0\t{i}\t.\tA\tC\t.\tPASS\t.{extra}\n" for i in range(1, 400)) if 0 <= text.find("#CHROM") < text.find("\nchr1\t1\t") else ""
    if filler:  # the bad line far from the start: errors come from a later range, with the right line
        head, _, rest = text.partition("\nchr1\t1\t")
        text, line = head + "\n" + filler + "chr1\t1\t" + rest, line + 399
    url = local_store.put(f"bad-{codec}.vcf", encode(text.encode(), codec))
    with pytest.raises(InvalidFormatError, match=message) as info:
        CloudObject.from_url(VCF, url).preprocess(force=True, chunk_size=97)
    assert info.value.line == line and info.value.offset is not None
    if "header" not in message and "VCF" not in message and "CHROM" not in message and "FORMAT" not in message:
        assert text.count("\n", 0, info.value.offset) + 1 == line


def test_on_s3_and_the_original_api(store):
    text = make_vcf(400, seed=11)
    header, lines = split(text)
    url = store.put("calls.vcf.gz", gzip.compress(text.encode()))
    if store.kind == "s3":
        bucket, key = url[len("s3://") :].split("/", 1)
        s3_config = {"endpoint_url": store.options["endpoint_url"], "region_name": "eu-west-1", "credentials": {"AccessKeyId": "testing", "SecretAccessKey": "testing"}}
        co = CloudObject.from_s3(VCF, f"s3://{bucket}/{key}", s3_config=s3_config)
    else:
        co = CloudObject.from_url(VCF, url)
    co.preprocess()
    slices = co.partition(partition_num_chunks, num_chunks=4)
    assert all(s.get().startswith(header) for s in slices)
    assert sum((s.get()[len(header) :].splitlines() for s in slices), []) == lines
    assert sum((s.records() for s in co.partition(partition_regions, ["chr10", "chr1:100-20000"])), []) == [
        line for line in lines if line.startswith("chr10\t")
    ] + [line for line in lines if line.startswith("chr1\t") and int(line.split("\t")[1]) <= 20000 and _last(line) >= 100]


def _last(line: str) -> int:
    """The last position a record covers, computed independently: REF length, or INFO END=."""
    f = line.split("\t")
    ends = [int(item[4:]) for item in f[7].split(";") if item.startswith("END=")]
    return ends[0] if ends else int(f[1]) + len(f[3]) - 1


@pytest.fixture(scope="session")
def big_vcf(tmp_path_factory):
    """A ≥ 64 MiB sorted VCF without samples, generated with numpy, and its record lines."""
    rng = np.random.default_rng(5)
    n = 1_100_000
    chrom = np.repeat(["chr1", "chr2", "chr3"], [500_000, 400_000, 200_000])
    pos = np.concatenate([np.sort(rng.integers(1, 10**8, k)) for k in (500_000, 400_000, 200_000)])
    refs = np.where(rng.random(n) < 0.01, "ACGTACGTACGTACGTACGT", "A")
    rows = zip(chrom.tolist(), pos.tolist(), refs.tolist())
    body = "\n".join(f"{c}\t{p}\trs{i}\t{r}\tG\t50\tPASS\tDP=10;AF=0.5;XYZ=abcdefghijklmnopq" for i, (c, p, r) in enumerate(rows))
    text = "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n" + body + "\n"
    path = tmp_path_factory.mktemp("bigvcf") / "big.vcf"
    path.write_text(text)
    assert path.stat().st_size >= 64 * 2**20
    return str(path), text


@pytest.mark.parametrize("codec", ["none", "gzip"])
def test_large_file_at_default_settings(big_vcf, codec):
    path, text = big_vcf
    header, lines = split(text)
    if codec == "gzip":
        path += ".gz"
        with open(path, "wb") as fh:
            fh.write(gzip.compress(text.encode(), 1))
    co = CloudObject.from_url(VCF, path)
    co.preprocess(force=True)
    assert co.attributes.records == len(lines) and co.attributes.sorted and co.attributes.chromosomes == 3
    slices = co.partition(partition_num_chunks, 7)
    assert sum(s.to_arrow(columns=["POS"]).num_rows for s in slices) == len(lines)
    assert "".join(s.get()[len(header) :] for s in slices) == text[len(header) :]
    (piece,) = co.partition(partition_regions, ["chr2:50000000-50100000"])
    in_region = [line for line in lines if line.startswith("chr2\t") and int(line.split("\t")[1]) <= 50_100_000 and _last(line) >= 50_000_000]
    assert piece.records() == in_region


# -- the long-lived reader and region sets ------------------------------------------------------------------


def seeded_regions(tabix, seed: int, count: int, longest: int = 5000) -> list[str]:
    """Seeded regions over the contigs tabix knows: whole contigs, open-ended ones, points and spans up to
    ``longest`` bases, some past a contig's last record."""
    rng = np.random.default_rng(seed)
    contigs = sorted(tabix.contigs)
    out = []
    for _ in range(count):
        chrom, kind = str(rng.choice(contigs)), rng.random()
        top = max(int(line.split("\t")[1]) for line in tabix.fetch(chrom)) + 2000
        beg = int(rng.integers(1, top))
        out.append(chrom if kind < 0.03 else f"{chrom}:{beg}" if kind < 0.06 else f"{chrom}:{beg}-{beg + int(rng.integers(0, longest))}")
    return out


@pytest.mark.parametrize("codec", ["plain", "gzip", "bgzf-htslib"])
def test_reader_records_equal_tabix(local_store, tabixed, codec):
    """300 seeded regions, one call each, through ``co.reader()`` (``records``, ``region`` with pysam's 0-based
    half-open arguments, ``records_many``, ``table``) and through the object's kept reader (``records(co, ...)``), and
    regions only the tail of a long REF or an ``END=`` reaches, against tabix. Every codec unit is decoded
    once per reader."""
    text, bgzf_path, tabix = tabixed
    data = {"plain": text.encode(), "gzip": gzip.compress(text.encode(), 1)}.get(codec) or Path(bgzf_path).read_bytes()
    co = CloudObject.from_url(VCF, local_store.put(f"reader-{codec}.vcf", data))
    co.preprocess(sample_bytes=2048, spacing=16_384)
    regions = seeded_regions(tabix, 17, 300)
    regions += [f"{line.split(chr(9))[0]}:{_last(line)}-{_last(line)}" for line in split(text)[1] if _last(line) > int(line.split("\t")[1]) + 100][:30]
    expected = [list(tabix.fetch(region=r)) for r in regions]
    assert sum(map(len, expected)) > 500 and sum(1 for e in expected if not e) > 2
    with co.reader() as r:
        assert isinstance(r, RegionReader)
        assert [r.records(region) for region in regions] == expected
        assert r.decodes <= co.attributes.checkpoints
        assert r.records_many(regions[::-1]) == expected[::-1]
        for region in regions[:60]:
            name, _, span = region.partition(":")
            beg, _, end = span.partition("-")
            start, stop = (int(beg) - 1 if beg else None), (int(end) if end else None)
            assert r.region(name, start, stop) == list(tabix.fetch(name, start, stop)), region
        for region, lines in list(zip(regions, expected))[:20]:
            assert r.table(region).to_pydict() == expected_table(lines, SAMPLES), region
        assert r.table(regions[0], columns=["POS", "NA2"]).column_names == ["POS", "NA2"]
        with pytest.raises(StrategyArgumentError, match="no chromosome 'chrX'"):
            r.records("chrX:1-100")
    assert [vcf.records(co, region) for region in regions] == expected


@pytest.mark.parametrize("codec", ["plain", "bgzf-htslib"])
def test_a_changed_object_is_refused_while_a_reader_is_open(store, tabixed, codec):
    """A reader checks the object's identity (``check_interval=0``: before every read; on S3 each request is
    pinned to the indexed ETag): an object replaced while a reader is open is refused, not read by a stale
    index."""
    text, bgzf_path, tabix = tabixed
    data = text.encode() if codec == "plain" else Path(bgzf_path).read_bytes()
    url = store.put(f"changing-{codec}.vcf", data)
    co = CloudObject.from_url(VCF, url, store.options).preprocess(progress=False, sample_bytes=2048)
    with co.reader(check_interval=0) as r:
        assert r.records("chr1:1-3000") == list(tabix.fetch(region="chr1:1-3000"))
        store.put(f"changing-{codec}.vcf", data + data[-28:])  # one more (empty) BGZF member, or a repeated line
        with pytest.raises(StaleIndexError):
            r.records("chr10:1-30000")


def test_a_reader_refuses_re_signed_block_summaries(local_store, tabixed):
    """Block summaries shifted and re-signed by anyone who can write the index's folder are refused, when the
    index loads (a block reaching further than it covers) or where a block is read (its first record is not
    the one the index names), never giving other records."""
    from dataplug import CorruptIndexError
    from dataplug.testing.sidecar import npy, resign

    text, _, tabix = tabixed
    url = local_store.put("resigned.vcf", text.encode())
    co = CloudObject.from_url(VCF, url).preprocess(progress=False, sample_bytes=2048)
    start = co.index().tables["vcf_block_start"]
    regions = seeded_regions(tabix, 5, 40)
    for shift in (1000, 1):
        resign(co.index_location, "tables", "vcf_block_start", npy(start + shift))
        with pytest.raises(CorruptIndexError, match="block summary|reach further"), CloudObject.from_url(VCF, url).reader() as r:
            [r.records(region) for region in regions]


def test_a_region_set_on_s3_is_few_requests(fault_proxy, s3_options, tmp_path):
    """1,000 regions of 1-50 kb in one ``partition_regions`` call on the moto server, every slice read in one
    process: their byte ranges planned together with S3's gap make at most 100 requests, index and identity
    included (each group of near slices is fetched once, each BGZF member decoded once), and the records
    are tabix's. The slices stay independent: a pickled one reads the same records alone."""
    pysam = reference()
    plain = tmp_path / "set.vcf"
    plain.write_bytes(large_vcf(30_000, seed=9, samples=20))
    path = pysam.tabix_index(str(plain), preset="vcf", force=True)
    url = f"s3://{make_bucket(s3_options)}/set.vcf.gz"
    with open(path, "rb") as fh, fsspec.open(url, "wb", **s3_options) as out:
        out.write(fh.read())
    options = proxied_options(s3_options, fault_proxy)
    CloudObject.from_url(VCF, url, options).preprocess(progress=False)
    rng = np.random.default_rng(21)
    tops = {c: min(n, 50_000_000) for c, n in CONTIGS.items()}
    starts = [(str(c), int(rng.integers(1, tops[str(c)]))) for c in rng.choice(list(CONTIGS)[:4], 1000)]
    regions = [f"{c}:{b}-{b + int(rng.integers(1_000, 50_000))}" for c, b in starts]
    clear_shared()
    fault_proxy.set_mode(None)
    slices = CloudObject.from_url(VCF, url, options).partition(partition_regions, regions)
    got = [piece.records() for piece in slices]
    requests = [f"{r.method} {r.headers.get('Range', '')}" for r in fault_proxy.requests]
    tabix = pysam.TabixFile(path)
    expected = [list(tabix.fetch(region=r)) for r in regions]
    assert got == expected and sum(map(len, got)) > 1000
    print(f"{len(regions)} regions in one partition_regions call on S3: {len(requests)} requests ({sum(1 for r in requests if 'bytes=' in r)} ranged)")
    assert len(requests) <= 100, requests
    clear_shared()
    assert pickle.loads(pickle.dumps(slices[7])).records() == expected[7]


# -- the conformance kit ------------------------------------------------------------------------------------

CONTIGS = {"chr1": 248_956_422, "chr2": 242_193_529, "chr10": 133_797_422, "chrX": 156_040_895, "chrUn_KI270742v1": 186_739}
META = (
    "##fileformat=VCFv4.2\n##source=dataplug-tests\n"
    + "".join(f"##contig=<ID={c},length={n}>\n" for c, n in CONTIGS.items())
    + '##INFO=<ID=DP,Number=1,Type=Integer,Description="Depth">\n##INFO=<ID=AF,Number=A,Type=Float,Description="Allele frequency">\n'
    + '##INFO=<ID=SVTYPE,Number=1,Type=String,Description="SV type">\n##INFO=<ID=END,Number=1,Type=Integer,Description="End">\n'
    + '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n##FORMAT=<ID=DP,Number=1,Type=Integer,Description="Depth">\n'
    + '##FORMAT=<ID=GQ,Number=1,Type=Integer,Description="Genotype quality">\n'
)


def realistic_vcf(records: int, seed: int, samples: tuple[str, ...] = ("HG002", "HG003", "HG004"), odd: bool = True) -> bytes:
    """A sorted VCF shaped like a joint call set: five contigs, SNVs, indels, multi-allelic sites, symbolic
    deletions with ``END=``, missing QUAL and genotypes, unique IDs; with ``odd``, records htslib reads
    although their columns differ from the #CHROM line's (a trailing tab, a column after the samples, no
    FORMAT)."""
    rng = np.random.default_rng(seed)
    fixed = "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"
    lines = [META + fixed + ("\tFORMAT\t" + "\t".join(samples) if samples else "")]
    per = rng.multinomial(records, [0.4, 0.3, 0.15, 0.1, 0.05])
    bases = np.array(list("ACGT"))
    n = 0
    for (chrom, length), count in zip(CONTIGS.items(), per):
        for pos in np.sort(rng.integers(1, min(length, 5_000_000), count)).tolist():
            kind = rng.random()
            ref = "".join(rng.choice(bases, int(rng.integers(2, 40)))) if kind < 0.1 else str(rng.choice(bases))
            alt = ",".join(sorted({str(b) for b in rng.choice(bases, 2)} - {ref})) or "N"
            info = f"DP={int(rng.integers(5, 300))};AF={rng.random():.3f}"
            if kind > 0.97:
                alt, info = "<DEL>", f"SVTYPE=DEL;END={pos + int(rng.integers(50, 20_000))};DP={int(rng.integers(5, 300))}"
            qual = "." if kind < 0.05 else f"{rng.random() * 1000:.2f}"
            calls = [
                "./." if rng.random() < 0.05 else f"{rng.integers(0, 2)}/{rng.integers(0, 2)}:{rng.integers(0, 99)}:{rng.integers(0, 99)}"
                for _ in samples
            ]
            row = [chrom, str(pos), f"rs{seed}_{n}", ref, alt, qual, "PASS" if kind > 0.1 else "LowQual", info]
            if samples:
                row += ["GT:DP:GQ", *calls]
            line = "\t".join(row)
            if odd and n % 97 == 5:
                line += "\t"
            elif odd and n % 97 == 50:
                line += "\textra"
            elif odd and samples and n % 97 == 80:
                line = "\t".join(row[:8])
            lines.append(line)
            n += 1
    return ("\n".join(lines) + "\n").encode()


def vcf_rows(path: Path) -> list[tuple]:
    """(CHROM, POS, ID, REF, ALT) of every record: pysam (htslib) when installed, else a plain parse."""
    try:
        import pysam
    except ImportError:
        records = [line.split("\t") for line in path.read_text().splitlines() if line and not line.startswith("#")]
        return [(r[0], int(r[1]), r[2], r[3], r[4]) for r in records]
    with pysam.VariantFile(str(path)) as vcf:
        return [(r.chrom, r.pos, r.id or ".", r.ref, ",".join(r.alts) if r.alts else ".") for r in vcf]


class TestVCFConformance(FormatTests):
    format = "VCF"
    codecs = ("plain", "gzip", "bgzf", "zstd", "bzip2")
    dump_suffix = ".vcf"

    def samples(self) -> dict[str, dict[str, bytes]]:
        return {
            "calls": {"calls.vcf": realistic_vcf(4000, seed=1)},
            "sites": {"sites.vcf": realistic_vcf(60, seed=2, samples=())},
            "one_sample": {"one.vcf": realistic_vcf(5, seed=3, samples=("NA12878",))},
            "header_only": {"empty.vcf": realistic_vcf(0, seed=4)},
        }

    def oracle(self, path: Path) -> list[tuple]:
        return vcf_rows(path)

    def rows(self, table: pa.Table) -> list[tuple]:
        return list(zip(*(table[c].to_pylist() for c in ("CHROM", "POS", "ID", "REF", "ALT"))))

    def read_dump(self, path: Path) -> list[tuple]:
        reference()  # a dump is checked by htslib only
        return vcf_rows(path)

    def large(self, folder: Path) -> tuple[str, int]:
        records = 560_000
        (folder / "large.vcf").write_bytes(large_vcf(records, seed=5, samples=6))
        return "large.vcf", records


def large_vcf(records: int, seed: int, samples: int) -> bytes:
    """:func:`realistic_vcf`'s shape drawn with numpy, for tens of MiB in seconds: SNVs, multi-allelic
    sites, indels, deletions with ``END=``, missing QUAL and genotypes, a trailing tab now and then."""
    rng = np.random.default_rng(seed)
    names = [f"S{i + 1}" for i in range(samples)]
    chrom = np.repeat(list(CONTIGS), rng.multinomial(records, [0.4, 0.3, 0.15, 0.1, 0.05]))
    pos = np.concatenate([np.sort(rng.integers(1, min(n, 50_000_000), int((chrom == c).sum()))) for c, n in CONTIGS.items()])
    kind = rng.random(records)
    ref = np.where(kind < 0.1, "ACGTTGCA", np.array(list("ACGT"))[rng.integers(0, 4, records)])
    alt = np.where(kind < 0.1, "A", np.where(kind > 0.9, "C,T", "G"))
    alt = np.where(kind > 0.97, "<DEL>", alt)
    end = pos + rng.integers(50, 20_000, records)
    dp, af = rng.integers(5, 300, records), rng.random(records)
    qual = rng.random(records) * 1000
    gt = np.array(["0/0", "0/1", "1/1", "./."])[rng.integers(0, 4, (records, samples))]
    gq = rng.integers(0, 99, (records, samples))
    fixed = "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(names)
    lines = [META + fixed]
    columns = (chrom, pos, ref, alt, kind, end, dp, af, qual)
    for i, (c, p, r, a, k, e, d, f, q) in enumerate(zip(*(column.tolist() for column in columns))):
        info = f"SVTYPE=DEL;END={e};DP={d}" if k > 0.97 else f"DP={d};AF={f:.3f}"
        calls = "\t".join(f"{g}:{d}:{s}" for g, s in zip(gt[i].tolist(), gq[i].tolist()))
        line = f"{c}\t{p}\trs{i}\t{r}\t{a}\t{'.' if k < 0.05 else f'{q:.2f}'}\tPASS\t{info}\tGT:DP:GQ\t{calls}"
        lines.append(line + "\t" if i % 997 == 5 else line)
    return ("\n".join(lines) + "\n").encode()
