"""Where decoding may start in a compressed object, for every codec whose data decodes from known places:
gzip checkpoints (BGZF member starts among them), zstd frames and bzip2 blocks.

A :class:`CheckpointTable` holds one row per checkpoint: the compressed offset where fetching for it begins
and the logical (decoded) offset it starts, plus one last row for the end of the data (where the compressed
data ends, and the logical size). It answers the questions every such codec asks the same way: which
checkpoint a logical offset decodes from (:meth:`~CheckpointTable.locate`), which compressed bytes a
logical range needs (:meth:`~CheckpointTable.fetch`), where decoding starts without waste
(:meth:`~CheckpointTable.cuts`), and whether a loaded index fits its object
(:meth:`~CheckpointTable.validate`). A codec keeps only how to decode from one checkpoint, and its own
columns (gzip's bit offsets and windows, bzip2's block bits), stored in the sidecar under their names.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from dataplug.errors import CorruptIndexError
from dataplug.storage import ObjectInfo, StorageObject

#: The compressed-to-logical ratio of the stretch a range ends in is multiplied by this when estimating
#: where the range's end lies in the compressed data: the data is rarely that much less compressible there
#: (a wrong estimate costs a second request, never wrong data).
ESTIMATE_SLACK = 1.25
#: Compressed bytes per request at most (a longer fetch is several, so memory stays bounded), and the
#: first request past the bytes surely needed (each next one four times larger, up to ``PIECE``).
PIECE, AHEAD = 16 * 2**20, 256 * 1024


class Fetch(NamedTuple):
    """The compressed bytes that decode a logical range: from checkpoint ``row``, whose data begins at
    ``start``; ``first_end`` is where the range probably ends (fetched first), ``end`` where it surely does."""

    row: int
    start: int
    first_end: int
    end: int


def column(url: str, what: str, tables: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    """Sidecar table ``name`` as int64, or a :class:`CorruptIndexError` naming ``url`` and ``what`` the index is
    when it is missing or not a 1-d array of integers."""
    if name not in tables:
        raise CorruptIndexError(url, f"bad {what}: table {name!r} missing")
    array = np.asarray(tables[name])
    if array.ndim != 1 or (array.size and array.dtype.kind not in "ui"):
        raise CorruptIndexError(url, f"bad {what}: table {name!r} must be a 1-d array of integers")
    return array.astype(np.int64)


@dataclass(frozen=True, eq=False)
class CheckpointTable:
    """Checkpoints of one object as numpy columns (see the module docstring).

    ``compressed[k]`` is the first object byte checkpoint ``k``'s data touches and ``logical[k]`` the decoded
    offset it starts; the last row is the end of the data. ``margin`` is how many bytes past the next
    checkpoint's ``compressed`` offset decoding up to that checkpoint may need (1 where checkpoints start
    mid-byte: gzip, bzip2). ``ahead`` is how many decoded bytes past a range's end the codec may need to
    decode before it yields the range's last byte (zstd decodes blocks in batches), for a first request
    that stops near the range's end; None fetches whole stretches between checkpoints (a bzip2 block
    decodes only whole). ``columns`` are the
    codec's own per-checkpoint columns.
    """

    compressed: np.ndarray
    logical: np.ndarray
    margin: int = 0
    ahead: int | None = None
    columns: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        """The number of checkpoints (the end row aside)."""
        return int(self.logical.size) - 1

    @property
    def logical_size(self) -> int:
        return int(self.logical[-1])

    @property
    def data_end(self) -> int:
        """The compressed offset where the data ends (before a zstd seek table, trailing padding...)."""
        return int(self.compressed[-1])

    @classmethod
    def of(
        cls,
        url: str,
        what: str,
        compressed: np.ndarray,
        logical: np.ndarray,
        *,
        margin: int = 0,
        ahead: int | None = None,
        columns: Mapping[str, np.ndarray] | None = None,
    ) -> CheckpointTable:
        """A table of ``compressed`` and ``logical`` offsets (the end row last) and the codec's ``columns``
        (one value per checkpoint); mismatched lengths are a :class:`CorruptIndexError` naming ``url``."""
        extra = dict(columns or {})
        if compressed.size != logical.size or logical.size < 1 or any(a.size != logical.size - 1 for a in extra.values()):
            raise CorruptIndexError(url, f"bad {what}: tables of mismatched lengths")
        return cls(compressed, logical, margin, ahead, extra)

    def validate(self, url: str, size: int, what: str, *, max_ratio: float, slack: int = 0, strict: bool = True) -> None:
        """Raise :class:`CorruptIndexError` naming ``url`` unless the table fits an object of ``size`` bytes:
        logical offsets from 0, increasing (``strict``: every checkpoint decodes to at least one byte)
        or never decreasing; compressed offsets never decreasing, inside the object; and no stretch
        decoding to more than ``max_ratio`` times its compressed bytes plus ``slack`` (the codec's most:
        a crafted index would drive allocations)."""
        c, u = self.compressed, self.logical

        def need(ok: object, why: str) -> None:
            if not ok:
                raise CorruptIndexError(url, f"bad {what}: {why}")

        need(u[0] == 0 and np.all(c >= 0), "checkpoint 0 must start the decoded stream")
        du, dc = np.diff(u), np.diff(c)
        need(np.all(du > 0) if strict else np.all(du >= 0), "decoded offsets must increase")
        need(np.all(dc >= 0) and c[-1] <= size and (len(self) == 0 or c[-2] < max(size, 1)), "offsets must increase inside the object")
        need(np.all(du <= max_ratio * dc + slack), "more decoded bytes than the codec can produce")

    def locate(self, offset: int) -> int:
        """The last checkpoint at or before logical ``offset`` (0 for an offset before every checkpoint)."""
        return max(int(np.searchsorted(self.logical[:-1], offset, side="right")) - 1, 0)

    def stop(self, row: int, end: int) -> int:
        """The first row after ``row`` at or after logical offset ``end`` (the end row at most): decoding from
        ``row`` reaches ``end`` with the data before that row's compressed offset."""
        return min(max(int(np.searchsorted(self.logical, end, side="left")), row + 1), len(self))

    def fetch(self, start: int, end: int) -> Fetch:
        """The compressed bytes that decode the logical range ``[start, end)``: from the checkpoint at or
        before ``start`` to the compressed offset of the first checkpoint at or after ``end`` (plus
        ``margin``), with an estimate of where ``end`` lies for a first, shorter request when the codec
        allows one (``ahead``)."""
        k = self.locate(start)
        j = self.stop(k, end)
        c, u = self.compressed, self.logical
        limit = min(int(c[j]) + self.margin, self.data_end) if j < len(self) else self.data_end
        first_end = limit
        if self.ahead is not None and end < u[j]:
            last = j - 1
            ratio = (c[j] - c[last]) / max(u[j] - u[last], 1)
            first_end = min(limit, int(c[last]) + int((end + self.ahead - u[last]) * ratio * ESTIMATE_SLACK) + 1)
        return Fetch(k, int(c[k]), max(first_end, int(c[k])), limit)

    def cuts(self) -> np.ndarray:
        """Logical offsets where a reader starts decoding without waste: the checkpoints'."""
        return self.logical[:-1]


def compressed_pieces(obj: StorageObject, info: ObjectInfo, start: int, first_end: int, end: int) -> Iterator[bytes]:
    """The object's bytes from ``start``: up to ``first_end`` (surely needed, e.g. a :class:`Fetch`'s
    estimate) in requests of at most :data:`PIECE`, then up to ``end`` in growing requests from
    :data:`AHEAD`, for as long as the consumer asks. The object's identity is checked with the first piece: a
    store that cannot pin reads asks for it once, not once a piece."""
    pos, ahead, checked = start, AHEAD, False
    while pos < end:
        if pos < first_end:
            stop = min(first_end, pos + PIECE)
        else:
            stop, ahead = min(end, pos + ahead), min(4 * ahead, PIECE)
        yield obj.read_range(pos, stop, expect=info, checked=checked)
        pos, checked = stop, True


def decoded_range(url: str, chunks: Iterable[bytes], skip: int, want: int, what: str) -> bytes:
    """The ``want`` decoded bytes after the first ``skip`` of ``chunks`` (a codec decoding from a checkpoint
    before the range); a :class:`CorruptIndexError` naming ``what`` index when the chunks end before them.

    The chunks must not change once yielded (decoders yield new ``bytes``): the range is kept as views of them
    and copied once at the end (slicing each chunk into a growing bytearray copied every byte three times)."""
    parts: list[memoryview] = []
    have = 0
    for chunk in chunks:
        if skip >= len(chunk):
            skip -= len(chunk)
            continue
        piece = memoryview(chunk)[skip : skip + want - have]
        parts.append(piece)
        have += len(piece)
        skip = 0
        if have == want:
            return b"".join(parts)
    raise CorruptIndexError(url, f"{have} of {want} decoded bytes after the checkpoint: the {what} does not match the object")
