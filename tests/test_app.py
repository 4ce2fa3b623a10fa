"""The dashboard under Streamlit's AppTest: every page runs; the sidebar's controls change what is shown."""

from __future__ import annotations

import ast
import base64
import json
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest
from streamlit.testing.v1 import AppTest

import ui.cache

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "app.py"
TIMEOUT = 300  # seconds per run: a fresh claims page probes a few dozen small networks


def registered_pages() -> list[str]:
    """The page files app.py puts in its navigation (the first argument of every PageSpec)."""
    tree = ast.parse(APP.read_text())
    return [node.args[0].value for node in ast.walk(tree)
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "PageSpec"]


def open_app(page: str | None = None, **params) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.query_params.update(params)
    at.run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def _typed_array(obj: dict):
    """Plotly sends numeric arrays as base64 typed arrays ({"dtype", "bdata"[, "shape"]}): decode them."""
    if set(obj) >= {"dtype", "bdata"}:
        values = np.frombuffer(base64.b64decode(obj["bdata"]), dtype=obj["dtype"])
        if "shape" in obj:
            values = values.reshape([int(n) for n in str(obj["shape"]).split(",")])
        return values.tolist()
    return obj


def charts(at: AppTest) -> list[go.Figure]:
    """The plotly figures the run sent to the browser, decoded."""
    return [go.Figure(json.loads(el.proto.spec, object_hook=_typed_array)) for el in at.get("plotly_chart")]


def series_names(at: AppTest, index: int = 0) -> set[str]:
    """Names of the mean lines of chart ``index`` (bands, theory and overflow traces left out)."""
    return {t.name for t in charts(at)[index].data if t.mode == "lines+markers" and t.showlegend is not False}


@pytest.fixture
def probe_calls(monkeypatch):
    """Counts the engine runs behind the cache."""
    calls = []
    real = ui.cache.run_probes

    def counting(model, probe, progress=None):
        calls.append(model)
        return real(model, probe, progress)

    monkeypatch.setattr(ui.cache, "run_probes", counting)
    return calls


def test_navigation_lists_every_page_file_it_runs():
    pages = registered_pages()
    assert pages[0] == "pages/overview.py"
    assert all((ROOT / p).is_file() for p in pages)


@pytest.mark.parametrize("page", registered_pages())
def test_every_page_runs_without_exception_and_draws(page, explorer_results):
    at = open_app(page)
    assert not at.error, [e.value for e in at.error]
    assert charts(at), f"{page} draws no chart"
    assert at.sidebar.multiselect(key="norms"), f"{page} ran without the shared sidebar"


def test_default_view_compares_three_normalizers_with_metrics():
    at = open_app()
    assert series_names(at) == {"BatchNorm", "GroupNorm (G=4)", "No normalization"}
    growth = [m.label for m in at.metric if m.label.startswith("1 · variance growth")]
    # BatchNorm and GroupNorm grow linearly, the unnormalized ResNet exponentially (property 1)
    assert growth == [f"1 · variance growth ({shape})" for shape in ("linear", "linear", "exponential")]


def test_changing_the_normalizers_changes_the_chart():
    at = open_app("pages/variance.py")
    at.multiselect(key="norms").set_value(["layernorm", "instancenorm"]).run()
    assert series_names(at) == {"LayerNorm", "InstanceNorm"}


def test_changing_the_group_count_changes_the_chart():
    at = open_app("pages/variance.py", norms=["groupnorm"], depth="4")
    before = charts(at)[0]
    at.select_slider(key="groups").set_value(2).run()
    assert series_names(at) == {"GroupNorm (G=2)"}
    assert charts(at)[0].to_plotly_json()["data"] != before.to_plotly_json()["data"]


def test_changing_the_depth_changes_the_chart():
    at = open_app("pages/variance.py", norms=["batchnorm"])
    at.slider(key="depth").set_value(5).run()
    line = next(t for t in charts(at)[0].data if t.name == "BatchNorm" and t.mode == "lines+markers")
    assert list(line.x) == [1, 2, 3, 4, 5]


def test_group_counts_offered_are_only_divisors_of_every_width():
    at = open_app(norms=["groupnorm"], width="8", depth="2")
    assert at.select_slider(key="groups").options == ["1 · LayerNorm", "2", "4", "8 · InstanceNorm"]
    at.select_slider(key="width").set_value(4).run()
    assert at.select_slider(key="groups").options == ["1 · LayerNorm", "2", "4 · InstanceNorm"]


def test_a_group_count_that_no_longer_divides_moves_to_a_valid_one():
    at = open_app(norms=["groupnorm"], width="8", depth="2", groups="8")
    at.select_slider(key="width").set_value(4).run()
    assert not at.exception
    assert series_names(at) == {"GroupNorm (G=4)"}


def test_plot_options_redraw_without_recomputing(probe_calls):
    at = open_app("pages/variance.py", norms=["batchnorm"], depth="3")
    runs = len(probe_calls)
    at.segmented_control(key="var_scale").set_value("linear").run()
    assert charts(at)[0].layout.yaxis.type == "linear"
    at.segmented_control(key="var_metric").set_value("act_sq_mean").run()
    assert len(probe_calls) == runs
    at.slider(key="depth").set_value(4).run()
    assert len(probe_calls) == runs + 1  # a config change does run the engine


def test_an_empty_choice_shows_an_error_naming_the_field_and_keeps_the_chart():
    at = open_app("pages/variance.py", norms=["batchnorm"], depth="3")
    at.multiselect(key="norms").set_value([]).run()
    assert any("normalizers" in e.value for e in at.error)
    assert series_names(at) == {"BatchNorm"}


def test_sidebar_shows_the_cost_before_running():
    at = open_app(norms=["batchnorm"], depth="3")
    caption = " ".join(c.value for c in at.sidebar.caption)
    assert "GFLOP" in caption and "1 network × 1 seed" in caption


def test_seeds_draw_a_band():
    at = open_app("pages/variance.py", norms=["batchnorm"], depth="3", seeds="2")
    assert any(t.fill == "tonexty" for t in charts(at)[0].data)


def test_tradeoff_sweeps_every_group_count():
    at = open_app("pages/groups.py", norms=["batchnorm"], width="8", depth="2")
    trace = charts(at)[0].data[0]
    assert list(trace.text) == ["G=8 (InstanceNorm)", "G=4", "G=2", "G=1 (LayerNorm)"]


def test_rank_page_draws_the_rank_ceiling():
    at = open_app("pages/rank.py", norms=["batchnorm"], depth="3", batch="8")
    annotations = " ".join(a.text or "" for a in charts(at)[0].layout.annotations)
    assert "min(batch, features) = 8" in annotations


def test_gradient_page_draws_the_batchnorm_rate_for_plain_nets_only():
    at = open_app("pages/gradients.py", net="cnn", norms=["batchnorm"], depth="5", width="8")
    assert any("Yang et al. 2019" in (t.name or "") for t in charts(at)[0].data)
    at = open_app("pages/gradients.py", norms=["batchnorm"], depth="3")
    assert not any("Yang et al. 2019" in (t.name or "") for t in charts(at)[0].data)


# Overflow cases of spec section 3: drawn as markers with a note, never an exception.
OVERFLOW_CASES = {
    # an unnormalized ResNet past ~270 blocks overflows float32
    "unnormalized deep resnet": dict(norms=["none"], depth="300", width="8", batch="8", image="8"),
    # the paper's weightnorm ResNet-56 (corrected ReLU after each addition) reaches ~1e18
    "weightnorm resnet56": dict(net="resnet56", norms=["weightnorm"], batch="8", image="8"),
}


@pytest.mark.parametrize("params", OVERFLOW_CASES.values(), ids=OVERFLOW_CASES)
def test_overflow_cases_render_without_exception(params):
    at = open_app("pages/variance.py", **params)
    assert not at.error, [e.value for e in at.error]
    fig = charts(at)[0]
    line = next(t for t in fig.data if t.mode == "lines+markers")
    assert len(line.y) > 0
    if params["norms"] == ["none"]:
        markers = [t for t in fig.data if t.mode == "markers" and len(t.x)]
        assert markers, "overflowed blocks are drawn as markers"
        assert "overflow" in json.dumps(fig.to_plotly_json()["layout"]), "the note names the overflow"
