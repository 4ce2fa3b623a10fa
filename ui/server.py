"""`streamlit run app.py`, started, warmed and stopped: the dashboard's launcher and the tests' server.

    .venv/bin/python -m ui.server                             # http://127.0.0.1:8501, warmed
    .venv/bin/python -m ui.server --address 0.0.0.0 --port 8501   # as the Docker image serves it

Warming runs the app once in a bare session (Streamlit's /_stcore/script-health-check) before any
visitor comes. That first run of the process is the one Streamlit routes through the legacy pages/
directory (streamlit/streamlit#9992): a visitor whose first request to a fresh server is a page's path
(/variance-growth) would otherwise see a "Page not found" dialog over the right page. After it, typed
paths, clicks and share links all open their page. SIGTERM (docker stop) or SIGINT (Ctrl-C) stops the
server's process group and the launcher exits 0 (``supervise``). Also shared by tests/test_browser.py,
benchmarks/ui_latency.py and scripts/load_test.py (loopback only there).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the repository (or the image's /app): app.py is here
# How the tests, benchmarks and scripts start Debian's Chromium: no sandbox (containers), no GPU, no QUIC
# and nothing that calls out (updates, sync, background networking).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# How long a stopped server may take to exit before its group is killed: Streamlit needs about 1 s, and
# `docker stop` waits 10 s before it kills the launcher itself.
GRACE_S = 5.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def streamlit_command(port: int, address: str = "127.0.0.1") -> list[str]:
    """`streamlit run app.py`, headless on ``address``:``port``, watching no files, with the endpoint that
    ``warm_up`` calls."""
    return [sys.executable, "-m", "streamlit", "run", "app.py", f"--server.port={port}",
            f"--server.address={address}", "--server.headless=true", "--server.fileWatcherType=none",
            "--server.scriptHealthCheckEnabled=true"]


def start_server(port: int, log: Path | None = None, env: dict[str, str] | None = None,
                 address: str = "127.0.0.1", inherit_output: bool = False) -> subprocess.Popen:
    """`streamlit run app.py` on ``address``:``port`` in its own process group; stop it with stop_server.

    Its output goes to ``log``, to this process's own output with ``inherit_output``, else nowhere."""
    command = streamlit_command(port, address)
    out = None if inherit_output else (log.open("w") if log is not None else subprocess.DEVNULL)
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=out,
                            stderr=None if inherit_output else subprocess.STDOUT, start_new_session=True)


def health(url: str, timeout: float = 2.0) -> bool:
    """Whether ``url``'s Streamlit health endpoint answers "ok"."""
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=timeout) as response:
            return response.status == 200 and response.read() == b"ok"
    except OSError:
        return False


def warm_up(url: str, timeout: float = 300.0) -> bool:
    """Run the app once in a bare session (the main page), so no visitor's request is the process's
    first run; True when it ran without an error."""
    try:
        with urllib.request.urlopen(f"{url}/_stcore/script-health-check", timeout=timeout) as response:
            return response.status == 200
    except OSError:
        return False


def wait_healthy(url: str, proc: subprocess.Popen | None = None, timeout: float = 120.0,
                 warm: bool = True) -> None:
    """Poll the health endpoint until it answers, then warm the app (``warm_up``); raise if the server
    exits or the time runs out."""
    deadline = time.monotonic() + timeout
    while not health(url):
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with status {proc.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url}/_stcore/health did not answer within {timeout:.0f} s")
        time.sleep(0.5)
    if warm and not warm_up(url):
        print(f"server: the warm-up run of the app at {url} failed; see the server's log", file=sys.stderr)


def stop_server(proc: subprocess.Popen) -> None:
    """Stop the server's whole process group: SIGTERM, then SIGKILL if it lingers."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    except ProcessLookupError:
        proc.wait(10)


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:  # the group has already gone
        pass


def supervise(proc: subprocess.Popen, ready: Callable[[], object] = lambda: None,
              grace: float = GRACE_S) -> int:
    """Run ``ready()``, then wait for ``proc`` (a process group leader) to exit; SIGTERM or SIGINT to this
    process meanwhile stops its whole group.

    The signal handler only sends signals: SIGTERM to the group at once and, for a server that lingers,
    SIGKILL on a timer after ``grace`` seconds. This thread's own wait then reaps the server. Waiting inside
    the handler would hang for ever: the ``proc.wait()`` the signal interrupted holds Popen's wait lock.

    Returns 0 once a signal stopped the server (``ready``'s error then too: it saw the server go), else the
    server's own exit status.
    """
    stopping = threading.Event()

    def kill() -> None:
        print(f"server: still running {grace:g} s after SIGTERM; killing its process group", file=sys.stderr,
              flush=True)
        _signal_group(proc, signal.SIGKILL)

    killer = threading.Timer(grace, kill)

    def stop(_signum: int, _frame: object) -> None:
        if not stopping.is_set():  # a second Ctrl-C changes nothing
            stopping.set()
            _signal_group(proc, signal.SIGTERM)
            killer.start()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        try:
            ready()
        except Exception:
            if not stopping.is_set():
                raise
        status = proc.wait()
    finally:
        killer.cancel()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0 if stopping.is_set() else status


def main(argv: list[str] | None = None) -> int:
    """Serve the dashboard until stopped: start, wait until healthy, warm, then wait; SIGTERM (docker stop)
    or SIGINT (Ctrl-C) stops the server's whole group and exits 0."""
    import argparse

    parser = argparse.ArgumentParser(description="Serve the normlab dashboard (warmed: see the module doc).")
    parser.add_argument("--port", type=int, default=8501, help="port (default 8501)")
    parser.add_argument("--address", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1; 0.0.0.0 in a container)")
    args = parser.parse_args(argv)
    local = "127.0.0.1" if args.address in ("0.0.0.0", "::") else args.address
    url = f"http://{local}:{args.port}"
    proc = start_server(args.port, address=args.address, inherit_output=True)

    def ready() -> None:
        wait_healthy(url, proc, timeout=300)
        print(f"normlab: serving at {url} (warmed)", flush=True)

    return supervise(proc, ready)


if __name__ == "__main__":
    sys.exit(main())
