"""build_model builds the networks of spec section 2; every normalizer works in every family."""

import math

import pytest
import torch
from torch import nn

from normlab.core import catalog
from normlab.core.catalog import NORM_NAMES
from normlab.core.config import ModelConfig
from normlab.science.device import available_devices, resolve_device
from normlab.science.models import ACT, BLOCK, CONV, RES, BasicBlock, PreActBlock, Scale, build_model
from normlab.science.norms import CorrectedReLU, ScaledStdConv2d

FAMILIES = [
    dict(arch="mlp"),
    dict(arch="cnn"),
    dict(arch="resnet"),
    dict(arch="resnet", preact=True),
    dict(arch="resnet", skipinit=True, stages=2),
]


def _forward_backward(cfg, batch=4, size=8):
    model = build_model(cfg, (3, size, size)).train()
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    out = model(x)
    out.logsumexp(dim=1).mean().backward()
    return model, out


@pytest.mark.parametrize(("norm", "family"), [(n, f) for f in FAMILIES for n in NORM_NAMES
                                              if catalog.accepts(f["arch"], n)],
                         ids=lambda v: v if isinstance(v, str) else "-".join(f"{k}={x}"
                                                                             for k, x in v.items()))
def test_every_normalizer_gives_finite_outputs_and_gradients_in_every_family(norm, family):
    cfg = ModelConfig(norm=norm, depth=2, width=8, **family)
    model, out = _forward_backward(cfg)
    assert out.shape == (4, 10)
    assert torch.isfinite(out).all()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_tiny_end_to_end_at_width_4_and_batch_2():
    _, out = _forward_backward(ModelConfig(norm="groupnorm", depth=1, width=4, groups=2), batch=2, size=4)
    assert out.shape == (2, 10)


def _count(model, kind):
    return sum(1 for _, k, _ in model.probe_points() if k == kind)


def test_resnet56_has_55_convs_plus_2_projections():
    model = build_model(ModelConfig(preset="resnet56"))
    convs = [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    projections = [name for name in convs if "shortcut" in name]
    assert len(convs) - len(projections) == 55  # stem + 27 blocks x 2
    assert len(projections) == 2
    assert _count(model, BLOCK) == 27 and _count(model, RES) == 27


@pytest.mark.parametrize("preset, convs", [("vgg10", 10), ("vgg20", 20)])
def test_vgg_presets_have_their_conv_count(preset, convs):
    model = build_model(ModelConfig(preset=preset))
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == convs
    strides = [m.stride[0] for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert strides.count(2) == 4


def test_resnet56_halves_resolution_twice():
    model = build_model(ModelConfig(preset="resnet56"))
    feats = model.features(torch.randn(2, 3, 32, 32))
    assert feats.shape == (2, 128, 8, 8)


def test_free_sizes_set_depth_and_width():
    mlp = build_model(ModelConfig(arch="mlp", depth=5, width=12), (3, 4, 4))
    linears = [m for m in mlp.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 6 and linears[0].in_features == 48 and linears[1].in_features == 12
    cnn = build_model(ModelConfig(arch="cnn", depth=7, width=6))
    assert sum(isinstance(m, nn.Conv2d) for m in cnn.modules()) == 7
    resnet = build_model(ModelConfig(arch="resnet", depth=3, width=8, stages=2))
    assert _count(resnet, BLOCK) == 6


def test_weights_use_kaiming_normal_fan_in_and_zero_biases():
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="cnn", norm="none", depth=2, width=256))
    conv = model.features[1].conv
    fan_in = conv.weight[0].numel()
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / fan_in), rel=0.02)
    assert torch.equal(conv.bias, torch.zeros_like(conv.bias))


def test_post_activation_block_reads_like_the_equation():
    cfg = ModelConfig(norm="batchnorm", depth=1, width=8)
    block = build_model(cfg).features[1]
    assert isinstance(block, BasicBlock)
    x = torch.randn(4, 8, 6, 6)
    expected = torch.relu(block.scale.alpha * block.branch(x) + x)
    assert torch.allclose(block(x), expected)


def test_preact_block_has_nothing_after_the_addition():
    block = build_model(ModelConfig(norm="layernorm", depth=1, width=8, preact=True)).features[1]
    assert isinstance(block, PreActBlock)
    x = torch.randn(4, 8, 6, 6)
    assert torch.allclose(block(x), block.branch(x) + x)


def test_skipinit_alpha_is_a_learnable_zero_and_the_block_is_the_identity_at_init():
    model = build_model(ModelConfig(norm="none", depth=2, width=8, skipinit=True, preact=True))
    scales = [m for m in model.modules() if isinstance(m, Scale)]
    assert all(isinstance(s.alpha, nn.Parameter) and s.alpha.item() == 0 for s in scales)
    block = model.features[1]
    x = torch.randn(2, 8, 4, 4)
    assert torch.equal(block(x), x)


def test_without_skipinit_alpha_is_a_constant_one():
    model = build_model(ModelConfig(norm="none", depth=1, width=8))
    scale = next(m for m in model.modules() if isinstance(m, Scale))
    assert scale.alpha.item() == 1 and "alpha" not in dict(model.named_parameters())


@pytest.mark.parametrize("norm", ["evonorm_b0", "evonorm_s0"])
def test_evonorms_sit_in_the_activation_slot_and_act_on_the_trunk(norm):
    block = build_model(ModelConfig(norm=norm, depth=1, width=8)).features[1]
    assert isinstance(block.norm1, nn.Identity) and isinstance(block.norm2, nn.Identity)
    assert "EvoNorm" in type(block.act2).__name__  # after the addition, on the trunk


def test_weightnorm_activation_placement_offers_both_variants():
    after = build_model(ModelConfig(norm="weightnorm", depth=1, width=8)).features[1]
    inside = build_model(ModelConfig(norm="weightnorm", depth=1, width=8, wn_act="in_branch")).features[1]
    x = torch.randn(2, 8, 4, 4)
    assert isinstance(after.act2, CorrectedReLU)
    assert torch.allclose(after(x), after.act2(after.branch(x) + x))
    assert torch.allclose(inside(x), inside.branch(x) + x)  # the activation is inside the branch
    conv = after.conv1
    assert hasattr(conv, "parametrizations") and conv.bias is not None


def test_sws_convs_are_standardized_everywhere_but_the_head():
    model = build_model(ModelConfig(norm="sws", depth=1, width=8, stages=2))
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(isinstance(c, ScaledStdConv2d) for c in convs)


def test_probe_points_are_listed_in_forward_order_with_their_kinds():
    model = build_model(ModelConfig(norm="batchnorm", depth=2, width=8))
    points = list(model.probe_points())
    kinds = [k for _, k, _ in points]
    assert set(kinds) == {ACT, BLOCK, RES, CONV}
    assert points[0][0] == "features.0.conv" and points[-1][0] == "head"
    assert model.final_name() == "features.2"


def test_device_auto_picks_an_available_device_and_cpu_always_works():
    assert resolve_device("auto").type == available_devices()[0]
    assert resolve_device("cpu").type == "cpu"


def test_asking_for_an_absent_device_says_so(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"device 'cuda' is not available on this machine; available: .*cpu"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="Unknown device 'gpu'"):
        resolve_device("gpu")


@pytest.mark.parametrize("norm", ["groupnorm", "evonorm_s0"])
@pytest.mark.parametrize("preact", [False, True])
def test_a_group_size_holds_in_every_norm_across_stage_widths(norm, preact):
    # A pre-activation block's first norm sees the narrower input of a widening block.
    cfg = ModelConfig(norm=norm, depth=1, width=4, stages=3, group_size=2, preact=preact)
    model, out = _forward_backward(cfg)
    grouped = [m for m in model.modules() if hasattr(m, "num_groups") or hasattr(m, "groups")
               and not isinstance(m, nn.Conv2d)]
    assert grouped
    for m in grouped:
        channels = m.num_channels
        groups = getattr(m, "num_groups", getattr(m, "groups", None))
        assert channels // groups == 2


def test_the_paper_presets_keep_pytorchs_default_head_and_free_nets_a_kaiming_one():
    torch.manual_seed(0)
    paper = build_model(ModelConfig(preset="resnet56", norm="batchnorm")).head  # 128 -> 100
    torch.manual_seed(0)
    free = build_model(ModelConfig(arch="resnet", norm="batchnorm", width=128, num_classes=100)).head
    fan_in = paper.weight.shape[1]
    assert paper.weight.shape == (100, 128)
    # nn.Linear's default: uniform with std 1/sqrt(3 fan_in), a nonzero uniform bias (spec section 2)
    assert paper.weight.std().item() == pytest.approx(1 / math.sqrt(3 * fan_in), rel=0.05)
    assert paper.bias.abs().max().item() > 0
    assert free.weight.std().item() == pytest.approx(math.sqrt(2 / fan_in), rel=0.05)
    assert free.bias.abs().max().item() == 0


def test_the_block_types_above_cover_every_family_of_the_catalog():
    from normlab.core.catalog import ARCH_NAMES

    # the transformer reads tokens: tests/test_transformer.py checks its blocks against a reference
    assert {family["arch"] for family in FAMILIES} == set(ARCH_NAMES) - {"transformer"}
