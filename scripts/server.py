"""A local `streamlit run app.py` for tests, benchmarks and the load script: start, wait, stop.

Loopback only. Shared by tests/test_browser.py, benchmarks/ui_latency.py and scripts/load_test.py.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, log: Path | None = None, env: dict[str, str] | None = None) -> subprocess.Popen:
    """`streamlit run app.py` on 127.0.0.1:``port`` in its own process group; stop it with stop_server."""
    command = [sys.executable, "-m", "streamlit", "run", "app.py", f"--server.port={port}",
               "--server.address=127.0.0.1", "--server.headless=true", "--server.fileWatcherType=none"]
    out = log.open("w") if log is not None else subprocess.DEVNULL
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)


def health(url: str, timeout: float = 2.0) -> bool:
    """Whether ``url``'s Streamlit health endpoint answers "ok"."""
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=timeout) as response:
            return response.status == 200 and response.read() == b"ok"
    except OSError:
        return False


def wait_healthy(url: str, proc: subprocess.Popen | None = None, timeout: float = 120.0) -> None:
    """Poll the health endpoint until it answers; raise if the server exits or the time runs out."""
    deadline = time.monotonic() + timeout
    while not health(url):
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with status {proc.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url}/_stcore/health did not answer within {timeout:.0f} s")
        time.sleep(0.5)


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
