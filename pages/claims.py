"""Paper claims: one card per claim, each with its setup, picture and a verdict measured live.

In lecture mode one claim fills one 1920×1080 screen: its title, the sentence that states it beside the
verdict, then its chart.
"""

from functools import partial

import streamlit as st

from ui.compute import shared, views
from ui.content.claims import CLAIMS
from ui.shell.lecture import current_claim, load_claim
from ui.state.i18n import N_, _
from ui.state.selection import current_selection

TITLE = _("The paper's claims, measured live")
if current_selection().lecture:  # the claim's own title heads the screen: its words and chart fit below
    selection = current_selection()
else:
    selection = views.header(
        TITLE,
        _("Each card states one claim of *Beyond BatchNorm* (Lubana, Dick & Tanaka, NeurIPS 2021) or the "
          "work it builds on, probes the networks it needs and says whether the measurement agrees. **Load** "
          "puts the setup into the sidebar so every page shows it."),
        _("Verdicts are computed from the probe frames (seed means): growth shapes from line fits on linear "
          "and log scales, similarities and ranks at the final features, gradient growth as ‖∂L/∂z‖ at the "
          "first layer over the last hidden layer."),
    )
shown = [current_claim()] if selection.lecture else range(len(CLAIMS))
for index in shown:
    claim = CLAIMS[index]
    with st.container(border=True):
        st.subheader(f"{index + 1}. {_(claim.title)}")
        if not selection.lecture:
            st.markdown(_(claim.sentence))
        runs = claim.runs()
        with st.spinner(_("Measuring…"), show_time=True):
            frame = views.attempt(N_("measure this claim"), partial(views.probe_runs, runs), claim.key)
        if frame is None:
            continue
        # made once for every visitor (per language and mode): the statistics only when one is made
        judged = partial(claim.verdict, frame)
        verdict = shared.shared(f"verdict:{claim.key}", runs,
                                lambda: judged(views.statistics(frame, runs)))  # noqa: B023 (called here)
        show = {True: st.success, False: st.warning, None: st.info}[verdict.holds]
        said = _("**Verdict: {label}.** {text}").format(label=verdict.label, text=verdict.text)
        if selection.lecture:  # the claim and its verdict side by side, above the chart: one screen
            words, verdict_box = st.columns(2)
            words.markdown(_(claim.sentence))
            with verdict_box:
                show(said, icon=":material/fact_check:")
        else:
            show(said, icon=":material/fact_check:")
        views.shared_chart(f"claim:{claim.key}", runs,
                           lambda: claim.picture(frame, views.statistics(frame, runs)),  # noqa: B023
                           f"claim-{claim.key}", selection)
        load, see = st.columns([1, 2])
        load.button(_("Load into the sidebar"), key=f"load-{claim.key}", icon=":material/input:",
                    on_click=load_claim, args=(index,))
        see.page_link(f"pages/{claim.page}.py", icon=":material/arrow_forward:")  # labelled with its title
