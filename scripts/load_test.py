"""Many students at once: N browser sessions against a running dashboard, each asking for its own config.

Run (the dashboard already serving on the loopback interface):

    .venv/bin/python scripts/load_test.py --url http://127.0.0.1:8501
    .venv/bin/python scripts/load_test.py --start --sessions 8        # starts `streamlit run app.py` itself

Each session is a fresh Chromium context (its own Streamlit session) that opens a dashboard page with a
link to a different network, and waits until the page shows its chart, a message, or the timeout. With
``--mix`` (a lecture hall) the sessions cycle through cheap, expensive, over-budget and hostile links
(markup and a 16,000-character token in the parameters) and the deep-narrow link of the lecture-hall
issue; every one must end with a chart, a refusal naming the limit or a clear busy message, never an
error box, and a hostile link must render nothing it holds as markup. Meanwhile a thread polls
/_stcore/health and samples the server's resident memory from /proc. The report: completions, latency
percentiles, whether a session ever saw a "queued" status, the server's peak memory against the memory
limit, and how many health polls went unanswered (3 in a row make the Dockerfile's HEALTHCHECK call the
container unhealthy; a lecture hall wants none).

Only loopback addresses are accepted, the number of sessions is capped and every wait is bounded, so the
script always stops by itself. Needs Playwright (requirements-dev.txt) and Debian's chromium.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import math
import os
import shutil
import statistics
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlencode, urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: the repository root holds scripts/
from ui.server import CHROMIUM_ARGS, free_port, health, start_server, stop_server, wait_healthy  # noqa: E402

MAX_SESSIONS = 64
# The normalizers cycled through the sessions: one network each, so sessions differ in cost a little.
NORMS = ("batchnorm", "groupnorm", "layernorm", "none", "instancenorm", "frn", "evonorm_s0", "sws")
# What the page shows when it is done: its chart, an error (budget, queue timeout) or an exception.
# Info and warning alerts (a "queued" status, a link notice) are not an end.
DONE = '[data-testid="stPlotlyChart"], [data-testid="stAlertContentError"], [data-testid="stException"]'
# How an error alert reads: a refusal by the budget, a busy server, a computation stopped at its limit.
ENDINGS = {"refused": "over this server's limits", "busy": "server is busy",
           "stopped": "stopped at this server's time limit"}
GOOD = ("chart", "refused", "busy", "stopped")  # what a lecture hall accepts as the end of a session
KINDS = ("cheap", "cheap", "expensive", "over_budget", "hostile", "cheap", "point1", "huge_token", "cheap",
         "expensive")
# The lecture-hall issue's point 1: deep and narrow, ten normalizers, eight seeds; cheap in FLOPs only.
POINT1 = {"net": "resnet", "depth": "256", "stages": "4", "width": "4", "batch": "4", "image": "8",
          "seeds": "8",
          "norms": "none,batchnorm,layernorm,instancenorm,groupnorm,frn,evonorm_b0,evonorm_s0,weightnorm,sws"}
BAIT_PORT = 8662  # the markup payloads point here; nothing should ever ask for it


@dataclass
class SessionResult:
    session: int
    url: str
    outcome: str = "timeout"  # "chart", "error", "exception", "timeout" or "failed"
    seconds: float = math.nan
    message: str = ""
    queued_seen: bool = False  # the page showed a "queued, position n" status at some point
    kind: str = "cheap"
    markup_leaked: bool = False  # a hostile link's content rendered as an image, a link or a request


# The Dockerfile's HEALTHCHECK marks the container unhealthy after this many failed checks in a row.
UNHEALTHY_AFTER = 3


@dataclass
class HealthLog:
    polls: int = 0
    failures: int = 0
    worst_seconds: float = 0.0  # the slowest answer (or timeout) of one poll
    in_a_row: int = 0  # failed polls since the last answer
    most_in_a_row: int = 0
    longest_gap: float = 0.0  # the longest time between two answered polls
    rss_peak_mib: float = 0.0
    rss_start_mib: float = math.nan
    errors: list[str] = field(default_factory=list)


def loopback_only(url: str) -> str:
    """The URL, if its host is on this machine's loopback interface; otherwise a SystemExit."""
    host = urlsplit(url).hostname or ""
    try:
        ok = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = False
    if not ok:
        raise SystemExit(f"load_test: error: only loopback addresses are allowed; got host {host!r}")
    return url.rstrip("/")


def mixed_params(k: int, args: argparse.Namespace) -> tuple[str, dict[str, str]]:
    """Session k of a lecture hall: (kind, link parameters), cycling through ``KINDS``."""
    kind = KINDS[k % len(KINDS)]
    base = session_params(k, args)
    bait = f"http://127.0.0.1:{BAIT_PORT}"
    if kind == "expensive":  # in budget, seconds of compute
        return kind, {**base, "depth": str(24 + k), "width": "32", "batch": "64", "seeds": "2"}
    if kind == "over_budget":  # 512 channels doubled over 4 stages: refused by NORMLAB_MAX_WIDTH at once
        return kind, {**base, "width": "512", "stages": "4"}
    if kind == "hostile":
        payloads = [f"![x]({bait}/v.png)", f"[Log in]({bait}/phish)", ":red[**Server compromised**]",
                    f"<img src={bait}/i.png onerror=alert(1)>"]
        return kind, {**base, "net": payloads[k % 4], payloads[(k + 1) % 4]: "1",
                      "page": payloads[(k + 2) % 4]}
    if kind == "huge_token":
        return kind, {**base, "norms": "A" * 16_000}
    if kind == "point1":
        return kind, dict(POINT1)
    return kind, base


def session_params(k: int, args: argparse.Namespace) -> dict[str, str]:
    """The link of session k: its own normalizer, depth and seed (or one shared config with --same).

    The other sizes are dashboard controls too: width in 4..512, batch in 4..256, image in 8..64.
    """
    if args.same:
        k = 0
    return {"net": "resnet", "norms": NORMS[k % len(NORMS)], "depth": str(args.depth + k),
            "width": str(args.width), "batch": str(args.batch), "image": str(args.image), "seed": str(k)}


# ---------------------------------------------------------------------------------------------
# The server: start one, or find the one behind --url


def pid_listening_on(port: int) -> int | None:
    """The process with a listening TCP socket on ``port`` (Linux /proc; None if not found or not ours)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if int(cols[1].rsplit(":", 1)[1], 16) == port and cols[3] == "0A":  # 0A: LISTEN
                inodes.add(cols[9])
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd).removeprefix("socket:[").removesuffix("]") in inodes:
                    return int(proc.name)
        except OSError:
            continue
    return None


def rss_mib(pid: int, key: str = "VmRSS") -> float:
    """A memory line of /proc/<pid>/status in MiB (VmRSS now, VmHWM the peak since the process began)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return math.nan


def cpu_seconds(pid: int | None) -> float:
    """CPU time (user + system) the process has used, from /proc/<pid>/stat."""
    if pid is None:
        return math.nan
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def watch(url: str, pid: int | None, log: HealthLog, stop: threading.Event, every: float) -> None:
    """Poll the health endpoint and sample the server's memory until ``stop``."""
    last_ok = time.monotonic()
    while not stop.is_set():
        start = time.monotonic()
        ok = health(url, timeout=5.0)  # the HEALTHCHECK's own timeout
        took = time.monotonic() - start
        log.polls += 1
        log.worst_seconds = max(log.worst_seconds, took)
        if ok:
            log.longest_gap = max(log.longest_gap, time.monotonic() - last_ok)
            last_ok, log.in_a_row = time.monotonic(), 0
        else:
            log.failures += 1
            log.in_a_row += 1
            log.most_in_a_row = max(log.most_in_a_row, log.in_a_row)
            if len(log.errors) < 5:
                log.errors.append(f"health failed after {took:.1f} s")
        if pid is not None:
            try:
                log.rss_peak_mib = max(log.rss_peak_mib, rss_mib(pid))
            except OSError:
                pass
        stop.wait(max(0.0, every - took))


# ---------------------------------------------------------------------------------------------
# The sessions


async def run_session(browser, k: int, url: str, timeout: float, kind: str = "cheap") -> SessionResult:
    result = SessionResult(session=k, url=url[:200], kind=kind)
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = await context.new_page()
        page.on("request", lambda r: _bait_request(result, r.url))
        start = time.monotonic()
        await page.goto(url, wait_until="domcontentloaded", timeout=timeout * 1000)
        deadline = start + timeout
        while time.monotonic() < deadline:
            if not result.queued_seen and await page.get_by_text("queued, position").count():
                result.queued_seen = True
            found = page.locator(DONE)
            if await found.count():
                first = found.first
                test_id = await first.get_attribute("data-testid")
                result.seconds = time.monotonic() - start
                if test_id == "stPlotlyChart":
                    result.outcome = "chart"
                else:
                    result.message = " ".join((await first.inner_text()).split())[:300]
                    result.outcome = "exception" if test_id == "stException" else next(
                        (end for end, said in ENDINGS.items() if said in result.message), "error")
                if kind in ("hostile", "huge_token"):
                    leaked = await page.locator(f"img[src*=':{BAIT_PORT}'], a[href*=':{BAIT_PORT}']").count()
                    result.markup_leaked = result.markup_leaked or leaked > 0
                break
            await asyncio.sleep(0.2)
    except Exception as err:  # a browser-side failure is a result to report, not a crash of the script
        result.outcome, result.message = "failed", f"{type(err).__name__}: {err}"[:300]
    finally:
        await context.close()
    return result


def _bait_request(result: SessionResult, url: str) -> None:
    if f":{BAIT_PORT}/" in url:
        result.markup_leaked = True


async def run_sessions(urls: list[str], timeout: float, stagger: float,
                       kinds: list[str] | None = None) -> list[SessionResult]:
    from playwright.async_api import async_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("load_test: error: no chromium on PATH (Debian: apt-get install chromium)")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        try:
            tasks = []
            for k, url in enumerate(urls):
                kind = kinds[k] if kinds else "cheap"
                tasks.append(asyncio.create_task(run_session(browser, k, url, timeout, kind)))
                await asyncio.sleep(stagger)  # students do not click within the same millisecond
            return await asyncio.gather(*tasks)
        finally:
            await browser.close()


# ---------------------------------------------------------------------------------------------
# The report


def percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def summarize(results: list[SessionResult], log: HealthLog, wall: float, pid: int | None,
              cpu: float = math.nan) -> dict:
    done = [r.seconds for r in results if r.outcome == "chart"]
    return {
        "sessions": len(results),
        "completed": len(done),
        "outcomes": {o: sum(r.outcome == o for r in results)
                     for o in (*GOOD, "error", "exception", "timeout", "failed")},
        "ended_well": sum(r.outcome in GOOD for r in results),
        "by_kind": {k: {o: sum(r.outcome == o for r in results if r.kind == k)
                        for o in {r.outcome for r in results if r.kind == k}}
                    for k in dict.fromkeys(r.kind for r in results)},
        "markup_leaked": sum(r.markup_leaked for r in results),
        "latency_s": {"p50": percentile(done, 50), "p90": percentile(done, 90), "p95": percentile(done, 95),
                      "max": max(done, default=math.nan),
                      "mean": statistics.fmean(done) if done else math.nan},
        "queued_seen": sum(r.queued_seen for r in results),
        "wall_s": wall,
        # CPU the server used during the test: what the sessions cost whatever else runs on the machine
        "server_cpu_s": cpu,
        "server_pid": pid,
        "server_rss_start_mib": log.rss_start_mib,
        "server_rss_peak_mib": log.rss_peak_mib if pid is not None else math.nan,
        "server_vmhwm_mib": _hwm(pid),
        "health": {"polls": log.polls, "failures": log.failures, "most_failures_in_a_row": log.most_in_a_row,
                   "stayed_up": log.most_in_a_row < UNHEALTHY_AFTER, "worst_s": log.worst_seconds,
                   "longest_gap_s": log.longest_gap, "errors": log.errors},
        "results": [asdict(r) for r in results],
    }


def _hwm(pid: int | None) -> float:
    try:
        return rss_mib(pid, "VmHWM") if pid is not None else math.nan
    except OSError:
        return math.nan


def format_report(report: dict) -> str:
    lat, h = report["latency_s"], report["health"]
    lines = [
        f"sessions {report['sessions']}: {report['completed']} completed with a chart, "
        f"{report['ended_well']} ended with a chart, a refusal or a busy message; outcomes "
        + ", ".join(f"{k} {v}" for k, v in report["outcomes"].items() if v),
        "by kind: " + "; ".join(f"{k}: " + ", ".join(f"{o} {n}" for o, n in sorted(v.items()))
                                for k, v in report["by_kind"].items()),
        f"hostile links that rendered markup or fetched the bait URL: {report['markup_leaked']}",
        f"latency (s, completed sessions): p50 {lat['p50']:.1f}  p90 {lat['p90']:.1f}  p95 {lat['p95']:.1f}  "
        f"max {lat['max']:.1f}  mean {lat['mean']:.1f}   wall {report['wall_s']:.1f}",
        f"sessions that saw a 'queued' status: {report['queued_seen']}",
        f"server CPU time during the test: {report['server_cpu_s']:.1f} s "
        f"({report['server_cpu_s'] / max(1, report['sessions']):.1f} s a session)",
        f"server memory (pid {report['server_pid']}): resident {report['server_rss_start_mib']:.0f} MiB "
        f"at start, peak {report['server_rss_peak_mib']:.0f} MiB sampled, "
        f"VmHWM {report['server_vmhwm_mib']:.0f} MiB, limit {report['memory_limit_mib']:.0f} MiB "
        f"-> {'under' if report['server_vmhwm_mib'] < report['memory_limit_mib'] else 'OVER'}",
        f"health endpoint: {h['polls']} polls every 0.5 s, {h['failures']} unanswered within 5 s "
        f"(at most {h['most_failures_in_a_row']} in a row), slowest {h['worst_s']:.2f} s, longest without "
        f"an answer {h['longest_gap_s']:.1f} s -> "
        + ("stayed up" if h["stayed_up"] else f"DOWN ({UNHEALTHY_AFTER}+ failures in a row: unhealthy)"),
    ]
    for r in report["results"]:
        if r["outcome"] != "chart":
            lines.append(f"  session {r['session']} ({r['kind']}): {r['outcome']} {r['message'][:160]}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--url", default="http://127.0.0.1:8501", help="a running dashboard (loopback only)")
    where.add_argument("--start", action="store_true", help="start `streamlit run app.py` on a free port")
    parser.add_argument("--sessions", type=int, default=8, help=f"browser sessions, 1..{MAX_SESSIONS}")
    parser.add_argument("--page", default="variance-growth",
                        help="the page's URL path (default variance-growth)")
    parser.add_argument("--depth", type=int, default=4, help="session k asks for depth DEPTH + k")
    parser.add_argument("--width", type=int, default=16, help="resnet width (default 16)")
    parser.add_argument("--batch", type=int, default=32, help="batch size (default 32)")
    parser.add_argument("--image", type=int, default=16, help="image size (default 16)")
    parser.add_argument("--no-warmup", dest="warmup", action="store_false",
                        help="skip the first, uncounted session that loads torch and the app")
    parser.add_argument("--same", action="store_true", help="every session asks for the same config")
    parser.add_argument("--mix", action="store_true",
                        help="a lecture hall: cheap, expensive, over-budget and hostile links (see KINDS)")
    parser.add_argument("--memory-limit", type=float, default=None, metavar="MIB",
                        help="the server's memory limit (default $NORMLAB_MAX_MEMORY_MB, else 2048)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds a session may take")
    parser.add_argument("--stagger", type=float, default=0.1, help="seconds between session starts")
    parser.add_argument("--pid", type=int, help="the server's process id (default: found from the port)")
    parser.add_argument("--json", metavar="FILE", help="also write the full report as JSON")
    args = parser.parse_args(argv)
    if not 1 <= args.sessions <= MAX_SESSIONS:
        parser.error(f"--sessions must be between 1 and {MAX_SESSIONS}")
    if not 0 < args.timeout <= 1800:
        parser.error("--timeout must be between 0 and 1800 seconds")

    proc = None
    if args.start:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = start_server(port, env=dict(os.environ))
    else:
        url = loopback_only(args.url)
        port = urlsplit(url).port or 80
    try:
        wait_healthy(url, proc, 120)
        pid = proc.pid if proc is not None else (args.pid or pid_listening_on(port))
        page = f"{url}/{args.page.strip('/')}"
        if args.mix:
            mixed = [mixed_params(k, args) for k in range(args.sessions)]
            kinds = [kind for kind, _ in mixed]
            urls = [f"{page}?{urlencode(params)}" for _, params in mixed]
        else:
            kinds = ["cheap"] * args.sessions
            urls = [f"{page}?{urlencode(session_params(k, args))}" for k in range(args.sessions)]
        if args.warmup:  # a server that has served once: imports done, nothing of the test cached
            warm = {**session_params(0, args), "depth": "1", "seed": str(MAX_SESSIONS + 1)}
            asyncio.run(run_sessions([f"{page}?{urlencode(warm)}"], args.timeout, 0))
        log, stop = HealthLog(), threading.Event()
        if pid is not None:
            log.rss_start_mib = rss_mib(pid)
        watcher = threading.Thread(target=watch, args=(url, pid, log, stop, 0.5), daemon=True)
        watcher.start()
        start, cpu_start = time.monotonic(), cpu_seconds(pid)
        try:
            results = asyncio.run(run_sessions(urls, args.timeout, args.stagger, kinds))
        finally:
            stop.set()
            watcher.join(10)
        report = summarize(results, log, time.monotonic() - start, pid, cpu_seconds(pid) - cpu_start)
        report["memory_limit_mib"] = (args.memory_limit
                                      or float(os.environ.get("NORMLAB_MAX_MEMORY_MB") or 2048))
    finally:
        if proc is not None:
            stop_server(proc)
    print(format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=str) + "\n")
    if args.mix:  # a lecture hall: every session ends well, no poll missed, memory under the limit
        ok = (report["ended_well"] == report["sessions"] and report["health"]["failures"] == 0
              and report["markup_leaked"] == 0 and report["server_vmhwm_mib"] < report["memory_limit_mib"])
    else:
        ok = report["completed"] == report["sessions"] and report["health"]["stayed_up"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
