"""Overview: the paper's three properties for the current choice, side by side, and where to start."""

import math

import streamlit as st

from normlab.science import summary
from ui.compute import shared, views
from ui.content.claims import BY_KEY, CLAIMS
from ui.figures import measures
from ui.figures.depth import overview_figure
from ui.shell.lecture import load_claim
from ui.state import controls
from ui.state.i18n import N_, _

# A first visit: one claim per property, each loading its setup and opening the page that shows it.
START_HERE = (
    (N_("1 · Variance"), "linear",
     N_("a ResNet's variance grows linearly with a normalizer, exponentially without")),
    (N_("2 · Rank collapse"), "bn_rank",
     N_("without BatchNorm the samples' features collapse onto one direction")),
    (N_("3 · Gradients"), "gradients",
     N_("small groups and InstanceNorm make gradients explode toward the input")),
)
# The engine's growth shapes (normlab.science.summary), as a card names them.
SHAPES = {summary.LINEAR: N_("linear"), summary.EXP_GROWTH: N_("exponential growth"),
          summary.EXP_DECAY: N_("exponential decay"), summary.FLAT: N_("flat")}


TOKEN_DEFINITIONS = _(
    "For a transformer: act_var is per feature over (N, T) at every block output (the residual stream), "
    "the token cosine (token_cos_sim) is in each sequence the mean off-diagonal cosine between its T token "
    "vectors, averaged over the sequences, and grad_norm is read at every linear map (W_Q, W_K, W_V, W_O, "
    "W_1, W_2 of each block, then the head). The Placement page compares where the norm sits.")


def _shown(value: float, fmt: str, prefix: str = "") -> str:
    """A card's number, or "overflow" where the measurement overflowed (never "nan")."""
    return f"{prefix}{value:{fmt}}" if math.isfinite(value) else _("overflow")


def _per_block(growth: summary.Growth) -> str:
    """A card's growth, ``Growth.short()`` in the page's words: +0.31/block, ×2.1/block or flat."""
    if growth.shape == summary.FLAT:
        return _(SHAPES[growth.shape])
    exponential = growth.shape in (summary.EXP_GROWTH, summary.EXP_DECAY)
    rate = f"×{growth.ratio:.3g}" if exponential else f"{growth.per_block:+.2f}"
    return _("{rate}/block").format(rate=rate)


def _open(key: str) -> None:
    index = next(i for i, c in enumerate(CLAIMS) if c.key == key)
    load_claim(index)
    st.session_state["_start_here"] = BY_KEY[key].page


selection = views.header(
    _("Normalization at initialization: the three properties"),
    _("Each line is one network of the sidebar, probed once at initialization. **Look for:** variance that "
      "grows linearly (not exponentially) with depth, cosine similarity that stays below 1 (no rank "
      "collapse), and gradient norms that do not blow up toward the input."),
    _("act_var: per-channel variance over (N,H,W), averaged over channels · cos_sim: mean off-diagonal "
      "entry of the Gram matrix of L2-normalized samples · grad_norm: Frobenius norm over the batch of "
      "∂L/∂z at every conv/linear output z (cross-entropy against random labels)."),
)
# A transformer's rank collapse is among a sequence's tokens (Noci et al.): its similarity is token_cos_sim.
tokens = controls.is_transformer(selection.base.arch)
if tokens:
    st.caption(TOKEN_DEFINITIONS)
if "_start_here" in st.session_state:
    st.switch_page(f"pages/{st.session_state.pop('_start_here')}.py")
if not selection.lecture:
    with st.container(border=True):
        st.markdown(_("**Start here:** three steps through the paper, each loads its example into the "
                      "sidebar."))
        for column, (title, key, text) in zip(st.columns(len(START_HERE)), START_HERE, strict=True):
            column.button(_(title), key=f"start-{key}", on_click=_open, args=(key,), width="stretch",
                          icon=":material/play_arrow:", help=_(text))
            column.caption(_(text))
frame = views.measure(selection)
if frame is None:
    st.stop()
runs = views.runs(selection)
similar = "token_cos_sim" if tokens else "cos_sim"


def cards() -> tuple:
    """Per series: variance growth, final similarity and rank, gradient growth; and the overflowed ones."""
    stats = views.statistics(frame, runs)
    return (measures.depth_growths(stats, "act_var"), measures.final_value(stats, similar),
            measures.final_value(stats, "stable_rank"), measures.gradient_growth(stats),
            set(stats.loc[stats["overflow"], "series"]))


# the same for every visitor of this choice: made once (per language), shared, read here
growth, similarity, rank, gradients, overflowed = shared.shared("overview-cards", runs, cards)
for series, column in zip(growth, st.columns(len(growth)), strict=True):
    with column.container(border=True):
        st.markdown(f"**{series}**")
        g = growth[series]
        if g.shape == summary.UNKNOWN:
            st.metric(_("1 · variance growth"), _("overflow") if series in overflowed else "—")
        else:
            st.metric(_("1 · variance growth ({shape})").format(shape=_(SHAPES[g.shape])), _per_block(g))
        cos, r = similarity.get(series, math.nan), rank.get(series, math.nan)
        both = _("overflow") if not (math.isfinite(cos) or math.isfinite(r)) else (
            f"{_shown(cos, '.3f')} / {_shown(r, '.1f')}")
        card = _("2 · final token cosine / stable rank") if tokens else _("2 · final cos_sim / stable rank")
        st.metric(card, both)
        st.metric(_("3 · gradient growth (first / last hidden)"),
                  _shown(gradients.get(series, math.nan), ".3g", "×"))
fig = views.shared_chart("overview", runs, lambda: overview_figure(views.statistics(frame, runs),
                                                                   similarity=similar), "overview", selection)
views.export(frame, {N_("overview"): fig}, selection, "overview")
