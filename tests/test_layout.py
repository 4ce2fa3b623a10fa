"""Layout in a real browser: every page, in English and Korean, at 1440×900 and in lecture mode at 1920×1080.

A figure's text boxes (titles, tick labels, legend entries, notes, slider labels) never overlap one another
nor leave the figure; no tick mark or grid line crosses a label; every legend entry points at a trace drawn
inside its axes; no note or legend covers a data point; no widget label, button, pill or tag is cut short
(an ellipsis, a box narrower than its text, or a button running past its column). Lecture mode enlarges
type and keeps each claim (title, statement, chart, verdict) on one 1920×1080 screen. Each failure names
the page, the figure and the text.

The default run visits every page once in English at 1440×900 and once in Korean in lecture mode, every
claim in lecture mode, and the sidebar with the longest normalizer names; ``pytest -m slow`` adds the
rest of the matrix (each language in each mode) and the training-speed page, whose first study trains
ten networks. Debian's chromium drives them (skipped without it; no browser is downloaded).
"""

from __future__ import annotations

import os

import pytest

from normlab.core.catalog import NORM_INFO
from ui.content.claims import CLAIMS
from ui.server import free_port, start_server, stop_server, wait_healthy
from ui.state.nav import PAGES

pytestmark = pytest.mark.browser

LOAD_MS = 540_000  # a page's first, cold visit on a busy 2-core machine (the training study: minutes)
SCREENS = {"desk": (1440, 900), "lecture": (1920, 1080)}
LANGS = ("en", "ko")
TRAINING = "training-speed"  # its first study trains ten networks: the full matrix only

# The layout faults of the page as {figure, check, text}: figure is "figure k" with its title or the
# heading above it, or "page" for widgets.
LAYOUT_JS = r"""() => {
  // Every figure of the page: its name (title, else its index) and the layout faults found in it.
  const faults = [];
  const inset = (r, d) => ({left: r.left + d, right: r.right - d, top: r.top + d, bottom: r.bottom - d});
  const hit = (a, b) => a.left < b.right && a.right > b.left && a.top < b.bottom && a.bottom > b.top;
  const inside = (p, r) => p.x > r.left && p.x < r.right && p.y > r.top && p.y < r.bottom;
  const words = el => (el.textContent || '').trim().replace(/\s+/g, ' ');
  // Drawn on the screen: laid out, with words, and not inside a closed expander.
  const onScreen = el => el.offsetParent && words(el) && !el.closest('details:not([open])');
  const TITLES = '.gtitle, .xtitle, .ytitle, g.annotation-text-g';
  const charts = [...document.querySelectorAll('.js-plotly-plot')];
  charts.forEach((chart, index) => {
    const full = chart._fullLayout;
    if (!full) return;
    const title = chart.querySelector('.gtitle');
    const heading = [...document.querySelectorAll('h1, h2, h3')].filter(
      h => h.compareDocumentPosition(chart) & Node.DOCUMENT_POSITION_FOLLOWING).pop();
    const name = `figure ${index + 1}` + (title && words(title) ? ` "${words(title)}"` :
      heading ? ` under "${words(heading)}"` : '');
    const add = (check, text) => faults.push({figure: name, check, text});
    const svg = chart.querySelector('.main-svg').getBoundingClientRect();
    // Text boxes: titles, tick labels, legend entries, notes, slider labels (one box per element drawn).
    const texts = [...chart.querySelectorAll(
        '.gtitle, .xtitle, .ytitle, g.xtick text, g.ytick text, g.annotation-text-g, .legendtext, ' +
        '.slider-label, .slider-current-value, .updatemenu-item-text, .cbtitle, .cbaxis text')]
      .filter(t => words(t) && getComputedStyle(t).display !== 'none' && t.getAttribute('opacity') !== '0')
      .map(t => ({el: t, text: words(t), box: t.getBoundingClientRect()}))
      .filter(t => t.box.width > 0 && t.box.height > 0);
    for (const t of texts) {  // cut by the figure's own edge
      if (t.box.left < svg.left - 1 || t.box.right > svg.right + 1 || t.box.top < svg.top - 1 ||
          t.box.bottom > svg.bottom + 1) add('clipped', t.text);
    }
    for (let i = 0; i < texts.length; i++)
      for (let j = i + 1; j < texts.length; j++) {
        const a = texts[i], b = texts[j];
        if (a.el.contains(b.el) || b.el.contains(a.el)) continue;
        const pad = (a.el.matches(TITLES) || b.el.matches(TITLES)) ? 2 : 0;  // titles keep 2 px clear
        if (hit(inset(a.box, -pad), b.box)) add('overlap', `"${a.text}" and "${b.text}"`);
      }
    // Tick marks and grid lines against the labels (annotations drawn on an opaque box mask the lines).
    const lines = [...chart.querySelectorAll('path.xtick, path.ytick, path.xgrid, path.ygrid')]
      .map(p => ({cls: p.getAttribute('class'), box: p.getBoundingClientRect()}))
      .filter(l => l.box.width > 0 || l.box.height > 0);
    for (const t of texts) {
      if (t.el.matches('g.annotation-text-g')) continue;
      const line = lines.find(l => hit(l.box, inset(t.box, 0.5)));
      if (line) add('crossed', `"${t.text}" by ${line.cls}`);
    }
    // Data points in page pixels, per visible trace.
    const points = [];
    const legendMisses = [];
    for (const trace of chart._fullData || []) {
      const drawn = ['scatter', 'scattergl', 'bar'].includes(trace.type);
      if (trace.visible !== true || !trace.x || !trace.y || !drawn) continue;
      const xa = full[(trace.xaxis || 'x').replace('x', 'xaxis')];
      const ya = full[(trace.yaxis || 'y').replace('y', 'yaxis')];
      if (!xa || !ya) continue;
      let shown = false;
      const n = Math.min(trace.x.length, trace.y.length);
      for (let k = 0; k < n; k++) {
        const xv = trace.x[k], yv = trace.y[k];
        if (xv === null || yv === null || yv === undefined) continue;
        if (typeof yv === 'number' && !isFinite(yv)) continue;
        const px = xa._offset + xa.c2p(xa.d2c(xv)), py = ya._offset + ya.c2p(ya.d2c(yv));
        const xin = px >= xa._offset - 0.5 && px <= xa._offset + xa._length + 0.5;
        let yin = py >= ya._offset - 0.5 && py <= ya._offset + ya._length + 0.5;
        if (trace.type === 'bar' && !yin) {  // a bar shows where any part of it is in range
          const base = ya._offset + ya.c2p(ya.d2c(ya.type === 'log' ? ya.range[0] : 0));
          yin = Math.max(base, py) >= ya._offset && Math.min(base, py) <= ya._offset + ya._length;
        }
        if (xin && yin) {
          shown = true;
          if (trace.mode === undefined || /markers|lines/.test(trace.mode) || trace.type === 'bar')
            points.push({x: px + svg.left, y: py + svg.top, trace: trace.name});
        }
      }
      if (trace.showlegend && !shown) legendMisses.push(trace.name);
    }
    for (const missing of legendMisses) add('legend without a visible trace', missing);
    // Notes (annotations over a plot area, and the legend) never cover a data point.
    const notes = texts.filter(t => t.el.matches('g.annotation-text-g'));
    const legend = chart.querySelector('.legend');
    for (const note of notes) {
      const hitPoint = points.find(p => inside(p, inset(note.box, 1)));
      if (hitPoint) add('note covers data', `"${note.text}" covers a point of ${hitPoint.trace}`);
    }
    if (legend) {
      const box = legend.getBoundingClientRect();
      const hitPoint = points.find(p => inside(p, inset(box, 1)));
      if (hitPoint) add('note covers data', `the legend covers a point of ${hitPoint.trace}`);
    }
  });
  // Widget labels, pills, tags and slider values cut by their own box.
  const cut = [];
  const widgets = document.querySelectorAll(
    '[data-testid="stWidgetLabel"] p, [data-testid="stWidgetLabel"] div, button p, ' +
    '[data-tag] span[title], [data-testid="stSliderThumbValue"], [data-testid="stSliderTickBarMin"], ' +
    '[data-testid="stSliderTickBarMax"], [data-baseweb="select"] div[value], ' +
    '[data-testid="stCaptionContainer"], [data-testid="stMetricValue"] div, ' +
    '[data-testid="stMetricLabel"] p, [data-testid="stMarkdownContainer"] p');
  for (const el of widgets) {
    if (!onScreen(el)) continue;
    if (el.scrollWidth > el.clientWidth + 1 || el.scrollHeight > el.clientHeight + 1)
      cut.push({figure: 'page', check: 'cut', text: words(el)});
  }
  // Text that the browser shortens with an ellipsis.
  for (const el of document.querySelectorAll('[data-testid="stSidebar"] *, [data-testid="stMain"] *')) {
    if (!onScreen(el) || !el.childNodes.length) continue;
    if (getComputedStyle(el).textOverflow === 'ellipsis' && el.scrollWidth > el.clientWidth + 1)
      cut.push({figure: 'page', check: 'cut', text: words(el)});
  }
  // Buttons, pills and tags that run past the element (or column) that holds them.
  for (const el of document.querySelectorAll('button, [data-tag]')) {
    if (!onScreen(el)) continue;
    const holder = el.closest('[data-testid="stElementContainer"]');
    if (!holder) continue;
    const r = el.getBoundingClientRect(), h = holder.getBoundingClientRect();
    if (r.right > h.right + 1 || r.left < h.left - 1)
      cut.push({figure: 'page', check: 'cut', text: words(el)});
  }
  return faults.concat(cut);
}
"""


def _views():
    """(path, language, screen) visits: the default subset and, marked slow, the rest of the matrix."""
    out = []
    for spec in PAGES:
        path = spec.url_path
        for lang in LANGS:
            for screen in SCREENS:
                default = (lang, screen) in (("en", "desk"), ("ko", "lecture")) and path != TRAINING
                marks = () if default else (pytest.mark.slow,)
                out.append(pytest.param(path, lang, screen, marks=marks, id=f"{path}-{lang}-{screen}"))
    return out


@pytest.fixture(scope="module")
def server(chromium_path, results_root, tmp_path_factory):
    """The app on a free port; the Sweep explorer reads the small stored sweep and study."""
    port = free_port()
    env = {**os.environ, "NORMLAB_EXPLORER_STORE": str(results_root)}
    proc = start_server(port, tmp_path_factory.mktemp("layout") / "streamlit.log", env=env)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_server(proc)


@pytest.fixture(scope="module")
def screens(browser):
    """One tab per screen size, reused across visits (a visit is a fresh load of its URL)."""
    tabs = {}
    try:
        yield lambda screen: tabs.setdefault(screen, browser.new_page(
            viewport=dict(zip(("width", "height"), SCREENS[screen], strict=True))))
    finally:
        for tab in tabs.values():
            tab.close()


def _visit(page, url: str) -> None:
    """Open ``url`` and wait until its script finished, its charts are drawn and the fonts are loaded."""
    page.goto(url)
    page.locator(".js-plotly-plot .main-svg, [data-testid='stAlertContentError']").first.wait_for(
        timeout=LOAD_MS)
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')",
                           timeout=LOAD_MS)
    page.evaluate("async () => { await document.fonts.ready; }")
    page.wait_for_timeout(800)  # plotly's own layout pass after the last redraw


def _faults(page, where: str) -> list[str]:
    return [f"{where}: {f['figure']}: {f['check']}: {f['text']}" for f in page.evaluate(LAYOUT_JS)]


def _query(lang: str, screen: str, extra: str = "") -> str:
    return f"lang={lang}" + ("&lecture=1" if screen == "lecture" else "") + extra


@pytest.mark.parametrize("path, lang, screen", _views())
def test_no_label_of_a_page_is_cut_crossed_or_covering(server, screens, path, lang, screen):
    page = screens(screen)
    _visit(page, f"{server}/{path}?{_query(lang, screen)}")
    faults = _faults(page, f"/{path} ({lang}, {'x'.join(map(str, SCREENS[screen]))})")
    assert not faults, "\n".join(faults)


def test_the_longest_normalizer_names_fit_their_pills(server, screens):
    """The sidebar's tags and the legends with every long normalizer name."""
    page = screens("desk")
    _visit(page, f"{server}/variance-growth?norms=frn,sws,evonorm_s0,weightnorm&net=cnn&depth=4&width=8")
    faults = _faults(page, "/variance-growth (en, 1440x900, long names)")
    assert not faults, "\n".join(faults)


# --- Lecture mode: larger type, and each claim on one screen ----------------------------------------------

# Where the shown claim's title, statement, chart and verdict are on the screen (None for a part not found).
CLAIM_PARTS_JS = """(statement) => {
  const box = el => el ? (({top, bottom, left, right}) => ({top, bottom, left, right}))(
    el.getBoundingClientRect()) : null;
  const main = document.querySelector('[data-testid="stMain"]');
  const title = [...main.querySelectorAll('h3')].find(h => /^\\d+\\. /.test(h.textContent.trim()));
  const said = [...main.querySelectorAll('[data-testid="stMarkdownContainer"]')]
    .find(m => m.textContent.trim().startsWith(statement));
  const verdict = [...main.querySelectorAll('[data-testid="stAlert"]')]
    .find(a => a.textContent.includes('Verdict:'));
  return {title: box(title), statement: box(said), chart: box(main.querySelector('.js-plotly-plot')),
          verdict: box(verdict), screen: window.innerHeight};
}"""


def _plain(markdown: str) -> str:
    """The first words of a markdown sentence as the page shows them (no emphasis marks)."""
    return markdown.replace("*", "").replace("`", "")[:40]


@pytest.mark.parametrize("index", range(len(CLAIMS)), ids=[f"claim-{k + 1}" for k in range(len(CLAIMS))])
def test_each_claim_fits_one_lecture_screen_with_its_statement_above_the_verdict(server, screens, index):
    page = screens("lecture")
    _visit(page, f"{server}/paper-claims?{_query('en', 'lecture', f'&claim={index}')}")
    where = f"/paper-claims claim {index + 1} (en, 1920x1080)"
    page.get_by_text("Verdict:").first.wait_for(timeout=LOAD_MS)
    parts = page.evaluate(CLAIM_PARTS_JS, _plain(CLAIMS[index].sentence))
    screen = parts.pop("screen")
    missing = [name for name, box in parts.items() if box is None]
    assert not missing, f"{where}: not shown: {missing}"
    below = [f"{name} ends at {box['bottom']:.0f} px" for name, box in parts.items()
             if box["bottom"] > screen]
    assert not below, f"{where}: below the fold of {screen} px: {below}"
    assert parts["statement"]["top"] < parts["verdict"]["bottom"], (
        f"{where}: the statement ({parts['statement']['top']:.0f} px) is under the verdict")
    faults = _faults(page, where)
    assert not faults, "\n".join(faults)


# Font sizes (px) of the Overview's kinds of text: its title, cards' numbers and labels, paragraphs.
SIZES_JS = """() => {
  const size = sel => { const el = document.querySelector(sel);
    return el ? parseFloat(getComputedStyle(el).fontSize) : null; };
  return {title: size('[data-testid="stMain"] h1'),
          number: size('[data-testid="stMetricValue"] p') || size('[data-testid="stMetricValue"] div'),
          label: size('[data-testid="stMetricLabel"] p'),
          text: size('[data-testid="stMain"] [data-testid="stMarkdownContainer"] p'),
          tick: size('.js-plotly-plot g.ytick text'), legend: size('.js-plotly-plot .legendtext')};
}"""


def test_lecture_mode_enlarges_every_kind_of_text_of_the_overview(server, screens):
    sizes = {}
    for screen in SCREENS:
        page = screens(screen)
        _visit(page, f"{server}/?{_query('en', screen)}")
        sizes[screen] = page.evaluate(SIZES_JS)
    desk, lecture = sizes["desk"], sizes["lecture"]
    assert all(desk.values()) and all(lecture.values()), sizes
    smaller = {kind: (desk[kind], lecture[kind]) for kind in desk if lecture[kind] < desk[kind]}
    assert not smaller, f"lecture mode shrinks (desk px, lecture px): {smaller}"
    assert lecture["number"] > desk["number"], sizes  # the headline numbers are what a room reads


TAGS_JS = "(n) => document.querySelectorAll('[data-testid=stSidebar] [data-tag]').length === n"


def _sidebar_tags(page) -> list[str]:
    return sorted(t.strip() for t in page.get_by_test_id("stSidebar").locator(
        "[data-tag] span[title]").all_inner_texts())


def test_lecture_mode_starts_at_claim_1_and_stops_at_both_ends(server, browser):
    """From the Overview's lecture link, Next opens claim 1 with its own setup in the sidebar at once;
    Previous is off at claim 1 and Next at the last claim (no wrap to the other end)."""
    page = browser.new_page(viewport={"width": 1920, "height": 1080})
    try:
        _visit(page, f"{server}/?lecture=1&lang=en")
        sidebar = page.get_by_test_id("stSidebar")
        sidebar.get_by_role("button", name="Next").click()
        page.get_by_role("heading", name=f"1. {CLAIMS[0].title}").wait_for(timeout=LOAD_MS)
        page.get_by_text("Verdict:").first.wait_for(timeout=LOAD_MS)
        wanted = sorted(NORM_INFO[n].label for n in CLAIMS[0].values["norms"])
        page.wait_for_function(TAGS_JS, arg=len(wanted), timeout=LOAD_MS)
        assert _sidebar_tags(page) == wanted
        assert sidebar.get_by_role("button", name="Previous").is_disabled()
        _visit(page, f"{server}/paper-claims?lecture=1&lang=en&claim={len(CLAIMS) - 1}")
        page.get_by_role("heading", name=f"{len(CLAIMS)}. {CLAIMS[-1].title}").wait_for(timeout=LOAD_MS)
        assert sidebar.get_by_role("button", name="Next").is_disabled()
        sidebar.get_by_role("button", name="Previous").click()
        page.get_by_role("heading", name=f"{len(CLAIMS) - 1}. {CLAIMS[-2].title}").wait_for(timeout=LOAD_MS)
    finally:
        page.close()
