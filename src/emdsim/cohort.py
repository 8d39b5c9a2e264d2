"""Cohorts of virtual patients, run by either engine.

* ``vectorized`` (default): patients are simulated in blocks of ``cohort.block_size`` by the
  array engine; block ``b`` draws its dynamics from stream ``(BLOCK, b)``, and the last block is
  padded to full size so that a patient's result never depends on the cohort size.
* ``mesa``: one :class:`emdsim.model.EMDModel` per patient, drawing from stream
  ``(DYNAMICS, i)``; the agent view used for single patients, snapshots and the dashboard.

Both run the same :func:`emdsim.engine.step`; they agree in distribution, not draw for draw.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from . import rng as seeds
from .config.schema import EmdConfig
from .engine import CohortState, Status, Tables, build_tables, init_state, max_steps, step
from .outcomes import lesion_records, patient_records
from .patients import sample_patients

__all__ = ["CohortResult", "run_cohort", "simulate_block"]

Progress = Callable[[int], None]


@dataclass(frozen=True)
class CohortResult:
    patients: pd.DataFrame
    lesions: pd.DataFrame


def simulate_block(tb: Tables, ids: np.ndarray, rng: np.random.Generator) -> CohortResult:
    """Simulate patients ``ids`` together until each has died or been censored."""
    st = init_state(tb, sample_patients(tb.cfg, tb.world, ids))
    done_p: list[pd.DataFrame] = []
    done_l: list[pd.DataFrame] = []
    limit = max_steps(tb.cfg)
    while len(st) and st.n_steps < limit:
        step(st, tb, rng)
        finished = st.status >= Status.DEAD
        if finished.any():
            fin = st.take(np.flatnonzero(finished))
            done_p.append(patient_records(fin, tb))
            done_l.append(lesion_records(fin, tb))
            st = st.take(np.flatnonzero(~finished))
    if len(st):  # cannot happen with a consistent max_steps, kept as a guard
        st.status[:] = Status.CENSORED
        st.t_end[:] = st.t_days
        done_p.append(patient_records(st, tb))
        done_l.append(lesion_records(st, tb))
    return CohortResult(pd.concat(done_p, ignore_index=True), pd.concat(done_l, ignore_index=True))


def _blocks(n: int, size: int) -> list[np.ndarray]:
    return [np.arange(b * size, (b + 1) * size) for b in range(-(-n // size))]


def run_cohort(cfg: EmdConfig, *, progress: Progress | None = None) -> CohortResult:
    """Run ``cfg.cohort.n_patients`` patients with ``cfg.engine``; rows sorted by patient id."""
    tb = build_tables(cfg)
    n = cfg.cohort.n_patients
    parts: list[CohortResult] = []
    if cfg.engine == "vectorized":
        for b, ids in enumerate(_blocks(n, cfg.cohort.block_size)):
            res = simulate_block(tb, ids, seeds.stream(cfg.seed, seeds.BLOCK, b))
            keep_p = res.patients["patient_id"] < n
            keep_l = res.lesions["patient_id"] < n
            parts.append(CohortResult(res.patients[keep_p], res.lesions[keep_l]))
            if progress:
                progress(int(keep_p.sum()))
    else:
        from .model import EMDModel  # Mesa only when asked for

        for i in range(n):
            model = EMDModel(tb, patient_id=i)
            model.run()
            parts.append(model.result())
            if progress:
                progress(1)
    patients = pd.concat([p.patients for p in parts], ignore_index=True).sort_values("patient_id", kind="stable")
    lesions = pd.concat([p.lesions for p in parts], ignore_index=True)
    lesions = lesions.sort_values(["patient_id", "site"], kind="stable")
    return CohortResult(patients.reset_index(drop=True), lesions.reset_index(drop=True))
