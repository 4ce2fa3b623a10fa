"""Pure figure builders: a probe frame in, a plotly Figure out; no Streamlit call, no torch.

Every builder draws the seed mean as a line with a min-max band, colours a series by its normalizer (the
same colour on every page), shows exact values on hover, keeps the zoom across reruns through
``uirevision`` and draws overflowed (non-finite) points as triangles at the top of the axis with a note.
"""

from __future__ import annotations

import math
import textwrap
import unicodedata
from collections.abc import Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from normlab.core import catalog
from normlab.science import summary
from ui.i18n import N_, _
from ui.measures import (
    BN_GRADIENT_RATE,
    aggregate,
    depth_rows,
    describe_growth,
    gradient_rates,
    stage_starts,
)

# One fixed colour per normalizer (normlab.core.catalog), so a normalizer looks the same on every page.
NORM_COLORS = {name: info.color for name, info in catalog.NORMALIZERS.items()}
FALLBACK_COLOR = catalog.FALLBACK_COLOR
# Series of the same normalizer that differ in another field (input, skipinit, ...) differ in dash.
DASHES = ("solid", "dot", "dashdot", "longdash")
OVERFLOW_NOTE = N_("▲ at the top: overflowed (inf/NaN) values")
# English, as the catalog marks them: pass a title through metric_title (or _()) where it is shown.
METRIC_TITLES = {name: info.title for name, info in catalog.METRIC_INFO.items()}
# The Hangul web font the app serves (.streamlit/config.toml, static/fonts): Korean renders in the browser
# even where the machine has no Hangul font.
HANGUL_WEB_FONT = "normlab-hangul"
# Plotly's default Latin face first, then the served Hangul face (it holds Hangul alone, so Latin never
# reaches it), then system faces with Hangul for PNG/SVG exports (kaleido draws with the fonts of the
# machine it runs on, without the page's web fonts).
FONT_FAMILY = (f'"Open Sans", verdana, arial, {HANGUL_WEB_FONT}, "Noto Sans CJK KR", "Noto Sans KR", '
               'NanumGothic, "Malgun Gothic", "Apple SD Gothic Neo", sans-serif')


def metric_title(metric: str) -> str:
    """A metric's axis title in the session's language (an unknown metric shows as its name)."""
    return _(METRIC_TITLES[metric]) if metric in METRIC_TITLES else metric


def norm_color(norm: str) -> str:
    return catalog.color(norm)


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


def _shared_layout(fig: go.Figure) -> go.Figure:
    """What every figure of the dashboard shares: the font, with Hangul behind the Latin face."""
    return fig.update_layout(font_family=FONT_FAMILY)


def _empty(message: str, uirevision: str) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_layout(uirevision=uirevision, xaxis_visible=False, yaxis_visible=False, height=420)
    return _shared_layout(fig)


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


def _add_series(fig, rows, x, style, name, *, row=None, col=None, legend=True, unit=None):
    """Mean line, min-max band (several seeds) and hover for one series; returns its overflow rows.

    ``unit`` names the x values on hover (default: depth, in the session's language).
    """
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
            name=_("{name} (min–max over seeds)").format(name=name),
        ), **sub)
    # NaN at overflowed points breaks the line there instead of joining across them.
    line = rows[[x, "mean", "min", "max", "n", "layer"]]
    fig.add_trace(go.Scatter(
        x=line[x], y=line["mean"], mode="lines+markers", name=name, legendgroup=name, showlegend=legend,
        line={"color": color, "dash": dash, "width": 2}, marker={"size": 5, "color": color},
        customdata=np.stack([line["layer"].astype(str), line["min"], line["max"], line["n"]], axis=-1),
        hovertemplate=_(
            "<b>{name}</b><br>{unit} %{{x}} · %{{customdata[0]}}<br>mean %{{y:.6g}}"
            "<br>min %{{customdata[1]:.6g}} · max %{{customdata[2]:.6g}} · seeds %{{customdata[3]}}"
            "<extra></extra>"
        ).format(name=name, unit=unit or _("depth")),
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
            x=part[x], y=[top] * len(part), mode="markers",
            name=_("{series}: overflow").format(series=series),
            legendgroup=series, showlegend=False,
            marker={"symbol": "triangle-up", "size": 12, "color": color,
                    "line": {"width": 1, "color": "black"}},
            customdata=part["layer"].astype(str),
            hovertemplate=_("<b>{series}</b><br>%{{customdata}}: overflow (inf/NaN)<extra></extra>").format(
                series=series),
        ), **sub)
    return True


NOTES_META = "note_block"  # layout.meta key and annotation name of the lines above the plot (see _finish)


def add_note(fig: go.Figure, line: str, width: int = 110) -> None:
    """A line of text for the figure's note block, which sits in the top margin, never over the data.

    Plain text wider than ``width`` Latin characters is wrapped, so a note is never cut at the figure's
    edge (a Hangul syllable is about two of them wide).
    """
    columns = sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in line)
    if "<" not in line and columns > width:
        line = "<br>".join(textwrap.wrap(line, width * len(line) // columns))
    meta = dict(fig.layout.meta or {})
    notes = list(meta.get(NOTES_META, []))
    if line not in notes:
        notes.append(line)
    meta[NOTES_META] = notes
    fig.update_layout(meta=meta)


def figure_text(fig: go.Figure) -> str:
    """Every note and annotation a figure writes, joined: what a reader sees besides the axes."""
    return " ".join(a.text or "" for a in fig.layout.annotations)


def _note_overflow(fig) -> None:
    add_note(fig, f"<span style='color:#b00020'>{_(OVERFLOW_NOTE)}</span>")


def _axis_values(fig: go.Figure, axis: str, letter: str) -> np.ndarray:
    """Every finite value the traces plot on ``axis`` ('y', 'y2', ...), frames included."""
    out = []
    traces = list(fig.data) + [t for frame in (fig.frames or ()) for t in frame.data]
    for trace in traces:
        ref = getattr(trace, f"{letter}axis", None) or letter
        if ref != axis:
            continue
        values = getattr(trace, letter, None)
        if values is None:
            continue
        flat = pd.Series(np.asarray(values, dtype=object).ravel())
        arr = pd.to_numeric(flat, errors="coerce").to_numpy(float)
        out.append(arr[np.isfinite(arr)])
    return np.concatenate(out) if out else np.zeros(0)


def _nice_log_ticks(low: float, high: float) -> tuple[list[float], list[str]]:
    """1-2-5 ticks written out in full ("0.2", "30") for a log axis spanning under two decades."""
    vals = []
    for k in range(math.floor(math.log10(low)) - 1, math.ceil(math.log10(high)) + 1):
        vals += [m * 10.0**k for m in (1, 2, 5)]
    inside = [v for v in vals if low / 1.5 <= v <= high * 1.5]
    return inside, [f"{v:.6g}" for v in inside]


LOG_TICKLEN, LOG_MINOR_TICKLEN = 6, 3  # px: decades and the unlabelled 2..9 between them


def clean_log_axes(fig: go.Figure) -> go.Figure:
    """Log axes with clean major ticks: 10ⁿ every decade (unlabelled minor ticks between) over a wide
    range, 1-2-5 values written in full over a narrow one; never "5 4 3 2" or a mix of "10T" and "10²⁶"."""
    for key in list(fig.layout.to_plotly_json()):
        if not (key.startswith("yaxis") or key.startswith("xaxis")):
            continue
        axis = fig.layout[key]
        if axis.type != "log":
            continue
        letter = key[0]
        values = _axis_values(fig, letter + key[5:], letter)
        values = values[values > 0]
        if not values.size:
            continue
        low, high = float(values.min()), float(values.max())
        span = math.log10(high) - math.log10(low)
        if span >= 2:
            # Plotly sets a label off the axis by the *major* tick length only: with no major tick the
            # labels sit on the axis line and the minor dashes run through them ("10" read "1Q"). Major
            # ticks longer than the minor ones push every label clear of them, in any font size.
            axis.update(tickmode="linear", tick0=0, dtick=max(1, math.ceil(span / 10)),
                        exponentformat="power", showexponent="all", ticks="outside", ticklen=LOG_TICKLEN,
                        minor={"ticks": "outside", "ticklen": LOG_MINOR_TICKLEN, "dtick": "D1",
                               "showgrid": False})
        else:
            tickvals, ticktext = _nice_log_ticks(low, high)
            axis.update(tickmode="array", tickvals=tickvals, ticktext=ticktext)
    return fig


def _finish(fig, uirevision: str, height: int = 460) -> go.Figure:
    """Shared layout: the note block in the top margin (above subplot titles), the legend below."""
    notes = list((fig.layout.meta or {}).get(NOTES_META, []))
    lines = sum(n.count("<br>") + 1 for n in notes)
    titled = any(a.yref == "paper" and (a.y or 0) >= 1 for a in fig.layout.annotations)  # subplot titles
    top = 40 + 20 * lines + (24 if titled else 0)
    fig.update_layout(
        uirevision=uirevision, height=height + 20 * lines, hovermode="closest",
        margin={"t": top, "r": 20, "b": 50},
        legend={"orientation": "h", "y": -0.18, "x": 0, "yanchor": "top"},
    )
    if notes:  # above the plotting area (and above subplot titles), so it never covers a trace
        fig.add_annotation(text="<br>".join(notes), showarrow=False, xref="paper", yref="paper", x=0,
                           y=1, xanchor="left", yanchor="bottom", yshift=26 if titled else 4, align="left",
                           font={"size": 13}, name=NOTES_META)
    return clean_log_axes(_shared_layout(fig))


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
            x=part["x"], y=part["y"], mode="lines", name=_("theory: {source}").format(source=source),
            legendgroup=series,
            line={"color": color, "dash": "dash", "width": 1.5}, opacity=0.8,
            hovertemplate=f"<b>{source}</b><br>%{{x}}: %{{y:.6g}}<extra>{series}</extra>",
        ), **sub)


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
        ceiling: min(batch, features) for a rank metric, drawn dashed (no rank can exceed it).
        uirevision: zoom is kept across reruns while this string stays the same.
    """
    stats = frame if "mean" in frame else aggregate(frame)
    rows = depth_rows(stats, metric)
    if rows.empty:
        return _empty(_("No {metric} values in this run.").format(metric=metric), uirevision)
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
    if ceiling:
        fig.add_hline(y=ceiling, line={"dash": "dash", "color": "#444"})
        add_note(fig, _("grey dashed: ceiling min(batch, features) = {ceiling}").format(ceiling=ceiling))
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
    _whole_ticks(fig, rows["position"].max())
    fig.update_yaxes(title=metric_title(metric), type="log" if log_y else "linear")
    return _finish(fig, uirevision)


def rank_figure(frame: pd.DataFrame, *, ceiling: int | None = None, uirevision: str = "rank") -> go.Figure:
    """Two panels along depth: cosine similarity (uncentered solid, centered dotted) and the three ranks.

    Args:
        ceiling: min(batch, features); drawn as a line on the rank panel since no rank can exceed it.
    """
    stats = frame if "mean" in frame else aggregate(frame)
    fig = make_subplots(rows=1, cols=2, subplot_titles=(
        _("cosine similarity between samples (lower = more distinct)"), _("rank of the representation")))
    styles = _styles(stats)
    overflow = []
    drawn = False
    for col, metrics in ((1, ("cos_sim", "cos_sim_centered")), (2, ("stable_rank", "effective_rank",
                                                                     "numerical_rank"))):
        for k, metric in enumerate(metrics):
            rows = depth_rows(stats, metric)
            for series, part in rows.groupby("series", sort=False):
                color = styles[series][0]
                name = f"{series} · {metric_title(metric)}" if k or col == 2 else series
                overflow.append(_add_series(fig, part, "position", (color, DASHES[k]), name, row=1, col=col,
                                            legend=True)
                                .assign(_col=col))
                drawn = True
            _stage_lines(fig, rows, row=1, col=col)
    if not drawn:
        return _empty(_("No similarity or rank values in this run."), uirevision)
    if overflow:
        over = pd.concat(overflow)
        for col in (1, 2):
            part = over[over["_col"] == col]
            if _add_overflow(fig, part, "position", styles, 1.05 if col == 1 else (ceiling or 1) * 1.05,
                             row=1, col=col):
                _note_overflow(fig)
    if ceiling:
        fig.add_hline(y=ceiling, line={"dash": "dash", "color": "#444"}, row=1, col=2)
        add_note(fig, _("grey dashed: ceiling min(batch, features) = {ceiling}").format(ceiling=ceiling))
    fig.update_yaxes(title="cos_sim", range=[-0.05, 1.05], row=1, col=1)
    fig.update_yaxes(title=_("rank"), row=1, col=2)
    fig.update_xaxes(title=_("depth"))
    _whole_ticks(fig, stats.loc[stats["kind"] != "spectrum", "index"].max() + 1)
    return _finish(fig, uirevision, height=500)


def spectrum_figure(frame: pd.DataFrame, *, ceiling: int | None = None, log_y: bool = True,
                    uirevision: str = "spectrum") -> go.Figure:
    """Eigenvalues of the final features' Gram matrix by rank k (1 = largest)."""
    stats = frame if "mean" in frame else aggregate(frame)
    rows = stats[(stats["metric"] == "gram_eigenvalue") & (stats["kind"] == "spectrum")]
    if rows.empty:
        return _empty(_("No eigen-spectrum in this run."), uirevision)
    rows = rows.assign(k=rows["index"] + 1)
    styles = _styles(rows)
    fig = go.Figure()
    overflow = [_add_series(fig, part, "k", styles[s], s, unit="k")
                for s, part in rows.groupby("series", sort=False)]
    if _add_overflow(fig, pd.concat(overflow), "k", styles, _top(rows["max"].to_numpy(float), log_y)):
        _note_overflow(fig)
    if ceiling:
        fig.add_vline(x=ceiling, line={"dash": "dash", "color": "#444"})
        add_note(fig, _("grey dashed: min(batch, features) = {ceiling}").format(ceiling=ceiling))
    fig.update_xaxes(title=_("eigenvalue rank k (1 = largest)"))
    _whole_ticks(fig, rows["k"].max())
    fig.update_yaxes(title=_("eigenvalue of the final features' Gram matrix"),
                     type="log" if log_y else "linear")
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
        return _empty(_("No gradient norms in this run."), uirevision)
    rows = rows.assign(position=rows["index"] + 1)
    styles = _styles(rows)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.65, 0.35], vertical_spacing=0.06,
                        subplot_titles=(_("gradient norm at each conv/linear output"),
                                        _("per-layer rate ‖g_l‖ / ‖g_(l+1)‖ (> 1: grows toward the input)")))
    overflow = [
        _add_series(fig, part, "position", styles[s], s, row=1, col=1, unit=_("layer"))
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
    fig.update_xaxes(title=_("layer (conv/linear outputs in forward order; last = classifier)"), row=2, col=1)
    _whole_ticks(fig, rows["position"].max())
    return _finish(fig, uirevision, height=620)


def tradeoff_figure(points: pd.DataFrame, *, log_y: bool = True, uirevision: str = "tradeoff") -> go.Figure:
    """The speed-stability trade-off: final similarity (x) against early-layer gradient growth (y).

    Args:
        points: one row per group count with columns groups, group_size, cos_sim, cos_min, cos_max,
            grad_growth, grad_min, grad_max, label (see ``ui.measures``' sweep reading in the page).
    """
    if points.empty:
        return _empty(_("Run the sweep to see the trade-off."), uirevision)
    points = points.sort_values("group_size")
    fig = go.Figure()
    finite = points[np.isfinite(points["grad_growth"]) & np.isfinite(points["cos_sim"])]
    fig.add_trace(go.Scatter(
        x=finite["cos_sim"], y=finite["grad_growth"], mode="lines+markers+text", text=finite["label"],
        textposition=[("top right", "bottom left")[k % 2] for k in range(len(finite))], cliponaxis=False,
        name=_("GroupNorm, one point per group count"),
        line={"color": norm_color("groupnorm"), "width": 1.5},
        marker={"size": 12, "color": np.log2(finite["group_size"].astype(float)), "colorscale": "Viridis",
                "showscale": True, "colorbar": {"title": _("log₂ group size")}},
        error_x={"type": "data", "symmetric": False, "array": finite["cos_max"] - finite["cos_sim"],
                 "arrayminus": finite["cos_sim"] - finite["cos_min"], "thickness": 1},
        error_y={"type": "data", "symmetric": False, "array": finite["grad_max"] - finite["grad_growth"],
                 "arrayminus": finite["grad_growth"] - finite["grad_min"], "thickness": 1},
        customdata=np.stack([finite["groups"], finite["group_size"]], axis=-1),
        hovertemplate=_("G=%{customdata[0]} (group size %{customdata[1]})<br>final cos_sim %{x:.6g}"
                        "<br>gradient growth %{y:.6g}<extra></extra>"),
    ))
    if len(finite):  # room for the labels at both ends
        low, high = float(finite["cos_sim"].min()), float(finite["cos_sim"].max())
        pad = 0.2 * (high - low or 0.1)
        fig.update_xaxes(range=[low - pad, high + pad])
    bad = points.drop(finite.index)
    if not bad.empty:
        fig.add_trace(go.Scatter(
            x=bad["cos_sim"].where(np.isfinite(bad["cos_sim"]), 1.0),
            y=[_top(points["grad_growth"].to_numpy(float), log_y)] * len(bad), mode="markers+text",
            text=bad["label"], name=_("overflow"),
            marker={"symbol": "triangle-up", "size": 12, "color": "#b00020"},
            hovertemplate=_("%{text}: overflow (inf/NaN)<extra></extra>"),
        ))
        _note_overflow(fig)
    add_note(fig, _("← more informative features · more stable gradients ↓"))
    fig.update_xaxes(title=_("final-layer cosine similarity (higher = representations collapse)"))
    fig.update_yaxes(title=_("gradient growth: ‖g‖ first layer / ‖g‖ last hidden layer"),
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
        return _empty(_("Nothing to compare."), uirevision)
    styles = _styles(stats[stats["series"].isin(values.index)])
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
            x=list(bad.index), y=[_top(values.to_numpy(dtype=float), log_y)] * len(bad), mode="markers",
            marker={"symbol": "triangle-up", "size": 12, "color": "#b00020"}, name=_("overflow"),
            hovertemplate=_("<b>%{x}</b><br>overflow (inf/NaN)<extra></extra>"),
        ))
        _note_overflow(fig)
    fig.update_yaxes(title=title, type="log" if log_y else "linear")
    fig.update_layout(showlegend=False)
    return _finish(fig, uirevision, height=420)


def overview_figure(frame: pd.DataFrame, *, uirevision: str = "overview") -> go.Figure:
    """The three properties side by side: variance growth, similarity, gradient norms (log axes)."""
    stats = frame if "mean" in frame else aggregate(frame)
    if stats.empty:
        return _empty(_("Nothing measured yet."), uirevision)
    fig = make_subplots(rows=1, cols=3, subplot_titles=(
        _("1 · variance growth (act_var)"), _("2 · rank collapse (cos_sim)"), _("3 · gradients (grad_norm)")))
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
                                    unit=_("layer")).assign(_col=3))
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
    fig.update_xaxes(title=_("depth"), row=1, col=1)
    fig.update_xaxes(title=_("depth"), row=1, col=2)
    fig.update_xaxes(title=_("conv/linear layer"), row=1, col=3)
    return _finish(fig, uirevision, height=430)


# ---------------------------------------------------------------------------------------------
# Motion: Play / slider controls over plotly animation frames (no recomputation per frame)

MAX_FRAMES = 40  # frames per animation: enough to watch depth grow, small enough to ship quickly
FRAME_MS = 450


def _play_controls(fig: go.Figure, names: list[str], labels: list[str], prefix: str, active: int) -> None:
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


def _frame_positions(positions, cap: int = MAX_FRAMES) -> list[int]:
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
    steps = _frame_positions(xs)
    if len(steps) < 2:
        return fig
    for key in list(fig.layout.to_plotly_json()):  # freeze every axis at the whole figure's extent
        if key.startswith(("xaxis", "yaxis")):
            letter, ref = key[0], key[0] + key[5:]
            values = _axis_values(fig, ref, letter)
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
    _play_controls(fig, [str(k) for k in steps], [str(k) for k in steps], prefix, len(steps) - 1)
    fig.update_layout(margin={"b": 150})
    return fig


# ---------------------------------------------------------------------------------------------
# The samples themselves: cosine matrices, the principal plane, distributions (from probe_detail)

HEATMAP_SAMPLES = 32  # samples shown per matrix: the collapse reads as well at 32 x 32 as at 256 x 256
COSINE_SCALE = "RdBu_r"  # for signed outputs: white 0, red 1 (collapsed), blue -1


def _positions_of(details: Mapping) -> list[int]:
    return sorted({int(p) for d in details.values() for p in d.positions})


def _at(detail, position: int) -> int:
    """Index of ``detail``'s point nearest to ``position`` (at or below it when there is one)."""
    pos = np.asarray(detail.positions)
    below = np.flatnonzero(pos <= position)
    return int(below[-1]) if below.size else int(np.argmin(np.abs(pos - position)))


def collapse_figure(details: Mapping, norms: Mapping[str, str], *, samples: int = HEATMAP_SAMPLES,
                    start: int | None = None, uirevision: str = "collapse") -> go.Figure:
    """Per normalizer, the batch's cosine matrix (top) and its principal plane (bottom), one frame a depth.

    Args:
        details: series label -> a ``normlab.science.probes.ProbeDetail`` (or anything with its fields).
        norms: series label -> normalizer name, for the colours.
        samples: the first this many samples are drawn in each matrix (all of them in the plane).
        start: the depth shown before Play (default the deepest).
    """
    if not details:
        return _empty(_("Nothing to picture."), uirevision)
    names = list(details)
    fig = make_subplots(rows=2, cols=len(names), subplot_titles=names + [""] * len(names),
                        vertical_spacing=0.1, horizontal_spacing=0.06, row_heights=[0.58, 0.42])
    steps = _frame_positions(_positions_of(details))
    extent = max((float(np.nanmax(np.abs(d.projection))) for d in details.values()
                  if np.isfinite(d.projection).any()), default=1.0) * 1.1 or 1.0

    def traces(position: int) -> list:
        out = []
        for name in names:
            d = details[name]
            k = _at(d, position)
            m = np.round(d.cosine[k, :samples, :samples].astype(float), 3)
            out.append(go.Heatmap(  # meta: the layer's name, on hover
                z=m, coloraxis="coloraxis", meta=d.layers[k], hovertemplate=_(
                    "<b>{name}</b><br>samples %{{y}} · %{{x}}<br>cosine %{{z:.3f}}<extra>%{{meta}}</extra>"
                ).format(name=name)))
        for name in names:
            d = details[name]
            k = _at(d, position)
            p = d.projection[k]
            out.append(go.Scatter(
                x=np.round(p[:, 0].astype(float), 4), y=np.round(p[:, 1].astype(float), 4), mode="markers",
                marker={"color": norm_color(norms.get(name, "")), "size": 7, "opacity": 0.8},
                showlegend=False, name=name, meta=d.layers[k],
                hovertemplate=f"<b>{name}</b><br>PC1 %{{x:.3f}} · PC2 %{{y:.3f}}<extra>%{{meta}}</extra>"))
        return out

    first = steps[-1] if start is None else min(steps, key=lambda s: abs(s - start))
    for col, trace in enumerate(traces(first)):
        fig.add_trace(trace, row=1 + col // len(names), col=1 + col % len(names))
    fig.frames = [go.Frame(data=traces(k), name=str(k)) for k in steps]
    for col in range(1, len(names) + 1):
        fig.update_xaxes(showticklabels=False, ticks="", row=1, col=col)
        fig.update_yaxes(autorange="reversed", showticklabels=False, ticks="", scaleanchor=f"x{col}",
                         row=1, col=col)
        fig.update_xaxes(range=[-extent, extent], title="PC1", row=2, col=col, zeroline=True)
        fig.update_yaxes(range=[-extent, extent], title="PC2" if col == 1 else None, row=2, col=col,
                         zeroline=True)
    # ReLU outputs have cosines in [0, 1]: a sequential scale over [0, 1] separates 0.5 from 0.8 well;
    # signed outputs (FRN, EvoNorm) get the diverging scale over [-1, 1].
    signed = any(np.nanmin(d.cosine) < -1e-6 for d in details.values() if np.isfinite(d.cosine).any())
    scale = {"colorscale": COSINE_SCALE, "cmin": -1} if signed else {"colorscale": "Viridis", "cmin": 0}
    fig.update_layout(coloraxis={**scale, "cmax": 1,
                                 "colorbar": {"title": _("cosine"), "len": 0.55, "y": 1, "yanchor": "top"}})
    blocks = len(steps) and any("features." in layer and "." not in layer[9:]
                                for d in details.values() for layer in d.layers)
    unit = _("block") if blocks else _("layer")
    _play_controls(fig, [str(k) for k in steps], [str(k) for k in steps], unit + " ", steps.index(first))
    add_note(fig, _("top: cosine between the first {samples} samples (1 = the same direction) · bottom: "
                    "all samples on their top two principal directions, in units of the typical sample norm "
                    "(a collapsed batch shrinks onto a line or a point)").format(samples=samples), width=130)
    fig = _finish(fig, uirevision, height=640)
    fig.update_layout(margin={"b": 130}, showlegend=False)
    return fig


def _rms_ok(values: np.ndarray) -> np.ndarray:
    return values[np.isfinite(values)]


def distribution_figure(details: Mapping, norms: Mapping[str, str], position: int, grad_layer: int, *,
                        uirevision: str = "distributions") -> go.Figure:
    """Histograms at one layer per normalizer: activation values (left), per-sample ‖∂L/∂z‖ (right).

    Args:
        details: series label -> ProbeDetail.
        position: the depth (block or layer) whose activations are drawn.
        grad_layer: index of the conv/linear output whose per-sample gradient norms are drawn.
    """
    if not details:
        return _empty(_("Nothing to picture."), uirevision)
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1, subplot_titles=(
        _("activation values at this depth (a fixed random sample)"),
        _("per-sample gradient norm ‖∂L/∂z_i‖ at this conv/linear output")))
    def bins(arrays, count):  # one set of bins for every normalizer, so the bars compare
        values = np.concatenate([a for a in arrays if a.size] or [np.zeros(1)])
        low, high = float(values.min()), float(values.max())
        return {"start": low, "end": high, "size": (high - low) / count or 1.0}

    act_bins = bins([_rms_ok(d.activations[_at(d, position)].astype(float)) for d in details.values()], 60)
    grad_bins = bins([_rms_ok(d.grad_norms[min(grad_layer, d.grad_norms.shape[0] - 1)].astype(float))
                      for d in details.values() if d.grad_norms.shape[0]], 30)
    for name, d in details.items():
        color = norm_color(norms.get(name, ""))
        k = _at(d, position)
        acts = _rms_ok(d.activations[k].astype(float))
        fig.add_trace(go.Histogram(x=acts, name=name, legendgroup=name, marker_color=color, opacity=0.55,
                                   histnorm="probability density", xbins=act_bins,
                                   hovertemplate=_("<b>{name}</b><br>%{{x}}: density %{{y:.3g}}"
                                                   "<extra></extra>").format(name=name)),
                      row=1, col=1)
        if d.grad_norms.shape[0]:
            g = _rms_ok(d.grad_norms[min(grad_layer, d.grad_norms.shape[0] - 1)].astype(float))
            fig.add_trace(go.Histogram(x=g, name=name, legendgroup=name, showlegend=False, marker_color=color,
                                       opacity=0.55, xbins=grad_bins, hovertemplate=_(
                                           "<b>{name}</b><br>%{{x}}: %{{y}} samples<extra></extra>"
                                       ).format(name=name)),
                          row=1, col=2)
        if acts.size < d.activations[k].size:
            add_note(fig, _("{name}: {count} sampled values overflowed (inf/NaN)").format(
                name=name, count=d.activations[k].size - acts.size))
    fig.update_layout(barmode="overlay")
    fig.update_xaxes(title=_("activation value"), row=1, col=1)
    fig.update_yaxes(title=_("density"), row=1, col=1)
    fig.update_xaxes(title=_("‖∂L/∂z_i‖ of one sample"), row=1, col=2)
    fig.update_yaxes(title=_("samples"), row=1, col=2)
    return _finish(fig, uirevision, height=440)


# ---------------------------------------------------------------------------------------------
# GroupNorm's rank bound, measured


def shape_scale(measured: np.ndarray, shape: np.ndarray) -> float:
    """The least-squares c of measured ≈ c · shape over the finite points (the bound's unknown constant)."""
    ok = np.isfinite(measured) & np.isfinite(shape)
    denom = float(np.dot(shape[ok], shape[ok]))
    return float(np.dot(measured[ok], shape[ok]) / denom) if denom > 0 else math.nan


def final_points(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per network of a sweep: ``metric`` at its final features (seed mean, min, max), with the
    network's width and group size (a GroupNorm net set by group count gets width / groups)."""
    stats = frame if "mean" in frame else aggregate(frame)
    rows = stats[(stats["metric"] == metric) & stats["final"].astype(bool) & (stats["kind"] != "spectrum")]
    sizes = rows["group_size"].where(rows["group_size"].notna(),
                                     rows["width"].astype(float) / rows["groups"].astype(float))
    return pd.DataFrame({"width": rows["width"].astype(int).to_numpy(),
                         "group_size": sizes.astype(int).to_numpy(),
                         "mean": rows["mean"].to_numpy(float), "min": rows["min"].to_numpy(float),
                         "max": rows["max"].to_numpy(float)})


SCALING_AXES = {"group_size": N_("group size"), "width": N_("width")}  # the x axes of rank_scaling_figure


def rank_scaling_figure(points: pd.DataFrame, over: str, metric: str, *, ceiling: int | None = None,
                        fixed: str = "", uirevision: str = "rank-scaling") -> go.Figure:
    """Final-feature rank against group size or width, with the √(width / group size) shape fitted over it.

    Args:
        points: one row per measured network, columns width, group_size, mean, min, max (seed statistics).
        over: "group_size" or "width": the x axis.
        metric: the rank measure the points hold (axis title).
        ceiling: min(batch, features), drawn dashed.
        fixed: the other parameter, said in the x title (e.g. "width 32").
    """
    if points.empty:
        return _empty(_("No rank measured."), uirevision)
    points = points.sort_values(over)
    x = points[over].to_numpy(float)
    y = points["mean"].to_numpy(float)
    shape = np.sqrt(points["width"].to_numpy(float) / points["group_size"].to_numpy(float))
    c = shape_scale(y, shape)
    color = norm_color("groupnorm")
    over_title = _(SCALING_AXES[over]) if over in SCALING_AXES else over.replace("_", " ")
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=x, y=y, mode="markers+lines", name=_("measured {metric}").format(metric=metric_title(metric)),
        line={"color": color, "width": 2}, marker={"size": 11, "color": color},
        error_y={"type": "data", "symmetric": False, "array": points["max"] - points["mean"],
                 "arrayminus": points["mean"] - points["min"], "thickness": 1},
        hovertemplate=f"{over_title} %{{x}}<br>{metric} %{{y:.4g}}<extra></extra>",
    ))
    if np.isfinite(c):
        dense = np.geomspace(x.min(), x.max(), 50) if len(x) > 1 else x
        if over == "group_size":
            curve = c * np.sqrt(float(points["width"].iloc[0]) / dense)
        else:
            curve = c * np.sqrt(dense / float(points["group_size"].iloc[0]))
        fig.add_trace(go.Scatter(
            x=dense, y=curve, mode="lines",
            name=_("shape c·√(width / group size), c = {c} (least squares)").format(c=f"{c:.3g}"),
            line={"color": "#444", "dash": "dash", "width": 2},
            hovertemplate=_("shape %{y:.4g}<extra>c·√(width / group size)</extra>"),
        ))
    if ceiling:
        fig.add_hline(y=ceiling, line={"dash": "dot", "color": "#888"})
        add_note(fig, _("grey dotted: ceiling min(batch, features) = {ceiling}").format(ceiling=ceiling))
    add_note(fig, _("Lubana et al. 2021 bound the rank from below by Ω(√(width / group size)): a shape, its "
                    "constant unknown, so it is scaled to the measured points"), width=70)
    ok = np.isfinite(y) & np.isfinite(shape)
    if ok.sum() >= 3 and np.ptp(y[ok]) > 0 and np.ptp(shape[ok]) > 0:
        follows = float(np.corrcoef(y[ok], shape[ok])[0, 1])  # does the rank move the way the shape does?
        if follows < 0.5:
            add_note(fig, _("here the measurement does not follow the shape (correlation {correlation}): the "
                            "bound only says the rank cannot fall below it; something else limits it").format(
                                correlation=f"{follows:+.2f}"), width=70)
    fig.update_xaxes(type="log", title=over_title + (f" ({fixed})" if fixed else ""),
                     tickvals=list(x), ticktext=[f"{int(v)}" for v in x])
    fig.update_yaxes(title=metric_title(metric), rangemode="tozero")
    fig = _finish(fig, uirevision, height=420)
    fig.update_layout(legend={"y": -0.25})
    return fig


LECTURE_FONT = 20  # px of ticks, legends and axis titles in lecture mode: readable from the back of a room


def lecture_style(fig: go.Figure, scale: float = 1.5) -> go.Figure:
    """Larger type (ticks, legends, titles >= 18 px), thicker lines and a taller plot for a room.

    Sizes are set on every axis and on the legend explicitly: a theme's own tick size would otherwise win
    over the layout font.
    """
    size = max(LECTURE_FONT, round(13 * scale))
    fig.update_layout(font={"size": size}, legend={"font": {"size": size}},
                      height=round((fig.layout.height or 460) * 1.25),
                      hoverlabel={"font_size": size})
    fig.update_xaxes(tickfont_size=size, title_font_size=size)
    fig.update_yaxes(tickfont_size=size, title_font_size=size)
    fig.update_traces(line_width=3, selector={"mode": "lines+markers"})
    fig.update_traces(textfont_size=size, selector={"type": "scatter"})
    fig.update_annotations(font_size=size)  # subplot titles
    notes = [a for a in fig.layout.annotations if a.name == NOTES_META]
    for note in notes:  # the note block above the plot: its margin grows with its type
        lines = (note.text or "").count("<br>") + 1
        note.update(font_size=18, yshift=(note.yshift or 0) + 8)
        fig.update_layout(margin_t=(fig.layout.margin.t or 40) + 8 * lines + 8)
    if fig.layout.coloraxis.colorbar is not None:
        fig.update_layout(coloraxis_colorbar={"tickfont": {"size": size}, "title": {"font": {"size": size}}})
    for slider in fig.layout.sliders or ():
        slider.update(font={"size": size}, currentvalue={"font": {"size": size}})
    for menu in fig.layout.updatemenus or ():
        menu.update(font={"size": size})
    return fig


# --- The training page: its runs' similarity at init against their training speed -----------------------

ARCH_SYMBOLS = {"cnn": "circle", "resnet": "diamond", "mlp": "square"}
# English, marked for the catalog: pass a label through _() where it is shown.
ARCH_LABELS = {"cnn": N_("plain CNN"), "resnet": "ResNet", "mlp": "MLP", "all": N_("both nets pooled")}
SPEEDS = {"acc_at_k": N_("held-out accuracy after k steps"),
          "steps_to_target": N_("steps to the target accuracy")}


def similarity_speed_figure(runs: pd.DataFrame, correlations: pd.DataFrame, speed: str, steps: int,
                            uirevision: str = "training") -> go.Figure:
    """cos_sim at init (x) against training speed (y), one point per run, coloured by normalizer.

    Diverged runs (acc_at_k) sit at 0 and runs that never reach the target (steps_to_target) on a line
    above the last step, both drawn as open markers; the correlations are written on the figure.
    """
    fig = go.Figure()
    level = steps * 1.08  # a row above the last step for runs that never reach the target
    speed_title = _(SPEEDS[speed])
    for (arch, norm, label), part in runs.groupby(["arch", "norm", "label"], sort=False):
        y = part[speed].to_numpy(dtype=float)
        missing = np.isnan(y)
        shown = np.where(missing, 0.0 if speed == "acc_at_k" else level, y)
        net = _(ARCH_LABELS[arch])
        fig.add_trace(go.Scatter(
            x=part["cos_sim_init"], y=shown, mode="markers", name=f"{label} · {net}",
            legendgroup=label,
            marker={"color": norm_color(norm), "size": 11,
                    "symbol": [ARCH_SYMBOLS.get(arch, "circle") + ("-open" if m else "") for m in missing],
                    "line": {"width": 1, "color": "white"}},
            customdata=np.stack([part["seed"], part["final_test_acc"], part["diverged"]], axis=1),
            hovertemplate=_("<b>{label}</b> ({net}), seed %{{customdata[0]}}<br>"
                            "cos_sim at init %{{x:.3f}}<br>{speed} %{{y:.3g}}<br>"
                            "final accuracy %{{customdata[1]:.3f}}<br>diverged %{{customdata[2]}}"
                            "<extra></extra>").format(label=label, net=net, speed=speed_title),
        ))
    text = []
    for row in correlations[correlations["speed"] == speed].itertuples():
        name = _(ARCH_LABELS[row.arch]) if row.arch in ARCH_LABELS else row.arch
        if not math.isnan(row.rho):
            text.append(f"{name}: Spearman ρ = {row.rho:+.2f} [{row.lo:+.2f}, {row.hi:+.2f}], n = {row.n}")
        else:  # fewer than two runs, or one side constant (e.g. no run reached the target)
            text.append(_("{net}: no rank correlation (n = {n}; one side does not vary)").format(
                net=name, n=row.n))
    fig.add_annotation(text="<br>".join(text) or _("no finished run"), showarrow=False,
                       xref="paper", yref="paper", x=0.01, y=0.99, xanchor="left", yanchor="top",
                       align="left", bgcolor="rgba(255,255,255,0.85)", bordercolor="#999", borderwidth=1)
    if speed == "steps_to_target" and runs[speed].isna().any():
        fig.add_hline(y=level, line_dash="dot", line_color="#999",
                      annotation_text=_("never reached (open markers)"), annotation_position="bottom right")
    if speed == "acc_at_k" and runs[speed].isna().any():
        fig.add_annotation(text=_("open markers at 0: diverged"), showarrow=False, xref="paper", yref="paper",
                           x=0.99, y=0.01, xanchor="right", yanchor="bottom")
    fig.update_layout(
        xaxis_title=_("final-layer cosine similarity at init (cos_sim)"),
        yaxis_title=speed_title, height=520, uirevision=uirevision, legend_title_text=_("normalizer · net"),
        margin={"t": 30},
    )
    return _shared_layout(fig)


CURVES = {"test_acc": N_("held-out accuracy"), "loss": N_("training loss (batch)")}  # y of the curves


def curves_figure(curves: pd.DataFrame, y: str, uirevision: str = "training-curves") -> go.Figure:
    """Held-out accuracy or training loss against step, one line per run, one panel per architecture."""
    archs = list(dict.fromkeys(curves["arch"]))
    quantity = _(CURVES[y])
    fig = make_subplots(rows=1, cols=len(archs), shared_yaxes=True,
                        subplot_titles=[_(ARCH_LABELS[a]) if a in ARCH_LABELS else a for a in archs])
    legend_seen = set()
    for col, arch in enumerate(archs, start=1):
        for (label, norm, seed), run in curves[curves["arch"] == arch].groupby(["label", "norm", "seed"],
                                                                              sort=False):
            run = run.dropna(subset=[y])
            fig.add_trace(go.Scatter(
                x=run["step"], y=run[y], mode="lines", name=label, legendgroup=label,
                showlegend=label not in legend_seen, line={"color": norm_color(norm), "width": 1.5},
                hovertemplate=_("{label}, seed {seed}<br>step %{{x}}<br>{metric} %{{y:.3g}}"
                                "<extra></extra>").format(label=label, seed=seed, metric=quantity),
            ), row=1, col=col)
            legend_seen.add(label)
    fig.update_xaxes(title_text=_("step"))
    fig.update_yaxes(title_text=quantity, type="log" if y == "loss" else "linear", row=1, col=1)
    fig.update_layout(height=420, uirevision=uirevision, margin={"t": 40})
    return _shared_layout(fig)


# ---------------------------------------------------------------------------------------------
# Training dynamics: the per-layer properties at each probed step of a training run, and its curves

# The panels of the dynamics view: (row kind, metric, log axis). The middle panel is the page's choice of
# similarity or rank; the gradient panel is the conv layers' grad_norm.
DYNAMICS_VARIANCE = ("act", "act_var", True)
DYNAMICS_GRADIENT = ("conv", "grad_norm", True)
DYNAMICS_MIDDLE = {"cos_sim": ("act", "cos_sim", False), "stable_rank": ("act", "stable_rank", False),
                   "effective_rank": ("act", "effective_rank", False)}


def dynamics_stats(probes: pd.DataFrame, kind: str, metric: str) -> pd.DataFrame:
    """Seed mean, min and max per (norm, step, index) of one metric; non-finite values count as missing
    (``overflow`` says whether any seed overflowed there)."""
    rows = probes[(probes["kind"] == kind) & (probes["metric"] == metric)]
    values = rows["value"].where(np.isfinite(rows["value"]))
    rows = rows.assign(value=values, bad=values.isna())
    return (rows.groupby(["norm", "step", "index"], sort=True)
            .agg(mean=("value", "mean"), low=("value", "min"), high=("value", "max"), overflow=("bad", "any"))
            .reset_index())


def _fixed_range(values: np.ndarray, log: bool) -> list[float] | None:
    values = values[np.isfinite(values)]
    if log:
        values = values[values > 0]
    if not values.size:
        return None
    low, high = values.min(), values.max()
    if log:
        low, high = np.log10(low), np.log10(high)
    pad = 0.05 * (high - low or 1.0)
    return [float(low - pad), float(high + pad)]


def _dynamics_traces(stats: list[pd.DataFrame], norms: list[str], step: int) -> list[go.Scatter]:
    """One band and one mean line per (panel, normalizer) at ``step``, always in the same order, so a frame
    replaces the traces of the first one by one."""
    traces = []
    for panel, frame in enumerate(stats, start=1):
        axis = "" if panel == 1 else str(panel)
        for norm in norms:
            rows = frame[(frame["norm"] == norm) & (frame["step"] == step)]
            x = rows["index"].to_numpy(dtype=float)
            color = norm_color(norm)
            band_x = np.concatenate([x, x[::-1]]) if len(x) else x
            band_y = np.concatenate([rows["high"].to_numpy(), rows["low"].to_numpy()[::-1]]) if len(x) else x
            label = _(catalog.NORMALIZERS[norm].label) if norm in catalog.NORMALIZERS else norm
            traces.append(go.Scatter(x=band_x, y=band_y, fill="toself", mode="lines", line={"width": 0},
                                     fillcolor=_rgba(color, 0.18), hoverinfo="skip", showlegend=False,
                                     legendgroup=norm, xaxis=f"x{axis}", yaxis=f"y{axis}"))
            traces.append(go.Scatter(
                x=x, y=rows["mean"], mode="lines+markers", name=label, legendgroup=norm,
                showlegend=panel == 1, line={"color": color, "width": 2}, marker={"size": 5},
                xaxis=f"x{axis}", yaxis=f"y{axis}",
                hovertemplate=_("{label}, step {step}<br>layer %{{x}}<br>%{{y:.4g}}<extra></extra>").format(
                    label=label, step=step),
            ))
    return traces


def dynamics_figure(probes: pd.DataFrame, middle: str = "cos_sim", *,
                    uirevision: str = "dynamics") -> go.Figure:
    """Variance, similarity (or rank) and gradient norm per layer, normalizers side by side, one animation
    frame per probed training step (a slider and Play walk through them; nothing is computed per frame).

    ``probes``: ``TrainResult.probes`` rows of several runs (columns ``norm``, ``seed``, ``step``,
    ``index``, ``kind``, ``metric``, ``value``). Lines are the seed mean, bands the min-max over seeds;
    the axes keep one range over every step so a change of height is a change of the network.
    """
    if middle not in DYNAMICS_MIDDLE:
        raise ValueError(f"middle must be one of {sorted(DYNAMICS_MIDDLE)}; got {middle!r}")
    if probes.empty:
        return _empty(_("No probed step yet."), uirevision)
    panels = (DYNAMICS_VARIANCE, DYNAMICS_MIDDLE[middle], DYNAMICS_GRADIENT)
    stats = [dynamics_stats(probes, kind, metric) for kind, metric, _log in panels]
    norms = list(dict.fromkeys(probes["norm"]))
    steps = sorted(int(s) for s in probes["step"].unique())
    fig = make_subplots(rows=1, cols=3, horizontal_spacing=0.07,
                        subplot_titles=[metric_title(metric) for _kind, metric, _log in panels])
    fig.add_traces(_dynamics_traces(stats, norms, steps[0]))
    for col, ((_kind, _metric, log), frame) in enumerate(zip(panels, stats, strict=True), start=1):
        values = np.concatenate([frame["low"].to_numpy(float), frame["high"].to_numpy(float)])
        fig.update_yaxes(type="log" if log else "linear", range=_fixed_range(values, log), autorange=False,
                         row=1, col=col)
        fig.update_xaxes(title_text=_("layer (depth)"), row=1, col=col)
    if any(frame["overflow"].any() for frame in stats):
        add_note(fig, _("Gaps: overflowed (inf/NaN) values at that layer and step."))
    fig.frames = [go.Frame(data=_dynamics_traces(stats, norms, s), name=str(s)) for s in steps]
    _finish(fig, uirevision, height=460)
    _play_controls(fig, [str(s) for s in steps], [str(s) for s in steps], _("training step") + " ", 0)
    # The legend above the panels: below them sit the Play button and the step slider.
    fig.update_layout(margin={"t": fig.layout.margin.t + 30, "b": 150},
                      legend={"y": 1.12, "yanchor": "bottom", "x": 0})
    return fig


def dynamics_curves_figure(curves: pd.DataFrame, y: str, *, uirevision: str = "dynamics-curves") -> go.Figure:
    """Training loss or held-out accuracy against step: per normalizer the seed mean and its min-max band."""
    if y not in CURVES:
        raise ValueError(f"y must be one of {sorted(CURVES)}; got {y!r}")
    quantity = _(CURVES[y])
    rows = curves.dropna(subset=[y])
    rows = rows[np.isfinite(rows[y])]
    fig = go.Figure()
    for norm, run in rows.groupby("norm", sort=False):
        stats = run.groupby("step")[y].agg(["mean", "min", "max"]).reset_index()
        color = norm_color(norm)
        label = _(catalog.NORMALIZERS[norm].label) if norm in catalog.NORMALIZERS else norm
        x = stats["step"].to_numpy(dtype=float)
        fig.add_trace(go.Scatter(x=np.concatenate([x, x[::-1]]),
                                 y=np.concatenate([stats["max"].to_numpy(), stats["min"].to_numpy()[::-1]]),
                                 fill="toself", mode="lines", line={"width": 0}, fillcolor=_rgba(color, 0.18),
                                 hoverinfo="skip", showlegend=False, legendgroup=norm))
        fig.add_trace(go.Scatter(x=x, y=stats["mean"], mode="lines", name=label, legendgroup=norm,
                                 line={"color": color, "width": 2},
                                 hovertemplate=_("{label}<br>step %{{x}}<br>{metric} %{{y:.3g}}"
                                                 "<extra></extra>").format(label=label, metric=quantity)))
    if not fig.data:
        return _empty(_("No finite training value yet."), uirevision)
    fig.update_xaxes(title_text=_("step"))
    fig.update_yaxes(title_text=quantity)  # linear: a short run's loss spans less than a decade
    # No legend: the colours are the normalizers' own, named by the dynamics figure beside it.
    return _finish(fig, uirevision, height=380).update_layout(showlegend=False)
