"""Seeded input batches: shapes, determinism, standardization and where the pixels come from."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from normlab.core.config import INPUTS, ProbeConfig
from normlab.science.data import derive_seed, make_inputs, make_labels


def neighbour_correlation(x: torch.Tensor) -> float:
    """Correlation of horizontally adjacent pixels: near 0 for noise, high for photographs."""
    a, b = x[..., :, :-1].reshape(-1).double(), x[..., :, 1:].reshape(-1).double()
    return float(torch.corrcoef(torch.stack([a, b]))[0, 1])


@pytest.mark.parametrize("kind", INPUTS)
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_inputs_have_the_configured_shape_and_dtype(kind, channels):
    x = make_inputs(ProbeConfig(input=kind, batch_size=5, image_size=12), seed=0, in_channels=channels)
    assert x.shape == (5, channels, 12, 12)
    assert x.dtype == torch.float32
    assert torch.isfinite(x).all()


@pytest.mark.parametrize("kind", INPUTS)
def test_same_seed_gives_the_same_batch_and_another_seed_another(kind):
    cfg = ProbeConfig(input=kind, batch_size=6, image_size=8)
    assert torch.equal(make_inputs(cfg, 3), make_inputs(cfg, 3))
    assert not torch.equal(make_inputs(cfg, 3), make_inputs(cfg, 4))


@pytest.mark.parametrize("kind", INPUTS)
def test_inputs_leave_the_global_random_state_untouched(kind):
    torch.manual_seed(123)
    np.random.seed(123)
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()[1].copy()
    make_inputs(ProbeConfig(input=kind, batch_size=4, image_size=8), seed=0)
    make_labels(4, 10, seed=0)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], np_state)


@pytest.mark.parametrize("kind", ["images", "digits"])
def test_real_inputs_are_standardized_per_channel(kind):
    x = make_inputs(ProbeConfig(input=kind, batch_size=16, image_size=16), seed=1).double()
    assert x.mean(dim=(0, 2, 3)) == pytest.approx(torch.zeros(3), abs=1e-6)
    assert x.var(dim=(0, 2, 3), unbiased=False) == pytest.approx(torch.ones(3), rel=1e-5)


def test_image_crops_are_smooth_like_photographs_and_noise_is_not():
    images = make_inputs(ProbeConfig(input="images", batch_size=16, image_size=16), seed=0)
    noise = make_inputs(ProbeConfig(input="gaussian", batch_size=16, image_size=16), seed=0)
    assert neighbour_correlation(images) > 0.6
    assert abs(neighbour_correlation(noise)) < 0.05


def test_image_crops_differ_between_samples():
    x = make_inputs(ProbeConfig(input="images", batch_size=8, image_size=8), seed=0)
    flat = x.reshape(8, -1)
    assert torch.cdist(flat, flat)[~torch.eye(8, dtype=torch.bool)].min() > 0.1


def test_digits_at_their_own_size_are_distinct_dataset_digits():
    from sklearn.datasets import load_digits

    x = make_inputs(ProbeConfig(input="digits", batch_size=12, image_size=8), seed=0, in_channels=1)
    # standardization is one affine map for the whole batch: undo it with the dataset's levels
    flat = x.reshape(12, -1).double().numpy()
    lo = flat.min()  # pixel value 0 (every digit has background)
    step = np.unique(np.round(flat - lo, 6))[1]  # one grey level
    levels = np.round((flat - lo) / step).astype(int)
    digits = load_digits().images.reshape(-1, 64).astype(int)
    matches = [np.flatnonzero((digits == row).all(axis=1)) for row in levels]
    assert all(len(m) >= 1 for m in matches)
    assert len({int(m[0]) for m in matches}) == 12  # drawn without replacement


def test_digits_are_copied_to_every_channel():
    x = make_inputs(ProbeConfig(input="digits", batch_size=4, image_size=16), seed=0, in_channels=3)
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 1], x[:, 2])


def test_gaussian_inputs_are_standard_normal():
    x = make_inputs(ProbeConfig(input="gaussian", batch_size=64, image_size=16), seed=0)
    assert float(x.mean()) == pytest.approx(0.0, abs=0.02)
    assert float(x.var()) == pytest.approx(1.0, abs=0.03)


def test_labels_are_seeded_and_in_range():
    y = make_labels(200, 7, seed=2)
    assert y.dtype == torch.int64 and y.shape == (200,)
    assert int(y.min()) >= 0 and int(y.max()) == 6
    assert torch.equal(y, make_labels(200, 7, seed=2))
    assert not torch.equal(y, make_labels(200, 7, seed=3))


def test_weights_inputs_and_labels_draw_from_different_streams():
    seeds = {derive_seed(0, s) for s in ("init", "inputs", "labels")}
    assert len(seeds) == 3
    assert derive_seed(0, "inputs") != derive_seed(1, "inputs")


def test_make_inputs_refuses_a_non_probe_config():
    with pytest.raises(ValueError, match="ProbeConfig"):
        make_inputs({"input": "gaussian"}, seed=0)


def test_the_images_input_crops_seven_bundled_colour_photographs():
    from normlab.science.data import SKIMAGE_PHOTOS, _photographs

    photos = _photographs()
    assert len(photos) == 2 + len(SKIMAGE_PHOTOS) == 7  # scikit-learn's two and scikit-image's five
    for photo in photos:
        assert photo.shape[0] == 3 and min(photo.shape[1:]) >= 300 and 0 <= photo.min() < photo.max() <= 1
        assert photo.std(dim=(1, 2)).min() > 0.05  # colour photographs, not flat or grey padding


def test_instancenorm_gradients_grow_faster_than_batchnorms_on_photographs_only():
    # Instance statistics only differ from batch statistics on real images (spec section 3); in a
    # plain CNN that shows as a faster growth of grad_norm toward the input.
    from normlab import ModelConfig, run_probes

    def growth(norm: str, kind: str) -> float:
        frame = run_probes(ModelConfig(arch="cnn", depth=6, width=16, norm=norm),
                           ProbeConfig(input=kind, batch_size=32, image_size=16, seeds=3))
        grads = frame[(frame["metric"] == "grad_norm") & (frame["layer"] != "head")]
        per_layer = grads.groupby("layer", sort=False)["value"].mean()  # conv layers, input first
        return per_layer.iloc[0] / per_layer.iloc[-1]

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small nets: one thread is fastest, and fair to a shared CPU
    try:
        assert growth("instancenorm", "images") > 2 * growth("batchnorm", "images")  # measured 2.6x
        assert growth("instancenorm", "gaussian") == pytest.approx(growth("batchnorm", "gaussian"), rel=0.15)
    finally:
        torch.set_num_threads(threads)
