"""The resolved configuration: what the engine derives once from a configuration (:class:`Tables`).

Rates, per-step probabilities, the anatomy's per-compartment arrays, the regimens' kill tables and
the constant records of the compiled boundary (:data:`emdsim.engine.kernels.ADVANCE_RECORD`,
:data:`emdsim.engine.kernels.CLINIC_RECORD`), filled by field name.  Everything downstream of
:func:`build_tables` reads these values, never the configuration.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import cached_property

import numpy as np
from numpy.typing import NDArray

from emdsim.biology.anatomy import ROUTE_HAEMATOGENOUS, ROUTE_LOCAL, World, build_world
from emdsim.biology.traits import TRAIT_INDEX, clone_label, n_clone_states
from emdsim.biology.treatment import regimen_kill_table
from emdsim.config.schema import EmdConfig, RegimenSpec, SpreadConfig, SwitchSpec
from emdsim.engine import kernels
from emdsim.engine.flows import blood_probabilities, event_probability
from emdsim.engine.status import Status
from emdsim.units import DAYS_PER_YEAR

__all__ = ["Tables", "build_tables", "max_steps"]

_ND, _SENS, _PROLIF, _EMPROLIF = (
    TRAIT_INDEX[t] for t in ("niche_dependence", "drug_sensitivity", "proliferation", "em_proliferation")
)


@dataclass(frozen=True)
class Tables:
    """The resolved configuration: everything the engine derives once from a configuration, in the units
    the step uses (days, cells, per-step probabilities).  It holds values, not the configuration:
    what the cohort needs besides (the seed, the cohort's size, the snapshot schedule) it reads from
    the configuration itself."""

    world: World
    regimens: tuple[RegimenSpec, ...]  # first line, then salvage
    n_first: int
    switches: tuple[SwitchSpec, ...]  # phenotype switches, in bit order of the clone states
    clone_labels: tuple[str, ...]  # (K,) readable name of each clone state
    n_clones: int
    spread: SpreadConfig  # the spread rules' parameters (adhesion, homing weights)
    onset_cells: float  # cells of the founding clone at myeloma onset
    dt_days: float  # the step
    max_steps: int  # steps from onset to the end of the longest possible course
    detection_cells: float  # the scenario's imaging threshold, cells
    partial_response_ratio: float  # a partial response leaves at most this fraction of the line's start
    wound_nodes: NDArray[np.int64]
    wound_decay_per_step: NDArray[np.float64]  # (wounds,) factor on their inflammation per step
    marrow_nodes: NDArray[np.int64]
    is_em: NDArray[np.bool_]  # organ or wound (EM definition)
    surgery_node: NDArray[np.int64]  # (n_surgeries,)
    treatment_name: str
    scenario_name: str
    hybrid: bool  # the hybrid engine's pass (per-patient streams) instead of the exact one
    step: kernels.StepTables  # the per-compartment and per-regimen tables of the compiled loops
    advance_constants: np.ndarray  # the step's constants (one kernels.ADVANCE_RECORD)
    clinic_constants: np.ndarray  # the clinical course's constants (one kernels.CLINIC_RECORD)

    @cached_property
    def step_args(self) -> tuple:
        """:attr:`step` as the compiled loops take it (:func:`emdsim.engine.kernels.plain`)."""
        return kernels.plain(self.step)

    @property
    def untreated(self) -> int:
        return len(self.regimens)

    @property
    def ps_nodes(self) -> NDArray[np.int64]:
        """Paraskeletal compartments."""
        return self.step.ps_nodes

    @property
    def soft_tissue(self) -> NDArray[np.bool_]:
        """(N,) paraskeletal, organ or wound: where imaging sees lesions."""
        return self.step.soft_tissue

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
    detection = cfg.clinical.imaging[cfg.scenario.imaging].detection_threshold_cells
    ps_nodes = np.flatnonzero(world.is_paraskeletal)
    wound_nodes = np.flatnonzero(world.is_wound)
    sp, dt = cfg.spread, cfg.sim.dt_days
    p_spill = float(event_probability(sp.local_extension_rate_per_day, dt))
    # the rule's Python body (numpy arithmetic, no compilation at table build; the function itself
    # where numba is disabled)
    rule = getattr(blood_probabilities, "py_func", blood_probabilities)
    p_arrest, p_die = rule(sp.extravasation_rate_per_day, sp.blood_death_rate_per_day, dt)
    p_arrest, p_die_rest = float(p_arrest), float(p_die)
    dest = world.is_marrow | world.is_tissue_target
    n_clones = n_clone_states(cfg.traits.switches)
    step_tables = kernels.StepTables(
        soil=world.soil,
        is_wound=world.is_wound,
        capacity_cells=world.capacity,
        in_marrow=world.is_marrow.astype(float),
        release_rate_per_day=release,
        soft_tissue=world.is_paraskeletal | world.is_tissue_target,
        lesion_death_rate_per_day=world.lesion_death_rate,
        symptomatic_cells=np.where(
            world.symptomatic_cells > 0, world.symptomatic_cells, cfg.clinical.symptomatic_lesion_cells
        ),
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
        n_clones=n_clones,
        spread=cfg.spread,
        onset_cells=cfg.growth.onset_cells,
        dt_days=dt,
        max_steps=max_steps(cfg),
        detection_cells=detection,
        partial_response_ratio=1.0 - cfg.clinical.partial_response_reduction,
        wound_nodes=wound_nodes,
        wound_decay_per_step=np.exp(-np.log(2.0) * dt / world.wound_half_life[wound_nodes]),
        marrow_nodes=np.flatnonzero(world.is_marrow),
        is_em=world.is_tissue_target,
        surgery_node=np.array([world.index(s.wound) for s in cfg.scenario.surgeries], dtype=np.int64),
        treatment_name=tr.name,
        scenario_name=cfg.scenario.name,
        hybrid=cfg.engine == "hybrid",
        step=step_tables,
        advance_constants=_advance_constants(cfg, world.blood, p_spill, p_arrest, p_die_rest),
        clinic_constants=_clinic_constants(cfg, detection),
    )


def _advance_constants(cfg: EmdConfig, blood: int, p_spill: float, p_arrest: float, p_die_rest: float) -> np.ndarray:
    """The constants of :func:`emdsim.engine.kernels.advance`: one record of ``kernels.ADVANCE_RECORD``,
    the configuration's numbers by their own names, then the derived values."""
    derived = {
        "p_spill_per_step": p_spill,
        "p_arrest_per_step": p_arrest,
        "p_die_in_blood_per_step": p_die_rest,
        "trait_niche_dependence": _ND,
        "trait_proliferation": _PROLIF,
        "trait_em_proliferation": _EMPROLIF,
        "trait_drug_sensitivity": _SENS,
        "blood_node": blood,
        "route_local": ROUTE_LOCAL,
        "route_haematogenous": ROUTE_HAEMATOGENOUS,
        "status_followed": Status.FOLLOWED,
    }
    return _record(kernels.ADVANCE_RECORD, _numbers(cfg.growth, cfg.spread, cfg.sim) | derived)


def _numbers(*sections: object) -> dict[str, float | int]:
    """Every field of the configuration sections by name (the record keeps the numbers among them)."""
    return {f.name: getattr(section, f.name) for section in sections for f in fields(section)}


def _record(dtype: np.dtype, values: dict[str, float | int]) -> np.ndarray:
    """A one-element array of the record ``dtype``, its fields filled by name (a missing one is a KeyError)."""
    record = np.zeros(1, dtype=dtype)
    for name in dtype.names:
        record[name] = values[name]
    return record


def _clinic_constants(cfg: EmdConfig, detection_cells: float) -> np.ndarray:
    """The constants of :func:`emdsim.engine.kernels.clinic`: one record of ``kernels.CLINIC_RECORD``,
    the clinical section's numbers by their own names, then the derived values and codes."""
    sim = cfg.sim
    derived = {
        "detection_threshold_cells": detection_cells,
        "imaging_every_days": cfg.scenario.imaging_every_days,
        "line_efficacy_factor": cfg.treatment.line_efficacy_factor,
        "dt_days": sim.dt_days,
        # long steps are the hybrid engine's: the exact engine (the reference) and Mesa step by dt_days
        "max_step_days": max(sim.max_step_days, sim.dt_days) if cfg.engine == "hybrid" else sim.dt_days,
        "step_margin": sim.step_margin,
        "max_days_to_diagnosis": sim.max_years_to_diagnosis * DAYS_PER_YEAR,
        "n_first_line_phases": len(cfg.treatment.first_line),
        "n_salvage_regimens": len(cfg.treatment.salvage),
        "untreated_regimen": len(cfg.treatment.first_line) + len(cfg.treatment.salvage),
        "status_undiagnosed": Status.UNDIAGNOSED,
        "status_followed": Status.FOLLOWED,
        "status_dead": Status.DEAD,
        "status_censored": Status.CENSORED,
    }
    return _record(kernels.CLINIC_RECORD, _numbers(cfg.clinical) | derived)


def max_steps(cfg: EmdConfig) -> int:
    years = cfg.sim.max_years_to_diagnosis + cfg.sim.followup_years
    return int(np.ceil(years * DAYS_PER_YEAR / cfg.sim.dt_days)) + 1
