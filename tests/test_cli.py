"""The command line wraps the library: index, info, partition, read, plot."""

from __future__ import annotations

import json

from dataplug.cli import main

DATA = b'a,b\n1,"x\ny"\n2,z\n3,w\n'


def test_cli_round_trip(local_store, capsys):
    url = local_store.put("d.csv", DATA)
    assert main(["index", url, "--format", "CSV", "-o", "sample_bytes=4"]) == 0
    assert main(["info", url, "--format", "CSV", "--json"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out[out.index("{") :])["attributes"]["rows"] == 3
    assert main(["partition", url, "partition_rows", "2", "--format", "CSV", "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["first"] for line in lines] == [1, 3]
    assert [json.loads(line)["records"] for line in lines] == [2, 1]
    assert main(["read", url, "partition_rows", "2", "--slice", "0", "--format", "CSV"]) == 0
    assert capsys.readouterr().out == 'a,b\n1,"x\ny"\n2,z\n'


def test_cli_tables_for_people(local_store, capsys):
    url = local_store.put("d.csv", DATA)
    assert main(["index", url]) == 0
    assert main(["info", url]) == 0
    out = capsys.readouterr().out
    assert "detected: CSV" in out and "rows" in out and "partition_num_chunks" in out
    assert main(["partition", url, "partition_rows", "2"]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines() == ["slice  records  bytes", "    0        2  [4, 20)", "    1        1  [4, 20)"]
    assert "2 slices" in captured.err


GOLDEN = {
    "d.csv": (DATA, "partition_num_chunks", ["a,b\n1,\"x\ny\"\n2,z\n3,w\n"]),
    "r.fastq": (b"@r1\nACGT\n+\nIIII\n@r2\nACGG\n+\nIIII\n@r3\nGTTT\n+\nI#II\n", "partition_reads_batches", ["@r1\nACGT\n+\nIIII\n", "@r2\nACGG\n+\nIIII\n", "@r3\nGTTT\n+\nI#II\n"]),
    "s.fa": (b">a one\nACGT\nAC\n>b\nGG\n", "partition_num_sequences", [">a one\nACGT\nAC\n", ">b\nGG\n"]),
}


def test_read_writes_each_format_as_its_files_hold_it(local_store, capfd, tmp_path):
    for name, (data, strategy, expected) in GOLDEN.items():
        url = local_store.put(name, data)
        for k, want in enumerate(expected):
            assert main(["read", url, strategy, str(len(expected)), "--slice", str(k)]) == 0
            assert capfd.readouterr().out == want, (name, k)
        assert main(["read", url, strategy, str(len(expected))]) == 0  # all slices, in order
        assert capfd.readouterr().out == ("".join(expected) if name != "d.csv" else expected[0])
        assert main(["read", url, strategy, str(len(expected)), "-o", str(tmp_path / (name + ".{}"))]) == 0
        assert [(tmp_path / f"{name}.{k}").read_text() for k in range(len(expected))] == expected


def test_read_vcf_with_its_header(local_store, capfd):
    header = "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
    body = "".join(f"chr1\t{i}\t.\tA\tC\t.\t.\t.\n" for i in range(1, 6))
    url = local_store.put("v.vcf", (header + body).encode())
    assert main(["read", url, "partition_num_chunks", "2", "--slice", "1"]) == 0
    out = capfd.readouterr().out
    assert out.startswith(header) and body.endswith(out[len(header) :]) and len(out) > len(header)


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
        (["index", url, "--format", "CSV", "-o", "delimter=;"], "has no preprocessing option 'delimter'"),
        (["index", local_store.put("x.csv.gz", __import__("gzip").compress(b"\x00\x01LASF" * 100)), "--format", "CSV"], "NUL byte"),
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


def test_help_lists_formats_strategies_and_options(capsys):
    import pytest

    with pytest.raises(SystemExit):
        main(["index", "--help"])
    out = capsys.readouterr().out
    assert "examples:" in out and "partition_reads_batches" in out and "-o encoding=" in out and "FASTQ" in out


def test_read_las_slices_to_files_never_to_a_terminal(local_store, tmp_path, capfd, monkeypatch):
    import pytest

    laspy = pytest.importorskip("laspy", reason="LiDAR needs the lidar extra")
    from dataplug.synthetic import scan_ordered_cloud, write_cloud

    path = tmp_path / "tile.las"
    write_cloud(scan_ordered_cloud(20_000, seed=3), path)
    url = local_store.put("tile.las", path.read_bytes())
    assert main(["read", url, "partition_spatial_chunks", "4", "-o", str(tmp_path / "part-{}.las")]) == 0
    parts = [laspy.read(tmp_path / f"part-{k}.las") for k in range(4)]
    assert sum(len(p.points) for p in parts) == 20_000
    assert main(["read", url, "partition_spatial_chunks", "4", "-o", str(tmp_path / "all.las")]) == 2
    assert "pick one with --slice N" in capfd.readouterr().err
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    assert main(["read", url, "partition_spatial_chunks", "4", "--slice", "1"]) == 2
    assert "binary" in capfd.readouterr().err
    assert main(["partition", url, "partition_spatial_chunks", "4"]) == 0
    rows = capfd.readouterr().out.splitlines()
    assert rows[0].split() == ["slice", "records", "bytes"] and sum(int(r.split()[1].replace(",", "")) for r in rows[1:]) == 20_000
