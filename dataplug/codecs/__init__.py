"""Codecs: decompression with checkpoints, so that workers can start decoding in the middle of an object."""
