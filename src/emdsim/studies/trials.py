"""in-silico trials: arms compared on the same virtual patients (common random numbers).

A trial (an entry of ``trials/trials.yaml``) runs every arm on the same replicate cohorts:
replicate ``r`` uses ``seed=r`` in every arm, so the arms see the same patients (baselines are
drawn per patient from the seed tree) and the same block streams.  Arms are either options of a
config group (``treatment=conventional_asct,vtd_asct``) or named parameter sets, written as a
design table and swept as ``design.row``.  :func:`compare` gives, for each metric, each arm's mean
over replicates and its paired difference from the reference arm with a 95% t interval across
replicates.  :func:`wound_lesions` summarises wound-site plasmacytomas from the jobs' lesions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from emdsim.config.schema import ConfigError
from emdsim.units import DAYS_PER_MONTH

__all__ = ["TrialSpec", "parse_trial", "arm_table", "compare", "wound_lesions"]


class TrialSpec(dict):
    """A validated trial entry (a dict with the keys documented in trials/trials.yaml)."""


def parse_trial(name: str, data: Mapping[str, Any], groups: Mapping[str, list[str]]) -> TrialSpec:
    where = f"trials.{name}"
    required = {"question", "config", "arms", "reference", "replicates", "n_patients", "metrics"}
    allowed = required | {"arm_group", "overrides", "limits", "followup_years", "analyses"}
    if not isinstance(data, Mapping):
        raise ConfigError(where, data, "a mapping")
    for key in data:
        if key not in allowed:
            raise ConfigError(f"{where}.{key}", data[key], f"unknown key; allowed {sorted(allowed)}")
    missing = required - set(data)
    if missing:
        raise ConfigError(where, sorted(missing), "these keys are required")
    arms = data["arms"]
    group = data.get("arm_group")
    if group is not None:
        if group not in groups:
            raise ConfigError(f"{where}.arm_group", group, f"a config group ({sorted(groups)})")
        if not isinstance(arms, list) or len(arms) < 2 or any(a not in groups[group] for a in arms):
            raise ConfigError(f"{where}.arms", arms, f"at least two options of {group} ({groups[group]})")
        names = list(arms)
    else:
        if not isinstance(arms, Mapping) or len(arms) < 2:
            raise ConfigError(f"{where}.arms", arms, "at least two named arms {name: {parameter.path: value}}")
        names = list(arms)
    if data["reference"] not in names:
        raise ConfigError(f"{where}.reference", data["reference"], f"one of the arms {names}")
    for key, lo in (("replicates", 2), ("n_patients", 1)):
        v = data[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ConfigError(f"{where}.{key}", v, f"an integer >= {lo}")
    if data["config"] not in groups.get("experiment", []):
        raise ConfigError(
            f"{where}.config", data["config"], f"a parameter set of conf/experiment ({groups.get('experiment')})"
        )
    return TrialSpec(dict(data, name=name, arm_names=names))


def arm_table(spec: TrialSpec, defaults: Mapping[str, Any]) -> pd.DataFrame:
    """Design table of parameter-set arms: one row per arm, the defaults where an arm sets nothing
    (``defaults``: the configuration's value at each path an arm sets; a non-number is an error)."""
    arms = spec["arms"]
    paths = sorted({p for values in arms.values() for p in (values or {})})
    missing = [p for p in paths if not isinstance(defaults.get(p), int | float) or isinstance(defaults.get(p), bool)]
    if missing:
        raise ConfigError(f"trials.{spec['name']}.arms", missing, "parameter paths of the configuration")
    return pd.DataFrame([{p: float((arms[a] or {}).get(p, defaults[p])) for p in paths} for a in spec["arm_names"]])


def compare(
    frame: pd.DataFrame,
    arm: str,
    reference: str,
    metrics: Sequence[str],
    replicate: str = "override.seed",
    order: Sequence[Any] | None = None,
    draw: str | None = None,
) -> pd.DataFrame:
    """Per metric and arm: mean over replicates, and the paired difference from ``reference``
    (mean, 95% t interval over replicates, number of pairs).  With parameter draws (``draw``: the
    column naming each replicate's draw) also the effect's spread over the parameters: the paired
    difference averaged over each draw's seeds, and the 5th and 95th percentiles of those per-draw
    effects (``draws_5``, ``draws_95``, ``n_draws``).  The t interval is that of the mean effect over
    the posterior; the percentiles say how much the effect itself depends on the parameters."""
    done = frame[frame["status"] == "done"]
    rows = []
    for metric in metrics:
        if metric not in done:
            continue
        wide = done.pivot_table(index=replicate, columns=arm, values=metric, aggfunc="first", dropna=False)
        if order is not None:
            wide = wide[[a for a in order if a in wide.columns]]
        for a in wide.columns:
            vals = wide[a].to_numpy(float)
            row = {
                "metric": metric,
                "arm": a,
                "mean": float(np.nanmean(vals)) if np.isfinite(vals).any() else math.nan,
                "n_replicates": int(np.isfinite(vals).sum()),
            }
            if a != reference and reference in wide:
                d = (wide[a] - wide[reference]).to_numpy(float)
                d = d[np.isfinite(d)]
                mean = float(d.mean()) if len(d) else math.nan
                half = (
                    float(stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d)))
                    if len(d) >= 2
                    else math.nan
                )
                row.update({"difference": mean, "lower": mean - half, "upper": mean + half, "n_pairs": int(len(d))})
                if draw is not None:
                    row.update(_per_draw(done, wide[a] - wide[reference], replicate, draw))
            rows.append(row)
    return pd.DataFrame(rows)


def _per_draw(done: pd.DataFrame, paired: pd.Series, replicate: str, draw: str) -> dict[str, Any]:
    """The 5th and 95th percentiles over draws of the paired difference averaged over a draw's seeds."""
    draws = done.drop_duplicates(replicate).set_index(replicate)[draw]
    per = paired.groupby(draws.reindex(paired.index).to_numpy()).mean().dropna()
    low, high = np.percentile(per.to_numpy(float), [5, 95]) if len(per) else (math.nan, math.nan)
    return {"draws_5": float(low), "draws_95": float(high), "n_draws": int(len(per))}


def wound_lesions(jobs: Sequence[tuple[Any, Path]]) -> pd.DataFrame:
    """Wound-site lesions of the jobs ``(arm, job directory)``: one row per lesion with the months
    from the procedure to its seeding and the patient's risk group."""
    rows = []
    for arm_value, d in jobs:
        les = pd.read_parquet(Path(d) / "lesions.parquet")
        pts = pd.read_parquet(Path(d) / "patients.parquet").set_index("patient_id")
        wound = les[les["kind"] == "wound"]
        for r in wound.itertuples():
            p = pts.loc[r.patient_id]
            rows.append(
                {
                    "arm": arm_value,
                    "dir": Path(d).name,
                    "patient_id": r.patient_id,
                    "site": r.site,
                    "months_after_procedure": (r.onset_days - r.wound_opened_days) / DAYS_PER_MONTH,
                    "detected": bool(
                        r.detected_at_diagnosis or r.detected_at_relapse or not math.isnan(r.detectable_days)
                    ),
                    "high_risk": bool(p["high_risk"]),
                    "subgroup": p["subgroup"],
                    "treatment": p["treatment"],
                }
            )
    return pd.DataFrame(
        rows,
        columns=[
            "arm",
            "dir",
            "patient_id",
            "site",
            "months_after_procedure",
            "detected",
            "high_risk",
            "subgroup",
            "treatment",
        ],
    )
