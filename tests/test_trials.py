"""In-silico trials: the registry is valid, comparisons are paired, and every trial runs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from emdsim.cli.trial import load_registry, main
from emdsim.config.schema import ConfigError
from emdsim.studies.trials import compare, parse_trial

pytestmark = pytest.mark.e2e  # end to end: `make test-fast` leaves it out

REGISTRY = load_registry()


def test_registry_covers_the_six_questions():
    assert len(REGISTRY) == 6
    for spec in REGISTRY.values():
        assert spec["question"].endswith("?") or "knock-down" in spec["question"]
        assert spec["reference"] in spec["arm_names"] and spec["limits"].strip()


def test_paired_comparison_uses_replicate_differences():
    # arm b = arm a + 0.1 in every replicate, with large between-replicate spread
    rng = np.random.default_rng(0)
    base = rng.normal(0.5, 0.2, size=6)
    frame = pd.DataFrame(
        {
            "status": "done",
            "override.seed": list(range(6)) * 2,
            "arm": ["a"] * 6 + ["b"] * 6,
            "x": np.concatenate([base, base + 0.1]),
        }
    )
    table = compare(frame, "arm", "a", ["x"], order=["a", "b"]).set_index("arm")
    assert table.loc["b", "difference"] == pytest.approx(0.1)
    assert table.loc["b", "lower"] == pytest.approx(0.1) and table.loc["b", "upper"] == pytest.approx(0.1)
    assert table.loc["a", "mean"] == pytest.approx(base.mean()) and table.loc["b", "n_pairs"] == 6


def test_the_effect_over_parameter_draws_is_the_spread_of_per_draw_effects():
    """With draws, each draw's effect is the paired difference averaged over its seeds (here 0, 1, 2
    and 3 for draws 0-3, seed noise cancelling within each draw), and the table gives the 5th and 95th
    percentiles of those effects beside the t interval of their mean."""
    rng = np.random.default_rng(1)
    rows = []
    for k, effect in enumerate([0.0, 1.0, 2.0, 3.0]):
        for seed, noise in zip(range(1, 4), (-0.5, 0.0, 0.5), strict=True):
            level = rng.normal(10.0, 2.0)  # shared by both arms of a (draw, seed) pair
            for arm, x in (("a", level), ("b", level + effect + noise)):
                rows.append({"status": "done", "replicate": f"{k}:{seed}", "draw": k, "arm": arm, "x": x})
    table = compare(pd.DataFrame(rows), "arm", "a", ["x"], replicate="replicate", draw="draw").set_index("arm")
    b = table.loc["b"]
    assert b["difference"] == pytest.approx(1.5) and b["n_pairs"] == 12 and b["n_draws"] == 4
    assert b["draws_5"] == pytest.approx(np.percentile([0, 1, 2, 3], 5))
    assert b["draws_95"] == pytest.approx(np.percentile([0, 1, 2, 3], 95))
    assert "draws_5" not in compare(pd.DataFrame(rows), "arm", "a", ["x"], replicate="replicate")


@pytest.mark.parametrize(
    "change, field",
    [
        ({"reference": "nobody"}, "trials.x.reference"),
        ({"arms": ["vrd_asct", "no_such_plan"]}, "trials.x.arms"),
        ({"replicates": 1}, "trials.x.replicates"),
        ({"config": "missing"}, "trials.x.config"),
    ],
)
def test_bad_trials_are_rejected(change, field):
    entry = {
        "question": "q?",
        "config": "fitted",
        "arm_group": "treatment",
        "arms": ["vrd_asct", "vtd_asct"],
        "reference": "vrd_asct",
        "replicates": 2,
        "n_patients": 4,
        "metrics": ["em_ever"],
        **change,
    }
    groups = {"treatment": ["vrd_asct", "vtd_asct"], "experiment": ["fitted"]}
    with pytest.raises(ConfigError) as err:
        parse_trial("x", entry, groups)
    assert err.value.field_path == field


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_trial_runs_on_a_tiny_cohort(name, tmp_path):
    out = tmp_path / name
    with pytest.raises(SystemExit) as exit_:
        main(["run", name, "--tiny", "--in-process", "--out", str(out)])
    assert exit_.value.code == 0
    spec = REGISTRY[name]
    table = pd.read_csv(out / "comparison.csv")
    assert set(table["arm"].astype(str)) == {str(a) for a in spec["arm_names"]}
    assert set(table["metric"]) <= set(spec["metrics"]) and len(set(table["metric"])) >= 1
    readme = (out / "README.md").read_text()
    assert spec["question"] in readme and "## Limits" in readme and f"emdsim-trial run {name}" in readme
    assert (out / "comparison.png").read_bytes()[:4] == b"\x89PNG"


def test_the_old_command_name_still_works_with_a_note(capsys):
    """``emdsim-experiment`` (the name before 0.2) runs ``emdsim-trial`` after one line on stderr."""
    from emdsim.cli.trial import deprecated_main

    with pytest.raises(SystemExit) as stop:
        deprecated_main(["list"])
    out = capsys.readouterr()
    assert stop.value.code in (0, None)
    assert "renamed emdsim-trial" in out.err and "q2_allo_vs_auto:" in out.out


def _draws_file(tmp_path, rates):
    path = tmp_path / "draws.parquet"
    pd.DataFrame({"spread.p_colonisation": rates, "log_likelihood": [0.0] * len(rates)}).to_parquet(path)
    return path


@pytest.mark.parametrize("name", ["q2_allo_vs_auto", "q6_knockdowns"])
def test_a_trial_propagates_parameter_draws(name, tmp_path):
    """--draws: every arm runs on each draw and seed (arms x draws x seeds jobs); a replicate is a
    (draw, seed) pair, paired across the arms; a parameter-set arm keeps its own values over the
    draw's, and the draw's parameter reaches every job."""
    import yaml

    out = tmp_path / name
    draws = _draws_file(tmp_path, [2e-4, 1e-3, 5e-3])
    with pytest.raises(SystemExit) as exit_:
        main(["run", name, "--tiny", "--in-process", "--out", str(out), "--draws", str(draws), "--n-draws", "2"])
    assert exit_.value.code == 0
    spec = REGISTRY[name]
    n_arms = len(spec["arm_names"])
    frame = pd.read_parquet(out / "sweep" / "sweep.parquet")
    assert len(frame) == n_arms * 2 * 2 and (frame["status"] == "done").all()  # arms x 2 draws x 2 seeds
    table = pd.read_csv(out / "comparison.csv")
    compared = table[table["arm"].astype(str) != str(spec["reference"])]
    # 2 draws x 2 seeds = 4 pairs where the tiny cohorts measured the metric at all (a median not reached: 0)
    assert (compared["n_pairs"] <= 4).all() and compared["n_pairs"].max() == 4
    seen = set()
    for d in frame["dir"]:
        cfg = yaml.safe_load((out / "sweep" / d / "config.yaml").read_text())
        seen.add(cfg["spread"]["p_colonisation"])
    assert seen == {2e-4, 5e-3}  # 2 of the 3 draws, evenly spaced through them
    design = pd.read_parquet(out / "design.parquet")
    assert len(design) == (2 if spec.get("arm_group") else n_arms * 2)
    assert "--draws" in (out / "README.md").read_text()


def test_bad_draws_are_one_clear_error(tmp_path):
    from emdsim.cli.trial import _draws

    args = type("A", (), {"draws": _draws_file(tmp_path, [1e-3]), "n_draws": 5})()
    with pytest.raises(ConfigError) as err:
        _draws(args)
    assert err.value.field_path == "--n-draws"
    args.draws, args.n_draws = tmp_path / "none.parquet", None
    with pytest.raises(ConfigError):
        _draws(args)
