"""The transformer laws of spec section 5: the theory's curves and conditions on their own, then each law
measured at small size (width 64, T 32, batch 8, three seeds) against what its paper states."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from normlab.core import catalog
from normlab.core.config import PLACEMENTS, ModelConfig
from normlab.science import summary, theory
from normlab.science.theory import (
    BAND_HIGH,
    BAND_LOW,
    DEPTH_SLOPES,
    TRANSFORMER_REASON_CODES,
    TRANSFORMER_THEORIES,
    Withheld,
    collapse_theory,
    depth_slope_law,
    depth_slope_table,
    depth_slope_theory,
    transformer_applies,
    variance_band,
)


def _tf(**kw) -> ModelConfig:
    return ModelConfig(**{"arch": "transformer", "depth": 6, "width": 16, "heads": 2, "seq_len": 8, **kw})


PURE = {"skip": False, "ffn": False, "causal": False}  # Dong et al.'s pure attention, bidirectional

# --- Where each law holds: (config fields, law, the reason code; None: it holds) --------------------------

CONDITIONS = [
    ({"placement": "pre"}, "band", None),
    ({"placement": "pre", "norm": "rmsnorm"}, "band", None),
    ({"placement": "pre", "qk_norm": True, "causal": False}, "band", None),
    ({"placement": "post"}, "band", "tf_post_band"),
    ({"placement": "pre", "norm": "dyt"}, "band", "tf_pointwise"),
    ({"placement": "pre", "norm": "derf"}, "band", "tf_pointwise"),
    ({"placement": "pre", "norm": "none"}, "band", "tf_no_norm"),
    ({"placement": "peri"}, "band", "tf_peri"),
    ({"placement": "mix"}, "band", "tf_mix"),
    ({"placement": "lns"}, "band", "tf_lns"),
    ({"placement": "pre", "ffn": False}, "band", "tf_ablation"),
    ({"placement": "pre", "residual_scale": 0.5}, "band", "tf_residual_scale"),
    ({"placement": "post"}, "depth_slope", None),
    ({"placement": "pre", "norm": "rmsnorm"}, "depth_slope", None),
    ({"placement": "post", "norm": "dyt"}, "depth_slope", "tf_pointwise"),
    ({"placement": "mix"}, "depth_slope", "tf_mix"),
    ({"placement": "pre", "norm": "none"}, "depth_slope", "tf_no_norm"),
    ({"placement": "pre", "skip": False}, "depth_slope", "tf_ablation"),
    ({"placement": "post", "residual_scale": 0.2}, "depth_slope", "tf_residual_scale"),
    ({"placement": "pre", **PURE}, "collapse", None),
    ({"placement": "post", **PURE}, "collapse", None),
    ({"placement": "pre", "norm": "none", **PURE}, "collapse", None),
    ({"placement": "pre", "norm": "dyt", **PURE}, "collapse", "tf_pointwise"),
    ({"placement": "lns", **PURE}, "collapse", "tf_lns"),
    ({"placement": "pre", **{**PURE, "causal": True}}, "collapse", "tf_causal"),
    ({"placement": "pre", "causal": False}, "collapse", "tf_pure_attention"),
    ({"placement": "pre", **{**PURE, "ffn": True}}, "collapse", "tf_pure_attention"),
]


def _name(fields: dict, law: str) -> str:
    return f"{law}-" + "-".join(f"{k}={v}" for k, v in fields.items())


@pytest.mark.parametrize(("fields", "law", "code"), CONDITIONS,
                         ids=[_name(f, law) for f, law, _ in CONDITIONS])
def test_each_law_is_drawn_where_its_assumptions_hold_and_withheld_with_a_coded_reason(fields, law, code):
    ok, why = transformer_applies(law, _tf(**fields))
    assert ok is (code is None)
    if code is not None:
        assert why.code == code and why.startswith(catalog.TRANSFORMER_LAW_REASONS[code])
        assert theory.applies(law, _tf(**fields)) == (False, why)


def test_dyt_derf_peri_mix_and_lns_withhold_every_law():
    for law in TRANSFORMER_THEORIES:
        for fields in ({"norm": "dyt"}, {"norm": "derf"}, {"placement": "peri"}, {"placement": "mix"},
                       {"placement": "lns"}):
            assert not transformer_applies(law, _tf(**fields, **(PURE if law == "collapse" else {})))[0]


def test_the_other_families_get_the_arch_reason():
    for arch in ("mlp", "cnn", "resnet"):
        ok, why = transformer_applies("band", ModelConfig(arch=arch, depth=2, width=8))
        assert not ok and why.code == "tf_arch"


def test_every_reason_code_has_its_sentence_in_the_catalog():
    assert set(catalog.TRANSFORMER_LAW_REASONS) == set(TRANSFORMER_REASON_CODES)
    assert all(text.strip() for text in catalog.TRANSFORMER_LAW_REASONS.values())


def test_an_unknown_law_is_refused_by_name():
    with pytest.raises(ValueError, match="theory"):
        transformer_applies("slope", _tf())


# --- The curves ------------------------------------------------------------------------------------------


def test_the_band_runs_from_one_plus_half_to_one_plus_three_halves_per_block_passed():
    band = variance_band(_tf(depth=4))
    lower = band[band["bound"] == "lower"].sort_values("index")
    upper = band[band["bound"] == "upper"].sort_values("index")
    assert list(lower["layer"]) == [f"blocks.{k}" for k in range(4)] == list(upper["layer"])
    assert set(band["metric"]) == {"act_sq_norm"} and set(band["kind"]) == {"block"}
    np.testing.assert_allclose(lower["value"], [1.5, 2.0, 2.5, 3.0])
    np.testing.assert_allclose(upper["value"], [2.5, 4.0, 5.5, 7.0])
    assert (BAND_LOW, BAND_HIGH) == (0.5, 1.5)
    assert "Xiong" in band["source"].iloc[0] and "Kedia" in band["source"].iloc[0]
    assert (band["placement"] == "pre").all()  # the config rides along, as for the other curves


def test_the_band_is_refused_where_it_does_not_hold():
    with pytest.raises(Withheld) as err:
        variance_band(_tf(placement="post"))
    assert err.value.reason.code == "tf_post_band"


@pytest.mark.parametrize("placement", ["post", "pre"])
def test_the_depth_slope_line_has_the_theorem_slope_and_passes_through_the_points(placement):
    depths, values = [6, 12, 24, 48], [0.2, 0.15, 0.09, 0.07]
    line = depth_slope_theory(_tf(placement=placement), depths, values)
    assert list(line["layer"]) == ["blocks.5.ffn.w2", "blocks.11.ffn.w2", "blocks.23.ffn.w2",
                                   "blocks.47.ffn.w2"]
    slope = np.polyfit(np.log(line["depth"]), np.log(line["value"]), 1)[0]
    assert slope == pytest.approx(DEPTH_SLOPES[placement]) == pytest.approx(depth_slope_law(_tf(
        placement=placement)).slope)
    # through the geometric centre of the points: the residuals of the logs sum to zero
    assert np.sum(np.log(values) - np.log(line["value"])) == pytest.approx(0, abs=1e-12)


def test_the_depth_slope_line_refuses_bad_points():
    with pytest.raises(ValueError, match="values"):
        depth_slope_theory(_tf(), [6, 12], [0.1, 0.0])
    with pytest.raises(ValueError, match="equally long"):
        depth_slope_theory(_tf(), [6, 12], [0.1])


def test_the_collapse_curve_passes_through_the_first_two_blocks_and_cubes_its_log_distance():
    curve = collapse_theory(_tf(depth=5, **PURE), first=0.8, second=0.25)
    values = curve.sort_values("index")["value"].to_numpy()
    assert values[:2] == pytest.approx([0.8, 0.25])
    s = 0.25 / 0.8**3
    np.testing.assert_allclose(values, [s ** ((3**k - 1) / 2) * 0.8 ** (3**k) for k in range(5)], rtol=1e-12)
    # doubly exponential: log(sqrt(s) r) is multiplied by 3 per block
    scaled = np.log(values * math.sqrt(s))
    np.testing.assert_allclose(scaled[1:] / scaled[:-1], 3.0, rtol=1e-9)
    assert set(curve["metric"]) == {"token_residual"} and "Dong" in curve["source"].iloc[0]


def test_the_collapse_curve_underflows_to_zero_and_a_growing_one_to_inf_never_raising():
    deep = collapse_theory(_tf(depth=12, **PURE), first=0.8, second=0.25)["value"]
    assert deep.iloc[-1] == 0.0 and np.isfinite(deep).all()
    growing = collapse_theory(_tf(depth=12, **PURE), first=0.9, second=0.95)["value"]
    assert math.isinf(growing.iloc[-1])


# --- The slope of a sweep (one definition: normlab.science.summary) ---------------------------------------


def _sweep_frame(slopes: dict[str, float], depths=(6, 12, 24), seeds=3, noise=0.0) -> pd.DataFrame:
    """A tidy frame as run_sweep gives it, holding only the weight_grad_norm rows, with known slopes."""
    rng = np.random.default_rng(0)
    rows = []
    for placement, slope in slopes.items():
        for depth in depths:
            for seed in range(seeds):
                for block in range(depth):
                    value = 0.3 * depth**slope * math.exp(noise * rng.standard_normal())
                    rows.append({"seed": seed, "layer": f"blocks.{block}.ffn.w2", "index": 6 * block + 5,
                                 "kind": "conv", "metric": "weight_grad_norm",
                                 "value": value if block == depth - 1 else 99.0, "arch": "transformer",
                                 "norm": "layernorm", "depth": depth, "width": 16, "placement": placement,
                                 "skip": True, "ffn": True, "residual_scale": 1.0, "causal": True})
    return pd.DataFrame(rows)


def test_w2_grad_last_reads_the_last_block_only():
    frame = _sweep_frame({"pre": -0.5}, depths=(12,))
    assert summary.w2_grad_last(frame) == pytest.approx(0.3 * 12**-0.5)
    assert math.isnan(summary.w2_grad_last(frame[frame["metric"] != "weight_grad_norm"]))


def test_depth_slopes_recover_the_slope_of_each_curve():
    table = summary.depth_slopes(_sweep_frame({"post": 0.0, "pre": -0.5, "mix": -0.3}))
    assert list(table["placement"]) == ["post", "pre", "mix"]
    np.testing.assert_allclose(table["slope"], [0.0, -0.5, -0.3], atol=1e-12)
    assert (table["depths"] == "6,12,24").all() and (table["seeds"] == 3).all()
    np.testing.assert_allclose(table["slope_sd"], 0.0, atol=1e-12)


def test_depth_slopes_report_the_seed_to_seed_spread_and_nan_for_one_depth():
    noisy = summary.depth_slopes(_sweep_frame({"pre": -0.5}, noise=0.1))
    assert noisy["slope_sd"].iloc[0] > 0.01
    one = summary.depth_slopes(_sweep_frame({"pre": -0.5}, depths=(12,)))
    assert math.isnan(one["slope"].iloc[0])


def test_the_slope_table_adds_the_expected_slope_or_the_reason_it_has_none():
    table = depth_slope_table(_sweep_frame({"post": 0.0, "pre": -0.5, "mix": -0.3}))
    assert list(table["expected"].iloc[:2]) == [0.0, -0.5] and math.isnan(table["expected"].iloc[2])
    assert table["source"].iloc[0].startswith("Xiong") and table["source"].iloc[2] == "withheld: tf_mix"


def test_every_placement_has_a_slope_law_or_a_reason():
    for placement in PLACEMENTS:
        try:
            assert depth_slope_law(_tf(placement=placement)).slope == DEPTH_SLOPES[placement]
        except Withheld as err:
            assert err.reason.code == f"tf_{placement}"


# --- The laws measured (width 64, T 32, batch 8, three seeds: what spec section 5 says shows on a CPU) ----

WIDTH, SEQ, BATCH, SEEDS = 64, 32, 8, 3
DEPTHS = (6, 12, 24)
# The slope's tolerance: fitted over L = 6, 12, 24 seed by seed, its standard deviation is 0.06-0.09 (ten
# seeds, 2026-12), so the slope of three seeds pooled wanders by about 0.05; at this size post-LN's slope
# also sits a little above 0 (0.04-0.11) and pre-LN's a little below -1/2 (-0.49 to -0.61). 0.2 is four
# such spreads, and the two placements must still be told apart by 0.35 (they differ by ~0.6).
SLOPE_TOL = 0.2
SLOPE_GAP = 0.35


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One torch thread: on a small shared machine, threads that wait on each other make these small
    matrices many times slower (and the measured digits would depend on the core count)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _model(**kw) -> ModelConfig:
    return ModelConfig(**{"arch": "transformer", "width": WIDTH, "seq_len": SEQ, "heads": 4, **kw})


def _probe(seeds: int = SEEDS):
    from normlab.core.config import ProbeConfig

    return ProbeConfig(batch_size=BATCH, seeds=seeds, device="cpu")


def _measure(seeds: int = SEEDS, **kw) -> pd.DataFrame:
    from normlab import run_probes

    return run_probes(_model(**kw), _probe(seeds))


def _blocks(frame: pd.DataFrame, metric: str) -> np.ndarray:
    """Seed means of ``metric`` at the block outputs blocks.0, blocks.1, ... (forward order)."""
    rows = frame[(frame["metric"] == metric) & (frame["kind"] == "block")]
    return rows.groupby("index", sort=True)["value"].mean().to_numpy()


def _depth_sweep(depths) -> pd.DataFrame:
    from normlab import run_sweep

    return run_sweep(_model(depth=depths[0]), _probe(), {"placement": ["post", "pre"], "depth": list(depths)})


@pytest.fixture(scope="module")
def depth_sweep() -> pd.DataFrame:
    return _depth_sweep(DEPTHS)


def _check_slopes(frame: pd.DataFrame) -> pd.DataFrame:
    table = depth_slope_table(frame).set_index("placement")
    for placement, law in DEPTH_SLOPES.items():
        assert table.loc[placement, "expected"] == law
        assert abs(table.loc[placement, "slope"] - law) <= SLOPE_TOL, table
    assert table.loc["post", "slope"] - table.loc["pre", "slope"] >= SLOPE_GAP, table
    return table


def test_last_block_w2_gradient_is_flat_in_depth_for_post_ln_and_falls_as_one_over_sqrt_depth_for_pre_ln(
        depth_sweep):
    table = _check_slopes(depth_sweep)
    assert (table["seeds"] == SEEDS).all() and (table["depths"] == "6,12,24").all()


@pytest.mark.slow
def test_the_depth_slopes_hold_up_to_depth_48():
    _check_slopes(_depth_sweep((6, 12, 24, 48)))


def test_pre_ln_residual_stream_grows_linearly_and_inside_the_band_from_the_third_block(depth_sweep):
    pre = depth_sweep[(depth_sweep["placement"] == "pre") & (depth_sweep["depth"] == 24)]
    sq = _blocks(pre, "act_sq_norm")
    # act_sq_norm is E||x||^2 / D per token: the per-feature variance plus the squared per-feature mean
    np.testing.assert_allclose(sq, _blocks(pre, "act_var") + _blocks(pre, "act_sq_mean"), rtol=1e-6)
    blocks = np.arange(1, len(sq) + 1)  # l, the blocks passed
    slope, intercept = np.polyfit(blocks, sq, 1)
    fitted = slope * blocks + intercept
    r2 = 1 - np.sum((sq - fitted) ** 2) / np.sum((sq - sq.mean()) ** 2)
    assert r2 > 0.97 and 0.6 < slope < 1.3  # measured: R^2 0.990, 0.94 per block
    low, high = 1 + BAND_LOW * blocks, 1 + BAND_HIGH * blocks
    assert ((sq[2:] >= low[2:]) & (sq[2:] <= high[2:])).all()
    # The first two blocks sit on the lower bound, up to 5% under it (measured 1.46 and 1.99 for 1.5
    # and 2): attention averages the value vectors of tokens that are still nearly orthogonal, and such
    # an average is short; as the tokens align with depth, each block adds more (~0.95 d).
    assert (sq[:2] >= 0.95 * low[:2]).all() and (sq[:2] <= high[:2]).all()


def test_post_ln_keeps_the_stream_at_the_norms_scale(depth_sweep):
    post = depth_sweep[(depth_sweep["placement"] == "post") & (depth_sweep["depth"] == 24)]
    np.testing.assert_allclose(_blocks(post, "act_sq_norm"), 1.0, atol=1e-3)


def test_post_ln_tokens_align_with_depth_far_more_than_pre_ln(depth_sweep):
    deep = depth_sweep[depth_sweep["depth"] == 24]
    post = _blocks(deep[deep["placement"] == "post"], "token_cos_sim")[-1]
    pre = _blocks(deep[deep["placement"] == "pre"], "token_cos_sim")[-1]
    assert post > 0.95 and post - pre > 0.1  # measured ~0.999 and ~0.78


def _qk_over_v(frame: pd.DataFrame, block: int) -> float:
    """(‖∂L/∂W_Q‖ + ‖∂L/∂W_K‖) / ‖∂L/∂W_V‖ at one block, seed means."""
    w = frame[frame["metric"] == "weight_grad_norm"].groupby("layer")["value"].mean()
    return (w[f"blocks.{block}.attn.q"] + w[f"blocks.{block}.attn.k"]) / w[f"blocks.{block}.attn.v"]


@pytest.mark.parametrize("placement", ["post", "pre"])
def test_one_over_sqrt_depth_residual_scaling_keeps_the_tokens_apart_and_the_query_gradients_alive(
        depth_sweep, placement):
    plain = depth_sweep[(depth_sweep["depth"] == 24) & (depth_sweep["placement"] == placement)]
    scaled = _measure(depth=24, placement=placement, residual_scale=1 / math.sqrt(24))
    cos, cos_scaled = _blocks(plain, "token_cos_sim")[-1], _blocks(scaled, "token_cos_sim")[-1]
    assert cos_scaled < 0.3 and cos_scaled < cos - 0.4  # measured ~0.12-0.15 against 0.78-0.999
    # Noci et al.: aligned tokens make the queries' and keys' gradients vanish relative to the values'
    # (measured at the last block: 0.001 post, 0.21 pre; ~1 with the scaled branches)
    assert _qk_over_v(scaled, 23) > 0.5 and _qk_over_v(plain, 23) < 0.5 * _qk_over_v(scaled, 23)


def test_post_ln_query_and_key_gradients_vanish_with_depth(depth_sweep):
    post = depth_sweep[(depth_sweep["depth"] == 24) & (depth_sweep["placement"] == "post")]
    assert _qk_over_v(post, 23) < 0.05 * _qk_over_v(post, 0)  # measured 0.046 -> 0.001


@pytest.fixture(scope="module")
def pure_attention() -> pd.DataFrame:
    return _measure(depth=6, placement="pre", skip=False, ffn=False, causal=False)


def test_pure_attention_collapses_to_rank_one_doubly_exponentially_and_skips_stop_it(pure_attention):
    pure = _blocks(pure_attention, "token_residual")
    assert pure[3] < 1e-4 * pure[0]  # orders of magnitude within four blocks (measured ~1e-6)
    with_skip = _blocks(_measure(depth=6, placement="pre", ffn=False, causal=False), "token_residual")
    assert (with_skip > 0.3).all()  # of order 1 (measured 0.6-0.97)
    # doubly exponential: the Dong curve through the first two blocks predicts the third within 3x
    curve = collapse_theory(_model(depth=6, **PURE), first=pure[0], second=pure[1])["value"].to_numpy()
    assert curve[2] / 3 < pure[2] < curve[2] * 3


def test_a_causal_mask_slows_the_collapse(pure_attention):
    causal = _blocks(_measure(depth=6, placement="pre", skip=False, ffn=False), "token_residual")
    bidirectional = _blocks(pure_attention, "token_residual")
    assert causal[3] > 100 * bidirectional[3] and causal[-1] < 0.5 * causal[0]


def test_dyt_at_init_is_the_fixed_gain_alpha_to_first_order():
    from normlab.science.norms import token_norm

    dyt = token_norm("dyt", WIDTH)
    x = torch.randn(BATCH, SEQ, WIDTH, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for scale in (1e-1, 1e-2):
            u = 0.5 * scale * x  # alpha x, alpha = 0.5 at init
            error = (dyt(scale * x) - u).abs()
            assert (error <= u.abs() ** 3 / 3 + 1e-7).all()  # |tanh u - u| <= |u|^3 / 3
        # it normalizes nothing: a stream twice as large comes out twice as large (LayerNorm's does not)
        small = 1e-2 * x
        assert torch.allclose(dyt(2 * small), 2 * dyt(small), rtol=1e-3)
        layernorm = token_norm("layernorm", WIDTH)
        assert torch.allclose(layernorm(2 * x), layernorm(x), atol=1e-4)


# --- The command line: the sweep's w2_grad_last column and its depth-slope table -------------------------

TINY_TF = ["--arch", "transformer", "--width", "16", "--heads", "2", "--seq-len", "8", "--batch-size", "4",
           "--seeds", "2", "--device", "cpu", "--format", "table"]


def _cli(capsys, *argv: str) -> str:
    from normlab.cli import main

    assert main(["sweep", *TINY_TF, *argv]) == 0
    return capsys.readouterr().out


def test_a_transformer_depth_sweep_prints_w2_grad_last_and_the_slope_table_with_each_law(capsys):
    out = _cli(capsys, "--over", "placement=post,pre,mix", "--over", "depth=2,4")
    sweep, slopes = out.split("# log-log slope")
    assert "w2_grad_last" in sweep.splitlines()[1]
    rows = {line.split()[0]: line.split() for line in slopes.splitlines()[2:]}
    assert set(rows) == {"post", "pre", "mix"}
    assert " ".join(rows["post"][-7:]) == "+0.0 Xiong et al. 2020, Thm 1"  # expected, source
    assert " ".join(rows["pre"][-7:]) == "-0.5 Xiong et al. 2020, Thm 1"
    assert rows["mix"][1:4] == ["layernorm", "2,4", "2"] and rows["mix"][-2:] == ["withheld:", "tf_mix"]
    for row in rows.values():
        assert math.isfinite(float(row[4])) and float(row[5]) >= 0  # the measured slope and its spread


def test_a_sweep_without_depth_or_of_another_family_prints_no_slope_table(capsys):
    out = _cli(capsys, "--over", "placement=post,pre")
    assert "w2_grad_last" in out and "log-log slope" not in out
    from normlab.cli import main

    assert main(["sweep", "--arch", "mlp", "--width", "4", "--batch-size", "4", "--image-size", "4",
                 "--over", "depth=1,2", "--format", "table"]) == 0
    out = capsys.readouterr().out
    assert "w2_grad_last" not in out and "log-log slope" not in out
