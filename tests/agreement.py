"""Two cohorts' outcomes agree in distribution: the difference tests shared by the engine comparisons
(``test_equivalence.py``: array engine vs Mesa; ``test_engine_equivalence.py``: hybrid vs exact)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from lifelines.statistics import logrank_test
from scipy.stats import ks_2samp, norm


def z_two_proportions(a: pd.Series, b: pd.Series) -> float:
    """Pooled two-sample z of two 0/1 samples (0 when both are constant and equal)."""
    p = (a.sum() + b.sum()) / (len(a) + len(b))
    se = np.sqrt(p * (1 - p) * (1 / len(a) + 1 / len(b)))
    return 0.0 if se == 0 else (a.mean() - b.mean()) / se


def assert_cohorts_agree(a: pd.DataFrame, b: pd.DataFrame, proportions: tuple[str, ...], alpha: float) -> None:
    """Each test at ``alpha`` on the diagnosed patients of two patient tables: z on each proportion,
    KS on onset-to-diagnosis times, log-rank on PFS and OS; and the two cohorts are the same patients
    (the same baselines: the engines differ only in their dynamics)."""
    z_crit = norm.ppf(1 - alpha / 2)
    da, db = a[a["diagnosed"]], b[b["diagnosed"]]
    for col in proportions:
        assert abs(z_two_proportions(da[col].astype(float), db[col].astype(float))) < z_crit, col
    assert ks_2samp(da["onset_to_diagnosis_days"], db["onset_to_diagnosis_days"]).pvalue > alpha
    for end in ("pfs", "os"):
        p = logrank_test(da[f"{end}_days"], db[f"{end}_days"], da[f"{end}_event"], db[f"{end}_event"]).p_value
        assert p > alpha, end
    assert (a["high_risk"].to_numpy() == b["high_risk"].to_numpy()).all()
