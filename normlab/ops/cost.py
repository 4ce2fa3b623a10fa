"""What a request costs before it runs: compute, memory and the cost model's terms, from the config alone.

``estimate_cost`` walks the config's layer plan with integer arithmetic: it never builds a model and
never touches torch, so a refused config has allocated nothing. The FLOPs agree with torch's count to a
few percent; the memory, the process's base included, with the measured peak resident memory to ~15%
when large tensors go back to the system on free (MALLOC_MMAP_THRESHOLD_, see docs/deploy.md). The
seconds come from the calibrated time model (normlab.ops.calibration).
"""

from __future__ import annotations

from dataclasses import dataclass

from normlab.core import catalog
from normlab.core.config import PRESETS, ModelConfig, ProbeConfig, check_instance
from normlab.core.train_config import ALL_DIGITS, TEST_DIGITS
from normlab.ops.settings import BASE_MEMORY_MB, MIB

BYTES_PER_VALUE = 4  # activations and weights are float32



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


def network_depth(model_config: ModelConfig) -> int:
    """Layers of a plain net, residual blocks of a residual one; never materializes the plan."""
    if model_config.preset is not None and "plan" in PRESETS[model_config.preset]:
        return len(PRESETS[model_config.preset]["plan"])
    if model_config.residual:
        return model_config.depth * model_config.stages
    return model_config.depth


def max_width(model_config: ModelConfig) -> int:
    """The widest layer of the network; a residual net doubles its width at every stage."""
    if model_config.preset is not None and "plan" in PRESETS[model_config.preset]:
        return max(w for w, _ in PRESETS[model_config.preset]["plan"])
    if model_config.residual:
        return model_config.width * 2 ** (model_config.stages - 1)
    return model_config.width


def _gram_flops(n: int, d: int) -> float:
    """The statistics of one probe point on n samples of d features: the float64 copy, the batch mean,
    the centered Gram (2 n^2 d) and the per-channel moments, plus two n x n eigensolves (~10 n^3 each)."""
    return 2.0 * n * n * d + 8.0 * n * d + 20.0 * n**3


# Activation-sized tensors autograd keeps per norm -> activation unit, and the copies of each weight a
# probe keeps alive: the per-normalizer cost terms of normlab.core.catalog (NormInfo.saved_per_unit and
# NormInfo.weight_copies, ops_per_unit and weight_ops, measured there).


def _param_copies(norm: str) -> int:
    return catalog.normalizer(norm).weight_copies


class _Tally:
    """Running sums while walking a network's layers."""

    def __init__(self, batch: int, norm: str, weight_grads: bool = False) -> None:
        self.n = batch
        # A token family's input is integers: its backward pass computes dL/dW as well as dL/dx.
        self.backward_factor = 2.0 if weight_grads else 1.0
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
        self.backward += self.backward_factor * flops
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

    def shortcut_norm(self, features: int) -> None:
        """The normalizer of a projection shortcut: a unit without its activation, not probed."""
        self.saves(self.per_unit - 1, features)
        self.elementwise(max(1, self.unit_ops - 1), features)

    def moments(self, features: int) -> None:
        """A probe point reduced to channel moments only (the residual branch, for res_var)."""
        self.metrics += 4.0 * self.n * features
        self.points += 1
        self.traffic += self.n * features

    def attention(self, heads: int, tokens: int, head_dim: int) -> None:
        """Scaled dot-product attention: q k^T and the weighted values (2 N H T^2 D/H FLOPs each), the
        scale, mask and softmax over the (N, H, T, T) scores, and the probabilities kept for backward;
        the entropy of the probabilities is read at a probe point."""
        scores = heads * tokens * tokens  # per sequence
        flops = 2 * 2.0 * self.n * scores * head_dim
        self.forward += flops
        self.backward += 2 * flops  # both operands of both products need a gradient
        self.saves(2, scores)  # the softmax output, and the scores for the product's backward
        self.elementwise(4, scores)  # scale, mask, softmax (max, exp, sum, divide fused by torch)
        self.saves(3, tokens * heads * head_dim)  # q, k, v split into heads
        self.metrics += 3.0 * self.n * scores  # the entropy of the attention rows
        self.points += 1
        self.traffic += self.n * scores

    def token_point(self, tokens: int, features: int) -> None:
        """A probe point on a token sequence: per-feature moments over (N, T), the Gram of the N
        sequence means (as :meth:`gram`), and a T x T cosine Gram per sequence (token_cos_sim)."""
        self.gram(features)
        self.metrics += 2.0 * self.n * tokens * tokens * features + 8.0 * self.n * tokens * features
        self.largest = max(self.largest, tokens * features)
        self.traffic += 3.0 * self.n * tokens * features


def _walk(m: ModelConfig, batch: int, image_size: int) -> _Tally:
    """The layers of ``m`` on a batch of ``batch`` images of ``image_size``, as ``run_probes`` meets them:
    its family's walk (normlab.core.plans) over a tally."""
    t = _Tally(batch, m.norm, weight_grads=catalog.family(m.arch).tokens)
    catalog.family(m.arch).walk(t, m, image_size)
    return t


# Natural images are cut from the photographs one sample at a time (normlab.science.data._image_crops): a crop
# at a random scale up to 4x, an antialiased resize and a flip, ~20 small operations a sample, and a
# resize that costs as much as ~280 bytes of element-wise traffic per output value (measured on one
# core: 92 ms for 128 crops of 32x32, 51 ms for 128 of 16x16; the probe of a wide-shallow mlp at
# batch 128 ran twice its prediction without this).
IMAGE_OPS_PER_SAMPLE = 20
IMAGE_BYTES_PER_VALUE = 280


def _input_terms(m: ModelConfig, probe_config: ProbeConfig) -> tuple[float, float]:
    """(operations, traffic bytes) of making one seed's input batch; gaussian noise is one draw, random
    bytes too; a text's windows are cut one sequence at a time."""
    if catalog.family(m.arch).tokens:
        windows = probe_config.batch_size if probe_config.input == "text" else 1
        return 2.0 * windows, 8.0 * probe_config.batch_size * (m.seq_len + 1)
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
    check_instance("model_config", model_config, ModelConfig)
    check_instance("probe_config", probe_config, ProbeConfig)
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


@dataclass(frozen=True)
class TrainingCost:
    """What one training run (or a study of many) is estimated to cost."""

    runs: int
    memory_mb: float  # peak of the largest run, the process's base included
    seconds_per_run: tuple[float, ...]  # predicted, one per run

    @property
    def seconds(self) -> float:
        return sum(self.seconds_per_run)


@dataclass(frozen=True)
class TrainingEstimate:
    """One training run on paper: its peak memory, and the costs the time model prices (one step, one
    evaluation, one probe)."""

    memory_mb: float  # the process's base included
    step: Cost
    evaluation: Cost
    probe: Cost


def training_estimate(model_config: ModelConfig, train) -> TrainingEstimate:
    """What ``run_training(model_config, train)`` costs, from one walk at the training batch and one over
    the held-out digits.

    Memory: the two probes are ``run_probes``-like passes at the training batch; the data set is the
    digits, upsampled once and split; the weights are held four times over (gradients, momentum, the
    probe's deep copy); every evaluation is a forward pass over the held-out digits. A step is a forward
    and a full backward (dL/dW too: three times the forward FLOPs) at the training batch, plus the
    optimizer's few element-wise operations per weight.
    """
    probe = estimate_cost(model_config, ProbeConfig(batch_size=train.batch_size, image_size=train.image_size))
    size, channels = train.image_size, model_config.in_channels
    params = probe.parameter_bytes / _param_copies(model_config.norm)
    data = 2 * ALL_DIGITS * channels * size * size * BYTES_PER_VALUE  # upsampled images, and the split
    # weights, their gradients, the momentum buffer and the probe's deep copy of the model
    weights = 4 * params + probe.parameter_bytes - params
    t_eval = _walk(model_config, TEST_DIGITS, size)
    evaluation_bytes = 2 * BYTES_PER_VALUE * TEST_DIGITS * max(t_eval.largest, 1)  # no_grad: two alive
    memory = (probe.base_bytes + data + weights + probe.activation_bytes + probe.workspace_bytes
              + evaluation_bytes) / MIB
    flops = probe.forward_flops
    step = Cost(flops, 2 * flops, 0.0, 1, 0, 0, 0, ops=probe.ops * 1.5 + 6, points=0.0,
                traffic_bytes=probe.traffic_bytes + 4 * params)
    evaluation = Cost(t_eval.forward, 0.0, 0.0, 1, 0, 0, 0, ops=t_eval.ops, points=0.0,
                      traffic_bytes=2 * BYTES_PER_VALUE * t_eval.traffic)
    return TrainingEstimate(memory, step, evaluation, probe)
