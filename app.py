"""normlab dashboard: page config, the shared sidebar, and navigation over the pages in pages/.

Start it with ``streamlit run app.py``. The sidebar is drawn once here for every page; each page reads
its result with ``ui.state.selection.current_selection()``. Knows nothing of torch.
"""

from __future__ import annotations

import logging
from pathlib import Path

import streamlit as st

from ui.shell.lecture import lecture_mode
from ui.shell.sidebar import sidebar
from ui.state import i18n, links
from ui.state.i18n import _
from ui.state.nav import PAGES

# A file shipped with the app, served by this server: a viewer's browser contacts no other host.
ICON = Path(__file__).parent / "ui" / "static" / "favicon.png"

asked = links.restore_once()  # an old link's ?page=...: honoured once, then the path names the page
i18n.start_session()  # the link's language, else the browser's: before any string is shown
st.set_page_config(page_title=_("normlab: normalization at initialization"), page_icon=str(ICON),
                   layout="wide")
page = st.navigation([
    st.Page(p.path, title=_(p.title), icon=p.icon, url_path=p.url_path, default=p.default) for p in PAGES
])
spec = {_(p.title): p for p in PAGES}[page.title]
if asked and asked != spec.url_path:
    target = next((p for p in PAGES if p.url_path == asked), None)
    if target is not None:
        st.switch_page(target.path)
    notice = _("unknown page {page}").format(page=repr(links.shorten(asked)))
    st.session_state[links.NOTICE_KEY].append(notice)
name = Path(spec.path).stem
lecture_mode(page)  # first in the sidebar: the claim stepper, when lecture mode is on
sidebar(name, page.url_path)  # the address it is served at: "" (the root) for the default page
links.sync_url(name)
try:
    page.run()
except Exception:  # a fault no page anticipated: logged with its traceback, shown as words, never the box
    logging.getLogger("normlab.app").exception("page %s failed", spec.url_path)
    st.error(_("This view failed on the server (the details are in its log). Reload the page, or change "
               "the choice in the sidebar."), icon=":material/error:")
