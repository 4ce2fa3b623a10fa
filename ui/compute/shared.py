"""What every visitor of a config sees alike, made once per server process and handed to every session.

A page's result (the frame of its (network, probe) configs) is the same for all its visitors, and so
are its seed statistics, the numbers read off them and its figures, for a given language and lecture
mode. Streamlit's own caches hold them, so a second visitor of a computed config costs the server
little more than sending the page:

* ``statistics``: ``measures.aggregate`` in ``st.cache_data`` (each session gets its own copy);
* ``shared`` and ``figure``: derived values and figures in ``st.cache_resource``: one object for every
  session, so whoever receives one must not change it (``views.chart`` draws it as it is).

Keys are what identifies a result, its configs (the store's record keys), never the frame itself
(hashing a frame would cost each visit milliseconds per result), plus the view's options; the
language (every label is translated) and lecture mode (larger type) are always part of the key.
Each cache is bounded by ``max_entries`` (least recently used dropped first; the bounds below say what
they hold) and lives as long as the server process (``clear`` empties them, for tests).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TypeVar

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from ui.figures import measures
from ui.figures.style import lecture_style
from ui.state import i18n

T = TypeVar("T")

# Seed statistics of a result, per language: a lecture's eight claims and every page's default view in
# both languages fit many times over (each a few hundred kB of floats).
STATISTICS_ENTRIES = 128
# Derived numbers (verdicts, growths, labels) per result, option and language: small, a few kB each.
SHARED_ENTRIES = 512
# Figures per result, view option, language and mode: a lecture's claims and every page's default views
# in both languages and modes are ~80; a figure holds its traces' arrays (tens of kB, a few MB for the
# rank page's animation), so this bounds them to a few hundred MB at most.
FIGURE_ENTRIES = 160


@st.cache_data(max_entries=STATISTICS_ENTRIES, show_spinner=False)
def _statistics(runs: str, lang: str, _frame: pd.DataFrame) -> pd.DataFrame:
    return measures.aggregate(_frame)


def _key(key: Hashable) -> str:
    """The key as Streamlit hashes it: its repr, exact for frozen configs and plain values (a dataclass's
    repr names every field) and hashed in microseconds, where Streamlit's walk through the configs' fields
    cost a claims visit tens of milliseconds."""
    return key if isinstance(key, str) else repr(key)


def statistics(frame: pd.DataFrame, runs: Hashable) -> pd.DataFrame:
    """``measures.aggregate(frame)`` (seed statistics and series labels), made once per (runs, language).

    Args:
        runs: what determines ``frame``: its (network, probe) configs, in the frame's order.
    """
    return _statistics(_key(runs), i18n.current(), frame)


@st.cache_resource(max_entries=SHARED_ENTRIES, show_spinner=False)
def _shared(what: str, key: str, lang: str, _make: Callable[[], T]) -> T:
    return _make()


@st.cache_resource(max_entries=FIGURE_ENTRIES, show_spinner=False)
def _figure(what: str, key: str, lang: str, lecture: bool, _make: Callable[[], go.Figure]) -> go.Figure:
    fig = _make()
    return lecture_style(fig) if lecture else fig


def shared(what: str, key: Hashable, make: Callable[[], T]) -> T:
    """``make()``, once per (what, key, language) for every session of this process: do not change it.

    Args:
        what: names ``make`` (the view and the value), so that two values of one key differ.
        key: everything ``make`` reads: the result's configs and the view's options.
    """
    return _shared(what, _key(key), i18n.current(), make)


def figure(what: str, key: Hashable, make: Callable[[], go.Figure], *, lecture: bool) -> go.Figure:
    """As ``shared``, for a figure: ``make()``'s figure, in lecture mode in its larger type
    (``lecture_style``), once per (what, key, language, mode). Draw it with ``views.chart``; do not change it.
    """
    return _figure(what, _key(key), i18n.current(), lecture, make)


def clear() -> None:
    """Forget every shared value (tests open a 'fresh process')."""
    _statistics.clear()
    _shared.clear()
    _figure.clear()
