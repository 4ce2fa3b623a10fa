"""python -m ui.warm and the records it shares with the dashboard: the plan is the pages' own tables."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

import ui.compute.cache
from normlab import ModelConfig, ProbeConfig, run_probes
from normlab.core.train_config import TrainConfig
from normlab.ops import records, serving
from normlab.ops.run import run_training
from normlab.ops.store import ResultStore
from normlab.science.study import study_row
from ui import warm
from ui.compute.study import QUICK
from ui.content import placement
from ui.content.claims import CLAIMS
from ui.content.defaults import BOUND_PROBE, bound_sweeps, dynamics_runs
from ui.state import controls as C
from ui.state.selection import build_selection

ROOT = Path(__file__).resolve().parents[1]


def test_warming_a_claim_plans_exactly_what_the_claims_page_probes_for_it():
    assert warm.CLAIM_KEYS == tuple(claim.key for claim in CLAIMS)
    for claim in CLAIMS:
        assert warm.plan([claim.key]) == (claim.runs(), []), claim.key


def test_the_warm_defaults_are_each_pages_default_view():
    probes, trainings = warm.default_views()
    selection = build_selection(C.DEFAULTS)
    views = [(m, selection.probe) for m in selection.models]
    base = selection.base
    counts = C.group_choices(C.DEFAULTS["net"], base.width, base.stages)
    sweep_base = dataclasses.replace(base, norm=C.DEFAULTS["sweep_norm"], groups=counts[0], group_size=None)
    sweep = ui.compute.cache.sweep_points(sweep_base, selection.probe, "groups", counts)
    views += [pair for pair in sweep if pair not in views]
    for base, field, values in bound_sweeps():  # the rank page's GroupNorm bound, at its sliders' defaults
        sweep = ui.compute.cache.sweep_points(base, BOUND_PROBE, field, values)
        views += [p for p in sweep if p not in views]
    views += [p for p in placement.runs() if p not in views]  # the Placement page's transformers
    assert probes == views
    assert trainings == QUICK.runs() + dynamics_runs()


def test_the_rank_pages_first_view_asks_only_for_sweeps_the_warm_up_computes(monkeypatch):
    asked = []
    sweep = ui.compute.cache.sweep

    def spy(model, probe, field, values, **kwargs):
        asked.extend(ui.compute.cache.sweep_points(model, probe, field, values))
        return sweep(model, probe, field, values, **kwargs)

    monkeypatch.setattr(ui.compute.cache, "sweep", spy)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.run()
    at.switch_page("pages/rank.py").run()
    assert not at.exception and not at.error
    probes, _ = warm.plan([warm.DEFAULTS])
    assert len(set(asked)) == 10  # 6 group sizes and 5 widths, one network in both
    assert all(pair in probes for pair in asked), "the first visitor computes no sweep point"


def test_warm_refuses_an_unknown_setup_by_name():
    with pytest.raises(ValueError, match="unknown warm setup.*'nope'"):
        warm.plan(["nope"])


def test_a_stored_probe_is_the_computed_frame(tmp_path):
    store = ResultStore(tmp_path)
    model, probe = ModelConfig(arch="mlp", norm="batchnorm", depth=2, width=4), ProbeConfig(batch_size=4)
    frame = run_probes(model, probe)
    records.save_probe(store, model, probe, frame)
    pd.testing.assert_frame_equal(records.load_probe(store, model, probe), frame)


def test_a_stored_training_run_reads_back_as_the_same_result(tmp_path):
    store = ResultStore(tmp_path)
    model = ModelConfig(arch="cnn", norm="batchnorm", depth=2, width=4)
    train = TrainConfig(steps=6, image_size=8, batch_size=8, probe_after=3, eval_every=3)
    result = run_training(model, train)
    assert records.load_training(store, model, train) is None
    records.save_training(store, result)
    back = records.load_training(store, model, train)
    assert (back.model_config, back.train_config) == (model, train)
    assert (back.diverged, back.stopped, back.seconds) == (result.diverged, result.stopped, result.seconds)
    for name in ("curve", "probes_init", "probes_after"):
        pd.testing.assert_frame_equal(getattr(back, name), getattr(result, name), check_dtype=False)
    assert study_row(back, 3) == study_row(result, 3)


def test_a_run_stopped_early_is_never_stored(tmp_path):
    store = ResultStore(tmp_path)
    model = ModelConfig(arch="mlp", norm="none", depth=1, width=4)
    train = TrainConfig(steps=5, image_size=8, batch_size=8, probe_after=1, eval_every=5)
    result = run_training(model, train, should_stop=lambda: True)
    assert result.stopped
    records.save_training(store, result)
    assert records.load_training(store, model, train) is None


def test_a_damaged_record_is_a_miss_not_an_error(tmp_path):
    store = ResultStore(tmp_path)
    model, probe = ModelConfig(arch="mlp", norm="none", depth=1, width=4), ProbeConfig(batch_size=4)
    path = store.path(records.PROBE, records.probe_key(model, probe))
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not parquet")
    assert records.load_probe(store, model, probe) is None


def test_warm_computes_what_is_missing_then_skips_it(tmp_path):
    store = ResultStore(tmp_path)
    progress = []
    first = warm.warm(store, ["stage_reset"], progress=lambda *a: progress.append(a))
    assert (first.computed, first.skipped) == (2, 0)
    assert [p[:2] for p in progress] == [(1, 2), (2, 2)]
    again = warm.warm(store, ["stage_reset"])
    assert (again.computed, again.skipped) == (0, 2)


def test_the_warm_command_reports_and_refuses_by_name(tmp_path, capsys):
    assert warm.main(["--store", str(tmp_path), "--dry-run"]) == 0
    probes, trainings = warm.plan()  # 79 and 18: the claims (13) and every page's first view
    assert f"{len(probes)} probes and {len(trainings)} training runs" in capsys.readouterr().out
    assert warm.main(["--store", str(tmp_path), "--only", "nope"]) == 2
    assert "unknown warm setup" in capsys.readouterr().err
    assert warm.main(["--only", "stage_reset", "--store", str(tmp_path)]) == 0
    assert "computed 2, already stored 0" in capsys.readouterr().out


def test_the_warm_command_fails_on_a_store_it_cannot_write_before_computing_anything(tmp_path, capsys,
                                                                                      monkeypatch):
    (tmp_path / "file").write_text("")  # a folder under a file: unwritable even as root
    calls = []
    monkeypatch.setattr(warm, "run_probes", lambda *a, **k: calls.append(a))
    assert warm.main(["--only", "stage_reset", "--store", str(tmp_path / "file" / "results")]) == 1
    err = capsys.readouterr().err
    assert "python -m ui.warm: error: the result store" in err and "cannot be written" in err
    assert calls == [], "nothing is computed that could not be kept"


def test_another_server_process_opening_a_warmed_claim_computes_nothing(tmp_path, monkeypatch):
    store = tmp_path / "store"
    # warmed by a separate process, as the Dockerfile's `python -m ui.warm` does
    subprocess.run([sys.executable, "-m", "ui.warm", "--only", "stage_reset", "--store", str(store)],
                   cwd=ROOT, check=True, capture_output=True, timeout=600)
    monkeypatch.setenv("NORMLAB_STORE", str(store))
    ui.compute.cache.clear()  # this process has computed nothing
    gate = serving.Gate()
    monkeypatch.setattr(serving, "_default_gate", gate)
    calls = []
    monkeypatch.setattr(ui.compute.cache, "run_probes", lambda *a, **k: calls.append(a))
    index = warm.CLAIM_KEYS.index("stage_reset")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    # the lecturer's link: the claim's setup in the sidebar, lecture mode on at that claim
    link = {**C.to_params(CLAIMS[index].control_values()), "lecture": "1", "claim": str(index)}
    at.query_params.update(link)
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    at.switch_page("pages/claims.py").run()
    assert not at.exception, at.exception
    assert at.subheader[0].value.startswith(f"{index + 1}. {CLAIMS[index].title}")
    assert calls == [] and gate.computed == 0, "the warmed claim opened from the store"
    assert at.get("plotly_chart"), "its picture is drawn"
    ui.compute.cache.clear()
