"""The pages' texts against their data: every sentence that states what a default view shows (grows,
falls, flattens, stays below, ...) is quoted in ``ui.content.statements`` with a check, and every check
holds on that view's own numbers, computed through the app's cache as the page computes them."""

from __future__ import annotations

import ast
import math
from functools import cache
from pathlib import Path

import pandas as pd
import pytest

import ui.compute.cache
from ui.content import defaults, statements
from ui.content.claims import BY_KEY, CLAIMS
from ui.content.statements import STATEMENTS, sentences, states_a_trend
from ui.figures import measures
from ui.figures.scaling import final_points
from ui.state import controls
from ui.state.selection import build_selection

ROOT = Path(__file__).resolve().parents[1]
TEXT_FILES = sorted((ROOT / "pages").glob("*.py")) + [
    p for p in sorted((ROOT / "ui" / "content").glob("*.py")) if p.name != "statements.py"]
CLAIM_TEXTS = {text for c in CLAIMS for text in (c.title, c.sentence)}  # decided by their verdicts


def marked_texts(path: Path) -> list[str]:
    """The string literals a file marks for translation (``_("...")``, ``N_("...")``): what a page shows."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("_", "N_")
                and node.args and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)):
            out.append(node.args[0].value)
    return out


def trend_sentences() -> list[tuple[str, str]]:
    """(file, sentence) for every shown sentence that states a trend, claims' own titles and sentences
    aside (their verdicts decide them: tests/test_claims.py)."""
    return [(path.relative_to(ROOT).as_posix(), sentence)
            for path in TEXT_FILES for text in marked_texts(path) if text not in CLAIM_TEXTS
            for sentence in sentences(text) if states_a_trend(sentence)]


def test_every_sentence_that_states_a_trend_is_backed_by_a_statement():
    unbacked = [f"{file}: {words} in {sentence!r}" for file, sentence in trend_sentences()
                if (words := statements.unbacked_words(sentence))]
    assert not unbacked, "sentences stating a trend without a check in ui/content/statements.py:\n" + \
        "\n".join(unbacked)


def shown_texts(page: str) -> list[str]:
    """What a page says (its marked texts), or the README's text, whitespace made single."""
    if page == "README":
        return [" ".join((ROOT / "README.md").read_text(encoding="utf-8").split())]
    return [" ".join(t.split()) for t in marked_texts(ROOT / "pages" / f"{page}.py")]


@pytest.mark.parametrize("statement", STATEMENTS, ids=lambda s: s.quote[:40])
def test_every_statement_quotes_a_text_of_its_page(statement):
    assert any(statement.quote in text for text in shown_texts(statement.page)), (
        f"{statement.quote!r} is not (or no longer) said on {statement.page}")


@pytest.mark.parametrize(("page", "quote", "why"), statements.DEFINITIONS)
def test_every_definition_quotes_a_text_of_its_page(page, quote, why):
    assert why and any(quote in text for text in shown_texts(page)), f"{quote!r} is not said on {page}"


@pytest.mark.parametrize("statement", [s for s in STATEMENTS if s.view is None],
                         ids=lambda s: s.quote[:40])
def test_statements_without_a_view_name_a_claim_or_a_test_that_exists(statement):
    if statement.claim is not None:
        assert statement.claim in BY_KEY, statement.claim
    else:
        file, name = statement.test.split("::")
        assert f"def {name}(" in (ROOT / file).read_text(encoding="utf-8"), statement.test


# --- The default views, computed as their pages compute them -----------------------------------------------


def sidebar_selection():
    return build_selection({c.key: c.default for c in controls.CONTROLS})


def sidebar_view() -> pd.DataFrame:
    selection = sidebar_selection()
    return measures.aggregate(ui.compute.cache.probe_all(selection.models, selection.probe))


def plane_view() -> dict:
    selection = sidebar_selection()
    labels = measures.series_labels(pd.DataFrame([m.to_dict() for m in selection.models]))
    return {label: ui.compute.cache.probe_detail(m, selection.probe)
            for label, m in zip(labels, selection.models, strict=True)}


def groups_view() -> pd.DataFrame:
    selection = sidebar_selection()
    model, counts = defaults.group_sweep(selection.base, "groupnorm")
    return measures.tradeoff_points(ui.compute.cache.sweep(model, selection.probe, "groups", counts))


def bound_view() -> dict:
    by_size, by_width = (ui.compute.cache.sweep(base, defaults.BOUND_PROBE, field, values)
                         for base, field, values in defaults.bound_sweeps())
    return {"batch": defaults.BOUND_PROBE.batch_size,
            **{m: (final_points(by_size, m), final_points(by_width, m))
               for m in ("effective_rank", "stable_rank", "numerical_rank")}}


def dynamics_view() -> pd.DataFrame:
    """BatchNorm's default runs (both seeds): the page's statements speak of BatchNorm only."""
    runs = defaults.dynamics_runs(("batchnorm",))
    return pd.concat([ui.compute.cache.train(m, t).probes for m, t in runs], ignore_index=True)


VIEW_DATA = {"sidebar": sidebar_view, "plane": plane_view, "groups": groups_view, "bound": bound_view,
             "dynamics": dynamics_view}


@cache
def view(name: str):
    return VIEW_DATA[name]()


def test_every_view_has_its_computation():
    assert set(VIEW_DATA) == set(statements.VIEWS)


@pytest.mark.parametrize("statement", [s for s in STATEMENTS if s.view is not None],
                         ids=lambda s: f"{s.page}-{s.quote[:40]}")
def test_every_statement_holds_on_its_default_view(statement):
    assert statement.check(view(statement.view)), (
        f"pages/{statement.page}.py says {statement.quote!r}, but its default view ({statement.view}) "
        "shows otherwise")


# --- The claims' pictures show what their titles and verdicts speak of ------------------------------------


def visible(trace, axis_range, log: bool = False) -> bool:
    """A trace has a finite point inside the axis range (or the axis fits the data by itself); a log
    axis's range is in powers of ten."""
    ys = [y for y in (trace.y if trace.y is not None else ()) if y is not None and y == y]
    if log:
        ys = [math.log10(y) for y in ys if y > 0]
    return bool(ys) and (axis_range is None or any(axis_range[0] <= y <= axis_range[1] for y in ys))


@pytest.mark.parametrize("claim", CLAIMS, ids=lambda c: c.key)
def test_every_legend_entry_of_a_claims_picture_points_at_a_drawn_line(claim):
    from test_claims import measured

    fig = claim.picture(*measured(claim))
    if fig.layout.showlegend is False:
        return
    for trace in fig.data:
        if trace.showlegend is False or not trace.name:
            continue
        axis = fig.layout["yaxis" + (trace.yaxis or "y")[1:]]
        assert visible(trace, axis.range, axis.type == "log"), (
            f"{claim.key}: legend entry {trace.name!r} has nothing in range")


def test_the_group_rank_picture_runs_over_group_size_as_its_title_and_verdict_do():
    from test_claims import measured

    claim = BY_KEY["group_rank"]
    frame, stats = measured(claim)
    bars = claim.picture(frame, stats).data[0]
    sizes = [int(t.split(" ")[0]) for t in claim.picture(frame, stats).layout.xaxis.ticktext]
    assert sizes == sorted(sizes) and sizes[0] == 1 and sizes[-1] == 16  # InstanceNorm ... LayerNorm
    assert all(a > b for a, b in zip(bars.y, bars.y[1:], strict=False)), "the bars fall as the groups grow"
    assert "group size" in claim.verdict(frame, stats).text and "larger groups, lower rank" in claim.title
