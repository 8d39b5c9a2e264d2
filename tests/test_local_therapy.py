"""Local therapy of accessible lesions (``clinical.local_therapy``): who is treated, what it clears,
and that it changes nothing else."""

from __future__ import annotations

import numpy as np
import pytest

from emdsim.biology.patients import sample_patients
from emdsim.config.load import load
from emdsim.config.schema import ConfigError
from emdsim.engine.schedule import _advance, _clinic, _events, step
from emdsim.engine.state import init_state
from emdsim.engine.status import Status
from emdsim.engine.tables import build_tables


def test_the_draw_is_per_patient_and_site_and_leaves_every_other_baseline_alone(make_cfg):
    """Over 20,000 patients the share treated at the listed site is the probability (0.3; sd 0.0032,
    the bound 0.0135 is 4.2 sd: fails by chance ~3e-5), no other site is ever treated, and every
    other baseline is the same array as with no local therapy (the draw comes last in a patient's
    stream)."""
    on = make_cfg("clinical.local_therapy.probability=0.3", "clinical.local_therapy.sites=[skin,liver]")
    off = make_cfg("clinical.local_therapy.probability=0.0")
    tb = build_tables(on)
    ids = np.arange(20_000)
    a, b = sample_patients(on, tb.world, ids), sample_patients(off, tb.world, ids)
    skin, liver = tb.world.index("skin"), tb.world.index("liver")
    for site in (skin, liver):
        assert abs(a.local_therapy[:, site].mean() - 0.3) < 0.0135
    others = np.ones(tb.world.n_nodes, dtype=bool)
    others[[skin, liver]] = False
    assert not a.local_therapy[:, others].any() and not b.local_therapy.any()
    # independent between sites: both in ~9 %, not in 30 % (sd 0.002; 0.02 is 10 sd)
    assert abs((a.local_therapy[:, skin] & a.local_therapy[:, liver]).mean() - 0.09) < 0.02
    for name, value in vars(a).items():
        if name != "local_therapy":
            np.testing.assert_array_equal(value, getattr(b, name), err_msg=name)


@pytest.mark.parametrize(
    "override,field",
    [
        ("clinical.local_therapy.sites=[skn]", "clinical.local_therapy.sites.0"),
        ("clinical.local_therapy.sites=[skin,pelvis]", "clinical.local_therapy.sites.1"),  # marrow: no lesion
        ("clinical.local_therapy.probability=1.5", "clinical.local_therapy.probability"),
    ],
)
def test_bad_local_therapy_is_one_clear_error(override, field):
    with pytest.raises(ConfigError) as err:
        load([override])
    assert err.value.field_path == field
    assert "\n" not in str(err.value)


def _mid_course(cfg, steps=80):
    """A block of the exact engine stepped to mid-course (most patients diagnosed)."""
    tb = build_tables(cfg)
    st = init_state(tb, sample_patients(cfg, tb.world, np.arange(64)))
    rng = np.random.default_rng(3)
    for _ in range(steps):
        step(st, tb, rng)
    return st, tb, rng


def test_a_seen_lesion_is_cleared_once_and_only_where_the_patient_is_treated(make_cfg):
    """A large skin lesion put into every living patient is seen (it is above the symptomatic size):
    in diagnosed patients whose skin lesions are treated it is cleared at once (all clones, the
    patient's total falls by exactly its cells, the lesion is recorded as treated); in the others it
    stays. A second lesion later at the same site is not treated again."""
    cfg = make_cfg("engine=exact", "clinical.local_therapy.probability=0.5", "sim.followup_years=20")
    st, tb, rng = _mid_course(cfg)
    skin = tb.world.index("skin")
    living = st.status <= Status.FOLLOWED
    st.cells[living, skin, 0] = 3.0 * tb.step.symptomatic_cells[skin]  # below the capacity
    treated_before = st.treated_locally[:, skin].copy()
    st.t_days += cfg.sim.dt_days
    _events(st, tb)
    node_total = _advance(st, tb, rng)
    grown = node_total[:, skin].copy()
    _clinic(st, tb, rng, node_total)
    seen = grown >= tb.step.symptomatic_cells[skin]  # symptomatic: seen at any time
    assert seen[living].mean() > 0.9
    diagnosed = living & seen & (st.t_dx <= st.t_days)
    treat = diagnosed & st.patients.local_therapy[:, skin] & ~treated_before
    assert treat.sum() >= 5 and (diagnosed & ~treat).sum() >= 5  # both kinds are present (64 patients)
    assert np.all(st.cells[treat, skin] == 0.0) and np.all(st.node_total[treat, skin] == 0.0)
    assert np.all(st.treated_locally[treat, skin])
    untouched = living & seen & ~treat & ~treated_before
    assert np.all(st.cells[untouched, skin].sum(axis=1) > 0.0) and not st.treated_locally[untouched, skin].any()
    with np.errstate(invalid="ignore"):
        totals = node_total.sum(axis=1)
    # the clinic's total: the treated lesion's cells are gone from it (the numpy sum, less them)
    np.testing.assert_allclose(st.total_cells[treat], totals[treat], rtol=1e-12)
    # the same lesion grows back (new cells put there): seen, not treated a second time
    again = treat & (st.status == Status.FOLLOWED)
    st.cells[again, skin, 0] = 3.0 * tb.step.symptomatic_cells[skin]
    st.t_days += cfg.sim.dt_days
    _events(st, tb)
    _clinic(st, tb, rng, _advance(st, tb, rng))
    still = again & (st.status == Status.FOLLOWED)
    assert still.sum() >= 3 and np.all(st.node_total[still, skin] > 0.0)


def test_no_local_therapy_and_none_listed_are_the_same_run(make_cfg):
    """Probability 0 and no sites listed give the same course to the byte: the rule draws nothing
    during the course."""
    from emdsim.cohort.run import run_cohort

    a = run_cohort(make_cfg("clinical.local_therapy.probability=0.0"))
    b = run_cohort(make_cfg("clinical.local_therapy.sites=[]"))
    pa, pb = a.patients, b.patients
    assert pa.equals(pb)


def test_a_lesion_cleared_as_the_salvage_line_starts_leaves_nothing_to_measure(make_cfg):
    """Patients on their first line, given one large skin lesion (seen: above the symptomatic size) and
    no other soft-tissue cells, progress at the next step (their nadir set low), so the first salvage
    line starts at that restaging. Where the skin lesion is treated locally then it is gone before the
    line starts: the patient counts as without EMD at its start (nothing left to measure a soft-tissue
    response on); where it stays, with EMD. Both see it at the line's start (a registry records it)."""
    from emdsim.engine.kernels import OFF_THERAPY

    cfg = make_cfg("engine=exact", "clinical.local_therapy.probability=0.5", "sim.followup_years=20")
    st, tb, rng = _mid_course(cfg)
    skin = tb.world.index("skin")
    first = (
        (st.status == Status.FOLLOWED)
        & (st.line == 0)
        & (st.phase_pos != OFF_THERAPY)
        & (st.patients.max_lines > 1)
        & np.isnan(st.emd_line_start)
    )
    rows = np.flatnonzero(first)
    soft = np.flatnonzero(tb.soft_tissue)
    st.cells[np.ix_(rows, soft)] = 0.0
    st.cells[rows, skin, 0] = 3.0 * tb.step.symptomatic_cells[skin]
    st.line_start[rows] = st.t_days - 10_000.0  # long enough on the line to progress
    st.nadir[rows] = 1.0  # the burden has risen from its nadir: progression
    treated_before = st.treated_locally[:, skin].copy()
    st.t_days += cfg.sim.dt_days
    _events(st, tb)
    _clinic(st, tb, rng, _advance(st, tb, rng))
    started = first & (st.line == 1) & ~np.isnan(st.salvage_start_total)
    cleared = started & st.patients.local_therapy[:, skin] & ~treated_before
    kept = started & ~st.patients.local_therapy[:, skin]
    assert cleared.sum() >= 3 and kept.sum() >= 3, (cleared.sum(), kept.sum())  # both kinds (64 patients)
    assert not st.salvage_with_emd[cleared].any() and np.all(st.treated_locally[cleared, skin])
    assert st.salvage_with_emd[kept].all()
    assert not np.isnan(st.emd_line_start[cleared | kept]).any()
