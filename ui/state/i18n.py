"""The dashboard's language: every visible string through gettext's translations, English or Korean.

Strings are written in English in the code and wrapped in ``_()`` where they are shown; strings made
at import time (tables of labels) are marked with ``N_()`` and passed through ``_()`` where they are
shown. Babel extracts both into ``ui/locale/normlab.pot`` and compiles ``ui/locale/<lang>/LC_MESSAGES
/normlab.po`` into the ``.mo`` that gettext reads here (``python scripts/i18n.py``, see its help).

The language is the session's: a link's ``lang=``, else the sidebar's choice, else the browser's
(``st.context.locale``), else English. Terms of the field (BatchNorm, act_var, cos_sim, ...) are
not translated; their explanations are. The engine and the CLI stay English: their messages are part
of the API, and a page that shows one (a refusal from the budget) shows it as the engine wrote it,
under a translated heading.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import gettext
from collections.abc import Iterator
from pathlib import Path

DOMAIN = "normlab"
LOCALE_DIR = Path(__file__).resolve().parents[1] / "locale"  # ui/locale
LANGUAGES = ("en", "ko")  # the source language first
LANGUAGE_NAMES = {"en": "English", "ko": "한국어"}  # each in its own language, as a menu shows them
DEFAULT = "en"
KEY = "lang"  # the session-state key and link parameter (a control of ui.state.controls)
# Outside a session (tests, exports built by hand) the language is this context's, ``use(lang)``.
_context: contextvars.ContextVar[str | None] = contextvars.ContextVar("normlab_lang", default=None)


def N_(message: str) -> str:
    """Mark ``message`` for translation without translating it (for tables built at import time)."""
    return message


@functools.cache
def translations(lang: str) -> gettext.NullTranslations:
    """The compiled translations of ``lang`` (the source language: the strings as written)."""
    if lang == DEFAULT:
        return gettext.NullTranslations()
    return gettext.translation(DOMAIN, LOCALE_DIR, languages=[lang])


def from_locale(locale: str | None) -> str:
    """A browser's ``navigator.language`` (``ko-KR``, ``en-US``, ...) -> one of LANGUAGES."""
    code = (locale or "").replace("_", "-").split("-")[0].lower()
    return code if code in LANGUAGES else DEFAULT


def _session_lang() -> str | None:
    try:
        from streamlit.runtime.scriptrunner import get_script_run_ctx
    except ImportError:  # pragma: no cover - streamlit is a dependency of the dashboard
        return None
    if get_script_run_ctx(suppress_warning=True) is None:
        return None
    import streamlit as st

    lang = st.session_state.get(KEY)
    return lang if lang in LANGUAGES else None


def current() -> str:
    """The language strings are shown in now: ``use``'s, else the session's, else English."""
    return _context.get() or _session_lang() or DEFAULT


def _(message: str) -> str:
    """``message`` in the current language (itself where the translations have no entry)."""
    return translations(current()).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    """The singular or plural form for ``n`` in the current language."""
    return translations(current()).ngettext(singular, plural, n)


@contextlib.contextmanager
def use(lang: str) -> Iterator[None]:
    """Show strings in ``lang`` inside the block, whatever the session says (tests, exports)."""
    if lang not in LANGUAGES:
        raise ValueError(f"lang must be one of {', '.join(LANGUAGES)}; got {lang!r}")
    token = _context.set(lang)
    try:
        yield
    finally:
        _context.reset(token)


def choose(link_or_choice: str | None, browser_locale: str | None) -> str:
    """The session's language when it starts: the link's (or an earlier choice), else the browser's."""
    return link_or_choice if link_or_choice in LANGUAGES else from_locale(browser_locale)


def start_session() -> None:
    """Give the session its language on its first run (after the link is read, before any string)."""
    import streamlit as st

    state = st.session_state
    if state.get(KEY) not in LANGUAGES:
        state[KEY] = choose(None, st.context.locale)


def _choice(value) -> bool:
    """A value a choice widget holds: a plain option, or a non-empty list of them (not a flag, not files)."""
    plain = (str, int, float)
    if isinstance(value, bool):
        return False  # toggles and checkboxes travel as flags; buttons' flags may not be set at all
    if isinstance(value, plain):
        return True
    return isinstance(value, (list, tuple)) and bool(value) and all(
        isinstance(v, plain) and not isinstance(v, bool) for v in value)


def keep_values() -> None:
    """The language control's callback: pin the choice widgets' values in session state before the rerun.

    A selectbox or multiselect sends its choice back as the label it showed; after a change of language
    the labels differ, and the choice would come back as an unknown string ("ResNet (choose the size)"
    where "resnet" is meant). Callbacks still read the old labels, so writing each value back here keeps
    it, in the options' own terms, for the run in the new language. Flags and uploaded files are left
    alone (their values do not depend on labels, and an uploader's may not be set).
    """
    import streamlit as st

    state = st.session_state
    for key in list(state.keys()):
        if key != KEY and _choice(value := state[key]):
            state[key] = value
