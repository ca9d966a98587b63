"""gzip indexes other tools read and write: export dataplug's checkpoints as a GZIDX file, and adopt a
GZIDX index published beside an object instead of running the sequential checkpoint pass.

GZIDX is indexed_gzip's export format (``zran.c``), which rapidgzip also reads and writes. Version 1,
little-endian: the magic ``GZIDX``, u8 version, u8 flags, u64 compressed size, u64 uncompressed size, u32
spacing, u32 window size, u32 point count; per point u64 compressed offset, u64 uncompressed offset, u8
bits, u8 has-window; then the window (``window size`` bytes) of every point that has one, in order. A
point's deflate data starts ``bits`` bits before its compressed offset, as in dataplug's tables. Point 0
sits after the first member's header and has no window.

Adopting reads no data sequentially: every checkpoint's range is decoded on its own, in parallel on the
context's executor, and scanned by the framing. Each range also decodes the 32 KiB after its end, which
must equal the first 32 KiB the next checkpoint decodes; after 32 KiB of output no back-reference reaches
a window, so a wrong offset, bit count or window byte anywhere is an error, never wrong data.
"""

from __future__ import annotations

import functools
import itertools
import struct
import zlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from dataplug.codecs.base import CodecIndex, Scanner
from dataplug.codecs.gzip_headers import gzip_header_length
from dataplug.codecs.gzip_index import WINDOW_SIZE, Checkpoint
from dataplug.codecs.gzip_inflate import DEFAULT_CHUNK_SIZE, Inflater, pieces
from dataplug.codecs.gzip_windows import AHEAD, WINDOWS_BLOB, pack_window, read_window
from dataplug.errors import DataplugError, InvalidFormatError
from dataplug.executors import map_ordered
from dataplug.index import max_index_bytes
from dataplug.storage import StorageObject

MAGIC = b"GZIDX"
_HEADER = struct.Struct("<5sBBQQIII")
_POINT = struct.Struct("<QQBB")
#: Compressed bytes fetched past a range's end at first (its look-ahead usually needs far fewer).
_MARGIN = 64 * 1024


def export_index(co: Any, url: str, format: str = "gzidx") -> None:
    """Write ``co``'s gzip checkpoints (it must be preprocessed) as an index other tools import: ``"gzidx"``
    for ``indexed_gzip.IndexedGzipFile(..., index_file=url)`` and rapidgzip. Windows are written whole
    (32 KiB each, the bytes dataplug did not keep are zero: nothing decoding from the point reads them)."""
    if format != "gzidx":
        raise ValueError(f"unknown index format {format!r}; dataplug exports 'gzidx'")
    sidecar = co.index()
    attributes = co.attributes
    if attributes.compression != "gzip":
        raise DataplugError(co.url, f"only gzip objects have checkpoints to export; this one is {attributes.compression!r}")
    tables = sidecar.tables
    blob = sidecar.blob(WINDOWS_BLOB)
    head = co.obj.read_range(0, min(sidecar.object_info.size, 64 * 1024), expect=sidecar.object_info)
    points = [_POINT.pack(gzip_header_length(co.url, head), 0, 0, 0)]
    windows = []
    columns = (tables[name].tolist() for name in ("compressed_offset", "bits", "uncompressed_offset", "window_offset", "window_length", "window_crc32"))
    for c, bits, u, w_off, w_len, crc in zip(*columns):
        if w_len:  # member headers have no window; decoding reaches them from the previous point
            window = read_window(co.url, blob, w_off, w_off + w_len, crc)
            windows.append(window.rjust(WINDOW_SIZE, b"\0"))
            points.append(_POINT.pack(c, u, bits, 1))
    spacing = max(int(attributes.spacing), WINDOW_SIZE)
    header = _HEADER.pack(MAGIC, 1, 0, sidecar.object_info.size, attributes.uncompressed_size, spacing, WINDOW_SIZE, len(points))
    StorageObject(url, dict(co.storage_options)).write_bytes(header + b"".join(points) + b"".join(windows))


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
    pos, out = table_end, [Checkpoint(0, 0, 0, 0)]
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
        out.append(Checkpoint(c, bits, u, 0, window[-u:] if u < WINDOW_SIZE else window))
    return out


def _compressed(obj: StorageObject, info: Any, start: int, end: int) -> Iterator[bytes]:
    """The object's bytes from ``start``: up to ``end`` first, then ever larger reads to the object end."""
    step = _MARGIN
    while start < info.size:
        stop = min(max(end, start + step), info.size)
        yield obj.read_range(start, stop, expect=info)
        start, step = stop, step * 4


def _adopted_range(obj: StorageObject, info: Any, scanner: Scanner, index_url: str, item: tuple[Checkpoint, int, int | None]) -> tuple[Any, bytes, tuple[int, int], tuple[int, int], int]:
    """Map step: decode from one adopted checkpoint through the logical range it covers (from the byte
    after the checkpoint, which is the range's byte of context, to the byte after the next checkpoint at
    ``next_u``; to the end for the last), the 32 KiB after ``next_u`` and the scanner's look-ahead.

    Returns the scan, the packed sparse window, (length, CRC-32) of the first 32 KiB decoded and of the 32
    KiB after ``next_u``, and the decoded end (for the last range)."""
    checkpoint, next_c, next_u = item
    u = checkpoint.uncompressed_offset
    start = u + 1 if u else 0
    fetched = bytearray()

    def kept() -> Iterator[memoryview]:
        for piece in _compressed(obj, info, checkpoint.fetch_start, next_c + _MARGIN):
            if len(fetched) < AHEAD:
                fetched.extend(piece[: AHEAD - len(fetched)])
            yield from pieces(piece)

    inflater = Inflater(checkpoint, obj.url, DEFAULT_CHUNK_SIZE)
    out = bytearray()
    eof = True
    try:
        for chunk in inflater.run(kept()):
            out += chunk
            if next_u is not None and len(out) >= next_u - u + WINDOW_SIZE and scanner.enough(np.frombuffer(out, np.uint8)[next_u + 1 - u :]):
                eof = False
                break
    except InvalidFormatError as exc:
        where = f"its point at byte {checkpoint.compressed_offset} ({checkpoint.bits} bits)" if u else "the object start"
        raise InvalidFormatError(obj.url, f"decoding from {where} failed ({exc.cause}): the adopted index {index_url} does not fit the object, or the object is corrupt", offset=exc.offset) from None
    if eof and (inflater.mode != "zeros" or len(inflater.pending) < inflater.skip):
        raise InvalidFormatError(obj.url, "truncated gzip stream", offset=info.size)
    end = u + len(out) if next_u is None else next_u + 1
    if end > u + len(out) or start > end:
        raise InvalidFormatError(obj.url, f"the gzip stream ends at decoded byte {u + len(out)}, before the adopted index's next point at {next_u}")
    scan = scanner(np.frombuffer(out, np.uint8), start - u, start, end, eof)
    window = pack_window(checkpoint.window, bytes(fetched), checkpoint.bits) if checkpoint.window else b""
    head = bytes(out[:WINDOW_SIZE])
    tail = bytes(out[next_u - u : next_u - u + WINDOW_SIZE]) if next_u is not None else b""
    return scan, window, (len(head), zlib.crc32(head)), (len(tail), zlib.crc32(tail)), u + len(out)


def adopt_scan(ctx: Any, scanner: Scanner, url: str) -> tuple[list[Any], CodecIndex]:
    """The gzip codec's scan from an adopted GZIDX index at ``url`` (see the module docstring)."""
    location = StorageObject(url, dict(ctx.obj.storage_options))
    size = location.info().size
    if size > max_index_bytes(ctx.info.size):
        raise InvalidFormatError(url, f"a {size}-byte index is too large for a {ctx.info.size}-byte object", offset=0)
    points = read_gzidx(url, location.read_all(), ctx.info.size)
    items = [(p, q.compressed_offset, q.uncompressed_offset) for p, q in itertools.pairwise(points)]
    items.append((points[-1], ctx.info.size, None))
    step = functools.partial(_adopted_range, ctx.obj, ctx.info, scanner, url)
    results = map_ordered(step, items, ctx.executor, ctx.progress, desc=f"indexing {ctx.obj.url} from {url}")
    for k in range(1, len(results)):
        if results[k - 1][3] != results[k][2]:
            at = points[k]
            raise InvalidFormatError(ctx.obj.url, f"the adopted index {url} does not fit the object: decoding from its point at byte {at.compressed_offset} ({at.bits} bits) does not give the bytes found at decoded offset {at.uncompressed_offset}", offset=at.compressed_offset)
    total = results[-1][4]
    windows = [window for _, window, _, _, _ in results]
    lengths = np.array([len(w) for w in windows], np.uint32)
    tables = {
        "compressed_offset": np.array([p.compressed_offset for p in points], np.uint64),
        "bits": np.array([p.bits for p in points], np.uint8),
        "uncompressed_offset": np.array([p.uncompressed_offset for p in points], np.uint64),
        "window_offset": np.concatenate(([0], np.cumsum(lengths[:-1], dtype=np.uint64))).astype(np.uint64),
        "window_length": lengths,
        "window_crc32": np.array([zlib.crc32(w) for w in windows], np.uint32),
    }
    attributes = {"compression": "gzip", "uncompressed_size": total, "spacing": int(np.diff(tables["uncompressed_offset"]).mean()) if len(points) > 1 else total, "checkpoints": len(points)}
    return [scan for scan, *_ in results], CodecIndex("gzip", total, tables, {WINDOWS_BLOB: b"".join(windows)}, attributes)
