"""imzML benchmark: index pass, reading all slices and one ion image, against pyimzml in the same run.

Generates a processed-mode dataset with pyimzml's writer (``--size-mb`` of .ibd, default 320: about 27 000
spectra of 900-1100 peaks, 64-bit m/z and 32-bit intensities, on a raster of 160 pixels per row) in a temp
folder (``--dir``), then prints:
- pyimzml's ``ImzMLParser`` collecting each spectrum's lowest and highest m/z (what the index pass asks of
  it, for ``mz_range``) ÷ the same parser without them;
- index pass (``preprocess``: pyimzml's parser over the .imzML streamed from storage, plus the .ibd checks)
  ÷ pyimzml's ``ImzMLParser`` on the same file;
- all slices (``--slices`` of ``partition_spectra`` and of ``square_split_strategy``, default 64) read with
  ``get()`` on a spawned pool of ``--workers`` processes (default 2) ÷ reading every spectrum with pyimzml's
  ``getspectrum`` in one process (its parser built beforehand, not timed); and the same slices turned into
  Arrow tables;
- one ``ion_image`` over all slices on that pool ÷ pyimzml's ``getionimage`` (one process).
Each time is the better of ``--repeat`` runs (default 2), with every file in the page cache. The load
average is printed before and after: other work on the machine slows every figure.

    python benchmarks/imzml.py --size-mb 320 --slices 64 --workers 2
    python benchmarks/imzml.py --size-mb 40      # a quick run
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from _common import best_of, warm_page_cache
from pyimzml.ImzMLParser import ImzMLParser, getionimage
from pyimzml.ImzMLWriter import ImzMLWriter

from dataplug import CloudObject
from dataplug.formats.metabolomics.imzml import _HIGHEST_MZ, _LOWEST_MZ, ImzML, ion_image, partition_spectra, square_split_strategy
from dataplug.formats.metabolomics.imzml_slice import ImzMLSlice

#: Peaks per spectrum (uniform), bytes per peak (64-bit m/z, 32-bit intensity) and pixels per image row.
PEAKS = (900, 1100)
PEAK_BYTES = 12
ROW = 160


def generate(path: str, size_mb: int, seed: int = 0) -> int:
    """Write ``<path>.imzML`` and ``<path>.ibd`` with about ``size_mb`` MB of arrays; returns the spectrum count."""
    rng = np.random.default_rng(seed)
    count = size_mb * 10**6 // (PEAK_BYTES * sum(PEAKS) // 2)
    with ImzMLWriter(path, mode="processed", mz_dtype=np.float64, intensity_dtype=np.float32) as writer:
        for i in range(count):
            k = int(rng.integers(PEAKS[0], PEAKS[1] + 1))
            writer.addSpectrum(np.sort(rng.uniform(100, 1000, k)), rng.exponential(100, k).astype(np.float32), (i % ROW + 1, i // ROW + 1))
    return count


def spectra_of(piece: ImzMLSlice) -> int:
    """A worker's task: fetch and decode one slice, return its value count."""
    return sum(mz.size for _, _, mz, _ in piece.get())


def arrow_rows(piece: ImzMLSlice) -> int:
    return piece.to_arrow().num_rows


def pyimzml_all(parser: ImzMLParser) -> int:
    return sum(parser.getspectrum(i)[0].size for i in range(len(parser.coordinates)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=320)
    parser.add_argument("--slices", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        path = os.path.join(folder, "bench.imzML")
        spectra = generate(path[: -len(".imzML")], args.size_mb)
        sizes = os.path.getsize(path), os.path.getsize(path[:-6] + ".ibd")
        for name in (path, path[:-6] + ".ibd"):
            warm_page_cache(name)

        t_parse, reference = best_of(lambda: ImzMLParser(path, ibd_file=None), args.repeat)
        t_mz_range, _ = best_of(lambda: ImzMLParser(path, ibd_file=None, include_spectra_metadata=[_LOWEST_MZ, _HIGHEST_MZ]), args.repeat)
        co = CloudObject.from_url(ImzML, path)
        t_index, _ = best_of(lambda: co.preprocess(force=True, progress=False), args.repeat)
        runs, cells = co.partition(partition_spectra, args.slices), co.partition(square_split_strategy, args.slices)

        with ImzMLParser(path) as reader:
            t_read, values = best_of(lambda: pyimzml_all(reader), args.repeat)
            mz = float(np.median(reader.getspectrum(len(reader.coordinates) // 2)[0]))
            t_image_ref, image_ref = best_of(lambda: getionimage(reader, mz, 0.05), 1)
        with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            list(pool.map(abs, range(args.workers)))  # start the workers before timing
            t_runs, got_runs = best_of(lambda: sum(pool.map(spectra_of, runs)), args.repeat)
            t_cells, got_cells = best_of(lambda: sum(pool.map(spectra_of, cells)), args.repeat)
            t_arrow, rows = best_of(lambda: sum(pool.map(arrow_rows, runs)), args.repeat)
            t_image, image = best_of(lambda: ion_image(runs, mz, 0.05, executor=pool), args.repeat)
        assert got_runs == got_cells == values and rows == spectra == len(reference.coordinates)
        assert np.allclose(image, image_ref, rtol=1e-4), "ion images differ"
        sidecar = co.index().nbytes() + len(co.index_location.child("manifest.json").read_all())
    load_after = os.getloadavg()

    print(f"imzML benchmark: {spectra:,} spectra (processed, f64 m/z, f32 intensities), {values:,} peaks")
    print(
        f".imzML {sizes[0] / 1e6:.0f} MB, .ibd {sizes[1] / 1e6:.0f} MB; {args.slices} slices on {args.workers} spawned processes; best of {args.repeat}"
    )
    print(
        f"load average before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}"
    )
    print(f"  pyimzml ImzMLParser (no .ibd)                  {t_parse:7.2f} s")
    print(f"  ImzMLParser with lowest/highest m/z            {t_mz_range:7.2f} s   ÷ ImzMLParser = {t_mz_range / t_parse:.2f}")
    print(f"  index pass                                     {t_index:7.2f} s   ÷ ImzMLParser = {t_index / t_parse:.2f}")
    print(f"  pyimzml getspectrum, every spectrum             {t_read:7.2f} s")
    print(f"  all slices get(), partition_spectra            {t_runs:7.2f} s   ÷ pyimzml = {t_runs / t_read:.2f}")
    print(f"  all slices get(), square_split_strategy        {t_cells:7.2f} s   ÷ pyimzml = {t_cells / t_read:.2f}")
    print(f"  all slices to_arrow(), partition_spectra       {t_arrow:7.2f} s   ÷ pyimzml = {t_arrow / t_read:.2f}")
    print(f"  pyimzml getionimage (m/z {mz:.2f} ± 0.05)       {t_image_ref:7.2f} s")
    print(f"  ion_image over all slices                      {t_image:7.2f} s   ÷ getionimage = {t_image / t_image_ref:.2f}")
    print(f"  sidecar {sidecar:,} bytes = {100 * sidecar / sizes[1]:.3f} % of the .ibd")


if __name__ == "__main__":
    main()
