"""Bytes a visitor downloads for a page, straight from Streamlit and through nginx, fresh and returning.

Starts `streamlit run app.py` on a free loopback port (its result store a new temporary folder unless
--store) and nginx in front of it (deploy/proxy.py with deploy/normlab.conf.template), then opens each
page in Debian's Chromium (Playwright, no browser download) until its chart is drawn and the network is
quiet:

* fresh: a new browser context, so an empty cache;
* returning: the same context, the page reloaded, so whatever the browser may keep it keeps.

Bytes are Chrome's own count, read over the DevTools protocol (Network domain): an HTTP response's
``encodedDataLength`` (its headers and its body as transferred, compressed where it was), and the
payloads of the websocket frames received (the script runs, the charts' data). A response served from
the browser's cache is counted apart and costs no bytes. One untimed visit per page first computes its
results, so every measured visit finds them computed. MB = 10^6 bytes.

    .venv/bin/python benchmarks/bench_visitor_bytes.py                  # the overview and variance-growth
    .venv/bin/python benchmarks/bench_visitor_bytes.py --page rank-collapse --json bytes.json
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: the repository root holds ui/ and deploy/
from deploy.proxy import nginx_binary, start_proxy, stop_proxy  # noqa: E402
from ui.server import CHROMIUM_ARGS, free_port, start_server, stop_server, wait_healthy  # noqa: E402

LOAD_MS = 300_000  # a cold page computes its networks on a shared CPU
TARGETS = {("fresh", "nginx"): 3.5e6, ("returning", "nginx"): 0.5e6}  # issue 23


@dataclass
class Traffic:
    """What one visit downloaded."""

    requests: int = 0  # HTTP responses that came over the network
    cached: int = 0  # HTTP responses the browser served from its cache
    http_bytes: int = 0  # as transferred: headers and (compressed) bodies
    ws_bytes: int = 0  # websocket frames received, payloads
    server_cpu: float = 0.0  # CPU seconds of Streamlit's process group during the visit
    proxy_cpu: float = 0.0  # CPU seconds of nginx's (master and worker) during the visit
    largest: list[tuple[int, str]] = field(default_factory=list)  # (bytes, path) of the largest responses

    @property
    def total(self) -> int:
        return self.http_bytes + self.ws_bytes


class Meter:
    """Counts a page's traffic from Chrome's Network events; ``take()`` returns it and starts anew."""

    def __init__(self, page) -> None:
        self.cdp = page.context.new_cdp_session(page)
        self._urls: dict[str, str] = {}
        self._from_cache: set[str] = set()
        self.pending: set[str] = set()  # requests sent and not yet finished or failed
        self._traffic = Traffic()
        self.cdp.on("Network.requestWillBeSent", self._sent)
        self.cdp.on("Network.loadingFailed", lambda e: self.pending.discard(e["requestId"]))
        self.cdp.on("Network.requestServedFromCache", lambda e: self._from_cache.add(e["requestId"]))
        self.cdp.on("Network.responseReceived", self._response)
        self.cdp.on("Network.loadingFinished", self._finished)
        self.cdp.on("Network.webSocketFrameReceived", self._frame)
        self.cdp.send("Network.enable")

    def _sent(self, event: dict) -> None:
        self._urls[event["requestId"]] = event["request"]["url"]
        self.pending.add(event["requestId"])

    def _response(self, event: dict) -> None:
        response = event["response"]
        if response.get("fromDiskCache") or response.get("fromPrefetchCache") or response.get(
                "fromServiceWorker"):
            self._from_cache.add(event["requestId"])

    def _finished(self, event: dict) -> None:
        request = event["requestId"]
        self.pending.discard(request)
        if request in self._from_cache:
            self._traffic.cached += 1
            return
        size = int(event["encodedDataLength"])
        self._traffic.requests += 1
        self._traffic.http_bytes += size
        path = "/" + self._urls.get(request, "?").split("/", 3)[-1]
        self._traffic.largest = sorted([*self._traffic.largest, (size, path)], reverse=True)[:3]

    def _frame(self, event: dict) -> None:
        frame = event["response"]
        payload = frame["payloadData"]
        # Binary frames (opcode 2: Streamlit's protobuf messages) arrive base64-encoded.
        self._traffic.ws_bytes += len(base64.b64decode(payload)) if frame["opcode"] == 2 else len(
            payload.encode())

    def take(self) -> Traffic:
        traffic, self._traffic = self._traffic, Traffic()
        self._from_cache.clear()
        return traffic


def group_cpu(pgid: int | None) -> float:
    """User + system CPU seconds of the live processes of a process group (Linux /proc)."""
    if pgid is None:
        return 0.0
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()  # after the command's name
        except OSError:  # the process has gone
            continue
        if int(fields[2]) == pgid:  # pgrp
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def settle(page, meter: Meter, quiet_ms: int = 2000) -> None:
    """Wait for the page's chart, the end of its script run, then no HTTP request in flight for
    ``quiet_ms`` (fonts and chunks that the drawn page asks for late)."""
    page.locator(".js-plotly-plot .main-svg").first.wait_for(timeout=LOAD_MS)
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')",
                           timeout=LOAD_MS)
    deadline, quiet = time.monotonic() + 30, 0
    while quiet < quiet_ms and time.monotonic() < deadline:
        page.wait_for_timeout(100)  # Playwright delivers the Network events meanwhile
        quiet = quiet + 100 if not meter.pending else 0


def measure(browser, url: str, server: int, proxy: int | None) -> dict[str, Traffic]:
    """A fresh visit to ``url`` in a new context, then a reload in it; ``server`` and ``proxy`` are the
    process groups whose CPU time each visit costs."""
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    try:
        page = context.new_page()
        meter = Meter(page)
        out = {}
        for visitor, go in (("fresh", lambda: page.goto(url)), ("returning", page.reload)):
            cpu = group_cpu(server), group_cpu(proxy)
            go()
            settle(page, meter)
            traffic = out[visitor] = meter.take()
            traffic.server_cpu = group_cpu(server) - cpu[0]
            traffic.proxy_cpu = group_cpu(proxy) - cpu[1]
        return out
    finally:
        context.close()


def mb(n: float) -> str:
    return f"{n / 1e6:.2f}"


def table(results: dict[str, dict[tuple[str, str], Traffic]]) -> str:
    lines = ["| page | visitor | via | requests over the network | from the browser's cache | HTTP MB "
             "| websocket MB | total MB | target | Streamlit CPU s | nginx CPU s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for page, rows in results.items():
        for (visitor, via), t in sorted(rows.items(), key=lambda kv: (kv[0][0] != "fresh", kv[0][1])):
            target = TARGETS.get((visitor, via))
            verdict = f"≤ {mb(target)} ({'met' if t.total <= target else 'missed'})" if target else ""
            proxy_cpu = f"{t.proxy_cpu:.2f}" if via == "nginx" else ""
            lines.append(f"| /{page} | {visitor} | {via} | {t.requests} | {t.cached} | {mb(t.http_bytes)} "
                         f"| {mb(t.ws_bytes)} | **{mb(t.total)}** | {verdict} | {t.server_cpu:.2f} "
                         f"| {proxy_cpu} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--page", action="append", help="a page's path, '' for the overview "
                        "(repeatable; default: the overview and variance-growth)")
    parser.add_argument("--store", help="the server's NORMLAB_STORE (default: a new temporary folder)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    pages = args.page if args.page is not None else ["", "variance-growth"]
    chromium, nginx = shutil.which("chromium"), nginx_binary()
    if chromium is None or nginx is None:
        print("needs Debian's chromium and nginx: apt-get install chromium nginx", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="bench-bytes-"))
    env = dict(os.environ, NORMLAB_STORE=args.store or str(work / "store"))
    port, proxy_port = free_port(), free_port()
    direct, proxied = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{proxy_port}"
    results: dict[str, dict[tuple[str, str], Traffic]] = {}
    server = start_server(port, work / "streamlit.log", env=env)
    proxy = None
    try:
        wait_healthy(direct, server)
        proxy = start_proxy(f"127.0.0.1:{port}", f"127.0.0.1:{proxy_port}", work / "nginx")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            for page in pages:
                start = time.perf_counter()
                measure(browser, f"{direct}/{page}", server.pid, None)  # computes its results, unmeasured
                print(f"/{page}: computed in {time.perf_counter() - start:.0f} s", file=sys.stderr)
                results[page] = {}
                for via, base in (("direct", direct), ("nginx", proxied)):
                    for visitor, traffic in measure(browser, f"{base}/{page}", server.pid, proxy.pid).items():
                        results[page][(visitor, via)] = traffic
            browser.close()
    finally:
        if proxy is not None:
            stop_proxy(proxy)
        stop_server(server)
    print(table(results))
    print("\nlargest responses over the network, fresh visit:")
    for page, rows in results.items():
        for via in ("direct", "nginx"):
            largest = rows[("fresh", via)].largest
            shown = ", ".join(f"{path.split('?')[0]} {mb(size)} MB" for size, path in largest)
            print(f"  /{page} {via}: {shown}")
    if args.json:
        args.json.write_text(json.dumps({page: {f"{v} {w}": asdict(t) | {"total": t.total}
                                                for (v, w), t in rows.items()}
                                         for page, rows in results.items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
