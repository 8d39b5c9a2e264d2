"""Sweeps: the sweep table, a crashing job, resume, launcher equivalence and pre-launch checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from emdsim.studies import sweep

pytestmark = pytest.mark.e2e  # end to end: `make test-fast` leaves it out

EMDSIM = [sys.executable, "-m", "emdsim.cli.main"]
TINY = ["cohort.n_patients=5", "cohort.block_size=5", "sim.followup_years=2", "sim.max_years_to_diagnosis=5"]
METRICS = ["n_diagnosed", "ps_at_diagnosis", "em_at_diagnosis", "emd_at_relapse", "median_os_months"]


def _env():
    return dict(os.environ, HYDRA_FULL_ERROR="0", RAY_AUTH_MODE="disabled")


def _fake_job(
    root: Path, num: int, *, summary: dict | None = None, error: str | None = None, config: str = "a: 1\n"
) -> Path:
    d = root / str(num)
    d.mkdir(parents=True)
    sweep.write_job(d, num=num, overrides=[f"spread.w_vla4={num}.5", "treatment=vtd_asct", f"seed={num}"], seed=num)
    (d / "config.yaml").write_text(config)
    if summary is not None:
        (d / "summary.json").write_text(json.dumps(summary))
    if error is not None:
        try:
            raise RuntimeError(error)
        except RuntimeError as err:
            sweep.write_failure(d, err)
    return d


def test_collect_one_row_per_job_with_status_overrides_and_metrics(tmp_path):
    _fake_job(
        tmp_path,
        0,
        summary={
            "em_at_diagnosis": 0.1,
            "median_os_months": None,
            "sites_at_diagnosis": {"skin": 2},
            "top": ["a", "b"],
        },
    )
    _fake_job(tmp_path, 1, error="boom")
    _fake_job(tmp_path, 2)  # started, never finished
    (tmp_path / "not-a-job").mkdir()
    table = sweep.write_table(tmp_path)
    assert list(table["job"]) == [0, 1, 2]
    assert list(table["status"]) == ["done", "failed", "incomplete"]
    assert table.loc[1, "error"] == "RuntimeError: boom" and table.loc[0, "error"] == ""
    assert list(table["override.spread.w_vla4"]) == [0.5, 1.5, 2.5]
    assert set(table["override.treatment"]) == {"vtd_asct"}
    assert table.loc[0, "em_at_diagnosis"] == 0.1 and pd.isna(table.loc[0, "median_os_months"])
    assert table.loc[0, "sites_at_diagnosis.skin"] == 2  # nested mappings are flattened
    assert "top" not in table  # lists stay in each job's summary.json
    on_disk = pd.read_parquet(tmp_path / sweep.TABLE)
    assert list(on_disk["status"]) == list(table["status"])
    assert sweep.progress_line(tmp_path, 3).startswith("sweep: 2/3 finished (1 failed), 1 remaining")


def test_resume_state_skips_only_a_finished_run_of_the_same_configuration(tmp_path):
    assert sweep.resume_state(tmp_path / "new", "a: 1\n") == "run"
    d = _fake_job(tmp_path, 0, summary={"em_at_diagnosis": 0.0})
    assert sweep.resume_state(d, "a: 1\n") == "skip"
    assert sweep.resume_state(d, "a: 2\n") == "conflict"
    assert sweep.resume_state(_fake_job(tmp_path, 1, error="x"), "a: 1\n") == "run"


def _run_in_process(monkeypatch, argv):
    from emdsim.cli import main as cli

    monkeypatch.setattr(sys, "argv", ["emdsim", *argv])
    try:
        cli.main()
    except SystemExit as exit_:
        return exit_.code
    return 0


def test_a_crashing_job_is_a_failed_row_and_a_rerun_resumes(tmp_path, monkeypatch):
    """Basic launcher in this process: job seed=2 raises; the others finish; a rerun runs only it."""
    import emdsim.studies.task

    real = emdsim.studies.task.run_task
    calls = []

    def flaky(cfg, run_dir, **kw):
        calls.append(cfg.seed)
        if cfg.seed == 2:
            raise RuntimeError("simulated crash")
        return real(cfg, run_dir, **kw)

    monkeypatch.setattr(emdsim.studies.task, "run_task", flaky)
    sweep_dir = tmp_path / "sw"
    argv = ["-m", *TINY, "seed=1,2,3", f"hydra.sweep.dir={sweep_dir}"]
    assert _run_in_process(monkeypatch, argv) == 1  # a failed job makes the sweep's status non-zero
    table = pd.read_parquet(sweep_dir / sweep.TABLE)
    assert list(table["status"]) == ["done", "failed", "done"]
    assert "simulated crash" in table.loc[1, "error"]
    assert (sweep_dir / "0" / "summary.json").is_file() and (sweep_dir / "2" / "summary.json").is_file()
    finished = {d: (sweep_dir / d / "summary.json").stat().st_mtime_ns for d in ("0", "2")}

    calls.clear()
    monkeypatch.setattr(
        emdsim.studies.task,
        "run_task",
        lambda cfg, run_dir, **kw: (calls.append(cfg.seed), real(cfg, run_dir, **kw))[1],
    )
    assert _run_in_process(monkeypatch, argv) == 0
    assert calls == [2]  # the finished jobs were skipped
    table = pd.read_parquet(sweep_dir / sweep.TABLE)
    assert list(table["status"]) == ["done"] * 3 and list(table["seed"]) == [1, 2, 3]
    assert {d: (sweep_dir / d / "summary.json").stat().st_mtime_ns for d in ("0", "2")} == finished
    assert not (sweep_dir / "1" / sweep.FAILURE).exists()


def test_report_status_and_figures_of_a_sweep(tmp_path, capsys):
    from emdsim.cli.report import main as report

    _fake_job(tmp_path, 0, summary={"em_at_diagnosis": 0.1, "n_diagnosed": 40, "median_os_months": 80.0})
    _fake_job(tmp_path, 1, summary={"em_at_diagnosis": 0.2, "n_diagnosed": 40, "median_os_months": 70.0})
    _fake_job(tmp_path, 2)
    with pytest.raises(SystemExit) as exit_:
        report([str(tmp_path), "--status"])
    assert exit_.value.code == 0
    assert "sweep: 2/3 finished (0 failed), 1 remaining" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        report([str(tmp_path), "--metrics", "em_at_diagnosis", "median_os_months"])
    assert exit_.value.code == 0
    png = tmp_path / "sweep_spread.w_vla4.png"
    assert png.is_file() and png.read_bytes()[:4] == b"\x89PNG"


def _sweep(tmp_path: Path, name: str, *extra: str) -> pd.DataFrame:
    d = tmp_path / name
    proc = subprocess.run(
        EMDSIM + ["-m", *TINY, "seed=3,4", "treatment=vtd_asct,conventional", f"hydra.sweep.dir={d}", *extra],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert f"sweep: 4 jobs; results in {d}" in proc.stdout
    assert "sweep: 4 done, 0 failed, 0 incomplete" in proc.stdout
    if "submitit" not in name:  # submitit jobs print into their own logs
        assert "4/4 finished (0 failed), 0 remaining" in proc.stdout
    return pd.read_parquet(d / sweep.TABLE).sort_values("overrides").reset_index(drop=True)


def test_launchers_give_identical_sweep_tables(tmp_path):
    basic = _sweep(tmp_path, "basic")
    assert (basic["status"] == "done").all() and len(basic) == 4
    assert basic["override.seed"].tolist().count(3) == 2
    # the seed comes from the config: different seeds give different cohorts
    assert not basic[METRICS].iloc[0].equals(basic[METRICS].iloc[1])
    for launcher in (["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], ["hydra/launcher=submitit_local"]):
        other = _sweep(tmp_path, launcher[0].split("=")[1], *launcher)
        assert (other["status"] == "done").all()
        assert other["overrides"].tolist() == basic["overrides"].tolist()
        pd.testing.assert_frame_equal(other[METRICS], basic[METRICS], check_exact=True)


def test_ray_launcher_gives_the_same_table(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_ray_launcher", reason="optional extra: pip install -e .[ray]")
    basic = _sweep(tmp_path, "basic")
    ray = _sweep(tmp_path, "ray", "hydra/launcher=ray", "hydra.launcher.ray.init.num_cpus=2")
    pd.testing.assert_frame_equal(ray[METRICS], basic[METRICS], check_exact=True)


@pytest.mark.parametrize(
    "override, needle",
    [
        (
            "spread.p_colonization=1e-5,1e-4",
            "is invalid: not a parameter of the configuration (see docs/parameters.md); "
            "did you mean spread.p_colonisation?",
        ),
        ("spread.p_colonisation=0.1,1.5", "spread.p_colonisation=1.5 is invalid: allowed [0, 1] (probability)"),
        ("seed=range(3,3)", "seed='(empty)' is invalid: a sweep needs at least one value"),
        ("cohort.n_patients=5,0", "cohort.n_patients=0 is invalid"),
        ("treatment=vtd_asct,nonesuch", "treatment='nonesuch' is invalid: must be one of"),
    ],
)
def test_bad_sweeps_are_rejected_before_any_job_starts(tmp_path, override, needle):
    d = tmp_path / "sw"
    proc = subprocess.run(
        EMDSIM + ["-m", *TINY, override, f"hydra.sweep.dir={d}"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
    )
    assert proc.returncode == 2
    assert needle in proc.stderr and "Traceback" not in proc.stderr
    assert not d.exists()
