"""The normalizers match spec section 1 and torch's own reference functions."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from normlab.core import catalog
from normlab.core.catalog import NORM_NAMES
from normlab.science.norms import (
    EPS,
    NORMALIZERS,
    RELU_GAIN,
    CorrectedReLU,
    DynamicErf,
    DynamicTanh,
    EvoNormB0,
    EvoNormS0,
    FilterResponseNorm,
    ScaledStdConv2d,
    ScaledStdLinear,
    apply_weight_norm,
    create_norm,
    get_normalizer,
    token_norm,
)

torch.set_default_dtype(torch.float32)


def _x(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g) * 3 + 1


def _randomize_affine(module):
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p))
    return module


def test_registry_lists_every_normalizer_of_the_spec():
    assert tuple(NORMALIZERS) == tuple(NORM_NAMES)
    assert set(NORM_NAMES) == {
        "none", "batchnorm", "layernorm", "instancenorm", "groupnorm",
        "frn", "evonorm_b0", "evonorm_s0", "weightnorm", "sws", "rmsnorm", "dyt", "derf",
    }


def test_unknown_normalizer_names_the_choices():
    with pytest.raises(ValueError, match=r"Unknown normalizer 'bn'; expected one of \['batchnorm'"):
        get_normalizer("bn")


def test_groupnorm_without_groups_is_refused_with_a_message():
    with pytest.raises(ValueError, match="groupnorm needs a group count"):
        create_norm("groupnorm", 8)


@pytest.mark.parametrize("shape", [(4, 8, 5, 5), (4, 8)])
def test_groupnorm_with_one_group_is_layernorm(shape):
    x = _x(*shape)
    gn = _randomize_affine(create_norm("groupnorm", 8, groups=1))
    ln = create_norm("layernorm", 8)
    ln.load_state_dict(gn.state_dict())
    # The spec's layer norm: statistics per sample over (C, H, W), per-channel affine.
    ref = F.layer_norm(x, x.shape[1:], eps=EPS)
    view = (1, -1) + (1,) * (x.dim() - 2)
    ref = ref * gn.weight.view(view) + gn.bias.view(view)
    assert torch.allclose(gn(x), ref, atol=1e-5)
    assert torch.allclose(ln(x), ref, atol=1e-5)


def test_groupnorm_with_c_groups_is_instancenorm():
    x = _x(4, 8, 5, 5)
    gn = _randomize_affine(create_norm("groupnorm", 8, groups=8))
    inn = create_norm("instancenorm", 8)
    inn.load_state_dict(gn.state_dict())
    ref = F.instance_norm(x, weight=gn.weight, bias=gn.bias, eps=EPS)
    assert torch.allclose(gn(x), ref, atol=1e-5)
    assert torch.allclose(inn(x), ref, atol=1e-5)


@pytest.mark.parametrize("groups", [2, 4])
def test_groupnorm_matches_torch_group_norm(groups):
    x = _x(3, 8, 4, 4)
    gn = _randomize_affine(create_norm("groupnorm", 8, groups=groups))
    assert torch.allclose(gn(x), F.group_norm(x, groups, gn.weight, gn.bias, EPS), atol=1e-6)


@pytest.mark.parametrize("shape", [(6, 8, 5, 5), (6, 8)])
def test_batchnorm_matches_f_batch_norm_with_batch_statistics(shape):
    x = _x(*shape)
    bn = _randomize_affine(create_norm("batchnorm", 8)).train()
    ref = F.batch_norm(x, None, None, bn.weight, bn.bias, training=True, eps=EPS)
    assert torch.allclose(bn(x), ref, atol=1e-5)


def test_batchnorm_refuses_3d_input_with_a_message():
    with pytest.raises(ValueError, match="BatchNorm expects"):
        create_norm("batchnorm", 8)(torch.zeros(2, 8, 3))


def test_instancenorm_on_vectors_outputs_beta():
    # One value per (sample, channel): the statistic is that value, so the output is beta alone.
    inn = _randomize_affine(create_norm("instancenorm", 8))
    out = inn(_x(4, 8))
    assert torch.equal(out, inn.bias.expand(4, 8))


@pytest.mark.parametrize("make", [lambda: nn.Conv2d(3, 6, 3, padding=1), lambda: nn.Linear(5, 6)])
def test_weightnorm_matches_torch_parametrization_with_unit_gain(make):
    layer = make()
    v = layer.weight.detach().clone()
    wn = apply_weight_norm(layer)
    g = wn.parametrizations.weight.original0
    assert torch.equal(g.detach(), torch.ones_like(g))  # no data-dependent init
    norms = v.flatten(1).norm(dim=1).view(-1, *([1] * (v.dim() - 1)))
    assert torch.allclose(wn.weight, v / norms, atol=1e-6)
    # torch's own weight_norm, with g set to 1 by hand, is the reference
    ref = torch.nn.utils.parametrizations.weight_norm(make())
    with torch.no_grad():
        ref.parametrizations.weight.original1.copy_(v)
        ref.parametrizations.weight.original0.fill_(1.0)
    assert torch.allclose(wn.weight, ref.weight, atol=1e-6)


@pytest.mark.parametrize("layer", [ScaledStdConv2d(16, 32, 3, padding=1), ScaledStdLinear(64, 32)])
def test_sws_weights_have_zero_mean_and_gain_over_sqrt_fan_in_scale(layer):
    nn.init.normal_(layer.weight, mean=0.3, std=2.0)
    w = layer.standardized_weight().flatten(1)  # (C_out, fan_in)
    fan_in = w.shape[1]
    assert torch.allclose(w.mean(dim=1), torch.zeros(32), atol=1e-6)
    std = w.std(dim=1, unbiased=False)
    assert torch.allclose(std, torch.full((32,), RELU_GAIN / math.sqrt(fan_in)), rtol=1e-4)
    assert RELU_GAIN == pytest.approx(1.7129, abs=1e-4)


def test_sws_keeps_unit_variance_through_relu():
    torch.manual_seed(0)
    conv = ScaledStdConv2d(64, 64, 3, padding=1, bias=False)
    x = torch.randn(32, 64, 16, 16)
    z = conv(torch.relu(x))  # centered weights cancel the ReLU mean; the gain restores its variance
    assert z.var().item() == pytest.approx(1.0, rel=0.15)


def test_frn_matches_spec_formula_on_a_hand_made_tensor():
    x = torch.tensor([[[[1.0, -2.0], [3.0, 0.0]], [[0.5, 0.5], [0.5, 0.5]]]])  # (1, 2, 2, 2)
    frn = FilterResponseNorm(2)
    with torch.no_grad():
        frn.weight.copy_(torch.tensor([2.0, 1.0]))
        frn.bias.copy_(torch.tensor([0.0, 1.0]))
    nu2 = torch.tensor([(1 + 4 + 9 + 0) / 4, 0.25])
    expected = torch.empty_like(x)
    expected[0, 0] = 2.0 * x[0, 0] / math.sqrt(nu2[0] + EPS)
    expected[0, 1] = 1.0 * x[0, 1] / math.sqrt(nu2[1] + EPS) + 1.0
    assert torch.allclose(frn(x), expected, atol=1e-6)


def test_frn_pairs_with_a_tlu_in_the_activation_slot():
    entry = NORMALIZERS["frn"]
    tlu = entry.act(3)
    with torch.no_grad():
        tlu.tau.copy_(torch.tensor([0.0, -1.0, 0.5]))
    y = torch.tensor([[-2.0, -2.0, 0.0]])
    assert torch.equal(tlu(y), torch.tensor([[0.0, -1.0, 0.5]]))


def test_evonorm_b0_matches_spec_formula_on_a_hand_made_tensor():
    x = torch.tensor([[[[1.0, 3.0]], [[2.0, 2.0]]], [[[-1.0, 1.0]], [[0.0, 4.0]]]])  # (2, 2, 1, 2)
    layer = EvoNormB0(2)
    with torch.no_grad():
        layer.v.copy_(torch.tensor([1.0, 0.5]))
        layer.weight.copy_(torch.tensor([1.0, 2.0]))
        layer.bias.copy_(torch.tensor([0.0, -1.0]))
    expected = torch.empty_like(x)
    for c in range(2):
        s2_batch = x[:, c].var(unbiased=False)
        for n in range(2):
            s2_inst = x[n, c].var(unbiased=True)  # unbiased, as the paper's code
            denom = torch.maximum(
                torch.sqrt(s2_batch + EPS), layer.v[c] * x[n, c] + torch.sqrt(s2_inst + EPS)
            )
            expected[n, c] = x[n, c] / denom * layer.weight[c] + layer.bias[c]
    assert torch.allclose(layer(x), expected, atol=1e-6)


def test_evonorm_s0_matches_spec_formula_on_a_hand_made_tensor():
    x = _x(2, 4, 3, 3)
    layer = EvoNormS0(4, groups=2)
    with torch.no_grad():
        layer.v.copy_(torch.tensor([1.0, 0.5, -1.0, 2.0]))
    expected = torch.empty_like(x)
    for n in range(2):
        for g in range(2):
            chans = slice(2 * g, 2 * g + 2)
            s2 = x[n, chans].var(unbiased=False)
            for c in range(2 * g, 2 * g + 2):
                expected[n, c] = x[n, c] * torch.sigmoid(layer.v[c] * x[n, c]) / torch.sqrt(s2 + EPS)
    assert torch.allclose(layer(x), expected, atol=1e-5)


def test_corrected_relu_has_zero_mean_and_unit_variance_on_gaussians():
    z = torch.randn(2_000_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = CorrectedReLU()(z)
    assert y.mean().item() == pytest.approx(0.0, abs=3e-3)
    assert y.var().item() == pytest.approx(1.0, abs=3e-3)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("batchnorm", {"weight": 1.0, "bias": 0.0}),
        ("layernorm", {"weight": 1.0, "bias": 0.0}),
        ("instancenorm", {"weight": 1.0, "bias": 0.0}),
        ("groupnorm", {"weight": 1.0, "bias": 0.0}),
        ("frn", {"weight": 1.0, "bias": 0.0}),
    ],
)
def test_norm_slot_affine_parameters_start_as_the_spec_says(name, expected):
    module = create_norm(name, 8, groups=2)
    params = dict(module.named_parameters())
    assert set(params) == set(expected)
    for key, value in expected.items():
        assert torch.equal(params[key].detach(), torch.full((8,), value))


@pytest.mark.parametrize(
    "name, expected",
    [
        ("frn", {"tau": 0.0}),
        ("evonorm_b0", {"v": 1.0, "weight": 1.0, "bias": 0.0}),
        ("evonorm_s0", {"v": 1.0, "weight": 1.0, "bias": 0.0}),
    ],
)
def test_activation_slot_parameters_start_as_the_spec_says(name, expected):
    module = NORMALIZERS[name].act(8, groups=2)
    params = dict(module.named_parameters())
    assert set(params) == set(expected)
    for key, value in expected.items():
        assert torch.equal(params[key].detach(), torch.full((8,), value))


def test_sws_gain_starts_at_one_and_conv_keeps_a_bias():
    conv = ScaledStdConv2d(4, 8, 3)
    assert torch.equal(conv.gain.detach(), torch.ones(8))
    assert conv.bias is not None


# Images (N, C, H, W) for the normalizers the conv families take; vectors (N, C) for every one.
SLOT_SHAPES = [(name, shape) for name in NORM_NAMES for shape in [(4, 8, 3, 3), (4, 8)]
               if len(shape) == 2 or not catalog.NORM_INFO[name].per_feature]


@pytest.mark.parametrize(("name", "shape"), SLOT_SHAPES)
def test_every_normalizer_slot_is_finite_on_the_activation_shapes_it_takes(name, shape):
    entry = NORMALIZERS[name]
    x = _x(*shape).requires_grad_()
    out = entry.act(8, groups=2)(entry.norm(8, groups=2)(x))
    out.sum().backward()
    assert out.shape == x.shape
    assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("name", NORM_NAMES)
def test_every_normalizer_states_its_formula_and_paper(name):
    entry = NORMALIZERS[name]
    modules = [entry.norm(8, groups=2), entry.act(8, groups=2)]
    documented = [m for m in modules if not isinstance(m, (nn.Identity, nn.ReLU))]
    if entry.weights == "sws":
        documented.append(ScaledStdConv2d(2, 2, 1))
    for module in documented:
        doc = type(module).__doc__ or ""
        assert "=" in doc and any(ch.isdigit() for ch in doc), f"{type(module).__name__} lacks formula/paper"
    if entry.weights == "weightnorm":
        assert "Salimans" in (apply_weight_norm.__doc__ or "")


# --- The per-feature normalizers (per sample over the last dimension): RMSNorm, DyT, Derf --------------


@pytest.mark.parametrize("shape", [(6, 8), (3, 5, 8)])
def test_rmsnorm_is_torch_rmsnorm_and_its_formula(shape):
    x = _x(*shape)
    ours = _randomize_affine(create_norm("rmsnorm", 8))
    torch_rms = nn.RMSNorm(8, eps=1e-5)
    with torch.no_grad():
        torch_rms.weight.copy_(ours.weight)
    formula = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * ours.weight
    torch.testing.assert_close(ours(x), torch_rms(x), atol=1e-6, rtol=0)
    torch.testing.assert_close(ours(x), formula, atol=1e-6, rtol=1e-6)
    assert ours.eps == EPS == 1e-5


@pytest.mark.parametrize("shape", [(6, 8), (3, 5, 8)])
def test_dyt_and_derf_match_their_formulas_with_any_parameters(shape):
    x = _x(*shape)
    dyt, derf = _randomize_affine(create_norm("dyt", 8)), _randomize_affine(create_norm("derf", 8))
    torch.testing.assert_close(dyt(x), dyt.weight * torch.tanh(dyt.alpha * x) + dyt.bias, atol=1e-6, rtol=0)
    expected = derf.weight * torch.erf(derf.alpha * x + derf.shift) + derf.bias
    torch.testing.assert_close(derf(x), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize(("cls", "scalars"), [(DynamicTanh, {"alpha": 0.5}),
                                              (DynamicErf, {"alpha": 0.5, "shift": 0.0})])
def test_dyt_and_derf_start_as_their_official_code(cls, scalars):
    module = cls(8)
    for name, value in scalars.items():
        assert getattr(module, name).shape == () and float(getattr(module, name)) == value
    assert torch.equal(module.weight.detach(), torch.ones(8))
    assert torch.equal(module.bias.detach(), torch.zeros(8))


def test_dyt_at_init_is_the_fixed_gain_alpha_to_first_order():
    # tanh(a x) = a x - (a x)^3 / 3 + ...: the relative error is (a x)^2 / 3, about 1e-4 at |x| <= 0.03
    x = torch.linspace(-0.03, 0.03, 101)
    out = DynamicTanh(101)(x)
    torch.testing.assert_close(out, 0.5 * x, atol=0, rtol=(0.5 * 0.03) ** 2 / 3 * 1.01)
    # and it normalizes nothing: a 100x larger input in the linear range is a 100x larger output
    torch.testing.assert_close(DynamicTanh(101)(x * 1e-2), 0.5 * x * 1e-2, atol=1e-9, rtol=1e-6)


def test_dyt_and_derf_bound_their_output():
    x = _x(4, 8) * 1e4
    assert DynamicTanh(8)(x).abs().max() <= 1.0
    assert DynamicErf(8)(x).abs().max() <= 1.0


def test_token_norms_act_per_token_over_the_last_dimension():
    x = _x(2, 5, 8)
    ln = token_norm("layernorm", 8)
    torch.testing.assert_close(ln(x), F.layer_norm(x, (8,), eps=1e-5), atol=1e-6, rtol=0)
    for name in ("rmsnorm", "dyt", "derf", "none"):
        out = token_norm(name, 8)(x)
        # token 3 of sequence 1 alone gives the same output: nothing mixes tokens or sequences
        torch.testing.assert_close(token_norm(name, 8)(x[1:2, 3:4]), out[1:2, 3:4])
    with pytest.raises(ValueError, match=r"'batchnorm' does not act per token; allowed: .*'rmsnorm'"):
        token_norm("batchnorm", 8)


@pytest.mark.parametrize("arch", ["cnn", "resnet"])
@pytest.mark.parametrize("norm", ["rmsnorm", "dyt", "derf"])
def test_conv_families_refuse_the_per_feature_normalizers_naming_the_allowed_ones(arch, norm):
    from normlab import ModelConfig

    assert norm not in catalog.allowed_norms(arch) and norm in catalog.allowed_norms("mlp")
    with pytest.raises(ValueError, match=rf"{norm!r} does not apply to arch {arch!r}; allowed: 'none', "
                                         r"'batchnorm'.*'sws'$"):
        ModelConfig(arch=arch, norm=norm)
