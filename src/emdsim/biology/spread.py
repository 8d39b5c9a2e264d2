"""Local extension and haematogenous spread (processes 3 and 4).

* **Local extension** (direct extension from skeletal tumours through disrupted cortical bone,
  seed editorial): a marrow site whose occupancy exceeds ``cortical_disruption_occupancy`` breaks
  its cortex with a hazard proportional to the excess; from a breached site cells spill into the
  paraskeletal compartment beside it at ``local_extension_rate_per_day``.
* **Focal breach at relapse**: under therapy, drug-resistant clones regrow as focal lesions (spatially
  distinct resistant clones in large focal lesions: Rasche, Nat Commun 2017;8:268), not as diffuse
  infiltration.  A focal lesion breaks the cortex by its own size, whatever the occupancy of the whole
  site: the resistant cells of a treated marrow site break it with a hazard proportional to their
  excess over ``focal_breach_cells``.
* **Haematogenous spread**: circulating cells die (``blood_death_rate``) or arrest
  (``extravasation_rate``).  An arresting cell chooses its tissue in proportion to perfusion x
  binding (selectin·PSGL-1, VCAM-1·VLA-4, hyaluronan·CD44, plus non-specific trapping) x chemokine
  attraction ``exp(beta_cxcr4 CXCR4·CXCL12 + beta_ccr CCR·CCL)`` x barrier (CNS).  In the marrow it
  engrafts with ``p_marrow_engraftment``; elsewhere it founds a lesion with ``p_colonisation`` x
  support (seed and soil; niche independence).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from emdsim.biology.anatomy import LIGANDS
from emdsim.biology.traits import TRAIT_INDEX
from emdsim.config.schema import SpreadConfig

__all__ = ["disruption_rate", "focal_breach_rate", "homing_weights", "colonisation_probability"]

_L = {name: i for i, name in enumerate(LIGANDS)}
_T = TRAIT_INDEX


def disruption_rate(occ: ArrayLike, threshold: float, rate_per_day: float) -> NDArray[np.float64]:
    """Cortical-disruption hazard of marrow sites with occupancy ``occ``: 0 at or below ``threshold``."""
    return rate_per_day * np.maximum(occ - threshold, 0.0) / max(1.0 - threshold, 1e-12)


def focal_breach_rate(resistant_cells: ArrayLike, focal_cells: float, rate_per_day: float) -> NDArray[np.float64]:
    """Cortical-breach hazard of a marrow site under therapy whose drug-resistant clones hold
    ``resistant_cells``: they regrow as one focal lesion, which breaks the cortex with a hazard
    ``rate_per_day`` times its excess over ``focal_cells``, in units of ``focal_cells`` (0 at or below)."""
    return rate_per_day * np.maximum(resistant_cells / max(focal_cells, 1e-12) - 1.0, 0.0)


def homing_weights(
    traits: NDArray[np.float64],
    ligands: NDArray[np.float64],
    perfusion: ArrayLike,
    barrier: ArrayLike,
    sp: SpreadConfig,
) -> NDArray[np.float64]:
    """Unnormalised destination weight of circulating clones ``traits (..., T)`` for compartments
    ``ligands (..., L)`` with ``perfusion`` and ``barrier`` (the caller aligns the axes)."""
    t, lg = traits, ligands
    binding = (
        sp.arrest_baseline
        + t[..., _T["psgl1"]] * lg[..., _L["selectin"]]
        + t[..., _T["vla4"]] * lg[..., _L["vcam1"]]
        + t[..., _T["cd44"]] * lg[..., _L["hyaluronan"]]
    )
    chemo = np.exp(
        sp.beta_cxcr4 * t[..., _T["cxcr4"]] * lg[..., _L["cxcl12"]]
        + sp.beta_ccr * t[..., _T["ccr"]] * lg[..., _L["ccl"]]
    )
    return perfusion * barrier * binding * chemo


def colonisation_probability(p_colonisation: float, supp: ArrayLike) -> NDArray[np.float64]:
    """Probability that an arrested cell founds a lesion: ``p_colonisation * support``."""
    return np.minimum(np.maximum(p_colonisation * supp, 0.0), 1.0)
