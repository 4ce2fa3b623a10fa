"""The dashboard in a real browser: `streamlit run app.py` driven by Debian's Chromium through Playwright.

Never downloads a browser: the tests skip when no `chromium` is on the PATH. Screenshots go to
$NORMLAB_ARTIFACTS when set, else to pytest's temporary directory.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest

from ui.server import CHROMIUM_ARGS, free_port, start_server, stop_server, wait_healthy

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
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


# Names of the mean lines over every chart on the page, sorted and without repeats.
ALL_NAMES_JS = """() => {
  const names = new Set();
  for (const chart of document.querySelectorAll('.js-plotly-plot')) {
    for (const t of (chart.data || [])) {
      if (t.mode === 'lines+markers' && t.showlegend !== false) names.add(t.name);
    }
  }
  return names.size ? [...names].sort() : null;
}"""
# A fingerprint of the first heatmap on the page (the collapse figure's first matrix) and its slider label.
HEATMAP_JS = """() => {
  for (const chart of document.querySelectorAll('.js-plotly-plot')) {
    const t = (chart._fullData || []).find(t => t.type === 'heatmap');
    if (t && t.z) {
      let sum = 0;
      for (const row of t.z) for (const v of row) sum += v;
      return sum.toFixed(3);
    }
  }
  return null;
}"""


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



def open_variance_page(page, server: str):
    """The variance page at the defaults, by its typed path; returns the sidebar."""
    page.goto(f"{server}/variance-growth")
    sidebar = page.get_by_test_id("stSidebar")
    page.get_by_role("heading", name="Property 1 · Variance growth with depth").wait_for(timeout=LOAD_MS)
    wait_for_names(page, {"BatchNorm", "GroupNorm (G=4)", "No normalization"})
    return sidebar


def test_changing_normalizer_and_depth_redraws_the_chart(server, page, artifacts):
    sidebar = open_variance_page(page, server)

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


def test_a_plot_option_redraws_its_chart_and_the_link_and_share_box_follow(server, page):
    sidebar = open_variance_page(page, server)
    sidebar.get_by_text("Share this view").click()
    axis = page.get_by_test_id("stMain").get_by_role("radiogroup", name="Axis")
    axis.locator("button", has_text=re.compile("^linear$")).click()  # reruns the view's fragment alone
    # the chart is briefly out of the DOM while the fragment redraws it: read it null-safe
    page.wait_for_function("() => document.querySelector('.js-plotly-plot')?._fullLayout?.yaxis?.type "
                           "=== 'linear'", timeout=REDRAW_MS)
    page.wait_for_url("**var_scale=linear**", timeout=REDRAW_MS)
    codes = sidebar.get_by_test_id("stCode")
    page.wait_for_function("() => document.querySelector('[data-testid=stSidebar] [data-testid=stCode]')"
                           "?.innerText.includes('var_scale=linear') === true", timeout=REDRAW_MS)
    assert codes.count() == 1  # the share box was redrawn in its place, not added
    axis.locator("button", has_text=re.compile("^log$")).click()
    page.wait_for_function("() => document.querySelector('[data-testid=stSidebar] [data-testid=stCode]')"
                           "?.innerText.includes('var_scale') === false", timeout=REDRAW_MS)
    assert codes.count() == 1


def test_a_shared_link_restores_the_view_then_lecture_mode_steps_through_claims(server, page, artifacts):
    page.goto(f"{server}/?page=rank-collapse&norms=batchnorm,layernorm&depth=4&width=8")
    page.get_by_role("heading", name="Property 2 · Rank collapse").wait_for(timeout=LOAD_MS)
    page.locator(".js-plotly-plot .main-svg").first.wait_for(timeout=LOAD_MS)
    # one rank measure at a time: the normalizers are the only legend entries
    page.wait_for_function(f"() => JSON.stringify(({ALL_NAMES_JS})()) === '[\"BatchNorm\",\"LayerNorm\"]'",
                           timeout=LOAD_MS)
    assert page.get_by_text("Page not found").count() == 0
    sidebar = page.get_by_test_id("stSidebar")
    sidebar.get_by_text("Share this view").click()
    shared = sidebar.get_by_test_id("stCode").inner_text()
    # an old ?page= link opens its page once; the share link names the page by its path
    assert "/rank-collapse?" in shared and "page=" not in shared
    assert "norms=batchnorm%2Clayernorm" in shared and "depth=4" in shared

    sidebar.get_by_text("Lecture mode").click()
    next_claim = sidebar.get_by_role("button", name="Next")
    next_claim.wait_for(timeout=REDRAW_MS)
    next_claim.click()  # lecture mode starts at claim 1, wherever it is entered
    page.get_by_role("heading", name="1. Linear variance growth").wait_for(timeout=LOAD_MS)
    page.get_by_text("Verdict:").wait_for(timeout=LOAD_MS)
    wait_for_chart(page)
    page.wait_for_url("**paper-claims**lecture=1**", timeout=REDRAW_MS)
    page.screenshot(path=artifacts / "lecture-claim-1.png")
    assert (artifacts / "lecture-claim-1.png").stat().st_size > 10_000



def play(page, state_js: str, wanted: int = 4) -> set:
    """Press the first figure's Play; collect what ``state_js`` reads until ``wanted`` differ (or ~15 s)."""
    seen = {page.evaluate(state_js)}
    page.locator(".js-plotly-plot .updatemenu-button").first.click()  # ▶ Play
    for _ in range(100):
        page.wait_for_timeout(150)
        seen.add(page.evaluate(state_js))
        if len(seen) >= wanted:
            break
    return seen


def test_rank_page_play_walks_the_cosine_matrices_through_the_depths(server, page, artifacts):
    # Typed: the first request of this browser to the server is the page's own path (the launcher's
    # warm-up keeps Streamlit's "Page not found" dialog away from it).
    page.goto(f"{server}/rank-collapse")
    page.get_by_role("heading", name="Property 2 · Rank collapse").wait_for(timeout=LOAD_MS)
    assert page.get_by_text("Page not found").count() == 0
    page.wait_for_function(f"() => ({HEATMAP_JS})() !== null", timeout=LOAD_MS)
    page.screenshot(path=artifacts / "rank-collapse.png")
    seen = play(page, HEATMAP_JS)  # 8 frames of 450 ms: the matrix changes as the depth advances
    assert len(seen) >= 4, f"the heatmap showed only {len(seen)} different matrices while playing"


# Where the claim's chart starts, and the smallest tick and legend font of its plotly SVG.
CLAIM_CHART_JS = """() => {
  const chart = document.querySelector('.js-plotly-plot');
  if (!chart) return null;
  const size = (sel) => Array.from(chart.querySelectorAll(sel))
      .filter(el => el.textContent.trim())
      .map(el => parseFloat(getComputedStyle(el).fontSize));
  const ticks = size('.xtick text, .ytick text');
  const legend = size('.legendtext');
  return {top: chart.getBoundingClientRect().top, ticks: ticks.length ? Math.min(...ticks) : null,
          legend: legend.length ? Math.min(...legend) : null, legends: legend.length};
}"""


def test_lecture_mode_at_1920x1080_shows_every_claims_chart_on_the_first_screen_in_large_type(
        server, browser, artifacts):
    from ui.content.claims import CLAIMS

    page = browser.new_page(viewport={"width": 1920, "height": 1080})
    try:
        page.goto(f"{server}/paper-claims?lecture=1")
        sidebar = page.get_by_test_id("stSidebar")
        for k, claim in enumerate(CLAIMS, start=1):
            page.get_by_role("heading", name=f"{k}. {claim.title}").wait_for(timeout=LOAD_MS)
            page.get_by_text("Verdict:").wait_for(timeout=LOAD_MS)  # drawn after the chart
            page.wait_for_function(f"() => {{ const c = ({CLAIM_CHART_JS})(); return c && c.ticks; }}",
                                   timeout=LOAD_MS)
            page.wait_for_timeout(300)  # the chart's own layout pass
            found = page.evaluate(CLAIM_CHART_JS)
            assert found["top"] < 1080 * 0.5, f"claim {k}: the chart starts at {found['top']:.0f} px"
            assert found["ticks"] >= 18, f"claim {k}: tick labels at {found['ticks']} px"
            legend = found["legend"]
            assert legend is None or legend >= 18, f"claim {k}: legend at {legend} px"
            if k == 1:
                page.screenshot(path=artifacts / "lecture-1920.png")
            if k < len(CLAIMS):
                sidebar.get_by_role("button", name="Next").click()
    finally:
        page.close()


# Every tick mark and grid line of every chart against every tick label's box, in the page's pixels: the
# pairs that meet, as '"label" crossed by <class> at (x, y)'. Nothing drawn (an empty path) is left out.
CROSSINGS_JS = """() => {
  const hit = (a, b) => a.left < b.right && a.right > b.left && a.top < b.bottom && a.bottom > b.top;
  const crossing = [], counts = {labels: 0, lines: 0};
  for (const chart of document.querySelectorAll('.js-plotly-plot')) {
    const labels = [...chart.querySelectorAll('g.xtick text, g.ytick text')]
      .filter(t => t.textContent.trim()).map(t => [t.textContent, t.getBoundingClientRect()]);
    const lines = [...chart.querySelectorAll('path.xtick, path.ytick, path.xgrid, path.ygrid')]
      .map(p => [p.getAttribute('class'), p.getBoundingClientRect()])
      .filter(([, r]) => r.width > 0 || r.height > 0);
    counts.labels += labels.length; counts.lines += lines.length;
    for (const [cls, r] of lines)
      for (const [text, b] of labels)
        if (hit(r, b)) crossing.push(`"${text}" crossed by ${cls} at (${r.x.toFixed(0)}, ${r.y.toFixed(0)})`);
  }
  return {crossing, counts};
}"""
# Whether a chart on the page has a log axis and has drawn its tick labels.
LOG_AXIS_DRAWN_JS = """() => [...document.querySelectorAll('.js-plotly-plot')].some(c => c._fullLayout
  && Object.keys(c._fullLayout).some(k => /^[xy]axis/.test(k) && c._fullLayout[k].type === 'log')
  && c.querySelector('g.ytick text'))"""


@pytest.mark.parametrize("path, width, height", [
    ("variance-growth", 1440, 900),
    ("variance-growth?lecture=1", 1920, 1080),  # lecture type: larger labels, the same tick lengths
    ("paper-claims?lecture=1&claim=1", 1920, 1080),  # claim 2: four decades of variance
])
def test_no_tick_or_grid_line_crosses_a_label_of_a_log_axis(server, browser, artifacts, path, width, height):
    page = browser.new_page(viewport={"width": width, "height": height})
    try:
        page.goto(f"{server}/{path}")
        page.wait_for_function(LOG_AXIS_DRAWN_JS, timeout=LOAD_MS)
        _settled(page)
        page.wait_for_timeout(500)  # the chart's own layout pass
        found = page.evaluate(CROSSINGS_JS)
        name = re.sub(r"\W+", "-", path)
        page.screenshot(path=artifacts / f"log-axis-{name}.png")
        assert found["counts"]["labels"] and found["counts"]["lines"], found["counts"]
        assert not found["crossing"], f"{path} at {width}x{height}: {found['crossing'][:5]}"
    finally:
        page.close()


def test_switching_the_language_back_and_forth_keeps_every_choice(server, page):
    """Choice widgets send back the label they showed: after a switch the labels differ, and the
    language control's callback must keep the values (a lost one showed as an error, or dropped)."""
    sidebar = open_variance_page(page, server)
    sidebar.get_by_text("한국어", exact=True).click()
    page.get_by_role("heading", name="속성 1 · 깊이에 따른 분산 증가").wait_for(timeout=REDRAW_MS)
    wait_for_names(page, {"BatchNorm", "GroupNorm (G=4)", "정규화 없음"})
    sidebar.get_by_text("English", exact=True).click()
    page.get_by_role("heading", name="Property 1 · Variance growth with depth").wait_for(timeout=REDRAW_MS)
    wait_for_names(page, {"BatchNorm", "GroupNorm (G=4)", "No normalization"})
    assert page.locator("[data-testid='stAlertContentError'], [data-testid='stException']").count() == 0
    assert "net=" not in page.url, page.url  # the network kept its choice, the default (not its label)


def test_korean_lecture_mode_steps_through_the_claims_in_korean(server, browser, artifacts):
    """A Korean browser (no lang= in the link) gets the Korean dashboard; lecture mode steps through
    every claim with its chart, in Korean, with no English sentence in the main view."""
    from test_i18n import english_words

    from ui.content.claims import CLAIMS
    from ui.state import i18n
    from ui.state.i18n import _

    with i18n.use("ko"):
        titles = [_(claim.title) for claim in CLAIMS]
        verdict, forward = _("**Verdict: {label}.** {text}").split("{label}")[0].strip("* "), _("Next")
    context = browser.new_context(viewport={"width": 1920, "height": 1080}, locale="ko-KR")
    page = context.new_page()
    try:
        page.goto(f"{server}/paper-claims?lecture=1")
        sidebar = page.get_by_test_id("stSidebar")
        for k, title in enumerate(titles, start=1):
            page.get_by_role("heading", name=f"{k}. {title}").wait_for(timeout=LOAD_MS)
            page.get_by_text(verdict).first.wait_for(timeout=LOAD_MS)  # drawn after the chart
            page.wait_for_function(f"() => {{ const c = ({CLAIM_CHART_JS})(); return c && c.ticks; }}",
                                   timeout=LOAD_MS)
            page.wait_for_timeout(300)
            main = page.get_by_test_id("stMain").inner_text()
            assert re.search(r"[\uac00-\ud7a3]", main)
            sentences = [line for line in main.splitlines() if len(english_words(line)) >= 3]
            assert not sentences, f"claim {k}: English left in {sentences[:3]}"
            page.screenshot(path=artifacts / f"lecture-ko-{k}.png")
            assert (artifacts / f"lecture-ko-{k}.png").stat().st_size > 10_000
            if k < len(titles):
                sidebar.get_by_role("button", name=forward).click()
    finally:
        context.close()


# ---------------------------------------------------------------------------------------------
# A lecture hall: a second visitor on the first one's link, links as plain text, no outside requests

TRAIN_MS = 540_000  # the training page's first study, cold, on a busy 2-core machine
ERROR_BOX = "[data-testid='stException']"
# Every page by its path, with small sizes so a cold page answers quickly.
SMALL = "norms=batchnorm,groupnorm&depth=2&width=8"
PATHS = {"": "Normalization at initialization", "variance-growth": "Property 1",
         "rank-collapse": "Property 2", "gradient-explosion": "Property 3", "group-size": "The group-size",
         "paper-claims": "The paper's claims", "training-speed": "Training speed"}


def _settled(page, timeout: int = LOAD_MS) -> None:
    """Wait until the page drew a chart or its own message, and no script is running."""
    page.locator(".js-plotly-plot .main-svg, [data-testid='stAlertContentError']").first.wait_for(
        timeout=timeout)
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')",
                           timeout=timeout)


def _opened(browser, url: str, requests: list | None = None):
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    if requests is not None:
        page.on("request", lambda r: requests.append(r.url))
    page.goto(url)
    return context, page


@pytest.mark.parametrize("path", [
    "group-size",
    pytest.param("training-speed", marks=pytest.mark.slow),  # its first study trains ten networks
])
def test_a_second_visitor_opens_the_first_ones_share_link(server, browser, path, artifacts):
    first, page = _opened(browser, f"{server}/{path}?{SMALL}")
    try:
        page.get_by_role("heading", name=PATHS[path]).wait_for(timeout=LOAD_MS)
        page.locator(".js-plotly-plot .main-svg").first.wait_for(timeout=TRAIN_MS)
        wait_for_chart(page)
        sidebar = page.get_by_test_id("stSidebar")
        sidebar.get_by_text("Share this view").click()
        shared = sidebar.get_by_test_id("stCode").inner_text().strip()
        assert shared.startswith(f"{server}/{path}?"), shared
    finally:
        first.close()
    second, page = _opened(browser, shared)
    try:
        page.get_by_role("heading", name=PATHS[path]).wait_for(timeout=LOAD_MS)
        wait_for_chart(page)
        assert page.locator(ERROR_BOX).count() == 0
        assert page.get_by_text("This app has encountered an error").count() == 0
        page.screenshot(path=artifacts / f"second-visitor-{path}.png")
    finally:
        second.close()


def test_a_session_through_every_page_requests_only_the_server(server, browser):
    requests: list[str] = []
    context, page = _opened(browser, f"{server}/?{SMALL}", requests)
    try:
        _settled(page)
        for path, heading in PATHS.items():
            if path == "training-speed":
                continue  # its first study trains ten networks; its page shell is checked below
            page.goto(f"{server}/{path}?{SMALL}")
            page.get_by_role("heading", name=heading).first.wait_for(timeout=LOAD_MS)
            _settled(page)
            assert page.get_by_text("Page not found").count() == 0, path
        page.goto(f"{server}/training-speed")
        page.get_by_role("heading", name=PATHS["training-speed"]).wait_for(timeout=LOAD_MS)
        icon = page.evaluate("() => document.querySelector('link[rel*=icon]')?.href")
        assert icon and icon.startswith(server), icon  # the favicon is served by the app itself
    finally:
        context.close()
    outside = sorted({url for url in requests if not url.startswith(("http://127.0.0.1:", "data:", "blob:"))})
    assert requests and outside == []


HOSTILE = ["![x]({bait}/v.png)", "[Log in]({bait}/phish)", ":red[**Server compromised**]",
           "<img src={bait}/i.png onerror=alert(1)>"]


@pytest.mark.parametrize("where", ["value", "key", "page"])
def test_markup_in_a_link_renders_as_plain_text_and_fetches_nothing(server, browser, where):
    from urllib.parse import quote

    bait = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    payloads = [p.format(bait=bait) for p in HOSTILE]
    if where == "value":
        keys = ("net", "norms", "depth", "width")
        query = "&".join(f"{k}={quote(v)}" for k, v in zip(keys, payloads, strict=True))
    elif where == "key":
        query = "&".join(f"{quote(v)}=1" for v in payloads)
    else:
        query = f"page={quote(payloads[0])}"
    requests: list[str] = []
    context, page = _opened(browser, f"{server}/?{query}", requests)
    try:
        _settled(page)
        page.get_by_test_id("stSidebar").get_by_text("fell back to defaults").wait_for(timeout=LOAD_MS)
        html = page.content()
        assert page.locator(f"img[src^='{bait}']").count() == 0
        assert page.locator(f"a[href^='{bait}']").count() == 0
        assert "Server compromised" not in page.locator("strong, b, [class*='red']").all_inner_texts()
        assert "onerror" not in html.replace("onerror=alert", "") or page.locator("img[onerror]").count() == 0
        shown = page.get_by_test_id("stSidebar").get_by_test_id("stText").all_inner_texts()
        assert any(bait[:20] in text or "Log in" in text or "red[" in text for text in shown), shown
    finally:
        context.close()
    assert not [url for url in requests if url.startswith(bait)]


def test_a_huge_token_in_a_link_leaves_the_tab_responsive(server, browser):
    token = "A" * 16_000
    context, page = _opened(browser, f"{server}/?net={token}&{'B' * 16_000}=1")
    try:
        _settled(page)
        notice = "\n".join(page.get_by_test_id("stSidebar").get_by_test_id("stText").all_inner_texts())
        assert "A" * 50 not in notice and len(notice) < 400, notice[:400]
        assert page.evaluate("() => 1 + 1") == 2  # the page still answers
    finally:
        context.close()


# y of the first chart's first mean line, as text: a fingerprint that changes when the data redraws.
FIRST_LINE_Y_JS = """() => {
  const chart = document.querySelector('.js-plotly-plot');
  const traces = (chart && chart._fullData) || [];
  const trace = traces.find(t => t.mode === 'lines+markers' && t.y && t.y.length);
  return trace ? Array.from(trace.y).map(v => Number(v).toPrecision(6)).join(',') : null;
}"""


def _write_image(path: Path, seed: int) -> Path:
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (48, 40, 3), dtype=np.uint8)
    pixels[:, :20] //= 3  # a darker half: structure that a batch of noise would not have
    Image.fromarray(pixels).save(path)
    return path


def test_two_uploaded_images_become_the_batch_and_the_chart_redraws(server, page, artifacts, tmp_path):
    sidebar = open_variance_page(page, server)
    _settled(page)
    before = page.evaluate(FIRST_LINE_Y_JS)
    sidebar.get_by_text("Inputs, batch and seeds").click()
    files = [_write_image(tmp_path / "lecture hall.png", 1), _write_image(tmp_path / "audience.png", 2)]
    sidebar.locator("input[type=file]").set_input_files([str(f) for f in files])
    sidebar.get_by_text("Probe batch: your 2 uploaded images").wait_for(timeout=REDRAW_MS)
    page.wait_for_function(f"(before) => {{ const y = ({FIRST_LINE_Y_JS})(); return y && y !== before; }}",
                           arg=before, timeout=REDRAW_MS)
    assert "lecture hall.png" in sidebar.get_by_text("Probe batch: your 2 uploaded images").inner_text()
    page.screenshot(path=artifacts / "variance-uploaded.png")


def test_training_dynamics_play_steps_the_figure_through_the_probed_steps(server, page, artifacts):
    page.goto(server)
    wait_for_chart(page)
    page.get_by_test_id("stSidebar").get_by_role("link", name="Training dynamics").click()
    page.get_by_role("heading", name="Training dynamics: do the properties at init last?").wait_for(
        timeout=LOAD_MS)
    wait_for_chart(page)
    _settled(page)
    page.screenshot(path=artifacts / "training-dynamics.png")
    seen = play(page, FIRST_LINE_Y_JS)  # 7 frames of 450 ms: the variance per layer changes with training
    assert len(seen) >= 4, f"the figure showed only {len(seen)} different steps while playing"
    active = page.evaluate("() => document.querySelector('.js-plotly-plot')._fullLayout.sliders[0].active")
    assert active >= 3, f"the step slider stands at frame {active} after playing"


# ---------------------------------------------------------------------------------------------
# Korean on a machine without a Hangul font (a projector PC, a fresh Linux box)

# Fontconfig as the system's, less every font that covers Korean: Chromium then has no Hangul of its own.
NO_HANGUL_FONTCONFIG = """<?xml version="1.0"?>
<!DOCTYPE fontconfig SYSTEM "urn:fontconfig:fonts.dtd">
<fontconfig>
  <include ignore_missing="yes">/etc/fonts/fonts.conf</include>
  <selectfont><rejectfont><pattern><patelt name="lang"><string>ko</string></patelt></pattern></rejectfont>
  </selectfont>
</fontconfig>
"""
# The page's web font faces of ``family`` once every font the page uses has loaded, and the font family
# that the page's heading and the first chart's axis title are drawn in.
FONTS_JS = """async (family) => {
  await document.fonts.ready;
  const faces = [...document.fonts].filter(f => f.family.replace(/"/g, '') === family)
    .map(f => ({weight: f.weight, status: f.status}));
  const axis = document.querySelector('.js-plotly-plot .ytitle, .js-plotly-plot .xtitle');
  return {faces, heading: getComputedStyle(document.querySelector('h1')).fontFamily,
          figure: axis && getComputedStyle(axis).fontFamily};
}"""


def test_korean_renders_in_the_served_web_font_in_a_browser_without_a_hangul_font(
        server, browser, chromium_path, artifacts, tmp_path):
    from ui.figures.style import HANGUL_WEB_FONT

    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11, as in the image
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    for face in config["theme"]["fontFaces"]:
        with urllib.request.urlopen(f"{server}/{face['url']}", timeout=30) as response:
            assert response.status == 200 and response.read(4) == b"wOF2", face["url"]
    fontconfig = tmp_path / "fonts.conf"
    fontconfig.write_text(NO_HANGUL_FONTCONFIG)
    env = {**os.environ, "FONTCONFIG_FILE": str(fontconfig)}
    if shutil.which("fc-list"):  # the simulation holds: no system font left that covers Korean
        left = subprocess.run(["fc-list", ":lang=ko", "file"], env=env, capture_output=True, text=True)
        assert not left.stdout.strip(), left.stdout
    bare = browser.browser_type.launch(executable_path=chromium_path, args=CHROMIUM_ARGS, env=env)
    try:
        page = bare.new_page(viewport={"width": 1440, "height": 900})
        page.goto(f"{server}/variance-growth?lang=ko")
        page.get_by_role("heading", name="속성 1 · 깊이에 따른 분산 증가").wait_for(timeout=LOAD_MS)
        wait_for_chart(page)
        _settled(page)
        fonts = page.evaluate(FONTS_JS, HANGUL_WEB_FONT)
        page.screenshot(path=artifacts / "korean-without-a-system-hangul-font.png")
        assert sorted(face["weight"] for face in fonts["faces"]) == ["400", "700"], fonts
        assert all(face["status"] == "loaded" for face in fonts["faces"]), fonts  # used by the page
        assert fonts["heading"].startswith(HANGUL_WEB_FONT), fonts
        assert HANGUL_WEB_FONT in fonts["figure"], fonts
    finally:
        bare.close()


# The Placement page with two placements: five charts of transformers, cold, on a busy machine.
PLACEMENT_LINK = "norm-placement?pl_placements=post,pre"


def test_the_placement_page_as_a_first_and_a_second_visitor(server, browser, artifacts):
    first, page = _opened(browser, f"{server}/{PLACEMENT_LINK}")
    try:
        page.get_by_role("heading", name="Placement · where the norm sits").wait_for(timeout=LOAD_MS)
        page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot .main-svg').length >= 5",
                               timeout=LOAD_MS)
        _settled(page)
        assert page.get_by_text("LayerNorm · pre").first.is_visible()
        sidebar = page.get_by_test_id("stSidebar")
        sidebar.get_by_text("Share this view").click()
        shared = sidebar.get_by_test_id("stCode").inner_text().strip()
        assert shared.startswith(f"{server}/norm-placement?") and "pl_placements=post%2Cpre" in shared, shared
        page.screenshot(path=artifacts / "first-visitor-placement.png")
    finally:
        first.close()
    second, page = _opened(browser, shared)
    try:
        page.get_by_role("heading", name="Placement · where the norm sits").wait_for(timeout=LOAD_MS)
        page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot .main-svg').length >= 5",
                               timeout=LOAD_MS)
        wait_for_chart(page)
        assert page.get_by_text("LayerNorm · post").first.is_visible()
        assert page.locator(ERROR_BOX).count() == 0
        assert page.get_by_text("This app has encountered an error").count() == 0
        page.screenshot(path=artifacts / "second-visitor-placement.png")
    finally:
        second.close()
