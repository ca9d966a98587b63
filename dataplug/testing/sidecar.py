"""Editing a sidecar as anyone who can write its folder can (part of the conformance kit): tests use it to
craft an index whose checksums match but whose content lies, and check that dataplug refuses it.

A table or blob is either inline in ``manifest.json`` (base64 ``data``) or a file of its generation
(``file``); these helpers read and replace either, and re-sign the entry (size and SHA-256). A table given as
``.npy`` bytes replaces one stored through codecs (delta, zlib) as a plain table."""

from __future__ import annotations

import base64
import hashlib
import io
import json
from typing import Any

import numpy as np

from dataplug.sidecar import MANIFEST, decode_table
from dataplug.storage import StorageObject


def read_manifest(location: StorageObject) -> dict[str, Any]:
    """The manifest of the index at ``location``."""
    return json.loads(location.child(MANIFEST).read_all())


def write_manifest(location: StorageObject, manifest: dict[str, Any]) -> None:
    location.child(MANIFEST).write_bytes(json.dumps(manifest).encode())


def entry_bytes(location: StorageObject, manifest: dict[str, Any], kind: str, name: str) -> bytes:
    """The stored bytes of ``manifest[kind][name]`` (``kind`` is ``"tables"`` or ``"blobs"``)."""
    entry = manifest[kind][name]
    if "data" in entry:
        return base64.b64decode(entry["data"])
    return location.child(entry["file"]).read_all()


def put_entry(location: StorageObject, manifest: dict[str, Any], kind: str, name: str, data: bytes) -> None:
    """Replace the bytes of ``manifest[kind][name]`` where they live and re-sign the entry (the manifest itself
    is written by :func:`write_manifest`)."""
    entry = manifest[kind][name]
    if "data" in entry:
        entry["data"] = base64.b64encode(data).decode()
    else:
        location.child(entry["file"]).write_bytes(data)
    entry.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    entry.pop("codecs", None)
    entry.pop("npy_bytes", None)


def npy(array: np.ndarray) -> bytes:
    """``array`` as the ``.npy`` bytes a table is stored as."""
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def load_table(location: StorageObject, manifest: dict[str, Any], name: str) -> np.ndarray:
    """Table ``name`` of the index at ``location``, its codecs undone."""
    return decode_table(location.url, name, entry_bytes(location, manifest, "tables", name), manifest["tables"][name])


def resign(location: StorageObject, kind: str, name: str, data: bytes) -> None:
    """Replace one table's (``.npy`` bytes) or blob's bytes of the index at ``location`` and re-sign it."""
    manifest = read_manifest(location)
    put_entry(location, manifest, kind, name, data)
    write_manifest(location, manifest)
