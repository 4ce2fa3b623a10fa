"""Every ``NORMLAB_*`` setting of the engine, parsed once: the limits, the serving gate's slots and threads.

Two sets of limits:

- ``server_limits()``: the dashboard's. The defaults of :class:`Limits`, each overridden by its
  environment variable below. The operator's word.
- ``local_limits()``: the command line's and the Python API's (``check_budget(..., limits=None)``,
  ``run_probes``, ``run_sweep``, ``run_training``, ``run_study``). No operator limit unless its variable
  is set; memory is always bounded by what this machine can hold (MemAvailable less a margin, and
  in a container its memory limit less a headroom).

Environment variables (read when the limits are made; unset means the default, or no limit locally):

    NORMLAB_MAX_DEPTH         layers of an mlp/cnn, or residual blocks of a resnet (depth x stages)
    NORMLAB_MAX_WIDTH         widest layer anywhere (a resnet doubles its width at every stage)
    NORMLAB_MAX_BATCH         batch size of one probe (or one training step)
    NORMLAB_MAX_SEEDS         seeds of one probe (or of a training study)
    NORMLAB_MAX_SEQ_LEN       tokens per sequence of a transformer (its attention grows as T^2)
    NORMLAB_MAX_COST          estimated GFLOP of one probe: (forward + backward + statistics) x seeds
    NORMLAB_MAX_MEMORY_MB     estimated peak memory of the process while it probes, in MiB (in a container,
                              at most its memory limit less a headroom)
    NORMLAB_MAX_SWEEP_POINTS  combinations in one sweep
    NORMLAB_MAX_SWEEP_COST    estimated GFLOP of a whole sweep, all its points together
    NORMLAB_MAX_SECONDS       predicted wall time of one request (a probe, a page, a sweep, a training)
    NORMLAB_HARD_SECONDS      a computation still running after this many seconds is stopped
    NORMLAB_MAX_CONCURRENT    computations at the same time in a server (default 2; 1 to 256; at most the
                              container's CPU quota)
    NORMLAB_QUEUE_TIMEOUT     seconds a computation may wait for a slot (default 120; at most a day)
    NORMLAB_TORCH_THREADS     torch threads per computation (default: the CPUs / max concurrent; 1 to 1024)
    NORMLAB_CALIBRATION       a JSON file of measured cost-model coefficients (normlab.ops.calibration)

A malformed value is a ValueError naming the variable and what is allowed.

In a container (``docker run --memory/--cpus``) the limits also follow the box it runs in: its cgroup's
memory limit, less a headroom, caps ``max_memory_mb``, and its CPU quota caps the server's slots and
threads. A larger setting is lowered, and the server's log says so once (``logging``, at WARNING).
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

MIB = 2**20
DEFAULT_MAX_CONCURRENT = 2  # a small CPU server: two probes at once keep both cores busy
DEFAULT_QUEUE_TIMEOUT = 120.0  # seconds; longer than any in-budget probe takes on two cores
# Ranges of the operator's settings; beyond them a value is a typo, not a choice.
MAX_SLOTS = 256
MAX_QUEUE_TIMEOUT = 86_400.0  # a day
MAX_THREADS = 1024

# Resident memory of a serving process before it probes anything: the interpreter, torch, numpy,
# pandas, streamlit, plotly and the app, after one tiny probe. Measured here (VmRSS, /proc/self/status):
# 218 MiB with torch alone, 288 MiB with the engine, 343 MiB with the dashboard's imports.
BASE_MEMORY_MB = 340.0
# Local runs may use what the machine has free, less this share (other processes, the page cache).
MEMORY_MARGIN = 0.1

log = logging.getLogger(__name__)

# The cgroup of a container (cgroup namespaces put its own at the mount point): v2 files at the top, v1
# files under one folder per controller.
CGROUP_ROOT = Path("/sys/fs/cgroup")
# v1 writes "no limit" as the largest page-aligned signed 64-bit number (9223372036854771712): any limit
# this large (an exbibyte) is none.
NO_LIMIT_BYTES = 2**60
# What a container's memory limit must hold besides the computations the estimates count: the launcher
# (~20 MiB), Streamlit's sessions and their figures on the way to the browser, the in-process results
# cache (up to 512 frames; the 340 MiB base was measured after one probe, with an empty cache), and the
# estimate's own error (a few percent, measured). The kernel kills the whole server when the cgroup is
# full, so this is left out of NORMLAB_MAX_MEMORY_MB: 256 MiB, or a tenth of a larger limit. The page
# cache of the store's files is charged to the cgroup too, but the kernel reclaims it before it kills.
CONTAINER_HEADROOM_MB = 256.0
CONTAINER_HEADROOM_SHARE = 0.1

@dataclass(frozen=True)
class Limits:
    """The largest request this process agrees to run.

    The defaults are the dashboard's on a small CPU server: every preset of the paper at batch 64 and
    one seed fits, with room for the deep unnormalized nets that overflow float32 at small widths.
    ``local_limits()`` lifts every one of them that the environment does not set.
    """

    max_depth: int = 1024  # layers or residual blocks; unnormalized resnets overflow float32 near 300
    max_width: int = 1024  # the vgg presets reach 512 channels
    max_batch: int = 256  # rank plots want more samples than channels for the small nets
    max_seeds: int = 16
    # resnet56 at batch 64 costs ~140 GFLOP a seed: about 2 s on one core of a small server
    max_cost_gflop: float = 300.0
    # the whole process: ~340 MiB base + resnet56 at batch 64 (~600 MiB, 1.7 GiB with EvoNorm-S0)
    max_memory_mb: float = 2048.0
    max_sweep_points: int = 256  # combinations in one sweep
    max_sweep_cost_gflop: float = 1500.0  # a whole sweep: about five full-size probes
    # A request predicted to hold a compute slot longer than this is refused before it queues:
    # resnet56 at batch 64 takes ~3-7 s on one busy core, a claim card's page well under that; one
    # network of the lecture hall's worst link (8 seeds of a 1024-block resnet) ~2 minutes, the
    # whole link (10 normalizers) ~19 minutes.
    max_seconds: float = 60.0
    hard_seconds: float = 240.0  # a running computation is stopped here (the prediction was wrong)
    # Torch threads the predictions assume; 0: the threads this process computes with now.
    threads: int = 0
    # True when max_memory_mb is this machine's free memory rather than an operator's limit.
    machine_memory: bool = False
    # True when max_memory_mb is what the container's memory limit leaves (``container_memory_mb``).
    container_memory: bool = False
    max_seq_len: int = 512  # a transformer's tokens T: its attention scores are N x H x T x T

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.name not in ENV_VARS:
                continue
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"limit {f.name} must be a positive number; got {value!r}")
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 0:
            raise ValueError(f"threads must be a whole number >= 0 (0: the current count); "
                             f"got {self.threads!r}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Limits:
        """The server's limits: the defaults, overridden by the ``NORMLAB_MAX_*`` variables."""
        return cls(**_env_limits(os.environ if environ is None else environ))


# The environment variable behind each limit.
ENV_VARS = {
    "max_depth": "NORMLAB_MAX_DEPTH",
    "max_width": "NORMLAB_MAX_WIDTH",
    "max_batch": "NORMLAB_MAX_BATCH",
    "max_seeds": "NORMLAB_MAX_SEEDS",
    "max_seq_len": "NORMLAB_MAX_SEQ_LEN",
    "max_cost_gflop": "NORMLAB_MAX_COST",
    "max_memory_mb": "NORMLAB_MAX_MEMORY_MB",
    "max_sweep_points": "NORMLAB_MAX_SWEEP_POINTS",
    "max_sweep_cost_gflop": "NORMLAB_MAX_SWEEP_COST",
    "max_seconds": "NORMLAB_MAX_SECONDS",
    "hard_seconds": "NORMLAB_HARD_SECONDS",
}


def _env_limits(environ: Mapping[str, str]) -> dict:
    """The limits the environment sets; a malformed value raises a ValueError naming its variable."""
    values = {}
    for f in fields(Limits):
        if f.name in ENV_VARS:
            value = env_number(environ, ENV_VARS[f.name], int if f.type in ("int", int) else float, None)
            if value is not None:
                values[f.name] = value
    return values


def server_limits(environ: Mapping[str, str] | None = None, cgroup_root: Path | None = None) -> Limits:
    """The dashboard's limits: the defaults of :class:`Limits`, overridden by ``NORMLAB_MAX_*``.

    In a container, ``max_memory_mb`` is at most what its memory limit leaves
    (:func:`container_memory_mb`): the kernel kills the whole server when the container is full, so a
    larger NORMLAB_MAX_MEMORY_MB (or the default) is lowered, and logged once, rather than trusted.
    Predictions assume the torch threads the serving gate gives each computation (``torch_threads``).

    Args:
        environ: the settings; default ``os.environ``.
        cgroup_root: where the cgroup file system is mounted; default ``CGROUP_ROOT``.
    """
    environ = os.environ if environ is None else environ
    values = _env_limits(environ)
    box = _container_memory(cgroup_root)
    asked = values.get("max_memory_mb", Limits.max_memory_mb)
    if box is not None and box[1] < asked:
        limit, cap = box
        name = ENV_VARS["max_memory_mb"]
        set_by = f"{name}={asked:g}" if "max_memory_mb" in values else f"{name}'s default {asked:g}"
        too_small = (f" That is less than the server's own ~{BASE_MEMORY_MB:.0f} MiB: every computation will "
                     f"be refused; give the container --memory 1g or more." if cap < BASE_MEMORY_MB else "")
        _warn_once(f"{set_by} is more than this container's memory allows: computations share at most "
                   f"{cap:,.0f} MiB, its memory limit {limit:,.0f} MiB less {limit - cap:,.0f} MiB for the "
                   f"server itself (docker run --memory; the kernel would kill the whole server at the "
                   f"limit).{too_small}")
        values.update(max_memory_mb=cap, container_memory=True)
    slots = max_concurrent(environ, cgroup_root)
    return Limits(**values, threads=torch_threads(slots, environ, cgroup_root))


def machine_memory_mb() -> float:
    """Memory this machine can give a new computation: MemAvailable (or free pages) less a margin."""
    available = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError):
        pass
    if available is None:
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return math.inf  # nothing to go by: the allocator will say
    return (1 - MEMORY_MARGIN) * available / MIB


def local_limits(environ: Mapping[str, str] | None = None, cgroup_root: Path | None = None) -> Limits:
    """The command line's and the API's limits: only those the environment sets, and this machine's memory.

    Memory is the smallest of ``NORMLAB_MAX_MEMORY_MB`` (when set), what the machine has free and, in a
    container, what its memory limit leaves (MemAvailable there is the host's).

    Args:
        environ: the settings; default ``os.environ``.
        cgroup_root: where the cgroup file system is mounted; default ``CGROUP_ROOT``.
    """
    environ = os.environ if environ is None else environ
    values = {f.name: math.inf for f in fields(Limits) if f.name in ENV_VARS}
    values.update(_env_limits(environ))
    machine = machine_memory_mb()
    if machine < values["max_memory_mb"]:
        values.update(max_memory_mb=machine, machine_memory=True)
    container = container_memory_mb(cgroup_root)
    if container is not None and container < values["max_memory_mb"]:
        values.update(max_memory_mb=container, container_memory=True, machine_memory=False)
    return Limits(**values)


def env_number(environ: Mapping[str, str], name: str, kind: type, default, high: float | None = None):
    """A positive setting from the environment, at most ``high``; unset or blank: ``default``."""
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a positive {'whole ' if kind is int else ''}number; got {raw!r}")
    if high is not None and value > high:
        low = "1" if kind is int else "0 (exclusive)"
        raise ValueError(f"{name} must be between {low} and {high:g}; got {raw!r}")
    return value


def _read_cgroup(path: Path) -> str | None:
    """A cgroup file's text, stripped; None when it is absent or unreadable (no such cgroup, not Linux)."""
    try:
        return path.read_text().strip()
    except (OSError, ValueError):
        return None


def cgroup_memory_mb(cgroup_root: Path | None = None) -> float | None:
    """The memory limit of the container this process runs in (``docker run --memory``), in MiB.

    cgroup v2's ``memory.max``, else v1's ``memory/memory.limit_in_bytes``.

    Args:
        cgroup_root: where the cgroup file system is mounted; default ``CGROUP_ROOT``.

    Returns:
        The limit, or None when there is none ("max", v1's huge "no limit", no cgroup file).
    """
    root = CGROUP_ROOT if cgroup_root is None else Path(cgroup_root)
    for path in (root / "memory.max", root / "memory" / "memory.limit_in_bytes"):
        raw = _read_cgroup(path)
        if raw is None:
            continue
        try:
            limit = int(raw)
        except ValueError:  # v2's "max", or a file we cannot read as a number: no limit to go by
            return None
        return limit / MIB if 0 < limit < NO_LIMIT_BYTES else None
    return None


def _container_memory(cgroup_root: Path | None) -> tuple[float, float] | None:
    """(the container's memory limit, what it leaves for computations), in MiB; None: no limit."""
    limit = cgroup_memory_mb(cgroup_root)
    if limit is None:
        return None
    # never more than half the limit: a tiny container still gets a positive (if useless) budget
    headroom = min(max(CONTAINER_HEADROOM_MB, CONTAINER_HEADROOM_SHARE * limit), limit / 2)
    return limit, limit - headroom


def container_memory_mb(cgroup_root: Path | None = None) -> float | None:
    """What a container's memory limit leaves for the computations, MiB: the limit less a headroom.

    The headroom (``CONTAINER_HEADROOM_MB``, or ``CONTAINER_HEADROOM_SHARE`` of a larger limit) holds what
    the estimates do not count. None outside a memory-limited container.

    Args:
        cgroup_root: where the cgroup file system is mounted; default ``CGROUP_ROOT``.
    """
    box = _container_memory(cgroup_root)
    return None if box is None else box[1]


def cgroup_cpus(cgroup_root: Path | None = None) -> float | None:
    """The CPU quota of the container this process runs in (``docker run --cpus``), in CPUs.

    cgroup v2's ``cpu.max`` ("quota period", or "max period"), else v1's ``cpu/cpu.cfs_quota_us`` over
    ``cpu/cpu.cfs_period_us`` (a quota of -1 is none).

    Args:
        cgroup_root: where the cgroup file system is mounted; default ``CGROUP_ROOT``.

    Returns:
        The quota (1.5 for ``--cpus 1.5``), or None when there is none.
    """
    root = CGROUP_ROOT if cgroup_root is None else Path(cgroup_root)
    v2 = _read_cgroup(root / "cpu.max")
    if v2 is not None:
        quota, _, period = v2.partition(" ")
    else:
        quota = _read_cgroup(root / "cpu" / "cpu.cfs_quota_us")
        period = _read_cgroup(root / "cpu" / "cpu.cfs_period_us")
    try:
        cpus = int(quota) / int(period)
    except (TypeError, ValueError, ZeroDivisionError):  # no file, "max", or malformed: no quota
        return None
    return cpus if cpus > 0 else None


def quota_cpus(cgroup_root: Path | None = None) -> int | None:
    """The container's CPU quota in whole CPUs (rounded up, at least 1); None: no quota."""
    cpus = cgroup_cpus(cgroup_root)
    return None if cpus is None else max(1, math.ceil(cpus))


def _quota_words(cgroup_root: Path | None) -> str:
    cpus = cgroup_cpus(cgroup_root)
    return f"this container's CPU quota, {cpus:g} CPU{'' if cpus == 1 else 's'} (docker run --cpus)"


def available_cpus(cgroup_root: Path | None = None) -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup CPU quota (``docker run --cpus``).

    Args:
        cgroup_root: where the cgroup file system is mounted; default ``CGROUP_ROOT``.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    quota = quota_cpus(cgroup_root)
    return max(1, cpus if quota is None else min(cpus, quota))


_said: set[str] = set()
_said_lock = threading.Lock()


def _warn_once(message: str) -> None:
    """Log ``message`` at WARNING the first time this process says it: the limits are read per request, and
    an operator wants the line once in the server's log, not once a visit."""
    with _said_lock:
        if message in _said:
            return
        _said.add(message)
    log.warning(message)


def max_concurrent(environ: Mapping[str, str] | None = None, cgroup_root: Path | None = None) -> int:
    """Computations a server runs at once: NORMLAB_MAX_CONCURRENT, at most the container's CPU quota.

    More slots than CPUs only slow every computation down and add their memory together, so a larger
    setting (or the default) is lowered to the quota, and logged once.

    Args:
        environ: the settings; default ``os.environ``.
        cgroup_root: where the cgroup file system is mounted; default ``CGROUP_ROOT``.
    """
    environ = os.environ if environ is None else environ
    slots = env_number(environ, "NORMLAB_MAX_CONCURRENT", int, DEFAULT_MAX_CONCURRENT, MAX_SLOTS)
    quota = quota_cpus(cgroup_root)
    if quota is not None and slots > quota:
        said = ("NORMLAB_MAX_CONCURRENT={slots}" if environ.get("NORMLAB_MAX_CONCURRENT", "").strip() else
                "NORMLAB_MAX_CONCURRENT's default {slots}").format(slots=slots)
        _warn_once(f"{said} is more than {_quota_words(cgroup_root)}: {quota} computation"
                   f"{'s' if quota > 1 else ''} at a time")
        slots = quota
    return slots


def queue_timeout(environ: Mapping[str, str] | None = None) -> float:
    """Seconds a computation may wait for a slot: NORMLAB_QUEUE_TIMEOUT."""
    environ = os.environ if environ is None else environ
    return env_number(environ, "NORMLAB_QUEUE_TIMEOUT", float, DEFAULT_QUEUE_TIMEOUT, MAX_QUEUE_TIMEOUT)


def torch_threads(max_concurrent: int, environ: Mapping[str, str] | None = None,
                  cgroup_root: Path | None = None) -> int:
    """Threads per computation: NORMLAB_TORCH_THREADS, else the CPUs shared among the K slots.

    A setting above the container's CPU quota is lowered to it (threads beyond the CPUs only wait for each
    other), and logged once.

    Args:
        max_concurrent: the slots K the CPUs are shared among.
        environ: the settings; default ``os.environ``.
        cgroup_root: where the cgroup file system is mounted; default ``CGROUP_ROOT``.
    """
    environ = os.environ if environ is None else environ
    threads = env_number(environ, "NORMLAB_TORCH_THREADS", int,
                         max(1, available_cpus(cgroup_root) // max_concurrent), MAX_THREADS)
    quota = quota_cpus(cgroup_root)
    if quota is not None and threads > quota:
        _warn_once(f"NORMLAB_TORCH_THREADS={threads} is more than {_quota_words(cgroup_root)}: {quota} "
                   f"thread{'s' if quota > 1 else ''} per computation")
        threads = quota
    return threads
