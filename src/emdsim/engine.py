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

Both engines call :func:`step` on a :class:`CohortState`: the vectorized engine with blocks of
patients, the Mesa model with one patient whose agents mirror the state.  The biology lives in
:mod:`niches`, :mod:`spread` and :mod:`treatment`; this module only orders and books it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import IntEnum
from functools import cached_property

import numpy as np
from numpy.typing import NDArray

from . import kernels
from .anatomy import ROUTE_HAEMATOGENOUS, ROUTE_LOCAL, World, build_world
from .config.schema import EmdConfig, RegimenSpec, SpreadConfig, SwitchSpec
from .niches import adhesion
from .patients import PatientTable
from .rates import competing_probabilities, event_probability, tally_record
from .spread import homing_weights
from .traits import TRAIT_INDEX, clone_label, clone_trait_table, n_clone_states, switch_targets
from .treatment import regimen_kill_table
from .units import DAYS_PER_YEAR

__all__ = [
    "Status",
    "Tables",
    "CohortState",
    "build_tables",
    "course_state",
    "init_state",
    "max_steps",
    "patient_tables",
    "step",
]


class Status(IntEnum):
    """A patient's course: ordered, so ``status <= FOLLOWED`` means still living and followed."""

    UNDIAGNOSED = 0
    FOLLOWED = 1
    DEAD = 2
    CENSORED = 3


_ND, _SENS, _PROLIF, _EMPROLIF = (
    TRAIT_INDEX[t] for t in ("niche_dependence", "drug_sensitivity", "proliferation", "em_proliferation")
)


@dataclass(frozen=True)
class Tables:
    """The resolved scenario: everything the engine derives once from a configuration, in the units
    the step uses (days, cells, per-step probabilities).  It holds values, not the configuration:
    what the cohort needs besides (the seed, the cohort's size, the snapshot schedule) it reads from
    the configuration itself."""

    world: World
    regimens: tuple[RegimenSpec, ...]  # first line, then salvage
    n_first: int
    switches: tuple[SwitchSpec, ...]  # phenotype switches, in bit order of the clone states
    clone_labels: tuple[str, ...]  # (K,) readable name of each clone state
    switch_sources: NDArray[np.int64]
    switch_targets: NDArray[np.int64]
    n_clones: int
    spread: SpreadConfig  # the spread rules' parameters (adhesion, homing weights)
    onset_cells: float  # cells of the founding clone at myeloma onset
    dt_days: float  # the step
    max_steps: int  # steps from onset to the end of the longest possible course
    detection_cells: float  # the scenario's imaging threshold, cells
    wound_nodes: NDArray[np.int64]
    wound_decay_per_step: NDArray[np.float64]  # (wounds,) factor on their inflammation per step
    marrow_nodes: NDArray[np.int64]
    ps_nodes: NDArray[np.int64]  # paraskeletal nodes
    ps_marrow: NDArray[np.int64]  # their marrow sites
    soft_tissue: NDArray[np.bool_]  # paraskeletal, organ or wound
    is_em: NDArray[np.bool_]  # organ or wound (EM definition)
    em_nodes: NDArray[np.int64]  # their indices
    surgery_node: NDArray[np.int64]  # (n_surgeries,)
    treatment_name: str
    scenario_name: str
    step: kernels.StepTables  # the per-compartment and per-regimen tables of the compiled loops
    advance_constants: np.ndarray  # the step's constants (one kernels.ADVANCE_RECORD)
    clinic_constants: np.ndarray  # the clinical course's constants (one kernels.CLINIC_RECORD)

    @cached_property
    def step_args(self) -> tuple:
        """:attr:`step` as the compiled loops take it (:func:`emdsim.kernels.plain`)."""
        return kernels.plain(self.step)

    @property
    def untreated(self) -> int:
        return len(self.regimens)

    @property
    def kill_table(self) -> NDArray[np.float64]:
        """(R + 1, N) each regimen's kill hazard per compartment, 1/day; row R = untreated."""
        return self.step.kill_rate_per_day

    @property
    def phase_days(self) -> NDArray[np.float64]:
        """(R + 1,) duration of each regimen's phase, days (0: until progression)."""
        return self.step.phase_days

    @property
    def phase_wound_node(self) -> NDArray[np.int64]:
        """(n_first,) wound node opened by each first-line phase, -1 none."""
        return self.step.phase_wound_node


def build_tables(cfg: EmdConfig) -> Tables:
    world = build_world(cfg.anatomy)
    tr = cfg.treatment
    regimens = tuple(tr.first_line) + tuple(tr.salvage)
    release = np.where(
        world.is_marrow,
        cfg.spread.egress_rate_per_day,
        np.where(np.arange(world.n_nodes) == world.blood, 0.0, cfg.spread.shedding_rate_per_day),
    )
    src, tgt = switch_targets(len(cfg.traits.switches))
    detection = cfg.clinical.imaging[cfg.scenario.imaging].detection_threshold_cells
    ps_nodes = np.flatnonzero(world.is_paraskeletal)
    wound_nodes = np.flatnonzero(world.is_wound)
    sp, dt = cfg.spread, cfg.sim.dt_days
    p_circ = competing_probabilities([sp.extravasation_rate_per_day, sp.blood_death_rate_per_day], dt)
    p_spill = float(event_probability(sp.local_extension_rate_per_day, dt))
    p_arrest, p_die_rest = float(p_circ[0]), float(min(p_circ[1] / max(1.0 - p_circ[0], 1e-300), 1.0))
    dest = world.is_marrow | world.is_tissue_target
    soft_tissue = world.is_paraskeletal | world.is_tissue_target
    n_clones = n_clone_states(cfg.traits.switches)
    step_tables = kernels.StepTables(
        soil=world.soil,
        is_wound=world.is_wound,
        capacity_cells=world.capacity,
        in_marrow=world.is_marrow.astype(float),
        release_rate_per_day=release,
        soft_tissue=soft_tissue,
        lesion_death_rate_per_day=world.lesion_death_rate,
        ps_nodes=ps_nodes,
        ps_marrow=world.adjacent_marrow[ps_nodes],
        em_nodes=np.flatnonzero(world.is_tissue_target),
        dest=np.flatnonzero(dest),
        dest_marrow=world.is_marrow[dest],
        dest_wound=world.is_wound[dest],
        switch_rate_per_division=np.array([s.rate_per_division for s in cfg.traits.switches], dtype=float),
        kill_rate_per_day=regimen_kill_table(list(regimens), cfg.drugs, world.drug_kind),
        phase_days=np.array([r.duration_days for r in regimens] + [0.0], dtype=float),
        phase_wound_node=np.array([world.index(r.wound) if r.wound else -1 for r in tr.first_line], dtype=np.int64),
    )
    return Tables(
        world=world,
        regimens=regimens,
        n_first=len(tr.first_line),
        switches=tuple(cfg.traits.switches),
        clone_labels=tuple(clone_label(k, cfg.traits.switches) for k in range(n_clones)),
        switch_sources=src,
        switch_targets=tgt,
        n_clones=n_clones,
        spread=cfg.spread,
        onset_cells=cfg.growth.onset_cells,
        dt_days=dt,
        max_steps=max_steps(cfg),
        detection_cells=detection,
        wound_nodes=wound_nodes,
        wound_decay_per_step=np.exp(-np.log(2.0) * dt / world.wound_half_life[wound_nodes]),
        marrow_nodes=np.flatnonzero(world.is_marrow),
        ps_nodes=ps_nodes,
        ps_marrow=step_tables.ps_marrow,
        soft_tissue=soft_tissue,
        is_em=world.is_tissue_target,
        em_nodes=step_tables.em_nodes,
        surgery_node=np.array([world.index(s.wound) for s in cfg.scenario.surgeries], dtype=np.int64),
        treatment_name=tr.name,
        scenario_name=cfg.scenario.name,
        step=step_tables,
        advance_constants=_advance_constants(cfg, world.blood, p_spill, p_arrest, p_die_rest),
        clinic_constants=_clinic_constants(cfg, detection),
    )


def _advance_constants(cfg: EmdConfig, blood: int, p_spill: float, p_arrest: float, p_die_rest: float) -> np.ndarray:
    """The constants of :func:`emdsim.kernels.advance`: one record of ``kernels.ADVANCE_RECORD``."""
    g, sp, sim = cfg.growth, cfg.spread, cfg.sim
    values = {
        "birth_rate_per_day": g.birth_rate_per_day,
        "death_rate_per_day": g.death_rate_per_day,
        "niche_loss_death_rate_per_day": g.niche_loss_death_rate_per_day,
        "crowding_egress_gain": sp.crowding_egress_gain,
        "cortical_disruption_occupancy": sp.cortical_disruption_occupancy,
        "cortical_disruption_rate_per_day": sp.cortical_disruption_rate_per_day,
        "p_spill_per_step": p_spill,
        "p_arrest_per_step": p_arrest,
        "p_die_in_blood_per_step": p_die_rest,
        "p_marrow_engraftment": sp.p_marrow_engraftment,
        "p_colonisation": sp.p_colonisation,
        "dt_days": sim.dt_days,
        "deterministic_threshold_cells": sim.deterministic_threshold_cells,
        "extinction_cells": sim.extinction_cells,
        "trait_niche_dependence": _ND,
        "trait_proliferation": _PROLIF,
        "trait_em_proliferation": _EMPROLIF,
        "trait_drug_sensitivity": _SENS,
        "blood_node": blood,
        "route_local": ROUTE_LOCAL,
        "route_haematogenous": ROUTE_HAEMATOGENOUS,
        "status_followed": Status.FOLLOWED,
    }
    return _record(kernels.ADVANCE_RECORD, values)


def _record(dtype: np.dtype, values: dict[str, float | int]) -> np.ndarray:
    """A one-element array of the record ``dtype``, its fields filled by name (a missing one is a KeyError)."""
    record = np.zeros(1, dtype=dtype)
    for name in dtype.names:
        record[name] = values[name]
    return record


def _clinic_constants(cfg: EmdConfig, detection_cells: float) -> np.ndarray:
    """The constants of :func:`emdsim.kernels.clinic`: one record of ``kernels.CLINIC_RECORD``."""
    cl, sim = cfg.clinical, cfg.sim
    values = {
        "detection_threshold_cells": detection_cells,
        "line_efficacy_factor": cfg.treatment.line_efficacy_factor,
        "dt_days": sim.dt_days,
        "followup_days": sim.followup_years * DAYS_PER_YEAR,
        "max_days_to_diagnosis": sim.max_years_to_diagnosis * DAYS_PER_YEAR,
        "n_first_line_phases": len(cfg.treatment.first_line),
        "n_salvage_regimens": len(cfg.treatment.salvage),
        "untreated_regimen": len(cfg.treatment.first_line) + len(cfg.treatment.salvage),
        "status_undiagnosed": Status.UNDIAGNOSED,
        "status_followed": Status.FOLLOWED,
        "status_dead": Status.DEAD,
        "status_censored": Status.CENSORED,
    }
    return _record(
        kernels.CLINIC_RECORD, {c: values[c] if c in values else getattr(cl, c) for c in kernels.CLINIC_RECORD.names}
    )


def max_steps(cfg: EmdConfig) -> int:
    years = cfg.sim.max_years_to_diagnosis + cfg.sim.followup_years
    return int(np.ceil(years * DAYS_PER_YEAR / cfg.sim.dt_days)) + 1


@dataclass
class CohortState:
    """Dynamic state of a block of patients (rows), all on the same clock since myeloma onset."""

    patients: PatientTable
    traits: NDArray[np.float64]  # (P, K, T)
    #: static per patient (P, N, K), from :func:`emdsim.kernels.static_rates`: per-step death and
    #: survival probabilities on each compartment's own soil, and the uncrowded egress hazard (from
    #: the clones' retention score, :func:`emdsim.niches.adhesion`)
    p_death: NDArray[np.float64]
    survival: NDArray[np.float64]
    retained: NDArray[np.float64]
    homing: NDArray[np.float64]  # (P, K, N) destination weights before inflammation
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

    #: random variates drawn so far: [uniform, normal] (for the benchmark's RNG floor)
    tally: NDArray[np.int64] = field(default_factory=lambda: np.zeros(2, np.int64))

    #: per-row arrays (first axis = patient), kept in step when rows are retired
    #: fields that are not per-row arrays (shared by the block or rebuilt on take)
    SHARED_FIELDS = ("patients", "t_days", "n_steps", "tally")

    def __len__(self) -> int:
        return len(self.patients)

    def __setattr__(self, name: str, value: object) -> None:
        # the compiled loops' views (:meth:`kernel_args`) hold the arrays: replacing one drops them
        if name in _KERNEL_FIELDS:
            self.__dict__.pop("_kernel_args", None)
        object.__setattr__(self, name, value)

    def kernel_args(self) -> tuple[tuple, tuple]:
        """The state and the per-patient tables as the compiled loops take them
        (:func:`course_state`, :func:`patient_tables`), built once per state object."""
        args = self.__dict__.get("_kernel_args")
        if args is None:
            args = self.__dict__["_kernel_args"] = (course_state(self), patient_tables(self))
        return args

    @property
    def alive(self) -> NDArray[np.bool_]:
        """Patients whose course goes on (undiagnosed or followed); the others are frozen."""
        return self.status <= Status.FOLLOWED

    def take(self, rows: NDArray[np.int64]) -> CohortState:
        kw = {f.name: getattr(self, f.name)[rows] for f in fields(self) if f.name not in self.SHARED_FIELDS}
        return CohortState(
            patients=self.patients.take(rows), t_days=self.t_days, n_steps=self.n_steps, tally=self.tally, **kw
        )


#: the fields of a CohortState that the compiled loops' views hold
_KERNEL_FIELDS = frozenset(kernels.CourseState._fields) | {
    "traits",
    "p_death",
    "survival",
    "retained",
    "homing",
    "patients",
}


def init_state(tb: Tables, patients: PatientTable) -> CohortState:
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
    )
    kernels.static_rates(patient_tables(st), adh, tb.step_args, tb.advance_constants)
    return st


def patient_tables(st: CohortState) -> tuple:
    """The block's per-patient tables (a :class:`emdsim.kernels.PatientTables` filled by name, as a
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
        age_years=pt.age_years,
        phase_wound=pt.phase_wound,
    )
    return kernels.plain(record)


def course_state(st: CohortState) -> tuple:
    """The block's dynamic arrays, filled by name into a :class:`emdsim.kernels.CourseState` (the
    same arrays: the compiled loops write into them), as a plain tuple for the compiled loops."""
    return kernels.plain(kernels.CourseState(**{name: getattr(st, name) for name in kernels.CourseState._fields}))


# ----------------------------------------------------------------------------------- processes
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


def _advance(st: CohortState, tb: Tables, rng: np.random.Generator) -> NDArray[np.float64]:
    """Processes 1-5 and the lesions' bookkeeping (:func:`emdsim.kernels.advance`); returns the
    cells in each compartment after the step (P, N)."""
    state, patients = st.kernel_args()
    kernels.advance(rng, tally_record(st.tally), st.t_days, state, patients, tb.step_args, tb.advance_constants)
    return st.node_total


def _clinic(st: CohortState, tb: Tables, rng: np.random.Generator, node_total: NDArray[np.float64]) -> None:
    """Process 6, the clinical course (:func:`emdsim.kernels.clinic`): imaging, diagnosis, phases of
    the plan, progression, death and censoring of every patient."""
    # the totals are summed here by numpy (pairwise), as the clinical course has always summed them
    node_total.sum(axis=1, out=st.total_cells)
    node_total[:, tb.marrow_nodes].sum(axis=1, out=st.marrow_cells)
    state, patients = st.kernel_args()
    kernels.clinic(rng, tally_record(st.tally), st.t_days, state, patients, tb.step_args, tb.clinic_constants)


def step(st: CohortState, tb: Tables, rng: np.random.Generator) -> None:
    """Advance every living patient of ``st`` by one step of ``dt_days``."""
    st.t_days += tb.dt_days
    st.n_steps += 1
    _events(st, tb)  # 0
    node_total = _advance(st, tb, rng)  # 1-5, lesion onsets and routes
    _clinic(st, tb, rng, node_total)  # 6
