"""The numba decorator used by emdsim, with a compilation cache that cannot go stale.

numba's on-disk cache is invalidated only by changes to the file that defines a compiled
function, not to the functions it calls in other modules: editing a rule in ``niches.py`` would
leave ``kernels.py`` running the old rule.  The cache therefore lives in a directory named after a
hash of every module whose code is compiled, so any edit starts a fresh cache.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numba

__all__ = ["JIT", "JIT_CALLED", "JIT_INLINE", "JIT_NO_NRT"]

_PACKAGE = Path(__file__).resolve().parents[1]  # src/emdsim
#: every module whose code numba compiles, and the modules of emdsim they import (their constants are
#: frozen into the machine code): paths inside the package; an edit to any starts a fresh cache
_COMPILED_SOURCES = (
    "engine/jit.py",
    "engine/flows.py",
    "engine/streams.py",
    "engine/hybrid.py",
    "engine/kernels.py",
    "biology/anatomy.py",
    "biology/niches.py",
    "biology/spread.py",
    "biology/traits.py",
    "biology/treatment.py",
    "rng.py",
    "units.py",
)


def _source_hash() -> str:
    h = hashlib.sha256()
    for name in _COMPILED_SOURCES:
        h.update((_PACKAGE / name).read_bytes())
    h.update(numba.__version__.encode())
    return h.hexdigest()[:16]


def prune_stale_caches(cache_root: Path, current: Path) -> list[Path]:
    """Remove the caches of earlier sources beside ``current`` (``numba-<hash>`` folders: each edit
    of a compiled source leaves one behind, tens of MB); only when ``current`` does not exist yet,
    i.e. once, at the first compilation after an edit.  Returns what was removed."""
    if current.exists() or not cache_root.is_dir():
        return []
    stale = [d for d in cache_root.glob("numba-*") if d.is_dir() and d != current]
    for d in stale:
        shutil.rmtree(d, ignore_errors=True)  # another process may be removing it too
    return stale


_CACHE = _PACKAGE / "__pycache__" / f"numba-{_source_hash()}"
prune_stale_caches(_CACHE.parent, _CACHE)
numba.config.CACHE_DIR = str(_CACHE)

#: ``@JIT``: nopython, cached (in the directory above), releasing the GIL; ``error_model="numpy"``:
#: a float division by zero gives inf/nan as in numpy instead of a check and exception per division
#: (the rules guard their own denominators)
JIT = numba.njit(cache=True, nogil=True, error_model="numpy")
#: ``@JIT_INLINE``: the same, inlined into its callers by numba (for small functions called per
#: entry from the compiled loops: a call boundary costs reference counting of its array arguments)
JIT_INLINE = numba.njit(cache=True, nogil=True, inline="always", error_model="numpy")
#: ``@JIT_NO_NRT``: ``@JIT`` without numba's reference counting (``_nrt=False``): for a compiled pass
#: that allocates nothing and whose inlined functions take tuples of arrays, which it would otherwise
#: count member by member per call; every array comes from the caller (numba cannot allocate here)
JIT_NO_NRT = numba.njit(cache=True, nogil=True, error_model="numpy", _nrt=False)
#: ``@JIT_CALLED``: compiled once and called, not inlined, without reference counting (the options of
#: ``JIT_NO_NRT``, under the name that says why it is used): for the draws with loops of their own that
#: the passes call from many places (``flows.draw_binomial_called``, ``draw_poisson``, ``draw_gamma``,
#: ``split_one``, ``split_out``). numba inlines before typing, so each inlined copy is typed and
#: optimised again; what calling them saves in compile time, and why the rest stay inlined:
#: docs/ARCHITECTURE.md, "The compiled boundary".
JIT_CALLED = JIT_NO_NRT


#: the compiled entry points each engine calls (the mesa engine runs the exact step)
ENGINE_KERNELS = {"hybrid": ("hybrid._advance", "kernels._clinic"), "exact": ("kernels._advance", "kernels._clinic")}


def kernels_cached(engine: str = "hybrid", cache: Path | None = None) -> bool:
    """Whether ``engine``'s compiled kernels of this source tree are already in the cache (else its
    first cohort compiles them, ~4 minutes on 2 cores). Each engine has its own: a machine that has run
    only the hybrid engine has not compiled the exact pass."""
    cache = Path(numba.config.CACHE_DIR) if cache is None else cache
    names = ENGINE_KERNELS.get(engine, ENGINE_KERNELS["exact"])
    return all(any(cache.rglob(f"{name}-*.nbi")) for name in names)
