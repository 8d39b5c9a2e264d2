"""Shared fixtures: configurations composed exactly as the command line composes them."""

from __future__ import annotations

import functools
import os
import re
import uuid

import numpy as np
import pytest

from emdsim.config.load import load

#: a short, small cohort for tests: 3 years of follow-up after diagnosis
SMALL = ("cohort.n_patients=16", "cohort.block_size=16", "sim.followup_years=3", "sim.max_years_to_diagnosis=6")


@functools.lru_cache(maxsize=64)
def _load(overrides: tuple[str, ...]):
    return load(list(overrides))


@pytest.fixture(scope="session")
def benchmark_script():
    """``benchmark_script("process_cycles")`` -> the module ``benchmarks/process_cycles.py`` (the
    benchmarks are scripts, not a package)."""
    import importlib.util
    from pathlib import Path

    def load_script(name: str):
        path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load_script


@pytest.fixture(scope="session", autouse=True)
def compiled_kernels(tmp_path_factory):
    """Both engines' compiled kernels are in the cache before the first test runs.

    In a fresh clone the first cohort compiles them (measured 2026-12-03: the exact engine's ~1
    minute, the hybrid's ~4 since its draws are called rather than inlined, 8-15 before, each on one
    core). Left to the tests, each
    test worker compiled its own copy at once, and a command-line run started by a test compiled a
    third beside them: on 2 cores that took over the 900 s guard of ``tests/test_cli.py`` (a fresh
    clone, 2026-12-03). Here each engine is compiled by one worker under its own lock, shared by the
    workers (``tmp_path_factory``'s root): the first worker starts with the hybrid engine, the second
    with the exact one, so two cores compile the two at once; a worker that takes a lock after the
    other finds that engine cached, as does every process a test starts. numba writes its cache files
    atomically (a temporary file, then a rename), so the functions both engines share may be compiled
    twice but are never read half-written. Where both are already cached this costs two directory
    scans."""
    from filelock import FileLock

    from emdsim.cohort.run import run_cohort
    from emdsim.engine.jit import kernels_cached

    engines = ["hybrid", "exact"]
    if all(kernels_cached(e) for e in engines):
        return
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    if int(re.sub(r"\D", "", worker) or 0) % 2:
        engines.reverse()
    root = tmp_path_factory.getbasetemp().parent
    tiny = ("cohort.n_patients=2", "cohort.block_size=2", "cohort.n_jobs=1", "sim.followup_years=1")
    for engine in engines:
        with FileLock(str(root / f"emdsim-compile-{engine}.lock")):
            if not kernels_cached(engine):
                run_cohort(_load((*tiny, "sim.max_years_to_diagnosis=2", f"engine={engine}")))


@pytest.fixture
def make_cfg():
    """``make_cfg("spread.egress_rate_per_day=0", ...)`` -> validated EmdConfig (cached, treat as read-only)."""

    def make(*overrides: str, small: bool = True):
        return _load(tuple(SMALL if small else ()) + tuple(overrides))

    return make


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


# --------------------------------------------------------------------------- no process left behind
#: a command line that runs emdsim: `python -m emdsim...`, a console script, the dashboard's server
_RUNS_EMDSIM = re.compile(r"-m emdsim\b|/bin/emdsim(-[a-z]+)?( |$)|emdsim\.dashboard:page")
#: every process this test session starts inherits this token (set before xdist starts its workers),
#: so an emdsim process started outside the suite (a user's run beside it) is never counted
_TOKEN = "EMDSIM_TEST_SESSION"
os.environ.setdefault(_TOKEN, uuid.uuid4().hex)


def _emdsim_processes() -> dict[int, str]:
    """Processes started by this test session whose command line runs emdsim."""
    from pathlib import Path

    marker = f"{_TOKEN}={os.environ[_TOKEN]}".encode()
    found = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if not _RUNS_EMDSIM.search(cmd) or int(entry.name) == os.getpid():
                continue
            if marker not in (entry / "environ").read_bytes().split(b"\0"):
                continue
        except OSError:
            continue
        found[int(entry.name)] = cmd.strip()
    return found


def pytest_sessionstart(session):
    session.config._emdsim_before = _emdsim_processes()  # noqa: SLF001 - our own attribute


def pytest_sessionfinish(session, exitstatus):
    """The suite leaves no emdsim process running (a dashboard server, a sweep job): any process it
    started that is still alive at the end is listed, killed, and fails the run."""
    import signal
    import sys
    import time

    if hasattr(session.config, "workerinput") or not os.path.isdir("/proc"):
        return  # xdist workers: the controller checks once for all of them
    before = getattr(session.config, "_emdsim_before", {})
    deadline = time.monotonic() + 10.0
    left = {}
    while time.monotonic() < deadline:  # a process being terminated gets a moment to end
        left = {pid: cmd for pid, cmd in _emdsim_processes().items() if pid not in before}
        if not left:
            return
        time.sleep(0.5)
    for pid, cmd in left.items():
        print(f"\nleft behind by the test suite: pid {pid}: {cmd}", file=sys.stderr)
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    session.exitstatus = 1
