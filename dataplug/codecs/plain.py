"""The identity byte source: the object's bytes are the logical stream.

The index pass maps the framing's scanner over byte ranges in parallel, on the context's executor; the
codec itself stores nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from dataplug.codecs.base import Codec, CodecIndex, Scanner, map_plain_ranges, register_codec
from dataplug.errors import CorruptIndexError
from dataplug.executors import map_ordered
from dataplug.storage import ObjectInfo, StorageObject

#: Bytes per range of the parallel index pass (each range is one read, plus its look-ahead).
DEFAULT_CHUNK_SIZE = 32 * 2**20


def byte_ranges(size: int, chunk_size: int) -> list[tuple[int, int]]:
    """``[0, size)`` cut into ranges of ``chunk_size`` bytes (the last one shorter; one empty range for an
    empty object, so every pass scans at least once)."""
    edges = list(range(0, size, max(1, chunk_size))) + [size]
    return list(zip(edges[:-1], edges[1:])) or [(0, 0)]


@dataclass(frozen=True)
class PlainReader:
    """Bytes ``[start, end)`` of a plain object: one range read, checked against the indexed identity."""

    obj: StorageObject
    info: ObjectInfo
    start: int
    end: int

    def read(self) -> bytes:
        return self.obj.read_range(self.start, self.end, expect=self.info) if self.end > self.start else b""


@register_codec
class PlainCodec(Codec):
    name = "none"

    @classmethod
    def detect(cls, head: bytes) -> bool:
        return True

    @classmethod
    def scan(cls, ctx: Any, scanner: Scanner) -> tuple[list[Any], CodecIndex]:
        size = ctx.info.size
        ranges = byte_ranges(size, ctx.chunk_size or DEFAULT_CHUNK_SIZE)
        read = functools.partial(ctx.obj.read_range)
        step = functools.partial(map_plain_ranges, read, size, scanner)
        results = map_ordered(step, ranges, ctx.executor, ctx.progress, desc=f"indexing {ctx.obj.url}", nbytes=size)
        return results, CodecIndex(cls.name, size)

    @classmethod
    def validate(cls, url: str, tables: Mapping[str, np.ndarray], blob_sizes: dict[str, int], size: int, logical_size: Any) -> int:
        if logical_size != size:
            raise CorruptIndexError(url, "a plain object's logical size must be its size")
        return size

    @classmethod
    def readers(cls, obj: StorageObject, info: ObjectInfo, index: CodecIndex) -> Callable[[int, int], PlainReader]:
        return functools.partial(PlainReader, obj, info)
