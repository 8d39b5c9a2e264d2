"""Sweep bookkeeping without Hydra: job records, resume decisions and the ``sweep.parquet`` table.

A sweep directory holds one sub-directory per job.  Each job writes ``job.json`` when it starts
(its number, overrides and seed), then either ``summary.json`` (written last by a finished run) or
``failure.json`` (the error of a crashed run).  :func:`collect` reads these files back into one
row per job, so the table can be rebuilt at any time from what is on disk: a crash in one job, or
an interrupted sweep, loses nothing that had finished.
"""

from __future__ import annotations

import json
import math
import os
import traceback
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from emdsim.config.inputs import read_json
from emdsim.config.schema import ConfigError
from emdsim.studies.rundir import CONFIG, SUMMARY, atomic_write_parquet, atomic_write_text

__all__ = [
    "JOB",
    "FAILURE",
    "CONFLICT",
    "PLAN",
    "TABLE",
    "write_job",
    "write_failure",
    "write_conflict",
    "clear_conflict",
    "resume_state",
    "collect",
    "write_table",
    "progress_line",
    "parse_value",
]

JOB, FAILURE, CONFLICT, PLAN, TABLE = "job.json", "failure.json", "conflict.json", "sweep.json", "sweep.parquet"


def write_job(
    run_dir: Path, *, num: int, overrides: list[str], seed: int | None, parameters: dict[str, float] | None = None
) -> None:
    """Record a job's identity when it starts (``job.json``) and clear a stale failure.

    ``parameters`` are the values a design row set (they become ``param.<path>`` columns).
    """
    run_dir = Path(run_dir)
    (run_dir / FAILURE).unlink(missing_ok=True)
    clear_conflict(run_dir)
    atomic_write_text(
        run_dir / JOB,
        json.dumps(
            {
                "job": num,
                "overrides": list(overrides),
                "seed": seed,
                "parameters": dict(parameters or {}),
                "pid": os.getpid(),
            },
            indent=1,
        )
        + "\n",
    )


def write_conflict(run_dir: Path, *, num: int, overrides: list[str], message: str) -> None:
    """Record that a job was refused because its directory holds a finished run of another
    configuration (``conflict.json``); the earlier run's files are left as they are, and the
    sweep table shows the job as failed, with the refused overrides and no metrics."""
    atomic_write_text(
        Path(run_dir) / CONFLICT,
        json.dumps({"job": num, "overrides": list(overrides), "error": f"conflict: {message}"}, indent=1) + "\n",
    )


def clear_conflict(run_dir: Path) -> None:
    (Path(run_dir) / CONFLICT).unlink(missing_ok=True)


def write_failure(run_dir: Path, err: BaseException) -> None:
    """Record why a job crashed (``failure.json``): type, message and traceback."""
    text = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    atomic_write_text(
        Path(run_dir) / FAILURE,
        json.dumps({"error": f"{type(err).__name__}: {err}", "traceback": text}, indent=1) + "\n",
    )


def resume_state(run_dir: Path, config_text: str) -> str:
    """What to do with a job directory before running it.

    ``"run"`` when it holds no finished result, ``"skip"`` when it holds a finished run of exactly
    this configuration, ``"conflict"`` when it holds a finished run of another configuration (the
    sweep directory was reused for a different sweep: nothing is overwritten).
    """
    run_dir = Path(run_dir)
    if not (run_dir / SUMMARY).is_file():
        return "run"
    config = run_dir / CONFIG
    if config.is_file() and config.read_text() == config_text:
        return "skip"
    return "conflict"


def parse_value(text: str) -> Any:
    """An override's value as a number when it is one (for plotting and grouping), else the text."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _read_json(path: Path) -> dict[str, Any] | None:
    """A job record, or None when the file is absent; a damaged record is one ConfigError naming it
    (a sweep table must never pair a job's metrics with a guessed identity)."""
    if not path.is_file():
        return None
    data = read_json(path, "sweep record")
    if not isinstance(data, dict):
        raise ConfigError(str(path), type(data).__name__, "a JSON object (written by emdsim)")
    return data


def check_sweep_dir(sweep_dir: Path) -> None:
    """A :class:`ConfigError` unless ``sweep_dir`` is a sweep directory (``sweep.json`` or job folders)."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise ConfigError("SWEEP_DIR", str(sweep_dir), "an existing directory")
    if not (sweep_dir / PLAN).is_file() and not any(True for _ in _job_dirs(sweep_dir)):
        raise ConfigError(
            "SWEEP_DIR",
            str(sweep_dir),
            f"a sweep directory of `emdsim -m` ({PLAN} or job folders with {JOB}); nothing written",
        )


def read_plan(path: Path) -> list[str]:
    """The task overrides a sweep directory's ``sweep.json`` recorded."""
    plan = _read_json(Path(path))
    overrides = (plan or {}).get("overrides")
    if not isinstance(overrides, list):
        raise ConfigError(str(path), overrides, "a sweep record with its list of overrides")
    return [str(o) for o in overrides]


def planned_jobs(sweep_dir: Path) -> int | None:
    """The number of jobs ``sweep.json`` announced, or None."""
    plan = _read_json(Path(sweep_dir) / PLAN)
    n = (plan or {}).get("n_jobs")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
        raise ConfigError(str(Path(sweep_dir) / PLAN), n, "n_jobs as a non-negative integer")
    return n


def _scalar_metrics(summary: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The scalar entries of a summary (numbers, flags, text), NaN for a missing median; nested
    mappings are flattened with dotted keys (``cumulative_incidence.EM_60_months``,
    ``sites_at_relapse.liver``); lists are left in ``summary.json``."""
    out: dict[str, Any] = {}
    for key, value in summary.items():
        name = f"{prefix}{key}"
        if isinstance(value, bool | int | float | str):
            out[name] = value
        elif value is None:
            out[name] = math.nan
        elif isinstance(value, dict):
            out.update(_scalar_metrics(value, f"{name}."))
    return out


def _job_dirs(sweep_dir: Path) -> Iterable[Path]:
    return sorted(
        (p for p in Path(sweep_dir).iterdir() if p.is_dir() and (p / JOB).is_file()),
        key=lambda p: (len(p.name), p.name),
    )


def collect(sweep_dir: Path) -> pd.DataFrame:
    """One row per job of a sweep directory: ``job, status`` (``done``: summary written; ``failed``:
    the run raised; ``incomplete``: started, never ended), ``error, seed, overrides``, one column
    per overridden key (prefixed ``override.``) and the scalar metrics of ``summary.json``."""
    rows = []
    for job_dir in _job_dirs(sweep_dir):
        job = _read_json(job_dir / JOB) or {}
        summary = _read_json(job_dir / SUMMARY)
        failure = _read_json(job_dir / FAILURE)
        conflict = _read_json(job_dir / CONFLICT)
        if conflict is not None:  # refused: the refused job's overrides, never the earlier run's metrics
            job, summary, failure = conflict, None, conflict
        status = "done" if summary is not None else "failed" if failure is not None else "incomplete"
        overrides = [str(o) for o in job.get("overrides", [])]
        if not isinstance(job.get("job", -1), int) or not isinstance(job.get("overrides", []), list):
            raise ConfigError(str(job_dir / JOB), job, "a job record with an integer job and a list of overrides")
        row: dict[str, Any] = {
            "job": int(job.get("job", -1)),
            "dir": job_dir.name,
            "status": status,
            "error": (failure or {}).get("error", ""),
            "seed": job.get("seed"),
            "overrides": " ".join(overrides),
        }
        for item in overrides:
            key, _, value = item.lstrip("+~").partition("=")
            row[f"override.{key}"] = parse_value(value)
        for key, value in (job.get("parameters") or {}).items():
            row[f"param.{key}"] = value
        if summary is not None:
            row.update({k: v for k, v in _scalar_metrics(summary).items() if k not in ("seed",)})
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=["job", "dir", "status", "error", "seed", "overrides"])
    return frame.sort_values("job", kind="stable").reset_index(drop=True)


def write_table(sweep_dir: Path) -> pd.DataFrame:
    """Rebuild ``sweep.parquet`` from the job directories (atomically) and return it."""
    frame = collect(sweep_dir)
    atomic_write_parquet(Path(sweep_dir) / TABLE, _parquet_safe(frame))
    return frame


def _parquet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """Mixed-type override columns (``1`` in one job, ``abc`` in another) become text."""
    out = frame.copy()
    for col in out.columns:
        if out[col].dtype == object:
            kinds = {type(v) for v in out[col].dropna()}
            if len(kinds) > 1:
                out[col] = out[col].map(
                    lambda v: v if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
                )
    return out


def progress_line(sweep_dir: Path, n_jobs: int | None) -> str:
    """``sweep: 5/27 finished (1 failed), 22 remaining; results in DIR``."""
    jobs = list(_job_dirs(sweep_dir))  # existence checks only: cheap after every job of a long sweep
    conflicts = sum((d / CONFLICT).is_file() for d in jobs)
    done = sum((d / SUMMARY).is_file() and not (d / CONFLICT).is_file() for d in jobs)
    failed = conflicts + sum((d / FAILURE).is_file() and not (d / SUMMARY).is_file() for d in jobs)
    total = n_jobs if n_jobs is not None else len(jobs)
    remaining = max(total - done - failed, 0)
    return f"sweep: {done + failed}/{total} finished ({failed} failed), {remaining} remaining; results in {sweep_dir}"
