"""Clone traits: per-patient baselines and heritable phenotype switches.

A clone is identified by the set of phenotype switches it has acquired (CD56 loss, CXCR4
down-regulation, niche independence, drug resistance, ... — ``traits.switches`` in config), coded
as a bit mask: clone ``k`` carries switch ``s`` when bit ``s`` of ``k`` is set.  With ``S``
switches there are ``K = 2**S`` clone states; clone 0 is the founder.  A switch is acquired at
division with probability ``rate_per_division`` (times the patient's genomic-instability factor)
and multiplies the clone's traits by the switch's ``effects``.  The bit mask is the clone's
lineage: every subclone descends from the clone with one bit fewer.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from emdsim.config.schema import TRAIT_NAMES, SwitchSpec

__all__ = ["TRAIT_INDEX", "n_clone_states", "switch_targets", "clone_trait_table", "clone_label"]

TRAIT_INDEX = {name: i for i, name in enumerate(TRAIT_NAMES)}
_FRACTION_TRAITS = (TRAIT_INDEX["niche_dependence"], TRAIT_INDEX["drug_sensitivity"])


def n_clone_states(switches: list[SwitchSpec]) -> int:
    return 2 ** len(switches)


def switch_targets(n_switches: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """For each switch ``s``: the source clones lacking it and the clones they become.

    Returns ``(sources, targets)`` of shape ``(S, K/2)``: ``targets[s] = sources[s] | (1 << s)``.
    """
    k = np.arange(2**n_switches)
    sources = np.stack([k[(k >> s) & 1 == 0] for s in range(n_switches)]) if n_switches else np.zeros((0, 0), int)
    targets = np.stack([sources[s] | (1 << s) for s in range(n_switches)]) if n_switches else sources
    return sources.astype(np.int64), targets.astype(np.int64)


def clone_trait_table(base: NDArray[np.float64], switches: list[SwitchSpec]) -> NDArray[np.float64]:
    """Traits of every clone state: ``base (P, T)`` -> ``(P, K, T)``.

    Fractions (niche dependence, drug sensitivity) are clipped to [0, 1]; switch effects on them
    are multiplicative too (a drug-resistance switch multiplies drug_sensitivity by, say, 0.15).
    """
    n_s = len(switches)
    factors = np.ones((2**n_s, len(TRAIT_NAMES)))
    for s, sw in enumerate(switches):
        has = ((np.arange(2**n_s) >> s) & 1).astype(bool)
        for trait, f in sw.effects.items():
            factors[has, TRAIT_INDEX[trait]] *= f
    table = base[:, None, :] * factors[None, :, :]
    for t in _FRACTION_TRAITS:
        np.clip(table[..., t], 0.0, 1.0, out=table[..., t])
    return table


def clone_label(k: int, switches: list[SwitchSpec]) -> str:
    """Readable name of clone state ``k`` (e.g. ``founder`` or ``cd56_loss+cxcr4_down``)."""
    names = [sw.name for s, sw in enumerate(switches) if (k >> s) & 1]
    return "+".join(names) if names else "founder"
