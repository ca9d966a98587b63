"""Hostile inputs to the text formats and their codecs (issue 26): decompression bombs and huge records run
in a child process under an address-space limit and end in a correct result or a clear dataplug error within
a stated time; sidecars edited (and re-signed) by someone who can write them are refused where they lie."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import zstandard

#: The child's address-space limit. Importing dataplug with numpy and pyarrow, and the pass's thread pools,
#: reserve about 1 GiB of address space before any data is read.
LIMIT = 2 * 2**30


def _in_a_bounded_child(script: str, *args: str, limit: int = LIMIT, timeout: float = 240) -> tuple[str, float]:
    """Run ``script`` in a child limited to ``limit`` bytes of address space; its output (it must exit 0)
    and its wall time."""
    prologue = f"import resource, sys\nresource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))\n"
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", prologue + script, *args], capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"the child died ({done.returncode}): {done.stderr[-1500:]}"
    return done.stdout, time.monotonic() - started


# -- 1. zstd: bounded output per decoding step ----------------------------------------------------------------

_LINE = b"0" * 99 + b"\n"


def _zstd_bomb(path: Path, mib: int) -> int:
    """``mib`` MiB of identical lines as one zstd level-19 frame (2 GiB is about 180 KB); returns the lines."""
    block = _LINE * (2**20 // len(_LINE))
    compressor = zstandard.ZstdCompressor(level=19).compressobj(size=len(block) * mib)
    with open(path, "wb") as fh:
        for _ in range(mib):
            fh.write(compressor.compress(block))
        fh.write(compressor.flush())
    return mib * (2**20 // len(_LINE))


_ZSTD_CHILD = """
from dataplug import CloudObject, DataplugError
from dataplug.formats.generic.text import UTF8Text
try:
    co = CloudObject.from_url(UTF8Text, sys.argv[1]).preprocess(progress=False)
    slices = co.partition("partition_num_chunks", 64)
    print(sum(s.num_records for s in slices), len(slices[0].get()), len(slices[-1].get()))
except DataplugError as exc:
    print("refused:", exc)
"""


def test_a_zstd_bomb_decodes_in_bounded_memory(tmp_path):
    """64 KiB of zstd input decoded in one call had no output cap: an 80 KB RLE frame peaked at 3.2 GB, a
    163 KB bomb at 2.4 GB after 166 s. A 2 GiB bomb (about 180 KB) now indexes and reads under 2 GiB of
    address space, in under 3 minutes on a shared 2-core machine."""
    path = tmp_path / "bomb.txt.zst"
    lines = _zstd_bomb(path, 2048)
    assert path.stat().st_size < 300_000
    out, seconds = _in_a_bounded_child(_ZSTD_CHILD, str(path))
    total, first, last = (int(n) for n in out.split())
    assert total == lines and first + last > 0
    assert seconds < 180
