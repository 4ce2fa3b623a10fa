"""normlab: how normalization layers shape deep networks at initialization (Lubana et al. 2021).

The engine: configs, normalizers, models, probes and theory. It never imports the UI.

Names are loaded on first use (PEP 562 module ``__getattr__``), so ``import normlab``, the configs, the
catalog, the budget and the command line's ``--help`` and ``list`` start without importing torch;
``from normlab import run_probes`` loads the probes (and torch) only then.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# Public name -> the module that defines it.
_HOMES = {
    "ARCHS": "config", "INPUTS": "config", "NORM_NAMES": "config", "PRESETS": "config",
    "ModelConfig": "config", "ProbeConfig": "config", "common_divisors": "config",
    "config_from_dict": "config",
    "METRICS": "catalog",
    "make_inputs": "data",
    "available_devices": "device", "resolve_device": "device",
    "build_model": "models",
    "NORMALIZERS": "norms", "create_norm": "norms", "get_normalizer": "norms",
    "FRAME_COLUMNS": "probes", "KINDS": "probes", "probe_module": "probes", "run_probes": "probes",
    "run_sweep": "probes", "summarize": "probes",
    "applies": "theory", "gradient_theory": "theory", "rank_theory": "theory", "variance_theory": "theory",
    "StudyConfig": "training", "StudyResult": "training", "TrainConfig": "training",
    "TrainResult": "training", "bootstrap_ci": "training", "run_study": "training",
    "run_training": "training",
    "spearman": "summary",
}
# Submodules reachable as attributes (``normlab.catalog``) before anyone imported them.
_SUBMODULES = {"budget", "catalog", "cli", "cli_train", "config", "data", "device", "hooks", "metrics",
               "models", "norms", "output", "probes", "serving", "summary", "theory", "training"}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name in _HOMES:
        value = getattr(importlib.import_module(f"normlab.{_HOMES[name]}"), name)
        globals()[name] = value  # later lookups skip this function
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"normlab.{name}")
    raise AttributeError(f"module 'normlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES) | _SUBMODULES)
