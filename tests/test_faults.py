"""Every format, preprocessed and read through a proxy that injects faults, gives exactly the records of the
data read directly; and many workers read slices concurrently without a failure."""

from __future__ import annotations

import gzip
import io
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from dataplug import CloudObject
from dataplug.formats.compressed import gzipped
from dataplug.formats.generic import csv, text
from dataplug.formats.genomics import fastq

from .conftest import make_bucket
from dataplug.testing.faultproxy import MODES, FaultProxy
from dataplug.testing.data import make_fastq

laspy = pytest.importorskip("laspy")
pytest.importorskip("lazrs")

from dataplug.formats.geospatial import laspc  # noqa: E402

from dataplug.testing.data import cloud, las_bytes, laz_bytes  # noqa: E402

from .test_lidar import ids  # noqa: E402

#: The client's read timeout: a stalled body is abandoned after this many idle seconds.
READ_TIMEOUT = 0.5
#: Fault on every k-th request (or k-th response with a body, for truncate and stall), from the second on.
EVERY = {"503": 6, "reset": 3, "truncate": 3, "stall": 6}


def _csv_data() -> bytes:
    rows = "".join(f'{i},name {i},"a, ""quoted"" note\n{i % 7}",{i * 0.5}\n' for i in range(6000))
    return ("id,name,note,value\n" + rows).encode()


def _text_data() -> bytes:
    rng = np.random.default_rng(3)
    words = ["alpha", "beta", "gämma", "δέλτα", "😀", "e"]
    return "".join(" ".join(words[j] for j in rng.integers(0, 6, rng.integers(0, 12))) + "\n" for _ in range(12000)).encode()


def _csv_records(slices: list, data: bytes) -> tuple[Any, Any]:
    whole = pacsv.read_csv(io.BytesIO(data), parse_options=pacsv.ParseOptions(newlines_in_values=True))
    return pa.concat_tables([s.as_arrow() for s in slices]).to_pylist(), whole.to_pylist()


def _line_records(slices: list, data: bytes) -> tuple[Any, Any]:
    return [line for s in slices for line in s.lines()], data.decode().splitlines()


def _gzip_line_records(slices: list, data: bytes) -> tuple[Any, Any]:
    return [line for s in slices for line in s.lines()], gzip.decompress(data).decode().splitlines()


def _fastq_records(slices: list, data: bytes) -> tuple[Any, Any]:
    plain = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    return [line for s in slices for line in s.get()], plain.decode().splitlines()


def _points(las) -> np.ndarray:
    """(id, x, y, z) rows sorted by id: every point exactly once, with its exact coordinates."""
    rows = np.column_stack([ids(las).astype(np.float64), np.asarray(las.x), np.asarray(las.y), np.asarray(las.z)])
    return rows[np.argsort(rows[:, 0], kind="stable")]


def _lidar_records(slices: list, data: bytes) -> tuple[Any, Any]:
    got = np.concatenate([_points(s.get()) for s in slices])
    return got[np.argsort(got[:, 0], kind="stable")].tolist(), _points(laspy.read(io.BytesIO(data))).tolist()


@dataclass(frozen=True)
class Case:
    """One format: its data (small), how to index and partition it, and its records two ways."""

    name: str
    format: type
    make: Callable[[], bytes]
    options: dict[str, Any]
    strategy: Callable[..., list]
    slices: int
    records: Callable[[list, bytes], tuple[Any, Any]]


def _gzip_text_data() -> bytes:
    return gzip.compress(_text_data() * 3)


def _fastq_gz_data() -> bytes:
    return gzip.compress(make_fastq(5000, 7))


def _laz_data() -> bytes:
    return laz_bytes(cloud(20000, 3), cuts=list(range(2500, 20000, 2500)))


CASES = [
    Case("CSV", csv.CSV, _csv_data, {"chunk_size": 64 * 1024}, csv.partition_num_chunks, 6, _csv_records),
    Case("UTF8Text", text.UTF8Text, _text_data, {"chunk_size": 64 * 1024}, text.partition_num_chunks, 6, _line_records),
    Case("GZipText", gzipped.GZipText, _gzip_text_data, {"spacing": 64 * 1024}, gzipped.partition_num_chunks, 6, _gzip_line_records),
    Case("FASTQGZip", fastq.FASTQGZip, _fastq_gz_data, {"spacing": 2**17}, fastq.partition_reads_batches, 6, _fastq_records),
    Case("FASTQ", fastq.FASTQ, lambda: make_fastq(3000, 8), {"chunk_size": 64 * 1024}, fastq.partition_reads_batches, 6, _fastq_records),
    Case("LAS", laspc.LiDARPointCloud, lambda: las_bytes(cloud(20000, 1)), {"block_points": 2500}, laspc.square_split_strategy, 4, _lidar_records),
    Case("LAZ", laspc.LiDARPointCloud, _laz_data, {}, laspc.square_split_strategy, 4, _lidar_records),
]


@pytest.fixture(scope="module")
def datasets(s3_options) -> dict[str, tuple[str, bytes]]:
    """Each case's data, once per module, in one bucket written directly (not through the proxy)."""
    bucket = make_bucket(s3_options)
    out = {}
    for case in CASES:
        data = case.make()
        assert len(data) <= 2 * 2**20
        out[case.name] = (bucket, data)
    return out


@pytest.fixture(scope="module")
def proxy(moto_endpoint):
    with FaultProxy(moto_endpoint, stall_seconds=READ_TIMEOUT + 1) as running:
        yield running


def _put(s3_options: dict[str, Any], url: str, data: bytes) -> None:
    fs = fsspec.filesystem("s3", **s3_options)
    fs.pipe_file(url, data)
    fs.invalidate_cache()


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
@pytest.mark.parametrize("mode", MODES)
def test_every_format_is_exact_under_faults(proxy, datasets, s3_options, mode, case):
    bucket, data = datasets[case.name]
    url = f"s3://{bucket}/{mode}/{case.name}.bin"
    _put(s3_options, url, data)
    options = {**s3_options, "endpoint_url": proxy.endpoint, "config_kwargs": {"read_timeout": READ_TIMEOUT, "connect_timeout": 2}}
    started = time.monotonic()
    proxy.set_mode(mode, every=EVERY[mode], first=2)
    co = CloudObject.from_url(case.format, url, storage_options=options).preprocess(progress=False, **case.options)
    slices = co.partition(case.strategy, case.slices)
    faults, requests = [proxy.faults.get(mode, 0)], [len(proxy.requests)]
    proxy.set_mode(mode, every=EVERY[mode], first=2)
    got, expected = case.records(slices, data)
    faults.append(proxy.faults.get(mode, 0))
    requests.append(len(proxy.requests))
    took = time.monotonic() - started
    print(f"{mode:>8} x {case.name:<9}: faults/requests preprocess {faults[0]}/{requests[0]}, slices {faults[1]}/{requests[1]}, {took:.1f} s")
    assert len(slices) == case.slices
    assert got == expected and len(expected) > 0
    assert min(faults) >= 1


def test_sixteen_workers_make_a_thousand_slice_reads(s3_options):
    """Load: 1,000 slice reads from 16 threads against the moto server, all exact, none failed."""
    bucket = make_bucket(s3_options)
    data = _csv_data()
    url = f"s3://{bucket}/load.csv"
    _put(s3_options, url, data)
    co = CloudObject.from_url(csv.CSV, url, storage_options=s3_options).preprocess(progress=False)
    slices = co.partition(csv.partition_num_chunks, 50)
    header = co.attributes.header
    expected = [s.get() for s in slices]
    assert "".join(part[len(header) :] for part in expected) == data.decode()[len(header) :]
    started = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda i: slices[i % len(slices)].get() == expected[i % len(slices)], range(1000)))
    elapsed = time.monotonic() - started
    print(f"load: 1000 slice reads on 16 threads in {elapsed:.1f} s, {results.count(False)} failures")
    assert results == [True] * 1000
