"""Formats of general use: CSV and plain text."""
