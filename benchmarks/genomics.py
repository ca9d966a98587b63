"""Genomics benchmark: FASTA (``genomics_fasta.py``) and VCF (``genomics_vcf.py``) in one run, each
against its baselines measured in the same run (samtools faidx, pyfaidx; gzip -dc, plain Python, cyvcf2).

    python benchmarks/genomics.py --size-mb 300
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=300)
    args = parser.parse_args()
    here = os.path.dirname(os.path.abspath(__file__))
    for script in ("genomics_fasta.py", "genomics_vcf.py"):
        subprocess.run([sys.executable, os.path.join(here, script), "--size-mb", str(args.size_mb)], check=True)


if __name__ == "__main__":
    main()
