"""``sim.followup_years=0``: each course stops at diagnosis, and the diagnosis statistics are those
of a full run.

With the hybrid engine (the default) every patient draws from its own stream, so a stopped run
reproduces each patient's course up to diagnosis exactly.  With ``engine=exact`` the patients of a
block share one random stream: once a stopped patient stops drawing, the later draws of its block go
to other patients, so the two runs agree exactly up to the first diagnosis of each block, and in
distribution after it.  The fast tests hold the exact parts; the slow one the distributions, on
2 x 2,048 patients.  The history match and the validation stop the cohorts they read only at
diagnosis (:func:`emdsim.analysis.evidence.stops_at_diagnosis`).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from emdsim.cohort import run_cohort
from emdsim.config.load import load

BLOCK = 64
COHORT = [f"cohort.block_size={BLOCK}", "cohort.n_jobs=1", "sim.max_years_to_diagnosis=6", "seed=7"]


def _pair(n: int, engine: str = "exact"):
    runs = [
        run_cohort(load([f"cohort.n_patients={n}", f"sim.followup_years={y}", f"engine={engine}", *COHORT])).patients
        for y in (3, 0)
    ]
    return runs[0], runs[1]


@pytest.fixture(scope="module")
def pair():
    return _pair(2 * BLOCK)


DIAGNOSIS = ["diagnosed", "onset_to_diagnosis_days", "burden_at_diagnosis_cells", "ps_at_diagnosis",
             "em_at_diagnosis", "emd_at_diagnosis", "sites_at_diagnosis"]  # fmt: skip


def test_the_hybrid_engine_stops_every_course_where_the_full_run_diagnoses_it():
    """Per-patient streams: every patient's diagnosis (whether, when, burden, what was seen where) is
    the same, to the bit on one machine, whether its course stops there or goes on."""
    full, stopped = _pair(2 * BLOCK, "hybrid")
    assert full["diagnosed"].sum() > BLOCK
    assert full[DIAGNOSIS].equals(stopped[DIAGNOSIS])


def test_a_stopped_course_ends_at_diagnosis_untreated(pair):
    """Diagnosed patients end at diagnosis, censored: only the first line they are diagnosed into (no
    later line), no relapse, no death, no follow-up time."""
    _, stopped = pair
    dx = stopped[stopped["diagnosed"]]
    assert len(dx) > BLOCK  # most virtual patients are diagnosed
    assert (dx["pfs_days"] == 0).all() and (dx["os_days"] == 0).all()
    assert not dx["pfs_event"].any() and not dx["os_event"].any() and not dx["relapsed"].any()
    assert (dx["n_lines"] == 1).all()
    assert (dx["simulated_days"] == dx["onset_to_diagnosis_days"]).all()


def test_diagnoses_agree_exactly_up_to_each_blocks_first(pair):
    """Up to the first step at which a patient of the block is diagnosed, both runs drew the same
    numbers, and a diagnosis draws none: every diagnosis at that step is the same in both runs."""
    full, stopped = pair
    columns = ["onset_to_diagnosis_days", "burden_at_diagnosis_cells", "ps_at_diagnosis", "em_at_diagnosis"]
    checked = 0
    for b in range(2):
        rows = slice(b * BLOCK, (b + 1) * BLOCK)
        f, s = full.iloc[rows], stopped.iloc[rows]
        first = f["onset_to_diagnosis_days"].min()
        assert s["onset_to_diagnosis_days"].min() == first
        same = f["onset_to_diagnosis_days"] == first
        assert (s["onset_to_diagnosis_days"] == first).equals(same)
        a, c = f.loc[same, columns].reset_index(drop=True), s.loc[same, columns].reset_index(drop=True)
        assert a.equals(c)
        checked += int(same.sum())
    assert checked >= 2


@pytest.mark.slow
def test_diagnosis_statistics_match_a_full_run():
    """Effect: none (the option only stops courses after diagnosis).  Diagnosed fraction, EMD/PS/EM at
    diagnosis (two-proportion z-tests) and time to diagnosis (two-sample KS) on 2,048 patients per
    run; each test at alpha = 0.0002, family-wise <= 0.001 (the runs share their early draws, which
    only makes the tests more conservative).  A shift of 4 percentage points in EMD at diagnosis
    (~18 %) would be found with power ~0.8."""
    full, stopped = _pair(2048)  # the exact engine: the hybrid's agree exactly (above)
    alpha = 0.001 / 5
    for column, base in (
        ("diagnosed", None),
        ("emd_at_diagnosis", "diagnosed"),
        ("ps_at_diagnosis", "diagnosed"),
        ("em_at_diagnosis", "diagnosed"),
    ):
        x = [df[column][df[base]] if base else df[column] for df in (full, stopped)]
        k, n = np.array([v.sum() for v in x], float), np.array([len(v) for v in x], float)
        pooled = k.sum() / n.sum()
        se = np.sqrt(pooled * (1 - pooled) * (1 / n[0] + 1 / n[1]))
        z = 0.0 if se == 0 else (k[0] / n[0] - k[1] / n[1]) / se
        assert 2 * stats.norm.sf(abs(z)) > alpha, (column, k / n)
    t = [df.loc[df["diagnosed"], "onset_to_diagnosis_days"] for df in (full, stopped)]
    assert stats.ks_2samp(*t).pvalue > alpha


def test_the_closing_lines_say_the_courses_stopped_at_diagnosis(tmp_path):
    """A stopped run reports its fractions at diagnosis and says why there is no relapse or survival
    (not 'not reached', which would read as long survival)."""
    from emdsim.cli.main import summary_lines

    summary = {"n_patients": 10, "n_diagnosed": 8, "n_relapsed": 0, "emd_at_diagnosis": 0.25,
               "ps_at_diagnosis": 0.25, "em_at_diagnosis": 0.0, "median_pfs_months": None,
               "median_os_months": None, "files": ["summary.json"]}  # fmt: skip
    text = summary_lines(summary, tmp_path, followed=False)
    assert "EMD 25.0% (2/8)" in text and "stopped at diagnosis (sim.followup_years=0)" in text
    assert "not reached" not in text and "median PFS" not in text
    assert "median PFS not reached" in summary_lines(summary, tmp_path)


def test_only_cohorts_read_at_diagnosis_are_stopped():
    """The statistics that read nothing after diagnosis, and the cohorts that may stop there."""
    from emdsim.analysis.evidence import STATISTICS, stops_at_diagnosis

    at_dx = {n for n, s in STATISTICS.items() if s.at_diagnosis}
    assert at_dx == {"em_at_diagnosis", "ps_at_diagnosis", "emd_at_diagnosis", "top_em_site_at_diagnosis"}
    assert stops_at_diagnosis(["emd_at_diagnosis", "ps_at_diagnosis"])
    assert not stops_at_diagnosis(["emd_at_diagnosis", "em_at_relapse"])
    assert not stops_at_diagnosis([]) and not stops_at_diagnosis([None])
