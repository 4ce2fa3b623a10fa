"""Every ``NORMLAB_*`` setting of the engine, parsed once: the limits, the serving gate's slots and threads.

Two sets of limits:

- ``server_limits()``: the dashboard's. The defaults of :class:`Limits`, each overridden by its
  environment variable below. The operator's word.
- ``local_limits()``: the command line's and the Python API's (``check_budget(..., limits=None)``,
  ``run_probes``, ``run_sweep``, ``run_training``, ``run_study``). No operator limit unless its variable
  is set; memory is always bounded by what this machine can hold (MemAvailable less a margin).

Environment variables (read when the limits are made; unset means the default, or no limit locally):

    NORMLAB_MAX_DEPTH         layers of an mlp/cnn, or residual blocks of a resnet (depth x stages)
    NORMLAB_MAX_WIDTH         widest layer anywhere (a resnet doubles its width at every stage)
    NORMLAB_MAX_BATCH         batch size of one probe (or one training step)
    NORMLAB_MAX_SEEDS         seeds of one probe (or of a training study)
    NORMLAB_MAX_COST          estimated GFLOP of one probe: (forward + backward + statistics) x seeds
    NORMLAB_MAX_MEMORY_MB     estimated peak memory of the process while it probes, in MiB
    NORMLAB_MAX_SWEEP_POINTS  combinations in one sweep
    NORMLAB_MAX_SWEEP_COST    estimated GFLOP of a whole sweep, all its points together
    NORMLAB_MAX_SECONDS       predicted wall time of one request (a probe, a page, a sweep, a training)
    NORMLAB_HARD_SECONDS      a computation still running after this many seconds is stopped
    NORMLAB_MAX_CONCURRENT    computations at the same time in a server (default 2; 1 to 256)
    NORMLAB_QUEUE_TIMEOUT     seconds a computation may wait for a slot (default 120; at most a day)
    NORMLAB_TORCH_THREADS     torch threads per computation (default: the CPUs / max concurrent; 1 to 1024)
    NORMLAB_CALIBRATION       a JSON file of measured cost-model coefficients (normlab.ops.calibration)

A malformed value is a ValueError naming the variable and what is allowed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields

MIB = 2**20
DEFAULT_MAX_CONCURRENT = 2  # a small CPU server: two probes at once keep both cores busy
DEFAULT_QUEUE_TIMEOUT = 120.0  # seconds; longer than any in-budget probe takes on two cores
# Ranges of the operator's settings; beyond them a value is a typo, not a choice.
MAX_SLOTS = 256
MAX_QUEUE_TIMEOUT = 86_400.0  # a day
MAX_THREADS = 1024

MIB = 2**20
# Resident memory of a serving process before it probes anything: the interpreter, torch, numpy,
# pandas, streamlit, plotly and the app, after one tiny probe. Measured here (VmRSS, /proc/self/status):
# 218 MiB with torch alone, 288 MiB with the engine, 343 MiB with the dashboard's imports.
BASE_MEMORY_MB = 340.0
# Local runs may use what the machine has free, less this share (other processes, the page cache).
MEMORY_MARGIN = 0.1

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


def server_limits(environ: Mapping[str, str] | None = None) -> Limits:
    """The dashboard's limits: the defaults of :class:`Limits`, overridden by ``NORMLAB_MAX_*``.

    Predictions assume the torch threads the serving gate gives each computation
    (``torch_threads``).
    """
    environ = os.environ if environ is None else environ
    slots = max_concurrent(environ)
    return Limits(**_env_limits(environ), threads=torch_threads(slots, environ))


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


def local_limits(environ: Mapping[str, str] | None = None) -> Limits:
    """The command line's and the API's limits: only those the environment sets, and this machine's memory.

    Memory is the smaller of ``NORMLAB_MAX_MEMORY_MB`` (when set) and what the machine has free.
    """
    environ = os.environ if environ is None else environ
    values = {f.name: math.inf for f in fields(Limits) if f.name in ENV_VARS}
    values.update(_env_limits(environ))
    machine = machine_memory_mb()
    if machine < values["max_memory_mb"]:
        values.update(max_memory_mb=machine, machine_memory=True)
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


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota (docker --cpus)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


def max_concurrent(environ: Mapping[str, str] | None = None) -> int:
    """Computations a server runs at once: NORMLAB_MAX_CONCURRENT."""
    environ = os.environ if environ is None else environ
    return env_number(environ, "NORMLAB_MAX_CONCURRENT", int, DEFAULT_MAX_CONCURRENT, MAX_SLOTS)


def queue_timeout(environ: Mapping[str, str] | None = None) -> float:
    """Seconds a computation may wait for a slot: NORMLAB_QUEUE_TIMEOUT."""
    environ = os.environ if environ is None else environ
    return env_number(environ, "NORMLAB_QUEUE_TIMEOUT", float, DEFAULT_QUEUE_TIMEOUT, MAX_QUEUE_TIMEOUT)


def torch_threads(max_concurrent: int, environ: Mapping[str, str] | None = None) -> int:
    """Threads per computation: NORMLAB_TORCH_THREADS, else the CPUs shared among the K slots."""
    environ = os.environ if environ is None else environ
    return env_number(environ, "NORMLAB_TORCH_THREADS", int,
                       max(1, available_cpus() // max_concurrent), MAX_THREADS)
