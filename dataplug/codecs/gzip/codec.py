"""The gzip byte source: the checkpoint pass of :mod:`dataplug.codecs.gzip.index_pass` as a codec, and readers that
decode any logical range from one checkpoint.

The sidecar keeps one row per checkpoint (compressed byte and bit, uncompressed offset, where its window
lies in the ``windows`` blob and the window's CRC-32) and the windows themselves, zlib-compressed. A reader
carries one checkpoint and fetches its window (one small, CRC-checked range of the sidecar) and the
compressed bytes from that checkpoint on.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from dataplug.codecs.base import Codec, CodecIndex, Scanner, StreamRanges, register_codec
from dataplug.codecs.gzip.headers import is_bgzf
from dataplug.codecs.gzip.index import WINDOW_SIZE, Checkpoint, default_spacing
from dataplug.codecs.gzip.inflate import inflate_from
from dataplug.codecs.gzip.interop import adopt_scan
from dataplug.codecs.gzip.index_pass import build_index
from dataplug.codecs.gzip.windows import WINDOWS_BLOB, read_window
from dataplug.errors import CorruptIndexError, InvalidFormatError
from dataplug.executors import progress_bar
from dataplug.sidecar import BlobRef
from dataplug.storage import ObjectInfo, StorageObject

_TABLES = {
    "compressed_offset": np.uint64,
    "bits": np.uint8,
    "uncompressed_offset": np.uint64,
    "window_offset": np.uint64,
    "window_length": np.uint32,
    "window_crc32": np.uint32,
}
_MAX_RATIO = 1032
#: Compressed bytes fetched past the estimated end of a range before a second request is needed.
END_MARGIN = 64 * 1024


@dataclass(frozen=True)
class GzipReader:
    """Decoded bytes ``[start, end)`` of a gzip object, from the last checkpoint at or before ``start``."""

    obj: StorageObject
    info: ObjectInfo
    start: int
    end: int
    checkpoint_offset: int
    checkpoint_bits: int
    checkpoint_uncompressed: int
    #: The windows blob (a sidecar reference on workers, bytes while preprocessing) and this window's place.
    windows: BlobRef | bytes | None
    window_range: tuple[int, int]
    window_crc32: int
    #: Compressed bytes fetched first, and how far a second fetch may go when decoding needs more.
    fetch_end: int
    fetch_limit: int

    def read(self) -> bytes:
        if self.end <= self.start:
            return b""
        window = b""
        if self.windows is not None:
            window = read_window(self.obj.url, self.windows, *self.window_range, self.window_crc32)
        checkpoint = Checkpoint(self.checkpoint_offset, self.checkpoint_bits, self.checkpoint_uncompressed, 0, window)
        skip = self.start - self.checkpoint_uncompressed
        want = self.end - self.start
        out = bytearray()
        for chunk in inflate_from(self._compressed(checkpoint.fetch_start), checkpoint, url=self.obj.url):
            if skip >= len(chunk):
                skip -= len(chunk)
                continue
            out += chunk[skip : skip + want - len(out)]
            skip = 0
            if len(out) == want:
                return bytes(out)
        raise CorruptIndexError(
            self.obj.url, f"decoded bytes [{self.start}, {self.end}) end early (got {len(out)}): the gzip index does not match the object"
        )

    def _compressed(self, start: int) -> Iterator[bytes]:
        yield self.obj.read_range(start, self.fetch_end, expect=self.info)
        if self.fetch_limit > self.fetch_end:
            yield self.obj.read_range(self.fetch_end, self.fetch_limit, expect=self.info)


@register_codec
class GzipCodec(Codec):
    """gzip, one member or many (``cat a.gz b.gz``, pigz). Options: ``spacing``, uncompressed bytes between
    checkpoints (default: from the object's size, see :func:`dataplug.codecs.gzip.default_spacing`);
    ``adopt_index``, the URL of a GZIDX or gztool index of the object to take the checkpoints from instead of the
    sequential pass (see :mod:`dataplug.codecs.gzip.interop`)."""

    name = "gzip"

    @classmethod
    def detect(cls, head: bytes) -> bool:
        return head[:2] == b"\x1f\x8b" and not is_bgzf(head)

    @classmethod
    def head(cls, url: str, raw: bytes, n: int) -> bytes:
        out = b""
        while len(out) < n and raw[:2] == b"\x1f\x8b":
            d = zlib.decompressobj(31)
            try:
                out += d.decompress(raw, n - len(out))
            except zlib.error as exc:
                raise InvalidFormatError(url, f"corrupt gzip data: {exc}", offset=0) from None
            if not d.eof:
                break
            raw = d.unused_data
        return out

    @classmethod
    def scan(cls, ctx: Any, scanner: Scanner) -> tuple[list[Any], CodecIndex]:
        url, size = ctx.obj.url, ctx.info.size
        adopt = ctx.options.get("adopt_index")
        if adopt:
            return adopt_scan(ctx, scanner, str(adopt))
        spacing = int(ctx.options.get("spacing", default_spacing(size)))
        if spacing < 1:
            raise InvalidFormatError(url, f"spacing must be a positive number of bytes, got {spacing}")
        with StreamRanges(scanner, max_range=2 * max(spacing, 2**20)) as ranges:
            with ctx.obj.stream(ctx.info) as fh, progress_bar(size, f"indexing {url}", ctx.progress, unit="B") as bar:
                seen = [0]

                def progress(done: int) -> None:
                    bar.update(done - seen[0])
                    seen[0] = done

                index = build_index(fh, size, spacing, url, progress, on_data=ranges.data, on_checkpoint=ranges.cut, lines=False)
            results = ranges.finish()
        windows = index.windows
        crcs = [zlib.crc32(windows[o : o + n]) for o, n in zip(index.window_offset.tolist(), index.window_length.tolist())]
        tables = {
            "compressed_offset": index.compressed_offset,
            "bits": index.bits,
            "uncompressed_offset": index.uncompressed_offset,
            "window_offset": index.window_offset,
            "window_length": index.window_length,
            "window_crc32": np.array(crcs, np.uint32),
        }
        codec = "bgzf" if index.bgzf else "gzip"
        attributes = {"compression": codec, "uncompressed_size": index.uncompressed_size, "spacing": spacing, "checkpoints": len(index)}
        return results, CodecIndex(codec, index.uncompressed_size, tables, {WINDOWS_BLOB: windows}, attributes)

    @classmethod
    def cuts(cls, tables: dict[str, np.ndarray]) -> np.ndarray:
        return tables["uncompressed_offset"].astype(np.int64)

    @classmethod
    def validate(cls, url: str, tables: dict[str, np.ndarray], blob_sizes: dict[str, int], size: int, attributes: dict[str, Any]) -> int:
        def need(ok: Any, what: str) -> None:
            if not ok:
                raise CorruptIndexError(url, f"bad gzip checkpoint index: {what}")

        need(all(name in tables for name in _TABLES) and WINDOWS_BLOB in blob_sizes, "tables or windows blob missing")
        t = {name: tables[name] for name in _TABLES}
        n = t["uncompressed_offset"].size
        need(n >= 1 and all(a.ndim == 1 and a.size == n and a.dtype.kind in "ui" for a in t.values()), "tables must be 1-d integers of equal length")
        logical = attributes.get("uncompressed_size")
        need(isinstance(logical, int) and logical >= 0, "uncompressed size")
        c, u = t["compressed_offset"].astype(np.int64), t["uncompressed_offset"].astype(np.int64)
        bits, w_off, w_len = t["bits"].astype(np.int64), t["window_offset"].astype(np.int64), t["window_length"].astype(np.int64)
        need(c[0] == 0 and u[0] == 0 and bits[0] == 0 and w_len[0] == 0, "checkpoint 0 must be the object start")
        # deflate expands at most 1032:1, so sizes beyond that are crafted (and would drive allocations)
        need(logical <= _MAX_RATIO * size + 2**20 and np.all(np.diff(u) <= _MAX_RATIO * np.diff(c) + 2**16), "more decoded bytes than deflate can produce")
        need(np.all(np.diff(u) > 0) and np.all(np.diff(c) >= 0) and u[-1] <= logical and c[-1] < max(size, 1), "offsets must increase inside the object")
        need(np.all((bits >= 0) & (bits <= 7)) and not np.any((bits > 0) & (w_len == 0)) and np.all(c >= (bits > 0)), "bit offsets")
        need(np.all(w_off >= 0) and np.all(w_len <= WINDOW_SIZE + 64) and np.all(w_off + w_len <= blob_sizes[WINDOWS_BLOB]), "windows beyond the blob")
        return int(logical)

    @classmethod
    def reader(cls, obj: Any, info: Any, sidecar: Any, index: CodecIndex | None, start: int, end: int) -> GzipReader:
        """The reader of ``[start, end)``, from a loaded sidecar or (while preprocessing) an in-memory index."""
        tables = sidecar.tables if sidecar is not None else index.tables  # type: ignore[union-attr]
        windows: BlobRef | bytes = sidecar.blob(WINDOWS_BLOB) if sidecar is not None else index.blobs[WINDOWS_BLOB]  # type: ignore[union-attr]
        size = info.size
        u = tables["uncompressed_offset"].astype(np.int64)
        c = tables["compressed_offset"].astype(np.int64)
        k = int(np.searchsorted(u, start, side="right")) - 1
        j = int(np.searchsorted(u, end, side="left"))  # first checkpoint at or after the end
        j = max(j, k + 1)
        limit = int(c[j]) if j < u.size else size
        fetch_end = limit
        last = j - 1  # the last checkpoint before the end
        if last > k and j < u.size:
            ratio = (c[j] - c[last]) / max(u[j] - u[last], 1)
            guess = int(c[last]) + int((end - u[last]) * ratio * 1.25) + END_MARGIN
            fetch_end = min(limit, guess)
        w_len = int(tables["window_length"][k])
        w_off = int(tables["window_offset"][k])
        return GzipReader(
            obj=obj,
            info=info,
            start=start,
            end=end,
            checkpoint_offset=int(c[k]),
            checkpoint_bits=int(tables["bits"][k]),
            checkpoint_uncompressed=int(u[k]),
            windows=windows if w_len else None,
            window_range=(w_off, w_off + w_len),
            window_crc32=int(tables["window_crc32"][k]),
            fetch_end=fetch_end,
            fetch_limit=limit,
        )
