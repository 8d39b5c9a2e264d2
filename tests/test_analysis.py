"""Outcome analysis on synthetic patient tables with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from emdsim.analysis.summary import DAYS_PER_MONTH
from emdsim.analysis.survival import (
    analyse,
    cumulative_incidence_table,
    incidence_table,
    risk_association,
    survival_statistics,
    wilson_interval,
)


def _patients(n=400, seed=0, hazard_ratio=2.0):
    """Diagnosed patients; those with EMD at diagnosis die/progress ``hazard_ratio`` times faster."""
    rng = np.random.default_rng(seed)
    emd = rng.random(n) < 0.25
    rate = np.where(emd, hazard_ratio, 1.0) / (40 * DAYS_PER_MONTH)
    os_t = rng.exponential(1 / rate)
    pfs_t = np.minimum(rng.exponential(1 / (2 * rate)), os_t)
    cens = 120 * DAYS_PER_MONTH
    relapsed = pfs_t < np.minimum(os_t, cens)
    em_first = np.where(rng.random(n) < 0.3, rng.uniform(0, 100 * DAYS_PER_MONTH, n), np.nan)
    em_dx = emd & (rng.random(n) < 0.3)
    return pd.DataFrame(
        {
            "patient_id": np.arange(n),
            "diagnosed": True,
            "relapsed": relapsed,
            "high_risk": rng.random(n) < 0.2,
            "ps_at_diagnosis": emd & ~em_dx,
            "em_at_diagnosis": em_dx,
            "emd_at_diagnosis": emd,
            "ps_at_relapse": relapsed & (rng.random(n) < 0.1),
            "em_at_relapse": relapsed & (rng.random(n) < 0.05),
            "em_ever": ~np.isnan(em_first),
            "ps_ever": emd,
            "em_first_detected_days": em_first,
            "ps_first_detected_days": np.where(emd, 0.0, np.nan),
            "sites_at_diagnosis": [["skin"] if e else [] for e in em_dx],
            "sites_at_relapse": [["liver"] for _ in range(n)],
            "pfs_days": np.minimum(pfs_t, cens),
            "pfs_event": pfs_t < cens,
            "os_days": np.minimum(os_t, cens),
            "os_event": os_t < cens,
        }
    ).assign(emd_at_relapse=lambda d: d.ps_at_relapse | d.em_at_relapse)


def test_wilson_interval_reproduces_the_usmani_interval():
    lo, hi = wilson_interval(66, 1965)  # shared/targets: 3.4% (2.6, 4.3)
    assert lo == pytest.approx(0.0265, abs=5e-4) and hi == pytest.approx(0.0429, abs=5e-4)
    assert np.isnan(wilson_interval(0, 0)[0])


def test_incidence_counts_and_denominators():
    p = _patients()
    inc = incidence_table(p).set_index(["definition", "timepoint"])
    assert inc.loc[("EMD", "diagnosis"), "count"] == p["emd_at_diagnosis"].sum()
    assert inc.loc[("EM", "relapse"), "n"] == p["relapsed"].sum()
    assert ((inc["lower"] <= inc["fraction"]) & (inc["fraction"] <= inc["upper"])).all()


def test_cumulative_incidence_is_monotone_and_below_one_minus_km():
    p = _patients()
    cif = cumulative_incidence_table(p)
    em = cif[cif["endpoint"] == "cif_EM"]["value"].to_numpy()
    assert np.all(np.diff(em) >= -1e-12) and em.max() <= 1.0 and em.min() >= 0.0
    # with death competing, the EM incidence by 10 years cannot exceed the share who ever had EM
    assert em[-1] <= p["em_ever"].mean() + 1e-9
    ps = cif[(cif["endpoint"] == "cif_PS") & (cif["time_months"] < 0.01)]["value"].to_numpy()
    assert ps[-1] == pytest.approx(p["emd_at_diagnosis"].mean(), abs=1e-6)  # every PS lesion is seen at time 0


def test_survival_statistics_detect_a_true_hazard_ratio():
    stats = survival_statistics(_patients(n=2000, hazard_ratio=2.0))
    assert stats["os_logrank_p"] < 1e-6
    assert stats["os_hr_lower"] < 2.0 < stats["os_hr_upper"]
    null = survival_statistics(_patients(n=2000, hazard_ratio=1.0, seed=3))
    assert null["os_hr_lower"] < 1.0 < null["os_hr_upper"]


def test_odds_ratio_of_an_association():
    rng = np.random.default_rng(1)
    n = 4000
    hr = rng.random(n) < 0.2
    em = rng.random(n) < np.where(hr, 0.2, 0.05)  # true OR = (0.2/0.8)/(0.05/0.95) = 4.75
    res = risk_association(pd.DataFrame({"diagnosed": True, "high_risk": hr, "em_ever": em}))
    assert res["lower"] < 4.75 < res["upper"]


def test_analyse_returns_summary_and_tables():
    summary, tables = analyse(_patients())
    assert {"incidence.parquet", "survival.parquet", "sites.parquet"} == set(tables)
    assert summary["incidence"]["EMD_diagnosis"]["n"] == 400
    assert 0 <= summary["cumulative_incidence"]["EM_60_months"] <= 1
    sites = tables["sites.parquet"]
    assert sites.loc[sites["timepoint"] == "relapse", "site"].tolist() == ["liver"]
