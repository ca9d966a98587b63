"""Formats of compressed objects: gzip text."""
