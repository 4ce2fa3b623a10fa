"""The dashboard's message catalogs, with Babel: extract the strings, update each language, compile.

    .venv/bin/python scripts/i18n.py            # extract + update + compile (after changing strings)
    .venv/bin/python scripts/i18n.py compile    # only compile the .po files into the .mo that gettext reads
    .venv/bin/python scripts/i18n.py check      # exit 1 when a string is missing, untranslated or stale
    .venv/bin/python scripts/i18n.py merge ko FILE.po ...   # take a translator's entries into ko, compile

The template is ui/locale/normlab.pot; each language's catalog ui/locale/<lang>/LC_MESSAGES/normlab.po
(the file a translator edits) and its compiled normlab.mo (committed, so a fresh clone runs as is).
Strings are found by babel.cfg: ``_()``, ``N_()`` and ``ngettext()`` calls in app.py, pages/ and ui/,
and the normalizer and metric descriptions of normlab/core/catalog.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from babel.messages.frontend import CommandLineInterface  # noqa: E402

from ui.state.i18n import DOMAIN, LANGUAGES, LOCALE_DIR  # noqa: E402

POT = LOCALE_DIR / f"{DOMAIN}.pot"
TRANSLATED = LANGUAGES[1:]  # the source language needs no catalog


def pybabel(*args: str) -> None:
    CommandLineInterface().run(["pybabel", "-q", *args])


def extract() -> None:
    pybabel("extract", "-F", str(ROOT / "babel.cfg"), "--no-location", "--sort-output",
            "--project", "normlab", "-o", str(POT), str(ROOT))


def update() -> None:
    for lang in TRANSLATED:
        po = LOCALE_DIR / lang / "LC_MESSAGES" / f"{DOMAIN}.po"
        if po.exists():
            pybabel("update", "-i", str(POT), "-d", str(LOCALE_DIR), "-D", DOMAIN, "-l", lang,
                    "--no-fuzzy-matching", "--ignore-obsolete")
        else:
            pybabel("init", "-i", str(POT), "-d", str(LOCALE_DIR), "-D", DOMAIN, "-l", lang)


def compile_all() -> None:
    pybabel("compile", "-d", str(LOCALE_DIR), "-D", DOMAIN, "--statistics")


def code_messages() -> dict[str, set[str]]:
    """Every string the code marks for translation -> the files it is in (Babel's extraction, in memory;
    a plural form by its singular, as the catalog keys it)."""
    from babel.messages.extract import extract_from_dir
    from babel.messages.frontend import parse_mapping_cfg

    with open(ROOT / "babel.cfg") as f:
        method_map, options_map = parse_mapping_cfg(f)
    found: dict[str, set[str]] = {}
    for filename, _line, message, _comments, _context in extract_from_dir(
            str(ROOT), method_map, options_map):
        text = message[0] if isinstance(message, tuple) else message  # a plural is keyed by its singular
        if text:
            found.setdefault(text, set()).add(filename)
    return found


def read_po(lang: str):
    from babel.messages.pofile import read_po as babel_read_po

    with open(LOCALE_DIR / lang / "LC_MESSAGES" / f"{DOMAIN}.po", "rb") as f:
        return babel_read_po(f, locale=lang)


def translation_problems() -> list[str]:
    """What is wrong with the catalogs: strings missing or untranslated, a stale .mo, broken fields."""
    import gettext
    import re

    problems = []
    wanted = code_messages()
    field = re.compile(r"\{(\w*)[^{}]*\}")
    for lang in TRANSLATED:
        catalog = read_po(lang)
        mo_path = LOCALE_DIR / lang / "LC_MESSAGES" / f"{DOMAIN}.mo"
        compiled = None
        if mo_path.exists():
            with open(mo_path, "rb") as f:
                compiled = gettext.GNUTranslations(f)
        if compiled is None:
            problems.append(f"{lang}: {mo_path.relative_to(ROOT)} is missing: run scripts/i18n.py compile")
        for text, files in sorted(wanted.items()):
            message = catalog.get(text)
            where = ", ".join(sorted(files))
            if message is None:
                problems.append(f"{lang}: not in the catalog ({where}): {text!r}")
                continue
            strings = message.string if isinstance(message.string, tuple) else (message.string,)
            if message.fuzzy or not all(strings):
                problems.append(f"{lang}: untranslated ({where}): {text!r}")
                continue
            if sorted(field.findall(text)) != sorted(field.findall(strings[0])):
                problems.append(f"{lang}: the {{fields}} differ from the English ({where}): {text!r}")
            if compiled is not None and not isinstance(message.id, tuple) and \
                    compiled.gettext(text) != strings[0]:
                problems.append(f"{lang}: the .mo is older than the .po (run scripts/i18n.py compile): "
                                f"{text!r}")
    return problems


def merge(lang: str, fragments: list[str]) -> int:
    """Copy the translated entries of ``fragments`` (PO files, e.g. a translator's partial file) into
    ``lang``'s catalog where its msgid is wanted, then compile. Later fragments win."""
    from babel.messages.pofile import read_po as babel_read_po
    from babel.messages.pofile import write_po

    catalog = read_po(lang)
    taken = 0
    for path in fragments:
        with open(path, "rb") as f:
            part = babel_read_po(f, locale=lang)
        for message in part:
            if not message.id or not message.string or message.fuzzy:
                continue
            target = catalog.get(message.id)
            if target is not None:
                target.string = message.string
                target.flags.discard("fuzzy")
                taken += 1
    with open(LOCALE_DIR / lang / "LC_MESSAGES" / f"{DOMAIN}.po", "wb") as f:
        write_po(f, catalog, width=100, sort_output=True, omit_header=False)
    print(f"merged {taken} entries into {lang}")
    compile_all()
    return 0


def check() -> int:
    """Problems with the catalogs, printed; 0 when every language is complete and compiled."""
    problems = translation_problems()
    for problem in problems:
        print(problem)
    return 1 if problems else 0


def main(argv: list[str]) -> int:
    step = argv[0] if argv else "all"
    if step == "check":
        return check()
    if step == "merge":
        if len(argv) < 3:
            print("i18n: merge needs a language and at least one PO file")
            return 2
        return merge(argv[1], argv[2:])
    if step not in ("all", "extract", "update", "compile"):
        print(f"i18n: unknown step {step!r}; use extract, update, compile, check or nothing (all)")
        return 2
    if step in ("all", "extract"):
        extract()
    if step in ("all", "update"):
        update()
    if step in ("all", "compile"):
        compile_all()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
