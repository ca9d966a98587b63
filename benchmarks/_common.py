"""Helpers shared by the benchmark scripts (run them as ``python benchmarks/<name>.py``)."""

from __future__ import annotations

import time
from typing import Any, Callable


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Wall seconds of one call, and its result."""
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def best_of(fn: Callable[[], Any], repeats: int = 2) -> tuple[float, Any]:
    """The shortest of ``repeats`` timed calls (this machine is shared and noisy), and its result."""
    return min((timed(fn) for _ in range(repeats)), key=lambda run: run[0])


def warm_page_cache(path: str) -> None:
    """Read a file once so every contender after it reads from memory."""
    with open(path, "rb") as fh:
        while fh.read(1 << 24):
            pass
