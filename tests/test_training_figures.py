"""The training page's figures: pure DataFrame -> Figure builders, checked without a browser."""

from __future__ import annotations

import math

import pandas as pd

from ui.figures.style import norm_color
from ui.figures.training import arch_label, curves_figure, similarity_speed_figure


def runs_frame() -> pd.DataFrame:
    return pd.DataFrame({
        "arch": ["cnn", "cnn", "cnn"], "norm": ["batchnorm", "layernorm", "layernorm"],
        "label": ["BatchNorm", "LayerNorm", "LayerNorm"], "seed": [0, 0, 1],
        "cos_sim_init": [0.2, 0.7, 0.8], "acc_at_k": [0.9, math.nan, 0.4],
        "steps_to_target": [40.0, math.nan, math.nan], "final_test_acc": [0.95, 0.1, 0.6],
        "diverged": [False, True, False],
    })


def correlations(rho=-0.5) -> pd.DataFrame:
    return pd.DataFrame({"speed": ["acc_at_k", "steps_to_target"], "arch": ["cnn", "cnn"],
                         "rho": [rho, math.nan], "lo": [-0.9, math.nan], "hi": [-0.1, math.nan], "n": [3, 3]})


def test_one_trace_per_normalizer_coloured_by_it_and_diverged_runs_open_at_zero():
    fig = similarity_speed_figure(runs_frame(), correlations(), "acc_at_k", steps=100)
    net = arch_label("cnn")
    assert [t.name for t in fig.data] == [f"BatchNorm · {net}", f"LayerNorm · {net}"]
    layer = fig.data[1]
    assert layer.marker.color == norm_color("layernorm")
    assert list(layer.y) == [0.0, 0.4] and layer.marker.symbol == ("circle-open", "circle")
    notes = " ".join(a.text for a in fig.layout.annotations)
    assert "Spearman ρ = -0.50 [-0.90, -0.10], n = 3" in notes and "diverged" in notes


def test_unreached_targets_sit_above_the_last_step_and_a_missing_rho_says_why():
    fig = similarity_speed_figure(runs_frame(), correlations(), "steps_to_target", steps=100)
    assert list(fig.data[1].y) == [100 * 1.08] * 2
    assert any(s.y0 == 100 * 1.08 for s in fig.layout.shapes)
    assert "no rank correlation" in " ".join(a.text for a in fig.layout.annotations)


def test_curves_draw_one_line_per_run_with_one_legend_entry_per_label():
    curves = pd.DataFrame({"arch": ["cnn"] * 4, "label": ["BatchNorm"] * 2 + ["LayerNorm"] * 2,
                           "norm": ["batchnorm"] * 2 + ["layernorm"] * 2, "seed": [0, 0, 0, 0],
                           "step": [0, 10, 0, 10], "test_acc": [0.1, 0.8, 0.1, math.nan],
                           "loss": [2.0, 0.5, 2.0, 1.0]})
    fig = curves_figure(curves, "test_acc")
    assert [t.name for t in fig.data] == ["BatchNorm", "LayerNorm"]
    assert list(fig.data[1].x) == [0]  # NaN (not evaluated) steps are left out
    assert curves_figure(curves, "loss").layout.yaxis.type == "log"


def test_group_counts_of_one_normalizer_get_distinct_shades_of_its_colour():
    runs = pd.concat([runs_frame().assign(groups=None)] + [
        runs_frame().iloc[[0]].assign(norm="groupnorm", label=f"GroupNorm (G={g})", groups=g)
        for g in (2, 4, 8)], ignore_index=True)
    fig = similarity_speed_figure(runs, correlations(), "acc_at_k", steps=100)
    colors = {t.name.split(" · ")[0]: t.marker.color for t in fig.data}
    shades = [colors[f"GroupNorm (G={g})"] for g in (2, 4, 8)]
    assert len(set(shades)) == 3 and shades[1] == norm_color("groupnorm")  # the middle count keeps it
    assert colors["BatchNorm"] == norm_color("batchnorm")


def test_the_correlations_sit_above_the_plot_area_not_over_the_points():
    fig = similarity_speed_figure(runs_frame(), correlations(), "acc_at_k", steps=100)
    box = next(a for a in fig.layout.annotations if "Spearman" in a.text)
    assert box.yref == "paper" and box.y >= 1 and box.yanchor == "bottom"
    assert fig.layout.margin.t >= 20 * len(box.text.split("<br>"))
