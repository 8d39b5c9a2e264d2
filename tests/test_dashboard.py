"""The SolaraViz dashboard: sliders from the config, the model behind it, and a real browser."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from emdsim.cli.dashboard import (
    SEP,
    SLIDER_PARAMETERS,
    BodyMap,
    Burden,
    DashboardModel,
    Events,
    events_html,
    model_params,
)
from emdsim.config.load import load
from emdsim.config.schema import resolve_path

pytestmark = pytest.mark.e2e  # end to end: `make test-fast` leaves it out

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


def test_sliders_start_at_the_config_defaults_inside_their_ranges():
    params = model_params()
    cfg = load([])
    for path in SLIDER_PARAMETERS:
        slider = params[path.replace(".", SEP)]
        assert slider["value"] == resolve_path(cfg, path)
        assert slider["min"] <= slider["value"] <= slider["max"] and slider["step"] > 0
    assert params["treatment"]["value"] == cfg.treatment.name and cfg.treatment.name in params["treatment"]["values"]
    assert params["seed"]["value"] == str(cfg.seed)
    # a list item is labelled by the item's name
    assert params["traits__switches__2__rate_per_division"]["label"].startswith("niche_independence rate_per_division")


def test_dashboard_model_applies_the_inputs_and_its_components_render():
    initial = {k: v["value"] for k, v in model_params().items()}
    initial["spread__p_colonisation"] = 1e-4
    initial["traits__switches__2__rate_per_division"] = 5e-9
    initial["treatment"] = "vtd_asct"
    model = DashboardModel(**initial)
    cfg = model.cfg
    assert cfg.spread.p_colonisation == 1e-4 and cfg.treatment.name == "vtd_asct"
    assert cfg.traits.switches[2].rate_per_division == 5e-9 and cfg.traits.switches[2].name == "niche_independence"
    for _ in range(3):
        model.step()
    assert model.state.n_steps == 3
    for component in (BodyMap, Burden, Events):
        assert component(model) is not None
    assert "(step 3)" in events_html(model)


def test_the_events_panel_says_when_the_patient_is_within_a_long_step():
    """With the adaptive step (default 28 days) a quiet patient is advanced at its step's end: between
    the ends the panel says which step it is in and that the map shows its start."""
    model = DashboardModel(**{k: v["value"] for k, v in model_params().items()})
    st = model.state
    inside = []
    for _ in range(12):
        model.step()
        within = st.next_days[0] - st.step_days[0] < st.t_days - 1.0
        inside.append(within)
        text = events_html(model)
        if within:
            began = st.next_days[0] - st.step_days[0]
            assert f"{st.step_days[0]:.0f}-day step" in text and f"shown as at day {began:.0f}" in text
        else:
            assert "-day step" not in text
    assert any(inside) and not all(inside)  # a quiet patient before diagnosis takes long steps


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server():
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "emdsim.cli.dashboard", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=dict(os.environ),
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    out = proc.stdout.read().decode() if proc.stdout else ""
                    pytest.fail(f"dashboard did not start: {out[-2000:]}")
                time.sleep(1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_dashboard_in_a_real_browser_steps_and_is_screenshotted(server):
    """Playwright drives Debian's chromium (installed by .ci/run); offline: no CDN is reachable."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium not installed (.ci/run installs the Debian package)")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            requests, console = [], []
            page.on("request", lambda r: requests.append(r.url))
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            page.goto(server)
            clock = page.get_by_text("from myeloma onset (step", exact=False).first
            clock.wait_for(timeout=90_000)
            assert "t = 0 days" in clock.inner_text()
            page.get_by_role("button", name="Step").click()
            page.get_by_text("(step 1)", exact=False).first.wait_for(timeout=60_000)
            assert "t = 7 days" in page.get_by_text("from myeloma onset (step", exact=False).first.inner_text()
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
            assert page.title() == "emdsim: one virtual patient"  # a named page, not "PAGE 0"
            defaults = model_params()
            label = defaults["spread__p_colonisation"]["label"]
            shown = page.get_by_text(f"{label}: ", exact=False).first.inner_text()
            assert shown == f"{label}: {defaults['spread__p_colonisation']['value']:.3g}"  # sliders show values
            body = page.locator("img").first.bounding_box()
            assert body is not None and body["width"] >= 700  # the body map fills its column
            host = server.rstrip("/")
            outside = [u for u in requests if not (u.startswith(host) or u.startswith(("data:", "blob:")))]
            assert outside == [], outside[:5]  # nothing leaves the machine (no CDN)
            assert not [c for c in console if "katex" in c.lower() or "Failed to load" in c], console[:5]
        finally:
            browser.close()
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 20_000
