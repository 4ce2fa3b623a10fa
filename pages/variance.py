"""Variance growth (property 1): activation variance along depth, with the theory curve dashed."""

import streamlit as st

from ui.compute import shared, views
from ui.figures import overlays
from ui.figures.depth import depth_figure, grow_with_depth
from ui.state import controls, links
from ui.state.i18n import N_, _

selection = views.header(
    _("Property 1 · Variance growth with depth"),
    _("**Look for:** with an activation-based normalizer a ResNet's variance grows *linearly* with depth "
      "(about +0.34 per post-activation block); without one (or with weight-based ones) it grows "
      "*exponentially* (×2 per block in the wide-network theory, a little less at small widths). SkipInit "
      "(α = 0) keeps it flat. A normalized projection shortcut resets it at each new stage (dotted lines). "
      "With *Depth in motion*, ▶ Play grows the network one block at a time."),
    _("act_var: per-channel variance over (N,H,W), averaged over channels · act_sq_mean: per-channel mean, "
      "squared, averaged over channels · res_var: act_var of the residual branch before the addition. "
      "ResNets are read at their block outputs, plain nets after every layer's activation."),
)


# A fragment: a plot option reruns this view alone, not the page and its sidebar (the sidebar's choice
# is read on a full run and handed in).
@st.fragment
def view(selection) -> None:
    cols = st.columns([3, 2, 2, 2])
    metric = cols[0].segmented_control(_("Metric"), ("act_var", "act_sq_mean", "res_var"), key="var_metric",
                                       required=True, persist_state="session")
    scale = cols[1].segmented_control(_("Axis"), controls.SCALES, key="var_scale", required=True,
                                      persist_state="session",
                                      format_func=controls.labelled(controls.SCALE_LABELS))
    show_theory = cols[2].toggle(_("Theory curve (De & Smith 2020)"), key="var_theory",
                                 persist_state="session")
    # Off by default: the frames double what a redraw sends, and the default view must redraw quickly.
    motion = cols[3].toggle(_("▶ Depth in motion"), key="var_motion", persist_state="session",
                            help=_("Adds a Play button and a depth slider that grow the curve one block at a "
                                   "time."))
    links.follow_view()  # the address bar and the share link hold the options
    frame = views.measure(selection)
    if frame is None:
        return
    runs = views.runs(selection)
    with_theory = show_theory and metric == "act_var"
    # A transformer has its own law (the pre-LN band); the ResNet laws are not drawn for it.
    overlay = (overlays.transformer_variance_overlay if controls.is_transformer(selection.base.arch)
               else overlays.variance_overlay)
    theory, skipped = (shared.shared("variance-theory", runs, lambda: overlay(
        views.statistics(frame, runs), selection.models)) if with_theory else (None, []))

    def draw():
        fig = depth_figure(views.statistics(frame, runs), metric, log_y=scale == "log", theory=theory,
                           annotate_growth=True, uirevision=f"variance-{metric}-{scale}")
        if motion:
            fig = grow_with_depth(fig, _("depth "))  # ▶ Play draws the curve block by block
        return fig

    # made once per choice, view, language and mode for every visitor
    fig = views.shared_chart("variance", (runs, metric, scale, with_theory, motion), draw, "variance",
                             selection)
    if skipped:
        st.caption(_("No theory curve for {networks}.").format(networks="; ".join(skipped)))
    views.export(frame, {N_("variance"): fig}, selection, "variance")


view(selection)
