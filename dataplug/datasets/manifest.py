"""The dataset manifest: which objects a dataset holds, as indexed, and where each one's index lives.

It lives in the dataset's index location (by default ``<folder>/_dataplug/``, the folder being the one the
glob, prefix or list of URLs is rooted in; see :mod:`dataplug.datasets.dataset`), as
``<name>.<key>.dataset.json``, where ``<key>`` is 16 hex digits of the SHA-256 of the dataset's canonical
pattern: several datasets over one folder (``*.csv`` and ``*.csv.gz``) keep manifests of their own there.
Layout::

    {"dataplug_dataset": 1, "dataplug_version": ..., "created": ..., "generation": ..., "pattern": ...,
     "objects": [{"url", "size", "identity", "format", "options", "pack" | "folder"}, ...],
     "packs": [pack file names the objects name],
     "superseded": [{"files": [pack file names], "superseded": <unix time>}, ...]}

An object's ``pack`` names the pack holding its index (:mod:`dataplug.datasets.packing`); a large object's
``folder`` names its own index folder in the same location (``<name>.<hash of its URL>.dataplug/``, as
:func:`dataplug.sidecar.object_index_folder` names it), written as any object's index is.

Writes go packs first and the manifest last, so a crash never leaves a manifest naming a missing pack. Packs a
new manifest no longer names are recorded as superseded and deleted by a later write once
:data:`dataplug.sidecar.GENERATION_GRACE` seconds have passed (a reader that read the old manifest may still be
reading them); packs of this dataset that no manifest names (a write that died) are deleted once as old.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from dataplug.datasets.packing import PACK_FILE
from dataplug.errors import CorruptIndexError, DataplugError, ObjectNotFoundError
from dataplug.sidecar import GENERATION_GRACE, INDEX_SUFFIX, canonical_url, parse_json
from dataplug.storage import ObjectInfo, StorageObject

DATASET_VERSION = 1
#: A dataset manifest is read in one request of at most this many bytes (about 200,000 objects).
MAX_DATASET_MANIFEST_BYTES = 64 * 2**20
_FOLDER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,200}" + re.escape(INDEX_SUFFIX) + "$")


def dataset_key(pattern: str) -> str:
    """16 hex digits naming a dataset's manifest and packs: the SHA-256 of its canonical pattern."""
    return hashlib.sha256(canonical_url(pattern).encode()).hexdigest()[:16]


def manifest_name(pattern: str) -> str:
    """``<readable tail of the pattern>.<key>.dataset.json``."""
    tail = re.sub(r"[^A-Za-z0-9_.-]", "_", pattern.rstrip("/").rsplit("/", 1)[-1]).strip("._")[:60] or "dataset"
    return f"{tail}.{dataset_key(pattern)}.dataset.json"


@dataclass(frozen=True)
class ObjectEntry:
    """One object of the manifest: its identity as indexed, its format and options, where its index is."""

    url: str
    info: ObjectInfo
    format: str
    options: dict[str, Any] = field(default_factory=dict)
    pack: str | None = None
    folder: str | None = None

    def to_json(self) -> dict[str, Any]:
        where = {"pack": self.pack} if self.pack is not None else {"folder": self.folder}
        return {"url": self.url, **self.info.to_json(), "format": self.format, "options": self.options, **where}


@dataclass
class DatasetManifest:
    """A dataset manifest as read (or about to be written)."""

    pattern: str
    objects: dict[str, ObjectEntry]  # by canonical URL
    generation: str = ""
    superseded: list[dict[str, Any]] = field(default_factory=list)
    created: float = 0.0

    @property
    def packs(self) -> list[str]:
        return sorted({e.pack for e in self.objects.values() if e.pack is not None})


def _entry(url: str, raw: Any) -> ObjectEntry:
    def need(cond: bool, what: str) -> None:
        if not cond:
            raise CorruptIndexError(url, f"malformed dataset manifest: {what}")

    need(isinstance(raw, dict), "an object entry is not a JSON object")
    need(isinstance(raw.get("url"), str), "object url")
    need(isinstance(raw.get("size"), int) and not isinstance(raw["size"], bool) and raw["size"] >= 0, f"size of {raw.get('url')}")
    need(isinstance(raw.get("identity"), str), f"identity of {raw['url']}")
    need(isinstance(raw.get("format"), str), f"format of {raw['url']}")
    need(isinstance(raw.get("options", {}), dict), f"options of {raw['url']}")
    pack, folder = raw.get("pack"), raw.get("folder")
    need((pack is None) != (folder is None), f"{raw['url']} names a pack or a folder, exactly one")
    need(pack is None or (isinstance(pack, str) and PACK_FILE.match(pack) is not None), f"pack name of {raw['url']}")
    need(folder is None or (isinstance(folder, str) and _FOLDER.match(folder) is not None and ".." not in folder), f"folder name of {raw['url']}")
    return ObjectEntry(raw["url"], ObjectInfo(raw["size"], raw["identity"]), raw["format"], raw.get("options", {}), pack, folder)


def read_dataset_manifest(location: StorageObject, pattern: str) -> DatasetManifest | None:
    """The manifest of the dataset ``pattern`` under ``location`` (one request), ``None`` when there is none.

    A malformed one, or one of another pattern, is a :class:`CorruptIndexError`."""
    target = location.child(manifest_name(pattern))
    try:
        raw = target.read_prefix(MAX_DATASET_MANIFEST_BYTES)
    except ObjectNotFoundError:
        return None
    if len(raw) > MAX_DATASET_MANIFEST_BYTES:
        raise CorruptIndexError(target.url, f"dataset manifest exceeds the {MAX_DATASET_MANIFEST_BYTES}-byte limit")
    try:
        body = parse_json(raw)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CorruptIndexError(target.url, f"dataset manifest is not valid JSON: {type(exc).__name__}: {str(exc)[:200]}") from None
    if not isinstance(body, dict) or body.get("dataplug_dataset") != DATASET_VERSION:
        raise CorruptIndexError(target.url, f"not a dataset manifest of version {DATASET_VERSION}")
    if not isinstance(body.get("pattern"), str) or canonical_url(body["pattern"]) != canonical_url(pattern):
        raise CorruptIndexError(target.url, f"the dataset manifest is of {body.get('pattern')!r}, not {pattern!r}")
    if not isinstance(body.get("objects"), list) or not isinstance(body.get("superseded", []), list):
        raise CorruptIndexError(target.url, "malformed dataset manifest: objects or superseded")
    objects = {}
    for raw_entry in body["objects"]:
        entry = _entry(target.url, raw_entry)
        objects[canonical_url(entry.url)] = entry
    superseded = []
    for item in body.get("superseded", []):
        if not (isinstance(item, dict) and isinstance(item.get("superseded"), (int, float)) and isinstance(item.get("files"), list)):
            raise CorruptIndexError(target.url, "malformed dataset manifest: superseded entry")
        superseded.append({"files": [f for f in item["files"] if isinstance(f, str) and PACK_FILE.match(f)], "superseded": item["superseded"]})
    return DatasetManifest(body["pattern"], objects, str(body.get("generation", "")), superseded, float(body.get("created", 0.0)))


def write_dataset_manifest(location: StorageObject, manifest: DatasetManifest, previous: DatasetManifest | None) -> None:
    """Write ``manifest`` (its packs are written already) over ``previous``: the packs ``previous`` named and
    ``manifest`` does not are superseded now; packs superseded more than :data:`GENERATION_GRACE` seconds ago,
    and this dataset's packs no manifest names that are as old, are deleted after the write."""
    from dataplug import __version__

    now = time.time()
    live = set(manifest.packs)
    superseded = [dict(s) for s in (previous.superseded if previous else [])]
    dropped = sorted(set(previous.packs if previous else []) - live)
    if dropped:
        superseded.append({"files": dropped, "superseded": now})
    expired = [s for s in superseded if now - s["superseded"] > GENERATION_GRACE]
    kept = [s for s in superseded if now - s["superseded"] <= GENERATION_GRACE]
    body = {
        "dataplug_dataset": DATASET_VERSION,
        "dataplug_version": __version__,
        "created": now,
        "generation": manifest.generation,
        "pattern": manifest.pattern,
        "objects": [entry.to_json() for entry in manifest.objects.values()],
        "packs": sorted(live),
        "superseded": kept,
    }
    location.child(manifest_name(manifest.pattern)).write_bytes(json.dumps(body, indent=0, sort_keys=True).encode())
    key = dataset_key(manifest.pattern)
    for item in expired:
        _delete_packs(location, key, item["files"])
    named = live | {f for s in kept for f in s["files"]}
    _delete_orphan_packs(location, key, named, now)


def _delete_packs(location: StorageObject, key: str, names: list[str]) -> None:
    """Delete the packs ``names`` that are this dataset's (``key``): never a file of another name, whatever
    a manifest lists."""
    for name in names:
        match = PACK_FILE.match(name)
        if match and match["key"] == key:
            with contextlib.suppress(OSError, DataplugError):
                location.child(name).delete()


def _delete_orphan_packs(location: StorageObject, key: str, named: set[str], now: float) -> None:
    """Delete this dataset's packs that no manifest names, once their generation is older than the grace."""
    try:
        names = location.list_names()
    except (OSError, DataplugError):
        return
    orphans = []
    for name in names:
        match = PACK_FILE.match(name)
        if match and match["key"] == key and name not in named and now - int(match["generation"].split("-")[0]) > GENERATION_GRACE:
            orphans.append(name)
    _delete_packs(location, key, orphans)
