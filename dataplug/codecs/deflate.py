"""Which inflate the workers run: the fastest zlib-compatible module installed.

Slices inflate gzip checkpoint stretches (:mod:`dataplug.codecs.gzip.inflate`) and BGZF members
(:mod:`dataplug.codecs.bgzf`) through a :class:`Backend`, a module with the interface of Python's ``zlib``
(``decompressobj(wbits, zdict)``, ``decompress(data, wbits)``, ``error``). In order of preference:

* ``isal`` (``isal.isal_zlib``, Intel's ISA-L), when the ``isal`` package is installed;
* ``zlib-ng`` (``zlib_ng.zlib_ng``), a dependency of dataplug, so always there in practice;
* ``zlib``, Python's own, the fallback.

``python benchmarks/inflate.py`` prints each backend's time ÷ Python zlib's, per codec. On Illumina-shaped
reads ISA-L took 0.44 of zlib's CPU time on gzip checkpoint stretches and 0.43 on BGZF members, zlib-ng 0.53
and 0.54; a CSV.gz slice's whole ``to_arrow`` took 0.78 and 0.81. libdeflate (the ``deflate`` package) decodes
whole members only (no window, no streaming), which BGZF members alone could use: it took 0.34 there, too
little over ISA-L to add a dependency for one codec.

All three decode exactly the same bytes and refuse the same data (``tests/test_inflate_backends.py`` checks
it on crafted edge cases), so the choice changes speed only. ``DATAPLUG_INFLATE=zlib`` (or ``zlib-ng``,
``isal``) pins one backend, in every process that inherits the variable: to compare them, or to set a
misbehaving one aside.
"""

from __future__ import annotations

import functools
import importlib
import os
import zlib
from dataclasses import dataclass
from typing import Any

from dataplug.errors import DataplugError

#: Backend names, fastest first, and the module each one imports.
MODULES = {"isal": "isal.isal_zlib", "zlib-ng": "zlib_ng.zlib_ng", "zlib": "zlib"}
ENV = "DATAPLUG_INFLATE"


@dataclass(frozen=True)
class Backend:
    """One inflate implementation with Python ``zlib``'s interface. ``module`` offers ``decompressobj``,
    ``decompress`` and ``error``; decompressor objects offer ``decompress(data, max_length)``, ``eof``,
    ``unused_data`` and ``unconsumed_tail``, as ``zlib``'s do."""

    name: str
    module: Any

    @property
    def error(self) -> type[Exception]:
        """The exception the module raises for corrupt data."""
        return self.module.error  # type: ignore[no-any-return]

    def decompressobj(self, wbits: int, zdict: bytes = b"") -> Any:
        """A streaming decompressor (``wbits`` as zlib's: -15 raw deflate, 31 gzip), primed with ``zdict``."""
        return self.module.decompressobj(wbits, zdict=zdict) if zdict else self.module.decompressobj(wbits)

    def decompress(self, data: bytes | memoryview, wbits: int) -> bytes:
        """One-shot decompression of a whole stream (a gzip member with ``wbits=31``)."""
        return self.module.decompress(data, wbits)  # type: ignore[no-any-return]


@functools.cache
def _load(name: str) -> Backend | None:
    if name == "zlib":
        return Backend(name, zlib)
    try:
        return Backend(name, importlib.import_module(MODULES[name]))
    except ImportError:
        return None


def installed() -> list[Backend]:
    """Every backend that imports here, fastest first (Python's zlib always last)."""
    return [backend for backend in map(_load, MODULES) if backend is not None]


def backend(name: str | None = None) -> Backend:
    """The backend called ``name``, else the one ``DATAPLUG_INFLATE`` names, else the fastest installed.

    A name that is unknown or not installed is a :class:`DataplugError`: a pinned backend that silently fell
    back would measure the wrong thing.
    """
    name = name or os.environ.get(ENV) or None
    if name is None:
        return installed()[0]
    if name not in MODULES:
        raise DataplugError(None, f"inflate backend {name!r} (from {ENV} or the caller) is unknown: choose one of {', '.join(MODULES)}")
    found = _load(name)
    if found is None:
        raise DataplugError(None, f"inflate backend {name!r} is not installed (its module {MODULES[name]} does not import)")
    return found
