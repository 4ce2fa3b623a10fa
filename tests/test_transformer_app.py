"""The transformer in the dashboard under AppTest: its sidebar controls, its links, the property pages and the
Placement page in both languages."""

from __future__ import annotations

import re

import pytest
from helpers import charts, open_app

from normlab.core import catalog
from ui.figures.style import figure_text
from ui.state import controls as C

# A transformer small enough to probe in about a second on a busy CPU.
SMALL = dict(net="transformer", norms=["layernorm", "dyt"], depth="3", width="16", heads="2", seq_len="8",
             batch="4")
PROPERTY_PAGES = ("pages/overview.py", "pages/variance.py", "pages/rank.py", "pages/gradients.py")
HANGUL = re.compile("[\uac00-\ud7a3]")


def lines(fig) -> set[str]:
    return {t.name for t in fig.data if t.mode == "lines+markers" and t.showlegend is not False}


def test_choosing_the_transformer_shows_its_controls_and_only_its_normalizers():
    at = open_app(norms=["batchnorm"], depth="2", width="8")
    at.selectbox(key="net").set_value("transformer").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    norms = at.multiselect(key="norms")
    assert norms.value == list(C.FAMILY_NORMS["transformer"])  # batchnorm does not apply: its own choice
    assert set(norms.options) == {catalog.label(n) for n in catalog.allowed_norms("transformer")}
    assert at.selectbox(key="placement").value == "pre"
    width = catalog.family("transformer").default_width
    assert at.select_slider(key="heads").options == [str(d) for d in range(1, width + 1) if width % d == 0]
    assert at.select_slider(key="seq_len").value == 32
    sliders = {s.key for s in at.sidebar.select_slider}
    assert "image" not in sliders  # images do not apply to a token model
    assert at.sidebar.selectbox(key="tokens").value == "tokens"
    assert {c.key for c in at.sidebar.checkbox} >= {"causal", "qk_norm", "ffn", "skip"}
    assert at.query_params["net"] == "transformer"


def test_the_other_families_hide_the_transformer_controls():
    at = open_app(norms=["batchnorm"], depth="2", width="8")
    keys = {w.key for w in (*at.sidebar.selectbox, *at.sidebar.select_slider, *at.sidebar.checkbox)}
    assert not keys & {"placement", "heads", "seq_len", "tokens", "causal", "qk_norm", "ffn", "skip"}
    assert "image" in keys


def test_heads_follow_the_width_and_every_transformer_control_reaches_the_networks():
    at = open_app("pages/variance.py", **SMALL)
    at.select_slider(key="width").set_value(8).run()
    assert at.select_slider(key="heads").options == ["1", "2", "4", "8"]
    at.selectbox(key="placement").set_value("post").run()
    at.checkbox(key="causal").uncheck().run()
    at.segmented_control(key="residual_scale").set_value("1/sqrt(L)").run()
    at.checkbox(key="ffn").uncheck().run()
    assert not at.error, [e.value for e in at.error]
    model = at.session_state["_selection"].base
    assert (model.placement, model.causal, model.ffn, model.width) == ("post", False, False, 8)
    assert model.residual_scale == pytest.approx(3 ** -0.5)
    assert at.query_params["residual_scale"] == "1/sqrt(L)" and at.query_params["placement"] == "post"


def test_a_hostile_link_is_refused_by_name_and_shown_as_text():
    at = open_app(net="transformer", norms="batchnorm,layernorm", heads="3", width="16", depth="2",
                  residual_scale="<img src=x onerror=alert(1)>", placement="**sideways**", seq_len="8",
                  batch="4")
    notices = "\n".join(t.value for t in at.sidebar.text)
    assert "batchnorm do not apply to transformer" in notices
    assert "heads=3 does not divide the width 16" in notices
    assert "residual_scale='<img src=x onerror=alert(1)>' is not one of" in notices
    assert "placement='**sideways**' is not one of post, pre, peri, mix, lns" in notices
    assert not at.error
    model = at.session_state["_selection"].base
    assert (model.norm, model.heads, model.placement) == ("layernorm", 4, "pre")


@pytest.mark.parametrize("lang", ["en", "ko"])
@pytest.mark.parametrize("page", PROPERTY_PAGES)
def test_every_property_page_draws_a_transformer_by_block(page, lang):
    at = open_app(page, lang=lang, **SMALL)
    assert not at.error, [e.value for e in at.error]
    figs = charts(at)
    assert figs
    # the depth axes count blocks; the gradient page's axis names the block's linear maps
    wanted = "W_O" if page == "pages/gradients.py" else "블록" if lang == "ko" else "block"
    titles = [axis.get("title", {}).get("text", "") for f in figs
              for key, axis in f.layout.to_plotly_json().items() if key.startswith("xaxis")]
    assert any(wanted in t for t in titles), titles
    text = " ".join(figure_text(f) + " ".join(t.name or "" for t in f.data) for f in figs)
    assert "De & Smith" not in text and "Yang et al." not in text  # no ResNet or BatchNorm law drawn
    if lang == "ko":
        assert HANGUL.search(at.title[0].value)


def test_the_rank_page_opens_on_the_token_cosine_for_a_transformer():
    at = open_app("pages/rank.py", **SMALL)
    assert at.segmented_control(key="rank_measure_tokens").value == "token_cos_sim"
    assert any("token vectors" in c.value for c in at.caption)
    assert any("among the tokens" in i.value for i in at.info)  # the image pictures are left out, said why
    assert "Distributions at one layer" not in [s.value for s in at.subheader]  # no heading over nothing
    fig = charts(at)[0]
    assert lines(fig) == {"LayerNorm", "Dynamic Tanh (DyT)"}
    assert max(max(t.y) for t in fig.data if t.mode == "lines+markers") <= 1.0


def test_the_variance_page_says_why_no_law_is_drawn_for_dyt():
    at = open_app("pages/variance.py", **SMALL)
    said = " ".join(c.value for c in at.caption)
    assert "Dynamic Tanh (DyT) · pre: DyT and Derf normalize nothing" in said


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_the_placement_page_compares_placements_side_by_side(lang):
    at = open_app("pages/placement.py", lang=lang)
    assert not at.error, [e.value for e in at.error]
    figs = charts(at)
    assert len(figs) == 5
    for fig in figs[:3]:
        assert lines(fig) == {"LayerNorm · post", "LayerNorm · pre"}
    slopes = figure_text(figs[3])
    assert re.search(r"[+-]\d\.\d\d", slopes)  # each series' slope written on the plot
    assert len(lines(figs[4])) == 2  # pure attention with and without skips
    if lang == "ko":
        assert HANGUL.search(at.title[0].value)


def test_the_placement_page_adds_a_normalizer_and_its_link_says_so():
    at = open_app("pages/placement.py")
    at.multiselect(key="pl_norms").set_value(["layernorm", "rmsnorm"]).run()
    assert not at.error
    assert lines(charts(at)[0]) == {"LayerNorm · post", "LayerNorm · pre", "RMSNorm · post", "RMSNorm · pre"}
    assert at.query_params["pl_norms"] == "layernorm,rmsnorm"
    at.multiselect(key="pl_norms").set_value([]).run()
    assert any("at least one placement" in i.value for i in at.info) and not at.error
