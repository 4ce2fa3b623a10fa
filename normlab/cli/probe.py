"""``normlab probe``, ``sweep`` and ``list``: one network, a grid of configs, and what normlab offers.

Loading this module imports neither torch nor pandas: ``--help`` and ``list`` answer at once; a probe
loads the engine when it runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from normlab.cli.common import (
    Command,
    add_config_arguments,
    add_execution_arguments,
    add_output_arguments,
    check_devices,
    configs_from_args,
    execution_from_args,
    format_frame,
    given,
    parse_over,
    progress_printer,
)
from normlab.core import catalog
from normlab.core.config import (
    ARCHS,
    DEVICES,
    DISK_INPUTS,
    INPUTS,
    PRESETS,
    TOKEN_INPUTS,
    ModelConfig,
    ProbeConfig,
    describe,
)
from normlab.core.text import short

if TYPE_CHECKING:
    import pandas as pd


def _describe(model: ModelConfig, probe: ProbeConfig) -> str:
    from normlab.science.device import resolve_device

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
    shown = table.map(short).where(present.reindex_like(table).notna(), "")
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
                     + ", ".join(short(v) for v in top.iloc[:8]) + (", ..." if len(top) > 8 else ""))
    return "\n".join(lines) + "\n"


GROWTH_COLUMN = "grad_growth"


def sweep_table(frame: pd.DataFrame, over: dict[str, list]) -> str:
    """One row per sweep point: the final features' metrics and the gradient growth (science.summary);
    for transformers also the last block's ‖∂L/∂W₂‖ and, on a depth sweep, the depth-slope table."""
    from normlab.science.summary import W2_GRAD_LAST, gradient_growth, w2_grad_last

    keys = [k for k in over if k in frame.columns]
    points = frame.groupby(keys, sort=False, dropna=False).ngroup() if keys else 0
    work = frame.assign(_point=points)
    table = _pivot(work[work["final"] & (work["kind"] != "spectrum")], ["_point"])
    growth = {point: gradient_growth(part) for point, part in work.groupby("_point", sort=False)}
    table[GROWTH_COLUMN] = table["_point"].map(growth).map(short)
    tokens = (work["metric"] == "weight_grad_norm").any()
    if tokens:
        w2 = {point: w2_grad_last(part) for point, part in work.groupby("_point", sort=False)}
        table[W2_GRAD_LAST] = table["_point"].map(w2).map(short)
    labels = work.drop_duplicates("_point").set_index("_point")[keys]
    table = labels.join(table.set_index("_point")).reset_index(drop=True)
    text = (f"# final features, mean over seeds; {GROWTH_COLUMN} = grad_norm at the first / at the last "
            "hidden conv/linear output (head, exact zeros left out)"
            + (f"; {W2_GRAD_LAST} = ‖∂L/∂W₂‖_F of the last block's FFN" if tokens else "") + "\n"
            + table.to_string(index=False) + "\n")
    if tokens and len(set(over.get("depth", []))) > 1:
        # placement and norm always: they say which law is expected
        curves = ["placement", "norm"] + [k for k in keys if k not in ("depth", "placement", "norm")]
        text += depth_slope_text(frame, curves)
    return text


def depth_slope_text(frame: pd.DataFrame, keys: list[str]) -> str:
    """The depth-slope table of a transformer depth sweep (normlab.science.theory.depth_slope_table)."""
    from normlab.science.theory import depth_slope_table

    table = depth_slope_table(frame, keys)
    for column, form in (("slope", "+.2f"), ("slope_sd", ".2f"), ("expected", "+.1f")):
        table[column] = table[column].map(lambda v, form=form: "" if v != v else format(v, form))  # NaN: ""
    return ("# log-log slope of w2_grad_last against depth, fitted over every (depth, seed); slope_sd over "
            "per-seed fits; expected: the law's slope\n" + table.to_string(index=False) + "\n")


def add_probe_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    add_output_arguments(parser)


def run_probe(args: argparse.Namespace) -> int:
    from normlab.ops.output import check_out, write
    from normlab.ops.run import run_probes

    model, probe = configs_from_args(args)
    check_devices([probe.device])
    check_out(args.out)
    progress = progress_printer("probe seed") if probe.seeds > 1 else None
    frame = run_probes(model, probe, progress=progress)
    write(format_frame(frame, args, lambda: probe_table(frame, model, probe)), args.out)
    return 0


def add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--over", action="extend", nargs="+", default=[], metavar="FIELD=V1,V2,...",
                        required=True,
                        help="sweep config fields over values (several give a cartesian product), "
                             "e.g. --over norm=batchnorm,layernorm groups=1,2,4")
    add_config_arguments(parser)
    add_execution_arguments(parser, "point")
    add_output_arguments(parser)


def run_sweep_command(args: argparse.Namespace) -> int:
    from normlab.ops.output import check_out, write
    from normlab.ops.run import run_sweep

    over = parse_over(args.over)
    model, probe = configs_from_args(args)
    check_devices(over.get("device", [probe.device]))
    check_out(args.out)
    execution = execution_from_args(args)
    # Every model flag given reaches every sweep point as a one-value sweep: one the base config dropped
    # as unused (--groups with batchnorm) still counts where it matters (groupnorm), and a point it
    # cannot apply to (--stages at arch=mlp) is refused by name instead of run without it.
    points = dict(over)
    for name, value in given(args, ModelConfig).items():
        points.setdefault(name, [value])
    try:
        frame = run_sweep(model, probe, points, progress=progress_printer("sweep"), **execution)
    except ValueError as err:
        flags = [f"--{n.replace('_', '-')}" for n in points if n not in over]
        if not flags or "is invalid" not in str(err):
            raise
        hint = (f"a flag given beside --over, here {' '.join(flags)}, applies to every sweep point; sweep "
                "it with --over only where it applies, or leave it out")
        raise ValueError(f"{err} ({hint})") from None
    write(format_frame(frame, args, lambda: sweep_table(frame, over)), args.out)
    return 0


def add_list_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=("table", "json"), default="table",
                        help="table (default) or json")
    parser.add_argument("--devices", action="store_true",
                        help="also check which devices this machine offers (loads torch: a few seconds)")


def catalogue(devices: bool = True) -> dict:
    """What normlab offers, from normlab.core.catalog: normalizers, presets, inputs, archs, metrics, devices.

    ``devices``: also ask torch which devices this machine has (``available``; else None).
    """
    available = None
    if devices:
        from normlab.science.device import available_devices

        available = available_devices()
    return {
        "normalizers": {name: {"label": n.label, "slot": n.slot, "family": n.family, "grouped": n.grouped,
                               "batch_dependent": n.batch_dependent}
                        for name, n in catalog.NORM_INFO.items()},
        "presets": {name: {k: v for k, v in p.items() if k != "plan"} for name, p in PRESETS.items()},
        "inputs": list(INPUTS + DISK_INPUTS + TOKEN_INPUTS),
        "archs": list(ARCHS),
        "arch_norms": {arch: list(catalog.allowed_norms(arch)) for arch in ARCHS},
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
    lines.append(f"archs (--arch): {', '.join(info['archs'])}; the normalizers each takes:")
    for arch, norms in info["arch_norms"].items():
        lines.append(f"  {arch:<13} {', '.join(norms)}")
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


COMMANDS: list[Command] = [
    Command("probe", "measure one network at initialization",
            add_probe_arguments, run_probe),
    Command("sweep", "measure a grid of configs (--over FIELD=V1,V2)",
            add_sweep_arguments, run_sweep_command),
    Command("list", "normalizers, presets, inputs, archs, metrics and devices",
            add_list_arguments, run_list),
]
