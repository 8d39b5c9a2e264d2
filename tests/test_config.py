"""Every config group composes and validates; bad values are named with what is allowed."""

from __future__ import annotations

import dataclasses

import pytest

from emdsim.config.load import CONF_DIR, compose, load, to_config
from emdsim.config.schema import ConfigError, describe_parameters

GROUPS = sorted(d.name for d in CONF_DIR.iterdir() if d.is_dir() and d.name != "experiment")
CHOICES = [(g, p.stem) for g in GROUPS for p in sorted((CONF_DIR / g).glob("*.yaml"))]


@pytest.mark.parametrize("group,option", CHOICES, ids=[f"{g}={o}" for g, o in CHOICES])
def test_every_group_option_composes_and_validates(group, option):
    cfg = load([f"{group}={option}"])
    assert cfg.cohort.n_patients >= 1


def test_every_experiment_composes():
    for path in sorted((CONF_DIR / "experiment").glob("*.yaml")):
        load([f"experiment={path.stem}"])


def test_every_number_has_unit_and_source():
    cfg = load([])
    rows = describe_parameters(cfg)
    assert len(rows) > 40
    for row in rows:
        assert row["unit"] and row["source"], row["field"]
    for node in cfg.anatomy.nodes:
        assert node.source, node.name
    for name, drug in cfg.drugs.items():
        assert drug.source, name
    for sw in cfg.traits.switches:
        assert sw.source, sw.name
    for name, dist in cfg.traits.distributions.items():
        assert dist.source, name


def test_every_numeric_field_of_every_config_class_has_unit_range_and_source():
    """A new bare ``float`` or ``int`` field anywhere in the schema (list items included) fails here:
    each must be a ``param(unit, source, lo, hi, ...)`` with both bounds (why=... for ranges other
    than [0, 1])."""
    import dataclasses
    import typing

    from emdsim.config import schema

    def numeric(t) -> bool:  # a number, or a list / mapping / optional of numbers
        args = [a for a in typing.get_args(t) if a is not type(None) and a is not str]
        return t in (int, float) or (bool(args) and all(numeric(a) for a in args))

    classes = [obj for obj in vars(schema).values() if dataclasses.is_dataclass(obj) and isinstance(obj, type)]
    assert len(classes) >= 15
    assert numeric(dict[str, float]) and numeric(list[int]) and not numeric(list[str]) and not numeric(str)
    bare = []
    for cls in classes:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if not numeric(hints[f.name]):
                continue
            meta = f.metadata
            if f.name == "seed":
                continue  # the root of the random numbers: any non-negative integer (validated)
            ok = (
                meta.get("unit")
                and meta.get("source")
                and meta.get("lo") is not None
                and meta.get("hi") is not None
                and (meta.get("range_source") or (meta["lo"], meta["hi"]) == (0.0, 1.0))
            )
            if not ok:
                bare.append(f"{cls.__name__}.{f.name}")
    assert not bare, bare


def test_list_items_are_parameters_with_their_own_source():
    """Switch rates are parameters (designs and fits can vary them) named as Hydra overrides name
    them, with each switch's own source."""
    cfg = load(["traits.switches.2.rate_per_division=3e-10"])
    rows = {r["field"]: r for r in describe_parameters(cfg)}
    row = rows["traits.switches.2.rate_per_division"]
    assert row["value"] == 3e-10 and (row["lo"], row["hi"]) == (0.0, 1.0)
    assert row["source"].startswith("niche_independence: ") and cfg.traits.switches[2].source in row["source"]


@pytest.mark.parametrize(
    "override,field",
    [
        ("cohort.n_patients=-5", "cohort.n_patients"),
        ("cohort.n_patients=abc", "cohort.n_patients"),
        ("spread.p_colonisation=1.5", "spread.p_colonisation"),
        ("spread.cortical_disruption_occupancy=-0.1", "spread.cortical_disruption_occupancy"),
        ("growth.death_rate_per_day=-0.1", "growth.death_rate_per_day"),
        ("sim.dt_days=0", "sim.dt_days"),
        ("traits.p_high_risk=2", "traits.p_high_risk"),
        ("traits.switches.0.rate_per_division=-1e-9", "traits.switches[0](cd56_loss).rate_per_division"),
        ("anatomy.nodes.0.soil=1.5", "anatomy.nodes[0](cranium).soil"),
        ("engine=fast", "engine"),
        ("+spread.foo=1", "spread.foo"),
        ("treatment.first_line.0.drugs=[aspirin]", "treatment.first_line[0](vrd_induction).drugs"),
        ("scenario.imaging=xray", "scenario.imaging"),
        ("sim.max_step_days=10", "sim.max_step_days"),
        ("sim.step_margin=0.5", "sim.step_margin"),
        ("++treatment.first_line.0.dose_intensity=3", "treatment.first_line[0](vrd_induction).dose_intensity"),
    ],
)
def test_bad_values_are_named(override, field):
    with pytest.raises(ConfigError) as err:
        to_config(compose([override]))
    assert err.value.field_path == field
    msg = str(err.value)
    assert field in msg and ("allowed" in msg or "must" in msg or "unknown" in msg or "could not" in msg)


def test_unreachable_organ_is_rejected():
    cfg = compose([])
    skin = [i for i, n in enumerate(cfg.anatomy.nodes) if n.name == "skin"][0]
    with pytest.raises(ConfigError, match="reachable from the blood"):
        to_config(compose([f"anatomy.nodes.{skin}.share=0"]))


def test_schemas_are_not_frozen_so_overrides_work():
    cfg = load(["growth.birth_rate_per_day=0.02"])
    assert cfg.growth.birth_rate_per_day == 0.02
    assert not type(cfg.growth).__dataclass_params__.frozen
    dataclasses.replace(cfg.growth, birth_rate_per_day=0.01)
