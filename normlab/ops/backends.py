"""Where the points of a sweep or a study run: here one after another, or as Ray tasks on a cluster.

A point is one computation of the engine: a probe (``kind="probe"``, the configs of ``run_probes``) or a
training run (``kind="train"``, those of ``run_training``); its :class:`Kind` says how it runs and how
its record is kept (normlab.ops.run). :func:`run_points` runs a list of them on a backend and streams
each result back as it finishes: it is written to the result store at once (so a crash loses at most
the points in flight), progress is reported, and a rerun of the same points skips those the store
already holds. Both backends return the same results in the same (the points') order.

Ray is optional (``pip install 'normlab[ray]'``) and imported only when the ``ray`` backend is asked for.
Each Ray task asks for what it needs: a GPU when it runs on CUDA, one CPU otherwise; torch gets one
thread per task, so a node runs as many points at once as it has cores. Results travel back to the
driver, which alone writes the store: the workers need normlab and torch, not the store's folder.
Knows nothing of the UI; never prints.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from normlab.core.config import Progress, check_callback, check_choice
from normlab.ops.store import ResultStore, record_key

BACKENDS = ("local", "ray")
RAY_INSTALL = "pip install 'normlab[ray]' (or: pip install -r requirements-ray.txt)"
POLL_SECONDS = 0.5  # how often a Ray driver checks should_stop while no point finishes
TASK_THREADS = 1  # torch threads per Ray task: one point per core, and the numbers of a 1-thread run
ENV_PREFIX = "NORMLAB_"  # the driver's settings (budget limits among them) that travel to the workers



# ---------------------------------------------------------------------------------------------
# Points and their records


@dataclass(frozen=True)
class Point:
    """One computation to run.

    Attributes:
        kind: ``"probe"`` or ``"train"``; also the kind of its record in the store.
        configs: the frozen configs; the computation's arguments and its record's key.
        cost: progress units it accounts for (seeds of a probe, steps of a run).
        prefix, suffix: its progress label is ``prefix + what + suffix``, ``what`` saying how far it is.
        name: what the Ray backend shows as ``what`` once the point is done.
    """

    kind: str
    configs: tuple
    cost: int
    prefix: str = ""
    suffix: str = ""
    name: str = ""

    @property
    def key(self) -> str:
        return record_key(self.kind, *self.configs)

    @property
    def device(self) -> str:
        return self.configs[-1].device  # the ProbeConfig's or the TrainConfig's

    def label(self, what: str) -> str:
        return f"{self.prefix}{what}{self.suffix}"


@dataclass(frozen=True)
class Kind:
    """How the points of one kind run and are kept (normlab.ops.run names the engine's two)."""

    run: Callable  # run(*configs, progress=, should_stop=); module-level, so Ray sends it by name
    put: Callable[[ResultStore, Point, Any], None]
    get: Callable[[ResultStore, Point], Any]
    stopped: Callable[[Any], bool]


# ---------------------------------------------------------------------------------------------
# Running them


def check_backend(backend: str, address: str | None = None) -> None:
    """A ValueError naming the choices for an unknown backend, or an address without the Ray backend."""
    check_choice("backend", backend, BACKENDS)
    if address is not None:
        if backend != "ray":
            raise ValueError(f"address {address!r} is for the 'ray' backend; got backend {backend!r}")
        if not isinstance(address, str) or not address.strip():
            raise ValueError(f"address must be a Ray cluster address such as 'ray://head:10001' or "
                             f"'auto'; got {address!r}")


def check_store(store) -> None:
    if store is not None and not isinstance(store, ResultStore):
        raise ValueError(f"store must be a normlab ResultStore or None; got {type(store).__name__}")


def import_ray():
    """The ``ray`` module; a ValueError saying what to install when it is missing."""
    try:
        import ray
    except ImportError:
        raise ValueError(f"the 'ray' backend needs Ray, which is not installed: {RAY_INSTALL}") from None
    return ray


def worker_env() -> dict[str, str]:
    """What a worker needs from the driver's environment: normlab's own settings and its import path."""
    import normlab

    env = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIX)}
    # A worker of a local Ray imports the same normlab as the driver, even an uninstalled checkout.
    here = str(Path(normlab.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([here, *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


def start_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Connect to the Ray cluster at ``address``, or start a local one of ``num_cpus`` CPUs (all by default).

    A local Ray runs without its dashboard; normlab's settings and import path reach every worker.
    """
    ray = import_ray()
    runtime_env = {"env_vars": worker_env()}
    if address is not None:
        # A cluster's nodes have normlab installed: only the settings travel.
        runtime_env["env_vars"].pop("PYTHONPATH")
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=False)
    else:
        ray.init(num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False, runtime_env=runtime_env,
                 log_to_driver=False)


def task_resources(device: str, cluster_has_gpus: bool) -> dict[str, int]:
    """What a point's Ray task asks for: a GPU when it runs on CUDA ('auto' does where there are GPUs)."""
    if device == "cuda" or (device == "auto" and cluster_has_gpus):
        return {"num_gpus": 1, "num_cpus": 0}  # the GPU is the scarce part; the host thread rides along
    return {"num_cpus": 1}


def _call(run: Callable, configs: tuple):
    """A Ray task's body: one point with one torch thread."""
    import torch

    torch.set_num_threads(TASK_THREADS)
    return run(*configs)


def _local(points: Sequence[tuple[int, Point]], kinds: Mapping[str, Kind], progress: Progress | None,
           should_stop, done: int, total: int) -> Iterator[tuple[int, Any]]:
    for i, point in points:
        def step(k: int, n: int, what: str, _base=done, _point=point) -> None:
            if progress is not None:
                progress(_base + k, total, _point.label(what))

        yield i, kinds[point.kind].run(*point.configs, progress=step, should_stop=should_stop)
        done += point.cost


def _ray(points: Sequence[tuple[int, Point]], kinds: Mapping[str, Kind], address: str | None,
         should_stop) -> Iterator[tuple[int, Any]]:
    ray = import_ray()
    started = not ray.is_initialized()
    if started:
        start_ray(address)
    try:
        gpus = ray.cluster_resources().get("GPU", 0) > 0
        task = ray.remote(_call)
        pending = {}
        for i, point in points:
            options = task_resources(point.device, gpus)
            pending[task.options(**options).remote(kinds[point.kind].run, point.configs)] = i
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_SECONDS)
                for ref in ready:
                    yield pending.pop(ref), ray.get(ref)
                if should_stop is not None and should_stop():
                    return
        finally:
            for ref in pending:  # stopped, or an error: nothing left running for us
                ray.cancel(ref, force=True)
    finally:
        if started:
            ray.shutdown()


def run_points(points: Sequence[Point], kinds: Mapping[str, Kind], backend: str = "local",
               address: str | None = None,
               store: ResultStore | None = None, progress: Progress | None = None,
               should_stop: Callable[[], bool] | None = None) -> tuple[list, bool]:
    """Run every point not already in ``store``; each result is stored as soon as it finishes.

    Args:
        points: what to run.
        kinds: each point's kind by name: how it runs, is stored and found again.
        backend: ``"local"`` (in this process, in order) or ``"ray"`` (one task per point).
        address: the Ray cluster to join (``"auto"``, ``"ray://head:10001"``, ...); None starts a local
            Ray, unless this process has already started or joined one, which is then used.
        store: where finished points are kept and found again; None keeps nothing.
        progress: ``progress(done, total, label)``, done and total in the points' cost units; locally
            within each point too, on Ray once per finished point; once for the points found stored.
        should_stop: polled as the points run; True ends the run with the points finished so far.

    Returns:
        (results in the points' order, None for a point that did not finish; whether it stopped early)
    """
    check_backend(backend, address)
    check_store(store)
    check_callback("progress", progress, "progress(done, total, label)")
    check_callback("should_stop", should_stop, "should_stop() -> bool")
    results: list = [None] * len(points)
    total = sum(p.cost for p in points)
    if store is not None:
        for i, point in enumerate(points):
            results[i] = kinds[point.kind].get(store, point)
    todo = [(i, p) for i, p in enumerate(points) if results[i] is None]
    done = total - sum(p.cost for _, p in todo)
    if progress is not None and len(todo) < len(points):
        progress(done, total, f"{len(points) - len(todo)} of {len(points)} points found in the store")
    if not todo:
        return results, False
    if backend == "local":
        stream = _local(todo, kinds, progress, should_stop, done, total)
    else:
        stream = _ray(todo, kinds, address, should_stop)
    stopped = False
    try:
        for i, result in stream:
            point = points[i]
            if kinds[point.kind].stopped(result):
                stopped = True
                break
            results[i] = result
            if store is not None:
                kinds[point.kind].put(store, point, result)
            done += point.cost
            if backend != "local" and progress is not None:
                progress(done, total, point.label(point.name))
    finally:
        stream.close()  # on Ray: cancels what is still in flight, and stops a Ray it started
    stopped = stopped or any(r is None for r in results)
    return results, stopped

