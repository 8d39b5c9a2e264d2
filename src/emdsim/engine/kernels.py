"""Compiled loops over patients x compartments x clones (numba): one pass per patient and step.

:func:`advance` runs processes 1-5 of :mod:`emdsim.engine` (growth, release, local extension,
haematogenous spread, treatment) for each living patient in turn, then removes extinct
populations, books the onset and route of new lesions and returns each compartment's total.
Each process is a function of one patient, called in the documented order, so a patient's arrays
stay in cache for the whole step and no array over the whole block is built between processes.
Patients whose course has ended (``alive`` false) are frozen.  :func:`clinic` runs process 6, the
clinical course, as a second loop over the patients; its criteria (diagnosis, progression, death,
censoring) are written once, there, with every constant from the configuration, and
``tests/test_clinic.py`` holds the numpy formulation it must match exactly.  What does not change
during a course is tabled per patient (:func:`static_rates`; the kill probabilities per regimen and
efficacy inside :func:`advance`).

The loops hold no biology of their own: every rate comes from the rule functions of
:mod:`emdsim.biology.niches`, :mod:`emdsim.biology.spread` and :mod:`emdsim.biology.treatment` — the same source that
numpy code calls on arrays, compiled here for scalars — and every flow is realised by
:func:`emdsim.engine.flows.flow_one` / :func:`emdsim.engine.flows.split_one`.  Loops touch only occupied entries.
"""

from __future__ import annotations

import typing
from dataclasses import fields
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from emdsim.biology import niches, spread, treatment
from emdsim.config.schema import ClinicalConfig, GrowthConfig, SimConfig, SpreadConfig
from emdsim.engine.flows import (
    birth_probability_given_survival,
    event_probability,
    flow_one,
    split_one,
    survival_probability,
)
from emdsim.engine.jit import JIT, JIT_INLINE, JIT_NO_NRT
from emdsim.engine.streams import patient_source, uniform
from emdsim.units import DAYS_PER_YEAR

__all__ = [
    "ADVANCE_RECORD",
    "CLINIC_RECORD",
    "CourseState",
    "PatientTables",
    "StepTables",
    "advance",
    "config_numbers",
    "clinic",
    "node_totals",
    "plain",
    "static_rates",
]

_support = JIT(niches.support)
_proliferation = JIT(niches.proliferation)
_birth_rate = JIT(niches.birth_rate)
_death_rate = JIT(niches.death_rate)
_retained_release = JIT(niches.retained_release)
_crowded_release = JIT(niches.crowded_release)
_disruption_rate = JIT(spread.disruption_rate)
_focal_breach_rate = JIT(spread.focal_breach_rate)
_colonisation_probability = JIT(spread.colonisation_probability)
_kill_rate = JIT(treatment.kill_rate)
_event_probability = JIT(event_probability)
_survival_probability = JIT(survival_probability)
_birth_probability_given_survival = JIT(birth_probability_given_survival)


@JIT_INLINE
def _node_sum(cells_p, n):  # pragma: no cover - compiled
    """Cells in node ``n`` of one patient (four partial sums: the additions run in parallel)."""
    n_k = cells_p.shape[1]
    a = b = c = d = 0.0
    k = 0
    while k + 4 <= n_k:
        a += cells_p[n, k]
        b += cells_p[n, k + 1]
        c += cells_p[n, k + 2]
        d += cells_p[n, k + 3]
        k += 4
    while k < n_k:
        a += cells_p[n, k]
        k += 1
    return (a + b) + (c + d)


@JIT_INLINE
def _occupancy(total, capacity):  # pragma: no cover - compiled
    """Occupancy of a node (total / capacity; 0 without capacity), as :func:`emdsim.biology.niches.occupancy`."""
    return total / capacity if capacity > 0.0 else 0.0


@JIT
def node_totals(cells, out):  # pragma: no cover - compiled
    """Cells in each compartment (P, N) into ``out``, summed as :func:`advance` sums them."""
    for p in range(cells.shape[0]):
        for n in range(cells.shape[1]):
            out[p, n] = _node_sum(cells[p], n)


@JIT_INLINE
def _death_and_survival(death_base, niche_loss, supp, dt):  # pragma: no cover - compiled
    """Per-step death probability and survival probability of a clone with niche support ``supp``."""
    d = _death_rate(death_base, niche_loss, supp)
    return _event_probability(d, dt), _survival_probability(d, dt)


@JIT_INLINE
def _settle_probabilities(homing_k, inflammation, d_k, soil, tb, c, weights, settle):  # pragma: no cover - compiled
    """Where an arrested cell of a clone (homing weights ``homing_k (N,)``, niche dependence ``d_k``)
    settles: ``settle[j]`` = its homing share of destination j (wounds weighted by ``inflammation
    (N,)``) x engraftment in marrow or colonisation on ``soil (N,)`` elsewhere; returns the sums over
    marrow and over other tissue, (0, 0) when no destination has weight.  ``weights (D,)`` is work space."""
    dest, dest_marrow, dest_wound = tb.dest, tb.dest_marrow, tb.dest_wound
    total_w = 0.0
    for j in range(dest.size):
        wj = homing_k[dest[j]]
        if dest_wound[j]:
            wj *= inflammation[dest[j]]
        weights[j] = wj
        total_w += wj
    p_marrow = 0.0
    p_tissue = 0.0
    if total_w <= 0.0:
        settle[:] = 0.0
        return p_marrow, p_tissue
    for j in range(dest.size):
        if dest_marrow[j]:
            s_j = c.p_marrow_engraftment
        else:
            s_j = _colonisation_probability(c.p_colonisation, _support(d_k, soil[dest[j]]))
        settle[j] = weights[j] / total_w * s_j
        if dest_marrow[j]:
            p_marrow += settle[j]
        else:
            p_tissue += settle[j]
    return p_marrow, p_tissue


@JIT
def static_rates(patients, adhesion, tables, k):  # pragma: no cover - compiled
    """Fill ``pt.p_death``, ``pt.survival`` and ``pt.retained`` (P, N, K), what does not change during
    a course: the per-step death and survival probabilities on the compartment's own soil (a wound's
    changes with its inflammation, so :func:`advance` computes those per step) and the uncrowded
    egress hazard (:func:`emdsim.biology.niches.retained_release`) from the clones' ``adhesion`` (P, N, K);
    and ``pt.settle``, ``pt.settle_marrow``, ``pt.settle_tissue``, where arrested cells settle while
    no wound is inflamed.
    ``patients`` and ``tables`` are a :class:`PatientTables` and :class:`StepTables` as plain tuples
    (:func:`plain`), ``k`` the step's constants (:data:`ADVANCE_RECORD`)."""
    pt, tb, c = PatientTables(*patients), StepTables(*tables), k[0]
    death_base, niche_loss, dt, i_nd = (
        c.death_rate_per_day,
        c.niche_loss_death_rate_per_day,
        c.dt_days,
        c.trait_niche_dependence,
    )
    n_p, n_n, n_k = pt.p_death.shape
    for p in range(n_p):
        for n in range(n_n):
            for kk in range(n_k):
                supp = _support(pt.traits[p, kk, i_nd], tb.soil[n])
                pt.p_death[p, n, kk], pt.survival[p, n, kk] = _death_and_survival(death_base, niche_loss, supp, dt)
                pt.retained[p, n, kk] = _retained_release(tb.release_rate_per_day[n], adhesion[p, n, kk])
    no_inflammation = np.zeros(n_n)  # wounds are closed: they receive nothing
    weights = np.empty(tb.dest.size)
    for p in range(n_p):
        for kk in range(n_k):
            pt.settle_marrow[p, kk], pt.settle_tissue[p, kk] = _settle_probabilities(
                pt.homing[p, kk], no_inflammation, pt.traits[p, kk, i_nd], tb.soil, tb, c, weights, pt.settle[p, kk]
            )


# ------------------------------------------------------------------------ the compiled boundary
class StepTables(NamedTuple):
    """What the compiled loops read of the resolved configuration, built once per configuration
    (:func:`emdsim.engine.build_tables`): per compartment ``(N,)``, per destination of circulating
    cells ``(D,)``, per regimen ``(R + 1, ...)`` (row ``R``: untreated)."""

    soil: NDArray[np.float64]  # (N,) soil quality of the compartment, 0-1
    is_wound: NDArray[np.bool_]  # (N,)
    capacity_cells: NDArray[np.float64]  # (N,) cells at full occupancy (0: no capacity)
    in_marrow: NDArray[np.float64]  # (N,) 1.0 for marrow compartments
    release_rate_per_day: NDArray[np.float64]  # (N,) egress (marrow) or shedding (soft tissue), 1/day
    soft_tissue: NDArray[np.bool_]  # (N,) paraskeletal, organ or wound: where imaging sees lesions
    lesion_death_rate_per_day: NDArray[np.float64]  # (N,) death hazard of a lethal-sized lesion, 1/day
    symptomatic_cells: NDArray[np.float64]  # (N,) a soft-tissue lesion this large causes symptoms
    ps_nodes: NDArray[np.int64]  # (L,) paraskeletal compartments
    ps_marrow: NDArray[np.int64]  # (L,) the marrow site beside each
    em_nodes: NDArray[np.int64]  # (E,) organs and wounds (the EM definition)
    dest: NDArray[np.int64]  # (D,) destinations of circulating cells (marrow, organ, wound)
    dest_marrow: NDArray[np.bool_]  # (D,)
    dest_wound: NDArray[np.bool_]  # (D,)
    switch_rate_per_division: NDArray[np.float64]  # (S,)
    kill_rate_per_day: NDArray[np.float64]  # (R + 1, N) each regimen's kill hazard per compartment
    phase_days: NDArray[np.float64]  # (R + 1,) each regimen's phase duration, days (0: until progression)
    phase_wound_node: NDArray[np.int64]  # (F,) wound opened by each first-line phase (-1: none)


class PatientTables(NamedTuple):
    """Per patient, what does not change during a course (rows: the block's patients)."""

    traits: NDArray[np.float64]  # (P, K, T) each clone state's trait values
    proliferation: NDArray[np.float64]  # (P,) the patient's proliferation factor
    switch_factor: NDArray[np.float64]  # (P,) scale of the switch rates
    p_death: NDArray[np.float64]  # (P, N, K) death probability per step (:func:`static_rates`)
    survival: NDArray[np.float64]  # (P, N, K) survival probability per step
    retained: NDArray[np.float64]  # (P, N, K) uncrowded egress hazard, 1/day
    homing: NDArray[np.float64]  # (P, K, N) destination weights before inflammation
    #: where an arrested cell of clone k settles while no wound is inflamed: probability per
    #: destination (homing share x engraftment or colonisation), and its sums over marrow and over
    #: other tissue (:func:`static_rates`; the hybrid pass reads them, the exact pass recomputes them)
    settle: NDArray[np.float64]  # (P, K, D)
    settle_marrow: NDArray[np.float64]  # (P, K)
    settle_tissue: NDArray[np.float64]  # (P, K)
    age_years: NDArray[np.float64]  # (P,) age at myeloma onset, years
    phase_wound: NDArray[np.bool_]  # (P, F) whether each first-line phase makes the patient's wound
    max_lines: NDArray[np.int64]  # (P,) lines of therapy the patient starts at most
    visibility: NDArray[np.float64]  # (P, N) multiplier on the imaging threshold at each site
    surgery_day: NDArray[np.float64]  # (P, n_surgeries) days after diagnosis of each surgery, NaN = none
    followup_days: NDArray[np.float64]  # (P,) days followed after diagnosis (to the data cut)
    local_therapy: NDArray[np.bool_]  # (P, N) a lesion seen here after diagnosis is treated locally


class CourseState(NamedTuple):
    """Per patient, what the step changes (the arrays of :class:`emdsim.engine.CohortState`, by
    name; times in days since myeloma onset, NaN before the event)."""

    cells: NDArray[np.float64]  # (P, N, K)
    node_total: NDArray[np.float64]  # (P, N) cells per compartment, kept by :func:`advance`
    total_cells: NDArray[np.float64]  # (P,) all cells, summed before :func:`clinic`
    marrow_cells: NDArray[np.float64]  # (P,) marrow cells, summed before :func:`clinic`
    status: NDArray[np.int64]  # (P,) :class:`emdsim.engine.Status`
    t_dx: NDArray[np.float64]
    t_prog: NDArray[np.float64]
    t_death: NDArray[np.float64]
    t_end: NDArray[np.float64]
    burden_at_dx: NDArray[np.float64]  # (P,) cells
    regimen: NDArray[np.int64]  # (P,) row of ``kill_rate_per_day``
    phase_pos: NDArray[np.int64]  # (P,) first-line phase (-1: salvage)
    phase_end: NDArray[np.float64]
    line: NDArray[np.int64]
    line_start: NDArray[np.float64]
    efficacy: NDArray[np.float64]  # (P,) factor on the kill hazards
    nadir: NDArray[np.float64]  # (P,) cells
    lesion_nadir: NDArray[np.float64]  # (P, N) cells
    disrupted: NDArray[np.bool_]  # (P, N) breached cortex
    inflammation: NDArray[np.float64]  # (P, N) 0-1
    wound_opened: NDArray[np.float64]  # (P, N)
    lesion_onset: NDArray[np.float64]  # (P, N)
    lesion_route: NDArray[np.int8]  # (P, N) route code of the seeding
    lesion_detectable: NDArray[np.float64]  # (P, N)
    dx_sites: NDArray[np.bool_]  # (P, N)
    relapse_sites: NDArray[np.bool_]  # (P, N)
    last_local: NDArray[np.float64]  # (P, N, K) cells arrived by local extension this step
    last_haem: NDArray[np.float64]  # (P, N, K) cells arrived through the blood this step
    kill_prob: NDArray[np.float64]  # (P, N, K) kill probability per step, tabled per regimen and efficacy
    kill_regimen: NDArray[np.int64]  # (P,) the regimen ``kill_prob`` is for
    kill_efficacy: NDArray[np.float64]  # (P,) the efficacy ``kill_prob`` is for
    #: the first salvage line (line 1): cells at its start (NaN before), in all compartments and in
    #: soft tissue, whether a soft-tissue lesion was seen at its restaging, the fewest cells during the line
    #: (its best response) and the day it ended (NaN while it goes on)
    salvage_start_total: NDArray[np.float64]  # (P,) cells
    salvage_start_soft: NDArray[np.float64]  # (P,) cells
    salvage_with_emd: NDArray[np.bool_]  # (P,)
    salvage_best_total: NDArray[np.float64]  # (P,) cells
    salvage_best_soft: NDArray[np.float64]  # (P,) cells
    salvage_end: NDArray[np.float64]  # (P,) days
    #: the first time a later line (second or beyond) started with a soft-tissue lesion seen at its
    #: restaging, days (NaN: never): what a registry that records EMD at the start of each line sees
    emd_line_start: NDArray[np.float64]  # (P,) days
    #: lesions cleared by local therapy (clinical.local_therapy), once each
    treated_locally: NDArray[np.bool_]  # (P, N)
    #: the adaptive step (hybrid engine, ``sim.max_step_days``): the length of each patient's current
    #: step, days, and the time at which it ends (the patient is advanced then, and left as it is at
    #: the global steps before); and each compartment's cells after a step of ``max_step_days`` if
    #: every clone kept its present net growth rate (birth - death - kill) times ``step_margin``,
    #: with the growing clones only (at most) and with the shrinking ones only (at least)
    step_days: NDArray[np.float64]  # (P,)
    next_days: NDArray[np.float64]  # (P,)
    node_upper: NDArray[np.float64]  # (P, N) cells
    node_lower: NDArray[np.float64]  # (P, N) cells
    total_start: NDArray[np.float64]  # (P,) all cells at the start of the patient's step
    node_start: NDArray[np.float64]  # (P, N) cells per compartment at the start of the patient's step
    inflammation_start: NDArray[np.float64]  # (P, N) each wound's inflammation at the start of the patient's step


#: the position of ``cells`` in a :class:`CourseState` passed as a plain tuple, for reading its shape
#: without building the record (:func:`clinic`, at every block-step)
_CELLS = CourseState._fields.index("cells")


def plain(record: tuple) -> tuple:
    """A record of arrays as the plain tuple the compiled functions take: numba types a plain tuple
    of arrays from a cached fingerprint (~2 us for 30 arrays) but a named tuple element by element
    (~16 us), so records cross the boundary as plain tuples, built by name on this side
    (:class:`CourseState` etc.) and rebuilt by name on the other (``CourseState(*state)``)."""
    return tuple(record)


class _Scratch(NamedTuple):
    """Work arrays of one pass, reused for every patient."""

    occ: NDArray[np.float64]  # (N,) occupancy
    soil: NDArray[np.float64]  # (N,) soil, wounds scaled by their inflammation
    gain: NDArray[np.float64]  # (N, K) newborns that switched
    entering: NDArray[np.float64]  # (K,) cells released into the blood
    mu_ks: NDArray[np.float64]  # (K, S) switch rates per division
    mu_k: NDArray[np.float64]  # (K,) their sum, capped at 1
    to_s: NDArray[np.float64]  # (S,)
    weights: NDArray[np.float64]  # (D,)
    settle: NDArray[np.float64]  # (D,)
    share: NDArray[np.float64]  # (D,)
    arrived: NDArray[np.float64]  # (D,)


@JIT_INLINE
def _switch_table(switch_rates, factor, mu_ks, mu_k):  # pragma: no cover - compiled
    """Per clone state k: the rate per division of each switch it lacks (``mu_ks (K, S)``) and their
    sum, capped at 1 (``mu_k (K,)``), for a patient whose switch rates are scaled by ``factor``."""
    n_k, n_s = mu_ks.shape
    for k in range(n_k):
        tot = 0.0
        for s in range(n_s):
            mu_ks[k, s] = 0.0 if (k >> s) & 1 else switch_rates[s] * factor
            tot += mu_ks[k, s]
        mu_k[k] = min(tot, 1.0)


# Every process below is a function of one patient ``p`` with the same parameters: the bit
# generator and the draw tally, the patient's row, the state, the patient tables, the step tables,
# the step's constants ``c`` (an :data:`ADVANCE_RECORD`) and the pass's work arrays ``w``.


@JIT_INLINE
def _grow(bitgen, tally, p, s, pt, tb, c, w):  # pragma: no cover - compiled
    """Process 1: births and deaths of every occupied entry; newborns that switch go to their subclone.
    ``w.occ`` holds the occupancy before the step on entry and after growth on return; death and
    survival probabilities come from :func:`static_rates` except in wounds."""
    cells_p, traits_p, prolif_p = s.cells[p], pt.traits[p], pt.proliferation[p]
    p_death_p, survival_p = pt.p_death[p], pt.survival[p]
    gain, occ, soil, mu_ks, mu_k, to_s = w.gain, w.occ, w.soil, w.mu_ks, w.mu_k, w.to_s
    is_wound, in_marrow = tb.is_wound, tb.in_marrow
    birth_base, death_base, niche_loss = c.birth_rate_per_day, c.death_rate_per_day, c.niche_loss_death_rate_per_day
    dt, thr, blood = c.dt_days, c.deterministic_threshold_cells, c.blood_node
    i_nd, i_prolif, i_em = c.trait_niche_dependence, c.trait_proliferation, c.trait_em_proliferation
    n_n, n_k = cells_p.shape
    n_s = mu_ks.shape[1]
    gain[:] = 0.0
    for n in range(n_n):
        o = occ[n]
        so = soil[n]
        im = in_marrow[n]
        wound = is_wound[n]
        for k in range(n_k):
            cnk = cells_p[n, k]
            if cnk <= 0.0:
                continue
            supp = _support(traits_p[k, i_nd], so)
            if wound:
                pd, sd = _death_and_survival(death_base, niche_loss, supp, dt)
            else:
                pd, sd = p_death_p[n, k], survival_p[n, k]
            deaths = flow_one(bitgen, cnk, pd, thr, tally)
            births = 0.0
            if n != blood:
                prol = _proliferation(prolif_p * traits_p[k, i_prolif], traits_p[k, i_em], im)
                b = _birth_rate(birth_base, prol, o, supp)
                births = flow_one(bitgen, cnk, _birth_probability_given_survival(b, sd, dt), thr, tally)
            left = births
            if births > 0.0 and n_s > 0:
                # newborns that switch: one flow with the summed rate of the switches the clone
                # lacks, then a multinomial among them (drawn only when some switch)
                moved = flow_one(bitgen, births, mu_k[k], thr, tally)
                if moved > 0.0:
                    split_one(bitgen, moved, mu_ks[k], thr, to_s, tally)
                    for sw in range(n_s):
                        if to_s[sw] > 0.0:
                            gain[n, k | (1 << sw)] += to_s[sw]
                    left -= moved
            cells_p[n, k] = max(cnk - deaths + left, 0.0)
    for n in range(n_n):
        for k in range(n_k):
            cells_p[n, k] += gain[n, k]
        occ[n] = _occupancy(_node_sum(cells_p, n), tb.capacity_cells[n])


@JIT_INLINE
def _release(bitgen, tally, p, s, pt, tb, c, w):  # pragma: no cover - compiled
    """Process 2: egress from marrow and shedding from soft tissue into ``w.entering (K,)`` (the
    uncrowded hazards from :func:`static_rates`, raised by crowding)."""
    cells_p, retained_p, occ, entering = s.cells[p], pt.retained[p], w.occ, w.entering
    crowding_gain, dt, thr = c.crowding_egress_gain, c.dt_days, c.deterministic_threshold_cells
    n_n, n_k = cells_p.shape
    entering[:] = 0.0
    for n in range(n_n):
        base = tb.release_rate_per_day[n]
        if base <= 0.0:
            continue
        for k in range(n_k):
            cnk = cells_p[n, k]
            if cnk <= 0.0:
                continue
            rate = _crowded_release(retained_p[n, k], occ[n], crowding_gain)
            out = flow_one(bitgen, cnk, _event_probability(rate, dt), thr, tally)
            cells_p[n, k] = cnk - out
            entering[k] += out


@JIT_INLINE
def _resistant_cells(cells_p, traits_p, n, i_sens):  # pragma: no cover - compiled
    """Cells of compartment ``n`` in clone states less drug-sensitive than the founder."""
    tot = 0.0
    for k in range(cells_p.shape[1]):
        if traits_p[k, i_sens] < 1.0:
            tot += cells_p[n, k]
    return tot


@JIT_INLINE
def _extend(bitgen, tally, p, s, pt, tb, c, w):  # pragma: no cover - compiled
    """Process 3: marrow sites above the occupancy threshold break their cortex (a hazard); cells of
    breached sites spill into the paraskeletal compartment beside them."""
    cells_p, disrupted_p, last_local_p, occ = s.cells[p], s.disrupted[p], s.last_local[p], w.occ
    ps_nodes, ps_marrow = tb.ps_nodes, tb.ps_marrow
    disruption_occ, disruption_rate = c.cortical_disruption_occupancy, c.cortical_disruption_rate_per_day
    traits_p, i_sens = pt.traits[p], c.trait_drug_sensitivity
    focal_cells, focal_rate = c.focal_breach_cells, c.focal_breach_rate_per_day
    treated = s.status[p] == c.status_followed and focal_rate > 0.0  # diagnosed, so under therapy
    dt, p_spill, thr = c.dt_days, c.p_spill_per_step, c.deterministic_threshold_cells
    n_k = cells_p.shape[1]
    last_local_p[:, :] = 0.0
    for i in range(ps_nodes.size):
        m = ps_marrow[i]
        if not disrupted_p[m]:
            hz = _disruption_rate(occ[m], disruption_occ, disruption_rate)
            if treated:  # resistant clones regrow as focal lesions
                hz += _focal_breach_rate(_resistant_cells(cells_p, traits_p, m, i_sens), focal_cells, focal_rate)
            if hz > 0.0:
                tally.uniform += 1
                if uniform(bitgen) < _event_probability(hz, dt):
                    disrupted_p[m] = True
        if not disrupted_p[m]:
            continue
        ps = ps_nodes[i]
        for k in range(n_k):
            cmk = cells_p[m, k]
            if cmk <= 0.0:
                continue
            moved = flow_one(bitgen, cmk, p_spill, thr, tally)
            cells_p[m, k] = cmk - moved
            cells_p[ps, k] += moved
            last_local_p[ps, k] = moved


@JIT_INLINE
def _circulate(bitgen, tally, p, s, pt, tb, c, w):  # pragma: no cover - compiled
    """Process 4: death in the blood, arrest by destination, engraftment (marrow) or colonisation."""
    cells_p, last_haem_p, inflammation_p = s.cells[p], s.last_haem[p], s.inflammation[p]
    homing_p, traits_p = pt.homing[p], pt.traits[p]
    dest, dest_marrow = tb.dest, tb.dest_marrow
    entering, weights, settle, share, arrived, soil = w.entering, w.weights, w.settle, w.share, w.arrived, w.soil
    p_arrest, p_die_rest = c.p_arrest_per_step, c.p_die_in_blood_per_step
    thr, blood, i_nd = c.deterministic_threshold_cells, c.blood_node, c.trait_niche_dependence
    n_k = cells_p.shape[1]
    n_d = dest.size
    last_haem_p[:, :] = 0.0
    for k in range(n_k):
        b = cells_p[blood, k] + entering[k]
        if b <= 0.0:
            continue
        arrest = flow_one(bitgen, b, p_arrest, thr, tally)
        b -= arrest
        b -= flow_one(bitgen, b, p_die_rest, thr, tally)
        cells_p[blood, k] = b
        if arrest <= 0.0:
            continue
        # each arrested cell settles at one destination j with probability (w_j / W) x s_j
        # (s_j: engraftment in marrow, colonisation elsewhere) or dies: a multinomial drawn as
        # the number settling in marrow, then in other tissue, each shared among its sites
        p_marrow, p_tissue = _settle_probabilities(
            homing_p[k], inflammation_p, traits_p[k, i_nd], soil, tb, c, weights, settle
        )
        if p_marrow <= 0.0 and p_tissue <= 0.0:
            continue
        left = arrest
        rest = 1.0
        for g in range(2):
            p_g = p_marrow if g == 0 else p_tissue
            q = min(p_g / rest, 1.0) if rest > 0.0 else 0.0
            n_g = flow_one(bitgen, left, q, thr, tally)
            rest -= p_g
            if n_g <= 0.0:
                continue
            left -= n_g
            for j in range(n_d):
                share[j] = settle[j] if dest_marrow[j] == (g == 0) else 0.0
            split_one(bitgen, n_g, share, thr, arrived, tally)
            for j in range(n_d):
                if arrived[j] > 0.0:
                    cells_p[dest[j], k] += arrived[j]
                    last_haem_p[dest[j], k] = arrived[j]


@JIT_INLINE
def _kill_probabilities(node_kill, efficacy_p, traits_p, i_sens, dt, kill_p):  # pragma: no cover - compiled
    """Per-step kill probability (N, K) of one patient under a regimen (``node_kill``: its hazard per
    node) at the patient's efficacy, per clone sensitivity; 0 where the regimen does not reach."""
    n_n, n_k = kill_p.shape
    for n in range(n_n):
        kn = node_kill[n]
        for k in range(n_k):
            kill_p[n, k] = _event_probability(_kill_rate(kn, efficacy_p, traits_p[k, i_sens]), dt) if kn > 0.0 else 0.0


@JIT_INLINE
def _treat(bitgen, tally, p, s, pt, tb, c, w):  # pragma: no cover - compiled
    """Process 5: kill by the patient's regimen, from its per-step probabilities, tabled until the
    regimen or the efficacy changes (:func:`_kill_probabilities`)."""
    r = s.regimen[p]
    if r == tb.kill_rate_per_day.shape[0] - 1:  # untreated
        return
    node_kill, kill_p = tb.kill_rate_per_day[r], s.kill_prob[p]
    if s.kill_regimen[p] != r or s.kill_efficacy[p] != s.efficacy[p]:
        _kill_probabilities(node_kill, s.efficacy[p], pt.traits[p], c.trait_drug_sensitivity, c.dt_days, kill_p)
        s.kill_regimen[p], s.kill_efficacy[p] = r, s.efficacy[p]
    cells_p, thr = s.cells[p], c.deterministic_threshold_cells
    n_n, n_k = cells_p.shape
    for n in range(n_n):
        if node_kill[n] <= 0.0:
            continue
        for k in range(n_k):
            cnk = cells_p[n, k]
            if cnk <= 0.0:
                continue
            cells_p[n, k] = cnk - flow_one(bitgen, cnk, kill_p[n, k], thr, tally)


@JIT_INLINE
def _record_onset(t, nodes, flow_p, route, onset_p, route_p):  # pragma: no cover - compiled
    """Book the first seeding (>= 1 cell arrived this step) of a lesion at ``nodes`` and its route."""
    n_k = flow_p.shape[1]
    for i in range(nodes.size):
        n = nodes[i]
        seeded = 0.0
        for k in range(n_k):
            seeded += flow_p[n, k]
        if seeded >= 1.0 and np.isnan(onset_p[n]):
            onset_p[n] = t
            route_p[n] = route


@JIT_INLINE
def _book_lesions(cells_p, extinction, onset_p, route_p, detectable_p, node_total_p):  # pragma: no cover
    """Remove populations below ``extinction`` cells, total each node, and forget a lesion that died
    out before it was ever seen (it was never a lesion)."""
    n_n, n_k = cells_p.shape
    for n in range(n_n):
        for k in range(n_k):
            if cells_p[n, k] < extinction:
                cells_p[n, k] = 0.0
        tot = _node_sum(cells_p, n)
        node_total_p[n] = tot
        if tot == 0.0 and not np.isnan(onset_p[n]) and np.isnan(detectable_p[n]):
            onset_p[n] = np.nan
            route_p[n] = 0


def scratch(n_nodes: int, n_clones: int, n_switches: int, n_dest: int) -> _Scratch:
    """The work arrays of an exact pass (:class:`_Scratch`), fresh (allocated outside the compiled
    pass, which runs without numba's reference counting; a block keeps them: :func:`scratch_for`)."""
    n_n, n_k, n_s, n_d = n_nodes, n_clones, n_switches, n_dest
    return _Scratch(
        np.empty(n_n),
        np.empty(n_n),
        np.empty((n_n, n_k)),
        np.empty(n_k),
        np.zeros((n_k, n_s)),
        np.zeros(n_k),
        np.zeros(n_s),
        np.empty(n_d),
        np.empty(n_d),
        np.empty(n_d),
        np.empty(n_d),
    )


def scratch_for(state, tables) -> _Scratch:
    """:func:`scratch` sized for the block ``state`` and its ``tables`` (as :func:`advance` takes
    them). A block may keep it and pass it to every :func:`advance`: the pass writes each work array
    before it reads it (the exact blocks' fingerprints are the same with fresh and with kept arrays)."""
    st, tb = CourseState(*state), StepTables(*tables)
    _, n_n, n_k = st.cells.shape
    return scratch(n_n, n_k, tb.switch_rate_per_division.size, tb.dest.size)


def advance(rng, counts, t, state, patients, tables, k, w: _Scratch | None = None) -> None:
    """Processes 1-5 for every living patient, in order, then the lesions' bookkeeping (onset and
    route of new lesions, extinction), at time ``t`` (days).  ``state``, ``patients`` and ``tables``
    are a :class:`CourseState`, :class:`PatientTables` and :class:`StepTables` passed as plain tuples
    (:func:`plain`) and read here by field name; ``k`` the step's constants (a one-element
    :data:`ADVANCE_RECORD` array, read by field name); ``w`` the work arrays (:func:`scratch_for`: a
    block keeps its own), fresh ones if omitted.  ``s.node_total (P, N)`` holds
    each compartment's cells before the step (:func:`node_totals`, or the previous step's) and
    receives them after it; nothing outside this pass changes the cells, and the cells of a patient
    whose course has ended do not change.  ``counts`` is a one-element :data:`emdsim.engine.flows.TALLY`
    array (:func:`emdsim.engine.flows.tally_record`).

    The compiled pass (:func:`_advance`) counts no references (``_nrt=False``, as the hybrid pass:
    docs/ARCHITECTURE.md, "The compiled boundary"); its work arrays come from here."""
    if w is None:
        w = scratch_for(state, tables)
    _advance(rng, counts, t, state, patients, tables, k, w)


@JIT_NO_NRT
def _advance(rng, counts, t, state, patients, tables, k, w):  # pragma: no cover - compiled
    """:func:`advance`, compiled, with the work arrays ``w`` (:func:`scratch`)."""
    s, pt, tb, c = CourseState(*state), PatientTables(*patients), StepTables(*tables), k[0]
    bitgen, tally = rng.bit_generator, counts[0]
    n_p, n_n, n_k = s.cells.shape
    for p in range(n_p):
        if s.status[p] > c.status_followed:  # the course has ended: frozen
            continue
        for n in range(n_n):  # wounds only support growth while inflamed
            w.soil[n] = tb.soil[n] * s.inflammation[p, n] if tb.is_wound[n] else tb.soil[n]
            w.occ[n] = _occupancy(s.node_total[p, n], tb.capacity_cells[n])
        _switch_table(tb.switch_rate_per_division, pt.switch_factor[p], w.mu_ks, w.mu_k)
        _grow(bitgen, tally, p, s, pt, tb, c, w)  # 1
        _release(bitgen, tally, p, s, pt, tb, c, w)  # 2
        _extend(bitgen, tally, p, s, pt, tb, c, w)  # 3
        _circulate(bitgen, tally, p, s, pt, tb, c, w)  # 4
        _treat(bitgen, tally, p, s, pt, tb, c, w)  # 5
        _record_onset(t, tb.ps_nodes, s.last_local[p], c.route_local, s.lesion_onset[p], s.lesion_route[p])
        _record_onset(t, tb.em_nodes, s.last_haem[p], c.route_haematogenous, s.lesion_onset[p], s.lesion_route[p])
        _book_lesions(
            s.cells[p],
            c.extinction_cells,
            s.lesion_onset[p],
            s.lesion_route[p],
            s.lesion_detectable[p],
            s.node_total[p],
        )


# ---------------------------------------------------------------------------- clinical course
def config_numbers(*sections: type) -> list[tuple[str, type]]:
    """``(name, dtype)`` of every number field of the given configuration sections, by its config
    name (which carries its unit: ``birth_rate_per_day``, ``dt_days``): the part of a constants record
    that comes straight from the configuration.  A field added to one of these sections reaches the
    compiled loops under its own name with no edit here."""
    out = []
    for section in sections:
        hints = typing.get_type_hints(section)
        out += [
            (f.name, np.float64 if hints[f.name] is float else np.int64)
            for f in fields(section)
            if hints[f.name] in (int, float)
        ]
    names = [n for n, _ in out]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:  # pragma: no cover - a schema error caught at import
        raise TypeError(f"config fields {duplicates} appear in two sections of one constants record")
    return out


#: the constants of one step of :func:`advance` and :func:`static_rates`: every number of the growth,
#: spread and sim sections under its config name, then what the engine derives once (per-step
#: probabilities, trait columns, the blood compartment, route and status codes); read by field name
ADVANCE_RECORD = np.dtype(
    config_numbers(GrowthConfig, SpreadConfig, SimConfig)
    + [
        ("p_spill_per_step", np.float64),
        ("p_arrest_per_step", np.float64),
        ("p_die_in_blood_per_step", np.float64),
        ("trait_niche_dependence", np.int64),
        ("trait_proliferation", np.int64),
        ("trait_em_proliferation", np.int64),
        ("trait_drug_sensitivity", np.int64),
        ("blood_node", np.int64),
        ("route_local", np.int64),
        ("route_haematogenous", np.int64),
        ("status_followed", np.int64),
    ]
)
#: the constants of :func:`clinic`: every number of the clinical section under its config name, then
#: those derived from other sections (the imaging threshold of the scenario, durations in days) and
#: the codes it reads (the plan's shape, the status codes); read by field name
CLINIC_RECORD = np.dtype(
    config_numbers(ClinicalConfig)
    + [
        ("detection_threshold_cells", np.float64),
        ("imaging_every_days", np.float64),
        ("line_efficacy_factor", np.float64),
        ("dt_days", np.float64),
        ("max_step_days", np.float64),  # the longest step of a quiet patient (dt_days: no long steps)
        ("step_margin", np.float64),
        ("max_days_to_diagnosis", np.float64),
        ("n_first_line_phases", np.int64),
        ("n_salvage_regimens", np.int64),
        ("untreated_regimen", np.int64),
        ("status_undiagnosed", np.int64),
        ("status_followed", np.int64),
        ("status_dead", np.int64),
        ("status_censored", np.int64),
    ]
)


@JIT_INLINE
def _start_phase(p, r, t, s, tb):  # pragma: no cover - compiled
    """Patient ``p`` starts regimen ``r`` at ``t``; a finite phase ends after its duration."""
    s.regimen[p] = r
    s.phase_end[p] = t + tb.phase_days[r] if tb.phase_days[r] > 0 else np.inf


@JIT_INLINE
def _next_first_line(p, t, s, pt, tb, c):  # pragma: no cover - compiled
    """Patient ``p`` moves to its next first-line phase (off treatment after the last); a phase
    that makes a wound (a catheter, a procedure) opens it."""
    s.phase_pos[p] += 1
    pos = s.phase_pos[p]
    if pos < c.n_first_line_phases:
        _start_phase(p, pos, t, s, tb)
        node = tb.phase_wound_node[pos]
        if node >= 0 and pt.phase_wound[p, pos]:
            s.inflammation[p, node] = 1.0
            if np.isnan(s.wound_opened[p, node]):
                s.wound_opened[p, node] = t
    else:
        s.regimen[p] = c.untreated_regimen
        s.phase_end[p] = np.inf


#: ``phase_pos`` of a patient who receives no further therapy (attrition after the last line)
OFF_THERAPY = -2


@JIT_INLINE
def _look(p, t, image, s, pt, tb, c, seen):  # pragma: no cover - compiled
    """Which soft-tissue lesions of patient ``p`` are seen at ``t``: those large enough to cause
    symptoms always, and when ``image`` (baseline, restaging at progression, surveillance) those
    above the modality's threshold scaled by the site's visibility to this patient; the first time a
    lesion is seen is recorded.  Fills ``seen (N,)``; returns whether any lesion is seen."""
    node_total_p, visibility_p, soft_tissue = s.node_total[p], pt.visibility[p], tb.soft_tissue
    symptomatic, detection = tb.symptomatic_cells, c.detection_threshold_cells
    anything = False
    for n in range(node_total_p.size):
        x = node_total_p[n]
        seen[n] = soft_tissue[n] and x > 0.0 and (x >= symptomatic[n] or (image and x >= detection * visibility_p[n]))
        if seen[n]:
            anything = True
            if np.isnan(s.lesion_detectable[p, n]):
                s.lesion_detectable[p, n] = t
    return anything


@JIT_INLINE
def _treat_locally(p, s, pt, seen):  # pragma: no cover - compiled
    """Local therapy (radiotherapy or excision) of diagnosed patient ``p``: each lesion ``seen`` now at
    a site where the patient's lesions are treated locally (``pt.local_therapy``), and not treated
    before, is cleared (every clone of the compartment; its cells leave the patient's total). A lesion
    that grows again there (cells left behind, or new arrivals) is not treated a second time.
    Returns whether a lesion seen now is left (not cleared)."""
    left = False
    for n in range(seen.size):
        if not seen[n]:
            continue
        if not pt.local_therapy[p, n] or s.treated_locally[p, n]:
            left = True
        else:
            s.treated_locally[p, n] = True
            s.total_cells[p] -= s.node_total[p, n]
            s.node_total[p, n] = 0.0
            s.node_upper[p, n] = 0.0
            s.node_lower[p, n] = 0.0
            for kk in range(s.cells.shape[2]):
                s.cells[p, n, kk] = 0.0
    return left


@JIT_INLINE
def _forget_after(p, t_end, s, c):  # pragma: no cover - compiled
    """Patient ``p`` died at ``t_end``, within a long step whose compartments were advanced to its
    end: forget what they did after the death, as the weekly course never simulates it (a lesion
    whose first cells arrived in a later ``dt_days`` step, a sighting at the step's end)."""
    onset_p, detectable_p = s.lesion_onset[p], s.lesion_detectable[p]
    late = t_end + 0.5 * c.dt_days  # onsets fall at the ends of dt_days steps
    for n in range(onset_p.size):
        if onset_p[n] > late:
            onset_p[n] = np.nan
            s.lesion_route[p, n] = 0
        if detectable_p[n] > late:
            detectable_p[n] = np.nan


@JIT_INLINE
def _may_progress(x, upper, lower, nadir, grow):  # pragma: no cover - compiled
    """Whether cells ``x`` now, predicted at most ``upper`` and at least ``lower`` over a step (its
    growing clones alone grown, its shrinking ones alone shrunk), may rise to ``grow`` times their
    running minimum (``nadir`` before the step) at some point of the step. The shrinking clones only
    lower the cells, so the cells rise above any earlier value in the step by at most what the
    growing clones add, ``upper - x``; progression needs that to reach (``grow`` - 1) times the
    lowest value, at least ``lower``, or the cells to reach ``grow`` times the old nadir."""
    return upper >= grow * nadir or upper - x >= (grow - 1.0) * lower


@JIT_INLINE
def _surveillance_may_treat(p, s, pt, tb, c):  # pragma: no cover - compiled
    """Whether surveillance imaging within patient ``p``'s next long step might find a lesion that
    local therapy would clear (:func:`_treat_locally`): a soft-tissue compartment where the patient's
    lesions are treated locally, not yet treated, whose predicted cells at most (``s.node_upper``)
    reach the modality's threshold there. Only then does a surveillance time end a long step; any
    other sighting changes nothing but its record, which :func:`_sight_within` dates at the end of
    the ``dt_days`` step that holds the imaging, as the weekly course does (so, without local
    therapy, a surveillance schedule leaves the course as it is, to the byte)."""
    detection = c.detection_threshold_cells
    for n in range(s.node_upper.shape[1]):
        if (
            tb.soft_tissue[n]
            and pt.local_therapy[p, n]
            and not s.treated_locally[p, n]
            and s.node_upper[p, n] >= detection * pt.visibility[p, n]
        ):
            return True
    return False


@JIT_INLINE
def _sight_within(p, t, s, pt, tb, c):  # pragma: no cover - compiled
    """Surveillance imaging of patient ``p`` at the ``dt_days`` step ends inside the long step that
    ends at ``t`` (all but its last, which :func:`clinic` images itself): the first sighting of each
    soft-tissue lesion above the modality's threshold at one of them, with the compartment's cells
    taken between the step's two ends as exponential (``s.node_start`` to ``s.node_total``). A
    lesion that began within the step is not seen before its end (a few cells, far below any
    threshold), and none can become symptomatic within it (:func:`_next_step`). Only the record
    changes (:func:`_surveillance_may_treat`)."""
    dt = c.dt_days
    every, t_dx = c.imaging_every_days, s.t_dx[p]
    n_sub = int(np.round(s.step_days[p] / dt))
    t0 = t - n_sub * dt
    start_p, end_p, detectable_p = s.node_start[p], s.node_total[p], s.lesion_detectable[p]
    for i in range(1, n_sub):
        ti = t0 + i * dt
        if not np.floor((ti - t_dx) / every) > np.floor((ti - dt - t_dx) / every):
            continue
        f = i / n_sub
        for n in range(end_p.size):
            x0, x1 = start_p[n], end_p[n]
            if not tb.soft_tissue[n] or x0 <= 0.0 or x1 <= 0.0 or not np.isnan(detectable_p[n]):
                continue
            if x0 * (x1 / x0) ** f >= c.detection_threshold_cells * pt.visibility[p, n]:
                detectable_p[n] = ti


@JIT_INLINE
def _next_step(p, t, s, pt, tb, c):  # pragma: no cover - compiled
    """The length of patient ``p``'s next step after ``t``, days: ``dt_days``, or as many ``dt_days``
    (up to ``max_step_days``) as pass without missing a clinical event at one of the ``dt_days``
    steps within it. Nothing scheduled may fall before the step's last ``dt_days`` (a phase end,
    surveillance imaging, the end of follow-up or of the diagnosis window; a surgery, before the
    step ends), and no threshold the clinical course tests may be reachable
    by the compartments' predicted course over ``max_step_days`` (``s.node_upper``, ``s.node_lower``:
    every clone at ``step_margin`` times its present net rate): the marrow burden of diagnosis, a
    symptomatic or lethal lesion, progression from the nadir (of all cells, or of a symptomatic lesion;
    the nadir predicted as low as the shrinking clones can take it). An event at the step's end is
    taken at its right time. A healing wound does not hold the patient on ``dt_days`` steps (until
    2026-12-02 it did, for ~10 half-lives): a long step takes its inflammation through its weeks
    (:func:`emdsim.engine.hybrid._step_inflammation`, from ``s.inflammation_start``)."""
    dt = c.dt_days
    # the dt_days steps before the first scheduled trigger (a trigger at time e falls at the first
    # step end at or after e: a step of m dt_days after t is fine while e > t + (m - 1) dt)
    room = np.round(c.max_step_days / dt)
    room = min(room, np.ceil((s.phase_end[p] - t) / dt - 1e-9))
    undiagnosed = s.status[p] == c.status_undiagnosed
    if undiagnosed:
        room = min(room, np.ceil((c.max_days_to_diagnosis - t) / dt - 1e-9))
    else:
        t_dx = s.t_dx[p]
        room = min(room, np.ceil((t_dx + pt.followup_days[p] - t) / dt - 1e-9))
        every = c.imaging_every_days
        if every > 0.0 and _surveillance_may_treat(p, s, pt, tb, c):
            room = min(room, np.ceil((t_dx + (np.floor((t - t_dx) / every) + 1.0) * every - t) / dt - 1e-9))
        for j in range(pt.surgery_day.shape[1]):
            e = t_dx + pt.surgery_day[p, j]
            if e > t:  # (NaN, none, compares False) the wound opens before the step that holds it
                room = min(room, np.floor((e - t) / dt - 1e-9))
    if room < 2.0:
        return dt
    node_total_p, upper_p, lower_p = s.node_total[p], s.node_upper[p], s.node_lower[p]
    grow = 1.0 + c.progression_rise_fraction
    treated = not undiagnosed and s.phase_pos[p] != OFF_THERAPY
    marrow = 0.0
    upper = 0.0
    lower = 0.0
    for n in range(node_total_p.size):
        x = node_total_p[n]
        if x <= 0.0:
            continue
        y = upper_p[n]
        upper += y
        lower += lower_p[n]
        if tb.in_marrow[n] > 0.0:
            marrow += y
        if tb.lesion_death_rate_per_day[n] > 0.0 and x < c.lesion_lethal_cells <= y:
            return dt
        if tb.soft_tissue[n]:
            if x < tb.symptomatic_cells[n] <= y:  # a lesion becomes symptomatic
                return dt
            if treated and x >= tb.symptomatic_cells[n] and _may_progress(x, y, lower_p[n], s.lesion_nadir[p, n], grow):
                return dt
    if undiagnosed and marrow >= c.diagnosis_marrow_cells:
        return dt
    if treated and _may_progress(s.total_cells[p], upper, lower, s.nadir[p], grow):
        if upper - min(s.nadir[p], lower) >= c.progression_min_cells:
            return dt
    return room * dt


def clinic(rng, counts, t, state, patients, tables, cl) -> None:
    """Process 6 for every patient at time ``t`` (days), in this order: diagnosis when the marrow
    burden crosses its threshold (first-line treatment starts), the end of finite phases,
    progression (an IMWG-like rise from the nadir or a growing symptomatic soft-tissue lesion: the
    next line, or no further therapy once the patient's ``max_lines`` are spent), imaging
    (:func:`_look`: at diagnosis, at each progression and on the scenario's surveillance schedule;
    symptomatic lesions are seen at any time), local therapy of what is seen (:func:`_treat_locally`:
    no draw; whom it treats is a patient's baseline), the nadirs, death (Gompertz background + tumour burden
    + lesions of a lethal size at their sites, whatever imaging sees; one uniform per living
    patient) and censoring (end of follow-up, or never diagnosed within the cap).  A patient whose
    course had ended before the step is skipped: its compartments are frozen, so nothing of this
    would change.  Without follow-up (``followup_days`` 0) a course ends at diagnosis, censored,
    before any of the rest: no treatment starts and no death is drawn.

    ``state``, ``patients`` and ``tables`` are as for :func:`advance` (``state.total_cells`` and
    ``state.marrow_cells`` summed before the call); ``rng`` the block's Generator (exact engine) or
    the patients' streams as records (hybrid engine, :func:`emdsim.engine.streams.stream_records`);
    ``cl`` the clinical constants, a one-element
    array of :data:`CLINIC_RECORD` read by field name.

    The compiled loop (:func:`_clinic`) runs without numba's reference counting, as the passes do:
    with it, each call of an inlined function that takes the state's tuples counted every array in
    them, ~1.4 % of a hybrid run's CPU (perf, 2026-12-03); its one work array is allocated here."""
    n_compartments = state[_CELLS].shape[1]
    _clinic(rng, counts, t, state, patients, tables, cl, np.empty(n_compartments, dtype=np.bool_))


@JIT_NO_NRT
def _clinic(rng, counts, t, state, patients, tables, cl, seen):  # pragma: no cover - compiled
    """:func:`clinic`, compiled; ``seen (N,)`` work space (which lesions a look sees)."""
    s, pt, tb, c = CourseState(*state), PatientTables(*patients), StepTables(*tables), cl[0]
    dx_cells = c.diagnosis_marrow_cells
    rise, min_rise_cells = c.progression_rise_fraction, c.progression_min_cells
    symptomatic_cells, lethal_lesion = tb.symptomatic_cells, c.lesion_lethal_cells
    min_days_on_line, line_factor = c.min_days_on_line, c.line_efficacy_factor
    gompertz_a, gompertz_b = c.gompertz_a_per_year, c.gompertz_b_per_year
    tumour_rate, lethal_cells = c.tumour_death_rate_per_day, c.lethal_burden_cells
    tumour_exponent = c.tumour_death_exponent
    dx_cap_days = c.max_days_to_diagnosis
    every = c.imaging_every_days
    n_first, n_salvage = c.n_first_line_phases, c.n_salvage_regimens
    undiagnosed, followed, dead, censored = c.status_undiagnosed, c.status_followed, c.status_dead, c.status_censored
    node_total, total, marrow, status = s.node_total, s.total_cells, s.marrow_cells, s.status
    soft_tissue = tb.soft_tissue
    tally = counts[0]
    n_p, n_n = node_total.shape
    grow = 1.0 + rise
    age_offset = t / DAYS_PER_YEAR
    for p in range(n_p):
        if status[p] > followed:
            continue
        if s.next_days[p] > t + 0.5 * c.dt_days:  # within a long step: advanced at its end
            continue
        dt = s.step_days[p]
        image, diagnosed, first_progression, salvage_starts, new_line = False, False, False, False, False
        if status[p] == undiagnosed and marrow[p] >= dx_cells:
            status[p] = followed
            diagnosed, image = True, True
            s.t_dx[p] = t
            s.burden_at_dx[p] = total[p]
            s.nadir[p] = total[p]
            for n in range(n_n):
                s.lesion_nadir[p, n] = node_total[p, n]
            s.line_start[p] = t
            if pt.followup_days[p] <= 0.0:  # no follow-up (sim.followup_years=0): the course stops at diagnosis
                _look(p, t, True, s, pt, tb, c, seen)
                for n in range(n_n):
                    s.dx_sites[p, n] = seen[n]
                status[p] = censored
                s.t_end[p] = t
                continue
            _next_first_line(p, t, s, pt, tb, c)
        if status[p] == followed:
            if s.phase_end[p] <= t:
                if s.phase_pos[p] >= 0:
                    _next_first_line(p, t, s, pt, tb, c)
                else:
                    s.regimen[p] = c.untreated_regimen
                    s.phase_end[p] = np.inf
            if s.phase_pos[p] != OFF_THERAPY and t - s.line_start[p] >= min_days_on_line:
                progressed = total[p] >= s.nadir[p] * grow and total[p] - s.nadir[p] >= min_rise_cells
                n = 0
                while not progressed and n < n_n:
                    progressed = (
                        node_total[p, n] >= symptomatic_cells[n]
                        and node_total[p, n] >= s.lesion_nadir[p, n] * grow
                        and soft_tissue[n]
                    )
                    n += 1
                if progressed:
                    image = True  # restaging
                    if np.isnan(s.t_prog[p]):
                        s.t_prog[p] = t
                        first_progression = True
                    if s.line[p] == 1:  # the first salvage line ends
                        s.salvage_end[p] = t
                    s.line_start[p] = t
                    if s.line[p] + 1 < pt.max_lines[p]:
                        s.line[p] += 1
                        s.phase_pos[p] = -1
                        s.efficacy[p] = line_factor ** float(s.line[p])
                        _start_phase(p, n_first + min(s.line[p] - 1, n_salvage - 1), t, s, tb)
                        salvage_starts = s.line[p] == 1
                        new_line = True
                    else:  # attrition: no further therapy
                        s.phase_pos[p] = OFF_THERAPY
                        s.regimen[p] = c.untreated_regimen
                        s.phase_end[p] = np.inf
                    s.nadir[p] = total[p]
                    for n in range(n_n):
                        s.lesion_nadir[p, n] = node_total[p, n]
            if every > 0.0:
                # surveillance: at the dt_days step that ends now, and at those before it within a long step
                if np.floor((t - s.t_dx[p]) / every) > np.floor((t - c.dt_days - s.t_dx[p]) / every):
                    image = True
                if dt > 1.5 * c.dt_days and not diagnosed:
                    _sight_within(p, t, s, pt, tb, c)
        anything = _look(p, t, image, s, pt, tb, c, seen)
        if diagnosed:
            for n in range(n_n):
                s.dx_sites[p, n] = seen[n]
        if first_progression:
            for n in range(n_n):
                s.relapse_sites[p, n] = seen[n]
        if new_line and anything and np.isnan(s.emd_line_start[p]):
            s.emd_line_start[p] = t
        left = anything  # a lesion seen now and left for the next line (not cleared by local therapy)
        if anything and status[p] == followed:
            left = _treat_locally(p, s, pt, seen)
        if status[p] == followed and s.line[p] == 1 and s.phase_pos[p] != OFF_THERAPY:
            # on the first salvage line: its baseline at the start, then its best
            soft = 0.0
            for n in range(n_n):
                if soft_tissue[n]:
                    soft += node_total[p, n]
            if salvage_starts:
                s.salvage_start_total[p], s.salvage_best_total[p] = total[p], total[p]
                s.salvage_start_soft[p], s.salvage_best_soft[p] = soft, soft
                s.salvage_with_emd[p] = left
            s.salvage_best_total[p] = min(s.salvage_best_total[p], total[p])
            s.salvage_best_soft[p] = min(s.salvage_best_soft[p], soft)
        s.nadir[p] = min(s.nadir[p], total[p])
        for n in range(n_n):
            s.lesion_nadir[p, n] = min(s.lesion_nadir[p, n], node_total[p, n])
        # death (the patient is living here)
        lethal = 0.0
        for n in range(n_n):
            if node_total[p, n] >= lethal_lesion:
                lethal += tb.lesion_death_rate_per_day[n]
        tumour = tumour_rate * (total[p] / lethal_cells) ** tumour_exponent
        n_sub = np.round(dt / c.dt_days)
        if n_sub > 1.5 and s.total_start[p] > 0.0 and total[p] > 0.0:
            # a long step: the burden's hazard at the ends of its dt_days steps, as the exact course
            # takes it, with the burden exponential between the step's two ends
            tumour = 0.0
            for i in range(1, int(n_sub) + 1):
                x = s.total_start[p] * (total[p] / s.total_start[p]) ** (i / n_sub)
                tumour += tumour_rate * (x / lethal_cells) ** tumour_exponent / n_sub
        h = (
            gompertz_a * np.exp(gompertz_b * (pt.age_years[p] + age_offset)) / DAYS_PER_YEAR
            + tumour
            + lethal
            + (c.off_therapy_death_rate_per_day if s.phase_pos[p] == OFF_THERAPY else 0.0)
        )
        tally.uniform += 1
        u = uniform(patient_source(rng, p))
        if u < _event_probability(h, dt):
            status[p] = dead
            t_death = t
            if n_sub > 1.5:  # a long step: the dt_days step the same uniform dies in (inversion)
                j = min(np.floor(-np.log1p(-u) / (h * c.dt_days)) + 1.0, n_sub)
                t_death = t - (n_sub - j) * c.dt_days
                _forget_after(p, t_death, s, c)
            s.t_death[p] = t_death
            s.t_end[p] = t_death
        if (status[p] == followed and t >= s.t_dx[p] + pt.followup_days[p]) or (
            status[p] == undiagnosed and t >= dx_cap_days
        ):
            status[p] = censored
            s.t_end[p] = t
        if status[p] <= followed:  # the patient's next step: long while it is quiet
            nxt = c.dt_days
            if c.max_step_days > 1.5 * c.dt_days:
                nxt = _next_step(p, t, s, pt, tb, c)
            s.step_days[p] = nxt
            s.next_days[p] = t + nxt
            s.total_start[p] = total[p]
            for n in range(n_n):
                s.node_start[p, n] = node_total[p, n]
                s.inflammation_start[p, n] = s.inflammation[p, n]
