"""``normlab warm``: compute a lecture's claims and every page's default view into the result store.

Run it once before a lecture (the Dockerfile runs it at build time): the dashboard then opens every
claim, even the larger ones, from the store at once, for every visitor and across restarts.
Knows nothing of the UI.
"""

from __future__ import annotations

import argparse
import sys

from normlab.cli import TRAINING_HELP
from normlab.store import ENV_VAR, ResultStore, default_store
from normlab.warm import CLAIM_KEYS, plan, warm

WARM_HELP = TRAINING_HELP["warm"]


def add_warm_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", metavar="DIR",
                        help=f"the result store's folder (default ${ENV_VAR}, else ~/.cache/normlab/results)")
    parser.add_argument("--only", metavar="NAME", action="append",
                        help=f"only these setups (repeatable): {', '.join(CLAIM_KEYS)}, defaults")
    parser.add_argument("--dry-run", action="store_true", help="list what would be computed, compute nothing")


def run_warm_command(args: argparse.Namespace) -> int:
    store = ResultStore(args.store) if args.store else default_store()
    if store is None:
        raise ValueError(f"{ENV_VAR} is off: there is no result store to warm; pass --store DIR")
    probes, trainings = plan(args.only)  # an unknown --only name is refused before anything runs
    total = len(probes) + len(trainings)
    if args.dry_run:
        print(f"{len(probes)} probes and {len(trainings)} training runs for {store.root}")
        return 0
    print(f"warming {store.root}: {len(probes)} probes, {len(trainings)} training runs", file=sys.stderr)

    def show(done: int, _total: int, label: str) -> None:
        print(f"[{done}/{total}] {label}", file=sys.stderr)

    report = warm(store, args.only, progress=show)
    print(f"computed {report.computed}, already stored {report.skipped}")
    return 0


def add_parsers(subparsers) -> None:
    """Register ``warm`` on an ``add_subparsers()`` object (``run`` is what normlab.cli dispatches on)."""
    parser = subparsers.add_parser("warm", help=WARM_HELP, description=WARM_HELP)
    add_warm_arguments(parser)
    parser.set_defaults(func=run_warm_command, run=run_warm_command)
