"""One seeded SGD run (scikit-learn's digits offline, CIFAR from a local folder), probed as it trains.

Does what the probes see at initialization predict training, and does it last? ``train`` trains one
network and probes it at chosen steps (0 = init, then 1, 2, 5, 10, 20, 50, ...), always on the batch
``measure`` would probe for the same seed. Returns tidy frames; never prints; progress goes to an
optional ``progress(done, total, label)`` callback. Unguarded: no budget, backend or store (the guarded
``run_training`` and ``run_study`` are normlab.ops.run's); the study's statistics are normlab.science.study.
"""

from __future__ import annotations

import copy
import functools
import math
import time
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from normlab.core import catalog
from normlab.core.config import MAX_IMAGE_SIZE, ModelConfig, Progress, ShouldStop, check_callback, check_int
from normlab.core.deadline import check_time
from normlab.core.train_config import (
    ADAMW_BETA2,
    HELD_OUT_FRACTION,
    HELD_OUT_WINDOWS,
    MAX_TEXT_BYTES,
    TEST_DIGITS,
    TrainConfig,
    check_pairing,
    check_trainable,
)
from normlab.science import datasets
from normlab.science.data import (
    default_corpus,
    derive_seed,
    make_inputs,
    make_labels,
    make_tokens,
    resized,
    to_channels,
)
from normlab.science.device import resolve_device
from normlab.science.models import Net, build_model
from normlab.science.probes import probe_module, probe_tokens
from normlab.science.summary import final_value, gradient_growth, gradient_range
from normlab.science.transformer import next_token_loss

SPLIT_SEED = 0
DIGITS_SIZE = 8  # scikit-learn's digits are 8x8 grey images with values 0..16
EVAL_CHUNK = 1000  # held-out images per forward pass: CIFAR's 10000 at once would need GBs


# ---------------------------------------------------------------------------------------------
# Data


@dataclass(frozen=True)
class DigitsSplit:
    """The digits as float32 image tensors, standardized with the training set's mean and std."""

    x_train: torch.Tensor  # (1437, C, S, S)
    y_train: torch.Tensor  # (1437,) int64 class labels 0..9
    x_test: torch.Tensor  # (360, C, S, S)
    y_test: torch.Tensor  # (360,)


@functools.lru_cache(maxsize=8)
def digits_split(image_size: int = 16, in_channels: int = 1) -> DigitsSplit:
    """scikit-learn's digits, upsampled to ``image_size`` and split 1437/360 with a fixed seed.

    Bilinear upsampling, the grey channel copied to ``in_channels``, then one mean and one std taken
    over the training images (so the held-out digits see the same affine map). The split is
    stratified by class. Cached: treat the tensors as read-only.
    """
    from sklearn.datasets import load_digits  # deferred: the import costs a second and few runs need it

    check_int("image_size", image_size, 1, MAX_IMAGE_SIZE)
    check_int("in_channels", in_channels, 1)
    digits = load_digits()
    images = torch.as_tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (1797, 1, 8, 8)
    if image_size != DIGITS_SIZE:
        images = F.interpolate(images, size=(image_size, image_size), mode="bilinear", align_corners=False)
    images = images.expand(-1, in_channels, -1, -1).contiguous()  # (1797, C, S, S)
    labels = torch.as_tensor(digits.target, dtype=torch.int64)  # (1797,)
    train_idx, test_idx = _stratified_split(digits.target, TEST_DIGITS, SPLIT_SEED)
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

    For a text, x and y are byte windows (N, T) one byte apart: y[:, t] is the byte after x[:, t].

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
    tokens: bool = False  # byte windows (N, T) of a text, stored as uint8; x and y are int64 batches

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Stored images -> float32 (B, in_channels, image_size, image_size) on x's device; stored bytes
        -> int64 (B, T) tokens."""
        if self.tokens:
            return x.long()
        if x.dtype != torch.uint8:
            return x
        return to_channels(resized(datasets.normalize(x), self.image_size), self.in_channels)

    def targets(self, y: torch.Tensor) -> torch.Tensor:
        """Stored labels -> int64 class labels (B,) or next bytes (B, T)."""
        return y.long() if self.tokens else y

    def to(self, device: torch.device) -> TrainData:
        return replace(self, x_train=self.x_train.to(device), y_train=self.y_train.to(device),
                       x_test=self.x_test.to(device), y_test=self.y_test.to(device))


@functools.lru_cache(maxsize=4)
def text_bytes(path: str | None = None) -> bytes:
    """The bytes of the text file ``path``, read whole; None: the text input's default corpus
    (normlab.science.data.default_corpus). Cached: the same object each time."""
    if path is None:
        return default_corpus()
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_TEXT_BYTES + 1)
    except OSError as err:
        raise ValueError(f"text_path must name a readable file; {path!r}: {err.strerror or err}") from None
    if len(data) > MAX_TEXT_BYTES:
        raise ValueError(f"text_path {path!r} is larger than {MAX_TEXT_BYTES // 2**20} MiB; cut it first")
    return data


def text_windows(data: bytes, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(training windows, held-out windows), each (W, seq_len + 1) uint8: the input is a window's first
    seq_len bytes, the target its last seq_len (the next byte at every position).

    The last HELD_OUT_FRACTION of the bytes is held out; both parts are cut into windows that do not
    overlap, so no held-out byte is ever in a training window. At most HELD_OUT_WINDOWS held-out windows,
    taken evenly over the held-out part.
    """
    width = seq_len + 1
    split = int(len(data) * (1 - HELD_OUT_FRACTION))
    n_train, n_test = split // width, (len(data) - split) // width
    if n_train < 2 or n_test < 1:
        need = math.ceil(2 * width / (1 - HELD_OUT_FRACTION)) + width
        raise ValueError(f"text_path's text is too short for seq_len {seq_len}: {len(data)} bytes give "
                         f"{n_train} training and {n_test} held-out windows; it needs at least {need} bytes")
    stream = torch.frombuffer(bytearray(data), dtype=torch.uint8)  # (bytes,)
    train = stream[:n_train * width].view(n_train, width)
    test = stream[split:split + n_test * width].view(n_test, width)
    if n_test > HELD_OUT_WINDOWS:
        test = test[torch.linspace(0, n_test - 1, HELD_OUT_WINDOWS).round().long()]
    return train, test


def train_data(train_config: TrainConfig, in_channels: int, seq_len: int | None = None) -> TrainData:
    """The training and held-out samples of ``train_config.dataset``: the digits split, CIFAR's
    train and test splits read from ``data_dir``, or the byte windows of a text (``seq_len`` tokens;
    x a window's bytes, y the bytes one further)."""
    cfg = train_config
    if cfg.dataset == "text":
        assert seq_len is not None, "a text's windows need the model's seq_len"
        train, test = text_windows(text_bytes(cfg.text_path), seq_len)
        if cfg.batch_size > len(train):
            raise ValueError(f"batch_size must be at most the {len(train)} training windows of the text; "
                             f"got {cfg.batch_size}")
        return TrainData(train[:, :-1], train[:, 1:], test[:, :-1], test[:, 1:], 256, 0, 0, tokens=True)
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
            (NaN between evaluations), plus the ``seed`` and the config columns. A text's run scores
            next-byte prediction (loss per token, accuracy over tokens) and adds ``test_bpb``, the
            held-out bits per byte (test_loss / ln 2).
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

    @property
    def final_test_loss(self) -> float:
        """Held-out loss at the last evaluation (NaN if the run diverged): for a text, the mean
        next-byte cross-entropy in nats."""
        return math.nan if self.diverged else float(self.evaluations["test_loss"].iloc[-1])

    @property
    def final_test_bpb(self) -> float:
        """A language model's held-out bits per byte, final_test_loss / ln 2; NaN for images."""
        return self.final_test_loss / math.log(2) if self.train_config.dataset == "text" else math.nan

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
        """Gradient growth at initialization (first over last hidden layer, normlab.science.summary)."""
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
            "final_test_loss": self.final_test_loss,
            "final_test_bpb": self.final_test_bpb,
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
    """The gradient range of :func:`normlab.science.summary.gradient_range`: max/min of grad_norm over
    the hidden conv/linear outputs (head and exact zeros left out, as for the gradient growth); NaN on
    overflow."""
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
    if catalog.family(model.config.arch).tokens:  # bytes in: the token pass, weight gradients included
        frame = probe_tokens(copy.deepcopy(model), x, y, seed=seed)
    else:
        frame = probe_module(copy.deepcopy(model), x, y)
    frame["seed"] = seed
    frame.insert(1, "step", step)
    for name, value in columns.items():
        frame[name] = pd.Series([value] * len(frame), dtype=object if value is None else None)
    return frame


@torch.no_grad()
def _evaluate(model: torch.nn.Module, data: TrainData) -> tuple[float, float]:
    """(loss, accuracy) on the held-out set, in eval mode (batch norm uses its running statistics),
    EVAL_CHUNK samples per pass. For a text: the mean next-byte loss and accuracy over every held-out token.

    Non-finite logits give a NaN accuracy rather than whatever argmax makes of them.
    """
    was_training = model.training
    model.eval()
    loss_sum, correct, count = 0.0, 0.0, 0
    for start in range(0, len(data.y_test), EVAL_CHUNK):
        y = data.targets(data.y_test[start:start + EVAL_CHUNK])  # (n,) classes or (n, T) next bytes
        logits = model(data.prepare(data.x_test[start:start + EVAL_CHUNK]))  # (n, K) or (n, T, V)
        loss_sum += F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1),
                                    reduction="sum").item()
        correct += (logits.argmax(-1) == y).double().sum().item()
        count += y.numel()
    model.train(was_training)
    loss = loss_sum / count
    if not math.isfinite(loss):
        return loss, math.nan
    return loss, correct / count


def _loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy, mean over the samples (logits (B, K)) or over every token (logits (B, T, V))."""
    if logits.dim() == 3:
        return next_token_loss(logits, y)
    return F.cross_entropy(logits, y)


def _optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD with momentum, or AdamW with betas (momentum, ADAMW_BETA2); the rate is set every step."""
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(cfg.momentum, ADAMW_BETA2),
                                 weight_decay=cfg.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                           weight_decay=cfg.weight_decay)


def _probe_batch(model_config: ModelConfig, cfg: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch every probe step measures, with its labels: run_probes' batch for ``cfg.probe_config``
    (its own stream, so probing never shifts the training batches). Images: their random labels; a
    text: windows at random offsets of the whole text with their true next bytes (a probe measures,
    it never updates, so the held-out bytes it may read are not trained on)."""
    if catalog.family(model_config.arch).tokens:
        return make_tokens(cfg.probe_config, cfg.seed, model_config.seq_len)
    return (make_inputs(cfg.probe_config, cfg.seed, model_config.in_channels),
            make_labels(cfg.batch_size, model_config.num_classes, cfg.seed))


def train(model_config: ModelConfig, train_config: TrainConfig | None = None,
          progress: Progress | None = None, should_stop: ShouldStop | None = None) -> TrainResult:
    """Train ``model_config`` with SGD + momentum and probe it at the steps of ``probe_schedule``.

    Unguarded: the budget's check is ``normlab.run_training``'s (normlab.ops.run).

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
    check_callback("progress", progress, "progress(step, steps, label)")
    check_callback("should_stop", should_stop, "should_stop() -> bool")
    cfg = train_config or TrainConfig()
    check_trainable(model_config.arch)
    check_pairing(model_config.arch, cfg.dataset)
    device = resolve_device(cfg.device)
    started = time.perf_counter()
    data = train_data(cfg, model_config.in_channels, model_config.seq_len)
    if model_config.num_classes < data.num_classes:
        raise ValueError(f"num_classes must be at least the {data.num_classes} classes of {cfg.dataset}; "
                         f"got {model_config.num_classes}")
    data = data.to(device)
    x_train, y_train = data.x_train, data.y_train
    x_probe, y_probe = _probe_batch(model_config, cfg)
    x_probe, y_probe = x_probe.to(device), y_probe.to(device)

    # The init draws from torch's global generator (nn.init); fork it so a run leaves it as it found it.
    # Seeded as run_probes seeds it, so a run starts from the network run_probes measures.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(cfg.seed, "init"))
        model = build_model(model_config, input_shape=(model_config.in_channels, cfg.image_size,
                                                       cfg.image_size)).to(device)
    model.train()
    optimizer = _optimizer(model, cfg)
    batches = _Batches(len(x_train), cfg.batch_size, np.random.default_rng([cfg.seed, 0]))
    flips = np.random.default_rng([cfg.seed, 2])  # its own stream: hflip leaves the batch order alone

    columns = _config_columns(model_config, cfg)
    probes = [_probe(model, x_probe, y_probe, 0, columns, cfg.seed)]
    probe_steps = set(cfg.probe_schedule)
    eval_steps = set(cfg.eval_steps)
    test_loss, test_acc = _evaluate(model, data)
    rows = [(0, math.nan, math.nan, test_loss, test_acc)]
    diverged = stopped = False
    label = f"{model_config.arch} {catalog.label(model_config.norm)} seed {cfg.seed}"

    for step in range(1, cfg.steps + 1):
        check_time()  # a run past its hard wall-time limit stops between steps
        idx = batches.next().to(device)
        x, y = data.prepare(x_train[idx]), data.targets(y_train[idx])  # (B, C, S, S), (B,); or (B, T) both
        if cfg.hflip:
            flip = torch.as_tensor(flips.random(len(idx)) < 0.5, device=device)
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        logits = model(x)  # (B, K) or (B, T, V)
        loss = _loss(logits, y)
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
        train_acc = (logits.detach().argmax(-1) == y).double().mean().item()
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
    if data.tokens:  # a language model's loss in bits per byte: nats / ln 2, one token being one byte
        curve["test_bpb"] = curve["test_loss"] / math.log(2)
    curve.insert(0, "seed", cfg.seed)
    for name, value in columns.items():
        curve[name] = value
    probes = pd.concat(probes, ignore_index=True)
    return TrainResult(model_config, cfg, curve, probes[probes["step"] == 0].reset_index(drop=True),
                       probes[probes["step"] == cfg.probe_after].reset_index(drop=True), diverged, stopped,
                       time.perf_counter() - started, probes)
