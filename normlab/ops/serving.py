"""Many users, one machine: a fair queue in front of the probes, and one computation per identical config.

``compute(key, fn, memory_mb=m)`` runs ``fn`` in the caller's thread once one of K slots is free (K =
NORMLAB_MAX_CONCURRENT) and its estimated memory fits beside the computations already running (their
estimates together, with the process's base once, within NORMLAB_MAX_MEMORY_MB); callers that cannot
start wait in arrival order and are told their place through ``on_wait``, and one that waits longer
than NORMLAB_QUEUE_TIMEOUT seconds gets ``QueueTimeout``. A computation alone always fits: one larger
than the limit is refused by the budget before it asks.
Callers with an equal key while one is queued or running share its result instead of computing it
again. Knows nothing of torch's models or of the UI; it only sets torch's thread count and how the C
allocator hands memory back (``tune_allocator``).

Environment variables:

    NORMLAB_MAX_CONCURRENT  probes computing at the same time (default 2; 1 to 256; at most the
                            container's CPU quota)
    NORMLAB_QUEUE_TIMEOUT   seconds a probe may wait for a slot before it is refused (default 120;
                            at most a day)
    NORMLAB_TORCH_THREADS   torch threads per probe (default: the machine's CPUs / max concurrent;
                            1 to 1024; at most the container's CPU quota)
    NORMLAB_HARD_SECONDS    a computation still running after this long is stopped (normlab.ops.settings)
    NORMLAB_MAX_MEMORY_MB   the process's memory, which the running computations' estimates share
                            (normlab.ops.settings; at most the container's memory limit less a headroom)

Each is checked when the gate is made (at the server's first request), and a value out of range is a
ValueError naming the variable and the allowed range.
"""

from __future__ import annotations

import ctypes
import math
import os
import threading
import time
from collections.abc import Callable, Hashable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, TypeVar

from normlab.core.deadline import time_limit
from normlab.ops.settings import (
    BASE_MEMORY_MB,
    DEFAULT_MAX_CONCURRENT,
    DEFAULT_QUEUE_TIMEOUT,
    ENV_VARS,
    max_concurrent,
    queue_timeout,
    server_limits,
    torch_threads,
)

T = TypeVar("T")

_POLL_S = 0.25  # how often a waiting caller re-reports its place, so a UI can show the time waited
# Condition.wait refuses timeouts past threading.TIMEOUT_MAX (~292 years) with OverflowError: a
# caller waits in chunks of at most this, however long its own timeout.
_MAX_WAIT_S = 3600.0


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
    __slots__ = ("granted", "memory_mb")

    def __init__(self, memory_mb: float = 0.0) -> None:
        self.granted = False
        self.memory_mb = memory_mb  # reserved while it runs: its estimate less the process's base


class Gate:
    """At most ``max_concurrent`` computations at once, first come first served, single-flight by key.

    Thread-safe. Results are shared by reference between callers with equal keys: treat them as
    read-only.

    Args:
        max_concurrent: slots, K >= 1.
        queue_timeout: seconds a caller may wait for a slot before ``QueueTimeout`` (inf: no limit).
        hard_seconds: a computation running longer is stopped (``normlab.core.deadline.ComputeTimeout``,
            raised in its own thread between layers); None: never.
        memory_mb: the process's memory limit in MiB that running computations share; None: none.
        base_mb: the process's own memory, counted once (each estimate passed to ``compute``
            includes it, as ``normlab.ops.cost``'s do).
    """

    def __init__(self, max_concurrent: int = DEFAULT_MAX_CONCURRENT,
                 queue_timeout: float = DEFAULT_QUEUE_TIMEOUT, hard_seconds: float | None = None,
                 memory_mb: float | None = None, base_mb: float = BASE_MEMORY_MB) -> None:
        if isinstance(max_concurrent, bool) or not isinstance(max_concurrent, int) or max_concurrent < 1:
            raise ValueError(f"max_concurrent must be a whole number >= 1; got {max_concurrent!r}")
        if isinstance(queue_timeout, bool) or not (isinstance(queue_timeout, (int, float))
                                                   and queue_timeout > 0):
            raise ValueError(f"queue_timeout must be a positive number of seconds; got {queue_timeout!r}")
        if hard_seconds is not None and (isinstance(hard_seconds, bool) or not (
                isinstance(hard_seconds, (int, float)) and hard_seconds > 0)):
            raise ValueError(f"hard_seconds must be a positive number of seconds or None; "
                             f"got {hard_seconds!r}")
        if memory_mb is not None and (isinstance(memory_mb, bool) or not (
                isinstance(memory_mb, (int, float)) and memory_mb > 0)):
            raise ValueError(f"memory_mb must be a positive number of MiB or None; got {memory_mb!r}")
        self.max_concurrent = max_concurrent
        self.queue_timeout = float(queue_timeout)
        self.memory_mb = None if memory_mb is None or math.isinf(memory_mb) else float(memory_mb)
        self.base_mb = float(base_mb)
        self.hard_seconds = None if hard_seconds is None or math.isinf(hard_seconds) else float(hard_seconds)
        self._cond = threading.Condition()
        self._running = 0
        self._reserved = 0.0  # MiB the running computations' estimates hold, the base not included
        self._queue: list[_Ticket] = []  # FIFO of callers waiting for a slot
        self._flights: dict[Hashable, _Flight] = {}
        self.peak_running = 0  # most computations ever holding a slot at once (for tests and reports)
        self.computed = 0  # computations started
        self.peak_reserved_mb = 0.0  # most memory ever reserved at once, the base included
        self.after: Callable[[], None] | None = None  # called after each computation (release_memory)

    @property
    def running(self) -> int:
        with self._cond:
            return self._running

    @property
    def waiting(self) -> int:
        with self._cond:
            return len(self._queue)

    def compute(self, key: Hashable, fn: Callable[[], T],
                on_wait: Callable[[QueueStatus], None] | None = None, memory_mb: float = 0.0) -> T:
        """Run ``fn()`` under the gate, or share the result of an equal ``key`` already in flight.

        Args:
            key: hashable identity of the computation, e.g. ``("probe", model_config, probe_config)``.
            fn: the computation; runs in the calling thread.
            memory_mb: its estimated peak memory, the process's base included (``Cost.memory_mb``);
                it starts only when that fits beside the running ones within the gate's limit.
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
                return self._lead(key, flight, fn, on_wait, memory_mb)
            self._follow(flight, on_wait)
            if not flight.abandoned:
                if flight.error is not None:
                    raise flight.error
                return flight.result
            # the leader went away without a result: try again, perhaps as the new leader

    def _lead(self, key, flight: _Flight, fn, on_wait, memory_mb: float):
        ticket = _Ticket(max(0.0, float(memory_mb) - self.base_mb))
        try:
            self._acquire(flight, ticket, on_wait)
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
                self._release(ticket)
                if self.after is not None:
                    self.after()
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

    def _acquire(self, flight: _Flight, ticket: _Ticket, on_wait) -> None:
        start = time.monotonic()
        deadline = start + self.queue_timeout
        with self._cond:
            if not self._queue and self._fits(ticket):
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
                        memory = ("" if self.memory_mb is None else
                                  f" and {self.memory_mb:,.0f} MiB of memory")
                        raise QueueTimeout(
                            f"the server is busy: waited {now - start:.0f} s for one of "
                            f"{self.max_concurrent} compute slots{memory} ({running} computing, "
                            f"{waiting} more waiting). Try again in a minute, or ask for a smaller config."
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
                    self._free(ticket)
                elif ticket in self._queue:
                    self._queue.remove(ticket)
                    self._cond.notify_all()
            raise
        finally:
            flight.ticket = None

    def _fits(self, ticket: _Ticket) -> bool:
        """A slot is free and the ticket's memory fits beside the running ones (alone it always does).
        Caller holds the lock."""
        if self._running >= self.max_concurrent:
            return False
        if self.memory_mb is None or self._running == 0:
            return True
        return self.base_mb + self._reserved + ticket.memory_mb <= self.memory_mb

    def _take(self, ticket: _Ticket) -> None:
        ticket.granted = True
        self._running += 1
        self._reserved += ticket.memory_mb
        self.computed += 1
        self.peak_running = max(self.peak_running, self._running)
        self.peak_reserved_mb = max(self.peak_reserved_mb, self.base_mb + self._reserved)

    def _grant(self) -> None:
        """Start the front of the queue while it fits, in order: a large request at the front is not
        overtaken (it would otherwise wait for ever behind small ones). Caller holds the lock."""
        while self._queue and self._fits(self._queue[0]):
            self._take(self._queue.pop(0))
        self._cond.notify_all()

    def _free(self, ticket: _Ticket) -> None:
        """Give back a granted ticket's slot and memory and start whoever now fits. Caller holds the lock."""
        self._running -= 1
        self._reserved = max(0.0, self._reserved - ticket.memory_mb) if self._running else 0.0
        assert self._running >= 0, "released more slots than were taken"
        self._grant()

    def _release(self, ticket: _Ticket) -> None:
        with self._cond:
            self._free(ticket)

    def _status(self, state: str, position: int, waited: float) -> QueueStatus:
        """A snapshot of the queue; caller holds the lock. Whole seconds, so a waiting caller's
        status changes (and ``on_wait`` is called) at most about once a second unless its place moves."""
        return QueueStatus(state, position, len(self._queue), self._running, self.max_concurrent,
                           round(waited, 0))


def gate_from_env(environ: Mapping[str, str] | None = None) -> Gate:
    """A Gate with K, the queue timeout, the hard stop and the shared memory from NORMLAB_MAX_CONCURRENT,
    NORMLAB_QUEUE_TIMEOUT, NORMLAB_HARD_SECONDS and NORMLAB_MAX_MEMORY_MB (the server's limits, defaults
    in normlab.ops.settings)."""
    environ = os.environ if environ is None else environ
    limits = server_limits(environ)
    return Gate(max_concurrent(environ), queue_timeout(environ), limits.hard_seconds, limits.max_memory_mb)


# Without these, a server whose computations run in many threads keeps what they freed: glibc gives each
# thread's allocations their own arena and raises its mmap threshold after every large free, so the
# next tensors land in arenas that never shrink. Measured here, 12 probes of ResNets 2 at a time in
# threads peaked at 3,031 MiB resident and ended at 2,354; with both, at 1,221 and 329.
_MMAP_THRESHOLD = 1 << 20  # bytes: every allocation this large is its own mapping, unmapped when freed
_M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)
_libc = None


def _glibc():
    """The C library when it is glibc (mallopt and malloc_trim), else None."""
    global _libc
    if _libc is None:
        try:
            lib = ctypes.CDLL(None)
            _libc = lib if hasattr(lib, "malloc_trim") and hasattr(lib, "mallopt") else False
        except OSError:
            _libc = False
    return _libc or None


def tune_allocator() -> bool:
    """Fix glibc's mmap threshold at 1 MiB, so large tensors go back to the system when freed.
    False (and nothing changed) on another C library."""
    lib = _glibc()
    return bool(lib is not None and lib.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD))


def release_memory() -> None:
    """Hand the allocator's free memory back to the system (glibc's malloc_trim); elsewhere nothing."""
    lib = _glibc()
    if lib is not None:
        lib.malloc_trim(0)


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
            tune_allocator()
            gate.after = release_memory
            _default_gate = gate
        return _default_gate


def compute(key: Hashable, fn: Callable[[], T],
            on_wait: Callable[[QueueStatus], None] | None = None, memory_mb: float = 0.0) -> T:
    """``default_gate().compute(key, fn, on_wait, memory_mb)``: see ``Gate.compute``."""
    return default_gate().compute(key, fn, on_wait, memory_mb)
