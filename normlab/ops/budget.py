"""Refusals: a request over the limits is refused before anything is allocated, naming the limit.

Each check compares the estimate (normlab.ops.cost) and the predicted seconds (normlab.ops.calibration)
with the limits (normlab.ops.settings); a ``BudgetExceeded`` names the limit, its environment variable,
the estimate and by how much the request exceeds it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from normlab.core import catalog
from normlab.core.config import ModelConfig, ProbeConfig, check_instance, describe, resolve_input
from normlab.core.text import number
from normlab.ops.calibration import predicted_seconds, training_seconds
from normlab.ops.cost import Cost, TrainingCost, estimate_cost, max_width, network_depth, training_estimate
from normlab.ops.settings import ENV_VARS, MEMORY_MARGIN, Limits, local_limits


class BudgetExceeded(ValueError):
    """A config over a limit; the message names the limit, its variable, the estimate and by how much."""



def _by_how_much(value: float, limit: float) -> str:
    ratio = value / limit
    if ratio >= 2:
        return f"{ratio:.3g}x"
    return f"{max(1, math.ceil((ratio - 1) * 100))}%"


def _refuse(what: str, value: int, env: str, limit: float, unit: str = "") -> BudgetExceeded:
    return BudgetExceeded(f"{what} {value}{unit} exceeds {env}={limit:g} by {_by_how_much(value, limit)}")


def _check_sizes(m: ModelConfig, batch: int, seeds: int, limits: Limits) -> None:
    """Depth, width, batch and seeds against their limits: plain arithmetic, nothing walked."""
    staged = m.residual and m.stages > 1 and m.preset is None
    depth = network_depth(m)
    if depth > limits.max_depth:
        what = f"depth (blocks: {m.depth} x {m.stages} stages)" if staged else "depth"
        raise _refuse(what, depth, ENV_VARS["max_depth"], limits.max_depth)
    width = max_width(m)
    if width > limits.max_width:
        what = f"width (last of {m.stages} stages: {m.width} x 2^{m.stages - 1})" if staged else "width"
        raise _refuse(what, width, ENV_VARS["max_width"], limits.max_width)
    if batch > limits.max_batch:
        raise _refuse("batch_size", batch, ENV_VARS["max_batch"], limits.max_batch)
    if seeds > limits.max_seeds:
        raise _refuse("seeds", seeds, ENV_VARS["max_seeds"], limits.max_seeds)
    if catalog.family(m.arch).tokens and m.seq_len > limits.max_seq_len:
        raise _refuse("seq_len", m.seq_len, ENV_VARS["max_seq_len"], limits.max_seq_len)


def _check_memory(memory_mb: float, limits: Limits, what: str = "") -> None:
    if memory_mb <= limits.max_memory_mb:
        return
    if limits.machine_memory:
        budget = (f"the memory this machine has free, {number(limits.max_memory_mb)} MiB "
                  f"(MemAvailable less {MEMORY_MARGIN:.0%})")
    elif limits.container_memory:
        # the operator's variable is named too: raising it is not the fix, docker run --memory is
        budget = (f"the memory this container allows, {number(limits.max_memory_mb)} MiB (its memory limit "
                  f"less headroom; {ENV_VARS['max_memory_mb']} cannot raise it)")
    else:
        budget = f"the budget {number(limits.max_memory_mb)} MiB ({ENV_VARS['max_memory_mb']})"
    raise BudgetExceeded(f"estimated peak memory {number(memory_mb)} MiB{what} exceeds {budget} "
                         f"by {_by_how_much(memory_mb, limits.max_memory_mb)}")


def _check_seconds(seconds: float, limits: Limits, what: str = "") -> None:
    if seconds > limits.max_seconds:
        raise BudgetExceeded(
            f"predicted {number(seconds)} s{what} exceeds the limit {number(limits.max_seconds)} s "
            f"({ENV_VARS['max_seconds']}) by {_by_how_much(seconds, limits.max_seconds)}"
        )


def check_budget(model_config: ModelConfig, probe_config: ProbeConfig, limits: Limits | None = None) -> Cost:
    """Refuse a probe over the limits, before anything is allocated.

    Size limits are checked first with plain arithmetic, so even an absurd depth is refused at once;
    then the estimated compute and memory; the predicted seconds last (the only check that may need
    the cost model's one-off calibration), and only where a time limit is set.

    Args:
        model_config: the network to probe.
        probe_config: the probe's batch, image size and seeds.
        limits: default ``local_limits()`` (the dashboard passes ``server_limits()``).

    Returns:
        The estimated cost of the accepted probe.

    Raises:
        BudgetExceeded: a ValueError whose message names the limit, its environment variable, the
            estimate and by how much the config exceeds it.
    """
    check_instance("model_config", model_config, ModelConfig)
    check_instance("probe_config", probe_config, ProbeConfig)
    limits = local_limits() if limits is None else limits
    check_instance("limits", limits, Limits)
    resolve_input(model_config, probe_config)  # an input the family cannot read is refused by name
    _check_sizes(model_config, probe_config.batch_size, probe_config.seeds, limits)
    cost = estimate_cost(model_config, probe_config)
    if cost.gflop > limits.max_cost_gflop:
        raise BudgetExceeded(
            f"estimated {number(cost.gflop)} GFLOP ({number(cost.flops_per_seed / 1e9)} per seed x "
            f"{cost.seeds} seed{'s' if cost.seeds > 1 else ''}) exceeds the budget "
            f"{number(limits.max_cost_gflop)} GFLOP ({ENV_VARS['max_cost_gflop']}) "
            f"by {_by_how_much(cost.gflop, limits.max_cost_gflop)}"
        )
    _check_memory(cost.memory_mb, limits)
    if math.isfinite(limits.max_seconds):
        seeds = f" ({cost.seeds} seeds)" if cost.seeds > 1 else ""
        _check_seconds(predicted_seconds(cost, limits), limits, seeds)
    return cost


def check_many(pairs: Iterable[tuple[ModelConfig, ProbeConfig]], limits: Limits | None = None) -> list[Cost]:
    """Check every probe a page is about to compute alone, then their predicted seconds together.

    The dashboard calls this before anything queues, so a page of ten normalizers x eight seeds is
    refused as a whole. Pass only the probes that will really run (not those already cached).

    Returns:
        The cost of each pair, in order.
    """
    limits = local_limits() if limits is None else limits
    pairs = list(pairs)
    costs = [check_budget(m, p, limits) for m, p in pairs]
    if len(costs) > 1 and math.isfinite(limits.max_seconds):
        total = sum(predicted_seconds(c, limits) for c in costs)
        seeds = sorted({c.seeds for c in costs})
        each = f" x {seeds[0]} seed{'s' * (seeds[0] > 1)}" if len(seeds) == 1 else ""
        _check_seconds(total, limits, f" for the {len(costs)} networks of this view{each}")
    return costs


def check_sweep_points(count: int, limits: Limits | None = None) -> None:
    """Refuse a sweep of more than NORMLAB_MAX_SWEEP_POINTS combinations before enumerating them.

    Args:
        count: the number of combinations, e.g. ``math.prod(len(v) for v in over.values())``.
    """
    limits = local_limits() if limits is None else limits
    if count > limits.max_sweep_points:
        raise _refuse("sweep of", count, ENV_VARS["max_sweep_points"], limits.max_sweep_points,
                      unit=" combinations")


def check_sweep(
    points: Iterable[tuple[ModelConfig, ProbeConfig]], limits: Limits | None = None
) -> list[Cost]:
    """Check every point of a sweep, and their total cost and time, before any of them runs.

    Raises:
        BudgetExceeded: too many points, one point over a per-probe limit (the message says which
            point), all points together over NORMLAB_MAX_SWEEP_COST or over NORMLAB_MAX_SECONDS.
    """
    limits = local_limits() if limits is None else limits
    points = list(points)
    check_sweep_points(len(points), limits)
    costs = []
    for model_config, probe_config in points:
        try:
            costs.append(check_budget(model_config, probe_config, limits))
        except BudgetExceeded as err:
            point = describe(model_config, probe_config, short=True)
            raise BudgetExceeded(f"sweep point {point}: {err}") from None
    total = sum(c.gflop for c in costs)
    if total > limits.max_sweep_cost_gflop:
        raise BudgetExceeded(
            f"estimated {number(total)} GFLOP for the whole sweep ({len(costs)} points) exceeds the budget "
            f"{number(limits.max_sweep_cost_gflop)} GFLOP ({ENV_VARS['max_sweep_cost_gflop']}) "
            f"by {_by_how_much(total, limits.max_sweep_cost_gflop)}"
        )
    if math.isfinite(limits.max_seconds):
        seconds = sum(predicted_seconds(c, limits) for c in costs)
        _check_seconds(seconds, limits, f" for the whole sweep ({len(costs)} points)")
    return costs


def _training_seconds(estimate, train, limits: Limits) -> float:
    """The run's predicted seconds where a time limit is set (only then is the time model calibrated)."""
    return training_seconds(estimate, train, limits) if math.isfinite(limits.max_seconds) else math.nan


def check_training(model_config: ModelConfig, train, limits: Limits | None = None) -> TrainingCost:
    """Refuse a training run over the limits before any work: sizes, memory, predicted seconds.

    Args:
        model_config: the network.
        train: a ``normlab.core.train_config.TrainConfig``.
        limits: default ``local_limits()`` (the dashboard's training page passes ``server_limits()``).
    """
    limits = local_limits() if limits is None else limits
    _check_sizes(model_config, train.batch_size, 1, limits)
    estimate = training_estimate(model_config, train)
    _check_memory(estimate.memory_mb, limits, " for training")
    seconds = _training_seconds(estimate, train, limits)
    if math.isfinite(limits.max_seconds):
        _check_seconds(seconds, limits, f" for {train.steps} training steps")
    return TrainingCost(1, estimate.memory_mb, (seconds,))


def check_study(study, limits: Limits | None = None) -> TrainingCost:
    """Refuse a training study over the limits before any run: every run's sizes and memory, the
    seeds, and the predicted seconds of all runs together.

    Args:
        study: a ``normlab.core.train_config.StudyConfig``.
    """
    limits = local_limits() if limits is None else limits
    if study.seeds > limits.max_seeds:
        raise _refuse("seeds", study.seeds, ENV_VARS["max_seeds"], limits.max_seeds)
    networks = study.model_configs()
    for m in networks:
        _check_sizes(m, study.train.batch_size, 1, limits)
    estimates = [training_estimate(m, study.train) for m in networks]
    memory = max((e.memory_mb for e in estimates), default=0.0)
    _check_memory(memory, limits, " for training")
    per_network = [_training_seconds(e, study.train, limits) for e in estimates]
    seconds = tuple(s for s in per_network for _ in range(study.seeds))
    if math.isfinite(limits.max_seconds):
        _check_seconds(sum(seconds), limits, f" for the study's {len(seconds)} runs")
    return TrainingCost(len(seconds), memory, seconds)
