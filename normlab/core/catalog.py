"""The one table of normalizers, architecture families and metrics: names, labels, traits, cost terms,
colours and help texts.

Plain data, no torch: config, theory, budget, the CLI and every page read it, and ``normlab.science.norms``
keys its factories by its names. Adding a normalizer is one ``NormInfo`` line here plus one factory
entry in ``normlab.science.norms.NORMALIZERS``; a name in one table but not the other is refused when
``normlab.science.norms`` is imported (and by a test). Knows nothing of modules, frames or the UI.

The name collections (``NORM_NAMES``, ``GROUPED_NORMS``, ...) follow :data:`NORM_INFO` through
:func:`register` and :func:`unregister`, so an entry registered at run time is seen everywhere at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from normlab.core import plans


def N_(message: str) -> str:
    """The gettext marker: Babel extracts its literal into the dashboard's catalog, and it returns the
    string unchanged (the engine and the CLI speak English; the dashboard translates at display)."""
    return message


FALLBACK_COLOR = "#999999"  # a normalizer without a colour of its own
SLOTS = ("norm", "activation", "weight", "none")
THEORY_FAMILIES = ("slot", "trunk", "unnormalized")


@dataclass(frozen=True)
class NormInfo:
    """What the rest of normlab knows of a normalizer without building it."""

    name: str
    label: str  # human-readable name for plots, menus and the CLI's list (N_-marked where it is words)
    # where it acts: "norm" (its own slot after the conv), "activation" (replaces the activation:
    # the EvoNorms), "weight" (inside the conv: WN, SWS) or "none"
    slot: str
    grouped: bool = False  # takes a group count (groups / group_size)
    batch_dependent: bool = False  # statistics mix samples (BatchNorm, EvoNorm-B0)
    # Theory family (normlab.science.theory): "slot" divides by activation statistics in the norm slot, so a
    # normalized projection shortcut restarts the trunk; "trunk" acts after the addition of a
    # post-activation block; "unnormalized" propagates like a He-initialised net.
    theory: str = "unnormalized"
    rank_bound: bool = False  # the rank bounds of spec section 4 speak of it (BN and the GroupNorm family)
    # Cost terms (normlab.ops.budget): activation-sized tensors autograd keeps per norm -> activation unit
    # (measured with torch.autograd.graph.saved_tensors_hooks), and copies of each weight alive in a probe.
    saved_per_unit: int = 1
    weight_copies: int = 1
    # Torch operations of one norm -> activation unit's forward pass (its backward launches about as
    # many again), counted from normlab/norms.py: a fused norm and a ReLU are one each; FRN, TLU and the
    # EvoNorms are written out as several element-wise operations and reductions. The default costs a
    # normalizer just registered like GroupNorm.
    ops_per_unit: int = 2
    # Operations on each conv/linear weight per forward pass: WN's norm, division and scale; SWS's
    # mean, variance and scale.
    weight_ops: int = 0
    color: str = FALLBACK_COLOR  # Tableau 10 (then Tableau 20's light tones), the same on every page
    # Acts per sample over the last dimension (a sample's features, a token's D), not over the channels of
    # an image: offered to the flat and token families, refused by the conv families (allowed_norms).
    per_feature: bool = False

    def __post_init__(self) -> None:
        assert self.slot in SLOTS, f"slot {self.slot!r} of {self.name!r} is not one of {SLOTS}"
        assert self.theory in THEORY_FAMILIES, f"theory {self.theory!r} of {self.name!r}: not a family"

    @property
    def family(self) -> str:
        """"activation" (divides by activation statistics), "parametric" (normalizes weights) or "none"."""
        families = {"norm": "activation", "activation": "activation", "weight": "parametric"}
        return families.get(self.slot, "none")


NORM_INFO: dict[str, NormInfo] = {
    n.name: n
    for n in (
        NormInfo("none", N_("No normalization"), "none", saved_per_unit=1, ops_per_unit=1, color="#4d4d4d"),
        NormInfo("batchnorm", "BatchNorm", "norm", batch_dependent=True, theory="slot", rank_bound=True,
                 saved_per_unit=2, color="#1f77b4"),
        NormInfo("layernorm", "LayerNorm", "norm", theory="slot", rank_bound=True, saved_per_unit=2,
                 color="#d62728"),
        NormInfo("instancenorm", "InstanceNorm", "norm", theory="slot", rank_bound=True, saved_per_unit=2,
                 ops_per_unit=3, color="#2ca02c"),
        NormInfo("groupnorm", "GroupNorm", "norm", grouped=True, theory="slot", rank_bound=True,
                 saved_per_unit=2, color="#9467bd"),
        NormInfo("frn", "Filter Response Norm + TLU", "norm", theory="slot", saved_per_unit=4,
                 ops_per_unit=7, color="#8c564b"),
        NormInfo("evonorm_b0", "EvoNorm-B0", "activation", batch_dependent=True, theory="trunk",
                 saved_per_unit=5, ops_per_unit=10, color="#17becf"),
        NormInfo("evonorm_s0", "EvoNorm-S0", "activation", grouped=True, theory="trunk", saved_per_unit=6,
                 ops_per_unit=9, color="#bcbd22"),
        NormInfo("weightnorm", "Weight Normalization", "weight", saved_per_unit=2, weight_copies=3,
                 ops_per_unit=3, weight_ops=4, color="#ff7f0e"),
        NormInfo("sws", "Scaled Weight Standardization", "weight", saved_per_unit=1, weight_copies=3,
                 ops_per_unit=1, weight_ops=7, color="#e377c2"),
        # Per sample over the features (the last dimension); for a transformer, per token over D.
        NormInfo("rmsnorm", "RMSNorm", "norm", theory="slot", saved_per_unit=2, ops_per_unit=2,
                 per_feature=True, color="#aec7e8"),
        NormInfo("dyt", N_("Dynamic Tanh (DyT)"), "norm", saved_per_unit=2, ops_per_unit=4,
                 per_feature=True, color="#ffbb78"),
        NormInfo("derf", N_("Dynamic erf (Derf)"), "norm", saved_per_unit=2, ops_per_unit=5,
                 per_feature=True, color="#98df8a"),
    )
}


def normalizer(name: str) -> NormInfo:
    """The catalog entry of ``name``; an unknown name is a ValueError listing the known ones."""
    if not isinstance(name, str) or name not in NORM_INFO:
        raise ValueError(f"Unknown normalizer {name!r}; expected one of {sorted(NORM_INFO)}")
    return NORM_INFO[name]


def label(name: str) -> str:
    """The display name of a normalizer; an unknown name shows as itself."""
    return NORM_INFO[name].label if name in NORM_INFO else str(name)


def color(name: str) -> str:
    return NORM_INFO[name].color if name in NORM_INFO else FALLBACK_COLOR


# Name collections everything else reads. They are plain lists and sets (Streamlit, pandas and argparse
# take them as they are), refreshed in place by register/unregister, so a normalizer registered at run
# time (a test's toy normalizer) is seen at once by every module that imported them.
NORM_NAMES: list[str] = []
GROUPED_NORMS: set[str] = set()
BATCH_DEPENDENT_NORMS: set[str] = set()
SLOT_NORMS: set[str] = set()
TRUNK_NORMS: set[str] = set()
UNNORMALIZED: set[str] = set()
RANK_NORMS: set[str] = set()
_SETS: tuple[tuple[set[str], Callable[[NormInfo], bool]], ...] = (
    (GROUPED_NORMS, lambda n: n.grouped),
    (BATCH_DEPENDENT_NORMS, lambda n: n.batch_dependent),
    (SLOT_NORMS, lambda n: n.theory == "slot"),
    (TRUNK_NORMS, lambda n: n.theory == "trunk"),
    (UNNORMALIZED, lambda n: n.theory == "unnormalized"),
    (RANK_NORMS, lambda n: n.rank_bound),
)


def _refresh() -> None:
    NORM_NAMES[:] = list(NORM_INFO)
    for names, keep in _SETS:
        names.clear()
        names.update(name for name, info in NORM_INFO.items() if keep(info))


def register(info: NormInfo) -> None:
    """Add a normalizer to the table (its factories go in ``normlab.science.norms.NORMALIZERS``)."""
    if info.name in NORM_INFO:
        raise ValueError(f"normalizer {info.name!r} is already in the catalog")
    NORM_INFO[info.name] = info
    _refresh()


def unregister(name: str) -> None:
    """Remove a normalizer registered with :func:`register`."""
    NORM_INFO.pop(name)
    _refresh()


_refresh()


# --- Architecture families ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ArchInfo:
    """What the rest of normlab knows of an architecture family without building it.

    Adding a family is its builder (a module of normlab.science) plus one ``ArchInfo`` row here (and
    the translation of its labels): the configs, the cost model, the theory, the CLI and every page
    read the rest from this row.
    """

    name: str
    label: str  # its name on charts and in the CLI's list (N_-marked)
    menu: str  # the sidebar's entry for a network of this family of one's own size (N_-marked)
    # "package.module:function" of the science layer, or the function itself:
    # build(config, normalizer, input_shape) -> normlab.science.models.Net
    builder: str | Callable
    walk: Callable  # walk(visitor, config, image_size): its layers as a probe meets them (core.plans)
    default_depth: int  # when neither the user nor a preset gives one: small enough to redraw live
    default_width: int
    depth_help: str  # what depth counts, for the CLI's help
    width_help: str
    residual: bool = False  # residual blocks: stages, preact, skipinit, the residual-net theory
    spatial: bool = True  # convolutions over images (else flat features): the widths are channels
    norms: tuple[str, ...] | None = None  # the normalizers it accepts; None: see allowed_norms
    symbol: str = "circle"  # its marker on the training-speed charts
    default_norm: str = "batchnorm"  # the normalizer of a config that names none
    # Reads token sequences (N, T) of bytes, not images: the token inputs, the transformer's fields
    # (placement, heads, seq_len, ...) and a vocabulary-sized head.
    tokens: bool = False
    trainable: bool = True  # ``normlab train`` and the studies train it


ARCHITECTURES: dict[str, ArchInfo] = {
    "mlp": ArchInfo("mlp", "MLP", N_("MLP (choose the size)"), "normlab.science.models:mlp", plans.walk_mlp,
                    default_depth=20, default_width=256, depth_help="hidden layers",
                    width_help="hidden units", spatial=False, symbol="square"),
    "cnn": ArchInfo("cnn", N_("plain CNN"), N_("Plain CNN (choose the size)"), "normlab.science.models:cnn",
                    plans.walk_cnn, default_depth=10, default_width=32, depth_help="conv layers",
                    width_help="channels", symbol="circle"),
    "resnet": ArchInfo("resnet", "ResNet", N_("ResNet (choose the size)"), "normlab.science.models:resnet",
                       plans.walk_resnet, default_depth=8, default_width=16,
                       depth_help="blocks per stage",
                       width_help="first-stage width, doubling per stage",
                       residual=True, symbol="diamond"),
    # Its skips are its own `skip` option: `residual` here means the ResNet's stages, preact and skipinit.
    "transformer": ArchInfo("transformer", "Transformer", N_("Transformer (choose the size)"),
                            "normlab.science.transformer:transformer", plans.walk_transformer,
                            default_depth=6, default_width=64, depth_help="blocks",
                            width_help="model width D", spatial=False, symbol="triangle-up",
                            norms=("layernorm", "rmsnorm", "dyt", "derf", "none"),
                            default_norm="layernorm", tokens=True, trainable=False),
}
ARCH_NAMES: list[str] = list(ARCHITECTURES)  # refreshed in place by register_family / unregister_family


def family(name: str) -> ArchInfo:
    """The table row of architecture ``name``; an unknown name is a ValueError listing the known ones."""
    if not isinstance(name, str) or name not in ARCHITECTURES:
        raise ValueError(f"Unknown architecture (arch) {name!r}; expected one of "
                         f"{', '.join(map(repr, ARCHITECTURES))}")
    return ARCHITECTURES[name]


def allowed_norms(arch: str) -> tuple[str, ...]:
    """The normalizers family ``arch`` builds with: its row's ``norms`` (in its order), else every
    normalizer of the catalog but, for a conv family (``spatial``), those that act per sample over the
    last dimension."""
    info = family(arch)
    if info.norms is not None:
        return tuple(n for n in info.norms if n in NORM_INFO)
    return tuple(n for n in NORM_NAMES if not (info.spatial and NORM_INFO[n].per_feature))


def accepts(arch: str, norm: str) -> bool:
    """Whether family ``arch`` builds with normalizer ``norm``."""
    return norm in allowed_norms(arch)


def register_family(info: ArchInfo) -> None:
    """Add an architecture family to the table (its builder is named in the row)."""
    if info.name in ARCHITECTURES:
        raise ValueError(f"architecture {info.name!r} is already in the catalog")
    ARCHITECTURES[info.name] = info
    ARCH_NAMES[:] = list(ARCHITECTURES)


def unregister_family(name: str) -> None:
    """Remove a family registered with :func:`register_family`."""
    ARCHITECTURES.pop(name)
    ARCH_NAMES[:] = list(ARCHITECTURES)


def final_features(model_config, image_size: int) -> int:
    """Features per sample of the final representation (before pooling): no rank can exceed it."""
    last = plans.LastPoint()
    family(model_config.arch).walk(last, model_config, image_size)
    return last.features


# --- Metrics -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MetricInfo:
    """A metric of spec section 3: where it is read, how to title it, what it means, how to plot it."""

    name: str
    kinds: tuple[str, ...]  # probe-point kinds with a row of this metric ("spectrum": the final features)
    title: str  # axis title (English; marked for the dashboard's catalog, translated where shown)
    help: str  # the definition, one line (likewise)
    unit: str = ""  # "" for dimensionless quantities
    log_y: bool = False  # a log axis reads it best (it spans orders of magnitude)


_ACT_POINTS = ("act", "block", "sublayer")  # "sublayer": a transformer's attention or FFN output
_TOKEN_POINTS = ("act", "block", "sublayer")  # a transformer's token sequences (N, T, D) only
METRIC_INFO: dict[str, MetricInfo] = {
    m.name: m
    for m in (
        MetricInfo("act_var", _ACT_POINTS, N_("activation variance (act_var)"),
                   N_("per-channel variance over (N,H,W), mean over channels"), log_y=True),
        MetricInfo("act_sq_mean", _ACT_POINTS, N_("squared channel mean (act_sq_mean)"),
                   N_("per-channel mean over (N,H,W), squared, mean over channels"), log_y=True),
        MetricInfo("res_var", ("res",), N_("residual-branch variance (res_var)"),
                   N_("act_var of the residual branch before the addition"), log_y=True),
        MetricInfo("cos_sim", _ACT_POINTS, N_("cosine similarity (cos_sim)"),
                   N_("mean off-diagonal cosine similarity between samples (uncentered)")),
        MetricInfo("cos_sim_centered", _ACT_POINTS, N_("centered cosine similarity"),
                   N_("cos_sim after subtracting the batch-mean vector")),
        MetricInfo("stable_rank", _ACT_POINTS, N_("stable rank"),
                   N_("tr(M) / ||M||_2 of the normalized Gram matrix, in [1, N]")),
        MetricInfo("effective_rank", _ACT_POINTS, N_("effective rank"),
                   N_("exp(entropy) of the centered covariance spectrum")),
        MetricInfo("numerical_rank", _ACT_POINTS, N_("numerical rank"),
                   N_("singular values of the centered features above rank_tol * sigma_max")),
        MetricInfo("grad_norm", ("conv",), N_("gradient norm ‖∂L/∂z‖"),
                   N_("Frobenius norm over the batch of dL/dz at each conv/linear output z"), log_y=True),
        MetricInfo("gram_eigenvalue", ("spectrum",), N_("Gram eigenvalue"),
                   N_("eigen-spectrum of the final features' Gram matrix, largest first"), log_y=True),
        # A transformer's own (spec section 5). On its token sequences the metrics above read: act_var and
        # act_sq_mean per feature over (N, T); cos_sim and the ranks on the N sequence vectors (each the
        # mean of its T tokens).
        MetricInfo("act_sq_norm", _TOKEN_POINTS, N_("mean square per feature E‖x‖²/D (act_sq_norm)"),
                   N_("E[x²] over (N,T), mean over the D features: a token's squared norm over D"),
                   log_y=True),
        MetricInfo("token_cos_sim", _TOKEN_POINTS, N_("token cosine similarity (token_cos_sim)"),
                   N_("mean off-diagonal cosine between the T tokens of a sequence, mean over sequences")),
        MetricInfo("token_residual", _TOKEN_POINTS, N_("distance from rank one (token_residual)"),
                   N_("‖X − 1·x̄ᵀ‖_F / ‖X‖_F of each sequence X (T×D), mean over sequences"), log_y=True),
        MetricInfo("attn_entropy", ("attn",), N_("attention entropy (attn_entropy)"),
                   N_("entropy of each attention row (nats), mean over rows, heads and sequences")),
        MetricInfo("weight_grad_norm", ("conv",), N_("weight gradient norm ‖∂L/∂W‖"),
                   N_("Frobenius norm of dL/dW of W_Q, W_K, W_V, W_O, W_1, W_2 of each block"), log_y=True),
        MetricInfo("saturated_frac", ("norm",), N_("saturated fraction (saturated_frac)"),
                   N_("fraction of a DyT / Derf input whose argument |αx (+s)| exceeds 2")),
    )
}
METRICS = tuple(METRIC_INFO)
SUMMARY_STATS = ("mean", "min", "max", "n")  # the columns of summarize: over seeds, per row key
# The metrics of an activation tensor's Gram statistics (normlab.science.metrics.metrics_from_stats), in
# frame order: every activation probe point has them.
ACTIVATION_METRICS = ("act_var", "act_sq_mean", "cos_sim", "cos_sim_centered", "stable_rank",
                      "effective_rank", "numerical_rank")
# What a transformer's token points add, in frame order (normlab.science.probes).
TOKEN_METRICS = ("act_sq_norm", "token_cos_sim", "token_residual")


def metric_title(name: str) -> str:
    return METRIC_INFO[name].title if name in METRIC_INFO else str(name)


# Why a transformer law (normlab.science.theory, spec section 5) is not drawn for a network, by reason
# code: one sentence each, the engine's words and the dashboard's (translated there by this text).
TRANSFORMER_LAW_REASONS: dict[str, str] = {
    "tf_arch": N_("the transformer laws are for the transformer family"),
    "tf_pointwise": N_("DyT and Derf normalize nothing: at initialization they are a fixed gain α, so "
                       "the laws, derived for a norm that divides each token by its own scale, do not "
                       "apply"),
    "tf_no_norm": N_("the law is derived for LayerNorm (RMSNorm divides by the same scale); without a "
                     "normalizer nothing holds the branch inputs at unit scale"),
    "tf_peri": N_("Peri-LN normalizes each branch's output as well, which bounds what a block adds; the "
                  "laws are for Post-LN and Pre-LN, and by how much Peri-LN tames the growth is what "
                  "normlab measures"),
    "tf_mix": N_("Mix-LN is Post-LN in its first quarter of blocks and Pre-LN after, so neither law "
                 "holds throughout"),
    "tf_lns": N_("LayerNorm Scaling divides each branch input by √ℓ, which slows the growth by an amount "
                 "no law here states; normlab measures it"),
    "tf_post_band": N_("in Post-LN every sub-layer ends in the norm, so the stream stays at the norm's "
                       "scale (E‖x‖²/D = 1); the growing band is Pre-LN's"),
    "tf_ablation": N_("the law is derived for full blocks: attention and FFN, each with its skip "
                      "connection"),
    "tf_residual_scale": N_("the law is derived for unscaled branches (residual scale 1)"),
    "tf_pure_attention": N_("Dong et al.'s bound is for pure attention: no skip connection and no FFN; "
                            "skip connections stop the collapse"),
    "tf_causal": N_("Dong et al.'s bound is for bidirectional attention; with a causal mask the first "
                    "token sees only itself, so the collapse is slower than doubly exponential"),
}
