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
:mod:`emdsim.niches`, :mod:`emdsim.spread` and :mod:`emdsim.treatment` — the same source that
numpy code calls on arrays, compiled here for scalars — and every flow is realised by
:func:`emdsim.rates.flow_one` / :func:`emdsim.rates.split_one`.  Loops touch only occupied entries.
"""

from __future__ import annotations

import numpy as np
from numba.np.random.generator_core import next_double

from . import niches, spread, treatment
from ._jit import JIT, JIT_INLINE
from .rates import birth_probability_given_survival, event_probability, flow_one, split_one, survival_probability
from .units import DAYS_PER_YEAR

__all__ = ["CLINIC_CONSTANTS", "advance", "clinic", "node_totals", "static_rates"]

_support = JIT(niches.support)
_proliferation = JIT(niches.proliferation)
_birth_rate = JIT(niches.birth_rate)
_death_rate = JIT(niches.death_rate)
_retained_release = JIT(niches.retained_release)
_crowded_release = JIT(niches.crowded_release)
_disruption_rate = JIT(spread.disruption_rate)
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
    """Occupancy of a node (total / capacity; 0 without capacity), as :func:`emdsim.niches.occupancy`."""
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


@JIT
def static_rates(
    traits, adhesion, soil, release_base, death_base, niche_loss, dt, i_nd, p_death, survival, retained
):  # pragma: no cover - compiled
    """Per patient, compartment and clone state (P, N, K), what does not change during a course:
    the per-step death and survival probabilities on the compartment's own soil (``soil``; a wound's
    changes with its inflammation, so :func:`advance` computes those per step) and the uncrowded
    egress hazard (:func:`emdsim.niches.retained_release`)."""
    n_p, n_n, n_k = p_death.shape
    for p in range(n_p):
        for n in range(n_n):
            for k in range(n_k):
                supp = _support(traits[p, k, i_nd], soil[n])
                p_death[p, n, k], survival[p, n, k] = _death_and_survival(death_base, niche_loss, supp, dt)
                retained[p, n, k] = _retained_release(release_base[n], adhesion[p, n, k])


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


@JIT_INLINE
def _grow(
    bitgen,
    tally,
    cells_p,
    gain,
    traits_p,
    prolif_p,
    soil,
    is_wound,
    p_death_p,
    survival_p,
    occ,
    capacity,
    in_marrow,
    blood,
    birth_base,
    death_base,
    niche_loss,
    dt,
    thr,
    mu_ks,
    mu_k,
    to_s,
    i_nd,
    i_prolif,
    i_em,
):  # pragma: no cover
    """Process 1: births and deaths of every occupied entry; newborns that switch go to their subclone.
    ``occ`` holds the occupancy before the step on entry and after growth on return; death and
    survival probabilities come from :func:`static_rates` except in wounds."""
    n_n, n_k = cells_p.shape
    n_s = mu_ks.shape[1]
    gain[:] = 0.0
    for n in range(n_n):
        o = occ[n]
        so = soil[n]
        im = in_marrow[n]
        wound = is_wound[n]
        for k in range(n_k):
            c = cells_p[n, k]
            if c <= 0.0:
                continue
            supp = _support(traits_p[k, i_nd], so)
            if wound:
                pd, sd = _death_and_survival(death_base, niche_loss, supp, dt)
            else:
                pd, sd = p_death_p[n, k], survival_p[n, k]
            deaths = flow_one(bitgen, c, pd, thr, tally)
            births = 0.0
            if n != blood:
                prol = _proliferation(prolif_p * traits_p[k, i_prolif], traits_p[k, i_em], im)
                b = _birth_rate(birth_base, prol, o, supp)
                births = flow_one(bitgen, c, _birth_probability_given_survival(b, sd, dt), thr, tally)
            left = births
            if births > 0.0 and n_s > 0:
                # newborns that switch: one flow with the summed rate of the switches the clone
                # lacks, then a multinomial among them (drawn only when some switch)
                moved = flow_one(bitgen, births, mu_k[k], thr, tally)
                if moved > 0.0:
                    split_one(bitgen, moved, mu_ks[k], thr, to_s, tally)
                    for s in range(n_s):
                        if to_s[s] > 0.0:
                            gain[n, k | (1 << s)] += to_s[s]
                    left -= moved
            cells_p[n, k] = max(c - deaths + left, 0.0)
    for n in range(n_n):
        for k in range(n_k):
            cells_p[n, k] += gain[n, k]
        occ[n] = _occupancy(_node_sum(cells_p, n), capacity[n])


@JIT_INLINE
def _release(
    bitgen, tally, cells_p, retained_p, occ, release_base, crowding_gain, dt, thr, entering
):  # pragma: no cover
    """Process 2: egress from marrow and shedding from soft tissue into ``entering (K,)`` (``retained_p``:
    the uncrowded hazards from :func:`static_rates`)."""
    n_n, n_k = cells_p.shape
    entering[:] = 0.0
    for n in range(n_n):
        base = release_base[n]
        if base <= 0.0:
            continue
        for k in range(n_k):
            c = cells_p[n, k]
            if c <= 0.0:
                continue
            rate = _crowded_release(retained_p[n, k], occ[n], crowding_gain)
            out = flow_one(bitgen, c, _event_probability(rate, dt), thr, tally)
            cells_p[n, k] = c - out
            entering[k] += out


@JIT_INLINE
def _extend(
    bitgen,
    tally,
    cells_p,
    disrupted_p,
    occ,
    ps_marrow,
    ps_nodes,
    disruption_occ,
    disruption_rate,
    dt,
    p_spill,
    thr,
    last_local_p,
):  # pragma: no cover
    """Process 3: marrow sites above the occupancy threshold break their cortex (a hazard); cells of
    breached sites spill into the paraskeletal compartment beside them."""
    n_k = cells_p.shape[1]
    last_local_p[:, :] = 0.0
    for i in range(ps_nodes.size):
        m = ps_marrow[i]
        if not disrupted_p[m]:
            hz = _disruption_rate(occ[m], disruption_occ, disruption_rate)
            if hz > 0.0:
                tally.uniform += 1
                if next_double(bitgen) < _event_probability(hz, dt):
                    disrupted_p[m] = True
        if not disrupted_p[m]:
            continue
        ps = ps_nodes[i]
        for k in range(n_k):
            c = cells_p[m, k]
            if c <= 0.0:
                continue
            moved = flow_one(bitgen, c, p_spill, thr, tally)
            cells_p[m, k] = c - moved
            cells_p[ps, k] += moved
            last_local_p[ps, k] = moved


@JIT_INLINE
def _circulate(
    bitgen,
    tally,
    cells_p,
    entering,
    homing_p,
    inflammation_p,
    dest,
    dest_marrow,
    dest_wound,
    soil,
    traits_p,
    i_nd,
    blood,
    p_arrest,
    p_die_rest,
    p_engraft,
    p_col,
    thr,
    last_haem_p,
    weights,
    settle,
    share,
    arrived,
):  # pragma: no cover
    """Process 4: death in the blood, arrest by destination, engraftment (marrow) or colonisation."""
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
        total_w = 0.0
        for j in range(n_d):
            w = homing_p[k, dest[j]]
            if dest_wound[j]:
                w *= inflammation_p[dest[j]]
            weights[j] = w
            total_w += w
        if total_w <= 0.0:
            continue
        # each arrested cell settles at one destination j with probability (w_j / W) x s_j
        # (s_j: engraftment in marrow, colonisation elsewhere) or dies: a multinomial drawn as
        # the number settling in marrow, then in other tissue, each shared among its sites
        d_k = traits_p[k, i_nd]
        p_marrow = 0.0
        p_tissue = 0.0
        for j in range(n_d):
            if dest_marrow[j]:
                s_j = p_engraft
            else:
                s_j = _colonisation_probability(p_col, _support(d_k, soil[dest[j]]))
            settle[j] = weights[j] / total_w * s_j
            if dest_marrow[j]:
                p_marrow += settle[j]
            else:
                p_tissue += settle[j]
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
def _treat(bitgen, tally, cells_p, node_kill, kill_p, thr):  # pragma: no cover
    """Process 5: kill by the current regimen (``node_kill``: its hazard per node; ``kill_p``: the
    per-step probabilities from :func:`_kill_probabilities`)."""
    n_n, n_k = cells_p.shape
    for n in range(n_n):
        if node_kill[n] <= 0.0:
            continue
        for k in range(n_k):
            c = cells_p[n, k]
            if c <= 0.0:
                continue
            cells_p[n, k] = c - flow_one(bitgen, c, kill_p[n, k], thr, tally)


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
    out before it was ever detectable (it was never a lesion)."""
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


@JIT
def advance(
    rng,
    counts,
    alive,
    t,
    cells,
    traits,
    patient_prolif,
    switch_factor,
    p_death,
    survival,
    retained,
    homing,
    inflammation,
    disrupted,
    regimen,
    efficacy,
    kill_table,
    soil_base,
    is_wound,
    capacity,
    in_marrow,
    blood,
    release_base,
    ps_marrow,
    ps_nodes,
    em_nodes,
    dest,
    dest_marrow,
    dest_wound,
    switch_rates,
    k,
    last_local,
    last_haem,
    lesion_onset,
    lesion_route,
    lesion_detectable,
    node_total,
    kill_prob,
    kill_regimen,
    kill_efficacy,
):  # pragma: no cover
    """Processes 1-5 for every living patient, in order, then the lesions' bookkeeping (onset and
    route of new lesions, extinction).  ``node_total (P, N)`` holds each compartment's cells before
    the step (:func:`node_totals`, or the previous step's) and receives them after it; nothing
    outside this pass changes the cells, and a frozen patient's do not change.  ``kill_prob (P, N, K)``
    holds each patient's per-step kill probabilities for the regimen ``kill_regimen`` at the efficacy
    ``kill_efficacy`` (P,), recomputed when the patient's regimen or efficacy differs.  ``counts`` is a
    one-element :data:`emdsim.rates.TALLY` array (:func:`emdsim.rates.tally_record`); ``k`` the
    step's constants, a one-element :data:`ADVANCE_RECORD` array read by field name."""
    c = k[0]
    birth_base, death_base, niche_loss = c.birth_rate_per_day, c.death_rate_per_day, c.niche_loss_death_rate_per_day
    crowding_gain, disruption_occ = c.crowding_egress_gain, c.cortical_disruption_occupancy
    disruption_rate, p_spill = c.cortical_disruption_rate_per_day, c.p_spill_per_step
    p_arrest, p_die_rest = c.p_arrest_per_step, c.p_die_in_blood_per_step
    p_engraft, p_col = c.p_marrow_engraftment, c.p_colonisation
    dt, thr, extinction = c.dt_days, c.deterministic_threshold_cells, c.extinction_cells
    i_nd, i_prolif, i_em, i_sens = (
        c.trait_niche_dependence,
        c.trait_proliferation,
        c.trait_em_proliferation,
        c.trait_drug_sensitivity,
    )
    route_local, route_haem = c.route_local, c.route_haematogenous
    bitgen, tally = rng.bit_generator, counts[0]
    n_p, n_n, n_k = cells.shape
    n_d = dest.size
    occ = np.empty(n_n)
    soil = np.empty(n_n)
    gain = np.empty((n_n, n_k))
    entering = np.empty(n_k)
    mu_ks = np.zeros((n_k, switch_rates.size))
    mu_k = np.zeros(n_k)
    to_s = np.zeros(switch_rates.size)
    weights = np.empty(n_d)
    settle = np.empty(n_d)
    share = np.empty(n_d)
    arrived = np.empty(n_d)
    untreated = kill_table.shape[0] - 1
    for p in range(n_p):
        cells_p = cells[p]
        if not alive[p]:
            continue
        for n in range(n_n):  # wounds only support growth while inflamed
            soil[n] = soil_base[n] * inflammation[p, n] if is_wound[n] else soil_base[n]
        traits_p = traits[p]
        for n in range(n_n):
            occ[n] = _occupancy(node_total[p, n], capacity[n])
        _switch_table(switch_rates, switch_factor[p], mu_ks, mu_k)
        _grow(
            bitgen,
            tally,
            cells_p,
            gain,
            traits_p,
            patient_prolif[p],
            soil,
            is_wound,
            p_death[p],
            survival[p],
            occ,
            capacity,
            in_marrow,
            blood,
            birth_base,
            death_base,
            niche_loss,
            dt,
            thr,
            mu_ks,
            mu_k,
            to_s,
            i_nd,
            i_prolif,
            i_em,
        )  # 1
        _release(bitgen, tally, cells_p, retained[p], occ, release_base, crowding_gain, dt, thr, entering)  # 2
        _extend(
            bitgen,
            tally,
            cells_p,
            disrupted[p],
            occ,
            ps_marrow,
            ps_nodes,
            disruption_occ,
            disruption_rate,
            dt,
            p_spill,
            thr,
            last_local[p],
        )  # 3
        _circulate(
            bitgen,
            tally,
            cells_p,
            entering,
            homing[p],
            inflammation[p],
            dest,
            dest_marrow,
            dest_wound,
            soil,
            traits_p,
            i_nd,
            blood,
            p_arrest,
            p_die_rest,
            p_engraft,
            p_col,
            thr,
            last_haem[p],
            weights,
            settle,
            share,
            arrived,
        )  # 4
        r = regimen[p]
        if r != untreated:
            if kill_regimen[p] != r or kill_efficacy[p] != efficacy[p]:  # tabled until either changes
                _kill_probabilities(kill_table[r], efficacy[p], traits_p, i_sens, dt, kill_prob[p])
                kill_regimen[p], kill_efficacy[p] = r, efficacy[p]
            _treat(bitgen, tally, cells_p, kill_table[r], kill_prob[p], thr)  # 5
        _record_onset(t, ps_nodes, last_local[p], route_local, lesion_onset[p], lesion_route[p])
        _record_onset(t, em_nodes, last_haem[p], route_haem, lesion_onset[p], lesion_route[p])
        _book_lesions(cells_p, extinction, lesion_onset[p], lesion_route[p], lesion_detectable[p], node_total[p])


# ---------------------------------------------------------------------------- clinical course
#: the constants :func:`clinic` reads from its ``cl`` array, in order
CLINIC_CONSTANTS = (
    "detection_threshold_cells",
    "diagnosis_marrow_cells",
    "progression_rise_fraction",
    "progression_min_cells",
    "symptomatic_lesion_cells",
    "min_days_on_line",
    "line_efficacy_factor",
    "gompertz_a_per_year",
    "gompertz_b_per_year",
    "tumour_death_rate_per_day",
    "lethal_burden_cells",
    "tumour_death_exponent",
    "dt_days",
    "followup_days",
    "max_days_to_diagnosis",
)
#: the constants of one step of :func:`advance` (rates from the configuration, per-step probabilities
#: derived once, trait columns and route codes), one numpy record read by field name
ADVANCE_RECORD = np.dtype(
    [
        ("birth_rate_per_day", np.float64),
        ("death_rate_per_day", np.float64),
        ("niche_loss_death_rate_per_day", np.float64),
        ("crowding_egress_gain", np.float64),
        ("cortical_disruption_occupancy", np.float64),
        ("cortical_disruption_rate_per_day", np.float64),
        ("p_spill_per_step", np.float64),
        ("p_arrest_per_step", np.float64),
        ("p_die_in_blood_per_step", np.float64),
        ("p_marrow_engraftment", np.float64),
        ("p_colonisation", np.float64),
        ("dt_days", np.float64),
        ("deterministic_threshold_cells", np.float64),
        ("extinction_cells", np.float64),
        ("trait_niche_dependence", np.int64),
        ("trait_proliferation", np.int64),
        ("trait_em_proliferation", np.int64),
        ("trait_drug_sensitivity", np.int64),
        ("route_local", np.int64),
        ("route_haematogenous", np.int64),
    ]
)
#: the clinical constants as one numpy record: read by name (with its unit) in :func:`clinic`
CLINIC_RECORD = np.dtype([(name, np.float64) for name in CLINIC_CONSTANTS])


@JIT_INLINE
def _start_phase(p, r, t, regimen, phase_end, durations):  # pragma: no cover - compiled
    """Patient ``p`` starts regimen ``r``; a finite phase ends after its duration."""
    regimen[p] = r
    phase_end[p] = t + durations[r] if durations[r] > 0 else np.inf


@JIT_INLINE
def _next_first_line(
    p,
    t,
    phase_pos,
    regimen,
    phase_end,
    durations,
    n_first,
    untreated,
    phase_wound_p,
    phase_wound_node,
    inflammation_p,
    wound_opened_p,
):  # pragma: no cover - compiled
    """Patient ``p`` moves to its next first-line phase (off treatment after the last); a phase
    that makes a wound (a catheter, a procedure) opens it."""
    phase_pos[p] += 1
    pos = phase_pos[p]
    if pos < n_first:
        _start_phase(p, pos, t, regimen, phase_end, durations)
        node = phase_wound_node[pos]
        if node >= 0 and phase_wound_p[pos]:
            inflammation_p[node] = 1.0
            if np.isnan(wound_opened_p[node]):
                wound_opened_p[node] = t
    else:
        regimen[p] = untreated
        phase_end[p] = np.inf


@JIT
def clinic(
    rng,
    counts,
    t,
    node_total,
    total,
    marrow,
    soft_tissue,
    lesion_death_rate,
    age_years,
    phase_wound,
    cl,
    durations,
    phase_wound_node,
    n_first,
    n_salvage,
    untreated,
    undiagnosed,
    followed,
    dead,
    censored,
    status,
    t_dx,
    t_prog,
    t_death,
    t_end,
    burden_at_dx,
    dx_sites,
    relapse_sites,
    lesion_detectable,
    nadir,
    lesion_nadir,
    line,
    line_start,
    phase_pos,
    phase_end,
    regimen,
    efficacy,
    inflammation,
    wound_opened,
):  # pragma: no cover - compiled
    """Process 6 for every patient, in this order: imaging (soft-tissue lesions above the detection
    threshold), diagnosis when the marrow burden crosses its threshold (imaging records the lesions,
    first-line treatment starts), the end of finite phases, progression (an IMWG-like rise from the
    nadir or a growing symptomatic soft-tissue lesion: next line), the nadirs, death (Gompertz
    background + tumour burden + lethal sites; one uniform per living patient) and censoring (end of
    follow-up, or never diagnosed within the cap).  A patient whose course had ended before the step
    is skipped: its compartments are frozen, so nothing of this would change for it.

    ``total`` and ``marrow`` (P,) are each patient's cells and marrow cells; ``cl`` the clinical
    constants, a one-element array of :data:`CLINIC_RECORD` read by field name (an array, not a
    tuple: numba types a tuple argument in Python on every call)."""
    c = cl[0]
    detection_cells, dx_cells = c.detection_threshold_cells, c.diagnosis_marrow_cells
    rise, min_rise_cells = c.progression_rise_fraction, c.progression_min_cells
    symptomatic_cells = c.symptomatic_lesion_cells
    min_days_on_line, line_factor = c.min_days_on_line, c.line_efficacy_factor
    gompertz_a, gompertz_b = c.gompertz_a_per_year, c.gompertz_b_per_year
    tumour_rate, lethal_cells = c.tumour_death_rate_per_day, c.lethal_burden_cells
    tumour_exponent = c.tumour_death_exponent
    dt, followup_days, dx_cap_days = c.dt_days, c.followup_days, c.max_days_to_diagnosis
    bitgen, tally = rng.bit_generator, counts[0]
    n_p, n_n = node_total.shape
    grow = 1.0 + rise
    age_offset = t / DAYS_PER_YEAR
    detectable = np.empty(n_n, dtype=np.bool_)
    for p in range(n_p):
        if status[p] > followed:
            continue
        for n in range(n_n):
            detectable[n] = node_total[p, n] >= detection_cells and soft_tissue[n]
            if detectable[n] and np.isnan(lesion_detectable[p, n]):
                lesion_detectable[p, n] = t
        if status[p] == undiagnosed and marrow[p] >= dx_cells:
            status[p] = followed
            t_dx[p] = t
            burden_at_dx[p] = total[p]
            nadir[p] = total[p]
            for n in range(n_n):
                dx_sites[p, n] = detectable[n]
                lesion_nadir[p, n] = node_total[p, n]
            line_start[p] = t
            _next_first_line(
                p,
                t,
                phase_pos,
                regimen,
                phase_end,
                durations,
                n_first,
                untreated,
                phase_wound[p],
                phase_wound_node,
                inflammation[p],
                wound_opened[p],
            )
        if status[p] == followed:
            if phase_end[p] <= t:
                if phase_pos[p] >= 0:
                    _next_first_line(
                        p,
                        t,
                        phase_pos,
                        regimen,
                        phase_end,
                        durations,
                        n_first,
                        untreated,
                        phase_wound[p],
                        phase_wound_node,
                        inflammation[p],
                        wound_opened[p],
                    )
                else:
                    regimen[p] = untreated
                    phase_end[p] = np.inf
            if t - line_start[p] >= min_days_on_line:
                progressed = total[p] >= nadir[p] * grow and total[p] - nadir[p] >= min_rise_cells
                n = 0
                while not progressed and n < n_n:
                    progressed = (
                        node_total[p, n] >= symptomatic_cells
                        and node_total[p, n] >= lesion_nadir[p, n] * grow
                        and soft_tissue[n]
                    )
                    n += 1
                if progressed:
                    if np.isnan(t_prog[p]):
                        t_prog[p] = t
                        for n in range(n_n):
                            relapse_sites[p, n] = detectable[n]
                    line[p] += 1
                    line_start[p] = t
                    phase_pos[p] = -1
                    efficacy[p] = line_factor ** float(line[p])
                    _start_phase(p, n_first + min(line[p] - 1, n_salvage - 1), t, regimen, phase_end, durations)
                    nadir[p] = total[p]
                    for n in range(n_n):
                        lesion_nadir[p, n] = node_total[p, n]
        nadir[p] = min(nadir[p], total[p])
        for n in range(n_n):
            lesion_nadir[p, n] = min(lesion_nadir[p, n], node_total[p, n])
        # death (the patient is living here)
        lethal = 0.0
        for n in range(n_n):
            if detectable[n]:
                lethal += lesion_death_rate[n]
        h = (
            gompertz_a * np.exp(gompertz_b * (age_years[p] + age_offset)) / DAYS_PER_YEAR
            + tumour_rate * (total[p] / lethal_cells) ** tumour_exponent
            + lethal
        )
        tally.uniform += 1
        if next_double(bitgen) < _event_probability(h, dt):
            status[p] = dead
            t_death[p] = t
            t_end[p] = t
        if (status[p] == followed and t >= t_dx[p] + followup_days) or (status[p] == undiagnosed and t >= dx_cap_days):
            status[p] = censored
            t_end[p] = t
