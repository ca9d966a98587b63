"""The gzip byte source: the checkpoint pass of :mod:`dataplug.codecs.gzip.index_pass` as a codec, and readers that
decode any logical range from one checkpoint.

The sidecar keeps one row per checkpoint (compressed byte and bit, uncompressed offset, where its window
lies in the ``windows`` blob and the window's CRC-32) and the windows themselves, zlib-compressed and sparse.
A reader carries one checkpoint with its stored window (a few KiB), so reading a slice is one range read of
the object: the partition loads the windows blob once, or not at all when the sidecar came with it. Only a
blob larger than :data:`WINDOWS_LOAD_MAX` stays in the sidecar, each reader fetching its own window.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from dataplug.codecs.base import Codec, CodecIndex, Scanner, StreamRanges, register_codec
from dataplug.codecs.checkpoints import CheckpointTable, Fetch, compressed_pieces, decoded_range
from dataplug.codecs.gzip.headers import is_bgzf
from dataplug.codecs.gzip.index import MAX_RATIO, WINDOW_SIZE, Checkpoint, checkpoint_table, default_spacing
from dataplug.codecs.gzip.index_pass import WINDOW_BUDGET, build_index
from dataplug.codecs.gzip.inflate import inflate_from
from dataplug.codecs.gzip.interop import adopt_scan
from dataplug.codecs.gzip.windows import WINDOWS_BLOB, unpack_window
from dataplug.errors import CorruptIndexError, InvalidFormatError
from dataplug.executors import progress_bar
from dataplug.sidecar import BlobRef
from dataplug.storage import ObjectInfo, StorageObject

#: The largest windows blob a partition loads whole (one request, SHA-256 checked) so that its slices carry
#: their windows; from a larger one, each slice reads its own window (a second request). The blob grows
#: with the object, about one stored window per checkpoint: ``python benchmarks/slice_requests.py`` prints
#: its size and a slice's pickled size.
WINDOWS_LOAD_MAX = 16 * 2**20


@dataclass(frozen=True)
class WindowRef:
    """Where a checkpoint's stored window lies in the sidecar's windows blob (read by the worker)."""

    blob: BlobRef
    start: int
    end: int

    def read(self, crc32: int) -> bytes:
        return self.blob.read(self.start, self.end, crc32=crc32)


class StoredWindows:
    """The stored windows for one partition's readers: from memory while preprocessing, else from the
    sidecar's blob, read whole on first use when it is at most :data:`WINDOWS_LOAD_MAX` bytes."""

    def __init__(self, blob: bytes | BlobRef) -> None:
        self.blob = blob
        self.data: bytes | None = None if isinstance(blob, BlobRef) else blob

    def window(self, start: int, end: int) -> bytes | WindowRef:
        """The stored window at ``[start, end)`` of the blob, or a reference to it (b"" for none)."""
        if end <= start:
            return b""
        if self.data is None and isinstance(self.blob, BlobRef):
            if self.blob.size > WINDOWS_LOAD_MAX:
                return WindowRef(self.blob, start, end)
            self.data = self.blob.read()
        return self.data[start:end]


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
    #: The checkpoint's stored window (zlib-compressed, sparse; b"" on a member header), or where it lies.
    window: bytes | WindowRef
    window_crc32: int
    #: The compressed bytes to fetch: first to where ``end`` probably lies, then, if decoding needs more, on.
    fetch: Fetch

    def read(self) -> bytes:
        if self.end <= self.start:
            return b""
        url = self.obj.url
        if isinstance(self.window, WindowRef):
            window = unpack_window(url, self.window.read(self.window_crc32))
        else:
            window = unpack_window(url, self.window, self.window_crc32) if self.window else b""
        checkpoint = Checkpoint(self.checkpoint_offset, self.checkpoint_bits, self.checkpoint_uncompressed, window)
        fetch = self.fetch
        chunks = inflate_from(compressed_pieces(self.obj, self.info, fetch.start, fetch.first_end, fetch.end), checkpoint, url=url)
        return decoded_range(url, chunks, self.start - self.checkpoint_uncompressed, self.end - self.start, "gzip index")


class GzipReaders:
    """``reader(start, end)`` for one gzip object's index (see :meth:`GzipCodec.readers`)."""

    def __init__(self, obj: StorageObject, info: ObjectInfo, table: CheckpointTable, windows: StoredWindows) -> None:
        self.obj, self.info, self.table, self.windows = obj, info, table, windows

    def prepare(self, starts: np.ndarray, ends: np.ndarray) -> None:
        """Before the readers of a partition's ranges are made one by one (when each slice is first read or
        pickled): load the windows blob now, once, so that no slice, nor any worker, reads the sidecar."""
        if bool(np.any(ends > starts)):
            self.windows.window(0, 1)

    def __call__(self, start: int, end: int) -> GzipReader:
        fetch = self.table.fetch(start, end)
        k, columns = fetch.row, self.table.columns
        w_off, w_len = int(columns["window_offset"][k]), int(columns["window_length"][k])
        return GzipReader(
            obj=self.obj,
            info=self.info,
            start=start,
            end=end,
            checkpoint_offset=int(columns["compressed_offset"][k]),
            checkpoint_bits=int(columns["bits"][k]),
            checkpoint_uncompressed=int(self.table.logical[k]),
            window=self.windows.window(w_off, w_off + w_len) if end > start else b"",
            window_crc32=int(columns["window_crc32"][k]),
            fetch=fetch,
        )


@register_codec
class GzipCodec(Codec):
    """gzip, one member or many (``cat a.gz b.gz``, pigz). Options: ``spacing``, uncompressed bytes between
    checkpoints (default: from the object's size, see :func:`dataplug.codecs.gzip.default_spacing`, widened
    where needed to keep the stored windows within :data:`~dataplug.codecs.gzip.index_pass.WINDOW_BUDGET` of the object);
    ``window_budget``, that share (applied to a given ``spacing`` only when asked for); ``adopt_index``, the URL of a GZIDX or gztool index of the object to take the checkpoints from instead of the
    sequential pass (see :mod:`dataplug.codecs.gzip.interop`)."""

    name = "gzip"
    options = {
        "spacing": "decoded bytes between gzip checkpoints (default: 1.5 to 4 MiB, from the object size); BGZF ignores it: every member start is a checkpoint",
        "window_budget": f"share of the compressed object the stored windows may take (default {WINDOW_BUDGET} unless spacing is given); a checkpoint waits until its window fits",
        "adopt_index": "URL of a GZIDX index of the gzip object (indexed_gzip, rapidgzip) to take checkpoints from instead of a sequential pass",
    }

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
        given = ctx.options.get("spacing")
        spacing = default_spacing(size) if given is None else int(given)
        budget = ctx.options.get("window_budget", None if given is not None else WINDOW_BUDGET)  # a spacing asked for is kept
        if budget is not None and not float(budget) > 0:
            raise InvalidFormatError(url, f"window_budget must be a positive share of the object, got {budget}")
        if spacing < 1:
            raise InvalidFormatError(url, f"spacing must be a positive number of bytes, got {spacing}")
        with StreamRanges(scanner, max_range=2 * max(spacing, 2**20)) as ranges:
            with ctx.obj.stream(ctx.info) as fh, progress_bar(size, f"indexing {url}", ctx.progress, unit="B") as bar:
                seen = [0]

                def progress(done: int) -> None:
                    bar.update(done - seen[0])
                    seen[0] = done

                index = build_index(
                    fh,
                    size,
                    spacing,
                    url,
                    progress,
                    on_data=ranges.data,
                    on_checkpoint=ranges.cut,
                    window_budget=None if budget is None else float(budget),
                )
            results = ranges.finish()
        codec = "bgzf" if index.bgzf else "gzip"
        attributes = {"compression": codec, "uncompressed_size": index.uncompressed_size, "spacing": spacing, "checkpoints": len(index)}
        return results, CodecIndex(codec, index.uncompressed_size, index.tables(), {WINDOWS_BLOB: index.windows}, attributes)

    @classmethod
    def checkpoints(cls, url: str, index: CodecIndex, size: int) -> CheckpointTable:
        return checkpoint_table(url, index.tables, size, index.logical_size)

    @classmethod
    def validate(cls, url: str, tables: Mapping[str, np.ndarray], blob_sizes: dict[str, int], size: int, logical_size: Any) -> int:
        def need(ok: Any, what: str) -> None:
            if not ok:
                raise CorruptIndexError(url, f"bad gzip checkpoint index: {what}")

        need(WINDOWS_BLOB in blob_sizes, "windows blob missing")
        need(isinstance(logical_size, int) and 0 <= logical_size <= MAX_RATIO * size + 2**20, "uncompressed size")
        table = checkpoint_table(url, tables, size, logical_size)
        table.validate(url, size, "gzip checkpoint index", max_ratio=MAX_RATIO, slack=2**16, strict=False)
        t = table.columns
        c, bits, w_off, w_len = t["compressed_offset"], t["bits"], t["window_offset"], t["window_length"]
        need(len(table) >= 1 and c[0] == 0 and bits[0] == 0 and w_len[0] == 0, "checkpoint 0 must be the object start")
        need(np.all(np.diff(table.cuts()) > 0) and c[-1] < max(size, 1), "offsets must increase inside the object")
        need(np.all((bits >= 0) & (bits <= 7)) and not np.any((bits > 0) & (w_len == 0)) and np.all(c >= (bits > 0)), "bit offsets")
        need(
            np.all(w_off >= 0) and np.all(w_len <= WINDOW_SIZE + 64) and np.all(w_off + w_len <= blob_sizes[WINDOWS_BLOB]), "windows beyond the blob"
        )
        return int(logical_size)

    @classmethod
    def readers(cls, obj: StorageObject, info: ObjectInfo, index: CodecIndex) -> GzipReaders:
        """Readers that each carry their checkpoint's stored window (see the module docstring)."""
        return GzipReaders(obj, info, cls.checkpoints(obj.url, index, info.size), StoredWindows(index.blobs[WINDOWS_BLOB]))
