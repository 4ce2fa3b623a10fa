"""The cost model's predicted wall time of transformer probes against measured, on a small grid.

Calibrates the cost model on this machine (or reads NORMLAB_CALIBRATION; the calibration probes are the
paper's families, none of them a transformer), then runs ``run_probes`` on transformers from narrow and
deep to wide and shallow, short and long sequences, each placement and normalizer, and prints per row
the predicted and measured seconds and their ratio, then the median and the worst ratio (target: every
row within 2x either way). Each measurement is the fastest of ``--repeats`` runs. Also prints the
estimated FLOPs against torch's own count for two rows. Takes about a minute on one core.

    .venv/bin/python benchmarks/bench_transformer_cost.py [--threads 1] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402
from torch.utils.flop_counter import flop_registry  # noqa: E402

from normlab import ModelConfig, ProbeConfig, run_probes  # noqa: E402
from normlab.ops.calibration import calibration  # noqa: E402
from normlab.ops.cost import estimate_cost  # noqa: E402


def _tf(**kw) -> ModelConfig:
    return ModelConfig(arch="transformer", **kw)


GRID = [  # (label, network, probe)
    ("default 6x64 T32 batch 8", _tf(), ProbeConfig(batch_size=8)),
    ("deep-narrow 48x16 T16", _tf(depth=48, width=16, heads=2, seq_len=16), ProbeConfig(batch_size=8)),
    ("deep 24x64 post", _tf(depth=24, placement="post"), ProbeConfig(batch_size=8)),
    ("wide-shallow 2x256 T32", _tf(depth=2, width=256, heads=8), ProbeConfig(batch_size=16)),
    ("long sequence 4x64 T256", _tf(depth=4, seq_len=256), ProbeConfig(batch_size=4)),
    ("peri dyt qk_norm 6x64", _tf(placement="peri", norm="dyt", qk_norm=True), ProbeConfig(batch_size=8)),
    ("mix rmsnorm 12x64", _tf(depth=12, placement="mix", norm="rmsnorm"), ProbeConfig(batch_size=8)),
    ("pure attention 12x64 bidirectional", _tf(depth=12, norm="none", ffn=False, skip=False, causal=False),
     ProbeConfig(batch_size=8)),
    ("text input 6x64 batch 32", _tf(), ProbeConfig(input="text", batch_size=32)),
    ("3 seeds 6x128 T64", _tf(width=128, seq_len=64), ProbeConfig(batch_size=8, seeds=3)),
]


class CountFlops(TorchDispatchMode):
    """Torch's own FLOP formulas summed over every op that has one."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += formula(*args, **kwargs, out_val=out)
        return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per row, the fastest kept")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    cal = calibration(args.threads)
    print(f"# calibration at {args.threads} thread(s): {time.perf_counter() - start:.1f} s; "
          + json.dumps(cal.to_dict()))
    print(f"{'transformer':<38} {'predicted':>10} {'measured':>10} {'ratio':>6}")
    ratios = []
    for label, model, probe in GRID:
        cost = estimate_cost(model, probe)
        predicted = cal.predict(cost)
        best = float("inf")
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            run_probes(model, probe)
            best = min(best, time.perf_counter() - t0)
        ratios.append(predicted / best)
        print(f"{label:<38} {predicted:>9.3f}s {best:>9.3f}s {predicted / best:>6.2f}", flush=True)
    worst = max(ratios, key=lambda r: max(r, 1 / r))
    print(f"# median ratio {statistics.median(ratios):.2f}, worst {worst:.2f} (target within 0.5 .. 2)")
    for label, model, probe in GRID[:2]:
        with CountFlops() as counted:
            run_probes(model, probe)
        cost = estimate_cost(model, probe)
        estimated = cost.forward_flops + cost.backward_flops + cost.metric_flops
        print(f"# FLOPs {label}: estimated / torch's count = {estimated / counted.total:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
