"""Regenerate the numbers the README quotes (``make results``), with the machine they came from.

Runs the default scenario (200 patients, the configured seed) exactly as ``make run`` does, into
``results/default/``, and writes ``results/README.md``: the headline figures, each with its
denominator, and the machine, CPU features, library versions and git revision.  Within one machine
and package set the numbers are reproducible to the byte; see the README's reproducibility contract
for what holds across machines.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _cpu() -> dict[str, object]:
    info: dict[str, object] = {"machine": platform.machine(), "model": platform.processor() or None, "features": []}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and not info["model"]:
            info["model"] = value.strip()
        if key.strip() == "flags":
            flags = set(value.split())
            info["features"] = sorted(flags & {"sse4_2", "avx", "avx2", "fma", "avx512f", "avx512dq", "avx512vl"})
            break
    return info


def machine_record() -> dict[str, object]:
    versions = {}
    for pkg in ("emdsim", "numpy", "numba", "llvmlite", "scipy", "pandas", "pyarrow", "lifelines", "hydra-core"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    from emdsim.studies.rundir import git_revision

    return {"cpu": _cpu(), "python": platform.python_version(), "libc": " ".join(platform.libc_ver()),
            "os": platform.platform(), "versions": versions, "git_revision": git_revision()}


def _pct(summary: dict, key: str, n: int) -> str:
    value = summary.get(key)
    return "n/a" if value is None else f"{100 * value:.1f} % ({round(value * n)}/{n})"


def main() -> int:
    out = HERE / "default"
    cmd = [sys.executable, "-m", "emdsim.cli.main", f"hydra.run.dir={out}"]
    print("results: " + " ".join(cmd[1:]), flush=True)
    code = subprocess.call(cmd, cwd=ROOT)
    if code:
        return code
    s = json.loads((out / "summary.json").read_text())
    surv = s.get("survival_by_emd_at_diagnosis", {})
    risk = s.get("risk_association", {}).get("em_ever", {})
    rec = machine_record()
    n_dx, n_rel = s["n_diagnosed"], s["n_relapsed"]

    def hr(end: str) -> str:
        h, lo, hi = (surv.get(f"{end}_{k}") for k in ("hazard_ratio", "hr_lower", "hr_upper"))
        return "n/a" if h is None else f"{h:.1f} ({lo:.1f}-{hi:.1f})"

    odds = "n/a" if risk.get("odds_ratio") is None else (
        f"{risk['odds_ratio']:.1f} ({risk['lower']:.1f}-{risk['upper']:.1f})")
    rows = [("patients (diagnosed / relapsed)", f"{s['n_patients']} ({n_dx} / {n_rel})"),
            ("PS at diagnosis", _pct(s, "ps_at_diagnosis", n_dx)),
            ("EM at diagnosis", _pct(s, "em_at_diagnosis", n_dx)),
            ("EMD at diagnosis", _pct(s, "emd_at_diagnosis", n_dx)),
            ("PS at first relapse", _pct(s, "ps_at_relapse", n_rel)),
            ("EM at first relapse", _pct(s, "em_at_relapse", n_rel)),
            ("EM at any time", _pct(s, "em_ever", n_dx)),
            ("median PFS / OS (months)", f"{s['median_pfs_months'] or float('nan'):.1f} / {s['median_os_months'] or float('nan'):.1f}"),
            ("HR of EMD at diagnosis, PFS (95 % CI)", hr("pfs")),
            ("HR of EMD at diagnosis, OS (95 % CI)", hr("os")),
            ("OR of EM ever for GEP70 high risk (95 % CI)", odds)]
    cpu = rec["cpu"]
    text = ["# Published numbers", "",
            "Written by `make results` (`results/make_results.py`): the default scenario (`make run`), "
            f"seed {s['seed']}, into `results/default/`. Do not edit by hand.", "",
            "| figure | value |", "|---|---|", *[f"| {k} | {v} |" for k, v in rows], "",
            "## Machine", "",
            f"- CPU: {cpu['model']} ({cpu['machine']}; features {', '.join(cpu['features']) or 'unknown'})",
            f"- Python {rec['python']}, {rec['libc']}, {rec['os']}",
            "- " + ", ".join(f"{k} {v}" for k, v in rec["versions"].items()),
            f"- git revision {rec['git_revision']}", ""]
    (HERE / "README.md").write_text("\n".join(text))
    (HERE / "machine.json").write_text(json.dumps(rec, indent=1) + "\n")
    print("\n".join(text))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
