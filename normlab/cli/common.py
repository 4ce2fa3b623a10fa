"""What every ``normlab`` subcommand shares: config flags generated from the dataclass fields, value
parsing, output formats, the execution flags, progress and the :class:`Command` entry. Each subcommand
module imports only this one; it imports neither torch nor pandas.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from normlab.core import catalog
from normlab.core.catalog import NORM_NAMES, SUMMARY_STATS
from normlab.core.config import (
    ARCHS,
    DEVICES,
    DISK_INPUTS,
    INPUTS,
    PLACEMENTS,
    PRESETS,
    TOKEN_INPUTS,
    WN_ACT_PLACEMENTS,
    ModelConfig,
    ProbeConfig,
    config_from_dict,
)
from normlab.ops.backends import BACKENDS, RAY_INSTALL
from normlab.ops.store import DEFAULT_ROOT, ENV_VAR

if TYPE_CHECKING:
    import pandas as pd

USAGE_ERROR = 2  # exit status for bad input, as argparse uses
FORMATS = ("csv", "json", "table")
TRAINING_COMMANDS = ("train", "study")  # in normlab.cli.train, loaded only when one runs

def _per_family(field: str) -> str:
    """A help text that says what a size means in each family: 'hidden layers (mlp), ... or ... (resnet)'."""
    parts = [f"{getattr(info, field)} ({name})" for name, info in catalog.ARCHITECTURES.items()]
    return ", ".join(parts[:-1]) + f" or {parts[-1]}" if len(parts) > 1 else parts[0]


FIELD_HELP = {
    "arch": f"network family: {', '.join(ARCHS)} (a preset fixes it)",
    "norm": f"normalizer: {', '.join(NORM_NAMES)}",
    "depth": _per_family("depth_help"),
    "width": _per_family("width_help"),
    "groups": "group count of groupnorm / evonorm_s0 (must divide every width)",
    "group_size": "channels per group, instead of --groups",
    "preset": f"paper network: {', '.join(PRESETS)}",
    "stages": "resnet stages (width doubles per stage)",
    "preact": "resnet: pre-activation blocks",
    "skipinit": "resnet: residual branch scale initialised to 0 (SkipInit)",
    "wn_act": f"weightnorm resnet: corrected ReLU {' or '.join(WN_ACT_PLACEMENTS)}",
    "in_channels": "input image channels",
    "num_classes": "classifier outputs (random labels use the same count)",
    "input": f"probe inputs: {', '.join(INPUTS)}; from --data-dir: {', '.join(DISK_INPUTS)}; "
             f"transformer: {', '.join(TOKEN_INPUTS)} (default: gaussian, or tokens for a transformer)",
    "batch_size": "samples per batch (bounds every rank)",
    "image_size": "input height = width",
    "seed": "first seed",
    "seeds": "number of seeds (fresh init and batch each)",
    "device": f"{', '.join(DEVICES)} ('normlab list' says which this machine has)",
    "rank_tol": "numerical_rank counts singular values above rank_tol * sigma_max",
    "data_dir": "folder of the cifar10/cifar100 files or of an image folder (default $NORMLAB_DATA_DIR)",
    "placement": f"transformer: where the norm sits, {', '.join(PLACEMENTS)} (default pre)",
    "heads": "transformer: attention heads (must divide --width)",
    "seq_len": "transformer: tokens per sequence",
    "causal": "transformer: causal attention (--no-causal: bidirectional)",
    "residual_scale": "transformer: each residual branch is multiplied by this (e.g. 1/sqrt(depth))",
    "qk_norm": "transformer: the normalizer on queries and keys per head",
    "ffn": "transformer: FFN sub-layers (--no-ffn: attention only)",
    "skip": "transformer: residual connections (--no-skip: pure attention with --no-ffn)",
    "text_path": "transformer, input text: the file whose bytes are cut into sequences "
                 "(default: the stdlib's pydoc_data help topics)",
}
# Shorter spellings of a config flag.
FLAG_ALIASES = {"text_path": ("--text",)}

class UsageError(ValueError):
    """Bad command-line input: reported as one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting, so main() writes one line."""

    def error(self, message: str) -> typing.NoReturn:
        raise UsageError(f"{self.prog}: error: {message}")


# --- Config flags, generated from the dataclass fields -----------------------------------------------------


def field_type(cls, name: str) -> tuple[type, bool, bool]:
    """(base type, optional, many) of a config field, from its annotation.

    ``int | None`` -> (int, True, False); ``tuple[str, ...]`` -> (str, False, True).
    """
    hint = typing.get_type_hints(cls)[name]
    if typing.get_origin(hint) is tuple:
        return typing.get_args(hint)[0], False, True
    args = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) else ()
    if args:
        base = [a for a in args if a is not type(None)]
        return base[0], len(base) < len(args), False
    return hint, False, False


def _config_fields() -> list[tuple[type, dataclasses.Field]]:
    return [(cls, f) for cls in (ModelConfig, ProbeConfig) for f in dataclasses.fields(cls)]


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per ModelConfig/ProbeConfig field (``group_size`` -> ``--group-size``), default unset."""
    for title, cls in (("model", ModelConfig), ("probe", ProbeConfig)):
        group = parser.add_argument_group(f"{title} ({cls.__name__} fields; unset = the config's default)")
        for field in dataclasses.fields(cls):
            base, _, _ = field_type(cls, field.name)
            flags = ("--" + field.name.replace("_", "-"), *FLAG_ALIASES.get(field.name, ()))
            help_text = FIELD_HELP.get(field.name, field.name)
            if base is bool:
                group.add_argument(*flags, dest=field.name, action=argparse.BooleanOptionalAction,
                                   default=None, help=help_text)
            else:
                group.add_argument(*flags, dest=field.name, type=base, default=None,
                                   metavar="FILE" if field.name == "text_path" else base.__name__.upper(),
                                   help=help_text)


def given(args: argparse.Namespace, cls, skip: tuple[str, ...] = ()) -> dict:
    """The fields of ``cls`` whose flags were given (a field without a flag, or in ``skip``, is not)."""
    names = [f.name for f in dataclasses.fields(cls) if f.name not in skip]
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def configs_from_args(args: argparse.Namespace) -> tuple[ModelConfig, ProbeConfig]:
    """The configs the flags describe; their own ValueErrors name any bad field."""
    return config_from_dict(ModelConfig, given(args, ModelConfig)), config_from_dict(
        ProbeConfig, given(args, ProbeConfig))


_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")
_NONE = ("none", "null", "")


def parse_value(cls, name: str, text: str):
    """One sweep value of field ``name`` of ``cls`` from text, in the field's type."""
    base, optional, _ = field_type(cls, name)
    # "none" is a normalizer's name: --over norm=none means it, not the family's default (None)
    if optional and text.strip().lower() in _NONE and not (name == "norm" and text.strip()):
        return None
    if base is bool:
        if text.lower() in _TRUE + _FALSE:
            return text.lower() in _TRUE
        raise ValueError(f"{name} takes true or false; got {text!r}")
    if base in (int, float):
        try:
            return base(text)
        except ValueError:
            kind = "a whole number" if base is int else "a number"
            raise ValueError(f"{name} takes {kind}; got {text!r}") from None
    return text


def parse_over(items: Sequence[str]) -> dict[str, list]:
    """``["norm=batchnorm,layernorm", "groups=1,2"]`` -> ``{"norm": [...], "groups": [1, 2]}``."""
    owner = {f.name: cls for cls, f in _config_fields()}
    over: dict[str, list] = {}
    for item in items:
        name, sep, values = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not name:
            raise ValueError(f"--over takes FIELD=V1,V2,...; got {item!r}")
        if name not in owner:
            raise ValueError(f"Unknown sweep field {name!r} in --over; expected one of {', '.join(owner)}")
        if name in over:
            raise ValueError(f"--over {name} is given twice; list all its values in one --over")
        over[name] = [parse_value(owner[name], name, v.strip()) for v in values.split(",")]
    return over


def check_devices(names) -> None:
    from normlab.science.device import resolve_device

    for name in names:
        resolve_device(name)  # raises a ValueError naming the missing device


# --- Output ------------------------------------------------------------------------------------------------


def progress_printer(label: str) -> Callable[[int, int, str], None]:
    def report(done: int, total: int, what: str) -> None:
        print(f"{label} {done}/{total}: {what}", file=sys.stderr, flush=True)

    return report


def format_frame(frame: pd.DataFrame, args, table: Callable[[], str]) -> str:
    from normlab.ops.output import frame_text
    from normlab.science.probes import summarize

    if args.format == "table":
        return table()
    return frame_text(summarize(frame) if args.summary else frame, args.format)


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    out = parser.add_argument_group("output")
    out.add_argument("--format", choices=FORMATS, default="csv",
                     help="csv or json: the tidy frame (one row per seed, layer, metric); "
                          "table: a per-layer summary, mean over seeds (default csv)")
    out.add_argument("--out", metavar="FILE", help="write to FILE instead of stdout")
    out.add_argument("--summary", action="store_true",
                     help=f"csv/json: {', '.join(SUMMARY_STATS)} over seeds instead of one row per seed")


def add_execution_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    """--backend, --address and --store: where the points run and where finished ones are kept."""
    run = parser.add_argument_group("execution")
    run.add_argument("--backend", choices=BACKENDS, default="local",
                     help=f"local: every {what} in this process; ray: one Ray task per {what}, on a local "
                          f"Ray or the cluster at --address; needs Ray: {RAY_INSTALL}. Default local")
    run.add_argument("--address", metavar="ADDR",
                     help="with --backend ray: the Ray cluster to join, e.g. auto or ray://head:10001 "
                          "(default: start a local Ray)")
    run.add_argument("--store", metavar="DIR|off",
                     help=f"keep each finished {what} in DIR and skip those already there, so a rerun "
                          f"resumes (default ${ENV_VAR}, else {DEFAULT_ROOT}); off keeps nothing")


def execution_from_args(args: argparse.Namespace) -> dict:
    """The backend, address and store keyword arguments of run_sweep / run_study."""
    from normlab.ops.backends import check_backend, import_ray
    from normlab.ops.store import ResultStore, default_store

    check_backend(args.backend, args.address)
    if args.store is None:
        store = default_store()
    elif args.store.strip().lower() == "off":
        store = None
    elif not args.store.strip():
        raise ValueError("--store must be a folder or off; got an empty value")
    else:
        store = ResultStore(args.store)
    if args.backend == "ray":
        import_ray()  # say what to install before anything runs
    return {"backend": args.backend, "address": args.address, "store": store}


@dataclass(frozen=True)
class Command:
    """A subcommand: ``add_arguments(parser)`` declares its flags, ``run(args)`` returns the exit status."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


# The training commands' one-line help, so the root --help lists them without loading torch.
TRAINING_HELP = {
    "train": "train one network on the digits; loss, accuracy and probes at init and after a few steps",
    "study": "does init similarity predict training speed? train many networks, rank-correlate",
}
