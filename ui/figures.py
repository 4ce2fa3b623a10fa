"""Pure figure builders: a probe frame in, a plotly Figure out; no Streamlit call, no torch.

Every builder draws the seed mean as a line with a min-max band, colours a series by its normalizer (the
same colour on every page), shows exact values on hover, keeps the zoom across reruns through
``uirevision`` and draws overflowed (non-finite) points as triangles at the top of the axis with a note.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ui.measures import (
    BN_GRADIENT_RATE,
    aggregate,
    depth_rows,
    gradient_rates,
    growth,
    stage_starts,
)

# One fixed colour per normalizer (Tableau 10), so a normalizer looks the same on every page.
NORM_COLORS = {
    "batchnorm": "#1f77b4",
    "layernorm": "#d62728",
    "instancenorm": "#2ca02c",
    "groupnorm": "#9467bd",
    "frn": "#8c564b",
    "evonorm_b0": "#17becf",
    "evonorm_s0": "#bcbd22",
    "weightnorm": "#ff7f0e",
    "sws": "#e377c2",
    "none": "#4d4d4d",
}
FALLBACK_COLOR = "#999999"
# Series of the same normalizer that differ in another field (input, skipinit, ...) differ in dash.
DASHES = ("solid", "dot", "dashdot", "longdash")
OVERFLOW_NOTE = "▲ at the top: overflowed (inf/NaN) values"
METRIC_TITLES = {
    "act_var": "activation variance (act_var)",
    "act_sq_mean": "squared channel mean (act_sq_mean)",
    "res_var": "residual-branch variance (res_var)",
    "cos_sim": "cosine similarity (cos_sim)",
    "cos_sim_centered": "centered cosine similarity",
    "stable_rank": "stable rank",
    "effective_rank": "effective rank",
    "numerical_rank": "numerical rank",
    "grad_norm": "gradient norm ‖∂L/∂z‖",
    "gram_eigenvalue": "Gram eigenvalue",
}


def norm_color(norm: str) -> str:
    return NORM_COLORS.get(norm, FALLBACK_COLOR)


def _rgba(hex_color: str, alpha: float) -> str:
    r, g, b = (int(hex_color[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def _styles(stats: pd.DataFrame) -> dict[str, tuple[str, str]]:
    """(colour, dash) per series: colour from the normalizer, dash counting repeats of a normalizer."""
    seen: dict[str, int] = {}
    out = {}
    for series, norm in dict(zip(stats["series"], stats["norm"], strict=True)).items():
        k = seen.get(norm, 0)
        seen[norm] = k + 1
        out[series] = (norm_color(norm), DASHES[k % len(DASHES)])
    return out


def _empty(message: str, uirevision: str) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_layout(uirevision=uirevision, xaxis_visible=False, yaxis_visible=False, height=420)
    return fig


def _top(values: np.ndarray, log: bool) -> float:
    """A y position just above the finite data: where overflow markers sit."""
    finite = values[np.isfinite(values)]
    if log:
        finite = finite[finite > 0]
        return float(finite.max() * 3) if finite.size else 1.0
    if not finite.size:
        return 1.0
    span = float(finite.max() - finite.min()) or abs(float(finite.max())) or 1.0
    return float(finite.max() + 0.08 * span)


def _add_series(fig, rows, x, style, name, *, row=None, col=None, legend=True, unit="depth"):
    """Mean line, min-max band (several seeds) and hover for one series; returns its overflow rows."""
    color, dash = style
    rows = rows.sort_values(x)
    ok = rows[~rows["overflow"]]
    sub = {} if row is None else {"row": row, "col": col}
    if (ok["n"] > 1).any():
        fig.add_trace(go.Scatter(
            x=ok[x], y=ok["max"], mode="lines", line={"width": 0}, hoverinfo="skip",
            legendgroup=name, showlegend=False, name=name,
        ), **sub)
        fig.add_trace(go.Scatter(
            x=ok[x], y=ok["min"], mode="lines", line={"width": 0}, fill="tonexty",
            fillcolor=_rgba(color, 0.18), hoverinfo="skip", legendgroup=name, showlegend=False,
            name=f"{name} (min–max over seeds)",
        ), **sub)
    # NaN at overflowed points breaks the line there instead of joining across them.
    line = rows[[x, "mean", "min", "max", "n", "layer"]]
    fig.add_trace(go.Scatter(
        x=line[x], y=line["mean"], mode="lines+markers", name=name, legendgroup=name, showlegend=legend,
        line={"color": color, "dash": dash, "width": 2}, marker={"size": 5, "color": color},
        customdata=np.stack([line["layer"].astype(str), line["min"], line["max"], line["n"]], axis=-1),
        hovertemplate=(
            f"<b>{name}</b><br>{unit} %{{x}} · %{{customdata[0]}}<br>mean %{{y:.6g}}"
            "<br>min %{customdata[1]:.6g} · max %{customdata[2]:.6g} · seeds %{customdata[3]}"
            "<extra></extra>"
        ),
    ), **sub)
    return rows[rows["overflow"]]


def _add_overflow(fig, overflow, x, styles, top, *, row=None, col=None) -> bool:
    """Triangles at ``top`` for every overflowed point; True when any was drawn."""
    if overflow.empty:
        return False
    sub = {} if row is None else {"row": row, "col": col}
    for series, part in overflow.groupby("series", sort=False):
        color = styles.get(series, (FALLBACK_COLOR, "solid"))[0]
        fig.add_trace(go.Scatter(
            x=part[x], y=[top] * len(part), mode="markers", name=f"{series}: overflow",
            legendgroup=series, showlegend=False,
            marker={"symbol": "triangle-up", "size": 12, "color": color,
                    "line": {"width": 1, "color": "black"}},
            customdata=part["layer"].astype(str),
            hovertemplate=f"<b>{series}</b><br>%{{customdata}}: overflow (inf/NaN)<extra></extra>",
        ), **sub)
    return True


def _note_overflow(fig) -> None:
    fig.add_annotation(text=OVERFLOW_NOTE, showarrow=False, xref="paper", yref="paper", x=1, y=1.08,
                       xanchor="right", font={"color": "#b00020"})


def _finish(fig, uirevision: str, height: int = 460) -> go.Figure:
    fig.update_layout(
        uirevision=uirevision, height=height, hovermode="closest", margin={"t": 60, "r": 20, "b": 50},
        legend={"orientation": "h", "y": -0.18, "x": 0},
    )
    return fig


def _whole_ticks(fig, largest: float, **sub) -> None:
    """Depths, layers and eigenvalue ranks are whole numbers: ticks at integers, at most about a dozen."""
    if np.isfinite(largest):
        fig.update_xaxes(tick0=0, dtick=max(1, math.ceil(largest / 12)), **sub)


def _stage_lines(fig, stats, **sub) -> None:
    for x in stage_starts(stats):
        fig.add_vline(x=x, line={"dash": "dot", "color": "#888", "width": 1}, **sub)


def _theory_traces(fig, theory, styles, *, row=None, col=None) -> None:
    """Dashed theory curves; ``theory`` has columns series, x, y and source (the label)."""
    if theory is None or theory.empty:
        return
    sub = {} if row is None else {"row": row, "col": col}
    for (series, source), part in theory.groupby(["series", "source"], sort=False):
        color = styles.get(series, (FALLBACK_COLOR, "solid"))[0]
        fig.add_trace(go.Scatter(
            x=part["x"], y=part["y"], mode="lines", name=f"theory: {source}", legendgroup=series,
            line={"color": color, "dash": "dash", "width": 1.5}, opacity=0.8,
            hovertemplate=f"<b>{source}</b><br>%{{x}}: %{{y:.6g}}<extra>{series}</extra>",
        ), **sub)


def depth_figure(frame: pd.DataFrame, metric: str, *, log_y: bool = False, theory: pd.DataFrame | None = None,
                 annotate_growth: bool = False, uirevision: str = "depth") -> go.Figure:
    """``metric`` along depth per series (block outputs of a ResNet, else every layer's activation).

    Args:
        frame: a probe frame (several runs concatenated), raw seeds or already aggregated.
        metric: one of the probe metrics measured at act/block/res points.
        log_y: logarithmic y axis.
        theory: optional dashed curves, columns series, x, y, source.
        annotate_growth: write each series' growth per block on the plot.
        uirevision: zoom is kept across reruns while this string stays the same.
    """
    stats = frame if "mean" in frame else aggregate(frame)
    rows = depth_rows(stats, metric)
    if rows.empty:
        return _empty(f"No {metric} values in this run.", uirevision)
    styles = _styles(rows)
    fig = go.Figure()
    overflow = [
        _add_series(fig, part, "position", styles[series], series)
        for series, part in rows.groupby("series", sort=False)
    ]
    _theory_traces(fig, theory, styles)
    if _add_overflow(fig, pd.concat(overflow), "position", styles, _top(rows["max"].to_numpy(float), log_y)):
        _note_overflow(fig)
    _stage_lines(fig, rows)
    if annotate_growth:
        lines = []
        for series, part in rows.groupby("series", sort=False):
            part = part.sort_values("position")
            bad = part.loc[part["overflow"], "position"]
            finite = part[part["position"] < bad.min()] if len(bad) else part
            described = growth(finite["mean"]).describe()
            if len(bad):
                described = f"{described}, then overflow from {int(bad.min())}"
            lines.append(f"<span style='color:{styles[series][0]}'>■</span> {series}: {described}")
        fig.add_annotation(text="<br>".join(lines), showarrow=False, xref="paper", yref="paper", x=0.01,
                           y=0.99, xanchor="left", yanchor="top", align="left",
                           bgcolor="rgba(255,255,255,0.8)")
    fig.update_xaxes(title="depth (block)" if (rows["kind"] != "act").any() else "depth (layer)")
    _whole_ticks(fig, rows["position"].max())
    fig.update_yaxes(title=METRIC_TITLES.get(metric, metric), type="log" if log_y else "linear")
    return _finish(fig, uirevision)


def rank_figure(frame: pd.DataFrame, *, ceiling: int | None = None, uirevision: str = "rank") -> go.Figure:
    """Two panels along depth: cosine similarity (uncentered solid, centered dotted) and the three ranks.

    Args:
        ceiling: min(batch, features); drawn as a line on the rank panel since no rank can exceed it.
    """
    stats = frame if "mean" in frame else aggregate(frame)
    fig = make_subplots(rows=1, cols=2, subplot_titles=(
        "cosine similarity between samples (lower = more distinct)", "rank of the representation"))
    styles = _styles(stats)
    overflow = []
    drawn = False
    for col, metrics in ((1, ("cos_sim", "cos_sim_centered")), (2, ("stable_rank", "effective_rank",
                                                                     "numerical_rank"))):
        for k, metric in enumerate(metrics):
            rows = depth_rows(stats, metric)
            for series, part in rows.groupby("series", sort=False):
                color = styles[series][0]
                name = f"{series} · {METRIC_TITLES[metric]}" if k or col == 2 else series
                overflow.append(_add_series(fig, part, "position", (color, DASHES[k]), name, row=1, col=col,
                                            legend=True)
                                .assign(_col=col))
                drawn = True
            _stage_lines(fig, rows, row=1, col=col)
    if not drawn:
        return _empty("No similarity or rank values in this run.", uirevision)
    if overflow:
        over = pd.concat(overflow)
        for col in (1, 2):
            part = over[over["_col"] == col]
            if _add_overflow(fig, part, "position", styles, 1.05 if col == 1 else (ceiling or 1) * 1.05,
                             row=1, col=col):
                _note_overflow(fig)
    if ceiling:
        fig.add_hline(y=ceiling, line={"dash": "dash", "color": "#444"}, row=1, col=2,
                      annotation_text=f"ceiling min(batch, features) = {ceiling}",
                      annotation_position="bottom right")
    fig.update_yaxes(title="cos_sim", range=[-0.05, 1.05], row=1, col=1)
    fig.update_yaxes(title="rank", row=1, col=2)
    fig.update_xaxes(title="depth")
    _whole_ticks(fig, stats.loc[stats["kind"] != "spectrum", "index"].max() + 1)
    return _finish(fig, uirevision, height=500)


def spectrum_figure(frame: pd.DataFrame, *, ceiling: int | None = None, log_y: bool = True,
                    uirevision: str = "spectrum") -> go.Figure:
    """Eigenvalues of the final features' Gram matrix by rank k (1 = largest)."""
    stats = frame if "mean" in frame else aggregate(frame)
    rows = stats[(stats["metric"] == "gram_eigenvalue") & (stats["kind"] == "spectrum")]
    if rows.empty:
        return _empty("No eigen-spectrum in this run.", uirevision)
    rows = rows.assign(k=rows["index"] + 1)
    styles = _styles(rows)
    fig = go.Figure()
    overflow = [_add_series(fig, part, "k", styles[s], s, unit="k")
                for s, part in rows.groupby("series", sort=False)]
    if _add_overflow(fig, pd.concat(overflow), "k", styles, _top(rows["max"].to_numpy(float), log_y)):
        _note_overflow(fig)
    if ceiling:
        fig.add_vline(x=ceiling, line={"dash": "dash", "color": "#444"},
                      annotation_text=f"min(batch, features) = {ceiling}", annotation_position="top left")
    fig.update_xaxes(title="eigenvalue rank k (1 = largest)")
    _whole_ticks(fig, rows["k"].max())
    fig.update_yaxes(title="eigenvalue of the final features' Gram matrix", type="log" if log_y else "linear")
    return _finish(fig, uirevision)


def gradient_figure(frame: pd.DataFrame, *, log_y: bool = True, theory: pd.DataFrame | None = None,
                    reference_rate: float | None = None, uirevision: str = "gradients") -> go.Figure:
    """Gradient norm per conv/linear output (top) and the per-layer rate toward the input (bottom).

    Args:
        theory: optional dashed curves on the top panel (columns series, x, y, source; x = layer index).
        reference_rate: a horizontal reference on the rate panel, e.g. √(π/(π−1)) for BatchNorm + ReLU.
    """
    stats = frame if "mean" in frame else aggregate(frame)
    rows = stats[(stats["metric"] == "grad_norm") & (stats["kind"] == "conv")]
    if rows.empty:
        return _empty("No gradient norms in this run.", uirevision)
    rows = rows.assign(position=rows["index"] + 1)
    styles = _styles(rows)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.65, 0.35], vertical_spacing=0.06,
                        subplot_titles=("gradient norm at each conv/linear output",
                                        "per-layer rate ‖g_l‖ / ‖g_(l+1)‖ (> 1: grows toward the input)"))
    overflow = [
        _add_series(fig, part, "position", styles[s], s, row=1, col=1, unit="layer")
        for s, part in rows.groupby("series", sort=False)
    ]
    _theory_traces(fig, theory, styles, row=1, col=1)
    if _add_overflow(fig, pd.concat(overflow), "position", styles, _top(rows["max"].to_numpy(float), log_y),
                     row=1, col=1):
        _note_overflow(fig)
    rates = gradient_rates(rows)
    for series, part in rates.groupby("series", sort=False):
        color, dash = styles[series]
        fig.add_trace(go.Scatter(
            x=part["index"] + 1, y=part["rate"], mode="lines+markers", name=f"{series}: rate",
            legendgroup=series, showlegend=False, line={"color": color, "dash": dash},
            customdata=part["layer"], hovertemplate=(
                f"<b>{series}</b><br>layer %{{x}} · %{{customdata}}<br>rate %{{y:.6g}}<extra></extra>"),
        ), row=2, col=1)
    if reference_rate is not None:
        fig.add_hline(y=reference_rate, line={"dash": "dash", "color": "#1f77b4"}, row=2, col=1,
                      annotation_text=f"√(π/(π−1)) ≈ {reference_rate:.3f} (Yang et al. 2019)"
                      if math.isclose(reference_rate, BN_GRADIENT_RATE) else f"{reference_rate:.3g}",
                      annotation_position="top left")
    fig.add_hline(y=1, line={"dash": "dot", "color": "#888", "width": 1}, row=2, col=1)
    fig.update_yaxes(title="‖∂L/∂z‖", type="log" if log_y else "linear", row=1, col=1)
    fig.update_yaxes(title="rate", row=2, col=1)
    fig.update_xaxes(title="layer (conv/linear outputs in forward order; last = classifier)", row=2, col=1)
    _whole_ticks(fig, rows["position"].max())
    return _finish(fig, uirevision, height=620)


def tradeoff_figure(points: pd.DataFrame, *, log_y: bool = True, uirevision: str = "tradeoff") -> go.Figure:
    """The speed-stability trade-off: final similarity (x) against early-layer gradient growth (y).

    Args:
        points: one row per group count with columns groups, group_size, cos_sim, cos_min, cos_max,
            grad_growth, grad_min, grad_max, label (see ``ui.measures``' sweep reading in the page).
    """
    if points.empty:
        return _empty("Run the sweep to see the trade-off.", uirevision)
    points = points.sort_values("group_size")
    fig = go.Figure()
    finite = points[np.isfinite(points["grad_growth"]) & np.isfinite(points["cos_sim"])]
    fig.add_trace(go.Scatter(
        x=finite["cos_sim"], y=finite["grad_growth"], mode="lines+markers+text", text=finite["label"],
        textposition="top center", name="GroupNorm, one point per group count",
        line={"color": norm_color("groupnorm"), "width": 1.5},
        marker={"size": 12, "color": np.log2(finite["group_size"].astype(float)), "colorscale": "Viridis",
                "showscale": True, "colorbar": {"title": "log₂ group size"}},
        error_x={"type": "data", "symmetric": False, "array": finite["cos_max"] - finite["cos_sim"],
                 "arrayminus": finite["cos_sim"] - finite["cos_min"], "thickness": 1},
        error_y={"type": "data", "symmetric": False, "array": finite["grad_max"] - finite["grad_growth"],
                 "arrayminus": finite["grad_growth"] - finite["grad_min"], "thickness": 1},
        customdata=np.stack([finite["groups"], finite["group_size"]], axis=-1),
        hovertemplate=("G=%{customdata[0]} (group size %{customdata[1]})<br>final cos_sim %{x:.6g}"
                       "<br>gradient growth %{y:.6g}<extra></extra>"),
    ))
    bad = points.drop(finite.index)
    if not bad.empty:
        fig.add_trace(go.Scatter(
            x=bad["cos_sim"].where(np.isfinite(bad["cos_sim"]), 1.0),
            y=[_top(points["grad_growth"].to_numpy(float), log_y)] * len(bad), mode="markers+text",
            text=bad["label"], name="overflow",
            marker={"symbol": "triangle-up", "size": 12, "color": "#b00020"},
            hovertemplate="%{text}: overflow (inf/NaN)<extra></extra>",
        ))
        _note_overflow(fig)
    fig.add_annotation(text="← more informative features · more stable gradients ↓", showarrow=False,
                       xref="paper", yref="paper", x=0, y=-0.16, xanchor="left")
    fig.update_xaxes(title="final-layer cosine similarity (higher = representations collapse)")
    fig.update_yaxes(title="gradient growth: ‖g‖ first layer / ‖g‖ last hidden layer",
                     type="log" if log_y else "linear")
    return _finish(fig, uirevision, height=520)


def bar_figure(values: pd.Series, stats: pd.DataFrame, title: str, *, log_y: bool = False,
               uirevision: str = "bars") -> go.Figure:
    """One bar per series (a number per run, e.g. gradient growth), coloured by its normalizer.

    Args:
        values: series label -> value; non-finite values are drawn as overflow markers.
        stats: the seed statistics the values came from (for each series' normalizer).
    """
    if values.empty:
        return _empty("Nothing to compare.", uirevision)
    styles = _styles(stats[stats["series"].isin(values.index)])
    finite = values[np.isfinite(values.to_numpy(dtype=float))]
    fig = go.Figure(go.Bar(
        x=list(finite.index), y=finite.to_numpy(dtype=float),
        marker={"color": [styles.get(s, (FALLBACK_COLOR, ""))[0] for s in finite.index]},
        text=[f"{v:.3g}" for v in finite], textposition="outside", name=title,
        hovertemplate="<b>%{x}</b><br>%{y:.6g}<extra></extra>",
    ))
    bad = values.drop(finite.index)
    if not bad.empty:
        fig.add_trace(go.Scatter(
            x=list(bad.index), y=[_top(values.to_numpy(dtype=float), log_y)] * len(bad), mode="markers",
            marker={"symbol": "triangle-up", "size": 12, "color": "#b00020"}, name="overflow",
            hovertemplate="<b>%{x}</b><br>overflow (inf/NaN)<extra></extra>",
        ))
        _note_overflow(fig)
    fig.update_yaxes(title=title, type="log" if log_y else "linear")
    fig.update_layout(showlegend=False)
    return _finish(fig, uirevision, height=420)


def overview_figure(frame: pd.DataFrame, *, uirevision: str = "overview") -> go.Figure:
    """The three properties side by side: variance growth, similarity, gradient norms (log axes)."""
    stats = frame if "mean" in frame else aggregate(frame)
    if stats.empty:
        return _empty("Nothing measured yet.", uirevision)
    fig = make_subplots(rows=1, cols=3, subplot_titles=(
        "1 · variance growth (act_var)", "2 · rank collapse (cos_sim)", "3 · gradients (grad_norm)"))
    styles = _styles(stats)
    overflow = []
    panels = (("act_var", 1, True), ("cos_sim", 2, False))
    for metric, col, log in panels:
        rows = depth_rows(stats, metric)
        for series, part in rows.groupby("series", sort=False):
            overflow.append(_add_series(fig, part, "position", styles[series], series, row=1, col=col,
                                        legend=col == 1).assign(_col=col))
        _stage_lines(fig, rows, row=1, col=col)
        fig.update_yaxes(type="log" if log else "linear", row=1, col=col)
    grads = stats[(stats["metric"] == "grad_norm") & (stats["kind"] == "conv")]
    grads = grads.assign(position=grads["index"] + 1)
    for series, part in grads.groupby("series", sort=False):
        overflow.append(_add_series(fig, part, "position", styles[series], series, row=1, col=3, legend=False,
                                    unit="layer").assign(_col=3))
    fig.update_yaxes(type="log", row=1, col=3)
    if overflow:
        over = pd.concat(overflow)
        tops = {1: _top(depth_rows(stats, "act_var")["max"].to_numpy(float), True), 2: 1.05,
                3: _top(grads["max"].to_numpy(float), True)}
        noted = False
        for col in (1, 2, 3):
            part = over[over["_col"] == col]
            noted |= _add_overflow(fig, part, "position", styles, tops[col], row=1, col=col)
        if noted:
            _note_overflow(fig)
    fig.update_xaxes(title="depth", row=1, col=1)
    fig.update_xaxes(title="depth", row=1, col=2)
    fig.update_xaxes(title="conv/linear layer", row=1, col=3)
    return _finish(fig, uirevision, height=430)


def lecture_style(fig: go.Figure, scale: float = 1.5) -> go.Figure:
    """Larger fonts, thicker lines and a taller plot for a room: the same figure, restyled."""
    fig.update_layout(font={"size": round(14 * scale)}, height=round((fig.layout.height or 460) * 1.3))
    fig.update_traces(line_width=3, selector={"mode": "lines+markers"})
    # Notes on the plot grow less than the axes, so they do not cover the lines.
    fig.update_annotations(font_size=round(12 * (1 + (scale - 1) / 2)))
    return fig


# --- The training page: its runs' similarity at init against their training speed -----------------------

ARCH_SYMBOLS = {"cnn": "circle", "resnet": "diamond", "mlp": "square"}
ARCH_LABELS = {"cnn": "plain CNN", "resnet": "ResNet", "mlp": "MLP", "all": "both nets pooled"}
SPEEDS = {"acc_at_k": "held-out accuracy after k steps", "steps_to_target": "steps to the target accuracy"}


def similarity_speed_figure(runs: pd.DataFrame, correlations: pd.DataFrame, speed: str, steps: int,
                            uirevision: str = "training") -> go.Figure:
    """cos_sim at init (x) against training speed (y), one point per run, coloured by normalizer.

    Diverged runs (acc_at_k) sit at 0 and runs that never reach the target (steps_to_target) on a line
    above the last step, both drawn as open markers; the correlations are written on the figure.
    """
    fig = go.Figure()
    level = steps * 1.08  # a row above the last step for runs that never reach the target
    for (arch, norm, label), part in runs.groupby(["arch", "norm", "label"], sort=False):
        y = part[speed].to_numpy(dtype=float)
        missing = np.isnan(y)
        shown = np.where(missing, 0.0 if speed == "acc_at_k" else level, y)
        fig.add_trace(go.Scatter(
            x=part["cos_sim_init"], y=shown, mode="markers", name=f"{label} · {ARCH_LABELS[arch]}",
            legendgroup=label,
            marker={"color": norm_color(norm), "size": 11,
                    "symbol": [ARCH_SYMBOLS.get(arch, "circle") + ("-open" if m else "") for m in missing],
                    "line": {"width": 1, "color": "white"}},
            customdata=np.stack([part["seed"], part["final_test_acc"], part["diverged"]], axis=1),
            hovertemplate=(f"<b>{label}</b> ({ARCH_LABELS[arch]}), seed %{{customdata[0]}}<br>"
                           "cos_sim at init %{x:.3f}<br>" + SPEEDS[speed] + " %{y:.3g}<br>"
                           "final accuracy %{customdata[1]:.3f}<br>diverged %{customdata[2]}<extra></extra>"),
        ))
    text = []
    for row in correlations[correlations["speed"] == speed].itertuples():
        name = ARCH_LABELS.get(row.arch, row.arch)
        if not math.isnan(row.rho):
            text.append(f"{name}: Spearman ρ = {row.rho:+.2f} [{row.lo:+.2f}, {row.hi:+.2f}], n = {row.n}")
        else:  # fewer than two runs, or one side constant (e.g. no run reached the target)
            text.append(f"{name}: no rank correlation (n = {row.n}; one side does not vary)")
    fig.add_annotation(text="<br>".join(text) or "no finished run", showarrow=False,
                       xref="paper", yref="paper", x=0.01, y=0.99, xanchor="left", yanchor="top",
                       align="left", bgcolor="rgba(255,255,255,0.85)", bordercolor="#999", borderwidth=1)
    if speed == "steps_to_target" and runs[speed].isna().any():
        fig.add_hline(y=level, line_dash="dot", line_color="#999",
                      annotation_text="never reached (open markers)", annotation_position="bottom right")
    if speed == "acc_at_k" and runs[speed].isna().any():
        fig.add_annotation(text="open markers at 0: diverged", showarrow=False, xref="paper", yref="paper",
                           x=0.99, y=0.01, xanchor="right", yanchor="bottom")
    fig.update_layout(
        xaxis_title="final-layer cosine similarity at init (cos_sim)",
        yaxis_title=SPEEDS[speed], height=520, uirevision=uirevision, legend_title_text="normalizer · net",
        margin={"t": 30},
    )
    return fig


def curves_figure(curves: pd.DataFrame, y: str, uirevision: str = "training-curves") -> go.Figure:
    """Held-out accuracy or training loss against step, one line per run, one panel per architecture."""
    archs = list(dict.fromkeys(curves["arch"]))
    fig = make_subplots(rows=1, cols=len(archs), shared_yaxes=True,
                        subplot_titles=[ARCH_LABELS.get(a, a) for a in archs])
    legend_seen = set()
    for col, arch in enumerate(archs, start=1):
        for (label, norm, seed), run in curves[curves["arch"] == arch].groupby(["label", "norm", "seed"],
                                                                              sort=False):
            run = run.dropna(subset=[y])
            fig.add_trace(go.Scatter(
                x=run["step"], y=run[y], mode="lines", name=label, legendgroup=label,
                showlegend=label not in legend_seen, line={"color": norm_color(norm), "width": 1.5},
                hovertemplate=f"{label}, seed {seed}<br>step %{{x}}<br>{y} %{{y:.3g}}<extra></extra>",
            ), row=1, col=col)
            legend_seen.add(label)
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(title_text={"test_acc": "held-out accuracy", "loss": "training loss (batch)"}[y],
                     type="log" if y == "loss" else "linear", row=1, col=1)
    fig.update_layout(height=420, uirevision=uirevision, margin={"t": 40})
    return fig
