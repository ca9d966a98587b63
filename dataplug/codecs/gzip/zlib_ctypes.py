"""zlib's inflate through ctypes, for the checkpoint pass (:mod:`dataplug.codecs.gzip.index_pass`).

Python's ``zlib`` module cannot stop at deflate block boundaries (``Z_BLOCK``) nor hand out its window
(``inflateGetDictionary``), which a checkpoint needs; the C library can. zlib-ng is used when the
``zlib-ng`` package is installed: its extension module exports zlib-ng's native ``zng_*`` API, which ctypes
calls without the GIL, so the framing's scan overlaps on the second core (``python
benchmarks/gzip_fastq.py --size-mb 130 --no-s3`` prints the pass ÷ ``gzip -dc``, ratio 3).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import zlib
from typing import Any


class ZStream(ctypes.Structure):
    """zlib's z_stream (zlib.h); uLong is C long, which ctypes.c_ulong matches on every platform."""

    _fields_ = [
        ("next_in", ctypes.c_void_p),
        ("avail_in", ctypes.c_uint),
        ("total_in", ctypes.c_ulong),
        ("next_out", ctypes.c_void_p),
        ("avail_out", ctypes.c_uint),
        ("total_out", ctypes.c_ulong),
        ("msg", ctypes.c_char_p),
        ("state", ctypes.c_void_p),
        ("zalloc", ctypes.c_void_p),
        ("zfree", ctypes.c_void_p),
        ("opaque", ctypes.c_void_p),
        ("data_type", ctypes.c_int),
        ("adler", ctypes.c_ulong),
        ("reserved", ctypes.c_ulong),
    ]


Z_OK, Z_STREAM_END, Z_BUF_ERROR, Z_MEM_ERROR = 0, 1, -5, -4
Z_NO_FLUSH, Z_BLOCK = 0, 5
DT_BITS, DT_LAST_BLOCK, DT_BLOCK_BOUNDARY = 7, 64, 128  # fields of z_stream.data_type after Z_BLOCK


class _ZlibNG:
    """zlib-ng's native API under zlib's names (only what the pass calls). ``zng_stream`` lays out like
    ``z_stream`` where C long is as wide as size_t (LP64), the only platforms it is used on."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        stream = ctypes.POINTER(ZStream)
        lib.zng_inflateInit2.argtypes = [stream, ctypes.c_int]
        lib.zng_inflate.argtypes = [stream, ctypes.c_int]
        lib.zng_inflateReset.argtypes = [stream]
        lib.zng_inflateEnd.argtypes = [stream]
        lib.zng_inflateGetDictionary.argtypes = [stream, ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint)]
        self.inflate, self.inflateReset, self.inflateEnd = lib.zng_inflate, lib.zng_inflateReset, lib.zng_inflateEnd
        self.inflateGetDictionary, self._init = lib.zng_inflateGetDictionary, lib.zng_inflateInit2

    def zlibVersion(self) -> bytes:
        return b""

    def inflateInit2_(self, stream: Any, wbits: int, version: bytes, size: int) -> int:
        return self._init(stream, wbits)


def _zlib_ng() -> _ZlibNG | None:
    """zlib-ng from the ``zlib-ng`` package's extension module, when installed and it exports the API."""
    if ctypes.sizeof(ctypes.c_ulong) != ctypes.sizeof(ctypes.c_size_t):
        return None
    try:
        from zlib_ng import zlib_ng

        lib = ctypes.CDLL(zlib_ng.__file__)
    except (ImportError, OSError):
        return None
    names = ("zng_inflateInit2", "zng_inflate", "zng_inflateReset", "zng_inflateEnd", "zng_inflateGetDictionary")
    return _ZlibNG(lib) if all(hasattr(lib, name) for name in names) else None


@functools.cache
def libz() -> Any:
    """The inflater of the pass: zlib-ng when available, else zlib's C library, found by name or through
    the library Python's zlib module is linked with."""
    fast = _zlib_ng()
    if fast is not None:
        return fast
    stream_p = ctypes.POINTER(ZStream)
    for name in (ctypes.util.find_library("z"), "libz.so.1", "libz.dylib", getattr(zlib, "__file__", None)):
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        if not hasattr(lib, "inflateGetDictionary"):  # zlib >= 1.2.8
            continue
        lib.zlibVersion.restype = ctypes.c_char_p
        lib.inflateInit2_.argtypes = [stream_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.inflate.argtypes = [stream_p, ctypes.c_int]
        lib.inflateReset.argtypes = [stream_p]
        lib.inflateEnd.argtypes = [stream_p]
        lib.inflateGetDictionary.argtypes = [stream_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint)]
        return lib
    raise RuntimeError("dataplug needs zlib's C library (libz, version >= 1.2.8) to index gzip objects")
