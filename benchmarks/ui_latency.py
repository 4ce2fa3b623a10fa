"""Dashboard latency in a real browser: control change -> redrawn chart, at the default sizes.

Starts ``streamlit run app.py`` on a free port, opens the Variance growth page in Debian's Chromium
(Playwright, no browser download) and times, from the key press to the chart holding new data:

* fresh: the "First seed" control set to a seed not seen before, so all compared networks are probed
  anew at the default sizes (the cost of any config change at those sizes);
* cached: the depth slider moved between two values already computed (a revisit: cache hit, redraw only);
* option: the page's Axis control switched between log and linear (a plot option: nothing is probed).

and, for each kind, the server's own CPU seconds per change (utime + stime of its process group, read
before and after: robust to other load on a shared machine, where the wall-clock times are not).

Run:  .venv/bin/python benchmarks/ui_latency.py [--repeats 8]
Prints the median and percentiles in seconds; the server is always stopped.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: the repository root holds scripts/
from bench_visitor_cpu import group_cpu  # noqa: E402  (benchmarks/, this script's folder)

from ui.server import CHROMIUM_ARGS, free_port, start_server, stop_server, wait_healthy  # noqa: E402

# A signature of what the first chart shows: every trace's decoded y values and the y axis's type.
SIGNATURE_JS = """() => {
  const chart = document.querySelector('.js-plotly-plot');
  if (!chart || !chart._fullData) return null;
  return JSON.stringify([chart._fullData.map(t => Array.from(t.y || [])), chart._fullLayout.yaxis.type]);
}"""


def timed_change(page, change) -> float:
    """Seconds from ``change()`` until the chart's data differs from before."""
    before = page.evaluate(SIGNATURE_JS)
    start = time.perf_counter()
    change()
    page.wait_for_function(f"(before) => {{ const s = ({SIGNATURE_JS})(); return s && s !== before; }}",
                           arg=before, timeout=180_000, polling="raf")
    return time.perf_counter() - start


def summary(name: str, seconds: list[float], cpu: float) -> str:
    ordered = sorted(seconds)

    def pct(q: float) -> float:  # nearest-rank percentile
        return ordered[round(q * (len(ordered) - 1))]

    return (f"{name:>7}: median {statistics.median(ordered):.2f} s · p10 {pct(0.1):.2f} · p90 {pct(0.9):.2f}"
            f" · max {ordered[-1]:.2f} (n={len(ordered)}) · server CPU {cpu:.3f} s per change")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=8, help="timed changes of each kind")
    args = parser.parse_args(argv)
    chromium = shutil.which("chromium")
    if chromium is None:
        print("chromium not found: apt-get install chromium", file=sys.stderr)
        return 2
    port = free_port()
    proc = start_server(port, Path(tempfile.mkdtemp()) / "streamlit.log")
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            start = time.perf_counter()
            page.goto(f"http://127.0.0.1:{port}/variance-growth")
            sidebar = page.get_by_test_id("stSidebar")
            page.wait_for_function(f"() => ({SIGNATURE_JS})() !== null", timeout=300_000)
            # The launcher's warm-up already ran the app (imports, the overview's default probes).
            print(f"first load (warmed server, first browser session): {time.perf_counter() - start:.1f} s")
            sidebar.get_by_text("Inputs, batch and seeds").click()
            seed = sidebar.get_by_label("First seed")

            def set_seed(value: int):
                return lambda: (seed.fill(str(value)), seed.press("Enter"))

            cpu = {}

            def server_cpu(kind: str, changes):  # the changes' times, and the server's CPU per change
                before = group_cpu(proc.pid)
                times = changes()
                cpu[kind] = (group_cpu(proc.pid) - before) / len(times)
                return times

            fresh = server_cpu("fresh", lambda: [timed_change(page, set_seed(k))
                                                 for k in range(1, args.repeats + 1)])
            depth = sidebar.get_by_role("slider", name="Depth (blocks per stage)")
            depth.focus()
            timed_change(page, lambda: depth.press("ArrowLeft"))  # computes the next depth stop once
            timed_change(page, lambda: depth.press("ArrowRight"))
            cached = server_cpu("cached", lambda: [
                timed_change(page, lambda k=k: depth.press("ArrowLeft" if k % 2 == 0 else "ArrowRight"))
                for k in range(args.repeats)])
            main = page.get_by_test_id("stMain")
            group = main.get_by_role("radiogroup", name="Axis")  # the page's Axis control, two choices
            axis = [group.locator("button", has_text=re.compile(f"^{name}$")) for name in ("linear", "log")]
            option = server_cpu("option", lambda: [timed_change(page, lambda k=k: axis[k % 2].click())
                                                   for k in range(args.repeats)])
            browser.close()
    finally:
        stop_server(proc)
    print(f"default view: ResNet depth 8 width 16, batch 32 of 16x16 gaussian images, 1 seed, "
          f"3 normalizers; {os.cpu_count()} CPU cores")
    print(summary("fresh", fresh, cpu["fresh"]))
    print(summary("cached", cached, cpu["cached"]))
    print(summary("option", option, cpu["option"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
