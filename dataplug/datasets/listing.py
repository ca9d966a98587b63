"""Which objects a dataset holds: a glob, a prefix or a list of URLs, each object with the size and identity
the listing gave, so that no object costs a metadata request of its own.

A glob (``s3://bucket/run42/*.fastq.gz``, ``**`` too) and a prefix ending in ``/`` (every object under it)
are listed with fsspec's ``glob`` / ``find`` with ``detail=True``: on S3 one ``ListObjectsV2`` request per
1,000 keys, whose entries carry each key's size and ETag. A list of URLs is listed folder by folder (one
``ls`` per distinct folder). dataplug's own index folders and files (a path part named ``_dataplug`` or
ending in ``.dataplug``) are never objects of a dataset.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import fsspec

from dataplug.errors import DataplugError, ObjectNotFoundError
from dataplug.sidecar import INDEX_SUFFIX
from dataplug.storage import ObjectInfo, StorageObject, split_url
from dataplug.storage.retry import retry
from dataplug.storage.stores import filesystem_options, identity

#: The folder holding a dataset's index by default, inside the folder the dataset's objects are in.
DATASET_INDEX_FOLDER = "_dataplug"
_GLOB_CHARS = re.compile(r"[*?\[]")


def glob_match(url: str) -> re.Match[str] | None:
    """The first glob character (``*``, ``?``, ``[``) of ``url``, or None; an http(s) URL's query (a
    pre-signed URL's ``?X-Amz-...``) is no glob."""
    if url.startswith(("http://", "https://")):
        url = url.split("?", 1)[0]
    return _GLOB_CHARS.search(url)


@dataclass(frozen=True)
class Listed:
    """One object as the listing saw it: its URL and the size and identity an index records."""

    url: str
    info: ObjectInfo


@dataclass(frozen=True)
class Listing:
    """What a dataset's URLs named: the objects (sorted by URL for a glob or prefix, in the given order for a
    list), the pattern as given (for messages and the manifest's name) and the folder all objects are in."""

    pattern: str
    objects: tuple[Listed, ...]
    root: str
    kind: str  # "glob", "prefix" or "list"


def is_dataplug_path(path: str) -> bool:
    """True for a path inside one of dataplug's index folders (``_dataplug/``, ``<name>.dataplug/``)."""
    return any(part == DATASET_INDEX_FOLDER or part.endswith(INDEX_SUFFIX) for part in path.split("/"))


def _filesystem(url: str, storage_options: dict[str, Any]) -> tuple[Any, str, str]:
    protocol, _ = split_url(url)
    fs, path = fsspec.core.url_to_fs(url, **filesystem_options(protocol, storage_options))
    return fs, path, protocol


def _url(pattern_has_protocol: bool, protocol: str, path: str) -> str:
    return f"{protocol}://{path}" if pattern_has_protocol else path


def _listed(entries: dict[str, dict[str, Any]], protocol: str, with_protocol: bool) -> list[Listed]:
    out = []
    for path, raw in sorted(entries.items()):
        if raw.get("type", "file") != "file" or is_dataplug_path(path):
            continue
        out.append(Listed(_url(with_protocol, protocol, path), ObjectInfo(size=int(raw["size"]), identity=identity(raw, protocol))))
    return out


def list_objects(urls: str | Sequence[str], storage_options: dict[str, Any] | None = None) -> Listing:
    """The objects ``urls`` names, with their sizes and identities (see the module docstring).

    An empty match is an :class:`ObjectNotFoundError` naming the pattern; a URL of a list that does not exist
    is one naming that URL.
    """
    options = dict(storage_options or {})
    if isinstance(urls, str):
        pattern = urls if "://" in urls else os.path.abspath(urls) + ("/" if urls.endswith("/") else "")
        with_protocol = "://" in pattern
        fs, path, protocol = _filesystem(pattern, options)
        glob = glob_match(path)
        if glob:
            kind, lister, root = "glob", fs.glob, path[: glob.start()].rsplit("/", 1)[0]
        elif pattern.endswith("/"):
            kind, lister, root = "prefix", fs.find, path.rstrip("/")
        else:
            return list_objects([pattern], options)
        try:
            fs.invalidate_cache()
            found = retry(lister, path, detail=True, url=pattern, what="listing")
        except FileNotFoundError:
            found = {}
        objects = _listed(found, protocol, with_protocol)
        if not objects:
            raise ObjectNotFoundError(pattern, "no object matches this pattern (dataplug's own index files left aside)")
        return Listing(pattern, tuple(objects), _url(with_protocol, protocol, root), kind)
    given = list(urls)
    if not given:
        raise DataplugError(None, "open_dataset needs at least one URL")
    if any(glob_match(u) or u.endswith("/") for u in given):
        raise DataplugError(None, "a list of URLs names objects: pass a glob or a prefix as a single string, not in a list")
    protocols = {split_url(u)[0] for u in given}
    if len(protocols) > 1:
        raise DataplugError(None, f"a dataset's objects are in one store; the list mixes {sorted(protocols)}")
    by_folder: dict[str, dict[str, dict[str, Any]]] = {}
    fs, _, protocol = _filesystem(given[0], options)
    paths = [StorageObject(u).url if "://" not in u else u for u in given]
    stripped = [fs._strip_protocol(u) for u in paths]
    for path in stripped:
        folder = posixpath.dirname(path)
        if folder not in by_folder:
            fs.invalidate_cache(folder)
            try:
                listed = retry(fs.ls, folder, detail=True, url=folder, what="listing")
                by_folder[folder] = {entry["name"].rstrip("/"): entry for entry in listed}
            except FileNotFoundError:
                by_folder[folder] = {}
    objects = []
    seen: set[str] = set()
    for url, path in zip(paths, stripped):
        raw = by_folder[posixpath.dirname(path)].get(path)
        if raw is not None and raw.get("type", "file") == "directory":
            raise ObjectNotFoundError(url, "is a folder, not an object: end the URL with '/' to open every object under it")
        if raw is None or raw.get("type", "file") != "file":
            raise ObjectNotFoundError(url, "object not found (listed in the dataset's URLs)")
        if path in seen:
            raise DataplugError(url, "listed twice in the dataset's URLs")
        seen.add(path)
        objects.append(Listed(url, ObjectInfo(size=int(raw["size"]), identity=identity(raw, protocol))))
    with_protocol = "://" in given[0]
    root = posixpath.commonpath(stripped) if len(stripped) > 1 else posixpath.dirname(stripped[0])
    if len(stripped) > 1 and root in stripped:
        root = posixpath.dirname(root)
    pattern = given[0] if len(given) == 1 else f"{len(given)} objects under {_url(with_protocol, protocol, root)}"
    return Listing(pattern, tuple(objects), _url(with_protocol, protocol, root), "list")
