"""The hard stop of one computation: ``time_limit`` sets a deadline for this thread, ``check_time`` raises.

Torch-free: the science checks it between layers, seeds and steps; the operations layer (the serving
gate, the guarded entry points) sets it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from normlab.core.text import number


class ComputeTimeout(RuntimeError):
    """A computation ran past its hard wall-time limit and was stopped; its memory is freed."""



_deadline = threading.local()  # per thread: two dashboard sessions never share a deadline


@contextmanager
def time_limit(seconds: float, source: str = "") -> Iterator[None]:
    """Stop a computation in this thread that runs past ``seconds``: ``check_time`` raises ComputeTimeout.

    The probes and the training check it between layers, steps and seeds, so a stopped computation
    lets go of its memory at once. Nested limits keep the earliest deadline. ``inf`` sets none.

    Args:
        seconds: wall-time limit, > 0.
        source: what set the limit, named in the message (e.g. "NORMLAB_HARD_SECONDS").
    """
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
        raise ValueError(f"time_limit seconds must be a positive number; got {seconds!r}")
    outer = getattr(_deadline, "value", None)
    here = (time.monotonic() + seconds, seconds, source)
    _deadline.value = here if outer is None or here[0] < outer[0] else outer
    try:
        yield
    finally:
        _deadline.value = outer


def check_time() -> None:
    """Raise ComputeTimeout if this thread's computation is past its deadline (cheap: one clock read)."""
    limit = getattr(_deadline, "value", None)
    if limit is not None and time.monotonic() > limit[0]:
        _, seconds, source = limit
        where = f" ({source})" if source else ""
        raise ComputeTimeout(f"the computation was stopped: it ran past its wall-time limit of "
                             f"{number(seconds)} s{where}")

