"""Byte sources (codecs): plain, gzip, BGZF, zstd and bzip2, detected from an object's first bytes.

``base`` holds the interface and the registry; each codec registers itself on import.
"""

from dataplug.codecs import bgzf, bzip2, plain, zstd  # noqa: F401 - register the built-in codecs
from dataplug.codecs.gzip import codec as gzip_codec  # noqa: F401
from dataplug.codecs.base import Codec, CodecIndex, LogicalReader, Scanner, detect_codec, get_codec, register_codec

__all__ = ["Codec", "CodecIndex", "LogicalReader", "Scanner", "detect_codec", "get_codec", "register_codec"]
