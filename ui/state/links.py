"""Shareable links: every control in the URL's query string, restored when a link is opened.

The query string holds each control that differs from its default, in plain values
(``?norms=batchnorm,layernorm&depth=12``); the page is the URL's path (``/variance-growth``), the
same whether typed, clicked or shared. A link is read once, when a session starts: values the controls
cannot take fall back to their defaults and are listed in a notice, never raised.

A link is data, never markup: whatever it holds is shown as plain text (``st.text``) cut to
``SHOWN_CHARS``, and a link with more than ``MAX_PARAMS`` parameters, or a parameter (key or value)
longer than ``MAX_PARAM_CHARS``, is refused by its length before anything parses it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import urlencode

import streamlit as st

from ui.state import controls as C
from ui.state import i18n
from ui.state.i18n import _

RESTORED_KEY = "_link_restored"  # set once the session's opening link has been read
NOTICE_KEY = "_link_notices"  # what was wrong with that link
SHOWN_CHARS = 40  # a link's value is shown cut to this many characters
MAX_PARAM_CHARS = 200  # longer than any valid value (every normalizer listed is ~90 characters)
MAX_PARAMS = 2 * len(C.CONTROLS) + 2  # every control, repeated multi-choice values and an old page=
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|:<>~$&=])")


def shorten(text: str, limit: int = SHOWN_CHARS) -> str:
    """``text`` cut to ``limit`` characters, with "…" when it was longer."""
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def markdown_text(text: str) -> str:
    """``text`` escaped so that markdown shows it literally: no link, image, colour, emoji or HTML."""
    return _MARKDOWN.sub(r"\\\1", str(text))


def _screen(params: Mapping[str, list[str]]) -> tuple[dict[str, list[str]], list[str]]:
    """Drop what is too long or too many by length alone, before any parsing; notices say what went."""
    notices = []
    if len(params) > MAX_PARAMS:
        return {}, [_("the link has {count} parameters; at most {limit} are read, so none was").format(
            count=len(params), limit=MAX_PARAMS)]
    kept = {}
    for key, values in params.items():
        if len(key) > MAX_PARAM_CHARS:
            notices.append(_("a parameter name of {length} characters (at most {limit})").format(
                length=len(key), limit=MAX_PARAM_CHARS))
            continue
        if len(values) > MAX_PARAMS or any(len(v) > MAX_PARAM_CHARS for v in values):
            notices.append(_("{key}: a value over {limit} characters").format(
                key=shorten(key), limit=MAX_PARAM_CHARS))
            continue
        kept[key] = values
    return kept, notices


def widget_value(control: C.Control, value):
    """A control value as its widget holds it (a multiselect holds a list)."""
    return list(value) if control.kind == "choices" else value


def check_link(params: Mapping[str, list[str]]) -> tuple[dict, list[str]]:
    """A link's parameters -> (control values to restore, notices for what was dropped).

    Besides each control's own range, group settings must divide every width of the linked network.
    """
    params, notices = _screen(params)
    values = {}
    for key, raw in params.items():
        if key == C.PAGE_PARAM:
            continue
        value, said = C.parse_params({key: raw})
        values.update(value)
        # The controls quote the link's text in full; a notice shows it cut, like every link value.
        texts = [key, *raw, ",".join(raw)]
        for notice in said:
            for text in sorted(set(texts), key=len, reverse=True):
                if len(text) > SHOWN_CHARS:
                    notice = notice.replace(repr(text), repr(shorten(text))).replace(text, shorten(text))
            notices.append(notice)
    v = {**C.DEFAULTS, **values}
    for key in ("groups", "group_size"):
        if key not in values:
            continue
        try:
            allowed = C.group_choices(v["net"], v["width"], v["stages"])
        except ValueError as err:
            notices.append(f"{key}: {err}")
            del values[key]
            continue
        if values[key] not in allowed:
            notices.append(_("{key}={value} does not divide every width; allowed: {allowed}").format(
                key=key, value=values[key], allowed=", ".join(map(str, allowed))))
            del values[key]
    notices += _check_network(values, v)
    return values, notices


def _check_network(values: dict, v: Mapping[str, object]) -> list[str]:
    """Refuse (drop, with a notice) a linked normalizer the linked network does not take, and a head
    count that does not divide the linked width."""
    notices = []
    if "norms" in values:
        offered = C.offered_norms(v["net"])
        bad = [n for n in values["norms"] if n not in offered]
        if bad:
            notices.append(_("norms={value}: {names} do not apply to {net}; allowed: {allowed}").format(
                value=repr(shorten(",".join(values["norms"]))), names=", ".join(bad), net=v["net"],
                allowed=", ".join(offered)))
            kept = tuple(n for n in values["norms"] if n in offered)
            if kept:
                values["norms"] = kept
            else:
                del values["norms"]
    if "heads" in values and C.is_transformer(v["net"]):
        allowed = C.head_choices(v["width"])
        if values["heads"] not in allowed:
            notices.append(_("heads={value} does not divide the width {width}; allowed: {allowed}").format(
                value=values["heads"], width=v["width"], allowed=", ".join(map(str, allowed))))
            del values["heads"]
    return notices


def _params() -> dict[str, list[str]]:
    return {key: st.query_params.get_all(key) for key in st.query_params}


def restore_once() -> str | None:
    """On a session's first run, load the link's values into the controls.

    Returns:
        The page an old link names with ``page=`` (before pages were addressed by their path), if any,
        so the app can open it once; a current link names its page by its path alone.
    """
    state = st.session_state
    if state.get(RESTORED_KEY):
        return None
    state[RESTORED_KEY] = True
    params = _params()
    # The notices speak the language the session is about to take: the link's, else the browser's.
    link_lang = (params.get(i18n.KEY) or [None])[-1]
    with i18n.use(i18n.choose(link_lang, st.context.locale)):
        values, notices = check_link(params)
    for key, value in values.items():
        state[key] = widget_value(C.BY_KEY[key], value)
    i18n.start_session()
    state[NOTICE_KEY] = notices
    page = params.get(C.PAGE_PARAM)
    if not page or len(page[-1]) > MAX_PARAM_CHARS:
        return None
    return page[-1]


def init_state() -> None:
    """Give every control its default where this session has no value yet."""
    for control in C.CONTROLS:
        st.session_state.setdefault(control.key, widget_value(control, control.default))


def current_values() -> dict:
    """Every control's value in this session, in the controls' own types."""
    state = st.session_state
    out = {}
    for control in C.CONTROLS:
        value = state.get(control.key, control.default)
        out[control.key] = tuple(value) if control.kind == "choices" and value is not None else value
    return out


def link_params(page_name: str | None) -> dict[str, str]:
    """Query parameters of the current view: sidebar controls and the shown page's own options.

    Args:
        page_name: the shown page's file stem (which page options belong to it).
    """
    values = {k: v for k, v in current_values().items()
              if C.BY_KEY[k].page is None or C.BY_KEY[k].page == page_name}
    return C.to_params(values)


def sync_url(page_name: str | None) -> None:
    """Write the view into the browser's URL (only when it changed, to keep history clean)."""
    params = link_params(page_name)
    if st.query_params.to_dict() != params:
        st.query_params.from_dict(params)


def share_url(page_name: str | None, url_path: str | None) -> str:
    """The full link to this view, for the "copy link" box: the page's own path and its controls."""
    url = (st.context.url or "http://localhost:8501/").split("?")[0].rstrip("/")
    if url_path and url.endswith("/" + url_path):
        url = url[: -len(url_path) - 1]
    path = f"/{url_path}" if url_path else "/"
    query = urlencode(link_params(page_name))
    return f"{url}{path}" + (f"?{query}" if query else "")


SHARE_KEY = "_share_box"  # where the sidebar drew the share link this run, for a page's fragment


def share_box(page_name: str | None, url_path: str | None) -> None:
    """The link to this view as a code box (its copy button copies it), kept for ``follow_view``."""
    box = st.empty()
    box.code(share_url(page_name, url_path), language=None, wrap_lines=True)
    st.session_state[SHARE_KEY] = (box, page_name, url_path)


def follow_view() -> None:
    """For a page's fragment (``st.fragment``): the address bar and the share link follow its options.

    A fragment's rerun skips the page's top and the sidebar, which write them on a full run; the fragment
    writes them again here, into the share box's place (Streamlit keeps that place for the fragment).
    """
    box, page_name, url_path = st.session_state[SHARE_KEY]
    sync_url(page_name)
    box.code(share_url(page_name, url_path), language=None, wrap_lines=True)


def notices() -> list[str]:
    return st.session_state.get(NOTICE_KEY, [])


def show_notices() -> None:
    """What was wrong with the opening link, as plain text: a link's content is never markup."""
    if notices():
        st.warning(_("Some link parameters were not valid and fell back to defaults:"),
                   icon=":material/link_off:")
        st.text("\n".join(notices()))
