"""Checkpoint windows: the 32 KiB of output before a checkpoint, kept sparse and zlib-compressed.

A window only needs the bytes that later back-references reach (as in rapidgzip): ``sparse_window`` zeroes
the others, which makes a window compress several times smaller. The sidecar keeps all windows
in one blob (``WINDOWS_BLOB``); ``unpack_window`` turns a stored one back into a window, CRC-checked and bounded.
"""

from __future__ import annotations

import zlib

import numpy as np

from dataplug.codecs.gzip.index import WINDOW_SIZE, Checkpoint
from dataplug.codecs.gzip.inflate import inflate_from
from dataplug.errors import CorruptIndexError, InvalidFormatError

#: The sidecar blob that holds every checkpoint's stored window.
WINDOWS_BLOB = "windows"
_WINDOW_LEVEL = 6  # zlib level for stored windows
AHEAD = 128 * 1024  # compressed bytes after a checkpoint kept to make its window sparse


def sparse_window(window: bytes, ahead: bytes, bits: int) -> bytes:
    """``window`` with every byte zeroed that no back-reference in the next 32 KiB of output reaches
    (decoding from the checkpoint never reads those), or ``window`` itself when ``ahead`` (the compressed
    bytes from the byte holding the checkpoint's first bit) decodes to less than 32 KiB.

    Python's zlib cannot list back-references, so the data is decoded three times with marker windows
    instead: with ``i & 255`` and ``~i & 255`` at position i, an output byte that comes from the window
    differs between the two decodes (and is the low byte of its source), a literal does not; with
    ``i >> 8`` it gives the source's high byte. That is three decodes of 32 KiB per checkpoint of a pass
    that decodes 1.5 to 4 MiB between checkpoints.
    """
    n = len(window)
    position = np.arange(n)
    outputs = []
    for marker in (position & 255, ~position & 255, position >> 8):
        checkpoint = Checkpoint(1 if bits else 0, bits, 0, marker.astype(np.uint8).tobytes())
        out = bytearray()
        try:
            for chunk in inflate_from(ahead, checkpoint, chunk_size=WINDOW_SIZE):
                out += chunk
                if len(out) >= WINDOW_SIZE:
                    break
        except InvalidFormatError:
            return window
        if len(out) < WINDOW_SIZE:
            return window
        outputs.append(np.frombuffer(out, np.uint8, WINDOW_SIZE))
    low, inverse, high = outputs
    source = high[low != inverse].astype(np.int64) * 256 + low[low != inverse]
    kept = np.zeros(n, np.uint8)
    kept[source] = np.frombuffer(window, np.uint8)[source]
    return kept.tobytes()


def pack_window(window: bytes, ahead: bytes, bits: int) -> bytes:
    """The stored form of a checkpoint's window: sparse, then zlib-compressed."""
    return zlib.compress(sparse_window(window, ahead, bits), _WINDOW_LEVEL)


def checked_window(url: str, stored: bytes, crc32: int) -> bytes:
    """``stored`` (a stored window cut from the windows blob), once it matches its CRC-32 in the index."""
    if zlib.crc32(stored) != crc32:
        raise CorruptIndexError(url, "a gzip checkpoint window does not match its CRC-32 in the index")
    return stored


def unpack_window(url: str, stored: bytes, crc32: int | None = None) -> bytes:
    """A checkpoint's window from its stored form: checked against ``crc32`` (the index's, when given) and
    decompressed into at most 32 KiB (a crafted blob is a :class:`CorruptIndexError`, never a zlib bomb)."""
    if crc32 is not None:
        checked_window(url, stored, crc32)
    d = zlib.decompressobj()
    try:
        window = d.decompress(stored, WINDOW_SIZE)
    except zlib.error as exc:
        raise CorruptIndexError(url, f"a gzip checkpoint window does not decompress: {exc}") from None
    if not d.eof or d.unconsumed_tail or d.unused_data:
        raise CorruptIndexError(url, f"a gzip checkpoint window is not one zlib stream of at most {WINDOW_SIZE} bytes")
    return window
