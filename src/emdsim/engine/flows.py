"""Hazards to per-step probabilities, and the one place where flows of cells are realised.

Every rate in emdsim is a hazard (1/day).  :func:`event_probability` turns it into the
probability of the event within one step of ``dt_days``, so compounding two steps of ``dt`` gives
exactly one step of ``2 dt`` and the biology does not change with the step size.

Cell numbers span twelve orders of magnitude (a founder lesion of 1e12 cells, a single arrested
cell).  :func:`flow_one` is a hybrid tau-leap (Cao, Gillespie & Petzold, J Chem Phys 2005): a
flow whose expected size is at least ``threshold`` cells is taken as its mean (relative noise
below 1/sqrt(threshold) is ignored); a smaller one is a binomial draw on the whole cells (the
fractional remainder left by earlier mean flows moves by its mean), so small populations go
extinct and rare events (a colonising cell) happen by chance; between ``GAUSSIAN_MIN_MEAN`` and the
threshold the binomial is replaced by its normal limit (the chemical-Langevin regime).  :func:`split_one` shares cells
among destinations the same way (a multinomial drawn as conditional binomials).

These scalar functions are compiled with numba and called from the loops in
:mod:`emdsim.engine.kernels`; :func:`realise_flow` and :func:`split_flow` apply them to whole arrays.
They draw from a Generator's bit generator (``rng.bit_generator`` inside compiled code) with the
very functions numba's ``Generator.random`` and ``Generator.standard_normal`` call, so the draws are
those of the Generator; and they count their draws in a record of :data:`TALLY`.  Neither is
reference-counted, where a Generator or an array passed to a function inlined per flow costs two
atomic increments and decrements on every flow.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from emdsim.engine.jit import JIT, JIT_CALLED, JIT_INLINE
from emdsim.engine.streams import normal, uniform

__all__ = [
    "TALLY",
    "tally_record",
    "hazard_to_probability",
    "event_probability",
    "birth_probability",
    "survival_probability",
    "birth_probability_given_survival",
    "competing_probabilities",
    "blood_probabilities",
    "draw_binomial",
    "draw_binomial_called",
    "draw_gamma",
    "flow_one",
    "split_one",
    "flow_out",
    "flow_within",
    "split_out",
    "whole_cells",
    "realise_flow",
    "split_flow",
]

#: counts of the random variates drawn, as one record (compiled code takes ``tally_record(a)[0]``)
TALLY = np.dtype([("uniform", np.int64), ("normal", np.int64)])


def tally_record(counts: NDArray[np.int64]) -> NDArray[np.void]:
    """``counts (2,)`` ([uniform, normal]) seen as a one-element array of :data:`TALLY` (same memory)."""
    return counts.view(TALLY)


#: flows with an expected size between this and the deterministic threshold are drawn from the
#: normal approximation of the binomial (rounded); smaller ones from the binomial itself
GAUSSIAN_MIN_MEAN = 10.0


def event_probability(rate_per_day: ArrayLike, dt_days: float) -> NDArray[np.float64]:
    """Probability that an event with hazard ``rate_per_day`` happens within ``dt_days`` (no checks)."""
    return -np.expm1(-rate_per_day * dt_days)


def birth_probability(
    birth_rate_per_day: ArrayLike, death_rate_per_day: ArrayLike, dt_days: float
) -> NDArray[np.float64]:
    """Per-cell probability of a birth within ``dt_days`` such that, together with deaths drawn at
    :func:`event_probability` of the death hazard, the expected population after the step is
    exactly ``exp((birth - death) * dt)`` times the current one (the linear birth-death process).

    ``exp(-death dt) * (exp(birth dt) - 1)``; capped at 1 (birth hazards above ~0.69/dt).  Using
    ``1 - exp(-birth dt)`` instead would let each cell divide at most once per step and make the
    growth rate depend on the step size.
    """
    survival = survival_probability(death_rate_per_day, dt_days)
    return birth_probability_given_survival(birth_rate_per_day, survival, dt_days)


def survival_probability(death_rate_per_day: ArrayLike, dt_days: float) -> NDArray[np.float64]:
    """Probability that a cell escapes a death hazard for ``dt_days``: ``exp(-death dt)``."""
    return np.exp(-death_rate_per_day * dt_days)


def birth_probability_given_survival(
    birth_rate_per_day: ArrayLike, survival: ArrayLike, dt_days: float
) -> NDArray[np.float64]:
    """:func:`birth_probability` from the survival probability (:func:`survival_probability`) of the death hazard."""
    return np.minimum(survival * np.expm1(birth_rate_per_day * dt_days), 1.0)


def hazard_to_probability(rate_per_day: ArrayLike, dt_days: float) -> NDArray[np.float64]:
    """:func:`event_probability` for arrays, rejecting negative hazards."""
    rate = np.asarray(rate_per_day, dtype=float)
    if np.any(rate < 0):
        raise ValueError("hazards must be non-negative")
    return event_probability(rate, dt_days)


def competing_probabilities(rates_per_day: ArrayLike, dt_days: float, axis: int = -1) -> NDArray[np.float64]:
    """Probabilities of each of several competing events within ``dt_days``.

    ``rates_per_day`` holds the hazards along ``axis``; each event's share of the total event
    probability ``1 - exp(-total * dt)`` is proportional to its hazard.
    """
    rates = np.asarray(rates_per_day, dtype=float)
    total = rates.sum(axis=axis, keepdims=True)
    p_any = -np.expm1(-total * dt_days)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total > 0, rates / np.where(total > 0, total, 1.0), 0.0)
    return share * p_any


@JIT_INLINE
def blood_probabilities(extravasation: float, death: float, dt: float) -> tuple[float, float]:
    """Per-step probabilities of arrest and, for the cells not arrested, of death in the blood: the
    two competing hazards over ``dt`` days (:func:`competing_probabilities` of the pair; the tables'
    ``p_arrest_per_step`` and ``p_die_in_blood_per_step``, and a long step's in the hybrid pass)."""
    total = extravasation + death
    if total <= 0.0:
        return 0.0, 0.0
    p_any = -np.expm1(-total * dt)
    p_arrest = extravasation / total * p_any
    return p_arrest, min(death / total * p_any / max(1.0 - p_arrest, 1e-300), 1.0)


@JIT_INLINE
def draw_binomial(bitgen, n: float, p: float, tally) -> float:
    """A binomial(n, p) count: exact by inversion below ``GAUSSIAN_MIN_MEAN``, else its normal limit.

    ``bitgen`` is a Generator's bit generator; ``tally`` (a :data:`TALLY` record) counts the uniform
    and the normal variates drawn.
    """
    if n <= 0.0 or p <= 0.0:
        return 0.0
    if p >= 1.0:
        return n
    mean = n * p
    if mean >= GAUSSIAN_MIN_MEAN:  # chemical-Langevin regime
        tally.normal += 1
        x = mean + np.sqrt(mean * (1.0 - p)) * normal(bitgen)
        return min(max(np.floor(x + 0.5), 0.0), n)
    tally.uniform += 1
    u = uniform(bitgen)
    if u <= 1.0 - mean:
        # squeeze: P(X = 0) = (1 - p)^n >= 1 - n p, so inversion would stop at 0 here too; the
        # result is the same as below, without its exp and log (most small flows move nothing)
        return 0.0
    pmf = np.exp(n * np.log1p(-p))
    cdf = pmf
    k = 0.0
    ratio = p / (1.0 - p)
    while u > cdf and k < n:
        pmf *= (n - k) / (k + 1.0) * ratio
        if pmf <= 0.0:  # round-off in the far tail: the remaining mass is negligible
            break
        k += 1.0
        cdf += pmf
    return k


@JIT_CALLED
def draw_binomial_called(bitgen, n: float, p: float, tally) -> float:
    """:func:`draw_binomial`, compiled once and called instead of inlined: what the hybrid pass and
    its flows (:func:`flow_out`, :func:`flow_within`) use, from a dozen places, for small populations
    only (why, and what it saves in compile time: :data:`emdsim.engine.jit.JIT_CALLED`).  The exact
    pass draws one at nearly every flow (:func:`flow_one`) and keeps :func:`draw_binomial` inlined."""
    return draw_binomial(bitgen, n, p, tally)


@JIT_INLINE
def flow_one(bitgen, cells: float, p: float, threshold: float, tally) -> float:
    """Cells, out of ``cells``, that undergo an event of probability ``p`` (never more than ``cells``)."""
    if cells <= 0.0 or p <= 0.0:
        return 0.0
    if p >= 1.0:
        return cells
    mean = cells * p
    if mean >= threshold:
        return mean
    whole = np.floor(cells)
    drawn = draw_binomial(bitgen, whole, p, tally) + (cells - whole) * p
    return min(drawn, cells)


@JIT_CALLED
def split_one(bitgen, cells: float, weights: np.ndarray, threshold: float, out: np.ndarray, tally) -> None:
    """Share ``cells`` among destinations in proportion to ``weights`` into ``out`` (sums to ``cells``).

    A large total goes by conditional :func:`flow_one` flows: a share whose mean is at least
    ``threshold`` is its mean, a smaller one is drawn (so a rare destination receives whole seeds
    by chance, not a fraction of a cell that extinction removes), and the destination with the
    largest weight takes what is left.  A small total is a multinomial drawn as conditional binomials
    (the fractional remainder is split by its mean).  All-zero weights send nothing.
    """
    total = 0.0
    big = -1
    for j in range(weights.size):
        total += weights[j]
        if weights[j] > 0.0 and (big < 0 or weights[j] > weights[big]):
            big = j
    for j in range(weights.size):
        out[j] = 0.0
    if cells <= 0.0 or total <= 0.0:
        return
    if cells >= threshold:
        left, rest = cells, total
        for j in range(weights.size):
            w = weights[j]
            if j == big or w <= 0.0 or left <= 0.0:
                continue
            x = flow_one(bitgen, left, w / rest, threshold, tally)
            out[j] = x
            left -= x
            rest -= w
        out[big] = left
        return
    whole = np.floor(cells)
    frac = cells - whole
    left = whole
    rest = total
    for j in range(weights.size):
        w = weights[j]
        out[j] = frac * w / total
        if left > 0.0 and w > 0.0:
            x = draw_binomial(bitgen, left, w / rest if rest > w else 1.0, tally)
            out[j] += x
            left -= x
        rest -= w


# ------------------------------------------------------------------ the hybrid engine's flows
# A population of at least ``large`` cells (``sim.hybrid_threshold_cells``) is deterministic: its
# births, deaths and kills are their means.  A smaller one holds whole cells and every flow out of it
# is a binomial draw.  A flow from a large population into another population (switch mutants,
# released, spilled, arrested or settling cells) is its mean only when that mean is itself at least
# ``large``; otherwise it is a count (a binomial on the whole cells: for a large source and a small
# probability, the Poisson count of the integrated rate), so that a new seed or a mutant arrives as
# whole cells, by chance, and no fraction of a cell ever travels.


#: a count whose per-cell probability is below this is drawn as Poisson (its binomial's variance
#: differs by the factor 1 - p > 0.999); see :func:`draw_poisson`
RARE_PROBABILITY = 1e-3


@JIT_CALLED
def draw_poisson(bitgen, mean: float, tally) -> float:
    """A Poisson(``mean``) count: inversion below ``GAUSSIAN_MIN_MEAN`` (one uniform; nothing else
    where the count is 0 for certain by the squeeze ``P(0) = exp(-mean) >= 1 - mean``), else its normal
    limit, rounded."""
    if mean <= 0.0:
        return 0.0
    if mean >= GAUSSIAN_MIN_MEAN:
        tally.normal += 1
        return max(np.floor(mean + np.sqrt(mean) * normal(bitgen) + 0.5), 0.0)
    tally.uniform += 1
    u = uniform(bitgen)
    if u <= 1.0 - mean:
        return 0.0
    pmf = np.exp(-mean)
    cdf = pmf
    k = 0.0
    while u > cdf:
        k += 1.0
        pmf *= mean / k
        if pmf <= 0.0:
            break
        cdf += pmf
    return k


@JIT_CALLED
def draw_gamma(bitgen, shape: float, tally) -> float:
    """A Gamma(``shape``, 1) variate (Marsaglia & Tsang, ACM Trans Math Softw 2000; a shape below 1
    by ``G(shape) = G(shape + 1) U^(1 / shape)``): a normal and a uniform per try, ~1.02 tries."""
    boost = 1.0
    a = shape
    if a < 1.0:
        tally.uniform += 1
        boost = uniform(bitgen) ** (1.0 / a)
        a += 1.0
    d = a - 1.0 / 3.0
    scale = 1.0 / np.sqrt(9.0 * d)
    while True:
        tally.normal += 1
        z = normal(bitgen)
        v = 1.0 + scale * z
        if v <= 0.0:
            continue
        v = v * v * v
        tally.uniform += 1
        u = uniform(bitgen)
        z2 = z * z
        if u < 1.0 - 0.0331 * z2 * z2 or np.log(u) < 0.5 * z2 + d * (1.0 - v + np.log(v)):
            return d * v * boost


@JIT_INLINE
def flow_out(bitgen, cells: float, p: float, large: float, tally) -> float:
    """Cells, out of ``cells``, that leave for another population with probability ``p`` each: the
    mean when both the population and the mean are at least ``large``, else a count on the whole
    cells (a fractional remainder stays behind)."""
    if cells <= 0.0 or p <= 0.0:
        return 0.0
    mean = cells * p
    if cells >= large and mean >= large:
        return min(mean, cells)
    whole = np.floor(cells)
    if p >= 1.0:
        return whole
    if p < RARE_PROBABILITY:  # a rare event among many cells: the Poisson count of the integrated rate
        return min(draw_poisson(bitgen, whole * p, tally), whole)
    return draw_binomial_called(bitgen, whole, p, tally)


@JIT_INLINE
def flow_within(bitgen, cells: float, p: float, large: float, tally) -> float:
    """Cells, out of ``cells``, that undergo an event of probability ``p`` without founding another
    population (death, birth, kill): the mean in a large population, else a count on the whole cells."""
    if cells <= 0.0 or p <= 0.0:
        return 0.0
    if cells >= large:
        return cells * min(p, 1.0)
    whole = np.floor(cells)
    if p >= 1.0:
        return whole
    return draw_binomial_called(bitgen, whole, p, tally)


@JIT_CALLED
def split_out(bitgen, cells: float, weights: np.ndarray, large: float, out: np.ndarray, tally) -> None:
    """Share ``cells`` among destinations in proportion to ``weights`` into ``out``, as conditional
    :func:`flow_out` flows (a multinomial on whole cells where the shares are small, means where a
    share is large); the destination with the largest weight takes what is left, so that the
    fraction of a cell left by mean flows lands in the largest share (a large population, or whole
    cells when the total was small), never as a spurious seed in a small one.  All-zero weights send
    nothing."""
    total = 0.0
    big = -1
    for j in range(weights.size):
        out[j] = 0.0
        if weights[j] > 0.0:
            total += weights[j]
            if big < 0 or weights[j] > weights[big]:
                big = j
    if cells <= 0.0 or total <= 0.0:
        return
    left = cells
    rest = total - weights[big]
    for j in range(weights.size):
        w = weights[j]
        if j == big or w <= 0.0 or left <= 0.0:
            continue
        x = flow_out(bitgen, left, w / (rest + weights[big]), large, tally)
        out[j] = x
        left -= x
        rest -= w
    out[big] = left


@JIT_INLINE
def whole_cells(bitgen, cells: float, large: float, tally) -> float:
    """A small population (below ``large``) with a fraction of a cell (left by mean flows out of a
    large one) rounded to whole cells at random, up with the probability of the fraction (unbiased)."""
    if cells >= large or cells <= 0.0:
        return cells
    whole = np.floor(cells)
    if whole == cells:
        return cells
    tally.uniform += 1
    return whole + 1.0 if uniform(bitgen) < cells - whole else whole


@JIT
def _flow_many(rng, cells, p, threshold, out, counts):  # pragma: no cover - compiled
    bitgen, tally = rng.bit_generator, counts[0]
    for i in range(cells.size):
        out[i] = flow_one(bitgen, cells[i], p[i], threshold, tally)


@JIT
def _split_many(rng, cells, weights, threshold, out, counts):  # pragma: no cover - compiled
    bitgen, tally = rng.bit_generator, counts[0]
    for i in range(cells.size):
        split_one(bitgen, cells[i], weights[i], threshold, out[i], tally)


def realise_flow(rng: np.random.Generator, cells: ArrayLike, p: ArrayLike, threshold: float) -> NDArray[np.float64]:
    """:func:`flow_one` over broadcast arrays ``cells`` and ``p``."""
    c, q = np.broadcast_arrays(np.asarray(cells, dtype=float), np.asarray(p, dtype=float))
    out = np.empty(c.shape)
    _flow_many(
        rng,
        np.ascontiguousarray(c).reshape(-1),
        np.ascontiguousarray(q).reshape(-1),
        float(threshold),
        out.reshape(-1),
        np.zeros(1, TALLY),
    )
    return out


def split_flow(rng: np.random.Generator, cells: ArrayLike, weights: ArrayLike, threshold: float) -> NDArray[np.float64]:
    """:func:`split_one` for each row: ``cells (R,)`` among ``weights (R, D)`` -> ``(R, D)``."""
    c = np.ascontiguousarray(cells, dtype=float).reshape(-1)
    w = np.ascontiguousarray(weights, dtype=float).reshape(c.size, -1)
    out = np.empty(w.shape)
    _split_many(rng, c, w, float(threshold), out, np.zeros(1, TALLY))
    return out
