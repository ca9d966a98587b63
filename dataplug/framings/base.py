"""Record framings over any byte source: the base of every format whose records live in a byte stream
(text lines, CSV, FASTQ), whatever compresses that stream.

A :class:`StreamFormat` supplies a scanner (the map step of its index pass, see
:mod:`dataplug.codecs.base`) and turns the scanners' results into its tables; the codec (plain, gzip,
BGZF) is detected from the object's first bytes, or forced with ``preprocess(compression=...)``. Both halves
share one sidecar: the codec's tables and blobs say how to decode any logical range, the framing's where
its records start in the logical stream.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dataplug.codecs import registered_codecs
from dataplug.codecs.base import Codec, CodecIndex, LogicalReader, Scanner, detect_codec, get_codec
from dataplug.errors import CorruptIndexError, InvalidFormatError, StrategyArgumentError
from dataplug.format import DataFormat, PreprocessContext
from dataplug.storage.ranges import STREAM_FIRST_RANGE
from dataplug.storage.stores import FILE_PROTOCOLS

#: Protocols whose reads cost no request (a ``pread``, memory): a region set plans no fetch windows there.
LOCAL_PROTOCOLS = (*FILE_PROTOCOLS, "memory")

#: Bytes read from the object's start to detect its codec.
HEAD_BYTES = 64 * 1024


@dataclass(frozen=True)
class StreamAttributes:
    """What every framed format records about the byte source under it."""

    size: int
    #: ``"none"``, ``"gzip"``, ``"bgzf"``, ``"zstd"`` or ``"bzip2"``.
    compression: str
    #: Bytes of the logical (decoded) stream; ``size`` for a plain object.
    uncompressed_size: int
    #: Decoded bytes between checkpoints (gzip, BGZF; the largest frame or block for zstd and bzip2; 0 for a
    #: plain object) and their number.
    spacing: int
    checkpoints: int


def codec_attributes(size: int, index: CodecIndex) -> dict[str, Any]:
    """The :class:`StreamAttributes` fields for an object of ``size`` bytes read through ``index``."""
    fields = {"compression": index.codec, "uncompressed_size": index.logical_size, "spacing": 0, "checkpoints": 0}
    fields.update(index.attributes)
    return {"size": size, **fields}


class StreamFormat(DataFormat):
    """Base of formats framed over a codec's logical stream. Option ``compression``: ``"gzip"``,
    ``"bgzf"``, ``"zstd"``, ``"bzip2"`` or ``"none"`` to override detection; the codecs' own options
    (:attr:`Codec.options <dataplug.codecs.base.Codec.options>`) are the format's too."""

    #: 2: codec tables beside the framing's (indexes of dataplug before codecs x framings are rebuilt).
    index_version = 2
    options = {"compression": "'gzip', 'bgzf', 'zstd', 'bzip2' or 'none': overrides detection from the first bytes"}

    @classmethod
    def all_options(cls) -> dict[str, str]:
        """The format's options and those of every registered codec (whichever codec the object turns out to have)."""
        out = {name: text for codec in registered_codecs() for name, text in codec.options.items()}
        return {**out, **super().all_options()}

    @classmethod
    def codec_for(cls, ctx: PreprocessContext, head: bytes | None = None) -> type[Codec]:
        """The object's codec: forced by the ``compression`` option, else detected from its first bytes
        (``head``, when the caller has read them already)."""
        url = ctx.obj.url
        if head is None:
            head = ctx.obj.read_range(0, min(ctx.info.size, HEAD_BYTES))
        detected = detect_codec(head)
        forced = ctx.options.get("compression")
        if forced is None:
            return get_codec(detected)
        try:
            codec = get_codec(str(forced).lower())
        except ValueError as exc:
            raise InvalidFormatError(url, str(exc)) from None
        if codec.name == "none" and detected != "none":
            raise InvalidFormatError(url, f"the object is {detected}-compressed (its first bytes say so); compression='none' would read compressed bytes as {cls.name} records", offset=0)
        if codec.name == "bgzf" and detected != "bgzf":
            raise InvalidFormatError(url, "not BGZF: the first gzip member has no BGZF 'BC' extra field", offset=0)
        if codec.name == "gzip" and detected == "none":
            raise InvalidFormatError(url, "not gzip: the object does not start with the gzip magic bytes", offset=0)
        return codec

    @classmethod
    def logical_head(cls, ctx: PreprocessContext, n: int) -> bytes:
        """Up to the first ``n`` decoded bytes of the object (fewer when the first ``n`` compressed bytes
        decode to less): a byte order mark, a sample of the first records."""
        raw = ctx.obj.read_range(0, min(ctx.info.size, max(HEAD_BYTES, n)))
        codec = cls.codec_for(ctx, raw)
        if len(raw) < min(ctx.info.size, codec.head_bytes(n)):
            raw = ctx.obj.read_range(0, min(ctx.info.size, codec.head_bytes(n)))
        return codec.head(ctx.obj.url, raw, n)

    @classmethod
    def scan_stream(cls, ctx: PreprocessContext, scanner: Scanner) -> tuple[list[Any], CodecIndex]:
        """Run ``scanner`` over the object's logical stream with its codec. The codec is told from the first
        bytes in hand (detection read them); when none are, from the object's first MiB, which the pass's read-ahead
        (``StorageObject.stream``) then takes from hand, so on S3 telling the codec costs no round trip of its own."""
        if len(getattr(ctx.obj, "head", b"")) >= min(ctx.info.size, HEAD_BYTES):
            return cls.codec_for(ctx).scan(ctx, scanner)
        head = ctx.obj.read_range(0, min(ctx.info.size, STREAM_FIRST_RANGE))
        return cls.codec_for(ctx, head[:HEAD_BYTES]).scan(ctx, scanner)

    @classmethod
    def validate_index(cls, url: str, attributes: Any, tables: dict[str, np.ndarray], blob_sizes: dict[str, int], size: int) -> None:
        try:
            codec = get_codec(attributes.compression)
        except ValueError as exc:
            raise CorruptIndexError(url, str(exc)) from None
        if attributes.size != size:
            raise CorruptIndexError(url, f"index is for an object of {attributes.size} bytes, not {size}")
        encoding = getattr(attributes, "encoding", None)
        if encoding is not None:
            from dataplug.framings.lines import text_encoding  # lines builds on this module

            try:
                text_encoding(url, encoding)
            except StrategyArgumentError as exc:
                raise CorruptIndexError(url, f"the index names a text encoding dataplug does not read: {exc.cause}") from None
        logical = codec.validate(url, tables, blob_sizes, size, attributes.uncompressed_size)
        cls.validate_records(url, attributes, tables, logical)

    @classmethod
    def validate_records(cls, url: str, attributes: Any, tables: dict[str, np.ndarray], logical_size: int) -> None:
        """Check the framing's tables against a logical stream of ``logical_size`` bytes."""


def preprocess_reader(ctx: PreprocessContext, index: CodecIndex) -> Callable[[int, int], bytes]:
    """``read(start, end)`` of decoded bytes while preprocessing, before the index is written."""
    reader = get_codec(index.codec).readers(ctx.obj, ctx.info, index)
    return lambda start, end: reader(start, end).read()


def codec_index(co: Any) -> CodecIndex:
    """The codec's part of ``co``'s loaded index."""
    return CodecIndex.of_sidecar(co.index(), co.attributes.compression, co.attributes.uncompressed_size)


def readers(co: Any) -> Callable[[int, int], LogicalReader]:
    """``reader(start, end)``: a picklable reader of the decoded bytes ``[start, end)`` of ``co``'s object,
    from its loaded index (resolved once, for the many slices of a partition)."""
    return get_codec(co.attributes.compression).readers(co.obj, co.index().object_info, codec_index(co))


def cut_offsets(co: Any) -> np.ndarray:
    """Logical offsets where ``co``'s codec starts decoding without waste (none for plain objects)."""
    return get_codec(co.attributes.compression).cuts(co.url, codec_index(co), co.index().object_info.size)
