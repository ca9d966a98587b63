"""Pictures of partitions: valid PNGs of some size, from the command line and from the library."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np
import pytest

import dataplug
from dataplug.cli import main

pytest.importorskip("matplotlib", reason="plots need the plot extra (matplotlib)")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path) -> bool:
    data = open(path, "rb").read()
    return data.startswith(PNG_MAGIC) and len(data) > 10_000


def test_plot_a_gzip_partition_with_its_checkpoints(local_store, tmp_path):
    reads = b"".join(b"@r%d\n%s\n+\n%s\n" % (i, b"ACGT" * 20, b"I" * 80) for i in range(20_000))
    co = dataplug.open(local_store.put("r.fastq.gz", gzip.compress(reads)), spacing=2**18)
    slices = co.partition("partition_reads_batches", 9)
    assert _is_png(co.plot_partition(slices, str(tmp_path / "fq.png")))


def test_plot_from_the_command_line(local_store, tmp_path, capsys):
    url = local_store.put("d.csv", b"a,b\n" + b"".join(b"%d,x\n" % i for i in range(5000)))
    out = tmp_path / "slices.png"
    assert main(["plot", url, "partition_num_chunks", "6", "-o", str(out)]) == 0
    assert _is_png(out) and str(out) in capsys.readouterr().out


def _varied(path) -> bool:
    """The picture's middle (the data area of a one-axes plot) is not one flat colour."""
    from matplotlib.image import imread

    image = imread(str(path))[..., :3]
    height, width = image.shape[:2]
    middle = image[int(height * 0.3) : int(height * 0.7), int(width * 0.3) : int(width * 0.7)]
    return float(middle.std()) > 0.05 and len(np.unique(middle.reshape(-1, 3), axis=0)) > 20


def _terrain_tiff(height: int = 700, width: int = 900, overview: bool = True) -> bytes:
    """A tiled 2-band uint16 GeoTIFF of smooth relief with noise (tifffile), with a 1/4 overview page."""
    tifffile = pytest.importorskip("tifffile")
    rows, cols = np.mgrid[0:height, 0:width]
    relief = 20000 + 9000 * np.sin(rows / 90.0) * np.cos(cols / 130.0)
    band = (relief + np.random.default_rng(3).integers(0, 600, (height, width))).astype(np.uint16)
    image = np.stack([band, band // 2], axis=-1)
    out = io.BytesIO()
    with tifffile.TiffWriter(out) as tif:
        options = dict(photometric="minisblack", planarconfig="contig", tile=(128, 128), compression="zlib", metadata=None)
        tif.write(image, **options)
        if overview:
            tif.write(np.ascontiguousarray(image[::4, ::4]), subfiletype=1, **options)
    return out.getvalue()


@pytest.mark.parametrize("strategy", ["partition_tiles", "partition_num_chunks"])
def test_plot_cog_windows_over_its_smallest_overview(local_store, tmp_path, capsys, strategy):
    pytest.importorskip("imagecodecs")
    url = local_store.put("terrain.tif", _terrain_tiff())
    out = tmp_path / "cog.png"
    assert main(["plot", url, strategy, "5", "-o", str(out)]) == 0
    assert _is_png(out) and _varied(out) and str(out) in capsys.readouterr().out


def test_plot_cog_without_a_small_level_shows_bytes_per_tile(local_store, tmp_path, monkeypatch):
    """No overview small enough to read: the tiles' compressed sizes from the index, no pixel read."""
    pytest.importorskip("imagecodecs")
    from dataplug import plot
    from dataplug.storage.object import read_stats

    monkeypatch.setattr(plot, "PREVIEW_PIXELS", 0)
    co = dataplug.open(local_store.put("flat.tif", _terrain_tiff(overview=False)))
    slices = co.partition("partition_tiles", 4)
    read_stats.reset()
    path = co.plot_partition(slices, str(tmp_path / "tiles.png"))
    assert _is_png(path) and _varied(path) and not read_stats.requests.get(co.url)


def test_plot_copc_cells_over_the_hierarchy_density(local_store, tmp_path):
    pytest.importorskip("laspy")
    pytest.importorskip("lazrs")
    data = (Path(__file__).parent / "data" / "simple.copc.laz").read_bytes()
    co = dataplug.open(local_store.put("simple.copc.laz", data))
    assert co.format.name == "COPC"
    for strategy in ("square_split_strategy", "partition_spatial_chunks"):
        path = co.plot_partition(co.partition(strategy, 4), str(tmp_path / f"{strategy}.png"))
        assert _is_png(path) and _varied(path)
