"""``emdsim-design``: Latin-hypercube, Morris and Sobol designs run through ``emdsim -m``.

::

    emdsim-design run designs/screen.yaml --out sweeps/screen [-- hydra/launcher=joblib ...]
    emdsim-design analyse sweeps/screen

``run`` validates the spec against the configuration (names, allowed intervals) before anything
starts, writes ``design.parquet`` and ``design.json`` in the output directory, runs every row as a
job of ``emdsim -m design.file=... design.row=range(0,N)`` (any Hydra launcher; the sweep
directory is the output directory, so re-running resumes), then ``analyse`` writes
``sensitivity.parquet`` and ``sensitivity.png``.  Every row runs with the same model seed (common
random numbers), so differences between rows come from the parameters.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

from emdsim import rng as seeds
from emdsim.cli.args import command_parser, parse_with_overrides, run_command
from emdsim.config.inputs import check_name, read_json, read_parquet, read_yaml
from emdsim.config.schema import ConfigError, describe_parameters
from emdsim.studies import sweep
from emdsim.studies.design import DesignSpec, analyse, generate, parse_spec
from emdsim.studies.rundir import atomic_write_parquet, atomic_write_text

__all__ = ["main", "load_spec"]

DESIGN_TABLE, DESIGN_SPEC, SENSITIVITY, SENSITIVITY_PNG = (
    "design.parquet",
    "design.json",
    "sensitivity.parquet",
    "sensitivity.png",
)


def known_parameters(overrides: list[str]) -> dict[str, dict]:
    """Numeric parameters of the configuration (with these overrides) and their intervals."""
    from emdsim.config.load import load

    return {r["field"]: r for r in describe_parameters(load(overrides))}


def load_spec(path: Path, extra_overrides: list[str] = ()) -> DesignSpec:
    data = read_yaml(path, "design spec")
    overrides = [str(o) for o in data.get("overrides") or ()] + list(extra_overrides)
    return parse_spec(data, known_parameters(overrides))


def _spec_json(spec: DesignSpec, path: Path, extra: list[str]) -> str:
    return (
        json.dumps(
            {
                "spec_file": str(path),
                "name": spec.name,
                "method": spec.method,
                "n": spec.n,
                "seed": spec.seed,
                "morris_levels": spec.morris_levels,
                "outputs": list(spec.outputs),
                "overrides": list(spec.overrides) + list(extra),
                "parameters": [{"path": p.path, "lo": p.lo, "hi": p.hi, "log": p.log} for p in spec.parameters],
            },
            indent=1,
        )
        + "\n"
    )


def _spec_from_json(out: Path) -> DesignSpec:
    data = read_json(out / DESIGN_SPEC, "design record")
    params = {p["path"]: {"lo": p["lo"], "hi": p["hi"], "log": p["log"]} for p in data["parameters"]}
    known = {p: {"lo": None, "hi": None} for p in params}
    return parse_spec(
        {
            "name": data["name"],
            "method": data["method"],
            "n": data["n"],
            "seed": data["seed"],
            "morris_levels": data["morris_levels"],
            "outputs": data["outputs"],
            "parameters": params,
        },
        known,
    )


def cmd_run(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec, args.overrides)
    check_name("design.name", spec.name)
    out = Path(args.out or f"sweeps/{spec.name}").resolve()
    design = generate(spec, seeds.stream(spec.seed, seeds.DESIGN, 0))
    table = out / DESIGN_TABLE
    if table.is_file() and not read_parquet(table, "design table").equals(design):
        raise ConfigError("--out", str(out), "a new directory: it holds a different design")
    atomic_write_parquet(table, design)
    atomic_write_text(out / DESIGN_SPEC, _spec_json(spec, args.spec, args.overrides))
    print(
        f"emdsim-design: {spec.method} design, {len(spec.parameters)} parameters, {len(design)} runs; results in {out}",
        flush=True,
    )
    if args.dry_run:
        return 0
    command = [
        sys.executable,
        "-m",
        "emdsim.cli.main",
        "-m",
        f"design.file={table}",
        f"design.row=range(0,{len(design)})",
        *spec.overrides,
        *args.overrides,
        f"hydra.sweep.dir={out}",
    ]
    code = subprocess.call(command)
    if code not in (0, 1):  # 1: some jobs failed, the table is written all the same
        print(f"emdsim-design: the sweep stopped with status {code}", file=sys.stderr)
        return code
    return cmd_analyse(argparse.Namespace(dir=out)) or code


def cmd_analyse(args: argparse.Namespace) -> int:
    out = Path(args.dir)
    if not (out / DESIGN_SPEC).is_file() or not (out / DESIGN_TABLE).is_file():
        raise ConfigError("DIR", str(out), f"a directory written by `emdsim-design run` ({DESIGN_SPEC} missing)")
    spec = _spec_from_json(out)
    design = read_parquet(out / DESIGN_TABLE, "design table")
    frame = sweep.write_table(out)
    done = frame[frame["status"] == "done"] if len(frame) else frame
    by_row = done.set_index("override.design.row") if len(done) else pd.DataFrame()
    outputs = pd.DataFrame(
        {
            o: [by_row[o].get(i, float("nan")) if o in by_row else float("nan") for i in range(len(design))]
            for o in spec.outputs
        }
    )
    try:
        indices = analyse(spec, design, outputs, seeds.stream(spec.seed, seeds.DESIGN, 1))
    except ValueError as err:
        print(f"emdsim-design: cannot analyse {out}: {err}", file=sys.stderr)
        return 1
    atomic_write_parquet(out / SENSITIVITY, indices)
    from emdsim.viz.sweeps import plot_sensitivity

    plot_sensitivity(indices, spec.method, out / SENSITIVITY_PNG)
    print(f"emdsim-design: sensitivity indices in {out / SENSITIVITY}, chart {out / SENSITIVITY_PNG}")
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = command_parser(
        "emdsim-design",
        "Sensitivity designs (SALib Morris, Sobol, Latin hypercube) over named parameters, run as an\n"
        "emdsim sweep through any Hydra launcher, then their indices. A spec names each parameter by its\n"
        "config path with a range (log: true samples in log10); ranges are checked against the schema and\n"
        "the design's size against what its method needs before anything runs.",
        [
            ("emdsim-design run designs/tiny.yaml --out sweeps/tiny", "20-run LHS, ~40 s"),
            ("emdsim-design run designs/screen.yaml hydra/launcher=joblib", "Morris screen on every core"),
            ("emdsim-design run designs/screen.yaml --dry-run", "write the design table only"),
            ("emdsim-design analyse sweeps/screen", "indices again from a finished run"),
        ],
        "SWEEP_DIR (default sweeps/<name>): design.parquet, design.json, one job folder per row,\n"
        "  sweep.parquet, sensitivity.parquet, sensitivity.png; re-running the same command resumes.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="validate a design spec, run its rows through emdsim -m, analyse")
    run.add_argument("spec", type=Path, help="design spec (YAML), e.g. designs/screen.yaml")
    run.add_argument("--out", help="sweep directory (default sweeps/<name>); re-running resumes")
    run.add_argument("--dry-run", action="store_true", help="write the design table only")
    run.add_argument("overrides", nargs="*", help="more emdsim overrides, e.g. hydra/launcher=joblib")
    ana = sub.add_parser("analyse", help="sensitivity indices of a finished design run")
    ana.add_argument("dir", type=Path)
    args, extra = parse_with_overrides(parser, argv)
    if args.command == "run":
        args.overrides = list(args.overrides) + extra
    run_command("emdsim-design", "invalid design", cmd_run if args.command == "run" else cmd_analyse, args)


if __name__ == "__main__":
    main()
