"""Lines of any gzip text object, read from gzip checkpoints: a worker fetches its compressed range and
one checkpoint window, never the whole index.

Preprocessing is one sequential pass (:func:`dataplug.codecs.gzip.build_index`) that records checkpoints
and the exact line number at each. A slice of lines ``[first, stop)`` starts decoding at the last
checkpoint before line ``first``; strategies that cut by size place cuts just after checkpoints, so a
worker decodes almost nothing it throws away.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np

from dataplug.codecs.gzip import DEFAULT_SPACING, Checkpoint, GzipIndex, build_index, inflate_from
from dataplug.errors import CorruptIndexError, InvalidFormatError, StaleIndexError
from dataplug.executors import progress_bar
from dataplug.format import DataFormat, IndexData, PreprocessContext
from dataplug.index import BlobRef
from dataplug.lineindex import split_lines
from dataplug.slice import CloudObjectSlice
from dataplug.strategies import monotonic_bounds, positive_int, step_bounds, strategy

#: Compressed bytes fetched past the last checkpoint a slice needs, when its end sits just after that
#: checkpoint (a few lines of text); a slice that needs more fetches the rest in a second request.
END_MARGIN = 64 * 1024
WINDOWS_BLOB = "windows"


@dataclass(frozen=True)
class GZipTextAttributes:
    size: int
    uncompressed_size: int
    #: Lines, counting a last line without a trailing newline.
    lines: int
    ends_with_newline: bool
    spacing: int
    bgzf: bool
    checkpoints: int


class _SizedBlob:
    """Stands in for the windows blob when only its length matters (validating a loaded index)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size


class GZipText(DataFormat):
    """Text compressed with gzip (one or many members, BGZF included). Options: ``spacing`` (uncompressed
    bytes between checkpoints, default 4 MiB)."""

    Attributes = GZipTextAttributes

    @classmethod
    def record_checker(cls, url: str) -> tuple[Callable[[memoryview], None] | None, Callable[[], dict[str, Any]]]:
        """Hooks for formats built on gzip text: a function that sees the decompressed stream during the
        index pass, and one that finishes the check and returns extra attributes."""
        return None, dict

    @classmethod
    def preprocess(cls, ctx: PreprocessContext) -> IndexData:
        url, size = ctx.obj.url, ctx.info.size
        spacing = int(ctx.options.get("spacing", DEFAULT_SPACING))
        on_data, finish = cls.record_checker(url)
        with ctx.obj.stream(ctx.info) as fh, progress_bar(size, f"indexing {url}", ctx.progress) as bar:
            seen = [0]

            def progress(done: int) -> None:
                bar.update(done - seen[0])
                seen[0] = done

            index = build_index(fh, size, spacing, url, progress, on_data=on_data)
        lines = index.line_count + (0 if index.ends_with_newline or index.uncompressed_size == 0 else 1)
        attributes = cls.Attributes(
            size=size,
            uncompressed_size=index.uncompressed_size,
            lines=lines,
            ends_with_newline=index.ends_with_newline,
            spacing=spacing,
            bgzf=index.bgzf,
            checkpoints=len(index),
            **finish(),
        )
        return IndexData(attributes, tables=index.tables(), blobs={WINDOWS_BLOB: index.windows})

    @classmethod
    def validate_index(cls, url: str, attributes: Any, tables: dict, blob_sizes: dict[str, int], size: int) -> None:
        index = gzip_index_of(url, attributes, tables, _SizedBlob(blob_sizes.get(WINDOWS_BLOB, -1)))
        if attributes.size != size or index.compressed_size != size:
            raise CorruptIndexError(url, "gzip index is for an object of another size")


def gzip_index_of(url: str, attributes: Any, tables: dict, windows: Any) -> GzipIndex:
    """The checkpoint index stored in a sidecar, validated (:class:`CorruptIndexError` otherwise)."""
    newlines = attributes.lines - (0 if attributes.ends_with_newline or attributes.uncompressed_size == 0 else 1)
    try:
        return GzipIndex.from_tables(
            tables,
            windows,
            compressed_size=attributes.size,
            uncompressed_size=attributes.uncompressed_size,
            line_count=newlines,
            ends_with_newline=attributes.ends_with_newline,
            spacing=attributes.spacing,
            bgzf=attributes.bgzf,
        )
    except ValueError as exc:
        raise CorruptIndexError(url, f"bad gzip checkpoint index: {exc}") from None


@dataclass
class GzipLinesSlice(CloudObjectSlice):
    """Lines ``[first, stop)`` of a gzip text object and the one checkpoint to decode them from."""

    first: int
    stop: int
    checkpoint_offset: int
    checkpoint_bits: int
    checkpoint_uncompressed: int
    checkpoint_line: int
    #: Where the checkpoint's compressed window lies in the sidecar (None at a member start).
    window: BlobRef | None
    window_range: tuple[int, int]
    #: Compressed bytes fetched first, and how far a second fetch may go when the lines run past them.
    fetch_end: int
    fetch_limit: int
    #: True when ``stop`` is the object's last line and it has no trailing newline.
    open_end: bool

    @property
    def num_lines(self) -> int:
        return self.stop - self.first

    def _checkpoint(self) -> Checkpoint:
        window = b""
        if self.window is not None:
            window = zlib.decompress(self.window.read(*self.window_range))
        return Checkpoint(self.checkpoint_offset, self.checkpoint_bits, self.checkpoint_uncompressed, self.checkpoint_line, window)

    def _compressed(self, start: int) -> Iterator[bytes]:
        yield self.obj.read_range(start, self.fetch_end, expect=self.object_info)
        if self.fetch_limit > self.fetch_end:
            yield self.obj.read_range(self.fetch_end, self.fetch_limit, expect=self.object_info)

    def raw(self) -> bytes:
        """The slice's lines as bytes (newlines included)."""
        if self.stop <= self.first:
            return b""
        checkpoint = self._checkpoint()
        skip = self.first - self.checkpoint_line  # newlines before the slice's first byte
        want = self.stop - self.first - (1 if self.open_end else 0)  # newlines inside the slice
        out: list[bytes] = []
        for chunk in inflate_from(self._compressed(checkpoint.fetch_start), checkpoint, url=self.url):
            if skip:
                n = chunk.count(b"\n")
                if n < skip:
                    skip -= n
                    continue
                chunk = chunk[_nth_newline(chunk, skip) + 1 :]
                skip = 0
            n = chunk.count(b"\n")
            if n >= want and not self.open_end:
                out.append(chunk[: _nth_newline(chunk, want) + 1])
                return b"".join(out)
            out.append(chunk)
            want -= n
        if self.open_end and want == 0 and not skip:
            return b"".join(out)
        raise StaleIndexError(self.url, f"lines [{self.first}, {self.stop}) are not where the index puts them; run preprocess(force=True)")

    def text(self) -> str:
        data = self.raw()
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidFormatError(self.url, f"not valid UTF-8: {exc.reason} (in decompressed lines {self.first}..{self.stop})") from None

    def get(self) -> str:
        """The slice's text, newlines included."""
        return self.text()

    def lines(self) -> list[str]:
        """The slice's lines without their ``\\n`` (or ``\\r\\n``)."""
        return split_lines(self.text())


def _nth_newline(chunk: bytes, n: int) -> int:
    """Position of the ``n``-th (1-based) newline of ``chunk``."""
    return int(np.flatnonzero(np.frombuffer(chunk, dtype=np.uint8) == 10)[n - 1])


def loaded_gzip_index(co: Any) -> GzipIndex:
    sidecar = co.index()
    return gzip_index_of(co.url, co.attributes, sidecar.tables, _SizedBlob(sidecar.blob(WINDOWS_BLOB).size))


def snapped_bounds(index: GzipIndex, total: int, parts: int, align: int = 1) -> np.ndarray:
    """Line boundaries of ``parts`` runs of about equal uncompressed bytes, each cut at the first line
    start (a multiple of ``align``) after a checkpoint, so that each run starts decoding where it begins.

    Falls back to interpolated cuts when there are too few checkpoints for every cut to have its own.
    """
    lines = index.line.astype(np.int64)
    offsets = index.uncompressed_offset.astype(np.int64)
    targets = np.linspace(0, index.uncompressed_size, parts + 1)[1:-1]
    k = np.clip(np.searchsorted(offsets, targets), 0, len(offsets) - 1)
    nearer_previous = (k > 0) & (np.abs(offsets[np.maximum(k - 1, 0)] - targets) <= np.abs(offsets[k] - targets))
    k = np.where(nearer_previous, k - 1, k)
    snapped = -(-(lines[k] + 1) // align) * align
    snapped = np.where(k == 0, 0, snapped)
    bounds = np.concatenate(([0], snapped, [total]))
    if np.all(np.diff(bounds) > 0):
        return monotonic_bounds(bounds, total)
    anchors_u = np.append(offsets, index.uncompressed_size)
    anchors_l = np.append(lines, total)
    interpolated = np.floor(np.interp(targets, anchors_u, anchors_l) / align).astype(np.int64) * align
    return monotonic_bounds(np.concatenate(([0], interpolated, [total])), total)


def gzip_line_slices(co: Any, slice_class: type[GzipLinesSlice], bounds: np.ndarray, **extra: Any) -> list[Any]:
    """One slice per run of lines ``[bounds[i], bounds[i+1])``, each with its checkpoint and fetch range."""
    sidecar = co.index()
    attrs = co.attributes
    index = loaded_gzip_index(co)
    windows = sidecar.blob(WINDOWS_BLOB)
    lines = index.line.astype(np.int64)
    n = len(lines)
    out = []
    for number, (a, b) in enumerate(zip(bounds[:-1].tolist(), bounds[1:].tolist())):
        k = max(int(np.searchsorted(lines, a, side="left")) - 1, 0) if b > a else 0
        c = max(int(np.searchsorted(lines, b, side="left")) - 1, k)  # last checkpoint before line b's end
        limit = int(index.compressed_offset[c + 1]) if c + 1 < n else attrs.size
        near = b - lines[c] <= 8  # the slice ends a few lines after checkpoint c: a margin is enough
        fetch_end = min(limit, int(index.compressed_offset[c]) + END_MARGIN) if near and c > k else limit
        w_len = int(index.window_length[k])
        out.append(
            slice_class(
                obj=co.obj,
                object_info=sidecar.object_info,
                number=number,
                first=a,
                stop=b,
                checkpoint_offset=int(index.compressed_offset[k]),
                checkpoint_bits=int(index.bits[k]),
                checkpoint_uncompressed=int(index.uncompressed_offset[k]),
                checkpoint_line=int(lines[k]),
                window=windows if w_len else None,
                window_range=(int(index.window_offset[k]), int(index.window_offset[k]) + w_len),
                fetch_end=fetch_end,
                fetch_limit=limit,
                open_end=b == attrs.lines and not attrs.ends_with_newline and b > a,
                **extra,
            )
        )
    return out


@strategy(GZipText)
def partition_chunk_lines(co: Any, lines_per_chunk: int) -> list[GzipLinesSlice]:
    """Slices of exactly ``lines_per_chunk`` lines (the last one shorter)."""
    step = positive_int(co.url, "lines_per_chunk", lines_per_chunk)
    return gzip_line_slices(co, GzipLinesSlice, step_bounds(co.attributes.lines, step))


@strategy(GZipText)
def partition_num_chunks(co: Any, n_chunks: int) -> list[GzipLinesSlice]:
    """``n_chunks`` slices of about equal uncompressed size, cut at line starts just after checkpoints."""
    n = positive_int(co.url, "n_chunks", n_chunks)
    return gzip_line_slices(co, GzipLinesSlice, snapped_bounds(loaded_gzip_index(co), co.attributes.lines, n))

