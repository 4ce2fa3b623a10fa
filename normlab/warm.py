"""The records the dashboard and ``normlab warm`` share, and the table of setups a lecture opens with.

A probe is stored as its frame (kind ``probe``, keyed by its model and probe configs); a sweep is a list
of probe records, so a sweep point and the same single probe share one record. A training run is one
record (kind ``train``, keyed by its model and train configs): its one-row summary, with its curve and
probe frames beside it, written first, so a record that exists is whole (``normlab.backends.put_train``;
the CLI's studies write the same records). ``SETUPS`` holds the claim setups and each page's default
view as plain configs; ``warm`` computes them into the store ahead of a lecture. Imports torch only
when something must be computed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import pandas as pd

from normlab.config import GROUPED_NORMS, ModelConfig, ProbeConfig, common_divisors
from normlab.store import ResultStore, describe, record_key

if TYPE_CHECKING:
    from normlab.training import TrainConfig, TrainResult

log = logging.getLogger(__name__)

PROBE = "probe"
TRAIN = "train"


# --- Records ----------------------------------------------------------------------------------------


def probe_key(model: ModelConfig, probe: ProbeConfig) -> str:
    return record_key(PROBE, model, probe)


def train_key(model: ModelConfig, train: TrainConfig) -> str:
    return record_key(TRAIN, model, train)


def load_probe(store: ResultStore | None, model: ModelConfig, probe: ProbeConfig) -> pd.DataFrame | None:
    """The stored frame of one probe, or None (no store, never computed, or an unreadable record)."""
    if store is None:
        return None
    try:
        return store.get(PROBE, probe_key(model, probe))
    except Exception:  # a damaged file is a miss: the probe runs again and rewrites it
        log.warning("unreadable probe record in %s; computing it again", store, exc_info=True)
        return None


def save_probe(store: ResultStore | None, model: ModelConfig, probe: ProbeConfig,
               frame: pd.DataFrame) -> None:
    """Write one probe's frame; a store that cannot be written (full, read-only) is logged, not raised."""
    if store is None:
        return
    try:
        store.put(PROBE, probe_key(model, probe), frame, describe(PROBE, model, probe))
    except Exception:
        log.warning("could not write a probe record to %s", store, exc_info=True)


def load_training(store: ResultStore | None, model: ModelConfig, train: TrainConfig) -> TrainResult | None:
    """The stored run, or None. A stored run equals the computed one (frames through Parquet); the record
    is the sweeps' and studies' own (``normlab.backends.put_train``), whoever wrote it."""
    if store is None:
        return None
    from normlab.backends import get_train  # torch: only when a stored run is actually read

    try:
        return get_train(store, model, train)
    except Exception:
        log.warning("unreadable training record in %s; training again", store, exc_info=True)
        return None


def save_training(store: ResultStore | None, result: TrainResult) -> None:
    """Write a finished run (a run stopped early is not a result of its configs and is never written)."""
    if store is None or result.stopped:
        return
    from normlab.backends import put_train

    try:
        put_train(store, result)
    except Exception:
        log.warning("could not write a training record to %s", store, exc_info=True)


# --- What a lecture opens with ----------------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    """One view's networks as plain configs: one network per normalizer, once per variant.

    Attributes:
        key: the claim's key (``ui.claims``) or ``page:<name>`` for a page's default view.
        model: ModelConfig fields shared by every network (``norm`` left out).
        norms: the compared normalizers; grouped ones take ``groups`` from ``model``.
        probe: ProbeConfig fields.
        variants: ModelConfig/ProbeConfig fields changed per measured variant.
    """

    key: str
    model: dict
    norms: tuple[str, ...]
    probe: dict
    variants: tuple[dict, ...] = field(default=({},))

    def runs(self) -> list[tuple[ModelConfig, ProbeConfig]]:
        """Every (network, probe), in a stable order, without repeats."""
        model_fields = {f for f in ModelConfig.__dataclass_fields__}
        out = []
        for variant in self.variants:
            m = {**self.model, **{k: v for k, v in variant.items() if k in model_fields}}
            p = ProbeConfig(**{**self.probe, **{k: v for k, v in variant.items() if k not in model_fields}})
            groups = m.pop("groups", DEFAULT_GROUPS)
            for norm in self.norms:
                grouped = {"groups": groups} if norm in GROUPED_NORMS else {}
                pair = (ModelConfig(**m, norm=norm, **grouped), p)
                if pair not in out:
                    out.append(pair)
        return out


DEFAULT_GROUPS = 4  # the sidebar's group count, which a claim without its own keeps
_CLAIM_PROBE = {"batch_size": 16, "image_size": 8, "seeds": 2}
_RESNET = {"arch": "resnet", "stages": 1, "preact": False, "skipinit": False, "wn_act": "after_add"}
_GROUPS = tuple({"groups": g} for g in (1, 2, 4, 8, 16))

# The paper claims of ui.claims.CLAIMS, as the claims page probes them (tests/test_warm.py checks that
# the two agree), then the default views of the other pages.
SETUPS: tuple[Setup, ...] = (
    Setup("linear", {**_RESNET, "depth": 12, "width": 16, "groups": 4},
          ("batchnorm", "layernorm", "groupnorm", "frn"), _CLAIM_PROBE),
    Setup("exponential", {**_RESNET, "depth": 12, "width": 16, "wn_act": "in_branch"},
          ("none", "sws", "weightnorm"), _CLAIM_PROBE, ({"skipinit": False}, {"skipinit": True})),
    Setup("stage_reset", {**_RESNET, "depth": 4, "width": 8, "stages": 3, "groups": 2},
          ("batchnorm", "groupnorm"), _CLAIM_PROBE),
    Setup("bn_rank", {"arch": "mlp", "depth": 20, "width": 64}, ("batchnorm", "layernorm", "none"),
          _CLAIM_PROBE),
    Setup("group_rank", {"arch": "cnn", "depth": 10, "width": 16}, ("groupnorm",), _CLAIM_PROBE, _GROUPS),
    Setup("gradients", {"arch": "cnn", "depth": 12, "width": 16, "groups": 4},
          ("batchnorm", "instancenorm", "groupnorm", "layernorm"),
          {**_CLAIM_PROBE, "input": "images", "image_size": 16}),
    Setup("tradeoff", {"arch": "cnn", "depth": 10, "width": 16}, ("groupnorm",),
          {**_CLAIM_PROBE, "input": "images"}, _GROUPS),
    Setup("instance_images", {"arch": "cnn", "depth": 12, "width": 16}, ("batchnorm", "instancenorm"),
          {**_CLAIM_PROBE, "image_size": 16}, ({"input": "gaussian"}, {"input": "images"})),
)
CLAIM_KEYS = tuple(s.key for s in SETUPS)


def default_views() -> tuple[list[tuple[ModelConfig, ProbeConfig]], list[tuple[ModelConfig, TrainConfig]]]:
    """The probes behind every page's default view and the training pages' runs.

    The sidebar's default selection (overview, variance, rank and gradient pages), the group-size page's
    default sweep, the training page's quick study and the training-dynamics page's runs;
    ``tests/test_warm.py`` checks them against the UI.
    """
    view = Setup("defaults", dict(_RESNET, depth=8, width=16), ("batchnorm", "groupnorm", "none"),
                 {"batch_size": 32, "image_size": 16, "seeds": 1})
    probes = view.runs()
    base, probe = probes[0]
    sweep_base = replace(base, norm="groupnorm", groups=1)
    probes += [(replace(sweep_base, groups=g), probe) for g in common_divisors(sweep_base.widths)]
    return probes, quick_study().runs() + dynamics_runs()


DYNAMICS_NORMS = ("batchnorm", "layernorm", "instancenorm", "none")
DYNAMICS_SEEDS = 2
DYNAMICS_STEPS = 50
DYNAMICS_PROBE_STEPS = (0, 1, 2, 5, 10, 20, 50)


def dynamics_runs(norms: Iterable[str] = DYNAMICS_NORMS, seeds: int = DYNAMICS_SEEDS):
    """The training-dynamics page's runs: a plain CNN (depth 6, width 16) per normalizer and seed, 50 SGD
    steps on the digits, probed at steps 0, 1, 2, 5, 10, 20 and 50; small enough that the eight runs
    train in well under a minute on a CPU (their probes are most of the cost)."""
    from normlab.training import TrainConfig  # torch

    train = TrainConfig(steps=DYNAMICS_STEPS, image_size=12, batch_size=32, eval_every=10,
                        probe_after=DYNAMICS_PROBE_STEPS[1], probe_steps=DYNAMICS_PROBE_STEPS)
    return [(ModelConfig(arch="cnn", depth=6, width=16, norm=norm,
                         groups=DEFAULT_GROUPS if norm in GROUPED_NORMS else None), replace(train, seed=seed))
            for norm in norms for seed in range(seeds)]


def quick_study():
    """The training page's first study: one architecture, five normalizers from LayerNorm-like to
    InstanceNorm-like, two seeds; about ten short runs, so the page answers within seconds on a CPU
    (the CLI's default study, ``normlab study``, is the full one)."""
    from normlab.training import StudyConfig, TrainConfig  # torch

    return StudyConfig(archs=("cnn",), norms=("none", "batchnorm", "layernorm", "groupnorm", "instancenorm"),
                       groups=(4,), seeds=2, train=TrainConfig(steps=150, image_size=12), k_steps=100)


def plan(only: Iterable[str] | None = None) -> tuple[list[tuple[ModelConfig, ProbeConfig]],
                                                     list[tuple[ModelConfig, TrainConfig]]]:
    """Probes and training runs to warm: the claims (or those in ``only``) and the pages' defaults.

    Raises:
        ValueError: an unknown name in ``only``.
    """
    names = set(CLAIM_KEYS) | {"defaults"}
    wanted = set(names if only is None else only)
    unknown = wanted - names
    if unknown:
        raise ValueError(f"unknown warm setup(s) {sorted(unknown)}; expected some of {sorted(names)}")
    probes: list = []
    for setup in SETUPS:
        if setup.key in wanted:
            probes += [pair for pair in setup.runs() if pair not in probes]
    trainings: list = []
    if "defaults" in wanted:
        views, trainings = default_views()
        probes += [pair for pair in views if pair not in probes]
    return probes, trainings


@dataclass
class WarmReport:
    computed: int = 0
    skipped: int = 0


def warm(store: ResultStore, only: Iterable[str] | None = None,
         progress: Callable[[int, int, str], None] | None = None) -> WarmReport:
    """Compute every planned probe and training run that ``store`` lacks, and write it there.

    Args:
        store: where the records go (the dashboard's ``NORMLAB_STORE``).
        only: claim keys and/or ``"defaults"``; default all.
        progress: called as ``progress(done, total, label)`` after each item, stored or computed.
    """
    from normlab.probes import run_probes
    from normlab.training import run_training

    probes, trainings = plan(only)
    total = len(probes) + len(trainings)
    report = WarmReport()
    for done, (label, item) in enumerate(_items(probes, trainings), start=1):
        if item[0] == PROBE:
            _, model, probe = item
            if store.has(PROBE, probe_key(model, probe)):
                report.skipped += 1
            else:
                save_probe(store, model, probe, run_probes(model, probe))
                report.computed += 1
        else:
            _, model, train = item
            if store.has(TRAIN, train_key(model, train)):
                report.skipped += 1
            else:
                save_training(store, run_training(model, train))
                report.computed += 1
        if progress is not None:
            progress(done, total, label)
    return report


def _items(probes, trainings) -> Iterator[tuple[str, tuple]]:
    for model, probe in probes:
        yield f"probe {_name(model)} seeds={probe.seeds}", (PROBE, model, probe)
    for model, train in trainings:
        yield f"train {_name(model)} seed={train.seed}", (TRAIN, model, train)


def _name(model: ModelConfig) -> str:
    net = model.preset or model.arch
    groups = f" G={model.groups}" if model.groups else ""
    return f"{net} {model.norm}{groups} depth={model.depth} width={model.width}"
