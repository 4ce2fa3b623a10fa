"""Theory curves from ``normlab.theory`` reshaped for the figures, only where their assumptions hold.

Each overlay is a frame with columns series, x, y and source, matched to the measured series of the
same network and anchored on a measured point, so the dashed curve compares shapes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import pandas as pd

from normlab import ModelConfig, theory
from ui import measures
from ui.measures import depth_rows

OVERLAY_COLUMNS = ["series", "x", "y", "source"]
# Normalizers for which the linear law's slope (+0.34 per post-activation block) is exact: the batch
# statistics give every channel unit variance. Per-sample ones (LayerNorm, large groups, FRN) grow
# linearly too but with a smaller slope that no law here predicts, so no line is drawn for them.
EXACT_SLOPE_NORMS = ("batchnorm", "instancenorm")
PLAIN_WORDS = {  # one line each, for a student, where a theory curve is withheld
    "per_sample": "normalizes each sample, so its variance grows linearly but more slowly than the "
                  "+0.34 per block of the law, which is exact for BatchNorm only",
    "vgg": "the per-layer rate assumes one width and resolution throughout; VGG halves the resolution and "
           "doubles the width in stages, so the line would not match the layers",
}


def _exact_slope(model: ModelConfig) -> bool:
    return model.norm in EXACT_SLOPE_NORMS or (model.norm == "groupnorm" and model.group_size == 1)


def _label(model: ModelConfig) -> str:
    return measures.norm_label(model.norm, model.groups, model.group_size)


def plain(model: ModelConfig, why: str) -> str:
    """A theory's reason in plain words for ``model``: its name first, no code names or repr quotes."""
    why = re.sub(r";? ?got (norm|arch|depth) .*$", "", why).replace("_", " ")
    return f"{_label(model)}: {why}"


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
            skipped.append(f"{_label(model)}: {PLAIN_WORDS['per_sample']}")
            continue
        if not ok or series is None:
            skipped.append(plain(model, why))
            continue
        first = measured[(measured["series"] == series) & (measured["position"] == 1)]["mean"]
        start = float(first.iloc[0]) if len(first) and math.isfinite(first.iloc[0]) else None
        curve = theory.variance_theory(model, start_var=start)
        parts.append(pd.DataFrame({"series": series, "x": curve["index"] + 1, "y": curve["value"],
                                   "source": curve["label"].iloc[0]}))
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
            skipped.append(f"{_label(model)}: {PLAIN_WORDS['vgg']}")
            continue
        if not ok or series is None:
            skipped.append(plain(model, why))
            continue
        mine = grads[grads["series"] == series].sort_values("index")
        last_hidden = mine.iloc[-2]  # the classifier head is last; the curve starts one before it
        if not math.isfinite(last_hidden["mean"]):
            skipped.append(f"{_label(model)}: the measured gradient overflowed, so there is nothing "
                           "to anchor the line on")
            continue
        curve = theory.gradient_theory(model, last_grad_norm=float(last_hidden["mean"]))
        parts.append(pd.DataFrame({"series": series, "x": curve["index"] + 1, "y": curve["value"],
                                   "source": "×√(π/(π−1)) per layer (Yang et al. 2019)"}))
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=OVERLAY_COLUMNS)
    return frame, skipped
