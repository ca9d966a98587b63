"""The original Dataplug's import path of its gzip text format: :class:`~dataplug.formats.generic.text.GZipText`,
an alias of :class:`~dataplug.formats.generic.text.UTF8Text`, with its strategies."""

from __future__ import annotations

from dataplug.formats.generic.text import GZipText, TextSlice, partition_chunk_lines, partition_num_chunks

__all__ = ["GZipText", "TextSlice", "partition_chunk_lines", "partition_num_chunks"]
