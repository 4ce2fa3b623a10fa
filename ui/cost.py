"""What a choice costs before it runs: the engine's paper estimate and a time from measured throughput.

The time model is one number per machine, seconds per GFLOP, learnt from the probes this server has
run (``record``), with a measured starting value, plus a fixed overhead per network. No Streamlit here.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Sequence

from normlab import ModelConfig, ProbeConfig
from normlab.budget import estimate_cost

# Measured on a 2-core CPU, one torch thread per probe: 0.015-0.035 s per estimated GFLOP across the
# ResNet, CNN and preset sizes (the default ResNet 8x16 at batch 32 of 16x16 images: 1.4 GFLOP, 0.04 s),
# plus a few milliseconds to build the net and hooks.
START_SECONDS_PER_GFLOP = 0.03
OVERHEAD_SECONDS = 0.01
_SAMPLES: deque[float] = deque(maxlen=64)  # seconds per GFLOP of recent probes on this server


def record(gflop: float, seconds: float) -> None:
    """Learn from one finished probe (only those large enough for the compute to dominate)."""
    if gflop > 0.05 and seconds > OVERHEAD_SECONDS:
        _SAMPLES.append((seconds - OVERHEAD_SECONDS) / gflop)


def seconds_per_gflop() -> float:
    return statistics.median(_SAMPLES) if _SAMPLES else START_SECONDS_PER_GFLOP


def estimate_seconds(models: Sequence[ModelConfig], probe: ProbeConfig) -> float:
    """Estimated wall time to probe every network once (a cached network costs nothing)."""
    rate = seconds_per_gflop()
    return sum(OVERHEAD_SECONDS * probe.seeds + estimate_cost(m, probe).gflop * rate for m in models)


def cost_summary(models: Sequence[ModelConfig], probe: ProbeConfig) -> str:
    """One line for the sidebar: compute, memory and the expected time of a fresh run."""
    costs = [estimate_cost(m, probe) for m in models]
    gflop = sum(c.gflop for c in costs)
    memory = max(c.memory_mb for c in costs)
    seconds = estimate_seconds(models, probe)
    return (f"Cost of a fresh run: {len(models)} network{'s' * (len(models) > 1)} × {probe.seeds} "
            f"seed{'s' * (probe.seeds > 1)} · {gflop:.2g} GFLOP · peak {memory:.0f} MiB · "
            f"≈ {seconds:.1f} s here (results are cached: seen configs redraw at once)")
