"""The operator's budget: limits from the environment, cost estimated on paper, refusal before allocation."""

import json
import math
import sys
import threading
import time

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

import normlab.science.models
import normlab.science.probes
from normlab.core import catalog
from normlab.core.catalog import NORM_NAMES
from normlab.core.config import ModelConfig, ProbeConfig
from normlab.core.deadline import ComputeTimeout, check_time, time_limit
from normlab.core.train_config import StudyConfig, TrainConfig
from normlab.ops import calibration as time_model
from normlab.ops import settings
from normlab.ops.budget import (
    BudgetExceeded,
    check_budget,
    check_many,
    check_study,
    check_sweep,
    check_sweep_points,
    check_training,
)
from normlab.ops.calibration import Calibration, calibrate, calibration, save_calibration, set_calibration
from normlab.ops.cost import estimate_cost, max_width, network_depth
from normlab.ops.run import run_probes
from normlab.ops.serving import Gate
from normlab.ops.settings import BASE_MEMORY_MB, ENV_VARS, Limits, local_limits, server_limits
from normlab.science.models import build_model

SMALL = ProbeConfig(batch_size=8, image_size=8)
# A fixed cost model, so the tests of the time limit do not depend on how busy the machine is:
# ~0.5 ms a probe point, 10 us an operation, 40 GFLOP/s.
FIXED = Calibration(threads=1, fixed=0.003, flops=2.5e-11, metric_flops=3e-11, ops=1e-5, points=5e-4,
                    points_sq=1e-7, traffic_bytes=5e-10, data_load=1.5, source="test")
LECTURE_NORMS = ("none", "batchnorm", "layernorm", "instancenorm", "groupnorm", "frn", "evonorm_b0",
                 "evonorm_s0", "weightnorm", "sws")


def _clear_env(monkeypatch):
    for name in ENV_VARS.values():
        monkeypatch.delenv(name, raising=False)

# Networks of every family and block type, small enough to run in a test.
FAMILIES = [
    dict(arch="mlp", depth=3, width=16),
    dict(arch="cnn", depth=3, width=8),
    dict(arch="resnet", depth=2, width=8),
    dict(arch="resnet", depth=2, width=8, stages=3),
    dict(arch="resnet", depth=2, width=8, stages=2, preact=True),
    dict(arch="resnet", depth=2, width=8, skipinit=True),
    dict(arch="resnet", depth=2, width=8, stages=2, norm="weightnorm", wn_act="in_branch"),
    dict(arch="transformer", depth=2, width=16, heads=2, seq_len=8, norm="layernorm"),
    dict(arch="transformer", depth=2, width=16, heads=4, seq_len=16, norm="dyt", placement="peri",
         qk_norm=True),
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
    if catalog.family(cfg.arch).tokens:
        x = torch.randint(0, 256, (probe.batch_size, cfg.seq_len))
    else:
        x = torch.randn(probe.batch_size, cfg.in_channels, probe.image_size, probe.image_size,
                        requires_grad=True)
    storages = {p.untyped_storage().data_ptr(): p.untyped_storage().nbytes() for p in model.parameters()}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x)
    return sum(storages.values())


@pytest.mark.parametrize(("norm", "family"), [(n, f) for f in FAMILIES[:4] + FAMILIES[-2:] for n in NORM_NAMES
                                              if catalog.accepts(f["arch"], n)
                                              and not (n == "none" and f.get("qk_norm"))],
                         ids=lambda v: v if isinstance(v, str) else _ids(v))
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
    monkeypatch.setattr(normlab.science.models, "build_model", refuse)
    monkeypatch.setattr(torch.nn.Module, "__init__", refuse)
    cost = estimate_cost(ModelConfig(preset="resnet56"), ProbeConfig())
    assert cost.gflop > 1


def test_paper_presets_fit_the_default_budget_at_batch_64():
    for preset in ("vgg10", "vgg20", "resnet56"):
        check_budget(ModelConfig(preset=preset), ProbeConfig(batch_size=64), server_limits({}))


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
    with pytest.raises(BudgetExceeded, match=r"estimated peak memory 2,\d{3} MiB exceeds the budget "
                                             r"1,500 MiB \(NORMLAB_MAX_MEMORY_MB\) by \d+%"):
        check_budget(cfg, probe, Limits(max_memory_mb=1500))


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
    monkeypatch.setattr(normlab.science.models, "build_model", refuse)
    monkeypatch.setattr(normlab.science.probes, "build_model", refuse)
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
        normlab.ops.run.run_sweep(ModelConfig(arch="mlp", width=8), ProbeConfig(batch_size=4, image_size=8),
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
    env.update(NORMLAB_MAX_SECONDS="12", NORMLAB_HARD_SECONDS="40")
    assert Limits.from_env(env) == Limits(40, 128, 32, 3, 2.5, 512.0, 12, 10.0, 12.0, 40.0)
    assert Limits.from_env({}) == Limits()
    assert Limits.from_env({"NORMLAB_MAX_WIDTH": " "}) == Limits()  # empty means unset


@pytest.mark.parametrize("raw", ["wide", "-3", "0", "1.5", "nan", "inf"])
def test_a_malformed_limit_is_a_value_error_naming_the_variable(raw):
    with pytest.raises(ValueError, match=rf"NORMLAB_MAX_WIDTH must be a positive whole number; got '{raw}'"):
        Limits.from_env({"NORMLAB_MAX_WIDTH": raw})


def test_check_budget_reads_the_environment_when_no_limits_are_given(monkeypatch):
    _clear_env(monkeypatch)
    monkeypatch.setenv("NORMLAB_MAX_BATCH", "16")
    with pytest.raises(BudgetExceeded, match="batch_size 32 exceeds NORMLAB_MAX_BATCH=16 by 2x"):
        check_budget(ModelConfig(arch="mlp", depth=2, width=8), ProbeConfig(batch_size=32))


# ---------------------------------------------------------------------------------------------
# Server limits and local limits


def test_the_server_limits_are_the_defaults_and_the_predictions_assume_the_gates_threads(monkeypatch):
    monkeypatch.setattr("normlab.ops.settings.available_cpus", lambda cgroup_root=None: 8)
    limits = server_limits({})
    assert (limits.max_width, limits.max_seconds, limits.hard_seconds) == (1024, 60.0, 240.0)
    assert limits.threads == 4  # 8 CPUs shared by the default 2 slots
    assert server_limits({"NORMLAB_MAX_SECONDS": "5", "NORMLAB_MAX_CONCURRENT": "8"}).max_seconds == 5
    assert server_limits({"NORMLAB_MAX_CONCURRENT": "8"}).threads == 1


def test_local_limits_apply_only_what_the_environment_sets_and_the_machines_memory(monkeypatch):
    monkeypatch.setattr(settings, "machine_memory_mb", lambda: 8000.0)
    local = local_limits({})
    assert local.max_width == local.max_depth == local.max_seconds == local.max_cost_gflop == math.inf
    assert local.max_memory_mb == 8000.0 and local.machine_memory
    set_width = local_limits({"NORMLAB_MAX_WIDTH": "64", "NORMLAB_MAX_MEMORY_MB": "512"})
    assert set_width.max_width == 64 and set_width.max_memory_mb == 512 and not set_width.machine_memory


def test_check_budget_without_limits_runs_the_papers_setups_that_the_server_refuses(monkeypatch):
    _clear_env(monkeypatch)
    resnet56 = ModelConfig(preset="resnet56", norm="frn"), ProbeConfig(batch_size=128, seeds=4)
    cnn = ModelConfig(arch="cnn", depth=20, width=64), ProbeConfig(batch_size=128)
    for pair in (resnet56, cnn):
        with pytest.raises(BudgetExceeded, match="NORMLAB_MAX_COST"):
            check_budget(*pair, Limits())
        assert check_budget(*pair).gflop > 300  # local: only this machine's memory bounds it


def test_a_probe_larger_than_the_machine_is_refused_by_its_memory_locally(monkeypatch):
    _clear_env(monkeypatch)
    monkeypatch.setattr(settings, "machine_memory_mb", lambda: 1000.0)
    with pytest.raises(BudgetExceeded, match=r"estimated peak memory [\d,]+ MiB exceeds the memory this "
                                             r"machine has free, 1,000 MiB \(MemAvailable less 10%\)"):
        check_budget(ModelConfig(preset="resnet56"), ProbeConfig(batch_size=256))


def test_the_memory_estimate_covers_the_whole_process_its_base_included():
    cost = estimate_cost(ModelConfig(), SMALL)
    parts = cost.activation_bytes + cost.workspace_bytes + cost.parameter_bytes
    assert cost.memory_mb == pytest.approx(BASE_MEMORY_MB + parts / 2**20)


# ---------------------------------------------------------------------------------------------
# Predicted seconds


@pytest.fixture
def fixed_model():
    set_calibration(FIXED)
    set_calibration(FIXED, threads=torch.get_num_threads())  # predicted_seconds: this process's threads
    yield FIXED
    set_calibration(None)


def test_a_deep_narrow_net_costs_seconds_its_flops_do_not_show(fixed_model):
    deep = estimate_cost(ModelConfig(arch="mlp", depth=1024, width=4),
                         ProbeConfig(batch_size=4, image_size=8))
    wide = estimate_cost(ModelConfig(arch="mlp", depth=2, width=1024), ProbeConfig(batch_size=64))
    assert deep.gflop < wide.gflop / 10
    assert FIXED.predict(deep) > 5 * FIXED.predict(wide)
    assert time_model.predicted_seconds(deep) == FIXED.predict(deep)


def test_a_probe_predicted_over_the_time_limit_is_refused_with_the_prediction(fixed_model):
    cfg, probe = ModelConfig(arch="resnet", depth=256, width=4, stages=4), ProbeConfig(batch_size=4,
                                                                                        image_size=8, seeds=8)
    predicted = FIXED.predict(estimate_cost(cfg, probe))
    with pytest.raises(BudgetExceeded) as err:
        check_budget(cfg, probe, Limits(max_seconds=5, threads=1))
    assert str(err.value).startswith(f"predicted {predicted:.3g} s (8 seeds) exceeds the limit 5 s "
                                     f"(NORMLAB_MAX_SECONDS) by ")


def test_a_page_is_checked_as_a_whole_before_anything_queues(fixed_model):
    probe = ProbeConfig(batch_size=16, image_size=8, seeds=2)
    pairs = [(ModelConfig(arch="mlp", depth=64, width=8, norm=n), probe) for n in LECTURE_NORMS]
    each = [FIXED.predict(estimate_cost(m, p)) for m, p in pairs]
    limit = (max(each) + sum(each)) / 2  # every network fits alone, not all of them
    with pytest.raises(BudgetExceeded, match=r"for the 10 networks of this view x 2 seeds exceeds the limit "
                                             r".* \(NORMLAB_MAX_SECONDS\)"):
        check_many(pairs, Limits(max_seconds=limit, threads=1))
    costs = check_many(pairs[:1], Limits(max_seconds=limit, threads=1))
    assert len(costs) == 1 and costs[0].seeds == 2


def test_the_lecture_hall_link_is_refused_and_resnet56_admitted_by_this_machines_model():
    limits = server_limits({})
    link = ProbeConfig(batch_size=4, image_size=8, seeds=8)
    pairs = [(ModelConfig(arch="resnet", depth=256, width=4, stages=4, norm=n), link) for n in LECTURE_NORMS]
    with pytest.raises(BudgetExceeded, match="NORMLAB_MAX_SECONDS"):
        check_many(pairs, limits)
    check_budget(ModelConfig(preset="resnet56"), ProbeConfig(batch_size=64), limits)


def test_a_deeper_network_is_predicted_to_cost_more_per_layer_in_proportion():
    probe = ProbeConfig(batch_size=4, image_size=8)
    # up to the server's NORMLAB_MAX_DEPTH of 1024 layers or blocks (a resnet's depth is per stage)
    for arch, kw, depths in (("mlp", dict(width=4), (64, 256, 1024)),
                             ("resnet", dict(width=4, stages=4), (16, 64, 256))):
        seconds = [time_model.REFERENCE.predict(estimate_cost(ModelConfig(arch=arch, depth=d, **kw), probe))
                   - time_model.REFERENCE.fixed for d in depths]
        per_layer = [s / d for s, d in zip(seconds, depths, strict=True)]
        # building, hooking and reducing ~1 ms a probe point whatever the depth; a little more when deep
        assert per_layer[0] <= per_layer[1] <= per_layer[2] <= 2 * per_layer[0], (arch, per_layer)


def test_the_first_probe_of_natural_images_pays_for_decoding_the_photographs(monkeypatch):
    import normlab.science.data

    cfg = ModelConfig(arch="mlp", depth=4, width=8)
    images = estimate_cost(cfg, ProbeConfig(input="images", batch_size=8, image_size=8))
    gaussian = estimate_cost(cfg, ProbeConfig(batch_size=8, image_size=8))
    assert images.dataset == "images" and gaussian.dataset == ""
    normlab.science.data._photographs()  # decoded now in this process: later probes do not decode again
    assert time_model.dataset_loaded("images")
    warm = FIXED.fixed + FIXED.per_seed(images)
    assert FIXED.predict(images) == pytest.approx(warm)
    monkeypatch.delitem(sys.modules, "normlab.science.data")  # a process that has not read them yet
    assert not time_model.dataset_loaded("images")
    assert FIXED.predict(images) == pytest.approx(warm + FIXED.data_load)
    assert FIXED.predict(gaussian) == pytest.approx(FIXED.fixed + FIXED.per_seed(gaussian))


def test_natural_images_cost_their_crops_per_sample_and_gaussian_noise_almost_nothing():
    cfg = ModelConfig(arch="mlp", depth=3, width=64)

    def extra(batch: int) -> float:  # per seed: images over gaussian, the same network and batch
        images, gaussian = (estimate_cost(cfg, ProbeConfig(input=kind, batch_size=batch, image_size=32))
                            for kind in ("images", "gaussian"))
        return FIXED.per_seed(images) - FIXED.per_seed(gaussian)

    assert extra(128) == pytest.approx(4 * extra(32), rel=0.01)  # one crop and resize per sample
    assert extra(128) > 0.05  # ~90 ms for 128 crops of 32x32 on one core: as much as the network


def test_calibration_is_quick_and_predicts_a_measured_probe_within_a_small_factor():
    torch.set_num_threads(1)
    start = time.perf_counter()
    cal = calibrate(1)
    assert time.perf_counter() - start < 12.0  # ~1.5 s on a quiet core; 5-9 s with 6 engineers on 2 cores
    assert all(getattr(cal, name) > 0 for name in ("fixed", *time_model.TERMS, "data_load"))
    cfg, probe = ModelConfig(arch="mlp", depth=384, width=4), ProbeConfig(batch_size=4, image_size=8)
    start = time.perf_counter()
    run_probes(cfg, probe)
    measured = time.perf_counter() - start
    assert 1 / 3 < cal.predict(estimate_cost(cfg, probe)) / measured < 3  # a busy machine adds noise


def test_a_calibration_table_kept_with_the_deployment_is_used_instead_of_measuring(tmp_path, monkeypatch):
    path = tmp_path / "calibration.json"
    save_calibration(str(path), [FIXED])
    monkeypatch.setenv("NORMLAB_CALIBRATION", str(path))
    monkeypatch.setattr(time_model, "calibrate",
                        lambda threads=None: pytest.fail("measured despite the table"))
    set_calibration(None)
    try:
        loaded = calibration(1)
        assert loaded.to_dict() == FIXED.to_dict() and loaded.source == str(path)
        path.write_text(json.dumps({"rows": []}))
        set_calibration(None)
        with pytest.raises(ValueError, match="NORMLAB_CALIBRATION"):
            calibration(1)
    finally:
        set_calibration(None)


# ---------------------------------------------------------------------------------------------
# The hard stop

SLOW = ModelConfig(arch="mlp", depth=3000, width=4), ProbeConfig(batch_size=4, image_size=4)  # ~10 s


def test_a_probe_past_its_time_limit_is_stopped_between_layers():
    start = time.perf_counter()
    with pytest.raises(ComputeTimeout, match=r"stopped: it ran past its wall-time limit of 0.2 s"):
        with time_limit(0.2):
            run_probes(*SLOW)
    assert time.perf_counter() - start < 2.0
    check_time()  # the limit ended with its block


def test_the_time_limit_belongs_to_its_thread():
    other = []
    worker = threading.Thread(target=lambda: other.append(run_probes(ModelConfig(arch="mlp", depth=200,
                                                                                width=4), SMALL)))
    with time_limit(0.05):
        worker.start()
        worker.join(60)
        time.sleep(0.06)
        with pytest.raises(ComputeTimeout):
            check_time()
    assert len(other) == 1 and len(other[0])  # the other thread ran to its end


def test_the_gates_hard_limit_stops_a_computation_and_frees_its_slot():
    gate = Gate(max_concurrent=1, queue_timeout=30, hard_seconds=0.2)
    start = time.perf_counter()
    with pytest.raises(ComputeTimeout, match="NORMLAB_HARD_SECONDS"):
        gate.compute("slow", lambda: run_probes(*SLOW))
    assert time.perf_counter() - start < 2.0
    assert gate.running == 0 and gate.waiting == 0
    assert gate.compute("next", lambda: "ran") == "ran"


@pytest.mark.parametrize("seconds", [0, -1, math.nan, "5", True])
def test_a_time_limit_must_be_a_positive_number(seconds):
    with pytest.raises(ValueError, match="time_limit seconds"):
        with time_limit(seconds):
            pass


# ---------------------------------------------------------------------------------------------
# Training inside the same limits


def test_training_is_refused_by_memory_and_by_predicted_time_before_any_work(monkeypatch, fixed_model):
    monkeypatch.setattr("normlab.science.training.digits_split", lambda *a: pytest.fail("loaded data first"))
    huge = ModelConfig(arch="mlp", depth=2, width=65536)
    with pytest.raises(BudgetExceeded, match=r"estimated peak memory [\d,]+ MiB for training exceeds the "
                                             r"budget 8,192 MiB"):
        check_training(huge, TrainConfig(steps=1, probe_after=1, image_size=8),
                       Limits(max_width=65536, max_memory_mb=8192))
    with pytest.raises(BudgetExceeded, match=r"for 100000 training steps exceeds the limit 60 s"):
        check_training(ModelConfig(arch="cnn"), TrainConfig(steps=100_000), Limits(threads=1))
    with pytest.raises(BudgetExceeded, match=r"width 65536 exceeds NORMLAB_MAX_WIDTH=1024"):
        check_training(huge, TrainConfig(), Limits())
    assert check_training(ModelConfig(arch="cnn", depth=2, width=8), TrainConfig(steps=20, probe_after=5),
                          Limits(threads=1)).seconds < 60


def test_a_study_is_refused_by_its_seeds_and_its_total_time(fixed_model):
    with pytest.raises(BudgetExceeded, match="seeds 40 exceeds NORMLAB_MAX_SEEDS=16"):
        check_study(StudyConfig(seeds=40), Limits())
    with pytest.raises(BudgetExceeded, match=r"for the study's 84 runs exceeds the limit 60 s"):
        check_study(StudyConfig(), Limits(threads=1))
    small = check_study(StudyConfig(norms=("batchnorm",), seeds=2, width=8, cnn_depth=2, resnet_depth=1,
                                    k_steps=5, train=TrainConfig(steps=10, probe_after=2)), Limits(threads=1))
    assert small.runs == 4 and small.seconds < 60


def test_run_training_checks_the_machines_memory_first(monkeypatch):
    _clear_env(monkeypatch)
    monkeypatch.setattr(settings, "machine_memory_mb", lambda: 400.0)
    monkeypatch.setattr("normlab.science.training.digits_split", lambda *a: pytest.fail("loaded data first"))
    from normlab.ops.run import run_training

    with pytest.raises(BudgetExceeded, match="memory this machine has free"):
        run_training(ModelConfig(arch="mlp", depth=2, width=4096), TrainConfig(steps=1, probe_after=1))


def test_the_networks_above_cover_every_family_of_the_catalog():
    from normlab.core.catalog import ARCH_NAMES

    assert {family["arch"] for family in FAMILIES} == set(ARCH_NAMES)
