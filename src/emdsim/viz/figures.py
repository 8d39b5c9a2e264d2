"""Static figures of one cohort run, drawn from the tables in its run directory.

``cohort_figures(run_dir)`` writes four PNG files next to the tables:

* ``fig_incidence.png`` — PS, EM and EMD (either) at diagnosis and at first relapse with Wilson 95%
  intervals, beside the reported figures of ``data/targets`` with their intervals;
* ``fig_sites.png`` — patients with a lesion per site at diagnosis vs at relapse;
* ``fig_survival.png`` — Kaplan-Meier PFS and OS by EMD at diagnosis, with 95% bands;
* ``fig_cumulative_incidence.png`` — cumulative incidence of EM, PS and EMD after diagnosis with
  death as a competing risk.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ..targets import Target, incidence_targets, load_targets

__all__ = ["FIGURES", "incidence_figure", "sites_figure", "survival_figure", "cumulative_incidence_figure",
           "cohort_figures"]

FIGURES = ("fig_incidence.png", "fig_sites.png", "fig_survival.png", "fig_cumulative_incidence.png")
#: model definition -> the targets' definition it is compared with
TARGET_DEFINITION = {"PS": "PS", "EM": "EM", "EMD": "MIX"}
COLOURS = {"PS": "tab:orange", "EM": "tab:red", "EMD": "tab:purple"}


def incidence_figure(incidence: pd.DataFrame, targets: list[Target], path: Path, *, title: str = "") -> Figure:
    fig = Figure(figsize=(10, 4.6), layout="constrained")
    for i, point in enumerate(("diagnosis", "relapse")):
        ax = fig.add_subplot(1, 2, i + 1)
        sel = incidence[incidence["timepoint"] == point].set_index("definition")
        n = int(sel["n"].iloc[0]) if len(sel) else 0
        for j, definition in enumerate(("PS", "EM", "EMD")):
            if definition not in sel.index:
                continue
            r = sel.loc[definition]
            frac, lo, hi = 100 * r["fraction"], 100 * r["lower"], 100 * r["upper"]
            ax.bar(j, frac, width=0.35, color=COLOURS[definition], alpha=0.8)
            ax.errorbar(j, frac, yerr=[[frac - lo], [hi - frac]], color="black", capsize=4)
            reported = [t for t in targets if t.timepoint == point and t.definition == TARGET_DEFINITION[definition]]
            for k, t in enumerate(reported):
                x = j + 0.3 + 0.09 * k
                ax.plot(x, t.value, marker="D", color="black", markersize=5)
                if isinstance(t.lower, int | float) and isinstance(t.upper, int | float):
                    ax.vlines(x, t.lower, t.upper, color="black", lw=1)
                ax.annotate(t.source, (x, t.value), textcoords="offset points", xytext=(4, 2), fontsize=6,
                            rotation=60, color="dimgray")
        ax.set_xticks(range(3), ["PS\n(paraskeletal)", "EM\n(organ)", "EMD\n(either; MIX)"])
        ax.set_ylabel(f"% of {'diagnosed' if point == 'diagnosis' else 'relapsed'} patients")
        ax.set_title(f"at {'diagnosis' if point == 'diagnosis' else 'first relapse'} (n = {n})")
        ax.set_ylim(bottom=0)
        ax.grid(axis="y", alpha=0.3)
        ax.legend([Patch(color="gray", alpha=0.8), Line2D([], [], marker="D", color="black", markersize=5)],
                  ["model, Wilson 95% interval", "reported (data/targets), 95% interval"], fontsize=8,
                  loc="upper left")
    fig.suptitle(title or "Extramedullary disease: model vs reported")
    fig.savefig(path, dpi=110)
    return fig


def sites_figure(sites: pd.DataFrame, path: Path, *, top: int = 14, title: str = "") -> Figure:
    fig = Figure(figsize=(8, 5.5), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    if len(sites):
        wide = sites.pivot_table(index=["site", "kind"], columns="timepoint", values="fraction", fill_value=0.0)
        for col in ("diagnosis", "relapse"):
            if col not in wide:
                wide[col] = 0.0
        wide = wide.assign(total=wide.sum(axis=1)).sort_values("total").tail(top)
        y = np.arange(len(wide))
        ax.barh(y + 0.2, 100 * wide["diagnosis"], height=0.4, color="tab:blue", label="at diagnosis")
        ax.barh(y - 0.2, 100 * wide["relapse"], height=0.4, color="tab:red", label="at first relapse")
        ax.set_yticks(y, [f"{s} ({'PS' if k == 'paraskeletal' else 'EM'})" for s, k in wide.index])
        ax.legend(loc="lower right")
    else:
        ax.text(0.5, 0.5, "no soft-tissue lesion detected", ha="center", transform=ax.transAxes)
    def _n(point: str) -> int:
        n = sites.loc[sites["timepoint"] == point, "n"]
        return int(n.max()) if len(n) else 0

    n_dx, n_rel = _n("diagnosis"), _n("relapse")
    ax.set_xlabel(f"% of patients with a lesion at the site (diagnosed n = {n_dx}, relapsed n = {n_rel})")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(title or "Sites of soft-tissue disease")
    fig.savefig(path, dpi=110)
    return fig


def survival_figure(survival: pd.DataFrame, path: Path, *, title: str = "") -> Figure:
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    for i, endpoint in enumerate(("pfs", "os")):
        ax = fig.add_subplot(1, 2, i + 1)
        sel = survival[(survival["endpoint"] == endpoint) & (survival["kind"] == "kaplan_meier")]
        for group, colour in (("emd_at_diagnosis=False", "tab:blue"), ("emd_at_diagnosis=True", "tab:red")):
            g = sel[sel["group"] == group]
            if g.empty:
                continue
            label = "EMD at diagnosis" if group.endswith("True") else "no EMD at diagnosis"
            ax.step(g["time_months"], g["value"], where="post", color=colour, label=label)
            ax.fill_between(g["time_months"], g["lower"], g["upper"], step="post", color=colour, alpha=0.15)
        ax.set_xlabel("months from diagnosis")
        ax.set_ylabel(f"{'progression-free' if endpoint == 'pfs' else 'overall'} survival (fraction)")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title(endpoint.upper() + " (Kaplan-Meier, 95% band)")
    fig.suptitle(title or "Survival by EMD at diagnosis")
    fig.savefig(path, dpi=110)
    return fig


def cumulative_incidence_figure(survival: pd.DataFrame, path: Path, *, title: str = "") -> Figure:
    fig = Figure(figsize=(6.5, 4.4), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    for name in ("PS", "EM", "EMD"):
        g = survival[survival["endpoint"] == f"cif_{name}"]
        if len(g):
            ax.step(g["time_months"], 100 * g["value"], where="post", color=COLOURS[name], label=name)
    ax.set_xlabel("months from diagnosis")
    ax.set_ylabel("cumulative incidence (% of diagnosed)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(title="first detected", fontsize=8)
    ax.set_title(title or "Cumulative incidence of EMD (death as competing risk, Aalen-Johansen)")
    fig.savefig(path, dpi=110)
    return fig


def cohort_figures(run_dir: Path, targets: list[Target] | None = None) -> list[Path]:
    """Draw the four cohort figures of a run directory; returns their paths."""
    run_dir = Path(run_dir)
    targets = incidence_targets(load_targets()) if targets is None else targets
    survival = pd.read_parquet(run_dir / "survival.parquet")
    incidence_figure(pd.read_parquet(run_dir / "incidence.parquet"), targets, run_dir / FIGURES[0])
    sites_figure(pd.read_parquet(run_dir / "sites.parquet"), run_dir / FIGURES[1])
    survival_figure(survival, run_dir / FIGURES[2])
    cumulative_incidence_figure(survival, run_dir / FIGURES[3])
    return [run_dir / name for name in FIGURES]
