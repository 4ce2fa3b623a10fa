"""The runs behind the training pages' first views: the quick study and the training-dynamics runs.

Plain configs, so the pages, the warm-up (``python -m ui.warm``) and the tests read one definition.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from normlab import ModelConfig, StudyConfig, TrainConfig
from normlab.core.catalog import GROUPED_NORMS
from ui.controls import DEFAULTS

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


def quick_study() -> StudyConfig:
    """The training page's first study: one architecture, five normalizers from LayerNorm-like to
    InstanceNorm-like, two seeds; about ten short runs, so the page answers within seconds on a CPU
    (the CLI's default study, ``normlab study``, is the full one)."""
    return StudyConfig(archs=("cnn",), norms=("none", "batchnorm", "layernorm", "groupnorm", "instancenorm"),
                       groups=(4,), seeds=2, train=TrainConfig(steps=150, image_size=12), k_steps=100)
