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
