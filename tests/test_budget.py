"""The operator's budget: limits from the environment, cost estimated on paper, refusal before allocation."""

import time

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

import normlab.models
import normlab.probes
from normlab.budget import (
    ENV_VARS,
    BudgetExceeded,
    Limits,
    check_budget,
    check_sweep,
    check_sweep_points,
    estimate_cost,
    max_width,
    network_depth,
)
from normlab.config import NORM_NAMES, ModelConfig, ProbeConfig
from normlab.models import build_model
from normlab.probes import run_probes

SMALL = ProbeConfig(batch_size=8, image_size=8)

# Networks of every family and block type, small enough to run in a test.
FAMILIES = [
    dict(arch="mlp", depth=3, width=16),
    dict(arch="cnn", depth=3, width=8),
    dict(arch="resnet", depth=2, width=8),
    dict(arch="resnet", depth=2, width=8, stages=3),
    dict(arch="resnet", depth=2, width=8, stages=2, preact=True),
    dict(arch="resnet", depth=2, width=8, skipinit=True),
    dict(arch="resnet", depth=2, width=8, stages=2, norm="weightnorm", wn_act="in_branch"),
]


def _ids(family: dict) -> str:
    return "-".join(f"{k}={v}" for k, v in family.items())


class CountFlops(TorchDispatchMode):
    """Torch's own FLOP formulas (torch.utils.flop_counter) summed over every op that has one.

    FlopCounterMode itself tracks modules with autograd hooks that torch.autograd.grad refuses,
    so the probes are counted with the bare formulas.
    """

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


# ---------------------------------------------------------------------------------------------
# The estimate against reality


@pytest.mark.parametrize("family", FAMILIES, ids=_ids)
def test_estimated_flops_match_torchs_count_of_run_probes(family):
    cfg = ModelConfig(**{"norm": "batchnorm", **family})
    with CountFlops() as counted:
        run_probes(cfg, SMALL)
    cost = estimate_cost(cfg, SMALL)
    estimated = cost.forward_flops + cost.backward_flops + cost.metric_flops
    # The estimate adds the N x N eigensolves that torch's formulas do not count (20 N^3 a point).
    points = sum(kind != "conv" for _, kind, _ in build_model(cfg, (3, 8, 8)).probe_points())
    assert counted.total <= estimated <= 1.05 * counted.total + 20 * SMALL.batch_size**3 * points


def test_estimated_flops_of_a_paper_preset_match_torchs_count():
    cfg, probe = ModelConfig(preset="vgg10"), ProbeConfig(batch_size=2, image_size=32)
    with CountFlops() as counted:
        run_probes(cfg, probe)
    cost = estimate_cost(cfg, probe)
    estimated = cost.forward_flops + cost.backward_flops + cost.metric_flops
    assert estimated == pytest.approx(counted.total, rel=0.02)


def test_seeds_multiply_the_cost_not_the_memory():
    one, three = estimate_cost(ModelConfig(), SMALL), estimate_cost(ModelConfig(), ProbeConfig(
        batch_size=8, image_size=8, seeds=3))
    assert three.gflop == pytest.approx(3 * one.gflop)
    assert three.memory_mb == one.memory_mb


def _saved_bytes(cfg: ModelConfig, probe: ProbeConfig) -> int:
    """Bytes autograd keeps for the backward pass of one forward, weights included, each storage once."""
    model = build_model(cfg, (cfg.in_channels, probe.image_size, probe.image_size))
    x = torch.randn(probe.batch_size, cfg.in_channels, probe.image_size, probe.image_size,
                    requires_grad=True)
    storages = {p.untyped_storage().data_ptr(): p.untyped_storage().nbytes() for p in model.parameters()}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x)
    return sum(storages.values())


@pytest.mark.parametrize("family", FAMILIES[:4], ids=_ids)
@pytest.mark.parametrize("norm", NORM_NAMES)
def test_estimated_memory_is_within_a_factor_of_what_autograd_keeps(norm, family):
    cfg = ModelConfig(**{**family, "norm": norm})
    probe = ProbeConfig(batch_size=8, image_size=16)
    cost = estimate_cost(cfg, probe)
    kept = _saved_bytes(cfg, probe)
    assert kept / 1.5 <= cost.activation_bytes + cost.parameter_bytes <= 1.5 * kept


def test_estimate_builds_nothing_and_needs_no_torch(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the estimate allocated a tensor or built a model")

    for name in ("empty", "zeros", "ones", "randn", "rand", "tensor", "full", "arange"):
        monkeypatch.setattr(torch, name, refuse)
    monkeypatch.setattr(normlab.models, "build_model", refuse)
    monkeypatch.setattr(torch.nn.Module, "__init__", refuse)
    cost = estimate_cost(ModelConfig(preset="resnet56"), ProbeConfig())
    assert cost.gflop > 1


def test_paper_presets_fit_the_default_budget_at_batch_64():
    for preset in ("vgg10", "vgg20", "resnet56"):
        check_budget(ModelConfig(preset=preset), ProbeConfig(batch_size=64), Limits())


def test_depth_and_width_read_the_plan_of_presets_and_stages():
    assert network_depth(ModelConfig(preset="vgg20")) == 20
    assert network_depth(ModelConfig(preset="resnet56")) == 27
    assert network_depth(ModelConfig(arch="resnet", depth=5, stages=4)) == 20
    assert max_width(ModelConfig(preset="vgg10")) == 512
    assert max_width(ModelConfig(arch="resnet", width=16, stages=4)) == 128
    assert max_width(ModelConfig(arch="mlp", width=300)) == 300


# ---------------------------------------------------------------------------------------------
# Refusals say which limit and by how much


@pytest.mark.parametrize(
    ("model", "probe", "limits", "message"),
    [
        (dict(arch="mlp", width=4096), {}, dict(max_width=1024),
         "width 4096 exceeds NORMLAB_MAX_WIDTH=1024 by 4x"),
        (dict(arch="cnn", depth=30), {}, dict(max_depth=20), "depth 30 exceeds NORMLAB_MAX_DEPTH=20 by 50%"),
        (dict(arch="resnet", depth=10, stages=3), {}, dict(max_depth=20),
         "depth (blocks: 10 x 3 stages) 30 exceeds NORMLAB_MAX_DEPTH=20 by 50%"),
        (dict(arch="resnet", width=64, stages=4), {}, dict(max_width=256),
         "width (last of 4 stages: 64 x 2^3) 512 exceeds NORMLAB_MAX_WIDTH=256 by 2x"),
        ({}, dict(batch_size=300), dict(max_batch=256),
         "batch_size 300 exceeds NORMLAB_MAX_BATCH=256 by 18%"),
        ({}, dict(seeds=40), dict(max_seeds=10), "seeds 40 exceeds NORMLAB_MAX_SEEDS=10 by 4x"),
    ],
)
def test_a_size_over_its_limit_is_refused_with_the_limit_and_the_excess(model, probe, limits, message):
    with pytest.raises(BudgetExceeded) as err:
        check_budget(ModelConfig(**model), ProbeConfig(**probe), Limits(**limits))
    assert str(err.value) == message


def test_a_cost_over_budget_names_the_estimate_the_budget_and_the_excess():
    cfg, probe = ModelConfig(preset="resnet56"), ProbeConfig(batch_size=64, seeds=2)
    cost = estimate_cost(cfg, probe)
    limit = cost.gflop / 1.54
    with pytest.raises(BudgetExceeded, match=r"estimated 2\d\d GFLOP \(1\d\d per seed x 2 seeds\) exceeds "
                                             r"the budget 1\d\d GFLOP \(NORMLAB_MAX_COST\) by 54%"):
        check_budget(cfg, probe, Limits(max_cost_gflop=limit))


def test_memory_over_budget_is_refused_in_mib():
    cfg, probe = ModelConfig(preset="resnet56", norm="evonorm_s0"), ProbeConfig(batch_size=64)
    with pytest.raises(BudgetExceeded, match=r"estimated peak memory 1,\d{3} MiB exceeds the budget "
                                             r"1,000 MiB \(NORMLAB_MAX_MEMORY_MB\) by \d+%"):
        check_budget(cfg, probe, Limits(max_memory_mb=1000))


def test_budget_exceeded_is_a_value_error_so_every_front_end_reports_it_as_bad_input():
    assert issubclass(BudgetExceeded, ValueError)


def test_an_absurd_depth_is_refused_at_once_without_walking_the_plan():
    start = time.perf_counter()
    with pytest.raises(BudgetExceeded, match="NORMLAB_MAX_DEPTH"):
        check_budget(ModelConfig(arch="resnet", depth=9_000, stages=6), ProbeConfig(), Limits())
    with pytest.raises(BudgetExceeded, match="NORMLAB_MAX_WIDTH"):
        check_budget(ModelConfig(arch="mlp", width=60_000), ProbeConfig(), Limits())
    assert time.perf_counter() - start < 0.5


def _forbid_allocation(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a refused config allocated a tensor or built a model")

    for name in ("empty", "zeros", "ones", "randn", "rand", "randint", "tensor", "full"):
        monkeypatch.setattr(torch, name, refuse)
    monkeypatch.setattr(normlab.models, "build_model", refuse)
    monkeypatch.setattr(normlab.probes, "build_model", refuse)
    monkeypatch.setattr(torch.nn.Module, "__init__", refuse)


def test_a_refused_config_allocates_nothing(monkeypatch):
    _forbid_allocation(monkeypatch)
    with pytest.raises(BudgetExceeded, match="NORMLAB_MAX_COST"):
        check_budget(ModelConfig(preset="vgg20"), ProbeConfig(batch_size=256, image_size=128), Limits())


def test_run_probes_refuses_a_config_over_budget_before_building_anything(monkeypatch):
    monkeypatch.setenv("NORMLAB_MAX_WIDTH", "64")
    _forbid_allocation(monkeypatch)
    with pytest.raises(BudgetExceeded, match="width 128 exceeds NORMLAB_MAX_WIDTH=64 by 2x"):
        run_probes(ModelConfig(arch="mlp", width=128, depth=2), ProbeConfig(batch_size=4, image_size=8))


def test_run_sweep_refuses_before_running_any_point(monkeypatch):
    monkeypatch.setenv("NORMLAB_MAX_DEPTH", "6")
    _forbid_allocation(monkeypatch)
    with pytest.raises(BudgetExceeded, match="depth 8 exceeds NORMLAB_MAX_DEPTH=6"):
        normlab.probes.run_sweep(ModelConfig(arch="mlp", width=8), ProbeConfig(batch_size=4, image_size=8),
                                 {"depth": [2, 8]})


# ---------------------------------------------------------------------------------------------
# Sweeps


def test_a_sweep_is_refused_on_its_worst_point_or_its_total():
    small = (ModelConfig(arch="mlp", depth=2, width=8), SMALL)
    big = (ModelConfig(arch="mlp", depth=2, width=512), SMALL)
    with pytest.raises(BudgetExceeded, match=r"sweep point mlp batchnorm depth=2 width=512 .*MAX_WIDTH"):
        check_sweep([small, big], Limits(max_width=64))
    per_point = estimate_cost(*small).gflop
    with pytest.raises(BudgetExceeded, match=r"whole sweep \(3 points\).*NORMLAB_MAX_SWEEP_COST"):
        check_sweep([small] * 3, Limits(max_sweep_cost_gflop=2.5 * per_point))
    assert len(check_sweep([small] * 2, Limits(max_sweep_cost_gflop=2.5 * per_point))) == 2


def test_a_sweep_with_too_many_combinations_is_refused_by_count():
    refused = "sweep of 1000 combinations exceeds NORMLAB_MAX_SWEEP_POINTS=256 by 3.91x"
    with pytest.raises(BudgetExceeded, match=refused):
        check_sweep_points(1000, Limits())
    check_sweep_points(256, Limits())


# ---------------------------------------------------------------------------------------------
# The operator's settings


def test_limits_come_from_the_documented_environment_variables():
    env = {ENV_VARS["max_depth"]: "40", "NORMLAB_MAX_WIDTH": "128", "NORMLAB_MAX_BATCH": "32",
           "NORMLAB_MAX_SEEDS": "3", "NORMLAB_MAX_COST": "2.5", "NORMLAB_MAX_MEMORY_MB": "512",
           "NORMLAB_MAX_SWEEP_POINTS": "12", "NORMLAB_MAX_SWEEP_COST": "10"}
    assert Limits.from_env(env) == Limits(40, 128, 32, 3, 2.5, 512.0, 12, 10.0)
    assert Limits.from_env({}) == Limits()
    assert Limits.from_env({"NORMLAB_MAX_WIDTH": " "}) == Limits()  # empty means unset


@pytest.mark.parametrize("raw", ["wide", "-3", "0", "1.5", "nan", "inf"])
def test_a_malformed_limit_is_a_value_error_naming_the_variable(raw):
    with pytest.raises(ValueError, match=rf"NORMLAB_MAX_WIDTH must be a positive whole number; got '{raw}'"):
        Limits.from_env({"NORMLAB_MAX_WIDTH": raw})


def test_check_budget_reads_the_environment_when_no_limits_are_given(monkeypatch):
    monkeypatch.setenv("NORMLAB_MAX_BATCH", "16")
    with pytest.raises(BudgetExceeded, match="batch_size 32 exceeds NORMLAB_MAX_BATCH=16 by 2x"):
        check_budget(ModelConfig(arch="mlp", depth=2, width=8), ProbeConfig(batch_size=32))
