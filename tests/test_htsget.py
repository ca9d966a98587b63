"""htsget tickets and ``dataplug serve``: tickets followed (inline blocks decoded, ranges fetched) and the
concatenated bytes parsed by htslib (pysam), records compared with htslib's own region queries; the server
queried with the GA4GH ``htsget`` client over local, S3 (moto) and HTTP roots."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import pytest

import dataplug
from dataplug.codecs import CheckpointTable
from dataplug.htsget import HtsgetError, InvalidRangeError, ReferenceNotFoundError, UnsupportedFormatError, ticket, tickets
from dataplug.htsget.tickets import Members, checkpoint_table
from dataplug.storage.object import read_stats
from dataplug.testing.data import make_vcf

pysam = pytest.importorskip("pysam", reason="htslib through pysam is the reference; the ci extra installs it")
web = pytest.importorskip("aiohttp.web", reason="the server runs on aiohttp (installed with s3fs)")

CONTIGS = 3000  # enough ##contig lines that the header spans two BGZF members


def members(raw: bytes) -> list[tuple[int, int]]:
    """Decoded [first, stop) of every BGZF member, parsed here from the member headers (the oracle)."""
    out, pos, at = [], 0, 0
    while pos < len(raw):
        xlen = int.from_bytes(raw[pos + 10 : pos + 12], "little")
        extra = raw[pos + 12 : pos + 12 + xlen]
        size = int.from_bytes(extra[extra.index(b"BC\x02\x00") + 4 :][:2], "little") + 1
        length = len(zlib.decompress(raw[pos : pos + size], 31))
        out.append((at, at + length))
        pos, at = pos + size, at + length
    return out


@pytest.fixture(scope="module")
def vcfs(tmp_path_factory):
    """Two bgzipped, tabix-indexed VCFs: a short header sharing its member with the first records, and a
    header longer than a member; each with its decoded text and its members."""
    folder = tmp_path_factory.mktemp("htsget")
    out = {}
    for name, contigs in (("short", 0), ("long", CONTIGS)):
        text = make_vcf(4000, seed=11)
        extra = "".join(f"##contig=<ID=chrUn_{i:05d}_decoy,length={1000 + i}>\n" for i in range(contigs))
        text = text.replace("#CHROM", extra + "#CHROM", 1)
        plain = folder / f"{name}.vcf"
        plain.write_text(text)
        path = folder / f"{name}.vcf.gz"
        pysam.tabix_compress(str(plain), str(path), force=True)
        pysam.tabix_index(str(path), preset="vcf", force=True)
        out[name] = (path, text, members(path.read_bytes()))
    return out


def follow(tk: dict, read_range=None) -> bytes:
    """The ticket's blocks concatenated: data: URLs decoded, ranges read by ``read_range(url, headers)``."""
    out = []
    for block in tk["htsget"]["urls"]:
        if block["url"].startswith("data:"):
            out.append(base64.b64decode(block["url"].split(",", 1)[1], validate=True))
        else:
            out.append(read_range(block["url"], block["headers"]))
    return b"".join(out)


def file_ranges(path: Path):
    """``read_range`` over a local file, for the fake URL the unit tests give tickets."""
    data = path.read_bytes()

    def read(url: str, headers: dict) -> bytes:
        assert url == "https://example.org/x.vcf.gz"
        first, last = headers["Range"].removeprefix("bytes=").split("-")
        assert int(first) <= int(last) < len(data)
        return data[int(first) : int(last) + 1]

    return read


def http_ranges(url: str, headers: dict) -> bytes:
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers)) as r:
        assert r.status == 206
        return r.read()


def records_of(path: Path, region=None) -> list[str]:
    """Record lines as htslib gives them: the whole file, or a region through the tabix index."""
    with pysam.TabixFile(str(path)) as t:
        return list(t.fetch(*region) if region else t.fetch())


def parsed(data: bytes, folder: Path, name: str = "got.vcf.gz") -> list[str]:
    """The record lines of a ticket's bytes, once htslib has read them all as a VCF.gz."""
    path = folder / name
    path.write_bytes(data)
    with pysam.VariantFile(str(path)) as v:
        count = sum(1 for _ in v)
    lines = [line for line in gzip.decompress(data).decode().split("\n")[:-1] if not line.startswith("#")]
    assert count == len(lines)
    return lines


def same_members(text: str, spans: list[tuple[int, int]], wanted: list[str]) -> set[str]:
    """Every record that shares a BGZF member with a record of ``wanted``: what a ticket may add."""
    raw = text.encode()
    lines, at, where = {}, 0, []
    for line in raw.split(b"\n")[:-1]:
        lines[line.decode()] = (at, at + len(line) + 1)
        where.append((at, at + len(line) + 1, line.decode()))
        at += len(line) + 1
    starts = np.array([a for a, _ in spans])
    touched = {int(np.searchsorted(starts, x, side="right")) - 1 for line in wanted for x in (lines[line][0], lines[line][1] - 1)}
    allowed = set()
    for a, b, line in where:
        if {int(np.searchsorted(starts, a, side="right")) - 1, int(np.searchsorted(starts, b - 1, side="right")) - 1} & touched:
            allowed.add(line)
    return allowed


def header_of(text: str) -> str:
    return text[: text.index("\n", text.index("#CHROM")) + 1]


@pytest.mark.parametrize("name", ["short", "long"])
def test_region_tickets_hold_the_region_and_only_its_members(vcfs, tmp_path, name):
    path, text, spans = vcfs[name]
    co = dataplug.open(str(path))
    rng = np.random.default_rng(3)
    regions = [("chr1", 0, 1), ("chr1", 0, 60_000), ("chr2", None, None), ("chrUn_gl1", 100, None), ("chr10", 29_000, 30_000)]
    regions += [("chr1", int(s), int(s) + int(n)) for s, n in zip(rng.integers(0, 60_000, 6), rng.integers(1, 8000, 6))]
    for ref, start, end in regions:
        tk = ticket(co, ref, start, end, url="https://example.org/x.vcf.gz")
        assert tk["htsget"]["format"] == "VCF"
        classes = [block["class"] for block in tk["htsget"]["urls"]]
        assert classes == ["header"] + ["body"] * (len(classes) - 1)
        data = follow(tk, file_ranges(path))
        decoded = gzip.decompress(data).decode()
        assert decoded.startswith(header_of(text)) and decoded.count("#CHROM") == 1  # the header once, never repeated
        got = parsed(data, tmp_path)
        want = records_of(path, (ref, start, end))
        assert set(want) <= set(got), (ref, start, end)
        assert set(got) <= same_members(text, spans, want), (ref, start, end)
        assert got == [line for line in text.split("\n") if line in set(got)]  # file order


@pytest.mark.parametrize("name", ["short", "long"])
def test_whole_file_and_header_tickets(vcfs, tmp_path, name):
    path, text, _ = vcfs[name]
    co = dataplug.open(str(path))
    whole = follow(ticket(co, url="https://example.org/x.vcf.gz"), file_ranges(path))
    assert gzip.decompress(whole).decode() == text
    assert whole.endswith(dataplug.htsget.BGZF_EOF) and whole.count(dataplug.htsget.BGZF_EOF) == 1
    split = follow(ticket(co, url="https://example.org/x.vcf.gz", block_bytes=10_000), file_ranges(path))
    assert split == whole
    head = ticket(co, "chr1", 5, 10, header_only=True)
    assert [b["url"][:5] for b in head["htsget"]["urls"]] == ["data:", "data:"]
    assert gzip.decompress(follow(head)).decode() == header_of(text) and parsed(follow(head), tmp_path) == []


def test_region_tickets_read_at_most_their_two_edge_members(vcfs, s3_store):
    """Planning reads no record: a region ticket reads only its edge members from the object (their bytes
    in one planned request), plus the last 28 bytes when its range reaches the object's end."""
    path = vcfs["long"][0]
    url = s3_store.put("counted.vcf.gz", path.read_bytes())
    co = dataplug.open(url, s3_store.options)
    for region in [("chr1", 0, 60_000), ("chr2", 100, 200), ("chr10", None, None), ("chrUn_gl1", None, None)]:
        read_stats.reset()
        ticket(co, *region, url="https://example.org/x.vcf.gz")
        assert read_stats.requests.get(url, 0) <= 2 and read_stats.bytes.get(url, 0) <= 2 * 65536 + 28, region


def test_coarse_checkpoints_are_walked_to_exact_members(vcfs):
    """An index whose checkpoints are several members apart (a gzip-pass index, a .gzi of some members)
    gives the same members: the stretch between two checkpoints is walked member by member."""
    path, _, spans = vcfs["short"]
    co = dataplug.open(str(path))
    fine = checkpoint_table(co)
    assert [int(u) for u in fine.logical[:-1] if u < spans[-1][0]] == [a for a, b in spans if b > a]  # every member a checkpoint
    keep = np.r_[0 : len(fine) : 3, len(fine)]
    coarse = CheckpointTable.of(co.url, "coarse", fine.compressed[keep], fine.logical[keep])
    exact, walked = Members(co, fine), Members(co, coarse)
    data_end = path.stat().st_size - len(dataplug.htsget.BGZF_EOF)  # the index's last member may hold the EOF block too

    def seen(member):
        return member.start, min(member.end, data_end), member.first, member.stop

    for offset in np.random.default_rng(2).integers(0, fine.logical_size, 40).tolist():
        assert seen(walked.at(offset)) == seen(exact.at(offset))


def test_a_long_header_goes_as_a_range_then_inline(vcfs, tmp_path, monkeypatch):
    """Past INLINE_HEADER_MAX, the members that hold header bytes only are a range and the rest of the header
    is inline: the tickets still decode to the header once, then the records."""
    monkeypatch.setattr(tickets, "INLINE_HEADER_MAX", 1000)
    path, text, spans = vcfs["long"]
    co = dataplug.open(str(path))
    read = file_ranges(path)
    head = ticket(co, header_only=True, url="https://example.org/x.vcf.gz")
    blocks = head["htsget"]["urls"]
    assert [b["class"] for b in blocks] == ["header", "header", "body"] and "Range" in blocks[0]["headers"] and blocks[1]["url"].startswith("data:")
    assert gzip.decompress(follow(head, read)).decode() == header_of(text)
    assert gzip.decompress(follow(ticket(co, url="https://example.org/x.vcf.gz"), read)).decode() == text
    got = parsed(follow(ticket(co, "chr1", 0, 3000, url="https://example.org/x.vcf.gz"), read), tmp_path)
    want = records_of(path, ("chr1", 0, 3000))
    assert set(want) <= set(got) <= same_members(text, spans, want)


def test_ticket_refusals(vcfs, local_store):
    path, text, _ = vcfs["short"]
    co = dataplug.open(str(path))
    with pytest.raises(ReferenceNotFoundError, match="chrX"):
        ticket(co, "chrX")
    assert ticket(co, "chr1", 7, 7)["htsget"]["urls"][1:] == [ticket(co, "chrUn_gl1", 0, 0)["htsget"]["urls"][-1]]  # empty: header, EOF
    with pytest.raises(InvalidRangeError, match="start 9 is after end 8"):
        ticket(co, "chr1", 9, 8)
    with pytest.raises(HtsgetError, match="need a reference"):
        ticket(co, start=5)
    with pytest.raises(HtsgetError, match="32-bit"):
        ticket(co, "chr1", -1, 5)
    with pytest.raises(HtsgetError, match="HTTP"):
        ticket(co, "chr1")  # a local object has no URL for its ranges
    gz = dataplug.open(local_store.put("plain.vcf.gz", gzip.compress(text.encode())))
    with pytest.raises(UnsupportedFormatError, match="bgzip"):
        ticket(gz, "chr1")


@pytest.fixture(scope="module")
def bam(tmp_path_factory):
    """A coordinate-sorted BAM written by htslib (no .bai beside it: tickets never need one), the BGZF member
    each record starts in, from htslib's virtual offsets (the oracle of "the same BGZF blocks"), and a .bai
    elsewhere for the oracle's region queries."""
    from tests.bam_files import write_bam

    path = write_bam(tmp_path_factory.mktemp("htsget-bam") / "reads.bam", 2500, seed=5)
    bai = tmp_path_factory.mktemp("oracle") / "reads.bam.bai"
    pysam.index(str(path), str(bai))
    member = {}
    with pysam.AlignmentFile(str(path), check_sq=False) as f:
        while True:
            offset = f.tell()
            try:
                record = next(f)
            except StopIteration:
                break
            member[record.to_string()] = offset >> 16
    return path, member, bai


def bam_fetch(bam, name, start=None, end=None) -> list[str]:
    """The alignments samtools returns for a region (through the oracle's .bai, kept apart from the object)."""
    path, _, bai = bam
    with pysam.AlignmentFile(str(path), index_filename=str(bai)) as f:
        return [r.to_string() for r in f.fetch(name, start, end)]


def bam_records(data: bytes, folder: Path) -> list[str]:
    out = folder / "got.bam"
    out.write_bytes(data)
    with pysam.AlignmentFile(str(out), check_sq=False) as f:
        return [r.to_string() for r in f]


def test_bam_tickets(bam, tmp_path):
    path, member, _ = bam
    co = dataplug.open(str(path))
    rng = np.random.default_rng(8)
    regions = [("chr1", 0, 1), ("chr2", None, None), ("chrM", 100, 5000), ("chr10", 49_000, None)]
    regions += [("chr1", int(s), int(s) + int(n)) for s, n in zip(rng.integers(0, 200_000, 5), rng.integers(1, 20_000, 5))]
    for name, start, end in regions:
        tk = ticket(co, name, start, end, url="https://example.org/x.vcf.gz")
        assert tk["htsget"]["format"] == "BAM"
        got = bam_records(follow(tk, file_ranges(path)), tmp_path)
        want = bam_fetch(bam, name, start, end)
        assert set(want) <= set(got) and {member[r] for r in got} <= {member[r] for r in want}, (name, start, end)
    whole = follow(ticket(co, url="https://example.org/x.vcf.gz"), file_ranges(path))
    assert gzip.decompress(whole) == gzip.decompress(path.read_bytes())
    assert len(bam_records(whole, tmp_path)) == len(member)
    header = follow(ticket(co, header_only=True))
    assert bam_records(header, tmp_path) == [] and gzip.decompress(header) == co.partition("partition_num_chunks", 1)[0].header_bytes()
    with pytest.raises(ReferenceNotFoundError, match="chr3"):
        ticket(co, "chr3", 0, 10)


@contextlib.contextmanager
def running(root: str, storage_options=None, index_location=None):
    """The htsget app served in-process on a free port; yields its base URL."""
    from dataplug.htsget.server import make_app

    loop = asyncio.new_event_loop()
    runner = web.AppRunner(make_app(root, storage_options, index_location))
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = runner.addresses[0][1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.run_until_complete(runner.cleanup())
        loop.close()


def client_get(url: str, folder: Path, **kwargs) -> bytes:
    """The GA4GH htsget client's download of ``url``."""
    htsget = pytest.importorskip("htsget", reason="the GA4GH htsget client (pip install htsget; the ci extra installs it)")
    out = folder / "client.out"
    with open(out, "wb") as fh:
        htsget.get(url, fh, max_retries=0, timeout=30, **kwargs)
    return out.read_bytes()


def answer(url: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {})) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_serve_local_root_with_the_htsget_client(vcfs, tmp_path):
    path, text, spans = vcfs["short"]
    with running(str(path.parent), index_location=str(tmp_path / "indexes")) as base:
        got = parsed(client_get(f"{base}/variants/short", tmp_path, reference_name="chr1", start=1000, end=9000), tmp_path)
        want = records_of(path, ("chr1", 1000, 9000))
        assert set(want) <= set(got) <= same_members(text, spans, want)
        assert gzip.decompress(client_get(f"{base}/variants/short", tmp_path)).decode() == text
        status, _, body = answer(f"{base}/variants/short?referenceName=chr1&start=10")
        tk = json.loads(body)
        assert status == 200 and {b["url"] for b in tk["htsget"]["urls"][1:-1] if not b["url"].startswith("data:")} == {f"{base}/data/short.vcf.gz"}
        assert set(records_of(path, ("chr1", 10, None))) <= set(parsed(follow(tk, http_ranges), tmp_path))
        status, _, body = answer(f"{base}/variants/short?class=header")
        assert status == 200 and gzip.decompress(follow(json.loads(body))).decode() == header_of(text)
        for query, code, kind in [
            ("short?referenceName=chrX", 404, "NotFound"),
            ("absent?referenceName=chr1", 404, "NotFound"),
            ("short?referenceName=chr1&start=9&end=8", 400, "InvalidRange"),
            ("short?start=9", 400, "InvalidInput"),
            ("short?referenceName=chr1&start=x", 400, "InvalidInput"),
            ("short?format=BCF", 400, "UnsupportedFormat"),
            ("..%2Fescape", 400, "InvalidInput"),
        ]:
            status, headers, body = answer(f"{base}/variants/{query}")
            assert (status, json.loads(body)["htsget"]["error"]) == (code, kind), query
        status, _, body = answer(f"{base}/variants/service-info")
        info = json.loads(body)
        assert status == 200 and info["type"] == {"group": "org.ga4gh", "artifact": "htsget", "version": "1.3.0"}
        assert info["htsget"]["datatype"] == "variants" and info["htsget"]["formats"] == ["VCF"]
        raw = path.read_bytes()
        status, headers, body = answer(f"{base}/data/short.vcf.gz", {"Range": "bytes=10-99"})
        assert (status, body, headers["Content-Range"]) == (206, raw[10:100], f"bytes 10-99/{len(raw)}")
        assert answer(f"{base}/data/short.vcf.gz", {"Range": "bytes=-5"})[2] == raw[-5:]
        assert answer(f"{base}/data/short.vcf.gz")[2] == raw
        status, headers, _ = answer(f"{base}/data/short.vcf.gz", {"Range": f"bytes={len(raw)}-"})
        assert (status, headers["Content-Range"]) == (416, f"bytes */{len(raw)}")
        assert answer(f"{base}/data/short.vcf.gz", {"Range": "bytes=0-9", "If-Match": '"other"'})[0] == 412
        assert answer(f"{base}/data/short.vcf.gz.gzi", {"Range": "bytes=0-9"})[0] == 404
        status, headers, _ = answer(f"{base}/variants/short?referenceName=chr1", {"Origin": "https://igv.example"})
        assert headers["Access-Control-Allow-Origin"] == "https://igv.example"
        preflight = {"Origin": "https://igv.example", "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "range"}
        with urllib.request.urlopen(urllib.request.Request(f"{base}/data/short.vcf.gz", headers=preflight, method="OPTIONS")) as r:
            assert r.status == 204 and r.headers["Access-Control-Allow-Origin"] == "https://igv.example"
            assert r.headers["Access-Control-Allow-Headers"] == "range" and "GET" in r.headers["Access-Control-Allow-Methods"]


def test_ticket_pins_the_object_it_was_made_for(vcfs, tmp_path):
    """A ticket's ranges carry If-Match: an object replaced after the ticket is refused (412), never mixed;
    the next ticket is made for the new object."""
    path, (other, other_text, _) = vcfs["short"][0], vcfs["long"]
    folder = tmp_path / "root"
    folder.mkdir()
    (folder / "v.vcf.gz").write_bytes(path.read_bytes())
    with running(str(folder), index_location=str(tmp_path / "indexes")) as base:
        tk = json.loads(answer(f"{base}/variants/v")[2])
        ranged = [b for b in tk["htsget"]["urls"] if not b["url"].startswith("data:")]
        assert ranged and all("If-Match" in b["headers"] for b in ranged)
        (folder / "v.vcf.gz").write_bytes(other.read_bytes())
        assert [answer(b["url"], b["headers"])[0] for b in ranged] == [412] * len(ranged)
        # a header ticket reads nothing from the object: the server itself notices the replacement
        assert gzip.decompress(follow(json.loads(answer(f"{base}/variants/v?class=header")[2]))).decode() == header_of(other_text)
        assert gzip.decompress(follow(json.loads(answer(f"{base}/variants/v")[2]), http_ranges)).decode() == other_text


def test_serve_s3_and_http_roots(vcfs, s3_store, tmp_path):
    path, text, spans = vcfs["long"]
    s3_store.put("sub/long.vcf.gz", path.read_bytes())
    want = records_of(path, ("chr2", 2000, 30_000))
    with running(f"{s3_store.root}/sub", s3_store.options, index_location=str(tmp_path / "s3-indexes")) as base:
        got = parsed(client_get(f"{base}/variants/long", tmp_path, reference_name="chr2", start=2000, end=30_000), tmp_path)
        assert set(want) <= set(got) <= same_members(text, spans, want)
        # An HTTP(S) root is public: a second server over the first one's /data/ hands out its URLs as they are.
        with running(f"{base}/data", index_location=str(tmp_path / "http-indexes")) as front:
            tk = json.loads(answer(f"{front}/variants/long")[2])
            ranged = [b for b in tk["htsget"]["urls"] if b["url"].startswith("http")]
            assert {b["url"] for b in ranged} == {f"{base}/data/long.vcf.gz"} and all("If-Match" in b["headers"] for b in ranged)
            assert gzip.decompress(follow(tk, http_ranges)).decode() == text
            assert sorted(parsed(client_get(f"{front}/variants/long", tmp_path, reference_name="chr2", start=2000, end=30_000), tmp_path)) == sorted(
                got
            )


def test_serve_reads_with_the_htsget_client(bam, tmp_path):
    path, member, _ = bam
    with running(str(path.parent), index_location=str(tmp_path / "indexes")) as base:
        got = bam_records(client_get(f"{base}/reads/reads", tmp_path, reference_name="chr2", start=10_000, end=30_000), tmp_path)
        want = bam_fetch(bam, "chr2", 10_000, 30_000)
        assert set(want) <= set(got) and {member[r] for r in got} <= {member[r] for r in want}
        assert gzip.decompress(client_get(f"{base}/reads/reads", tmp_path)) == gzip.decompress(path.read_bytes())
        status, _, body = answer(f"{base}/reads/reads?format=CRAM")
        assert (status, json.loads(body)["htsget"]["error"]) == (400, "UnsupportedFormat")


def test_dataplug_serve_command(vcfs, tmp_path):
    """``dataplug serve ROOT --port P`` (the CLI calls ``serve()``) in a process of its own, until stopped."""
    path = vcfs["short"][0]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "dataplug.cli", "serve", str(path.parent), "--port", str(port), "--index-location", str(tmp_path / "ix")]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                status, _, body = answer(f"http://127.0.0.1:{port}/reads/service-info")
                break
            except urllib.error.URLError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode() if proc.poll() is not None else "no answer"
                time.sleep(0.1)
        assert status == 200 and json.loads(body)["htsget"] == {
            "datatype": "reads",
            "formats": ["BAM"],
            "fieldsParametersEffective": False,
            "tagsParametersEffective": False,
        }
        got = parsed(client_get(f"http://127.0.0.1:{port}/variants/short", tmp_path, reference_name="chr1", start=0, end=5000), tmp_path)
        assert set(records_of(path, ("chr1", 0, 5000))) <= set(got)
    finally:
        proc.terminate()
        proc.wait(10)
