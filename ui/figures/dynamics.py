"""The training-dynamics page: the probes at each step of a run, and its curves.

Pure builders: frames in, plotly Figures out; no Streamlit call, no torch.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from normlab.core import catalog
from normlab.science import summary
from ui.figures.depth import play_controls
from ui.figures.style import add_note, empty_figure, finish_figure, metric_title, norm_color, rgba
from ui.figures.training import CURVES
from ui.state.i18n import _

# ---------------------------------------------------------------------------------------------
# Training dynamics: the per-layer properties at each probed step of a training run, and its curves

# The panels of the dynamics view: (row kind, metric, log axis). The middle panel is the page's choice of
# similarity or rank; the gradient panel is the conv layers' grad_norm.
DYNAMICS_VARIANCE = ("act", "act_var", True)
DYNAMICS_GRADIENT = ("conv", "grad_norm", True)
DYNAMICS_MIDDLE = {"cos_sim": ("act", "cos_sim", False), "stable_rank": ("act", "stable_rank", False),
                   "effective_rank": ("act", "effective_rank", False)}
# A transformer's panels, per block (transformer_rows): the residual stream's variance, its tokens' cosine
# (rank collapse among the tokens) and ‖∂L/∂W₂‖ of each block's FFN (Xiong et al. 2020's quantity).
TRANSFORMER_PANELS = (("block", "act_var", True), ("block", "token_cos_sim", False),
                      ("block", "weight_grad_norm", True))


def transformer_rows(probes: pd.DataFrame) -> pd.DataFrame:
    """A transformer's probe rows per block: the block outputs (``blocks.{l}``) and the weight gradient of
    each block's W₂ (``blocks.{l}.ffn.w2``; W_O where the blocks have no FFN), kind ``block``, index l + 1."""
    layer = probes["layer"].astype(str)
    block = layer.str.extract(r"^blocks\.(\d+)$")[0]
    w2 = layer.str.extract(r"^blocks\.(\d+)\.ffn\.w2$")[0]
    if w2.isna().all():  # attention-only blocks (Dong et al.'s ablation)
        w2 = layer.str.extract(r"^blocks\.(\d+)\.attn\.o$")[0]
    grads = w2.notna() & (probes["metric"] == "weight_grad_norm")
    rows = pd.concat([probes[block.notna()].assign(index=block[block.notna()].astype(int) + 1),
                      probes[grads].assign(index=w2[grads].astype(int) + 1)], ignore_index=True)
    return rows.assign(kind="block")


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
            label = _(catalog.NORM_INFO[norm].label) if norm in catalog.NORM_INFO else norm
            traces.append(go.Scatter(x=band_x, y=band_y, fill="toself", mode="lines", line={"width": 0},
                                     fillcolor=rgba(color, 0.18), hoverinfo="skip", showlegend=False,
                                     legendgroup=norm, xaxis=f"x{axis}", yaxis=f"y{axis}"))
            traces.append(go.Scatter(
                x=x, y=rows["mean"], mode="lines+markers", name=label, legendgroup=norm,
                showlegend=panel == 1, line={"color": color, "width": 2}, marker={"size": 5},
                xaxis=f"x{axis}", yaxis=f"y{axis}",
                hovertemplate=_("{label}, step {step}<br>layer %{{x}}<br>%{{y:.4g}}<extra></extra>").format(
                    label=label, step=step),
            ))
    return traces


def gradient_growth_by_step(probes: pd.DataFrame) -> pd.DataFrame:
    """step x normalizer table of the gradient growth (``summary.gradient_growth``: first over last hidden
    conv layer's grad_norm, on the seed means per layer), what the gradient panel's slope shows."""
    rows = probes[(probes["kind"] == "conv") & (probes["metric"] == "grad_norm")]
    growth = {(int(step), norm): summary.gradient_growth(part)
              for (step, norm), part in rows.groupby(["step", "norm"], sort=True)}
    table = pd.Series(growth, dtype=float).unstack()
    table.index.name, table.columns.name = "step", "norm"
    return table


def dynamics_figure(probes: pd.DataFrame, middle: str = "cos_sim", *, uirevision: str = "dynamics",
                    transformer: bool = False) -> go.Figure:
    """Variance, similarity (or rank) and gradient norm per layer, normalizers side by side, one animation
    frame per probed training step (a slider and Play walk through them; nothing is computed per frame).

    ``probes``: ``TrainResult.probes`` rows of several runs (columns ``norm``, ``seed``, ``step``,
    ``index``, ``kind``, ``metric``, ``value``). Lines are the seed mean, bands the min-max over seeds;
    the axes keep one range over every step so a change of height is a change of the network.
    ``transformer``: the TRANSFORMER_PANELS per block instead (``middle`` is not read).
    """
    if middle not in DYNAMICS_MIDDLE:
        raise ValueError(f"middle must be one of {sorted(DYNAMICS_MIDDLE)}; got {middle!r}")
    if probes.empty:
        return empty_figure(_("No probed step yet."), uirevision)
    panels = (DYNAMICS_VARIANCE, DYNAMICS_MIDDLE[middle], DYNAMICS_GRADIENT)
    if transformer:
        probes, panels = transformer_rows(probes), TRANSFORMER_PANELS
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
        fig.update_xaxes(title_text=_("block") if transformer else _("layer (depth)"), row=1, col=col)
    if any(frame["overflow"].any() for frame in stats):
        add_note(fig, _("Gaps: overflowed (inf/NaN) values at that layer and step."))
    fig.frames = [go.Frame(data=_dynamics_traces(stats, norms, s), name=str(s)) for s in steps]
    finish_figure(fig, uirevision, height=460)
    play_controls(fig, [str(s) for s in steps], [str(s) for s in steps], _("training step") + " ", 0)
    # The legend at the figure's top edge, above the notes and the panel titles: below the panels sit the
    # Play button and the step slider.
    fig.update_layout(margin={"t": fig.layout.margin.t + 30, "b": 150},
                      legend={"yref": "container", "y": 1, "yanchor": "top", "x": 0})
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
        label = _(catalog.NORM_INFO[norm].label) if norm in catalog.NORM_INFO else norm
        x = stats["step"].to_numpy(dtype=float)
        fig.add_trace(go.Scatter(x=np.concatenate([x, x[::-1]]),
                                 y=np.concatenate([stats["max"].to_numpy(), stats["min"].to_numpy()[::-1]]),
                                 fill="toself", mode="lines", line={"width": 0}, fillcolor=rgba(color, 0.18),
                                 hoverinfo="skip", showlegend=False, legendgroup=norm))
        fig.add_trace(go.Scatter(x=x, y=stats["mean"], mode="lines", name=label, legendgroup=norm,
                                 line={"color": color, "width": 2},
                                 hovertemplate=_("{label}<br>step %{{x}}<br>{metric} %{{y:.3g}}"
                                                 "<extra></extra>").format(label=label, metric=quantity)))
    if not fig.data:
        return empty_figure(_("No finite training value yet."), uirevision)
    fig.update_xaxes(title_text=_("step"))
    fig.update_yaxes(title_text=quantity)  # linear: a short run's loss spans less than a decade
    # No legend: the colours are the normalizers' own, named by the dynamics figure beside it.
    return finish_figure(fig, uirevision, height=380).update_layout(showlegend=False)
