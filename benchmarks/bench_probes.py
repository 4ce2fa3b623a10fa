"""Probe cost against a bare forward + backward pass of the same model, batch and device.

Run:  .venv/bin/python benchmarks/bench_probes.py                      (CPU, one thread, about 5 minutes)
      .venv/bin/python benchmarks/bench_probes.py --quick              (3 repeats)
      python3 benchmarks/bench_probes.py --device cuda --json bench_cuda.json

Prints, for the same model, batch and device, in one process:

* ratios: median time of a bare pass against run_probes, for mlp (depth 50, width 512), cnn (depth 20,
  width 64, 32x32) and the resnet56 preset at batch 128. The bare pass is what any user pays for one
  look at a network: fresh build, inputs, forward, cross-entropy, loss.backward() with weight
  gradients. The two alternate within each repeat, so a change in machine load hits both.
  On a CPU the process CPU time (time.process_time) is printed next to the wall time: with one
  thread it barely moves when other processes compete for the cores, where wall time does.
* seeds: k seeds against one seed, for the dashboard's default network and for resnet56, with where
  a seed's time goes: the pass itself (build + forward + input-gradient backward, no hooks) and the
  statistics on top of it.
* memory: peak memory of one bare pass and one probe, per model (CPU: peak RSS of a fresh process
  above its RSS after imports; CUDA: peak allocated by torch).
* dashboard: the compute of the dashboard's default view (three networks, batch 32, 16x16).
* on CUDA, diagnostics: the eigensolve of a resnet56-sized stack on the device and on the host, and
  how many synchronizations a probe makes as the network gets deeper.
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from normlab import ModelConfig, ProbeConfig, build_model, resolve_device, run_probes  # noqa: E402
from normlab.core.config import config_from_dict  # noqa: E402
from normlab.science.data import derive_seed, make_inputs, make_labels  # noqa: E402
from normlab.science.device import cuda_synchronizations  # noqa: E402

BATCH = 128
# The operator's budget (normlab/ops/budget.py) refuses the largest of these probes by default (the cnn
# at batch 128 is ~400 GFLOP, k seeds of resnet56 more): lifted for this process and its children.
BENCH_LIMITS = {"NORMLAB_MAX_COST": "1e7", "NORMLAB_MAX_MEMORY_MB": "1e7", "NORMLAB_MAX_SEEDS": "1024",
                "NORMLAB_MAX_BATCH": "65536"}
MODELS = {  # name -> (network, image size); mlp: depth 50, width 512; cnn: depth 20, width 64
    "mlp": (ModelConfig(arch="mlp", norm="batchnorm", depth=50, width=512), 32),
    "cnn": (ModelConfig(arch="cnn", norm="batchnorm", depth=20, width=64), 32),
    "resnet56": (ModelConfig(preset="resnet56", norm="batchnorm"), 32),
}
# The dashboard's default view (ui/state/controls.py): a ResNet of 8 blocks of width 16 with three
# normalizers (GroupNorm with 4 groups), one seed of 32 Gaussian 16x16 images.
DASHBOARD_NETS = tuple(
    ModelConfig(arch="resnet", norm=norm, depth=8, width=16, stages=1, **({"groups": 4} if grouped else {}))
    for norm, grouped in (("batchnorm", False), ("groupnorm", True), ("none", False))
)
DASHBOARD_PROBE = {"batch_size": 32, "image_size": 16}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _model_and_batch(cfg: ModelConfig, probe: ProbeConfig, seed: int, device: torch.device):
    """The very network, inputs and labels run_probes uses for ``seed``."""
    x = make_inputs(probe, seed, cfg.in_channels).to(device)
    y = make_labels(probe.batch_size, cfg.num_classes, seed).to(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "init"))
        model = build_model(cfg, tuple(x.shape[1:]))
    return model.train().to(device), x, y


def bare_pass(cfg: ModelConfig, probe: ProbeConfig, device: torch.device) -> None:
    """What any user pays for one look at a network: build, one batch, forward, loss, backward."""
    model, x, y = _model_and_batch(cfg, probe, probe.seed, device)
    F.cross_entropy(model(x), y).backward()


def pass_floor(cfg: ModelConfig, probe: ProbeConfig, device: torch.device) -> None:
    """The probe's own pass without any hook: build, forward, backward to the input only."""
    model, x, y = _model_and_batch(cfg, probe, probe.seed, device)
    x.requires_grad_(True)
    torch.autograd.grad(F.cross_entropy(model(x), y), [x])


def timed(fns: dict[str, Callable[[], object]], repeats: int, device: torch.device) -> dict[str, dict]:
    """Median wall and process CPU seconds of each function; they alternate within every repeat."""
    for fn in fns.values():  # warm-up: allocator, kernels, data caches, lazy imports
        fn()
        sync(device)
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            gc.collect()
            sync(device)
            w0, c0 = time.perf_counter(), time.process_time()
            fns[name]()
            sync(device)
            wall[name].append(time.perf_counter() - w0)
            cpu[name].append(time.process_time() - c0)
    return {k: {"wall_s": statistics.median(wall[k]), "cpu_s": statistics.median(cpu[k]),
                "wall_all_s": wall[k]} for k in fns}


def vmap_against_loop(cfg: ModelConfig, probe: ProbeConfig, k: int, repeats: int,
                      device: torch.device) -> dict[str, float]:
    """k seeds' passes (forward + input-gradient backward, no hooks): one vmap over stacked parameters
    against a loop over the k networks. Whether batching seeds this way could pay off on this device."""
    from torch.func import functional_call, grad, stack_module_state, vmap

    nets, xs, ys = zip(*(_model_and_batch(cfg, probe, seed, device) for seed in range(k)), strict=True)
    params, buffers = stack_module_state(list(nets))
    base = nets[0]

    def loss(p, b, x, y):
        return F.cross_entropy(functional_call(base, (p, b), (x,)), y)

    batched = vmap(grad(loss, argnums=2))
    x_all, y_all = torch.stack(xs), torch.stack(ys)

    def loop():
        for net, x, y in zip(nets, xs, ys, strict=True):
            x = x.detach().requires_grad_(True)
            torch.autograd.grad(F.cross_entropy(net(x), y), [x])

    t = timed({"loop": loop, "vmap": lambda: batched(params, buffers, x_all, y_all)}, repeats, device)
    key = "wall_s" if device.type != "cpu" else "cpu_s"
    return {"loop_s": t["loop"][key], "vmap_s": t["vmap"][key]}


# ---------------------------------------------------------------------------------------------
# Memory


def _status_kib(field: str) -> int:
    """A memory figure of this process from /proc/self/status (VmRSS now, VmHWM its peak), in KiB.

    VmHWM belongs to the process image: unlike getrusage's ru_maxrss it does not carry over the
    parent's peak into a freshly started child.
    """
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def _peak_child(what: str, cfg: dict, probe: dict, queue) -> None:
    torch.set_num_threads(1)
    model_config, probe_config = config_from_dict(ModelConfig, cfg), config_from_dict(ProbeConfig, probe)
    device = resolve_device(probe_config.device)
    run_probes(ModelConfig(arch="mlp", depth=1, width=4), ProbeConfig(batch_size=2, image_size=2))  # imports
    before = _status_kib("VmRSS")
    if what == "bare":
        bare_pass(model_config, probe_config, device)
    else:
        run_probes(model_config, probe_config)
    queue.put((_status_kib("VmHWM") - before) / 1024)


def peak_memory_mib(what: str, cfg: ModelConfig, probe: ProbeConfig, device: torch.device) -> float:
    """Peak memory of one bare pass or one probe above what the process held before it."""
    if device.type == "cuda":
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        bare_pass(cfg, probe, device) if what == "bare" else run_probes(cfg, probe)
        sync(device)
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    if not sys.platform.startswith("linux"):
        return float("nan")
    # A fresh process: the high-water mark of this one never goes down.
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_peak_child, args=(what, cfg.to_dict(), probe.to_dict(), queue))
    child.start()
    child.join()
    return queue.get() if child.exitcode == 0 else float("nan")


# ---------------------------------------------------------------------------------------------
# CUDA diagnostics


def eigensolve_times(device: torch.device, points: int = 55, n: int = 129) -> dict[str, float]:
    """A resnet56-sized stack of float64 Gram matrices: eigenvalues on the device and on the host."""
    a = torch.randn(2, points, n, 3 * n, dtype=torch.float64, device=device)
    stack = a @ a.transpose(-1, -2)  # (2, P, N, N)
    out = {}
    for where, fn in (("device", lambda: torch.linalg.eigvalsh(stack)),
                      ("host", lambda: torch.linalg.eigvalsh(stack.cpu()))):
        fn()
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        out[f"eigvalsh_{where}_s"] = time.perf_counter() - t0
    return out


def synchronizations(device: torch.device) -> dict[str, int]:
    """Synchronizing CUDA calls in one probe of a shallow and a deep ResNet (torch's sync debug mode)."""
    out = {}
    for depth in (1, 6):
        cfg = ModelConfig(arch="resnet", depth=depth, width=8)
        probe = ProbeConfig(batch_size=8, image_size=8, device="cuda")
        run_probes(cfg, probe)  # warm-up: allocator and library handles
        out[f"resnet depth={depth} probe points={_points(cfg)}"] = cuda_synchronizations(
            lambda cfg=cfg, probe=probe: run_probes(cfg, probe))
        out[f"resnet depth={depth} tensors to upload"] = len(build_model(cfg).state_dict()) + 2
    return out


def _points(cfg: ModelConfig) -> int:
    return sum(1 for _ in build_model(cfg).probe_points())


# ---------------------------------------------------------------------------------------------


def machine(device: torch.device) -> dict:
    info = {"device": str(device), "torch": torch.__version__, "python": platform.python_version(),
            "threads": torch.get_num_threads(), "platform": platform.platform(),
            "cpu": platform.processor() or "unknown", "cores": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    if hasattr(os, "getloadavg"):
        info["load_average_start"] = os.getloadavg()
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
        info["cudnn_allow_tf32"] = torch.backends.cudnn.allow_tf32
        info["matmul_allow_tf32"] = torch.backends.cuda.matmul.allow_tf32
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "mps", "auto"))
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: 1 on a CPU, torch's default elsewhere)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="3 repeats")
    parser.add_argument("--seeds", type=int, default=4, help="k for the k-seeds-against-one rows")
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory rows")
    parser.add_argument("--json", type=Path, help="also write every figure as JSON here")
    args = parser.parse_args(argv)
    for name, value in BENCH_LIMITS.items():
        os.environ.setdefault(name, value)
    device = resolve_device(args.device)
    threads = args.threads if args.threads is not None else (1 if device.type == "cpu" else None)
    if threads is not None:
        torch.set_num_threads(threads)
    repeats = 3 if args.quick else args.repeats
    report: dict = {"machine": machine(device), "repeats": repeats, "batch_size": BATCH}
    cpu = device.type == "cpu"
    print("machine: " + ", ".join(f"{k}={v}" for k, v in report["machine"].items()), flush=True)
    print(f"medians of {repeats} repeats; bare = build + inputs + forward + cross-entropy + backward "
          f"(weight gradients included); probes = run_probes (all metrics, one seed)\n", flush=True)

    # 1. Ratios ----------------------------------------------------------------------------------
    head = f"{'model':<14}{'bare s':>9}{'probe s':>9}{'ratio':>7}"
    print("RATIOS (wall" + (" | process CPU time" if cpu else "") + ")")
    print(head + (f"   |{'bare s':>9}{'probe s':>9}{'ratio':>7}" if cpu else ""), flush=True)
    report["ratios"] = []
    for name in args.models:
        cfg, size = MODELS[name]
        probe = ProbeConfig(batch_size=BATCH, image_size=size, device=args.device)
        t = timed({"bare": lambda c=cfg, p=probe: bare_pass(c, p, device),
                   "probe": lambda c=cfg, p=probe: run_probes(c, p)}, repeats, device)
        row = {"model": name, "bare_wall_s": t["bare"]["wall_s"], "probe_wall_s": t["probe"]["wall_s"],
               "ratio_wall": t["probe"]["wall_s"] / t["bare"]["wall_s"],
               "bare_cpu_s": t["bare"]["cpu_s"], "probe_cpu_s": t["probe"]["cpu_s"],
               "ratio_cpu": t["probe"]["cpu_s"] / t["bare"]["cpu_s"],
               "bare_wall_all_s": t["bare"]["wall_all_s"], "probe_wall_all_s": t["probe"]["wall_all_s"]}
        report["ratios"].append(row)
        line = f"{name:<14}{row['bare_wall_s']:>9.3f}{row['probe_wall_s']:>9.3f}{row['ratio_wall']:>7.2f}"
        if cpu:
            line += f"   |{row['bare_cpu_s']:>9.3f}{row['probe_cpu_s']:>9.3f}{row['ratio_cpu']:>7.2f}"
        print(line, flush=True)

    # 2. Seeds -----------------------------------------------------------------------------------
    k = args.seeds
    print(f"\nSEEDS: {k} seeds against one seed (k x one would be {k:.2f}x); per seed: the pass without "
          f"hooks (build + forward + input-gradient backward) and the statistics on top", flush=True)
    report["seeds"] = []
    seed_cases = [("dashboard net", DASHBOARD_NETS[0], DASHBOARD_PROBE)]
    if "resnet56" in args.models:
        seed_cases.append(("resnet56", MODELS["resnet56"][0], {"batch_size": BATCH, "image_size": 32}))
    key = "cpu_s" if cpu else "wall_s"
    for name, cfg, sizes in seed_cases:
        one = ProbeConfig(**sizes, device=args.device)
        many = ProbeConfig(**sizes, device=args.device, seeds=k)
        t = timed({"one": lambda c=cfg, p=one: run_probes(c, p),
                   "many": lambda c=cfg, p=many: run_probes(c, p),
                   "floor": lambda c=cfg, p=one: pass_floor(c, p, device)}, repeats, device)
        row = {"model": name, "seeds": k, "one_seed_s": t["one"][key], "k_seeds_s": t["many"][key],
               "k_ratio": t["many"][key] / t["one"][key], "pass_floor_s": t["floor"][key], "clock": key}
        per_seed = (row["k_seeds_s"] - row["one_seed_s"]) / (k - 1) if k > 1 else row["one_seed_s"]
        row["per_extra_seed_s"] = per_seed
        report["seeds"].append(row)
        stats_ms = (per_seed - row["pass_floor_s"]) * 1e3
        print(f"{name:<14} one {row['one_seed_s'] * 1e3:8.1f} ms  {k} seeds {row['k_seeds_s'] * 1e3:8.1f} ms"
              f"  -> {row['k_ratio']:.2f}x | each extra seed {per_seed * 1e3:.1f} ms = pass "
              f"{row['pass_floor_s'] * 1e3:.1f} ms + statistics {stats_ms:.1f} ms "
              f"({'process CPU' if cpu else 'wall'})", flush=True)

    try:
        v = vmap_against_loop(DASHBOARD_NETS[0], ProbeConfig(**DASHBOARD_PROBE, device=args.device), k,
                              repeats, device)
        report["seeds_vmap"] = v
        print(f"dashboard net, {k} passes without hooks: a loop {v['loop_s'] * 1e3:.1f} ms, one vmap over "
              f"stacked parameters {v['vmap_s'] * 1e3:.1f} ms", flush=True)
    except Exception as err:  # a diagnostic: report it, never fail the benchmark
        report["seeds_vmap"] = {"error": repr(err)}
        print(f"vmap over stacked parameters failed: {err!r}", flush=True)

    # 3. Memory ----------------------------------------------------------------------------------
    if not args.no_memory:
        report["memory"] = []
        kind = "peak allocated by torch" if device.type == "cuda" else "peak RSS above the RSS after imports"
        print(f"\nMEMORY ({kind}, MiB)", flush=True)
        for name in args.models:
            cfg, size = MODELS[name]
            probe = ProbeConfig(batch_size=BATCH, image_size=size, device=args.device)
            bare = peak_memory_mib("bare", cfg, probe, device)
            probed = peak_memory_mib("probe", cfg, probe, device)
            report["memory"].append({"model": name, "bare_mib": bare, "probe_mib": probed})
            print(f"{name:<14} bare {bare:8.0f}   probe {probed:8.0f}", flush=True)

    # 4. Dashboard -------------------------------------------------------------------------------
    probe = ProbeConfig(**DASHBOARD_PROBE, device=args.device)
    fns = {cfg.norm: (lambda c=cfg: run_probes(c, probe)) for cfg in DASHBOARD_NETS}
    t = timed(fns, repeats, device)
    total = sum(v["wall_s"] for v in t.values())
    report["dashboard"] = {"total_wall_s": total, **{k: v["wall_s"] for k, v in t.items()}}
    print(f"\nDASHBOARD default view (3 networks, batch 32, 16x16, wall): {total * 1e3:.0f} ms  ("
          + ", ".join(f"{k} {v['wall_s'] * 1e3:.0f} ms" for k, v in t.items()) + ")", flush=True)

    # 5. CUDA diagnostics ------------------------------------------------------------------------
    if device.type == "cuda":
        report["diagnostics"] = {**eigensolve_times(device), **synchronizations(device)}
        print("\nCUDA DIAGNOSTICS", flush=True)
        for k, v in report["diagnostics"].items():
            print(f"  {k}: {v:.4f}" if isinstance(v, float) else f"  {k}: {v}", flush=True)

    if hasattr(os, "getloadavg"):
        report["machine"]["load_average_end"] = os.getloadavg()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
