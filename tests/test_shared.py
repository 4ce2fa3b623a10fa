"""A second visitor of a computed config costs no work: a result's statistics and figures are made once per
server process and shared by every session (per language and lecture mode), and what is shown is the same."""

from __future__ import annotations

import plotly.graph_objects as go
import pytest
from helpers import APP, TIMEOUT
from streamlit.testing.v1 import AppTest

import ui.compute.cache
import ui.figures.measures
from ui.compute import shared

SMALL = {"norms": "batchnorm,layernorm", "depth": "3", "width": "8", "groups": "2"}
# page -> link parameters: small networks; on the claims page one claim, the smallest (lecture mode)
PAGES = {
    "pages/overview.py": SMALL,
    "pages/variance.py": {**SMALL, "var_theory": "1"},
    "pages/gradients.py": SMALL,
    "pages/rank.py": SMALL,
    "pages/groups.py": SMALL,
    "pages/claims.py": {"lecture": "1", "claim": "2"},
}


@pytest.fixture
def builds(monkeypatch):
    """Counts every figure built (any plotly Figure made, subplots included) and every seed aggregation,
    in a process that has computed nothing yet."""
    ui.compute.cache.clear()
    shared.clear()
    counts = {"figure": 0, "aggregate": 0}
    real_init, real_aggregate = go.Figure.__init__, ui.figures.measures.aggregate

    def figure(self, *args, **kwargs):
        counts["figure"] += 1
        real_init(self, *args, **kwargs)

    def aggregate(frame):
        counts["aggregate"] += 1
        return real_aggregate(frame)

    monkeypatch.setattr(go.Figure, "__init__", figure)
    monkeypatch.setattr(ui.figures.measures, "aggregate", aggregate)
    yield counts
    shared.clear()


def visit(page: str, **params) -> AppTest:
    """A new session (a new visitor) opening ``page``."""
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.query_params.update(params)
    at.run()
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def shown(at: AppTest) -> list[str]:
    return [el.proto.spec for el in at.get("plotly_chart")]


@pytest.mark.parametrize("page", list(PAGES))
def test_a_second_session_on_a_computed_config_builds_no_figure_and_no_aggregate(page, builds):
    first = visit(page, **PAGES[page])
    assert builds["figure"] and builds["aggregate"], f"{page}: the first session built nothing to count"
    builds.update(figure=0, aggregate=0)
    second = visit(page, **PAGES[page])
    assert builds == {"figure": 0, "aggregate": 0}, f"{page}: the second session built anew"
    assert shown(second) == shown(first), f"{page}: the second visitor sees other charts"
    # the language is part of what is shared: a Korean visitor gets Korean figures, made for them once
    korean = visit(page, **PAGES[page], lang="ko")
    assert builds["figure"], f"{page}: a Korean session was handed the English figures"
    assert shown(korean) != shown(first)
    builds.update(figure=0, aggregate=0)
    assert shown(visit(page, **PAGES[page], lang="ko")) == shown(korean)
    assert builds == {"figure": 0, "aggregate": 0}


def test_lecture_mode_gets_its_own_figures_and_leaves_the_shared_ones_unchanged(builds):
    params = PAGES["pages/variance.py"]
    first = visit("pages/variance.py", **params)
    lecture = visit("pages/variance.py", **params, lecture="1")
    assert shown(lecture) != shown(first)  # larger type, built for lecture mode
    builds.update(figure=0, aggregate=0)
    assert shown(visit("pages/variance.py", **params)) == shown(first)  # the shared figure was not restyled
    assert shown(visit("pages/variance.py", **params, lecture="1")) == shown(lecture)
    assert builds == {"figure": 0, "aggregate": 0}
