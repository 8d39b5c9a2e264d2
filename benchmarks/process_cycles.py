"""Where the hybrid pass spends its time, process by process: a cycle-counter build of the pass.

    python benchmarks/process_cycles.py [--patients 500] [--out FILE] [override ...]

The compiled pass (:func:`emdsim.engine.hybrid._advance`) inlines every process into one function,
so a sampling profiler sees one symbol. This script copies ``src/`` into a temporary folder, inserts
reads of the processor's cycle counter (``llvm.readcyclecounter``, the time-stamp counter: constant
rate, not core cycles) around each process of the pass and around the core of the growth process,
compiles that copy (a fresh numba cache: ~3 minutes on 2 cores), and runs one block of the default
scenario (or the overrides given) on one core. It prints, and with ``--out`` appends as JSON lines:

* each process's share of the pass's counted ticks and its ticks per living patient-step;
* occupied entries (compartment x clone state) per patient-step, small (below
  ``sim.hybrid_threshold_cells``) and large, and the ticks of the growth step's core for each;
* the circulating clone states per patient-step and the ticks of sharing settled cells among
  destinations;
* within long steps (``sim.max_step_days``): how many there were, and per patient-step the ticks of
  the occupancy's predictor, of the small populations taken through the long step (and how many per
  long step; the keys ``small_populations_by_dt_days`` keep their name from when they were drawn
  ``dt_days`` step by ``dt_days`` step: since 2026-12-02 they are drawn from their law,
  ``hybrid._grow_small_law``), of the switch mutants grown through the weeks left, and of the arrivals
  dated to the ``dt_days`` step they came in;
* each process's ticks per long step and per short (``dt_days``) step.

The counters cost ~25 ticks each (~10 per patient-step), a few per cent of the pass; the split by
step type adds copies of nine counters per patient-step (the two lines of
``process-cycles-2026-12-01-long-steps.jsonl``, without and with it: 53,758 and 58,500 ticks per
patient-step). The shares are what to read. The copy is patched by exact text replacement: when the
pass's source changes, the script stops with one line naming the text it could not find. Nothing in
``src/`` is changed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROCESSES = ["init", "clear+switch", "grow", "release", "extend", "circulate", "treat", "onsets", "book"]

#: the counters of the patched pass (``w.prof``, summed into ``PROF``): 0-30 as :func:`report` reads
#: them, 40-48 each process's count at a patient-step's start, 50-58 its ticks in long steps
N_COUNTERS = 64

_INTRINSIC = f"""from llvmlite import ir as _ir
from numba.core import types as _nt
from numba.extending import intrinsic


@intrinsic
def _rdtsc(typingctx):
    def codegen(context, builder, signature, args):
        fnty = _ir.FunctionType(_ir.IntType(64), [])
        fn = builder.module.declare_intrinsic("llvm.readcyclecounter", fnty=fnty)
        return builder.call(fn, [])

    return _nt.int64(), codegen


PROF = np.zeros({N_COUNTERS})
"""


def _after(call: str, i: int) -> tuple[str, str]:
    """Process ``call`` (a line of ``_advance``), then its ticks into ``w.prof[i]`` (``t{i}`` marks
    where the process before it ended)."""
    line = f"        {call}\n"
    return line, f"{line}        t{i + 1} = _rdtsc()\n        w.prof[{i}] += t{i + 1} - t{i}\n"


#: (text in src/emdsim/engine/hybrid.py, its replacement)
PATCHES: list[tuple[str, str]] = [
    ('__all__ = ["advance"]\n', '__all__ = ["advance"]\n' + _INTRINSIC),
    ("    gone_week: NDArray[np.float64]", "    prof: NDArray[np.float64]\n    gone_week: NDArray[np.float64]"),
    (
        "        gone_week=np.full(1, -1.0),\n",
        f"        gone_week=np.full(1, -1.0),\n        prof=np.zeros({N_COUNTERS}),\n",
    ),
    (
        "    _advance(records, counts, t, state, patients, tables, k, w)\n",
        "    _advance(records, counts, t, state, patients, tables, k, w)\n    PROF[:] += w.prof\n    w.prof[:] = 0.0\n",
    ),
    (
        "        src = streams[p]\n",
        "        t0 = _rdtsc()\n        for ii in range(9):\n            w.prof[40 + ii] = w.prof[ii]\n"
        "        src = streams[p]\n",
    ),
    (
        "        s.last_local[p, :, :] = 0.0\n",
        "        t1 = _rdtsc()\n        w.prof[0] += t1 - t0\n        s.last_local[p, :, :] = 0.0\n",
    ),
    _after("_switch_table(tb.switch_rate_per_division, pt.switch_factor[p], w.mu_ks, w.mu_k)", 1),
    _after("_grow(src, tally, p, s, pt, tb, c, w)  # 1", 2),
    _after("_release(src, tally, p, s, pt, tb, c, w)  # 2", 3),
    _after("_extend(src, tally, p, s, pt, tb, c, w)  # 3", 4),
    _after("_circulate(src, tally, p, s, pt, tb, c, w)  # 4", 5),
    _after("_treat(src, tally, p, s, pt, tb, c, w)  # 5", 6),
    (
        "        _book_lesions(src, tally, p, s, c, w)\n",
        "        t8 = _rdtsc()\n        w.prof[7] += t8 - t7\n        _book_lesions(src, tally, p, s, c, w)\n"
        "        w.prof[8] += _rdtsc() - t8\n        w.prof[9] += 1.0\n"
        "        if long:\n            for ii in range(9):\n"
        "                w.prof[50 + ii] += w.prof[ii] - w.prof[40 + ii]\n",
    ),
    # the growth step's core, small and large populations (a step of dt_days)
    (
        "            deaths = flow_within(src, cnk, pd, large, tally)\n",
        "            tg = _rdtsc()\n            deaths = flow_within(src, cnk, pd, large, tally)\n",
    ),
    (
        "            x = max(cnk - deaths + left, 0.0)\n",
        "            x = max(cnk - deaths + left, 0.0)\n"
        "            if cnk < large:\n                w.prof[10] += 1.0\n                w.prof[11] += _rdtsc() - tg\n"
        "            else:\n                w.prof[12] += 1.0\n                w.prof[13] += _rdtsc() - tg\n",
    ),
    # circulation: clone states in the blood, and sharing the settled cells among destinations
    (
        "        arrest = flow_out(src, b, p_arrest, large, tally)\n",
        "        w.prof[14] += 1.0\n        arrest = flow_out(src, b, p_arrest, large, tally)\n",
    ),
    (
        "        split_out(src, n_g, share, large, arrived, tally)\n",
        "        ta = _rdtsc()\n        split_out(src, n_g, share, large, arrived, tally)\n"
        "        w.prof[15] += _rdtsc() - ta\n        w.prof[16] += 1.0\n        w.prof[17 + g] += n_g\n",
    ),
    # a long step's parts of growth: the occupancy's predictor, small populations taken through it,
    # and the switch mutants grown through the weeks left
    (
        "            o = _occupancy_over_long_step(p, n, o, s, pt, tb, c, w)\n",
        "            tq = _rdtsc()\n            o = _occupancy_over_long_step(p, n, o, s, pt, tb, c, w)\n"
        "            w.prof[24] += _rdtsc() - tq\n",
    ),
    (
        "                x = _grow_small_law(src, tally, cnk, k, (pd, pb, pk, mu_k[k], 0.0), n_sub, c, w)\n",
        "                tq = _rdtsc()\n"
        "                x = _grow_small_law(src, tally, cnk, k, (pd, pb, pk, mu_k[k], 0.0), n_sub, c, w)\n"
        "                w.prof[26] += _rdtsc() - tq\n                w.prof[27] += 1.0\n",
    ),
    (
        "                        grown = _grow_mutants((p, n, k, b - dr), s, pt, tb, c, w)\n",
        "                        tq = _rdtsc()\n"
        "                        grown = _grow_mutants((p, n, k, b - dr), s, pt, tb, c, w)\n"
        "                        w.prof[28] += _rdtsc() - tq\n",
    ),
    # a long step's arrivals, dated to the dt_days step they came in
    (
        "            _arrive(src, tally, p, s, pt, tb, c, w)\n",
        "            tq = _rdtsc()\n            _arrive(src, tally, p, s, pt, tb, c, w)\n"
        "            w.prof[29] += _rdtsc() - tq\n            w.prof[30] += 1.0\n",
    ),
]

RUNNER = r"""
import json, sys, time
import numpy as np
import emdsim.cohort.run as cr
from emdsim.config.load import load
from emdsim.engine import hybrid
from emdsim.engine.tables import build_tables
n, over = int(sys.argv[1]), sys.argv[2:]
cfg = load([f"cohort.n_patients={n}", f"cohort.block_size={n}", "cohort.n_jobs=1", "engine=hybrid", *over])
tb = build_tables(cfg)
cr.simulate_block(cfg, tb, np.arange(8), np.random.default_rng(1))  # compiles
hybrid.PROF[:] = 0.0
c0 = time.process_time()
cr.simulate_block(cfg, tb, np.arange(n), np.random.default_rng(1))
print(json.dumps({"cpu_s": time.process_time() - c0, "prof": hybrid.PROF.tolist()}))
"""


def patched_copy(dest: Path) -> None:
    """``src/`` copied to ``dest/src`` with :data:`PATCHES` applied to the hybrid pass; ``conf`` linked."""
    shutil.copytree(ROOT / "src", dest / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (dest / "conf").symlink_to(ROOT / "conf")
    path = dest / "src" / "emdsim" / "engine" / "hybrid.py"
    text = path.read_text()
    for old, new in PATCHES:
        if text.count(old) != 1:
            first = old.strip().splitlines()[0]
            raise SystemExit(f"process_cycles: the pass's source changed: {first!r} not found once in engine/hybrid.py")
        text = text.replace(old, new)
    path.write_text(text)


def report(prof: list[float], cpu_s: float, patients: int, overrides: list[str]) -> dict:
    steps = prof[9]
    counted = sum(prof[:9])
    long, short = max(prof[30], 1.0), max(steps - prof[30], 1.0)
    return {
        "case": "process_cycles",
        "patients": patients,
        "overrides": overrides,
        "cpu_s": round(cpu_s, 2),
        "patient_steps": int(steps),
        "ticks_per_patient_step": round(counted / steps),
        "share_percent": {name: round(100 * prof[i] / counted, 1) for i, name in enumerate(PROCESSES)},
        "ticks_per_patient_step_by_process": {name: round(prof[i] / steps) for i, name in enumerate(PROCESSES)},
        "small_entries_per_patient_step": round(prof[10] / steps, 2),
        "large_entries_per_patient_step": round(prof[12] / steps, 2),
        "grow_core_ticks_small": round(prof[11] / max(prof[10], 1)),
        "grow_core_ticks_large": round(prof[13] / max(prof[12], 1)),
        "circulating_states_per_patient_step": round(prof[14] / steps, 2),
        "settle_splits_per_patient_step": round(prof[16] / steps, 2),
        "settle_split_ticks_per_patient_step": round(prof[15] / steps),
        "long_steps": int(prof[30]),
        "long_step_ticks_per_patient_step": {
            "occupancy_predictor": round(prof[24] / steps),
            "small_populations_by_dt_days": round(prof[26] / steps),
            "mutants_grown": round(prof[28] / steps),
            "arrivals": round(prof[29] / steps),
        },
        "small_populations_by_dt_days_per_long_step": round(prof[27] / long, 2),
        "ticks_per_long_step_by_process": {name: round(prof[50 + i] / long) for i, name in enumerate(PROCESSES)},
        "ticks_per_short_step_by_process": {
            name: round((prof[i] - prof[50 + i]) / short) for i, name in enumerate(PROCESSES)
        },
        "settled_cells_per_split": {
            "marrow": prof[17] / max(prof[16], 1),
            "other tissue": prof[18] / max(prof[16], 1),
        },
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--patients", type=int, default=500)
    ap.add_argument("--out", type=Path, help="append the result as a JSON line to this file")
    ap.add_argument("overrides", nargs="*", help="configuration overrides (key=value)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="emdsim-cycles-") as tmp:
        patched_copy(Path(tmp))
        print("process_cycles: compiling the instrumented pass (~3 min on 2 cores)", file=sys.stderr, flush=True)
        env = {**os.environ, "PYTHONPATH": str(Path(tmp) / "src")}
        out = subprocess.run(
            [sys.executable, "-c", RUNNER, str(args.patients), *args.overrides],
            env=env,
            cwd=tmp,
            check=True,
            capture_output=True,
            text=True,
        )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    rec = report(result["prof"], result["cpu_s"], args.patients, args.overrides)
    print(json.dumps(rec, indent=1))
    if args.out:
        with args.out.open("a") as fh:
            fh.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
