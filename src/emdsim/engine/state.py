"""The dynamic state of a block of patients (:class:`CohortState`) and its views for the compiled loops."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

from emdsim.biology.niches import adhesion
from emdsim.biology.patients import PatientTable
from emdsim.biology.spread import homing_weights
from emdsim.biology.traits import clone_trait_table
from emdsim.engine import kernels
from emdsim.engine.status import Status
from emdsim.engine.streams import stream_records
from emdsim.engine.tables import Tables

T = TypeVar("T")

__all__ = ["CohortState", "course_state", "init_state", "patient_tables"]


@dataclass
class CohortState:
    """Dynamic state of a block of patients (rows), all on the same clock since myeloma onset."""

    patients: PatientTable
    traits: NDArray[np.float64]  # (P, K, T)
    #: static per patient (P, N, K), from :func:`emdsim.engine.kernels.static_rates`: per-step death and
    #: survival probabilities on each compartment's own soil, and the uncrowded egress hazard (from
    #: the clones' retention score, :func:`emdsim.biology.niches.adhesion`)
    p_death: NDArray[np.float64]
    survival: NDArray[np.float64]
    retained: NDArray[np.float64]
    homing: NDArray[np.float64]  # (P, K, N) destination weights before inflammation
    #: where arrested cells settle while no wound is inflamed (P, K, D), (P, K), (P, K)
    #: (:func:`emdsim.engine.kernels.static_rates`)
    settle: NDArray[np.float64]
    settle_marrow: NDArray[np.float64]
    settle_tissue: NDArray[np.float64]
    cells: NDArray[np.float64]  # (P, N, K)
    t_days: float = 0.0
    n_steps: int = 0
    status: NDArray[np.int64] = field(default=None)  # type: ignore[assignment]
    t_dx: NDArray[np.float64] = field(default=None)  # type: ignore[assignment]
    t_prog: NDArray[np.float64] = field(default=None)  # type: ignore[assignment]
    t_death: NDArray[np.float64] = field(default=None)  # type: ignore[assignment]
    t_end: NDArray[np.float64] = field(default=None)  # type: ignore[assignment]
    regimen: NDArray[np.int64] = field(default=None)  # type: ignore[assignment]
    phase_pos: NDArray[np.int64] = field(default=None)  # type: ignore[assignment]
    phase_end: NDArray[np.float64] = field(default=None)  # type: ignore[assignment]
    line: NDArray[np.int64] = field(default=None)  # type: ignore[assignment]
    line_start: NDArray[np.float64] = field(default=None)  # type: ignore[assignment]
    efficacy: NDArray[np.float64] = field(default=None)  # type: ignore[assignment]
    nadir: NDArray[np.float64] = field(default=None)  # type: ignore[assignment]
    lesion_nadir: NDArray[np.float64] = field(default=None)  # type: ignore[assignment]
    disrupted: NDArray[np.bool_] = field(default=None)  # type: ignore[assignment]
    inflammation: NDArray[np.float64] = field(default=None)  # type: ignore[assignment]
    wound_opened: NDArray[np.float64] = field(default=None)  # type: ignore[assignment]
    lesion_onset: NDArray[np.float64] = field(default=None)  # type: ignore[assignment]
    lesion_route: NDArray[np.int8] = field(default=None)  # type: ignore[assignment]
    lesion_detectable: NDArray[np.float64] = field(default=None)  # type: ignore[assignment]
    dx_sites: NDArray[np.bool_] = field(default=None)  # type: ignore[assignment]
    relapse_sites: NDArray[np.bool_] = field(default=None)  # type: ignore[assignment]
    burden_at_dx: NDArray[np.float64] = field(default=None)  # type: ignore[assignment]
    #: flows of the last step, (P, N, K): cells that arrived by each route
    last_local: NDArray[np.float64] = field(default=None)  # type: ignore[assignment]
    last_haem: NDArray[np.float64] = field(default=None)  # type: ignore[assignment]
    #: cells per compartment (P, N), kept by the compiled pass (occupancy at the next step's start)
    node_total: NDArray[np.float64] = field(default=None)  # type: ignore[assignment]
    #: all cells and marrow cells (P,), summed from ``node_total`` for the clinical course
    total_cells: NDArray[np.float64] = field(default=None)  # type: ignore[assignment]
    marrow_cells: NDArray[np.float64] = field(default=None)  # type: ignore[assignment]
    #: per-step kill probabilities (P, N, K) of the regimen and efficacy they were computed for (the
    #: compiled pass recomputes a patient's when either changes)
    kill_prob: NDArray[np.float64] = field(default=None)  # type: ignore[assignment]
    kill_regimen: NDArray[np.int64] = field(default=None)  # type: ignore[assignment]
    kill_efficacy: NDArray[np.float64] = field(default=None)  # type: ignore[assignment]
    #: the first salvage line: baseline cells (all, soft tissue), EMD at its start, best response
    #: (fewest cells during the line) and the day it ended (:class:`emdsim.engine.kernels.CourseState`)
    salvage_start_total: NDArray[np.float64] = field(default=None)  # type: ignore[assignment]
    salvage_start_soft: NDArray[np.float64] = field(default=None)  # type: ignore[assignment]
    salvage_with_emd: NDArray[np.bool_] = field(default=None)  # type: ignore[assignment]
    salvage_best_total: NDArray[np.float64] = field(default=None)  # type: ignore[assignment]
    salvage_best_soft: NDArray[np.float64] = field(default=None)  # type: ignore[assignment]
    salvage_end: NDArray[np.float64] = field(default=None)  # type: ignore[assignment]
    #: the first start of a later line with a soft-tissue lesion seen (:class:`emdsim.engine.kernels.CourseState`)
    emd_line_start: NDArray[np.float64] = field(default=None)  # type: ignore[assignment]
    treated_locally: NDArray[np.bool_] = field(default=None)  # type: ignore[assignment]
    #: the adaptive step (:class:`emdsim.engine.kernels.CourseState`): each patient's current step (days),
    #: when it ends, and each compartment's predicted cells after a long step, at most and at least
    step_days: NDArray[np.float64] = field(default=None)  # type: ignore[assignment]
    next_days: NDArray[np.float64] = field(default=None)  # type: ignore[assignment]
    node_upper: NDArray[np.float64] = field(default=None)  # type: ignore[assignment]
    node_lower: NDArray[np.float64] = field(default=None)  # type: ignore[assignment]
    total_start: NDArray[np.float64] = field(default=None)  # type: ignore[assignment]
    node_start: NDArray[np.float64] = field(default=None)  # type: ignore[assignment]
    inflammation_start: NDArray[np.float64] = field(default=None)  # type: ignore[assignment]

    #: the hybrid engine's per-patient random streams (P, 4) (:mod:`emdsim.engine.streams`); (P, 0)
    #: in the exact engine, which draws a block from one generator
    streams: NDArray[np.uint64] = field(default=None)  # type: ignore[assignment]

    #: random variates drawn so far: [uniform, normal] (for the benchmark's RNG floor)
    tally: NDArray[np.int64] = field(default_factory=lambda: np.zeros(2, np.int64))

    def __len__(self) -> int:
        return len(self.patients)

    def __setattr__(self, name: str, value: object) -> None:
        # the compiled loops' views (:meth:`kernel_args`) hold the arrays: replacing one drops them
        if name in _KERNEL_FIELDS:
            self.__dict__.pop("_kernel_args", None)
        if name == "streams":
            self.__dict__.pop("_stream_records", None)
        object.__setattr__(self, name, value)

    def _kept(self, key: str, make: Callable[[], T]) -> T:
        """``make()``, built once per state object and kept under ``key`` (:meth:`__setattr__` drops
        the views a replaced array invalidates)."""
        value = self.__dict__.get(key)
        if value is None:
            value = self.__dict__[key] = make()
        return value

    def kernel_args(self) -> tuple[tuple, tuple]:
        """The state and the per-patient tables as the compiled loops take them
        (:func:`course_state`, :func:`patient_tables`), built once per state object."""
        return self._kept("_kernel_args", lambda: (course_state(self), patient_tables(self)))

    def stream_records(self) -> NDArray[np.void]:
        """The hybrid engine's streams as the compiled passes take them (:func:`emdsim.engine.streams.stream_records`,
        a view: the passes advance them in place), built once per state object."""
        return self._kept("_stream_records", lambda: stream_records(self.streams))

    def work_arrays(self, make: Callable[[], T]) -> T:
        """The compiled pass's work arrays for this block (``make()`` builds them, once per state
        object): kept from step to step so that a step does not allocate them."""
        return self._kept("_work_arrays", make)

    @property
    def alive(self) -> NDArray[np.bool_]:
        """Patients whose course goes on (undiagnosed or followed); the others are frozen."""
        return self.status <= _FOLLOWED

    def began_step(self, rows: NDArray[np.int64]) -> NDArray[np.bool_]:
        """Of the patients ``rows``, those whose next step began at ``t_days`` (the clinical course set
        it: :func:`emdsim.engine.kernels.clinic`): advanced at this step. One within a long step of the
        adaptive step began it earlier and has not been advanced since."""
        # |began - t| <= half a day, as np.isclose(rtol=0, atol=0.5) (~20 us a call: once a step per recorder)
        return np.abs(self.next_days[rows] - self.step_days[rows] - self.t_days) <= 0.5  # days


#: ``Status.FOLLOWED`` as a plain int: numpy compares an array with an IntEnum member ~4x slower
#: (8 us against 2 us for a block, 2026-12-03), and :attr:`CohortState.alive` is asked several times a step
_FOLLOWED = int(Status.FOLLOWED)

#: the fields of a CohortState that the compiled loops' views hold
_KERNEL_FIELDS = frozenset(kernels.CourseState._fields) | {
    "traits",
    "p_death",
    "survival",
    "retained",
    "homing",
    "settle",
    "settle_marrow",
    "settle_tissue",
    "patients",
}


def init_state(tb: Tables, patients: PatientTable, streams: NDArray[np.uint64] | None = None) -> CohortState:
    """The state at myeloma onset of ``patients``; ``streams`` their random streams, required by the
    hybrid engine (:func:`emdsim.engine.streams.patient_streams`)."""
    if tb.hybrid and (streams is None or streams.shape != (len(patients), 4)):
        raise ValueError("the hybrid engine needs one random stream per patient: patient_streams(seed, ids)")
    w = tb.world
    p, n, k = len(patients), w.n_nodes, tb.n_clones
    traits = clone_trait_table(patients.base_traits, list(tb.switches))
    cells = np.zeros((p, n, k))
    cells[:, :, 0] = np.round(tb.onset_cells * patients.onset_share)
    nan = np.full(p, np.nan)
    nan_pn = np.full((p, n), np.nan)
    node_total = np.empty((p, n))
    kernels.node_totals(cells, node_total)
    adh = adhesion(traits[:, None, :, :], w.ligands[None, :, None, :], tb.spread)
    st = CohortState(
        patients=patients,
        traits=traits,
        p_death=np.empty((p, n, k)),
        survival=np.empty((p, n, k)),
        retained=np.empty((p, n, k)),
        homing=homing_weights(traits[:, :, None, :], w.ligands[None, None, :, :], w.perfusion, w.barrier, tb.spread),
        settle=np.empty((p, k, tb.step.dest.size)),
        settle_marrow=np.empty((p, k)),
        settle_tissue=np.empty((p, k)),
        cells=cells,
        status=np.full(p, Status.UNDIAGNOSED, dtype=np.int64),
        t_dx=nan.copy(),
        t_prog=nan.copy(),
        t_death=nan.copy(),
        t_end=nan.copy(),
        regimen=np.full(p, tb.untreated, dtype=np.int64),
        phase_pos=np.full(p, -1, dtype=np.int64),
        phase_end=np.full(p, np.inf),
        line=np.zeros(p, dtype=np.int64),
        line_start=nan.copy(),
        efficacy=np.ones(p),
        nadir=np.full(p, np.inf),
        lesion_nadir=np.full((p, n), np.inf),
        disrupted=np.zeros((p, n), dtype=bool),
        inflammation=np.zeros((p, n)),
        wound_opened=nan_pn.copy(),
        lesion_onset=nan_pn.copy(),
        lesion_route=np.zeros((p, n), dtype=np.int8),
        lesion_detectable=nan_pn.copy(),
        dx_sites=np.zeros((p, n), dtype=bool),
        relapse_sites=np.zeros((p, n), dtype=bool),
        burden_at_dx=nan.copy(),
        last_local=np.zeros((p, n, k)),
        last_haem=np.zeros((p, n, k)),
        node_total=node_total,
        total_cells=np.zeros(p),
        marrow_cells=np.zeros(p),
        kill_prob=np.zeros((p, n, k)),
        kill_regimen=np.full(p, -1, dtype=np.int64),
        kill_efficacy=nan.copy(),
        salvage_start_total=nan.copy(),
        salvage_start_soft=nan.copy(),
        salvage_with_emd=np.zeros(p, dtype=bool),
        salvage_best_total=nan.copy(),
        salvage_best_soft=nan.copy(),
        salvage_end=nan.copy(),
        emd_line_start=nan.copy(),
        treated_locally=np.zeros((p, n), dtype=bool),
        step_days=np.full(p, tb.dt_days),
        next_days=np.zeros(p),
        node_upper=node_total.copy(),
        node_lower=node_total.copy(),
        total_start=node_total.sum(axis=1),
        node_start=node_total.copy(),
        inflammation_start=np.zeros((p, n)),
        streams=np.zeros((p, 0), dtype=np.uint64) if streams is None else streams,
    )
    kernels.static_rates(patient_tables(st), adh, tb.step_args, tb.advance_constants)
    return st


def patient_tables(st: CohortState) -> tuple:
    """The block's per-patient tables (a :class:`emdsim.engine.kernels.PatientTables` filled by name, as a
    plain tuple for the compiled loops: views, no copies)."""
    pt = st.patients
    record = kernels.PatientTables(
        traits=st.traits,
        proliferation=pt.proliferation,
        switch_factor=pt.switch_factor,
        p_death=st.p_death,
        survival=st.survival,
        retained=st.retained,
        homing=st.homing,
        settle=st.settle,
        settle_marrow=st.settle_marrow,
        settle_tissue=st.settle_tissue,
        age_years=pt.age_years,
        phase_wound=pt.phase_wound,
        max_lines=pt.max_lines,
        visibility=pt.visibility,
        surgery_day=pt.surgery_day,
        followup_days=pt.followup_days,
        local_therapy=pt.local_therapy,
    )
    return kernels.plain(record)


def course_state(st: CohortState) -> tuple:
    """The block's dynamic arrays, filled by name into a :class:`emdsim.engine.kernels.CourseState` (the
    same arrays: the compiled loops write into them), as a plain tuple for the compiled loops."""
    return kernels.plain(kernels.CourseState(**{name: getattr(st, name) for name in kernels.CourseState._fields}))
