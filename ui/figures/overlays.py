"""Theory curves from ``normlab.science.theory`` reshaped for the figures, only where their assumptions hold.

Each overlay is a frame with columns series, x, y and source, matched to the measured series of the
same network and anchored on a measured point, so the dashed curve compares shapes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pandas as pd

from normlab import ModelConfig
from normlab.science import theory
from ui.figures import measures
from ui.figures.measures import depth_rows
from ui.state.i18n import N_, _

OVERLAY_COLUMNS = ["series", "x", "y", "source"]
# Normalizers for which the linear law's slope (+0.34 per post-activation block) is exact: the batch
# statistics give every channel unit variance. Per-sample ones (LayerNorm, large groups, FRN) grow
# linearly too but with a smaller slope that no law here predicts, so no line is drawn for them.
EXACT_SLOPE_NORMS = ("batchnorm", "instancenorm")
PLAIN_WORDS = {  # one line each, for a student, where a theory curve is withheld
    "per_sample": N_("normalizes each sample, so its variance grows linearly but more slowly than the "
                     "+0.34 per block of the law, which is exact for BatchNorm only"),
    "vgg": N_("the per-layer rate assumes one width and resolution throughout; VGG halves the resolution "
              "and doubles the width in stages, so the line would not match the layers"),
    "overflowed": N_("the measured gradient overflowed, so there is nothing to anchor the line on"),
}
# The theory's reasons for withholding a curve, by their code (normlab.science.theory.REASON_CODES), in
# plain words; a reason without a code here shows as the engine wrote it.
REASONS = {
    "not_residual": N_("the block-variance laws are for residual nets (ResNet)"),
    "wn_after_add": N_("with the corrected ReLU after each addition the variance compounds and explodes "
                       "faster than doubling, even with SkipInit; no closed form"),
    "trunk_preact": N_("no closed-form trunk law in pre-activation blocks (the branch variance depends on "
                       "EvoNorm's data-dependent denominator)"),
    "gradient_norm": N_("the gradient rate is derived for BatchNorm only"),
    "gradient_residual": N_("the gradient rate is for plain nets (MLP, CNN); residual connections change it"),
    "gradient_depth": N_("the rate needs at least 3 hidden layers to show"),
}


def _exact_slope(model: ModelConfig) -> bool:
    return model.norm in EXACT_SLOPE_NORMS or (model.norm == "groupnorm" and model.group_size == 1)


def _label(model: ModelConfig) -> str:
    return measures.norm_label(model.norm, model.groups, model.group_size)


def plain(model: ModelConfig, why: str) -> str:
    """A theory's reason in plain words for ``model``: its name first, then the reason's words in the
    session's language (by its code), else the engine's sentence."""
    words = REASONS.get(getattr(why, "code", None))
    return f"{_label(model)}: {_(words) if words else why}"


def _variance_source(law: theory.VarianceLaw) -> str:
    """The legend's name of a variance law: its shape and its paper."""
    cite = law.source.split(",")[0]  # "De & Smith 2020" or "Lubana, Dick & Tanaka 2021"
    if law.law == "linear":
        return _("linear, +{increment} per block ({cite})").format(increment=f"{law.increment:.3g}",
                                                                   cite=cite)
    if law.law == "doubling":
        return _("doubling per block ({cite})").format(cite=cite)
    return _("flat ({cite})").format(cite=cite)


def _series_of(stats: pd.DataFrame, model: ModelConfig) -> str | None:
    rows = stats[stats["norm"] == model.norm]
    return None if rows.empty else str(rows["series"].iloc[0])


def variance_overlay(stats: pd.DataFrame, models: Sequence[ModelConfig]) -> tuple[pd.DataFrame, list[str]]:
    """Block-variance laws (De & Smith 2020) for the ResNets they cover, from the measured first block.

    Returns:
        (overlay frame, one line per network saying why no curve is drawn for it)
    """
    parts, skipped = [], []
    measured = depth_rows(stats, "act_var")
    for model in models:
        ok, why = theory.variance_applies(model)
        series = _series_of(measured, model)
        if ok and theory.variance_law(model).law == "linear" and not _exact_slope(model):
            skipped.append(f"{_label(model)}: {_(PLAIN_WORDS['per_sample'])}")
            continue
        if not ok or series is None:
            skipped.append(plain(model, why))
            continue
        first = measured[(measured["series"] == series) & (measured["position"] == 1)]["mean"]
        start = float(first.iloc[0]) if len(first) and math.isfinite(first.iloc[0]) else None
        curve = theory.variance_theory(model, start_var=start)
        parts.append(pd.DataFrame({"series": series, "x": curve["index"] + 1, "y": curve["value"],
                                   "source": _variance_source(theory.variance_law(model))}))
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=OVERLAY_COLUMNS)
    return frame, skipped


def gradient_overlay(stats: pd.DataFrame, models: Sequence[ModelConfig]) -> tuple[pd.DataFrame, list[str]]:
    """BatchNorm's gradient rate (Yang et al. 2019) for the plain nets it covers, from the last hidden layer.

    Returns:
        (overlay frame with x = 1-based conv/linear position, networks left out with the reason)
    """
    parts, skipped = [], []
    grads = stats[(stats["metric"] == "grad_norm") & (stats["kind"] == "conv")]
    for model in models:
        ok, why = theory.gradient_applies(model)
        series = _series_of(grads, model)
        if ok and model.preset in ("vgg10", "vgg20"):
            skipped.append(f"{_label(model)}: {_(PLAIN_WORDS['vgg'])}")
            continue
        if not ok or series is None:
            skipped.append(plain(model, why))
            continue
        mine = grads[grads["series"] == series].sort_values("index")
        last_hidden = mine.iloc[-2]  # the classifier head is last; the curve starts one before it
        if not math.isfinite(last_hidden["mean"]):
            skipped.append(f"{_label(model)}: {_(PLAIN_WORDS['overflowed'])}")
            continue
        curve = theory.gradient_theory(model, last_grad_norm=float(last_hidden["mean"]))
        parts.append(pd.DataFrame({"series": series, "x": curve["index"] + 1, "y": curve["value"],
                                   "source": _("×√(π/(π−1)) per layer (Yang et al. 2019)")}))
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=OVERLAY_COLUMNS)
    return frame, skipped


# --- The transformer's laws (spec section 5) ----------------------------------------------------------

# Why a transformer's theory curve is withheld, in plain words (the laws assume LayerNorm or RMSNorm in
# post or pre placement).
TRANSFORMER_REASONS = {
    "pointwise": N_("DyT and Derf normalize nothing (at init a fixed gain α), so the laws derived for a "
                    "normalizing LayerNorm do not apply"),
    "placement": N_("the laws are proven for post-LN and pre-LN; peri-LN, Mix-LN and LayerNorm Scaling "
                    "change the residual stream they assume"),
    "none": N_("without a normalizer the pre-LN variance band and the gradient law do not apply"),
    "post_variance": N_("post-LN normalizes the stream itself after every sub-layer, so its variance stays "
                        "at the norm's scale: there is no growth law to draw"),
}


@dataclass(frozen=True)
class TransformerOverlays:
    """The Placement page's theory: dashed curves (columns series, x, y, source), the depth-sweep slopes
    each placement's law expects, the slope fit of a series' points, and why a network has none."""

    variance: pd.DataFrame | None = None
    collapse: pd.DataFrame | None = None
    slopes: dict[str, tuple[float, str]] | None = None
    slope: Callable[[pd.DataFrame], float] | None = None
    withheld: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.slope is None:
            from ui.figures.placement import fitted_slope

            object.__setattr__(self, "slope", fitted_slope)


def transformer_withheld(model: ModelConfig) -> str | None:
    """Why no law of spec section 5 is drawn for ``model`` (its plain words), or None where they apply."""
    if model.norm in ("dyt", "derf"):
        return _(TRANSFORMER_REASONS["pointwise"])
    if model.norm == "none":
        return _(TRANSFORMER_REASONS["none"])
    if model.placement not in ("post", "pre"):
        return _(TRANSFORMER_REASONS["placement"])
    return None


def transformer_overlays(stats: pd.DataFrame, collapse: pd.DataFrame,
                         models: Sequence[ModelConfig]) -> TransformerOverlays:
    """The laws of spec section 5 for the Placement page's networks, where their assumptions hold."""
    withheld = []
    for model in models:
        why = transformer_withheld(model)
        if why is not None:
            withheld.append(f"{_label(model)} · {model.placement}: {why}")
    return TransformerOverlays(withheld=withheld)


def transformer_variance_overlay(stats: pd.DataFrame,
                                 models: Sequence[ModelConfig]) -> tuple[pd.DataFrame, list[str]]:
    """The pre-LN variance band (Xiong et al. 2020; Kedia et al. 2024) for the transformers it covers.

    Returns:
        (overlay frame, one line per network saying why no curve is drawn for it)
    """
    skipped = []
    for model in models:
        why = transformer_withheld(model)
        if why is None and model.placement == "post":
            why = _(TRANSFORMER_REASONS["post_variance"])
        if why is not None:
            skipped.append(f"{_label(model)} · {model.placement}: {why}")
    return pd.DataFrame(columns=OVERLAY_COLUMNS), skipped
