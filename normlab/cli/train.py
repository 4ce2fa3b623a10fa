"""The ``normlab train`` and ``normlab study`` subcommands: argparse over normlab.science.training.

``add_parsers(subparsers)`` registers both on the root parser of normlab.cli; each handler returns its
exit status (0 ok, 2 bad input with one line on stderr). Flags are generated from the config fields, so
the configs validate and this file only parses. Progress and the headline numbers go to stderr, the
frame to stdout or --out. Knows nothing of the UI.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable
from typing import TypeVar

import pandas as pd
import torch

from normlab.cli.common import (
    FIELD_HELP,
    FLAG_ALIASES,
    FORMATS,
    TRAINING_HELP,
    USAGE_ERROR,
    add_execution_arguments,
    execution_from_args,
    field_type,
    given,
)
from normlab.core import catalog
from normlab.core.catalog import NORM_NAMES
from normlab.core.config import ARCHS, PLACEMENTS, ModelConfig, config_from_dict
from normlab.core.text import short
from normlab.core.train_config import (
    LM_SIZES,
    LM_TRAIN,
    STUDY_NORMS,
    TRAIN_DATASETS,
    StudyConfig,
    TrainConfig,
    WarmupStudyConfig,
    check_pairing,
    check_trainable,
    paper_recipe,
)
from normlab.ops.output import check_out, frame_text, write
from normlab.ops.run import run_study, run_training, run_warmup_study
from normlab.science.datasets import DATA_DIR_ENV, NUM_CLASSES
from normlab.science.study import StudyResult
from normlab.science.training import TrainResult
from normlab.science.warmup import WarmupStudyResult

TRAIN_SHOW = ("curve", "summary", "probes")
STUDY_SHOW = ("runs", "correlations", "curves")

_HELP = {
    **FIELD_HELP,  # the ModelConfig fields, as `normlab probe` describes them
    "in_channels": "input channels (the grey digit is copied to each)",
    "num_classes": "classifier outputs (the digits have 10 classes)",
    # TrainConfig
    "steps": "SGD steps",
    "lr": "learning rate (no schedule)",
    "momentum": "SGD momentum",
    "weight_decay": "L2 weight decay",
    "batch_size": "samples per step; also the probe batch",
    "image_size": "digits are upsampled (bilinear) from 8x8 to this size",
    "seed": "seed of the init, batch order and probe batch (the held-out split is fixed)",
    "eval_every": "steps between held-out evaluations",
    "probe_after": "re-run the probes after this many steps (always among the probe steps)",
    "probe_steps": "steps to probe at, comma-separated, e.g. 0,1,2,5,10 (0 = init; default 0, 1, 2, 5, "
                   "10, 20, 50, ... and the last step)",
    "dataset": f"training data: {', '.join(TRAIN_DATASETS)} (the CIFARs from --data-dir; text: byte "
               "windows, what a transformer trains on)",
    "data_dir": f"folder holding the CIFAR files (default ${DATA_DIR_ENV}); nothing is downloaded",
    "warmup_steps": "linear learning-rate warm-up over this many steps: the rate rises as "
                    "lr * step / warmup_steps, then stays at --lr",
    "lr_drop_step": "from this step on the learning rate is a tenth of --lr",
    "hflip": "random horizontal flips of the training images",
    "target_accuracy": "held-out accuracy that counts as trained (steps_to_target)",
    "max_loss": "a training loss above this (or NaN/inf) ends the run as diverged",
    "device": "auto, cpu, cuda or mps",
    "optimizer": "sgd (with --momentum) or adamw (betas: --momentum and 0.98); a transformer's default "
                 "is adamw",
    "text_path": "dataset text: the file whose bytes a transformer learns to predict (default: the "
                 "standard library's pydoc_data.topics, English)",
    # StudyConfig
    "archs": f"architectures to train: some of {', '.join(ARCHS)}",
    "norms": f"normalizers to train: some of {', '.join(NORM_NAMES)}",
    "seeds": "seeds per network",
    "cnn_depth": "conv layers of the non-residual CNN",
    "resnet_depth": "blocks per resnet stage",
    "resnet_stages": "resnet stages",
    "k_steps": "training speed: held-out accuracy after this many steps",
    "n_boot": "bootstrap resamples for the correlation's interval",
    "confidence": "confidence level of the interval",
}


# Shorter spellings of a flag: probe's (--text) and the warm-up's --warmup.
_ALIASES = {**FLAG_ALIASES, "warmup_steps": ("--warmup",)}


# --- Flags from config fields --------------------------------------------------------------------


def _add_fields(parser: argparse.ArgumentParser, cls, title: str, skip: tuple[str, ...] = (),
                defaults=None, help_text: dict | None = None) -> None:
    """One flag per field of ``cls`` (``group_size`` -> ``--group-size``), unset by default.

    ``defaults``: an instance whose values the help shows as the defaults; ``help_text`` overrides
    the shared help of some fields.
    """
    group = parser.add_argument_group(f"{title} ({cls.__name__} fields; unset = the default)")
    for field in dataclasses.fields(cls):
        base, _, many = field_type(cls, field.name)
        if field.name in skip or dataclasses.is_dataclass(base):
            continue
        flags = ("--" + field.name.replace("_", "-"), *_ALIASES.get(field.name, ()))
        text = (help_text or {}).get(field.name) or _HELP.get(field.name, field.name.replace("_", " "))
        if defaults is not None:
            value = getattr(defaults, field.name)
            shown = " ".join(map(str, value)) if isinstance(value, tuple) else value
            text += f" (default {shown})"
        if field.name == "probe_steps":  # one comma-separated list, as the other tools write it
            group.add_argument(*flags, dest=field.name, type=step_list, default=None, metavar="0,1,2,...",
                               help=text)
        elif base is bool:
            group.add_argument(*flags, dest=field.name, action=argparse.BooleanOptionalAction, default=None,
                               help=text)
        else:
            group.add_argument(*flags, dest=field.name, type=base, default=None, nargs="+" if many else None,
                               metavar="FILE" if field.name == "text_path" else base.__name__.upper(),
                               help=text)


def step_list(text: str) -> tuple[int, ...]:
    """``"0,1,2,5"`` -> (0, 1, 2, 5); the range is TrainConfig's to check."""
    try:
        return tuple(int(part) for part in text.replace(" ", ",").split(",") if part)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"probe steps must be whole numbers separated by commas, e.g. 0,1,2,5; got {text!r}"
        ) from None


def _add_threads(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, default=1, metavar="INT",
                        help="torch CPU threads (default 1: these small nets gain little from more, and "
                             "lose much when another process shares the cores)")


MAX_THREADS = 1024  # far above any machine's cores; torch itself overflows past 2**31


def _set_threads(threads: int) -> None:
    if not 1 <= threads <= MAX_THREADS:
        raise ValueError(f"threads must be between 1 and {MAX_THREADS}; got {threads}")
    torch.set_num_threads(threads)


def _add_output(parser: argparse.ArgumentParser, shows: tuple[str, ...], what: str) -> None:
    out = parser.add_argument_group("output")
    out.add_argument("--show", choices=shows, default=shows[0], help=f"which frame to write: {what}")
    out.add_argument("--format", choices=FORMATS, default="csv",
                     help="csv or json: the tidy frame; table: aligned text (default csv)")
    out.add_argument("--out", metavar="FILE", help="write to FILE instead of stdout")


# --- Output ----------------------------------------------------------------------------------------


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --- train -----------------------------------------------------------------------------------------


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    _add_fields(parser, ModelConfig, "model")
    _add_fields(parser, TrainConfig, "training", defaults=TrainConfig())
    parser.add_argument("--recipe", choices=("default", "paper"), default="default",
                        help="paper: the paper's CIFAR setup (SGD momentum 0.9, weight decay 1e-4, "
                             "batch 256, lr 0.1 dropped to 0.01 for the last quarter, warmup for frn, flips; "
                             "dataset cifar100 unless given); training flags override it (default: default)")
    _add_threads(parser)
    _add_output(parser, TRAIN_SHOW, "curve (one row per step), summary (one row), probes (every probe "
                                    "step, with a step column)")
    lm = ", ".join(f"{k.replace('_', '-')} {v}" for k, v in LM_SIZES.items())
    parser.epilog = (f"--arch transformer trains a byte-level language model on dataset text, with its own "
                     f"defaults: {lm}, optimizer {LM_TRAIN.optimizer}, lr {LM_TRAIN.lr:g}, batch-size "
                     f"{LM_TRAIN.batch_size}, steps {LM_TRAIN.steps}, eval-every {LM_TRAIN.eval_every}; its "
                     f"curve adds test_bpb, the held-out bits per byte.")


def train_summary(result: TrainResult) -> str:
    """The run's headline numbers in one paragraph."""
    s = result.summary()
    tc = result.train_config
    lines = [
        f"# {s['arch']} {s['norm']} depth {s['depth']} width {s['width']}"
        + (f" groups {s['groups']}" if s["groups"] is not None else "")
        + (f" placement {s['placement']} seq_len {s['seq_len']}" if catalog.family(s["arch"]).tokens else "")
        + f" | {s['steps_done']}/{tc.steps} steps, {tc.optimizer} lr {tc.lr}"
        + (f" (warm-up {tc.warmup_steps} steps)" if tc.warmup_steps else "")
        + f", batch {tc.batch_size}, seed {tc.seed}, {s['seconds']:.1f} s",
    ]
    if tc.dataset == "text":
        lines.append(f"# held-out next-byte loss: final {short(s['final_test_loss'], 4)} nats = "
                     f"{short(s['final_test_bpb'], 4)} bits per byte; accuracy "
                     f"{short(s['final_test_acc'], 3)}")
    else:
        lines.append(f"# held-out accuracy: final {short(s['final_test_acc'], 3)}, best "
                     f"{short(s['best_test_acc'], 3)}; steps to {tc.target_accuracy:g}: "
                     f"{short(s['steps_to_target'], 3)}")
    lines += [
        f"# final-layer cos_sim: init {short(s['cos_sim_init'], 3)}, after {tc.probe_after} steps "
        f"{short(s['cos_sim_after'], 3)}",
        f"# gradient growth at init (first / last hidden conv/linear): {short(s['grad_growth_init'], 3)}; "
        f"gradient range (max/min over the same layers): init {short(s['grad_range_init'], 3)}, "
        f"after {tc.probe_after} steps {short(s['grad_range_after'], 3)}",
    ]
    ranges = result.grad_ranges()
    if len(ranges) > 2:
        lines.append("# grad_norm range by step: " + ", ".join(
            f"{int(r.step)}: {short(r.grad_range, 3)}" for r in ranges.itertuples()))
    if result.diverged:
        lines.append(f"# DIVERGED: the training loss left [0, {tc.max_loss:g}] at step {s['steps_done'] + 1}")
    if result.stopped:
        lines.append("# stopped early")
    return "\n".join(lines)


def _train_frame(result: TrainResult, show: str, fmt: str) -> pd.DataFrame:
    if show == "summary":
        return pd.DataFrame([result.summary()])
    if show == "probes":
        return result.probes
    if fmt == "table":  # the evaluated steps only, without the constant config columns
        columns = ["step", "loss", "train_acc", "test_loss", "test_acc"]
        columns += ["test_bpb"] if "test_bpb" in result.curve else []
        return result.curve.loc[result.curve["test_acc"].notna() | result.curve["loss"].isna(), columns]
    return result.curve


def _step_reporter(every: int) -> Callable[[int, int, str], None]:
    def report(done: int, total: int, label: str) -> None:
        if done % every == 0 or done == total:
            _say(f"train {done}/{total}: {label}")

    return report


def train_config_from_fields(fields: dict, recipe: str, norm: str, arch: str = "resnet") -> TrainConfig:
    """The TrainConfig of ``normlab train``: the recipe's (default or paper), the given fields on top.

    A token family (the transformer) starts from LM_TRAIN, the byte-level language model's training.
    """
    if catalog.family(arch).tokens:
        if recipe == "paper":
            raise ValueError(f"recipe 'paper' is the paper's CIFAR setup; arch {arch!r} trains with recipe "
                             f"'default' (a byte-level language model: AdamW on dataset 'text')")
        return config_from_dict(TrainConfig, {**LM_TRAIN.to_dict(), **fields})
    if recipe == "paper":
        rest = {k: v for k, v in fields.items() if k not in ("steps", "dataset")}
        return paper_recipe(norm, fields.get("steps"), fields.get("dataset", "cifar100"), **rest)
    return config_from_dict(TrainConfig, fields)


def run_train_command(args: argparse.Namespace) -> int:
    """``normlab train``: one run; the chosen frame to stdout/--out, the summary to stderr."""
    try:
        model_fields, train_fields = given(args, ModelConfig), given(args, TrainConfig)
        arch = model_fields.get("arch", ModelConfig.arch)
        check_trainable(arch)
        norm = model_fields.get("norm") or catalog.family(arch).default_norm
        train = train_config_from_fields(train_fields, args.recipe, norm, arch)
        check_pairing(arch, train.dataset)
        if catalog.family(arch).tokens:  # the language model's sizes, where none are given
            model_fields = {**LM_SIZES, **model_fields}
        if train.dataset in NUM_CLASSES and "num_classes" not in model_fields:
            model_fields["num_classes"] = NUM_CLASSES[train.dataset]  # CIFAR-100's head has 100 outputs
        model = config_from_dict(ModelConfig, model_fields)
        check_out(args.out)
        _set_threads(args.threads)
        result = run_training(model, train, progress=_step_reporter(max(train.steps // 10, 1)))
        write(frame_text(_train_frame(result, args.show, args.format), args.format), args.out)
        _say(train_summary(result))
    except ValueError as err:
        _say(f"normlab train: error: {' '.join(str(err).split())}")
        return USAGE_ERROR
    return 0


# --- study -----------------------------------------------------------------------------------------

_STUDY_TRAIN_SKIP = ("seed",)  # each run's seed comes from the study's --seed/--seeds


_STUDY_HELP = {
    "groups": "group counts to try for each grouped normalizer (groupnorm, evonorm_s0)",
    "seed": "first seed; the runs of a network use seed, seed + 1, ...",
    "width": "width of every network (resnet: of its first stage)",
    "cnn_depth": "conv layers of the non-residual CNN (and hidden layers of an mlp)",
}


def add_study_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = StudyConfig()
    _add_fields(parser, StudyConfig, "study", defaults=defaults, help_text=_STUDY_HELP)
    _add_fields(parser, TrainConfig, "training of every run", skip=_STUDY_TRAIN_SKIP, defaults=defaults.train)
    _add_threads(parser)
    add_execution_arguments(parser, "run")
    _add_output(parser, STUDY_SHOW, "runs (one row per arch, normalizer, groups, seed), correlations, "
                                    "curves (every run's training curve)")


StudyKind = TypeVar("StudyKind", StudyConfig, WarmupStudyConfig)


def _study_config(args: argparse.Namespace, kind: type[StudyKind], skip: tuple[str, ...]) -> StudyKind:
    """The study config of type ``kind`` the flags describe; training flags override only the fields they
    name in the study's own default training (flags in ``skip`` belong to the study, not to each run)."""
    study = given(args, kind)
    train = given(args, TrainConfig, skip=skip)
    if train:
        study["train"] = config_from_dict(TrainConfig, {**kind().train.to_dict(), **train})
    return config_from_dict(kind, study)


def study_config_from_args(args: argparse.Namespace) -> StudyConfig:
    """The StudyConfig the flags describe; training flags override the study's default schedule."""
    return _study_config(args, StudyConfig, _STUDY_TRAIN_SKIP)


def correlation_text(result: StudyResult) -> str:
    """One line per (arch, speed measure): Spearman's rho with its interval, and what the paper predicts."""
    expect = {"acc_at_k": "paper: < 0", "steps_to_target": "paper: > 0"}
    k, target = result.config.k_steps, result.config.train.target_accuracy
    names = {"acc_at_k": f"held-out acc after {k} steps", "steps_to_target": f"steps to {target:g} acc"}
    lines = [f"# Spearman rho of final-layer cos_sim at init vs training speed "
             f"({result.config.confidence:.0%} bootstrap interval)"]
    for row in result.correlations.itertuples():
        lines.append(f"#   {row.arch:<7} {names[row.speed]:<30} rho {short(row.rho, 2):>6} "
                     f"[{short(row.lo, 2)}, {short(row.hi, 2)}]  n={row.n}  ({expect[row.speed]})")
    if result.stopped:
        lines.append("# stopped early: only the finished runs are counted")
    return "\n".join(lines)


_RUN_COLUMNS = ["arch", "label", "seed", "cos_sim_init", "acc_at_k", "steps_to_target", "final_test_acc",
                "diverged", "grad_growth_init", "grad_range_init", "grad_range_after", "seconds"]


def _study_frame(result: StudyResult, show: str, fmt: str) -> pd.DataFrame:
    if show == "correlations":
        return result.correlations
    if show == "curves":
        return result.curves
    return result.runs[_RUN_COLUMNS] if fmt == "table" else result.runs


def _run_reporter(steps: int, what: str = "study") -> Callable[[int, int, str], None]:
    def report(done: int, total: int, label: str) -> None:
        if done % steps == 0:  # once per finished run
            _say(f"{what} {done // steps}/{total // steps} runs: {label}")

    return report


def run_study_command(args: argparse.Namespace) -> int:
    """``normlab study``: every run; the chosen frame to stdout/--out, the correlations to stderr."""
    try:
        config = study_config_from_args(args)
        check_out(args.out)
        _set_threads(args.threads)
        execution = execution_from_args(args)
        _say(f"study: {len(config.runs())} runs of {config.train.steps} steps")
        result = run_study(config, progress=_run_reporter(config.train.steps), **execution)
        write(frame_text(_study_frame(result, args.show, args.format), args.format), args.out)
        _say(correlation_text(result))
    except ValueError as err:
        _say(f"normlab study: error: {' '.join(str(err).split())}")
        return USAGE_ERROR
    return 0


# --- warmup ----------------------------------------------------------------------------------------

WARMUP_SHOW = ("arms", "runs", "curves")
_WARMUP_TRAIN_SKIP = ("seed", "warmup_steps")  # each run's come from the study's --seeds and --warmups
_WARMUP_HELP = {
    "placements": f"placements to compare: some of {', '.join(PLACEMENTS)}",
    "warmups": "warm-up lengths in steps, one arm each (0 = none; the longest is the verdict's warmed-up "
               "arm)",
    "seed": "first seed; the runs of an arm use seed, seed + 1, ...",
    "norm": "the normalizer of every network",
    "lr": "the peak learning rate every arm reaches (with warm-up: after its warm-up)",
}


def add_warmup_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = WarmupStudyConfig()
    _add_fields(parser, WarmupStudyConfig, "study", defaults=defaults, help_text=_WARMUP_HELP)
    _add_fields(parser, TrainConfig, "training of every run", skip=_WARMUP_TRAIN_SKIP,
                defaults=defaults.train, help_text=_WARMUP_HELP)
    _add_threads(parser)
    add_execution_arguments(parser, "run")
    _add_output(parser, WARMUP_SHOW, "arms (one row per placement and warm-up: final held-out loss and bits "
                                     "per byte over the seeds), runs (one row per run), curves")


def warmup_config_from_args(args: argparse.Namespace) -> WarmupStudyConfig:
    """The WarmupStudyConfig the flags describe; training flags override its default training."""
    return _study_config(args, WarmupStudyConfig, _WARMUP_TRAIN_SKIP)


def arms_text(result: WarmupStudyResult) -> str:
    """The arms as an aligned table, then the verdict."""
    lines = ["# placement  warm-up  runs  diverged  held-out loss mean [min, max]    "
             "bits/byte mean [min, max]"]
    for arm in result.arms.itertuples():
        lines.append(f"#   {arm.placement:<8} {arm.warmup_steps:>7}  {arm.runs:>4}  {arm.diverged:>8}  "
                     f"{short(arm.loss_mean, 4):>6} [{short(arm.loss_min, 4)}, {short(arm.loss_max, 4)}]"
                     f"      {short(arm.bpb_mean, 3):>5} [{short(arm.bpb_min, 3)}, {short(arm.bpb_max, 3)}]")
    lines.append("# " + result.verdict.text)
    if result.stopped:
        lines.append("# stopped early: only the finished runs are counted")
    return "\n".join(lines)


def run_warmup_command(args: argparse.Namespace) -> int:
    """``normlab warmup``: every run of the warm-up study; the chosen frame to stdout/--out, the arms and
    the verdict to stderr."""
    try:
        config = warmup_config_from_args(args)
        check_out(args.out)
        _set_threads(args.threads)
        execution = execution_from_args(args)
        _say(f"warmup: {len(config.runs())} runs of {config.train.steps} steps at peak lr "
             f"{config.train.lr:g}")
        result = run_warmup_study(config, progress=_run_reporter(config.train.steps, "warmup"), **execution)
        frame = {"arms": result.arms, "runs": result.runs, "curves": result.curves}[args.show]
        write(frame_text(frame, args.format), args.out)
        _say(arms_text(result))
    except ValueError as err:
        _say(f"normlab warmup: error: {' '.join(str(err).split())}")
        return USAGE_ERROR
    return 0


# --- Registration ------------------------------------------------------------------------------------

TRAIN_HELP = TRAINING_HELP["train"]
STUDY_HELP = TRAINING_HELP["study"]


def add_parsers(subparsers) -> None:
    """Register ``train`` and ``study`` on an ``add_subparsers()`` object.

    Each parser sets ``func`` to its handler, and ``run`` to the same handler, the name normlab.cli's
    ``main`` dispatches on.
    """
    for name, text, add, handler in (
        ("train", TRAIN_HELP, add_train_arguments, run_train_command),
        ("study", STUDY_HELP + f" (default normalizers: {', '.join(STUDY_NORMS)})", add_study_arguments,
         run_study_command),
        ("warmup", TRAINING_HELP["warmup"] + " (Xiong et al. 2020, at a small scale: a byte-level language "
         "model on the text input)", add_warmup_arguments, run_warmup_command),
    ):
        parser = subparsers.add_parser(name, help=text, description=text)
        add(parser)
        parser.set_defaults(func=handler, run=handler)
