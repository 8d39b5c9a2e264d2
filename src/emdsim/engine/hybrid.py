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

from emdsim.engine.flows import (
    GAUSSIAN_MIN_MEAN,
    blood_probabilities,
    draw_binomial_called,
    draw_gamma,
    draw_poisson,
    flow_out,
    flow_within,
    split_out,
    whole_cells,
)
from emdsim.engine.jit import JIT_INLINE, JIT_NO_NRT
from emdsim.engine.kernels import (
    CourseState,
    PatientTables,
    StepTables,
    _birth_probability_given_survival,
    _birth_rate,
    _colonisation_probability,
    _crowded_release,
    _death_and_survival,
    _death_rate,
    _disruption_rate,
    _event_probability,
    _focal_breach_rate,
    _kill_probabilities,
    _kill_rate,
    _node_sum,
    _occupancy,
    _proliferation,
    _record_onset,
    _resistant_cells,
    _settle_probabilities,
    _support,
    _switch_table,
)
from emdsim.engine.streams import STREAM_RECORD, normal, stream_records, uniform

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
    dt: NDArray[np.float64]  # (1,) the patient's step, days (``dt_days``, or longer while it is quiet)
    rate: NDArray[np.float64]  # (N, K) each entry's net growth rate this step, 1/day (adaptive step)
    occ0: NDArray[np.float64]  # (N,) occupancy at the step's start (``occ`` holds it after growth)
    kill: NDArray[np.float64]  # (N, K) each entry's kill hazard this step, 1/day (adaptive step)
    occk: NDArray[np.float64]  # (N,) a long step: the occupancy after growth, predicted with the kill
    stepped: NDArray[np.uint8]  # (N, K) 1: a small population treated within its dt_days steps
    arrive_steps: NDArray[np.float64]  # (N,) a long step's arrivals came this many dt_days steps before its end
    onset_steps: NDArray[np.float64]  # (N,) and its first ones this many (a new lesion's onset)
    spill_weeks: NDArray[np.float64]  # (N,) paraskeletal: the dt_days steps of a long step it received spill in
    split: NDArray[np.float64]  # (S,)
    weekly: NDArray[np.float64]  # (K, W) a new lesion's arrivals per clone in each dt_days step of a long step
    probs: NDArray[np.float64]  # (K, 4) and each clone's per-step probabilities of death, birth, kill and release
    entering_rate: NDArray[np.float64]  # (K,) a long step: the net growth rate of the cells entering the blood, 1/day
    gone: NDArray[np.float64]  # (N, K) the dt_days step (0, 1, ...) a small population died out in, or -1
    extinct: NDArray[np.float64]  # (W,) :func:`_grow_small_law`: the extinction probability by each dt_days step
    gone_week: NDArray[np.float64]  # (1,) what :func:`_grow_small` saw: the step its population died out in, or -1
    week_weight: NDArray[np.float64]  # (W,) a long step: the weights of its dt_days steps for a clone's arrivals
    inflammation: NDArray[np.float64]  # (N,) each wound's inflammation over the step (a long step: its mean)
    inflammation_q: NDArray[np.float64]  # (N,) a long step: its factor from one dt_days step to the next (1: none)
    inflammation_k: NDArray[np.float64]  # (N,) a long step: the wounds' inflammation when one clone's cells arrived
    soil_k: NDArray[np.float64]  # (N,) and the soil then


# Every process is a function of one patient ``p`` with the parameters of the exact pass, the
# patient's stream row ``src`` in place of the block's bit generator.


#: a long step evaluates the birth rate of a compartment below this occupancy at its start (free
#: capacity changes by less than this fraction of itself within the step)
LOW_OCCUPANCY = 0.01


@JIT_INLINE
def _occupancy_within(o0, o1, f):  # pragma: no cover - compiled
    """The occupancy a fraction ``f`` into a long step from ``o0`` to ``o1`` (exponential between
    them: the growth of a step at constant rates; linear where either is 0)."""
    if o0 > 0.0 and o1 > 0.0:
        return o0 * (o1 / o0) ** f
    return o0 + (o1 - o0) * f


@JIT_INLINE
def _step_occupancy(o0, o_grown, o_treated, i, n_sub):  # pragma: no cover - compiled
    """The occupancy at which the exact pass evaluates an occupancy-driven hazard (release, cortical
    breach) in the i-th (1..n) of a long step's dt_days steps: after that step's growth and before its
    kill, i.e. the treated course from ``o0`` to ``o_treated`` (the end predicted with the kill)
    i steps in, times one step's growth over kill (``(o_grown / o_treated)^(1/n)``, ``o_grown`` the
    end without the kill, where the long step has grown it)."""
    o = _occupancy_within(o0, o_treated, i / n_sub)
    if o_treated > 0.0 and o_grown > o_treated:
        o *= (o_grown / o_treated) ** (1.0 / n_sub)
    return o


@JIT_INLINE
def _mean_over_steps(o0, o_grown, o_treated, n_sub):  # pragma: no cover - compiled
    """The mean of :func:`_step_occupancy` over a long step's dt_days steps (a geometric series)."""
    g = (o_grown / o_treated) ** (1.0 / n_sub) if o_treated > 0.0 and o_grown > o_treated else 1.0
    if o0 <= 0.0 or o_treated <= 0.0:
        return g * (o0 + (o_treated - o0) * (n_sub + 1.0) / (2.0 * n_sub))
    q = (o_treated / o0) ** (1.0 / n_sub)
    if abs(q - 1.0) < 1e-9:
        return g * o0
    return g * o0 * q * (1.0 - o_treated / o0) / ((1.0 - q) * n_sub)


@JIT_INLINE
def _birth_death(p, n, k, o, pt, tb, c, w):  # pragma: no cover - compiled
    """Birth and death hazards (1/day) of patient ``p``'s clone state ``k`` in compartment ``n`` at
    occupancy ``o`` (no births in the blood)."""
    traits_p = pt.traits[p]
    supp = _support(traits_p[k, c.trait_niche_dependence], w.soil[n])
    b = 0.0
    if n != c.blood_node:
        prol = _proliferation(
            pt.proliferation[p] * traits_p[k, c.trait_proliferation],
            traits_p[k, c.trait_em_proliferation],
            tb.in_marrow[n],
        )
        b = _birth_rate(c.birth_rate_per_day, prol, o, supp)
    return b, _death_rate(c.death_rate_per_day, c.niche_loss_death_rate_per_day, supp)


@JIT_INLINE
def _occupancy_over_long_step(p, n, o0, s, pt, tb, c, w):  # pragma: no cover - compiled
    """The occupancy at which compartment ``n`` grows through a long step: the mean of the occupancies
    at the starts of its ``dt_days`` steps (where the exact pass evaluates the birth rate, which is
    linear in it), between ``o0`` now and its end predicted by every clone's present net rate
    (birth at ``o0`` - death - kill - release): a predictor step, so that a compartment emptying under therapy
    regrows, and one filling up slows, as it would step by step."""
    cells_p, traits_p = s.cells[p], pt.traits[p]
    dt = w.dt[0]
    node_kill = tb.kill_rate_per_day[s.regimen[p], n]
    releases = tb.release_rate_per_day[n] > 0.0
    end = 0.0
    for k in range(cells_p.shape[1]):
        cnk = cells_p[n, k]
        if cnk <= 0.0:
            continue
        b, d = _birth_death(p, n, k, o0, pt, tb, c, w)
        r = b - d
        if node_kill > 0.0:
            r -= _kill_rate(node_kill, s.efficacy[p], traits_p[k, c.trait_drug_sensitivity])
        if releases:  # the cells that leave (:func:`_release`) no longer fill it
            r -= _crowded_release(pt.retained[p, n, k], o0, c.crowding_egress_gain)
        end += cnk * np.exp(r * dt)
    o1 = _occupancy(end, tb.capacity_cells[n])
    n_sub = np.round(dt / c.dt_days)
    tot = 0.0
    for i in range(int(n_sub)):
        tot += _occupancy_within(o0, o1, i / n_sub)
    return tot / n_sub


@JIT_INLINE
def _mean_cells_factor(r, kill, stepped, dt, n_sub):  # pragma: no cover - compiled
    """A long step releases and spills cells from its population after growth (``exp((r + kill)
    tau)`` times its start; a small population drawn step by step, ``stepped``, has also been treated:
    ``exp(r tau)``); the exact pass, in each dt_days step from its population after that step's growth
    and before its kill (``exp(r (i - 1) dt) exp((r + kill) dt)``, i = 1..n, ``r`` the net rate with the
    kill). The factor from the first to the mean of the second, so that a population shrinking under
    therapy does not release as if it were untreated."""
    e = np.exp(r * dt)
    mean = 0.0
    x = np.exp(kill * dt)
    for _ in range(int(n_sub)):
        x *= e
        mean += x
    grown = r * dt * n_sub if stepped else (r + kill) * dt * n_sub
    return mean / n_sub / np.exp(grown)


@JIT_INLINE
def _grow_small(src, tally, cells, k, probabilities, steps, c, w):  # pragma: no cover - compiled
    """A small population of clone state ``k`` through ``steps`` ``dt_days`` steps of a long one,
    each drawn as in a step of its own: deaths and births binomial on the whole cells, the cells
    released, then the kill (``probabilities``: per ``dt_days`` step, of death, of birth, of kill and of
    release, and the summed switch rate per division, at the rates of the long step's start: a small
    population does not move the occupancy; release 0 where the long step releases the population
    as a whole, >0 for cells that arrived within it, whose released cells leave for the blood after
    the step's circulation and are lost); the switch mutants born on the way are summed into
    ``w.to_s`` (they join their states at the step's end). Returns the population after it, and
    records in ``w.gone_week[0]`` the step (0, 1, ...) it died out in, -1 if it did not."""
    pd, pb, pk, mu, pr = probabilities
    n_s = w.to_s.size
    for sw in range(n_s):
        w.to_s[sw] = 0.0
    w.gone_week[0] = -1.0
    x = cells
    for i in range(steps):
        if x <= 0.0:
            w.gone_week[0] = i - 1.0
            break
        deaths = draw_binomial_called(src, x, pd, tally)
        births = draw_binomial_called(src, x, pb, tally) if pb > 0.0 else 0.0
        x += births - deaths
        if births > 0.0 and mu > 0.0:
            moved = flow_out(src, births, mu, c.hybrid_threshold_cells, tally)
            if moved > 0.0:
                split_out(src, moved, w.mu_ks[k], c.hybrid_threshold_cells, w.split, tally)
                for sw in range(n_s):
                    w.to_s[sw] += w.split[sw]
                x -= moved
        if pr > 0.0 and x > 0.0:
            x -= draw_binomial_called(src, x, pr, tally)
        if pk > 0.0 and x > 0.0:
            x -= draw_binomial_called(src, x, pk, tally)
    if x <= 0.0 and w.gone_week[0] < 0.0 and steps > 0:
        w.gone_week[0] = steps - 1.0
    return max(x, 0.0)


@JIT_INLINE
def _grow_small_law(src, tally, cells, k, probabilities, steps, c, w):  # pragma: no cover - compiled
    """:func:`_grow_small` in a fixed number of draws, whatever ``steps``: the population after
    ``steps`` ``dt_days`` steps from its law, not step by step (fewer than two steps: step by step).

    Each cell of a step leaves two independent Bernoulli offspring: itself, if it survives and is
    neither released nor killed (``a1 = (1 - pd) th``, ``th = (1 - pr)(1 - pk)``), and a newborn
    that is not a switch mutant and is neither released nor killed (``b1 = pb (1 - mu) th``): the
    Galton-Watson process of :func:`_grow_small`, offspring pgf ``f(s) = (1 - a1 + a1 s)(1 - b1 +
    b1 s)``. Its extinction probability by step j, ``q_j = f(q_(j - 1))``, is iterated exactly (so
    a seed establishes as step by step: the discrete-step law, not the continuous-time ``1 - d/b``),
    and ``cells`` ancestors leave ``Binomial(cells, 1 - q_n)`` surviving lines. Each surviving
    line's size above 1 is drawn from the negative binomial (a Gamma-Poisson mixture; the normal
    limit where its mean is at least ``GAUSSIAN_MIN_MEAN``) with the exact conditional mean and
    variance of the branching process, ``m^n / (1 - q_n)`` and ``(Var_n + m^2n) / (1 - q_n)`` less
    the mean squared (``m = a1 + b1``, ``Var_n = s2 m^(n - 1) (m^n - 1) / (m - 1)``); the shape
    beyond those moments is approximate. A population that dies out died in step j with
    probability proportional to ``q_j^cells - q_(j - 1)^cells`` (one uniform). Switch mutants are
    the Poisson count of their expected number, ``mu pb`` times the expected cells at the starts of
    the steps (``cells m^j``; with switch rates ~1e-8 per division and fewer than
    ``hybrid_threshold_cells`` cells, their dependence on the population's own fate is far below
    anything the cohort sees), shared among the switches as :func:`_grow_small` shares them."""
    if steps < 2 or cells <= 0.0:
        return _grow_small(src, tally, cells, k, probabilities, steps, c, w)
    pd, pb, pk, mu, pr = probabilities
    n_s = w.to_s.size
    for sw in range(n_s):
        w.to_s[sw] = 0.0
    w.gone_week[0] = -1.0
    th = (1.0 - pr) * (1.0 - pk)
    a1 = (1.0 - pd) * th
    b1 = pb * (1.0 - mu) * th
    m = a1 + b1
    q = 0.0
    starts = 0.0  # the expected cells at the steps' starts, per ancestor: 1 + m + ... + m^(n - 1)
    mj = 1.0
    for j in range(steps):
        starts += mj
        mj *= m
        q = (1.0 - a1 + a1 * q) * (1.0 - b1 + b1 * q)
        w.extinct[j] = q
    if mu > 0.0 and pb > 0.0:
        moved = draw_poisson(src, mu * pb * cells * starts, tally)
        if moved > 0.0:
            split_out(src, moved, w.mu_ks[k], c.hybrid_threshold_cells, w.split, tally)
            for sw in range(n_s):
                w.to_s[sw] += w.split[sw]
    alive = draw_binomial_called(src, cells, 1.0 - q, tally)
    if alive <= 0.0:
        tally.uniform += 1
        at = np.log(uniform(src)) + cells * np.log(q)  # log of a uniform on [0, q_n^cells)
        gone = steps - 1
        for j in range(steps):
            if cells * np.log(w.extinct[j]) >= at:
                gone = j
                break
        w.gone_week[0] = float(gone)
        return 0.0
    s2 = a1 * (1.0 - a1) + b1 * (1.0 - b1)
    var = s2 * steps if abs(m - 1.0) < 1e-12 else s2 * mj / m * (mj - 1.0) / (m - 1.0)
    mean_line = mj / (1.0 - q)  # a surviving line's size
    above = max(mean_line - 1.0, 0.0)  # its mean above 1
    spread = max((var + mj * mj) / (1.0 - q) - mean_line * mean_line, 0.0)  # and its variance
    mean = alive * above
    if mean <= 0.0:
        return alive
    if mean >= GAUSSIAN_MIN_MEAN:
        tally.normal += 1
        return alive + max(np.floor(mean + np.sqrt(alive * spread) * normal(src) + 0.5), 0.0)
    if spread > above:  # over-dispersed (a growing line): negative binomial of shape alive * r
        r = above * above / (spread - above)
        return alive + draw_poisson(src, draw_gamma(src, alive * r, tally) * above / r, tally)
    return alive + draw_poisson(src, mean, tally)


@JIT_INLINE
def _grow_mutants(where, s, pt, tb, c, w):  # pragma: no cover - compiled
    """``where = (p, n, k, r)``: the switch mutants ``w.to_s`` that clone state ``k`` of patient
    ``p``'s compartment ``n``, a large population growing at net rate ``r``, bore within a long step.
    The exact pass adds those born in a dt_days step at its end and grows them through the steps
    left. Mutants that join a large population (or are many) grow here by their mean through the
    steps after theirs, born in proportion to ``exp(r j dt)`` (the parent's births); a few founding
    or joining a small population join it at the step's end, ungrown, as before 2026-11-30 (their
    chance of dying out matters, so they would need drawing step by step, which was tried: it cost
    more CPU than the long step saves). Their kill comes with the compartment's (:func:`_treat`).
    Adds them to their states; returns their cells."""
    p, n, k, r = where
    n_sub = np.round(w.dt[0] / c.dt_days)
    dt, large = c.dt_days, c.hybrid_threshold_cells
    g = np.exp(r * dt)
    out = 0.0
    for sw in range(w.to_s.size):
        m = w.to_s[sw]
        if m <= 0.0:
            continue
        k2 = k | (1 << sw)
        x = m
        if m >= large or s.cells[p, n, k2] >= large:
            b2, d2 = _birth_death(p, n, k2, w.occ[n], pt, tb, c, w)
            r2 = b2 - d2
            # the mean of exp(r2 dt (n - 1 - j)) over the steps j = 0..n-1, weighted by g^j: the
            # geometric sums of rho = g / e and of g
            e = np.exp(r2 * dt)
            x *= e ** (n_sub - 1.0) * _geometric_mean_weight(g / e, n_sub) / _geometric_mean_weight(g, n_sub)
        s.cells[p, n, k2] += x
        out += x
    return out


@JIT_INLINE
def _stepwise_births(cells, rates, dt, long_dt):  # pragma: no cover - compiled
    """The births that switch mutants come from, in a long step of ``long_dt`` days, for a large
    population of ``cells`` with ``rates = (birth, death, kill)`` (1/day): what the exact pass counts
    in its ``dt_days`` steps, ``x_i exp(-death dt) expm1(birth dt)`` from ``x_i``, the population at the
    start of step i (grown and killed step by step), summed. The long step's own births,
    ``cells exp(-death T) expm1(birth T)``, keep the population's mean exact but are not that sum (for
    marrow growth before diagnosis ~6 % fewer over 28 days, for a population declining in soft tissue
    ~30 % fewer), so drawing the mutants from them made the switches' supply depend on the step."""
    b, d, kill = rates
    n_sub = np.round(long_dt / dt)
    g = np.exp((b - d - kill) * dt)
    return cells * np.exp(-d * dt) * np.expm1(b * dt) * n_sub * _geometric_mean_weight(g, n_sub)


@JIT_INLINE
def _geometric_mean_weight(q, n):  # pragma: no cover - compiled
    """``(1 + q + ... + q^(n-1)) / n``."""
    if abs(q - 1.0) < 1e-9:
        return 1.0
    return (q**n - 1.0) / ((q - 1.0) * n)


@JIT_INLINE
def _grow(src, tally, p, s, pt, tb, c, w):  # pragma: no cover - compiled
    """Process 1 (as :func:`emdsim.engine.kernels._grow`): births and deaths, switch mutants."""
    cells_p, traits_p, prolif_p = s.cells[p], pt.traits[p], pt.proliferation[p]
    p_death_p, survival_p = pt.p_death[p], pt.survival[p]
    occ, soil, mu_ks, mu_k, to_s, live = w.occ, w.soil, w.mu_ks, w.mu_k, w.to_s, w.live
    is_wound, in_marrow = tb.is_wound, tb.in_marrow
    birth_base, death_base, niche_loss = c.birth_rate_per_day, c.death_rate_per_day, c.niche_loss_death_rate_per_day
    dt, large, blood = w.dt[0], c.hybrid_threshold_cells, c.blood_node
    long = dt > 1.5 * c.dt_days  # a long step: rates to probabilities here, small populations by dt_days
    adaptive = c.max_step_days > 1.5 * c.dt_days
    node_kill, i_sens = tb.kill_rate_per_day[s.regimen[p]], c.trait_drug_sensitivity
    i_nd, i_prolif, i_em = c.trait_niche_dependence, c.trait_proliferation, c.trait_em_proliferation
    n_n, n_k = cells_p.shape
    n_s = mu_ks.shape[1]
    for n in range(n_n):
        if not live[n]:
            continue
        o = occ[n]
        if long and o >= LOW_OCCUPANCY:  # below it, free capacity hardly changes in a step
            o = _occupancy_over_long_step(p, n, o, s, pt, tb, c, w)
        so = soil[n]
        im = in_marrow[n]
        wound = is_wound[n]
        total = 0.0
        treated = 0.0  # a long step: the cells after it, predicted with the kill
        # clone states in decreasing order: a mutant (state k | bit > k) joins a state already
        # advanced this step, so newborn mutants do not grow or die before the next step, as in the
        # exact pass (which adds them after the loop)
        for k in range(n_k - 1, -1, -1):
            cnk = cells_p[n, k]
            if cnk <= 0.0:
                continue
            supp = _support(traits_p[k, i_nd], so)
            b = 0.0
            if n != blood:
                b = _birth_rate(
                    birth_base, _proliferation(prolif_p * traits_p[k, i_prolif], traits_p[k, i_em], im), o, supp
                )
            kr = dr = 0.0  # kill and death hazards: what a long step needs (long implies adaptive)
            if adaptive:  # the entry's net growth rate, for the prediction of the next step
                kr = _kill_rate(node_kill[n], s.efficacy[p], traits_p[k, i_sens]) if node_kill[n] > 0.0 else 0.0
                dr = _death_rate(death_base, niche_loss, supp)
                w.rate[n, k] = b - dr - kr
                w.kill[n, k] = kr
            if long and cnk < large:  # a small population: through the dt_days steps by their law
                if wound:
                    pd, sd = _death_and_survival(death_base, niche_loss, supp, c.dt_days)
                else:
                    pd, sd = p_death_p[n, k], survival_p[n, k]
                pb = _birth_probability_given_survival(b, sd, c.dt_days) if b > 0.0 else 0.0
                pk = _event_probability(kr, c.dt_days) if kr > 0.0 else 0.0
                n_sub = int(np.round(dt / c.dt_days))
                x = _grow_small_law(src, tally, cnk, k, (pd, pb, pk, mu_k[k], 0.0), n_sub, c, w)
                w.stepped[n, k] = 1
                w.gone[n, k] = w.gone_week[0]
                for sw in range(n_s):
                    if to_s[sw] > 0.0:
                        w.gone[n, k] = -1.0  # its mutants live on in the compartment
                        cells_p[n, k | (1 << sw)] += to_s[sw]
                        total += to_s[sw]
                        treated += to_s[sw]
                cells_p[n, k] = x
                total += x
                treated += x
                continue
            if wound or long:
                pd, sd = _death_and_survival(death_base, niche_loss, supp, dt)
            else:
                pd, sd = p_death_p[n, k], survival_p[n, k]
            deaths = flow_within(src, cnk, pd, large, tally)
            births = 0.0
            if n != blood:
                if cnk >= large:  # the expected births of a linear birth-death process: no cap at one per cell
                    births = cnk * (sd * np.expm1(b * dt))
                else:
                    births = flow_within(src, cnk, _birth_probability_given_survival(b, sd, dt), large, tally)
            left = births
            if births > 0.0 and n_s > 0:
                supply = births
                if long:  # the births the dt_days steps would have counted for switching
                    supply = _stepwise_births(cnk, (b, dr, kr), c.dt_days, dt)
                moved = min(flow_out(src, supply, mu_k[k], large, tally), births)
                if moved > 0.0:
                    split_out(src, moved, mu_ks[k], large, to_s, tally)
                    grown = moved
                    if long:  # born within the step: each grows through the weeks left after its own
                        grown = _grow_mutants((p, n, k, b - dr), s, pt, tb, c, w)
                    else:
                        for sw in range(n_s):
                            if to_s[sw] > 0.0:
                                cells_p[n, k | (1 << sw)] += to_s[sw]
                    total += grown
                    treated += grown
                    left -= moved
            x = max(cnk - deaths + left, 0.0)
            cells_p[n, k] = x
            total += x
            treated += x * np.exp(-kr * dt) if long else x
        if long:
            w.occk[n] = _occupancy(treated, tb.capacity_cells[n])
        occ[n] = _occupancy(total, tb.capacity_cells[n])


@JIT_INLINE
def _leave_long(src, tally, cells, q, nk, c, w):  # pragma: no cover - compiled
    """Cells of clone state ``nk = (n, k)`` (``cells``, grown through a long step) that leave it with
    the long step's probability ``q`` (release, spill): returns the cells that leave and the cells it
    loses. Those that leave are drawn at ``q`` times :func:`_mean_cells_factor` (``q_out``): they
    come from the population as it was in each dt_days step, and do not grow (or die) after they
    left; the population left behind is, as in the exact pass, its grown self times ``1 - q``
    (``(1 - q_dt)^n``), so the loss is the cells that left thinned or topped up to ``cells * q`` in
    expectation (without it, a growing population would keep the offspring of the cells it sent
    away)."""
    n, k = nk
    n_sub = np.round(w.dt[0] / c.dt_days)
    large = c.hybrid_threshold_cells
    q_out = min(q * _mean_cells_factor(w.rate[n, k], w.kill[n, k], w.stepped[n, k], c.dt_days, n_sub), 1.0)
    out = flow_out(src, cells, q_out, large, tally)
    if q_out < q:
        return out, out + flow_within(src, cells - out, (q - q_out) / (1.0 - q_out), large, tally)
    if q_out > q:
        return out, flow_within(src, out, q / q_out, large, tally)
    return out, out


@JIT_INLINE
def _release(src, tally, p, s, pt, tb, c, w):  # pragma: no cover - compiled
    """Process 2 (as :func:`emdsim.engine.kernels._release`): egress and shedding into ``w.entering``."""
    cells_p, retained_p, occ, entering, live = s.cells[p], pt.retained[p], w.occ, w.entering, w.live
    crowding_gain, dt, large = c.crowding_egress_gain, w.dt[0], c.hybrid_threshold_cells
    n_n, n_k = cells_p.shape
    entering[:] = 0.0
    w.entering_rate[:] = 0.0
    n_sub = np.round(dt / c.dt_days)
    for n in range(n_n):
        if not live[n] or tb.release_rate_per_day[n] <= 0.0:
            continue
        # a long step: the hazard (linear in the occupancy) at the mean of its dt_days steps' ends
        o = occ[n] if n_sub < 1.5 else _mean_over_steps(w.occ0[n], occ[n], w.occk[n], n_sub)
        for k in range(n_k):
            cnk = cells_p[n, k]
            if cnk <= 0.0:
                continue
            rate = _crowded_release(retained_p[n, k], o, crowding_gain)
            q = _event_probability(rate, dt)
            if n_sub > 1.5:
                out, lost = _leave_long(src, tally, cnk, q, (n, k), c, w)
                cells_p[n, k] = max(cnk - lost, 0.0)
            else:
                out = flow_out(src, cnk, q, large, tally)
                cells_p[n, k] = cnk - out
            entering[k] += out
            if n_sub > 1.5:
                w.entering_rate[k] += out * w.rate[n, k]
    if n_sub > 1.5:  # the release-weighted net rate of the sources: when in the step the cells come
        for k in range(n_k):
            w.entering_rate[k] = w.entering_rate[k] / entering[k] if entering[k] > 0.0 else 0.0


@JIT_INLINE
def _breach_step(u, o0, o_grown, o_treated, hz, n_sub, c):  # pragma: no cover - compiled
    """The dt_days step (1..n) of a long step in which a cortex breaks, given that it does, from the
    uniform ``u`` that decided it (``u`` below the step's event probability): the first step whose
    cumulative event probability exceeds ``u``, each step's hazard that of its occupancy
    (:func:`_step_occupancy`) plus the part of ``hz`` (the step's mean hazard) that does not depend
    on it (the focal breach)."""
    dt = c.dt_days
    thr, rate = c.cortical_disruption_occupancy, c.cortical_disruption_rate_per_day
    occupancy_part = 0.0
    for j in range(1, int(n_sub) + 1):
        occupancy_part += _disruption_rate(_step_occupancy(o0, o_grown, o_treated, j, n_sub), thr, rate) / n_sub
    rest = max(hz - occupancy_part, 0.0)
    cum = 0.0
    for j in range(1, int(n_sub) + 1):
        h = _disruption_rate(_step_occupancy(o0, o_grown, o_treated, j, n_sub), thr, rate) + rest
        cum += h * dt
        if u < -np.expm1(-cum):
            return float(j)
    return n_sub


@JIT_INLINE
def _extend(src, tally, p, s, pt, tb, c, w):  # pragma: no cover - compiled
    """Process 3 (as :func:`emdsim.engine.kernels._extend`): cortical breach and spill."""
    cells_p, disrupted_p, last_local_p, occ, live = s.cells[p], s.disrupted[p], s.last_local[p], w.occ, w.live
    ps_nodes, ps_marrow = tb.ps_nodes, tb.ps_marrow
    disruption_occ, disruption_rate = c.cortical_disruption_occupancy, c.cortical_disruption_rate_per_day
    traits_p, i_sens = pt.traits[p], c.trait_drug_sensitivity
    focal_cells, focal_rate = c.focal_breach_cells, c.focal_breach_rate_per_day
    treated = s.status[p] == c.status_followed and focal_rate > 0.0  # diagnosed, so under therapy
    dt, p_spill, large = w.dt[0], c.p_spill_per_step, c.hybrid_threshold_cells
    n_sub = np.round(dt / c.dt_days)
    if n_sub > 1.5:
        p_spill = _event_probability(c.local_extension_rate_per_day, dt)
    n_k = cells_p.shape[1]
    for i in range(ps_nodes.size):
        m = ps_marrow[i]
        if not live[m]:
            continue
        if not disrupted_p[m]:
            if n_sub < 1.5:
                hz = _disruption_rate(occ[m], disruption_occ, disruption_rate)
            else:  # a long step: the mean of the hazards at its dt_days steps' ends
                hz = 0.0
                # (none while the occupancy, at most max(start, grown), stays below the threshold)
                for j in range(1, int(n_sub) + 1 if max(w.occ0[m], occ[m]) > disruption_occ else 1):
                    o = _step_occupancy(w.occ0[m], occ[m], w.occk[m], j, n_sub)
                    hz += _disruption_rate(o, disruption_occ, disruption_rate) / n_sub
            if treated:  # resistant clones regrow as focal lesions
                hz += _focal_breach_rate(_resistant_cells(cells_p, traits_p, m, i_sens), focal_cells, focal_rate)
            if hz > 0.0:
                tally.uniform += 1
                u = uniform(src)
                if u < _event_probability(hz, dt):
                    disrupted_p[m] = True
                    if n_sub > 1.5:  # the dt_days step it breaks in (inversion of the same uniform)
                        breach = _breach_step(u, w.occ0[m], occ[m], w.occk[m], hz, n_sub, c)
                        w.spill_weeks[ps_nodes[i]] = n_sub - breach + 1.0
        if not disrupted_p[m]:
            continue
        ps = ps_nodes[i]
        if n_sub > 1.5 and w.spill_weeks[ps] <= 0.0:  # broken before this step: it spills throughout
            w.spill_weeks[ps] = n_sub
        for k in range(n_k):
            cmk = cells_p[m, k]
            if cmk <= 0.0:
                continue
            q = p_spill
            if n_sub > 1.5:  # the long step's share of the spill: from the step it broke in
                q = min(q * w.spill_weeks[ps] / n_sub, 1.0)
                moved, lost = _leave_long(src, tally, cmk, q, (m, k), c, w)
                cells_p[m, k] = max(cmk - lost, 0.0)
            else:
                moved = flow_out(src, cmk, q, large, tally)
                cells_p[m, k] = cmk - moved
            if moved > 0.0:
                cells_p[ps, k] += moved
                last_local_p[ps, k] = moved
                live[ps] = 1


@JIT_INLINE
def _circulate(src, tally, p, s, pt, tb, c, w):  # pragma: no cover - compiled
    """Process 4 (as :func:`emdsim.engine.kernels._circulate`): death in the blood, arrest, homing,
    engraftment or colonisation."""
    cells_p, inflammation_p = s.cells[p], w.inflammation
    homing_p, traits_p = pt.homing[p], pt.traits[p]
    dest, dest_wound = tb.dest, tb.dest_wound
    entering, weights, settle, soil = w.entering, w.weights, w.settle, w.soil
    p_arrest, p_die_rest = c.p_arrest_per_step, c.p_die_in_blood_per_step
    if w.dt[0] > 1.5 * c.dt_days:  # competing extravasation and death over the long step
        p_arrest, p_die_rest = blood_probabilities(c.extravasation_rate_per_day, c.blood_death_rate_per_day, w.dt[0])
    large, blood, i_nd = c.hybrid_threshold_cells, c.blood_node, c.trait_niche_dependence
    n_k = cells_p.shape[1]
    n_d = dest.size
    long = w.dt[0] > 1.5 * c.dt_days
    n_sub = np.round(w.dt[0] / c.dt_days)
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
        infl, soil_k = inflammation_p, soil
        if long:  # the wounds as they were when this clone's cells arrived (in proportion to g^j)
            g = np.exp(w.entering_rate[k] * c.dt_days)
            for j in range(n_d):
                if dest_wound[j]:
                    nd = dest[j]
                    q = w.inflammation_q[nd]
                    x = (
                        inflammation_p[nd]
                        * _geometric_mean_weight(g * q, n_sub)
                        / (_geometric_mean_weight(g, n_sub) * _geometric_mean_weight(q, n_sub))
                    )
                    w.inflammation_k[nd], w.soil_k[nd] = x, tb.soil[nd] * x
            infl, soil_k = w.inflammation_k, w.soil_k
        p_marrow, p_tissue = _settle_probabilities(homing_p[k], infl, traits_p[k, i_nd], soil_k, tb, c, weights, settle)
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
    dt = w.dt[0]
    long = dt > 1.5 * c.dt_days  # the tabled probabilities are per dt_days
    if not long and (s.kill_regimen[p] != r or s.kill_efficacy[p] != s.efficacy[p]):
        _kill_probabilities(node_kill, s.efficacy[p], pt.traits[p], c.trait_drug_sensitivity, c.dt_days, kill_p)
        s.kill_regimen[p], s.kill_efficacy[p] = r, s.efficacy[p]
    cells_p, large, traits_p, i_sens = s.cells[p], c.hybrid_threshold_cells, pt.traits[p], c.trait_drug_sensitivity
    n_n, n_k = cells_p.shape
    for n in range(n_n):
        if not w.live[n] or node_kill[n] <= 0.0:
            continue
        for k in range(n_k):
            cnk = cells_p[n, k]
            if cnk <= 0.0:
                continue
            if not long:
                cells_p[n, k] = cnk - flow_within(src, cnk, kill_p[n, k], large, tally)
                continue
            # a long step: the cells there since its start are exposed for all of it (a small
            # population was treated step by step in growth); those that arrived during it
            # (through the blood or the cortex), by :func:`_arrive`
            old = cnk - min(s.last_haem[p, n, k] + s.last_local[p, n, k], cnk)
            if old > 0.0 and not w.stepped[n, k]:
                kr = _kill_rate(node_kill[n], s.efficacy[p], traits_p[k, i_sens])
                cells_p[n, k] = cnk - flow_within(src, old, _event_probability(kr, dt), large, tally)


@JIT_INLINE
def _step_inflammation(start, end, n_sub):  # pragma: no cover - compiled
    """A wound's inflammation over a patient's step of ``n_sub`` dt_days steps, from ``start`` at its
    start to ``end`` at its end: the exact pass decays it once per dt_days step (by ``q``) before each
    step's processes, so its dt_days steps see ``start q^i``, i = 1..n; a long step takes their mean
    (``q = (end / start)^(1/n)``; wounds open only at the start of a patient's step, where ``start``
    is 1). The hazards that inflammation scales are linear in it (a wound's soil, through the niche
    support, in birth and death; its homing weight, nearly, in the share of arrested cells it
    receives), so the mean gives the long step the exact pass's summed hazards. Until 2026-12-02 an
    inflamed wound held its patient on dt_days steps, half of all the short steps of a cohort.
    Returns the mean and ``q`` (1 where the step is a dt_days one or the wound not inflamed)."""
    if n_sub < 1.5 or start <= 0.0 or end <= 0.0:
        return end, 1.0
    q = (end / start) ** (1.0 / n_sub)
    return start * q * _geometric_mean_weight(q, n_sub), q


@JIT_INLINE
def _week_inflammation(mean, q, j, n_sub):  # pragma: no cover - compiled
    """A wound's inflammation in the (j + 1)-th dt_days step (j = 0 .. n_sub - 1) of a long step over
    which it falls by ``q`` per step and has the mean ``mean`` (:func:`_step_inflammation`)."""
    return mean * q**j / _geometric_mean_weight(q, n_sub)


@JIT_INLINE
def _arrival_rates(p, n, k, s, pt, tb, c, w):  # pragma: no cover - compiled
    """The birth, death and kill hazards (1/day) of clone ``k``'s arrivals at compartment ``n`` in a
    long step (at the occupancy after its growth): all a large arrival, taken by its mean, needs."""
    b, d = _birth_death(p, n, k, w.occ[n], pt, tb, c, w)
    node_kill = tb.kill_rate_per_day[s.regimen[p], n]
    kr = _kill_rate(node_kill, s.efficacy[p], pt.traits[p, k, c.trait_drug_sensitivity]) if node_kill > 0.0 else 0.0
    return b, d, kr


@JIT_INLINE
def _arrival_step_probabilities(p, n, k, rates, pt, c, w):  # pragma: no cover - compiled
    """Per dt_days step probabilities of death, birth, kill and release of clone ``k``'s arrivals at
    compartment ``n`` from their ``rates`` (:func:`_arrival_rates`): what a small arrival is drawn with."""
    b, d, kr = rates
    dt = c.dt_days
    pk = _event_probability(kr, dt) if kr > 0.0 else 0.0
    pb = _birth_probability_given_survival(b, np.exp(-d * dt), dt) if b > 0.0 else 0.0
    pr = _event_probability(_crowded_release(pt.retained[p, n, k], w.occ[n], c.crowding_egress_gain), dt)
    return _event_probability(d, dt), pb, pk, pr


@JIT_INLINE
def _arrival_probabilities(p, n, k, s, pt, tb, c, w):  # pragma: no cover - compiled
    """:func:`_arrival_step_probabilities` of clone ``k``'s arrivals at compartment ``n``."""
    return _arrival_step_probabilities(p, n, k, _arrival_rates(p, n, k, s, pt, tb, c, w), pt, c, w)


@JIT_INLINE
def _arrive_new(src, tally, where, s, pt, tb, c, w):  # pragma: no cover - compiled
    """``where = (p, n, n_sub, until)``: a long step of ``n_sub`` dt_days steps brings patient ``p``'s
    compartment ``n`` few cells through the blood, the compartment empty at the step's start
    (``until`` 0) or its small populations all dead within it (by the end of its dt_days step
    ``until - 1``, 0-based; the lesion never seen): they go as the exact pass takes them, step by step.

    Each clone's arrivals are shared among the ``n_sub`` dt_days steps (a multinomial as conditional
    binomials) in proportion to ``exp(r j dt)``, ``r`` the net rate of the populations that released
    them (``w.entering_rate``: growing sources send more cells late in the step); in each step the
    cells already there grow, die and are released (lost: see :func:`_grow_small`), that step's
    arrivals join them, and all are treated. A lesion begins when its compartment, empty at the end
    of a dt_days step, holds cells at the end of the next, as the exact pass, which forgets a lesion
    that died out unseen, books it: the onset of the occupancy that lasts to the step's end is
    ``w.onset_steps[n]`` steps before it; where the compartment emptied within the step and filled
    again, the earlier onset is forgotten (:func:`emdsim.engine.kernels._record_onset` books the new
    one at the step's end)."""
    p, n, n_sub, until = where
    cells_p = s.cells[p]
    n_k = cells_p.shape[1]
    weekly, probs = w.weekly, w.probs
    healing = w.inflammation_q[n] < 1.0  # a wound whose inflammation falls within the step
    mean_soil = w.soil[n]
    for k in range(n_k):
        new = min(s.last_haem[p, n, k], cells_p[n, k])
        weekly[k, :] = 0.0
        if new <= 0.0:
            continue
        pd, pb, pk, pr = _arrival_probabilities(p, n, k, s, pt, tb, c, w)
        probs[k, 0], probs[k, 1], probs[k, 2], probs[k, 3] = pd, pb, pk, pr
        left = new
        g = np.exp(w.entering_rate[k] * c.dt_days)  # the weight of each step over the one before
        if healing:  # times the wound's homing weight and colonisation in each step, which fall as it heals
            d_k = pt.traits[p, k, c.trait_niche_dependence]
            tot = 0.0
            for j in range(n_sub):
                infl = _week_inflammation(w.inflammation[n], w.inflammation_q[n], j, n_sub)
                col = _colonisation_probability(c.p_colonisation, _support(d_k, tb.soil[n] * infl))
                w.week_weight[j] = g**j * infl * col
                tot += w.week_weight[j]
        for j in range(n_sub):
            # this step's share of the weights left: 1 / (1 + g + ... + g^(n_sub - 1 - j))
            if healing:
                share = w.week_weight[j] / tot if tot > 0.0 else 1.0
                tot -= w.week_weight[j]
            else:
                share = 1.0 / (float(n_sub - j) if abs(g - 1.0) < 1e-12 else (g ** (n_sub - j) - 1.0) / (g - 1.0))
            a = left if j == n_sub - 1 else draw_binomial_called(src, left, min(share, 1.0), tally)
            weekly[k, j] = a
            left -= a
            if left <= 0.0:
                break
        cells_p[n, k] -= new
    onset = -1
    held = until > 0  # occupied since before the step, without a break
    for j in range(n_sub):
        total = 0.0
        if healing:  # this step's soil, and the probabilities of the clones there or arriving
            w.soil[n] = tb.soil[n] * _week_inflammation(w.inflammation[n], w.inflammation_q[n], j, n_sub)
            for k in range(n_k):
                if cells_p[n, k] > 0.0 or weekly[k, j] > 0.0:
                    pd, pb, pk, pr = _arrival_probabilities(p, n, k, s, pt, tb, c, w)
                    probs[k, 0], probs[k, 1], probs[k, 2], probs[k, 3] = pd, pb, pk, pr
        for k in range(n_k):
            x = cells_p[n, k]
            if x > 0.0:  # this step's growth and release, as a small population takes them; its kill below
                x = _grow_small(src, tally, x, k, (probs[k, 0], probs[k, 1], 0.0, 0.0, probs[k, 3]), 1, c, w)
            if weekly[k, j] > 0.0:
                x += weekly[k, j]
            if x > 0.0 and probs[k, 2] > 0.0:
                x -= draw_binomial_called(src, x, probs[k, 2], tally)
            cells_p[n, k] = max(x, 0.0)
            total += cells_p[n, k]
        if total <= 0.0 and j >= until - 1:  # empty at the end of this dt_days step
            onset = -1
            held = False
        elif onset < 0 and not held:
            onset = j
    w.soil[n] = mean_soil
    w.onset_steps[n] = float(n_sub - 1 - onset) if onset >= 0 else 0.0
    if until > 0 and not held and onset >= 0:  # emptied and filled again: a new lesion
        s.lesion_onset[p, n] = np.nan
        s.lesion_route[p, n] = 0


@JIT_INLINE
def _emptied_in(p, n, s, w):  # pragma: no cover - compiled
    """One past the index (0-based) of the dt_days step by whose end every population compartment
    ``n`` held at a long step's start had died out, each a small one drawn step by step; 0 if one
    lives on (or a large one, or a switch mutant of one, is there)."""
    last = 0.0
    for k in range(s.cells.shape[2]):
        if w.stepped[n, k]:
            if w.gone[n, k] < 0.0:
                return 0
            last = max(last, w.gone[n, k] + 1.0)
        elif s.cells[p, n, k] - min(s.last_haem[p, n, k] + s.last_local[p, n, k], s.cells[p, n, k]) > 0.0:
            return 0
    return int(last)


@JIT_INLINE
def _source_rate(p, n, s, tb, w):  # pragma: no cover - compiled
    """The net growth rate (1/day) over a long step of the populations patient ``p``'s arrivals at
    compartment ``n`` came from, weighted by the arrivals: the marrow site beside a paraskeletal
    compartment for the cells it spilled (its clones' ``w.rate``, the kill included), the released
    cells' sources for the cells through the blood (``w.entering_rate``). 0 without arrivals."""
    m = -1
    if w.spill_weeks[n] > 0.0:
        for i in range(tb.ps_nodes.size):
            if tb.ps_nodes[i] == n:
                m = tb.ps_marrow[i]
    tot = 0.0
    acc = 0.0
    for k in range(s.cells.shape[2]):
        x = s.last_haem[p, n, k]
        if x > 0.0:
            tot += x
            acc += x * w.entering_rate[k]
        x = s.last_local[p, n, k]
        if x > 0.0 and m >= 0:
            tot += x
            acc += x * w.rate[m, k]
    return acc / tot if tot > 0.0 else 0.0


@JIT_INLINE
def _arrival_step(u, weeks, g):  # pragma: no cover - compiled
    """The dt_days step ``j`` (0 .. ``weeks`` - 1, counted from the first of the ``weeks`` in which
    cells arrived) of a long step's arrivals, from the uniform ``u`` by inversion, with probability
    proportional to ``g^j``: in the exact pass the cells that leave a population in each dt_days step
    are a share of it, and ``g = exp(r dt_days)`` is its growth from one step to the next (``r``:
    :func:`_source_rate`). Uniform where ``g`` is 1. A population shrinking under therapy sends
    most of its cells early in the step, a growing one late. Drawn uniformly (before 2026-12-02),
    cells spilled from a marrow shrinking under therapy arrived too late to be treated for as long
    as they were: the paraskeletal cells of six long steps were 17 % too many (a growing marrow's,
    within 1 %; ``tests/test_hybrid.py``)."""
    if abs(g - 1.0) < 1e-9 or weeks < 1.5:
        return min(np.floor(u * weeks), weeks - 1.0)
    j = np.floor(np.log1p(u * (g**weeks - 1.0)) / np.log(g))
    return min(max(j, 0.0), weeks - 1.0)


@JIT_INLINE
def _arrive(src, tally, p, s, pt, tb, c, w):  # pragma: no cover - compiled
    """A long step's arrivals (through the blood or the cortex), after process 5: in the exact pass
    cells that arrive at the end of the i-th of its ``n`` dt_days steps are treated in that step and
    then grow, die and are treated through the ``n - i`` steps left. A few cells through the blood at
    a compartment empty at the step's start, or emptied within it, go step by step
    (:func:`_arrive_new`, which dates a new lesion from when its cells arrived). Other arrivals at a
    compartment come at one such step (``w.arrive_steps[n]`` steps before the end, which also dates a
    new lesion's onset; spilled cells from the breach on), drawn in proportion to the cells their
    sources held in each step (:func:`_arrival_step`), and go through the steps left as a small
    population does (:func:`_grow_small_law`; a large arrival by its mean)."""
    cells_p, dt = s.cells[p], c.dt_days
    n_n, n_k = cells_p.shape
    n_sub = int(np.round(w.dt[0] / dt))
    for n in range(n_n):
        w.arrive_steps[n] = 0.0
        w.onset_steps[n] = 0.0
        if not w.live[n]:
            continue
        if w.spill_weeks[n] <= 0.0 and n != c.blood_node:
            arrived = 0.0
            for k in range(n_k):
                arrived += min(s.last_haem[p, n, k], cells_p[n, k])
            if 0.0 < arrived < c.hybrid_threshold_cells:
                if s.node_total[p, n] <= 0.0:
                    _arrive_new(src, tally, (p, n, n_sub, 0), s, pt, tb, c, w)
                    continue
                if np.isnan(s.lesion_detectable[p, n]):
                    until = _emptied_in(p, n, s, w)
                    if until > 0:
                        _arrive_new(src, tally, (p, n, n_sub, until), s, pt, tb, c, w)
                        continue
        first = True
        for k in range(n_k):
            new = min(s.last_haem[p, n, k] + s.last_local[p, n, k], cells_p[n, k])
            if new <= 0.0:
                continue
            if first:
                # cells spilled through a cortex came in each step since it broke (the first, for a new
                # lesion's onset: the breach); cells through the blood, in any step: in one step drawn
                # in proportion to the cells their sources held in each (:func:`_arrival_step`)
                weeks = w.spill_weeks[n] if w.spill_weeks[n] > 0.0 else float(n_sub)
                tally.uniform += 1
                g = np.exp(_source_rate(p, n, s, tb, w) * dt) * w.inflammation_q[n]
                w.arrive_steps[n] = weeks - 1.0 - _arrival_step(uniform(src), weeks, g)  # steps left after theirs
                w.onset_steps[n] = weeks - 1.0 if w.spill_weeks[n] > 0.0 else w.arrive_steps[n]
                first = False
            rates = _arrival_rates(p, n, k, s, pt, tb, c, w)
            left = int(w.arrive_steps[n])
            x = new
            if x >= c.hybrid_threshold_cells:  # by its mean: treated in its step, then the steps left
                b, d, kr = rates
                x *= np.exp(-kr * dt + (b - d - kr) * dt * left)
            else:
                pd, pb, pk, pr = _arrival_step_probabilities(p, n, k, rates, pt, c, w)
                if pk > 0.0:
                    x -= draw_binomial_called(src, x, pk, tally)
                # the steps left, as a small population takes them (no switch mutants: arrivals are few)
                x = _grow_small_law(src, tally, x, k, (pd, pb, pk, 0.0, pr), left, c, w)
            cells_p[n, k] += max(x, 0.0) - new


@JIT_INLINE
def _date_onsets(t, nodes, s, p, w, c):  # pragma: no cover - compiled
    """In a long step, a lesion whose onset :func:`emdsim.engine.kernels._record_onset` booked at ``t``
    (the step's end) began at the end of the dt_days step its first cells arrived in,
    ``w.onset_steps[n]`` steps before ``t``."""
    onset_p = s.lesion_onset[p]
    for i in range(nodes.size):
        n = nodes[i]
        if onset_p[n] == t:
            onset_p[n] = t - w.onset_steps[n] * c.dt_days


@JIT_INLINE
def _book_lesions(src, tally, p, s, c, w):  # pragma: no cover - compiled
    """Round small populations to whole cells, remove those below ``extinction_cells``, total each
    node, and forget a lesion that died out before it was ever seen (as the exact pass)."""
    cells_p, onset_p, route_p = s.cells[p], s.lesion_onset[p], s.lesion_route[p]
    detectable_p, node_total_p = s.lesion_detectable[p], s.node_total[p]
    large, extinction = c.hybrid_threshold_cells, c.extinction_cells
    upper_p, lower_p = s.node_upper[p], s.node_lower[p]
    adaptive = c.max_step_days > 1.5 * c.dt_days
    horizon = c.step_margin * c.max_step_days
    n_n, n_k = cells_p.shape
    for n in range(n_n):
        if not w.live[n]:
            node_total_p[n] = 0.0
            upper_p[n] = lower_p[n] = 0.0
            continue
        for k in range(n_k):
            x = cells_p[n, k]
            if x > 0.0:
                x = whole_cells(src, x, large, tally)
                cells_p[n, k] = x if x >= extinction else 0.0
        tot = _node_sum(cells_p, n)
        node_total_p[n] = tot
        if adaptive:  # the compartment after a long step, predicted at most and at least
            up = lo = 0.0
            for k in range(n_k):
                x = cells_p[n, k]
                if x > 0.0:
                    r = w.rate[n, k] * horizon
                    if r > 0.0:
                        up += x * np.exp(r)
                        lo += x
                    else:
                        up += x
                        lo += x * np.exp(r)
            upper_p[n], lower_p[n] = up, lo
        if tot == 0.0 and not np.isnan(onset_p[n]) and np.isnan(detectable_p[n]):
            onset_p[n] = np.nan
            route_p[n] = 0


def scratch(n_nodes: int, n_clones: int, n_switches: int, n_dest: int, max_substeps: int) -> _Scratch:
    """The work arrays of a pass (:class:`_Scratch`), fresh: allocated outside the compiled pass,
    which runs without numba's reference counting (a block keeps them: :func:`scratch_for`)."""
    n_n, n_k, n_s, n_d = n_nodes, n_clones, n_switches, n_dest
    return _Scratch(
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
        dt=np.empty(1),
        rate=np.zeros((n_n, n_k)),
        occ0=np.empty(n_n),
        kill=np.zeros((n_n, n_k)),
        occk=np.zeros(n_n),
        stepped=np.zeros((n_n, n_k), dtype=np.uint8),
        arrive_steps=np.zeros(n_n),
        onset_steps=np.zeros(n_n),
        spill_weeks=np.zeros(n_n),
        split=np.zeros(n_s),
        weekly=np.zeros((n_k, max_substeps + 1)),
        probs=np.zeros((n_k, 4)),
        entering_rate=np.zeros(n_k),
        gone=np.full((n_n, n_k), -1.0),
        extinct=np.zeros(max_substeps + 1),
        gone_week=np.full(1, -1.0),
        week_weight=np.zeros(max_substeps + 1),
        inflammation=np.zeros(n_n),
        inflammation_q=np.ones(n_n),
        inflammation_k=np.zeros(n_n),
        soil_k=np.zeros(n_n),
    )


def scratch_for(state, tables, k) -> _Scratch:
    """:func:`scratch` sized for the block ``state`` and its ``tables`` and constants ``k`` (as
    :func:`advance` takes them). A block may keep it and pass it to every :func:`advance`: the pass
    writes each work array before it reads it, patient by patient (the fingerprints of
    ``benchmarks/fingerprint.py`` are the same with fresh and with kept arrays)."""
    st, tb = CourseState(*state), StepTables(*tables)
    _, n_n, n_k = st.cells.shape
    substeps = int(np.round(k["max_step_days"][0] / k["dt_days"][0]))
    return scratch(n_n, n_k, tb.switch_rate_per_division.size, tb.dest.size, substeps)


def advance(streams, counts, t, state, patients, tables, k, w: _Scratch | None = None) -> None:
    """Processes 1-5 for every living patient, then the lesions' bookkeeping, at time ``t`` (days):
    :func:`emdsim.engine.kernels.advance` with the hybrid flows, patient ``p`` drawing from its own
    stream (``streams (P, 4)``, xoshiro256++ states advanced in place; or their records,
    :func:`emdsim.engine.streams.stream_records`); ``w`` the work arrays (:func:`scratch_for`: a
    block keeps its own, so that a step does not allocate them), fresh ones if omitted.

    The compiled pass (:func:`_advance`) runs without numba's reference counting (``_nrt=False``):
    every array it uses comes from here. Inlined per patient, its processes took the whole state
    tuple member by member, an atomic increment and decrement per array per call (perf, 2026-11-30:
    ~23 % of the pass's CPU after the streams became records)."""
    records = streams if streams.dtype == STREAM_RECORD else stream_records(streams)
    if w is None:
        w = scratch_for(state, tables, k)
    _advance(records, counts, t, state, patients, tables, k, w)


@JIT_NO_NRT
def _advance(streams, counts, t, state, patients, tables, k, w):  # pragma: no cover - compiled
    """:func:`advance`, compiled, with the work arrays ``w`` (:func:`scratch`)."""
    s, pt, tb, c = CourseState(*state), PatientTables(*patients), StepTables(*tables), k[0]
    tally = counts[0]
    n_p, n_n, n_k = s.cells.shape
    for p in range(n_p):
        if s.status[p] > c.status_followed:  # the course has ended: frozen
            continue
        if s.next_days[p] > t + 0.5 * c.dt_days:  # within a long step: advanced at its end
            continue
        src = streams[p]
        w.dt[0] = s.step_days[p]
        if c.max_step_days > 1.5 * c.dt_days:
            w.rate[:, :] = 0.0
            w.kill[:, :] = 0.0
            w.spill_weeks[:] = 0.0
            w.stepped[:, :] = 0
            w.gone[:, :] = -1.0
        n_sub = np.round(w.dt[0] / c.dt_days)
        for n in range(n_n):
            w.inflammation[n], w.inflammation_q[n] = _step_inflammation(
                s.inflammation_start[p, n], s.inflammation[p, n], n_sub
            )
            w.soil[n] = tb.soil[n] * w.inflammation[n] if tb.is_wound[n] else tb.soil[n]
            w.inflammation_k[n], w.soil_k[n] = w.inflammation[n], w.soil[n]
            w.occ[n] = _occupancy(s.node_total[p, n], tb.capacity_cells[n])
            w.occ0[n] = w.occ[n]
            w.live[n] = 1 if s.node_total[p, n] > 0.0 else 0
        s.last_local[p, :, :] = 0.0
        s.last_haem[p, :, :] = 0.0
        _switch_table(tb.switch_rate_per_division, pt.switch_factor[p], w.mu_ks, w.mu_k)
        _grow(src, tally, p, s, pt, tb, c, w)  # 1
        _release(src, tally, p, s, pt, tb, c, w)  # 2
        _extend(src, tally, p, s, pt, tb, c, w)  # 3
        _circulate(src, tally, p, s, pt, tb, c, w)  # 4
        _treat(src, tally, p, s, pt, tb, c, w)  # 5
        long = w.dt[0] > 1.5 * c.dt_days
        if long:  # a long step: its arrivals at the dt_days step they came in
            _arrive(src, tally, p, s, pt, tb, c, w)
        _record_onset(t, tb.ps_nodes, s.last_local[p], c.route_local, s.lesion_onset[p], s.lesion_route[p])
        _record_onset(t, tb.em_nodes, s.last_haem[p], c.route_haematogenous, s.lesion_onset[p], s.lesion_route[p])
        if long:
            _date_onsets(t, tb.ps_nodes, s, p, w, c)
            _date_onsets(t, tb.em_nodes, s, p, w, c)
        _book_lesions(src, tally, p, s, c, w)
