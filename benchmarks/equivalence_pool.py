"""Pool the two one-sided tests of independent runs of the equivalence suite (different seeds).

    python benchmarks/equivalence_pool.py benchmarks/equivalence-X.json benchmarks/equivalence-X-seeds2000.json

Prints a markdown table (:func:`emdsim.studies.equivalence.pool_tost`: inverse-variance weighted
differences) and exits 1 when a pooled statistic is not shown equivalent. Each run's difference tests
stand on their own (read them in each report).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from emdsim.studies.equivalence import markdown_table, pool_tost


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("reports", nargs="+", type=Path, help="equivalence-*.json written by benchmarks/equivalence.py")
    args = ap.parse_args(argv)
    runs = []
    for path in args.reports:
        try:
            report = json.loads(path.read_text())
            overrides, replicates = report["overrides"], report["replicates"]
            tost = pd.DataFrame(report["tost"])[["statistic", "difference", "se", "margin"]]
        except (OSError, ValueError, KeyError, TypeError) as err:
            print(
                f"equivalence_pool: {path}: not a report of benchmarks/equivalence.py (a JSON object with "
                f"overrides, replicates and tost rows of statistic, difference, se and margin): {err}",
                file=sys.stderr,
            )
            return 2
        runs.append(tost)
        print(f"{path.name}: {replicates} replicates, overrides {' '.join(overrides) or '(default)'}")
    pooled = pool_tost(runs)
    print()
    print(markdown_table(pooled))
    return 0 if pooled["equivalent"].all() else 1


if __name__ == "__main__":
    sys.exit(main())
