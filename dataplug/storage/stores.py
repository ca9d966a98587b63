"""What each store supports and how it is read: one :class:`StorePolicy` per protocol, and the transports.

The policy is the one place that knows a store's costs and abilities: how far apart two ranges may be and
still be read in one request (``max_gap``), how large one request may grow (``max_block``), how many requests
run at once (``concurrency``), and, like zarr's ``Store.supports_*``, whether the store takes writes, lists,
deletes and pins reads to one version of an object. Formats never choose gap sizes: they list the ranges they
need and :meth:`dataplug.storage.StorageObject.read_ranges` plans the requests with the store's policy.
"""

from __future__ import annotations

from dataclasses import dataclass

KiB = 2**10
MiB = 2**20


@dataclass(frozen=True)
class StorePolicy:
    """How one kind of store is read, and what it supports."""

    #: Two asked ranges at most this many bytes apart are read in one request (the bytes between are fetched
    #: and dropped): worth it while the gap costs less to transfer than a request costs to start.
    max_gap: int
    #: No planned request grows past this many bytes by joining ranges, so a large read still runs in parallel.
    #: One asked range larger than this is read in one request of its own, never split.
    max_block: int
    #: Requests of one read in flight at once.
    concurrency: int
    #: Objects can be written (an index can be built beside the data). False: the location is read-only, such as
    #: an index published over HTTP.
    supports_writes: bool
    #: The children of a folder can be listed.
    supports_listing: bool
    #: Objects can be deleted.
    supports_deletes: bool
    #: A read can be bound to the indexed version of the object, so a replaced object fails the read itself
    #: (S3 ``If-Match``/``VersionId``, HTTP ``If-Match``; locally the identity of the opened file) and needs no
    #: metadata request before it. A store without it checks the object's identity once per operation.
    supports_pinning: bool


#: Local files: a request is a ``pread`` on one open descriptor, a few microseconds, so only near ranges join.
#: 4 KiB keeps a LAS window slice's decode factor (points read per point kept) at 1.09-1.16 where 16 KiB reads
#: 1.40-2.07 (``python benchmarks/lidar.py --points 20000000 --orders scan --formats las --factors --gaps 4096,16384``).
LOCAL = StorePolicy(
    max_gap=4 * KiB,
    max_block=64 * MiB,
    concurrency=1,
    supports_writes=True,
    supports_listing=True,
    supports_deletes=True,
    supports_pinning=True,
)
#: Object stores and web servers: a request waits about 30 ms for its first byte and then streams about
#: 90 MB/s per connection (AWS's S3 performance guidelines), so skipping up to ~2.7 MB costs less than a second
#: request; 1 MiB leaves room for slower links. A block of 16 MiB keeps a large read split into parallel requests.
REMOTE_GAP = 1 * MiB
REMOTE_BLOCK = 16 * MiB
#: Concurrent requests of one read on a remote store.
REMOTE_CONCURRENCY = 32

S3 = StorePolicy(
    max_gap=REMOTE_GAP,
    max_block=REMOTE_BLOCK,
    concurrency=REMOTE_CONCURRENCY,
    supports_writes=True,
    supports_listing=True,
    supports_deletes=True,
    supports_pinning=True,
)
#: GCS: generation pinning is not implemented (gcsfs is not among the tested dependencies), so reads check the
#: object's identity once per operation.
GCS = StorePolicy(
    max_gap=REMOTE_GAP,
    max_block=REMOTE_BLOCK,
    concurrency=REMOTE_CONCURRENCY,
    supports_writes=True,
    supports_listing=True,
    supports_deletes=True,
    supports_pinning=False,
)
#: HTTP(S): read-only (a published index is read over it), pinned with ``If-Match`` when the server sends a strong ETag.
HTTP = StorePolicy(
    max_gap=REMOTE_GAP,
    max_block=REMOTE_BLOCK,
    concurrency=REMOTE_CONCURRENCY,
    supports_writes=False,
    supports_listing=False,
    supports_deletes=False,
    supports_pinning=True,
)
#: fsspec's in-memory filesystem: every range is a slice of a bytes object.
MEMORY = StorePolicy(
    max_gap=4 * KiB,
    max_block=64 * MiB,
    concurrency=1,
    supports_writes=True,
    supports_listing=True,
    supports_deletes=True,
    supports_pinning=False,
)
#: Any other fsspec protocol: taken as remote, with the capabilities fsspec's interface offers.
DEFAULT = StorePolicy(
    max_gap=REMOTE_GAP,
    max_block=REMOTE_BLOCK,
    concurrency=REMOTE_CONCURRENCY,
    supports_writes=True,
    supports_listing=True,
    supports_deletes=True,
    supports_pinning=False,
)

#: The policy of each protocol (:func:`policy_for` falls back to :data:`DEFAULT`).
POLICIES: dict[str, StorePolicy] = {
    "file": LOCAL,
    "local": LOCAL,
    "s3": S3,
    "s3a": S3,
    "gs": GCS,
    "gcs": GCS,
    "http": HTTP,
    "https": HTTP,
    "memory": MEMORY,
}


def policy_for(protocol: str) -> StorePolicy:
    """The policy of a protocol (``"s3"``, ``"file"``...), :data:`DEFAULT` for one without its own."""
    return POLICIES.get(protocol, DEFAULT)
