"""Hostile servers, races and planted files (issue 26): every case ends in a clear dataplug error or a correct
result, within bounded time and bytes."""

from __future__ import annotations

import os
import threading
import time
import uuid
import warnings
from pathlib import Path

import pytest

import dataplug.storage.object
import dataplug.storage.retry
import dataplug.storage.stores
from dataplug import CloudObject, StaleIndexError, StorageError
from dataplug.errors import CorruptIndexError, IndexLocationNotWritableError, UnverifiableObjectWarning
from dataplug.storage import RangeIgnoredError, StorageObject
from dataplug.testing.faultproxy import HostileHTTPServer

CSV_DATA = ("id,name,value\n" + "".join(f"{i},name {i},{i * 0.25}\n" for i in range(20000))).encode()


def _csv(server: HostileHTTPServer, tmp_path: Path, **options) -> CloudObject:
    return CloudObject.from_url("CSV", server.url("d.csv"), storage_options=options, index_location=str(tmp_path / "idx"))


def test_a_server_that_ignores_range_is_cut_off_and_named(tmp_path):
    """It claims 3 GiB for every GET and streams them: the client stops where its range ends, and a slice's
    range that does not start at 0 is a RangeIgnoredError, not a download of the whole object per attempt."""
    with HostileHTTPServer({"d.csv": CSV_DATA}) as server:
        co = _csv(server, tmp_path).preprocess(progress=False, chunk_size=64 * 1024)
        server.mode = "ignore-range"
        started = time.monotonic()
        with pytest.raises(RangeIgnoredError, match="ignored the Range request"):
            co.partition("partition_num_chunks", 5)[2].to_arrow()
        took = time.monotonic() - started
        sent = server.sent
    assert took < 20, f"{took:.1f} s"
    assert sent < len(CSV_DATA) + 64 * 2**20, f"the server sent {sent} bytes before the client hung up"


def test_a_server_without_range_support_fails_at_once(tmp_path):
    """``python -m http.server`` answers every range with the whole file. A read from byte 0 takes the start
    of it (the index pass streams the object from there); a slice's range past 0 is one clear error, not five
    downloads of the object per slice ending in a short-body error."""
    with HostileHTTPServer({"d.csv": CSV_DATA}, mode="no-range") as server:
        co = _csv(server, tmp_path).preprocess(progress=False, chunk_size=64 * 1024)
        server.gets.clear()
        with pytest.raises(RangeIgnoredError, match="honour Range"):
            co.partition("partition_num_chunks", 5)[2].to_arrow()
        assert len(server.gets) == 1, f"a range was fetched again: {server.gets}"


def test_a_well_behaved_server_gives_every_row(tmp_path):
    with HostileHTTPServer({"d.csv": CSV_DATA}) as server:
        co = _csv(server, tmp_path).preprocess(progress=False, chunk_size=64 * 1024)
        slices = co.partition("partition_num_chunks", 5)
        assert sum(s.to_arrow().num_rows for s in slices) == 20000


def test_a_stalled_body_fails_within_the_default_bounds(tmp_path, monkeypatch):
    """The store's read timeout and the retry deadline bound a stall (shrunk here from 20 s and 120 s; the
    defaults apply to every store, HTTP included, where aiohttp's own default is 300 s per attempt)."""
    monkeypatch.setattr(dataplug.storage.stores, "READ_TIMEOUT", 0.5)
    monkeypatch.setattr(dataplug.storage.retry, "RETRY_DEADLINE", 2.0)
    with HostileHTTPServer({"d.csv": CSV_DATA}, mode="stall", stall_seconds=5) as server:
        obj = StorageObject(server.url("d.csv"))
        started = time.monotonic()
        with pytest.raises(StorageError, match="failed after"):
            obj.read_range(1000, 60000)
        took = time.monotonic() - started
    assert took < 6, f"{took:.1f} s"


def test_a_server_without_identity_is_warned_about_once(tmp_path):
    with HostileHTTPServer({"d.csv": CSV_DATA}, mode="no-identity") as server:
        obj = StorageObject(server.url("d.csv"))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert obj.info().identity == "unknown"
            obj.info()
        assert [type(w.message) for w in caught] == [UnverifiableObjectWarning]


def test_secrets_are_redacted_from_reprs(tmp_path):
    options = {"key": "AKIAEXAMPLE", "secret": "s3cr3t-value", "token": "tok-value", "client_kwargs": {"region_name": "eu-west-1"}}
    path = tmp_path / "d.csv"
    path.write_bytes(CSV_DATA)
    co = CloudObject.from_url("CSV", str(path)).preprocess(progress=False)
    piece = co.partition("partition_num_chunks", 1)[0]
    piece.obj = StorageObject(piece.obj.url, options)
    for text in (repr(piece), repr(piece.obj), repr(StorageObject("s3://b/k", options))):
        assert "s3cr3t" not in text and "AKIAEXAMPLE" not in text and "tok-value" not in text
        assert "eu-west-1" in text


def test_a_local_file_restored_with_its_old_size_and_mtime_is_stale(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(CSV_DATA)
    co = CloudObject.from_url("CSV", str(path)).preprocess(progress=False)
    before = co.partition("partition_num_chunks", 2)
    stat = path.stat()
    path.write_bytes(CSV_DATA.replace(b"name 1,", b"NAME 1,"))  # same size, other content
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(StaleIndexError):
        CloudObject.from_url("CSV", str(path)).partition("partition_num_chunks", 2)
    with pytest.raises(StaleIndexError):
        before[0].get()


def test_a_planted_link_at_the_temporary_name_is_never_followed(tmp_path, monkeypatch):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    target = tmp_path / "idx" / "manifest.json"
    target.parent.mkdir()
    fixed = uuid.UUID(int=7)
    monkeypatch.setattr(dataplug.storage.object.uuid, "uuid4", lambda: fixed)
    os.symlink(victim, f"{target}.tmp-{fixed.hex}")
    with pytest.raises(IndexLocationNotWritableError):
        StorageObject(str(target)).write_bytes(b"{}")
    assert victim.read_text() == "keep me"


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_loads_during_reindexes_never_see_half_a_manifest(kind, tmp_path, request):
    """Loads racing re-indexes read the manifest in one request: each sees the old or the new one whole."""
    if kind == "local":
        url, options = str(tmp_path / "d.csv"), {}
        Path(url).write_bytes(CSV_DATA)
    else:
        options = request.getfixturevalue("s3_options")
        store = request.getfixturevalue("s3_store")
        url = store.put("d.csv", CSV_DATA)
    CloudObject.from_url("CSV", url, storage_options=options).preprocess(progress=False)
    stop, errors, loads = threading.Event(), [], [0]

    def reindex() -> None:
        while not stop.is_set():
            CloudObject.from_url("CSV", url, storage_options=options).preprocess(progress=False, force=True)

    def load() -> None:
        while not stop.is_set():
            try:
                assert CloudObject.from_url("CSV", url, storage_options=options).attributes.rows == 20000
                loads[0] += 1
            except CorruptIndexError as exc:
                errors.append(exc)

    threads = [threading.Thread(target=reindex)] + [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(6)
    stop.set()
    for t in threads:
        t.join(60)
    assert loads[0] > 20
    assert not errors, f"{len(errors)} of {loads[0] + len(errors)} loads failed: {errors[0]}"


def _generation_files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if p.name != "manifest.json"}


def _named_generation(folder: Path) -> str:
    """The generation the manifest in ``folder`` names."""
    import json

    return json.loads((folder / "manifest.json").read_text())["generation"]


def _generations(folder: Path) -> set[str]:
    return {name.split(".")[0] for name in _generation_files(folder) if name[0].isdigit()}


def _reindex_after_the_grace(path: Path, folder: Path, monkeypatch) -> tuple[str, str]:
    """Re-index with every grace period over; the generations named before and after."""
    import dataplug.sidecar

    before = _named_generation(folder)
    monkeypatch.setattr(dataplug.sidecar, "GENERATION_GRACE", 0)
    monkeypatch.setattr(dataplug.sidecar.time, "time", lambda: time.monotonic() + 10**10)
    CloudObject.from_url("CSV", str(path)).preprocess(progress=False, force=True)
    return before, _named_generation(folder)


def test_a_write_that_died_leaves_nothing_once_its_grace_is_over(tmp_path, monkeypatch):
    """A generation whose write died before its manifest (kill -9) is deleted by a later write once its grace
    period is over: exactly its recorded files; a user's file in the folder stays."""
    import dataplug.sidecar

    path = tmp_path / "d.csv"
    path.write_bytes(CSV_DATA)
    co = CloudObject.from_url("CSV", str(path)).preprocess(progress=False)
    folder = Path(co.index_location.path)
    (folder / "notes.txt").write_text("mine")
    dumps = dataplug.sidecar.json.dumps

    def die_at_the_manifest(obj, **kwargs):
        if isinstance(obj, dict) and "dataplug_index" in obj:
            raise KeyboardInterrupt("killed between the tables and the manifest")
        return dumps(obj, **kwargs)

    monkeypatch.setattr(dataplug.sidecar.json, "dumps", die_at_the_manifest)
    with pytest.raises(KeyboardInterrupt):
        CloudObject.from_url("CSV", str(path)).preprocess(progress=False, force=True)
    monkeypatch.setattr(dataplug.sidecar.json, "dumps", dumps)
    assert len(_generations(folder)) == 2
    before, after = _reindex_after_the_grace(path, folder, monkeypatch)
    assert _generations(folder) == {before, after}  # the one just superseded stays for slices in flight
    assert (folder / "notes.txt").read_text() == "mine"


def test_concurrent_reindexes_leave_no_orphans(tmp_path, monkeypatch):
    """Four processes re-index one object at once: the losers' generations, which no manifest names, are
    collected by a later write."""
    import subprocess
    import sys

    path = tmp_path / "d.csv"
    path.write_bytes(CSV_DATA)
    co = CloudObject.from_url("CSV", str(path)).preprocess(progress=False)
    code = f"from dataplug import CloudObject; CloudObject.from_url('CSV', {str(path)!r}).preprocess(progress=False, force=True)"
    procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(4)]
    assert [p.wait(120) for p in procs] == [0] * 4
    folder = Path(co.index_location.path)
    assert len(_generations(folder)) >= 4
    before, after = _reindex_after_the_grace(path, folder, monkeypatch)
    assert _generations(folder) == {before, after}
    assert CloudObject.from_url("CSV", str(path)).attributes.rows == 20000


# -- imzML: what a sidecar or a file may claim --------------------------------------------------------------


def _imzml(folder: Path, name: str, coords: list[tuple[int, int]]) -> Path:
    """An imzML pair written by pyimzml, one small spectrum per pixel."""
    pytest.importorskip("pyimzml")
    import numpy as np
    from pyimzml.ImzMLWriter import ImzMLWriter

    with ImzMLWriter(str(folder / name), mode="processed") as writer:
        for i, xy in enumerate(coords):
            writer.addSpectrum(np.array([100.0 + i, 150.0]), np.array([1.0, 2.0 + i]), xy)
    return folder / f"{name}.imzML"


def test_a_sidecar_cannot_point_slices_at_another_ibd(tmp_path):
    """A crafted index naming another object as the .ibd is refused; the user can still choose it."""
    import json

    path = _imzml(tmp_path, "x", [(1, 1), (2, 1), (1, 2)])
    other = tmp_path / "private.ibd"
    other.write_bytes((tmp_path / "x.ibd").read_bytes())
    co = CloudObject.from_url("ImzML", str(path)).preprocess(progress=False)
    manifest = Path(co.index_location.path) / "manifest.json"
    crafted = json.loads(manifest.read_text())
    crafted["attributes"]["ibd_url"] = str(other)
    manifest.write_text(json.dumps(crafted))
    with pytest.raises(CorruptIndexError, match="not beside"):
        CloudObject.from_url("ImzML", str(path)).partition("partition_num_chunks", 2)
    chosen = CloudObject.from_url("ImzML", str(path)).preprocess(progress=False, ibd_url=str(other))
    assert chosen.attributes.ibd_url == str(other)
    assert sum(s.num_records for s in chosen.partition("partition_num_chunks", 2)) == 3


def test_an_ion_image_too_large_to_allocate_is_refused(tmp_path):
    """A pixel at x = 10^9 made ion_image allocate 30 GiB and die with a bare MemoryError."""
    from dataplug.errors import InvalidFormatError
    from dataplug.formats.metabolomics.imzml import ion_image

    path = _imzml(tmp_path, "far", [(1, 1), (10**9, 2)])
    co = CloudObject.from_url("ImzML", str(path)).preprocess(progress=False)
    with pytest.raises(InvalidFormatError, match="GiB limit"):
        ion_image(co, 100.0, 0.5)
    near = CloudObject.from_url("ImzML", str(_imzml(tmp_path, "near", [(1, 1), (3, 2)]))).preprocess(progress=False)
    assert ion_image(near, 100.0, 0.5).shape == (2, 3)


def test_a_table_no_format_asks_for_is_never_read(tmp_path):
    """A crafted manifest adding a large table (910 MB in the attack) costs nothing: tables load when used."""
    import hashlib
    import io
    import json

    import numpy as np

    from dataplug.storage.object import read_stats

    path = tmp_path / "d.csv"
    path.write_bytes(CSV_DATA)
    co = CloudObject.from_url("CSV", str(path)).preprocess(progress=False)
    folder = Path(co.index_location.path)
    manifest = json.loads((folder / "manifest.json").read_text())
    generation = manifest["generation"]
    buf = io.BytesIO()
    np.save(buf, np.zeros(4 * 2**20, np.float64), allow_pickle=False)
    (folder / f"{generation}.extra.npy").write_bytes(buf.getvalue())
    manifest["tables"]["extra"] = {"file": f"{generation}.extra.npy", "bytes": len(buf.getvalue()), "sha256": hashlib.sha256(buf.getvalue()).hexdigest()}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    read_stats.reset()
    fresh = CloudObject.from_url("CSV", str(path))
    assert sum(s.num_records for s in fresh.partition("partition_num_chunks", 4)) == 20000
    assert not [url for url in read_stats.bytes if url.endswith(".extra.npy")]


@pytest.mark.parametrize("strategy, count", [("partition_num_chunks", 10**7), ("partition_num_chunks", 100_001)])
def test_a_typed_slice_count_over_the_limit_is_refused_at_once(tmp_path, strategy, count):
    """partition_num_chunks(co, 10**7) on a small object built 10^7 slices (3-10 GB) for every format."""
    from dataplug import StrategyArgumentError

    path = tmp_path / "d.csv"
    path.write_bytes(CSV_DATA)
    co = CloudObject.from_url("CSV", str(path)).preprocess(progress=False)
    started = time.monotonic()
    with pytest.raises(StrategyArgumentError, match="MAX_SLICES"):
        co.partition(strategy, count)
    assert time.monotonic() - started < 1
    assert len(co.partition(strategy, 100_000)) == 100_000  # the limit itself is allowed


def test_a_cog_grid_over_the_limit_is_refused(tmp_path):
    """grid_partition_strategy(co, 10**4) made 10^8 slices (stopped at 22.5 GB)."""
    tifffile = pytest.importorskip("tifffile")
    import numpy as np

    from dataplug import StrategyArgumentError

    path = tmp_path / "t.tif"
    tifffile.imwrite(path, np.zeros((64, 64), np.uint8), tile=(32, 32))
    co = CloudObject.from_url("COG", str(path)).preprocess(progress=False)
    with pytest.raises(StrategyArgumentError, match="10000 x 10000 slices"):
        co.partition("grid_partition_strategy", 10**4)


# -- native code fed headers: checked before laspy and lazrs see them ------------------------------------------

_CHILD = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, 3 * 2**30))
from dataplug import CloudObject, InvalidFormatError
try:
    CloudObject.from_url("LiDARPointCloud", sys.argv[1]).preprocess(progress=False)
except InvalidFormatError as exc:
    print("refused:", exc.cause)
"""


def _in_a_bounded_child(path: Path) -> str:
    """Index ``path`` in a child process limited to 3 GiB of address space; its output (it must exit 0)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _CHILD, str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"the child died ({done.returncode}): {done.stderr[-800:]}"
    return done.stdout


def _laz(tmp_path: Path) -> tuple[Path, bytearray]:
    laspy = pytest.importorskip("laspy")
    import numpy as np

    las = laspy.LasData(laspy.LasHeader(point_format=3, version="1.2"))
    rng = np.random.default_rng(4)
    las.x, las.y, las.z = rng.uniform(0, 100, 3000), rng.uniform(0, 100, 3000), rng.uniform(0, 10, 3000)
    path = tmp_path / "c.laz"
    las.write(str(path), do_compress=True)
    return path, bytearray(path.read_bytes())


def test_a_laz_chunk_table_claiming_two_billion_chunks_is_refused(tmp_path):
    """lazrs allocated 34 GB for it and the process aborted (SIGABRT), with no Python exception."""
    import struct

    path, data = _laz(tmp_path)
    data_start = struct.unpack("<I", data[96:100])[0]
    table = struct.unpack("<q", data[data_start : data_start + 8])[0]
    data[table + 4 : table + 8] = struct.pack("<I", 2**31 - 1)
    path.write_bytes(data)
    assert "claims 2147483647 chunks" in _in_a_bounded_child(path)


def test_a_las_header_claiming_two_billion_vlrs_is_refused(tmp_path):
    """laspy built VLRs for 260 s, up to 7.6 GB."""
    import struct

    path, data = _laz(tmp_path)
    data[100:104] = struct.pack("<I", 2**31)
    path.write_bytes(data)
    started = time.monotonic()
    assert "VLRs cannot fit" in _in_a_bounded_child(path)
    assert time.monotonic() - started < 30


def test_a_location_that_cannot_be_listed_still_takes_an_index(tmp_path, monkeypatch):
    """Collecting orphans lists the location; where listing is refused, the index is written all the same."""
    from dataplug.errors import AccessDeniedError

    def refuse(self):
        raise AccessDeniedError(self.url, "access denied (listing)")

    monkeypatch.setattr(StorageObject, "list_names", refuse)
    path = tmp_path / "d.csv"
    path.write_bytes(CSV_DATA)
    co = CloudObject.from_url("CSV", str(path)).preprocess(progress=False)
    assert co.built_index and CloudObject.from_url("CSV", str(path)).attributes.rows == 20000


def test_a_presigned_urls_signature_is_redacted():
    url = "https://b.s3.amazonaws.com/k.csv?X-Amz-Algorithm=AWS4&X-Amz-Credential=AKIA/x&X-Amz-Signature=abc123&X-Amz-Security-Token=tok9"
    text = repr(StorageObject(url))
    assert "abc123" not in text and "tok9" not in text and "AKIA" not in text and "X-Amz-Algorithm=AWS4" in text


def test_binary_data_is_claimed_by_no_text_format():
    """A NUL byte after a text format's signature is binary data, not FASTA or VCF."""
    from dataplug.detect import sniff
    from dataplug.errors import InvalidFormatError

    for head in (b">seq\n\x00\x01\x02\n", b"##fileformat=VCFv4.2\n\x00\x00\n"):
        with pytest.raises(InvalidFormatError, match="NUL"):
            sniff("x", head, complete=True)
