"""The normalizers of spec section 1 behind one registry; torch's own layers wherever they exist.

Written by hand here only what torch lacks: Filter Response Norm with its TLU, EvoNorm-B0 and -S0,
the Scaled Weight Standardized conv/linear, the mean/variance-corrected ReLU, and the point-wise
Dynamic Tanh and Dynamic erf. RMSNorm, DyT and Derf act per sample over the last dimension (an MLP's
features, a token's D); :func:`token_norm` gives the per-token layers of the transformer. Knows nothing of
models, probes or the UI.

Every normalizer occupies up to three slots of a layer, conv -> norm -> activation:
``Normalizer.norm(C)`` fills the norm slot, ``Normalizer.act(C)`` the activation slot, and
``Normalizer.weights`` decides whether the conv/linear itself normalizes its weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from normlab.core import catalog
from normlab.core.config import MAX_CHANNELS, check_int, choices, common_divisors

EPS = 1e-5
# Gain that restores unit variance after a ReLU of a standard normal: 1 / sqrt(Var(relu(z))).
RELU_GAIN = math.sqrt(2 * math.pi / (math.pi - 1))  # ~1.713


# ---------------------------------------------------------------------------------------------
# Tensor-in, tensor-out maths of the hand-written normalizers


def _spatial_dims(x: torch.Tensor) -> tuple[int, ...]:
    return tuple(range(2, x.dim()))  # () for (N, C) activations


def _channel_view(p: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Broadcast a per-channel vector (C,) against x of shape (N, C, ...)."""
    return p.view(1, -1, *([1] * (x.dim() - 2)))


def frn(x, gamma, beta, eps: float = EPS):
    """Filter Response Norm: y = gamma * x / sqrt(mean_{H,W}(x^2) + eps) + beta (no centering)."""
    dims = _spatial_dims(x)
    nu2 = x.pow(2).mean(dim=dims, keepdim=True) if dims else x.pow(2)  # (N, C, 1, 1)
    return _channel_view(gamma, x) * x * torch.rsqrt(nu2 + eps) + _channel_view(beta, x)


def tlu(x, tau):
    """Thresholded Linear Unit: z = max(y, tau), the activation that comes with FRN."""
    return torch.maximum(x, _channel_view(tau, x))


def _instance_var(x: torch.Tensor) -> torch.Tensor:
    """Unbiased variance over (H, W), as the paper's code takes it (``torch.var``'s default).

    On the 2x2 final maps of the VGG presets that is 4/3 of the population variance (spec section 1).
    A single value per (sample, channel) has no spread: 0 there (``torch.var`` would give NaN).
    """
    dims = _spatial_dims(x)
    if not dims or math.prod(x.shape[2:]) < 2:
        return torch.zeros_like(x)  # (N, C) or (N, C, 1, 1)
    return x.var(dim=dims, unbiased=True, keepdim=True)  # (N, C, 1, 1)


def evonorm_b0(x, v, gamma, beta, eps: float = EPS):
    """EvoNorm-B0: y = x / max(sqrt(s2_batch + eps), v*x + sqrt(s2_inst + eps)) * gamma + beta.

    s2_batch is the population variance over (N, H, W), s2_inst the unbiased one over (H, W), as in the
    paper's code (measured against it: its VGG final cos_sim and stable rank move by 4-6% with the choice).
    """
    batch_dims = (0, *_spatial_dims(x))
    s2_batch = x.var(dim=batch_dims, unbiased=False, keepdim=True)  # (1, C, 1, 1)
    denom = torch.maximum(
        torch.sqrt(s2_batch + eps), _channel_view(v, x) * x + torch.sqrt(_instance_var(x) + eps)
    )
    return x / denom * _channel_view(gamma, x) + _channel_view(beta, x)


def group_var(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Variance over each sample's group of C/G channels and all spatial positions, shaped like x.

    The population variance, as ``F.group_norm`` takes it for GroupNorm, so EvoNorm-S0 and GroupNorm
    share one convention. The paper's code takes it unbiased; over n = C/G*H*W >= 64 values (the presets'
    final maps) the two differ by n/(n-1) <= 1.6% in variance, under 0.8% in the divisor.
    """
    n, c = x.shape[:2]
    g = x.reshape(n, groups, -1)  # (N, G, C/G * H * W)
    var = g.var(dim=-1, unbiased=False, keepdim=True)  # (N, G, 1)
    return var.expand_as(g).reshape(x.shape)


def evonorm_s0(x, v, gamma, beta, groups: int, eps: float = EPS):
    """EvoNorm-S0: y = x * sigmoid(v*x) / sqrt(s2_group + eps) * gamma + beta."""
    num = x * torch.sigmoid(_channel_view(v, x) * x)
    return num * torch.rsqrt(group_var(x, groups) + eps) * _channel_view(gamma, x) + _channel_view(
        beta, x
    )


# |argument| above which DyT's tanh (and Derf's erf) count as saturated: tanh(2) = 0.964, erf(2) = 0.995.
SATURATION = 2.0


def dynamic_tanh(x, alpha, gamma, beta):
    """DyT: y = gamma * tanh(alpha * x) + beta, alpha a scalar, gamma and beta per feature (last dim)."""
    return gamma * torch.tanh(alpha * x) + beta


def dynamic_erf(x, alpha, shift, gamma, beta):
    """Derf: y = gamma * erf(alpha * x + shift) + beta, alpha and shift scalars, gamma, beta per feature."""
    return gamma * torch.erf(alpha * x + shift) + beta


def corrected_relu(x):
    """sqrt(2pi/(pi-1)) * (relu(x) - 1/sqrt(2pi)): mean 0 and variance 1 for x ~ N(0, 1)."""
    return RELU_GAIN * (F.relu(x) - 1 / math.sqrt(2 * math.pi))


def standardize_weight(weight, gain, eps: float = 1e-4):
    """Scaled Weight Standardization: W_hat = gain * (W - mean) / (std * sqrt(fan_in)), per filter."""
    dims = tuple(range(1, weight.dim()))
    fan_in = weight[0].numel()
    mean = weight.mean(dim=dims, keepdim=True)
    var = weight.var(dim=dims, unbiased=False, keepdim=True)
    # max(., eps) only guards an all-constant filter; for a Kaiming init var * fan_in is about 2
    scale = torch.rsqrt(torch.clamp(var * fan_in, min=eps))
    gain = gain.view(-1, *([1] * (weight.dim() - 1)))  # (C_out, 1, 1, 1)
    return gain * (weight - mean) * scale


# ---------------------------------------------------------------------------------------------
# Modules: they own parameters; the maths is above.


class BatchNorm(_BatchNorm):
    """Batch Normalization (Ioffe & Szegedy 2015) on (N, C) or (N, C, H, W) activations.

    y = (x - mu_c) / sqrt(sigma_c^2 + eps) * gamma + beta, statistics per channel over (N, H, W),
    batch statistics in train mode; computed by ``F.batch_norm``.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() not in (2, 4):
            raise ValueError(f"BatchNorm expects (N, C) or (N, C, H, W) input; got {input.dim()}D")


class GroupNorm(nn.GroupNorm):
    """Group Normalization (Wu & He 2018): statistics per sample over each group of C/G channels.

    y = (x - mu_{n,g}) / sqrt(sigma_{n,g}^2 + eps) * gamma_c + beta_c over (C/G, H, W);
    computed by ``F.group_norm``. G = 1 is LayerNorm, G = C is InstanceNorm.
    """


class LayerNorm(GroupNorm):
    """Layer Normalization (Ba et al. 2016) with a per-channel affine: GroupNorm with one group.

    y = (x - mu_n) / sqrt(sigma_n^2 + eps) * gamma_c + beta_c, statistics per sample over (C, H, W).
    """

    def __init__(self, num_channels: int, eps: float = EPS) -> None:
        super().__init__(1, num_channels, eps=eps)


class InstanceNorm(GroupNorm):
    """Instance Normalization (Ulyanov et al. 2016): GroupNorm with C groups (group size 1).

    y = (x - mu_{n,c}) / sqrt(sigma_{n,c}^2 + eps) * gamma_c + beta_c over (H, W). On (N, C)
    activations each statistic covers a single value, so the output is beta: a real, degenerate case.
    """

    def __init__(self, num_channels: int, eps: float = EPS) -> None:
        super().__init__(num_channels, num_channels, eps=eps)

    def forward(self, x):
        if x.dim() == 2:
            # x - mean is exactly 0 here; F.group_norm would return float32 round-off amplified by
            # 1/sqrt(eps) instead. x * 0 keeps the graph, so the (exactly zero) gradient flows back.
            return x * 0 + self.bias
        return super().forward(x)


class _PerChannel(nn.Module):
    """Base for the hand-written layers: per-channel parameters with their spec initial values."""

    inits: dict[str, float] = {}

    def __init__(self, num_channels: int, eps: float = EPS) -> None:
        super().__init__()
        self.num_channels = num_channels
        self.eps = eps
        for name in self.inits:
            setattr(self, name, nn.Parameter(torch.empty(num_channels)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for name, value in self.inits.items():
            nn.init.constant_(getattr(self, name), value)

    def extra_repr(self) -> str:
        return f"{self.num_channels}, eps={self.eps}"


class FilterResponseNorm(_PerChannel):
    """Filter Response Normalization (Singh & Krishnan 2020), norm slot; pairs with :class:`TLU`.

    nu^2 = mean_{H,W}(x^2);  y = gamma * x / sqrt(nu^2 + eps) + beta. No mean subtraction.
    """

    inits = {"weight": 1.0, "bias": 0.0}

    def forward(self, x):
        return frn(x, self.weight, self.bias, self.eps)


class TLU(_PerChannel):
    """Thresholded Linear Unit (Singh & Krishnan 2020): z = max(y, tau), tau per channel, init 0."""

    inits = {"tau": 0.0}

    def forward(self, x):
        return tlu(x, self.tau)


class EvoNormB0(_PerChannel):
    """EvoNorm-B0 (Liu et al. 2020), activation slot: batch and instance variance, no centering.

    y = x / max(sqrt(s^2_batch + eps), v * x + sqrt(s^2_inst + eps)) * gamma + beta, v init 1.
    """

    inits = {"v": 1.0, "weight": 1.0, "bias": 0.0}

    def forward(self, x):
        return evonorm_b0(x, self.v, self.weight, self.bias, self.eps)


class EvoNormS0(_PerChannel):
    """EvoNorm-S0 (Liu et al. 2020), activation slot: a sample-based, batch-independent layer.

    y = x * sigmoid(v * x) / sqrt(s^2_group + eps) * gamma + beta, group variance over (C/G, H, W).
    """

    inits = {"v": 1.0, "weight": 1.0, "bias": 0.0}

    def __init__(self, num_channels: int, groups: int, eps: float = EPS) -> None:
        assert num_channels % groups == 0, f"{groups} groups do not divide {num_channels} channels"
        self.groups = groups
        super().__init__(num_channels, eps)

    def forward(self, x):
        return evonorm_s0(x, self.v, self.weight, self.bias, self.groups, self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_channels}, groups={self.groups}, eps={self.eps}"


class RMSNorm(nn.RMSNorm):
    """Root Mean Square Layer Normalization (Zhang & Sennrich, NeurIPS 2019): torch.nn.RMSNorm.

    y = x / sqrt(mean(x^2) + eps) * gamma over the last dimension (an MLP's features, a token's D),
    eps = 1e-5, gamma init 1; no centering and no bias. Put where LayerNorm would be.
    """

    def __init__(self, num_features: int, eps: float = EPS) -> None:
        super().__init__(num_features, eps=eps)


class _PointWise(nn.Module):
    """Base of DyT and Derf: scalar parameters (``scalars``) and a per-feature affine gamma, beta."""

    scalars: dict[str, float] = {}

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features
        for name in self.scalars:
            setattr(self, name, nn.Parameter(torch.empty(())))
        self.weight = nn.Parameter(torch.empty(num_features))
        self.bias = nn.Parameter(torch.empty(num_features))
        self.arg = nn.Identity()  # a hook point: the bounded function's argument (its saturation)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for name, value in self.scalars.items():
            nn.init.constant_(getattr(self, name), value)
        nn.init.ones_(self.weight)
        nn.init.zeros_(self.bias)

    def argument(self, x: torch.Tensor) -> torch.Tensor:
        """What the bounded function is applied to (its saturated fraction is |argument| > SATURATION)."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        inits = ", ".join(f"{k}_init={v}" for k, v in self.scalars.items())
        return f"{self.num_features}, {inits}"


class DynamicTanh(_PointWise):
    """Dynamic Tanh (Zhu, Chen, He, LeCun, Liu, "Transformers without Normalization", CVPR 2025).

    y = gamma * tanh(alpha * x) + beta over the last dimension; alpha one learnable scalar, init 0.5,
    gamma 1, beta 0 per feature, as the official jiachenzhu/DyT dynamic_tanh.py. No statistics: at
    init, for |alpha x| << 1, it is the fixed gain alpha; it bounds its output by |gamma| + |beta|.
    """

    scalars = {"alpha": 0.5}

    def argument(self, x):
        return self.alpha * x

    def forward(self, x):
        return self.weight * torch.tanh(self.arg(self.argument(x))) + self.bias  # dynamic_tanh


class DynamicErf(_PointWise):
    """Dynamic erf (Chen et al., "Stronger Normalization-Free Transformers", 2025).

    y = gamma * erf(alpha * x + s) + beta over the last dimension; alpha and s learnable scalars, init
    0.5 and 0, gamma 1, beta 0 per feature, as the official zlab-princeton/Derf dynamic_erf.py.
    """

    scalars = {"alpha": 0.5, "shift": 0.0}

    def argument(self, x):
        return self.alpha * x + self.shift

    def forward(self, x):
        return self.weight * torch.erf(self.arg(self.argument(x))) + self.bias  # dynamic_erf


class CorrectedReLU(nn.Module):
    """The activation the paper pairs with Weight Normalization (Arpit et al. 2016).

    y = sqrt(2pi/(pi-1)) * (relu(x) - 1/sqrt(2pi)), which has mean 0 and variance 1 for x ~ N(0, 1).
    """

    def forward(self, x):
        return corrected_relu(x)


class _ScaledWSMixin:
    """Scaled Weight Standardization (Brock et al. 2021, NF-Nets), applied on every forward.

    W_hat = gain * g * (W - mean) / (std * sqrt(fan_in)) per output filter, gain = sqrt(2pi/(pi-1))
    for a ReLU, g per output channel init 1. The layer keeps its bias.
    """

    def _init_gain(self) -> None:
        self.gain = nn.Parameter(torch.ones(self.weight.shape[0]))

    def standardized_weight(self) -> torch.Tensor:
        return standardize_weight(self.weight, RELU_GAIN * self.gain)


class ScaledStdConv2d(_ScaledWSMixin, nn.Conv2d):
    __doc__ = _ScaledWSMixin.__doc__

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._init_gain()

    def forward(self, x):
        return self._conv_forward(x, self.standardized_weight(), self.bias)


class ScaledStdLinear(_ScaledWSMixin, nn.Linear):
    __doc__ = _ScaledWSMixin.__doc__

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._init_gain()

    def forward(self, x):
        return F.linear(x, self.standardized_weight(), self.bias)


def apply_weight_norm(layer: nn.Module) -> nn.Module:
    """Weight Normalization (Salimans & Kingma 2016) through torch's parametrization.

    w = g * v / ||v|| per output filter. g starts at 1, not at ||v|| (no data-dependent init), so
    every filter starts with unit norm.
    """
    layer = torch.nn.utils.parametrizations.weight_norm(layer, name="weight", dim=0)
    with torch.no_grad():
        layer.parametrizations.weight.original0.fill_(1.0)
    return layer


# ---------------------------------------------------------------------------------------------
# The registry


@dataclass(frozen=True)
class Normalizer:
    """One entry of the registry: what a normalizer puts in each slot of conv -> norm -> act.

    Only the factories live here; the label, slot and traits are read from ``normlab.core.catalog``.
    """

    name: str
    factory: Callable[..., nn.Module]  # norm slot: factory(num_channels, *, groups) -> nn.Module
    act_factory: Callable[..., nn.Module]  # activation slot, same signature
    weights: str = "plain"  # "plain", "weightnorm" or "sws": how conv/linear weights are normalized

    @property
    def info(self) -> catalog.NormInfo:
        return catalog.normalizer(self.name)

    @property
    def label(self) -> str:
        return self.info.label

    @property
    def family(self) -> str:
        return self.info.family

    @property
    def grouped(self) -> bool:
        return self.info.grouped

    @property
    def batch_dependent(self) -> bool:
        return self.info.batch_dependent

    def norm(self, num_channels: int, *, groups: int | None = None) -> nn.Module:
        return self.factory(num_channels, groups=groups)

    def act(self, num_channels: int, *, groups: int | None = None) -> nn.Module:
        return self.act_factory(num_channels, groups=groups)


def _identity(num_channels: int, *, groups=None) -> nn.Module:
    return nn.Identity()


def _relu(num_channels: int, *, groups=None) -> nn.Module:
    return nn.ReLU()


def _groupnorm(num_channels: int, *, groups=None) -> nn.Module:
    if groups is None:
        raise ValueError("groupnorm needs a group count (groups) or a group size (group_size)")
    return GroupNorm(groups, num_channels, eps=EPS)


def _evonorm_s0(num_channels: int, *, groups=None) -> nn.Module:
    if groups is None:
        raise ValueError("evonorm_s0 needs a group count (groups) or a group size (group_size)")
    return EvoNormS0(num_channels, groups)


NORMALIZERS: dict[str, Normalizer] = {
    n.name: n
    for n in (
        Normalizer("none", _identity, _relu),
        Normalizer("batchnorm", lambda c, *, groups=None: BatchNorm(c, eps=EPS), _relu),
        Normalizer("layernorm", lambda c, *, groups=None: LayerNorm(c), _relu),
        Normalizer("instancenorm", lambda c, *, groups=None: InstanceNorm(c), _relu),
        Normalizer("groupnorm", _groupnorm, _relu),
        Normalizer("frn", lambda c, *, groups=None: FilterResponseNorm(c), lambda c, *, groups=None: TLU(c)),
        Normalizer("evonorm_b0", _identity, lambda c, *, groups=None: EvoNormB0(c)),
        Normalizer("evonorm_s0", _identity, _evonorm_s0),
        Normalizer("weightnorm", _identity, lambda c, *, groups=None: CorrectedReLU(), weights="weightnorm"),
        Normalizer("sws", _identity, _relu, weights="sws"),
        Normalizer("rmsnorm", lambda c, *, groups=None: RMSNorm(c), _relu),
        Normalizer("dyt", lambda c, *, groups=None: DynamicTanh(c), _relu),
        Normalizer("derf", lambda c, *, groups=None: DynamicErf(c), _relu),
    )
}


def check_registry() -> None:
    """The factories and the catalog must name the same normalizers, else one of them lacks an entry."""
    built, known = set(NORMALIZERS), set(catalog.NORM_INFO)
    if built != known:
        raise RuntimeError(
            f"normlab.science.norms.NORMALIZERS and normlab.core.catalog.NORM_INFO disagree: "
            f"factories without a catalog entry {sorted(built - known)}, catalog entries without a factory "
            f"{sorted(known - built)}"
        )


check_registry()


def get_normalizer(name: str) -> Normalizer:
    catalog.normalizer(name)  # an unknown name: the catalog's ValueError
    if name not in NORMALIZERS:
        check_registry()  # a catalog entry without a factory: say which
    return NORMALIZERS[name]


def token_norm(name: str, d: int) -> nn.Module:
    """A normalizer of a transformer: per token over its last dimension D (layernorm is torch's
    nn.LayerNorm over D, eps 1e-5; rmsnorm, dyt and derf their norm-slot modules; none the identity)."""
    if name == "layernorm":
        return nn.LayerNorm(d, eps=EPS)
    info = catalog.normalizer(name)
    if name != "none" and not info.per_feature:
        per_token = [n for n, i in catalog.NORM_INFO.items() if i.per_feature or n in ("none", "layernorm")]
        raise ValueError(f"normalizer {name!r} does not act per token; allowed: {choices(per_token)}")
    return get_normalizer(name).norm(d)


def create_norm(name: str, num_channels: int, *, groups: int | None = None) -> nn.Module:
    """The norm-slot module of normalizer ``name`` over ``num_channels`` channels."""
    normalizer = get_normalizer(name)
    check_int("num_channels", num_channels, high=MAX_CHANNELS)
    if groups is not None:
        check_int("groups", groups, high=MAX_CHANNELS)
        if normalizer.grouped and num_channels % groups:
            raise ValueError(f"Number of groups ({groups}) does not divide num_channels ({num_channels}); "
                             f"allowed: {choices(common_divisors([num_channels]))}")
    return normalizer.norm(num_channels, groups=groups)
