"""``emdsim-fit``: ABC-SMC fit of the biology to the reported incidence of several cohorts.

::

    emdsim-fit run fits/incidence.yaml                 # -> fits/runs/incidence-<time>/
    emdsim-fit run fits/incidence.yaml --out DIR       # resumes when DIR holds an interrupted fit
    emdsim-fit run fits/incidence.yaml --dask tcp://scheduler:8786   # pyabc's Dask sampler
    emdsim-fit report DIR                              # figures, fit_report.md, fitted.yaml again

The run directory holds pyabc's history database (``fit.db``), the spec, provenance, the
posterior (``posterior.parquet``), the posterior-predictive check (``predictive.parquet``,
``fit_predictive.png``), the marginals and pairs (``fit_posterior.png``), ``fit_report.md`` and
``fitted.yaml`` (an ``experiment`` override with the posterior medians).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from emdsim import rng as seeds
from emdsim.analysis.targets import TARGETS_FILE, load_targets
from emdsim.cli.args import command_parser, parse_with_overrides, run_command
from emdsim.config.inputs import check_name, read_yaml
from emdsim.config.load import CONF_DIR, load
from emdsim.config.schema import ConfigError, EmdConfig, describe_parameters, resolve_path
from emdsim.studies.fit import abc as fit_abc
from emdsim.studies.fit.objective import distance, simulate, weighted_quantile, with_parameters
from emdsim.studies.fit.spec import STATISTICS, FitSpec, parse_fit_spec
from emdsim.studies.rundir import atomic_write_parquet, atomic_write_text, provenance

__all__ = ["main", "load_fit_spec", "scenario_bases", "effective_sample_size"]

effective_sample_size = fit_abc.effective_sample_size  # re-exported: earlier code imported it from here

log = logging.getLogger("emdsim.studies.fit")
DB, SPEC, POSTERIOR, PREDICTIVE, REPORT, FITTED, STATE, POINT = (
    "fit.db",
    "fit_spec.yaml",
    "posterior.parquet",
    "predictive.parquet",
    "fit_report.md",
    "fitted.yaml",
    "fit_state.json",
    "point_estimate.parquet",
)
#: block size of fit simulations (small cohorts: little padding)
FIT_BLOCK = 64


def load_fit_spec(path: Path) -> tuple[FitSpec, dict]:
    data = read_yaml(path, "fit spec")
    known = {r["field"]: r for r in describe_parameters(load([str(o) for o in data.get("overrides") or ()]))}
    scenarios = sorted(p.stem for p in (CONF_DIR / "scenario").glob("*.yaml"))
    targets_file = Path(data["targets_file"]) if data.get("targets_file") else TARGETS_FILE
    return parse_fit_spec(data, known, load_targets(targets_file), scenarios), data


def scenario_bases(spec: FitSpec, scale: int = 1) -> dict[str, EmdConfig]:
    """The validated configuration of every cohort scenario (before the fitted parameters), with
    ``scale`` times the spec's simulated cohort."""
    return {
        name: load(
            [
                *spec.overrides,
                f"scenario={name}",
                f"cohort.n_patients={scale * sc['n_patients']}",
                f"cohort.block_size={min(FIT_BLOCK, scale * sc['n_patients'])}",
                "cohort.n_jobs=1",
                "sim.snapshot_patients=0",
                *sc["overrides"],
            ]
        )
        for name, sc in spec.scenarios.items()
    }


def cmd_run(args: argparse.Namespace) -> int:
    spec, raw = load_fit_spec(args.spec)
    check_name("fit.name", spec.name)
    if args.install:
        check_name("--install", args.install)
    bases = scenario_bases(spec)  # every scenario composed and validated before anything is written
    out = Path(args.out or f"fits/runs/{spec.name}-{datetime.now():%Y-%m-%d_%H-%M-%S}").resolve()
    if (out / SPEC).is_file() and read_yaml(out / SPEC, "fit spec") != raw:
        raise ConfigError("--out", str(out), "a new directory: it holds a fit with another spec")
    out.mkdir(parents=True, exist_ok=True)
    db = out / DB
    atomic_write_text(out / SPEC, yaml.safe_dump(raw, sort_keys=False))
    prov = provenance(spec.seed, ",".join(sorted({cfg.engine for cfg in bases.values()})))
    prov["fit"] = {"spec_file": str(args.spec), "n_procs": args.n_procs, "dask": args.dask}
    atomic_write_text(out / "provenance.json", json.dumps(prov, indent=2) + "\n")
    logging.getLogger("ABC").setLevel(logging.INFO)
    state = json.loads((out / STATE).read_text()) if (out / STATE).is_file() else {"wall_s": 0.0}
    resuming = db.is_file()
    abc, done, spent = fit_abc.start(spec, bases, db, n_procs=args.n_procs, dask=args.dask)
    state["wall_s"] = max(state["wall_s"], spent)  # a killed run recorded no fit_state.json
    if resuming:
        print(f"emdsim-fit: resuming {out}: {done} generations done", flush=True)
    left = spec.max_generations - done
    start = time.perf_counter()
    budget = spec.max_walltime_minutes - state["wall_s"] / 60.0
    print(
        f"emdsim-fit: {len(spec.parameters)} parameters, {len(spec.scenarios)} scenarios, {len(spec.targets)} "
        f"targets, {len(spec.constraints)} constraints, {len(spec.requirements)} requirements; "
        f"population {spec.population_size}, {left} generations "
        f"to go, at most {budget:.1f} min; results in {out}",
        flush=True,
    )
    if left > 0 and budget > 0:
        abc.run(
            max_nr_populations=left,
            max_walltime=timedelta(minutes=budget),
            min_acceptance_rate=spec.min_acceptance_rate,
        )
    state["wall_s"] += time.perf_counter() - start
    atomic_write_text(out / STATE, json.dumps(state) + "\n")
    return cmd_report(argparse.Namespace(dir=out, n_procs=args.n_procs, install=args.install))


def _predictive(spec: FitSpec, posterior: pd.DataFrame, n_procs: int) -> pd.DataFrame:
    """Simulate ``predictive_draws`` posterior particles; per target the median and 90% interval."""
    if spec.predictive_draws == 0:
        return pd.DataFrame()
    gen = seeds.stream(spec.seed, seeds.DESIGN, 2)
    idx = gen.choice(len(posterior), size=spec.predictive_draws, p=posterior["weight"].to_numpy())
    draws = [{p.path: float(posterior[p.path].iloc[i]) for p in spec.parameters} for i in idx]
    sims = _simulate_many(spec, scenario_bases(spec), draws, n_procs)
    rows = []
    for t in spec.targets:
        key, denom = STATISTICS[t.statistic]
        values = np.array([s[f"{t.scenario}.{key}"] for s in sims])
        rep = t.reported
        rows.append(
            {
                "target": t.name,
                "scenario": t.scenario,
                "statistic": t.statistic,
                "reported": 100 * t.value,
                "reported_lower": rep.lower,
                "reported_upper": rep.upper,
                "n_reported": t.n,
                "simulated_median": 100 * float(np.median(values)),
                "simulated_lower": 100 * float(np.quantile(values, 0.05)),
                "simulated_upper": 100 * float(np.quantile(values, 0.95)),
                "n_simulated": int(np.median([s[f"{t.scenario}.{denom}"] for s in sims])),
            }
        )
    for c in spec.constraints:
        ok = [bool(s[f"{c.scenario}.{c.name}"]) for s in sims]
        rows.append(
            {
                "target": c.name,
                "scenario": c.scenario,
                "statistic": c.check,
                "reported": math.nan,
                "simulated_median": 100 * float(np.mean(ok)),
                "simulated_lower": math.nan,
                "simulated_upper": math.nan,
                "constraint": c.expected,
            }
        )
    for r in spec.requirements:
        key, _ = STATISTICS[r.statistic]
        values = 100 * np.array([s[f"{r.scenario}.{key}"] for s in sims])
        rows.append(
            {
                "target": r.name,
                "scenario": r.scenario,
                "statistic": r.statistic,
                "reported": math.nan,
                "simulated_median": float(np.median(values)),
                "simulated_lower": float(np.quantile(values, 0.05)),
                "simulated_upper": float(np.quantile(values, 0.95)),
                "required_min": math.nan if r.minimum is None else 100 * r.minimum,
                "required_max": math.nan if r.maximum is None else 100 * r.maximum,
            }
        )
    return pd.DataFrame(rows)


def _simulate_one(job) -> dict:
    spec, bases, values = job
    return simulate(spec, bases, values, fit_abc.run_patients)


def _simulate_many(spec: FitSpec, bases: dict[str, EmdConfig], draws: list[dict], n_procs: int) -> list[dict]:
    if n_procs > 1 and len(draws) > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=n_procs) as pool:
            return list(pool.map(_simulate_one, [(spec, bases, d) for d in draws]))
    return [_simulate_one((spec, bases, d)) for d in draws]


def _point_estimate(
    spec: FitSpec, posterior: pd.DataFrame, history, n_procs: int
) -> tuple[dict[str, float], pd.DataFrame]:
    """The parameter set shipped as fitted.yaml and the table of candidates it was chosen from.

    Without ``point_estimate`` in the spec: the weighted posterior medians.  With it: the
    ``candidates`` last-generation particles of smallest ABC distance are simulated again on cohorts
    ``scale`` times larger, and the one closest to the targets there is chosen (a joint point of the
    posterior; marginal medians of correlated parameters can fall off the ridge the data allow)."""
    w = posterior["weight"].to_numpy()
    medians = {p.path: float(weighted_quantile(posterior[p.path].to_numpy(), w, 0.5)) for p in spec.parameters}
    if not spec.point_candidates:
        return medians, pd.DataFrame()
    best = sorted(fit_abc.last_generation(spec, history), key=lambda q: q[0])[: spec.point_candidates]
    draws = [values for _, values in best]
    print(f"emdsim-fit: point estimate: {len(draws)} candidates on {spec.point_scale}x larger cohorts", flush=True)
    sims = _simulate_many(spec, scenario_bases(spec, spec.point_scale), draws, n_procs)
    rows = []
    for (abc_distance, d), sim in zip(best, sims, strict=True):
        total, terms = distance(sim, spec)
        rows.append(
            {**d, "abc_distance": abc_distance, "rescored_distance": total, **{f"z2.{k}": v for k, v in terms.items()}}
        )
    table = pd.DataFrame(rows).sort_values("rescored_distance", kind="stable").reset_index(drop=True)
    table["chosen"] = table.index == 0
    return {p.path: float(table[p.path].iloc[0]) for p in spec.parameters}, table


def _fitted_yaml(spec: FitSpec, values: dict[str, float], out: Path) -> str:
    how = (
        "the posterior particle chosen by re-simulation (fit_report.md, 'Point estimate')"
        if spec.point_candidates
        else "weighted posterior medians"
    )
    lines = [
        "# @package _global_",
        f"# Fitted by emdsim-fit ({spec.name}) in {out.name}: {how} of the",
        "# parameters the targets identify; every other parameter keeps its sourced default.",
        "# Reproduce a fitted cohort: emdsim experiment=fitted scenario=usmani cohort.n_patients=1965",
    ]
    # the fitted configuration itself (with_parameters walks and validates the paths); a list item
    # (traits.switches.2.rate_per_division) is written with its whole list, since Hydra replaces lists
    rounded = {path: float(f"{v:.4g}") for path, v in values.items()}
    fitted = with_parameters(load(list(spec.overrides)), rounded)
    nested: dict[str, Any] = {}
    lists = False
    for p in spec.parameters:
        parts = p.path.split(".")
        at = next((i for i, part in enumerate(parts) if part.isdigit()), len(parts))
        key_path = parts[:at]  # the value, or the list that holds it
        value = resolve_path(fitted, ".".join(key_path))
        lists |= isinstance(value, list)
        node = nested
        for part in key_path[:-1]:
            node = node.setdefault(part, {})
        node[key_path[-1]] = [dataclasses.asdict(item) for item in value] if isinstance(value, list) else value
    if lists:
        lines.append("# A fitted list item comes with its whole list as configured when fitted.")
    return "\n".join(lines) + "\n" + yaml.safe_dump(nested, sort_keys=False)


def cmd_report(args: argparse.Namespace) -> int:
    out = Path(args.dir)
    if not (out / DB).is_file() or not (out / SPEC).is_file():
        raise ConfigError("DIR", str(out), f"a directory written by `emdsim-fit run` ({DB} missing)")
    spec, _ = load_fit_spec(out / SPEC)
    history = fit_abc.open_history(out / DB)
    posterior = fit_abc.posterior(spec, history)
    atomic_write_parquet(out / POSTERIOR, posterior)
    print(f"emdsim-fit: posterior-predictive check ({spec.predictive_draws} simulations)", flush=True)
    predictive = _predictive(spec, posterior, getattr(args, "n_procs", 1))
    atomic_write_parquet(out / PREDICTIVE, predictive)
    all_pops = history.get_all_populations()
    pops = all_pops[all_pops["t"] >= 0]
    # pyabc stores each generation's wall time as it ends, so a killed fit keeps what it spent
    state = {"wall_s": fit_abc.wall_seconds(history)}
    from emdsim.viz.fitplots import plot_posterior, plot_predictive

    plot_posterior(posterior, spec, out / "fit_posterior.png")
    if len(predictive):
        plot_predictive(predictive, out / "fit_predictive.png", name=spec.name)
    point, candidates = _point_estimate(spec, posterior, history, getattr(args, "n_procs", 1))
    if len(candidates):
        atomic_write_parquet(out / POINT, candidates)
    atomic_write_text(out / FITTED, _fitted_yaml(spec, point, out))
    atomic_write_text(out / REPORT, _report(spec, posterior, predictive, pops, state, history, candidates))
    install = getattr(args, "install", None)
    if install:
        target = CONF_DIR / "experiment" / f"{check_name('--install', install)}.yaml"
        atomic_write_text(target, (out / FITTED).read_text())
        print(f"emdsim-fit: installed {target} (run it with: emdsim experiment={install})", flush=True)
    print(
        f"emdsim-fit: {len(pops)} generations, {int(pops['samples'].sum())} simulations, "
        f"{state['wall_s'] / 60:.1f} min; report {out / REPORT}, fitted parameters {out / FITTED}",
        flush=True,
    )
    return 0


def _report(
    spec: FitSpec,
    posterior: pd.DataFrame,
    predictive: pd.DataFrame,
    pops: pd.DataFrame,
    state: dict,
    history,
    candidates: pd.DataFrame,
) -> str:
    w = posterior["weight"].to_numpy()
    lines = [
        f"# Fit report: {spec.name}",
        "",
        f"ABC-SMC (pyabc), population {spec.population_size}, {len(pops)} generations, "
        f"{int(pops['samples'].sum())} simulations (each = every scenario's cohort), "
        f"wall time {state['wall_s'] / 60:.1f} min.",
        "",
        "| generation | epsilon | simulations | acceptance | effective sample size | wall time (min) |",
        "|---|---|---|---|---|---|",
    ]
    for r in pops.itertuples():
        _, weights = history.get_distribution(m=0, t=r.t)
        wall = f"{r.wall_time / 60:.1f}" if pd.notna(r.wall_time) else "n/a"
        lines.append(
            f"| {r.t} | {r.epsilon:.3g} | {r.samples} | {r.particles / max(r.samples, 1):.2f} | "
            f"{effective_sample_size(np.asarray(weights, float)):.1f} | {wall} |"
        )
    ess = effective_sample_size(w)
    lines += [
        "",
        "## Posterior (weighted median and 95% credible interval)",
        "",
        f"Effective sample size of the last generation: {ess:.1f} of {len(w)} particles (Kish)."
        + (
            " Few particles carry the weight: read the intervals as rough, and the posterior-predictive "
            "draws below repeat those particles."
            if ess < len(w) / 4
            else ""
        ),
        "",
        "| parameter | median | 2.5% | 97.5% | prior | unit | source |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in spec.parameters:
        lo, med, hi = weighted_quantile(posterior[p.path].to_numpy(), w, np.array([0.025, 0.5, 0.975]))
        prior = f"{'log-' if p.log else ''}uniform [{p.lo:g}, {p.hi:g}]"
        lines.append(f"| `{p.path}` | {med:.3g} | {lo:.3g} | {hi:.3g} | {prior} | {p.unit} | {p.source} |")
    lines += [
        "",
        "## Posterior-predictive check",
        "",
        "Simulated median and 90% interval over posterior draws vs the reported value (95% interval).",
        "",
        "| target | scenario | statistic | reported % | simulated % (90% interval) |",
        "|---|---|---|---|---|",
    ]
    required = {r.name: r for r in spec.requirements}
    for r in predictive.itertuples():
        if r.target in required:
            lines.append(
                f"| {r.target} | {r.scenario} | {r.statistic} | required {required[r.target].bound_text()} "
                f"(model requirement) | "
                f"{r.simulated_median:.1f} ({r.simulated_lower:.1f}-{r.simulated_upper:.1f}) |"
            )
            continue
        if isinstance(getattr(r, "constraint", None), str):
            lines.append(
                f"| {r.target} | {r.scenario} | {r.statistic} = {r.constraint} | (qualitative) | "
                f"satisfied in {r.simulated_median:.0f}% of draws |"
            )
            continue
        rep = f"{r.reported:.1f}" + (f" ({r.reported_lower}-{r.reported_upper})" if pd.notna(r.reported_lower) else "")
        lines.append(
            f"| {r.target} | {r.scenario} | {r.statistic} | {rep} | {r.simulated_median:.1f} "
            f"({r.simulated_lower:.1f}-{r.simulated_upper:.1f}) |"
        )
    if len(candidates):
        sizes = ", ".join(f"{name} {spec.point_scale * sc['n_patients']}" for name, sc in spec.scenarios.items())
        lines += [
            "",
            "## Point estimate (fitted.yaml)",
            "",
            f"The {len(candidates)} last-generation particles closest to the targets, simulated again on "
            f"cohorts {spec.point_scale}x larger ({sizes} patients); the one closest there is shipped.",
            "",
            "| "
            + " | ".join([f"`{p.path}`" for p in spec.parameters] + ["ABC distance", "re-simulated distance", "chosen"])
            + " |",
            "|" + "---|" * (len(spec.parameters) + 3),
        ]
        for row in candidates.to_dict("records"):
            cells = [f"{row[p.path]:.3g}" for p in spec.parameters]
            lines.append(
                "| "
                + " | ".join(
                    cells
                    + [f"{row['abc_distance']:.2f}", f"{row['rescored_distance']:.2f}", "yes" if row["chosen"] else ""]
                )
                + " |"
            )
    if spec.requirements:
        lines += ["", "Requirements (bounds the virtual cohort must keep; no report states them):", ""]
        for r in spec.requirements:
            lines.append(f"- `{r.name}` ({r.scenario}, {r.statistic} {r.bound_text()}): {r.source}")
    lines += ["", "Scenarios:", ""]
    for name, sc in spec.scenarios.items():
        lines.append(f"- `{name}`: {sc['n_patients']} simulated patients, overrides {sc['overrides'] or 'none'}")
    lines += ["", f"Fixed overrides of every simulation: {list(spec.overrides) or 'none'}.", ""]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = command_parser(
        "emdsim-fit",
        "Fit the biology to reported incidence (ABC-SMC, pyabc): one parameter set must explain several\n"
        "cohorts at once, each simulated as its study was built (conf/scenario). A spec (fits/*.yaml) names\n"
        "the parameters and priors, the cohort scenarios, the targets of data/targets/clinical_targets.yaml\n"
        "with their statistic, qualitative constraints and requirements.",
        [
            ("emdsim-fit run fits/quick.yaml --out fits/runs/quick-demo", "the whole flow in ~1 min"),
            ("emdsim-fit report fits/runs/quick-demo --install quick", "report again; conf/experiment/quick.yaml"),
            ("emdsim experiment=quick", "a cohort with the fitted values"),
            ("emdsim-fit run fits/incidence.yaml", "the shipped fit, ~1 h on 2 cores"),
            ("emdsim-fit run SPEC --dask tcp://HOST:8786", "simulations on a Dask cluster"),
            ("emdsim-fit validate fits/evidence.yaml", "score the model against every reported figure"),
            ("emdsim-fit match fits/match_quick.yaml", "history matching with GP emulators, under a minute"),
        ],
        "DIR (default fits/runs/<name>-<time>): fit.db (pyabc history; an existing one resumes),\n"
        "  posterior.parquet, predictive.parquet, fit_posterior.png, fit_predictive.png, fit_report.md,\n"
        "  fitted.yaml (copied into conf/experiment only with --install NAME).\n"
        "validate: OUT (default outputs/validate/<name>-<time>): sweeps/<scenario>/, validation.parquet,\n"
        "  validation.md, validation_forest.png.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="fit (or resume a fit) and report")
    run.add_argument("spec", type=Path)
    run.add_argument(
        "--out", type=Path, help="run directory (default fits/runs/<name>-<time>); an existing one resumes"
    )
    run.add_argument(
        "--n-procs", type=int, default=len(os.sched_getaffinity(0)), help="local processes (default: all cores)"
    )
    run.add_argument(
        "--dask", help="address of a Dask scheduler (pyabc DaskDistributedSampler) instead of local processes"
    )
    run.add_argument(
        "--install",
        metavar="NAME",
        help="also copy fitted.yaml to conf/experiment/NAME.yaml "
        "(then: emdsim experiment=NAME); committed configs change only when asked",
    )
    rep = sub.add_parser("report", help="posterior, predictive check, figures, fit_report.md, fitted.yaml")
    rep.add_argument("dir", type=Path)
    rep.add_argument("--n-procs", type=int, default=len(os.sched_getaffinity(0)))
    rep.add_argument("--install", metavar="NAME", help="also copy fitted.yaml to conf/experiment/NAME.yaml")
    val = sub.add_parser(
        "validate",
        help="score the model against every reported figure (validation.parquet, validation.md, forest plot)",
    )
    val.add_argument("spec", type=Path, help="a validation spec (fits/evidence.yaml)")
    val.add_argument("--out", type=Path, help="output folder (default outputs/validate/<name>-<time>); re-runs resume")
    val.add_argument("--experiment", help="the parameter set of conf/experiment (default: the spec's, fitted)")
    val.add_argument("--tiny", action="store_true", help="24 patients, 1 seed per scenario: check a spec in minutes")
    val.add_argument("--in-process", action="store_true", help="run the cohorts in this process (tests, notebooks)")
    from emdsim.cli.match import add_parser as add_match
    from emdsim.cli.match import cmd_match

    add_match(sub)
    args, args.overrides = parse_with_overrides(parser, argv, command="validate")
    if args.command != "validate":
        args.overrides = []
    from emdsim.cli.validate import cmd_validate

    handlers = {"run": cmd_run, "report": cmd_report, "validate": cmd_validate, "match": cmd_match}
    run_command("emdsim-fit", "invalid input", handlers[args.command], args)


if __name__ == "__main__":
    main()
