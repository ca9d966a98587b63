"""gzip member headers (RFC 1952) and BGZF's ``BC`` extra field (SAM/BAM specification, 4.1)."""

from __future__ import annotations

from dataplug.errors import InvalidFormatError

MAGIC = b"\x1f\x8b"


def is_bgzf(head: bytes) -> bool:
    """True when a gzip header carries BGZF's 'BC' extra subfield (SAM/BAM specification, 4.1)."""
    return bgzf_block_size(head) is not None


def bgzf_block_size(head: bytes) -> int | None:
    """The member's total size from its BGZF 'BC' subfield (BSIZE + 1), or None when it has none."""
    if len(head) < 12 or not head[3] & 4:
        return None
    extra = head[12 : 12 + int.from_bytes(head[10:12], "little")]
    i = 0
    while i + 4 <= len(extra):
        length = int.from_bytes(extra[i + 2 : i + 4], "little")
        if extra[i : i + 2] == b"BC" and length == 2:
            return int.from_bytes(extra[i + 4 : i + 6], "little") + 1
        i += 4 + length
    return None


def gzip_header_length(url: str, head: bytes) -> int:
    """Length of the gzip member header at the start of ``head`` (RFC 1952: optional extra field, name,
    comment and header CRC)."""
    if len(head) < 10 or head[:3] != b"\x1f\x8b\x08":
        raise InvalidFormatError(url, "not gzip: no gzip member header", offset=0)
    flags, pos = head[3], 10
    if flags & 4:
        pos += 2 + int.from_bytes(head[10:12], "little")
    for bit in (8, 16):
        if flags & bit:
            end = head.find(b"\0", pos)
            if end < 0:
                raise InvalidFormatError(url, "gzip header longer than the bytes read", offset=0)
            pos = end + 1
    return pos + (2 if flags & 2 else 0)
