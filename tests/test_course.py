"""The clinical course of issue 18: lines of therapy end by attrition, imaging happens at events and
sees with a sensitivity curve, and survival never depends on what imaging sees."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from emdsim.biology.anatomy import build_world
from emdsim.biology.patients import MAX_LINES, max_lines, sample_patients
from emdsim.cohort.run import run_cohort

#: two-sided z for a per-test false-alarm rate of 1/1000
Z = 3.29


@pytest.mark.parametrize("attrition", [0.15, 0.45])
def test_max_lines_follow_the_attrition(attrition, rng):
    """P(max_lines > i) = (1 - attrition)^i: each of the first six tails within 3.29 SE (Bonferroni
    over six: 1/1000 per test at most), and every value in [1, MAX_LINES]."""
    n = 200_000
    m = max_lines(rng.random(n), attrition)
    assert m.min() >= 1 and m.max() <= MAX_LINES
    for i in range(1, 7):
        p = (1.0 - attrition) ** i
        se = np.sqrt(p * (1 - p) / n)
        assert abs((m > i).mean() - p) < (Z + 0.7) * se, i  # 3.99 SE: six tails share the 1/1000


def test_attrition_extremes_are_exact(rng):
    u = rng.random(1000)
    assert (max_lines(u, 1.0) == 1).all()
    assert (max_lines(u, 0.0) == MAX_LINES).all()


def test_site_visibility_is_log_normal_with_the_configured_spread(make_cfg):
    """log10 of a site's visibility is normal with sd ``clinical.detection_spread_log10``: KS test at
    1/1000 over 400 patients x N sites, and zero spread makes the threshold exact."""
    cfg = make_cfg("clinical.detection_spread_log10=0.5")
    world = build_world(cfg.anatomy)
    pts = sample_patients(cfg, world, np.arange(400))
    x = np.log10(pts.visibility).ravel() / 0.5
    assert stats.kstest(x, "norm").pvalue > 1e-3
    flat = sample_patients(make_cfg("clinical.detection_spread_log10=0"), world, np.arange(20))
    assert (flat.visibility == 1.0).all()


def _cohort(make_cfg, *overrides):
    cfg = make_cfg("cohort.n_patients=200", "cohort.block_size=100", "sim.followup_years=6", *overrides)
    return run_cohort(cfg).patients.set_index("patient_id")


@pytest.mark.parametrize("max_step", [7, 28])
def test_imaging_never_changes_the_course(make_cfg, max_step):
    """Imaging only observes (without local therapy, which treats what imaging finds): the same seed
    with clinical ascertainment or PET/CT, with or without surveillance, gives every patient the same
    diagnosis, progression and death (to the byte), while more imaging sees a superset of the
    lesions, never later. With the adaptive step too: a surveillance time ends no long step unless
    local therapy might treat what it sees (kernels._surveillance_may_treat)."""
    off = ("clinical.local_therapy.probability=0", f"sim.max_step_days={max_step}")
    base = _cohort(make_cfg, "scenario.imaging=clinical", *off)
    for other in (
        _cohort(make_cfg, "scenario.imaging=pet_ct", *off),
        _cohort(make_cfg, "scenario.imaging=clinical", "scenario.imaging_every_days=91", *off),
    ):
        for col in ("onset_to_diagnosis_days", "pfs_days", "os_days", "os_event", "n_lines"):
            pd.testing.assert_series_equal(base[col], other[col])
        for col in ("emd_at_diagnosis", "em_ever", "ps_ever"):
            assert not (base[col] & ~other[col]).any(), col  # what the lesser imaging saw, the more sees
        # more lesion kinds seen (a patient with both counts twice: a new EM sighting in a patient already
        # seen with PS disease is what the weekly and the long steps' 200 patients most often add)
        assert other[["em_ever", "ps_ever"]].to_numpy().sum() > base[["em_ever", "ps_ever"]].to_numpy().sum()


@pytest.mark.parametrize("max_step", [7, 28])
def test_surveillance_sees_lesions_earlier(make_cfg, max_step):
    """Yearly surveillance finds soft-tissue disease no later than imaging at events alone, and
    earlier in some patients (the same seed: the same lesions; without local therapy, which would
    treat what the surveillance finds); with long steps too, whose sightings fall inside them."""
    off = ("clinical.local_therapy.probability=0", f"sim.max_step_days={max_step}")
    events = _cohort(make_cfg, *off)
    yearly = _cohort(make_cfg, "scenario.imaging_every_days=364", *off)
    a, b = events["ps_first_detected_days"], yearly["ps_first_detected_days"]
    both = a.notna() & b.notna()
    assert (b[both] <= a[both]).all()
    assert (b[both] < a[both]).any() or (b.notna() & a.isna()).any()


def test_attrition_stops_therapy(make_cfg):
    """With attrition 1 no patient starts a second line, and every relapsed patient stops therapy;
    with attrition 0 nobody stops before the numerical cap."""
    none = _cohort(make_cfg, "treatment.attrition_per_line=1.0")
    dx = none[none["diagnosed"]]
    assert (dx["n_lines"] == 1).all()
    assert (dx["stopped_therapy"] == dx["relapsed"]).all() and dx["relapsed"].any()
    every = _cohort(make_cfg, "treatment.attrition_per_line=0.0")
    assert not every["stopped_therapy"].any()
    assert every.loc[every["diagnosed"], "n_lines"].max() > 1


def test_no_further_therapy_carries_its_death_hazard(make_cfg):
    """With attrition 1 and an off-therapy hazard of 10/day (a step's death probability 1 - e^-70),
    every patient who progresses dies at that step: OS equals PFS for every relapsed patient."""
    p = _cohort(make_cfg, "treatment.attrition_per_line=1.0", "clinical.off_therapy_death_rate_per_day=10")
    rel = p[p["diagnosed"] & p["relapsed"]]
    assert len(rel) > 20
    np.testing.assert_allclose(rel["os_days"], rel["pfs_days"])
    assert rel["os_event"].all()


def test_symptomatic_size_is_per_site_with_the_clinical_default(make_cfg):
    """A site's ``symptomatic_cells`` replaces ``clinical.symptomatic_lesion_cells`` where it is set."""
    from emdsim.engine.tables import build_tables

    cfg = make_cfg("clinical.symptomatic_lesion_cells=3e10")
    tb = build_tables(cfg)
    own = {n.name: n.symptomatic_cells for n in cfg.anatomy.nodes}
    for i, name in enumerate(tb.world.names):
        expected = own[name] if own[name] > 0 else 3e10
        assert tb.step.symptomatic_cells[i] == expected, name
    assert any(v > 0 for v in own.values()) and any(v == 0 for v in own.values())


def test_staggered_entry_spreads_follow_up_evenly():
    """Patient i enters at frac(i x golden ratio) of the accrual window: follow-up lies between
    followup - accrual and followup years, evenly (the Weyl sequence's empirical CDF is within
    ~log(n)/n of uniform: 0.01 at 2,000 patients), and depends only on the patient's id."""
    from emdsim.biology.patients import followup_days

    ids = np.arange(2000)
    years = followup_days(ids, 13.0, 12.0) / 365.25
    assert years.min() >= 1.0 - 1e-9 and years.max() <= 13.0 + 1e-9
    assert stats.kstest((13.0 - years) / 12.0, "uniform").statistic < 0.01
    np.testing.assert_array_equal(followup_days(ids[500:700], 13.0, 12.0), followup_days(ids, 13.0, 12.0)[500:700])
    assert np.all(followup_days(ids, 10.0, 0.0) == 10.0 * 365.25)


def test_a_patient_is_followed_to_the_data_cut(make_cfg):
    """With staggered entry every diagnosed patient's course ends by its own follow-up, and those
    alive at the end are censored at it (to the step); entry changes nothing before the cut: a
    patient followed longer has the same course up to the shorter one's cut."""
    full = _cohort(make_cfg)
    cut = _cohort(make_cfg, "scenario.accrual_years=4")
    dx = cut["diagnosed"]
    assert dx.sum() > 50
    from emdsim.biology.patients import followup_days

    limit = pd.Series(followup_days(cut.index.to_numpy(), 6.0, 4.0), index=cut.index)
    assert (cut.loc[dx, "os_days"] <= limit[dx] + 7.0).all()
    alive = dx & ~cut["os_event"]
    assert (np.abs(cut.loc[alive, "os_days"] - limit[alive]) <= 7.0).all() and alive.sum() > 10
    # before its cut, a patient's course is the one it has with full follow-up
    early = dx & full["os_event"] & (full["os_days"] < limit - 7.0)
    assert early.sum() > 20
    pd.testing.assert_series_equal(cut.loc[early, "os_days"], full.loc[early, "os_days"])
    assert (cut.loc[dx, "os_days"] < full.loc[dx, "os_days"] - 1.0).any()


def test_accrual_longer_than_follow_up_is_refused(make_cfg):
    from emdsim.config.schema import ConfigError

    with pytest.raises(ConfigError, match="scenario.accrual_years"):
        make_cfg("sim.followup_years=5", "scenario.accrual_years=6")
