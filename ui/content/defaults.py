"""The runs behind pages' first views beyond the sidebar's selection: the group-size sweep, the quick
study, the training-dynamics runs and the rank page's sweeps of GroupNorm's rank bound.

Plain configs, so the pages, the warm-up (``python -m ui.warm``) and the tests read one definition.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from normlab import ModelConfig, ProbeConfig, StudyConfig, TrainConfig
from normlab.core.catalog import GROUPED_NORMS
from normlab.core.train_config import lm_train
from ui.state.controls import DEFAULTS, group_choices


def group_sweep(base: ModelConfig, norm: str) -> tuple[ModelConfig, list[int]]:
    """The group-size page's sweep of ``base``: the network with ``norm`` at the first group count, and
    every group count that divides all its widths (from LayerNorm's one group to InstanceNorm's)."""
    counts = group_choices(base.preset or base.arch, base.width, base.stages or 1)
    return replace(base, norm=norm, groups=counts[0], group_size=None), counts


DYNAMICS_NORMS = ("batchnorm", "layernorm", "instancenorm", "none")
DYNAMICS_SEEDS = 2
DYNAMICS_STEPS = 50
DYNAMICS_PROBE_STEPS = (0, 1, 2, 5, 10, 20, 50)


def dynamics_runs(norms: Iterable[str] = DYNAMICS_NORMS, seeds: int = DYNAMICS_SEEDS):
    """The training-dynamics page's runs: a plain CNN (depth 6, width 16) per normalizer and seed, 50 SGD
    steps on the digits, probed at steps 0, 1, 2, 5, 10, 20 and 50; small enough that the eight runs
    train in well under a minute on a CPU (their probes are most of the cost)."""
    train = TrainConfig(steps=DYNAMICS_STEPS, image_size=12, batch_size=32, eval_every=10,
                        probe_after=DYNAMICS_PROBE_STEPS[1], probe_steps=DYNAMICS_PROBE_STEPS)
    return [(ModelConfig(arch="cnn", depth=6, width=16, norm=norm,
                         groups=DEFAULTS["groups"] if norm in GROUPED_NORMS else None),
             replace(train, seed=seed))
            for norm in norms for seed in range(seeds)]


# A transformer's training dynamics: the sidebar's network as a byte-level language model on the text
# input (AdamW at LM_TRAIN's rate), 50 steps probed at 0, 1, 2, 5, 10, 20 and 50.
LM_DYNAMICS_STEPS = 50


def lm_dynamics_runs(models: Iterable[ModelConfig], seeds: int = DYNAMICS_SEEDS, warmup_steps: int = 0):
    """The training-dynamics page's runs for transformers: each of the sidebar's networks (one per
    compared normalizer) per seed, with ``warmup_steps`` of linear warm-up."""
    train = lm_train(steps=LM_DYNAMICS_STEPS, eval_every=10, probe_after=DYNAMICS_PROBE_STEPS[1],
                     probe_steps=DYNAMICS_PROBE_STEPS, warmup_steps=warmup_steps)
    return [(model, replace(train, seed=seed)) for model in models for seed in range(seeds)]


def quick_study() -> StudyConfig:
    """The training page's first study: one architecture, five normalizers from LayerNorm-like to
    InstanceNorm-like, two seeds; about ten short runs, so the page answers within seconds on a CPU
    (the CLI's default study, ``normlab study``, is the full one)."""
    return StudyConfig(archs=("cnn",), norms=("none", "batchnorm", "layernorm", "groupnorm", "instancenorm"),
                       groups=(4,), seeds=2, train=TrainConfig(steps=150, image_size=12), k_steps=100)


# GroupNorm's rank result (the rank page) is read on a plain CNN over natural images (residual nets keep
# more rank and the trend is flatter), at sizes that compute in a few seconds on a CPU.
BOUND_NET = {"arch": "cnn", "depth": 10}
BOUND_PROBE = ProbeConfig(input="images", batch_size=64, image_size=8)
BOUND_SIZES = (1, 2, 4, 8, 16, 32)
BOUND_WIDTHS = (8, 16, 32, 64, 128)
# The page's two sliders: the width of the group-size sweep, the group size of the width sweep.
BOUND_WIDTH_CHOICES, BOUND_WIDTH = (16, 32, 64), 32
BOUND_SIZE_CHOICES, BOUND_SIZE = (1, 2, 4, 8), 4


def bound_sweeps(width: int = BOUND_WIDTH, size: int = BOUND_SIZE) -> list[tuple[ModelConfig, str, tuple]]:
    """The rank page's sweeps of GroupNorm's final-feature rank, as (base network, field, values).

    Over group sizes at ``width``, and over widths at group size ``size``; each probed with
    ``BOUND_PROBE``. The defaults are the page's first view, which ``python -m ui.warm`` computes.
    """
    by_size = ModelConfig(**BOUND_NET, width=width, norm="groupnorm", group_size=1)
    by_width = ModelConfig(**BOUND_NET, width=max(size, 8), norm="groupnorm", group_size=size)
    return [(by_size, "group_size", tuple(s for s in BOUND_SIZES if s <= width)),
            (by_width, "width", tuple(w for w in BOUND_WIDTHS if w >= size))]
