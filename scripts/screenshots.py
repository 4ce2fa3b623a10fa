"""The README's screenshots: the dashboard's new views at 1440×900 and lecture mode at 1920×1080, in
English and (a browser set to Korean) in Korean, whose Hangul comes from the web font the app serves.

Starts ``streamlit run app.py`` on a free port, drives Debian's Chromium (no browser download) and writes
PNGs into docs/. Run:  .venv/bin/python scripts/screenshots.py
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from ui.server import CHROMIUM_ARGS, free_port, start_server, stop_server, wait_healthy  # noqa: E402

LOAD_MS = 300_000


def _charts(page, count: int) -> None:
    page.wait_for_function(f"() => document.querySelectorAll('.js-plotly-plot .main-svg').length >= {count}",
                           timeout=LOAD_MS)
    page.wait_for_timeout(1500)  # layout settles


def _chart(page, index: int):
    """The Streamlit element holding the page's ``index``-th plotly chart."""
    return page.locator("[data-testid='stPlotlyChart']").nth(index)


def placement(browser, url: str, docs: Path) -> None:
    """The Placement page at 1440 wide, tall enough for its five panels (docs/placement.png; Streamlit
    scrolls inside its main block, so a full-page capture would stop at the window)."""
    page = browser.new_page(viewport={"width": 1440, "height": 2100})
    page.goto(f"{url}/norm-placement")
    _charts(page, 5)
    page.screenshot(path=docs / "placement.png")
    page.close()


def main() -> int:
    """Every screenshot; ``screenshots.py placement`` takes only the Placement page's."""
    only_placement = sys.argv[1:] == ["placement"]
    docs = ROOT / "docs"
    port = free_port()
    proc = start_server(port, Path(tempfile.mkdtemp()) / "streamlit.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
            placement(browser, url, docs)
            if only_placement:
                browser.close()
                return 0
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.goto(f"{url}/rank-collapse")
            _charts(page, 5)
            page.screenshot(path=docs / "rank-collapse.png")
            _chart(page, 2).scroll_into_view_if_needed()
            page.wait_for_timeout(500)
            _chart(page, 2).screenshot(path=docs / "distributions.png")
            _chart(page, 3).scroll_into_view_if_needed()
            page.wait_for_timeout(500)
            bound = page.locator("[data-testid='stHorizontalBlock']").filter(
                has=page.locator("[data-testid='stPlotlyChart']")).first
            bound.screenshot(path=docs / "rank-bound.png")
            page.goto(f"{url}/variance-growth")
            _charts(page, 1)
            page.screenshot(path=docs / "dashboard.png")
            page.goto(f"{url}/")
            _charts(page, 1)
            page.screenshot(path=docs / "overview.png")
            page.close()
            page = browser.new_page(viewport={"width": 1920, "height": 1080})
            page.goto(f"{url}/paper-claims?lecture=1")
            _charts(page, 1)
            page.screenshot(path=docs / "lecture.png")
            page.goto(f"{url}/rank-collapse?lecture=1")
            _charts(page, 3)
            page.screenshot(path=docs / "lecture-rank.png")
            page.close()
            korean = browser.new_context(viewport={"width": 1920, "height": 1080}, locale="ko-KR")
            page = korean.new_page()  # the browser's language opens the Korean dashboard
            page.goto(f"{url}/paper-claims?lecture=1&claim=1")
            _charts(page, 1)
            page.screenshot(path=docs / "lecture-ko.png")
            korean.close()
            browser.close()
    finally:
        stop_server(proc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
