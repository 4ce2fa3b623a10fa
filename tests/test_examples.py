"""The README's and the docs' examples print what the docs show (scripts/examples.py): a number that changes
fails here until the docs are regenerated with ``scripts/examples.py --write``."""

from __future__ import annotations

import pytest

from scripts.examples import Example, all_examples, differences, find

EXAMPLES = all_examples()


def test_the_docs_hold_the_examples_a_reader_copies():
    shown = [e for e in EXAMPLES if e.shown is not None]
    assert {e.path for e in shown} >= {"README.md"} and len(shown) >= 3
    assert {e.kind for e in EXAMPLES} == {"console", "python"}


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.name for e in EXAMPLES])
def test_every_example_prints_what_the_docs_show(example: Example):
    diff = differences(example)
    assert not diff, f"{example.name} prints other lines than the docs show " \
                     f"(scripts/examples.py --write regenerates them):\n{diff}"


def test_a_changed_number_in_the_docs_is_caught(tmp_path, monkeypatch):
    import scripts.examples as ex

    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("```console\n$ echo 1.25\n1.26\n```\n", encoding="utf-8")
    monkeypatch.setattr(ex, "ROOT", tmp_path)
    [example] = find("README.md")
    assert "-1.26" in differences(example) and "+1.25" in differences(example)
