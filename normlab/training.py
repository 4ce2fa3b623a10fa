"""Seeded SGD runs (scikit-learn's digits offline, CIFAR from a local folder), and the study of init
similarity vs training speed.

Does what the probes see at initialization predict training, and does it last? ``run_training`` trains
one network and probes it at chosen steps (0 = init, then 1, 2, 5, 10, 20, 50, ...), always on the
batch ``run_probes`` would measure for the same seed; ``paper_recipe`` is the paper's CIFAR training
setup (SGD, momentum 0.9, weight decay 1e-4, batch 256, warmup for FRN). ``run_study`` repeats runs over
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

from normlab import datasets
from normlab.backends import Point, run_points
from normlab.budget import check_study, check_time, check_training
from normlab.config import (
    ARCHS,
    DEVICES,
    GROUPED_NORMS,
    MAX_DEPTH,
    MAX_IMAGE_SIZE,
    MAX_SEED,
    MAX_STAGES,
    MAX_WIDTH,
    NORM_NAMES,
    ModelConfig,
    ProbeConfig,
)
from normlab.config import check_int as _check_int
from normlab.data import derive_seed, make_inputs, make_labels, resized, to_channels
from normlab.device import resolve_device
from normlab.models import Net, build_model
from normlab.norms import get_normalizer
from normlab.probes import probe_module
from normlab.store import ResultStore
from normlab.summary import final_value, gradient_growth, gradient_range, rankdata, spearman

Progress = Callable[[int, int, str], None]
ShouldStop = Callable[[], bool]

# The held-out split is fixed, so every seed and every normalizer is scored on the same 360 digits;
# the seed varies the initialization and the batch order only.
TEST_SIZE = 360
SPLIT_SEED = 0
DIGITS_SIZE = 8  # scikit-learn's digits are 8x8 grey images with values 0..16
TRAIN_DATASETS = ("digits", "cifar10", "cifar100")  # the CIFARs are read from data_dir, never downloaded
# Probes at 0, 1, 2, 5, 10, 20, 50, 100, ...: dense where the gradients change fastest (the first steps).
PROBE_MANTISSAS = (1, 2, 5)
LR_DROP = 0.1  # the paper's schedule ends at a tenth of the base rate (0.1 -> 0.01)
EVAL_CHUNK = 1000  # held-out images per forward pass: CIFAR's 10000 at once would need GBs
# Ceilings far above any sensible run, so a typo is refused by name before any work rather than
# running for days or building a plan that fills the memory. The operator's limits and the machine's
# memory (normlab.budget.check_training / check_study) bound what runs below them.
MAX_STEPS = 100_000  # ~500 epochs of the digits at batch 64: hours for the smallest net on a CPU
MAX_STUDY_SEEDS = 1_000
MAX_BOOT = 1_000_000  # bootstrap resamples: ~1 minute of Spearman's rho on the default study


def _choices(values) -> str:
    return ", ".join(repr(v) for v in values)


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
    # Steps after which the probes run (0 = init); None: default_probe_steps(steps), 0, 1, 2, 5, 10, 20,
    # 50, ... and the last step. probe_after is always one of them (its rows are probes_after).
    probe_steps: tuple[int, ...] | None = None
    dataset: str = "digits"  # one of TRAIN_DATASETS
    data_dir: str | None = None  # the CIFAR folder (normlab.datasets); None: $NORMLAB_DATA_DIR
    warmup_steps: int = 0  # the rate rises linearly, lr * step / warmup_steps, over the first steps
    lr_drop_step: int | None = None  # from this step on the rate is lr * LR_DROP; None: no drop
    hflip: bool = False  # flip each training image left-right with probability 1/2 (the paper's CIFAR runs)

    def __post_init__(self) -> None:
        _check_int("steps", self.steps, 1, MAX_STEPS)
        _check_real("lr", self.lr, 0.0, open_low=True)
        _check_real("momentum", self.momentum, 0.0, 1.0, open_high=True)
        _check_real("weight_decay", self.weight_decay, 0.0)
        # two samples at least: batch statistics and similarities need a pair
        _check_int("batch_size", self.batch_size, 2, len_train_split())
        _check_int("image_size", self.image_size, 1, MAX_IMAGE_SIZE)
        _check_int("seed", self.seed, 0, MAX_SEED)
        _check_int("eval_every", self.eval_every, 1, MAX_STEPS)
        _check_int("probe_after", self.probe_after, 1)
        if self.probe_after > self.steps:
            raise ValueError(
                f"probe_after must be between 1 and steps ({self.steps}); got {self.probe_after}"
            )
        _check_real("target_accuracy", self.target_accuracy, 0.0, 1.0, open_low=True)
        _check_real("max_loss", self.max_loss, 0.0, open_low=True)
        if self.device not in DEVICES:
            raise ValueError(f"Unknown device {self.device!r}; expected one of {_choices(DEVICES)}")
        self._check_schedule()

    def _check_schedule(self) -> None:
        """The fields of probing at chosen steps, CIFAR data and the paper's schedule."""
        if self.probe_steps is not None:
            steps = self.probe_steps
            if isinstance(steps, (int, np.integer, str)) or not hasattr(steps, "__iter__"):
                steps = (steps,)  # one value; a string is refused by _check_int below, naming the field
            for k in steps:
                _check_int("probe_steps", k, 0, self.steps)
            object.__setattr__(self, "probe_steps", tuple(sorted({int(k) for k in steps})))
        if self.dataset not in TRAIN_DATASETS:
            raise ValueError(f"Unknown dataset {self.dataset!r}; expected one of {_choices(TRAIN_DATASETS)}")
        if self.data_dir is not None and (not isinstance(self.data_dir, str) or not self.data_dir.strip()):
            raise ValueError(f"data_dir must be a folder path or None; got {self.data_dir!r}")
        if self.dataset == "digits":
            object.__setattr__(self, "data_dir", None)  # canonical: the digits read no folder
        _check_int("warmup_steps", self.warmup_steps, 0)
        if self.lr_drop_step is not None:
            _check_int("lr_drop_step", self.lr_drop_step, 1)
        if not isinstance(self.hflip, bool):
            raise ValueError(f"hflip must be true or false; got {self.hflip!r}")

    @property
    def probe_schedule(self) -> tuple[int, ...]:
        """Every step the probes run at: 0, probe_after, and probe_steps (or the default), in order."""
        chosen = default_probe_steps(self.steps) if self.probe_steps is None else self.probe_steps
        return tuple(sorted({0, self.probe_after, *chosen}))

    @property
    def probe_config(self) -> ProbeConfig:
        """The ProbeConfig whose ``run_probes`` batch the run probes at every probe step.

        Same dataset (digits drawn from all 1797 and standardized over the batch; CIFAR's training
        split with the paper's preprocessing), batch_size, image_size, seed and device; its random
        labels are ``make_labels`` of the seed. So step 0 of a run is ``run_probes(model, probe_config)``,
        and what changes between probe steps is the weights alone.
        """
        return ProbeConfig(input=self.dataset, batch_size=self.batch_size, image_size=self.image_size,
                           seed=self.seed, seeds=1, device=self.device, data_dir=self.data_dir)

    def lr_at(self, step: int) -> float:
        """The learning rate of update ``step`` (1-based): warmup, then lr, then lr * LR_DROP."""
        rate = self.lr * (LR_DROP if self.lr_drop_step is not None and step >= self.lr_drop_step else 1.0)
        if step <= self.warmup_steps:
            rate *= step / self.warmup_steps
        return rate

    @property
    def eval_steps(self) -> tuple[int, ...]:
        """Steps after which the held-out set is scored: 0 (init), every eval_every, and the last."""
        return tuple(sorted({0, *range(self.eval_every, self.steps + 1, self.eval_every), self.steps}))

    def to_dict(self) -> dict:
        return asdict(self)


def default_probe_steps(steps: int) -> tuple[int, ...]:
    """0, 1, 2, 5, 10, 20, 50, ... up to ``steps``, and ``steps`` itself (the run's end)."""
    _check_int("steps", steps, 0)
    out, scale = {0, steps}, 1
    while scale <= steps:
        out |= {m * scale for m in PROBE_MANTISSAS if m * scale <= steps}
        scale *= 10
    return tuple(sorted(out))


# The paper's training setup (its code's config.py and main.py): 60 epochs of CIFAR at batch 256, SGD
# with momentum 0.9 and weight decay 1e-4, rate 0.1 (its init_lr 1 x base 0.1, scaled as 0.1 * 256 /
# batch), dropped to 0.01 for the last quarter of the post-warmup steps; FRN alone warms up linearly over
# the first 5 epochs; random horizontal flips; ToTensor + Normalize(0.5, 0.5).
PAPER_EPOCHS = 60
PAPER_WARMUP_EPOCHS = 5
PAPER_BATCH = 256
PAPER_LR = 0.1
PAPER_WARMUP_NORMS = ("frn",)
CIFAR_TRAIN_SIZE = 50_000


def paper_recipe(norm: str, steps: int | None = None, dataset: str = "cifar100", **changes) -> TrainConfig:
    """The paper's CIFAR training setup for normalizer ``norm``, over ``steps`` updates.

    ``steps`` None: the paper's full 60 epochs (11760 steps at batch 256). A shorter run keeps the
    schedule's shape, compressed: warmup over the first 5/60 of the steps (FRN only), the base rate
    for 3/4 of the rest, a tenth of it after. ``changes`` override any field (batch_size rescales the
    rate as the paper's code does: 0.1 * 256 / batch_size).
    """
    if norm not in NORM_NAMES:
        raise ValueError(f"Unknown normalizer (norm) {norm!r}; expected one of {_choices(NORM_NAMES)}")
    batch = changes.get("batch_size", PAPER_BATCH)
    _check_int("batch_size", batch, 2, CIFAR_TRAIN_SIZE)
    epoch = math.ceil(CIFAR_TRAIN_SIZE / batch)
    if steps is None:
        steps = PAPER_EPOCHS * epoch
    _check_int("steps", steps, 1)
    warmup = round(steps * PAPER_WARMUP_EPOCHS / PAPER_EPOCHS) if norm in PAPER_WARMUP_NORMS else 0
    recipe = dict(
        steps=steps, lr=PAPER_LR * PAPER_BATCH / batch, momentum=0.9, weight_decay=1e-4, batch_size=batch,
        image_size=32, dataset=dataset, warmup_steps=warmup,
        lr_drop_step=warmup + int(0.75 * (steps - warmup)) + 1, hflip=True,
        eval_every=max(min(epoch, steps // 5), 1), probe_after=min(10, steps),
    )
    return TrainConfig(**{**recipe, **changes})


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


@dataclass(frozen=True)
class TrainData:
    """A training set and its held-out set; ``prepare`` turns stored images into network input.

    The digits are stored prepared (float32); CIFAR as uint8 (150 MB rather than 600 MB as float),
    normalized batch by batch.
    """

    x_train: torch.Tensor  # (N, C, S, S)
    y_train: torch.Tensor  # (N,) int64
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    image_size: int
    in_channels: int

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Stored images -> float32 (B, in_channels, image_size, image_size) on x's device."""
        if x.dtype != torch.uint8:
            return x
        return to_channels(resized(datasets.normalize(x), self.image_size), self.in_channels)

    def to(self, device: torch.device) -> TrainData:
        return replace(self, x_train=self.x_train.to(device), y_train=self.y_train.to(device),
                       x_test=self.x_test.to(device), y_test=self.y_test.to(device))


def train_data(train_config: TrainConfig, in_channels: int) -> TrainData:
    """The training and held-out images of ``train_config.dataset``: the digits split, or CIFAR's
    train and test splits read from ``data_dir``."""
    cfg = train_config
    if cfg.dataset == "digits":
        d = digits_split(cfg.image_size, in_channels)
        return TrainData(d.x_train, d.y_train, d.x_test, d.y_test, 10, cfg.image_size, in_channels)
    train = datasets.load_cifar(cfg.dataset, cfg.data_dir, "train")
    test = datasets.load_cifar(cfg.dataset, cfg.data_dir, "test")
    if cfg.batch_size > len(train):
        raise ValueError(f"batch_size must be at most the {len(train)} training images in {train.source}; "
                         f"got {cfg.batch_size}")
    return TrainData(train.images, train.labels, test.images, test.labels, datasets.NUM_CLASSES[cfg.dataset],
                     cfg.image_size, in_channels)


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
            at initialization, on the batch and random labels of ``run_probes`` for
            ``train_config.probe_config``: the same numbers as that call.
        probes_after: the same rows after ``probe_after`` steps, on the same batch; empty if the run
            diverged or stopped before then.
        probes: the rows of every step of ``train_config.probe_schedule`` the run reached, in one
            frame with a ``step`` column (probes_init and probes_after are two of its steps).
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
    probes: pd.DataFrame = field(default_factory=pd.DataFrame)

    def grad_ranges(self) -> pd.DataFrame:
        """``step`` and ``grad_range`` (see :func:`grad_norm_range`) at every probed step."""
        if self.probes.empty:
            return pd.DataFrame({"step": pd.Series(dtype=np.int64), "grad_range": pd.Series(dtype=float)})
        steps = sorted(self.probes["step"].unique())
        ranges = [grad_norm_range(self.probes[self.probes["step"] == k]) for k in steps]
        return pd.DataFrame({"step": np.asarray(steps, dtype=np.int64), "grad_range": ranges})

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
    def grad_growth_init(self) -> float:
        """Gradient growth at initialization (first over last hidden layer, normlab.summary)."""
        return gradient_growth(self.probes_init) if not self.probes_init.empty else math.nan

    @property
    def grad_range_after(self) -> float:
        """The same after ``probe_after`` steps (NaN if the run ended before)."""
        return grad_norm_range(self.probes_after)

    def summary(self) -> dict:
        """The run's numbers in one flat dict (config fields included), for tables and the CLI."""
        return {
            **_config_columns(self.model_config, self.train_config),
            "seed": self.train_config.seed,
            "steps_done": self.steps_done,
            "diverged": self.diverged,
            "stopped": self.stopped,
            "final_test_acc": self.final_test_acc,
            "best_test_acc": float(self.evaluations["test_acc"].max()) if not self.diverged else math.nan,
            "steps_to_target": self.steps_to_target,
            "cos_sim_init": self.init_cos_sim,
            "cos_sim_after": final_metric(self.probes_after, "cos_sim"),
            "grad_growth_init": self.grad_growth_init,
            "grad_range_init": self.grad_range_init,
            "grad_range_after": self.grad_range_after,
            "seconds": self.seconds,
        }


def final_metric(probes: pd.DataFrame, metric: str) -> float:
    """The value of ``metric`` at the final features (before pooling); NaN if absent."""
    return final_value(probes, metric) if not probes.empty else math.nan


def grad_norm_range(probes: pd.DataFrame) -> float:
    """The gradient range of :func:`normlab.summary.gradient_range`: max/min of grad_norm over the hidden
    conv/linear outputs (head and exact zeros left out, as for the gradient growth); NaN on overflow."""
    return gradient_range(probes) if not probes.empty else math.nan


def _config_columns(model_config: ModelConfig, train_config: TrainConfig) -> dict:
    """Config columns of the run's frames; probe_steps as text ("0,1,2,5"), one cell for the tuple."""
    train = {k: v for k, v in train_config.to_dict().items() if k != "seed"}
    if train["probe_steps"] is not None:
        train["probe_steps"] = ",".join(map(str, train["probe_steps"]))
    return {**model_config.to_dict(), **train}


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
def _evaluate(model: torch.nn.Module, data: TrainData) -> tuple[float, float]:
    """(loss, accuracy) on the held-out set, in eval mode (batch norm uses its running statistics),
    EVAL_CHUNK images per pass.

    Non-finite logits give a NaN accuracy rather than whatever argmax makes of them.
    """
    was_training = model.training
    model.eval()
    loss_sum, correct, n = 0.0, 0.0, len(data.y_test)
    for start in range(0, n, EVAL_CHUNK):
        y = data.y_test[start:start + EVAL_CHUNK]
        logits = model(data.prepare(data.x_test[start:start + EVAL_CHUNK]))  # (n, K)
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).double().sum().item()
    model.train(was_training)
    loss = loss_sum / n
    if not math.isfinite(loss):
        return loss, math.nan
    return loss, correct / n


def run_training(model_config: ModelConfig, train_config: TrainConfig | None = None,
                 progress: Progress | None = None, should_stop: ShouldStop | None = None) -> TrainResult:
    """Train ``model_config`` with SGD + momentum and probe it at the steps of ``probe_schedule``.

    The data is ``train_config.dataset``: the digits, or CIFAR from ``data_dir``. The weights are
    initialized as ``run_probes`` initializes them for the same seed, and every probe measures the
    batch of ``train_config.probe_config`` with its random labels, so step 0 equals ``run_probes``.
    Seeded: the same configs give the same curve, bit for bit on the CPU. A NaN, infinite or huge
    (> ``max_loss``) training loss ends the run with ``diverged=True``; nothing is raised for it.

    Args:
        model_config: the network; its ``in_channels`` copies of the grey digits are fed to it (CIFAR's
            RGB channels are repeated or averaged to fit); CIFAR-100 needs ``num_classes`` 100.
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
    check_training(model_config, cfg)  # this machine's memory (and operator limits set), before any work
    device = resolve_device(cfg.device)
    started = time.perf_counter()
    data = train_data(cfg, model_config.in_channels)
    if model_config.num_classes < data.num_classes:
        raise ValueError(f"num_classes must be at least the {data.num_classes} classes of {cfg.dataset}; "
                         f"got {model_config.num_classes}")
    data = data.to(device)
    x_train, y_train = data.x_train, data.y_train
    # The probe batch is run_probes' batch: its own stream, so probing never shifts the training batches.
    x_probe = make_inputs(cfg.probe_config, cfg.seed, model_config.in_channels).to(device)
    y_probe = make_labels(cfg.batch_size, model_config.num_classes, cfg.seed).to(device)

    # The init draws from torch's global generator (nn.init); fork it so a run leaves it as it found it.
    # Seeded as run_probes seeds it, so a run starts from the network run_probes measures.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(cfg.seed, "init"))
        model = build_model(model_config, input_shape=(model_config.in_channels, cfg.image_size,
                                                       cfg.image_size)).to(device)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                weight_decay=cfg.weight_decay)
    batches = _Batches(len(x_train), cfg.batch_size, np.random.default_rng([cfg.seed, 0]))
    flips = np.random.default_rng([cfg.seed, 2])  # its own stream: hflip leaves the batch order alone

    columns = _config_columns(model_config, cfg)
    probes = [_probe(model, x_probe, y_probe, 0, columns, cfg.seed)]
    probe_steps = set(cfg.probe_schedule)
    eval_steps = set(cfg.eval_steps)
    test_loss, test_acc = _evaluate(model, data)
    rows = [(0, math.nan, math.nan, test_loss, test_acc)]
    diverged = stopped = False
    label = f"{model_config.arch} {get_normalizer(model_config.norm).label} seed {cfg.seed}"

    for step in range(1, cfg.steps + 1):
        check_time()  # a run past its hard wall-time limit stops between steps
        idx = batches.next().to(device)
        x = data.prepare(x_train[idx])  # (B, C, S, S)
        if cfg.hflip:
            flip = torch.as_tensor(flips.random(len(idx)) < 0.5, device=device)
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        logits = model(x)  # (B, K)
        loss = F.cross_entropy(logits, y_train[idx])
        loss_value = loss.item()
        if not loss_value <= cfg.max_loss:  # also catches NaN
            rows.append((step, loss_value, math.nan, math.nan, math.nan))
            diverged = True
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr_at(step)
        optimizer.step()
        train_acc = (logits.detach().argmax(1) == y_train[idx]).double().mean().item()
        test_loss = test_acc = math.nan
        if step in eval_steps:
            test_loss, test_acc = _evaluate(model, data)
        rows.append((step, loss_value, train_acc, test_loss, test_acc))
        if step in probe_steps:
            probes.append(_probe(model, x_probe, y_probe, step, columns, cfg.seed))
        if progress is not None:
            progress(step, cfg.steps, label)
        if should_stop is not None and should_stop():
            stopped = step < cfg.steps
            break

    curve = pd.DataFrame(rows, columns=["step", "loss", "train_acc", "test_loss", "test_acc"])
    curve.insert(0, "seed", cfg.seed)
    for name, value in columns.items():
        curve[name] = value
    probes = pd.concat(probes, ignore_index=True)
    return TrainResult(model_config, cfg, curve, probes[probes["step"] == 0].reset_index(drop=True),
                       probes[probes["step"] == cfg.probe_after].reset_index(drop=True), diverged, stopped,
                       time.perf_counter() - started, probes)


# ---------------------------------------------------------------------------------------------
# Rank correlation


def bootstrap_ci(x: Sequence[float], y: Sequence[float], statistic: Callable = spearman,
                 n_boot: int = 2000, confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic(x, y)``, resampling the (x, y) pairs.

    Resamples on which the statistic is undefined (e.g. a constant side) are left out; with none left
    the interval is (NaN, NaN).
    """
    _check_int("n_boot", n_boot, 1, MAX_BOOT)
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
            _check_int("groups", g, 1, MAX_WIDTH)
        _check_int("seeds", self.seeds, 1, MAX_STUDY_SEEDS)
        _check_int("seed", self.seed, 0, MAX_SEED - self.seeds)
        _check_int("width", self.width, 1, MAX_WIDTH)
        _check_int("cnn_depth", self.cnn_depth, 1, MAX_DEPTH)
        _check_int("resnet_depth", self.resnet_depth, 1, MAX_DEPTH)
        _check_int("resnet_stages", self.resnet_stages, 1, MAX_STAGES)
        if not isinstance(self.train, TrainConfig):
            raise ValueError(f"train must be a TrainConfig; got {type(self.train).__name__}")
        _check_int("k_steps", self.k_steps, 1, self.train.steps)
        _check_int("n_boot", self.n_boot, 1, MAX_BOOT)
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
        """Every (network, training) pair of the study: each network once per seed.

        The study reads the probes at init and after ``probe_after`` steps only, so unless its
        ``train`` names probe steps, the runs probe at those two (each further probe costs about a step).
        """
        seeds = range(self.seed, self.seed + self.seeds)
        train = self.train if self.train.probe_steps is not None else replace(self.train, probe_steps=())
        return [(m, replace(train, seed=s)) for m in self.model_configs() for s in seeds]

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
        "grad_growth_init": result.grad_growth_init,
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
    if not isinstance(config, StudyConfig):
        raise ValueError(f"study_config must be a StudyConfig or None; got {type(config).__name__}")
    check_study(config)  # every run's memory and the limits set, before the first run
    plan = config.runs()
    points = [Point("train", (mc, tc), tc.steps, prefix=f"run {i + 1}/{len(plan)}: ",
                    name=f"{mc.arch} {get_normalizer(mc.norm).label} seed {tc.seed}")
              for i, (mc, tc) in enumerate(plan)]
    results, stopped = run_points(points, backend, address, store, progress, should_stop)
    # A stop keeps the runs finished before it (on Ray, those that happened to finish first).
    return assemble_study(config, [r for r in results if r is not None], stopped=stopped)


__all__ = [
    "DigitsSplit",
    "TrainData",
    "TRAIN_DATASETS",
    "default_probe_steps",
    "paper_recipe",
    "train_data",
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
