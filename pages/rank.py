"""Rank collapse (property 2): similarity and rank of the representations along depth."""

import streamlit as st

from ui import figures, measures, views

selection = views.header(
    "Property 2 · Rank collapse",
    "**Look for:** cosine similarity creeping toward 1 and ranks falling with depth mean the network maps "
    "different inputs to nearly the same features. BatchNorm avoids it; in GroupNorm the rank shrinks "
    "as the groups grow (LayerNorm, one group, collapses most). No rank can exceed min(batch, features): "
    "the dashed line.",
    "cos_sim: flatten each sample, L2-normalize, Gram matrix M (N×N), mean off-diagonal entry; centered: "
    "after subtracting the batch mean · stable_rank: tr(M)/‖M‖₂ · effective_rank: exp of the entropy of "
    "the normalized eigenvalues of the centered covariance · numerical_rank: singular values of the "
    "centered features above tol·σ_max.",
)
ceiling = measures.rank_ceiling(selection.base, selection.probe)
frame = views.measure(selection)
if frame is None:
    st.stop()
stats = measures.aggregate(frame)
fig = figures.rank_figure(stats, ceiling=ceiling, uirevision="rank")
views.chart(fig, "rank", selection)
st.subheader("Eigen-spectrum of the final features")
scale = st.segmented_control("Axis", ("log", "linear"), key="spec_scale", persist_state="session",
                             required=True)
spectrum = figures.spectrum_figure(stats, ceiling=ceiling, log_y=scale == "log",
                                   uirevision=f"spectrum-{scale}")
views.chart(spectrum, "spectrum", selection)
st.caption(f"Rank ceiling min(batch, features) = {ceiling}: batch {selection.probe.batch_size}; a collapsed "
           "network concentrates the spectrum in its first few eigenvalues.")
views.export(frame, {"rank": fig, "spectrum": spectrum}, selection, "rank")
