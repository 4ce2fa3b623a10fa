"""Shareable links: every control in the URL's query string, restored when a link is opened.

The query string holds each control that differs from its default, in plain values
(``?norms=batchnorm,layernorm&depth=12``). The page is the URL's path while browsing; a shared link
names it with ``page=`` on the app's root URL instead, because Streamlit resolves a path typed into
the address bar against the files in pages/ before the app's own navigation, and shows a
"page not found" notice for every custom path (the right page still opens). A link is read once, when
a session starts: values the controls cannot take fall back to their defaults and are listed in a
notice, never raised.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlencode

import streamlit as st

from ui import controls as C

RESTORED_KEY = "_link_restored"  # set once the session's opening link has been read
NOTICE_KEY = "_link_notices"  # what was wrong with that link


def widget_value(control: C.Control, value):
    """A control value as its widget holds it (a multiselect holds a list)."""
    return list(value) if control.kind == "choices" else value


def check_link(params: Mapping[str, list[str]]) -> tuple[dict, list[str]]:
    """A link's parameters -> (control values to restore, notices for what was dropped).

    Besides each control's own range, group settings must divide every width of the linked network.
    """
    values, notices = C.parse_params(params)
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
            notices.append(f"{key}={values[key]} does not divide every width; allowed: "
                           f"{', '.join(map(str, allowed))}")
            del values[key]
    return values, notices


def _params() -> dict[str, list[str]]:
    return {key: st.query_params.get_all(key) for key in st.query_params}


def restore_once() -> str | None:
    """On a session's first run, load the link's values into the controls.

    Returns:
        The page the link asks for with ``page=`` (a URL path), if any, so the app can go there.
    """
    state = st.session_state
    if state.get(RESTORED_KEY):
        return None
    state[RESTORED_KEY] = True
    params = _params()
    values, notices = check_link(params)
    for key, value in values.items():
        state[key] = widget_value(C.BY_KEY[key], value)
    state[NOTICE_KEY] = notices
    page = params.get(C.PAGE_PARAM)
    return page[-1] if page else None


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


def link_params(page_name: str | None, url_path: str | None = None) -> dict[str, str]:
    """Query parameters of the current view: sidebar controls and the shown page's own options.

    Args:
        page_name: the shown page's file stem (which page options belong to it).
        url_path: the shown page's URL path, written as ``page=`` (a shared link's page).
    """
    values = {k: v for k, v in current_values().items()
              if C.BY_KEY[k].page is None or C.BY_KEY[k].page == page_name}
    return C.to_params(values, page=url_path)


def sync_url(page_name: str | None) -> None:
    """Write the view into the browser's URL (only when it changed, to keep history clean)."""
    params = link_params(page_name)
    if st.query_params.to_dict() != params:
        st.query_params.from_dict(params)


def share_url(page_name: str | None, url_path: str | None) -> str:
    """The full link to this view, for the "copy link" box: the app's root URL, page and controls."""
    url = (st.context.url or "http://localhost:8501/").rstrip("/")
    if url_path and url.endswith("/" + url_path):
        url = url[: -len(url_path) - 1]
    return f"{url}/?{urlencode(link_params(page_name, url_path))}"


def notices() -> list[str]:
    return st.session_state.get(NOTICE_KEY, [])
