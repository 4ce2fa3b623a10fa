"""The ``normlab`` command line: argparse over the same engine API the UI uses; ``main(argv)`` for tests.

Each subcommand is one :class:`Command` entry (name, help, add_arguments, run) in :data:`COMMANDS`, so a
new one (train, study, ...) is a function pair and a line. Config flags are generated from the
ModelConfig/ProbeConfig fields, so a new field gets its flag for free; the configs validate, the CLI
only parses. User mistakes end with exit status 2 and one line on stderr, never a traceback.
Knows nothing of the UI.

Loading this module imports neither torch nor pandas: ``--help`` and ``list`` answer at once, and the
engine (probes, torch, the training commands) loads when a command needs it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from normlab import catalog
from normlab.backends import BACKENDS, RAY_INSTALL
from normlab.config import (
    ARCHS,
    DEVICES,
    DISK_INPUTS,
    INPUTS,
    NORM_NAMES,
    PRESETS,
    WN_ACT_PLACEMENTS,
    ModelConfig,
    ProbeConfig,
    config_from_dict,
    describe,
)
from normlab.store import DEFAULT_ROOT, ENV_VAR

if TYPE_CHECKING:
    import pandas as pd

USAGE_ERROR = 2  # exit status for bad input, as argparse uses
FORMATS = ("csv", "json", "table")
SUMMARY_STATS = ("mean", "min", "max", "n")  # normlab.probes.summarize's columns
TRAINING_COMMANDS = ("train", "study", "warm")  # in cli_train / cli_warm, loaded only when one runs

FIELD_HELP = {
    "arch": f"network family: {', '.join(ARCHS)} (a preset fixes it)",
    "norm": f"normalizer: {', '.join(NORM_NAMES)}",
    "depth": "hidden layers (mlp), conv layers (cnn) or blocks per stage (resnet)",
    "width": "hidden width (mlp, cnn) or first-stage width (resnet)",
    "groups": "group count of groupnorm / evonorm_s0 (must divide every width)",
    "group_size": "channels per group, instead of --groups",
    "preset": f"paper network: {', '.join(PRESETS)}",
    "stages": "resnet stages (width doubles per stage)",
    "preact": "resnet: pre-activation blocks",
    "skipinit": "resnet: residual branch scale initialised to 0 (SkipInit)",
    "wn_act": f"weightnorm resnet: corrected ReLU {' or '.join(WN_ACT_PLACEMENTS)}",
    "in_channels": "input image channels",
    "num_classes": "classifier outputs (random labels use the same count)",
    "input": f"probe inputs: {', '.join(INPUTS)}; from --data-dir: {', '.join(DISK_INPUTS)}",
    "batch_size": "samples per batch (bounds every rank)",
    "image_size": "input height = width",
    "seed": "first seed",
    "seeds": "number of seeds (fresh init and batch each)",
    "device": f"{', '.join(DEVICES)} ('normlab list' says which this machine has)",
    "rank_tol": "numerical_rank counts singular values above rank_tol * sigma_max",
    "data_dir": "folder of the cifar10/cifar100 files or of an image folder (default $NORMLAB_DATA_DIR)",
}

class UsageError(ValueError):
    """Bad command-line input: reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
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
            flag = "--" + field.name.replace("_", "-")
            help_text = FIELD_HELP.get(field.name, field.name)
            if base is bool:
                group.add_argument(flag, dest=field.name, action=argparse.BooleanOptionalAction,
                                   default=None, help=help_text)
            else:
                group.add_argument(flag, dest=field.name, type=base, default=None,
                                   metavar=base.__name__.upper(), help=help_text)


def _given(args: argparse.Namespace, cls) -> dict:
    """The fields of ``cls`` whose flags were given."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)}
    return {name: value for name, value in values.items() if value is not None}


def configs_from_args(args: argparse.Namespace) -> tuple[ModelConfig, ProbeConfig]:
    """The configs the flags describe; their own ValueErrors name any bad field."""
    return config_from_dict(ModelConfig, _given(args, ModelConfig)), config_from_dict(
        ProbeConfig, _given(args, ProbeConfig))


_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")
_NONE = ("none", "null", "")


def parse_value(cls, name: str, text: str):
    """One sweep value of field ``name`` of ``cls`` from text, in the field's type."""
    base, optional, _ = field_type(cls, name)
    if optional and text.strip().lower() in _NONE:
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


def _check_devices(names) -> None:
    from normlab.device import resolve_device

    for name in names:
        resolve_device(name)  # raises a ValueError naming the missing device


# --- Output ------------------------------------------------------------------------------------------------


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def _describe(model: ModelConfig, probe: ProbeConfig) -> str:
    from normlab.device import resolve_device

    return f"# {describe(model, probe)}, device {resolve_device(probe.device).type}"


def _pivot(frame: pd.DataFrame, rows: list[str]) -> pd.DataFrame:
    """Metrics as columns, mean over seeds; a cell a layer has no metric for stays blank."""
    measured = frame[frame["kind"] != "spectrum"]
    # mean(skipna=False): a seed that overflowed shows as nan, not hidden
    means = measured.groupby([*rows, "metric"], sort=False, dropna=False)["value"].agg(
        lambda v: v.mean(skipna=False))
    table = means.unstack("metric")
    table = table[[m for m in catalog.METRICS if m in table.columns]]
    present = measured.groupby([*rows, "metric"], sort=False, dropna=False).size().unstack("metric")
    shown = table.map(_fmt).where(present.reindex_like(table).notna(), "")
    return shown.reset_index()


def probe_table(frame: pd.DataFrame, model: ModelConfig, probe: ProbeConfig) -> str:
    """Per-layer metrics (mean over seeds) in forward order, then the top of the final spectrum."""
    import numpy as np

    order = frame.drop_duplicates(["layer", "kind"])[["layer", "index", "kind"]]
    shown = order.merge(_pivot(frame, ["layer", "index", "kind"]), on=["layer", "index", "kind"])
    final = frame.loc[frame["final"] & (frame["kind"] != "spectrum"), "layer"]
    shown.insert(0, "", np.where(shown["layer"].isin(set(final)), "*", ""))
    lines = [_describe(model, probe), shown.to_string(index=False)]
    spectrum = frame[frame["kind"] == "spectrum"]
    if len(spectrum):
        top = spectrum.groupby("index")["value"].agg(lambda v: v.mean(skipna=False)).sort_index()
        lines.append(f"* final features ({spectrum['layer'].iloc[0]}); Gram eigenvalues, largest first: "
                     + ", ".join(_fmt(v) for v in top.iloc[:8]) + (", ..." if len(top) > 8 else ""))
    return "\n".join(lines) + "\n"


GROWTH_COLUMN = "grad_growth"


def sweep_table(frame: pd.DataFrame, over: dict[str, list]) -> str:
    """One row per sweep point: the final features' metrics and the gradient growth (normlab.summary)."""
    from normlab.summary import gradient_growth

    keys = [k for k in over if k in frame.columns]
    points = frame.groupby(keys, sort=False, dropna=False).ngroup() if keys else 0
    work = frame.assign(_point=points)
    table = _pivot(work[work["final"] & (work["kind"] != "spectrum")], ["_point"])
    growth = {point: gradient_growth(part) for point, part in work.groupby("_point", sort=False)}
    table[GROWTH_COLUMN] = table["_point"].map(growth).map(_fmt)
    labels = work.drop_duplicates("_point").set_index("_point")[keys]
    table = labels.join(table.set_index("_point")).reset_index(drop=True)
    return (f"# final features, mean over seeds; {GROWTH_COLUMN} = grad_norm at the first / at the last "
            "hidden conv/linear output (head, exact zeros left out)\n"
            + table.to_string(index=False) + "\n")


def _progress(label: str) -> Callable[[int, int, str], None]:
    def report(done: int, total: int, what: str) -> None:
        print(f"{label} {done}/{total}: {what}", file=sys.stderr, flush=True)

    return report


def _format(frame: pd.DataFrame, args, table: Callable[[], str]) -> str:
    from normlab.output import frame_text
    from normlab.probes import summarize

    if args.format == "table":
        return table()
    return frame_text(summarize(frame) if args.summary else frame, args.format)


def _add_output_arguments(parser: argparse.ArgumentParser) -> None:
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
    from normlab.backends import check_backend, import_ray
    from normlab.store import ResultStore, default_store

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


# --- Commands ----------------------------------------------------------------------------------------------


def add_probe_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    _add_output_arguments(parser)


def run_probe(args: argparse.Namespace) -> int:
    from normlab.output import check_out, write
    from normlab.probes import run_probes

    model, probe = configs_from_args(args)
    _check_devices([probe.device])
    check_out(args.out)
    progress = _progress("probe seed") if probe.seeds > 1 else None
    frame = run_probes(model, probe, progress=progress)
    write(_format(frame, args, lambda: probe_table(frame, model, probe)), args.out)
    return 0


def add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--over", action="append", default=[], metavar="FIELD=V1,V2,...", required=True,
                        help="sweep a config field over values (repeat for a cartesian product), "
                             "e.g. --over norm=batchnorm,layernorm --over groups=1,2,4")
    add_config_arguments(parser)
    add_execution_arguments(parser, "point")
    _add_output_arguments(parser)


def run_sweep_command(args: argparse.Namespace) -> int:
    from normlab.output import check_out, write
    from normlab.probes import run_sweep

    over = parse_over(args.over)
    model, probe = configs_from_args(args)
    _check_devices(over.get("device", [probe.device]))
    check_out(args.out)
    execution = execution_from_args(args)
    # Every model flag given reaches every sweep point as a one-value sweep: one the base config dropped
    # as unused (--groups with batchnorm) still counts where it matters (groupnorm), and a point it
    # cannot apply to (--stages at arch=mlp) is refused by name instead of run without it.
    points = dict(over)
    for name, value in _given(args, ModelConfig).items():
        points.setdefault(name, [value])
    try:
        frame = run_sweep(model, probe, points, progress=_progress("sweep"), **execution)
    except ValueError as err:
        flags = [f"--{n.replace('_', '-')}" for n in points if n not in over]
        if not flags or "is invalid" not in str(err):
            raise
        hint = (f"a flag given beside --over, here {' '.join(flags)}, applies to every sweep point; sweep "
                "it with --over only where it applies, or leave it out")
        raise ValueError(f"{err} ({hint})") from None
    write(_format(frame, args, lambda: sweep_table(frame, over)), args.out)
    return 0


def add_list_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=("table", "json"), default="table",
                        help="table (default) or json")
    parser.add_argument("--devices", action="store_true",
                        help="also check which devices this machine offers (loads torch: a few seconds)")


def catalogue(devices: bool = True) -> dict:
    """What normlab offers, from normlab.catalog: normalizers, presets, inputs, archs, metrics, devices.

    ``devices``: also ask torch which devices this machine has (``available``; else None).
    """
    available = None
    if devices:
        from normlab.device import available_devices

        available = available_devices()
    return {
        "normalizers": {name: {"label": n.label, "slot": n.slot, "family": n.family, "grouped": n.grouped,
                               "batch_dependent": n.batch_dependent}
                        for name, n in catalog.NORMALIZERS.items()},
        "presets": {name: {k: v for k, v in p.items() if k != "plan"} for name, p in PRESETS.items()},
        "inputs": list(INPUTS + DISK_INPUTS),
        "archs": list(ARCHS),
        "metrics": {m: {"where": list(info.kinds), "help": info.help}
                    for m, info in catalog.METRIC_INFO.items()},
        "devices": {"choices": list(DEVICES), "available": available},
    }


def run_list(args: argparse.Namespace) -> int:
    info = catalogue(devices=args.devices)
    if args.format == "json":
        sys.stdout.write(json.dumps(info, indent=1) + "\n")
        return 0
    lines = ["normalizers (--norm):"]
    for name, n in info["normalizers"].items():
        traits = [n["family"]] + ["grouped: --groups / --group-size"] * n["grouped"] + [
            "batch-dependent"] * n["batch_dependent"]
        lines.append(f"  {name:<13} {n['label']:<31} {', '.join(traits)}")
    lines.append("presets (--preset):")
    for name, p in info["presets"].items():
        lines.append(f"  {name:<13} " + ", ".join(f"{k} {v}" for k, v in p.items()))
    lines.append(f"archs (--arch): {', '.join(info['archs'])}")
    lines.append(f"inputs (--input): {', '.join(info['inputs'])}")
    lines.append("metrics (the metric column; where = probe-point kinds):")
    for name, m in info["metrics"].items():
        lines.append(f"  {name:<17} {', '.join(m['where']):<11} {m['help']}")
    available = info["devices"]["available"]
    found = (f"available here: {', '.join(available)}" if available is not None
             else "'normlab list --devices' checks which this machine has")
    lines.append(f"devices (--device): {', '.join(info['devices']['choices'])}; {found}")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


@dataclass(frozen=True)
class Command:
    """A subcommand: ``add_arguments(parser)`` declares its flags, ``run(args)`` returns the exit status."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


COMMANDS: list[Command] = [
    Command("probe", "measure one network at initialization",
            add_probe_arguments, run_probe),
    Command("sweep", "measure a grid of configs (--over FIELD=V1,V2)",
            add_sweep_arguments, run_sweep_command),
    Command("list", "normalizers, presets, inputs, archs, metrics and devices",
            add_list_arguments, run_list),
]


# The training commands' one-line help, so the root --help lists them without loading torch.
TRAINING_HELP = {
    "train": "train one network on the digits; loss, accuracy and probes at init and after a few steps",
    "study": "does init similarity predict training speed? train many networks, rank-correlate",
    "warm": "compute the paper claims and each page's default view into the result store, ahead of a lecture",
}


def build_parser(training: bool = True) -> argparse.ArgumentParser:
    """The root parser. ``training=False`` lists train/study by name only, without loading the training
    engine (and torch) to generate their flags: enough for ``--help`` and the other commands."""
    parser = _Parser(prog="normlab", description="How normalization layers shape deep networks at "
                                                 "initialization (Beyond BatchNorm, NeurIPS 2021).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        cmd = sub.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(cmd)
        cmd.set_defaults(run=command.run)
    if training:  # their flags come from the training configs, which live beside torch
        from normlab import cli_train, cli_warm

        cli_train.add_parsers(sub)
        cli_warm.add_parsers(sub)
    else:
        for name in TRAINING_COMMANDS:
            sub.add_parser(name, help=TRAINING_HELP[name])
    return parser


def _wants_training(argv: Sequence[str]) -> bool:
    command = next((a for a in argv if not a.startswith("-")), None)
    return command in TRAINING_COMMANDS


def _one_line(message: str) -> str:
    return " ".join(str(message).split())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 bad input)."""
    try:
        argv = sys.argv[1:] if argv is None else list(argv)
        args = build_parser(training=_wants_training(argv)).parse_args(argv)
        return args.run(args)
    except UsageError as err:
        print(_one_line(err), file=sys.stderr)
    except ValueError as err:  # the configs' own messages name the field, the value and what is allowed
        print(f"normlab: error: {_one_line(err)}", file=sys.stderr)
    except KeyboardInterrupt:
        print("normlab: interrupted", file=sys.stderr)
        return 130
    except SystemExit as done:  # --help and friends
        return done.code if isinstance(done.code, int) else 0
    return USAGE_ERROR


if __name__ == "__main__":
    sys.exit(main())
