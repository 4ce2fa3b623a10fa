"""The launcher (`python -m ui.server`, the image's ENTRYPOINT) stops cleanly: SIGTERM (docker stop) or
SIGINT (Ctrl-C) ends the server's whole process group and the launcher exits 0 at once, and a server that
ignores SIGTERM is killed after the grace. No browser: the server is only asked for its health."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ui.server import free_port, health

ROOT = Path(__file__).resolve().parents[1]


def children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} within {timeout:.0f} s"
        time.sleep(0.1)


def kill(launcher: subprocess.Popen) -> None:
    """After a failed check: the launcher and its children's groups, so that no server outlives the test."""
    if launcher.poll() is None:
        for child in children(launcher.pid):
            os.killpg(child, signal.SIGKILL)
        launcher.kill()
        launcher.wait()


def stop(proc: subprocess.Popen, sig: int, timeout: float) -> float:
    """Send ``sig`` and wait for ``proc`` to exit; the seconds it took."""
    start = time.monotonic()
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running {timeout:.0f} s after {signal.Signals(sig).name}")
    return time.monotonic() - start


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_the_launcher_stops_the_server_group_and_exits_0_at_once(sig, tmp_path):
    port, log = free_port(), tmp_path / "launcher.log"
    with log.open("w") as out:
        launcher = subprocess.Popen([sys.executable, "-m", "ui.server", "--port", str(port)], cwd=ROOT,
                                    stdout=out, stderr=subprocess.STDOUT)
    try:
        # warmed, so the launcher is in its wait on the server: the wait a signal interrupts
        wait_for(lambda: "normlab: serving at" in log.read_text() and health(f"http://127.0.0.1:{port}"),
                 120, "the launcher announces a healthy server")
        (server,) = children(launcher.pid)
        assert os.getpgid(server) == server != os.getpgid(launcher.pid), "the server leads its own group"
        took = stop(launcher, sig, timeout=3)
    finally:
        kill(launcher)
    assert launcher.returncode == 0, log.read_text()
    assert took < 3
    assert "Traceback" not in log.read_text()
    assert not group_alive(server)


# A child that ignores SIGTERM, under the launcher's own supervise(): no Streamlit needed.
STUBBORN = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ignoring SIGTERM', flush=True); time.sleep(60)")
LAUNCHER = """
import subprocess, sys
from ui.server import supervise
child = subprocess.Popen([sys.executable, "-c", sys.argv[1]], start_new_session=True,
                         stdout=subprocess.PIPE, text=True)
said = child.stdout.readline().strip()
status = supervise(child, lambda: print(child.pid, said, flush=True), grace=float(sys.argv[2]))
print("child ended by", -child.returncode, flush=True)
sys.exit(status)
"""


def test_a_server_that_ignores_sigterm_is_killed_after_the_grace_and_the_launcher_exits_0():
    grace = 1.0
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCHER, STUBBORN, str(grace)], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        pid, said = launcher.stdout.readline().split(" ", 1)
        assert said.strip() == "ignoring SIGTERM"
        took = stop(launcher, signal.SIGTERM, timeout=grace + 3)
    finally:
        kill(launcher)
    rest = launcher.stdout.read()
    assert launcher.returncode == 0, rest
    assert grace <= took < grace + 1.5
    warning = f"server: still running {grace:g} s after SIGTERM; killing its process group"
    assert rest.splitlines() == [warning, f"child ended by {signal.SIGKILL.value}"]
    assert not group_alive(int(pid))
