"""Rank collapse (property 2): the samples' cosine matrices in motion, one rank measure along depth,
distributions per layer and GroupNorm's rank bound measured."""

import pandas as pd
import streamlit as st

from ui.compute import cache, shared, views
from ui.content import defaults
from ui.figures import measures
from ui.figures.depth import depth_figure, spectrum_figure
from ui.figures.samples import collapse_figure, distribution_figure
from ui.figures.scaling import final_points, rank_scaling_figure
from ui.figures.style import METRIC_TITLES
from ui.state import controls
from ui.state.i18n import N_, _

# One measure at a time, each with its definition (spec section 3).
MEASURES = {
    "stable_rank": N_("tr(M)/‖M‖₂ of the cosine matrix M: about 1 when every sample points the same way, "
                      "N when all are orthogonal."),
    "effective_rank": N_("exp of the entropy of the centered covariance's normalized eigenvalues: how many "
                         "directions the batch really spreads over."),
    "numerical_rank": N_("singular values of the centered features above tol·σ_max: counts even tiny "
                         "spread, so it sits at the ceiling N − 1 unless features are exactly degenerate."),
    "cos_sim": N_("mean off-diagonal entry of M (the paper's code): 1 = all samples have the same "
                  "direction."),
}
# A transformer's collapse is among a sequence's tokens (Noci et al. 2022; Dong et al. 2021): its own
# measures come first, the token cosine as the default.
TOKEN_MEASURES = {
    "token_cos_sim": N_("in each sequence, the mean off-diagonal cosine between its T token vectors, "
                        "averaged over the sequences: 1 = every token points the same way (rank collapse "
                        "among the tokens)."),
    "token_residual": N_("‖X − 1x̄ᵀ‖_F / ‖X‖_F per sequence (x̄ its mean token), averaged: Dong et al.'s "
                         "distance from a rank-one matrix with identical rows; 0 = collapsed."),
}

selection = views.header(
    _("Property 2 · Rank collapse"),
    _("**Look for:** the matrix of cosine similarities between the samples filling toward 1 (yellow) with "
      "depth without normalization, while BatchNorm keeps it lower: different inputs stay different. "
      "Below, the batch on its two main directions shrinks toward a point as it collapses. Press ▶ Play to "
      "walk through the layers."),
    _("Cosine matrix M: flatten each sample, L2-normalize, all pairwise dot products (N×N). Principal "
      "plane: the centered samples on their top two principal directions, in units of the typical sample "
      "norm."),
)
ceiling = measures.rank_ceiling(selection.base, selection.probe)
frame = views.measure(selection)
if frame is None:
    st.stop()
runs = views.runs(selection)
stats = views.statistics(frame, runs)  # made once per choice and language; the figures below likewise
labels = shared.shared("rank-labels", runs, lambda: measures.series_labels(
    pd.DataFrame([m.to_dict() for m in selection.models])))
norms = {label: m.norm for label, m in zip(labels, selection.models, strict=True)}
# The sample pictures are of image batches; a transformer's collapse is among its tokens (the measure below).
tokens = controls.is_transformer(selection.base.arch)
with st.spinner(_("Picturing the samples…"), show_time=True):
    details = {} if tokens else views.attempt(N_("picture this choice"), lambda: {
        label: cache.probe_detail(m, selection.probe)
        for label, m in zip(labels, selection.models, strict=True)
    }, "detail") or {}
if tokens:
    collapse = collapse_figure(details, norms, uirevision="collapse")  # no pictures: kept for the export
    st.info(_("A transformer's rank collapse is among the tokens of each sequence: the token cosine below, "
              "block by block, and the Placement page, which compares where the norm sits."),
            icon=":material/info:")
else:
    collapse = views.shared_chart("collapse", (runs, tuple(details)),
                                  lambda: collapse_figure(details, norms, uirevision="collapse"), "collapse",
                                  selection)

st.subheader(_("One rank measure along depth"))
shown = {**TOKEN_MEASURES, **MEASURES} if tokens else MEASURES
names = {m: _(METRIC_TITLES.get(m, m)).split(" (")[0] for m in shown}  # the title less its symbol
measure = st.segmented_control(_("Measure"), tuple(shown),
                               key="rank_measure_tokens" if tokens else "rank_measure", required=True,
                               default="token_cos_sim" if tokens else "stable_rank",
                               persist_state="session", format_func=names.get)
st.caption(_(shown[measure]))
if measure == "stable_rank":
    st.caption(_("Stable rank first: it counts the directions the batch points in (1 = all samples point the "
                 "same way), so collapse shows as a fall toward 1. At the sidebar's defaults every network's "
                 "stable rank falls with depth and BatchNorm's stays highest; the axis fits the values, "
                 "since drawn up to the ceiling the fall would look flat."))
unbounded = measure == "cos_sim" or measure in TOKEN_MEASURES  # no rank: no min(batch, features) ceiling
fig = views.shared_chart("rank", (runs, measure), lambda: depth_figure(
    stats, measure, ceiling=None if unbounded else ceiling, uirevision=f"rank-{measure}"), "rank", selection)
with st.expander(_("Centered cosine similarity: why it is not drawn")):
    st.markdown(
        _("The centered cosine subtracts the batch-mean sample first. The centered samples sum to zero, so "
          "their mean pairwise cosine is about −1/(N−1) for *any* network: a flat line that says nothing "
          "about collapse. What remains of it, at the final features:"))
    centered = shared.shared("rank-centered", runs, lambda: measures.final_value(stats, "cos_sim_centered"))
    st.dataframe(pd.DataFrame({_("final centered cosine"): centered,
                               "−1/(N−1)": -1 / (selection.probe.batch_size - 1)}), width="content")

if details:  # the image batch's pictures (none for a transformer: the note at the top says why)
    st.subheader(_("Distributions at one layer"))
    first = next(iter(details.values()))
    positions = [int(p) for p in first.positions]
    cols = st.columns(2)
    position = cols[0].select_slider(_("Depth of the activations"), positions, value=positions[-1],
                                     key="dist_depth")
    grad = cols[1].select_slider(_("Conv/linear output of the gradients"), range(len(first.grad_layers)),
                                 value=0, key="dist_grad",
                                 format_func=lambda k: f"{k + 1} · {first.grad_layers[k]}")
    views.shared_chart("distributions", (runs, tuple(details), position, grad),
                       lambda: distribution_figure(details, norms, position, grad), "distributions",
                       selection)
    st.caption(_("From the first seed's pass: a fixed random sample of the activation values at that depth "
                 "and each sample's own gradient norm, per normalizer."))

st.subheader(_("GroupNorm's rank bound: Ω(√(width / group size))"))
cols = st.columns(2)
width = cols[0].select_slider(_("Width (for the group-size sweep)"), defaults.BOUND_WIDTH_CHOICES,
                              value=defaults.BOUND_WIDTH, key="bound_width")
size = cols[1].select_slider(_("Group size (for the width sweep)"), defaults.BOUND_SIZE_CHOICES,
                             value=defaults.BOUND_SIZE, key="bound_size")


def sweep_bound() -> tuple:
    """Final-feature ranks of GroupNorm over group sizes (at ``width``) and over widths (at ``size``); the
    first view's two sweeps are the ones ``python -m ui.warm`` computes ahead."""
    return tuple(cache.sweep(base, defaults.BOUND_PROBE, field, values)
                 for base, field, values in defaults.bound_sweeps(width, size))


with st.spinner(_("Sweeping group sizes and widths…"), show_time=True):
    sweeps = views.attempt(N_("sweep group sizes and widths"), sweep_bound, "bound")
if sweeps is not None:
    by_size, by_width = sweeps
    bound_ceiling = defaults.BOUND_PROBE.batch_size
    left, right = st.columns(2)
    with left:
        views.shared_chart("bound-size", (width, size), lambda: rank_scaling_figure(
            final_points(by_size, "effective_rank"), "group_size", "effective_rank",
            fixed=_("width {width}").format(width=width), ceiling=bound_ceiling, uirevision="bound-size"),
                           "bound-size", selection)
    with right:
        views.shared_chart("bound-width", (width, size), lambda: rank_scaling_figure(
            final_points(by_width, "effective_rank"), "width", "effective_rank",
            fixed=_("group size {size}").format(size=size), ceiling=bound_ceiling, uirevision="bound-width"),
                           "bound-width", selection)
    st.caption(_("Plain CNN of depth {depth}, batch {batch} of {size}×{size} natural-image crops, one seed. "
                 "Why the effective rank: the numerical rank counts every direction above a tolerance and "
                 "stays at N − 1 here for every group size, and the stable rank stays between 1 and 2.5 "
                 "here, held by the top eigenvalue; the effective rank weighs how evenly the batch spreads, "
                 "and it falls with the group size as the bound says. The dashed curve is the bound's shape "
                 "scaled by least squares; each panel's note sets the measured slope on log–log axes beside "
                 "the shape's (±0.5).").format(depth=defaults.BOUND_NET["depth"],
                                           batch=defaults.BOUND_PROBE.batch_size,
                                           size=defaults.BOUND_PROBE.image_size))

with st.expander(_("Eigen-spectrum of the final features")):
    scale = st.segmented_control(_("Axis"), controls.SCALES, key="spec_scale", persist_state="session",
                                 required=True, format_func=controls.labelled(controls.SCALE_LABELS))
    spectrum = views.shared_chart("spectrum", (runs, scale), lambda: spectrum_figure(
        stats, ceiling=ceiling, log_y=scale == "log", uirevision=f"spectrum-{scale}"), "spectrum", selection)
    st.caption(_("Rank ceiling min(batch, features) = {ceiling}: batch {batch}; a collapsed network "
                 "concentrates the spectrum in its first few eigenvalues.").format(
        ceiling=ceiling, batch=selection.probe.batch_size))
shown_figures = {N_("rank"): fig, N_("spectrum"): spectrum} if tokens else {
    N_("collapse"): collapse, N_("rank"): fig, N_("spectrum"): spectrum}
views.export(frame, shown_figures, selection, "rank")
