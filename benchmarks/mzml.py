"""mzML benchmark: index pass and reading every spectrum through slices, against pyteomics in the same run.

Writes an indexedmzML with psims (the tests' writer, ``tests/mzml_files.py``): ``--spectra`` spectra
(default 20 000; one MS1 in three, the others MS2 with a precursor) of ``--peaks`` peaks (default 50-400),
zlib arrays, 64-bit m/z and 32-bit intensities, in a temp folder (``--dir``); then prints:
- index pass (``preprocess``: the tail, the ``<indexList>``, the head with a few probes) ÷ opening the file
  with pyteomics' ``PreIndexedMzML`` (which reads the index at the file's end; when it cannot use it, it
  falls back to scanning the file, and the line says so);
- every spectrum through ``partition_num_chunks`` slices (``--slices``, default 16), ``get()`` on a spawned
  pool of ``--workers`` processes (default 2) ÷ pyteomics' ``MzML`` iterating over the file in one process,
  sequentially (``use_index=False``: its default looks each spectrum up by its id, many times slower; the goal
  is 0.6); and the same slices through ``to_arrow()``;
- the index pass with ``full_scan=True`` (one expat pass over the whole file, for retention times).
Each time is the better of ``--repeat`` runs (default 2), the file in the page cache. The load average is
printed before and after: other work on the machine slows every figure.

    python benchmarks/mzml.py --spectra 20000 --slices 16 --workers 2
    python benchmarks/mzml.py --spectra 2000      # a quick run
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from _common import best_of, warm_page_cache
from pyteomics import mzml

from dataplug import CloudObject
from dataplug.formats.metabolomics.mzml import MzML, partition_num_chunks
from dataplug.formats.metabolomics.mzml_slice import MzMLSlice

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.mzml_files import make_mzml


def peaks_of(piece: MzMLSlice) -> int:
    """A worker's task: fetch and decode one slice, return its peak count."""
    return sum(mz.size for _, mz, _ in piece.get())


def arrow_rows(piece: MzMLSlice) -> int:
    return piece.to_arrow().num_rows


def pyteomics_all(path: str) -> int:
    with mzml.MzML(path, use_index=False) as reader:  # a sequential pass: its default (by the index) is far slower
        return sum(spectrum["m/z array"].size for spectrum in reader)


def pyteomics_open(path: str) -> tuple[int, bool]:
    """Open with ``PreIndexedMzML``: the spectrum count, and whether it fell back to scanning the file."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with mzml.PreIndexedMzML(path) as reader:
            count = len(reader.index["spectrum"])
    return count, any("Falling back" in str(w.message) for w in caught)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spectra", type=int, default=20_000)
    parser.add_argument("--peaks", type=int, nargs=2, default=(50, 400))
    parser.add_argument("--slices", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        path = os.path.join(folder, "bench.mzML")
        Path(path).write_bytes(make_mzml(args.spectra, seed=0, peaks=tuple(args.peaks)))
        size = os.path.getsize(path)
        warm_page_cache(path)

        t_open, (count, fell_back) = best_of(lambda: pyteomics_open(path), args.repeat)
        co = CloudObject.from_url(MzML, path)
        t_index, _ = best_of(lambda: co.preprocess(force=True, progress=False), args.repeat)
        slices = co.partition(partition_num_chunks, args.slices)
        t_read, peaks = best_of(lambda: pyteomics_all(path), args.repeat)
        with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            list(pool.map(abs, range(args.workers)))  # start the workers before timing
            t_slices, got = best_of(lambda: sum(pool.map(peaks_of, slices)), args.repeat)
            t_arrow, rows = best_of(lambda: sum(pool.map(arrow_rows, slices)), args.repeat)
        t_scan, _ = best_of(lambda: co.preprocess(force=True, progress=False, full_scan=True), args.repeat)
        assert got == peaks and rows == args.spectra == co.attributes.spectra, (got, peaks, rows, co.attributes.spectra)
    load_after = os.getloadavg()

    print(f"mzML benchmark: {args.spectra:,} spectra (indexedmzML, zlib, f64 m/z, f32 intensities), {peaks:,} peaks, {size / 1e6:.0f} MB")
    print(f"{args.slices} slices on {args.workers} spawned processes; best of {args.repeat}")
    print(f"load average before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
    how = "fell back to scanning the file: its embedded index was not used" if fell_back else "from its embedded index"
    print(f"  pyteomics PreIndexedMzML open                  {t_open:7.3f} s   ({how}; its index lists {count:,} of {args.spectra:,} spectra)")
    print(f"  index pass                                     {t_index:7.3f} s   ÷ PreIndexedMzML open = {t_index / t_open:.2f}   (goal <= 1.0)")
    print(f"  pyteomics MzML, every spectrum                 {t_read:7.2f} s")
    print(f"  all slices get(), partition_num_chunks         {t_slices:7.2f} s   ÷ pyteomics = {t_slices / t_read:.2f}   (goal <= 0.6)")
    print(f"  all slices to_arrow(), partition_num_chunks    {t_arrow:7.2f} s   ÷ pyteomics = {t_arrow / t_read:.2f}")
    print(f"  index pass with full_scan=True                 {t_scan:7.2f} s   ÷ PreIndexedMzML open = {t_scan / t_open:.2f}")


if __name__ == "__main__":
    main()
