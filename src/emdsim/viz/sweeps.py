"""Figures of sweeps and designs, and the ``emdsim-report`` command.

``emdsim-report SWEEP_DIR`` reads ``sweep.parquet`` (rebuilding it from the job directories first,
so it also works on an interrupted sweep) and draws the swept parameters against the outputs:

* one swept parameter: a line per output with 95% intervals (across replicate seeds when the sweep
  has them, else Wilson intervals of the cohort fraction);
* two: a heatmap per output;
* more: one line plot per parameter, averaged over the others;
* a design (``design.row``): each output against each design parameter.

Figures are PNG files next to ``sweep.parquet``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy import stats

from emdsim.analysis.survival import wilson_interval
from emdsim.studies import sweep

__all__ = ["METRIC_LABELS", "swept_axes", "summarise_axis", "plot_sweep", "plot_sensitivity"]

#: output -> (axis label, scale to display, denominator column for a Wilson interval)
METRIC_LABELS: dict[str, tuple[str, float, str | None]] = {
    "ps_at_diagnosis": ("PS at diagnosis (% of diagnosed)", 100.0, "n_diagnosed"),
    "em_at_diagnosis": ("EM at diagnosis (% of diagnosed)", 100.0, "n_diagnosed"),
    "emd_at_diagnosis": ("EMD at diagnosis (% of diagnosed)", 100.0, "n_diagnosed"),
    "ps_at_relapse": ("PS at relapse (% of relapsed)", 100.0, "n_relapsed"),
    "em_at_relapse": ("EM at relapse (% of relapsed)", 100.0, "n_relapsed"),
    "emd_at_relapse": ("EMD at relapse (% of relapsed)", 100.0, "n_relapsed"),
    "em_ever": ("EM at any time (% of diagnosed)", 100.0, "n_diagnosed"),
    "ps_ever": ("PS at any time (% of diagnosed)", 100.0, "n_diagnosed"),
    "wound_plasmacytoma": ("wound plasmacytoma (% of diagnosed)", 100.0, "n_diagnosed"),
    "median_pfs_months": ("median PFS (months)", 1.0, None),
    "median_os_months": ("median OS (months)", 1.0, None),
    "median_months_onset_to_diagnosis": ("onset to diagnosis (months)", 1.0, None),
}
DEFAULT_METRICS = (
    "ps_at_diagnosis",
    "em_at_diagnosis",
    "em_at_relapse",
    "emd_at_relapse",
    "median_pfs_months",
    "median_os_months",
)
NOT_AXES = {"override.seed", "override.design.row", "override.design.file"}


def swept_axes(frame: pd.DataFrame) -> list[str]:
    """Override columns that take more than one value (replicate seeds and design rows excluded)."""
    return [
        c
        for c in frame.columns
        if c.startswith("override.") and c not in NOT_AXES and frame[c].nunique(dropna=True) > 1
    ]


def summarise_axis(frame: pd.DataFrame, by: Sequence[str], metric: str) -> pd.DataFrame:
    """Mean of ``metric`` per value of ``by`` with a 95% interval (display units).

    With replicates (several jobs per value): a t interval of the mean across them.  With a single
    job and a cohort fraction: the Wilson interval of that fraction.  Otherwise no interval.
    """
    label, scale, denom = METRIC_LABELS.get(metric, (metric, 1.0, None))
    rows = []
    for key, group in frame.groupby(list(by), sort=True, dropna=False):
        y = group[metric].to_numpy(float)
        y = y[np.isfinite(y)]
        lo = hi = mean = math.nan
        if len(y):
            mean = float(y.mean())
            if len(y) >= 2:
                half = float(stats.t.ppf(0.975, len(y) - 1) * y.std(ddof=1) / math.sqrt(len(y)))
                lo, hi = mean - half, mean + half
            elif denom is not None and denom in group:
                n = int(group[denom].iloc[0])
                lo, hi = wilson_interval(int(round(mean * n)), n)
        if scale == 100.0:  # a cohort fraction: the interval stays inside [0, 1]
            lo, hi = max(lo, 0.0), min(hi, 1.0)
        key = key if isinstance(key, tuple) else (key,)
        rows.append(
            {
                **dict(zip(by, key, strict=True)),
                "mean": mean * scale,
                "lower": lo * scale,
                "upper": hi * scale,
                "n_jobs": int(len(y)),
            }
        )
    return pd.DataFrame(rows)


def _short(col: str) -> str:
    return col.removeprefix("override.").removeprefix("param.")


def _positions(values: pd.Series) -> tuple[np.ndarray, list[str], bool]:
    """x positions of an axis: numeric values as they are, categories evenly spaced."""
    if pd.api.types.is_numeric_dtype(values):
        return values.to_numpy(float), [], True
    labels = [str(v) for v in values]
    return np.arange(len(values), dtype=float), labels, False


def log_spaced(values: pd.Series | np.ndarray) -> bool:
    """Whether positive values are spread on a log scale: over two decades, or a geometric series
    (their log10 steps are more even than their linear steps), e.g. 2e-5, 5e-5, 1e-4."""
    v = np.unique(np.asarray(values, dtype=float))
    v = v[np.isfinite(v)]
    if len(v) < 2 or (v <= 0).any():
        return False
    if v.max() / v.min() >= 100:
        return True
    if len(v) < 3 or v.max() / v.min() < 4:
        return False
    lin, log = np.diff(v), np.diff(np.log10(v))
    return float(log.std() / log.mean()) < float(lin.std() / lin.mean())


def _line_panel(ax, table: pd.DataFrame, col: str, metric: str) -> None:
    x, labels, numeric = _positions(table[col])
    ax.plot(x, table["mean"], "o-", color="tab:blue", label="mean")
    if table["lower"].notna().any():
        mean = table["mean"].to_numpy(float)
        lo = np.nan_to_num(mean - table["lower"].to_numpy(float))
        hi = np.nan_to_num(table["upper"].to_numpy(float) - mean)
        ax.errorbar(x, mean, yerr=[lo, hi], fmt="none", color="tab:blue", capsize=5, lw=1.5, label="95% interval")
        if len(x) > 1:
            ax.fill_between(x, table["lower"], table["upper"], color="tab:blue", alpha=0.15)
    if not numeric:
        ax.set_xticks(x, labels, rotation=30 if len(x) > 1 else 0, ha="right" if len(x) > 1 else "center")
    elif log_spaced(table[col]):
        from matplotlib.ticker import NullFormatter

        ax.set_xscale("log")
        ax.set_xticks(x, [f"{v:g}" for v in x])  # the swept values, not overlapping minor labels
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(_short(col))
    ax.set_ylabel(METRIC_LABELS.get(metric, (metric,))[0])
    ax.grid(alpha=0.3)


def _grid(n: int) -> tuple[int, int]:
    cols = min(3, n)
    return math.ceil(n / cols), cols


def plot_lines(frame: pd.DataFrame, col: str, metrics: Sequence[str], path: Path, title: str) -> Path:
    rows, cols = _grid(len(metrics))
    fig = Figure(figsize=(4.2 * cols, 3.4 * rows), layout="constrained")
    for i, metric in enumerate(metrics):
        _line_panel(fig.add_subplot(rows, cols, i + 1), summarise_axis(frame, [col], metric), col, metric)
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=110)
    return path


def plot_heatmaps(frame: pd.DataFrame, cols2: Sequence[str], metrics: Sequence[str], path: Path, title: str) -> Path:
    a, b = cols2
    rows, cols = _grid(len(metrics))
    fig = Figure(figsize=(4.6 * cols, 3.8 * rows), layout="constrained")
    for i, metric in enumerate(metrics):
        ax = fig.add_subplot(rows, cols, i + 1)
        grid = summarise_axis(frame, [a, b], metric).pivot(index=b, columns=a, values="mean")
        im = ax.imshow(grid.to_numpy(float), origin="lower", aspect="auto", cmap="viridis")
        ax.set_xticks(
            range(grid.shape[1]),
            [f"{v:g}" if isinstance(v, float) else str(v) for v in grid.columns],
            rotation=30,
            ha="right",
        )
        ax.set_yticks(range(grid.shape[0]), [f"{v:g}" if isinstance(v, float) else str(v) for v in grid.index])
        ax.set_xlabel(_short(a))
        ax.set_ylabel(_short(b))
        values = grid.to_numpy(float)
        finite = values[np.isfinite(values)]
        mid = float(finite.mean()) if len(finite) else 0.0
        for (r, c), v in np.ndenumerate(values):
            if np.isfinite(v):
                ax.text(c, r, f"{v:.3g}", ha="center", va="center", fontsize=8, color="white" if v < mid else "black")
        fig.colorbar(im, ax=ax, label=METRIC_LABELS.get(metric, (metric,))[0])
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=110)
    return path


def plot_design(
    frame: pd.DataFrame, metrics: Sequence[str], path: Path, title: str, log_params: Sequence[str] = ()
) -> Path:
    """Each output against each design parameter (log axes for parameters sampled in log10)."""
    params = [c for c in frame.columns if c.startswith("param.")]
    fig = Figure(figsize=(3.2 * len(params), 2.8 * len(metrics)), layout="constrained")
    for i, metric in enumerate(metrics):
        label, scale, _ = METRIC_LABELS.get(metric, (metric, 1.0, None))
        for j, p in enumerate(params):
            ax = fig.add_subplot(len(metrics), len(params), i * len(params) + j + 1)
            ax.scatter(frame[p], frame[metric] * scale, s=10, alpha=0.7)
            wide = (frame[p] > 0).all() and frame[p].max() / frame[p].min() >= 50
            if p.removeprefix("param.") in log_params or wide:
                ax.set_xscale("log")
            if i == len(metrics) - 1:
                ax.set_xlabel(_short(p), fontsize=8)
            if j == 0:
                ax.set_ylabel(label, fontsize=8)
            ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=100)
    return path


def plot_sweep(frame: pd.DataFrame, out_dir: Path, metrics: Sequence[str] = DEFAULT_METRICS) -> list[Path]:
    """Draw a sweep table; returns the PNG files written."""
    done = frame[frame["status"] == "done"].copy()
    if done.empty:
        raise ValueError("the sweep has no finished job to draw")
    metrics = [m for m in metrics if m in done and done[m].notna().any()]
    if not metrics:
        raise ValueError("none of the chosen outputs has a value in the finished jobs")
    out_dir = Path(out_dir)
    title = sweep_title(out_dir, frame)
    if "override.design.row" in done and any(c.startswith("param.") for c in done.columns):
        return [plot_design(done, metrics, out_dir / "sweep_design.png", title, _design_log_params(out_dir))]
    axes = swept_axes(done)
    if len(axes) == 2:
        return [plot_heatmaps(done, axes, metrics, out_dir / "sweep_heatmap.png", title)]
    if not axes:
        done["replicate"] = "all jobs"
        axes = ["replicate"]
    return [plot_lines(done, col, metrics, out_dir / f"sweep_{_short(col)}.png", title) for col in axes]


def sweep_title(out_dir: Path, frame: pd.DataFrame) -> str:
    """What was run: the sweep's overrides (from ``sweep.json``), jobs finished and replicates."""
    try:
        overrides = sweep.read_plan(Path(out_dir) / sweep.PLAN)
    except Exception:  # noqa: BLE001 - a title must not stop the figure
        overrides = []
    shown = [o for o in overrides if not o.startswith(("design.file=", "hydra"))]
    done = int((frame["status"] == "done").sum())
    seeds = frame["seed"].nunique() if "seed" in frame else 1
    text = "emdsim -m " + " ".join(shown) if shown else Path(out_dir).name
    if len(text) > 110:
        text = text[:107] + "..."
    return f"{text}\n{done} of {len(frame)} jobs finished" + (f", {seeds} replicate seeds" if seeds > 1 else "")


def _design_log_params(out_dir: Path) -> list[str]:
    from emdsim.config.inputs import read_json

    path = Path(out_dir) / "design.json"
    if not path.is_file():
        return []
    try:
        return [p["path"] for p in read_json(path, "design record").get("parameters", []) if p.get("log")]
    except Exception:  # noqa: BLE001
        return []


def plot_sensitivity(indices: pd.DataFrame, method: str, path: Path) -> Path:
    """Bar chart of the main index per output (Morris mu*, Sobol ST, LHS delta) with its interval."""
    main_index = {"morris": "mu_star", "sobol": "ST", "lhs": "delta"}[method]
    outputs = list(dict.fromkeys(indices["output"]))
    rows, cols = _grid(len(outputs))
    fig = Figure(figsize=(4.8 * cols, 0.5 * indices["parameter"].nunique() * rows + 1.5 * rows), layout="constrained")
    for i, out in enumerate(outputs):
        ax = fig.add_subplot(rows, cols, i + 1)
        sel = indices[(indices["output"] == out) & (indices["index"] == main_index)]
        sel = sel.sort_values("value", na_position="first")
        ax.barh(sel["parameter"], sel["value"].fillna(0.0), xerr=sel["conf"].fillna(0.0), color="tab:orange", capsize=3)
        for y, (_, r) in enumerate(sel.iterrows()):
            if not np.isfinite(r["value"]):
                ax.text(0, y, "  not estimable (too few runs)", va="center", fontsize=8, color="gray")
        ax.set_title(METRIC_LABELS.get(out, (out,))[0], fontsize=9)
        ax.set_xlabel(f"{main_index} (95% bootstrap interval)")
        ax.tick_params(axis="y", labelsize=8)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(f"{method} sensitivity")
    fig.savefig(path, dpi=110)
    return path


def plot_comparison(table: pd.DataFrame, reference: str, path: Path, *, title: str = "") -> Path:
    """Forest plot: each arm's paired difference from ``reference`` with its 95% interval, per metric;
    with parameter draws (``draws_5``/``draws_95``) also the effect's 5-95 % range over the draws, as
    a wide pale bar behind it."""
    diffs = table[table["arm"] != reference]
    metrics = list(dict.fromkeys(diffs["metric"]))
    rows, cols = _grid(max(len(metrics), 1))
    n_arms = max(diffs["arm"].nunique(), 1)
    fig = Figure(figsize=(4.4 * cols, (0.45 * n_arms + 1.3) * rows), layout="constrained")
    for i, metric in enumerate(metrics):
        ax = fig.add_subplot(rows, cols, i + 1)
        sel = diffs[diffs["metric"] == metric].reset_index(drop=True)
        label, scale, _ = METRIC_LABELS.get(metric, (metric, 1.0, None))
        unit = "percentage points" if scale == 100.0 else ""
        y = np.arange(len(sel))
        d = sel["difference"].to_numpy(float) * scale
        lo = np.nan_to_num(d - sel["lower"].to_numpy(float) * scale)
        hi = np.nan_to_num(sel["upper"].to_numpy(float) * scale - d)
        if "draws_5" in sel:
            low, high = sel["draws_5"].to_numpy(float) * scale, sel["draws_95"].to_numpy(float) * scale
            ax.hlines(y, low, high, color="tab:blue", alpha=0.25, lw=9, label="5-95 % over parameter draws")
        ax.errorbar(d, y, xerr=[lo, hi], fmt="o", color="tab:blue", capsize=3, label="95 % interval of the mean")
        if "draws_5" in sel and i == 0:
            ax.legend(fontsize=7, loc="best")
        ax.axvline(0.0, color="gray", lw=1)
        ax.set_yticks(y, [str(a) for a in sel["arm"]], fontsize=8)
        ax.invert_yaxis()  # arms top to bottom in their listed order
        ax.set_title(label if metric in METRIC_LABELS else metric, fontsize=8)
        ax.set_xlabel(f"difference vs {reference} {unit}".strip(), fontsize=8)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=110)
    return path
