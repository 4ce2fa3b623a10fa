"""The paper's claims, each with a setup, a picture and a verdict computed from the measurement.

A claim's setup is a set of sidebar control values (so "load into the sidebar" is the same setup) plus
variants that the verdict compares (SkipInit on and off, gaussian and real images, group counts).
Verdicts are pure functions of the probe frame; nothing here calls Streamlit. Titles and sentences
are built at import time, so they are marked ``N_`` and translated where they are shown; verdict texts
are written when the verdict runs, in the language of the moment.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from normlab import ModelConfig, ProbeConfig
from normlab.science import summary, theory
from ui.figures import measures, overlays
from ui.figures.depth import bar_figure, depth_figure, rank_figure
from ui.figures.groups import tradeoff_figure
from ui.figures.placement import (
    attention_collapse_figure,
    block_rows,
    depth_slope_figure,
    depth_slopes,
    last_block_points,
    signed,
    stream_figure,
    token_cosine_figure,
)
from ui.state import controls as C
from ui.state.i18n import N_, _
from ui.state.selection import build_selection


@dataclass(frozen=True)
class Verdict:
    """Whether the claim holds in this measurement, and the numbers that say so."""

    holds: bool | None  # None: the measurement cannot decide (overflow, missing values)
    text: str

    def __post_init__(self) -> None:
        if self.holds is not None:  # numpy comparisons give numpy bools
            object.__setattr__(self, "holds", bool(self.holds))

    @property
    def label(self) -> str:
        return {True: _("holds"), False: _("does not hold here"), None: _("undecided")}[self.holds]


@dataclass(frozen=True)
class Claim:
    """One claim: a sentence, the sidebar values that set it up, variants, a picture and a verdict."""

    key: str
    title: str  # marked N_: shown through _()
    sentence: str  # marked N_: shown through _()
    values: dict  # sidebar control values (keys of controls.CONTROLS) loaded by the button
    page: str  # file stem in pages/ of the view that shows it best
    verdict: Callable[[pd.DataFrame, pd.DataFrame], Verdict]  # (raw frame, seed statistics) -> Verdict
    picture: Callable[[pd.DataFrame, pd.DataFrame], go.Figure]
    variants: tuple[dict, ...] = field(default=({},))  # control values changed per measured variant

    def control_values(self, variant: dict | None = None) -> dict:
        """Every control's value for this claim (defaults where the claim says nothing)."""
        own = ("lang", "lecture", "claim")  # the viewer's language, mode and place in the step-through stay
        sidebar = {c.key: c.default for c in C.CONTROLS if c.page is None and c.key not in own}
        return {**sidebar, **self.values, **(variant or {})}

    def runs(self) -> list[tuple[ModelConfig, ProbeConfig]]:
        """Every (network, probe) the verdict needs, in a stable order, without repeats."""
        out = []
        for variant in self.variants:
            selection = build_selection(self.control_values(variant))
            for model in selection.models:
                if (model, selection.probe) not in out:
                    out.append((model, selection.probe))
        return out


def _fmt(x: float) -> str:
    return _("overflow") if not math.isfinite(x) else f"{x:.3g}"


def _growths(stats: pd.DataFrame) -> dict[str, measures.Growth]:
    return measures.depth_growths(stats, "act_var")


# --- Verdicts -----------------------------------------------------------------------------------------------


def linear_growth(frame: pd.DataFrame, stats: pd.DataFrame) -> Verdict:
    """Every activation-normalized ResNet's block variance grows linearly."""
    growths = _growths(stats)
    if not growths or any(g.shape == "unknown" for g in growths.values()):
        return Verdict(None, _("no finite variance along depth to judge"))
    text = "; ".join(f"{s}: {measures.describe_growth(g)}" for s, g in growths.items())
    return Verdict(all(g.shape == "linear" for g in growths.values()), text)


def exponential_then_skipinit(frame: pd.DataFrame, stats: pd.DataFrame) -> Verdict:
    """Without SkipInit every series grows exponentially; with it none does."""
    growths = _growths(stats)
    skip = {s: bool(stats.loc[stats["series"] == s, "skipinit"].iloc[0]) for s in growths}
    without = {s: g for s, g in growths.items() if not skip[s]}
    with_skip = {s: g for s, g in growths.items() if skip[s]}
    if not without or not with_skip:
        return Verdict(None, _("needs runs with and without SkipInit"))
    exploding = all(g.shape == "exponential growth" for g in without.values())
    repaired = all(g.shape in ("flat", "linear") for g in with_skip.values())
    def listed(growths):
        return "; ".join(f"{s.split(' · ')[0]} {measures.describe_growth(g)}" for s, g in growths.items())

    text = _("without SkipInit: {without} — with SkipInit: {with_skip}").format(
        without=listed(without), with_skip=listed(with_skip))
    return Verdict(exploding and repaired, text)


def stage_reset(frame: pd.DataFrame, stats: pd.DataFrame) -> Verdict:
    """At every stage transition the block variance drops below the previous block's."""
    rows = measures.depth_rows(stats, "act_var")
    starts = measures.stage_starts(rows)
    if not starts:
        return Verdict(None, _("needs a ResNet with several stages"))
    drops, parts = [], []
    for series, part in rows.groupby("series", sort=False):
        values = part.set_index("position")["mean"]
        for x in starts:
            before, after = values.get(int(x - 0.5), math.nan), values.get(int(x + 0.5), math.nan)
            drops.append(after < before)
            parts.append(_("{series} {before} → {after} at block {block}").format(
                series=series, before=_fmt(before), after=_fmt(after), block=int(x + 0.5)))
    return Verdict(all(drops), _("variance at the stage transitions: {parts}").format(parts="; ".join(parts)))


def batchnorm_rank(frame: pd.DataFrame, stats: pd.DataFrame) -> Verdict:
    """BatchNorm's final features stay far less similar than those of the other networks."""
    cos = measures.final_value(stats, "cos_sim")
    bn = [s for s in cos.index if s.startswith("BatchNorm")]
    others = [s for s in cos.index if s not in bn]
    if not bn or not others or not np.isfinite(cos.to_numpy()).all():
        return Verdict(None, _("needs BatchNorm and another normalizer with finite similarities"))
    holds = all(cos[b] < 0.6 and cos[b] < cos[o] - 0.2 for b in bn for o in others)
    rank = measures.final_value(stats, "stable_rank")
    text = _("final cos_sim / stable rank: {values}").format(
        values="; ".join(f"{s} {_fmt(cos[s])} / {_fmt(rank[s])}" for s in cos.index))
    return Verdict(holds, text)


def _group_sizes(stats: pd.DataFrame, values: pd.Series) -> dict[str, int]:
    """Series label -> channels per group of a GroupNorm net set by group count."""
    sizes = {}
    for s in values.index:
        row = stats[stats["series"] == s].iloc[0]
        sizes[s] = int(row["width"]) // int(row["groups"])
    return sizes


def _by_group_size(stats: pd.DataFrame, values: pd.Series) -> pd.Series:
    sizes = _group_sizes(stats, values)
    return pd.Series({sizes[s]: values[s] for s in values.index}).sort_index()


def group_rank(frame: pd.DataFrame, stats: pd.DataFrame) -> Verdict:
    """The final stable rank falls as the group size grows; LayerNorm (one group) is lowest."""
    rank = _by_group_size(stats, measures.final_value(stats, "stable_rank"))
    if len(rank) < 3 or not np.isfinite(rank.to_numpy()).all():
        return Verdict(None, _("needs at least three finite group sizes"))
    rho = summary.spearman(rank.index, rank.to_numpy())
    holds = rho < -0.8 and rank.idxmin() == rank.index.max()
    text = _("final stable rank by group size: {values} (rank correlation {rho}; largest group = LayerNorm)"
             ).format(values=", ".join(f"{size}: {_fmt(v)}" for size, v in rank.items()), rho=f"{rho:+.2f}")
    return Verdict(holds, text)


def gradient_explosion(frame: pd.DataFrame, stats: pd.DataFrame) -> Verdict:
    """BatchNorm's gradient grows toward the input; within GroupNorm's family smaller groups grow more,
    InstanceNorm most."""
    growth = measures.gradient_growth(stats)
    if growth.isna().any():
        return Verdict(None, _("a gradient norm overflowed or vanished"))
    sizes = {}
    for s in growth.index:
        row = stats[stats["series"] == s].iloc[0]
        if row["norm"] in ("layernorm", "instancenorm", "groupnorm"):
            groups = {"layernorm": 1, "instancenorm": int(row["width"])}.get(row["norm"], row["groups"])
            sizes[s] = int(row["width"]) // int(groups)
    family = pd.Series({sizes[s]: growth[s] for s in sizes}).sort_index()
    bn = [growth[s] for s in growth.index if s.startswith("BatchNorm")]
    holds = (len(family) >= 2 and family.is_monotonic_decreasing and family.idxmax() == 1
             and all(b > 1.5 for b in bn))
    text = _("gradient growth, first layer over last hidden layer: {values}").format(
        values="; ".join(f"{s} ×{_fmt(g)}" for s, g in growth.items()))
    return Verdict(holds, text)


def tradeoff(frame: pd.DataFrame, stats: pd.DataFrame) -> Verdict:
    """Smaller groups: lower final similarity and larger gradient growth (both monotone in group size)."""
    points = measures.tradeoff_points(frame)
    if len(points) < 3 or points[["cos_sim", "grad_growth"]].isna().any().any():
        return Verdict(None, _("needs at least three finite group counts"))
    rho_cos = summary.spearman(points["group_size"], points["cos_sim"])
    rho_grad = summary.spearman(points["group_size"], points["grad_growth"])
    holds = rho_cos > 0.8 and rho_grad < -0.8
    ends = points.sort_values("group_size")
    small, large = ends.iloc[0], ends.iloc[-1]
    text = _("group size {small}: cos_sim {small_cos}, gradient growth ×{small_grad} · group size {large}: "
             "cos_sim {large_cos}, gradient growth ×{large_grad} (rank correlations with group size: "
             "similarity {rho_cos}, gradients {rho_grad})").format(
        small=int(small["group_size"]), small_cos=_fmt(small["cos_sim"]),
        small_grad=_fmt(small["grad_growth"]), large=int(large["group_size"]),
        large_cos=_fmt(large["cos_sim"]), large_grad=_fmt(large["grad_growth"]),
        rho_cos=f"{rho_cos:+.2f}", rho_grad=f"{rho_grad:+.2f}")
    return Verdict(holds, text)


def _growth_of(growth: pd.Series, rows: pd.DataFrame, norm: str) -> float | None:
    series = set(rows.loc[rows["norm"] == norm, "series"])
    return next((float(growth[s]) for s in growth.index if s in series), None)


def instance_vs_batch(frame: pd.DataFrame, stats: pd.DataFrame) -> Verdict:
    """InstanceNorm's gradient growth matches BatchNorm's on gaussian inputs and departs on images."""
    growth = measures.gradient_growth(stats)
    ratio = {}
    for inp in ("gaussian", "images"):
        rows = stats[stats["input"] == inp]
        bn = _growth_of(growth, rows, "batchnorm")
        inorm = _growth_of(growth, rows, "instancenorm")
        ratio[inp] = inorm / bn if bn and inorm and math.isfinite(bn) and math.isfinite(inorm) else math.nan
    if any(math.isnan(r) for r in ratio.values()):
        return Verdict(None, _("needs finite BatchNorm and InstanceNorm runs on gaussian and image inputs"))
    same = abs(math.log(ratio["gaussian"])) < math.log(1.3)  # within 30%
    differs = abs(math.log(ratio["images"])) > math.log(1.5)  # apart by half or more
    text = _("InstanceNorm / BatchNorm gradient growth: ×{gaussian} on gaussian inputs, ×{images} on real "
             "images").format(gaussian=f"{ratio['gaussian']:.2f}", images=f"{ratio['images']:.2f}")
    return Verdict(same and differs, text)


# --- Transformer verdicts (spec section 5) ---------------------------------------------------------------

# Tolerances of the depth-sweep slopes (Xiong et al. 2020): the seed-to-seed spread of the fitted slope
# at width 64, 32 tokens, batch 8, L = 6, 12, 24 is 0.08 for post and 0.01 for pre (three seeds; measured
# post -0.01, pre -0.62: the README's depth sweep).
POST_SLOPE_MAX = 0.25  # |slope| of post-LN's last-block gradient: "does not shrink with depth"
PRE_SLOPE = (-0.85, -0.25)  # pre-LN's slope: about -1/2, "falls as 1/sqrt(L)"
BAND = (theory.BAND_LOW, theory.BAND_HIGH)  # what each pre-LN block adds to E‖x‖²/D, at least and at most
IN_BAND = 0.9  # the share of blocks (from the second on) inside the band for the verdict to hold
COLLAPSE_DROP = 1e-2  # pure attention: token_residual within COLLAPSE_BLOCKS falls below this fraction
COLLAPSE_BLOCKS = 4  # "within a few blocks"
SKIP_FLOOR = 0.1  # with skips token_residual stays of order 1: above this at every block
ALIGNED = 0.5  # post-LN's final token cosine at depth 24 above this: the tokens have aligned
SCALED_MARGIN = 0.2  # 1/sqrt(L) residual scaling keeps the final token cosine this far below
DYT_SATURATION = 0.01  # at init DyT saturates (|alpha x| > 2) fewer than this fraction of its inputs
# "normalizes nothing": DyT's block variance spans more than this factor, LayerNorm's not (measured at depth
# 12: LayerNorm ×1.6, as its tokens align; DyT ×3e9, as each post-DyT block scales the stream by ~α)
VARIANCE_RANGE = 10.0


def xiong_gradient(frame: pd.DataFrame, stats: pd.DataFrame) -> Verdict:
    """Post-LN's last-block ‖∂L/∂W₂‖ has log-log slope near 0 against depth; pre-LN's near -1/2."""
    slopes = depth_slopes(frame)
    points = last_block_points(frame)
    placement = dict(zip(points["series"], points["placement"], strict=True))
    post = [v for s, v in slopes.items() if placement.get(s) == "post"]
    pre = [v for s, v in slopes.items() if placement.get(s) == "pre"]
    if not post or not pre or not all(map(math.isfinite, post + pre)):
        return Verdict(None, _("needs finite post-LN and pre-LN gradients at three depths"))
    holds = (all(abs(v) <= POST_SLOPE_MAX for v in post)
             and all(PRE_SLOPE[0] <= v <= PRE_SLOPE[1] for v in pre))
    text = _("log-log slope of the last block's ‖∂L/∂W₂‖ against depth: {values} (law: 0 for post, −0.5 "
             "for pre)").format(values="; ".join(f"{s} {signed(v)}" for s, v in slopes.items()))
    return Verdict(holds, text)


def prenorm_variance(frame: pd.DataFrame, stats: pd.DataFrame) -> Verdict:
    """Every pre-LN network's residual stream E‖x‖²/D grows linearly along its blocks, inside the band
    (1 + l/2) … (1 + 3l/2) from the second block on."""
    rows = block_rows(stats, "act_sq_norm")
    growths = {s: summary.depth_growth(p, "mean") for s, p in rows.groupby("series", sort=False)}
    if not growths or any(g.shape == "unknown" for g in growths.values()):
        return Verdict(None, _("no finite variance along depth to judge"))
    later = rows[rows["position"] >= 2]
    low, high = 1 + BAND[0] * later["position"], 1 + BAND[1] * later["position"]
    inside = float(((later["mean"] >= low) & (later["mean"] <= high)).mean())
    linear = all(g.shape == "linear" and g.per_block > 0 for g in growths.values())
    text = _("{growths}; blocks 2 on inside the band: {inside}").format(
        growths="; ".join(f"{s}: {measures.describe_growth(g)}" for s, g in growths.items()),
        inside=f"{inside:.0%}")
    return Verdict(linear and inside >= IN_BAND, text)


def dong_collapse(frame: pd.DataFrame, stats: pd.DataFrame) -> Verdict:
    """Without skips token_residual falls by orders of magnitude within a few blocks; with skips it stays
    of order 1."""
    rows = block_rows(stats, "token_residual")
    if rows.empty:
        return Verdict(None, _("no token_residual in this run"))
    parts = {bool(skip): part.sort_values("position") for skip, part in rows.groupby("skip")}
    if set(parts) != {False, True}:
        return Verdict(None, _("needs attention-only runs with and without skips"))
    pure, skipped = parts[False], parts[True]
    early = pure[pure["position"] <= COLLAPSE_BLOCKS]["mean"].to_numpy(float)
    first = float(pure["mean"].iloc[0])
    # an exact collapse underflows to 0 or the stream to NaN: both count as collapsed, never as "kept"
    fell = bool(len(early)) and (not np.isfinite(early).all() or np.nanmin(early) < COLLAPSE_DROP * first)
    kept = np.isfinite(skipped["mean"].to_numpy(float)).all() and skipped["mean"].min() > SKIP_FLOOR
    text = _("token residual without skips: {first} at block 1 → {low} by block {blocks}; with skips: "
             "{skip_low} at its lowest").format(
        first=_fmt(first), low=_fmt(float(np.nanmin(early)) if np.isfinite(early).any() else math.nan),
        blocks=COLLAPSE_BLOCKS, skip_low=_fmt(float(skipped["mean"].min())))
    return Verdict(fell and kept, text)


def noci_alignment(frame: pd.DataFrame, stats: pd.DataFrame) -> Verdict:
    """Post-LN's tokens align with depth at residual scale 1 and stay apart at 1/sqrt(L)."""
    rows = block_rows(stats, "token_cos_sim")
    final = {float(scale): part.sort_values("position")
             for scale, part in rows.groupby("residual_scale")}
    if len(final) != 2:
        return Verdict(None, _("needs post-LN runs at residual scale 1 and 1/√L"))
    plain, scaled = final[max(final)], final[min(final)]
    end, start, end_scaled = (float(plain["mean"].iloc[-1]), float(plain["mean"].iloc[0]),
                              float(scaled["mean"].iloc[-1]))
    if not all(map(math.isfinite, (end, start, end_scaled))):
        return Verdict(None, _("a token cosine overflowed"))
    holds = end > ALIGNED and end > start and end_scaled < end - SCALED_MARGIN
    text = _("final token cosine at depth {depth}: {plain} with branch scale 1 (block 1: {start}), {scaled} "
             "with 1/√L").format(depth=int(plain["position"].max()), plain=f"{end:.3f}", start=f"{start:.3f}",
                                 scaled=f"{end_scaled:.3f}")
    return Verdict(holds, text)


def dyt_gain(frame: pd.DataFrame, stats: pd.DataFrame) -> Verdict:
    """DyT saturates almost none of its inputs at init (so it is α·x) and, in post placement, leaves the
    residual stream's variance to drift where LayerNorm pins it."""
    sat = frame[(frame["metric"] == "saturated_frac") & (frame["norm"] == "dyt")]["value"].to_numpy(float)
    rows = block_rows(stats, "act_var")
    spans = {}
    for series, part in rows.groupby("series", sort=False):
        values = part["mean"].to_numpy(float)
        spans[series] = (str(part["norm"].iloc[0]),
                         float(values.max() / values.min()) if np.isfinite(values).all() and values.min() > 0
                         else math.inf)
    dyt = [span for norm, span in spans.values() if norm == "dyt"]
    others = [span for norm, span in spans.values() if norm != "dyt"]
    if not len(sat) or not dyt or not others:
        return Verdict(None, _("needs DyT and LayerNorm runs with the saturated fraction"))
    saturated = float(np.nanmax(sat))
    holds = (saturated < DYT_SATURATION and all(s > VARIANCE_RANGE for s in dyt)
             and all(s < VARIANCE_RANGE for s in others))
    text = _("DyT saturates at most {saturated} of its inputs; block variance largest/smallest: "
             "{spans}").format(saturated=f"{saturated:.2%}",
                               spans="; ".join(f"{s} ×{_fmt(v)}" for s, (_n, v) in spans.items()))
    return Verdict(holds, text)


def _models(key: str) -> list[ModelConfig]:
    """The networks claim ``key`` measures (its theory curves are matched to them)."""
    return list(dict.fromkeys(m for m, _p in BY_KEY[key].runs()))


# --- Pictures -----------------------------------------------------------------------------------------------


def _variance_picture(log: bool):
    return lambda frame, stats: depth_figure(stats, "act_var", log_y=log, annotate_growth=True,
                                                     uirevision="claim-variance")


def _growth_bars(frame: pd.DataFrame, stats: pd.DataFrame) -> go.Figure:
    return bar_figure(measures.gradient_growth(stats), stats,
                              _("gradient growth (first / last hidden)"), log_y=True)


def _rank_by_group_size(frame: pd.DataFrame, stats: pd.DataFrame) -> go.Figure:
    """The final stable rank per GroupNorm net, ordered by group size (channels per group), as the
    claim's title and verdict speak of it: the bars fall from small groups to LayerNorm's one group."""
    rank = measures.final_value(stats, "stable_rank")
    sizes = _group_sizes(stats, rank)
    order = sorted(rank.index, key=sizes.get)
    fig = bar_figure(rank[order], stats, _("final stable rank"))
    groups = {s: int(stats.loc[stats["series"] == s, "groups"].iloc[0]) for s in order}
    fig.update_xaxes(title=_("group size (channels per group)"), tickmode="array", tickvals=order,
                     ticktext=[_("{size} (G={groups})").format(size=sizes[s], groups=groups[s])
                               for s in order])
    return fig


# The transformer's setups (spec section 5): the Placement page's sizes (width 64, 32 random-byte tokens,
# batch 8), so each claim probes in a few seconds on a CPU.
_TRANSFORMER = {"net": "transformer", "width": 64, "heads": 4, "seq_len": 32, "tokens": "tokens", "batch": 8,
                "norms": ("layernorm",)}

CLAIMS: tuple[Claim, ...] = (
    Claim(
        "linear", N_("Linear variance growth"),
        N_("Activation-based normalizers keep a ResNet's variance growth linear in depth."),
        {"net": "resnet", "depth": 12, "width": 16, "norms": ("batchnorm", "layernorm", "groupnorm", "frn"),
         "groups": 4, "batch": 16, "image": 8, "seeds": 2},
        "variance", linear_growth, _variance_picture(False),
    ),
    Claim(
        "exponential", N_("Exponential without normalization; SkipInit repairs it"),
        N_("Unnormalized and weight-normalized (WN, SWS) ResNets grow their variance exponentially with "
           "depth; SkipInit (α = 0) keeps it flat. WN is shown with its activation inside the branch: with "
           "the paper's corrected ReLU after each addition it explodes even with SkipInit (set that "
           "placement in the sidebar to see it)."),
        {"net": "resnet", "depth": 12, "width": 16, "norms": ("none", "sws", "weightnorm"),
         "wn_act": "in_branch", "batch": 16, "image": 8, "seeds": 2},
        "variance", exponential_then_skipinit, _variance_picture(True),
        variants=({"skipinit": False}, {"skipinit": True}),
    ),
    Claim(
        "stage_reset", N_("Stage transitions reset the variance"),
        N_("A normalized projection shortcut resets the trunk variance at every stage transition."),
        {"net": "resnet", "depth": 4, "width": 8, "stages": 3, "norms": ("batchnorm", "groupnorm"),
         "groups": 2, "batch": 16, "image": 8, "seeds": 2},
        "variance", stage_reset, _variance_picture(False),
    ),
    Claim(
        "bn_rank", N_("BatchNorm avoids rank collapse"),
        N_("In a deep plain network BatchNorm keeps the representations of different inputs apart; without "
           "it (or with LayerNorm) they collapse toward one direction."),
        {"net": "mlp", "depth": 20, "width": 64, "norms": ("batchnorm", "layernorm", "none"), "batch": 16,
         "image": 8, "seeds": 2},
        "rank", batchnorm_rank, lambda frame, stats: rank_figure(stats, uirevision="claim-rank"),
    ),
    Claim(
        "group_rank", N_("GroupNorm: larger groups, lower rank"),
        N_("GroupNorm's rank shrinks as the groups grow: LayerNorm (one group of all channels) collapses "
           "most."),
        {"net": "cnn", "depth": 10, "width": 16, "norms": ("groupnorm",), "batch": 16, "image": 8,
         "seeds": 2},
        "rank", group_rank, _rank_by_group_size,
        variants=tuple({"groups": g} for g in (1, 2, 4, 8, 16)),
    ),
    Claim(
        "gradients", N_("Gradients explode with BatchNorm and small groups"),
        N_("At initialization gradients grow toward the input with BatchNorm and with small groups; "
           "InstanceNorm (groups of one channel) is worst."),
        {"net": "cnn", "depth": 12, "width": 16,
         "norms": ("batchnorm", "instancenorm", "groupnorm", "layernorm"), "groups": 4, "input": "images",
         "batch": 16, "image": 16, "seeds": 2},
        "gradients", gradient_explosion, _growth_bars,
    ),
    Claim(
        "tradeoff", N_("The group-size trade-off"),
        N_("Smaller groups give more informative features but larger early-layer gradients; larger groups "
           "give stable gradients but similar features: a speed–stability trade-off."),
        {"net": "cnn", "depth": 10, "width": 16, "norms": ("groupnorm",), "input": "images", "batch": 16,
         "image": 8, "seeds": 2},
        "groups", tradeoff,
        lambda frame, stats: tradeoff_figure(measures.tradeoff_points(frame),
                                                     uirevision="claim-tradeoff"),
        variants=tuple({"groups": g} for g in (1, 2, 4, 8, 16)),
    ),
    Claim(
        "instance_images", N_("InstanceNorm differs from BatchNorm only on real images"),
        N_("On i.i.d. Gaussian inputs InstanceNorm behaves almost exactly like BatchNorm; only on real "
           "images do instance-specific statistics set it apart."),
        {"net": "cnn", "depth": 12, "width": 16, "norms": ("batchnorm", "instancenorm"), "batch": 16,
         "image": 16, "seeds": 2},
        "gradients", instance_vs_batch, _growth_bars,
        variants=({"input": "gaussian"}, {"input": "images"}),
    ),
    Claim(
        "xiong_gradient", N_("Post-LN's last-layer gradient does not shrink with depth; Pre-LN's does"),
        N_("At Xavier initialization the last block's ‖∂L/∂W₂‖ is independent of the depth L for Post-LN "
           "and falls as 1/√L for Pre-LN (Xiong et al., ICML 2020, Theorem 1): on a depth sweep, log-log "
           "slopes 0 and −½. Post-LN's large output-side gradients are why it needs learning-rate warm-up."),
        {**_TRANSFORMER, "depth": 24, "placement": "pre", "seeds": 3},
        "placement", xiong_gradient,
        lambda frame, stats: depth_slope_figure(last_block_points(frame), depth_slopes(frame),
                                                expected=overlays.expected_slopes(_models("xiong_gradient"))[0],
                                                uirevision="claim-xiong"),
        variants=tuple({"placement": p, "depth": d} for p in ("post", "pre") for d in (6, 12, 24)),
    ),
    Claim(
        "prenorm_variance", N_("Pre-LN's residual stream grows linearly with depth"),
        N_("In a Pre-LN transformer every block adds its branch to an unnormalized stream, so its variance "
           "grows linearly with depth: (1 + l/2)·d ≤ E‖x_l‖² ≤ (1 + 3l/2)·d (Xiong et al. 2020; Kedia et "
           "al., ICML 2024), with LayerNorm and RMSNorm alike."),
        {**_TRANSFORMER, "depth": 24, "placement": "pre", "norms": ("layernorm", "rmsnorm"), "seeds": 2},
        "placement", prenorm_variance,
        lambda frame, stats: stream_figure(
            stats, log_y=False, theory=overlays.band_overlay(stats, _models("prenorm_variance"))[0],
            uirevision="claim-prenorm"),
    ),
    Claim(
        "dong_collapse", N_("Pure attention loses rank doubly exponentially; skips stop it"),
        N_("Self-attention alone (bidirectional, no FFN, no skip connection) drives a sequence's tokens to "
           "one shared row doubly exponentially with depth; the skip connection keeps them apart (Dong, "
           "Cordonnier & Loukas, ICML 2021)."),
        {**_TRANSFORMER, "depth": 8, "norms": ("none",), "ffn": False, "causal": False, "seeds": 2},
        "placement", dong_collapse,
        lambda frame, stats: attention_collapse_figure(
            stats, theory=overlays.collapse_overlay(stats, _models("dong_collapse"))[0],
            uirevision="claim-dong"),
        variants=({"skip": False}, {"skip": True}),
    ),
    Claim(
        "noci_alignment", N_("Post-LN tokens align with depth; 1/√L branch scaling prevents it"),
        N_("At initialization the tokens of a Post-LN transformer grow more and more alike with depth (rank "
           "collapse among the tokens), which makes the queries' and keys' gradients vanish; scaling each "
           "residual branch by 1/√L keeps them apart (Noci et al., NeurIPS 2022)."),
        {**_TRANSFORMER, "depth": 24, "placement": "post", "seeds": 2},
        "placement", noci_alignment,
        lambda frame, stats: token_cosine_figure(stats, uirevision="claim-noci"),
        variants=({"residual_scale": "1"}, {"residual_scale": "1/sqrt(L)"}),
    ),
    Claim(
        "dyt_gain", N_("DyT at initialization is a fixed gain that normalizes nothing"),
        N_("DyT = γ·tanh(αx) + β starts with α = 0.5: for the inputs a freshly initialized transformer "
           "gives it, tanh is in its linear range, so DyT is the fixed gain α·x. In Post-LN placement "
           "LayerNorm pins every block's output variance while DyT lets it drift (Zhu et al., CVPR 2025)."),
        {**_TRANSFORMER, "depth": 12, "placement": "post", "norms": ("layernorm", "dyt"), "seeds": 2},
        "placement", dyt_gain,
        lambda frame, stats: stream_figure(stats, metric="act_var", uirevision="claim-dyt"),
    ),
)
BY_KEY = {claim.key: claim for claim in CLAIMS}
