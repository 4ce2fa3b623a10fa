"""The page table: every page of the dashboard, its title, icon and address, in menu order.

Importable without Streamlit, so the app, the tests and the scripts read one table. A new page is its
file in pages/ and one row here.
"""

from __future__ import annotations

from dataclasses import dataclass

from ui.state.i18n import N_


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


# The navigation, in menu order. A page's
# address is its URL path, whether typed, clicked or shared (with st.navigation, Streamlit no longer
# registers the files of pages/ on their own).
PAGES = (
    PageSpec("pages/overview.py", N_("Overview"), ":material/dashboard:", "home", default=True),
    PageSpec("pages/variance.py", N_("Variance growth"), ":material/trending_up:", "variance-growth"),
    PageSpec("pages/rank.py", N_("Rank collapse"), ":material/compress:", "rank-collapse"),
    PageSpec("pages/gradients.py", N_("Gradients"), ":material/swap_vert:", "gradient-explosion"),
    PageSpec("pages/groups.py", N_("Group-size trade-off"), ":material/tune:", "group-size"),
    PageSpec("pages/placement.py", N_("Placement"), ":material/stacks:", "norm-placement"),
    PageSpec("pages/claims.py", N_("Paper claims"), ":material/fact_check:", "paper-claims"),
    PageSpec("pages/training.py", N_("Training speed"), ":material/school:", "training-speed"),
    PageSpec("pages/dynamics.py", N_("Training dynamics"), ":material/animation:", "training-dynamics"),
    PageSpec("pages/explorer.py", N_("Sweep explorer"), ":material/travel_explore:", "sweep-explorer"),
)
