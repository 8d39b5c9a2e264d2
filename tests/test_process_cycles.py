"""``benchmarks/process_cycles.py`` patches a copy of the hybrid pass by exact text: these tests keep
it in step with the pass's source (a change there fails here, not in a benchmark run weeks later)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tool(benchmark_script):
    return benchmark_script("process_cycles")


def test_every_patch_applies_once_to_the_current_pass(tool, tmp_path):
    """Each patch's text occurs exactly once in engine/hybrid.py, the patched copy parses, it reads the
    counter at each process boundary, and the sources in src/ are untouched."""
    before = (ROOT / "src" / "emdsim" / "engine" / "hybrid.py").read_text()
    tool.patched_copy(tmp_path)
    patched = (tmp_path / "src" / "emdsim" / "engine" / "hybrid.py").read_text()
    ast.parse(patched)
    assert patched.count("_rdtsc()") >= len(tool.PROCESSES) + 4
    for i in range(len(tool.PROCESSES)):
        assert f"w.prof[{i}] +=" in patched
    assert (ROOT / "src" / "emdsim" / "engine" / "hybrid.py").read_text() == before
    assert (tmp_path / "conf").resolve() == (ROOT / "conf").resolve()


def test_a_changed_pass_is_one_clear_line(tool, tmp_path, monkeypatch):
    monkeypatch.setattr(tool, "PATCHES", [("text that is not in the pass\n", "x\n"), *tool.PATCHES])
    with pytest.raises(SystemExit) as err:
        tool.patched_copy(tmp_path)
    message = str(err.value)
    assert "\n" not in message and "engine/hybrid.py" in message and "text that is not in the pass" in message


def test_the_report_shares_the_counted_ticks(tool):
    """Shares are of the ticks counted in the nine processes (they sum to 100 %), per patient-step
    figures divide by the patient-steps counted, and the entry counts by theirs; each process's ticks
    split into those of long steps (per long step) and the rest (per short step)."""
    prof = [0.0] * 64
    prof[:9] = [10, 60, 430, 170, 10, 170, 85, 15, 50]
    prof[9] = 10.0  # patient-steps
    prof[10], prof[11], prof[12], prof[13] = 250.0, 250.0 * 400, 290.0, 290.0 * 200
    prof[14], prof[15], prof[16], prof[17], prof[18] = 37.0, 600.0, 36.0, 3.6e7, 7.2e4
    prof[30] = 4.0  # of the 10 patient-steps, 4 long ones
    prof[26], prof[27] = 400.0, 8.0  # small populations week by week: their ticks, and how many
    for i in range(9):
        prof[50 + i] = prof[i] / 2.0  # half of each process's ticks in the long steps
    rec = tool.report(prof, 1.0, 500, [])
    assert rec["long_steps"] == 4
    assert rec["long_step_ticks_per_patient_step"]["small_populations_by_dt_days"] == 40
    assert rec["small_populations_by_dt_days_per_long_step"] == 2.0
    assert rec["ticks_per_long_step_by_process"]["grow"] == round(430 / 2 / 4)
    assert rec["ticks_per_short_step_by_process"]["grow"] == round(430 / 2 / 6)
    assert sum(rec["share_percent"].values()) == pytest.approx(100.0, abs=0.5)
    assert rec["share_percent"]["grow"] == pytest.approx(43.0)
    assert rec["ticks_per_patient_step"] == 100
    assert rec["small_entries_per_patient_step"] == 25.0 and rec["grow_core_ticks_small"] == 400
    assert rec["grow_core_ticks_large"] == 200
    assert rec["settled_cells_per_split"]["marrow"] == pytest.approx(1e6)
