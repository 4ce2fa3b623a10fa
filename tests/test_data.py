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


# --- Token inputs (the transformer's): random bytes and windows of a text ------------------------------

from normlab.core.config import ModelConfig, resolve_input  # noqa: E402
from normlab.science.data import default_corpus, make_tokens  # noqa: E402


@pytest.mark.parametrize("kind", ["tokens", "text"])
def test_token_batches_are_bytes_whose_targets_are_the_next_byte(kind):
    x, y = make_tokens(ProbeConfig(input=kind, batch_size=5), 3, 16)
    assert x.shape == y.shape == (5, 16) and x.dtype == y.dtype == torch.int64
    assert 0 <= int(x.min()) and int(x.max()) < 256
    assert torch.equal(x[:, 1:], y[:, :-1])  # one window, shifted by one byte
    again, _ = make_tokens(ProbeConfig(input=kind, batch_size=5), 3, 16)
    other, _ = make_tokens(ProbeConfig(input=kind, batch_size=5), 4, 16)
    assert torch.equal(x, again) and not torch.equal(x, other)


def test_the_default_text_is_the_stdlib_corpus_cut_at_random_offsets():
    corpus = default_corpus()
    assert 400_000 < len(corpus) < 600_000 and b"Assert statements are a convenient way" in corpus
    x, _ = make_tokens(ProbeConfig(input="text", batch_size=8), 0, 32)
    for row in x:
        assert bytes(row.tolist()) in corpus
    # English prose: mostly lower-case ASCII letters and spaces (27 of 256 byte values), unlike noise
    prose = lambda t: float(((t >= 97) & (t <= 122) | (t == 32)).double().mean())  # noqa: E731
    noise, _ = make_tokens(ProbeConfig(input="tokens", batch_size=8), 0, 32)
    assert prose(x) > 0.6 > 0.2 > prose(noise)


def test_a_text_file_is_read_window_by_window(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes(bytes(range(200)))
    x, y = make_tokens(ProbeConfig(text_path=str(path), batch_size=4), 0, 10)  # text_path implies text
    for row, target in zip(x.tolist(), y.tolist(), strict=True):
        assert row == list(range(row[0], row[0] + 10)) and target == [b + 1 for b in row]


@pytest.mark.parametrize(("content", "message"), [(None, "is not a readable file"),
                                                  (b"short", "holds 5 bytes; a window of seq_len")])
def test_a_missing_or_short_text_file_is_refused_naming_text_path(tmp_path, content, message):
    path = tmp_path / "t.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=rf"text_path .*{message}"):
        make_tokens(ProbeConfig(text_path=str(path), batch_size=2), 0, 8)


def test_the_input_is_resolved_per_family_and_refused_across_families():
    probe = ProbeConfig()
    assert probe.input is None
    assert resolve_input(ModelConfig(arch="mlp"), probe) == "gaussian"
    assert resolve_input(ModelConfig(arch="transformer"), probe) == "tokens"
    with pytest.raises(ValueError, match=r"input 'images' does not apply to arch 'transformer'; "
                                         r"allowed: 'tokens', 'text'"):
        resolve_input(ModelConfig(arch="transformer"), ProbeConfig(input="images"))
    with pytest.raises(ValueError, match=r"input 'text' does not apply to arch 'resnet'; "
                                         r"allowed: 'gaussian'"):
        resolve_input(ModelConfig(), ProbeConfig(input="text"))
    with pytest.raises(ValueError, match=r"text_path applies to input 'text' only; got input 'gaussian'"):
        ProbeConfig(input="gaussian", text_path="x.txt")
