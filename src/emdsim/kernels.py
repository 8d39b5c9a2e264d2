"""Compiled loops over patients x compartments x clones (numba).

Patients whose course has ended (``alive`` false) are frozen.  The loops hold no biology of their
own: every rate comes from the rule functions of
:mod:`emdsim.niches`, :mod:`emdsim.spread` and :mod:`emdsim.treatment` — the same source that
numpy code calls on arrays, compiled here for scalars — and every flow is realised by
:func:`emdsim.rates.flow_one` / :func:`emdsim.rates.split_one`.  Looping in compiled code touches
only occupied entries and keeps Python overhead independent of the number of patients.
"""

from __future__ import annotations

import numpy as np

from . import niches, spread, treatment
from ._jit import JIT
from .rates import event_probability, flow_one, split_one

__all__ = ["grow", "release", "spill", "circulate", "treat", "extinguish"]


_support = JIT(niches.support)
_proliferation = JIT(niches.proliferation)
_birth_rate = JIT(niches.birth_rate)
_death_rate = JIT(niches.death_rate)
_egress_rate = JIT(niches.egress_rate)
_colonisation_probability = JIT(spread.colonisation_probability)
_kill_rate = JIT(treatment.kill_rate)
_event_probability = JIT(event_probability)


@JIT
def grow(rng, alive, cells, gain, traits, patient_prolif, switch_factor, soil, occ, in_marrow, blood,
         birth_base, death_base, niche_loss, dt, thr, switch_rates, i_nd, i_prolif, i_em):  # pragma: no cover
    """Process 1: births and deaths of every occupied entry; newborns that switch go to their subclone."""
    n_p, n_n, n_k = cells.shape
    n_s = switch_rates.size
    gain[:] = 0.0
    for p in range(n_p):
        if not alive[p]:
            continue
        for n in range(n_n):
            o = occ[p, n]
            so = soil[p, n]
            im = in_marrow[n]
            for k in range(n_k):
                c = cells[p, n, k]
                if c <= 0.0:
                    continue
                supp = _support(traits[p, k, i_nd], so)
                d = _death_rate(death_base, niche_loss, supp)
                deaths = flow_one(rng, c, _event_probability(d, dt), thr)
                births = 0.0
                if n != blood:
                    prol = _proliferation(patient_prolif[p] * traits[p, k, i_prolif], traits[p, k, i_em], im)
                    b = _birth_rate(birth_base, prol, o, supp)
                    births = flow_one(rng, c, _event_probability(b, dt), thr)
                left = births
                rest = 1.0  # switches compete: each newborn takes at most one (multinomial)
                for s in range(n_s):
                    if (k >> s) & 1 or left <= 0.0:
                        continue
                    mu = min(switch_rates[s] * switch_factor[p], 1.0)
                    moved = flow_one(rng, left, min(mu / rest, 1.0), thr) if rest > 0.0 else 0.0
                    rest -= mu
                    left -= moved
                    gain[p, n, k | (1 << s)] += moved
                cells[p, n, k] = max(c - deaths + left, 0.0)
    for p in range(n_p):
        for n in range(n_n):
            for k in range(n_k):
                cells[p, n, k] += gain[p, n, k]


@JIT
def release(rng, alive, cells, adhesion, occ, release_base, crowding_gain, dt, thr, entering):  # pragma: no cover
    """Process 2: egress from marrow and shedding from soft tissue into ``entering (P, K)``."""
    n_p, n_n, n_k = cells.shape
    entering[:] = 0.0
    for p in range(n_p):
        if not alive[p]:
            continue
        for n in range(n_n):
            base = release_base[n]
            if base <= 0.0:
                continue
            for k in range(n_k):
                c = cells[p, n, k]
                if c <= 0.0:
                    continue
                rate = _egress_rate(base, adhesion[p, n, k], occ[p, n], crowding_gain)
                out = flow_one(rng, c, _event_probability(rate, dt), thr)
                cells[p, n, k] = c - out
                entering[p, k] += out


@JIT
def spill(rng, alive, cells, disrupted, ps_marrow, ps_nodes, p_spill, thr, last_local):  # pragma: no cover
    """Process 3: cells of breached marrow sites spill into the paraskeletal compartment beside them."""
    n_p, _, n_k = cells.shape
    last_local[:] = 0.0
    for p in range(n_p):
        if not alive[p]:
            continue
        for i in range(ps_nodes.size):
            m = ps_marrow[i]
            if not disrupted[p, m]:
                continue
            ps = ps_nodes[i]
            for k in range(n_k):
                c = cells[p, m, k]
                if c <= 0.0:
                    continue
                moved = flow_one(rng, c, p_spill, thr)
                cells[p, m, k] = c - moved
                cells[p, ps, k] += moved
                last_local[p, ps, k] = moved


@JIT
def circulate(rng, alive, cells, entering, homing, inflammation, dest, dest_marrow, dest_wound, soil, traits, i_nd,
              blood, p_arrest, p_die_rest, p_engraft, p_col, thr, last_haem):  # pragma: no cover
    """Process 4: death in the blood, arrest by destination, engraftment (marrow) or colonisation."""
    n_p, _, n_k = cells.shape
    n_d = dest.size
    weights = np.empty(n_d)
    arrived = np.empty(n_d)
    last_haem[:] = 0.0
    for p in range(n_p):
        if not alive[p]:
            continue
        for k in range(n_k):
            b = cells[p, blood, k] + entering[p, k]
            if b <= 0.0:
                continue
            arrest = flow_one(rng, b, p_arrest, thr)
            b -= arrest
            b -= flow_one(rng, b, p_die_rest, thr)
            cells[p, blood, k] = b
            if arrest <= 0.0:
                continue
            for j in range(n_d):
                w = homing[p, k, dest[j]]
                if dest_wound[j]:
                    w *= inflammation[p, dest[j]]
                weights[j] = w
            split_one(rng, arrest, weights, thr, arrived)
            d_k = traits[p, k, i_nd]
            for j in range(n_d):
                a = arrived[j]
                if a <= 0.0:
                    continue
                node = dest[j]
                if dest_marrow[j]:
                    settled = flow_one(rng, a, p_engraft, thr)
                else:
                    q = _colonisation_probability(p_col, _support(d_k, soil[p, node]))
                    settled = flow_one(rng, a, q, thr)
                cells[p, node, k] += settled
                last_haem[p, node, k] = settled


@JIT
def treat(rng, alive, cells, regimen, untreated, kill_table, efficacy, traits, i_sens, dt, thr):  # pragma: no cover
    """Process 5: kill by the current regimen, per compartment and clone sensitivity."""
    n_p, n_n, n_k = cells.shape
    for p in range(n_p):
        if not alive[p]:
            continue
        r = regimen[p]
        if r == untreated:
            continue
        for n in range(n_n):
            kn = kill_table[r, n]
            if kn <= 0.0:
                continue
            for k in range(n_k):
                c = cells[p, n, k]
                if c <= 0.0:
                    continue
                rate = _kill_rate(kn, efficacy[p], traits[p, k, i_sens])
                cells[p, n, k] = c - flow_one(rng, c, _event_probability(rate, dt), thr)


@JIT
def extinguish(cells, extinction):  # pragma: no cover
    """Remove populations below ``extinction`` cells."""
    flat = cells.reshape(-1)
    for i in range(flat.size):
        if flat[i] < extinction:
            flat[i] = 0.0
