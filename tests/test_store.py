"""The result store: records keyed by frozen configs and the engine version, written atomically."""

from __future__ import annotations

import pandas as pd
import pyarrow.dataset as ds
import pytest

from normlab import ModelConfig, ProbeConfig, run_probes
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
