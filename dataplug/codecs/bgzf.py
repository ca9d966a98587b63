"""The BGZF byte source (bgzip, htslib): gzip members of at most 64 KiB marked by a ``BC`` extra field.

Every member decodes alone, so checkpoints are member starts and no windows are stored. Without help the
index pass is the sequential gzip pass (member starts can only be found by walking the members). When a
``.gzi`` index lies beside the object (as ``bgzip -i`` or ``samtools faidx`` write it), or ``gzi=`` names
one, the member starts are known up front and the pass becomes a parallel map over runs of members, like
the plain codec's, on the context's executor.
"""

from __future__ import annotations

import functools
import zlib
from typing import Any

import numpy as np

from dataplug.codecs.base import CodecIndex, Scanner, register_codec
from dataplug.codecs.gzip.codec import GzipCodec
from dataplug.codecs.gzip.headers import bgzf_block_size, is_bgzf
from dataplug.codecs.gzip.index import TABLE_DTYPES, default_spacing
from dataplug.codecs.gzip.windows import WINDOWS_BLOB
from dataplug.codecs.plain import DEFAULT_CHUNK_SIZE
from dataplug.errors import InvalidFormatError, ObjectNotFoundError
from dataplug.executors import map_ordered
from dataplug.storage import StorageObject

#: Compressed bytes read at a time for a range's look-ahead.
_AHEAD = 256 * 1024


def read_gzi(url: str, data: bytes, size: int) -> np.ndarray:
    """Member starts from a ``.gzi`` file: an (n + 1, 2) array of (compressed, uncompressed) offsets, the
    object start first. The format is htslib's: a little-endian u64 count, then that many u64 pairs."""
    if len(data) < 8:
        raise InvalidFormatError(url, "not a .gzi index: shorter than its 8-byte entry count", offset=0)
    n = int.from_bytes(data[:8], "little")
    if len(data) != 8 + 16 * n:
        raise InvalidFormatError(url, f"not a .gzi index: {len(data)} bytes for {n} entries", offset=0)
    points = np.concatenate((np.zeros((1, 2), np.int64), np.frombuffer(data, "<u8", offset=8).reshape(n, 2).astype(np.int64)))
    if np.any(np.diff(points, axis=0) <= 0) or points[-1, 0] >= max(size, 1):
        raise InvalidFormatError(url, "the .gzi index does not fit the object: offsets must increase inside it", offset=0)
    return points


def inflate_members(url: str, raw: bytes, at: int, whole: bool) -> tuple[bytes, list[tuple[int, int]]]:
    """Decode the BGZF members in ``raw`` (object bytes from ``at``), each cut by its header's block size;
    returns the decoded bytes and every member's (object offset, decoded offset within them). With
    ``whole`` every member must end inside ``raw`` (zero padding may follow the last), else a partial last
    member contributes what it decodes to. (Handing zlib the whole rest and taking ``unused_data`` back
    copies it once per member: quadratic in the range's size.)"""
    view, out, starts, pos, decoded = memoryview(raw), [], [], 0, 0
    while pos < len(view):
        if whole and view[pos] == 0 and not bytes(view[pos:]).strip(b"\0"):
            break  # zero padding after the last member, which gzip and the sequential pass accept
        xlen = int.from_bytes(view[pos + 10 : pos + 12], "little")
        if not whole and pos + 12 + xlen > len(view):
            break  # the read ends inside the next member's header
        size = bgzf_block_size(bytes(view[pos : pos + 12 + xlen]))
        if size is None:
            raise InvalidFormatError(url, "not a BGZF member: no 'BC' extra field", offset=at + pos)
        member = view[pos : pos + size]
        d = zlib.decompressobj(31)
        starts.append((at + pos, decoded))
        try:
            out.append(d.decompress(member))
            decoded += len(out[-1])
        except zlib.error as exc:
            raise InvalidFormatError(url, f"corrupt BGZF member: {exc}", offset=at + pos) from None
        if not d.eof or d.unused_data:
            if whole or len(member) == size:
                raise InvalidFormatError(url, "BGZF member does not end where its block size says (or the .gzi does not match the object)", offset=at + pos)
            break
        pos += size
    return b"".join(out), starts


def _scan_members(obj: StorageObject, size: int, scanner: Scanner, item: tuple[int, int, int, int, int]) -> tuple[Any, int, list[tuple[int, int]]]:
    """Map step: decode the members ``[c0, c1)`` (from the member before them, for the byte of context)
    and enough members after them for the scanner's look-ahead; returns the scan, the decoded end and the
    (compressed, decoded) start of every member walked, to check the ``.gzi`` against."""
    c_prev, u_prev, c0, u0, c1 = item
    body, starts = inflate_members(obj.url, obj.read_range(c_prev, c1), c_prev, whole=True)
    end = u_prev + len(body)
    ahead = _AHEAD
    while True:
        stop = min(c1 + ahead, size)
        tail = inflate_members(obj.url, obj.read_range(c1, stop), c1, whole=stop == size)[0] if stop > c1 else b""
        eof = stop >= size
        if eof or scanner.enough(np.frombuffer(tail, np.uint8)):
            break
        ahead *= 4
    walked = [(c, u_prev + u) for c, u in starts if c >= c0]
    return scanner(np.frombuffer(body + tail, np.uint8), u0 - u_prev, u0, end, eof), end, walked


@register_codec
class BgzfCodec(GzipCodec):
    """BGZF. Options: ``spacing`` (decoded bytes between checkpoints), ``gzi`` (URL of a ``.gzi`` index;
    by default ``<url>.gzi`` is used when it exists)."""

    name = "bgzf"
    options = {
        "spacing": GzipCodec.options["spacing"],
        "gzi": "URL of a BGZF .gzi index (default: <url>.gzi when it exists)",
    }

    @classmethod
    def detect(cls, head: bytes) -> bool:
        return head[:2] == b"\x1f\x8b" and is_bgzf(head)

    @classmethod
    def scan(cls, ctx: Any, scanner: Scanner) -> tuple[list[Any], CodecIndex]:
        gzi = cls._gzi(ctx)
        if gzi is None:
            return super().scan(ctx, scanner)
        size, spacing = ctx.info.size, int(ctx.options.get("spacing", default_spacing(ctx.info.size)))
        chosen = _spaced(gzi, spacing)
        groups = _spaced(chosen, ctx.chunk_size or DEFAULT_CHUNK_SIZE)
        items = []
        for i, (c0, u0) in enumerate(groups.tolist()):
            k = int(np.searchsorted(gzi[:, 0], c0))
            c_prev, u_prev = gzi[max(k - 1, 0)].tolist()
            c1 = int(groups[i + 1, 0]) if i + 1 < len(groups) else size
            items.append((c_prev, u_prev, c0, u0, c1))
        step = functools.partial(_scan_members, ctx.obj, size, scanner)
        results = map_ordered(step, items, ctx.executor, ctx.progress, desc=f"indexing {ctx.obj.url}", nbytes=ctx.info.size)
        ends = [end for _, end, _ in results]
        walked = dict(member for _, _, members in results for member in members)
        # Every member start the .gzi lists (the checkpoints among them) must be one the pass walked, at
        # the decoded offset the pass found: a wrong entry would shift every slice that starts there.
        wrong = [(c, u) for c, u in gzi.tolist() if walked.get(c) != u]
        if wrong or ends[:-1] != [int(u) for u in groups[1:, 1]]:
            c, u = wrong[0] if wrong else (int(groups[0, 0]), int(groups[0, 1]))
            raise InvalidFormatError(ctx.obj.url, f"the .gzi index does not match the object: no member decodes to offset {u} at byte {c}", offset=c)
        logical = ends[-1]
        tables = {name: np.zeros(len(chosen), dtype) for name, dtype in TABLE_DTYPES.items()}
        tables["compressed_offset"], tables["uncompressed_offset"] = chosen[:, 0].astype(np.uint64), chosen[:, 1].astype(np.uint64)
        attributes = {"compression": cls.name, "uncompressed_size": logical, "spacing": spacing, "checkpoints": len(chosen)}
        return [scan for scan, _, _ in results], CodecIndex(cls.name, logical, tables, {WINDOWS_BLOB: b""}, attributes)

    @classmethod
    def _gzi(cls, ctx: Any) -> np.ndarray | None:
        """The object's member starts from its ``.gzi``, or None when it has none."""
        given = ctx.options.get("gzi")
        location = StorageObject(given or ctx.obj.url + ".gzi", ctx.obj.storage_options)
        try:
            data = location.read_all()
        except ObjectNotFoundError:
            if given:
                raise
            return None
        return read_gzi(location.url, data, ctx.info.size)


def _spaced(points: np.ndarray, spacing: int) -> np.ndarray:
    """The rows of ``points`` (first always) at least ``spacing`` decoded bytes after the previous kept one."""
    keep, last = [0], 0
    for i, u in enumerate(points[:, 1].tolist()):
        if u - last >= spacing:
            keep.append(i)
            last = u
    return points[keep]
