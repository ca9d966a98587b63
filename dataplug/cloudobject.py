"""CloudObject: one data object, its format and its sidecar index (the original Dataplug's entry point)."""

from __future__ import annotations

import contextlib
import json
import os
import time
import warnings
from typing import Any, Callable

from dataplug.detect import Detection, detect_format, folder_object, wrong_format_hint
from dataplug.errors import (
    CorruptIndexError,
    DataplugError,
    EmptyResultWarning,
    IndexLocationNotWritableError,
    IndexMissingError,
    InvalidFormatError,
    ObjectNotFoundError,
    StaleIndexError,
    StrategyArgumentError,
)
from dataplug.format import DataFormat, IndexData, OperationObject, PreprocessContext, get_format
from dataplug.reader import Reader
from dataplug.sidecar import (
    INDEX_SUFFIX,
    Sidecar,
    abandon_write,
    begin_write,
    canonical_url,
    delete_sidecar,
    load_sidecar,
    object_index_folder,
    read_manifest,
    write_sidecar,
)
from dataplug.storage import ObjectInfo, StorageObject, split_url, stale_error

_INDEX_IT_YOURSELF = "index the object yourself instead, e.g. CloudObject.from_url(url, index_location='<a folder you can write>').preprocess()"

# How the original's ``s3_config`` keys map onto s3fs options.
_S3_CONFIG_KEYS = {"aws_access_key_id": "key", "aws_secret_access_key": "secret", "aws_session_token": "token"}
_S3_CONFIG_IGNORED = ("role_arn", "token_duration_seconds")


def s3_config_to_storage_options(s3_config: dict[str, Any] | None) -> dict[str, Any]:
    """Translate the original Dataplug's ``s3_config`` into s3fs storage options.

    Keys it cannot honour (``role_arn``, ``token_duration_seconds``) are dropped with a warning.
    """
    options: dict[str, Any] = {}
    client_kwargs: dict[str, Any] = {}
    config_kwargs: dict[str, Any] = {}
    for key, value in (s3_config or {}).items():
        if key in _S3_CONFIG_KEYS:
            options[_S3_CONFIG_KEYS[key]] = value
        elif key == "endpoint_url":
            options["endpoint_url"] = value
        elif key == "region_name":
            client_kwargs["region_name"] = value
        elif key == "credentials":
            options.update(key=value.get("AccessKeyId"), secret=value.get("SecretAccessKey"), token=value.get("SessionToken"))
        elif key == "botocore_config_kwargs":
            config_kwargs.update(value)
        elif key in _S3_CONFIG_IGNORED:
            warnings.warn(f"s3_config key {key!r} is not supported by dataplug and is ignored; use credentials from the environment", stacklevel=3)
        else:
            warnings.warn(f"unknown s3_config key {key!r} ignored", stacklevel=3)
    if client_kwargs:
        options["client_kwargs"] = client_kwargs
    if config_kwargs:
        options["config_kwargs"] = config_kwargs
    return {k: v for k, v in options.items() if v is not None}


#: A pass longer than this many seconds reads the manifest in place again before writing its own. A shorter
#: pass uses the one read when the operation began: one request fewer per index write, and another run's
#: manifest published within those seconds is the only one it can miss.
REREAD_MANIFEST_AFTER = 5.0


class _Operation:
    """What one operation (an open, a preprocess, a partition) learnt of the object and its index folder, so
    that it asks storage once for each: the object's size and identity, its first bytes (in ``obj``), and the
    manifests it read (by URL: the manifest, ``None`` when there is none, or the :class:`CorruptIndexError`
    reading it raised).

    ``info`` is the size and identity when the caller has them already (from a listing: no metadata request),
    and ``head`` the object's first bytes, or all of them, when the caller read them already."""

    def __init__(self, obj: StorageObject, look: bool = True, info: ObjectInfo | None = None, head: bytes = b"") -> None:
        #: The object's size and identity, taken once (``None`` for an operation that only reads the index).
        self.info: ObjectInfo | None = info if info is not None else obj.info() if look else None
        self.obj = OperationObject.of(obj, self.info, head)
        self.manifests: dict[str, Any] = {}

    def manifest(self, folder: StorageObject) -> Any:
        if folder.url not in self.manifests:
            try:
                self.manifests[folder.url] = read_manifest(folder)
            except CorruptIndexError as exc:
                self.manifests[folder.url] = exc
        return self.manifests[folder.url]


class CloudObject:
    """A data object in storage, read through its format and its sidecar index.

    The object itself is never written. Its index lives in a folder of its own, by default
    ``<url>.dataplug/`` beside it; ``index_location`` names a folder or bucket that may hold the indexes of
    many objects, each in ``<index_location>/<name>.<hash of the URL>.dataplug/``. That folder holds the
    index of one format (the first one built, usually the detected one), so that opening the object reads the
    format from it rather than detecting it again; an index of any other format goes in a sub-folder named
    after the format, so one object can be indexed as several formats.

    An ``index_location`` whose last part ends in ``.dataplug`` is that object's own folder, as
    ``dataplug publish`` writes it; one over ``http(s)://`` is a published index, read-only: it is read
    without listing, never written, and one that does not fit the object is an error that says to index
    the object yourself.

    ``data_format`` ``"auto"`` (or ``None``) takes the format of the index in the object's folder when there
    is one, else detects it from the object's first bytes (:func:`dataplug.detect.detect_format`);
    :attr:`detection` then says what was chosen and why.

    ``listed`` is the object's size and identity when a listing gave them (a dataset's): the constructor then
    makes no metadata request.
    """

    def __init__(
        self,
        data_format: type[DataFormat] | str | None,
        url: str,
        storage_options: dict[str, Any] | None = None,
        index_location: str | None = None,
        index_storage_options: dict[str, Any] | None = None,
        *,
        listed: ObjectInfo | None = None,
    ) -> None:
        auto = data_format is None or (isinstance(data_format, str) and data_format.lower() == "auto")
        #: The format that names the object's URL and where its index lives (a folder's format).
        anchor: type[DataFormat] | None = None if auto else get_format(data_format)
        if anchor is not None:
            url = anchor.object_url(url)
        self.obj = StorageObject(url, dict(storage_options or {}))
        #: How the format was detected (``None`` when it was given).
        self.detection: Detection | None = None
        #: The operation the constructor started when it had to look at the object (format detection), which
        #: :func:`open_url` carries on instead of starting another.
        self._opening: _Operation | None = None
        if auto:
            try:
                self._opening = _Operation(self.obj, info=listed)
            except ObjectNotFoundError:
                inside = folder_object(self.obj)  # a folder: a format whose data is a folder may name its object
                if inside is None:
                    raise
                anchor, self.obj = inside
                self._opening = _Operation(self.obj)

        def index_folder(anchored: type[DataFormat] | None) -> str:
            if index_location and index_location.rstrip("/").endswith(INDEX_SUFFIX):
                return index_location.rstrip("/")
            if index_location:
                return index_location.rstrip("/") + "/" + object_index_folder(self.obj.url)
            return (anchored.index_anchor(self.obj.url) if anchored else self.obj.url) + INDEX_SUFFIX

        folder = index_folder(anchor)
        recorded = None
        if self._opening is not None:
            self._set_index_folder(folder, index_storage_options)
            recorded = self._recorded_detection(self._opening)
            self.detection = recorded or detect_format(self._opening.obj, self._opening.info)
            data_format = self.detection.format
        #: True when the format came from the index in the folder, not from the object's bytes.
        self._format_from_index = recorded is not None
        self.format: type[DataFormat] = get_format(data_format)
        self._use_index_folder(index_folder(self.format), index_storage_options)
        self._sidecar: Sidecar | None = None
        self._attributes: Any = None
        #: Whether the last :meth:`preprocess` call built the index (False when it found a fresh one).
        self.built_index = False
        #: The options given to the last :meth:`preprocess` call (companion URLs are trusted from here only).
        self._given_options: dict[str, Any] = {}
        #: The reader :meth:`kept_reader` keeps for implicit use (None until a call needs one).
        self._kept_reader: Reader | None = None

    def _set_index_folder(self, folder: str, index_storage_options: dict[str, Any] | None) -> None:
        if index_storage_options is None:
            same_protocol = split_url(folder)[0] == self.obj.protocol
            index_storage_options = dict(self.obj.storage_options) if same_protocol else {}
        #: The object's index folder: it holds one format's index, a sub-folder per other format.
        self.index_folder = StorageObject(folder, dict(index_storage_options))
        #: Where this format's index is: :attr:`index_folder`, or its sub-folder named after the format when
        #: the folder holds another format's index (known once the folder's manifest is read).
        self.index_location = self.index_folder

    def _use_index_folder(self, folder: str, index_storage_options: dict[str, Any] | None) -> None:
        """Keep this object's index under ``folder``."""
        self._set_index_folder(folder, index_storage_options)
        self._located = False
        if self._opening is not None:
            self._locate(self._opening)

    def _locate(self, op: _Operation) -> StorageObject:
        """Set and return :attr:`index_location` from the folder's manifest (read once per operation)."""
        top = op.manifest(self.index_folder)
        other = isinstance(top, dict) and self._describes_this_object(top) and top["format"] != self.format.name
        if top is None and self.published:
            # A published index of layout 1 (before the folder held a format at its top) is read from the
            # format's sub-folder, where it was written; a writable location builds a new one at the top instead.
            other = op.manifest(self.index_folder.child(self.format.name)) is not None
        self.index_location = self.index_folder.child(self.format.name) if other else self.index_folder
        self._located = True
        return self.index_location

    def _describes_this_object(self, manifest: dict[str, Any]) -> bool:
        return canonical_url(manifest["object"]["url"]) == canonical_url(self.url)

    def _recorded_detection(self, op: _Operation) -> Detection | None:
        """The format the index in the folder was built as, when it is this object's and that format is
        installed: opening an indexed object reads no object byte to choose its format."""
        top = op.manifest(self.index_folder)
        if not isinstance(top, dict) or not self._describes_this_object(top):
            return None
        try:
            found = get_format(top["format"])
            indexed = ObjectInfo(size=int(top["object"]["size"]), identity=str(top["object"]["identity"]))
            options = tuple(sorted(top.get("options", {}).items()))
        except Exception:  # noqa: BLE001 - an unknown or broken format leaves detection to the object's bytes
            return None
        if op.info is not None and indexed != op.info:
            return None  # the object changed since: its format is detected from its bytes
        codec = top["attributes"].get("compression", "none")
        return Detection(found.name, codec if isinstance(codec, str) else "none", f"recorded by its index at {self.index_folder.url}", options=options)

    @property
    def published(self) -> bool:
        """True when the index is a published one: its location takes no writes (served over http(s))."""
        return not self.index_location.policy.supports_writes

    # -- constructors (the original's names) ------------------------------------------------------------

    @classmethod
    def from_url(
        cls,
        data_format: type[DataFormat] | str | None = None,
        url: str | None = None,
        storage_options: dict[str, Any] | None = None,
        index_location: str | None = None,
        index_storage_options: dict[str, Any] | None = None,
    ) -> CloudObject:
        """Any fsspec URL (``s3://``, ``gs://``, ``https://``, ``file://``) or a local path.

        ``CloudObject.from_url("x.csv.gz")`` (the URL alone) detects the format, as ``"auto"`` does.
        """
        if url is None:
            if not isinstance(data_format, str):
                raise DataplugError(None, "from_url needs a URL: from_url(url) or from_url(format, url)")
            data_format, url = "auto", data_format
        return cls(data_format, url, storage_options, index_location, index_storage_options)

    @classmethod
    def from_s3(
        cls,
        data_format: type[DataFormat] | str,
        storage_uri: str,
        fetch: bool = True,
        metadata_bucket: str | None = None,
        s3_config: dict[str, Any] | None = None,
        index_location: str | None = None,
    ) -> CloudObject:
        """An S3 object, with the original's ``s3_config`` keys. ``metadata_bucket`` puts the index in
        another bucket (``s3://<metadata_bucket>/<key>.dataplug/``); ``fetch`` checks that the object exists
        and loads its index if there is one."""
        if not storage_uri.startswith(("s3://", "s3a://")):
            storage_uri = "s3://" + storage_uri
        co = cls(data_format, storage_uri, s3_config_to_storage_options(s3_config), index_location)
        if metadata_bucket and not index_location:
            key = storage_uri.split("://", 1)[1].split("/", 1)[1]
            co._use_index_folder(f"s3://{metadata_bucket}/{key}{INDEX_SUFFIX}", None)
        if fetch:
            co.fetch()
        return co

    @classmethod
    def from_bucket_key(
        cls, data_format: type[DataFormat] | str, bucket: str, key: str, fetch: bool = True, s3_config: dict[str, Any] | None = None
    ) -> CloudObject:
        return cls.from_s3(data_format, f"s3://{bucket}/{key}", fetch=fetch, s3_config=s3_config)

    @classmethod
    def new_from_file(
        cls, data_format: type[DataFormat] | str, file_path: str, cloud_path: str, s3_config: dict[str, Any] | None = None, override: bool = False
    ) -> CloudObject:
        """Upload a local file to ``cloud_path`` and return its CloudObject.

        Refuses to overwrite an existing object unless ``override=True``, and then drops its old index.
        """
        url = cloud_path if "://" in cloud_path else "s3://" + cloud_path
        co = cls(data_format, url, s3_config_to_storage_options(s3_config) if s3_config is not None else None)
        if co.exists():
            if not override:
                raise DataplugError(co.url, "object already exists; pass override=True to replace it")
            co.clean()
        co.obj.fs.put_file(os.fspath(file_path), co.obj.path)
        return co

    # -- the object ---------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self.obj.url

    @property
    def storage_options(self) -> dict[str, Any]:
        return self.obj.storage_options

    @property
    def size(self) -> int:
        """Object size in bytes (from the index when loaded, else from storage)."""
        return self._sidecar.object_info.size if self._sidecar else self.obj.info().size

    def exists(self) -> bool:
        return self.obj.exists()

    # -- the index ----------------------------------------------------------------------------------------

    def is_preprocessed(self) -> bool:
        """True when a valid, fresh index for this format exists."""
        return self._has_fresh_index(_Operation(self.obj))

    def _has_fresh_index(self, op: _Operation) -> bool:
        try:
            if self._sidecar is None:
                self._load_index(op)
            assert self._sidecar is not None
            self._check_fresh(self._sidecar, op.info)
        except (IndexMissingError, StaleIndexError, CorruptIndexError):
            return False
        return True

    def fetch(self) -> CloudObject:
        """Check that the object exists and load its index when there is one (the original's ``fetch``)."""
        op = _Operation(self.obj)
        try:
            self._load_index(op)
        except IndexMissingError:
            pass
        return self

    def index(self) -> Sidecar:
        """The loaded sidecar (loaded on first use). Raises :class:`IndexMissingError` if not preprocessed."""
        if self._sidecar is None:
            self._load_index(_Operation(self.obj, look=False))
        assert self._sidecar is not None
        return self._sidecar

    def ensure_fresh_index(self) -> Sidecar:
        """The index, after checking with one metadata request that the object has not changed."""
        op = _Operation(self.obj)
        if self._sidecar is None:
            self._load_index(op)
        assert self._sidecar is not None
        self._check_fresh(self._sidecar, op.info)
        return self._sidecar

    def _load_index(self, op: _Operation) -> None:
        """Load, validate and keep the index; with the operation's info, a changed object is refused before
        any table is read. Every error decoding what the sidecar holds is a :class:`CorruptIndexError`."""
        location = self._locate(op)
        url = location.url
        try:
            manifest = op.manifest(location)
            if isinstance(manifest, CorruptIndexError):
                raise manifest
            sidecar = load_sidecar(location, self.url, self.format.name, self.format.index_version, expect=op.info, manifest=manifest)
        except (IndexMissingError, StaleIndexError) as exc:
            if not self.published:
                raise
            raise type(exc)(self.url, f"{exc.cause} (published index at {url}); {_INDEX_IT_YOURSELF}") from None
        self._sidecar, self._attributes = sidecar, self._checked_attributes(sidecar, url)

    def _checked_attributes(self, sidecar: Sidecar, url: str) -> Any:
        """The typed attributes of ``sidecar`` once its companions and tables are checked; every error decoding
        them is a :class:`CorruptIndexError` naming ``url``."""
        try:
            attributes = self.format.attributes_from_json(url, sidecar.attributes)
            self.format.check_companions(self.obj, attributes, self._given_options)
            self.format.validate_index(url, attributes, sidecar.tables, sidecar.blob_sizes(), sidecar.object_info.size)
        except DataplugError:
            raise
        except (ArithmeticError, LookupError, ValueError, TypeError, MemoryError, RecursionError) as exc:
            raise CorruptIndexError(url, f"{self.format.name} index does not decode: {type(exc).__name__}: {str(exc)[:200]}") from exc
        return attributes

    def _check_fresh(self, sidecar: Sidecar, info: ObjectInfo | None) -> None:
        """Refuse an index whose object, or one of its companions (:meth:`DataFormat.companions`), changed."""
        if info is None:
            info = self.obj.info()
        if info != sidecar.object_info:
            raise stale_error(self.url, sidecar.object_info, info)
        for companion, indexed in self.format.companions(self.obj, self._attributes):
            companion.check_unchanged(indexed)

    @property
    def attributes(self) -> Any:
        """The format's typed, immutable attributes (e.g. ``co.attributes.rows``)."""
        self.index()
        return self._attributes

    def get_attribute(self, key: str) -> Any:
        return getattr(self.attributes, key)

    def __getitem__(self, key: str) -> Any:
        try:
            return self.get_attribute(key)
        except AttributeError:
            raise KeyError(key) from None

    def clean(self) -> None:
        """Delete this object's index for this format (the object is untouched)."""
        if not self._located:
            self._locate(_Operation(self.obj, look=False))
        delete_sidecar(self.index_location)
        self._sidecar = self._attributes = None
        self._located = False

    def preprocess(
        self,
        parallel_config: dict[str, Any] | None = None,
        extra_args: dict[str, Any] | None = None,
        chunk_size: int | None = None,
        force: bool = False,
        debug: bool = False,
        executor: Any = None,
        progress: bool | None = None,
        **options: Any,
    ) -> CloudObject:
        """Build the index with one read-only pass (a map over ``chunk_size`` byte ranges where the format
        allows), write it to the index location, and keep it loaded.

        Skipped when a fresh index built with the same options already exists, unless ``force=True``; a
        missing, stale or corrupt index, one of another object, or one built with other options than those
        given now is rebuilt (a published index refuses instead), and :attr:`built_index` says which it was.
        The index location is checked to be writable before the pass (:class:`IndexLocationNotWritableError`). Format options come as keyword arguments or, as
        in the original, in ``extra_args``. ``executor`` is any engine :func:`dataplug.executors.map_ordered` accepts: a
        ``concurrent.futures.Executor`` (default: a local thread pool), a ``multiprocessing`` Pool, a
        ``dask.distributed.Client``, a ``lithops.FunctionExecutor`` or the ``ray`` module.
        ``parallel_config`` and ``debug`` are accepted for compatibility and ignored.
        """
        if parallel_config:
            warnings.warn("parallel_config is ignored by dataplug; pass executor= instead", stacklevel=2)
        return self._preprocess(_Operation(self.obj), extra_args, chunk_size, force, executor, progress, options)

    def _preprocess(
        self,
        op: _Operation,
        extra_args: dict[str, Any] | None,
        chunk_size: int | None,
        force: bool,
        executor: Any,
        progress: bool | None,
        options: dict[str, Any],
    ) -> CloudObject:
        """:meth:`preprocess` within the operation ``op``: one metadata request and one read of each manifest in all."""
        self._opening = None
        explicit, given = self._resolve_options({**(extra_args or {}), **options})
        self.built_index = False
        info = op.info
        if not force and self._has_fresh_index(op):
            recorded = self.index().options
            # A published index cannot be rebuilt: only an option it records with another value refuses it
            # (indexes published before options were recorded are taken as built with the ones given).
            differing = _differing_options({k: v for k, v in explicit.items() if k in recorded} if self.published else explicit, recorded)
            if not differing:
                return self
            if self.published:
                raise IndexLocationNotWritableError(
                    self.index_location.url,
                    f"the published index was built with other options ({differing}) and is read-only; {_INDEX_IT_YOURSELF}",
                )
        if self.published:
            try:
                self._load_index(op)
                self._check_fresh(self.index(), info)
            except DataplugError as exc:
                raise IndexLocationNotWritableError(self.index_location.url, f"a published index is read-only, and this one does not fit {self.url}: {exc.cause}") from None
            raise IndexLocationNotWritableError(self.index_location.url, f"a published index is read-only: preprocess(force=True) cannot rebuild it; {_INDEX_IT_YOURSELF}")
        if self._format_from_index:
            # The object is indexed anew: its format, and the options sniffing finds (a CSV's delimiter), are
            # detected from its bytes again, as they may have changed.
            self._format_from_index = False
            self.detection = detect_format(op.obj, info)
            if self.detection.format != self.format.name:
                self.format = get_format(self.detection.format)
                self._sidecar = self._attributes = None
                self._locate(op)
            return self._preprocess(op, extra_args, chunk_size, force, executor, progress, options)
        location = self._locate(op)
        previous = op.manifest(location)
        generation = begin_write(location)
        started = time.monotonic()
        if info.size == 0:
            warnings.warn(f"{self.url}: the object is empty, so every slice of it will be empty", EmptyResultWarning, stacklevel=3)
        try:
            sidecar, data = self._build_index(op, executor, chunk_size, progress, given, location.url)
        except BaseException:
            abandon_write(location, generation)
            raise
        if time.monotonic() - started > REREAD_MANIFEST_AFTER:
            # Another run may have published an index during a long pass: the new manifest must record that
            # one as superseded (kept for GENERATION_GRACE), not leave its generation to be taken for an orphan.
            with contextlib.suppress(CorruptIndexError):
                previous = read_manifest(location)
        self._sidecar = write_sidecar(location, sidecar, generation, previous if isinstance(previous, dict) else None)
        self._attributes = data.attributes
        self.built_index = True
        return self

    def _resolve_options(self, explicit: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """The options given (``explicit``) and those the index is built with (the detected ones under them);
        an option the format does not take is a :class:`StrategyArgumentError` naming the ones it takes."""
        found = dict(self.detection.options) if self.detection and self.detection.format == self.format.name else {}
        given = {**found, **explicit}
        self._given_options = dict(explicit)
        known = self.format.all_options()
        unknown = sorted(set(given) - set(known))
        if unknown:
            listed = "; ".join(f"{name}: {help_text}" for name, help_text in sorted(known.items())) or "none"
            raise StrategyArgumentError(self.url, f"{self.format.name} has no preprocessing option {', '.join(map(repr, unknown))}. Its options: {listed}")
        return explicit, given

    def _build_index(
        self, op: _Operation, executor: Any, chunk_size: int | None, progress: bool | None, given: dict[str, Any], where: str
    ) -> tuple[Sidecar, IndexData]:
        """The index pass over the object as ``op`` took it, and the :class:`Sidecar` it makes, not written
        (``where``: the index location named by errors)."""
        info = op.info
        assert info is not None
        data = self._index_pass(op, executor, chunk_size, progress, given)
        sidecar = Sidecar(
            format_name=self.format.name,
            format_version=self.format.index_version,
            object_url=self.url,
            object_info=info,
            attributes=self.format.attributes_to_json(data.attributes),
            tables=data.tables,
            blobs=dict(data.blobs),
            options=_json_options(given),
        )
        self.format.validate_index(where, data.attributes, data.tables, {k: len(v) for k, v in data.blobs.items()}, info.size)
        return sidecar, data

    def build_index(
        self, info: ObjectInfo, head: bytes = b"", executor: Any = None, chunk_size: int | None = None, progress: bool | None = None, **options: Any
    ) -> Sidecar:
        """Run the index pass and return the index it builds, written nowhere and not kept: for a caller that
        stores indexes itself (a dataset packs those of its small objects into shared files).

        ``info`` is the object's size and identity (from a listing: no metadata request is made) and
        ``head`` its first bytes, or all of them, when read already (the pass then reads none of them again).
        """
        self._opening = None
        _, given = self._resolve_options(options)
        sidecar, _ = self._build_index(_Operation(self.obj, info=info, head=head), executor, chunk_size, progress, given, self.index_location.url)
        return sidecar

    def adopt_index(self, sidecar: Sidecar, built: bool = False) -> CloudObject:
        """Keep ``sidecar`` as this object's loaded index without reading its location (a dataset read it
        from a pack, or had it built), after the checks :meth:`index` makes of one it loads: its object, its
        format and its tables (:class:`CorruptIndexError`, :class:`IndexMissingError`). ``built`` sets
        :attr:`built_index`. Freshness is the caller's to check (a dataset compares its listing)."""
        if canonical_url(sidecar.object_url) != canonical_url(self.url):
            raise IndexMissingError(self.url, f"the index given belongs to another object ({sidecar.object_url})")
        if sidecar.format_name != self.format.name or sidecar.format_version != self.format.index_version:
            raise IndexMissingError(self.url, f"the index given is a {sidecar.format_name} v{sidecar.format_version} index, not {self.format.name} v{self.format.index_version}")
        attributes = self._checked_attributes(sidecar, self.index_location.url)
        self._opening = None
        self._sidecar, self._attributes = sidecar, attributes
        self.built_index = built
        return self

    def _index_pass(self, op: _Operation, executor: Any, chunk_size: int | None, progress: bool | None, given: dict[str, Any]) -> IndexData:
        """The format's pass over the object as ``op`` took it: a change of the object during the pass is a
        :class:`StaleIndexError` (from the pinned reads, or one metadata request after the pass where the
        store cannot pin)."""
        info = op.info
        ctx = PreprocessContext(op.obj, info, executor, chunk_size, progress, given)
        try:
            data: IndexData = self.format.preprocess(ctx)
        except InvalidFormatError as exc:
            hint = wrong_format_hint(self.url, op.obj.first_bytes(64 * 1024), self.format.name)
            if hint is None:
                raise
            raise type(exc)(self.url, f"{exc.cause}; {hint}", exc.offset, exc.line) from exc
        except StaleIndexError:
            raise StaleIndexError(self.url, "the object changed while it was being indexed; nothing was written") from None
        if not op.obj.pinned and self.obj.info() != info:
            raise StaleIndexError(self.url, "the object changed while it was being indexed; nothing was written")
        return data

    @property
    def index_options(self) -> dict[str, Any]:
        """The preprocessing options the loaded index was built with (those given and those detected)."""
        return dict(self.index().options)

    def partition(self, strategy: Callable[..., list[Any]] | str, *args: Any, **kwargs: Any) -> list[Any]:
        """Slices from ``strategy(self, *args, **kwargs)``; refuses a missing or stale index. ``strategy`` is
        a strategy function or its name (``"partition_num_chunks"``, see ``co.format.all_strategies()``)."""
        if isinstance(strategy, str):
            strategies = self.format.all_strategies()
            if strategy not in strategies:
                raise StrategyArgumentError(self.url, f"{self.format.name} has no strategy {strategy!r}; it has {', '.join(sorted(strategies))}")
            strategy = strategies[strategy]
        data_format = getattr(strategy, "data_format", None)
        if data_format is None:
            raise DataplugError(self.url, f"{getattr(strategy, '__name__', strategy)!r} is not a dataplug strategy (decorate it with @strategy)")
        slices = strategy(self, *args, **kwargs)
        _warn_empty(self, slices)
        return slices

    def plot_partition(self, slices: list[Any], path: str) -> str:
        """Draw ``slices`` over this object to a PNG at ``path`` (needs ``pip install "dataplug[plot]"``):
        LiDAR cells over a point-density map, slice sizes for record formats, and the gzip checkpoints
        along the object when it is compressed. Returns ``path``."""
        from dataplug.plot import plot_partition

        return plot_partition(self, slices, path)

    # -- the long-lived reader ----------------------------------------------------------------------------

    def reader(self, **kwargs: Any) -> Reader:
        """A new long-lived reader of the object as indexed (``self.format.reader_class``; a context manager):
        the file or session kept open, the identity checked on an interval, an LRU of decoded units. Keywords:
        ``check_interval`` (seconds, 0: every call, None: only at opening) and ``cache_bytes``; see
        :class:`dataplug.reader.Reader`."""
        return self.format.reader_class(self, **kwargs)

    def kept_reader(self) -> Reader:
        """The reader this object keeps for the calls that use one implicitly (repeated ``region()`` calls,
        ``partition_regions()``, COG windows): made on first use with the defaults, made again when the index
        was reloaded or the reader closed; closed by :meth:`close`, dropped when the object is pickled."""
        kept = self._kept_reader
        if kept is None or kept.closed or kept.sidecar is not self._sidecar:
            if kept is not None:
                kept.close()
            kept = self._kept_reader = self.reader()
        return kept

    def close(self) -> None:
        """Close the reader this object keeps (:meth:`kept_reader`), if any; the object stays usable."""
        kept, self._kept_reader = self._kept_reader, None
        if kept is not None:
            kept.close()

    def __enter__(self) -> CloudObject:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_kept_reader": None}

    def __repr__(self) -> str:
        return f"CloudObject<{self.format.name}>({self.url})"



def _json_options(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` as the manifest stores them: JSON values (anything else by its ``repr``)."""
    return json.loads(json.dumps(options, default=repr, sort_keys=True))


def _differing_options(explicit: dict[str, Any], stored: dict[str, Any]) -> str:
    """The options given now that the index was not built with, as ``name=value`` text ('' when none).

    An option the index does not record counts as different even when it equals the format's default: the
    index is rebuilt once, and records it from then on."""
    now = _json_options(explicit)
    changed = [name for name in sorted(now) if name not in stored or stored[name] != now[name]]
    return ", ".join(f"{name}={explicit[name]!r} (index: {stored[name]!r})" if name in stored else f"{name}={explicit[name]!r} (index: default)" for name in changed)


def _warn_empty(co: CloudObject, slices: list[Any]) -> None:
    """Warn when a partition holds empty slices because the object has fewer records than slices."""
    counts = [getattr(s, "known_num_records", None) for s in slices]  # never read data to warn
    empty = sum(1 for c in counts if c == 0)
    if empty and len(slices) > 1 and all(c is not None for c in counts):
        records = sum(counts)
        warnings.warn(
            f"{co.url}: {empty} of the {len(slices)} slices are empty ({records} records for {len(slices)} slices); ask for fewer slices",
            EmptyResultWarning,
            stacklevel=3,
        )


def open_url(
    url: str,
    storage_options: dict[str, Any] | None = None,
    *,
    format: type[DataFormat] | str | None = "auto",  # noqa: A002 - the natural keyword here
    index_location: str | None = None,
    index_storage_options: dict[str, Any] | None = None,
    preprocess: bool = True,
    executor: Any = None,
    progress: bool | None = None,
    **options: Any,
) -> CloudObject:
    """Open an object ready to partition: detect its format (unless ``format`` is given) and index it
    when it has no fresh index yet (``preprocess=False`` skips that). ``options`` are the format's
    preprocessing options. Exported as ``dataplug.open``::

        co = dataplug.open("s3://bucket/reads.fastq.gz")
        slices = co.partition("partition_reads_batches", 8)
    """
    co = CloudObject(format, url, storage_options, index_location, index_storage_options)
    if preprocess:
        # Detection took the object's info and read its folder's manifest: the same operation goes on.
        op = co._opening or _Operation(co.obj)
        co._preprocess(op, None, None, False, executor, progress, options)
    return co
