"""``emdsim-trial``: run the in-silico trials of ``trials/trials.yaml``.

::

    emdsim-trial list
    emdsim-trial run q1_novel_agents                      # -> trials/q1_novel_agents/
    emdsim-trial run q1_novel_agents hydra/launcher=joblib hydra.launcher.n_jobs=2
    emdsim-trial run q1_novel_agents --tiny --out /tmp/q1 # a minutes-long check of the config
    emdsim-trial run q2_allo_vs_auto --draws fits/runs/match-2026-11-30/posterior.parquet --n-draws 10

Each run is one ``emdsim -m`` sweep (any launcher; re-running resumes) over the arms and the
replicate seeds, then the paired comparison: ``comparison.csv``, ``comparison.png`` and a README
with the question, the design, the command, the table, the figure and the limits.

With ``--draws FILE`` (a table of parameter draws, e.g. a fit's posterior: its columns that are
parameter paths) the trial also propagates the parameters' uncertainty: every arm runs on each of
``--n-draws`` draws evenly spaced through the table (all by default; a fit's posterior is a
systematic resample, so evenly spaced rows are a stratified subsample of it) and each seed. A
replicate is a (draw, seed) pair, paired across the arms, so the intervals include the spread of
the parameters as well as the patients'. An arm that
sets a parameter keeps its own value over the draw's.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from emdsim.cli.args import command_parser, parse_with_overrides, run_command
from emdsim.config.load import CONF_DIR, compose, select_values
from emdsim.config.schema import ConfigError
from emdsim.studies import sweep
from emdsim.studies.rundir import atomic_write_parquet, atomic_write_text
from emdsim.studies.trials import arm_table, compare, parse_trial, wound_lesions

__all__ = ["main", "REGISTRY", "load_registry"]

REGISTRY = CONF_DIR.parent / "trials" / "trials.yaml"
TINY = ["cohort.block_size=6", "sim.followup_years=1.5", "sim.max_years_to_diagnosis=5"]


def _groups() -> dict[str, list[str]]:
    return {d.name: sorted(p.stem for p in d.glob("*.yaml")) for d in CONF_DIR.iterdir() if d.is_dir()}


def load_registry(path: Path = REGISTRY) -> dict:
    from emdsim.config.inputs import read_yaml

    data = read_yaml(path, "trial registry")
    groups = _groups()
    return {name: parse_trial(name, entry, groups) for name, entry in (data or {}).items()}


def _arm_column(spec) -> str:
    return f"override.{spec['arm_group']}" if spec.get("arm_group") else "override.design.row"


def _draws(args: argparse.Namespace) -> pd.DataFrame | None:
    """``--n-draws`` rows evenly spaced through ``--draws`` (its parameter-path columns), or None."""
    if args.draws is None:
        if args.n_draws is not None:
            raise ConfigError("--n-draws", args.n_draws, "only with --draws FILE")
        return None
    from emdsim.config.inputs import read_parquet

    table = read_parquet(args.draws, "parameter draws")
    columns = [c for c in table.columns if "." in str(c)]
    if not columns or not len(table):
        raise ConfigError(
            "--draws", str(args.draws), "a table with rows of parameter paths (e.g. a fit's posterior.parquet)"
        )
    n = len(table) if args.n_draws is None else args.n_draws
    if not 1 <= n <= len(table):
        raise ConfigError("--n-draws", args.n_draws, f"an integer in [1, {len(table)}] (the draws in {args.draws})")
    rows = np.linspace(0, len(table) - 1, n).round().astype(int)  # distinct: n <= len(table)
    return table[columns].iloc[rows].astype(float).reset_index(drop=True)


def _with_draws(arms: pd.DataFrame | None, draws: pd.DataFrame) -> pd.DataFrame:
    """Design rows arm-major: row a x K + k is arm a on draw k (the arm's values over the draw's)."""
    if arms is None:
        return draws
    rows = [draws.iloc[k].to_dict() | arms.iloc[a].to_dict() for a in range(len(arms)) for k in range(len(draws))]
    return pd.DataFrame(rows)


def cmd_run(args: argparse.Namespace) -> int:
    draws = _draws(args)
    registry = load_registry()
    if args.name not in registry:
        raise ConfigError("NAME", args.name, f"one of {sorted(registry)}")
    spec = registry[args.name]
    # committed results (trials/NAME) are written only when asked for with --out
    default = Path("outputs") / "trials" / f"{args.name}-{datetime.now():%Y-%m-%d_%H-%M-%S}"
    out = Path(args.out or default).resolve()
    sweep_dir = out / "sweep"
    n = 6 if args.tiny else spec["n_patients"]
    replicates = 2 if args.tiny else spec["replicates"]
    base = [
        f"experiment={spec['config']}",
        f"cohort.n_patients={n}",
        "figures=false",
        "sim.snapshot_patients=0",
        *spec.get("overrides", []),
    ]
    if spec.get("followup_years"):
        base.append(f"sim.followup_years={spec['followup_years']}")
    if args.tiny:
        base += TINY
    if spec.get("arm_group"):
        axes = [f"{spec['arm_group']}={','.join(spec['arms'])}"]
        table = None
    else:
        paths = sorted({p for values in spec["arms"].values() for p in (values or {})})
        table = arm_table(spec, select_values(compose(base), paths))
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_parquet(out / "arms.parquet", table)
        axes = [f"design.file={out / 'arms.parquet'}", f"design.row=range(0,{len(table)})"]
    if draws is not None:  # every arm on every draw: one design table, arm-major
        design = _with_draws(table, draws)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_parquet(out / "design.parquet", design)
        axes = [a for a in axes if not a.startswith("design.")]
        axes += [f"design.file={out / 'design.parquet'}", f"design.row=range(0,{len(design)})"]
    command = [
        sys.executable,
        "-m",
        "emdsim.cli.main",
        "-m",
        *base,
        *axes,
        f"seed=range(1,{replicates + 1})",
        f"hydra.sweep.dir={sweep_dir}",
        *args.overrides,
    ]
    print("emdsim-trial: " + " ".join(command[2:]), flush=True)
    if args.in_process:
        from emdsim.cli.main import run_in_process

        code = run_in_process(command[3:])
    else:
        code = subprocess.call(command)
    if code not in (0, 1):
        return code
    frame = sweep.write_table(sweep_dir)
    arm = _arm_column(spec)
    names = spec["arm_names"]
    replicate = "override.seed"
    if draws is not None:
        k = len(draws)
        row = frame["override.design.row"].astype(int)
        frame["draw"] = row % k
        frame["replicate"] = frame["draw"].astype(str) + ":" + frame["override.seed"].astype(str)
        replicate = "replicate"
        if not spec.get("arm_group"):
            frame[arm] = row // k
    if not spec.get("arm_group"):
        frame[arm] = frame[arm].map(lambda i: names[int(i)])
    result = compare(
        frame, arm, spec["reference"], spec["metrics"], replicate=replicate, order=names,
        draw="draw" if draws is not None else None,
    )  # fmt: skip
    extra = ""
    if "wounds" in spec.get("analyses", []):
        done = frame[frame["status"] == "done"]
        wounds = wound_lesions([(a, sweep_dir / d) for a, d in zip(done[arm], done["dir"], strict=True)])
        atomic_write_text(out / "wounds.csv", wounds.to_csv(index=False))
        extra = _wound_summary(wounds, done, arm)
    atomic_write_text(out / "comparison.csv", result.to_csv(index=False, float_format="%.6g"))
    from emdsim.viz.sweeps import plot_comparison

    plot_comparison(result, spec["reference"], out / "comparison.png", title=spec["question"])
    command_text = " ".join(["emdsim-trial", "run", args.name, *(["--tiny"] if args.tiny else []), *args.overrides])
    if draws is not None:
        command_text += f" --draws {args.draws} --n-draws {len(draws)}"
        extra = (
            f"\nParameter uncertainty: every arm ran on {len(draws)} draws evenly spaced through `{args.draws}` "
            f"({', '.join('`' + c + '`' for c in draws.columns)}) and each seed. A replicate is a (draw, seed) "
            "pair: the 95 % interval is that of the effect averaged over the draws (its variance includes the "
            "parameters' spread), and the last column is the effect's range over the draws (each draw's effect "
            "still carries the noise of its own cohorts).\n" + extra
        )
    atomic_write_text(out / "README.md", _readme(spec, result, command_text, n, replicates, extra, frame))
    print(f"emdsim-trial: {out / 'README.md'}", flush=True)
    return code


def _wound_summary(wounds: pd.DataFrame, done: pd.DataFrame, arm: str) -> str:
    lines = [
        "",
        "### Wound-site plasmacytomas",
        "",
        "Wound lesions seeded (any size) and detected by imaging, pooled over replicates.",
        "",
        "| arm | patients (all replicates) | wound lesions seeded | detected | seeded per 1,000 patients "
        "| median months after the procedure | high-risk share |",
        "|---|---|---|---|---|---|---|",
    ]
    for a, g in done.groupby(arm):
        w = wounds[wounds["arm"] == a]
        n_pat = int(g["n_patients"].sum())
        med = f"{w['months_after_procedure'].median():.1f}" if len(w) else "-"
        hr = f"{w['high_risk'].mean():.0%}" if len(w) else "-"
        det = int(w["detected"].sum()) if len(w) else 0
        lines.append(f"| {a} | {n_pat} | {len(w)} | {det} | {1000 * len(w) / max(n_pat, 1):.1f} | {med} | {hr} |")
    return "\n".join(lines) + "\n"


def _fmt(v) -> str:
    return "-" if pd.isna(v) else f"{v:.3g}"


def _readme(spec, result: pd.DataFrame, command: str, n: int, replicates: int, extra: str, frame) -> str:
    arms = spec["arms"]
    lines = [
        f"# {spec['name']}: {spec['question']}",
        "",
        "## Design",
        "",
        f"- Model: `experiment={spec['config']}` (the parameter set of `conf/experiment/{spec['config']}.yaml`), "
        f"{n} virtual patients per cohort, "
        f"{replicates} replicate cohorts (seeds 1..{replicates}); every arm runs on the same patients and "
        "streams (common random numbers).",
        f"- Arms ({'config group `' + spec['arm_group'] + '`' if spec.get('arm_group') else 'parameter sets'}), "
        f"reference `{spec['reference']}`:",
    ]
    if spec.get("arm_group"):
        lines += [f"  - `{a}`" for a in arms]
    else:
        lines += [
            f"  - `{a}`: " + (", ".join(f"`{k}={v}`" for k, v in (arms[a] or {}).items()) or "defaults") for a in arms
        ]
    if spec.get("overrides"):
        lines.append(f"- Fixed overrides: {', '.join('`' + o + '`' for o in spec['overrides'])}")
    n_failed = int((frame["status"] != "done").sum())
    lines += [
        "",
        "## Reproduce",
        "",
        "```bash",
        command,
        "```",
        "",
        f"{int((frame['status'] == 'done').sum())} jobs finished, {n_failed} did not.",
        "",
        "## Result",
        "",
        "Mean over replicate cohorts per arm; difference from the reference arm paired by replicate, "
        "with its 95% interval across replicates (fractions are of diagnosed or relapsed patients; "
        "months for medians).",
    ]
    by_draw = "draws_5" in result
    if by_draw:
        lines[-1] += (
            " With parameter draws, the last column is the 5-95 % range over the draws of each draw's "
            "effect (averaged over its seeds): how much the answer depends on the fitted parameters."
        )
    lines += [
        "",
        "| metric | arm | mean | difference vs reference | 95% interval |"
        + (" over draws, 5-95 % |" if by_draw else ""),
        "|---|---|---|---|---|" + ("---|" if by_draw else ""),
    ]
    for r in result.itertuples():
        diff = getattr(r, "difference", float("nan"))
        ci = "(reference)" if r.arm == spec["reference"] else f"{_fmt(r.lower)} to {_fmt(r.upper)}"
        line = f"| {r.metric} | {r.arm} | {_fmt(r.mean)} | {_fmt(diff)} | {ci} |"
        if by_draw:
            line += " |" if r.arm == spec["reference"] else f" {_fmt(r.draws_5)} to {_fmt(r.draws_95)} |"
        lines.append(line)
    lines += [extra, "![comparison](comparison.png)", "", "## Limits", "", spec.get("limits", "").strip(), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = command_parser(
        "emdsim-trial",
        "In-silico trials on the open questions of the seed editorial (trials/trials.yaml):\n"
        "every arm runs on the same virtual patients (replicate r is seed=r in every arm) through emdsim -m\n"
        "and any Hydra launcher; differences from the reference arm are paired by replicate, with 95 %\n"
        "intervals across replicates.",
        [
            ("emdsim-trial list", "the trials and their questions"),
            ("emdsim-trial run q2_allo_vs_auto --tiny", "check a trial's config in seconds"),
            ("emdsim-trial run q2_allo_vs_auto hydra/launcher=joblib", "the trial on every core"),
            ("emdsim-trial run q2_allo_vs_auto --out trials/q2_allo_vs_auto", "update the committed results"),
        ],
        "OUT (default outputs/trials/<name>-<time>): sweep/, comparison.csv, comparison.png, README.md;\n"
        "  the committed results under trials/ change only with --out.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the trials and their questions")
    run = sub.add_parser("run", help="run one trial's sweep and compare its arms")
    run.add_argument("name")
    run.add_argument("--tiny", action="store_true", help="6 patients, 2 replicates, 1.5 years: checks the config only")
    run.add_argument(
        "--out",
        type=Path,
        help="output folder (default outputs/trials/NAME-<time>; --out trials/NAME updates the committed results)",
    )
    run.add_argument(
        "--draws",
        type=Path,
        help="parameter draws (e.g. a fit's posterior.parquet): every arm runs on each draw and seed, and the "
        "intervals include the parameters' uncertainty",
    )
    run.add_argument("--n-draws", type=int, help="use N draws evenly spaced through the table (default: all)")
    run.add_argument(
        "--in-process",
        action="store_true",
        help="run the jobs in this process with the basic launcher (tests, notebooks)",
    )
    args, args.overrides = parse_with_overrides(parser, argv)
    run_command("emdsim-trial", "invalid trial", cmd_run if args.command == "run" else cmd_list, args)


def deprecated_main(argv: list[str] | None = None) -> None:
    """``emdsim-experiment``: the name of ``emdsim-trial`` before 0.2; runs it after a note on stderr."""
    print("emdsim-experiment: renamed emdsim-trial (the registry is trials/trials.yaml); running that", file=sys.stderr)
    main(argv)


def cmd_list(args: argparse.Namespace) -> int:
    for name, spec in load_registry().items():
        print(f"{name}: {spec['question']}")
    return 0


if __name__ == "__main__":
    main()
