"""Task functions behind the command line, importable without Hydra."""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from emdsim.analysis.summary import summarise
from emdsim.analysis.survival import analyse
from emdsim.cohort.run import run_cohort
from emdsim.config.schema import EmdConfig
from emdsim.studies.rundir import begin_run, finish_run, provenance, write_run

__all__ = ["run_task"]

log = logging.getLogger("emdsim")


def _progress(total: int):
    from tqdm import tqdm

    bar = tqdm(total=total, desc="emdsim: patients finished", unit="pt", leave=False, mininterval=0.5)
    return bar


def run_task(
    cfg: EmdConfig,
    run_dir: Path,
    *,
    config_text: str | None = None,
    show_progress: bool = True,
    figures: Callable[..., list[Path]] | None = None,
) -> dict[str, Any]:
    """Simulate ``cfg``'s cohort and write the run directory; returns the summary.

    The directory first loses any earlier run's outputs; then the tables are written, then
    ``figures(run_dir, survival_stats=...)`` if given, with the survival statistics the analysis
    already computed (a figure problem is logged, never hides the results), and ``summary.json``
    last, listing every file written."""
    begin_run(run_dir)
    from emdsim.engine.jit import kernels_cached

    if cfg.engine != "mesa" and not kernels_cached(cfg.engine):
        note = "compiling the simulation kernels (first run on this machine only: ~4 minutes on 2 cores)"
        if show_progress:
            print(f"emdsim: {note}", file=sys.stderr, flush=True)
        log.info(note)
    bar = _progress(cfg.cohort.n_patients) if show_progress else None
    try:
        result = run_cohort(cfg, progress=bar.update if bar else None)
    finally:
        if bar:
            bar.close()
    if show_progress:
        print("emdsim: analysing the cohort (incidence, survival, sites)", file=sys.stderr, flush=True)
    summary = summarise(result.patients, seed=cfg.seed)
    extra_summary, tables = analyse(result.patients)
    summary.update(extra_summary)
    text = config_text if config_text is not None else json.dumps(dataclasses.asdict(cfg), indent=1)
    if result.snapshots is not None:
        tables["snapshots.parquet"] = result.snapshots
    files = write_run(
        run_dir,
        config_yaml=text,
        prov=provenance(cfg.seed, cfg.engine),
        patients=result.patients,
        lesions=result.lesions,
        extra_tables=tables,
    )
    if figures is not None:
        if show_progress:
            print("emdsim: drawing the figures", file=sys.stderr, flush=True)
        try:
            drawn = figures(Path(run_dir), survival_stats=summary.get("survival_by_emd_at_diagnosis"))
            files += [Path(p).name for p in drawn]
        except Exception as err:  # noqa: BLE001 - the results are written; a figure problem must not hide them
            log.error("figures not drawn: %s: %s", type(err).__name__, err)
    return finish_run(run_dir, summary, files)
