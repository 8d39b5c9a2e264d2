"""The lesion-onset KS test of the engine equivalence suite, whose p-value comes from permuting whole
patients (:func:`emdsim.studies.equivalence.clustered_ks`).

A patient's lesions share its course, so their onsets are not independent; scipy's two-sample KS
p-value assumes they are.  These tests generate clustered values whose truth is known: clusters
(patients) with a shared effect and a few values each (lesions), both samples from one law or
from shifted laws.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from emdsim.studies.equivalence import clustered_ks


def _clustered(rng: np.random.Generator, n_clusters: int, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """``n_clusters`` clusters of 1 + Poisson(7) values: cluster effect N(shift, 1) plus N(0, 0.1) each."""
    sizes = 1 + rng.poisson(7.0, n_clusters)
    effect = rng.normal(shift, 1.0, n_clusters)
    labels = np.repeat(np.arange(n_clusters), sizes)
    return effect[labels] + rng.normal(0.0, 0.1, labels.size), labels


def test_the_distance_is_scipys_and_the_p_value_is_a_permutation_p_value():
    rng = np.random.default_rng(np.random.SeedSequence(11))
    a, ca = _clustered(rng, 40)
    b, cb = _clustered(rng, 50)
    d, p = clustered_ks(a, ca, b, cb, permutations=199, seed=3)
    assert abs(d - stats.ks_2samp(a, b).statistic) < 1e-12
    assert 1 / 200 <= p <= 1.0
    assert (d, p) == clustered_ks(a, ca, b, cb, permutations=199, seed=3)  # same seed, same p
    assert np.isnan(clustered_ks(a[:0], ca[:0], b, cb)[1])


def test_with_clustered_values_from_one_law_the_p_value_is_valid_where_scipys_is_not():
    """60 null data sets (both samples: 120 clusters of ~8 values from one law).  A valid p-value
    has P(p <= 0.05) <= 0.05, so the number of rejections at 0.05 is at most Binomial(60, 0.05):
    12 or more happen with probability ~4e-5.  scipy's p-value, taking the ~960 values per sample as
    independent when there are 120 independent clusters, rejects almost always (its D is about
    sqrt(960 / 120) ~ 2.8 times its null scale): fewer than 30 rejections would be an event of
    probability < 1e-9."""
    rng = np.random.default_rng(np.random.SeedSequence(2026))
    ours = theirs = 0
    for i in range(60):
        a, ca = _clustered(rng, 120)
        b, cb = _clustered(rng, 120)
        ours += clustered_ks(a, ca, b, cb, permutations=199, seed=i)[1] <= 0.05
        theirs += stats.ks_2samp(a, b).pvalue <= 0.05
    assert ours < 12, (ours, theirs)
    assert stats.binom.sf(11, 60, 0.05) < 1e-4  # the bound quoted above
    assert theirs >= 30, theirs


def test_a_shift_of_the_clusters_is_detected():
    """Cluster effects shifted by one standard deviation, 120 clusters per sample: the KS distance
    of the cluster effects is ~0.38, far above its 0.1 % critical value (~0.25 at 120 + 120), so the
    permutation p-value is at its floor 1/(1 + 999) unless a chance of < 1e-6 happens; asserted < 0.01."""
    rng = np.random.default_rng(np.random.SeedSequence(7))
    a, ca = _clustered(rng, 120)
    b, cb = _clustered(rng, 120, shift=1.0)
    _, p = clustered_ks(a, ca, b, cb, permutations=999, seed=1)
    assert p < 0.01
