"""The seed tree: one ``numpy.random.SeedSequence`` root per invocation.

Streams are addressed by a fixed spawn key, never by the order in which they are created, so a
patient's draws depend only on the root seed and the patient's index (not on the cohort size or
on which worker ran it):

* ``(PATIENT, i)`` — patient ``i``'s baseline (risk, traits, age, procedures) and, in the Mesa
  engine, its dynamics;
* ``(BLOCK, b)`` — the dynamics of block ``b`` of ``cohort.block_size`` patients in the
  exact engine;
* ``(STREAM, i)`` — patient ``i``'s dynamics in the hybrid engine (a xoshiro256++ state,
  :func:`emdsim.engine.streams.patient_streams`);
* ``(DESIGN, 0)`` / ``(DESIGN, 1)`` — a sampling design's draws and its bootstrap intervals
  (root: the design spec's own ``seed``).

Nothing in ``src/`` uses global random state (``np.random.<fn>`` or the ``random`` module).
"""

from __future__ import annotations

import numpy as np

__all__ = ["PATIENT", "BLOCK", "DYNAMICS", "DESIGN", "STREAM", "stream", "root_entropy"]

PATIENT, BLOCK, DYNAMICS, DESIGN, STREAM = 0, 1, 2, 3, 4


def stream(seed: int, *key: int) -> np.random.Generator:
    """The generator at ``key`` below the root ``SeedSequence(seed)``."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=tuple(key)))


def root_entropy(seed: int) -> int:
    """The entropy of the root sequence (recorded in provenance)."""
    return int(np.random.SeedSequence(seed).entropy)
