"""Reading the files a user hands to emdsim: one :class:`ConfigError` per problem, naming the file.

Every command reads its inputs (specs, registries, target files, run and sweep directories)
through these functions, so a missing, unreadable, truncated or malformed file is one line naming
the file, what was found and what is allowed (exit status 2 at the command line), never a
traceback.  YAML is read strictly: a key given twice in one mapping is an error (PyYAML would keep
the last value silently, so a targets file with ``value: 3.4`` and ``value: 4.0`` was fitted to 4.0).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from emdsim.config.schema import ConfigError

__all__ = ["StrictLoader", "yaml_problem", "read_yaml", "read_json", "read_parquet", "check_name"]


#: libyaml's parser where PyYAML was built with it (~10x faster than the pure-Python one: a run's
#: ``config.yaml`` took ~0.08 CPU-s to read for a figure title), else PyYAML's own; the same safe
#: construction either way
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class StrictLoader(_SafeLoader):  # type: ignore[misc,valid-type]
    """PyYAML's safe loader that refuses a key given twice in one mapping."""


def _construct_mapping(loader: StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} is given twice (lines {seen[key]} and {line}); keep one", key_node.start_mark
            )
        seen[key] = line
    return loader.construct_mapping(node, deep=deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def yaml_problem(err: yaml.YAMLError) -> str:
    """``line 3: found duplicate key seed``: where a YAML file is wrong, and how."""
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    where = f"line {mark.line + 1}: " if mark is not None else ""
    return where + (getattr(err, "problem", None) or _first_line(err))


def read_yaml(path: Path | str, what: str = "YAML file", *, mapping: bool = True) -> Any:
    """The parsed content of a YAML file (a mapping unless ``mapping=False``)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(str(path), None, f"a readable {what} ({err.strerror or _first_line(err)})") from None
    try:
        data = yaml.load(text, Loader=StrictLoader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as err:
        raise ConfigError(str(path), None, f"a valid {what} ({yaml_problem(err)})") from None
    if mapping and not isinstance(data, dict):
        raise ConfigError(str(path), type(data).__name__, f"a {what} holding a YAML mapping (key: value lines)")
    return data


def read_json(path: Path | str, what: str = "JSON file") -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except OSError as err:
        raise ConfigError(str(path), None, f"a readable {what} ({err.strerror or _first_line(err)})") from None
    except ValueError as err:
        raise ConfigError(str(path), None, f"a valid {what} ({_first_line(err)})") from None


def read_parquet(path: Path | str, what: str = "parquet table", columns: Iterable[str] = ()):
    """A parquet table; ``columns`` must be among its columns."""
    import pandas as pd

    path = Path(path)
    try:
        frame = pd.read_parquet(path, use_threads=False)  # no thread pool: a quick exit after a refusal is safe
    except OSError as err:
        raise ConfigError(str(path), None, f"a readable {what} ({err.strerror or _first_line(err)})") from None
    except Exception as err:  # noqa: BLE001 - pyarrow raises ArrowInvalid and others on a damaged file
        raise ConfigError(str(path), None, f"a valid {what} ({_first_line(err)})") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ConfigError(str(path), f"columns {sorted(frame.columns)[:8]}...", f"a {what} with the columns {missing}")
    return frame


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def check_name(where: str, name: Any) -> str:
    """A name that becomes a folder name: letters, digits, ``_ . -``, no path separators, so an
    output can never land outside its parent folder (``../../x`` is refused)."""
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise ConfigError(where, name, "a plain name (letters, digits, '_', '.', '-'; no '/' or '..')")
    return name
