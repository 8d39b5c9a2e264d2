"""The commands: the only layer that composes Hydra configurations from the command line, prints
and exits.  ``emdsim`` (:mod:`.main`, with Hydra's callbacks in :mod:`.callbacks`), ``emdsim-design``
(:mod:`.design`), ``emdsim-fit`` (:mod:`.fit`), ``emdsim-trial`` (:mod:`.trial`), ``emdsim-report``
(:mod:`.report`), ``emdsim-animate`` (:mod:`.animate`), ``emdsim-app`` (:mod:`.dashboard`, the only
module that imports Solara); ``python -m emdsim.cli.paramdoc`` writes docs/parameters.md; :mod:`.args` is their shared
parser (help with examples and outputs, ``--version``, one-line errors)."""

import atexit as _atexit
import gc as _gc
import os as _os

#: The collector's oldest-generation threshold in a command's process (CPython's default: 10).
GC_FULL_COLLECTION_EVERY = 100


def _tune_collector() -> None:
    """Spare a command's short process the cyclic collector's passes over its long-lived objects.

    A command allocates hundreds of thousands of objects that live as long as it does, as it imports
    pandas, numba's typing registries, matplotlib and lifelines.  Measured on a 40-patient ``emdsim``
    run (3.9 CPU-s in all, ``gc.callbacks`` and ``/usr/bin/time``):

    * during the run, CPython 3.11 makes a full collection each time the tracked objects grow by a
      quarter, and each rescans them all: six, 0.46 CPU-s.  With the oldest generation's threshold
      at :data:`GC_FULL_COLLECTION_EVERY` (100 collections of the middle one, ~700,000 net
      allocations, besides the quarter rule) the run pays ~0.07; young cycles are collected as
      often as before;
    * at exit, the interpreter's final collections traverse every object again: ~0.4 CPU-s.  An
      exit handler freezes them (:func:`gc.freeze`).  It is registered when this package is
      imported, the first in a command's process, so it runs after every other exit handler
      (logging, worker pools, temporary files).  Objects still in reference cycles then go with
      the process's memory instead of being collected one by one; every other object is released
      as before.
    """
    young, middle, oldest = _gc.get_threshold()
    _gc.set_threshold(young, middle, max(GC_FULL_COLLECTION_EVERY, oldest))
    _atexit.register(_gc.freeze)


_tune_collector()


def _one_blas_thread() -> None:
    """One OpenBLAS thread per process, unless the user chose (``OPENBLAS_NUM_THREADS``,
    ``GOTO_NUM_THREADS`` or ``OMP_NUM_THREADS`` set): set before numpy is imported, and inherited by
    worker processes.

    emdsim's linear algebra is small (lifelines' Cox fits, the fit's emulators on a few hundred
    runs) and its parallelism is processes, one per core.  OpenBLAS starts a thread per core in every
    process that loads it, numpy's copy and scipy's, and each thread spins for ~0.1 s before it
    sleeps: 0.17 CPU-s of a process that loads both and then waits (measured), ~0.2 of a 40-patient
    run (medians of five, alternating: 2.79 with two threads, 2.59 with one)."""
    if not {"OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS"} & set(_os.environ):
        _os.environ["OPENBLAS_NUM_THREADS"] = "1"


_one_blas_thread()
