"""BAM's binary layout (the SAM/BAM specification, section 4.2) read with NumPy: the header, the chain of
records (``block_size`` fields), their fixed fields by one structured dtype, and their columns as Arrow
arrays, vectorised over every record of a decoded buffer (sequences through a 256-entry table of base
pairs, qualities + 33, CIGAR operations and tags by lookup). No htslib.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dataplug.errors import CorruptIndexError, InvalidFormatError

MAGIC = b"BAM\x01"
#: The fixed part of a record after ``block_size`` (refID to tlen) is 32 bytes; with ``block_size`` 36.
FIXED = np.dtype(
    [
        ("block_size", "<i4"),
        ("ref", "<i4"),
        ("pos", "<i4"),
        ("l_read_name", "u1"),
        ("mapq", "u1"),
        ("bin", "<u2"),
        ("n_cigar", "<u2"),
        ("flag", "<u2"),
        ("l_seq", "<i4"),
        ("next_ref", "<i4"),
        ("next_pos", "<i4"),
        ("tlen", "<i4"),
    ]
)
FIXED_SIZE = FIXED.itemsize
#: The largest record accepted (htslib refuses records over 2 GiB; a crafted ``block_size`` must not drive
#: allocations or let one record swallow the stream).
MAX_RECORD = 2**31 - 1 - 4
CIGAR_OPS = "MIDNSHP=X"
#: CIGAR operations that consume the reference (M, D, N, =, X) as a bit mask, as htslib's ``bam_cigar2rlen``.
REFERENCE_OPS = sum(1 << CIGAR_OPS.index(op) for op in "MDN=X")
SEQ_CODES = "=ACMGRSVTWYHKDBN"
#: Two bases per packed byte.
SEQ_PAIRS_16 = np.frombuffer("".join(a + b for a in SEQ_CODES for b in SEQ_CODES).encode(), "<u2")
#: Byte size of each fixed-size tag value type, by type character.
TAG_SIZES = {ord("A"): 1, ord("c"): 1, ord("C"): 1, ord("s"): 2, ord("S"): 2, ord("i"): 4, ord("I"): 4, ord("f"): 4}
#: :data:`TAG_SIZES` as a lookup table by type byte (0: not a fixed-size type), and B arrays' element sizes.
_SIZE_LUT = np.zeros(256, np.int64)
_SIZE_LUT[list(TAG_SIZES)] = list(TAG_SIZES.values())
_ELEMENT_LUT = np.zeros(256, np.int64)
_ELEMENT_LUT[[ord(c) for c in "cCsSiIf"]] = [1, 1, 2, 2, 4, 4, 4]
_INT_TYPES = {ord("c"): "i1", ord("C"): "u1", ord("s"): "<i2", ord("S"): "<u2", ord("i"): "<i4", ord("I"): "<u4"}
_ARRAY_TYPES = {ord("c"): "i1", ord("C"): "u1", ord("s"): "<i2", ord("S"): "<u2", ord("i"): "<i4", ord("I"): "<u4", ord("f"): "<f4"}
_INT32 = struct.Struct("<i")
#: :data:`FIXED` as a :mod:`struct` layout, for the few records of a small region read one by one.
FIXED_STRUCT = struct.Struct("<iiiBBHHHiiii")
_HEX_TO_SEQ = str.maketrans("0123456789abcdef", SEQ_CODES)
_PLUS_33 = bytes((b + 33) & 0xFF for b in range(256))
_TAG_INTS = {ord(c): struct.Struct("<" + c.replace("C", "B").replace("c", "b").replace("S", "H").replace("s", "h")) for c in "cCsSiI"}
_TAG_FLOAT = struct.Struct("<f")
_U32 = struct.Struct("<I").unpack_from
#: CIGAR operation letters by code, ``?`` for the codes the specification does not define.
_OPS_16 = tuple(CIGAR_OPS) + ("?",) * (16 - len(CIGAR_OPS))
_TAG_COUNT = struct.Struct("<I")
_ARRAY_CODES = {ord("c"): "b", ord("C"): "B", ord("s"): "h", ord("S"): "H", ord("i"): "i", ord("I"): "I", ord("f"): "f"}
#: The SAM columns of :func:`columns`, in SAM order.
COLUMNS = ("qname", "flag", "rname", "pos", "mapq", "cigar", "rnext", "pnext", "tlen", "seq", "qual", "tags")


@dataclass(frozen=True)
class Header:
    """A BAM header: the SAM header text and the reference sequences, and where the records start."""

    text: str
    names: tuple[str, ...]
    lengths: tuple[int, ...]
    #: Decoded bytes from the magic to the end of the reference list (the first record's offset).
    size: int

    @property
    def sort_order(self) -> str:
        """The ``SO:`` of the ``@HD`` line (``"unknown"`` without one)."""
        for line in self.text.split("\n"):
            if line.startswith("@HD"):
                for field in line.split("\t")[1:]:
                    if field.startswith("SO:"):
                        return field[3:]
        return "unknown"


def parse_header(url: str, data: bytes, complete: bool) -> Header | None:
    """The header at the start of the decoded stream ``data``; ``None`` when ``data`` ends inside it and is
    not the ``complete`` stream. A short or malformed header is an :class:`InvalidFormatError`."""

    def need(at: int, n: int) -> bool:
        if at + n <= len(data):
            return True
        if complete:
            raise InvalidFormatError(url, "the BAM header is cut short: the stream ends inside it", offset=min(at, len(data)))
        return False

    if not need(0, 8):
        return None
    if data[:4] != MAGIC:
        raise InvalidFormatError(url, "not a BAM: the decoded stream does not start with 'BAM\\1'", offset=0)
    l_text = _INT32.unpack_from(data, 4)[0]
    if l_text < 0:
        raise InvalidFormatError(url, f"the BAM header's text length is negative ({l_text})", offset=4)
    if not need(8, l_text + 4):
        return None
    text = data[8 : 8 + l_text].split(b"\0", 1)[0].decode("utf-8", "replace")
    at = 8 + l_text
    n_ref = _INT32.unpack_from(data, at)[0]
    if n_ref < 0:
        raise InvalidFormatError(url, f"the BAM header's reference count is negative ({n_ref})", offset=at)
    at += 4
    names, lengths = [], []
    for _ in range(n_ref):
        if not need(at, 4):
            return None
        l_name = _INT32.unpack_from(data, at)[0]
        if l_name < 1:
            raise InvalidFormatError(url, f"a reference name of length {l_name} in the BAM header", offset=at)
        if not need(at + 4, l_name + 4):
            return None
        raw = data[at + 4 : at + 4 + l_name]
        if raw[-1] != 0:
            raise InvalidFormatError(url, "a reference name in the BAM header is not NUL-terminated", offset=at + 4)
        names.append(raw[:-1].decode("utf-8", "replace"))
        length = _INT32.unpack_from(data, at + 4 + l_name)[0]
        if length < 0:
            raise InvalidFormatError(url, f"reference {names[-1]!r} has a negative length in the BAM header", offset=at + 4 + l_name)
        lengths.append(length)
        at += 8 + l_name
    return Header(text, tuple(names), tuple(lengths), at)


def walk(url: str, buf: np.ndarray, base: int, start: int, end: int) -> tuple[np.ndarray, int, bool]:
    """Record starts (logical offsets) of the chain from ``start`` while they are before ``end``, in ``buf``
    (the decoded bytes from logical ``base``); returns them, the offset after the last record (the next
    start) and whether the chain ran out of bytes (a record or its ``block_size`` past ``buf``'s end).
    A ``block_size`` below the fixed fields is an :class:`InvalidFormatError`."""
    view, n = memoryview(buf), buf.size
    out, q = [], start
    unpack = _INT32.unpack_from
    while q < end:
        i = q - base
        if i + 4 > n:
            return np.array(out, np.int64), q, True
        size = unpack(view, i)[0]
        if size < FIXED_SIZE - 4 or size > MAX_RECORD:
            raise InvalidFormatError(url, f"a BAM record's block_size is {size}: not a record (corrupt data or a wrong index)", offset=q)
        if i + 4 + size > n:
            return np.array(out, np.int64), q, True
        out.append(q)
        q += 4 + size
    return np.array(out, np.int64), q, False


def fixed_fields(buf: np.ndarray, at: np.ndarray) -> np.ndarray:
    """The fixed fields of the records at positions ``at`` of ``buf``, as a :data:`FIXED` record array."""
    if not at.size:
        return np.zeros(0, FIXED)
    rows = buf[at[:, None] + np.arange(FIXED_SIZE)]
    return np.ascontiguousarray(rows).view(FIXED).ravel()


def check_records(url: str, buf: np.ndarray, at: np.ndarray, fixed: np.ndarray, base: int, n_ref: int) -> None:
    """An :class:`InvalidFormatError` naming the first record (at ``base + at``) whose fields do not fit its
    ``block_size`` or the header's references."""
    variable = fixed["l_read_name"].astype(np.int64) + 4 * fixed["n_cigar"].astype(np.int64)
    variable += (fixed["l_seq"].astype(np.int64) + 1) // 2 + fixed["l_seq"]
    bad = (fixed["ref"] < -1) | (fixed["ref"] >= n_ref) | (fixed["next_ref"] < -1) | (fixed["next_ref"] >= n_ref)
    bad |= (fixed["pos"] < -1) | (fixed["l_read_name"] < 1) | (fixed["l_seq"] < 0)
    bad |= variable + FIXED_SIZE - 4 > fixed["block_size"]
    if not bad.any():
        name_end = at + FIXED_SIZE + fixed["l_read_name"].astype(np.int64) - 1
        bad = buf[name_end] != 0
    if bad.any():
        i = int(np.argmax(bad))
        f = fixed[i]
        cause = "its fields do not fit its block_size or the header's references"
        if not 0 <= f["ref"] + 1 <= n_ref or not 0 <= f["next_ref"] + 1 <= n_ref:
            cause = f"reference id {int(f['ref'])} (mate {int(f['next_ref'])}) where the header has {n_ref} references"
        raise InvalidFormatError(url, f"a malformed BAM record: {cause}", offset=base + int(at[i]))


def _gather(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Positions ``starts[i] + k`` for ``k < lengths[i]``, record after record."""
    total = int(lengths.sum())
    if not total:
        return np.zeros(0, np.int64)
    offsets = np.cumsum(lengths) - lengths
    return np.repeat(starts - offsets, lengths) + np.arange(total, dtype=np.int64)


def cigar_words(buf: np.ndarray, at: np.ndarray, fixed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every CIGAR word (uint32) of the records, record after record, and each word's record index."""
    n = fixed["n_cigar"].astype(np.int64)
    start = at + FIXED_SIZE + fixed["l_read_name"].astype(np.int64)
    first = np.repeat(start, n)
    k = np.arange(int(n.sum()), dtype=np.int64) - np.repeat(np.cumsum(n) - n, n)
    pos = first + 4 * k
    words = np.ascontiguousarray(buf[pos[:, None] + np.arange(4)]).view("<u4").ravel() if pos.size else np.zeros(0, np.uint32)
    return words, np.repeat(np.arange(at.size), n)


def alignment_ends(buf: np.ndarray, at: np.ndarray, fixed: np.ndarray) -> np.ndarray:
    """Each record's alignment end, 0-based exclusive, as htslib's ``bam_endpos``: ``pos`` plus the reference
    length of its CIGAR, or plus 1 when that is 0 or the read is unmapped."""
    words, owner = cigar_words(buf, at, fixed)
    ops, lengths = words & 15, (words >> 4).astype(np.int64)
    consumes = ((1 << ops.astype(np.int64)) & REFERENCE_OPS) != 0
    rlen = np.bincount(owner, weights=np.where(consumes, lengths, 0), minlength=at.size).astype(np.int64)
    rlen[(fixed["flag"] & 4) != 0] = 0
    return fixed["pos"].astype(np.int64) + np.maximum(rlen, 1)


def _strings(data: np.ndarray, lengths: np.ndarray) -> pa.Array:
    """A string array from ``data`` (the values' bytes back to back) and each value's length."""
    offsets = np.zeros(lengths.size + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    kind, width = (pa.string(), np.int32) if offsets[-1] < 2**31 else (pa.large_string(), np.int64)
    return pa.Array.from_buffers(kind, lengths.size, [None, pa.py_buffer(offsets.astype(width)), pa.py_buffer(np.ascontiguousarray(data))])


def _runs(buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The bytes ``buf[starts[i] : starts[i] + lengths[i]]`` back to back, for runs in increasing order that
    do not overlap: by an index per byte when they are a small part of ``buf``, else by a mask of the runs and
    the gaps between them)."""
    total = int(lengths.sum())
    if total * 8 < buf.size:
        return buf[_gather(starts, lengths)]
    ends = starts + lengths
    counts = np.empty(2 * starts.size + 1, np.int64)
    counts[0:-1:2] = starts - np.concatenate(([0], ends[:-1]))
    counts[1::2] = lengths
    counts[-1] = buf.size - ends[-1]
    inside = np.zeros(counts.size, bool)
    inside[1::2] = True
    return buf[np.repeat(inside, counts)]


def _slices(buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> pa.Array:
    return _strings(_runs(buf, starts, lengths), lengths)


def _star(values: pa.Array, empty: np.ndarray) -> pa.Array:
    """``values`` with ``"*"`` where ``empty``."""
    return pc.if_else(pa.array(empty), pa.scalar("*"), values) if empty.any() else values


class Layout:
    """Where each variable part of every record in a decoded buffer lies (positions in the buffer)."""

    def __init__(self, buf: np.ndarray, at: np.ndarray, fixed: np.ndarray) -> None:
        self.buf, self.at, self.fixed = buf, at, fixed
        self.name = at + FIXED_SIZE
        self.name_length = fixed["l_read_name"].astype(np.int64)
        self.cigar = self.name + self.name_length
        self.seq = self.cigar + 4 * fixed["n_cigar"].astype(np.int64)
        self.l_seq = fixed["l_seq"].astype(np.int64)
        self.qual = self.seq + (self.l_seq + 1) // 2
        self.tags = self.qual + self.l_seq
        self.end = at + 4 + fixed["block_size"].astype(np.int64)


def columns(url: str, layout: Layout, names: tuple[str, ...], wanted: tuple[str, ...]) -> dict[str, pa.Array]:
    """The SAM columns ``wanted`` of every record, as samtools view prints them (``pos`` and ``pnext``
    1-based, 0 when unplaced; ``rnext`` ``=`` for the record's own reference; ``*`` for an absent CIGAR,
    sequence or quality)."""
    buf, f = layout.buf, layout.fixed
    out: dict[str, pa.Array] = {}
    refs = pa.array([*names, "*"], pa.string())
    ref = np.where(f["ref"] < 0, len(names), f["ref"]).astype(np.int64)
    for name in wanted:
        if name == "qname":
            out[name] = _slices(buf, layout.name, layout.name_length - 1)
        elif name == "flag":
            out[name] = pa.array(f["flag"])
        elif name == "rname":
            out[name] = refs.take(pa.array(ref))
        elif name in ("pos", "pnext"):
            out[name] = pa.array(f["pos" if name == "pos" else "next_pos"].astype(np.int64) + 1)
        elif name == "mapq":
            out[name] = pa.array(f["mapq"])
        elif name == "tlen":
            out[name] = pa.array(f["tlen"].astype(np.int64))
        elif name == "rnext":
            mate = np.where(f["next_ref"] < 0, len(names), f["next_ref"]).astype(np.int64)
            same = (f["next_ref"] == f["ref"]) & (f["ref"] >= 0)
            out[name] = pc.if_else(pa.array(same), pa.scalar("="), refs.take(pa.array(mate)))
        elif name == "cigar":
            out[name] = _cigar(url, layout)
        elif name == "seq":
            pairs = SEQ_PAIRS_16[_runs(buf, layout.seq, (layout.l_seq + 1) // 2)].view(np.uint8)
            odd = (layout.l_seq % 2) == 1
            if odd.any():  # drop the padding half byte of odd-length sequences
                keep = np.ones(pairs.size, bool)
                keep[(np.cumsum(2 * ((layout.l_seq + 1) // 2)) - 1)[odd]] = False
                pairs = pairs[keep]
            out[name] = _star(_strings(pairs, layout.l_seq), layout.l_seq == 0)
        elif name == "qual":
            absent = layout.l_seq == 0
            absent[~absent] = buf[layout.qual[~absent]] == 0xFF
            lengths = np.where(absent, 0, layout.l_seq)
            out[name] = _star(_strings(_runs(buf, layout.qual, lengths) + np.uint8(33), lengths), absent)
        elif name == "tags":
            out[name] = tags(url, layout)
    return out


def _cigar(url: str, layout: Layout) -> pa.Array:
    words, _ = cigar_words(layout.buf, layout.at, layout.fixed)
    ops = (words & 15).astype(np.int64)
    if ops.size and ops.max() >= len(CIGAR_OPS):
        raise InvalidFormatError(url, f"a CIGAR operation code {int(ops.max())}: codes are 0 to 8 (MIDNSHP=X)", offset=None)
    text = pc.binary_join_element_wise(pc.cast(pa.array(words >> 4), pa.string()), pa.array(list(CIGAR_OPS)).take(pa.array(ops)), "")
    n = layout.fixed["n_cigar"].astype(np.int64)
    offsets = np.zeros(n.size + 1, np.int32)
    np.cumsum(n, out=offsets[1:])
    joined = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), text), "")
    return _star(joined, n == 0)


def tags(url: str, layout: Layout) -> pa.Array:
    """Each record's tags as SAM text (``NM:i:1\\tRG:Z:grp``): integer types as ``i``, floats with ``%g``,
    arrays as ``B:type,v1,v2``, as samtools view prints them. Walked one tag position at a time over all
    records at once (records have a handful of tags)."""
    buf, at_end = layout.buf, layout.end
    inside = _gather(layout.tags, at_end - layout.tags)  # the tag bytes' positions: NULs are searched there only
    zeros = inside[buf[inside] == 0]
    cur = layout.tags.copy()
    found_at, found_owner, found_type, found_size = [], [], [], []
    active = np.flatnonzero(cur < at_end)
    while active.size:
        p = cur[active]
        if np.any(p + 3 > at_end[active]):
            raise InvalidFormatError(url, "a BAM record's tags are cut short by its block_size", offset=None)
        kind = buf[p + 2].astype(np.int64)
        size = _SIZE_LUT[kind]
        text = (kind == ord("Z")) | (kind == ord("H"))
        if text.any():
            v = p[text] + 3
            k = np.searchsorted(zeros, v)
            nul = np.where(k < zeros.size, zeros[np.minimum(k, zeros.size - 1)], buf.size)
            size[text] = nul - v + 1
        array = kind == ord("B")
        if array.any():
            v = p[array] + 3
            sub = buf[np.minimum(v, buf.size - 1)].astype(np.int64)
            widths = _ELEMENT_LUT[sub]
            count = np.ascontiguousarray(buf[np.minimum(v[:, None] + 1 + np.arange(4), buf.size - 1)]).view("<u4").ravel().astype(np.int64)
            if np.any(widths == 0):
                raise InvalidFormatError(url, "a B tag with an unknown element type", offset=None)
            size[array] = 5 + widths * count
        if np.any(size == 0):
            bad = chr(int(kind[size == 0][0]))
            raise InvalidFormatError(url, f"a BAM tag of unknown type {bad!r}", offset=None)
        nxt = p + 3 + size
        if np.any(nxt > at_end[active]):
            raise InvalidFormatError(url, "a BAM record's tag runs past its block_size", offset=None)
        found_at.append(p)
        found_owner.append(active)
        found_type.append(kind)
        found_size.append(size)
        cur[active] = nxt
        active = active[nxt < at_end[active]]
    if not found_at:
        return pa.array([""] * layout.at.size, pa.string())
    p, owner, kind, size = (np.concatenate(x) for x in (found_at, found_owner, found_type, found_size))
    order = np.argsort(p, kind="stable")
    p, owner, kind, size = p[order], owner[order], kind[order], size[order]
    values = _tag_values(buf, p + 3, kind, size)
    shown = kind.copy()
    for code in _INT_TYPES:
        shown[kind == code] = ord("i")
    prefix = np.stack([buf[p], buf[p + 1], np.full(p.size, ord(":"), np.uint8), shown.astype(np.uint8), np.full(p.size, ord(":"), np.uint8)], axis=1)
    # Each record's text: its entries (prefix, value) one after the other, a tab between two; laid out in
    # one buffer by NumPy (no Arrow string joins).
    value_offsets, value_data = _string_buffers(values)
    value_lengths = np.diff(value_offsets)
    last = np.ones(p.size, bool)
    last[:-1] = owner[1:] != owner[:-1]
    lengths = 5 + value_lengths + ~last
    starts = np.cumsum(lengths) - lengths
    out = np.empty(int(lengths.sum()), np.uint8)
    out[(starts[:, None] + np.arange(5)).ravel()] = prefix.ravel()
    out[_gather(starts + 5, value_lengths)] = value_data[_gather(value_offsets[:-1], value_lengths)]
    out[(starts + 5 + value_lengths)[~last]] = ord("\t")
    return _strings(out, np.bincount(owner, weights=lengths, minlength=layout.at.size).astype(np.int64))


def _string_buffers(values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The value offsets (n + 1, from 0) and bytes of a string array."""
    _, offsets, data = values.buffers()
    kind = np.int64 if pa.types.is_large_string(values.type) else np.int32
    offsets = np.frombuffer(offsets, kind)[values.offset : values.offset + len(values) + 1].astype(np.int64)
    data = np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8)
    return offsets - offsets[0], data[offsets[0] : offsets[-1]]


def _tag_values(buf: np.ndarray, v: np.ndarray, kind: np.ndarray, size: np.ndarray) -> pa.Array:
    """The text of each tag value at ``v`` (its type ``kind``, ``size`` bytes)."""
    parts: list[tuple[np.ndarray, pa.Array]] = []
    for code, dtype in _INT_TYPES.items():
        where = np.flatnonzero(kind == code)
        if where.size:
            width = np.dtype(dtype).itemsize
            raw = np.ascontiguousarray(buf[v[where][:, None] + np.arange(width)]).view(dtype).ravel()
            parts.append((where, pc.cast(pa.array(raw.astype(np.int64)), pa.string())))
    for code in (ord("A"), ord("Z"), ord("H")):
        where = np.flatnonzero(kind == code)
        if where.size:
            lengths = size[where] - (0 if code == ord("A") else 1)
            parts.append((where, _slices(buf, v[where], lengths)))
    where = np.flatnonzero(kind == ord("f"))
    if where.size:
        raw = np.ascontiguousarray(buf[v[where][:, None] + np.arange(4)]).view("<f4").ravel()
        parts.append((where, pa.array([f"{x:g}" for x in raw.tolist()], pa.string())))
    where = np.flatnonzero(kind == ord("B"))
    if where.size:
        parts.append((where, pa.array([_array_text(buf, int(a), int(s)) for a, s in zip(v[where].tolist(), size[where].tolist())], pa.string())))
    order = np.concatenate([w for w, _ in parts])
    values = pa.concat_arrays([a.cast(pa.string()) for _, a in parts])
    inverse = np.empty_like(order)
    inverse[order] = np.arange(order.size)
    return values.take(pa.array(inverse))


def _array_text(buf: np.ndarray, v: int, size: int) -> str:
    """A ``B`` tag's value as samtools prints it: ``s,1,-2``."""
    sub = int(buf[v])
    values = buf[v + 5 : v + size].view(_ARRAY_TYPES[sub]) if size > 5 else np.zeros(0)
    shown = [f"{x:g}" for x in values.tolist()] if sub == ord("f") else [str(x) for x in values.tolist()]
    return ",".join([chr(sub), *shown])


def scan_region(
    url: str,
    data: bytes,
    base: int,
    q: int,
    stop: int,
    region: tuple[int, int, int],
    n_ref: int,
    kept: list[int],
    expect: tuple[int, int] | None = None,
) -> tuple[int, bool]:
    """Walk the records of ``data`` (decoded bytes from logical ``base``) from the record at logical ``q`` while
    they start before ``stop``, appending to ``kept`` those overlapping ``region`` (reference id, 0-based
    begin, exclusive end) as samtools does. The records are coordinate-sorted, so the walk ends at the first
    record past the region. Returns where it stopped and whether it is done (past the region); not done and
    before ``stop``: ``data`` ends inside the next record; a chain that runs past ``stop`` is a
    :class:`CorruptIndexError` (``stop`` comes from the index). Every record walked is checked as
    :func:`check_records` does; ``expect`` is the first record's (reference id, position) by the index."""
    tid, beg, end = region
    order = n_ref if tid < 0 else tid
    n = len(data)
    unpack = FIXED_STRUCT.unpack_from
    while q < stop:
        i = q - base
        if i + FIXED_SIZE > n:
            return q, False
        size, ref, pos, l_name, _, _, n_cigar, flag, l_seq, next_ref, _, _ = unpack(data, i)
        if size < FIXED_SIZE - 4 or size > MAX_RECORD:
            raise InvalidFormatError(url, f"a BAM record's block_size is {size}: not a record (corrupt data or a wrong index)", offset=q)
        if i + 4 + size > n:
            return q, False
        if (
            not (-1 <= ref < n_ref and -1 <= next_ref < n_ref)
            or pos < -1
            or l_name < 1
            or l_seq < 0
            or l_name + 4 * n_cigar + (l_seq + 1) // 2 + l_seq + FIXED_SIZE - 4 > size
            or data[i + FIXED_SIZE + l_name - 1] != 0
        ):
            cause = "its fields do not fit its block_size or the header's references"
            if not (-1 <= ref < n_ref and -1 <= next_ref < n_ref):
                cause = f"reference id {ref} (mate {next_ref}) where the header has {n_ref} references"
            raise InvalidFormatError(url, f"a malformed BAM record: {cause}", offset=q)
        if expect is not None:
            if (ref, pos) != tuple(expect):
                raise CorruptIndexError(url, "the index's block summary does not describe the slice's first record; run preprocess(force=True)")
            expect = None
        if ref == tid:
            if pos >= end:
                return q, True
            if pos >= beg:
                kept.append(q)
            else:
                rlen = 0
                if n_cigar == 1 and not flag & 4:
                    w = _U32(data, i + FIXED_SIZE + l_name)[0]
                    rlen = w >> 4 if (REFERENCE_OPS >> (w & 15)) & 1 else 0
                elif n_cigar and not flag & 4:
                    for w in struct.unpack_from(f"<{n_cigar}I", data, i + FIXED_SIZE + l_name):
                        if (REFERENCE_OPS >> (w & 15)) & 1:
                            rlen += w >> 4
                if pos + (rlen or 1) > beg:
                    kept.append(q)
        elif (n_ref if ref < 0 else ref) > order:
            return q, True
        q += 4 + size
    if q != stop:
        raise CorruptIndexError(
            url, f"the index says a run of BAM records ends at decoded byte {stop}; the object's records do not: run preprocess(force=True)"
        )
    return q, True


def record_rows(url: str, data: bytes, base: int, starts: list[int], names: tuple[str, ...], as_lines: bool = False) -> list[Any]:
    """The SAM fields of the records at logical ``starts`` of ``data`` (decoded bytes from ``base``), one
    tuple each in :data:`COLUMNS` order, as :func:`columns` gives them: the pure-Python path for the few
    records of a small region (checked by :func:`scan_region`), where NumPy and Arrow calls cost more than
    the records. ``as_lines``: SAM text lines instead, as :func:`sam_lines` gives them."""
    out: list[Any] = []
    unpack = FIXED_STRUCT.unpack_from
    refs = (*names, "*")  # refs[-1]: an unplaced record's
    for q in starts:
        i = q - base
        size, ref, pos, l_name, mapq, _, n_cigar, flag, l_seq, next_ref, next_pos, tlen = unpack(data, i)
        p = i + FIXED_SIZE
        qname = data[p : p + l_name - 1].decode("utf-8", "replace")
        p += l_name
        cigar = "*"
        if n_cigar:
            if n_cigar == 1:
                w = _U32(data, p)[0]
                cigar = f"{w >> 4}{_OPS_16[w & 15]}"
            else:
                cigar = "".join([f"{w >> 4}{_OPS_16[w & 15]}" for w in struct.unpack_from(f"<{n_cigar}I", data, p)])
            if "?" in cigar:
                code = max(w & 15 for w in struct.unpack_from(f"<{n_cigar}I", data, p))
                raise InvalidFormatError(url, f"a CIGAR operation code {code}: codes are 0 to 8 (MIDNSHP=X)", offset=None)
            p += 4 * n_cigar
        packed = (l_seq + 1) // 2
        seq = data[p : p + packed].hex().translate(_HEX_TO_SEQ)[:l_seq] if l_seq else "*"
        p += packed
        qual = "*" if not l_seq or data[p] == 0xFF else data[p : p + l_seq].translate(_PLUS_33).decode("latin-1")
        rname = refs[ref]
        rnext = "=" if next_ref == ref and ref >= 0 else refs[next_ref]
        tags = _tag_text(url, data, p + l_seq, i + 4 + size)
        if as_lines:
            line = f"{qname}\t{flag}\t{rname}\t{pos + 1}\t{mapq}\t{cigar}\t{rnext}\t{next_pos + 1}\t{tlen}\t{seq}\t{qual}"
            out.append(f"{line}\t{tags}" if tags else line)
        else:
            out.append((qname, flag, rname, pos + 1, mapq, cigar, rnext, next_pos + 1, tlen, seq, qual, tags))
    return out


def _tag_text(url: str, data: bytes, p: int, end: int) -> str:
    """One record's tags ``data[p:end]`` as SAM text, as :func:`tags` gives them."""
    out = []
    while p < end:
        if p + 3 > end:
            raise InvalidFormatError(url, "a BAM record's tags are cut short by its block_size", offset=None)
        kind, v = data[p + 2], p + 3
        if kind == 90 or kind == 72:  # Z, H
            nul = data.find(b"\0", v, end)
            if nul < 0:
                raise InvalidFormatError(url, "a BAM record's tag runs past its block_size", offset=None)
            out.append(f"{data[p : p + 2].decode('latin-1')}:{chr(kind)}:{data[v:nul].decode('utf-8', 'replace')}")
            p = nul + 1
            continue
        fmt = _TAG_INTS.get(kind)
        if fmt is not None:
            nxt = v + fmt.size
            if nxt > end:
                raise InvalidFormatError(url, "a BAM record's tag runs past its block_size", offset=None)
            out.append(f"{data[p : p + 2].decode('latin-1')}:i:{fmt.unpack_from(data, v)[0]}")
            p = nxt
            continue
        key = data[p : p + 2].decode("latin-1")
        if kind == 65:  # A
            nxt = v + 1
            text = f"{key}:A:{chr(data[v])}" if nxt <= end else ""
        elif kind == 102:  # f
            nxt = v + 4
            text = f"{key}:f:{_TAG_FLOAT.unpack_from(data, v)[0]:g}" if nxt <= end else ""
        elif kind == 66:  # B
            code = _ARRAY_CODES.get(data[v]) if v < end else None
            if code is None:
                raise InvalidFormatError(url, "a B tag with an unknown element type", offset=None)
            count = _TAG_COUNT.unpack_from(data, v + 1)[0] if v + 5 <= end else 0
            nxt = v + 5 + struct.calcsize(code) * count
            text = ""
            if nxt <= end:
                values = struct.unpack_from(f"<{count}{code}", data, v + 5)
                shown = [f"{x:g}" for x in values] if code == "f" else [str(x) for x in values]
                text = f"{key}:B:" + ",".join([chr(data[v]), *shown])
        else:
            raise InvalidFormatError(url, f"a BAM tag of unknown type {chr(kind)!r}", offset=None)
        if nxt > end:
            raise InvalidFormatError(url, "a BAM record's tag runs past its block_size", offset=None)
        out.append(text)
        p = nxt
    return "\t".join(out)


@lru_cache(maxsize=64)
def _row_types(schema: pa.Schema) -> pa.DataType:
    return pa.struct(list(schema))


def rows_table(rows: list[tuple], schema: pa.Schema, wanted: tuple[str, ...]) -> pa.Table:
    """The columns ``wanted`` of a table of :func:`record_rows`' tuples typed by ``schema`` (every column of
    :data:`COLUMNS`, in order): the rows converted at once as a struct array, a few times cheaper than one
    conversion per column."""
    table = pa.Table.from_batches([pa.RecordBatch.from_struct_array(pa.array(rows, _row_types(schema)))])
    return table if wanted == COLUMNS else table.select(list(wanted))


def sam_lines(table: pa.Table) -> list[str]:
    """SAM text lines (without newlines) of a table with every column of :data:`COLUMNS`."""
    if not table.num_rows:
        return []
    text = [pc.cast(table[name], pa.string()) for name in COLUMNS[:-1]]
    lines = pc.binary_join_element_wise(*text, "\t")
    tagged = pc.binary_join_element_wise(lines, table["tags"], "\t")
    return pc.if_else(pc.equal(table["tags"], ""), lines, tagged).to_pylist()
