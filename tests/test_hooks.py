"""record(): what the hooks see, in which order, and that every handle goes away."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from normlab.core.config import ModelConfig
from normlab.science.hooks import record
from normlab.science.models import build_model


def no_hooks_left(model: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def small_resnet() -> nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig(arch="resnet", depth=2, width=4, stages=2), (3, 8, 8))


class Boom(torch.autograd.Function):
    """Identity forward; raises in backward."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError("backward failed")


def test_taps_follow_the_probe_points_in_forward_order():
    model = small_resnet()
    with record(model) as taps:
        F.cross_entropy(model(torch.randn(4, 3, 8, 8)), torch.tensor([0, 1, 2, 3])).backward()
    expected = {(name, kind) for name, kind, _ in model.probe_points()}
    assert {(t.name, t.kind) for t in taps.taps} == expected
    for kind in ("act", "block", "res", "conv"):
        assert [t.index for t in taps.of_kind(kind)] == list(range(len(taps.of_kind(kind))))
    # the residual branch is tapped before the block's output, a block after its own convs
    names = [t.name for t in taps.taps]
    assert names.index("features.1.scale") < names.index("features.1.act2") < names.index("features.1")
    assert names.index("features.1.conv2") < names.index("features.1")


def test_activation_taps_keep_exactly_the_module_output():
    layer = nn.Sequential(nn.Linear(5, 6), nn.ReLU())
    x = torch.randn(3, 5)
    with record(layer, [("1", "act", layer[1])]) as taps:
        out = layer(x)
    assert torch.equal(taps.taps[0].value, out)
    assert not taps.taps[0].value.requires_grad


def test_grad_taps_hold_the_frobenius_norm_of_dl_dz():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 3))
    x = torch.randn(4, 5)
    z1 = net[0](x)
    z2 = net[2](net[1](z1))
    g1, g2 = torch.autograd.grad(z2.square().sum(), [z1, z2])
    with record(net, [("0", "conv", net[0]), ("2", "conv", net[2])], final=None) as taps:
        net(x).square().sum().backward()
    assert float(taps.taps[0].grad_norm) == pytest.approx(float(g1.double().norm()), rel=1e-6)
    assert float(taps.taps[1].grad_norm) == pytest.approx(float(g2.double().norm()), rel=1e-6)
    assert taps.taps[0].grad_norm.dtype == torch.float64


def test_handles_are_removed_after_a_normal_pass():
    model = small_resnet()
    with record(model):
        model(torch.randn(2, 3, 8, 8)).sum().backward()
    assert no_hooks_left(model)


def test_handles_are_removed_when_the_forward_pass_raises():
    model = small_resnet()
    with pytest.raises(RuntimeError):
        with record(model):
            model(torch.randn(2, 5, 8, 8))  # wrong channel count
    assert no_hooks_left(model)


def test_handles_are_removed_when_the_backward_pass_raises():
    model = small_resnet()
    with pytest.raises(RuntimeError, match="backward failed"):
        with record(model):
            Boom.apply(model(torch.randn(2, 3, 8, 8))).sum().backward()
    assert no_hooks_left(model)


def test_gradient_hooks_do_not_fire_after_the_block():
    model = small_resnet()
    with record(model) as taps:
        loss = model(torch.randn(2, 3, 8, 8)).sum()
    loss.backward()  # the graph outlives the block, its tensor hooks must not
    assert all(t.grad_norm is None for t in taps.of_kind("conv"))


def test_a_module_called_twice_gets_a_numbered_second_tap():
    relu = nn.ReLU()
    lin = nn.Linear(4, 4)
    model = nn.Sequential(lin, relu, nn.Linear(4, 4), relu)
    with record(model, [("relu", "act", relu)], final=None) as taps:
        model(torch.randn(3, 4))
    assert [(t.name, t.index) for t in taps.taps] == [("relu", 0), ("relu#1", 1)]


def test_the_final_tap_is_the_point_that_made_the_final_output():
    torch.manual_seed(0)
    mlp = build_model(ModelConfig(arch="mlp", depth=3, width=8), (1, 2, 2))
    with record(mlp) as taps:
        mlp(torch.randn(4, 1, 2, 2))
    assert taps.final.name == "features.3.act"  # the Layer is no probe point; its activation is
    resnet = small_resnet()
    with record(resnet) as taps:
        resnet(torch.randn(2, 3, 8, 8))
    assert taps.final.name == "features.4" and taps.final.kind == "block"


def test_a_final_module_without_a_probe_point_is_tapped_itself():
    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh())
    with record(model, [("0", "conv", model[0])], final=model[1]) as taps:
        model(torch.randn(3, 4))
    assert taps.final.name == "1" and taps.final.kind == "act"
