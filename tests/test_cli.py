"""The command line wraps the library: index, info, partition, read."""

from __future__ import annotations

import json

from dataplug.cli import main

DATA = b'a,b\n1,"x\ny"\n2,z\n3,w\n'


def test_cli_round_trip(local_store, capsys):
    url = local_store.put("d.csv", DATA)
    assert main(["index", url, "--format", "CSV", "-o", "sample_bytes=4"]) == 0
    assert main(["info", url, "--format", "CSV"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out[out.index("{") :])["attributes"]["rows"] == 3
    assert main(["partition", url, "partition_rows", "2", "--format", "CSV"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["first"] for line in lines] == [1, 3]
    assert main(["read", url, "partition_rows", "2", "--slice", "0", "--format", "CSV"]) == 0
    assert capsys.readouterr().out == 'a,b\n1,"x\ny"\n2,z\n'


def test_cli_reports_dataplug_errors(local_store, capsys):
    assert main(["info", local_store.url("missing.csv"), "--format", "CSV"]) == 2
    assert "preprocess" in capsys.readouterr().err


def test_cli_mistakes_are_one_line_errors(local_store, capsys):
    url = local_store.put("d.csv", DATA)
    assert main(["index", url, "--format", "csv"]) == 0  # format names in any case
    capsys.readouterr()
    for argv, expected in [
        (["partition", url, "no_such_strategy", "--format", "CSV"], "it has partition_chunk_size, partition_num_chunks, partition_rows"),
        (["partition", url, "partition_num_chunks", "--format", "CSV"], "partition_num_chunks(num_chunks)"),
        (["partition", url, "partition_num_chunks", "2", "3", "--format", "CSV"], "too many positional arguments"),
        (["read", url, "partition_rows", "2", "--slice", "9", "--format", "CSV"], "--slice 9 is not one of the 2 slices"),
        (["info", url, "--format", "NoSuchFormat"], "unknown format"),
    ]:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("dataplug: ") and expected in err and err.count("\n") == 1, err


def test_cli_version(capsys):
    import pytest

    from dataplug import __version__

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"dataplug {__version__}"


def test_read_into_a_closed_pipe_exits_quietly(local_store):
    import subprocess
    import sys

    url = local_store.put("big.txt", b"".join(b"line %d of a text long enough to fill a pipe\n" % i for i in range(200_000)))
    assert main(["index", url, "--format", "UTF8Text"]) == 0
    done = subprocess.run(
        f"{sys.executable} -m dataplug.cli read {url} partition_num_chunks 1 --format utf8text | head -n 2",
        shell=True, capture_output=True, text=True, timeout=120,
    )
    assert done.stdout == "line 0 of a text long enough to fill a pipe\nline 1 of a text long enough to fill a pipe\n"
    assert done.stderr == ""
