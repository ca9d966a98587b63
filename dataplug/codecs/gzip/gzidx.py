"""GZIDX, indexed_gzip's index format (``zran.c``), which rapidgzip also reads and writes.

Version 1, little-endian: the magic ``GZIDX``, u8 version, u8 flags, u64 compressed size, u64 uncompressed
size, u32 spacing, u32 window size, u32 point count; per point u64 compressed offset, u64 uncompressed
offset, u8 bits, u8 has-window; then the window (``window size`` bytes) of every point that has one, in
order. A point's deflate data starts ``bits`` bits before its compressed offset, as in dataplug's tables.
Point 0 sits after the first member's header and has no window.
"""

from __future__ import annotations

import struct

from dataplug.codecs.gzip.index import WINDOW_SIZE, Checkpoint
from dataplug.errors import InvalidFormatError

MAGIC = b"GZIDX"
_HEADER = struct.Struct("<5sBBQQIII")
_POINT = struct.Struct("<QQBB")


def write_gzidx(points: list[Checkpoint], header_length: int, compressed_size: int, uncompressed_size: int, spacing: int) -> bytes:
    """A version 1 GZIDX file: point 0 after the first member's header (``header_length`` bytes), then
    ``points`` (block-boundary checkpoints with their windows). Windows are written whole (32 KiB; bytes a
    sparse window did not keep are zero: nothing decoding from the point reads them)."""
    table = [_POINT.pack(header_length, 0, 0, 0)] + [_POINT.pack(p.compressed_offset, p.uncompressed_offset, p.bits, 1) for p in points]
    windows = [p.window.rjust(WINDOW_SIZE, b"\0") for p in points]
    header = _HEADER.pack(MAGIC, 1, 0, compressed_size, uncompressed_size, max(spacing, WINDOW_SIZE), WINDOW_SIZE, len(table))
    return header + b"".join(table) + b"".join(windows)


def read_gzidx(url: str, data: bytes, size: int) -> list[Checkpoint]:
    """The usable checkpoints of a GZIDX index of an object of ``size`` bytes, the object start first:
    the points that have a window and lie inside the object (point 0 is replaced by the object start).
    A file that is not GZIDX, or not this object's, is an :class:`InvalidFormatError` naming ``url``."""
    if len(data) < _HEADER.size or data[:5] != MAGIC:
        raise InvalidFormatError(url, f"{url} is not a GZIDX index (indexed_gzip / rapidgzip): bad magic bytes", offset=0)
    _, version, _, compressed, _, _, window_size, count = _HEADER.unpack_from(data)
    if version > 1:
        raise InvalidFormatError(url, f"the GZIDX index {url} has version {version}; dataplug reads 0 and 1", offset=5)
    if compressed != size:
        raise InvalidFormatError(url, f"the GZIDX index {url} is for an object of {compressed} bytes, not {size}", offset=7)
    if window_size < WINDOW_SIZE or window_size > 1 << 20:
        raise InvalidFormatError(url, f"the GZIDX index {url} has window size {window_size}, outside 32 KiB .. 1 MiB", offset=27)
    point_size = _POINT.size if version else _POINT.size - 1
    table_end = _HEADER.size + count * point_size
    if table_end > len(data):
        raise InvalidFormatError(url, f"the GZIDX index {url} ends inside its table of {count} points", offset=len(data))
    pos, out = table_end, [Checkpoint(0, 0, 0)]
    for i in range(count):
        at = _HEADER.size + i * point_size
        c, u, bits = struct.unpack_from("<QQB", data, at)
        has_window = data[at + 17] if version else int(i > 0)
        if not has_window:
            continue
        stored = data[pos : pos + window_size]
        pos += window_size
        if len(stored) < window_size:
            raise InvalidFormatError(url, f"the GZIDX index {url} ends inside the window of point {i}", offset=len(data))
        window = stored[-WINDOW_SIZE:]
        if c >= size:  # a point at the end of the stream (indexed_gzip writes one): nothing follows it
            continue
        if bits > 7 or c < (1 if bits else 0) or u <= out[-1].uncompressed_offset or c < out[-1].compressed_offset:
            raise InvalidFormatError(url, f"point {i} of the GZIDX index {url} ({c} B {bits} b -> {u}) does not fit the object or the points before it", offset=at)
        out.append(Checkpoint(c, bits, u, window[-u:] if u < WINDOW_SIZE else window))
    return out
