"""Every fault is visible and nothing is lost or mislabelled.

One test per fault class: a conflicting sweep re-run, a killed job process under the joblib
launcher, a run killed mid-simulation, an interrupted atomic write, a degenerate cohort, a
duplicated YAML key, a name that would escape its output folder, a killed dashboard; and one table
of bad inputs across every command, each of which must get one line naming the field or file and
exit 2 with no traceback, writing nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from emdsim.config.schema import ConfigError
from emdsim.studies import sweep
from emdsim.studies.rundir import atomic_write_text

pytestmark = pytest.mark.e2e  # end to end: `make test-fast` leaves it out

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
TINY = ["cohort.block_size=8", "sim.followup_years=2", "sim.max_years_to_diagnosis=5", "figures=false"]


def _env() -> dict[str, str]:
    return dict(os.environ, HYDRA_FULL_ERROR="0", PYTHONUNBUFFERED="1")


def _emdsim(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PY, "-m", "emdsim.cli.main", *args], capture_output=True, text=True, env=_env(), timeout=timeout, cwd=ROOT
    )


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "cli.log"
    }


# ------------------------------------------------------------------------------------- sweeps
def test_a_conflicting_rerun_is_refused_and_leaves_the_earlier_results_untouched(tmp_path):
    d = tmp_path / "sw"
    first = _emdsim("-m", "cohort.n_patients=6", "seed=1,2", *TINY, f"hydra.sweep.dir={d}")
    assert first.returncode == 0, first.stderr
    before = _digest(d)
    second = _emdsim("-m", "cohort.n_patients=5", "seed=1,2", *TINY, f"hydra.sweep.dir={d}")
    assert second.returncode == 2 and "Traceback" not in second.stderr
    assert "it holds a sweep of other overrides" in second.stderr
    assert _digest(d) == before  # every file of the earlier sweep, .hydra/ records included
    # the original command resumes: finished jobs are skipped
    third = _emdsim("-m", "cohort.n_patients=6", "seed=1,2", *TINY, f"hydra.sweep.dir={d}")
    assert third.returncode == 0, third.stdout
    assert "skipped (resume)" in third.stdout + third.stderr
    assert list(pd.read_parquet(d / sweep.TABLE)["status"]) == ["done", "done"]


def test_a_job_whose_directory_holds_another_configuration_is_a_failed_row_without_metrics(tmp_path):
    """Same overrides, other configuration (a conf file changed between the runs): the job is
    refused in its own directory; the table shows it failed with the refused overrides and none of
    the earlier metrics, and the earlier files stay as they were."""
    d = tmp_path / "0"
    sweep.write_job(d, num=0, overrides=["seed=1"], seed=1)
    (d / "config.yaml").write_text("a: 1\n")
    (d / "summary.json").write_text(json.dumps({"n_patients": 6, "em_at_diagnosis": 0.2}))
    before = _digest(d)
    assert sweep.resume_state(d, "a: 2\n") == "conflict"
    sweep.write_conflict(d, num=0, overrides=["seed=1", "x=2"], message="holds another configuration")
    assert {k: v for k, v in _digest(d).items() if k != sweep.CONFLICT} == before
    row = sweep.collect(tmp_path).iloc[0]
    assert row["status"] == "failed" and row["error"].startswith("conflict:")
    assert row["overrides"] == "seed=1 x=2" and "em_at_diagnosis" not in row.index
    assert sweep.progress_line(tmp_path, 1).startswith("sweep: 1/1 finished (1 failed)")
    sweep.write_job(d, num=0, overrides=["seed=1"], seed=1)  # a run of the same configuration clears it
    assert not (d / sweep.CONFLICT).exists()


@pytest.mark.parametrize(
    ("launcher", "needle"),
    [
        (["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], "SIGKILL"),
        (["hydra/launcher=submitit_local"], "ended without a result"),
    ],
    ids=["joblib", "submitit_local"],
)
def test_a_killed_job_process_fails_only_its_own_job(tmp_path, launcher, needle):
    """Four jobs; job 1 (the largest cohort) is SIGKILLed once it has started: it is a failed row
    saying why, the other three finish, sweep.parquet is written, exit status 1, no traceback."""
    d = tmp_path / "sw"
    proc = subprocess.Popen(
        [
            PY,
            "-m",
            "emdsim.cli.main",
            "-m",
            "cohort.n_patients=8,400,9,10",
            *TINY,
            "cohort.n_jobs=1",
            *launcher,
            f"hydra.sweep.dir={d}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env(),
        cwd=ROOT,
    )
    job = d / "1" / sweep.JOB
    deadline = time.monotonic() + 120
    while not job.is_file() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert job.is_file(), "job 1 never started"
    os.kill(json.loads(job.read_text())["pid"], signal.SIGKILL)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 1, out
    assert "Traceback" not in out
    table = pd.read_parquet(d / sweep.TABLE).set_index("job")
    assert table.loc[1, "status"] == "failed" and needle in table.loc[1, "error"]
    assert list(table.loc[[0, 2, 3], "status"]) == ["done"] * 3
    assert list(table.loc[[0, 2, 3], "n_patients"]) == [8, 9, 10]


# ------------------------------------------------------------------------------ run directories
def test_a_run_killed_mid_simulation_leaves_nothing_that_looks_finished(tmp_path):
    d = tmp_path / "run"
    first = _emdsim("cohort.n_patients=6", *TINY[:-1], f"hydra.run.dir={d}")
    assert first.returncode == 0, first.stderr
    assert (d / "summary.json").is_file() and (d / "fig_incidence.png").is_file()
    files = json.loads((d / "summary.json").read_text())["files"]
    assert files[-1] == "summary.json" and "fig_incidence.png" in files  # summary written last, after figures
    proc = subprocess.Popen(
        [PY, "-m", "emdsim.cli.main", "cohort.n_patients=3000", "cohort.n_jobs=1", f"hydra.run.dir={d}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=_env(),
        cwd=ROOT,
    )
    deadline = time.monotonic() + 120
    while (d / "summary.json").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)
    proc.kill()
    proc.wait(timeout=60)
    assert not (d / "summary.json").exists(), "the earlier summary still marks the directory as finished"
    assert not list(d.glob("fig_*.png")), "the earlier run's figures sit beside the new configuration"


def test_an_interrupted_write_keeps_the_old_file_and_leaves_no_final_name(tmp_path):
    target = tmp_path / "summary.json"
    atomic_write_text(target, "old\n")

    class Boom(Exception):
        pass

    def failing(tmp: str) -> None:
        Path(tmp).write_text("half")
        raise Boom

    from emdsim.studies.rundir import _atomic

    with pytest.raises(Boom):
        _atomic(target, failing)
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_a_cohort_in_which_nobody_is_diagnosed_says_so(tmp_path):
    d = tmp_path / "run"
    proc = _emdsim("cohort.n_patients=6", *TINY, "clinical.diagnosis_marrow_cells=1e15", f"hydra.run.dir={d}")
    assert proc.returncode == 0, proc.stderr
    assert "6 patients, 0 diagnosed" in proc.stdout and "no patient was diagnosed" in proc.stdout
    summary = json.loads((d / "summary.json").read_text())
    for key in ("ps_at_diagnosis", "em_at_diagnosis", "emd_at_diagnosis", "emd_at_relapse", "em_ever"):
        assert summary[key] is None, key  # null, never 0.0
    incidence = pd.read_parquet(d / "incidence.parquet")
    assert incidence["fraction"].isna().all() and (incidence["n"] == 0).all()


# ------------------------------------------------------------------------------------ YAML, names
def test_a_key_given_twice_is_an_error_naming_the_file_and_line(tmp_path):
    from emdsim.analysis.targets import load_targets

    text = (ROOT / "data" / "targets" / "clinical_targets.yaml").read_text()
    assert "value: 3.4," in text
    dup = text.replace("value: 3.4,", "value: 3.4, value: 4.0,", 1)  # the case that was fitted with 4.0
    path = tmp_path / "targets.yaml"
    path.write_text(dup)
    with pytest.raises(ConfigError, match=r"key 'value' is given twice"):
        load_targets(path)


def test_names_cannot_escape_their_output_folder(tmp_path):
    spec = tmp_path / "escape.yaml"
    spec.write_text((ROOT / "designs" / "tiny.yaml").read_text().replace("name: tiny", "name: ../../escaped"))
    proc = subprocess.run(
        [PY, "-m", "emdsim.cli.design", "run", str(spec), "--dry-run"],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 2 and "design.name='../../escaped' is invalid" in proc.stderr
    assert not (tmp_path.parent / "escaped").exists() and not (tmp_path / "sweeps").exists()


def test_an_invalid_fit_leaves_no_directory(tmp_path):
    spec = tmp_path / "fit.yaml"
    text = (ROOT / "fits" / "incidence.yaml").read_text()
    spec.write_text(text.replace("scenarios:", "scenarios:", 1) + "\n")
    data = __import__("yaml").safe_load(text)
    first = next(iter(data["scenarios"]))
    data["scenarios"][first]["overrides"] = ["spread.nonesuch=1"]
    spec.write_text(__import__("yaml").safe_dump(data))
    out = tmp_path / "fitrun"
    proc = subprocess.run(
        [PY, "-m", "emdsim.cli.fit", "run", str(spec), "--out", str(out)],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert "spread.nonesuch" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()


# ------------------------------------------------------------------------------------- processes
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_killing_emdsim_app_stops_its_server():
    port = _free_port()
    proc = subprocess.Popen(
        [PY, "-m", "emdsim.cli.dashboard", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=_env(),
    )
    try:
        deadline = time.monotonic() + 90
        while not _answers(port) and time.monotonic() < deadline:
            assert proc.poll() is None, "the dashboard exited"
            time.sleep(0.3)
        assert _answers(port), "the dashboard never served"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 10
        while _answers(port) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _answers(port), "a server still answers after emdsim-app was killed"
    finally:
        if proc.poll() is None:
            proc.kill()


# ------------------------------------------------------------------------------------ bad input
@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("finished") / "run"
    proc = _emdsim("cohort.n_patients=6", *TINY, f"hydra.run.dir={d}")
    assert proc.returncode == 0, proc.stderr
    return d


def _copy_run(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for p in src.iterdir():
        if p.is_file():
            (dst / p.name).write_bytes(p.read_bytes())
    return dst


def _case_files(kind: str, run: Path, tmp: Path) -> list[str]:
    """Arguments of one bad-input case (files made in ``tmp``)."""
    if kind == "animate_config_not_yaml":
        d = _copy_run(run, tmp / "r")
        (d / "config.yaml").write_text("anatomy: [unclosed\n")
        return ["emdsim.cli.animate", str(d)]
    if kind == "animate_config_without_anatomy":
        d = _copy_run(run, tmp / "r")
        (d / "config.yaml").write_text("seed: 1\n")
        return ["emdsim.cli.animate", str(d)]
    if kind == "animate_other_columns":
        d = _copy_run(run, tmp / "r")
        pd.DataFrame({"a": [1]}).to_parquet(d / "patients.parquet")
        return ["emdsim.cli.animate", str(d)]
    if kind == "animate_truncated_parquet":
        d = _copy_run(run, tmp / "r")
        data = (d / "snapshots.parquet").read_bytes()
        (d / "snapshots.parquet").write_bytes(data[: len(data) // 2])
        return ["emdsim.cli.animate", str(d)]
    if kind == "report_malformed_job":
        d = tmp / "sw"
        (d / "0").mkdir(parents=True)
        (d / "0" / "job.json").write_text("{not json")
        return ["emdsim.cli.report", str(d)]
    if kind == "report_malformed_plan":
        d = tmp / "sw"
        d.mkdir()
        (d / "sweep.json").write_text("[1, 2]")
        return ["emdsim.cli.report", str(d), "--status"]
    if kind == "report_not_a_sweep":
        d = tmp / "plain"
        d.mkdir()
        (d / "notes.txt").write_text("x")
        return ["emdsim.cli.report", str(d)]
    if kind == "design_unknown_override":
        spec = tmp / "d.yaml"
        text = (ROOT / "designs" / "tiny.yaml").read_text()
        spec.write_text(text.replace("overrides: [", "overrides: [nonesuch.key=3, "))
        return ["emdsim.cli.design", "run", str(spec), "--dry-run", "--out", str(tmp / "out")]
    if kind == "design_duplicate_key":
        spec = tmp / "d.yaml"
        spec.write_text((ROOT / "designs" / "tiny.yaml").read_text() + "n: 8\n")
        return ["emdsim.cli.design", "run", str(spec), "--dry-run", "--out", str(tmp / "out")]
    if kind == "design_too_small":
        spec = tmp / "d.yaml"
        spec.write_text((ROOT / "designs" / "tiny.yaml").read_text().replace("n: 20", "n: 6"))
        return ["emdsim.cli.design", "run", str(spec), "--dry-run", "--out", str(tmp / "out")]
    if kind == "fit_unknown_override":
        import yaml

        spec = tmp / "f.yaml"
        data = yaml.safe_load((ROOT / "fits" / "incidence.yaml").read_text())
        data["overrides"] = [*(data.get("overrides") or []), "nonesuch.key=3"]
        spec.write_text(yaml.safe_dump(data))
        return ["emdsim.cli.fit", "run", str(spec), "--out", str(tmp / "out")]
    if kind == "fit_missing_spec":
        return ["emdsim.cli.fit", "run", str(tmp / "nonesuch.yaml"), "--out", str(tmp / "out")]
    if kind == "fit_report_not_a_fit":
        (tmp / "nofit").mkdir()
        return ["emdsim.cli.fit", "report", str(tmp / "nofit")]
    raise AssertionError(kind)


BAD_RUN_DIR = [  # (case, expected words in the one line)
    ("animate_config_not_yaml", "config.yaml is invalid: a valid run configuration (line"),
    ("animate_config_without_anatomy", "anatomy.nodes"),
    ("animate_other_columns", "patients.parquet"),
    ("animate_truncated_parquet", "snapshots.parquet is invalid"),
    ("report_malformed_job", "job.json is invalid"),
    ("report_malformed_plan", "sweep.json"),
    ("report_not_a_sweep", "a sweep directory"),
    ("design_unknown_override", "nonesuch.key"),
    ("design_duplicate_key", "key 'n' is given twice"),
    ("design_too_small", "design.n=6 is invalid: at least 20 for lhs"),
    ("fit_unknown_override", "nonesuch.key"),
    ("fit_missing_spec", "nonesuch.yaml is invalid"),
    ("fit_report_not_a_fit", "a directory written by `emdsim-fit run`"),
]


@pytest.mark.parametrize(("case", "needle"), BAD_RUN_DIR, ids=[c for c, _ in BAD_RUN_DIR])
def test_bad_files_get_one_line_and_exit_2(finished_run, tmp_path, case, needle):
    args = _case_files(case, finished_run, tmp_path)
    before = _digest(tmp_path)
    proc = subprocess.run([PY, "-m", *args], capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=300)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert needle in lines[0], lines[0]
    assert _digest(tmp_path) == before, "a refused command wrote or changed files"


BAD_ARGS = [  # (argv after `python -m`, expected words)
    (["emdsim.cli.main", "=5"], "an override key=value with a key"),
    (["emdsim.cli.main", "hydra/launcher=nonesuch"], "hydra/launcher='nonesuch' is invalid: must be one of"),
    (["emdsim.cli.main", "figures=maybe"], "figures='maybe' is invalid: true or false"),
    (
        ["emdsim.cli.main", "growth.birth_rate_per_day=1000"],
        "growth.birth_rate_per_day=1000.0 is invalid: allowed [0, 1]",
    ),
    (["emdsim.cli.main", "spread.egress_rate_per_day=1e300"], "allowed [0, 10]"),
    (["emdsim.cli.main", "cohort.n_patients=9000000"], "needs ~"),
    (["emdsim.cli.main", "seed=-1"], "seed=-1 is invalid"),
    (["emdsim.cli.main", "treatment=nonesuch"], "treatment='nonesuch' is invalid"),
    (["emdsim.cli.main", "spread.p_colonization=1e-4"], "did you mean spread.p_colonisation"),
    (["emdsim.cli.animate", "/nonexistent/run"], "is not a finished run directory"),
    (["emdsim.cli.report", "/nonexistent/sweep"], "an existing directory"),
    (["emdsim.cli.trial", "run", "nonesuch", "--tiny"], "NAME='nonesuch' is invalid"),
    (["emdsim.cli.dashboard", "--port", "0"], "--port=0 is invalid"),
]


@pytest.mark.parametrize(("argv", "needle"), BAD_ARGS, ids=[" ".join(a[1:]) for a, _ in BAD_ARGS])
def test_bad_arguments_get_one_line_and_exit_2(tmp_path, argv, needle):
    run_dir = [f"hydra.run.dir={tmp_path / 'run'}"] if argv[0] == "emdsim.cli.main" else []
    proc = subprocess.run(
        [PY, "-m", *argv, *run_dir], capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=300
    )
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert needle in lines[0], lines[0]
    assert not (tmp_path / "run").exists(), "nothing is created before the inputs are validated"


def test_animate_rejects_bad_options_before_rendering(finished_run, tmp_path):
    for args, needle in (
        (["--fps", "0"], "--fps=0 is invalid"),
        (["--fps", "-5"], "--fps=-5 is invalid"),
        (["--out", str(tmp_path / "missing" / "a.gif")], "does not exist"),
    ):
        proc = subprocess.run(
            [PY, "-m", "emdsim.cli.animate", str(finished_run), *args],
            capture_output=True,
            text=True,
            env=_env(),
            timeout=300,
        )
        assert proc.returncode == 2 and needle in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_a_conf_file_with_a_key_given_twice_is_one_line(tmp_path, monkeypatch):
    """conf/ files are read by Hydra's YAML loader, which refuses a duplicated key; that becomes one
    ConfigError naming the file and line, not a traceback."""
    import shutil

    from emdsim.config import load as confload

    conf = tmp_path / "conf"
    shutil.copytree(ROOT / "conf", conf)
    (conf / "experiment" / "dup.yaml").write_text("# @package _global_\nseed: 1\nseed: 2\n")
    monkeypatch.setattr(confload, "CONF_DIR", conf)
    with pytest.raises(
        ConfigError, match=r"dup\.yaml is invalid: a valid configuration file \(line 3: found duplicate"
    ):
        confload.compose(["experiment=dup"])
