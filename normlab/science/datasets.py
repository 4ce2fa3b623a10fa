"""Real image datasets read from a local folder: CIFAR-10/100 (python-pickle or binary) and image folders.

Nothing is downloaded. The user names a folder (``data_dir``, else the ``NORMLAB_DATA_DIR``
environment variable); a missing or malformed folder or file is a ValueError naming the path and
what was expected. CIFAR's python-pickle files are read with a restricted unpickler that builds
plain numpy arrays, lists, strings and numbers only: a pickle that names any other callable (the way
a pickle runs code) is refused before anything is called. Knows nothing of models, probes or the UI.
"""

from __future__ import annotations

import functools
import io
import os
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

DATA_DIR_ENV = "NORMLAB_DATA_DIR"
CIFAR_SIZE = 32
CIFAR_PIXELS = 3 * CIFAR_SIZE * CIFAR_SIZE  # 3072 bytes a record: 1024 red, 1024 green, 1024 blue
# The paper's preprocessing (its main.py): ToTensor (x / 255) then Normalize(mean=0.5, std=0.5) per channel.
MEAN = STD = 0.5
IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".ppm", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class CifarLayout:
    """Where one CIFAR version keeps its files, as the distributed archives unpack them."""

    folder: str  # the archive's top folder, e.g. cifar-10-batches-py
    train: tuple[str, ...]
    test: tuple[str, ...]
    meta: str  # class names (optional: numbered names without it)
    label_bytes: int = 0  # binary version: label bytes before the 3072 pixels (CIFAR-100: coarse, fine)


CIFAR_LAYOUTS: dict[str, dict[str, CifarLayout]] = {
    "cifar10": {
        "python": CifarLayout("cifar-10-batches-py", tuple(f"data_batch_{k}" for k in range(1, 6)),
                              ("test_batch",), "batches.meta"),
        "binary": CifarLayout("cifar-10-batches-bin", tuple(f"data_batch_{k}.bin" for k in range(1, 6)),
                              ("test_batch.bin",), "batches.meta.txt", label_bytes=1),
    },
    "cifar100": {
        "python": CifarLayout("cifar-100-python", ("train",), ("test",), "meta"),
        "binary": CifarLayout("cifar-100-binary", ("train.bin",), ("test.bin",), "fine_label_names.txt",
                              label_bytes=2),
    },
}
NUM_CLASSES = {"cifar10": 10, "cifar100": 100}
SPLITS = ("train", "test")


@dataclass(frozen=True)
class ImageSet:
    """Images held as bytes, with their labels; ``normalize`` turns a batch of them into network input."""

    images: torch.Tensor  # (N, 3, 32, 32) uint8, channels first
    labels: torch.Tensor  # (N,) int64 in [0, len(classes))
    classes: tuple[str, ...]
    source: str  # the folder the files came from

    def __len__(self) -> int:
        return len(self.labels)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (..., 3, H, W) -> float32 as torchvision's ToTensor + Normalize(0.5, 0.5): [-1, 1]."""
    return (images.float() / 255.0 - MEAN) / STD


# ---------------------------------------------------------------------------------------------
# Where the data lives


def resolve_data_dir(data_dir: str | os.PathLike | None, what: str) -> Path:
    """The folder to read ``what`` from: ``data_dir``, else $NORMLAB_DATA_DIR; it must exist."""
    given = data_dir if data_dir not in (None, "") else os.environ.get(DATA_DIR_ENV) or None
    if given is None:
        raise ValueError(f"{what} is read from a local folder: give data_dir (--data-dir DIR) or set "
                         f"{DATA_DIR_ENV}; nothing is downloaded")
    path = Path(given).expanduser()
    if not path.is_dir():
        raise ValueError(f"data_dir {str(path)!r} is not a folder; expected the folder that holds {what}")
    return path


def find_cifar(name: str, data_dir: str | os.PathLike | None) -> tuple[Path, CifarLayout]:
    """The folder and layout of CIFAR ``name`` under ``data_dir``: the archive's folder or the folder itself.

    The python-pickle version wins when both are present.
    """
    if name not in CIFAR_LAYOUTS:
        raise ValueError(f"Unknown CIFAR dataset {name!r}; expected one of {sorted(CIFAR_LAYOUTS)}")
    root = resolve_data_dir(data_dir, name)
    layouts = CIFAR_LAYOUTS[name].values()
    for layout in layouts:
        for folder in (root / layout.folder, root):
            if (folder / layout.train[0]).is_file() or (folder / layout.test[0]).is_file():
                return folder, layout
    expected = " or ".join(f"{lay.folder}/ ({', '.join(lay.train + lay.test)})" for lay in layouts)
    raise ValueError(f"no {name} files in {str(root)!r}; expected {expected}, in that folder or inside it")


# ---------------------------------------------------------------------------------------------
# Safe unpickling

# What a CIFAR python-pickle may name: numpy's array reconstruction, and latin-1 bytes; nothing else.
# The files were written by Python 2's cPickle: a dict of bytes keys, lists of ints and bytes, and one
# uint8 ndarray (numpy.core.multiarray._reconstruct, numpy.ndarray, numpy.dtype).
_RECONSTRUCT = np.zeros(1).__reduce__()[0]  # numpy.core / numpy._core .multiarray._reconstruct


def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as Python 3 pickles bytes at protocol 2 (how a re-saved CIFAR file stores
    its pixels); only the latin-1 codec, which maps text to bytes and does nothing else."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"_codecs.encode with {encoding!r} is not the latin-1 bytes form")
    return text.encode("latin1")


_ALLOWED = {
    ("_codecs", "encode"): _latin1_bytes,
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _ArrayUnpickler(pickle.Unpickler):
    """An unpickler that resolves only numpy's array and dtype reconstruction; any other global is refused."""

    def __init__(self, file, source: Path) -> None:
        super().__init__(file, encoding="bytes")
        self.source = source

    def find_class(self, module: str, name: str):
        allowed = _ALLOWED.get((module, name))
        if allowed is None:
            raise ValueError(f"{self.source}: refused to load: the pickle names {module}.{name}; a CIFAR "
                             f"file holds plain arrays and lists only (numpy.ndarray, numpy.dtype)")
        return allowed


def safe_unpickle(path: Path) -> object:
    """Load a pickle that may build numpy arrays and plain Python values only (:class:`_ArrayUnpickler`)."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ValueError(f"{path}: cannot read ({err.strerror or err})") from None
    try:
        return _ArrayUnpickler(io.BytesIO(data), path).load()
    except ValueError:
        raise
    except Exception as err:  # a truncated or foreign file: any unpickling error
        raise ValueError(f"{path}: not a CIFAR python-pickle file ({type(err).__name__}: {err})") from None


def _str_keys(obj: object, path: Path) -> dict[str, object]:
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a pickled dict; got {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def _names(values: object) -> tuple[str, ...]:
    return tuple(v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values)


# ---------------------------------------------------------------------------------------------
# CIFAR readers


def _check_labels(labels: np.ndarray, num_classes: int, n: int, path: Path) -> torch.Tensor:
    if labels.shape != (n,):
        raise ValueError(f"{path}: expected {n} labels, one per image; got shape {labels.shape}")
    if n and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{path}: labels must be in 0..{num_classes - 1}; "
                         f"got {labels.min()}..{labels.max()}")
    return torch.from_numpy(labels.astype(np.int64))


def _read_pickle_batch(path: Path, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    batch = _str_keys(safe_unpickle(path), path)
    key = "labels" if name == "cifar10" else "fine_labels"
    if "data" not in batch or key not in batch:
        raise ValueError(f"{path}: expected the keys 'data' and {key!r}; got {sorted(batch)}")
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or \
            data.shape[1] != CIFAR_PIXELS:
        shape = data.shape if isinstance(data, np.ndarray) else type(data).__name__
        dtype = f" {data.dtype}" if isinstance(data, np.ndarray) else ""
        raise ValueError(f"{path}: 'data' must be a uint8 array (N, {CIFAR_PIXELS}); got {shape}{dtype}")
    labels = np.asarray(batch[key])
    y = _check_labels(labels, NUM_CLASSES[name], len(data), path)
    return torch.from_numpy(data.reshape(-1, 3, CIFAR_SIZE, CIFAR_SIZE).copy()), y


def _read_binary_batch(path: Path, name: str, label_bytes: int) -> tuple[torch.Tensor, torch.Tensor]:
    record = label_bytes + CIFAR_PIXELS
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as err:
        raise ValueError(f"{path}: cannot read ({err.strerror or err})") from None
    if raw.size == 0 or raw.size % record:
        raise ValueError(f"{path}: {raw.size} bytes is not a whole number of {record}-byte records "
                         f"({label_bytes} label byte{'s' if label_bytes > 1 else ''} "
                         f"+ {CIFAR_PIXELS} pixels)")
    rows = raw.reshape(-1, record)
    # the last label byte: CIFAR-10's only one, CIFAR-100's fine label (after the coarse one)
    y = _check_labels(rows[:, label_bytes - 1], NUM_CLASSES[name], len(rows), path)
    return torch.from_numpy(rows[:, label_bytes:].reshape(-1, 3, CIFAR_SIZE, CIFAR_SIZE).copy()), y


def _class_names(folder: Path, layout: CifarLayout, name: str) -> tuple[str, ...]:
    path = folder / layout.meta
    n = NUM_CLASSES[name]
    if not path.is_file():
        return tuple(str(k) for k in range(n))
    if layout.label_bytes:
        lines = path.read_text("utf-8", "replace").splitlines()
        names = tuple(line.strip() for line in lines if line.strip())
    else:
        meta = _str_keys(safe_unpickle(path), path)
        names = _names(meta.get("label_names" if name == "cifar10" else "fine_label_names", ()))
    if len(names) != n:
        raise ValueError(f"{path}: expected {n} class names; got {len(names)}")
    return names


def _signature(files: Sequence[Path]) -> tuple:
    """What the cache keys on: a file changed on disk is read again."""
    return tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files)


def load_cifar(name: str, data_dir: str | os.PathLike | None = None, split: str = "train") -> ImageSet:
    """CIFAR-10 or CIFAR-100 (fine labels) from the distributed files under ``data_dir``.

    Args:
        name: ``cifar10`` or ``cifar100``.
        data_dir: the folder holding ``cifar-10-batches-py`` (or ``-bin``, ``cifar-100-python``,
            ``cifar-100-binary``), or that folder itself; None: $NORMLAB_DATA_DIR.
        split: ``train`` (50000 images) or ``test`` (10000).

    Returns:
        The images as uint8 (N, 3, 32, 32); :func:`normalize` makes them the paper's input.
        Cached per file set: treat the tensors as read-only.
    """
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; expected one of {SPLITS}")
    folder, layout = find_cifar(name, data_dir)
    files = [folder / f for f in (layout.train if split == "train" else layout.test)]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise ValueError(f"missing {name} file {missing[0]}; the {split} split needs "
                         f"{', '.join(f.name for f in files)} in {folder}")
    return _load_cifar(name, layout, split, _signature(files))


@functools.lru_cache(maxsize=2)
def _load_cifar(name: str, layout: CifarLayout, split: str, signature: tuple) -> ImageSet:
    files = [Path(s[0]) for s in signature]
    parts = [_read_binary_batch(f, name, layout.label_bytes) if layout.label_bytes else
             _read_pickle_batch(f, name) for f in files]
    images = torch.cat([p[0] for p in parts])  # (N, 3, 32, 32) uint8
    labels = torch.cat([p[1] for p in parts])  # (N,)
    return ImageSet(images, labels, _class_names(files[0].parent, layout, name), str(files[0].parent))


# ---------------------------------------------------------------------------------------------
# Image folders and single images


@dataclass(frozen=True)
class ImageFolder:
    """An ImageFolder layout (torchvision's): one sub-folder per class, images inside, read lazily."""

    root: str
    paths: tuple[str, ...]  # every image file, class by class, each sorted by name
    labels: tuple[int, ...]  # class index of each path
    classes: tuple[str, ...]  # the sub-folder names, sorted

    def __len__(self) -> int:
        return len(self.paths)


def list_image_folder(data_dir: str | os.PathLike | None) -> ImageFolder:
    """The image files of an ImageFolder tree; files of other types are skipped (not decoded yet)."""
    root = resolve_data_dir(data_dir, "an image folder")
    classes = tuple(sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")))
    if not classes:
        raise ValueError(f"{root}: expected one sub-folder per class holding images (ImageFolder layout); "
                         f"found no sub-folder")
    paths, labels = [], []
    for k, cls in enumerate(classes):
        for f in sorted((root / cls).iterdir()):
            if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS:
                paths.append(str(f))
                labels.append(k)
    if not paths:
        raise ValueError(f"{root}: no image files in its class sub-folders ({', '.join(classes)}); expected "
                         f"files ending in {', '.join(IMAGE_EXTENSIONS)}")
    return ImageFolder(str(root), tuple(paths), tuple(labels), classes)


def load_image(source: str | os.PathLike | bytes, size: int, name: str | None = None) -> torch.Tensor:
    """One image (a path or the file's bytes) as uint8 (3, size, size): RGB, scaled and centre-cropped.

    Pillow decodes it; ``ImageOps.fit`` scales the short side to ``size`` (bilinear, antialiased)
    and crops the centre square. An unreadable file, or one past Pillow's decompression-bomb
    limit, is a ValueError naming ``name`` (default: the path).
    """
    from PIL import Image, ImageOps

    label = name or (str(source) if not isinstance(source, bytes) else "the image")
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
            im = ImageOps.exif_transpose(im).convert("RGB")
            im = ImageOps.fit(im, (size, size), method=Image.Resampling.BILINEAR)
            pixels = np.asarray(im, dtype=np.uint8)  # (size, size, 3)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise ValueError(f"{label}: not an image Pillow can read ({type(err).__name__}: {err})") from None
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1).contiguous()


def load_images(sources: Sequence[str | os.PathLike | bytes], size: int,
                names: Sequence[str] | None = None) -> torch.Tensor:
    """Several images as uint8 (N, 3, size, size); see :func:`load_image`."""
    names = list(names) if names is not None else [None] * len(sources)
    if len(names) != len(sources):
        raise ValueError(f"names must match sources one to one; got {len(names)} and {len(sources)}")
    return torch.stack([load_image(s, size, n) for s, n in zip(sources, names, strict=True)])


__all__ = [
    "CIFAR_LAYOUTS",
    "DATA_DIR_ENV",
    "ImageFolder",
    "ImageSet",
    "find_cifar",
    "list_image_folder",
    "load_cifar",
    "load_image",
    "load_images",
    "normalize",
    "resolve_data_dir",
    "safe_unpickle",
]
