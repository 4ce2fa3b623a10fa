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
from normlab.data import make_inputs
from normlab.device import available_devices, resolve_device
from normlab.metrics import METRICS
from normlab.models import build_model
from normlab.norms import NORMALIZERS, create_norm, get_normalizer
from normlab.probes import FRAME_COLUMNS, KINDS, probe_module, run_probes, run_sweep, summarize
from normlab.theory import applies, gradient_theory, rank_theory, variance_theory
from normlab.training import (
    StudyConfig,
    StudyResult,
    TrainConfig,
    TrainResult,
    bootstrap_ci,
    run_study,
    run_training,
    spearman,
)

__version__ = "0.1.0"

__all__ = [
    "ARCHS",
    "FRAME_COLUMNS",
    "KINDS",
    "INPUTS",
    "METRICS",
    "NORMALIZERS",
    "NORM_NAMES",
    "PRESETS",
    "ModelConfig",
    "ProbeConfig",
    "StudyConfig",
    "StudyResult",
    "TrainConfig",
    "TrainResult",
    "applies",
    "available_devices",
    "bootstrap_ci",
    "build_model",
    "common_divisors",
    "config_from_dict",
    "create_norm",
    "get_normalizer",
    "gradient_theory",
    "make_inputs",
    "probe_module",
    "rank_theory",
    "resolve_device",
    "run_probes",
    "run_study",
    "run_sweep",
    "run_training",
    "spearman",
    "summarize",
    "variance_theory",
]
