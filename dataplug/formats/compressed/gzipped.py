"""The original Dataplug's gzip text format: :class:`GZipText` is :class:`~dataplug.formats.generic.text.UTF8Text`
under its old name, with its strategies. The codec (gzip, BGZF, or none) is detected from the bytes."""

from __future__ import annotations

from dataplug.formats.generic.text import TextSlice, UTF8Text, partition_chunk_lines, partition_num_chunks

__all__ = ["GZipText", "TextSlice", "partition_chunk_lines", "partition_num_chunks"]


class GZipText(UTF8Text):
    """Text compressed with gzip (one or many members, BGZF included): ``UTF8Text`` by its original name."""
