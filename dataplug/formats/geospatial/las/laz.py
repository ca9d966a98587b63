"""LAZ chunks: where each chunk of a LAZ point section lies, and decoding any set of chunks on its own.

A LAZ point section (LASzip) is an 8-byte offset to the chunk table, then chunks of compressed points that
each decode alone, then the chunk table: the byte size of every chunk and, for variable-size chunks, its
point count (fixed-size chunks all hold the LASzip VLR's chunk size, the last one the remainder). With the
table, a worker decodes only the chunks it needs. All parsing of the table and all decoding is lazrs's; this
module locates the table, checks it against the header and turns lazrs failures into dataplug errors.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from dataplug.errors import InvalidFormatError

try:
    import lazrs
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("LAZ support needs lazrs: pip install 'dataplug[lidar]'") from exc

#: Bytes of the chunk-table offset that starts a LAZ point section.
OFFSET_SIZE = 8
#: Decode only what bounds need (X, Y, Z); honoured by the layered point formats 6-10, ignored by 0-5.
XYZ_ONLY = lazrs.DecompressionSelection(lazrs.SELECTIVE_DECOMPRESS_XY_RETURNS_CHANNEL | lazrs.SELECTIVE_DECOMPRESS_Z)


@dataclass(frozen=True)
class ChunkTable:
    """The non-empty chunks of a LAZ point section: absolute byte start, byte size and point count of each."""

    starts: np.ndarray
    byte_counts: np.ndarray
    point_counts: np.ndarray
    #: Points per chunk for fixed-size chunks, 0 for variable-size chunks.
    chunk_size: int

    @property
    def ends(self) -> np.ndarray:
        return self.starts + self.byte_counts


def table_offset(url: str, data_start: int, size: int, head: bytes, tail: bytes) -> int:
    """Where the chunk table starts, found as laz-rs finds it: the offset stored in ``head`` (the point
    section's first 8 bytes) or, when a streaming writer left that unset, in ``tail`` (the object's last 8).

    :class:`InvalidFormatError` when the object is truncated or has no usable table. dataplug does not fall
    back to a sequential pass: without the table no chunk can be decoded on its own, so every slice would
    decode the object from its start.
    """
    if len(head) != OFFSET_SIZE:
        raise InvalidFormatError(url, "truncated LAZ: the point section ends before its chunk-table offset", offset=data_start)
    chunks_start = data_start + OFFSET_SIZE
    stored = struct.unpack("<q", head)[0]
    if stored >= size:
        raise InvalidFormatError(url, f"truncated LAZ: the chunk table should start at byte {stored}, past the object's end ({size} bytes)", offset=data_start)
    if stored >= chunks_start:
        return stored
    trailing = struct.unpack("<q", tail)[0] if len(tail) == OFFSET_SIZE else -1
    if chunks_start <= trailing < size - OFFSET_SIZE:
        return trailing
    raise InvalidFormatError(
        url,
        "LAZ without a usable chunk table (its offset was never written, as by a writer that streamed the file); "
        "dataplug needs the table to decode chunks independently: rewrite the file with laszip or laspy to add one",
        offset=data_start,
    )


def read_table(url: str, laszip_vlr: bytes, table: bytes, offset: int, data_start: int, point_count: int) -> ChunkTable:
    """The chunk table in ``table`` (the object's bytes from ``offset`` on), checked against the point section
    (the chunks end exactly where the table starts) and the header's point count. Empty chunks are dropped."""
    vlr = lazrs.LazVlr(laszip_vlr)
    chunks_start = data_start + OFFSET_SIZE
    # lazrs allocates what the table's count says (2^31 - 1 chunks in an 18 KB file: 34 GB, then SIGABRT, no
    # exception), so the count is checked first: LASzip stores each chunk's first point raw, so a chunk takes
    # at least one point record of the section (a few empty chunks aside).
    claimed = struct.unpack("<I", table[4:8])[0] if len(table) >= 8 else 0
    most = (offset - chunks_start) // max(vlr.item_size(), 1) + 16
    if claimed > most:
        raise InvalidFormatError(url, f"the LAZ chunk table claims {claimed} chunks; its {offset - chunks_start}-byte point section holds at most {most}", offset=offset)
    try:
        entries = lazrs.read_chunk_table_only(io.BytesIO(table), vlr)
    except Exception as exc:  # noqa: BLE001 - lazrs raises plain RuntimeErrors and IO errors
        raise InvalidFormatError(url, f"unreadable LAZ chunk table: {exc}", offset=offset) from None
    byte_counts = np.array([b for _, b in entries], dtype=np.int64)
    if int(byte_counts.sum()) != offset - chunks_start:
        raise InvalidFormatError(
            url,
            f"the LAZ chunk table does not match the point section: its {len(entries)} chunks total {int(byte_counts.sum())} bytes, "
            f"the section holds {offset - chunks_start}",
            offset=offset,
        )
    if vlr.uses_variable_size_chunks():
        chunk_size = 0
        point_counts = np.array([p for p, _ in entries], dtype=np.int64)
        if int(point_counts.sum()) != point_count:
            raise InvalidFormatError(
                url, f"the header's point count {point_count} disagrees with the LAZ chunk table, which holds {int(point_counts.sum())} points", offset=offset
            )
    else:
        chunk_size = int(vlr.chunk_size())
        if len(entries) != -(-point_count // chunk_size):
            raise InvalidFormatError(
                url,
                f"the header's point count {point_count} disagrees with the LAZ chunk table: its {len(entries)} chunks of {chunk_size} points "
                f"hold {max(len(entries) - 1, 0) * chunk_size + 1} to {len(entries) * chunk_size} points",
                offset=offset,
            )
        point_counts = np.full(len(entries), chunk_size, dtype=np.int64)
        point_counts[-1] = point_count - chunk_size * (len(entries) - 1)
    starts = chunks_start + np.concatenate(([0], np.cumsum(byte_counts)[:-1])).astype(np.int64)
    keep = point_counts > 0
    return ChunkTable(starts[keep], byte_counts[keep], point_counts[keep], chunk_size)


def decode_chunks(
    url: str,
    laszip_vlr: bytes,
    payload: bytes | bytearray | memoryview,
    point_counts: Sequence[int],
    byte_counts: Sequence[int],
    starts: Sequence[int],
    point_size: int,
    selection: lazrs.DecompressionSelection | None = None,
) -> bytearray:
    """Decode whole chunks laid end to end in ``payload`` (chunk ``i`` holds ``point_counts[i]`` points in
    ``byte_counts[i]`` bytes and starts at byte ``starts[i]`` of the object) into uncompressed point records.

    Chunks decode one by one on the calling thread, never on lazrs's parallel functions: those start rayon's
    global thread pool, which a ``fork``-started child inherits without its threads, so its next parallel
    call waits forever. lazrs holds the GIL, so threads do not overlap decoding: the index pass is slower
    than with rayon, and a process pool (``preprocess(executor=...)``) gives the speed back.
    A chunk that does not decode is an :class:`InvalidFormatError` with its byte offset.
    """
    out = bytearray(int(sum(point_counts)) * point_size)
    vlr = lazrs.LazVlr(laszip_vlr)
    source, target = memoryview(payload), memoryview(out)
    at = done = 0
    for n, b, start in zip(point_counts, byte_counts, starts):
        n, b = int(n), int(b)
        try:
            decoder = lazrs.LasZipDecompressor(_chunk_stream(source[at : at + b], n, vlr), laszip_vlr, selection)
            decoder.decompress_many(target[done : done + n * point_size])
        except Exception as exc:  # noqa: BLE001 - lazrs raises plain RuntimeErrors and IO errors
            raise InvalidFormatError(url, f"LAZ chunk of {n} points does not decode: {exc}", offset=int(start)) from None
        at, done = at + b, done + n * point_size
    return out


def _chunk_stream(chunk: memoryview, points: int, vlr: lazrs.LazVlr) -> io.BytesIO:
    """One chunk as the point section of a LAZ of its own, which lazrs's sequential decoder reads: the
    offset to the chunk table (relative to the section's start), the chunk, then its one-entry table."""
    stream = io.BytesIO()
    stream.write(struct.pack("<q", OFFSET_SIZE + len(chunk)))
    stream.write(chunk)
    lazrs.write_chunk_table(stream, [(points, len(chunk))], vlr)
    stream.seek(0)
    return stream
