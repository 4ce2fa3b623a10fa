"""Device choice: 'auto' takes CUDA, then Apple MPS, then the CPU; nothing here assumes a GPU."""

from __future__ import annotations

import torch

from normlab.config import DEVICES


def available_devices() -> list[str]:
    """The concrete devices this machine offers, best first; the CPU is always last."""
    found = []
    if torch.cuda.is_available():
        found.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    return [*found, "cpu"]


def resolve_device(name: str = "auto") -> torch.device:
    """The torch device for ``name``; asking for one that is absent raises a ValueError saying so."""
    if name not in DEVICES:
        raise ValueError(f"Unknown device {name!r}; expected one of {', '.join(map(repr, DEVICES))}")
    have = available_devices()
    if name == "auto":
        return torch.device(have[0])
    if name not in have:
        raise ValueError(
            f"device {name!r} is not available on this machine; available: {', '.join(have)} "
            f"(or 'auto')"
        )
    return torch.device(name)
