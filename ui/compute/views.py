"""The Streamlit pieces every page shares: header, measuring with every outcome shown, the chart, the export.

Pages stay descriptions of their UI; what they have in common lives here. ``attempt`` is the one place
that turns what the engine can raise into a page's own message with a Retry button: nothing reaches
Streamlit's error box, and tracebacks go to the server's log, never to the page. The page's words are
translated (``ui.state.i18n``); the engine's own message, quoted in them, stays as the engine wrote it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from normlab.core.deadline import ComputeTimeout
from normlab.ops.budget import BudgetExceeded
from normlab.ops.serving import QueueStatus, QueueTimeout
from ui.compute import cache, shared
from ui.compute.export import FIGURE_SCALE, export_panel
from ui.figures.style import lecture_style
from ui.state.i18n import N_, _
from ui.state.links import markdown_text
from ui.state.selection import Selection, current_selection

T = TypeVar("T")
log = logging.getLogger("normlab.dashboard")


def header(title: str, look_for: str, definition: str) -> Selection:
    """Title, what to look for and the exact metric definition; returns the sidebar's selection."""
    st.title(title)
    st.markdown(look_for)
    st.caption(definition)
    return current_selection()


def is_stopped(err: BaseException) -> bool:
    """The engine stopped a computation at the operator's hard time limit."""
    return isinstance(err, ComputeTimeout)


def outcome_message(what: str, err: Exception) -> str:
    """The page's words for an engine outcome; engine text is escaped, never rendered as markdown.

    Args:
        what: what the page was doing, an English verb phrase marked with ``N_`` (shown translated).
    """
    said = {"what": _(what), "detail": markdown_text(str(err))}
    if isinstance(err, BudgetExceeded):
        return _("Cannot {what}: over this server's limits. {detail}").format(**said)
    if isinstance(err, QueueTimeout):
        return _("Cannot {what} now: {detail}").format(**said)
    if is_stopped(err):
        return _("Cannot {what}: the computation was stopped at this server's time limit. {detail}").format(
            **said)
    if isinstance(err, ValueError):
        return _("Cannot {what}: {detail}").format(**said)
    if isinstance(err, (OverflowError, MemoryError)):
        return _("Cannot {what}: the numbers or the memory this needs are beyond this machine.").format(
            **said)
    return _("Cannot {what}: something went wrong on the server (it is logged). Try again, or change the "
             "choice.").format(**said)


def attempt(what: str, fn: Callable[[], T], key: str) -> T | None:
    """``fn()``, or its failure shown as this page's message with a Retry button (then None).

    Args:
        what: what the page was doing, as an English verb phrase marked with ``N_`` ("probe this
            choice"): the message shows it translated, the server's log in English.
        key: a key unique on the page, for the Retry button.
    """
    try:
        return fn()
    except Exception as err:  # Streamlit's stop and rerun are BaseExceptions: they pass through
        if not isinstance(err, (ValueError, QueueTimeout)) and not is_stopped(err):
            log.exception("%s failed", what)  # the traceback goes to the server log only
        st.error(outcome_message(what, err), icon=":material/error:")
        st.button(_("Retry"), key=f"retry-{key}", icon=":material/refresh:")  # a click reruns the page
        return None


def wait_message(status: QueueStatus) -> str:
    """The serving gate's ``QueueStatus`` in the page's words (the gate's own ``message`` is English)."""
    said = {"position": status.position, "waiting": status.waiting, "running": status.running,
            "limit": status.limit, "waited": f"{status.waited_s:.0f}"}
    if status.state == "queued":
        return _("queued, position {position} of {waiting} ({running} of {limit} probes computing; "
                 "waited {waited} s)").format(**said)
    if status.state == "shared" and status.position:
        return _("an identical probe is queued at position {position}; its result will be shared "
                 "(waited {waited} s)").format(**said)
    if status.state == "shared":
        return _("an identical probe is computing; its result will be shared")
    return _("computing")


def queue_status(slot) -> cache.OnWait:
    """``on_wait`` for the serving gate: this session's place in the queue, drawn in ``slot``."""
    return lambda status: slot.info(wait_message(status), icon=":material/hourglass_top:")


def probe_runs(runs) -> pd.DataFrame:
    """Probe (network, probe) pairs, admitted together first; queue places drawn here, then cleared."""
    slot = st.empty()
    try:
        cache.admit(runs)
        return pd.concat([cache.probe(m, p, on_wait=queue_status(slot)) for m, p in runs], ignore_index=True)
    finally:
        slot.empty()


def measure(selection: Selection) -> pd.DataFrame | None:
    """Probe every compared network (admitted together, then each from the store or computed)."""
    slot = st.empty()

    def run() -> pd.DataFrame:
        cache.admit([(m, selection.probe) for m in selection.models])  # refused before any queueing
        with st.spinner(_("Probing at initialization…"), show_time=True):
            return cache.probe_all(selection.models, selection.probe, on_wait=queue_status(slot))

    try:
        return attempt(N_("probe this choice"), run, "measure")
    finally:
        slot.empty()


def chart_config(filename: str, image_format: str = "png") -> dict:
    """Plotly config: the modebar's camera exports the figure at publication resolution.

    This is how every figure is exported (the export panel says so): plotly's own image export, in the
    viewer's browser, so the server needs no headless Chrome and the image has the fonts the page shows.
    """
    return {
        "displaylogo": False,
        "toImageButtonOptions": {"format": image_format, "filename": filename, "scale": FIGURE_SCALE},
    }


def chart(fig: go.Figure, key: str, selection: Selection, *, styled: bool = False) -> None:
    """Draw a figure under a fixed key, so its zoom (``uirevision``) survives reruns.

    Args:
        styled: the figure is already in the selection's mode (a ``shared_chart`` figure): drawn as it is.
    """
    if selection.lecture and not styled:
        fig = lecture_style(fig)
    st.plotly_chart(fig, key=key, config=chart_config(f"normlab-{key}"))


def runs(selection: Selection) -> tuple:
    """What identifies ``measure(selection)``'s frame: its networks and probe (the shared caches' key)."""
    return selection.models, selection.probe


def statistics(frame: pd.DataFrame, selection_or_runs) -> pd.DataFrame:
    """The frame's seed statistics (``measures.aggregate``), made once per result and language.

    Args:
        selection_or_runs: the selection ``measure`` probed, or the (network, probe) pairs of the frame.
    """
    key = runs(selection_or_runs) if isinstance(selection_or_runs, Selection) else tuple(selection_or_runs)
    return shared.statistics(frame, key)


def shared_chart(what: str, key, make: Callable[[], go.Figure], chart_key: str,
                 selection: Selection) -> go.Figure:
    """``make()``'s figure, built once per (what, key, language, mode) for every session, drawn as ``chart``.

    Args:
        what: names the figure; ``key``: everything ``make`` reads (the result's configs, the view's
            options). The figure returned is shared: read it (its export name), never change it.
    """
    fig = shared.figure(what, key, make, lecture=selection.lecture)
    chart(fig, chart_key, selection, styled=True)
    return fig


def export(frame: pd.DataFrame, figures: dict[str, go.Figure], selection: Selection, name: str, *,
           models=None, over: dict | None = None) -> None:
    """The export panel under a view: data, figures, and the code that reproduces the numbers.

    Args:
        models: the networks the frame came from (default: the selection's); a sweep's base network.
        over: the sweep's field -> values, when the frame is a sweep.
    """
    if not selection.lecture:
        export_panel(frame, figures, models or selection.models, selection.probe, name, over)
