"""FASTQ.gz and gzip text: every read (line) exactly once, from one checkpoint per worker."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataplug import CloudObject, InvalidFormatError, StaleIndexError, StrategyArgumentError
from dataplug.formats.compressed.gzipped import GZipText, partition_chunk_lines, partition_num_chunks
from dataplug.formats.genomics import fastq
from dataplug.formats.genomics.fastq import FASTQ, FASTQGZip, partition_reads_batches, partition_sequences_per_chunk
from dataplug.storage.object import read_stats
from dataplug.testing import FormatTests
from dataplug.testing.data import illumina_fastq, make_fastq

SLOW = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def compress(data: bytes, level: int, members: int) -> bytes:
    cuts = np.linspace(0, len(data), members + 1).astype(int)
    return b"".join(gzip.compress(data[a:b], compresslevel=level) for a, b in zip(cuts[:-1], cuts[1:]))


def check_reads(co: CloudObject, data: bytes, slices: list) -> None:
    lines = data.decode().splitlines()
    got = [line for s in slices for line in s.get()]
    assert got == lines
    for a, b in zip(slices, slices[1:]):
        assert a.stop == b.first
    for s in slices:
        assert s.first % 4 == 0
        if s.num_reads:
            assert s.get()[0].startswith("@")


@SLOW
@given(
    reads=st.one_of(st.integers(1, 40), st.integers(41, 300)),
    seed=st.integers(0, 2**16),
    level=st.sampled_from([1, 6, 9]),
    members=st.integers(1, 4),
    spacing=st.sampled_from([512, 2048, 8192]),
    trailing_newline=st.booleans(),
)
def test_every_read_exactly_once(local_store, reads, seed, level, members, spacing, trailing_newline):
    data = make_fastq(reads, seed)
    if not trailing_newline:
        data = data[:-1]
    url = local_store.put(f"r{reads}-{seed}-{level}-{members}-{spacing}.fastq.gz", compress(data, level, members))
    co = CloudObject.from_url(FASTQGZip, url)
    co.preprocess(force=True, spacing=spacing)
    assert co.attributes.reads == reads and co.attributes.lines == 4 * reads
    assert co.attributes.checkpoints >= 1
    counts = range(1, reads + 3) if reads <= 40 else sorted({1, 2, 3, reads, reads + 1, reads + 2} | set(range(1, 12)))
    for n in counts:  # every slice count for small inputs, a sample for large ones
        batches = co.partition(partition_reads_batches, n)
        assert len(batches) == n
        check_reads(co, data, batches)
        per_chunk = co.partition(partition_sequences_per_chunk, n)
        assert all(s.num_reads == n for s in per_chunk[:-1])
        check_reads(co, data, per_chunk)
    table = next(s for s in co.partition(partition_reads_batches, 2)).as_arrow()
    assert table.column_names == ["name", "sequence", "quality"]
    first = next(co.partition(partition_sequences_per_chunk, 1)[0].reads())
    assert first[0] == f"read0/{seed}" and len(first[1]) == len(first[2])


@SLOW
@given(text=st.text(st.sampled_from(list("ab\n é😀")), max_size=3000), spacing=st.sampled_from([64, 256, 1024]), members=st.integers(1, 3))
def test_gzip_text_lines(local_store, text, spacing, members):
    data = text.encode()
    url = local_store.put(f"t{len(data)}-{spacing}-{members}.txt.gz", compress(data, 6, members))
    co = CloudObject.from_url(GZipText, url)
    co.preprocess(force=True, spacing=spacing)
    lines = data.decode().split("\n")
    if data.endswith(b"\n") or not data:
        lines.pop()
    assert co.attributes.lines == len(lines)
    for n in range(1, min(len(lines), 15) + 3):
        for strategy in (partition_num_chunks, partition_chunk_lines):
            slices = co.partition(strategy, n)
            assert "".join(s.get() for s in slices) == text
            assert [line for s in slices for line in s.lines()] == lines


def test_a_worker_reads_its_slice_in_one_request(s3_store):
    """A gzip slice carries its checkpoint's window: reading it is one range read of the object and none of
    the sidecar."""
    data = make_fastq(20000, 1)
    blob = compress(data, 6, 1)
    url = s3_store.put("big.fastq.gz", blob)
    co = CloudObject.from_url(FASTQGZip, url, storage_options=s3_store.options)
    co.preprocess(spacing=64 * 1024)  # several checkpoints a slice: every cut can snap to one and stay balanced
    assert co.attributes.checkpoints > 4 * 8
    slices = co.partition(partition_reads_batches, 8)
    fetched = 0
    for s in slices:
        read_stats.reset()
        lines = s.get()
        assert dict(read_stats.requests) == {url: 1}
        fetched += read_stats.bytes[url]
        assert len(lines) == 4 * s.num_reads
    assert sum(s.num_reads for s in slices) == 20000
    assert fetched <= len(blob) + 8 * 256 * 1024  # each slice: its own range plus the end margin
    assert co.index().nbytes() <= co.attributes.checkpoints * (32 * 1024 + 64)  # a window and a table row each


def test_bgzf_is_recognised(local_store):
    data = make_fastq(3000, 5)
    blocks = []
    for i in range(0, len(data), 60000):
        body = zlib.compressobj(6, zlib.DEFLATED, -15)
        payload = body.compress(data[i : i + 60000]) + body.flush()
        extra = b"BC\x02\x00" + (len(payload) + 25).to_bytes(2, "little")
        header = b"\x1f\x8b\x08\x04\x00\x00\x00\x00\x00\xff\x06\x00" + extra
        trailer = (zlib.crc32(data[i : i + 60000])).to_bytes(4, "little") + (len(data[i : i + 60000])).to_bytes(4, "little")
        blocks.append(header + payload + trailer)
    blocks.append(bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000"))
    co = CloudObject.from_url(FASTQGZip, local_store.put("r.fastq.bgz", b"".join(blocks)))
    co.preprocess(spacing=100_000)
    assert co.attributes.compression == "bgzf" and "windows" not in co.index().blob_sizes()
    assert co.attributes.checkpoints == len(blocks) - 1  # every member that decodes to something
    check_reads(co, data, co.partition(partition_reads_batches, 7))


@pytest.mark.parametrize(
    "blob, compression, message",
    [
        (b"", "gzip", "not gzip"),
        (b"@r\nACGT\n+\nIIII\n", "gzip", "not gzip"),
        (b"@r\nACGT\n+\nIIII\n", "bgzf", "not BGZF"),
        (gzip.compress(b"@r\nACGT\n+\nIIII\n"), "none", "gzip-compressed"),
        (gzip.compress(make_fastq(500, 2))[:-3000], None, "truncated"),
        (gzip.compress(make_fastq(500, 2))[:5000] + b"\x00garbage" + gzip.compress(make_fastq(500, 2))[5008:], None, "corrupt|truncated|invalid"),
    ],
)
def test_bad_gzip(local_store, blob, compression, message):
    url = local_store.put("bad.fastq.gz", blob)
    co = CloudObject.from_url(FASTQGZip, url)
    with pytest.raises(InvalidFormatError, match=message) as err:
        co.preprocess(compression=compression)
    assert url in str(err.value) and err.value.offset is not None
    assert not co.is_preprocessed()


MALFORMED = [
    (b"@a\nAC\n+\nII\nXb\nAC\n+\nII\n", 5),
    (b"@a\nAC\n+\nII\n@b\nAC\n-\nII\n", 7),
    (b"@a\nAC\n+\nII\n@b\nACG\n+\nII\n", 8),
    (b"@a\nAC\n+\nII\n@b\nAC\n", 6),
]


@pytest.mark.parametrize("fastq, line", MALFORMED)
@pytest.mark.parametrize("kind, chunk_size", [("gzip", None), ("plain", 3), ("plain", 7), ("plain", 1000)])
def test_malformed_fastq_names_the_line(local_store, fastq, line, kind, chunk_size):
    if kind == "gzip":
        co = CloudObject.from_url(FASTQGZip, local_store.put("m.fastq.gz", gzip.compress(fastq)))
    else:
        co = CloudObject.from_url(FASTQ, local_store.put("m.fastq", fastq))
    with pytest.raises(InvalidFormatError) as err:
        co.preprocess(chunk_size=chunk_size)
    assert err.value.line == line and co.url in str(err.value)


def test_replaced_object_is_stale(store):
    url = store.put("r.fastq.gz", gzip.compress(make_fastq(400, 3)))
    co = CloudObject.from_url(FASTQGZip, url, storage_options=store.options)
    co.preprocess(spacing=4096)
    slices = co.partition(partition_reads_batches, 3)
    store.put("r.fastq.gz", gzip.compress(make_fastq(400, 4)))
    with pytest.raises(StaleIndexError):
        slices[1].get()
    with pytest.raises(StaleIndexError):
        co.partition(partition_reads_batches, 3)


# -- plain FASTQ ---------------------------------------------------------------------------------------


@SLOW
@given(reads=st.one_of(st.integers(0, 40), st.integers(41, 200)), seed=st.integers(0, 2**16), chunk_size=st.integers(16, 4000), trailing_newline=st.booleans())
def test_plain_fastq_every_read_exactly_once(local_store, reads, seed, chunk_size, trailing_newline):
    data = make_fastq(reads, seed)
    if not trailing_newline and data:
        data = data[:-1]
    co = CloudObject.from_url(FASTQ, local_store.put(f"p{reads}-{seed}-{chunk_size}.fastq", data))
    co.preprocess(force=True, chunk_size=chunk_size, sample_bytes=97)
    assert co.attributes.reads == reads
    for n in range(1, reads + 3) if reads <= 40 else sorted({1, 2, 3, reads + 2} | set(range(1, 9))):
        batches = co.partition(partition_reads_batches, n)
        assert len(batches) == n
        check_reads(co, data, batches)
        check_reads(co, data, co.partition(partition_sequences_per_chunk, n))


def test_partition_num_chunks_is_partition_reads_batches(local_store):
    """The contract's name gives the original's slices, and names its own argument when refused."""
    data = make_fastq(500, seed=3)
    co = CloudObject.from_url(FASTQ, local_store.put("n.fastq.gz", compress(data, 6, 3)))
    co.preprocess(spacing=4096)
    for n in (1, 2, 7, 64, 502):
        slices = co.partition("partition_num_chunks", n)
        assert slices == co.partition(partition_reads_batches, n) == fastq.partition_num_chunks(co, n)
        check_reads(co, data, slices)
        assert [s.num_records for s in slices] == [s.to_arrow().num_rows for s in slices]
    with pytest.raises(StrategyArgumentError, match="num_chunks"):
        co.partition("partition_num_chunks", 0)


# -- the conformance kit ------------------------------------------------------------------------------------


#: Reads that trip naive parsers: qualities starting with '@' or '+', a separator repeating the name, a
#: one-base read, an empty read, a header with spaces in its comment, no newline at the very end.
AWKWARD_FASTQ = (
    b"@r1 1:N:0:ACGT\nACGT\n+\n@@II\n@r2\nA\n+r2\n+\n@r3 x y z\n\n+\n\n@r4\nNNACGT\n+r4\n!!+@II\n"
    + b"".join(b"@m%d\n%s\n+\n%s\n" % (i, b"ACGT" * (i % 9 + 1), b"I" * (4 * (i % 9 + 1))) for i in range(30))
    + b"@last\nGATTACA\n+\nIIIIIII"
)


def fastq_rows(path: Path) -> list[tuple[str, str, str]]:
    """(header without '@', sequence, quality) of every read: pysam.FastxFile when installed, else a plain
    four-line parse."""
    try:
        import pysam
    except ImportError:
        lines = path.read_bytes().decode().split("\n")
        return [(lines[i][1:], lines[i + 1], lines[i + 3]) for i in range(0, len(lines) - 3, 4)]
    with pysam.FastxFile(str(path)) as reads:
        return [(r.name + (f" {r.comment}" if r.comment else ""), r.sequence, r.quality or "") for r in reads]


class TestFASTQConformance(FormatTests):
    format = "FASTQ"
    codecs = ("plain", "gzip", "bgzf", "zstd", "bzip2")
    dump_suffix = ".fastq"

    def samples(self) -> dict[str, dict[str, bytes]]:
        return {"illumina": {"run.fastq": illumina_fastq(4000, seed=1)}, "awkward": {"odd.fastq": AWKWARD_FASTQ}}

    def oracle(self, path: Path) -> list[tuple[str, str, str]]:
        return fastq_rows(path)

    def rows(self, table: pa.Table) -> list[tuple[str, str, str]]:
        return list(zip(*(table[c].to_pylist() for c in ("name", "sequence", "quality"))))

    def read_dump(self, path: Path) -> list[tuple[str, str, str]]:
        pytest.importorskip("pysam", reason="a dump is checked by pysam's FASTQ reader")
        return fastq_rows(path)

    def large(self, folder: Path) -> tuple[str, int]:
        reads = 200_000
        (folder / "large.fastq").write_bytes(illumina_fastq(reads, seed=5))
        return "large.fastq", reads
