"""Placement: where a transformer's norm sits (post, pre, peri, Mix-LN, LayerNorm Scaling) and which norm
(LayerNorm, RMSNorm, DyT, Derf), side by side on the three properties at initialization."""

from dataclasses import replace

import streamlit as st

from normlab.core.config import PLACEMENTS
from ui.compute import views
from ui.content import placement as setup
from ui.figures import measures, overlays
from ui.figures import placement as figures
from ui.state import controls
from ui.state.i18n import N_, _

selection = views.header(
    _("Placement · where the norm sits in a transformer"),
    _("Each line is one transformer at initialization (width {width}, {tokens} tokens, batch {batch}, "
      "seed {seed}), the same except where its normalizer sits; one colour per placement. **Look for:** "
      "pre-LN's residual stream growing about linearly with depth while post-LN's stays at the norm's "
      "scale; post-LN's tokens aligning (token cosine toward 1) deep in the network; the last block's "
      "gradient that does not shrink with depth for post-LN but falls as 1/√L for pre-LN (Xiong et al. "
      "2020), why pre-LN trains without warm-up; and pure attention collapsing to rank one within a few "
      "blocks unless skips keep it (Dong et al. 2021).").format(
        width=setup.NET["width"], tokens=setup.NET["seq_len"], batch=setup.PROBE.batch_size,
        seed=setup.PROBE.seed),
    _("E‖x‖²/D (act_sq_norm): the mean square of a token's features at every block output (the residual "
      "stream) · token cosine (token_cos_sim): in each sequence the mean off-diagonal cosine "
      "between its T token vectors, averaged over the sequences · ‖∂L/∂W₂‖: Frobenius norm of the gradient "
      "of the FFN's second matrix in each block (next-token loss on random bytes) · token residual: "
      "‖X − 1x̄ᵀ‖_F / ‖X‖_F, the distance of a sequence's tokens from one shared row."),
)
cols = st.columns([3, 2, 1])
placements = cols[0].multiselect(_("Placements"), PLACEMENTS, key="pl_placements", persist_state="session",
                                 format_func=controls.labelled(controls.PLACEMENT_NAMES),
                                 help=" · ".join(_(controls.PLACEMENT_LABELS[p]) for p in PLACEMENTS))
norms = cols[1].multiselect(_("Normalizers"), setup.NORMS, key="pl_norms", persist_state="session",
                            format_func=controls.normalizer_labels())
show_theory = cols[2].toggle(_("Theory"), key="pl_theory", persist_state="session",
                             help=_("The laws' curves where their assumptions hold (with their source)."))
if not placements or not norms:
    st.info(_("Choose at least one placement and one normalizer."), icon=":material/info:")
    st.stop()

runs = setup.runs(placements, norms)
with st.spinner(_("Probing the transformers…"), show_time=True):
    frame = views.attempt(N_("probe the placements"), lambda: views.probe_runs(runs), "placement")
if frame is None:
    st.stop()
per_block = frame[frame["depth"] == setup.DEPTH]
base = per_block[per_block["ffn"].astype(bool) & per_block["skip"].astype(bool)]
stats = measures.aggregate(base)
collapse = measures.aggregate(frame[~frame["ffn"].astype(bool)])
sweep = frame[frame["ffn"].astype(bool) & frame["skip"].astype(bool)]
points, slopes = figures.last_block_points(sweep), figures.depth_slopes(sweep)
theory = (overlays.transformer_overlays(stats, collapse, setup.models(placements, norms),
                                        setup.collapse_models())
          if show_theory else overlays.TransformerOverlays())

left, right = st.columns(2)
with left:
    stream = figures.stream_figure(stats, theory=theory.variance)
    views.chart(stream, "placement-variance", selection)
with right:
    cosine = figures.token_cosine_figure(stats)
    views.chart(cosine, "placement-cosine", selection)
left, right = st.columns(2)
with left:
    grads = figures.weight_grad_figure(stats)
    views.chart(grads, "placement-w2", selection)
with right:
    slope = figures.depth_slope_figure(points, slopes, expected=theory.slopes)
    views.chart(slope, "placement-depth", selection)
st.caption(_("The depth sweep probes every placement at depths {depths}; the slope is a least-squares fit "
             "of log ‖∂L/∂W₂‖ against log L. The residual stream is drawn as E‖x‖²/D, the units of the "
             "pre-LN band.").format(depths=", ".join(map(str, setup.DEPTHS))))

st.subheader(_("Pure attention collapses; skips stop it"))
collapsed = figures.attention_collapse_figure(collapse, theory=theory.collapse)
views.chart(collapsed, "placement-collapse", selection)
st.caption(_("Attention-only blocks (bidirectional, no FFN, no normalizer) of depth {depth}, with and "
             "without the skip connection: Dong, Cordonnier & Loukas (ICML 2021) prove that without skips "
             "the tokens converge to one row doubly exponentially with depth.").format(
    depth=setup.COLLAPSE_DEPTH))
if show_theory and theory.withheld:
    st.caption(_("No theory curve for {networks}.").format(networks="; ".join(theory.withheld)))

with st.expander(_("The numbers")):
    st.dataframe(figures.summary_table(stats, slopes), hide_index=True, width="content")
views.export(frame, {N_("variance"): stream, N_("token cosine"): cosine, N_("weight gradients"): grads,
                     N_("depth slope"): slope, N_("collapse"): collapsed},
             replace(selection, probe=setup.PROBE), "placement", models=[m for m, _p in runs])
