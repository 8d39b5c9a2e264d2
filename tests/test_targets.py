"""The reported figures the model is compared with: loading and bad input."""

from __future__ import annotations

import pytest

from emdsim.analysis.targets import TARGETS_FILE, load_targets
from emdsim.config.schema import ConfigError

SOURCES = 'sources:\n  a2020: "Author A. Journal 2020."\n'


def test_the_shipped_targets_load_with_their_sources():
    targets = load_targets()
    assert len(targets) >= 20 and TARGETS_FILE.is_file()
    assert all(t.citation for t in targets)
    usmani = {t.name: t for t in targets}["usmani_em_at_diagnosis"]
    assert (usmani.value, usmani.n, usmani.definition, usmani.timepoint) == (3.4, 1965, "EM", "diagnosis")


@pytest.mark.parametrize(
    "entry, field, needle",
    [
        ("{name: x, value: 3.0, n: 10}", "targets[0] (x).source", "needs a source"),
        ("{name: x, value: 3.0, source: nobody}", "targets[0] (x).source", "a key of `sources`"),
        ("{name: x, value: 130.0, source: a2020}", "targets[0] (x).value", "a percentage in [0, 100]"),
        ("{name: x, value: 5.0, lower: -1.0, upper: 8.0, source: a2020}", "targets[0] (x).lower", "[0, 100]"),
        ("{name: x, value: 9.0, lower: 1.0, upper: 8.0, source: a2020}", "targets[0] (x).value", "inside its interval"),
        ("{name: x, value: 3.0, def: ORGAN, source: a2020}", "targets[0] (x).def", "one of"),
        ("{name: x, value: 3.0, n: 0, source: a2020}", "targets[0] (x).n", "positive integer"),
    ],
)
def test_bad_targets_are_rejected_with_field_and_value(tmp_path, entry, field, needle):
    path = tmp_path / "t.yaml"
    path.write_text(f"targets:\n  - {entry}\n{SOURCES}")
    with pytest.raises(ConfigError) as err:
        load_targets(path)
    assert err.value.field_path == field and needle in str(err.value)


def test_a_unit_other_than_percent_is_not_range_checked(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text(f"targets:\n  - {{name: m, value: 250.0, unit: months, source: a2020}}\n{SOURCES}")
    assert load_targets(path)[0].value == 250.0
