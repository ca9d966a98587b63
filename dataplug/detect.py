"""Format detection: which dataplug format reads an object, from its first bytes (decoded when compressed).

Each format recognises itself: detection decodes the object's first bytes with the codec found under them
(gzip, BGZF, zstd, bzip2, or none) and asks every format's :meth:`~dataplug.format.DataFormat.sniff` hook,
most specific first (by ``sniff_priority``), plugin formats included; the first answer wins. What no format
claims is named when it can be (a Parquet or HDF5 file, a BAM not in BGZF, a compressed binary format) in an
:class:`InvalidFormatError`.
"""

from __future__ import annotations

import warnings

from dataplug.codecs.base import detect_codec, get_codec
from dataplug.errors import DataplugError, FormatDetectionWarning, InvalidFormatError
from dataplug.format import DataFormat, Detection, Sample, available_formats, get_format
from dataplug.storage import ObjectInfo, StorageObject

__all__ = ["Detection", "detect_format", "sniff", "wrong_format_hint"]

#: Raw bytes read from the object's start; the decoded sample sniffed for text formats.
HEAD_BYTES = 64 * 1024
SAMPLE_BYTES = 32 * 1024
#: Magic bytes of binary files, named so that a wrong guess says what the object is.
_MAGICS = {
    b"LASF": "a LAS/LAZ point cloud",
    b"II*\x00": "a TIFF image",
    b"MM\x00*": "a TIFF image",
    b"II+\x00": "a TIFF image",
    b"MM\x00+": "a TIFF image",
    b"PAR1": "a Parquet file",
    b"\x89HDF\r\n\x1a\n": "an HDF5 file",
    b"PK\x03\x04": "a ZIP archive",
    b"\x89PNG\r\n\x1a\n": "a PNG image",
    b"%PDF": "a PDF document",
    b"ARROW1": "an Arrow IPC file",
}


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
    codec = detect_codec(raw)
    decoded = get_codec(codec).head(url, raw, SAMPLE_BYTES) if codec != "none" else raw[:SAMPLE_BYTES]
    if codec not in ("none", "bgzf") and decoded.startswith(b"BAM\x01"):
        raise InvalidFormatError(url, f"this is a {codec}-compressed BAM file; a BAM is BGZF-compressed (samtools view -b writes one)", offset=0)
    body = decoded[3:] if decoded.startswith(b"\xef\xbb\xbf") else decoded
    sample = Sample(raw, codec, body, complete and len(decoded) < SAMPLE_BYTES)
    for data_format in sniffers():
        try:
            found = data_format.sniff(sample)
        except Exception as exc:  # noqa: BLE001 - a plugin's broken hook must not stop detection of every object
            warnings.warn(f"{url}: format {data_format.name}'s sniff() failed ({type(exc).__name__}: {exc}); skipped", FormatDetectionWarning, stacklevel=3)
            continue
        if found is not None:
            return found
    kind = binary_kind(decoded)
    if kind is not None and codec != "none":
        raise InvalidFormatError(url, f"this object is {codec}-compressed {kind}: dataplug reads that format only uncompressed", offset=0)
    if kind is not None:
        raise InvalidFormatError(url, f"this object is {kind}, which no installed dataplug format reads", offset=0)
    if b"\x00" in decoded:
        raise InvalidFormatError(url, "binary data (NUL bytes) that no dataplug format recognises", offset=decoded.index(b"\x00"))
    raise InvalidFormatError(url, "no dataplug format recognises the object's first bytes", offset=0)


def folder_object(folder: StorageObject) -> tuple[type[DataFormat], StorageObject] | None:
    """For a URL that is a folder: the first format whose data is a folder and whose object is in it (a
    MeasurementSet's ``table.dat``), with that object; ``None`` when no format claims the folder."""
    for data_format in sniffers():
        if not data_format.names_folders():
            continue
        inner = StorageObject(data_format.object_url(folder.url), folder.storage_options)
        if inner.url != folder.url and inner.exists():
            return data_format, inner
    return None


def sniffers() -> list[type[DataFormat]]:
    """Every available format that defines :meth:`~dataplug.format.DataFormat.sniff`, most specific first.
    A built-in format whose extra is not installed (``laspy`` for LiDAR, ...) is left out."""
    found: list[type[DataFormat]] = []
    for name in available_formats():
        try:
            data_format = get_format(name)
        except ImportError:
            continue
        except Exception as exc:  # noqa: BLE001 - an entry point that fails to load leaves the others usable
            warnings.warn(f"format {name!r} could not be loaded for detection ({type(exc).__name__}: {exc})", FormatDetectionWarning, stacklevel=3)
            continue
        if "sniff" in vars(data_format) and data_format not in found:
            found.append(data_format)
    return sorted(found, key=lambda f: (-f.sniff_priority, f.name))


def binary_kind(head: bytes) -> str | None:
    """A short description of a binary format's magic bytes at the start of ``head`` (``"a LAS/LAZ point
    cloud"``), or ``None`` when none is recognised."""
    return next((what for magic, what in _MAGICS.items() if head.startswith(magic)), None)


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
