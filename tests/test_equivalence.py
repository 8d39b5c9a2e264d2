"""The default array engine (hybrid) and the Mesa model (the exact step, one patient at a time)
agree in distribution on the same scenario.

Both engines draw the same patient baselines (per-patient streams) and run the same processes; the
flows' realisation (hybrid vs exact), the iteration and the dynamics' random streams differ.
Each outcome is compared with a two-sample test at a family-wise level of 0.001 (Bonferroni over
the 9 comparisons): when the engines agree, the test fails by chance in at most 1 run in 1,000,
whatever the CPU's stream.
"""

from __future__ import annotations

import pytest
from agreement import assert_cohorts_agree

from emdsim.cohort.run import run_cohort

pytestmark = pytest.mark.e2e  # end to end: `make test-fast` leaves it out

PROPORTIONS = ("ps_at_diagnosis", "em_ever", "ps_ever", "emd_at_relapse", "relapsed", "os_event")
ALPHA = 0.001 / (len(PROPORTIONS) + 3)


def _compare(make_cfg, n, years):
    common = (f"cohort.n_patients={n}", f"sim.followup_years={years}", "cohort.n_jobs=1", "seed=99")
    vec = run_cohort(make_cfg(*common, "cohort.block_size=64")).patients
    mesa = run_cohort(make_cfg(*common, "engine=mesa")).patients
    assert_cohorts_agree(vec, mesa, PROPORTIONS, ALPHA)


def test_engines_agree_in_distribution(make_cfg):
    _compare(make_cfg, n=160, years=4)


@pytest.mark.slow
def test_engines_agree_in_distribution_full_follow_up(make_cfg):
    _compare(make_cfg, n=400, years=10)
