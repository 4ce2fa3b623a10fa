"""Each architecture family's layers as a probe meets them, walked without building anything.

A walk calls a visitor's methods in forward order, one call per layer or probe point:

    saves(count, features)      tensors of ``features`` values per sample kept for the backward pass
    linear(f_in, f_out, positions=1)   a conv or linear layer (its output is a gradient probe point)
    unit(features, probed=True) a norm -> activation unit (its output is an activation probe point)
    gram(features)              a probe point whose Gram statistics are taken (a block's output)
    moments(features)           a probe point reduced to channel moments (a residual branch)
    elementwise(ops, features)  element-wise operations (an addition, a scale, pooling)
    shortcut_norm(features)     the normalizer of a projection shortcut (no activation)
    attention(heads, tokens, head_dim)   scaled dot-product attention: scores, softmax, weighted values
    token_point(tokens, features)        a probe point on a token sequence (channel statistics over
                                (N, T), the Gram of the N sequence means, a T x T Gram per sequence)

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
    placement: str
    heads: int
    seq_len: int
    qk_norm: bool
    ffn: bool

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
    def attention(self, heads: int, tokens: int, head_dim: int) -> None: ...
    def token_point(self, tokens: int, features: int) -> None: ...


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


FFN_MULT = 4  # a transformer's FFN is D -> 4D -> D


def walk_transformer(t: Visitor, m: ModelConfig, image_size: int) -> None:
    """Embedding, ``depth`` blocks (attention, FFN, their norms as the placement puts them), the final
    norm, the head over the vocabulary; every linear map acts at each of the T positions."""
    T, D, H = m.seq_len, m.width, m.heads
    t.saves(1, T * D)  # the embedded tokens
    t.elementwise(2, T * D)  # the embedding look-up and the positional addition
    norms_per_sublayer = 2 if m.placement == "peri" else 1
    for _ in range(m.depth):
        for _ in range(norms_per_sublayer):
            t.unit(T * D, probed=False)  # attention's norm(s)
        t.saves(1, T * D)  # the input of W_Q, W_K, W_V
        for _ in range(3):
            t.linear(D, D, positions=T)  # q, k, v
        if m.qk_norm:
            t.unit(T * D, probed=False)
            t.unit(T * D, probed=False)
        t.attention(H, T, D // H)
        t.saves(1, T * D)  # the input of W_O
        t.linear(D, D, positions=T)  # o
        t.token_point(T, D)  # the attention sub-layer's output
        t.elementwise(2, T * D)  # scale, skip addition
        if m.ffn:
            for _ in range(norms_per_sublayer):
                t.unit(T * D, probed=False)
            t.saves(1, T * D)
            t.linear(D, FFN_MULT * D, positions=T)  # w1
            t.saves(2, FFN_MULT * T * D)  # GELU's input, and W_2's
            t.elementwise(1, FFN_MULT * T * D)
            t.linear(FFN_MULT * D, D, positions=T)  # w2
            t.token_point(T, D)
            t.elementwise(2, T * D)
        t.token_point(T, D)  # the block's output on the residual stream
    if m.placement != "post":
        t.unit(T * D, probed=False)  # the final norm
        t.token_point(T, D)
    t.linear(D, m.num_classes, positions=T)  # the head over the vocabulary


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

    def attention(self, heads: int, tokens: int, head_dim: int) -> None:
        pass

    def token_point(self, tokens: int, features: int) -> None:
        self.features = features  # the rank of N sequence vectors of D features
