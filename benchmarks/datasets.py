"""Datasets of many objects (issue 22): indexing a run of small objects as one dataset against opening them
one by one, and reading a glob of CSV.gz parts through a dataset partition against Dask's ``read_csv``.

Starts a moto server with the fault proxy in front of it (in this process, counting every request; its
``--first-byte-ms`` delays each response's headers, 0 by default) and uploads ``--objects`` small gzipped
CSV parts (rows drawn log-normally around ``--rows``) and ``--large`` larger ones of ``--large-rows`` rows.

1. Indexing the small parts: ``open_dataset("s3://b/run/part-*.csv.gz", executor=<spawn pool of --workers>)``
   against ``dataplug.open(url)`` for each of them in a loop (``--loop-objects`` of them, default all): time
   and requests per object (by method).
2. Reading every part (small and large): ``ds.partition("partition_num_chunks", --partitions)`` as a Dask
   dataframe (``dataplug.integrations.dask.to_dataframe``) against ``dask.dataframe.read_csv`` on the glob
   (``blocksize=None``: gzip cannot be split, one partition per file), the same ``groupby().sum()`` and rows
   per partition computed by one ``compute`` on Dask's threaded scheduler with ``--workers`` threads, best of
   two: time, and balance as max / mean rows per partition. Both read moto directly.

    python benchmarks/datasets.py [--objects 1000] [--workers 2] [--partitions 16]
"""

from __future__ import annotations

import argparse
import gzip
import multiprocessing
import os
import time
import uuid
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import fsspec
import numpy as np

import dataplug
from dataplug.datasets import open_dataset
from dataplug.testing.faultproxy import FaultProxy
from dataplug.testing.fixtures import REGION, start_moto

KEYS = 16


def _part(rng: np.random.Generator, rows: int) -> bytes:
    """A gzipped CSV part: ``id,key,amount`` rows."""
    keys = rng.integers(0, KEYS, rows)
    amounts = rng.integers(0, 10_000, rows)
    body = "".join(f"{i},k{k},{a}\n" for i, (k, a) in enumerate(zip(keys.tolist(), amounts.tolist())))
    return gzip.compress(("id,key,amount\n" + body).encode(), 6)


def upload(fs: Any, bucket: str, args: argparse.Namespace) -> dict[str, int]:
    """The parts, uploaded to moto directly; rows per object name."""
    rng = np.random.default_rng(22)
    sizes = np.maximum(1, rng.lognormal(np.log(args.rows), 0.8, args.objects).astype(int))
    files, rows = {}, {}
    for i, n in enumerate(sizes.tolist()):
        files[f"{bucket}/run/part-{i:05d}.csv.gz"], rows[f"part-{i:05d}.csv.gz"] = _part(rng, n), n
    for i in range(args.large):
        files[f"{bucket}/run/large-{i}.csv.gz"], rows[f"large-{i}.csv.gz"] = _part(rng, args.large_rows), args.large_rows
    fs.pipe(files)
    fs.invalidate_cache()
    return rows


def _methods(proxy: FaultProxy) -> str:
    counts = Counter(r.method if not (r.method == "GET" and "list-type" in r.target) else "LIST" for r in proxy.requests)
    return ", ".join(f"{method} {n}" for method, n in sorted(counts.items()))


def index_small(args: argparse.Namespace, proxy: FaultProxy, options: dict[str, Any], bucket: str) -> None:
    pattern = f"s3://{bucket}/run/part-*.csv.gz"
    with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(abs, range(args.workers)))  # workers started before the clock runs
        proxy.set_mode(None)
        started = time.perf_counter()
        ds = open_dataset(pattern, options, executor=pool, progress=False)
        dataset_seconds = time.perf_counter() - started
    dataset_requests, dataset_methods = len(proxy.requests), _methods(proxy)
    objects = len(ds)
    print(f"indexing {objects} small CSV.gz objects ({ds.attributes.bytes / objects / 1000:.1f} kB each on average):")
    print(f"  open_dataset on {args.workers} spawned processes: {dataset_seconds:6.2f} s, {dataset_requests / objects:5.2f} requests per object ({dataset_methods})")
    urls = [co.url for co in ds.objects][: args.loop_objects or objects]
    proxy.set_mode(None)
    started = time.perf_counter()
    for url in urls:
        dataplug.open(url, options, progress=False)
    loop_seconds = time.perf_counter() - started
    loop_requests, loop_methods = len(proxy.requests), _methods(proxy)
    per_object = loop_seconds / len(urls)
    print(f"  dataplug.open one by one ({len(urls)} objects): {loop_seconds:6.2f} s, {loop_requests / len(urls):5.2f} requests per object ({loop_methods})")
    print(
        f"  the dataset is {per_object * objects / dataset_seconds:.1f} x faster"
        + (f" (the loop's time per object x {objects})" if len(urls) < objects else "")
        + f" with {loop_requests / len(urls) / (dataset_requests / objects):.1f} x fewer requests per object"
    )


def read_all(args: argparse.Namespace, direct: dict[str, Any], bucket: str, rows: dict[str, int]) -> None:
    import dask
    import dask.dataframe as dd

    from dataplug.integrations.dask import to_dataframe

    pattern = f"s3://{bucket}/run/*.csv.gz"
    with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        started = time.perf_counter()
        ds = open_dataset(pattern, direct, executor=pool, progress=False)
        index_seconds = time.perf_counter() - started
    slices = ds.partition("partition_num_chunks", args.partitions)
    total = sum(rows.values())
    print(f"reading {len(ds)} CSV.gz objects ({total:,} rows, {args.large} of {args.large_rows:,} rows) on {args.workers} threads, best of 2:")
    print(f"  (the dataset's index, built once beforehand: {index_seconds:.2f} s)")

    def run(frame: Any) -> tuple[float, Any, Any]:
        best = None
        for _ in range(2):
            started = time.perf_counter()
            sums, lengths = dask.compute(frame.groupby("key")["amount"].sum(), frame.map_partitions(len), scheduler="threads", num_workers=args.workers)
            seconds = time.perf_counter() - started
            best = min(best or (seconds, sums, lengths), (seconds, sums, lengths), key=lambda run: run[0])
        return best  # type: ignore[return-value]

    ours = run(to_dataframe(slices))
    theirs = run(dd.read_csv(pattern, compression="gzip", blocksize=None, storage_options=direct))
    assert ours[1].sort_index().equals(theirs[1].sort_index()), "the two sums differ"
    for name, (seconds, _, lengths) in (("dataplug partitions", ours), ("dask read_csv glob", theirs)):
        counts = np.asarray(list(lengths))
        assert counts.sum() == total, (name, counts.sum(), total)
        print(f"  {name:<20} {seconds:6.2f} s  {counts.size:5d} partitions  max/mean rows {counts.max() / counts.mean():6.2f}")
    print(f"  dataplug is {theirs[0] / ours[0]:.2f} x Dask's speed; balance {np.max(list(theirs[2])) / np.mean(list(theirs[2])) / (np.max(list(ours[2])) / np.mean(list(ours[2]))):.1f} x better")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=1000, help="small parts (default 1000)")
    parser.add_argument("--rows", type=int, default=200, help="median rows of a small part (default 200)")
    parser.add_argument("--large", type=int, default=3, help="larger parts (default 3)")
    parser.add_argument("--large-rows", type=int, default=400_000, help="rows of a larger part (default 400,000)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--partitions", type=int, default=16, help="slices of the dataset for the read (default 16)")
    parser.add_argument("--loop-objects", type=int, default=0, help="objects opened one by one (default 0: all)")
    parser.add_argument("--first-byte-ms", type=float, default=0.0, help="delay of each response's headers (default 0)")
    args = parser.parse_args()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s", "AWS_DEFAULT_REGION": REGION}
    moto, endpoint = start_moto(env)
    try:
        direct = {"key": "k", "secret": "s", "client_kwargs": {"region_name": REGION}, "endpoint_url": endpoint}
        fs = fsspec.filesystem("s3", **direct)
        bucket = f"datasets-{uuid.uuid4().hex[:8]}"
        fs.mkdir(bucket)
        rows = upload(fs, bucket, args)
        with FaultProxy(endpoint, first_byte=args.first_byte_ms / 1000, lifetime=6 * 3600) as proxy:
            index_small(args, proxy, {**direct, "endpoint_url": proxy.endpoint}, bucket)
        read_all(args, direct, bucket, rows)
    finally:
        moto.terminate()
        moto.wait(10)


if __name__ == "__main__":
    main()
