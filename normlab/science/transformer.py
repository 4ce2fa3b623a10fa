"""The ``transformer`` family of spec section 5: a byte-level transformer whose norm placement, normalizer
and ablations are parameters; with its probe points (a public contract, like ``features.3.conv``).

Tensors are (N, T, D): N sequences, T tokens, width D. Names in a probe frame:
``blocks.{l}`` (a block's output on the residual stream, kind ``block``, l from 0), ``blocks.{l}.attn``
and ``blocks.{l}.ffn`` (the sub-layers' outputs F(.), kind ``sublayer``; the attention probabilities'
entropy is read at ``blocks.{l}.attn`` too, kind ``attn``), the linear maps ``blocks.{l}.attn.{q,k,v,o}``
and ``blocks.{l}.ffn.{w1,w2}`` and the ``head`` (kind ``conv``), the norms ``blocks.{l}.norm1``,
``blocks.{l}.norm2`` (peri: also ``norm1_out``, ``norm2_out``), ``blocks.{l}.attn.q_norm``/``k_norm`` and
``final_norm`` (kind ``norm``: only DyT and Derf, whose argument's saturation is read there).
Knows nothing of metrics, frames or the UI.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from normlab.core.config import ModelConfig
from normlab.core.plans import FFN_MULT
from normlab.science.models import ATTN, BLOCK, CONV, NORM, SUBLAYER
from normlab.science.norms import Normalizer, _PointWise, token_norm


def xavier_linear(f_in: int, f_out: int) -> nn.Linear:
    """A linear map with Xavier-normal weights and zero biases (Xiong et al. 2020 assume it)."""
    linear = nn.Linear(f_in, f_out)
    nn.init.xavier_normal_(linear.weight)
    nn.init.zeros_(linear.bias)
    return linear


class AttentionProbs(nn.Identity):
    """A hook point: the attention probabilities (N, H, T, T), each row summing to 1."""


class Attention(nn.Module):
    """Multi-head scaled dot-product self-attention: softmax(q k^T / sqrt(D/H) [+ causal mask]) v, then W_O.

    With ``qk_norm`` the normalizer acts on each head's queries and keys (over D/H) before the product.
    """

    def __init__(self, d: int, heads: int, seq_len: int, causal: bool, qk_norm: str | None) -> None:
        super().__init__()
        self.heads, self.causal = heads, causal
        self.q, self.k, self.v, self.o = (xavier_linear(d, d) for _ in range(4))
        head_dim = d // heads
        self.q_norm = token_norm(qk_norm, head_dim) if qk_norm else nn.Identity()
        self.k_norm = token_norm(qk_norm, head_dim) if qk_norm else nn.Identity()
        self.probs = AttentionProbs()
        # True above the diagonal: token i does not see the tokens after it
        self.register_buffer("mask", torch.ones(seq_len, seq_len, dtype=torch.bool).triu(1), persistent=False)

    def forward(self, x):
        n, t, d = x.shape
        def split(z):  # (N, T, D) -> (N, H, T, D/H)
            return z.view(n, t, self.heads, d // self.heads).transpose(1, 2)

        q, k, v = self.q_norm(split(self.q(x))), self.k_norm(split(self.k(x))), split(self.v(x))
        scores = q @ k.transpose(-2, -1) / math.sqrt(d // self.heads)  # (N, H, T, T)
        if self.causal:
            scores = scores.masked_fill(self.mask[:t, :t], float("-inf"))
        probs = self.probs(torch.softmax(scores, dim=-1))
        return self.o((probs @ v).transpose(1, 2).reshape(n, t, d))  # (N, T, D)


class FeedForward(nn.Module):
    """W_2 GELU(W_1 x): D -> 4D -> D at every token."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.w1 = xavier_linear(d, FFN_MULT * d)
        self.act = nn.GELU()
        self.w2 = xavier_linear(FFN_MULT * d, d)

    def forward(self, x):
        return self.w2(self.act(self.w1(x)))


class Block(nn.Module):
    """Attention then FFN, each a sub-layer F placed as ``placement`` says (spec section 5):

    post  x <- Norm(x + a F(x))            pre  x <- x + a F(Norm(x))
    peri  x <- x + a Norm(F(Norm(x)))      lns  x <- x + a F(Norm(x) / sqrt(l)), l = 1..L
    with a = residual_scale; without ``skip`` the ``x +`` is dropped (post: Norm(a F(x))).
    """

    def __init__(self, config: ModelConfig, placement: str, position: int) -> None:
        super().__init__()
        d, norm = config.width, config.norm
        self.placement, self.skip = placement, config.skip
        self.scale = config.residual_scale
        self.shrink = 1 / math.sqrt(position) if placement == "lns" else 1.0  # position l counts from 1
        qk_norm = norm if config.qk_norm else None
        self.attn = Attention(d, config.heads, config.seq_len, config.causal, qk_norm)
        self.norm1 = token_norm(norm, d)
        self.norm1_out = token_norm(norm, d) if placement == "peri" else None
        self.ffn = FeedForward(d) if config.ffn else None
        self.norm2 = token_norm(norm, d) if config.ffn else None
        self.norm2_out = token_norm(norm, d) if placement == "peri" and config.ffn else None

    def sublayer(self, x, f: nn.Module, norm: nn.Module, out_norm: nn.Module | None):
        if self.placement == "post":
            branch = self.scale * f(x)
            return norm(x + branch if self.skip else branch)
        branch = f(norm(x) * self.shrink if self.shrink != 1.0 else norm(x))
        if out_norm is not None:
            branch = out_norm(branch)
        branch = self.scale * branch
        return x + branch if self.skip else branch

    def forward(self, x):
        x = self.sublayer(x, self.attn, self.norm1, self.norm1_out)
        if self.ffn is not None:
            x = self.sublayer(x, self.ffn, self.norm2, self.norm2_out)
        return x


def block_placements(config: ModelConfig) -> list[str]:
    """The placement of each block: Mix-LN is post for the first ceil(L/4) blocks, pre after."""
    if config.placement != "mix":
        return [config.placement] * config.depth
    first = math.ceil(config.depth / 4)
    return ["post" if i < first else "pre" for i in range(config.depth)]


class TransformerNet(nn.Module):
    """Token embedding N(0, 1) + learned positions (init 0), the blocks, the final norm (every placement
    but post), a linear head over the vocabulary. Input (N, T) bytes, output logits (N, T, vocab)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        d = config.width
        self.config = config
        self.embed = nn.Embedding(config.num_classes, d)  # N(0, 1), torch's default
        self.pos = nn.Parameter(torch.zeros(config.seq_len, d))
        self.blocks = nn.ModuleList(Block(config, p, i + 1) for i, p in enumerate(block_placements(config)))
        self.final_norm = token_norm(config.norm, d) if config.placement != "post" else None
        self.head = xavier_linear(d, config.num_classes)

    def forward(self, tokens):
        x = self.embed(tokens) + self.pos[: tokens.shape[1]]  # (N, T, D)
        for block in self.blocks:
            x = block(x)
        if self.final_norm is not None:
            x = self.final_norm(x)
        return self.head(x)  # (N, T, vocab)

    @property
    def final(self) -> nn.Module:
        """The module whose output is the final representation, before the head."""
        return self.final_norm if self.final_norm is not None else self.blocks[-1]

    def final_name(self) -> str:
        return "final_norm" if self.final_norm is not None else f"blocks.{len(self.blocks) - 1}"

    def weight_points(self) -> Iterator[tuple[str, nn.Parameter]]:
        """(name, weight) of W_Q, W_K, W_V, W_O, W_1, W_2 of every block, where weight_grad_norm is read."""
        for i, block in enumerate(self.blocks):
            for name in ("q", "k", "v", "o"):
                yield f"blocks.{i}.attn.{name}", getattr(block.attn, name).weight
            if block.ffn is not None:
                yield f"blocks.{i}.ffn.w1", block.ffn.w1.weight
                yield f"blocks.{i}.ffn.w2", block.ffn.w2.weight

    def probe_points(self) -> Iterator[tuple[str, str, nn.Module]]:
        """(name, kind, module) of every probe point; the frame's names (module doc)."""
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear):
                yield name, CONV, module
            elif isinstance(module, AttentionProbs):
                yield name.removesuffix(".probs"), ATTN, module
            elif isinstance(module, (Attention, FeedForward)):
                yield name, SUBLAYER, module
            elif isinstance(module, Block):
                yield name, BLOCK, module
            elif isinstance(module, _PointWise):
                yield name, NORM, module.arg


def transformer(config: ModelConfig, normalizer: Normalizer, input_shape: tuple[int, ...]) -> TransformerNet:
    """The family's builder (catalog row ``transformer``); ``normalizer`` and ``input_shape`` are not
    needed: the norms are per token (normlab.science.norms.token_norm) and the input is (N, seq_len)."""
    return TransformerNet(config)


def next_token_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy, mean over every token of every sequence: logits (N, T, V), targets (N, T)."""
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1))
