"""Pictures of partitions: valid PNGs of some size, from the command line and from the library."""

from __future__ import annotations

import gzip

import pytest

import dataplug
from dataplug.cli import main

pytest.importorskip("matplotlib", reason="plots need the plot extra (matplotlib)")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path) -> bool:
    data = open(path, "rb").read()
    return data.startswith(PNG_MAGIC) and len(data) > 10_000


def test_plot_a_gzip_partition_with_its_checkpoints(local_store, tmp_path):
    reads = b"".join(b"@r%d\n%s\n+\n%s\n" % (i, b"ACGT" * 20, b"I" * 80) for i in range(20_000))
    co = dataplug.open(local_store.put("r.fastq.gz", gzip.compress(reads)), spacing=2**18)
    slices = co.partition("partition_reads_batches", 9)
    assert _is_png(co.plot_partition(slices, str(tmp_path / "fq.png")))


def test_plot_from_the_command_line(local_store, tmp_path, capsys):
    url = local_store.put("d.csv", b"a,b\n" + b"".join(b"%d,x\n" % i for i in range(5000)))
    out = tmp_path / "slices.png"
    assert main(["plot", url, "partition_num_chunks", "6", "-o", str(out)]) == 0
    assert _is_png(out) and str(out) in capsys.readouterr().out
