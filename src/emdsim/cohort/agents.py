"""The Mesa view of one virtual patient.

Agents are **clone populations**: one :class:`CloneAgent` per (compartment, clone state) holding
its cell count, traits and lineage, placed on a Mesa ``discrete_space.Network`` built from the
anatomy graph.  A Python object per plasma cell cannot reach the 1e12 cells of a myeloma at
diagnosis (``shared/STACK_NOTES.md``: 1-9 us per agent-step), so an agent stands for every cell of
one clone in one compartment; a patient has tens to a few hundred agents.

The model owns orchestration only: each :meth:`EMDModel.step` runs :func:`emdsim.engine.step`
(the shared rule functions, in the documented order) on this patient's state and then reconciles
the agents — a new agent appears where a clone reaches a new compartment (recording the route it
came by: local extension, haematogenous spread or a phenotype switch), and an agent whose
population dies out is removed.
"""

from __future__ import annotations

from typing import Any

import mesa
import numpy as np
import pandas as pd
from mesa.discrete_space import CellAgent, Network

from emdsim import rng as seeds
from emdsim.biology.patients import sample_patients
from emdsim.biology.traits import TRAIT_INDEX
from emdsim.cohort.outcomes import CohortResult, lesion_records, patient_records
from emdsim.cohort.snapshots import SnapshotRecorder
from emdsim.config.schema import EmdConfig
from emdsim.engine.schedule import step
from emdsim.engine.state import init_state
from emdsim.engine.status import Status
from emdsim.engine.streams import patient_streams
from emdsim.engine.tables import Tables, build_tables

__all__ = ["CloneAgent", "EMDModel", "build_network"]


def build_network(tb: Tables, random: Any) -> Network:
    """Mesa network space over the anatomy graph (``layout=None`` where Mesa supports it)."""
    import inspect

    kwargs: dict[str, Any] = {"random": random}
    if "layout" in inspect.signature(Network.__init__).parameters:
        kwargs["layout"] = None  # Mesa >= 3.4 would otherwise run an unseeded spring layout
    return Network(tb.world.graph.copy(), **kwargs)


class CloneAgent(CellAgent):
    """All cells of one clone state in one compartment."""

    def __init__(self, model: EMDModel, node: int, clone: int, n_cells: float, arrived_by: str) -> None:
        super().__init__(model)
        self.node = node
        self.clone = clone
        self.n_cells = n_cells
        self.arrived_by = arrived_by
        self.born_day = model.state.t_days
        self.cell = model.space[model.tables.world.names[node]]

    @property
    def label(self) -> str:
        return self.model.tables.clone_labels[self.clone]

    @property
    def parent_clones(self) -> list[int]:
        """Clone states this one can descend from (one switch fewer)."""
        n_switches = len(self.model.tables.switches)
        return [self.clone & ~(1 << s) for s in range(n_switches) if self.clone >> s & 1]

    def trait(self, name: str) -> float:
        return float(self.model.state.traits[0, self.clone, TRAIT_INDEX[name]])


class EMDModel(mesa.Model):
    """One patient from myeloma onset to death or censoring."""

    def __init__(self, cfg: EmdConfig, *, patient_id: int, tables: Tables | None = None) -> None:
        """Patient ``patient_id`` of the cohort ``cfg`` (``tables``: ``build_tables(cfg)``, if already built)."""
        super().__init__(rng=seeds.stream(cfg.seed, seeds.DYNAMICS, patient_id))
        tables = build_tables(cfg) if tables is None else tables
        self.cfg = cfg
        self.tables = tables
        self.patient_id = patient_id
        # with the hybrid engine's tables the patient draws from its own stream, as in a cohort: the
        # agent view of patient i is then the cohort's patient i, to the byte
        ids = np.array([patient_id])
        streams = patient_streams(cfg.seed, ids) if tables.hybrid else None
        self.state = init_state(tables, sample_patients(cfg, tables.world, ids), streams)
        self.space = build_network(tables, self.random)
        self._agents_at: dict[tuple[int, int], CloneAgent] = {}
        self.recorder = SnapshotRecorder(tables, [patient_id], cfg.sim.snapshot_every)
        self._sync_agents()
        self.recorder.record(self.state)

    @property
    def finished(self) -> bool:
        return bool(self.state.status[0] >= Status.DEAD) or self.state.n_steps >= self.tables.max_steps

    def step(self) -> None:
        step(self.state, self.tables, self.rng)
        self._sync_agents()
        self.recorder.record(self.state)
        self.running = not self.finished

    def run(self) -> None:
        while not self.finished:
            self.step()
        if self.state.status[0] < Status.DEAD:
            self.state.status[0] = Status.CENSORED
            self.state.t_end[0] = self.state.t_days

    def _sync_agents(self) -> None:
        st = self.state
        cells = st.cells[0]
        nodes, clones = np.nonzero(cells)
        present = set(zip(nodes.tolist(), clones.tolist(), strict=True))
        for key in list(self._agents_at):
            if key not in present:
                self._agents_at.pop(key).remove()
        for n, k in present:
            agent = self._agents_at.get((n, k))
            if agent is None:
                if st.last_local[0, n, k] > 0:
                    how = "local"
                elif st.last_haem[0, n, k] > 0:
                    how = "haematogenous"
                elif st.n_steps == 0:
                    how = "onset"
                else:
                    how = "switch"
                self._agents_at[(n, k)] = CloneAgent(self, n, k, float(cells[n, k]), how)
            else:
                agent.n_cells = float(cells[n, k])

    def snapshot_table(self) -> pd.DataFrame:
        """Sparse snapshots (:data:`emdsim.cohort.snapshots.SNAPSHOT_COLUMNS`): one row per step and compartment."""
        return self.recorder.table()

    def agent_table(self) -> pd.DataFrame:
        return pd.DataFrame(
            [
                {
                    "node": self.tables.world.names[a.node],
                    "clone": a.label,
                    "cells": a.n_cells,
                    "arrived_by": a.arrived_by,
                    "born_day": a.born_day,
                }
                for a in self.agents
            ]
        )

    def result(self) -> CohortResult:
        tally = self.state.tally
        return CohortResult(
            patient_records(self.state, self.tables),
            lesion_records(self.state, self.tables),
            (int(tally[0]), int(tally[1])),
            self.snapshot_table(),
        )
