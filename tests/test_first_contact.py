"""A newcomer's first hour: help, version, output folders and the quick fit."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {
    "emdsim-design": "emdsim.cli.design",
    "emdsim-fit": "emdsim.cli.fit",
    "emdsim-trial": "emdsim.cli.trial",
    "emdsim-animate": "emdsim.cli.animate",
    "emdsim-report": "emdsim.cli.report",
    "emdsim-app": "emdsim.cli.dashboard",
}


def _run(module: str, *args: str, timeout: float = 120, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=dict(os.environ, HYDRA_FULL_ERROR="0"),
    )


def test_emdsim_help_fits_one_screen_and_names_every_command():
    proc = _run("emdsim.cli.main", "--help")
    assert proc.returncode == 0 and proc.stderr == ""
    lines = proc.stdout.splitlines()
    assert len(lines) <= 40 and max(len(line) for line in lines) <= 110
    assert "powered by Hydra" not in proc.stdout
    assert "extramedullary" in lines[0]  # what the model is, first
    for command in ["emdsim", *COMMANDS]:
        assert f"  {command} " in proc.stdout or f"  {command}\n" in proc.stdout, command
    for words in ("emdsim --cfg job", "config groups", "outputs:", "docs/parameters.md", "exit status 2"):
        assert words in proc.stdout, words


def test_version_names_emdsim_and_its_git_revision():
    from emdsim import __version__

    proc = _run("emdsim.cli.main", "--version")
    assert proc.returncode == 0
    assert proc.stdout.startswith(f"emdsim {__version__} (git ") and "Hydra" not in proc.stdout


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_has_help_with_examples_and_outputs_and_a_version(command):
    proc = _run(COMMANDS[command], "--help")
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert text.startswith(f"usage: {command}")
    assert "examples:" in text and f"  {command}" in text.split("examples:")[1] and "outputs:" in text
    assert "emdsim --help" in text
    assert _run(COMMANDS[command], "--version").stdout.startswith(f"{command} ")


def test_the_quick_fit_spec_is_valid_and_small():
    from emdsim.cli.fit import load_fit_spec

    spec, _ = load_fit_spec(ROOT / "fits" / "quick.yaml")
    simulations = spec.population_size * spec.max_generations
    assert spec.max_walltime_minutes <= 3 and simulations <= 60 and spec.name == "quick"


@pytest.mark.slow
def test_the_quick_fit_runs_reports_and_installs_in_three_minutes(tmp_path):
    """The documented flow: fit -> report -> fitted config -> a run; 42-66 s on 2 cores here
    (slow: `make test` covers the same machinery with the interrupted-fit test of test_fit.py)."""
    conf = ROOT / "conf" / "experiment" / "quick_test.yaml"
    out = tmp_path / "quick"
    start = time.monotonic()
    try:
        proc = _run(
            "emdsim.cli.fit", "run", "fits/quick.yaml", "--out", str(out), "--install", "quick_test", timeout=600
        )
        elapsed = time.monotonic() - start
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        assert elapsed <= 180, f"the quick fit took {elapsed:.0f} s"
        for name in ("fit_report.md", "fitted.yaml", "posterior.parquet", "fit_posterior.png", "fit_predictive.png"):
            assert (out / name).is_file(), name
        assert conf.read_text() == (out / "fitted.yaml").read_text()
        fitted = yaml.safe_load(conf.read_text())
        assert 1e-5 <= fitted["spread"]["p_colonisation"] <= 3e-3
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "emdsim.cli.main",
                "experiment=quick_test",
                "cohort.n_patients=8",
                "cohort.block_size=8",
                "sim.followup_years=1",
                "figures=false",
                f"hydra.run.dir={tmp_path / 'run'}",
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=300,
        )
        assert run.returncode == 0, run.stderr[-2000:]
    finally:
        conf.unlink(missing_ok=True)


def test_run_folders_are_named_by_what_was_changed(tmp_path):
    from emdsim.config.load import _suffix

    assert _suffix("") == ""
    assert _suffix("traits.distributions.cxcr4.level=0.2") == "_traits.distributions.cxcr4.level=0.2"
    long = ",".join(f"spread.w_{i}=1" for i in range(40))
    assert len(_suffix(long)) < 120 and _suffix(long) != _suffix(long + ",x=1")  # cut, still unique
    config = yaml.safe_load((ROOT / "conf" / "config.yaml").read_text())
    assert "override_dirname" in config["hydra"]["run"]["dir"]
