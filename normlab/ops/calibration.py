"""The time model: a request's predicted seconds on this machine, from its cost (normlab.ops.cost).

seconds = c0 + seeds * (a flops + m metric_flops + b ops + c points + e points^2 + d traffic)
(+ data_load, once per process, for the photographs). Calibrated on this machine: a few tiny probes,
timed once per process and per torch thread count the first time a prediction is asked for (well under
3 s), or a table kept with the deployment (``NORMLAB_CALIBRATION``; ``python -m normlab.ops.calibration
--write FILE`` makes one). Predictions agree with measured wall time within 2x either way over
deep-narrow and wide-shallow nets (benchmarks/bench_cost.py).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from normlab.core.config import ModelConfig, ProbeConfig
from normlab.ops.cost import Cost, TrainingEstimate, estimate_cost
from normlab.ops.settings import Limits

# The time model: seconds = c0 + seeds * (a flops + m metric_flops + b ops + c points + e points^2
#                                         + d traffic)
#                                         (+ data_load, once per process, for the photographs)
# Building, initializing and hooking a network costs about 1 ms a probe point on one busy core, nearly
# in proportion to the depth (measured here, width 4: 0.9 ms a point at 128 mlp layers, 1.1-1.4 ms at
# 1024-2048, resnets of 16-256 blocks x 4 stages 0.9-1.1 ms): a small squared term covers the growth.
# The first probe of natural images in a process also decodes the photographs (sklearn's JPEGs,
# ~1.5-3 s); that, not the network, made the first deep-narrow resnet on images run 5-10x its prediction.

TERMS = ("flops", "metric_flops", "ops", "points", "points_sq", "traffic_bytes")


def _terms(cost: Cost) -> tuple[float, ...]:
    return (cost.forward_flops + cost.backward_flops, cost.metric_flops, cost.ops, cost.points,
            cost.points**2, cost.traffic_bytes)


@dataclass(frozen=True)
class Calibration:
    """Seconds per unit of each cost-model term on this machine, at ``threads`` torch threads.

    ``fixed`` is paid once per probe (building the frame), every term once per seed.
    """

    threads: int
    fixed: float  # seconds per probe
    flops: float  # seconds per conv/linear FLOP (float32)
    metric_flops: float  # seconds per FLOP of the float64 statistics and eigensolves
    ops: float  # seconds per torch operation launched (forward and backward)
    points: float  # seconds per probe point (its hook and reductions)
    points_sq: float  # seconds per squared probe point (deep nets: module bookkeeping)
    traffic_bytes: float  # seconds per byte of element-wise traffic
    data_load: float = 0.0  # seconds to decode the photographs, paid by the first probe of "images"
    source: str = "measured"  # "measured" here, or the table's path

    def per_seed(self, cost: Cost) -> float:
        return sum(getattr(self, name) * x for name, x in zip(TERMS, _terms(cost), strict=True))

    def predict(self, cost: Cost) -> float:
        """Predicted wall time of a probe of ``cost``, all its seeds (and its data set's first load)."""
        load = self.data_load if cost.dataset and not dataset_loaded(cost.dataset) else 0.0
        return self.fixed + load + cost.seeds * self.per_seed(cost)

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "source"}


def dataset_loaded(name: str) -> bool:
    """Whether this process has already decoded data set ``name`` ("images": the photographs).

    Reads the loader's cache without importing it (the budget needs no torch): a process that never
    imported normlab.science.data has loaded nothing.
    """
    data = sys.modules.get("normlab.science.data")
    loader = getattr(data, "_photographs", None) if name == "images" else None
    info = getattr(loader, "cache_info", None)
    return info is not None and info().currsize > 0


# Tiny probes that span the cost model's terms, each dominated by a different one: deep and narrow
# nets (operations and probe points), a weight normalizer (weight operations), wide and shallow nets
# (FLOPs), large images with an element-wise normalizer (traffic) and a large batch (the statistics).
# Together ~0.6 s of compute on one core.
CALIBRATION_PROBES = (
    (dict(arch="mlp", norm="batchnorm", depth=320, width=4), dict(batch_size=2, image_size=2)),
    (dict(arch="mlp", norm="layernorm", depth=96, width=4), dict(batch_size=4, image_size=4)),
    (dict(arch="mlp", norm="evonorm_s0", depth=48, width=4), dict(batch_size=4, image_size=4)),
    (dict(arch="resnet", norm="batchnorm", depth=12, width=4, stages=2), dict(batch_size=4, image_size=4)),
    (dict(arch="cnn", norm="sws", depth=24, width=4), dict(batch_size=4, image_size=4)),
    (dict(arch="mlp", norm="none", depth=2, width=1024), dict(batch_size=256, image_size=16)),
    (dict(arch="cnn", norm="none", depth=2, width=64), dict(batch_size=16, image_size=32)),
    (dict(arch="cnn", norm="evonorm_b0", depth=2, width=16), dict(batch_size=16, image_size=32)),
    (dict(arch="mlp", norm="batchnorm", depth=4, width=32), dict(batch_size=256, image_size=4)),
    (dict(arch="mlp", norm="none", depth=1, width=2), dict(batch_size=2, image_size=2)),
)
_REPEATS = 2  # each probe's fastest of two runs: a busy machine slows some runs, never speeds one
_CALIBRATION_BUDGET_S = 2.5  # past this, on a busy machine, each probe runs once

_calibrations: dict[int, Calibration] = {}
_calibration_lock = threading.Lock()


def _current_threads() -> int:
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else 1


def _time_probe(model_config: ModelConfig, probe_config: ProbeConfig) -> float:
    from normlab.science.probes import measure  # here: the cost model itself needs no torch

    start = time.perf_counter()
    measure(model_config, probe_config)
    return time.perf_counter() - start


# Coefficients measured on this project's 2-core CPU at one torch thread (the dashboard's), fitted over
# the calibration probes and the deep nets of benchmarks/bench_cost.py. A calibration rescales them.
REFERENCE = Calibration(threads=1, fixed=0.004, flops=2.4e-11, metric_flops=3.3e-11, ops=1.6e-5,
                        points=4.6e-4, points_sq=6e-8, traffic_bytes=5e-10, data_load=1.5,
                        source="reference")
# The terms paid per operation launched (interpreter and dispatch) and those paid per FLOP or byte
# (the cores and memory): a machine differs from the reference by one factor for each.
# (the photographs' decoding is interpreter and library work too: it scales with the overheads)
OVERHEAD_TERMS = ("fixed", "ops", "points", "points_sq", "data_load")
PER_SEED_OVERHEADS = ("ops", "points", "points_sq")
THROUGHPUT_TERMS = ("flops", "metric_flops", "traffic_bytes")


def _split(cost: Cost, ref: Calibration) -> tuple[float, float]:
    """(overhead, throughput) seconds of ``cost`` under ``ref``."""
    values = dict(zip(TERMS, _terms(cost), strict=True))
    overhead = ref.fixed + cost.seeds * sum(getattr(ref, t) * values[t] for t in PER_SEED_OVERHEADS)
    throughput = cost.seeds * sum(getattr(ref, t) * values[t] for t in THROUGHPUT_TERMS)
    return overhead, throughput


def calibrate(threads: int | None = None) -> Calibration:
    """Time the calibration probes at ``threads`` torch threads and fit the cost model to this machine.

    The reference coefficients are rescaled by two factors, one for the per-operation overheads and
    one for the per-FLOP and per-byte terms, fitted by non-negative least squares of the relative
    error (so the tiny probes count as much as the big ones). Two factors stay well determined on a
    busy machine where six free coefficients would not. Sets torch's thread count for the duration
    and restores it.
    """
    import numpy as np
    import torch
    from scipy.optimize import nnls

    threads = _current_threads() if threads is None else threads
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        rows, times = [], []
        started = time.perf_counter()
        _time_probe(ModelConfig(arch="cnn", norm="batchnorm", depth=2, width=4),
                    ProbeConfig(device="cpu", batch_size=4, image_size=8))  # lazy imports, warm caches
        for model_kw, probe_kw in CALIBRATION_PROBES:
            mc, pc = ModelConfig(**model_kw), ProbeConfig(device="cpu", **probe_kw)
            runs = [_time_probe(mc, pc)]
            while len(runs) < _REPEATS and time.perf_counter() - started < _CALIBRATION_BUDGET_S:
                runs.append(_time_probe(mc, pc))
            times.append(min(runs))
            rows.append(_split(estimate_cost(mc, pc), REFERENCE))
    finally:
        torch.set_num_threads(before)
    a, y = np.asarray(rows, dtype=np.float64), np.asarray(times, dtype=np.float64)
    (overhead, throughput), _ = nnls(a / y[:, None], np.ones_like(y))
    # a factor the probes could not see (0) keeps the reference rather than making a term free
    overhead, throughput = float(overhead) or 1.0, float(throughput) or 1.0
    scaled = {t: getattr(REFERENCE, t) * overhead for t in OVERHEAD_TERMS}
    scaled.update({t: getattr(REFERENCE, t) * throughput for t in THROUGHPUT_TERMS})
    return Calibration(threads=threads, **scaled)


def load_calibration(path: str, threads: int) -> Calibration | None:
    """The table's coefficients for ``threads`` threads, or None when it has none for them.

    Raises:
        ValueError: the file cannot be read or is not such a table (naming NORMLAB_CALIBRATION).
    """
    try:
        with open(path, encoding="utf-8") as f:
            table = json.load(f)
        entries = table["calibrations"]
        entry = next((e for e in entries if e["threads"] == threads), None)
        if entry is None:
            return None
        return Calibration(**{k: float(entry.get(k, 0.0)) for k in ("fixed", *TERMS, "data_load")},
                           threads=threads,
                           source=path)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"NORMLAB_CALIBRATION {path!r} is not a calibration table written by "
                         f"`python -m normlab.ops.calibration --write`: {err}") from None


def save_calibration(path: str, calibrations: Iterable[Calibration]) -> None:
    """Write a table ``NORMLAB_CALIBRATION`` can point at, one entry per thread count."""
    table = {"calibrations": [c.to_dict() for c in calibrations]}
    with open(path, "w", encoding="utf-8") as f:
        json.dump(table, f, indent=1)
        f.write("\n")


def calibration(threads: int | None = None) -> Calibration:
    """The cost model for ``threads`` torch threads (default: this process's), made once per process.

    From the table at ``NORMLAB_CALIBRATION`` when it has these threads, else measured here.
    """
    threads = _current_threads() if threads is None else threads
    with _calibration_lock:
        if threads not in _calibrations:
            path = os.environ.get("NORMLAB_CALIBRATION", "").strip()
            found = load_calibration(path, threads) if path else None
            _calibrations[threads] = found or calibrate(threads)
        return _calibrations[threads]


def set_calibration(value: Calibration | None, threads: int | None = None) -> None:
    """Use ``value`` for its thread count from now on (None: forget every calibration of this process)."""
    with _calibration_lock:
        if value is None:
            _calibrations.clear()
        else:
            _calibrations[value.threads if threads is None else threads] = value


def predicted_seconds(cost: Cost, limits: Limits | None = None) -> float:
    """Predicted wall time of ``cost`` with the threads ``limits`` assume (0: this process's)."""
    return calibration(limits.threads or None if limits is not None else None).predict(cost)


def training_seconds(estimate: TrainingEstimate, train, limits: Limits) -> float:
    """Predicted seconds of a training run: its steps, its evaluations and its two probes."""
    cal = calibration(limits.threads or None)
    return (train.steps * cal.per_seed(estimate.step)
            + len(train.eval_steps) * cal.per_seed(estimate.evaluation) + 2 * cal.predict(estimate.probe))


def _main(argv: list[str] | None = None) -> int:
    """``python -m normlab.ops.calibration --write FILE [--threads N ...]``: measure and keep a table."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m normlab.ops.calibration",
                                     description="Calibrate the cost model on this machine.")
    parser.add_argument("--write", metavar="FILE", required=True, help="the table to write")
    parser.add_argument("--threads", type=int, nargs="+", default=[1],
                        help="torch thread counts to calibrate (default 1: the dashboard's on 2 cores)")
    args = parser.parse_args(argv)
    if any(not 1 <= t <= 1024 for t in args.threads):
        parser.error("--threads must be between 1 and 1024")
    made = [calibrate(t) for t in args.threads]
    save_calibration(args.write, made)
    for c in made:
        print(json.dumps(c.to_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
