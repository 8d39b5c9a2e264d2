"""History matching (emdsim.studies.fit.history, .emulate, .match): the implausibility arithmetic, the
emulator against known functions with known noise, the waves on a model with a known truth, resume,
and bad specs."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from emdsim.config.schema import ConfigError
from emdsim.studies.design import ParameterRange
from emdsim.studies.fit import history as hm
from emdsim.studies.fit.emulate import fit_emulator, leave_one_out
from emdsim.studies.fit.match import MatchSpec, Output, emulator_posterior, run_match, verify_posterior
from emdsim.studies.validate import Scenario, ValidationSpec

ROOT = Path(__file__).resolve().parents[1]


def test_implausibility_is_the_distance_in_combined_standard_deviations():
    obs = hm.observation("t", 10.0, 8.04, 11.96, discrepancy=0.1)  # 95 % interval: sd 1.0; discrepancy sd 1.0
    assert obs.obs_var == pytest.approx(1.0, rel=1e-4) and obs.disc_var == pytest.approx(1.0)
    imp = hm.implausibility(np.array([10.0, 13.0, 4.0]), np.array([0.0, 2.0, 7.0]), obs)
    assert imp == pytest.approx([0.0, 3.0 / 2.0, 6.0 / 3.0], rel=1e-4)
    ranged = hm.observation("r", None, 6.0, 20.0, discrepancy=0.1)  # a range: midpoint ± 2 sd
    assert ranged.value == 13.0 and ranged.obs_var == pytest.approx(3.5**2)


def test_max_and_second_max_implausibility():
    obs = {"a": hm.Observation("a", 0.0, 1.0, 0.0), "b": hm.Observation("b", 0.0, 1.0, 0.0)}
    em = {"a": lambda u: (u[:, 0] * 10, np.zeros(len(u))), "b": lambda u: (u[:, 0] * 2, np.zeros(len(u)))}
    u = np.array([[0.5]])
    assert hm.max_implausibility(u, em, obs)[0] == pytest.approx(5.0)
    assert hm.max_implausibility(u, em, obs, second_max=True)[0] == pytest.approx(1.0)


def _smooth(x):
    return 20.0 + 15.0 * np.sin(3.0 * x[:, 0]) + 8.0 * x[:, 1] ** 2


def test_emulator_predicts_a_known_function_within_its_stated_uncertainty():
    """30 noisy runs (sd 1) of a smooth 2-parameter function, on 10 designs: at 400 new points each,
    the truth lies beyond 3 emulator sd in <= 2 % of the 4,000 (a calibrated Gaussian: 0.3 %; the
    measured share is ~0.7 %), and the mean error is below the noise on every design."""
    beyond, rmse = [], []
    for seed in range(10):
        rng = np.random.default_rng(seed)
        x = hm.latin_hypercube(30, 2, rng)
        y = _smooth(x) + rng.normal(0.0, 1.0, 30)
        em = fit_emulator(x, y, np.ones(30), seed=0)
        test = rng.uniform(size=(400, 2))
        mean, var = em.predict(test)
        beyond.append(np.mean(np.abs(_smooth(test) - mean) / np.sqrt(var) > 3.0))
        rmse.append(np.sqrt(np.mean((_smooth(test) - mean) ** 2)))
    assert np.mean(beyond) <= 0.02
    assert max(rmse) < 1.0
    assert em.length_scales.shape == (2,)


def test_leave_one_out_errors_are_standard_normal_for_a_valid_emulator():
    """Standardised LOO errors of a well-specified emulator: mean ~0, sd ~1 (40 points: the sd of the
    sample sd is ~0.11, so [0.6, 1.5] is > 3.5 of them on either side)."""
    rng = np.random.default_rng(2)
    x = hm.latin_hypercube(40, 2, rng)
    y = _smooth(x) + rng.normal(0.0, 1.0, 40)
    em = fit_emulator(x, y, np.ones(40), seed=0)
    e = leave_one_out(x, y, np.ones(40), em)
    assert np.isfinite(e).all()
    assert 0.6 < np.std(e) < 1.5 and abs(np.mean(e)) < 0.6


def test_non_implausible_sampling_keeps_the_region_and_estimates_its_fraction():
    """Region x0 < 0.3: its fraction from 20,000 candidates is 0.3 ± 0.0032 (sd), so ± 0.015 is 4.6 sd."""
    rng = np.random.default_rng(3)
    pts, frac = hm.sample_non_implausible(25, 3, lambda u: u[:, 0] < 0.3, rng)
    assert frac == pytest.approx(0.3, abs=0.015)
    assert pts.shape == (25, 3) and (pts[:, 0] < 0.3).all()
    tiny, frac = hm.sample_non_implausible(10, 2, lambda u: np.hypot(u[:, 0] - 0.5, u[:, 1] - 0.5) < 0.01, rng)
    assert frac < 0.002 and len(tiny) == 10  # a region of 0.03 % of the box is filled by jittering
    assert (np.hypot(tiny[:, 0] - 0.5, tiny[:, 1] - 0.5) < 0.01).all()


def test_noise_variances():
    v = hm.percent_noise_var(np.array([0.0, 50.0, 100.0]), np.array([100, 100, 100]))
    assert v[1] == pytest.approx(25.0) and v[0] > 0.0 and v[2] > 0.0  # never noise-free
    rng = np.random.default_rng(4)
    whole_var = 4.0  # each half has variance 8
    a, b = rng.normal(0, math.sqrt(8), 2000), rng.normal(0, math.sqrt(8), 2000)
    assert hm.split_half_noise_var(a, b) == pytest.approx(whole_var, rel=0.15)  # se of the estimate ~5 %


TRUTH = {"a": 0.3, "b": 0.7}


def _toy_spec(waves: int = 3) -> MatchSpec:
    """Two percent outputs of a known model (below), observed at its value at TRUTH."""
    params = (ParameterRange("a", 0.0, 1.0), ParameterRange("b", 0.0, 1.0))
    outs = []
    for name, f in (("p", _p), ("q", _q)):
        value = f(TRUTH["a"], TRUTH["b"])
        obs = hm.Observation(name, value, 1.0, (0.05 * value) ** 2)
        outs.append(Output(name, name, "toy", "em_at_diagnosis", 0, obs))
    return MatchSpec(name="toy", seed=7, waves=waves, design_points=20, cutoff=3.0, discrepancy=0.05,
                     second_max=False, scale=1.0, min_patients=1, candidates=5000, parameters=params,
                     evidence=ValidationSpec("toy", "fitted", 1, (), {"toy": Scenario("toy", (), 100)}, ()),
                     outputs=tuple(outs))  # fmt: skip


def _p(a, b):
    return 10.0 + 60.0 * a + 5.0 * b


def _q(a, b):
    return 20.0 + 40.0 * b**2


def _toy_mapper(calls: list[int]):
    def mapper(fn, jobs):
        rng = np.random.default_rng(len(calls))
        calls.append(len(jobs))
        for _bases, values, _seeds, _outputs in jobs:
            p, q = _p(values["a"], values["b"]), _q(values["a"], values["b"])
            p, q = p + rng.normal(0, 1.0), q + rng.normal(0, 1.0)
            yield {"p": p, "p|n": 2500.0, "p|a": p, "p|b": p, "q": q, "q|n": 2500.0, "q|a": q, "q|b": q}

    return mapper


def test_waves_shrink_around_the_truth_and_resume(tmp_path):
    """On a known model the non-implausible space shrinks wave by wave and keeps the truth; a rerun
    into the same folder reuses every completed wave (no simulation) and ends in the same space."""
    spec, calls = _toy_spec(), []
    waves = run_match(spec, {}, tmp_path, _toy_mapper(calls))
    fractions = [w.non_implausible_fraction for w in waves]
    assert len(waves) == 3 and calls == [20, 20, 20]
    assert fractions[0] < 0.5 and all(b <= a * 1.05 for a, b in zip(fractions, fractions[1:], strict=False))
    truth = np.array([[TRUTH["a"], TRUTH["b"]]])
    for w in waves:  # the truth is never ruled out
        for name, em in w.emulators.items():
            mean, var = em.predict(truth)
            obs = spec.outputs[0 if name == "p" else 1].observation
            assert hm.implausibility(mean, var, obs)[0] < spec.cutoff
    again_calls: list[int] = []
    again = run_match(spec, {}, tmp_path, _toy_mapper(again_calls))
    assert again_calls == [] and [w.non_implausible_fraction for w in again] == pytest.approx(fractions)
    assert (tmp_path / "wave_3" / "runs.parquet").exists()
    # another seed changes every wave's design and seeds: every wave is simulated again
    other_calls: list[int] = []
    run_match(dataclasses.replace(spec, seed=8), {}, tmp_path, _toy_mapper(other_calls))
    assert other_calls == [20, 20, 20]


def test_the_emulator_posterior_centres_on_the_truth(tmp_path):
    """After the waves, 200 posterior draws of the known model lie around TRUTH: each observation
    pins its parameter to ~±0.03 (sd 1 of the figure plus 5 % discrepancy over slopes of 60 and
    ~56 per unit), so the draws' means are within 0.1 of the truth and their sds below 0.1; the
    importance weights keep an ESS of at least half the draws."""
    spec = _toy_spec()
    waves = run_match(spec, {}, tmp_path, _toy_mapper([]))
    draws, ess, n = emulator_posterior(spec, waves, 200, np.random.default_rng(0))
    assert len(draws) == 200 and n > 200 and ess >= 100
    for name, truth in TRUTH.items():
        assert abs(draws[name].mean() - truth) < 0.1 and draws[name].std() < 0.1


def test_the_adaptive_proposal_states_its_own_density():
    """Importance weights are prior / proposal density, so the proposal must report its density: the
    mean of 1 / q over its draws (0 for those outside the cube, which it drops) estimates the cube's
    volume, 1.  A fitted t in 3-D, half its mass outside the cube; asserted within 3.3 standard
    errors (two-sided ~1 in 1,000)."""
    from emdsim.studies.fit.match import _propose

    rng = np.random.default_rng(3)
    u = rng.normal(0.9, 0.2, size=(500, 3))  # weighted points near a corner
    log_w = -0.5 * ((u - 0.9) ** 2).sum(axis=1)
    n = 40_000
    x, log_q = _propose(u, log_w, n, rng)
    assert 0.05 * n < len(x) < 0.95 * n and np.all((x >= 0) & (x <= 1))
    inv = np.concatenate([np.exp(-log_q), np.zeros(n - len(x))])
    assert abs(inv.mean() - 1.0) < 3.3 * inv.std(ddof=1) / np.sqrt(n)


def test_adaptive_rounds_raise_the_effective_sample_size(tmp_path):
    """On the known model (posterior sd ~0.04 per parameter, ~5 % of the box non-implausible) 4,000
    Latin-hypercube points keep ~210 non-implausible, weighed with an ESS of ~85 (measured over 5
    seeds: 83-95); the adaptive rounds reach ~3,100 (3,122-3,173).  Asserted: >= 10x and > 1,000,
    about the same posterior mean (within 0.02: ~4.5 standard errors of the plain estimate's mean)."""
    spec = _toy_spec()
    waves = run_match(spec, {}, tmp_path, _toy_mapper([]))
    plain, ess_plain, _ = emulator_posterior(spec, waves, 200, np.random.default_rng(0), candidates=4000, rounds=0)
    adapted, ess, _ = emulator_posterior(spec, waves, 200, np.random.default_rng(0), candidates=4000)
    assert ess > 10 * max(ess_plain, 1.0) and ess > 1000
    for name in TRUTH:
        assert abs(adapted[name].mean() - plain[name].mean()) < 0.02


def test_verifying_posterior_draws_by_simulation(tmp_path):
    """Simulated posterior draws of the known model bracket the observations (the 5-95 % range of
    20 draws, with simulation noise sd 1 and posterior sd ~0.03 in each parameter, covers the
    observed value), and the emulators predicted the simulated values within 3 units."""
    spec = _toy_spec()
    waves = run_match(spec, {}, tmp_path, _toy_mapper([]))
    draws, _, _ = emulator_posterior(spec, waves, 200, np.random.default_rng(0))
    calls: list[int] = []
    per_draw, table = verify_posterior(spec, {}, draws, 20, _toy_mapper(calls), waves, np.random.default_rng(1))
    assert calls == [20] and len(per_draw) == 20
    assert table["reported_in_range"].all()
    for name in ("p", "q"):
        assert np.abs(per_draw[name] - per_draw[f"{name}|emulated"]).max() < 3.0


def _covered(draws, truth: dict[str, float]) -> bool:
    """Whether ``truth`` lies in the 95 % credible region of ``draws`` (Gaussian approximation:
    squared Mahalanobis distance from the posterior mean below the chi-square 95 % point)."""
    from scipy.stats import chi2

    names = list(truth)
    x = draws[names].to_numpy()
    diff = np.array([truth[n] for n in names]) - x.mean(axis=0)
    return float(diff @ np.linalg.solve(np.cov(x.T), diff)) <= chi2.ppf(0.95, len(names))


@pytest.mark.slow
def test_coverage_of_the_posterior_on_known_truths(tmp_path):
    """The method's coverage on the known model: 40 random truths, each observed with an error drawn
    from the stated observation and discrepancy variances, matched (2 waves of 15 points) and
    sampled (200 draws). A calibrated posterior covers ~95 % (38 of 40); the assertion, >= 32 (80 %),
    fails by chance with probability ~1e-4 at 95 % coverage and catches coverage of 70 % or less
    (P(>= 32 | 0.7) ~ 0.1). Measured: printed. This checks the emulator and the posterior, not the
    simulator (a simulator-level coverage check is still to do)."""
    rng = np.random.default_rng(2024)
    covered = 0
    for i in range(40):
        truth = {"a": float(rng.uniform(0.15, 0.85)), "b": float(rng.uniform(0.15, 0.85))}
        outs = []
        for name, f in (("p", _p), ("q", _q)):
            value = f(truth["a"], truth["b"])
            obs_var, disc_var = 1.0, (0.05 * value) ** 2
            observed = value + rng.normal(0.0, math.sqrt(obs_var + disc_var))
            outs.append(
                Output(name, name, "toy", "em_at_diagnosis", 0, hm.Observation(name, observed, obs_var, disc_var))
            )
        spec = dataclasses.replace(_toy_spec(waves=2), design_points=15, seed=i, outputs=tuple(outs))
        waves = run_match(spec, {}, tmp_path / str(i), _toy_mapper([]))
        draws, _, _ = emulator_posterior(spec, waves, 200, np.random.default_rng(i))
        covered += _covered(draws, truth) if len(draws) else 0
    print(f"coverage: {covered} of 40")
    assert covered >= 32


def _spec_file(tmp_path: Path, **changes) -> Path:
    data = yaml.safe_load((ROOT / "fits" / "match_quick.yaml").read_text())
    data["evidence"] = str(ROOT / "fits" / "evidence.yaml")
    data.update(changes)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("changes", "names"),
    [
        ({"discrepancy": 0.0}, "match.discrepancy"),
        ({"targets": ["no_such_target"]}, "match.targets"),
        ({"parameters": {"spread.no_such_rate": {"lo": 0.1, "hi": 1.0}}}, "spread.no_such_rate"),
        ({"parameters": {"spread.p_colonisation": {"lo": 0.5, "hi": 2.0}}}, "spread.p_colonisation"),
        ({"waves": 0}, "match.waves"),
        ({"colour": "blue"}, "match.colour"),
        ({"discrepancies": {"ebmt_ps_at_diagnosis": {"value": 0.5}}}, "match.discrepancies.ebmt_ps_at_diagnosis.why"),
        ({"discrepancies": {"usmani_em_at_relapse": {"value": 0.5, "why": "x"}}}, "match.discrepancies.usmani"),
    ],
)
def test_bad_match_specs_are_one_clear_error(tmp_path, changes, names):
    from emdsim.cli.match import load_match_spec

    with pytest.raises(ConfigError) as err:
        load_match_spec(_spec_file(tmp_path, **changes))
    assert names in str(err.value)


@pytest.mark.e2e
def test_a_bad_spec_exits_2_with_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "emdsim.cli.fit", "match", str(_spec_file(tmp_path, discrepancy=-1)), "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "match.discrepancy" in proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()


@pytest.mark.slow
def test_the_quick_match_runs_end_to_end_and_resumes(tmp_path):
    """`emdsim-fit match fits/match_quick.yaml` (2 waves of 16 points on the EBMT cohort, under a minute on
    2 cores) writes its summary, tables and figures; run again into the same folder, it simulates
    nothing new (every wave resumes) and gives the same non-implausible fractions."""
    import json

    out = tmp_path / "run"
    command = [sys.executable, "-m", "emdsim.cli.fit", "match", "fits/match_quick.yaml", "--out", str(out)]
    first = subprocess.run([*command, "--verify", "4"], capture_output=True, text=True, cwd=ROOT)
    assert first.returncode == 0, first.stderr[-2000:]
    summary = json.loads((out / "fit_summary.json").read_text())
    assert summary["waves"] == 2 and summary["n_simulations"] == 32 and summary["verified_draws"] == 4
    assert all(0.0 < f <= 1.0 for f in summary["non_implausible_fraction"])
    from emdsim.cli.match import POSTERIOR_DRAWS

    assert summary["posterior_draws"] == POSTERIOR_DRAWS >= 100
    assert summary["ess_final"] >= POSTERIOR_DRAWS / 2  # the goal, met by the adaptive rounds
    for name in ("loo.parquet", "posterior.parquet", "predictive.parquet", "sobol.parquet", "match_loo.png",
                 "match_posterior.png", "match_sobol.png"):  # fmt: skip
        assert (out / name).stat().st_size > 0, name
    assert set(summary["sobol_total_max"]) == set(summary["parameters"])
    assert set(summary["insensitive_parameters"]) <= set(summary["parameters"])
    again = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert again.returncode == 0 and "design points simulated" not in again.stdout
    assert json.loads((out / "fit_summary.json").read_text())["non_implausible_fraction"] == pytest.approx(
        summary["non_implausible_fraction"]
    )


@pytest.mark.slow
def test_coverage_with_the_simulator_on_known_truths(tmp_path):
    """The fit's coverage with emdsim itself (issue 19: >= 10 known parameter sets): for each of 10
    random truths of the quick spec's two parameters (the inner 60 % of the prior box), the EBMT
    figures at diagnosis are simulated at the truth on a seed of their own and taken as the report
    (its variance: the binomial noise of that cohort; discrepancy 5 %), then matched (2 waves of 16
    points) and sampled (200 draws). A calibrated posterior covers the truth ~95 % of the time; the
    assertion, >= 7 of 10, fails by chance with probability ~1e-3 at 95 % coverage and catches
    coverage of ~60 % or less. Measured: printed."""
    from emdsim.cli.match import load_match_spec, scenario_bases
    from emdsim.studies.fit.match import simulate_point

    spec, _ = load_match_spec(ROOT / "fits" / "match_quick.yaml")
    bases = scenario_bases(spec)
    rng = np.random.default_rng(11)
    covered = 0
    for i in range(10):
        truth_u = rng.uniform(0.2, 0.8, size=len(spec.parameters))
        truth = hm.to_values(truth_u[None, :], spec.parameters)[0]
        seeds = {s: int(rng.integers(2**62)) for s in spec.scenarios}
        observed = simulate_point((bases, truth, seeds, list(spec.outputs)))
        outs = []
        for o in spec.outputs:
            value = observed[o.name]
            obs_var = float(hm.percent_noise_var(np.array([value]), np.array([observed[f"{o.name}|n"]]))[0])
            outs.append(dataclasses.replace(o, observation=hm.Observation(o.name, value, obs_var, (0.05 * value) ** 2)))
        run = dataclasses.replace(spec, seed=100 + i, outputs=tuple(outs))
        waves = run_match(run, bases, tmp_path / str(i), lambda fn, jobs: map(fn, jobs))
        draws, _, _ = emulator_posterior(run, waves, 200, np.random.default_rng(i))
        u = {f"u{j}": float(truth_u[j]) for j in range(len(spec.parameters))}
        covered += _covered(draws, u) if len(draws) else 0
    print(f"simulator coverage: {covered} of 10")
    assert covered >= 7


def _square(x: int) -> int:
    return x * x


@pytest.mark.e2e
def test_the_shipped_fit_is_a_posterior_with_its_representative_draw_inside():
    """The shipped fit: ``conf/experiment/fitted_draws.parquet`` is the committed match's
    posterior (>= 100 draws of every parameter of fits/match_wide.yaml, inside its prior box), its
    summary meets the goals (ESS >= half the draws, <= 30 min), and ``experiment=fitted`` (one
    representative draw) lies inside the draws' range in every parameter."""
    import json

    from emdsim.cli.match import load_match_spec
    from emdsim.config.load import compose, select_values

    spec, _ = load_match_spec(ROOT / "fits" / "match_wide.yaml")
    draws = pd.read_parquet(ROOT / "conf" / "experiment" / "fitted_draws.parquet")
    summary = json.loads((ROOT / "fits" / "runs" / "match-local-2026-11-30" / "fit_summary.json").read_text())
    paths = [p.path for p in spec.parameters]
    assert len(draws) == summary["posterior_draws"] >= 100 and summary["parameters"] == paths
    assert summary["ess_final"] >= len(draws) / 2 and summary["wall_minutes"] <= 30
    fitted = select_values(compose(["experiment=fitted"]), paths)
    for p in spec.parameters:
        x = draws[p.path]
        assert x.between(p.lo, p.hi).all(), p.path
        value = float(fitted[p.path])
        assert x.min() <= value <= x.max(), (p.path, value)


def test_the_dask_local_cluster_runs_jobs_in_order():
    """`--dask local`: the design points go to a Dask LocalCluster of --n-procs workers, and come back
    in the order of the jobs (the wave's table pairs each row with its design point)."""
    import argparse

    from emdsim.cli.match import _mapper

    mapper, close = _mapper(argparse.Namespace(dask="local", n_procs=2))
    try:
        assert list(mapper(_square, list(range(12)))) == [x * x for x in range(12)]
    finally:
        close()


@pytest.mark.e2e
@pytest.mark.parametrize("cluster", ["local", "debug"])
def test_submitit_runs_a_wave_as_job_arrays_in_order(tmp_path, cluster):
    """`--submitit local|debug` (`slurm` on a cluster): the design points go out as submitit job arrays,
    --n-procs at a time off Slurm, and come back in the order of the jobs, each job's pickles and logs
    in OUT/submitit; a job that raises fails the map with its error, it is not dropped (`debug` opens the
    debugger there instead)."""
    import argparse
    import math

    from emdsim.cli.match import _mapper

    args = argparse.Namespace(submitit=cluster, dask=None, n_procs=2, timeout_min=5, slurm_partition=None)
    mapper, close = _mapper(args, tmp_path)
    try:
        assert list(mapper(abs, [-3, 1, -2, 5, -7])) == [3, 1, 2, 5, 7]
        if cluster == "local":
            assert any((tmp_path / "submitit").glob("*_result.pkl"))
            with pytest.raises(Exception, match="math domain error"):
                list(mapper(math.sqrt, [4.0, -1.0]))
    finally:
        close()


def test_a_mixed_scenario_is_matched_part_by_part_and_pooled():
    """The Czech registry's parts (transplanted on VTD-ASCT, the others on VMP) get their share of the
    matched cohort, each its own configuration; a design point runs part k on the scenario's seed +
    k x PART_SEED_STRIDE and measures the pooled cohort."""
    from types import SimpleNamespace

    from emdsim.cli.match import load_match_spec, scenario_bases
    from emdsim.studies.fit.match import simulate_point
    from emdsim.studies.validate import PART_SEED_STRIDE

    spec, _ = load_match_spec(ROOT / "fits" / "match.yaml")
    bases = scenario_bases(spec)
    czech = bases["czech"]
    assert [c.treatment.name for c in czech] == ["vtd_asct", "vmp"]
    assert sum(c.cohort.n_patients for c in czech) == spec.n_patients("czech")
    assert all(c.scenario.accrual_years == 12.0 for c in czech) and len(bases["ebmt"]) == 1
    # the EBMT cohort is read only at diagnosis, so its courses stop there; the others are followed
    assert bases["ebmt"][0].sim.followup_years == 0.0 and all(c.sim.followup_years == 12.0 for c in czech)
    seen = []

    def fake_run(cfg):  # a tenth of each part has EMD recorded at a later line's start
        seen.append(cfg.seed)
        n = cfg.cohort.n_patients
        later = np.where(np.arange(n) < n // 10, 100.0, np.nan)
        patients = pd.DataFrame(
            {"patient_id": np.arange(n), "diagnosed": True, "emd_at_diagnosis": False, "emd_at_later_line_days": later}
        )
        return SimpleNamespace(patients=patients, lesions=pd.DataFrame(columns=["patient_id"]))

    outputs = [o for o in spec.outputs if o.scenario == "czech" and o.statistic == "secondary_emd_at_line_start"]
    out = simulate_point((bases, {}, {"czech": 5}, outputs), run=fake_run)
    assert seen == [5, 5 + PART_SEED_STRIDE]
    sizes = [c.cohort.n_patients for c in czech]
    assert out[f"{outputs[0].name}|n"] == sum(sizes)
    assert out[outputs[0].name] == pytest.approx(100.0 * sum(n // 10 for n in sizes) / sum(sizes))


def test_sobol_indices_on_emulators_find_what_moves_each_output():
    """Effect: on emulators of y = 10 a (b inert) and y = a + b (additive, equal), the total indices
    are ~(1, 0) and ~(0.5, 0.5), first-order ~ total (no interaction); a parameter that moves no
    output is reported as one the evidence cannot identify. Deterministic (seeded design, emulator
    and Saltelli sample); the tolerance, 0.08, is ~4x the estimators' bootstrap half-width here."""
    from types import SimpleNamespace

    from emdsim.studies.fit.emulate import fit_emulator
    from emdsim.studies.fit.match import WaveResult, emulator_sobol, insensitive_parameters

    u = hm.latin_hypercube(40, 2, np.random.default_rng(3))
    noise = np.full(40, 1e-4)
    emulators = {
        "only_a": fit_emulator(u, 10.0 * u[:, 0], noise),
        "a_plus_b": fit_emulator(u, u[:, 0] + u[:, 1], noise),
    }
    wave = WaveResult(1, u, pd.DataFrame(), emulators, {}, math.nan, 0.0)
    spec = SimpleNamespace(parameters=[SimpleNamespace(path="a"), SimpleNamespace(path="b")])
    s = emulator_sobol(spec, wave, n=1024, seed=1).set_index(["output", "parameter"])
    assert s.loc[("only_a", "a"), "ST"] == pytest.approx(1.0, abs=0.08)
    assert s.loc[("only_a", "b"), "ST"] == pytest.approx(0.0, abs=0.08)
    for p in ("a", "b"):
        assert s.loc[("a_plus_b", p), "ST"] == pytest.approx(0.5, abs=0.08)
        assert s.loc[("a_plus_b", p), "S1"] == pytest.approx(s.loc[("a_plus_b", p), "ST"], abs=0.08)
    assert insensitive_parameters(s.reset_index()) == []
    assert insensitive_parameters(s.reset_index().query("output == 'only_a'")) == ["b"]
