"""Checkpointed gzip: one indexing pass, then decompression that starts at any checkpoint.

This module is the public face; the work lives in one module per concept:

* :mod:`dataplug.codecs.gzip.index` - what a checkpoint is, and the index of them (``GzipIndex``, and its
  sidecar tables as a :class:`~dataplug.codecs.checkpoints.CheckpointTable`);
* :mod:`dataplug.codecs.gzip.index_pass` - where checkpoints are made: ``build_index``, the sequential pass;
* :mod:`dataplug.codecs.gzip.zlib_ctypes` - zlib / zlib-ng inflate through ctypes, which that pass drives;
* :mod:`dataplug.codecs.gzip.windows` - the 32 KiB windows, kept sparse and compressed;
* :mod:`dataplug.codecs.gzip.inflate` - ``inflate_from``, decoding from one checkpoint (what workers run), with
  the fastest inflate installed (:mod:`dataplug.codecs.deflate`: ISA-L, zlib-ng or Python's zlib);
* :mod:`dataplug.codecs.gzip.headers` - gzip member headers and BGZF's ``BC`` field;
* :mod:`dataplug.codecs.gzip.codec` - all of it as dataplug's ``gzip`` codec (sidecar, readers);
* :mod:`dataplug.codecs.gzip.interop` - ``export_index`` and adopting other tools' indexes, in the formats of
  :mod:`dataplug.codecs.gzip.gzidx` (indexed_gzip, rapidgzip) and :mod:`dataplug.codecs.gzip.gztool` (gztool).
"""

from __future__ import annotations

from dataplug.codecs.gzip.index import (
    DEFAULT_SPACING,
    MIN_DEFAULT_SPACING,
    WINDOW_SIZE,
    Checkpoint,
    GzipIndex,
    default_spacing,
)
from dataplug.codecs.gzip.index_pass import DEFAULT_READ_SIZE, build_index
from dataplug.codecs.gzip.inflate import DEFAULT_CHUNK_SIZE, inflate_from
from dataplug.codecs.gzip.interop import export_index
from dataplug.codecs.gzip.windows import sparse_window

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_READ_SIZE",
    "DEFAULT_SPACING",
    "MIN_DEFAULT_SPACING",
    "WINDOW_SIZE",
    "Checkpoint",
    "GzipIndex",
    "build_index",
    "default_spacing",
    "export_index",
    "inflate_from",
    "sparse_window",
]
