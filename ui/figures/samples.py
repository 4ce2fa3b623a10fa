"""The rank page's pictures of the samples: cosine matrices, the principal plane and the distributions.

Pure builders: frames in, plotly Figures out; no Streamlit call, no torch.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ui.figures.depth import frame_positions, play_controls
from ui.figures.style import add_note, empty_figure, finish_figure, norm_color
from ui.state.i18n import _

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
        return empty_figure(_("Nothing to picture."), uirevision)
    names = list(details)
    fig = make_subplots(rows=2, cols=len(names), subplot_titles=names + [""] * len(names),
                        vertical_spacing=0.1, horizontal_spacing=0.06, row_heights=[0.58, 0.42])
    steps = frame_positions(_positions_of(details))
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
                                 "colorbar": {"title": {"text": _("cosine"), "side": "right"}, "len": 0.55,
                                              "y": 1, "yanchor": "top"}})
    blocks = len(steps) and any("features." in layer and "." not in layer[9:]
                                for d in details.values() for layer in d.layers)
    unit = _("block") if blocks else _("layer")
    play_controls(fig, [str(k) for k in steps], [str(k) for k in steps], unit + " ", steps.index(first))
    batch = max(d.cosine.shape[-1] for d in details.values())
    shown = (_("top: cosine between all {samples} samples (1 = the same direction) · bottom: all samples on "
               "their top two principal directions, in units of the typical sample norm (a collapsed batch "
               "shrinks onto a line or a point)") if batch <= samples else
             _("top: cosine between the first {samples} samples (1 = the same direction) · bottom: all "
               "samples on their top two principal directions, in units of the typical sample norm (a "
               "collapsed batch shrinks onto a line or a point)"))
    add_note(fig, shown.format(samples=min(samples, batch)), width=130)
    fig = finish_figure(fig, uirevision, height=640)
    fig.update_layout(margin={"b": 150}, showlegend=False)  # the Play button and the slider's labels
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
        return empty_figure(_("Nothing to picture."), uirevision)
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
    return finish_figure(fig, uirevision, height=440)
