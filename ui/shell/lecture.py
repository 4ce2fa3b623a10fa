"""Lecture mode: larger type for a room, the probe plumbing hidden, and a step through the paper's claims.

``load_claim`` puts a claim's setup into the sidebar's controls (the "load" buttons and the stepper share
it); ``lecture_mode`` draws the stepper and the styling when the mode is on. The step starts at claim 1
wherever lecture mode is entered and stops at both ends (no wrap from the last claim to the first); the
claims page puts the shown claim's setup into the sidebar before the sidebar is drawn, so both show one
setup.
"""

from __future__ import annotations

import streamlit as st

from ui.content.claims import CLAIMS
from ui.state import controls as C
from ui.state.i18n import _

CLAIMS_PAGE = "pages/claims.py"
CLAIMS_URL = "paper-claims"
_GOTO_KEY = "_goto_claims"  # set by the stepper's callbacks: show the claims page on this run
_LOADED_KEY = "_claim_loaded"  # the claim whose setup the sidebar holds
_ON_CLAIMS_KEY = "_on_claims"  # whether the last run showed the claims page (read by the callbacks)
# Every kind of text grows (never shrinks) against the desk view: Streamlit's metric value is 2.25rem and
# its paragraphs 1rem; the metric's number sits in a <p>, so it is named after the paragraph rule.
LECTURE_CSS = """
<style>
  .stMainBlockContainer { font-size: 1.35rem; max-width: 100%; padding-top: 3.5rem; }
  .stMainBlockContainer h1 { font-size: 3rem; }
  .stMainBlockContainer h2, .stMainBlockContainer h3 { font-size: 2.2rem; }
  .stMainBlockContainer p, .stMainBlockContainer li { font-size: 1.35rem; }
  .stMainBlockContainer [data-testid="stMetricValue"],
  .stMainBlockContainer [data-testid="stMetricValue"] p { font-size: 3rem; }
</style>
"""


def load_claim(index: int, goto: bool = False) -> None:
    """Set every sidebar control to claim ``index``'s setup (a widget callback: runs before the rerun)."""
    index = min(max(int(index), 0), len(CLAIMS) - 1)
    for key, value in CLAIMS[index].control_values().items():
        st.session_state[key] = list(value) if isinstance(value, tuple) else value
    st.session_state["claim"] = index
    st.session_state[_LOADED_KEY] = index
    if goto:
        st.session_state[_GOTO_KEY] = True


def entered() -> None:
    """The lecture toggle's callback: lecture mode starts at claim 1 wherever it is entered."""
    if st.session_state.get("lecture"):
        st.session_state["claim"] = 0
        st.session_state.pop(_LOADED_KEY, None)


def _step(delta: int) -> None:
    """Previous / Next: on the claims page one claim back or on; elsewhere they open the claim the stepper
    shows (claim 1 when lecture mode was just entered)."""
    claim = current_claim()
    load_claim(claim + delta if st.session_state.get(_ON_CLAIMS_KEY) else claim, goto=True)


def _picked() -> None:
    load_claim(current_claim(), goto=True)


def lecture_mode(page) -> None:
    """When lecture mode is on: bigger type and a claim stepper at the top of the sidebar.

    Call it before the sidebar's controls are drawn, so the stepper comes first and, on the claims page,
    the sidebar holds the shown claim's setup.
    """
    state = st.session_state
    if not state.get("lecture", C.DEFAULTS["lecture"]):
        return
    on_claims = page.url_path == CLAIMS_URL
    state[_ON_CLAIMS_KEY] = on_claims
    claim = current_claim()
    if on_claims and state.get(_LOADED_KEY) != claim:
        load_claim(claim)  # a link or a fresh entry: the sidebar shows the setup the chart is drawn from
    st.html(LECTURE_CSS)
    with st.sidebar:
        titles = [f"{i + 1}/{len(CLAIMS)} · {_(claim.title)}" for i, claim in enumerate(CLAIMS)]
        st.selectbox(_("Claim"), range(len(CLAIMS)), key="claim", persist_state="session", on_change=_picked,
                     format_func=titles.__getitem__)
        back, forward = st.columns(2)
        back.button(_("Previous"), icon=":material/arrow_back:", on_click=_step, args=(-1,), key="claim_prev",
                    width="stretch", disabled=claim == 0)
        forward.button(_("Next"), icon=":material/arrow_forward:", on_click=_step, args=(1,),
                       key="claim_next", width="stretch", disabled=on_claims and claim == len(CLAIMS) - 1)
        st.divider()
    if state.pop(_GOTO_KEY, False) and not on_claims:
        st.switch_page(CLAIMS_PAGE)


def current_claim() -> int:
    value = st.session_state.get("claim", C.DEFAULTS["claim"])
    return min(max(int(value), 0), len(CLAIMS) - 1)
