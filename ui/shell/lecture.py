"""Lecture mode: larger type for a room, the probe plumbing hidden, and a step through the paper's claims.

``load_claim`` puts a claim's setup into the sidebar's controls (the "load" buttons and the stepper share
it); ``lecture_mode`` draws the stepper and the styling when the mode is on.
"""

from __future__ import annotations

import streamlit as st

from ui.content.claims import CLAIMS
from ui.state import controls as C
from ui.state.i18n import _

CLAIMS_PAGE = "pages/claims.py"
CLAIMS_URL = "paper-claims"
_GOTO_KEY = "_goto_claims"  # set by the stepper's callbacks: show the claims page on this run
LECTURE_CSS = """
<style>
  .stMainBlockContainer { font-size: 1.35rem; max-width: 100%; }
  .stMainBlockContainer h1 { font-size: 3rem; }
  .stMainBlockContainer h2, .stMainBlockContainer h3 { font-size: 2.2rem; }
  .stMainBlockContainer p, .stMainBlockContainer li { font-size: 1.35rem; }
  [data-testid="stMetricValue"] { font-size: 2.4rem; }
</style>
"""


def load_claim(index: int, goto: bool = False) -> None:
    """Set every sidebar control to claim ``index``'s setup (a widget callback: runs before the rerun)."""
    index = index % len(CLAIMS)
    for key, value in CLAIMS[index].control_values().items():
        st.session_state[key] = list(value) if isinstance(value, tuple) else value
    st.session_state["claim"] = index
    if goto:
        st.session_state[_GOTO_KEY] = True


def _step(delta: int) -> None:
    load_claim(int(st.session_state.get("claim", 0)) + delta, goto=True)


def _picked() -> None:
    load_claim(int(st.session_state.get("claim", 0)), goto=True)


def lecture_mode(page) -> None:
    """When lecture mode is on: bigger type and a claim stepper at the top of the sidebar.

    Call it before the sidebar's controls are drawn, so the stepper comes first.
    """
    if not st.session_state.get("lecture", C.DEFAULTS["lecture"]):
        return
    st.html(LECTURE_CSS)
    with st.sidebar:
        titles = [f"{i + 1}/{len(CLAIMS)} · {_(claim.title)}" for i, claim in enumerate(CLAIMS)]
        st.selectbox(_("Claim"), range(len(CLAIMS)), key="claim", persist_state="session", on_change=_picked,
                     format_func=titles.__getitem__)
        back, forward = st.columns(2)
        back.button(_("Previous"), icon=":material/arrow_back:", on_click=_step, args=(-1,), key="claim_prev",
                    width="stretch")
        forward.button(_("Next"), icon=":material/arrow_forward:", on_click=_step, args=(1,),
                       key="claim_next", width="stretch")
        st.divider()
    if st.session_state.pop(_GOTO_KEY, False) and page.url_path != CLAIMS_URL:
        st.switch_page(CLAIMS_PAGE)


def current_claim() -> int:
    value = st.session_state.get("claim", C.DEFAULTS["claim"])
    return int(value) % len(CLAIMS)
