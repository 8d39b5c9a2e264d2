"""Growth in a niche and retention by adhesion (processes 1 and 2).

Pure, vectorised rule functions.  Arrays broadcast over leading axes; trailing axes are
``(node, clone)`` for cells and ``(clone, trait)`` for traits.

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
from numpy.typing import NDArray

from .anatomy import LIGANDS
from .config.schema import SpreadConfig
from .traits import TRAIT_INDEX

__all__ = ["occupancy", "support", "proliferation", "birth_rate", "death_rate", "adhesion", "egress_rate"]

_L = {name: i for i, name in enumerate(LIGANDS)}
_T = TRAIT_INDEX


def occupancy(total_cells: NDArray[np.float64], capacity: NDArray[np.float64]) -> NDArray[np.float64]:
    """Fraction of a compartment's capacity in use (0 where the capacity is 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(capacity > 0, total_cells / np.where(capacity > 0, capacity, 1.0), 0.0)


def support(niche_dependence: NDArray[np.float64], soil: NDArray[np.float64]) -> NDArray[np.float64]:
    """Growth support of clones with ``niche_dependence (..., K)`` in nodes with ``soil (..., N)``.

    Returns ``(..., N, K)`` in [0, 1]; 1 in the marrow (soil 1) or for a niche-independent clone.
    """
    d = niche_dependence[..., None, :]
    return (1.0 - d) + d * soil[..., :, None]


def proliferation(prolif: NDArray[np.float64], em_prolif: NDArray[np.float64],
                  is_marrow: NDArray[np.bool_]) -> NDArray[np.float64]:
    """Clone proliferation ``(..., N, K)``: ``prolif (..., K)``, times ``em_prolif`` outside the marrow."""
    return prolif[..., None, :] * np.where(is_marrow[:, None], 1.0, em_prolif[..., None, :])


def birth_rate(base_rate_per_day: float, prolif: NDArray[np.float64], occ: NDArray[np.float64],
               supp: NDArray[np.float64]) -> NDArray[np.float64]:
    """Birth hazard ``(..., N, K)``: base x proliferation ``(..., N, K)`` x free capacity x support."""
    free = np.clip(1.0 - occ, 0.0, 1.0)
    return base_rate_per_day * prolif * free[..., :, None] * supp


def death_rate(base_rate_per_day: float, niche_loss_rate_per_day: float,
               supp: NDArray[np.float64]) -> NDArray[np.float64]:
    """Death hazard ``(..., N, K)``: baseline plus loss of niche support."""
    return base_rate_per_day + niche_loss_rate_per_day * (1.0 - supp)


def adhesion(traits: NDArray[np.float64], ligands: NDArray[np.float64], sp: SpreadConfig) -> NDArray[np.float64]:
    """Retention score ``(..., N, K)`` of clones with ``traits (..., K, T)`` in nodes ``ligands (N, L)``."""
    t = traits
    lg = ligands
    return (sp.w_vla4 * lg[:, None, _L["vcam1"]] * t[..., None, :, _T["vla4"]]
            + sp.w_cd44 * lg[:, None, _L["hyaluronan"]] * t[..., None, :, _T["cd44"]]
            + sp.w_cd56 * lg[:, None, _L["ncam"]] * t[..., None, :, _T["cd56"]]
            + sp.w_cxcr4 * lg[:, None, _L["cxcl12"]] * t[..., None, :, _T["cxcr4"]]
            + sp.w_tetraspanin * lg[:, None, _L["vcam1"]] * t[..., None, :, _T["tetraspanin"]])


def egress_rate(base_rate_per_day: NDArray[np.float64], adh: NDArray[np.float64],
                occ: NDArray[np.float64], crowding_gain: float) -> NDArray[np.float64]:
    """Egress hazard ``(..., N, K)`` from node-wise ``base_rate_per_day (N,)``."""
    return base_rate_per_day[:, None] * np.exp(-adh) * (1.0 + crowding_gain * occ[..., :, None])
