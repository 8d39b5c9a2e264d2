"""Writing a run directory: atomic files and provenance.

Every file is written to a temporary name in the same directory and renamed into place, so a
reader never sees half a file and a crash leaves no partial result under a final name.
``summary.json`` is written last: its presence marks a finished run.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from emdsim import rng as seeds

__all__ = [
    "atomic_write_text",
    "atomic_write_parquet",
    "provenance",
    "write_run",
    "begin_run",
    "finish_run",
    "json_safe",
    "SUMMARY",
    "PATIENTS",
]

SUMMARY, PATIENTS, LESIONS, PROVENANCE, CONFIG = (
    "summary.json",
    "patients.parquet",
    "lesions.parquet",
    "provenance.json",
    "config.yaml",
)
#: what a run writes into its directory (glob patterns); a re-run in place removes them first
RUN_OUTPUTS = (
    SUMMARY,
    CONFIG,
    PROVENANCE,
    PATIENTS,
    LESIONS,
    "incidence.parquet",
    "survival.parquet",
    "sites.parquet",
    "snapshots.parquet",
    "fig_*.png",
    "patient_*.gif",
    "patient_*.mp4",
)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: permissions of a written file: those of a plain ``open()`` under the process's umask (mkstemp
#: creates its temporary file 0600, which would leave results unreadable to the rest of a group)
_FILE_MODE = 0o666 & ~_umask()


def _atomic(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    _atomic(Path(path), lambda tmp: Path(tmp).write_text(text))


def atomic_write_parquet(path: Path, frame: pd.DataFrame) -> None:
    _atomic(Path(path), lambda tmp: frame.to_parquet(tmp, index=False))


def git_revision() -> str | None:
    """The git revision of the source tree emdsim runs from (``+dirty`` if modified), or None."""
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def provenance(seed: int, engine: str) -> dict[str, Any]:
    versions = {}
    for pkg in ("emdsim", "numpy", "mesa", "networkx", "pandas", "hydra-core"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {
        "seed": seed,
        "seed_sequence_entropy": seeds.root_entropy(seed),
        "engine": engine,
        "package_version": versions["emdsim"],
        "git_revision": git_revision(),
        "python": platform.python_version(),
        "versions": versions,
    }


def begin_run(run_dir: Path) -> None:
    """Make ``run_dir`` hold no earlier run's outputs before a run writes into it: ``summary.json``
    goes first (a killed re-run must not look finished), then every other file a run writes
    (tables, figures, animations), so nothing stale sits beside the new results."""
    run_dir = Path(run_dir)
    (run_dir / SUMMARY).unlink(missing_ok=True)
    for pattern in RUN_OUTPUTS:
        for path in run_dir.glob(pattern):
            path.unlink(missing_ok=True)


def json_safe(value: Any) -> Any:
    """``value`` with NaN and infinities as None (JSON has no NaN; a fraction over no patients is null)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def write_run(
    run_dir: Path,
    *,
    config_yaml: str,
    prov: dict[str, Any],
    patients: pd.DataFrame,
    lesions: pd.DataFrame,
    extra_tables: dict[str, pd.DataFrame] | None = None,
) -> list[str]:
    """Write the configuration, provenance and tables (not the summary: see :func:`finish_run`);
    returns the names written."""
    run_dir = Path(run_dir)
    (run_dir / SUMMARY).unlink(missing_ok=True)  # a rerun in place is unfinished until it ends
    atomic_write_text(run_dir / CONFIG, config_yaml)
    atomic_write_text(run_dir / PROVENANCE, json.dumps(prov, indent=2) + "\n")
    atomic_write_parquet(run_dir / PATIENTS, patients)
    atomic_write_parquet(run_dir / LESIONS, lesions)
    for name, table in (extra_tables or {}).items():
        atomic_write_parquet(run_dir / name, table)
    return [CONFIG, PROVENANCE, PATIENTS, LESIONS, *(extra_tables or {})]


def finish_run(run_dir: Path, summary: dict[str, Any], files: list[str]) -> dict[str, Any]:
    """Write ``summary.json`` last, listing every file of the run (itself included): its presence
    marks a finished run."""
    summary = json_safe(dict(summary, files=[*files, SUMMARY]))
    atomic_write_text(Path(run_dir) / SUMMARY, json.dumps(summary, indent=2) + "\n")
    return summary
