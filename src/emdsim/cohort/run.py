"""Cohorts of virtual patients, run by either engine.

* ``hybrid``: patients are simulated in blocks of ``cohort.block_size`` by the array engine with
  deterministic large populations (:mod:`emdsim.engine.hybrid`); patient ``i`` draws its dynamics
  from its own stream ``(STREAM, i)``, so its result depends only on the seed and its id, and no
  block is padded.
* ``exact``: the same blocks through the exact pass (the reference); block ``b`` draws its dynamics
  from stream ``(BLOCK, b)``, and the last block is padded to full size so that a patient's result
  never depends on the cohort size.
* ``mesa``: one :class:`emdsim.cohort.agents.EMDModel` per patient, drawing from stream
  ``(DYNAMICS, i)``; the agent view used for single patients, snapshots and the dashboard.

Both run the same :func:`emdsim.engine.step`; they agree in distribution, not draw for draw.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed

import numpy as np
import pandas as pd

from emdsim import rng as seeds
from emdsim.biology.patients import sample_patients
from emdsim.cohort.outcomes import CohortResult, lesion_records, patient_records  # CohortResult re-exported
from emdsim.cohort.snapshots import SnapshotRecorder, empty_table
from emdsim.config.schema import ConfigError, EmdConfig
from emdsim.engine.schedule import step
from emdsim.engine.state import init_state
from emdsim.engine.status import Status
from emdsim.engine.streams import patient_streams
from emdsim.engine.tables import Tables, build_tables

__all__ = ["CohortResult", "load_kernels", "run_cohort", "simulate_block"]

Progress = Callable[[int], None]


def recorded_ids(cfg: EmdConfig, ids: np.ndarray) -> np.ndarray:
    """The patients among ``ids`` whose snapshots are kept (ids below ``sim.snapshot_patients``)."""
    if cfg.sim.snapshot_every <= 0:
        return ids[:0]
    return ids[(ids < min(cfg.sim.snapshot_patients, cfg.cohort.n_patients))]


def simulate_block(
    cfg: EmdConfig,
    tb: Tables,
    ids: np.ndarray,
    rng: np.random.Generator,
    *,
    on_finished: Progress | None = None,
    n_real: int | None = None,
) -> CohortResult:
    """Simulate patients ``ids`` together until each has died or been censored.

    ``on_finished(k)`` is told, after each step, how many more patients with an id below ``n_real``
    (the cohort's own, not the block's padding) have finished: progress within a block."""
    streams = patient_streams(cfg.seed, ids) if tb.hybrid else None
    st = init_state(tb, sample_patients(cfg, tb.world, ids), streams)
    id_limit = np.inf if n_real is None else n_real
    counted = 0  # the cohort's own finished patients reported so far
    recorder = SnapshotRecorder(tb, recorded_ids(cfg, ids), cfg.sim.snapshot_every)
    recorder.record(st)
    limit = tb.max_steps
    # finished patients stay in the block, frozen (the passes skip them), until the last has finished:
    # their records are then built once. Retiring them in batches of an eighth of the rows (until
    # 2026-12-03) copied the block ~30 times and built as many record tables: ~7 % of a hybrid run's CPU
    # for no change in any result (each pass visits the living patients in the same order either way).
    finished = ~st.alive
    while not finished.all() and st.n_steps < limit:
        step(st, tb, rng)
        recorder.record(st)
        finished = ~st.alive
        if on_finished is not None:
            real_finished = int((finished & (st.patients.patient_id < id_limit)).sum())
            if real_finished > counted:
                on_finished(real_finished - counted)
                counted = real_finished
    if not finished.all():  # cannot happen with a consistent max_steps, kept as a guard
        st.status[~finished] = Status.CENSORED
        st.t_end[~finished] = st.t_days
    return CohortResult(
        patient_records(st, tb),
        lesion_records(st, tb),
        (int(st.tally[0]), int(st.tally[1])),
        recorder.table(),
    )


def _run_block(cfg: EmdConfig, b: int, on_finished: Progress | None = None) -> CohortResult:
    """Block ``b`` of the cohort: in the exact engine padded to the block size (its patients share
    one stream) and trimmed to the cohort; in the hybrid engine only the cohort's own patients (each
    has its own stream)."""
    end = (b + 1) * cfg.cohort.block_size
    if cfg.engine == "hybrid":
        end = min(end, cfg.cohort.n_patients)
    ids = np.arange(b * cfg.cohort.block_size, end)
    res = simulate_block(
        cfg,
        build_tables(cfg),
        ids,
        seeds.stream(cfg.seed, seeds.BLOCK, b),
        on_finished=on_finished,
        n_real=cfg.cohort.n_patients,
    )
    n = cfg.cohort.n_patients
    return CohortResult(
        res.patients[res.patients["patient_id"] < n],
        res.lesions[res.lesions["patient_id"] < n],
        res.draws,
        res.snapshots,
    )


def n_workers(requested: int) -> int:
    """Worker processes for ``cohort.n_jobs`` (0 = one per available core)."""
    if requested > 0:
        return requested
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


#: measured 2026-11-29 (default scenario, 512 patients): the patient and lesion tables hold ~3 KB per
#: patient in memory, ~10 KB at the peak of analysis and writing; a patient costs ~8.6 ms of CPU over
#: ~8 years to diagnosis + 10 of follow-up on this 2-core machine (0.5 ms per simulated year)
BYTES_PER_PATIENT = 10_000
#: a block's state arrays, per patient of the block (~200 KB)
BLOCK_BYTES_PER_PATIENT = 200_000
CPU_SECONDS_PER_PATIENT_YEAR = 0.5e-3


def resource_estimate(cfg: EmdConfig) -> tuple[float, float]:
    """Rough peak memory (bytes) and CPU time (seconds) of running ``cfg``'s cohort."""
    n = cfg.cohort.n_patients
    years = cfg.sim.followup_years + cfg.sim.max_years_to_diagnosis
    block = cfg.cohort.block_size * BLOCK_BYTES_PER_PATIENT
    return n * BYTES_PER_PATIENT + block, n * years * CPU_SECONDS_PER_PATIENT_YEAR


def physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return None


def check_resources(cfg: EmdConfig) -> None:
    """Refuse (:class:`ConfigError`) a cohort whose tables would not fit in this machine's memory."""
    need, cpu = resource_estimate(cfg)
    have = physical_memory()
    if have is not None and need > 0.8 * have:
        fit = int((0.8 * have - cfg.cohort.block_size * BLOCK_BYTES_PER_PATIENT) // BYTES_PER_PATIENT)
        raise ConfigError(
            "cohort.n_patients",
            cfg.cohort.n_patients,
            f"needs ~{need / 1e9:.0f} GB of memory and ~{cpu / 3600:.1f} CPU-hours, and this machine "
            f"has {have / 1e9:.0f} GB: at most ~{max(fit, 1):,} patients here, or split the cohort "
            "over seeds in a sweep (emdsim -m seed=1,2,...)",
        )


def load_kernels(cfg: EmdConfig) -> None:
    """Load ``cfg.engine``'s compiled kernels into this process (from numba's cache, or compiling them
    on a machine's first run) by simulating one patient of ``cfg``, whose result is discarded: worker
    processes forked afterwards inherit them instead of each loading them again (~0.4 CPU-s a worker,
    measured 2026-12-02; on a first run, instead of each compiling them at once: minutes and several GB
    a worker). Every patient draws from streams of its own block and seed, so nothing here changes a
    result."""
    one = dataclasses.replace(cfg, cohort=dataclasses.replace(cfg.cohort, n_patients=1, block_size=1))
    _run_block(one, 0)


def run_cohort(cfg: EmdConfig, *, progress: Progress | None = None) -> CohortResult:
    """Run ``cfg.cohort.n_patients`` patients with ``cfg.engine``; rows sorted by patient id.

    Blocks run in ``cohort.n_jobs`` worker processes; a block's stream depends only on the seed and
    its index, so the result does not depend on the number of workers.
    """
    n = cfg.cohort.n_patients
    parts: list[CohortResult] = []
    if cfg.engine in ("hybrid", "exact"):
        n_blocks = -(-n // cfg.cohort.block_size)
        workers = min(n_workers(cfg.cohort.n_jobs), n_blocks)
        if workers <= 1:  # progress as patients finish, within each block
            for b in range(n_blocks):
                parts.append(_run_block(cfg, b, on_finished=progress))
        else:
            # fork: workers inherit the compiled kernels and do not re-run the caller's script
            # (no threads are running in emdsim at this point); spawn elsewhere
            method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
            if method == "fork":
                load_kernels(cfg)
            ctx = multiprocessing.get_context(method)
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                futures = [pool.submit(_run_block, cfg, b) for b in range(n_blocks)]
                for fut in as_completed(futures):
                    parts.append(fut.result())
                    if progress:
                        progress(len(parts[-1].patients))
    else:
        from emdsim.cohort.agents import EMDModel  # Mesa only when asked for

        tb = build_tables(cfg)
        for i in range(n):
            model = EMDModel(cfg, patient_id=i, tables=tb)
            model.run()
            res = model.result()
            keep = len(recorded_ids(cfg, np.array([i])))
            parts.append(res if keep else CohortResult(res.patients, res.lesions, res.draws))
            if progress:
                progress(1)
    patients = pd.concat([p.patients for p in parts], ignore_index=True).sort_values("patient_id", kind="stable")
    lesions = pd.concat([p.lesions for p in parts], ignore_index=True)
    lesions = lesions.sort_values(["patient_id", "site"], kind="stable")
    draws = (sum(p.draws[0] for p in parts), sum(p.draws[1] for p in parts))
    snaps = [p.snapshots for p in parts if p.snapshots is not None and len(p.snapshots)]
    snapshots = (
        pd.concat(snaps, ignore_index=True)
        .sort_values(["patient_id", "step", "node"], kind="stable")
        .reset_index(drop=True)
        if snaps
        else empty_table()
    )
    return CohortResult(patients.reset_index(drop=True), lesions.reset_index(drop=True), draws, snapshots)
