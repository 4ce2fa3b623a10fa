"""Fixtures shared by the test files: an empty result store for every test (so no test writes into
~/.cache or resumes another's points), a small stored sweep and study, and a toy normalizer registered
for the length of one test. Plain helpers are in helpers.py (imported by the tests that need them:
it brings plotly and Streamlit, which a machine running the engine's tests alone may not have)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

TOY = "toy"  # the toy normalizer of the toy_normalizer fixture


@pytest.fixture(autouse=True)
def _private_store(tmp_path_factory, monkeypatch):
    # The CLI persists to NORMLAB_STORE by default: a shared folder would let one test resume another's.
    monkeypatch.setenv("NORMLAB_STORE", str(tmp_path_factory.mktemp("store")))
    monkeypatch.delenv("NORMLAB_EXPLORER_STORE", raising=False)


@pytest.fixture(scope="session")
def results_root(tmp_path_factory) -> Path:
    """A results store holding a small sweep (3 normalizers x 3 depths x 3 seeds) and a small study."""
    from normlab import ModelConfig, ProbeConfig, StudyConfig, TrainConfig, run_study, run_sweep
    from normlab.ops.store import ResultStore

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


# --- A toy normalizer, registered in the catalog and the registry alone ------------------------------------

@pytest.fixture
def toy_normalizer():
    """A normalizer that exists only during the test: a catalog entry and a factory, nothing else.

    Its norm slot scales by 1/2 (a fixed, data-independent layer) and its activation is a ReLU. Every
    other module (config, theory, budget, CLI, pages) must take it from these two tables.
    """
    import torch
    from torch import nn

    from normlab.core import catalog
    from normlab.science import norms

    class Half(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 0.5 * x

    catalog.register(catalog.NormInfo(TOY, "Toy half-scale", "norm", saved_per_unit=2))
    norms.NORMALIZERS[TOY] = norms.Normalizer(TOY, lambda c, *, groups=None: Half(),
                                              lambda c, *, groups=None: nn.ReLU())
    try:
        yield TOY
    finally:
        norms.NORMALIZERS.pop(TOY, None)
        catalog.unregister(TOY)


# The browser tests' Debian Chromium (never a browser download), one per test module.
@pytest.fixture(scope="module")
def chromium_path() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium); no browser is downloaded")
    return path


@pytest.fixture(scope="module")
def browser(chromium_path):
    playwright = pytest.importorskip("playwright.sync_api")
    from ui.server import CHROMIUM_ARGS  # the dashboard's flags; the engine's tests never import the UI

    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
