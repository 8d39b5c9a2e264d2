"""The configuration boundary: Hydra/OmegaConf configs in, validated dataclasses out.

Only this module and :mod:`emdsim.cli.main` import Hydra or OmegaConf.  ``compose`` gives notebooks
and tests the same configuration the command line builds.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    MissingMandatoryValue,
    OmegaConfBaseException,
    ValidationError,
)

from emdsim.config.schema import ConfigError, EmdConfig

__all__ = ["CONF_DIR", "compose", "to_config", "load", "config_data", "config_yaml", "apply_design", "select_values"]

#: top-level nodes of ``conf/config.yaml`` that steer the command line, not the model
CLI_NODES = ("hydra", "design", "figures")


def _find_conf_dir() -> Path:
    here = Path(__file__).resolve()
    for candidate in (here.parents[3] / "conf", here.parents[1] / "_conf"):  # src/emdsim/config/load.py
        if (candidate / "config.yaml").is_file():
            return candidate
    raise FileNotFoundError("emdsim: cannot find the conf/ directory next to the sources")


CONF_DIR = _find_conf_dir()

# conf/hydra/launcher/*.yaml shadow the launcher plugins' configs of the same names on purpose
# (emdsim's launchers keep the plugins' settings); Hydra warns about it at every composition
warnings.filterwarnings("ignore", message=r"(?s).*is validated against ConfigStore schema with the same name")


def _suffix(text: str) -> str:
    """``_<overrides>`` for a run directory's name (``""`` without overrides); long ones are cut and
    end in a short hash so that two different runs never share a folder."""
    import hashlib

    text = str(text or "").replace("/", "-")
    if not text:
        return ""
    if len(text) > 120:
        text = text[:100] + "..." + hashlib.sha256(text.encode()).hexdigest()[:10]
    return f"_{text}"


OmegaConf.register_new_resolver("emdsim_suffix", _suffix, replace=True)


def compose(overrides: Sequence[str] = (), *, hydra_node: bool = False) -> DictConfig:
    """Compose ``conf/config.yaml`` with Hydra overrides (``["cohort.n_patients=10", ...]``); an
    override Hydra cannot parse or apply is one :class:`ConfigError` naming it (and the closest keys).
    ``hydra_node``: keep the ``hydra`` node (run directory, logging, callbacks) for running a job."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException

    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="main"):
            return hydra_compose(
                config_name="config", overrides=[str(o) for o in overrides], return_hydra_config=hydra_node
            )
    except (HydraException, OmegaConfBaseException, ValueError) as err:  # Hydra raises ValueError too
        raise composition_error(list(overrides), err) from None
    except yaml.YAMLError as err:  # a conf/ file that is not valid YAML, or gives a key twice
        from emdsim.config.inputs import yaml_problem

        mark = getattr(err, "problem_mark", None)
        where = mark.name if mark is not None else "a file under conf/"
        raise ConfigError(where, None, f"a valid configuration file ({yaml_problem(err)})") from None


def composition_error(overrides: Sequence[str], err: Exception) -> ConfigError:
    """One line for an override Hydra cannot apply, naming the closest existing keys."""
    import difflib

    message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if "Could not override" not in message and "Key '" not in message:
        return ConfigError("overrides", " ".join(overrides), f"overrides Hydra can apply ({message})")
    bad = next((o for o in overrides if f"'{o.split('=', 1)[0].lstrip('+~')}'" in message), overrides[0])
    key, _, value = bad.lstrip("+~").partition("=")
    known = _leaf_keys(OmegaConf.to_container(compose([]), resolve=False))
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return ConfigError(key, value, f"not a parameter of the configuration (see docs/parameters.md){hint}")


def _leaf_keys(node, prefix: str = "") -> list[str]:
    if isinstance(node, dict):
        return [k for key, value in node.items() if key != "hydra" for k in _leaf_keys(value, f"{prefix}{key}.")]
    return [prefix.rstrip(".")]


def config_data(cfg: DictConfig) -> dict[str, Any]:
    """The model's config as plain data: resolved, without the command-line nodes (``hydra``,
    ``design``, ``figures``)."""
    data = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(data, dict)
    for node in CLI_NODES:
        data.pop(node, None)
    return data  # type: ignore[return-value]


def _plain(cfg: DictConfig) -> DictConfig:
    """The model's config: resolved, without the command-line nodes."""
    return OmegaConf.create(config_data(cfg))


def apply_design(cfg: DictConfig) -> dict[str, float]:
    """Set the parameters of row ``design.row`` of ``design.file`` in ``cfg`` (in place).

    A design file (written by ``emdsim-design``) is a table with one column per parameter path;
    a sweep over ``design.row`` runs its rows through any Hydra launcher.  Returns the values set.
    """
    file = OmegaConf.select(cfg, "design.file", default=None)
    row = OmegaConf.select(cfg, "design.row", default=None)
    if file is None and row is None:
        return {}
    if file is None or row is None:
        raise ConfigError("design", {"file": file, "row": row}, "set both design.file and design.row, or neither")
    import pandas as pd

    try:
        table = pd.read_parquet(file)
    except (OSError, ValueError) as err:
        raise ConfigError("design.file", file, f"a readable design table ({_first_line(str(err))})") from None
    if not isinstance(row, int) or not 0 <= row < len(table):
        raise ConfigError("design.row", row, f"an integer in [0, {len(table)})")
    values = {str(k): float(v) for k, v in table.iloc[row].items()}
    for key, value in values.items():
        if OmegaConf.select(cfg, key, default=None) is None:
            raise ConfigError(f"design.file column {key}", value, "a parameter path of the configuration")
        OmegaConf.update(cfg, key, value, merge=False)
    return values


def check_cli_nodes(cfg: DictConfig) -> None:
    """The command-line switches outside the model: ``figures`` is a boolean."""
    figures = OmegaConf.select(cfg, "figures", default=True)
    if not isinstance(figures, bool):
        raise ConfigError("figures", figures, "true or false")


def to_config(cfg: DictConfig) -> EmdConfig:
    """Convert and validate; every problem becomes one :class:`ConfigError`."""
    check_cli_nodes(cfg)
    try:
        merged = OmegaConf.merge(OmegaConf.structured(EmdConfig), _plain(cfg))
        obj = OmegaConf.to_object(merged)
    except ConfigError:
        raise
    except (ConfigKeyError, ConfigAttributeError) as err:
        key = err.full_key or str(getattr(err, "key", ""))
        raise ConfigError(key, _value_at(cfg, key), "unknown config key (check its spelling and group)") from None
    except MissingMandatoryValue as err:
        raise ConfigError(err.full_key, "???", "a value is required") from None
    except ValidationError as err:
        raise ConfigError(err.full_key, _value_at(cfg, err.full_key), _first_line(err.msg)) from None
    except OmegaConfBaseException as err:
        raise ConfigError(getattr(err, "full_key", "") or "config", None, _first_line(str(err))) from None
    assert isinstance(obj, EmdConfig)
    return obj


def _first_line(msg: str) -> str:
    return msg.strip().splitlines()[0] if msg else "invalid value"


def _value_at(cfg: DictConfig, key: str) -> Any:
    try:
        return OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
    except OmegaConfBaseException:
        return None


def select_values(cfg: DictConfig, paths: Sequence[str]) -> dict[str, Any]:
    """Values at dotted paths (list items and mapping entries included: ``traits.switches.0.rate_per_division``);
    None where a path does not exist."""
    return {p: _value_at(cfg, p) for p in paths}


def load(overrides: Sequence[str] = ()) -> EmdConfig:
    """Compose and validate in one call (notebooks, tests)."""
    return to_config(compose(overrides))


def config_yaml(cfg: DictConfig) -> str:
    """The resolved configuration as YAML (what ``config.yaml`` in a run directory holds)."""
    return OmegaConf.to_yaml(_plain(cfg))
