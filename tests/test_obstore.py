"""The obstore S3 range transport: when it is chosen, what it refuses to map, errors it types, and fork and
spawn pools after the parent read through it (tokio's runtime does not survive a fork). The guarantees
shared with the s3fs transport are tested on both in test_storage.py and test_ranges.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import fsspec
import pytest

from dataplug.errors import StaleIndexError
from dataplug.storage import StorageObject, read_stats
from dataplug.storage.obstore_s3 import TRANSPORT_ENV, ObstoreS3Transport, obstore_config, s3_transport
from dataplug.storage.stores import RangeIgnoredError, S3Transport
from dataplug.testing.faultproxy import HostileHTTPServer
from dataplug.testing.fixtures import proxied_options

from .conftest import make_bucket

pytest.importorskip("obstore")

ROOT = Path(__file__).resolve().parent.parent
DATA = bytes(range(251)) * 4000
#: Seconds the pool script may take (its reads take well under a second; a hung fork child never returns).
POOL_TIMEOUT = 120


def _put(options: dict, data: bytes = DATA, name: str = "o.bin") -> str:
    url = f"s3://{make_bucket(options)}/{name}"
    fs = fsspec.filesystem("s3", **options)
    fs.pipe_file(url, data)
    fs.invalidate_cache()
    return url


def test_obstore_reads_s3_ranges_by_default(s3_options, monkeypatch):
    monkeypatch.delenv(TRANSPORT_ENV, raising=False)
    obj = StorageObject(_put(s3_options), s3_options)
    assert isinstance(obj.transport, ObstoreS3Transport)
    expect = obj.info()
    read_stats.reset()
    assert obj.read_ranges([(0, 10), (50_000, 60_000)], expect=expect, max_gap=0) == [DATA[:10], DATA[50_000:60_000]]
    assert read_stats.requests[obj.url] == 2


def test_options_without_a_faithful_mapping_read_through_s3fs(s3_options, monkeypatch):
    monkeypatch.delenv(TRANSPORT_ENV, raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")  # the session's moto endpoint: these options name AWS itself
    url = "s3://bucket/key"
    for options in (
        {**s3_options, "requester_pays": True},
        {**s3_options, "config_kwargs": {"signature_version": "s3"}},
        {**s3_options, "client_kwargs": {"region_name": "eu-west-1", "verify": False}},
        {"key": "k", "secret": "s"},  # AWS with no region: botocore follows the bucket's region, obstore cannot
        {"key": "k"},
    ):
        assert obstore_config("bucket", options) is None, options
        assert type(s3_transport(StorageObject(url, options))) is S3Transport
    monkeypatch.setenv(TRANSPORT_ENV, "obstore")
    with pytest.raises(ValueError, match="no faithful obstore equivalent"):
        s3_transport(StorageObject(url, {**s3_options, "requester_pays": True}))
    monkeypatch.setenv(TRANSPORT_ENV, "s3fs")
    assert type(s3_transport(StorageObject(url, s3_options))) is S3Transport


def test_the_mapping_addresses_the_bucket_as_botocore_does(s3_options, monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    aws = obstore_config("my-bucket", {"key": "k", "secret": "s", "client_kwargs": {"region_name": "eu-west-1"}})
    assert aws is not None and aws["endpoint"] == "https://my-bucket.s3.eu-west-1.amazonaws.com" and aws["virtual_hosted_style_request"]
    dotted = obstore_config("my.bucket", {"key": "k", "secret": "s", "client_kwargs": {"region_name": "eu-west-1"}})
    assert dotted is not None and dotted["endpoint"] == "https://s3.eu-west-1.amazonaws.com" and not dotted["virtual_hosted_style_request"]
    custom = obstore_config("b", {**s3_options, "config_kwargs": {"read_timeout": 7}})
    assert custom is not None and custom["endpoint"] == s3_options["endpoint_url"] and not custom["virtual_hosted_style_request"]
    assert custom["client_options"]["allow_http"] and custom["client_options"]["read_timeout"].total_seconds() == 7
    assert custom["retry_config"]["max_retries"] == 0  # every attempt is dataplug's
    assert obstore_config("b", {**s3_options, "anon": True})["skip_signature"]  # type: ignore[index]


def test_profiles_sign_with_botocores_credentials(tmp_path, monkeypatch, s3_options):
    (tmp_path / "credentials").write_text("[other]\naws_access_key_id = from-profile\naws_secret_access_key = its-secret\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    config = obstore_config("b", {"endpoint_url": s3_options["endpoint_url"], "profile": "other"})
    assert config is not None
    got = config["credential_provider"]()
    assert (got["access_key_id"], got["secret_access_key"]) == ("from-profile", "its-secret")


@pytest.mark.parametrize("mode", ["503", "reset"])
def test_faults_before_the_body_are_retried_and_counted(fault_proxy, s3_options, monkeypatch, mode):
    monkeypatch.setenv(TRANSPORT_ENV, "obstore")
    obj = StorageObject(_put(s3_options), proxied_options(s3_options, fault_proxy))
    expect = obj.info()
    ranges = [(0, 1000), (100_000, 200_000), (500_000, 600_000)]
    fault_proxy.set_mode(mode, every=2, first=1)
    read_stats.reset()
    assert obj.read_ranges(ranges, expect=expect, max_gap=0) == [DATA[a:b] for a, b in ranges]
    assert fault_proxy.faults[mode] >= 1
    gets = [r for r in fault_proxy.requests if r.method == "GET"]
    assert read_stats.requests[obj.url] == len(gets)  # obstore retries nothing by itself: every request is counted


def test_a_replaced_object_is_stale(s3_options, monkeypatch):
    monkeypatch.setenv(TRANSPORT_ENV, "obstore")
    url = _put(s3_options)
    obj = StorageObject(url, s3_options)
    expect = obj.info()
    fsspec.filesystem("s3", **s3_options).pipe_file(url, DATA[::-1])
    with pytest.raises(StaleIndexError, match="ETag no longer matches"):
        obj.read_range(0, 10, expect=expect)


def test_an_s3_endpoint_that_ignores_range_is_named(monkeypatch):
    monkeypatch.setenv(TRANSPORT_ENV, "obstore")
    with HostileHTTPServer({"bkt/o.bin": DATA}, mode="ignore-range", claimed_size=len(DATA) * 64) as server:
        endpoint = server.url("").rstrip("/")
        obj = StorageObject("s3://bkt/o.bin", {"endpoint_url": endpoint, "key": "k", "secret": "s", "client_kwargs": {"region_name": "eu-west-1"}})
        assert isinstance(obj.transport, ObstoreS3Transport)
        with pytest.raises(RangeIgnoredError, match="ignored the Range request"):
            obj.read_range(1000, 2000)
        assert server.sent < len(DATA) * 64 // 2  # not downloaded whole


_POOLS = """
import multiprocessing, os, sys
from dataplug import CloudObject
from dataplug.formats.generic.csv import CSV, partition_num_chunks
from dataplug.storage import StorageObject
from dataplug.storage.obstore_s3 import ObstoreS3Transport

def read(s):
    return s.get()

if __name__ == "__main__":
    url, endpoint = sys.argv[1], sys.argv[2]
    options = {"endpoint_url": endpoint, "key": "testing", "secret": "testing", "client_kwargs": {"region_name": "eu-west-1"}}
    co = CloudObject.from_url(CSV, url, storage_options=options).preprocess(progress=False)
    slices = co.partition(partition_num_chunks, 4)
    parent = [s.get() for s in slices]
    obj = StorageObject(url, options)
    assert isinstance(obj.transport, ObstoreS3Transport)
    obj.read_range(0, 10, expect=obj.info())  # the parent's tokio runtime is running
    for method in ("fork", "spawn"):
        with multiprocessing.get_context(method).Pool(2) as pool:
            assert pool.map_async(read, slices).get(60) == parent, method
    print("ok", len(parent))
"""


def test_fork_and_spawn_pools_read_after_the_parent_used_obstore(s3_options, tmp_path):
    text = "id,name\n" + "".join(f"{i},row {i}\n" for i in range(4000))
    url = _put(s3_options, text.encode(), "d.csv")
    script = tmp_path / "pools.py"
    script.write_text(textwrap.dedent(_POOLS))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop(TRANSPORT_ENV, None)
    proc = subprocess.Popen(
        [sys.executable, str(script), url, s3_options["endpoint_url"]], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=POOL_TIMEOUT)
    except subprocess.TimeoutExpired:
        out, err = "", "timed out: a pool hung"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    assert out.startswith("ok 4"), err[-2000:]
