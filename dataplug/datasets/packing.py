"""Packs: the indexes of a dataset's small objects, many to a file instead of a folder each.

A pack is a gzip-compressed JSON object ``{"dataplug_pack": 1, "objects": {url: manifest}}`` where each
manifest is the one :func:`dataplug.sidecar.inline_manifest` builds (every table and blob inline), so an
object's index in a pack is the same as its ``manifest.json`` would be in a folder of its own. A pack file is
written once, under a generation name of its dataset, and never rewritten: a later run writes new packs for
the objects it indexed and the dataset manifest names which pack holds each object.

Everything read back is bounded: a pack is read in one request of at most :data:`MAX_PACK_BYTES`, inflated to
at most :data:`MAX_PACK_JSON_BYTES`, and each manifest in it is validated as a manifest file is.
"""

from __future__ import annotations

import gzip
import json
import re
import zlib
from typing import Any

from dataplug.errors import CorruptIndexError, ObjectNotFoundError
from dataplug.executors import map_ordered
from dataplug.sidecar import check_manifest, parse_json
from dataplug.storage import StorageObject

PACK_VERSION = 1
#: A pack holds object manifests up to about this many bytes of JSON (it is cut after the object that passes it).
PACK_TARGET_BYTES = 8 * 2**20
#: Caps on reading a pack (it may have been written by someone else).
MAX_PACK_BYTES = 64 * 2**20
MAX_PACK_JSON_BYTES = 256 * 2**20
#: Pack file names: ``<dataset key>.<generation>.<n>.pack.json.gz``.
PACK_FILE = re.compile(r"^(?P<key>[0-9a-f]{16})\.(?P<generation>[0-9]{10,11}-[0-9a-f]{12})\.(?P<n>[0-9]{1,6})\.pack\.json\.gz$")


def pack_name(key: str, generation: str, n: int) -> str:
    return f"{key}.{generation}.{n}.pack.json.gz"


def write_packs(location: StorageObject, key: str, generation: str, manifests: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Write ``manifests`` (by object URL) as packs of about :data:`PACK_TARGET_BYTES` under ``location``,
    concurrently; returns the pack name of each object URL."""
    groups: list[dict[str, bytes]] = [{}]
    size = 0
    for url, manifest in manifests.items():
        text = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
        if size and size + len(text) > PACK_TARGET_BYTES:
            groups.append({})
            size = 0
        groups[-1][url] = text
        size += len(text)
    groups = [g for g in groups if g]
    where: dict[str, str] = {}

    def write(n: int) -> None:
        body = b"".join(
            [b'{"dataplug_pack":%d,"objects":{' % PACK_VERSION, b",".join(json.dumps(u).encode() + b":" + t for u, t in groups[n].items()), b"}}"]
        )
        location.child(pack_name(key, generation, n)).write_bytes(gzip.compress(body, compresslevel=6, mtime=0))

    map_ordered(write, range(len(groups)), progress=False)
    for n, group in enumerate(groups):
        where.update(dict.fromkeys(group, pack_name(key, generation, n)))
    return where


def read_pack(location: StorageObject, name: str) -> dict[str, dict[str, Any]]:
    """The object manifests in the pack ``name`` under ``location`` (one request), each validated.

    A missing, oversized or malformed pack is a :class:`CorruptIndexError` naming it.
    """
    pack = location.child(name)
    if PACK_FILE.match(name) is None:
        raise CorruptIndexError(pack.url, "not a dataplug pack file name")
    try:
        raw = pack.read_prefix(MAX_PACK_BYTES)
    except ObjectNotFoundError:
        raise CorruptIndexError(pack.url, "the pack the dataset manifest names is missing") from None
    if len(raw) > MAX_PACK_BYTES:
        raise CorruptIndexError(pack.url, f"pack exceeds the {MAX_PACK_BYTES}-byte limit")
    try:
        inflater = zlib.decompressobj(wbits=31)
        text = inflater.decompress(raw, MAX_PACK_JSON_BYTES)
        if inflater.unconsumed_tail:
            raise CorruptIndexError(pack.url, f"pack inflates beyond {MAX_PACK_JSON_BYTES} bytes")
        body = parse_json(text)
    except (zlib.error, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CorruptIndexError(pack.url, f"pack does not decode: {type(exc).__name__}: {str(exc)[:200]}") from None
    if not isinstance(body, dict) or body.get("dataplug_pack") != PACK_VERSION or not isinstance(body.get("objects"), dict):
        raise CorruptIndexError(pack.url, f"malformed pack (expected version {PACK_VERSION} with an 'objects' mapping)")
    for url, manifest in body["objects"].items():
        check_manifest(f"{pack.url}#{url}", manifest)
    return body["objects"]


def read_packs(location: StorageObject, names: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """:func:`read_pack` of each name, concurrently on a local thread pool."""
    found = map_ordered(lambda name: read_pack(location, name), names, progress=False)
    return dict(zip(names, found))
