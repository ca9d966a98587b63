"""Random access against htslib and GDAL (issue 20): every goal measured against its anchor on the same files,
in one run.

Generates seeded data in a temporary folder (sizes times ``--scale``), reads everything once into the page
cache, then prints one line per goal: our figure, the anchor's, their ratio and the goal. Timed pairs run in
turn (ours, anchor, ours, anchor, ...) ``--repeats`` times and each keeps its shortest run; every pass opens
its file once (``pysam.FastaFile``, ``pysam.TabixFile``, ``rasterio.open``; dataplug: a fresh
``CloudObject`` and its reader), and every answer is checked against the anchor's. The parts:

1. ``fasta``: 2,000 random regions of 50 bp - 5 kb over 300 sequences (20-200 kb), plain and BGZF (bgzip,
   ``.fai``/``.gzi`` from ``pysam.faidx`` beside it), ÷ ``pysam.FastaFile.fetch``. Goal <= 1.5.
2. ``vcf``: 300 random regions of 1-50 kb, one call each, over a VCF of 20 samples (a variant every
   ~500 bp on three chromosomes), BGZF with a ``.tbi`` (``pysam.tabix_index``), ÷ ``pysam.TabixFile.fetch``.
   Goal <= 1.5. The same for a BED and a GFF3 of overlapping features.
3. ``cog``: 300 random overlapping windows of 128-1024 pixels a side over a 3-band uint16 deflate COG
   with noise in its low bits (rasterio writes it), ÷ rasterio window reads. Goal <= 1.2. Every window
   is checked equal to rasterio's in a pass of its own; the passes are timed dropping each window once
   read, and keeping all of them.
4. ``s3``: the BGZF VCF on the moto server through the fault proxy: 1,000 random regions in one
   ``partition_regions`` call, all slices read in one process: the requests the proxy saw (goal <= 100)
   and every region's records checked identical to tabix's.
5. ``sidecar``: the sidecar's growth from BGZF (the BGZF object's index less the plain object's) ÷ the
   compressed object, FASTA and VCF. Goal <= 0.5 %.
6. ``partition``: ``partition()`` of a CSV into 10,000 and 100,000 slices from a loaded index, locally
   and on moto through the proxy. Goals <= 50 ms and <= 500 ms.

    python benchmarks/random_access.py [--scale 1] [--repeats 3] [--parts fasta vcf cog s3 sidecar partition]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import warnings
from typing import Any

import fsspec
import numpy as np
import pysam
from _common import goal_line, interleaved_best, load_average, timed, warm_page_cache, write_fasta_record

from dataplug import CloudObject
from dataplug.formats.generic.csv import CSV
from dataplug.formats.generic.csv import partition_num_chunks as csv_chunks
from dataplug.formats.genomics.bed import BED
from dataplug.formats.genomics.fasta import FASTA
from dataplug.formats.genomics.gff import GFF
from dataplug.formats.genomics.vcf import VCF, partition_regions
from dataplug.formats.geospatial.cog import COG

PARTS = ("fasta", "vcf", "cog", "s3", "sidecar", "partition")


# -- data ------------------------------------------------------------------------------------------------


def write_fasta(path: str, scale: float, seed: int = 0) -> list[tuple[str, int]]:
    """300 sequences of 20-200 kb (times ``scale``), 60 bases a line, soft-masked with N runs: (name, length)."""
    rng = np.random.default_rng(seed)
    alphabet = np.frombuffer(b"ACGTacgtNN", np.uint8)
    sequences = []
    with open(path, "wb") as fh:
        for i in range(300):
            n = int(rng.integers(20_000, 200_000) * scale)
            name = f"seq{i + 1}"
            write_fasta_record(fh, f"{name} generated", n, rng, alphabet)
            sequences.append((name, n))
    return sequences


def fasta_queries(sequences: list[tuple[str, int]], count: int, seed: int = 1) -> list[tuple[str, int, int]]:
    """``count`` random regions of 50 bp - 5 kb: (name, start, end), 0-based half-open."""
    rng = np.random.default_rng(seed)
    out = []
    for k in rng.integers(0, len(sequences), count).tolist():
        name, n = sequences[k]
        length = int(rng.integers(50, 5_001))
        start = int(rng.integers(0, max(1, n - length)))
        out.append((name, start, min(n, start + length)))
    return out


CHROMOSOMES = {"chr1": 25_000_000, "chr2": 15_000_000, "chr3": 10_000_000}
SAMPLES = 20
REF_BASES = "ACGTTGCA" * 4


def write_vcf(path: str, scale: float, seed: int = 2) -> int:
    """A sorted VCF of :data:`SAMPLES` samples over :data:`CHROMOSOMES` (lengths times ``scale``), a variant
    every ~500 bp, 2 % of them deletions with REFs of 2-30 bases; its record count."""
    rng = np.random.default_rng(seed)
    genotypes = np.array(["0/0", "0/1", "1/1", "./."])
    pool = [
        "\t".join(f"{genotypes[g]}:{d}" for g, d in zip(rng.integers(0, 4, SAMPLES).tolist(), rng.integers(0, 60, SAMPLES).tolist()))
        for _ in range(4096)
    ]
    meta = ["##fileformat=VCFv4.2"]
    meta += [f"##contig=<ID={c},length={int(n * scale)}>" for c, n in CHROMOSOMES.items()]
    meta += [
        '##INFO=<ID=DP,Number=1,Type=Integer,Description="Depth">',
        '##INFO=<ID=AF,Number=A,Type=Float,Description="Allele frequency">',
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
        '##FORMAT=<ID=DP,Number=1,Type=Integer,Description="Depth">',
    ]
    names = ["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT", *(f"S{i + 1}" for i in range(SAMPLES))]
    records = 0
    with open(path, "w") as fh:
        fh.write("\n".join(meta) + "\n" + "\t".join(names) + "\n")
        for chrom, length in CHROMOSOMES.items():
            length = int(length * scale)
            count = length // 500
            pos = np.sort(rng.integers(1, length - 40, count)).tolist()
            ref_len = np.where(rng.random(count) < 0.02, rng.integers(2, 31, count), 1).tolist()
            qual = rng.integers(0, 1000, count).tolist()
            picks = rng.integers(0, len(pool), count).tolist()
            rows = [
                f"{chrom}\t{p}\trs{records + i}\t{REF_BASES[:r]}\tG\t{q / 10:.1f}\tPASS\tDP={q % 90};AF=0.{q % 97}\tGT:DP\t{pool[k]}"
                for i, (p, r, q, k) in enumerate(zip(pos, ref_len, qual, picks))
            ]
            fh.write("\n".join(rows) + "\n")
            records += count
    return records


def vcf_regions(count: int, scale: float, seed: int) -> list[str]:
    """``count`` random regions of 1-50 kb (``"chr1:1001-5000"``, 1-based inclusive), chromosomes by length."""
    rng = np.random.default_rng(seed)
    names = list(CHROMOSOMES)
    weights = np.array(list(CHROMOSOMES.values()), float)
    out = []
    for c, length in zip(rng.choice(len(names), count, p=weights / weights.sum()).tolist(), rng.integers(1_000, 50_001, count).tolist()):
        start = int(rng.integers(1, int(CHROMOSOMES[names[c]] * scale) - length))
        out.append(f"{names[c]}:{start}-{start + length - 1}")
    return out


# -- parts -----------------------------------------------------------------------------------------------


def bench_fasta(folder: str, scale: float, repeats: int) -> list[str]:
    """2,000 regions, plain and BGZF, against ``pysam.FastaFile.fetch``."""
    path = os.path.join(folder, "genome.fa")
    sequences = write_fasta(path, scale)
    bgz = path + ".gz"
    pysam.tabix_compress(path, bgz)
    pysam.faidx(path)
    pysam.faidx(bgz)
    queries = fasta_queries(sequences, 2_000)
    lines = [
        f"FASTA: {len(sequences)} sequences, {os.path.getsize(path) / 1e6:.0f} MB plain, {os.path.getsize(bgz) / 1e6:.0f} MB BGZF; {len(queries):,} regions of 50 bp - 5 kb"
    ]
    for label, target in (("plain", path), ("BGZF", bgz)):
        CloudObject.from_url(FASTA, target).preprocess(progress=False)
        warm_page_cache(target)

        def ours(target: str = target) -> list[str]:
            with CloudObject.from_url(FASTA, target).reader() as r:
                return [r.region(*q) for q in queries]

        def anchor(target: str = target) -> list[str]:
            with pysam.FastaFile(target) as ff:
                return [ff.fetch(*q) for q in queries]

        (t_ours, got), (t_anchor, expected) = interleaved_best([ours, anchor], repeats)
        assert got == expected, f"FASTA {label}: regions differ from pysam's"
        lines.append(goal_line(f"{len(queries):,} FASTA regions, {label}", t_ours, "pysam", t_anchor, 1.5))
    return lines


def write_bed(path: str, scale: float, seed: int = 6) -> int:
    """A sorted BED6 over :data:`CHROMOSOMES` (lengths times ``scale``): an interval of 20 bp - 5 kb starting
    every ~500 bp, so intervals overlap their neighbours; its record count."""
    rng = np.random.default_rng(seed)
    records = 0
    with open(path, "w") as fh:
        for chrom, length in CHROMOSOMES.items():
            length = int(length * scale)
            count = length // 500
            starts = np.sort(rng.integers(0, length - 5_000, count)).tolist()
            sizes, scores, strands = (
                rng.integers(20, 5_001, count).tolist(),
                rng.integers(0, 1001, count).tolist(),
                rng.integers(0, 2, count).tolist(),
            )
            fh.write(
                "\n".join(
                    f"{chrom}\t{a}\t{a + n}\tpeak{records + i}\t{q}\t{'+-'[d]}" for i, (a, n, q, d) in enumerate(zip(starts, sizes, scores, strands))
                )
                + "\n"
            )
            records += count
    return records


def write_gff(path: str, scale: float, seed: int = 7) -> int:
    """A sorted GFF3 over :data:`CHROMOSOMES` (lengths times ``scale``): a gene of 1-20 kb starting every ~2 kb,
    each followed by three exons inside it, so features overlap; its record count."""
    rng = np.random.default_rng(seed)
    records = 0
    with open(path, "w") as fh:
        fh.write("##gff-version 3\n")
        for chrom, length in CHROMOSOMES.items():
            length = int(length * scale)
            count = length // 2_000
            starts = np.sort(rng.integers(1, length - 20_000, count)).tolist()
            rows = []
            for i, (a, n, d) in enumerate(zip(starts, rng.integers(1_000, 20_001, count).tolist(), rng.integers(0, 2, count).tolist())):
                gene, strand = f"gene{records // 4 + i}", "+-"[d]
                rows.append((a, f"{chrom}\tbench\tgene\t{a}\t{a + n - 1}\t.\t{strand}\t.\tID={gene}"))
                rows += [
                    (a + k * n // 3, f"{chrom}\tbench\texon\t{a + k * n // 3}\t{a + k * n // 3 + n // 6}\t.\t{strand}\t.\tParent={gene}")
                    for k in range(3)
                ]
            rows.sort(key=lambda row: row[0])  # sorted by start, as tabix needs
            fh.write("\n".join(row for _, row in rows) + "\n")
            records += 4 * count
    return records


def tabix_pair(fmt: Any, bgz: str, regions: list[str], repeats: int) -> tuple[float, float, int]:
    """Region reads, one call each, by dataplug and by ``pysam.TabixFile.fetch``, checked identical:
    (our shortest seconds, tabix's, records found)."""
    CloudObject.from_url(fmt, bgz).preprocess(progress=False)
    warm_page_cache(bgz)

    def ours() -> list[list[str]]:
        with CloudObject.from_url(fmt, bgz).reader() as r:
            return [r.records(region) for region in regions]

    def anchor() -> list[list[str]]:
        with pysam.TabixFile(bgz) as tf:
            return [list(tf.fetch(region=r)) for r in regions]

    (t_ours, got), (t_anchor, expected) = interleaved_best([ours, anchor], repeats)
    assert got == expected, f"{fmt.name}: region records differ from tabix's"
    return t_ours, t_anchor, sum(map(len, expected))


def bench_vcf(folder: str, scale: float, repeats: int) -> list[str]:
    """300 VCF regions, and 300 BED and GFF regions, one call each, against ``pysam.TabixFile.fetch``."""
    lines = []
    for fmt, write, preset in ((VCF, write_vcf, "vcf"), (BED, write_bed, "bed"), (GFF, write_gff, "gff")):
        path = os.path.join(folder, f"regions.{preset}")
        records = write(path, scale)
        bgz = pysam.tabix_index(path, preset=preset, keep_original=True, force=True)
        regions = vcf_regions(300, scale, seed=3)
        t_ours, t_anchor, found = tabix_pair(fmt, bgz, regions, repeats)
        what = {VCF: f"{SAMPLES} samples", BED: "BED6 intervals of 20 bp - 5 kb", GFF: "genes of 1-20 kb and their exons"}[fmt]
        lines.append(
            f"{fmt.name}: {records:,} records, {what}, {os.path.getsize(bgz) / 1e6:.1f} MB BGZF + .tbi; "
            f"{len(regions)} regions of 1-50 kb ({found:,} records)"
        )
        lines.append(goal_line(f"{len(regions)} {fmt.name} regions, one call each", t_ours, "tabix", t_anchor, 1.5))
    return lines


def cog_windows(size: int, count: int, seed: int = 4) -> list[tuple[int, int, int, int]]:
    """``count`` random windows ``(col_off, row_off, width, height)`` of 128-1024 pixels a side inside a
    ``size``-pixel square."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        w, h = (int(v) for v in rng.integers(128, min(1024, size) + 1, 2))
        out.append((int(rng.integers(0, size - w + 1)), int(rng.integers(0, size - h + 1)), w, h))
    return out


def bench_cog(folder: str, scale: float, repeats: int) -> list[str]:
    """300 overlapping windows against rasterio window reads."""
    import rasterio
    from geospatial_cog import generate
    from rasterio.windows import Window

    size = max(1024, int(4096 * scale**0.5) // 512 * 512)
    path = os.path.join(folder, "raster.tif")
    generate(path, size)
    CloudObject.from_url(COG, path).preprocess(progress=False)
    warm_page_cache(path)
    windows = cog_windows(size, 300)

    with CloudObject.from_url(COG, path).reader() as r, rasterio.open(path) as src:  # checked once, untimed
        for col, row, w, h in windows:
            assert np.array_equal(r.window(row, col, h, w), src.read(window=Window(col, row, w, h))), "COG: a window differs from rasterio's"

    # Timed twice: dropping each window once read, as a consumer of windows one by one does, and keeping all
    # 300 (about 650 MB at scale 1, so the kernel's page faults weigh on both readers).
    def ours(keep: bool) -> list[np.ndarray]:
        kept = []
        with CloudObject.from_url(COG, path).reader() as r:
            for col, row, w, h in windows:
                pixels = r.window(row, col, h, w)
                if keep:
                    kept.append(pixels)
        return kept

    def anchor(keep: bool) -> list[np.ndarray]:
        kept = []
        with rasterio.open(path) as src:
            for w in windows:
                pixels = src.read(window=Window(*w))
                if keep:
                    kept.append(pixels)
        return kept

    (t_ours, _), (t_anchor, _) = interleaved_best([lambda: ours(False), lambda: anchor(False)], repeats)
    (t_ours_kept, _), (t_anchor_kept, _) = interleaved_best([lambda: ours(True), lambda: anchor(True)], repeats)
    return [
        f"COG: {size} x {size} x 3 uint16, deflate + predictor, 512-pixel tiles, {os.path.getsize(path) / 1e6:.0f} MB; {len(windows)} windows of 128-1024 px",
        goal_line(f"{len(windows)} COG windows, each dropped once read", t_ours, "rasterio", t_anchor, 1.2),
        goal_line(f"{len(windows)} COG windows, all kept", t_ours_kept, "rasterio", t_anchor_kept, 1.2),
    ]


class MotoBed:
    """The moto server and the fault proxy in front of it (no faults): ``direct`` and ``proxied`` storage
    options; a context manager."""

    def __enter__(self) -> MotoBed:  # noqa: PYI034 - a plain class, never subclassed
        from dataplug.testing.faultproxy import FaultProxy
        from dataplug.testing.fixtures import REGION, start_moto

        env = {**os.environ, "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s", "AWS_DEFAULT_REGION": REGION}
        self._moto, endpoint = start_moto(env)
        self.proxy = FaultProxy(endpoint, lifetime=3600).start()
        base = {"key": "k", "secret": "s", "client_kwargs": {"region_name": REGION}}
        self.direct = {**base, "endpoint_url": endpoint}
        self.proxied = {**base, "endpoint_url": self.proxy.endpoint}
        fsspec.filesystem("s3", **self.direct).mkdir("bench")
        return self

    def __exit__(self, *exc: object) -> None:
        self.proxy.stop()
        self._moto.terminate()
        self._moto.wait(10)

    def put(self, local: str, name: str) -> str:
        """Upload ``local`` to the bucket directly; its URL."""
        fs = fsspec.filesystem("s3", **self.direct)
        fs.put_file(local, f"bench/{name}")
        fs.invalidate_cache()
        return f"s3://bench/{name}"

    def requests(self, name: str) -> tuple[int, int]:
        """Requests the proxy saw since the last reset: all of them (object and sidecar), and the ranged GETs
        of object ``name`` among them."""
        seen = list(self.proxy.requests)
        ranged = sum(1 for r in seen if r.method == "GET" and "range" in r.headers and r.target.split("?")[0] == f"/bench/{name}")
        return len(seen), ranged


def bench_s3(folder: str, scale: float, bed: MotoBed) -> list[str]:
    """1,000 VCF regions of one ``partition_regions`` call on moto: the requests, and records against tabix."""
    path = os.path.join(folder, "s3calls.vcf")
    write_vcf(path, scale)
    bgz = pysam.tabix_index(path, preset="vcf", keep_original=True, force=True)
    url = bed.put(bgz, "calls.vcf.gz")
    CloudObject.from_url(VCF, url, storage_options=bed.proxied).preprocess(progress=False)
    regions = vcf_regions(1_000, scale, seed=5)
    bed.proxy.set_mode(None)
    co = CloudObject.from_url(VCF, url, storage_options=bed.proxied)
    t, got = timed(lambda: [piece.records() for piece in co.partition(partition_regions, regions)])
    total, ranged = bed.requests("calls.vcf.gz")
    with pysam.TabixFile(bgz) as tf:
        assert got == [list(tf.fetch(region=r)) for r in regions], "S3: region records differ from tabix's"
    return [
        (
            f"VCF on moto through the proxy: {len(regions):,} regions of 1-50 kb in one partition_regions call, read in one process in {t:.2f} s "
            f"({sum(map(len, got)):,} records, identical to tabix)"
        ),
        f"  {'requests, index and identity included':<44} {total:9d}     ({ranged} ranged GETs of the object)   goal <= 100   {'met' if total <= 100 else 'MISSED'}",
    ]


def bench_sidecar(folder: str, scale: float) -> list[str]:
    """The sidecar's growth from BGZF ÷ the compressed object, FASTA and VCF."""
    lines = []
    for label, write, fmt in (("FASTA", write_fasta, FASTA), ("VCF", write_vcf, VCF)):
        path = os.path.join(folder, f"sidecar.{label.lower()}")
        write(path, scale)
        pysam.tabix_compress(path, path + ".gz", force=True)
        plain = CloudObject.from_url(fmt, path).preprocess(progress=False).index().nbytes()
        zipped = CloudObject.from_url(fmt, path + ".gz").preprocess(progress=False).index().nbytes()
        compressed = os.path.getsize(path + ".gz")
        share = 100 * (zipped - plain) / compressed
        lines.append(
            f"  {label + ' sidecar growth from BGZF (' + f'{compressed / 1e6:.0f} MB)':<44} {zipped - plain:9,d} B   "
            f"÷ compressed object {share:.3f} %   goal <= 0.5 %   {'met' if share <= 0.5 else 'MISSED'}"
        )
    return lines


def bench_partition(folder: str, scale: float, repeats: int, bed: MotoBed | None) -> list[str]:
    """``partition()`` of a CSV into 10,000 and 100,000 slices from a loaded index, local and on moto."""
    from dataplug.demo import generate_csv

    path = os.path.join(folder, "table.csv")
    rows = generate_csv(path, max(4, int(20 * scale)))
    CloudObject.from_url(CSV, path).preprocess(progress=False)
    places = [("local", path, None)]
    if bed is not None:
        url = bed.put(path, "table.csv")
        CloudObject.from_url(CSV, url, storage_options=bed.proxied).preprocess(progress=False)
        places.append(("moto", url, bed.proxied))
    lines = [f"partition(): CSV of {os.path.getsize(path) / 1e6:.0f} MB, {rows:,} rows, index loaded before the clock starts"]
    for where, url, options in places:
        co = CloudObject.from_url(CSV, url, storage_options=options)
        co.index()
        if bed is not None:
            bed.proxy.set_mode(None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # slices closer than the checkpoints warn; what is measured here is the planning
            timings = interleaved_best([lambda co=co, n=n: co.partition(csv_chunks, n) for n in (10_000, 100_000)], repeats)
        asked = f"   ({len(bed.proxy.requests)} requests in {2 * repeats} calls)" if options is not None and bed is not None else ""
        for n, goal, (t, slices) in zip((10_000, 100_000), (0.05, 0.5), timings):
            assert len(slices) == n and sum(s.num_records for s in slices) == rows
            verdict = "met" if t <= goal else "MISSED"
            lines.append(f"  {f'{n:,} CSV slices, {where}':<44} {t * 1000:9.1f} ms   goal <= {goal * 1000:g} ms   {verdict}{asked}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies the size of every generated object")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs of each timed pair; the shortest is kept")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()

    print(f"random access (issue 20), scale {args.scale:g}, shortest of {args.repeats} interleaved runs; {load_average()}")
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        if "fasta" in args.parts:
            print("\n".join(bench_fasta(folder, args.scale, args.repeats)), flush=True)
        if "vcf" in args.parts:
            print("\n".join(bench_vcf(folder, args.scale, args.repeats)), flush=True)
        if "cog" in args.parts:
            print("\n".join(bench_cog(folder, args.scale, args.repeats)), flush=True)
        if "sidecar" in args.parts:
            print("Sidecar growth from BGZF")
            print("\n".join(bench_sidecar(folder, args.scale)), flush=True)
        if "s3" in args.parts or "partition" in args.parts:
            with MotoBed() as bed:
                if "s3" in args.parts:
                    print("\n".join(bench_s3(folder, args.scale, bed)), flush=True)
                if "partition" in args.parts:
                    print("\n".join(bench_partition(folder, args.scale, args.repeats, bed)), flush=True)
    print(f"done; {load_average()}")


if __name__ == "__main__":
    main()
