"""What the dashboard reads off a probe frame: seed statistics, series labels, growth and rates.

Pure pandas over the tidy frames of ``normlab.run_probes`` (one row per seed, layer and metric); no
Streamlit and no torch. Every number with a definition (gradient growth, final value, growth per block)
comes from ``normlab.science.summary``, per series, so the pages, the claims and the CLI read the
same numbers.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from normlab import ModelConfig, ProbeConfig, summarize
from normlab.core import catalog
from normlab.science import summary
from normlab.science.summary import EXP_DECAY, EXP_GROWTH, FLAT, UNKNOWN, Growth, growth, trunk_kind
from ui.state.i18n import N_, _

__all__ = ["Growth", "growth", "trunk_kind"]  # re-exported: the figures and claims read them from here

# Yang et al. (2019): with BatchNorm + ReLU the gradient grows by this factor per layer toward the input.
BN_GRADIENT_RATE = summary.BN_GRAD_RATE
# Fields that tell series apart when they vary, in the order a label names them.
_LABEL_FIELDS = ("norm", "arch", "preset", "placement", "depth", "width", "stages", "preact", "skipinit",
                 "wn_act", "heads", "seq_len", "causal", "residual_scale", "qk_norm", "ffn", "skip",
                 "input", "batch_size", "image_size", "rank_tol", "device")
# How such a field reads in a label where it is shown translated ({value}: its value); a switch reads as
# its name or its absence, an input as its name, any other field as its value.
_COUNTS = {"depth": N_("depth {value}"), "width": N_("width {value}"), "stages": N_("stages {value}"),
           "batch_size": N_("batch_size {value}"), "image_size": N_("image_size {value}")}
_SWITCHES = {"preact": (N_("preact"), N_("no preact")), "skipinit": (N_("skipinit"), N_("no skipinit")),
             "causal": (N_("causal"), N_("bidirectional")), "qk_norm": (N_("qk-norm"), N_("no qk-norm")),
             "ffn": (N_("FFN"), N_("no FFN")), "skip": (N_("skip"), N_("no skip"))}
_INPUTS = {"gaussian": N_("gaussian"), "images": N_("images"), "digits": N_("digits"),
           "tokens": N_("random bytes"), "text": N_("text")}
_SHAPES = {EXP_GROWTH: N_("exponential growth"), EXP_DECAY: N_("exponential decay")}


def _present(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def norm_label(norm: str, groups=None, group_size=None) -> str:
    """The normalizer's display name with its group setting, e.g. ``GroupNorm (G=4)``."""
    label = _(catalog.label(norm))  # names stay; "No normalization" is translated
    if _present(group_size):
        return _("{label} (group size {size})").format(label=label, size=int(group_size))
    if _present(groups):
        return f"{label} (G={int(groups)})"
    return label


def _format_field(name: str, value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return _(_SWITCHES[name][0 if value else 1])
    if name in _COUNTS and _present(value):
        return _(_COUNTS[name]).format(value=int(value))
    if name in ("rank_tol", "wn_act"):
        return f"{name} {value}"
    if name == "residual_scale":
        return _("branch ×{value}").format(value=f"{float(value):.3g}")
    if name == "heads":
        return f"H={int(value)}"
    if name == "seq_len":
        return f"T={int(value)}"
    return _(_INPUTS[value]) if name == "input" and value in _INPUTS else str(value)


def describe_growth(growth: Growth) -> str:
    """``Growth.describe`` in the dashboard's language: ``+0.357 per block: linear``, ``flat``, ..."""
    if growth.shape == UNKNOWN:
        return _("growth unknown (overflow or too few points)")
    staged = growth.stages > 1
    if growth.shape in _SHAPES:
        text = (_("×{ratio} per block within each of {stages} stages: {shape}") if staged
                else _("×{ratio} per block: {shape}"))
    elif growth.shape == FLAT:
        text = _("flat within each of {stages} stages") if staged else _("flat")
    else:
        text = (_("{slope} per block within each of {stages} stages: linear") if staged
                else _("{slope} per block: linear"))
    shape = _(_SHAPES[growth.shape]) if growth.shape in _SHAPES else growth.shape
    return text.format(ratio=f"{growth.ratio:.3g}", slope=f"{growth.per_block:+.3g}", stages=growth.stages,
                       shape=shape)


def series_labels(frame: pd.DataFrame) -> pd.Series:
    """One label per row naming what sets its run apart from the others in ``frame``.

    The normalizer (with its group setting) always leads; any other config field that varies across the
    frame is appended, so BatchNorm on gaussian and on images inputs become two labelled series.
    """
    if frame.empty:
        return pd.Series([], index=frame.index, dtype=object)
    # Labelled once per distinct run, then looked up per row.
    fields = [name for name in ("norm", "groups", "group_size", *_LABEL_FIELDS[1:]) if name in frame]
    run = np.zeros(len(frame), dtype=np.int64)  # a number per distinct combination of the fields
    for name in fields:
        codes, uniques = pd.factorize(frame[name].to_numpy(dtype=object), use_na_sentinel=False)
        run = pd.factorize(run * len(uniques) + codes)[0]
    _runs, first, inverse = np.unique(run, return_index=True, return_inverse=True)
    labels = np.asarray(_run_labels(frame[fields].iloc[first].astype(object)), dtype=object)
    return pd.Series(labels[inverse], index=frame.index, dtype=object)


def _run_labels(runs: pd.DataFrame) -> list[str]:
    """``series_labels`` of one row per distinct run."""
    groups = runs["groups"] if "groups" in runs else pd.Series(None, index=runs.index)
    sizes = runs["group_size"] if "group_size" in runs else pd.Series(None, index=runs.index)
    labels = [norm_label(n, g, s) for n, g, s in zip(runs["norm"], groups, sizes, strict=True)]
    # A field names a series only where it tells runs of the same normalizer apart (wn_act differs
    # between weightnorm and the rest by construction, which the normalizer's name already says).
    def varies(name: str) -> bool:
        seen: dict[str, set[str]] = {}
        for label, value in zip(labels, runs[name], strict=True):
            seen.setdefault(label, set()).add(str(value))
        return any(len(values) > 1 for values in seen.values())

    varying = [name for name in _LABEL_FIELDS[1:] if name in runs and varies(name)]
    if varying:
        extras = [", ".join(_format_field(n, value) for n, value in zip(varying, row, strict=True))
                  for row in runs[varying].itertuples(index=False)]
        labels = [f"{lab} · {extra}" for lab, extra in zip(labels, extras, strict=True)]
    return labels


def aggregate(frame: pd.DataFrame) -> pd.DataFrame:
    """``normlab.summarize`` (seed mean, min, max, n per point) plus a ``series`` label per run.

    A point overflows when any seed flagged it or gave a non-finite value; its mean/min/max are then NaN
    so that lines break there and the figures draw the point as an overflow marker instead.
    """
    stats = summarize(frame)
    # plain object strings: the figures select rows by metric, kind and series many times over, and a
    # comparison or take on pyarrow-backed strings costs far more per call on frames this small
    strings = [name for name, dtype in stats.dtypes.items() if isinstance(dtype, pd.StringDtype)]
    stats[strings] = stats[strings].astype(object)
    finite = np.isfinite(stats[["mean", "min", "max"]].to_numpy(float)).all(axis=1)
    bad = stats["overflow"].to_numpy(dtype=bool) | ~finite
    stats["overflow"] = bad
    stats.loc[bad, ["mean", "min", "max"]] = np.nan
    stats.insert(0, "series", series_labels(stats))
    return stats


def depth_rows(stats: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Rows of ``metric`` along depth per series, with a 1-based ``position`` column (block or layer).

    ResNets are read at their block outputs (``res_var`` at the residual branches), other nets at the
    activation after every layer.
    """
    rows = []
    for _series, part in stats[stats["metric"] == metric].groupby("series", sort=False):
        kind = "res" if metric == "res_var" else trunk_kind(part)
        picked = part[part["kind"] == kind].sort_values("index")
        rows.append(picked.assign(position=picked["index"] + 1))
    if not rows:
        return stats.iloc[0:0].assign(position=pd.Series(dtype=int))
    return pd.concat(rows, ignore_index=True)


def depth_growths(stats: pd.DataFrame, metric: str) -> dict[str, Growth]:
    """Per series: ``normlab.science.summary.depth_growth`` of the seed means of ``metric`` along depth.

    ResNets are fitted within each stage (a normalized projection shortcut resets the trunk there).
    """
    return {series: summary.depth_growth(part, "mean")
            for series, part in depth_rows(stats, metric).groupby("series", sort=False)}


def gradient_rates(stats: pd.DataFrame) -> pd.DataFrame:
    """Per-layer gradient rate ``grad_norm[l] / grad_norm[l+1]`` along the conv/linear outputs.

    Rates above 1 mean the gradient grows toward the input. Exact zeros (inside SkipInit branches) and
    non-finite norms give no rate rather than a division by zero.
    """
    rows = []
    grads = stats[(stats["metric"] == "grad_norm") & (stats["kind"] == "conv")]
    for series, part in grads.groupby("series", sort=False):
        part = part.sort_values("index")
        g = part["mean"].to_numpy(dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            rate = g[:-1] / g[1:]
        ok = (g[:-1] > 0) & (g[1:] > 0) & np.isfinite(rate)
        layers = part["layer"].to_numpy()[:-1]
        index = part["index"].to_numpy()[:-1]
        rows.append(pd.DataFrame({
            "series": series, "layer": layers[ok], "index": index[ok], "rate": rate[ok],
            "norm": part["norm"].iloc[0],
        }))
    if not rows:
        return pd.DataFrame(columns=["series", "layer", "index", "rate", "norm"])
    return pd.concat(rows, ignore_index=True)


def gradient_growth(stats: pd.DataFrame) -> pd.Series:
    """Per series: ``normlab.science.summary.gradient_growth`` (first conv/linear over the last hidden layer's
    gradient norm, head and exact zeros left out), on the seed means. NaN where an end overflowed."""
    return pd.Series({series: summary.gradient_growth(part, "mean")
                      for series, part in stats.groupby("series", sort=False)}, dtype=float)


def final_value(stats: pd.DataFrame, metric: str) -> pd.Series:
    """Per series: ``summary.final_value`` of ``metric``, the seed mean at the final features."""
    return pd.Series({series: summary.final_value(part, metric, "mean")
                      for series, part in stats.groupby("series", sort=False)
                      if (part["metric"] == metric).any()}, dtype=float)


def stage_starts(stats: pd.DataFrame) -> list[float]:
    """Depths (1-based block numbers) where a new stage of a residual net begins, for the dotted lines."""
    info = catalog.ARCHITECTURES.get(stats["arch"].iloc[0]) if not stats.empty and "arch" in stats else None
    if info is None or not info.residual or "stages" not in stats:
        return []
    stages, depth = stats["stages"].iloc[0], stats["depth"].iloc[0]
    if not (_present(stages) and _present(depth)) or int(stages) < 2:
        return []
    return [s * int(depth) + 0.5 for s in range(1, int(stages))]


def rank_ceiling(model_config: ModelConfig, probe_config: ProbeConfig) -> int:
    """min(batch, features) of the final features before pooling: no rank can exceed it."""
    return min(probe_config.batch_size, catalog.final_features(model_config, probe_config.image_size))


def tradeoff_points(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per group count of a GroupNorm sweep: final similarity against gradient growth.

    Columns: groups, group_size, cos_sim (seed mean, with cos_min/cos_max), grad_growth
    (``summary.gradient_growth``, on the seed means; grad_min/grad_max over the seeds' own) and a
    label that names the ends (G=1 is LayerNorm, group size 1 is InstanceNorm). Overflowed seeds give NaN.
    """
    rows = []
    for groups, part in frame.groupby("groups", sort=True):
        cos = summary.final_rows(part, "cos_sim").groupby("seed")["value"].mean()
        # the point is the growth on the seed means, its band the spread of the seeds' own growths
        seeds = [summary.gradient_growth(seed_rows) for _seed, seed_rows in part.groupby("seed")]
        growth_values = np.asarray(seeds, dtype=float)
        cos_values = cos.to_numpy(dtype=float)
        width = int(part["width"].iloc[0])
        groups = int(groups)
        size = width // groups
        label = f"G={groups}" + (" (LayerNorm)" if groups == 1 else " (InstanceNorm)" if size == 1 else "")

        def stats(values):
            if values.size == 0 or not np.all(np.isfinite(values)):
                return math.nan, math.nan, math.nan
            return float(values.mean()), float(values.min()), float(values.max())

        cos_mean, cos_min, cos_max = stats(cos_values)
        _mean, grad_min, grad_max = stats(growth_values)
        grad_mean = summary.gradient_growth(part)
        rows.append({"groups": groups, "group_size": size, "cos_sim": cos_mean, "cos_min": cos_min,
                     "cos_max": cos_max, "grad_growth": grad_mean, "grad_min": grad_min, "grad_max": grad_max,
                     "label": label})
    return pd.DataFrame(rows, columns=["groups", "group_size", "cos_sim", "cos_min", "cos_max", "grad_growth",
                                       "grad_min", "grad_max", "label"])
