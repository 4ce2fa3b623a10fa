"""Group-size trade-off: a sweep over group counts from LayerNorm (G=1) to InstanceNorm."""

import streamlit as st

from normlab.core import catalog
from ui.compute import cache, shared, views
from ui.content.defaults import group_sweep
from ui.figures import measures
from ui.figures.groups import tradeoff_figure
from ui.state import controls
from ui.state.i18n import N_, _

selection = views.header(
    _("The group-size trade-off: speed against stability"),
    _("**Look for:** small groups (toward InstanceNorm) give informative features (low final similarity) "
      "but large early-layer gradients; large groups (toward LayerNorm) give stable gradients but similar "
      "features, which train slowly. Each point is one group count of the sidebar's network."),
    _("x: cos_sim at the final features (mean off-diagonal Gram entry of L2-normalized samples) · y: "
      "grad_norm at the first conv/linear output over grad_norm at the last hidden layer (before the "
      "classifier). Bars: min–max over seeds."),
)
cols = st.columns(2)
norm = cols[0].segmented_control(_("Normalizer"), ("groupnorm", "evonorm_s0"), key="sweep_norm",
                                 persist_state="session", required=True,
                                 format_func={"groupnorm": "GroupNorm", "evonorm_s0": "EvoNorm-S0"}.get)
scale = cols[1].segmented_control(_("Axis"), controls.SCALES, key="sweep_scale", required=True,
                                  persist_state="session",
                                  format_func=controls.labelled(controls.SCALE_LABELS))
base = selection.base
if not catalog.accepts(base.arch, norm):
    st.info(_("This network does not take {norm}: choose another network in the sidebar for the "
              "group-size sweep.").format(norm=catalog.label(norm)))
    st.stop()
model, counts = group_sweep(base, norm)
slot, bar = st.empty(), st.empty()


def progress(done: int, total: int, label: str) -> None:
    bar.progress(done / total, text=_("Sweeping: {point}").format(point=label))  # the engine names the point


frame = views.attempt(N_("run the sweep"), lambda: cache.sweep(
    model, selection.probe, "groups", counts, on_wait=views.queue_status(slot), progress=progress), "sweep")
slot.empty()
bar.empty()
if frame is None:
    st.stop()
sweep = (model, selection.probe, tuple(counts))  # what identifies the frame: made once for every visitor
points = shared.shared("tradeoff-points", sweep, lambda: measures.tradeoff_points(frame))
fig = views.shared_chart("tradeoff", (sweep, scale), lambda: tradeoff_figure(
    points, log_y=scale == "log", uirevision=f"tradeoff-{scale}"), "tradeoff", selection)
st.dataframe(points.drop(columns=["label"]), hide_index=True)
views.export(frame, {N_("tradeoff"): fig}, selection, "groups", models=[model], over={"groups": counts})
