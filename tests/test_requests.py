"""Requests per command, counted on S3 through the fault proxy (forwarding everything, logging each request):
opening a new object (its index written), and a later open and partition of an indexed one."""

from __future__ import annotations

import gzip

import fsspec
import pytest

import dataplug
from dataplug.testing.data import make_csv, make_fastq
from dataplug.testing.faultproxy import FaultProxy
from dataplug.testing.fixtures import make_bucket, proxied_options

#: The goals of the requests table: the first open of a new CSV (index writes included), and a later
#: open and partition of an indexed CSV and FASTQ.gz, each from a new CloudObject.
FIRST_OPEN = 8
LATER_OPEN_AND_PARTITION = 3
#: A CSV of about 3 MB (the table's object) and a FASTQ.gz of a few MB.
CSV_ROWS = 120_000
FASTQ_READS = 40_000


def _logged(proxy: FaultProxy) -> list[str]:
    """The proxy's log as ``METHOD target`` lines, printed so a failure shows what was asked."""
    lines = [f"{r.method} {r.target} {r.headers.get('Range', '')}".rstrip() for r in proxy.requests]
    print("\n".join(lines))
    return lines


@pytest.fixture
def objects(s3_options) -> dict[str, str]:
    """A new CSV and a new FASTQ.gz in a fresh bucket."""
    bucket = make_bucket(s3_options)
    fs = fsspec.filesystem("s3", **s3_options)
    urls = {"csv": f"s3://{bucket}/table.csv", "fastq.gz": f"s3://{bucket}/reads.fastq.gz"}
    fs.pipe_file(urls["csv"], make_csv(CSV_ROWS))
    fs.pipe_file(urls["fastq.gz"], gzip.compress(make_fastq(FASTQ_READS, 1)))
    fs.invalidate_cache()
    return urls


def test_the_first_open_of_a_new_csv(fault_proxy, s3_options, objects):
    options = proxied_options(s3_options, fault_proxy)
    fault_proxy.set_mode(None)
    co = dataplug.open(objects["csv"], options, progress=False)
    assert co.built_index and co.format.name == "CSV"
    requests = _logged(fault_proxy)
    print(f"first open of a {co.size}-byte CSV: {len(requests)} requests")
    assert len(requests) <= FIRST_OPEN


@pytest.mark.parametrize(("kind", "strategy"), [("csv", "partition_num_chunks"), ("fastq.gz", "partition_reads_batches")])
def test_a_later_open_and_partition(fault_proxy, s3_options, objects, kind, strategy):
    options = proxied_options(s3_options, fault_proxy)
    dataplug.open(objects[kind], options, progress=False)
    fault_proxy.set_mode(None)
    co = dataplug.open(objects[kind], options, progress=False)
    slices = co.partition(strategy, 4)
    assert not co.built_index and len(slices) == 4
    requests = _logged(fault_proxy)
    print(f"later open + partition of a {co.size}-byte {kind}: {len(requests)} requests")
    assert len(requests) <= LATER_OPEN_AND_PARTITION
    assert not [line for line in requests if not line.startswith(("GET", "HEAD"))]  # nothing written
