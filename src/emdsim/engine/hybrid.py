"""The hybrid engine's pass: processes 1-5 with deterministic large populations (numba).

The same processes, in the same order and from the same rule functions as the exact pass
(:func:`emdsim.engine.kernels.advance`), realised by the hybrid flows of :mod:`emdsim.engine.flows`:

* a population of at least ``sim.hybrid_threshold_cells`` cells (a *large* one) grows, dies and is
  killed by its expected flows (:func:`emdsim.engine.flows.flow_within`): its relative chance
  fluctuation per step is below ``1 / sqrt(threshold)`` and the branching process it follows has
  all but settled its fate (``docs/ODD.md`` section 8, why the threshold is 10^3 cells);
* a smaller one holds whole cells and every flow of it is drawn, exactly as in the exact engine;
* what leaves a large population for another — switch mutants, released, spilled, arrested and
  settling cells — is a count (the Poisson count of the integrated rate) unless its mean is itself
  large (:func:`emdsim.engine.flows.flow_out`, :func:`emdsim.engine.flows.split_out`);
* no work is done for dust: no fraction of a cell travels, a small population left with a fraction
  by mean flows is rounded to whole cells at random (:func:`emdsim.engine.flows.whole_cells`), and
  compartments without cells are skipped.

Every patient draws from its own stream (a row of ``streams (P, 4)``,
:mod:`emdsim.engine.streams`), so its course does not depend on the block it runs in.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from emdsim.engine.flows import flow_out, flow_within, split_out, whole_cells
from emdsim.engine.jit import JIT, JIT_INLINE
from emdsim.engine.kernels import (
    CourseState,
    PatientTables,
    StepTables,
    _birth_probability_given_survival,
    _birth_rate,
    _crowded_release,
    _death_and_survival,
    _disruption_rate,
    _event_probability,
    _focal_breach_rate,
    _kill_probabilities,
    _node_sum,
    _occupancy,
    _proliferation,
    _record_onset,
    _resistant_cells,
    _settle_probabilities,
    _support,
    _switch_table,
)
from emdsim.engine.streams import uniform

__all__ = ["advance"]


class _Scratch(NamedTuple):
    """Work arrays of one pass, reused for every patient (:class:`emdsim.engine.kernels._Scratch`, and
    which compartments hold cells)."""

    occ: NDArray[np.float64]  # (N,) occupancy
    soil: NDArray[np.float64]  # (N,) soil, wounds scaled by their inflammation
    entering: NDArray[np.float64]  # (K,) cells released into the blood
    mu_ks: NDArray[np.float64]  # (K, S) switch rates per division
    mu_k: NDArray[np.float64]  # (K,) their sum, capped at 1
    to_s: NDArray[np.float64]  # (S,)
    weights: NDArray[np.float64]  # (D,)
    settle: NDArray[np.float64]  # (D,)
    share: NDArray[np.float64]  # (D,)
    arrived: NDArray[np.float64]  # (D,)
    live: NDArray[np.uint8]  # (N,) 1: the compartment holds cells (or received some this step)


# Every process is a function of one patient ``p`` with the parameters of the exact pass, the
# patient's stream row ``src`` in place of the block's bit generator.


@JIT_INLINE
def _grow(src, tally, p, s, pt, tb, c, w):  # pragma: no cover - compiled
    """Process 1 (as :func:`emdsim.engine.kernels._grow`): births and deaths, switch mutants."""
    cells_p, traits_p, prolif_p = s.cells[p], pt.traits[p], pt.proliferation[p]
    p_death_p, survival_p = pt.p_death[p], pt.survival[p]
    occ, soil, mu_ks, mu_k, to_s, live = w.occ, w.soil, w.mu_ks, w.mu_k, w.to_s, w.live
    is_wound, in_marrow = tb.is_wound, tb.in_marrow
    birth_base, death_base, niche_loss = c.birth_rate_per_day, c.death_rate_per_day, c.niche_loss_death_rate_per_day
    dt, large, blood = c.dt_days, c.hybrid_threshold_cells, c.blood_node
    i_nd, i_prolif, i_em = c.trait_niche_dependence, c.trait_proliferation, c.trait_em_proliferation
    n_n, n_k = cells_p.shape
    n_s = mu_ks.shape[1]
    for n in range(n_n):
        if not live[n]:
            continue
        o = occ[n]
        so = soil[n]
        im = in_marrow[n]
        wound = is_wound[n]
        total = 0.0
        # clone states in decreasing order: a mutant (state k | bit > k) joins a state already
        # advanced this step, so newborn mutants do not grow or die before the next step, as in the
        # exact pass (which adds them after the loop)
        for k in range(n_k - 1, -1, -1):
            cnk = cells_p[n, k]
            if cnk <= 0.0:
                continue
            supp = _support(traits_p[k, i_nd], so)
            if wound:
                pd, sd = _death_and_survival(death_base, niche_loss, supp, dt)
            else:
                pd, sd = p_death_p[n, k], survival_p[n, k]
            deaths = flow_within(src, cnk, pd, large, tally)
            births = 0.0
            if n != blood:
                prol = _proliferation(prolif_p * traits_p[k, i_prolif], traits_p[k, i_em], im)
                b = _birth_rate(birth_base, prol, o, supp)
                if cnk >= large:  # the expected births of a linear birth-death process: no cap at one per cell
                    births = cnk * (sd * np.expm1(b * dt))
                else:
                    births = flow_within(src, cnk, _birth_probability_given_survival(b, sd, dt), large, tally)
            left = births
            if births > 0.0 and n_s > 0:
                moved = flow_out(src, births, mu_k[k], large, tally)
                if moved > 0.0:
                    split_out(src, moved, mu_ks[k], large, to_s, tally)
                    for sw in range(n_s):
                        if to_s[sw] > 0.0:
                            cells_p[n, k | (1 << sw)] += to_s[sw]
                    total += moved
                    left -= moved
            x = max(cnk - deaths + left, 0.0)
            cells_p[n, k] = x
            total += x
        occ[n] = _occupancy(total, tb.capacity_cells[n])


@JIT_INLINE
def _release(src, tally, p, s, pt, tb, c, w):  # pragma: no cover - compiled
    """Process 2 (as :func:`emdsim.engine.kernels._release`): egress and shedding into ``w.entering``."""
    cells_p, retained_p, occ, entering, live = s.cells[p], pt.retained[p], w.occ, w.entering, w.live
    crowding_gain, dt, large = c.crowding_egress_gain, c.dt_days, c.hybrid_threshold_cells
    n_n, n_k = cells_p.shape
    entering[:] = 0.0
    for n in range(n_n):
        if not live[n] or tb.release_rate_per_day[n] <= 0.0:
            continue
        for k in range(n_k):
            cnk = cells_p[n, k]
            if cnk <= 0.0:
                continue
            rate = _crowded_release(retained_p[n, k], occ[n], crowding_gain)
            out = flow_out(src, cnk, _event_probability(rate, dt), large, tally)
            cells_p[n, k] = cnk - out
            entering[k] += out


@JIT_INLINE
def _extend(src, tally, p, s, pt, tb, c, w):  # pragma: no cover - compiled
    """Process 3 (as :func:`emdsim.engine.kernels._extend`): cortical breach and spill."""
    cells_p, disrupted_p, last_local_p, occ, live = s.cells[p], s.disrupted[p], s.last_local[p], w.occ, w.live
    ps_nodes, ps_marrow = tb.ps_nodes, tb.ps_marrow
    disruption_occ, disruption_rate = c.cortical_disruption_occupancy, c.cortical_disruption_rate_per_day
    traits_p, i_sens = pt.traits[p], c.trait_drug_sensitivity
    focal_cells, focal_rate = c.focal_breach_cells, c.focal_breach_rate_per_day
    treated = s.status[p] == c.status_followed and focal_rate > 0.0  # diagnosed, so under therapy
    dt, p_spill, large = c.dt_days, c.p_spill_per_step, c.hybrid_threshold_cells
    n_k = cells_p.shape[1]
    for i in range(ps_nodes.size):
        m = ps_marrow[i]
        if not live[m]:
            continue
        if not disrupted_p[m]:
            hz = _disruption_rate(occ[m], disruption_occ, disruption_rate)
            if treated:  # resistant clones regrow as focal lesions
                hz += _focal_breach_rate(_resistant_cells(cells_p, traits_p, m, i_sens), focal_cells, focal_rate)
            if hz > 0.0:
                tally.uniform += 1
                if uniform(src) < _event_probability(hz, dt):
                    disrupted_p[m] = True
        if not disrupted_p[m]:
            continue
        ps = ps_nodes[i]
        for k in range(n_k):
            cmk = cells_p[m, k]
            if cmk <= 0.0:
                continue
            moved = flow_out(src, cmk, p_spill, large, tally)
            if moved > 0.0:
                cells_p[m, k] = cmk - moved
                cells_p[ps, k] += moved
                last_local_p[ps, k] = moved
                live[ps] = 1


@JIT_INLINE
def _circulate(src, tally, p, s, pt, tb, c, w):  # pragma: no cover - compiled
    """Process 4 (as :func:`emdsim.engine.kernels._circulate`): death in the blood, arrest, homing,
    engraftment or colonisation."""
    cells_p, inflammation_p = s.cells[p], s.inflammation[p]
    homing_p, traits_p = pt.homing[p], pt.traits[p]
    dest, dest_wound = tb.dest, tb.dest_wound
    entering, weights, settle, soil = w.entering, w.weights, w.settle, w.soil
    p_arrest, p_die_rest = c.p_arrest_per_step, c.p_die_in_blood_per_step
    large, blood, i_nd = c.hybrid_threshold_cells, c.blood_node, c.trait_niche_dependence
    n_k = cells_p.shape[1]
    n_d = dest.size
    inflamed = False  # a wound is inflamed: the destinations' weights change from step to step
    for j in range(n_d):
        if dest_wound[j] and inflammation_p[dest[j]] > 0.0:
            inflamed = True
    for k in range(n_k):
        b = cells_p[blood, k] + entering[k]
        if b <= 0.0:
            continue
        arrest = flow_out(src, b, p_arrest, large, tally)
        b -= arrest
        b -= flow_within(src, b, p_die_rest, large, tally)
        cells_p[blood, k] = b
        if b > 0.0:
            w.live[blood] = 1
        if arrest <= 0.0:
            continue
        if not inflamed:  # the tabled probabilities (static_rates)
            _settle(
                src, tally, p, s, tb, c, w, (k, arrest, pt.settle[p, k], pt.settle_marrow[p, k], pt.settle_tissue[p, k])
            )
            continue
        p_marrow, p_tissue = _settle_probabilities(
            homing_p[k], inflammation_p, traits_p[k, i_nd], soil, tb, c, weights, settle
        )
        if p_marrow <= 0.0 and p_tissue <= 0.0:
            continue
        _settle(src, tally, p, s, tb, c, w, (k, arrest, settle, p_marrow, p_tissue))


@JIT_INLINE
def _settle(src, tally, p, s, tb, c, w, arrested):  # pragma: no cover - compiled
    """``arrested = (k, cells, settle, p_marrow, p_tissue)``: the arrested cells of clone ``k``
    settle at destination j with probability ``settle[j]`` or die: a multinomial drawn as the number
    settling in marrow (``p_marrow``, the sum of its ``settle``), then in other tissue, each shared
    among its sites."""
    k, arrest, settle, p_marrow, p_tissue = arrested
    cells_p, last_haem_p, share, arrived = s.cells[p], s.last_haem[p], w.share, w.arrived
    dest, dest_marrow, large = tb.dest, tb.dest_marrow, c.hybrid_threshold_cells
    n_d = dest.size
    left = arrest
    rest = 1.0
    for g in range(2):
        p_g = p_marrow if g == 0 else p_tissue
        q = min(p_g / rest, 1.0) if rest > 0.0 else 0.0
        n_g = flow_out(src, left, q, large, tally)
        rest -= p_g
        if n_g <= 0.0:
            continue
        left -= n_g
        for j in range(n_d):
            share[j] = settle[j] if dest_marrow[j] == (g == 0) else 0.0
        split_out(src, n_g, share, large, arrived, tally)
        for j in range(n_d):
            if arrived[j] > 0.0:
                cells_p[dest[j], k] += arrived[j]
                last_haem_p[dest[j], k] = arrived[j]
                w.live[dest[j]] = 1


@JIT_INLINE
def _treat(src, tally, p, s, pt, tb, c, w):  # pragma: no cover - compiled
    """Process 5 (as :func:`emdsim.engine.kernels._treat`): kill by the patient's regimen."""
    r = s.regimen[p]
    if r == tb.kill_rate_per_day.shape[0] - 1:  # untreated
        return
    node_kill, kill_p = tb.kill_rate_per_day[r], s.kill_prob[p]
    if s.kill_regimen[p] != r or s.kill_efficacy[p] != s.efficacy[p]:
        _kill_probabilities(node_kill, s.efficacy[p], pt.traits[p], c.trait_drug_sensitivity, c.dt_days, kill_p)
        s.kill_regimen[p], s.kill_efficacy[p] = r, s.efficacy[p]
    cells_p, large = s.cells[p], c.hybrid_threshold_cells
    n_n, n_k = cells_p.shape
    for n in range(n_n):
        if not w.live[n] or node_kill[n] <= 0.0:
            continue
        for k in range(n_k):
            cnk = cells_p[n, k]
            if cnk <= 0.0:
                continue
            cells_p[n, k] = cnk - flow_within(src, cnk, kill_p[n, k], large, tally)


@JIT_INLINE
def _book_lesions(src, tally, p, s, c, w):  # pragma: no cover - compiled
    """Round small populations to whole cells, remove those below ``extinction_cells``, total each
    node, and forget a lesion that died out before it was ever seen (as the exact pass)."""
    cells_p, onset_p, route_p = s.cells[p], s.lesion_onset[p], s.lesion_route[p]
    detectable_p, node_total_p = s.lesion_detectable[p], s.node_total[p]
    large, extinction = c.hybrid_threshold_cells, c.extinction_cells
    n_n, n_k = cells_p.shape
    for n in range(n_n):
        if not w.live[n]:
            node_total_p[n] = 0.0
            continue
        for k in range(n_k):
            x = cells_p[n, k]
            if x > 0.0:
                x = whole_cells(src, x, large, tally)
                cells_p[n, k] = x if x >= extinction else 0.0
        tot = _node_sum(cells_p, n)
        node_total_p[n] = tot
        if tot == 0.0 and not np.isnan(onset_p[n]) and np.isnan(detectable_p[n]):
            onset_p[n] = np.nan
            route_p[n] = 0


@JIT
def advance(streams, counts, t, state, patients, tables, k):  # pragma: no cover - compiled
    """Processes 1-5 for every living patient, then the lesions' bookkeeping, at time ``t`` (days):
    :func:`emdsim.engine.kernels.advance` with the hybrid flows, patient ``p`` drawing from
    ``streams[p]`` (a ``(P, 4)`` uint64 array of xoshiro256++ states, advanced in place)."""
    s, pt, tb, c = CourseState(*state), PatientTables(*patients), StepTables(*tables), k[0]
    tally = counts[0]
    n_p, n_n, n_k = s.cells.shape
    n_s, n_d = tb.switch_rate_per_division.size, tb.dest.size
    w = _Scratch(
        np.empty(n_n),
        np.empty(n_n),
        np.empty(n_k),
        np.zeros((n_k, n_s)),
        np.zeros(n_k),
        np.zeros(n_s),
        np.empty(n_d),
        np.empty(n_d),
        np.empty(n_d),
        np.empty(n_d),
        np.zeros(n_n, dtype=np.uint8),
    )
    for p in range(n_p):
        if s.status[p] > c.status_followed:  # the course has ended: frozen
            continue
        src = streams[p]
        for n in range(n_n):
            w.soil[n] = tb.soil[n] * s.inflammation[p, n] if tb.is_wound[n] else tb.soil[n]
            w.occ[n] = _occupancy(s.node_total[p, n], tb.capacity_cells[n])
            w.live[n] = 1 if s.node_total[p, n] > 0.0 else 0
        s.last_local[p, :, :] = 0.0
        s.last_haem[p, :, :] = 0.0
        _switch_table(tb.switch_rate_per_division, pt.switch_factor[p], w.mu_ks, w.mu_k)
        _grow(src, tally, p, s, pt, tb, c, w)  # 1
        _release(src, tally, p, s, pt, tb, c, w)  # 2
        _extend(src, tally, p, s, pt, tb, c, w)  # 3
        _circulate(src, tally, p, s, pt, tb, c, w)  # 4
        _treat(src, tally, p, s, pt, tb, c, w)  # 5
        _record_onset(t, tb.ps_nodes, s.last_local[p], c.route_local, s.lesion_onset[p], s.lesion_route[p])
        _record_onset(t, tb.em_nodes, s.last_haem[p], c.route_haematogenous, s.lesion_onset[p], s.lesion_route[p])
        _book_lesions(src, tally, p, s, c, w)
