"""Uploaded images as the probe batch: decoded with Pillow, held in memory by content hash, never stored."""

from __future__ import annotations

import io

import numpy as np
import pytest
from helpers import APP, TIMEOUT, charts
from PIL import Image
from streamlit.testing.v1 import AppTest

import ui.compute.cache
from normlab import ModelConfig, ProbeConfig, run_probes
from normlab.ops.store import default_store
from normlab.science import data as D
from ui.shell.sidebar import UPLOAD_KEY
from ui.state import controls as C
from ui.state.selection import build_selection, with_upload

NET = ModelConfig(arch="cnn", depth=3, width=8, norm="batchnorm")


@pytest.fixture(autouse=True)
def empty_store(tmp_path, monkeypatch):
    """A store of this test's own, and a cold in-process memory."""
    monkeypatch.setenv("NORMLAB_STORE", str(tmp_path / "store"))
    ui.compute.cache.clear()
    yield tmp_path / "store"
    ui.compute.cache.clear()


def image_bytes(seed: int, shape=(40, 30), fmt="PNG") -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, fmt)
    return out.getvalue()


def test_uploaded_images_become_the_batch_scaled_cropped_and_preprocessed():
    upload = D.register_upload([("a.png", image_bytes(0)), ("b.jpg", image_bytes(1, fmt="JPEG"))], 16)
    assert upload.names == ("a.png", "b.jpg")
    x = D.make_inputs(upload.probe_config(), seed=0)
    assert x.shape == (2, 3, 16, 16)
    decoded = D.datasets.load_image(image_bytes(0), 16, "a.png")
    np.testing.assert_allclose(x[0].numpy(), (decoded.numpy() / 255.0 - 0.5) / 0.5, atol=1e-6)
    # every seed probes the same images; a smaller image size resizes the same batch
    assert D.make_inputs(upload.probe_config(), seed=3).equal(x)
    assert D.make_inputs(upload.probe_config(image_size=8), seed=0).shape == (2, 3, 8, 8)


def test_identical_uploads_share_one_key_and_different_ones_do_not():
    files = [("a.png", image_bytes(0)), ("b.png", image_bytes(1))]
    first, again = D.register_upload(files, 16), D.register_upload(list(files), 16)
    assert first.key == again.key and first.key.startswith("upload:")
    assert D.register_upload(files[::-1], 16).key != first.key  # another order is another batch
    assert D.register_upload([files[0], ("c.png", image_bytes(2))], 16).key != first.key


def test_unreadable_oversized_and_too_many_files_are_refused_by_name():
    with pytest.raises(ValueError, match="notes.png: not an image"):
        D.register_upload([("a.png", image_bytes(0)), ("notes.png", b"not a picture")], 16)
    with pytest.raises(ValueError, match="big.png: .* at most 2 MB"):
        D.register_upload([("big.png", b"\0" * (D.MAX_UPLOAD_BYTES + 1))], 16)
    with pytest.raises(ValueError, match=f"at most {D.MAX_UPLOADS} files"):
        D.register_upload([(f"{k}.png", image_bytes(0)) for k in range(D.MAX_UPLOADS + 1)], 16)
    with pytest.raises(ValueError, match="no longer in the server's memory"):
        D.make_inputs(ProbeConfig(input="upload", data_dir="upload:" + "0" * 64, batch_size=2), seed=0)
    with pytest.raises(ValueError, match="data_dir of the upload input"):
        ProbeConfig(input="upload", batch_size=2)


def test_fewer_than_two_images_cannot_be_a_batch():
    one = D.register_upload([("a.png", image_bytes(0))], 16)
    with pytest.raises(ValueError, match="at least two"):
        with_upload(build_selection(C.DEFAULTS), one)


def test_the_cache_computes_an_upload_once_and_keeps_it_out_of_the_store(monkeypatch, empty_store):
    calls = []
    real = ui.compute.cache.run_probes
    monkeypatch.setattr(ui.compute.cache, "run_probes",
                        lambda m, p, progress=None: calls.append(p) or real(m, p))
    upload = D.register_upload([("a.png", image_bytes(0)), ("b.png", image_bytes(1))], 16)
    probe = upload.probe_config(seeds=2)
    frame = ui.compute.cache.probe(NET, probe)
    same = D.register_upload([("a.png", image_bytes(0)), ("b.png", image_bytes(1))], 16)
    again = ui.compute.cache.probe(NET, same.probe_config(seeds=2))
    assert len(calls) == 1
    assert frame.equals(again) and frame.equals(run_probes(NET, probe))
    assert (frame["input"] == "upload").all()
    assert ui.compute.cache.stored_probe(NET, ProbeConfig(batch_size=2, image_size=16, seeds=2)) is None
    assert default_store().root == empty_store
    assert not empty_store.exists() or not any(p.is_file() for p in empty_store.rglob("*"))  # nothing on disk
    ui.compute.cache.probe(NET, ProbeConfig(batch_size=2, image_size=16))  # while an ordinary probe is stored
    assert any(p.is_file() for p in empty_store.rglob("*"))


def test_a_page_draws_from_the_uploaded_batch_and_names_it():
    upload = D.register_upload([("cat <b>.png", image_bytes(0)), ("dog.png", image_bytes(1)),
                                ("bird.png", image_bytes(2))], 64)
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.session_state[UPLOAD_KEY] = upload  # AppTest cannot click an uploader: the handle it would leave
    at.run()
    at.switch_page("pages/variance.py").run()
    assert not at.exception, at.exception
    captions = [c.value for c in at.sidebar.caption]
    named = [c for c in captions if c.startswith("Probe batch: your 3 uploaded images")]
    assert named and "cat \\<b\\>" in named[0]  # the name is escaped, never markup
    fig = charts(at)[0]
    assert fig.data
    ceiling = at.session_state["_selection"].probe
    assert (ceiling.input, ceiling.batch_size, ceiling.image_size) == ("upload", 3, 16)


def test_an_upload_disables_the_input_and_batch_size_it_replaces_and_states_the_real_limit():
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.run()
    at.switch_page("pages/variance.py").run()
    replaced = lambda: (at.sidebar.selectbox(key="input").disabled,  # noqa: E731
                        at.sidebar.select_slider(key="batch").disabled)
    assert replaced() == (False, False)
    uploader = at.get("file_uploader")[0].proto
    assert uploader.max_upload_size_mb == D.MAX_UPLOAD_BYTES // 2**20  # Streamlit's own "Limit … per file"
    captions = [c.value for c in at.sidebar.caption]
    assert f"At most {D.MAX_UPLOADS} images, 2 MB per file." in captions

    pair = [("a.png", image_bytes(0)), ("b.png", image_bytes(1))]
    at.session_state[UPLOAD_KEY] = D.register_upload(pair, 64)
    at.run()
    assert not at.exception, at.exception
    assert replaced() == (True, True)
    assert any("replace the input and the batch size" in c.value for c in at.sidebar.caption)


def test_the_cosine_matrices_name_the_number_of_samples_they_show():
    from ui.figures.samples import HEATMAP_SAMPLES, collapse_figure
    from ui.figures.style import figure_text

    upload = D.register_upload([("a.png", image_bytes(0)), ("b.png", image_bytes(1))], 64)
    detail = ui.compute.cache.probe_detail(NET, upload.probe_config(image_size=16))
    text = figure_text(collapse_figure({"BatchNorm": detail}, {"BatchNorm": "batchnorm"}))
    assert "cosine between all 2 samples" in text and f"first {HEATMAP_SAMPLES}" not in text
