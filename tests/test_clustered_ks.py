"""The lesion-onset KS test of the engine equivalence suite, whose p-value comes from swapping each
patient's lesions between the engines (:func:`emdsim.studies.equivalence.clustered_ks`).

A patient's lesions share its course, so their onsets are not independent, and the engines simulate
the same patients, so a patient's lesions in one engine resemble its lesions in the other; scipy's
two-sample KS p-value assumes independent values.  These tests generate such data with a known
truth: units (patients) with an effect shared by both samples, a few values each (lesions) around
it, both samples from one law or one shifted.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from emdsim.studies.equivalence import clustered_ks


def _paired(rng: np.random.Generator, n_units: int, shift: float = 0.0):
    """Values of ``n_units`` units in two samples: a unit effect N(0, 0.5) shared by both, each
    sample's own N(0, 1) on top (plus ``shift`` in the second), 1 + Poisson(7) values per unit and
    sample, each its unit's level plus N(0, 0.1)."""
    effect = rng.normal(0.0, 0.5, n_units)
    out = []
    for s in (0.0, shift):
        level = effect + rng.normal(s, 1.0, n_units)
        units = np.repeat(np.arange(n_units), 1 + rng.poisson(7.0, n_units))
        out += [level[units] + rng.normal(0.0, 0.1, units.size), units]
    return out


def test_the_distance_is_scipys_and_the_p_value_is_a_permutation_p_value():
    rng = np.random.default_rng(np.random.SeedSequence(11))
    a, ua, b, ub = _paired(rng, 40)
    d, p = clustered_ks(a, ua, b, ub, permutations=199, seed=3)
    assert abs(d - stats.ks_2samp(a, b).statistic) < 1e-12
    assert 1 / 200 <= p <= 1.0
    assert (d, p) == clustered_ks(a, ua, b, ub, permutations=199, seed=3)  # same seed, same p
    assert np.isnan(clustered_ks(a[:0], ua[:0], b, ub)[1])


def test_with_clustered_paired_values_from_one_law_the_p_value_is_valid_where_scipys_is_not():
    """60 null data sets (120 units, ~8 values per unit and sample, both samples from one law).  A
    valid p-value has P(p <= 0.05) <= 0.05, so the number of rejections at 0.05 is at most
    Binomial(60, 0.05): 12 or more happen with probability ~4e-5.  scipy's p-value, taking the ~960
    values per sample as independent when there are 120 independent units, rejects 83 % of such data
    sets (measured over 300; this test's permuted p-values: 4.7 %); fewer than 30 of 60 at that rate
    has a probability ~1e-11."""
    rng = np.random.default_rng(np.random.SeedSequence(2026))
    ours = theirs = 0
    for i in range(60):
        a, ua, b, ub = _paired(rng, 120)
        ours += clustered_ks(a, ua, b, ub, permutations=199, seed=i)[1] <= 0.05
        theirs += stats.ks_2samp(a, b).pvalue <= 0.05
    assert ours < 12, (ours, theirs)
    assert stats.binom.sf(11, 60, 0.05) < 1e-4  # the bound quoted above
    assert theirs >= 30, (ours, theirs)


def test_a_shift_of_the_units_is_detected():
    """The second sample's unit levels shifted by 1 (about one standard deviation of a unit's level),
    120 units: the KS distance of the samples is ~0.4 (measured 0.42), and swapping within units
    cannot reach it (the swapped samples differ by chance only, ~0.1), so the p-value is at its floor
    1/(1 + 999) but for a chance far below 1e-6; asserted < 0.01."""
    rng = np.random.default_rng(np.random.SeedSequence(7))
    a, ua, b, ub = _paired(rng, 120, shift=1.0)
    _, p = clustered_ks(a, ua, b, ub, permutations=999, seed=1)
    assert p < 0.01


def test_pooled_tost_weighs_each_run_by_its_precision():
    """Two runs pooled by inverse variance: a run pooled with itself keeps its difference and its
    standard error falls by sqrt(2); runs of standard errors 1 and 2 weigh 4:1; the interval and the
    verdict follow the pooled numbers."""
    import pandas as pd

    from emdsim.studies.equivalence import pool_tost

    run = pd.DataFrame([{"statistic": "ps_ever", "difference": 0.6, "se": 0.4, "margin": 1.0}])
    twice = pool_tost([run, run]).iloc[0]
    assert twice["runs"] == 2 and twice["difference"] == pytest.approx(0.6)
    assert twice["se"] == pytest.approx(0.4 / np.sqrt(2))
    assert twice["upper90"] == pytest.approx(0.6 + 1.6449 * 0.4 / np.sqrt(2), rel=1e-4)
    assert not twice["equivalent"]  # 0.6 + 0.47 > 1
    other = run.assign(difference=-0.4, se=0.8)
    mixed = pool_tost([run, other]).iloc[0]
    assert mixed["difference"] == pytest.approx((4 * 0.6 - 0.4) / 5)
    assert mixed["se"] == pytest.approx((1 / 0.4**2 + 1 / 0.8**2) ** -0.5)
    assert mixed["equivalent"] == (mixed["upper90"] < 1.0 and mixed["lower90"] > -1.0)


def test_pooling_script_reads_reports_and_refuses_others_in_one_line(benchmark_script, tmp_path, capsys):
    """benchmarks/equivalence_pool.py: two reports pool to one table (exit 0 when every statistic is
    equivalent, 1 when one is not); a missing file or a JSON that is not a report is one line on
    stderr naming the file, exit 2, no traceback."""
    import json

    tool = benchmark_script("equivalence_pool")
    row = {"statistic": "ps_ever", "difference": 0.1, "se": 0.2, "margin": 1.0}
    good = tmp_path / "a.json"
    good.write_text(json.dumps({"tost": [row], "overrides": [], "replicates": 20}))
    wide = tmp_path / "b.json"
    wide.write_text(json.dumps({"tost": [{**row, "difference": 0.9}], "overrides": ["x=1"], "replicates": 20}))
    assert tool.main([str(good), str(good)]) == 0
    out = capsys.readouterr().out
    assert "a.json: 20 replicates, overrides (default)" in out and "| ps_ever | 2 |" in out
    assert tool.main([str(wide), str(wide)]) == 1  # 0.9 + 1.64 x 0.14 > 1
    capsys.readouterr()
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    for path in (tmp_path / "missing.json", bad):
        assert tool.main([str(good), str(path)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(path) in err[0] and "Traceback" not in err[0]
