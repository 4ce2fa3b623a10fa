"""The closed-form curves of spec section 4: their numbers, their conditions and their alignment."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from normlab.core import catalog
from normlab.core.catalog import NORM_NAMES
from normlab.core.config import ModelConfig
from normlab.science.models import BLOCK, CONV, build_model
from normlab.science.theory import (
    BN_GRAD_RATE,
    HE_RELU_BRANCH_VAR,
    RELU_VAR,
    SLOT_NORMS,
    THEORY_COLUMNS,
    TRUNK_NORMS,
    UNNORMALIZED,
    applies,
    gradient_applies,
    gradient_theory,
    rank_applies,
    rank_theory,
    variance_applies,
    variance_theory,
)


def _resnet(**kw):
    return ModelConfig(arch="resnet", **{"depth": 3, "width": 8, **kw})


def _ratios(values):
    values = np.asarray(values, dtype=float)
    return values[1:] / values[:-1]


# --- constants --------------------------------------------------------------------------------------------


def test_relu_variance_constant_is_the_variance_of_relu_of_a_standard_normal():
    z = torch.randn(2_000_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert RELU_VAR == pytest.approx(torch.relu(z).var().item(), abs=2e-3)
    assert RELU_VAR == pytest.approx(0.3408, abs=1e-4)


def test_preact_branch_constant_is_the_channel_variance_of_a_he_conv_on_relu():
    torch.manual_seed(0)
    layer = nn.Linear(512, 512, bias=False)
    nn.init.kaiming_normal_(layer.weight, mode="fan_in", nonlinearity="relu")
    with torch.no_grad():
        out = layer(torch.relu(torch.randn(4096, 512))).double()  # (N, C)
    assert out.var(dim=0).mean().item() == pytest.approx(HE_RELU_BRANCH_VAR, rel=0.05)


def test_batchnorm_gradient_rate_is_sqrt_pi_over_pi_minus_one():
    assert BN_GRAD_RATE**2 * (math.pi - 1) == pytest.approx(math.pi)
    assert BN_GRAD_RATE == pytest.approx(1.2112, abs=1e-4)


def test_normalizer_families_partition_the_registry():
    assert SLOT_NORMS | TRUNK_NORMS | UNNORMALIZED == set(NORM_NAMES)
    assert not (SLOT_NORMS & TRUNK_NORMS or SLOT_NORMS & UNNORMALIZED or TRUNK_NORMS & UNNORMALIZED)


@pytest.mark.parametrize("norm", [n for n in NORM_NAMES if catalog.accepts("resnet", n)])
def test_only_slot_norms_put_a_normalizer_on_the_projection_shortcut(norm):
    net = build_model(_resnet(norm=norm, stages=2, depth=1))
    shortcut = net.features[2].shortcut
    assert shortcut.project
    assert (not isinstance(shortcut.norm, nn.Identity)) == (norm in SLOT_NORMS)


def test_theory_leaves_the_global_random_state_untouched():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    variance_theory(_resnet(width=12, depth=5))  # a config not built before: builds a fresh model
    gradient_theory(ModelConfig(arch="mlp", depth=7, width=12))
    assert torch.equal(torch.rand(3), expected)


# --- variance of block outputs -----------------------------------------------------------------------------


@pytest.mark.parametrize("cfg", [
    _resnet(norm="none"), _resnet(norm="sws"), _resnet(norm="none", preact=True),
    _resnet(norm="weightnorm", wn_act="in_branch"), _resnet(norm="weightnorm", preact=True),
    _resnet(norm="none", stages=3, depth=2),
], ids=str)
def test_unnormalized_and_parametric_resnets_double_per_block_across_stages(cfg):
    frame = variance_theory(cfg)
    assert (frame["law"] == "doubling").all()
    np.testing.assert_allclose(_ratios(frame["value"]), 2.0)


def test_batchnorm_post_activation_resnet_adds_relu_variance_per_block():
    frame = variance_theory(_resnet(norm="batchnorm", depth=5))
    np.testing.assert_allclose(np.diff(frame["value"]), RELU_VAR)
    assert frame["value"].iloc[0] == pytest.approx(2 * RELU_VAR)  # relu-ed stem + one branch
    assert (frame["law"] == "linear").all()


def test_batchnorm_preact_resnet_adds_the_branch_variance_per_block():
    frame = variance_theory(_resnet(norm="batchnorm", depth=5, preact=True))
    np.testing.assert_allclose(np.diff(frame["value"]), HE_RELU_BRANCH_VAR)
    assert frame["value"].iloc[0] == pytest.approx(2.0 + HE_RELU_BRANCH_VAR)  # bare He stem conv


@pytest.mark.parametrize("preact", [False, True])
@pytest.mark.parametrize("norm", sorted(n for n in SLOT_NORMS if catalog.accepts("resnet", n)))
def test_normalized_projection_shortcut_restarts_the_trunk_at_each_new_stage(norm, preact):
    depth = 3
    frame = variance_theory(_resnet(norm=norm, depth=depth, stages=3, preact=preact, width=4))
    values = frame["value"].to_numpy()
    drops = [i for i in range(1, len(values)) if values[i] < values[i - 1]]
    assert drops == [depth, 2 * depth]
    reset = 1.0 + HE_RELU_BRANCH_VAR if preact else 2 * RELU_VAR
    np.testing.assert_allclose(values[[depth, 2 * depth]], reset)
    for stage in range(3):  # linear within each stage
        np.testing.assert_allclose(np.diff(values[stage * depth:(stage + 1) * depth]),
                                   HE_RELU_BRANCH_VAR if preact else RELU_VAR)


def test_skipinit_flattens_the_variance_at_the_stem_level():
    post = variance_theory(_resnet(norm="batchnorm", skipinit=True, stages=2))
    np.testing.assert_allclose(post["value"], RELU_VAR)  # relu(BN) everywhere, also after the shortcut
    pre = variance_theory(_resnet(norm="batchnorm", skipinit=True, stages=2, preact=True))
    np.testing.assert_allclose(pre["value"], [2.0] * 3 + [1.0] * 3)  # bare stem conv, then conv+BN
    bare = variance_theory(_resnet(norm="none", skipinit=True))
    assert (bare["law"] == "flat").all() and bare["value"].nunique() == 1


def test_evonorms_after_the_addition_keep_the_trunk_flat():
    frame = variance_theory(_resnet(norm="evonorm_b0"))
    assert (frame["law"] == "flat").all() and frame["value"].nunique() == 1
    assert "Lubana" in frame["source"].iloc[0]


@pytest.mark.parametrize("cfg, words", [
    (ModelConfig(arch="mlp", depth=3, width=8), "arch 'mlp'"),
    (ModelConfig(arch="cnn", depth=3, width=8), "arch 'cnn'"),
    (_resnet(norm="weightnorm"), "corrected ReLU after each addition"),
    (_resnet(norm="weightnorm", skipinit=True), "even with SkipInit"),
    (_resnet(norm="evonorm_s0", preact=True), "pre-activation"),
], ids=str)
def test_variance_laws_refuse_configs_outside_their_assumptions(cfg, words):
    ok, reason = variance_applies(cfg)
    assert not ok and words in reason
    with pytest.raises(ValueError, match=words.replace("(", r"\(")):
        variance_theory(cfg)


def test_start_var_anchors_the_first_block_and_increment_overrides_the_slope():
    frame = variance_theory(_resnet(norm="layernorm", depth=4), start_var=0.5, increment=0.15)
    np.testing.assert_allclose(frame["value"], [0.5, 0.65, 0.8, 0.95])
    assert variance_theory(_resnet(norm="none"), start_var=3.0)["value"].tolist() == [3.0, 6.0, 12.0]


@pytest.mark.parametrize("cfg", [_resnet(stages=2), _resnet(preact=True, stages=3, depth=2),
                                 ModelConfig(preset="resnet56", norm="none")], ids=str)
def test_variance_rows_are_the_models_block_outputs_in_forward_order(cfg):
    frame = variance_theory(cfg)
    blocks = [name for name, kind, _ in build_model(cfg).probe_points() if kind == BLOCK]
    assert frame["layer"].tolist() == blocks
    assert frame["index"].tolist() == list(range(len(blocks)))
    assert set(frame["kind"]) == {"block"} and set(frame["metric"]) == {"act_var"}
    assert list(frame.columns[:len(THEORY_COLUMNS)]) == THEORY_COLUMNS
    assert frame["norm"].iloc[0] == cfg.norm and frame["depth"].iloc[0] == cfg.depth


def test_resnet56_doubling_stays_finite_and_deep_doubling_overflows_to_inf_without_raising():
    values = variance_theory(ModelConfig(preset="resnet56", norm="none"))["value"]
    assert len(values) == 27 and np.isfinite(values).all()
    huge = variance_theory(_resnet(norm="none", depth=3), start_var=1e308)["value"]
    assert np.isinf(huge.iloc[-1])


# --- gradient growth with BatchNorm ------------------------------------------------------------------------


@pytest.mark.parametrize("cfg", [ModelConfig(arch="mlp", depth=6, width=8),
                                 ModelConfig(arch="cnn", depth=5, width=8)], ids=str)
def test_batchnorm_gradient_grows_by_the_rate_per_layer_toward_the_input(cfg):
    frame = gradient_theory(cfg, last_grad_norm=0.01)
    np.testing.assert_allclose(_ratios(frame["value"]), 1 / BN_GRAD_RATE)  # forward order: shrinking
    assert frame["value"].iloc[-1] == pytest.approx(0.01)
    convs = [name for name, kind, _ in build_model(cfg).probe_points() if kind == CONV]
    # first layer (raw inputs) and the head are left out; the rest keep their conv indices
    assert frame["layer"].tolist() == convs[1:-1]
    assert frame["index"].tolist() == list(range(1, len(convs) - 1))
    assert set(frame["kind"]) == {"conv"} and set(frame["metric"]) == {"grad_norm"}


def test_gradient_rate_overflows_to_inf_without_raising():
    frame = gradient_theory(ModelConfig(arch="mlp", depth=5, width=4), rate=1e200)
    assert np.isinf(frame["value"].iloc[0]) and frame["value"].iloc[-1] == 1.0


@pytest.mark.parametrize("cfg, words", [
    (ModelConfig(arch="mlp", norm="layernorm", depth=5, width=8), "batchnorm only"),
    (_resnet(), "plain nets"),
    (ModelConfig(arch="mlp", depth=2, width=8), "at least 3"),
], ids=str)
def test_gradient_rate_refuses_configs_outside_its_assumptions(cfg, words):
    ok, reason = gradient_applies(cfg)
    assert not ok and words in reason
    with pytest.raises(ValueError, match=words):
        gradient_theory(cfg)


# --- rank shape --------------------------------------------------------------------------------------------


def test_rank_shape_is_sqrt_width_over_group_size():
    frame = rank_theory(64, [1, 4, 16, 64])
    np.testing.assert_allclose(frame["value"], [8.0, 4.0, 2.0, 1.0])
    assert frame["groups"].tolist() == [64, 16, 4, 1]
    wide = rank_theory([16, 64, 256], 4)
    np.testing.assert_allclose(_ratios(wide["value"]), 2.0)  # 4x the width, 2x the rank


def test_rank_shape_passes_through_the_reference_point():
    frame = rank_theory([32, 128], [2, 8], reference=(32, 8, 5.0))
    value = {(w, g): v for w, g, v in frame[["width", "group_size", "value"]].itertuples(index=False)}
    assert value[(32, 8)] == pytest.approx(5.0)
    assert value[(32, 2)] == pytest.approx(10.0)
    assert value[(128, 2)] == pytest.approx(20.0)


def test_batchnorm_rank_counterpart_is_sqrt_width():
    frame = rank_theory([16, 64], None)
    np.testing.assert_allclose(frame["value"], [4.0, 8.0])
    assert set(frame["norm"]) == {"batchnorm"} and "Daneshmand" in frame["source"].iloc[0]


def test_rank_theory_skips_group_sizes_that_do_not_divide_the_width():
    frame = rank_theory([8, 12], [3, 8])
    assert sorted(frame[["width", "group_size"]].itertuples(index=False, name=None)) == [(8, 8), (12, 3)]


@pytest.mark.parametrize("kwargs, words", [
    ({"widths": 8, "group_sizes": 2, "metric": "cos_sim"}, "rank metric"),
    ({"widths": 0, "group_sizes": 2}, "widths"),
    ({"widths": 8, "group_sizes": 0}, "group_sizes"),
])
def test_rank_theory_refuses_bad_arguments(kwargs, words):
    with pytest.raises(ValueError, match=words):
        rank_theory(**kwargs)


def test_rank_bounds_speak_of_batchnorm_and_the_groupnorm_family_only():
    assert rank_applies(_resnet(norm="groupnorm"))[0] and rank_applies(_resnet(norm="layernorm"))[0]
    assert rank_applies(_resnet(norm="batchnorm"))[0]
    ok, reason = rank_applies(_resnet(norm="frn"))
    assert not ok and "'frn'" in reason


def test_applies_dispatches_by_theory_name_and_refuses_unknown_names():
    cfg = _resnet()
    assert applies("variance", cfg) == variance_applies(cfg)
    assert applies("gradient", cfg) == gradient_applies(cfg)
    with pytest.raises(ValueError, match="Unknown theory 'bogus'"):
        applies("bogus", cfg)


# --- against the measurements -----------------------------------------------------------------------------


def _measured(cfg, metric, kind, **probe):
    from normlab.core.config import ProbeConfig
    from normlab.ops.run import run_probes
    from normlab.science.probes import summarize

    frame = summarize(run_probes(cfg, ProbeConfig(**{"batch_size": 8, "image_size": 8, **probe})))
    return frame[(frame["metric"] == metric) & (frame["kind"] == kind)]


KEYS = ["layer", "index", "kind", "metric"]


@pytest.mark.parametrize("cfg", [_resnet(stages=2, depth=2), _resnet(preact=True, stages=2, depth=2),
                                 _resnet(norm="none", skipinit=True)], ids=str)
def test_variance_theory_rows_are_exactly_the_measured_block_rows(cfg):
    measured = _measured(cfg, "act_var", "block")
    theory = variance_theory(cfg)
    assert sorted(theory[KEYS].itertuples(index=False)) == sorted(measured[KEYS].itertuples(index=False))


def test_gradient_theory_rows_are_measured_conv_rows_of_the_same_indices():
    cfg = ModelConfig(arch="mlp", depth=4, width=8)
    measured = _measured(cfg, "grad_norm", "conv")
    merged = gradient_theory(cfg)[KEYS].merge(measured[KEYS], how="left", indicator=True)
    assert (merged["_merge"] == "both").all() and len(merged) == 3


@pytest.mark.parametrize("preact", [False, True])
def test_batchnorm_resnet_block_variance_follows_the_linear_law_with_its_stage_reset(preact):
    cfg = _resnet(norm="batchnorm", depth=4, width=16, stages=2, preact=preact)
    measured = _measured(cfg, "act_var", "block", batch_size=32, seeds=2)
    merged = variance_theory(cfg).merge(measured, on=KEYS)
    assert len(merged) == 8
    np.testing.assert_allclose(merged["mean"], merged["value"], rtol=0.2)


def test_wide_batchnorm_mlp_gradient_grows_at_the_predicted_rate():
    cfg = ModelConfig(arch="mlp", depth=8, width=256)
    measured = _measured(cfg, "grad_norm", "conv", batch_size=64, image_size=8)
    merged = gradient_theory(cfg).merge(measured, on=KEYS).sort_values("index")
    rate = (merged["mean"].iloc[0] / merged["mean"].iloc[-1]) ** (1 / (len(merged) - 1))
    assert rate == pytest.approx(BN_GRAD_RATE, rel=0.05)
