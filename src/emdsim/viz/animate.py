"""``emdsim-animate RUN_DIR``: one patient's course as an animation, replayed from ``snapshots.parquet``.

Nothing is simulated here: frames are drawn from the snapshots a run saved (``sim.snapshot_every``,
``sim.snapshot_patients``) with ``patients.parquet`` and ``lesions.parquet`` for the clinical
timeline, so the same run directory always gives the same frames.

The body map puts marrow sites on a skeleton-like layout, each paraskeletal compartment beside
its bone, the organs in a ring around the blood and wound sites below (shown once opened).  Node
area and colour give the burden (log10 cells); orange arrows mark cells arriving by local extension
during the step, red arrows cells arriving from the blood (haematogenous).  The strip below shows
diagnosis, treatment lines, relapse, imaging detections (diagnosis and relapse work-up) and death,
with a cursor at the frame's time.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from emdsim.cohort.snapshots import SNAPSHOT_COLUMNS
from emdsim.config.schema import SOFT_TISSUE_KINDS
from emdsim.units import DAYS_PER_YEAR
from emdsim.viz.figures import pretty_site

__all__ = ["LAYOUT", "node_positions", "select_patient", "frame_steps", "render"]

#: body-map positions of the default anatomy's marrow sites (x, y); presentation only
LAYOUT: dict[str, tuple[float, float]] = {
    "cranium": (0.0, 11.0),
    "mandible": (0.0, 10.1),
    "cervical_vertebrae": (0.0, 9.3),
    "clavicles": (-1.5, 8.8),
    "proximal_humeri": (-2.6, 8.0),
    "scapulae": (1.5, 8.5),
    "sternum": (-0.9, 7.5),
    "ribs": (1.6, 7.0),
    "thoracic_vertebrae": (0.0, 7.6),
    "lumbar_vertebrae": (0.0, 5.8),
    "sacrum": (0.0, 4.5),
    "pelvis": (-1.4, 4.3),
    "proximal_femora": (-1.6, 2.7),
}
BODY_LINES = [
    ("cranium", "mandible"),
    ("mandible", "cervical_vertebrae"),
    ("cervical_vertebrae", "thoracic_vertebrae"),
    ("thoracic_vertebrae", "lumbar_vertebrae"),
    ("lumbar_vertebrae", "sacrum"),
    ("clavicles", "proximal_humeri"),
    ("cervical_vertebrae", "clavicles"),
    ("sacrum", "pelvis"),
    ("pelvis", "proximal_femora"),
    ("thoracic_vertebrae", "ribs"),
    ("clavicles", "sternum"),
    ("cervical_vertebrae", "scapulae"),
]
BLOOD_AT = (6.2, 6.8)
KIND_EDGE = {
    "marrow": "black",
    "paraskeletal": "tab:orange",
    "blood": "darkred",
    "organ": "tab:red",
    "wound": "tab:purple",
}


def _label_placement(name: str, kind: str, x: float, y: float) -> tuple[tuple[float, float], str, str]:
    """Where a node's label goes (offset in points, alignment): marrow sites of the midline and the
    right to the right, those of the left to the left (so the spine, sternum and ribs do not
    collide), organs outward from the blood, the blood and wounds below."""
    if kind == "marrow":
        return ((9, 0), "left", "center") if x >= 0 else ((-9, 0), "right", "center")
    if kind == "organ":
        if x < BLOOD_AT[0] - 2.0:  # the ring's leftmost organs: below, clear of the spine's labels
            return (0, -11), "center", "top"
        return ((9, 0), "left", "center") if x >= BLOOD_AT[0] + 0.1 else ((-9, 0), "right", "center")
    return (0, -11), "center", "top"


def node_positions(nodes: pd.DataFrame) -> dict[str, tuple[float, float]]:
    """Positions for every node (``name``, ``kind``, ``adjacent_to``): marrow from :data:`LAYOUT`
    (unknown marrow sites on a column), paraskeletal beside their bone, organs on a ring, wounds below."""
    pos: dict[str, tuple[float, float]] = {}
    extra_marrow = 0
    for r in nodes.itertuples():
        if r.kind == "marrow":
            if r.name in LAYOUT:
                pos[r.name] = LAYOUT[r.name]
            else:
                pos[r.name] = (-3.6, 11.0 - 0.8 * extra_marrow)
                extra_marrow += 1
    for r in nodes.itertuples():
        if r.kind == "paraskeletal":
            bx, by = pos.get(r.adjacent_to, (-3.6, 1.0))
            pos[r.name] = (bx + (0.75 if bx >= 0 else -0.75), by - 0.3)
        elif r.kind == "blood":
            pos[r.name] = BLOOD_AT
    organs = [r.name for r in nodes.itertuples() if r.kind == "organ"]
    for i, name in enumerate(organs):
        a = math.pi / 2 - 2 * math.pi * i / max(len(organs), 1)
        pos[name] = (BLOOD_AT[0] + 2.7 * math.cos(a), BLOOD_AT[1] + 3.3 * math.sin(a))
    wounds = [r.name for r in nodes.itertuples() if r.kind == "wound"]
    for i, name in enumerate(wounds):
        pos[name] = (2.6 + 1.9 * i, 1.7)
    return pos


def select_patient(patients: pd.DataFrame, snapshots: pd.DataFrame, which: str) -> int:
    """A recorded patient: an id, ``first`` or ``first-emd-relapse`` (``first-em-relapse``, ``first-emd``)."""
    recorded = set(snapshots["patient_id"].unique().tolist())
    rec = patients[patients["patient_id"].isin(recorded)].sort_values("patient_id")
    if rec.empty:
        raise ValueError("the run recorded no snapshots (sim.snapshot_every=0 or sim.snapshot_patients=0)")
    if which.isdigit():
        pid = int(which)
        if pid not in recorded:
            raise ValueError(
                f"patient {pid} has no snapshots; recorded: {min(recorded)}..{max(recorded)} "
                "(raise sim.snapshot_patients)"
            )
        return pid
    column = {
        "first": None,
        "first-emd-relapse": "emd_at_relapse",
        "first-em-relapse": "em_at_relapse",
        "first-emd": "emd_ever",
    }.get(which, "?")
    if column == "?":
        raise ValueError(f"--patient {which!r}: an id, first, first-emd-relapse, first-em-relapse or first-emd")
    if column == "emd_ever":
        hit = rec[rec["em_ever"] | rec["ps_ever"]]
    else:
        hit = rec if column is None else rec[rec[column]]
    if hit.empty:
        raise ValueError(
            f"no recorded patient matches {which!r} among {len(rec)} recorded; "
            "rerun with a larger sim.snapshot_patients"
        )
    return int(hit["patient_id"].iloc[0])


def frame_steps(steps: np.ndarray, max_frames: int) -> np.ndarray:
    """At most ``max_frames`` steps, evenly spaced, always with the first and the last."""
    steps = np.unique(steps)
    if len(steps) <= max_frames:
        return steps
    idx = np.unique(np.round(np.linspace(0, len(steps) - 1, max_frames)).astype(int))
    return steps[idx]


def _timeline(patient: pd.Series, lesions: pd.DataFrame, snaps: pd.DataFrame) -> dict:
    """Clinical events in years since myeloma onset."""
    t_dx = patient["onset_to_diagnosis_days"]
    ev: dict = {
        "dx": None,
        "prog": None,
        "death": None,
        "end": snaps["t_days"].max() / DAYS_PER_YEAR,
        "lines": [],
        "detections": [],
    }
    if patient["diagnosed"]:
        ev["dx"] = t_dx / DAYS_PER_YEAR
        if patient["relapsed"]:
            ev["prog"] = (t_dx + patient["pfs_days"]) / DAYS_PER_YEAR
        if patient["os_event"]:
            ev["death"] = (t_dx + patient["os_days"]) / DAYS_PER_YEAR
        for r in lesions.itertuples():
            if r.detected_at_diagnosis:
                ev["detections"].append((ev["dx"], r.site))
            if r.detected_at_relapse and ev["prog"] is not None:
                ev["detections"].append((ev["prog"], r.site))
    per_step = snaps.drop_duplicates("step")[["t_days", "line", "status"]].sort_values("t_days")
    start, current = None, None
    for t, line, status in zip(per_step["t_days"] / DAYS_PER_YEAR, per_step["line"], per_step["status"], strict=True):
        key = int(line) if status == 1 else None  # 1: followed (diagnosed, on a treatment plan)
        if key != current:
            if current is not None:
                ev["lines"].append((start, t, current))
            start, current = t, key
    if current is not None:
        ev["lines"].append((start, ev["end"], current))
    return ev


class BodyMapPainter:
    """Draws frames of one patient on one figure (body map above, timeline below).

    Static parts (skeleton, vessels, labels, timeline) are drawn once; a frame only updates the
    node collection, the arrows, the title and the timeline cursor.
    """

    def __init__(
        self,
        snaps: pd.DataFrame,
        nodes: pd.DataFrame,
        patient: pd.Series,
        lesions: pd.DataFrame,
        size: tuple[float, float],
    ) -> None:
        from matplotlib import cm, colormaps, colors

        self.by_step = {s: g.set_index("node") for s, g in snaps.groupby("step")}
        self.names = nodes["name"].tolist()
        self.kinds = nodes["kind"].tolist()
        self.adjacent = nodes["adjacent_to"].tolist()
        pos = node_positions(nodes)
        self.xy = np.array([pos[n] for n in self.names])
        self.index = {n: i for i, n in enumerate(self.names)}
        self.wound_labels: dict[int, object] = {}
        self.patient = patient
        self.events = _timeline(patient, lesions, snaps)
        self.vmax = max(12.5, float(np.log10(snaps["cells"].max() + 1.0)))
        self.max_flow = max(float(np.log10(max(snaps["haematogenous_flow"].max(), snaps["local_flow"].max()) + 1)), 1.0)
        self.norm = colors.Normalize(vmin=0.0, vmax=self.vmax)
        self.cmap = colormaps["magma_r"]
        self.fig = Figure(figsize=size, dpi=100)
        ax = self.map_ax = self.fig.add_axes((0.02, 0.24, 0.83, 0.7))
        cax = self.fig.add_axes((0.88, 0.3, 0.025, 0.58))
        self.fig.colorbar(cm.ScalarMappable(norm=self.norm, cmap=self.cmap), cax=cax, label="burden (log10 cells)")
        for a, b in BODY_LINES:
            if a in pos and b in pos:
                (x0, y0), (x1, y1) = pos[a], pos[b]
                ax.plot([x0, x1], [y0, y1], color="lightgray", lw=3, zorder=0, solid_capstyle="round")
        bx, by = BLOOD_AT
        for name, kind in zip(self.names, self.kinds, strict=True):
            x, y = pos[name]
            if kind == "organ":
                ax.plot([bx, x], [by, y], color="mistyrose", lw=1, zorder=0)
            if kind in ("organ", "blood", "wound") or (kind == "marrow" and name in LAYOUT):
                offset, ha, va = _label_placement(name, kind, x, y)
                label = ax.annotate(
                    pretty_site(name),
                    (x, y),
                    textcoords="offset points",
                    xytext=offset,
                    ha=ha,
                    va=va,
                    fontsize=7,
                    color="dimgray",
                    zorder=4,
                )
                if kind == "wound":
                    self.wound_labels[self.index[name]] = label
        self.dots = ax.scatter(
            self.xy[:, 0],
            self.xy[:, 1],
            s=12,
            c="white",
            zorder=3,
            edgecolors=[KIND_EDGE.get(k, "gray") for k in self.kinds],
            linewidths=[0.8 if k == "marrow" else 1.4 for k in self.kinds],
        )
        self.arrows = None
        ax.set_xlim(-5.2, 11.6)
        ax.set_ylim(0.4, 11.8)
        ax.set_aspect("equal")
        ax.axis("off")
        ax.text(
            -4.3,
            0.5,
            "arrows: orange = local extension, red = haematogenous arrival outside the marrow\n"
            "node edge: black marrow, orange paraskeletal, red organ, purple wound (shown once opened)",
            fontsize=6,
            color="dimgray",
        )
        self.time_ax = self.fig.add_axes((0.06, 0.06, 0.9, 0.12))
        self._draw_timeline()
        self.cursor = self.time_ax.axvline(0.0, color="gray", lw=2, alpha=0.6)

    def draw(self, step: int) -> None:
        frame = self.by_step[step]
        n = len(self.names)
        cells = np.zeros(n)
        local = np.zeros(n)
        haem = np.zeros(n)
        opened = np.zeros(n, dtype=bool)
        rows = [self.index[name] for name in frame.index]
        cells[rows] = frame["cells"].to_numpy(float)
        local[rows] = frame["local_flow"].to_numpy(float)
        haem[rows] = frame["haematogenous_flow"].to_numpy(float)
        opened[rows] = frame["wound_open"].to_numpy(bool)
        logc = np.log10(cells + 1.0)
        visible = np.array([k != "wound" or o for k, o in zip(self.kinds, opened, strict=True)])
        face = np.where((cells > 0)[:, None], self.cmap(self.norm(logc)), np.array([[1.0, 1.0, 1.0, 1.0]]))
        face[~visible, 3] = 0.0
        edges = self.dots.get_edgecolors()
        if len(edges) == n:
            edges[:, 3] = np.where(visible, 1.0, 0.0)
            self.dots.set_edgecolors(edges)
        self.dots.set_facecolors(face)
        for i, label in self.wound_labels.items():
            label.set_visible(bool(visible[i]))
        self.dots.set_sizes(np.where(cells > 0, 12 + 22 * logc, 12))
        if self.arrows is not None:
            self.arrows.remove()
        starts, ends, widths, colours = [], [], [], []
        for i, kind in enumerate(self.kinds):
            if kind == "paraskeletal" and local[i] >= 1 and self.adjacent[i] in self.index:
                starts.append(self.xy[self.index[self.adjacent[i]]])
                ends.append(self.xy[i])
                widths.append(np.log10(local[i] + 1))
                colours.append("tab:orange")
            if kind in SOFT_TISSUE_KINDS and haem[i] >= 1:
                starts.append(BLOOD_AT)
                ends.append(self.xy[i])
                widths.append(np.log10(haem[i] + 1))
                colours.append("red")
        if starts:
            s0, e0 = np.array(starts, float), np.array(ends, float)
            d = (e0 - s0) * 0.92
            w = 0.004 + 0.01 * np.array(widths) / self.max_flow
            self.arrows = self.map_ax.quiver(
                s0[:, 0],
                s0[:, 1],
                d[:, 0],
                d[:, 1],
                color=colours,
                angles="xy",
                scale_units="xy",
                scale=1,
                width=0.0,
                zorder=5,
                alpha=0.75,
                linewidths=0,
            )
            self.arrows.width = float(w.mean())  # one shaft width per frame: the mean flow
        else:
            self.arrows = None
        t_days = float(frame["t_days"].iloc[0])
        p = self.patient
        status = {0: "undiagnosed", 1: "followed", 2: "dead", 3: "censored"}.get(int(frame["status"].iloc[0]), "")
        line = int(frame["line"].iloc[0])
        treated = status == "followed"
        self.map_ax.set_title(
            f"patient {int(p['patient_id'])} ({'GEP70 high risk' if p['high_risk'] else 'standard risk'}, "
            f"{p['subgroup']}, {p['treatment']}): {t_days / DAYS_PER_YEAR:5.2f} y from onset, {status}"
            + (f", {_line_label(line)}" if treated else ""),
            fontsize=9,
        )
        self.cursor.set_xdata([t_days / DAYS_PER_YEAR] * 2)

    def _draw_timeline(self) -> None:
        ax, ev = self.time_ax, self.events
        for start, end, line in ev["lines"]:
            ax.axvspan(start, end, ymin=0.25, ymax=0.75, color=f"C{line % 10}", alpha=0.35)
            if end - start > 0.06 * max(ev["end"], 0.1):
                ax.text((start + end) / 2, 0.5, _line_label(line), ha="center", va="center", fontsize=6)
        for key, label, colour in (
            ("dx", "diagnosis", "tab:blue"),
            ("prog", "relapse", "tab:red"),
            ("death", "death", "black"),
        ):
            if ev[key] is not None:
                ax.axvline(ev[key], color=colour, lw=1.5)
                ax.text(
                    ev[key],
                    1.02,
                    label,
                    fontsize=6.5,
                    color=colour,
                    ha="center",
                    va="bottom",
                    transform=ax.get_xaxis_transform(),
                )
        for i, (t, site) in enumerate(ev["detections"]):
            ax.plot(t, 0.12, marker="^", color="tab:purple", markersize=5)
            if i < 4:
                ax.text(t, 0.12, f" {site}", fontsize=5.5, color="tab:purple", va="center")
        ax.set_xlim(0, max(ev["end"], 0.1))
        ax.set_ylim(0, 1)
        ax.set_yticks([])
        ax.set_xlabel(
            "years from myeloma onset (bands: treatment lines; triangles: lesions detected by imaging)", fontsize=7
        )
        ax.tick_params(labelsize=7)


def _line_label(line: int) -> str:
    return "first line" if line == 0 else f"salvage {line}"


def render(
    run_dir: Path,
    *,
    patient: str = "first-emd-relapse",
    out: Path | None = None,
    fmt: str = "gif",
    max_frames: int = 120,
    fps: int = 8,
    size: tuple[float, float] = (8.0, 6.0),
    progress: bool = False,
) -> tuple[Path, int]:
    """Write the animation of one recorded patient; returns (path, number of frames)."""
    from matplotlib.animation import FuncAnimation, PillowWriter

    from emdsim.config.inputs import read_parquet

    run_dir = Path(run_dir)
    snaps = read_parquet(run_dir / "snapshots.parquet", "snapshot table", SNAPSHOT_COLUMNS)
    patients = read_parquet(run_dir / "patients.parquet", "patient table", PATIENT_COLUMNS)
    lesions = read_parquet(run_dir / "lesions.parquet", "lesion table", LESION_COLUMNS)
    nodes = anatomy_nodes(run_dir)
    pid = select_patient(patients, snaps, patient)
    psnaps = snaps[snaps["patient_id"] == pid]
    painter = BodyMapPainter(
        psnaps, nodes, patients[patients["patient_id"] == pid].iloc[0], lesions[lesions["patient_id"] == pid], size
    )
    steps = frame_steps(psnaps["step"].to_numpy(), max_frames)
    anim = FuncAnimation(painter.fig, lambda i: painter.draw(int(steps[i])), frames=len(steps), blit=False)
    out = Path(out) if out else run_dir / f"patient_{pid}.{fmt}"
    if fmt == "mp4":
        try:
            import imageio_ffmpeg
        except ImportError:
            raise ValueError("MP4 needs imageio-ffmpeg (pip install imageio-ffmpeg); GIF works without it") from None
        from matplotlib import rcParams
        from matplotlib.animation import FFMpegWriter

        rcParams["animation.ffmpeg_path"] = imageio_ffmpeg.get_ffmpeg_exe()
        writer = FFMpegWriter(fps=fps, codec="h264")
    else:
        writer = PillowWriter(fps=fps)
    tmp = out.with_name(f".{out.stem}.tmp{out.suffix}")
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(steps), desc="emdsim-animate: frames", unit="frame", leave=False, mininterval=0.5)
    try:
        anim.save(str(tmp), writer=writer, progress_callback=(lambda i, n: bar.update(1)) if bar else None)
    finally:
        if bar:
            bar.close()
    tmp.replace(out)
    return out, len(steps)


#: the columns the animation reads from a run directory's tables (snapshots: all of them)
PATIENT_COLUMNS = (
    "patient_id",
    "diagnosed",
    "onset_to_diagnosis_days",
    "relapsed",
    "pfs_days",
    "pfs_event",
    "os_days",
    "os_event",
    "em_ever",
    "ps_ever",
    "emd_at_relapse",
    "em_at_relapse",
    "emd_at_diagnosis",
)
LESION_COLUMNS = ("patient_id", "site", "kind", "route", "onset_days", "detectable_days")


def anatomy_nodes(run_dir: Path) -> pd.DataFrame:
    """The compartments of the run's anatomy (from its ``config.yaml``): name, kind, adjacent_to."""
    from emdsim.config.inputs import read_yaml
    from emdsim.config.schema import ConfigError

    path = Path(run_dir) / "config.yaml"
    cfg = read_yaml(path, "run configuration")
    nodes = (cfg.get("anatomy") or {}).get("nodes") if isinstance(cfg.get("anatomy"), dict) else None
    if not isinstance(nodes, list) or not all(isinstance(n, dict) and {"name", "kind"} <= set(n) for n in nodes):
        raise ConfigError(
            f"{path}: anatomy.nodes",
            type(nodes).__name__,
            "the run's resolved configuration, with anatomy.nodes as a list of {name, kind, ...}",
        )
    rows = [{"name": n["name"], "kind": n["kind"], "adjacent_to": n.get("adjacent_to", "") or ""} for n in nodes]
    return pd.DataFrame(rows)
