"""What the pages' texts say their default view shows, each phrase with the check on that view's numbers.

A guide, caption or claim that states a trend (grows, falls, flattens, stays below, ...) names something a
student will look for on the chart; if the chart's own numbers say otherwise, the page teaches the wrong
thing. So every such sentence is quoted here with a predicate on the data of the view it speaks of, or with
the claim whose verdict decides it (``ui.content.claims``). ``tests/test_texts.py`` computes each default
view (through the app's cache, as the page does), runs every check, and fails on any sentence of a page
that states a trend without a row here.

The views (what ``data`` is for a check):
    sidebar: the seed statistics (``ui.figures.measures.aggregate``) of the sidebar's default networks
    plane: series label -> ``ProbeDetail`` of the same networks (the rank page's pictures)
    groups: ``measures.tradeoff_points`` of the group-size page's default sweep
    bound: (over group size, over width) final-feature points of the rank page's bound sweeps, one
        ``ui.figures.scaling.final_points`` frame per rank measure: {measure: (by_size, by_width)}
    dynamics: BatchNorm's probes on the training-dynamics page (its default runs, every seed)

Pure: frames in, booleans out; no Streamlit, no torch.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from normlab.science import summary
from ui.figures import measures
from ui.figures.dynamics import gradient_growth_by_step
from ui.figures.scaling import FOLLOWS, shape_slope

VIEWS = ("sidebar", "plane", "groups", "bound", "dynamics")

# Words that state what a chart shows as it goes along depth, steps or group sizes (a sentence holding one
# must be quoted by a statement).
TREND = re.compile(r"\b(grows?|growing|grew|flatten(s|ed)?|falls?|falling|fell|rises?|rising|shrinks?|"
                   r"shrinking|fill(s|ing)?|drops?|collapses|collapsing|explodes?|blows? up|fades?|stays?|"
                   r"keeps?|below|above|lower|higher|increases?|decreases?|resets?)\b", re.IGNORECASE)


def sentences(text: str) -> list[str]:
    """A page text's sentences (a guide is a paragraph of several)."""
    return [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]


def states_a_trend(sentence: str) -> bool:
    return TREND.search(sentence) is not None


@dataclass(frozen=True)
class Statement:
    """A phrase of a page's text and what backs it.

    Args:
        page: the file stem in pages/ that shows the text, or "README" for the README's description of
            a page.
        quote: the phrase, as it stands in the English text (a sentence holding it is covered).
        view: one of ``VIEWS``, the default view whose numbers the check reads; None with ``claim``.
        check: ``check(data) -> bool`` on that view's data.
        claim: instead of a check, the key of the claim whose verdict decides the phrase (a setup other
            than the default view's).
    """

    page: str
    quote: str
    view: str | None = None
    check: Callable[[object], bool] | None = None
    claim: str | None = None
    test: str | None = None  # instead: "tests/FILE.py::test_name", a test of what a control does

    def __post_init__(self) -> None:
        backed = [self.view is not None and self.check is not None, self.claim is not None,
                  self.test is not None]
        assert sum(backed) == 1 and (self.view is None or self.view in VIEWS), (
            f"{self.quote!r}: a statement needs a view and a check, a claim or a test")


# --- Checks on the views' numbers -------------------------------------------------------------------------


def _by_depth(stats: pd.DataFrame, metric: str) -> pd.DataFrame:
    """position x series table of the seed means of ``metric`` along depth."""
    rows = measures.depth_rows(stats, metric)
    return rows.pivot_table(index="position", columns="series", values="mean", sort=True)


def _series(table: pd.DataFrame, norm_label: str) -> pd.Series:
    return table[[c for c in table.columns if c.startswith(norm_label)][0]]


def _unnormalized_similarity_fills_toward_one(stats) -> bool:
    cos = _series(_by_depth(stats, "cos_sim"), "No normalization")
    return cos.iloc[-1] > cos.iloc[0] + 0.1 and cos.iloc[-1] > 0.7


def _batchnorm_similarity_lower(stats) -> bool:
    table = _by_depth(stats, "cos_sim")
    return bool((_series(table, "BatchNorm") < _series(table, "No normalization")).all())


def _unnormalized_plane_shrinks(details) -> bool:
    d = next(v for k, v in details.items() if k.startswith("No normalization"))
    radius = np.sqrt((np.asarray(d.projection, float) ** 2).sum(-1).mean(-1))  # (P,) rms distance from 0
    return radius[-1] < 0.8 * radius[0]


def _stable_rank_falls_batchnorm_highest(stats) -> bool:
    table = _by_depth(stats, "stable_rank")
    falls = (table.iloc[-1] < table.iloc[0]).all()
    return bool(falls and table.iloc[-1].idxmax().startswith("BatchNorm"))


def _stable_rank_far_below_ceiling(stats) -> bool:
    """The fitted axis is needed: drawn to the ceiling (the batch), the ranks would fill a tenth of it."""
    table = _by_depth(stats, "stable_rank")
    batch = int(stats["batch_size"].iloc[0])
    return table.to_numpy().max() < 0.1 * batch


def _stable_rank_spans(stats, high: float, low: float) -> bool:
    """The stable rank's highest value rounds to ``high`` and its lowest to ``low`` (the README's numbers)."""
    values = _by_depth(stats, "stable_rank").to_numpy()
    return round(float(values.max()), 1) == high and round(float(values.min()), 1) == low


def _growth_shapes(stats) -> dict[str, str]:
    return {s: g.shape for s, g in measures.depth_growths(stats, "act_var").items()}


def _normalized_linear(stats) -> bool:
    shapes = _growth_shapes(stats)
    return all(shape == summary.LINEAR for s, shape in shapes.items() if not s.startswith("No normalization"))


def _unnormalized_exponential(stats) -> bool:
    shapes = _growth_shapes(stats)
    return shapes[next(s for s in shapes if s.startswith("No normalization"))] == summary.EXP_GROWTH


def _gradients_grow_toward_input(stats) -> bool:
    return bool((measures.gradient_growth(stats) > 1).all())


def _normalized_gradients_grow_less(stats) -> bool:
    """With a normalizer the gradient grows less toward the input than without: the contrast to look for."""
    growth = measures.gradient_growth(stats)
    plain = growth[[s for s in growth.index if s.startswith("No normalization")]].min()
    return bool((growth.drop([s for s in growth.index if s.startswith("No normalization")]) < plain).all())


def _similarity_below_one(stats) -> bool:
    return bool((_by_depth(stats, "cos_sim").to_numpy() < 1).all())


def _small_groups_informative_but_steep(points) -> bool:
    """From the smallest groups to the largest: similarity rises, gradient growth falls (monotone)."""
    ordered = points.sort_values("group_size")
    return (summary.spearman(ordered["group_size"], ordered["cos_sim"]) > 0.8
            and summary.spearman(ordered["group_size"], ordered["grad_growth"]) < -0.8)


def _numerical_rank_at_ceiling(bound) -> bool:
    by_size, by_width = bound["numerical_rank"]
    batch = bound["batch"]
    return bool((by_size["mean"] == batch - 1).all() and (by_width["mean"] == batch - 1).all())


def _stable_rank_small(bound) -> bool:
    values = pd.concat(bound["stable_rank"])["mean"]
    return bool(values.min() >= 1 and values.max() < 2.5)


def _effective_rank_falls_with_group_size(bound) -> bool:
    by_size, _by_width = bound["effective_rank"]
    return summary.spearman(by_size["group_size"], by_size["mean"]) < -0.8


def _width_leaves_the_shape(bound) -> bool:
    """The note's rule (``ui.figures.scaling``): against width the measured slope is under a quarter of
    the shape's +1/2; against group size it follows (at least a quarter of −1/2, same sign)."""
    by_size, by_width = bound["effective_rank"]
    return (not _follows(shape_slope(by_width, "width"), 0.5)
            and _follows(shape_slope(by_size, "group_size"), -0.5))


def _follows(slope: float, shape: float) -> bool:
    return slope / shape >= FOLLOWS


def _batchnorm_gradient_ratios(probes) -> pd.Series:
    """step -> BatchNorm's first over last hidden layer's grad_norm (the page's table of it)."""
    return gradient_growth_by_step(probes)["batchnorm"]


def _batchnorm_gradient_eases_then_returns(probes) -> bool:
    ratio = _batchnorm_gradient_ratios(probes)
    return bool(ratio[10] < ratio[0] and ratio[20] < ratio[0] and ratio[50] > ratio[0])


def _batchnorm_gradient_grows_toward_input(probes) -> bool:
    return bool((_batchnorm_gradient_ratios(probes) > 1).all())


PLAY = "tests/test_claims.py::test_depth_in_motion_adds_play_frames_to_the_variance_and_gradient_charts"

# --- The table ----------------------------------------------------------------------------------------------

STATEMENTS: tuple[Statement, ...] = (
    # Rank collapse
    Statement("rank", "the matrix of cosine similarities between the samples filling toward 1 (yellow) with "
              "depth without normalization", "sidebar", _unnormalized_similarity_fills_toward_one),
    Statement("rank", "while BatchNorm keeps it lower: different inputs stay different", "sidebar",
              _batchnorm_similarity_lower),
    Statement("rank", "Below, the batch on its two main directions shrinks toward a point as it collapses",
              "plane", _unnormalized_plane_shrinks),
    Statement("rank", "every network's stable rank falls with depth and BatchNorm's stays highest", "sidebar",
              _stable_rank_falls_batchnorm_highest),
    Statement("rank", "drawn up to the ceiling the fall would look flat", "sidebar",
              _stable_rank_far_below_ceiling),
    Statement("rank", "stays at N − 1 here for every group size", "bound", _numerical_rank_at_ceiling),
    Statement("rank", "the stable rank stays between 1 and 2.5", "bound", _stable_rank_small),
    Statement("rank", "it falls with the group size as the bound says", "bound",
              _effective_rank_falls_with_group_size),
    Statement("README", "a note says so where the measurement leaves it: against width it does", "bound",
              _width_leaves_the_shape),
    Statement("README", "against width it does, with slope +0.08", "bound",
              lambda bound: round(shape_slope(bound["effective_rank"][1], "width"), 2) == 0.08),
    Statement("README", "against group size the rank falls with slope −0.22", "bound",
              lambda bound: round(shape_slope(bound["effective_rank"][0], "group_size"), 2) == -0.22),
    Statement("README", "at the defaults it falls from 2.3 to 1.2 with depth", "sidebar",
              lambda stats: _stable_rank_spans(stats, 2.3, 1.2)),
    # Variance, gradients, overview: the sidebar's default networks
    Statement("variance", "with an activation-based normalizer a ResNet's variance grows *linearly* with "
              "depth", "sidebar", _normalized_linear),
    Statement("variance", "without one (or with weight-based ones) it grows *exponentially*", "sidebar",
              _unnormalized_exponential),
    Statement("variance", "SkipInit (α = 0) keeps it flat", claim="exponential"),
    Statement("variance", "A normalized projection shortcut resets it at each new stage",
              claim="stage_reset"),
    Statement("variance", "▶ Play grows the network one block at a time", test=PLAY),
    Statement("variance", "grow the curve one block at a time", test=PLAY),
    Statement("gradients", "gradient norms that grow from the classifier toward the input", "sidebar",
              _gradients_grow_toward_input),
    Statement("gradients", "With BatchNorm in a plain (non-residual) net they grow by about √(π/(π−1))",
              test="tests/test_paper_claims.py::"
                   "test_deep_wide_batchnorm_mlp_gradient_grows_per_layer_close_to_sqrt_pi_over_pi_minus_1"),
    Statement("overview", "variance that grows linearly (not exponentially) with depth", "sidebar",
              _normalized_linear),
    Statement("overview", "cosine similarity that stays below 1", "sidebar", _similarity_below_one),
    Statement("overview", "gradient norms that do not blow up toward the input", "sidebar",
              _normalized_gradients_grow_less),
    Statement("overview", "a ResNet's variance grows linearly with a normalizer, exponentially without",
              claim="linear"),
    Statement("overview", "without BatchNorm the samples' features collapse onto one direction",
              claim="bn_rank"),
    Statement("overview", "small groups and InstanceNorm make gradients explode toward the input",
              claim="gradients"),
    # Placement (transformers): the laws its guide names are the transformer claims' verdicts
    Statement("placement", "pre-LN's residual stream growing about linearly with depth",
              claim="prenorm_variance"),
    Statement("placement", "while post-LN's stays at the norm's scale",
              test="tests/test_transformer_laws.py::test_post_ln_keeps_the_stream_at_the_norms_scale"),
    Statement("placement", "the last block's gradient that does not shrink with depth for post-LN but "
              "falls as 1/√L for pre-LN", claim="xiong_gradient"),
    Statement("placement", "pure attention collapsing to rank one within a few blocks unless skips keep it",
              claim="dong_collapse"),
    Statement("placement", "Pure attention collapses; skips stop it", claim="dong_collapse"),
    # Group-size trade-off
    Statement("groups", "small groups (toward InstanceNorm) give informative features (low final "
              "similarity) but large early-layer gradients", "groups", _small_groups_informative_but_steep),
    Statement("groups", "large groups (toward LayerNorm) give stable gradients but similar features",
              "groups", _small_groups_informative_but_steep),
    # Training speed
    Statement("training", "the chart fills in as each run finishes",
              test="tests/test_study.py::test_every_finished_run_is_announced_so_the_page_draws_the_runs_so_far"),
    # Training dynamics
    Statement("dynamics", "gradient norms growing towards the input", "dynamics",
              _batchnorm_gradient_grows_toward_input),
    Statement("dynamics", "here BatchNorm's first-to-last ratio eases over the first 20 steps and is larger "
              "again by step 50, so at this scale the explosion does not fade", "dynamics",
              _batchnorm_gradient_eases_then_returns),
)


# Phrases whose trend word defines a quantity or an operation rather than saying what a view shows:
# (page, quote, why it needs no check).
DEFINITIONS: tuple[tuple[str, str, str], ...] = (
    ("dynamics", "(above 1: the gradient grows toward the input)", "what a value of the table means"),
    ("rank", "singular values of the centered features above tol·σ_max", "the numerical rank's definition"),
    ("rank", "flatten each sample, L2-normalize", "how the cosine matrix is computed"),
    ("rank", "so collapse shows as a fall toward 1", "what the measure does under collapse"),
    ("rank", "counts every direction above a tolerance", "the numerical rank's definition"),
    ("dynamics", "say BatchNorm's gradient explosion (gradient norms growing towards the input) is an init "
     "effect that fades within the first steps", "what Yang et al. say; the next sentence holds it against "
     "the view"),
    ("rank", "the token cosine below, block by block", "where on the page the measure is (below this note)"),
    ("dynamics", "whether its tokens stay apart", "what to look for in the token-cosine panel, not a claim "
     "about it"),
)


def unbacked_words(sentence: str) -> list[str]:
    """The trend words of ``sentence`` that no statement's (or definition's) quote in it covers: every
    such word must stand inside a quoted phrase, so one checked phrase cannot carry an unchecked one."""
    flat = " ".join(sentence.split())
    spans = [(m.start(), m.end()) for quote in [s.quote for s in STATEMENTS] + [d[1] for d in DEFINITIONS]
             for m in re.finditer(re.escape(quote), flat)]
    return [m.group() for m in TREND.finditer(flat)
            if not any(start <= m.start() and m.end() <= end for start, end in spans)]
