"""The dashboard under Streamlit's AppTest: every page runs; the sidebar's controls change what is shown."""

from __future__ import annotations

import json
import re

import pytest
from helpers import APP, ROOT, TIMEOUT, charts, open_app, registered_pages, tiny_study  # noqa: F401
from streamlit.testing.v1 import AppTest

import ui.compute.cache
from ui.figures.style import figure_text


def series_names(at: AppTest, index: int = 0) -> set[str]:
    """Names of the mean lines of chart ``index`` (bands, theory and overflow traces left out)."""
    return {t.name for t in charts(at)[index].data if t.mode == "lines+markers" and t.showlegend is not False}


@pytest.fixture
def probe_calls(monkeypatch):
    """Counts the engine runs behind the cache (emptied first: another test's results in this process's
    memory would make a config look already computed)."""
    ui.compute.cache.clear()
    calls = []
    real = ui.compute.cache.run_probes

    def counting(model, probe, progress=None):
        calls.append(model)
        return real(model, probe, progress)

    monkeypatch.setattr(ui.compute.cache, "run_probes", counting)
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
    assert at.sidebar.toggle(key="lecture"), f"{page} ran without the shared sidebar"


def test_default_view_compares_three_normalizers_with_metrics():
    at = open_app()
    assert series_names(at) == {"BatchNorm", "GroupNorm (G=4)", "No normalization"}
    growth = [m.label for m in at.metric if m.label.startswith("1 · variance growth")]
    # BatchNorm and GroupNorm grow linearly, the unnormalized ResNet exponentially (property 1)
    shapes = ("linear", "linear", "exponential growth")
    assert growth == [f"1 · variance growth ({shape})" for shape in shapes]


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
    at.select_slider(key="depth").set_value(5).run()
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
    at.select_slider(key="depth").set_value(4).run()
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


@pytest.mark.parametrize("page, priced", [
    ("pages/variance.py", True), ("pages/groups.py", False), ("pages/training.py", False),
])
def test_the_cost_line_shows_only_where_it_prices_what_the_page_computes(page, priced):
    """The sidebar's cost prices probing its networks: the group-size page sweeps group counts and the
    training page trains its own networks, so neither shows it."""
    at = open_app(page, norms=["groupnorm"], depth="2", width="8")
    caption = " ".join(c.value for c in at.sidebar.caption)
    assert ("GFLOP" in caption) == priced, caption


def test_seeds_draw_a_band():
    at = open_app("pages/variance.py", norms=["batchnorm"], depth="3", seeds="2")
    assert any(t.fill == "tonexty" for t in charts(at)[0].data)


def test_tradeoff_sweeps_every_group_count():
    at = open_app("pages/groups.py", norms=["batchnorm"], width="8", depth="2")
    trace = charts(at)[0].data[0]
    assert list(trace.text) == ["G=8 (InstanceNorm)", "G=4", "G=2", "G=1 (LayerNorm)"]


def test_rank_page_draws_the_rank_ceiling():
    at = open_app("pages/rank.py", norms=["batchnorm"], depth="3", batch="8")
    annotations = " ".join(figure_text(c) for c in charts(at))
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


# ---------------------------------------------------------------------------------------------
# A lecture hall: every page in a second fresh session, and every engine outcome as the page's message

def shown(at: AppTest) -> list[str]:
    """The error messages as a viewer reads them (the page escapes engine text for markdown)."""
    return [re.sub(r"\\(.)", r"\1", e.value) for e in at.error]


def open_fresh(page: str, **params) -> AppTest:
    """A new session on ``page`` with small sizes (and a two-run study on the training page)."""
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.query_params.update({"norms": ["batchnorm", "groupnorm"], "depth": "2", "width": "8", **params})
    at.session_state["training_study"] = tiny_study()
    at.run()
    at.switch_page(page).run()
    return at


@pytest.fixture
def fresh_store(monkeypatch, tmp_path):
    """An empty result store and an empty in-process memory: a server that has computed nothing."""
    monkeypatch.setenv("NORMLAB_STORE", str(tmp_path / "store"))
    ui.compute.cache.clear()
    yield tmp_path / "store"
    ui.compute.cache.clear()


@pytest.fixture
def engine_calls(monkeypatch):
    """Counts every probe and training run the dashboard starts."""
    calls = []
    real_probe, real_train = ui.compute.cache.run_probes, ui.compute.cache.run_training

    def probe(model, probe, progress=None):
        calls.append(("probe", model))
        return real_probe(model, probe, progress)

    def train(model, train, progress=None):
        calls.append(("train", model))
        return real_train(model, train, progress=progress)

    monkeypatch.setattr(ui.compute.cache, "run_probes", probe)
    monkeypatch.setattr(ui.compute.cache, "run_training", train)
    return calls


@pytest.mark.parametrize("drop_memory", [False, True], ids=["same process", "restarted process"])
@pytest.mark.parametrize("page", registered_pages())
def test_every_page_renders_in_a_second_fresh_session_from_the_first_ones_results(
        page, drop_memory, fresh_store, engine_calls):
    first = open_fresh(page)
    assert not first.exception, first.exception
    assert engine_calls, f"{page}: the first session computed nothing"
    engine_calls.clear()
    if drop_memory:
        ui.compute.cache.clear()  # only the store on disk is left, as after a restart
    second = open_fresh(page)
    assert not second.exception, second.exception
    assert not second.error, [e.value for e in second.error]
    assert charts(second), f"{page} draws no chart in the second session"
    assert engine_calls == [], f"{page}: the second session computed again"


def _outcomes():
    from normlab.core.deadline import ComputeTimeout
    from normlab.ops.budget import BudgetExceeded
    from normlab.ops.serving import QueueTimeout

    return {
        "refusal": (BudgetExceeded("estimated 9 GFLOP exceeds the budget 1 GFLOP (NORMLAB_MAX_COST)"),
                    "over this server's limits"),
        "bad config": (ValueError("depth must be at least 1"), "depth must be at least 1"),
        "queue timeout": (QueueTimeout("the server is busy: waited 120 s"), "the server is busy"),
        "stopped": (ComputeTimeout("ran past 60 s"), "stopped at this server's time limit"),
        "overflow": (OverflowError("cannot convert float infinity to integer"), "beyond this machine"),
        "unexpected": (KeyError("boom"), "something went wrong on the server"),
    }


OUTCOMES = list(_outcomes())
# Every computing page meets every outcome across the table (a page per outcome, and the overview all of
# them). The Sweep explorer computes nothing: it reads finished records (tests/test_explorer.py).
COMPUTING = [p for p in registered_pages() if p != "pages/explorer.py"]
PAGE_OUTCOMES = sorted({("pages/overview.py", o) for o in OUTCOMES}
                       | {(p, OUTCOMES[i % len(OUTCOMES)]) for i, p in enumerate(COMPUTING)})


@pytest.mark.parametrize(("page", "outcome"), PAGE_OUTCOMES)
def test_a_page_whose_computation_raises_shows_its_own_message_and_a_retry(page, outcome, fresh_store,
                                                                           monkeypatch, caplog):
    err, said = _outcomes()[outcome]

    def fail(*args, **kwargs):
        raise err

    monkeypatch.setattr(ui.compute.cache, "run_probes", fail)
    monkeypatch.setattr(ui.compute.cache, "run_training", fail)
    at = open_fresh(page)
    assert not at.exception, at.exception
    assert any(said in e for e in shown(at)), shown(at)
    assert any(b.label == "Retry" for b in at.button)
    assert "Traceback" not in " ".join(shown(at))
    if outcome == "unexpected":
        assert any(r.exc_info for r in caplog.records), "the traceback goes to the server log"
    next(b for b in at.button if b.label == "Retry").click().run()
    assert not at.exception and any(said in e for e in shown(at))


def test_an_over_budget_page_is_refused_before_it_takes_a_place_in_a_full_queue(fresh_store, monkeypatch):
    from normlab.ops import serving

    gate = serving.Gate(max_concurrent=1, queue_timeout=30)
    monkeypatch.setattr(serving, "_default_gate", gate)
    monkeypatch.setenv("NORMLAB_MAX_COST", "0.001")
    release = __import__("threading").Event()
    holder = __import__("threading").Thread(target=gate.compute, args=("hold", release.wait), daemon=True)
    holder.start()
    try:
        while gate.running < 1:
            __import__("time").sleep(0.01)
        at = open_fresh("pages/variance.py")
        assert gate.waiting == 0 and gate.computed == 1, "the refused page never queued"
        assert any("NORMLAB_MAX_COST" in e and "over this server's limits" in e for e in shown(at)), shown(at)
        assert not at.exception
    finally:
        release.set()
        holder.join(10)


def test_the_training_page_obeys_the_budget(fresh_store, engine_calls, monkeypatch):
    monkeypatch.setenv("NORMLAB_MAX_WIDTH", "4")
    at = open_fresh("pages/training.py")
    assert not at.exception
    assert any("NORMLAB_MAX_WIDTH" in e for e in shown(at)), shown(at)
    assert engine_calls == [], "nothing trained before the refusal"
