"""Writing a MeasurementSet slice out as a MeasurementSet folder, with python-casacore (the ``ms`` extra).

The index keeps a skeleton of the table (its ``table.dat``, small files, StandardStMan headers and bucket
indexes at their offsets, the subtables whole); laid out in a temporary folder with the column data files
as sparse placeholders of their indexed sizes, casacore opens it and gives the table's description, storage
managers, keywords and info, from which a new table of the slice's rows is made and filled.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dataplug.errors import CorruptIndexError, DataplugError

if TYPE_CHECKING:
    from dataplug.formats.astronomy.ms_slice import MSSlice


def _casacore_tables() -> Any:
    """python-casacore's ``casacore.tables`` module."""
    try:
        from casacore import tables
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("writing a MeasurementSet needs python-casacore: pip install 'dataplug[ms]'") from exc
    return tables


def lay_out_skeleton(url: str, blob: bytes, folder: Path, sizes: dict[str, int]) -> set[str]:
    """Write the skeleton's files under ``folder``: each file at its size (sparse where no piece is kept),
    ``sizes`` the indexed sizes of the main table's files the index names (see ``read_skeleton``).
    Returns the subtables laid out (the folders holding a ``table.dat``)."""
    from dataplug.formats.astronomy.ms import read_skeleton

    pieces = read_skeleton(url, blob, sizes)
    for name, size, offset, data in pieces:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "r+b" if path.exists() else "wb") as fh:
            fh.truncate(max(size, os.fstat(fh.fileno()).st_size))
            fh.seek(offset)
            fh.write(data)
    return {name.split("/")[0] for name, *_ in pieces if name.count("/") == 1 and name.endswith("/table.dat")}


def write_measurement_set(piece: MSSlice, path: Path) -> Path:
    """The slice's rows as a MeasurementSet at ``path`` (a new folder; an existing one is refused)."""
    tables = _casacore_tables()
    if path.exists():
        raise DataplugError(piece.url, f"{path} exists; dump_to writes a new MeasurementSet folder")
    values = piece.get(list(piece.layouts))
    with tempfile.TemporaryDirectory(prefix="dataplug-ms-") as scratch:
        skeleton = Path(scratch) / "skeleton.ms"
        sizes = {name: size for name, (size, _) in piece.files.items()} | {"table.dat": piece.object_info.size}
        subtables = lay_out_skeleton(piece.url, piece.skeleton.read(), skeleton, sizes)
        source = tables.table(str(skeleton), ack=False)
        try:
            desc, dminfo, keywords, info = source.getdesc(), source.getdminfo(), source.getkeywords(), source.info()
        finally:
            source.close()
        for manager in dminfo.values():
            manager.get("SPEC", {}).pop("HYPERCUBES", None)
        out = tables.table(str(path), tabledesc=desc, dminfo=dminfo, nrow=piece.num_records, ack=False)
        try:
            for name, column in values.items():
                if len(column):
                    out.putcol(name, column)
            for name, value in keywords.items():
                if isinstance(value, str) and value.startswith("Table: "):
                    if name not in subtables:
                        raise CorruptIndexError(piece.url, f"the table keyword {name!r} names no subtable of the index's skeleton")
                    shutil.copytree(skeleton / name, path / name)
                    out.putkeyword(name, f"Table: {path / name}")
                else:
                    out.putkeyword(name, value)
            out.putinfo(info)
        finally:
            out.close()
    return path
