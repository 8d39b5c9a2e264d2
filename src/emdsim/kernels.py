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
from .rates import birth_probability, event_probability, flow_one, split_one

__all__ = ["grow", "release", "spill", "circulate", "treat", "extinguish"]


_support = JIT(niches.support)
_proliferation = JIT(niches.proliferation)
_birth_rate = JIT(niches.birth_rate)
_death_rate = JIT(niches.death_rate)
_egress_rate = JIT(niches.egress_rate)
_colonisation_probability = JIT(spread.colonisation_probability)
_kill_rate = JIT(treatment.kill_rate)
_event_probability = JIT(event_probability)
_birth_probability = JIT(birth_probability)


@JIT
def grow(rng, tally, alive, cells, gain, traits, patient_prolif, switch_factor, soil, occ, in_marrow, blood,
         birth_base, death_base, niche_loss, dt, thr, switch_rates, i_nd, i_prolif, i_em):  # pragma: no cover
    """Process 1: births and deaths of every occupied entry; newborns that switch go to their subclone."""
    n_p, n_n, n_k = cells.shape
    n_s = switch_rates.size
    mu_s = np.zeros(max(n_s, 1))
    to_s = np.zeros(max(n_s, 1))
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
                deaths = flow_one(rng, c, _event_probability(d, dt), thr, tally)
                births = 0.0
                if n != blood:
                    prol = _proliferation(patient_prolif[p] * traits[p, k, i_prolif], traits[p, k, i_em], im)
                    b = _birth_rate(birth_base, prol, o, supp)
                    births = flow_one(rng, c, _birth_probability(b, d, dt), thr, tally)
                left = births
                if births > 0.0 and n_s > 0:
                    # newborns that switch: one flow with the summed rate of the switches the clone
                    # lacks, then a multinomial among them (drawn only when some switch)
                    total_mu = 0.0
                    for s in range(n_s):
                        mu_s[s] = 0.0 if (k >> s) & 1 else switch_rates[s] * switch_factor[p]
                        total_mu += mu_s[s]
                    moved = flow_one(rng, births, min(total_mu, 1.0), thr, tally)
                    if moved > 0.0:
                        split_one(rng, moved, mu_s, thr, to_s, tally)
                        for s in range(n_s):
                            if to_s[s] > 0.0:
                                gain[p, n, k | (1 << s)] += to_s[s]
                        left -= moved
                cells[p, n, k] = max(c - deaths + left, 0.0)
    for p in range(n_p):
        for n in range(n_n):
            for k in range(n_k):
                cells[p, n, k] += gain[p, n, k]


@JIT
def release(rng, tally, alive, cells, adhesion, occ, release_base, crowding_gain, dt, thr, entering):  # pragma: no cover
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
                out = flow_one(rng, c, _event_probability(rate, dt), thr, tally)
                cells[p, n, k] = c - out
                entering[p, k] += out


@JIT
def spill(rng, tally, alive, cells, disrupted, ps_marrow, ps_nodes, p_spill, thr, last_local):  # pragma: no cover
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
                moved = flow_one(rng, c, p_spill, thr, tally)
                cells[p, m, k] = c - moved
                cells[p, ps, k] += moved
                last_local[p, ps, k] = moved


@JIT
def circulate(rng, tally, alive, cells, entering, homing, inflammation, dest, dest_marrow, dest_wound, soil, traits, i_nd,
              blood, p_arrest, p_die_rest, p_engraft, p_col, thr, last_haem):  # pragma: no cover
    """Process 4: death in the blood, arrest by destination, engraftment (marrow) or colonisation."""
    n_p, _, n_k = cells.shape
    n_d = dest.size
    weights = np.empty(n_d)
    settle = np.empty(n_d)
    share = np.empty(n_d)
    arrived = np.empty(n_d)
    p_group = np.zeros(2)
    last_haem[:] = 0.0
    for p in range(n_p):
        if not alive[p]:
            continue
        for k in range(n_k):
            b = cells[p, blood, k] + entering[p, k]
            if b <= 0.0:
                continue
            arrest = flow_one(rng, b, p_arrest, thr, tally)
            b -= arrest
            b -= flow_one(rng, b, p_die_rest, thr, tally)
            cells[p, blood, k] = b
            if arrest <= 0.0:
                continue
            total_w = 0.0
            for j in range(n_d):
                w = homing[p, k, dest[j]]
                if dest_wound[j]:
                    w *= inflammation[p, dest[j]]
                weights[j] = w
                total_w += w
            if total_w <= 0.0:
                continue
            # each arrested cell settles at one destination j with probability (w_j / W) x s_j
            # (s_j: engraftment in marrow, colonisation elsewhere) or dies: a multinomial drawn as
            # the number settling in marrow, then in other tissue, each shared among its sites
            d_k = traits[p, k, i_nd]
            p_group[0] = 0.0
            p_group[1] = 0.0
            for j in range(n_d):
                if dest_marrow[j]:
                    s_j = p_engraft
                else:
                    s_j = _colonisation_probability(p_col, _support(d_k, soil[p, dest[j]]))
                settle[j] = weights[j] / total_w * s_j
                p_group[0 if dest_marrow[j] else 1] += settle[j]
            left = arrest
            rest = 1.0
            for g in range(2):
                q = min(p_group[g] / rest, 1.0) if rest > 0.0 else 0.0
                n_g = flow_one(rng, left, q, thr, tally)
                rest -= p_group[g]
                if n_g <= 0.0:
                    continue
                left -= n_g
                for j in range(n_d):
                    share[j] = settle[j] if dest_marrow[j] == (g == 0) else 0.0
                split_one(rng, n_g, share, thr, arrived, tally)
                for j in range(n_d):
                    if arrived[j] > 0.0:
                        cells[p, dest[j], k] += arrived[j]
                        last_haem[p, dest[j], k] = arrived[j]


@JIT
def treat(rng, tally, alive, cells, regimen, untreated, kill_table, efficacy, traits, i_sens, dt, thr):  # pragma: no cover
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
                cells[p, n, k] = c - flow_one(rng, c, _event_probability(rate, dt), thr, tally)


@JIT
def extinguish(cells, extinction):  # pragma: no cover
    """Remove populations below ``extinction`` cells."""
    flat = cells.reshape(-1)
    for i in range(flat.size):
        if flat[i] < extinction:
            flat[i] = 0.0
