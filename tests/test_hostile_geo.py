"""A sidecar that lies, re-signed as an attacker who can write it would (each table's SHA-256 recomputed in the
manifest), ends in a CorruptIndexError naming the object and what disagrees, never in wrong pixels or
points: COG tile tables against the TIFF's own IFDs (issue 26, section 5), LAS/LAZ block bounds and COPC node
cubes against the points a slice decodes."""

from __future__ import annotations

import io

import numpy as np
import pytest

laspy = pytest.importorskip("laspy")
lazrs = pytest.importorskip("lazrs")
tifffile = pytest.importorskip("tifffile")
pytest.importorskip("imagecodecs")

from dataplug import CloudObject, CorruptIndexError
from dataplug.formats.geospatial import cog, copc, laspc
from dataplug.storage import plan
from dataplug.storage.object import read_stats
from dataplug.testing.data import las_bytes, laz_bytes
from dataplug.testing.sidecar import npy, put_entry, read_manifest, write_manifest
from tests.copc_files import write_copc

# -- re-signing a sidecar ----------------------------------------------------------------------------------


def resign(co: CloudObject, changes: dict[str, np.ndarray], attributes: dict | None = None) -> CloudObject:
    """Write ``changes`` over tables of ``co``'s sidecar and re-sign them (bytes and SHA-256 in the manifest),
    as anyone who can write the sidecar can; returns a fresh CloudObject that loads the lying index."""
    loc = co.index_location
    manifest = read_manifest(loc)
    for name, table in changes.items():
        put_entry(loc, manifest, "tables", name, npy(np.ascontiguousarray(table)))
    manifest["attributes"].update(attributes or {})
    write_manifest(loc, manifest)
    return CloudObject.from_url(co.format, co.url, storage_options=co.storage_options)


def table(co: CloudObject, name: str) -> np.ndarray:
    return np.array(co.index().tables[name])


# -- COG ---------------------------------------------------------------------------------------------------


def cog_file(store, name: str = "c.tif", sparse: bool = False) -> tuple[CloudObject, np.ndarray]:
    """A tiled deflate GeoTIFF (tifffile) of 4 x 5 tiles of 32 x 32 with one overview; with ``sparse`` its
    tile (1, 1) is left out (offset and byte count 0), as a writer may."""
    rng = np.random.default_rng(5)
    data = rng.integers(0, 60000, size=(128, 160), dtype=np.uint16)
    buf = io.BytesIO()
    with tifffile.TiffWriter(buf) as tif:
        tif.write(data, tile=(32, 32), compression="zlib", subifds=0, metadata=None)
        tif.write(data[::2, ::2].copy(), tile=(32, 32), compression="zlib", subfiletype=1, metadata=None)
    raw = bytearray(buf.getvalue())
    if sparse:
        with tifffile.TiffFile(io.BytesIO(bytes(raw))) as tif:
            offsets, counts = tif.pages[0].tags[324], tif.pages[0].tags[325]
            for tag in (offsets, counts):
                dtype = np.dtype(tif.byteorder + {3: "u2", 4: "u4", 16: "u8"}[int(tag.dtype)])
                raw[tag.valueoffset + 6 * dtype.itemsize : tag.valueoffset + 7 * dtype.itemsize] = bytes(dtype.itemsize)
        data = data.copy()
        data[32:64, 32:64] = 0
    url = store.put(name, bytes(raw))
    return CloudObject.from_url("COG", url, storage_options=store.options).preprocess(progress=False), data


def read_all(slices) -> None:
    for piece in slices:
        piece.get()


def test_cog_swapped_tiles_are_refused(store):
    co, data = cog_file(store)
    offsets, counts = table(co, "offsets_0"), table(co, "bytecounts_0")
    offsets[[2, 7]], counts[[2, 7]] = offsets[[7, 2]], counts[[7, 2]]
    lying = resign(co, {"offsets_0": offsets, "bytecounts_0": counts})
    with pytest.raises(CorruptIndexError, match=r"tile offsets of level 0 .*TileOffsets .*tile 2, index") as err:
        read_all(lying.partition(cog.partition_tiles, 4))
    assert co.url in str(err.value)
    # the overview's tables are true: its slices still read
    piece = lying.partition(cog.partition_num_chunks, 1, level=1)[0]
    np.testing.assert_array_equal(piece.get()[0], data[::2, ::2])


def test_cog_zeroed_bytecount_is_refused(store):
    co, _ = cog_file(store)
    counts = table(co, "bytecounts_1")
    counts[3] = 0
    lying = resign(co, {"bytecounts_1": counts})
    with pytest.raises(CorruptIndexError, match=r"tile byte counts of level 1 .*TileByteCounts .*tile 3, index 0"):
        read_all(lying.partition(cog.partition_tiles, 2, level=1))


def test_cog_moved_table_position_is_refused(store):
    co, _ = cog_file(store)
    where = [list(level) for level in co.attributes.tile_tables]
    where[0][0] += 4
    lying = resign(co, {}, {"tile_tables": where})
    with pytest.raises(CorruptIndexError, match="tile offsets of level 0"):
        lying.partition(cog.grid_partition_strategy, 2)


def test_cog_left_out_tiles_stay_legal_and_the_check_costs_one_request(store):
    co, data = cog_file(store, "sparse.tif", sparse=True)
    assert table(co, "bytecounts_0")[6] == 0
    read_stats.reset()
    slices = co.partition(cog.partition_tiles, 3)
    assert read_stats.requests[co.url] == 1  # the level's offset and byte-count arrays, one range
    read_stats.reset()
    cover = np.zeros_like(data)
    for piece in slices:
        col_off, row_off, width, height = piece.window
        cover[row_off : row_off + height, col_off : col_off + width] = piece.get()[0]
    np.testing.assert_array_equal(cover, data)
    policy = co.obj.policy
    planned = [plan([(t[3], t[3] + t[4]) for t in s.tiles if t[4]], policy.max_gap, policy.max_block).requests for s in slices]
    assert read_stats.requests[co.url] == sum(map(len, planned))  # one request per run of near tiles, none for a left-out tile


# -- LAS / LAZ ---------------------------------------------------------------------------------------------


def stripes(n: int = 4000, seed: int = 3) -> laspy.LasData:
    """Points in file order by x, so each block of 500 is a vertical stripe of the 5040 x 5040 extent."""
    rng = np.random.default_rng(seed)
    header = laspy.LasHeader(point_format=6, version="1.4")
    header.scales, header.offsets = np.array([0.25, 0.25, 0.01]), np.array([0.0, 0.0, 0.0])
    las = laspy.LasData(header)
    raw = np.sort(rng.integers(0, 20161, size=n))
    las.X, las.Y, las.Z = raw, rng.integers(0, 20161, size=n), rng.integers(0, 500, size=n)
    las.gps_time = np.arange(n, dtype=np.float64)
    las.update_header()
    return las


def lidar(store, name: str, las: laspy.LasData, **options) -> CloudObject:
    """``las`` stored as LAS, or as LAZ in variable-size chunks of 500 points (one per LAS block of 500)."""
    data = laz_bytes(las, cuts=list(range(500, len(las.points), 500))) if name.endswith(".laz") else las_bytes(las)
    url = store.put(name, data)
    return CloudObject.from_url("LiDARPointCloud", url, storage_options=store.options).preprocess(progress=False, **options)


def moved_block(co: CloudObject, k: int, dx: float) -> dict[str, np.ndarray]:
    """Block ``k``'s bounds moved ``dx`` along x, consistently in every table that holds them."""
    bounds = table(co, "block_bounds")
    bounds[k, [0, 3]] += dx
    changes = {"block_bounds": bounds}
    if co.attributes.run_points:
        frame = table(co, "block_frame")
        frame[k, [0, 2]] += int(round(dx / co.attributes.scales[0]))
        changes["block_frame"] = frame
    return changes


LIDAR_CASES = [("s.las", {"block_points": 500}), ("r.las", {"block_points": 500, "run_points": 0}), ("s.laz", {})]


@pytest.mark.parametrize(("name", "options"), LIDAR_CASES)
def test_lidar_moved_block_bounds_are_refused_by_a_box(local_store, name, options):
    las = stripes()
    co = lidar(local_store, name, las, **options)
    assert co.attributes.blocks == 8
    k = 3
    x0, y0, _, x1, y1, _ = table(co, "block_bounds")[k]
    box = (x0, y0, x1 + 1, y1 + 1)
    expected = np.count_nonzero((las.x >= box[0]) & (las.x < box[2]) & (las.y >= box[1]) & (las.y < box[3]))
    assert len(co.partition(laspc.partition_bbox, *box)[0].get().points) == expected
    lying = resign(co, moved_block(co, k, (x1 - x0) / 2))
    with pytest.raises(CorruptIndexError, match=f"bounds for block {k} do not contain its points") as err:
        lying.partition(laspc.partition_bbox, *box)[0].get()
    assert co.url in str(err.value) and "sidecar does not describe this object" in str(err.value)


@pytest.mark.parametrize(("name", "options"), LIDAR_CASES)
def test_lidar_block_moved_elsewhere_is_refused_by_a_grid(local_store, name, options):
    co = lidar(local_store, name, stripes(), **options)
    lying = resign(co, moved_block(co, 1, 2500.0))
    with pytest.raises(CorruptIndexError, match="bounds for block 1 do not contain its points"):
        read_all(lying.partition(laspc.square_split_strategy, 16))
    for strategy, n in ((laspc.partition_num_chunks, 3), (laspc.partition_spatial_chunks, 4)):  # they select no point by bounds
        assert sum(len(piece.get().points) for piece in lying.partition(strategy, n)) == co.attributes.point_count


def test_las_bounds_and_frame_must_agree(local_store):
    co = lidar(local_store, "f.las", stripes(), block_points=500)
    bounds = table(co, "block_bounds")
    bounds[2, 0] -= 10.0
    with pytest.raises(CorruptIndexError, match="block_bounds"):
        resign(co, {"block_bounds": bounds}).partition(laspc.partition_num_chunks, 2)


@pytest.mark.parametrize(("name", "options"), LIDAR_CASES)
def test_lidar_block_moved_out_of_the_extent_is_refused(local_store, name, options):
    """A block moved past the cloud's extent, where no cell of a grid would read it, does not fit the
    extent in the attributes; moving that too makes the grid reach it."""
    co = lidar(local_store, name, stripes(), **options)
    changes = moved_block(co, 7, 10000.0)
    with pytest.raises(CorruptIndexError, match="does not fit the object"):
        resign(co, changes).partition(laspc.square_split_strategy, 4)
    maxs = list(co.attributes.maxs)
    maxs[0] = float(changes["block_bounds"][:, 3].max())
    with pytest.raises(CorruptIndexError, match="bounds for block 7 do not contain its points"):
        read_all(resign(co, changes, {"maxs": maxs}).partition(laspc.square_split_strategy, 4))


# -- COPC --------------------------------------------------------------------------------------------------


def copc_cloud(n: int = 3000) -> laspy.LasData:
    rng = np.random.default_rng(8)
    header = laspy.LasHeader(point_format=6, version="1.4")
    header.scales, header.offsets = np.array([0.25, 0.25, 0.01]), np.array([1000.0, -500.0, 0.0])
    las = laspy.LasData(header)
    las.X, las.Y, las.Z = rng.integers(0, 20161, size=n), rng.integers(0, 20161, size=n), rng.integers(0, 500, size=n)
    las.gps_time = np.arange(n, dtype=np.float64)
    las.update_header()
    return las


@pytest.fixture
def copc_object(store) -> CloudObject:
    url = store.put("m.copc.laz", write_copc(copc_cloud(), cap=50, max_depth=3))
    return CloudObject.from_url("COPC", url, storage_options=store.options).preprocess(progress=False)


def test_copc_moved_node_is_refused(copc_object):
    co = copc_object
    keys = table(co, "node_key")
    deep = np.flatnonzero(keys[:, 0] == 3)
    a, b = deep[0], deep[-1]
    assert np.abs(keys[a, 1:3] - keys[b, 1:3]).sum() > 2
    keys[[a, b]] = keys[[b, a]]
    lying = resign(co, {"node_key": keys})
    for strategy, n in ((copc.square_split_strategy, 16), (copc.partition_num_points, 3), (copc.partition_spatial_chunks, 4)):
        with pytest.raises(CorruptIndexError, match=r"octree node .* disagrees with the object's hierarchy") as err:
            read_all(lying.partition(strategy, n))
        assert co.url in str(err.value)


def test_copc_moved_root_is_refused(copc_object):
    co = copc_object
    center = list(co.attributes.center)
    center[0] += 100.0
    lying = resign(co, {}, {"center": center})
    with pytest.raises(CorruptIndexError, match="octree root"):
        read_all(lying.partition(copc.partition_num_points, 2))
