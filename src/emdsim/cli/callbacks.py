"""Hydra callbacks of ``emdsim -m`` (command-line layer): the sweep plan, progress and table.

Registered in ``conf/config.yaml`` under ``hydra.callbacks``.  On the way in, the callback counts
the jobs of the sweep and writes ``sweep.json``; after every job it prints how many are done,
failed and left; at the end it rebuilds ``sweep.parquet`` from the job directories (see
:mod:`emdsim.studies.sweep`), so the table is complete whichever launcher ran the jobs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from emdsim.studies import sweep
from emdsim.studies.rundir import atomic_write_text

log = logging.getLogger("emdsim")

__all__ = ["SweepCallback", "expand_sweep"]


def expand_sweep(overrides: Sequence[str]) -> list[tuple[str, list[str]]]:
    """``[(key, [value, ...]), ...]`` for each override, sweeps expanded (the Cartesian axes)."""
    parsed = OverridesParser.create().parse_overrides(list(overrides))
    axes = []
    for ov in parsed:
        key = ov.get_key_element()
        if ov.is_sweep_override():
            axes.append((key, [str(v) for v in ov.sweep_string_iterator()]))
        else:
            axes.append((key, [ov.get_value_element_as_str()]))
    return axes


def n_jobs_of(overrides: Sequence[str]) -> int:
    """Number of jobs of a basic (grid) sweep over ``overrides``."""
    n = 1
    for _, values in expand_sweep(overrides):
        n *= len(values)
    return n


class SweepCallback(Callback):
    """Writes ``sweep.json`` at the start, reports progress after each job, ``sweep.parquet`` at the end."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        task = list(config.hydra.overrides.task)
        n = n_jobs_of(task)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(
            sweep_dir / sweep.PLAN,
            json.dumps(
                {"n_jobs": n, "overrides": task, "started": datetime.now(UTC).isoformat(timespec="seconds")}, indent=1
            )
            + "\n",
        )
        print(f"sweep: {n} jobs; results in {sweep_dir}", flush=True)

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        try:
            sweep_dir = Path(str(config.hydra.sweep.dir))
        except Exception:  # a single run has no sweep directory
            return
        if not (sweep_dir / sweep.PLAN).is_file():
            return
        print(sweep.progress_line(sweep_dir, sweep.planned_jobs(sweep_dir)), flush=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        table = sweep.write_table(sweep_dir)
        counts = table["status"].value_counts().to_dict() if len(table) else {}
        failed = int(counts.get("failed", 0))
        print(
            f"sweep: {int(counts.get('done', 0))} done, {failed} failed, "
            f"{int(counts.get('incomplete', 0))} incomplete; table {sweep_dir / sweep.TABLE}",
            flush=True,
        )
        if failed:
            for _, row in table[table["status"] == "failed"].iterrows():
                print(f"sweep: job {row['job']} ({row['overrides']}) failed: {row['error']}", flush=True)
            raise SystemExit(1)
