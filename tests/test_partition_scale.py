"""partition() at scale (issue 20): 100,000 slices from a loaded index are exact, make no request per slice
(counted through the fault proxy on S3), and each pickles to its own small part, never the partition's
shared plan. Timings are printed by ``python benchmarks/partition_scale.py``, not asserted here."""

from __future__ import annotations

import dataclasses
import gzip
import pickle
import warnings
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np
import pytest

import dataplug
from dataplug.framings.base import readers
from dataplug.framings.lines import CheckpointSpacingWarning, LineIndex
from dataplug.slice import CloudObjectSlice
from dataplug.storage import ObjectInfo, StorageObject
from dataplug.testing.fixtures import make_bucket, proxied_options

SLICES = 100_000
#: Records read back per partition, seeded, besides the first and last slice.
SAMPLED = 40
#: A CSV slice's pickle (URL, identity, anchors, header, names and types of a three-column table, its
#: reader), measured at about 800 bytes plain and 1,000 for gzip at the stream's start ...
PICKLE_BOUND = 1500
#: ... plus, for gzip past the first checkpoint, the checkpoint's stored window (compressed; 32 KiB at most).
WINDOW_BOUND = 32 * 1024


def _records(rows: int) -> list[bytes]:
    """A CSV's records: a header, then rows of which every 29th holds a quoted newline and a doubled quote."""
    out = [b"id,name,note\n"]
    for i in range(rows):
        note = b'"two\nlines, ""quoted"""' if i % 29 == 0 else b"plain"
        out.append(b"%d,n%d,%s\n" % (i, i % 97, note))
    return out


RECORDS = _records(110_000)
DATA = b"".join(RECORDS)


def _put(root: str, options: dict[str, Any], name: str, data: bytes) -> str:
    with fsspec.open(f"{root}/{name}", "wb", **options) as fh:
        fh.write(data)
    return f"{root}/{name}"


def _partition(co: Any, n: int) -> list[Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CheckpointSpacingWarning)  # 30-byte slices of a gzip object
        return co.partition("partition_num_chunks", n)


def _check_exact(slices: list[Any]) -> None:
    """The slices cover every record once, in order, and a seeded sample reads back exactly its records."""
    first = np.array([s.first for s in slices])
    stop = np.array([s.stop for s in slices])
    assert len(slices) == SLICES and [s.number for s in slices] == list(range(SLICES))
    assert first[0] == 1 and stop[-1] == len(RECORDS) and np.array_equal(first[1:], stop[:-1]) and np.all(stop > first)
    picks = [0, SLICES - 1, *np.random.default_rng(20).choice(SLICES, SAMPLED, replace=False).tolist()]
    for k in picks:
        piece = slices[k]
        assert piece.raw() == b"".join(RECORDS[piece.first : piece.stop]), k
        assert piece.num_records == piece.stop - piece.first


@pytest.mark.parametrize("codec", ["none", "gzip"])
def test_100k_slices_on_s3_are_exact_and_ask_nothing_per_slice(fault_proxy, s3_options, codec):
    options = proxied_options(s3_options, fault_proxy)
    url = _put(
        f"s3://{make_bucket(s3_options)}",
        s3_options,
        "t.csv" + (".gz" if codec == "gzip" else ""),
        gzip.compress(DATA, 1) if codec == "gzip" else DATA,
    )
    dataplug.open(url, options, progress=False)
    co = dataplug.open(url, options, progress=False)
    _partition(co, 2)  # the index loaded
    fault_proxy.set_mode(None)
    slices = _partition(co, SLICES)
    asked = [f"{r.method} {r.target}" for r in fault_proxy.requests]
    # Planning reads the loaded index only: at most the one check that the object is unchanged.
    assert len(asked) <= 1 and all(line.startswith("HEAD ") for line in asked), asked
    _check_exact(slices)


def test_100k_slices_locally_are_the_slices_of_the_ordinary_constructor(tmp_path):
    """Every field of every slice equals what the dataclass constructor makes from the index, the span and
    the reader included; pickles carry one slice's part only."""
    url = _put(str(tmp_path), {}, "t.csv.gz", gzip.compress(DATA, 1))
    co = dataplug.open(url, progress=False)
    slices = _partition(co, SLICES)
    _check_exact(slices)
    index = LineIndex.from_tables(co.url, co.index().tables, co.attributes.uncompressed_size, blanks=True)
    picks = np.random.default_rng(7).choice(SLICES, 200, replace=False).tolist()
    a = np.array([slices[k].first for k in picks])
    b = np.array([slices[k].stop for k in picks])
    read = readers(co)
    for k, span in zip(picks, index.spans(a, b)):
        piece = slices[k]
        fields = {f.name: getattr(piece, f.name) for f in dataclasses.fields(piece) if f.name not in ("span", "source")}
        expected = type(piece)(**fields, span=span, source=read(span.start, span.end))
        data = pickle.dumps(piece)
        assert b"LinePlan" not in data and len(data) <= PICKLE_BOUND + WINDOW_BOUND, len(data)
        assert pickle.loads(data) == expected == piece
        assert len(data) == len(pickle.dumps(expected))


def test_a_pickled_partition_holds_no_plan(tmp_path):
    url = _put(str(tmp_path), {}, "t.csv", DATA)
    co = dataplug.open(url, progress=False)
    slices = co.partition("partition_num_chunks", 1000)
    data = pickle.dumps(slices)
    assert b"LinePlan" not in data and len(data) <= 1000 * PICKLE_BOUND
    assert pickle.loads(data) == slices


@dataclass(eq=False)
class _Piece(CloudObjectSlice):
    first: int
    label: str
    twice: int
    weight: float = 1.0


class _Plan:
    """Gives ``twice`` (the row doubled) and counts how often it was asked."""

    fields = frozenset({"twice"})

    def __init__(self) -> None:
        self.asked: list[int] = []

    def resolve(self, row: int) -> dict[str, Any]:
        self.asked.append(row)
        return {"twice": 2 * row}


def _shared() -> dict[str, Any]:
    return {"obj": StorageObject("/nowhere/x"), "object_info": ObjectInfo(10, "i"), "label": "L"}


def test_build_many_makes_what_the_constructor_makes_and_resolves_on_use():
    plan = _Plan()
    pieces = _Piece.build_many(_shared(), {"number": range(3), "first": [5, 6, 7]}, plan)
    assert plan.asked == []  # nothing resolved while planning
    assert pieces[2].twice == 4 and plan.asked == [2]
    pieces[0].number = 9  # renumbered before use (as a dataset partition does): the row still counts
    assert pieces[0] == _Piece(**_shared(), number=9, first=5, twice=0)
    assert pieces[1] == pickle.loads(pickle.dumps(pieces[1])) == _Piece(**_shared(), number=1, first=6, twice=2)
    assert sorted(plan.asked) == [0, 1, 2] and "_plan" not in vars(pieces[1])
    assert pieces[2].twice == 4 and len(plan.asked) == 3  # once per slice
    with pytest.raises(AttributeError):
        pieces[0].nothing  # noqa: B018 - an attribute no field or plan gives


def test_build_many_refuses_a_missing_field_and_honours_post_init():
    with pytest.raises(TypeError, match="twice"):
        _Piece.build_many(_shared(), {"number": range(2), "first": [1, 2]})

    @dataclass(eq=False)
    class Checked(_Piece):
        def __post_init__(self) -> None:
            if self.first < 0:
                raise ValueError("first < 0")

    plan = _Plan()
    built = Checked.build_many(_shared(), {"number": range(2), "first": [1, 2]}, plan)
    assert [p.twice for p in built] == [0, 2] and plan.asked == [0, 1]
    with pytest.raises(ValueError, match="first < 0"):
        Checked.build_many(_shared(), {"number": range(1), "first": [-1], "twice": [0]})
