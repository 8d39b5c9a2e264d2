"""The fit's objective: a parameter set into a configuration, the cohort statistics of a simulation
and their distance to the reported figures."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from emdsim.analysis.summary import summarise
from emdsim.config.schema import ConfigError, EmdConfig, resolve_path, validate
from emdsim.studies.fit.spec import STATISTICS, FitConstraint, FitSpec

__all__ = [
    "with_parameters",
    "simulation_seed",
    "cohort_statistics",
    "check_constraint",
    "z_squared",
    "bound_z_squared",
    "distance",
    "simulate",
    "weighted_quantile",
]


def with_parameters(cfg: EmdConfig, values: Mapping[str, float], *, seed: int | None = None) -> EmdConfig:
    """A validated copy of ``cfg`` with parameter paths set (``{"spread.p_colonisation": 1e-4}``)."""
    out = copy.deepcopy(cfg)
    for path, value in values.items():
        parent, _, leaf = path.rpartition(".")
        try:  # list items by index (traits.switches.2.rate_per_division)
            node = resolve_path(out, parent)
        except ConfigError:
            raise ConfigError(path, value, "a parameter path of the configuration") from None
        if isinstance(node, dict) and leaf in node and isinstance(node[leaf], int | float):  # a switch's effects
            node[leaf] = float(value)
            continue
        if not dataclasses.is_dataclass(node) or leaf not in {f.name for f in dataclasses.fields(node)}:
            raise ConfigError(path, value, "a parameter path of the configuration")
        setattr(node, leaf, float(value))
    if seed is not None:
        out.seed = int(seed)
    validate(out)
    return out


def simulation_seed(fit_seed: int, scenario: str, values: Mapping[str, float]) -> int:
    """The model seed of one simulation: a hash of the fit seed, the scenario and the parameters."""
    text = f"{fit_seed}|{scenario}|" + "|".join(f"{k}={float(v)!r}" for k, v in sorted(values.items()))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def _top_em_sites(counts: Mapping[str, int]) -> list[str]:
    em = {k: v for k, v in counts.items() if not str(k).startswith("ps_")}
    if not em:
        return []
    best = max(em.values())
    return [k for k, v in em.items() if v == best]


def cohort_statistics(patients: pd.DataFrame, seed: int) -> dict[str, Any]:
    """The statistics a fit compares: fractions with denominators, top EM sites, risk contrast."""
    s = summarise(patients, seed=seed)
    dx = patients[patients["diagnosed"]]
    s["emd_ever"] = float((dx["em_ever"] | dx["ps_ever"]).mean()) if len(dx) else 0.0
    s["diagnosed_fraction"] = float(len(dx) / len(patients)) if len(patients) else 0.0
    hr, sr = dx[dx["high_risk"]], dx[~dx["high_risk"]]
    s["em_ever_high_risk"] = float(hr["em_ever"].mean()) if len(hr) else math.nan
    s["em_ever_standard_risk"] = float(sr["em_ever"].mean()) if len(sr) else math.nan
    s["top_em_sites_at_diagnosis"] = _top_em_sites(s["sites_at_diagnosis"])
    s["top_em_sites_at_relapse"] = _top_em_sites(s["sites_at_relapse"])
    return s


def check_constraint(c: FitConstraint, stats: Mapping[str, Any]) -> bool:
    if c.check == "top_em_site_at_diagnosis":
        return c.expected in stats["top_em_sites_at_diagnosis"]
    if c.check == "top_em_site_at_relapse":
        return c.expected in stats["top_em_sites_at_relapse"]
    hr, sr = stats["em_ever_high_risk"], stats["em_ever_standard_risk"]
    return bool(np.isfinite(hr) and np.isfinite(sr) and hr > sr)


def z_squared(p_sim: float, n_sim: int, p_obs: float, n_obs: int) -> float:
    """Squared difference over the summed binomial variances of report and simulation.

    Each variance is floored at that of half an event (``0.5 / n``), so a fraction of 0 or 1 in a
    small cohort still carries its sampling error.
    """
    return (p_sim - p_obs) ** 2 / (_binomial_variance(p_obs, n_obs) + _binomial_variance(p_sim, max(n_sim, 1)))


def _binomial_variance(p: float, n: int) -> float:
    """``p (1 - p) / n`` with ``p`` kept half an event away from 0 and 1."""
    p = min(max(p, 0.5 / n), 1.0 - 0.5 / n)
    return p * (1.0 - p) / n


def bound_z_squared(p_sim: float, n_sim: int, minimum: float | None, maximum: float | None) -> float:
    """One-sided squared z-score of a simulated fraction beyond a bound (0 inside the bounds); the
    variance is the simulation's binomial one, floored at half an event as in :func:`z_squared`."""
    var = _binomial_variance(p_sim, max(n_sim, 1))
    if minimum is not None and p_sim < minimum:
        return (minimum - p_sim) ** 2 / var
    if maximum is not None and p_sim > maximum:
        return (p_sim - maximum) ** 2 / var
    return 0.0


def distance(sim: Mapping[str, Any], spec: FitSpec) -> tuple[float, dict[str, float]]:
    """Total distance and its terms (per target z^2, per violated constraint its penalty and per
    requirement its one-sided z^2 beyond the bound)."""
    terms: dict[str, float] = {}
    for t in spec.targets:
        key, denom = STATISTICS[t.statistic]
        terms[t.name] = z_squared(float(sim[f"{t.scenario}.{key}"]), int(sim[f"{t.scenario}.{denom}"]), t.value, t.n)
    for c in spec.constraints:
        terms[c.name] = 0.0 if sim[f"{c.scenario}.{c.name}"] else c.penalty
    for r in spec.requirements:
        key, denom = STATISTICS[r.statistic]
        terms[r.name] = bound_z_squared(
            float(sim[f"{r.scenario}.{key}"]), int(sim[f"{r.scenario}.{denom}"]), r.minimum, r.maximum
        )
    return float(sum(terms.values())), terms


def simulate(
    spec: FitSpec, bases: Mapping[str, EmdConfig], values: Mapping[str, float], run: Callable[[EmdConfig], pd.DataFrame]
) -> dict[str, Any]:
    """Simulate every scenario at ``values`` (parameter path -> value); flat statistics
    ``{"usmani.em_at_diagnosis": ..., "usmani.n_diagnosed": ..., "usmani.<constraint>": bool}``."""
    out: dict[str, Any] = {}
    for name, base in bases.items():
        seed = simulation_seed(spec.seed, name, values)
        cfg = with_parameters(base, values, seed=seed)
        stats = cohort_statistics(run(cfg), seed)
        for key, denom in STATISTICS.values():
            # a fraction over no patient (None) enters as 0 beside its denominator 0: z_squared then
            # gives it the variance of half an event in one patient, i.e. almost no weight
            out[f"{name}.{key}"] = 0.0 if stats[key] is None else float(stats[key])
            out[f"{name}.{denom}"] = int(stats[denom])
        for c in spec.constraints:
            if c.scenario == name:
                out[f"{name}.{c.name}"] = bool(check_constraint(c, stats))
    return out


def weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float | np.ndarray) -> np.ndarray:
    """Quantiles of a weighted sample (inverse of the weighted empirical CDF, midpoint rule)."""
    order = np.argsort(values)
    v, w = np.asarray(values, float)[order], np.asarray(weights, float)[order]
    cdf = (np.cumsum(w) - 0.5 * w) / w.sum()
    return np.interp(q, cdf, v)
