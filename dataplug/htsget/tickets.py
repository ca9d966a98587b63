"""htsget 1.3 tickets computed from dataplug's own indexes, for BGZF-compressed BAM and VCF objects.

A ticket lists the pieces a client fetches and concatenates into a valid file: the header (inline, as a
``data:`` URL of BGZF members compressed here from the header the index keeps), the body (byte ranges of
the object's own BGZF members, with ``Range`` headers), and the BGZF end-of-file block (inline).

The body of a region is found with the format's own region strategy (``partition_regions``): its slice's
decoded range is mapped onto whole BGZF members through the codec's checkpoint table (a stretch of the
table that holds several members, checkpoints far apart, is walked member by member: their headers and
``ISIZE`` trailers, nothing inflated). The members between the first and the last go as one byte range.
The first and last members go inline, decoded, cut to the region's records and re-compressed, whenever
the range starts or ends inside them: the member that holds the end of the header and the first records
(bgzip writes both into one) would repeat header bytes, and one that starts or ends inside a record
would send a partial record. So the concatenated bytes hold every record of the region and at most the
other records of its own members; planning reads those two edge members and no other data.
"""

from __future__ import annotations

import base64
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from dataplug.codecs import CheckpointTable, CodecIndex, get_codec
from dataplug.codecs.bgzf import BGZF_EOF, bgzf_compress, inflate_members
from dataplug.codecs.gzip.headers import bgzf_block_size
from dataplug.errors import CorruptIndexError, InvalidFormatError, StrategyArgumentError

#: A BGZF member's most compressed bytes, and most decoded bytes.
MAX_MEMBER = 65536
#: htsget positions are 32-bit unsigned integers.
MAX_POSITION = 2**32 - 1
#: Bytes per body URL at most: the protocol's guideline ("data blocks should not exceed ~1GB"), so that a
#: client retries a failed block rather than the whole transfer.
DEFAULT_BLOCK_BYTES = 2**30
#: Decoded header bytes a ticket sends inline at most: a longer header goes as a range of the members that
#: hold only header bytes, then the rest inline (the protocol: "inline data URIs should not exceed a few
#: megabytes"; a VCF of a draft assembly's contigs or a BAM of many @SQ lines has headers of several).
INLINE_HEADER_MAX = 2**20
#: Cuts a decoded edge piece of whole records to a region's: ``trim(data, head, tail)``.
Trim = Callable[[bytes, bool, bool], bytes]
#: htsget's data format of each dataplug format it serves, and the media type of its inline blocks.
MEDIA_TYPES = {"BAM": "application/vnd.ga4gh.bam", "VCF": "application/vnd.ga4gh.vcf"}
_DECLARED = {"VCF": re.compile(r"^##contig=<ID=([^,>]+)", re.MULTILINE), "BAM": re.compile(r"^@SQ\t(?:[^\n]*\t)?SN:([^\t\n]+)", re.MULTILINE)}


class HtsgetError(StrategyArgumentError):
    """A request htsget answers with an error: ``error`` is the protocol's error type, ``status`` its HTTP
    status (htsget 1.3, "Errors")."""

    error: ClassVar[str] = "InvalidInput"
    status: ClassVar[int] = 400


class ReferenceNotFoundError(HtsgetError):
    """The reference name is neither in the file's header nor among its records."""

    error, status = "NotFound", 404


class InvalidRangeError(HtsgetError):
    """``start`` is after ``end``."""

    error = "InvalidRange"


class UnsupportedFormatError(HtsgetError):
    """The object is not a BGZF-compressed BAM or VCF, or another data format was asked for."""

    error = "UnsupportedFormat"


def data_url(data_format: str, data: bytes, data_class: str) -> dict[str, str]:
    """An inline ticket block: ``data`` base64-encoded in a ``data:`` URL."""
    return {"url": f"data:{MEDIA_TYPES[data_format]};base64,{base64.b64encode(data).decode('ascii')}", "class": data_class}


@dataclass(frozen=True)
class Member:
    """One BGZF member (or, where the index cannot tell them apart, a run of them): compressed ``[start,
    end)`` of the object, decoding to ``[first, stop)`` of the stream."""

    start: int
    end: int
    first: int
    stop: int


class Members:
    """The BGZF members of one indexed object, found from its checkpoint table (reading compressed bytes
    only where a stretch between two checkpoints holds several members)."""

    def __init__(self, co: Any, table: CheckpointTable) -> None:
        self.co, self.table = co, table
        self.info = co.index().object_info
        self._walked: dict[int, list[Member]] = {}

    def at(self, offset: int) -> Member:
        """The member that holds decoded byte ``offset``."""
        k = self.table.locate(offset)
        for member in self._stretch(k):
            if member.first <= offset < member.stop:
                return member
        raise CorruptIndexError(self.co.url, f"no BGZF member holds decoded byte {offset}: the checkpoint index does not match the object")

    def read(self, start: int, end: int) -> bytes:
        """Object bytes ``[start, end)``, pinned to the indexed object."""
        return self.co.obj.read_range(start, end, expect=self.info)

    def decode(self, members: list[Member]) -> list[bytes]:
        """The decoded bytes of each of ``members``, read in one planned request where they lie close."""
        raws = self.co.obj.read_ranges([(m.start, m.end) for m in members], expect=self.info) if members else []
        out = []
        for member, raw in zip(members, raws):
            data = inflate_members(self.co.url, raw, member.start, whole=True)[0]
            if len(data) != member.stop - member.first:
                raise CorruptIndexError(
                    self.co.url,
                    f"the BGZF member at byte {member.start} decodes to {len(data)} bytes, the checkpoint index says {member.stop - member.first}",
                )
            out.append(data)
        return out

    def _stretch(self, k: int) -> list[Member]:
        t = self.table
        c0, c1, u0, u1 = int(t.compressed[k]), int(t.compressed[k + 1]), int(t.logical[k]), int(t.logical[k + 1])
        if c1 - c0 <= MAX_MEMBER and u1 - u0 <= MAX_MEMBER:
            return [Member(c0, c1, u0, u1)]  # one member (every member a checkpoint) or a run small enough to send whole
        if k not in self._walked:
            self._walked[k] = walk_members(self.co.url, self.read(c0, c1), c0, u0, u1)
        return self._walked[k]


def walk_members(url: str, raw: bytes, at: int, first: int, stop: int) -> list[Member]:
    """The members of ``raw`` (the object's bytes from ``at``), decoding to ``[first, stop)``: each cut by
    its header's block size and sized by its ``ISIZE`` trailer."""
    members, pos, decoded = [], 0, first
    while pos < len(raw):
        xlen = int.from_bytes(raw[pos + 10 : pos + 12], "little")
        size = bgzf_block_size(raw[pos : pos + 12 + xlen])
        if size is None or size < 28 or pos + size > len(raw):
            raise InvalidFormatError(url, "not a whole BGZF member where the checkpoint index says one starts", offset=at + pos)
        length = int.from_bytes(raw[pos + size - 4 : pos + size], "little")
        members.append(Member(at + pos, at + pos + size, decoded, decoded + length))
        pos, decoded = pos + size, decoded + length
    if decoded != stop:
        raise CorruptIndexError(url, f"the BGZF members from byte {at} decode to {decoded - first} bytes, the checkpoint index says {stop - first}")
    return members


def format_name(co: Any) -> str:
    """``"BAM"`` or ``"VCF"``: the htsget data format of ``co``; :class:`UnsupportedFormatError` otherwise,
    and for an object that is not BGZF-compressed (htsget's byte ranges are BGZF members)."""
    name = co.format.name
    if name not in MEDIA_TYPES:
        raise UnsupportedFormatError(co.url, f"htsget serves BAM and VCF objects, not {name}")
    compression = getattr(co.attributes, "compression", "bgzf")
    if compression != "bgzf":
        raise UnsupportedFormatError(co.url, f"htsget serves BGZF-compressed {name} (bgzip, samtools), not {compression}: recompress it with bgzip")
    return name


def checkpoint_table(co: Any) -> CheckpointTable:
    """The BGZF codec's checkpoint table of ``co``'s loaded index."""
    codec = get_codec("bgzf")
    logical = int(co.attributes.uncompressed_size)
    return codec.checkpoints(co.url, CodecIndex.of_sidecar(co.index(), codec.name, logical), co.index().object_info.size)


def header_bytes(piece: Any) -> bytes:
    """The decoded header a slice carries: BAM's binary header, VCF's text."""
    binary = getattr(piece, "header_bytes", None)
    return binary() if callable(binary) else piece.header.encode("utf-8")


def region_string(name: str, start: int | None, end: int | None) -> str:
    """The 1-based inclusive region (``"chr1:101-200"``) of htsget's 0-based half-open ``[start, end)``."""
    if start is None and end is None:
        return name
    return f"{name}:{(start or 0) + 1}" + (f"-{end}" if end is not None else "")


def _position(url: str, what: str, value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_POSITION:
        raise HtsgetError(url, f"{what} must be a 32-bit unsigned integer, got {value!r}")
    return value


def ticket(
    co: Any,
    reference_name: str | None = None,
    start: int | None = None,
    end: int | None = None,
    *,
    url: str | None = None,
    header_only: bool = False,
    headers: dict[str, str] | None = None,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> dict[str, Any]:
    """The htsget 1.3 ticket ``{"htsget": {"format": "BAM" | "VCF", "urls": [...]}}`` of an opened,
    indexed BGZF BAM or VCF: the records overlapping ``reference_name`` from ``start`` (0-based) to ``end``
    (exclusive), the whole file when no reference is given, or the header alone (``header_only``).

    Body ranges name ``url`` (an HTTP(S) URL serving the object's bytes with ``Range``; default: the
    object's own URL when it is HTTP(S), with an ``If-Match`` of its indexed ETag when the server gave a
    strong one, so that a replaced object fails rather than mixing bytes), carry ``headers`` beside
    ``Range``, and are split into blocks of at most ``block_bytes``. Errors are :class:`HtsgetError`
    subclasses that carry the protocol's error type."""
    data_format = format_name(co)
    start, end = _position(co.url, "start", start), _position(co.url, "end", end)
    if reference_name is None and (start is not None or end is not None):
        raise HtsgetError(co.url, "start and end need a reference name")
    if start is not None and end is not None and start > end:
        raise InvalidRangeError(co.url, f"start {start} is after end {end}")
    if not isinstance(block_bytes, int) or block_bytes < 1:
        raise HtsgetError(co.url, f"block_bytes must be a positive integer, got {block_bytes!r}")
    first_slice = co.partition("partition_num_chunks", 1)[0]
    header = header_bytes(first_slice)
    body: tuple[int, int] | None = None
    trim: Trim | None = None
    if header_only:
        pass
    elif reference_name is None:
        body = (len(header), int(co.attributes.uncompressed_size))
    else:
        empty = start is not None and start == end
        region = region_string(reference_name, None if empty else start, None if empty else end)
        try:
            region_slice = co.partition("partition_regions", [region])[0]
        except StrategyArgumentError as exc:
            declared = _DECLARED[data_format].findall(first_slice.header)
            if reference_name not in declared:
                raise ReferenceNotFoundError(co.url, f"no reference {reference_name!r} in the file ({exc.cause})") from None
            raise HtsgetError(co.url, exc.cause) from None
        span = region_slice.byte_range()
        body = None if empty or span is None else (int(span[0]), int(span[1]))
        trim = region_trim(data_format, region_slice)
    members = Members(co, checkpoint_table(co))
    ranges = Ranges(co, url, dict(headers or {}), block_bytes, members.info)
    urls = header_urls(data_format, header, members, ranges)
    if body is not None and body[1] > body[0]:
        urls += body_urls(data_format, len(header), body, members, ranges, trim)
    urls.append(data_url(data_format, BGZF_EOF, "body"))
    return {"htsget": {"format": data_format, "urls": urls}}


class Ranges:
    """Ticket blocks of object byte ranges: ``url`` (default: the object's own HTTP(S) URL, pinned with
    ``If-Match`` to its indexed ETag when that is a strong one) with ``headers`` and a ``Range``, a block per
    ``block_bytes`` at most."""

    def __init__(self, co: Any, url: str | None, headers: dict[str, str], block_bytes: int, info: Any) -> None:
        self.co_url, self.url, self.headers, self.block_bytes = co.url, url, headers, block_bytes
        if url is None and co.url.startswith(("http://", "https://")):
            self.url = co.url
            kind, _, value = info.identity.partition(":")
            if kind == "etag" and not value.startswith("W/"):
                self.headers = {"If-Match": value, **headers}

    def __call__(self, start: int, end: int, data_class: str) -> list[dict[str, Any]]:
        if self.url is None:
            raise HtsgetError(
                self.co_url, "the body ranges need an HTTP(S) URL serving the object: pass url= (dataplug serve passes its own /data/ URL)"
            )
        out = []
        for piece in range(start, end, self.block_bytes):
            span = {"Range": f"bytes={piece}-{min(piece + self.block_bytes, end) - 1}"}
            out.append({"url": self.url, "headers": {**self.headers, **span}, "class": data_class})
        return out


def header_urls(data_format: str, header: bytes, members: Members, ranges: Ranges) -> list[dict[str, Any]]:
    """The header's ticket blocks: inline; or, past :data:`INLINE_HEADER_MAX` when the object has a URL,
    the members that hold header bytes only as a range, then the rest of the header inline."""
    if len(header) > INLINE_HEADER_MAX and ranges.url is not None:
        last = members.at(len(header) - 1)
        if last.first > 0:
            return ranges(0, last.start, "header") + [data_url(data_format, bgzf_compress(header[last.first :]), "header")]
    return [data_url(data_format, bgzf_compress(header), "header")]


def region_trim(data_format: str, piece: Any) -> Trim | None:
    """The cut of a region slice's decoded edge pieces (whole records) to the region's records: those before
    the first record overlapping the region (``head``) and after the last (``tail``) go, whatever the
    index's blocks held beside them. A record overlaps as the format's region query says: samtools' for
    BAM (reference id, position, alignment end), tabix's for the text formats (the slice's ``span_of``)."""
    region = getattr(piece, "region", None)
    if region is None:
        return None
    if data_format == "BAM":
        from dataplug.formats.genomics.bam_records import alignment_ends, fixed_fields, walk

        _, tid, beg, end = region

        def bam_records(data: bytes) -> tuple[np.ndarray, np.ndarray]:
            buf = np.frombuffer(data, np.uint8)
            at, stop, incomplete = walk(piece.url, buf, 0, 0, len(data))
            if incomplete or stop != len(data):
                raise CorruptIndexError(
                    piece.url, "a region's edge member does not hold whole BAM records where the index says; run preprocess(force=True)"
                )
            fixed = fixed_fields(buf, at)
            inside = (fixed["ref"] == tid) & (fixed["pos"] < end) & (alignment_ends(buf, at, fixed) > beg)
            return np.append(at, len(data)), inside

        return functools.partial(_cut, bam_records)
    span_of = getattr(piece, "span_of", None)
    if not callable(span_of):
        return None
    chrom, beg, end = region

    def overlaps(line: bytes) -> bool:
        try:
            seq, first, last = span_of(line.decode("utf-8").rstrip("\r\n"))
        except (ValueError, IndexError, UnicodeDecodeError):
            return True  # not a record the region could leave out: kept
        return bool(seq == chrom and first <= end and last >= beg)

    def text_records(data: bytes) -> tuple[np.ndarray, np.ndarray]:
        lines = data.splitlines(keepends=True)
        bounds = np.cumsum([0] + [len(line) for line in lines])
        return bounds, np.array([overlaps(line) for line in lines], bool)

    return functools.partial(_cut, text_records)


def _cut(records: Callable[[bytes], tuple[np.ndarray, np.ndarray]], data: bytes, head: bool, tail: bool) -> bytes:
    """``data`` without the records before the first that ``records`` marks inside (``head``) and after the
    last (``tail``); ``records`` gives the record bounds (n + 1) and the marks (n)."""
    bounds, inside = records(data)
    hits = np.flatnonzero(inside)
    if not hits.size:
        return b""
    return data[int(bounds[hits[0]]) if head else 0 : int(bounds[hits[-1] + 1]) if tail else len(data)]


def body_urls(
    data_format: str, header_length: int, body: tuple[int, int], members: Members, ranges: Ranges, trim: Trim | None = None
) -> list[dict[str, Any]]:
    """Ticket blocks of the decoded range ``body`` (whole records, after the header's ``header_length``
    bytes): the members between its first and last as byte ranges; the first and last members inline,
    re-compressed, when the range starts or ends inside them (a member shared with the header, a record
    that begins in the member before or goes on in the next), so that no header byte repeats and no
    partial record is sent. ``trim`` cuts those inline pieces to the region's records."""
    a, b = max(body[0], header_length), body[1]

    def inline(data: bytes, head: bool, tail: bool) -> list[dict[str, Any]]:
        data = trim(data, head, tail) if trim is not None else data
        return [data_url(data_format, bgzf_compress(data), "body")] if data else []

    first, last = members.at(a), members.at(b - 1)
    cut_first, cut_last = a != first.first, b != last.stop
    edges = list(dict.fromkeys(m for m, cut in ((first, cut_first), (last, cut_last)) if cut))  # the members a cut falls inside
    decoded = dict(zip(edges, members.decode(edges)))
    out: list[dict[str, Any]] = []
    if first == last and (cut_first or cut_last):
        return inline(decoded[first][a - first.first : b - first.first], True, True)
    start, end = first.start, last.end
    if cut_first:
        out += inline(decoded[first][a - first.first :], True, False)
        start = first.end
    if cut_last:
        end = last.start
    size = members.info.size
    if end == size and end - start >= len(BGZF_EOF) and members.read(size - len(BGZF_EOF), size) == BGZF_EOF:
        end -= len(BGZF_EOF)  # the ticket ends with its own end-of-file block
    if end > start:
        out += ranges(start, end, "body")
    if cut_last:
        out += inline(decoded[last][: b - last.first], False, True)
    return out
