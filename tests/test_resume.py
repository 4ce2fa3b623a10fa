"""Persisted sweeps and studies: each finished point is stored at once; a rerun computes only the rest."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pyarrow.dataset as ds
import pytest

import normlab.ops.run
from normlab import ModelConfig, ProbeConfig, StudyConfig, TrainConfig, run_study, run_sweep
from normlab.cli import main
from normlab.ops import store as store_module
from normlab.ops.records import get_train, put_train
from normlab.ops.store import ResultStore

MODEL = ModelConfig(arch="mlp", depth=2, width=8)
PROBE = ProbeConfig(batch_size=4, image_size=4, seeds=2)
OVER = {"norm": ["batchnorm", "layernorm", "groupnorm"], "depth": [1, 2]}  # 6 points
STUDY = StudyConfig(archs=("mlp",), norms=("batchnorm", "layernorm"), groups=(2,), seeds=2, width=4,
                    cnn_depth=2, k_steps=4, n_boot=20,
                    train=TrainConfig(steps=8, batch_size=8, image_size=4, eval_every=4, probe_after=4))


class Crash(Exception):
    """What a killed process looks like from inside: the run ends mid-sweep."""


@pytest.fixture(scope="module")
def uninterrupted() -> pd.DataFrame:
    return run_sweep(MODEL, PROBE, OVER)


@pytest.fixture
def probe_calls(monkeypatch) -> list:
    """Every probe actually computed (a stored point is read back, not computed)."""
    calls, real = [], normlab.ops.run.run_probes

    def counted(model_config, probe_config, progress=None):
        calls.append(model_config)
        return real(model_config, probe_config, progress=progress)

    monkeypatch.setattr(normlab.ops.run, "run_probes", counted)
    return calls


def crash_after(points: int, seeds: int):
    """A progress callback that kills the sweep once ``points`` points of ``seeds`` seeds have finished."""
    def progress(done, total, label):
        if done > points * seeds:
            raise Crash(label)
    return progress


def test_a_sweep_killed_half_way_resumes_with_only_the_rest_and_the_same_frame(tmp_path, uninterrupted,
                                                                               probe_calls):
    store = ResultStore(tmp_path)
    with pytest.raises(Crash):
        run_sweep(MODEL, PROBE, OVER, progress=crash_after(3, PROBE.seeds), store=store)
    kept = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("part-0.parquet")}
    assert len(kept) == 3 and len(probe_calls) == 4  # the fourth was in flight when it died
    probe_calls.clear()
    calls = []
    frame = run_sweep(MODEL, PROBE, OVER, store=store, progress=lambda *a: calls.append(a))
    assert len(probe_calls) == 3  # only the points the crash lost
    assert calls[0] == (3 * PROBE.seeds, 6 * PROBE.seeds, "3 of 6 points found in the store")
    assert calls[-1][:2] == (12, 12)
    pd.testing.assert_frame_equal(frame, uninterrupted, check_exact=True)
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())  # stored points were not rewritten
    probe_calls.clear()
    pd.testing.assert_frame_equal(run_sweep(MODEL, PROBE, OVER, store=store), uninterrupted, check_exact=True)
    assert probe_calls == []  # a finished sweep is read back whole


def test_a_changed_engine_version_recomputes_every_point(tmp_path, uninterrupted, probe_calls, monkeypatch):
    store = ResultStore(tmp_path)
    run_sweep(MODEL, PROBE, OVER, store=store)
    assert len(probe_calls) == 6
    monkeypatch.setattr(store_module, "ENGINE_VERSION", "99.0.0")
    probe_calls.clear()
    pd.testing.assert_frame_equal(run_sweep(MODEL, PROBE, OVER, store=store), uninterrupted, check_exact=True)
    assert len(probe_calls) == 6  # the old version's records are not reused ...
    assert len(store.keys("probe")) == 12  # ... nor overwritten: they sit beside the new ones


def test_without_a_store_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_sweep(MODEL, dataclasses.replace(PROBE, seeds=1), {"depth": [1]})
    assert list(tmp_path.iterdir()) == []


def test_a_sweep_point_is_the_dashboards_probe_record(tmp_path):
    store = ResultStore(tmp_path)
    run_sweep(MODEL, PROBE, {"norm": ["layernorm"]}, store=store)
    model = dataclasses.replace(MODEL, norm="layernorm")
    key = store_module.record_key("probe", model, PROBE)
    pd.testing.assert_frame_equal(store.get("probe", key), normlab.ops.run.run_probes(model, PROBE),
                                  check_exact=True)


# --- studies ----------------------------------------------------------------------------------------------


def _same_study(a, b) -> None:
    for name in ("runs", "curves", "correlations"):
        left, right = getattr(a, name), getattr(b, name)
        # wall-clock seconds are the one column that differs between two runs of the same configs
        pd.testing.assert_frame_equal(left.drop(columns="seconds", errors="ignore"),
                                      right.drop(columns="seconds", errors="ignore"), check_exact=True)


@pytest.fixture(scope="module")
def study():
    return run_study(STUDY)


def test_a_stored_training_run_reads_back_as_the_same_result(tmp_path, study):
    store = ResultStore(tmp_path)
    mc, tc = STUDY.runs()[0]
    result = normlab.ops.run.run_training(mc, tc)
    put_train(store, result)
    back = get_train(store, mc, tc)
    for name in ("curve", "probes_init", "probes_after", "evaluations"):
        pd.testing.assert_frame_equal(getattr(back, name), getattr(result, name), check_exact=True)
    assert back.summary() == result.summary()
    assert get_train(store, mc, dataclasses.replace(tc, seed=9)) is None
    # the kind reads as one table of summary rows; curves and probes lie beside them
    table = ds.dataset(tmp_path / "kind=train", partitioning="hive").to_table()
    assert table.num_rows == 1 and "final_test_acc" in table.column_names


def test_a_stopped_study_resumes_with_only_the_remaining_runs(tmp_path, study, monkeypatch):
    store = ResultStore(tmp_path)
    trained, real = [], normlab.ops.run.run_training

    def counted(*args, **kwargs):
        trained.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(normlab.ops.run, "run_training", counted)
    steps = STUDY.train.steps
    done = []
    part = run_study(STUDY, progress=lambda d, t, label: done.append(d), store=store,
                     should_stop=lambda: len(done) > 2 * steps)  # during the third run
    assert part.stopped and len(part.runs) == 2 and len(store.keys("train")) == 2
    trained.clear()
    whole = run_study(STUDY, store=store)
    assert len(trained) == len(STUDY.runs()) - 2 and not whole.stopped
    _same_study(whole, study)


# --- the command line -----------------------------------------------------------------------------------

TINY = ["--arch", "mlp", "--depth", "1", "--width", "4", "--batch-size", "2", "--image-size", "4"]


def test_the_cli_persists_to_the_default_store_and_a_rerun_resumes(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NORMLAB_STORE", str(tmp_path))
    argv = ["sweep", *TINY, "--over", "norm=batchnorm,layernorm"]
    assert main(argv) == 0
    first = capsys.readouterr()
    assert len(ResultStore(tmp_path).keys("probe")) == 2
    assert main(argv) == 0
    again = capsys.readouterr()
    assert again.out == first.out
    assert again.err.splitlines() == ["sweep 2/2: 2 of 2 points found in the store"]


def test_the_cli_keeps_nothing_with_store_off(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NORMLAB_STORE", str(tmp_path / "default"))
    assert main(["sweep", *TINY, "--over", "depth=1,2", "--store", "off"]) == 0
    assert main(["sweep", *TINY, "--over", "depth=1", "--store", str(tmp_path / "mine")]) == 0
    assert not (tmp_path / "default").exists()
    assert len(ResultStore(tmp_path / "mine").keys("probe")) == 1


def test_the_study_command_resumes_from_its_store(tmp_path, capsys):
    argv = ["study", "--archs", "mlp", "--norms", "layernorm", "--seeds", "2", "--width", "4", "--cnn-depth",
            "1", "--steps", "4", "--k-steps", "2", "--eval-every", "2", "--probe-after", "2",
            "--image-size", "4", "--batch-size", "4", "--n-boot", "10", "--store", str(tmp_path)]
    assert main(argv) == 0
    first = capsys.readouterr()
    assert len(ResultStore(tmp_path).keys("train")) == 2
    assert main(argv) == 0
    again = capsys.readouterr()
    assert "2 of 2 points found in the store" in again.err
    drop = lambda text: [line.rsplit(",", 1)[0] for line in text.splitlines()]  # noqa: E731 (seconds last)
    assert drop(again.out) == drop(first.out)
