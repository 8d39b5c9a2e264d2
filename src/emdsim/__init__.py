"""emdsim: an agent-based simulator of extramedullary disease in multiple myeloma.

The package is layered; each layer imports only the ones before it (``docs/ARCHITECTURE.md``,
enforced by ``make test``)::

    rng, units  ->  config  ->  biology  ->  engine  ->  cohort  ->  analysis  ->  studies  ->  viz  ->  cli

The modules of emdsim <= 0.1 lived flat in this package (``emdsim.kernels``, ``emdsim.confload``,
...).  Importing one of those names still works: it gives the module's new home and a
:class:`DeprecationWarning` naming it (:data:`MOVED`).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("emdsim")
except _metadata.PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["MOVED", "__version__"]

#: the flat modules of emdsim <= 0.1 and where each lives now (``emdsim.engine``, ``emdsim.cohort``
#: and ``emdsim.analysis`` are packages now; the first two export what their modules did)
MOVED = {
    "emdsim._jit": "emdsim.engine.jit",
    "emdsim.rates": "emdsim.engine.flows",
    "emdsim.kernels": "emdsim.engine.kernels",
    "emdsim.anatomy": "emdsim.biology.anatomy",
    "emdsim.traits": "emdsim.biology.traits",
    "emdsim.niches": "emdsim.biology.niches",
    "emdsim.spread": "emdsim.biology.spread",
    "emdsim.treatment": "emdsim.biology.treatment",
    "emdsim.patients": "emdsim.biology.patients",
    "emdsim.model": "emdsim.cohort.agents",
    "emdsim.outcomes": "emdsim.cohort.outcomes",
    "emdsim.snapshots": "emdsim.cohort.snapshots",
    "emdsim.summary": "emdsim.analysis.summary",
    "emdsim.targets": "emdsim.analysis.targets",
    "emdsim.tasks": "emdsim.studies.task",
    "emdsim.rundir": "emdsim.studies.rundir",
    "emdsim.sweep": "emdsim.studies.sweep",
    "emdsim.design": "emdsim.studies.design",
    "emdsim.experiments": "emdsim.studies.trials",
    "emdsim.fit": "emdsim.studies.fit",
    "emdsim.fit_abc": "emdsim.studies.fit.abc",
    "emdsim.confload": "emdsim.config.load",
    "emdsim.inputs": "emdsim.config.inputs",
    "emdsim.callbacks": "emdsim.cli.callbacks",
    "emdsim.cliutil": "emdsim.cli.args",
    "emdsim.design_cli": "emdsim.cli.design",
    "emdsim.fit_cli": "emdsim.cli.fit",
    "emdsim.experiment_cli": "emdsim.cli.trial",
    "emdsim.paramdoc": "emdsim.cli.paramdoc",
    "emdsim.dashboard": "emdsim.cli.dashboard",
}


class _Moved(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old module name and loads it as the module at its new home (the same object)."""

    def __init__(self) -> None:
        self._specs: dict[str, importlib.machinery.ModuleSpec] = {}  # the real specs, restored in exec_module

    def find_spec(self, name, path=None, target=None):  # noqa: ANN001 - importlib's protocol
        if name not in MOVED:
            return None
        return importlib.util.spec_from_loader(name, self)

    def create_module(self, spec):  # noqa: ANN001
        new = MOVED[spec.name]
        warnings.warn(f"{spec.name} has moved to {new}; import it from there", DeprecationWarning, stacklevel=2)
        module = importlib.import_module(new)
        self._specs[spec.name] = module.__spec__  # importlib sets __spec__ to the old name's: restored below
        return module

    def exec_module(self, module):  # noqa: ANN001
        module.__spec__ = self._specs.pop(module.__spec__.name, module.__spec__)


if not any(isinstance(f, _Moved) for f in sys.meta_path):
    sys.meta_path.append(_Moved())
