"""nginx in front of the dashboard (deploy/): compressed, long-cached static assets and a working websocket.

Starts `streamlit run app.py` on a free loopback port and Debian's nginx, as this user with its own
paths, on another, from deploy/normlab.conf.template (deploy/proxy.py). Skips when nginx or chromium is
absent; .ci/run installs both from Debian's packages.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from deploy.proxy import PLACEHOLDERS, TEMPLATE, nginx_binary, start_proxy, stop_proxy
from ui.server import CHROMIUM_ARGS, free_port, health, start_server, stop_server, wait_healthy

pytestmark = pytest.mark.browser

LOAD_MS = 120_000
SMALL = "norms=batchnorm,groupnorm&depth=2&width=8"  # a page that computes in a second
YEAR = "max-age=31536000"
ERROR_BOX = "[data-testid='stException'], [data-testid='stAlertContentError']"


@dataclass(frozen=True)
class Stack:
    direct: str  # Streamlit itself
    proxy: str  # nginx in front of it
    logs: Path  # nginx's folder: access.log, error.log


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    if nginx_binary() is None:
        pytest.skip("Debian's nginx is not installed (apt-get install nginx)")
    work = tmp_path_factory.mktemp("proxy")
    port, proxy_port = free_port(), free_port()
    env = dict(os.environ, NORMLAB_STORE=str(work / "store"))
    server = start_server(port, work / "streamlit.log", env=env)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", server)
        proxy = start_proxy(f"127.0.0.1:{port}", f"127.0.0.1:{proxy_port}", work / "nginx")
        try:
            yield Stack(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{proxy_port}", work / "nginx")
        finally:
            stop_proxy(proxy)
    finally:
        stop_server(server)


def fetch(url: str, gzip_ok: bool = False):
    """(headers, body) of a GET, the body as sent (compressed if the server compressed it)."""
    request = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"} if gzip_ok else {})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.headers, response.read()


def test_the_compose_file_fills_every_placeholder_of_the_template():
    compose = (TEMPLATE.parent / "compose.yaml").read_text()
    named = set(re.findall(r"\$\{(\w+)\}", TEMPLATE.read_text()))
    assert named == set(PLACEHOLDERS)
    assert {name for name in PLACEHOLDERS if re.search(rf"^\s+{name}: \S", compose, re.M)} == named
    # in place of the nginx image's default site, which would otherwise answer on port 80 first
    assert f"./{TEMPLATE.name}:/etc/nginx/templates/default.conf.template:ro" in compose


def test_a_hashed_bundle_comes_gzipped_and_cached_for_a_year_through_nginx(stack):
    _, html = fetch(f"{stack.proxy}/")
    bundle = re.search(r"static/js/index\.[\w-]+\.js", html.decode()).group(0)  # the app's entry bundle
    _, plain = fetch(f"{stack.direct}/{bundle}")
    headers, body = fetch(f"{stack.proxy}/{bundle}", gzip_ok=True)
    assert headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(body) == plain
    assert len(body) < len(plain) / 2, f"{len(body):,} bytes gzipped of {len(plain):,}"
    cache = headers["Cache-Control"]
    assert "public" in cache and YEAR in cache and "immutable" in cache, cache
    assert "Accept-Encoding" in headers["Vary"]


@pytest.mark.parametrize("path", ["/", "/variance-growth", "/static/js/gone.0000.js"])
def test_pages_are_never_cached_for_long_through_nginx(stack, path):
    """A page, and the index.html that Streamlit sends for a bundle it no longer has."""
    headers, _ = fetch(f"{stack.proxy}{path}", gzip_ok=True)
    assert headers["Content-Type"].startswith("text/html")
    assert headers["Cache-Control"] == "no-cache"
    assert health(stack.proxy)


def test_a_chart_renders_through_nginx_over_its_websocket(stack):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium); no browser is downloaded")
    playwright = pytest.importorskip("playwright.sync_api")
    requests: list[str] = []
    sockets: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.on("request", lambda r: requests.append(r.url))
            page.on("websocket", lambda ws: sockets.append(ws.url))
            page.goto(f"{stack.proxy}/variance-growth?{SMALL}")
            page.locator(".js-plotly-plot .main-svg").first.wait_for(timeout=LOAD_MS)
            page.wait_for_function("() => { const c = document.querySelector('.js-plotly-plot');"
                                   " return c && c.data && c.data.length > 0; }", timeout=LOAD_MS)
            assert page.locator(ERROR_BOX).count() == 0
            assert page.get_by_text("Page not found").count() == 0
        finally:
            browser.close()
    proxy_ws = stack.proxy.replace("http://", "ws://")
    assert sockets and all(url.startswith(f"{proxy_ws}/_stcore/stream") for url in sockets), sockets
    assert not [url for url in requests if url.startswith(stack.direct)]
    # nginx logs the tunnel when it closes: the handshake was answered 101 Switching Protocols
    deadline = time.monotonic() + 10
    while not re.search(r'"GET /_stcore/stream HTTP/1.1" 101 ', (stack.logs / "access.log").read_text()):
        assert time.monotonic() < deadline, (stack.logs / "access.log").read_text()[-2000:]
        time.sleep(0.2)
