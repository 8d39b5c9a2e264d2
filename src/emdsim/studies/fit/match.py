"""History matching against the whole validation spec, in waves (``emdsim-fit match``).

A match spec names the validation spec whose cohorts and targets it uses (``evidence:
fits/evidence.yaml``), the parameters with their prior ranges, and the waves (design points, cutoff,
model discrepancy).  Every numeric target of the validation spec is emulated; sites and
associations are not (they are scored afterwards, by ``emdsim-fit validate``).  Each wave writes
its design and its simulated statistics atomically under ``wave_<k>/``: an interrupted match resumes
from the last completed wave, refitting that wave's emulators from its stored runs (the fit is
deterministic for a seed).  The posterior inside the final space comes from the last wave's
emulators by adaptive importance sampling (:func:`emulator_posterior`).

No Hydra and no figures here: the caller composes each scenario's configuration and passes a
``map`` (a process pool's, a Dask client's) that runs :func:`simulate_point` on many points.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emdsim.analysis.evidence import STATISTICS, measure, stops_at_diagnosis
from emdsim.cohort.run import run_cohort
from emdsim.config.schema import ConfigError, EmdConfig
from emdsim.studies.design import ParameterRange, parse_range
from emdsim.studies.fit import history as hm
from emdsim.studies.fit.emulate import Emulator, fit_emulator, leave_one_out
from emdsim.studies.fit.objective import with_parameters
from emdsim.studies.rundir import atomic_write_parquet, atomic_write_text
from emdsim.studies.validate import Scored, ValidationSpec, part_seed, pool

__all__ = [
    "MatchSpec",
    "Output",
    "parse_match_spec",
    "outputs_of",
    "simulate_point",
    "run_match",
    "WaveResult",
    "loo_table",
    "emulator_sobol",
    "insensitive_parameters",
    "sobol_total_max",
    "non_implausible_sample",
    "emulator_posterior",
    "verify_posterior",
    "ADAPT_ROUNDS",
]

NUMERIC = ("percent", "months", "years", "pair_months")


@dataclass(frozen=True)
class Output:
    """One emulated number: a target's statistic (or one number of a pair) on its scenario."""

    name: str
    target: str
    scenario: str
    statistic: str
    index: int
    observation: hm.Observation


@dataclass(frozen=True)
class MatchSpec:
    name: str
    seed: int
    waves: int
    design_points: int
    cutoff: float
    discrepancy: float
    second_max: bool
    scale: float
    min_patients: int
    candidates: int
    parameters: tuple[ParameterRange, ...]
    evidence: ValidationSpec
    outputs: tuple[Output, ...]
    #: overrides of every simulation after the evidence's (e.g. ``sim.followup_years=0``: stop at diagnosis)
    overrides: tuple[str, ...] = ()

    def n_patients(self, scenario: str) -> int:
        """The simulated cohort of a scenario: ``scale`` times the validation's, at least ``min_patients``."""
        return max(self.min_patients, int(round(self.scale * self.evidence.scenarios[scenario].n_patients)))

    @property
    def scenarios(self) -> list[str]:
        return sorted({o.scenario for o in self.outputs})


def outputs_of(targets: Iterable[Scored], discrepancy: float) -> list[Output]:
    """The emulated numbers of the numeric targets (a pair of medians gives two)."""
    out = []
    for s in targets:
        if s.statistic is None or STATISTICS[s.statistic].kind not in NUMERIC:
            continue
        t = s.target
        values = t.value if isinstance(t.value, list) else [t.value]
        lows = s.lower if isinstance(s.lower, list) else [s.lower]
        highs = s.upper if isinstance(s.upper, list) else [s.upper]
        for i, (v, lo, hi) in enumerate(zip(values, lows, highs, strict=True)):
            name = t.name if len(values) == 1 else f"{t.name}[{i}]"
            value = None if v is None else float(v)
            obs = hm.observation(name, value, float(lo), float(hi), discrepancy)
            out.append(Output(name, t.name, str(s.scenario), str(s.statistic), i, obs))
    return out


def parse_match_spec(
    data: Mapping[str, Any], evidence: ValidationSpec, known: Mapping[str, Mapping[str, Any]]
) -> MatchSpec:
    """A validated match spec; a :class:`ConfigError` names the first bad entry."""
    allowed = {"name", "evidence", "seed", "waves", "design_points", "cutoff", "discrepancy", "discrepancies",
               "second_max", "scale", "min_patients", "candidates", "parameters", "targets", "overrides"}  # fmt: skip
    for key in data:
        if key not in allowed:
            raise ConfigError(f"match.{key}", data[key], f"unknown key; allowed {sorted(allowed)}")

    def number(key: str, default: float, lo: float, hi: float, kind: type = float) -> Any:
        v = data.get(key, default)
        bad_type = isinstance(v, bool) or not isinstance(v, int | float)
        if bad_type or not (lo <= v <= hi) or (kind is int and v != int(v)):
            raise ConfigError(f"match.{key}", v, f"a{'n integer' if kind is int else ' number'} in [{lo}, {hi}]")
        return kind(v)

    params = tuple(
        parse_range(f"match.parameters.{path}", str(path), prior, known)
        for path, prior in (data.get("parameters") or {}).items()
    )
    if not params:
        raise ConfigError("match.parameters", data.get("parameters"), "at least one parameter to match")
    discrepancy = number("discrepancy", 0.1, 0.0, 10.0)
    if discrepancy <= 0.0:
        raise ConfigError("match.discrepancy", discrepancy, "a positive model discrepancy (a fraction of the value)")
    chosen = data.get("targets")
    scored = list(evidence.targets)
    if chosen is not None:
        names = {s.target.name for s in scored}
        for name in chosen:
            if name not in names:
                raise ConfigError("match.targets", name, f"a target of the validation spec {sorted(names)}")
        scored = [s for s in scored if s.target.name in set(chosen)]
    per_target = data.get("discrepancies") or {}
    if not isinstance(per_target, Mapping):
        raise ConfigError("match.discrepancies", per_target, "a mapping {target: {value: sd fraction, why: reason}}")
    known_targets = {s.target.name for s in scored}
    special: dict[str, float] = {}
    for name, m in per_target.items():
        where = f"match.discrepancies.{name}"
        if name not in known_targets:
            raise ConfigError(where, name, f"a matched target {sorted(known_targets)}")
        value = m.get("value") if isinstance(m, Mapping) else None
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 < value <= 10.0:
            raise ConfigError(f"{where}.value", value, "a positive model discrepancy (a fraction of the value) <= 10")
        if not str(m.get("why") or "").strip():
            raise ConfigError(f"{where}.why", m.get("why"), "the reason this target's discrepancy differs")
        special[name] = float(value)
    outputs = tuple(o for s in scored for o in outputs_of([s], special.get(s.target.name, discrepancy)))
    if not outputs:
        raise ConfigError("match.targets", chosen, "at least one numeric target (a percentage or a median)")
    design_points = number("design_points", 10 * len(params), len(params) + 3, 100_000, int)
    return MatchSpec(
        name=str(data.get("name") or "match"),
        seed=number("seed", 0, 0, 2**63 - 1, int),
        waves=number("waves", 3, 1, 50, int),
        design_points=design_points,
        cutoff=number("cutoff", 3.0, 0.5, 10.0),
        discrepancy=discrepancy,
        second_max=bool(data.get("second_max", False)),
        scale=number("scale", 0.25, 1e-4, 10.0),
        min_patients=number("min_patients", 100, 1, 10_000_000, int),
        candidates=number("candidates", 20_000, 100, 10_000_000, int),
        parameters=params,
        evidence=evidence,
        outputs=outputs,
        overrides=tuple(str(o) for o in data.get("overrides") or ()),
    )


def _half(patients: pd.DataFrame, lesions: pd.DataFrame, parity: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    return patients[patients["patient_id"] % 2 == parity], lesions[lesions["patient_id"] % 2 == parity]


def simulate_point(
    job: tuple[Mapping[str, Sequence[EmdConfig]], Mapping[str, float], Mapping[str, int], Sequence[Output]],
    run: Callable[[EmdConfig], Any] = run_cohort,
) -> dict[str, float]:
    """Simulate one design point (``job``: each scenario's base configurations, one per part of a
    mixed scenario, part k on the scenario's seed + k x PART_SEED_STRIDE and the parts pooled; the
    parameter values, each scenario's seed, the outputs) and measure every output: ``{name: value, name + "|n": the
    patients it was measured on, name + "|a", name + "|b": its value on each half of the cohort}``.
    The halves (for the split-half noise of medians) are measured only for outputs that are not
    percentages (whose noise is binomial), and each statistic once per cohort, however many of its
    numbers are outputs (a pair of medians)."""
    bases, values, seeds, outputs = job
    out: dict[str, float] = {}
    for scenario in sorted({o.scenario for o in outputs}):
        parts = []
        for k, base in enumerate(bases[scenario]):
            res = run(with_parameters(base, values, seed=part_seed(seeds[scenario], k)))
            parts.append((res.patients, res.lesions))
        out |= _measure([o for o in outputs if o.scenario == scenario], *pool(parts))
    return out


def _measure(outputs: Sequence[Output], patients: pd.DataFrame, lesions: pd.DataFrame) -> dict[str, float]:
    """The outputs of one cohort (see :func:`simulate_point`)."""
    cohorts = {"": (patients, lesions)}
    if any(STATISTICS[o.statistic].kind != "percent" for o in outputs):
        cohorts |= {"a": _half(patients, lesions, 0), "b": _half(patients, lesions, 1)}
    measured: dict[tuple[str, str], Any] = {}
    out: dict[str, float] = {}
    for o in outputs:
        split = STATISTICS[o.statistic].kind != "percent"
        for part in ("", "a", "b") if split else ("",):
            if (o.statistic, part) not in measured:
                measured[o.statistic, part] = measure(o.statistic, *cohorts[part])
        m = measured[o.statistic, ""]
        out[o.name] = _number(m.value, o.index)
        out[f"{o.name}|n"] = float(m.n)
        for part in ("a", "b"):
            out[f"{o.name}|{part}"] = _number(measured[o.statistic, part].value, o.index) if split else math.nan
    return out


def _number(value: Any, index: int) -> float:
    v = value[index] if isinstance(value, list) else value
    v = float(v) if v is not None else math.nan
    return v if math.isfinite(v) else math.nan


@dataclass
class WaveResult:
    wave: int
    design: np.ndarray  # (n, d) unit cube
    runs: pd.DataFrame
    emulators: dict[str, Emulator]
    noise: dict[str, np.ndarray]
    non_implausible_fraction: float
    seconds: float


def _noise(spec: MatchSpec, runs: pd.DataFrame) -> dict[str, np.ndarray]:
    """Each output's noise variance at each design point: binomial for percentages, the pooled
    split-half estimate for medians."""
    out = {}
    for o in spec.outputs:
        if STATISTICS[o.statistic].kind == "percent":
            out[o.name] = hm.percent_noise_var(runs[o.name].to_numpy(), runs[f"{o.name}|n"].to_numpy())
        else:
            v = hm.split_half_noise_var(runs[f"{o.name}|a"].to_numpy(), runs[f"{o.name}|b"].to_numpy())
            out[o.name] = np.full(len(runs), v if math.isfinite(v) else 1.0)
    return out


def _emulate(spec: MatchSpec, u: np.ndarray, runs: pd.DataFrame, wave: int) -> tuple[dict, dict]:
    noise = _noise(spec, runs)
    emulators = {}
    for o in spec.outputs:
        y = runs[o.name].to_numpy(dtype=float)
        if np.isfinite(y).sum() >= u.shape[1] + 3:
            emulators[o.name] = fit_emulator(u, y, noise[o.name], seed=spec.seed + wave)
    return emulators, noise


def _predictors(spec: MatchSpec, w: WaveResult) -> dict[str, Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]]:
    """Each output's prediction for the implausibility: the emulator's mean, and its variance plus
    the simulation noise of one cohort at that mean.  The noise enters because a wave's design
    points share their seeds (common random numbers): the emulated surface is that of one draw of
    the cohort's patients, off the expected value by about one cohort's noise, the same way at every
    point, so the nugget does not average it out (measured: posterior draws re-simulated on other
    seeds gave Usmani EM at diagnosis 5.9-8.7 % where the emulators of their wave said 5.2-5.7)."""
    kinds = {o.name: STATISTICS[o.statistic].kind for o in spec.outputs}
    out = {}
    for name, em in w.emulators.items():
        if kinds[name] == "percent":
            n = float(np.nanmedian(w.runs[f"{name}|n"].to_numpy(dtype=float)))
            out[name] = _with_noise(em, lambda mean, n=n: hm.percent_noise_var(mean, np.full(len(mean), n)))
        else:
            level = float(np.nanmedian(w.noise[name]))
            out[name] = _with_noise(em, lambda mean, level=level: np.full(len(mean), level))
    return out


def _with_noise(em: Emulator, noise: Callable[[np.ndarray], np.ndarray]):
    def predict(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean, var = em.predict(u)
        return mean, var + noise(mean)

    return predict


def _accept(spec: MatchSpec, waves: Sequence[WaveResult]) -> Callable[[np.ndarray], np.ndarray]:
    observations = {o.name: o.observation for o in spec.outputs}

    per_wave = [_predictors(spec, w) for w in waves]  # once, not at every call

    def accept(u: np.ndarray) -> np.ndarray:
        keep = np.ones(len(u), dtype=bool)
        for predictors in per_wave:
            keep &= hm.max_implausibility(u, predictors, observations, second_max=spec.second_max) < spec.cutoff
        return keep

    return accept


def _wave_key(spec: MatchSpec, wave: int, u: np.ndarray, seeds: Mapping[str, int]) -> str:
    """What a wave's simulations depend on: its design points, seeds, cohorts and outputs (a wave's
    design also carries every earlier wave and the implausibility settings).  A stored wave with
    another key is simulated again."""
    text = repr(
        (
            wave,
            np.round(u, 12).tolist(),
            sorted(seeds.items()),
            [(p.path, p.lo, p.hi, p.log) for p in spec.parameters],
            {
                s: (spec.n_patients(s), spec.evidence.scenarios[s].overrides, spec.evidence.scenarios[s].parts)
                for s in spec.scenarios
            },
            spec.evidence.overrides,
            spec.evidence.experiment,
            spec.overrides,
            [(o.name, o.scenario, o.statistic) for o in spec.outputs],
            [s for s in spec.scenarios if stops_at_diagnosis(o.statistic for o in spec.outputs if o.scenario == s)],
        )
    )
    return hashlib.sha256(text.encode()).hexdigest()


def _read_key(wdir: Path) -> str | None:
    path = wdir / "key.txt"
    return path.read_text().strip() if path.exists() else None


def run_match(
    spec: MatchSpec,
    bases: Mapping[str, Sequence[EmdConfig]],
    out: Path,
    mapper: Callable[[Callable[..., dict[str, float]], list[Any]], Iterable[dict[str, float]]],
    *,
    progress: Callable[[str], None] = lambda _line: None,
) -> list[WaveResult]:
    """Run (or resume) the waves; each wave's ``design.parquet``, ``runs.parquet`` and ``key.txt`` are
    written atomically under ``out/wave_<k>/``.  A wave whose stored key matches (the same design,
    seeds, cohorts and outputs: :func:`_wave_key`) is complete and is not simulated again; its
    emulators are refitted from its runs (deterministic for the spec's seed)."""
    rng = np.random.default_rng(np.random.SeedSequence(spec.seed))
    d = len(spec.parameters)
    waves: list[WaveResult] = []
    for k in range(1, spec.waves + 1):
        t0 = time.monotonic()
        wdir = out / f"wave_{k}"
        accept = _accept(spec, waves)
        if k == 1:
            u = hm.latin_hypercube(spec.design_points, d, rng)
        else:
            u, fraction_before = hm.sample_non_implausible(
                spec.design_points, d, accept, rng, candidates=spec.candidates
            )
            waves[-1].non_implausible_fraction = fraction_before
            if len(u) < d + 3:
                progress(f"wave {k}: only {len(u)} non-implausible points found; stopping")
                break
        seeds = {s: int(rng.integers(2**62)) for s in spec.scenarios}  # common random numbers in a wave
        key = _wave_key(spec, k, u, seeds)
        if (wdir / "runs.parquet").exists() and _read_key(wdir) == key:
            runs = pd.read_parquet(wdir / "runs.parquet")
            u = runs[[f"u{j}" for j in range(d)]].to_numpy()
            progress(f"wave {k}: resumed from {wdir / 'runs.parquet'} ({len(runs)} points)")
        else:
            values = hm.to_values(u, spec.parameters)
            design = pd.DataFrame(u, columns=[f"u{j}" for j in range(d)]).assign(
                **{p.path: [v[p.path] for v in values] for p in spec.parameters}
            )
            wdir.mkdir(parents=True, exist_ok=True)
            (wdir / "runs.parquet").unlink(missing_ok=True)  # another spec's wave: rerun it
            (wdir / "key.txt").unlink(missing_ok=True)
            atomic_write_parquet(wdir / "design.parquet", design)
            jobs = [(dict(bases), v, seeds, list(spec.outputs)) for v in values]
            rows = []
            for i, row in enumerate(mapper(simulate_point, jobs), start=1):
                rows.append(row)
                progress(f"wave {k}: {i}/{len(jobs)} design points simulated")
            runs = pd.concat([design, pd.DataFrame(rows)], axis=1)
            atomic_write_parquet(wdir / "runs.parquet", runs)
            atomic_write_text(wdir / "key.txt", key)
        emulators, noise = _emulate(spec, u, runs, k)
        waves.append(WaveResult(k, u, runs, emulators, noise, math.nan, time.monotonic() - t0))
        progress(f"wave {k}: {len(emulators)} emulators fitted")
    if waves:
        _, waves[-1].non_implausible_fraction = hm.sample_non_implausible(
            1, d, _accept(spec, waves), rng, candidates=spec.candidates
        )
    return waves


#: a parameter whose total Sobol index stays below this for every output moves none of them: the
#: evidence cannot identify it (it keeps its sourced value in a fit)
INSENSITIVE_ST = 0.05


def emulator_sobol(spec: MatchSpec, wave: WaveResult, n: int = 1024, seed: int = 0) -> pd.DataFrame:
    """First-order and total Sobol indices of every emulated output over the prior box, on the emulator
    means of ``wave`` (Saltelli's scheme with ``n`` base points, SALib; no simulation).

    The first wave is the one to screen with: its space-filling design covers the whole prior box,
    where later waves' emulators are fitted inside the shrinking non-implausible space only. The box
    is the unit cube, uniform: each parameter's prior (log-uniform for a ``log`` range). One row per
    (output, parameter) with ``S1``, ``S1_conf``, ``ST``, ``ST_conf`` (95 % bootstrap half-widths); an
    output its emulator predicts as constant gets NaN."""
    from SALib.analyze import sobol as sobol_analyze
    from SALib.sample import sobol as sobol_sample

    names = [p.path for p in spec.parameters]
    problem = {"num_vars": len(names), "names": names, "bounds": [[0.0, 1.0]] * len(names)}
    u = sobol_sample.sample(problem, n, calc_second_order=False, seed=seed)
    rows = []
    for output, em in wave.emulators.items():
        y, _ = em.predict(u)
        if np.ptp(y) <= 1e-12 * max(1.0, float(np.abs(y).max())):
            res = {k: np.full(len(names), np.nan) for k in ("S1", "S1_conf", "ST", "ST_conf")}
        else:
            res = sobol_analyze.analyze(problem, y, calc_second_order=False, seed=seed)
        rows += [
            {"output": output, "parameter": p, "S1": float(res["S1"][j]), "S1_conf": float(res["S1_conf"][j]),
             "ST": float(res["ST"][j]), "ST_conf": float(res["ST_conf"][j])}
            for j, p in enumerate(names)
        ]  # fmt: skip
    return pd.DataFrame(rows, columns=["output", "parameter", "S1", "S1_conf", "ST", "ST_conf"])


def sobol_total_max(sobol: pd.DataFrame) -> dict[str, float]:
    """Each parameter's largest total index over the outputs."""
    return (
        {str(p): float(v) for p, v in sobol.groupby("parameter", sort=False)["ST"].max().items()} if len(sobol) else {}
    )


def insensitive_parameters(sobol: pd.DataFrame, threshold: float = INSENSITIVE_ST) -> list[str]:
    """Parameters whose total index is below ``threshold`` for every output (the evidence cannot
    identify them)."""
    return [p for p, st in sobol_total_max(sobol).items() if not st >= threshold]


def loo_table(spec: MatchSpec, waves: Sequence[WaveResult]) -> pd.DataFrame:
    """Leave-one-out standardised errors of every emulator of every wave (one row per point)."""
    rows = []
    for w in waves:
        for name, em in w.emulators.items():
            y = w.runs[name].to_numpy(dtype=float)
            e = leave_one_out(w.design, y, w.noise[name], em)
            mean, var = em.predict(w.design)
            rows += [
                {"wave": w.wave, "output": name, "point": i, "simulated": y[i], "predicted": mean[i],
                 "sd": math.sqrt(var[i] + w.noise[name][i]), "standardised_error": e[i]}
                for i in range(len(y))
            ]  # fmt: skip
    return pd.DataFrame(rows)


def non_implausible_sample(
    spec: MatchSpec, waves: Sequence[WaveResult], n: int, rng: np.random.Generator
) -> pd.DataFrame:
    """``n`` space-filling points of the final non-implausible space, as parameter values."""
    u, _ = hm.sample_non_implausible(n, len(spec.parameters), _accept(spec, waves), rng, candidates=spec.candidates)
    values = hm.to_values(u, spec.parameters) if len(u) else []
    return pd.DataFrame(values, columns=[p.path for p in spec.parameters])


#: rounds of adaptive importance sampling after the Latin-hypercube round (population Monte Carlo,
#: Cappe et al. 2004, J Comput Graph Stat 13:907): each proposes from a Student-t fitted to the
#: previous round's weighted points
ADAPT_ROUNDS = 2
#: the proposal's degrees of freedom (heavier tails than a Gaussian, so the weights stay bounded where
#: the posterior is wider than the fitted shape)
PROPOSAL_DF = 5.0
#: the proposal's share drawn uniformly from the prior box ("defensive" importance sampling,
#: Hesterberg 1995, Technometrics 37:185): a bound on every weight wherever the t misses the posterior
DEFENSIVE = 0.1


def _log_likelihood(spec: MatchSpec, waves: Sequence[WaveResult]) -> Callable[[np.ndarray], np.ndarray]:
    """The log likelihood of the reported figures at unit-cube points: Gaussian for each emulated output,
    with the implausibility's variances (reported + discrepancy + emulator + one cohort's noise)."""
    observations = {o.name: o.observation for o in spec.outputs}
    predictors = _predictors(spec, waves[-1])

    def loglik(u: np.ndarray) -> np.ndarray:
        out = np.zeros(len(u))
        for name, predict in predictors.items():
            obs = observations[name]
            mean, var = predict(u)
            total = obs.obs_var + obs.disc_var + var
            out += -0.5 * (obs.value - mean) ** 2 / total - 0.5 * np.log(total)
        return out

    return loglik


def _ess(log_w: np.ndarray) -> float:
    w = np.exp(log_w - log_w.max())
    return float(w.sum() ** 2 / np.sum(w**2))


def _propose(u: np.ndarray, log_w: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points from the defensive mixture fitted to the weighted points ``u`` (a Student-t with
    their weighted mean and covariance, :data:`DEFENSIVE` of it uniform on the cube), and the log of
    the mixture's density at each; points outside the cube are dropped (the prior is zero there)."""
    from scipy.stats import multivariate_t

    d = u.shape[1]
    w = np.exp(log_w - log_w.max())
    mean = np.average(u, axis=0, weights=w)
    cov = np.atleast_2d(np.cov(u.T, aweights=w)) + 1e-6 * np.eye(d)  # a jitter keeps it positive definite
    t = multivariate_t(loc=mean, shape=cov * (PROPOSAL_DF - 2.0) / PROPOSAL_DF, df=PROPOSAL_DF)  # its covariance
    n_t = int(rng.binomial(n, 1.0 - DEFENSIVE))
    x = np.vstack([np.atleast_2d(t.rvs(size=n_t, random_state=rng)).reshape(n_t, d), rng.uniform(size=(n - n_t, d))])
    x = x[np.all((x >= 0.0) & (x <= 1.0), axis=1)]
    log_q = np.logaddexp(np.log(DEFENSIVE), np.log1p(-DEFENSIVE) + t.logpdf(x).reshape(len(x)))
    return x, log_q


def emulator_posterior(
    spec: MatchSpec,
    waves: Sequence[WaveResult],
    n_draws: int,
    rng: np.random.Generator,
    *,
    candidates: int = 50_000,
    rounds: int = ADAPT_ROUNDS,
) -> tuple[pd.DataFrame, float, int]:
    """Posterior draws from the emulators of the last wave (not yet checked by simulation).

    Prior uniform on the sampled scale, zero where any wave rules the point out; likelihood
    :func:`_log_likelihood`.  Adaptive importance sampling: ``candidates`` Latin-hypercube points of
    the prior box, then ``rounds`` rounds of ``candidates`` points from a defensive Student-t mixture
    fitted to the previous round (:func:`_propose`), each weighted by likelihood x prior / proposal;
    ``n_draws`` systematic resamples of the last round.  Returns the draws (parameter values, their
    unit-cube point and log likelihood), the effective sample size of the last round's importance
    weights (Kish: (sum w)^2 / sum w^2) and the points it weighted (non-implausible)."""
    d = len(spec.parameters)
    accept = _accept(spec, waves)
    loglik = _log_likelihood(spec, waves)
    pool = hm.latin_hypercube(candidates, d, rng, optimise=False)
    pool = pool[accept(pool)]
    if len(pool) == 0:
        return pd.DataFrame(columns=[p.path for p in spec.parameters]), 0.0, 0
    ll = loglik(pool)
    log_w = ll.copy()  # uniform proposal = prior
    for _ in range(rounds):
        if len(pool) < d + 2:
            break
        x, log_q = _propose(pool, log_w, candidates, rng)
        keep = accept(x)
        if keep.sum() < d + 2:
            break
        pool, ll = x[keep], loglik(x[keep])
        log_w = ll - log_q[keep]
    w = np.exp(log_w - log_w.max())
    w /= w.sum()
    positions = (rng.uniform() + np.arange(n_draws)) / n_draws  # systematic resampling
    idx = np.minimum(np.searchsorted(np.cumsum(w), positions), len(pool) - 1)
    values = hm.to_values(pool[idx], spec.parameters)
    draws = pd.DataFrame(values, columns=[p.path for p in spec.parameters])
    for j in range(d):
        draws[f"u{j}"] = pool[idx, j]
    draws["log_likelihood"] = ll[idx]
    return draws, _ess(log_w), int(len(pool))


def verify_posterior(
    spec: MatchSpec,
    bases: Mapping[str, Sequence[EmdConfig]],
    draws: pd.DataFrame,
    n: int,
    mapper: Callable[[Callable[..., dict[str, float]], list[Any]], Iterable[dict[str, float]]],
    waves: Sequence[WaveResult],
    rng: np.random.Generator,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Simulate ``n`` of the posterior ``draws`` (evenly spaced through them; common random numbers,
    new seeds) and compare with the emulators and the reports: the per-draw table (simulated and
    emulated value of every output) and the posterior-predictive table (per output: reported value
    and interval, the simulated median and 5-95 % range over the draws, whether the reported value
    lies in that range, and the share of draws whose value lies in the reported interval)."""
    if n <= 0 or len(draws) == 0:
        return pd.DataFrame(), pd.DataFrame()
    pick = draws.iloc[np.unique(np.linspace(0, len(draws) - 1, n).round().astype(int))].reset_index(drop=True)
    paths = [p.path for p in spec.parameters]
    seeds = {s: int(rng.integers(2**62)) for s in spec.scenarios}
    jobs = [(dict(bases), {p: float(row[p]) for p in paths}, seeds, list(spec.outputs)) for _, row in pick.iterrows()]
    rows = list(mapper(simulate_point, jobs))
    u = pick[[f"u{j}" for j in range(len(paths))]].to_numpy()
    per_draw = pick[paths].copy()
    for o in spec.outputs:
        per_draw[o.name] = [r.get(o.name, math.nan) for r in rows]
        if o.name in waves[-1].emulators:
            per_draw[f"{o.name}|emulated"] = waves[-1].emulators[o.name].predict(u)[0]
    by_target = {s.target.name: s for s in spec.evidence.targets}
    table = []
    for o in spec.outputs:
        s = by_target.get(o.target)
        lo, hi = (s.lower, s.upper) if s is not None else (math.nan, math.nan)
        lo = lo[o.index] if isinstance(lo, list) else lo
        hi = hi[o.index] if isinstance(hi, list) else hi
        sim = per_draw[o.name].to_numpy(dtype=float)
        sim = sim[np.isfinite(sim)]
        q5, q50, q95 = np.percentile(sim, [5, 50, 95]) if len(sim) else (math.nan,) * 3
        value = o.observation.value
        table.append(
            {"output": o.name, "scenario": o.scenario, "reported": value, "lower": lo, "upper": hi,
             "simulated_median": q50, "simulated_5": q5, "simulated_95": q95,
             "reported_in_range": bool(q5 <= value <= q95),
             "draws_inside_interval": float(np.mean((sim >= lo) & (sim <= hi))) if len(sim) else math.nan}
        )  # fmt: skip
    return per_draw, pd.DataFrame(table)
