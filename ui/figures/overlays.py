"""Theory curves from ``normlab.science.theory`` reshaped for the figures, only where their assumptions hold.

Each overlay is a frame with columns series, x, y and source, matched to the measured series of the
same network and anchored on a measured point, so the dashed curve compares shapes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from normlab import ModelConfig
from normlab.core import catalog
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
# normlab.science.theory states them and says why one is withheld (a reason code whose sentence is a row of
# catalog.TRANSFORMER_LAW_REASONS); here they become dashed curves matched to the measured series.


@dataclass(frozen=True)
class TransformerOverlays:
    """The Placement page's theory: the pre-LN band and Dong's collapse as dashed curves (columns series, x,
    y, source), the depth-sweep slope each placement's law expects, and why a network has no curve."""

    variance: pd.DataFrame | None = None
    collapse: pd.DataFrame | None = None
    slopes: dict[str, tuple[float, str]] = field(default_factory=dict)
    withheld: list[str] = field(default_factory=list)


def _transformer_label(model: ModelConfig) -> str:
    return f"{_label(model)} · {model.placement}"


def withheld_line(model: ModelConfig, why) -> str:
    """A network's name and, in the session's language, why a transformer law is not drawn for it."""
    code = getattr(why, "code", None)
    words = catalog.TRANSFORMER_LAW_REASONS.get(code)
    return f"{_transformer_label(model)}: {_(words) if words else why}"


def _matched(stats: pd.DataFrame, model: ModelConfig) -> str | None:
    """The series of ``stats`` measured on ``model`` (same normalizer, placement and ablations)."""
    rows = stats
    for name in ("norm", "placement", "skip", "ffn", "causal"):
        if name in rows:
            rows = rows[rows[name] == getattr(model, name)]
    return None if rows.empty else str(rows["series"].iloc[0])


def band_overlay(stats: pd.DataFrame, models: Sequence[ModelConfig]) -> tuple[pd.DataFrame, list[str]]:
    """The pre-LN band (1 + l/2) … (1 + 3l/2) of E‖x_l‖²/D (act_sq_norm) for the networks it covers.

    Returns:
        (two dashed curves per network: lower and upper bound; one line per network without a band)
    """
    parts, skipped = [], []
    for model in models:
        ok, why = theory.transformer_applies("band", model)
        series = _matched(stats, model)
        if not ok:
            skipped.append(withheld_line(model, why))
            continue
        if series is None:
            continue
        band = theory.variance_band(model)
        for bound, part in band.groupby("bound", sort=False):
            words = (_("pre-LN band, lower (1 + l/2) (Xiong et al. 2020; Kedia et al. 2024)")
                     if bound == "lower" else
                     _("pre-LN band, upper (1 + 3l/2) (Xiong et al. 2020; Kedia et al. 2024)"))
            parts.append(pd.DataFrame({"series": series, "x": part["index"] + 1, "y": part["value"],
                                       "source": words}))
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=OVERLAY_COLUMNS)
    return frame, skipped


def collapse_overlay(stats: pd.DataFrame, models: Sequence[ModelConfig]) -> tuple[pd.DataFrame, list[str]]:
    """Dong et al.'s doubly exponential collapse through the first two measured blocks of pure attention."""
    parts, skipped = [], []
    rows = stats[(stats["metric"] == "token_residual") & (stats["kind"] == "block")]
    for model in models:
        ok, why = theory.transformer_applies("collapse", model)
        if not ok:
            if not model.skip:  # the skip variant is there to compare: no bound is meant for it
                skipped.append(withheld_line(model, why))
            continue
        series = _matched(rows, model)
        if series is None:
            continue
        first_two = rows[rows["series"] == series].sort_values("index")["mean"].to_numpy(float)[:2]
        if len(first_two) < 2 or not (np.isfinite(first_two).all() and (first_two > 0).all()):
            continue
        curve = theory.collapse_theory(model, float(first_two[0]), float(first_two[1]))
        curve = curve[curve["value"] > 0]  # an underflowed bound is below any log axis
        parts.append(pd.DataFrame({"series": series, "x": curve["index"] + 1, "y": curve["value"],
                                   "source": _("doubly exponential, through blocks 1 and 2 (Dong et al. "
                                               "2021)")}))
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=OVERLAY_COLUMNS)
    return frame, skipped


def expected_slopes(models: Sequence[ModelConfig]) -> tuple[dict[str, tuple[float, str]], list[str]]:
    """Placement -> (the depth slope Xiong et al.'s theorem expects, its source) for the networks it covers,
    and one line per network it does not."""
    slopes, skipped = {}, []
    for model in models:
        ok, why = theory.transformer_applies("depth_slope", model)
        if ok:
            slopes[model.placement] = (theory.depth_slope_law(model).slope, _("Xiong et al. 2020"))
        else:
            skipped.append(withheld_line(model, why))
    return slopes, skipped


def transformer_overlays(stats: pd.DataFrame, collapse: pd.DataFrame, models: Sequence[ModelConfig],
                         collapse_models: Sequence[ModelConfig] = ()) -> TransformerOverlays:
    """The laws of spec section 5 for the Placement page's networks, where their assumptions hold."""
    band, skipped = band_overlay(stats, models)
    slopes, not_sloped = expected_slopes(models)
    dong, not_dong = collapse_overlay(collapse, collapse_models)
    withheld = list(dict.fromkeys([*skipped, *not_sloped, *not_dong]))
    return TransformerOverlays(variance=band, collapse=dong, slopes=slopes, withheld=withheld)


def transformer_variance_overlay(stats: pd.DataFrame,
                                 models: Sequence[ModelConfig]) -> tuple[pd.DataFrame, list[str]]:
    """For the variance page: no ResNet law for a transformer. Its own law, the pre-LN band, is on E‖x‖²/D
    (act_sq_norm) and drawn on the Placement page; each network's line says why or where."""
    skipped = []
    for model in models:
        ok, why = theory.transformer_applies("band", model)
        skipped.append(f"{_transformer_label(model)}: " + _("its band (Xiong et al. 2020; Kedia et al. 2024) "
                                                             "is drawn on E‖x‖²/D on the Placement page")
                       if ok else withheld_line(model, why))
    return pd.DataFrame(columns=OVERLAY_COLUMNS), skipped
