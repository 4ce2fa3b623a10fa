"""The dashboard in English and Korean: one gettext catalog, complete, compiled, and every page walked.

The Korean walk opens every page under AppTest with ``lang=ko`` and reads every string a viewer can
see: markdown, headings, captions, alerts, widget labels, help and options, expanders, and the plotly
figures' titles, axes, legends, annotations, buttons and hover texts. Words of the field (normalizer
and metric names, architectures, units, names of people) may stay in English; any other English word
fails the test, with the string it is in.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
from helpers import APP, ROOT, open_app, registered_pages

from normlab.core.catalog import METRICS, NORM_INFO
from scripts.i18n import translation_problems
from ui.state import i18n

HANGUL = re.compile(r"[\uac00-\ud7a3]")
# Words a Korean page keeps in English: the field's terms and names, units, abbreviations.
TERMS = {
    # architectures, methods, people and tools the paper and the pages name
    "resnet", "resnets", "vgg", "mlp", "mlps", "cnn", "cnns", "skipinit", "kaiming", "relu", "tlu",
    "de", "smith", "lubana", "dick", "tanaka", "beyond", "batchnorm", "neurips", "pytorch", "torch",
    "sgd", "cifar", "imagenet", "fixup", "he", "normlab", "csv", "json", "png", "svg", "parquet", "ray",
    "url", "gpu", "cpu", "cuda", "mps", "pca", "pc", "svd", "id", "ok", "yang",
    # the transformer's placements and sub-layers (names, like ResNet), and the papers that state its laws
    "post", "pre", "peri", "mix", "lns", "ln", "ffn", "qk", "xiong", "kedia", "dong", "cordonnier", "loukas",
    "noci", "zhu", "icml", "cvpr", "xavier",
    # the engine's module names of layers, shown as they are (a classifier "head")
    "head",
    # units and symbols
    "ms", "mib", "gib", "mb", "gflop", "flop", "flops", "px", "inf", "nan", "log", "max", "min", "std",
    "var", "exp", "cos", "sim", "lr", "acc", "spearman", "pearson",
}
for spec in NORM_INFO.values():  # the layers keep their names (BatchNorm, Weight Normalization, ...)
    TERMS.update(w.lower() for w in re.findall(r"[A-Za-z]+", f"{spec.name} {spec.label}"))
for metric in METRICS:
    TERMS.update(w.lower() for w in re.findall(r"[A-Za-z]+", metric))
WORD = re.compile(r"(?<![\w./%{])[A-Za-z][A-Za-z']+(?![\w(])")  # not inside identifiers, paths, fields
NOISE = [
    re.compile(r"<style>.*?</style>", re.S),  # lecture mode's stylesheet, not text
    re.compile(r"%\{[^}]*\}"),  # plotly hover fields
    re.compile(r"<[^>]+>"),  # html tags of hover texts
    re.compile(r"`[^`]*`"),  # code
    re.compile(r"\b\w+(?:\.\w+)+\b"),  # the engine's layer names: features.0.conv, stages.1.blocks.0
    re.compile(r"https?://\S+"),
    re.compile(r":material/\w+:"),
    re.compile(r"\b\w+(?:_\w+)+\b"),  # identifiers: act_var, cos_sim_centered, group_size
    re.compile(r"\b[A-Za-z]*\d[\w.]*\b"),  # numbers with units, G=4, ×2, 1e-3
]


def english_words(text: str) -> list[str]:
    """The English words in ``text`` that are not the field's terms."""
    for pattern in NOISE:
        text = pattern.sub(" ", text)
    return [w for w in WORD.findall(text) if w.lower().strip("'") not in TERMS and len(w) > 1]


# --- What a viewer sees -------------------------------------------------------------------------------

SHOWN_FIELDS = {"body", "label", "help", "options", "content", "placeholder", "caption"}
FIGURE_KEYS = {"text", "name", "hovertemplate", "label", "prefix", "suffix", "title"}
FIGURE_SKIP = {"meta", "customdata", "legendgroup", "uirevision", "ids", "x", "y", "z", "template"}


def figure_texts(spec, out: list[str]) -> None:
    """The strings a viewer reads in a plotly figure's JSON (not its data or its template)."""
    if isinstance(spec, dict):
        for key, value in spec.items():
            if key in FIGURE_SKIP:
                continue
            if key in FIGURE_KEYS and isinstance(value, str):
                out.append(value)
            elif key in ("text",) and isinstance(value, list):
                out.extend(v for v in value if isinstance(v, str))
            else:
                figure_texts(value, out)
    elif isinstance(spec, list):
        for item in spec:
            figure_texts(item, out)


def _proto_texts(message, out: list[str]) -> None:
    for field, value in message.ListFields():
        items = value if field.is_repeated else [value]
        for item in items:
            if field.type == field.TYPE_MESSAGE:
                _proto_texts(item, out)
            elif field.type == field.TYPE_STRING:
                if field.name == "spec" and type(message).__name__ == "PlotlyChart":
                    figure_texts(json.loads(item), out)
                elif field.name in SHOWN_FIELDS and type(message).__name__ != "Code":
                    out.append(item)


def shown_texts(at) -> list[str]:
    """Every string the page shows, from the element tree AppTest holds."""
    out: list[str] = []

    def walk(node) -> None:
        proto = getattr(node, "proto", None)
        if proto is not None and not isinstance(proto, (str, bytes)):
            _proto_texts(proto, out)
        children = getattr(node, "children", None)
        if isinstance(children, dict):
            for child in children.values():
                walk(child)

    walk(at._tree)
    return [t for t in out if t.strip()]


def leftovers(texts: list[str]) -> list[str]:
    """Strings with English words left, except the language menu's own names (a way back to English)."""
    names = set(i18n.LANGUAGE_NAMES.values())
    return [f"{words} in {text[:160]!r}" for text in dict.fromkeys(texts)
            if text not in names and (words := english_words(text))]


# --- The catalog --------------------------------------------------------------------------------------


def test_every_marked_string_is_translated_and_compiled():
    problems = translation_problems()
    assert not problems, f"{len(problems)} catalog problems:\n" + "\n".join(problems[:60])


def _translate_calls():
    for path in [APP, *sorted((ROOT / "pages").glob("*.py")), *sorted((ROOT / "ui").glob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("_", "N_", "ngettext"):
                yield path, node


def test_translated_strings_are_literals_with_named_fields():
    """Babel extracts only literal strings: an f-string or a sum inside _() would never be translated."""
    bad = []
    for path, node in _translate_calls():
        for arg in node.args[:2] if node.func.id == "ngettext" else node.args[:1]:
            if isinstance(arg, (ast.JoinedStr, ast.BinOp)):
                bad.append(f"{path.name}:{node.lineno}")
            if isinstance(arg, ast.Constant) and re.search(r"\{\}|%[sd]", str(arg.value)):
                bad.append(f"{path.name}:{node.lineno} (unnamed field)")
    assert not bad, bad


def test_the_language_follows_the_link_then_the_browser():
    assert i18n.from_locale("ko-KR") == "ko" and i18n.from_locale("ko") == "ko"
    assert i18n.from_locale("en-GB") == "en" and i18n.from_locale("fr-FR") == "en"
    assert i18n.from_locale(None) == "en"
    assert i18n.choose("en", "ko-KR") == "en" and i18n.choose(None, "ko-KR") == "ko"
    with i18n.use("ko"):
        assert i18n.current() == "ko"
    assert i18n.current() == "en"
    with pytest.raises(ValueError, match="lang must be one of en, ko"):
        with i18n.use("fr"):
            pass


def test_the_language_switch_pins_choices_but_not_flags_or_files():
    assert i18n._choice("resnet") and i18n._choice(16) and i18n._choice(1e-3)
    assert i18n._choice(["batchnorm", "none"]) and i18n._choice((4, 8))
    assert not i18n._choice(True) and not i18n._choice([]) and not i18n._choice(None)
    assert not i18n._choice([object()]) and not i18n._choice([True, False])


def test_the_english_words_check_sees_english_and_passes_terms():
    assert english_words("Look for: the variance grows") == ["Look", "for", "the", "variance", "grows"]
    assert english_words("배치 정규화 (BatchNorm)의 act_var, ResNet 깊이 32, 1e-3") == []
    assert english_words("<b>%{x}</b>: 밀도 %{y:.3g}") == []


# --- Every page, in both languages --------------------------------------------------------------------

PAGES = registered_pages()


@pytest.mark.parametrize("page", PAGES, ids=[Path(p).stem for p in PAGES])
def test_a_korean_page_has_no_english_left(page):
    at = open_app(page, lang="ko")
    texts = shown_texts(at)
    assert any(HANGUL.search(t) for t in texts)
    left = leftovers(texts)
    assert not left, f"{len(left)} strings with English on {page}:\n" + "\n".join(left[:40])


@pytest.mark.parametrize("page", PAGES, ids=[Path(p).stem for p in PAGES])
def test_an_english_page_has_no_korean(page):
    at = open_app(page)
    korean = [t for t in shown_texts(at) if HANGUL.search(t) and t != i18n.LANGUAGE_NAMES["ko"]]
    assert not korean, korean[:10]


def test_lecture_mode_in_korean_has_no_english_left():
    at = open_app("pages/claims.py", lang="ko", lecture="1")
    left = leftovers(shown_texts(at))
    assert not left, "\n".join(left[:40])


def test_an_unknown_language_falls_back_to_english_with_a_notice():
    at = open_app(None, lang="fr")
    texts = shown_texts(at)
    assert any("lang='fr' is not one of en, ko" in t for t in texts)
    assert not [t for t in texts if HANGUL.search(t) and t != i18n.LANGUAGE_NAMES["ko"]]
