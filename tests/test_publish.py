"""Published read-only indexes over plain HTTP: moto's server reached with anonymous path-style URLs, so no
S3 client reads; the owner publishes with its credentials, users read with none."""

from __future__ import annotations

import gzip
import json

import fsspec
import pytest

import dataplug
from dataplug import CloudObject, IndexLocationNotWritableError, StaleIndexError
from dataplug.cli import main
from dataplug.publish import publish

from dataplug.testing.data import make_fastq


@pytest.fixture()
def public_bucket(s3_options, moto_endpoint):
    """A bucket whose objects anyone may GET (a bucket policy), and its plain-HTTP base URL."""
    fs = fsspec.filesystem("s3", **s3_options)
    name = f"public-{__import__('uuid').uuid4().hex[:10]}"
    fs.mkdir(name)
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{name}/*"}]}
    fs.call_s3("put_bucket_policy", Bucket=name, Policy=json.dumps(policy))
    return fs, name, f"{moto_endpoint}/{name}"


def _no_listing(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a published index is never listed")

    monkeypatch.setattr("fsspec.implementations.http.HTTPFileSystem._ls", refuse)


def test_publish_then_read_over_plain_http(public_bucket, capsys, monkeypatch):
    fs, bucket, http = public_bucket
    data = make_fastq(4000, 11)
    fs.pipe_file(f"{bucket}/data/x.fastq.gz", gzip.compress(data))
    url = f"{http}/data/x.fastq.gz"
    assert main(["publish", url, f"s3://{bucket}/index/", "--public-dest", f"{http}/index/", "-O", "spacing=65536"]) == 0
    assert "index_location=" in capsys.readouterr().out
    readme = fs.cat_file(f"{bucket}/index/x.fastq.gz.dataplug/README.txt").decode()
    assert url in readme and dataplug.__version__ in readme and "partition_num_chunks 64" in readme

    _no_listing(monkeypatch)
    co = dataplug.open(url, index_location=f"{http}/index/x.fastq.gz.dataplug/")
    assert co.published and co.format.name == "FASTQ"
    slices = co.partition("partition_reads_batches", 6)
    assert b"".join(s.raw() for s in slices) == data
    before = fs.find(f"{bucket}/index/")
    co.preprocess()  # fresh: nothing to do, nothing written
    assert fs.find(f"{bucket}/index/") == before


def test_a_stale_published_index_says_to_index_yourself(public_bucket):
    fs, bucket, http = public_bucket
    fs.pipe_file(f"{bucket}/t.txt", b"one\ntwo\n" * 100)
    publish(f"{http}/t.txt", f"s3://{bucket}/idx", "UTF8Text")
    publish(f"{http}/t.txt", f"s3://{bucket}/idx", "UTF8Text")  # publishing again replaces its own README
    fs.pipe_file(f"{bucket}/mine.dataplug/README.txt", b"my notes")
    with pytest.raises(IndexLocationNotWritableError, match="did not write"):
        publish(f"{http}/t.txt", f"s3://{bucket}/mine.dataplug", "UTF8Text")
    assert fs.cat_file(f"{bucket}/mine.dataplug/README.txt") == b"my notes"
    assert fs.find(f"{bucket}/mine.dataplug/") == [f"{bucket}/mine.dataplug/README.txt"]  # refused before any pass
    fs.pipe_file(f"{bucket}/t.txt", b"changed\n" * 100)
    co = CloudObject.from_url("UTF8Text", f"{http}/t.txt", index_location=f"{http}/idx/t.txt.dataplug")
    with pytest.raises(StaleIndexError, match="published index .*index the object yourself"):
        co.partition("partition_num_chunks", 2)
    with pytest.raises(IndexLocationNotWritableError, match="read-only"):
        co.preprocess()
