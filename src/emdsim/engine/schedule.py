"""The step: state arrays over patients x nodes x clones, advanced by the rule functions.

This module is the single place where the processes run, in this documented order (ODD
"process overview and scheduling"):

0. events — wounds opened by procedures, their inflammation decaying;
1. growth and death in every compartment, with phenotype switches at division;
2. release: egress from the marrow (retention vs crowding) and shedding from soft tissue;
3. local extension through disrupted cortical bone into paraskeletal tissue;
4. haematogenous spread: death in the blood, arrest, homing, engraftment or colonisation;
5. treatment kill;
6. clinical course: imaging-based diagnosis, phases of the plan, progression (PFS), death (OS).

Every engine calls :func:`step` on a :class:`CohortState`: the array engines (hybrid, exact) with blocks of
patients, the Mesa model with one patient whose agents mirror the state.  The biology lives in
:mod:`niches`, :mod:`spread` and :mod:`treatment`; this module only orders and books it.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from emdsim.engine import hybrid, kernels
from emdsim.engine.flows import tally_record
from emdsim.engine.state import CohortState
from emdsim.engine.tables import Tables

__all__ = ["step"]


def _events(st: CohortState, tb: Tables) -> None:
    """Open wounds whose procedure falls in this step; decay inflammation."""
    dt = tb.dt_days
    wn = tb.wound_nodes
    if wn.size:
        st.inflammation[:, wn] *= tb.wound_decay_per_step
    if tb.surgery_node.size:
        due_day = st.t_dx[:, None] + st.patients.surgery_day  # NaN if none / undiagnosed
        due = (due_day > st.t_days - dt) & (due_day <= st.t_days) & st.alive[:, None]
        for s in np.flatnonzero(due.any(axis=0)):
            _open_wound(st, np.flatnonzero(due[:, s]), int(tb.surgery_node[s]))


def _open_wound(st: CohortState, rows: NDArray[np.int64], node: int) -> None:
    st.inflammation[rows, node] = 1.0
    st.wound_opened[rows, node] = np.where(
        np.isnan(st.wound_opened[rows, node]), st.t_days, st.wound_opened[rows, node]
    )


def _advance(st: CohortState, tb: Tables, rng: np.random.Generator | None) -> NDArray[np.float64]:
    """Processes 1-5 and the lesions' bookkeeping (:func:`emdsim.engine.kernels.advance`, or
    :func:`emdsim.engine.hybrid.advance` on the patients' own streams); returns the cells in each
    compartment after the step (P, N)."""
    state, patients = st.kernel_args()
    if tb.hybrid:
        engine, source = hybrid, st.stream_records()
        work = st.work_arrays(lambda: hybrid.scratch_for(state, tb.step_args, tb.advance_constants))
    else:
        engine, source = kernels, rng
        work = st.work_arrays(lambda: kernels.scratch_for(state, tb.step_args))
    engine.advance(source, tally_record(st.tally), st.t_days, state, patients, tb.step_args, tb.advance_constants, work)
    return st.node_total


def _clinic(st: CohortState, tb: Tables, rng: np.random.Generator | None, node_total: NDArray[np.float64]) -> None:
    """Process 6, the clinical course (:func:`emdsim.engine.kernels.clinic`): imaging, diagnosis, phases of
    the plan, progression, death and censoring of every patient."""
    # the totals are summed here by numpy (pairwise), as the clinical course has always summed them
    node_total.sum(axis=1, out=st.total_cells)
    node_total[:, tb.marrow_nodes].sum(axis=1, out=st.marrow_cells)
    state, patients = st.kernel_args()
    source = st.stream_records() if tb.hybrid else rng
    kernels.clinic(source, tally_record(st.tally), st.t_days, state, patients, tb.step_args, tb.clinic_constants)


def step(st: CohortState, tb: Tables, rng: np.random.Generator | None) -> None:
    """Advance every living patient of ``st`` by one step of ``dt_days`` (``rng``: the block's
    generator in the exact engine; the hybrid engine draws from ``st.streams`` and ignores it)."""
    st.t_days += tb.dt_days
    st.n_steps += 1
    _events(st, tb)  # 0
    node_total = _advance(st, tb, rng)  # 1-5, lesion onsets and routes
    _clinic(st, tb, rng, node_total)  # 6
