"""Fingerprints of fixed simulation blocks: the check that a refactoring changed no behaviour.

Runs one 256-patient block (seed 20121101, block 0) in each of five scenarios (default,
``experiment=fitted``, ``scenario=surgery``, ``treatment=allo_ric``, ``treatment=conventional``),
through the exact engine (keys ``default``, ...) and the hybrid engine (``hybrid:default``, ...),
and records the random variates drawn and a SHA-256 of the patients, lesions and snapshot tables.
On one machine and package set, a change that keeps behaviour keeps every fingerprint::

    .venv/bin/python benchmarks/fingerprint.py --write benchmarks/fingerprints.json   # before
    .venv/bin/python benchmarks/fingerprint.py --check benchmarks/fingerprints.json   # after (exit 1 on a change)

Overrides after the options apply to every block (e.g. ``sim.max_step_days=7``: the hybrid engine's
weekly path, checked against fingerprints written with the same overrides or before a default changed).
``--engine hybrid`` (or ``exact``) runs and checks that engine's five blocks alone (~half the time).

The fingerprints are machine-specific (see the README's reproducibility contract); the committed
file records the machine it came from.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import platform
import sys
from pathlib import Path

SCENARIOS = {
    "default": [],
    "fitted": ["experiment=fitted"],
    "surgery": ["scenario=surgery"],
    "allo": ["treatment=allo_ric"],
    "conventional": ["treatment=conventional"],
}
BLOCK = ["cohort.n_patients=256", "cohort.block_size=256", "cohort.n_jobs=1", "seed=20121101"]


def _digest(frame) -> str:
    buffer = io.BytesIO()
    frame.reset_index(drop=True).to_parquet(buffer, index=False)
    return hashlib.sha256(buffer.getvalue()).hexdigest()[:16]


def fingerprints(
    extra: list[str] | None = None, engines: tuple[str, ...] = ("exact", "hybrid")
) -> dict[str, dict[str, object]]:
    from emdsim.cohort.run import run_cohort
    from emdsim.config.load import load

    out = {}
    prefix = {"exact": "", "hybrid": "hybrid:"}  # the exact engine's blocks keep their original names
    runs = [(f"{prefix[e]}{name}", [f"engine={e}", *ov]) for e in engines for name, ov in SCENARIOS.items()]
    for name, overrides in runs:
        result = run_cohort(load([*BLOCK, *overrides, *(extra or [])]))
        out[name] = {
            "draws": list(map(int, result.draws)),
            "patients": _digest(result.patients),
            "lesions": _digest(result.lesions),
            "snapshots": _digest(result.snapshots),
        }
        print(f"{name}: {out[name]}", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", type=Path, help="record the fingerprints in this JSON file")
    group.add_argument("--check", type=Path, help="compare with the fingerprints of this JSON file")
    parser.add_argument(
        "--engine",
        choices=("exact", "hybrid"),
        help="only this engine's blocks (a change to one engine's pass; --check compares those blocks alone)",
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides added to every block")
    args = parser.parse_args(argv)
    if args.write and args.engine:
        parser.error("--write records both engines' blocks: leave out --engine")
    now = fingerprints(args.overrides, (args.engine,) if args.engine else ("exact", "hybrid"))
    if args.write:
        args.write.write_text(
            json.dumps(
                {
                    "machine": platform.processor() or platform.machine(),
                    "python": platform.python_version(),
                    "blocks": now,
                },
                indent=1,
            )
            + "\n"
        )
        return 0
    before = json.loads(args.check.read_text())["blocks"]
    before = {k: v for k, v in before.items() if k in now}
    changed = sorted(k for k in before if before[k] != now[k])
    for k in changed:
        print(f"changed: {k}: {before[k]} -> {now[k]}", file=sys.stderr)
    print("fingerprints identical" if not changed else f"{len(changed)} of {len(before)} fingerprints changed")
    return 1 if changed else 0


if __name__ == "__main__":
    raise SystemExit(main())
