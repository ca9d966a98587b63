"""Seeded coordinate-sorted BAM files written by htslib (pysam), shaped like an aligner's output: read groups,
tags of every SAM type, deletions, insertions, soft clips and skips, paired reads, unmapped reads placed
beside their mate and unmapped pairs at the end; with a ``.bai`` when asked."""

from __future__ import annotations

import array
import struct
from pathlib import Path

import numpy as np

REFERENCES = (("chr1", 200_000), ("chr2", 120_000), ("chr10", 50_000), ("chrUn_gl1", 3_000), ("chrM", 16_569))
READ_GROUPS = ("grpA", "grpB")


def header(references: tuple[tuple[str, int], ...] = REFERENCES, sort_order: str = "coordinate") -> dict:
    return {
        "HD": {"VN": "1.6", "SO": sort_order},
        "SQ": [{"SN": name, "LN": length} for name, length in references],
        "RG": [{"ID": rg, "SM": f"sample_{rg}", "PL": "ILLUMINA"} for rg in READ_GROUPS],
        "PG": [{"ID": "gen", "PN": "bam_files.py", "VN": "1"}],
    }


def _cigar(rng: np.random.Generator, length: int) -> list[tuple[int, int]]:
    """A CIGAR whose query length is ``length``: matches with, at times, soft clips, an insertion, a deletion
    or a skip."""
    kind = rng.integers(0, 6)
    if kind == 0 and length > 20:  # soft clips at both ends
        a, b = int(rng.integers(1, 8)), int(rng.integers(1, 8))
        return [(4, a), (0, length - a - b), (4, b)]
    if kind == 1 and length > 20:  # insertion
        a, ins = int(rng.integers(5, length - 10)), int(rng.integers(1, 4))
        return [(0, a), (1, ins), (0, length - a - ins)]
    if kind == 2 and length > 20:  # deletion
        a = int(rng.integers(5, length - 5))
        return [(0, a), (2, int(rng.integers(1, 6))), (0, length - a)]
    if kind == 3 and length > 20:  # spliced, with =/X
        a = int(rng.integers(5, length - 5))
        return [(7, a), (3, int(rng.integers(50, 500))), (8, 1), (0, length - a - 1)]
    return [(0, length)]


def records(pysam, rng: np.random.Generator, pairs: int, references: tuple[tuple[str, int], ...], unmapped_pairs: int, hdr) -> list:
    """Aligned segments in coordinate order (unmapped pairs last)."""
    out = []
    lengths = dict(references)
    names = [name for name, _ in references]
    for i in range(pairs):
        tid = int(rng.choice(len(names), p=np.array([length for _, length in references]) / sum(lengths.values())))
        span = lengths[names[tid]]
        length = int(rng.integers(30, 151))
        pos = int(rng.integers(0, max(1, span - 1000)))
        mate_pos = min(span - 200, pos + int(rng.integers(0, 400)))
        mate_unmapped = rng.random() < 0.05
        rg = READ_GROUPS[i % len(READ_GROUPS)]
        for mate in (0, 1):
            seg = pysam.AlignedSegment(hdr)
            seg.query_name = f"read{i}:{int(rng.integers(0, 99999))}"
            n = length if mate == 0 else int(rng.integers(30, 151))
            seg.query_sequence = "".join(rng.choice(list("ACGTN"), n, p=[0.24, 0.25, 0.25, 0.25, 0.01]))
            seg.flag = 1 | (64 if mate == 0 else 128)
            unmapped = mate == 1 and mate_unmapped
            seg.reference_id = tid
            seg.next_reference_id = tid
            if unmapped:  # placed beside its mate, as aligners do
                seg.flag |= 4
                seg.reference_start = pos
                seg.next_reference_start = pos
                seg.mapping_quality = 0
            else:
                seg.reference_start = pos if mate == 0 else mate_pos
                seg.next_reference_start = pos if (mate == 1 or mate_unmapped) else mate_pos
                seg.mapping_quality = int(rng.integers(0, 61))
                seg.cigartuples = _cigar(rng, n)
                if mate == 0 and mate_unmapped:
                    seg.flag |= 8
                else:
                    seg.flag |= 2 | (16 if mate == 1 else 32)
                    seg.template_length = (mate_pos + n - pos) * (1 if mate == 0 else -1)
            if rng.random() < 0.9:
                seg.query_qualities = array.array("B", rng.integers(2, 41, n).tolist())
            seg.set_tag("RG", rg, value_type="Z")
            if not unmapped:
                seg.set_tag("NM", int(rng.integers(0, 5)), value_type="i")
                seg.set_tag("AS", int(rng.integers(-200, 200)), value_type="i")
                seg.set_tag("MD", str(n), value_type="Z")
            extra = int(rng.integers(0, 8))
            if extra == 1:
                seg.set_tag("XF", float(np.float32(rng.normal() * 1000)), value_type="f")
            elif extra == 2:
                seg.set_tag("ZB", array.array("h", rng.integers(-300, 300, 4).tolist()))
            elif extra == 3:
                seg.set_tag("ZF", array.array("f", [1.5, -0.25, 3e-5]))
            elif extra == 4:
                seg.set_tag("XA", "Q", value_type="A")
                seg.set_tag("XH", "1AE301", value_type="H")
            elif extra == 5:
                seg.set_tag("XI", int(rng.integers(-2**31, 2**31)), value_type="i")
                seg.set_tag("XU", array.array("I", [4_000_000_000, 7]))
            elif extra == 6:
                seg.set_tag("Xc", int(rng.integers(-128, 128)), value_type="c")
                seg.set_tag("XS", int(rng.integers(0, 65536)), value_type="S")
                seg.set_tag("ZC", array.array("b", [-1, 2, -3]))
            out.append(seg)
    out.sort(key=lambda s: (s.reference_id, s.reference_start))
    for i in range(unmapped_pairs):
        for mate in (0, 1):
            seg = pysam.AlignedSegment(hdr)
            seg.query_name = f"unmapped{i}"
            n = int(rng.integers(30, 151))
            seg.query_sequence = "".join(rng.choice(list("ACGT"), n))
            seg.query_qualities = array.array("B", rng.integers(2, 41, n).tolist())
            seg.flag = 1 | 4 | 8 | (64 if mate == 0 else 128)
            seg.reference_id = seg.next_reference_id = -1
            seg.reference_start = seg.next_reference_start = -1
            seg.set_tag("RG", READ_GROUPS[i % 2], value_type="Z")
            out.append(seg)
    return out


def write_bam(
    path: Path,
    pairs: int,
    seed: int,
    *,
    index: bool = False,
    unmapped_pairs: int = 10,
    references: tuple[tuple[str, int], ...] = REFERENCES,
    shuffled: bool = False,
) -> Path:
    """A BAM of ``pairs`` read pairs (and ``unmapped_pairs`` at the end) at ``path``, coordinate-sorted unless
    ``shuffled`` (its header then says ``SO:unsorted``); ``index`` writes the ``.bai`` beside it."""
    import pysam

    rng = np.random.default_rng(seed)
    with pysam.AlignmentFile(str(path), "wb", header=header(references, "unsorted" if shuffled else "coordinate")) as out:
        segments = records(pysam, rng, pairs, references, unmapped_pairs, out.header)
        if shuffled:
            order = rng.permutation(len(segments))
            segments = [segments[i] for i in order]
        for seg in segments:
            out.write(seg)
    if index:
        pysam.index(str(path))
    return path


def bam_bytes(pairs: int, seed: int, folder: Path, **kwargs) -> bytes:
    """:func:`write_bam`'s bytes (written in ``folder``)."""
    return write_bam(Path(folder) / f"gen{seed}.bam", pairs, seed, **kwargs).read_bytes()


def large_bam(path: Path, records: int, seed: int, read_length: int = 150, level: int = 0) -> Path:
    """A coordinate-sorted BAM of ``records`` single-end reads built with NumPy (fast enough for objects of
    hundreds of MiB): names ``r<number>``, ``<read_length>M``, random bases and qualities, ``RG:Z`` and ``NM:C``
    tags, two references; written as BGZF members of 65280 decoded bytes with the EOF block, at zlib ``level`` (0:
    stored deflate blocks, valid BGZF that costs no compression time)."""
    from dataplug.testing.codecs import BGZF_EOF, bgzf

    rng = np.random.default_rng(seed)
    refs = ((b"chr1", 250_000_000), (b"chr2", 240_000_000))
    text = b"@HD\tVN:1.6\tSO:coordinate\n" + b"".join(b"@SQ\tSN:%s\tLN:%d\n" % r for r in refs) + b"@RG\tID:grpA\tSM:s\n"
    head = b"BAM\x01" + struct.pack("<i", len(text)) + text + struct.pack("<i", len(refs))
    head += b"".join(struct.pack("<i", len(n) + 1) + n + b"\0" + struct.pack("<i", ln) for n, ln in refs)
    name_len = 10  # "r" + 8 digits + NUL
    tags = b"RGZgrpA\0NMC"
    size = 32 + name_len + 4 + (read_length + 1) // 2 + read_length + len(tags) + 1
    rec = np.zeros((records, 4 + size), np.uint8)
    half = records // 2
    ref = np.where(np.arange(records) < half, 0, 1).astype("<i4")
    pos = np.concatenate([np.sort(rng.integers(0, 200_000_000, half)), np.sort(rng.integers(0, 200_000_000, records - half))]).astype("<i4")
    fixed = np.zeros(records, np.dtype([("bs", "<i4"), ("ref", "<i4"), ("pos", "<i4"), ("ln", "u1"), ("mq", "u1"), ("bin", "<u2"),
                                        ("nc", "<u2"), ("flag", "<u2"), ("ls", "<i4"), ("nr", "<i4"), ("np", "<i4"), ("tl", "<i4")]))
    fixed["bs"], fixed["ref"], fixed["pos"], fixed["ln"] = size, ref, pos, name_len
    fixed["mq"], fixed["nc"], fixed["flag"], fixed["ls"] = rng.integers(0, 61, records), 1, 0, read_length
    fixed["nr"], fixed["np"] = -1, -1
    rec[:, :36] = fixed.view(np.uint8).reshape(records, 36)
    digits = (np.arange(records)[:, None] // 10 ** np.arange(7, -1, -1)) % 10
    rec[:, 36] = ord("r")
    rec[:, 37:45] = digits + ord("0")
    at = 36 + name_len
    rec[:, at : at + 4] = np.frombuffer(struct.pack("<I", read_length << 4), np.uint8)
    at += 4
    bases = np.array([1, 2, 4, 8], np.uint8)[rng.integers(0, 4, (records, 2 * ((read_length + 1) // 2)), dtype=np.uint8)]
    rec[:, at : at + (read_length + 1) // 2] = (bases[:, 0::2] << 4) | bases[:, 1::2]
    at += (read_length + 1) // 2
    rec[:, at : at + read_length] = rng.integers(2, 41, (records, read_length), dtype=np.uint8)
    at += read_length
    rec[:, at : at + len(tags)] = np.frombuffer(tags, np.uint8)
    rec[:, at + len(tags)] = rng.integers(0, 5, records)
    path.write_bytes(bgzf(head, level=level)[0][: -len(BGZF_EOF)] + bgzf(rec.tobytes(), level=level)[0])
    return path

