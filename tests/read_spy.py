"""A spy on ``StorageObject.read_ranges``, for tests that a slice fetches what it needs in one call."""

from __future__ import annotations

import pytest

from dataplug.storage.object import StorageObject


def read_ranges_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[tuple[int, int]]]]:
    """Every ``read_ranges`` call from now on in the test as (URL, ranges), appended to the list returned;
    the reads themselves go through."""
    calls: list[tuple[str, list[tuple[int, int]]]] = []
    original = StorageObject.read_ranges

    def spy(self, ranges, expect=None, **kwargs):
        calls.append((self.url, list(ranges)))
        return original(self, ranges, expect=expect, **kwargs)

    monkeypatch.setattr(StorageObject, "read_ranges", spy)
    return calls
