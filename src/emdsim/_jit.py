"""The numba decorator used by emdsim, with a compilation cache that cannot go stale.

numba's on-disk cache is invalidated only by changes to the file that defines a compiled
function, not to the functions it calls in other modules: editing a rule in ``niches.py`` would
leave ``kernels.py`` running the old rule.  The cache therefore lives in a directory named after a
hash of every module whose code is compiled, so any edit starts a fresh cache.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numba

__all__ = ["JIT", "JIT_INLINE"]

_HERE = Path(__file__).resolve().parent
_COMPILED_SOURCES = ("_jit.py", "rates.py", "kernels.py", "niches.py", "spread.py", "treatment.py", "units.py")


def _source_hash() -> str:
    h = hashlib.sha256()
    for name in _COMPILED_SOURCES:
        h.update((_HERE / name).read_bytes())
    h.update(numba.__version__.encode())
    return h.hexdigest()[:16]


numba.config.CACHE_DIR = str(_HERE / "__pycache__" / f"numba-{_source_hash()}")

#: ``@JIT``: nopython, cached (in the directory above), releasing the GIL; ``error_model="numpy"``:
#: a float division by zero gives inf/nan as in numpy instead of a check and exception per division
#: (the rules guard their own denominators)
JIT = numba.njit(cache=True, nogil=True, error_model="numpy")
#: ``@JIT_INLINE``: the same, inlined into its callers by numba (for small functions called per
#: entry from the compiled loops: a call boundary costs reference counting of its array arguments)
JIT_INLINE = numba.njit(cache=True, nogil=True, inline="always", error_model="numpy")


def kernels_cached() -> bool:
    """Whether the compiled kernels of this source tree are already in the cache (else the first
    cohort compiles them, ~35 s on 2 cores)."""
    cache = Path(numba.config.CACHE_DIR)
    return all(any(cache.rglob(f"kernels.{name}-*.nbi")) for name in ("advance", "clinic"))
