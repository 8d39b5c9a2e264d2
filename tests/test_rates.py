"""Hazards, probabilities and the realisation of cell flows."""

from __future__ import annotations

import numpy as np
import pytest

from emdsim.engine.flows import (
    GAUSSIAN_MIN_MEAN,
    competing_probabilities,
    event_probability,
    hazard_to_probability,
    realise_flow,
    split_flow,
)


def test_probability_in_unit_interval_and_monotone():
    rates = np.linspace(0, 50, 501)
    p = hazard_to_probability(rates, 7.0)
    assert np.all((p >= 0) & (p <= 1))
    assert np.all(np.diff(p) >= 0)
    assert hazard_to_probability(0.0, 7.0) == 0.0


@pytest.mark.parametrize("rate", [1e-6, 0.01, 0.3, 5.0])
def test_step_size_independence(rate):
    """Surviving two steps of dt is surviving one step of 2 dt."""
    p1 = hazard_to_probability(rate, 3.5)
    p2 = hazard_to_probability(rate, 7.0)
    assert (1 - p1) ** 2 == pytest.approx(1 - p2, rel=1e-12)


def test_negative_hazard_rejected():
    with pytest.raises(ValueError):
        hazard_to_probability(-0.1, 1.0)


def test_competing_probabilities_share_the_event_probability():
    p = competing_probabilities([[2.0, 6.0]], 0.5)
    assert p.sum() == pytest.approx(1 - np.exp(-8.0 * 0.5))
    assert p[0, 1] / p[0, 0] == pytest.approx(3.0)


@pytest.mark.parametrize("n,p", [(10, 0.3), (1000, 0.0005), (10**11, 3e-12), (7, 0.999), (200, 0.1), (10**9, 3e-8)])
def test_small_flows_have_binomial_moments(n, p):
    """Exact binomial below GAUSSIAN_MIN_MEAN expected cells, its normal limit above."""
    rng = np.random.default_rng(1)
    m = 200_000
    x = realise_flow(rng, np.full(m, float(n)), np.full(m, p), 1000.0)
    mean, var = n * p, n * p * (1 - p)
    assert np.all((x >= 0) & (x <= n)) and np.all(x == np.round(x))
    # mean within 5 standard errors of the sampling distribution, variance within 5%
    assert abs(x.mean() - mean) <= 5 * np.sqrt(var / m) + 1e-12
    assert x.var() == pytest.approx(var, rel=0.05)
    if mean < GAUSSIAN_MIN_MEAN:
        # the exact binomial: P(X = 0) = (1 - p)^n
        assert (x == 0).mean() == pytest.approx((1 - p) ** n, abs=5 * np.sqrt((1 - p) ** n / m) + 1e-4)


def test_certain_and_impossible_events():
    rng = np.random.default_rng(0)
    x = realise_flow(rng, np.array([0.0, 5.0, 5.0, 1e12]), np.array([0.5, 0.0, 1.0, 1.0]), 1000.0)
    assert x.tolist() == [0.0, 0.0, 5.0, 1e12]
    assert event_probability(0.0, 7.0) == 0.0


def test_realise_flow_never_exceeds_cells_and_is_unbiased(rng):
    cells = np.array([0.0, 1.0, 3.0, 50.0, 2.5e3, 1e9, 1e12])
    p = np.full(cells.shape, 0.2)
    draws = np.array([realise_flow(rng, cells, p, 1000.0) for _ in range(4000)])
    assert np.all(draws <= cells) and np.all(draws >= 0)
    se = np.sqrt(cells * 0.2 * 0.8 / 4000)
    assert np.all(np.abs(draws.mean(axis=0) - cells * 0.2) <= 5 * se + 1e-9)
    # large flows are taken at their mean, small ones are whole numbers
    assert np.all(draws[:, -1] == 0.2e12)
    assert np.all(draws[:, 1:4] == np.round(draws[:, 1:4]))


def test_split_flow_conserves_each_row(rng):
    cells = np.array([0.0, 3.0, 17.5, 4e6])
    weights = np.array([[1.0, 1.0, 0.0], [0.2, 0.3, 0.5], [1.0, 0.0, 3.0], [5.0, 1.0, 1.0]])
    for _ in range(200):
        out = split_flow(rng, cells, weights, 1000.0)
        assert out.sum(axis=1) == pytest.approx(cells)
        assert np.all(out >= 0)
        assert out[2, 1] == 0.0  # a zero weight receives nothing
        assert np.all(out[1] == np.round(out[1]))  # small whole rows are split into whole cells


def test_split_flow_is_multinomial():
    rng = np.random.default_rng(5)
    w = np.array([0.2, 0.3, 0.5])
    draws = split_flow(rng, np.full(50_000, 40.0), np.tile(w, (50_000, 1)), 1000.0)
    assert draws.mean(axis=0) == pytest.approx(40 * w, rel=0.01)
    assert draws.var(axis=0) == pytest.approx(40 * w * (1 - w), rel=0.05)


def test_flows_draw_from_the_generators_own_stream():
    """The compiled flows draw from the Generator's bit generator: a binomial by inversion is the
    quantile of the Generator's own uniforms, and the Generator's state moves on (no copy)."""
    from scipy.stats import binom

    n, p = 3.0, 0.5  # mean 1.5: exact inversion, one uniform per flow
    rng = np.random.default_rng(11)
    drawn = realise_flow(rng, np.full(2000, n), p, 1000.0)
    expected = binom.ppf(np.random.default_rng(11).random(2000), n, p)
    np.testing.assert_array_equal(drawn, expected)
    ref = np.random.default_rng(11)
    ref.random(2000)
    assert rng.random() == ref.random()
