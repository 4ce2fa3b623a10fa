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
from normlab.science import summary
from ui.figures import measures
from ui.figures.depth import bar_figure, depth_figure, rank_figure
from ui.figures.groups import tradeoff_figure
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
)
BY_KEY = {claim.key: claim for claim in CLAIMS}
