"""Outcome analysis of a cohort (``patients.parquet``): incidence, sites, survival, risk.

* incidence of PS, EM and EMD (either) at diagnosis (over diagnosed patients) and at first
  relapse (over relapsed patients), with Wilson 95% intervals;
* site distribution at diagnosis vs relapse;
* cumulative incidence of EM, PS and EMD after diagnosis with death as a competing risk
  (Aalen-Johansen, lifelines);
* Kaplan-Meier PFS and OS by EMD status at diagnosis, log-rank test and Cox hazard ratio
  (lifelines);
* association of EMD with GEP70 high risk: odds ratio with a 95% interval (scipy).

Pure pandas/numpy/scipy/lifelines on the patient table; no plotting here.  Times are in months of
30.4375 days.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from emdsim.analysis.summary import km_median_months
from emdsim.units import DAYS_PER_MONTH

__all__ = [
    "wilson_interval",
    "incidence_table",
    "site_table",
    "cumulative_incidence_table",
    "survival_table",
    "survival_statistics",
    "risk_association",
    "analyse",
]

#: outcome definition -> column prefix of the patient table (EMD: either PS or EM)
OUTCOME_COLUMNS = {"PS": "ps", "EM": "em", "EMD": "emd"}


def wilson_interval(count: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion; (nan, nan) when n is 0."""
    if n == 0:
        return float("nan"), float("nan")
    from scipy.stats import binomtest  # scipy.stats costs ~0.5 s to import: only where it is used

    ci = binomtest(int(count), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def incidence_table(patients: pd.DataFrame) -> pd.DataFrame:
    """Tidy incidence: one row per (definition, timepoint) with count, n, fraction and Wilson interval."""
    dx = patients[patients["diagnosed"]]
    dx = dx.assign(emd_ever=dx["em_ever"] | dx["ps_ever"])  # the patient table has EM and PS ever
    rel = dx[dx["relapsed"]]
    rows = []
    for timepoint, frame, suffix in (
        ("diagnosis", dx, "at_diagnosis"),
        ("relapse", rel, "at_relapse"),
        ("ever", dx, "ever"),
    ):
        for definition, prefix in OUTCOME_COLUMNS.items():
            values = frame[f"{prefix}_{suffix}"]
            count, n = int(values.sum()), int(len(frame))
            lo, hi = wilson_interval(count, n)
            rows.append(
                {
                    "definition": definition,
                    "timepoint": timepoint,
                    "count": count,
                    "n": n,
                    "fraction": count / n if n else float("nan"),
                    "lower": lo,
                    "upper": hi,
                }
            )
    return pd.DataFrame(rows)


def site_table(patients: pd.DataFrame) -> pd.DataFrame:
    """Patients with a lesion at each site, at diagnosis and at first relapse (tidy)."""
    dx = patients[patients["diagnosed"]]
    rel = dx[dx["relapsed"]]
    rows = []
    for timepoint, frame, col in (("diagnosis", dx, "sites_at_diagnosis"), ("relapse", rel, "sites_at_relapse")):
        counts = pd.Series([s for sites in frame[col] for s in sites], dtype=object).value_counts()
        for site, count in counts.items():
            rows.append(
                {
                    "timepoint": timepoint,
                    "site": site,
                    "kind": "paraskeletal" if str(site).startswith("ps_") else "organ",
                    "count": int(count),
                    "n": int(len(frame)),
                    "fraction": count / len(frame) if len(frame) else float("nan"),
                }
            )
    return pd.DataFrame(rows, columns=["timepoint", "site", "kind", "count", "n", "fraction"])


def _competing_events(dx: pd.DataFrame, first_col: str | list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Time (months) and event code (1 = EMD detected, 2 = death first, 0 = censored)."""
    cols = [first_col] if isinstance(first_col, str) else first_col
    first = dx[cols].min(axis=1, skipna=True).to_numpy(float)
    first = np.where(np.isnan(first), np.inf, np.maximum(first, 0.0))
    os_days = dx["os_days"].to_numpy(float)
    has = first <= os_days
    # lesions seen at diagnosis count at a vanishing time after it (estimators start at t = 0)
    t = np.maximum(np.where(has, first, os_days) / DAYS_PER_MONTH, 1e-6)
    code = np.where(has, 1, np.where(dx["os_event"].to_numpy(bool), 2, 0))
    return t, code


def cumulative_incidence_table(patients: pd.DataFrame) -> pd.DataFrame:
    """Aalen-Johansen cumulative incidence of EM, PS and EMD after diagnosis, death competing."""
    from lifelines import AalenJohansenFitter

    dx = patients[patients["diagnosed"]]
    frames = []
    for name, col in (
        ("EM", "em_first_detected_days"),
        ("PS", "ps_first_detected_days"),
        ("EMD", ["em_first_detected_days", "ps_first_detected_days"]),
    ):
        t, code = _competing_events(dx, col)
        if len(t) == 0:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ajf = AalenJohansenFitter(calculate_variance=False, jitter_level=1e-6, seed=0)
            ajf = ajf.fit(t, code, event_of_interest=1)
        cif = ajf.cumulative_density_
        frames.append(
            pd.DataFrame(
                {
                    "endpoint": f"cif_{name}",
                    "group": "all",
                    "time_months": cif.index.to_numpy(float),
                    "value": cif.iloc[:, 0].to_numpy(float),
                }
            )
        )
    return (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=["endpoint", "group", "time_months", "value"])
    )


def survival_table(patients: pd.DataFrame, by: str = "emd_at_diagnosis") -> pd.DataFrame:
    """Kaplan-Meier curves of PFS and OS by ``by`` (tidy: endpoint, group, time, survival, CI)."""
    from lifelines import KaplanMeierFitter

    dx = patients[patients["diagnosed"]]
    rows = []
    for endpoint in ("pfs", "os"):
        for group, frame in dx.groupby(by):
            if frame.empty:
                continue
            km = KaplanMeierFitter().fit(frame[f"{endpoint}_days"] / DAYS_PER_MONTH, frame[f"{endpoint}_event"])
            ci = km.confidence_interval_survival_function_
            rows.append(
                pd.DataFrame(
                    {
                        "endpoint": endpoint,
                        "group": f"{by}={bool(group)}",
                        "time_months": km.survival_function_.index.to_numpy(float),
                        "value": km.survival_function_.iloc[:, 0].to_numpy(float),
                        "lower": ci.iloc[:, 0].to_numpy(float),
                        "upper": ci.iloc[:, 1].to_numpy(float),
                    }
                )
            )
    return (
        pd.concat(rows, ignore_index=True)
        if rows
        else pd.DataFrame(columns=["endpoint", "group", "time_months", "value", "lower", "upper"])
    )


def survival_statistics(patients: pd.DataFrame, by: str = "emd_at_diagnosis") -> dict[str, Any]:
    """Median PFS/OS by group, log-rank p and Cox hazard ratio (with 95% interval) of ``by``."""
    from lifelines import CoxPHFitter
    from lifelines.statistics import logrank_test

    dx = patients[patients["diagnosed"]]
    out: dict[str, Any] = {"by": by, "n_with": int(dx[by].sum()), "n_without": int((~dx[by]).sum())}
    for endpoint in ("pfs", "os"):
        t = dx[f"{endpoint}_days"] / DAYS_PER_MONTH
        e = dx[f"{endpoint}_event"].astype(bool)
        g = dx[by].astype(bool)
        for label, mask in (("with", g), ("without", ~g)):
            out[f"median_{endpoint}_months_{label}"] = km_median_months(dx.loc[mask, f"{endpoint}_days"], e[mask])
        stats: dict[str, Any] = {"logrank_p": None, "hazard_ratio": None, "hr_lower": None, "hr_upper": None}
        if g.any() and (~g).any() and e.any():
            stats["logrank_p"] = float(logrank_test(t[g], t[~g], e[g], e[~g]).p_value)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    cph = CoxPHFitter().fit(pd.DataFrame({"t": t, "e": e, "x": g.astype(float)}), "t", "e")
                s = cph.summary.loc["x"]
                stats.update(
                    hazard_ratio=float(s["exp(coef)"]),
                    hr_lower=float(s["exp(coef) lower 95%"]),
                    hr_upper=float(s["exp(coef) upper 95%"]),
                )
            except Exception:  # noqa: BLE001 - lifelines raises several types on degenerate data
                pass
        out.update({f"{endpoint}_{k}": v for k, v in stats.items()})
    return out


def risk_association(patients: pd.DataFrame, outcome: str = "em_ever", exposure: str = "high_risk") -> dict[str, Any]:
    """Odds ratio (conditional MLE) of ``outcome`` for ``exposure`` among diagnosed patients, with 95% CI."""
    dx = patients[patients["diagnosed"]]
    a = int((dx[exposure] & dx[outcome]).sum())
    b = int((dx[exposure] & ~dx[outcome]).sum())
    c = int((~dx[exposure] & dx[outcome]).sum())
    d = int((~dx[exposure] & ~dx[outcome]).sum())
    res: dict[str, Any] = {
        "outcome": outcome,
        "exposure": exposure,
        "table": [[a, b], [c, d]],
        "odds_ratio": None,
        "lower": None,
        "upper": None,
    }
    if min(a + b, c + d, a + c, b + d) > 0:
        from scipy.stats.contingency import odds_ratio

        orr = odds_ratio([[a, b], [c, d]])
        ci = orr.confidence_interval(0.95)
        res.update(odds_ratio=float(orr.statistic), lower=float(ci.low), upper=float(ci.high))
    return res


def analyse(patients: pd.DataFrame) -> tuple[dict[str, Any], dict[str, pd.DataFrame]]:
    """Summary additions and tidy tables (``incidence.parquet``, ``survival.parquet``, ``sites.parquet``)."""
    inc = incidence_table(patients)
    surv = pd.concat(
        [
            survival_table(patients).assign(kind="kaplan_meier"),
            cumulative_incidence_table(patients).assign(kind="cumulative_incidence"),
        ],
        ignore_index=True,
    )
    cif = surv[surv["kind"] == "cumulative_incidence"]

    def cif_at(endpoint: str, months: float) -> float | None:
        c = cif[(cif["endpoint"] == endpoint) & (cif["time_months"] <= months)]
        return float(c["value"].iloc[-1]) if len(c) else (0.0 if len(cif) else None)

    summary = {
        "incidence": {
            f"{r.definition}_{r.timepoint}": {
                "count": r.count,
                "n": r.n,
                "fraction": r.fraction,
                "lower": r.lower,
                "upper": r.upper,
            }
            for r in inc.itertuples()
        },
        "survival_by_emd_at_diagnosis": survival_statistics(patients),
        "cumulative_incidence": {
            f"{e}_{m}_months": cif_at(f"cif_{e}", m) for e in ("EM", "PS", "EMD") for m in (24, 60)
        },
        "risk_association": {
            "em_ever": risk_association(patients, "em_ever"),
            "emd_at_diagnosis": risk_association(patients, "emd_at_diagnosis"),
        },
    }
    return summary, {"incidence.parquet": inc, "survival.parquet": surv, "sites.parquet": site_table(patients)}
