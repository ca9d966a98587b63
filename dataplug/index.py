"""The sidecar index: a small JSON manifest plus numeric tables (``.npy``) and opaque blobs (``.bin``).

Layout under an index location (a folder URL, by default ``<object url>.dataplug/<format>/``)::

    manifest.json              written last; names the files below with their sizes and SHA-256
    <generation>.<table>.npy   numeric tables, loaded with ``allow_pickle=False``
    <generation>.<blob>.bin    opaque blobs, read whole or by byte range

Every preprocessing run writes its files under a fresh generation name and the manifest last, so a crash
or two concurrent runs never leave a manifest that points at another run's tables; superseded
generations are removed by a later run once they are older than a grace period. Nothing here is ever a
pickle: loading a crafted sidecar can fail, but it cannot run code.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dataplug.errors import CorruptIndexError, DataplugError, IndexMissingError, ObjectNotFoundError
from dataplug.storage import ObjectInfo, StorageObject

MANIFEST = "manifest.json"
#: Version of the sidecar layout itself (formats version their own tables separately).
LAYOUT_VERSION = 1
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,200}$")
_NUMERIC_KINDS = "biuf"
#: Seconds a superseded generation of tables is kept for concurrent writers and readers.
GENERATION_GRACE = 600


@dataclass(frozen=True)
class BlobRef:
    """Where one blob of a sidecar lives; small and picklable so a slice can carry it to a worker."""

    location: StorageObject
    size: int
    sha256: str

    def read(self, start: int = 0, end: int | None = None) -> bytes:
        """The blob's bytes ``[start, end)``; a whole read is checked against its SHA-256."""
        end = self.size if end is None else end
        if not 0 <= start <= end <= self.size:
            raise CorruptIndexError(self.location.url, f"blob range [{start}, {end}) outside its {self.size} bytes")
        if start == 0 and end == self.size:
            data = _read_checked(self.location, self.size, self.sha256)
        else:
            data = self.location.read_range(start, end)
        return data


@dataclass
class Sidecar:
    """An object's index for one format: what preprocessing found, and what partitioning needs."""

    format_name: str
    format_version: int
    object_url: str
    object_info: ObjectInfo
    attributes: dict[str, Any]
    tables: dict[str, np.ndarray] = field(default_factory=dict)
    blobs: dict[str, bytes | BlobRef] = field(default_factory=dict)
    dataplug_version: str = ""
    created: float = 0.0

    def blob(self, name: str) -> BlobRef:
        """A stored blob by name (after :func:`write_sidecar` or :func:`load_sidecar`)."""
        ref = self.blobs[name]
        if not isinstance(ref, BlobRef):
            raise TypeError(f"blob {name!r} has not been written yet")
        return ref

    def blob_sizes(self) -> dict[str, int]:
        return {name: blob.size if isinstance(blob, BlobRef) else len(blob) for name, blob in self.blobs.items()}

    def nbytes(self) -> int:
        """Total size of the tables and blobs (the manifest aside)."""
        return sum(int(t.nbytes) for t in self.tables.values()) + sum(self.blob_sizes().values())


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_checked(location: StorageObject, size: int, sha256: str) -> bytes:
    try:
        data = location.read_all()
    except ObjectNotFoundError as exc:
        raise CorruptIndexError(location.url, "sidecar file is missing (index removed or replaced while in use)") from exc
    if len(data) != size or _sha256(data) != sha256:
        raise CorruptIndexError(location.url, "sidecar file does not match its manifest (size or SHA-256)")
    return data


def write_sidecar(location: StorageObject, sidecar: Sidecar) -> Sidecar:
    """Write ``sidecar`` under the folder ``location``: tables and blobs first, the manifest last.

    Returns the sidecar with its blobs replaced by :class:`BlobRef` pointing at the written files.
    Raises :class:`~dataplug.errors.IndexLocationNotWritableError` when the location cannot be written.
    """
    from dataplug import __version__

    generation = f"{int(time.time())}-{uuid.uuid4().hex[:12]}"
    entries: dict[str, dict[str, Any]] = {"tables": {}, "blobs": {}}
    refs: dict[str, bytes | BlobRef] = {}
    for name, table in sidecar.tables.items():
        _check_name(location.url, name)
        table = np.ascontiguousarray(table)
        if table.dtype.kind not in _NUMERIC_KINDS:
            raise TypeError(f"table {name!r} must be numeric, not {table.dtype}")
        buf = io.BytesIO()
        np.save(buf, table, allow_pickle=False)
        data = buf.getvalue()
        file = f"{generation}.{name}.npy"
        location.child(file).write_bytes(data)
        entries["tables"][name] = {"file": file, "bytes": len(data), "sha256": _sha256(data)}
    for name, blob in sidecar.blobs.items():
        _check_name(location.url, name)
        data = blob.read() if isinstance(blob, BlobRef) else bytes(blob)
        file = f"{generation}.{name}.bin"
        target = location.child(file)
        target.write_bytes(data)
        entries["blobs"][name] = {"file": file, "bytes": len(data), "sha256": _sha256(data)}
        refs[name] = BlobRef(target, len(data), _sha256(data))
    manifest = {
        "dataplug_index": LAYOUT_VERSION,
        "dataplug_version": __version__,
        "created": time.time(),
        "format": sidecar.format_name,
        "format_version": sidecar.format_version,
        "object": {"url": sidecar.object_url, **sidecar.object_info.to_json()},
        "attributes": sidecar.attributes,
        **entries,
    }
    location.child(MANIFEST).write_bytes(json.dumps(manifest, indent=1, sort_keys=True).encode())
    _remove_old_generations(location, generation)
    sidecar.blobs = refs
    sidecar.dataplug_version = manifest["dataplug_version"]
    sidecar.created = manifest["created"]
    return sidecar


def _remove_old_generations(location: StorageObject, keep: str) -> None:
    """Best effort: drop files of earlier runs, so the location does not grow with every re-index.

    Only generations older than :data:`GENERATION_GRACE` seconds go: a concurrent run may still be
    writing a younger one (its manifest comes last), and readers may still hold the previous manifest.
    """
    cutoff = time.time() - GENERATION_GRACE
    for name in location.list_names():
        generation = name.split(".", 1)[0]
        stamp = generation.split("-", 1)[0]
        if generation != keep and name != MANIFEST and stamp.isdigit() and int(stamp) < cutoff:
            try:
                location.child(name).delete()
            except (OSError, DataplugError):
                pass


def _check_name(url: str, name: str) -> None:
    if not isinstance(name, str) or not _SAFE_NAME.match(name) or ".." in name:
        raise CorruptIndexError(url, f"unsafe sidecar entry name {name!r}")


def load_sidecar(location: StorageObject, object_url: str, format_name: str, format_version: int) -> Sidecar:
    """Read and validate the sidecar under ``location``.

    Raises :class:`IndexMissingError` when there is none for this format, :class:`CorruptIndexError` when
    the manifest or a table is malformed. Staleness (object changed) is checked by the caller, which knows
    how to ask the object.
    """
    manifest_loc = location.child(MANIFEST)
    try:
        raw = manifest_loc.read_all()
    except ObjectNotFoundError:
        raise IndexMissingError(object_url, f"no {format_name} index at {location.url}; call preprocess() first") from None
    try:
        manifest = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptIndexError(manifest_loc.url, f"manifest is not valid JSON: {exc}") from exc
    _validate_manifest(manifest_loc.url, manifest)
    if manifest["format"] != format_name:
        raise IndexMissingError(object_url, f"the index at {location.url} is for format {manifest['format']!r}, not {format_name!r}; call preprocess()")
    if manifest["format_version"] != format_version:
        raise IndexMissingError(
            object_url,
            f"the index at {location.url} has {format_name} index version {manifest['format_version']}, "
            f"this dataplug needs {format_version}; call preprocess(force=True)",
        )
    tables = {}
    for name, entry in manifest["tables"].items():
        data = _read_checked(location.child(entry["file"]), entry["bytes"], entry["sha256"])
        try:
            table = np.load(io.BytesIO(data), allow_pickle=False)
        except ValueError as exc:
            raise CorruptIndexError(location.url, f"table {name!r} is not a plain numeric .npy: {exc}") from exc
        if not isinstance(table, np.ndarray) or table.dtype.kind not in _NUMERIC_KINDS:
            raise CorruptIndexError(location.url, f"table {name!r} is not numeric")
        tables[name] = table
    blobs: dict[str, bytes | BlobRef] = {
        name: BlobRef(location.child(entry["file"]), entry["bytes"], entry["sha256"]) for name, entry in manifest["blobs"].items()
    }
    obj = manifest["object"]
    return Sidecar(
        format_name=manifest["format"],
        format_version=manifest["format_version"],
        object_url=obj["url"],
        object_info=ObjectInfo(size=obj["size"], identity=obj["identity"]),
        attributes=manifest["attributes"],
        tables=tables,
        blobs=blobs,
        dataplug_version=manifest["dataplug_version"],
        created=manifest["created"],
    )


def _validate_manifest(url: str, m: Any) -> None:
    def need(cond: bool, what: str) -> None:
        if not cond:
            raise CorruptIndexError(url, f"malformed manifest: {what}")

    need(isinstance(m, dict), "not a JSON object")
    need(m.get("dataplug_index") == LAYOUT_VERSION, f"layout version {m.get('dataplug_index')!r}, expected {LAYOUT_VERSION}")
    need(isinstance(m.get("format"), str), "format")
    need(isinstance(m.get("format_version"), int), "format_version")
    need(isinstance(m.get("dataplug_version"), str), "dataplug_version")
    need(isinstance(m.get("created"), (int, float)), "created")
    need(isinstance(m.get("attributes"), dict), "attributes")
    obj = m.get("object")
    need(isinstance(obj, dict), "object")
    need(isinstance(obj.get("url"), str), "object.url")
    need(isinstance(obj.get("size"), int) and obj["size"] >= 0, "object.size")
    need(isinstance(obj.get("identity"), str), "object.identity")
    for kind in ("tables", "blobs"):
        entries = m.get(kind)
        need(isinstance(entries, dict), kind)
        for name, entry in entries.items():
            _check_name(url, name)
            need(isinstance(entry, dict), f"{kind}.{name}")
            _check_name(url, entry.get("file"))
            need(isinstance(entry.get("bytes"), int) and entry["bytes"] >= 0, f"{kind}.{name}.bytes")
            need(isinstance(entry.get("sha256"), str) and len(entry["sha256"]) == 64, f"{kind}.{name}.sha256")


def delete_sidecar(location: StorageObject) -> None:
    """Remove an index location (manifest first, so readers never see a manifest without its tables)."""
    location.child(MANIFEST).delete()
    location.delete(recursive=True)
