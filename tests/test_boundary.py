"""The compiled boundary: typed records filled and read by name.

What crosses into the compiled loops (``emdsim.engine.kernels``) is a few records: the state, the
per-patient tables and the per-configuration tables as NamedTuples of arrays, and the constants as
numpy records whose fields are the configuration's own names.  These tests hold the properties that
make a change there local: every number of the configuration reaches the loops under its name, a
new field needs no edit of the boundary, and the records are the state's arrays, not copies.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import pytest

from emdsim.biology.patients import sample_patients
from emdsim.config.schema import ClinicalConfig, GrowthConfig, SimConfig, SpreadConfig, param
from emdsim.engine import build_tables, init_state, kernels
from emdsim.engine.state import course_state, patient_tables
from emdsim.engine.tables import _numbers, _record


def test_every_number_of_the_configuration_reaches_the_loops_by_its_own_name(make_cfg):
    """Each number of the growth, spread and sim sections is a field of the step's record, and each
    number of the clinical section one of the clinical course's, with the configured value."""
    cfg = make_cfg("spread.p_colonisation=0.00123", "clinical.tumour_death_exponent=1.7")
    tb = build_tables(cfg)
    step, clinic = tb.advance_constants[0], tb.clinic_constants[0]
    for section, record in ((cfg.growth, step), (cfg.spread, step), (cfg.sim, step), (cfg.clinical, clinic)):
        for f in fields(section):
            value = getattr(section, f.name)
            if isinstance(value, int | float):
                assert record[f.name] == value, f.name
    assert step["p_colonisation"] == 0.00123 and clinic["tumour_death_exponent"] == 1.7
    # follow-up is the patient's own (to the study's data cut), in the patient tables: without
    # accrual, sim.followup_years for everyone
    assert "followup_days" not in clinic.dtype.names
    patients = sample_patients(cfg, tb.world, np.arange(5))
    assert np.all(patients.followup_days == cfg.sim.followup_years * 365.25)


def test_a_new_rate_needs_no_edit_of_the_boundary():
    """Adding a rate is a config field (with unit, source and range), its rule, and its use
    (``c.<name>`` in the kernel): the constants record takes the field by its name.  Shown on a
    section extended by one rate, the way a new field of SpreadConfig would arrive."""

    @dataclass
    class ExtendedSpread(SpreadConfig):
        em_clearance_rate_per_day: float = param(
            "1/day", "example: immune clearance of extramedullary cells", lo=0.0, hi=10.0, why="example", default=0.25
        )

    names = dict(kernels.config_numbers(GrowthConfig, ExtendedSpread, SimConfig))
    assert names["em_clearance_rate_per_day"] is np.float64
    assert set(kernels.ADVANCE_RECORD.names) - set(names) == {
        "p_spill_per_step",
        "p_arrest_per_step",
        "p_die_in_blood_per_step",
        "trait_niche_dependence",
        "trait_proliferation",
        "trait_em_proliferation",
        "trait_drug_sensitivity",
        "blood_node",
        "route_local",
        "route_haematogenous",
        "status_followed",
    }, "only derived values are named by hand"
    spread = ExtendedSpread(**{f.name: 0.5 for f in fields(SpreadConfig)})
    dtype = np.dtype(kernels.config_numbers(ExtendedSpread))
    assert _record(dtype, _numbers(spread))[0]["em_clearance_rate_per_day"] == 0.25


def test_a_field_in_two_sections_of_one_record_is_refused():
    """Names are the contract: a number may not mean two things in one record."""

    @dataclass
    class Clash:
        dt_days: float = param("days", "example", lo=0.0, hi=1.0, default=0.5)

    with pytest.raises(TypeError, match="dt_days"):
        kernels.config_numbers(SimConfig, Clash)
    assert "dt_days" in kernels.CLINIC_RECORD.names and not set(dict(kernels.config_numbers(ClinicalConfig))) & {
        "dt_days"
    }


def test_the_records_are_the_states_arrays_by_name_not_copies(make_cfg):
    """CourseState and PatientTables are filled by name from the CohortState: the compiled loops
    write into the state's own arrays; the views are rebuilt when an array is replaced."""
    cfg = make_cfg("engine=exact")
    tb = build_tables(cfg)
    st = init_state(tb, sample_patients(cfg, tb.world, np.arange(5)))
    state = kernels.CourseState(*course_state(st))
    for name in kernels.CourseState._fields:
        assert getattr(state, name) is getattr(st, name), name
    pt = kernels.PatientTables(*patient_tables(st))
    assert pt.traits is st.traits and pt.age_years is st.patients.age_years
    assert pt.followup_days is st.patients.followup_days
    args = st.kernel_args()
    assert st.kernel_args() is args  # built once per state
    st.cells = st.cells.copy()
    assert st.kernel_args() is not args and st.kernel_args()[0][0] is st.cells
    step_tables = kernels.StepTables(*tb.step_args)
    assert step_tables.kill_rate_per_day is tb.kill_table and step_tables.soil is tb.world.soil
