"""Short seeded SGD runs on scikit-learn's digits, and the study of init similarity vs training speed.

Does what the probes see at initialization predict training? ``run_training`` trains one network for a
few hundred steps and probes it at init and again after a few steps; ``run_study`` repeats that over
normalizers, group counts, architectures and seeds and rank-correlates the final-layer cosine similarity
at init with how fast each network learns. Everything returns tidy frames. Knows nothing of the UI and
never prints; progress goes to an optional ``progress(done, total, label)`` callback.
"""

from __future__ import annotations

import copy
import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from normlab.backends import Point, run_points
from normlab.config import (
    ARCHS,
    DEVICES,
    GROUPED_NORMS,
    MAX_IMAGE_SIZE,
    NORM_NAMES,
    ModelConfig,
)
from normlab.device import resolve_device
from normlab.models import Net, build_model
from normlab.norms import get_normalizer
from normlab.probes import probe_module
from normlab.store import ResultStore

Progress = Callable[[int, int, str], None]
ShouldStop = Callable[[], bool]

# The held-out split is fixed, so every seed and every normalizer is scored on the same 360 digits;
# the seed varies the initialization and the batch order only.
TEST_SIZE = 360
SPLIT_SEED = 0
DIGITS_SIZE = 8  # scikit-learn's digits are 8x8 grey images with values 0..16


def _choices(values) -> str:
    return ", ".join(repr(v) for v in values)


def _check_int(name: str, value, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be a whole number >= {low}; got {value!r}")
    if value < low or (high is not None and value > high):
        allowed = f">= {low}" if high is None else f"between {low} and {high}"
        raise ValueError(f"{name} must be {allowed}; got {value}")


def _check_real(name: str, value, low: float, high: float | None = None, *, open_low: bool = False,
                open_high: bool = False) -> None:
    """A finite number in [low, high], either end optionally open."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number; got {value!r}")
    too_low = value <= low if open_low else value < low
    too_high = high is not None and (value >= high if open_high else value > high)
    if too_low or too_high:
        lo = f"{'(' if open_low else '['}{low}"
        hi = f"{high}{')' if open_high else ']'}" if high is not None else "inf)"
        raise ValueError(f"{name} must be in {lo}, {hi}; got {value!r}")


@dataclass(frozen=True)
class TrainConfig:
    """How to train: plain SGD with momentum on the digits, seeded end to end."""

    steps: int = 200  # about 9 epochs of the 1437 training digits at batch 64: most normalized nets pass 80%
    lr: float = 0.02  # one rate for every normalizer, as the paper's comparison does; no schedule
    momentum: float = 0.9
    weight_decay: float = 0.0  # off: a few hundred steps are too short for it to matter
    batch_size: int = 64  # also the probe batch: the rank of its features is at most batch_size
    image_size: int = 16  # digits are 8x8, upsampled bilinearly; 16 keeps a run within seconds on a CPU
    seed: int = 0  # initialization, batch order and probe batch; the held-out split is fixed
    eval_every: int = 25  # steps between held-out evaluations (the last step is always evaluated)
    # Re-run the probes after this many steps. Gradient explosion is an init effect: in the nets where
    # gradients explode (BatchNorm, InstanceNorm), ten steps at lr 0.02 already shrink their range.
    probe_after: int = 10
    target_accuracy: float = 0.8  # held-out accuracy that counts as "trained" for steps_to_target
    # Cross-entropy starts near ln 10 = 2.3; a loss above this means logits apart by thousands, a run
    # that has blown up even while the numbers stay finite (ReLU nets and BatchNorm ones often do).
    max_loss: float = 1e4
    # 'auto' takes CUDA, then MPS, then the CPU. On the CPU a run is bit-identical for the same torch
    # thread count (a different count changes the float summation order, and so the last digits).
    device: str = "auto"

    def __post_init__(self) -> None:
        _check_int("steps", self.steps, 1)
        _check_real("lr", self.lr, 0.0, open_low=True)
        _check_real("momentum", self.momentum, 0.0, 1.0, open_high=True)
        _check_real("weight_decay", self.weight_decay, 0.0)
        # two samples at least: batch statistics and similarities need a pair
        _check_int("batch_size", self.batch_size, 2, len_train_split())
        _check_int("image_size", self.image_size, 1, MAX_IMAGE_SIZE)
        _check_int("seed", self.seed, 0)
        _check_int("eval_every", self.eval_every, 1)
        _check_int("probe_after", self.probe_after, 1)
        if self.probe_after > self.steps:
            raise ValueError(
                f"probe_after must be between 1 and steps ({self.steps}); got {self.probe_after}"
            )
        _check_real("target_accuracy", self.target_accuracy, 0.0, 1.0, open_low=True)
        _check_real("max_loss", self.max_loss, 0.0, open_low=True)
        if self.device not in DEVICES:
            raise ValueError(f"Unknown device {self.device!r}; expected one of {_choices(DEVICES)}")

    @property
    def eval_steps(self) -> tuple[int, ...]:
        """Steps after which the held-out set is scored: 0 (init), every eval_every, and the last."""
        return tuple(sorted({0, *range(self.eval_every, self.steps + 1, self.eval_every), self.steps}))

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# Data


@dataclass(frozen=True)
class DigitsSplit:
    """The digits as float32 image tensors, standardized with the training set's mean and std."""

    x_train: torch.Tensor  # (1437, C, S, S)
    y_train: torch.Tensor  # (1437,) int64 class labels 0..9
    x_test: torch.Tensor  # (360, C, S, S)
    y_test: torch.Tensor  # (360,)


def len_train_split() -> int:
    """Number of training digits (1797 minus the 360 held out)."""
    return 1797 - TEST_SIZE


@functools.lru_cache(maxsize=8)
def digits_split(image_size: int = 16, in_channels: int = 1) -> DigitsSplit:
    """scikit-learn's digits, upsampled to ``image_size`` and split 1437/360 with a fixed seed.

    Bilinear upsampling, the grey channel copied to ``in_channels``, then one mean and one std taken
    over the training images (so the held-out digits see the same affine map). The split is
    stratified by class. Cached: treat the tensors as read-only.
    """
    from sklearn.datasets import load_digits  # deferred: the import costs a second and few runs need it

    _check_int("image_size", image_size, 1, MAX_IMAGE_SIZE)
    _check_int("in_channels", in_channels, 1)
    digits = load_digits()
    images = torch.as_tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (1797, 1, 8, 8)
    if image_size != DIGITS_SIZE:
        images = F.interpolate(images, size=(image_size, image_size), mode="bilinear", align_corners=False)
    images = images.expand(-1, in_channels, -1, -1).contiguous()  # (1797, C, S, S)
    labels = torch.as_tensor(digits.target, dtype=torch.int64)  # (1797,)
    train_idx, test_idx = _stratified_split(digits.target, TEST_SIZE, SPLIT_SEED)
    mean, std = images[train_idx].mean(), images[train_idx].std()
    images = (images - mean) / std
    return DigitsSplit(images[train_idx], labels[train_idx], images[test_idx], labels[test_idx])


def _stratified_split(labels: np.ndarray, test_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(labels))
    train_idx, test_idx = train_test_split(idx, test_size=test_size, random_state=seed, stratify=labels)
    return np.sort(train_idx), np.sort(test_idx)


class _Batches:
    """Seeded epochs: a fresh permutation of the training set per epoch, cut into full batches."""

    def __init__(self, n: int, batch_size: int, rng: np.random.Generator) -> None:
        self.n, self.batch_size, self.rng = n, batch_size, rng
        self.order, self.pos = rng.permutation(n), 0

    def next(self) -> torch.Tensor:
        if self.pos + self.batch_size > self.n:  # drop the ragged tail: every step sees batch_size samples
            self.order, self.pos = self.rng.permutation(self.n), 0
        batch = self.order[self.pos:self.pos + self.batch_size]
        self.pos += self.batch_size
        return torch.as_tensor(batch)


# ---------------------------------------------------------------------------------------------
# One run


@dataclass(frozen=True)
class TrainResult:
    """What one training run produced.

    Attributes:
        model_config: the network trained.
        train_config: how it was trained.
        curve: one row per step (0 = init): ``step``, ``loss`` and ``train_acc`` of that step's batch
            before its update (NaN at step 0), ``test_loss`` and ``test_acc`` on the held-out digits
            (NaN between evaluations), plus the ``seed`` and the config columns.
        probes_init: probe rows (``probe_module`` columns plus ``step`` = 0, ``seed`` and config columns)
            at initialization, on a fixed batch of training digits with their true labels.
        probes_after: the same rows after ``probe_after`` steps, on the same batch; empty if the run
            diverged or stopped before then.
        diverged: the training loss became NaN, infinite or larger than ``max_loss``; the run stopped
            there, at a step that applied no update.
        stopped: ``should_stop`` asked for an early end.
        seconds: wall-clock time of the run, probes included.
    """

    model_config: ModelConfig
    train_config: TrainConfig
    curve: pd.DataFrame
    probes_init: pd.DataFrame
    probes_after: pd.DataFrame
    diverged: bool
    stopped: bool
    seconds: float

    @property
    def steps_done(self) -> int:
        """Updates applied before the run ended."""
        last = int(self.curve["step"].iloc[-1])
        return last - 1 if self.diverged else last  # the diverging step applied no update

    @property
    def evaluations(self) -> pd.DataFrame:
        """The rows of ``curve`` where the held-out set was scored."""
        curve = self.curve.iloc[:-1] if self.diverged else self.curve  # the diverging step was not scored
        return curve.loc[curve["step"].isin(self.train_config.eval_steps), ["step", "test_loss", "test_acc"]]

    @property
    def final_test_acc(self) -> float:
        """Held-out accuracy at the last evaluation (NaN if the run diverged)."""
        return math.nan if self.diverged else float(self.evaluations["test_acc"].iloc[-1])

    def test_acc_at(self, step: int) -> float:
        """Held-out accuracy at the last evaluation at or before ``step``; NaN past the run's end
        (it diverged or stopped before ``step``)."""
        if step > self.steps_done:
            return math.nan
        evals = self.evaluations
        evals = evals[evals["step"] <= step]
        return float(evals["test_acc"].iloc[-1])

    @property
    def steps_to_target(self) -> float:
        """First evaluated step with held-out accuracy >= target_accuracy; NaN if never reached."""
        evals = self.evaluations
        hit = evals.loc[evals["test_acc"] >= self.train_config.target_accuracy, "step"]
        return float(hit.iloc[0]) if len(hit) else math.nan

    @property
    def init_cos_sim(self) -> float:
        """Final-layer cosine similarity at initialization (the paper's rank-collapse signal)."""
        return final_metric(self.probes_init, "cos_sim")

    @property
    def grad_range_init(self) -> float:
        """max/min of grad_norm over the feature layers at initialization (see :func:`grad_norm_range`)."""
        return grad_norm_range(self.probes_init)

    @property
    def grad_range_after(self) -> float:
        """The same after ``probe_after`` steps (NaN if the run ended before)."""
        return grad_norm_range(self.probes_after)

    def summary(self) -> dict:
        """The run's numbers in one flat dict (config fields included), for tables and the CLI."""
        return {
            **self.model_config.to_dict(),
            **self.train_config.to_dict(),
            "steps_done": self.steps_done,
            "diverged": self.diverged,
            "stopped": self.stopped,
            "final_test_acc": self.final_test_acc,
            "best_test_acc": float(self.evaluations["test_acc"].max()) if not self.diverged else math.nan,
            "steps_to_target": self.steps_to_target,
            "cos_sim_init": self.init_cos_sim,
            "cos_sim_after": final_metric(self.probes_after, "cos_sim"),
            "grad_range_init": self.grad_range_init,
            "grad_range_after": self.grad_range_after,
            "seconds": self.seconds,
        }


def final_metric(probes: pd.DataFrame, metric: str) -> float:
    """The value of ``metric`` at the final features (before pooling); NaN if absent."""
    if probes.empty:
        return math.nan
    rows = probes[(probes["metric"] == metric) & probes["final"].astype(bool)]
    return float(rows["value"].mean()) if len(rows) else math.nan


def grad_norm_range(probes: pd.DataFrame, exclude: Sequence[str] = ("head",)) -> float:
    """Dynamic range max/min of grad_norm over the feature layers, skipping exact zeros and non-finite values.

    The classifier ``head`` is left out by default: its dL/dz is the loss's own gradient (softmax minus
    one-hot), not one propagated back through the normalized layers, and its scale would swamp the
    ratio in shallow nets. SkipInit makes dL/dz exactly 0 inside every residual branch at init; those
    layers carry no signal and would make the ratio infinite, so they are left out too (spec section 3).
    """
    if probes.empty:
        return math.nan
    rows = (probes["metric"] == "grad_norm") & ~probes["layer"].isin(list(exclude))
    values = probes.loc[rows, "value"].to_numpy(dtype=np.float64)
    values = values[np.isfinite(values) & (values > 0)]
    return float(values.max() / values.min()) if len(values) else math.nan


def _config_columns(model_config: ModelConfig, train_config: TrainConfig) -> dict:
    return {**model_config.to_dict(), **{k: v for k, v in train_config.to_dict().items() if k != "seed"}}


def _probe(model: Net, x: torch.Tensor, y: torch.Tensor, step: int, columns: dict, seed: int) -> pd.DataFrame:
    """run_probes rows for a model mid-training, on the batch ``x`` with its true labels ``y``.

    A copy is probed, so the model's batch-norm running statistics stay untouched; probe_module taps
    the network's own probe points, residual branches included.
    """
    frame = probe_module(copy.deepcopy(model), x, y)
    frame["seed"] = seed
    frame.insert(1, "step", step)
    for name, value in columns.items():
        frame[name] = pd.Series([value] * len(frame), dtype=object if value is None else None)
    return frame


@torch.no_grad()
def _evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(loss, accuracy) on the held-out digits, in eval mode (batch norm uses its running statistics).

    Non-finite logits give a NaN accuracy rather than whatever argmax makes of them.
    """
    was_training = model.training
    model.eval()
    logits = model(x)  # (N, K)
    model.train(was_training)
    loss = F.cross_entropy(logits, y).item()
    if not math.isfinite(loss):
        return loss, math.nan
    return loss, (logits.argmax(1) == y).double().mean().item()


def run_training(model_config: ModelConfig, train_config: TrainConfig | None = None,
                 progress: Progress | None = None, should_stop: ShouldStop | None = None) -> TrainResult:
    """Train ``model_config`` on the digits with SGD + momentum and probe it at init and after a few steps.

    Seeded: the same configs give the same curve, bit for bit on the CPU. A NaN, infinite or huge
    (> ``max_loss``) training loss ends the run with ``diverged=True``; nothing is raised for it.

    Args:
        model_config: the network; its ``in_channels`` copies of the grey digits are fed to it.
        train_config: optimizer, schedule, data size and seed; default ``TrainConfig()``.
        progress: called as ``progress(step, steps, label)`` after every step.
        should_stop: polled after every step; returning True ends the run early (``stopped=True``).

    Returns:
        A :class:`TrainResult` of tidy frames and summary numbers.
    """
    if not isinstance(model_config, ModelConfig):
        raise ValueError(f"model_config must be a normlab ModelConfig; got {type(model_config).__name__}")
    if train_config is not None and not isinstance(train_config, TrainConfig):
        raise ValueError(f"train_config must be a TrainConfig or None; got {type(train_config).__name__}")
    cfg = train_config or TrainConfig()
    device = resolve_device(cfg.device)
    started = time.perf_counter()
    data = digits_split(cfg.image_size, model_config.in_channels)
    x_train, y_train = data.x_train.to(device), data.y_train.to(device)
    x_test, y_test = data.x_test.to(device), data.y_test.to(device)

    # The init draws from torch's global generator (nn.init); fork it so a run leaves it as it found it.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = build_model(model_config, input_shape=tuple(x_train.shape[1:])).to(device)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                weight_decay=cfg.weight_decay)
    batches = _Batches(len(x_train), cfg.batch_size, np.random.default_rng([cfg.seed, 0]))
    # The probe batch has its own stream, so probing never shifts the training batches.
    probe_idx = torch.as_tensor(np.random.default_rng([cfg.seed, 1]).choice(
        len(x_train), size=cfg.batch_size, replace=False))
    x_probe, y_probe = x_train[probe_idx], y_train[probe_idx]  # (B, C, S, S), (B,)

    columns = _config_columns(model_config, cfg)
    probes_init = _probe(model, x_probe, y_probe, 0, columns, cfg.seed)
    probes_after = probes_init.iloc[0:0]
    eval_steps = set(cfg.eval_steps)
    test_loss, test_acc = _evaluate(model, x_test, y_test)
    rows = [(0, math.nan, math.nan, test_loss, test_acc)]
    diverged = stopped = False
    label = f"{model_config.arch} {get_normalizer(model_config.norm).label} seed {cfg.seed}"

    for step in range(1, cfg.steps + 1):
        idx = batches.next().to(device)
        logits = model(x_train[idx])  # (B, K)
        loss = F.cross_entropy(logits, y_train[idx])
        loss_value = loss.item()
        if not loss_value <= cfg.max_loss:  # also catches NaN
            rows.append((step, loss_value, math.nan, math.nan, math.nan))
            diverged = True
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        train_acc = (logits.detach().argmax(1) == y_train[idx]).double().mean().item()
        test_loss = test_acc = math.nan
        if step in eval_steps:
            test_loss, test_acc = _evaluate(model, x_test, y_test)
        rows.append((step, loss_value, train_acc, test_loss, test_acc))
        if step == cfg.probe_after:
            probes_after = _probe(model, x_probe, y_probe, step, columns, cfg.seed)
        if progress is not None:
            progress(step, cfg.steps, label)
        if should_stop is not None and should_stop():
            stopped = step < cfg.steps
            break

    curve = pd.DataFrame(rows, columns=["step", "loss", "train_acc", "test_loss", "test_acc"])
    curve.insert(0, "seed", cfg.seed)
    for name, value in columns.items():
        curve[name] = value
    return TrainResult(model_config, cfg, curve, probes_init, probes_after, diverged, stopped,
                       time.perf_counter() - started)


# ---------------------------------------------------------------------------------------------
# Rank correlation


def rankdata(values: Sequence[float]) -> np.ndarray:
    """Ranks 1..n of ``values``, ties sharing their average rank (scipy's 'average' method).

    Infinite values rank like any other number (+inf last), which is how unreached targets enter.
    """
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    # Run boundaries of equal values in sorted order.
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(values)]
    avg = (starts + ends + 1) / 2.0  # mean of the 1-based ranks starts+1 .. ends
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation: Pearson's correlation of the average ranks.

    Returns NaN for fewer than two pairs, for any NaN input, or when either side is constant.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"spearman needs two 1-D sequences of equal length; got shapes {x.shape}, {y.shape}")
    if len(x) < 2 or np.isnan(x).any() or np.isnan(y).any():
        return math.nan
    rx, ry = rankdata(x), rankdata(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = math.sqrt(float(rx @ rx) * float(ry @ ry))
    return float(rx @ ry) / denom if denom > 0 else math.nan


def bootstrap_ci(x: Sequence[float], y: Sequence[float], statistic: Callable = spearman,
                 n_boot: int = 2000, confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic(x, y)``, resampling the (x, y) pairs.

    Resamples on which the statistic is undefined (e.g. a constant side) are left out; with none left
    the interval is (NaN, NaN).
    """
    _check_int("n_boot", n_boot, 1)
    _check_real("confidence", confidence, 0.0, 1.0, open_low=True, open_high=True)
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) != len(y):
        raise ValueError(f"bootstrap_ci needs x and y of equal length; got {len(x)} and {len(y)}")
    if len(x) < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(x), size=(n_boot, len(x)))  # (n_boot, n)
    stats = np.array([statistic(x[p], y[p]) for p in picks])
    stats = stats[np.isfinite(stats)]
    if not len(stats):
        return math.nan, math.nan
    tail = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(stats, [tail, 1.0 - tail])
    return float(lo), float(hi)


# ---------------------------------------------------------------------------------------------
# The study


# Normalizer variants of the default study: the paper's activation-based layers plus the unnormalized net.
STUDY_NORMS = ("none", "batchnorm", "layernorm", "groupnorm", "instancenorm", "frn", "evonorm_b0",
               "evonorm_s0", "weightnorm", "sws")
SPEED_METRICS = ("acc_at_k", "steps_to_target")
# The study repeats a run 84 times (14 networks x 2 archs x 3 seeds), so each is shorter and smaller
# than a single default run: 150 steps on 12x12 digits (40% of the 16x16 cost per step), which keeps
# the default study within 5 minutes on a 2-core CPU. Over half the runs pass 80% held-out accuracy
# within it; the ones that do not are the slow ones, the signal.
STUDY_TRAIN = TrainConfig(steps=150, image_size=12)


def _as_tuple(value) -> tuple:
    if isinstance(value, str):
        return (value,)
    return tuple(value)


@dataclass(frozen=True)
class StudyConfig:
    """Which networks to train and how to correlate their init similarity with their training speed.

    Grouped normalizers (GroupNorm, EvoNorm-S0) run once per entry of ``groups``; LayerNorm and
    InstanceNorm are GroupNorm's two ends (1 group, one channel per group).
    """

    archs: tuple[str, ...] = ("cnn", "resnet")  # the non-residual CNN and the ResNet
    norms: tuple[str, ...] = STUDY_NORMS
    groups: tuple[int, ...] = (2, 4, 8)  # group counts for the grouped normalizers; must divide width
    seeds: int = 3  # seeds per network: each a fresh init and batch order
    seed: int = 0  # first seed
    width: int = 16  # cnn width, resnet first-stage width
    cnn_depth: int = 10  # conv layers of the plain CNN (hidden layers of an mlp): deep enough to collapse
    resnet_depth: int = 4  # blocks per stage
    resnet_stages: int = 1
    k_steps: int = 100  # training speed 1: held-out accuracy after k_steps
    train: TrainConfig = field(default_factory=lambda: STUDY_TRAIN)  # its seed is replaced per run
    n_boot: int = 2000  # bootstrap resamples for the correlation's interval
    confidence: float = 0.95

    def __post_init__(self) -> None:
        for name in ("archs", "norms", "groups"):
            object.__setattr__(self, name, _as_tuple(getattr(self, name)))
            if not getattr(self, name):
                raise ValueError(f"{name} must list at least one value")
        for arch in self.archs:
            if arch not in ARCHS:
                raise ValueError(f"Unknown architecture (archs) {arch!r}; expected some of {_choices(ARCHS)}")
        for norm in self.norms:
            if norm not in NORM_NAMES:
                raise ValueError(
                    f"Unknown normalizer (norms) {norm!r}; expected some of {_choices(NORM_NAMES)}"
                )
        for g in self.groups:
            _check_int("groups", g, 1)
        _check_int("seeds", self.seeds, 1)
        _check_int("seed", self.seed, 0)
        _check_int("width", self.width, 1)
        _check_int("cnn_depth", self.cnn_depth, 1)
        _check_int("resnet_depth", self.resnet_depth, 1)
        _check_int("resnet_stages", self.resnet_stages, 1)
        if not isinstance(self.train, TrainConfig):
            raise ValueError(f"train must be a TrainConfig; got {type(self.train).__name__}")
        _check_int("k_steps", self.k_steps, 1, self.train.steps)
        _check_int("n_boot", self.n_boot, 1)
        _check_real("confidence", self.confidence, 0.0, 1.0, open_low=True, open_high=True)
        self.runs()  # builds every ModelConfig now, so a bad group count fails here, by name

    def model_configs(self) -> list[ModelConfig]:
        """Every network of the study, in run order."""
        configs = []
        for arch in self.archs:
            sizes = {"width": self.width}
            if arch == "resnet":
                sizes.update(depth=self.resnet_depth, stages=self.resnet_stages)
            else:  # the plain nets: cnn, and an mlp if asked for
                sizes.update(depth=self.cnn_depth)
            for norm in self.norms:
                for groups in (self.groups if norm in GROUPED_NORMS else (None,)):
                    try:
                        configs.append(ModelConfig(arch=arch, norm=norm, groups=groups, **sizes))
                    except ValueError as err:
                        raise ValueError(f"study network {arch}/{norm}/groups={groups}: {err}") from err
        return configs

    def runs(self) -> list[tuple[ModelConfig, TrainConfig]]:
        """Every (network, training) pair of the study: each network once per seed."""
        seeds = range(self.seed, self.seed + self.seeds)
        return [(m, replace(self.train, seed=s)) for m in self.model_configs() for s in seeds]

    def to_dict(self) -> dict:
        return asdict(self)


def variant_label(model_config: ModelConfig) -> str:
    """A normalizer's label, with its group count where it has one: 'GroupNorm (G=4)'."""
    label = get_normalizer(model_config.norm).label
    return f"{label} (G={model_config.groups})" if model_config.groups is not None else label


@dataclass(frozen=True)
class StudyResult:
    """The study's tidy frames.

    Attributes:
        config: the study that ran.
        runs: one row per (arch, norm, groups, seed): ``label``, init similarity (``cos_sim_init``,
            ``cos_sim_centered_init``, ``stable_rank_init``), training speed (``acc_at_k``,
            ``steps_to_target``), ``final_test_acc``, ``diverged``, gradient ranges and the config.
        correlations: one row per (arch, speed): Spearman's ``rho`` of ``cos_sim_init`` against the speed
            measure, its bootstrap interval ``lo``/``hi`` and the number of runs ``n``; arch 'all' pools
            the architectures. The paper predicts rho < 0 for acc_at_k and rho > 0 for steps_to_target.
        curves: the training curves of every run, concatenated (``label`` added).
        stopped: ``should_stop`` ended the study early; only finished runs are in the frames.
    """

    config: StudyConfig
    runs: pd.DataFrame
    correlations: pd.DataFrame
    curves: pd.DataFrame
    stopped: bool = False


def study_row(result: TrainResult, k_steps: int) -> dict:
    """One run's row of the study frame."""
    mc, tc = result.model_config, result.train_config
    return {
        "arch": mc.arch,
        "norm": mc.norm,
        "groups": mc.groups,
        "seed": tc.seed,
        "label": variant_label(mc),
        "cos_sim_init": result.init_cos_sim,
        "cos_sim_centered_init": final_metric(result.probes_init, "cos_sim_centered"),
        "stable_rank_init": final_metric(result.probes_init, "stable_rank"),
        "k_steps": k_steps,
        "acc_at_k": result.test_acc_at(k_steps),
        "steps_to_target": result.steps_to_target,
        "final_test_acc": result.final_test_acc,
        "diverged": result.diverged,
        "grad_range_init": result.grad_range_init,
        "grad_range_after": result.grad_range_after,
        "seconds": result.seconds,
        **{k: v for k, v in mc.to_dict().items() if k not in ("arch", "norm", "groups")},
    }


def speed_for_ranking(runs: pd.DataFrame, speed: str) -> np.ndarray:
    """A speed column made rankable: diverged runs and unreached targets rank as the slowest, tied.

    acc_at_k of a diverged run becomes -inf; steps_to_target NaN (never reached) becomes +inf.
    """
    if speed not in SPEED_METRICS:
        raise ValueError(f"Unknown speed measure {speed!r}; expected one of {_choices(SPEED_METRICS)}")
    values = runs[speed].to_numpy(dtype=np.float64).copy()
    worst = -np.inf if speed == "acc_at_k" else np.inf
    values[np.isnan(values)] = worst
    return values


def correlate(runs: pd.DataFrame, n_boot: int = 2000, confidence: float = 0.95, seed: int = 0,
              x: str = "cos_sim_init") -> pd.DataFrame:
    """Spearman's rho of ``x`` against each speed measure, per arch and pooled, with bootstrap intervals."""
    rows = []
    groups = [(arch, runs[runs["arch"] == arch]) for arch in runs["arch"].unique()]
    if len(groups) > 1:
        groups.append(("all", runs))
    for arch, part in groups:
        part = part[np.isfinite(part[x].to_numpy(dtype=np.float64))]
        for speed in SPEED_METRICS:
            xs, ys = part[x].to_numpy(dtype=np.float64), speed_for_ranking(part, speed)
            lo, hi = bootstrap_ci(xs, ys, spearman, n_boot=n_boot, confidence=confidence, seed=seed)
            rows.append({"arch": arch, "x": x, "speed": speed, "rho": spearman(xs, ys), "lo": lo, "hi": hi,
                         "n": len(part), "confidence": confidence})
    return pd.DataFrame(rows, columns=["arch", "x", "speed", "rho", "lo", "hi", "n", "confidence"])


def assemble_study(config: StudyConfig, results: Sequence[TrainResult], stopped: bool = False) -> StudyResult:
    """The study's frames from finished runs (all of them, or those done before a stop)."""
    runs = pd.DataFrame([study_row(r, config.k_steps) for r in results])
    if runs.empty:  # stopped before the first run finished
        runs = pd.DataFrame(columns=["arch", "norm", "groups", "seed", "label", "cos_sim_init",
                                     *SPEED_METRICS, "diverged"])
    correlations = correlate(runs, config.n_boot, config.confidence, config.seed)
    curves = [r.curve.assign(label=variant_label(r.model_config)) for r in results]
    curves = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame()
    return StudyResult(config, runs, correlations, curves, stopped)


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
            cluster at ``address`` (None: a local Ray). See normlab.backends.
        store: a ResultStore that keeps each finished run (a train record) and supplies those it
            already holds, so a rerun resumes; None keeps nothing.
    """
    config = study_config or StudyConfig()
    plan = config.runs()
    points = [Point("train", (mc, tc), tc.steps, prefix=f"run {i + 1}/{len(plan)}: ",
                    name=f"{mc.arch} {get_normalizer(mc.norm).label} seed {tc.seed}")
              for i, (mc, tc) in enumerate(plan)]
    results, stopped = run_points(points, backend, address, store, progress, should_stop)
    # A stop keeps the runs finished before it (on Ray, those that happened to finish first).
    return assemble_study(config, [r for r in results if r is not None], stopped=stopped)


__all__ = [
    "DigitsSplit",
    "StudyConfig",
    "StudyResult",
    "TrainConfig",
    "TrainResult",
    "assemble_study",
    "bootstrap_ci",
    "correlate",
    "digits_split",
    "final_metric",
    "grad_norm_range",
    "rankdata",
    "run_study",
    "run_training",
    "spearman",
    "speed_for_ranking",
    "study_row",
    "variant_label",
]
