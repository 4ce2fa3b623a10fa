"""Gradients (property 3): gradient norms per layer and how fast they grow toward the input."""

import streamlit as st

from ui.compute import shared, views
from ui.content.claims import CLAIMS
from ui.figures import measures, overlays
from ui.figures.depth import gradient_figure, grow_with_depth
from ui.shell.lecture import load_claim
from ui.state import controls
from ui.state.i18n import N_, _

selection = views.header(
    _("Property 3 · Gradient explosion at initialization"),
    _("**Look for:** gradient norms that grow from the classifier toward the input. With BatchNorm in a "
      "plain (non-residual) net they grow by about √(π/(π−1)) ≈ 1.21 per layer (the dashed line); small "
      "groups and InstanceNorm are worst. A per-layer rate near 1 means stable gradients."),
    _("grad_norm: Frobenius norm over the batch of ∂L/∂z at every conv/linear output z (not the weight "
      "gradient), cross-entropy against random labels. Rates skip exact zeros (SkipInit branches)."),
)
cols = st.columns([2, 2, 3])
scale = cols[0].segmented_control(_("Axis"), controls.SCALES, key="grad_scale", persist_state="session",
                                  required=True, format_func=controls.labelled(controls.SCALE_LABELS))
motion = cols[1].toggle(_("▶ Depth in motion"), key="grad_motion", persist_state="session",
                        help=_("Adds a Play button and a slider that draw the layers one at a time."))
# Property 3 shows best in a plain CNN on real images with InstanceNorm and small groups (the claim's setup).
example = next(i for i, c in enumerate(CLAIMS) if c.key == "gradients")
cols[2].button(_("Show property 3: plain CNN, InstanceNorm and small groups, real images"),
               icon=":material/input:", on_click=load_claim, args=(example,), key="grad_example")
frame = views.measure(selection)
if frame is None:
    st.stop()
runs = views.runs(selection)
# the same for every visitor of this choice (per language and mode): made once, shared, read here
theory, skipped = shared.shared("gradient-theory", runs, lambda: overlays.gradient_overlay(
    views.statistics(frame, runs), selection.models))


def draw():
    fig = gradient_figure(views.statistics(frame, runs), log_y=scale == "log", theory=theory,
                          reference_rate=measures.BN_GRADIENT_RATE if not theory.empty else None,
                          uirevision=f"gradients-{scale}")
    if motion:  # ▶ Play draws the layers one at a time, input first
        fig = grow_with_depth(fig, _("layer "))
    return fig


fig = views.shared_chart("gradients", (runs, scale, motion), draw, "gradients", selection)
growth = shared.shared("gradient-growth", runs,
                       lambda: measures.gradient_growth(views.statistics(frame, runs)))
st.caption(_("Gradient growth, first layer over last hidden layer: {growths}.").format(
    growths=" · ".join(f"{s} ×{g:.3g}" for s, g in growth.items())))
if controls.is_transformer(selection.base.arch):  # its law is about weights, on a depth sweep
    st.caption(_("No theory line for a transformer here: Xiong et al.'s law is about the weight gradient "
                 "‖∂L/∂W₂‖ of the last block against depth, drawn on the Placement page."))
    st.page_link("pages/placement.py", icon=":material/arrow_forward:")
elif skipped:
    st.caption(_("No theory line for {networks}.").format(networks="; ".join(skipped)))
views.export(frame, {N_("gradients"): fig}, selection, "gradients")
