"""Overview: the paper's three properties for the current choice, side by side."""

import streamlit as st

from ui import figures, measures, views

selection = views.header(
    "Normalization at initialization: the three properties",
    "Each line is one network of the sidebar, probed once at initialization. **Look for:** variance that "
    "grows linearly (not exponentially) with depth, cosine similarity that stays below 1 (no rank "
    "collapse), and gradient norms that do not blow up toward the input.",
    "act_var: per-channel variance over (N,H,W), averaged over channels · cos_sim: mean off-diagonal "
    "entry of the Gram matrix of L2-normalized samples · grad_norm: Frobenius norm over the batch of "
    "∂L/∂z at every conv/linear output z (cross-entropy against random labels).",
)
frame = views.measure(selection)
if frame is None:
    st.stop()
stats = measures.aggregate(frame)
growth = measures.depth_growths(stats, "act_var")
similarity = measures.final_value(stats, "cos_sim")
rank = measures.final_value(stats, "stable_rank")
gradients = measures.gradient_growth(stats)
for series, column in zip(growth, st.columns(len(growth)), strict=True):
    with column.container(border=True):
        st.markdown(f"**{series}**")
        st.metric(f"1 · variance growth ({growth[series].shape})", growth[series].short())
        st.metric("2 · final cos_sim / stable rank",
                  f"{similarity.get(series, float('nan')):.3f} / {rank.get(series, float('nan')):.1f}")
        st.metric("3 · gradient growth (first / last hidden)", f"×{gradients.get(series, float('nan')):.3g}")
fig = figures.overview_figure(stats)
views.chart(fig, "overview", selection)
views.export(frame, {"overview": fig}, selection, "overview")
