"""``emdsim-fit validate SPEC``: score the model against every reported figure.

Each cohort scenario of the spec (``fits/evidence.yaml``) runs as one Hydra sweep over the replicate
seeds (``emdsim -m``: any launcher, resumable, a crashed job is a failed row), into
``OUT/sweeps/<scenario>`` (a mixed scenario: one sweep per part, ``OUT/sweeps/<scenario>/<part>``,
its replicates pooled part by part); the statistics are measured on the jobs' patient and lesion tables
(:mod:`emdsim.studies.validate`) and written as ``validation.parquet``, ``validation.md`` and
``validation_forest.png``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pandas as pd

from emdsim.analysis.evidence import STOP_AT_DIAGNOSIS, stops_at_diagnosis
from emdsim.analysis.targets import load_targets
from emdsim.config.inputs import read_parquet, read_yaml
from emdsim.config.load import CONF_DIR
from emdsim.config.schema import ConfigError
from emdsim.studies import sweep
from emdsim.studies.rundir import atomic_write_parquet, atomic_write_text, provenance
from emdsim.studies.validate import (
    Scenario,
    ValidationSpec,
    markdown,
    parse_validation_spec,
    part_seed,
    pool,
    score,
)

__all__ = ["cmd_validate", "load_validation_spec"]

#: what the command writes beside the sweeps (validation.md last but one, the figure last)
OUTPUTS = ("validation.parquet", "validation.md", "provenance.json", "validation_forest.png")
#: a minutes-long check of a spec: small cohorts, short courses (everyone followed the 2 years)
TINY = [
    "cohort.n_patients=24",
    "cohort.block_size=24",
    "sim.followup_years=2",
    "scenario.accrual_years=0",
    "sim.max_years_to_diagnosis=5",
]


def load_validation_spec(path: Path) -> ValidationSpec:
    data = read_yaml(path, "validation spec")
    scenarios = sorted(p.stem for p in (CONF_DIR / "scenario").glob("*.yaml"))
    experiments = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))
    return parse_validation_spec(data, load_targets(), scenarios, experiments)


def _replicates(spec: ValidationSpec, args: argparse.Namespace) -> int:
    """Replicate seeds per scenario (1 with --tiny)."""
    return 1 if args.tiny else spec.replicates


def _sweeps(spec: ValidationSpec, name: str, out: Path, args: argparse.Namespace) -> list[tuple[Path, int, list[str]]]:
    """The sweeps of scenario ``name``: (folder, first seed, ``emdsim -m`` arguments) of each part,
    ``OUT/sweeps/<scenario>`` for an unmixed scenario, ``OUT/sweeps/<scenario>/<part>`` for a mixed one."""
    sc = spec.scenarios[name]
    replicates = _replicates(spec, args)
    sub_folders = [p.name for p in sc.parts] or [""]
    # a cohort scored only at diagnosis stops every course there: the same diagnoses, ~3x cheaper
    at_diagnosis = stops_at_diagnosis(t.statistic for t in spec.targets if t.scenario == name)
    stop = list(STOP_AT_DIAGNOSIS) if at_diagnosis else []
    sweeps = []
    for k, (sub, overrides, n) in enumerate(zip(sub_folders, sc.part_overrides(), sc.part_sizes(), strict=True)):
        folder = out / "sweeps" / name / sub
        first = part_seed(1, k)
        size = [] if args.tiny else [f"cohort.n_patients={n}"]
        command = [
            "-m",
            f"experiment={args.experiment or spec.experiment}",
            *overrides,
            *spec.overrides,
            *size,
            *(TINY if args.tiny else []),
            *stop,
            "figures=false",
            "sim.snapshot_patients=0",  # the scores read patients and lesions only (as the fit's cohorts)
            f"seed=range({first},{first + replicates})",
            f"hydra.sweep.dir={folder}",
            *args.overrides,
        ]
        sweeps.append((folder, first, command))
    return sweeps


def _cohorts(sweep_dir: Path, first_seed: int) -> dict[int, tuple[pd.DataFrame, pd.DataFrame]]:
    """The finished jobs of a sweep by replicate (0 for its first seed)."""
    frame = sweep.write_table(sweep_dir)
    done = frame[frame["status"] == "done"] if len(frame) else frame
    return {
        int(seed) - first_seed: (
            read_parquet(sweep_dir / d / "patients.parquet", "patients table"),
            read_parquet(sweep_dir / d / "lesions.parquet", "lesions table"),
        )
        for d, seed in zip(done["dir"], done["seed"], strict=True)
    }


def _mixed(parts: list[dict[int, tuple[pd.DataFrame, pd.DataFrame]]]) -> list[tuple[pd.DataFrame, pd.DataFrame]]:
    """The replicates every part finished, each part's patients pooled into one cohort."""
    common = sorted(set.intersection(*(set(p) for p in parts)))
    return [pool([p[r] for p in parts]) for r in common]


def _size_text(sc: Scenario) -> str:
    if not sc.parts:
        return str(sc.n_patients)
    mix = " + ".join(f"{p.name} {n}" for p, n in zip(sc.parts, sc.part_sizes(), strict=True))
    return f"{sc.n_patients} ({mix})"


def cmd_validate(args: argparse.Namespace) -> int:
    spec = load_validation_spec(args.spec)
    if args.experiment:
        experiments = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))
        if args.experiment not in experiments:
            raise ConfigError("--experiment", args.experiment, f"a parameter set of conf/experiment ({experiments})")
    default = Path("outputs") / "validate" / f"{spec.name}-{datetime.now():%Y-%m-%d_%H-%M-%S}"
    out = Path(args.out or default).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for name in OUTPUTS:  # an interrupted re-run must not leave the earlier results looking current
        (out / name).unlink(missing_ok=True)
    code = 0
    cohorts = {}
    needed = sorted({s.scenario for s in spec.targets})
    for i, name in enumerate(needed, 1):
        parts = []
        for folder, first, command in _sweeps(spec, name, out, args):
            print(f"emdsim-fit validate: [{i}/{len(needed)}] {name}: emdsim " + " ".join(command), flush=True)
            if args.in_process:
                from emdsim.cli.main import run_in_process

                rc = run_in_process(command)
            else:
                rc = subprocess.call([sys.executable, "-m", "emdsim.cli.main", *command])
            if rc not in (0, 1):
                return rc
            code = max(code, rc)
            parts.append(_cohorts(folder, first))
        cohorts[name] = _mixed(parts)
    replicates = _replicates(spec, args)
    short = {n: len(c) for n, c in cohorts.items() if len(c) < replicates}
    for name, k in short.items():
        print(
            f"emdsim-fit validate: {name}: {k} of {replicates} replicates finished (see "
            f"{out / 'sweeps' / name / 'sweep.parquet'}; a job refused as 'another configuration' means the "
            "model or the spec changed since that folder was filled: validate into a new --out)",
            file=sys.stderr,
        )
        code = max(code, 1)
    table = score(spec, cohorts)
    atomic_write_parquet(out / "validation.parquet", table)
    header = (
        f"# Validation: {spec.name} (`experiment={args.experiment or spec.experiment}`)\n\n"
        f"Command: `emdsim-fit validate {args.spec}{' --tiny' if args.tiny else ''}"
        f"{' ' + ' '.join(args.overrides) if args.overrides else ''}`; "
        f"{replicates} replicate seed(s) per scenario; cohort sizes "
        + ", ".join(f"{n} {'(tiny)' if args.tiny else _size_text(spec.scenarios[n])}" for n in needed)
        + ". Generated by the command; do not edit."
        + "".join(f"\n\n**Incomplete:** {n}: {k} of {replicates} replicates finished." for n, k in short.items())
    )
    atomic_write_text(out / "validation.md", markdown(table, header))
    # versions and git revision (each job's own provenance.json records its seed and engine)
    record = {k: v for k, v in provenance(1, "").items() if not k.startswith("seed") and k != "engine"}
    record |= {
        "spec": str(args.spec),
        "experiment": args.experiment or spec.experiment,
        "tiny": bool(args.tiny),
        "seeds": list(range(1, replicates + 1)),
        "overrides": args.overrides,
    }
    atomic_write_text(out / "provenance.json", json.dumps(record, indent=1) + "\n")
    from emdsim.viz.fitplots import validation_forest

    validation_forest(table, out / "validation_forest.png", title=f"{spec.name}: model vs reported figures")
    inside = int(table["inside"].sum())
    print(f"emdsim-fit validate: {inside} of {len(table)} reported figures inside their intervals -> {out}")
    return code
