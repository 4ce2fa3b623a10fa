"""The rank page's bound: the final features' rank against group size or width, with the fitted shape.

Pure builders: frames in, plotly Figures out; no Streamlit call, no torch.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ui.figures.measures import (
    aggregate,
)
from ui.figures.style import add_note, empty_figure, finish_figure, metric_title, norm_color
from ui.state.i18n import N_, _

# ---------------------------------------------------------------------------------------------
# GroupNorm's rank bound, measured


def shape_scale(measured: np.ndarray, shape: np.ndarray) -> float:
    """The least-squares c of measured ≈ c · shape over the finite points (the bound's unknown constant)."""
    ok = np.isfinite(measured) & np.isfinite(shape)
    denom = float(np.dot(shape[ok], shape[ok]))
    return float(np.dot(measured[ok], shape[ok]) / denom) if denom > 0 else math.nan


# The measurement follows the bound's shape when its log-log slope is at least this fraction of the shape's
# (−1/2 against group size, +1/2 against width); below it the rank barely moves the way the shape does.
FOLLOWS = 0.25
SHAPE_SLOPES = {"group_size": -0.5, "width": 0.5}


def shape_slope(points: pd.DataFrame, over: str) -> float:
    """The least-squares slope of log(rank) against log(``over``) over the finite positive points (the
    shape √(width / group size) has slope −1/2 against group size and +1/2 against width); NaN with fewer
    than two."""
    x, y = points[over].to_numpy(float), points["mean"].to_numpy(float)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if ok.sum() < 2 or np.ptp(x[ok]) == 0:
        return math.nan
    return float(np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)[0])


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
        return empty_figure(_("No rank measured."), uirevision)
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
    slope, expected = shape_slope(points, over), SHAPE_SLOPES.get(over)
    if expected is not None and math.isfinite(slope) and len(points) >= 3:
        said = {"slope": f"{slope:+.2f}", "shape": f"{expected:+.1f}"}
        if slope / expected >= FOLLOWS:
            add_note(fig, _("log–log slope of the measurement {slope}, of the shape {shape}").format(**said),
                     width=70)
        else:  # the rank hardly moves (or moves the other way) where the shape says it should
            add_note(fig, _("here the measurement leaves the shape: log–log slope {slope} against the "
                            "shape's {shape}; the bound only says the rank cannot fall below it, so "
                            "something else limits it").format(**said), width=70)
    fig.update_xaxes(type="log", title=over_title + (f" ({fixed})" if fixed else ""),
                     tickvals=list(x), ticktext=[f"{int(v)}" for v in x])
    fig.update_yaxes(title=metric_title(metric), rangemode="tozero")
    return finish_figure(fig, uirevision, height=420)
