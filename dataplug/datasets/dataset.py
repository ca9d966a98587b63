"""A dataset: many objects of one format, opened, indexed and partitioned as one.

Where its index lives: ``index_location`` when given, else ``<folder>/_dataplug/``, the folder being the one
the glob, prefix or list is rooted in (``s3://bucket/run42/`` for ``s3://bucket/run42/*.fastq.gz``). Inside
the data's own folder rather than beside it because a folder may be a bucket's root, which has nothing beside
it; under a name starting with ``_`` because Spark, Hive, Dask and Polars already skip such names when they
read a folder, and dataplug's listings skip it too. It holds the dataset manifest
(:mod:`dataplug.datasets.manifest`), the packs of the small objects' indexes
(:mod:`dataplug.datasets.packing`) and a folder per large object (``<name>.<hash of its URL>.dataplug/``).

Indexing is a map over objects on the engine given (:func:`dataplug.executors.map_ordered`): an object of at
most :data:`SMALL_OBJECT_BYTES` is one task, which reads it whole in one request, detects its format from
those bytes and builds its index from them, and returns the index (not written) to the driver; a larger one
is indexed on the driver with its own map over byte ranges on the same engine. The driver writes the small
objects' indexes as a few packs, then the manifest. An object whose listed size and identity equal those the
manifest records is fresh: it is not read at all.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from dataplug.cloudobject import CloudObject, _differing_options, _Operation
from dataplug.codecs.base import detect_codec, get_codec
from dataplug.datasets.listing import DATASET_INDEX_FOLDER, Listed, Listing, list_objects
from dataplug.datasets.manifest import DatasetManifest, ObjectEntry, dataset_key, read_dataset_manifest, write_dataset_manifest
from dataplug.datasets.packing import read_packs, write_packs
from dataplug.detect import HEAD_BYTES, SAMPLE_BYTES, sniff
from dataplug.errors import (
    CorruptIndexError,
    DataplugError,
    DataplugWarning,
    IndexLocationNotWritableError,
    IndexMissingError,
    InvalidFormatError,
    StaleIndexError,
)
from dataplug.executors import map_ordered
from dataplug.format import DataFormat, Detection, get_format
from dataplug.sidecar import canonical_url, inline_manifest, load_sidecar, new_generation, object_index_folder, write_sidecar
from dataplug.storage import ObjectInfo, StorageObject, split_url

#: An object of at most this many bytes is indexed by one task that reads it whole in one request; a larger
#: one with its own map over byte ranges, and keeps its own index folder.
SMALL_OBJECT_BYTES = 64 * 2**20

#: A re-index that finds the fresh objects' indexes spread over this many packs or more writes them again,
#: with the new ones, into fresh packs.
REPACK_AFTER_PACKS = 4

#: The pack name of an entry whose index goes in this write's packs (named once they are written).
_NEW_PACK = ""

#: The attribute that counts a format's records, the first one its attributes have.
_RECORD_FIELDS = ("rows", "records", "reads", "sequences", "point_count", "spectra", "lines")


@dataclass(frozen=True)
class DatasetAttributes:
    """Totals over a dataset's objects, and each object's own attributes."""

    #: Number of objects.
    objects: int
    #: Bytes of all objects as stored.
    bytes: int
    #: Records of all objects (rows, reads, points, spectra...), ``None`` when the format counts none.
    records: int | None
    #: Each object's attributes, in dataset order.
    per_object: tuple[Any, ...]
    #: The union of the objects' bounds ``(mins, maxs)`` for formats with bounds (LiDAR, COPC), else ``None``.
    bounds: tuple[tuple[float, ...], tuple[float, ...]] | None = None


def _record_count(attributes: Any) -> int | None:
    for name in _RECORD_FIELDS:
        value = getattr(attributes, name, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def _dataset_attributes(objects: Sequence[CloudObject]) -> DatasetAttributes:
    per_object = tuple(co.attributes for co in objects)
    counts = [_record_count(a) for a in per_object]
    mins = [tuple(a.mins) for a in per_object if getattr(a, "mins", None) is not None]
    maxs = [tuple(a.maxs) for a in per_object if getattr(a, "maxs", None) is not None]
    bounds = None
    if mins and len(mins) == len(per_object) == len(maxs):
        bounds = (tuple(map(min, zip(*mins))), tuple(map(max, zip(*maxs))))
    return DatasetAttributes(
        objects=len(objects),
        bytes=sum(co.index().object_info.size for co in objects),
        records=sum(counts) if counts and all(c is not None for c in counts) else None,  # type: ignore[arg-type]
        per_object=per_object,
        bounds=bounds,
    )


# -- the map over small objects ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Task:
    """One small object to index, as shipped to a worker (no data, no live client)."""

    url: str
    storage_options: dict[str, Any]
    info: ObjectInfo
    folder: str
    folder_options: dict[str, Any]
    format: str | None
    options: dict[str, Any]
    generation: str


@dataclass
class _Built:
    """What a worker returns: the object's format and its index, as a manifest to pack when it is small
    enough to be inline, else as the sidecar for the driver to write into the object's own folder; or the
    dataplug error indexing it raised, so the other objects' indexes are kept."""

    url: str
    format: str = ""
    detection: Detection | None = None
    manifest: dict[str, Any] | None = None
    sidecar: Any = None
    error: DataplugError | None = None


def _index_group(tasks: list[_Task]) -> list[_Built]:
    """:func:`_index_small` of each object of one task, in order."""
    return [_index_small(task) for task in tasks]


def _index_small(task: _Task) -> _Built:
    """Index one small object: one GET of the whole object, detection and the pass both served from it."""
    try:
        return _build_small(task)
    except DataplugError as exc:
        return _Built(task.url, error=exc)


def _detect(url: str, data: bytes) -> Detection:
    """:func:`dataplug.detect.detect_format` on a whole object in hand, without its warning that a text format
    was told from a few lines: a dataset's small parts often are, and the dataset checks that they agree."""
    head = data[:HEAD_BYTES]
    raw = data[: max(len(head), get_codec(detect_codec(head)).head_bytes(SAMPLE_BYTES))]
    return sniff(url, raw, complete=len(data) <= len(raw))


def _build_small(task: _Task) -> _Built:
    obj = StorageObject(task.url, task.storage_options)
    op = _Operation(obj, info=task.info)
    data = op.obj.read_range(0, task.info.size) if task.info.size else b""
    op.obj.head = data
    detection: Detection | None
    try:
        detection = _detect(task.url, data)
    except InvalidFormatError:
        if task.format is None:
            raise
        detection = None
    co = CloudObject(task.format or detection.format, task.url, task.storage_options, task.folder, task.folder_options, listed=task.info)  # type: ignore[union-attr]
    co.detection = detection if detection is not None and detection.format == co.format.name else None
    sidecar = co.build_index(task.info, head=data, progress=False, **task.options)
    manifest = inline_manifest(sidecar, task.generation)
    return _Built(task.url, co.format.name, co.detection, manifest, None if manifest is not None else sidecar)


# -- the dataset -----------------------------------------------------------------------------------------------


class Dataset:
    """Many objects of one format (mixed codecs allowed), opened by :func:`open_dataset`.

    :attr:`objects` are :class:`~dataplug.cloudobject.CloudObject` s in a stable order (sorted by URL for a glob
    or a prefix, as given for a list), each with its index loaded once the dataset is indexed.
    """

    def __init__(
        self,
        listing: Listing,
        storage_options: dict[str, Any],
        location: StorageObject,
        data_format: str | None,
        previous: DatasetManifest | None,
        options: dict[str, Any],
    ) -> None:
        #: What was opened (the glob, prefix or first URL), for messages.
        self.url = listing.pattern
        self.listing = listing
        self.storage_options = dict(storage_options)
        #: The folder holding the dataset's manifest, packs and large objects' index folders.
        self.index_location = location
        self._requested_format = data_format
        self._manifest = previous
        self._options = dict(options)
        self._objects: list[CloudObject | None] = [None] * len(listing.objects)
        #: The packed manifests of the objects loaded from packs, by canonical URL (to repack them).
        self._packed: dict[str, dict[str, Any]] = {}
        #: How many objects the last :meth:`preprocess` indexed (the others were fresh).
        self.indexed = 0

    # -- the objects ----------------------------------------------------------------------------------------

    @property
    def objects(self) -> list[CloudObject]:
        """The objects, in dataset order; :class:`IndexMissingError` while some are not indexed."""
        missing = [listed.url for listed, co in zip(self.listing.objects, self._objects) if co is None]
        if missing:
            raise IndexMissingError(missing[0], f"{len(missing)} of the dataset's {len(self._objects)} objects are not indexed; call preprocess() on {self.url}")
        return list(self._objects)  # type: ignore[arg-type]

    @property
    def format(self) -> type[DataFormat]:
        """The one format of every object."""
        return self.objects[0].format

    @property
    def attributes(self) -> DatasetAttributes:
        """Totals (objects, bytes, records), per-format extents and each object's attributes."""
        return _dataset_attributes(self.objects)

    @property
    def published(self) -> bool:
        """True when the index location takes no writes (a published dataset index, over http(s))."""
        return not self.index_location.policy.supports_writes

    def __len__(self) -> int:
        return len(self.listing.objects)

    def __iter__(self) -> Iterator[CloudObject]:
        return iter(self.objects)

    def __repr__(self) -> str:
        return f"Dataset({self.url!r}, {len(self)} objects)"

    def _folder(self, url: str) -> StorageObject:
        return self.index_location.child(object_index_folder(url))

    def _cloud_object(self, listed: Listed, data_format: str) -> CloudObject:
        folder = self._folder(listed.url)
        return CloudObject(data_format, listed.url, self.storage_options, folder.url, folder.storage_options, listed=listed.info)

    def _fresh_entry(self, listed: Listed, explicit: dict[str, Any]) -> ObjectEntry | None:
        """The manifest's entry of ``listed`` when it describes the object as listed, built with the options
        given now and as the format asked for (no request)."""
        entry = self._manifest.objects.get(canonical_url(listed.url)) if self._manifest else None
        if entry is None or entry.info != listed.info:
            return None
        try:
            found = get_format(entry.format)
        except DataplugError:
            return None
        if self._requested_format is not None and found is not get_format(self._requested_format):
            return None
        if _differing_options(explicit, entry.options):
            return None
        return entry

    def _adopt(self, explicit: dict[str, Any]) -> list[int]:
        """Load the index of every object the manifest shows fresh, from its pack or its folder; the positions
        of the objects left to index."""
        fresh: dict[int, ObjectEntry] = {}
        for i, listed in enumerate(self.listing.objects):
            if self._objects[i] is not None and self._objects[i].index().object_info == listed.info:  # type: ignore[union-attr]
                continue
            entry = self._fresh_entry(listed, explicit)
            if entry is not None:
                fresh[i] = entry
            else:
                self._objects[i] = None
        names = sorted({e.pack for e in fresh.values() if e.pack is not None})
        try:
            packs = {name: {canonical_url(url): m for url, m in pack.items()} for name, pack in read_packs(self.index_location, names).items()}
        except CorruptIndexError as exc:
            if self.published:
                raise
            warnings.warn(f"{exc}; the objects of the dataset's packs are indexed anew", DataplugWarning, stacklevel=3)
            packs = {}

        def load(i: int) -> CloudObject | None:
            listed, entry = self.listing.objects[i], fresh[i]
            co = self._cloud_object(listed, entry.format)
            try:
                if entry.pack is not None:
                    manifest = packs.get(entry.pack, {}).get(canonical_url(listed.url))
                    if manifest is None:
                        raise IndexMissingError(listed.url, f"not in the pack {entry.pack} its dataset manifest names")
                    sidecar = load_sidecar(co.index_location, listed.url, co.format.name, co.format.index_version, expect=listed.info, manifest=manifest)
                    co.adopt_index(sidecar)
                    self._packed[canonical_url(listed.url)] = manifest
                else:
                    co._load_index(_Operation(co.obj, info=listed.info))
            except (IndexMissingError, StaleIndexError, CorruptIndexError):
                if self.published:
                    raise
                return None
            return co

        # A packed index is in memory already (loading it is CPU alone); an own folder is one request each.
        for i in sorted(i for i, e in fresh.items() if e.pack is not None):
            self._objects[i] = load(i)
        folders = sorted(i for i, e in fresh.items() if e.pack is None)
        for i, co in zip(folders, map_ordered(load, folders, progress=False)):
            self._objects[i] = co
        return [i for i, co in enumerate(self._objects) if co is None]

    # -- indexing -----------------------------------------------------------------------------------------

    def preprocess(
        self,
        executor: Any = None,
        force: bool = False,
        progress: bool | None = None,
        chunk_size: int | None = None,
        objects_per_task: int = 1,
        **options: Any,
    ) -> Dataset:
        """Index every object that has no fresh index (all of them with ``force=True``), as a map over objects
        on ``executor`` (any engine :func:`dataplug.executors.map_ordered` takes; default a local thread pool),
        then write the small objects' indexes as packs and the dataset manifest.

        ``chunk_size`` is the byte-range size of a large object's own map (as ``CloudObject.preprocess`` takes it).
        ``objects_per_task`` groups that many consecutive small objects in one task, for an engine whose
        tasks cost more to start than a small object costs to index (Lithops' localhost backend starts a
        process per task).
        Fresh objects are decided from the listing's sizes and identities, with no request per object. A
        published (read-only) index location refuses to index anything. Objects of different formats, or CSVs
        with different columns, are an :class:`InvalidFormatError` naming two differing objects.
        """
        if objects_per_task < 1:
            raise DataplugError(self.url, f"objects_per_task must be at least 1, not {objects_per_task}")
        explicit = {**self._options, **options}
        todo = list(range(len(self._objects))) if force else self._adopt(explicit)
        self.indexed = len(todo)
        if todo and self.published:
            raise IndexLocationNotWritableError(
                self.index_location.url,
                f"the dataset's index is published (read-only) and {self.listing.objects[todo[0]].url} (one of {len(todo)} objects) has no fresh index in it; "
                "index the dataset yourself with open_dataset(..., index_location='<a folder you can write>')",
            )
        for i in todo:
            self._objects[i] = None
        generation = new_generation()
        small = [i for i in todo if self.listing.objects[i].info.size <= SMALL_OBJECT_BYTES]
        large = [i for i in todo if self.listing.objects[i].info.size > SMALL_OBJECT_BYTES]
        entries: dict[int, ObjectEntry] = {}
        manifests: dict[str, dict[str, Any]] = {}
        try:
            self._index_small_objects(small, explicit, generation, executor, progress, objects_per_task, entries, manifests)
            self._check_one_format()  # before the long passes over large objects
            for i in large:
                listed = self.listing.objects[i]
                folder = self._folder(listed.url)
                co = CloudObject(self._requested_format or "auto", listed.url, self.storage_options, folder.url, folder.storage_options, listed=listed.info)
                co._preprocess(co._opening or _Operation(co.obj, info=listed.info), None, chunk_size, force, executor, progress, explicit)
                self._objects[i] = co
                entries[i] = ObjectEntry(listed.url, listed.info, co.format.name, co.index().options, folder=_last_part(folder.url))
            self._check_one_format()
        except DataplugError:
            if entries:
                self._write(entries, manifests)  # the objects indexed are not indexed again
            raise
        if todo or self._manifest_outdated():
            self._write(entries, manifests)
        return self

    def _index_small_objects(
        self,
        positions: list[int],
        explicit: dict[str, Any],
        generation: str,
        executor: Any,
        progress: bool | None,
        objects_per_task: int,
        entries: dict[int, ObjectEntry],
        manifests: dict[str, dict[str, Any]],
    ) -> None:
        """The map over the small objects at ``positions``; each object's entry goes in ``entries`` (its pack
        named once written), the manifest to pack in ``manifests``; an index too large to pack is written to the
        object's own folder. The first object that failed to index is raised after the others are kept."""
        tasks = []
        for i in positions:
            listed = self.listing.objects[i]
            folder = self._folder(listed.url)
            tasks.append(_Task(listed.url, self.storage_options, listed.info, folder.url, folder.storage_options, self._requested_format, explicit, generation))
        groups = [tasks[k : k + objects_per_task] for k in range(0, len(tasks), objects_per_task)]
        built = [b for group in map_ordered(_index_group, groups, executor, progress, desc=f"indexing {len(tasks)} objects") for b in group]
        failed = [result.error for result in built if result.error is not None]
        for i, result in zip(positions, built):
            if result.error is not None:
                continue
            listed = self.listing.objects[i]
            co = self._cloud_object(listed, result.format)
            co.detection = result.detection
            if result.manifest is not None:
                sidecar = load_sidecar(co.index_location, listed.url, co.format.name, co.format.index_version, expect=listed.info, manifest=result.manifest)
                manifests[listed.url] = self._packed[canonical_url(listed.url)] = result.manifest
                entry = ObjectEntry(listed.url, listed.info, co.format.name, sidecar.options, pack=_NEW_PACK)
            else:
                sidecar = write_sidecar(co.index_location, result.sidecar)
                entry = ObjectEntry(listed.url, listed.info, co.format.name, sidecar.options, folder=_last_part(co.index_location.url))
            self._objects[i] = co.adopt_index(sidecar, built=True)
            entries[i] = entry
        if failed:
            if len(failed) > 1:
                failed[0].add_note(f"{len(failed) - 1} more of the dataset's objects failed to index, e.g. {failed[1]}")
            raise failed[0]

    def _check_one_format(self) -> None:
        """Every object indexed so far of one format, and of the same columns where the format has columns."""
        objects = [co for co in self._objects if co is not None]
        if not objects:
            return
        first = objects[0]
        for co in objects[1:]:
            if co.format is not first.format:
                raise InvalidFormatError(co.url, f"is {co.format.name}, but {first.url} is {first.format.name}: a dataset's objects are of one format")
            columns = getattr(co.attributes, "columns", None)
            if columns is not None and columns != getattr(first.attributes, "columns", None):
                raise InvalidFormatError(
                    co.url, f"has the columns {list(columns)}, but {first.url} has {list(first.attributes.columns)}: a dataset's objects have the same columns"
                )

    def _manifest_outdated(self) -> bool:
        """Whether the manifest is to be written though no object was indexed: there is none yet, or it names
        objects a glob or prefix no longer lists (such a listing is complete; a list is not)."""
        if self.published:
            return False
        if self._manifest is None:
            return True
        listed = {canonical_url(o.url) for o in self.listing.objects}
        return self.listing.kind != "list" and bool(set(self._manifest.objects) - listed)

    def _write(self, entries: dict[int, ObjectEntry], manifests: dict[str, dict[str, Any]]) -> None:
        """Write the new packs, then the manifest naming them and the fresh objects' old packs and folders, under
        a generation stamped now: an orphan's age counts from when its packs were written, not from when a
        long indexing run began.

        Once the fresh objects' indexes are spread over :data:`REPACK_AFTER_PACKS` packs or more (each re-index
        adds one), they are written again into the new packs, so opening the dataset stays a few requests."""
        objects: dict[str, ObjectEntry] = {}
        if self._manifest is not None and self.listing.kind == "list":
            objects.update(self._manifest.objects)  # a list does not say the objects it leaves out are gone
        for i, listed in enumerate(self.listing.objects):
            canonical = canonical_url(listed.url)
            if i in entries:
                objects[canonical] = entries[i]
            elif self._objects[i] is not None and self._manifest is not None:
                objects[canonical] = self._manifest.objects[canonical]
            else:
                objects.pop(canonical, None)  # not indexed (an indexing pass failed): no entry
        new = {canonical_url(self.listing.objects[i].url) for i in entries}
        old = {c: e for c, e in objects.items() if e.pack is not None and c not in new}
        if manifests and len({e.pack for e in old.values()}) >= REPACK_AFTER_PACKS:
            for canonical in old.keys() & self._packed.keys():
                manifests[objects[canonical].url] = self._packed[canonical]
                objects[canonical] = dataclasses.replace(objects[canonical], pack=_NEW_PACK)
        generation = new_generation()
        where = write_packs(self.index_location, dataset_key(self.listing.pattern), generation, manifests) if manifests else {}
        for canonical, entry in objects.items():
            if entry.pack == _NEW_PACK:
                objects[canonical] = dataclasses.replace(entry, pack=where[entry.url])
        manifest = DatasetManifest(self.listing.pattern, objects, generation)
        write_dataset_manifest(self.index_location, manifest, self._manifest)
        self._manifest = manifest

    # -- partitioning -------------------------------------------------------------------------------------

    def partition(self, strategy: str | Callable[..., list[Any]], *args: Any, **kwargs: Any) -> list[Any]:
        """Slices across the dataset's objects: ``dataplug.datasets.partition.partition_dataset(self, strategy, ...)``."""
        from dataplug.datasets.partition import partition_dataset

        return partition_dataset(self, strategy, *args, **kwargs)


def _last_part(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def default_index_location(listing: Listing) -> str:
    """``<root>/_dataplug``: the folder the dataset's objects are rooted in, then ``_dataplug``."""
    if not split_url(listing.root)[1].strip("/"):
        raise DataplugError(None, f"the objects of {listing.pattern} share no folder to keep their index in; pass index_location=")
    return listing.root.rstrip("/") + "/" + DATASET_INDEX_FOLDER


def open_dataset(
    urls: str | Sequence[str],
    storage_options: dict[str, Any] | None = None,
    *,
    format: type[DataFormat] | str | None = "auto",  # noqa: A002 - the natural keyword here
    index_location: str | None = None,
    index_storage_options: dict[str, Any] | None = None,
    preprocess: bool = True,
    executor: Any = None,
    progress: bool | None = None,
    chunk_size: int | None = None,
    objects_per_task: int = 1,
    **options: Any,
) -> Dataset:
    """Open many objects as one :class:`Dataset`: a glob (``"s3://bucket/run42/*.fastq.gz"``, ``**`` too), a
    prefix ending in ``/`` (every object under it), or a list of URLs. Exported as ``dataplug.open_dataset``::

        ds = dataplug.open_dataset("s3://bucket/run42/*.fastq.gz", executor=pool)
        slices = ds.partition("partition_num_chunks", 64)

    The objects are listed (one request per 1,000 on S3) and the dataset manifest read from ``index_location``
    (default ``<folder>/_dataplug/``); objects it shows fresh are loaded from its packs, and, unless
    ``preprocess=False``, the others are indexed (:meth:`Dataset.preprocess`). ``format`` is ``"auto"`` (each
    new object's format detected from its bytes) or a format for every object; ``options`` are its
    preprocessing options. An ``index_location`` over ``http(s)://`` is a published index: read-only.
    """
    storage_options = dict(storage_options or {})
    listing = list_objects(urls, storage_options)
    where = index_location.rstrip("/") if index_location else default_index_location(listing)
    if index_storage_options is None:
        index_storage_options = dict(storage_options) if split_url(where)[0] == split_url(listing.root)[0] else {}
    location = StorageObject(where, dict(index_storage_options))
    auto = format is None or (isinstance(format, str) and format.lower() == "auto")
    requested = None if auto else get_format(format).name  # type: ignore[arg-type]
    try:
        previous = read_dataset_manifest(location, listing.pattern)
    except CorruptIndexError:
        if not location.policy.supports_writes:
            raise
        warnings.warn(f"{location.url}: the dataset manifest is unreadable; the dataset is indexed anew", DataplugWarning, stacklevel=2)
        previous = None
    ds = Dataset(listing, storage_options, location, requested, previous, options)
    if preprocess:
        ds.preprocess(executor, False, progress, chunk_size, objects_per_task)
    else:
        ds._adopt(dict(options))
    return ds
