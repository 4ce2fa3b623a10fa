"""The depth figures of the overview, variance, rank and gradient pages and the claims: a metric per
layer or block, seed mean with a min-max band, the bars and the Play-through-depth animation.

Pure builders: frames in, plotly Figures out; no Streamlit call, no torch.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from normlab.core import catalog
from normlab.science import summary
from ui.figures.measures import (
    BN_GRADIENT_RATE,
    aggregate,
    depth_rows,
    describe_growth,
    gradient_rates,
)
from ui.figures.style import (
    DASHES,
    FALLBACK_COLOR,
    add_note,
    add_overflow,
    add_series,
    axis_values,
    empty_figure,
    finish_figure,
    metric_title,
    note_overflow,
    overflow_top,
    series_styles,
    stage_lines,
    theory_traces,
    whole_ticks,
)
from ui.state.i18n import _

CEILING_REACH = 2  # the rank ceiling is drawn when it is at most this many times the highest value


def is_token_frame(stats: pd.DataFrame) -> bool:
    """Whether the frame's runs are of a token family (a transformer: its depth is counted in blocks)."""
    if "arch" not in stats:
        return False
    tokens = [name for name, info in catalog.ARCHITECTURES.items() if info.tokens]
    return bool(stats["arch"].isin(tokens).any())


def depth_figure(frame: pd.DataFrame, metric: str, *, log_y: bool = False, theory: pd.DataFrame | None = None,
                 annotate_growth: bool = False, ceiling: int | None = None,
                 uirevision: str = "depth") -> go.Figure:
    """``metric`` along depth per series (block outputs of a ResNet, else every layer's activation).

    Args:
        frame: a probe frame (several runs concatenated), raw seeds or already aggregated.
        metric: one of the probe metrics measured at act/block/res points.
        log_y: logarithmic y axis.
        theory: optional dashed curves, columns series, x, y, source.
        annotate_growth: write each series' growth per block above the plot.
        ceiling: min(batch, features) for a rank metric, drawn dashed (no rank can exceed it) when the
            values reach half of it; else named in a note, so the axis fits the values.
        uirevision: zoom is kept across reruns while this string stays the same.
    """
    stats = frame if "mean" in frame else aggregate(frame)
    rows = depth_rows(stats, metric)
    if rows.empty:
        return empty_figure(_("No {metric} values in this run.").format(metric=metric), uirevision)
    styles = series_styles(rows)
    fig = go.Figure()
    overflow = [
        add_series(fig, part, "position", styles[series], series)
        for series, part in rows.groupby("series", sort=False)
    ]
    theory_traces(fig, theory, styles)
    top = overflow_top(rows["max"].to_numpy(float), log_y)
    if add_overflow(fig, pd.concat(overflow), "position", styles, top):
        note_overflow(fig)
    stage_lines(fig, rows)
    if ceiling:
        highest = rows["max"].to_numpy(float)
        highest = highest[np.isfinite(highest)]
        if not highest.size or ceiling <= CEILING_REACH * highest.max():
            fig.add_hline(y=ceiling, line={"dash": "dash", "color": "#444"})
            add_note(fig, _("grey dashed: ceiling min(batch, features) = {ceiling}").format(ceiling=ceiling))
        else:  # drawn, it would squash every line flat at the bottom of the axis
            add_note(fig, _("ceiling min(batch, features) = {ceiling}: far above these values, so not drawn "
                            "and the axis fits them").format(ceiling=ceiling))
    if annotate_growth:
        for series, part in rows.groupby("series", sort=False):
            part = part.sort_values("position")
            bad = part.loc[part["overflow"], "position"]
            finite = part[part["position"] < bad.min()] if len(bad) else part
            described = describe_growth(summary.depth_growth(finite, "mean"))
            if len(bad):
                described = _("{growth}, then overflow from {depth}").format(growth=described,
                                                                            depth=int(bad.min()))
            add_note(fig, f"<span style='color:{styles[series][0]}'>■</span> {series}: {described}")
    fig.update_xaxes(title=_("depth (block)") if (rows["kind"] != "act").any() else _("depth (layer)"))
    whole_ticks(fig, rows["position"].max())
    fig.update_yaxes(title=metric_title(metric), type="log" if log_y else "linear")
    return finish_figure(fig, uirevision)


def rank_figure(frame: pd.DataFrame, *, ceiling: int | None = None, uirevision: str = "rank") -> go.Figure:
    """Two panels along depth: cosine similarity and the three ranks.

    The centered cosine is not drawn: it is about −1/(N−1) for any network (the rank page says why), below
    the similarity axis.

    Args:
        ceiling: min(batch, features); drawn as a line on the rank panel since no rank can exceed it.
    """
    stats = frame if "mean" in frame else aggregate(frame)
    fig = make_subplots(rows=1, cols=2, subplot_titles=(
        _("cosine similarity between samples (lower = more distinct)"), _("rank of the representation")))
    styles = series_styles(stats)
    overflow = []
    drawn = False
    for col, metrics in ((1, ("cos_sim",)), (2, ("stable_rank", "effective_rank",
                                                                     "numerical_rank"))):
        for k, metric in enumerate(metrics):
            rows = depth_rows(stats, metric)
            for series, part in rows.groupby("series", sort=False):
                color = styles[series][0]
                name = f"{series} · {metric_title(metric)}" if k or col == 2 else series
                overflow.append(add_series(fig, part, "position", (color, DASHES[k]), name, row=1, col=col,
                                            legend=True)
                                .assign(_col=col))
                drawn = True
            stage_lines(fig, rows, row=1, col=col)
    if not drawn:
        return empty_figure(_("No similarity or rank values in this run."), uirevision)
    if overflow:
        over = pd.concat(overflow)
        for col in (1, 2):
            part = over[over["_col"] == col]
            if add_overflow(fig, part, "position", styles, 1.05 if col == 1 else (ceiling or 1) * 1.05,
                             row=1, col=col):
                note_overflow(fig)
    if ceiling:
        fig.add_hline(y=ceiling, line={"dash": "dash", "color": "#444"}, row=1, col=2)
        add_note(fig, _("grey dashed: ceiling min(batch, features) = {ceiling}").format(ceiling=ceiling))
    fig.update_yaxes(title="cos_sim", range=[-0.05, 1.05], row=1, col=1)
    fig.update_yaxes(title=_("rank"), row=1, col=2)
    fig.update_xaxes(title=_("depth"))
    whole_ticks(fig, stats.loc[stats["kind"] != "spectrum", "index"].max() + 1)
    return finish_figure(fig, uirevision, height=500)


def spectrum_figure(frame: pd.DataFrame, *, ceiling: int | None = None, log_y: bool = True,
                    uirevision: str = "spectrum") -> go.Figure:
    """Eigenvalues of the final features' Gram matrix by rank k (1 = largest)."""
    stats = frame if "mean" in frame else aggregate(frame)
    rows = stats[(stats["metric"] == "gram_eigenvalue") & (stats["kind"] == "spectrum")]
    if rows.empty:
        return empty_figure(_("No eigen-spectrum in this run."), uirevision)
    rows = rows.assign(k=rows["index"] + 1)
    styles = series_styles(rows)
    fig = go.Figure()
    overflow = [add_series(fig, part, "k", styles[s], s, unit="k")
                for s, part in rows.groupby("series", sort=False)]
    if add_overflow(fig, pd.concat(overflow), "k", styles, overflow_top(rows["max"].to_numpy(float), log_y)):
        note_overflow(fig)
    if ceiling:
        fig.add_vline(x=ceiling, line={"dash": "dash", "color": "#444"})
        add_note(fig, _("grey dashed: min(batch, features) = {ceiling}").format(ceiling=ceiling))
    fig.update_xaxes(title=_("eigenvalue rank k (1 = largest)"))
    whole_ticks(fig, rows["k"].max())
    fig.update_yaxes(title=_("eigenvalue of the final features' Gram matrix"),
                     type="log" if log_y else "linear")
    return finish_figure(fig, uirevision)


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
        return empty_figure(_("No gradient norms in this run."), uirevision)
    rows = rows.assign(position=rows["index"] + 1)
    styles = series_styles(rows)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.65, 0.35], vertical_spacing=0.06,
                        subplot_titles=(_("gradient norm at each conv/linear output"),
                                        _("per-layer rate ‖g_l‖ / ‖g_(l+1)‖ (> 1: grows toward the input)")))
    overflow = [
        add_series(fig, part, "position", styles[s], s, row=1, col=1, unit=_("layer"))
        for s, part in rows.groupby("series", sort=False)
    ]
    theory_traces(fig, theory, styles, row=1, col=1)
    top = overflow_top(rows["max"].to_numpy(float), log_y)
    if add_overflow(fig, pd.concat(overflow), "position", styles, top, row=1, col=1):
        note_overflow(fig)
    rates = gradient_rates(rows)
    for series, part in rates.groupby("series", sort=False):
        color, dash = styles[series]
        fig.add_trace(go.Scatter(
            x=part["index"] + 1, y=part["rate"], mode="lines+markers",
            name=_("{series}: rate").format(series=series),
            legendgroup=series, showlegend=False, line={"color": color, "dash": dash},
            customdata=part["layer"], hovertemplate=_(
                "<b>{series}</b><br>layer %{{x}} · %{{customdata}}<br>rate %{{y:.6g}}<extra></extra>"
            ).format(series=series),
        ), row=2, col=1)
    if reference_rate is not None:
        fig.add_hline(y=reference_rate, line={"dash": "dash", "color": "#1f77b4"}, row=2, col=1)
        if math.isclose(reference_rate, BN_GRADIENT_RATE):
            note = _("blue dashed (rate panel): √(π/(π−1)) ≈ {rate} per layer, BatchNorm + ReLU "
                     "(Yang et al. 2019)").format(rate=f"{reference_rate:.3f}")
        else:
            note = _("blue dashed (rate panel): {rate}").format(rate=f"{reference_rate:.3g}")
        add_note(fig, note)
    fig.add_hline(y=1, line={"dash": "dot", "color": "#888", "width": 1}, row=2, col=1)
    fig.update_yaxes(title="‖∂L/∂z‖", type="log" if log_y else "linear", row=1, col=1)
    fig.update_yaxes(title=_("rate"), row=2, col=1)
    fig.update_xaxes(title=_("linear map (W_Q, W_K, W_V, W_O, W_1, W_2 of each block in order; last = head)")
                     if is_token_frame(stats) else
                     _("layer (conv/linear outputs in forward order; last = classifier)"), row=2, col=1)
    whole_ticks(fig, rows["position"].max())
    return finish_figure(fig, uirevision, height=620)


def bar_figure(values: pd.Series, stats: pd.DataFrame, title: str, *, log_y: bool = False,
               uirevision: str = "bars") -> go.Figure:
    """One bar per series (a number per run, e.g. gradient growth), coloured by its normalizer.

    Args:
        values: series label -> value; non-finite values are drawn as overflow markers.
        stats: the seed statistics the values came from (for each series' normalizer).
    """
    if values.empty:
        return empty_figure(_("Nothing to compare."), uirevision)
    styles = series_styles(stats[stats["series"].isin(values.index)])
    finite = values[np.isfinite(values.to_numpy(dtype=float))]
    colors = [styles.get(s, (FALLBACK_COLOR, ""))[0] for s in finite.index]
    text = [f"{v:.3g}" for v in finite]
    hover = "<b>%{x}</b><br>%{y:.6g}<extra></extra>"
    if log_y:  # a bar's length means nothing on a log axis: one point per series, and the ratio 1 marked
        fig = go.Figure(go.Scatter(
            x=list(finite.index), y=finite.to_numpy(dtype=float), mode="markers+text", name=title,
            marker={"color": colors, "size": 16, "line": {"width": 1, "color": "black"}}, text=text,
            textposition="middle right", cliponaxis=False, hovertemplate=hover,
        ))
        fig.add_hline(y=1, line={"dash": "dot", "color": "#888", "width": 1})
    else:
        fig = go.Figure(go.Bar(
            x=list(finite.index), y=finite.to_numpy(dtype=float), marker={"color": colors}, text=text,
            textposition="outside", cliponaxis=False, name=title, hovertemplate=hover,
        ))
    bad = values.drop(finite.index)
    if not bad.empty:
        fig.add_trace(go.Scatter(
            x=list(bad.index), y=[overflow_top(values.to_numpy(dtype=float), log_y)] * len(bad),
            mode="markers",
            marker={"symbol": "triangle-up", "size": 12, "color": "#b00020"}, name=_("overflow"),
            hovertemplate=_("<b>%{x}</b><br>overflow (inf/NaN)<extra></extra>"),
        ))
        note_overflow(fig)
    fig.update_yaxes(title=title, type="log" if log_y else "linear")
    fig.update_layout(showlegend=False)
    return finish_figure(fig, uirevision, height=420)


def overview_figure(frame: pd.DataFrame, *, similarity: str = "cos_sim",
                    uirevision: str = "overview") -> go.Figure:
    """The three properties side by side: variance growth, similarity, gradient norms (log axes).

    Args:
        similarity: the rank-collapse panel's measure: ``cos_sim`` between samples, or ``token_cos_sim``
            between a sequence's tokens (a transformer's).
    """
    stats = frame if "mean" in frame else aggregate(frame)
    if stats.empty:
        return empty_figure(_("Nothing measured yet."), uirevision)
    fig = make_subplots(rows=1, cols=3, subplot_titles=(
        _("1 · variance growth (act_var)"), _("2 · rank collapse ({metric})").format(metric=similarity),
        _("3 · gradients (grad_norm)")))
    styles = series_styles(stats)
    overflow = []
    panels = (("act_var", 1, True), (similarity, 2, False))
    for metric, col, log in panels:
        rows = depth_rows(stats, metric)
        for series, part in rows.groupby("series", sort=False):
            overflow.append(add_series(fig, part, "position", styles[series], series, row=1, col=col,
                                        legend=col == 1).assign(_col=col))
        stage_lines(fig, rows, row=1, col=col)
        fig.update_yaxes(type="log" if log else "linear", row=1, col=col)
    grads = stats[(stats["metric"] == "grad_norm") & (stats["kind"] == "conv")]
    grads = grads.assign(position=grads["index"] + 1)
    for series, part in grads.groupby("series", sort=False):
        overflow.append(add_series(fig, part, "position", styles[series], series, row=1, col=3, legend=False,
                                    unit=_("layer")).assign(_col=3))
    fig.update_yaxes(type="log", row=1, col=3)
    if overflow:
        over = pd.concat(overflow)
        tops = {1: overflow_top(depth_rows(stats, "act_var")["max"].to_numpy(float), True), 2: 1.05,
                3: overflow_top(grads["max"].to_numpy(float), True)}
        noted = False
        for col in (1, 2, 3):
            part = over[over["_col"] == col]
            noted |= add_overflow(fig, part, "position", styles, tops[col], row=1, col=col)
        if noted:
            note_overflow(fig)
    blocks = is_token_frame(stats)  # a transformer's depth counts its blocks
    fig.update_xaxes(title=_("block") if blocks else _("depth"), row=1, col=1)
    fig.update_xaxes(title=_("block") if blocks else _("depth"), row=1, col=2)
    fig.update_xaxes(title=_("conv/linear layer"), row=1, col=3)
    return finish_figure(fig, uirevision, height=430)


# ---------------------------------------------------------------------------------------------
# Motion: Play / slider controls over plotly animation frames (no recomputation per frame)

MAX_FRAMES = 40  # frames per animation: enough to watch depth grow, small enough to ship quickly
FRAME_MS = 450


def play_controls(fig: go.Figure, names: list[str], labels: list[str], prefix: str, active: int) -> None:
    """A Play / Pause pair and a slider over the frames ``names`` (labelled ``labels``, the current one
    after ``prefix``)."""
    step_args = {"mode": "immediate", "frame": {"duration": 0, "redraw": True}, "transition": {"duration": 0}}
    fig.update_layout(
        updatemenus=[{
            "type": "buttons", "direction": "left", "showactive": False, "x": 0, "y": 0, "xanchor": "left",
            "yanchor": "top", "pad": {"t": 70, "r": 10},
            "buttons": [
                {"label": _("▶ Play"), "method": "animate",
                 "args": [None, {"frame": {"duration": FRAME_MS, "redraw": True}, "fromcurrent": False,
                                 "transition": {"duration": 0}, "mode": "immediate"}]},
                {"label": _("❚❚ Pause"), "method": "animate", "args": [[None], step_args]},
            ],
        }],
        sliders=[{
            "active": active, "x": 0.22, "len": 0.78, "y": 0, "yanchor": "top", "pad": {"t": 60},
            "currentvalue": {"prefix": prefix, "visible": True, "xanchor": "left"},
            "steps": [{"label": label, "method": "animate", "args": [[name], step_args]}
                      for name, label in zip(names, labels, strict=True)],
        }],
    )


def frame_positions(positions, cap: int = MAX_FRAMES) -> list[int]:
    """At most ``cap`` of the sorted distinct positions, evenly spread, first and last kept."""
    values = sorted({int(p) for p in positions if np.isfinite(p)})
    if len(values) <= cap:
        return values
    return [values[round(i * (len(values) - 1) / (cap - 1))] for i in range(cap)]


def grow_with_depth(fig: go.Figure, label: str | None = None) -> go.Figure:
    """Animation frames that draw every trace up to depth k, k growing: the network built block by block.

    ``label`` is the slider's prefix (default "depth ", in the session's language).

    The frames reuse the figure's own traces (their x is the depth), so nothing is measured again; the
    axes keep the full figure's ranges so the curve grows into a fixed frame. Stage lines and notes stay.
    """
    xs = np.concatenate([np.asarray(t.x, dtype=float) for t in fig.data if t.x is not None] or [np.zeros(0)])
    steps = frame_positions(xs)
    if len(steps) < 2:
        return fig
    for key in list(fig.layout.to_plotly_json()):  # freeze every axis at the whole figure's extent
        if key.startswith(("xaxis", "yaxis")):
            letter, ref = key[0], key[0] + key[5:]
            values = axis_values(fig, ref, letter)
            axis = fig.layout[key]
            if not values.size or axis.range is not None:
                continue
            log = axis.type == "log"
            values = values[values > 0] if log else values
            if not values.size:
                continue
            low, high = values.min(), values.max()
            if log:
                low, high = np.log10(low), np.log10(high)
            pad = 0.05 * (high - low or 1.0)
            axis.update(range=[low - pad, high + pad], autorange=False)
    frames = []
    for k in steps:
        data = []
        for trace in fig.data:
            x = np.asarray(trace.x, dtype=float) if trace.x is not None else None
            if x is None or trace.y is None:
                data.append({"x": trace.x, "y": trace.y, "type": trace.type})
                continue
            y = [v if ok else None for v, ok in zip(trace.y, x <= k, strict=True)]
            data.append({"x": trace.x, "y": y, "type": trace.type})
        frames.append(go.Frame(data=data, name=str(k)))
    fig.frames = frames
    prefix = _("depth") + " " if label is None else label
    play_controls(fig, [str(k) for k in steps], [str(k) for k in steps], prefix, len(steps) - 1)
    fig.update_layout(margin={"b": 150})
    return fig
