"""``benchmarks/entries.py`` counts the entries the compiled pass visits: every occupied entry of a
stepping patient falls in exactly one class, and the step's own function is left as it was."""

from __future__ import annotations

import pytest

from emdsim.engine import schedule

TINY = ["cohort.n_patients=8", "cohort.block_size=8", "sim.max_years_to_diagnosis=4"]


@pytest.fixture(scope="module")
def tool(benchmark_script):
    return benchmark_script("entries")


@pytest.mark.parametrize("max_step", [7, 28])
def test_every_entry_is_counted_once_and_the_step_is_restored(tool, max_step):
    before = schedule._advance  # noqa: SLF001
    res = tool.count_entries([*TINY, f"sim.max_step_days={max_step}"], patients=8, years=2)
    assert schedule._advance is before  # noqa: SLF001
    counts = res["counts"]
    classes = [
        f"{kind} {clones} {size}"
        for kind in tool.KINDS
        for clones in ("founder", "mutant")
        for size in ("large", "small")
    ]
    assert counts["entries"] > 0
    assert sum(counts.get(c, 0) for c in classes) == counts["entries"]
    # an occupied compartment holds at least one entry (a cured patient may step with none)
    nodes = sum(counts[f"{kind} nodes"] for kind in tool.KINDS)
    assert 0 < nodes <= counts["entries"]
    if max_step == 7:  # weekly steps only
        assert res["weeks_per_step"] == 1.0 and res["long_step_share"] == 0.0
    else:
        assert res["weeks_per_step"] > 1.0 and 0.0 < res["long_step_share"] < 1.0
