"""The paper's claims: setups that load into the sidebar, verdicts from measurements, lecture stepping."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from helpers import contract_frame, registered_pages
from streamlit.testing.v1 import AppTest

import ui.compute.cache
from normlab import ModelConfig, ProbeConfig
from ui.content import claims
from ui.content.claims import CLAIMS
from ui.figures import measures
from ui.state import controls

APP = Path(__file__).resolve().parents[1] / "app.py"
TIMEOUT = 300


def measured(claim: claims.Claim) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The claim's frame as the claims page gets it (through the app's cache, so later app runs reuse it)."""
    frame = pd.concat([ui.compute.cache.probe(m, p) for m, p in claim.runs()], ignore_index=True)
    return frame, measures.aggregate(frame)


def resnets(norms, var, **model) -> pd.DataFrame:
    return pd.concat([
        contract_frame(ModelConfig(arch="resnet", norm=n, depth=6, width=8, **model), var=var) for n in norms
    ], ignore_index=True)


# --- setups -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("claim", CLAIMS, ids=lambda c: c.key)
def test_every_claim_is_set_up_with_sidebar_controls_only(claim):
    assert set(claim.values) <= {c.key for c in controls.CONTROLS if c.page is None}
    for variant in claim.variants:
        assert set(variant) <= set(controls.BY_KEY)
    runs = claim.runs()
    assert runs and len(set(runs)) == len(runs)
    # the networks of the first variant are exactly what "load into the sidebar" shows
    assert {m.norm for m, _ in runs} >= set(claim.control_values()["norms"])


def test_claim_keys_are_unique_and_their_pages_exist():
    assert len({c.key for c in CLAIMS}) == len(CLAIMS)
    assert {f"pages/{c.page}.py" for c in CLAIMS} <= set(registered_pages())


# --- verdicts on synthetic frames: each can hold and each can fail ---------------------------------------


def test_linear_growth_holds_for_linear_and_fails_for_exponential():
    linear = resnets(("batchnorm", "layernorm"), var=lambda b: 0.7 + 0.34 * b)
    assert claims.linear_growth(linear, measures.aggregate(linear)).holds is True
    doubling = resnets(("batchnorm",), var=lambda b: 0.7 * 2 ** b)
    verdict = claims.linear_growth(doubling, measures.aggregate(doubling))
    assert verdict.holds is False and "exponential" in verdict.text


def test_linear_growth_is_undecided_when_the_variance_overflows():
    frame = resnets(("batchnorm",), var=lambda b: math.inf)
    assert claims.linear_growth(frame, measures.aggregate(frame)).holds is None


def test_skipinit_verdict_needs_exponential_without_and_flat_with():
    without = resnets(("none", "sws"), var=lambda b: 2.0 ** b)
    with_skip = resnets(("none", "sws"), var=lambda b: 0.6, skipinit=True)
    frame = pd.concat([without, with_skip], ignore_index=True)
    assert claims.exponential_then_skipinit(frame, measures.aggregate(frame)).holds is True
    still_growing = pd.concat([without, resnets(("none",), var=lambda b: 2.0**b, skipinit=True)])
    assert claims.exponential_then_skipinit(still_growing, measures.aggregate(still_growing)).holds is False


def test_stage_reset_reads_the_blocks_around_each_transition():
    def staged(var):
        model = ModelConfig(arch="resnet", norm="batchnorm", depth=3, width=4, stages=2)
        return contract_frame(model, var=var)

    reset = staged(lambda b: 0.7 + 0.34 * ((b - 1) % 3))
    assert claims.stage_reset(reset, measures.aggregate(reset)).holds is True
    no_reset = staged(lambda b: 0.7 + 0.34 * b)
    assert claims.stage_reset(no_reset, measures.aggregate(no_reset)).holds is False


def test_batchnorm_rank_verdict_compares_final_similarity():
    def pair(bn_cos, ln_cos):
        bn, ln = (ModelConfig(arch="resnet", norm=n, depth=6, width=8) for n in ("batchnorm", "layernorm"))
        return pd.concat([contract_frame(bn, cos=lambda b: bn_cos), contract_frame(ln, cos=lambda b: ln_cos)],
                         ignore_index=True)

    apart = pair(0.3, 0.95)
    assert claims.batchnorm_rank(apart, measures.aggregate(apart)).holds is True
    alike = pair(0.9, 0.95)
    assert claims.batchnorm_rank(alike, measures.aggregate(alike)).holds is False


def sweep(cos, grad_base, rank=lambda g: 3.0) -> pd.DataFrame:
    return pd.concat([
        contract_frame(ModelConfig(arch="resnet", norm="groupnorm", depth=3, width=8, groups=g),
                       cos=lambda b, g=g: cos(g), grad=lambda k, g=g: grad_base(g) ** k,
                       rank=lambda b, g=g: rank(g))
        for g in (1, 2, 4, 8)
    ], ignore_index=True)


def test_tradeoff_verdict_reads_both_trends_from_a_sweep():
    # more groups (smaller groups): less similar features, faster-growing gradients
    trade = sweep(cos=lambda g: 0.9 - 0.1 * g, grad_base=lambda g: 1 + 0.1 * g)
    assert claims.tradeoff(trade, measures.aggregate(trade)).holds is True
    no_trade = sweep(cos=lambda g: 0.5, grad_base=lambda g: 1 + 0.1 * g)
    assert claims.tradeoff(no_trade, measures.aggregate(no_trade)).holds is False


def test_group_rank_verdict_wants_rank_falling_with_group_size():
    falling = sweep(cos=lambda g: 0.5, grad_base=lambda g: 1.1, rank=lambda g: 1.0 + 0.2 * g)
    assert claims.group_rank(falling, measures.aggregate(falling)).holds is True
    rising = sweep(cos=lambda g: 0.5, grad_base=lambda g: 1.1, rank=lambda g: 5.0 - 0.2 * g)
    assert claims.group_rank(rising, measures.aggregate(rising)).holds is False


# --- verdicts on the real measurements: the paper's claims hold at these sizes ---------------------------


@pytest.mark.parametrize("claim", CLAIMS, ids=lambda c: c.key)
def test_every_claim_holds_when_measured(claim):
    frame, stats = measured(claim)
    verdict = claim.verdict(frame, stats)
    assert verdict.holds is True, verdict.text
    assert claim.picture(frame, stats).data  # the card's picture has something to show


# --- in the app --------------------------------------------------------------------------------------------


def open_claims(**params) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.query_params.update(page="paper-claims", **params)
    at.run()
    assert not at.exception, at.exception
    return at


def test_claims_page_shows_a_computed_verdict_for_every_claim():
    at = open_claims()
    assert [s.value for s in at.subheader] == [f"{i + 1}. {c.title}" for i, c in enumerate(CLAIMS)]
    verdicts = [e.value for e in (*at.success, *at.warning, *at.info) if "Verdict" in e.value]
    assert len(verdicts) == len(CLAIMS)
    assert len(at.success) == len(CLAIMS), [w.value for w in at.warning]


@pytest.mark.parametrize("index", range(len(CLAIMS)), ids=[c.key for c in CLAIMS])
def test_load_puts_the_claims_setup_into_the_sidebar(index):
    claim = CLAIMS[index]
    at = open_claims()
    at.button(key=f"load-{claim.key}").click().run()
    assert not at.exception
    values = claim.control_values()
    assert at.selectbox(key="net").value == values["net"]
    assert at.multiselect(key="norms").value == list(values["norms"])
    if values["net"] in ("resnet", "cnn", "mlp"):
        assert at.select_slider(key="depth").value == values["depth"]
    selection = at.session_state["_selection"]
    assert {m.norm for m in selection.models} == set(values["norms"])
    assert selection.probe == claim.runs()[0][1] or len(claim.variants) > 1


def test_lecture_mode_shows_one_claim_and_steps_through_them():
    at = open_claims(lecture="1")
    assert [s.value for s in at.subheader] == [f"1. {CLAIMS[0].title}"]
    assert "Inputs, batch and seeds" not in [e.label for e in at.sidebar.expander]  # plumbing hidden
    assert at.button(key="claim_prev").disabled  # no wrap: Previous stops at claim 1
    at.button(key="claim_next").click().run()
    assert [s.value for s in at.subheader] == [f"2. {CLAIMS[1].title}"]
    assert at.multiselect(key="norms").value == list(CLAIMS[1].values["norms"])
    assert at.query_params["claim"] == "1" and at.query_params["lecture"] == "1"
    at.button(key="claim_prev").click().run()
    assert [s.value for s in at.subheader] == [f"1. {CLAIMS[0].title}"]
    assert at.button(key="claim_prev").disabled and not at.button(key="claim_next").disabled


def test_stepping_from_another_page_opens_claim_1_on_the_claims_page():
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.query_params.update(lecture="1", norms="batchnorm", depth="3")
    at.run()
    assert at.title[0].value.startswith("Normalization at initialization")
    at.button(key="claim_next").click().run()
    assert [s.value for s in at.subheader] == [f"1. {CLAIMS[0].title}"]  # lecture mode starts at claim 1
    assert at.multiselect(key="norms").value == list(CLAIMS[0].values["norms"])  # its own setup at once


def test_probe_config_for_claims_is_built_like_the_sidebars():
    claim = claims.BY_KEY["instance_images"]
    probes = {p.input for _, p in claim.runs()}
    assert probes == {"gaussian", "images"}
    assert all(isinstance(p, ProbeConfig) and p.seeds == 2 for _, p in claim.runs())


def test_depth_in_motion_adds_play_frames_to_the_variance_and_gradient_charts():
    for page, key in (("pages/variance.py", "var_motion"), ("pages/gradients.py", "grad_motion")):
        at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
        at.query_params.update(norms="batchnorm", depth="4")
        at.run()
        at.switch_page(page).run()
        assert '"frames"' not in at.get("plotly_chart")[0].proto.spec  # off by default: a light redraw
        at.toggle(key=key).set_value(True).run()
        assert not at.exception
        spec = at.get("plotly_chart")[0].proto.spec
        assert '"frames"' in spec and "Play" in spec
