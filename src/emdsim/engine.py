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

import numpy as np
from numpy.typing import NDArray

from . import kernels
from .anatomy import ROUTE_HAEMATOGENOUS, ROUTE_LOCAL, World, build_world
from .config.schema import EmdConfig, RegimenSpec
from .niches import adhesion
from .patients import PatientTable
from .rates import competing_probabilities, event_probability, tally_record
from .spread import homing_weights
from .traits import TRAIT_INDEX, clone_trait_table, n_clone_states, switch_targets
from .treatment import regimen_kill_table
from .units import DAYS_PER_YEAR

__all__ = ["Status", "Tables", "CohortState", "build_tables", "init_state", "step", "max_steps"]


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
    """Everything derived once from a configuration (the resolved scenario)."""

    cfg: EmdConfig
    world: World
    regimens: tuple[RegimenSpec, ...]  # first line, then salvage
    kill_table: NDArray[np.float64]  # (R + 1, N); row R = untreated
    n_first: int
    release_base: NDArray[np.float64]  # (N,) egress (marrow) or shedding (soft tissue) hazard
    switch_sources: NDArray[np.int64]
    switch_targets: NDArray[np.int64]
    switch_rates: NDArray[np.float64]  # (S,)
    n_clones: int
    detection_cells: float
    wound_nodes: NDArray[np.int64]
    marrow_nodes: NDArray[np.int64]
    ps_nodes: NDArray[np.int64]  # paraskeletal nodes
    ps_marrow: NDArray[np.int64]  # their marrow sites
    soft_tissue: NDArray[np.bool_]  # paraskeletal, organ or wound
    is_em: NDArray[np.bool_]  # organ or wound (EM definition)
    em_nodes: NDArray[np.int64]  # their indices
    in_marrow: NDArray[np.float64]  # (N,) 1.0 for marrow nodes (for the compiled rules)
    dest: NDArray[np.int64]  # destinations of circulating cells (marrow, organ, wound)
    dest_marrow: NDArray[np.bool_]
    dest_wound: NDArray[np.bool_]
    phase_wound_node: NDArray[np.int64]  # (n_first,) wound node opened by each first-line phase, -1 none
    phase_days: NDArray[np.float64]  # (R + 1,) duration of each regimen's phase (0: until progression)
    clinic_constants: np.ndarray  # the clinical course's constants (one kernels.CLINIC_RECORD)
    surgery_node: NDArray[np.int64]  # (n_surgeries,)
    p_spill: float  # per step: a cell of a breached site spills (local extension)
    p_arrest: float  # per step: a circulating cell arrests ...
    p_die_rest: float  # ... or, if it does not, dies in the blood
    advance_constants: np.ndarray  # the step's constants (one kernels.ADVANCE_RECORD), from the above

    @property
    def untreated(self) -> int:
        return len(self.regimens)


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
    sp, dt = cfg.spread, cfg.sim.dt_days
    p_circ = competing_probabilities([sp.extravasation_rate_per_day, sp.blood_death_rate_per_day], dt)
    p_spill = float(event_probability(sp.local_extension_rate_per_day, dt))
    p_arrest, p_die_rest = float(p_circ[0]), float(min(p_circ[1] / max(1.0 - p_circ[0], 1e-300), 1.0))
    return Tables(
        cfg=cfg,
        world=world,
        regimens=regimens,
        kill_table=regimen_kill_table(list(regimens), cfg.drugs, world.drug_kind),
        n_first=len(tr.first_line),
        release_base=release,
        switch_sources=src,
        switch_targets=tgt,
        switch_rates=np.array([s.rate_per_division for s in cfg.traits.switches]),
        n_clones=n_clone_states(cfg.traits.switches),
        detection_cells=detection,
        wound_nodes=np.flatnonzero(world.is_wound),
        marrow_nodes=np.flatnonzero(world.is_marrow),
        ps_nodes=ps_nodes,
        ps_marrow=world.adjacent_marrow[ps_nodes],
        soft_tissue=world.is_paraskeletal | world.is_tissue_target,
        is_em=world.is_tissue_target,
        em_nodes=np.flatnonzero(world.is_tissue_target),
        in_marrow=world.is_marrow.astype(float),
        dest=np.flatnonzero(world.is_marrow | world.is_tissue_target),
        dest_marrow=world.is_marrow[world.is_marrow | world.is_tissue_target],
        dest_wound=world.is_wound[world.is_marrow | world.is_tissue_target],
        phase_wound_node=np.array([world.index(r.wound) if r.wound else -1 for r in tr.first_line], dtype=np.int64),
        phase_days=np.array([r.duration_days for r in regimens] + [0.0], dtype=float),
        clinic_constants=_clinic_constants(cfg, detection),
        surgery_node=np.array([world.index(s.wound) for s in cfg.scenario.surgeries], dtype=np.int64),
        p_spill=p_spill,
        p_arrest=p_arrest,
        p_die_rest=p_die_rest,
        advance_constants=_advance_constants(cfg, p_spill, p_arrest, p_die_rest),
    )


def _advance_constants(cfg: EmdConfig, p_spill: float, p_arrest: float, p_die_rest: float) -> np.ndarray:
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
        "route_local": ROUTE_LOCAL,
        "route_haematogenous": ROUTE_HAEMATOGENOUS,
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
    }
    return _record(
        kernels.CLINIC_RECORD, {c: values[c] if c in values else getattr(cl, c) for c in kernels.CLINIC_CONSTANTS}
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

    @property
    def alive(self) -> NDArray[np.bool_]:
        """Patients whose course goes on (undiagnosed or followed); the others are frozen."""
        return self.status <= Status.FOLLOWED

    def take(self, rows: NDArray[np.int64]) -> CohortState:
        kw = {f.name: getattr(self, f.name)[rows] for f in fields(self) if f.name not in self.SHARED_FIELDS}
        return CohortState(
            patients=self.patients.take(rows), t_days=self.t_days, n_steps=self.n_steps, tally=self.tally, **kw
        )


def init_state(tb: Tables, patients: PatientTable) -> CohortState:
    cfg, w = tb.cfg, tb.world
    p, n, k = len(patients), w.n_nodes, tb.n_clones
    traits = clone_trait_table(patients.base_traits, cfg.traits.switches)
    cells = np.zeros((p, n, k))
    cells[:, :, 0] = np.round(cfg.growth.onset_cells * patients.onset_share)
    nan = np.full(p, np.nan)
    nan_pn = np.full((p, n), np.nan)
    node_total = np.empty((p, n))
    kernels.node_totals(cells, node_total)
    adh = adhesion(traits[:, None, :, :], w.ligands[None, :, None, :], cfg.spread)
    p_death, survival, retained = np.empty((p, n, k)), np.empty((p, n, k)), np.empty((p, n, k))
    g = cfg.growth
    kernels.static_rates(
        traits,
        adh,
        w.soil,
        tb.release_base,
        g.death_rate_per_day,
        g.niche_loss_death_rate_per_day,
        cfg.sim.dt_days,
        _ND,
        p_death,
        survival,
        retained,
    )
    return CohortState(
        patients=patients,
        traits=traits,
        p_death=p_death,
        survival=survival,
        retained=retained,
        homing=homing_weights(traits[:, :, None, :], w.ligands[None, None, :, :], w.perfusion, w.barrier, cfg.spread),
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
        kill_prob=np.zeros((p, n, k)),
        kill_regimen=np.full(p, -1, dtype=np.int64),
        kill_efficacy=nan.copy(),
    )


# ----------------------------------------------------------------------------------- processes
def _events(st: CohortState, tb: Tables) -> None:
    """Open wounds whose procedure falls in this step; decay inflammation."""
    dt = tb.cfg.sim.dt_days
    wn = tb.wound_nodes
    if wn.size:
        st.inflammation[:, wn] *= np.exp(-np.log(2.0) * dt / tb.world.wound_half_life[wn])
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
    w = tb.world
    kernels.advance(
        rng,
        tally_record(st.tally),
        st.alive,
        st.t_days,
        st.cells,
        st.traits,
        st.patients.proliferation,
        st.patients.switch_factor,
        st.p_death,
        st.survival,
        st.retained,
        st.homing,
        st.inflammation,
        st.disrupted,
        st.regimen,
        st.efficacy,
        tb.kill_table,
        w.soil,
        w.is_wound,
        w.capacity,
        tb.in_marrow,
        w.blood,
        tb.release_base,
        tb.ps_marrow,
        tb.ps_nodes,
        tb.em_nodes,
        tb.dest,
        tb.dest_marrow,
        tb.dest_wound,
        tb.switch_rates,
        tb.advance_constants,
        st.last_local,
        st.last_haem,
        st.lesion_onset,
        st.lesion_route,
        st.lesion_detectable,
        st.node_total,
        st.kill_prob,
        st.kill_regimen,
        st.kill_efficacy,
    )
    return st.node_total


def _clinic(st: CohortState, tb: Tables, rng: np.random.Generator, node_total: NDArray[np.float64]) -> None:
    """Process 6, the clinical course (:func:`emdsim.kernels.clinic`): imaging, diagnosis, phases of
    the plan, progression, death and censoring of every patient."""
    cfg = tb.cfg
    # the totals are summed here by numpy (pairwise), as the clinical course has always summed them
    kernels.clinic(
        rng,
        tally_record(st.tally),
        st.t_days,
        node_total,
        node_total.sum(axis=1),
        node_total[:, tb.marrow_nodes].sum(axis=1),
        tb.soft_tissue,
        tb.world.lesion_death_rate,
        st.patients.age_years,
        st.patients.phase_wound,
        tb.clinic_constants,
        tb.phase_days,
        tb.phase_wound_node,
        tb.n_first,
        len(cfg.treatment.salvage),
        tb.untreated,
        int(Status.UNDIAGNOSED),
        int(Status.FOLLOWED),
        int(Status.DEAD),
        int(Status.CENSORED),
        st.status,
        st.t_dx,
        st.t_prog,
        st.t_death,
        st.t_end,
        st.burden_at_dx,
        st.dx_sites,
        st.relapse_sites,
        st.lesion_detectable,
        st.nadir,
        st.lesion_nadir,
        st.line,
        st.line_start,
        st.phase_pos,
        st.phase_end,
        st.regimen,
        st.efficacy,
        st.inflammation,
        st.wound_opened,
    )


def step(st: CohortState, tb: Tables, rng: np.random.Generator) -> None:
    """Advance every living patient of ``st`` by one step of ``sim.dt_days``."""
    cfg = tb.cfg
    st.t_days += cfg.sim.dt_days
    st.n_steps += 1
    _events(st, tb)  # 0
    node_total = _advance(st, tb, rng)  # 1-5, lesion onsets and routes
    _clinic(st, tb, rng, node_total)  # 6
