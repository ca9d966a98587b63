"""The latency-true S3 bed the benchmarks read from, and what moto alone costs per ranged GET.

:class:`S3Bed` starts a moto server and, in a process of its own (so it never shares the GIL with the
client it serves), the project's fault proxy in front of it at S3-like settings: 30 ms to the first byte
and 90 MB/s per connection (AWS's figures, ``dataplug.testing.faultproxy.S3_FIRST_BYTE`` and
``S3_BANDWIDTH``), answering ranged GETs from its own copy of each object. Benchmarks upload through
``direct`` (moto, unpaced) and read through ``options`` (the bed).

Run as a script, it prints the time of one 64 KiB ranged GET of objects of ``--sizes-mb`` megabytes from
moto alone (it copies the whole object per GET) and through the bed (first byte delay included), the
median of ``--repeats``:

    python benchmarks/latency_bed.py --sizes-mb 8 64 437
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from typing import Any

import fsspec

from dataplug.testing.faultproxy import S3_BANDWIDTH, S3_FIRST_BYTE
from dataplug.testing.fixtures import REGION, start_moto

#: Seconds a HEAD validation of the bed's cache serves later requests (nothing bypasses the bed to write
#: during a benchmark; moto spends milliseconds of CPU per HEAD, which would otherwise load the machine).
REVALIDATE = 1.0


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux ``/proc``)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class S3Bed:
    """moto plus the latency proxy, each in its own process; a context manager.

    ``direct``: storage options for moto itself; ``options``: the same through the bed.
    ``first_byte`` and ``bandwidth`` (bytes per second per connection, 0 for unpaced) set the bed.
    """

    def __init__(self, first_byte: float = S3_FIRST_BYTE, bandwidth: float = S3_BANDWIDTH, cache_mb: int = 4000) -> None:
        self.first_byte, self.bandwidth, self.cache_mb = first_byte, bandwidth, cache_mb
        self.direct: dict[str, Any] = {}
        self.options: dict[str, Any] = {}
        self._moto: subprocess.Popen | None = None
        self._proxy: subprocess.Popen | None = None

    def __enter__(self) -> S3Bed:
        env = {**os.environ, "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s", "AWS_DEFAULT_REGION": REGION}
        self._moto, endpoint = start_moto(env)
        command = [
            sys.executable, "-m", "dataplug.testing.faultproxy", endpoint, "--first-byte", str(self.first_byte),
            "--bandwidth", str(self.bandwidth), "--cache-mb", str(self.cache_mb), "--revalidate", str(REVALIDATE),
        ]  # fmt: skip
        self._proxy = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self._proxy.stdout is not None
        proxied = self._proxy.stdout.readline().strip()
        base = {"key": "k", "secret": "s", "client_kwargs": {"region_name": REGION}}
        self.direct = {**base, "endpoint_url": endpoint}
        self.options = {**base, "endpoint_url": proxied}
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proxy is not None:
            self._proxy.kill()
            self._proxy.wait(10)
        if self._moto is not None:
            self._moto.terminate()
            self._moto.wait(10)

    def bucket(self, name: str) -> str:
        """Create bucket ``name`` on moto; its ``s3://`` URL."""
        fsspec.filesystem("s3", **self.direct).mkdir(name)
        return f"s3://{name}"

    def put(self, local: str, url: str) -> None:
        """Upload the file ``local`` to ``url`` directly on moto (uploads are not what the bed measures)."""
        fs = fsspec.filesystem("s3", **self.direct)
        fs.put_file(local, url)
        fs.invalidate_cache()

    def cpu(self) -> tuple[float, float]:
        """CPU seconds the proxy and moto have used so far (to tell when the bed, not the client, is the limit)."""
        assert self._proxy is not None and self._moto is not None
        return _cpu_seconds(self._proxy.pid), _cpu_seconds(self._moto.pid)


def _range_seconds(options: dict[str, Any], url: str, offset: int, repeats: int) -> float:
    """Median seconds of one 64 KiB ranged GET through a fresh s3fs filesystem."""
    fs = fsspec.filesystem("s3", skip_instance_cache=True, **options)
    fs.cat_file(url, start=0, end=1)  # connect first
    runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        fs.cat_file(url, start=offset, end=offset + 65536)
        runs.append(time.perf_counter() - started)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes-mb", type=int, nargs="+", default=[8, 64, 256])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with S3Bed() as bed:
        root = bed.bucket("bed")
        print(f"one 64 KiB ranged GET, median of {args.repeats}: moto alone vs the bed ({bed.first_byte * 1000:.0f} ms first byte, {bed.bandwidth / 1e6:.0f} MB/s per connection)")
        for mb in args.sizes_mb:
            url = f"{root}/o{mb}"
            with fsspec.open(url, "wb", **bed.direct) as fh:
                for _ in range(mb):
                    fh.write(os.urandom(10**6))
            offset = mb * 10**6 // 2
            moto = _range_seconds(bed.direct, url, offset, args.repeats)
            through = _range_seconds(bed.options, url, offset, args.repeats)
            print(f"  {mb:>5} MB object: moto alone {moto * 1000:7.1f} ms   through the bed {through * 1000:7.1f} ms")


if __name__ == "__main__":
    main()
