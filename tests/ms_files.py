"""Seeded MeasurementSets written with python-casacore for the MeasurementSet tests and benchmark: a tiled
complex DATA column, a tiled FLAG column, UVW and the scalar columns in a StandardStMan, rows ordered by
time then baseline (as correlators write them)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np


def make_ms(
    path: Path,
    antennas: int = 12,
    times: int = 120,
    channels: int = 64,
    correlations: int = 4,
    seed: int = 0,
    tile_rows: int = 32,
    shaped: bool = False,
    ssm_bucket: int | None = None,
) -> Path:
    """Write a MeasurementSet of ``antennas * (antennas - 1) / 2`` baselines x ``times`` integrations at
    ``path``; DATA is complex64 (``channels`` x ``correlations``) in a TiledColumnStMan (a TiledShapeStMan
    when ``shaped``) with tiles of ``tile_rows`` rows. With ``ssm_bucket``, TIME, ANTENNA1, ANTENNA2 and UVW
    go to a second StandardStMan of buckets of that many bytes, so that a small table's bucket index spans
    several index buckets. Returns ``path``."""
    from casacore.tables import default_ms, makearrcoldesc, maketabdesc

    rng = np.random.default_rng(seed)
    cell = [channels, correlations]
    desc = maketabdesc(
        [
            makearrcoldesc("DATA", 0j, shape=cell, valuetype="complex", options=4),
            makearrcoldesc("FLAG", False, shape=cell, valuetype="boolean", options=4),
            makearrcoldesc("WEIGHT", 1.0, shape=[correlations], valuetype="float", options=5),
            makearrcoldesc("SIGMA", 1.0, shape=[correlations], valuetype="float", options=5),
        ]
    )
    tile = [correlations, channels, tile_rows]
    manager = "TiledShapeStMan" if shaped else "TiledColumnStMan"
    dminfo = {
        "*1": {"TYPE": manager, "NAME": "TiledData", "SPEC": {"DEFAULTTILESHAPE": tile}, "COLUMNS": ["DATA"]},
        "*2": {"TYPE": "TiledColumnStMan", "NAME": "TiledFlag", "SPEC": {"DEFAULTTILESHAPE": tile}, "COLUMNS": ["FLAG"]},
    }
    if ssm_bucket is not None:
        columns = ["TIME", "ANTENNA1", "ANTENNA2", "UVW"]
        dminfo["*3"] = {"TYPE": "StandardStMan", "NAME": "SmallBuckets", "SPEC": {"BUCKETSIZE": ssm_bucket}, "COLUMNS": columns}
    baselines = list(itertools.combinations(range(antennas), 2))
    rows = len(baselines) * times
    table = default_ms(str(path), desc, dminfo)
    try:
        table.addrows(rows)
        start = 4.9e9
        time = np.repeat(start + 10.0 * np.arange(times), len(baselines))
        table.putcol("TIME", time)
        table.putcol("TIME_CENTROID", time)
        table.putcol("INTERVAL", np.full(rows, 10.0))
        table.putcol("EXPOSURE", np.full(rows, 9.5))
        table.putcol("ANTENNA1", np.tile([a for a, _ in baselines], times).astype(np.int32))
        table.putcol("ANTENNA2", np.tile([b for _, b in baselines], times).astype(np.int32))
        table.putcol("SCAN_NUMBER", (np.arange(rows) // (rows // 3 + 1) + 1).astype(np.int32))
        table.putcol("FLAG_ROW", rng.random(rows) < 0.02)
        table.putcol("UVW", rng.normal(0, 500, (rows, 3)))
        table.putcol("WEIGHT", rng.random((rows, correlations)).astype(np.float32))
        table.putcol("SIGMA", rng.random((rows, correlations)).astype(np.float32))
        data = (rng.normal(size=(rows, channels, correlations)) + 1j * rng.normal(size=(rows, channels, correlations))).astype(np.complex64)
        table.putcol("DATA", data)
        table.putcol("FLAG", rng.random((rows, channels, correlations)) < 0.1)
    finally:
        table.close()
    with _open(path / "ANTENNA") as antenna:
        antenna.addrows(antennas)
        antenna.putcol("NAME", [f"ANT{i:02d}" for i in range(antennas)])
        antenna.putcol("POSITION", rng.normal(0, 1000, (antennas, 3)))
        antenna.putcol("DISH_DIAMETER", np.full(antennas, 25.0))
    return path


def _open(path: Path) -> Any:
    from casacore.tables import table

    return table(str(path), readonly=False, ack=False)


def folder_files(path: Path) -> dict[str, bytes]:
    """Every file of the MeasurementSet at ``path`` by its path relative to the folder's parent
    (``obs.ms/table.dat`` first)."""
    files = {f"{path.name}/table.dat": (path / "table.dat").read_bytes()}
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        files.setdefault(f"{path.name}/{file.relative_to(path).as_posix()}", file.read_bytes())
    return files
