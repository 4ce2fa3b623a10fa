"""The operator's budget: size limits from the environment and a config's cost, estimated on paper.

``estimate_cost`` walks the config's layer plan with integer arithmetic: it never builds a model and
never touches torch, so a refused config has allocated nothing. Knows nothing of the UI or the CLI.

Environment variables (read when ``Limits.from_env()`` is called; unset means the default below):

    NORMLAB_MAX_DEPTH         layers of an mlp/cnn, or residual blocks of a resnet (depth x stages)
    NORMLAB_MAX_WIDTH         widest layer anywhere (a resnet doubles its width at every stage)
    NORMLAB_MAX_BATCH         batch size of one probe
    NORMLAB_MAX_SEEDS         seeds of one probe
    NORMLAB_MAX_COST          estimated GFLOP of one probe: (forward + backward + statistics) x seeds
    NORMLAB_MAX_MEMORY_MB     estimated peak memory of one probe, in MiB (seeds run one by one)
    NORMLAB_MAX_SWEEP_POINTS  combinations in one sweep
    NORMLAB_MAX_SWEEP_COST    estimated GFLOP of a whole sweep, all its points together

The defaults (see ``Limits``) fit a small CPU server. The estimates follow ``run_probes``: its FLOPs
agree with torch's count to a few percent, its memory with the measured peak resident memory to ~15%
when large tensors go back to the system on free (MALLOC_MMAP_THRESHOLD_, see docs/deploy.md).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields

from normlab import catalog
from normlab.config import PRESETS, ModelConfig, ProbeConfig

BYTES_PER_VALUE = 4  # activations and weights are float32
MIB = 2**20


class BudgetExceeded(ValueError):
    """A config over the operator's limits; the message names the limit and by how much."""


@dataclass(frozen=True)
class Limits:
    """The largest probe this server agrees to run.

    The defaults fit a small CPU server: every preset of the paper at batch 64 and one seed fits,
    with room for the deep unnormalized nets that overflow float32 at small widths.
    """

    max_depth: int = 1024  # layers or residual blocks; unnormalized resnets overflow float32 near 300
    max_width: int = 1024  # the vgg presets reach 512 channels
    max_batch: int = 256  # rank plots want more samples than channels for the small nets
    max_seeds: int = 16
    # resnet56 at batch 64 costs ~140 GFLOP a seed: about 10 s on one core of a small server
    max_cost_gflop: float = 300.0
    max_memory_mb: float = 2048.0  # resnet56 at batch 64 peaks near 600 MiB, 1.7 GiB with EvoNorm-S0
    max_sweep_points: int = 256  # combinations in one sweep
    max_sweep_cost_gflop: float = 1500.0  # a whole sweep: about five full-size probes

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"limit {f.name} must be a positive number; got {value!r}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Limits:
        """Limits from the ``NORMLAB_MAX_*`` variables; a malformed value raises a ValueError naming it."""
        environ = os.environ if environ is None else environ
        values = {}
        for f in fields(cls):
            name = ENV_VARS[f.name]
            raw = environ.get(name, "").strip()
            if not raw:
                continue
            kind = int if f.type in ("int", int) else float
            try:
                value = kind(raw)
            except ValueError:
                value = None
            if value is None or not (value > 0 and math.isfinite(value)):
                raise ValueError(
                    f"{name} must be a positive {'whole ' if kind is int else ''}number; got {raw!r}"
                )
            values[f.name] = value
        return cls(**values)


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
}


@dataclass(frozen=True)
class Cost:
    """What one probe is estimated to cost. FLOPs count a multiply-add as two."""

    forward_flops: float  # conv/linear layers, one forward pass over the batch
    backward_flops: float  # dL/d(input) of the same layers
    metric_flops: float  # Gram matrices and spectra of every probe point
    seeds: int  # the pass above runs once per seed
    activation_bytes: float  # tensors autograd keeps for the backward pass
    workspace_bytes: float  # the probe's statistics: Gram matrices, float64 copies, gradients
    parameter_bytes: float  # weights (and the weight normalizers' intermediates)

    @property
    def flops_per_seed(self) -> float:
        return self.forward_flops + self.backward_flops + self.metric_flops

    @property
    def gflop(self) -> float:
        """Total estimated compute of the probe, all seeds, in GFLOP."""
        return self.flops_per_seed * self.seeds / 1e9

    @property
    def memory_mb(self) -> float:
        """Estimated peak memory of one pass, in MiB (seeds run one after another)."""
        return (self.activation_bytes + self.workspace_bytes + self.parameter_bytes) / MIB


def network_depth(model_config: ModelConfig) -> int:
    """Layers of an mlp or cnn, residual blocks of a resnet; never materializes the plan."""
    if model_config.preset is not None and "plan" in PRESETS[model_config.preset]:
        return len(PRESETS[model_config.preset]["plan"])
    if model_config.arch == "resnet":
        return model_config.depth * model_config.stages
    return model_config.depth


def max_width(model_config: ModelConfig) -> int:
    """The widest layer of the network; a resnet doubles its width at every stage."""
    if model_config.preset is not None and "plan" in PRESETS[model_config.preset]:
        return max(w for w, _ in PRESETS[model_config.preset]["plan"])
    if model_config.arch == "resnet":
        return model_config.width * 2 ** (model_config.stages - 1)
    return model_config.width


def _conv_out(size: int, stride: int) -> int:
    """Spatial size after a 3x3 conv with padding 1."""
    return (size - 1) // stride + 1


def _gram_flops(n: int, d: int) -> float:
    """The statistics of one probe point on n samples of d features: the float64 copy, the batch mean,
    the centered Gram (2 n^2 d) and the per-channel moments, plus two n x n eigensolves (~10 n^3 each)."""
    return 2.0 * n * n * d + 8.0 * n * d + 20.0 * n**3


# Activation-sized tensors autograd keeps per norm -> activation unit, and the copies of each weight a
# probe keeps alive: the per-normalizer cost terms of normlab.catalog (NormInfo.saved_per_unit and
# NormInfo.weight_copies, measured there).


def _param_copies(norm: str) -> int:
    return catalog.normalizer(norm).weight_copies


class _Tally:
    """Running sums while walking a network's layers."""

    def __init__(self, batch: int, norm: str) -> None:
        self.n = batch
        self.per_unit = catalog.normalizer(norm).saved_per_unit
        self.forward = 0.0
        self.backward = 0.0
        self.metrics = 0.0
        self.saved = 0.0  # activation values kept for the backward pass
        self.largest = 0  # features of the largest probe point: the statistics' float64 workspace
        self.grams = 0  # probe points whose N x N Gram matrices are kept until the metrics
        self.params = 0.0

    def linear(self, f_in: int, f_out: int, positions: int = 1) -> None:
        """A conv or linear layer: f_in -> f_out features at ``positions`` spatial positions.

        The probe's backward pass computes dL/dx only (dL/dW is never needed): as many FLOPs as forward.
        """
        flops = 2.0 * self.n * positions * f_in * f_out
        self.forward += flops
        self.backward += flops
        self.params += f_in * f_out + f_out

    def saves(self, count: float, features: int) -> None:
        """``count`` tensors of ``features`` values per sample kept until the backward pass."""
        self.saved += count * self.n * features

    def unit(self, features: int, probed: bool = True) -> None:
        """A norm -> activation unit over ``features`` values per sample, its output a probe point."""
        self.saves(self.per_unit, features)
        if probed:
            self.gram(features)

    def gram(self, features: int) -> None:
        """A probe point whose Gram statistics are computed."""
        self.metrics += _gram_flops(self.n, features)
        self.largest = max(self.largest, features)
        self.grams += 1

    def moments(self, features: int) -> None:
        """A probe point reduced to channel moments only (the residual branch, for res_var)."""
        self.metrics += 4.0 * self.n * features


def estimate_cost(model_config: ModelConfig, probe_config: ProbeConfig) -> Cost:
    """Estimate a probe's compute and memory from the config alone, allocating nothing.

    Follows ``run_probes``: one forward pass, the gradient with respect to the input, the Gram
    statistics of every probe point; counts the conv/linear FLOPs of the config's plan, the activations
    autograd keeps for the backward pass and the weights. The layers' FLOPs agree with torch's
    FlopCounterMode. Walking the plan takes time in proportion to the depth: on untrusted input call
    ``check_budget``, which refuses an absurd depth before walking anything.

    Args:
        model_config: the network.
        probe_config: batch, image size and seeds of the probe.
    """
    m = model_config
    t = _Tally(probe_config.batch_size, m.norm)
    size = probe_config.image_size
    k = 9  # 3x3 kernels
    t.saves(1, m.in_channels * size * size)  # the input batch
    if m.arch == "mlp":
        f_in = m.in_channels * size * size
        for _ in range(m.depth):
            t.linear(f_in, m.width)
            t.unit(m.width)
            f_in = m.width
        t.linear(f_in, m.num_classes)
    elif m.arch == "cnn":
        c_in = m.in_channels
        for width, stride in m.plan:
            size = _conv_out(size, stride)
            t.linear(c_in * k, width, positions=size * size)
            t.unit(width * size * size)
            c_in = width
        t.linear(c_in, m.num_classes)
    else:
        c_in = m.width
        t.linear(m.in_channels * k, c_in, positions=size * size)
        if not m.preact:  # a pre-activation net starts with a bare conv
            t.unit(c_in * size * size)
        # A post-activation block outputs its last activation's tensor: one Gram serves both taps.
        # Pre-activation blocks, and WN with the activation in the branch, output a fresh sum.
        sum_out = m.preact or (m.norm == "weightnorm" and m.wn_act == "in_branch")
        for c_out, stride in m.plan:
            out = _conv_out(size, stride)
            feats = c_out * out * out
            t.linear(c_in * k, c_out, positions=out * out)  # conv1
            t.linear(c_out * k, c_out, positions=out * out)  # conv2
            t.unit(feats)  # norm1 -> act1
            t.unit(feats)  # norm2 -> act2
            t.moments(feats)  # the residual branch
            if sum_out:
                t.gram(feats)
            if stride != 1 or c_in != c_out:  # projection shortcut: conv + norm, no activation
                t.linear(c_in * k, c_out, positions=out * out)
                t.saves(t.per_unit - 1, feats)
            c_in, size = c_out, out
        if m.preact:  # the final norm -> activation before pooling
            t.unit(c_in * size * size)
        t.linear(c_in, m.num_classes)
    # The statistics work on a float64 copy of one probe point and its centered copy at a time;
    # backward holds about two gradients of the largest layer.
    workspace = (2 * 8 + 2 * 4) * t.n * t.largest
    # Every Gram point keeps two float64 N x N matrices; the batched metrics stack, normalize and
    # eigensolve all of them at once, about twelve copies more (measured: peak resident memory).
    workspace += 14 * 8 * t.grams * t.n * t.n
    return Cost(
        forward_flops=t.forward,
        backward_flops=t.backward,
        metric_flops=t.metrics,
        seeds=probe_config.seeds,
        activation_bytes=BYTES_PER_VALUE * t.saved,
        workspace_bytes=workspace,
        parameter_bytes=BYTES_PER_VALUE * t.params * _param_copies(m.norm),
    )


def _num(x: float) -> str:
    """A readable number: 1234 -> '1,234', 12.345 -> '12.3', 0.01234 -> '0.0123'."""
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


def _by_how_much(value: float, limit: float) -> str:
    ratio = value / limit
    if ratio >= 2:
        return f"{ratio:.3g}x"
    return f"{max(1, math.ceil((ratio - 1) * 100))}%"


def _refuse(what: str, value: int, env: str, limit: float, unit: str = "") -> BudgetExceeded:
    return BudgetExceeded(f"{what} {value}{unit} exceeds {env}={limit:g} by {_by_how_much(value, limit)}")


def check_budget(model_config: ModelConfig, probe_config: ProbeConfig, limits: Limits | None = None) -> Cost:
    """Refuse a probe over the operator's limits, before anything is allocated.

    Size limits are checked first with plain arithmetic, so even an absurd depth is refused at once;
    only then is the cost estimated.

    Args:
        model_config: the network to probe.
        probe_config: the probe's batch, image size and seeds.
        limits: the operator's limits; default ``Limits.from_env()``.

    Returns:
        The estimated cost of the accepted probe.

    Raises:
        BudgetExceeded: a ValueError whose message names the limit, its environment variable and
            by how much the config exceeds it.
    """
    limits = Limits.from_env() if limits is None else limits
    m = model_config
    staged = m.arch == "resnet" and m.stages > 1 and m.preset is None
    depth = network_depth(m)
    if depth > limits.max_depth:
        what = f"depth (blocks: {m.depth} x {m.stages} stages)" if staged else "depth"
        raise _refuse(what, depth, ENV_VARS["max_depth"], limits.max_depth)
    width = max_width(m)
    if width > limits.max_width:
        what = f"width (last of {m.stages} stages: {m.width} x 2^{m.stages - 1})" if staged else "width"
        raise _refuse(what, width, ENV_VARS["max_width"], limits.max_width)
    if probe_config.batch_size > limits.max_batch:
        raise _refuse("batch_size", probe_config.batch_size, ENV_VARS["max_batch"], limits.max_batch)
    if probe_config.seeds > limits.max_seeds:
        raise _refuse("seeds", probe_config.seeds, ENV_VARS["max_seeds"], limits.max_seeds)
    cost = estimate_cost(m, probe_config)
    if cost.gflop > limits.max_cost_gflop:
        raise BudgetExceeded(
            f"estimated {_num(cost.gflop)} GFLOP ({_num(cost.flops_per_seed / 1e9)} per seed x "
            f"{cost.seeds} seed{'s' if cost.seeds > 1 else ''}) exceeds the budget "
            f"{_num(limits.max_cost_gflop)} GFLOP ({ENV_VARS['max_cost_gflop']}) "
            f"by {_by_how_much(cost.gflop, limits.max_cost_gflop)}"
        )
    if cost.memory_mb > limits.max_memory_mb:
        raise BudgetExceeded(
            f"estimated peak memory {_num(cost.memory_mb)} MiB exceeds the budget "
            f"{_num(limits.max_memory_mb)} MiB ({ENV_VARS['max_memory_mb']}) "
            f"by {_by_how_much(cost.memory_mb, limits.max_memory_mb)}"
        )
    return cost


def check_sweep_points(count: int, limits: Limits | None = None) -> None:
    """Refuse a sweep of more than NORMLAB_MAX_SWEEP_POINTS combinations before enumerating them.

    Args:
        count: the number of combinations, e.g. ``math.prod(len(v) for v in over.values())``.
    """
    limits = Limits.from_env() if limits is None else limits
    if count > limits.max_sweep_points:
        raise _refuse("sweep of", count, ENV_VARS["max_sweep_points"], limits.max_sweep_points,
                      unit=" combinations")


def check_sweep(
    points: Iterable[tuple[ModelConfig, ProbeConfig]], limits: Limits | None = None
) -> list[Cost]:
    """Check every point of a sweep, and their total cost, before any of them runs.

    Raises:
        BudgetExceeded: too many points, one point over a per-probe limit (the message says which
            point), or all points together over NORMLAB_MAX_SWEEP_COST.
    """
    limits = Limits.from_env() if limits is None else limits
    points = list(points)
    check_sweep_points(len(points), limits)
    costs = []
    for model_config, probe_config in points:
        try:
            costs.append(check_budget(model_config, probe_config, limits))
        except BudgetExceeded as err:
            raise BudgetExceeded(f"sweep point {_describe(model_config, probe_config)}: {err}") from None
    total = sum(c.gflop for c in costs)
    if total > limits.max_sweep_cost_gflop:
        raise BudgetExceeded(
            f"estimated {_num(total)} GFLOP for the whole sweep ({len(costs)} points) exceeds the budget "
            f"{_num(limits.max_sweep_cost_gflop)} GFLOP ({ENV_VARS['max_sweep_cost_gflop']}) "
            f"by {_by_how_much(total, limits.max_sweep_cost_gflop)}"
        )
    return costs


def _describe(model_config: ModelConfig, probe_config: ProbeConfig) -> str:
    m = model_config
    name = m.preset or m.arch
    return f"{name} {m.norm} depth={m.depth} width={m.width} batch_size={probe_config.batch_size}"
