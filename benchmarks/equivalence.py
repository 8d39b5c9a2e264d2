"""The hybrid engine against the exact one: replicate cohorts and the equivalence suite's tests.

    python benchmarks/equivalence.py                       # 40 x 1,965 patients per engine (~15 min on 2 cores)
    python benchmarks/equivalence.py --replicates 4 --patients 400 --out /tmp/eq   # a quick look
    python benchmarks/equivalence.py --replicates 24 --patients 6000 --seed 2000 --tag large sim.max_step_days=28

Writes ``equivalence.md`` (the tables) and ``equivalence.json`` (the same, and the CPU seconds
of each engine, measured in this run) in ``--out`` (default: ``benchmarks/``); with scenario
overrides, ``equivalence-<overrides>.md`` / ``.json`` (e.g. ``equivalence-experiment=fitted.md``).  Exit status 1 when a
statistic is not shown equivalent or a difference test fails at the family-wise level 0.001.

Why 40 replicates by default (2026-12-02; the issue asks for at least 20): at 20 the standard error
of a PS or EMD proportion's difference is ~0.25-0.37 points, so TOST within +-1 point declares two
identical engines equivalent with power ~0.7-0.98 per proportion (the reports of seeds 1000, 3000,
4000 and 5000), and a true difference of 0.2-0.3 points (what 460,000 diagnosed patients per engine
measure at diagnosis, ``benchmarks/proportions-2026-12-02.md``) fails one of the nine proportions in
most runs. At 40 the standard error is ~0.19-0.26 and the power at no difference ~0.97-1.0
(``benchmarks/equivalence-seeds6000*.md``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from emdsim.cohort.run import run_cohort
from emdsim.config.load import load
from emdsim.studies.equivalence import compare, markdown_table, run_replicates, verdict
from emdsim.studies.rundir import atomic_write_text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--replicates", type=int, default=40)
    ap.add_argument("--patients", type=int, default=1965)
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent)
    ap.add_argument("--tag", default="", help="appended to the report's name (a second run of one scenario)")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides of the scenario (e.g. experiment=fitted)")
    args = ap.parse_args(argv)
    seeds = range(args.seed, args.seed + args.replicates)
    results, cpu = {}, {}
    for engine in ("exact", "hybrid"):

        def run(seed: int, engine: str = engine):
            cfg = load(
                [
                    *args.overrides,
                    f"engine={engine}",
                    f"seed={seed}",
                    f"cohort.n_patients={args.patients}",
                    "figures=false",
                ]
            )
            res = run_cohort(cfg)
            print(f"{engine} seed {seed}: {len(res.patients)} patients", file=sys.stderr, flush=True)
            return res.patients, res.lesions

        t0 = time.process_time()
        import resource

        c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        results[engine] = run_replicates(run, seeds)
        c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu[engine] = time.process_time() - t0 + (c1.ru_utime + c1.ru_stime) - (c0.ru_utime + c0.ru_stime)
    cmp = compare(results["exact"], results["hybrid"], seed=args.seed)
    n_tests = len(cmp.tests)
    alpha = 0.001 / n_tests
    failures = verdict(cmp, alpha)
    args.out.mkdir(parents=True, exist_ok=True)
    md = [
        f"# Hybrid vs exact engine: {args.replicates} replicate cohorts of {args.patients} patients each",
        "",
        f"Scenario overrides: {' '.join(args.overrides) or '(default)'}; "
        f"seeds {args.seed}..{args.seed + args.replicates - 1}; "
        f"diagnosed patients pooled: exact {cmp.patients[0]:,}, hybrid {cmp.patients[1]:,}.",
        f"CPU seconds, all replicates: exact {cpu['exact']:.0f}, hybrid {cpu['hybrid']:.0f} "
        f"(ratio {cpu['exact'] / cpu['hybrid']:.2f}).",
        "",
        "## Two one-sided tests (percentage points; months for the medians), level 0.05 each",
        "",
        markdown_table(cmp.tost),
        "",
        f"## Difference tests (family-wise 0.001: each at {alpha:.2g})",
        "",
        markdown_table(cmp.tests),
        "",
        "## Verdict",
        "",
        *(f"- {f}" for f in failures or ["every statistic equivalent, no difference test failed"]),
        "",
    ]
    stem = (
        "equivalence"
        + ("-" + "_".join(args.overrides) if args.overrides else "")
        + (f"-{args.tag}" if args.tag else "")
    )
    atomic_write_text(args.out / f"{stem}.md", "\n".join(md))
    record = {
        "replicates": args.replicates,
        "patients": args.patients,
        "overrides": args.overrides,
        "cpu_seconds": cpu,
        "tost": cmp.tost.to_dict(orient="records"),
        "tests": cmp.tests.to_dict(orient="records"),
        "failures": failures,
    }
    atomic_write_text(args.out / f"{stem}.json", json.dumps(record, indent=1, default=float))
    print("\n".join(md))
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
