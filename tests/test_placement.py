"""The Placement page's builders and the transformer claims' verdicts, on synthetic frames (no torch run):
each verdict can hold and can fail; each figure draws what its frame holds."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
from helpers import transformer_frame

from normlab import ModelConfig
from ui.content import claims
from ui.content import placement as setup
from ui.figures import measures
from ui.figures import placement as figures
from ui.figures.style import figure_text


def net(**fields) -> ModelConfig:
    return ModelConfig(**{"arch": "transformer", "depth": 4, "width": 16, "heads": 2, "seq_len": 8, **fields})


def sweep(slopes: dict[str, float], depths=(6, 12, 24)) -> pd.DataFrame:
    """A depth sweep whose last block's ‖∂L/∂W₂‖ goes as depth**slope per placement."""
    return pd.concat([
        transformer_frame(net(placement=p, depth=d), w2=lambda b, depth, s=s: depth ** s)
        for p, s in slopes.items() for d in depths
    ], ignore_index=True)


# --- figures ------------------------------------------------------------------------------------------------


def test_block_figures_draw_one_line_per_placement_with_the_placements_colour():
    frame = pd.concat([transformer_frame(net(placement=p)) for p in ("post", "pre")], ignore_index=True)
    stats = measures.aggregate(frame)
    fig = figures.stream_figure(stats)
    lines = {t.name: t for t in fig.data if t.mode == "lines+markers"}
    assert set(lines) == {"LayerNorm · post", "LayerNorm · pre"}
    assert lines["LayerNorm · post"].line.color == figures.PLACEMENT_COLORS["post"]
    assert list(lines["LayerNorm · pre"].x) == [1, 2, 3, 4]
    assert fig.layout.xaxis.title.text == "block"


def test_token_cosine_and_weight_gradients_read_their_own_rows():
    frame = transformer_frame(net(), cos=lambda b: 0.25 * b, w2=lambda b, depth: 10.0 ** b)
    stats = measures.aggregate(frame)
    cosine = next(t for t in figures.token_cosine_figure(stats).data if t.mode == "lines+markers")
    assert np.allclose(list(cosine.y), [0.25, 0.5, 0.75, 1.0])
    grads = next(t for t in figures.weight_grad_figure(stats).data if t.mode == "lines+markers")
    assert list(grads.x) == [1, 2, 3, 4]
    assert grads.y[3] / grads.y[0] == pytest.approx(1000.0)


def test_last_block_points_take_each_runs_own_last_block_and_leave_depth_out_of_the_label():
    points = figures.last_block_points(sweep({"post": 0.0, "pre": -0.5}))
    assert set(points["series"]) == {"LayerNorm · post", "LayerNorm · pre"}
    pre = points[points["placement"] == "pre"].set_index("depth")["mean"]
    assert pre[24] / pre[6] == pytest.approx((24 / 6) ** -0.5, rel=0.03)


@pytest.mark.parametrize("slope", [0.0, -0.5, 1.0])
def test_the_depth_slope_per_series_recovers_a_power_law(slope):
    slopes = figures.depth_slopes(sweep({"post": 0.25, "pre": slope}))
    assert slopes == {"LayerNorm · post": pytest.approx(0.25, abs=0.02),
                      "LayerNorm · pre": pytest.approx(slope, abs=0.02)}


def test_the_depth_figure_writes_each_slope_on_the_plot():
    frame = sweep({"post": 0.0, "pre": -0.5})
    fig = figures.depth_slope_figure(figures.last_block_points(frame), figures.depth_slopes(frame),
                                     expected={"pre": (-0.5, "Xiong et al. 2020")})
    text = figure_text(fig)
    assert "slope +0.00" in text and "slope -0.50" in text
    assert any("Xiong et al. 2020" in (t.name or "") for t in fig.data)
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"


def test_collapse_figure_colours_runs_by_their_skip():
    frame = pd.concat([transformer_frame(net(norm="none", ffn=False, skip=s), resid=r) for s, r in
                       ((False, lambda b: 10.0 ** -b), (True, lambda b: 0.9))], ignore_index=True)
    fig = figures.attention_collapse_figure(measures.aggregate(frame))
    lines = {t.name: t.line.color for t in fig.data if t.mode == "lines+markers"}
    assert len(lines) == 2 and len(set(lines.values())) == 2
    assert fig.layout.yaxis.type == "log"


def test_figures_say_what_is_missing_instead_of_failing():
    stats = measures.aggregate(transformer_frame(net())).query("metric != 'token_cos_sim'")
    assert "No token cosine per block" in figure_text(figures.token_cosine_figure(stats))
    assert "No last-block" in figure_text(figures.depth_slope_figure(figures.last_block_points(
        stats.iloc[0:0].assign(value=[])), {}))


def test_the_page_setup_shares_the_per_block_runs_with_the_sweep():
    runs = setup.runs(("post", "pre"), ("layernorm",))
    depths = [m.depth for m, _ in runs if m.ffn]
    assert sorted(depths) == sorted([d for d in setup.DEPTHS for _ in range(2)])
    assert len(runs) == len(set(runs)) == 2 * len(setup.DEPTHS) + 2  # + pure attention with/without skips
    assert {(m.ffn, m.skip) for m, _ in runs} == {(True, True), (False, False), (False, True)}


# --- verdicts -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("slopes", "holds"), [
    ({"post": 0.02, "pre": -0.5}, True),
    ({"post": -0.5, "pre": -0.5}, False),  # post's gradient shrinking: the law fails
    ({"post": 0.0, "pre": 0.0}, False),  # pre's not shrinking
])
def test_xiong_verdict(slopes, holds):
    frame = sweep(slopes)
    assert claims.xiong_gradient(frame, measures.aggregate(frame)).holds is holds


def test_xiong_verdict_is_undecided_without_both_placements():
    frame = sweep({"pre": -0.5})
    assert claims.xiong_gradient(frame, measures.aggregate(frame)).holds is None


@pytest.mark.parametrize(("sq", "holds"), [
    (lambda b: 1.0 + 0.8 * b, True),  # linear, inside (1 + l/2) ... (1 + 3l/2)
    (lambda b: 1.0 + 3.0 * b, False),  # linear but above the band
    (lambda b: 1.5 ** b, False),
    (lambda b: 1.0, False),
])
def test_prenorm_variance_verdict(sq, holds):
    frame = transformer_frame(net(placement="pre", depth=12), sq=sq)
    assert claims.prenorm_variance(frame, measures.aggregate(frame)).holds is holds


def _attention(pure, kept) -> pd.DataFrame:
    return pd.concat([transformer_frame(net(norm="none", ffn=False, skip=False, depth=8), resid=pure),
                      transformer_frame(net(norm="none", ffn=False, skip=True, depth=8), resid=kept)],
                     ignore_index=True)


@pytest.mark.parametrize(("pure", "kept", "holds"), [
    (lambda b: 0.9 ** (3 ** b), lambda b: 0.8, True),
    (lambda b: 0.0 if b > 2 else 0.5, lambda b: 0.8, True),  # an exact collapse counts
    (lambda b: 0.9 ** b, lambda b: 0.8, False),  # slow decay: no collapse within a few blocks
    (lambda b: 0.9 ** (3 ** b), lambda b: 0.01, False),  # skips that collapse too
])
def test_dong_verdict(pure, kept, holds):
    frame = _attention(pure, kept)
    assert claims.dong_collapse(frame, measures.aggregate(frame)).holds is holds


def _post(plain, scaled, depth=12) -> pd.DataFrame:
    return pd.concat([transformer_frame(net(placement="post", depth=depth), cos=plain),
                      transformer_frame(net(placement="post", depth=depth, residual_scale=depth ** -0.5),
                                        cos=scaled)], ignore_index=True)


@pytest.mark.parametrize(("plain", "scaled", "holds"), [
    (lambda b: 0.2 + 0.06 * b, lambda b: 0.2, True),
    (lambda b: 0.2, lambda b: 0.2, False),  # no alignment
    (lambda b: 0.2 + 0.06 * b, lambda b: 0.2 + 0.06 * b, False),  # scaling does not help
])
def test_noci_verdict(plain, scaled, holds):
    frame = _post(plain, scaled)
    assert claims.noci_alignment(frame, measures.aggregate(frame)).holds is holds


@pytest.mark.parametrize(("dyt_var", "sat", "holds"), [
    (lambda b: 0.1 ** b, 0.0, True),
    (lambda b: 1.0, 0.0, False),  # DyT's variance pinned like LayerNorm's
    (lambda b: 0.1 ** b, 0.3, False),  # saturating: not a fixed gain
])
def test_dyt_verdict(dyt_var, sat, holds):
    frame = pd.concat([transformer_frame(net(placement="post", norm="layernorm"), var=lambda b: 1.0),
                       transformer_frame(net(placement="post", norm="dyt"), var=dyt_var, sat=sat)],
                      ignore_index=True)
    verdict = claims.dyt_gain(frame, measures.aggregate(frame))
    assert verdict.holds is holds
    assert math.isfinite(float(verdict.text.split("at most ")[1].split("%")[0]))


# --- why a law is withheld --------------------------------------------------------------------------------

WITHHELD = {  # theory, network -> the reason code of normlab.science.theory
    "tf_pointwise": ("band", net(norm="dyt")),
    "tf_no_norm": ("band", net(norm="none")),
    "tf_peri": ("depth_slope", net(placement="peri")),
    "tf_mix": ("depth_slope", net(placement="mix")),
    "tf_lns": ("band", net(placement="lns")),
    "tf_post_band": ("band", net(placement="post")),
    "tf_ablation": ("depth_slope", net(ffn=False)),
    "tf_residual_scale": ("depth_slope", net(residual_scale=0.5)),
    "tf_pure_attention": ("collapse", net(norm="none", ffn=False)),
    "tf_causal": ("collapse", net(norm="none", ffn=False, skip=False)),
}


@pytest.mark.parametrize("code", WITHHELD)
def test_every_transformer_law_withheld_is_said_in_plain_words_in_both_languages(code):
    from normlab.core import catalog
    from normlab.science import theory
    from ui.figures import overlays
    from ui.state import i18n

    law, model = WITHHELD[code]
    ok, why = theory.transformer_applies(law, model)
    assert not ok and why.code == code
    said = overlays.withheld_line(model, why)
    assert said.split(": ", 1)[1] == catalog.TRANSFORMER_LAW_REASONS[code]  # the catalog's sentence
    with i18n.use("ko"):
        assert re.search("[\uac00-\ud7a3]", overlays.withheld_line(model, why).split(": ", 1)[1])


def test_the_placement_theory_draws_only_where_the_laws_hold():
    from ui.figures import overlays

    models = [net(placement=p, depth=6) for p in ("post", "pre", "peri")] + [net(norm="dyt", depth=6)]
    frame = pd.concat([transformer_frame(m) for m in models], ignore_index=True)
    stats = measures.aggregate(frame)
    band, skipped = overlays.band_overlay(stats, models)
    assert set(band["series"]) == {"LayerNorm · pre"}  # post's stream stays at 1; peri and DyT: no law
    assert len(band) == 2 * 6 and band["y"].max() == pytest.approx(1 + 1.5 * 6)
    assert len(skipped) == 3
    slopes, not_sloped = overlays.expected_slopes(models)
    assert slopes == {"post": (0.0, "Xiong et al. 2020"), "pre": (-0.5, "Xiong et al. 2020")}
    assert len(not_sloped) == 2
