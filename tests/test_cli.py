"""The command line wraps the library: index, info, partition, read, plot."""

from __future__ import annotations

import gzip
import json

from dataplug.cli import main

DATA = b'a,b\n1,"x\ny"\n2,z\n3,w\n'


def test_cli_round_trip(local_store, capsys):
    url = local_store.put("d.csv", DATA)
    assert main(["index", url, "--format", "CSV", "-O", "sample_bytes=4"]) == 0
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
        (["index", url, "--format", "CSV", "-O", "delimter=;"], "has no preprocessing option 'delimter'"),
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


COMMANDS = ["index", "info", "partition", "read", "plot", "publish", "serve", "formats"]


def test_each_help_is_short_and_formats_lists_formats(capsys, monkeypatch):
    import pytest

    monkeypatch.setenv("COLUMNS", "80")
    for command in [[]] + [[c] for c in COMMANDS]:
        with pytest.raises(SystemExit):
            main([*command, "--help"])
        out = capsys.readouterr().out
        assert len(out.splitlines()) < 40 and "examples:" in out, (command, len(out.splitlines()))
        assert "partition_reads_batches" not in out or command in ([], ["partition"], ["publish"]), command  # no format table
    with pytest.raises(SystemExit):
        main(["index", "--help"])
    assert "dataplug formats" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["partition", "--help"])
    out = capsys.readouterr().out
    assert "chr1:1-2,chrX:1-5" in out and "JSON list" in out and "-O KEY=VALUE" in out
    assert main(["formats"]) == 0
    out = capsys.readouterr().out
    assert "FASTQ" in out and "partition_reads_batches" in out and "-O encoding=" in out and "VCF" in out
    assert main(["formats", "vcf"]) == 0
    out = capsys.readouterr().out
    assert "VCF:" in out and "partition_regions" in out and "FASTQ" not in out
    assert main(["formats", "nosuchformat"]) == 2


def test_o_is_the_output_file_and_capital_o_the_options(local_store, capsys):
    import pytest

    url = local_store.put("d.csv", DATA)
    for command in (["index", url], ["publish", url, str(local_store.root)], ["partition", url, "partition_num_chunks", "1"]):
        with pytest.raises(SystemExit):
            main([*command, "-o", "header=false"])  # not an option any more
        assert "preprocessing options are -O KEY=VALUE: -O header=false" in capsys.readouterr().err
    for command in (["partition", url, "partition_num_chunks", "1"], ["read", url, "partition_num_chunks", "1"]):
        assert main([*command, "-O", "delimter=;"]) == 2, command
        assert "has no preprocessing option 'delimter'" in capsys.readouterr().err


def test_other_options_rebuild_the_index_and_say_so(local_store, capsys):
    url = local_store.put("d.csv", DATA)
    assert main(["index", url]) == 0
    assert capsys.readouterr().out.startswith("indexed ")
    assert main(["index", url, "-O", "header=false"]) == 0
    assert capsys.readouterr().out.startswith(f"indexed {url} as CSV")
    assert main(["info", url, "--json"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out[out.index("{") :])["attributes"]["rows"] == 4  # the header line is a row now
    assert main(["index", url, "-O", "header=false"]) == 0  # the same options: nothing to do
    out = capsys.readouterr().out
    assert out.startswith("reused the fresh CSV index") and "indexed" not in out
    assert main(["index", url, "-O", "header=false", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["built"] is False
    assert main(["read", url, "partition_num_chunks", "1", "-O", "header=true"]) == 0
    captured = capsys.readouterr()
    assert captured.out == DATA.decode() and "dataplug: indexed" in captured.err and "-O header=true" in captured.err


VCF_REGIONS = (
    "##fileformat=VCFv4.2\n##contig=<ID=chr1>\n##contig=<ID=chrX>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
    + "".join(f"chr1\t{p}\t.\tA\tC\t.\t.\t.\n" for p in (1, 2, 3, 1500, 2500))
    + "".join(f"chrX\t{p}\t.\tG\tT\t.\t.\t.\n" for p in (1, 4, 9))
)


def test_partition_regions_takes_a_comma_list_or_json(local_store, capsys):
    url = local_store.put("r.vcf", VCF_REGIONS.encode())
    for regions in (["chr1:1-2,chrX:1-5"], ['["chr1:1-2", "chrX:1-5"]'], ["chr1:1-2", "chrX:1-5"], ["regions=chr1:1-2,chrX:1-5"]):
        assert main(["partition", url, "partition_regions", *regions, "--json", "--count"]) == 0, regions
        lines = capsys.readouterr().out.splitlines()
        assert [(json.loads(line)["region"], json.loads(line)["records"]) for line in lines] == [(["chr1", 1, 2], 2), (["chrX", 1, 5], 2)], regions
        assert main(["read", url, "partition_regions", *regions]) == 0
        body = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("#")]
        assert [line.split("\t")[:2] for line in body] == [["chr1", "1"], ["chr1", "2"], ["chrX", "1"], ["chrX", "4"]], regions
    assert main(["read", url, "partition_regions", "chr1:1,000-2,000,chrX"]) == 0  # thousands separators
    body = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("#")]
    assert [line.split("\t")[:2] for line in body] == [["chr1", "1500"], ["chrX", "1"], ["chrX", "4"], ["chrX", "9"]]
    for bad in ['["chr1:1-2", chrX]', "chr1:1-2,,chrX", "chr1:1-2,", "[]", '["chr1", 5]', '[{"chr1": 1}]']:
        assert main(["partition", url, "partition_regions", bad]) == 2, bad
        err = capsys.readouterr().err
        assert err.startswith("dataplug: ") and "chr1:1-2,chrX:1-5" in err and err.count("\n") == 1, err
    assert main(["partition", url, "partition_regions"]) == 2
    assert "needs regions" in capsys.readouterr().err


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
    assert rows[0].split()[:3] == ["slice", "records", "bytes"] and sum(int(r.split()[1].replace(",", "")) for r in rows[1:]) == 20_000


def _vcf_text(records: int) -> str:
    import random

    rng = random.Random(19)
    header = "##fileformat=VCFv4.2\n##contig=<ID=chr1,length=100000000>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
    pos = 0
    lines = []
    for _ in range(records):
        pos += rng.randint(1, 500)
        ref, alt = rng.sample("ACGT", 2)
        lines.append(f"chr1\t{pos}\t.\t{ref}\t{alt}\t{rng.randint(1, 99)}\tPASS\tDP={rng.randint(1, 60)}\n")
    return header + "".join(lines)


def test_read_all_slices_is_one_vcf_htslib_reads(local_store, tmp_path):
    pysam = __import__("pytest").importorskip("pysam")
    url = local_store.put("many.vcf", _vcf_text(3000).encode())
    out = tmp_path / "all.vcf"
    assert main(["read", url, "partition_num_chunks", "16", "-o", str(out)]) == 0
    assert out.read_text().count("#CHROM") == 1
    with pysam.VariantFile(str(out)) as vcf:
        assert sum(1 for _ in vcf) == 3000
    assert main(["read", url, "partition_num_chunks", "16", "-o", str(tmp_path / "part-{}.vcf")]) == 0
    counts = []
    for k in range(16):
        with pysam.VariantFile(str(tmp_path / f"part-{k}.vcf")) as vcf:  # each file keeps its header
            counts.append(sum(1 for _ in vcf))
    assert sum(counts) == 3000 and min(counts) > 0


def test_read_all_slices_is_one_csv(local_store, tmp_path, capfd):
    import pandas as pd

    rows = "".join(f"{i},{i * 7 % 13},name {i}\n" for i in range(5000))
    url = local_store.put("t.csv", ("id,score,name\n" + rows).encode())
    out = tmp_path / "all.csv"
    assert main(["read", url, "partition_num_chunks", "8", "-o", str(out)]) == 0
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["id", "score", "name"] and frame["id"].tolist() == list(range(5000))
    assert main(["read", url, "partition_num_chunks", "8"]) == 0  # the same on stdout
    assert capfd.readouterr().out == out.read_text()


def test_cog_in_partition_and_read(local_store, tmp_path, capsys):
    import numpy as np
    import pytest

    rasterio = pytest.importorskip("rasterio")
    from .test_cog import raster, write_tiff

    data = raster("uint16", 2, 300, 200, seed=5)
    url = local_store.put("scene.tif", write_tiff(tmp_path / "src.tif", data, blocksize=128).read_bytes())
    assert main(["partition", url, "partition_num_chunks", "4", "--json"]) == 0
    described = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sum(d["records"] for d in described) == 300 * 200
    for d in described:
        col_off, row_off, width, height = d["window"]
        assert d["records"] == width * height and len(d["bounds"]) == 4 and d["byte_range"][0] < d["byte_range"][1]
    assert main(["partition", url, "partition_num_chunks", "4"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0].split() == ["slice", "records", "bytes", "window", "bounds"] and len(rows) == 5
    with rasterio.open(tmp_path / "src.tif") as src:
        crs = src.crs
    for k, d in enumerate(described):
        assert main(["read", url, "partition_num_chunks", "4", "--slice", str(k), "-o", str(tmp_path / "t.tif")]) == 0
        col_off, row_off, width, height = d["window"]
        with rasterio.open(tmp_path / "t.tif") as tif:
            assert tif.crs == crs and tuple(tif.bounds) == pytest.approx(d["bounds"])
            assert np.array_equal(tif.read(), data[:, row_off : row_off + height, col_off : col_off + width])
    assert main(["read", url, "partition_num_chunks", "4", "-o", str(tmp_path / "all.tif")]) == 2
    assert "pick one with --slice N" in capsys.readouterr().err
    tiny = local_store.put("tiny.tif", write_tiff(tmp_path / "tiny-src.tif", raster("uint8", 1, 2, 3)).read_bytes())
    assert main(["read", tiny, "partition_num_chunks", "8", "-o", str(tmp_path / "part-{}.tif")]) == 0  # 6 pixels, 8 slices
    err = capsys.readouterr().err
    pixels = 0
    for k in range(8):
        if (tmp_path / f"part-{k}.tif").exists():
            with rasterio.open(tmp_path / f"part-{k}.tif") as tif:
                pixels += tif.width * tif.height
        else:
            assert f"no file for slice {k}: slice {k} is an empty window" in err
    assert pixels == 6 and err.count("no file for slice") == sum(not (tmp_path / f"part-{k}.tif").exists() for k in range(8)) > 0


def test_imzml_slices_are_written_as_pairs(local_store, tmp_path, capsys):
    import pytest

    pyimzml = pytest.importorskip("pyimzml.ImzMLParser")
    from .test_imzml import put, spectra, write

    url = put(local_store, "run", write(tmp_path, "run", spectra(30, 6, 6, seed=2), "processed"))
    assert main(["read", url, "partition_num_chunks", "3", "-o", str(tmp_path / "part-{}.imzML")]) == 0
    counts = [len(pyimzml.ImzMLParser(str(tmp_path / f"part-{k}.imzML")).coordinates) for k in range(3)]
    assert sum(counts) == 30 and (tmp_path / "part-0.ibd").exists()
    assert main(["read", url, "partition_num_chunks", "3", "--slice", "1"]) == 2
    assert "two files" in capsys.readouterr().err


def test_a_glob_or_a_prefix_is_a_dataset(local_store, capfd):
    parts = {f"run/part-{i}.csv" + (".gz" if i % 2 else ""): "".join(f"{i},{j}\n" for j in range(40 + 10 * i)) for i in range(6)}
    for name, body in parts.items():
        data = ("n,v\n" + body).encode()
        local_store.put(name, gzip.compress(data) if name.endswith(".gz") else data)
    pattern = local_store.url("run/part-*.csv*")
    assert main(["index", pattern]) == 0
    assert "indexed 6 of the 6 CSV objects" in capfd.readouterr().out
    assert main(["index", pattern, "--json"]) == 0
    assert json.loads(capfd.readouterr().out)["indexed"] == 0  # every object fresh: none read again
    assert main(["info", pattern, "--json"]) == 0
    info = json.loads(capfd.readouterr().out)
    assert info["objects"] == 6 and info["records"] == sum(40 + 10 * i for i in range(6)) and len(info["per_object"]) == 6
    assert main(["partition", pattern, "partition_num_chunks", "3", "--json"]) == 0
    described = [json.loads(line) for line in capfd.readouterr().out.splitlines()]
    assert [d["slice"] for d in described] == [0, 1, 2] and sum(d["records"] for d in described) == info["records"]
    assert any("objects" in d for d in described)  # a group of whole objects names them
    assert main(["partition", pattern, "partition_num_chunks", "3"]) == 0
    assert "object" in capfd.readouterr().out.splitlines()[0]
    assert main(["read", pattern, "partition_num_chunks", "3"]) == 0
    assert capfd.readouterr().out == "n,v\n" + "".join(parts[name] for name in sorted(parts))  # one header, dataset order
    assert main(["read", local_store.url("run/"), "partition_rows", "100", "--slice", "0"]) == 0  # a prefix, indexed first
    captured = capfd.readouterr()
    assert captured.out.startswith("n,v\n0,0\n") and "indexed 6 of the 6 objects" in captured.err
    assert main(["info", local_store.url("run/part-0.csv"), local_store.url("run/part-1.csv.gz"), "--json"]) == 2  # a list: not indexed yet
    assert "not indexed" in capfd.readouterr().err
    assert main(["plot", pattern, "partition_num_chunks", "2"]) == 2
    assert "one object" in capfd.readouterr().err


def test_serve_help_names_its_options(capsys):
    import pytest

    with pytest.raises(SystemExit) as exit_code:
        main(["serve", "--help"])
    out = capsys.readouterr().out
    assert exit_code.value.code == 0 and "--port" in out and "--host" in out and "--index-location" in out and "dataplug serve" in out


def test_a_pre_signed_url_is_one_object_not_a_dataset():
    """The ``?`` of an http(s) URL's query is no glob: a pre-signed URL names one object."""
    from dataplug.cli import is_dataset

    assert not is_dataset("https://host/data/x.csv?X-Amz-Signature=abc&X-Amz-Expires=60")
    assert is_dataset("https://host/data/*.csv") and is_dataset("s3://bucket/run?/x.csv") and is_dataset("s3://bucket/run42/")
