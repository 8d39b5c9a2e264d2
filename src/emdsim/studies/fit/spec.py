"""Fitting the model to reported incidence with ABC-SMC (pyabc): one biology, many cohorts.

A fit spec (``fits/*.yaml``) names

* the **parameters** to fit, with a uniform prior (``log: true``: uniform in log10) that must lie
  inside the parameter's allowed interval; unit and source come from the schema;
* the **cohort scenarios** (``scenario=usmani`` ...), each simulated with its own overrides and a
  simulation size;
* the **targets**: each reported figure of ``data/targets`` is matched by a scenario and a
  statistic of its simulated cohort (``em_at_diagnosis`` ...), and qualitative findings (the
  commonest site, the high-risk association) enter as **constraints** with a penalty;
* **requirements**: properties of the virtual cohort that no report states but the model must keep
  (``diagnosed``: most virtual patients reach diagnosis), a bound with its reason; a simulated
  fraction beyond the bound adds its one-sided squared z-score ``(bound - p_sim)^2 / (p_sim (1 -
  p_sim) / n_sim)``.

The distance respects the binomial sampling error of both the report and the simulation:
``sum_t (p_sim - p_obs)^2 / (p_obs (1 - p_obs) / n_obs + p_sim (1 - p_sim) / n_sim)`` (a sum of
squared z-scores), plus the penalty of each violated constraint.  One set of biological parameters
is shared by every scenario.  Each simulation draws from a Generator seeded by the fit's seed, the
scenario and the parameter values (a hash), never from global state; pyabc's own proposals use
numpy's global generator inside pyabc, so a rerun reproduces each simulation but not pyabc's path.

No Hydra here: scenarios arrive as validated :class:`EmdConfig` objects (``fit_cli`` composes them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from emdsim.analysis.targets import Target
from emdsim.config.schema import ConfigError
from emdsim.studies.design import ParameterRange, parse_range

__all__ = [
    "FitParameter",
    "FitTarget",
    "FitConstraint",
    "FitRequirement",
    "FitSpec",
    "STATISTICS",
    "CHECKS",
    "parse_fit_spec",
]

#: statistics of a simulated cohort a target can be matched with: name -> (summary key, denominator)
STATISTICS = {
    "ps_at_diagnosis": ("ps_at_diagnosis", "n_diagnosed"),
    "em_at_diagnosis": ("em_at_diagnosis", "n_diagnosed"),
    "emd_at_diagnosis": ("emd_at_diagnosis", "n_diagnosed"),
    "ps_at_relapse": ("ps_at_relapse", "n_relapsed"),
    "em_at_relapse": ("em_at_relapse", "n_relapsed"),
    "emd_at_relapse": ("emd_at_relapse", "n_relapsed"),
    "em_ever": ("em_ever", "n_diagnosed"),
    "emd_ever": ("emd_ever", "n_diagnosed"),
    "diagnosed": ("diagnosed_fraction", "n_patients"),
}
#: qualitative checks on a simulated cohort
CHECKS = ("top_em_site_at_diagnosis", "top_em_site_at_relapse", "em_more_in_high_risk")


@dataclass(frozen=True)
class FitParameter(ParameterRange):
    """A fitted parameter: its prior range (uniform in the sampled space) with unit and source."""

    unit: str = ""
    source: str = ""

    @property
    def key(self) -> str:
        """pyabc's name of the parameter (``log10__spread__p_colonisation``)."""
        return ("log10__" if self.log else "") + self.path.replace(".", "__")


@dataclass(frozen=True)
class FitTarget:
    name: str
    scenario: str
    statistic: str
    value: float  # fraction
    n: int
    reported: Target


@dataclass(frozen=True)
class FitConstraint:
    name: str
    scenario: str
    check: str
    expected: str
    penalty: float


@dataclass(frozen=True)
class FitRequirement:
    """A bound on a statistic of a simulated cohort that the model must keep (not a reported figure)."""

    name: str
    scenario: str
    statistic: str
    minimum: float | None  # fraction
    maximum: float | None
    source: str

    def bound_text(self) -> str:
        """``>= 80%`` / ``<= 5%`` / both."""
        return " and ".join(
            f"{op} {100 * v:g}%" for op, v in ((">=", self.minimum), ("<=", self.maximum)) if v is not None
        )


@dataclass
class FitSpec:
    name: str
    parameters: tuple[FitParameter, ...]
    scenarios: dict[str, dict[str, Any]]  # name -> {overrides: [...], n_patients: int}
    targets: tuple[FitTarget, ...]
    constraints: tuple[FitConstraint, ...]
    population_size: int
    max_generations: int
    max_walltime_minutes: float
    min_acceptance_rate: float
    predictive_draws: int
    seed: int
    overrides: tuple[str, ...] = ()
    fixed: dict[str, Any] = field(default_factory=dict)
    #: point estimate shipped as fitted.yaml: 0 = weighted posterior medians; k > 0 = the one of the
    #: k last-generation particles closest to the targets (ABC distance) whose re-simulation on
    #: cohorts ``point_scale`` times larger is closest (marginal medians can fall off a ridge)
    point_candidates: int = 0
    point_scale: int = 4
    requirements: tuple[FitRequirement, ...] = ()


def _positive_int(where: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(where, value, f"an integer >= {minimum}")
    return value


def parse_fit_spec(
    data: Mapping[str, Any], known: Mapping[str, Mapping[str, Any]], targets: list[Target], scenario_names: list[str]
) -> FitSpec:
    """Validate a fit spec: parameters against the schema, targets against the targets file,
    scenarios against ``conf/scenario``; every problem is a :class:`ConfigError`."""
    allowed = {
        "name",
        "parameters",
        "scenarios",
        "targets",
        "constraints",
        "population_size",
        "max_generations",
        "max_walltime_minutes",
        "min_acceptance_rate",
        "predictive_draws",
        "seed",
        "overrides",
        "targets_file",
        "point_estimate",
        "requirements",
    }
    for key in data:
        if key not in allowed:
            raise ConfigError(f"fit.{key}", data[key], f"unknown key; allowed {sorted(allowed)}")
    params = []
    for path, prior in (data.get("parameters") or {}).items():
        r = parse_range(f"fit.parameters.{path}", str(path), prior, known)
        meta = known[r.path]
        params.append(FitParameter(r.path, r.lo, r.hi, r.log, str(meta.get("unit", "")), str(meta.get("source", ""))))
    if not params:
        raise ConfigError("fit.parameters", data.get("parameters"), "at least one parameter to fit")
    scenarios: dict[str, dict[str, Any]] = {}
    for name, sc in (data.get("scenarios") or {}).items():
        where = f"fit.scenarios.{name}"
        if name not in scenario_names:
            raise ConfigError(where, name, f"a scenario of conf/scenario ({scenario_names})")
        if not isinstance(sc, Mapping):
            raise ConfigError(where, sc, "a mapping {n_patients: int, overrides: [...]}")
        scenarios[name] = {
            "n_patients": _positive_int(f"{where}.n_patients", sc.get("n_patients")),
            "overrides": [str(o) for o in sc.get("overrides") or ()],
        }
    if not scenarios:
        raise ConfigError("fit.scenarios", data.get("scenarios"), "at least one cohort scenario")
    by_name = {t.name: t for t in targets}
    fit_targets = []
    for name, m in (data.get("targets") or {}).items():
        where = f"fit.targets.{name}"
        if name not in by_name:
            raise ConfigError(where, name, "a target of data/targets/clinical_targets.yaml")
        t = by_name[name]
        if not isinstance(m, Mapping) or m.get("scenario") not in scenarios:
            raise ConfigError(
                f"{where}.scenario",
                (m or {}).get("scenario") if isinstance(m, Mapping) else m,
                f"one of the fit's scenarios {sorted(scenarios)}",
            )
        if m.get("statistic") not in STATISTICS:
            raise ConfigError(f"{where}.statistic", m.get("statistic"), f"one of {sorted(STATISTICS)}")
        if not isinstance(t.value, int | float) or t.unit != "%":
            raise ConfigError(where, t.value, "a single percentage in the targets file")
        # the spec may state the denominator that a report leaves open (an approximate figure)
        n = _positive_int(f"{where}.n", m["n"]) if m.get("n") is not None else t.n
        if n is None:
            raise ConfigError(f"{where}.n", None, "the target's cohort size (n) in the targets file or here")
        fit_targets.append(FitTarget(name, m["scenario"], m["statistic"], float(t.value) / 100.0, int(n), t))
    constraints = []
    for name, c in (data.get("constraints") or {}).items():
        where = f"fit.constraints.{name}"
        if name not in by_name:
            raise ConfigError(where, name, "a target of data/targets/clinical_targets.yaml")
        if not isinstance(c, Mapping) or c.get("scenario") not in scenarios:
            raise ConfigError(f"{where}.scenario", c, f"one of the fit's scenarios {sorted(scenarios)}")
        if c.get("check") not in CHECKS:
            raise ConfigError(f"{where}.check", c.get("check"), f"one of {list(CHECKS)}")
        penalty = float(c.get("penalty", 4.0))
        if penalty < 0:
            raise ConfigError(f"{where}.penalty", penalty, ">= 0")
        constraints.append(FitConstraint(name, c["scenario"], c["check"], str(by_name[name].value), penalty))
    requirements = tuple(_requirement(name, r, scenarios) for name, r in (data.get("requirements") or {}).items())
    taken = {t.name for t in fit_targets} | {c.name for c in constraints}
    for r in requirements:
        if r.name in taken:
            raise ConfigError(f"fit.requirements.{r.name}", r.name, "a name not used by a target or constraint")
    for key, lo in (("population_size", 2), ("max_generations", 1), ("predictive_draws", 0)):
        _positive_int(f"fit.{key}", data.get(key), lo)
    rate = data.get("min_acceptance_rate", 0.0)
    if not isinstance(rate, int | float) or not 0.0 <= rate < 1.0:
        raise ConfigError("fit.min_acceptance_rate", rate, "a number in [0, 1)")
    wall = data.get("max_walltime_minutes")
    if not isinstance(wall, int | float) or wall <= 0:
        raise ConfigError("fit.max_walltime_minutes", wall, "a positive number of minutes")
    point = data.get("point_estimate") or {}
    if not isinstance(point, Mapping) or set(point) - {"candidates", "scale"}:
        raise ConfigError("fit.point_estimate", point, "a mapping {candidates: int >= 1, scale: int >= 1}")
    candidates = _positive_int("fit.point_estimate.candidates", point["candidates"]) if point else 0
    scale = _positive_int("fit.point_estimate.scale", point.get("scale", 4))
    return FitSpec(
        name=str(data.get("name", "fit")),
        parameters=tuple(params),
        scenarios=scenarios,
        point_candidates=candidates,
        point_scale=scale,
        requirements=requirements,
        targets=tuple(fit_targets),
        constraints=tuple(constraints),
        population_size=data["population_size"],
        max_generations=data["max_generations"],
        max_walltime_minutes=float(wall),
        min_acceptance_rate=float(rate),
        predictive_draws=data["predictive_draws"],
        seed=_positive_int("fit.seed", data.get("seed", 0), 0),
        overrides=tuple(str(o) for o in data.get("overrides") or ()),
    )


def _requirement(name: str, r: Any, scenarios: Mapping[str, Any]) -> FitRequirement:
    where = f"fit.requirements.{name}"
    if not isinstance(r, Mapping) or set(r) - {"scenario", "statistic", "min", "max", "source"}:
        raise ConfigError(where, r, "a mapping {scenario, statistic, min and/or max (%), source}")
    if r.get("scenario") not in scenarios:
        raise ConfigError(f"{where}.scenario", r.get("scenario"), f"one of the fit's scenarios {sorted(scenarios)}")
    if r.get("statistic") not in STATISTICS:
        raise ConfigError(f"{where}.statistic", r.get("statistic"), f"one of {sorted(STATISTICS)}")
    bounds = {}
    for key in ("min", "max"):
        v = r.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int | float) or not 0.0 <= v <= 100.0):
            raise ConfigError(f"{where}.{key}", v, "a percentage in [0, 100]")
        bounds[key] = None if v is None else float(v) / 100.0
    if bounds["min"] is None and bounds["max"] is None:
        raise ConfigError(where, dict(r), "at least one of min, max")
    if bounds["min"] is not None and bounds["max"] is not None and bounds["min"] > bounds["max"]:
        raise ConfigError(f"{where}.min", r["min"], f"<= max ({r['max']})")
    if not str(r.get("source") or "").strip():
        raise ConfigError(
            f"{where}.source", r.get("source"), "the reason for the bound (a citation or 'assumption: ...')"
        )
    return FitRequirement(name, r["scenario"], r["statistic"], bounds["min"], bounds["max"], str(r["source"]))
