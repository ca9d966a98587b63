"""Seeded generators of sample objects shared by dataplug's tests (and usable by a plugin's): reads, CSV
rows with quoted newlines, random text lines, sorted VCF records, and LAS/LAZ point clouds with awkward
edges (the LiDAR ones need the ``lidar`` extra), and Illumina-shaped reads (:func:`illumina_fastq`), the shape
the gzip benchmarks measure on. Scan-ordered LiDAR lives in :mod:`dataplug.synthetic`."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import laspy

#: Rows :func:`make_csv` writes by default.
ROWS = 20_000
#: Samples and chromosomes (with their lengths) of :func:`make_vcf`.
SAMPLES = ("NA1", "NA2", "NA3")
CHROMS = {"chr1": 60_000, "chr2": 40_000, "chr10": 30_000, "chrUn_gl1": 2_000}
#: Raw X/Y extent of :func:`cloud` (coordinates 0..SPAN).
SPAN = 20160


def make_fastq(reads: int, seed: int, max_len: int = 150) -> bytes:
    """Random reads of varied length (seeded numpy, so large inputs stay fast to build)."""
    rng = np.random.default_rng(seed)
    bases = np.frombuffer(b"ACGTN", np.uint8)
    out = []
    for i, n in enumerate(rng.integers(1, max_len + 1, reads)):
        seq = bases[rng.integers(0, 5, n)].tobytes()
        qual = rng.integers(33, 74, n).astype(np.uint8).tobytes()
        out.append(b"@read%d/%d\n%s\n+\n%s\n" % (i, seed, seq, qual))
    return b"".join(out)


def illumina_fastq(reads: int, seed: int, length: int = 151) -> bytes:
    """Paired-end-style Illumina reads: ``@instrument:run:flowcell:lane:tile:x:y 1:N:0:index`` names, 151
    bases with a few N and some reads adapter-trimmed shorter, binned NovaSeq qualities (``F``, ``:``,
    ``,``, ``#``); built with numpy, so tens of MiB take seconds."""
    rng = np.random.default_rng(seed)
    lengths = np.where(rng.random(reads) < 0.08, rng.integers(35, length, reads), length)
    seq = np.frombuffer(b"ACGT", np.uint8)[rng.integers(0, 4, (reads, length), dtype=np.uint8)]
    draw = rng.integers(0, 1000, (reads, length), dtype=np.uint16)
    seq[draw < 2] = ord("N")
    qual = np.frombuffer(b"F" * 850 + b":" * 100 + b"," * 40 + b"#" * 10, np.uint8)[draw[:, ::-1]]
    qual[seq == ord("N")] = ord("#")
    lane, tile = rng.integers(1, 5, reads), rng.integers(1101, 2679, reads)
    x, y = rng.integers(1000, 32000, reads), rng.integers(1000, 37000, reads)
    index = np.array([b"ACGTACGT+TTGACCAA", b"GGATCCAA+CATGCATG", b"NCGTACGT+TTGACCAA"])[rng.choice(3, reads, p=[0.6, 0.39, 0.01])]
    out = []
    for i, n in enumerate(lengths.tolist()):
        name = b"A00123:8:H5KJ3DSXX:%d:%d:%d:%d 1:N:0:%s" % (lane[i], tile[i], x[i], y[i], index[i])
        out.append(b"@%s\n%s\n+\n%s\n" % (name, seq[i, :n].tobytes(), qual[i, :n].tobytes()))
    return b"".join(out)


def make_csv(rows: int = ROWS) -> bytes:
    """A CSV whose every 37th row has a quoted field holding a newline, a comma and a doubled quote."""
    out = ["id,station,temp,note\n"]
    for i in range(rows):
        note = '"checked twice,\nsensor said ""ok"""' if i % 37 == 0 else "ok"
        out.append(f"{i},station-{i % 200:03d},{(i * 7919) % 4000 / 100 - 10:.2f},{note}\n")
    return "".join(out).encode()


def random_lines(rng: np.random.Generator, size: int) -> bytes:
    """Lines of 0..200 random letters, to ``size`` bytes."""
    data = rng.integers(97, 123, size, dtype=np.uint8)
    ends = np.cumsum(rng.integers(1, 202, size // 50)) - 1
    data[ends[ends < size]] = 10
    data[-1] = 10
    return data.tobytes()


def make_vcf(records: int, seed: int = 0, samples: tuple[str, ...] = SAMPLES) -> str:
    """A sorted VCF: several chromosomes, repeated positions, some long REFs and some INFO ``END=``."""
    rng = np.random.default_rng(seed)
    head = ["##fileformat=VCFv4.2", *(f"##contig=<ID={c},length={n}>" for c, n in CHROMS.items())]
    head.append('##INFO=<ID=END,Number=1,Type=Integer,Description="End">')
    head.append("\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", *(["FORMAT", *samples] if samples else [])]))
    names = list(CHROMS)
    per = rng.multinomial(records, [0.4, 0.3, 0.25, 0.05])
    lines = []
    for chrom, count in zip(names, per):
        for pos in np.sort(rng.integers(1, CHROMS[chrom], count)).tolist():
            kind = rng.random()
            ref = "".join(rng.choice(list("ACGT"), int(rng.integers(20, 400)) if kind < 0.1 else 1))
            info = f"DP={int(rng.integers(1, 99))}"
            if kind > 0.95:
                info = f"END={pos + int(rng.integers(0, 3000))};SVTYPE=DEL" if kind > 0.975 else f"SVTYPE=DEL;END={pos + int(rng.integers(0, 3000))}"
            qual = "." if kind < 0.2 else f"{rng.random() * 100:.1f}"
            genotypes = [f"{rng.integers(0, 2)}/{rng.integers(0, 2)}:{rng.integers(0, 60)}" for _ in samples]
            alt = "T" if ref[0] != "T" else "G"
            fields = [chrom, str(pos), f"rs{len(lines)}", ref, alt, qual, "PASS", info, *(["GT:DP", *genotypes] if samples else [])]
            lines.append("\t".join(fields))
    return "\n".join(head + lines) + "\n"


def cloud(n: int, fmt: int, seed: int = 0, extra_bytes: bool = False, span: int = SPAN, version: str | None = None) -> laspy.LasData:
    """``n`` points with a unique id each, half sorted by the tiles of an 8 x 8 grid (so blocks are local) and
    half scattered; points sit on every grid edge, on the extent's corners, and some share coordinates."""
    import laspy

    rng = np.random.default_rng(seed)
    header = laspy.LasHeader(point_format=fmt, version=version or ("1.4" if fmt >= 6 else "1.2"))
    header.scales = np.array([0.25, 0.25, 0.01])
    header.offsets = np.array([0.0, 0.0, 0.0])
    if extra_bytes:
        header.add_extra_dims([laspy.ExtraBytesParams("height_above", np.float32), laspy.ExtraBytesParams("tags", "3u1")])
    las = laspy.LasData(header)
    raw = rng.integers(0, span + 1, size=(n, 2))
    edges = np.unique(np.concatenate([np.arange(k + 1) * span // k for k in range(1, 11)]))
    on_edge = rng.random(n) < 0.3
    raw[on_edge, 0] = rng.choice(edges, on_edge.sum())
    on_edge = rng.random(n) < 0.3
    raw[on_edge, 1] = rng.choice(edges, on_edge.sum())
    if n >= 2:
        raw[: n // 10] = raw[n // 10 : 2 * (n // 10)]  # duplicated coordinates
        raw[0], raw[-1] = (0, 0), (span, span)
    tile = (raw[: n // 2] * 8 // (span + 1)) @ np.array([8, 1])
    raw[: n // 2] = raw[: n // 2][np.argsort(tile, kind="stable")]
    las.X, las.Y = raw[:, 0], raw[:, 1]
    las.Z = rng.integers(-500, 5000, n)
    las.intensity = rng.integers(0, 2**16, n)
    las.point_source_id = np.arange(n) % 2**16
    las.number_of_returns = np.full(n, 3)
    las.return_number = rng.integers(1, 4, n)
    if "gps_time" in las.point_format.dimension_names:
        las.gps_time = np.arange(n, dtype=np.float64)
    else:
        las.intensity = np.arange(n) // 2**16
    if extra_bytes:
        las.height_above = rng.random(n).astype(np.float32)
        las.tags = rng.integers(0, 255, (n, 3))
    las.update_header()
    return las


def las_bytes(las: laspy.LasData) -> bytes:
    """The cloud as an uncompressed LAS file."""
    buf = io.BytesIO()
    las.write(buf, do_compress=False)
    return buf.getvalue()


def laz_bytes(las: laspy.LasData, cuts: list[int] | None = None) -> bytes:
    """LAZ with laspy's fixed-size chunks (``cuts`` None), or variable-size chunks ending at ``cuts``."""
    import laspy
    import lazrs
    from laspy.vlrs.known import LasZipVlr

    if cuts is None:
        buf = io.BytesIO()
        las.write(buf, do_compress=True)
        return buf.getvalue()
    raw = las_bytes(las)
    header = laspy.LasHeader.read_from(io.BytesIO(raw))
    size, start = header.point_format.size, header.offset_to_point_data
    vlr = lazrs.LazVlr.new_for_compression(header.point_format.id, header.point_format.num_extra_bytes, True)
    header.vlrs.append(LasZipVlr(vlr.record_data()))
    header.are_points_compressed = True
    out = io.BytesIO()
    header.write_to(out)
    compressor = lazrs.LasZipCompressor(out, vlr)
    bounds = [0, *cuts, len(las.points)]
    compressor.compress_chunks([raw[start + a * size : start + b * size] for a, b in zip(bounds[:-1], bounds[1:]) if b > a])
    compressor.done()
    return out.getvalue()
