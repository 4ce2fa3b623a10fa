"""nginx in front of the dashboard (deploy/): compressed, long-cached static assets that nginx keeps its own
copy of, and a working websocket.

Starts `streamlit run app.py` on a free loopback port and Debian's nginx, as this user with its own
paths, on another, from deploy/normlab.conf.template (deploy/proxy.py). Skips when nginx or chromium is
absent; .ci/run installs both from Debian's packages.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import signal
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from deploy.proxy import PLACEHOLDERS, TEMPLATE, nginx_binary, nginx_conf, start_proxy, stop_proxy
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


def bundles(stack: Stack) -> list[str]:
    """The paths of the hashed JavaScript and CSS files that the app's index.html names."""
    _, html = fetch(f"{stack.proxy}/")
    return sorted(set(re.findall(r"static/(?:js|css)/[\w.-]+\.(?:js|css)", html.decode())))


def children(pid: int) -> set[int]:
    """The processes ``pid`` started (nginx's master: its workers, cache manager and loader)."""
    return {int(child) for task in Path(f"/proc/{pid}/task").iterdir()
            for child in (task / "children").read_text().split()}


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


def test_a_chart_renders_through_nginx_over_its_websocket_and_a_second_visitor_gets_nginx_copies(stack):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium); no browser is downloaded")
    playwright = pytest.importorskip("playwright.sync_api")
    requests: list[str] = []
    sockets: list[str] = []
    statics: list[dict[str, str]] = []  # per visitor: each /static/ file's X-Cache-Status
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            for _ in range(2):  # two visitors, each with an empty browser cache
                statics.append({})
                page = browser.new_context(viewport={"width": 1440, "height": 1000}).new_page()
                page.on("request", lambda r: requests.append(r.url))
                page.on("response", lambda r, seen=statics[-1]: "/static/" in r.url
                        and seen.setdefault(r.url, r.headers.get("x-cache-status", "")))
                page.on("websocket", lambda ws: sockets.append(ws.url))
                page.goto(f"{stack.proxy}/variance-growth?{SMALL}")
                page.locator(".js-plotly-plot .main-svg").first.wait_for(timeout=LOAD_MS)
                page.wait_for_function("() => { const c = document.querySelector('.js-plotly-plot');"
                                       " return c && c.data && c.data.length > 0; }", timeout=LOAD_MS)
                assert page.locator(ERROR_BOX).count() == 0
                assert page.get_by_text("Page not found").count() == 0
                page.context.close()
        finally:
            browser.close()
    # The second visitor's files all came from nginx's copy: Streamlit served none of them again.
    missed = {url: status for url, status in statics[1].items() if status != "HIT"}
    assert statics[1] and not missed, missed
    assert set(statics[0].values()) <= {"MISS", "HIT"}, statics[0]
    proxy_ws = stack.proxy.replace("http://", "ws://")
    assert sockets and all(url.startswith(f"{proxy_ws}/_stcore/stream") for url in sockets), sockets
    assert not [url for url in requests if url.startswith(stack.direct)]
    # nginx logs the tunnel when it closes: the handshake was answered 101 Switching Protocols
    deadline = time.monotonic() + 10
    while not re.search(r'"GET /_stcore/stream HTTP/1.1" 101 ', (stack.logs / "access.log").read_text()):
        assert time.monotonic() < deadline, (stack.logs / "access.log").read_text()[-2000:]
        time.sleep(0.2)


def test_nginx_serves_a_static_file_again_from_its_own_copy_without_streamlit(stack, tmp_path):
    """The first fetch of a hashed file goes to Streamlit (MISS) and nginx keeps it; later ones are HITs,
    still gzipped and cached by browsers for a year, and come even once Streamlit is unreachable, while
    pages and files nginx has not kept are not served from its cache."""
    kept, other = bundles(stack)[:2]
    _, plain = fetch(f"{stack.direct}/{kept}")
    work = tmp_path / "nginx"
    listen = f"127.0.0.1:{free_port()}"
    proxy = start_proxy(stack.direct.removeprefix("http://"), listen, work)
    try:
        url = f"http://{listen}"
        statuses = [fetch(f"{url}/{kept}")[0]["X-Cache-Status"] for _ in range(2)]
        assert statuses == ["MISS", "HIT"]
        page, _ = fetch(f"{url}/")
        assert "X-Cache-Status" not in page and page["Cache-Control"] == "no-cache"
        # The same nginx, its cache zone kept across a reload, now in front of a port nobody listens on.
        (work / "nginx.conf").write_text(nginx_conf(work, f"127.0.0.1:{free_port()}", listen))
        old_workers = children(proxy.pid)
        os.kill(proxy.pid, signal.SIGHUP)
        deadline = time.monotonic() + 15
        while children(proxy.pid) & old_workers:  # until no worker of the old upstream answers
            assert time.monotonic() < deadline, "nginx's old workers did not exit"
            time.sleep(0.1)
        with pytest.raises(urllib.error.HTTPError, match="502"):  # a file nginx has not kept
            fetch(f"{url}/{other}")
        headers, body = fetch(f"{url}/{kept}", gzip_ok=True)
        assert headers["X-Cache-Status"] == "HIT"
        assert headers["Content-Encoding"] == "gzip" and gzip.decompress(body) == plain
        assert YEAR in headers["Cache-Control"] and "immutable" in headers["Cache-Control"]
        for path in ("/", "/variance-growth"):  # pages are never kept
            try:
                fetch(f"{url}{path}")
            except urllib.error.HTTPError as error:
                assert error.code == 502, (path, error)
            else:
                pytest.fail(f"{path} came from nginx's cache")
    finally:
        stop_proxy(proxy)
    assert list((work / "cache").rglob("*")), "nginx wrote no copy into its cache folder"


def cached_copy(logs: Path, path: str) -> bytes:
    """nginx's kept copy of ``path`` (its cache file: a binary header, the KEY line, the upstream's
    headers, then the body as the upstream sent it)."""
    for file in (logs / "cache").rglob("*"):
        if file.is_file() and re.search(rf"^KEY: .*{re.escape(path)}$".encode(), file.read_bytes(), re.M):
            return file.read_bytes()
    raise AssertionError(f"nginx kept no copy of {path}")


def test_nginx_keeps_each_static_file_gzipped_once_and_serves_it_to_every_client(stack):
    """The copy nginx keeps is the gzipped file (compressed once, on its way in), so a HIT costs nginx no
    compression; a client that does not accept gzip gets the same copy unzipped."""
    path = bundles(stack)[-1]
    _, plain = fetch(f"{stack.direct}/{path}")
    headers, body = fetch(f"{stack.proxy}/{path}")  # no Accept-Encoding: unzipped from the copy
    assert "Content-Encoding" not in headers and body == plain
    kept = cached_copy(stack.logs, path)
    assert re.search(rb"^Content-Encoding: gzip\r$", kept, re.M), kept[:600]
    assert len(kept) < len(plain) / 2, f"kept {len(kept):,} bytes of a {len(plain):,}-byte file"
    headers, body = fetch(f"{stack.proxy}/{path}", gzip_ok=True)  # the same copy, as kept
    assert headers["X-Cache-Status"] == "HIT" and headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(body) == plain and body in kept
