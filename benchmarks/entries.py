"""What the compiled pass works on: occupied (compartment, clone state) entries per patient-step.

    python benchmarks/entries.py [--patients 300] [--years 10] [--out FILE] [override ...]

The pass's cost grows with the entries it visits (``docs/ODD.md`` section 8). This script runs one
cohort in one process and, before every step, counts for each patient that steps (alive, its own
step ending now: with the adaptive step a patient within a long step is not visited) the entries
holding cells, split by

* the compartment's kind: marrow, paraskeletal (``ps``), organ or wound (``em``: where blood-borne
  cells settle), blood;
* the clone state: the founder (state 0) or a switch mutant (any heritable switch, states 1 ..);
* the population: ``small`` (fewer than ``sim.hybrid_threshold_cells``, every flow drawn) or
  ``large`` (mean flows).

It prints, and with ``--out`` appends as one JSON line, each count per patient-step (and the raw
counts), the occupied compartments of each kind, the weeks per step and the share of long steps.
Entries are counted at a step's start, so a population born within the step is counted at the next.
The numbers are counts, not times: a busy machine does not change them (a run's bytes, and so its
counts, can differ slightly between CPUs: the README's reproducibility table).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from emdsim.cohort.run import run_cohort
from emdsim.config.load import load
from emdsim.engine import schedule
from emdsim.engine.tables import build_tables
from emdsim.studies.rundir import git_revision

KINDS = ("marrow", "ps", "em", "blood")


def counted(tb, counts: Counter):
    """A :func:`emdsim.engine.schedule._advance` that first adds the stepping patients' entries to
    ``counts``."""
    advance = schedule._advance  # noqa: SLF001 - wrapped, not changed
    k = tb.advance_constants[0]
    kind = np.full(tb.step.soil.shape[0], "", dtype=object)
    kind[tb.marrow_nodes] = "marrow"
    kind[tb.step.ps_nodes] = "ps"
    kind[tb.step.em_nodes] = "em"
    kind[int(k["blood_node"])] = "blood"
    threshold, dt = float(k["hybrid_threshold_cells"]), float(k["dt_days"])

    def wrapped(st, tables, rng):
        stepping = (st.status <= k["status_followed"]) & (st.next_days <= st.t_days + 0.5 * dt)
        cells = st.cells[stepping]  # (P', N, K)
        weeks = np.round(st.step_days[stepping] / dt)
        counts["patient_steps"] += int(stepping.sum())
        counts["patient_weeks"] += float(weeks.sum())
        counts["long_steps"] += int((weeks > 1.5).sum())
        occupied, large = cells > 0.0, cells >= threshold
        small = occupied & ~large
        for name in KINDS:
            nodes = kind == name
            counts[f"{name} nodes"] += int(occupied[:, nodes, :].any(axis=2).sum())
            for clones, part in (("founder", slice(0, 1)), ("mutant", slice(1, None))):
                counts[f"{name} {clones} large"] += int(large[:, nodes, part].sum())
                counts[f"{name} {clones} small"] += int(small[:, nodes, part].sum())
        counts["entries"] += int(occupied.sum())
        return advance(st, tables, rng)

    return wrapped


def count_entries(overrides: list[str], patients: int, years: float) -> dict:
    """Run the cohort; returns the counts per stepping patient-step."""
    cfg = load(["cohort.n_jobs=1", f"cohort.n_patients={patients}", f"sim.followup_years={years}", *overrides])
    counts: Counter = Counter()
    original = schedule._advance  # noqa: SLF001
    schedule._advance = counted(build_tables(cfg), counts)  # noqa: SLF001
    try:
        run_cohort(cfg)
    finally:
        schedule._advance = original  # noqa: SLF001
    steps = counts["patient_steps"]
    steps_only = ("patient_steps", "patient_weeks", "long_steps")
    per_step = {key: round(v / steps, 3) for key, v in sorted(counts.items()) if key not in steps_only}
    return {
        "case": "entries",
        "overrides": overrides,
        "patients": patients,
        "years": years,
        "git_revision": git_revision(),
        "patient_steps": steps,
        "weeks_per_step": round(counts["patient_weeks"] / steps, 3),
        "long_step_share": round(counts["long_steps"] / steps, 3),
        "per_patient_step": per_step,
        "counts": dict(sorted(counts.items())),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--patients", type=int, default=300)
    ap.add_argument("--years", type=float, default=10.0)
    ap.add_argument("--out", type=Path, default=None, help="append the result as one JSON line")
    ap.add_argument("overrides", nargs="*", help="configuration overrides, as on emdsim's command line")
    a = ap.parse_args(argv)
    result = count_entries(a.overrides, a.patients, a.years)
    print(json.dumps(result, indent=1))
    if a.out is not None:
        with a.out.open("a") as f:
            f.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
