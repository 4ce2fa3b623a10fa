"""normlab: how normalization layers shape deep networks at initialization (Lubana et al. 2021).

The engine: configs, normalizers, models, probes and theory. It never imports the UI.
"""

from normlab.config import (
    ARCHS,
    INPUTS,
    NORM_NAMES,
    PRESETS,
    ModelConfig,
    ProbeConfig,
    common_divisors,
    config_from_dict,
)
from normlab.device import available_devices, resolve_device
from normlab.metrics import METRICS
from normlab.models import build_model
from normlab.norms import NORMALIZERS, create_norm, get_normalizer
from normlab.probes import probe_module, run_probes, run_sweep, summarize

__version__ = "0.1.0"

__all__ = [
    "ARCHS",
    "INPUTS",
    "METRICS",
    "NORMALIZERS",
    "NORM_NAMES",
    "PRESETS",
    "ModelConfig",
    "ProbeConfig",
    "available_devices",
    "build_model",
    "common_divisors",
    "config_from_dict",
    "create_norm",
    "get_normalizer",
    "probe_module",
    "resolve_device",
    "run_probes",
    "run_sweep",
    "summarize",
]
