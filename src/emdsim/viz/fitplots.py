"""Figures of a fit: posterior marginals and pairs, and the posterior-predictive check."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

__all__ = ["plot_posterior", "plot_predictive", "validation_forest"]


def plot_posterior(posterior: pd.DataFrame, spec, path: Path) -> Figure:
    """Weighted marginal histograms on the diagonal, weighted scatter below (log10 axes for log priors)."""
    params = list(spec.parameters)
    d = len(params)
    fig = Figure(figsize=(max(2.6 * d + 1, 6.5), 2.4 * d + 1.0), layout="constrained")
    w = posterior["weight"].to_numpy()
    cols = [np.log10(posterior[p.path]) if p.log else posterior[p.path] for p in params]
    # the path without its config group, the unit on a second line: long list-item paths fit the panel
    labels = [
        ("log10 " if p.log else "") + p.path.split(".", 1)[-1] + (f"\n({p.unit})" if p.unit else "") for p in params
    ]
    for i in range(d):
        for j in range(d):
            if j > i:
                continue
            ax = fig.add_subplot(d, d, i * d + j + 1)
            lo_j, hi_j = params[j].bounds()
            if i == j:
                ax.hist(cols[i], bins=15, range=(lo_j, hi_j), weights=w, color="tab:blue", alpha=0.8)
                ax.set_xlim(lo_j, hi_j)
                ax.set_yticks([])
            else:
                lo_i, hi_i = params[i].bounds()
                ax.scatter(cols[j], cols[i], s=8 + 300 * w, alpha=0.6, color="tab:blue")
                ax.set_xlim(lo_j, hi_j)
                ax.set_ylim(lo_i, hi_i)
                if j == 0:
                    ax.set_ylabel(labels[i], fontsize=7)
            if i == d - 1:
                ax.set_xlabel(labels[j], fontsize=7)
            ax.tick_params(labelsize=7)
    ess = float(w.sum() ** 2 / np.sum(w**2)) if np.sum(w**2) > 0 else 0.0
    fig.suptitle(
        f"fit '{spec.name}': posterior of the last generation\n({len(w)} particles, effective "
        f"sample size {ess:.1f}; axes span the prior)",
        fontsize=10,
    )
    fig.savefig(path, dpi=110)
    return fig


def plot_predictive(predictive: pd.DataFrame, path: Path, *, name: str = "") -> Figure:
    """Per target: simulated median and 90% interval beside the reported value and its interval;
    requirements (bounds the model must keep) in a panel of their own below."""
    bound = predictive.reindex(columns=["required_min", "required_max"])
    required = bound.notna().any(axis=1).to_numpy()
    reported = predictive["reported"].notna().to_numpy()
    panels = [(predictive[reported], "reported")] + ([(predictive[required], "required")] if required.any() else [])
    heights = [max(len(rows), 1) for rows, _ in panels]
    fig = Figure(figsize=(8, 0.6 * sum(heights) + 2.0 * len(panels)), layout="constrained")
    axes = fig.subplots(len(panels), 1, squeeze=False, height_ratios=heights)[:, 0]
    for ax, (rows, kind) in zip(axes, panels, strict=True):
        rows = rows.reset_index(drop=True)
        y = np.arange(len(rows))
        med = rows["simulated_median"].to_numpy(float)
        ax.errorbar(
            med,
            y + 0.15,
            xerr=[med - rows["simulated_lower"].to_numpy(float), rows["simulated_upper"].to_numpy(float) - med],
            fmt="o",
            color="tab:blue",
            capsize=3,
            label="simulated: median, 90% interval",
        )
        if kind == "reported":
            rep = rows["reported"].to_numpy(float)
            lo = pd.to_numeric(rows["reported_lower"], errors="coerce").to_numpy(float)
            hi = pd.to_numeric(rows["reported_upper"], errors="coerce").to_numpy(float)
            ax.errorbar(
                rep,
                y - 0.15,
                xerr=[np.nan_to_num(rep - lo), np.nan_to_num(hi - rep)],
                fmt="D",
                color="black",
                capsize=3,
                label="reported: value, 95% interval",
            )
            ax.set_xlabel("% of the cohort's denominator (diagnosed or relapsed patients)")
            ax.set_title(f"fit '{name}': posterior-predictive check" if name else "posterior-predictive check")
        else:
            for col, marker, op in (("required_min", ">", ">="), ("required_max", "<", "<=")):
                v = rows[col].to_numpy(float) if col in rows else np.full(len(rows), np.nan)
                if np.isfinite(v).any():
                    ax.plot(v, y - 0.15, marker, color="tab:red", linestyle="none", label=f"required bound ({op})")
            ax.set_xlabel("% of the cohort's virtual patients")
            ax.set_title("model requirements (no report states them)", fontsize=10)
        ax.set_yticks(y, [f"{t} ({s})" for t, s in zip(rows["target"], rows["scenario"], strict=True)], fontsize=8)
        ax.grid(axis="x", alpha=0.3)
        ax.set_ylim(-0.6, len(rows) - 0.4)
        # below the panel, never over a point
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=3, frameon=False)
    fig.savefig(path, dpi=110)
    return fig


def validation_forest(table: pd.DataFrame, path: Path, *, title: str = "") -> Figure:
    """Every reported figure against the model (``validation.parquet``), on one axis: each value as a
    multiple of the reported one (log scale), the reported interval as a bar, the simulated value
    as a dot (green inside the interval, red outside; a triangle when beyond the axis or a median
    not reached; "n/a" when nothing was measured), a factor of 2 shaded; a one-number figure's dot
    carries a whisker of +-2 Monte Carlo standard errors (``mc_se``: the spread of the seeds), so a
    dot whose whisker crosses an interval's edge is inside or outside by chance; a reported range
    without a value, or a reported 0, is drawn against the interval's middle; qualitative findings
    and figures the model cannot express yet are listed with their verdict."""
    # label, lower, upper, simulated, its Monte Carlo standard error (all x reported), inside
    rows: list[tuple[str, float, float, float, float, bool]] = []
    notes: list[tuple[str, str, bool | None]] = []
    for r in table.itertuples():
        rep, lo, hi, sim = (list(v) for v in (r.reported_values, r.lower_values, r.upper_values, r.simulated_values))
        if not r.expressible:
            notes.append((r.target, "not expressible yet", None))
        elif r.kind in ("sites", "association"):
            notes.append((r.target, f"reported {r.reported_text}, simulated {r.simulated_text}", bool(r.inside)))
        else:
            if not rep and len(lo) == 1 and len(hi) == 1:  # a reported range without a value: its middle
                rep = [(lo[0] + hi[0]) / 2.0]
            names = [r.target] if len(rep) == 1 else [f"{r.target} [{i + 1}]" for i in range(len(rep))]
            for k, name in enumerate(names):
                if k < len(lo) and k < len(hi):
                    ref = rep[k] or (lo[k] + hi[k]) / 2.0  # a reported 0: against its interval's middle
                    if ref <= 0:
                        continue
                    s = sim[k] if k < len(sim) else math.nan
                    se = float(getattr(r, "mc_se", math.nan))  # NaN but for one-number figures
                    rows.append((name, lo[k] / ref, hi[k] / ref, s / ref, se / ref, bool(lo[k] <= s <= hi[k])))
    height = 0.28 * (len(rows) + len(notes)) + 1.6
    fig = Figure(figsize=(10.5, height), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    clip = (1 / 64, 64)
    for y, (_name, lo, hi, sim, se, inside) in enumerate(rows):
        ax.plot([max(lo, clip[0]), min(hi, clip[1])], [y, y], color="0.35", lw=3, solid_capstyle="butt")
        ax.plot([1.0], [y], marker="|", color="0.1", ms=10)
        colour = "tab:green" if inside else "tab:red"
        if np.isnan(sim):  # nothing to measure (no patient in the statistic's denominator)
            ax.text(clip[1] / 1.15, y, "n/a", va="center", ha="right", fontsize=8, color="tab:red")
        elif sim < clip[0]:
            ax.plot([clip[0]], [y], "<", color=colour, ms=7, zorder=3)
        elif sim > clip[1]:  # beyond the axis, or a median not reached (longer than follow-up)
            ax.plot([clip[1]], [y], ">", color=colour, ms=7, zorder=3)
        else:
            ax.plot([sim], [y], "o", color=colour, ms=6, zorder=3)
            if np.isfinite(se) and se > 0:  # +-2 Monte Carlo standard errors, within the axis
                ends = [max(sim - 2 * se, clip[0]), min(sim + 2 * se, clip[1])]
                ax.plot(ends, [y, y], color=colour, lw=1.5, zorder=2.5)
                ax.plot(ends, [y, y], "|", color=colour, ms=8, mew=1.5, zorder=2.5)
    for k, (_name, text, holds) in enumerate(notes):
        y = len(rows) + k
        colour = "0.5" if holds is None else ("tab:green" if holds else "tab:red")
        verdict = "" if holds is None else (" (inside)" if holds else " (outside)")
        ax.text(clip[0] * 1.1, y, f"{text}{verdict}", va="center", fontsize=8, color=colour)
    labels = [r[0] for r in rows] + [n[0] for n in notes]
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_ylim(len(labels) - 0.5, -0.5)
    ax.set_xscale("log")
    ax.set_xlim(*clip)
    ax.axvspan(0.5, 2.0, color="tab:blue", alpha=0.08, lw=0)
    ax.axvline(1.0, color="0.6", lw=0.8, ls=":")
    ax.set_xlabel(
        "multiple of the reported value (bar: reported 95 % interval; shaded: within a factor of 2)\n"
        "dot: simulated, green inside, red outside; whisker: +-2 Monte Carlo standard errors (the seeds' spread)"
    )
    inside = int(table["inside"].sum())
    ax.set_title(
        (title + "\n" if title else "") + f"{inside} of {len(table)} reported figures inside their intervals",
        fontsize=10,
    )
    fig.savefig(path, dpi=110)
    return fig
