"""One definition per summary: gradient growth and range, final values, growth per block within stages."""

from __future__ import annotations

import io
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import contract_frame
from streamlit.testing.v1 import AppTest

from normlab import ModelConfig, ProbeConfig, cli, run_probes
from normlab.core.train_config import TrainConfig
from normlab.ops.run import run_training
from normlab.science import summary
from ui.content import claims
from ui.figures import measures

ROOT = Path(__file__).resolve().parents[1]


def _grad_rows(values, names=None) -> pd.DataFrame:
    names = names or [f"l{k}" for k in range(len(values) - 1)] + ["head"]
    return pd.DataFrame({"seed": 0, "layer": names, "index": range(len(values)), "kind": "conv",
                         "metric": "grad_norm", "value": values})


# --- gradients ----------------------------------------------------------------------------------------------


def test_gradient_growth_is_first_over_last_hidden_layer_with_the_head_and_zeros_left_out():
    frame = _grad_rows([8.0, 0.0, 4.0, 2.0, 0.0, 100.0])  # zeros: SkipInit branches; 100: the head
    assert summary.gradient_growth(frame) == 4.0
    assert summary.gradient_range(frame) == 4.0


def test_gradient_growth_and_range_read_overflow_as_nan_not_as_a_number():
    assert math.isnan(summary.gradient_growth(_grad_rows([math.inf, 2.0, 1.0])))
    assert math.isnan(summary.gradient_range(_grad_rows([3.0, math.nan, 1.0, 1.0])))
    assert math.isnan(summary.gradient_growth(_grad_rows([2.0, 1.0])))  # one hidden layer: no growth


def test_without_a_head_layer_the_last_conv_linear_output_is_the_classifier():
    frame = _grad_rows([6.0, 3.0, 50.0], names=["a", "b", "fc"])
    assert summary.gradient_growth(frame) == 2.0


def test_gradient_growth_is_taken_on_the_seed_means_so_frame_and_summary_agree():
    frame = contract_frame()
    stats = measures.aggregate(frame)
    assert summary.gradient_growth(frame) == pytest.approx(summary.gradient_growth(stats, "mean"))
    assert measures.gradient_growth(stats)["BatchNorm"] == pytest.approx(summary.gradient_growth(frame))


def test_final_value_reads_the_rows_flagged_final():
    frame = contract_frame(cos=lambda b: 0.1 * b)
    assert summary.final_value(frame, "cos_sim") == pytest.approx(0.5)  # block 5 of 5
    assert math.isnan(summary.final_value(frame, "res_var_missing"))


# --- growth per block ---------------------------------------------------------------------------------------


def test_growth_is_fitted_within_each_stage_so_resets_are_not_a_decline():
    per_stage = [0.68 + 0.34 * k for k in range(9)]
    values = per_stage * 3  # three stages, each reset by a normalized projection shortcut
    stages = np.repeat([0, 1, 2], 9)
    across = summary.growth(values)
    within = summary.growth(values, stages)
    assert within.shape == "linear" and within.per_block == pytest.approx(0.34)
    assert within.stages == 3 and "within each of 3 stages" in within.describe()
    assert abs(across.per_block) < 0.34 / 2  # the fit across resets is what the stage fit avoids


@pytest.mark.parametrize(("values", "shape"), [
    ([1 + 0.34 * k for k in range(12)], "linear"),
    ([0.7 * 2.0 ** k for k in range(12)], "exponential growth"),
    ([1e-6 ** (k / 11) for k in range(12)], "exponential decay"),  # six orders down
    ([0.57] * 12, "flat"),
    ([1.0, math.inf, 3.0], "unknown"),
])
def test_growth_verdicts(values, shape):
    assert summary.growth(values).shape == shape


def test_resnet56_batchnorm_grows_by_about_a_third_per_block_within_each_stage():
    model = ModelConfig(preset="resnet56", norm="batchnorm")
    frame = run_probes(model, ProbeConfig(batch_size=8, image_size=8))
    stats = measures.aggregate(frame)
    growth = measures.depth_growths(stats, "act_var")["BatchNorm"]
    assert growth.shape == "linear" and growth.stages == 3
    assert 0.25 < growth.per_block < 0.45  # Var(relu(z)) = 0.34 per block (De & Smith 2020)


def test_vgg20_without_normalization_reads_as_exponential_decay():
    frame = run_probes(ModelConfig(preset="vgg20", norm="none"), ProbeConfig(batch_size=8, image_size=32))
    growth = measures.depth_growths(measures.aggregate(frame), "act_var")["No normalization"]
    assert growth.shape == "exponential decay" and growth.ratio < 1


# --- the same network reads the same everywhere -------------------------------------------------------------

CNN = ["--arch", "cnn", "--depth", "5", "--width", "8", "--batch-size", "32", "--image-size", "16"]


def _cli_growth(capsys) -> float:
    code = cli.main(["sweep", *CNN, "--over", "norm=batchnorm", "--format", "table"])
    out = capsys.readouterr().out
    assert code == 0
    table = pd.read_csv(io.StringIO("\n".join(out.splitlines()[1:])), sep=r"\s+")
    return float(table["grad_growth"].iloc[0])


def test_the_sweep_table_the_pages_the_claims_and_the_study_read_one_gradient_growth(capsys):
    model = ModelConfig(arch="cnn", norm="batchnorm", depth=5, width=8)
    frame = run_probes(model, ProbeConfig(batch_size=32, image_size=16))
    stats = measures.aggregate(frame)
    value = summary.gradient_growth(frame)
    assert _cli_growth(capsys) == pytest.approx(value, rel=1e-3)  # the table prints 4 digits
    assert measures.gradient_growth(stats)["BatchNorm"] == pytest.approx(value)
    verdict = claims.gradient_explosion(frame, stats)
    assert f"×{value:.3g}" in verdict.text
    # the dashboard's Gradients and Overview pages, same network (the sidebar's defaults: batch 32, image 16)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.query_params.update(net="cnn", norms=["batchnorm"], depth="5", width="8")
    at.run()
    cards = [m.value for m in at.metric if "gradient growth" in m.label]
    assert cards == [f"×{value:.3g}"]
    at.switch_page("pages/gradients.py").run()
    caption = " ".join(c.value for c in at.caption)
    assert re.search(rf"BatchNorm ×{re.escape(f'{value:.3g}')}\b", caption), caption
    # the training study reads its own probes through the same function
    result = run_training(model, TrainConfig(steps=2, batch_size=16, eval_every=2, probe_after=1,
                                             image_size=8))
    assert result.grad_growth_init == summary.gradient_growth(result.probes_init)
    assert result.summary()["grad_growth_init"] == result.grad_growth_init


# --- spearman -----------------------------------------------------------------------------------------------


def test_the_claims_rank_correlation_is_the_studys():
    from normlab.science.summary import spearman

    assert spearman is summary.spearman
    assert summary.spearman([1, 2, 3, 4], [10, 20, 15, 40]) == pytest.approx(0.8)
