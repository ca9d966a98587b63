"""S3 transport benchmark: dataplug's ranged reads (``StorageObject.read_ranges`` over s3fs/aiobotocore)
against obstore (Rust ``object_store``) on the latency bed, and which of dataplug's guarantees obstore keeps.

On the latency bed (``benchmarks/latency_bed.py``: moto behind the project's proxy at 30 ms to the first byte
and 90 MB/s per connection, ranges served from the proxy's copy of the object) it puts one random object of
``--size-mb`` MB and times, A B A B in turns, ``--repeats`` rounds:

- ``--small`` ranges of 64 KiB at random offsets (distinct, 64 KiB apart at least);
- ``--large`` ranges of 16 MiB (consecutive);

each read by
- ``read_ranges via s3fs`` and ``read_ranges via obstore``: dataplug's
  ``StorageObject.read_ranges(ranges, expect=info, max_gap=0)`` through each S3 transport
  (``DATAPLUG_S3_TRANSPORT``): one request per range, pinned with ``If-Match``, at most
  ``policy.concurrency`` in flight, every body's length checked, retried by dataplug's own loop;
- ``obstore get``: raw ``obstore.get_async`` with ``GetOptions(range=..., if_match=etag)`` per range under a
  semaphore of the same concurrency (what the obstore transport costs over obstore itself);
- ``obstore get_ranges``: ``obstore.get_ranges_async(..., coalesce=0)`` (unpinned: it takes no options; its
  own parallelism).

It prints per contender the min and median seconds, requests/s and MB/s, the ratio of medians to dataplug's,
and the proxy's and moto's CPU seconds over the run (when the bed, not the client, is the bottleneck, these
approach the wall time). With ``--guarantees`` it then puts an in-process fault proxy in front of moto and
reports what obstore does on a replaced object (``If-Match``), a truncated body, a stalled body (read
timeout), 503 SlowDown and a reset connection, and a Range the server ignores.

    python benchmarks/storage_transport.py --small 1000 --large 8 --repeats 5 --guarantees
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time
from datetime import timedelta
from typing import Any, Callable

import fsspec
import obstore
from latency_bed import S3Bed
from obstore.store import S3Store

from dataplug.errors import StaleIndexError
from dataplug.storage import CONNECT_TIMEOUT, READ_TIMEOUT, ObjectInfo, StorageObject
from dataplug.storage.obstore_s3 import TRANSPORT_ENV
from dataplug.testing.faultproxy import FaultProxy, HostileHTTPServer
from dataplug.testing.fixtures import REGION

SMALL = 64 * 2**10
LARGE = 16 * 2**20


def obstore_store(bucket: str, options: dict[str, Any], read_timeout: float = READ_TIMEOUT, retries: int = 4) -> S3Store:
    """An obstore S3 store on the endpoint of ``options``, with dataplug's timeouts and attempt count."""
    return S3Store(
        bucket,
        endpoint=options["endpoint_url"],
        access_key_id=options["key"],
        secret_access_key=options["secret"],
        region=REGION,
        virtual_hosted_style_request=False,
        client_options={
            "allow_http": True,
            "connect_timeout": timedelta(seconds=CONNECT_TIMEOUT),
            "read_timeout": timedelta(seconds=read_timeout),
            "timeout": timedelta(seconds=600),
        },
        retry_config={"max_retries": retries, "retry_timeout": timedelta(seconds=120)},
    )


async def _obstore_get(store: S3Store, key: str, ranges: list[tuple[int, int]], etag: str, concurrency: int) -> list[bytes]:
    gate = asyncio.Semaphore(concurrency)

    async def one(a: int, b: int) -> bytes:
        async with gate:
            result = await obstore.get_async(store, key, options={"range": (a, b), "if_match": etag})
            return (await result.bytes_async()).to_bytes()

    return list(await asyncio.gather(*(one(a, b) for a, b in ranges)))


async def _obstore_get_ranges(store: S3Store, key: str, ranges: list[tuple[int, int]]) -> list[bytes]:
    got = await obstore.get_ranges_async(store, key, starts=[a for a, _ in ranges], ends=[b for _, b in ranges], coalesce=0)
    return [part.to_bytes() for part in got]


def through(url: str, options: dict[str, Any], transport: str) -> StorageObject:
    """A storage object of ``url`` whose ranges are read through ``transport`` (``s3fs`` or ``obstore``)."""
    os.environ[TRANSPORT_ENV] = transport
    try:
        obj = StorageObject(url, options)
        assert type(obj.transport).__name__ == {"s3fs": "S3Transport", "obstore": "ObstoreS3Transport"}[transport]
    finally:
        del os.environ[TRANSPORT_ENV]
    return obj


def contenders(
    url: str, options: dict[str, Any], store: S3Store, key: str, ranges: list[tuple[int, int]], loop: asyncio.AbstractEventLoop
) -> dict[str, Callable[[], list[bytes]]]:
    """The four readers of ``ranges``, each a call returning the ranges' bytes. Raw obstore's run on ``loop``,
    one loop for the whole run as s3fs's is (``asyncio.run`` per call spends seconds closing its loop after
    obstore's large reads)."""
    via_s3fs, via_obstore = through(url, options, "s3fs"), through(url, options, "obstore")
    info = via_s3fs.info()
    etag = info.identity.partition(":")[2]
    concurrency = via_s3fs.policy.concurrency
    return {
        "read_ranges via s3fs": lambda: via_s3fs.read_ranges(ranges, expect=info, max_gap=0),
        "read_ranges via obstore": lambda: via_obstore.read_ranges(ranges, expect=info, max_gap=0),
        "obstore get (pinned)": lambda: loop.run_until_complete(_obstore_get(store, key, ranges, etag, concurrency)),
        "obstore get_ranges": lambda: loop.run_until_complete(_obstore_get_ranges(store, key, ranges)),
    }


def race(name: str, runners: dict[str, Callable[[], list[bytes]]], expected: list[bytes], repeats: int, bed: S3Bed) -> None:
    """Run every contender once to check its bytes and warm it, then ``repeats`` timed rounds in turns; print."""
    for run in runners.values():
        assert run() == expected
    times: dict[str, list[float]] = {label: [] for label in runners}
    cpu_before = bed.cpu()
    for _ in range(repeats):
        for label, run in runners.items():
            started = time.perf_counter()
            run()
            times[label].append(time.perf_counter() - started)
    proxy_cpu, moto_cpu = (after - before for after, before in zip(bed.cpu(), cpu_before))
    wall = sum(sum(t) for t in times.values())
    count, nbytes = len(expected), sum(len(part) for part in expected)
    base = statistics.median(times["read_ranges via s3fs"])
    print(f"{name}: {count} ranges, {nbytes / 1e6:.1f} MB; {repeats} rounds in turns; bed CPU over {wall:.1f} s: proxy {proxy_cpu:.1f} s, moto {moto_cpu:.1f} s")
    for label, runs in times.items():
        median = statistics.median(runs)
        print(
            f"  {label:<24} min {min(runs):7.3f} s  median {median:7.3f} s  {count / median:7.0f} requests/s  "
            f"{nbytes / median / 1e6:7.1f} MB/s  median / s3fs's {median / base:5.2f}"
        )


def guarantees(bed: S3Bed, bucket: str) -> None:
    """What obstore does where dataplug has a guarantee, through an in-process fault proxy in front of moto."""
    moto = bed.direct["endpoint_url"]
    key, data = "guarantees.bin", os.urandom(2 * 2**20)
    direct = obstore_store(bucket, bed.direct)
    obstore.put(direct, key, data)
    etag = obstore.head(direct, key)["e_tag"]
    print("obstore (get_async with a range), through a fault proxy in front of moto:")

    def attempt(store: S3Store, options: dict[str, Any]) -> str:
        started = time.perf_counter()
        try:
            got = bytes(obstore.get(store, key, options=options).bytes())
        except Exception as exc:  # noqa: BLE001 - the exception is the result reported
            return f"raises {type(exc).__name__} after {time.perf_counter() - started:.1f} s"
        a, b = options.get("range", (0, len(data)))
        verdict = "exact" if got == data[a:b] else f"WRONG ({len(got)} of {b - a} bytes)"
        return f"{verdict} after {time.perf_counter() - started:.1f} s"

    with FaultProxy(moto, stall_seconds=3.0) as proxy:
        store = obstore_store(bucket, {**bed.direct, "endpoint_url": proxy.endpoint}, read_timeout=1.0)
        for mode, every in (("503", 2), ("reset", 2), ("truncate", 2), ("stall", 2)):
            proxy.set_mode(mode, every=every, first=1)
            outcome = attempt(store, {"range": (1000, 1_500_000), "if_match": etag})
            print(f"  {mode:<9} on every 2nd response: {outcome}; {len(proxy.requests)} requests, {proxy.faults.get(mode, 0)} faulted")
        proxy.set_mode("truncate", every=1, first=1, spare=False)
        print(f"  truncate  on every response: {attempt(store, {'range': (1000, 1_500_000)})}; {len(proxy.requests)} requests")
        proxy.set_mode(None)
        obstore.put(direct, key, data[::-1])
        print(f"  If-Match on a replaced object: {attempt(store, {'range': (0, 1000), 'if_match': etag})}")
        obj = StorageObject(f"s3://{bucket}/{key}", {**bed.direct, "endpoint_url": proxy.endpoint})
        try:
            obj.read_ranges([(0, 1000)], expect=ObjectInfo(size=len(data), identity=f"etag:{etag}"))
            print("  dataplug on the same: no error (WRONG)")
        except StaleIndexError:
            print("  dataplug on the same: raises StaleIndexError")
    with HostileHTTPServer({"o": data}, mode="ignore-range", claimed_size=len(data) * 64) as server:
        from obstore.store import HTTPStore

        http = HTTPStore(server.url(""), client_options={"allow_http": True, "timeout": timedelta(seconds=10)})
        started = time.perf_counter()
        try:
            got = bytes(obstore.get_range(http, "o", start=1000, end=2000))
            outcome = f"returns {len(got)} bytes"
        except Exception as exc:  # noqa: BLE001 - the exception is the result reported
            outcome = f"raises {type(exc).__name__}"
        print(f"  a server that ignores Range (200, {len(data) * 64 / 1e6:.0f} MB body): {outcome} after {time.perf_counter() - started:.2f} s, {server.sent / 1e6:.1f} MB sent")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=160)
    parser.add_argument("--small", type=int, default=500, help="64 KiB ranges (200-1000)")
    parser.add_argument("--large", type=int, default=8, help="16 MiB ranges")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--guarantees", action="store_true")
    args = parser.parse_args()
    size = args.size_mb * 10**6
    assert args.small * 2 * SMALL <= size and args.large * LARGE <= size, "--size-mb too small for the ranges"
    data = os.urandom(size)
    rng = random.Random(0)
    small = sorted(rng.sample(range(size // (2 * SMALL)), args.small))
    small_ranges = [(i * 2 * SMALL, i * 2 * SMALL + SMALL) for i in small]
    large_ranges = [(i * LARGE, (i + 1) * LARGE) for i in range(args.large)]
    print(f"load before: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} cores")
    with S3Bed() as bed:
        root = bed.bucket("transport")
        key = "object.bin"
        fsspec.filesystem("s3", **bed.direct).pipe_file(f"{root}/{key}", data)
        obj = StorageObject(f"{root}/{key}", bed.options)
        store = obstore_store("transport", bed.options)
        print(f"bed: {bed.first_byte * 1000:.0f} ms to the first byte, {bed.bandwidth / 1e6:.0f} MB/s per connection; object {size / 1e6:.0f} MB; "
              f"dataplug's concurrency {obj.policy.concurrency}")
        loop = asyncio.new_event_loop()
        for name, ranges in (("small ranges (64 KiB)", small_ranges), ("large ranges (16 MiB)", large_ranges)):
            race(name, contenders(f"{root}/{key}", bed.options, store, key, ranges, loop), [data[a:b] for a, b in ranges], args.repeats, bed)
        loop.close()
        if args.guarantees:
            guarantees(bed, "transport")
    print(f"load after: {os.getloadavg()[0]:.2f} (1 min)")


if __name__ == "__main__":
    main()
