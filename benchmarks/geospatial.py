"""Geospatial benchmark: LiDAR on scan- and Morton-ordered tiles (``lidar.py``), COPC (``geospatial_copc.py``)
and COG (``geospatial_cog.py``) in one run, each against its baselines measured in the same run (laspy,
rasterio).

    python benchmarks/geospatial.py            # the defaults of each script
    python benchmarks/geospatial.py --quick    # small inputs, for a smoke run
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

QUICK = {
    "lidar.py": ["--points", "2000000"],
    "geospatial_copc.py": ["--points", "1000000", "--repeat", "1"],
    "geospatial_cog.py": ["--size", "2048", "--repeat", "2"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small inputs (a smoke run, not figures to report)")
    args = parser.parse_args()
    here = os.path.dirname(os.path.abspath(__file__))
    for script, quick in QUICK.items():
        print(f"\n== {script}", flush=True)
        subprocess.run([sys.executable, os.path.join(here, script), *(quick if args.quick else [])], check=True)


if __name__ == "__main__":
    main()
