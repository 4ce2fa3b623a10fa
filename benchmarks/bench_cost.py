"""The cost model's predicted wall time against measured, over deep-narrow and wide-shallow networks.

Calibrates normlab.ops.budget's cost model on this machine (or reads NORMLAB_CALIBRATION), then runs
``run_probes`` on a grid covering the three architectures deep and narrow, wide and shallow, every
normalizer and both input kinds (gaussian noise, natural images), and prints per row the predicted and
measured seconds and their ratio, then the median and worst ratio (target: worst within 2x either
way). Each row's measurement is the fastest of ``--repeats`` runs, as the calibration's are: a busy
machine slows some runs, never speeds one. The first row is the first probe of natural images in the
process, run once: it also decodes the photographs, a one-off cost the model predicts. Also prints
the estimated against the measured peak resident memory of a few configs, each probed in a fresh
process. Takes ~4-6 minutes on one core (``--quick``: ~1). ``--write FILE`` keeps the calibration as
a table for NORMLAB_CALIBRATION.

    .venv/bin/python benchmarks/bench_cost.py [--threads 1] [--quick] [--repeats 2] [--write calibration.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from normlab import ModelConfig, ProbeConfig, run_probes  # noqa: E402
from normlab.core import catalog  # noqa: E402
from normlab.core.catalog import NORM_NAMES  # noqa: E402
from normlab.ops.calibration import calibrate, save_calibration, set_calibration  # noqa: E402
from normlab.ops.cost import estimate_cost  # noqa: E402


def _grouped(norm: str, **kw) -> ModelConfig | None:
    """The network, or None where its family does not take the normalizer (rmsnorm in a cnn)."""
    return ModelConfig(norm=norm, **kw) if catalog.accepts(kw["arch"], norm) else None


def grid(quick: bool = False) -> list[tuple[str, ModelConfig, ProbeConfig]]:
    """(label, network, probe) rows: every normalizer in a deep-narrow and a wide-shallow net of each arch."""
    rows = []
    for k, norm in enumerate(NORM_NAMES):
        kind = ("gaussian", "images")[k % 2]
        other = ("images", "gaussian")[k % 2]
        rows += [
            (f"mlp deep-narrow {norm}", _grouped(norm, arch="mlp", depth=192, width=8),
             ProbeConfig(input=kind, batch_size=8, image_size=8)),
            (f"resnet deep-narrow {norm}", _grouped(norm, arch="resnet", depth=24, width=4, stages=2),
             ProbeConfig(input=other, batch_size=8, image_size=8)),
            (f"cnn wide-shallow {norm}", _grouped(norm, arch="cnn", depth=3, width=64),
             ProbeConfig(input=kind, batch_size=32, image_size=32)),
        ]
        if not quick:
            rows += [
                (f"mlp wide-shallow {norm}", _grouped(norm, arch="mlp", depth=3, width=1024),
                 ProbeConfig(input=other, batch_size=128, image_size=32)),
                (f"cnn deep-narrow {norm}", _grouped(norm, arch="cnn", depth=64, width=8),
                 ProbeConfig(input=other, batch_size=8, image_size=16)),
            ]
    rows += [
        ("resnet56 batch 64", ModelConfig(preset="resnet56"), ProbeConfig(batch_size=64)),
        ("dashboard default resnet 8x16", ModelConfig(arch="resnet", depth=8, width=16),
         ProbeConfig(batch_size=32, image_size=16)),
        ("lecture-hall mlp 1024x4", ModelConfig(arch="mlp", depth=1024, width=4),
         ProbeConfig(batch_size=4, image_size=8)),
    ]
    if not quick:
        rows += [
            ("vgg10 batch 32", ModelConfig(preset="vgg10"), ProbeConfig(batch_size=32)),
            ("lecture-hall resnet 256x4 stages, width 4", ModelConfig(arch="resnet", depth=256, width=4,
                                                                       stages=4),
             ProbeConfig(batch_size=4, image_size=8)),
        ]
    return [row for row in rows if row[1] is not None]


MEMORY_ROWS = [  # (model kwargs, probe kwargs) probed in a fresh process for peak RSS
    (dict(preset="resnet56"), dict(batch_size=64)),
    (dict(preset="resnet56", norm="evonorm_s0"), dict(batch_size=64)),
    (dict(preset="vgg10"), dict(batch_size=64)),
    (dict(arch="cnn", depth=20, width=64), dict(batch_size=64)),
]

_PEAK = """
import json, resource, sys, torch
from normlab import ModelConfig, ProbeConfig, run_probes
torch.set_num_threads(1)
m, p = json.loads(sys.argv[1]), json.loads(sys.argv[2])
run_probes(ModelConfig(**m), ProbeConfig(**p))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def peak_rss_mb(model_kw: dict, probe_kw: dict) -> float:
    """Peak resident memory of a fresh process that imports normlab and streamlit and runs one probe."""
    code = "import streamlit, plotly\n" + _PEAK
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "1048576"}
    out = subprocess.run([sys.executable, "-c", code, json.dumps(model_kw), json.dumps(probe_kw)],
                         capture_output=True, text=True, check=True, env=env, cwd=ROOT)
    return float(out.stdout.split()[-1])


def memory_rows() -> None:
    """Estimated against measured peak resident memory (ru_maxrss of a fresh process), per config."""
    print(f"{'memory: config':<46} {'estimated':>10} {'peak RSS':>10} {'ratio':>6}")
    for model_kw, probe_kw in MEMORY_ROWS:
        est = estimate_cost(ModelConfig(**model_kw), ProbeConfig(**probe_kw)).memory_mb
        peak = peak_rss_mb(model_kw, probe_kw)
        label = " ".join(f"{k}={v}" for k, v in {**model_kw, **probe_kw}.items())
        print(f"{label:<46} {est:>8.0f}MB {peak:>8.0f}MB {est / peak:>6.2f}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (the dashboard's on 2 cores: 1)")
    parser.add_argument("--quick", action="store_true", help="a smaller grid (~1 minute)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per row, the fastest kept (default 2)")
    parser.add_argument("--write", metavar="FILE", help="also write the calibration table here")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory rows")
    parser.add_argument("--memory-only", action="store_true", help="only the peak-memory rows")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.memory_only:
        memory_rows()
        return 0
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    cal = calibrate(args.threads)
    took = time.perf_counter() - start
    set_calibration(cal)
    print(f"# calibration at {args.threads} thread(s): {took:.2f} s; " + json.dumps(cal.to_dict()))
    if args.write:
        save_calibration(args.write, [cal])
        print(f"# wrote {args.write}")
    run_probes(ModelConfig(arch="mlp", depth=2, width=8), ProbeConfig(batch_size=4, image_size=4))  # warm
    ratios = []
    print(f"{'config':<46} {'input':<8} {'GFLOP':>8} {'predicted':>9} {'measured':>9} {'ratio':>6}")
    first = ("first images probe (decodes the photographs)", ModelConfig(arch="mlp", depth=4, width=8),
             ProbeConfig(input="images", batch_size=8, image_size=8))
    for k, (label, model, probe) in enumerate([first, *grid(args.quick)]):
        cost = estimate_cost(model, probe)
        predicted = cal.predict(cost)  # before the run: the first images probe pays the decoding
        runs = []
        for _ in range(1 if k == 0 else args.repeats):
            t0 = time.perf_counter()
            run_probes(model, probe)
            runs.append(time.perf_counter() - t0)
        measured = min(runs)
        ratio = predicted / measured
        ratios.append(ratio)
        print(f"{label:<46} {probe.input:<8} {cost.gflop:>8.3g} {predicted:>8.3f}s {measured:>8.3f}s "
              f"{ratio:>6.2f}", flush=True)
    worst = max(ratios, key=lambda r: max(r, 1 / r))
    print(f"# {len(ratios)} rows: median ratio predicted/measured {statistics.median(ratios):.2f}, "
          f"worst {worst:.2f} (range {min(ratios):.2f}-{max(ratios):.2f}); "
          f"{'within' if max(worst, 1 / worst) <= 2 else 'OUTSIDE'} 2x either way")
    if not args.no_memory:
        memory_rows()
    print(f"# total {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
