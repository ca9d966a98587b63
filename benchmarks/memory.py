"""Memory benchmark: peak RSS of preprocessing against the object's size, at full and half size.

Generates, seeded and in a temporary folder (``--dir``) that is removed afterwards:
- a CSV of about ``--csv-mb`` MB (default 1024; the demo's generator, 1 % of rows with a quoted newline);
- a FASTQ of about ``--fastq-mb`` MB uncompressed (default 950), compressed with ``gzip -6`` to about
  half (random reads: 950 MB gives the issue's ~500 MB FASTQ.gz);
and the same at half size. Each object is preprocessed once in a fresh Python process (local file, default
thread pool, a fresh index), which reports its own peak RSS and its RSS after the imports. The peak is
``VmHWM`` from ``/proc/self/status`` (Linux), not ``ru_maxrss``: Linux carries ``ru_maxrss`` across
``exec``, so a child started from this script would report this script's own peak. Flat memory means the
peak barely moves when the object doubles.

    python benchmarks/memory.py --csv-mb 1024 --fastq-mb 950
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

from dataplug.demo import generate_csv, generate_fastq

CHILD = """
import json, sys, time
from dataplug import CloudObject
from dataplug.format import get_format
import dataplug.formats.generic.csv, dataplug.formats.genomics.fastq
def status_kb(field):
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(field + ":"))
co = CloudObject.from_url(get_format(sys.argv[1]), sys.argv[2], index_location=sys.argv[3])
floor = status_kb("VmRSS")
t0 = time.perf_counter()
co.preprocess(progress=False)
seconds = time.perf_counter() - t0
print(json.dumps({"floor_kb": floor, "peak_kb": status_kb("VmHWM"), "seconds": seconds}))
"""


def measure(fmt: str, path: str, index: str) -> dict:
    """Preprocess ``path`` in a fresh interpreter; its RSS after imports, peak RSS and seconds."""
    done = subprocess.run([sys.executable, "-c", CHILD, fmt, path, index], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def make_fastq_gz(path: str, size_mb: int) -> None:
    generate_fastq(path, size_mb)
    subprocess.run(["gzip", "-6", "-f", path], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv-mb", type=int, default=1024)
    parser.add_argument("--fastq-mb", type=int, default=950, help="uncompressed MB of the FASTQ before gzip -6")
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        for fmt, full_mb, make, name in (
            ("CSV", args.csv_mb, generate_csv, "data.csv"),
            ("FASTQGZip", args.fastq_mb, make_fastq_gz, "reads.fastq"),
        ):
            for mb in (full_mb // 2, full_mb):
                path = os.path.join(folder, f"{mb}-{name}")
                make(path, mb)
                if fmt == "FASTQGZip":
                    path += ".gz"
                got = measure(fmt, path, os.path.join(folder, f"index-{fmt}-{mb}"))
                rows.append((fmt, os.path.getsize(path), got))
                os.remove(path)

    print(f"Peak RSS of preprocessing, one fresh process per object ({os.cpu_count()} cores, default thread pool)")
    print(f"{'format':10s} {'object':>10s} {'after imports':>14s} {'peak RSS':>10s} {'peak - imports':>15s} {'time':>8s}")
    for fmt, size, got in rows:
        floor, peak = got["floor_kb"] / 1024, got["peak_kb"] / 1024
        print(f"{fmt:10s} {size / 1e6:7.0f} MB {floor:11.0f} MB {peak:7.0f} MB {peak - floor:12.0f} MB {got['seconds']:6.1f} s")


if __name__ == "__main__":
    main()
