"""FASTA over plain, gzip and BGZF: every base exactly once for every slice count, against a plain-Python
parse; ``.fai``/``.gzi`` byte-identical to ``pysam.faidx`` (samtools); ``region()`` equal to
``pysam.FastaFile.fetch``; malformed inputs refused with their offset and line."""

from __future__ import annotations

import gzip
import multiprocessing
import pickle
import zlib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataplug import CloudObject, CorruptIndexError, InvalidFormatError, StaleIndexError
from dataplug.formats.genomics.fasta import (
    FASTA,
    FastaReader,
    partition_chunks_strategy,
    partition_num_chunks,
    partition_num_sequences,
    region,
    regions,
    write_fai,
)
from dataplug.storage import read_stats
from dataplug.testing import FormatTests
from dataplug.testing.codecs import bgzf
from dataplug.testing.fixtures import proxied_options
from dataplug.testing.sidecar import npy, resign
from tests.test_codecs import encode as encode_small

try:
    import pysam
except ImportError:  # the oracle comparisons skip; the self-consistency tests run
    pysam = None


def needs_pysam():
    """pysam (samtools' faidx), the reference the oracle tests compare with (the ci extra installs it)."""
    return pytest.importorskip("pysam", reason="the reference, samtools' faidx through pysam, is installed by the ci extra")

CODECS = ["none", "gzip", "bgzf"]
STRATEGIES = [partition_chunks_strategy, partition_num_sequences]
SLOW = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
ALPHABET = np.frombuffer(b"ACGT", np.uint8)


def encode(data: bytes, codec: str, seed: int = 0) -> bytes:
    """``tests.test_codecs.encode``, with BGZF blocks capped at bgzip's 65280 bytes for large inputs."""
    if codec == "bgzf":
        return bgzf(data, block=max(1, min(65280, len(data) // 5 + 1)))[0]
    return encode_small(data, codec, seed)


def random_bases(rng: np.random.Generator, n: int) -> bytes:
    """Bases with runs of N and of lowercase (soft-masked) bases."""
    seq = ALPHABET[rng.integers(0, 4, n)]
    for _ in range(max(1, n // 5000) if n else 0):
        a = int(rng.integers(0, n))
        seq[a : a + int(rng.integers(1, 300))] = ord("N")
        b = int(rng.integers(0, n))
        seq[b : b + int(rng.integers(1, 500))] |= 0x20
    return seq.tobytes()


def make_fasta(lengths: list[int], widths: list[int], seed: int, newline: bytes = b"\n") -> tuple[bytes, list[tuple[str, str, str]]]:
    """A FASTA file and its records ``(name, description, sequence)``; sequence ``i`` has lines of ``widths[i % len(widths)]``."""
    rng = np.random.default_rng(seed)
    out, records = [], []
    for i, n in enumerate(lengths):
        seq, width = random_bases(rng, n), widths[i % len(widths)]
        name, desc = f"chr{i}_{seed}", f"len={n} sample {i}"
        out.append(b">%s %s%s" % (name.encode(), desc.encode(), newline))
        out += [seq[j : j + width] + newline for j in range(0, n, width)]
        records.append((name, desc, seq.decode()))
    return b"".join(out), records


def parse_fasta(data: bytes) -> list[tuple[str, str, str]]:
    """The oracle: a plain-Python FASTA parse that never uses dataplug."""
    records: list[tuple[str, str, list[str]]] = []
    for line in data.decode().splitlines():
        if line.startswith(">"):
            name, _, desc = line[1:].partition(" ")
            records.append((name, desc, []))
        elif line:
            records[-1][2].append(line)
    return [(n, d, "".join(s)) for n, d, s in records]


def joined(slices: list) -> list[tuple[str, str, str]]:
    """Records rebuilt from the slices' pieces, checking the pieces of each sequence are contiguous."""
    rows = pa.concat_tables([s.to_arrow() for s in slices]).to_pylist()
    out: list[tuple[str, str, str]] = []
    for row in rows:
        if out and out[-1][0] == row["name"]:
            assert row["offset"] == len(out[-1][2])
            out[-1] = (row["name"], row["description"], out[-1][2] + row["sequence"])
        else:
            assert row["offset"] == 0
            out.append((row["name"], row["description"], row["sequence"]))
    return out


@pytest.fixture(scope="module")
def genome() -> tuple[bytes, list[tuple[str, str, str]]]:
    return make_fasta([50, 61, 999, 12_345, 200_000, 1_000_003, 70, 4_321], [60, 70], seed=7)


@pytest.mark.parametrize("codec", CODECS)
def test_every_base_once(store, genome, codec):
    data, records = genome
    assert parse_fasta(data) == records
    co = CloudObject.from_url(FASTA, store.put(f"g.fa.{codec}", encode(data, codec)), storage_options=store.options)
    co.preprocess(spacing=64 * 1024, chunk_size=100_000)
    attrs = co.attributes
    assert (attrs.sequences, attrs.bases, attrs.irregular_sequences) == (len(records), sum(len(r[2]) for r in records), 0)
    assert attrs.compression == codec
    counts = [1, 2, 7, 11, 40] if store.kind == "local" else [1, 7, 40]
    for n in counts:
        for strat in STRATEGIES:
            slices = co.partition(strat, n)
            assert len(slices) == n
            assert joined(pickle.loads(pickle.dumps(slices))) == records
    chunks = co.partition(partition_chunks_strategy, 7)
    sizes = [s.num_bases for s in chunks]
    assert max(sizes) - min(sizes) <= attrs.bases // 7 // 2 + 1
    assert parse_fasta("".join(s.get() for s in co.partition(partition_num_sequences, 3)).encode()) == records


def test_partition_num_chunks_is_partition_chunks_strategy(local_store, genome):
    """The contract's name and the original's give the same slices: pieces of equal bases."""
    data, records = genome
    co = CloudObject.from_url(FASTA, local_store.put("n.fa", data))
    co.preprocess()
    for n in (1, 3, 8, len(records) + 2):
        slices = co.partition("partition_num_chunks", n)
        assert slices == co.partition(partition_chunks_strategy, n) == partition_num_chunks(co, n)
        assert joined(slices) == records and [s.num_records for s in slices] == [s.to_arrow().num_rows for s in slices]


def test_index_pass_on_a_process_pool(local_store, genome):
    data, records = genome
    co = CloudObject.from_url(FASTA, local_store.put("p.fa", data))
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        co.preprocess(executor=pool, chunk_size=200_000)
    assert joined(co.partition(partition_chunks_strategy, 4)) == records


def test_slice_get_and_arrow(local_store, genome):
    data, records = genome
    co = CloudObject.from_url(FASTA, local_store.put("g.fa", data))
    co.preprocess()
    slices = co.partition(partition_chunks_strategy, 5)
    text = slices[3].get()
    table = slices[3].to_arrow()
    assert table.schema == slices[3].schema()
    first = table.to_pylist()[0]
    assert text.startswith(f">{first['name']} offset={first['offset']}\n") and first["offset"] > 0
    assert slices[3].to_arrow(["name", "offset"]).column_names == ["name", "offset"]
    whole = slices[0].get().split("\n")
    assert whole[:4] == [f">{records[0][0]} {records[0][1]}", records[0][2], f">{records[1][0]} {records[1][1]}", records[1][2]]
    assert len(whole[5]) == 60 and len(whole[6]) == 60  # the 999 bases of the third sequence, 60 a line


@SLOW
@given(
    lengths=st.lists(st.one_of(st.integers(1, 20), st.integers(21, 400)), min_size=1, max_size=6),
    widths=st.lists(st.one_of(st.integers(1, 80), st.just(10_000)), min_size=1, max_size=2),  # 10_000: unwrapped
    codec=st.sampled_from([*CODECS, "gzip-members"]),
    crlf=st.booleans(),
    chunk_size=st.integers(7, 500),
    spacing=st.sampled_from([64, 512, 8192]),
    seed=st.integers(0, 2**16),
)
def test_every_base_once_for_every_slice_count(local_store, lengths, widths, codec, crlf, chunk_size, spacing, seed):
    data, records = make_fasta(lengths, widths, seed, b"\r\n" if crlf else b"\n")
    path = local_store.put(
        f"h{zlib.crc32(data)}-{seed}-{chunk_size}-{spacing}.fa.{codec}", encode(data, codec, seed)
    )  # pysam writes a .gzi beside it
    co = CloudObject.from_url(FASTA, path)
    co.preprocess(force=True, spacing=spacing, chunk_size=chunk_size)
    total = sum(lengths)
    more = {total, total + 2} if total <= 120 else {total // 3}  # more slices than bases, when that stays fast
    for n in sorted({1, 2, 3, len(lengths) + 1} | more | set(range(1, min(total, 12)))):
        for strat in STRATEGIES:
            assert joined(co.partition(strat, n)) == records
    if codec in ("none", "bgzf") and pysam is not None:
        write_fai(co, path + ".mine.fai")
        pysam.faidx(path)
        assert Path(path + ".mine.fai").read_bytes() == Path(path + ".fai").read_bytes()


@pytest.mark.parametrize("codec", ["none", "bgzf"])
def test_fai_and_gzi_identical_to_samtools(local_store, genome, codec):
    needs_pysam()
    data, records = genome
    path = local_store.put(f"s.fa.{codec}", encode(data, codec))
    co = CloudObject.from_url(FASTA, path)
    co.preprocess()
    write_fai(co, path + ".ours.fai")
    pysam.faidx(path)
    assert Path(path + ".ours.fai").read_bytes() == Path(path + ".fai").read_bytes()
    if codec == "bgzf":
        assert Path(path + ".ours.gzi").read_bytes() == Path(path + ".gzi").read_bytes()
        co.preprocess(force=True, chunk_size=50_000)  # with the .gzi beside it: a parallel map over members
        assert joined(co.partition(partition_chunks_strategy, 6)) == records


def test_fai_on_s3_and_refused_for_gzip(s3_store, genome):
    data, _ = genome
    url = s3_store.put("g.fa.gz", encode(data, "bgzf"))
    co = CloudObject.from_url(FASTA, url, storage_options=s3_store.options)
    co.preprocess()
    write_fai(co, url + ".fai")
    assert s3_store.exists(url + ".fai") and s3_store.exists(url + ".gzi")
    gz = CloudObject.from_url(FASTA, s3_store.put("plain.fa.gz", encode(data, "gzip")), storage_options=s3_store.options)
    gz.preprocess()
    with pytest.raises(InvalidFormatError, match="bgzip"):
        write_fai(gz, url + ".other.fai")


@pytest.mark.parametrize("codec", CODECS)
def test_region_equals_pysam(local_store, genome, codec, tmp_path):
    needs_pysam()
    data, records = genome
    co = CloudObject.from_url(FASTA, local_store.put(f"r.fa.{codec}", encode(data, codec)))
    co.preprocess(spacing=32 * 1024)
    reference = tmp_path / "ref.fa"
    reference.write_bytes(data)
    rng = np.random.default_rng(3)
    with pysam.FastaFile(str(reference)) as fasta:
        for _ in range(60):
            name, _, seq = records[int(rng.integers(len(records)))]
            a = int(rng.integers(0, len(seq)))
            b = int(rng.integers(a, len(seq) + 1))
            assert region(co, name, a, b) == fasta.fetch(name, a, b)
        assert region(co, records[5][0], 0, 10**9) == fasta.fetch(records[5][0])
    with pytest.raises(KeyError):
        region(co, "nope", 0, 1)


def test_irregular_lines_are_flagged_and_still_exact(local_store):
    records = [("a", "", "ACGTACGTAC" * 7), ("b", "x y", "GGGCCC" * 9), ("c", "", "T" * 5)]
    a = records[0][2].encode()
    lines = [a[0:14], a[14:20], a[20:34], b"", a[34:]]  # short, long again, and a blank line inside
    data = b">a\n" + b"\n".join(lines) + b"\n>b x y\n" + b"GGGCCC" * 9 + b"\n>c\nTT\nTTT\n"
    assert parse_fasta(data) == records
    co = CloudObject.from_url(FASTA, local_store.put("irr.fa", data))
    co.preprocess(chunk_size=9)
    assert co.attributes.irregular_sequences == 2 and co.attributes.irregular_names == ("a", "c")
    for n in range(1, 90):
        assert joined(co.partition(partition_chunks_strategy, n)) == records
    for a in range(0, 70, 3):
        assert region(co, "a", a, a + 17) == records[0][2][a : a + 17]
    with pytest.raises(InvalidFormatError, match="different line lengths"):
        write_fai(co, str(local_store.url("irr.fa.fai")))


@pytest.mark.parametrize("codec", CODECS)
def test_gzip_slices_start_at_checkpoints(local_store, genome, codec):
    data, records = genome
    co = CloudObject.from_url(FASTA, local_store.put(f"c.fa.{codec}", encode(data, codec)))
    co.preprocess(spacing=16 * 1024)
    slices = co.partition(partition_chunks_strategy, 9)
    assert joined(slices) == records
    if codec == "gzip":
        assert co.attributes.checkpoints > 50
        assert all(0 <= s.source.start - s.source.checkpoint_uncompressed <= 80 for s in slices[1:])


@pytest.mark.parametrize(
    "data, records",
    [
        (b"", []),
        (b"\n\n>a\n", [("a", "", "")]),
        (b">a", [("a", "", "")]),
        (b">a\n>b d\nAC\n\n\n>c\nG", [("a", "", ""), ("b", "d", "AC"), ("c", "", "G")]),
        (b">a\r\nAC\r\nG\r\n>b\r\nTT", [("a", "", "ACG"), ("b", "", "TT")]),
        (">\tn\u00a0x\u00e9 d\u00e9\nA\n".encode(), [("n\u00a0x\u00e9", "d\u00e9", "A")]),  # only ASCII whitespace ends a name
    ],
)
def test_edge_cases(local_store, data, records):
    co = CloudObject.from_url(FASTA, local_store.put("e.fa", data))
    co.preprocess(chunk_size=3)
    assert co.attributes.sequences == len(records)
    for n in range(1, 6):
        for strat in STRATEGIES:
            assert joined(co.partition(strat, n)) == records


def test_header_longer_than_the_limit(local_store, monkeypatch):
    from dataplug.formats.genomics import fasta_index

    monkeypatch.setattr(fasta_index, "MAX_HEADER", 16)
    co = CloudObject.from_url(FASTA, local_store.put("long.fa", b">a\nAC\n>" + b"x" * 40 + b"\nGG\n"))
    with pytest.raises(InvalidFormatError, match="header line longer") as info:
        co.preprocess(chunk_size=8)
    assert (info.value.offset, info.value.line) == (6, 3)


def test_crafted_index_is_refused(local_store, genome):
    from dataplug.formats.genomics.fasta_index import validate_tables

    data, _ = genome
    co = CloudObject.from_url(FASTA, local_store.put("v.fa", data))
    co.preprocess()
    attrs, tables = co.attributes, co.index().tables
    validate_tables(co.url, attrs.sequences, attrs.bases, tables, len(data))
    for name, row, value in [("seq_offset", 2, len(data) + 1), ("run_base", 3, 7), ("run_linewidth", 2, 10**9), ("seq_length", 1, 10**6)]:
        crafted = {k: v.copy() for k, v in tables.items()}
        crafted[name][row] = value
        with pytest.raises(CorruptIndexError):
            validate_tables(co.url, attrs.sequences, attrs.bases, crafted, len(data))


@pytest.mark.parametrize(
    "data, cause, offset, line",
    [
        (b"ACGT\n>a\nACGT\n", "before the first", 0, 1),
        (b">a\nAC\n>\nGG\n", "empty sequence name", 6, 3),
        (b">a\nAC\n>  \t\nGG\n", "empty sequence name", 6, 3),
        (b">a\nAC\n>b\nG\0G\n", "NUL", 10, None),
        (b">a\nACGT\n>b\nGG\n>a desc\nTT\n", "duplicate sequence name 'a'", 14, 5),
    ],
)
def test_malformed_inputs(local_store, data, cause, offset, line):
    co = CloudObject.from_url(FASTA, local_store.put("bad.fa", data))
    with pytest.raises(InvalidFormatError, match=cause) as info:
        co.preprocess(chunk_size=5)
    assert info.value.offset == offset
    if line is not None:
        assert info.value.line == line


def test_original_fasta_example_usage(s3_options, genome):
    from tests.conftest import make_bucket

    bucket = make_bucket(s3_options)
    data, records = genome
    import fsspec

    fsspec.filesystem("s3", **s3_options).pipe(f"{bucket}/genome.fasta", data)
    s3_config = {
        "endpoint_url": s3_options["endpoint_url"],
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
        "region_name": "eu-west-1",
    }
    co = CloudObject.from_s3(FASTA, f"s3://{bucket}/genome.fasta", s3_config=s3_config)
    co.preprocess()
    assert co.attributes.num_sequences == co["num_sequences"] == len(records)
    slices = co.partition(partition_chunks_strategy, num_chunks=8)
    text = "".join(s.get() for s in slices)
    assert text.startswith(f">{records[0][0]} {records[0][1]}\n") and text.count(">") == len(records) + 7
    assert joined(slices) == records


@pytest.fixture(scope="session")
def big_fasta(tmp_path_factory) -> tuple[str, list[int]]:
    """A ≥ 64 MiB FASTA (three sequences, 60 bases a line), written with numpy in about a second."""
    rng = np.random.default_rng(11)
    path = tmp_path_factory.mktemp("big") / "big.fa"
    lengths = [40_000_000, 7, 27_000_001]
    with open(path, "wb") as fh:
        for i, n in enumerate(lengths):
            fh.write(b">big%d\n" % i)
            lines = -(-n // 60)
            body = np.full(lines * 61, ord("\n"), np.uint8).reshape(lines, 61)
            body[:, :60] = ALPHABET[rng.integers(0, 4, (lines, 60), dtype=np.uint8)]
            flat = body.reshape(-1)
            tail = n - (lines - 1) * 60
            fh.write(flat[: (lines - 1) * 61 + tail].tobytes() + b"\n")
    return str(path), lengths


def test_big_fasta_default_settings(big_fasta):
    needs_pysam()
    path, lengths = big_fasta
    assert Path(path).stat().st_size >= 64 * 2**20
    co = CloudObject.from_url(FASTA, path)
    co.preprocess(force=True)
    assert co.attributes.bases == sum(lengths)
    write_fai(co, path + ".ours.fai")
    pysam.faidx(path)
    assert Path(path + ".ours.fai").read_bytes() == Path(path + ".fai").read_bytes()
    slices = co.partition(partition_chunks_strategy, 3)
    with pysam.FastaFile(path) as fasta:
        for s in slices:
            for name, offset, seq in zip(s.names, s.offsets, s.sequences()):
                assert len(seq) == s.lengths[s.names.index(name)]
                assert seq[:1000] == fasta.fetch(name, offset, offset + 1000)[: len(seq[:1000])]
                assert seq[-1000:] == fasta.fetch(name, offset + len(seq) - len(seq[-1000:]), offset + len(seq))
    assert sum(s.num_bases for s in slices) == sum(lengths)
    gz = Path(path + ".gz")
    gz.write_bytes(gzip.compress(Path(path).read_bytes(), compresslevel=1))
    zipped = CloudObject.from_url(FASTA, str(gz))
    zipped.preprocess()
    assert zipped.attributes.bases == sum(lengths) and zipped.attributes.checkpoints > 10
    with pysam.FastaFile(path) as fasta:
        for name, at in [("big0", 39_999_990), ("big1", 0), ("big2", 13_500_000), ("big2", 26_999_995)]:
            assert region(zipped, name, at, at + 5000) == fasta.fetch(name, at, at + 5000)


# -- the reader: regions through one open object, its layout and decoded blocks kept ---------------------------


def edge_queries(records: list[tuple[str, str, str]], rng: np.random.Generator, count: int) -> list[tuple[str, int | None, int | None]]:
    """Random regions of every sequence, and its edges: first and last bases, whole lines and line breaks
    (60 and 70 bases a line), past the end, empty, reversed, a negative start, the whole sequence."""
    out: list[tuple[str, int | None, int | None]] = []
    for name, _, seq in records:
        n = len(seq)
        out += [(name, 0, 1), (name, n - 1, n), (name, 0, n), (name, 59, 61), (name, 60, 120), (name, 69, 141), (name, n - 5, n + 50)]
        out += [(name, n, n + 3), (name, n + 10, n + 20), (name, 7, 7), (name, 9, 4), (name, -5, 3), (name, 0, None), (name, None, None)]
    for _ in range(count):
        name, _, seq = records[int(rng.integers(len(records)))]
        a = int(rng.integers(0, len(seq)))
        out.append((name, a, a + int(rng.integers(50, 5001))))
    return out


def expected(records: list[tuple[str, str, str]], query: tuple[str, int | None, int | None]) -> str:
    """The oracle for a query: pysam's clipping of the end, a negative start read as 0 (pysam raises)."""
    name, a, b = query
    seq = {n: s for n, _, s in records}[name]
    return seq[max(a or 0, 0) : len(seq) if b is None else max(b, 0)]


@pytest.fixture(scope="module")
def masked() -> tuple[bytes, list[tuple[str, str, str]]]:
    """CRLF line breaks, soft-masked runs, 60 and 70 bases a line, and a one-line sequence."""
    return make_fasta([1, 59, 60, 61, 4_321, 140_000, 70, 71], [60, 70], seed=9, newline=b"\r\n")


@pytest.mark.parametrize("codec", CODECS)
def test_reader_regions_equal_pysam(local_store, genome, masked, codec, tmp_path):
    """Through ``co.reader()``, ``regions()`` at once and the implicit reader of ``region(co, ...)``: every
    region equals ``pysam.FastaFile.fetch`` (LF file) and the plain parse (CRLF file), case kept."""
    rng = np.random.default_rng(4)
    for label, (data, records) in {"lf": genome, "crlf": masked}.items():
        co = CloudObject.from_url(FASTA, local_store.put(f"{label}.fa.{codec}", encode(data, codec)))
        co.preprocess(spacing=32 * 1024)
        queries = edge_queries(records, rng, 150)
        want = [expected(records, q) for q in queries]
        if label == "lf" and pysam is not None:
            (tmp_path / "ref.fa").write_bytes(data)
            with pysam.FastaFile(str(tmp_path / "ref.fa")) as fasta:
                # pysam refuses a reversed region and a negative start: we read them as empty and from 0
                assert ["" if b is not None and b < (a or 0) else fasta.fetch(n, max(a or 0, 0), b) for n, a, b in queries] == want
        with co.reader() as r:
            assert isinstance(r, FastaReader)
            assert [r.region(*q) for q in queries] == want
            assert r.regions(queries) == want
            assert r.regions([f"{n}:{a + 1:,}-{b}" for n, a, b in queries[-40:]]) == want[-40:]  # samtools' 1-based regions
            assert r.regions([n for n, _, _ in records]) == [s for _, _, s in records]
            with pytest.raises(KeyError, match="nope"):
                r.region("nope", 0, 1)
        assert [region(co, *q) for q in queries] == want and co.kept_reader() is co.kept_reader()
        assert regions(co, queries[::-1]) == want[::-1]
        assert any(c.islower() for c in "".join(want)) and regions(co, []) == []


def test_a_region_set_decodes_each_block_once(local_store, genome):
    """A region set reads each BGZF member it needs once; asked again, it is served from the reader's blocks."""
    data, records = genome
    co = CloudObject.from_url(FASTA, local_store.put("set.fa.gz", encode(data, "bgzf")))
    co.preprocess()
    queries = edge_queries(records, np.random.default_rng(5), 300)
    with co.reader() as r:
        first = r.regions(queries)
        decodes = r.decodes
        read_stats.reset()
        assert r.regions(queries) == first == [expected(records, q) for q in queries]
        assert r.decodes == decodes <= co.attributes.checkpoints and read_stats.requests.get(co.url, 0) == 0


@pytest.mark.parametrize("codec", ["none", "bgzf"])
def test_a_changed_object_is_refused_while_a_reader_is_open(store, genome, codec):
    """The object rewritten after it was indexed, with a reader open: the next read that reaches the object
    is a StaleIndexError (locally its stat before the call, on S3 the pinned request), never other bases."""
    data, records = genome
    name, _, seq = records[5]
    url = store.put(f"changed.fa.{codec}", encode(data, codec))
    co = CloudObject.from_url(FASTA, url, storage_options=store.options)
    co.preprocess()
    with co.reader(check_interval=0) as r:
        assert r.region(name, 0, 100) == seq[:100]
        store.put(f"changed.fa.{codec}", encode(data.replace(b"ACGT", b"TTTT"), codec))
        with pytest.raises(StaleIndexError):
            r.region(name, 900_000, 900_100)
        with pytest.raises(StaleIndexError):
            r.regions([(name, 500_000, 500_100), (name, 700_000, 700_100)])


@pytest.mark.parametrize("codec", ["none", "bgzf"])
def test_region_sets_on_s3_are_few_requests(fault_proxy, s3_store, s3_options, genome, codec):
    """300 regions over three sequences of a FASTA on S3, plain and BGZF, through the fault proxy: the ranges of
    nearby regions are merged with the store's gap, so the region set is a few GETs of the object, not one per
    region, and no other request (the ETag rides on the GETs)."""
    data, records = genome
    url = s3_store.put(f"set.fa.{codec}", encode(data, codec))
    CloudObject.from_url(FASTA, url, storage_options=s3_store.options).preprocess()
    rng = np.random.default_rng(8)
    picked = [records[i] for i in (3, 4, 5)]
    queries = []
    for _ in range(300):
        name, _, seq = picked[int(rng.integers(3))]
        a = int(rng.integers(0, len(seq) - 50))
        queries.append((name, a, a + int(rng.integers(50, 5001))))
    co = CloudObject.from_url(FASTA, url, storage_options=proxied_options(s3_options, fault_proxy))
    with co.reader() as r:
        r.regions([])  # the index and the layout: read before counting
        fault_proxy.set_mode(None)
        got = r.regions(queries)
        key = url.split("/", 3)[3]
        gets = [q for q in fault_proxy.requests if q.method == "GET" and q.target.split("?")[0].endswith(key)]
        print("\n".join(f"{q.method} {q.target} {q.headers.get('Range', '')}" for q in fault_proxy.requests))
    assert got == [expected(records, q) for q in queries]
    assert 1 <= len(gets) <= 3 and len(fault_proxy.requests) == len(gets)


def test_the_readers_layout_finds_every_base(local_store):
    """The reader's list layout (a stride for samtools-regular sequences, the runs for the others) against the
    index's NumPy layout and the bytes themselves, for every base of seeded files with regular, ragged, CRLF,
    mixed line breaks, blank lines and empty sequences."""
    from dataplug.formats.genomics.fasta import _layout
    from dataplug.formats.genomics.fasta_index import RegionLayout

    rng = np.random.default_rng(12)
    kinds = set()
    for t in range(25):
        parts, sequences = [], []
        for i in range(int(rng.integers(1, 5))):
            seq = ALPHABET[rng.integers(0, 4, int(rng.integers(0, 300)))].tobytes()
            width, mode, pos = int(rng.integers(1, 70)), int(rng.integers(0, 4)), 0
            parts.append(b">s%d\n" % i)
            while pos < len(seq):
                w = width if mode in (0, 3) or rng.random() < 0.9 else int(rng.integers(1, 70))
                parts.append(seq[pos : pos + w] + (b"\r\n" if (mode == 3) == (rng.random() < 0.2) else b"\n"))
                parts.append(b"\n" if rng.random() < 0.02 else b"")
                pos += w
            sequences.append(seq)
        data = b"".join(parts)
        co = CloudObject.from_url(FASTA, local_store.put(f"layout{t}.fa", data))
        co.preprocess(progress=False)
        exact, fast = _layout(co), RegionLayout(dict(co.index().tables))
        for i, seq in enumerate(sequences):
            kinds.add(bool(fast.stride_bases[i]))
            at = [fast.byte_of(i, p) for p in range(len(seq))]
            assert at == [exact.byte_of(i, p) for p in range(len(seq))]
            assert bytes(data[x] for x in at) == seq
            for a, b in rng.integers(0, len(seq) + 1, (10, 2)).tolist() if seq else []:
                if a < b:
                    assert fast.byte_range(i, a, b) == exact.byte_range(i, a, b)
    assert kinds == {True, False}


def test_decoded_bytes_that_disagree_with_the_index_are_refused(local_store, genome):
    """A crafted layout that passes the index's bounds checks (the one line of the first sequence, 50 bases,
    said to be two lines of 25): a region the bytes do not hold as the index says is a CorruptIndexError,
    never shifted bases."""
    data, records = genome
    co = CloudObject.from_url(FASTA, local_store.put("crafted.fa", data))
    co.preprocess()
    for table, value in (("run_linebases", 25), ("run_linewidth", 26)):
        column = co.index().tables[table].copy()
        column[0] = value
        resign(co.index_location, "tables", table, npy(column))
    crafted = CloudObject.from_url(FASTA, co.url)
    name, _, seq = records[0]
    assert len(seq) == 50 and region(crafted, name, 0, 25) == seq[:25]  # the bytes the index and the object agree on
    with pytest.raises(CorruptIndexError, match="bases where the index expects"):
        region(crafted, name, 25, 50)
    with pytest.raises(CorruptIndexError, match="bases where the index expects"):
        regions(crafted, [(records[1][0], 0, 10), (name, 20, 40)])


def test_a_renamed_header_is_refused_by_the_reader(local_store, genome):
    """The headers blob edited and re-signed (sequence 5 named as another): the reader's first read near the start
    of a sequence also reads the header line before it, planned with the region, and refuses bases under the wrong
    name; the other sequences still read."""
    data, records = genome
    co = CloudObject.from_url(FASTA, local_store.put("renamed.fa.gz", encode(data, "bgzf")))
    co.preprocess()
    lines = [f"{name} {desc}" for name, desc, _ in records]
    lines[5] = "impostor " + records[5][1]
    resign(co.index_location, "blobs", "headers", "\n".join(lines).encode())
    renamed = CloudObject.from_url(FASTA, co.url)
    with renamed.reader() as r:
        with pytest.raises(CorruptIndexError, match="impostor"):
            r.region("impostor", 30_000, 30_100)
        with pytest.raises(CorruptIndexError, match="impostor"):
            r.regions([(records[4][0], 0, 10), ("impostor", 50_000, 50_100)])
        assert r.region(records[4][0], 150_000, 150_010) == records[4][2][150_000:150_010]


# -- the conformance kit ------------------------------------------------------------------------------------
#
# A FASTA slice's records are pieces of sequences, and where a sequence is cut depends on the slice count, so
# the kit's rows are in units no cut changes: one row ``(name, -1, "")`` where a sequence starts (a piece at
# offset 0), then ``(name, position, base)`` per base. "Every record exactly once" then says every sequence is
# started once and every base is read once, in order.


def base_rows(name: str, offset: int, sequence: str) -> list[tuple[str, int, str]]:
    """A piece of sequence ``name`` starting at ``offset``, in the kit's units."""
    start = [(name, -1, "")] if offset == 0 else []
    return start + [(name, offset + i, b) for i, b in enumerate(sequence)]


def fasta_rows(path: Path, pieces: bool = False) -> list[tuple[str, int, str]]:
    """Every sequence of the file in the kit's units: pysam.FastxFile when installed, else a plain parse.
    With ``pieces``, a header ``>name offset=K`` (a dumped piece) starts at base K."""
    if pysam is None:
        records = [(n, d, s) for n, d, s in parse_fasta(path.read_bytes().replace(b"\r", b""))]
    else:
        with pysam.FastxFile(str(path)) as fasta:
            records = [(r.name, r.comment or "", r.sequence) for r in fasta]
    out = []
    for name, description, sequence in records:
        offset = int(description[len("offset=") :]) if pieces and description.startswith("offset=") else 0
        out += base_rows(name, offset, sequence)
    return out


class TestFASTAConformance(FormatTests):
    format = "FASTA"
    codecs = ("plain", "gzip", "bgzf", "zstd", "bzip2")
    dump_suffix = ".fa"

    def samples(self) -> dict[str, dict[str, bytes]]:
        assembly, _ = make_fasta([180_000, 61, 0, 12_345, 999, 60, 1, 40_000], [60, 70, 80], seed=1)
        windows, _ = make_fasta([500, 3, 777], [60], seed=2, newline=b"\r\n")
        tiny, _ = make_fasta([5, 0, 12], [4], seed=3)
        return {"assembly": {"contigs.fa": assembly}, "windows": {"crlf.fa": windows}, "tiny": {"tiny.fa": tiny}}

    def oracle(self, path: Path) -> list[tuple[str, int, str]]:
        return fasta_rows(path)

    def rows(self, table: pa.Table) -> list[tuple[str, int, str]]:
        out = []
        for name, offset, sequence in zip(*(table[c].to_pylist() for c in ("name", "offset", "sequence"))):
            out += base_rows(name, offset, sequence)
        return out

    def read_dump(self, path: Path) -> list[tuple[str, int, str]]:
        needs_pysam()
        return fasta_rows(path, pieces=True)

    def large(self, folder: Path) -> tuple[str, int]:
        """48 contigs of 1.45 Mbp (70 MiB): the kit's 16 slices then hold 3 whole contigs each, so the pieces,
        the records a FASTA slice counts, are 48 whatever the codec."""
        rng = np.random.default_rng(5)
        with open(folder / "large.fa", "wb") as fh:
            for i in range(48):
                fh.write(b">contig_%d length=1450000 assembly=test\n" % (i + 1))
                lines = random_bases(rng, 1_450_000)
                fh.write(b"".join(lines[j : j + 60] + b"\n" for j in range(0, len(lines), 60)))
        return "large.fa", 48
