"""Figures, snapshots and animations (Agg, no display): files, axes, frames and determinism."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from emdsim.analysis.targets import incidence_targets, load_targets
from emdsim.cohort.run import run_cohort
from emdsim.cohort.snapshots import SNAPSHOT_COLUMNS
from emdsim.config.load import compose, config_yaml, to_config
from emdsim.studies.task import run_task
from emdsim.viz import animate, figures

pytestmark = pytest.mark.e2e  # end to end: `make test-fast` leaves it out

RUN = (
    "cohort.n_patients=24",
    "cohort.block_size=24",
    "sim.followup_years=4",
    "sim.max_years_to_diagnosis=6",
    "sim.snapshot_patients=6",
    "seed=11",
)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("run")
    cfg = compose(list(RUN))
    run_task(to_config(cfg), d, config_text=config_yaml(cfg), show_progress=False)
    return d


def _png(path: Path) -> tuple[int, int]:
    assert path.is_file() and path.stat().st_size > 5000
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


def test_cohort_figures_have_the_expected_axes(run_dir):
    paths = figures.cohort_figures(run_dir)
    assert [p.name for p in paths] == list(figures.FIGURES)
    for p in paths:
        w, h = _png(p)
        assert w >= 600 and h >= 400
    inc = figures.incidence_figure(
        pd.read_parquet(run_dir / "incidence.parquet"), incidence_targets(load_targets()), run_dir / "x.png"
    )
    assert len(inc.axes) == 2
    assert [a.get_ylabel() for a in inc.axes] == ["% of diagnosed patients", "% of relapsed patients"]
    assert [t.get_text() for t in inc.axes[0].get_xticklabels()][1].startswith("EM")
    surv = figures.survival_figure(pd.read_parquet(run_dir / "survival.parquet"), run_dir / "y.png")
    assert [a.get_xlabel() for a in surv.axes] == ["months from diagnosis"] * 2
    assert "progression-free" in surv.axes[0].get_ylabel() and "overall" in surv.axes[1].get_ylabel()
    site_table = pd.read_parquet(run_dir / "sites.parquet")
    sites = figures.sites_figure(site_table, run_dir / "z.png")
    assert sites.axes[0].get_xlabel().startswith("% of patients with a detected lesion")
    labels = [t.get_text() for t in sites.axes[0].get_yticklabels()]
    assert len(labels) == site_table["site"].nunique()  # every site, none dropped silently
    assert not any("_" in label for label in labels)  # readable names, not identifiers
    patients = pd.read_parquet(run_dir / "patients.parquet")
    at_risk = figures.survival_figure(
        pd.read_parquet(run_dir / "survival.parquet"), run_dir / "y2.png", patients=patients
    )
    tables = [a for a in at_risk.axes if a.get_title(loc="left") == "number at risk"]
    assert len(tables) == 2  # a numbers-at-risk table under each Kaplan-Meier plot
    dx = patients[patients["diagnosed"]]
    shown = sorted(int(t.get_text()) for t in tables[0].texts if t.get_position()[0] == 0)
    assert shown == sorted([int((~dx["emd_at_diagnosis"]).sum()), int(dx["emd_at_diagnosis"].sum())])
    cif = figures.cumulative_incidence_figure(pd.read_parquet(run_dir / "survival.parquet"), run_dir / "c.png")
    assert "cumulative incidence" in cif.axes[0].get_ylabel()


def test_every_reported_point_on_the_incidence_figure_comes_from_the_targets_file(run_dir):
    targets = incidence_targets(load_targets())
    fig = figures.incidence_figure(pd.read_parquet(run_dir / "incidence.parquet"), targets, run_dir / "x.png")
    plotted = sorted(
        round(float(y), 6)
        for ax in fig.axes
        for line in ax.get_lines()
        if line.get_marker() in figures._MARKERS
        for y in line.get_ydata()
    )
    assert plotted == sorted(round(float(t.value), 6) for t in targets)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "Usmani 2012" in legend and not any("_" in text for text in legend)  # citations, not keys


def test_snapshots_cover_the_recorded_patients_only(run_dir):
    snaps = pd.read_parquet(run_dir / "snapshots.parquet")
    assert list(snaps.columns) == list(SNAPSHOT_COLUMNS)
    assert sorted(snaps["patient_id"].unique()) == list(range(6))
    assert (snaps["cells"] >= 0).all() and snaps["status"].between(0, 3).all()
    for _, g in snaps.groupby("patient_id"):
        steps = g["step"].drop_duplicates().to_numpy()
        # from onset, at the end of each of the patient's own steps: one to max_step_days / dt_days (4) long
        assert steps[0] == 0 and np.isin(np.diff(steps), [1, 2, 3, 4]).all()
        assert (g.groupby("step")["t_days"].nunique() == 1).all()
        last = g[g["step"] == steps[-1]]
        assert last["status"].iloc[0] >= 2  # recorded until death or censoring


def test_snapshots_do_not_change_the_cohort(make_cfg):
    with_snaps = run_cohort(make_cfg("sim.snapshot_patients=8"))
    without = run_cohort(make_cfg("sim.snapshot_patients=0"))
    pd.testing.assert_frame_equal(with_snaps.patients, without.patients)
    assert without.snapshots.empty and not with_snaps.snapshots.empty


def _frames(g: pd.DataFrame) -> list[tuple]:
    """One patient's snapshot rows, step by step: (node, cells, flows) of each compartment."""
    return [
        tuple(map(tuple, f[["node", "cells", "local_flow", "haematogenous_flow"]].to_numpy()))
        for _, f in g.groupby("step")
    ]


@pytest.mark.parametrize("every", [1, 3])
def test_long_steps_record_a_patient_at_its_own_step_ends(make_cfg, every):
    """With the adaptive step a patient within a long step has not been advanced: a row at the weeks
    it spans would repeat its last step's compartments and flows at a later time (as before
    2026-12-01). Effect: rows only at the patient's step ends (gaps of whole weeks, up to the longest
    step), some gaps longer than a week, no two consecutive rows of a living patient alike; with
    ``snapshot_every`` 3, one row per recording step spanned; with either step, a last row on the
    step the course ended (before 2026-12-01, with ``snapshot_every`` > 1, only at the next recording
    step, so a course ending after the block's last one had none)."""
    recorded = ("sim.snapshot_patients=8", f"sim.snapshot_every={every}")
    snaps = run_cohort(make_cfg("sim.max_step_days=28", *recorded)).snapshots
    weekly = run_cohort(make_cfg("sim.max_step_days=7", *recorded)).snapshots
    assert sorted(snaps["patient_id"].unique()) == list(range(8))
    long_gaps = 0
    for _, g in snaps.groupby("patient_id"):
        steps = g["step"].drop_duplicates().to_numpy()
        assert steps[0] == 0
        gaps = np.diff(steps)
        assert gaps.min() >= 1 and gaps.max() <= 4 + every - 1
        if every > 1:  # one row per step that spans a recording step (a multiple of 3), at its end
            assert (np.diff(steps[:-1] // every) >= 1).all()
        long_gaps += int((gaps > every).sum())
        frames = _frames(g)
        alive = g.drop_duplicates("step")["status"].to_numpy() <= 1
        assert not any(a == b and ok for a, b, ok in zip(frames, frames[1:], alive[1:], strict=False))
        assert g["status"].iloc[-1] >= 2  # recorded until death or censoring, as with weekly steps
    assert long_gaps > 0
    for _, g in weekly.groupby("patient_id"):  # weekly steps: every `every`-th step
        steps = g["step"].drop_duplicates().to_numpy()
        assert (steps[1:-1] % every == 0).all() and (np.diff(steps[:-1]) == every).all()
        assert g["status"].iloc[-1] >= 2


def test_animation_has_the_requested_frames_and_is_deterministic(run_dir, tmp_path):
    a, n = animate.render(run_dir, patient="first", out=tmp_path / "a.gif", max_frames=8, fps=4, size=(6, 4.5))
    b, _ = animate.render(run_dir, patient="first", out=tmp_path / "b.gif", max_frames=8, fps=4, size=(6, 4.5))
    with Image.open(a) as im:
        assert im.format == "GIF" and im.n_frames == n == 8
    assert hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest()


def test_frame_steps_keep_first_and_last():
    steps = animate.frame_steps(np.arange(0, 500), 20)
    assert len(steps) == 20 and steps[0] == 0 and steps[-1] == 499
    assert list(animate.frame_steps(np.array([3, 1, 2, 2]), 20)) == [1, 2, 3]


def test_patient_selection(run_dir):
    patients = pd.read_parquet(run_dir / "patients.parquet")
    snaps = pd.read_parquet(run_dir / "snapshots.parquet")
    assert animate.select_patient(patients, snaps, "first") == 0
    assert animate.select_patient(patients, snaps, "3") == 3
    with pytest.raises(ValueError, match="has no snapshots"):
        animate.select_patient(patients, snaps, "20")
    with pytest.raises(ValueError, match="an id, first"):
        animate.select_patient(patients, snaps, "somebody")
    rec = patients[patients["patient_id"] < 6]
    if rec["emd_at_relapse"].any():
        assert animate.select_patient(patients, snaps, "first-emd-relapse") == int(
            rec.loc[rec["emd_at_relapse"], "patient_id"].iloc[0]
        )
    else:
        with pytest.raises(ValueError, match="larger sim.snapshot_patients"):
            animate.select_patient(patients, snaps, "first-emd-relapse")


def test_node_positions_place_every_compartment(run_dir):
    nodes = animate.anatomy_nodes(run_dir)
    pos = animate.node_positions(nodes)
    assert set(pos) == set(nodes["name"])
    xy = np.array(list(pos.values()))
    assert len(np.unique(np.round(xy, 6), axis=0)) == len(xy)  # no two compartments on one spot


def test_animate_command_line_errors_are_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "emdsim.cli.animate", str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2 and "not a finished run directory" in proc.stderr and "Traceback" not in proc.stderr
