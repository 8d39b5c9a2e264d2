"""Growth in a niche and retention by adhesion (processes 1 and 2).

Pure, vectorised, elementwise rule functions: the caller aligns the arrays (dense
patients x nodes x clones, or one entry per occupied (patient, node, clone)) and numpy
broadcasting does the rest.  Trait and ligand arrays carry their own last axis.

* **Growth** is logistic in each compartment: the birth hazard falls linearly with occupancy
  (``total / capacity``).  Outside the marrow a niche-dependent clone (``niche_dependence`` d)
  only receives ``support = (1 - d) + d * soil`` of its birth hazard and suffers an extra
  anoikis-like death hazard ``niche_loss_death_rate * (1 - support)``.
* **Retention** is the sum of receptor-ligand matches (VLA-4·VCAM-1, CD44·hyaluronan,
  CD56·NCAM homotypic, CXCR4·CXCL12, tetraspanin·VCAM-1 integrin complexes); the egress hazard
  is ``rate * exp(-adhesion) * (1 + crowding_gain * occupancy)`` (seed editorial, refs 1-2).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from emdsim.biology.anatomy import LIGANDS
from emdsim.biology.traits import TRAIT_INDEX
from emdsim.config.schema import SpreadConfig

__all__ = [
    "occupancy",
    "support",
    "proliferation",
    "birth_rate",
    "death_rate",
    "adhesion",
    "retained_release",
    "crowded_release",
    "egress_rate",
]

_L = {name: i for i, name in enumerate(LIGANDS)}
_T = TRAIT_INDEX


def occupancy(total_cells: NDArray[np.float64], capacity: NDArray[np.float64]) -> NDArray[np.float64]:
    """Fraction of a compartment's capacity in use (0 where the capacity is 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(capacity > 0, total_cells / np.where(capacity > 0, capacity, 1.0), 0.0)


# The rules below are plain arithmetic on numpy arrays *or* scalars: numpy code calls them on
# arrays, and emdsim.engine.kernels compiles the very same functions with numba for its loops.


def support(niche_dependence: ArrayLike, soil: ArrayLike) -> NDArray[np.float64]:
    """Growth support in [0, 1]: 1 in the marrow (soil 1) or for a niche-independent clone."""
    return (1.0 - niche_dependence) + niche_dependence * soil


def proliferation(prolif: ArrayLike, em_prolif: ArrayLike, in_marrow: ArrayLike) -> NDArray[np.float64]:
    """Clone proliferation: ``prolif``, times ``em_prolif`` outside the marrow (``in_marrow`` 0 or 1)."""
    return prolif * (in_marrow + (1.0 - in_marrow) * em_prolif)


def birth_rate(base_rate_per_day: float, prolif: ArrayLike, occ: ArrayLike, supp: ArrayLike) -> NDArray[np.float64]:
    """Birth hazard: base x proliferation x free capacity x support."""
    return base_rate_per_day * prolif * np.minimum(np.maximum(1.0 - occ, 0.0), 1.0) * supp


def death_rate(base_rate_per_day: float, niche_loss_rate_per_day: float, supp: ArrayLike) -> NDArray[np.float64]:
    """Death hazard: baseline plus loss of niche support."""
    return base_rate_per_day + niche_loss_rate_per_day * (1.0 - supp)


def adhesion(traits: NDArray[np.float64], ligands: NDArray[np.float64], sp: SpreadConfig) -> NDArray[np.float64]:
    """Retention score of clones with ``traits (..., T)`` in compartments with ``ligands (..., L)``."""
    t, lg = traits, ligands
    return (
        sp.w_vla4 * lg[..., _L["vcam1"]] * t[..., _T["vla4"]]
        + sp.w_cd44 * lg[..., _L["hyaluronan"]] * t[..., _T["cd44"]]
        + sp.w_cd56 * lg[..., _L["ncam"]] * t[..., _T["cd56"]]
        + sp.w_cxcr4 * lg[..., _L["cxcl12"]] * t[..., _T["cxcr4"]]
        + sp.w_tetraspanin * lg[..., _L["vcam1"]] * t[..., _T["tetraspanin"]]
    )


def retained_release(base_rate_per_day: ArrayLike, adh: ArrayLike) -> NDArray[np.float64]:
    """The uncrowded part of the egress hazard, ``base * exp(-adhesion)`` (static per clone and site)."""
    return base_rate_per_day * np.exp(-adh)


def crowded_release(retained: ArrayLike, occ: ArrayLike, crowding_gain: float) -> NDArray[np.float64]:
    """Egress hazard from its uncrowded part (:func:`retained_release`):
    ``retained * (1 + crowding_gain * occupancy)``."""
    return retained * (1.0 + crowding_gain * occ)


def egress_rate(
    base_rate_per_day: ArrayLike, adh: ArrayLike, occ: ArrayLike, crowding_gain: float
) -> NDArray[np.float64]:
    """Egress (release) hazard: ``base * exp(-adhesion) * (1 + crowding_gain * occupancy)``."""
    return crowded_release(retained_release(base_rate_per_day, adh), occ, crowding_gain)
