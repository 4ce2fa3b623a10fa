"""The guarded entry points: check -> deadline -> backend -> store, around the unguarded science.

``run_probes``, ``run_sweep``, ``run_training``, ``run_study`` and ``run_warmup_study`` are what the
command line, the Python API and the dashboard call. Each refuses a request over the limits before
anything is allocated (normlab.ops.budget), then runs the measurement or the training of
normlab.science; the sweeps and studies run their points on a backend (normlab.ops.backends) and keep
each finished point in a result store (normlab.ops.records). Never prints; progress goes to an optional
``progress(done, total, label)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from normlab.core import catalog
from normlab.core.config import ModelConfig, ProbeConfig, Progress, ShouldStop, describe
from normlab.core.train_config import (
    StudyConfig,
    TrainConfig,
    WarmupStudyConfig,
    check_pairing,
    check_trainable,
)
from normlab.ops import records
from normlab.ops.backends import Kind, Point, check_backend, run_points
from normlab.ops.budget import (
    check_budget,
    check_runs,
    check_study,
    check_sweep,
    check_sweep_points,
    check_training,
)
from normlab.ops.store import ResultStore

if TYPE_CHECKING:  # the science is imported when a computation runs: the CLI's --help loads no torch
    import pandas as pd

    from normlab.science.probes import ProbeDetail
    from normlab.science.study import StudyResult
    from normlab.science.training import TrainResult
    from normlab.science.warmup import WarmupStudyResult



def run_probes(model_config: ModelConfig, probe_config: ProbeConfig,
               progress: Progress | None = None) -> pd.DataFrame:
    """Probe a network at initialization for every seed of ``probe_config``, within the limits.

    Args:
        model_config: the network.
        probe_config: inputs, batch size, seeds, device, rank tolerance.
        progress: called as ``progress(done, total, label)`` after each seed.

    Returns:
        A tidy frame, one row per (seed, layer, metric); columns ``FRAME_COLUMNS`` (docs/probes.md).

    Raises:
        BudgetExceeded: over a limit (normlab.ops.settings), before anything is allocated.
    """
    from normlab.science import probes

    probes.check_configs(model_config, probe_config)
    probes.check_progress(progress)
    check_budget(model_config, probe_config)  # the operator's limits, before anything is allocated
    return probes.measure(model_config, probe_config, progress)


def run_detail(model_config: ModelConfig, probe_config: ProbeConfig, **options) -> ProbeDetail:
    """``probe_detail`` (the first seed's pictures of the samples), within the limits of one seed."""
    from normlab.science import probes

    probes.check_configs(model_config, probe_config)
    check_budget(model_config, dataclasses.replace(probe_config, seeds=1))
    return probes.probe_detail(model_config, probe_config, **options)


def run_sweep(model_config: ModelConfig, probe_config: ProbeConfig, over: Mapping[str, Sequence],
              progress: Progress | None = None, backend: str = "local", address: str | None = None,
              store: ResultStore | None = None) -> pd.DataFrame:
    """Probe the cartesian product of field values in ``over``; one concatenated frame.

    Args:
        model_config: the base network.
        probe_config: the base probe settings.
        over: field name -> list of values, fields of ModelConfig or ProbeConfig, for example
            ``{"norm": ["batchnorm", "groupnorm"], "depth": [4, 8]}``. Every combination is
            validated before anything runs.
        progress: called as ``progress(done, total, label)`` after each seed of each combination
            (on Ray, after each combination).
        backend: ``"local"`` runs the combinations here one by one, ``"ray"`` one Ray task each
            (see normlab.ops.backends); the frame is the same.
        address: the Ray cluster to join; None starts a local Ray.
        store: a ResultStore that keeps each finished combination (a probe record) and supplies
            those it already holds, so a rerun resumes; None keeps nothing.

    Returns:
        The frames of :func:`run_probes` for every combination, concatenated in the sweep's order.
    """
    import pandas as pd

    from normlab.science import probes

    probes.check_configs(model_config, probe_config)
    probes.check_progress(progress)
    check_backend(backend, address)
    check_sweep_points(probes.check_over(over))  # before enumerating them
    configs = probes.sweep_configs(model_config, probe_config, over)
    check_sweep([(mc, pc) for _, mc, pc in configs])  # every point and the total, before any runs
    points = [Point(records.PROBE, (mc, pc), pc.seeds, name=describe(mc, short=True), suffix=")",
                    prefix=", ".join(f"{k}={v}" for k, v in changes.items()) + " (")
              for changes, mc, pc in configs]
    frames, _ = run_points(points, RUNS, backend, address, store, progress)
    return pd.concat(frames, ignore_index=True)


def run_training(model_config: ModelConfig, train_config: TrainConfig | None = None,
                 progress: Progress | None = None, should_stop: ShouldStop | None = None) -> TrainResult:
    """Train ``model_config`` (normlab.science.training.train) once the budget has accepted the run.

    Args:
        model_config: the network.
        train_config: optimizer, schedule, data size and seed; default ``TrainConfig()``.
        progress: called as ``progress(step, steps, label)`` after every step.
        should_stop: polled after every step; returning True ends the run early (``stopped=True``).

    Raises:
        BudgetExceeded: this machine's memory, or an operator limit set, before any work.
    """
    from normlab.science import training

    if not isinstance(model_config, ModelConfig):
        raise ValueError(f"model_config must be a normlab ModelConfig; got {type(model_config).__name__}")
    if train_config is not None and not isinstance(train_config, TrainConfig):
        raise ValueError(f"train_config must be a TrainConfig or None; got {type(train_config).__name__}")
    cfg = train_config or TrainConfig()
    check_trainable(model_config.arch)
    check_pairing(model_config.arch, cfg.dataset)
    check_training(model_config, cfg)  # this machine's memory (and operator limits set), before any work
    return training.train(model_config, cfg, progress, should_stop)


def run_study(study_config: StudyConfig | None = None, progress: Progress | None = None,
              should_stop: ShouldStop | None = None, backend: str = "local", address: str | None = None,
              store: ResultStore | None = None) -> StudyResult:
    """Train every network of the study and rank-correlate init similarity with training speed.

    Args:
        study_config: networks, seeds, schedule; default ``StudyConfig()``.
        progress: called as ``progress(done_steps, total_steps, label)`` as training advances
            (on Ray, as each run finishes).
        should_stop: polled as the runs train; True ends the study with the runs finished so far.
        backend, address: ``"local"`` trains here, run after run; ``"ray"`` one Ray task per run, on the
            cluster at ``address`` (None: a local Ray). See normlab.ops.backends.
        store: a ResultStore that keeps each finished run (a train record) and supplies those it
            already holds, so a rerun resumes; None keeps nothing.
    """
    if study_config is not None and not isinstance(study_config, StudyConfig):  # 0 or [] is no default
        raise ValueError(f"study_config must be a StudyConfig or None; got {type(study_config).__name__}")
    config = StudyConfig() if study_config is None else study_config
    check_study(config)  # every run's memory and the limits set, before the first run
    from normlab.science.study import assemble_study

    plan = config.runs()
    points = [Point(records.TRAIN, (mc, tc), tc.steps, prefix=f"run {i + 1}/{len(plan)}: ",
                    name=f"{mc.arch} {catalog.label(mc.norm)} seed {tc.seed}")
              for i, (mc, tc) in enumerate(plan)]
    results, stopped = run_points(points, RUNS, backend, address, store, progress, should_stop)
    # A stop keeps the runs finished before it (on Ray, those that happened to finish first).
    return assemble_study(config, [r for r in results if r is not None], stopped=stopped)


def run_warmup_study(study_config: WarmupStudyConfig | None = None, progress: Progress | None = None,
                     should_stop: ShouldStop | None = None, backend: str = "local",
                     address: str | None = None, store: ResultStore | None = None) -> WarmupStudyResult:
    """Train Post-LN and Pre-LN transformers with and without warm-up and compare their held-out loss.

    Args:
        study_config: arms, seeds, sizes, peak rate; default ``WarmupStudyConfig()``.
        progress, should_stop, backend, address, store: as for :func:`run_study` (a store keeps every
            finished run, so a rerun resumes; a run is the same record ``run_training`` stores).
    """
    if study_config is not None and not isinstance(study_config, WarmupStudyConfig):
        raise ValueError(f"study_config must be a WarmupStudyConfig or None; "
                         f"got {type(study_config).__name__}")
    config = WarmupStudyConfig() if study_config is None else study_config
    plan = config.runs()
    check_runs(plan)  # every run's memory and the limits set, before the first run
    from normlab.science.warmup import assemble_warmup

    points = [Point(records.TRAIN, (mc, tc), tc.steps, prefix=f"run {i + 1}/{len(plan)}: ",
                    name=f"{mc.placement}-LN warm-up {tc.warmup_steps} seed {tc.seed}")
              for i, (mc, tc) in enumerate(plan)]
    results, stopped = run_points(points, RUNS, backend, address, store, progress, should_stop)
    return assemble_warmup(config, [r for r in results if r is not None], stopped=stopped)


# ---------------------------------------------------------------------------------------------
# The points of a sweep and a study: each runs guarded (a Ray worker checks its own limits too)


def _probe_point(model_config, probe_config, progress=None, should_stop=None):
    return run_probes(model_config, probe_config, progress=progress)


def _train_point(model_config, train_config, progress=None, should_stop=None):
    return run_training(model_config, train_config, progress=progress, should_stop=should_stop)


RUNS = {  # how each kind of point runs and is stored
    records.PROBE: Kind(
        run=_probe_point,
        put=lambda store, point, frame: records.put_probe(store, *point.configs, frame),
        get=lambda store, point: records.get_probe(store, *point.configs),
        stopped=lambda frame: False,
    ),
    records.TRAIN: Kind(
        run=_train_point,
        put=lambda store, point, result: records.put_train(store, result),
        get=lambda store, point: records.get_train(store, *point.configs),
        stopped=lambda result: result.stopped,
    ),
}
