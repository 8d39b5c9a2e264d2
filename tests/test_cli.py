"""The command-line contract: files, summary keys, determinism and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from emdsim.cohort.outcomes import PATIENT_COLUMNS

pytestmark = pytest.mark.e2e  # end to end: `make test-fast` leaves it out

EMDSIM = [sys.executable, "-m", "emdsim.cli.main"]
SMALL = ["cohort.n_patients=6", "cohort.block_size=8", "sim.followup_years=2", "sim.max_years_to_diagnosis=5"]
SUMMARY_KEYS = {
    "n_patients",
    "seed",
    "em_at_diagnosis",
    "ps_at_diagnosis",
    "emd_at_diagnosis",
    "em_at_relapse",
    "ps_at_relapse",
    "emd_at_relapse",
    "sites_at_diagnosis",
    "sites_at_relapse",
    "median_pfs_months",
    "median_os_months",
}


#: a guard against a hung run, not a speed test. Since 2026-12-03 the suite compiles the kernels
#: before its first test (``conftest.compiled_kernels``), so a run here loads them from the cache;
#: before, a fresh clone's first run compiled them beside both test workers (over 300 s on 2 cores
#: on 2026-11-30, over 900 s under load on 2026-12-03)
RUN_TIMEOUT_S = 900


def _run(args, run_dir: Path):
    env = dict(os.environ, HYDRA_FULL_ERROR="0")
    return subprocess.run(
        EMDSIM + list(args) + [f"hydra.run.dir={run_dir}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=RUN_TIMEOUT_S,
    )


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("run")
    proc = _run(SMALL + ["seed=5"], d)
    assert proc.returncode == 0, proc.stderr
    return d, proc


def test_run_writes_the_contract_files(default_run):
    d, proc = default_run
    for name in (
        "config.yaml",
        "provenance.json",
        "patients.parquet",
        "lesions.parquet",
        "summary.json",
        "snapshots.parquet",
        "fig_incidence.png",
        "fig_sites.png",
        "fig_survival.png",
        "fig_cumulative_incidence.png",
    ):
        assert (d / name).is_file(), name
    assert str(d) in proc.stdout
    summary = json.loads((d / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(summary)
    assert summary["n_patients"] == 6 and summary["seed"] == 5
    for key in (
        "em_at_diagnosis",
        "ps_at_diagnosis",
        "emd_at_diagnosis",
        "em_at_relapse",
        "ps_at_relapse",
        "emd_at_relapse",
    ):
        assert summary[key] is None or 0.0 <= summary[key] <= 1.0  # None: no patient in the denominator
    assert summary["emd_at_diagnosis"] >= max(summary["em_at_diagnosis"], summary["ps_at_diagnosis"])
    prov = json.loads((d / "provenance.json").read_text())
    assert prov["seed"] == 5 and prov["package_version"] and "git_revision" in prov
    assert prov["seed_sequence_entropy"] == 5
    cfg = yaml.safe_load((d / "config.yaml").read_text())
    assert cfg["seed"] == 5 and cfg["cohort"]["n_patients"] == 6 and "hydra" not in cfg
    patients = pd.read_parquet(d / "patients.parquet")
    assert len(patients) == 6 and list(patients.columns) == list(PATIENT_COLUMNS)
    assert {
        "em_at_diagnosis",
        "ps_at_diagnosis",
        "sites_at_relapse",
        "pfs_days",
        "os_days",
        "high_risk",
        "treatment",
    } <= set(patients.columns)


def test_same_seed_same_patients_different_seed_different(default_run, tmp_path):
    d, _ = default_run
    again = _run(SMALL + ["seed=5", "figures=false"], tmp_path / "a")
    other = _run(SMALL + ["seed=6"], tmp_path / "b")
    assert again.returncode == 0 and other.returncode == 0
    first = pd.read_parquet(d / "patients.parquet")
    pd.testing.assert_frame_equal(first, pd.read_parquet(tmp_path / "a" / "patients.parquet"))
    assert not first.equals(pd.read_parquet(tmp_path / "b" / "patients.parquet"))
    assert not (tmp_path / "a" / "fig_incidence.png").exists() and (tmp_path / "b" / "fig_incidence.png").exists()


def test_mesa_engine_from_the_command_line(tmp_path):
    proc = _run(["engine=mesa", "cohort.n_patients=2", "sim.followup_years=1"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert len(pd.read_parquet(tmp_path / "patients.parquet")) == 2


@pytest.mark.parametrize(
    "override,needle",
    [
        ("cohort.n_patients=-5", "cohort.n_patients"),
        ("cohort.n_patients=abc", "cohort.n_patients"),
        ("spread.p_colonisation=1.5", "spread.p_colonisation"),
        ("growth.birth_rate_per_day=-1", "growth.birth_rate_per_day"),
        ("scenario=nonexistent", "scenario"),
        ("anatomy=nonexistent", "anatomy"),
        ("cohort.nonexistent_key=1", "nonexistent_key"),
        ("+spread.nonexistent_key=1", "spread.nonexistent_key"),
        ("anatomy.nodes.27.share=0", "reachable from the blood"),
    ],
)
def test_bad_input_is_one_clear_message(tmp_path, override, needle):
    proc = _run(SMALL + [override], tmp_path)
    assert proc.returncode != 0
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not (tmp_path / "summary.json").exists()
    assert not (tmp_path / "patients.parquet").exists()
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / ".hydra").exists()  # nothing is made for a run that cannot start


def test_a_single_run_composes_its_configuration_once(tmp_path, monkeypatch):
    """``@hydra.main`` composes twice (run mode, then the run) and a check before it a third time;
    a plain run is composed once, validated once, and then run by Hydra's job runner (.hydra/ and
    main.log as before)."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    import emdsim.cli.main as main_module
    from emdsim.cli.main import run_in_process
    from emdsim.config.load import to_config

    calls = []
    original = ConfigLoaderImpl.load_configuration

    def counted(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ConfigLoaderImpl, "load_configuration", counted)
    converted = []
    monkeypatch.setattr(main_module, "to_config", lambda cfg: converted.append(1) or to_config(cfg))
    assert run_in_process([*SMALL, "figures=false", f"hydra.run.dir={tmp_path}"]) == 0
    assert len(calls) == 1
    assert len(converted) == 1  # checked before the run directory exists, not converted again by the task
    assert (tmp_path / "summary.json").is_file() and (tmp_path / "main.log").is_file()
    assert yaml.safe_load((tmp_path / ".hydra" / "overrides.yaml").read_text())[0] == SMALL[0]


def test_a_command_process_tunes_the_collector_and_still_runs_every_exit_handler(tmp_path):
    """Importing the command layer raises the collector's oldest-generation threshold and, at exit,
    freezes the collector's objects (no final passes over them); nothing is frozen while a command
    runs, and exit handlers registered after the layer's (logging, worker pools) still run."""
    mark = tmp_path / "mark"
    code = f"""
import atexit, gc, pathlib
import emdsim.cli
print(gc.get_threshold()[2], gc.get_freeze_count())
atexit.register(pathlib.Path({str(mark)!r}).write_text, "ran")
atexit._run_exitfuncs()
print(gc.get_freeze_count())
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    threshold, frozen_while_running, frozen_at_exit = map(int, done.stdout.split())
    assert threshold >= 100 and frozen_while_running == 0
    assert frozen_at_exit > 0 and mark.read_text() == "ran"


def test_a_command_process_runs_one_blas_thread_unless_the_user_chose():
    """OpenBLAS's threads spin after they start (~0.1 CPU-s each): a command's process loads numpy's
    and scipy's OpenBLAS with one thread, and a user's own choice is left as it is."""
    code = (
        "import os, emdsim.cli, numpy, scipy.linalg, threadpoolctl; "
        "print(os.environ.get('OPENBLAS_NUM_THREADS'), "
        "sorted({i['num_threads'] for i in threadpoolctl.threadpool_info() if i['internal_api'] == 'openblas'}))"
    )
    chosen_by = ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS")
    env = {k: v for k, v in os.environ.items() if k not in chosen_by}
    ours = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout.strip() == "1 [1]"
    for name in chosen_by:
        kept = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env={**env, name: "2"}
        )
        assert kept.stdout.split()[0] == ("2" if name == "OPENBLAS_NUM_THREADS" else "None")


def test_atomic_files_get_the_permissions_of_a_plain_write(tmp_path):
    """Results are written through a private temporary file but end up as readable as ``open()``
    would leave them (under the process's umask), not 0600."""
    from emdsim.studies.rundir import atomic_write_parquet, atomic_write_text

    atomic_write_text(tmp_path / "a.txt", "x")
    atomic_write_parquet(tmp_path / "b.parquet", pd.DataFrame({"x": [1]}))
    (tmp_path / "plain.txt").write_text("x")
    plain = (tmp_path / "plain.txt").stat().st_mode & 0o777
    for name in ("a.txt", "b.parquet"):
        assert (tmp_path / name).stat().st_mode & 0o777 == plain, name
    assert not list(tmp_path.glob(".*.tmp"))
