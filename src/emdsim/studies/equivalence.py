"""Cohort-level equivalence of two engines: replicate cohorts, then tests with their power stated.

For each engine, ``replicates`` cohorts of the same scenario are run on seeds ``seed, seed + 1, ...``
(the engines draw the same patients and differ in their dynamics).  Then:

* **two one-sided tests** (TOST, Schuirmann 1987) on each proportion (PS, EM and EMD at diagnosis,
  at relapse and ever) within ``margin_pp`` percentage points, and on the median PFS and OS within
  ``margin_months``: the difference of the replicate means, its standard error from the
  replicates' spread (Welch), and the 90 % interval that must lie inside the margin (level 0.05);
  ``power`` is the probability that TOST declares equivalence when the engines agree exactly, at
  the measured standard error;
* **KS tests** on onset-to-diagnosis times (one per patient: scipy's two-sample test) and on lesion
  onset times and first-sighting times (days from diagnosis: imaging at events, symptoms, surveillance;
  a long step dates sightings within it).  A patient's lesions are not independent (they share the
  patient's course and its diagnosis date), so the lesion tests' p-values come from swapping each
  patient's lesions between the engines (:func:`clustered_ks`; the engines simulate the same
  patients), not from the KS distribution, which assumes independent values;
* a **chi-square** test on the sites of the lesions seen at diagnosis and at relapse (sites with
  fewer than 5 expected lesions pooled);
* **log-rank** tests on PFS and OS.

The difference tests (KS, chi-square, log-rank) report p-values; :func:`verdict` counts a failure
when one falls below ``alpha`` (the caller's family-wise level, Bonferroni over the tests).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from emdsim.analysis.summary import km_median_months

__all__ = [
    "PROPORTIONS",
    "EngineComparison",
    "clustered_ks",
    "compare",
    "markdown_table",
    "pool_tost",
    "run_replicates",
    "verdict",
]

#: the proportions compared (columns of the patient table, among diagnosed patients); "emd_ever" is
#: derived as PS or EM ever
PROPORTIONS = (
    "ps_at_diagnosis",
    "em_at_diagnosis",
    "emd_at_diagnosis",
    "ps_at_relapse",
    "em_at_relapse",
    "emd_at_relapse",
    "ps_ever",
    "em_ever",
    "emd_ever",
)


@dataclass(frozen=True)
class EngineComparison:
    tost: pd.DataFrame  # statistic, a, b, difference, se, lower90, upper90, margin, equivalent, power
    tests: pd.DataFrame  # test, statistic, p_value
    replicates: int
    patients: tuple[int, int]  # diagnosed patients pooled, per engine


def run_replicates(
    run: Callable[[int], tuple[pd.DataFrame, pd.DataFrame]], seeds: Sequence[int]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``run(seed) -> (patients, lesions)`` for each seed, stacked with a ``replicate`` column."""
    pats, lesions = [], []
    for r, seed in enumerate(seeds):
        p, les = run(seed)
        pats.append(p.assign(replicate=r))
        lesions.append(les.merge(p[["patient_id"]], on="patient_id").assign(replicate=r))
    return pd.concat(pats, ignore_index=True), pd.concat(lesions, ignore_index=True)


def _per_replicate(patients: pd.DataFrame) -> pd.DataFrame:
    dx = patients[patients["diagnosed"]].copy()
    dx["emd_ever"] = dx["ps_ever"] | dx["em_ever"]
    rel = dx[dx["relapsed"]]
    rows = []
    for r, g in dx.groupby("replicate"):
        row = {c: g[c].mean() * 100 for c in PROPORTIONS if "relapse" not in c}
        gr = rel[rel["replicate"] == r]
        row.update({c: gr[c].mean() * 100 for c in PROPORTIONS if "relapse" in c})
        for end in ("pfs", "os"):  # not reached: inf, as lifelines reports it (_tost leaves it out)
            median = km_median_months(g[f"{end}_days"], g[f"{end}_event"])
            row[f"median_{end}_months"] = np.inf if median is None else median
        rows.append(row)
    return pd.DataFrame(rows)


def _tost(a: np.ndarray, b: np.ndarray, margin: float) -> dict[str, float]:
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = float(np.sqrt(va + vb))
    dof = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1)) if se > 0 else np.inf
    diff = float(b.mean() - a.mean())
    return {"a": float(a.mean()), "b": float(b.mean()), **_two_one_sided(diff, se, stats.t.ppf(0.95, dof), margin)}


def _two_one_sided(diff: float, se: float, crit: float, margin: float) -> dict[str, float]:
    """The verdict on a difference ``diff`` with standard error ``se``: its 90 % interval (``crit``
    the 95 % quantile of its distribution, t or normal), equivalence when the interval lies inside
    +-``margin``, and the power, P(equivalence declared | true difference 0) = P(|d| < margin - crit
    se), d ~ N(0, se)."""
    lo, hi = diff - crit * se, diff + crit * se
    power = float(max(2 * stats.norm.cdf((margin - crit * se) / se) - 1, 0.0)) if se > 0 else 1.0
    return {
        "difference": diff,
        "se": se,
        "lower90": lo,
        "upper90": hi,
        "margin": margin,
        "equivalent": bool(-margin < lo and hi < margin),
        "power": power,
    }


def pool_tost(runs: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """The two one-sided tests of independent runs of the suite (different seeds, each a ``tost``
    table of :func:`compare`) pooled statistic by statistic: the inverse-variance weighted difference
    and its standard error (the fixed-effect combination; a normal 90 % interval, as the runs' Welch
    degrees of freedom are many), with equivalence and power as in one run."""
    rows = []
    for stat, g in pd.concat(runs).groupby("statistic", sort=False):
        w = 1.0 / g["se"].to_numpy() ** 2
        diff = float((g["difference"].to_numpy() * w).sum() / w.sum())
        se = float(w.sum() ** -0.5)
        margin = float(g["margin"].iloc[0])
        rows.append({"statistic": stat, "runs": len(g), **_two_one_sided(diff, se, stats.norm.ppf(0.95), margin)})
    return pd.DataFrame(rows)


def clustered_ks(
    a: np.ndarray,
    a_units: np.ndarray,
    b: np.ndarray,
    b_units: np.ndarray,
    *,
    permutations: int = 20_000,
    seed: int = 0,
    batch: int = 64,
) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov distance between the values ``a`` and ``b`` (their pooled
    empirical distributions), and its p-value by exchanging whole units between the samples.

    ``a_units`` and ``b_units`` name each value's unit (a patient: its lesions share its course, so
    values of one unit may be dependent; units are independent).  A unit named in both samples is the
    same unit observed twice (the engines simulate the same patients), a pair; under the hypothesis
    that the samples come from one law its two sets of values are exchangeable.  The asymptotic KS
    p-value assumes independent values and is far too small when they cluster; here each unit's two
    sets swap samples with probability 1/2, ``permutations`` times, and
    ``p = (1 + #{D_perm >= D}) / (1 + permutations)``: a valid p-value whatever the dependence within
    a unit or a pair, never below ``1 / (1 + permutations)`` (Phipson & Smyth 2010, Stat Appl Genet
    Mol Biol 9:39).  ``seed`` seeds the swaps (numpy SeedSequence)."""
    from scipy import sparse

    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.size == 0 or b.size == 0:
        return float("nan"), float("nan")
    values = np.concatenate([a, b])
    grid, at = np.unique(values, return_inverse=True)
    _, unit = np.unique(np.concatenate([np.asarray(a_units), np.asarray(b_units)]), return_inverse=True)
    n_units = int(unit.max()) + 1
    side = np.concatenate([np.zeros(a.size, np.int64), np.ones(b.size, np.int64)])
    # counts (grid point x (unit, sample)): a sample's histogram is this times its 0/1 column labels
    counts = sparse.csr_matrix((np.ones(values.size), (at, 2 * unit + side)), shape=(grid.size, 2 * n_units))
    per_column = np.asarray(counts.sum(axis=0)).ravel()
    total = np.asarray(counts.sum(axis=1)).ravel()

    def distance(labels: np.ndarray) -> np.ndarray:  # labels (2 units, m): 1 = sample b
        hist_b = counts @ labels
        n_b = per_column @ labels
        cdf_b = np.cumsum(hist_b, axis=0) / n_b
        cdf_a = np.cumsum(total[:, None] - hist_b, axis=0) / (values.size - n_b)
        return np.abs(cdf_a - cdf_b).max(axis=0)

    observed = np.tile([0.0, 1.0], n_units)[:, None]
    d = float(distance(observed)[0])
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    at_least = 0
    for start in range(0, permutations, batch):
        m = min(batch, permutations - start)
        swap = rng.random((n_units, m)) < 0.5
        labels = np.empty((2 * n_units, m))
        labels[0::2], labels[1::2] = swap, ~swap
        at_least += int((distance(labels) >= d * (1 - 1e-12)).sum())
    return d, (1 + at_least) / (1 + permutations)


def _patient_key(lesions: pd.DataFrame) -> np.ndarray:
    """One integer per patient of the replicates (a lesion's unit), the same for the same patient in
    either engine's replicates (replicate r, patient i)."""
    return lesions["replicate"].to_numpy(np.int64) * 2**32 + lesions["patient_id"].to_numpy(np.int64)


def _site_counts(patients: pd.DataFrame) -> pd.Series:
    dx = patients[patients["diagnosed"]]
    sites = [s for col in ("sites_at_diagnosis", "sites_at_relapse") for cell in dx[col] for s in cell]
    return pd.Series(sites, dtype=object).value_counts()


def compare(
    a: tuple[pd.DataFrame, pd.DataFrame],
    b: tuple[pd.DataFrame, pd.DataFrame],
    *,
    margin_pp: float = 1.0,
    margin_months: float = 1.0,
    permutations: int = 20_000,
    seed: int = 0,
) -> EngineComparison:
    """Compare engine ``b`` against engine ``a`` (each: patients and lesions of its replicates)."""
    from lifelines.statistics import logrank_test

    pa, la = a
    pb, lb = b
    ra, rb = _per_replicate(pa), _per_replicate(pb)
    tost = pd.DataFrame(
        [
            {
                "statistic": col,
                **_tost(
                    ra[col].to_numpy(), rb[col].to_numpy(), margin_months if col.startswith("median") else margin_pp
                ),
            }
            for col in ra.columns
        ]
    )
    da, db = pa[pa["diagnosed"]], pb[pb["diagnosed"]]
    tests = []
    ks = stats.ks_2samp(da["onset_to_diagnosis_days"], db["onset_to_diagnosis_days"])
    tests.append({"test": "KS onset to diagnosis", "statistic": ks.statistic, "p_value": ks.pvalue})
    # when each lesion began, and when it was first seen (imaging at events, symptoms, surveillance)
    for i, (column, what) in enumerate((("onset_days", "onset"), ("detectable_days", "first seen"))):
        d, p = _lesion_ks(la, lb, column, permutations, seed + i)
        tests.append({"test": f"KS lesion {what} (patients swapped)", "statistic": d, "p_value": p})
    sa, sb = _site_counts(pa), _site_counts(pb)
    table = pd.concat([sa, sb], axis=1).fillna(0.0)
    expected = table.sum(axis=1).to_numpy()[:, None] * table.sum(axis=0).to_numpy()[None, :] / table.to_numpy().sum()
    rare = expected.min(axis=1) < 5
    if rare.any():
        table = pd.concat([table[~rare], table[rare].sum().to_frame("other").T])
    chi2, p_chi2, _, _ = stats.chi2_contingency(table.to_numpy())
    tests.append({"test": f"chi-square sites ({len(table)} groups)", "statistic": chi2, "p_value": p_chi2})
    for end in ("pfs", "os"):
        lr = logrank_test(da[f"{end}_days"], db[f"{end}_days"], da[f"{end}_event"], db[f"{end}_event"])
        tests.append({"test": f"log-rank {end.upper()}", "statistic": lr.test_statistic, "p_value": lr.p_value})
    return EngineComparison(tost, pd.DataFrame(tests), int(pa["replicate"].nunique()), (len(da), len(db)))


def _lesion_ks(la: pd.DataFrame, lb: pd.DataFrame, column: str, permutations: int, seed: int) -> tuple[float, float]:
    """:func:`clustered_ks` on a lesion table's ``column`` (days; rows without it dropped), each
    engine's lesions clustered by patient."""
    a, b = la.dropna(subset=[column]), lb.dropna(subset=[column])
    return clustered_ks(
        a[column].to_numpy(),
        _patient_key(a),
        b[column].to_numpy(),
        _patient_key(b),
        permutations=permutations,
        seed=seed,
    )


def verdict(cmp: EngineComparison, alpha: float) -> list[str]:
    """What fails: statistics not shown equivalent, and difference tests with p below ``alpha``."""
    bad = [
        f"{r.statistic}: 90% CI [{r.lower90:+.2f}, {r.upper90:+.2f}] not inside +-{r.margin:g}"
        for r in cmp.tost.itertuples()
        if not r.equivalent
    ]
    bad += [f"{r.test}: p = {r.p_value:.2g} < {alpha:.2g}" for r in cmp.tests.itertuples() if r.p_value < alpha]
    return bad


def markdown_table(frame: pd.DataFrame) -> str:
    """A frame as a markdown table (numbers to 3 significant digits)."""

    def cell(v: object) -> str:
        if isinstance(v, bool | np.bool_):
            return "yes" if v else "**no**"
        if isinstance(v, float | np.floating):
            return f"{v:.3g}"
        return str(v)

    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)
