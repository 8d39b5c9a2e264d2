"""Engine: the resolved tables, the state of a block of patients and the step that advances it.

:mod:`.tables` (the configuration resolved once: :class:`Tables`), :mod:`.status` and :mod:`.state` (the
arrays over patients x compartments x clones), :mod:`.schedule` (the processes in their order:
:func:`step`), :mod:`.kernels` (the compiled loops and the typed records they take), :mod:`.flows`
(the compiled draws of every flow of cells) and :mod:`.jit` (the numba decorator and its cache).
"""

from emdsim.engine.schedule import step
from emdsim.engine.state import CohortState, course_state, init_state, patient_tables
from emdsim.engine.status import Status
from emdsim.engine.tables import Tables, build_tables, max_steps

__all__ = [
    "CohortState",
    "Status",
    "Tables",
    "build_tables",
    "course_state",
    "init_state",
    "max_steps",
    "patient_tables",
    "step",
]
