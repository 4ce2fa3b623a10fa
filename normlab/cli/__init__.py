"""The ``normlab`` command line: argparse over the same engine API the UI uses; ``main(argv)`` for tests.

Each subcommand is one :class:`~normlab.cli.common.Command` entry (name, help, add_arguments, run):
probe, sweep and list in normlab.cli.probe, train and study in normlab.cli.train; each subcommand
module imports only normlab.cli.common. Config flags are generated from the config fields, so a new
field gets its flag for free; the configs validate, the CLI only parses. User mistakes end with exit
status 2 and one line on stderr, never a traceback. Knows nothing of the UI.

Loading this package imports neither torch nor pandas: ``--help`` and ``list`` answer at once, and the
engine (probes, torch, the training commands) loads when a command needs it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from normlab.cli.common import TRAINING_COMMANDS, TRAINING_HELP, USAGE_ERROR, Parser, UsageError
from normlab.cli.probe import COMMANDS


def build_parser(training: bool = True) -> argparse.ArgumentParser:
    """The root parser. ``training=False`` lists train/study by name only, without loading the training
    engine (and torch) to generate their flags: enough for ``--help`` and the other commands."""
    parser = Parser(prog="normlab", description="How normalization layers shape deep networks at "
                                                 "initialization (Beyond BatchNorm, NeurIPS 2021).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        cmd = sub.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(cmd)
        cmd.set_defaults(run=command.run)
    if training:  # their flags come from the training configs, which live beside torch
        from normlab.cli import train

        train.add_parsers(sub)
    else:
        for name in TRAINING_COMMANDS:
            sub.add_parser(name, help=TRAINING_HELP[name])
    return parser


def _wants_training(argv: Sequence[str]) -> bool:
    command = next((a for a in argv if not a.startswith("-")), None)
    return command in TRAINING_COMMANDS


def _one_line(message: str) -> str:
    return " ".join(str(message).split())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 bad input)."""
    try:
        argv = sys.argv[1:] if argv is None else list(argv)
        args = build_parser(training=_wants_training(argv)).parse_args(argv)
        return args.run(args)
    except UsageError as err:
        print(_one_line(err), file=sys.stderr)
    except ValueError as err:  # the configs' own messages name the field, the value and what is allowed
        print(f"normlab: error: {_one_line(err)}", file=sys.stderr)
    except KeyboardInterrupt:
        print("normlab: interrupted", file=sys.stderr)
        return 130
    except SystemExit as done:  # --help and friends
        return done.code if isinstance(done.code, int) else 0
    return USAGE_ERROR


if __name__ == "__main__":
    sys.exit(main())
