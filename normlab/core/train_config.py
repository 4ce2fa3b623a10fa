"""How to train and what a study compares: frozen, validated configs, the paper's recipe, the digits.

Torch-free, like the probe configs: the budget prices these before anything is allocated, and the
command line builds them before it loads torch. The runs themselves are normlab.science.training.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

from normlab.core import catalog
from normlab.core.catalog import GROUPED_NORMS, NORM_NAMES
from normlab.core.config import (
    ARCHS,
    DEVICES,
    MAX_DEPTH,
    MAX_IMAGE_SIZE,
    MAX_SEED,
    MAX_STAGES,
    MAX_WIDTH,
    ModelConfig,
    ProbeConfig,
    check_choice,
    check_int,
    check_items,
    check_real,
    choices,
)

# The held-out split is fixed, so every seed and every normalizer is scored on the same 360 digits;
# the seed varies the initialization and the batch order only.
TEST_DIGITS = 360
ALL_DIGITS = 1797  # scikit-learn's digits: the data set, upsampled once and split
TRAIN_DIGITS = ALL_DIGITS - TEST_DIGITS
TRAIN_DATASETS = ("digits", "cifar10", "cifar100")  # the CIFARs are read from data_dir, never downloaded
# Probes at 0, 1, 2, 5, 10, 20, 50, 100, ...: dense where the gradients change fastest (the first steps).
PROBE_MANTISSAS = (1, 2, 5)
LR_DROP = 0.1  # the paper's schedule ends at a tenth of the base rate (0.1 -> 0.01)
# Ceilings far above any sensible run, so a typo is refused by name before any work rather than
# running for days or building a plan that fills the memory. The operator's limits and the machine's
# memory (normlab.ops.budget.check_training / check_study) bound what runs below them.
MAX_STEPS = 100_000  # ~500 epochs of the digits at batch 64: hours for the smallest net on a CPU
MAX_STUDY_SEEDS = 1_000
MAX_BOOT = 1_000_000  # bootstrap resamples: ~1 minute of Spearman's rho on the default study
MAX_STUDY_RUNS = 10_000  # training runs of one study: the default study has 84


def check_trainable(arch: str) -> None:
    """Refuse to train a family whose catalog row says ``trainable=False``, naming the field."""
    if not catalog.family(arch).trainable:
        trainable = ", ".join(repr(a) for a, info in catalog.ARCHITECTURES.items() if info.trainable)
        raise ValueError(f"arch {arch!r} cannot be trained yet (its catalog row has trainable=False); "
                         f"trainable: {trainable}")


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
    data_dir: str | None = None  # the CIFAR folder (normlab.science.datasets); None: $NORMLAB_DATA_DIR
    warmup_steps: int = 0  # the rate rises linearly, lr * step / warmup_steps, over the first steps
    lr_drop_step: int | None = None  # from this step on the rate is lr * LR_DROP; None: no drop
    hflip: bool = False  # flip each training image left-right with probability 1/2 (the paper's CIFAR runs)

    def __post_init__(self) -> None:
        check_int("steps", self.steps, 1, MAX_STEPS)
        check_real("lr", self.lr, 0.0, open_low=True)
        check_real("momentum", self.momentum, 0.0, 1.0, open_high=True)
        check_real("weight_decay", self.weight_decay, 0.0)
        # two samples at least: batch statistics and similarities need a pair
        check_int("batch_size", self.batch_size, 2, TRAIN_DIGITS)
        check_int("image_size", self.image_size, 1, MAX_IMAGE_SIZE)
        check_int("seed", self.seed, 0, MAX_SEED)
        check_int("eval_every", self.eval_every, 1, MAX_STEPS)
        check_int("probe_after", self.probe_after, 1)
        if self.probe_after > self.steps:
            raise ValueError(
                f"probe_after must be between 1 and steps ({self.steps}); got {self.probe_after}"
            )
        check_real("target_accuracy", self.target_accuracy, 0.0, 1.0, open_low=True)
        check_real("max_loss", self.max_loss, 0.0, open_low=True)
        check_choice("device", self.device, DEVICES)
        self._check_schedule()

    def _check_schedule(self) -> None:
        """The fields of probing at chosen steps, CIFAR data and the paper's schedule."""
        if self.probe_steps is not None:
            # one value is a list of one; a string is refused by check_int below, naming the field
            steps = check_items("probe_steps", self.probe_steps, MAX_STEPS + 1)
            for k in steps:
                check_int("probe_steps", k, 0, self.steps)
            object.__setattr__(self, "probe_steps", tuple(sorted({int(k) for k in steps})))
        check_choice("dataset", self.dataset, TRAIN_DATASETS)
        if self.data_dir is not None and (not isinstance(self.data_dir, str) or not self.data_dir.strip()):
            raise ValueError(f"data_dir must be a folder path or None; got {self.data_dir!r}")
        if self.dataset == "digits":
            object.__setattr__(self, "data_dir", None)  # canonical: the digits read no folder
        check_int("warmup_steps", self.warmup_steps, 0)
        if self.lr_drop_step is not None:
            check_int("lr_drop_step", self.lr_drop_step, 1)
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
    check_int("steps", steps, 0)
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
    check_choice("normalizer (norm)", norm, NORM_NAMES)
    batch = changes.get("batch_size", PAPER_BATCH)
    check_int("batch_size", batch, 2, CIFAR_TRAIN_SIZE)
    epoch = math.ceil(CIFAR_TRAIN_SIZE / batch)
    if steps is None:
        steps = PAPER_EPOCHS * epoch
    check_int("steps", steps, 1)
    warmup = round(steps * PAPER_WARMUP_EPOCHS / PAPER_EPOCHS) if norm in PAPER_WARMUP_NORMS else 0
    recipe = dict(
        steps=steps, lr=PAPER_LR * PAPER_BATCH / batch, momentum=0.9, weight_decay=1e-4, batch_size=batch,
        image_size=32, dataset=dataset, warmup_steps=warmup,
        lr_drop_step=warmup + int(0.75 * (steps - warmup)) + 1, hflip=True,
        eval_every=max(min(epoch, steps // 5), 1), probe_after=min(10, steps),
    )
    return TrainConfig(**{**recipe, **changes})


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
        for name in ("archs", "norms", "groups"):  # one value is a list of one
            object.__setattr__(self, name, check_items(name, getattr(self, name)))
            if not getattr(self, name):
                raise ValueError(f"{name} must list at least one value")
        for arch in self.archs:
            check_choice("architecture (archs)", arch, ARCHS)
            check_trainable(arch)
        for norm in self.norms:
            check_choice("normalizer (norms)", norm, NORM_NAMES)
            for arch in self.archs:
                if not catalog.accepts(arch, norm):
                    raise ValueError(f"normalizer (norms) {norm!r} does not apply to arch {arch!r}; "
                                     f"allowed: {choices(catalog.allowed_norms(arch))}")
        for g in self.groups:
            check_int("groups", g, 1, MAX_WIDTH)
        check_int("seeds", self.seeds, 1, MAX_STUDY_SEEDS)
        # counted before any is built: archs x norms (grouped ones once per entry of groups) x seeds
        networks = len(self.archs) * sum(len(self.groups) if n in GROUPED_NORMS else 1 for n in self.norms)
        runs = networks * self.seeds
        if runs > MAX_STUDY_RUNS:
            raise ValueError(f"the study would train {runs:,} runs ({networks:,} networks of archs x norms x "
                             f"groups, seeds {self.seeds} each); at most {MAX_STUDY_RUNS:,}")
        check_int("seed", self.seed, 0, MAX_SEED - self.seeds)
        check_int("width", self.width, 1, MAX_WIDTH)
        check_int("cnn_depth", self.cnn_depth, 1, MAX_DEPTH)
        check_int("resnet_depth", self.resnet_depth, 1, MAX_DEPTH)
        check_int("resnet_stages", self.resnet_stages, 1, MAX_STAGES)
        if not isinstance(self.train, TrainConfig):
            raise ValueError(f"train must be a TrainConfig; got {type(self.train).__name__}")
        check_int("k_steps", self.k_steps, 1, self.train.steps)
        check_int("n_boot", self.n_boot, 1, MAX_BOOT)
        check_real("confidence", self.confidence, 0.0, 1.0, open_low=True, open_high=True)
        self.runs()  # builds every ModelConfig now, so a bad group count fails here, by name

    def model_configs(self) -> list[ModelConfig]:
        """Every network of the study, in run order."""
        configs = []
        for arch in self.archs:
            sizes = {"width": self.width}
            if catalog.family(arch).residual:
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
