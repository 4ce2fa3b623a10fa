"""The training page under AppTest: Stop only while this visitor's runs train, the README's study one
click away, and the runs drawn as they finish."""

from __future__ import annotations

import pytest
from helpers import APP, TIMEOUT, charts, tiny_study
from streamlit.testing.v1 import AppTest

import ui.compute.cache
from normlab.core.train_config import StudyConfig
from ui.compute import study as study_module


@pytest.fixture
def fresh_store(monkeypatch, tmp_path):
    monkeypatch.setenv("NORMLAB_STORE", str(tmp_path / "store"))
    ui.compute.cache.clear()
    yield
    ui.compute.cache.clear()


def open_training(**state) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.session_state["training_study"] = tiny_study()
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    at.switch_page("pages/training.py").run()
    assert not at.exception, at.exception
    return at


def keys(at: AppTest) -> set[str]:
    return {b.key for b in at.button}


def test_a_finished_study_shows_no_stop_for_the_visitor_who_trained_it_nor_for_the_next(fresh_store):
    first = open_training()
    assert "training_stop" not in keys(first) and charts(first)
    calls = []
    real = ui.compute.cache.run_training
    ui.compute.cache.run_training = lambda *a, **k: calls.append(a) or real(*a, **k)
    try:
        ui.compute.cache.clear()  # a restarted server: the runs come from the store
        second = open_training()
    finally:
        ui.compute.cache.run_training = real
    assert calls == [] and "training_stop" not in keys(second) and charts(second)


def test_the_readmes_full_study_is_one_click_away(fresh_store, monkeypatch):
    monkeypatch.setenv("NORMLAB_MAX_WIDTH", "4")  # refused at admission: nothing of the 84 runs trains
    at = open_training()
    full = next(b for b in at.button if b.key == "training_full")
    assert str(len(StudyConfig().runs())) in full.label
    full.click().run()
    assert at.session_state["training_study"] == StudyConfig() == study_module.FULL
    assert any("NORMLAB_MAX_WIDTH" in e.value.replace("\\", "") for e in at.error)
    next(b for b in at.button if b.key == "training_quick").click().run()
    assert at.session_state["training_study"] == study_module.QUICK
