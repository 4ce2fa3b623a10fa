"""``python -m ui.warm``: compute a lecture's claims and every page's default view into the result store.

Run it once before a lecture (the Dockerfile runs it at build time): the dashboard then opens every
claim, even the larger ones, from the store at once, for every visitor and across restarts. The plan is
read from the dashboard's own tables (the claims of ui.content.claims, the sidebar's defaults, the group-size
sweep, the training pages' runs), so it cannot drift from what the pages compute.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from normlab import ModelConfig, ProbeConfig, TrainConfig, run_probes, run_training
from normlab.core.config import describe
from normlab.ops.records import PROBE, TRAIN, probe_key, save_probe, save_training, train_key
from normlab.ops.store import ENV_VAR, ResultStore, default_store
from ui.compute.cache import sweep_points
from ui.content import placement
from ui.content.claims import CLAIMS
from ui.content.defaults import BOUND_PROBE, bound_sweeps, dynamics_runs, group_sweep, quick_study
from ui.state import controls as C
from ui.state.selection import build_selection

CLAIM_KEYS = tuple(claim.key for claim in CLAIMS)
DEFAULTS = "defaults"  # the name of every page's default view in ``--only``


def default_views() -> tuple[list[tuple[ModelConfig, ProbeConfig]], list[tuple[ModelConfig, TrainConfig]]]:
    """The probes behind every page's default view and the training pages' runs.

    The sidebar's default selection (overview, variance, rank and gradient pages), the group-size page's
    default sweep, the rank page's sweeps of GroupNorm's rank bound, the training page's quick study and
    the training-dynamics page's runs.
    """
    selection = build_selection(C.DEFAULTS)
    probes = [(m, selection.probe) for m in selection.models]
    sweep_base, counts = group_sweep(selection.base, C.DEFAULTS["sweep_norm"])
    sweep = sweep_points(sweep_base, selection.probe, "groups", counts)
    probes += [pair for pair in sweep if pair not in probes]
    for bound_base, field, values in bound_sweeps():
        bound = sweep_points(bound_base, BOUND_PROBE, field, values)
        probes += [pair for pair in bound if pair not in probes]
    probes += [pair for pair in placement.runs() if pair not in probes]
    return probes, quick_study().runs() + dynamics_runs()


def plan(only: Iterable[str] | None = None) -> tuple[list[tuple[ModelConfig, ProbeConfig]],
                                                     list[tuple[ModelConfig, TrainConfig]]]:
    """Probes and training runs to warm: the claims (or those in ``only``) and the pages' defaults.

    Raises:
        ValueError: an unknown name in ``only``.
    """
    names = set(CLAIM_KEYS) | {DEFAULTS}
    wanted = set(names if only is None else only)
    unknown = wanted - names
    if unknown:
        raise ValueError(f"unknown warm setup(s) {sorted(unknown)}; expected some of {sorted(names)}")
    probes: list = []
    for claim in CLAIMS:
        if claim.key in wanted:
            probes += [pair for pair in claim.runs() if pair not in probes]
    trainings: list = []
    if DEFAULTS in wanted:
        views, trainings = default_views()
        probes += [pair for pair in views if pair not in probes]
    return probes, trainings


@dataclass
class WarmReport:
    computed: int = 0
    skipped: int = 0


def warm(store: ResultStore, only: Iterable[str] | None = None,
         progress: Callable[[int, int, str], None] | None = None) -> WarmReport:
    """Compute every planned probe and training run that ``store`` lacks, and write it there.

    Args:
        store: where the records go (the dashboard's ``NORMLAB_STORE``).
        only: claim keys and/or ``"defaults"``; default all.
        progress: called as ``progress(done, total, label)`` after each item, stored or computed.

    Raises:
        OSError: ``store`` cannot be written (its message says why and the fix), before anything runs:
            a warm-up that keeps nothing must fail the image's build, not report what it computed.
    """
    problem = store.write_problem()
    if problem is not None:
        raise OSError(problem)
    probes, trainings = plan(only)
    total = len(probes) + len(trainings)
    report = WarmReport()
    for done, (label, item) in enumerate(_items(probes, trainings), start=1):
        kind, model, config = item
        key = probe_key(model, config) if kind == PROBE else train_key(model, config)
        if store.has(kind, key):
            report.skipped += 1
        elif kind == PROBE:
            save_probe(store, model, config, run_probes(model, config))
            report.computed += 1
        else:
            save_training(store, run_training(model, config))
            report.computed += 1
        if progress is not None:
            progress(done, total, label)
    return report


def _items(probes, trainings) -> Iterator[tuple[str, tuple]]:
    for model, probe in probes:
        yield f"probe {describe(model, short=True)} seeds={probe.seeds}", (PROBE, model, probe)
    for model, train in trainings:
        yield f"train {describe(model, short=True)} seed={train.seed}", (TRAIN, model, train)


def main(argv: list[str] | None = None) -> int:
    """The command: ``python -m ui.warm [--store DIR] [--only NAME ...] [--dry-run]``."""
    parser = argparse.ArgumentParser(prog="python -m ui.warm", description=__doc__.splitlines()[0])
    parser.add_argument("--store", metavar="DIR",
                        help=f"the result store's folder (default ${ENV_VAR}, else ~/.cache/normlab/results)")
    parser.add_argument("--only", metavar="NAME", action="append",
                        help=f"only these setups (repeatable): {', '.join(CLAIM_KEYS)}, {DEFAULTS}")
    parser.add_argument("--dry-run", action="store_true", help="list what would be computed, compute nothing")
    args = parser.parse_args(argv)
    try:
        store = ResultStore(args.store) if args.store else default_store()
        if store is None:
            raise ValueError(f"{ENV_VAR} is off: there is no result store to warm; pass --store DIR")
        probes, trainings = plan(args.only)  # an unknown --only name is refused before anything runs
    except ValueError as err:
        print(f"python -m ui.warm: error: {err}", file=sys.stderr)
        return 2
    total = len(probes) + len(trainings)
    if args.dry_run:
        print(f"{len(probes)} probes and {len(trainings)} training runs for {store.root}")
        return 0
    print(f"warming {store.root}: {len(probes)} probes, {len(trainings)} training runs", file=sys.stderr)

    def show(done: int, _total: int, label: str) -> None:
        print(f"[{done}/{total}] {label}", file=sys.stderr)

    try:
        report = warm(store, args.only, progress=show)
    except OSError as err:
        print(f"python -m ui.warm: error: {err}", file=sys.stderr)
        return 1
    print(f"computed {report.computed}, already stored {report.skipped}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
