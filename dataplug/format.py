"""Format plugins: the base class every format derives from, and the registry that finds them by name.

A format is one module: a :class:`DataFormat` subclass (its typed attributes and its preprocessing), its
slice class and its strategies. Third-party formats join the registry with :func:`register_format` or
through the ``dataplug.formats`` entry point group (``name = "package.module:FormatClass"``).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import sys
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Sequence

import numpy as np

from dataplug.errors import CorruptIndexError, DataplugError
from dataplug.reader import Reader
from dataplug.storage import ObjectInfo, StorageObject

ENTRY_POINT_GROUP = "dataplug.formats"

#: Built-in formats, imported on first use so that ``import dataplug`` stays light.
_BUILTIN = {
    "CSV": "dataplug.formats.generic.csv:CSV",
    "UTF8Text": "dataplug.formats.generic.text:UTF8Text",
    "GZipText": "dataplug.formats.compressed.gzipped:GZipText",
    "FASTQGZip": "dataplug.formats.genomics.fastq:FASTQGZip",
    "FASTQ": "dataplug.formats.genomics.fastq:FASTQ",
    "FASTA": "dataplug.formats.genomics.fasta:FASTA",
    "VCF": "dataplug.formats.genomics.vcf:VCF",
    "BED": "dataplug.formats.genomics.bed:BED",
    "GFF": "dataplug.formats.genomics.gff:GFF",
    "BAM": "dataplug.formats.genomics.bam:BAM",
    "LiDARPointCloud": "dataplug.formats.geospatial.laspc:LiDARPointCloud",
    "ImzML": "dataplug.formats.metabolomics.imzml:ImzML",
    "MzML": "dataplug.formats.metabolomics.mzml:MzML",
    "COG": "dataplug.formats.geospatial.cog:COG",
    "COPC": "dataplug.formats.geospatial.copc:CloudOptimizedPointCloud",
    "MeasurementSet": "dataplug.formats.astronomy.ms:MeasurementSet",
}
_REGISTRY: dict[str, type[DataFormat]] = {}


@dataclass(frozen=True)
class Detection:
    """What format detection chose and why (:func:`dataplug.detect.detect_format`; a format's :meth:`DataFormat.sniff`)."""

    #: Registered format name (``get_format`` takes it).
    format: str
    #: The codec under it: ``"none"``, ``"gzip"``, ``"bgzf"``, ...
    codec: str
    #: One line of evidence, e.g. ``"starts with 'LASF'"``.
    reason: str
    #: Other formats that also read this object (pass one as the format to override the choice).
    alternatives: tuple[str, ...] = ()
    #: Options the sniffing found (e.g. a CSV ``delimiter``), to pass to ``preprocess``.
    options: tuple[tuple[str, object], ...] = ()

    def describe(self, override: bool = True) -> str:
        """``CSV (gzip-compressed; 4 columns separated by ','); override with format='UTF8Text'`` (without
        the last part unless ``override``)."""
        codec = "" if self.codec == "none" else f"{self.codec}-compressed; "
        others = f"; override with format={self.alternatives[0]!r}" if self.alternatives and override else ""
        return f"{self.format} ({codec}{self.reason}){others}"


@dataclass(frozen=True)
class Sample:
    """What detection shows each format's :meth:`DataFormat.sniff`: the object's first bytes as stored, and
    decoded by its codec."""

    #: The object's first bytes, as stored.
    raw: bytes
    #: The codec found under them (``"none"`` when uncompressed).
    codec: str
    #: The first bytes after the codec decoded them (at most 32 KiB), without a UTF-8 byte-order mark.
    decoded: bytes
    #: True when ``decoded`` is the whole object.
    complete: bool = False

    def lines(self) -> list[str]:
        """The sample's whole lines as text (the last one dropped when the sample cut it short); none for
        binary data (a NUL byte), so no text format claims it."""
        if b"\x00" in self.decoded:
            return []
        text = self.decoded.decode("utf-8", errors="replace")
        lines = text.splitlines()
        if not self.complete and lines and not text.endswith(("\n", "\r")):
            lines = lines[:-1]
        return lines


#: A view keeps the object's first bytes in hand up to this many (sniffing, schemas and headers read them).
HEAD_CACHE_BYTES = 4 * 2**20


@dataclass(repr=False)
class OperationObject(StorageObject):
    """The object as one operation reads it: with the size and identity taken once (``expect``), and the
    object's first bytes, once read, kept in hand (``head``) so that detection, the format's sniffing and its
    schema sample never ask for them twice.

    Where the store pins reads of this object (its transport pins ``expect``: an S3 ETag or version, a strong
    HTTP ETag, a local file), every read is bound to ``expect``, so a change during the operation fails the
    read itself. Pickled (to a worker) it keeps
    ``expect`` but not the bytes in hand.
    """

    expect: ObjectInfo | None = None
    head: bytes = b""

    @classmethod
    def of(cls, obj: StorageObject, info: ObjectInfo | None, head: bytes = b"") -> OperationObject:
        return cls(obj.url, obj.storage_options, expect=info, head=head)

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "expect": self.expect}

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.expect, self.head = state["expect"], b""

    @property
    def pinned(self) -> bool:
        """Whether reads are bound to :attr:`expect` (else a caller checks the identity once, at the end)."""
        return self.expect is not None and self.transport.pins(self.expect)

    def read_ranges(self, ranges: Sequence[tuple[int, int]], expect: ObjectInfo | None = None, **kwargs: Any) -> list[bytes]:
        """:meth:`StorageObject.read_ranges`, served from :attr:`head` when every range lies in it."""
        ranges = [(int(a), int(b)) for a, b in ranges]
        if ranges and all(0 <= a <= b <= len(self.head) for a, b in ranges):
            return [self.head[a:b] for a, b in ranges]
        out = super().read_ranges(ranges, expect=expect or (self.expect if self.pinned else None), **kwargs)
        for (a, b), data in zip(ranges, out):
            if a == 0 and len(self.head) < len(data) <= HEAD_CACHE_BYTES:
                self.head = data
        return out

    def first_bytes(self, n: int) -> bytes:
        """The object's first ``n`` bytes (fewer when it is shorter), from :attr:`head` when it holds them."""
        size = self.expect.size if self.expect is not None else self.info().size
        return self.read_range(0, min(n, size)) if size else b""


@dataclass
class PreprocessContext:
    """Everything a format's preprocessing may use: the object (an :class:`OperationObject` when
    :class:`~dataplug.cloudobject.CloudObject` runs it: first bytes in hand, reads pinned where the store
    can), its identity and how to run in parallel."""

    obj: StorageObject
    info: ObjectInfo
    executor: Any = None
    chunk_size: int | None = None
    progress: bool | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class IndexData:
    """What preprocessing produces: typed attributes, numeric tables and opaque blobs."""

    attributes: Any
    tables: dict[str, np.ndarray] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)


class DataFormat:
    """Base class of a format plugin.

    Subclasses set ``Attributes`` (a frozen dataclass of JSON-able fields), implement :meth:`preprocess`
    and may override :meth:`validate_index` to bounds-check a loaded index.
    """

    #: Registry name (defaults to the class name) and the version of this format's index layout.
    name: ClassVar[str]
    index_version: ClassVar[int] = 1
    Attributes: ClassVar[type]
    #: Strategies registered with :func:`dataplug.strategies.strategy`, by function name.
    strategies: ClassVar[dict[str, Callable[..., Any]]]
    #: The long-lived reader ``co.reader()`` makes (:class:`dataplug.reader.Reader`, or the format's subclass
    #: with its own calls: ``region()``, ``records()``, ``window()``).
    reader_class: ClassVar[type[Reader]] = Reader
    #: Preprocessing options this format reads, with one line of help each; once a format declares any,
    #: ``preprocess()`` refuses the others, naming the valid ones.
    options: ClassVar[dict[str, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            cls.name = cls.__name__
        cls.strategies = {}
        options = cls.all_options()
        if options and cls.__doc__ is not None:  # so that help(Format) lists them
            listed = "\n".join(f"    {name}: {text}" for name, text in sorted(options.items()))
            cls.__doc__ = f"{inspect.cleandoc(cls.__doc__)}\n\nPreprocessing options (``preprocess(name=value)``):\n\n{listed}\n"

    @classmethod
    def all_options(cls) -> dict[str, str]:
        """Every preprocessing option of this format, its own and those of the formats it derives from."""
        out: dict[str, str] = {}
        for klass in reversed(cls.__mro__):
            out.update(klass.__dict__.get("options", {}))
        return out

    @classmethod
    def all_strategies(cls) -> dict[str, Callable[..., Any]]:
        """Every strategy that applies to this format: its own and those of the formats it derives from."""
        out: dict[str, Callable[..., Any]] = {}
        for klass in reversed(cls.__mro__):
            out.update(klass.__dict__.get("strategies", {}))
        return out

    #: Detection asks formats in decreasing priority (the most specific first) and takes the first answer.
    sniff_priority: ClassVar[int] = 0

    @classmethod
    def sniff(cls, sample: Sample) -> Detection | None:
        """This format's :class:`Detection` when it reads an object that starts like ``sample``, else ``None``.

        Only a class that defines ``sniff`` itself is asked (an alias subclass such as ``FASTQGZip`` is not).
        Binary formats look at ``sample.raw`` (and answer only when ``sample.codec`` is ``"none"``), text
        formats at ``sample.decoded``."""
        return None

    @classmethod
    def detected(cls, sample: Sample, reason: str, alternatives: tuple[str, ...] = (), options: tuple[tuple[str, object], ...] = ()) -> Detection:
        """The :class:`Detection` of this format for ``sample`` (a helper for :meth:`sniff`)."""
        return Detection(cls.name, sample.codec, reason, alternatives, options)

    @classmethod
    def preprocess(cls, ctx: PreprocessContext) -> IndexData:
        """Read the object once (or as a map over byte ranges) and return its index."""
        raise NotImplementedError

    @classmethod
    def companions(cls, obj: StorageObject, attributes: Any) -> list[tuple[StorageObject, ObjectInfo]]:
        """Other objects the index describes too (imzML's ``.ibd``), with their indexed size and identity:
        an index is fresh only while they are unchanged as well."""
        return []

    @classmethod
    def object_url(cls, url: str) -> str:
        """The URL of the object this format indexes when a user names ``url``: the URL itself, except for a
        format whose data is a folder (a MeasurementSet names its main table's ``table.dat``)."""
        return url

    @classmethod
    def index_anchor(cls, url: str) -> str:
        """The URL whose ``.dataplug`` folder holds the object's index by default: the object's own, except for
        a format whose data is a folder, whose index goes beside that folder, never inside it."""
        return url

    @classmethod
    def names_folders(cls) -> bool:
        """True for a format whose data is a folder (it overrides :meth:`object_url`)."""
        return cls.object_url.__func__ is not DataFormat.object_url.__func__  # type: ignore[attr-defined]

    @classmethod
    def check_companions(cls, obj: StorageObject, attributes: Any, given: dict[str, Any]) -> None:
        """Raise :class:`CorruptIndexError` when the index names a companion object that neither the options
        ``given`` to this ``preprocess`` call nor the object's own URL name: whoever can write a sidecar must
        not be able to point reads at another object the reader may read."""

    @classmethod
    def validate_index(cls, url: str, attributes: Any, tables: dict[str, np.ndarray], blob_sizes: dict[str, int], size: int) -> None:
        """Raise :class:`CorruptIndexError` if an index (its tables and the sizes of its blobs) does not fit
        an object of ``size`` bytes."""

    @classmethod
    def attributes_to_json(cls, attributes: Any) -> dict[str, Any]:
        return dataclasses.asdict(attributes)

    @classmethod
    def attributes_from_json(cls, url: str, data: dict[str, Any]) -> Any:
        """Rebuild the typed attributes, checking every field against its annotation."""
        hints = typing.get_type_hints(cls.Attributes)
        fields = dataclasses.fields(cls.Attributes)
        names = {f.name for f in fields}
        # A field added later with a default (e.g. ``encoding``) may be missing from an older index.
        defaulted = {f.name for f in fields if f.default is not dataclasses.MISSING}
        if not set(data) <= names or names - set(data) - defaulted:
            raise CorruptIndexError(url, f"{cls.name} attributes have fields {sorted(data)}, expected {sorted(names)}")
        values = {}
        for name, value in data.items():
            if not _conforms(value, hints[name]):
                raise CorruptIndexError(url, f"{cls.name} attribute {name!r} = {value!r} is not a {hints[name]}")
            values[name] = _tuplify(value)
        return cls.Attributes(**values)


def _tuplify(value: Any) -> Any:
    return tuple(_tuplify(v) for v in value) if isinstance(value, list) else value


def _conforms(value: Any, tp: Any) -> bool:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_conforms(value, a) for a in args)
    if origin in (tuple, list):
        items = args[:1] if origin is list or (len(args) == 2 and args[1] is Ellipsis) else args
        if not isinstance(value, (list, tuple)):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(_conforms(v, a) for v, a in zip(value, args))
        return all(_conforms(v, items[0]) for v in value) if items else True
    if tp is type(None):
        return value is None
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, tp)


def register_format(cls: type[DataFormat]) -> type[DataFormat]:
    """Class decorator: make a format findable by its name (``CloudObject.from_url("CSV", ...)``)."""
    if not (isinstance(cls, type) and issubclass(cls, DataFormat)):
        raise TypeError(f"{cls!r} is not a DataFormat subclass")
    _REGISTRY[cls.name] = cls
    return cls


def get_format(name_or_class: str | type[DataFormat]) -> type[DataFormat]:
    """A format class from its class or registered name (built-ins, decorated classes, entry points), the
    name in any case (``"csv"``, ``"FASTQ"``)."""
    if isinstance(name_or_class, type) and issubclass(name_or_class, DataFormat):
        return name_or_class
    if not isinstance(name_or_class, str):
        raise TypeError(f"expected a DataFormat subclass or its name, not {name_or_class!r}")
    name = name_or_class
    if name not in _REGISTRY:
        known = {n.lower(): n for n in available_formats()}
        name = name if name in known.values() else known.get(name.lower(), name)  # names are case-insensitive
    if name not in _REGISTRY:
        target = _BUILTIN.get(name) or _entry_points().get(name)
        if target is None:
            raise DataplugError(None, f"unknown format {name_or_class!r}; known: {sorted(available_formats())}")
        module, _, attr = target.partition(":")
        _REGISTRY[name] = getattr(importlib.import_module(module), attr)
    return _REGISTRY[name]


def available_formats() -> list[str]:
    """Names of every format dataplug can find."""
    return sorted(set(_BUILTIN) | set(_REGISTRY) | set(_entry_points()))


def _entry_points() -> dict[str, str]:
    """Plugin formats named by the ``dataplug.formats`` entry point: read once per ``sys.path``, since
    reading them scans every installed package's metadata and detection asks for every object."""
    return _entry_points_on(tuple(sys.path))


@functools.lru_cache(maxsize=4)
def _entry_points_on(path: tuple[str, ...]) -> dict[str, str]:
    from importlib.metadata import entry_points

    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
