"""The training-dynamics page under AppTest: it trains through the cache; a fresh session reads the store."""

from __future__ import annotations

from helpers import APP, TIMEOUT, charts
from streamlit.testing.v1 import AppTest

import ui.compute.cache


def open_dynamics() -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.session_state["dynamics_norms"] = ["batchnorm", "none"]  # two runs: seconds, not the default eight
    at.session_state["dynamics_seeds"] = 1
    at.run()
    at.switch_page("pages/dynamics.py").run()
    return at


def test_the_page_trains_draws_every_step_and_a_fresh_session_reads_the_store(monkeypatch, tmp_path):
    monkeypatch.setenv("NORMLAB_STORE", str(tmp_path / "store"))
    ui.compute.cache.clear()
    calls = []
    real = ui.compute.cache.run_training

    def counting(model, train, progress=None):
        calls.append(model.norm)
        return real(model, train, progress=progress)

    monkeypatch.setattr(ui.compute.cache, "run_training", counting)
    at = open_dynamics()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert sorted(calls) == ["batchnorm", "none"]
    fig = charts(at)[0]
    assert [f.name for f in fig.frames] == ["0", "1", "2", "5", "10", "20", "50"]
    assert {t.name for t in fig.data if t.name} == {"BatchNorm", "No normalization"}
    ui.compute.cache.clear()  # a fresh process: the runs come from the store, nothing trains again
    again = open_dynamics()
    assert not again.exception, again.exception
    assert sorted(calls) == ["batchnorm", "none"]
    assert [f.name for f in charts(again)[0].frames] == [f.name for f in fig.frames]


def test_a_transformer_in_the_sidebar_trains_a_language_model_and_draws_it_per_block(monkeypatch, tmp_path):
    # The sidebar's selection names a transformer (one small network, one seed); the page trains it on
    # the text and draws blocks, token cosine, W2's gradient and bits per byte.
    from normlab import ModelConfig, ProbeConfig
    from ui.shell import sidebar
    from ui.state.selection import Selection

    net = ModelConfig(arch="transformer", placement="post", depth=2, width=16, seq_len=16, heads=2)
    selection = Selection((net,), ProbeConfig(input="text"))
    monkeypatch.setattr(sidebar, "build_selection", lambda values: selection)
    monkeypatch.setenv("NORMLAB_STORE", str(tmp_path / "store"))
    ui.compute.cache.clear()
    trained = []
    real = ui.compute.cache.run_training

    def counting(model, train, progress=None):
        trained.append((model.arch, train.dataset, train.warmup_steps))
        return real(model, train, progress=progress)

    monkeypatch.setattr(ui.compute.cache, "run_training", counting)
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.session_state["dynamics_seeds"] = 1
    at.session_state["dynamics_warmup"] = 10
    at.run()
    at.switch_page("pages/dynamics.py").run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert trained == [("transformer", "text", 10)]
    fig, curves = charts(at)[:2]
    assert [f.name for f in fig.frames] == ["0", "1", "2", "5", "10", "20", "50"]
    assert fig.layout.xaxis.title.text == "block" and list(fig.data[1].x) == [1.0, 2.0]
    titles = [a.text for a in fig.layout.annotations]
    assert any("token" in t for t in titles) and any("‖∂L/∂W‖" in t for t in titles)
    assert curves.layout.yaxis.title.text == "held-out bits per byte"
    assert any("bits per byte" in c.value for c in at.caption)
    assert not at.multiselect  # the normalizers are the sidebar's, not the CNN page's menu
    ui.compute.cache.clear()
