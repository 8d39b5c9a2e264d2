"""Architecture rules: layers stay apart, no global random state, no registry hosts in the repo."""

from __future__ import annotations

import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "emdsim"
CLI_LAYER = {"cli.py", "callbacks.py", "confload.py", "paramdoc.py"}
#: modules that may draw figures or fit: none of the simulator core imports them
CORE = {"_jit.py", "analysis.py", "anatomy.py", "kernels.py", "cohort.py", "engine.py", "model.py", "niches.py", "outcomes.py", "patients.py", "rates.py",
        "rng.py", "spread.py", "summary.py", "traits.py", "treatment.py", "rundir.py", "tasks.py"}


def _sources():
    return {p.relative_to(SRC).as_posix(): p.read_text() for p in SRC.rglob("*.py")}


def test_nothing_below_the_cli_imports_hydra_or_omegaconf():
    for name, text in _sources().items():
        if name not in CLI_LAYER:
            assert not re.search(r"^\s*(import|from)\s+(hydra|omegaconf)\b", text, re.M), name


def test_no_global_random_state():
    pattern = re.compile(r"np\.random\.(?!default_rng|SeedSequence|Generator)\w+\(|^\s*import random\b|random\.seed\(",
                         re.M)
    for name, text in _sources().items():
        assert not pattern.search(text), name


def test_simulator_never_imports_plotting_or_fitting():
    for name, text in _sources().items():
        if name in CORE:
            assert not re.search(r"^\s*(import|from)\s+(matplotlib|pyabc|SALib|emdsim\.viz|emdsim\.fit)\b", text,
                                 re.M), name


def test_no_registry_hosts_or_lock_files_in_repo():
    root = SRC.parents[1]
    assert not (root / "uv.lock").exists() and not (root / "poetry.lock").exists()
