"""Each architecture family's layers as a probe meets them, walked without building anything.

A walk calls a visitor's methods in forward order, one call per layer or probe point:

    saves(count, features)      tensors of ``features`` values per sample kept for the backward pass
    linear(f_in, f_out, positions=1)   a conv or linear layer (its output is a gradient probe point)
    unit(features, probed=True) a norm -> activation unit (its output is an activation probe point)
    gram(features)              a probe point whose Gram statistics are taken (a block's output)
    moments(features)           a probe point reduced to channel moments (a residual branch)
    elementwise(ops, features)  element-wise operations (an addition, a scale, pooling)
    shortcut_norm(features)     the normalizer of a projection shortcut (no activation)

The cost model (normlab.ops.cost) counts FLOPs, memory and operations with one visitor; the dashboard's
rank ceiling reads the last probe point's features with another (:class:`LastPoint`, through
``normlab.core.catalog.final_features``). Torch-free:
plain integer arithmetic over the config's plan.
"""

from __future__ import annotations

from typing import Protocol

KERNEL = 9  # 3x3 convolutions


class ModelConfig(Protocol):
    """The fields of normlab.core.config.ModelConfig a walk reads (named here: config imports the catalog,
    which imports these walks)."""

    norm: str
    depth: int
    width: int
    in_channels: int
    num_classes: int
    preact: bool
    wn_act: str

    @property
    def plan(self) -> tuple[tuple[int, int], ...]: ...


class Visitor(Protocol):
    def saves(self, count: float, features: int) -> None: ...
    def linear(self, f_in: int, f_out: int, positions: int = 1) -> None: ...
    def unit(self, features: int, probed: bool = True) -> None: ...
    def gram(self, features: int) -> None: ...
    def moments(self, features: int) -> None: ...
    def elementwise(self, ops: int, features: int) -> None: ...
    def shortcut_norm(self, features: int) -> None: ...


def conv_out(size: int, stride: int) -> int:
    """Spatial size after a 3x3 conv with padding 1."""
    return (size - 1) // stride + 1


def walk_mlp(t: Visitor, m: ModelConfig, image_size: int) -> None:
    """Flatten, ``depth`` x (linear -> norm -> activation), linear head."""
    f_in = m.in_channels * image_size * image_size
    t.saves(1, f_in)  # the input batch
    for _ in range(m.depth):
        t.linear(f_in, m.width)
        t.unit(m.width)
        f_in = m.width
    t.linear(f_in, m.num_classes)


def walk_cnn(t: Visitor, m: ModelConfig, image_size: int) -> None:
    """The plan's convs, each -> norm -> activation, global pooling, linear head."""
    size, c_in = image_size, m.in_channels
    t.saves(1, c_in * size * size)  # the input batch
    for width, stride in m.plan:
        size = conv_out(size, stride)
        t.linear(c_in * KERNEL, width, positions=size * size)
        t.unit(width * size * size)
        c_in = width
    t.elementwise(1, c_in * size * size)  # global pooling
    t.linear(c_in, m.num_classes)


def walk_resnet(t: Visitor, m: ModelConfig, image_size: int) -> None:
    """A stem conv, the plan's blocks (two convs, a scaled branch, a shortcut), pooling, linear head."""
    size, c_in = image_size, m.width
    t.saves(1, m.in_channels * size * size)  # the input batch
    t.linear(m.in_channels * KERNEL, c_in, positions=size * size)
    if not m.preact:  # a pre-activation net starts with a bare conv
        t.unit(c_in * size * size)
    # A post-activation block outputs its last activation's tensor: one Gram serves both taps.
    # Pre-activation blocks, and WN with the activation in the branch, output a fresh sum.
    sum_out = m.preact or (m.norm == "weightnorm" and m.wn_act == "in_branch")
    for c_out, stride in m.plan:
        out = conv_out(size, stride)
        feats = c_out * out * out
        t.linear(c_in * KERNEL, c_out, positions=out * out)  # conv1
        t.linear(c_out * KERNEL, c_out, positions=out * out)  # conv2
        t.unit(feats)  # norm1 -> act1
        t.unit(feats)  # norm2 -> act2
        t.moments(feats)  # the residual branch
        t.elementwise(2, feats)  # alpha * branch, + shortcut
        if sum_out:
            t.gram(feats)
        if stride != 1 or c_in != c_out:  # projection shortcut: conv + norm, no activation
            t.linear(c_in * KERNEL, c_out, positions=out * out)
            t.shortcut_norm(feats)
        c_in, size = c_out, out
    if m.preact:  # the final norm -> activation before pooling
        t.unit(c_in * size * size)
    t.elementwise(1, c_in * size * size)  # global pooling
    t.linear(c_in, m.num_classes)


class LastPoint:
    """A visitor that remembers the features of the last activation or block probe point."""

    features = 0

    def saves(self, count: float, features: int) -> None:
        pass

    def linear(self, f_in: int, f_out: int, positions: int = 1) -> None:
        pass

    def unit(self, features: int, probed: bool = True) -> None:
        if probed:
            self.features = features

    def gram(self, features: int) -> None:
        self.features = features

    def moments(self, features: int) -> None:
        pass

    def elementwise(self, ops: int, features: int) -> None:
        pass

    def shortcut_norm(self, features: int) -> None:
        pass
