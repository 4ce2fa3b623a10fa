"""Server CPU seconds a visitor costs, per page, on a config whose results are already computed.

Starts `streamlit run app.py` on a free loopback port (its result store $NORMLAB_STORE unless --store; fill
it first with `python -m ui.warm`, else the first visit of each page computes), then, per page, opens the
page once unmeasured (its results into the server's memory) and then in ``--visitors`` fresh Chromium
contexts, one after another (Playwright with Debian's chromium, no browser download). A visit lasts from
the navigation until the page's first chart is drawn, the script run has ended and the context is closed
(the server drops the session). Its cost is the CPU time (user + system) of the server's whole process
group, read from /proc before and after: the server's own work only, whatever else runs on the machine.

With ``--via nginx`` the visitors come through nginx in front of the server (deploy/proxy.py with
deploy/normlab.conf.template, started fresh, so its cache of Streamlit's static files is empty until the
page's unmeasured first visit); ``--via both`` measures each page straight and through nginx in the same
run, one after the other. nginx's own CPU (its process group) is printed beside Streamlit's.

    .venv/bin/python -m ui.warm                          # once: the claims and the default views
    .venv/bin/python benchmarks/bench_visitor_cpu.py     # overview, variance, rank, gradients, claims
    .venv/bin/python benchmarks/bench_visitor_cpu.py --via both    # straight and through nginx, ~6 min
    .venv/bin/python benchmarks/bench_visitor_cpu.py --page paper-claims --visitors 10 --param lang=ko
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: the repository root holds ui/
from bench_visitor_bytes import group_cpu  # noqa: E402  (benchmarks/, this script's folder)

from deploy.proxy import nginx_binary, start_proxy, stop_proxy  # noqa: E402
from ui.server import CHROMIUM_ARGS, free_port, start_server, stop_server, wait_healthy  # noqa: E402

PAGES = {"": "Overview", "variance-growth": "Variance growth", "rank-collapse": "Rank collapse",
         "gradient-explosion": "Gradients", "paper-claims": "Paper claims"}
TARGETS = {"paper-claims": 0.3}  # issue 23: CPU seconds per visitor; every other page 0.2
TARGET = 0.2
LOAD_MS = 300_000  # an uncomputed page computes its networks on a shared CPU


def visit(browser, url: str, context=None) -> None:
    """One visitor: a new session in a new context (an empty browser cache) or in ``context`` (a browser
    that keeps the static files of an earlier visit), the page until drawn, then gone."""
    own = context is None
    context = browser.new_context(viewport={"width": 1440, "height": 1000}) if own else context
    page = context.new_page()
    try:
        page.goto(url)
        page.locator(".js-plotly-plot .main-svg").first.wait_for(timeout=LOAD_MS)
        page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')",
                               timeout=LOAD_MS)
        page.wait_for_timeout(500)  # a late rerun (the URL's query string, the browser's locale)
    finally:
        page.close()
        if own:
            context.close()
    time.sleep(0.5)  # the server closes the session


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--page", action="append", choices=list(PAGES),
                        help="a page's path, '' for the overview (repeatable; default: the five below)")
    parser.add_argument("--visitors", type=int, default=5, help="measured fresh visitors per page")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="a link parameter for every visit, e.g. lang=ko or lecture=1 (repeatable)")
    parser.add_argument("--store", help="the server's NORMLAB_STORE (default: the environment's)")
    parser.add_argument("--cached-assets", action="store_true",
                        help="every visitor's browser already holds Streamlit's static files (one context "
                             "for all, a new session each): the page's own cost, without serving them")
    parser.add_argument("--via", choices=("direct", "nginx", "both"), default="direct",
                        help="visitors straight to Streamlit, through nginx (deploy/), or both ways per page")
    args = parser.parse_args(argv)
    chromium = shutil.which("chromium")
    if chromium is None:
        print("needs Debian's chromium: apt-get install chromium", file=sys.stderr)
        return 2
    if args.via != "direct" and nginx_binary() is None:
        print("--via nginx needs Debian's nginx: apt-get install nginx", file=sys.stderr)
        return 2
    pages = args.page if args.page is not None else list(PAGES)
    routes = ["direct", "nginx"] if args.via == "both" else [args.via]
    query = ("?" + "&".join(args.param)) if args.param else ""
    work = Path(tempfile.mkdtemp(prefix="bench-cpu-"))
    env = dict(os.environ, **({"NORMLAB_STORE": args.store} if args.store else {}))
    port = free_port()
    bases = {"direct": f"http://127.0.0.1:{port}"}
    costs: dict[tuple[str, str], list[float]] = {}  # (page, route): Streamlit's CPU s per visitor
    proxy_costs: dict[tuple[str, str], list[float]] = {}  # nginx's
    server = start_server(port, work / "streamlit.log", env=env)
    proxy = None
    try:
        wait_healthy(bases["direct"], server)
        if "nginx" in routes:
            listen = f"127.0.0.1:{free_port()}"
            proxy = start_proxy(f"127.0.0.1:{port}", listen, work / "nginx")
            bases["nginx"] = f"http://{listen}"
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            shared = (browser.new_context(viewport={"width": 1440, "height": 1000}) if args.cached_assets
                      else None)
            for page in pages:
                for route in routes:
                    url = f"{bases[route]}/{page}{query}"
                    start = time.perf_counter()
                    visit(browser, url, shared)  # its results into the server's memory, unmeasured
                    print(f"/{page} ({route}): first visit {time.perf_counter() - start:.1f} s",
                          file=sys.stderr)
                    costs[page, route], proxy_costs[page, route] = [], []
                    for _ in range(args.visitors):
                        before = group_cpu(server.pid), group_cpu(proxy.pid) if proxy else 0.0
                        visit(browser, url, shared)
                        costs[page, route].append(group_cpu(server.pid) - before[0])
                        proxy_costs[page, route].append((group_cpu(proxy.pid) if proxy else 0.0) - before[1])
            browser.close()
    finally:
        if proxy is not None:
            stop_proxy(proxy)
        stop_server(server)
    print(f"server CPU seconds per visitor, {args.visitors} fresh visitors per page"
          f"{' (static files in their browser cache)' if args.cached_assets else ''}"
          f"{', ' + ' '.join(args.param) if args.param else ''}; {os.cpu_count()} CPU cores\n")
    print("| page | via | Streamlit CPU s per visitor (mean) | median | min–max | target "
          "| nginx CPU s (mean) |")
    print("|---|---|---|---|---|---|---|")
    for (page, route), values in costs.items():
        target = TARGETS.get(page, TARGET)
        mean = statistics.fmean(values)
        verdict = "met" if mean <= target else "missed"
        nginx = f"{statistics.fmean(proxy_costs[page, route]):.2f}" if route == "nginx" else "–"
        print(f"| {PAGES[page]} (/{page}) | {route} | **{mean:.2f}** | {statistics.median(values):.2f} "
              f"| {min(values):.2f}–{max(values):.2f} | ≤ {target} ({verdict}) | {nginx} |")
    return 0

if __name__ == "__main__":
    sys.exit(main())
