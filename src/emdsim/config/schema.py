"""Typed configuration of emdsim.

The *values* of every parameter live in the YAML files under ``conf/`` (one copy of each default);
this module declares their types, units, allowed ranges and sources as dataclass-field metadata,
and validates a whole configuration after it is loaded.  Nothing here imports Hydra or OmegaConf:
the CLI converts its ``DictConfig`` with :func:`emdsim.config.load.to_config` and everything
below works on these plain dataclasses.

Conventions (see ``docs/ODD.md``): ``*_rate_per_day`` is a hazard (1/day), ``p_*`` a probability,
``*_cells`` a count of plasma cells, ``*_days`` / ``*_years`` a duration.  Relative ligand and trait
levels are dimensionless and scaled so that a CD56+, CXCR4+ founder clone in normal marrow is 1.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from typing import Any

__all__ = [
    "ConfigError",
    "NodeSpec",
    "AnatomyConfig",
    "TraitDistribution",
    "SwitchSpec",
    "TraitsConfig",
    "GrowthConfig",
    "SpreadConfig",
    "DrugSpec",
    "RegimenSpec",
    "TreatmentConfig",
    "ImagingModality",
    "ClinicalConfig",
    "SurgerySpec",
    "ScenarioConfig",
    "CohortConfig",
    "SimConfig",
    "EmdConfig",
    "TRAIT_NAMES",
    "COMPARTMENT_KINDS",
    "NODE_KINDS",
    "SOFT_TISSUE_KINDS",
    "TISSUE_TARGET_KINDS",
]


class ConfigError(ValueError):
    """An invalid configuration value: names the field, the value and what is allowed."""

    def __init__(self, field_path: str, value: Any, allowed: str) -> None:
        self.field_path = field_path
        self.value = value
        self.allowed = allowed
        shown = f"{field_path}" if value is None else f"{field_path}={value!r}"
        super().__init__(f"{shown} is invalid: {allowed}")


def param(unit: str, source: str, lo: float | None = None, hi: float | None = None,
          *, lo_open: bool = False, why: str = "", default: Any = MISSING) -> Any:
    """A config field with its unit, source and allowed interval [lo, hi] (required unless it has
    a ``default``); ``why`` is the source of the interval (what makes a value outside it implausible)."""
    return field(default=default, metadata={"unit": unit, "source": source, "lo": lo, "hi": hi,
                                            "lo_open": lo_open, "range_source": why})


# Sources of the allowed intervals: a value outside is not biology (or not this machine) but a typo.
PROLIF = ("plausibility: the plasma-cell labelling index spans ~0.1-10 % between patients (Greipp, Blood "
          "1993;81:3382), so a subgroup multiplier above 10x exceeds the whole observed spread")
CIN = ("plausibility: chromosomal instability raises rates of chromosome change ~10-100x "
       "(Lengauer, Nature 1997;386:623); 1000x bounds it generously")
CYCLE = ("plausibility: the shortest human plasmablast cell cycle is ~0.7 day (hazard <= ~1/day; "
         "Ucci 1987 measured 46.8 d potential doubling in myeloma)")
HOURS = "plausibility: a hazard above 10/day means the process completes within ~2 hours"
MINUTE = "plausibility: one pass of the circulation takes ~1 minute, so a blood hazard is <= 1440/day"
MARROW = "plausibility: the whole red marrow holds ~1e12-1e13 cells (Durie & Salmon 1975 tumour mass scale)"
HEALING = "plausibility: wound inflammation resolves within weeks to months; ten years bounds it generously"
LIGAND = "plausibility: a level 100x that of normal marrow or of the reference clone is beyond any reported"
SPREAD = "plausibility: a log-normal sd of 5 spans a factor of ~1e4 between patients at one sd"
NEVER = ("plausibility: the body holds ~3e13 cells (Bianconi, Ann Hum Biol 2013); 1e15 is allowed as "
         "'never' (a threshold no patient reaches)")
BODY = "plausibility: the body holds ~3e13 cells (Bianconi, Ann Hum Biol 2013)"
DIRICHLET = "numerical: above 1e6 the Dirichlet is indistinguishable from an even split"
SMM = ("plausibility: even high-risk smouldering myeloma progresses at <= ~50 %/year "
       "(Lakshman, Blood Cancer J 2018;8:59)")
WEIGHT = "numerical: exp(-20) ~ 2e-9 already switches the process off; larger weights only overflow"
GAIN = "numerical: a dimensionless multiplier above 100 makes the process saturate within a step"
RISE = "plausibility: IMWG progression is a >= 25 % rise; a 10-fold rise is already far past any definition"
DECADE = "plausibility: no line of therapy is assessed only after ten years"
EXPONENT = "numerical: an exponent above 10 is a step function of the burden"
GOMPERTZ = "plausibility: adult human mortality h(65) ~ 1 %/year doubling every ~8 years (life tables)"
COHORT = ("engineering: ~10 KB of memory per patient at the peak; a cohort larger than the machine's "
          "memory is refused with an estimate (emdsim.cohort.run.check_resources)")
BLOCK = "engineering: a block's arrays grow with its patients; 1e5 needs ~10 GB"
ENGINEERING = "engineering: no machine has more"
AGE = "plausibility: human age, years"
STEP = "numerical: the step must resolve treatment phases of days to months"
LIFETIME = "plausibility: a human lifetime after myeloma onset"
MARGIN = "numerical: a factor above 100 on the predicted growth makes every long step impossible"
EXTINCT = "numerical: a population of up to 1e6 cells may be declared extinct; more is a live tumour"


#: the source of a list item's parameter is the item's own ``source`` (e.g. each switch in conf/traits)
ITEM_SOURCE = "see the item's source"
#: a treatment phase's numbers are the protocol of its plan (conf/treatment/<plan>.yaml: description)
PLAN_SOURCE = "the treatment plan's protocol (conf/treatment/<plan>.yaml, its description)"
#: a surgery's numbers describe the cohort of its scenario (conf/scenario/<name>.yaml: description)
SCENARIO_SOURCE = "the scenario's cohort (conf/scenario/<name>.yaml, its description)"

PROB = dict(lo=0.0, hi=1.0)

#: Adhesion/homing traits carried by every clone, in the column order of the trait arrays.
TRAIT_NAMES: tuple[str, ...] = (
    "vla4",          # alpha4-beta1 integrin, binds VCAM-1
    "cd44",          # binds hyaluronan
    "cd56",          # NCAM, homotypic adhesion
    "cxcr4",         # responsiveness to SDF-1alpha / CXCL12
    "psgl1",         # P-selectin glycoprotein ligand-1
    "ccr",           # CCR1 / CCR2 responsiveness
    "tetraspanin",   # CD81 / CD82
    "proliferation",     # multiplier on the birth hazard everywhere
    "em_proliferation",  # further multiplier outside the marrow (Ki-67 higher in EM lesions)
    "niche_dependence",  # 1 = cannot grow without marrow niche support
    "drug_sensitivity",  # fraction of the regimen's kill hazard felt, 0..1
)

NODE_KINDS: tuple[str, ...] = ("marrow", "paraskeletal", "blood", "organ", "wound")
#: Where lesions grow and imaging sees them (the engine's ``soft_tissue`` compartments).
SOFT_TISSUE_KINDS: tuple[str, ...] = ("paraskeletal", "organ", "wound")
#: Soft tissue reached through the blood (haematogenous targets outside the marrow: EM lesions).
TISSUE_TARGET_KINDS: tuple[str, ...] = ("organ", "wound")
#: Treatment efficacy is given per compartment kind; wounds count as organ tissue.
COMPARTMENT_KINDS: tuple[str, ...] = ("marrow", "paraskeletal", "blood", "organ")


# --------------------------------------------------------------------------------------- anatomy
@dataclass
class NodeSpec:
    """One compartment of the anatomy graph (see ``conf/anatomy/default.yaml``)."""

    name: str
    kind: str
    #: marrow: share of active red marrow (fraction); organ/wound: share of cardiac output (fraction)
    share: float = param("fraction", ITEM_SOURCE, **PROB, default=0.0)
    #: plasma-cell carrying capacity of the compartment (cells)
    capacity_cells: float = param("cells", ITEM_SOURCE, lo=0.0, hi=1e13, why=MARROW, default=0.0)
    # ligand/chemokine profile, dimensionless, normal marrow = 1
    cxcl12: float = param("relative to normal marrow", ITEM_SOURCE, lo=0.0, hi=100.0, why=LIGAND, default=0.0)
    vcam1: float = param("relative to normal marrow", ITEM_SOURCE, lo=0.0, hi=100.0, why=LIGAND, default=0.0)
    hyaluronan: float = param("relative to normal marrow", ITEM_SOURCE, lo=0.0, hi=100.0, why=LIGAND, default=0.0)
    ncam: float = param("relative to normal marrow", ITEM_SOURCE, lo=0.0, hi=100.0, why=LIGAND, default=0.0)
    selectin: float = param("relative to normal marrow", ITEM_SOURCE, lo=0.0, hi=100.0, why=LIGAND, default=0.0)
    ccl: float = param("relative to normal marrow", ITEM_SOURCE, lo=0.0, hi=100.0, why=LIGAND, default=0.0)
    #: growth support for niche-dependent clones (0 none .. 1 like marrow)
    soil: float = param("fraction of marrow support", ITEM_SOURCE, **PROB, default=0.0)
    #: fraction of arriving cells that cross a tissue barrier (CNS: blood-brain barrier)
    barrier: float = param("fraction", ITEM_SOURCE, **PROB, default=1.0)
    #: paraskeletal only: the marrow site it borders
    adjacent_to: str = ""
    #: extra death hazard while a lesion of at least ``clinical.lesion_lethal_cells`` sits here (1/day; CNS involvement)
    death_rate_per_day: float = param("1/day", ITEM_SOURCE, lo=0.0, hi=10.0, why=HOURS, default=0.0)
    #: soft tissue: a lesion this large here causes symptoms (seen without imaging; progression when
    #: it grows); 0 = ``clinical.symptomatic_lesion_cells``
    symptomatic_cells: float = param("cells", ITEM_SOURCE, lo=0.0, hi=1e15, why=NEVER, default=0.0)
    #: wound only: half-life of the inflammatory signal after the procedure (days)
    inflammation_half_life_days: float = param("days", ITEM_SOURCE, lo=0.0, hi=3650.0, why=HEALING, default=0.0)
    source: str = ""


@dataclass
class AnatomyConfig:
    name: str
    #: share of cardiac output perfusing red marrow, split between sites by their marrow share
    red_marrow_perfusion_share: float = param(
        "fraction of cardiac output", "Williams & Leggett 1989 via NRC 1999 (red marrow 3% of cardiac output)", **PROB)
    nodes: list[NodeSpec] = field(default_factory=list)


# ---------------------------------------------------------------------------------------- traits
@dataclass
class TraitDistribution:
    """Per-patient baseline of one trait: ``P(positive)`` then a level drawn log-normally."""

    p_positive: float = param("probability", ITEM_SOURCE, **PROB)
    #: median relative level among positive patients (dimensionless, 1 = reference)
    level: float = param("relative to the reference clone", ITEM_SOURCE, lo=0.0, hi=100.0, why=LIGAND)
    #: sd of log level between patients
    log_sd: float = param("sd of log level", ITEM_SOURCE, lo=0.0, hi=5.0, why=SPREAD)
    #: multiplier on ``level`` in GEP70 high-risk patients
    high_risk_factor: float = param("1", ITEM_SOURCE, lo=0.0, hi=100.0, why=GAIN, default=1.0)
    #: multiplier on ``p_positive`` in GEP70 high-risk patients (capped at 1)
    high_risk_p_factor: float = param("1", ITEM_SOURCE, lo=0.0, hi=100.0, why=GAIN, default=1.0)
    source: str = ""


@dataclass
class SwitchSpec:
    """A heritable phenotype switch acquired at division, creating a subclone."""

    name: str
    #: probability per division (per cell birth)
    rate_per_division: float = param("probability per division", ITEM_SOURCE, **PROB)
    #: trait multipliers applied when the switch is acquired (trait name -> factor)
    effects: dict[str, float] = param("multiplier on the trait (1 = unchanged)", ITEM_SOURCE, lo=0.0, hi=100.0,
                                      why=GAIN)
    source: str = ""


@dataclass
class TraitsConfig:
    #: prevalence of GEP70/80 high risk among newly diagnosed myeloma (fraction)
    p_high_risk: float = param("fraction", "Shaughnessy JD et al. Blood 2007;109:2276 (GEP70: 13% high risk)", **PROB)
    #: prevalence of the MF (MAF/MAFB) molecular subgroup
    p_subgroup_mf: float = param("fraction", "Zhan F et al. Blood 2006;108:2020 (UAMS molecular classification)", **PROB)
    #: prevalence of the PR (proliferation) molecular subgroup
    p_subgroup_pr: float = param("fraction", "Zhan F et al. Blood 2006;108:2020", **PROB)
    #: prevalence of centrosome amplification
    p_centrosome_amplification: float = param("fraction", "Chng WJ et al. Cancer Res 2008;68:2269 (about one third)", **PROB)
    #: proliferation multiplier of the PR subgroup
    pr_proliferation_factor: float = param("1", "assumption: PR = high proliferation signature (Zhan 2006); free parameter", lo=0.0, lo_open=True, hi=10, why=PROLIF)
    #: proliferation multiplier of GEP70 high risk
    high_risk_proliferation_factor: float = param("1", "assumption: GEP70 genes are proliferation-rich (Shaughnessy 2007); free parameter", lo=0.0, lo_open=True, hi=10, why=PROLIF)
    #: multiplier on every switch rate with centrosome amplification (chromosomal instability)
    centrosome_switch_factor: float = param("1", "assumption: centrosome amplification -> chromosomal instability (Chng 2008); free parameter", lo=0.0, lo_open=True, hi=1000, why=CIN)
    #: multiplier on every switch rate in the MF subgroup
    mf_switch_factor: float = param("1", "assumption: MAF drives integrin beta7 / adhesion changes (Hurt, Cancer Cell 2004); free parameter", lo=0.0, lo_open=True, hi=1000, why=CIN)
    #: multiplier on every switch rate in GEP70 high risk
    high_risk_switch_factor: float = param("1", "assumption: genomic instability of high-risk disease; free parameter", lo=0.0, lo_open=True, hi=1000, why=CIN)
    distributions: dict[str, TraitDistribution] = field(default_factory=dict)
    switches: list[SwitchSpec] = field(default_factory=list)


# ---------------------------------------------------------------------------------------- growth
@dataclass
class GrowthConfig:
    birth_rate_per_day: float = param("1/day", "ln2 / 46.8 d potential doubling time, Ucci, Cell Tissue Kinet 1987 (in mechanism_parameters.yaml)", lo=0.0, hi=1.0, why=CYCLE)
    death_rate_per_day: float = param("1/day", "assumption: sets the net doubling time of untreated myeloma to ~4 months (calibrated)", lo=0.0, hi=1.0, why=CYCLE)
    #: extra death of niche-dependent cells outside the marrow, scaled by (1 - support)
    niche_loss_death_rate_per_day: float = param("1/day", "assumption (anoikis of niche-dependent cells); free parameter", lo=0.0, hi=10.0, why=HOURS)
    #: plasma cells (clonal) in the marrow when MGUS turns into myeloma
    onset_cells: float = param("cells", "assumption: MGUS <10% marrow plasma cells of ~1e12 marrow cells (Kyle, NEJM 2002)", lo=1.0, hi=1e13, why=MARROW)
    #: concentration of the Dirichlet that spreads the founder over marrow sites (large = even)
    onset_site_concentration: float = param("1", "assumption: focal vs diffuse infiltration; free parameter", lo=0.0, lo_open=True, hi=1e6, why=DIRICHLET)
    #: MGUS -> myeloma progression hazard
    mgus_progression_rate_per_year: float = param("1/year", "Kyle RA et al. NEJM 2002;346:564 (1% per year)", lo=0.0, lo_open=True, hi=1.0, why=SMM)


# ---------------------------------------------------------------------------------------- spread
@dataclass
class SpreadConfig:
    # --- retention and egress (process 2)
    egress_rate_per_day: float = param("1/day", "assumption: egress hazard of a non-adherent cell; free parameter", lo=0.0, hi=10.0, why=HOURS)
    w_vla4: float = param("1", "VLA-4/VCAM-1 retention, Br J Haematol 1999;107:825; weight is a free parameter", lo=0.0, hi=20.0, why=WEIGHT)
    w_cd44: float = param("1", "CD44/hyaluronan retention (seed editorial refs 1-2); weight is a free parameter", lo=0.0, hi=20.0, why=WEIGHT)
    w_cd56: float = param("1", "CD56 homotypic adhesion; CD56 absent in plasma-cell leukaemia (Pellat-Deceunynck 1998); weight free", lo=0.0, hi=20.0, why=WEIGHT)
    w_cxcr4: float = param("1", "CXCR4/SDF-1 retention (Alsayed, Blood 2007;109:2708); weight free", lo=0.0, hi=20.0, why=WEIGHT)
    w_tetraspanin: float = param("1", "CD81/CD82 tetraspanin adhesion complexes (seed editorial); weight free", lo=0.0, hi=20.0, why=WEIGHT)
    #: egress multiplier per unit of niche occupancy (crowding pushes cells out)
    crowding_egress_gain: float = param("1", "assumption: crowding-driven egress; free parameter", lo=0.0, hi=100.0, why=GAIN)
    # --- local extension (process 3)
    cortical_disruption_occupancy: float = param("fraction of site capacity", "assumption: lytic lesion breaches cortex above this burden (67% lytic at diagnosis, Blood 2019;133:644)", **PROB)
    cortical_disruption_rate_per_day: float = param("1/day", "assumption; calibrated to paraskeletal incidence (EBMT 14.5%)", lo=0.0, hi=10.0, why=HOURS)
    local_extension_rate_per_day: float = param("1/day", "assumption: spill of marrow cells through a breached cortex; free parameter", lo=0.0, hi=10.0, why=HOURS)
    #: under therapy a marrow site's drug-resistant clones form a focal lesion: it breaks the cortex
    #: (whatever the site's occupancy) with a hazard proportional to its excess over this size
    focal_breach_cells: float = param("cells", "~1e10 cells ~ 10 cm3, a focal lesion ~2.7 cm across: focal lesions > 2.5 cm carry the resistant, spatially distinct clones of relapse (Rasche, Nat Commun 2017;8:268); 1e9 cells ~ 1 cm3 (Durie & Salmon 1975): assumption", lo=1.0, hi=1e13, why=MARROW)
    focal_breach_rate_per_day: float = param("1/day", "assumption; calibrated on fits/evidence.yaml: at 3e-5 Mangiacavalli 2017 rises 8 -> 18 % (28 reported) but the Czech registry 9.5 -> 15.5 % (4.7 reported) and patients with future EMD outlive the others (67 vs 62 months; Stork 2022: 27 vs 59), so the default is 0 (off); experiment=fitted turns it on at 3.6e-6 (history-matched at 3.1e-6 with eleven other parameters on all the evidence, fits/match_wide.yaml, then re-tuned by hand after the local therapy of skin lesions: Mangiacavalli 31 %, the Czech registry 5.3 %)", lo=0.0, hi=10.0, why=HOURS)
    # --- circulation and homing (process 4)
    extravasation_rate_per_day: float = param("1/day", "assumption: mean circulation time ~1 h (mouse homing within 1 h, Hofgaard PLoS One 2012)", lo=0.0, hi=1440.0, why=MINUTE)
    blood_death_rate_per_day: float = param("1/day", "assumption: shear and anoikis in blood; free parameter", lo=0.0, hi=1440.0, why=MINUTE)
    #: arrest = perfusion x (this + selectin and integrin binding)
    arrest_baseline: float = param("1", "assumption: non-specific trapping; free parameter", lo=0.0, hi=100.0, why=GAIN)
    beta_cxcr4: float = param("1", "CXCR4-CXCL12 homing (plerixafor blocks homing in vivo); free parameter", lo=0.0, hi=20.0, why=WEIGHT)
    beta_ccr: float = param("1", "CCR1/CCR2 chemotaxis (Br J Cancer 2003;88:6); free parameter", lo=0.0, hi=20.0, why=WEIGHT)
    #: marrow-to-marrow homing succeeds with this probability (re-seeding other skeletal sites)
    p_marrow_engraftment: float = param("probability", "assumption; free parameter", **PROB)
    #: probability that one arrested cell founds a lesion outside the marrow, at support 1
    p_colonisation: float = param("probability", "metastatic inefficiency: ~0.02% of arrested B16F1 cells formed macrometastases (Luzzi, Am J Pathol 1998;153:865); per-pass homing efficiency of myeloma cells not found", **PROB)
    #: soft-tissue lesions shed cells back into the blood
    shedding_rate_per_day: float = param("1/day", "assumption; free parameter", lo=0.0, hi=10.0, why=HOURS)


# ------------------------------------------------------------------------------------- treatment
@dataclass
class DrugSpec:
    """Kill hazard of one drug in each compartment kind (1/day while the drug is given)."""

    marrow: float = param("1/day", ITEM_SOURCE, lo=0.0, hi=10.0, why=HOURS)
    paraskeletal: float = param("1/day", ITEM_SOURCE, lo=0.0, hi=10.0, why=HOURS)
    blood: float = param("1/day", ITEM_SOURCE, lo=0.0, hi=10.0, why=HOURS)
    organ: float = param("1/day", ITEM_SOURCE, lo=0.0, hi=10.0, why=HOURS)
    source: str = ""


@dataclass
class RegimenSpec:
    """One phase of a treatment plan."""

    name: str
    drugs: list[str]
    #: length of the phase; 0 = until progression
    duration_days: float = param("days", PLAN_SOURCE, lo=0.0, hi=36525.0, why=LIFETIME)
    #: wound node opened when the phase starts (e.g. a central-line tract for a transplant)
    wound: str = ""
    #: probability that the wound is made (e.g. not every patient needs a tunnelled line)
    p_wound: float = param("probability", PLAN_SOURCE, **PROB, default=1.0)
    #: relative dose intensity: the drugs' kill hazards are calibrated to their usual schedule
    #: (bortezomib twice weekly, as in VTD/VRd induction); a phase given less densely (weekly
    #: bortezomib in VMP cycles 5-9) or stopped early by many patients scales them by this
    dose_intensity: float = param("1", PLAN_SOURCE, lo=0.0, hi=2.0, why="a schedule at most twice as dense as the one the kill hazards were calibrated on (assumption)", default=1.0)


@dataclass
class TreatmentConfig:
    name: str
    description: str
    #: first-line phases in order (induction, transplant, consolidation, maintenance)
    first_line: list[RegimenSpec]
    #: salvage regimens at successive progressions; the last one repeats
    salvage: list[RegimenSpec]
    #: efficacy multiplier per additional line (acquired cross-resistance)
    line_efficacy_factor: float = param("1", "assumption: shorter remissions with every line (Kumar, Leukemia 2012;26:149)", **PROB)
    #: attrition: the probability that a patient who progresses on a line never starts the next one
    #: (too frail, palliation, death before it); each line the same (era-dependent: the plan's era)
    attrition_per_line: float = param("probability", "Rodriguez-Lobato, Blood Cancer J 2025;15:103 (attrition between lines 15-20 % in 2010-2020, 38-55 % in the 1980s); Yong, Br J Haematol 2016;175:252 (real-world share reaching each line)", **PROB, default=0.2)


# -------------------------------------------------------------------------------------- clinical
@dataclass
class ImagingModality:
    #: the soft-tissue lesion size this modality sees half the time (the midpoint of its sensitivity
    #: curve, clinical.detection_spread_log10); 1 cm^3 ~ 1e9 cells (Del Monte, Cell Cycle 2009)
    detection_threshold_cells: float = param("cells", ITEM_SOURCE, lo=1.0, hi=1e13, why=MARROW)
    source: str = ""


@dataclass
class LocalTherapy:
    """Radiotherapy or excision of an accessible soft-tissue lesion once it is seen in a diagnosed
    patient: the lesion is cleared (local control); nothing else of the patient changes."""

    #: the compartments whose lesions are treated locally (names of soft-tissue nodes of the anatomy)
    sites: list[str] = field(default_factory=list)
    #: probability, drawn once per patient and site, that a lesion seen there is treated locally and
    #: controlled: the share treated times the local control
    probability: float = param("probability", ITEM_SOURCE, **PROB, default=0.0)
    source: str = ""


@dataclass
class ClinicalConfig:
    #: myeloma is diagnosed when the marrow tumour mass reaches this many cells
    diagnosis_marrow_cells: float = param("cells", "Durie & Salmon, Cancer 1975;36:842 (stage III > 1.2e12 cells/m2, 73% at presentation)", lo=1.0, hi=1e15, why=NEVER)
    #: progression: total burden rises by this fraction above its nadir (IMWG >= 25% rise of M-protein)
    progression_rise_fraction: float = param("fraction", "Kumar S et al. Lancet Oncol 2016;17:e328 (IMWG response criteria)", lo=0.0, lo_open=True, hi=10.0, why=RISE)
    #: progression is assessed only after this long on a line (IMWG: confirmed, after >= 1 cycle)
    min_days_on_line: float = param("days", "Kumar S et al. Lancet Oncol 2016 (IMWG): progression needs confirmation; ~2 cycles", lo=0.0, hi=3650.0, why=DECADE)
    #: ... and exceeds this absolute burden (the IMWG absolute increase)
    progression_min_cells: float = param("cells", "IMWG absolute M-protein rise of 0.5 g/dl (Kumar, Lancet Oncol 2016;17:e328); ~1e12 tumour cells/m2 carry ~5 g/dl (Durie & Salmon, Cancer 1975;36:842), so 0.5 g/dl ~ 1e11 cells", lo=0.0, hi=1e15, why=NEVER)
    #: an extramedullary lesion this large causes symptoms: progression even with a marrow response
    symptomatic_lesion_cells: float = param("cells", "assumption: ~5 cm mass (Rosinol, Haematologica 2004: EM progression despite serological response)", lo=1.0, hi=1e15, why=NEVER)
    #: tumour-related death hazard at the lethal burden
    tumour_death_rate_per_day: float = param("1/day", "assumption; calibrated to median OS", lo=0.0, hi=10.0, why=HOURS)
    lethal_burden_cells: float = param("cells", "assumption: ~5e12 cells (Durie & Salmon 1975 scale)", lo=1.0, hi=1e14, why=BODY)
    tumour_death_exponent: float = param("1", "assumption; free parameter", lo=0.0, lo_open=True, hi=10.0, why=EXPONENT)
    #: Gompertz background mortality h(age) = a exp(b age)
    gompertz_a_per_year: float = param("1/year", "Gompertz fit to adult life tables (h(65) ~ 1.2%/year)", lo=0.0, hi=1.0, why=GOMPERTZ)
    gompertz_b_per_year: float = param("1/year", "Gompertz fit to adult life tables (mortality doubling ~8 years)", lo=0.0, hi=0.5, why=GOMPERTZ)
    #: partial response: the tumour's measure falls by at least this fraction from the line's start
    #: (IMWG: >= 50 % fall of serum M-protein; >= 50 % fall of a plasmacytoma's sum of products of diameters)
    partial_response_reduction: float = param("fraction", "Kumar S et al. Lancet Oncol 2016;17:e328 (IMWG response criteria: PR >= 50% reduction)", **PROB, default=0.5)
    #: imaging sees a lesion of c cells with probability Phi(log10(c / (threshold)) / this spread):
    #: the modality's threshold is its 50 % point, and partial volume makes detection rise over about
    #: one decade of volume; drawn once per patient and site (a lesion hard to see stays hard to see)
    detection_spread_log10: float = param("decades of cells", "Soret, Bacharach & Buvat, J Nucl Med 2007;48:932 (partial-volume effect: recovery falls below ~2-3x the resolution, a 30-fold volume span); spread is an assumption", lo=0.0, hi=3.0, why="plausibility: detection rising over more than 6 decades of size is no threshold at all", default=0.5)
    #: a soft-tissue lesion of at least this many cells threatens life at its site (the site's
    #: ``death_rate_per_day``), whatever imaging sees
    lesion_lethal_cells: float = param("cells", "assumption: ~1 cm3 (1e9 cells, Del Monte, Cell Cycle 2009;8:505) of tumour compresses or infiltrates its organ", lo=1.0, hi=1e15, why=NEVER, default=1.0e9)
    #: death hazard of a patient who progressed on its last line and receives no further therapy
    #: (attrition is mostly death or frailty before the next line)
    off_therapy_death_rate_per_day: float = param("1/day", "Rodriguez-Lobato, Blood Cancer J 2025;15:103 and Yong, Br J Haematol 2016;175:252 (attrition between lines is mostly death before the next line); median ~3 months after the last progression: assumption", lo=0.0, hi=10.0, why=HOURS, default=0.0077)
    imaging: dict[str, ImagingModality] = field(default_factory=dict)
    #: radiotherapy or excision of accessible lesions (skin) once seen after diagnosis
    local_therapy: LocalTherapy = field(default_factory=LocalTherapy)


# -------------------------------------------------------------------------------------- scenario
@dataclass
class SurgerySpec:
    """An elective surgical procedure that leaves a wound node."""

    wound: str
    #: probability that a patient has the procedure
    probability: float = param("probability", SCENARIO_SOURCE, **PROB)
    #: the procedure happens uniformly within this window after diagnosis (days)
    earliest_days: float = param("days", SCENARIO_SOURCE, lo=0.0, hi=36525.0, why=LIFETIME)
    latest_days: float = param("days", SCENARIO_SOURCE, lo=0.0, hi=36525.0, why=LIFETIME)


@dataclass
class ScenarioConfig:
    name: str
    description: str
    #: imaging used at diagnosis and at relapse (a key of clinical.imaging)
    imaging: str
    #: which outcome definition the scenario's cohort reports: PS, EM or MIX (both)
    definition: str
    surgeries: list[SurgerySpec] = field(default_factory=list)
    #: surveillance imaging every this many days after diagnosis (0: none; imaging happens at
    #: diagnosis, at each progression and when a lesion causes symptoms)
    imaging_every_days: float = param("days", SCENARIO_SOURCE, lo=0.0, hi=36525.0, why=LIFETIME, default=0.0)
    #: staggered entry: patients are diagnosed evenly over this many years before the study's data
    #: cut, so the last ones are followed this much less than ``sim.followup_years`` (0: everyone is
    #: followed for ``sim.followup_years``, as in a trial with complete follow-up)
    accrual_years: float = param("years", SCENARIO_SOURCE, lo=0.0, hi=100.0, why=LIFETIME, default=0.0)


# ---------------------------------------------------------------------------------------- cohort
@dataclass
class CohortConfig:
    n_patients: int = param("patients", "user choice", lo=1, hi=10_000_000, why=COHORT)
    #: patients simulated together by the array engines; a patient's result depends on the seed and
    #: its index (hybrid engine), or on those and this block size (exact engine), never on the cohort size
    block_size: int = param("patients", "engineering choice", lo=1, hi=100_000, why=BLOCK)
    #: worker processes for the blocks (0 = one per core); results do not depend on it
    n_jobs: int = param("processes", "engineering choice", lo=0, hi=4096, why=ENGINEERING)
    age_mean_years: float = param("years", "SEER: median age at myeloma diagnosis 69 y; ASCT cohorts younger (~57 y, Usmani 2012)", lo=0.0, hi=120.0, why=AGE)
    age_sd_years: float = param("years", "assumption", lo=0.0, hi=120.0, why=AGE)
    age_min_years: float = param("years", "eligibility", lo=0.0, hi=120.0, why=AGE)
    age_max_years: float = param("years", "eligibility", lo=0.0, hi=120.0, why=AGE)


# ------------------------------------------------------------------------------------------- sim
@dataclass
class SimConfig:
    dt_days: float = param("days", "numerical choice (rates are hazards: results do not depend on it to first order)", lo=0.0, lo_open=True, hi=365.0, why=STEP)
    #: follow every patient this long after diagnosis (censoring); 0 stops each course at diagnosis
    #: (outcomes at diagnosis only, what a fit of figures at diagnosis needs: no step after it is simulated)
    followup_years: float = param("years", "Usmani 2012 and targets: up to 10 years follow-up; 0: stop at diagnosis", lo=0.0, hi=50.0, why=LIFETIME)
    #: patients not diagnosed within this time after myeloma onset are reported as undiagnosed
    max_years_to_diagnosis: float = param("years", "numerical cap", lo=0.0, lo_open=True, hi=50.0, why=LIFETIME)
    #: a flow whose expected size is at least this is taken as its mean; smaller flows are drawn
    #: (hybrid tau-leaping: relative noise < 1/sqrt(threshold) is ignored)
    deterministic_threshold_cells: float = param("cells", "numerical choice (Cao, Gillespie & Petzold 2005 hybrid tau-leaping)", lo=1.0, hi=1e12, why=MARROW)
    #: hybrid engine: a population of at least this many cells grows, dies and is killed by its
    #: expected flows (relative noise per step below 1/sqrt(threshold)); smaller ones are whole cells,
    #: drawn exactly; what leaves a large population for another is a count unless its mean is large
    hybrid_threshold_cells: float = param("cells", "numerical choice (Haseltine & Rawlings 2002 partitioned hybrid; justified by the equivalence suite, docs/ODD.md)", lo=1.0, hi=1e12, why=MARROW)
    #: hybrid engine: the longest step a quiet patient takes (a whole number of ``dt_days``; at most
    #: ``dt_days``: every patient steps by ``dt_days``). A patient is quiet while nothing is scheduled
    #: within the step (a phase end, surgery, the end of follow-up; surveillance imaging only where
    #: local therapy might treat what it finds) and no burden is predicted to reach a clinical
    #: threshold in it (docs/ODD.md section 8, the adaptive step)
    max_step_days: float = param("days", "numerical choice (adaptive step; equivalence to the exact engine: benchmarks/equivalence-sim.max_step_days=28-large.md)", lo=0.0, lo_open=True, hi=365.0, why=STEP)
    #: a quiet patient's compartments are predicted to grow at ``step_margin`` times their growth rate
    #: of the last step (a margin against thresholds reached within a long step)
    step_margin: float = param("1", "numerical choice (adaptive step: a safety factor on the predicted growth)", lo=1.0, hi=100.0, why=MARGIN)
    #: populations below one cell are extinct
    extinction_cells: float = param("cells", "numerical choice", lo=0.0, lo_open=True, hi=1e6, why=EXTINCT)
    #: save a snapshot of cells per node every this many steps (0 = none)
    snapshot_every: int = param("steps", "output choice", lo=0, hi=1_000_000, why=ENGINEERING)
    #: patients 0 .. N-1 of a cohort are recorded in snapshots.parquet (animations, dashboard)
    snapshot_patients: int = param("patients", "output choice", lo=0, hi=100_000, why=BLOCK)


@dataclass
class EmdConfig:
    seed: int
    #: 'hybrid' (cohorts, deterministic large populations), 'exact' (cohorts, every flow below the
    #: deterministic threshold drawn: the reference) or 'mesa' (one Mesa model per patient);
    #: 'vectorized', the old name of 'exact', is read as 'exact' with a warning
    engine: str
    anatomy: AnatomyConfig
    traits: TraitsConfig
    growth: GrowthConfig
    spread: SpreadConfig
    drugs: dict[str, DrugSpec]
    treatment: TreatmentConfig
    clinical: ClinicalConfig
    scenario: ScenarioConfig
    cohort: CohortConfig
    sim: SimConfig

    def __post_init__(self) -> None:
        if self.engine == "vectorized":
            warnings.warn("engine=vectorized is now called engine=exact", DeprecationWarning, stacklevel=2)
            self.engine = "exact"
        validate(self)


ENGINES = ("hybrid", "exact", "mesa")
DEFINITIONS = ("PS", "EM", "MIX")


# ------------------------------------------------------------------------------------ validation
def _check_number(path: str, value: Any, meta: dict[str, Any]) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(path, value, "must be a number")
    if not math.isfinite(value):
        raise ConfigError(path, value, "must be finite")
    lo, hi = meta.get("lo"), meta.get("hi")
    low_bad = lo is not None and (value < lo or (meta.get("lo_open") and value == lo))
    if low_bad or (hi is not None and value > hi):
        left = "-inf" if lo is None else f"{lo:g}"
        interval = (f"({left}, " if meta.get("lo_open") or lo is None else f"[{left}, ") + (
            f"{hi:g}]" if hi is not None else "inf)")
        why = "; ".join(x for x in (meta.get("unit", ""), meta.get("range_source", "")) if x)
        raise ConfigError(path, value, f"allowed {interval}" + (f" ({why})" if why else ""))


def check_fields(obj: Any, prefix: str) -> None:
    """Check every number field of a dataclass against its declared interval (each entry of a
    mapping of numbers, such as a switch's ``effects``)."""
    for f in fields(obj):
        value = getattr(obj, f.name)
        if "unit" in f.metadata:
            if isinstance(value, dict):
                for key, v in value.items():
                    _check_number(f"{prefix}.{f.name}.{key}", v, f.metadata)
            else:
                _check_number(f"{prefix}.{f.name}", value, f.metadata)


#: the declared unit and interval of a switch's effects (checked entry by entry)
_EFFECTS_META = next(f.metadata for f in fields(SwitchSpec) if f.name == "effects")


def _one_of(path: str, value: Any, allowed: tuple[str, ...] | list[str]) -> None:
    if value not in allowed:
        raise ConfigError(path, value, f"must be one of {sorted(allowed)}")


def validate(cfg: EmdConfig) -> None:
    """Validate a whole configuration; raise :class:`ConfigError` on the first problem."""
    if isinstance(cfg.seed, bool) or not isinstance(cfg.seed, int) or cfg.seed < 0:
        raise ConfigError("seed", cfg.seed, "must be a non-negative integer")
    _one_of("engine", cfg.engine, ENGINES)
    for name in ("traits", "growth", "spread", "clinical", "cohort", "sim"):
        check_fields(getattr(cfg, name), name)
    if cfg.cohort.age_min_years > cfg.cohort.age_max_years:
        raise ConfigError("cohort.age_min_years", cfg.cohort.age_min_years,
                          f"must not exceed cohort.age_max_years={cfg.cohort.age_max_years}")
    if cfg.traits.p_subgroup_mf + cfg.traits.p_subgroup_pr > 1:
        raise ConfigError("traits.p_subgroup_pr", cfg.traits.p_subgroup_pr,
                          "p_subgroup_mf + p_subgroup_pr must not exceed 1")
    check_fields(cfg.anatomy, "anatomy")
    _validate_anatomy(cfg.anatomy)
    _validate_traits(cfg.traits)
    _validate_treatment(cfg)  # after sim: phase durations are checked against the step
    for name, mod in cfg.clinical.imaging.items():
        check_fields(mod, f"clinical.imaging.{name}")
    _one_of("scenario.imaging", cfg.scenario.imaging, list(cfg.clinical.imaging))
    check_fields(cfg.clinical.local_therapy, "clinical.local_therapy")
    soft = [n.name for n in cfg.anatomy.nodes if n.kind in SOFT_TISSUE_KINDS]
    for i, site in enumerate(cfg.clinical.local_therapy.sites):
        _one_of(f"clinical.local_therapy.sites.{i}", site, soft)
    _one_of("scenario.definition", cfg.scenario.definition, DEFINITIONS)
    check_fields(cfg.scenario, "scenario")
    if cfg.scenario.accrual_years > cfg.sim.followup_years:
        raise ConfigError("scenario.accrual_years", cfg.scenario.accrual_years,
                          f"must not exceed sim.followup_years={cfg.sim.followup_years} (the first patient's "
                          "follow-up from diagnosis to the data cut)")
    wounds = [n.name for n in cfg.anatomy.nodes if n.kind == "wound"]
    for i, s in enumerate(cfg.scenario.surgeries):
        p = f"scenario.surgeries[{i}]"
        _one_of(f"{p}.wound", s.wound, wounds)
        check_fields(s, p)
        if s.latest_days < s.earliest_days:
            raise ConfigError(f"{p}.latest_days", s.latest_days, f"must be >= earliest_days={s.earliest_days}")


def _validate_anatomy(an: AnatomyConfig) -> None:
    names = [n.name for n in an.nodes]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ConfigError("anatomy.nodes", dup, "node names must be unique")
    kinds = [n.kind for n in an.nodes]
    for i, n in enumerate(an.nodes):
        p = f"anatomy.nodes[{i}]({n.name})"
        _one_of(f"{p}.kind", n.kind, NODE_KINDS)
        check_fields(n, p)
        if n.kind != "blood" and n.capacity_cells <= 0:
            raise ConfigError(f"{p}.capacity_cells", n.capacity_cells, "must be > 0 for a tissue compartment")
        if n.kind == "paraskeletal":
            marrow = [m.name for m in an.nodes if m.kind == "marrow"]
            _one_of(f"{p}.adjacent_to", n.adjacent_to, marrow)
        if n.kind == "wound" and n.inflammation_half_life_days <= 0:
            raise ConfigError(f"{p}.inflammation_half_life_days", n.inflammation_half_life_days, "must be > 0 days")
    if kinds.count("blood") != 1:
        raise ConfigError("anatomy.nodes", kinds.count("blood"), "exactly one node of kind 'blood' is required")
    if "marrow" not in kinds:
        raise ConfigError("anatomy.nodes", "no marrow node", "at least one node of kind 'marrow' is required")
    check_reachable(an)
    share = sum(n.share for n in an.nodes if n.kind == "marrow")
    if not math.isclose(share, 1.0, rel_tol=0.02):
        raise ConfigError("anatomy.nodes[*].share (marrow)", round(share, 4),
                          "marrow shares of active marrow must sum to 1 (within 2%)")


def reachable_from_blood(node: NodeSpec) -> bool:
    """Whether circulating cells can arrive at ``node``: a marrow site with a share of the marrow's
    perfusion, an organ or wound with a share of cardiac output and a barrier that lets cells in.
    (Paraskeletal compartments are reached from their bone, by local extension.)"""
    if node.kind == "marrow":
        return node.share > 0
    if node.kind in TISSUE_TARGET_KINDS:
        return node.share > 0 and node.barrier > 0
    return True


def check_reachable(an: AnatomyConfig) -> None:
    """:class:`ConfigError` for the first organ, wound or marrow site the blood cannot reach."""
    for n in an.nodes:
        if not reachable_from_blood(n):
            raise ConfigError(f"anatomy.nodes({n.name})", {"share": n.share, "barrier": n.barrier},
                              "every organ, wound and marrow site must be reachable from the blood "
                              "(share > 0 and barrier > 0)")


def _validate_traits(tr: TraitsConfig) -> None:
    missing = [t for t in TRAIT_NAMES if t not in tr.distributions]
    if missing:
        raise ConfigError("traits.distributions", sorted(tr.distributions), f"missing traits {missing}")
    for name, d in tr.distributions.items():
        p = f"traits.distributions.{name}"
        _one_of(p, name, TRAIT_NAMES)
        check_fields(d, p)
    for name in ("niche_dependence", "drug_sensitivity"):
        d = tr.distributions[name]
        if d.level * max(d.high_risk_factor, 1.0) > 1.0 and d.log_sd == 0:
            raise ConfigError(f"traits.distributions.{name}.level", d.level, "must be within [0, 1] (a fraction)")
    names = [s.name for s in tr.switches]
    if len(set(names)) != len(names):
        raise ConfigError("traits.switches", names, "switch names must be unique")
    if len(names) > 8:
        raise ConfigError("traits.switches", len(names), "at most 8 switches (2^8 clone states)")
    for i, s in enumerate(tr.switches):
        p = f"traits.switches[{i}]({s.name})"
        check_fields(s, p)
        for trait, factor in s.effects.items():
            _one_of(f"{p}.effects", trait, TRAIT_NAMES)
            _check_number(f"{p}.effects.{trait}", factor, _EFFECTS_META)


def _validate_treatment(cfg: EmdConfig) -> None:
    for name, d in cfg.drugs.items():
        check_fields(d, f"drugs.{name}")
    wounds = [n.name for n in cfg.anatomy.nodes if n.kind == "wound"]
    tr = cfg.treatment
    if not tr.first_line:
        raise ConfigError("treatment.first_line", [], "at least one phase is required")
    if not tr.salvage:
        raise ConfigError("treatment.salvage", [], "at least one salvage regimen is required")
    for group in ("first_line", "salvage"):
        for i, r in enumerate(getattr(tr, group)):
            p = f"treatment.{group}[{i}]({r.name})"
            for drug in r.drugs:
                _one_of(f"{p}.drugs", drug, list(cfg.drugs))
            check_fields(r, p)
            steps = r.duration_days / cfg.sim.dt_days
            if abs(steps - round(steps)) > 1e-9:
                raise ConfigError(f"{p}.duration_days", r.duration_days,
                                  f"must be 0 or a whole number of steps (sim.dt_days={cfg.sim.dt_days}): phases "
                                  "start and end on step boundaries")
            if r.wound:
                _one_of(f"{p}.wound", r.wound, wounds)
    ratio = cfg.sim.max_step_days / cfg.sim.dt_days
    if ratio > 1.0 + 1e-9 and abs(ratio - round(ratio)) > 1e-9:
        raise ConfigError("sim.max_step_days", cfg.sim.max_step_days,
                          f"must be at most sim.dt_days or a whole number of steps (sim.dt_days={cfg.sim.dt_days})")
    check_fields(tr, "treatment")


def describe_parameters(obj: Any, prefix: str = "") -> list[dict[str, Any]]:
    """Flatten a config into rows ``{field, value, unit, source, lo, hi, lo_open, item}`` (docs,
    designs, fits, dashboard); ``item`` names the list item a row belongs to (None otherwise)."""
    rows: list[dict[str, Any]] = []
    for f in fields(obj):
        value = getattr(obj, f.name)
        path = f"{prefix}{f.name}"
        if is_dataclass(value):
            for row in describe_parameters(value, path + "."):
                if row["source"] == ITEM_SOURCE and getattr(value, "source", ""):  # a section with its own source
                    row["source"] = value.source
                rows.append(row)
        elif (isinstance(value, list | dict) and value
              and all(is_dataclass(v) for v in (value.values() if isinstance(value, dict) else value))):
            # list items by index, mapping entries by key, as Hydra overrides name them
            entries = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in entries:
                name = str(getattr(item, "name", key))
                for row in describe_parameters(item, f"{path}.{key}."):
                    if row["source"] == ITEM_SOURCE:  # the item's own source (each switch in conf/traits)
                        row["source"] = f"{name}: {getattr(item, 'source', '')}".strip(": ")
                    rows.append(dict(row, item=name))
        elif "unit" in f.metadata and isinstance(value, dict):  # a mapping of numbers: one row per entry
            for key, v in value.items():
                rows.append({"field": f"{path}.{key}", "value": v, "unit": f.metadata["unit"],
                             "source": f.metadata["source"], "lo": f.metadata["lo"], "hi": f.metadata["hi"],
                             "lo_open": f.metadata["lo_open"], "range_source": f.metadata.get("range_source", ""),
                             "item": None})
        elif "unit" in f.metadata:
            rows.append({"field": path, "value": value, "unit": f.metadata["unit"],
                         "source": f.metadata["source"], "lo": f.metadata["lo"], "hi": f.metadata["hi"],
                         "lo_open": f.metadata["lo_open"], "range_source": f.metadata.get("range_source", ""),
                         "item": None})
    return rows


def resolve_path(obj: Any, path: str) -> Any:
    """The value at a dotted parameter path of a config, list items by index
    (``traits.switches.2`` -> the third switch); a :class:`ConfigError` if there is none."""
    node = obj
    try:
        for part in path.split(".") if path else ():
            if isinstance(node, list):
                node = node[int(part)]
            elif isinstance(node, dict):
                node = node[part]
            else:
                node = getattr(node, part)
    except (AttributeError, IndexError, KeyError, ValueError):
        raise ConfigError(path, None, "a parameter path of the configuration") from None
    return node
