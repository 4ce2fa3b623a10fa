"""The dashboard in a real browser: `streamlit run app.py` driven by Debian's Chromium through Playwright.

Never downloads a browser: the tests skip when no `chromium` is on the PATH. Screenshots go to
$NORMLAB_ARTIFACTS when set, else to pytest's temporary directory.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from scripts.server import free_port, start_server, stop_server, wait_healthy

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# A cold start imports torch and probes three networks on a shared CPU; later redraws take about a second.
LOAD_MS = 180_000
REDRAW_MS = 120_000

# Names of the mean lines of the first plotly chart on the page (bands and overflow markers left out).
CHART_NAMES_JS = """() => {
  const chart = document.querySelector('.js-plotly-plot');
  if (!chart || !chart.data) return null;
  return chart.data.filter(t => t.mode === 'lines+markers' && t.showlegend !== false).map(t => t.name);
}"""
# x of a named mean line, read from plotly's decoded traces (``data`` keeps the base64-packed arrays).
CHART_X_JS = """(name) => {
  const chart = document.querySelector('.js-plotly-plot');
  const traces = (chart && chart._fullData) || [];
  const trace = traces.find(t => t.name === name && t.mode === 'lines+markers');
  return trace ? Array.from(trace.x) : null;
}"""


@pytest.fixture(scope="module")
def chromium_path() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium); no browser is downloaded")
    return path


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    path = Path(os.environ.get("NORMLAB_ARTIFACTS") or tmp_path_factory.mktemp("artifacts"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def server(chromium_path, artifacts):
    """The app served on a free port for this module's tests; always stopped afterwards."""
    port = free_port()
    proc = start_server(port, artifacts / "streamlit.log")
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_server(proc)


@pytest.fixture(scope="module")
def browser(chromium_path):
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser):
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    try:
        yield page
    finally:
        page.close()


def wait_for_chart(page) -> None:
    page.locator(".js-plotly-plot .main-svg").first.wait_for(timeout=LOAD_MS)
    page.wait_for_function(CHART_NAMES_JS, timeout=LOAD_MS)


def wait_for_names(page, names: set[str]) -> None:
    page.wait_for_function(f"() => {{ const n = ({CHART_NAMES_JS})(); return n && "
                           f"JSON.stringify([...new Set(n)].sort()) === '{_sorted_json(names)}'; }}",
                           timeout=REDRAW_MS)


def _sorted_json(names: set[str]) -> str:
    return "[" + ",".join(f'"{n}"' for n in sorted(names)) + "]"


def test_changing_normalizer_and_depth_redraws_the_chart(server, page, artifacts):
    page.goto(server)
    wait_for_chart(page)
    sidebar = page.get_by_test_id("stSidebar")
    sidebar.get_by_role("link", name="Variance growth").click()
    page.get_by_role("heading", name="Property 1 · Variance growth with depth").wait_for(timeout=LOAD_MS)
    wait_for_names(page, {"BatchNorm", "GroupNorm (G=4)", "No normalization"})

    sidebar.get_by_role("button", name="Remove No normalization").click()
    wait_for_names(page, {"BatchNorm", "GroupNorm (G=4)"})

    depth = sidebar.get_by_role("slider", name="Depth (blocks per stage)")
    depth.focus()
    for _ in range(2):  # the depth stops run 1, 2, 3, 4, 5, 6, 8, ...
        depth.press("ArrowLeft")
    page.wait_for_function(f"() => JSON.stringify(({CHART_X_JS})('BatchNorm')) === '[1,2,3,4,5]'",
                           timeout=REDRAW_MS)
    page.wait_for_url("**depth=5**", timeout=REDRAW_MS)  # the link follows the control
    page.screenshot(path=artifacts / "variance-after-changes.png")
    assert (artifacts / "variance-after-changes.png").stat().st_size > 10_000


def test_a_shared_link_restores_the_view_then_lecture_mode_steps_through_claims(server, page, artifacts):
    page.goto(f"{server}/?page=rank-collapse&norms=batchnorm,layernorm&depth=4&width=8")
    page.get_by_role("heading", name="Property 2 · Rank collapse").wait_for(timeout=LOAD_MS)
    wait_for_chart(page)
    wait_for_names(page, {"BatchNorm", "LayerNorm", "BatchNorm · stable rank", "LayerNorm · stable rank",
                          "BatchNorm · centered cosine similarity", "LayerNorm · centered cosine similarity",
                          "BatchNorm · effective rank", "LayerNorm · effective rank",
                          "BatchNorm · numerical rank", "LayerNorm · numerical rank"})
    assert page.get_by_text("Page not found").count() == 0
    sidebar = page.get_by_test_id("stSidebar")
    sidebar.get_by_text("Share this view").click()
    shared = sidebar.get_by_test_id("stCode").inner_text()
    assert "page=rank-collapse" in shared and "norms=batchnorm%2Clayernorm" in shared and "depth=4" in shared

    sidebar.get_by_text("Lecture mode").click()
    next_claim = sidebar.get_by_role("button", name="Next")
    next_claim.wait_for(timeout=REDRAW_MS)
    next_claim.click()
    page.get_by_role("heading", name="2. Exponential without normalization; SkipInit repairs it").wait_for(
        timeout=LOAD_MS)
    page.get_by_text("Verdict:").wait_for(timeout=LOAD_MS)
    wait_for_chart(page)
    page.wait_for_url("**paper-claims**lecture=1**", timeout=REDRAW_MS)
    page.screenshot(path=artifacts / "lecture-claim-2.png")
    assert (artifacts / "lecture-claim-2.png").stat().st_size > 10_000
