"""The examples of README.md and docs/*.md, run as written and compared with the output they show.

An example is a ```console block (``$ command`` lines, each followed by the lines it prints) or a ```python
block (run as a script; when a ```text block follows it directly, that is what it prints). Commands run
in a scratch folder with the project's own ``normlab`` on the PATH, no result store and one torch thread
(so the digits do not depend on the machine's core count); a command that fails shows its stderr, as a
terminal would, and one that succeeds its stdout alone (progress goes to stderr).

    .venv/bin/python scripts/examples.py            # check: one line per example, exit 1 on a difference
    .venv/bin/python scripts/examples.py --write    # run them and write what they print into the docs

tests/test_examples.py runs the same check, so a number that changes fails the suite until the docs are
regenerated.
"""

from __future__ import annotations

import argparse
import difflib
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ("README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md")))
TIMEOUT = 600  # seconds per example


@dataclass(frozen=True)
class Example:
    """One example: where it is, what it runs, and the lines the docs say it prints."""

    path: str  # relative to the repository
    line: int  # 1-based line of its opening fence
    kind: str  # "console" or "python"
    code: str  # the python source, or the console block's text
    shown: tuple[str, ...] | None  # the printed lines the docs show; None: the docs show none (python)
    span: tuple[int, int] | None  # 0-based [start, end) lines of the shown output in the file

    @property
    def name(self) -> str:
        return f"{self.path}:{self.line}"


def _fences(lines: list[str]) -> list[tuple[int, int, str]]:
    """(start, end, language) of every fenced block: lines start+1 .. end-1 are its body."""
    out, start, lang = [], None, ""
    for i, line in enumerate(lines):
        if line.startswith("```"):
            if start is None:
                start, lang = i, line[3:].strip()
            else:
                out.append((start, i, lang))
                start = None
    return out


def find(path: str) -> list[Example]:
    """The examples of one markdown file."""
    lines = (ROOT / path).read_text(encoding="utf-8").split("\n")
    fences = _fences(lines)
    examples = []
    for k, (start, end, lang) in enumerate(fences):
        body = lines[start + 1:end]
        if lang == "console":
            examples.append(Example(path, start + 1, "console", "\n".join(body), tuple(body),
                                    (start + 1, end)))
        elif lang == "python":
            nxt = fences[k + 1] if k + 1 < len(fences) else None
            shown = span = None
            if nxt is not None and nxt[2] == "text" and all(not s.strip() for s in lines[end + 1:nxt[0]]):
                shown, span = tuple(lines[nxt[0] + 1:nxt[1]]), (nxt[0] + 1, nxt[1])
            examples.append(Example(path, start + 1, "python", "\n".join(body), shown, span))
    return examples


def all_examples() -> list[Example]:
    return [e for path in DOCS for e in find(path)]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NORMLAB_")}
    bin_dir = str(Path(sys.executable).parent)
    env.update(PATH=os.pathsep.join([bin_dir, env.get("PATH", "")]), NORMLAB_STORE="off",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONHASHSEED="0")
    return env


def _commands(block: list[str]) -> list[str]:
    """The ``$ `` commands of a console block, continuation lines (after a trailing backslash) joined."""
    commands, current = [], None
    for line in block:
        if current is not None:
            current += "\n" + line
            if not line.rstrip().endswith("\\"):
                commands.append(current)
                current = None
        elif line.startswith("$ "):
            if line.rstrip().endswith("\\"):
                current = line[2:]
            else:
                commands.append(line[2:])
    return commands


def run(example: Example) -> list[str]:
    """What the example prints, as the docs would show it (a console block: commands and output)."""
    env = _env()
    with tempfile.TemporaryDirectory() as scratch:
        if example.kind == "python":
            done = subprocess.run([sys.executable, "-c", example.code], cwd=scratch, env=env, text=True,
                                  capture_output=True, timeout=TIMEOUT)
            if done.returncode != 0:
                raise RuntimeError(f"{example.name}: the example failed:\n{done.stderr[-3000:]}")
            return done.stdout.rstrip("\n").split("\n") if done.stdout.strip() else []
        out = []
        for command in _commands(example.code.split("\n")):
            out += [f"$ {command.split(chr(10))[0]}", *command.split("\n")[1:]]
            done = subprocess.run(["bash", "-c", command], cwd=scratch, env=env, text=True,
                                  capture_output=True, timeout=TIMEOUT)
            text = done.stdout if done.returncode == 0 else done.stderr
            out += text.rstrip("\n").split("\n") if text.strip() else []
        return out


def differences(example: Example) -> str:
    """A unified diff of what the docs show against what the example prints; empty when they agree."""
    printed = run(example)
    if example.shown is None:
        return ""
    shown = [line.rstrip() for line in example.shown]
    printed = [line.rstrip() for line in printed]
    return "\n".join(difflib.unified_diff(shown, printed, f"{example.name} (docs)", "printed now",
                                          lineterm=""))


def write(examples: list[Example]) -> None:
    """Put what each example prints into its file (from the bottom up, so earlier spans stay put)."""
    by_path: dict[str, list[tuple[Example, list[str]]]] = {}
    for example in examples:
        printed = run(example)
        if example.span is not None:
            by_path.setdefault(example.path, []).append((example, printed))
    for path, done in by_path.items():
        lines = (ROOT / path).read_text(encoding="utf-8").split("\n")
        for example, printed in sorted(done, key=lambda d: -d[0].span[0]):
            start, end = example.span
            lines[start:end] = printed
        (ROOT / path).write_text("\n".join(lines), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="write what the examples print into the docs")
    args = parser.parse_args(argv)
    examples = all_examples()
    if args.write:
        write(examples)
        print(f"wrote the output of {sum(e.span is not None for e in examples)} examples")
        return 0
    failed = 0
    for example in examples:
        diff = differences(example)
        print(f"{example.name}: {'differs' if diff else 'ok'}")
        if diff:
            print(diff)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
