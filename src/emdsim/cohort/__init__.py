"""Cohort: virtual patients simulated together in blocks (:mod:`.run`), one patient as a Mesa model
whose agents are clone populations (:mod:`.agents`), and the tables a run returns: one row per
patient and per lesion (:mod:`.outcomes`), sparse per-step snapshots (:mod:`.snapshots`)."""

from emdsim.cohort.outcomes import CohortResult
from emdsim.cohort.run import run_cohort, simulate_block

__all__ = ["CohortResult", "run_cohort", "simulate_block"]
