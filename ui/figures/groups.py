"""The group-size page: final similarity against gradient growth, one point per group count.

Pure builders: frames in, plotly Figures out; no Streamlit call, no torch.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ui.figures.style import add_note, empty_figure, finish_figure, norm_color, note_overflow, overflow_top
from ui.state.i18n import _


def tradeoff_figure(points: pd.DataFrame, *, log_y: bool = True, uirevision: str = "tradeoff") -> go.Figure:
    """The speed-stability trade-off: final similarity (x) against early-layer gradient growth (y).

    Args:
        points: one row per group count with columns groups, group_size, cos_sim, cos_min, cos_max,
            grad_growth, grad_min, grad_max, label (see ``ui.figures.measures``' sweep reading in the page).
    """
    if points.empty:
        return empty_figure(_("Run the sweep to see the trade-off."), uirevision)
    points = points.sort_values("group_size")
    fig = go.Figure()
    finite = points[np.isfinite(points["grad_growth"]) & np.isfinite(points["cos_sim"])]
    fig.add_trace(go.Scatter(
        x=finite["cos_sim"], y=finite["grad_growth"], mode="lines+markers+text", text=finite["label"],
        textposition=[("top right", "bottom left")[k % 2] for k in range(len(finite))], cliponaxis=False,
        name=_("GroupNorm, one point per group count"),
        line={"color": norm_color("groupnorm"), "width": 1.5},
        marker={"size": 12, "color": np.log2(finite["group_size"].astype(float)), "colorscale": "Viridis",
                "showscale": True,
                "colorbar": {"title": {"text": _("log₂ group size"), "side": "right"}}},
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
            y=[overflow_top(points["grad_growth"].to_numpy(float), log_y)] * len(bad), mode="markers+text",
            text=bad["label"], name=_("overflow"),
            marker={"symbol": "triangle-up", "size": 12, "color": "#b00020"},
            hovertemplate=_("%{text}: overflow (inf/NaN)<extra></extra>"),
        ))
        note_overflow(fig)
    add_note(fig, _("← more informative features · more stable gradients ↓"))
    fig.update_xaxes(title=_("final-layer cosine similarity (higher = representations collapse)"))
    fig.update_yaxes(title=_("gradient growth: ‖g‖ first layer / ‖g‖ last hidden layer"),
                     type="log" if log_y else "linear")
    return finish_figure(fig, uirevision, height=520)
