"""Shared fixtures: configurations composed exactly as the command line composes them."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from emdsim.confload import load

#: a short, small cohort for tests: 3 years of follow-up after diagnosis
SMALL = ("cohort.n_patients=16", "cohort.block_size=16", "sim.followup_years=3", "sim.max_years_to_diagnosis=6")


@functools.lru_cache(maxsize=64)
def _load(overrides: tuple[str, ...]):
    return load(list(overrides))


@pytest.fixture
def make_cfg():
    """``make_cfg("spread.egress_rate_per_day=0", ...)`` -> validated EmdConfig (cached, treat as read-only)."""

    def make(*overrides: str, small: bool = True):
        return _load(tuple(SMALL if small else ()) + tuple(overrides))

    return make


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
