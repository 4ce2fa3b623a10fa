"""The fast paths give the numbers of the plain ones: batched seeds, the Gram route, the device path."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import torch

import normlab.science.probes as probes
from normlab.core.config import ModelConfig, ProbeConfig
from normlab.ops.run import run_probes
from normlab.science.device import cuda_synchronizations
from normlab.science.metrics import (
    ACTIVATION_METRICS,
    act_sq_mean,
    act_var,
    channel_stats,
    cos_sim,
    cos_sim_centered,
    effective_rank,
    gram_spectrum,
    gram_stats,
    metrics_from_stats,
    numerical_rank,
    self_gram,
    stable_rank,
    stack_stats,
)
from normlab.science.probes import to_host

REFERENCE = {
    "act_var": act_var,
    "act_sq_mean": act_sq_mean,
    "cos_sim": cos_sim,
    "cos_sim_centered": cos_sim_centered,
    "stable_rank": stable_rank,
    "effective_rank": effective_rank,
    "numerical_rank": numerical_rank,
}
HAS_CUDA = torch.cuda.is_available()


def random_activations(shape: tuple[int, ...], seed: int, kind: str) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=gen)
    if kind == "relu":
        return x.relu()
    if kind == "mean-dominated":  # deep unnormalized nets: cos_sim near 1
        return x + 1e3
    if kind == "low-rank":
        n = shape[0]
        return (torch.randn(n, 3, generator=gen) @ torch.randn(3, x[0].numel(), generator=gen)).view(shape)
    if kind == "zero-samples":
        x[::3] = 0.0
        return x
    if kind == "huge":  # squares only fit in float64
        return x.clamp(-1, 1) * 3e38
    assert kind == "plain", kind
    return x


# ---------------------------------------------------------------------------------------------
# The Gram route equals the per-metric definitions


@pytest.mark.parametrize("shape", [(6, 5), (10, 3, 4, 4), (64, 8, 3, 3), (128, 4, 2, 2), (130, 40)])
@pytest.mark.parametrize("kind", ["plain", "relu", "mean-dominated", "low-rank", "zero-samples", "huge"])
def test_the_batched_gram_route_equals_each_reference_metric(shape, kind):
    x = random_activations(shape, seed=sum(shape), kind=kind)
    fast = metrics_from_stats(gram_stats(x), spectrum=True)
    for name, reference in REFERENCE.items():
        assert float(fast[name]) == pytest.approx(reference(x), rel=1e-9, abs=1e-12), name
    assert fast["gram_eigenvalue"].numpy() == pytest.approx(gram_spectrum(x), abs=1e-9 * shape[0])


def test_a_stack_of_different_tensors_equals_each_one_alone():
    tensors = [random_activations((65, 2, 3, 3), seed=k, kind=kind)
               for k, kind in enumerate(["plain", "relu", "mean-dominated", "zero-samples"])]
    tensors.append(torch.zeros(65, 2, 3, 3))
    stacked = metrics_from_stats(stack_stats([gram_stats(t) for t in tensors]))
    for k, t in enumerate(tensors):
        alone = metrics_from_stats(gram_stats(t))
        for name in ACTIVATION_METRICS:
            assert float(stacked[name][k]) == pytest.approx(float(alone[name]), rel=1e-12, abs=1e-15), name


@pytest.mark.parametrize("bad", [math.inf, math.nan])
def test_a_non_finite_tensor_in_a_stack_spoils_only_its_own_metrics(bad):
    good = random_activations((70, 8), seed=1, kind="plain")
    broken = good.clone()
    broken[3, 2] = bad
    stacked = metrics_from_stats(stack_stats([gram_stats(good), gram_stats(broken)]))
    for name in ("cos_sim", "cos_sim_centered", "stable_rank", "effective_rank", "numerical_rank"):
        assert math.isfinite(float(stacked[name][0])) and math.isnan(float(stacked[name][1])), name


@pytest.mark.parametrize("rows", [2, 31, 63, 64, 65, 97, 129, 200])
def test_the_panelled_gram_is_the_matrix_product(rows):
    a = torch.randn(rows, 300, dtype=torch.float64, generator=torch.Generator().manual_seed(rows))
    torch.testing.assert_close(self_gram(a), a @ a.T, rtol=1e-13, atol=1e-11)


@pytest.mark.parametrize("kind", ["plain", "relu", "mean-dominated", "huge"])
def test_fast_channel_statistics_equal_the_per_channel_definitions(kind):
    x = random_activations((12, 5, 3, 3), seed=4, kind=kind)
    var, sq_mean = channel_stats(x)
    x64 = x.double()
    per_channel_var = x64.var(dim=(0, 2, 3), unbiased=False)  # (C,)
    assert float(var) == pytest.approx(float(per_channel_var.mean()), rel=1e-12)
    assert float(sq_mean) == pytest.approx(float(x64.mean(dim=(0, 2, 3)).square().mean()), rel=1e-12)
    assert float(var) == pytest.approx(act_var(x), rel=1e-12)


# ---------------------------------------------------------------------------------------------
# Batched seeds equal seeds run one by one


CONFIGS = [
    ModelConfig(arch="mlp", norm="layernorm", depth=3, width=16),
    ModelConfig(arch="cnn", norm="groupnorm", depth=3, width=8, groups=2),
    ModelConfig(arch="resnet", norm="batchnorm", depth=2, width=8, stages=2),
    ModelConfig(arch="resnet", norm="frn", depth=1, width=8, preact=True, skipinit=True),
    ModelConfig(arch="mlp", norm="instancenorm", depth=2, width=8),  # every sample is the zero vector
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"{c.arch}-{c.norm}")
def test_batched_seeds_give_the_numbers_of_seeds_run_one_by_one(cfg):
    probe = ProbeConfig(batch_size=12, image_size=6, seed=3, seeds=3, input="images")
    together = run_probes(cfg, probe)
    alone = pd.concat([run_probes(cfg, dataclasses.replace(probe, seed=s, seeds=1)) for s in (3, 4, 5)],
                      ignore_index=True)
    pd.testing.assert_frame_equal(together.drop(columns="value"), alone.drop(columns="value"))
    np.testing.assert_allclose(together.value, alone.value, rtol=1e-12, atol=1e-15)


def test_seeds_share_one_eigensolve_and_shared_statistics_are_solved_once(monkeypatch):
    sizes = []
    solve = probes.metrics_from_stats

    def spy(stats, *args, **kwargs):
        sizes.append(stats.act_var.shape[0])
        return solve(stats, *args, **kwargs)

    monkeypatch.setattr(probes, "metrics_from_stats", spy)
    cfg = ModelConfig(arch="resnet", depth=2, width=4, stages=1)  # stem act + 2 x (act1, act2 = block)
    frame = run_probes(cfg, ProbeConfig(batch_size=4, image_size=4, seeds=3))
    assert sizes == [3 * 5]
    rows = frame[(frame.seed == 0) & (frame.metric == "cos_sim")]
    assert len(rows) == 7  # the block and its last activation both have rows, from one measurement
    block, act2 = (rows[rows.layer == name].value.item() for name in ("features.2", "features.2.act2"))
    assert block == act2


def test_many_seeds_of_a_big_network_are_solved_in_groups_with_the_same_numbers(monkeypatch):
    cfg = ModelConfig(arch="cnn", depth=2, width=4)
    probe = ProbeConfig(batch_size=6, image_size=4, seeds=3)
    together = run_probes(cfg, probe)
    calls = []
    solve = probes.metrics_from_stats
    monkeypatch.setattr(probes, "metrics_from_stats", lambda *a, **k: calls.append(1) or solve(*a, **k))
    monkeypatch.setattr(probes, "GROUP_BYTES", 1)  # every seed fills a group
    grouped = run_probes(cfg, probe)
    assert len(calls) == 3
    pd.testing.assert_frame_equal(grouped, together)


def test_to_host_leaves_cpu_tensors_alone():
    tensors = [torch.ones(3), torch.tensor(True), torch.zeros(2, 2, dtype=torch.float32)]
    assert all(a is b for a, b in zip(to_host(tensors), tensors, strict=True))


# ---------------------------------------------------------------------------------------------
# The CUDA path (skipped on machines without one)


needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")


@needs_cuda
def test_to_host_moves_every_tensor_with_its_shape_and_dtype_in_one_transfer():
    tensors = [torch.randn(3, 4, device="cuda", dtype=torch.float64), torch.tensor(True, device="cuda"),
               torch.randn(5, device="cuda"), torch.tensor([False, True], device="cuda")]
    moved = to_host(tensors)
    for a, b in zip(moved, tensors, strict=True):
        assert a.device.type == "cpu" and a.dtype == b.dtype and a.shape == b.shape
        assert torch.equal(a, b.cpu())


@needs_cuda
def test_cuda_and_cpu_probes_agree(monkeypatch):
    # TF32 convolutions (cuDNN's default) change float32 activations by ~1e-3: compare without them.
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    cfg = ModelConfig(arch="resnet", norm="groupnorm", depth=2, width=8, stages=2, groups=2)
    probe = ProbeConfig(batch_size=16, image_size=8, seeds=2)
    cpu = run_probes(cfg, dataclasses.replace(probe, device="cpu"))
    cuda = run_probes(cfg, dataclasses.replace(probe, device="cuda"))
    keys = ["seed", "layer", "index", "kind", "metric"]
    pd.testing.assert_frame_equal(cpu[keys], cuda[keys])
    ranks = (cpu.metric == "numerical_rank").to_numpy()
    np.testing.assert_allclose(cuda.value[~ranks], cpu.value[~ranks], rtol=1e-4, atol=1e-6)
    assert (np.abs(cuda.value[ranks].to_numpy() - cpu.value[ranks].to_numpy()) <= 1).all()


def _synchronizations(cfg: ModelConfig, probe: ProbeConfig) -> int:
    run_probes(cfg, probe)  # warm-up: allocator and library handles
    return cuda_synchronizations(lambda: run_probes(cfg, probe))


@needs_cuda
def test_cuda_synchronizations_do_not_grow_with_the_number_of_probe_points():
    probe = ProbeConfig(batch_size=8, image_size=8, device="cuda")
    shallow = _synchronizations(ModelConfig(arch="resnet", depth=1, width=8), probe)
    deep = _synchronizations(ModelConfig(arch="resnet", depth=6, width=8), probe)
    # The model and batch uploads synchronize once per tensor (pageable memory); the probe points
    # themselves add nothing, and the results come back in one transfer.
    tensors = [len(probes.build_model(ModelConfig(arch="resnet", depth=d, width=8)).state_dict())
               for d in (1, 6)]
    assert deep - shallow <= tensors[1] - tensors[0]
