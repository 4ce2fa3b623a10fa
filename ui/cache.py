"""Engine calls cached on the frozen configs, shared by every session of this server.

``st.cache_data`` hashes a frozen dataclass by its fields, so two sessions asking for the same network
and probe share one computation. Plot options never reach these functions, so they never recompute.
Every computation passes the serving gate, which also fits torch's threads to the machine: on two
cores one thread per probe runs about ten times faster than two threads fighting another process.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import pandas as pd
import streamlit as st

from normlab import ModelConfig, ProbeConfig, run_probes, run_sweep
from normlab.budget import estimate_cost
from normlab.probes import probe_detail as detail_pass
from normlab.serving import compute
from ui.cost import record

Progress = Callable[[int, int, str], None]


def _queue_status(status) -> Callable:
    """``on_wait`` for the serving gate: this session's place in the queue, shown in ``status``."""
    return lambda s: status.info(s.message, icon=":material/hourglass_top:")


@st.cache_data(show_spinner=False, max_entries=512)
def probe(model_config: ModelConfig, probe_config: ProbeConfig) -> pd.DataFrame:
    """``run_probes`` for one network, remembered across sessions and reruns."""
    status = st.empty()  # made inside: a cache hit replays it as an empty slot

    def timed() -> pd.DataFrame:
        start = time.perf_counter()  # the compute alone: time spent queued says nothing of the machine
        frame = run_probes(model_config, probe_config)
        record(estimate_cost(model_config, probe_config).gflop, time.perf_counter() - start)
        return frame

    try:
        return compute(("probe", model_config, probe_config), timed, on_wait=_queue_status(status))
    finally:
        status.empty()


def probe_all(models: Sequence[ModelConfig], probe_config: ProbeConfig) -> pd.DataFrame:
    """One frame for every compared network (each cached on its own, so adding one costs one run)."""
    return pd.concat([probe(m, probe_config) for m in models], ignore_index=True)


@st.cache_data(show_spinner=False, max_entries=64)
def sweep(model_config: ModelConfig, probe_config: ProbeConfig, over: tuple[tuple[str, tuple], ...],
          _progress: Progress | None = None) -> pd.DataFrame:
    """``run_sweep`` over ``over`` (a tuple of (field, values) pairs, hashable); progress is not hashed."""
    status = st.empty()
    try:
        return compute(("sweep", model_config, probe_config, over),
                       lambda: run_sweep(model_config, probe_config, dict(over), progress=_progress),
                       on_wait=_queue_status(status))
    finally:
        status.empty()


@st.cache_data(show_spinner=False, max_entries=128)
def probe_detail(model_config: ModelConfig, probe_config: ProbeConfig):
    """``normlab.probes.probe_detail`` (the first seed's cosine matrices, projections and samples)."""
    status = st.empty()

    def timed():
        start = time.perf_counter()
        detail = detail_pass(model_config, probe_config)
        one_seed = estimate_cost(model_config, probe_config).gflop / probe_config.seeds
        record(one_seed, time.perf_counter() - start)
        return detail

    try:
        return compute(("detail", model_config, probe_config), timed, on_wait=_queue_status(status))
    finally:
        status.empty()
