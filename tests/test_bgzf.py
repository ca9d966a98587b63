"""BGZF: every member start is a checkpoint, stored as two small per-member tables; a range reads only the
members it needs; the pass walks the member headers (or takes a .gzi) and maps over runs of members; the
.fai/.gzi stay byte-identical to samtools'; a crafted member table is a CorruptIndexError."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dataplug import CloudObject, CorruptIndexError, InvalidFormatError
from dataplug.codecs import get_codec
from dataplug.codecs.base import CodecIndex
from dataplug.codecs.bgzf import BLOCK_SIZES, DECODED_SIZES, gzi_bytes
from dataplug.formats.generic.text import UTF8Text, partition_num_chunks
from dataplug.formats.genomics.fasta import FASTA, region, write_fai
from dataplug.formats.genomics.fasta import partition_num_chunks as fasta_chunks
from dataplug.framings.base import codec_index, readers
from dataplug.storage import read_stats
from dataplug.testing.codecs import BGZF_EOF, bgzf
from tests.test_fasta import joined, make_fasta

try:
    import pysam
except ImportError:  # pragma: no cover - pysam is the oracle, not a dependency
    pysam = None


def needs_pysam() -> None:
    if pysam is None:
        pytest.skip("pysam (the samtools/htslib oracle) is not installed")


def member_starts(compressed: bytes) -> list[tuple[int, int]]:
    """(offset, bytes) of every member, from the headers (the test's own walk, independent of dataplug's)."""
    out, pos = [], 0
    while pos < len(compressed):
        size = int.from_bytes(compressed[pos + 16 : pos + 18], "little") + 1
        out.append((pos, size))
        pos += size
    return out


@pytest.fixture(scope="module")
def big_fasta() -> tuple[bytes, bytes, list[tuple[str, str, str]]]:
    """About 20 MB of FASTA, bgzipped (level 1, for speed) in 64 KiB members."""
    data, records = make_fasta([6_000_000, 9_000_000, 4_000_000, 50_000], [60, 70], seed=5)
    return data, bgzf(data, level=1)[0], records


@pytest.mark.parametrize("kind", ["local_store", "s3_store"])
def test_every_member_is_a_checkpoint_and_a_region_reads_only_its_members(request, kind, big_fasta):
    store = request.getfixturevalue(kind)
    data, compressed, records = big_fasta
    url = store.put("big.fa.gz", compressed)
    co = CloudObject.from_url(FASTA, url, store.options).preprocess(progress=False)
    members = member_starts(compressed)
    nonempty = members[:-1]  # all but the EOF marker
    assert co.attributes.checkpoints == len(nonempty) > 250
    table = get_codec("bgzf").checkpoints(co.url, codec_index(co), len(compressed))
    assert table.compressed[:-1].tolist() == [c for c, _ in nonempty] and table.logical[-1] == len(data)
    codec_bytes = sum(co.index().tables[name].nbytes for name in (BLOCK_SIZES, DECODED_SIZES))
    assert codec_bytes == 6 * len(members) and codec_bytes <= 0.0005 * len(compressed)

    sizes = dict(members)
    rng = np.random.default_rng(7)
    for _ in range(5):
        name, _, seq = records[int(rng.integers(0, 3))]
        a = int(rng.integers(0, len(seq) - 2000))
        read_stats.reset()
        assert region(co, name, a, a + 2000) == seq[a : a + 2000]
        assert read_stats.requests[co.url] == 1
        assert read_stats.bytes[co.url] <= max(sizes.values()) * 2  # at most the two members holding the range
    reader = readers(co)
    for start in rng.integers(0, len(data) - 2048, 20).tolist():
        r = reader(start, start + 2048)
        covered = [c for c, _ in nonempty if r.fetch.start <= c < r.fetch.end]
        assert 1 <= len(covered) <= 2 and r.read() == data[start : start + 2048]


def test_pass_with_and_without_a_gzi_agree_and_the_gzi_is_samtools(local_store, big_fasta, tmp_path):
    """Without a .gzi the member headers are walked; with samtools' .gzi beside the object the pass takes
    the member starts from it. The same index either way, and a .gzi written from the index needs no read."""
    needs_pysam()
    _, compressed, records = big_fasta
    path = local_store.put("g.fa.gz", compressed)
    walked = CloudObject.from_url(FASTA, path, index_location=str(tmp_path / "walked")).preprocess(chunk_size=2 * 2**20, progress=False)
    pysam.faidx(path)
    read_stats.reset()
    assert gzi_bytes(path, codec_index(walked), len(compressed)) == Path(path + ".gzi").read_bytes()
    assert read_stats.requests.get(walked.url, 0) == 0
    adopted = CloudObject.from_url(FASTA, path).preprocess(chunk_size=2 * 2**20, progress=False)
    assert adopted.attributes == walked.attributes
    for name in (BLOCK_SIZES, DECODED_SIZES):
        assert np.array_equal(adopted.index().tables[name], walked.index().tables[name])
    assert joined(adopted.partition(fasta_chunks, 7)) == records
    wrong = bytearray(Path(path + ".gzi").read_bytes())
    wrong[8 + 16 * 3 + 8] ^= 1  # the decoded offset of the fourth entry
    Path(path + ".wrong.gzi").write_bytes(bytes(wrong))
    with pytest.raises(InvalidFormatError, match=r"\.gzi index does not match the object: .*wrong\.gzi"):
        CloudObject.from_url(FASTA, path).preprocess(gzi=path + ".wrong.gzi", force=True, progress=False)
    write_fai(adopted, path + ".ours.fai")
    for ext in ("fai", "gzi"):
        assert Path(f"{path}.ours.{ext}").read_bytes() == Path(f"{path}.{ext}").read_bytes()


def test_concatenated_bgzf_files_and_zero_padding(local_store):
    """``cat a.gz b.gz`` puts an empty EOF member in the middle: it is read with the member before it, and
    the .gzi leaves it out as htslib does. Zero bytes after the last member are padding; anything else is
    an error naming its offset."""
    needs_pysam()
    lines = [b"line %06d %s\n" % (i, b"x" * (i % 50)) for i in range(40_000)]
    first, second = b"".join(lines[:25_000]), b"".join(lines[25_000:])
    joined_bytes = bgzf(first, block=30_000)[0] + bgzf(second, block=30_000)[0]
    path = local_store.put("cat.txt.gz", joined_bytes)
    co = CloudObject.from_url(UTF8Text, path).preprocess(chunk_size=200_000, progress=False)
    assert "".join(s.get() for s in co.partition(partition_num_chunks, 9)).encode() == first + second
    assert co.attributes.checkpoints == len(member_starts(joined_bytes)) - 2
    fasta = b">a\n" + b"ACGT" * 30_000 + b"\n"
    cat = bgzf(fasta[:70_000])[0] + bgzf(fasta[70_000:])[0]
    fa = local_store.put("cat.fa.gz", cat)
    fco = CloudObject.from_url(FASTA, fa).preprocess(progress=False)
    pysam.faidx(fa)
    assert gzi_bytes(fa, codec_index(fco), len(cat)) == Path(fa + ".gzi").read_bytes()
    assert region(fco, "a", 69_990, 70_010) == (b"ACGT" * 30_000)[69_986:70_006].decode()

    padded = local_store.put("pad.txt.gz", joined_bytes + bytes(100))
    co = CloudObject.from_url(UTF8Text, padded).preprocess(progress=False)
    assert "".join(s.get() for s in co.partition(partition_num_chunks, 3)).encode() == first + second
    bad = local_store.put("bad.txt.gz", joined_bytes + bytes(10) + b"junk")
    with pytest.raises(InvalidFormatError) as err:
        CloudObject.from_url(UTF8Text, bad).preprocess(progress=False)
    assert err.value.offset is not None and err.value.offset >= len(joined_bytes)
    truncated = local_store.put("cut.txt.gz", joined_bytes[: len(joined_bytes) - len(BGZF_EOF) - 100])
    with pytest.raises(InvalidFormatError, match="truncated BGZF member"):
        CloudObject.from_url(UTF8Text, truncated).preprocess(progress=False)


def test_crafted_member_tables_are_corrupt_index_errors(local_store):
    data = b"".join(b"row %d\n" % i for i in range(50_000))
    compressed = bgzf(data, block=20_000)[0]
    co = CloudObject.from_url(UTF8Text, local_store.put("t.txt.gz", compressed)).preprocess(progress=False)
    codec, size = get_codec("bgzf"), len(compressed)
    tables = {name: np.asarray(co.index().tables[name]) for name in (BLOCK_SIZES, DECODED_SIZES)}
    assert codec.validate(co.url, tables, {}, size, len(data)) == len(data)

    def crafted(name: str, change) -> dict[str, np.ndarray]:
        out = {k: v.astype(np.int64) for k, v in tables.items()}
        out[name] = change(out[name])
        return out

    cases = [
        (crafted(BLOCK_SIZES, lambda a: a[:-1]), len(data), "block size and one decoded size"),
        (crafted(BLOCK_SIZES, lambda a: np.where(np.arange(a.size) == 1, 70_000, a)), len(data), "at most 64 KiB"),
        (crafted(BLOCK_SIZES, lambda a: a + 1), len(data), "end past the object"),
        (crafted(DECODED_SIZES, lambda a: a + 1), len(data), "do not add up"),
        (
            crafted(DECODED_SIZES, lambda a: np.where(np.arange(a.size) == 0, 10**9, a)),
            10**9 + len(data) - int(tables[DECODED_SIZES][0]),
            "more decoded bytes",
        ),
        ({BLOCK_SIZES: tables[BLOCK_SIZES]}, len(data), "missing"),
        (tables, len(data) + 1, "do not add up"),
    ]
    for bad, logical, why in cases:
        with pytest.raises(CorruptIndexError, match=why):
            codec.validate(co.url, bad, {}, size, logical)
    # Tables that pass every check at load but are shifted: a read is refused, never shifted data.
    first = int(tables[DECODED_SIZES][0])
    for name, change in (
        (DECODED_SIZES, lambda a: a + np.where(np.arange(a.size) == 0, 5, np.where(np.arange(a.size) == 1, -5, 0))),
        (BLOCK_SIZES, lambda a: a + np.where(np.arange(a.size) == 0, 3, np.where(np.arange(a.size) == 1, -3, 0))),
    ):
        shifted = crafted(name, change)
        codec.validate(co.url, shifted, {}, size, len(data))
        reader = codec.readers(co.obj, co.index().object_info, CodecIndex("bgzf", len(data), shifted))
        with pytest.raises(CorruptIndexError, match="BGZF member index does not match"):
            reader(first + 10, first + 20).read()


def test_an_index_of_the_gzip_pass_still_reads(local_store):
    """``compression="gzip"`` on a BGZF object runs the sequential gzip pass (sparse checkpoints, windows
    blob): the index it writes is still read, by the gzip readers."""
    data = b"".join(b"entry %d\n" % i for i in range(60_000))
    url = local_store.put("g.txt.gz", bgzf(data, block=10_000)[0])
    co = CloudObject.from_url(UTF8Text, url).preprocess(compression="gzip", spacing=100_000, progress=False)
    assert co.attributes.compression == "bgzf" and BLOCK_SIZES not in co.index().tables
    fresh = CloudObject.from_url(UTF8Text, url)
    assert "".join(s.get() for s in fresh.partition(partition_num_chunks, 5)).encode() == data
