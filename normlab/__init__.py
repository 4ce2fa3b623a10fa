"""normlab: how normalization layers shape deep networks at initialization (Lubana et al. 2021).

The engine: configs, normalizers, models, probes and theory. It never imports the UI.
"""

from normlab.config import ARCHS, INPUTS, NORM_NAMES, PRESETS, ModelConfig, ProbeConfig
from normlab.device import available_devices, resolve_device
from normlab.models import build_model
from normlab.norms import NORMALIZERS, create_norm, get_normalizer

__version__ = "0.1.0"

__all__ = [
    "ARCHS",
    "NORMALIZERS",
    "INPUTS",
    "NORM_NAMES",
    "PRESETS",
    "ModelConfig",
    "ProbeConfig",
    "available_devices",
    "build_model",
    "create_norm",
    "get_normalizer",
    "resolve_device",
]
