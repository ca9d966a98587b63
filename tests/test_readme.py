"""The README's Python blocks run as written: each is saved as a script and run in a fresh interpreter
against the moto server (the objects they name are put there first). A block whose first line starts with
``# needs:`` needs something a test machine lacks (a cloud account, a configured engine) and is skipped, as is
a block importing an engine that is not installed (``pip install -e ".[test]"`` leaves out Dask, Lithops, Ray).
The command lines of its "Command line" section run too, each as a shell line, on the same server and on
local files with the names they use."""

from __future__ import annotations

import gzip
import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import fsspec
import pytest

from tests.test_csv import _whole
from dataplug.testing.codecs import bgzf
from dataplug.testing.data import SPAN, cloud, laz_bytes, make_csv, make_fastq, make_vcf

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_readme_has_python_blocks():
    assert len(BLOCKS) >= 2


@pytest.fixture(scope="module")
def bucket(s3_options) -> dict[str, int]:
    """``s3://bucket`` on the moto server with the objects the README names."""
    fs = fsspec.filesystem("s3", **s3_options)
    if not fs.exists("bucket"):
        fs.mkdir("bucket")
    csv = make_csv(5000)
    fastq = make_fastq(3000, 5)
    fs.pipe_file("bucket/big.csv", csv)
    fs.pipe_file("bucket/reads.fastq.gz", gzip.compress(fastq))
    for k in range(3):  # the Datasets section's sequencing run, sales parts and LiDAR survey
        fs.pipe_file(f"bucket/run42/lane{k}.fastq.gz", gzip.compress(make_fastq(400, 10 + k)))
    sales = [f"{['north', 'south', 'east'][i % 3]},{i % 50}\n" for i in range(3000)]
    fs.pipe_file("bucket/sales/part-0.csv", ("region,amount\n" + "".join(sales[:1000])).encode())
    fs.pipe_file("bucket/sales/part-1.csv.gz", gzip.compress(("region,amount\n" + "".join(sales[1000:])).encode()))
    for k in range(4):
        las = cloud(3000, 6, seed=k)
        las.X, las.Y = las.X + (k % 2) * SPAN, las.Y + (k // 2) * SPAN
        las.update_header()
        fs.pipe_file(f"bucket/survey/tile-{k}.laz", laz_bytes(las))
    # The regions and htsget sections' BED and BGZF VCF
    peaks = "".join(f"{chrom}\t{b}\t{b + 500}\tpeak{b}\n" for chrom in ("chr1", "chrX") for b in range(900_000, 2_100_000, 10_000))
    fs.pipe_file("bucket/peaks.bed.gz", gzip.compress(peaks.encode()))
    fs.pipe_file("bucket/calls.vcf.gz", bgzf(make_vcf(3000).encode())[0])
    genome = "".join(f">{name}\n" + "".join("ACGT"[(i * 7 + k) % 4] + ("\n" if i % 60 == 59 else "") for i in range(30_000)) + "\n" for k, name in enumerate(("chr1", "chr2")))
    fs.pipe_file("bucket/genome.fa.gz", bgzf(genome.encode())[0])
    fs.invalidate_cache()
    return {"rows": _whole(csv).num_rows, "reads": fastq.count(b"\n") // 4}


@pytest.mark.parametrize("number", range(len(BLOCKS)))
def test_readme_block_runs(number, bucket, tmp_path, moto_endpoint):
    block = BLOCKS[number]
    if block.startswith("# needs:"):
        pytest.skip(block.splitlines()[0][2:])
    for module in re.findall(r"^(?:from|import) (\w+)", block, flags=re.M):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"needs {module}, which the ci extra installs")
    script = tmp_path / f"readme_block_{number}.py"
    script.write_text(block)
    env = {**os.environ, "AWS_ENDPOINT_URL_S3": moto_endpoint}
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    if "big.csv" in block:
        assert f"{bucket['rows']} rows" in done.stdout
    if "reads.fastq.gz" in block:
        assert f"{bucket['reads']} reads" in done.stdout
    for marker, printed in EXPECTED.items():
        if marker in block:
            assert printed in done.stdout, (marker, done.stdout[-2000:])


#: What the blocks over the other objects the fixture puts print, by a string each block holds.
EXPECTED = {
    "run42/*.fastq.gz": "3 objects, 1200 reads in all",
    "s3://bucket/sales/": "[('east', 24500), ('north', 24500), ('south', 24500)]",
    "survey/*.laz": "tiles read for a quarter of the survey",
    "peaks.bed.gz": "[100, 120] records",
    "ticket(co": "['header', 'body'",
    "genome.fa.gz": "2000 bases; ATGCATGC",
    "calls.reader()": "True records as tabix returns them",
}


def test_the_options_table_lists_every_option_of_every_format():
    """The README's options table and the options the formats declare (``Format.all_options()``) agree,
    formats derived from another one (``GZipText``, ``FASTQGZip``) taking their parent's."""
    from dataplug.format import available_formats, get_format

    section = README.read_text().split("**Preprocessing options**", 1)[1].split("\n\n", 2)[1]
    listed = set()
    for row in section.splitlines()[2:]:
        option_cell, formats_cell = row.split("|")[1:3]
        for option in re.findall(r"`(\w+)`", option_cell):
            listed |= {(option, fmt) for fmt in re.findall(r"`(\w+)`", formats_cell)}
    classes = {name: get_format(name) for name in available_formats()}
    classes = {name: cls for name, cls in classes.items() if cls.__module__.startswith("dataplug.formats.")}  # not tests' own formats
    roots = {name for name, cls in classes.items() if not any(other is not cls and issubclass(cls, other) for other in classes.values())}
    declared = {(option, name) for name in roots for option in classes[name].all_options()}
    assert listed == declared


COMMANDS = README.read_text().split("## Command line", 1)[1].split("```", 2)[1].strip().splitlines()


def _semicolon_csv(rows: int) -> bytes:
    return ("id;station;temp\n" + "".join(f"{i};station {i % 7};{i * 0.5}\n" for i in range(rows))).encode()


def test_readme_command_lines_run(bucket, tmp_path, moto_endpoint):
    """Each line of the README's command-line block, as written, in a folder holding ``data.csv`` and
    ``tile.laz``, with ``s3://bucket`` on the moto server; then what each line promises is checked."""
    laspy = pytest.importorskip("laspy", reason="the LiDAR lines need the lidar extra")
    pytest.importorskip("matplotlib", reason="the plot line needs the plot extra")
    from dataplug import CloudObject
    from dataplug.synthetic import scan_ordered_cloud, write_cloud

    assert len(COMMANDS) >= 8 and all(line.startswith("dataplug ") for line in COMMANDS)
    data = _semicolon_csv(3000)
    (tmp_path / "data.csv").write_bytes(data)
    write_cloud(scan_ordered_cloud(20_000, seed=3), tmp_path / "tile.laz")
    env = {**os.environ, "AWS_ENDPOINT_URL_S3": moto_endpoint}
    outputs = {}
    for line in COMMANDS:
        command = re.sub(r"\s{2,}#.*$", "", line)
        command = f"{shlex.quote(sys.executable)} -m dataplug.cli " + command[len("dataplug ") :]
        done = subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{line}\n{done.stderr[-3000:]}"
        outputs[line] = done.stdout
    info = next(out for line, out in outputs.items() if line.startswith("dataplug info"))
    assert "FASTQ" in info and "gzip" in info
    fastq = next(out for line, out in outputs.items() if "--slice 3 | head" in line)
    assert fastq.startswith("@") and len(fastq.splitlines()) == 10
    parts = [(tmp_path / f"part-{k}.csv").read_bytes() for k in range(4)]
    assert all(part.startswith(b"id;station;temp\n") for part in parts)
    assert b"".join(part[len(b"id;station;temp\n") :] for part in parts) == data[len(b"id;station;temp\n") :]
    assert (tmp_path / "all.csv").read_bytes() == data
    assert 0 < len(laspy.read(tmp_path / "cell5.las").points) < 20_000
    assert (tmp_path / "cells.png").read_bytes().startswith(b"\x89PNG")
    co = CloudObject.from_url("CSV", str(tmp_path / "data.csv"))
    assert co.attributes.delimiter == ";" and co.attributes.encoding in ("latin-1", "iso8859-1") and co.attributes.rows == 3000
