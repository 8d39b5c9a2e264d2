"""Score the model against every reported figure: the validation behind ``emdsim-fit validate``.

A validation spec (``fits/evidence.yaml``) maps each target of ``data/targets/clinical_targets.yaml``
to a cohort scenario that mimics its study (config overrides, cohort size: the reported n by
default) and a statistic of :mod:`emdsim.analysis.evidence`.  Each scenario is simulated on
replicate seeds; the statistic is measured on the pooled replicates (and on each, for the
spread) and compared with the reported interval: a percentage or a median inside its interval,
the reported site among the most frequent simulated ones, an association that holds.  Targets the
model cannot express yet are listed with the reason, and count as outside.

Nothing here runs a simulation: the caller passes the cohorts in (the command runs them as Hydra
sweeps, through any launcher).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from emdsim.analysis.evidence import STATISTICS, finite, measure
from emdsim.analysis.survival import wilson_interval
from emdsim.analysis.targets import Target
from emdsim.config.schema import ConfigError

__all__ = [
    "Part",
    "Scenario",
    "Scored",
    "ValidationSpec",
    "parse_validation_spec",
    "pool",
    "score",
    "markdown",
    "COLUMNS",
    "PART_SEED_STRIDE",
    "part_seed",
]

#: the columns of validation.parquet: ``reported``, ``lower``, ``upper`` and ``simulated`` are numbers
#: where the figure is one number (NaN otherwise); ``*_values`` hold every number of a figure (a pair
#: of medians has two, a site or an association none) and ``*_text`` what the table shows
COLUMNS = [
    "target",
    "source",
    "scenario",
    "statistic",
    "kind",
    "unit",
    "reported",
    "lower",
    "upper",
    "simulated",
    "inside",
    "ratio",
    "within_2x",
    "expressible",
    "reported_values",
    "lower_values",
    "upper_values",
    "simulated_values",
    "reported_text",
    "interval_text",
    "simulated_text",
    "per_seed_text",
    "interval_from",
    "n_measured",
    "note",
    "mc_se",
    "edge_in_se",
]

#: a figure whose pooled value lies within this many Monte Carlo standard errors of its interval's
#: edge could fall on either side of it with other seeds (the report counts them)
NEAR_EDGE_SE = 2.0


@dataclass(frozen=True)
class Part:
    """One sub-cohort of a mixed scenario (a registry's transplanted and non-transplanted patients):
    its share of the patients and the overrides it adds to the scenario's."""

    name: str
    share: float
    overrides: tuple[str, ...]


#: part k of a mixed scenario runs on seeds ``k * PART_SEED_STRIDE + 1 ..``: its patients are
#: independent of the other parts' (part 0 keeps seeds 1.., as an unmixed scenario does)
PART_SEED_STRIDE = 1000


def part_seed(seed: int, k: int) -> int:
    """Part ``k``'s seed for a mixed scenario's ``seed`` (:data:`PART_SEED_STRIDE`)."""
    return seed + k * PART_SEED_STRIDE


@dataclass(frozen=True)
class Scenario:
    name: str
    overrides: tuple[str, ...]
    n_patients: int
    #: a mixed cohort's parts (empty: one cohort)
    parts: tuple[Part, ...] = ()

    def part_sizes(self, n: int | None = None) -> list[int]:
        """Patients per part of a cohort of ``n`` (``n_patients`` by default): each its share, rounded,
        the last the rest; one size for an unmixed scenario."""
        n = self.n_patients if n is None else n
        sizes = [round(p.share * n) for p in self.parts[:-1]]
        return [*sizes, n - sum(sizes)] if self.parts else [n]

    def part_overrides(self) -> list[tuple[str, ...]]:
        """Each part's overrides after the scenario's (one entry for an unmixed scenario)."""
        return [self.overrides + p.overrides for p in self.parts] if self.parts else [self.overrides]


@dataclass(frozen=True)
class Scored:
    target: Target
    scenario: str | None
    statistic: str | None
    lower: Any
    upper: Any
    interval_from: str
    why: str = ""


@dataclass(frozen=True)
class ValidationSpec:
    name: str
    experiment: str
    replicates: int
    overrides: tuple[str, ...]
    scenarios: dict[str, Scenario]
    targets: tuple[Scored, ...]
    unscored: tuple[tuple[Target, str], ...] = field(default=())


def _fits(kind: str, t: Target) -> bool:
    """Whether a statistic of ``kind`` can score target ``t`` (its kind, unit and shape)."""
    if kind == "sites":
        return t.kind == "ordering"
    if kind == "association":
        return t.kind == "association"
    pair = isinstance(t.value, list)
    ok = {
        "percent": t.unit == "%" and not pair,
        "months": t.unit == "months" and not pair,
        "pair_months": t.unit == "months" and pair,
        "years": t.unit == "years" and not pair,
    }
    return t.kind == "proportion" and ok.get(kind, False)


def _interval(where: str, t: Target, m: Mapping[str, Any]) -> tuple[Any, Any, str, str]:
    """The interval a target is scored against: the spec's (with its reason), the report's, or a
    Wilson interval from the reported value and n."""
    if m.get("interval") is not None:
        iv = m["interval"]
        if not (
            isinstance(iv, list) and len(iv) == 2 and all(isinstance(v, int | float) for v in iv) and iv[0] <= iv[1]
        ):
            raise ConfigError(f"{where}.interval", iv, "[lower, upper] with lower <= upper")
        why = str(m.get("why") or "").strip()
        if not why:
            raise ConfigError(
                f"{where}.why", m.get("why"), "the reason for the interval (a citation or 'assumption: ...')"
            )
        return float(iv[0]), float(iv[1]), "spec", why
    if t.lower is not None and t.upper is not None:
        return t.lower, t.upper, f"report ({t.ci})", ""
    if t.unit == "%" and isinstance(t.value, int | float) and t.n:
        lo, hi = wilson_interval(round(float(t.value) * t.n / 100.0), int(t.n))
        return 100.0 * lo, 100.0 * hi, "wilson from the reported value and n", ""
    raise ConfigError(
        f"{where}.interval", None, "an interval [lower, upper] and why: the report gives neither one nor its n"
    )


def _overrides(where: str, raw: Any, scenario_names: Sequence[str]) -> tuple[str, ...]:
    if raw is not None and (isinstance(raw, str | bytes) or not isinstance(raw, Sequence)):
        raise ConfigError(where, raw, "a list of config overrides")
    overrides = tuple(str(o) for o in raw or ())
    for o in overrides:
        if o.startswith("scenario=") and o.split("=", 1)[1] not in scenario_names:
            raise ConfigError(where, o, f"a scenario of conf/scenario ({sorted(scenario_names)})")
    return overrides


def _parts(where: str, raw: Any, scenario_names: Sequence[str]) -> tuple[Part, ...]:
    """A mixed scenario's parts: a list of {name, share, overrides, note}, shares > 0 summing to 1."""
    if raw is None:
        return ()
    if isinstance(raw, str | bytes) or not isinstance(raw, Sequence) or len(raw) < 2:
        raise ConfigError(where, raw, "a list of at least two parts {name, share, overrides, note}")
    parts = []
    for i, p in enumerate(raw):
        at = f"{where}[{i}]"
        if not isinstance(p, Mapping) or set(p) - {"name", "share", "overrides", "note"} or "share" not in p:
            raise ConfigError(at, p, "a mapping {name, share, overrides: [...], note}")
        name = str(p.get("name") or "")
        if not name.isidentifier() or name in {q.name for q in parts}:
            raise ConfigError(f"{at}.name", p.get("name"), "a name of letters, digits and _, unique among the parts")
        share = p["share"]
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0.0 < share < 1.0:
            raise ConfigError(f"{at}.share", share, "a share of the patients, 0 < share < 1")
        parts.append(Part(name, float(share), _overrides(f"{at}.overrides", p.get("overrides"), scenario_names)))
    total = sum(p.share for p in parts)
    if abs(total - 1.0) > 1e-9:
        raise ConfigError(where, [p.share for p in parts], f"shares summing to 1 (they sum to {total:g})")
    return tuple(parts)


def parse_validation_spec(
    data: Any, targets: Sequence[Target], scenario_names: Sequence[str], experiments: Sequence[str]
) -> ValidationSpec:
    """A validated spec; a :class:`ConfigError` names the first bad entry (unknown target, scenario
    or statistic, a target left out, a statistic that cannot score the target's kind, a target
    without the n its cohort needs)."""
    if not isinstance(data, Mapping):
        raise ConfigError("validate", data, "a mapping with scenarios: and targets:")
    allowed = {"name", "experiment", "replicates", "overrides", "scenarios", "targets"}
    for key in data:
        if key not in allowed:
            raise ConfigError(f"validate.{key}", data[key], f"unknown key; allowed {sorted(allowed)}")
    experiment = str(data.get("experiment", "fitted"))
    if experiment not in experiments:
        raise ConfigError(
            "validate.experiment", experiment, f"a parameter set of conf/experiment ({sorted(experiments)})"
        )
    replicates = data.get("replicates", 2)
    if isinstance(replicates, bool) or not isinstance(replicates, int) or replicates < 1:
        raise ConfigError("validate.replicates", replicates, "an integer >= 1 (seeds 1..replicates)")
    by_name = {t.name: t for t in targets}
    spec_targets = data.get("targets") or {}
    if not isinstance(spec_targets, Mapping):
        raise ConfigError("validate.targets", spec_targets, "a mapping target -> {scenario, statistic}")
    for name in spec_targets:
        if name not in by_name:
            raise ConfigError(f"validate.targets.{name}", name, "a target of data/targets/clinical_targets.yaml")
    missing = [t.name for t in targets if t.name not in spec_targets]
    if missing:
        raise ConfigError("validate.targets", missing, "every target of the targets file (these are not in the spec)")
    raw_scenarios = data.get("scenarios") or {}
    if not isinstance(raw_scenarios, Mapping) or not raw_scenarios:
        raise ConfigError("validate.scenarios", raw_scenarios, "a mapping name -> {overrides: [...], n_patients}")
    scored, unscored, sizes = [], [], {}
    for name, m in spec_targets.items():
        where, t = f"validate.targets.{name}", by_name[name]
        if not isinstance(m, Mapping):
            raise ConfigError(where, m, "a mapping {scenario, statistic} or {expressible: false, why}")
        if m.get("expressible", True) is False:
            why = str(m.get("why") or "").strip()
            if not why:
                raise ConfigError(f"{where}.why", None, "why the model cannot express this target")
            unscored.append((t, why))
            continue
        if m.get("scenario") not in raw_scenarios:
            raise ConfigError(
                f"{where}.scenario", m.get("scenario"), f"one of the spec's scenarios {sorted(raw_scenarios)}"
            )
        stat = m.get("statistic")
        if stat not in STATISTICS:
            raise ConfigError(f"{where}.statistic", stat, f"one of {sorted(STATISTICS)}")
        kind = STATISTICS[stat].kind
        if not _fits(kind, t):
            raise ConfigError(f"{where}.statistic", stat, f"a statistic for a {t.kind} in {t.unit} ({kind} is not)")
        lower, upper, source, why = (
            (None, None, "holds", "") if kind in ("sites", "association") else _interval(where, t, m)
        )
        scored.append(Scored(t, m["scenario"], stat, lower, upper, source, why))
        if t.n:
            sizes.setdefault(m["scenario"], []).append(int(t.n))
    scenarios = {}
    for name, sc in raw_scenarios.items():
        where = f"validate.scenarios.{name}"
        if not isinstance(sc, Mapping) or set(sc) - {"overrides", "n_patients", "note", "parts"}:
            raise ConfigError(where, sc, "a mapping {overrides: [...], n_patients: int, parts: [...], note}")
        overrides = _overrides(f"{where}.overrides", sc.get("overrides"), scenario_names)
        parts = _parts(f"{where}.parts", sc.get("parts"), scenario_names)
        n = sc.get("n_patients")
        if n is None:
            if not sizes.get(name):
                raise ConfigError(f"{where}.n_patients", None, "a cohort size: none of its targets reports its n")
            n = max(sizes[name])
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"{where}.n_patients", n, "an integer >= 1")
        if parts and n < len(parts):
            raise ConfigError(f"{where}.n_patients", n, f"at least one patient per part ({len(parts)} parts)")
        scenarios[name] = Scenario(name, overrides, int(n), parts)
    return ValidationSpec(
        name=str(data.get("name", "evidence")),
        experiment=experiment,
        replicates=int(replicates),
        overrides=tuple(str(o) for o in data.get("overrides") or ()),
        scenarios=scenarios,
        targets=tuple(scored),
        unscored=tuple(unscored),
    )


def _inside(kind: str, value: Any, t: Target, lower: Any, upper: Any) -> bool:
    if kind == "sites":
        return str(t.value) in value
    if kind == "association":
        return bool(value) == (str(t.value) == "positive")
    if not finite(value):
        return False
    if kind == "pair_months":
        return all(lo <= v <= hi for v, lo, hi in zip(value, lower, upper, strict=True))
    return bool(lower <= value <= upper)


def _ratio(kind: str, value: Any, reported: Any, lower: Any, upper: Any) -> float:
    """Simulated over reported (the worse of a pair), against the interval's middle where the report
    gives a range or a 0; NaN where a ratio means nothing (a site, an association, nothing measured)."""
    if kind in ("sites", "association") or not finite(value):
        return math.nan
    pair = kind == "pair_months"
    values = list(value) if pair else [value]
    refs = list(reported) if pair else [reported]
    lows, highs = (list(lower), list(upper)) if pair else ([lower], [upper])
    ratios = []
    for v, r, lo, hi in zip(values, refs, lows, highs, strict=True):
        ref = r if r else (lo + hi) / 2.0
        ratios.append(1.0 if v == ref else (v / ref if ref else math.inf))
    return max(ratios, key=lambda x: abs(math.log(x)) if 0 < x < math.inf else math.inf)


def score(spec: ValidationSpec, cohorts: Mapping[str, Sequence[tuple[pd.DataFrame, pd.DataFrame]]]) -> pd.DataFrame:
    """One row per target (:data:`COLUMNS`): ``cohorts[scenario]`` holds the (patients, lesions)
    tables of each replicate; the statistic is measured on the pooled replicates."""
    rows = []
    for s in spec.targets:
        t, kind = s.target, STATISTICS[s.statistic].kind
        reps = cohorts.get(s.scenario) or []
        pooled = measure(s.statistic, *pool(reps)) if reps else None
        per_seed = [measure(s.statistic, p, le).value for p, le in reps]
        value = pooled.value if pooled else math.nan
        inside = pooled is not None and _inside(kind, value, t, s.lower, s.upper)
        se, edge = _monte_carlo(value, per_seed, s.lower, s.upper)
        ratio = _ratio(kind, value, t.value, s.lower, s.upper)
        qualitative = kind in ("sites", "association")
        rows.append(
            _row(t, s.lower, s.upper, value)
            | {
                "scenario": s.scenario,
                "statistic": s.statistic,
                "kind": kind,
                "inside": bool(inside),
                "ratio": ratio,
                # inside its interval is as close as the report allows, whatever the ratio (a reported 0)
                "within_2x": inside or (not qualitative and bool(finite(ratio) and 0.5 <= ratio <= 2.0)),
                "expressible": True,
                "simulated_text": _text(value),
                "per_seed_text": "; ".join(_text(v) for v in per_seed),
                "interval_from": s.interval_from + (f": {s.why}" if s.why else ""),
                "n_measured": pooled.n if pooled else 0,
                "note": STATISTICS[s.statistic].what,
                "mc_se": se,
                "edge_in_se": edge,
            }
        )
    for t, why in spec.unscored:
        rows.append(
            _row(t, t.lower, t.upper, None)
            | {"scenario": None, "statistic": None, "kind": None, "inside": False, "ratio": math.nan,
               "within_2x": False, "expressible": False, "simulated_text": "", "per_seed_text": "",
               "interval_from": "", "n_measured": 0, "note": f"not expressible: {why}", "mc_se": math.nan,
               "edge_in_se": math.nan}
        )  # fmt: skip
    order = {t.name: i for i, t in enumerate([s.target for s in spec.targets] + [t for t, _ in spec.unscored])}
    frame = pd.DataFrame(rows, columns=COLUMNS)
    return frame.sort_values("target", key=lambda c: c.map(order)).reset_index(drop=True)


def _monte_carlo(value: Any, per_seed: Sequence[Any], lower: Any, upper: Any) -> tuple[float, float]:
    """The Monte Carlo standard error of a one-number figure pooled over ``r`` equal replicates, from
    their spread (``sd / sqrt(r)``, r >= 2), and the pooled value's distance to the nearer edge of its
    interval in those errors (positive inside, negative outside); NaN for a pair, a site, an
    association, one replicate or no spread."""
    nums = [_numbers(v) for v in per_seed]
    if len(nums) < 2 or any(len(n) != 1 for n in nums) or len(_numbers(value)) != 1:
        return math.nan, math.nan
    x = np.array([n[0] for n in nums])
    lo, hi = _numbers(lower), _numbers(upper)
    if not np.isfinite(x).all() or len(lo) != 1 or len(hi) != 1:
        return math.nan, math.nan
    se = float(x.std(ddof=1) / math.sqrt(len(x)))
    if not se > 0.0:
        return math.nan, math.nan
    v = float(value)
    return se, min(v - lo[0], hi[0] - v) / se


def pool(reps: Sequence[tuple[pd.DataFrame, pd.DataFrame]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cohorts as one (the replicates of a scenario, or the parts of a mixed one): patient ids made
    distinct per cohort (each numbers its patients from 0), so that a lesion stays with its own patient."""
    offset, patients, lesions = 0, [], []
    for p, le in reps:
        patients.append(p.assign(patient_id=p["patient_id"] + offset))
        lesions.append(le.assign(patient_id=le["patient_id"] + offset))
        ids = [*p["patient_id"], *le["patient_id"]]
        offset += int(max(ids)) + 1 if ids else 0
    return pd.concat(patients, ignore_index=True), pd.concat(lesions, ignore_index=True)


def _numbers(value: Any) -> list[float]:
    """Every number of a figure: one, a pair, or none (a site, an association, nothing)."""
    items = value if isinstance(value, list | tuple) else [value]
    if not items or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in items):
        return []
    return [float(v) for v in items]


def _row(t: Target, lower: Any, upper: Any, simulated: Any) -> dict[str, Any]:
    """The columns that describe a target and its simulated value, as numbers and as text."""
    values = {"reported": _numbers(t.value), "lower": _numbers(lower), "upper": _numbers(upper)}
    values["simulated"] = _numbers(simulated)
    out: dict[str, Any] = {"target": t.name, "source": t.source, "unit": t.unit}
    for key, v in values.items():
        out[key] = v[0] if len(v) == 1 else math.nan
        out[f"{key}_values"] = v
    out["reported_text"] = _text(t.value)
    out["interval_text"] = f"[{_text(lower)}, {_text(upper)}]" if lower is not None and upper is not None else ""
    return out


def _text(value: Any) -> str:
    """Values of every kind as text for the table (a pair as ``a / b``, a site list joined)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "holds" if value else "does not hold"
    if isinstance(value, list | tuple):
        return " / ".join(_text(v) for v in value) if value else "none"
    if isinstance(value, float | np.floating):
        if math.isnan(value):
            return "n/a"
        if math.isinf(value):
            return "not reached"
        return f"{value:.3g}"
    return str(value)


def markdown(frame: pd.DataFrame, header: str) -> str:
    """validation.md: the count, then one row per target."""
    inside = int(frame["inside"].sum())
    expressible = int(frame["expressible"].sum())
    near = frame["edge_in_se"].abs() < NEAR_EDGE_SE
    lines = [
        header,
        "",
        f"**{inside} of {len(frame)} reported figures inside their intervals** "
        f"({expressible} expressible; {int(frame['within_2x'].sum())} within a factor of 2). "
        f"Within {NEAR_EDGE_SE:g} Monte Carlo standard errors of an interval's edge (the seeds' spread; "
        f"other seeds could put them on either side): {int((near & frame['inside']).sum())} inside, "
        f"{int((near & ~frame['inside']).sum())} outside.",
        "",
        "| target | scenario | statistic | reported | interval | simulated (pooled) | per seed | MC s.e. | inside |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r, close in zip(frame.itertuples(), near, strict=True):
        mark = "yes" if r.inside else ("**no**" if r.expressible else "not expressible")
        if close:
            mark += " (near the edge)"
        unit = "" if r.unit == "%" else f" {r.unit}"
        se = "" if math.isnan(r.mc_se) else _text(r.mc_se)
        lines.append(
            f"| `{r.target}` | {r.scenario or ''} | {r.statistic or r.note} | {r.reported_text}{unit} | "
            f"{r.interval_text} | {r.simulated_text} | {r.per_seed_text} | {se} | {mark} |"
        )
    return "\n".join(lines) + "\n"
