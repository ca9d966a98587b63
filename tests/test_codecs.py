"""Codecs x framings: text, CSV and FASTQ over plain, gzip (one member or many) and BGZF, detected from
the bytes; every record exactly once for every slice count, against an oracle that never uses dataplug."""

from __future__ import annotations

import bz2
import gzip
import io
import re
import warnings
import zlib

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataplug import CloudObject, DataplugWarning, InvalidFormatError, StrategyArgumentError
from dataplug.codecs import detect_codec
from dataplug.codecs.bgzf import BLOCK_SIZES, DECODED_SIZES
from dataplug.formats.compressed.gzipped import GZipText
from dataplug.formats.generic.csv import CSV, partition_chunk_size, partition_rows
from dataplug.formats.generic.csv import partition_num_chunks as csv_chunks
from dataplug.formats.generic.text import UTF8Text, partition_chunk_lines, whole_words_strategy
from dataplug.formats.generic.text import partition_num_chunks as text_chunks
from dataplug.formats.genomics.fastq import FASTQ, FASTQGZip, partition_reads_batches
from dataplug.formats.genomics.vcf import VCF, partition_num_chunks as vcf_chunks
from dataplug.framings.lines import CheckpointSpacingWarning
from dataplug.testing.codecs import encode as encode_for_kit
from tests.codec_cases import SLOW, every_line_once, every_read_once, every_row_once, fastq_oracle
from tests.test_csv import csv_files
from dataplug.testing.data import make_fastq
from dataplug.testing.codecs import bgzf, gzip_member
from tests.test_text import TEXT, expected_lines
from dataplug.testing.codecs import seekable

CODECS = ["none", "gzip", "gzip-members", "bgzf"]


def encode(data: bytes, codec: str, seed: int = 0) -> bytes:
    """``data`` as stored under ``codec``. gzip ends a deflate block, bit-unaligned, every few dozen bytes,
    so small inputs still get many checkpoints; members are cut at random places (some may be empty)."""
    if codec == "none":
        return data
    if codec == "gzip":
        return gzip_member(data, 6, flush=zlib.Z_BLOCK, every=37 + seed % 50)
    if codec == "bgzf":
        return bgzf(data, block=max(1, len(data) // 5 + 1))[0]
    rng = np.random.default_rng(seed)
    cuts = sorted(int(x) for x in rng.integers(0, len(data) + 1, 3))
    bounds = [0, *cuts, len(data)]
    return b"".join(gzip.compress(data[a:b]) for a, b in zip(bounds, bounds[1:]))


def stored(store, name: str, data: bytes, codec: str, seed: int = 0) -> str:
    return store.put(f"{name}.{codec}", encode(data, codec, seed))


@SLOW
@given(text=TEXT, codec=st.sampled_from(CODECS), spacing=st.sampled_from([16, 64, 4096]), chunk_size=st.integers(1, 60), seed=st.integers(0, 99))
def test_text_every_line_once_over_every_codec(local_store, text, codec, spacing, chunk_size, seed):
    data = text.encode()
    co = CloudObject.from_url(UTF8Text, stored(local_store, f"t{len(data)}-{spacing}-{chunk_size}-{seed}", data, codec, seed))
    co.preprocess(force=True, spacing=spacing, chunk_size=chunk_size, sample_bytes=7)
    assert co.attributes.compression == ("gzip" if codec.startswith("gzip") else codec)
    lines = expected_lines(text)
    assert co.attributes.lines == len(lines) and co.attributes.uncompressed_size == len(data)
    every_line_once(co, text, lines)


@SLOW
@given(file=csv_files(), codec=st.sampled_from(CODECS), spacing=st.sampled_from([16, 64, 4096]), chunk_size=st.integers(1, 60), seed=st.integers(0, 99))
def test_csv_every_row_once_over_every_codec(local_store, file, codec, spacing, chunk_size, seed):
    data, nrows, ncols = file
    co = CloudObject.from_url(CSV, stored(local_store, f"c{len(data)}-{spacing}-{chunk_size}-{seed}", data, codec, seed))
    co.preprocess(force=True, spacing=spacing, chunk_size=chunk_size, sample_bytes=5)
    assert co.attributes.rows == nrows
    every_row_once(co, data, nrows, ncols)


@SLOW
@given(
    reads=st.one_of(st.integers(0, 30), st.integers(31, 200)),
    codec=st.sampled_from(CODECS),
    spacing=st.sampled_from([64, 512, 8192]),
    chunk_size=st.integers(16, 3000),
    seed=st.integers(0, 2**16),
    trailing_newline=st.booleans(),
)
def test_fastq_every_read_once_over_every_codec(local_store, reads, codec, spacing, chunk_size, seed, trailing_newline):
    data = make_fastq(reads, seed)
    if not trailing_newline and data:
        data = data[:-1]
    co = CloudObject.from_url(FASTQ, stored(local_store, f"q{reads}-{seed}-{spacing}-{chunk_size}", data, codec, seed))
    co.preprocess(force=True, spacing=spacing, chunk_size=chunk_size, sample_bytes=97)
    assert co.attributes.reads == reads
    expected = fastq_oracle(data)
    every_read_once(co, expected, range(1, reads + 3) if reads <= 30 else sorted({1, 2, 3, 7, reads + 2}))
    table = pa.concat_tables([s.to_arrow() for s in co.partition(partition_reads_batches, 3)])
    assert table.column("sequence").to_pylist() == [seq for _, seq, _ in expected]


@pytest.mark.parametrize("codec", CODECS)
def test_on_s3_every_codec(s3_store, codec):
    data = make_fastq(2000, 7)
    co = CloudObject.from_url(FASTQGZip, stored(s3_store, "r.fastq", data, codec), storage_options=s3_store.options)
    co.preprocess(spacing=20_000)
    assert [r for s in co.partition(partition_reads_batches, 9) for r in s.reads()] == fastq_oracle(data)


def test_codec_is_detected_from_bytes_not_the_name(local_store):
    text = b"".join(b"line %d\n" % i for i in range(1000))
    for codec in CODECS:
        co = CloudObject.from_url(UTF8Text, local_store.put(f"misleading-{codec}.txt", encode(text, codec)))
        co.preprocess()
        assert co.attributes.compression == ("gzip" if codec.startswith("gzip") else codec)
        assert "".join(s.get() for s in co.partition(text_chunks, 4)).encode() == text
    assert detect_codec(b"") == "none" and detect_codec(b"\x1f") == "none"


def test_csv_gz_and_bgzf_csv(local_store):
    rows = "".join(f'{i},"name {i}\nsecond line",{i * 0.5}\n' for i in range(3000))
    data = ("id,name,value\n" + rows).encode()
    whole = pacsv.read_csv(io.BytesIO(data), parse_options=pacsv.ParseOptions(newlines_in_values=True))
    for codec in ("gzip", "bgzf"):
        co = CloudObject.from_url(CSV, local_store.put(f"d.csv.{codec}", encode(data, codec)))
        co.preprocess(spacing=8192)
        assert co.attributes.compression == codec and co.attributes.rows == 3000
        assert pa.concat_tables([s.to_arrow() for s in co.partition(csv_chunks, 7)]).equals(whole)


@pytest.mark.parametrize(
    "fmt, data, forced, message",
    [
        (UTF8Text, gzip.compress(b"hello\n" * 100), "none", "gzip-compressed"),
        (CSV, b"a,b\n1,2\n", "gzip", "not gzip"),
        (FASTQ, gzip.compress(b"@r\nA\n+\nI\n"), "bgzf", "not BGZF"),
        (UTF8Text, b"text\n", "lz4", "unknown compression"),
    ],
)
def test_forced_compression_that_does_not_fit_is_a_clear_error(local_store, fmt, data, forced, message):
    co = CloudObject.from_url(fmt, local_store.put("x.bin", data))
    with pytest.raises(InvalidFormatError, match=message) as err:
        co.preprocess(compression=forced)
    assert co.url in str(err.value)


@pytest.mark.parametrize("fmt", [UTF8Text, CSV, FASTQ])
def test_binary_data_given_to_a_text_framing_names_its_offset(local_store, fmt):
    data = b"@r\nAC\n+\nII\n" + b"LASF\x00\x01\x02" * 10
    co = CloudObject.from_url(fmt, local_store.put("binary.las", data))
    with pytest.raises(InvalidFormatError, match="binary data") as err:
        co.preprocess()
    assert err.value.offset == 15


def test_truncated_member_names_its_offset(local_store):
    data = gzip.compress(b"".join(b"line %d\n" % i for i in range(20000)))
    co = CloudObject.from_url(UTF8Text, local_store.put("cut.txt.gz", data[: len(data) // 2]))
    with pytest.raises(InvalidFormatError, match="truncated") as err:
        co.preprocess()
    assert err.value.offset is not None


def test_strategies_resolve_through_the_format_hierarchy(local_store):
    assert {"partition_num_chunks", "partition_chunk_lines", "whole_words_strategy"} <= set(GZipText.all_strategies())
    assert {"partition_num_chunks", "partition_reads_batches", "partition_sequences_per_chunk"} <= set(FASTQGZip.all_strategies())
    assert "partition_chunk_lines" not in FASTQGZip.all_strategies()
    fq = CloudObject.from_url(FASTQ, local_store.put("r.fastq", make_fastq(50, 1)))
    fq.preprocess()
    with pytest.raises(StrategyArgumentError, match="is for UTF8Text"):
        fq.partition(text_chunks, 3)
    gz = CloudObject.from_url(GZipText, local_store.put("t.txt.gz", gzip.compress(b"a\nb\nc\n")))
    gz.preprocess()
    assert [s.get() for s in gz.partition(text_chunks, n_chunks=3)] == ["a\n", "b\n", "c\n"]


def gzi_of(data: bytes, block: int, starts: list[int]) -> bytes:
    """htslib's .gzi for a BGZF object: the (compressed, uncompressed) start of every member but the first."""
    pairs = [(c, i * block) for i, c in enumerate(starts)][1:]
    return len(pairs).to_bytes(8, "little") + b"".join(c.to_bytes(8, "little") + u.to_bytes(8, "little") for c, u in pairs)


@pytest.mark.parametrize("store_kind", ["local_store", "s3_store"])
def test_bgzf_with_a_gzi_is_indexed_like_without_it(request, store_kind, tmp_path):
    """Both passes are maps over runs of members: from the member headers walked, or from the .gzi."""
    store = request.getfixturevalue(store_kind)
    data = make_fastq(6000, 21)
    block = 9000
    compressed, starts = bgzf(data, block=block)
    url = store.put("r.fastq.bgz", compressed)
    walked = CloudObject.from_url(FASTQ, url, store.options, index_location=str(tmp_path / "walked"))
    walked.preprocess(spacing=20_000, chunk_size=50_000)
    store.put("r.fastq.bgz.gzi", gzi_of(data, block, starts))
    fast = CloudObject.from_url(FASTQ, url, store.options)
    fast.preprocess(spacing=20_000, chunk_size=50_000)
    assert fast.attributes == walked.attributes and fast.attributes.checkpoints == len(starts)
    for name in (BLOCK_SIZES, DECODED_SIZES):
        assert np.array_equal(fast.index().tables[name], walked.index().tables[name])
    for n in (1, 5, 17):
        assert [r for s in fast.partition(partition_reads_batches, n) for r in s.reads()] == fastq_oracle(data)


def test_a_gzi_that_does_not_fit_is_a_clear_error(local_store):
    data = b"".join(b"line %d\n" % i for i in range(20000))
    compressed, starts = bgzf(data, block=4000)
    url = local_store.put("t.txt.bgz", compressed)
    wrong = gzi_of(data, 4001, starts)
    local_store.put("t.txt.bgz.gzi", wrong)
    with pytest.raises(InvalidFormatError, match="gzi"):
        CloudObject.from_url(UTF8Text, url).preprocess(chunk_size=10_000, spacing=8000)
    local_store.put("t.txt.bgz.gzi", b"\x05\x00")
    with pytest.raises(InvalidFormatError, match="not a .gzi"):
        CloudObject.from_url(UTF8Text, url).preprocess()


def test_bgzf_block_with_a_bad_size_names_its_offset(local_store):
    data = b"".join(b"line %d\n" % i for i in range(30000))
    compressed, starts = bgzf(data, block=7000)
    bad = bytearray(compressed)
    bad[starts[2] + 16] ^= 1  # BSIZE of the third block, low byte
    co = CloudObject.from_url(UTF8Text, local_store.put("bad.txt.bgz", bytes(bad)))
    with pytest.raises(InvalidFormatError, match="bad BGZF block size") as err:
        co.preprocess()
    assert err.value.offset == starts[2]


def test_gzi_pass_edge_cases(local_store, tmp_path):
    """A look-ahead read that ends inside a member header, zero padding after the last member, and a .gzi
    entry whose decoded offset is wrong inside a run of members (found by review)."""
    data = b"".join(b"line %08d abcdefghijklmnopqrstuvwxyz\n" % i for i in range(40000))
    block = 26182  # stored members of 26,213 bytes: the 256 KiB look-ahead read ends 14 bytes into a header
    stored, starts = bgzf(data, level=0, block=block)
    for name, blob in (("split", stored), ("padded", stored + bytes(64))):
        url = local_store.put(f"{name}.txt.bgz", blob)
        local_store.put(f"{name}.txt.bgz.gzi", gzi_of(data, block, starts))
        co = CloudObject.from_url(UTF8Text, url)
        co.preprocess(spacing=block, chunk_size=block)
        assert "".join(s.get() for s in co.partition(text_chunks, 9)).encode() == data
    block = 37 * 700
    compressed, starts = bgzf(data, block=block)
    pairs = bytearray(gzi_of(data, block, starts))
    shifted = int.from_bytes(pairs[8 + 2 * 16 + 8 : 8 + 3 * 16], "little") + 41 * 100
    pairs[8 + 2 * 16 + 8 : 8 + 3 * 16] = shifted.to_bytes(8, "little")
    url = local_store.put("wrong.txt.bgz", compressed)
    local_store.put("wrong.txt.bgz.gzi", bytes(pairs))
    with pytest.raises(InvalidFormatError, match="gzi index does not match"):
        CloudObject.from_url(UTF8Text, url).preprocess(spacing=block, chunk_size=10**9, sample_bytes=4096)


# --- balanced slices where the codec's cuts are few (issue 19) ------------------------------------------


def make_vcf(size: int, samples: int = 20, seed: int = 0) -> bytes:
    """About ``size`` bytes of a sorted single-chromosome VCF with ``samples`` genotype columns (GT:GQ:DP),
    records of varied length; seeded, a few seconds for 40 MB."""
    rng = np.random.default_rng(seed)
    names = "\t".join(f"S{i}" for i in range(samples))
    header = (
        "##fileformat=VCFv4.2\n##contig=<ID=chr1,length=248956422>\n"
        '##INFO=<ID=DP,Number=1,Type=Integer,Description="Total depth">\n'
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n'
        '##FORMAT=<ID=GQ,Number=1,Type=Integer,Description="Genotype quality">\n'
        '##FORMAT=<ID=DP,Number=1,Type=Integer,Description="Read depth">\n'
        f"#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t{names}\n"
    )
    genotypes = ("0/0", "0/1", "1/1", "./.")
    cells = np.array([f"{g}:{q}:{d}" for g in genotypes for q in range(99) for d in range(60)], dtype=object)
    parts, total, pos = [header], len(header), 0
    while total < size:
        k = 10_000
        drawn = cells[rng.choice(4, (k, samples), p=[0.6, 0.25, 0.1, 0.05]) * 5940 + rng.integers(0, 5940, (k, samples))]
        positions = (pos + np.cumsum(rng.integers(1, 400, k))).tolist()
        pos = positions[-1]
        ref, alt = rng.integers(0, 4, k).tolist(), rng.integers(1, 4, k).tolist()
        qual, depth = rng.integers(10, 999, k).tolist(), rng.integers(1, 900, k).tolist()
        chunk = "".join(
            f"chr1\t{p}\trs{p}\t{'ACGT'[r]}\t{'ACGT'[(r + a) % 4]}\t{q}\tPASS\tDP={d}\tGT:GQ:DP\t{chr(9).join(c)}\n"
            for p, r, a, q, d, c in zip(positions, ref, alt, qual, depth, drawn.tolist())
        )
        parts.append(chunk)
        total += len(chunk)
    return "".join(parts).encode()


def make_csv(size: int, seed: int = 0) -> bytes:
    """About ``size`` bytes of CSV with a header, quoted fields (some holding newlines) and varied row lengths."""
    rng = np.random.default_rng(seed)
    words = np.array(["alpha", "beta", '"x, y"', '"two\nlines"', "", "gamma delta"], dtype=object)
    parts, total, i = ["id,station,temp,note\n"], 0, 0
    while total < size:
        k = 20_000
        temps, stations = rng.normal(15, 8, k).round(2).tolist(), rng.integers(0, 5000, k).tolist()
        notes = words[rng.integers(0, words.size, k)].tolist()
        chunk = "".join(f"{i + j},st{s},{t},{n}\n" for j, (s, t, n) in enumerate(zip(stations, temps, notes)))
        parts.append(chunk)
        total, i = total + len(chunk), i + k
    return "".join(parts).encode()


def records_per_slice(co, strategy, n: int) -> np.ndarray:
    counts = np.array([s.num_records for s in co.partition(strategy, n)])
    assert counts.size == n
    return counts


@pytest.fixture(scope="module")
def vcf_40mb() -> bytes:
    return make_vcf(37_000_000)


def test_gzip_vcf_of_10_mb_gives_balanced_slices_and_says_when_checkpoints_are_too_sparse(local_store, vcf_40mb):
    """A 10 MB VCF.gz (gzip, not BGZF) at default settings: checkpoints every 1.5 MiB, about 25 of them.
    Slices that all snapped to the nearest checkpoint held 6.4k to 12.8k records at 16 slices (mean 9.4k).
    At 64 slices the workers decode more before their slices than the slices hold: a warning names the
    spacing that fits, and an index built with it silences it."""
    gz = zlib.compressobj(1, zlib.DEFLATED, 31)
    url = local_store.put("balanced.vcf.gz", gz.compress(vcf_40mb) + gz.flush())
    co = CloudObject.from_url(VCF, url).preprocess()
    assert co.attributes.compression == "gzip" and 20 <= co.attributes.checkpoints <= 40
    for n in (7, 16, 32, 64):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            counts = records_per_slice(co, vcf_chunks, n)
        assert counts.sum() == co.attributes.records
        assert counts.max() <= 1.3 * counts.mean(), (n, counts)
        sparse = [w for w in caught if issubclass(w.category, CheckpointSpacingWarning)]
        if n != 32:  # at 32 slices, about half of what the slices hold: on the threshold
            assert len(sparse) == (n == 64), (n, [str(w.message) for w in caught])
    assert issubclass(CheckpointSpacingWarning, DataplugWarning)
    spacing = int(re.search(r"spacing=(\d+)", str(sparse[0].message)).group(1))
    co.preprocess(force=True, spacing=spacing)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CheckpointSpacingWarning)
        counts = records_per_slice(co, vcf_chunks, 64)
    assert counts.max() <= 1.3 * counts.mean()


@pytest.mark.parametrize("codec", ["gzip", "zstd", "bzip2"])
def test_line_formats_give_balanced_slices_over_every_codec(local_store, vcf_40mb, codec):
    """CSV, text, FASTQ and VCF over codecs whose cuts lie a few MiB apart (gzip checkpoints, zstd frames of
    4 MiB, bzip2 blocks of 900 kB): records per slice within 1.3 x the mean for N up to 64."""
    rng_fastq = make_fastq(40_000 if codec == "bzip2" else 120_000, 5)
    objects = {
        VCF: (vcf_40mb[: 12_000_000 if codec == "bzip2" else None], vcf_chunks),
        CSV: (make_csv(8_000_000 if codec == "bzip2" else 30_000_000), csv_chunks),
        UTF8Text: (make_csv(6_000_000, seed=1), text_chunks),
        FASTQ: (rng_fastq, partition_reads_batches),
    }
    for fmt, (data, strategy) in objects.items():
        data = data[: data.rfind(b"\n") + 1]
        if codec == "gzip":
            gz = zlib.compressobj(1, zlib.DEFLATED, 31)
            stored_bytes = gz.compress(data) + gz.flush()
        elif codec == "zstd":
            stored_bytes = seekable(data, 4 * 2**20)
        else:
            stored_bytes = bz2.compress(data, 9)
        co = CloudObject.from_url(fmt, local_store.put(f"balanced-{fmt.name}.{codec}", stored_bytes)).preprocess()
        assert co.attributes.compression == codec
        for n in (7, 16, 32, 64):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                counts = records_per_slice(co, strategy, n)
            assert counts.max() <= 1.3 * counts.mean(), (fmt.name, codec, n, counts)
            if fmt is VCF and n == 64 and codec != "bzip2":  # workers decode more than their slices hold: say how to fit them
                advice = {"gzip": "preprocess(force=True, spacing=", "zstd": "recompress in frames of about"}[codec]
                said = [str(w.message) for w in caught if issubclass(w.category, CheckpointSpacingWarning)]
                assert any(advice in message for message in said), said


TINY = {
    CSV: [b"", b"a,b\n", b"a,b", b"a,b\n\n\n", b"a,b\n1,2", b"\xef\xbb\xbfa,b\r\n1,2\r\n"],
    UTF8Text: [b"", b"\n", b"x", b"\n\n\n", b"\xef\xbb\xbf", b"\xef\xbb\xbfa\r\nb"],
}


@pytest.mark.parametrize("codec", ["plain", "gzip", "bgzf", "zstd", "bzip2"])
def test_every_strategy_takes_one_slice_and_more_slices_than_records_over_every_codec(local_store, codec):
    """Empty, header-only, blank-line and one-record objects: every CSV and text strategy at N = 1 and N past
    the records gives exact slices (empty ones at the end), whose counts are their Arrow rows."""
    strategies = {CSV: (csv_chunks, partition_rows, partition_chunk_size), UTF8Text: (text_chunks, partition_chunk_lines, whole_words_strategy)}
    for fmt, datas in TINY.items():
        for i, data in enumerate(datas):
            co = CloudObject.from_url(fmt, local_store.put(f"tiny{i}.{fmt.name}.{codec}", encode_for_kit(data, codec))).preprocess(progress=False)
            for strategy in strategies[fmt]:
                for n in (1, 2, 5):
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", DataplugWarning)
                        slices = co.partition(strategy, n)
                    if strategy in (csv_chunks, text_chunks, whole_words_strategy):
                        assert len(slices) == n
                    assert [s.num_records for s in slices] == [s.to_arrow().num_rows for s in slices], (data, strategy.__name__, n)
                    if fmt is UTF8Text:
                        assert "".join(s.get() for s in slices).encode() == data.removeprefix(b"\xef\xbb\xbf")
                    else:
                        assert data.endswith(b"".join(s.raw() for s in slices))
