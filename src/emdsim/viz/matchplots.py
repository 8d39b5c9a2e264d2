"""Figures of a history match: emulator diagnostics and the non-implausible space."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

__all__ = ["plot_loo", "plot_space", "plot_predictive"]


def plot_loo(loo: pd.DataFrame, path: Path) -> Figure:
    """Leave-one-out check of every emulator of the last wave: simulated against predicted with ±2 sd
    bars (left panel per output), and the standardised errors with the ±3 band (one strip)."""
    last = loo[loo["wave"] == loo["wave"].max()]
    outputs = list(dict.fromkeys(last["output"]))
    cols = min(4, len(outputs)) or 1
    rows = math.ceil(len(outputs) / cols) + 1
    fig = Figure(figsize=(3.2 * cols, 2.7 * rows + 1.0), layout="constrained")
    grid = fig.add_gridspec(rows, cols)
    for i, name in enumerate(outputs):
        g = last[last["output"] == name]
        ax = fig.add_subplot(grid[i // cols, i % cols])
        ax.errorbar(g["predicted"], g["simulated"], xerr=2 * g["sd"], fmt="o", ms=3, alpha=0.6, lw=0.8)
        lo = float(np.nanmin([g["predicted"].min(), g["simulated"].min()]))
        hi = float(np.nanmax([g["predicted"].max(), g["simulated"].max()]))
        ax.plot([lo, hi], [lo, hi], color="0.4", lw=0.8, ls="--")
        ax.set_title(name, fontsize=7)
        ax.set_xlabel("emulator (LOO), ±2 sd", fontsize=7)
        ax.set_ylabel("simulated", fontsize=7)
        ax.tick_params(labelsize=7)
    ax = fig.add_subplot(grid[rows - 1, :])
    for j, name in enumerate(outputs):
        e = last.loc[last["output"] == name, "standardised_error"].to_numpy()
        ax.scatter(np.full(len(e), j) + np.linspace(-0.2, 0.2, len(e)), e, s=6, alpha=0.6)
    ax.axhspan(-3, 3, color="tab:green", alpha=0.08)
    ax.axhline(0, color="0.4", lw=0.8)
    ax.set_xticks(range(len(outputs)), outputs, rotation=60, ha="right", fontsize=6)
    ax.set_ylabel("standardised LOO error")
    ax.set_title(f"wave {int(last['wave'].max())}: |e| > 3 in {np.mean(np.abs(last['standardised_error']) > 3):.0%}")
    fig.savefig(path, dpi=110)
    return fig


def plot_space(
    sample: pd.DataFrame, bounds: dict[str, tuple[float, float, bool]], fractions: list[float], path: Path
) -> Figure:
    """The non-implausible sample in each pair of parameters (log10 axes for log ranges), and the
    non-implausible fraction of the prior box after each wave (a square panel in the empty upper
    right of the grid: the pairs fill only its lower triangle)."""
    names = list(sample.columns)
    d = len(names)
    fig = Figure(figsize=(max(2.4 * d, 4.0) + 3.0, max(2.4 * d, 3.0)), layout="constrained")
    grid = fig.add_gridspec(max(d, 1), d + 2)
    cols = [np.log10(sample[n]) if bounds[n][2] else sample[n] for n in names]
    lims = [(math.log10(lo), math.log10(hi)) if log else (lo, hi) for lo, hi, log in (bounds[n] for n in names)]
    for i in range(d):
        for j in range(d):
            if j > i:
                continue
            ax = fig.add_subplot(grid[i, j])
            if i == j:
                ax.hist(cols[i], bins=20, range=lims[i], color="tab:blue", alpha=0.8)
                ax.set_yticks([])
            else:
                ax.scatter(cols[j], cols[i], s=4, alpha=0.4)
                ax.set_ylim(*lims[i])
            ax.set_xlim(*lims[j])
            if i == d - 1:
                ax.set_xlabel(("log10 " if bounds[names[j]][2] else "") + names[j].split(".", 1)[-1], fontsize=7)
            ax.tick_params(labelsize=6)
    # r x r cells at the top of the last r columns: rows i < r hold pairs only in columns j <= i < r,
    # and the block starts at column d + 2 - r >= r for every r <= (d + 2) // 2
    r = max(1, min(5, (d + 2) // 2))
    ax = fig.add_subplot(grid[:r, d + 2 - r :])
    ax.semilogy(range(1, len(fractions) + 1), fractions, "o-")
    ax.set_xlabel("wave")
    ax.set_ylabel("non-implausible fraction of the prior box")
    ax.yaxis.tick_right()  # its labels on the right: on the left they would widen a column of the pairs
    ax.yaxis.set_label_position("right")
    ax.set_xticks(range(1, len(fractions) + 1))
    fig.savefig(path, dpi=110)
    return fig


def plot_predictive(table: pd.DataFrame, path: Path) -> Figure:
    """Posterior-predictive check: per output, the reported value and interval (black) and the 5-95 %
    range and median of the simulated posterior draws (blue), as multiples of the reported value."""
    rows = table.reset_index(drop=True)
    fig = Figure(figsize=(10.0, 0.32 * len(rows) + 1.8), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    for i, r in rows.iterrows():
        ref = r["reported"] if r["reported"] else 1.0
        y = len(rows) - 1 - i
        if np.isfinite(r["lower"]) and np.isfinite(r["upper"]):
            ax.plot([r["lower"] / ref, r["upper"] / ref], [y + 0.15] * 2, color="0.2", lw=2)
        ax.plot([r["simulated_5"] / ref, r["simulated_95"] / ref], [y - 0.15] * 2, color="tab:blue", lw=2)
        colour = "tab:green" if r["reported_in_range"] else "tab:red"
        ax.plot(r["simulated_median"] / ref, y - 0.15, "o", color=colour, ms=4)
    ax.axvline(1.0, color="0.5", lw=0.8, ls=":")
    ax.axvspan(0.5, 2.0, color="tab:blue", alpha=0.05)
    ax.set_xscale("log")
    ax.set_yticks(range(len(rows)), list(rows["output"])[::-1], fontsize=7)
    ax.set_xlabel("multiple of the reported value\nblack: reported interval; blue: 5-95 % of the simulated draws")
    inside = int(rows["reported_in_range"].sum())
    ax.set_title(
        f"posterior-predictive check: reported value within the simulated 5-95 % range for {inside} of {len(rows)}"
    )
    fig.savefig(path, dpi=110)
    return fig


def plot_sobol(sobol: pd.DataFrame, path: Path) -> Figure:
    """Total Sobol index of each emulated output (rows) on each parameter (columns), from the first
    wave's emulators over the prior box: which figures each parameter moves."""
    table = sobol.pivot(index="output", columns="parameter", values="ST")
    table = table.reindex(index=list(dict.fromkeys(sobol["output"])), columns=list(dict.fromkeys(sobol["parameter"])))
    values = np.clip(table.to_numpy(dtype=float), 0.0, 1.0)
    fig = Figure(figsize=(2.0 + 1.6 * table.shape[1], 0.3 * table.shape[0] + 2.2), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(np.ma.masked_invalid(values), cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    for (i, j), v in np.ndenumerate(values):
        if np.isfinite(v):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white" if v < 0.6 else "black")
    ax.set_xticks(range(table.shape[1]), [c.split(".", 1)[-1] if len(c) > 28 else c for c in table.columns],
                  rotation=20, ha="right", fontsize=8)  # fmt: skip
    ax.set_yticks(range(table.shape[0]), list(table.index), fontsize=7)
    fig.colorbar(image, ax=ax, label="total Sobol index (share of the output's variance)")
    ax.set_title("which figures each parameter moves (first wave's emulators over the prior box)")
    fig.savefig(path, dpi=110)
    return fig
