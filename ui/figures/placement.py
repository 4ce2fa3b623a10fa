"""The Placement page's figures: a transformer's norm placements (and normalizers) side by side.

Pure builders over probe frames (``normlab.run_probes`` of the ``transformer`` family, several runs
concatenated): the residual stream per block, the per-block weight gradients, the last block's gradient
against depth with its log-log slope, and Dong et al.'s pure-attention collapse. Each placement keeps one
colour on every panel, each normalizer one dash. No Streamlit call, no torch.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from normlab.core.config import PLACEMENTS
from normlab.science import summary
from ui.figures.measures import series_labels
from ui.figures.style import (
    DASHES,
    FALLBACK_COLOR,
    NOTES_META,
    add_note,
    add_overflow,
    add_series,
    empty_figure,
    finish_figure,
    note_overflow,
    overflow_top,
    theory_traces,
    whole_ticks,
)
from ui.state.i18n import _

# One colour per placement on every panel of the page (Tableau 10, apart from the normalizers' colours
# so a reader does not take a placement for a normalizer).
PLACEMENT_COLORS = dict(zip(PLACEMENTS, ("#e15759", "#4e79a7", "#59a14f", "#b07aa1", "#f28e2b"), strict=True))
# float32 rounds a sequence's distance from one shared row to noise below about 1e-7 of its norm: the
# collapse panel's axis stops a little below, and a note names the block where the measurement gets there.
COLLAPSE_FLOOR = 1e-8
NOTE_WIDTH = 60  # characters of a note line in a half-width panel
W2 = "ffn.w2"  # the weight Xiong et al.'s Theorem 1 speaks of: the FFN's second matrix
_BLOCK = re.compile(r"^blocks\.(\d+)(?:\.|$)")


def block_number(layer: str) -> int | None:
    """1-based block of a probe point's name: ``blocks.3.ffn.w2`` -> 4; None outside the blocks."""
    match = _BLOCK.match(str(layer))
    return int(match.group(1)) + 1 if match else None


def signed(value: float) -> str:
    """A slope as the plot writes it: +0.00, -0.48 (a tiny negative is not "-0.00"); "—" if unknown."""
    return f"{round(value, 2) + 0.0:+.2f}" if math.isfinite(value) else "—"


def styles_by_placement(stats: pd.DataFrame) -> dict[str, tuple[str, str]]:
    """(colour, dash) per series: the colour of its placement, a dash counting the placement's series
    (its first normalizer solid, the next dotted, ...)."""
    seen: dict[str, int] = {}
    out = {}
    for series, placement in dict(zip(stats["series"], stats["placement"], strict=True)).items():
        k = seen.get(placement, 0)
        seen[placement] = k + 1
        out[series] = (PLACEMENT_COLORS.get(placement, FALLBACK_COLOR), DASHES[k % len(DASHES)])
    return out


def panel_title(fig: go.Figure, text: str) -> None:
    """A panel's title, in bold, as the first line of its note block (the notes sit in the top margin, where
    a layout title would collide with them)."""
    meta = dict(fig.layout.meta or {})
    meta[NOTES_META] = [f"<b>{text}</b>", *meta.get(NOTES_META, [])]
    fig.update_layout(meta=meta)


def block_rows(stats: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Seed statistics of ``metric`` at the block outputs (the residual stream), ``position`` = block."""
    rows = stats[(stats["metric"] == metric) & (stats["kind"] == "block")]
    return rows.assign(position=rows["index"] + 1)


def weight_rows(stats: pd.DataFrame, weight: str = W2) -> pd.DataFrame:
    """Seed statistics of ‖∂L/∂W‖_F of every block's ``weight`` (``ffn.w2``, ``attn.q``, ...), by block."""
    named = stats["layer"].astype(str).str.endswith("." + weight)
    rows = stats[(stats["metric"] == "weight_grad_norm") & named]
    return rows.assign(position=rows["layer"].map(block_number))


def _per_block(rows: pd.DataFrame, title: str, y_title: str, *, log_y: bool, uirevision: str,
               theory: pd.DataFrame | None = None, y_range: list | None = None) -> go.Figure:
    if rows.empty:
        return empty_figure(_("No {what} in this run.").format(what=title), uirevision)
    styles = styles_by_placement(rows)
    fig = go.Figure()
    overflow = [add_series(fig, part, "position", styles[s], s, unit=_("block"))
                for s, part in rows.groupby("series", sort=False)]
    theory_traces(fig, theory, styles)
    if add_overflow(fig, pd.concat(overflow), "position", styles,
                    overflow_top(rows["max"].to_numpy(float), log_y)):
        note_overflow(fig)
    fig.update_xaxes(title=_("block"))
    fig.update_yaxes(title=y_title, type="log" if log_y else "linear", range=y_range)
    whole_ticks(fig, rows["position"].max())
    panel_title(fig, title)
    return finish_figure(fig, uirevision, height=420)


STREAM_TITLES = {"act_sq_norm": "E‖x‖²/D (act_sq_norm)", "act_var": "act_var"}


def stream_figure(stats: pd.DataFrame, *, metric: str = "act_sq_norm", log_y: bool = True,
                  theory: pd.DataFrame | None = None, uirevision: str = "placement-variance") -> go.Figure:
    """The residual stream's scale at every block output per placement and normalizer.

    Args:
        metric: ``act_sq_norm`` (E‖x‖²/D per token, the units of the pre-LN band) or ``act_var``.
        theory: dashed curves (the band), columns series, x, y, source.
    """
    return _per_block(block_rows(stats, metric), _("residual-stream variance per block"),
                      STREAM_TITLES.get(metric, metric), log_y=log_y, theory=theory,
                      uirevision=uirevision)


def token_cosine_figure(stats: pd.DataFrame, *, uirevision: str = "placement-cosine") -> go.Figure:
    """token_cos_sim at every block output: 1 = every token of a sequence points the same way."""
    return _per_block(block_rows(stats, "token_cos_sim"), _("token cosine per block"),
                      _("token cosine (token_cos_sim)"), log_y=False, uirevision=uirevision,
                      y_range=[-0.05, 1.05])


def weight_grad_figure(stats: pd.DataFrame, weight: str = W2, *,
                       uirevision: str = "placement-w2") -> go.Figure:
    """‖∂L/∂W₂‖_F of every block (Xiong et al. 2020: even across blocks for pre, largest near the output
    for post)."""
    return _per_block(weight_rows(stats, weight), _("‖∂L/∂W₂‖ per block"), "‖∂L/∂W₂‖_F", log_y=True,
                      uirevision=uirevision)


def collapse_rows(stats: pd.DataFrame) -> pd.DataFrame:
    """token_residual at the block outputs (Dong et al.'s distance from rank one), ``position`` = block."""
    return block_rows(stats, "token_residual")


def attention_collapse_figure(stats: pd.DataFrame, *, theory: pd.DataFrame | None = None,
                              uirevision: str = "placement-collapse") -> go.Figure:
    """token_residual along depth for attention-only blocks with and without skips (Dong et al. 2021)."""
    rows = collapse_rows(stats)
    if rows.empty:
        return empty_figure(_("No token_residual in this run."), uirevision)
    norms = list(dict.fromkeys(rows["norm"]))
    styles = {}
    for series, skip, norm in zip(rows["series"], rows["skip"], rows["norm"], strict=True):
        styles.setdefault(series, ("#2f4b7c" if bool(skip) else "#d62728",
                                   DASHES[norms.index(norm) % len(DASHES)]))
    fig = go.Figure()
    overflow = [add_series(fig, part, "position", styles[s], s, unit=_("block"))
                for s, part in rows.groupby("series", sort=False)]
    if theory is not None and not theory.empty:  # the bound's own underflow is not drawn either
        theory = theory[theory["y"] >= COLLAPSE_FLOOR / 10]
    theory_traces(fig, theory, styles)
    if add_overflow(fig, pd.concat(overflow), "position", styles,
                    overflow_top(rows["max"].to_numpy(float), True)):
        note_overflow(fig)
    below = rows[rows["mean"] < COLLAPSE_FLOOR]
    if len(below):  # a log axis cannot show 0, and below float32's rounding the value means nothing
        note = _("token residual below {floor} (one shared row, to float precision) from block {block}: "
                 "below the axis").format(floor=f"{COLLAPSE_FLOOR:g}", block=int(below["position"].min()))
        add_note(fig, note, width=NOTE_WIDTH)
    shown = rows.loc[rows["mean"] >= COLLAPSE_FLOOR, "max"].to_numpy(float)
    top = math.log10(np.nanmax(shown)) if len(shown) and np.isfinite(shown).any() else 0.0
    fig.update_xaxes(title=_("block"))
    fig.update_yaxes(title=_("token residual ‖X − 1x̄ᵀ‖/‖X‖"), type="log",
                     range=[math.log10(COLLAPSE_FLOOR) - 0.5, top + 0.3])
    whole_ticks(fig, rows["position"].max())
    panel_title(fig, _("pure attention: distance from rank one per block"))
    return finish_figure(fig, uirevision, height=420)


# --- The depth sweep ---------------------------------------------------------------------------------


def last_block_points(frame: pd.DataFrame, weight: str = W2) -> pd.DataFrame:
    """The last block's ‖∂L/∂W‖_F per run of a depth sweep: seed mean, min and max by series and depth.

    Args:
        frame: raw probe frames (several depths concatenated); each run's last block is ``depth - 1``.

    Returns:
        columns series, norm, placement, depth, mean, min, max, n (the series label leaves depth out).
    """
    columns = ["series", "norm", "placement", "depth", "mean", "min", "max", "n"]
    last = "blocks." + (frame["depth"] - 1).astype(str) + "." + weight  # each run's own last block
    rows = frame[(frame["metric"] == "weight_grad_norm") & (frame["layer"].astype(str) == last)]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    rows = rows.assign(series=series_labels(rows.drop(columns=["depth"])).to_numpy())
    values = rows["value"].where(np.isfinite(rows["value"].to_numpy(float)))
    grouped = rows.assign(value=values).groupby(["series", "depth"], sort=False)
    out = grouped.agg(norm=("norm", "first"), placement=("placement", "first"), mean=("value", "mean"),
                      min=("value", "min"), max=("value", "max"), n=("value", "size")).reset_index()
    return out[columns].sort_values(["series", "depth"], kind="stable").reset_index(drop=True)


def depth_slopes(frame: pd.DataFrame) -> dict[str, float]:
    """Per series of a depth sweep (labelled as ``last_block_points`` labels it): the log-log slope of the
    last block's ‖∂L/∂W₂‖ against depth, by the one fit of ``normlab.science.summary.depth_slopes`` (over
    every depth and seed)."""
    rows = summary.last_w2_rows(frame)
    if rows.empty:
        return {}
    rows = rows.assign(series=series_labels(rows.drop(columns=["depth"])).to_numpy())
    return {series: float(summary.depth_slopes(part, keys=[])["slope"].iloc[0])
            for series, part in rows.groupby("series", sort=False)}


def depth_slope_figure(points: pd.DataFrame, slopes: dict[str, float], *,
                       expected: dict[str, tuple[float, str]] | None = None,
                       uirevision: str = "placement-depth") -> go.Figure:
    """The last block's ‖∂L/∂W₂‖ against depth L on log-log axes, each series' slope written on the plot.

    Args:
        points: ``last_block_points`` of a depth sweep.
        slopes: series -> its fitted slope (``depth_slopes`` of the same sweep).
        expected: placement -> (the law's slope, its source), drawn dashed through each series' first
            point where given (Xiong et al. 2020: 0 for post, −½ for pre).
    """
    if points.empty:
        return empty_figure(_("No last-block gradients in this sweep."), uirevision)
    styles = styles_by_placement(points)
    fig = go.Figure()
    for series, part in points.groupby("series", sort=False):
        part = part.sort_values("depth")
        color, dash = styles[series]
        fitted = slopes.get(series, math.nan)
        said = _("slope {slope}").format(slope=signed(fitted))
        fig.add_trace(go.Scatter(
            x=part["depth"], y=part["mean"], mode="lines+markers", name=f"{series} · {said}",
            line={"color": color, "dash": dash, "width": 2}, marker={"size": 8, "color": color},
            error_y={"type": "data", "symmetric": False, "array": part["max"] - part["mean"],
                     "arrayminus": part["mean"] - part["min"], "color": color, "thickness": 1},
            hovertemplate=_("<b>{series}</b><br>depth %{{x}} · ‖∂L/∂W₂‖ %{{y:.4g}}<extra></extra>").format(
                series=series),
        ))
        add_note(fig, f"<span style='color:{color}'>■</span> {series}: {said}")  # HTML: kept on one line
        placement = part["placement"].iloc[0]
        if expected and placement in expected and math.isfinite(part["mean"].iloc[0]):
            law, source = expected[placement]
            x0, y0 = float(part["depth"].iloc[0]), float(part["mean"].iloc[0])
            xs = part["depth"].to_numpy(float)
            fig.add_trace(go.Scatter(
                x=xs, y=y0 * (xs / x0) ** law, mode="lines",
                line={"color": color, "dash": "dash", "width": 1},
                name=_("{placement}: slope {law} ({source})").format(placement=placement, law=f"{law:+.2g}",
                                                                     source=source),
                hoverinfo="skip",
            ))
    fig.update_xaxes(title=_("depth L (blocks)"), type="log", tickvals=sorted(points["depth"].unique()),
                     ticktext=[str(int(d)) for d in sorted(points["depth"].unique())])
    fig.update_yaxes(title=_("last block's ‖∂L/∂W₂‖_F"), type="log")
    add_note(fig, _("log-log: a slope of 0 means the last block's gradient does not depend on depth, −½ "
                    "means it falls as 1/√L"), width=NOTE_WIDTH)
    panel_title(fig, _("the last block's gradient against depth"))
    return finish_figure(fig, uirevision, height=420)


def summary_table(stats: pd.DataFrame, slopes: dict[str, float] | None = None) -> pd.DataFrame:
    """One row per series: the last block's variance and token cosine, the spread of ‖∂L/∂W₂‖ over the
    blocks (largest / smallest) and, with a depth sweep's ``depth_slopes``, the fitted slope."""
    rows = []
    var, cos, grads = block_rows(stats, "act_var"), block_rows(stats, "token_cos_sim"), weight_rows(stats)
    def last(part: pd.DataFrame, series: str) -> float:
        part = part[part["series"] == series]
        return float(part.sort_values("position")["mean"].iloc[-1]) if len(part) else math.nan

    for series in dict.fromkeys(stats["series"]):
        g = grads.loc[grads["series"] == series, "mean"].to_numpy(float)
        spread = float(g.max() / g.min()) if len(g) and np.isfinite(g).all() and g.min() > 0 else math.nan
        rows.append({_("series"): series, _("last block variance"): last(var, series),
                     _("last block token cosine"): last(cos, series), _("‖∂L/∂W₂‖ largest/smallest"): spread})
    table = pd.DataFrame(rows)
    if slopes and not table.empty:
        table[_("depth slope")] = table[_("series")].map(slopes)
    return table

