"""Every framing at default settings on objects larger than every internal buffer and map range (≥ 64 MiB
of decoded bytes, generated once per session): the class of bug that small property tests cannot reach."""

from __future__ import annotations

import gzip
import hashlib
import io

import numpy as np
import pyarrow.csv as pacsv
import pytest

from dataplug import CloudObject
from dataplug.codecs.plain import DEFAULT_CHUNK_SIZE
from dataplug.formats.generic.csv import CSV, partition_num_chunks as csv_chunks
from dataplug.formats.generic.text import UTF8Text, partition_num_chunks as text_chunks
from dataplug.formats.genomics.fastq import FASTQ, partition_reads_batches
from dataplug.testing.codecs import bgzf
from dataplug.testing.data import random_lines as _text

pytestmark = pytest.mark.slow

LARGE = 64 * 2**20 + 12345


def _csv(rng: np.random.Generator, rows: int) -> bytes:
    ids = np.arange(rows)
    values = rng.integers(-10**6, 10**6, rows)
    body = "".join(f'{i},{v},"note {i},\nsecond line"\n' if i % 101 == 0 else f"{i},{v},plain note {i}\n" for i, v in zip(ids.tolist(), values.tolist()))
    return ("id,value,note\n" + body).encode()


def _fastq(rng: np.random.Generator, reads: int) -> bytes:
    lengths = rng.integers(50, 151, reads)
    bases = np.frombuffer(b"ACGT", np.uint8)[rng.integers(0, 4, int(lengths.sum()))].tobytes()
    out, pos = [], 0
    for i, n in enumerate(lengths.tolist()):
        seq = bases[pos : pos + n]
        pos += n
        out.append(b"@r%d\n%s\n+\n%s\n" % (i, seq, b"I" * n))
    return b"".join(out)


@pytest.fixture(scope="session")
def large(tmp_path_factory):
    """Seeded objects whose decoded size exceeds the plain map range plus its look-ahead and many gzip
    checkpoints; compressed at level 1 to keep the fixture quick."""
    rng = np.random.default_rng(2024)
    root = tmp_path_factory.mktemp("large")
    text = _text(rng, LARGE)
    csv = _csv(rng, 2_050_000)
    fastq = _fastq(rng, 320_000)
    assert min(len(text), len(csv), len(fastq)) >= 64 * 2**20 > DEFAULT_CHUNK_SIZE + 2**20
    files = {
        "text": (text, text),
        "text.gz": (gzip.compress(text, 1), text),
        "csv": (csv, csv),
        "csv.gz": (gzip.compress(csv, 1), csv),
        "fastq": (fastq, fastq),
        "fastq.gz": (gzip.compress(fastq, 1), fastq),
        "fastq.bgz": (bgzf(fastq, 1)[0], fastq),
    }
    out = {}
    for name, (stored, plain) in files.items():
        path = root / name
        path.write_bytes(stored)
        out[name] = (str(path), plain)
    return out


def _digest(parts) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part)
    return h.hexdigest()


@pytest.mark.parametrize("name", ["text", "text.gz"])
def test_large_text(large, name):
    url, plain = large[name]
    co = CloudObject.from_url(UTF8Text, url).preprocess()
    assert co.attributes.lines == plain.count(b"\n") and co.attributes.uncompressed_size == len(plain)
    for n in (1, 7, 64):
        slices = co.partition(text_chunks, n)
        assert _digest(s.raw() for s in slices) == hashlib.sha256(plain).hexdigest()


@pytest.mark.parametrize("name", ["csv", "csv.gz"])
def test_large_csv(large, name):
    url, plain = large[name]
    co = CloudObject.from_url(CSV, url).preprocess()
    whole = pacsv.read_csv(io.BytesIO(plain), parse_options=pacsv.ParseOptions(newlines_in_values=True))
    assert co.attributes.rows == whole.num_rows
    slices = co.partition(csv_chunks, 16)
    ids = np.concatenate([s.to_arrow(columns=["id"]).column("id").to_numpy() for s in slices])
    assert np.array_equal(ids, np.arange(whole.num_rows))
    assert sum(int(s.to_arrow(columns=["value"]).column("value").to_numpy().sum()) for s in slices) == int(whole.column("value").to_numpy().sum())


@pytest.mark.parametrize("name", ["fastq", "fastq.gz", "fastq.bgz"])
def test_large_fastq(large, name):
    url, plain = large[name]
    co = CloudObject.from_url(FASTQ, url).preprocess()
    assert co.attributes.reads == plain.count(b"\n") // 4
    slices = co.partition(partition_reads_batches, 48)
    assert all(s.first % 4 == 0 for s in slices)
    assert _digest(s.raw() for s in slices) == hashlib.sha256(plain).hexdigest()


@pytest.fixture(scope="session")
def large_cloud(tmp_path_factory):
    """A point format 6 cloud of 2.3 M points: a 69 MB LAS, more than two LAS map groups and many 2 MiB
    blocks, and its LAZ, several LAZ map groups of laspy's default chunks."""
    from dataplug.testing.data import cloud, las_bytes, laz_bytes

    las = cloud(2_300_000, 6, seed=11)
    root = tmp_path_factory.mktemp("large-lidar")
    paths = {}
    for suffix, data in (("las", las_bytes(las)), ("laz", laz_bytes(las))):
        paths[suffix] = root / f"cloud.{suffix}"
        paths[suffix].write_bytes(data)
    assert paths["las"].stat().st_size >= 64 * 2**20
    return las, paths


@pytest.mark.parametrize("suffix", ["las", "laz"])
def test_large_lidar(large_cloud, suffix):
    from dataplug.formats.geospatial.laspc import LiDARPointCloud, partition_num_points, square_split_strategy
    from tests.test_lidar import assert_exactly_once

    las, paths = large_cloud
    co = CloudObject.from_url(LiDARPointCloud, str(paths[suffix])).preprocess()
    assert co.attributes.point_count == len(las.points) and co.attributes.blocks > 8
    for strategy, n in ((square_split_strategy, 16), (partition_num_points, 7)):
        assert_exactly_once([s.get() for s in co.partition(strategy, n)], las)
