"""The browser half of scripts/container_check.sh: a served dashboard's pages opened in Debian's Chromium.

    .venv/bin/python scripts/container_pages.py URL pages               # every page of ui.nav.PAGES draws
    .venv/bin/python scripts/container_pages.py URL claims              # the claims, with no queue status
    .venv/bin/python scripts/container_pages.py URL chart PATH          # a link draws its chart
    .venv/bin/python scripts/container_pages.py URL refusal PATH TEXT   # a link is refused, saying TEXT
    ... --what "the check's name"                                       # how the line names the check

Prints one tab-separated line per check, ``PASS|FAIL<TAB>what<TAB>detail``, for the shell script to
tally, and exits 1 if any failed. Knows nothing of containers: the shell script counts the result store's
records around these calls. Needs Playwright (requirements-dev.txt) and Debian's chromium; downloads no
browser.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: the repository root holds ui/
from ui.claims import CLAIMS  # noqa: E402
from ui.nav import PAGES  # noqa: E402
from ui.server import CHROMIUM_ARGS  # noqa: E402

TIMEOUT_MS = 120_000  # a page computing on a container's shared CPU; a warmed page takes a few seconds
CHART = ".js-plotly-plot .main-svg"
ERROR_ALERT = '[data-testid="stAlertContentError"]'  # its markdown holds the words; the alert also its icon's
ERRORS = f'[data-testid="stException"], {ERROR_ALERT}'
# Records every queue place or "computing" status the page shows (ui.views.wait_message), however briefly:
# the serving gate reports one only while something computes, never for a result read from the store.
WATCH_STATUS_JS = """() => {
  window.__statuses = [];
  new MutationObserver(() => {
    for (const alert of document.querySelectorAll('[data-testid="stAlertContentInfo"]')) {
      const text = alert.innerText.trim();
      if (/computing|queued/.test(text) && !window.__statuses.includes(text)) window.__statuses.push(text);
    }
  }).observe(document, {childList: true, subtree: true, characterData: true});
}"""
# Streamlit's "running" indicator: present in the toolbar while the page's script runs.
RUNNING = '[data-testid="stStatusWidget"]'


def say(ok: bool, what: str, detail: str) -> bool:
    print(f"{'PASS' if ok else 'FAIL'}\t{what}\t{detail}", flush=True)
    return ok


def settle(page) -> None:
    """Wait until the page's script has finished running (the status widget goes), at most ~30 s."""
    try:
        page.locator(RUNNING).first.wait_for(state="detached", timeout=30_000)
    except Exception:  # Playwright's TimeoutError: the checks below say what is on the page
        pass


def problems(page) -> str | None:
    """What went wrong on the page, in its own words; None when nothing did."""
    if page.get_by_text("Page not found").count():
        return "Streamlit's 'Page not found' dialog"
    errors = page.locator(ERRORS)
    if errors.count():
        return f"an error on the page: {errors.first.inner_text()[:160]!r}"
    return None


def open_page(page, url: str) -> float:
    """Go to ``url``; the seconds until its heading and first chart are drawn."""
    start = time.monotonic()
    page.goto(url)
    page.locator("h1").first.wait_for(timeout=TIMEOUT_MS)
    page.locator(CHART).first.wait_for(timeout=TIMEOUT_MS)
    return time.monotonic() - start


def check_pages(browser, base: str) -> bool:
    ok = True
    for spec in PAGES:
        path = "/" if spec.default else f"/{spec.url_path}"
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        try:
            seconds = open_page(page, base + path)
            settle(page)
            wrong = problems(page)
            charts = page.locator(CHART).count()
            heading = page.locator("h1").first.inner_text().strip()
            ok &= say(wrong is None, f"page {path} draws",
                      wrong or f"{seconds:.1f} s, '{heading[:48]}', {charts} chart(s)")
        except Exception as err:  # a timeout: this page never drew
            ok &= say(False, f"page {path} draws", f"{type(err).__name__}: {str(err).splitlines()[0][:160]}")
        finally:
            page.close()
    return ok


def check_claims(browser, base: str) -> bool:
    """Every claim's verdict and chart on the paper-claims page, watching for any computing status."""
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    page.add_init_script(f"({WATCH_STATUS_JS})()")
    what = "warmed claims open without computing"
    try:
        start = time.monotonic()
        page.goto(f"{base}/paper-claims")
        page.wait_for_function(
            f"() => document.querySelectorAll('{CHART}').length >= {len(CLAIMS)} && "
            f"document.body.innerText.split('Verdict:').length > {len(CLAIMS)}", timeout=TIMEOUT_MS)
        seconds = time.monotonic() - start
        settle(page)
        statuses = page.evaluate("() => window.__statuses")
        wrong = problems(page)
        if wrong or statuses:
            return say(False, what, wrong or f"the page showed {statuses}")
        return say(True, what, f"{len(CLAIMS)} verdicts and charts in {seconds:.1f} s, "
                               "no queue or computing status shown")
    except Exception as err:
        return say(False, what, f"{type(err).__name__}: {str(err).splitlines()[0][:160]}")
    finally:
        page.close()


def check_chart(browser, base: str, path: str, what: str) -> bool:
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    try:
        seconds = open_page(page, base + path)
        settle(page)
        wrong = problems(page)
        return say(wrong is None, what, wrong or f"{path} drawn in {seconds:.1f} s")
    except Exception as err:
        return say(False, what, f"{path}: {type(err).__name__}: {str(err).splitlines()[0][:160]}")
    finally:
        page.close()


def check_refusal(browser, base: str, path: str, text: str, what: str) -> bool:
    """``path`` ends in an error message that contains ``text`` (a refusal), and draws no chart."""
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    try:
        start = time.monotonic()
        page.goto(base + path)
        refusal = page.locator(f"{ERROR_ALERT} [data-testid='stMarkdownContainer']").first
        refusal.wait_for(timeout=TIMEOUT_MS)
        seconds = time.monotonic() - start
        said = " ".join(refusal.inner_text().split())
        if text not in said:
            return say(False, what, f"{path}: the error does not say {text!r}: {said[:200]!r}")
        return say(page.locator(CHART).count() == 0, what, f"in {seconds:.1f} s: {said}")
    except Exception as err:
        return say(False, what, f"{type(err).__name__}: {str(err).splitlines()[0][:160]}")
    finally:
        page.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="the served dashboard, e.g. http://127.0.0.1:18501")
    parser.add_argument("mode", choices=("pages", "claims", "chart", "refusal"))
    parser.add_argument("path", nargs="?", default="/", help="chart, refusal: the link's path and query")
    parser.add_argument("text", nargs="?", default="", help="refusal: what the refusal must say")
    parser.add_argument("--what", help="chart, refusal: the check's name in its line (default: the mode's)")
    args = parser.parse_args(argv)
    chromium = shutil.which("chromium")
    if chromium is None:
        return 0 if say(False, "Chromium", "Debian's chromium is not installed") else 1
    from playwright.sync_api import sync_playwright

    base = args.url.rstrip("/")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            ok = {"pages": lambda: check_pages(browser, base),
                  "claims": lambda: check_claims(browser, base),
                  "chart": lambda: check_chart(browser, base, args.path, args.what or "a link draws"),
                  "refusal": lambda: check_refusal(browser, base, args.path, args.text,
                                                   args.what or "a link is refused")}[args.mode]()
        finally:
            browser.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
