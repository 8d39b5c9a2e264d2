"""Random variates for the compiled loops, from either kind of source.

The exact engine draws every patient of a block from one numpy ``Generator`` (its bit generator,
``rng.bit_generator`` inside compiled code).  The hybrid engine gives every patient a stream of
its own: a xoshiro256++ state of four 64-bit words (Blackman & Vigna, ACM TOMS 2021), one row
``(4,)`` of a ``(P, 4)`` uint64 array, seeded from the invocation's ``SeedSequence`` at the
patient's key (:func:`patient_streams`); the compiled passes see each row as a record
(:func:`stream_records`), which is not reference-counted.  A patient's draws then depend only on the seed and its
id: not on the block it runs in, the cohort size, or the other patients.

:func:`uniform` and :func:`normal` take either source: a bit generator (the draws are those of
numpy's ``Generator.random`` and ``Generator.standard_normal``, via numba's own implementation)
or a stream row (``uniform``: the top 53 bits; ``normal``: numpy's 256-layer ziggurat on the
stream's words, with numpy's tables).  Numba compiles one version per source type, so the flow
functions of :mod:`emdsim.engine.flows` are written once for both engines.
"""

from __future__ import annotations

import numpy as np
from numba.core import types
from numba.extending import overload
from numba.np.random._constants import fi_double, ki_double, wi_double, ziggurat_nor_inv_r, ziggurat_nor_r
from numba.np.random.distributions import random_standard_normal
from numba.np.random.generator_core import next_double
from numpy.typing import NDArray

from emdsim import rng as seeds
from emdsim.engine.jit import JIT, JIT_INLINE

__all__ = [
    "STREAM_RECORD",
    "normal",
    "patient_source",
    "patient_streams",
    "stream_records",
    "uniform",
    "stream_doubles",
]

_TWO_M53 = 1.0 / 9007199254740992.0


def patient_streams(seed: int, ids: NDArray[np.int64]) -> NDArray[np.uint64]:
    """The xoshiro256++ states ``(P, 4)`` of patients ``ids``: stream ``(STREAM, id)`` of the seed tree."""
    out = np.empty((len(ids), 4), dtype=np.uint64)
    for row, i in enumerate(np.asarray(ids, dtype=np.int64)):
        state = np.random.SeedSequence(seed, spawn_key=(seeds.STREAM, int(i))).generate_state(4, np.uint64)
        if not state.any():  # the one state xoshiro cannot leave (probability 2^-256)
            state[0] = 1
        out[row] = state
    return out


@JIT_INLINE
def _rotl(x, k):  # pragma: no cover - compiled
    return (x << np.uint64(k)) | (x >> np.uint64(64 - k))


#: one stream as a record: a row of the ``(P, 4)`` states seen through this dtype (:func:`stream_records`).
#: Compiled code takes a record by reference, without the reference counting of an array view: a
#: stream row passed to every inlined draw as an array cost two atomic increments and decrements
#: per flow, ~45 % of the hybrid pass's CPU (perf, 2026-11-30)
STREAM_RECORD = np.dtype([("s0", np.uint64), ("s1", np.uint64), ("s2", np.uint64), ("s3", np.uint64)])


def stream_records(streams: NDArray[np.uint64]) -> NDArray[np.void]:
    """The states ``(P, 4)`` seen as ``(P,)`` records of :data:`STREAM_RECORD` (the same memory: the
    compiled passes advance them in place)."""
    if streams.dtype != np.uint64 or streams.ndim != 2 or streams.shape[1] != 4 or not streams.flags.c_contiguous:
        raise ValueError("streams must be a C-contiguous (P, 4) uint64 array")
    return streams.view(STREAM_RECORD).reshape(streams.shape[0])


@JIT_INLINE
def _xoshiro(s0, s1, s2, s3):  # pragma: no cover - compiled
    """xoshiro256++: the next 64-bit word of the state ``(s0, s1, s2, s3)`` and the state after it."""
    result = _rotl(s0 + s3, 23) + s0
    t = s1 << np.uint64(17)
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    s3 = _rotl(s3, 45)
    return result, s0, s1, s2, s3


def _next_u64(s):  # pragma: no cover - replaced by the compiled overload
    """The next 64-bit word of stream ``s`` (a :data:`STREAM_RECORD` record or a ``(4,)`` uint64 row),
    advanced in place."""
    raise NotImplementedError("compiled only")


@overload(_next_u64, inline="always")
def _next_u64_overload(s):  # pragma: no cover - compile-time dispatch
    if isinstance(s, types.Record):

        def from_record(s):
            result, s0, s1, s2, s3 = _xoshiro(s.s0, s.s1, s.s2, s.s3)
            s.s0, s.s1, s.s2, s.s3 = s0, s1, s2, s3
            return result

        return from_record
    if isinstance(s, types.Array) and s.ndim == 1 and s.dtype == types.uint64:

        def from_row(s):
            result, s0, s1, s2, s3 = _xoshiro(s[0], s[1], s[2], s[3])
            s[0], s[1], s[2], s[3] = s0, s1, s2, s3
            return result

        return from_row
    return None


@JIT_INLINE
def _stream_double(s):  # pragma: no cover - compiled
    return float(_next_u64(s) >> np.uint64(11)) * _TWO_M53


@JIT_INLINE
def _stream_normal(s):  # pragma: no cover - compiled
    """A standard normal variate by numpy's ziggurat (the algorithm of ``Generator.standard_normal``)."""
    while True:
        r = _next_u64(s)
        idx = np.int64(r & np.uint64(0xFF))
        r >>= np.uint64(8)
        sign = r & np.uint64(1)
        rabs = (r >> np.uint64(1)) & np.uint64(0x000FFFFFFFFFFFFF)
        x = float(rabs) * wi_double[idx]
        if sign:
            x = -x
        if rabs < ki_double[idx]:
            return x
        if idx == 0:
            while True:
                xx = -ziggurat_nor_inv_r * np.log1p(-_stream_double(s))
                yy = -np.log1p(-_stream_double(s))
                if yy + yy > xx * xx:
                    return -(ziggurat_nor_r + xx) if (rabs >> np.uint64(8)) & np.uint64(1) else ziggurat_nor_r + xx
        elif (fi_double[idx - 1] - fi_double[idx]) * _stream_double(s) + fi_double[idx] < np.exp(-0.5 * x * x):
            return x


def uniform(source):  # pragma: no cover - replaced by the compiled overload
    """A uniform variate on [0, 1) from ``source``: a bit generator or a stream row (compiled only)."""
    raise NotImplementedError("emdsim.engine.streams.uniform is only callable from compiled code")


def normal(source):  # pragma: no cover - replaced by the compiled overload
    """A standard normal variate from ``source``: a bit generator or a stream row (compiled only)."""
    raise NotImplementedError("emdsim.engine.streams.normal is only callable from compiled code")


def patient_source(rng, p):  # pragma: no cover - replaced by the compiled overload
    """What patient ``p`` draws from: the block's bit generator for a ``Generator`` (exact engine),
    its stream for the streams (hybrid engine: a row of a ``(P, 4)`` uint64 array, or the record of
    :func:`stream_records`, which the engine passes) (compiled only)."""
    raise NotImplementedError("emdsim.engine.streams.patient_source is only callable from compiled code")


@overload(patient_source)
def _patient_source(rng, p):  # pragma: no cover - compile-time dispatch
    if isinstance(rng, types.NumPyRandomGeneratorType):
        return lambda rng, p: rng.bit_generator
    if isinstance(rng, types.Array) and rng.ndim == 2 and rng.dtype == types.uint64:
        return lambda rng, p: rng[p]
    if isinstance(rng, types.Array) and rng.ndim == 1 and isinstance(rng.dtype, types.Record):
        return lambda rng, p: rng[p]
    return None


def _is_stream(source) -> bool:
    if isinstance(source, types.Record):
        return True
    return isinstance(source, types.Array) and source.ndim == 1 and source.dtype == types.uint64


@overload(uniform)
def _uniform(source):  # pragma: no cover - compile-time dispatch
    if isinstance(source, types.NumPyRandomBitGeneratorType):
        return lambda source: next_double(source)
    if _is_stream(source):
        return lambda source: _stream_double(source)
    return None


@overload(normal)
def _normal(source):  # pragma: no cover - compile-time dispatch
    if isinstance(source, types.NumPyRandomBitGeneratorType):
        return lambda source: random_standard_normal(source)
    if _is_stream(source):
        return lambda source: _stream_normal(source)
    return None


@JIT
def stream_doubles(state, n_uniform, n_normal):  # pragma: no cover - compiled
    """``n_uniform`` uniforms and ``n_normal`` normals from one stream row ``state (4,)`` (advanced):
    the tests' and the benchmark's window on the streams."""
    u = np.empty(n_uniform)
    z = np.empty(n_normal)
    for i in range(n_uniform):
        u[i] = uniform(state)
    for i in range(n_normal):
        z[i] = normal(state)
    return u, z
