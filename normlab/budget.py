"""What a request costs before it runs, the limits it must fit, and a hard stop for one that overruns.

``estimate_cost`` walks the config's layer plan with integer arithmetic: it never builds a model and
never touches torch, so a refused config has allocated nothing. Its wall time (``Cost.seconds``) comes
from a cost model calibrated on this machine: a few tiny probes, timed once per process and per torch
thread count the first time a prediction is asked for (well under 3 s), or a table kept with the
deployment (``NORMLAB_CALIBRATION``). Knows nothing of the UI or the CLI.

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
    NORMLAB_CALIBRATION       a JSON file of measured cost-model coefficients (``python -m
                              normlab.budget --write FILE`` makes one); unset: calibrate on first use

The FLOPs agree with torch's count to a few percent; the memory, the process's base included, with
the measured peak resident memory to ~15% when large tensors go back to the system on free
(MALLOC_MMAP_THRESHOLD_, see docs/deploy.md); the seconds with measured wall time within 2x either
way over deep-narrow and wide-shallow nets (benchmarks/bench_cost.py).
"""

from __future__ import annotations

import json
import math
import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields

from normlab import catalog
from normlab.config import PRESETS, ModelConfig, ProbeConfig

BYTES_PER_VALUE = 4  # activations and weights are float32
MIB = 2**20
# Resident memory of a serving process before it probes anything: the interpreter, torch, numpy,
# pandas, streamlit, plotly and the app, after one tiny probe. Measured here (VmRSS, /proc/self/status):
# 218 MiB with torch alone, 288 MiB with the engine, 343 MiB with the dashboard's imports.
BASE_MEMORY_MB = 340.0
# Local runs may use what the machine has free, less this share (other processes, the page cache).
MEMORY_MARGIN = 0.1


class BudgetExceeded(ValueError):
    """A config over a limit; the message names the limit, its variable, the estimate and by how much."""


class ComputeTimeout(RuntimeError):
    """A computation ran past its hard wall-time limit and was stopped; its memory is freed."""


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
        if f.name not in ENV_VARS:
            continue
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
            whole = "whole " if kind is int else ""
            raise ValueError(f"{name} must be a positive {whole}number; got {raw!r}")
        values[f.name] = value
    return values


def server_limits(environ: Mapping[str, str] | None = None) -> Limits:
    """The dashboard's limits: the defaults of :class:`Limits`, overridden by ``NORMLAB_MAX_*``.

    Predictions assume the torch threads the serving gate gives each computation
    (``normlab.serving.torch_threads``).
    """
    environ = os.environ if environ is None else environ
    from normlab.serving import DEFAULT_MAX_CONCURRENT, env_number, torch_threads

    slots = env_number(environ, "NORMLAB_MAX_CONCURRENT", int, DEFAULT_MAX_CONCURRENT)
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


# ---------------------------------------------------------------------------------------------
# The estimate


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
    # The cost model's terms beyond FLOPs, per seed: what makes deep and narrow nets slow.
    ops: float = 0.0  # torch operations launched, forward and backward (each has a fixed overhead)
    points: float = 0.0  # probe points: hooks and the small reductions each one runs
    traffic_bytes: float = 0.0  # bytes the element-wise operations read and write
    # The input's data set ("images": the photographs, decoded once per process on first use), or "".
    dataset: str = ""
    base_bytes: float = BASE_MEMORY_MB * MIB  # the process before it probes: interpreter, torch, app

    @property
    def flops_per_seed(self) -> float:
        return self.forward_flops + self.backward_flops + self.metric_flops

    @property
    def gflop(self) -> float:
        """Total estimated compute of the probe, all seeds, in GFLOP."""
        return self.flops_per_seed * self.seeds / 1e9

    @property
    def memory_mb(self) -> float:
        """Estimated peak resident memory of the process while it probes, in MiB (seeds run one by one)."""
        return (self.activation_bytes + self.workspace_bytes + self.parameter_bytes + self.base_bytes) / MIB

    @property
    def seconds(self) -> float:
        """Predicted wall time of the whole probe, all seeds, with this process's torch threads."""
        return calibration().predict(self)


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
# NormInfo.weight_copies, ops_per_unit and weight_ops, measured there).


def _param_copies(norm: str) -> int:
    return catalog.normalizer(norm).weight_copies


class _Tally:
    """Running sums while walking a network's layers."""

    def __init__(self, batch: int, norm: str) -> None:
        self.n = batch
        info = catalog.normalizer(norm)
        self.per_unit = info.saved_per_unit
        self.unit_ops = info.ops_per_unit
        self.weight_ops = info.weight_ops
        self.forward = 0.0
        self.backward = 0.0
        self.metrics = 0.0
        self.saved = 0.0  # activation values kept for the backward pass
        self.largest = 0  # features of the largest probe point: the statistics' float64 workspace
        self.grams = 0  # probe points whose N x N Gram matrices are kept until the metrics
        self.params = 0.0
        self.ops = 0.0  # operations of the forward pass (the backward's are counted as many again)
        self.points = 0  # hooks: activation points, residual branches, conv gradients
        self.traffic = 0.0  # values element-wise operations touch in the forward pass

    def linear(self, f_in: int, f_out: int, positions: int = 1) -> None:
        """A conv or linear layer: f_in -> f_out features at ``positions`` spatial positions.

        The probe's backward pass computes dL/dx only (dL/dW is never needed): as many FLOPs as forward.
        """
        flops = 2.0 * self.n * positions * f_in * f_out
        self.forward += flops
        self.backward += flops
        self.params += f_in * f_out + f_out
        self.ops += 1 + self.weight_ops
        self.points += 1  # its output's gradient hook
        self.traffic += 2.0 * self.n * positions * f_out  # the bias, and the gradient's norm

    def saves(self, count: float, features: int) -> None:
        """``count`` tensors of ``features`` values per sample kept until the backward pass."""
        self.saved += count * self.n * features

    def elementwise(self, ops: int, features: int) -> None:
        """``ops`` element-wise operations over ``features`` values per sample (an addition, a scale)."""
        self.ops += ops
        self.traffic += ops * self.n * features

    def unit(self, features: int, probed: bool = True) -> None:
        """A norm -> activation unit over ``features`` values per sample, its output a probe point."""
        self.saves(self.per_unit, features)
        self.elementwise(self.unit_ops, features)
        if probed:
            self.gram(features)

    def gram(self, features: int) -> None:
        """A probe point whose Gram statistics are computed."""
        self.metrics += _gram_flops(self.n, features)
        self.largest = max(self.largest, features)
        self.grams += 1
        self.points += 1
        self.traffic += 2.0 * self.n * features  # read once more, as float64

    def moments(self, features: int) -> None:
        """A probe point reduced to channel moments only (the residual branch, for res_var)."""
        self.metrics += 4.0 * self.n * features
        self.points += 1
        self.traffic += self.n * features


def _walk(m: ModelConfig, batch: int, image_size: int) -> _Tally:
    """The layers of ``m`` on a batch of ``batch`` images of ``image_size``, as ``run_probes`` meets them."""
    t = _Tally(batch, m.norm)
    size = image_size
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
        t.elementwise(1, c_in * size * size)  # global pooling
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
            t.elementwise(2, feats)  # alpha * branch, + shortcut
            if sum_out:
                t.gram(feats)
            if stride != 1 or c_in != c_out:  # projection shortcut: conv + norm, no activation
                t.linear(c_in * k, c_out, positions=out * out)
                t.saves(t.per_unit - 1, feats)
                t.elementwise(max(1, t.unit_ops - 1), feats)
            c_in, size = c_out, out
        if m.preact:  # the final norm -> activation before pooling
            t.unit(c_in * size * size)
        t.elementwise(1, c_in * size * size)  # global pooling
        t.linear(c_in, m.num_classes)
    return t


# Natural images are cut from the photographs one sample at a time (normlab.data._image_crops): a crop
# at a random scale up to 4x, an antialiased resize and a flip, ~20 small operations a sample, and a
# resize that costs as much as ~280 bytes of element-wise traffic per output value (measured on one
# core: 92 ms for 128 crops of 32x32, 51 ms for 128 of 16x16; the probe of a wide-shallow mlp at
# batch 128 ran twice its prediction without this).
IMAGE_OPS_PER_SAMPLE = 20
IMAGE_BYTES_PER_VALUE = 280


def _input_terms(m: ModelConfig, probe_config: ProbeConfig) -> tuple[float, float]:
    """(operations, traffic bytes) of making one seed's input batch; gaussian noise is one draw."""
    if probe_config.input != "images":
        return 1.0, BYTES_PER_VALUE * probe_config.batch_size * m.in_channels * probe_config.image_size**2
    values = probe_config.batch_size * 3 * probe_config.image_size**2
    return IMAGE_OPS_PER_SAMPLE * probe_config.batch_size, IMAGE_BYTES_PER_VALUE * values


def estimate_cost(model_config: ModelConfig, probe_config: ProbeConfig) -> Cost:
    """Estimate a probe's compute, memory and cost-model terms from the config alone, allocating nothing.

    Follows ``run_probes``: one forward pass, the gradient with respect to the input, the Gram
    statistics of every probe point; counts the conv/linear FLOPs of the config's plan, the activations
    autograd keeps for the backward pass, the weights, the process's base memory and the operations,
    probe points and element-wise traffic the wall time also depends on. The layers' FLOPs agree with
    torch's FlopCounterMode. Walking the plan takes time in proportion to the depth: on untrusted input
    call ``check_budget``, which refuses an absurd depth before walking anything.

    Args:
        model_config: the network.
        probe_config: batch, image size and seeds of the probe.
    """
    m = model_config
    t = _walk(m, probe_config.batch_size, probe_config.image_size)
    # The statistics work on a float64 copy of one probe point and its centered copy at a time;
    # backward holds about two gradients of the largest layer.
    workspace = (2 * 8 + 2 * 4) * t.n * t.largest
    # Every Gram point keeps two float64 N x N matrices; the batched metrics stack, normalize and
    # eigensolve all of them at once, about twelve copies more (measured: peak resident memory).
    workspace += 14 * 8 * t.grams * t.n * t.n
    input_ops, input_bytes = _input_terms(m, probe_config)
    return Cost(
        forward_flops=t.forward,
        backward_flops=t.backward,
        metric_flops=t.metrics,
        seeds=probe_config.seeds,
        activation_bytes=BYTES_PER_VALUE * t.saved,
        workspace_bytes=workspace,
        parameter_bytes=BYTES_PER_VALUE * t.params * _param_copies(m.norm),
        ops=2 * t.ops + input_ops,  # backward launches about as many as forward
        points=t.points,
        # each value read and written, forward and back
        traffic_bytes=2 * BYTES_PER_VALUE * t.traffic + input_bytes,
        dataset="images" if probe_config.input == "images" else "",
    )


# ---------------------------------------------------------------------------------------------
# The time model: seconds = c0 + seeds * (a flops + m metric_flops + b ops + c points + e points^2
#                                         + d traffic)
#                                         (+ data_load, once per process, for the photographs)
# Building, initializing and hooking a network costs about 1 ms a probe point on one busy core, nearly
# in proportion to the depth (measured here, width 4: 0.9 ms a point at 128 mlp layers, 1.1-1.4 ms at
# 1024-2048, resnets of 16-256 blocks x 4 stages 0.9-1.1 ms): a small squared term covers the growth.
# The first probe of natural images in a process also decodes the photographs (sklearn's JPEGs,
# ~1.5-3 s); that, not the network, made the first deep-narrow resnet on images run 5-10x its prediction.

TERMS = ("flops", "metric_flops", "ops", "points", "points_sq", "traffic_bytes")


def _terms(cost: Cost) -> tuple[float, ...]:
    return (cost.forward_flops + cost.backward_flops, cost.metric_flops, cost.ops, cost.points,
            cost.points**2, cost.traffic_bytes)


@dataclass(frozen=True)
class Calibration:
    """Seconds per unit of each cost-model term on this machine, at ``threads`` torch threads.

    ``fixed`` is paid once per probe (building the frame), every term once per seed.
    """

    threads: int
    fixed: float  # seconds per probe
    flops: float  # seconds per conv/linear FLOP (float32)
    metric_flops: float  # seconds per FLOP of the float64 statistics and eigensolves
    ops: float  # seconds per torch operation launched (forward and backward)
    points: float  # seconds per probe point (its hook and reductions)
    points_sq: float  # seconds per squared probe point (deep nets: module bookkeeping)
    traffic_bytes: float  # seconds per byte of element-wise traffic
    data_load: float = 0.0  # seconds to decode the photographs, paid by the first probe of "images"
    source: str = "measured"  # "measured" here, or the table's path

    def per_seed(self, cost: Cost) -> float:
        return sum(getattr(self, name) * x for name, x in zip(TERMS, _terms(cost), strict=True))

    def predict(self, cost: Cost) -> float:
        """Predicted wall time of a probe of ``cost``, all its seeds (and its data set's first load)."""
        load = self.data_load if cost.dataset and not dataset_loaded(cost.dataset) else 0.0
        return self.fixed + load + cost.seeds * self.per_seed(cost)

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "source"}


def dataset_loaded(name: str) -> bool:
    """Whether this process has already decoded data set ``name`` ("images": normlab.data's photographs).

    Reads the loader's cache without importing it (the budget needs no torch): a process that never
    imported normlab.data has loaded nothing.
    """
    data = sys.modules.get("normlab.data")
    loader = getattr(data, "_photographs", None) if name == "images" else None
    info = getattr(loader, "cache_info", None)
    return info is not None and info().currsize > 0


# Tiny probes that span the cost model's terms, each dominated by a different one: deep and narrow
# nets (operations and probe points), a weight normalizer (weight operations), wide and shallow nets
# (FLOPs), large images with an element-wise normalizer (traffic) and a large batch (the statistics).
# Together ~0.6 s of compute on one core.
CALIBRATION_PROBES = (
    (dict(arch="mlp", norm="batchnorm", depth=320, width=4), dict(batch_size=2, image_size=2)),
    (dict(arch="mlp", norm="layernorm", depth=96, width=4), dict(batch_size=4, image_size=4)),
    (dict(arch="mlp", norm="evonorm_s0", depth=48, width=4), dict(batch_size=4, image_size=4)),
    (dict(arch="resnet", norm="batchnorm", depth=12, width=4, stages=2), dict(batch_size=4, image_size=4)),
    (dict(arch="cnn", norm="sws", depth=24, width=4), dict(batch_size=4, image_size=4)),
    (dict(arch="mlp", norm="none", depth=2, width=1024), dict(batch_size=256, image_size=16)),
    (dict(arch="cnn", norm="none", depth=2, width=64), dict(batch_size=16, image_size=32)),
    (dict(arch="cnn", norm="evonorm_b0", depth=2, width=16), dict(batch_size=16, image_size=32)),
    (dict(arch="mlp", norm="batchnorm", depth=4, width=32), dict(batch_size=256, image_size=4)),
    (dict(arch="mlp", norm="none", depth=1, width=2), dict(batch_size=2, image_size=2)),
)
_REPEATS = 2  # each probe's fastest of two runs: a busy machine slows some runs, never speeds one
_CALIBRATION_BUDGET_S = 2.5  # past this, on a busy machine, each probe runs once

_calibrations: dict[int, Calibration] = {}
_calibration_lock = threading.Lock()


def _current_threads() -> int:
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else 1


def _time_probe(model_config: ModelConfig, probe_config: ProbeConfig) -> float:
    from normlab.probes import probe_seeds  # here: the budget itself needs no torch

    start = time.perf_counter()
    probe_seeds(model_config, probe_config, probe_config.seed_list)
    return time.perf_counter() - start


# Coefficients measured on this project's 2-core CPU at one torch thread (the dashboard's), fitted over
# the calibration probes and the deep nets of benchmarks/bench_cost.py. A calibration rescales them.
REFERENCE = Calibration(threads=1, fixed=0.004, flops=2.4e-11, metric_flops=3.3e-11, ops=1.6e-5,
                        points=4.6e-4, points_sq=6e-8, traffic_bytes=5e-10, data_load=1.5,
                        source="reference")
# The terms paid per operation launched (interpreter and dispatch) and those paid per FLOP or byte
# (the cores and memory): a machine differs from the reference by one factor for each.
# (the photographs' decoding is interpreter and library work too: it scales with the overheads)
OVERHEAD_TERMS = ("fixed", "ops", "points", "points_sq", "data_load")
PER_SEED_OVERHEADS = ("ops", "points", "points_sq")
THROUGHPUT_TERMS = ("flops", "metric_flops", "traffic_bytes")


def _split(cost: Cost, ref: Calibration) -> tuple[float, float]:
    """(overhead, throughput) seconds of ``cost`` under ``ref``."""
    values = dict(zip(TERMS, _terms(cost), strict=True))
    overhead = ref.fixed + cost.seeds * sum(getattr(ref, t) * values[t] for t in PER_SEED_OVERHEADS)
    throughput = cost.seeds * sum(getattr(ref, t) * values[t] for t in THROUGHPUT_TERMS)
    return overhead, throughput


def calibrate(threads: int | None = None) -> Calibration:
    """Time the calibration probes at ``threads`` torch threads and fit the cost model to this machine.

    The reference coefficients are rescaled by two factors, one for the per-operation overheads and
    one for the per-FLOP and per-byte terms, fitted by non-negative least squares of the relative
    error (so the tiny probes count as much as the big ones). Two factors stay well determined on a
    busy machine where six free coefficients would not. Sets torch's thread count for the duration
    and restores it.
    """
    import numpy as np
    import torch
    from scipy.optimize import nnls

    threads = _current_threads() if threads is None else threads
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        rows, times = [], []
        started = time.perf_counter()
        _time_probe(ModelConfig(arch="cnn", norm="batchnorm", depth=2, width=4),
                    ProbeConfig(device="cpu", batch_size=4, image_size=8))  # lazy imports, warm caches
        for model_kw, probe_kw in CALIBRATION_PROBES:
            mc, pc = ModelConfig(**model_kw), ProbeConfig(device="cpu", **probe_kw)
            runs = [_time_probe(mc, pc)]
            while len(runs) < _REPEATS and time.perf_counter() - started < _CALIBRATION_BUDGET_S:
                runs.append(_time_probe(mc, pc))
            times.append(min(runs))
            rows.append(_split(estimate_cost(mc, pc), REFERENCE))
    finally:
        torch.set_num_threads(before)
    a, y = np.asarray(rows, dtype=np.float64), np.asarray(times, dtype=np.float64)
    (overhead, throughput), _ = nnls(a / y[:, None], np.ones_like(y))
    # a factor the probes could not see (0) keeps the reference rather than making a term free
    overhead, throughput = float(overhead) or 1.0, float(throughput) or 1.0
    scaled = {t: getattr(REFERENCE, t) * overhead for t in OVERHEAD_TERMS}
    scaled.update({t: getattr(REFERENCE, t) * throughput for t in THROUGHPUT_TERMS})
    return Calibration(threads=threads, **scaled)


def load_calibration(path: str, threads: int) -> Calibration | None:
    """The table's coefficients for ``threads`` threads, or None when it has none for them.

    Raises:
        ValueError: the file cannot be read or is not such a table (naming NORMLAB_CALIBRATION).
    """
    try:
        with open(path, encoding="utf-8") as f:
            table = json.load(f)
        entries = table["calibrations"]
        entry = next((e for e in entries if e["threads"] == threads), None)
        if entry is None:
            return None
        return Calibration(**{k: float(entry.get(k, 0.0)) for k in ("fixed", *TERMS, "data_load")},
                           threads=threads,
                           source=path)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"NORMLAB_CALIBRATION {path!r} is not a calibration table written by "
                         f"`python -m normlab.budget --write`: {err}") from None


def save_calibration(path: str, calibrations: Iterable[Calibration]) -> None:
    """Write a table ``NORMLAB_CALIBRATION`` can point at, one entry per thread count."""
    table = {"calibrations": [c.to_dict() for c in calibrations]}
    with open(path, "w", encoding="utf-8") as f:
        json.dump(table, f, indent=1)
        f.write("\n")


def calibration(threads: int | None = None) -> Calibration:
    """The cost model for ``threads`` torch threads (default: this process's), made once per process.

    From the table at ``NORMLAB_CALIBRATION`` when it has these threads, else measured here.
    """
    threads = _current_threads() if threads is None else threads
    with _calibration_lock:
        if threads not in _calibrations:
            path = os.environ.get("NORMLAB_CALIBRATION", "").strip()
            found = load_calibration(path, threads) if path else None
            _calibrations[threads] = found or calibrate(threads)
        return _calibrations[threads]


def set_calibration(value: Calibration | None, threads: int | None = None) -> None:
    """Use ``value`` for its thread count from now on (None: forget every calibration of this process)."""
    with _calibration_lock:
        if value is None:
            _calibrations.clear()
        else:
            _calibrations[value.threads if threads is None else threads] = value


def predicted_seconds(cost: Cost, limits: Limits | None = None) -> float:
    """Predicted wall time of ``cost`` with the threads ``limits`` assume (0: this process's)."""
    return calibration(limits.threads or None if limits is not None else None).predict(cost)


# ---------------------------------------------------------------------------------------------
# A hard stop for a computation that overruns

_deadline = threading.local()  # per thread: two dashboard sessions never share a deadline


@contextmanager
def time_limit(seconds: float, source: str = "") -> Iterator[None]:
    """Stop a computation in this thread that runs past ``seconds``: ``check_time`` raises ComputeTimeout.

    The probes and the training check it between layers, steps and seeds, so a stopped computation
    lets go of its memory at once. Nested limits keep the earliest deadline. ``inf`` sets none.

    Args:
        seconds: wall-time limit, > 0.
        source: what set the limit, named in the message (e.g. "NORMLAB_HARD_SECONDS").
    """
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
        raise ValueError(f"time_limit seconds must be a positive number; got {seconds!r}")
    outer = getattr(_deadline, "value", None)
    here = (time.monotonic() + seconds, seconds, source)
    _deadline.value = here if outer is None or here[0] < outer[0] else outer
    try:
        yield
    finally:
        _deadline.value = outer


def check_time() -> None:
    """Raise ComputeTimeout if this thread's computation is past its deadline (cheap: one clock read)."""
    limit = getattr(_deadline, "value", None)
    if limit is not None and time.monotonic() > limit[0]:
        _, seconds, source = limit
        where = f" ({source})" if source else ""
        raise ComputeTimeout(f"the computation was stopped: it ran past its wall-time limit of "
                             f"{_num(seconds)} s{where}")


# ---------------------------------------------------------------------------------------------
# Refusals


def _num(x: float) -> str:
    """A readable number: 1234 -> '1,234', 12.345 -> '12.3', 0.01234 -> '0.0123'."""
    if not math.isfinite(x):
        return "overflow" if x > 0 else str(x)
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


def _by_how_much(value: float, limit: float) -> str:
    ratio = value / limit
    if ratio >= 2:
        return f"{ratio:.3g}x"
    return f"{max(1, math.ceil((ratio - 1) * 100))}%"


def _refuse(what: str, value: int, env: str, limit: float, unit: str = "") -> BudgetExceeded:
    return BudgetExceeded(f"{what} {value}{unit} exceeds {env}={limit:g} by {_by_how_much(value, limit)}")


def _check_sizes(m: ModelConfig, batch: int, seeds: int, limits: Limits) -> None:
    """Depth, width, batch and seeds against their limits: plain arithmetic, nothing walked."""
    staged = m.arch == "resnet" and m.stages > 1 and m.preset is None
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


def _check_memory(memory_mb: float, limits: Limits, what: str = "") -> None:
    if memory_mb <= limits.max_memory_mb:
        return
    if limits.machine_memory:
        budget = (f"the memory this machine has free, {_num(limits.max_memory_mb)} MiB "
                  f"(MemAvailable less {MEMORY_MARGIN:.0%})")
    else:
        budget = f"the budget {_num(limits.max_memory_mb)} MiB ({ENV_VARS['max_memory_mb']})"
    raise BudgetExceeded(f"estimated peak memory {_num(memory_mb)} MiB{what} exceeds {budget} "
                         f"by {_by_how_much(memory_mb, limits.max_memory_mb)}")


def _check_seconds(seconds: float, limits: Limits, what: str = "") -> None:
    if seconds > limits.max_seconds:
        raise BudgetExceeded(
            f"predicted {_num(seconds)} s{what} exceeds the limit {_num(limits.max_seconds)} s "
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
    limits = local_limits() if limits is None else limits
    _check_sizes(model_config, probe_config.batch_size, probe_config.seeds, limits)
    cost = estimate_cost(model_config, probe_config)
    if cost.gflop > limits.max_cost_gflop:
        raise BudgetExceeded(
            f"estimated {_num(cost.gflop)} GFLOP ({_num(cost.flops_per_seed / 1e9)} per seed x "
            f"{cost.seeds} seed{'s' if cost.seeds > 1 else ''}) exceeds the budget "
            f"{_num(limits.max_cost_gflop)} GFLOP ({ENV_VARS['max_cost_gflop']}) "
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
            raise BudgetExceeded(f"sweep point {_describe(model_config, probe_config)}: {err}") from None
    total = sum(c.gflop for c in costs)
    if total > limits.max_sweep_cost_gflop:
        raise BudgetExceeded(
            f"estimated {_num(total)} GFLOP for the whole sweep ({len(costs)} points) exceeds the budget "
            f"{_num(limits.max_sweep_cost_gflop)} GFLOP ({ENV_VARS['max_sweep_cost_gflop']}) "
            f"by {_by_how_much(total, limits.max_sweep_cost_gflop)}"
        )
    if math.isfinite(limits.max_seconds):
        seconds = sum(predicted_seconds(c, limits) for c in costs)
        _check_seconds(seconds, limits, f" for the whole sweep ({len(costs)} points)")
    return costs


def _describe(model_config: ModelConfig, probe_config: ProbeConfig) -> str:
    m = model_config
    name = m.preset or m.arch
    return f"{name} {m.norm} depth={m.depth} width={m.width} batch_size={probe_config.batch_size}"


# ---------------------------------------------------------------------------------------------
# Training


TEST_DIGITS = 360  # held-out digits, scored in one forward pass (normlab.training)
ALL_DIGITS = 1797  # the dataset, upsampled once and split


@dataclass(frozen=True)
class TrainingCost:
    """What one training run (or a study of many) is estimated to cost."""

    runs: int
    memory_mb: float  # peak of the largest run, the process's base included
    seconds_per_run: tuple[float, ...]  # predicted, one per run

    @property
    def seconds(self) -> float:
        return sum(self.seconds_per_run)


def _train_estimate(model_config: ModelConfig, train, limits: Limits) -> tuple[float, float]:
    """(peak memory MiB, predicted seconds) of ``run_training(model_config, train)``.

    A step is a forward and a full backward (dL/dW too: three times the forward FLOPs) at the
    training batch, plus the optimizer's few element-wise operations per weight; every evaluation a
    forward pass over the held-out digits; the two probes are ``run_probes``-like passes.
    """
    probe = ProbeConfig(batch_size=train.batch_size, image_size=train.image_size)
    cost = estimate_cost(model_config, probe)
    size, channels = train.image_size, model_config.in_channels
    params = cost.parameter_bytes / _param_copies(model_config.norm)
    data = 2 * ALL_DIGITS * channels * size * size * BYTES_PER_VALUE  # upsampled images, and the split
    # weights, their gradients, the momentum buffer and the probe's deep copy of the model
    weights = 4 * params + cost.parameter_bytes - params
    t_eval = _walk(model_config, TEST_DIGITS, size)
    evaluation = 2 * BYTES_PER_VALUE * TEST_DIGITS * max(t_eval.largest, 1)  # no_grad: two alive at once
    memory = (cost.base_bytes + data + weights + cost.activation_bytes + cost.workspace_bytes
              + evaluation) / MIB
    if not math.isfinite(limits.max_seconds):
        return memory, math.nan
    cal = calibration(limits.threads or None)
    flops = cost.forward_flops
    step = Cost(flops, 2 * flops, 0.0, 1, 0, 0, 0, ops=cost.ops * 1.5 + 6, points=0.0,
                traffic_bytes=cost.traffic_bytes + 4 * params)
    evals = len(train.eval_steps)
    eval_cost = Cost(t_eval.forward, 0.0, 0.0, 1, 0, 0, 0, ops=t_eval.ops, points=0.0,
                     traffic_bytes=2 * BYTES_PER_VALUE * t_eval.traffic)
    seconds = (train.steps * cal.per_seed(step) + evals * cal.per_seed(eval_cost)
               + 2 * cal.predict(cost))
    return memory, seconds


def check_training(model_config: ModelConfig, train, limits: Limits | None = None) -> TrainingCost:
    """Refuse a training run over the limits before any work: sizes, memory, predicted seconds.

    Args:
        model_config: the network.
        train: a ``normlab.training.TrainConfig``.
        limits: default ``local_limits()`` (the dashboard's training page passes ``server_limits()``).
    """
    limits = local_limits() if limits is None else limits
    _check_sizes(model_config, train.batch_size, 1, limits)
    memory, seconds = _train_estimate(model_config, train, limits)
    _check_memory(memory, limits, " for training")
    if math.isfinite(limits.max_seconds):
        _check_seconds(seconds, limits, f" for {train.steps} training steps")
    return TrainingCost(1, memory, (seconds,))


def check_study(study, limits: Limits | None = None) -> TrainingCost:
    """Refuse a training study over the limits before any run: every run's sizes and memory, the
    seeds, and the predicted seconds of all runs together.

    Args:
        study: a ``normlab.training.StudyConfig``.
    """
    limits = local_limits() if limits is None else limits
    if study.seeds > limits.max_seeds:
        raise _refuse("seeds", study.seeds, ENV_VARS["max_seeds"], limits.max_seeds)
    networks = study.model_configs()
    memory, per_network = 0.0, []
    for m in networks:
        _check_sizes(m, study.train.batch_size, 1, limits)
        mem, seconds = _train_estimate(m, study.train, limits)
        memory = max(memory, mem)
        per_network.append(seconds)
    _check_memory(memory, limits, " for training")
    seconds = tuple(s for s in per_network for _ in range(study.seeds))
    if math.isfinite(limits.max_seconds):
        _check_seconds(sum(seconds), limits, f" for the study's {len(seconds)} runs")
    return TrainingCost(len(seconds), memory, seconds)


def _main(argv: list[str] | None = None) -> int:
    """``python -m normlab.budget --write FILE [--threads N ...]``: measure and keep a calibration table."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m normlab.budget",
                                     description="Calibrate the cost model on this machine.")
    parser.add_argument("--write", metavar="FILE", required=True, help="the table to write")
    parser.add_argument("--threads", type=int, nargs="+", default=[1],
                        help="torch thread counts to calibrate (default 1: the dashboard's on 2 cores)")
    args = parser.parse_args(argv)
    if any(not 1 <= t <= 1024 for t in args.threads):
        parser.error("--threads must be between 1 and 1024")
    made = [calibrate(t) for t in args.threads]
    save_calibration(args.write, made)
    for c in made:
        print(json.dumps(c.to_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
