"""Virtual patients: the heterogeneity drawn once per patient before the dynamics start.

Each patient ``i`` draws from its own stream ``(PATIENT, i)`` of the seed tree (see :mod:`rng`),
so its baseline is the same whatever the cohort size, block or engine.

Drawn here: GEP70 high risk, molecular subgroup (MF / PR / other), centrosome amplification,
age, the (unsimulated) MGUS duration, the founder's spread over the skeleton, its trait levels
conditioned on risk, switch-rate multipliers, the procedures (wounds) of the scenario, how many
lines of therapy the patient can receive (the plan's attrition between lines) and how visible a
lesion at each site is to imaging (the modality's sensitivity curve).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from emdsim import rng as seeds
from emdsim.biology.anatomy import World
from emdsim.config.schema import TRAIT_NAMES, EmdConfig
from emdsim.units import DAYS_PER_YEAR

__all__ = ["ENTRY_STEP", "MAX_LINES", "SUBGROUPS", "PatientTable", "followup_days", "max_lines", "sample_patients"]

SUBGROUPS = ("other", "MF", "PR")
#: no patient starts more lines than this (a numerical cap: at 20 % attrition 0.8^29 ~ 0.2 % reach it)
MAX_LINES = 30


def max_lines(u: NDArray[np.float64], attrition: float) -> NDArray[np.int64]:
    """Lines of therapy each patient can start, from one uniform ``u`` per patient: every
    progression is followed by a next line with probability ``1 - attrition``, so
    P(max_lines > i) = (1 - attrition)^i (i >= 1), capped at :data:`MAX_LINES`."""
    go_on = 1.0 - attrition
    if go_on <= 0.0:
        return np.ones(u.shape, dtype=np.int64)
    if go_on >= 1.0:
        return np.full(u.shape, MAX_LINES, dtype=np.int64)
    # the number of i >= 1 with u < go_on^i, i.e. floor(log u / log go_on), plus the first line
    extra = np.floor(np.log(np.maximum(u, 1e-300)) / np.log(go_on))
    return (1 + np.minimum(extra, MAX_LINES - 1)).astype(np.int64)


@dataclass(frozen=True)
class PatientTable:
    patient_id: NDArray[np.int64]
    high_risk: NDArray[np.bool_]
    subgroup: NDArray[np.int64]  # index into SUBGROUPS
    centrosome_amplification: NDArray[np.bool_]
    age_years: NDArray[np.float64]  # at myeloma onset
    mgus_years: NDArray[np.float64]  # MGUS duration before onset (drawn, not simulated)
    base_traits: NDArray[np.float64]  # (P, T) founder traits
    proliferation: NDArray[np.float64]  # multiplier on the birth rate
    switch_factor: NDArray[np.float64]  # multiplier on every switch rate
    onset_share: NDArray[np.float64]  # (P, N) founder cells per node (marrow only), sums to 1
    phase_wound: NDArray[np.bool_]  # (P, n_first_line) the phase's wound is made
    surgery_day: NDArray[np.float64]  # (P, n_surgeries) days after diagnosis, NaN = none
    #: lines of therapy the patient starts at most (>= 1): after the last, no further therapy
    max_lines: NDArray[np.int64]
    #: (P, N) multiplier on the imaging threshold at each site: 10^(spread z), z standard normal
    visibility: NDArray[np.float64]
    #: days the patient is followed after diagnosis (to the study's data cut: staggered entry)
    followup_days: NDArray[np.float64]
    #: (P, N) a lesion seen at this site after diagnosis is treated locally and controlled
    #: (clinical.local_therapy; drawn once per patient and site, after everything else)
    local_therapy: NDArray[np.bool_]

    def __len__(self) -> int:
        return len(self.patient_id)


#: the golden ratio's fractional part: patient i enters at fraction frac(i * this) of the accrual
#: window, an even spread for any cohort size (a Weyl sequence)
ENTRY_STEP = (np.sqrt(5.0) - 1.0) / 2.0


def followup_days(ids: NDArray[np.int64], followup_years: float, accrual_years: float) -> NDArray[np.float64]:
    """Days from diagnosis to the data cut of patients ``ids``: ``followup_years`` for the first to
    enter, less the time it entered after the first. Entry is a property of the study's design, not
    drawn: patient i enters at fraction frac(i x golden ratio) of the accrual window, so entries are
    evenly spread whatever the cohort size and a patient's depends only on its id."""
    entry = np.mod(np.asarray(ids, dtype=np.float64) * ENTRY_STEP, 1.0) * accrual_years
    return (followup_years - entry) * DAYS_PER_YEAR


def sample_patients(cfg: EmdConfig, world: World, ids: NDArray[np.int64]) -> PatientTable:
    """Baselines of patients ``ids`` (vectorised after one small draw per patient stream)."""
    tr, n_t = cfg.traits, len(TRAIT_NAMES)
    n_first, n_surg = len(cfg.treatment.first_line), len(cfg.scenario.surgeries)
    n_u = 5 + n_t + n_first + 2 * n_surg
    n_z = 1 + n_t
    marrow = np.flatnonzero(world.is_marrow)
    alpha = cfg.growth.onset_site_concentration * world.share[marrow]
    alpha = np.maximum(alpha, 1e-3 * alpha.max())
    u = np.empty((len(ids), n_u))
    z = np.empty((len(ids), n_z))
    d = np.empty((len(ids), len(marrow)))
    v = np.empty(len(ids))
    zv = np.empty((len(ids), world.n_nodes))
    ul = np.empty((len(ids), world.n_nodes))
    for row, i in enumerate(ids):
        g = seeds.stream(cfg.seed, seeds.PATIENT, int(i))
        u[row] = g.random(n_u)
        z[row] = g.standard_normal(n_z)
        d[row] = g.dirichlet(alpha)
        v[row] = g.random()
        zv[row] = g.standard_normal(world.n_nodes)
        ul[row] = g.random(world.n_nodes)

    high_risk = u[:, 0] < tr.p_high_risk
    subgroup = np.where(u[:, 1] < tr.p_subgroup_mf, 1, np.where(u[:, 1] < tr.p_subgroup_mf + tr.p_subgroup_pr, 2, 0))
    centrosome = u[:, 2] < tr.p_centrosome_amplification
    co = cfg.cohort
    age = np.clip(co.age_mean_years + co.age_sd_years * z[:, 0], co.age_min_years, co.age_max_years)
    # MGUS duration: exponential at Kyle's 1%/year, truncated at the years lived since age 30
    rate = cfg.growth.mgus_progression_rate_per_year
    span = np.maximum(age - co.age_min_years, 0.0)
    mgus = -np.log1p(-u[:, 3] * -np.expm1(-rate * span)) / rate

    base = np.empty((len(ids), n_t))
    for t, name in enumerate(TRAIT_NAMES):
        dist = tr.distributions[name]
        p_pos = np.minimum(1.0, dist.p_positive * np.where(high_risk, dist.high_risk_p_factor, 1.0))
        level = dist.level * np.where(high_risk, dist.high_risk_factor, 1.0) * np.exp(dist.log_sd * z[:, 1 + t])
        base[:, t] = np.where(u[:, 5 + t] < p_pos, level, 0.0)
    for name in ("niche_dependence", "drug_sensitivity"):
        t = TRAIT_NAMES.index(name)
        np.clip(base[:, t], 0.0, 1.0, out=base[:, t])

    prolif = np.where(subgroup == 2, tr.pr_proliferation_factor, 1.0) * np.where(
        high_risk, tr.high_risk_proliferation_factor, 1.0
    )
    switch = (
        np.where(centrosome, tr.centrosome_switch_factor, 1.0)
        * np.where(subgroup == 1, tr.mf_switch_factor, 1.0)
        * np.where(high_risk, tr.high_risk_switch_factor, 1.0)
    )
    onset = np.zeros((len(ids), world.n_nodes))
    onset[:, marrow] = d
    c = 5 + n_t
    phase_wound = u[:, c : c + n_first] < np.array([r.p_wound if r.wound else 0.0 for r in cfg.treatment.first_line])
    c += n_first
    surgery_day = np.full((len(ids), n_surg), np.nan)
    for s, spec in enumerate(cfg.scenario.surgeries):
        has = u[:, c + 2 * s] < spec.probability
        day = spec.earliest_days + u[:, c + 2 * s + 1] * (spec.latest_days - spec.earliest_days)
        surgery_day[has, s] = day[has]
    lt = cfg.clinical.local_therapy
    local_site = np.zeros(world.n_nodes, dtype=bool)
    local_site[[world.index(name) for name in lt.sites]] = True
    return PatientTable(
        local_therapy=local_site & (ul < lt.probability),
        followup_days=followup_days(ids, cfg.sim.followup_years, cfg.scenario.accrual_years),
        max_lines=max_lines(v, cfg.treatment.attrition_per_line),
        visibility=10.0 ** (cfg.clinical.detection_spread_log10 * zv),
        patient_id=np.asarray(ids, dtype=np.int64),
        high_risk=high_risk,
        subgroup=subgroup,
        centrosome_amplification=centrosome,
        age_years=age,
        mgus_years=mgus,
        base_traits=base,
        proliferation=prolif,
        switch_factor=switch,
        onset_share=onset,
        phase_wound=phase_wound,
        surgery_day=surgery_day,
    )
