"""Gaussian-process emulators of cohort statistics: the only module that knows the emulator library.

History matching (:mod:`emdsim.studies.fit.history`) needs, for each target statistic, a cheap
predictor of its expected value over the parameter space with an honest variance.  The emulator here
is a Gaussian process with a constant mean (the design's mean), a squared-exponential kernel with
one correlation length per parameter, and the known noise of each simulated value (the binomial or
split-half variance of a cohort statistic) as its nugget.  The method's papers often add a linear
regression mean (Vernon 2010); on 30-point designs of smooth test functions its variance, which
ignored the regression's own uncertainty, was over-confident (5 % of the truth beyond 3 sd on one
design), while the GP alone stayed calibrated (tests/test_match.py).

The library is scikit-learn's :class:`~sklearn.gaussian_process.GaussianProcessRegressor`: well kept,
already a dependency of the stack, it accepts a nugget per design point (``alpha``) and fits the
kernel's hyperparameters by maximum likelihood with restarts.  The maintained Python emulation
packages (mogp-emulator, GPy) add little for tens to hundreds of design points and less upkeep is
promised.  Swapping the library means rewriting only this module: the rest of the fit sees
:class:`Emulator` (``predict -> mean, variance``) and :func:`fit_emulator`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel

__all__ = ["Emulator", "fit_emulator", "leave_one_out"]


@dataclass(frozen=True)
class Emulator:
    """One statistic's emulator over the unit cube of the fitted parameters."""

    gp: GaussianProcessRegressor

    def predict(self, x: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Expected value and emulator variance (the GP's, without the simulation noise) at ``x (n, d)``."""
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        mean, sd = self.gp.predict(x, return_std=True)
        return mean, sd**2

    @property
    def length_scales(self) -> NDArray[np.float64]:
        """The fitted correlation length of each parameter (unit cube): short = the statistic moves with it."""
        return np.atleast_1d(np.asarray(self.gp.kernel_.k2.length_scale, dtype=np.float64))


def _gp(d: int, alpha: NDArray[np.float64], seed: int) -> GaussianProcessRegressor:
    kernel = ConstantKernel(1.0, (1e-3, 1e3)) * RBF(np.full(d, 0.4), length_scale_bounds=(0.03, 30.0))
    return GaussianProcessRegressor(
        kernel=kernel, alpha=alpha, normalize_y=True, n_restarts_optimizer=3, random_state=seed
    )


def _finite(x, y, noise):
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    y = np.asarray(y, dtype=np.float64)
    noise = np.asarray(noise, dtype=np.float64)
    ok = np.isfinite(y) & np.isfinite(noise)
    return x, y, noise, ok


def fit_emulator(
    x: NDArray[np.float64], y: NDArray[np.float64], noise_var: NDArray[np.float64], *, seed: int = 0
) -> Emulator:
    """Fit one statistic ``y (n,)`` simulated at ``x (n, d)`` (unit cube) with known noise variance
    ``noise_var (n,)`` per point.  Points where ``y`` is not finite are left out."""
    x, y, noise, ok = _finite(x, y, noise_var)
    x, y, noise = x[ok], y[ok], noise[ok]
    if len(y) < x.shape[1] + 3:
        raise ValueError(f"{len(y)} finite design points cannot emulate {x.shape[1]} parameters")
    var = float(np.var(y)) or 1.0  # normalize_y scales y by its sd: the nugget follows
    gp = _gp(x.shape[1], np.maximum(noise / var, 1e-8), seed)
    with warnings.catch_warnings():
        # a hyperparameter at its bound is an answer, not an error: a flat statistic, or one that
        # moves fast along one parameter
        warnings.simplefilter("ignore", ConvergenceWarning)
        gp.fit(x, y)
    return Emulator(gp=gp)


def leave_one_out(
    x: NDArray[np.float64], y: NDArray[np.float64], noise_var: NDArray[np.float64], emulator: Emulator
) -> NDArray[np.float64]:
    """Standardised leave-one-out errors ``(y_i - m_-i) / sqrt(v_-i + noise_i)``: each point predicted
    by the emulator refitted without it (the kernel's hyperparameters kept).  A valid emulator gives
    errors ~N(0, 1): |e| > 3 in a few per cent at most (Bastos & O'Hagan 2009)."""
    x, y, noise, ok = _finite(x, y, noise_var)
    out = np.full(len(y), np.nan)
    idx = np.flatnonzero(ok)
    for i in idx:
        keep = idx[idx != i]
        var = float(np.var(y[keep])) or 1.0
        gp = GaussianProcessRegressor(
            kernel=emulator.gp.kernel_, alpha=np.maximum(noise[keep] / var, 1e-8), normalize_y=True, optimizer=None
        )
        gp.fit(x[keep], y[keep])
        m, sd = gp.predict(x[i : i + 1], return_std=True)
        out[i] = (y[i] - m[0]) / np.sqrt(sd[0] ** 2 + noise[i])
    return out
