"""Device choice: 'auto' takes CUDA, then Apple MPS, then the CPU; nothing here assumes a GPU."""

from __future__ import annotations

import warnings

import torch

from normlab.core.config import DEVICES, check_choice


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
    check_choice("device", name, DEVICES)
    have = available_devices()
    if name == "auto":
        return torch.device(have[0])
    if name not in have:
        raise ValueError(
            f"device {name!r} is not available on this machine; available: {', '.join(have)} "
            f"(or 'auto')"
        )
    return torch.device(name)


def cuda_synchronizations(fn) -> int:
    """How many synchronizing CUDA calls ``fn()`` makes, counted with torch's sync debug mode.

    Call ``fn`` once beforehand to warm the allocator and library handles, or they count too.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)
