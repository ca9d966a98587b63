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
