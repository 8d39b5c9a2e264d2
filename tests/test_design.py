"""Sampling designs (SALib): validation, generation, sensitivity estimates and the command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from emdsim import rng as seeds
from emdsim.config.schema import ConfigError, describe_parameters
from emdsim.studies.design import analyse, generate, parse_spec

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def known(make_cfg):
    return {r["field"]: r for r in describe_parameters(make_cfg())}


def _spec(**kw):
    data = {
        "name": "t",
        "method": "morris",
        "n": 4,
        "outputs": ["em_at_diagnosis"],
        "parameters": {
            "spread.p_colonisation": {"lo": 1e-5, "hi": 1e-3, "log": True},
            "spread.beta_cxcr4": {"lo": 0.5, "hi": 4.0},
        },
    }
    data.update(kw)
    return data


@pytest.mark.parametrize(
    "change, field, needle",
    [
        (
            {"parameters": {"spread.p_colonization": {"lo": 0.1, "hi": 0.2}}},
            "design.parameters.spread.p_colonization",
            "did you mean spread.p_colonisation",
        ),
        (
            {"parameters": {"spread.p_colonisation": {"lo": 0.1, "hi": 1.5}}},
            "design.parameters.spread.p_colonisation",
            "allowed interval [0.0, 1.0]",
        ),
        (
            {"parameters": {"spread.beta_cxcr4": {"lo": 2.0, "hi": 2.0}}},
            "design.parameters.spread.beta_cxcr4",
            "non-empty range",
        ),
        (
            {"parameters": {"spread.beta_cxcr4": {"lo": 0.0, "hi": 2.0, "log": True}}},
            "design.parameters.spread.beta_cxcr4",
            "lo > 0 for a log-scale range",
        ),
        ({"parameters": {}}, "design.parameters", "a mapping"),
        ({"method": "halton"}, "design.method", "one of"),
        ({"method": "sobol", "n": 12}, "design.n", "power of 2"),
        ({"method": "lhs", "n": 6}, "design.n", "at least 20 for lhs"),
        ({"outputs": ["em_at_dx"]}, "design.outputs", "one of"),
        ({"overrides": ["spread.beta_cxcr4=1"]}, "design.overrides", "must not fix a parameter"),
        ({"nonsense": 1}, "design.nonsense", "unknown key"),
    ],
)
def test_bad_specs_name_field_value_and_what_is_allowed(known, change, field, needle):
    with pytest.raises(ConfigError) as err:
        parse_spec(_spec(**change), known)
    assert err.value.field_path == field and needle in str(err.value)


@pytest.mark.parametrize("method, n, rows", [("morris", 4, 4 * 3), ("sobol", 8, 8 * 4), ("lhs", 20, 20)])
def test_designs_have_the_documented_size_stay_in_range_and_are_reproducible(known, method, n, rows):
    spec = parse_spec(_spec(method=method, n=n), known)
    a = generate(spec, seeds.stream(1, seeds.DESIGN, 0))
    b = generate(spec, seeds.stream(1, seeds.DESIGN, 0))
    c = generate(spec, seeds.stream(2, seeds.DESIGN, 0))
    assert a.shape == (rows, 2) and list(a.columns) == ["spread.p_colonisation", "spread.beta_cxcr4"]
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)
    assert a["spread.p_colonisation"].between(1e-5, 1e-3).all() and a["spread.beta_cxcr4"].between(0.5, 4.0).all()
    if method == "lhs":  # one point per stratum of each (log-)axis
        strata = np.floor((np.log10(a["spread.p_colonisation"]) + 5) / 2 * n).astype(int)
        assert sorted(strata) == list(range(n))


def _linear(design: pd.DataFrame, spec) -> pd.DataFrame:
    """y = u1 + 2 u2 on the sampled (unit-scaled) axes: variance shares 1/5 and 4/5."""
    u = [(np.log10(design[p.path]) if p.log else design[p.path]) for p in spec.parameters]
    u = [(x - p.bounds()[0]) / (p.bounds()[1] - p.bounds()[0]) for x, p in zip(u, spec.parameters, strict=True)]
    return pd.DataFrame({"em_at_diagnosis": u[0] + 2 * u[1]})


def test_sobol_indices_of_a_linear_model_match_the_variance_shares(known):
    spec = parse_spec(_spec(method="sobol", n=512), known)
    design = generate(spec, seeds.stream(3, seeds.DESIGN, 0))
    table = analyse(spec, design, _linear(design, spec), seeds.stream(3, seeds.DESIGN, 1)).set_index(
        ["parameter", "index"]
    )
    for param, share in (("spread.p_colonisation", 0.2), ("spread.beta_cxcr4", 0.8)):
        for index in ("S1", "ST"):
            value, conf = table.loc[(param, index), ["value", "conf"]]
            assert abs(value - share) <= max(2 * conf, 0.03), (param, index, value, conf)


def test_morris_ranks_the_stronger_parameter_first(known):
    spec = parse_spec(_spec(method="morris", n=10), known)
    design = generate(spec, seeds.stream(4, seeds.DESIGN, 0))
    table = analyse(spec, design, _linear(design, spec), seeds.stream(4, seeds.DESIGN, 1))
    mu = table[table["index"] == "mu_star"].set_index("parameter")["value"]
    # elementary effects of a linear model are exact: 1 and 2 per unit range
    assert mu["spread.p_colonisation"] == pytest.approx(1.0) and mu["spread.beta_cxcr4"] == pytest.approx(2.0)


def test_analysis_refuses_missing_outputs(known):
    spec = parse_spec(_spec(method="lhs", n=20), known)
    design = generate(spec, seeds.stream(5, seeds.DESIGN, 0))
    outputs = _linear(design, spec)
    outputs.loc[2, "em_at_diagnosis"] = np.nan
    with pytest.raises(ValueError, match=r"missing for design rows \[2\]"):
        analyse(spec, design, outputs, seeds.stream(5, seeds.DESIGN, 1))


def _design_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "emdsim.cli.design", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ, HYDRA_FULL_ERROR="0"),
        timeout=600,
        cwd=ROOT,
    )


@pytest.mark.e2e
def test_design_command_runs_rows_through_the_launcher_and_analyses(tmp_path):
    """A 2-trajectory Morris design of tiny.yaml's parameters (6 runs: the LHS needs 20, which
    `make test-slow` runs below) through the joblib launcher, then its indices."""
    spec = yaml.safe_load((ROOT / "designs" / "tiny.yaml").read_text())
    spec.update(method="morris", n=2, name="tiny_morris")
    path = tmp_path / "tiny_morris.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = tmp_path / "tiny"
    proc = _design_cli("run", str(path), "--out", str(out), "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    design = pd.read_parquet(out / "design.parquet")
    table = pd.read_parquet(out / "sweep.parquet")
    assert len(table) == len(design) == 6 and (table["status"] == "done").all()
    for col in design.columns:  # each job ran its own row
        np.testing.assert_allclose(table.sort_values("override.design.row")[f"param.{col}"], design[col])
    assert table["seed"].nunique() == 1  # common random numbers across rows
    sens = pd.read_parquet(out / "sensitivity.parquet")
    assert set(sens["output"]) == {"ps_at_diagnosis", "ps_ever"} and set(sens["index"]) == {"mu_star", "sigma"}
    assert sens.loc[sens["index"] == "mu_star", "value"].notna().all()
    assert (out / "sensitivity.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_the_documented_tiny_lhs_design_runs_and_gives_indices(tmp_path):
    out = tmp_path / "tiny"
    proc = _design_cli(
        "run", "designs/tiny.yaml", "--out", str(out), "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    sens = pd.read_parquet(out / "sensitivity.parquet")
    assert set(sens["index"]) == {"delta", "S1"} and sens["value"].notna().any()


@pytest.mark.e2e
def test_design_command_rejects_a_bad_spec_before_running(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text(
        "name: bad\nmethod: lhs\nn: 20\noutputs: [em_at_diagnosis]\n"
        "parameters:\n  spread.p_colonisation: {lo: 0.5, hi: 2.0}\n"
    )
    proc = _design_cli("run", str(spec), "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "design.parameters.spread.p_colonisation=[0.5, 2.0] is invalid" in proc.stderr
    assert not (tmp_path / "o").exists()
