"""What every figure shares: one colour per normalizer, fonts, the notes above a plot, overflow markers,
log axes, the finishing layout and lecture mode's sizes.

Pure builders: frames in, plotly Figures out; no Streamlit call, no torch.
"""

from __future__ import annotations

import math
import textwrap
import unicodedata

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from normlab.core import catalog
from ui.figures.measures import (
    stage_starts,
)
from ui.state.i18n import N_, _

# One fixed colour per normalizer (normlab.core.catalog), so a normalizer looks the same on every page.
NORM_COLORS = {name: info.color for name, info in catalog.NORM_INFO.items()}
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
# reaches it), then system faces with Hangul; the PNG the camera button exports is drawn by the same
# browser, with the same fonts.
FONT_FAMILY = (f'"Open Sans", verdana, arial, {HANGUL_WEB_FONT}, "Noto Sans CJK KR", "Noto Sans KR", '
               'NanumGothic, "Malgun Gothic", "Apple SD Gothic Neo", sans-serif')


def metric_title(metric: str) -> str:
    """A metric's axis title in the session's language (an unknown metric shows as its name)."""
    return _(METRIC_TITLES[metric]) if metric in METRIC_TITLES else metric


def norm_color(norm: str) -> str:
    return catalog.color(norm)


def rgba(hex_color: str, alpha: float) -> str:
    r, g, b = (int(hex_color[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def series_styles(stats: pd.DataFrame) -> dict[str, tuple[str, str]]:
    """(colour, dash) per series: colour from the normalizer, dash counting repeats of a normalizer."""
    seen: dict[str, int] = {}
    out = {}
    for series, norm in dict(zip(stats["series"], stats["norm"], strict=True)).items():
        k = seen.get(norm, 0)
        seen[norm] = k + 1
        out[series] = (norm_color(norm), DASHES[k % len(DASHES)])
    return out


def shared_layout(fig: go.Figure) -> go.Figure:
    """What every figure of the dashboard shares: the font, with Hangul behind the Latin face."""
    return fig.update_layout(font_family=FONT_FAMILY)


def empty_figure(message: str, uirevision: str) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_layout(uirevision=uirevision, xaxis_visible=False, yaxis_visible=False, height=420)
    return shared_layout(fig)


def overflow_top(values: np.ndarray, log: bool) -> float:
    """A y position just above the finite data: where overflow markers sit."""
    finite = values[np.isfinite(values)]
    if log:
        finite = finite[finite > 0]
        return float(finite.max() * 3) if finite.size else 1.0
    if not finite.size:
        return 1.0
    span = float(finite.max() - finite.min()) or abs(float(finite.max())) or 1.0
    return float(finite.max() + 0.08 * span)


def add_series(fig, rows, x, style, name, *, row=None, col=None, legend=True, unit=None):
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
            fillcolor=rgba(color, 0.18), hoverinfo="skip", legendgroup=name, showlegend=False,
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


def add_overflow(fig, overflow, x, styles, top, *, row=None, col=None) -> bool:
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


# layout.meta key and annotation name of the lines above the plot (see finish_figure)
NOTES_META = "note_block"


def wrap_text(line: str, width: int) -> str:
    """Plain text wider than ``width`` Latin characters, broken into lines with <br> (a Hangul syllable
    counts as two); marked-up text is left alone."""
    columns = sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in line)
    if "<" not in line and columns > width:
        line = "<br>".join(textwrap.wrap(line, width * len(line) // columns))
    return line


def add_note(fig: go.Figure, line: str, width: int = 110) -> None:
    """A line of text for the figure's note block, which sits in the top margin, never over the data.

    Plain text wider than ``width`` Latin characters is wrapped, so a note is never cut at the figure's
    edge (a Hangul syllable is about two of them wide).
    """
    line = wrap_text(line, width)
    meta = dict(fig.layout.meta or {})
    notes = list(meta.get(NOTES_META, []))
    if line not in notes:
        notes.append(line)
    meta[NOTES_META] = notes
    fig.update_layout(meta=meta)


def figure_text(fig: go.Figure) -> str:
    """Every note and annotation a figure writes, joined: what a reader sees besides the axes."""
    return " ".join(a.text or "" for a in fig.layout.annotations)


def note_overflow(fig) -> None:
    add_note(fig, f"<span style='color:#b00020'>{_(OVERFLOW_NOTE)}</span>")


def axis_values(fig: go.Figure, axis: str, letter: str) -> np.ndarray:
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
        values = axis_values(fig, letter + key[5:], letter)
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


# Subplot titles sit this many px above their plot: clear of the top tick label, which reaches half its
# height above the plot's top edge.
TITLE_LIFT = 10
TITLE_COLUMNS = 110  # Latin characters across the whole figure, shared by the subplot titles of one row


def subplot_titles(fig: go.Figure) -> list:
    """The subplot titles: make_subplots' annotations at the top edge of a plot (not the note block)."""
    return [a for a in fig.layout.annotations if a.name != NOTES_META and a.yref == "paper"
            and a.yanchor == "bottom" and a.text and a.showarrow is False]


LEGEND_ROW_CHARS = 150  # characters of legend entries one row holds in a page-wide figure (about 7 px each)


def text_width(text: str) -> int:
    """Columns a label takes: a Hangul (wide) character about two Latin ones."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def legend_rows(fig) -> int:
    """Rows a horizontal legend takes in a page-wide figure, estimated from its entries' lengths (about
    40 px of symbol and gap each); the figure grows by them so that the plot keeps its height."""
    names = [t.name or "" for t in fig.data if t.showlegend is not False and t.name]
    names = list(dict.fromkeys(names))
    chars = sum(text_width(n) + 6 for n in names)
    return max(1, -(-chars // LEGEND_ROW_CHARS))


def finish_figure(fig, uirevision: str, height: int = 460) -> go.Figure:
    """Shared layout: the note block in the top margin (above subplot titles), the legend below.

    Subplot titles are lifted clear of the top tick label and wrapped to the width of their column.
    """
    notes = list((fig.layout.meta or {}).get(NOTES_META, []))
    lines = sum(n.count("<br>") + 1 for n in notes)
    titles = subplot_titles(fig)
    per_row = max((sum(1 for t in titles if t.y == title.y) for title in titles), default=1)
    for title in titles:
        title.update(text=wrap_text(title.text, TITLE_COLUMNS // per_row), yshift=TITLE_LIFT)
    top_titles = [t for t in titles if t.y >= max((t.y for t in titles), default=1) - 1e-9]
    title_lines = max((t.text.count("<br>") + 1 for t in top_titles), default=0)
    titled = bool(title_lines)
    top = 40 + 20 * lines + ((24 + TITLE_LIFT + 18 * (title_lines - 1)) if titled else 0)
    # The legend at the bottom of the figure, below the x axis's tick labels and title: plotly makes room
    # for it by shrinking the plot (a legend placed as a fraction of the plot's height instead lands on the
    # axis title once its rows shrink the plot). Each further row it is estimated to take adds as many px.
    extra = 22 * (legend_rows(fig) - 1)
    fig.update_layout(
        uirevision=uirevision, height=height + 20 * lines + extra, hovermode="closest",
        margin={"t": top, "r": 20, "b": 50 + extra},
        legend={"orientation": "h", "yref": "container", "y": 0, "x": 0, "yanchor": "bottom"},
    )
    if notes:  # above the plotting area (and above subplot titles), so it never covers a trace
        fig.add_annotation(text="<br>".join(notes), showarrow=False, xref="paper", yref="paper", x=0,
                           y=1, xanchor="left", yanchor="bottom",
                           yshift=(26 + TITLE_LIFT + 18 * (title_lines - 1)) if titled else 4, align="left",
                           font={"size": 13}, name=NOTES_META)
    return clean_log_axes(shared_layout(fig))


def whole_ticks(fig, largest: float, **sub) -> None:
    """Depths, layers and eigenvalue ranks are whole numbers: ticks at integers, at most about a dozen."""
    if np.isfinite(largest):
        fig.update_xaxes(tick0=0, dtick=max(1, math.ceil(largest / 12)), **sub)


def stage_lines(fig, stats, **sub) -> None:
    for x in stage_starts(stats):
        fig.add_vline(x=x, line={"dash": "dot", "color": "#888", "width": 1}, **sub)


def theory_traces(fig, theory, styles, *, row=None, col=None) -> None:
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



LECTURE_FONT = 20  # px of ticks, legends and axis titles in lecture mode: readable from the back of a room
LECTURE_GROWTH = 120  # px a figure grows at most in lecture mode: a claim's chart stays on one 1080 px screen


def lecture_style(fig: go.Figure, scale: float = 1.5) -> go.Figure:
    """Larger type (ticks, legends, titles >= 18 px), thicker lines and a taller plot for a room.

    Sizes are set on every axis and on the legend explicitly: a theme's own tick size would otherwise win
    over the layout font.
    """
    size = max(LECTURE_FONT, round(13 * scale))
    height = fig.layout.height or 460
    fig.update_layout(font={"size": size}, legend={"font": {"size": size}},
                      height=height + min(round(height * 0.25), LECTURE_GROWTH),
                      hoverlabel={"font_size": size})
    fig.update_xaxes(tickfont_size=size, title_font_size=size)
    fig.update_yaxes(tickfont_size=size, title_font_size=size)
    fig.update_traces(line_width=3, selector={"mode": "lines+markers"})
    fig.update_traces(textfont_size=size, selector={"type": "scatter"})
    fig.update_annotations(font_size=size)  # subplot titles
    notes = [a for a in fig.layout.annotations if a.name == NOTES_META]
    titles = subplot_titles(fig)
    if titles:  # larger titles over larger tick labels: lift them, and the notes above them, further
        lines = max(t.text.count("<br>") + 1 for t in titles)
        lift = (size - 13) // 2 + round(1.2 * (size - 13)) * lines
        for title in titles:
            title.update(yshift=(title.yshift or 0) + (size - 13) // 2)
        for note in notes:
            note.update(yshift=(note.yshift or 0) + lift)
        fig.update_layout(margin_t=(fig.layout.margin.t or 40) + lift)
    for note in notes:  # the note block above the plot: its margin grows with its type
        lines = (note.text or "").count("<br>") + 1
        note.update(font_size=18, yshift=(note.yshift or 0) + 8)
        fig.update_layout(margin_t=(fig.layout.margin.t or 40) + 8 * lines + 8)
    if fig.layout.coloraxis.colorbar is not None:
        fig.update_layout(coloraxis_colorbar={"tickfont": {"size": size}, "title": {"font": {"size": size}}})
    for slider in fig.layout.sliders or ():
        slider.update(font={"size": size}, currentvalue={"font": {"size": size}})
    legend = fig.layout.legend
    if legend.orientation == "h" and (legend.y or 0) < 0 and legend.yref != "container":
        # below the plot, clear of the larger tick labels and axis title (as many px as they take)
        margin = fig.layout.margin
        plot = fig.layout.height - (margin.t or 80) - (margin.b or 80)
        legend.update(y=-(4.2 * size + 12) / max(plot, 1))
    if fig.layout.sliders:  # the slider's value above it and its labels below grow with the type
        fig.update_layout(margin_b=(fig.layout.margin.b or 80) + 3 * (size - 13))
    for menu in fig.layout.updatemenus or ():
        menu.update(font={"size": size})
    return fig
