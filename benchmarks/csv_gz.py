"""CSV.gz benchmark: the index pass of a gzip-compressed CSV and reading all its slices, against
``gzip -dc`` and ``pandas.read_csv`` of the ``.csv.gz``, measured in the same run.

Generates a CSV (1 % of rows hold a quoted newline), compresses it with ``gzip -6``, then prints:
- the index pass (``preprocess``: one sequential inflate with checkpoints, the quote-aware record scan and
  the whole-file column types) ÷ ``gzip -dc`` of the object;
- reading all slices as Arrow tables on a ``--workers`` process pool ÷ ``pandas.read_csv`` of the
  ``.csv.gz`` (which decompresses and parses on one core);
- every time is the best of two runs;
- records per slice (max ÷ mean) for 7 to 64 slices, with every boundary snapped to the nearest checkpoint
  (as before issue 19) and as ``partition_num_chunks`` cuts now (snapped while no slice grows past 1.2 x
  the mean),
  and the decoded bytes the workers drop before their slices' starts, as a share of the object. On small
  objects checkpoints lie 1.5 MiB apart, so try ``--size-mb 40``.

    python benchmarks/csv_gz.py --size-mb 300
"""

from __future__ import annotations

import math
import os
import subprocess
import tempfile
import warnings

import numpy as np

from _common import best_of, gzipped_csv, rows_on_pool, slice_bench_args

import dataplug.framings.lines
from dataplug import CloudObject
from dataplug.formats.generic.csv import CSV, partition_num_chunks
from dataplug.framings.base import cut_offsets


def balance(co: CloudObject) -> list[str]:
    """Records per slice and decoding dropped before slice starts, snapping always (before) and now."""
    cuts, logical, lines = cut_offsets(co), co.attributes.uncompressed_size, []
    warnings.simplefilter("ignore", dataplug.framings.lines.CheckpointSpacingWarning)  # its advice is what the shares show
    for name, balance in (("snapped", math.inf), ("now", dataplug.framings.lines.BALANCE)):
        dataplug.framings.lines.BALANCE = balance
        for n in (7, 16, 32, 64):
            slices = co.partition(partition_num_chunks, n)
            counts = np.array([s.num_records for s in slices])
            starts = np.array([s.span.start for s in slices])
            dropped = int((starts - cuts[np.searchsorted(cuts, starts, side="right") - 1]).sum())
            lines.append(
                f"  {name:>8} N={n:<3} records per slice max/mean {counts.max() / counts.mean():.3f}, "
                f"decoded before slice starts {100 * dropped / logical:5.1f} % of the object"
            )
    return lines


def main() -> None:
    args = slice_bench_args(__doc__, 300)

    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        path, rows = gzipped_csv(folder, args.size_mb)
        size = os.path.getsize(path)

        t_gzip, _ = best_of(lambda: subprocess.run(["gzip", "-dc", path], stdout=subprocess.DEVNULL, check=True))
        import pandas as pd

        t_pandas, df = best_of(lambda: pd.read_csv(path, engine="c"))
        assert len(df) == rows
        del df

        co = CloudObject.from_url(CSV, path)
        t_index, _ = best_of(lambda: co.preprocess(force=True, progress=False))
        assert co.attributes.rows == rows and co.attributes.compression == "gzip"
        slices = co.partition(partition_num_chunks, args.slices)
        t_read, counts = rows_on_pool(slices, args.workers)
        assert sum(counts) == rows, (sum(counts), rows)
        index_bytes = co.index().nbytes()
        balanced = balance(co)

    print(f"CSV.gz {size / 1e6:.0f} MB ({rows:,} rows, 1 % with a quoted newline); {args.slices} slices on {args.workers} processes")
    print(f"  gzip -dc                      {t_gzip:7.3f} s")
    print(f"  pandas.read_csv(.csv.gz)      {t_pandas:7.3f} s")
    print(f"  index pass                    {t_index:7.3f} s   / gzip -dc = {t_index / t_gzip:.2f}")
    print(f"  read all slices ({args.workers} workers)   {t_read:7.3f} s   / pandas.read_csv = {t_read / t_pandas:.2f}")
    print(f"  index size: {index_bytes:,} bytes = {100 * index_bytes / size:.3f} % of the object ({co.attributes.checkpoints} checkpoints)")
    print("\n".join(balanced))


if __name__ == "__main__":
    main()
