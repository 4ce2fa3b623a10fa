"""Short training runs on the digits and the init-similarity vs training-speed study.

Every run here is tiny (width 8, image 8, tens of steps) so the file stays within seconds.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import torch

from normlab import ModelConfig, run_probes
from normlab.core.train_config import (
    SPEED_METRICS,
    StudyConfig,
    TrainConfig,
    default_probe_steps,
    paper_recipe,
)
from normlab.ops.run import run_study, run_training
from normlab.science import summary
from normlab.science.study import bootstrap_ci, correlate, speed_for_ranking
from normlab.science.summary import rankdata, spearman
from normlab.science.training import digits_split, grad_norm_range

TINY = ModelConfig(arch="cnn", depth=2, width=8, norm="batchnorm")
TINY_TRAIN = TrainConfig(steps=12, lr=0.05, batch_size=16, image_size=8, eval_every=4, probe_after=3)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny nets run fastest on one thread, and do not stall when another process shares the CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_run():
    return run_training(TINY, TINY_TRAIN)


# --- data ------------------------------------------------------------------------------------------


def test_digits_split_is_1437_train_and_360_held_out_stratified_and_standardized():
    data = digits_split(12, 3)
    assert data.x_train.shape == (1437, 3, 12, 12) and data.x_test.shape == (360, 3, 12, 12)
    assert data.y_train.shape == (1437,) and data.y_test.shape == (360,)
    # stratified: every class holds about a tenth of the held-out digits
    counts = torch.bincount(data.y_test, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37
    assert abs(data.x_train.mean().item()) < 1e-5 and abs(data.x_train.std().item() - 1) < 1e-4
    # the grey digit is copied to every channel
    assert torch.equal(data.x_train[:, 0], data.x_train[:, 2])


def test_digits_split_at_8_pixels_is_the_raw_digits_standardized():
    from sklearn.datasets import load_digits

    data = digits_split(8, 1)
    raw = torch.as_tensor(load_digits().images, dtype=torch.float32)
    x = data.x_train[:, 0] * 1.0  # (1437, 8, 8)
    # an affine map of some raw digit: correlation 1 with its nearest raw image
    first = x[0].flatten()
    corr = [np.corrcoef(first.numpy(), r.flatten().numpy())[0, 1] for r in raw]
    assert max(corr) > 0.9999


# --- TrainConfig -----------------------------------------------------------------------------------


@pytest.mark.parametrize("changes", [
    {}, {"steps": 1, "probe_after": 1}, {"lr": 1e6}, {"momentum": 0.0}, {"weight_decay": 1e-4},
    {"batch_size": 2}, {"batch_size": 1437}, {"image_size": 8}, {"target_accuracy": 1.0},
    {"device": "cpu"}, {"max_loss": 10.0},
])
def test_train_config_accepts(changes):
    TrainConfig(**changes)


@pytest.mark.parametrize(("changes", "field"), [
    ({"steps": 0}, "steps"),
    ({"steps": 2.5}, "steps"),
    ({"steps": True}, "steps"),
    ({"lr": 0.0}, "lr"),
    ({"lr": -0.1}, "lr"),
    ({"lr": float("nan")}, "lr"),
    ({"lr": "0.1"}, "lr"),
    ({"momentum": 1.0}, "momentum"),
    ({"momentum": -0.5}, "momentum"),
    ({"weight_decay": -1e-4}, "weight_decay"),
    ({"batch_size": 1}, "batch_size"),
    ({"batch_size": 1438}, "batch_size"),
    ({"image_size": 0}, "image_size"),
    ({"image_size": 1000}, "image_size"),
    ({"seed": -1}, "seed"),
    ({"seed": 2**64}, r"seed must be between 0 and 2\*\*62"),
    ({"steps": 1_000_000_000}, "steps must be between 1 and 100,000"),
    ({"eval_every": 0}, "eval_every"),
    ({"probe_after": 0}, "probe_after"),
    ({"steps": 4, "probe_after": 5}, "probe_after"),
    ({"target_accuracy": 0.0}, "target_accuracy"),
    ({"target_accuracy": 1.5}, "target_accuracy"),
    ({"max_loss": 0.0}, "max_loss"),
    ({"device": "tpu"}, "device"),
])
def test_train_config_refuses_naming_the_field(changes, field):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**changes)


def test_eval_steps_are_init_every_eval_every_and_the_last():
    assert TrainConfig(steps=10, eval_every=4, probe_after=1).eval_steps == (0, 4, 8, 10)


# --- one run ---------------------------------------------------------------------------------------


def test_a_tiny_run_is_identical_for_the_same_seed_and_differs_for_another(tiny_run):
    again = run_training(TINY, TINY_TRAIN)
    pd.testing.assert_frame_equal(tiny_run.curve, again.curve)
    pd.testing.assert_frame_equal(tiny_run.probes_init, again.probes_init)
    pd.testing.assert_frame_equal(tiny_run.probes_after, again.probes_after)
    other = run_training(TINY, TrainConfig(**{**TINY_TRAIN.to_dict(), "seed": 1}))
    assert not np.allclose(other.curve["loss"].iloc[1:], tiny_run.curve["loss"].iloc[1:])


def test_a_run_leaves_torch_global_random_state_untouched():
    before = torch.random.get_rng_state()
    run_training(TINY, TrainConfig(steps=2, batch_size=8, image_size=8, probe_after=1))
    assert torch.equal(before, torch.random.get_rng_state())


def test_curve_has_one_row_per_step_with_evaluations_on_the_eval_steps(tiny_run):
    curve = tiny_run.curve
    assert curve["step"].tolist() == list(range(TINY_TRAIN.steps + 1))
    assert math.isnan(curve["loss"].iloc[0])  # step 0 is the initialization: no batch yet
    assert curve["loss"].iloc[1:].notna().all() and curve["train_acc"].iloc[1:].between(0, 1).all()
    scored = curve.loc[curve["test_acc"].notna(), "step"].tolist()
    assert scored == list(TINY_TRAIN.eval_steps) == [0, 4, 8, 12]
    assert {"arch", "norm", "depth", "width", "lr", "batch_size", "seed"} <= set(curve.columns)
    assert (curve["norm"] == "batchnorm").all() and (curve["lr"] == TINY_TRAIN.lr).all()


def test_probes_run_at_init_and_after_probe_after_steps_on_the_models_own_probe_points(tiny_run):
    init, after = tiny_run.probes_init, tiny_run.probes_after
    assert set(init["step"]) == {0} and set(after["step"]) == {TINY_TRAIN.probe_after}
    assert {"act", "conv", "spectrum"} <= set(init["kind"])
    # the act points of a cnn Layer are its activation modules, in forward order
    acts = init[(init["kind"] == "act") & (init["metric"] == "cos_sim")]
    assert acts["layer"].tolist() == ["features.0.act", "features.1.act"]
    assert acts["index"].tolist() == [0, 1]
    final = acts[acts["final"]]
    assert final["layer"].tolist() == ["features.1.act"]  # the last activation, before pooling
    assert tiny_run.init_cos_sim == final["value"].item()
    # the weights moved, so the probes see something else after a few steps
    assert not np.allclose(init["value"].to_numpy(), after["value"].to_numpy())
    assert {"arch", "norm", "lr", "seed"} <= set(init.columns)


def test_probing_does_not_change_the_run():
    probed_late = run_training(TINY, TrainConfig(**{**TINY_TRAIN.to_dict(), "probe_after": 12}))
    probed_early = run_training(TINY, TINY_TRAIN)
    pd.testing.assert_frame_equal(probed_late.curve.drop(columns="probe_after"),
                                  probed_early.curve.drop(columns="probe_after"))


@pytest.mark.parametrize("model", [
    ModelConfig(arch="mlp", depth=2, width=16, norm="layernorm"),
    ModelConfig(arch="resnet", depth=1, width=8, norm="groupnorm", groups=2, skipinit=True),
    ModelConfig(arch="resnet", depth=1, width=8, stages=2, norm="evonorm_b0", preact=True),
], ids=["mlp", "resnet-skipinit", "resnet-preact-2-stages"])
def test_every_family_trains_and_is_probed(model):
    result = run_training(model, TrainConfig(steps=3, batch_size=8, image_size=8, probe_after=2))
    assert result.steps_done == 3 and not result.diverged
    assert 0 <= result.init_cos_sim <= 1 and len(result.probes_after)
    if model.arch == "resnet":
        assert "block" in set(result.probes_init["kind"])


def test_run_training_refuses_what_is_not_a_config():
    with pytest.raises(ValueError, match="model_config"):
        run_training({"arch": "cnn"})
    with pytest.raises(ValueError, match="train_config"):
        run_training(TINY, {"steps": 3})


def test_loss_falls_and_accuracy_beats_chance_on_the_digits():
    model = ModelConfig(arch="cnn", depth=2, width=16, norm="batchnorm")
    result = run_training(model, TrainConfig(steps=60, lr=0.1, batch_size=32, image_size=8, eval_every=20,
                                             probe_after=2))
    loss = result.curve["loss"].to_numpy()
    assert loss[-10:].mean() < 0.75 * loss[1:11].mean()
    assert result.final_test_acc > 0.4  # chance is 0.1
    assert not result.diverged and result.steps_done == 60


@pytest.mark.parametrize("norm", ["none", "layernorm"])
def test_a_diverging_learning_rate_is_reported_as_diverged_not_raised(norm):
    # without normalization the loss runs away to ~1e15 (finite); LayerNorm's turns NaN
    result = run_training(ModelConfig(arch="cnn", depth=2, width=8, norm=norm),
                          TrainConfig(lr=1e6, steps=20, batch_size=16, image_size=8, eval_every=5,
                                      probe_after=10))
    assert result.diverged and not result.stopped
    last = result.curve["loss"].iloc[-1]
    assert not last <= TrainConfig().max_loss
    assert result.steps_done == len(result.curve) - 2  # the diverging step applied no update
    assert result.steps_done < 20
    assert math.isnan(result.final_test_acc) and math.isnan(result.test_acc_at(20))
    assert result.probes_after.empty and math.isnan(result.grad_range_after)
    assert result.summary()["diverged"] is True


def test_should_stop_ends_the_run_early_and_progress_sees_every_step():
    seen = []
    result = run_training(TINY, TINY_TRAIN, progress=lambda d, t, label: seen.append((d, t, label)),
                          should_stop=lambda: len(seen) >= 5)
    assert result.stopped and not result.diverged and result.steps_done == 5
    assert [d for d, _, _ in seen] == [1, 2, 3, 4, 5] and all(t == 12 for _, t, _ in seen)
    assert "BatchNorm" in seen[0][2]
    assert math.isnan(result.test_acc_at(8))  # past the stop: unknown, not the last value seen


def test_summary_numbers_follow_the_curve(tiny_run):
    s = tiny_run.summary()
    evals = tiny_run.curve.dropna(subset=["test_acc"])
    assert s["final_test_acc"] == evals["test_acc"].iloc[-1]
    assert s["best_test_acc"] == evals["test_acc"].max()
    assert tiny_run.test_acc_at(7) == evals.loc[evals["step"] == 4, "test_acc"].item()
    low = run_training(TINY, TrainConfig(**{**TINY_TRAIN.to_dict(), "target_accuracy": 0.01}))
    assert low.steps_to_target == 0  # the untrained net already beats 1%
    assert math.isnan(run_training(TINY, TrainConfig(**{**TINY_TRAIN.to_dict(),
                                                        "target_accuracy": 1.0})).steps_to_target)


def test_grad_norm_range_is_the_summarys_gradient_range_of_the_init_probes():
    result = run_training(TINY, TINY_TRAIN)
    assert result.grad_range_init == summary.gradient_range(result.probes_init)
    assert result.grad_growth_init == summary.gradient_growth(result.probes_init)
    assert math.isnan(grad_norm_range(result.probes_init.iloc[0:0]))


def test_gradient_range_shrinks_after_a_few_steps_in_a_deep_batchnorm_cnn():
    # Gradient explosion (Yang et al. 2019) is an init effect: a few SGD steps already tame it.
    result = run_training(ModelConfig(arch="cnn", depth=16, width=8, norm="batchnorm"),
                          TrainConfig(steps=5, lr=0.1, batch_size=32, image_size=8, probe_after=5))
    assert result.grad_range_init > 5
    assert result.grad_range_after < 0.8 * result.grad_range_init


# --- rank correlation --------------------------------------------------------------------------------


KNOWN = [
    ([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]),
    ([1, 2, 3, 4, 5], [5, 4, 3, 2, 1]),
    ([0.3, 0.1, 0.1, 0.9, 0.5, 0.5, 0.5], [2, 1, 3, 9, 4, 4, 8]),  # ties on both sides
    ([3.0, 1.0, 2.0], [np.inf, 10.0, np.inf]),  # unreached targets rank last, tied
]


@pytest.mark.parametrize(("x", "y"), KNOWN)
def test_spearman_matches_scipy_on_known_data(x, y):
    expected = scipy.stats.spearmanr(np.asarray(x, float), np.asarray(y, float)).statistic
    assert spearman(x, y) == pytest.approx(expected, abs=1e-12)


def test_spearman_matches_scipy_on_random_data_with_ties():
    rng = np.random.default_rng(7)
    for _ in range(20):
        n = int(rng.integers(3, 40))
        x, y = rng.integers(0, 6, n).astype(float), rng.normal(size=n)
        if len(set(x)) > 1:
            assert spearman(x, y) == pytest.approx(scipy.stats.spearmanr(x, y).statistic, abs=1e-12)


def test_rankdata_gives_average_ranks_like_scipy():
    values = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, 3.0, 5.0]
    np.testing.assert_array_equal(rankdata(values), scipy.stats.rankdata(values))


def test_spearman_is_one_for_any_increasing_map_and_nan_when_undefined():
    x = np.linspace(0.1, 3, 9)
    assert spearman(x, np.exp(5 * x)) == pytest.approx(1.0)
    assert spearman(x, -(x ** 3)) == pytest.approx(-1.0)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
    assert math.isnan(spearman([1.0], [2.0]))
    assert math.isnan(spearman([1.0, np.nan, 3.0], [1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="equal length"):
        spearman([1, 2], [1, 2, 3])


def test_bootstrap_interval_is_seeded_brackets_the_estimate_and_narrows_with_more_data():
    rng = np.random.default_rng(0)

    def sample(n):
        x = rng.normal(size=n)
        return x, x + rng.normal(size=n)

    x, y = sample(30)
    lo, hi = bootstrap_ci(x, y, n_boot=1000, seed=3)
    assert (lo, hi) == bootstrap_ci(x, y, n_boot=1000, seed=3)
    assert lo < spearman(x, y) < hi and -1 <= lo and hi <= 1
    x2, y2 = sample(300)
    lo2, hi2 = bootstrap_ci(x2, y2, n_boot=1000, seed=3)
    assert hi2 - lo2 < 0.6 * (hi - lo)


def test_bootstrap_interval_agrees_with_scipys_percentile_bootstrap():
    rng = np.random.default_rng(1)
    x = rng.normal(size=40)
    y = 0.5 * x + rng.normal(size=40)
    ours = bootstrap_ci(x, y, n_boot=4000, seed=0)
    theirs = scipy.stats.bootstrap((x, y), lambda a, b: scipy.stats.spearmanr(a, b).statistic, paired=True,
                                   vectorized=False, n_resamples=4000, method="percentile",
                                   confidence_level=0.95, rng=np.random.default_rng(0)).confidence_interval
    assert ours[0] == pytest.approx(theirs.low, abs=0.05)
    assert ours[1] == pytest.approx(theirs.high, abs=0.05)


def test_bootstrap_of_a_perfect_ranking_is_a_point_and_of_too_little_data_nan():
    assert bootstrap_ci([1, 2, 3, 4, 5, 6], [2, 4, 6, 8, 10, 12], n_boot=200) == (1.0, 1.0)
    assert all(math.isnan(v) for v in bootstrap_ci([1.0], [2.0]))
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_ci([1, 2], [1, 2], confidence=1.0)


# --- the study ---------------------------------------------------------------------------------------


def test_speed_ranking_puts_diverged_and_unreached_runs_last():
    runs = pd.DataFrame({"acc_at_k": [0.5, np.nan, 0.9], "steps_to_target": [50.0, np.nan, 25.0]})
    assert speed_for_ranking(runs, "acc_at_k").tolist() == [0.5, -np.inf, 0.9]
    assert speed_for_ranking(runs, "steps_to_target").tolist() == [50.0, np.inf, 25.0]
    with pytest.raises(ValueError, match="speed"):
        speed_for_ranking(runs, "final_test_acc")


def test_correlate_gives_each_arch_and_the_pool_both_speed_measures():
    runs = pd.DataFrame({
        "arch": ["cnn"] * 4 + ["resnet"] * 4,
        "cos_sim_init": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8],
        "acc_at_k": [0.9, 0.8, 0.7, 0.6, 0.95, 0.9, np.nan, 0.1],
        "steps_to_target": [25, 50, 75, np.nan, 25, 50, np.nan, np.nan],
    })
    table = correlate(runs, n_boot=100)
    assert list(zip(table["arch"], table["speed"], strict=True)) == [
        (a, s) for a in ("cnn", "resnet", "all") for s in SPEED_METRICS]
    cnn = table.set_index(["arch", "speed"]).loc["cnn"]
    assert cnn.loc["acc_at_k", "rho"] == pytest.approx(-1.0)
    assert cnn.loc["steps_to_target", "rho"] == pytest.approx(1.0)
    assert table["n"].tolist() == [4, 4, 4, 4, 8, 8]


def test_study_config_expands_grouped_normalizers_per_group_count_and_seeds():
    config = StudyConfig(archs=("cnn",), norms=("batchnorm", "groupnorm"), groups=(2, 4), seeds=2,
                         width=8, cnn_depth=2, k_steps=10, train=TrainConfig(steps=10))
    runs = config.runs()
    assert [(m.norm, m.groups, t.seed) for m, t in runs] == [
        ("batchnorm", None, 0), ("batchnorm", None, 1), ("groupnorm", 2, 0), ("groupnorm", 2, 1),
        ("groupnorm", 4, 0), ("groupnorm", 4, 1)]
    assert StudyConfig(norms=["layernorm"]).norms == ("layernorm",)  # lists become tuples: hashable
    hash(StudyConfig())


@pytest.mark.parametrize(("changes", "field"), [
    ({"archs": ("vgg",)}, "archs"),
    ({"archs": ()}, "archs"),
    ({"norms": ("batchnorm", "rmsnorm")}, "norms"),
    ({"groups": (3,)}, "groups"),  # does not divide width 16
    ({"groups": (0,)}, "groups"),
    ({"seeds": 0}, "seeds"),
    ({"seeds": 1_000_000_000}, "seeds must be between 1 and 1,000"),
    ({"seed": 2**62}, "seed"),
    ({"width": 10**6}, "width"),
    ({"cnn_depth": 10**6}, "cnn_depth"),
    ({"resnet_stages": 99}, "resnet_stages"),
    ({"k_steps": 500}, "k_steps"),
    ({"n_boot": 0}, "n_boot"),
    ({"n_boot": 10_000_000_000}, "n_boot must be between 1 and 1,000,000"),
    ({"confidence": 1.0}, "confidence"),
    ({"train": {"steps": 10}}, "train"),
])
def test_study_config_refuses_naming_the_field(changes, field):
    with pytest.raises(ValueError, match=field):
        StudyConfig(**changes)


def test_a_tiny_study_has_one_row_per_arch_norm_groups_seed_and_its_correlations():
    config = StudyConfig(archs=("cnn", "resnet"), norms=("batchnorm", "groupnorm"), groups=(2,), seeds=2,
                         width=8, cnn_depth=2, resnet_depth=1, k_steps=8, n_boot=50,
                         train=TrainConfig(steps=8, batch_size=16, image_size=8, eval_every=4, probe_after=2))
    calls = []
    result = run_study(config, progress=lambda d, t, label: calls.append((d, t)))
    runs = result.runs
    assert len(runs) == 8 and not result.stopped
    assert not runs.duplicated(["arch", "norm", "groups", "seed"]).any()
    assert runs["cos_sim_init"].between(-1, 1).all() and runs["acc_at_k"].between(0, 1).all()
    assert set(runs["label"]) == {"BatchNorm", "GroupNorm (G=2)"}
    assert set(result.correlations["arch"]) == {"cnn", "resnet", "all"}
    assert len(result.curves) == 8 * 9 and set(result.curves["label"]) == set(runs["label"])
    assert calls[-1] == (64, 64) and [d for d, _ in calls] == list(range(1, 65))


def test_a_stopped_study_keeps_the_finished_runs_only():
    config = StudyConfig(archs=("cnn",), norms=("batchnorm", "layernorm"), seeds=1, width=8, cnn_depth=2,
                         k_steps=4, n_boot=20,
                         train=TrainConfig(steps=4, batch_size=8, image_size=8, probe_after=1))
    steps = []
    result = run_study(config, progress=lambda d, t, label: steps.append(d),
                       should_stop=lambda: len(steps) >= 6)
    assert result.stopped
    assert result.runs["norm"].tolist() == ["batchnorm"]
    empty = run_study(config, should_stop=lambda: True)
    assert empty.stopped and empty.runs.empty and empty.correlations.empty


# --- probes at chosen steps, CIFAR from disk, the paper's recipe ------------------------------------


@pytest.mark.parametrize("model", [
    TINY,
    ModelConfig(arch="resnet", depth=1, width=8, stages=2, norm="groupnorm", groups=2),
    ModelConfig(arch="mlp", depth=3, width=16, norm="layernorm", in_channels=1),
], ids=["cnn-bn", "resnet-gn", "mlp-ln"])
def test_the_probes_at_step_0_are_run_probes_on_the_runs_probe_config(model):
    train = TrainConfig(steps=2, batch_size=8, image_size=8, probe_after=1, seed=5)
    result = run_training(model, train)
    expected = run_probes(model, train.probe_config)
    got = result.probes[result.probes["step"] == 0]
    keys = ["seed", "layer", "index", "kind", "metric", "final", "overflow"]
    pd.testing.assert_frame_equal(got[keys].reset_index(drop=True), expected[keys])
    np.testing.assert_array_equal(got["value"].to_numpy(), expected["value"].to_numpy())
    assert train.probe_config.input == "digits" and train.probe_config.seed == 5


def test_probes_run_at_every_chosen_step_and_at_probe_after_in_one_frame():
    result = run_training(TINY, TrainConfig(**{**TINY_TRAIN.to_dict(), "probe_steps": (5, 1, 12, 1)}))
    assert result.train_config.probe_steps == (1, 5, 12)
    assert sorted(result.probes["step"].unique()) == [0, 1, 3, 5, 12]  # 0 and probe_after always
    per_step = result.probes.groupby("step").size()
    assert (per_step == per_step.iloc[0]).all()  # the same rows at every step
    pd.testing.assert_frame_equal(result.probes_after,
                                  result.probes[result.probes["step"] == 3].reset_index(drop=True))
    assert result.grad_ranges()["step"].tolist() == [0, 1, 3, 5, 12]
    assert (result.probes["probe_steps"] == "1,5,12").all()


def test_default_probe_steps_are_1_2_5_per_decade_up_to_the_runs_end():
    assert default_probe_steps(12) == (0, 1, 2, 5, 10, 12)
    assert default_probe_steps(200) == (0, 1, 2, 5, 10, 20, 50, 100, 200)
    assert TrainConfig(steps=60, probe_after=7).probe_schedule == (0, 1, 2, 5, 7, 10, 20, 50, 60)


@pytest.mark.parametrize("changes, field", [
    ({"probe_steps": (0, 99)}, "probe_steps"),
    ({"probe_steps": (-1,)}, "probe_steps"),
    ({"probe_steps": "0,1"}, "probe_steps"),
    ({"dataset": "mnist"}, "dataset"),
    ({"dataset": "cifar10", "data_dir": ""}, "data_dir"),
    ({"warmup_steps": -1}, "warmup_steps"),
    ({"lr_drop_step": 0}, "lr_drop_step"),
    ({"hflip": "yes"}, "hflip"),
])
def test_train_config_refuses_bad_schedule_fields_naming_them(changes, field):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{**TINY_TRAIN.to_dict(), **changes})


def test_the_gradient_range_of_a_batchnorm_net_falls_over_the_first_steps():
    # Gradient explosion is an init phenomenon (Yang et al. 2019): a few SGD steps shrink the range in
    # every seed. (In this 8-wide net it may climb again later; the first steps are the claim.)
    model = ModelConfig(arch="cnn", depth=12, width=8, norm="batchnorm")
    init, after = [], []
    for seed in range(5):
        result = run_training(model, TrainConfig(steps=10, lr=0.02, batch_size=32, image_size=8,
                                                 probe_after=10, probe_steps=(), eval_every=10, seed=seed))
        ranges = result.grad_ranges().set_index("step")["grad_range"]
        init.append(ranges[0])
        after.append(ranges[10])
    assert min(init) > 5  # it explodes at init
    assert all(a < i for i, a in zip(init, after, strict=True))
    assert np.mean(after) < 0.85 * np.mean(init)


def test_lr_at_warms_up_linearly_then_drops_to_a_tenth():
    train = TrainConfig(steps=20, lr=0.1, warmup_steps=4, lr_drop_step=15)
    assert [train.lr_at(s) for s in (1, 2, 4, 5, 14, 15, 20)] == pytest.approx(
        [0.025, 0.05, 0.1, 0.1, 0.1, 0.01, 0.01])
    assert TrainConfig().lr_at(1) == TrainConfig().lr  # the default: constant


def test_the_paper_recipe_is_sgd_momentum_wd_batch_256_with_warmup_for_frn_only():
    full = paper_recipe("batchnorm")
    assert (full.steps, full.batch_size, full.lr, full.momentum, full.weight_decay) == (11760, 256, 0.1, 0.9,
                                                                                       1e-4)
    assert full.dataset == "cifar100" and full.hflip and full.image_size == 32 and full.warmup_steps == 0
    assert full.lr_at(8820) == pytest.approx(0.1) and full.lr_at(8821) == pytest.approx(0.01)  # last quarter
    frn = paper_recipe("frn", steps=1200, dataset="cifar10")
    assert frn.warmup_steps == 100 and frn.lr_at(50) == pytest.approx(0.05)
    assert frn.lr_drop_step == 100 + 825 + 1 and frn.dataset == "cifar10"
    assert paper_recipe("frn", steps=12, batch_size=128).lr == pytest.approx(0.2)  # the code's 0.1 * 256 / b
    with pytest.raises(ValueError, match="norm"):
        paper_recipe("bn")


def test_a_run_on_cifar_from_disk_trains_with_flips_and_probes_its_training_images(tmp_path):
    from tests.cifar_files import write_cifar

    write_cifar(tmp_path, "cifar10", "binary", per_file=8)  # 40 training, 8 held-out images
    train = paper_recipe("batchnorm", steps=4, dataset="cifar10", batch_size=16, image_size=8,
                         data_dir=str(tmp_path), eval_every=2, probe_after=2)
    model = ModelConfig(arch="cnn", depth=2, width=8)
    result = run_training(model, train)
    assert result.steps_done == 4 and not result.diverged
    assert result.curve["test_acc"].notna().sum() == 3  # steps 0, 2, 4 over the 8 held-out images
    assert sorted(result.probes["step"].unique()) == [0, 1, 2, 4]
    assert (result.probes["dataset"] == "cifar10").all()
    expected = run_probes(model, train.probe_config)  # the probe batch is CIFAR's, as run_probes draws it
    np.testing.assert_array_equal(result.probes_init["value"].to_numpy(), expected["value"].to_numpy())
    unflipped = run_training(model, TrainConfig(**{**train.to_dict(), "hflip": False}))
    assert not np.allclose(result.curve["loss"].iloc[1:], unflipped.curve["loss"].iloc[1:])
    with pytest.raises(ValueError, match="num_classes must be at least the 100 classes of cifar100"):
        write_cifar(tmp_path, "cifar100", "binary", per_file=16)
        run_training(model, TrainConfig(**{**train.to_dict(), "dataset": "cifar100"}))
