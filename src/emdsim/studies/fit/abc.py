"""The pyabc adapter of a fit: the only module that imports pyabc.

A :class:`~emdsim.studies.fit.FitSpec` and the validated cohort configurations of its scenarios go in; an
ABC-SMC run (model, distance, prior, sampler, history database) and its posterior come out.  The
spec, the statistics and the distance are pyabc-free (:mod:`emdsim.studies.fit`); the command line
(:mod:`emdsim.cli.fit`) composes the scenarios and writes the report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emdsim.cohort.run import run_cohort
from emdsim.config.schema import EmdConfig
from emdsim.studies.fit.objective import distance, simulate
from emdsim.studies.fit.spec import FitSpec

__all__ = [
    "AbcModel",
    "AbcDistance",
    "start",
    "open_history",
    "posterior",
    "last_generation",
    "wall_seconds",
    "effective_sample_size",
    "run_patients",
]


def run_patients(cfg: EmdConfig) -> pd.DataFrame:
    return run_cohort(cfg).patients


class AbcModel:
    """pyabc model: sampled parameters -> flat statistics of every scenario (picklable)."""

    def __init__(self, spec: FitSpec, bases: dict[str, EmdConfig]) -> None:
        self.spec, self.bases = spec, bases

    def values(self, par: Any) -> dict[str, float]:
        return {p.path: float(p.to_value(float(par[p.key]))) for p in self.spec.parameters}

    def __call__(self, par: Any) -> dict[str, float]:
        sim = simulate(self.spec, self.bases, self.values(par), run_patients)
        return {k: float(v) for k, v in sim.items()}


class AbcDistance:
    """pyabc distance: the fit's sum of squared z-scores and penalties."""

    def __init__(self, spec: FitSpec) -> None:
        self.spec = spec

    def __call__(self, x: dict, x0: dict) -> float:
        return distance(x, self.spec)[0]


def _prior(spec: FitSpec):
    import pyabc

    return pyabc.Distribution(
        **{p.key: pyabc.RV("uniform", p.bounds()[0], p.bounds()[1] - p.bounds()[0]) for p in spec.parameters}
    )


def _sampler(n_procs: int, dask: str | None):
    import pyabc

    if dask:
        from distributed import Client

        return pyabc.sampler.DaskDistributedSampler(dask_client=Client(dask))
    if n_procs <= 1:
        return pyabc.sampler.SingleCoreSampler()
    return pyabc.sampler.MulticoreEvalParallelSampler(n_procs=n_procs)


def start(spec: FitSpec, bases: dict[str, EmdConfig], db: Path, *, n_procs: int, dask: str | None):
    """An ABC-SMC run on ``db``: a new one, or the stored one resumed.  Returns ``(abc, generations
    done, wall seconds already spent)``; ``abc.run(...)`` continues it."""
    import pyabc

    abc = pyabc.ABCSMC(
        AbcModel(spec, bases),
        _prior(spec),
        AbcDistance(spec),
        population_size=spec.population_size,
        sampler=_sampler(n_procs, dask),
        eps=pyabc.epsilon.QuantileEpsilon(alpha=0.5),
    )
    if Path(db).is_file():
        history = abc.load(f"sqlite:///{db}", 1)
        return abc, history.max_t + 1, wall_seconds(history)
    abc.new(f"sqlite:///{db}", {t.name: t.value for t in spec.targets})
    return abc, 0, 0.0


def open_history(db: Path):
    import pyabc

    return pyabc.History(f"sqlite:///{db}")


def wall_seconds(history) -> float:
    """Wall time of every generation so far (pyabc stores each as it ends: a killed run keeps it)."""
    pops = history.get_all_populations()
    return float(pd.to_numeric(pops["wall_time"], errors="coerce").fillna(0.0).sum())


def effective_sample_size(weights: np.ndarray) -> float:
    """Kish's effective sample size of importance weights: ``(sum w)^2 / sum w^2``."""
    w = np.asarray(weights, float)
    return float(w.sum() ** 2 / np.sum(w**2)) if w.size and np.sum(w**2) > 0 else 0.0


def posterior(spec: FitSpec, history) -> pd.DataFrame:
    """The last generation's particles in model units (one column per parameter path) and weights."""
    df, w = history.get_distribution(m=0, t=history.max_t)
    frame = pd.DataFrame({p.path: [float(p.to_value(v)) for v in df[p.key]] for p in spec.parameters})
    frame["weight"] = np.asarray(w, float) / np.sum(w)
    return frame


def last_generation(spec: FitSpec, history) -> list[tuple[float, dict[str, float]]]:
    """``(ABC distance, parameter values)`` of every particle of the last generation."""
    particles = history.get_population(t=history.max_t).particles
    return [
        (float(q.distance), {p.path: float(p.to_value(q.parameter[p.key])) for p in spec.parameters}) for q in particles
    ]
