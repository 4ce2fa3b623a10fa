"""Many users, one machine: a fair queue in front of the probes, and one computation per identical config.

``compute(key, fn)`` runs ``fn`` in the caller's thread once one of K slots is free (K =
NORMLAB_MAX_CONCURRENT); callers beyond K wait in arrival order and are told their place through
``on_wait``, and one that waits longer than NORMLAB_QUEUE_TIMEOUT seconds gets ``QueueTimeout``.
Callers with an equal key while one is queued or running share its result instead of computing it
again. Knows nothing of torch's models or of the UI; it only sets torch's thread count.

Environment variables:

    NORMLAB_MAX_CONCURRENT  probes computing at the same time (default 2; 1 to 256)
    NORMLAB_QUEUE_TIMEOUT   seconds a probe may wait for a slot before it is refused (default 120;
                            at most a day)
    NORMLAB_TORCH_THREADS   torch threads per probe (default: the machine's CPUs / max concurrent;
                            1 to 1024)
    NORMLAB_HARD_SECONDS    a computation still running after this long is stopped (normlab.budget)

Each is checked when the gate is made (at the server's first request), and a value out of range is a
ValueError naming the variable and the allowed range.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Hashable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, TypeVar

from normlab.budget import ENV_VARS, server_limits, time_limit

T = TypeVar("T")

DEFAULT_MAX_CONCURRENT = 2  # a small CPU server: two probes at once keep both cores busy
DEFAULT_QUEUE_TIMEOUT = 120.0  # seconds; longer than any in-budget probe takes on two cores
_POLL_S = 0.25  # how often a waiting caller re-reports its place, so a UI can show the time waited
# Condition.wait refuses timeouts past threading.TIMEOUT_MAX (~292 years) with OverflowError: a
# caller waits in chunks of at most this, however long its own timeout.
_MAX_WAIT_S = 3600.0
# Ranges of the operator's settings; beyond them a value is a typo, not a choice.
MAX_SLOTS = 256
MAX_QUEUE_TIMEOUT = 86_400.0  # a day
MAX_THREADS = 1024


class QueueTimeout(RuntimeError):
    """Waited too long for a free slot; the message says how long and how busy the server is."""


@dataclass(frozen=True)
class QueueStatus:
    """Where a caller stands, passed to ``on_wait`` while it waits.

    state: "queued" (waiting for a slot), "shared" (an identical request is queued or running and
    this caller will get its result) or "running" (this caller's computation has started).
    """

    state: str
    position: int  # 1 = next to start; 0 once running, or when sharing a running computation
    waiting: int  # callers waiting for a slot in total
    running: int  # computations holding a slot
    limit: int  # slots, K
    waited_s: float

    @property
    def message(self) -> str:
        if self.state == "queued":
            return (
                f"queued, position {self.position} of {self.waiting} "
                f"({self.running} of {self.limit} probes computing; waited {self.waited_s:.0f} s)"
            )
        if self.state == "shared":
            if self.position:
                return (
                    f"an identical probe is queued at position {self.position}; "
                    f"its result will be shared (waited {self.waited_s:.0f} s)"
                )
            return "an identical probe is computing; its result will be shared"
        return "computing"


class _Flight:
    """One computation that equal-keyed callers share."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None
        self.abandoned = False  # the leader stopped (e.g. its session went away): a follower retries
        self.ticket: _Ticket | None = None  # the leader's place in the queue, None once running


class _Ticket:
    __slots__ = ("granted",)

    def __init__(self) -> None:
        self.granted = False


class Gate:
    """At most ``max_concurrent`` computations at once, first come first served, single-flight by key.

    Thread-safe. Results are shared by reference between callers with equal keys: treat them as
    read-only.

    Args:
        max_concurrent: slots, K >= 1.
        queue_timeout: seconds a caller may wait for a slot before ``QueueTimeout`` (inf: no limit).
        hard_seconds: a computation running longer is stopped (``normlab.budget.ComputeTimeout``,
            raised in its own thread between layers); None: never.
    """

    def __init__(self, max_concurrent: int = DEFAULT_MAX_CONCURRENT,
                 queue_timeout: float = DEFAULT_QUEUE_TIMEOUT, hard_seconds: float | None = None) -> None:
        if isinstance(max_concurrent, bool) or not isinstance(max_concurrent, int) or max_concurrent < 1:
            raise ValueError(f"max_concurrent must be a whole number >= 1; got {max_concurrent!r}")
        if isinstance(queue_timeout, bool) or not (isinstance(queue_timeout, (int, float))
                                                   and queue_timeout > 0):
            raise ValueError(f"queue_timeout must be a positive number of seconds; got {queue_timeout!r}")
        if hard_seconds is not None and (isinstance(hard_seconds, bool) or not (
                isinstance(hard_seconds, (int, float)) and hard_seconds > 0)):
            raise ValueError(f"hard_seconds must be a positive number of seconds or None; "
                             f"got {hard_seconds!r}")
        self.max_concurrent = max_concurrent
        self.queue_timeout = float(queue_timeout)
        self.hard_seconds = None if hard_seconds is None or math.isinf(hard_seconds) else float(hard_seconds)
        self._cond = threading.Condition()
        self._running = 0
        self._queue: list[_Ticket] = []  # FIFO of callers waiting for a slot
        self._flights: dict[Hashable, _Flight] = {}
        self.peak_running = 0  # most computations ever holding a slot at once (for tests and reports)
        self.computed = 0  # computations started

    @property
    def running(self) -> int:
        with self._cond:
            return self._running

    @property
    def waiting(self) -> int:
        with self._cond:
            return len(self._queue)

    def compute(self, key: Hashable, fn: Callable[[], T],
                on_wait: Callable[[QueueStatus], None] | None = None) -> T:
        """Run ``fn()`` under the gate, or share the result of an equal ``key`` already in flight.

        Args:
            key: hashable identity of the computation, e.g. ``("probe", model_config, probe_config)``.
            fn: the computation; runs in the calling thread.
            on_wait: called from the calling thread with a ``QueueStatus`` while the caller waits
                (on every change of place, and every quarter second), and once with state "running"
                when its own computation starts. Exceptions it raises propagate and leave the queue.

        Raises:
            QueueTimeout: no slot freed within ``queue_timeout`` seconds.
            Exception: whatever ``fn`` raised (shared callers get the same exception).
        """
        while True:
            with self._cond:
                flight = self._flights.get(key)
                leader = flight is None
                if leader:
                    flight = self._flights[key] = _Flight()
            if leader:
                return self._lead(key, flight, fn, on_wait)
            self._follow(flight, on_wait)
            if not flight.abandoned:
                if flight.error is not None:
                    raise flight.error
                return flight.result
            # the leader went away without a result: try again, perhaps as the new leader

    def _lead(self, key, flight: _Flight, fn, on_wait):
        try:
            self._acquire(flight, on_wait)
            try:
                if on_wait is not None:
                    with self._cond:
                        status = self._status("running", 0, 0.0)
                    on_wait(status)
                stop = (time_limit(self.hard_seconds, ENV_VARS["hard_seconds"])
                        if self.hard_seconds is not None else nullcontext())
                with stop:
                    flight.result = fn()
            finally:
                self._release()
        except Exception as err:
            flight.error = err
            raise
        except BaseException:
            # Not a failure of fn (a stop or rerun of the caller's script, KeyboardInterrupt):
            # followers must not see it; one of them computes instead.
            flight.abandoned = True
            raise
        finally:
            with self._cond:
                if self._flights.get(key) is flight:
                    del self._flights[key]
            flight.done.set()
        return flight.result

    def _follow(self, flight: _Flight, on_wait) -> None:
        start = time.monotonic()
        last = None
        while not flight.done.wait(_POLL_S if on_wait is not None else None):
            with self._cond:
                ticket = flight.ticket
                position = self._queue.index(ticket) + 1 if ticket in self._queue else 0
                status = self._status("shared", position, time.monotonic() - start)
            if status != last:
                on_wait(status)
                last = status

    def _acquire(self, flight: _Flight, on_wait) -> None:
        start = time.monotonic()
        deadline = start + self.queue_timeout
        ticket = _Ticket()
        with self._cond:
            if self._running < self.max_concurrent and not self._queue:
                self._take(ticket)
                return
            self._queue.append(ticket)
            flight.ticket = ticket
        last = None
        try:
            while True:
                with self._cond:
                    if ticket.granted:
                        return
                    now = time.monotonic()
                    if now >= deadline:
                        self._queue.remove(ticket)
                        self._cond.notify_all()  # the places behind this one moved up
                        waiting, running = len(self._queue), self._running
                        raise QueueTimeout(
                            f"the server is busy: waited {now - start:.0f} s for one of "
                            f"{self.max_concurrent} compute slots ({running} computing, {waiting} more "
                            f"waiting). Try again in a minute, or ask for a smaller config."
                        )
                    status = self._status("queued", self._queue.index(ticket) + 1, now - start)
                    if on_wait is None:
                        self._cond.wait(min(deadline - now, _MAX_WAIT_S))
                        continue
                if status != last:  # report outside the lock: on_wait may be slow (a UI redraw)
                    on_wait(status)
                    last = status
                with self._cond:
                    if not ticket.granted:
                        self._cond.wait(min(_POLL_S, max(0.0, deadline - time.monotonic())))
        except BaseException:
            with self._cond:
                if ticket.granted:  # granted just as the caller left: hand the slot on
                    self._running -= 1
                    self._grant()
                elif ticket in self._queue:
                    self._queue.remove(ticket)
                    self._cond.notify_all()
            raise
        finally:
            flight.ticket = None

    def _take(self, ticket: _Ticket) -> None:
        ticket.granted = True
        self._running += 1
        self.computed += 1
        self.peak_running = max(self.peak_running, self._running)

    def _grant(self) -> None:
        """Give free slots to the front of the queue, in order. Caller holds the lock."""
        while self._queue and self._running < self.max_concurrent:
            self._take(self._queue.pop(0))
        self._cond.notify_all()

    def _release(self) -> None:
        with self._cond:
            self._running -= 1
            assert self._running >= 0, "released more slots than were taken"
            self._grant()

    def _status(self, state: str, position: int, waited: float) -> QueueStatus:
        """A snapshot of the queue; caller holds the lock. Whole seconds, so a waiting caller's
        status changes (and ``on_wait`` is called) at most about once a second unless its place moves."""
        return QueueStatus(state, position, len(self._queue), self._running, self.max_concurrent,
                           round(waited, 0))


def env_number(environ: Mapping[str, str], name: str, kind: type, default, high: float | None = None):
    """A positive setting from the environment, at most ``high``; unset or blank: ``default``."""
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a positive {'whole ' if kind is int else ''}number; got {raw!r}")
    if high is not None and value > high:
        low = "1" if kind is int else "0 (exclusive)"
        raise ValueError(f"{name} must be between {low} and {high:g}; got {raw!r}")
    return value


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota (docker --cpus)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


def torch_threads(max_concurrent: int, environ: Mapping[str, str] | None = None) -> int:
    """Threads per computation: NORMLAB_TORCH_THREADS, else the CPUs shared among the K slots."""
    environ = os.environ if environ is None else environ
    return env_number(environ, "NORMLAB_TORCH_THREADS", int,
                       max(1, available_cpus() // max_concurrent), MAX_THREADS)


def gate_from_env(environ: Mapping[str, str] | None = None) -> Gate:
    """A Gate with K, the queue timeout and the hard stop from NORMLAB_MAX_CONCURRENT,
    NORMLAB_QUEUE_TIMEOUT and NORMLAB_HARD_SECONDS (the server's limit, default in normlab.budget)."""
    environ = os.environ if environ is None else environ
    return Gate(
        env_number(environ, "NORMLAB_MAX_CONCURRENT", int, DEFAULT_MAX_CONCURRENT, MAX_SLOTS),
        env_number(environ, "NORMLAB_QUEUE_TIMEOUT", float, DEFAULT_QUEUE_TIMEOUT, MAX_QUEUE_TIMEOUT),
        server_limits(environ).hard_seconds,
    )


_default_gate: Gate | None = None
_default_lock = threading.Lock()


def default_gate() -> Gate:
    """The process-wide gate, made from the environment on first use; also sets torch's threads."""
    global _default_gate
    with _default_lock:
        if _default_gate is None:
            gate = gate_from_env()
            import torch  # here, not at the top: the queue itself needs no torch

            torch.set_num_threads(torch_threads(gate.max_concurrent))
            _default_gate = gate
        return _default_gate


def compute(key: Hashable, fn: Callable[[], T],
            on_wait: Callable[[QueueStatus], None] | None = None) -> T:
    """``default_gate().compute(key, fn, on_wait)``: see ``Gate.compute``."""
    return default_gate().compute(key, fn, on_wait)
