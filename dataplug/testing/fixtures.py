"""pytest fixtures of the conformance kit: a real S3 endpoint (moto's server on 127.0.0.1, reached over HTTP
by s3fs), a ``store`` fixture that runs a test once on local files and once on that endpoint, a fault
proxy in front of the endpoint, and a latency bed (the proxy at S3's first-byte delay and per-connection
bandwidth, serving ranged reads from its own copy of each object so that moto's copy of the whole object
per GET does not hide them).

dataplug's own tests import them in ``tests/conftest.py``; a plugin's tests add
``pytest_plugins = ["dataplug.testing.fixtures"]`` to their top-level ``conftest.py``. Needs the ``test``
extra (``moto[server]``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec
import pytest

from dataplug.testing.faultproxy import S3_BANDWIDTH, S3_FIRST_BYTE, FaultProxy

REGION = "eu-west-1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto(env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """``moto.server`` in its own process on a free loopback port (``env``: its environment), once it
    answers; the process and its endpoint URL. The caller terminates it."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                raise RuntimeError("moto server did not start") from None
            time.sleep(0.1)


@pytest.fixture(scope="session")
def moto_endpoint():
    """Start ``moto.server`` in its own process on a free loopback port; stop it at the end."""
    proc, endpoint = start_moto()
    # Workers in other processes (pools, Dask, Lithops) find the endpoint and credentials here too.
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION=REGION,
        AWS_ENDPOINT_URL_S3=endpoint,
    )
    yield endpoint
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="session")
def s3_options(moto_endpoint) -> dict[str, Any]:
    return {"endpoint_url": moto_endpoint, "key": "testing", "secret": "testing", "client_kwargs": {"region_name": REGION}}


def make_bucket(s3_options: dict[str, Any], name: str | None = None) -> str:
    name = name or f"b-{uuid.uuid4().hex[:12]}"
    fs = fsspec.filesystem("s3", **s3_options)
    fs.mkdir(name)
    return name


@dataclass
class Store:
    """Where a test puts its objects: a local folder or an S3 bucket on the moto server."""

    kind: str
    root: str
    options: dict[str, Any] = field(default_factory=dict)

    def url(self, name: str) -> str:
        return f"{self.root}/{name}"

    def put(self, name: str, data: bytes) -> str:
        url = self.url(name)
        with fsspec.open(url, "wb", **self.options) as fh:
            fh.write(data)
        if self.kind == "s3":
            fsspec.filesystem("s3", **self.options).invalidate_cache()
        return url

    def exists(self, url: str) -> bool:
        fs, path = fsspec.core.url_to_fs(url, **self.options)
        fs.invalidate_cache()
        return fs.exists(path)


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path: Path) -> Store:
    if request.param == "local":
        return Store("local", str(tmp_path))
    options = request.getfixturevalue("s3_options")
    return Store("s3", f"s3://{make_bucket(options)}", options)


@pytest.fixture
def local_store(tmp_path: Path) -> Store:
    return Store("local", str(tmp_path))


@pytest.fixture
def s3_store(s3_options) -> Store:
    return Store("s3", f"s3://{make_bucket(s3_options)}", s3_options)


#: The client's read timeout under the fault proxy: a stalled body is abandoned after this many idle seconds.
FAULT_READ_TIMEOUT = 0.5


@pytest.fixture(scope="session")
def fault_proxy(moto_endpoint):
    """A :class:`FaultProxy` in front of the moto server, forwarding everything until a test sets a mode."""
    with FaultProxy(moto_endpoint, stall_seconds=FAULT_READ_TIMEOUT + 1, lifetime=6 * 3600) as running:  # the whole session
        yield running


def proxied_options(s3_options: dict[str, Any], proxy: FaultProxy) -> dict[str, Any]:
    """``s3_options`` through ``proxy``, with a short read timeout so a stalled body is retried quickly."""
    return {**s3_options, "endpoint_url": proxy.endpoint, "config_kwargs": {"read_timeout": FAULT_READ_TIMEOUT, "connect_timeout": 2}}


#: Bytes of objects the latency bed keeps to answer ranged reads (least recently used first out).
BED_CACHE_BYTES = 2 * 2**30


@pytest.fixture(scope="session")
def latency_bed(moto_endpoint):
    """A :class:`FaultProxy` in front of the moto server at S3-like settings (:data:`S3_FIRST_BYTE` to the
    first byte, :data:`S3_BANDWIDTH` per connection), answering ranged GETs from its object cache; faults
    can be added with ``set_mode``."""
    bed = FaultProxy(moto_endpoint, first_byte=S3_FIRST_BYTE, bandwidth=S3_BANDWIDTH, cache_bytes=BED_CACHE_BYTES, lifetime=6 * 3600)
    with bed as running:
        yield running


def bed_options(s3_options: dict[str, Any], bed: FaultProxy) -> dict[str, Any]:
    """``s3_options`` through the latency bed ``bed``."""
    return {**s3_options, "endpoint_url": bed.endpoint}
