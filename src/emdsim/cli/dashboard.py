"""``emdsim-app``: Mesa's SolaraViz dashboard of one virtual patient.

The page shows the patient's body map (the same drawing as ``emdsim-animate``), the burden per
compartment kind over time and the extramedullary events so far, with Mesa's step / play / reset
controls.  Sliders are generated from the composed default configuration and the schema's declared
intervals (:func:`model_params`), so no default is copied here.  Run offline: the page's front-end
is served by ``solara-assets``.

    emdsim-app                  # http://127.0.0.1:8765
    emdsim-app --port 9000
"""

from __future__ import annotations

import math
import os
import sys
from typing import Any

import pandas as pd

from emdsim.cohort.agents import EMDModel
from emdsim.cohort.outcomes import lesion_records, patient_records
from emdsim.config.load import CONF_DIR, load
from emdsim.config.schema import describe_parameters
from emdsim.engine.status import Status
from emdsim.units import DAYS_PER_YEAR

__all__ = ["SLIDER_PARAMETERS", "model_params", "DashboardModel", "BodyMap", "Burden", "Events", "page", "main"]

#: parameters offered as sliders (config paths); values and ranges come from the config and schema
SLIDER_PARAMETERS = (
    "spread.p_colonisation",
    "spread.egress_rate_per_day",
    "spread.crowding_egress_gain",
    "spread.beta_cxcr4",
    "spread.w_cd56",
    "spread.cortical_disruption_rate_per_day",
    "spread.local_extension_rate_per_day",
    "growth.niche_loss_death_rate_per_day",
    "traits.switches.2.rate_per_division",
)
SEP = "__"  # spread.p_colonisation -> keyword spread__p_colonisation
#: the events panel lists soft-tissue populations of at least this many cells (display choice)
DISPLAY_MIN_CELLS = 1e3


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def _slider(row: dict[str, Any]) -> dict[str, Any]:
    value = float(row["value"])
    lo = float(row["lo"]) if row["lo"] is not None else 0.0
    hi = float(row["hi"]) if row["hi"] is not None else max(10 * value, 1.0)
    hi = min(hi, max(10 * value, lo + 1e-12)) if value > 0 else hi
    step = 10 ** math.floor(math.log10((hi - lo) / 200)) if hi > lo else 1.0
    name = row["field"].split(".")[-1].removesuffix("_per_day")
    if row["item"]:  # a list item is named by its own name (niche_independence rate_per_division)
        name = f"{row['item']} {name}"
    return {
        "type": "SliderFloat",
        "value": value,
        "min": lo,
        "max": hi,
        "step": step,
        "label": f"{name} ({row['unit']})",
    }


def model_params(overrides: list[str] = ()) -> dict[str, Any]:
    """SolaraViz ``model_params``: patient, seed, treatment, scenario and the parameter sliders."""
    cfg = load(list(overrides))
    rows = {r["field"]: r for r in describe_parameters(cfg)}
    params: dict[str, Any] = {
        "patient_id": {"type": "SliderInt", "value": 0, "min": 0, "max": 199, "step": 1, "label": "patient"},
        "seed": {"type": "InputText", "value": str(cfg.seed), "label": "seed (integer)"},
        "treatment": {
            "type": "Select",
            "value": cfg.treatment.name,
            "values": _options("treatment"),
            "label": "treatment",
        },
        "scenario": {"type": "Select", "value": cfg.scenario.name, "values": _options("scenario"), "label": "scenario"},
    }
    for path in SLIDER_PARAMETERS:
        params[path.replace(".", SEP)] = _slider(rows[path])
    return params


class DashboardModel(EMDModel):
    """An :class:`EMDModel` built from dashboard inputs (keyword arguments only, as Mesa requires)."""

    def __init__(self, patient_id: int, seed: int | str, treatment: str, scenario: str, **kwargs: float) -> None:
        overrides = [f"seed={int(seed)}", f"treatment={treatment}", f"scenario={scenario}"]
        overrides += [f"{k.replace(SEP, '.')}={float(v)!r}" for k, v in kwargs.items()]
        super().__init__(load(overrides), patient_id=int(patient_id))

    def nodes(self) -> pd.DataFrame:
        return pd.DataFrame(
            [
                {"name": n.name, "kind": n.kind, "adjacent_to": getattr(n, "adjacent_to", "") or ""}
                for n in self.cfg.anatomy.nodes
            ]
        )


def BodyMap(model: DashboardModel):  # noqa: N802 - Solara components are capitalised
    import solara

    from emdsim.viz.animate import BodyMapPainter

    snaps = model.snapshot_table()
    painter = BodyMapPainter(
        snaps,
        model.nodes(),
        patient_records(model.state, model.tables).iloc[0],
        lesion_records(model.state, model.tables),
        (10.0, 7.5),
    )
    painter.draw(int(snaps["step"].max()))
    return solara.FigureMatplotlib(painter.fig, format="png")


def Burden(model: DashboardModel):  # noqa: N802
    import numpy as np
    import solara
    from matplotlib.figure import Figure

    snaps = model.snapshot_table()
    fig = Figure(figsize=(7, 3.2), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    wide = snaps.pivot_table(index="t_days", columns="kind", values="cells", aggfunc="sum", fill_value=0.0)
    for kind in wide.columns:
        ax.plot(wide.index / DAYS_PER_YEAR, np.log10(wide[kind] + 1.0), label=kind)
    ax.set_xlabel("years from myeloma onset")
    ax.set_ylabel("log10 cells")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=3)
    ax.set_title("burden per compartment kind", fontsize=10)
    return solara.FigureMatplotlib(fig, format="png")


def events_html(model: DashboardModel) -> str:
    """The events panel as plain HTML (solara.Markdown would load KaTeX from a CDN: no network here)."""
    from html import escape

    st = model.state
    lesions = lesion_records(st, model.tables)
    seeds = int((lesions["cells_at_end"] < DISPLAY_MIN_CELLS).sum())
    lesions = lesions[lesions["cells_at_end"] >= DISPLAY_MIN_CELLS]
    arrived = [a for a in model.agents if a.arrived_by in ("local", "haematogenous") and a.n_cells >= 1]
    parts = [f"<p><b>t = {st.t_days:.0f} days</b> from myeloma onset (step {st.n_steps})</p>"]
    began = float(st.next_days[0] - st.step_days[0])
    if st.status[0] <= Status.FOLLOWED and began < st.t_days - 0.5 * model.tables.dt_days:
        # within a long step (sim.max_step_days): the patient is advanced at its end, and shown as at its start
        parts.append(
            f"<p>in one {st.step_days[0]:.0f}-day step (the adaptive step) from day {began:.0f} to day "
            f"{st.next_days[0]:.0f}: shown as at day {began:.0f}</p>"
        )
    if len(lesions):
        from emdsim.viz.figures import pretty_site

        rows = "".join(
            f"<tr><td>{escape(pretty_site(r.site))}</td><td>{escape(r.kind)}</td><td>{escape(r.route)}</td>"
            f"<td>{'before diagnosis' if math.isnan(r.onset_days) else f'{r.onset_days:.0f}'}</td>"
            f"<td>{r.cells_at_end:.3g}</td></tr>"
            for r in lesions.sort_values("onset_days").itertuples()
        )
        parts.append(
            "<table style='border-collapse:collapse' cellpadding='4'><tr><th>site</th><th>kind</th>"
            "<th>route</th><th>onset (days from diagnosis)</th><th>cells</th></tr>" + rows + "</table>"
        )
    else:
        parts.append(f"<p>no soft-tissue lesion of {DISPLAY_MIN_CELLS:.0e} cells or more yet</p>")
    parts.append(f"<p>{seeds} smaller soft-tissue populations (arrested circulating cells, micro-lesions)</p>")
    parts.append(
        f"<p>{len(arrived)} clone populations arrived outside their origin "
        f"({sum(a.arrived_by == 'local' for a in arrived)} local, "
        f"{sum(a.arrived_by == 'haematogenous' for a in arrived)} haematogenous)</p>"
    )
    return "".join(parts)


def Events(model: DashboardModel):  # noqa: N802
    import solara

    return solara.HTML(tag="div", unsafe_innerHTML=events_html(model))


def _fmt(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _make_page():
    """The page's Solara component (defined here: solara is imported only by the server process)."""
    import solara
    from mesa.visualization.solara_viz import ModelController, ShowSteps
    from mesa.visualization.utils import update_counter

    @solara.component
    def ParameterInput(name: str, options: dict, on_change):  # noqa: N802
        """One input that shows its current value (Mesa's sliders do not)."""
        current, set_current = solara.use_state(options["value"])

        def changed(value):
            set_current(value)
            on_change(name, value)

        kind = options["type"]
        label = options.get("label", name)
        if kind in ("SliderFloat", "SliderInt"):
            slider = solara.SliderFloat if kind == "SliderFloat" else solara.SliderInt
            with solara.Column(gap="0px"):
                solara.Text(f"{label}: {_fmt(current)}", classes=["emdsim-slider-label"])
                slider(
                    "",
                    value=current,
                    on_value=changed,
                    min=options["min"],
                    max=options["max"],
                    step=options["step"],
                    thumb_label=False,
                )
        elif kind == "Select":
            solara.Select(label, value=current, values=options["values"], on_value=changed)
        else:
            solara.InputText(label, value=str(current), on_value=changed)

    @solara.component
    def Live(component, model):  # noqa: N802
        update_counter.get()  # re-render after every step
        return component(model)

    @solara.component
    def Page():  # noqa: N802
        params = solara.use_memo(model_params, [])
        initial = {k: (v["value"] if isinstance(v, dict) else v) for k, v in params.items()}
        model = solara.use_reactive(DashboardModel(**initial))
        model_parameters = solara.use_reactive(dict(initial))
        play_interval = solara.use_reactive(300)
        render_interval = solara.use_reactive(1)  # Mesa's controller reads .value of both
        use_threads = solara.use_reactive(False)

        def on_change(name, value):
            model_parameters.value = {**model_parameters.value, name: value}

        solara.Title(PAGE_TITLE)
        with solara.AppBar():
            solara.AppBarTitle(PAGE_TITLE)
        with solara.Sidebar(), solara.Column():
            with solara.Card("Run"):
                ModelController(
                    model,
                    model_parameters=model_parameters,
                    play_interval=play_interval,
                    render_interval=render_interval,
                    use_threads=use_threads,
                )
                solara.Text("Changing an input takes effect at Reset.")
            with solara.Card("Patient and parameters"):
                for name, options in params.items():
                    ParameterInput(name, options, on_change)
            with solara.Card("Information"):
                ShowSteps(model.value)
        with solara.Column(style={"width": "100%"}):
            Live(BodyMap, model.value)  # the whole width of the page
            with solara.Columns([1, 1]):
                Live(Burden, model.value)
                Live(Events, model.value)

    return Page


#: the page's name: the browser tab, the app bar
PAGE_TITLE = "emdsim: one virtual patient"


page = None
if os.environ.get("EMDSIM_APP") == "1":  # set by emdsim-app for the solara server process only
    import warnings

    # known and harmless on a local server: Mesa's unused ComponentsView trips Solara's hook check
    # at import, and Solara explains at every page load that http on 127.0.0.1 gets samesite=lax
    warnings.filterwarnings("ignore", message=r"(?s).*ComponentsView: `use_state` found despite early return")
    warnings.filterwarnings("ignore", message=r"(?s)Cookies with samesite=none require https")
    page = _make_page()


def main(argv: list[str] | None = None) -> None:
    from emdsim.cli.args import command_parser

    parser = command_parser(
        "emdsim-app",
        "A browser dashboard of one virtual patient (Mesa + Solara, served from this machine, offline):\n"
        "the body map, the burden per compartment kind and the soft-tissue lesions so far, with step, play\n"
        "and reset, and inputs for the patient, seed, treatment, scenario and the fitted parameters\n"
        "(starting at the composed configuration, spanning the schema's allowed intervals).",
        [("emdsim-app", "http://127.0.0.1:8765"), ("emdsim-app --port 9000", "another port")],
        "none: the page shows the patient as it runs; stop the server with Ctrl-C.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    args = parser.parse_args(argv)
    env = dict(os.environ, EMDSIM_APP="1", SOLARA_TELEMETRY_MIXPANEL_ENABLE="False")
    command = [
        sys.executable,
        "-m",
        "solara",
        "run",
        "emdsim.cli.dashboard:page",
        "--host",
        args.host,
        "--port",
        str(args.port),
        "--no-open",
        "--production",
    ]
    if not 1 <= args.port <= 65535:
        print(f"emdsim-app: --port={args.port} is invalid: allowed [1, 65535]", file=sys.stderr)
        raise SystemExit(2)
    print(f"emdsim-app: http://{args.host}:{args.port}", flush=True)
    # the server replaces this process (exec): killing emdsim-app stops the server, no orphan is left
    os.execve(sys.executable, command, env)


if __name__ == "__main__":
    main()
