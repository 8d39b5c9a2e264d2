"""``emdsim-fit match SPEC``: history matching with Gaussian-process emulators against the evidence.

::

    emdsim-fit match fits/match_quick.yaml --out fits/runs/match-quick     # ~2-3 min on 2 cores
    emdsim-fit match fits/match.yaml --dask local                         # a Dask LocalCluster
    emdsim-fit match fits/match.yaml --dask tcp://scheduler:8786          # a Dask cluster
    emdsim-fit match fits/match.yaml --submitit slurm --slurm-partition cpu  # a Slurm job array per wave

The run directory holds ``match_spec.yaml``, ``provenance.json``, ``wave_<k>/design.parquet``,
``runs.parquet`` and ``key.txt`` (a completed wave of the same design, seeds and cohorts is not
rerun), ``loo.parquet`` and ``match_loo.png`` (emulator validation), ``non_implausible.parquet``
and ``match_space.png`` (the final non-implausible space), ``posterior.parquet`` and
``match_posterior.png`` (200 draws of the emulator posterior inside it), with ``--verify N`` the
posterior-predictive check of N of them simulated (``predictive.parquet``, ``predictive_draws.parquet``,
``match_predictive.png``), the first wave's Sobol indices of every output over the prior box
(``sobol.parquet``, ``match_sobol.png``: which parameters the evidence can identify), and
``fit_summary.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from emdsim.analysis.evidence import STOP_AT_DIAGNOSIS, stops_at_diagnosis
from emdsim.cli.validate import load_validation_spec
from emdsim.config.inputs import read_yaml
from emdsim.config.load import load
from emdsim.config.schema import ConfigError, EmdConfig, describe_parameters
from emdsim.studies.fit.match import (
    ADAPT_ROUNDS,
    MatchSpec,
    emulator_posterior,
    emulator_sobol,
    insensitive_parameters,
    loo_table,
    non_implausible_sample,
    parse_match_spec,
    run_match,
    sobol_total_max,
    verify_posterior,
)
from emdsim.studies.rundir import atomic_write_parquet, atomic_write_text, provenance

__all__ = ["cmd_match", "load_match_spec", "add_parser"]

SUMMARY = "fit_summary.json"
RESULTS = ("loo.parquet", "non_implausible.parquet", "posterior.parquet", "predictive.parquet",
           "predictive_draws.parquet", "sobol.parquet", "match_loo.png", "match_space.png", "match_posterior.png",
           "match_predictive.png", "match_sobol.png")  # fmt: skip
#: draws of the emulator posterior written to posterior.parquet (issue 19: >= 100, with an effective
#: sample size of at least half as many behind them)
POSTERIOR_DRAWS = 1000


def load_match_spec(path: Path) -> tuple[MatchSpec, dict[str, Any]]:
    data = read_yaml(path, "match spec")
    evidence_path = data.get("evidence")
    if not isinstance(evidence_path, str) or not Path(evidence_path).is_file():
        raise ConfigError("match.evidence", evidence_path, "the path of a validation spec (fits/evidence.yaml)")
    evidence = load_validation_spec(Path(evidence_path))
    known = {r["field"]: r for r in describe_parameters(load([f"experiment={evidence.experiment}"]))}
    return parse_match_spec(data, evidence, known), data


def scenario_bases(spec: MatchSpec) -> dict[str, tuple[EmdConfig, ...]]:
    """Each scenario's validated configurations, one per part of a mixed scenario (the spec's
    experiment, the scenario's, the part's and the evidence's overrides, the part's share of the
    matched cohort size, one worker: the design points run in parallel)."""
    ev = spec.evidence
    bases = {}
    for name in spec.scenarios:
        sc = ev.scenarios[name]
        sizes = sc.part_sizes(spec.n_patients(name))
        # a cohort whose outputs are all read at diagnosis stops every course there (the same diagnoses)
        stop = STOP_AT_DIAGNOSIS if stops_at_diagnosis(o.statistic for o in spec.outputs if o.scenario == name) else ()
        bases[name] = tuple(
            load(
                [
                    f"experiment={ev.experiment}",
                    *overrides,
                    *ev.overrides,
                    *spec.overrides,
                    *stop,
                    f"cohort.n_patients={n}",
                    f"cohort.block_size={min(64, n)}",
                    "cohort.n_jobs=1",
                    "sim.snapshot_patients=0",
                    "figures=false",
                ]
            )
            for overrides, n in zip(sc.part_overrides(), sizes, strict=True)
        )
    return bases


def _submitit_mapper(args: argparse.Namespace, folder: Path) -> Callable[..., Iterable[Any]]:
    """``map(fn, jobs)`` through submitit (the library under Hydra's submitit launcher): each map is one
    job array (on Slurm: one call to the scheduler, at most ``--n-procs`` jobs running at a time), its
    pickled jobs, results and logs in ``folder``; results in the order of the jobs. The local
    executor has no such cap, so there the jobs go ``--n-procs`` at a time. A job that fails raises
    submitit's error, with its traceback, when its result is collected."""
    import submitit

    executor = submitit.AutoExecutor(folder=folder, cluster=args.submitit)
    executor.update_parameters(
        name="emdsim-match", timeout_min=args.timeout_min, cpus_per_task=1, slurm_array_parallelism=args.n_procs
    )
    if args.slurm_partition:
        executor.update_parameters(slurm_partition=args.slurm_partition)
    chunk = None if executor.cluster == "slurm" else max(args.n_procs, 1)

    def submitit_map(fn: Callable[..., Any], jobs: list[Any]) -> Iterable[Any]:
        jobs = list(jobs)
        step = chunk or max(len(jobs), 1)
        for start in range(0, len(jobs), step):
            for job in executor.map_array(fn, jobs[start : start + step]):
                yield job.result()

    return submitit_map


def _mapper(
    args: argparse.Namespace, out: Path | None = None
) -> tuple[Callable[..., Iterable[Any]], Callable[[], None]]:
    """``map(fn, jobs)`` over local processes, a Dask cluster or submitit, and how to close it."""
    if getattr(args, "submitit", None):
        return _submitit_mapper(args, (out or Path.cwd()) / "submitit"), lambda: None
    if args.dask:
        from distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=args.n_procs, threads_per_worker=1) if args.dask == "local" else None
        client = Client(cluster if cluster is not None else args.dask)

        def dask_map(fn: Callable[..., Any], jobs: list[Any]) -> Iterable[Any]:
            yield from client.gather(client.map(fn, jobs, pure=False), asynchronous=False)  # in order

        def close() -> None:
            client.close()
            if cluster is not None:
                cluster.close()

        return dask_map, close
    pool = ProcessPoolExecutor(max_workers=args.n_procs)
    return (lambda fn, jobs: pool.map(fn, jobs)), pool.shutdown


def _say(line: str) -> None:
    print(f"emdsim-fit match: {line}", flush=True)


def cmd_match(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    spec, data = load_match_spec(args.spec)
    default = Path("fits") / "runs" / f"{spec.name}-{datetime.now():%Y-%m-%d_%H-%M-%S}"
    out = Path(args.out or default).resolve()
    spec_text = yaml.safe_dump(data, sort_keys=False)
    bases = scenario_bases(spec)
    out.mkdir(parents=True, exist_ok=True)
    for name in (SUMMARY, *RESULTS):  # nothing stale looks finished while the waves run
        (out / name).unlink(missing_ok=True)
    atomic_write_text(out / "match_spec.yaml", spec_text)
    record = {k: v for k, v in provenance(spec.seed, "").items() if k != "engine"} | {"spec": str(args.spec)}
    atomic_write_text(out / "provenance.json", json.dumps(record, indent=1) + "\n")
    sizes = ", ".join(f"{s} {spec.n_patients(s)}" for s in spec.scenarios)
    print(
        f"emdsim-fit match: {len(spec.outputs)} outputs, {len(spec.parameters)} parameters, "
        f"{spec.waves} waves of {spec.design_points} points; cohorts {sizes}",
        flush=True,
    )
    mapper, close = _mapper(args, out)
    try:
        waves = run_match(spec, bases, out, mapper, progress=_say)
        rng = np.random.default_rng(np.random.SeedSequence([spec.seed, 1]))
        sample = non_implausible_sample(spec, waves, 1000, rng)
        draws, ess, n_candidates = emulator_posterior(spec, waves, POSTERIOR_DRAWS, rng)
        if args.verify:
            _say(f"simulating {args.verify} posterior draws (posterior-predictive check)")
        per_draw, predictive = verify_posterior(spec, bases, draws, args.verify, mapper, waves, rng)
    finally:
        close()
    loo = loo_table(spec, waves)
    atomic_write_parquet(out / "loo.parquet", loo)
    sobol = emulator_sobol(spec, waves[0], seed=spec.seed) if waves else None
    if sobol is not None:
        atomic_write_parquet(out / "sobol.parquet", sobol)
    atomic_write_parquet(out / "non_implausible.parquet", sample)
    atomic_write_parquet(out / "posterior.parquet", draws)
    if len(predictive):
        atomic_write_parquet(out / "predictive_draws.parquet", per_draw)
        atomic_write_parquet(out / "predictive.parquet", predictive)
    from emdsim.viz.matchplots import plot_loo, plot_predictive, plot_sobol, plot_space

    fractions = [w.non_implausible_fraction for w in waves]
    if len(loo):
        plot_loo(loo, out / "match_loo.png")
    bounds = {p.path: (p.lo, p.hi, p.log) for p in spec.parameters}
    if len(sample):
        plot_space(sample, bounds, fractions, out / "match_space.png")
    if len(draws):
        plot_space(draws[[p.path for p in spec.parameters]], bounds, fractions, out / "match_posterior.png")
    if len(predictive):
        plot_predictive(predictive, out / "match_predictive.png")
    if sobol is not None and len(sobol):
        plot_sobol(sobol, out / "match_sobol.png")
    last = loo[loo["wave"] == loo["wave"].max()] if len(loo) else loo
    summary = {
        "method": "history matching, GP emulators (scikit-learn)",
        "targets_used": sorted({o.target for o in spec.outputs}),
        "outputs_emulated": [o.name for o in spec.outputs],
        "parameters": [p.path for p in spec.parameters],
        "waves": len(waves),
        "design_points_per_wave": [len(w.runs) for w in waves],
        "n_simulations": int(sum(len(w.runs) for w in waves) * len(spec.scenarios)),
        "non_implausible_fraction": fractions,
        "cutoff": spec.cutoff,
        "discrepancy": spec.discrepancy,
        "loo_share_beyond_3sd": float(np.mean(np.abs(last["standardised_error"]) > 3)) if len(last) else None,
        "non_implausible_draws": int(len(sample)),
        "population_size": n_candidates,
        "ess_final": round(ess, 1),
        "posterior_draws": int(len(draws)),
        "posterior": "emulator-based: adaptive importance sampling (a Latin hypercube, then "
        f"{ADAPT_ROUNDS} rounds of a defensive Student-t fitted to the last) of the last wave's emulators inside "
        "the final non-implausible space (Gaussian likelihood with the implausibility's variances); ess_final "
        "is the last round's Kish effective sample size; the draws are re-simulated only with --verify",
        "verified_draws": int(len(per_draw)),
        "predictive_reported_in_5_95_range": int(predictive["reported_in_range"].sum()) if len(predictive) else None,
        "sobol_total_max": {p: round(v, 3) for p, v in sobol_total_max(sobol).items()} if sobol is not None else {},
        "insensitive_parameters": insensitive_parameters(sobol) if sobol is not None else [],
        "wall_minutes": round((time.monotonic() - t0) / 60.0, 2),
    }
    atomic_write_text(out / SUMMARY, json.dumps(summary, indent=1) + "\n")
    print(
        f"emdsim-fit match: non-implausible fraction per wave {[round(f, 4) for f in fractions]}; "
        f"{len(sample)} draws of the final space -> {out}",
        flush=True,
    )
    return 0


def add_parser(sub: Any) -> None:
    m = sub.add_parser("match", help="history matching with GP emulators against a validation spec's evidence")
    m.add_argument("spec", type=Path, help="a match spec (fits/match_quick.yaml)")
    m.add_argument("--out", type=Path, help="run directory (default fits/runs/<name>-<time>); completed waves resume")
    m.add_argument("--n-procs", type=int, default=len(os.sched_getaffinity(0)), help="local processes (default: all)")
    where = m.add_mutually_exclusive_group()
    where.add_argument("--dask", help="'local' (a Dask LocalCluster of --n-procs workers) or a scheduler address")
    where.add_argument(
        "--submitit",
        choices=("slurm", "local", "debug"),
        help="run each wave as a submitit job array: 'slurm' (a Slurm cluster; --n-procs jobs at a time), "
        "'local' (subprocesses of this machine), 'debug' (in this process; a failing job opens the debugger); "
        "pickles and logs in OUT/submitit",
    )
    m.add_argument("--slurm-partition", help="with --submitit slurm: the partition to submit to")
    m.add_argument(
        "--timeout-min", type=int, default=60, help="with --submitit: each job's time limit, minutes (default 60)"
    )
    m.add_argument(
        "--verify",
        type=int,
        default=0,
        metavar="N",
        help="simulate N posterior draws: the posterior-predictive check (predictive.parquet, match_predictive.png)",
    )
