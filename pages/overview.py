"""Overview: the paper's three properties for the current choice, side by side, and where to start."""

import math

import streamlit as st

from ui import figures, measures, views
from ui.claims import BY_KEY, CLAIMS
from ui.lecture import load_claim

# A first visit: one claim per property, each loading its setup and opening the page that shows it.
START_HERE = (
    ("1 · Variance", "linear", "a ResNet's variance grows linearly with a normalizer, exponentially without"),
    ("2 · Rank collapse", "bn_rank", "without BatchNorm the samples' features collapse onto one direction"),
    ("3 · Gradients", "gradients", "small groups and InstanceNorm make gradients explode toward the input"),
)


def _shown(value: float, fmt: str, prefix: str = "") -> str:
    """A card's number, or "overflow" where the measurement overflowed (never "nan")."""
    return f"{prefix}{value:{fmt}}" if math.isfinite(value) else "overflow"


def _open(key: str) -> None:
    index = next(i for i, c in enumerate(CLAIMS) if c.key == key)
    load_claim(index)
    st.session_state["_start_here"] = BY_KEY[key].page


selection = views.header(
    "Normalization at initialization: the three properties",
    "Each line is one network of the sidebar, probed once at initialization. **Look for:** variance that "
    "grows linearly (not exponentially) with depth, cosine similarity that stays below 1 (no rank "
    "collapse), and gradient norms that do not blow up toward the input.",
    "act_var: per-channel variance over (N,H,W), averaged over channels · cos_sim: mean off-diagonal "
    "entry of the Gram matrix of L2-normalized samples · grad_norm: Frobenius norm over the batch of "
    "∂L/∂z at every conv/linear output z (cross-entropy against random labels).",
)
if "_start_here" in st.session_state:
    st.switch_page(f"pages/{st.session_state.pop('_start_here')}.py")
if not selection.lecture:
    with st.container(border=True):
        st.markdown("**Start here:** three steps through the paper, each loads its example into the sidebar.")
        for column, (title, key, text) in zip(st.columns(len(START_HERE)), START_HERE, strict=True):
            column.button(title, key=f"start-{key}", on_click=_open, args=(key,), width="stretch",
                          icon=":material/play_arrow:", help=text)
            column.caption(text)
frame = views.measure(selection)
if frame is None:
    st.stop()
stats = measures.aggregate(frame)
growth = measures.depth_growths(stats, "act_var")
similarity = measures.final_value(stats, "cos_sim")
rank = measures.final_value(stats, "stable_rank")
gradients = measures.gradient_growth(stats)
overflowed = set(stats.loc[stats["overflow"], "series"])
for series, column in zip(growth, st.columns(len(growth)), strict=True):
    with column.container(border=True):
        st.markdown(f"**{series}**")
        g = growth[series]
        if g.shape == "unknown":
            st.metric("1 · variance growth", "overflow" if series in overflowed else "—")
        else:
            st.metric(f"1 · variance growth ({g.shape})", g.short())
        cos, r = similarity.get(series, math.nan), rank.get(series, math.nan)
        both = "overflow" if not (math.isfinite(cos) or math.isfinite(r)) else (
            f"{_shown(cos, '.3f')} / {_shown(r, '.1f')}")
        st.metric("2 · final cos_sim / stable rank", both)
        st.metric("3 · gradient growth (first / last hidden)",
                  _shown(gradients.get(series, math.nan), ".3g", "×"))
fig = figures.overview_figure(stats)
views.chart(fig, "overview", selection)
views.export(frame, {"overview": fig}, selection, "overview")
