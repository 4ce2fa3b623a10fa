"""The store's records of the engine's two computations: a probe's frame and a training run's frames.

A probe is stored as its frame (kind ``probe``, keyed by its model and probe configs); a sweep is a list
of probe records, so a sweep point and the same single probe share one record. A training run is one
record (kind ``train``, keyed by its model and train configs): its one-row summary, with its curve and
probe frames beside it, written first, so a record that exists is whole. The sweeps and studies
(normlab.ops.run), the dashboard and its warm-up all read and write them through here.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from normlab.core.config import ModelConfig, ProbeConfig
from normlab.core.train_config import TrainConfig
from normlab.ops.store import ResultStore, describe, record_key

if TYPE_CHECKING:
    from normlab.science.training import TrainResult

log = logging.getLogger(__name__)

PROBE = "probe"
TRAIN = "train"
# The frames of a training record: the run's summary row (the record itself), then the frames beside it.
TRAIN_FRAMES = ("summary", "curve", "probes_init", "probes_after", "probes")


def probe_key(model: ModelConfig, probe: ProbeConfig) -> str:
    return record_key(PROBE, model, probe)


def train_key(model: ModelConfig, train: TrainConfig) -> str:
    return record_key(TRAIN, model, train)


def _refused(store: ResultStore, err: Exception) -> bool:
    """Whether ``err`` is the store's folder refusing this process: then it was said once, with the fix,
    and every later read or write of it stays quiet instead of logging a traceback each time."""
    return isinstance(err, OSError) and store.refused(err)


def put_probe(store: ResultStore, model: ModelConfig, probe: ProbeConfig, frame: pd.DataFrame) -> Path:
    """Store one probe's frame."""
    return store.put(PROBE, probe_key(model, probe), frame, describe(PROBE, model, probe))


def get_probe(store: ResultStore, model: ModelConfig, probe: ProbeConfig) -> pd.DataFrame | None:
    """The stored frame of one probe; None when the store does not hold it."""
    return store.get(PROBE, probe_key(model, probe))


def load_probe(store: ResultStore | None, model: ModelConfig, probe: ProbeConfig) -> pd.DataFrame | None:
    """The stored frame of one probe, or None (no store, never computed, or an unreadable record)."""
    if store is None:
        return None
    try:
        return get_probe(store, model, probe)
    except Exception as err:  # a damaged file is a miss: the probe runs again and rewrites it
        if not _refused(store, err):
            log.warning("unreadable probe record in %s; computing it again", store, exc_info=True)
        return None


def save_probe(store: ResultStore | None, model: ModelConfig, probe: ProbeConfig,
               frame: pd.DataFrame) -> None:
    """Write one probe's frame; a store that cannot be written (full, read-only) is logged, not raised.

    A folder this process may not write is logged once, with the fix (``ResultStore.writable``), and
    never tried again: the result stays in the caller's memory.
    """
    if store is None or not store.writable():
        return
    try:
        put_probe(store, model, probe, frame)
    except Exception as err:
        if not _refused(store, err):
            log.warning("could not write a probe record to %s", store, exc_info=True)


def load_training(store: ResultStore | None, model: ModelConfig, train: TrainConfig) -> TrainResult | None:
    """The stored run, or None. A stored run equals the computed one (frames through Parquet); the record
    is the sweeps' and studies' own (``put_train``), whoever wrote it."""
    if store is None:
        return None
    try:
        return get_train(store, model, train)
    except Exception as err:
        if not _refused(store, err):
            log.warning("unreadable training record in %s; training again", store, exc_info=True)
        return None


def save_training(store: ResultStore | None, result: TrainResult) -> None:
    """Write a finished run (a run stopped early is not a result of its configs and is never written).

    A store that cannot be written is logged as ``save_probe`` logs it: once, with the fix.
    """
    if store is None or result.stopped or not store.writable():
        return
    try:
        put_train(store, result)
    except Exception as err:
        if not _refused(store, err):
            log.warning("could not write a training record to %s", store, exc_info=True)


def put_train(store: ResultStore, result) -> Path:
    """Store a finished training run: its summary row as the record, its curve and probe frames beside it."""
    assert not result.stopped, "a stopped run is not a result to keep"
    key = record_key(TRAIN, result.model_config, result.train_config)
    frames = {"summary": pd.DataFrame([result.summary()]),
              **{name: getattr(result, name) for name in TRAIN_FRAMES[1:]}}
    return store.put_frames(TRAIN, key, frames,
                            describe(TRAIN, result.model_config, result.train_config))


def get_train(store: ResultStore, model_config, train_config):
    """The stored run of these configs as a ``TrainResult``; None when the store does not hold it."""
    from normlab.science.training import TrainResult  # torch: only when a stored run is actually read

    frames = store.get_frames(TRAIN, record_key("train", model_config, train_config), TRAIN_FRAMES)
    if frames is None:
        return None
    row = frames["summary"].iloc[0]
    return TrainResult(model_config, train_config, frames["curve"], frames["probes_init"],
                       frames["probes_after"], diverged=bool(row["diverged"]), stopped=False,
                       seconds=float(row["seconds"]), probes=frames["probes"])
