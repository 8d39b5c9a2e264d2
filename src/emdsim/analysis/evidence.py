"""The statistics that score the model against reported figures (``emdsim-fit validate``).

Each statistic is a pure function of a cohort's patient and lesion tables (one row per patient,
one per lesion; times in days from diagnosis) and returns what it measured with its denominator.
Definitions follow the reports they are compared with: "secondary EMD" is soft-tissue disease
first seen after diagnosis in a patient without it at diagnosis (Varettoni 2010); a registry that
records EMD when each line of therapy starts (Stork 2022) counts it only at a later line's start
(``*_at_line*``); "future EMD vs none" compares, from diagnosis, the patients who later develop EMD
with those who never do (the comparison conditions on the future, as the report's did); a "risk" of
EMD may be a Kaplan-Meier one, deaths censored (``secondary_emd_risk_km``, Mangiacavalli 2017).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from emdsim.analysis.summary import km_median_months
from emdsim.units import DAYS_PER_MONTH, DAYS_PER_YEAR

__all__ = ["Measure", "Statistic", "STATISTICS", "STOP_AT_DIAGNOSIS", "measure", "stops_at_diagnosis"]


@dataclass(frozen=True)
class Measure:
    """What a statistic measured: a value (a percentage, a median, a pair of medians, the top sites or
    whether an association holds) and the patients it was measured on."""

    value: Any
    n: int


@dataclass(frozen=True)
class Statistic:
    name: str
    #: ``percent``, ``months``, ``years``, ``pair_months`` (two medians), ``sites`` (the most frequent
    #: ones) or ``association`` (holds or not)
    kind: str
    #: what it counts, over which patients
    what: str
    compute: Callable[[pd.DataFrame, pd.DataFrame], Measure]
    #: it reads nothing after diagnosis, so a cohort measured only on such statistics may stop every
    #: course at diagnosis (:data:`STOP_AT_DIAGNOSIS`) and measure the same values
    at_diagnosis: bool = False


def _dx(p: pd.DataFrame) -> pd.DataFrame:
    return p[p["diagnosed"]]


def _percent(mask: pd.Series) -> Measure:
    n = int(len(mask))
    return Measure(100.0 * float(mask.mean()) if n else math.nan, n)


def _emd_ever(p: pd.DataFrame) -> pd.Series:
    return p["em_ever"] | p["ps_ever"]


def _secondary(p: pd.DataFrame) -> pd.Series:
    """EMD first seen after diagnosis in a patient without it at diagnosis."""
    return _emd_ever(p) & ~p["emd_at_diagnosis"]


def _without_emd_at_diagnosis(p: pd.DataFrame) -> pd.DataFrame:
    dx = _dx(p)
    return dx[~dx["emd_at_diagnosis"]]


def _with_secondary(p: pd.DataFrame) -> pd.DataFrame:
    dx = _dx(p)
    return dx[_secondary(dx)]


def _secondary_at_line(p: pd.DataFrame) -> pd.Series:
    """EMD recorded at the start of a later line (none at diagnosis), as a registry that records
    EMD when each line starts sees it (Stork 2022: EMD "at initiation of first or higher line")."""
    return p["emd_at_later_line_days"].notna() & ~p["emd_at_diagnosis"]


def _responded_in_both(s: pd.DataFrame) -> pd.Series:
    return s["salvage_serum_response"] & s["salvage_soft_tissue_response"]


def _first_emd_days(p: pd.DataFrame) -> pd.Series:
    """Days from diagnosis to the first soft-tissue lesion seen (<= 0: at diagnosis; NaN: never)."""
    return p[["em_first_detected_days", "ps_first_detected_days"]].min(axis=1)


def _secondary_risk_km(p: pd.DataFrame) -> Measure:
    """Kaplan-Meier risk (%) of a first EMD seen after diagnosis by the end of follow-up, among the
    diagnosed without EMD at diagnosis: time to the first lesion seen, deaths and the end of follow-up
    censored (1 - S at the last time)."""
    from lifelines import KaplanMeierFitter

    at_risk = _without_emd_at_diagnosis(p)
    if not len(at_risk):
        return Measure(math.nan, 0)
    first = _first_emd_days(at_risk)
    event = first.notna().to_numpy(bool)
    days = np.where(event, first.to_numpy(float), at_risk["os_days"].to_numpy(float))
    km = KaplanMeierFitter().fit(np.maximum(days, 0.0), event)
    return Measure(100.0 * (1.0 - float(km.survival_function_.iloc[-1, 0])), int(len(at_risk)))


def _median(values: pd.Series, scale: float) -> Measure:
    v = values.dropna()
    return Measure(float(v.median()) / scale if len(v) else math.nan, int(len(v)))


def _km(days: pd.Series, event: pd.Series) -> float:
    m = km_median_months(days, event) if len(days) else None
    return math.inf if m is None else m  # not reached: longer than follow-up


def _pair(p: pd.DataFrame, endpoint: str, at_line: bool = False) -> Measure:
    """Kaplan-Meier medians from diagnosis of the patients who later develop EMD and of those who never
    have it (``at_line``: as a registry recording EMD at line starts sees it: EMD recorded at a later
    line's start, against no EMD at diagnosis or at any line start)."""
    dx = _dx(p)
    if at_line:
        future, never = dx[_secondary_at_line(dx)], dx[~dx["emd_at_diagnosis"] & dx["emd_at_later_line_days"].isna()]
    else:
        future, never = dx[_secondary(dx)], dx[~_emd_ever(dx)]
    values = [_km(g[f"{endpoint}_days"], g[f"{endpoint}_event"].astype(bool)) for g in (future, never)]
    return Measure(values, int(len(future) + len(never)))


def _os_from_emd(p: pd.DataFrame, organ_only: bool = False) -> Measure:
    """Kaplan-Meier median OS (years) from the first EMD seen (``organ_only``: the first EM seen)."""
    dx = _dx(p)
    emd = dx[dx["em_ever"]] if organ_only else dx[_emd_ever(dx)]
    start = (emd["em_first_detected_days"] if organ_only else _first_emd_days(emd)).clip(lower=0.0)
    days = (emd["os_days"] - start).clip(lower=0.0)
    months = _km(days, emd["os_event"].astype(bool))
    return Measure(months * DAYS_PER_MONTH / DAYS_PER_YEAR, int(len(emd)))


def _top_sites(p: pd.DataFrame, column: str, among: pd.Series) -> Measure:
    counts: dict[str, int] = {}
    rows = p[among]
    for sites in rows[column]:
        for s in sites:
            if not str(s).startswith("ps_"):
                counts[s] = counts.get(s, 0) + 1
    best = max(counts.values(), default=0)
    return Measure(sorted(k for k, v in counts.items() if v == best and best > 0), int(len(rows)))


def _cns_ever(p: pd.DataFrame, lesions: pd.DataFrame) -> Measure:
    dx = _dx(p)
    seen = lesions[(lesions["site"] == "cns") & lesions["detectable_days"].notna()]
    seen = seen.merge(dx[["patient_id", "os_days"]], on="patient_id")
    ids = set(seen.loc[seen["detectable_days"] <= seen["os_days"], "patient_id"])
    return _percent(dx["patient_id"].isin(ids))


def _em_more_in_high_risk(p: pd.DataFrame) -> Measure:
    dx = _dx(p)
    hr, sr = dx.loc[dx["high_risk"], "em_ever"], dx.loc[~dx["high_risk"], "em_ever"]
    holds = len(hr) > 0 and len(sr) > 0 and float(hr.mean()) > float(sr.mean())
    return Measure(bool(holds), int(len(dx)))


def _emd_shorter_pfs_os(p: pd.DataFrame) -> Measure:
    dx = _dx(p)
    g = dx["emd_at_diagnosis"]
    shorter = []
    for endpoint in ("pfs", "os"):
        with_, without = (_km(d[f"{endpoint}_days"], d[f"{endpoint}_event"].astype(bool)) for d in (dx[g], dx[~g]))
        shorter.append(with_ < without)
    return Measure(bool(g.any() and (~g).any() and all(shorter)), int(len(dx)))


def _salvaged(p: pd.DataFrame, with_emd: bool) -> pd.DataFrame:
    """Patients whose first salvage line started, with (or without) a soft-tissue lesion seen then."""
    s = _dx(p)
    s = s[s["salvaged"]]
    return s[s["salvage_with_emd"] == with_emd]


def _relapsed(p: pd.DataFrame) -> pd.DataFrame:
    dx = _dx(p)
    return dx[dx["relapsed"]]


STATISTICS: dict[str, Statistic] = {
    s.name: s
    for s in (
        Statistic("em_at_diagnosis", "percent", "EM (organ) at diagnosis, of diagnosed",
                  lambda p, _: _percent(_dx(p)["em_at_diagnosis"]), at_diagnosis=True),
        Statistic("ps_at_diagnosis", "percent", "PS (paraskeletal) at diagnosis, of diagnosed",
                  lambda p, _: _percent(_dx(p)["ps_at_diagnosis"]), at_diagnosis=True),
        Statistic("emd_at_diagnosis", "percent", "EMD (PS or EM) at diagnosis, of diagnosed",
                  lambda p, _: _percent(_dx(p)["emd_at_diagnosis"]), at_diagnosis=True),
        Statistic("em_at_relapse", "percent", "EM at first relapse, of relapsed",
                  lambda p, _: _percent(_relapsed(p)["em_at_relapse"])),
        Statistic("emd_at_relapse", "percent", "EMD at first relapse, of relapsed",
                  lambda p, _: _percent(_relapsed(p)["emd_at_relapse"])),
        Statistic("emd_ever", "percent", "EMD seen at any time from diagnosis to the end, of diagnosed",
                  lambda p, _: _percent(_emd_ever(_dx(p)))),
        Statistic("em_ever", "percent", "EM (organ) seen at any time from diagnosis to the end, of diagnosed",
                  lambda p, _: _percent(_dx(p)["em_ever"])),
        Statistic("secondary_emd", "percent", "EMD first seen after diagnosis (none at diagnosis), of diagnosed",
                  lambda p, _: _percent(_secondary(_dx(p)))),
        Statistic("secondary_emd_at_line_start", "percent",
                  "EMD first recorded at the start of a second or later line (none at diagnosis), of diagnosed",
                  lambda p, _: _percent(_secondary_at_line(_dx(p)))),
        Statistic("secondary_emd_without_emd_at_diagnosis", "percent",
                  "EMD first seen after diagnosis, of diagnosed without EMD at diagnosis",
                  lambda p, _: _percent(_secondary(_without_emd_at_diagnosis(p)))),
        Statistic("secondary_emd_risk_km", "percent",
                  "Kaplan-Meier risk of EMD first seen after diagnosis by the end of follow-up (deaths censored), "
                  "of diagnosed without EMD at diagnosis",
                  lambda p, _: _secondary_risk_km(p)),
        Statistic("emd_at_relapse_given_emd_at_diagnosis", "percent",
                  "EMD at first relapse, of relapsed patients who had EMD at diagnosis",
                  lambda p, _: _percent(_relapsed(p).query("emd_at_diagnosis")["emd_at_relapse"])),
        Statistic("cns_ever", "percent", "CNS lesion seen at any time up to the end, of diagnosed", _cns_ever),
        Statistic("median_years_to_secondary_emd", "years",
                  "median time from diagnosis to the first EMD seen, of patients with secondary EMD",
                  lambda p, _: _median(_first_emd_days(_with_secondary(p)), DAYS_PER_YEAR)),
        Statistic("median_months_to_secondary_emd", "months",
                  "median time from diagnosis to the first EMD seen, of patients with secondary EMD",
                  lambda p, _: _median(_first_emd_days(_with_secondary(p)), DAYS_PER_MONTH)),
        Statistic("median_os_months_future_emd_vs_none", "pair_months",
                  "Kaplan-Meier median OS from diagnosis: patients with secondary EMD, patients never with EMD",
                  lambda p, _: _pair(p, "os")),
        Statistic("median_pfs_months_future_emd_vs_none", "pair_months",
                  "Kaplan-Meier median PFS from diagnosis: patients with secondary EMD, patients never with EMD",
                  lambda p, _: _pair(p, "pfs")),
        Statistic("median_os_months_future_emd_at_line_vs_none", "pair_months",
                  "Kaplan-Meier median OS from diagnosis: patients with EMD recorded at a later line's start, "
                  "patients with none at diagnosis or at any line start",
                  lambda p, _: _pair(p, "os", at_line=True)),
        Statistic("median_pfs_months_future_emd_at_line_vs_none", "pair_months",
                  "Kaplan-Meier median PFS from diagnosis: patients with EMD recorded at a later line's start, "
                  "patients with none at diagnosis or at any line start",
                  lambda p, _: _pair(p, "pfs", at_line=True)),
        Statistic("median_os_years_from_emd", "years",
                  "Kaplan-Meier median OS from the first EMD seen, of patients with EMD at any time",
                  lambda p, _: _os_from_emd(p)),
        Statistic("median_os_years_from_em", "years",
                  "Kaplan-Meier median OS from the first EM (organ) lesion seen, of patients with EM at any time",
                  lambda p, _: _os_from_emd(p, organ_only=True)),
        Statistic("salvage_response_with_emd", "percent",
                  "partial response or better of the first salvage line in serum and in soft tissue, of patients "
                  "with EMD at its start",
                  lambda p, _: _percent(_responded_in_both(_salvaged(p, True)))),
        Statistic("salvage_serum_response_without_emd", "percent",
                  "serum partial response or better of the first salvage line, of patients without EMD at its start",
                  lambda p, _: _percent(_salvaged(p, False)["salvage_serum_response"])),
        Statistic("salvage_soft_tissue_response", "percent",
                  "soft-tissue partial response or better of the first salvage line, of patients with EMD at its start",
                  lambda p, _: _percent(_salvaged(p, True)["salvage_soft_tissue_response"])),
        Statistic("top_em_site_at_diagnosis", "sites", "most frequent EM site at diagnosis, of patients with EM",
                  lambda p, _: _top_sites(_dx(p), "sites_at_diagnosis", _dx(p)["em_at_diagnosis"]),
                  at_diagnosis=True),
        Statistic("top_em_site_at_relapse", "sites", "most frequent EM site at first relapse, of patients with EM",
                  lambda p, _: _top_sites(_relapsed(p), "sites_at_relapse", _relapsed(p)["em_at_relapse"])),
        Statistic("em_more_in_high_risk", "association", "EM at any time more frequent in high than standard risk",
                  lambda p, _: _em_more_in_high_risk(p)),
        Statistic("emd_shorter_pfs_os", "association",
                  "median PFS and OS shorter with EMD at diagnosis than without",
                  lambda p, _: _emd_shorter_pfs_os(p)),
    )
}  # fmt: skip


def measure(name: str, patients: pd.DataFrame, lesions: pd.DataFrame) -> Measure:
    """The statistic ``name`` of one cohort (its patient and lesion tables)."""
    return STATISTICS[name].compute(patients, lesions)


#: the overrides that stop every course at diagnosis (no follow-up, so no accrual window either)
STOP_AT_DIAGNOSIS = ("sim.followup_years=0", "scenario.accrual_years=0")


def stops_at_diagnosis(statistics: Iterable[str | None]) -> bool:
    """Whether a cohort measured on these statistics may stop every course at diagnosis: all of them
    read nothing after it (with the hybrid engine a patient's course up to diagnosis does not depend
    on its follow-up; with the exact engine its distribution does not: tests/test_stop_at_diagnosis.py)."""
    names = list(statistics)
    return bool(names) and all(n is not None and STATISTICS[n].at_diagnosis for n in names)


def finite(value: Any) -> bool:
    """Whether a measured value can be compared (a number that is not NaN, or a non-empty pair)."""
    if isinstance(value, list | tuple):
        return bool(value) and all(isinstance(v, int | float) and not np.isnan(v) for v in value)
    return isinstance(value, int | float) and not np.isnan(value)
