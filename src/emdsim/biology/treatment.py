"""Treatment kill by compartment (process 5).

A regimen is a list of drugs; its kill hazard in a node is the sum of its drugs' hazards for the
node's compartment kind (marrow, paraskeletal, blood, organ — wounds count as organ), times the
phase's relative dose intensity, times the line's efficacy factor, times the clone's
``drug_sensitivity``.  Efficacies differ by compartment: thalidomide has little effect outside the
marrow (Rosiñol, Haematologica 2004), bortezomib is active in soft tissue (seed editorial, ref 16).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from emdsim.config.schema import DrugSpec, RegimenSpec

__all__ = ["regimen_kill_table", "kill_rate"]


def regimen_kill_table(
    regimens: list[RegimenSpec], drugs: dict[str, DrugSpec], drug_kind: tuple[str, ...]
) -> NDArray[np.float64]:
    """Kill hazard ``(R + 1, N)`` of each regimen in each node (the sum of its drugs' hazards, times
    its ``dose_intensity``); the last row is 'no treatment'."""
    table = np.zeros((len(regimens) + 1, len(drug_kind)))
    for r, reg in enumerate(regimens):
        for drug in reg.drugs:
            table[r] += [getattr(drugs[drug], kind) for kind in drug_kind]
        table[r] *= reg.dose_intensity
    return table


def kill_rate(node_kill: ArrayLike, efficacy: ArrayLike, sensitivity: ArrayLike) -> NDArray[np.float64]:
    """Kill hazard (elementwise): the regimen's hazard in the node x line efficacy x clone sensitivity."""
    return node_kill * efficacy * sensitivity
