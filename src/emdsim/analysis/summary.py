"""Cohort summary statistics (``summary.json``) from the patient table.

Fractions at diagnosis are over diagnosed patients; fractions at relapse over patients who
relapsed (first progression); a fraction over no patient is ``None`` (null), never 0.  Medians of
PFS and OS are Kaplan-Meier medians (lifelines), in
months of 30.4375 days, ``None`` when the curve never falls to 0.5.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pandas as pd

from emdsim.units import DAYS_PER_MONTH  # re-exported: earlier code imported it from here

__all__ = ["DAYS_PER_MONTH", "summarise", "km_median_months"]


def km_median_months(days: pd.Series, event: pd.Series) -> float | None:
    """Kaplan-Meier median in months, or None if not reached."""
    from lifelines import KaplanMeierFitter

    if len(days) == 0:
        return None
    km = KaplanMeierFitter().fit(days.to_numpy(float) / DAYS_PER_MONTH, event.to_numpy(bool))
    med = float(km.median_survival_time_)
    return med if np.isfinite(med) else None


def _fraction(mask: pd.Series) -> float | None:
    """The share of True in ``mask``; None (null in JSON, NaN in tables) over no patients."""
    return float(mask.mean()) if len(mask) else None


def _site_counts(lists: pd.Series) -> dict[str, int]:
    counts = Counter(site for sites in lists for site in sites)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def summarise(patients: pd.DataFrame, *, seed: int) -> dict[str, Any]:
    """The ``summary.json`` dictionary of a cohort."""
    dx = patients[patients["diagnosed"]]
    rel = dx[dx["relapsed"]]
    return {
        "n_patients": int(len(patients)),
        "seed": int(seed),
        "n_diagnosed": int(len(dx)),
        "n_relapsed": int(len(rel)),
        "ps_at_diagnosis": _fraction(dx["ps_at_diagnosis"]),
        "em_at_diagnosis": _fraction(dx["em_at_diagnosis"]),
        "emd_at_diagnosis": _fraction(dx["emd_at_diagnosis"]),
        "ps_at_relapse": _fraction(rel["ps_at_relapse"]),
        "em_at_relapse": _fraction(rel["em_at_relapse"]),
        "emd_at_relapse": _fraction(rel["emd_at_relapse"]),
        "em_ever": _fraction(dx["em_ever"]),
        "ps_ever": _fraction(dx["ps_ever"]),
        "sites_at_diagnosis": _site_counts(dx["sites_at_diagnosis"]),
        "sites_at_relapse": _site_counts(rel["sites_at_relapse"]),
        "median_pfs_months": km_median_months(dx["pfs_days"], dx["pfs_event"]),
        "median_os_months": km_median_months(dx["os_days"], dx["os_event"]),
        "median_months_onset_to_diagnosis": (
            float(dx["onset_to_diagnosis_days"].median() / DAYS_PER_MONTH) if len(dx) else None
        ),
        "high_risk_fraction": _fraction(dx["high_risk"]),
        "em_at_diagnosis_high_risk": _fraction(dx.loc[dx["high_risk"], "em_at_diagnosis"]),
        "em_at_diagnosis_standard_risk": _fraction(dx.loc[~dx["high_risk"], "em_at_diagnosis"]),
        "wound_plasmacytoma": _fraction(dx["wound_plasmacytoma"]),
    }
