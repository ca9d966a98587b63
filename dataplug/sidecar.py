"""The sidecar index: a JSON manifest holding small numeric tables (``.npy`` bytes) and opaque blobs inline,
and naming the files of larger ones.

Layout under an index location (a folder URL: ``<object url>.dataplug/`` by default, or
``<index_location>/<object name>.<hash of its URL>.dataplug/``, see :func:`object_index_folder`; the
index of a second format of one object goes in a sub-folder named after the format)::

    manifest.json              written last; holds the tables and blobs of up to :data:`INLINE_BYTES`
                               (base64, with their sizes and SHA-256) and names the files below
    <generation>.files.json    the generation's record: the files it may write, written before them
    <generation>.<table>.npy   larger numeric tables, loaded with ``allow_pickle=False``
    <generation>.<blob>.bin    larger opaque blobs, read whole or by byte range

So a small index is read in one request (the manifest) and written with two (the record, which doubles as
the check that the location takes writes, and the manifest).

Every preprocessing run writes under a fresh generation name (``<unix time>-<12 hex digits>``) and the
manifest last, so a crash or two concurrent runs never leave a manifest that points at another run's
tables. The new manifest records the generation it replaced, with the time it was superseded; a later run
deletes a superseded generation's files and record once that time is more than :data:`GENERATION_GRACE`
seconds old. Only files a manifest or a record of this location named, under generation file names, are
ever deleted, so anything else in the location (a user's files, another object's index) is never touched.

Nothing here is ever a pickle, and everything decoded from a sidecar is bounded before it is allocated:
loading a crafted sidecar can fail with :class:`CorruptIndexError`, but it cannot run code or exhaust memory.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import io
import json
import math
import re
import time
import uuid
import zlib
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dataplug.errors import (
    CorruptIndexError,
    DataplugError,
    IndexLocationNotWritableError,
    IndexMissingError,
    ObjectNotFoundError,
    StaleIndexError,
)
from dataplug.storage import ObjectInfo, StorageObject, split_url, stale_error

MANIFEST = "manifest.json"
#: Suffix of an object's index folder: ``<url>.dataplug/`` beside the object by default.
INDEX_SUFFIX = ".dataplug"
#: Version of the sidecar layout itself (formats version their own tables separately): 2 holds small tables
#: and blobs inline in the manifest; 3 may store a table through codecs (:data:`TABLE_CODECS`). Layouts 1
#: (every table and blob a file) and 2 are still read.
LAYOUT_VERSION = 3
_READABLE_LAYOUTS = (1, 2, 3)
#: The codec pipelines a table may be stored through, applied in order when writing: ``delta`` (a 1-D integer
#: table as its differences, wrapping, so sorted offsets become small numbers) then ``zlib`` (of the ``.npy``
#: bytes). A line index's sampled record starts and counts shrink several times this way, which helps keep a
#: gzip FASTQ sidecar under 0.5 % of the object (``python benchmarks/gzip_fastq.py`` prints the sidecar as stored).
TABLE_CODECS = (("delta", "zlib"), ("zlib",))
#: Tables smaller than this are stored as they are (compressing saves nothing worth a decode).
_COMPRESS_TABLES_FROM = 512
#: Tables and blobs are kept inline in the manifest while their bytes add up to at most this many (base64
#: makes them a third larger): one request of a few hundred kB costs less than a second request's first byte.
INLINE_BYTES = 256 * 2**10
#: A blob larger than this is a file even under :data:`INLINE_BYTES`: an inline blob travels whole inside
#: every slice that refers to it.
INLINE_BLOB_BYTES = 64 * 2**10
_GENERATION = re.compile(r"^[0-9]{10,11}-[0-9a-f]{12}$")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,200}$")
#: The only file names dataplug writes for tables and blobs, and the only ones it ever deletes.
_GENERATION_FILE = re.compile(r"^(?P<generation>[0-9]{10,11}-[0-9a-f]{12})\.[A-Za-z0-9_][A-Za-z0-9_.-]{0,200}\.(?P<ext>npy|bin)$")
#: A generation's list of files, written before them: what a later write may delete if no manifest names them.
_RECORD_FILE = re.compile(r"^(?P<generation>[0-9]{10,11}-[0-9a-f]{12})\.files\.json$")
_MAX_RECORD_BYTES = 2**20
_NUMERIC_KINDS = "biuf"
_PROTOCOL_ALIASES = {"s3a": "s3", "local": "file"}
#: Seconds a superseded generation of tables is kept, counted from when a newer manifest replaced it.
GENERATION_GRACE = 600

#: Caps on what is decoded from a sidecar (a sidecar may be written by someone else).
MAX_MANIFEST_BYTES = 4 * 2**20
MAX_JSON_DEPTH = 32
_MAX_INT_DIGITS = 19
_INDEX_BYTES_BASE = 64 * 2**20
_INDEX_BYTES_PER_OBJECT_BYTE = 64


def max_index_bytes(object_size: int) -> int:
    """The most bytes of tables and blobs an index of an object of ``object_size`` bytes may hold."""
    return _INDEX_BYTES_BASE + _INDEX_BYTES_PER_OBJECT_BYTE * object_size


@dataclass(frozen=True)
class BlobRef:
    """Where one blob of a sidecar lives; small and picklable so a slice can carry it to a worker.

    A blob kept inline in the manifest has its bytes in ``data`` (checked against its SHA-256 when the
    manifest was loaded), and ``location`` is the manifest; any other blob is read from ``location``.
    """

    location: StorageObject
    size: int
    sha256: str
    data: bytes | None = field(default=None, repr=False)

    def loaded(self, start: int = 0, end: int | None = None) -> bytes | None:
        """The blob's bytes ``[start, end)`` when they are in memory already (an inline blob), else ``None``:
        a caller that can carry a few bytes instead of a request (a slice, its gzip window) asks here first."""
        if self.data is None:
            return None
        end = self.size if end is None else end
        self._check_range(start, end)
        return self.data[start:end]

    def read(self, start: int = 0, end: int | None = None, sha256: str | None = None, crc32: int | None = None) -> bytes:
        """The blob's bytes ``[start, end)``, from memory when inline, else in one range read.

        A whole read from storage is checked against the blob's SHA-256. A partial read is checked against
        ``sha256`` (hex) or ``crc32`` when the caller knows them for that range (e.g. from a per-window
        table); a mismatch is a :class:`CorruptIndexError`.
        """
        end = self.size if end is None else end
        self._check_range(start, end)
        if self.data is not None:
            data = self.data[start:end]
        elif start == 0 and end == self.size:
            return _read_checked(self.location, self.size, self.sha256)
        else:
            data = _read_range(self.location, start, end)
        if sha256 is not None and _sha256(data) != sha256:
            raise CorruptIndexError(self.location.url, f"blob range [{start}, {end}) does not match its SHA-256")
        if crc32 is not None and zlib.crc32(data) != crc32:
            raise CorruptIndexError(self.location.url, f"blob range [{start}, {end}) does not match its CRC32")
        return data

    def _check_range(self, start: int, end: int) -> None:
        if not 0 <= start <= end <= self.size:
            raise CorruptIndexError(self.location.url, f"blob range [{start}, {end}) outside its {self.size} bytes")


class LazyTables(Mapping[str, np.ndarray]):
    """A loaded sidecar's tables, each decoded and checked against its SHA-256 when first used (read first when
    it is a file): a table that no format asks for (one a crafted manifest adds, however large) is never read."""

    def __init__(self, location: StorageObject, entries: dict[str, dict[str, Any]]) -> None:
        self._location = location
        self._entries = entries
        self._loaded: dict[str, np.ndarray] = {}

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._loaded:
            entry = self._entries[name]
            if "data" in entry:
                url = self._location.child(MANIFEST).url
                self._loaded[name] = decode_table(url, name, _inline_bytes(url, f"table {name!r}", entry), entry)
            else:
                file = self._location.child(entry["file"])
                self._loaded[name] = decode_table(file.url, name, _read_checked(file, entry["bytes"], entry["sha256"]), entry)
        return self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


@dataclass
class Sidecar:
    """An object's index for one format: what preprocessing found, and what partitioning needs."""

    format_name: str
    format_version: int
    object_url: str
    object_info: ObjectInfo
    attributes: dict[str, Any]
    tables: Mapping[str, np.ndarray] = field(default_factory=dict)
    blobs: dict[str, bytes | BlobRef] = field(default_factory=dict)
    #: The preprocessing options the index was built with (JSON values), so a call with others rebuilds it.
    options: dict[str, Any] = field(default_factory=dict)
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


# -- where an object's index lives ------------------------------------------------------------------------


def canonical_url(url: str) -> str:
    """``protocol://path`` as fsspec resolves it, so two spellings of one object compare equal."""
    protocol, path = split_url(url)
    return f"{_PROTOCOL_ALIASES.get(protocol, protocol)}://{path}"


def object_index_folder(url: str) -> str:
    """The folder of one object's index inside a shared index location: ``<name>.<hash>.dataplug``.

    ``<name>`` is the object's base name (for people browsing the location) and ``<hash>`` the first 16
    hex digits of the SHA-256 of its canonical URL, so objects with one name in different folders or
    buckets never share a folder.
    """
    canonical = canonical_url(url)
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", canonical.rstrip("/").rsplit("/", 1)[-1]).lstrip(".")[:80] or "object"
    return f"{name}.{hashlib.sha256(canonical.encode()).hexdigest()[:16]}{INDEX_SUFFIX}"


# -- reading sidecar files ---------------------------------------------------------------------------------


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_range(location: StorageObject, start: int, end: int) -> bytes:
    """Exactly bytes ``[start, end)`` of a sidecar file; a missing or short file is a corrupt index."""
    try:
        return location.read_range(start, end)
    except ObjectNotFoundError as exc:
        raise CorruptIndexError(
            location.url, f"sidecar file is missing (the index was removed, or superseded more than {GENERATION_GRACE} s ago)"
        ) from exc
    except StaleIndexError as exc:
        raise CorruptIndexError(location.url, f"sidecar file is shorter than its manifest says ({exc.cause})") from exc


def _read_checked(location: StorageObject, size: int, sha256: str) -> bytes:
    data = _read_range(location, 0, size)
    if _sha256(data) != sha256:
        raise CorruptIndexError(location.url, "sidecar file does not match its manifest (SHA-256)")
    return data


def _inline_bytes(url: str, what: str, entry: dict[str, Any]) -> bytes:
    """The bytes of an entry kept inline in the manifest, checked against its size and SHA-256."""
    try:
        data = base64.b64decode(entry["data"], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CorruptIndexError(url, f"{what} is not valid base64: {exc}") from None
    if len(data) != entry["bytes"] or _sha256(data) != entry["sha256"]:
        raise CorruptIndexError(url, f"{what} does not match its manifest entry (size or SHA-256)")
    return data


def _json_int(text: str) -> int:
    if len(text.lstrip("-")) > _MAX_INT_DIGITS:
        raise ValueError(f"integer of {len(text)} digits")
    return int(text)


def _json_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]!r} out of range")
    return value


def _json_constant(text: str) -> Any:
    raise ValueError(f"{text} is not JSON")


def parse_json(raw: bytes) -> Any:
    """``raw`` as JSON, read as dataplug reads what someone else may have written: integers of at most 19
    digits, finite numbers, no ``NaN`` or ``Infinity`` (``ValueError`` otherwise)."""
    return json.loads(raw.decode("utf-8"), parse_int=_json_int, parse_float=_json_float, parse_constant=_json_constant)


def _json_depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            if deepest > MAX_JSON_DEPTH:
                break
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def read_manifest(location: StorageObject) -> dict[str, Any] | None:
    """The parsed, validated manifest under ``location``, or ``None`` when there is none (one request).

    A caller that reads it before deciding what to do (load the index, or write a new one over it) hands
    it to :func:`load_sidecar` and :func:`write_sidecar` so neither reads it again.
    """
    try:
        return _read_manifest(location)
    except ObjectNotFoundError:
        return None


def _read_manifest(location: StorageObject) -> Any:
    """The parsed manifest under ``location``; :class:`ObjectNotFoundError` when there is none.

    It is read in one request of at most :data:`MAX_MANIFEST_BYTES` plus one, so it is never read half old,
    half new while another process replaces it, and an oversized one is refused without reading the rest;
    integers, numbers and nesting are capped while parsing.
    """
    manifest_loc = location.child(MANIFEST)
    raw = manifest_loc.read_prefix(MAX_MANIFEST_BYTES)
    if len(raw) > MAX_MANIFEST_BYTES:
        raise CorruptIndexError(manifest_loc.url, f"manifest exceeds the {MAX_MANIFEST_BYTES}-byte limit")
    try:
        manifest = parse_json(raw)
    except (UnicodeDecodeError, ValueError, RecursionError, MemoryError) as exc:
        raise CorruptIndexError(manifest_loc.url, f"manifest is not valid JSON: {type(exc).__name__}: {str(exc)[:200]}") from None
    if _json_depth(manifest) > MAX_JSON_DEPTH:
        raise CorruptIndexError(manifest_loc.url, f"manifest nests deeper than {MAX_JSON_DEPTH} levels")
    _validate_manifest(manifest_loc.url, manifest)
    return manifest


def _load_table(url: str, name: str, data: bytes) -> np.ndarray:
    """A plain numeric array from ``.npy`` bytes whose header is checked against the bytes that follow it."""
    try:
        fp = io.BytesIO(data)
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(fp)
        else:
            raise ValueError(f".npy version {version} is not one dataplug writes")
        if dtype.kind not in _NUMERIC_KINDS or dtype.fields is not None or dtype.subdtype is not None:
            raise CorruptIndexError(url, f"table {name!r} is not numeric ({dtype})")
        if any(n < 0 for n in shape):
            raise ValueError(f"negative shape {shape}")
        claimed = math.prod(shape) * dtype.itemsize
        if claimed != len(data) - fp.tell():
            raise CorruptIndexError(url, f"table {name!r} header claims {claimed} bytes of data, the file holds {len(data) - fp.tell()}")
        # The header is parsed once (above): the array is the checked bytes after it, copied so it is writable
        # as np.load's would be. A dataset opens thousands of small indexes, where a second parse doubled the cost.
        table = np.frombuffer(data, dtype, count=math.prod(shape), offset=fp.tell()).reshape(shape, order="F" if fortran_order else "C").copy(order="K")
    except CorruptIndexError:
        raise
    except (ValueError, TypeError, EOFError, OverflowError, SyntaxError, MemoryError, RecursionError, UnicodeDecodeError) as exc:
        raise CorruptIndexError(url, f"table {name!r} is not a plain numeric .npy: {type(exc).__name__}: {str(exc)[:200]}") from None
    return table


def decode_table(url: str, name: str, stored: bytes, entry: dict[str, Any]) -> np.ndarray:
    """A table from its stored bytes (checked against the manifest already), undoing its codecs: the
    ``.npy`` inflated into at most the size the manifest gives (a crafted entry cannot be a zlib bomb)."""
    codecs = entry.get("codecs", [])
    if "zlib" in codecs:
        d = zlib.decompressobj()
        try:
            stored = d.decompress(stored, entry["npy_bytes"] + 1)
        except zlib.error as exc:
            raise CorruptIndexError(url, f"table {name!r} does not inflate: {exc}") from None
        if len(stored) != entry["npy_bytes"] or not d.eof or d.unused_data:
            raise CorruptIndexError(url, f"table {name!r} does not inflate to the {entry['npy_bytes']} bytes its manifest entry says")
    table = _load_table(url, name, stored)
    if "delta" in codecs:
        if table.ndim != 1 or table.dtype.kind not in "iu":
            raise CorruptIndexError(url, f"table {name!r}: delta coding applies to 1-D integer tables, not {table.dtype} {table.shape}")
        table = np.cumsum(table, dtype=table.dtype)
    return table


# -- writing --------------------------------------------------------------------------------------------


def begin_write(location: StorageObject) -> str:
    """Start a generation of the index under ``location``: write its record, naming no file yet, and return
    the generation's name for :func:`write_sidecar`.

    Called before an indexing pass, the write doubles as the check that the location takes writes: one that
    refuses them raises :class:`~dataplug.errors.IndexLocationNotWritableError` naming it, before any pass.
    If the pass fails, :func:`abandon_write` removes the record; if the process dies, a later write does.
    """
    generation = new_generation()
    try:
        _write_record(location, generation, [])
    except IndexLocationNotWritableError as exc:
        raise IndexLocationNotWritableError(location.url, exc.cause) from exc
    return generation


def abandon_write(location: StorageObject, generation: str) -> None:
    """Remove the record :func:`begin_write` wrote, when no index follows it (best effort)."""
    _delete_records(location, {generation})


def _write_record(location: StorageObject, generation: str, files: list[str]) -> None:
    location.child(f"{generation}.files.json").write_bytes(json.dumps({"files": files}).encode())


#: ``previous`` of :func:`write_sidecar` when the caller did not read the manifest in place.
_UNREAD: Any = object()


def write_sidecar(location: StorageObject, sidecar: Sidecar, generation: str | None = None, previous: Any = _UNREAD) -> Sidecar:
    """Write ``sidecar`` under the folder ``location``: large tables and blobs first, the manifest last.

    ``generation`` is the one :func:`begin_write` started (one is started here when not given);
    ``previous`` the manifest in place as :func:`read_manifest` returned it (read here when not given).
    Returns the sidecar with its blobs replaced by :class:`BlobRef`. Tables and blobs are kept inline in the
    manifest while they fit :data:`INLINE_BYTES` (a blob only up to :data:`INLINE_BLOB_BYTES`); larger ones
    are files of the generation, listed in its record before they are written. Generations superseded more
    than :data:`GENERATION_GRACE` seconds ago are deleted; the one the previous manifest named is recorded
    as superseded now. Raises :class:`~dataplug.errors.IndexLocationNotWritableError` when the location
    cannot be written.
    """
    contents = _contents(location.url, sidecar)
    generation = generation or begin_write(location)
    if previous is _UNREAD:
        try:
            previous = read_manifest(location)
        except CorruptIndexError:
            previous = None
    now = time.time()
    superseded = _superseded_generations(previous, now)
    inline = _inline(contents)
    files = {(kind, name): f"{generation}.{name}.{'npy' if kind == 'tables' else 'bin'}" for kind, name, _, _ in contents if (kind, name) not in inline}
    if files:
        # Recorded before the files exist, so that if this write dies or loses a race with another, a later
        # write can delete exactly these files, and nothing else, once no manifest names them.
        _write_record(location, generation, sorted(files.values()))
    entries: dict[str, dict[str, Any]] = {"tables": {}, "blobs": {}}
    refs: dict[str, bytes | BlobRef] = {}
    manifest_loc = location.child(MANIFEST)
    for kind, name, data, coding in contents:
        entry = _entry(data, files.get((kind, name)), coding)
        target = manifest_loc
        if "file" in entry:
            target = location.child(entry["file"])
            target.write_bytes(data)
        entries[kind][name] = entry
        if kind == "blobs":
            refs[name] = BlobRef(target, len(data), entry["sha256"], data if "data" in entry else None)
    kept = []
    for entry in superseded:
        expired = now - entry["superseded"] > GENERATION_GRACE
        if expired and _delete_files(location, entry["files"]):
            _delete_records(location, _entry_generations(entry))
        else:
            kept.append(entry)
    manifest = _manifest(sidecar, generation, now, entries, kept)
    with ThreadPoolExecutor(1, thread_name_prefix="dataplug-sidecar-list") as lister:
        listing = lister.submit(_list_names, location)  # listed while the manifest is written: one round trip less
        manifest_loc.write_bytes(json.dumps(manifest, indent=1, sort_keys=True).encode())
        names = listing.result()
    named = {generation} | {g for entry in kept for g in _entry_generations(entry)}
    _delete_orphans(location, named, now, names)
    sidecar.blobs = refs
    sidecar.tables = LazyTables(location, entries["tables"])
    sidecar.dataplug_version = manifest["dataplug_version"]
    sidecar.created = manifest["created"]
    return sidecar


def _manifest(sidecar: Sidecar, generation: str, now: float, entries: dict[str, dict[str, Any]], superseded: list[dict[str, Any]]) -> dict[str, Any]:
    """The manifest of ``sidecar`` whose tables and blobs are ``entries`` (inline or files)."""
    from dataplug import __version__

    return {
        "dataplug_index": LAYOUT_VERSION if any("codecs" in entry for entry in entries["tables"].values()) else 2,
        "dataplug_version": __version__,
        "created": now,
        "generation": generation,
        "format": sidecar.format_name,
        "format_version": sidecar.format_version,
        "object": {"url": sidecar.object_url, **sidecar.object_info.to_json()},
        "attributes": sidecar.attributes,
        "options": sidecar.options,
        **entries,
        "superseded": superseded,
    }


def new_generation() -> str:
    """A fresh generation name (``<unix time>-<12 hex digits>``), as :func:`begin_write` starts one."""
    return f"{int(time.time())}-{uuid.uuid4().hex[:12]}"


def inline_manifest(sidecar: Sidecar, generation: str) -> dict[str, Any] | None:
    """The manifest :func:`write_sidecar` would write for ``sidecar`` when every table and blob fits inline
    (:data:`INLINE_BYTES` in all, a blob up to :data:`INLINE_BLOB_BYTES`), built in memory and written nowhere;
    ``None`` when some table or blob would be a file of its own.

    A dataset packs the indexes of its small objects as such manifests, many to a file, instead of a
    folder each; :func:`load_sidecar` takes one back as its ``manifest``."""
    contents = _contents(sidecar.object_url, sidecar)
    if len(_inline(contents)) < len(contents):
        return None
    entries: dict[str, dict[str, Any]] = {"tables": {}, "blobs": {}}
    for kind, name, data, coding in contents:
        entries[kind][name] = _entry(data, coding=coding)
    return _manifest(sidecar, generation, time.time(), entries, [])


def _contents(url: str, sidecar: Sidecar) -> list[tuple[str, str, bytes, dict[str, Any]]]:
    """The index's tables and blobs as ``(kind, name, stored bytes, coding fields of the entry)``, once the index is within the size cap
    for its object and every name is one a file may carry."""
    limit = max_index_bytes(sidecar.object_info.size)
    if sidecar.nbytes() > limit:
        raise DataplugError(url, f"an index of {sidecar.nbytes()} bytes exceeds the {limit}-byte limit for this object; use coarser index options")
    for name in [*sidecar.tables, *sidecar.blobs]:
        _check_name(url, name)
    contents = [("tables", name, *_encode_table(name, table)) for name, table in sidecar.tables.items()]
    contents += [("blobs", name, blob.read() if isinstance(blob, BlobRef) else bytes(blob), {}) for name, blob in sidecar.blobs.items()]
    return contents


def _encode_table(name: str, table: np.ndarray) -> tuple[bytes, dict[str, Any]]:
    """A table's stored bytes and the manifest fields that say how to decode them: the smallest of its
    ``.npy`` bytes and the :data:`TABLE_CODECS` pipelines that apply to it."""
    raw = _npy_bytes(name, table)
    best: tuple[bytes, dict[str, Any]] = (raw, {})
    if len(raw) < _COMPRESS_TABLES_FROM:
        return best
    for codecs in TABLE_CODECS:
        data = table
        if "delta" in codecs:
            if table.ndim != 1 or table.dtype.kind not in "iu":
                continue
            data = np.diff(table, prepend=table.dtype.type(0))
        npy = raw if data is table else _npy_bytes(name, data)
        stored = zlib.compress(npy, 6)  # level 9 took far longer for about the same size on a line index
        if len(stored) < len(best[0]):
            best = (stored, {"codecs": list(codecs), "npy_bytes": len(npy)})
    return best


def _inline(contents: list[tuple[str, str, bytes, dict[str, Any]]]) -> set[tuple[str, str]]:
    """The entries the manifest holds inline: the smallest first, :data:`INLINE_BYTES` in all, a blob up to
    :data:`INLINE_BLOB_BYTES`; the others are files of their own."""
    inline, budget = set(), INLINE_BYTES
    for kind, name, data, _ in sorted(contents, key=lambda c: len(c[2])):
        if len(data) <= budget and (kind == "tables" or len(data) <= INLINE_BLOB_BYTES):
            inline.add((kind, name))
            budget -= len(data)
    return inline


def _entry(data: bytes, file: str | None = None, coding: dict[str, Any] | None = None) -> dict[str, Any]:
    """A manifest entry: size and checksum of the stored bytes, how a table was coded, and the bytes inline or
    the name of the file holding them."""
    entry: dict[str, Any] = {"bytes": len(data), "sha256": _sha256(data), **(coding or {})}
    if file is not None:
        entry["file"] = file
    else:
        entry["data"] = base64.b64encode(data).decode("ascii")
    return entry


def check_manifest(url: str, manifest: Any) -> None:
    """Raise :class:`CorruptIndexError` (naming ``url``) unless ``manifest`` is a well-formed sidecar manifest,
    with the caps :func:`read_manifest` applies: for a manifest read from elsewhere than its own file (a pack)."""
    if _json_depth(manifest) > MAX_JSON_DEPTH:
        raise CorruptIndexError(url, f"manifest nests deeper than {MAX_JSON_DEPTH} levels")
    _validate_manifest(url, manifest)


def _npy_bytes(name: str, table: np.ndarray) -> bytes:
    table = np.ascontiguousarray(table)
    if table.dtype.kind not in _NUMERIC_KINDS:
        raise TypeError(f"table {name!r} must be numeric, not {table.dtype}")
    buf = io.BytesIO()
    np.save(buf, table, allow_pickle=False)
    return buf.getvalue()


def _manifest_files(manifest: dict[str, Any]) -> list[str]:
    """The files a manifest names (its tables and blobs that are not inline)."""
    return [entry["file"] for kind in ("tables", "blobs") for entry in manifest[kind].values() if "file" in entry]


def _entry_generations(entry: dict[str, Any]) -> set[str]:
    """The generations a superseded entry stands for: the one it names (layout 2), or those of its files."""
    found = {m["generation"] for f in entry["files"] if (m := _GENERATION_FILE.match(f))}
    return found | ({entry["generation"]} if "generation" in entry else set())


def _superseded_generations(manifest: dict[str, Any] | None, now: float) -> list[dict[str, Any]]:
    """The generations the manifest in place names, as they will stand once a new manifest replaces it:
    its own superseded ones, and its current one superseded ``now``. Nothing for a missing or
    malformed manifest (its files are then left alone: dataplug cannot tell they are its own)."""
    if manifest is None:
        return []
    current = {"files": _manifest_files(manifest), "superseded": now}
    if "generation" in manifest:
        current["generation"] = manifest["generation"]
    return manifest.get("superseded", []) + ([current] if _entry_generations(current) else [])


def _delete_files(location: StorageObject, files: list[str]) -> bool:
    """Delete generation files (names checked again); True when none is left behind."""
    done = True
    for name in files:
        if _GENERATION_FILE.match(name):
            try:
                location.child(name).delete()
            except (OSError, DataplugError):
                done = False
    return done


def _delete_records(location: StorageObject, generations: set[str]) -> None:
    """Delete the records of ``generations``."""
    for generation in generations:
        with contextlib.suppress(OSError, DataplugError):
            location.child(f"{generation}.files.json").delete()


def _list_names(location: StorageObject) -> list[str] | None:
    """The names in ``location``, or None where it may be written but not listed (it keeps its orphans:
    never fail a written index)."""
    try:
        return location.list_names()
    except (OSError, DataplugError):
        return None


def _delete_orphans(location: StorageObject, named: set[str], now: float, names: list[str] | None) -> None:
    """Delete the files of generations no manifest names (a write that died, or lost a race with another)
    once they are :data:`GENERATION_GRACE` seconds old: exactly the files their records list, under their
    generation's names, then the records. ``names``: the location's listing (None: not listable)."""
    for record in names or ():
        match = _RECORD_FILE.match(record)
        if match is None or match["generation"] in named or now - int(match["generation"].split("-")[0]) <= GENERATION_GRACE:
            continue
        try:
            listed = json.loads(location.child(record).read_prefix(_MAX_RECORD_BYTES)[:_MAX_RECORD_BYTES].decode())["files"]
        except (ValueError, TypeError, KeyError, UnicodeDecodeError, DataplugError):
            continue  # not a record dataplug wrote whole: leave it and its files alone
        if not isinstance(listed, list):
            continue
        own = [f for f in listed if isinstance(f, str) and f.startswith(match["generation"] + ".") and _GENERATION_FILE.match(f)]
        if _delete_files(location, own):
            with contextlib.suppress(OSError, DataplugError):
                location.child(record).delete()


def _check_name(url: str, name: str) -> None:
    if not isinstance(name, str) or not _SAFE_NAME.match(name) or ".." in name:
        raise CorruptIndexError(url, f"unsafe sidecar entry name {name!r}")


# -- loading --------------------------------------------------------------------------------------------


def load_sidecar(
    location: StorageObject,
    object_url: str,
    format_name: str,
    format_version: int,
    expect: ObjectInfo | None = None,
    manifest: Any = _UNREAD,
) -> Sidecar:
    """Read and validate the sidecar under ``location`` (``manifest``: as :func:`read_manifest` returned it,
    when the caller read it already).

    Raises :class:`IndexMissingError` when there is none for this format and this object (an index of
    another object is no index of this one), :class:`CorruptIndexError` when the manifest or a table is
    malformed or over its caps. With ``expect`` (the object's current size and identity),
    :class:`StaleIndexError` is raised before any table is read if the object changed. Inline blobs are
    checked against their SHA-256 here; tables when first used.
    """
    if manifest is _UNREAD:
        manifest = read_manifest(location)
    if manifest is None:
        raise IndexMissingError(object_url, f"no {format_name} index at {location.url}; call preprocess() first")
    obj = manifest["object"]
    if canonical_url(obj["url"]) != canonical_url(object_url):
        raise IndexMissingError(object_url, f"the index at {location.url} belongs to another object ({obj['url']}); call preprocess()")
    if manifest["format"] != format_name:
        raise IndexMissingError(object_url, f"the index at {location.url} is for format {manifest['format']!r}, not {format_name!r}; call preprocess()")
    if manifest["format_version"] != format_version:
        raise IndexMissingError(
            object_url,
            f"the index at {location.url} has {format_name} index version {manifest['format_version']}, "
            f"this dataplug needs {format_version}; call preprocess(force=True)",
        )
    indexed = ObjectInfo(size=obj["size"], identity=obj["identity"])
    if expect is not None and expect != indexed:
        raise stale_error(object_url, indexed, expect)
    tables = LazyTables(location, manifest["tables"])
    manifest_loc = location.child(MANIFEST)
    blobs: dict[str, bytes | BlobRef] = {}
    for name, entry in manifest["blobs"].items():
        if "data" in entry:
            blobs[name] = BlobRef(manifest_loc, entry["bytes"], entry["sha256"], _inline_bytes(manifest_loc.url, f"blob {name!r}", entry))
        else:
            blobs[name] = BlobRef(location.child(entry["file"]), entry["bytes"], entry["sha256"])
    return Sidecar(
        format_name=manifest["format"],
        format_version=manifest["format_version"],
        object_url=obj["url"],
        object_info=indexed,
        attributes=manifest["attributes"],
        tables=tables,
        blobs=blobs,
        options=manifest.get("options", {}),
        dataplug_version=manifest["dataplug_version"],
        created=manifest["created"],
    )


def _validate_manifest(url: str, m: Any) -> None:
    def need(cond: bool, what: str) -> None:
        if not cond:
            raise CorruptIndexError(url, f"malformed manifest: {what}")

    need(isinstance(m, dict), "not a JSON object")
    need(m.get("dataplug_index") in _READABLE_LAYOUTS, f"layout version {m.get('dataplug_index')!r}, expected one of {_READABLE_LAYOUTS}")
    need(isinstance(m.get("format"), str), "format")
    need(isinstance(m.get("format_version"), int), "format_version")
    need(isinstance(m.get("dataplug_version"), str), "dataplug_version")
    need(isinstance(m.get("created"), (int, float)), "created")
    need(isinstance(m.get("attributes"), dict), "attributes")
    need(isinstance(m.get("options", {}), dict), "options")
    if m["dataplug_index"] >= 2:
        need(isinstance(m.get("generation"), str) and _GENERATION.match(m["generation"]) is not None, "generation")
    obj = m.get("object")
    need(isinstance(obj, dict), "object")
    need(isinstance(obj.get("url"), str), "object.url")
    need(isinstance(obj.get("size"), int) and obj["size"] >= 0, "object.size")
    need(isinstance(obj.get("identity"), str), "object.identity")
    limit = max_index_bytes(obj["size"])
    generations, total = set(), 0
    for kind, ext in (("tables", "npy"), ("blobs", "bin")):
        entries = m.get(kind)
        need(isinstance(entries, dict), kind)
        for name, entry in entries.items():
            _check_name(url, name)
            need(isinstance(entry, dict), f"{kind}.{name}")
            if "data" in entry:
                need(m["dataplug_index"] >= 2, f"{kind}.{name}: inline data in a layout 1 manifest")
                need("file" not in entry and isinstance(entry["data"], str), f"{kind}.{name}: inline data or a file, not both")
            else:
                file = entry.get("file")
                _check_name(url, file)
                match = _GENERATION_FILE.match(file)
                need(match is not None and match["ext"] == ext, f"{kind}.{name}.file {file!r} is not a dataplug file name")
                generations.add(match["generation"])
            need(isinstance(entry.get("bytes"), int) and 0 <= entry["bytes"] <= limit, f"{kind}.{name}.bytes (at most {limit} for this object)")
            need(isinstance(entry.get("sha256"), str) and re.fullmatch("[0-9a-f]{64}", entry["sha256"]) is not None, f"{kind}.{name}.sha256")
            if "codecs" in entry or "npy_bytes" in entry:
                need(m["dataplug_index"] >= 3 and kind == "tables", f"{kind}.{name}: codecs on a {kind[:-1]} of a layout {m['dataplug_index']} manifest")
                need(isinstance(entry.get("codecs"), list) and tuple(entry["codecs"]) in TABLE_CODECS, f"{kind}.{name}.codecs (one of {TABLE_CODECS})")
                need(isinstance(entry.get("npy_bytes"), int) and 0 <= entry["npy_bytes"] <= limit, f"{kind}.{name}.npy_bytes (at most {limit} for this object)")
            total += entry.get("npy_bytes", entry["bytes"])  # what loading it allocates
    need(len(generations) <= 1, "files of several generations")
    need("generation" not in m or generations <= {m["generation"]}, "files of another generation than the manifest's")
    need(total <= limit, f"{total} bytes of tables and blobs (at most {limit} for this object)")
    superseded = m.get("superseded", [])
    need(isinstance(superseded, list), "superseded")
    for entry in superseded:
        need(isinstance(entry, dict) and isinstance(entry.get("superseded"), (int, float)), "superseded entry")
        files = entry.get("files")
        need(isinstance(files, list) and all(isinstance(f, str) and _GENERATION_FILE.match(f) for f in files), "superseded files")
        need(entry.get("generation") is None or (isinstance(entry["generation"], str) and _GENERATION.match(entry["generation"]) is not None), "superseded generation")


def delete_sidecar(location: StorageObject) -> None:
    """Remove the index under ``location``: its manifest first (so readers never see a manifest without its
    tables), then the files and records of the generations this manifest and earlier ones named. Nothing
    else in the location is touched."""
    try:
        manifest = read_manifest(location)
    except CorruptIndexError:
        manifest = None
    location.child(MANIFEST).delete()
    if manifest is not None:
        for entry in _superseded_generations(manifest, time.time()):
            _delete_files(location, entry["files"])
            _delete_records(location, _entry_generations(entry))
    if location.protocol == "file":
        try:
            location.fs.rmdir(location.path)  # only when empty: a local folder left with nothing of the index
        except OSError:
            pass
