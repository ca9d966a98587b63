"""Formats of genomics: FASTQ (plain and gzip)."""
