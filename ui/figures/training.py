"""The training-speed page: each run's similarity at init against its training speed, and the curves.

Pure builders: frames in, plotly Figures out; no Streamlit call, no torch.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from normlab.core import catalog
from ui.figures.measures import (
    norm_label,
)
from ui.figures.style import norm_color, shared_layout
from ui.state.i18n import N_, _

# --- The training page: its runs' similarity at init against their training speed -----------------------

POOLED = N_("both nets pooled")  # the correlation over every family's runs (row arch "all")


def arch_label(arch: str) -> str:
    """A family's name on a chart, in the session's language (the pooled row's too; unknown: as is)."""
    if arch == "all":
        return _(POOLED)
    return _(catalog.ARCHITECTURES[arch].label) if arch in catalog.ARCHITECTURES else str(arch)


def arch_symbol(arch: str) -> str:
    return catalog.ARCHITECTURES[arch].symbol if arch in catalog.ARCHITECTURES else "circle"

SPEEDS = {"acc_at_k": N_("held-out accuracy after k steps"),
          "steps_to_target": N_("steps to the target accuracy")}


def shade(hex_color: str, t: float) -> str:
    """``hex_color`` darkened toward black (t < 0) or lightened toward white (t > 0) by |t| of the way."""
    rgb = np.array([int(hex_color[i:i + 2], 16) for i in (1, 3, 5)], dtype=float)
    target = 0.0 if t < 0 else 255.0
    mixed = np.rint(rgb + abs(t) * (target - rgb)).astype(int)
    return "#" + "".join(f"{v:02x}" for v in mixed)


def variant_colors(frame: pd.DataFrame) -> dict[tuple[str, object], str]:
    """(norm, groups) -> colour: each normalizer's own colour, in shades from dark (fewest groups) to light
    (most) where a grouped normalizer runs at several group counts, so G=2, 4 and 8 read apart."""
    groups = frame["groups"] if "groups" in frame.columns else None
    pairs = pd.DataFrame({"norm": frame["norm"], "groups": groups}).drop_duplicates()
    colors = {}
    for norm, part in pairs.groupby("norm", sort=False):
        counts = sorted(g for g in part["groups"] if pd.notna(g))
        for g in part["groups"]:
            k = counts.index(g) if pd.notna(g) else 0
            t = -0.35 + 0.7 * k / (len(counts) - 1) if len(counts) > 1 and pd.notna(g) else 0.0
            colors[(norm, None if pd.isna(g) else int(g))] = shade(norm_color(norm), t)
    return colors


def _color_of(colors: dict, norm: str, rows: pd.DataFrame) -> str:
    groups = rows["groups"].iloc[0] if "groups" in rows.columns else None
    return colors.get((norm, None if groups is None or pd.isna(groups) else int(groups)), norm_color(norm))


def _run_label(norm: str, rows: pd.DataFrame) -> str:
    """A training run's normalizer in the session's language, with its group count (the frames' own
    ``label`` column is the engine's English)."""
    groups = rows["groups"].iloc[0] if "groups" in rows.columns else None
    return norm_label(norm, groups)


def similarity_speed_figure(runs: pd.DataFrame, correlations: pd.DataFrame, speed: str, steps: int,
                            uirevision: str = "training") -> go.Figure:
    """cos_sim at init (x) against training speed (y), one point per run, coloured by normalizer.

    Diverged runs (acc_at_k) sit at 0 and runs that never reach the target (steps_to_target) on a line
    above the last step, both drawn as open markers; the correlations are written on the figure.
    """
    fig = go.Figure()
    level = steps * 1.08  # a row above the last step for runs that never reach the target
    speed_title = _(SPEEDS[speed])
    colors = variant_colors(runs)
    for (arch, norm, _english), part in runs.groupby(["arch", "norm", "label"], sort=False):
        label = _run_label(norm, part)
        y = part[speed].to_numpy(dtype=float)
        missing = np.isnan(y)
        shown = np.where(missing, 0.0 if speed == "acc_at_k" else level, y)
        net = arch_label(arch)
        fig.add_trace(go.Scatter(
            x=part["cos_sim_init"], y=shown, mode="markers", name=f"{label} · {net}",
            legendgroup=label,
            marker={"color": _color_of(colors, norm, part), "size": 11,
                    "symbol": [arch_symbol(arch) + ("-open" if m else "") for m in missing],
                    "line": {"width": 1, "color": "white"}},
            customdata=np.stack([part["seed"], part["final_test_acc"], part["diverged"]], axis=1),
            hovertemplate=_("<b>{label}</b> ({net}), seed %{{customdata[0]}}<br>"
                            "cos_sim at init %{{x:.3f}}<br>{speed} %{{y:.3g}}<br>"
                            "final accuracy %{{customdata[1]:.3f}}<br>diverged %{{customdata[2]}}"
                            "<extra></extra>").format(label=label, net=net, speed=speed_title),
        ))
    text = []
    for row in correlations[correlations["speed"] == speed].itertuples():
        name = arch_label(row.arch)
        if not math.isnan(row.rho):
            text.append(f"{name}: Spearman ρ = {row.rho:+.2f} [{row.lo:+.2f}, {row.hi:+.2f}], n = {row.n}")
        else:  # fewer than two runs, or one side constant (e.g. no run reached the target)
            text.append(_("{net}: no rank correlation (n = {n}; one side does not vary)").format(
                net=name, n=row.n))
    if speed == "steps_to_target" and runs[speed].isna().any():
        fig.add_hline(y=level, line_dash="dot", line_color="#999",
                      annotation_text=_("never reached (open markers)"), annotation_position="bottom right")
    if speed == "acc_at_k" and runs[speed].isna().any():
        text.append(_("open markers at 0: diverged"))
    text = text or [_("no finished run")]
    # Above the plot area, never over a point: one line per correlation (and the markers' key).
    fig.add_annotation(text="<br>".join(text), showarrow=False, xref="paper", yref="paper", x=0, y=1,
                       xanchor="left", yanchor="bottom", align="left", bgcolor="rgba(255,255,255,0.85)",
                       bordercolor="#999", borderwidth=1, yshift=6)
    fig.update_layout(
        xaxis_title=_("final-layer cosine similarity at init (cos_sim)"),
        yaxis_title=speed_title, height=520 + 20 * len(text), uirevision=uirevision,
        legend_title_text=_("normalizer · net"), margin={"t": 24 + 20 * len(text)},
    )
    return shared_layout(fig)


CURVES = {"test_acc": N_("held-out accuracy"), "loss": N_("training loss (batch)"),  # y of the curves
          # a language model's (normlab.science.training: dataset text)
          "test_loss": N_("held-out loss (nats per byte)"), "test_bpb": N_("held-out bits per byte")}


def curves_figure(curves: pd.DataFrame, y: str, uirevision: str = "training-curves") -> go.Figure:
    """Held-out accuracy or training loss against step, one line per run, one panel per architecture."""
    archs = list(dict.fromkeys(curves["arch"]))
    quantity = _(CURVES[y])
    fig = make_subplots(rows=1, cols=len(archs), shared_yaxes=True,
                        subplot_titles=[arch_label(a) for a in archs])
    legend_seen = set()
    colors = variant_colors(curves)
    for col, arch in enumerate(archs, start=1):
        for (_english, norm, seed), run in curves[curves["arch"] == arch].groupby(["label", "norm", "seed"],
                                                                                 sort=False):
            label = _run_label(norm, run)
            run = run.dropna(subset=[y])
            fig.add_trace(go.Scatter(
                x=run["step"], y=run[y], mode="lines", name=label, legendgroup=label,
                showlegend=label not in legend_seen,
                line={"color": _color_of(colors, norm, run), "width": 1.5},
                hovertemplate=_("{label}, seed {seed}<br>step %{{x}}<br>{metric} %{{y:.3g}}"
                                "<extra></extra>").format(label=label, seed=seed, metric=quantity),
            ), row=1, col=col)
            legend_seen.add(label)
    fig.update_xaxes(title_text=_("step"))
    fig.update_yaxes(title_text=quantity, type="log" if y == "loss" else "linear", row=1, col=1)
    fig.update_layout(height=420, uirevision=uirevision, margin={"t": 40})
    return shared_layout(fig)
