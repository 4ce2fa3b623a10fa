"""Figure builders and the frame readings behind them, on synthetic frames that follow the probe contract."""

from __future__ import annotations

import dataclasses
import functools
import math
import re

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from helpers import contract_frame
from test_i18n import english_words, figure_texts

from normlab import NORM_NAMES, ModelConfig, ProbeConfig
from normlab.science.probes import ProbeDetail
from ui.figures import measures
from ui.figures.depth import (
    MAX_FRAMES,
    bar_figure,
    depth_figure,
    gradient_figure,
    grow_with_depth,
    overview_figure,
    rank_figure,
    spectrum_figure,
)
from ui.figures.dynamics import dynamics_curves_figure, dynamics_figure
from ui.figures.groups import tradeoff_figure
from ui.figures.samples import collapse_figure, distribution_figure
from ui.figures.scaling import final_points, rank_scaling_figure, shape_scale
from ui.figures.style import FONT_FAMILY, NORM_COLORS, NOTES_META, OVERFLOW_NOTE, figure_text, lecture_style
from ui.figures.training import curves_figure, similarity_speed_figure
from ui.state import i18n

HANGUL = re.compile(r"[\uac00-\ud7a3]")
CITED = {"Yang"}  # authors the figures cite by name (Yang et al. 2019), kept as written in both languages


def compare(*norms: str, **kwargs) -> pd.DataFrame:
    return pd.concat([contract_frame(ModelConfig(arch="resnet", norm=n, depth=5, width=8), **kwargs)
                      for n in norms], ignore_index=True)


def mean_traces(fig: go.Figure) -> list:
    return [t for t in fig.data if t.mode == "lines+markers" and t.showlegend is not False]


# --- measures ----------------------------------------------------------------------------------------------


def test_aggregate_gives_mean_min_max_over_seeds():
    stats = measures.aggregate(contract_frame())
    row = stats[(stats["metric"] == "act_var") & (stats["index"] == 2)].iloc[0]
    base = 0.7 + 0.35 * 2
    assert row["n"] == 2
    assert row["min"] == pytest.approx(base) and row["max"] == pytest.approx(base * 1.04)
    assert row["mean"] == pytest.approx(base * 1.02)


def test_aggregate_blanks_overflowed_points_and_flags_them():
    stats = measures.aggregate(contract_frame(bad={("act_var", 3)}))
    row = stats[(stats["metric"] == "act_var") & (stats["index"] == 2)].iloc[0]
    assert row["overflow"] and math.isnan(row["mean"])
    assert not stats[(stats["metric"] == "act_var") & (stats["index"] == 1)]["overflow"].iloc[0]


def test_series_labels_name_normalizer_groups_and_fields_that_vary_within_one():
    gn = contract_frame(ModelConfig(arch="resnet", norm="groupnorm", depth=3, width=8, groups=2))
    assert set(measures.series_labels(gn)) == {"GroupNorm (G=2)"}
    both = pd.concat([contract_frame(probe=ProbeConfig(input=i, batch_size=8, seeds=1)) for i in
                      ("gaussian", "images")], ignore_index=True)
    assert set(measures.series_labels(both)) == {"BatchNorm · gaussian", "BatchNorm · images"}
    # wn_act differs between weightnorm and the rest by construction: not worth naming
    wn = ModelConfig(arch="resnet", norm="weightnorm", depth=3, width=8, wn_act="in_branch")
    mixed = pd.concat([contract_frame(wn), contract_frame()], ignore_index=True)
    assert set(measures.series_labels(mixed)) == {"Weight Normalization", "BatchNorm"}


@pytest.mark.parametrize(("values", "shape"), [
    ([1 + 0.34 * k for k in range(12)], "linear"),
    ([0.7 * 2.0 ** k for k in range(12)], "exponential growth"),
    ([0.57] * 12, "flat"),
    ([5 - 0.3 * k for k in range(12)], "linear"),  # a linear decline is linear, with a negative slope
    ([10.0 ** (-0.5 * k) for k in range(12)], "exponential decay"),
    ([1.0, math.inf, 3.0], "unknown"),
    ([1.0, 2.0], "unknown"),
])
def test_growth_tells_linear_from_exponential_and_flat(values, shape):
    assert measures.growth(values).shape == shape


def test_growth_reports_the_fitted_step_and_ratio():
    assert measures.growth([1 + 0.34 * k for k in range(10)]).per_block == pytest.approx(0.34)
    assert measures.growth([3.0 ** k for k in range(10)]).ratio == pytest.approx(3.0)


def test_gradient_rates_are_consecutive_ratios_and_skip_exact_zeros():
    stats = measures.aggregate(contract_frame(grad=lambda k: 0.0 if k == 3 else 2.0 ** k,
                                              probe=ProbeConfig(batch_size=8, seeds=1)))
    rates = measures.gradient_rates(stats)
    assert np.allclose(rates["rate"], 2.0)
    grads = stats[stats["metric"] == "grad_norm"].sort_values("index")
    zero_at = int(grads.loc[grads["mean"] == 0, "index"].iloc[0])
    assert zero_at not in set(rates["index"]) and zero_at - 1 not in set(rates["index"])


def test_gradient_growth_is_first_layer_over_last_hidden_layer():
    one_seed = ProbeConfig(batch_size=8, seeds=1)
    stats = measures.aggregate(contract_frame(grad=lambda k: 1.5 ** k, probe=one_seed))
    n_convs = 1 + 2 * 5 + 1
    # first conv sits n_convs-1 layers below the classifier, the last hidden one 1 below it
    assert measures.gradient_growth(stats)["BatchNorm"] == pytest.approx(1.5 ** (n_convs - 2))


def test_final_value_reads_the_final_features():
    stats = measures.aggregate(contract_frame())
    assert measures.final_value(stats, "cos_sim")["BatchNorm"] == pytest.approx(0.2 + 0.05 * 5)


def test_rank_ceiling_is_min_of_batch_and_final_features():
    resnet = ModelConfig(arch="resnet", norm="batchnorm", depth=2, width=8, stages=2)
    assert measures.rank_ceiling(resnet, ProbeConfig(batch_size=64, image_size=4)) == 16 * 2 * 2
    assert measures.rank_ceiling(resnet, ProbeConfig(batch_size=8, image_size=4)) == 8
    mlp = ModelConfig(arch="mlp", norm="batchnorm", depth=2, width=6)
    assert measures.rank_ceiling(mlp, ProbeConfig(batch_size=32)) == 6


def test_stage_starts_fall_between_stages():
    stats = measures.aggregate(contract_frame(ModelConfig(arch="resnet", norm="batchnorm", depth=3, width=4,
                                                          stages=3)))
    assert measures.stage_starts(stats) == [3.5, 6.5]


def test_tradeoff_points_hold_one_row_per_group_count_with_named_ends():
    frame = pd.concat([
        contract_frame(ModelConfig(arch="resnet", norm="groupnorm", depth=3, width=8, groups=g),
                       grad=lambda k, g=g: (1 + 0.1 * g) ** k)
        for g in (1, 2, 8)
    ])
    points = measures.tradeoff_points(frame)
    assert list(points["groups"]) == [1, 2, 8]
    assert list(points["group_size"]) == [8, 4, 1]
    assert points["label"].iloc[0].endswith("(LayerNorm)")
    assert points["label"].iloc[-1].endswith("(InstanceNorm)")
    assert points["grad_growth"].is_monotonic_increasing
    assert (points["grad_min"] <= points["grad_growth"]).all()
    assert (points["grad_growth"] <= points["grad_max"]).all()


# --- figures -----------------------------------------------------------------------------------------------


def test_every_normalizer_has_its_own_fixed_colour():
    assert set(NORM_COLORS) == set(NORM_NAMES)
    assert len(set(NORM_COLORS.values())) == len(NORM_NAMES)


def test_depth_figure_draws_one_line_per_normalizer_in_its_colour():
    fig = depth_figure(compare("batchnorm", "none", "layernorm"), "act_var")
    lines = mean_traces(fig)
    assert [t.name for t in lines] == ["BatchNorm", "No normalization", "LayerNorm"]
    colours = [NORM_COLORS[n] for n in ("batchnorm", "none", "layernorm")]
    assert [t.line.color for t in lines] == colours
    assert list(lines[0].x) == [1, 2, 3, 4, 5]


def test_a_normalizer_keeps_its_colour_on_every_figure():
    frame = compare("layernorm", "sws")
    for fig in (depth_figure(frame, "act_var"), gradient_figure(frame),
                overview_figure(frame), spectrum_figure(frame), rank_figure(frame)):
        colours = {t.name.split(" · ")[0]: t.line.color for t in fig.data if t.mode == "lines+markers"}
        assert colours["LayerNorm"] == NORM_COLORS["layernorm"]
        assert colours["Scaled Weight Standardization"] == NORM_COLORS["sws"]


def test_seeds_are_drawn_as_a_min_max_band_around_the_mean():
    fig = depth_figure(contract_frame(), "act_var")
    band = [t for t in fig.data if t.fill == "tonexty"]
    assert len(band) == 1
    base = np.array([0.7 + 0.35 * b for b in range(5)])
    assert np.allclose(band[0].y, base)  # lower edge: the smaller seed
    upper = fig.data[list(fig.data).index(band[0]) - 1]
    assert np.allclose(upper.y, base * 1.04)
    assert np.allclose(mean_traces(fig)[0].y, base * 1.02)


def test_a_single_seed_draws_no_band():
    fig = depth_figure(contract_frame(probe=ProbeConfig(batch_size=8, seeds=1)), "act_var")
    assert not [t for t in fig.data if t.fill == "tonexty"]


def test_hover_shows_exact_mean_min_max_and_layer():
    fig = depth_figure(contract_frame(), "act_var")
    line = mean_traces(fig)[0]
    assert "%{y:.6g}" in line.hovertemplate and "customdata[1]" in line.hovertemplate
    layer, low, high, n = line.customdata[0]
    assert layer == "features.1" and float(low) == pytest.approx(0.7) and float(high) == pytest.approx(0.728)


@pytest.mark.parametrize("log_y", [True, False])
def test_axis_scale_follows_the_option(log_y):
    fig = depth_figure(contract_frame(), "act_var", log_y=log_y)
    assert fig.layout.yaxis.type == ("log" if log_y else "linear")
    grads = gradient_figure(contract_frame(), log_y=log_y)
    assert grads.layout.yaxis.type == ("log" if log_y else "linear")


def test_zoom_survives_reruns_through_uirevision():
    assert depth_figure(contract_frame(), "act_var", uirevision="v-act").layout.uirevision == "v-act"
    assert rank_figure(contract_frame(), uirevision="r").layout.uirevision == "r"


def test_overflow_is_drawn_as_markers_at_the_top_with_a_note():
    frame = compare("none", "batchnorm", var=lambda b: 10.0 ** b if b < 4 else math.inf)
    fig = depth_figure(frame, "act_var", log_y=True)
    markers = [t for t in fig.data if t.marker.symbol == "triangle-up"]
    assert markers and all(list(t.x) == [4, 5] for t in markers)
    assert min(min(t.y) for t in markers) > 10.0 ** 3 * 1.04  # above every finite value
    assert OVERFLOW_NOTE in figure_text(fig)
    line = mean_traces(fig)[0]
    assert math.isnan(line.y[3]) and math.isnan(line.y[4])  # the line breaks, it does not reach inf


def test_an_all_overflowed_frame_still_draws():
    frame = contract_frame(var=lambda b: math.inf, grad=lambda k: math.nan)
    for fig in (depth_figure(frame, "act_var", log_y=True), gradient_figure(frame),
                overview_figure(frame)):
        assert any(t.marker.symbol == "triangle-up" for t in fig.data)


def test_growth_per_block_is_written_on_the_variance_plot():
    fig = depth_figure(compare("batchnorm", "none", var=lambda b: 0.7 + 0.35 * (b - 1)), "act_var",
                               annotate_growth=True)
    text = figure_text(fig)
    assert "BatchNorm: +0.357 per block: linear" in text  # the seed mean of 0.35 * (1, 1.04)


def test_overflow_after_growth_is_named_in_the_growth_note():
    fig = depth_figure(contract_frame(var=lambda b: 2.0 ** b if b < 5 else math.inf), "act_var",
                               annotate_growth=True)
    assert "then overflow from 5" in figure_text(fig)


def test_theory_is_drawn_dashed_in_the_series_colour():
    theory = pd.DataFrame({"series": "BatchNorm", "x": [1, 2, 3], "y": [0.7, 1.04, 1.38],
                           "source": "linear (De & Smith 2020)"})
    fig = depth_figure(contract_frame(), "act_var", theory=theory)
    dashed = [t for t in fig.data if t.name == "theory: linear (De & Smith 2020)"]
    assert len(dashed) == 1 and dashed[0].line.dash == "dash"
    assert dashed[0].line.color == NORM_COLORS["batchnorm"]


def test_stage_transitions_are_marked():
    frame = contract_frame(ModelConfig(arch="resnet", norm="batchnorm", depth=2, width=4, stages=3))
    fig = depth_figure(frame, "act_var")
    assert sorted(s.x0 for s in fig.layout.shapes) == [2.5, 4.5]


def test_residual_variance_is_read_at_the_residual_branches():
    fig = depth_figure(contract_frame(res_var=lambda b: 3.0 * b), "res_var")
    assert np.allclose(mean_traces(fig)[0].y, [3.0 * b * 1.02 for b in range(1, 6)])


def test_rank_figure_draws_similarities_ranks_and_the_ceiling():
    fig = rank_figure(contract_frame(), ceiling=8)
    names = {t.name for t in mean_traces(fig)}
    assert {"BatchNorm", "BatchNorm · stable rank", "BatchNorm · numerical rank"} <= names
    assert any(s.y0 == 8 and s.y1 == 8 for s in fig.layout.shapes)
    assert "min(batch, features) = 8" in figure_text(fig)


def test_spectrum_is_drawn_by_rank_from_one_with_the_ceiling():
    fig = spectrum_figure(contract_frame(), ceiling=8)
    line = mean_traces(fig)[0]
    assert list(line.x) == list(range(1, 9))
    assert line.y[0] == pytest.approx(4.0 * 1.02)
    assert any(s.x0 == 8 for s in fig.layout.shapes)


def test_gradient_figure_draws_norms_rates_and_the_reference_line():
    fig = gradient_figure(contract_frame(grad=lambda k: 1.25 ** k),
                                  reference_rate=measures.BN_GRADIENT_RATE)
    rate = next(t for t in fig.data if t.name == "BatchNorm: rate")
    assert np.allclose(rate.y, 1.25)
    assert any(s.y0 == pytest.approx(measures.BN_GRADIENT_RATE) for s in fig.layout.shapes)
    assert "Yang et al. 2019" in figure_text(fig)


def test_tradeoff_figure_draws_one_labelled_point_per_group_count():
    points = pd.DataFrame({"groups": [1, 2, 4], "group_size": [4, 2, 1], "cos_sim": [0.8, 0.6, 0.4],
                           "cos_min": [0.75, 0.55, 0.35], "cos_max": [0.85, 0.65, 0.45],
                           "grad_growth": [1.5, 3.0, 9.0], "grad_min": [1.4, 2.8, 8.0],
                           "grad_max": [1.6, 3.2, 10.0],
                           "label": ["G=1 (LayerNorm)", "G=2", "G=4 (InstanceNorm)"]})
    fig = tradeoff_figure(points)
    trace = fig.data[0]
    assert list(trace.text) == ["G=4 (InstanceNorm)", "G=2", "G=1 (LayerNorm)"]  # by group size
    assert list(trace.y) == [9.0, 3.0, 1.5] and fig.layout.yaxis.type == "log"
    overflowed = points.assign(grad_growth=[1.5, 3.0, math.inf])
    fig = tradeoff_figure(overflowed)
    assert len(fig.data[0].x) == 2 and fig.data[1].marker.symbol == "triangle-up"


def test_bar_figure_colours_bars_by_normalizer_and_marks_overflow():
    frame = compare("batchnorm", "none")
    stats = measures.aggregate(frame)
    values = pd.Series({"BatchNorm": 3.0, "No normalization": math.inf})
    fig = bar_figure(values, stats, "growth")
    assert list(fig.data[0].x) == ["BatchNorm"]
    assert fig.data[0].marker.color[0] == NORM_COLORS["batchnorm"]
    assert fig.data[1].marker.symbol == "triangle-up"


def test_empty_frames_give_a_message_not_an_exception():
    empty = contract_frame().iloc[0:0]
    for fig in (depth_figure(empty, "act_var"), gradient_figure(empty),
                spectrum_figure(empty), overview_figure(empty)):
        assert fig.layout.annotations and not fig.data


def test_lecture_style_enlarges_fonts_and_the_plot():
    fig = depth_figure(contract_frame(), "act_var")
    height = fig.layout.height
    lecture_style(fig)
    assert fig.layout.font.size >= 20 and fig.layout.height > height


# --- The samples pictured: cosine matrices, principal plane, distributions -----------------------------


def synthetic_detail(collapse: bool, n: int = 12, depth: int = 6, seed: int = 0) -> ProbeDetail:
    """A detail whose samples drift toward one direction with depth (``collapse``) or stay orthogonal."""
    rng = np.random.default_rng(seed)
    common = rng.normal(size=64)
    cosine, projection = [], []
    for b in range(1, depth + 1):
        mix = 1 - 0.8 ** b if collapse else 0.0  # the share of the common direction
        x = mix * common + (1 - mix) * rng.normal(size=(n, 64))  # (N, D)
        u = x / np.linalg.norm(x, axis=1, keepdims=True)
        cosine.append(u @ u.T)
        c = x - x.mean(0)
        left, s, _ = np.linalg.svd(c, full_matrices=False)
        projection.append(left[:, :2] * s[:2] / np.sqrt((x ** 2).sum(1).mean()))
    return ProbeDetail(
        layers=tuple(f"features.{b}" for b in range(1, depth + 1)), positions=np.arange(1, depth + 1),
        cosine=np.asarray(cosine, np.float32), projection=np.asarray(projection, np.float32),
        activations=rng.normal(size=(depth, 200)).astype(np.float32),
        grad_layers=("features.0.conv", "head"), grad_norms=np.abs(rng.normal(size=(2, n))))


def _heatmaps(fig, frame_name: str) -> list[np.ndarray]:
    frame = next(f for f in fig.frames if f.name == frame_name)
    return [np.asarray(t.z, dtype=float) for t in frame.data if t.type == "heatmap"]


def test_collapsing_and_non_collapsing_batches_give_visibly_different_matrices():
    details = {"collapses": synthetic_detail(True), "stays apart": synthetic_detail(False)}
    fig = collapse_figure(details, {"collapses": "none", "stays apart": "batchnorm"})
    assert [f.name for f in fig.frames] == [str(b) for b in range(1, 7)]  # one frame per depth
    first, last = _heatmaps(fig, "1"), _heatmaps(fig, "6")
    off = ~np.eye(12, dtype=bool)
    assert last[0][off].mean() > 0.8 and abs(last[1][off].mean()) < 0.3  # filled toward 1 vs near diagonal
    assert last[0][off].mean() > first[0][off].mean() + 0.3  # the collapse grows with depth
    # the principal plane: a collapsed batch shrinks toward the origin
    spread = [np.hypot(np.asarray(t.x, float), np.asarray(t.y, float)).mean()
              for t in fig.frames[-1].data if t.type == "scatter"]
    assert spread[0] < 0.5 * spread[1]
    # one colour scale for every matrix, with a Play control and a slider over the frames
    assert all(t.coloraxis == "coloraxis" for t in fig.data if t.type == "heatmap")
    assert fig.layout.coloraxis.cmin in (0, -1) and fig.layout.coloraxis.cmax == 1
    assert fig.layout.updatemenus[0].buttons[0].method == "animate"
    assert len(fig.layout.sliders[0].steps) == 6


def test_collapse_figure_is_bounded_in_samples_and_frames():
    detail = synthetic_detail(True, n=40, depth=90)
    fig = collapse_figure({"a": detail}, {"a": "none"}, samples=16)
    assert len(fig.frames) <= MAX_FRAMES
    assert np.asarray(fig.data[0].z).shape == (16, 16)


def test_distribution_figure_draws_one_histogram_pair_per_normalizer():
    details = {"A": synthetic_detail(True), "B": synthetic_detail(False, seed=1)}
    fig = distribution_figure(details, {"A": "none", "B": "batchnorm"}, position=3, grad_layer=1)
    hists = [t for t in fig.data if t.type == "histogram"]
    assert len(hists) == 4
    np.testing.assert_allclose(hists[0].x, details["A"].activations[2])  # depth 3 = the third point
    np.testing.assert_allclose(hists[1].x, details["A"].grad_norms[1])


def test_rank_scaling_draws_the_square_root_shape_through_the_measured_scale():
    sizes = np.array([1, 2, 4, 8, 16])
    measured = 3.0 * np.sqrt(32 / sizes) * np.array([1.1, 0.95, 1.0, 1.05, 0.9])  # c = 3 with noise
    points = pd.DataFrame({"width": 32, "group_size": sizes, "mean": measured, "min": measured - 0.5,
                           "max": measured + 0.5})
    fig = rank_scaling_figure(points, "group_size", "effective_rank", fixed="width 32")
    shape = next(t for t in fig.data if "shape" in t.name)
    c = shape_scale(measured, np.sqrt(32 / sizes))
    assert c == pytest.approx(np.dot(measured, np.sqrt(32 / sizes)) / np.dot(32 / sizes, np.ones(5)))
    assert 2.8 < c < 3.2 and "least squares" in shape.name
    # the curve passes through the measured points' scale: at every measured size within the noise
    curve = np.interp(np.log(sizes), np.log(np.asarray(shape.x, float)), np.asarray(shape.y, float))
    np.testing.assert_allclose(curve, measured, rtol=0.2)
    assert np.all(np.diff(np.asarray(shape.y, float)) < 0)  # falls with the group size


def test_final_points_read_rank_per_network_of_a_sweep():
    parts = [contract_frame(ModelConfig(arch="resnet", norm="groupnorm", depth=5, width=8, group_size=g),
                            rank=lambda b, g=g: 8.0 / g) for g in (1, 2, 4)]
    points = final_points(pd.concat(parts, ignore_index=True), "stable_rank")
    assert list(points["group_size"]) == [1, 2, 4] and list(points["width"]) == [8, 8, 8]
    np.testing.assert_allclose(points["mean"], [8.0, 4.0, 2.0])


def _domains(fig) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    """The (x, y) paper-domain rectangle of every subplot that holds data."""
    layout = fig.layout
    out = []
    for trace in fig.data:
        xa = layout[f"xaxis{(trace.xaxis or 'x')[1:]}"]
        ya = layout[f"yaxis{(trace.yaxis or 'y')[1:]}"]
        out.append((tuple(xa.domain or (0, 1)), tuple(ya.domain or (0, 1))))
    return list(dict.fromkeys(out))


def _outside(annotation, domains, fig) -> bool:
    """Whether a paper-anchored annotation's box (its lines of text) lies outside every plotting area."""
    layout = fig.layout
    plot_px = (layout.height or 450) - (layout.margin.t or 0) - (layout.margin.b or 0)
    lines = (annotation.text or "").count("<br>") + 1
    h = lines * 1.3 * (annotation.font.size or 12) / plot_px  # the box's height in paper units
    x, y = annotation.x, annotation.y
    low, high = {"bottom": (y, y + h), "top": (y - h, y)}.get(annotation.yanchor, (y - h / 2, y + h / 2))
    for (x0, x1), (y0, y1) in domains:
        if x0 - 1e-9 <= x <= x1 + 1e-9 and low < y1 - 1e-9 and high > y0 + 1e-9:
            return False
    return True


def _all_figures():
    none = contract_frame(ModelConfig(arch="resnet", norm="none", depth=5, width=8),
                          var=lambda b: 10.0 ** b if b < 4 else math.inf)
    frame = pd.concat([contract_frame(), none], ignore_index=True)
    stats = measures.aggregate(frame)
    details = {"A": synthetic_detail(True), "B": synthetic_detail(False)}
    sizes = np.array([1, 2, 4])
    points = pd.DataFrame({"width": 8, "group_size": sizes, "mean": 4 / sizes, "min": 4 / sizes,
                           "max": 4 / sizes})
    return {
        "depth": depth_figure(stats, "act_var", log_y=True, annotate_growth=True, ceiling=None),
        "rank": depth_figure(stats, "stable_rank", ceiling=8),
        "rank panels": rank_figure(stats, ceiling=8),
        "spectrum": spectrum_figure(stats, ceiling=8),
        "gradients": gradient_figure(stats, reference_rate=measures.BN_GRADIENT_RATE),
        "overview": overview_figure(stats),
        "bars": bar_figure(measures.gradient_growth(stats), stats, "growth", log_y=True),
        "collapse": collapse_figure(details, {"A": "none", "B": "batchnorm"}),
        "distributions": distribution_figure(details, {}, 2, 0),
        "scaling": rank_scaling_figure(points, "group_size", "stable_rank", ceiling=8),
    }


@pytest.mark.parametrize("name", list(_all_figures()))
def test_no_note_or_label_box_is_drawn_over_the_data(name):
    fig = _all_figures()[name]
    domains = _domains(fig)
    for annotation in fig.layout.annotations:
        # anything tied to data coordinates would sit among the traces
        assert annotation.xref in ("paper", None) or "domain" in str(annotation.xref), annotation.text
        assert _outside(annotation, domains, fig), f"{name}: {annotation.text!r} lies over a plotting area"
    for note in [a for a in fig.layout.annotations if a.name == NOTES_META]:
        # the note block lives in the top margin, which is made tall enough for its lines
        assert note.y == 1 and note.yanchor == "bottom"
        assert fig.layout.margin.t >= 20 * (note.text.count("<br>") + 1)


def test_log_axes_get_clean_power_ticks_and_no_bars():
    frame = contract_frame(var=lambda b: 10.0 ** (3 * b))
    fig = depth_figure(measures.aggregate(frame), "act_var", log_y=True)
    assert fig.layout.yaxis.exponentformat == "power" and fig.layout.yaxis.dtick >= 1
    assert fig.layout.yaxis.minor.ticks == "outside"  # minor ticks drawn, not labelled
    narrow = depth_figure(measures.aggregate(contract_frame()), "act_var", log_y=True)
    assert narrow.layout.yaxis.tickmode == "array"
    assert all(t in ("0.5", "1", "2", "5") for t in narrow.layout.yaxis.ticktext)  # written out in full
    bars = bar_figure(pd.Series({"BatchNorm": 3.0}), measures.aggregate(contract_frame()), "g",
                              log_y=True)
    assert not any(t.type == "bar" for t in bars.data)


def test_minor_ticks_of_a_log_axis_stay_clear_of_its_labels_in_both_modes():
    # Plotly sets a tick label off its axis by the major tick length alone: a minor tick as long as or
    # longer than the major one (or a major one not drawn) runs through the labels ("10" read "1Q").
    checked, crossing = [], []
    for name, built in _every_builder().items():
        for mode, fig in (("normal", built), ("lecture", lecture_style(go.Figure(built)))):
            for key in fig.layout.to_plotly_json():
                axis = fig.layout[key] if key.startswith(("xaxis", "yaxis")) else None
                if axis is None or axis.type != "log" or axis.minor.ticks in (None, ""):
                    continue
                checked.append((name, mode, key))
                if not (axis.minor.ticks == "inside"
                        or (axis.ticks == "outside" and (axis.ticklen or 5) > (axis.minor.ticklen or 5))):
                    crossing.append((name, mode, key, axis.ticks, axis.ticklen, axis.minor.ticklen))
    assert checked, "no figure drew a log axis with minor ticks"
    assert not crossing, crossing


def test_grow_with_depth_reveals_the_curve_one_block_at_a_time():
    stats = measures.aggregate(contract_frame())
    fig = grow_with_depth(depth_figure(stats, "act_var"))
    assert [f.name for f in fig.frames] == ["1", "2", "3", "4", "5"]
    line = next(i for i, t in enumerate(fig.data) if t.mode == "lines+markers")
    shown = [sum(v is not None for v in f.data[line].y) for f in fig.frames]
    assert shown == [1, 2, 3, 4, 5]
    assert fig.layout.yaxis.range is not None  # a fixed frame to grow into


def test_lecture_style_makes_ticks_and_legends_readable_from_the_back():
    details = {"A": synthetic_detail(True)}
    for fig in (lecture_style(collapse_figure(details, {})),
                lecture_style(depth_figure(measures.aggregate(contract_frame()), "act_var"))):
        assert fig.layout.legend.font.size >= 18
        axes = [k for k in fig.layout.to_plotly_json() if k.startswith(("xaxis", "yaxis"))]
        assert axes and all(fig.layout[k].tickfont.size >= 18 for k in axes)


def test_theory_lines_are_withheld_in_plain_words_where_their_assumptions_fail():
    from ui.figures import overlays

    models = [ModelConfig(arch="resnet", norm=n, depth=5, width=8,
                          **({"groups": 2} if n == "groupnorm" else {}))
              for n in ("batchnorm", "layernorm", "groupnorm")]
    frame = pd.concat([contract_frame(m) for m in models], ignore_index=True)
    curves, skipped = overlays.variance_overlay(measures.aggregate(frame), models)
    assert set(curves["series"]) == {"BatchNorm"}  # the +0.34 slope is exact for BatchNorm only
    assert len(skipped) == 2 and all("more slowly" in s for s in skipped)
    vgg = ModelConfig(preset="vgg20", norm="batchnorm")
    _, skipped = overlays.gradient_overlay(measures.aggregate(contract_frame()), [vgg])
    assert skipped and "VGG" in skipped[0]
    _, skipped = overlays.gradient_overlay(measures.aggregate(contract_frame()), [models[1]])
    assert skipped and "got norm" not in skipped[0] and "'" not in skipped[0]


def test_rank_scaling_says_so_where_the_measurement_leaves_the_shape():
    widths = np.array([8, 16, 32, 64])
    flat = pd.DataFrame({"width": widths, "group_size": 4, "mean": [20.0, 18.0, 19.0, 17.0],
                         "min": 17.0, "max": 21.0})
    fig = rank_scaling_figure(flat, "width", "effective_rank")
    assert "leaves the shape" in figure_text(fig)
    shallow = flat.assign(mean=20.0 * (widths / 8) ** 0.08)  # rises, at a sixth of the shape's slope
    assert "leaves the shape: log–log slope +0.08" in figure_text(rank_scaling_figure(shallow, "width", "x"))
    rising = flat.assign(mean=2.0 * np.sqrt(widths / 4))
    text = figure_text(rank_scaling_figure(rising, "width", "x"))
    assert "leaves" not in text and "slope of the measurement +0.50, of the shape +0.5" in text
    sizes = np.array([1, 2, 4, 8])
    falling = pd.DataFrame({"width": 32, "group_size": sizes, "mean": 40.0 * sizes ** -0.2, "min": 1.0,
                            "max": 41.0})
    assert "leaves" not in figure_text(rank_scaling_figure(falling, "group_size", "x"))


# --- Both languages: the figures speak the session's, in a font that has Hangul --------------------------


BUILDERS = [*_all_figures(), "empty", "growing", "tradeoff", "speed", "curves", "dynamics", "dynamics curves"]


@functools.cache
def _every_builder(lang: str = "en") -> dict[str, go.Figure]:
    """Every figure builder once in ``lang``, the empty cases and the animated ones included (read only)."""
    from test_dynamics_figures import probe_rows
    from test_training_figures import correlations, runs_frame

    stats = measures.aggregate(contract_frame())
    points = measures.tradeoff_points(pd.concat([
        contract_frame(ModelConfig(arch="resnet", norm="groupnorm", depth=3, width=8, groups=g))
        for g in (1, 2, 8)]))
    curves = pd.DataFrame({"arch": "cnn", "label": "BatchNorm", "norm": "batchnorm", "seed": 0,
                           "step": [0, 10], "test_acc": [0.1, 0.8], "loss": [2.0, 0.5]})
    with i18n.use(lang):
        return {
            **_all_figures(),
            "empty": depth_figure(contract_frame().iloc[0:0], "act_var"),
            "growing": grow_with_depth(depth_figure(stats, "act_var")),
            "tradeoff": tradeoff_figure(points),
            "speed": similarity_speed_figure(runs_frame(), correlations(), "acc_at_k", steps=100),
            "curves": curves_figure(curves, "loss"),
            "dynamics": dynamics_figure(probe_rows()),
            "dynamics curves": dynamics_curves_figure(curves, "loss"),
        }


@pytest.mark.parametrize("name", BUILDERS)
def test_every_figure_keeps_the_latin_face_and_falls_back_to_hangul_fonts(name):
    family = _every_builder()[name].layout.font.family
    assert family == FONT_FAMILY
    assert family.startswith('"Open Sans", verdana, arial') and "Noto Sans CJK KR" in family
    assert family.endswith("sans-serif")


def test_lecture_style_keeps_the_font_family():
    fig = lecture_style(depth_figure(measures.aggregate(contract_frame()), "act_var"))
    assert fig.layout.font.family == FONT_FAMILY and fig.layout.font.size >= 20


def test_figures_in_korean_have_korean_titles_axes_and_controls():
    stats = measures.aggregate(compare("batchnorm", "groupnorm", var=lambda b: 2.0 ** b))
    with i18n.use("ko"):
        depth = depth_figure(stats, "act_var", annotate_growth=True, ceiling=8)
        depth = grow_with_depth(depth)
        grads = gradient_figure(stats, reference_rate=measures.BN_GRADIENT_RATE)
        ranks = rank_figure(stats)
    assert depth.layout.xaxis.title.text == "깊이 (블록)"
    assert depth.layout.yaxis.title.text == "활성화 분산 (act_var)"
    assert [b.label for b in depth.layout.updatemenus[0].buttons] == ["▶ 재생", "❚❚ 일시정지"]
    assert depth.layout.sliders[0].currentvalue.prefix == "깊이 "
    assert "블록당 ×" in figure_text(depth) and "min(배치, 특징 수) = 8" in figure_text(depth)
    assert "평균 %{y:.6g}" in mean_traces(depth)[0].hovertemplate
    assert grads.layout.yaxis2.title.text == "비율"
    assert [a.text for a in grads.layout.annotations][:1] == ["각 합성곱/선형 층 출력의 기울기 노름"]
    assert "BatchNorm · 안정 랭크" in {t.name for t in mean_traces(ranks)}
    # and in English, as before
    depth = grow_with_depth(depth_figure(stats, "act_var", annotate_growth=True))
    assert depth.layout.xaxis.title.text == "depth (block)"
    assert depth.layout.yaxis.title.text == "activation variance (act_var)"
    assert [b.label for b in depth.layout.updatemenus[0].buttons] == ["▶ Play", "❚❚ Pause"]
    assert depth.layout.sliders[0].currentvalue.prefix == "depth "
    assert "per block" in figure_text(depth)


@pytest.mark.parametrize("name", BUILDERS)
def test_a_korean_figure_leaves_no_english_word(name):
    texts = []
    figure_texts(_every_builder("ko")[name].to_plotly_json(), texts)
    given = {"growth"}  # the bar figure's title is its caller's
    left = [(t, words) for t in texts if t not in given
            and (words := [w for w in english_words(t) if w not in CITED])]
    assert not left


def test_a_figure_in_english_has_no_hangul():
    texts = []
    for fig in _every_builder().values():
        figure_texts(fig.to_plotly_json(), texts)
    assert texts and not [t for t in texts if HANGUL.search(t)]


def test_series_labels_and_growth_speak_the_session_language():
    gn = contract_frame(ModelConfig(arch="resnet", norm="groupnorm", depth=3, width=8, group_size=2))
    both = pd.concat([contract_frame(probe=ProbeConfig(input=i, batch_size=8, seeds=1)) for i in
                      ("gaussian", "images")], ignore_index=True)
    with i18n.use("ko"):
        assert set(measures.series_labels(gn)) == {"GroupNorm (그룹 크기 2)"}
        assert set(measures.series_labels(both)) == {"BatchNorm · 가우시안 잡음", "BatchNorm · 자연 이미지"}
        linear = measures.growth([1 + 0.34 * k for k in range(10)])
        assert measures.describe_growth(linear) == "블록당 +0.34: 선형"
    assert set(measures.series_labels(gn)) == {"GroupNorm (group size 2)"}


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_each_row_carries_its_own_runs_label_whatever_the_row_order(lang):
    def run(norm, **fields):
        model = ModelConfig(arch="resnet", norm=norm, depth=fields.pop("depth", 3), width=8, **fields)
        return contract_frame(model, ProbeConfig(batch_size=8, image_size=8, seeds=1))

    runs = [run("groupnorm", groups=2), run("groupnorm", groups=4), run("batchnorm"),
            run("batchnorm", skipinit=True), run("batchnorm", depth=4), run("none")]
    frame = pd.concat([r.assign(run=k) for k, r in enumerate(runs)], ignore_index=True)
    shuffled = frame.sample(frac=1, random_state=0)
    with i18n.use(lang):
        labels = measures.series_labels(frame)
        alone = [set(part) for _run, part in labels.groupby(frame["run"])]
        again = measures.series_labels(shuffled)
    assert all(len(one) == 1 for one in alone)  # one label per run ...
    assert len(set().union(*alone)) == len(runs)  # ... and a different one for each
    assert again.index.equals(shuffled.index) and again.equals(labels.loc[shuffled.index])


@pytest.mark.parametrize("stages", [1, 3])
@pytest.mark.parametrize("values", [[1 + 0.34 * k for k in range(12)], [0.7 * 2.0 ** k for k in range(12)],
                                    [10.0 ** (-0.5 * k) for k in range(12)], [0.57] * 12, [1.0, 2.0]])
def test_the_dashboard_describes_growth_as_the_engine_does_in_english(values, stages):
    fit = dataclasses.replace(measures.growth(values), stages=stages)
    assert measures.describe_growth(fit) == fit.describe()


def test_every_reason_the_theory_gives_is_said_in_plain_words_in_both_languages():
    from normlab.science import theory
    from ui.figures import overlays

    cases = [(theory.variance_applies, ModelConfig(arch="cnn", norm="batchnorm", depth=4, width=8)),
             (theory.variance_applies, ModelConfig(arch="resnet", norm="weightnorm", depth=2, width=8)),
             (theory.variance_applies, ModelConfig(arch="resnet", norm="evonorm_b0", depth=2, width=8,
                                                   preact=True)),
             (theory.gradient_applies, ModelConfig(arch="cnn", norm="layernorm", depth=4, width=8)),
             (theory.gradient_applies, ModelConfig(arch="resnet", norm="batchnorm", depth=2, width=8)),
             (theory.gradient_applies, ModelConfig(arch="cnn", norm="batchnorm", depth=2, width=8))]
    codes = set()
    for applies, model in cases:
        ok, why = applies(model)
        assert not ok
        codes.add(why.code)
        said = overlays.plain(model, why)
        assert said.split(": ", 1)[1] == overlays.REASONS[why.code], why
        with i18n.use("ko"):
            assert HANGUL.search(overlays.plain(model, why)), why
    # every code the overlays withhold a curve for has its words (rank_*: no rank overlay is drawn)
    # (the transformer laws' codes are said by overlays.withheld_line: tests/test_placement.py)
    from normlab.core.catalog import TRANSFORMER_LAW_REASONS

    unsaid = {"rank_norm", "rank_tokens", *TRANSFORMER_LAW_REASONS}
    assert codes == set(overlays.REASONS) == set(theory.REASON_CODES) - unsaid
