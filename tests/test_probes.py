"""run_probes, summarize, run_sweep and probe_module: the frame contract and its numbers."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import normlab.science.probes as probes
from normlab.core.config import ModelConfig, ProbeConfig, resolve_input
from normlab.ops.run import run_probes, run_sweep
from normlab.science.data import derive_seed, make_inputs, make_labels
from normlab.science.metrics import ACTIVATION_METRICS, METRICS, all_metrics
from normlab.science.models import build_model
from normlab.science.probes import FRAME_COLUMNS, MODEL_FIELDS, PROBE_FIELDS, probe_module, summarize

TINY_RESNET = ModelConfig(arch="resnet", depth=2, width=8, stages=2)
TINY_PROBE = ProbeConfig(batch_size=8, image_size=8, seeds=2)
METRICS_BY_KIND = {
    "act": set(ACTIVATION_METRICS),
    "block": set(ACTIVATION_METRICS),
    "res": {"res_var"},
    "conv": {"grad_norm"},
    "spectrum": {"gram_eigenvalue"},
}


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return run_probes(TINY_RESNET, TINY_PROBE)


# ---------------------------------------------------------------------------------------------
# The frame contract


def test_frame_has_the_contract_columns_in_order(frame):
    assert tuple(frame.columns) == FRAME_COLUMNS
    assert FRAME_COLUMNS[:8] == ("seed", "layer", "index", "kind", "metric", "value", "final", "overflow")
    assert set(MODEL_FIELDS) == {f.name for f in dataclasses.fields(ModelConfig)}
    assert "seed" not in PROBE_FIELDS and "seeds" not in PROBE_FIELDS
    assert frame["value"].dtype == np.float64
    assert frame["final"].dtype == bool and frame["overflow"].dtype == bool
    assert frame["seed"].dtype == np.int64 and frame["index"].dtype == np.int64


def test_one_row_per_seed_layer_and_metric(frame):
    non_spectrum = frame[frame.kind != "spectrum"]
    assert not non_spectrum.duplicated(["seed", "layer", "kind", "metric"]).any()
    assert not frame.duplicated(["seed", "layer", "kind", "index", "metric"]).any()


def test_each_kind_carries_its_metrics(frame):
    assert set(frame.metric) <= set(METRICS)
    for kind, metrics in frame.groupby("kind").metric:
        assert set(metrics) == METRICS_BY_KIND[kind], kind


def test_every_probe_point_appears_with_forward_order_indices(frame):
    model = build_model(TINY_RESNET, (3, 8, 8))
    points = {(name, kind) for name, kind, _ in model.probe_points()}
    seed0 = frame[(frame.seed == 0) & (frame.kind != "spectrum")]
    assert set(zip(seed0.layer, seed0.kind, strict=True)) == points
    for kind, rows in seed0.drop_duplicates(["layer", "kind"]).groupby("kind"):
        assert sorted(rows["index"]) == list(range(len(rows))), kind


def test_final_rows_are_the_last_block_and_its_gram_spectrum(frame):
    for seed, rows in frame[frame.final].groupby("seed"):
        assert set(rows.layer) == {"features.4"}
        spectrum = rows[rows.kind == "spectrum"].sort_values("index")
        assert list(spectrum["index"]) == list(range(TINY_PROBE.batch_size))
        assert spectrum.value.sum() == pytest.approx(TINY_PROBE.batch_size)  # trace of the cosine matrix
        assert (np.diff(spectrum.value) <= 1e-12).all()  # descending
        assert set(rows[rows.kind == "block"].metric) == set(ACTIVATION_METRICS), seed


def test_config_columns_hold_the_config_values(frame):
    for name in MODEL_FIELDS:
        expected = getattr(TINY_RESNET, name)
        column = frame[name]
        assert column.map(lambda v, e=expected: v == e or (e is None and v is None)).all(), name
    for name in PROBE_FIELDS:
        # the input column names the input read: the family's own when the config left it None
        expected = resolve_input(TINY_RESNET, TINY_PROBE) if name == "input" else getattr(TINY_PROBE, name)
        assert frame[name].map(lambda v, e=expected: v == e or (e is None and v is None)).all(), name


def test_seeds_are_seed_then_consecutive(frame):
    assert sorted(frame.seed.unique()) == [0, 1]
    probe = ProbeConfig(batch_size=4, image_size=2, seed=5, seeds=3)
    later = run_probes(ModelConfig(arch="mlp", depth=1, width=4), probe)
    assert sorted(later.seed.unique()) == [5, 6, 7]


def test_the_values_are_the_metrics_of_the_tapped_activations():
    # Rebuild the same network, inputs and labels by hand and compare one layer's metrics.
    cfg, pcfg = ModelConfig(arch="cnn", depth=3, width=8), ProbeConfig(batch_size=6, image_size=6)
    frame = run_probes(cfg, pcfg)
    torch.manual_seed(derive_seed(0, "init"))
    model = build_model(cfg, (3, 6, 6)).train()
    x = make_inputs(pcfg, 0)
    acts = {}
    model.features[1].act.register_forward_hook(lambda m, a, out: acts.setdefault("act", out.detach()))
    z = {}
    model.features[2].conv.register_forward_hook(lambda m, a, out: z.setdefault("conv", out))
    loss = F.cross_entropy(model(x), make_labels(6, cfg.num_classes, 0))
    (dz,) = torch.autograd.grad(loss, [z["conv"]])
    expected = all_metrics(acts["act"], pcfg.rank_tol)
    rows = frame[frame.layer == "features.1.act"].set_index("metric").value
    for metric, value in expected.items():
        assert rows[metric] == pytest.approx(value, rel=1e-9, abs=1e-12), metric
    grad = frame[(frame.layer == "features.2.conv")].value.item()
    assert grad == pytest.approx(float(dz.double().norm()), rel=1e-5)


# ---------------------------------------------------------------------------------------------
# Determinism and numerics


def test_same_config_and_seed_give_an_identical_frame(frame):
    pd.testing.assert_frame_equal(run_probes(TINY_RESNET, TINY_PROBE), frame)


def test_a_seed_gives_the_same_rows_alone_or_within_a_run(frame):
    alone = run_probes(TINY_RESNET, dataclasses.replace(TINY_PROBE, seed=1, seeds=1))
    within = frame[frame.seed == 1].reset_index(drop=True)
    pd.testing.assert_frame_equal(alone, within)


def test_different_seeds_give_different_values(frame):
    a = frame[frame.seed == 0].value.to_numpy()
    b = frame[frame.seed == 1].value.to_numpy()
    assert a.shape == b.shape and not np.allclose(a, b)


def test_probing_leaves_the_global_random_state_untouched():
    torch.manual_seed(7)
    state = torch.get_rng_state()
    run_probes(ModelConfig(arch="mlp", depth=2, width=8), ProbeConfig(batch_size=4, image_size=2))
    assert torch.equal(torch.get_rng_state(), state)


def test_skipinit_branches_give_exact_zeros_not_nan():
    frame = run_probes(ModelConfig(arch="resnet", depth=2, width=8, skipinit=True),
                       ProbeConfig(batch_size=4, image_size=4))
    branch_convs = frame[frame.layer.str.contains(r"\.conv[12]$") & (frame.metric == "grad_norm")]
    assert len(branch_convs) == 4 and (branch_convs.value == 0.0).all()
    assert (frame[frame.metric == "res_var"].value == 0.0).all()
    assert not frame.overflow.any()
    stem = frame[(frame.layer == "features.0.conv")].value.item()
    assert stem > 0


def test_overflow_is_flagged_in_the_frame_not_raised(monkeypatch):
    # Inputs near float32's maximum: the first linear layer's sums overflow to inf.
    def huge_inputs(probe_config, seed, in_channels=3):
        return make_inputs(probe_config, seed, in_channels) * 3e38

    monkeypatch.setattr(probes, "make_inputs", huge_inputs)
    frame = run_probes(ModelConfig(arch="mlp", norm="none", depth=3, width=8),
                       ProbeConfig(batch_size=4, image_size=4))
    bad = frame[frame.overflow]
    assert len(bad) > 0
    assert not np.isfinite(bad.value).all()
    assert frame.loc[~np.isfinite(frame.value), "overflow"].all()


def test_instancenorm_mlp_collapses_every_feature_to_beta_without_overflow():
    # InstanceNorm on (N, C) normalizes single values: the output is exactly beta = 0, so every
    # sample is the zero vector (cos_sim 1 by the zero-sample convention) and no gradient flows.
    frame = run_probes(ModelConfig(arch="mlp", norm="instancenorm", depth=2, width=8),
                       ProbeConfig(batch_size=4, image_size=2))
    final = frame[frame.final & (frame.kind == "act")].set_index("metric").value
    assert final["act_var"] == 0 and final["cos_sim"] == 1
    grads = frame[(frame.metric == "grad_norm") & (frame.layer != "head")].value
    assert (grads == 0).all()
    assert np.isfinite(frame.value).all() and not frame.overflow.any()


# ---------------------------------------------------------------------------------------------
# Errors at the edge


@pytest.mark.parametrize(
    "args, match",
    [
        (({"arch": "mlp"}, ProbeConfig()), "model_config must be a normlab ModelConfig"),
        ((ModelConfig(), {"batch_size": 4}), "probe_config must be a normlab ProbeConfig"),
        ((ProbeConfig(), ModelConfig()), "model_config must be a normlab ModelConfig"),
    ],
)
def test_run_probes_refuses_anything_but_configs(args, match):
    with pytest.raises(ValueError, match=match):
        run_probes(*args)


def test_run_probes_refuses_a_progress_that_is_not_callable():
    with pytest.raises(ValueError, match="progress"):
        run_probes(TINY_RESNET, TINY_PROBE, progress=3)


def test_run_probes_calls_progress_once_per_seed():
    calls = []
    run_probes(ModelConfig(arch="mlp", depth=2, width=8), ProbeConfig(batch_size=4, image_size=2, seeds=3),
               progress=lambda *a: calls.append(a))
    assert [(d, t) for d, t, _ in calls] == [(1, 3), (2, 3), (3, 3)]
    assert all("mlp" in label for _, _, label in calls)


# ---------------------------------------------------------------------------------------------
# summarize


def test_summarize_gives_mean_min_max_and_count_over_seeds(frame):
    summary = summarize(frame)
    assert list(summary.columns[:10]) == ["layer", "index", "kind", "metric", "mean", "min", "max", "n",
                                         "final", "overflow"]
    assert set(MODEL_FIELDS) | set(PROBE_FIELDS) <= set(summary.columns)
    assert "seed" not in summary.columns and "value" not in summary.columns
    assert len(summary) == len(frame) // 2
    assert (summary.n == 2).all()
    by_hand = frame.groupby(["layer", "kind", "index", "metric"]).value.agg(["mean", "min", "max"])
    merged = summary.set_index(["layer", "kind", "index", "metric"])[["mean", "min", "max"]]
    pd.testing.assert_frame_equal(merged.sort_index(), by_hand.sort_index(), check_exact=False)


def test_summarize_lets_a_nan_seed_show(frame):
    broken = frame.copy()
    row = broken.index[(broken.metric == "cos_sim") & (broken.seed == 1)][0]
    broken.loc[row, ["value", "overflow"]] = [math.nan, True]
    summary = summarize(broken)
    hit = summary[(summary.layer == broken.loc[row, "layer"]) & (summary.metric == "cos_sim")]
    assert math.isnan(hit["mean"].item()) and hit["overflow"].item()


def test_summarize_refuses_a_frame_without_values():
    with pytest.raises(ValueError, match="missing columns"):
        summarize(pd.DataFrame({"layer": ["a"]}))


# ---------------------------------------------------------------------------------------------
# run_sweep


def test_sweep_concatenates_one_run_per_combination_with_progress():
    base = ModelConfig(arch="mlp", depth=2, width=8)
    probe = ProbeConfig(batch_size=4, image_size=2, seeds=2)
    calls = []
    frame = run_sweep(base, probe, {"norm": ["batchnorm", "layernorm"], "depth": [2, 3]},
                      progress=lambda *a: calls.append(a))
    runs = frame.groupby(["norm", "depth"]).seed.nunique()
    assert runs.to_dict() == {(n, d): 2 for n in ("batchnorm", "layernorm") for d in (2, 3)}
    single = run_probes(dataclasses.replace(base, norm="layernorm", depth=3), probe)
    got = frame[(frame.norm == "layernorm") & (frame.depth == 3)].reset_index(drop=True)
    pd.testing.assert_frame_equal(got, single)
    assert [c[0] for c in calls] == list(range(1, 9)) and {c[1] for c in calls} == {8}
    assert "norm=layernorm, depth=3" in calls[-1][2]


def test_sweep_over_probe_fields_varies_the_probe_config():
    frame = run_sweep(ModelConfig(arch="mlp", depth=2, width=8), ProbeConfig(batch_size=4, image_size=2),
                      {"batch_size": [4, 6]})
    spectrum = frame[frame.kind == "spectrum"].groupby("batch_size").size()
    assert spectrum.to_dict() == {4: 4, 6: 6}


def test_sweeping_width_re_resolves_a_default_group_count():
    base = ModelConfig(arch="mlp", norm="groupnorm", depth=2, width=16)  # default groups = 16
    frame = run_sweep(base, ProbeConfig(batch_size=4, image_size=2), {"width": [8, 32]})
    assert frame.groupby("width")["groups"].first().to_dict() == {8: 8, 32: 32}


def test_sweeping_arch_drops_the_resnet_stage_count():
    frame = run_sweep(ModelConfig(arch="resnet", depth=1, width=4), ProbeConfig(batch_size=4, image_size=4),
                      {"arch": ["resnet", "cnn"]})
    stages = frame.drop_duplicates("arch").set_index("arch").stages
    assert stages["resnet"] == 1 and (stages["cnn"] is None or math.isnan(stages["cnn"]))


def test_sweeping_presets_switches_between_preset_and_free_networks():
    base = ModelConfig(preset="vgg10")
    configs = [probes.vary(base, {"preset": p}) for p in (None, "resnet56")]
    assert (configs[0].arch, configs[0].preset, configs[0].depth) == ("cnn", None, 10)
    assert (configs[1].arch, configs[1].depth, configs[1].stages) == ("resnet", 9, 3)
    assert probes.vary(ModelConfig(preset="resnet56"), {"norm": "groupnorm"}).groups == 32


def test_summarize_keeps_config_values_of_a_sweep():
    probe = ProbeConfig(batch_size=4, image_size=2, seeds=2)
    frame = run_sweep(ModelConfig(arch="mlp", depth=2, width=8), probe, {"norm": ["batchnorm", "groupnorm"]})
    summary = summarize(frame)
    assert len(summary) == len(frame) // 2 and (summary.n == 2).all()
    groups = summary.drop_duplicates("norm").set_index("norm")["groups"]
    assert groups["batchnorm"] is None and groups["groupnorm"] == 8 and isinstance(groups["groupnorm"], int)


def test_sweep_refuses_an_unknown_field_naming_it_and_the_allowed_ones():
    with pytest.raises(ValueError, match=r"Unknown sweep field\(s\) \['nrom'\]; expected some of .*'norm'"):
        run_sweep(TINY_RESNET, TINY_PROBE, {"nrom": ["batchnorm"]})


@pytest.mark.parametrize(
    "over, match",
    [
        ({"norm": "batchnorm"}, "must be a non-empty list"),
        ({"depth": []}, "must be a non-empty list"),
        ({"norm": ["batchnorm", "magicnorm"]}, "norm='magicnorm' is invalid: Unknown normalizer"),
        ({"batch_size": [4, 1]}, "batch_size=1 is invalid"),
    ],
)
def test_sweep_validates_every_point_before_computing_any(over, match):
    calls = []
    with pytest.raises(ValueError, match=match):
        run_sweep(TINY_RESNET, TINY_PROBE, over, progress=lambda *a: calls.append(a))
    assert calls == []


# ---------------------------------------------------------------------------------------------
# probe_module


def hand_made() -> nn.Sequential:
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1), nn.GroupNorm(2, 8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4),
    )


def test_probe_module_measures_norm_layers_and_conv_gradients():
    net = hand_made()
    x = torch.randn(6, 3, 5, 5)
    targets = torch.tensor([0, 1, 2, 3, 0, 1])
    frame = probe_module(net, x, targets)
    assert set(zip(frame.layer, frame.kind, strict=True)) == {
        ("0", "conv"), ("3", "conv"), ("8", "conv"), ("1", "act"), ("4", "act"), ("4", "spectrum")}
    outs = {}
    hooks = [net[i].register_forward_hook(lambda m, a, o, i=i: outs.setdefault(i, o)) for i in (1, 3, 4)]
    (dz,) = torch.autograd.grad(F.cross_entropy(net(x), targets), [outs[3]])
    for h in hooks:
        h.remove()
    rows = frame[frame.layer == "1"].set_index("metric").value
    for metric, value in all_metrics(outs[1]).items():
        assert rows[metric] == pytest.approx(value, rel=1e-9, abs=1e-12), metric
    assert frame[frame.layer == "3"].value.item() == pytest.approx(float(dz.norm()), rel=1e-5)
    assert frame[frame.final].layer.unique().tolist() == ["4"]


def test_probe_module_leaves_parameter_gradients_and_inputs_alone():
    net = hand_made()
    x = torch.randn(4, 3, 5, 5)
    probe_module(net, x)
    assert all(p.grad is None for p in net.parameters())
    assert not x.requires_grad and x.grad is None


def test_probe_module_taps_the_modules_it_is_given():
    net = hand_made()
    frame = probe_module(net, torch.randn(4, 3, 5, 5), modules=["2", "5"])
    acts = frame[frame.kind == "act"]
    assert acts.drop_duplicates("layer").layer.tolist() == ["2", "5"]
    assert acts.groupby("layer").metric.apply(set).map(lambda s: s == set(ACTIVATION_METRICS)).all()


def test_probe_module_refuses_unknown_module_names_and_bad_inputs():
    net = hand_made()
    with pytest.raises(ValueError, match=r"Unknown module name\(s\) \['nope'\]"):
        probe_module(net, torch.randn(4, 3, 5, 5), modules=["nope"])
    with pytest.raises(ValueError, match="N >= 2"):
        probe_module(net, torch.randn(1, 3, 5, 5))
    with pytest.raises(ValueError, match="torch.nn.Module"):
        probe_module(lambda x: x, torch.randn(4, 3))


def test_probe_module_flags_a_real_overflow():
    net = nn.Sequential(nn.Linear(8, 8), nn.LayerNorm(8), nn.Linear(8, 8), nn.LayerNorm(8))
    with torch.no_grad():
        net[1].weight.fill_(1e20)  # finite: the first LayerNorm's output is about 1e20
        net[2].weight.mul_(1e30)  # about 1e50: beyond float32, inf, and the second LayerNorm gives NaN
    frame = probe_module(net, torch.randn(4, 8))
    assert frame[frame.layer == "1"].overflow.eq(False).all()
    assert frame[frame.layer == "3"].overflow.all()


def test_probe_module_on_a_normlab_net_uses_its_final_representation():
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="cnn", depth=2, width=4), (3, 4, 4))
    frame = probe_module(model, torch.randn(4, 3, 4, 4), modules=["features.0.act", "features.1.act"])
    assert frame[frame.final].layer.unique().tolist() == ["features.1.act"]


@pytest.mark.parametrize("cfg", [ModelConfig(norm="batchnorm", depth=2, width=8, skipinit=True),
                                 ModelConfig(arch="cnn", norm="groupnorm", depth=3, width=8, groups=2)])
def test_probe_module_on_a_normlab_network_gives_the_rows_of_run_probes(cfg):
    probe = ProbeConfig(batch_size=8, image_size=8, seed=3)
    expected = run_probes(cfg, probe)[list(probes.ROW_COLUMNS)]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(3, "init"))
        model = build_model(cfg, (3, 8, 8)).train()
    x = make_inputs(probe, 3, cfg.in_channels)
    y = make_labels(8, cfg.num_classes, 3)
    got = probes.probe_module(model, x, y, seed=3)[list(probes.ROW_COLUMNS)]
    assert set(got["kind"]) == set(expected["kind"])  # residual branches included
    pd.testing.assert_frame_equal(got.reset_index(drop=True), expected.reset_index(drop=True),
                                  check_exact=False, rtol=1e-10)
