"""normlab dashboard: page config, the shared sidebar, and navigation over the pages in pages/.

Start it with ``streamlit run app.py``. The sidebar is drawn once here for every page; each page reads
its result with ``ui.sidebar.current_selection()``. Knows nothing of torch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from ui import i18n, links
from ui.i18n import N_, _
from ui.lecture import lecture_mode
from ui.sidebar import sidebar


@dataclass(frozen=True)
class PageSpec:
    """One entry of the navigation: the page file, its title, icon and URL path."""

    path: str
    title: str
    icon: str
    # The page's name in the navigation; Streamlit serves the default page at the root ("/") whatever
    # this says, and keys pages by it: a default page named like a file in pages/ ("overview") would
    # share its key with that file's page in Streamlit's legacy routing.
    url_path: str
    default: bool = False


# The navigation, in menu order. A new page is one line here (and its file in pages/). A page's
# address is its URL path, whether typed, clicked or shared (with st.navigation, Streamlit no longer
# registers the files of pages/ on their own).
PAGES = (
    PageSpec("pages/overview.py", N_("Overview"), ":material/dashboard:", "home", default=True),
    PageSpec("pages/variance.py", N_("Variance growth"), ":material/trending_up:", "variance-growth"),
    PageSpec("pages/rank.py", N_("Rank collapse"), ":material/compress:", "rank-collapse"),
    PageSpec("pages/gradients.py", N_("Gradients"), ":material/swap_vert:", "gradient-explosion"),
    PageSpec("pages/groups.py", N_("Group-size trade-off"), ":material/tune:", "group-size"),
    PageSpec("pages/claims.py", N_("Paper claims"), ":material/fact_check:", "paper-claims"),
    PageSpec("pages/training.py", N_("Training speed"), ":material/school:", "training-speed"),
    PageSpec("pages/dynamics.py", N_("Training dynamics"), ":material/animation:", "training-dynamics"),
    PageSpec("pages/explorer.py", N_("Sweep explorer"), ":material/travel_explore:", "sweep-explorer"),
)
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
