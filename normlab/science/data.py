"""Seeded input batches for the probes: Gaussian noise, crops of natural photographs, digits, and
real datasets from a local folder (CIFAR-10/100, an image folder; read by normlab.science.datasets).

Every batch comes from its own seeded generator, never from the global RNG state, so the same
(config, seed) always gives the same tensor and probing leaves the caller's random state untouched.
Knows nothing of models or metrics.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from normlab.core.config import (
    DISK_INPUTS,
    INPUTS,
    MAX_SEED,
    MAX_WIDTH,
    UPLOAD_INPUT,
    ProbeConfig,
    check_instance,
    check_int,
)
from normlab.science import datasets

# Independent random streams drawn from one user seed: weights, inputs and labels never share draws.
STREAMS = {"init": 0, "inputs": 1, "labels": 2}
# Crops span 1x to 4x the output size before resizing: large enough to hold structure at 8x8,
# small enough that two photographs still give many different samples.
MAX_CROP_SCALE = 4.0


def derive_seed(seed: int, stream: str) -> int:
    """A 63-bit seed for one named stream of a user seed (stable across runs and platforms)."""
    state = np.random.SeedSequence([int(seed), STREAMS[stream]]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 ^ int(state[1])


def _generator(seed: int, stream: str) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(seed, stream))


# The colour photographs of the "images" input: scikit-learn's two, and the five colour photographs
# scikit-image ships inside its wheel (its other samples are grey, synthetic, microscopy or fetched
# over the network by pooch, so unusable offline). About 2.3 MB of JPEG/PNG, decoded once.
SKIMAGE_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "rocket.jpg")


def _package_dir(package: str) -> Path:
    """A package's folder, found without importing it (scikit-image's import costs seconds)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"the 'images' input needs the {package} package; pip install scikit-image")
    return Path(next(iter(spec.submodule_search_locations)))


def _decode(path: Path) -> torch.Tensor:
    from PIL import Image

    with Image.open(path) as im:
        pixels = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0  # (H, W, 3)
    return torch.from_numpy(pixels).permute(2, 0, 1).contiguous()


@functools.lru_cache(maxsize=1)
def _photographs() -> tuple[torch.Tensor, ...]:
    """The seven photographs, each (3, H, W) float32 in [0, 1], in a fixed order.

    scikit-learn's china.jpg and flower.jpg (427 x 640), then :data:`SKIMAGE_PHOTOS` (300 to 741 pixels
    a side).
    """
    from sklearn.datasets import load_sample_images  # reads JPEGs through Pillow

    sklearn_photos = tuple(
        torch.from_numpy(np.ascontiguousarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()
        for im in load_sample_images().images
    )
    skimage_data = _package_dir("skimage") / "data"
    return sklearn_photos + tuple(_decode(skimage_data / name) for name in SKIMAGE_PHOTOS)


@functools.lru_cache(maxsize=1)
def _digits() -> torch.Tensor:
    """scikit-learn's 1797 handwritten digits as (1797, 1, 8, 8) float32 in [0, 16]."""
    from sklearn.datasets import load_digits

    return torch.from_numpy(load_digits().images.astype(np.float32))[:, None]


def to_channels(x: torch.Tensor, in_channels: int) -> torch.Tensor:
    """(N, c, H, W) with c = 1 or 3 -> (N, in_channels, H, W).

    RGB to one channel is the luminance mean; otherwise the source channels repeat cyclically.
    """
    c = x.shape[1]
    if c == in_channels:
        return x
    if in_channels == 1:
        return x.mean(dim=1, keepdim=True)
    return x[:, [k % c for k in range(in_channels)]]


def standardize(x: torch.Tensor) -> torch.Tensor:
    """Zero mean and unit variance per channel over (N, H, W); a constant channel becomes zeros."""
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    std = x.std(dim=(0, 2, 3), keepdim=True, unbiased=False)
    return (x - mean) / std.clamp_min(1e-12)


def _image_crops(n: int, size: int, gen: torch.Generator) -> torch.Tensor:
    """n random square crops of the photographs, each at a random scale, flipped at random."""
    photos = _photographs()
    out = torch.empty(n, 3, size, size)
    for k in range(n):
        photo = photos[int(torch.randint(len(photos), (), generator=gen))]
        h, w = photo.shape[1:]
        hi = min(h, w, int(size * MAX_CROP_SCALE))
        lo = min(size, hi)
        u = float(torch.rand((), generator=gen))
        side = int(round(math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))))
        top = int(torch.randint(h - side + 1, (), generator=gen))
        left = int(torch.randint(w - side + 1, (), generator=gen))
        crop = photo[:, top : top + side, left : left + side][None]  # (1, 3, side, side)
        if side != size:
            crop = F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False,
                                 antialias=side > size)
        if bool(torch.rand((), generator=gen) < 0.5):
            crop = crop.flip(-1)
        out[k] = crop[0]
    return out  # (n, 3, size, size)


def _digit_batch(n: int, size: int, gen: torch.Generator) -> torch.Tensor:
    """n digits drawn without replacement (with replacement beyond 1797), upsampled bilinearly."""
    digits = _digits()
    batch = digits[_pick(n, len(digits), gen)]  # (n, 1, 8, 8)
    if size != 8:
        batch = F.interpolate(batch, size=(size, size), mode="bilinear", align_corners=False,
                              antialias=size < 8)
    return batch


def _pick(n: int, total: int, gen: torch.Generator) -> torch.Tensor:
    """n indices into a set of ``total``: without replacement, with replacement beyond ``total``."""
    if n <= total:
        return torch.randperm(total, generator=gen)[:n]
    return torch.randint(total, (n,), generator=gen)


def resized(x: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, h, w) -> (N, C, size, size), bilinear, antialiased when shrinking."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                         antialias=size < x.shape[-1])


def _disk_batch(probe_config: ProbeConfig, gen: torch.Generator) -> torch.Tensor:
    """A batch from the local dataset, with the paper's preprocessing: (x / 255 - 0.5) / 0.5."""
    n, size = probe_config.batch_size, probe_config.image_size
    if probe_config.input == "imagefolder":
        folder = datasets.list_image_folder(probe_config.data_dir)
        idx = _pick(n, len(folder), gen).tolist()
        return datasets.normalize(datasets.load_images([folder.paths[k] for k in idx], size))
    train = datasets.load_cifar(probe_config.input, probe_config.data_dir, "train")
    return resized(datasets.normalize(train.images[_pick(n, len(train), gen)]), size)


def make_inputs(probe_config: ProbeConfig, seed: int, in_channels: int = 3) -> torch.Tensor:
    """The input batch of one seed: (batch_size, in_channels, image_size, image_size) float32 on the CPU.

    ``gaussian`` is i.i.d. N(0, 1). ``images`` and ``digits`` are standardized per channel over the batch
    (zero mean, unit variance), as a data pipeline would. ``cifar10``, ``cifar100`` (training split)
    and ``imagefolder`` are read from ``probe_config.data_dir`` (else $NORMLAB_DATA_DIR) and
    preprocessed as the paper's code does, ToTensor then Normalize(0.5, 0.5) per channel; CIFAR's
    32x32 images are resized to ``image_size``, folder images scaled and centre-cropped to it. All
    draw their samples from the seed's ``inputs`` stream: without replacement, with replacement when
    the set has fewer images than ``batch_size``. ``upload`` is a batch registered in this process by
    :func:`register_upload`, preprocessed as the folder images; its own order when ``batch_size``
    equals the number of images (every seed sees the same batch; only the init changes).
    """
    check_instance("probe_config", probe_config, ProbeConfig)
    check_int("seed", seed, 0, MAX_SEED)
    check_int("in_channels", in_channels, 1, MAX_WIDTH)
    n, size = probe_config.batch_size, probe_config.image_size
    gen = _generator(seed, "inputs")
    if probe_config.input in (None, "gaussian"):  # None: the image families' default (resolve_input)
        return torch.randn(n, in_channels, size, size, generator=gen)
    if probe_config.input == "images":
        return standardize(to_channels(_image_crops(n, size, gen), in_channels))
    if probe_config.input == "digits":
        return standardize(to_channels(_digit_batch(n, size, gen), in_channels))
    if probe_config.input in DISK_INPUTS:
        return to_channels(_disk_batch(probe_config, gen), in_channels)
    if probe_config.input == UPLOAD_INPUT:
        return to_channels(_upload_batch(probe_config, gen), in_channels)
    raise AssertionError(f"input {probe_config.input!r} is validated by ProbeConfig; "
                         f"expected {INPUTS + DISK_INPUTS}")


def default_corpus() -> bytes:
    """The text input's default: every help topic of the stdlib's ``pydoc_data.topics`` (English prose
    and code, ~465 kB), in sorted order, joined by blank lines, UTF-8."""
    return _corpus()


@functools.lru_cache(maxsize=1)
def _corpus() -> bytes:
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k] for k in sorted(topics)).encode("utf-8")


def _windows(path: str | None, offsets: torch.Tensor, length: int) -> torch.Tensor:
    """(len(offsets), length) bytes of the text at ``offsets``; a file is read window by window."""
    if path is None:
        data = torch.frombuffer(bytearray(_corpus()), dtype=torch.uint8)
        return torch.stack([data[o:o + length] for o in offsets.tolist()]).long()
    rows = []
    with open(path, "rb") as f:
        for o in offsets.tolist():
            f.seek(o)
            rows.append(torch.frombuffer(bytearray(f.read(length)), dtype=torch.uint8))
    return torch.stack(rows).long()


def _text_size(path: str | None) -> int:
    if path is None:
        return len(_corpus())
    try:
        return Path(path).stat().st_size if Path(path).is_file() else -1
    except OSError:
        return -1


def make_tokens(probe_config: ProbeConfig, seed: int, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One seed's token batch and its next-token targets, each (batch_size, seq_len) int64 bytes.

    ``tokens``: uniform random bytes (the targets as random as the inputs). ``text``: windows of
    seq_len + 1 bytes cut at uniform random offsets from ``probe_config.text_path`` (else
    :func:`default_corpus`); the input is a window's first seq_len bytes, the target its last seq_len.
    Both draw from the seed's ``inputs`` stream.
    """
    check_instance("probe_config", probe_config, ProbeConfig)
    check_int("seed", seed, 0, MAX_SEED)
    check_int("seq_len", seq_len, 2, MAX_WIDTH)
    n = probe_config.batch_size
    gen = _generator(seed, "inputs")
    if probe_config.input in (None, "tokens"):
        window = torch.randint(256, (n, seq_len + 1), generator=gen)
    elif probe_config.input == "text":
        path = probe_config.text_path
        size = _text_size(path)
        if size < 0:
            raise ValueError(f"text_path {path!r} is not a readable file")
        if size < seq_len + 1:
            raise ValueError(f"text_path {path!r} holds {size} bytes; a window of seq_len + 1 = "
                             f"{seq_len + 1} bytes needs at least that many")
        offsets = torch.randint(size - seq_len, (n,), generator=gen)
        try:
            window = _windows(path, offsets, seq_len + 1)
        except OSError as err:
            raise ValueError(f"text_path {path!r} cannot be read: {err.strerror or err}") from None
    else:
        raise ValueError(f"input {probe_config.input!r} is not a token input; allowed: 'tokens', 'text'")
    return window[:, :-1], window[:, 1:]


def make_labels(batch_size: int, num_classes: int, seed: int) -> torch.Tensor:
    """Uniform random class labels (batch_size,) int64 for the probe's cross-entropy loss."""
    return torch.randint(num_classes, (batch_size,), generator=_generator(seed, "labels"))


# ---------------------------------------------------------------------------------------------
# Images uploaded in the dashboard: decoded once, held in memory by content hash, never written anywhere

MAX_UPLOADS = 16  # images per upload: a handful of photos from the audience
MAX_UPLOAD_BYTES = 2 * 1024 * 1024  # per file, before decoding (Pillow also refuses decompression bombs)
UPLOADS_KEPT = 32  # uploaded batches kept in this process (each a few KB at probe sizes)


@dataclass(frozen=True)
class Upload:
    """A registered upload: ``key`` goes into ``ProbeConfig(input="upload", data_dir=key)``."""

    key: str  # "upload:<sha256 of the decoded batch>": identical uploads share one computation
    names: tuple[str, ...]
    size: int

    def probe_config(self, **fields) -> ProbeConfig:
        """A ProbeConfig whose batch is these images (``batch_size`` = their number unless given)."""
        fields = {"batch_size": len(self.names), "image_size": self.size, **fields}
        return ProbeConfig(input=UPLOAD_INPUT, data_dir=self.key, **fields)


_uploads: OrderedDict[str, torch.Tensor] = OrderedDict()
_decoded: OrderedDict[tuple, str] = OrderedDict()  # (sha256 of the files, size) -> key: no decoding twice
_uploads_lock = threading.Lock()


def _keep(table: OrderedDict, key, value) -> None:
    table[key] = value
    table.move_to_end(key)
    while len(table) > UPLOADS_KEPT:
        table.popitem(last=False)


def register_upload(files: Sequence[tuple[str, bytes]], size: int) -> Upload:
    """Decode uploaded image files (name, bytes) to one batch at ``size`` and hold it in memory.

    Raises:
        ValueError: no file, more than :data:`MAX_UPLOADS`, a file over :data:`MAX_UPLOAD_BYTES`, or one
            Pillow cannot read; the message names the file.
    """
    files = list(files)
    if not files:
        raise ValueError("uploaded images: no file given")
    if len(files) > MAX_UPLOADS:
        raise ValueError(f"uploaded images: at most {MAX_UPLOADS} files; got {len(files)}")
    for name, data in files:
        if len(data) > MAX_UPLOAD_BYTES:
            raise ValueError(f"{name}: {len(data) / 2**20:.1f} MB; each uploaded image may be at most "
                             f"{MAX_UPLOAD_BYTES // 2**20} MB")
    names = tuple(name for name, _ in files)
    raw = hashlib.sha256()
    for _, data in files:
        raw.update(hashlib.sha256(data).digest())
    with _uploads_lock:
        key = _decoded.get((raw.hexdigest(), size))
        if key is not None and key in _uploads:
            _uploads.move_to_end(key)
            return Upload(key, names, size)
    batch = datasets.load_images([data for _, data in files], size, names)  # uint8 (N, 3, size, size)
    key = "upload:" + hashlib.sha256(np.ascontiguousarray(batch.numpy()).tobytes()
                                     + repr(tuple(batch.shape)).encode()).hexdigest()
    with _uploads_lock:
        _keep(_uploads, key, batch)
        _keep(_decoded, (raw.hexdigest(), size), key)
    return Upload(key, names, size)


def uploaded_batch(key: str) -> torch.Tensor:
    """The uint8 batch registered under ``key``.

    Raises:
        ValueError: no such batch in this process (uploads live in memory only; upload them again).
    """
    with _uploads_lock:
        batch = _uploads.get(key)
    if batch is None:
        raise ValueError("uploaded images: this batch is no longer in the server's memory (uploads are kept "
                         "for the session only); upload the images again")
    return batch


def _upload_batch(probe_config: ProbeConfig, gen: torch.Generator) -> torch.Tensor:
    images = uploaded_batch(probe_config.data_dir)
    n = probe_config.batch_size
    if n != len(images):  # a sweep over batch size: drawn as from a small image folder
        images = images[_pick(n, len(images), gen)]
    return resized(datasets.normalize(images), probe_config.image_size)
