"""Per-patient outcomes read off a finished state: the rows of ``patients.parquet`` and
``lesions.parquet``.

Definitions (``shared/targets``): **PS** = paraskeletal lesion (local extension), **EM** =
organ or wound lesion without bone contact (haematogenous), **EMD** = either.  "At diagnosis" and
"at relapse" mean detected by the scenario's imaging at diagnosis and at the first progression.
Times are in days from diagnosis; PFS and OS are censored at the end of follow-up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from emdsim.biology.anatomy import ROUTE_NAMES
from emdsim.biology.patients import SUBGROUPS
from emdsim.engine.kernels import OFF_THERAPY
from emdsim.engine.state import CohortState
from emdsim.engine.status import Status
from emdsim.engine.tables import Tables

__all__ = ["CohortResult", "patient_records", "lesion_records", "PATIENT_COLUMNS"]

PATIENT_COLUMNS = (
    "patient_id",
    "treatment",
    "scenario",
    "high_risk",
    "subgroup",
    "centrosome_amplification",
    "age_at_onset_years",
    "mgus_years",
    "diagnosed",
    "onset_to_diagnosis_days",
    "burden_at_diagnosis_cells",
    "ps_at_diagnosis",
    "em_at_diagnosis",
    "emd_at_diagnosis",
    "sites_at_diagnosis",
    "relapsed",
    "ps_at_relapse",
    "em_at_relapse",
    "emd_at_relapse",
    "sites_at_relapse",
    "pfs_days",
    "pfs_event",
    "os_days",
    "os_event",
    "n_lines",
    "stopped_therapy",
    "em_ever",
    "ps_ever",
    "em_first_detected_days",
    "ps_first_detected_days",
    "wound_plasmacytoma",
    "simulated_days",
    "salvaged",
    "salvage_regimen",
    "salvage_with_emd",
    "salvage_serum_response",
    "salvage_soft_tissue_response",
    "emd_at_later_line_days",
)


@dataclass(frozen=True)
class CohortResult:
    """What a cohort run returns: one row per patient, one per lesion, the draws and snapshots."""

    patients: pd.DataFrame
    lesions: pd.DataFrame
    #: random variates drawn by the dynamics: [uniform, normal]
    draws: tuple[int, int] = (0, 0)
    #: sparse per-step compartment rows of the recorded patients (:mod:`emdsim.cohort.snapshots`)
    snapshots: pd.DataFrame | None = None


def _sites(mask: np.ndarray, names: tuple[str, ...]) -> list[list[str]]:
    return [[names[j] for j in np.flatnonzero(row)] for row in mask]


def patient_records(st: CohortState, tb: Tables) -> pd.DataFrame:
    """One row per patient of a state whose patients have all finished."""
    w = tb.world
    pt = st.patients
    dx = ~np.isnan(st.t_dx)
    ps, em = w.is_paraskeletal, tb.is_em
    rel = ~np.isnan(st.t_prog)
    died = st.status == Status.DEAD
    end = st.t_end - st.t_dx
    pfs_t = np.where(rel, st.t_prog - st.t_dx, end)
    # lesions detected at any time between diagnosis and the end of follow-up
    seen = (st.lesion_detectable <= st.t_end[:, None]) & dx[:, None]
    since_dx = st.lesion_detectable - st.t_dx[:, None]
    wound_lesion = (seen & w.is_wound).any(axis=1)
    with np.errstate(invalid="ignore"):
        em_first = np.where(seen & em, since_dx, np.inf).min(axis=1)
        ps_first = np.where(seen & ps, since_dx, np.inf).min(axis=1)
    return pd.DataFrame(
        {
            "patient_id": pt.patient_id,
            "treatment": tb.treatment_name,
            "scenario": tb.scenario_name,
            "high_risk": pt.high_risk,
            "subgroup": np.array(SUBGROUPS)[pt.subgroup],
            "centrosome_amplification": pt.centrosome_amplification,
            "age_at_onset_years": pt.age_years,
            "mgus_years": pt.mgus_years,
            "diagnosed": dx,
            "onset_to_diagnosis_days": st.t_dx,
            "burden_at_diagnosis_cells": st.burden_at_dx,
            "ps_at_diagnosis": (st.dx_sites & ps).any(axis=1),
            "em_at_diagnosis": (st.dx_sites & em).any(axis=1),
            "emd_at_diagnosis": st.dx_sites.any(axis=1),
            "sites_at_diagnosis": _sites(st.dx_sites, w.names),
            "relapsed": rel,
            "ps_at_relapse": (st.relapse_sites & ps).any(axis=1),
            "em_at_relapse": (st.relapse_sites & em).any(axis=1),
            "emd_at_relapse": st.relapse_sites.any(axis=1),
            "sites_at_relapse": _sites(st.relapse_sites, w.names),
            "pfs_days": np.where(dx, pfs_t, np.nan),
            "pfs_event": dx & (rel | died),
            "os_days": np.where(dx, end, np.nan),
            "os_event": dx & died,
            "n_lines": np.where(dx, st.line + 1, 0),
            # progressed on the last line the patient could receive (attrition): no further therapy
            "stopped_therapy": dx & (st.phase_pos == OFF_THERAPY),
            "em_ever": (seen & em).any(axis=1),
            "ps_ever": (seen & ps).any(axis=1),
            "em_first_detected_days": np.where(np.isfinite(em_first), em_first, np.nan),
            "ps_first_detected_days": np.where(np.isfinite(ps_first), ps_first, np.nan),
            "wound_plasmacytoma": wound_lesion,
            "simulated_days": st.t_end,
            **_salvage_response(st, tb),
            # the first start of a second or later line with a soft-tissue lesion seen at its
            # restaging (days from diagnosis; NaN: never): what a registry recording EMD per line sees
            "emd_at_later_line_days": np.where(dx, st.emd_line_start - st.t_dx, np.nan),
        }
    )


def _salvage_response(st: CohortState, tb: Tables) -> dict[str, np.ndarray]:
    """The first salvage line's best response by compartment (IMWG-like): serum (all cells) partial
    response when the fewest cells during the line were at most ``partial_response_ratio`` of its
    start; soft tissue (patients with a soft-tissue lesion seen at its restaging and not cleared by local
    therapy then: ``salvage_with_emd``) when the sum of
    products of diameters was: it scales as volume^(2/3), and volume as cells."""
    salvaged = ~np.isnan(st.salvage_start_total)
    ratio = tb.partial_response_ratio
    with np.errstate(invalid="ignore", divide="ignore"):
        serum = st.salvage_best_total <= ratio * st.salvage_start_total
        spd = (st.salvage_best_soft / st.salvage_start_soft) ** (2.0 / 3.0)
    name = tb.regimens[tb.n_first].name if len(tb.regimens) > tb.n_first else ""
    return {
        "salvaged": salvaged,
        "salvage_regimen": np.where(salvaged, name, ""),
        "salvage_with_emd": salvaged & st.salvage_with_emd,
        "salvage_serum_response": salvaged & serum,
        "salvage_soft_tissue_response": salvaged & st.salvage_with_emd & (spd <= ratio),
    }


def lesion_records(st: CohortState, tb: Tables) -> pd.DataFrame:
    """One row per (patient, soft-tissue node) ever seeded: site, kind, route and times (days from diagnosis)."""
    w = tb.world
    rows, nodes = np.nonzero(~np.isnan(st.lesion_onset) & tb.soft_tissue)
    t_dx = st.t_dx[rows]
    return pd.DataFrame(
        {
            "patient_id": st.patients.patient_id[rows],
            "site": np.array(w.names, dtype=object)[nodes] if rows.size else np.array([], dtype=object),
            "kind": np.array(w.kinds, dtype=object)[nodes] if rows.size else np.array([], dtype=object),
            "route": [ROUTE_NAMES[int(r)] for r in st.lesion_route[rows, nodes]],
            "onset_days": st.lesion_onset[rows, nodes] - t_dx,
            "detectable_days": st.lesion_detectable[rows, nodes] - t_dx,
            "wound_opened_days": st.wound_opened[rows, nodes] - t_dx,
            "detected_at_diagnosis": st.dx_sites[rows, nodes],
            "detected_at_relapse": st.relapse_sites[rows, nodes],
            "treated_locally": st.treated_locally[rows, nodes],
            "cells_at_end": st.cells[rows, nodes].sum(axis=-1),
        }
    )
