"""The fit: a specification of parameters, targets and cohort scenarios (:mod:`.spec`), its objective
(statistics of simulated cohorts and their distance to the reported figures, :mod:`.objective`) and
the ABC-SMC adapter (:mod:`.abc`, the only module that imports pyabc)."""

from emdsim.studies.fit.objective import (
    bound_z_squared,
    check_constraint,
    cohort_statistics,
    distance,
    simulate,
    simulation_seed,
    weighted_quantile,
    with_parameters,
    z_squared,
)
from emdsim.studies.fit.spec import (
    CHECKS,
    STATISTICS,
    FitConstraint,
    FitParameter,
    FitRequirement,
    FitSpec,
    FitTarget,
    parse_fit_spec,
)

__all__ = [
    "CHECKS",
    "STATISTICS",
    "FitConstraint",
    "FitParameter",
    "FitRequirement",
    "FitSpec",
    "FitTarget",
    "bound_z_squared",
    "check_constraint",
    "cohort_statistics",
    "distance",
    "parse_fit_spec",
    "simulate",
    "simulation_seed",
    "weighted_quantile",
    "with_parameters",
    "z_squared",
]
