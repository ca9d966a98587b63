"""Format detection: which dataplug format reads an object, from its first bytes (decoded when compressed).

Binary formats are recognised by their magic bytes (LAS/LAZ and COPC, TIFF, BAM); anything a codec
decodes (gzip, BGZF, ...) is decoded first and its text sniffed: VCF's ``##fileformat=VCF`` line, FASTA's
``>``, FASTQ's four-line ``@``/``+`` rhythm, CSV's consistent delimiter, and UTF-8 text for the rest. The
result names the most specific format and says how to pick another one.
"""

from __future__ import annotations

import csv
import io
import warnings
from dataclasses import dataclass

from dataplug.codecs.base import detect_codec, get_codec
from dataplug.errors import DataplugError, FormatDetectionWarning, InvalidFormatError
from dataplug.format import available_formats, get_format
from dataplug.storage import ObjectInfo, StorageObject

#: Raw bytes read from the object's start; the decoded sample sniffed for text formats.
HEAD_BYTES = 64 * 1024
SAMPLE_BYTES = 32 * 1024
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
#: Magic bytes of binary files no dataplug format reads, named so a wrong guess says what the object is.
_FOREIGN_MAGICS = {
    b"PAR1": "a Parquet file",
    b"\x89HDF\r\n\x1a\n": "an HDF5 file",
    b"PK\x03\x04": "a ZIP archive",
    b"\x89PNG\r\n\x1a\n": "a PNG image",
    b"%PDF": "a PDF document",
    b"ARROW1": "an Arrow IPC file",
}
_CSV_DELIMITERS = ",\t;|"


@dataclass(frozen=True)
class Detection:
    """What :func:`detect_format` chose and why."""

    #: Registered format name (``get_format`` takes it).
    format: str
    #: The codec under it: ``"none"``, ``"gzip"``, ``"bgzf"``, ...
    codec: str
    #: One line of evidence, e.g. ``"starts with 'LASF'"``.
    reason: str
    #: Other formats that also read this object (pass one as the format to override the choice).
    alternatives: tuple[str, ...] = ()
    #: Options the sniffing found (e.g. a CSV ``delimiter``), to pass to ``preprocess``.
    options: tuple[tuple[str, object], ...] = ()

    def describe(self, override: bool = True) -> str:
        """``CSV (gzip-compressed; 4 columns separated by ','); override with format='UTF8Text'`` (without
        the last part unless ``override``)."""
        codec = "" if self.codec == "none" else f"{self.codec}-compressed; "
        others = f"; override with format={self.alternatives[0]!r}" if self.alternatives and override else ""
        return f"{self.format} ({codec}{self.reason}){others}"


def detect_format(obj: StorageObject, info: ObjectInfo | None = None) -> Detection:
    """The format of ``obj``, from one range read of its first :data:`HEAD_BYTES` (two when its codec
    needs more to decode a sample, as bzip2 does).

    Raises :class:`InvalidFormatError` for bytes no dataplug format reads (naming what they look like).
    """
    info = info or obj.info()
    raw = obj.read_range(0, min(info.size, HEAD_BYTES)) if info.size else b""
    wanted = min(info.size, get_codec(detect_codec(raw)).head_bytes(SAMPLE_BYTES))
    if len(raw) < wanted:  # a codec that decodes whole blocks only (bzip2)
        raw = obj.read_range(0, wanted)
    detection = sniff(obj.url, raw, complete=info.size <= len(raw))
    if detection.format in ("UTF8Text", "CSV") and "few lines" in detection.reason:
        warnings.warn(f"{obj.url}: detected {detection.describe()}", FormatDetectionWarning, stacklevel=3)
    return detection


def sniff(url: str, raw: bytes, complete: bool = False) -> Detection:
    """:func:`detect_format` on the object's first bytes ``raw`` (``complete`` when that is all of it)."""
    binary = binary_kind(raw)
    if binary is not None:
        return _binary(url, raw, binary)
    codec = detect_codec(raw)
    head = get_codec(codec).head(url, raw, SAMPLE_BYTES) if codec != "none" else raw[:SAMPLE_BYTES]
    if codec != "none" and head.startswith(b"BAM\x01"):
        raise InvalidFormatError(url, "this is a BAM file (BGZF-compressed binary alignments), which dataplug does not read yet", offset=0)
    inner = binary_kind(head)
    if inner is not None:
        raise InvalidFormatError(url, f"this object is {codec}-compressed {inner}: dataplug reads that format only uncompressed", offset=0)
    text = _text_kind(url, head, complete and len(head) < SAMPLE_BYTES)
    return Detection(text.format, codec, text.reason, text.alternatives, text.options)


def binary_kind(head: bytes) -> str | None:
    """A short description of a binary format's magic bytes at the start of ``head`` (``"a LAS/LAZ point
    cloud"``), or ``None`` when none is recognised."""
    if head.startswith(b"LASF"):
        return "a COPC point cloud" if _is_copc(head) else "a LAS/LAZ point cloud"
    if head.startswith(_TIFF_MAGICS):
        return "a TIFF image"
    for magic, what in _FOREIGN_MAGICS.items():
        if head.startswith(magic):
            return what
    return None


def wrong_format_hint(url: str, raw: bytes, chosen: str) -> str | None:
    """A hint for an object that ``chosen`` failed to read: what its bytes look like instead, and how to
    let dataplug choose (``None`` when detection agrees with ``chosen`` or finds nothing better)."""
    try:
        found = sniff(url, raw)
    except DataplugError as exc:
        return exc.cause
    if found.format == "UTF8Text" or chosen in found.alternatives or _related(found.format, chosen):
        return None
    return f"the object looks like {found.describe(override=False)}; try format='auto' (--format auto on the command line)"


def _related(a: str, b: str) -> bool:
    """One format derives from the other (``FASTQGZip`` is ``FASTQ`` by its original name)."""
    fa, fb = get_format(a), get_format(b)
    return issubclass(fa, fb) or issubclass(fb, fa)


def _is_copc(head: bytes) -> bool:
    """COPC puts its info VLR first, right after a 375-byte LAS 1.4 header: user id ``copc`` at byte 377."""
    return len(head) >= 393 and head[377:393].rstrip(b"\x00") == b"copc"


def _binary(url: str, raw: bytes, kind: str) -> Detection:
    formats = set(available_formats())
    if kind.startswith("a COPC") and "COPC" in formats:
        return Detection("COPC", "none", "starts with 'LASF' and a COPC info VLR", ("LiDARPointCloud",))
    if kind.startswith(("a COPC", "a LAS")):
        return Detection("LiDARPointCloud", "none", "starts with 'LASF'")
    if kind == "a TIFF image" and "COG" in formats:
        return Detection("COG", "none", "starts with a TIFF byte-order mark")
    raise InvalidFormatError(url, f"this object is {kind}, which no installed dataplug format reads", offset=0)


@dataclass(frozen=True)
class _TextKind:
    format: str
    reason: str
    alternatives: tuple[str, ...] = ()
    options: tuple[tuple[str, object], ...] = ()


def _text_kind(url: str, head: bytes, complete: bool) -> _TextKind:
    if b"\x00" in head:
        raise InvalidFormatError(url, "binary data (NUL bytes) that no dataplug format recognises", offset=head.index(b"\x00"))
    body = head[3:] if head.startswith(b"\xef\xbb\xbf") else head
    text = body.decode("utf-8", errors="replace")
    lines = text.splitlines()
    if not complete and lines and not text.endswith(("\n", "\r")):
        lines = lines[:-1]  # the sample cut the last line short
    if not lines:
        return _TextKind("UTF8Text", "empty, or one unfinished line", ("CSV",))
    if body.startswith(b"##fileformat=VCF"):
        return _TextKind("VCF", "starts with '##fileformat=VCF'", ("UTF8Text",))
    if body.lstrip().startswith(b"<?xml") and (b"<mzML" in body or b"imzML" in body) and "ImzML" in available_formats():
        return _TextKind("ImzML", "an imzML XML document", ("UTF8Text",))
    if body.startswith(b">"):
        return _TextKind("FASTA", "starts with a '>' sequence header", ("UTF8Text",))
    if _fastq_rhythm(lines):
        return _TextKind("FASTQ", "records of four lines, '@' name and '+' separator", ("UTF8Text",))
    csv_kind = _csv_kind(lines, complete)
    if csv_kind is not None:
        return csv_kind
    return _TextKind("UTF8Text", f"text with no consistent delimiter over {len(lines)} lines", ("CSV",))


def _fastq_rhythm(lines: list[str]) -> bool:
    records = [lines[i : i + 4] for i in range(0, len(lines) - len(lines) % 4, 4)] or [lines[:4]]
    return all(
        len(r) == 4 and r[0].startswith("@") and r[2].startswith("+") and len(r[1]) == len(r[3])
        for r in records
    )


def _csv_kind(lines: list[str], complete: bool) -> _TextKind | None:
    """CSV when some delimiter splits every sampled record into the same number (at least 2) of fields,
    quotes respected (a record may span lines); the delimiter with the most fields wins."""
    sample = "\n".join(lines[:200]) + "\n"
    best: tuple[int, str] | None = None
    for delimiter in _CSV_DELIMITERS:
        try:
            rows = [row for row in csv.reader(io.StringIO(sample), delimiter=delimiter) if row]
        except csv.Error:
            continue
        if not complete and len(rows) > 1:
            rows = rows[:-1]  # the sample may end inside a quoted field
        widths = {len(row) for row in rows}
        if len(widths) == 1 and (width := widths.pop()) >= 2 and (best is None or width > best[0]):
            best = (width, delimiter)
    if best is None:
        return None
    width, delimiter = best
    few = " (a few lines only)" if len(lines) < 3 else ""
    options = () if delimiter == "," else (("delimiter", delimiter),)
    return _TextKind("CSV", f"{width} columns separated by {delimiter!r} on {len(lines)} lines{few}", ("UTF8Text",), options)
