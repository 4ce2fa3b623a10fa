"""Shareable links: every control in the URL, restored on open; bad parameters fall back with a notice."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from streamlit.testing.v1 import AppTest

from ui.state import controls as C
from ui.state import links

APP = Path(__file__).resolve().parents[1] / "app.py"
TIMEOUT = 300


def value_of(control: C.Control):
    """A strategy for any value the control accepts."""
    if control.kind == "choice":
        return st.sampled_from(control.choices)
    if control.kind == "float":
        return st.sampled_from(control.choices)
    if control.kind == "bool":
        return st.booleans()
    if control.kind == "choices":
        return st.lists(st.sampled_from(control.choices), min_size=1, unique=True).map(tuple)
    return st.integers(control.low, control.high)


@settings(max_examples=200, deadline=None)
@given(st.fixed_dictionaries({}, optional={c.key: value_of(c) for c in C.CONTROLS}))
def test_parameters_round_trip_every_control_value(values):
    params = C.to_params(values)
    parsed, notices = C.parse_params({k: [v] for k, v in params.items()})
    assert notices == []
    assert {**C.DEFAULTS, **parsed} == {**C.DEFAULTS, **values}


def test_only_values_that_differ_from_the_defaults_enter_the_link():
    assert C.to_params(C.DEFAULTS) == {}
    assert C.to_params({**C.DEFAULTS, "depth": 12, "norms": ("batchnorm", "layernorm")}) == {
        "depth": "12", "norms": "batchnorm,layernorm"}
    assert C.to_params({"skipinit": True}, page="rank-collapse") == {"page": "rank-collapse", "skipinit": "1"}


@pytest.mark.parametrize(("params", "expected"), [
    ({"norms": ["batchnorm", "layernorm"]}, {"norms": ("batchnorm", "layernorm")}),  # repeated parameter
    ({"norms": ["batchnorm,none,batchnorm"]}, {"norms": ("batchnorm", "none")}),  # repeats dropped
    ({"preact": ["true"], "skipinit": ["0"]}, {"preact": True, "skipinit": False}),
    ({"rank_tol": ["0.0001"]}, {"rank_tol": 1e-4}),
    ({"net": ["vgg10"], "depth": ["3"]}, {"net": "vgg10", "depth": 3}),
])
def test_valid_parameters_parse_into_control_values(params, expected):
    values, notices = C.parse_params(params)
    assert values == expected and notices == []


@pytest.mark.parametrize(("params", "named"), [
    ({"depth": ["999"]}, "depth=999 is outside 1..320"),
    ({"depth": ["deep"]}, "depth='deep' is not a whole number"),
    ({"norms": ["batchnorm,bogusnorm"]}, "bogusnorm"),
    ({"net": ["resnet9000"]}, "net='resnet9000' is not one of"),
    ({"width": ["7"]}, "width='7' is not one of"),
    ({"preact": ["maybe"]}, "preact='maybe' is not true/false"),
    ({"rank_tol": ["0.5"]}, "rank_tol='0.5' is not one of"),
    ({"colour": ["red"]}, "unknown parameter 'colour'"),
])
def test_invalid_parameters_are_dropped_with_a_notice_naming_them(params, named):
    values, notices = C.parse_params(params)
    assert values == {}
    assert len(notices) == 1 and named in notices[0]


def test_group_counts_in_a_link_must_divide_the_linked_widths():
    values, notices = links.check_link({"width": ["8"], "groups": ["16"]})
    assert values == {"width": 8}
    assert "groups=16 does not divide every width; allowed: 1, 2, 4, 8" in notices[0]
    values, notices = links.check_link({"width": ["32"], "groups": ["16"]})
    assert values == {"width": 32, "groups": 16} and notices == []


# --- in the app --------------------------------------------------------------------------------------------


def open_link(**params) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.query_params.update(params)
    at.run()
    assert not at.exception, at.exception
    return at


def notice_text(at: AppTest) -> str:
    """The link notice as shown: a fixed warning, then the link's problems as plain text."""
    assert at.sidebar.warning, "no link notice"
    return "\n".join(t.value for t in at.sidebar.text)


def test_an_old_page_parameter_still_opens_its_page_once():
    at = open_link(page="gradient-explosion", net="cnn", norms="layernorm,batchnorm", depth="5", width="8",
                   batch="16", seeds="2", grad_scale="linear")
    assert at.title[0].value == "Property 3 · Gradient explosion at initialization"
    assert at.selectbox(key="net").value == "cnn"
    assert at.multiselect(key="norms").value == ["layernorm", "batchnorm"]
    assert at.select_slider(key="depth").value == 5 and at.select_slider(key="width").value == 8
    assert at.select_slider(key="batch").value == 16 and at.slider(key="seeds").value == 2
    assert at.segmented_control(key="grad_scale").value == "linear"
    selection = at.session_state["_selection"]
    assert [(m.arch, m.norm, m.depth, m.width) for m in selection.models] == [
        ("cnn", "layernorm", 5, 8), ("cnn", "batchnorm", 5, 8)]
    assert selection.probe.batch_size == 16 and selection.probe.seeds == 2
    assert not at.sidebar.warning


def test_a_link_with_bad_parameters_falls_back_to_defaults_with_a_notice():
    at = open_link(depth="999", norms="batchnorm,nonsense", width="16", groups="5", page="nowhere")
    notice = notice_text(at)
    for named in ("depth=999", "nonsense", "groups=5", "unknown page 'nowhere'"):
        assert named in notice
    assert at.select_slider(key="depth").value == C.DEFAULTS["depth"]
    assert at.multiselect(key="norms").value == list(C.DEFAULTS["norms"])
    assert at.title[0].value.startswith("Normalization at initialization")  # the default page
    assert not at.error


def test_the_url_follows_every_control_change():
    at = open_link(norms="batchnorm", depth="3")
    assert at.query_params == {"norms": "batchnorm", "depth": "3"}
    at.select_slider(key="depth").set_value(4).run()
    at.checkbox(key="skipinit").check().run()
    assert at.query_params == {"norms": "batchnorm", "depth": "4", "skipinit": "1"}
    at.select_slider(key="depth").set_value(C.DEFAULTS["depth"]).run()
    assert "depth" not in at.query_params  # defaults keep the link short


def test_the_share_box_holds_a_link_that_reopens_the_same_view():
    at = open_link(norms="batchnorm", depth="3", spec_scale="linear")
    at.switch_page("pages/rank.py").run()
    shared = next(c.value for c in at.sidebar.code)
    path, _, query = shared.partition("?")
    assert path.startswith("http") and path.endswith("/rank-collapse"), shared  # the page is the path
    assert "page=" not in query
    params = dict(part.split("=", 1) for part in query.split("&"))
    again = open_link(**{k: v.replace("%2C", ",") for k, v in params.items()})
    again.switch_page("pages/rank.py").run()  # what the path opens (AppTest cannot type a path)
    assert again.title[0].value == "Property 2 · Rank collapse"
    assert again.session_state["_selection"] == at.session_state["_selection"]
    assert again.segmented_control(key="spec_scale").value == "linear"


# --- a link is data, never markup ---------------------------------------------------------------------

PAYLOADS = {
    "image": "![x](http://127.0.0.1:8662/v.png)",
    "link": "[Log in](http://x/phish)",
    "colour": ":red[**Server compromised**]",
    "html": "<img src=x onerror=alert(1)>",
}
WHERE = ["value", "key", "page"]


def _link_with(payload: str, where: str) -> dict:
    if where == "value":
        return {"net": payload, "norms": payload, "depth": payload}
    if where == "key":
        return {payload: "1"}
    return {"page": payload}


def _markup_elements(at: AppTest) -> list[str]:
    """Everything the run sent that Streamlit renders as markdown or HTML."""
    kinds = ("markdown", "caption", "warning", "error", "info", "success", "title", "subheader", "header")
    return [el.value for kind in kinds for el in at.get(kind)] + [el.value for el in at.get("html")]


@pytest.mark.parametrize("where", WHERE)
@pytest.mark.parametrize("payload", PAYLOADS.values(), ids=PAYLOADS)
def test_markup_in_a_link_is_shown_as_plain_text(payload, where):
    at = open_link(**_link_with(payload, where))
    markup = _markup_elements(at)
    for needle in (payload, "http://127.0.0.1:8662", "http://x/phish", ":red[", "<img", "](", "![x"):
        assert not any(needle in text for text in markup), (needle, [t for t in markup if needle in t])
    text = notice_text(at)
    assert payload[:20] in text, text  # the viewer sees what the link held, as text


def test_link_values_are_shown_cut_to_a_short_length():
    at = open_link(net="n" * 150)
    text = notice_text(at)
    assert "n" * 150 not in text and "n" * (links.SHOWN_CHARS - 1) + "…" in text


@pytest.mark.parametrize("where", WHERE)
def test_a_huge_token_is_refused_by_its_length_quickly(where, monkeypatch):
    token = "A" * 16_000
    calls = []
    monkeypatch.setattr(C, "parse_params", lambda *a, **k: calls.append(a) or ({}, []))
    start = time.perf_counter()
    values, notices = links.check_link({k: [v] for k, v in _link_with(token, where).items()})
    assert time.perf_counter() - start < 0.05
    assert values == {}
    assert calls == [], "refused before any parsing"
    assert len(" ".join(notices)) < 200 and token[:50] not in " ".join(notices)


def test_a_huge_token_in_the_app_leaves_a_short_notice_and_the_default_view():
    at = open_link(net="A" * 16_000, **{"B" * 16_000: "1"}, page="C" * 16_000)
    text = notice_text(at)
    assert len(text) < 400 and "A" * 50 not in text
    assert at.selectbox(key="net").value == C.DEFAULTS["net"]


def test_too_many_parameters_are_refused_by_their_count():
    params = {f"p{i}": ["1"] for i in range(links.MAX_PARAMS + 1)}
    values, notices = links.check_link(params)
    assert values == {} and len(notices) == 1 and str(links.MAX_PARAMS) in notices[0]


@pytest.mark.parametrize("text", [*PAYLOADS.values(), "a_b*c*", "`code`", "<b>x</b>", ":smile:"])
def test_escaped_text_reads_the_same_once_markdown_unescapes_it(text):
    escaped = links.markdown_text(text)
    assert re.sub(r"\\(.)", r"\1", escaped) == text
    assert not re.search(r"(?<!\\)[\[\]<>:*_`!]", escaped), escaped
