"""Reported clinical figures (``data/targets/clinical_targets.yaml``): loading and validation.

The file is a copy of ``shared/targets/clinical_targets.yaml`` kept with its sources; the code
never hard-codes a reported number.  Every target must name a source listed under ``sources``;
a percentage (no ``unit``) must lie in [0, 100], with ``lower <= value <= upper`` when given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emdsim.config.schema import DEFINITIONS, ConfigError

__all__ = ["Target", "TARGETS_FILE", "load_targets", "incidence_targets", "short_citation"]

TARGETS_FILE = Path(__file__).resolve().parents[3] / "data" / "targets" / "clinical_targets.yaml"


@dataclass(frozen=True)
class Target:
    name: str
    source: str
    citation: str
    value: Any = None
    lower: Any = None
    upper: Any = None
    n: int | None = None
    count: int | None = None
    definition: str | None = None
    unit: str = "%"
    kind: str = "proportion"
    ci: str = "none"
    setting: str = ""
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def timepoint(self) -> str | None:
        """``diagnosis`` or ``relapse`` when the name says so (``..._at_diagnosis``), else None."""
        if "_given_" in self.name:  # a conditional fraction, not a cohort incidence
            return None
        for point in ("diagnosis", "relapse"):
            if self.name.endswith(f"_at_{point}"):
                return point
        return None


def _check_percentage(where: str, value: Any) -> None:
    values = value if isinstance(value, list) else [value]
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0.0 <= float(v) <= 100.0:
            raise ConfigError(where, value, "a percentage in [0, 100]")


def load_targets(path: Path = TARGETS_FILE) -> list[Target]:
    """All targets of a targets file, validated (:class:`ConfigError` names the entry and field)."""
    from emdsim.config.inputs import read_yaml

    data = read_yaml(path, "targets file")
    if not isinstance(data, dict) or not isinstance(data.get("targets"), list):
        raise ConfigError("targets", str(path), "a mapping with a `targets` list and a `sources` mapping")
    sources = data.get("sources") or {}
    known = {
        "name",
        "value",
        "lower",
        "upper",
        "n",
        "count",
        "def",
        "unit",
        "kind",
        "ci",
        "setting",
        "note",
        "source",
        "approx",
    }
    out, names = [], set()
    for i, entry in enumerate(data["targets"]):
        name = entry.get("name") if isinstance(entry, dict) else None
        where = f"targets[{i}]" + (f" ({name})" if name else "")
        if not name:
            raise ConfigError(f"{where}.name", None, "every target needs a name")
        if name in names:
            raise ConfigError(f"{where}.name", name, "a name used once")
        names.add(name)
        source = entry.get("source")
        if not source:
            raise ConfigError(f"{where}.source", source, "every target needs a source")
        if source not in sources:
            raise ConfigError(f"{where}.source", source, f"a key of `sources` ({sorted(sources)})")
        definition = entry.get("def")
        if definition is not None and definition not in DEFINITIONS:
            raise ConfigError(f"{where}.def", definition, f"one of {list(DEFINITIONS)}")
        unit = entry.get("unit", "%")
        kind = entry.get("kind", "proportion")
        if unit == "%" and kind == "proportion":
            for key in ("value", "lower", "upper"):
                if entry.get(key) is not None:
                    _check_percentage(f"{where}.{key}", entry[key])
            v, lo, hi = entry.get("value"), entry.get("lower"), entry.get("upper")
            if all(isinstance(x, int | float) for x in (v, lo, hi)) and not lo <= v <= hi:
                raise ConfigError(f"{where}.value", v, f"inside its interval [{lo}, {hi}]")
        n = entry.get("n")
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise ConfigError(f"{where}.n", n, "a positive integer")
        out.append(
            Target(
                name=name,
                source=source,
                citation=str(sources[source]),
                value=entry.get("value"),
                lower=entry.get("lower"),
                upper=entry.get("upper"),
                n=n,
                count=entry.get("count"),
                definition=definition,
                unit=unit,
                kind=kind,
                ci=str(entry.get("ci", "none")),
                setting=str(entry.get("setting", "")),
                note=str(entry.get("note", "")),
                extra={k: v for k, v in entry.items() if k not in known},
            )
        )
    return out


def short_citation(target: Target) -> str:
    """``Usmani 2012``: the first author's surname (the citation's first word) and the first year in
    it, for figure labels; the source key if the citation has no year."""
    import re

    years = re.findall(r"\b(?:19|20)\d\d\b", target.citation)
    first = target.citation.split()[0].rstrip(",.") if target.citation.split() else target.source
    institutional = {"editorial": "seed editorial", "hospital": "Hospital Clínic Barcelona", "greek": "Greek MSG"}
    name = institutional.get(first.lower(), first)
    return f"{name} {years[0]}" if years else name


def incidence_targets(targets: list[Target]) -> list[Target]:
    """Percentages at diagnosis or relapse with one value and a definition (for figures)."""
    return [
        t
        for t in targets
        if t.kind == "proportion"
        and t.unit == "%"
        and t.timepoint
        and t.definition
        and isinstance(t.value, int | float)
    ]
