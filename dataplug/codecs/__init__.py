"""Byte sources (codecs): plain, gzip, BGZF, zstd and bzip2, detected from an object's first bytes.

``base`` holds the interface and the registry, ``checkpoints`` the table of where decoding may start that
the seekable codecs share; each codec registers itself on import.
"""

from dataplug.codecs import bgzf, bzip2, plain, zstd  # noqa: F401 - register the built-in codecs
from dataplug.codecs.base import Codec, CodecIndex, LogicalReader, Scanner, detect_codec, get_codec, register_codec, registered_codecs
from dataplug.codecs.checkpoints import CheckpointTable
from dataplug.codecs.gzip import codec as gzip_codec  # noqa: F401

__all__ = ["CheckpointTable", "Codec", "CodecIndex", "LogicalReader", "Scanner", "detect_codec", "get_codec", "register_codec", "registered_codecs"]
