"""normlab: how normalization layers shape deep networks at initialization (Lubana et al. 2021).

The engine, in four layers, each a subpackage with one rule of dependency (core <- science <- ops <- cli):
``core`` (torch-free facts: the catalog, configs, the deadline), ``science`` (torch: normalizers,
models, the measurement, training, theory), ``ops`` (settings, cost, budget, serving, store, backends
and the guarded entry points) and ``cli``. It never imports the UI.

Names are loaded on first use (PEP 562 module ``__getattr__``), so ``import normlab``, the configs, the
catalog, the budget and the command line's ``--help`` and ``list`` start without importing torch;
``from normlab import run_probes`` loads the probes (and torch) only then.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# Public name -> the module that defines it (the layers: core <- science <- ops <- cli).
_HOMES = {
    "ARCHS": "core.config", "INPUTS": "core.config", "NORM_NAMES": "core.catalog", "PRESETS": "core.config",
    "ModelConfig": "core.config", "ProbeConfig": "core.config", "common_divisors": "core.config",
    "config_from_dict": "core.config",
    "METRICS": "core.catalog",
    "StudyConfig": "core.train_config", "TrainConfig": "core.train_config",
    "make_inputs": "science.data",
    "available_devices": "science.device", "resolve_device": "science.device",
    "build_model": "science.models",
    "NORMALIZERS": "science.norms", "create_norm": "science.norms", "get_normalizer": "science.norms",
    "FRAME_COLUMNS": "science.probes", "KINDS": "science.probes", "probe_module": "science.probes",
    "summarize": "science.probes",
    "applies": "science.theory", "gradient_theory": "science.theory", "rank_theory": "science.theory",
    "variance_theory": "science.theory",
    "StudyResult": "science.study", "bootstrap_ci": "science.study",
    "TrainResult": "science.training",
    "spearman": "science.summary",
    "run_probes": "ops.run", "run_sweep": "ops.run", "run_training": "ops.run", "run_study": "ops.run",
    "run_warmup_study": "ops.run", "WarmupStudyConfig": "core.train_config",
}
# The layers, reachable as attributes (``normlab.core``) before anyone imported them.
_SUBMODULES = {"core", "science", "ops", "cli"}

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
