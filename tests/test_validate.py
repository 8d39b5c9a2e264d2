"""``emdsim-fit validate``: the spec maps every reported figure, the statistics measure what they say
on hand-built cohorts, the scoring counts what is inside, and bad specs are one line."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from emdsim.analysis.evidence import STATISTICS, Measure, measure
from emdsim.analysis.targets import load_targets
from emdsim.cli.validate import load_validation_spec
from emdsim.config.schema import ConfigError
from emdsim.studies.validate import COLUMNS, _monte_carlo, markdown, parse_validation_spec, score

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "fits" / "evidence.yaml"
TARGETS = load_targets()
SCENARIOS = ["default", "ebmt", "registry", "usmani", "varettoni"]
EXPERIMENTS = ["fitted"]


def _spec_data() -> dict:
    return yaml.safe_load(SPEC.read_text())


def test_the_shipped_spec_scores_every_reported_figure():
    spec = load_validation_spec(SPEC)
    names = {s.target.name for s in spec.targets} | {t.name for t, _ in spec.unscored}
    assert names == {t.name for t in TARGETS} and len(names) == 28
    assert len(spec.targets) == 28 and not spec.unscored  # every figure is expressible
    ebmt = spec.scenarios["ebmt"]
    assert ebmt.n_patients == 3744 and "scenario=ebmt" in ebmt.overrides  # the reported n by default


def test_a_cohort_scored_only_at_diagnosis_stops_its_courses_there(tmp_path):
    """EBMT's three figures are at diagnosis: its sweep stops every course there (the same values,
    tests/test_stop_at_diagnosis.py); Usmani's are also read at relapse, so its sweep follows them."""
    from argparse import Namespace

    from emdsim.analysis.evidence import STOP_AT_DIAGNOSIS
    from emdsim.cli.validate import _sweeps

    spec = load_validation_spec(SPEC)
    args = Namespace(tiny=False, experiment=None, overrides=[])
    ((_, _, ebmt),) = _sweeps(spec, "ebmt", tmp_path, args)
    ((_, _, usmani),) = _sweeps(spec, "usmani", tmp_path, args)
    assert all(o in ebmt for o in STOP_AT_DIAGNOSIS) and ebmt.index(STOP_AT_DIAGNOSIS[0]) < ebmt.index("figures=false")
    assert not any(o in usmani for o in STOP_AT_DIAGNOSIS)


def test_a_mixed_scenario_splits_its_patients_by_share():
    """The Czech registry: transplanted and not, their shares of the reported n (the last part takes
    the rest), each part with the scenario's overrides and its own."""
    czech = load_validation_spec(SPEC).scenarios["czech"]
    assert [p.name for p in czech.parts] == ["transplant", "no_transplant"]
    assert czech.part_sizes() == [round(0.35 * 4985), 4985 - round(0.35 * 4985)]
    assert "treatment=vmp" in czech.parts[1].overrides and "scenario=registry" in czech.overrides


def test_a_mixed_cohort_pools_its_parts_replicate_by_replicate():
    """Replicate r of a mixed scenario is part 0's replicate r and part 1's replicate r as one cohort;
    a replicate only one part finished is left out (not scored half-mixed)."""
    from emdsim.cli.validate import _mixed

    def rep(n, hr):
        return _patients([{"high_risk": hr}] * n), NO_LESIONS

    parts = [{0: rep(2, True), 1: rep(2, True)}, {0: rep(3, False), 2: rep(3, False)}]
    mixed = _mixed(parts)
    assert len(mixed) == 1
    p, _ = mixed[0]
    assert len(p) == 5 and p["patient_id"].is_unique and int(p["high_risk"].sum()) == 2


@pytest.mark.parametrize(
    "change,field",
    [
        (lambda d: d["targets"].update(nonesuch={"scenario": "usmani", "statistic": "em_at_diagnosis"}),
         "validate.targets.nonesuch"),
        (lambda d: d["targets"].pop("ebmt_em_at_diagnosis"), "validate.targets"),
        (lambda d: d["targets"]["ebmt_em_at_diagnosis"].update(scenario="mars"),
         "validate.targets.ebmt_em_at_diagnosis.scenario"),
        (lambda d: d["targets"]["ebmt_em_at_diagnosis"].update(statistic="luck"),
         "validate.targets.ebmt_em_at_diagnosis.statistic"),
        (lambda d: d["targets"]["ebmt_em_at_diagnosis"].update(statistic="median_os_years_from_emd"),
         "validate.targets.ebmt_em_at_diagnosis.statistic"),
        (lambda d: d["targets"]["spanish_asct_em_at_diagnosis"].pop("interval"),
         "validate.targets.spanish_asct_em_at_diagnosis.interval"),
        (lambda d: d["targets"]["spanish_asct_em_at_diagnosis"].pop("why"),
         "validate.targets.spanish_asct_em_at_diagnosis.why"),
        (lambda d: d["scenarios"]["spanish_asct"].pop("n_patients"), "validate.scenarios.spanish_asct.n_patients"),
        (lambda d: d["scenarios"]["usmani"].update(overrides=["scenario=atlantis"]),
         "validate.scenarios.usmani.overrides"),
        (lambda d: d.update(experiment="guess"), "validate.experiment"),
        (lambda d: d.update(replicates=0), "validate.replicates"),
        (lambda d: d["targets"].update(thalidomide_response_with_em={"expressible": False}),
         "validate.targets.thalidomide_response_with_em.why"),
        (lambda d: d["scenarios"]["czech"]["parts"][0].update(share=0.5), "validate.scenarios.czech.parts"),
        (lambda d: d["scenarios"]["czech"]["parts"][0].update(share=0), "validate.scenarios.czech.parts[0].share"),
        (lambda d: d["scenarios"]["czech"]["parts"][1].update(name="transplant"),
         "validate.scenarios.czech.parts[1].name"),
        (lambda d: d["scenarios"]["czech"]["parts"].pop(), "validate.scenarios.czech.parts"),
        (lambda d: d["scenarios"]["czech"]["parts"][1].update(overrides=["scenario=atlantis"]),
         "validate.scenarios.czech.parts[1].overrides"),
        (lambda d: d["scenarios"]["czech"]["parts"][1].update(age=70), "validate.scenarios.czech.parts[1]"),
    ],
)  # fmt: skip
def test_a_bad_spec_is_refused_naming_the_entry(change, field):
    data = _spec_data()
    change(data)
    with pytest.raises(ConfigError) as err:
        parse_validation_spec(data, TARGETS, SCENARIOS, EXPERIMENTS)
    assert err.value.field_path == field


def _patients(rows: list[dict]) -> pd.DataFrame:
    base = {
        "diagnosed": True, "emd_at_diagnosis": False, "em_at_diagnosis": False, "ps_at_diagnosis": False,
        "relapsed": False, "em_at_relapse": False, "emd_at_relapse": False, "em_ever": False, "ps_ever": False,
        "em_first_detected_days": np.nan, "ps_first_detected_days": np.nan, "high_risk": False,
        "pfs_days": 3000.0, "pfs_event": False, "os_days": 3000.0, "os_event": False,
        "sites_at_diagnosis": [], "sites_at_relapse": [], "salvaged": False, "salvage_with_emd": False,
        "salvage_serum_response": False, "salvage_soft_tissue_response": False, "emd_at_later_line_days": np.nan,
    }  # fmt: skip
    return pd.DataFrame([base | {"patient_id": i} | r for i, r in enumerate(rows)])


NO_LESIONS = pd.DataFrame(columns=["patient_id", "site", "detectable_days"])


def test_fractions_count_their_own_denominators():
    """Secondary EMD: seen after diagnosis, none at diagnosis; of diagnosed, or of those without EMD
    at diagnosis; EMD at relapse given EMD at diagnosis: of relapsed patients who had it."""
    p = _patients(
        [
            {"em_ever": True, "em_first_detected_days": 400.0},  # secondary
            {"emd_at_diagnosis": True, "ps_at_diagnosis": True, "ps_ever": True, "ps_first_detected_days": 0.0,
             "relapsed": True, "emd_at_relapse": True},
            {"emd_at_diagnosis": True, "em_at_diagnosis": True, "em_ever": True, "em_first_detected_days": 0.0,
             "relapsed": True},
            {},
            {"diagnosed": False},
        ]
    )  # fmt: skip
    m = {name: measure(name, p, NO_LESIONS) for name in STATISTICS if STATISTICS[name].kind == "percent"}
    assert (m["secondary_emd"].value, m["secondary_emd"].n) == (25.0, 4)
    assert (m["secondary_emd_without_emd_at_diagnosis"].value, m["secondary_emd_without_emd_at_diagnosis"].n) == (
        50.0,
        2,
    )
    assert m["emd_ever"].value == 75.0 and m["emd_at_diagnosis"].value == 50.0 and m["em_at_diagnosis"].value == 25.0
    assert m["em_ever"].value == 50.0  # organ only: the paraskeletal patient does not count
    given = m["emd_at_relapse_given_emd_at_diagnosis"]
    assert (given.value, given.n) == (50.0, 2)
    assert measure("median_months_to_secondary_emd", p, NO_LESIONS).value == pytest.approx(400.0 / 30.4375)


def test_the_kaplan_meier_risk_of_secondary_emd_censors_deaths():
    """Of 4 patients without EMD at diagnosis, EMD at 100 and 300 days, a death at 200 (censored) and
    one alive at the end: S = 3/4 after 100 days, x 1/2 after 300 (2 at risk): a risk of 62.5 %, where
    the crude share is 50 %. The patient with EMD at diagnosis and the undiagnosed one are left out."""
    p = _patients(
        [
            {"em_ever": True, "em_first_detected_days": 100.0, "os_days": 900.0, "os_event": True},
            {"os_days": 200.0, "os_event": True},
            {"ps_ever": True, "ps_first_detected_days": 300.0, "os_days": 700.0, "os_event": True},
            {"os_days": 1000.0},
            {"emd_at_diagnosis": True, "ps_at_diagnosis": True, "ps_ever": True, "ps_first_detected_days": 0.0},
            {"diagnosed": False},
        ]
    )
    risk = measure("secondary_emd_risk_km", p, NO_LESIONS)
    assert risk.n == 4 and risk.value == pytest.approx(62.5)
    assert measure("secondary_emd_without_emd_at_diagnosis", p, NO_LESIONS).value == pytest.approx(50.0)


def test_a_registry_counts_emd_recorded_when_a_later_line_starts():
    """Stork's registry records EMD at each line's start: secondary EMD is EMD recorded at a later
    line's start without EMD at diagnosis; a lesion seen only off therapy is not recorded, and a
    patient with EMD at diagnosis is in neither survival group."""
    seen = {"em_ever": True, "em_first_detected_days": 300.0, "emd_at_later_line_days": 300.0, "os_event": True}
    future = [dict(seen, os_days=d) for d in (600.0, 900.0, 1200.0)]
    off_therapy = {"em_ever": True, "em_first_detected_days": 2900.0, "os_days": 2950.0, "os_event": True}
    never = [{"os_days": d, "os_event": True} for d in (2000.0, 2500.0)]
    at_dx = {
        "emd_at_diagnosis": True,
        "em_at_diagnosis": True,
        "em_ever": True,
        "em_first_detected_days": 0.0,
        "emd_at_later_line_days": 400.0,
        "os_days": 100.0,
        "os_event": True,
    }
    p = _patients([*future, off_therapy, *never, at_dx])
    share = measure("secondary_emd_at_line_start", p, NO_LESIONS)
    assert (share.value, share.n) == (pytest.approx(300.0 / 7), 7)
    assert measure("secondary_emd", p, NO_LESIONS).value == pytest.approx(400.0 / 7)  # any time: 4 of 7
    pair = measure("median_os_months_future_emd_at_line_vs_none", p, NO_LESIONS).value
    assert pair == pytest.approx([900.0 / 30.4375, 2500.0 / 30.4375])  # none: 2000, 2500, 2950


def test_cns_counts_a_lesion_seen_before_the_end_of_the_course():
    p = _patients([{"os_days": 500.0}, {"os_days": 500.0}, {"os_days": 500.0}, {}])
    lesions = pd.DataFrame(
        {
            "patient_id": [0, 1, 2, 3],
            "site": ["cns", "cns", "liver", "cns"],
            "detectable_days": [100.0, 800.0, 50.0, np.nan],
        }
    )
    assert measure("cns_ever", p, lesions).value == 25.0  # only patient 0: 1 seen after the end, 3 never


def test_survival_by_future_emd_and_from_emd():
    """Kaplan-Meier medians, uncensored here: future EMD (secondary) vs never; OS from the first EMD."""
    future = [
        {"em_ever": True, "em_first_detected_days": 300.0, "os_days": d, "os_event": True}
        for d in (900.0, 1200.0, 1500.0)
    ]
    never = [{"os_days": d, "os_event": True} for d in (2000.0, 2500.0, 3000.0)]
    p = _patients(future + never)
    pair = measure("median_os_months_future_emd_vs_none", p, NO_LESIONS).value
    assert pair == pytest.approx([1200.0 / 30.4375, 2500.0 / 30.4375])
    years = measure("median_os_years_from_emd", p, NO_LESIONS).value
    assert years == pytest.approx(900.0 / 365.25)
    censored = _patients([{"em_ever": True, "em_first_detected_days": 10.0}])
    assert math.isinf(measure("median_os_years_from_emd", censored, NO_LESIONS).value)  # not reached


def test_os_from_em_starts_at_the_first_organ_lesion_and_ignores_paraskeletal_patients():
    """Weinstock's EMD is organ disease: OS is counted from the first EM seen, not from an earlier PS."""
    both = {"ps_ever": True, "ps_first_detected_days": 100.0, "em_ever": True, "em_first_detected_days": 500.0}
    rows = [dict(both, os_days=d, os_event=True) for d in (900.0, 1100.0, 1300.0)]
    ps_only = [{"ps_ever": True, "ps_first_detected_days": 0.0, "os_days": 5000.0, "os_event": True}] * 5
    p = _patients(rows + ps_only)
    assert measure("median_os_years_from_em", p, NO_LESIONS).value == pytest.approx(600.0 / 365.25)
    assert measure("median_os_years_from_emd", p, NO_LESIONS).value > 4000.0 / 365.25  # the PS patients dominate


def test_salvage_responses_by_compartment():
    """Of patients whose first salvage started: with EMD at its start, a response needs serum and soft
    tissue; without, serum alone; the soft-tissue response is of those with EMD."""
    base = {"salvaged": True, "salvage_with_emd": True, "salvage_serum_response": True}
    p = _patients(
        [
            base | {"salvage_soft_tissue_response": False},  # serum responds, the mass does not
            base | {"salvage_soft_tissue_response": True},
            {"salvaged": True, "salvage_with_emd": False, "salvage_serum_response": True,
             "salvage_soft_tissue_response": False},
            {"salvaged": True, "salvage_with_emd": False, "salvage_serum_response": False,
             "salvage_soft_tissue_response": False},
            {"salvaged": False, "salvage_with_emd": False, "salvage_serum_response": False,
             "salvage_soft_tissue_response": False},
        ]
    )  # fmt: skip
    assert measure("salvage_response_with_emd", p, NO_LESIONS) == Measure(50.0, 2)
    assert measure("salvage_serum_response_without_emd", p, NO_LESIONS) == Measure(50.0, 2)
    assert measure("salvage_soft_tissue_response", p, NO_LESIONS) == Measure(50.0, 2)


def test_qualitative_findings():
    p = _patients(
        [
            {"em_at_diagnosis": True, "emd_at_diagnosis": True, "em_ever": True, "high_risk": True,
             "sites_at_diagnosis": ["skin", "liver"], "os_days": 100.0, "os_event": True, "pfs_days": 50.0,
             "pfs_event": True},
            {"em_at_diagnosis": True, "emd_at_diagnosis": True, "em_ever": True, "high_risk": True,
             "sites_at_diagnosis": ["skin", "ps_ribs"], "os_days": 200.0, "os_event": True, "pfs_days": 80.0,
             "pfs_event": True},
            {"os_days": 900.0, "os_event": True, "pfs_days": 400.0, "pfs_event": True},
        ]
    )  # fmt: skip
    assert measure("top_em_site_at_diagnosis", p, NO_LESIONS).value == ["skin"]
    assert measure("em_more_in_high_risk", p, NO_LESIONS).value is True
    assert measure("emd_shorter_pfs_os", p, NO_LESIONS).value is True


def test_scoring_counts_inside_and_lists_what_cannot_be_expressed():
    """A fraction inside its interval, one outside, a qualitative finding, a pair and the figures
    without a statistic: inside only where the pooled replicates say so."""
    data = _spec_data()
    data["targets"]["thalidomide_response_with_em"] = {"expressible": False, "why": "for the test"}
    spec = parse_validation_spec(data, TARGETS, SCENARIOS + ["registry"], EXPERIMENTS)
    rows = [{"em_at_diagnosis": True, "emd_at_diagnosis": True, "em_ever": True, "sites_at_diagnosis": ["skin"]}]
    rows += [{} for _ in range(26)]  # EM at diagnosis 1/27 = 3.7 %: inside EBMT's [3.2, 4.4]
    p = _patients(rows)
    table = score(spec, {"ebmt": [(p, NO_LESIONS)], "usmani": [(p, NO_LESIONS), (p, NO_LESIONS)]})
    assert list(table.columns) == COLUMNS and len(table) == 28
    row = table.set_index("target")
    assert row.loc["ebmt_em_at_diagnosis", "inside"] and row.loc["ebmt_em_at_diagnosis", "simulated"] == pytest.approx(
        100 / 27
    )
    assert not row.loc["ebmt_ps_at_diagnosis", "inside"] and row.loc["ebmt_ps_at_diagnosis", "simulated"] == 0.0
    assert (
        row.loc["usmani_top_site_at_diagnosis", "inside"]
        and row.loc["usmani_em_at_diagnosis", "per_seed_text"].count(";") == 1
    )
    assert not row.loc["varettoni_em_at_diagnosis", "inside"]  # no cohort for the scenario: not inside
    assert (
        not row.loc["thalidomide_response_with_em", "expressible"]
        and not row.loc["thalidomide_response_with_em", "inside"]
    )
    assert row.loc["ebmt_em_at_diagnosis", "within_2x"] and not row.loc["ebmt_ps_at_diagnosis", "within_2x"]


@pytest.mark.e2e
def test_a_bad_spec_through_the_command_is_one_line_and_exit_2(tmp_path):
    data = _spec_data()
    data["targets"]["ebmt_em_at_diagnosis"]["statistic"] = "luck"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "emdsim.cli.fit", "validate", str(bad), "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "validate.targets.ebmt_em_at_diagnosis.statistic" in lines[0] and "luck" in lines[0]
    assert not out.exists()


@pytest.mark.slow
def test_the_shipped_spec_runs_end_to_end_on_tiny_cohorts(tmp_path):
    """Every scenario runs as a sweep (in process), every figure gets a row, the table, report and
    forest plot are written; a re-run resumes the finished jobs."""
    from emdsim.cli.fit import main

    with pytest.raises(SystemExit) as stop:
        main(["validate", str(SPEC), "--tiny", "--in-process", "--out", str(tmp_path)])
    assert stop.value.code in (0, 1)
    table = pd.read_parquet(tmp_path / "validation.parquet")
    assert len(table) == 28 and table["expressible"].all()
    text = (tmp_path / "validation.md").read_text()
    assert f"**{int(table['inside'].sum())} of 28 reported figures inside" in text
    assert (tmp_path / "validation_forest.png").stat().st_size > 10_000


@pytest.mark.slow
def test_a_changed_model_in_the_same_folder_is_reported_not_mixed(tmp_path, capsys):
    """Re-validating into a folder whose jobs ran another configuration (as after a model change)
    keeps those jobs (the sweep refuses them), says so per scenario, marks the report incomplete
    and exits 1; changed overrides are refused before any job starts (exit 2)."""
    from emdsim.cli.fit import main

    args = ["validate", str(SPEC), "--tiny", "--in-process", "--out", str(tmp_path)]
    with pytest.raises(SystemExit):
        main(args)
    job = tmp_path / "sweeps" / "usmani" / "0" / "config.yaml"
    job.write_text(job.read_text() + "# another model version\n")  # what a model change does to a job
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        main(args)
    assert stop.value.code == 1
    assert "usmani: 0 of 1 replicates finished" in capsys.readouterr().err
    assert "**Incomplete:** usmani" in (tmp_path / "validation.md").read_text()
    with pytest.raises(SystemExit) as stop:
        main([*args, "sim.extinction_cells=2"])
    assert stop.value.code == 2


def test_the_ratio_to_a_range_or_a_zero_is_against_the_intervals_middle():
    """A reported range without a value (the seed's 7-18 %) and a reported 0 (no response in 0 of 11)
    are compared with their interval's middle; 0 simulated for a reported 0 is a ratio of 1."""
    spec = load_validation_spec(SPEC)
    p = _patients([{"emd_at_diagnosis": True}, {}, {}, {}, {}, {}, {}, {}, {}, {}])  # 10 % at diagnosis
    table = score(spec, {"seed_series": [(p, NO_LESIONS)], "rosinol": [(p, NO_LESIONS)]}).set_index("target")
    assert table.loc["em_at_diagnosis_range_seed", "ratio"] == pytest.approx(10.0 / 12.5)
    assert table.loc["em_at_diagnosis_range_seed", "within_2x"]
    assert np.isnan(table.loc["thalidomide_response_with_em", "ratio"])  # nobody with EMD at salvage: n/a
    one = _patients([{"salvaged": True, "salvage_with_emd": True}] + [{}] * 9)  # 1 with EMD, no response
    row = score(spec, {"rosinol": [(one, NO_LESIONS)]}).set_index("target").loc["thalidomide_response_with_em"]
    # 0 % responded, reported 0 of 11: inside, so within a factor of 2 although the ratio to the
    # interval's middle is 0
    assert row["inside"] and row["ratio"] == 0.0 and row["within_2x"]


def test_pooled_replicates_keep_each_lesion_with_its_patient():
    """Replicates number their patients from 0: pooled, a lesion of replicate 2 must not count for
    patient 1 of replicate 1 (CNS ever: one patient of two in each replicate, so 50 % pooled)."""
    spec = load_validation_spec(SPEC)
    reps = []
    for _ in range(2):
        p = _patients([{}, {}])
        reps.append((p, pd.DataFrame({"patient_id": [1], "site": ["cns"], "detectable_days": [10.0]})))
    table = score(spec, {"greek_cns": reps}).set_index("target")
    assert table.loc["cns_myeloma_cumulative", "simulated"] == 50.0
    assert table.loc["cns_myeloma_cumulative", "per_seed_text"] == "50; 50"


def test_the_monte_carlo_error_is_the_replicates_spread_and_the_edge_is_measured_in_it():
    """Four seeds 4, 6, 5, 5 (sd 0.816, s.e. 0.408) pooled at 5 in [2, 5.5]: 0.5 from the upper edge,
    1.22 errors, so near it; at 6 it is outside by the same; a pair, one seed, no spread: none."""
    se, edge = _monte_carlo(5.0, [4.0, 6.0, 5.0, 5.0], 2.0, 5.5)
    assert se == pytest.approx(np.sqrt(2 / 3) / 2) and edge == pytest.approx(0.5 / se)
    assert _monte_carlo(6.0, [4.0, 6.0, 5.0, 5.0], 2.0, 5.5)[1] == pytest.approx(-0.5 / se)
    for args in (([1.0, 2.0], [[1.0, 2.0], [1.0, 3.0]], [0.0, 0.0], [5.0, 5.0]), (5.0, [5.0], 2.0, 6.0),
                 (5.0, [5.0, 5.0], 2.0, 6.0), ("skin", ["skin", "liver"], None, None)):  # fmt: skip
        assert all(np.isnan(_monte_carlo(*args)))
    frame = pd.DataFrame(
        {"inside": [True, False, True], "expressible": [True] * 3, "within_2x": [True] * 3,
         "edge_in_se": [1.0, -0.5, np.nan], "mc_se": [0.4, 0.4, np.nan], "target": ["a", "b", "c"],
         "scenario": ["s"] * 3, "statistic": ["x"] * 3, "note": [""] * 3, "reported_text": ["1"] * 3,
         "unit": ["%"] * 3, "interval_text": ["[0, 2]"] * 3, "simulated_text": ["1"] * 3,
         "per_seed_text": ["1; 1"] * 3}
    )  # fmt: skip
    text = markdown(frame, "# t")
    assert "Monte Carlo standard errors of an interval's edge" in text and ": 1 inside, 1 outside." in text
    assert "| 0.4 | yes (near the edge) |" in text and "| **no** (near the edge) |" in text


def test_the_forest_plot_draws_each_figures_monte_carlo_error(tmp_path):
    """A one-number figure's dot carries a whisker of +-2 Monte Carlo standard errors, as multiples of
    the reported value: seeds at 10, 20 and 30 % (pooled 20 %, s.e. 5.8) against the seed's 7-18 %
    (drawn against its middle, 12.5)."""
    from emdsim.viz.fitplots import validation_forest

    spec = load_validation_spec(SPEC)
    reps = [(_patients([{"emd_at_diagnosis": True}] * k + [{}] * (10 - k)), NO_LESIONS) for k in (1, 2, 3)]
    table = score(spec, {"seed_series": reps})
    row = table.set_index("target").loc["em_at_diagnosis_range_seed"]
    assert row["simulated"] == pytest.approx(20.0) and row["mc_se"] == pytest.approx(10.0 / math.sqrt(3))
    fig = validation_forest(table, tmp_path / "forest.png")
    want = [(20.0 - 2 * row["mc_se"]) / 12.5, (20.0 + 2 * row["mc_se"]) / 12.5]
    pairs = [np.sort(line.get_xdata()) for line in fig.axes[0].lines if len(line.get_xdata()) == 2]
    assert any(np.allclose(x, want) for x in pairs)
    assert (tmp_path / "forest.png").stat().st_size > 10_000
