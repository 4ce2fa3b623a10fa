"""Training a transformer: a byte-level language model on the text input, warm-up, and the warm-up study.

Tiny sizes (depth 2, width 32, 32 tokens, batch 8): each run takes a second or two on a CPU.
"""

from __future__ import annotations

import io
import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import run_train_cli as run
from helpers import train_parser as parser

from normlab.cli.train import warmup_config_from_args
from normlab.core import catalog
from normlab.core.config import ModelConfig
from normlab.core.train_config import (
    HELD_OUT_FRACTION,
    HELD_OUT_WINDOWS,
    LM_SIZES,
    LM_TRAIN,
    WARMUP_TRAIN,
    TrainConfig,
    WarmupStudyConfig,
    check_trainable,
    lm_train,
)
from normlab.science.training import text_bytes, text_windows, train
from normlab.science.warmup import SCALE_NOTE, arm_table, assemble_warmup, warmup_verdict

TINY_NET = dict(arch="transformer", depth=2, width=32, seq_len=32, heads=4)
TINY_TRAIN = dict(steps=40, batch_size=8, lr=3e-3, eval_every=20, probe_after=10,
                  probe_steps=(0, 1, 2, 5, 10))


@pytest.fixture(autouse=True)
def keep_torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_run():
    return train(ModelConfig(**TINY_NET), lm_train(**TINY_TRAIN))


# --- The data ---------------------------------------------------------------------------------------


def test_held_out_windows_share_no_byte_position_with_training_windows():
    # random bytes: a 17-byte window occurs once, so where it is found is where it was cut
    data = np.random.default_rng(0).integers(0, 256, 20_000, dtype=np.uint8).tobytes()
    seq_len = 16
    train_w, test_w = text_windows(data, seq_len)
    split = int(len(data) * (1 - HELD_OUT_FRACTION))
    assert train_w.shape[1] == test_w.shape[1] == seq_len + 1
    for w in train_w.numpy():
        assert data.find(w.tobytes()) + seq_len + 1 <= split  # wholly inside the training part
    for w in test_w.numpy():
        assert data.find(w.tobytes()) >= split  # wholly inside the held-out part
    assert len(train_w) == split // (seq_len + 1)  # every training window, none overlapping


def test_the_default_corpus_gives_held_out_windows_from_its_last_tenth_at_most_the_cap():
    data = text_bytes()
    assert len(data) > 400_000 and b"the" in data  # English, ~465 kB
    train_w, test_w = text_windows(data, 64)
    assert len(test_w) == HELD_OUT_WINDOWS
    assert len(train_w) == int(len(data) * (1 - HELD_OUT_FRACTION)) // 65


@pytest.mark.parametrize(("data", "message"), [
    (b"x" * 100, r"too short for seq_len 64: 100 bytes give 1 training and 0 held-out windows"),
    (b"", r"too short for seq_len 64"),
])
def test_a_text_too_short_for_the_windows_is_refused_naming_the_field(data, message):
    with pytest.raises(ValueError, match=rf"text_path's text is {message}"):
        text_windows(data, 64)


def test_a_missing_text_file_is_refused_naming_the_field(tmp_path):
    with pytest.raises(ValueError, match=r"text_path must name a readable file"):
        text_bytes(str(tmp_path / "absent.txt"))


# --- One run ------------------------------------------------------------------------------------------


def test_the_held_out_loss_falls_on_the_text_within_a_few_dozen_steps(tiny_run):
    evals = tiny_run.evaluations
    assert evals["step"].tolist() == [0, 20, 40]
    start, end = evals["test_loss"].iloc[0], evals["test_loss"].iloc[-1]
    assert start > math.log(256) - 1.0  # near uniform over the bytes at init
    assert end < start - 1.5, (start, end)  # byte frequencies alone are worth more than that
    assert not tiny_run.diverged
    loss = tiny_run.curve["loss"].dropna()
    assert loss.iloc[-5:].mean() < loss.iloc[:5].mean() - 1.0  # the training loss falls too


def test_bits_per_byte_is_the_held_out_loss_over_ln_2(tiny_run):
    curve = tiny_run.curve.dropna(subset=["test_loss"])
    np.testing.assert_allclose(curve["test_bpb"], curve["test_loss"] / math.log(2))
    summary = tiny_run.summary()
    assert summary["final_test_bpb"] == pytest.approx(summary["final_test_loss"] / math.log(2))
    assert summary["final_test_loss"] == pytest.approx(curve["test_loss"].iloc[-1])
    assert 0.0 <= summary["final_test_acc"] <= 1.0


def test_the_probes_run_at_the_same_steps_as_for_the_other_families(tiny_run):
    assert sorted(tiny_run.probes["step"].unique()) == [0, 1, 2, 5, 10]
    assert set(tiny_run.probes_after["step"]) == {10}
    assert {"blocks.0", "blocks.1"} <= set(tiny_run.probes["layer"])
    assert (tiny_run.probes["placement"] == "pre").all()


def test_an_image_run_has_no_bits_per_byte():
    result = train(ModelConfig(arch="mlp", depth=2, width=8, norm="layernorm"),
                   TrainConfig(steps=2, batch_size=8, image_size=4, eval_every=1, probe_after=1))
    assert "test_bpb" not in result.curve and math.isnan(result.summary()["final_test_bpb"])


def test_training_is_seeded_and_the_seed_changes_the_run():
    net, cfg = ModelConfig(**TINY_NET), lm_train(**{**TINY_TRAIN, "steps": 4, "probe_steps": (0,),
                                                   "probe_after": 4, "eval_every": 4})
    a, b, c = train(net, cfg), train(net, cfg), train(net, replace(cfg, seed=1))
    pd.testing.assert_series_equal(a.curve["loss"], b.curve["loss"])
    assert not np.allclose(a.curve["loss"].iloc[1:], c.curve["loss"].iloc[1:])


# --- Warm-up ----------------------------------------------------------------------------------------


def test_warm_up_rises_linearly_to_the_peak_rate_then_holds_it():
    cfg = lm_train(lr=0.01, warmup_steps=4, steps=10)
    rates = [cfg.lr_at(s) for s in range(1, 8)]
    assert rates == pytest.approx([0.0025, 0.005, 0.0075, 0.01, 0.01, 0.01, 0.01])
    assert lm_train(lr=0.01).lr_at(1) == 0.01  # no warm-up: the peak from the first step


def test_the_warm_up_study_runs_every_arm_and_seed_at_one_peak_rate():
    study = WarmupStudyConfig(seeds=2, warmups=(0, 20))
    runs = study.runs()
    assert len(runs) == 2 * 2 * 2
    assert {(m.placement, t.warmup_steps) for m, t in runs} == {("post", 0), ("post", 20), ("pre", 0),
                                                               ("pre", 20)}
    assert {t.lr for _, t in runs} == {WARMUP_TRAIN.lr} and {t.seed for _, t in runs} == {0, 1}
    assert all(m.arch == "transformer" and t.dataset == "text" and t.optimizer == "adamw" for m, t in runs)


@pytest.mark.parametrize(("kw", "message"), [
    (dict(placements=("sideways",)), r"placement \(placements\) 'sideways'"),
    (dict(warmups=(0, 500)), r"warmups must be between 0 and 200"),
    (dict(warmups=()), r"warmups must list at least one value"),
    (dict(seeds=0), r"seeds must be"),
    (dict(norm="batchnorm"), r"'batchnorm' does not apply to arch 'transformer'"),
    (dict(train=TrainConfig()), r"dataset 'digits' is images; arch 'transformer' reads bytes"),
])
def test_bad_warm_up_studies_are_refused_by_name(kw, message):
    with pytest.raises(ValueError, match=message):
        WarmupStudyConfig(**kw)


def _runs(post0, post_k, pre0, k=50) -> pd.DataFrame:
    rows = []
    for placement, warmup, losses in (("post", 0, post0), ("post", k, post_k), ("pre", 0, pre0)):
        for seed, loss in enumerate(losses):
            rows.append({"placement": placement, "warmup_steps": warmup, "seed": seed, "lr": 0.01,
                         "final_test_loss": loss, "final_test_bpb": loss / math.log(2),
                         "diverged": math.isnan(loss), "steps_done": 200, "seconds": 1.0})
    return pd.DataFrame(rows)


def test_the_verdict_says_post_ln_needs_warm_up_when_every_seed_is_worse_without():
    verdict = warmup_verdict(_runs([3.2, 3.3, 3.25], [2.5, 2.6, 2.55], [2.2, 2.3, 2.25]))
    assert verdict.post_needs_warmup is True and verdict.pre_trains_without is True
    assert "ends worse than with a 50-step warm-up in every seed: 3.200–3.300 nats" in verdict.text
    assert "agrees with Xiong et al. (2020)" in verdict.text and SCALE_NOTE in verdict.text
    assert "peak rate 0.01, 9 runs" in verdict.text


def test_the_verdict_sees_no_effect_when_the_seeds_overlap():
    verdict = warmup_verdict(_runs([2.5, 2.7, 2.6], [2.55, 2.65, 2.6], [2.6, 2.6, 2.6]))
    assert verdict.post_needs_warmup is False
    assert "overlap over the seeds" in verdict.text and "no effect shows at this scale" in verdict.text
    assert "does not reproduce Xiong et al. (2020)" in verdict.text and "small-scale check" in verdict.text


def test_a_diverged_run_counts_as_the_worst_and_is_reported():
    runs = _runs([math.nan, 3.0, 3.1], [2.5, 2.6, 2.55], [2.7, 2.8, 2.9])
    verdict = warmup_verdict(runs)
    assert verdict.post_needs_warmup is True and verdict.pre_trains_without is False
    assert "1 of 3 runs diverged" in verdict.text and "worse than the warmed-up Post-LN" in verdict.text
    arms = arm_table(runs).set_index(["placement", "warmup_steps"])
    assert arms.loc[("post", 0), "diverged"] == 1 and arms.loc[("post", 0), "loss_min"] == 3.0
    all_diverged = warmup_verdict(_runs([math.nan] * 2, [2.5, 2.6], [2.2, 2.3]))
    assert "diverged in all 2 runs" in all_diverged.text and all_diverged.post_needs_warmup is True


def test_the_verdict_needs_both_post_ln_arms():
    verdict = warmup_verdict(_runs([], [2.5], [2.2]))
    assert verdict.post_needs_warmup is None and "needs Post-LN runs with and without warm-up" in verdict.text
    with pytest.raises(ValueError, match="missing columns"):
        warmup_verdict(pd.DataFrame({"placement": ["post"]}))


def test_a_tiny_warm_up_study_assembles_its_frames():
    study = WarmupStudyConfig(seeds=1, warmups=(0, 4), depth=1, width=16, seq_len=16,
                              train=replace(WARMUP_TRAIN, steps=4, batch_size=4, eval_every=4, probe_after=4))
    from normlab.ops.run import run_warmup_study

    result = run_warmup_study(study, store=None)
    assert len(result.runs) == 4 and len(result.arms) == 4
    assert set(result.curves["warmup_steps"]) == {0, 4}
    assert result.verdict.text and result.runs["final_test_loss"].notna().all()
    assert assemble_warmup(study, []).runs.empty


# --- The catalog and the command line ----------------------------------------------------------------


def test_the_transformer_is_trainable_and_a_family_marked_otherwise_is_refused_by_name():
    assert catalog.family("transformer").trainable
    check_trainable("transformer")
    catalog.register_family(replace(catalog.family("mlp"), name="frozen_toy", trainable=False))
    try:
        with pytest.raises(ValueError, match=r"arch 'frozen_toy' cannot be trained yet \(its catalog row "
                                             r"has trainable=False\)"):
            check_trainable("frozen_toy")
    finally:
        catalog.unregister_family("frozen_toy")



TINY_FLAGS = ["--arch", "transformer", "--depth", "2", "--width", "32", "--seq-len", "32", "--steps", "6",
              "--batch-size", "8", "--eval-every", "3", "--probe-after", "3"]


def test_train_a_transformer_from_the_command_line_with_placement_and_warm_up(capsys):
    code, out, err = run(["train", *TINY_FLAGS, "--placement", "post", "--warmup", "3"], capsys)
    assert code == 0, err
    curve = pd.read_csv(io.StringIO(out))
    assert curve["step"].tolist() == list(range(7)) and (curve["placement"] == "post").all()
    assert (curve["warmup_steps"] == 3).all() and (curve["optimizer"] == "adamw").all()
    assert (curve["dataset"] == "text").all()
    assert "bits per byte" in err and "warm-up 3 steps" in err and "placement post" in err


def test_the_transformer_trains_with_the_language_model_defaults():
    args = parser().parse_args(["train", "--arch", "transformer"])
    from normlab.cli.common import given
    from normlab.cli.train import train_config_from_fields

    fields = given(args, TrainConfig)
    assert train_config_from_fields(fields, "default", "layernorm", "transformer") == LM_TRAIN
    assert LM_SIZES == {"depth": 4, "width": 64, "seq_len": 64}


@pytest.mark.parametrize(("argv", "message"), [
    (["train", "--arch", "transformer", "--placement", "sideways"], "placement"),
    (["train", "--arch", "transformer", "--warmup", "-1"], "warmup_steps must be"),
    (["train", "--arch", "transformer", "--optimizer", "adam"], "Unknown optimizer 'adam'"),
    (["train", "--arch", "transformer", "--dataset", "digits"], "dataset 'digits' is images"),
    (["train", "--arch", "transformer", "--recipe", "paper"], "recipe 'paper' is the paper's CIFAR setup"),
    (["train", "--arch", "transformer", "--text", "/no/such/file.txt", "--steps", "1", "--probe-after", "1"],
     "text_path must name a readable file"),
    (["train", "--arch", "transformer", "--hflip"], "hflip flips images"),
    (["train", "--arch", "cnn", "--dataset", "text"], "dataset 'text' is for a token family"),
    (["train", "--arch", "cnn", "--text", "a.txt"], "text_path names a file for dataset 'text'"),
    (["warmup", "--placements", "sideways"], "placement (placements)"),
    (["warmup", "--warmups", "0", "900"], "warmups must be between 0 and 200"),
    (["warmup", "--lr", "-1"], "lr must be"),
    (["warmup", "--seeds", "0"], "seeds must be"),
    (["warmup", "--dataset", "digits"], "dataset 'digits' is images"),
])
def test_bad_values_exit_2_with_one_line_naming_the_field(argv, message, capsys):
    code, out, err = run(argv, capsys)
    assert code == 2 and out == ""
    assert message in err and err.count("\n") == 1, err


def test_warmup_flags_set_the_study_and_its_training():
    config = warmup_config_from_args(parser().parse_args(["warmup", "--seeds", "2", "--lr", "0.003",
                                                          "--warmups", "0", "25", "--steps", "100"]))
    assert (config.seeds, config.warmups, config.train.lr, config.train.steps) == (2, (0, 25), 0.003, 100)
    assert config.train.optimizer == "adamw" and config.train.dataset == "text"
    assert warmup_config_from_args(parser().parse_args(["warmup"])) == WarmupStudyConfig()


def test_the_warmup_command_prints_the_arms_and_the_verdict(capsys):
    code, out, err = run(["warmup", "--seeds", "1", "--warmups", "0", "3", "--depth", "1", "--width", "16",
                          "--seq-len", "16", "--steps", "3", "--batch-size", "4", "--eval-every", "3",
                          "--probe-after", "3", "--store", "off"], capsys)
    assert code == 0, err
    arms = pd.read_csv(io.StringIO(out))
    assert arms[["placement", "warmup_steps"]].values.tolist() == [["post", 0], ["post", 3], ["pre", 0],
                                                                   ["pre", 3]]
    assert "held-out loss mean" in err and "small-scale check" in err


def test_step_0_of_a_run_is_run_probes_on_its_probe_config(tiny_run):
    from normlab.ops.run import run_probes

    cfg = tiny_run.train_config
    assert cfg.probe_config.input == "text" and cfg.probe_config.batch_size == cfg.batch_size
    expected = run_probes(tiny_run.model_config, cfg.probe_config)
    got = tiny_run.probes_init
    key = ["layer", "index", "kind", "metric"]
    merged = expected[[*key, "value"]].merge(got[[*key, "value"]], on=key, suffixes=("_probe", "_train"))
    assert len(merged) == len(expected) == len(got)
    np.testing.assert_allclose(merged["value_train"], merged["value_probe"], rtol=1e-6)


def test_the_correlation_study_refuses_a_transformer_on_images_before_any_run():
    from normlab.core.train_config import StudyConfig

    with pytest.raises(ValueError, match=r"dataset 'digits' is images; arch 'transformer' reads bytes"):
        StudyConfig(archs=("transformer",), norms=("layernorm",))
