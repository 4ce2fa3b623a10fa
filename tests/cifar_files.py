"""Writers of tiny files in the CIFAR distribution formats, and image folders, for the loader tests.

The python-pickle files are what Python 2's cPickle wrote: a dict with bytes keys, a uint8 array
(N, 3072) of red, green then blue planes, and plain lists of labels and names.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from normlab.science.datasets import CIFAR_LAYOUTS, NUM_CLASSES

PER_FILE = 4  # images in each tiny batch file


def tiny_images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 3072), dtype=np.uint8)


def tiny_split(name: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pixels (n, 3072), fine labels (n,), coarse labels (n,)), seeded."""
    rng = np.random.default_rng(seed + 1000)
    return tiny_images(n, seed), rng.integers(0, NUM_CLASSES[name], n), rng.integers(0, 20, n)


def _dump(path: Path, obj: dict) -> None:
    path.write_bytes(pickle.dumps(obj, protocol=2))


def write_cifar(root: Path, name: str, version: str, per_file: int = PER_FILE) -> dict[str, tuple]:
    """Write a tiny CIFAR-10/100 in ``version`` ('python' or 'binary') under ``root``; return its splits."""
    layout = CIFAR_LAYOUTS[name][version]
    folder = root / layout.folder
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, tuple] = {}
    for split, files in (("train", layout.train), ("test", layout.test)):
        parts = []
        for k, fname in enumerate(files):
            seed = k + (100 if split == "test" else 0)
            data, fine, coarse = tiny_split(name, per_file, seed)
            parts.append((data, fine))
            if version == "binary":
                labels = fine[:, None] if name == "cifar10" else np.stack([coarse, fine], 1)
                (folder / fname).write_bytes(np.concatenate([labels.astype(np.uint8), data], 1).tobytes())
            elif name == "cifar10":
                _dump(folder / fname, {b"batch_label": b"tiny", b"labels": fine.tolist(), b"data": data,
                                       b"filenames": [b"x.png"] * per_file})
            else:
                _dump(folder / fname, {b"fine_labels": fine.tolist(), b"coarse_labels": coarse.tolist(),
                                       b"data": data, b"filenames": [b"x.png"] * per_file})
        written[split] = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    names = [f"class{k}" for k in range(NUM_CLASSES[name])]
    if version == "binary":
        (folder / layout.meta).write_text("\n".join(names) + "\n")
    elif name == "cifar10":
        _dump(folder / layout.meta, {b"label_names": [n.encode() for n in names], b"num_vis": 3072})
    else:
        _dump(folder / layout.meta, {b"fine_label_names": [n.encode() for n in names],
                                     b"coarse_label_names": [b"c"] * 20})
    return written


def write_image_folder(root: Path, counts: dict[str, int], size: tuple[int, int] = (20, 12)) -> Path:
    """An ImageFolder tree: ``counts[class]`` PNG images of ``size`` (width, height) in each class folder."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls, n in counts.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for k in range(n):
            pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / cls / f"img{k}.png")
    return root
