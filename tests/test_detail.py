"""probe_detail: the cosine matrices, projections and samples the pictures draw, checked against torch."""

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from normlab import ModelConfig, ProbeConfig, run_probes
from normlab.science.data import derive_seed, make_inputs, make_labels
from normlab.science.hooks import record
from normlab.science.models import build_model
from normlab.science.probes import probe_detail

PROBE = ProbeConfig(input="images", batch_size=16, image_size=8, seed=3)


def _features(model_config: ModelConfig, probe_config: ProbeConfig):
    """The trunk activations and per-sample dL/dz norms of run_probes' first seed, recorded plainly."""
    torch.manual_seed(derive_seed(probe_config.seed, "init"))
    model = build_model(model_config, (3, probe_config.image_size, probe_config.image_size)).train()
    x = make_inputs(probe_config, probe_config.seed, 3).requires_grad_(True)
    labels = make_labels(probe_config.batch_size, model_config.num_classes, probe_config.seed)
    grads = {}
    with record(model, grad_reduce=lambda g: grads.setdefault(len(grads), g.clone()).norm()) as taps:
        loss = F.cross_entropy(model(x), labels)
        torch.autograd.grad(loss, [x])
    kind = "block" if any(t.kind == "block" for t in taps.taps) else "act"
    acts = [t.value for t in taps.taps if t.kind == kind]
    return acts, [grads[k] for k in sorted(grads, reverse=True)]  # backward runs last layer first


@pytest.mark.parametrize("model_config", [
    ModelConfig(arch="resnet", depth=3, width=8, norm="batchnorm"),
    ModelConfig(arch="cnn", depth=4, width=8, norm="none"),
], ids=["resnet", "cnn"])
def test_heatmap_data_is_the_cosine_matrix_of_the_features(model_config):
    detail = probe_detail(model_config, PROBE)
    acts, _ = _features(model_config, PROBE)
    assert len(detail.layers) == len(acts) == len(detail.positions)
    for cosine, act in zip(detail.cosine, acts, strict=True):
        flat = F.normalize(act.double().flatten(1), dim=1)  # (N, D)
        np.testing.assert_allclose(cosine, (flat @ flat.T).numpy(), atol=1e-5)


def test_mean_off_diagonal_cosine_equals_run_probes_cos_sim():
    config = ModelConfig(arch="resnet", depth=3, width=8, norm="groupnorm", groups=2)
    detail = probe_detail(config, PROBE)
    frame = run_probes(config, PROBE)
    cos = frame[(frame["metric"] == "cos_sim") & (frame["kind"] == "block")].sort_values("index")["value"]
    n = PROBE.batch_size
    mean_off = (detail.cosine.sum(axis=(1, 2)) - n) / (n * (n - 1))
    np.testing.assert_allclose(mean_off, cos.to_numpy(), atol=1e-5)


def test_projection_is_the_top_two_principal_components():
    config = ModelConfig(arch="cnn", depth=3, width=8, norm="layernorm")
    detail = probe_detail(config, PROBE)
    acts, _ = _features(config, PROBE)
    flat = acts[-1].double().flatten(1)
    centered = flat - flat.mean(0)
    u, s, _ = torch.linalg.svd(centered, full_matrices=False)
    expected = (u[:, :2] * s[:2]) / flat.square().sum(1).mean().sqrt()
    got = torch.from_numpy(detail.projection[-1]).double()
    for k in range(2):  # a principal direction's sign is arbitrary
        assert torch.allclose(got[:, k].abs(), expected[:, k].abs(), atol=1e-4)


def test_per_sample_gradient_norms_make_up_the_batch_norm():
    config = ModelConfig(arch="cnn", depth=3, width=8, norm="batchnorm")
    detail = probe_detail(config, PROBE)
    _, grads = _features(config, PROBE)
    assert detail.grad_norms.shape == (len(grads), PROBE.batch_size)
    for rows, grad in zip(detail.grad_norms, grads, strict=True):
        np.testing.assert_allclose(rows, grad.flatten(1).norm(dim=1).numpy(), rtol=1e-5)


def test_points_and_samples_are_bounded():
    config = ModelConfig(arch="mlp", depth=30, width=16, norm="none")
    detail = probe_detail(config, dataclasses.replace(PROBE, batch_size=8), points=5, samples=50)
    assert detail.cosine.shape == (5, 8, 8) and detail.projection.shape == (5, 8, 2)
    assert detail.activations.shape == (5, 50)
    assert detail.positions[0] == 1 and detail.positions[-1] == 30  # both ends kept


def test_final_rank_falls_with_group_size_on_images():
    """The paper's direction: larger groups, lower final-feature rank (effective rank, plain CNN)."""
    probe = ProbeConfig(input="images", batch_size=32, image_size=8)
    ranks = {}
    for size in (1, 4, 16):
        config = ModelConfig(arch="cnn", depth=6, width=16, norm="groupnorm", group_size=size)
        frame = run_probes(config, probe)
        ranks[size] = frame[frame["final"] & (frame["metric"] == "effective_rank")]["value"].item()
    assert ranks[1] > ranks[4] > ranks[16]


@pytest.mark.parametrize("bad", [{"points": 1}, {"samples": 0}, {"points": 2.5}])
def test_bad_bounds_name_the_field(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        probe_detail(ModelConfig(arch="mlp", depth=2, width=4), PROBE, **bad)
