"""The training page's study runner: it trains what is missing, stops and resumes, forgets old studies."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from normlab.core.train_config import StudyConfig, TrainConfig
from normlab.science.training import TrainResult
from ui.compute.study import STATE_CONFIG, Study, verdict


def small(**changes) -> StudyConfig:
    values = dict(archs=("cnn",), norms=("batchnorm", "layernorm"), groups=(4,), seeds=2, width=8,
                  cnn_depth=2, train=TrainConfig(steps=4, image_size=8, batch_size=8, probe_after=2,
                                                 eval_every=2), k_steps=2)
    return StudyConfig(**{**values, **changes})


def fake_result(model, train) -> TrainResult:
    curve = pd.DataFrame({"step": [0, 2, 4], "loss": [math.nan, 1.0, 0.5], "train_acc": [math.nan, 0.5, 0.7],
                          "test_loss": [2.0, 1.0, 0.5], "test_acc": [0.1, 0.5, 0.9], "seed": train.seed})
    probes = pd.DataFrame({"kind": ["final"], "metric": ["cos_sim"], "value": [0.5], "layer": ["x"],
                           "index": [0], "step": [0], "seed": [train.seed]})
    return TrainResult(model, train, curve, probes, probes.assign(step=2), False, False, 0.1)


def test_the_study_trains_every_run_of_its_plan_once_in_order():
    state, trained, shown = {}, [], []
    study = Study(state, small())
    study.run(lambda m, t, show: (trained.append((m, t)), show(4, 4, "x"), fake_result(m, t))[-1],
              lambda fraction, text: shown.append(fraction))
    assert trained == study.plan and study.missing == []
    assert shown == [0.25, 0.5, 0.75, 1.0]  # one bar for the whole study
    study.run(lambda *a: pytest.fail("trained again"))
    assert [r.train_config.seed for r in study.results()] == [0, 1, 0, 1]


def test_an_interrupted_study_resumes_where_it_stopped():
    state = {}
    study = Study(state, small())
    first = study.plan[0]

    def interrupted(m, t, show):
        if (m, t) != first:
            raise KeyboardInterrupt  # a click on Stop reruns the script mid-run
        return fake_result(m, t)

    with pytest.raises(KeyboardInterrupt):
        study.run(interrupted)
    study.stop()
    assert study.stopped and study.missing == study.plan[1:]
    study.resume()
    trained = []
    study.run(lambda m, t, show: trained.append((m, t)) or fake_result(m, t))
    assert trained == study.plan[1:]


def test_a_new_study_forgets_the_runs_of_the_old_one():
    state = {}
    study = Study(state, small())
    study.run(lambda m, t, show: fake_result(m, t))
    study.submit(small(seeds=1, norms=("batchnorm",)))
    assert state[STATE_CONFIG].seeds == 1 and not study.stopped
    assert len(study.done) == 1 and study.missing == []  # seed 0 of batchnorm was already trained


@pytest.mark.parametrize(("rho", "lo", "hi", "speed", "said"), [
    (-0.8, -0.9, -0.5, "acc_at_k", "agrees with the paper"),
    (0.8, 0.5, 0.9, "acc_at_k", "goes against the paper"),
    (0.8, 0.5, 0.9, "steps_to_target", "agrees with the paper"),
    (0.1, -0.4, 0.5, "acc_at_k", "is not decisive"),
])
def test_the_verdict_reads_the_sign_of_the_interval(rho, lo, hi, speed, said):
    runs = pd.DataFrame({"arch": ["cnn"] * 4})
    table = pd.DataFrame({"speed": [speed], "arch": ["cnn"], "rho": [rho], "lo": [lo], "hi": [hi]})
    assert said in verdict(runs, table, speed, small())


def test_no_verdict_without_a_correlation():
    runs = pd.DataFrame({"arch": ["cnn"]})
    table = pd.DataFrame({"speed": ["acc_at_k"], "arch": ["cnn"], "rho": [math.nan], "lo": [math.nan],
                          "hi": [math.nan]})
    assert verdict(runs, table, "acc_at_k", small()) is None


def test_stored_runs_are_taken_first_so_only_runs_that_train_are_missing():
    study = Study({}, small())
    stored = {study.plan[1]: fake_result(*study.plan[1])}
    study.take_stored(lambda m, t: stored.get((m, t)))
    assert study.missing == [study.plan[0], *study.plan[2:]]
    assert study.results() == [stored[study.plan[1]]]


def test_every_finished_run_is_announced_so_the_page_draws_the_runs_so_far():
    study, seen = Study({}, small()), []
    study.run(lambda m, t, show: fake_result(m, t), finished=lambda: seen.append(len(study.results())))
    assert seen == [1, 2, 3, 4]
