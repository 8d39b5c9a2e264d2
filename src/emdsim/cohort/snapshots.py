"""Snapshots of chosen patients during a run: what animations and the dashboard replay.

Every ``sim.snapshot_every`` steps, for each recorded patient that is still followed (and once
more on the step it dies or is censored), one row per compartment that holds cells, received cells
by either route during the step, or is an open wound.  With the hybrid engine's adaptive step
(``sim.max_step_days``) a patient is recorded at the ends of its own steps: within a long step it
has not been advanced, so a row there would repeat the last step's compartments and flows at a
later time; it is recorded at the step's end when the step spans a recording step (its ``step``
column then skips the weeks between).  Tables are sparse (empty compartments are
left out) so that dozens of patients over ten years stay a few megabytes.  Both engines record
through :class:`SnapshotRecorder`, so their snapshot tables have the same columns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # pragma: no cover
    from emdsim.engine.state import CohortState
    from emdsim.engine.tables import Tables

__all__ = ["SNAPSHOT_COLUMNS", "SnapshotRecorder", "empty_table"]

SNAPSHOT_COLUMNS = (
    "patient_id",
    "step",
    "t_days",
    "status",
    "line",
    "regimen",
    "node",
    "kind",
    "cells",
    "local_flow",
    "haematogenous_flow",
    "inflammation",
    "wound_open",
)


def empty_table() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object if c in ("node", "kind") else float) for c in SNAPSHOT_COLUMNS})


class SnapshotRecorder:
    """Collects snapshot rows of the patients ``ids`` from a (block) state after each step."""

    def __init__(self, tb: Tables, ids, every: int) -> None:
        self.tb = tb
        self.ids = np.asarray(sorted(set(int(i) for i in ids)), dtype=np.int64)
        self.every = int(every)
        self._ended: set[int] = set()
        self._parts: list[dict[str, np.ndarray]] = []
        self._rows_of: object = None
        self._rows = self.ids[:0]
        self._pos = self.ids[:0]  # each of those rows' position in ``ids``
        #: the step at whose end each recorded patient (by its position in ``ids``) was last advanced
        #: (-1: not yet recorded, so that onset, step 0, is)
        self._advanced = np.full(len(self.ids), -1, np.int64)

    def record(self, st: CohortState) -> None:
        if self.every <= 0 or not len(self.ids):
            return
        pid = st.patients.patient_id
        if self._rows_of is not st.patients:  # a new state's rows (a block keeps its own for its whole run)
            self._rows_of, self._rows = st.patients, np.flatnonzero(np.isin(pid, self.ids))
            self._pos = np.searchsorted(self.ids, pid[self._rows])
        rows, pos = self._rows, self._pos
        if not len(rows):
            return
        step = st.n_steps
        alive = st.alive[rows]
        # recorded when a recording step (a multiple of ``every``) lies in the step that ended now: every
        # ``every`` steps with weekly steps; the state at onset (step 0) always
        advanced = ~alive | st.began_step(rows) if step else np.ones(len(rows), dtype=bool)
        due = advanced & (step // self.every > self._advanced[pos] // self.every)
        self._advanced[pos[advanced & alive]] = step
        if not alive.all():  # and once on the step its course ended (death, censoring), whatever ``every``
            due = (due & alive) | (~alive & np.array([int(p) not in self._ended for p in pid[rows]], dtype=bool))
        rows = rows[due]
        if not len(rows):
            return
        self._ended.update(int(p) for p in pid[rows][~st.alive[rows]])
        cells = st.cells[rows].sum(axis=-1)
        local = st.last_local[rows].sum(axis=-1)
        haem = st.last_haem[rows].sum(axis=-1)
        wound = ~np.isnan(st.wound_opened[rows])
        keep = (cells > 0) | (local > 0) | (haem > 0) | wound
        r, n = np.nonzero(keep)
        row = rows[r]
        self._parts.append(
            {
                "patient_id": pid[row],
                "step": np.full(len(r), st.n_steps, np.int64),
                "t_days": np.full(len(r), st.t_days),
                "status": st.status[row],
                "line": st.line[row],
                "regimen": st.regimen[row],
                "node": n,
                "cells": cells[r, n],
                "local_flow": local[r, n],
                "haematogenous_flow": haem[r, n],
                "inflammation": st.inflammation[row, n],
                "wound_open": wound[r, n],
            }
        )

    def table(self) -> pd.DataFrame:
        if not self._parts:
            return empty_table()
        data = {c: np.concatenate([p[c] for p in self._parts]) for c in self._parts[0]}
        node = data["node"]  # node indices while recording, names in the table
        data["node"] = np.asarray(self.tb.world.names, dtype=object)[node]
        data["kind"] = np.asarray(self.tb.world.kinds, dtype=object)[node]
        frame = pd.DataFrame(data, columns=list(SNAPSHOT_COLUMNS))
        return frame.sort_values(["patient_id", "step", "node"], kind="stable").reset_index(drop=True)
