"""Format detection from the first bytes, ``dataplug.open``, and the errors and warnings a newcomer meets."""

from __future__ import annotations

import bz2
import gzip
import io
import warnings

import pytest

import dataplug
from dataplug import CloudObject, EmptyResultWarning, InvalidFormatError, StrategyArgumentError
from dataplug.detect import sniff

FASTQ = b"@r1 x\nACGTN\n+\nIIII#\n@r2\nAC\n+\nII\n"
FASTA = b">chr1 first\nACGTACGT\nACG\n>chr2\nGGCC\n"
VCF = b"##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\nchr1\t5\t.\tA\tC\t.\t.\t.\n"
CSV = b'id,name,score\n1,"Smith, J",2.5\n2,"multi\nline",3\n3,x,4\n'
TSV = b"a\tb\tc\n1\t2\t3\n4\t5\t6\n"
TEXT = b"It was the best of times,\nit was the worst of times;\nit was the age of wisdom.\n"


def _bgzf(data: bytes) -> bytes:
    """One BGZF block (gzip with the 'BC' extra field) and the empty end-of-file block."""
    import struct
    import zlib

    def block(payload: bytes) -> bytes:
        c = zlib.compressobj(6, zlib.DEFLATED, -15)
        deflated = c.compress(payload) + c.flush()
        header = b"\x1f\x8b\x08\x04\x00\x00\x00\x00\x00\xff\x06\x00BC\x02\x00" + struct.pack("<H", len(deflated) + 25)
        return header + deflated + struct.pack("<II", zlib.crc32(payload), len(payload))

    return block(data) + block(b"")


def _zstd(data: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor().compress(data)


CODECS = {"plain": lambda d: d, "gzip": gzip.compress, "bgzf": _bgzf, "zstd": _zstd, "bzip2": bz2.compress}


@pytest.mark.parametrize("codec", sorted(CODECS))
@pytest.mark.parametrize(
    "data, expected, options",
    [(FASTQ, "FASTQ", {}), (FASTA, "FASTA", {}), (VCF, "VCF", {}), (CSV, "CSV", {}), (TSV, "CSV", {"delimiter": "\t"}), (TEXT, "UTF8Text", {})],
)
def test_text_formats_are_detected_under_every_codec(local_store, data, expected, options, codec):
    url = local_store.put(f"x.{expected}.{codec}", CODECS[codec](data))
    co = CloudObject.from_url(url)
    assert co.format.name == expected and co.detection is not None
    assert co.detection.codec == ("none" if codec == "plain" else codec)
    assert dict(co.detection.options) == options and co.detection.alternatives
    co.preprocess()  # the detected options (a TSV's delimiter) are used
    strategy = next(iter(co.format.all_strategies().values()))
    assert co.partition(strategy, 1)


def test_binary_formats_by_magic_bytes():
    las = b"LASF" + bytes(500)
    assert sniff("x", las).format == "LiDARPointCloud"
    copc = bytearray(las)
    copc[377:381] = b"copc"
    found = sniff("x", bytes(copc))
    assert found.format == "COPC" and found.alternatives == ("LiDARPointCloud",)
    assert sniff("x", b"II*\x00" + bytes(100)).format == "COG"
    mzml = b'<?xml version="1.0" encoding="ISO-8859-1"?>\n<mzML xmlns="http://psi.hupo.org/ms/mzml">\n'
    assert sniff("x", mzml).format == "MzML"
    imzml = mzml + b'<cvParam cvRef="IMS" accession="IMS:1000080" name="universally unique identifier" value="{0}"/>\n'
    assert sniff("x", imzml).format == "ImzML"
    with pytest.raises(InvalidFormatError, match="Parquet"):
        sniff("x", b"PAR1" + bytes(10))
    with pytest.raises(InvalidFormatError, match="BAM"):
        sniff("x", gzip.compress(b"BAM\x01" + bytes(10)))


def test_detection_needs_at_most_one_read_and_reports_its_reason(local_store):
    url = local_store.put("reads", gzip.compress(FASTQ * 2000))
    co = CloudObject.from_url(url)
    assert "gzip-compressed" in co.detection.describe() and "override with format='UTF8Text'" in co.detection.describe()


def test_ambiguous_short_samples_warn_how_to_override(local_store):
    url = local_store.put("two-lines.txt", b"a,b\n1,2\n")
    with pytest.warns(dataplug.FormatDetectionWarning, match="override with format='UTF8Text'"):
        assert CloudObject.from_url(url).format.name == "CSV"


def test_open_detects_indexes_and_is_ready_to_partition(local_store):
    header, body = CSV.split(b"\n", 1)
    url = local_store.put("w.csv.gz", gzip.compress(header + b"\n" + body * 50))
    co = dataplug.open(url)
    assert co.format.name == "CSV" and co.is_preprocessed() and co.attributes.compression == "gzip"
    slices = co.partition("partition_num_chunks", 4)
    assert sum(s.num_records for s in slices) == co.attributes.rows == 150
    assert dataplug.open(url, format="utf8text").format.name == "UTF8Text"


def test_a_wrong_format_says_what_the_bytes_look_like(local_store):
    url = local_store.put("cloud.las", b"LASF" + bytes(2000))
    with pytest.raises(InvalidFormatError, match=r"looks like LiDARPointCloud .*format='auto'") as err:
        CloudObject.from_url("CSV", url).preprocess()
    assert str(err.value).count("\n") == 0


def test_unknown_binary_and_other_codecs_are_named(local_store):
    url = local_store.put("x.bin", bytes(range(256)) * 4)
    with pytest.raises(InvalidFormatError, match="NUL"):
        CloudObject.from_url(url)


def test_empty_object_and_empty_slices_warn(local_store):
    url = local_store.put("empty.txt", b"")
    with pytest.warns(EmptyResultWarning, match="empty"):
        CloudObject.from_url("UTF8Text", url).preprocess()
    co = dataplug.open(local_store.put("three.csv", b"a\n1\n2\n3\n"), format="CSV")
    with pytest.warns(EmptyResultWarning, match="7 of the 10 slices are empty"):
        co.partition("partition_num_chunks", 10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        co.partition("partition_num_chunks", 3)


def test_mistyped_options_and_strategy_arguments_teach(local_store):
    co = CloudObject.from_url("CSV", local_store.put("d.csv", CSV))
    with pytest.raises(StrategyArgumentError, match="no preprocessing option 'delimter'.*delimiter:"):
        co.preprocess(delimter=";")
    co.preprocess()
    strategy = co.format.all_strategies()["partition_num_chunks"]
    with pytest.raises(StrategyArgumentError, match=r"partition_num_chunks\(num_chunks\)"):
        co.partition(strategy)
    with pytest.raises(StrategyArgumentError, match="whole number"):
        co.partition(strategy, 0)


def test_csv_in_latin1(local_store):
    text = "nom;ville;temp\nJosé;Málaga;21.5\nZoë;Köln;3\n" * 200
    url = local_store.put("l1.csv", text.encode("latin-1"))
    with pytest.raises(InvalidFormatError, match="encoding='latin-1'"):
        dataplug.open(url, format="CSV", delimiter=";")
    co = dataplug.open(url, format="CSV", delimiter=";", encoding="latin-1")
    slices = co.partition("partition_num_chunks", 5)
    table = __import__("pyarrow").concat_tables([s.to_arrow() for s in slices])
    assert table.num_rows == 599 and table.column("ville").to_pylist()[:2] == ["Málaga", "Köln"]
    out = io.BytesIO()
    slices[0].dump(out)
    assert out.getvalue().startswith("nom;ville;temp\nJosé".encode("latin-1"))
