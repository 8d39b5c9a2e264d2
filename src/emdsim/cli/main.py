"""``emdsim``: the Hydra command line.

``emdsim [group=option ...] [key=value ...]`` runs the configured cohort and writes, in the Hydra
run directory (``hydra.run.dir=DIR`` to choose it): ``config.yaml``, ``provenance.json``,
``patients.parquet``, ``lesions.parquet`` and ``summary.json`` (written last).  ``emdsim -m ...``
sweeps.  Invalid configuration exits with status 2 and one line naming the field, the value and
what is allowed.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from emdsim.cli.args import version_line
from emdsim.config.load import CONF_DIR, apply_design, compose, config_data, config_yaml, to_config
from emdsim.config.schema import ConfigError, EmdConfig
from emdsim.studies import sweep

log = logging.getLogger("emdsim")

__all__ = ["main", "run", "run_in_process"]


def run(cfg: DictConfig) -> dict | None:
    """The task behind the command: validate, simulate, write; returns the summary.

    In a sweep (``-m``) a job that already finished with the same configuration is skipped
    (resume), and a job that crashes records ``failure.json`` and returns None, so the other
    jobs go on; :class:`emdsim.cli.callbacks.SweepCallback` reports both in ``sweep.parquet``.
    """
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    run_dir = Path(hc.runtime.output_dir)
    try:
        design_values = apply_design(cfg)
        text = config_yaml(cfg)
        emd = _validated(cfg)
    except ConfigError as err:
        if multirun:
            sweep.write_job(run_dir, num=hc.job.num, overrides=list(hc.overrides.task), seed=cfg.get("seed"))
            sweep.write_failure(run_dir, err)
            log.error("job %s: invalid configuration: %s", hc.job.num, err)
            return None
        print(f"emdsim: invalid configuration: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    if not multirun:
        return _run_and_report(emd, run_dir, text, show_progress=True, figures=bool(cfg.get("figures", True)))

    state = sweep.resume_state(run_dir, text)
    if state == "skip":
        sweep.clear_conflict(run_dir)
        log.info("job %s already finished with this configuration: skipped (resume)", hc.job.num)
        return json.loads((run_dir / sweep.SUMMARY).read_text())
    if state == "conflict":  # nothing of the earlier run is touched: its job.json, summary and tables stay
        message = (
            f"{run_dir} holds a finished run of another configuration; its results are kept. "
            "Sweep into a new hydra.sweep.dir"
        )
        sweep.write_conflict(run_dir, num=hc.job.num, overrides=list(hc.overrides.task), message=message)
        log.error("job %s failed: %s", hc.job.num, message)
        return None
    sweep.write_job(run_dir, num=hc.job.num, overrides=list(hc.overrides.task), seed=emd.seed, parameters=design_values)
    try:
        if emd.cohort.n_jobs == 0 and hc.launcher.get("_target_", "").split(".")[-1] != "BasicLauncher":
            emd.cohort.n_jobs = 1  # parallel launcher: one process per job, not one per core each
        return _run_and_report(emd, run_dir, text, show_progress=False, figures=bool(cfg.get("figures", True)))
    except Exception as err:  # one job's crash must not end the sweep
        sweep.write_failure(run_dir, err)
        log.error("job %s failed: %s: %s", hc.job.num, type(err).__name__, err)
        return None


def _run_and_report(emd, run_dir: Path, config_text: str, *, show_progress: bool, figures: bool = True) -> dict:
    from emdsim.studies.task import run_task

    draw = None
    if figures:
        from emdsim.viz.figures import cohort_figures as draw
    summary = run_task(emd, run_dir, config_text=config_text, show_progress=show_progress, figures=draw)
    log.info("results written to %s", run_dir)
    print(summary_lines(summary, run_dir, followed=emd.sim.followup_years > 0), flush=True)
    return summary


def _share(summary: dict, key: str, n: int) -> str:
    value = summary.get(key)
    return "n/a" if value is None else f"{value:.1%} ({round(value * n)}/{n})"


def _months(value: float | None) -> str:
    return "not reached" if value is None else f"{value:.1f} months"


def summary_lines(summary: dict, run_dir: Path, *, followed: bool = True) -> str:
    """The closing lines of a run: each fraction with its denominator, median PFS and OS, the files
    (``followed`` False: the courses stopped at diagnosis, so there is no relapse or survival to report)."""
    n, n_dx, n_rel = summary["n_patients"], summary["n_diagnosed"], summary["n_relapsed"]
    lines = [f"emdsim: {n} patients, {n_dx} diagnosed, {n_rel} relapsed"]
    if n_dx == 0:
        lines.append("  no patient was diagnosed within sim.max_years_to_diagnosis: every fraction is n/a")
    else:
        lines.append(
            f"  at diagnosis (of {n_dx} diagnosed): EMD {_share(summary, 'emd_at_diagnosis', n_dx)}, "
            f"PS {_share(summary, 'ps_at_diagnosis', n_dx)}, EM {_share(summary, 'em_at_diagnosis', n_dx)}"
        )
        if not followed:
            lines.append("  courses stopped at diagnosis (sim.followup_years=0): no relapse, PFS or OS to report")
        elif n_rel == 0:
            lines.append("  at first relapse: n/a (no patient relapsed during follow-up)")
        else:
            lines.append(
                f"  at first relapse (of {n_rel} relapsed): EMD {_share(summary, 'emd_at_relapse', n_rel)}, "
                f"PS {_share(summary, 'ps_at_relapse', n_rel)}, EM {_share(summary, 'em_at_relapse', n_rel)}"
            )
        if followed:
            lines.append(
                f"  median PFS {_months(summary.get('median_pfs_months'))}, median OS "
                f"{_months(summary.get('median_os_months'))} (Kaplan-Meier, diagnosed patients)"
            )
    files = summary.get("files", [])
    lines.append(f"  {len(files)} files in {run_dir}: {', '.join(files)}")
    return "\n".join(lines)


def _task(cfg: DictConfig) -> float | None:
    summary = run(cfg)
    return summary.get("emd_at_diagnosis") if summary else None


_hydra_main = hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")(_task)


#: configurations already validated in this process (:func:`run_once` checks a plain run's before
#: Hydra makes its directory), by their resolved data (``repr(config_data(cfg))``: ~1 ms, where
#: the YAML text costs ~45): the task does not convert them again
_CHECKED: dict[str, EmdConfig] = {}


def _validated(cfg: DictConfig) -> EmdConfig:
    """``to_config(cfg)``, or the configuration :func:`run_once` validated for exactly ``cfg``'s data."""
    emd = _CHECKED.pop(repr(config_data(cfg)), None) if _CHECKED else None
    return emd if emd is not None else to_config(cfg)


def run_once(argv: list[str]) -> None:
    """A single run whose configuration is composed once.

    ``@hydra.main`` composes a run's configuration twice (once to learn the run mode, once to run),
    and checking it first was a third composition (~0.2-0.6 CPU-s each).  A plain run (overrides, no
    flags) is composed here once, with its ``hydra`` node, checked (one line and exit 2 before any
    directory is made), and handed to Hydra's own job runner (``hydra.core.utils.run_job``: the run
    directory, ``.hydra/``, logging, callbacks), as ``Hydra.run`` would."""
    import copy

    # Hydra 1.3's own pieces of ``Hydra.run`` (pyproject pins hydra-core < 1.4; Callbacks is internal)
    from hydra._internal.callbacks import Callbacks
    from hydra.core.utils import run_job
    from hydra.types import HydraContext
    from omegaconf import open_dict

    from emdsim.cohort.run import check_resources

    try:
        cfg = compose(argv, hydra_node=True)
        task_cfg = copy.deepcopy(cfg)
        with open_dict(task_cfg):
            del task_cfg["hydra"]
        apply_design(task_cfg)
        emd = to_config(task_cfg)
        check_resources(emd)
        _CHECKED[repr(config_data(task_cfg))] = emd  # the task validates this configuration once, here
    except ConfigError as err:
        print(f"emdsim: invalid configuration: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    with open_dict(cfg.hydra):
        cfg.hydra.mode = RunMode.RUN
    callbacks = Callbacks(cfg)
    callbacks.on_run_start(config=cfg, config_name="config")
    ret = run_job(
        task_function=_task,
        config=cfg,
        job_dir_key="hydra.run.dir",
        job_subdir_key=None,
        hydra_context=HydraContext(config_loader=None, callbacks=callbacks),  # type: ignore[arg-type]
    )
    callbacks.on_run_end(config=cfg, config_name="config", job_return=ret)
    _ = ret.return_value  # re-raises what the task raised


def check_group_choices(argv: list[str]) -> str | None:
    """One-line error for a config-group override naming an option that does not exist, else None."""
    groups = {d.name for d in CONF_DIR.iterdir() if d.is_dir() and d.name != "hydra"}
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        key, value = arg.lstrip("+~").split("=", 1)
        if not key.strip():
            return f"{ConfigError(arg, None, 'an override key=value with a key (e.g. seed=5)')}"
        if key.startswith("hydra/"):
            options = _hydra_options(key)
        elif key in groups and "(" not in value:
            options = sorted(p.stem for p in (CONF_DIR / key).glob("*.yaml"))
        else:
            continue
        for choice in value.split(","):
            if choice and choice != "null" and choice not in options:
                return f"{ConfigError(key, choice, f'must be one of {options}')}"
    return None


def _hydra_options(group: str) -> list[str]:
    """The options of a Hydra config group (``hydra/launcher``: basic, joblib, submitit_local, ...)."""
    from hydra.core.config_store import ConfigStore
    from hydra.core.plugins import Plugins

    Plugins.instance()  # registers the installed plugins' configs
    try:
        stored = {Path(name).stem for name in ConfigStore.instance().list(group)}
    except OSError:  # no such group in the store
        stored = set()
    local = {p.stem for p in (CONF_DIR / group).glob("*.yaml")}
    return sorted(stored | local)


def check_sweep_dir(argv: list[str]) -> str | None:
    """A sweep into a directory that holds a sweep of other overrides is refused before any job
    starts (Hydra would rewrite each job's ``.hydra/`` beside the earlier results); the same
    command again resumes it."""
    given = [a.split("=", 1)[1] for a in argv if a.startswith("hydra.sweep.dir=")]
    if not given:
        return None
    plan = Path(given[-1]) / sweep.PLAN
    if not plan.is_file():
        return None
    try:
        earlier = sweep.read_plan(plan)
    except ConfigError as err:
        return str(err)
    task = _task_overrides(argv)
    if sorted(earlier) != sorted(task):
        return str(
            ConfigError(
                "hydra.sweep.dir",
                given[-1],
                f"a new directory: it holds a sweep of other overrides ({' '.join(earlier)}); "
                "its results are kept. Run that command again to resume it",
            )
        )
    return None


def _task_overrides(argv: list[str]) -> list[str]:
    """The model overrides of a command line (not flags, not ``hydra...`` settings)."""
    return [
        a for a in argv if not a.startswith("-") and "=" in a and not a.lstrip("+~").startswith(("hydra.", "hydra/"))
    ]


def check_sweep(argv: list[str]) -> str | None:
    """Validate every value of a sweep before any job starts; one line per problem, else None.

    Each swept value is composed with the other overrides (at their first value) and validated, so
    an unknown parameter, an empty range or a value outside a parameter's allowed interval is
    reported before anything runs.  Rows of a design table are checked against its length.
    """
    from hydra.errors import HydraException

    from emdsim.cli.callbacks import expand_sweep
    from emdsim.cohort.run import check_resources

    overrides = _task_overrides(argv)
    try:
        axes = expand_sweep(overrides)
    except HydraException as err:
        return f"cannot parse the overrides: {str(err).strip().splitlines()[0]}"
    for key, values in axes:
        if not values:
            return f"{ConfigError(key, '(empty)', 'a sweep needs at least one value')}"
    base = [f"{k}={v[0]}" for k, v in axes]
    checks = [base] + [
        base[:i] + [f"{k}={v}"] + base[i + 1 :]
        for i, (k, values) in enumerate(axes)
        if k != "design.row"
        for v in values[1:]
    ]
    for i, (key, values) in enumerate(axes):  # design rows: the first and last are enough
        if key == "design.row" and len(values) > 1:
            checks.append(base[:i] + [f"{key}={max(values, key=_as_int)}"] + base[i + 1 :])
    if len(checks) > 20:
        print(f"emdsim: checking {len(checks)} swept values before the sweep starts", file=sys.stderr)
    for combo in checks:
        try:
            cfg = compose(combo)
        except ConfigError as err:
            return str(err)
        try:
            apply_design(cfg)
            check_resources(to_config(cfg))
        except ConfigError as err:
            return str(err)
    return None


def _as_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return 0


HELP = """\
emdsim {version}: an agent-based simulator of extramedullary disease (EMD) in multiple myeloma.
Clone populations carrying adhesion and homing traits (VLA-4, CD44, CD56, CXCR4, PSGL-1, CCR1/2,
tetraspanins) grow in the marrow niches of an anatomy graph and spread locally through the cortex
(PS, paraskeletal) or through the blood to organs (EM). A virtual patient runs from MGUS onset
through diagnosis, treatment lines and relapse to death; a cohort reports EMD at diagnosis and
relapse by route and site, with PFS and OS.

usage: emdsim [group=option ...] [key=value ...]          one cohort (Hydra overrides)
       emdsim -m key=a,b seed=1,2,3 [hydra/launcher=joblib]   a sweep: one job per combination

  emdsim                                 default scenario, 200 patients (first run compiles ~4 min)
  emdsim cohort.n_patients=1965 seed=7   a Usmani-sized cohort
  emdsim scenario=surgery treatment=allo_ric experiment=fitted    groups; the fitted biology
  emdsim -m spread.p_colonisation=2e-5,1e-4 seed=1,2 hydra/launcher=joblib

config groups: {groups}
  common keys: seed, cohort.n_patients, engine (hybrid|exact|mesa), figures (true|false),
  sim.followup_years, spread.*, growth.*, clinical.*; every parameter with its unit, allowed
  range and source: docs/parameters.md.  Full configuration: emdsim --cfg job.  Hydra: --hydra-help.

outputs: outputs/<scenario>/<time>_<overrides>/ (or hydra.run.dir=DIR): summary.json (written
  last, lists every file), patients/lesions/incidence/survival/sites/snapshots.parquet, fig_*.png,
  config.yaml, provenance.json.  Sweeps: multirun/<time>/<job>/ and sweep.parquet.

other commands (each has --help)
  emdsim-design run designs/screen.yaml    SALib design (Morris, Sobol, LHS) as a sweep, indices
  emdsim-fit run fits/quick.yaml           fit to reported incidence (ABC-SMC): report, fitted.yaml
  emdsim-trial run q2_allo_vs_auto    paired in-silico trial over replicate cohorts
  emdsim-animate RUN_DIR                   body-map animation (GIF/MP4) of one recorded patient
  emdsim-report SWEEP_DIR                  figures of a sweep next to its sweep.parquet
  emdsim-app                               dashboard of one virtual patient, http://127.0.0.1:8765

Invalid input: one line naming the field, the value and what is allowed; exit status 2.
Documentation: README.md, docs/ODD.md (the model), docs/parameters.md (every number, its source).
"""


def help_text() -> str:
    from emdsim import __version__

    groups = " ".join(sorted(d.name for d in CONF_DIR.iterdir() if d.is_dir() and d.name != "hydra"))
    return HELP.format(version=__version__, groups=groups)


def run_in_process(argv: list[str]) -> int:
    """Run ``emdsim ARGV`` in this process and return its exit status (Hydra's basic launcher, no
    interpreter start-up per job: tests and notebooks; the commands start ``emdsim`` as a process)."""
    saved = sys.argv
    sys.argv = ["emdsim", *argv]
    try:
        main()
    except SystemExit as exit_:
        return int(exit_.code or 0)
    finally:
        sys.argv = saved
    return 0


def main() -> None:
    argv = sys.argv[1:]
    if {"--help", "-h"} & set(argv):
        print(help_text(), end="")
        raise SystemExit(0)
    if {"--version", "-V"} & set(argv):
        print(version_line("emdsim"))
        raise SystemExit(0)
    problem = check_group_choices(argv)
    if problem is None and not any(a.startswith("-") for a in argv):  # a plain run: composed once
        run_once(argv)
        return
    if problem is None and not {"--hydra-help", "--info", "--cfg", "-c"} & set(argv):
        problem = check_sweep(argv)
    if problem is None and {"-m", "--multirun"} & set(argv):
        problem = check_sweep_dir(argv)
    if problem:
        print(f"emdsim: invalid configuration: {problem}", file=sys.stderr)
        raise SystemExit(2)
    _hydra_main()


if __name__ == "__main__":
    main()
