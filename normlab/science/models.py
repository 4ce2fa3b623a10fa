"""build_model(config): the mlp, non-residual cnn and CIFAR-style resnet of spec section 2.

Each family's builder is named in its catalog row (normlab.core.catalog.ARCHITECTURES); these three
live here. The normalizer is always a parameter (a registry entry); a residual and a plain net differ
only in the block. Every model lists its probe points in forward order, so probes never guess at
module names. Checks the deadline while it builds; knows nothing of probes, metrics, budgets or the UI.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Iterator

import torch
from torch import nn

from normlab.core import catalog
from normlab.core.config import (
    MAX_IMAGE_SIZE,
    MAX_WIDTH,
    ModelConfig,
    check_instance,
    check_int,
    check_items,
)
from normlab.core.deadline import check_time
from normlab.science.norms import (
    Normalizer,
    ScaledStdConv2d,
    ScaledStdLinear,
    apply_weight_norm,
    get_normalizer,
)

# Probe-point kinds: what a tapped module's output is.
ACT = "act"  # after a normalizer and its activation
BLOCK = "block"  # a residual block's output
RES = "res"  # a residual branch, scaled by alpha, just before the addition
CONV = "conv"  # a conv/linear output z, where grad_norm reads dL/dz
# The transformer's own (normlab.science.transformer): a sub-layer's output F(.) (attention, FFN), the
# attention probabilities, and the argument of a point-wise normalizer (DyT, Derf: its saturation).
SUBLAYER = "sublayer"
ATTN = "attn"
NORM = "norm"
POINT_KINDS = (ACT, BLOCK, RES, CONV, SUBLAYER, ATTN, NORM)  # what a probe point of a model is


def _init_weights(layer: nn.Module) -> None:
    """Kaiming-normal fan-in init for the weights, zeros for the biases (spec section 2)."""
    check_time()  # building a very deep net takes seconds: a computation past its hard limit stops here
    nn.init.kaiming_normal_(layer.weight, mode="fan_in", nonlinearity="relu")
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


def make_conv(normalizer: Normalizer, c_in: int, c_out: int, stride: int = 1) -> nn.Module:
    """A 3x3 conv whose weights are plain, weight-normalized or scaled-standardized."""
    cls = ScaledStdConv2d if normalizer.weights == "sws" else nn.Conv2d
    conv = cls(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=True)
    _init_weights(conv)
    return apply_weight_norm(conv) if normalizer.weights == "weightnorm" else conv


def make_head(config: ModelConfig, f_in: int) -> nn.Linear:
    """The classifier: PyTorch's default nn.Linear init for the paper presets (as the paper's code leaves
    it: uniform, std 1/sqrt(3 fan_in)), else Kaiming-normal like the hidden layers (spec section 2)."""
    head = nn.Linear(f_in, config.num_classes, bias=True)
    if not config.paper_head:
        _init_weights(head)
    return head


def make_linear(normalizer: Normalizer, f_in: int, f_out: int) -> nn.Module:
    """A linear layer whose weights are plain, weight-normalized or scaled-standardized."""
    cls = ScaledStdLinear if normalizer.weights == "sws" else nn.Linear
    linear = cls(f_in, f_out, bias=True)
    _init_weights(linear)
    return apply_weight_norm(linear) if normalizer.weights == "weightnorm" else linear


class Layer(nn.Module):
    """One conv/linear -> norm -> activation unit: z = conv(x); out = act(norm(z))."""

    def __init__(self, conv: nn.Module, normalizer: Normalizer, channels: int, groups) -> None:
        super().__init__()
        self.conv = conv
        self.norm = normalizer.norm(channels, groups=groups)
        self.act = normalizer.act(channels, groups=groups)

    def forward(self, x):
        return self.act(self.norm(self.conv(x)))


class Scale(nn.Module):
    """The residual branch scale alpha: a learnable scalar at 0 with SkipInit, else the constant 1."""

    def __init__(self, skipinit: bool) -> None:
        super().__init__()
        if skipinit:
            self.alpha = nn.Parameter(torch.zeros(()))
        else:
            self.register_buffer("alpha", torch.ones(()))

    def forward(self, x):
        return self.alpha * x


class Shortcut(nn.Module):
    """Identity, or a projection conv3x3 (stride s) + norm when the shape changes (paper's code)."""

    def __init__(self, normalizer: Normalizer, c_in: int, c_out: int, stride: int, groups_at) -> None:
        super().__init__()
        self.project = stride != 1 or c_in != c_out
        if self.project:
            self.conv = make_conv(normalizer, c_in, c_out, stride)
            self.norm = normalizer.norm(c_out, groups=groups_at(c_out))

    def forward(self, x):
        return self.norm(self.conv(x)) if self.project else x


class BasicBlock(nn.Module):
    """Post-activation block (He et al. 2016): out = act(alpha * branch(x) + shortcut(x)).

    branch = conv-norm-act-conv-norm. With ``act_in_branch`` (the Weight Normalization variant) the
    activation moves to the end of the branch and nothing follows the addition.
    """

    def __init__(self, normalizer, c_in, c_out, stride, groups_at, skipinit, act_in_branch=False):
        super().__init__()
        groups = groups_at(c_out)  # every norm of this block acts on c_out channels
        self.conv1 = make_conv(normalizer, c_in, c_out, stride)
        self.norm1 = normalizer.norm(c_out, groups=groups)
        self.act1 = normalizer.act(c_out, groups=groups)
        self.conv2 = make_conv(normalizer, c_out, c_out)
        self.norm2 = normalizer.norm(c_out, groups=groups)
        self.act_in_branch = act_in_branch
        self.act2 = normalizer.act(c_out, groups=groups)
        self.scale = Scale(skipinit)
        self.shortcut = Shortcut(normalizer, c_in, c_out, stride, groups_at)

    def branch(self, x):
        out = self.norm2(self.conv2(self.act1(self.norm1(self.conv1(x)))))
        return self.act2(out) if self.act_in_branch else out

    def forward(self, x):
        out = self.scale(self.branch(x)) + self.shortcut(x)
        return out if self.act_in_branch else self.act2(out)


class PreActBlock(nn.Module):
    """Pre-activation block (He et al. 2016b): out = alpha * branch(x) + shortcut(x).

    branch = norm-act-conv-norm-act-conv; nothing follows the addition.
    """

    def __init__(self, normalizer, c_in, c_out, stride, groups_at, skipinit, act_in_branch=False):
        super().__init__()
        # the first norm sees the block's input (c_in channels), the second the widened branch
        self.norm1 = normalizer.norm(c_in, groups=groups_at(c_in))
        self.act1 = normalizer.act(c_in, groups=groups_at(c_in))
        self.conv1 = make_conv(normalizer, c_in, c_out, stride)
        self.norm2 = normalizer.norm(c_out, groups=groups_at(c_out))
        self.act2 = normalizer.act(c_out, groups=groups_at(c_out))
        self.conv2 = make_conv(normalizer, c_out, c_out)
        self.scale = Scale(skipinit)
        self.shortcut = Shortcut(normalizer, c_in, c_out, stride, groups_at)

    def branch(self, x):
        return self.conv2(self.act2(self.norm2(self.conv1(self.act1(self.norm1(x))))))

    def forward(self, x):
        return self.scale(self.branch(x)) + self.shortcut(x)


class Net(nn.Module):
    """features (a Sequential) -> [global average pool] -> linear head.

    ``final`` names the module whose output is the final representation, before pooling.
    """

    def __init__(self, config: ModelConfig, features: nn.Sequential, head: nn.Module, pool: bool):
        super().__init__()
        self.config = config
        self.features = features
        self.pool = nn.AdaptiveAvgPool2d(1) if pool else nn.Identity()
        self.flatten = nn.Flatten()
        self.head = head

    def forward(self, x):
        return self.head(self.flatten(self.pool(self.features(x))))

    @property
    def final(self) -> nn.Module:
        return self.features[-1]

    def probe_points(self) -> Iterator[tuple[str, str, nn.Module]]:
        """(name, kind, module) of every probe point, in forward order.

        Hooks on these modules see: ``act`` outputs after norm+activation, ``block`` outputs,
        ``res`` the scaled branch before the addition, ``conv`` every conv/linear output.
        """
        for name, module in self.named_modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                yield name, CONV, module
            elif isinstance(module, (BasicBlock, PreActBlock)):
                yield name, BLOCK, module
            elif isinstance(module, Scale):
                yield name, RES, module
            elif _is_act_slot(name):
                yield name, ACT, module

    def final_name(self) -> str:
        return next(n for n, m in self.named_modules() if m is self.final)


def _is_act_slot(name: str) -> bool:
    leaf = name.rsplit(".", 1)[-1]
    return leaf.startswith("act") and not name.endswith(".act_in_branch")


def mlp(config: ModelConfig, normalizer: Normalizer, input_shape: tuple[int, ...]) -> Net:
    """Flatten, ``depth`` x (linear -> norm -> activation), linear head."""
    layers, f_in = [], math.prod(input_shape)
    for _ in range(config.depth):
        layers.append(Layer(make_linear(normalizer, f_in, config.width), normalizer, config.width,
                            config.groups_at(config.width)))
        f_in = config.width
    head = make_head(config, f_in)
    return Net(config, nn.Sequential(nn.Flatten(), *layers), head, pool=False)


def cnn(config: ModelConfig, normalizer: Normalizer, input_shape: tuple[int, ...]) -> Net:
    """The plan's convs, each -> norm -> activation, global pooling, linear head."""
    layers, c_in = [], config.in_channels
    for width, stride in config.plan:
        conv = make_conv(normalizer, c_in, width, stride)
        layers.append(Layer(conv, normalizer, width, config.groups_at(width)))
        c_in = width
    head = make_head(config, c_in)
    return Net(config, nn.Sequential(*layers), head, pool=True)


def resnet(config: ModelConfig, normalizer: Normalizer, input_shape: tuple[int, ...]) -> Net:
    """A stem conv, the plan's residual blocks (post- or pre-activation), global pooling, linear head."""
    width = config.width
    stem_conv = make_conv(normalizer, config.in_channels, width)
    if config.preact:  # the blocks normalize their own input; the stem is a bare conv
        layers: list[nn.Module] = [stem_conv]
    else:
        layers = [Layer(stem_conv, normalizer, width, config.groups_at(width))]
    block = PreActBlock if config.preact else BasicBlock
    act_in_branch = config.norm == "weightnorm" and config.wn_act == "in_branch"
    c_in = width
    for c_out, stride in config.plan:
        layers.append(block(normalizer, c_in, c_out, stride, config.groups_at, config.skipinit,
                            act_in_branch))
        c_in = c_out
    if config.preact:  # the final norm + activation of a pre-activation net
        layers.append(_FinalNormAct(normalizer, c_in, config.groups_at(c_in)))
    head = make_head(config, c_in)
    return Net(config, nn.Sequential(*layers), head, pool=True)


class _FinalNormAct(nn.Module):
    """norm -> act closing a pre-activation ResNet, before pooling."""

    def __init__(self, normalizer: Normalizer, channels: int, groups) -> None:
        super().__init__()
        self.norm = normalizer.norm(channels, groups=groups)
        self.act = normalizer.act(channels, groups=groups)

    def forward(self, x):
        return self.act(self.norm(x))


def build_model(config: ModelConfig, input_shape: tuple[int, ...] | None = None) -> Net:
    """Build the network ``config`` describes, at initialization, with its family's builder.

    Args:
        config: the validated model configuration.
        input_shape: (C, H, W) of one input, C = ``config.in_channels`` for a conv net; the mlp flattens it.
            Default (in_channels, 32, 32).
    """
    check_instance("config", config, ModelConfig)
    input_shape = (config.in_channels, 32, 32) if input_shape is None else _check_shape(config, input_shape)
    builder = catalog.family(config.arch).builder
    if isinstance(builder, str):  # "package.module:function", a builder module of this layer
        module, _, name = builder.partition(":")
        builder = getattr(importlib.import_module(module), name)
    return builder(config, get_normalizer(config.norm), input_shape)


def _check_shape(config: ModelConfig, input_shape) -> tuple[int, int, int]:
    """``input_shape`` as (C, H, W), refused by name unless it is three sizes, with C = in_channels for a
    family that convolves its input (a flat one, the mlp, takes any shape: it flattens it)."""
    shape = check_items("input_shape", input_shape, 3)
    if len(shape) != 3:
        raise ValueError(f"input_shape must be (C, H, W), three sizes; got {input_shape!r}")
    for value, high in zip(shape, (MAX_WIDTH, MAX_IMAGE_SIZE, MAX_IMAGE_SIZE), strict=True):
        check_int("input_shape", value, high=high)
    if catalog.family(config.arch).spatial and shape[0] != config.in_channels:
        raise ValueError(f"input_shape's channels ({shape[0]}) must equal in_channels ({config.in_channels})")
    return tuple(int(v) for v in shape)
