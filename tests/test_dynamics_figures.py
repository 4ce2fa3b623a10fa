"""The training-dynamics figures: one frame per probed step, traces in fixed order, seed bands, fixed axes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ui.figures.dynamics import dynamics_curves_figure, dynamics_figure
from ui.figures.style import figure_text


def probe_rows(norms=("batchnorm", "none"), steps=(0, 1, 5), seeds=(0, 1), layers=3) -> pd.DataFrame:
    """Synthetic TrainResult.probes rows: value = (1 + index) * (1 + step) * (1 + seed) for norm 0, x10 for
    norm 1, so every mean, band and frame is known."""
    rows = []
    for k, norm in enumerate(norms):
        for step in steps:
            for seed in seeds:
                for index in range(layers):
                    value = (1 + index) * (1 + step) * (1 + seed) * 10.0 ** k
                    for kind, metric in (("act", "act_var"), ("act", "cos_sim"), ("conv", "grad_norm")):
                        rows.append({"norm": norm, "step": step, "seed": seed, "index": index, "kind": kind,
                                     "metric": metric, "value": value, "layer": f"l{index}"})
    return pd.DataFrame(rows)


def mean_lines(data) -> list:
    return [t for t in data if t.mode == "lines+markers"]


def test_one_frame_per_probed_step_each_redrawing_every_trace():
    fig = dynamics_figure(probe_rows())
    assert [f.name for f in fig.frames] == ["0", "1", "5"]
    assert all(len(f.data) == len(fig.data) for f in fig.frames)
    assert [s.label for s in fig.layout.sliders[0].steps] == ["0", "1", "5"]
    # three panels x two normalizers, each a band and a mean line
    assert len(fig.data) == 3 * 2 * 2


def test_a_frame_draws_the_seed_mean_of_its_step_with_the_min_max_band():
    fig = dynamics_figure(probe_rows())
    frame = next(f for f in fig.frames if f.name == "5")
    line = mean_lines(frame.data)[0]  # variance panel, BatchNorm
    # seeds 0 and 1: (1 + index) * 6 * 1 and * 2, mean * 1.5
    np.testing.assert_allclose(line.y, [(1 + i) * 6 * 1.5 for i in range(3)])
    band = frame.data[0]
    # the max (seed 1) along depth, then the min (seed 0) back
    np.testing.assert_allclose(band.y, [12, 24, 36, 18, 12, 6])
    assert mean_lines(fig.frames[0].data)[0].y[0] != line.y[0]  # the step changes what is drawn


def test_axes_keep_one_range_over_every_step():
    fig = dynamics_figure(probe_rows())
    low, high = fig.layout.yaxis.range
    assert fig.layout.yaxis.type == "log"
    assert low <= np.log10(1) and high >= np.log10(3 * 6 * 2)
    assert fig.layout.yaxis2.type == "linear"


def test_overflowed_values_are_gaps_with_a_note():
    rows = probe_rows()
    rows.loc[rows.index[0], "value"] = np.inf
    fig = dynamics_figure(rows)
    assert "overflowed" in figure_text(fig)
    assert not figure_text(dynamics_figure(probe_rows())).count("overflowed")


def test_an_unknown_middle_panel_is_refused_by_name():
    with pytest.raises(ValueError, match="middle must be one of"):
        dynamics_figure(probe_rows(), "nope")


def test_no_rows_is_a_message_not_a_crash():
    fig = dynamics_figure(probe_rows().iloc[0:0])
    assert "No probed step" in fig.layout.annotations[0].text


def test_curves_draw_the_seed_mean_and_band_per_normalizer():
    curves = pd.DataFrame({"norm": ["none"] * 4, "seed": [0, 0, 1, 1], "step": [0, 1, 0, 1],
                           "loss": [np.nan, 2.0, np.nan, 4.0], "test_acc": [0.1, 0.2, 0.3, 0.4]})
    fig = dynamics_curves_figure(curves, "loss")
    np.testing.assert_allclose([t for t in fig.data if t.name][0].y, [3.0])  # step 0 has no loss
    acc = dynamics_curves_figure(curves, "test_acc")
    np.testing.assert_allclose([t for t in acc.data if t.name][0].y, [0.2, 0.3])
    with pytest.raises(ValueError, match="y must be one of"):
        dynamics_curves_figure(curves, "nope")


def transformer_probe_rows() -> pd.DataFrame:
    """Synthetic transformer probes, two blocks: block outputs (index l) and the linear maps' weight
    gradients (index = the linear's position), as TrainResult.probes names them."""
    rows = []
    for step in (0, 5):
        for block in range(2):
            for metric in ("act_var", "token_cos_sim"):
                rows.append({"norm": "layernorm", "step": step, "seed": 0, "index": block, "kind": "block",
                             "metric": metric, "value": 1.0 + block + step, "layer": f"blocks.{block}"})
            for j, name in enumerate(("attn.q", "ffn.w2")):
                rows.append({"norm": "layernorm", "step": step, "seed": 0, "index": 6 * block + j,
                             "kind": "conv", "metric": "weight_grad_norm", "value": 10.0 * (1 + block) + j,
                             "layer": f"blocks.{block}.{name}"})
    return pd.DataFrame(rows)


def test_a_transformer_is_drawn_per_block_with_its_ffn_weight_gradient():
    from ui.figures.dynamics import transformer_rows

    rows = transformer_rows(transformer_probe_rows())
    grads = rows[rows["metric"] == "weight_grad_norm"]
    assert sorted(grads["layer"].unique()) == ["blocks.0.ffn.w2", "blocks.1.ffn.w2"]
    assert grads.set_index(["step", "layer"]).loc[(0, "blocks.1.ffn.w2"), "index"] == 2  # block 2 of 2
    assert set(rows["kind"]) == {"block"} and set(rows["index"]) == {1, 2}
    fig = dynamics_figure(transformer_probe_rows(), transformer=True)
    lines = mean_lines(fig.data)
    assert [list(t.x) for t in lines] == [[1.0, 2.0]] * 3
    assert list(lines[2].y) == [11.0, 21.0]  # W2's gradient of block 1 and block 2 at step 0
    assert fig.layout.xaxis.title.text == "block" and [f.name for f in fig.frames] == ["0", "5"]
