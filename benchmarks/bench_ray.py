"""A 64-point sweep of the dashboard's default network on the local backend and on a local Ray of 2 workers.

Run:  .venv/bin/pip install -r requirements-ray.txt
      RAY_AUTH_MODE=disabled .venv/bin/python benchmarks/bench_ray.py            (about 2 minutes on 2 cores)
      .venv/bin/python benchmarks/bench_ray.py --workers 4 --json bench_ray.json

Prints the wall time of the sweep (8 normalizers x 8 seeds of the dashboard's ResNet: 8 blocks of width
16, batch 32, 16x16 Gaussian inputs) run locally with torch's default threads and with one thread, then
on Ray with ``--workers`` one-thread workers, and Ray's start-up overhead: ``ray.init`` plus every
worker's first point (which imports torch and normlab), paid once per sweep, not per point. Both
backends are warmed up before they are timed. It checks that Ray's frame equals the local one. Nothing is
stored (``store=None``): the numbers are compute, not reads of earlier results.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from normlab import ModelConfig, ProbeConfig, run_sweep  # noqa: E402
from normlab.ops.backends import import_ray, start_ray  # noqa: E402
from normlab.ops.cost import estimate_cost  # noqa: E402
from normlab.science.probes import vary  # noqa: E402

# The dashboard's default network (ui/state/controls.py, as in benchmarks/bench_probes.py).
MODEL = ModelConfig(arch="resnet", norm="batchnorm", depth=8, width=16, stages=1)
PROBE = ProbeConfig(batch_size=32, image_size=16, seeds=1)
NORMS = ["batchnorm", "groupnorm", "layernorm", "instancenorm", "none", "frn", "evonorm_b0", "evonorm_s0"]


def sweep_over(points: int) -> dict:
    seeds = max(1, points // len(NORMS))
    return {"norm": NORMS, "seed": list(range(seeds))}


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=64, help="sweep points: 8 normalizers x points/8 seeds")
    parser.add_argument("--workers", type=int, default=2, help="CPUs of the local Ray (default 2)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    ray = import_ray()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    over = sweep_over(args.points)
    n = len(over["norm"]) * len(over["seed"])
    gflop = sum(estimate_cost(vary(MODEL, {"norm": norm}), PROBE).gflop for norm in NORMS) * len(over["seed"])
    print(f"# {n} points of {MODEL.arch} depth {MODEL.depth} width {MODEL.width}, batch {PROBE.batch_size}, "
          f"{PROBE.image_size}x{PROBE.image_size}: {gflop:.1f} GFLOP by the budget's estimate")
    print(f"# {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"ray {ray.__version__}; a shared machine makes wall times noisy")

    threads = torch.get_num_threads()
    run_sweep(MODEL, PROBE, {"norm": NORMS})  # warm-up: imports, first calls, the allocator
    local_s, local = timed(lambda: run_sweep(MODEL, PROBE, over))
    torch.set_num_threads(1)
    one_s, one = timed(lambda: run_sweep(MODEL, PROBE, over))
    torch.set_num_threads(threads)

    init_s, _ = timed(lambda: start_ray(num_cpus=args.workers))
    try:
        # each worker's first point also imports torch and normlab: a cost paid once per worker
        warm = {"seed": list(range(args.workers))}
        first_s, _ = timed(lambda: run_sweep(MODEL, PROBE, warm, backend="ray"))
        ray_s, remote = timed(lambda: run_sweep(MODEL, PROBE, over, backend="ray"))
    finally:
        ray.shutdown()
    pd.testing.assert_frame_equal(remote, one, check_exact=True)  # Ray's tasks run one thread each

    report = {
        "points": n,
        "local_s": local_s, "local_threads": threads,
        "local_1_thread_s": one_s,
        "ray_s": ray_s, "ray_workers": args.workers,
        "ray_startup_s": init_s + first_s, "ray_init_s": init_s, "ray_first_task_s": first_s,
    }
    print(f"local backend, {threads} torch threads   {local_s:7.1f} s  ({local_s / n * 1e3:.0f} ms a point)")
    print(f"local backend, 1 torch thread     {one_s:7.1f} s  ({one_s / n * 1e3:.0f} ms a point)")
    print(f"ray backend, {args.workers} workers            {ray_s:7.1f} s  "
          f"({one_s / ray_s:.2f}x the 1-thread local, {local_s / ray_s:.2f}x the default local)")
    print(f"ray start-up                      {init_s + first_s:7.1f} s  "
          f"(ray.init {init_s:.1f} s, every worker's first point {first_s:.1f} s)")
    print(f"ray's frame equals the 1-thread local frame ({len(remote)} rows); "
          f"bit-equal to the {threads}-thread one too: {remote.equals(local)}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
