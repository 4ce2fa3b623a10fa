"""Shared test settings: every test gets its own empty result store, and a small stored sweep on request."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _private_store(tmp_path_factory, monkeypatch):
    # The CLI persists to NORMLAB_STORE by default: a shared folder would let one test resume another's.
    monkeypatch.setenv("NORMLAB_STORE", str(tmp_path_factory.mktemp("store")))
    monkeypatch.delenv("NORMLAB_EXPLORER_STORE", raising=False)


@pytest.fixture(scope="session")
def results_root(tmp_path_factory) -> Path:
    """A results store holding a small sweep (3 normalizers x 3 depths x 3 seeds) and a small study."""
    from normlab import ModelConfig, ProbeConfig, StudyConfig, TrainConfig, run_study, run_sweep
    from normlab.store import ResultStore

    root = tmp_path_factory.mktemp("results")
    store = ResultStore(root)
    run_sweep(ModelConfig(arch="mlp", width=8), ProbeConfig(batch_size=8, image_size=4, seeds=3),
              {"norm": ["batchnorm", "layernorm", "none"], "depth": [2, 4, 8]}, store=store)
    run_study(StudyConfig(archs=("mlp",), norms=("batchnorm", "layernorm"), seeds=2, width=4, cnn_depth=2,
                          k_steps=2, n_boot=10, train=TrainConfig(steps=4, batch_size=8, image_size=4,
                                                                  eval_every=2, probe_after=2)),
              store=store)
    return root


@pytest.fixture
def explorer_results(results_root, monkeypatch) -> Path:
    """The Sweep explorer opens the small stored sweep (the operator's NORMLAB_EXPLORER_STORE)."""
    monkeypatch.setenv("NORMLAB_EXPLORER_STORE", str(results_root))
    return results_root
