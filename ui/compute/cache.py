"""Engine results for the dashboard: admitted first, computed once for the whole server, drawn by the caller.

Data is cached, never widgets: nothing here creates or touches a Streamlit element, so a result found
in memory or on disk is returned as is and the page draws progress and queue places itself (through
``on_wait`` and ``progress``, called only while something actually computes). A result is looked up
in a small in-process memory, then in the result store (``NORMLAB_STORE``, shared by every session,
process and restart, and filled ahead by ``python -m ui.warm``); only then does it run, through the serving
gate (one computation per identical config across sessions, K at a time), and is written to both.
A sweep is a list of probe records, so sweeps and single probes share their results; a training run
is stored as its frames (``ui.warm``).

``admit`` checks everything a page is about to compute against the operator's limits (the server's,
``normlab.ops.budget.server_limits``) before any of it takes a place in the queue: each network alone and
their predicted seconds together. The serving gate stops a running computation at the hard limit.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence

import pandas as pd
import streamlit as st

from normlab import ModelConfig, ProbeConfig, run_probes
from normlab.core.config import UPLOAD_INPUT, Progress
from normlab.core.train_config import TrainConfig
from normlab.ops.budget import check_many, check_sweep, check_training
from normlab.ops.cost import estimate_cost
from normlab.ops.records import (
    PROBE,
    TRAIN,
    load_probe,
    load_training,
    probe_key,
    save_probe,
    save_training,
    train_key,
)
from normlab.ops.run import run_detail as detail_pass
from normlab.ops.run import run_training
from normlab.ops.serving import QueueStatus, compute
from normlab.ops.settings import server_limits
from normlab.ops.store import default_store
from normlab.science.probes import vary
from normlab.science.study import correlate
from normlab.science.training import TrainResult

OnWait = Callable[[QueueStatus], None]

DETAIL = "detail"  # the rank page's per-point arrays (kept in memory, not in the store)
MEMORY_ENTRIES = 512  # results kept in this process: the default views and a lecture's claims, many times


class _Memory:
    """A thread-safe LRU of results by (kind, record key); the store is the lasting copy."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[Hashable, object] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable):
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: Hashable, value) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


memory = _Memory(MEMORY_ENTRIES)


def clear() -> None:
    """Forget the in-process results (the store keeps its records): tests open a 'fresh process'."""
    memory.clear()


def _compute(kind: str, key: str, fn: Callable, on_wait: OnWait | None, memory_mb: float):
    """``fn`` through the gate (which stops it at the hard limit and starts it only when its estimated
    memory fits beside the running ones), once for every session asking for the same record at once."""
    return compute((kind, key), fn, on_wait=on_wait, memory_mb=memory_mb)


# --- Probes and sweeps ------------------------------------------------------------------------------


def _server_store():
    """The result store (None when ``NORMLAB_STORE`` is off).

    Its first use in this process tries writing there: the launcher's warm-up run looks up the default
    view, so a folder the server cannot write (a root-owned bind mount) is logged once, with the fix, at
    start, and the server then serves from memory without a traceback per write.
    """
    store = default_store()
    if store is not None:
        store.writable()
    return store


def _store_for(probe_config: ProbeConfig):
    """The result store, except for uploaded images: their results stay in this process's memory only
    (keyed, as every probe, by their configs, whose ``data_dir`` is the content hash of the images)."""
    return None if probe_config.input == UPLOAD_INPUT else _server_store()


def _stored(model: ModelConfig, probe_config: ProbeConfig) -> pd.DataFrame | None:
    """The probe's frame in this process's memory (from the store when only there), not a copy."""
    key = (PROBE, probe_key(model, probe_config))
    frame = memory.get(key)
    if frame is None:
        frame = load_probe(_store_for(probe_config), model, probe_config)
        if frame is not None:
            memory.put(key, frame)
    return frame


def stored_probe(model: ModelConfig, probe_config: ProbeConfig) -> pd.DataFrame | None:
    """The probe's frame if this process or the store has it; None if it would have to run."""
    frame = _stored(model, probe_config)
    return None if frame is None else frame.copy()


def missing(pairs: Sequence[tuple[ModelConfig, ProbeConfig]]) -> list[tuple[ModelConfig, ProbeConfig]]:
    """The (network, probe) pairs that would have to run, without repeats."""
    out = []
    for pair in pairs:
        if pair not in out and _stored(*pair) is None:
            out.append(pair)
    return out


def admit(pairs: Sequence[tuple[ModelConfig, ProbeConfig]]) -> None:
    """Refuse, before anything queues, a page whose probes still to compute exceed the operator's limits.

    Raises:
        BudgetExceeded: a ValueError naming the limit, its environment variable and by how much.
    """
    todo = missing(pairs)
    if todo:
        check_many(todo, server_limits())


def admit_sweep(pairs: Sequence[tuple[ModelConfig, ProbeConfig]]) -> None:
    """As ``admit``, for a sweep: every point still to compute, and their total."""
    todo = missing(pairs)
    if todo:
        check_sweep(todo, server_limits())


def probe(model: ModelConfig, probe_config: ProbeConfig, on_wait: OnWait | None = None,
          progress: Progress | None = None) -> pd.DataFrame:
    """``run_probes`` for one network: from memory or the store when there, else computed and stored.

    Args:
        on_wait: called with the queue status while this request waits for a compute slot.
        progress: called as ``progress(done, total, label)`` after each seed, while computing.
    """
    frame = stored_probe(model, probe_config)
    if frame is not None:
        return frame
    key = probe_key(model, probe_config)

    def run() -> pd.DataFrame:
        store = _store_for(probe_config)
        found = load_probe(store, model, probe_config)  # another process may have just written it
        if found is not None:
            return found
        result = run_probes(model, probe_config, progress)
        save_probe(store, model, probe_config, result)
        return result

    frame = _compute(PROBE, key, run, on_wait, estimate_cost(model, probe_config).memory_mb)
    memory.put((PROBE, key), frame)
    return frame.copy()


def probe_all(models: Sequence[ModelConfig], probe_config: ProbeConfig, on_wait: OnWait | None = None,
              progress: Progress | None = None) -> pd.DataFrame:
    """One frame for every compared network, admitted together first (each stored on its own)."""
    pairs = [(m, probe_config) for m in models]
    admit(pairs)
    return pd.concat([probe(m, p, on_wait, progress) for m, p in pairs], ignore_index=True)


def sweep_points(model: ModelConfig, probe_config: ProbeConfig, field: str,
                 values: Sequence) -> list[tuple[ModelConfig, ProbeConfig]]:
    """The sweep's (network, probe) points: ``field`` (of either config) set to each of ``values``."""
    if field in {f.name for f in dataclasses.fields(ModelConfig)}:
        return [(vary(model, {field: v}), probe_config) for v in values]
    return [(model, dataclasses.replace(probe_config, **{field: v})) for v in values]


def sweep(model: ModelConfig, probe_config: ProbeConfig, field: str, values: Sequence,
          on_wait: OnWait | None = None, progress: Progress | None = None) -> pd.DataFrame:
    """``run_sweep`` over one field, point by point through the probe records (admitted as a whole).

    ``progress(done, total, label)`` counts points, stored ones included, so a half-stored sweep's bar
    starts where the store left off.
    """
    points = sweep_points(model, probe_config, field, values)
    admit_sweep(points)
    frames = []
    for done, (m, p) in enumerate(points):
        frames.append(probe(m, p, on_wait))
        if progress is not None:
            progress(done + 1, len(points), f"{field}={values[done]}")
    return pd.concat(frames, ignore_index=True)


def probe_detail(model: ModelConfig, probe_config: ProbeConfig, on_wait: OnWait | None = None):
    """``normlab.science.probes.probe_detail`` (the first seed's cosine matrices, projections and samples).

    Kept in this process only: the detail is arrays for the rank page's animation, rebuilt in one pass.
    """
    key = (DETAIL, probe_key(model, probe_config))
    detail = memory.get(key)
    if detail is None:
        one_pass = dataclasses.replace(probe_config, seeds=1)
        (cost,) = check_many([(model, one_pass)], server_limits())
        detail = _compute(DETAIL, key[1], lambda: detail_pass(model, probe_config), on_wait, cost.memory_mb)
        memory.put(key, detail)
    return detail


# --- Training ---------------------------------------------------------------------------------------


def stored_training(model: ModelConfig, train_config: TrainConfig) -> TrainResult | None:
    key = (TRAIN, train_key(model, train_config))
    result = memory.get(key)
    if result is None:
        result = load_training(_server_store(), model, train_config)
        if result is not None:
            memory.put(key, result)
    return result


def admit_training(runs: Sequence[tuple[ModelConfig, TrainConfig]]) -> None:
    """Refuse, before anything queues, a study whose runs still to train exceed the operator's limits."""
    limits = server_limits()
    for model, train_config in runs:
        if stored_training(model, train_config) is None:
            check_training(model, train_config, limits)


def train(model: ModelConfig, train_config: TrainConfig, on_wait: OnWait | None = None,
          progress: Progress | None = None) -> TrainResult:
    """One training run: from memory or the store when there, else trained (in the queue) and stored."""
    result = stored_training(model, train_config)
    if result is not None:
        return result
    key = train_key(model, train_config)

    def run() -> TrainResult:
        found = load_training(_server_store(), model, train_config)
        if found is not None:
            return found
        out = run_training(model, train_config, progress=progress)
        save_training(_server_store(), out)
        return out

    cost = check_training(model, train_config, server_limits())  # admitted already: its estimate
    result = _compute(TRAIN, key, run, on_wait, cost.memory_mb)
    memory.put((TRAIN, key), result)
    return result


@st.cache_data(show_spinner=False, max_entries=64)
def correlations(runs: pd.DataFrame, n_boot: int, confidence: float, seed: int) -> pd.DataFrame:
    """Pure and quick to hash: the study's rank correlations with bootstrap intervals."""
    return correlate(runs, n_boot=n_boot, confidence=confidence, seed=seed)
