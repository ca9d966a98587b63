"""gzip indexes other tools read and write: export dataplug's checkpoints as a GZIDX or gztool index, and
adopt one published beside an object instead of running the sequential checkpoint pass. The formats
themselves are :mod:`dataplug.codecs.gzip.gzidx` and :mod:`dataplug.codecs.gzip.gztool`.

Adopting reads no data sequentially: every checkpoint's range is decoded on its own, in parallel on the
context's executor, and scanned by the framing. Each range also decodes the 32 KiB after its end, which
must equal the first 32 KiB the next checkpoint decodes; after 32 KiB of output no back-reference reaches
a window, so a wrong offset, bit count or window byte anywhere is an error, never wrong data, and an error
that names the index: the framing's complaints about the decoded bytes (not valid UTF-8...) are raised
only once every range is known to fit.
"""

from __future__ import annotations

import functools
import itertools
import zlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from dataplug.codecs.base import CodecIndex, Scanner
from dataplug.codecs.checkpoints import compressed_pieces
from dataplug.codecs.deflate import backend
from dataplug.codecs.gzip.gzidx import MAGIC as GZIDX_MAGIC
from dataplug.codecs.gzip.gzidx import read_gzidx, write_gzidx
from dataplug.codecs.gzip.gztool import is_gztool, read_gztool, write_gztool
from dataplug.codecs.gzip.headers import gzip_header_length
from dataplug.codecs.gzip.index import WINDOW_SIZE, Checkpoint
from dataplug.codecs.gzip.inflate import DEFAULT_CHUNK_SIZE, Inflater, pieces
from dataplug.codecs.gzip.windows import AHEAD, WINDOWS_BLOB, checked_window, pack_window, unpack_window
from dataplug.errors import DataplugError, InvalidFormatError
from dataplug.executors import map_ordered
from dataplug.sidecar import max_index_bytes
from dataplug.storage import StorageObject

#: The index formats ``export_index`` writes and ``preprocess(adopt_index=...)`` reads.
FORMATS = ("gzidx", "gztool")
#: Compressed bytes fetched past a range's end at first (its look-ahead usually needs far fewer).
_MARGIN = 64 * 1024


def export_index(co: Any, url: str, format: str = "gzidx") -> None:
    """Write ``co``'s gzip checkpoints (it must be preprocessed) as an index other tools import: ``"gzidx"``
    for ``indexed_gzip.IndexedGzipFile(..., index_file=url)`` and rapidgzip, ``"gztool"`` for
    ``gztool -I url``. Checkpoints on member headers are left out (they have no window; decoding reaches
    them from the point before)."""
    if format not in FORMATS:
        raise ValueError(f"unknown index format {format!r}; dataplug exports {' and '.join(map(repr, FORMATS))}")
    sidecar = co.index()
    attributes = co.attributes
    if attributes.compression != "gzip":
        raise DataplugError(co.url, f"only gzip objects have checkpoints to export; this one is {attributes.compression!r}")
    info, tables, blob = sidecar.object_info, sidecar.tables, sidecar.blob(WINDOWS_BLOB).read()
    header_length = gzip_header_length(co.url, co.obj.read_range(0, min(info.size, 64 * 1024), expect=info))
    columns = (tables[name].tolist() for name in ("compressed_offset", "bits", "uncompressed_offset", "window_offset", "window_length", "window_crc32"))
    stored = [(c, bits, u, checked_window(co.url, blob[w_off : w_off + w_len], crc)) for c, bits, u, w_off, w_len, crc in zip(*columns) if w_len]
    if format == "gztool":
        data = write_gztool(stored, header_length, attributes.uncompressed_size)
    else:
        points = [Checkpoint(c, bits, u, unpack_window(co.url, window)) for c, bits, u, window in stored]
        data = write_gzidx(points, header_length, info.size, attributes.uncompressed_size, int(attributes.spacing))
    StorageObject(url, dict(co.storage_options)).write_bytes(data)


def read_points(url: str, data: bytes, size: int) -> list[Checkpoint]:
    """The checkpoints of a GZIDX or gztool index (told apart by their first bytes), the object start first."""
    if is_gztool(data):
        return read_gztool(url, data, size)
    if data[: len(GZIDX_MAGIC)] == GZIDX_MAGIC:
        return read_gzidx(url, data, size)
    raise InvalidFormatError(url, f"{url} is neither a GZIDX index (indexed_gzip, rapidgzip) nor a gztool index: bad magic bytes", offset=0)


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
        for piece in compressed_pieces(obj, info, checkpoint.fetch_start, min(next_c + _MARGIN, info.size), info.size):
            if len(fetched) < AHEAD:
                fetched.extend(piece[: AHEAD - len(fetched)])
            yield from pieces(piece)

    inflater = Inflater(checkpoint, obj.url, DEFAULT_CHUNK_SIZE, backend())
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
    try:
        scan = scanner(np.frombuffer(out, np.uint8), start - u, start, end, eof)
    except DataplugError as exc:
        # Bytes decoded through a wrong window look like bad records (invalid UTF-8...): the error is
        # raised by adopt_scan only once the ranges' overlaps show that the index fits the object.
        scan = exc.with_traceback(None)
    window = pack_window(checkpoint.window, bytes(fetched), checkpoint.bits) if checkpoint.window else b""
    head = bytes(out[:WINDOW_SIZE])
    tail = bytes(out[next_u - u : next_u - u + WINDOW_SIZE]) if next_u is not None else b""
    return scan, window, (len(head), zlib.crc32(head)), (len(tail), zlib.crc32(tail)), u + len(out)


def adopt_scan(ctx: Any, scanner: Scanner, url: str) -> tuple[list[Any], CodecIndex]:
    """The gzip codec's scan from an adopted GZIDX or gztool index at ``url`` (see the module docstring)."""
    location = StorageObject(url, dict(ctx.obj.storage_options))
    size = location.info().size
    if size > max_index_bytes(ctx.info.size):
        raise InvalidFormatError(url, f"a {size}-byte index is too large for a {ctx.info.size}-byte object", offset=0)
    points = read_points(url, location.read_all(), ctx.info.size)
    items = [(p, q.compressed_offset, q.uncompressed_offset) for p, q in itertools.pairwise(points)]
    items.append((points[-1], ctx.info.size, None))
    step = functools.partial(_adopted_range, ctx.obj, ctx.info, scanner, url)
    results = map_ordered(step, items, ctx.executor, ctx.progress, desc=f"indexing {ctx.obj.url} from {url}", nbytes=ctx.info.size)
    for k in range(1, len(results)):
        if results[k - 1][3] != results[k][2]:
            at = points[k]
            raise InvalidFormatError(ctx.obj.url, f"the adopted index {url} does not fit the object: decoding from its point at byte {at.compressed_offset} ({at.bits} bits) does not give the bytes found at decoded offset {at.uncompressed_offset}", offset=at.compressed_offset)
    failed = next((scan for scan, *_ in results if isinstance(scan, DataplugError)), None)
    if failed is not None:
        raise failed
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
