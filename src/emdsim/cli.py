"""``emdsim``: the Hydra command line.

``emdsim [group=option ...] [key=value ...]`` runs the configured cohort and writes, in the Hydra
run directory (``hydra.run.dir=DIR`` to choose it): ``config.yaml``, ``provenance.json``,
``patients.parquet``, ``lesions.parquet`` and ``summary.json`` (written last).  ``emdsim -m ...``
sweeps.  Invalid configuration exits with status 2 and one line naming the field, the value and
what is allowed.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from .confload import CONF_DIR, config_yaml, to_config
from .config.schema import ConfigError

log = logging.getLogger("emdsim")

__all__ = ["main", "run"]


def run(cfg: DictConfig) -> dict:
    """The task behind the command: validate, simulate, write; returns the summary."""
    from .tasks import run_task

    try:
        emd = to_config(cfg)
    except ConfigError as err:
        print(f"emdsim: invalid configuration: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    summary = run_task(emd, run_dir, config_text=config_yaml(cfg))
    log.info("results written to %s", run_dir)
    print(f"emdsim: {summary['n_patients']} patients, EMD at diagnosis {summary['emd_at_diagnosis']:.1%} "
          f"(PS {summary['ps_at_diagnosis']:.1%}, EM {summary['em_at_diagnosis']:.1%}), at relapse "
          f"{summary['emd_at_relapse']:.1%} (PS {summary['ps_at_relapse']:.1%}, EM {summary['em_at_relapse']:.1%})")
    print(f"emdsim: results in {run_dir}")
    return summary


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def _hydra_main(cfg: DictConfig) -> float | None:
    summary = run(cfg)
    return summary.get("emd_at_diagnosis")


def check_group_choices(argv: list[str]) -> str | None:
    """One-line error for a config-group override naming an option that does not exist, else None."""
    groups = {d.name for d in CONF_DIR.iterdir() if d.is_dir()}
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        key, value = arg.lstrip("+~").split("=", 1)
        if key not in groups or "(" in value:
            continue
        options = sorted(p.stem for p in (CONF_DIR / key).glob("*.yaml"))
        for choice in value.split(","):
            if choice and choice != "null" and choice not in options:
                return f"{ConfigError(key, choice, f'must be one of {options}')}"
    return None


def main() -> None:
    problem = check_group_choices(sys.argv[1:])
    if problem:
        print(f"emdsim: invalid configuration: {problem}", file=sys.stderr)
        raise SystemExit(2)
    _hydra_main()


if __name__ == "__main__":
    main()
