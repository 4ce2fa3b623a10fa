"""Local datasets: CIFAR in both distributed formats, image folders, the safe unpickler, clear errors."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from normlab import ModelConfig, run_probes
from normlab.core.config import ProbeConfig
from normlab.science.data import make_inputs
from normlab.science.datasets import (
    DATA_DIR_ENV,
    list_image_folder,
    load_cifar,
    load_image,
    normalize,
    safe_unpickle,
)
from tests.cifar_files import PER_FILE, write_cifar, write_image_folder

VERSIONS = [("cifar10", "python"), ("cifar10", "binary"), ("cifar100", "python"), ("cifar100", "binary")]


@pytest.mark.parametrize("name, version", VERSIONS)
def test_both_cifar_versions_load_the_written_pixels_and_fine_labels(tmp_path, name, version):
    written = write_cifar(tmp_path, name, version)
    for split, n in (("train", PER_FILE * (5 if name == "cifar10" else 1)), ("test", PER_FILE)):
        data = load_cifar(name, tmp_path, split)
        pixels, labels = written[split]
        assert data.images.shape == (n, 3, 32, 32) and data.images.dtype == torch.uint8
        # a record is 1024 red, 1024 green, then 1024 blue bytes, row by row
        assert torch.equal(data.images, torch.from_numpy(pixels.reshape(n, 3, 32, 32)))
        assert data.labels.tolist() == labels.tolist()
    assert len(data.classes) == (10 if name == "cifar10" else 100) and data.classes[3] == "class3"


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_the_archive_folder_itself_may_be_named_and_the_environment_variable_used(tmp_path, name,
                                                                                  monkeypatch):
    write_cifar(tmp_path, name, "python")
    folder = next(tmp_path.iterdir())
    inside = load_cifar(name, folder)
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    from_env = load_cifar(name, None)
    assert torch.equal(inside.images, from_env.images)


def test_normalize_is_to_tensor_then_normalize_half():
    x = torch.tensor([0, 51, 128, 255], dtype=torch.uint8)
    expected = (x.double() / 255 - 0.5) / 0.5
    assert normalize(x).double() == pytest.approx(expected, abs=1e-7)
    assert normalize(x)[0] == -1 and normalize(x)[-1] == 1


def test_no_data_dir_says_how_to_give_one(monkeypatch):
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    with pytest.raises(ValueError, match=f"--data-dir.*{DATA_DIR_ENV}"):
        load_cifar("cifar10", None)


def test_a_folder_that_does_not_exist_or_holds_no_cifar_is_named(tmp_path):
    with pytest.raises(ValueError, match=f"{tmp_path / 'nope'}.*not a folder"):
        load_cifar("cifar10", tmp_path / "nope")
    with pytest.raises(ValueError, match=f"no cifar100 files in '{tmp_path}'.*cifar-100-python"):
        load_cifar("cifar100", tmp_path)


@pytest.mark.parametrize("version, missing", [("python", "data_batch_3"), ("binary", "data_batch_5.bin")])
def test_a_missing_batch_file_is_named(tmp_path, version, missing):
    write_cifar(tmp_path, "cifar10", version)
    (next(tmp_path.iterdir()) / missing).unlink()
    with pytest.raises(ValueError, match=f"missing cifar10 file .*{missing}"):
        load_cifar("cifar10", tmp_path)
    assert len(load_cifar("cifar10", tmp_path, "test")) == PER_FILE  # the other split still loads


def test_a_pickle_with_the_wrong_shape_or_keys_is_named(tmp_path):
    write_cifar(tmp_path, "cifar10", "python")
    bad = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    bad.write_bytes(pickle.dumps({b"data": np.zeros((4, 3000), np.uint8), b"labels": [0] * 4}, protocol=2))
    with pytest.raises(ValueError, match=r"data_batch_2: 'data' must be a uint8 array \(N, 3072\); "
                                         r"got \(4, 3000\)"):
        load_cifar("cifar10", tmp_path)
    bad.write_bytes(pickle.dumps({b"data": np.zeros((4, 3072), np.uint8)}, protocol=2))
    with pytest.raises(ValueError, match="data_batch_2: expected the keys 'data' and 'labels'"):
        load_cifar("cifar10", tmp_path)
    bad.write_bytes(pickle.dumps({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 2, 10]}))
    with pytest.raises(ValueError, match=r"data_batch_2: labels must be in 0..9; got 0..10"):
        load_cifar("cifar10", tmp_path)
    bad.write_bytes(b"\x80\x02}q\x00(U")  # truncated
    with pytest.raises(ValueError, match="data_batch_2: not a CIFAR python-pickle file"):
        load_cifar("cifar10", tmp_path)


def test_a_binary_file_of_the_wrong_size_is_named(tmp_path):
    write_cifar(tmp_path, "cifar100", "binary")
    bad = tmp_path / "cifar-100-binary" / "train.bin"
    bad.write_bytes(bad.read_bytes()[:-1])
    with pytest.raises(ValueError, match=r"train.bin: 12295 bytes is not a whole number of 3074-byte records "
                                         r"\(2 label bytes \+ 3072 pixels\)"):
        load_cifar("cifar100", tmp_path)


class _RunsCode:
    """What an attacker pickles: unpickling calls os.system with the marker's path."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("payload", ["os.system", "builtins.eval", "numpy_load"])
def test_a_pickle_that_names_code_is_refused_and_never_run(tmp_path, payload):
    marker = tmp_path / "ran"
    if payload == "os.system":
        obj = {b"data": _RunsCode(marker), b"labels": []}
    elif payload == "builtins.eval":
        obj = {b"x": type("E", (), {"__reduce__": lambda self: (eval, (f"open({str(marker)!r}, 'w')",))})()}
    else:  # an allowed module, a name outside the allowed few
        obj = {b"x": type("L", (), {"__reduce__": lambda self: (np.load, (str(marker),))})()}
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps(obj, protocol=2))
    with pytest.raises(ValueError, match=f"{path}: refused to load: the pickle names .*(system|eval|load)"):
        safe_unpickle(path)
    assert not marker.exists()
    # the same refusal through the loader, and no CIFAR file is taken for data
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for k in range(1, 6):
        (folder / f"data_batch_{k}").write_bytes(path.read_bytes())
    with pytest.raises(ValueError, match="refused to load"):
        load_cifar("cifar10", tmp_path)
    assert not marker.exists()


def test_arrays_pickled_by_numpy_1_and_numpy_2_both_load(tmp_path):
    # protocol 2 names globals as text: numpy 2 writes numpy._core.multiarray, numpy 1 (and the real
    # CIFAR files, from Python 2) numpy.core.multiarray
    blob = pickle.dumps({b"data": np.arange(6, dtype=np.uint8)}, protocol=2)
    assert b"numpy._core.multiarray" in blob or b"numpy.core.multiarray" in blob
    for spelling in (b"numpy._core.multiarray", b"numpy.core.multiarray"):
        path = tmp_path / "batch"
        path.write_bytes(blob.replace(b"numpy._core.multiarray", spelling)
                         .replace(b"numpy.core.multiarray", spelling))
        assert safe_unpickle(path)[b"data"].tolist() == list(range(6))


# --- image folders ----------------------------------------------------------------------------------


def test_an_image_folder_lists_classes_sorted_and_skips_other_files(tmp_path):
    write_image_folder(tmp_path, {"dog": 2, "cat": 3})
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    folder = list_image_folder(tmp_path)
    assert folder.classes == ("cat", "dog")
    assert folder.labels == (0, 0, 0, 1, 1) and all(p.endswith(".png") for p in folder.paths)


def test_load_image_scales_the_short_side_and_crops_the_centre(tmp_path):
    from PIL import Image

    pixels = np.zeros((10, 30, 3), np.uint8)  # 30 wide, 10 high: left third red, middle green
    pixels[:, :10, 0] = 255
    pixels[:, 10:20, 1] = 255
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    x = load_image(tmp_path / "wide.png", 5)
    assert x.shape == (3, 5, 5) and x.dtype == torch.uint8
    assert x[1].float().mean() > 200 and x[0].float().mean() < 20  # the green centre
    assert torch.equal(load_image((tmp_path / "wide.png").read_bytes(), 5), x)


def test_bad_image_folders_and_unreadable_images_are_named(tmp_path):
    with pytest.raises(ValueError, match="found no sub-folder"):
        list_image_folder(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"no image files in its class sub-folders \(empty\)"):
        list_image_folder(tmp_path)
    (tmp_path / "empty" / "broken.jpg").write_bytes(b"not a jpeg at all")
    folder = list_image_folder(tmp_path)
    with pytest.raises(ValueError, match="broken.jpg: not an image Pillow can read"):
        make_inputs(ProbeConfig(input="imagefolder", batch_size=2, image_size=8, data_dir=str(tmp_path)), 0)
    with pytest.raises(ValueError, match="upload.png: not an image"):
        load_image(b"\x89PNG junk", 8, name="upload.png")
    assert len(folder) == 1


# --- as probe inputs --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_probe_batches_are_seeded_samples_of_the_training_split_preprocessed(tmp_path, name):
    write_cifar(tmp_path, name, "binary")
    cfg = ProbeConfig(input=name, batch_size=4, image_size=32, data_dir=str(tmp_path))
    x = make_inputs(cfg, seed=1)
    assert x.shape == (4, 3, 32, 32) and x.min() >= -1 and x.max() <= 1
    assert torch.equal(x, make_inputs(cfg, seed=1)) and not torch.equal(x, make_inputs(cfg, seed=2))
    train = normalize(load_cifar(name, tmp_path).images)  # every sample is one training image
    assert all(any(torch.equal(s, t) for t in train) for s in x)
    small = make_inputs(ProbeConfig(input=name, batch_size=4, image_size=8, data_dir=str(tmp_path)), 1, 1)
    assert small.shape == (4, 1, 8, 8)


def test_an_image_folder_probe_batch_draws_each_image_once_until_it_runs_out(tmp_path):
    write_image_folder(tmp_path, {"a": 2, "b": 2})
    cfg = ProbeConfig(input="imagefolder", batch_size=4, image_size=6, data_dir=str(tmp_path))
    x = make_inputs(cfg, seed=0)
    assert x.shape == (4, 3, 6, 6) and len({tuple(s.flatten().tolist()) for s in x}) == 4
    more = make_inputs(ProbeConfig(**{**cfg.to_dict(), "batch_size": 6}), seed=0)
    assert more.shape == (6, 3, 6, 6)  # with replacement past the folder's 4 images


def test_probe_config_keeps_data_dir_only_for_the_disk_inputs():
    assert ProbeConfig(input="images", data_dir="/x").data_dir is None
    assert ProbeConfig(input="cifar10", data_dir="/x").data_dir == "/x"
    with pytest.raises(ValueError, match="data_dir must be a folder path"):
        ProbeConfig(input="cifar10", data_dir=3)


def test_run_probes_measures_a_network_on_cifar_from_disk(tmp_path):
    write_cifar(tmp_path, "cifar100", "python")
    frame = run_probes(ModelConfig(arch="cnn", depth=2, width=8, num_classes=100),
                       ProbeConfig(input="cifar100", batch_size=4, image_size=8, data_dir=str(tmp_path)))
    assert (frame["input"] == "cifar100").all() and (frame["data_dir"] == str(tmp_path)).all()
    assert np.isfinite(frame["value"]).all()


def test_normlab_probe_reads_cifar_from_data_dir_and_names_a_missing_one(tmp_path, capsys, monkeypatch):
    from normlab.cli import main

    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    write_cifar(tmp_path, "cifar10", "python")
    argv = ["probe", "--arch", "mlp", "--depth", "2", "--width", "8", "--batch-size", "4",
            "--image-size", "8", "--input", "cifar10"]
    assert main([*argv, "--data-dir", str(tmp_path)]) == 0
    assert "cifar10" in capsys.readouterr().out
    assert main(argv) == 2
    assert "give data_dir (--data-dir DIR) or set NORMLAB_DATA_DIR" in capsys.readouterr().err
