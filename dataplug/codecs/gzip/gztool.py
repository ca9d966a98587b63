"""gztool's index format (``gztool -i``, github.com/circulosmeos/gztool, ``serialize_index_to_file``).

Big-endian: 8 zero bytes, ``gzipindx`` (version 0) or ``gzipindX`` (version 1, with line numbers, then a
u32 line separator format), u64 point count twice (they differ while gztool still writes the file); per
point u64 uncompressed offset, u64 compressed offset, u32 bits, u32 window length, the window compressed
as a zlib stream, and in version 1 a u64 line number (1-based: the line holding the point's first byte);
then u64 uncompressed size (and in version 1 the u64 line count). A point's deflate data starts ``bits``
bits before its compressed offset, as in dataplug's tables; point 0 sits after the first member's header
and has no window.

dataplug's stored windows are zlib streams already, so export copies them unchanged. It writes version 0:
the gzip sidecar keeps no line numbers at its checkpoints.
"""

from __future__ import annotations

import struct
import zlib

from dataplug.codecs.gzip.index import WINDOW_SIZE, Checkpoint
from dataplug.errors import InvalidFormatError

#: The first 16 bytes of a version 0 index; version 1 ends in ``X`` instead of ``x``.
MAGIC = bytes(8) + b"gzipindx"
_MAGIC_V1 = bytes(8) + b"gzipindX"
_POINT = struct.Struct(">QQII")
_U64 = struct.Struct(">Q")


def is_gztool(data: bytes) -> bool:
    """True when ``data`` starts like a gztool index (either version)."""
    return data[:16] in (MAGIC, _MAGIC_V1)


def write_gztool(points: list[tuple[int, int, int, bytes]], header_length: int, uncompressed_size: int) -> bytes:
    """A version 0 gztool index: point 0 after the first member's header (``header_length`` bytes), then
    ``points`` as (compressed offset, bits, uncompressed offset, window as a zlib stream)."""
    out = [MAGIC, _U64.pack(len(points) + 1) * 2, _POINT.pack(0, header_length, 0, 0)]
    for c, bits, u, window in points:
        out += [_POINT.pack(u, c, bits, len(window)), window]
    out.append(_U64.pack(uncompressed_size))
    return b"".join(out)


def read_gztool(url: str, data: bytes, size: int) -> list[Checkpoint]:
    """The usable checkpoints of a gztool index of an object of ``size`` bytes, the object start first:
    the points that have a window and lie inside the object. A file that is not a complete gztool index,
    or does not fit the object, is an :class:`InvalidFormatError` naming ``url``."""
    if not is_gztool(data):
        raise InvalidFormatError(url, f"{url} is not a gztool index: bad magic bytes", offset=0)
    pos = 16 + (4 if data[:16] == _MAGIC_V1 else 0)
    if len(data) < pos + 16:
        raise InvalidFormatError(url, f"the gztool index {url} ends inside its header", offset=len(data))
    have, count = _U64.unpack_from(data, pos)[0], _U64.unpack_from(data, pos + 8)[0]
    if have != count:
        raise InvalidFormatError(url, f"the gztool index {url} is incomplete (gztool was still writing it)", offset=pos)
    pos += 16
    out = [Checkpoint(0, 0, 0)]
    for i in range(count):
        if len(data) < pos + _POINT.size:
            raise InvalidFormatError(url, f"the gztool index {url} ends inside point {i} of {count}", offset=len(data))
        u, c, bits, length = _POINT.unpack_from(data, pos)
        stored = data[pos + _POINT.size : pos + _POINT.size + length]
        at, pos = pos, pos + _POINT.size + length + (8 if data[:16] == _MAGIC_V1 else 0)
        if len(stored) < length or pos > len(data):
            raise InvalidFormatError(url, f"the gztool index {url} ends inside point {i} of {count}", offset=len(data))
        if not length or c >= size:  # the first point (after the header), or one at the end of the stream
            continue
        if bits > 7 or c < (1 if bits else 0) or u <= out[-1].uncompressed_offset or c < out[-1].compressed_offset:
            raise InvalidFormatError(url, f"point {i} of the gztool index {url} ({c} B {bits} b -> {u}) does not fit the object or the points before it", offset=at)
        out.append(Checkpoint(c, bits, u, _window(url, stored, at)))
    return out


def _window(url: str, stored: bytes, at: int) -> bytes:
    """A point's window: one zlib stream of at most 32 KiB (a crafted one is an error, never a zlib bomb)."""
    d = zlib.decompressobj()
    try:
        window = d.decompress(stored, WINDOW_SIZE)
    except zlib.error as exc:
        raise InvalidFormatError(url, f"a window of the gztool index {url} does not decompress: {exc}", offset=at) from None
    if not d.eof or d.unconsumed_tail or d.unused_data:
        raise InvalidFormatError(url, f"a window of the gztool index {url} is not one zlib stream of at most {WINDOW_SIZE} bytes", offset=at)
    return window
