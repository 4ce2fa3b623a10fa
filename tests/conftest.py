"""Shared test set-up: every test session gets its own result store, so no test writes into ~/.cache."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def _session_store(tmp_path_factory):
    """NORMLAB_STORE for the whole session: the dashboard's results persist across tests, not runs."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NORMLAB_STORE", str(tmp_path_factory.mktemp("store")))
        yield
