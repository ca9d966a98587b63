"""Process hygiene: slices run on fork- and spawn-started pools after the parent used every format, and
fresh processes that build an index exit with code 0.

Every check runs in a subprocess of its own session with a timeout, and its whole process group is killed
afterwards, so a hung pool fails the test instead of wedging pytest.
"""

from __future__ import annotations

import gzip
import io
import json
import multiprocessing
import os
import signal
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import fsspec
import laspy
import numpy as np
import pytest

from dataplug import CloudObject
from dataplug.formats.compressed.gzipped import GZipText
from dataplug.formats.compressed.gzipped import partition_num_chunks as gzip_chunks
from dataplug.formats.generic.csv import CSV, CSVSlice
from dataplug.formats.generic.csv import partition_num_chunks as csv_chunks
from dataplug.formats.generic.text import UTF8Text
from dataplug.formats.generic.text import partition_num_chunks as text_chunks
from dataplug.formats.genomics.fastq import FASTQ, FASTQGZip, partition_reads_batches
from dataplug.formats.geospatial.copc import CloudOptimizedPointCloud, COPCSlice
from dataplug.formats.geospatial.copc import square_split_strategy as copc_square_split
from dataplug.formats.geospatial.laspc import LiDARPointCloud, LiDARSlice, square_split_strategy
from tests.copc_files import write_copc

from .conftest import make_bucket

ROOT = Path(__file__).resolve().parent.parent
#: Seconds a pool may take for one slice (they take milliseconds; a hung worker never returns).
SLICE_TIMEOUT = 60
SLICES = 4
CSV_ROWS, LINES, READS, POINTS = 6000, 8000, 3000, 120_000


def _csv(rng: np.random.Generator, rows: int) -> bytes:
    """``rows`` records, one in 50 with a quoted delimiter and newline."""
    notes = np.where(rng.random(rows) < 0.02, '"a, quoted\nnote"', "plain")
    values = np.round(rng.normal(0, 100, rows), 3)
    body = "".join(f"{i},station-{i % 97},{v},{n}\n" for i, (v, n) in enumerate(zip(values.tolist(), notes.tolist())))
    return ("id,station,value,note\n" + body).encode()


def _fastq(rng: np.random.Generator, reads: int) -> bytes:
    bases = np.frombuffer(b"ACGT", np.uint8)
    out = []
    for i in range(reads):
        n = int(rng.integers(50, 120))
        seq = bases[rng.integers(0, 4, n)].tobytes()
        out.append(b"@r%d\n%s\n+\n%s\n" % (i, seq, rng.integers(35, 74, n).astype(np.uint8).tobytes()))
    return b"".join(out)


def _cloud(rng: np.random.Generator, points: int) -> laspy.LasData:
    las = laspy.LasData(laspy.LasHeader(point_format=6, version="1.4"))
    las.header.scales, las.header.offsets = np.array([0.01, 0.01, 0.01]), np.zeros(3)
    las.x, las.y, las.z = rng.uniform(0, 500, points), rng.uniform(0, 500, points), rng.uniform(0, 50, points)
    las.intensity = np.arange(points) % 65536
    return las


def _objects() -> dict[str, tuple[Any, Any, bytes, int]]:
    """Per format: its class, a strategy, the object's bytes and how many records its slices must hold."""
    rng = np.random.default_rng(9)
    text = "".join(f"line {i} {'word ' * int(rng.integers(1, 9))}\n" for i in range(LINES)).encode()
    fastq = _fastq(rng, READS)
    las, laz = io.BytesIO(), io.BytesIO()
    cloud = _cloud(rng, POINTS)
    cloud.write(las, do_compress=False)
    # Written with lazrs's parallel compressor, so the parent's rayon pool is running, as after laspy.read.
    cloud.write(laz, do_compress=True, laz_backend=laspy.LazBackend.LazrsParallel)
    cloud.update_header()
    copc = write_copc(cloud, cap=4000, max_depth=4)
    return {
        "x.csv": (CSV, csv_chunks, _csv(rng, CSV_ROWS), CSV_ROWS),
        "x.txt": (UTF8Text, text_chunks, text, LINES),
        "x.txt.gz": (GZipText, gzip_chunks, gzip.compress(text), LINES),
        "x.fastq.gz": (FASTQGZip, partition_reads_batches, gzip.compress(fastq), READS),
        "x.fastq": (FASTQ, partition_reads_batches, fastq, READS),
        "x.las": (LiDARPointCloud, square_split_strategy, las.getvalue(), POINTS),
        "x.laz": (LiDARPointCloud, square_split_strategy, laz.getvalue(), POINTS),
        "x.copc.laz": (CloudOptimizedPointCloud, copc_square_split, copc, POINTS),
    }


def _result(piece: Any) -> Any:
    """The work of a pool worker: a slice's full result in a picklable form (points as their raw bytes)."""
    if isinstance(piece, (LiDARSlice, COPCSlice)):
        return piece.get().points.array.tobytes()
    if isinstance(piece, CSVSlice):
        return piece.get(), piece.as_arrow().to_pylist()
    return piece.get()


def _records(piece: Any, result: Any) -> int:
    if isinstance(piece, (LiDARSlice, COPCSlice)):
        return len(result) // piece.point_size
    if isinstance(piece, CSVSlice):
        return len(result[1])
    return len(result) // 4 if "fastq" in piece.url else len(result.splitlines())


def check_pools_after_parent_use(root: str, options_json: str) -> None:
    """Preprocess every format under ``root`` and read all its slices here, then read them again on a fork
    and a spawn process pool: every result must equal the parent's, within SLICE_TIMEOUT per slice."""
    options = json.loads(options_json)
    slices, expected = [], []
    for name, (fmt, strategy, data, records) in _objects().items():
        url = f"{root}/{name}"
        with fsspec.open(url, "wb", **options) as fh:
            fh.write(data)
        co = CloudObject.from_url(fmt, url, storage_options=options).preprocess(progress=False)
        pieces = co.partition(strategy, SLICES)
        with ThreadPoolExecutor(2) as threads:  # threads too: any native pool they start must not matter
            results = list(threads.map(_result, pieces))
        held = sum(_records(p, r) for p, r in zip(pieces, results))
        assert held == records, f"{name}: the slices hold {held} records, not {records}"
        slices += pieces
        expected += results
    for method in ("fork", "spawn"):
        with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context(method)) as pool:
            futures = [pool.submit(_result, piece) for piece in slices]
            for piece, future, want in zip(slices, futures, expected):
                try:
                    got = future.result(timeout=SLICE_TIMEOUT)
                except TimeoutError:
                    print(f"{method}: slice {piece.number} of {piece.url} did not finish in {SLICE_TIMEOUT} s", flush=True)
                    os.killpg(os.getpgrp(), signal.SIGKILL)  # this process and its hung workers, which hold its pipes
                assert got == want, f"{method}: slice {piece.number} of {piece.url} differs from the parent's"
        print(f"{method}: {len(slices)} slices exact", flush=True)


def _run_isolated(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    """Run ``python args`` in the repository in a session of its own; kill its whole process group after."""
    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"python {' '.join(args[:2])} ... did not finish in {timeout} s:\n{out}\n{err}")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_fork_and_spawn_pools_after_every_format(kind, tmp_path, request):
    if kind == "local":
        root, options = str(tmp_path), {}
    else:
        options = request.getfixturevalue("s3_options")
        root = f"s3://{make_bucket(options)}"
    code = "import sys; from tests.test_processes import check_pools_after_parent_use as check; check(sys.argv[1], sys.argv[2])"
    done = _run_isolated(["-c", code, root, json.dumps(options)], timeout=4 * SLICE_TIMEOUT)
    assert done.returncode == 0, f"exit code {done.returncode}:\n{done.stdout}\n{done.stderr}"
    assert done.stdout.splitlines() == [f"fork: {8 * SLICES} slices exact", f"spawn: {8 * SLICES} slices exact"]


BUILD_CODE = (
    "import sys; from dataplug import CloudObject; from dataplug.formats.generic.csv import CSV; "
    "CloudObject.from_url(CSV, sys.argv[1]).preprocess(progress=False)"
)


def test_fresh_index_builds_exit_cleanly(tmp_path):
    """50 fresh processes (CLI and library alternately), four at a time, each building a new CSV index;
    the abort at exit this guards against came in about 1 of 8 such builds."""
    data = _csv(np.random.default_rng(3), 7000)
    assert 150_000 < len(data) < 300_000

    def build(i: int) -> tuple[int, int, str]:
        path = tmp_path / f"b{i}.csv"
        path.write_bytes(data)
        args = ["-m", "dataplug.cli", "index", str(path), "--format", "CSV"] if i % 2 else ["-c", BUILD_CODE, str(path)]
        done = _run_isolated(args, timeout=120)
        return i, done.returncode, done.stderr[-300:]

    with ThreadPoolExecutor(4) as pool:
        failed = [r for r in pool.map(build, range(50)) if r[1] != 0]
    assert not failed, f"{len(failed)} of 50 builds failed: {failed[:3]}"
