"""Benchmark of the cohort engines: one JSON line per case, ratios measured in the same run.

    python benchmarks/bench_engine.py            # full (~10 minutes on 2 cores)
    python benchmarks/bench_engine.py --quick    # smaller sizes (~3 minutes)
    python benchmarks/bench_engine.py --reference-only   # the reference cases alone (~2 minutes)

Cases
  reference        1,965 patients x 10 years, default scenario, all cores, through the hybrid
                   (default: the adaptive step, sim.max_step_days=28) and the exact engine: wall
                   and CPU seconds each, and the CPU ratio exact / hybrid (goals: ratio >= 4,
                   moonshot 8; hybrid wall <= 5 s, moonshot 2 s)
  reference_weekly_step  the same cohort through the hybrid engine with weekly steps only
                   (sim.max_step_days=7): CPU seconds and the ratios to both
  small_run        `emdsim cohort.n_patients=40` as a user runs it (a new process: imports,
                   composition, simulation, analysis, figures, writes): CPU seconds, the median
                   of three runs per engine (goal <= 3); beside it the library floor, a new
                   process that only imports what a run imports, composes its configuration and
                   loads numba's CPU target (median of three), and the run's CPU above it
  speedup_vs_mesa  the same patients through the Mesa model and the hybrid engine, one core each
                   (goal >= 50x); also the hybrid engine on all cores
  vs_rng_floor     hybrid engine time / time numpy needs to draw the same number of uniform and
                   normal variates in large vectorised calls (best of 3; goal <= 5), one core
  breakdown        the same block: seconds in the compiled pass (processes 1-5), in the rest of the
                   step (clinical course) and outside the step (records, snapshots)
  scale_patients   500 -> 2,000 -> 8,000 patients at 10 years: seconds per simulated patient-year
  scale_horizon    5 -> 10 -> 20 years of follow-up at 1,000 patients: seconds per patient-year
  memory           peak resident memory of the main process and of the workers (KiB), after a
                   cohort of 100,000 patients (--quick: 20,000) (goal <= 1 GB)

Wall times are noisy on shared machines: read the ratios, which are measured back to back.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time

import numpy as np

from emdsim.cohort.run import n_workers, run_cohort
from emdsim.config.load import load


def _peak_kib() -> dict[str, int]:
    return {
        "main_peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "workers_peak_rss_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    }


def _cpu() -> float:
    """CPU seconds of this process and of its finished children (the cohort's worker processes)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _run(overrides: list[str], engine: str = "hybrid"):
    cfg = load([f"engine={engine}", *overrides])
    t0, c0 = time.perf_counter(), _cpu()
    res = run_cohort(cfg)
    wall, cpu = time.perf_counter() - t0, _cpu() - c0
    years = float(res.patients["simulated_days"].sum()) / 365.25
    _run.cpu = cpu  # type: ignore[attr-defined]
    return cfg, res, wall, years


def _memory_in_a_new_process(n: int) -> dict[str, int]:
    """Peak resident memory of a cohort of ``n`` patients run alone in a new process (this process's
    own peak also holds every earlier case), and of its worker processes (KiB)."""
    import subprocess

    out = subprocess.run(
        [sys.executable, __file__, "--memory-only", str(n)], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def _small_run_cpu(engine: str, n: int = 40) -> float:
    """CPU seconds of ``emdsim cohort.n_patients=n`` run as a new process (figures included)."""
    import subprocess
    import tempfile
    from pathlib import Path

    exe = Path(sys.executable).with_name("emdsim")
    with tempfile.TemporaryDirectory() as tmp:
        c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(
            [str(exe), f"cohort.n_patients={n}", f"engine={engine}", f"hydra.run.dir={tmp}/run"],
            check=True,
            capture_output=True,
        )
        c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (c1.ru_utime + c1.ru_stime) - (c0.ru_utime + c0.ru_stime)


#: what every ``emdsim`` run pays before it simulates anything: the libraries it imports, its
#: configuration composed and validated once, and numba's CPU target loaded (the first kernel call
#: loads it: ~0.45 CPU-s, most of it scipy.linalg, which numba imports to find BLAS)
_LIBRARY_FLOOR = """
import copy
import emdsim.cli.main  # the command's collector and BLAS settings, Hydra, pandas
from omegaconf import open_dict
from emdsim.config.load import compose, to_config
cfg = compose(["cohort.n_patients=40"], hydra_node=True)
task = copy.deepcopy(cfg)
with open_dict(task):
    del task["hydra"]
to_config(task)
import emdsim.studies.task, emdsim.viz.figures  # the engine (numba, networkx), the analysis, matplotlib
from numba.core.registry import cpu_target
cpu_target.target_context.refresh()
cpu_target.typing_context.refresh()
import lifelines, pyarrow.parquet, matplotlib.backends.backend_agg
"""


def _library_floor_cpu() -> float:
    """CPU seconds of a new process that does only what every run does before it simulates
    (:data:`_LIBRARY_FLOOR`): the part of a small run's cost that no change to emdsim's own work
    can remove, and that differs most between machines."""
    import subprocess

    c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-c", _LIBRARY_FLOOR], check=True, capture_output=True)
    c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (c1.ru_utime + c1.ru_stime) - (c0.ru_utime + c0.ru_stime)


def _breakdown(overrides: list[str]) -> dict[str, float]:
    """Seconds in the compiled pass, in the rest of ``engine.step`` and outside the step."""
    import emdsim.cohort.run as cohort_mod
    from emdsim.engine import schedule

    spent = {"advance": 0.0, "step": 0.0}
    advance, step = schedule._advance, cohort_mod.step

    def timed(fn, key):
        def wrapper(*a, **kw):
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                spent[key] += time.perf_counter() - t0

        return wrapper

    # the block loop calls cohort.run.step (engine.schedule.step imported by name), which calls
    # engine.schedule._advance
    schedule._advance, cohort_mod.step = timed(advance, "advance"), timed(step, "step")
    try:
        _, _, wall, _ = _run(overrides)
    finally:
        schedule._advance, cohort_mod.step = advance, step
    return {
        "wall_s": round(wall, 2),
        "compiled_pass_s": round(spent["advance"], 2),
        "rest_of_step_s": round(spent["step"] - spent["advance"], 2),
        "outside_step_s": round(wall - spent["step"], 2),
    }


def _emit(case: str, **fields) -> None:
    print(json.dumps({"case": case, **fields}), flush=True)


def rng_floor_seconds(n_uniform: int, n_normal: int, chunk: int = 10_000_000, repeats: int = 3) -> float:
    """Seconds numpy needs to draw this many uniforms and normals in large vectorised calls: the best
    of ``repeats`` (the floor is the machine's cost; a single timing of ~0.5 s varied 0.37-0.60 s
    between runs on the shared 2-core machine)."""
    rng = np.random.default_rng(0)
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        for total, draw in ((n_uniform, rng.random), (n_normal, rng.standard_normal)):
            left = total
            while left > 0:
                draw(min(chunk, left))
                left -= chunk
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller cohorts")
    ap.add_argument("--mesa-patients", type=int, default=None)
    ap.add_argument(
        "--reference-only",
        action="store_true",
        help="only the reference cohort through both engines and the weekly hybrid (~2 minutes)",
    )
    ap.add_argument("--memory-only", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.memory_only:  # the memory case, in its own process
        _run([f"cohort.n_patients={args.memory_only}", "sim.followup_years=10"])
        print(json.dumps(_peak_kib()))
        return
    q = args.quick
    cores = n_workers(0)
    _emit("machine", python=platform.python_version(), cores=cores, processor=platform.machine())
    for engine in ("hybrid", "exact"):  # compile (or load) the kernels once
        _run(["cohort.n_patients=4", "cohort.n_jobs=1"], engine)

    # reference case, both engines back to back
    ref = {}
    for engine in ("hybrid", "exact"):
        _, _, wall, years = _run(["cohort.n_patients=1965", "sim.followup_years=10"], engine)
        ref[engine] = (wall, _run.cpu)  # type: ignore[attr-defined]
    _emit(
        "reference",
        patients=1965,
        followup_years=10,
        cores=cores,
        hybrid_wall_s=round(ref["hybrid"][0], 2),
        hybrid_cpu_s=round(ref["hybrid"][1], 2),
        exact_wall_s=round(ref["exact"][0], 2),
        exact_cpu_s=round(ref["exact"][1], 2),
        cpu_ratio_exact_over_hybrid=round(ref["exact"][1] / ref["hybrid"][1], 2),
        patient_years=round(years),
        goal_cpu_ratio=4,
        goal_hybrid_wall_s=5,
        meets_goal=ref["exact"][1] / ref["hybrid"][1] >= 4 and ref["hybrid"][0] <= 5,
    )

    # the hybrid engine without the adaptive step (every step weekly), same cohort
    _, _, wall, _ = _run(["cohort.n_patients=1965", "sim.followup_years=10", "sim.max_step_days=7"])
    weekly_cpu = _run.cpu  # type: ignore[attr-defined]
    _emit(
        "reference_weekly_step",
        patients=1965,
        max_step_days=7,
        wall_s=round(wall, 2),
        cpu_s=round(weekly_cpu, 2),
        cpu_ratio_exact_over_weekly=round(ref["exact"][1] / weekly_cpu, 2),
        cpu_ratio_weekly_over_adaptive=round(weekly_cpu / ref["hybrid"][1], 2),
        note="sim.max_step_days=7: the hybrid engine before the adaptive step became the default",
    )
    if args.reference_only:
        return

    # a small run as a user starts it: a new process, figures included; three runs of each engine,
    # alternating, and their medians (one run varies by ~0.2 CPU-s on this shared machine)
    runs: dict[str, list[float]] = {"hybrid": [], "exact": [], "floor": []}
    for _ in range(3):
        for engine in ("hybrid", "exact"):
            runs[engine].append(_small_run_cpu(engine))
        runs["floor"].append(_library_floor_cpu())
    small = {engine: float(np.median(cpu)) for engine, cpu in runs.items()}
    _emit(
        "small_run",
        patients=40,
        hybrid_process_cpu_s=round(small["hybrid"], 2),
        exact_process_cpu_s=round(small["exact"], 2),
        hybrid_runs_cpu_s=[round(c, 2) for c in runs["hybrid"]],
        exact_runs_cpu_s=[round(c, 2) for c in runs["exact"]],
        library_floor_cpu_s=round(small["floor"], 2),
        library_floor_runs_cpu_s=[round(c, 2) for c in runs["floor"]],
        hybrid_above_floor_cpu_s=round(small["hybrid"] - small["floor"], 2),
        goal_cpu_s=3,
        meets_goal=small["hybrid"] <= 3,
    )

    # Mesa vs vectorized on the same patients, one core each
    n_m = args.mesa_patients or (24 if q else 64)
    common = [f"cohort.n_patients={n_m}", "sim.followup_years=10"]
    _, _, wall_mesa, _ = _run(common, "mesa")
    _, res_v, wall_vec1, _ = _run(common + ["cohort.n_jobs=1", f"cohort.block_size={n_m}"])  # hybrid
    _, _, wall_vec_all, _ = _run(common + [f"cohort.block_size={max(1, n_m // cores)}"])
    _emit(
        "speedup_vs_mesa",
        patients=n_m,
        mesa_wall_s=round(wall_mesa, 2),
        hybrid_wall_s=round(wall_vec1, 2),
        speedup_vs_mesa=round(wall_mesa / wall_vec1, 1),
        hybrid_all_cores_wall_s=round(wall_vec_all, 2),
        speedup_vs_mesa_all_cores=round(wall_mesa / wall_vec_all, 1),
        goal=50,
    )

    # RNG floor, one core
    n_f = 250 if q else 500
    _, res_f, wall_f, _ = _run([f"cohort.n_patients={n_f}", "cohort.n_jobs=1", "cohort.block_size=256"])
    floor = rng_floor_seconds(*res_f.draws)
    _emit(
        "vs_rng_floor",
        patients=n_f,
        engine_wall_s=round(wall_f, 2),
        uniform_variates=res_f.draws[0],
        normal_variates=res_f.draws[1],
        rng_floor_s=round(floor, 3),
        vs_rng_floor=round(wall_f / floor, 1),
        goal=5,
    )

    # where one block's time goes: the compiled pass (processes 1-5) vs the rest of the step
    # (clinical course, events) vs the block's bookkeeping (records, snapshots)
    _emit(
        "breakdown",
        patients=n_f,
        **_breakdown([f"cohort.n_patients={n_f}", "cohort.n_jobs=1", "cohort.block_size=256"]),
    )

    # scaling in patients and horizon
    sizes = (250, 1000, 4000) if q else (500, 2000, 8000)
    per_py = []
    for n in sizes:
        _, _, wall, years = _run([f"cohort.n_patients={n}", "sim.followup_years=10"])
        per_py.append(wall / years)
        _emit(
            "scale_patients",
            patients=n,
            followup_years=10,
            wall_s=round(wall, 2),
            patient_years=round(years),
            us_per_patient_year=round(1e6 * wall / years, 1),
        )
    _emit("scale_patients_summary", max_over_min=round(max(per_py) / min(per_py), 2), goal=1.5)
    per_py = []
    n_h = 500 if q else 1000
    for horizon in (5, 10, 20):
        _, _, wall, years = _run([f"cohort.n_patients={n_h}", f"sim.followup_years={horizon}"])
        per_py.append(wall / years)
        _emit(
            "scale_horizon",
            patients=n_h,
            followup_years=horizon,
            wall_s=round(wall, 2),
            patient_years=round(years),
            us_per_patient_year=round(1e6 * wall / years, 1),
        )
    _emit("scale_horizon_summary", max_over_min=round(max(per_py) / min(per_py), 2), goal=1.5)
    n_mem = 20_000 if q else 100_000
    peak = _memory_in_a_new_process(n_mem)
    _emit("memory", patients=n_mem, **peak, goal_kib=1_000_000, meets_goal=max(peak.values()) <= 1_000_000)


if __name__ == "__main__":
    sys.exit(main())
