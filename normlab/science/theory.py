"""Closed-form curves to overlay on the probes (spec sections 4 and 5: the paper's families and the
transformer), each with its source and conditions.

Every curve is a tidy frame keyed like ``run_probes``' output (``layer``, ``index``, ``kind``, ``metric``,
``value``) plus ``theory``, ``law``, ``label``, ``source`` and ``assumptions`` columns, so a plot joins
measured and predicted rows on the same keys. Layer names come from the model itself, never guessed.
The ``*_applies`` helpers say whether a curve's assumptions hold for a config, and why (not).
Knows nothing of hooks, metrics or the UI.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from normlab.core import catalog
from normlab.core.config import (
    MAX_CHANNELS,
    ModelConfig,
    check_choice,
    check_instance,
    check_int,
    check_items,
    check_real,
)
from normlab.science import summary
from normlab.science.models import BLOCK, CONV, build_model

# --- Constants, each with where it comes from -------------------------------------------------------------

# Var(relu(z)) for z ~ N(0, 1): what a block adds when a ReLU follows the addition (De & Smith 2020).
RELU_VAR = (math.pi - 1) / (2 * math.pi)  # ~0.341
# He (Kaiming fan-in) init: Var(W x) = 2 E[x^2] per output (He et al. 2015).
HE_GAIN = 2.0
# Per-channel (batch-centered) variance of a He-init conv applied to relu(z), z ~ N(0, 1): 2 * RELU_VAR.
# This is what a pre-activation branch (norm-act-conv) adds to the trunk; its second moment is 1.
HE_RELU_BRANCH_VAR = HE_GAIN * RELU_VAR  # ~0.682
# Unnormalized He-init residual blocks double the signal, Var_{l+1} ~ 2 Var_l (De & Smith 2020).
DOUBLING = 2.0
# Second-moment gain of a Scaled Weight Standardized conv: each filter has squared norm gain^2 = 2pi/(pi-1).
SWS_GAIN_SQ = 2 * math.pi / (math.pi - 1)  # ~2.934 (Brock et al. 2021)
# Weight Normalization with g = 1: each filter has unit norm, so the conv keeps the second moment.
WN_GAIN_SQ = 1.0
# BatchNorm + ReLU: ||dL/dz|| grows by sqrt(pi / (pi - 1)) per layer toward the input (Yang et al. 2019).
BN_GRAD_RATE = summary.BN_GRAD_RATE  # ~1.2112

SOURCES = {
    "de_smith_2020": "De & Smith 2020, Batch Normalization Biases Residual Blocks Towards the Identity "
    "Function in Deep Networks (NeurIPS)",
    "yang_2019": "Yang et al. 2019, A Mean Field Theory of Batch Normalization (ICLR)",
    "lubana_2021": "Lubana, Dick & Tanaka 2021, Beyond BatchNorm (NeurIPS)",
    "daneshmand_2020": "Daneshmand et al. 2020, Batch Normalization Provably Avoids Rank Collapse for "
    "Randomly Initialised Deep Networks (NeurIPS)",
    "xiong_2020": "Xiong et al. 2020, On Layer Normalization in the Transformer Architecture (ICML)",
    "kedia_2024": "Kedia et al. 2024, Transformers Get Stable: An End-to-End Signal Propagation Theory "
    "for Language Models (ICML)",
    "dong_2021": "Dong, Cordonnier & Loukas 2021, Attention is Not All You Need: Pure Attention Loses "
    "Rank Doubly Exponentially with Depth (ICML)",
    "noci_2022": "Noci et al. 2022, Signal Propagation in Transformers: Theoretical Perspectives and the "
    "Role of Rank Collapse (NeurIPS)",
}

# The theory families, read from normlab.core.catalog (each normalizer's ``theory`` and ``rank_bound``):
# SLOT_NORMS divide by activation statistics in the norm slot, so each branch ends at unit scale and a
# projection shortcut (conv + norm) restarts the trunk at a fixed level; TRUNK_NORMS sit in the activation
# slot and act after the addition of a post-activation block; UNNORMALIZED propagate like a He-initialised
# net (the trunk doubles per block); RANK_NORMS are those the rank bounds speak of (BN, the GroupNorm family).
SLOT_NORMS = catalog.SLOT_NORMS
TRUNK_NORMS = catalog.TRUNK_NORMS
UNNORMALIZED = catalog.UNNORMALIZED
RANK_NORMS = catalog.RANK_NORMS
RANK_METRICS = ("numerical_rank", "effective_rank", "stable_rank")

THEORY_COLUMNS = ["layer", "index", "kind", "metric", "value", "theory", "law", "label", "source",
                  "assumptions"]


# --- Where the probe points sit ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Block:
    name: str
    index: int  # among the net's blocks, forward order (the ``index`` of a measured ``block`` row)
    stage: int
    projection: bool  # the shortcut is a conv (+ norm): the shape changes here


@functools.lru_cache(maxsize=128)
def _points(config: ModelConfig) -> tuple[tuple[tuple[str, str], ...], str]:
    """(name, kind) of every probe point in forward order, and the classifier head's name."""
    with torch.random.fork_rng(devices=[]):  # building draws weights: leave the caller's RNG untouched
        net = build_model(config)
    head = next(name for name, module in net.named_modules() if module is net.head)
    return tuple((name, kind) for name, kind, _ in net.probe_points()), head


def _names(config: ModelConfig, kind: str) -> list[str]:
    return [name for name, k in _points(config)[0] if k == kind]


def _blocks(config: ModelConfig) -> list[_Block]:
    """The residual blocks with their stage and whether their shortcut projects (as models.Shortcut)."""
    names = _names(config, BLOCK)
    assert len(names) == len(config.plan), "one block per plan entry"
    blocks, c_in = [], config.width
    for index, (name, (c_out, stride)) in enumerate(zip(names, config.plan, strict=True)):
        blocks.append(_Block(name, index, index // config.depth, stride != 1 or c_in != c_out))
        c_in = c_out
    return blocks


def _frame(rows: list[tuple], config: ModelConfig | None, **meta: str) -> pd.DataFrame:
    """Rows (layer, index, kind, metric, value) plus the curve's metadata and the config as columns."""
    frame = pd.DataFrame(rows, columns=THEORY_COLUMNS[:5])
    frame["index"] = frame["index"].astype("int64")
    frame["value"] = frame["value"].astype("float64")
    for key, value in meta.items():
        frame[key] = value
    if config is not None:
        for key, value in config.to_dict().items():
            frame[key] = pd.Series([value] * len(frame), index=frame.index, dtype=object)
    frame.attrs.update(meta)
    return frame


# --- Variance of residual block outputs (De & Smith 2020) -------------------------------------------------


@dataclass(frozen=True)
class VarianceLaw:
    """How ``act_var`` at the block outputs evolves, block to block.

    ``first`` is the predicted value at the first block (None: the level is not predicted, only the
    shape); ``reset`` the value at the first block after a normalized projection shortcut (None: no reset).
    """

    law: str  # "linear", "doubling" or "flat"
    first: float | None
    increment: float  # added per block by a linear law
    reset: float | None
    assumptions: str
    source: str = SOURCES["de_smith_2020"]

    def step(self, value: float) -> float:
        if self.law == "linear":
            return value + self.increment
        if self.law == "doubling":
            return value * DOUBLING
        return value


def _stem_var(config: ModelConfig, input_var: float) -> float | None:
    """Predicted trunk variance leaving the stem, for inputs of variance ``input_var``."""
    conv_gain = {"sws": SWS_GAIN_SQ, "weightnorm": WN_GAIN_SQ}.get(config.norm, HE_GAIN)
    if config.preact:  # the stem is a bare conv
        return conv_gain * input_var
    if config.norm in SLOT_NORMS:  # relu of a unit-variance normalized conv
        return RELU_VAR
    if config.norm == "weightnorm":  # the corrected ReLU keeps the variance of a centred Gaussian
        return conv_gain * input_var
    if config.norm in TRUNK_NORMS:
        return None  # EvoNorm's data-dependent denominator: no closed form here
    return RELU_VAR * conv_gain * input_var  # relu of a He / SWS conv output


class Reason(str):
    """Why a theory curve is withheld: the English sentence (a str, as the API has always returned), and
    ``code``, a stable name from :data:`REASON_CODES` or :data:`TRANSFORMER_REASON_CODES` that a front end
    translates instead of reading the words."""

    code: str

    def __new__(cls, code: str, text: str) -> Reason:
        assert code in REASON_CODES or code in TRANSFORMER_REASON_CODES, f"unknown reason code {code!r}"
        reason = super().__new__(cls, text)
        reason.code = code
        return reason


class Withheld(ValueError):
    """A config outside a law's assumptions; ``reason`` carries the code and the words."""

    def __init__(self, code: str, text: str) -> None:
        self.reason = Reason(code, text)
        super().__init__(self.reason)


REASON_CODES = (
    "not_residual",  # the block-variance laws are for residual nets
    "wn_after_add",  # weightnorm with the corrected ReLU after each addition: no closed form
    "trunk_preact",  # a trunk normalizer in pre-activation blocks: no closed form
    "gradient_norm",  # the gradient rate is derived for batchnorm only
    "gradient_residual",  # the gradient rate is for plain nets
    "gradient_depth",  # the gradient rate needs 3 hidden layers to show
    "rank_tokens",  # the rank bounds are for the image families, not a transformer's sequence vectors
    "rank_norm",  # the rank bounds cover batchnorm and the GroupNorm family only
)
# The transformer laws' codes: their sentences live in the catalog (catalog.TRANSFORMER_LAW_REASONS,
# marked for translation), where a front end reads the words of a code.
TRANSFORMER_REASON_CODES = tuple(catalog.TRANSFORMER_LAW_REASONS)


def variance_law(config: ModelConfig, input_var: float = 1.0) -> VarianceLaw:
    """The variance law of ``config``'s block outputs.

    Raises:
        ValueError: the config is outside every law's assumptions; the message says why.
    """
    if not config.residual:
        raise Withheld("not_residual", f"the block-variance laws are for residual nets (arch 'resnet'); "
                                       f"got arch {config.arch!r}")
    if config.norm == "weightnorm" and config.wn_act == "after_add" and not config.preact:
        raise Withheld("wn_after_add", "weightnorm with the corrected ReLU after each addition compounds "
                       "and explodes faster than doubling, even with SkipInit (spec section 2); no closed "
                       "form")
    stem = _stem_var(config, input_var)
    if config.skipinit:
        return _flat_law(config, stem)
    if config.norm in TRUNK_NORMS:
        if config.preact:
            raise Withheld("trunk_preact", f"{config.norm} in pre-activation blocks: no closed-form trunk "
                           "law (the branch variance depends on EvoNorm's data-dependent denominator)")
        return VarianceLaw(
            "flat", None, 0.0, None,
            f"{config.norm} acts after the addition, on the trunk, so the block outputs stay at one level "
            "(the paper's code); the level is not predicted, only the shape",
            SOURCES["lubana_2021"],
        )
    if config.norm in SLOT_NORMS:
        return _linear_law(config, stem)
    return VarianceLaw(
        "doubling", None if stem is None else DOUBLING * stem, 0.0, None,
        "He-init residual blocks without activation normalization: the branch carries as much signal as "
        "the trunk, so Var_{l+1} = 2 Var_l (exact for the second moment E[x^2]; the per-channel variance "
        "act_var approaches it after a few blocks). No stage resets: the projection shortcut has no norm",
    )


def _linear_law(config: ModelConfig, stem: float) -> VarianceLaw:
    exactness = ("exact in expectation for batchnorm (unit variance per channel); instancenorm and small "
                 "groups come close; layernorm, large groups and frn normalize per sample, so the slope is "
                 "smaller while the growth stays linear")
    if config.preact:
        return VarianceLaw(
            "linear", stem + HE_RELU_BRANCH_VAR, HE_RELU_BRANCH_VAR, 1.0 + HE_RELU_BRANCH_VAR,
            "pre-activation blocks: each branch (norm-act-conv) adds its own variance (pi-1)/pi ~ 0.68 "
            "(second moment 1), so Var_{l+1} = Var_l + 0.68; a normalized projection shortcut restarts "
            f"the trunk at 1 + 0.68 in each new stage; {exactness}",
        )
    return VarianceLaw(
        "linear", stem + RELU_VAR, RELU_VAR, 2 * RELU_VAR,
        "post-activation blocks: a ReLU follows the addition, so each unit-variance branch adds about "
        "Var(relu(z)) = (pi-1)/(2pi) ~ 0.34: Var_{l+1} = Var_l + 0.34; a normalized projection shortcut "
        f"restarts the trunk at relu of a sum of two unit variances (0.68) in each new stage; {exactness}",
    )


def _flat_law(config: ModelConfig, stem: float | None) -> VarianceLaw:
    if config.norm in SLOT_NORMS:
        # A normalized shortcut restarts the trunk: at relu(unit) post-activation, at 1 pre-activation.
        reset = 1.0 if config.preact else RELU_VAR
        note = f"a normalized projection shortcut sets the level to {reset:.3g} in each new stage"
    else:
        reset = None
        note = "a projection shortcut without normalization shifts the level by its gain (not modelled)"
    return VarianceLaw(
        "flat", stem, 0.0, reset,
        f"SkipInit: alpha = 0, so every block is the identity at initialization and the trunk keeps the "
        f"stem's variance; {note}",
    )


def variance_applies(config: ModelConfig) -> tuple[bool, str]:
    """Whether a variance law holds for ``config``'s block outputs, and why (not: a :class:`Reason`)."""
    try:
        law = variance_law(config)
    except Withheld as err:
        return False, err.reason
    return True, f"{law.law}: {law.assumptions}"


def variance_theory(config: ModelConfig, start_var: float | None = None, input_var: float = 1.0,
                    increment: float | None = None) -> pd.DataFrame:
    """Predicted ``act_var`` at every block output of a resnet (kind ``block``).

    Linear growth for normalizers in the norm slot, doubling without activation normalization, flat with
    SkipInit or EvoNorms after the addition; normalized projection shortcuts restart the trunk.

    Args:
        config: a resnet configuration for which ``variance_applies`` holds.
        start_var: value at the first block; None takes the law's prediction (1.0 where it predicts only
            the shape). Pass the measured first block to compare shapes.
        input_var: variance of the input pixels (the probe inputs are standardized: 1).
        increment: override of a linear law's per-block increment, e.g. a slope fitted to the measurements.

    Raises:
        ValueError: the config is outside the laws' assumptions.
    """
    check_instance("config", config, ModelConfig)
    if start_var is not None:
        check_real("start_var", start_var, 0.0)
    check_real("input_var", input_var, 0.0)
    if increment is not None:
        check_real("increment", increment, -math.inf)
    law = variance_law(config, input_var)
    if increment is not None:
        law = dataclasses.replace(law, increment=increment)
    value = start_var if start_var is not None else (law.first if law.first is not None else 1.0)
    rows = []
    for block in _blocks(config):
        if block.index > 0:
            restart = block.projection and law.reset is not None
            value = law.reset if restart else law.step(value)
        rows.append((block.name, block.index, BLOCK, "act_var", value))
    label = {"linear": f"linear, +{law.increment:.3g} per block", "doubling": "doubling per block",
             "flat": "flat"}[law.law]
    cite = law.source.split(",")[0]  # "De & Smith 2020" or "Lubana, Dick & Tanaka 2021"
    return _frame(rows, config, theory="variance", law=law.law, label=f"{label} ({cite})",
                  source=law.source, assumptions=law.assumptions)


# --- Gradient explosion with BatchNorm (Yang et al. 2019) --------------------------------------------------

_GRADIENT_ASSUMPTIONS = (
    "batchnorm + ReLU in a plain (non-residual) net at initialization, batch statistics (train mode); the "
    "mean-field limit: holds at large width and batch (within a few percent at width 512, batch 128), "
    "derived for MLPs and followed approximately by convs. The first layer (fed raw inputs, not the "
    "batchnorm fixed point) and the classifier head are left out"
)


def gradient_applies(config: ModelConfig) -> tuple[bool, str]:
    """Whether the BatchNorm gradient rate holds for ``config``, and why (not: a :class:`Reason`)."""
    if config.norm != "batchnorm":
        return False, Reason("gradient_norm",
                             f"the gradient rate is derived for batchnorm only; got norm {config.norm!r}")
    if config.residual:
        return False, Reason("gradient_residual",
                             "the gradient rate is for plain nets (mlp, cnn); residual connections change it")
    if config.depth < 3:
        return False, Reason("gradient_depth",
                             f"the rate needs at least 3 hidden layers to show; got depth {config.depth}")
    return True, _GRADIENT_ASSUMPTIONS


def gradient_theory(config: ModelConfig, last_grad_norm: float = 1.0,
                    rate: float = BN_GRAD_RATE) -> pd.DataFrame:
    """Predicted ``grad_norm`` at the hidden conv/linear outputs (kind ``conv``) of a batchnorm net.

    ||dL/dz_l|| = last_grad_norm * rate^(L-1-l): growing by ``rate`` per layer toward the input.

    Args:
        config: an mlp or cnn with batchnorm (see ``gradient_applies``).
        last_grad_norm: value at the last hidden layer; pass the measured one to compare shapes.
        rate: the per-layer growth, sqrt(pi/(pi-1)) for ReLU.

    Raises:
        ValueError: the config is outside the assumptions.
    """
    check_instance("config", config, ModelConfig)
    check_real("last_grad_norm", last_grad_norm, 0.0)
    check_real("rate", rate, 0.0, open_low=True)
    ok, reason = gradient_applies(config)
    if not ok:
        raise ValueError(reason)
    _, head = _points(config)
    names = [(index, name) for index, name in enumerate(_names(config, CONV)) if name != head]
    last = len(names) - 1
    with np.errstate(over="ignore"):  # very deep nets overflow to inf, never raise
        rows = [(name, index, CONV, "grad_norm", float(last_grad_norm * np.float64(rate) ** (last - k)))
                for k, (index, name) in enumerate(names) if k > 0]
    return _frame(rows, config, theory="gradient", law="geometric",
                  label=f"x{rate:.4g} per layer toward the input (Yang et al. 2019)",
                  source=SOURCES["yang_2019"], assumptions=_GRADIENT_ASSUMPTIONS)


# --- Rank of the final features (Lubana et al. 2021; Daneshmand et al. 2020) ------------------------------


def rank_applies(config: ModelConfig) -> tuple[bool, str]:
    """Whether a rank bound speaks of ``config``'s final features, and why (not)."""
    if catalog.family(config.arch).tokens:
        return False, Reason("rank_tokens", f"the rank bounds are derived for image networks; arch "
                                            f"{config.arch!r} reads token sequences")
    if config.norm not in RANK_NORMS:
        return False, Reason("rank_norm", f"the rank bounds cover batchnorm and the GroupNorm family "
                                          f"(groupnorm, layernorm, instancenorm); got norm {config.norm!r}")
    if config.norm == "batchnorm":
        return True, "BatchNorm: final-feature rank is Omega(sqrt(width)) (Daneshmand et al. 2020); shape"
    return True, ("GroupNorm family: final-feature rank is Omega(sqrt(width / group size)) (Lubana et al. "
                  "2021); layernorm has one group of all channels, instancenorm groups of one; shape only")


def rank_theory(widths, group_sizes, reference: tuple[int, int | None, float] | None = None,
                metric: str = "numerical_rank") -> pd.DataFrame:
    """The shape of the final-feature rank over widths and group sizes: sqrt(width / group size).

    Only the shape is known (a lower bound up to a constant), so values are scaled to pass through
    ``reference``. A group size of None stands for BatchNorm, whose counterpart is sqrt(width). Pairs
    whose group size does not divide the width are skipped. Measured ranks are also capped by
    min(batch size, features), which the bound does not know.

    Args:
        widths: one width or several (channels of the final features).
        group_sizes: one group size or several; None for BatchNorm.
        reference: (width, group_size, value) the curve passes through; None: scale 1 (pure shape).
        metric: which rank metric the rows stand for.

    Returns:
        One row per (width, group_size) with ``width``, ``group_size``, ``groups``, ``norm``, ``metric``,
        ``value``, ``final`` and the curve's metadata.
    """
    check_choice("rank metric", metric, RANK_METRICS)
    widths, group_sizes = check_items("widths", widths), check_items("group_sizes", group_sizes)
    for w in widths:
        check_int("widths", w, high=MAX_CHANNELS)
    for g in group_sizes:
        if g is not None:  # None: batchnorm
            check_int("group_sizes", g, high=MAX_CHANNELS)
    scale = 1.0
    if reference is not None:
        ref = check_items("reference", reference, 3)
        if len(ref) != 3:
            raise ValueError(f"reference must be (width, group_size, value); got {reference!r}")
        ref_width, ref_group, ref_value = ref
        check_int("reference width", ref_width, high=MAX_CHANNELS)
        if ref_group is not None:
            check_int("reference group_size", ref_group, high=MAX_CHANNELS)
        check_real("reference value", ref_value, 0.0)
        scale = ref_value / _rank_shape(ref_width, ref_group)
    rows = [
        {"width": w, "group_size": g, "groups": None if g is None else w // g,
         "norm": "batchnorm" if g is None else "groupnorm", "metric": metric,
         "value": scale * _rank_shape(w, g), "final": True}
        for w in widths for g in group_sizes if g is None or (g <= w and w % g == 0)
    ]
    frame = pd.DataFrame(rows, columns=["width", "group_size", "groups", "norm", "metric", "value", "final"])
    frame["value"] = frame["value"].astype("float64")
    batchnorm = any(g is None for g in group_sizes)
    source = "; ".join(
        [SOURCES["lubana_2021"]] * any(g is not None for g in group_sizes)
        + [SOURCES["daneshmand_2020"]] * batchnorm
    )
    meta = {
        "theory": "rank", "law": "sqrt", "label": "sqrt(width / group size), shape only",
        "source": source,
        "assumptions": "a lower bound Omega(sqrt(width / group size)) on the final features' rank, known up "
                       "to a constant (scaled to a reference point); BatchNorm's counterpart is "
                       "Omega(sqrt(width)); measured ranks are also capped by min(batch size, features)",
    }
    for key, value in meta.items():
        frame[key] = value
    frame.attrs.update(meta)
    return frame


def _rank_shape(width: int, group_size: int | None) -> float:
    return math.sqrt(width if group_size is None else width / group_size)


# --- Transformers (spec section 5): Xiong et al. 2020, Kedia et al. 2024, Dong et al. 2021 --------------

# The pre-LN band (Xiong et al. 2020, Lemma; Kedia et al. 2024): (1 + l/2) d <= E||x_l||^2 <= (1 + 3l/2) d
# after l blocks, for an input of E||x_0||^2 = d (the N(0, 1) token embedding). normlab plots it divided by
# d, against act_sq_norm (E[x^2] over (N, T), mean over the D features: E||x||^2 / d per token, which
# equals act_var + act_sq_mean, the per-feature variance plus the squared per-feature mean).
BAND_METRIC = "act_sq_norm"
BAND_LOW, BAND_HIGH = 0.5, 1.5  # what each block adds to E||x||^2 / d, at least and at most
W2_METRIC = "weight_grad_norm"
COLLAPSE_METRIC = "token_residual"
# The expected log-log slope of the last block's ||dL/dW_2||_F against depth L (Xiong et al. 2020,
# Theorem 1): O(d sqrt(ln d)) for post-LN, independent of L; O(d sqrt(ln d / L)) for pre-LN.
DEPTH_SLOPES = {"post": 0.0, "pre": -0.5}
TRANSFORMER_THEORIES = ("band", "depth_slope", "collapse")
_NORMALIZED = ("layernorm", "rmsnorm")  # divide each token by its own scale, as the laws assume
_POINTWISE = ("dyt", "derf")


def _tf_withheld(theory: str, model) -> Reason | None:
    """Why transformer law ``theory`` does not hold for ``model`` (a ModelConfig or a mapping of its
    fields, such as a frame's row); None when it holds."""
    get = model.get if hasattr(model, "get") else lambda key: getattr(model, key)

    def reason(code: str, detail: str) -> Reason:
        return Reason(code, f"{catalog.TRANSFORMER_LAW_REASONS[code]}; got {detail}")

    arch, norm, placement = get("arch"), get("norm"), get("placement")
    if arch not in catalog.ARCHITECTURES or not catalog.family(arch).tokens:
        return reason("tf_arch", f"arch {arch!r}")
    if norm in _POINTWISE:
        return reason("tf_pointwise", f"norm {norm!r}")
    if placement in ("peri", "mix", "lns"):
        return reason(f"tf_{placement}", f"placement {placement!r}")
    if theory == "collapse":
        if get("skip") or get("ffn"):
            return reason("tf_pure_attention", f"skip={bool(get('skip'))}, ffn={bool(get('ffn'))}")
        if get("causal"):
            return reason("tf_causal", "causal=True")
        return None
    if norm not in _NORMALIZED:
        return reason("tf_no_norm", f"norm {norm!r}")
    if theory == "band" and placement == "post":
        return reason("tf_post_band", "placement 'post'")
    if not (get("skip") and get("ffn")):
        return reason("tf_ablation", f"skip={bool(get('skip'))}, ffn={bool(get('ffn'))}")
    if float(get("residual_scale")) != 1.0:
        return reason("tf_residual_scale", f"residual_scale={get('residual_scale')!r}")
    return None


_BAND_ASSUMPTIONS = (
    "pre-LN (LayerNorm or RMSNorm) with skips and FFNs at Xavier initialization, token embeddings of unit "
    "variance: each block adds between d/2 and 3d/2 to E||x||^2 (l counts the blocks passed; the "
    "embedding is l = 0, where the band closes at 1). Derived for a ReLU FFN of hidden width d; normlab's "
    "blocks (attention and a GELU FFN of width 4d) add about 0.8 d per block and sit inside the band "
    "after the first block, whose attention adds less"
)
_SLOPE_ASSUMPTIONS = (
    "post-LN or pre-LN (LayerNorm or RMSNorm) with skips and FFNs at Xavier initialization: the last "
    "block's ||dL/dW_2||_F is O(d sqrt(ln d)) for post-LN, independent of the depth L, and "
    "O(d sqrt(ln d / L)) for pre-LN, whose final norm divides by the stream's growing scale"
)
_COLLAPSE_ASSUMPTIONS = (
    "pure self-attention (no skip, no FFN), bidirectional: the residual from rank one after l layers is "
    "bounded by s^((3^l - 1)/2) r_0^(3^l); the constant s (from the weights' norms and the heads) makes "
    "the bound loose, so only its doubly exponential shape is drawn, with s fitted to the first two "
    "blocks. Below ~1e-7 a float32 measurement is rounding"
)


def transformer_applies(theory: str, config: ModelConfig) -> tuple[bool, str]:
    """Whether transformer law ``theory`` ("band", "depth_slope" or "collapse") holds for ``config``, and
    why (not: a :class:`Reason` whose code names the sentence of ``catalog.TRANSFORMER_LAW_REASONS``)."""
    check_choice("theory", theory, TRANSFORMER_THEORIES)
    check_instance("config", config, ModelConfig)
    why = _tf_withheld(theory, config)
    if why is not None:
        return False, why
    return True, {"band": _BAND_ASSUMPTIONS, "depth_slope": _SLOPE_ASSUMPTIONS,
                  "collapse": _COLLAPSE_ASSUMPTIONS}[theory]


def _require(theory: str, config: ModelConfig) -> None:
    ok, why = transformer_applies(theory, config)
    if not ok:
        raise Withheld(why.code, str(why))


def variance_band(config: ModelConfig) -> pd.DataFrame:
    """The pre-LN band at every block output (kind ``block``, metric ``act_sq_norm``): two rows per block,
    ``bound`` "lower" (1 + l/2) and "upper" (1 + 3l/2), l = index + 1 the blocks passed.

    Raises:
        ValueError: the config is outside the band's assumptions (a :class:`Withheld`).
    """
    _require("band", config)
    names = _names(config, BLOCK)
    rows = [(name, k, BLOCK, BAND_METRIC, 1 + rate * (k + 1))
            for rate in (BAND_LOW, BAND_HIGH) for k, name in enumerate(names)]
    frame = _frame(rows, config, theory="band", law="linear band",
                   label="pre-LN band (1 + l/2) … (1 + 3l/2) (Xiong et al. 2020; Kedia et al. 2024)",
                   source=f"{SOURCES['xiong_2020']}; {SOURCES['kedia_2024']}", assumptions=_BAND_ASSUMPTIONS)
    frame.insert(5, "bound", ["lower"] * len(names) + ["upper"] * len(names))
    return frame


@dataclass(frozen=True)
class DepthSlope:
    """The law of the last block's ||dL/dW_2||_F against depth: its log-log ``slope``."""

    slope: float
    label: str
    assumptions: str = _SLOPE_ASSUMPTIONS
    source: str = SOURCES["xiong_2020"]


def depth_slope_law(model) -> DepthSlope:
    """The expected depth slope of ``model`` (a ModelConfig, or a mapping of its fields such as a sweep
    frame's row: the slope depends on neither the depth nor the width).

    Raises:
        ValueError: outside the theorem's assumptions (a :class:`Withheld` with the reason).
    """
    why = _tf_withheld("depth_slope", model)
    if why is not None:
        raise Withheld(why.code, str(why))
    placement = model.get("placement") if hasattr(model, "get") else model.placement
    slope = DEPTH_SLOPES[placement]
    shape = "L^0" if slope == 0 else "L^-1/2"
    return DepthSlope(slope, f"{placement}-LN: ||dL/dW_2|| ~ {shape} (Xiong et al. 2020, Thm 1)")


def depth_slope_theory(config: ModelConfig, depths, values) -> pd.DataFrame:
    """The law's line through measured points: the last block's ``weight_grad_norm`` of ``ffn.w2`` at each
    of ``depths``, value = c * L^slope with c fitted to ``values`` (the slope fixed, the intercept the mean
    of log(value) - slope * log(L), so the line passes through the points' geometric centre).

    Args:
        config: any config of the sweep (its depth is ignored).
        depths: the depths L measured (at least one).
        values: the measured norms at those depths, > 0.

    Returns:
        One row per depth with ``depth``, ``layer`` (that depth's last ``blocks.{L-1}.ffn.w2``), ``kind``,
        ``metric``, ``value`` and the law's metadata.
    """
    check_instance("config", config, ModelConfig)
    law = depth_slope_law(config)
    depths, values = check_items("depths", depths), check_items("values", values)
    if len(depths) != len(values) or not depths:
        raise ValueError(f"depths and values must be equally long and not empty; got {len(depths)} "
                         f"depths and {len(values)} values")
    for L in depths:
        check_int("depths", L)
    for v in values:
        check_real("values", v, 0.0, open_low=True)
    log_l = np.log(np.asarray(depths, dtype=np.float64))
    log_c = float(np.mean(np.log(np.asarray(values, dtype=np.float64)) - law.slope * log_l))
    rows = [(f"blocks.{L - 1}.ffn.w2", 0, CONV, W2_METRIC, math.exp(log_c + law.slope * math.log(L)))
            for L in depths]
    frame = _frame(rows, None, theory="depth_slope", law=f"slope {law.slope:g}", label=law.label,
                   source=law.source, assumptions=law.assumptions)
    frame.insert(0, "depth", [int(L) for L in depths])
    return frame


def collapse_theory(config: ModelConfig, first: float, second: float) -> pd.DataFrame:
    """Dong et al.'s doubly exponential collapse at every block output (metric ``token_residual``).

    The bound after l layers is s^((3^l - 1)/2) r_0^(3^l) (Dong et al. 2021, Thm 2.2, scaled as they state
    it); here r_0 is the first block's output and s = second / first^3, so the curve passes through the
    first two measured blocks: at ``blocks.{k}``, s^((3^k - 1)/2) first^(3^k). A curve that decays
    underflows to 0; one with sqrt(s) first >= 1 does not decay (the bound is then vacuous) and overflows
    to inf.

    Raises:
        ValueError: outside the bound's assumptions, or a value not > 0.
    """
    check_instance("config", config, ModelConfig)
    check_real("first", first, 0.0, open_low=True)
    check_real("second", second, 0.0, open_low=True)
    _require("collapse", config)
    log_s = math.log(second) - 3 * math.log(first)
    rate, offset = math.log(first) + log_s / 2, -log_s / 2  # log value = 3^k * rate + offset
    rows = []
    with np.errstate(over="ignore", invalid="ignore"):
        for k, name in enumerate(_names(config, BLOCK)):
            power = np.float64(3.0) ** k  # inf beyond k ~ 646
            log_value = offset if rate == 0 else power * rate + offset
            rows.append((name, k, BLOCK, COLLAPSE_METRIC, float(np.exp(np.float64(log_value)))))
    return _frame(rows, config, theory="collapse", law="doubly exponential",
                  label="s^((3^l-1)/2) r_0^(3^l), pure attention (Dong et al. 2021)",
                  source=SOURCES["dong_2021"], assumptions=_COLLAPSE_ASSUMPTIONS)


def depth_slope_table(frame: pd.DataFrame, keys=None) -> pd.DataFrame:
    """The measured depth slopes of a sweep frame (``summary.depth_slopes``, same ``keys``) with the law's
    ``expected`` slope and its ``source`` per curve; where the theorem does not apply, ``expected`` is NaN
    and ``source`` names the reason's code."""
    table = summary.depth_slopes(frame, keys)
    curve_keys = list(table.columns[: table.columns.get_loc("depths")])
    expected, source = [], []
    for _, row in table.iterrows():
        part = frame
        for k in curve_keys:  # the curve's own rows, whose config fields say which law applies
            part = part[part[k].astype(str) == str(row[k])]
        model = part.iloc[0] if len(part) else row
        try:
            law = depth_slope_law(model)
        except Withheld as err:
            expected.append(math.nan)
            source.append(f"withheld: {err.reason.code}")
            continue
        expected.append(law.slope)
        source.append("Xiong et al. 2020, Thm 1")
    return table.assign(expected=expected, source=source)


# --- One entry point for the UI ----------------------------------------------------------------------------

APPLIES = {"variance": variance_applies, "gradient": gradient_applies, "rank": rank_applies,
           **{name: functools.partial(transformer_applies, name) for name in TRANSFORMER_THEORIES}}


def applies(theory: str, config: ModelConfig) -> tuple[bool, str]:
    """Whether curve ``theory`` ("variance", "gradient", "rank", or a transformer law: "band",
    "depth_slope", "collapse") holds for ``config``, and why (not)."""
    check_choice("theory", theory, tuple(APPLIES))
    check_instance("config", config, ModelConfig)
    return APPLIES[theory](config)
