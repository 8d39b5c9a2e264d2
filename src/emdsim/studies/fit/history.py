"""History matching: rule out the parameter space where the model cannot reproduce the evidence.

The method of Vernon (2010) and Andrianakis (2015), as implemented for R by hmer (Iskauskas 2024):

1. **Design**: a Latin hypercube over the fitted parameters (uniform, or uniform in log10), mapped to
   the unit cube ``[0, 1]^d``; the first wave covers the whole prior box.
2. **Simulate** every design point on every cohort of the validation spec, with common random numbers
   (one seed per scenario and wave for every point), and measure each target's statistic.
3. **Emulate** each numeric statistic (:mod:`emdsim.studies.fit.emulate`), with the simulation noise
   of a cohort of that size as the nugget.
4. **Implausibility** of a point ``x`` for target ``t``::

       I_t(x) = |z_t - E[f_t(x)]| / sqrt(V_obs,t + V_disc,t + V_em,t(x))

   ``V_obs`` from the reported interval (a 95 % interval is ±1.96 sd; a range [a, b] with no value is
   taken as its midpoint ± 2 sd), ``V_disc`` the stated model discrepancy (a fraction of the reported
   value, as an sd), ``V_em`` the emulator's variance plus one cohort's simulation noise (the
   design points of a wave share their seeds, :mod:`emdsim.studies.fit.match`).  A point is **non-implausible** when its
   largest ``I_t`` over the targets (or, with ``second_max``, the second largest: one target may miss)
   is below the cutoff (3, Pukelsheim's three-sigma rule for unimodal distributions).
5. **Waves**: the next wave's design is drawn from the space every earlier wave's emulators leave
   non-implausible; each wave refocuses the emulators there.

Everything here is numpy and scipy; the emulator library is :mod:`emdsim.studies.fit.emulate`'s.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.stats import qmc

from emdsim.studies.design import ParameterRange

__all__ = [
    "Observation",
    "latin_hypercube",
    "to_values",
    "implausibility",
    "max_implausibility",
    "sample_non_implausible",
    "percent_noise_var",
    "split_half_noise_var",
]


@dataclass(frozen=True)
class Observation:
    """A reported figure as history matching uses it: value and variances in the statistic's units."""

    #: ``target`` or ``target[i]`` for the i-th number of a pair
    name: str
    value: float
    obs_var: float
    disc_var: float


def observation(name: str, value: float | None, lower: float, upper: float, discrepancy: float) -> Observation:
    """An :class:`Observation` from a reported value and its interval (a 95 % interval, or a bare range
    when ``value`` is None: its midpoint ± 2 sd); ``discrepancy`` is the model-discrepancy sd as a
    fraction of the value."""
    if value is None or not math.isfinite(value):
        centre, sd = 0.5 * (lower + upper), (upper - lower) / 4.0
    else:
        centre, sd = float(value), (upper - lower) / (2.0 * 1.959964)
    return Observation(name, centre, sd**2, (discrepancy * abs(centre)) ** 2)


def latin_hypercube(n: int, d: int, rng: np.random.Generator, *, optimise: bool = True) -> NDArray[np.float64]:
    """``n`` points of a Latin hypercube in ``[0, 1]^d`` (scipy's; ``optimise``: its centred-discrepancy
    optimisation for space filling, for designs; it costs ~O(n^2), so candidate pools skip it)."""
    return qmc.LatinHypercube(d=d, optimization="random-cd" if optimise else None, seed=rng).random(n)


def to_values(u: NDArray[np.float64], parameters: Sequence[ParameterRange]) -> list[dict[str, float]]:
    """Parameter values (path -> value) of unit-cube points ``u (n, d)``."""
    u = np.atleast_2d(u)
    cols = []
    for j, p in enumerate(parameters):
        lo, hi = p.bounds()
        cols.append(p.to_value(lo + u[:, j] * (hi - lo)))
    return [{p.path: float(cols[j][i]) for j, p in enumerate(parameters)} for i in range(u.shape[0])]


def implausibility(mean: NDArray[np.float64], em_var: NDArray[np.float64], obs: Observation) -> NDArray[np.float64]:
    """``|z - E[f(x)]| / sqrt(V_obs + V_disc + V_em(x))`` for emulator means and variances at points."""
    return np.abs(obs.value - mean) / np.sqrt(obs.obs_var + obs.disc_var + em_var)


def max_implausibility(
    u: NDArray[np.float64],
    emulators: Mapping[str, Callable[[NDArray[np.float64]], tuple[NDArray[np.float64], NDArray[np.float64]]]],
    observations: Mapping[str, Observation],
    *,
    second_max: bool = False,
) -> NDArray[np.float64]:
    """The largest (or second largest) implausibility over the emulated targets at points ``u``."""
    rows = []
    for name, predict in emulators.items():
        mean, var = predict(u)
        rows.append(implausibility(mean, var, observations[name]))
    if not rows:
        return np.zeros(np.atleast_2d(u).shape[0])
    imp = np.sort(np.vstack(rows), axis=0)
    return imp[-2] if second_max and imp.shape[0] > 1 else imp[-1]


def sample_non_implausible(
    n: int,
    d: int,
    accept: Callable[[NDArray[np.float64]], NDArray[np.bool_]],
    rng: np.random.Generator,
    *,
    candidates: int = 20_000,
) -> tuple[NDArray[np.float64], float]:
    """``n`` space-filling points of the region ``accept`` keeps, and the fraction of the unit cube it
    keeps (estimated on ``candidates`` Latin-hypercube points).  When few candidates survive, the
    survivors are jittered (a Gaussian with a tenth of their spread, kept inside the cube and the
    region) until ``n`` are found; the ``n`` returned are a maximin subset of the survivors."""
    pool = latin_hypercube(candidates, d, rng, optimise=False)
    keep = accept(pool)
    fraction = float(keep.mean())
    good = pool[keep]
    tries = 0
    while 0 < len(good) < 5 * n and tries < 20:
        sd = np.maximum(good.std(axis=0), 0.01) / 10.0
        jitter = good[rng.integers(len(good), size=candidates // 4)] + rng.normal(0.0, 1.0, (candidates // 4, d)) * sd
        jitter = jitter[np.all((jitter >= 0.0) & (jitter <= 1.0), axis=1)]
        good = np.vstack([good, jitter[accept(jitter)]])
        tries += 1
    if len(good) == 0:
        return np.empty((0, d)), fraction
    return _maximin(good, n, rng), fraction


def _maximin(points: NDArray[np.float64], n: int, rng: np.random.Generator) -> NDArray[np.float64]:
    """A greedy maximin subset of ``n`` of ``points`` (each next point farthest from those chosen)."""
    if len(points) <= n:
        return points
    chosen = [int(rng.integers(len(points)))]
    dist = np.linalg.norm(points - points[chosen[0]], axis=1)
    for _ in range(n - 1):
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(points - points[nxt], axis=1))
    return points[chosen]


def percent_noise_var(percent: NDArray[np.float64], n: NDArray[np.float64]) -> NDArray[np.float64]:
    """Binomial variance (percent^2) of a simulated percentage over ``n`` patients; a share of 0 or 100
    is taken as half a patient off it, so no point is noise-free."""
    n = np.maximum(np.asarray(n, dtype=np.float64), 1.0)
    p = np.clip(np.asarray(percent, dtype=np.float64) / 100.0, 0.5 / n, 1.0 - 0.5 / n)
    return 1e4 * p * (1.0 - p) / n


def split_half_noise_var(half_a: NDArray[np.float64], half_b: NDArray[np.float64]) -> float:
    """The noise variance of a statistic of a whole cohort from its values on two random halves:
    each half has twice the whole's variance, so ``E[(a - b)^2] = 4 var(whole)``; pooled over the
    design points (one noise level per statistic), the median of the per-point estimates scaled to
    the mean (the median of a chi-square with 1 df is 0.455 of its mean)."""
    diff = np.asarray(half_a, dtype=np.float64) - np.asarray(half_b, dtype=np.float64)
    diff = diff[np.isfinite(diff)]
    if len(diff) == 0:
        return math.nan
    return float(np.median(diff**2) / 0.4549 / 4.0)
