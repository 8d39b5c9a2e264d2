"""One large cohort's pooled proportions: a bias between engines too small for replicate cohorts.

    python benchmarks/proportions.py --patients 200000 --seed 11 --at-diagnosis engine=exact
    python benchmarks/proportions.py --patients 160000 --seed 21 engine=hybrid sim.max_step_days=7

The equivalence suite (``benchmarks/equivalence.py``) compares replicate cohorts of 1,965 patients;
its standard error on a proportion of ~15 % is ~0.3 points at 20 replicates, so a bias of a few
tenths of a point is a coin flip there. One cohort of N patients estimates each proportion with the
binomial standard error sqrt(p (1 - p) / N_diagnosed) (patients are independent): 200,000 patients,
~180,000 diagnosed, give ~0.08 points at 15 %. ``--at-diagnosis`` stops every course at diagnosis
(``sim.followup_years=0``: the proportions at diagnosis only, ~3x cheaper).

Appends one JSON line to ``--out`` (default ``benchmarks/proportions.jsonl``): the overrides, seed,
patients, the wall seconds, the git revision, diagnosed and relapsed patients, and each proportion in percent (at
diagnosis and ever among the diagnosed, at relapse among the relapsed) with its binomial standard
error.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from emdsim.analysis.summary import summarise
from emdsim.cohort.run import run_cohort
from emdsim.config.load import load
from emdsim.studies.rundir import git_revision

AT_DIAGNOSIS = ("ps_at_diagnosis", "em_at_diagnosis", "emd_at_diagnosis")
EVER = ("ps_ever", "em_ever", "emd_ever")
AT_RELAPSE = ("ps_at_relapse", "em_at_relapse", "emd_at_relapse")


def proportions(patients, *, followed: bool) -> dict:
    """Percent and binomial standard error of each proportion (``followed``: ever and at relapse too),
    the fractions as ``summary.json`` defines them (:func:`emdsim.analysis.summary.summarise`; EMD
    ever, which it does not give, as PS or EM ever)."""
    summary = summarise(patients, seed=0)
    dx = patients[patients["diagnosed"]]
    summary["emd_ever"] = float((dx["ps_ever"] | dx["em_ever"]).mean()) if len(dx) else None
    n_dx, n_rel = summary["n_diagnosed"], summary["n_relapsed"] if followed else 0
    out: dict = {"n_diagnosed": n_dx, "n_relapsed": n_rel}
    groups = [(AT_DIAGNOSIS, n_dx)] + ([(EVER, n_dx), (AT_RELAPSE, n_rel)] if followed else [])
    for names, n in groups:
        for name in names:
            p = summary[name] if n else float("nan")
            out[name] = round(100 * p, 4)
            out[f"{name}_se"] = round(100 * float(np.sqrt(p * (1 - p) / n)), 4) if n else None
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--at-diagnosis", action="store_true", help="stop every course at diagnosis")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "proportions.jsonl")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides (engine=exact, sim.max_step_days=7, ...)")
    args = ap.parse_args(argv)
    extra = ["sim.followup_years=0"] if args.at_diagnosis else []
    cfg = load(
        [f"cohort.n_patients={args.patients}", f"seed={args.seed}", "sim.snapshot_every=0", *extra, *args.overrides]
    )
    t0 = time.perf_counter()
    res = run_cohort(cfg)
    row = {
        "overrides": [*extra, *args.overrides],
        "seed": args.seed,
        "patients": args.patients,
        "wall_s": round(time.perf_counter() - t0, 1),
        "revision": git_revision(),
        **proportions(res.patients, followed=cfg.sim.followup_years > 0),
    }
    line = json.dumps(row)
    with args.out.open("a") as fh:  # one short line per run: appended whole
        fh.write(line + "\n")
    print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
