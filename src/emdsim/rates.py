"""Hazards to per-step probabilities, and the one place where flows of cells are realised.

Every rate in emdsim is a hazard (1/day).  :func:`hazard_to_probability` turns it into the
probability of the event within one step of ``dt_days``, so compounding two steps of ``dt`` gives
exactly one step of ``2 dt`` and the biology does not change with the step size.

Cell numbers span twelve orders of magnitude (a founder lesion of 1e12 cells, a single arrested
cell).  :func:`realise_flow` is a hybrid tau-leap (Cao, Gillespie & Petzold, J Chem Phys 2005):
a flow whose expected size is at least ``deterministic_threshold`` cells is taken as its mean
(relative noise below 1/sqrt(threshold) is ignored); a smaller one is drawn from the binomial,
so that small populations go extinct and rare events (a colonising cell) happen by chance.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["hazard_to_probability", "competing_probabilities", "binomial_by_inversion", "realise_flow", "rare_event_flow", "split_flow"]


def hazard_to_probability(rate_per_day: ArrayLike, dt_days: float) -> NDArray[np.float64]:
    """Probability that an event with hazard ``rate_per_day`` happens within ``dt_days``."""
    rate = np.asarray(rate_per_day, dtype=float)
    if np.any(rate < 0):
        raise ValueError("hazards must be non-negative")
    return -np.expm1(-rate * dt_days)


def competing_probabilities(rates_per_day: ArrayLike, dt_days: float, axis: int = -1) -> NDArray[np.float64]:
    """Probabilities of each of several competing events within ``dt_days``.

    ``rates_per_day`` holds the hazards along ``axis``; the result has the same shape, each
    event's share of the total event probability is proportional to its hazard, and the
    probabilities sum to ``1 - exp(-total * dt)`` (no event: the remainder).
    """
    rates = np.asarray(rates_per_day, dtype=float)
    total = rates.sum(axis=axis, keepdims=True)
    p_any = -np.expm1(-total * dt_days)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total > 0, rates / np.where(total > 0, total, 1.0), 0.0)
    return share * p_any


def binomial_by_inversion(rng: np.random.Generator, n: NDArray[np.int64], p: NDArray[np.float64],
                          max_iter: int = 200) -> NDArray[np.float64]:
    """Exact binomial draws by CDF inversion, fast when ``n * p`` is small (one uniform each).

    The loop runs over the draws still unresolved; for expected counts below ~1 almost every
    draw resolves at 0 or 1 within two passes.
    """
    n = np.asarray(n, dtype=float)
    p = np.asarray(p, dtype=float)
    out = np.zeros(n.shape)
    certain = p >= 1.0
    out[certain] = n[certain]
    idx = np.flatnonzero(~certain & (n > 0) & (p > 0))
    if not idx.size:
        return out
    u = rng.random(idx.size)
    nn, pp = n[idx], p[idx]
    ratio = pp / (1.0 - pp)
    pmf = np.exp(nn * np.log1p(-pp))
    cdf = pmf.copy()
    k = np.zeros(idx.size)
    active = np.flatnonzero(u > cdf)
    for _ in range(max_iter):
        if not active.size:
            break
        ka = k[active]
        pmf_a = pmf[active] * (nn[active] - ka) / (ka + 1.0) * ratio[active]
        pmf[active] = pmf_a
        k[active] = ka + 1.0
        cdf[active] += pmf_a
        # stop at n, and guard against round-off leaving the CDF just below u
        active = active[(u[active] > cdf[active]) & (k[active] < nn[active]) & (pmf_a > 0)]
    out[idx] = k
    return out


def _take(a: NDArray[np.float64], shape: tuple[int, ...], idx: NDArray[np.int64]) -> NDArray[np.float64]:
    """Elements ``idx`` (flat, of the broadcast ``shape``) of ``a`` without materialising the broadcast."""
    if a.shape == shape:
        return a.reshape(-1)[idx]
    if a.size == 1:
        return np.full(idx.size, a.reshape(-1)[0])
    return np.broadcast_to(a, shape)[np.unravel_index(idx, shape)]


#: below this expected count a flow is drawn by inversion, above by numpy's binomial (BTPE)
INVERSION_MAX_MEAN = 1.0


def realise_flow(rng: np.random.Generator, cells: ArrayLike, p: ArrayLike,
                 deterministic_threshold: float) -> NDArray[np.float64]:
    """Number of cells, out of ``cells``, that undergo an event of probability ``p``.

    Large expected flows are returned as their mean; small ones are binomial draws on the whole
    number of cells.  The result never exceeds ``cells`` and has the broadcast shape.
    """
    cells_a = np.asarray(cells, dtype=float)
    p_a = np.asarray(p, dtype=float)
    mean = cells_a * p_a
    flat = mean.reshape(-1)
    idx = np.flatnonzero((flat < deterministic_threshold) & (flat > 0))
    if idx.size:
        c_s = _take(cells_a, mean.shape, idx)
        p_s = np.clip(_take(p_a, mean.shape, idx), 0.0, 1.0)
        whole = np.floor(c_s)
        m_s = flat[idx]
        tiny = m_s < INVERSION_MAX_MEAN
        if tiny.all():
            draws = binomial_by_inversion(rng, whole, p_s)
        else:
            draws = np.empty(c_s.shape)
            draws[tiny] = binomial_by_inversion(rng, whole[tiny], p_s[tiny])
            mid = ~tiny
            draws[mid] = rng.binomial(whole[mid].astype(np.int64), p_s[mid])
        # the fractional part of a population (left by earlier mean flows) moves by its mean
        flat[idx] = draws + (c_s - whole) * p_s
    return np.minimum(mean, cells_a)


#: largest per-cell probability for which a binomial flow is drawn as a Poisson (rare events)
RARE_EVENT_MAX_P = 1e-3


def rare_event_flow(rng: np.random.Generator, cells: NDArray[np.float64], p: NDArray[np.float64],
                    deterministic_threshold: float, axis: int) -> NDArray[np.float64]:
    """Like :func:`realise_flow` for rare events (``p`` tiny), drawing one count per row of ``axis``.

    Each row's events are drawn as one Poisson with the summed mean and shared among the row's
    entries by a multinomial in proportion to their means (the Poisson limit of independent
    binomials, exact for independent Poisson counts).  Falls back to :func:`realise_flow` when
    some ``p`` exceeds :data:`RARE_EVENT_MAX_P` or a row's mean is large.
    """
    cells = np.asarray(cells, dtype=float)
    mean = cells * p
    if np.max(p, initial=0.0) > RARE_EVENT_MAX_P:
        return realise_flow(rng, cells, p, deterministic_threshold)
    moved = np.moveaxis(mean, axis, -1)
    total = moved.sum(axis=-1)
    if np.max(total, initial=0.0) >= deterministic_threshold:
        return realise_flow(rng, cells, p, deterministic_threshold)
    out = np.zeros_like(moved)
    rows = np.flatnonzero(total.reshape(-1) > 0)
    if rows.size:
        n_events = rng.poisson(total.reshape(-1)[rows])
        hit = rows[n_events > 0]
        if hit.size:
            m2 = moved.reshape(-1, moved.shape[-1])
            o2 = out.reshape(-1, moved.shape[-1])
            o2[hit] = rng.multinomial(n_events[n_events > 0], m2[hit] / total.reshape(-1)[hit, None])
    return np.minimum(np.moveaxis(out, -1, axis), cells)


def split_flow(rng: np.random.Generator, cells: NDArray[np.float64], weights: NDArray[np.float64],
               deterministic_threshold: float) -> NDArray[np.float64]:
    """Split ``cells[..., ]`` among destinations with ``weights[..., d]`` (rows need not be normalised).

    Rows with at least ``deterministic_threshold`` cells are split by their means; smaller rows are
    drawn from the multinomial (fractional remainders split by their means), so row sums are
    preserved in both cases.  Rows whose
    weights are all zero keep nothing (the caller must not send cells nowhere).
    """
    w = np.asarray(weights, dtype=float)
    total = w.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        pv = np.where(total > 0, w / np.where(total > 0, total, 1.0), 0.0)
    out = cells[..., None] * pv
    small = (cells > 0) & (cells < deterministic_threshold) & (total[..., 0] > 0)
    if small.any():
        whole = np.floor(cells[small])
        pvals = pv[small]
        pvals = pvals / pvals.sum(axis=-1, keepdims=True)
        out[small] = rng.multinomial(whole.astype(np.int64), pvals) + (cells[small] - whole)[:, None] * pvals
    return out
