"""Sampling designs over named parameters and their sensitivity indices (SALib).

A design spec (YAML, see ``designs/``) names parameters by their config path with a range, the
method (``morris``, ``sobol``, ``lhs``), the sample size and the outputs to analyse.  This module
validates a spec against the configuration's declared intervals, draws the design table (one
column per parameter path, one row per model run) from a Generator of the invocation's seed tree,
and turns the sweep's outputs into sensitivity indices.  No Hydra here: ``emdsim-design``
(:mod:`emdsim.cli.design`) runs the rows through ``emdsim -m design.row=...``.
"""

from __future__ import annotations

import contextlib
import difflib
import io
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from emdsim.config.schema import ConfigError

__all__ = ["METHODS", "ParameterRange", "DesignSpec", "parse_range", "parse_spec", "generate", "analyse"]

METHODS = ("morris", "sobol", "lhs")
#: the smallest sample each method's indices can be computed from (checked before anything runs)
MIN_N = {"morris": 2, "sobol": 2, "lhs": 20}
MIN_N_WHY = {
    "morris": "mu* and its bootstrap interval need two trajectories",
    "sobol": "Saltelli's estimators need two base samples",
    "lhs": "SALib's delta and S1 estimators bin the outputs in classes of >= 10 runs and need two "
    "classes (measured: fewer runs give all-NaN indices)",
}
#: outputs of ``summary.json`` a design can analyse
METRICS = (
    "ps_at_diagnosis",
    "em_at_diagnosis",
    "emd_at_diagnosis",
    "ps_at_relapse",
    "em_at_relapse",
    "emd_at_relapse",
    "em_ever",
    "ps_ever",
    "median_pfs_months",
    "median_os_months",
    "median_months_onset_to_diagnosis",
    "wound_plasmacytoma",
)


@dataclass(frozen=True)
class ParameterRange:
    path: str
    lo: float
    hi: float
    #: sample uniformly in log10 (for rates and probabilities spanning decades)
    log: bool = False

    def bounds(self) -> list[float]:
        """Bounds in the sampled space (log10 when ``log``)."""
        return [math.log10(self.lo), math.log10(self.hi)] if self.log else [self.lo, self.hi]

    def to_value(self, u: np.ndarray) -> np.ndarray:
        """Values from points in the sampled space, clipped to ``[lo, hi]``: ``10.0 ** log10(lo)``
        can fall one ulp outside the range on some CPUs (e.g. 9.999999999999999e-06 for 1e-5)."""
        value = 10.0 ** np.asarray(u, dtype=float) if self.log else np.asarray(u, dtype=float)
        return np.clip(value, self.lo, self.hi)


@dataclass(frozen=True)
class DesignSpec:
    name: str
    method: str
    #: Morris: trajectories; Sobol: base samples (a power of 2); LHS: samples
    n: int
    parameters: tuple[ParameterRange, ...]
    outputs: tuple[str, ...]
    #: fixed overrides for every run of the design (cohort size, scenario, ...)
    overrides: tuple[str, ...] = ()
    #: root of the design's own draws (the model runs use the config's ``seed``)
    seed: int = 0
    morris_levels: int = 4
    extra: dict[str, Any] = field(default_factory=dict)

    def problem(self) -> dict[str, Any]:
        """The SALib problem (bounds in the sampled space)."""
        return {
            "num_vars": len(self.parameters),
            "names": [p.path for p in self.parameters],
            "bounds": [p.bounds() for p in self.parameters],
        }


def _number(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConfigError(where, value, "must be a number")
    try:
        out = float(value)
    except ValueError:
        raise ConfigError(where, value, "must be a number") from None
    if not math.isfinite(out):
        raise ConfigError(where, value, "must be finite")
    return out


def parse_range(where: str, path: str, rng: Any, known: Mapping[str, Mapping[str, Any]]) -> ParameterRange:
    """A range ``{lo, hi[, log]}`` over the parameter ``path``, checked against its declared
    interval in ``known`` (path -> ``{lo, hi, lo_open, unit}``); problems name ``where``."""
    if path not in known:
        close = difflib.get_close_matches(path, list(known), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(where, rng, f"not a numeric parameter of the configuration (docs/parameters.md){hint}")
    if not isinstance(rng, Mapping) or not {"lo", "hi"} <= set(rng) or set(rng) - {"lo", "hi", "log"}:
        raise ConfigError(where, rng, "a range {lo: number, hi: number, log: bool (optional)}")
    lo, hi = _number(f"{where}.lo", rng["lo"]), _number(f"{where}.hi", rng["hi"])
    log = bool(rng.get("log", False))
    if not lo < hi:
        raise ConfigError(where, [lo, hi], "a non-empty range: lo < hi")
    meta = known[path]
    mlo, mhi = meta.get("lo"), meta.get("hi")
    interval = f"[{mlo}, {mhi}]" if mhi is not None else f">= {mlo}"
    if (mlo is not None and (lo < mlo or (meta.get("lo_open") and lo == mlo))) or (mhi is not None and hi > mhi):
        raise ConfigError(where, [lo, hi], f"inside the allowed interval {interval} ({meta.get('unit', '')})")
    if log and lo <= 0:
        raise ConfigError(where, [lo, hi], "lo > 0 for a log-scale range")
    return ParameterRange(path, lo, hi, log)


def parse_spec(data: Mapping[str, Any], known: Mapping[str, Mapping[str, Any]]) -> DesignSpec:
    """Validate a design spec against ``known`` parameters (path -> ``{lo, hi, lo_open, unit}``).

    Raises :class:`ConfigError` naming the field, the value and what is allowed: unknown keys,
    unknown parameters (with the closest names), empty or inverted ranges, ranges outside a
    parameter's allowed interval, log ranges that touch zero, unknown methods or outputs.
    """
    allowed_keys = {"name", "method", "n", "parameters", "outputs", "overrides", "seed", "morris_levels"}
    for key in data:
        if key not in allowed_keys:
            raise ConfigError(f"design.{key}", data[key], f"unknown key; allowed {sorted(allowed_keys)}")
    method = data.get("method")
    if method not in METHODS:
        raise ConfigError("design.method", method, f"one of {list(METHODS)}")
    n = data.get("n")
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ConfigError("design.n", n, "an integer >= 2")
    if method == "sobol" and n & (n - 1):
        raise ConfigError("design.n", n, "a power of 2 for Sobol designs")
    if n < MIN_N[method]:
        raise ConfigError("design.n", n, f"at least {MIN_N[method]} for {method}: {MIN_N_WHY[method]}")
    params_in = data.get("parameters") or {}
    if not isinstance(params_in, Mapping) or not params_in:
        raise ConfigError("design.parameters", params_in, "a mapping of parameter path -> {lo, hi[, log]}")
    params = []
    for path, rng in params_in.items():
        params.append(parse_range(f"design.parameters.{path}", str(path), rng, known))
    outputs = tuple(data.get("outputs") or ())
    if not outputs:
        raise ConfigError("design.outputs", outputs, f"a non-empty list from {list(METRICS)}")
    for out in outputs:
        if out not in METRICS:
            raise ConfigError("design.outputs", out, f"one of {list(METRICS)}")
    overrides = tuple(str(o) for o in (data.get("overrides") or ()))
    for o in overrides:
        if o.split("=", 1)[0].lstrip("+~") in {p.path for p in params}:
            raise ConfigError("design.overrides", o, "must not fix a parameter the design varies")
    levels = data.get("morris_levels", 4)
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 2 or levels % 2:
        raise ConfigError("design.morris_levels", levels, "an even integer >= 2")
    seed = data.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError("design.seed", seed, "an integer >= 0")
    return DesignSpec(
        name=str(data.get("name", "design")),
        method=method,
        n=n,
        parameters=tuple(params),
        outputs=outputs,
        overrides=overrides,
        seed=seed,
        morris_levels=levels,
    )


def generate(spec: DesignSpec, rng: np.random.Generator) -> pd.DataFrame:
    """The design table: one column per parameter path (model units), one row per run.

    Morris gives ``n (D + 1)`` rows, Sobol (Saltelli, first and total order) ``n (D + 2)``, LHS ``n``.
    """
    problem = spec.problem()
    if spec.method == "morris":
        from SALib.sample import morris

        u = morris.sample(problem, spec.n, num_levels=spec.morris_levels, seed=rng)
    elif spec.method == "sobol":
        from SALib.sample import sobol

        u = sobol.sample(problem, spec.n, calc_second_order=False, seed=rng)
    else:
        from SALib.sample import latin

        u = latin.sample(problem, spec.n, seed=rng)
    return pd.DataFrame({p.path: p.to_value(u[:, j]) for j, p in enumerate(spec.parameters)})


def sampled_space(spec: DesignSpec, design: pd.DataFrame) -> np.ndarray:
    """The design back in the sampled space (log10 for log parameters), as SALib expects."""
    cols = [
        np.log10(design[p.path].to_numpy(float)) if p.log else design[p.path].to_numpy(float) for p in spec.parameters
    ]
    return np.column_stack(cols)


def analyse(spec: DesignSpec, design: pd.DataFrame, outputs: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Sensitivity indices of each output: a tidy table ``output, parameter, index, value, conf``.

    Morris: ``mu_star`` (with its bootstrap 95% half-width) and ``sigma``; Sobol: ``S1`` and ``ST``;
    LHS: the moment-independent ``delta`` and ``S1`` (Plischke/Borgonovo estimator).  ``outputs``
    has one row per design row, in order; a missing value (a failed run) is an error, because
    these estimators need every row.
    """
    from SALib.analyze import delta, morris, sobol

    if len(outputs) != len(design):
        raise ValueError(f"{len(outputs)} outputs for {len(design)} design rows")
    problem, x = spec.problem(), sampled_space(spec, design)
    rows = []
    for out in spec.outputs:
        y = outputs[out].to_numpy(float)
        missing = np.flatnonzero(~np.isfinite(y))
        if len(missing):
            raise ValueError(
                f"output {out} is missing for design rows {missing[:10].tolist()} "
                "(failed runs or a median not reached); rerun them or choose another output"
            )
        seed = int(rng.integers(2**31))
        if spec.method == "morris":
            res = morris.analyze(problem, x, y, num_levels=spec.morris_levels, seed=seed)
            for j, name in enumerate(problem["names"]):
                rows.append((out, name, "mu_star", res["mu_star"][j], res["mu_star_conf"][j]))
                rows.append((out, name, "sigma", res["sigma"][j], math.nan))
        elif spec.method == "sobol":
            res = sobol.analyze(problem, y, calc_second_order=False, seed=seed)
            for j, name in enumerate(problem["names"]):
                rows.append((out, name, "S1", res["S1"][j], res["S1_conf"][j]))
                rows.append((out, name, "ST", res["ST"][j], res["ST_conf"][j]))
        else:
            with contextlib.redirect_stdout(io.StringIO()):  # SALib prints its binning notes
                res = delta.analyze(problem, x, y, seed=seed)
            key = "delta" if "delta" in res else "delta_raw"  # SALib >= 1.5 names the estimator
            for j, name in enumerate(problem["names"]):
                rows.append((out, name, "delta", res[key][j], res[f"{key}_conf"][j]))
                rows.append((out, name, "S1", res["S1"][j], res["S1_conf"][j]))
    return pd.DataFrame(rows, columns=["output", "parameter", "index", "value", "conf"])
