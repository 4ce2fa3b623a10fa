"""The result store: records keyed by frozen configs and the engine version, written atomically."""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

import pandas as pd
import pyarrow.dataset as ds
import pytest

from normlab import ModelConfig, ProbeConfig, run_probes
from normlab.ops import records
from normlab.ops import store as store_module
from normlab.ops.store import ResultStore, default_store, record_key


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return run_probes(ModelConfig(arch="mlp", norm="batchnorm", depth=3, width=8),
                      ProbeConfig(batch_size=4, image_size=8, seeds=2))


def test_a_record_reads_back_equal_to_the_frame_written(tmp_path, frame):
    store = ResultStore(tmp_path)
    key = record_key("probe", ModelConfig(arch="mlp", norm="batchnorm", depth=3, width=8), ProbeConfig())
    assert store.get("probe", key) is None
    store.put("probe", key, frame)
    pd.testing.assert_frame_equal(store.get("probe", key), frame)
    assert store.keys("probe") == {key}


def test_equal_configs_give_equal_keys_and_any_changed_field_another():
    model, probe = ModelConfig(arch="mlp", depth=3, width=8), ProbeConfig(batch_size=4)
    assert record_key("probe", model, probe) == record_key("probe", ModelConfig(arch="mlp", depth=3, width=8),
                                                           ProbeConfig(batch_size=4))
    others = {record_key("probe", ModelConfig(arch="mlp", depth=4, width=8), probe),
              record_key("probe", model, ProbeConfig(batch_size=8)),
              record_key("sweep", model, probe)}
    assert record_key("probe", model, probe) not in others and len(others) == 3


def test_a_record_of_another_engine_version_is_not_reused(tmp_path, frame, monkeypatch):
    store = ResultStore(tmp_path)
    model = ModelConfig(arch="mlp", depth=3, width=8)
    old = record_key("probe", model, engine_version="0.0.1")
    monkeypatch.setattr(store_module, "ENGINE_VERSION", "0.0.1")
    store.put("probe", old, frame)
    monkeypatch.undo()
    assert record_key("probe", model) != old
    assert store.get("probe", old) is None  # present on disk, but written by another version
    assert list(store.records("probe")) == []


def test_the_store_reads_as_one_hive_partitioned_dataset(tmp_path, frame):
    store = ResultStore(tmp_path)
    for depth in (3, 4):
        store.put("probe", record_key("probe", ModelConfig(arch="mlp", depth=depth, width=8)), frame)
    table = ds.dataset(tmp_path / "kind=probe", partitioning="hive").to_table()
    assert table.num_rows == 2 * len(frame) and "key" in table.column_names
    assert len(store.read("probe")) == 2 * len(frame)


def test_a_failed_write_leaves_no_file_behind(tmp_path, monkeypatch):
    store = ResultStore(tmp_path)
    key = record_key("probe", ModelConfig())

    def broken(table, where):
        open(where, "wb").write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr("pyarrow.parquet.write_table", broken)
    with pytest.raises(OSError, match="disk full"):
        store.put("probe", key, pd.DataFrame({"value": [1.0]}))
    assert not store.has("probe", key)
    assert [p.name for p in store.path("probe", key).parent.iterdir()] == []


@pytest.mark.parametrize("kind, key, message", [
    ("probe", "../../etc", "lowercase hex"),
    ("pro/be", "0" * 24, "record kind"),
])
def test_malformed_kinds_and_keys_are_refused(tmp_path, kind, key, message):
    with pytest.raises(ValueError, match=message):
        ResultStore(tmp_path).path(kind, key)


def test_the_default_store_follows_the_environment(tmp_path):
    assert default_store({"NORMLAB_STORE": "off"}) is None
    assert default_store({"NORMLAB_STORE": str(tmp_path)}).root == tmp_path
    assert default_store({}).root.name == "results"


# --- a folder this process may not write: said once, with the fix; then served from memory ---------------


@pytest.fixture
def unwritable(tmp_path, monkeypatch) -> Path:
    """A store folder that cannot be made even as root (its parent is a file), as the server user (uid
    1000) would meet a root-owned bind mount; every test starts as a fresh process for the warnings."""
    monkeypatch.setattr(store_module, "_problems", {})
    monkeypatch.setattr(store_module, "_said", set())
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    (tmp_path / "file").write_text("")
    return tmp_path / "file" / "results"


def store_log(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("normlab.ops")]


def test_an_unwritable_store_is_found_on_its_first_use_and_said_once_with_the_fix(unwritable, caplog, frame):
    store = ResultStore(unwritable)
    assert not store.writable()
    assert not ResultStore(unwritable).writable()  # another handle on the same folder: not said again
    model, probe = ModelConfig(arch="mlp", norm="batchnorm", depth=3, width=8), ProbeConfig(batch_size=4)
    for _ in range(3):
        records.save_probe(store, model, probe, frame)  # the dashboard's writes: nothing tried, nothing said
    (said,) = store_log(caplog)
    assert said.levelno == logging.WARNING and said.exc_info is None
    message = said.getMessage()
    assert message.startswith(f"the result store {unwritable} cannot be written (Not a directory): results "
                              f"are kept in this process's memory only")
    assert "It belongs to uid 0, and this process runs as uid 1000." in message
    assert f"docker run -v normlab-results:{unwritable}" in message and "chown -R 1000:1000" in message
    with pytest.raises(OSError):
        store.put("probe", record_key("probe", model, probe), frame)  # the API's own put still raises


def test_a_writable_store_says_nothing_and_leaves_no_trace_of_the_check(tmp_path, caplog):
    store = ResultStore(tmp_path / "results")
    assert store.writable() and store.write_problem() is None
    assert list((tmp_path / "results").iterdir()) == []
    assert store_log(caplog) == []


def test_a_write_refused_inside_a_writable_folder_is_said_once_and_not_tried_again(tmp_path, monkeypatch,
                                                                                 caplog, frame):
    monkeypatch.setattr(store_module, "_said", set())
    store = ResultStore(tmp_path)  # writable, but a folder in it is not (e.g. root-owned kind=probe/)
    calls = []

    def refuse(table, where):
        calls.append(where)
        raise PermissionError(errno.EACCES, "Permission denied", str(where))

    monkeypatch.setattr("pyarrow.parquet.write_table", refuse)
    model, probe = ModelConfig(arch="mlp", norm="batchnorm", depth=3, width=8), ProbeConfig(batch_size=4)
    for _ in range(3):
        records.save_probe(store, model, probe, frame)
    assert len(calls) == 1, "once refused, the store is not written again"
    (said,) = store_log(caplog)
    assert said.exc_info is None and "cannot be written (Permission denied)" in said.getMessage()


def test_a_read_refused_is_a_miss_said_once_without_a_traceback(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(store_module, "_said", set())

    def refuse(where, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(where))

    monkeypatch.setattr("pyarrow.parquet.read_table", refuse)
    store = ResultStore(tmp_path)
    model, probe = ModelConfig(arch="mlp", norm="none", depth=1, width=4), ProbeConfig(batch_size=4)
    assert [records.load_probe(store, model, probe) for _ in range(3)] == [None] * 3
    (said,) = store_log(caplog)
    assert said.exc_info is None


def test_the_dashboard_serves_from_memory_over_an_unwritable_store_with_one_line_in_its_log(
        unwritable, monkeypatch, caplog):
    from streamlit.testing.v1 import AppTest

    import ui.compute.cache

    monkeypatch.setenv("NORMLAB_STORE", str(unwritable))
    ui.compute.cache.clear()
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=300)
    at.run()  # the launcher's warm-up run: the default view, computed here since the store holds nothing
    assert not at.exception and not at.error
    assert at.get("plotly_chart"), "the page is drawn from what was computed"
    at.switch_page("pages/variance.py").run()
    assert not at.exception and not at.error
    (said,) = store_log(caplog)
    assert "cannot be written" in said.getMessage() and said.exc_info is None
    ui.compute.cache.clear()
