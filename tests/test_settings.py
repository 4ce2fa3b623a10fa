"""The server's limits follow the container it runs in: the cgroup's memory limit and CPU quota, v1 and v2.

Each test builds a fake cgroup tree in tmp_path (v2 files at its top, v1 files under a folder per
controller) and passes it as the cgroup root, so no test depends on the machine it runs on.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from normlab import ModelConfig, ProbeConfig
from normlab.ops import settings
from normlab.ops.budget import BudgetExceeded, check_budget
from normlab.ops.cost import estimate_cost
from normlab.ops.serving import gate_from_env
from normlab.ops.settings import (
    cgroup_cpus,
    cgroup_memory_mb,
    container_memory_mb,
    local_limits,
    max_concurrent,
    server_limits,
    torch_threads,
)

GIB = 2**30
V1_NO_LIMIT = "9223372036854771712"  # what cgroup v1 writes for an unlimited memory controller
# The link: ResNet-56 at batch 128, estimated ~1.6 GiB, under the default 2048 MiB.
RESNET56 = ModelConfig(preset="resnet56", norm="batchnorm"), ProbeConfig(batch_size=128, image_size=32)


def cgroup(root: Path, files: dict[str, str]) -> Path:
    """A fake cgroup file system under ``root``: each relative path written with its text."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    return root


@pytest.fixture(autouse=True)
def _fresh_process(monkeypatch):
    """Every test is a new process for the once-only warnings, and sees no operator setting."""
    monkeypatch.setattr(settings, "_said", set())
    for name in ("NORMLAB_MAX_MEMORY_MB", "NORMLAB_MAX_CONCURRENT", "NORMLAB_TORCH_THREADS"):
        monkeypatch.delenv(name, raising=False)


def warnings_of(caplog) -> list[str]:
    """The warnings normlab.ops.settings logged, in order."""
    return [r.getMessage() for r in caplog.records
            if r.name == settings.__name__ and r.levelno == logging.WARNING]


@pytest.mark.parametrize(("files", "expected"), [
    ({"memory.max": str(GIB)}, 1024.0),
    ({"memory.max": "max"}, None),
    ({"memory/memory.limit_in_bytes": str(GIB)}, 1024.0),
    ({"memory/memory.limit_in_bytes": V1_NO_LIMIT}, None),
    ({"memory/memory.limit_in_bytes": str(2**62)}, None),
    ({"memory.max": "garbage"}, None),
    ({}, None),
], ids=["v2", "v2-max", "v1", "v1-unlimited", "v1-huge", "malformed", "no-cgroup"])
def test_the_memory_limit_is_read_from_cgroup_v2_or_v1_and_huge_or_max_means_none(tmp_path, files, expected):
    assert cgroup_memory_mb(cgroup(tmp_path, files)) == expected


@pytest.mark.parametrize(("files", "expected"), [
    ({"cpu.max": "100000 100000"}, 1.0),
    ({"cpu.max": "150000 100000"}, 1.5),
    ({"cpu.max": "max 100000"}, None),
    ({"cpu/cpu.cfs_quota_us": "50000", "cpu/cpu.cfs_period_us": "100000"}, 0.5),
    ({"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"}, None),
    ({}, None),
], ids=["v2-one", "v2-one-and-a-half", "v2-max", "v1-half", "v1-unlimited", "no-cgroup"])
def test_the_cpu_quota_is_read_from_cgroup_v2_or_v1(tmp_path, files, expected):
    assert cgroup_cpus(cgroup(tmp_path, files)) == expected


@pytest.mark.parametrize(("limit_mib", "expected"), [
    (1024, 1024 - 256),  # 256 MiB for the server itself
    (4096, 4096 - 409.6),  # a tenth of a larger limit
    (400, 200),  # never more than half
])
def test_a_container_leaves_its_limit_less_a_headroom_to_the_computations(tmp_path, limit_mib, expected):
    root = cgroup(tmp_path, {"memory.max": str(limit_mib * 2**20)})
    assert container_memory_mb(root) == pytest.approx(expected)


def test_a_memory_limited_container_refuses_the_resnet56_link_by_name_instead_of_dying(tmp_path, caplog):
    root = cgroup(tmp_path, {"memory/memory.limit_in_bytes": str(GIB)})  # podman run --memory 1g, cgroup v1
    limits = server_limits({}, root)
    assert limits.max_memory_mb == 768 and limits.container_memory
    assert 768 < estimate_cost(*RESNET56).memory_mb < settings.Limits().max_memory_mb  # the default admits it
    with pytest.raises(BudgetExceeded, match=r"exceeds the memory this container allows, 768 MiB .*"
                                             r"NORMLAB_MAX_MEMORY_MB cannot raise it"):
        check_budget(*RESNET56, limits)
    assert warnings_of(caplog) == [
        "NORMLAB_MAX_MEMORY_MB's default 2048 is more than this container's memory allows: computations "
        "share at most 768 MiB, its memory limit 1,024 MiB less 256 MiB for the server itself (docker run "
        "--memory; the kernel would kill the whole server at the limit)."]


def test_an_operators_larger_memory_setting_is_lowered_with_one_warning_not_trusted(tmp_path, caplog):
    root = cgroup(tmp_path, {"memory.max": str(GIB)})
    environ = {"NORMLAB_MAX_MEMORY_MB": "4096"}
    for _ in range(3):  # the limits are read on every request; the log says it once
        assert server_limits(environ, root).max_memory_mb == 768
    (warning,) = warnings_of(caplog)
    assert warning.startswith("NORMLAB_MAX_MEMORY_MB=4096 is more than this container's memory allows")


def test_a_setting_within_the_container_is_kept_without_a_word(tmp_path, caplog):
    root = cgroup(tmp_path, {"memory.max": str(8 * GIB), "cpu.max": "400000 100000"})
    assert server_limits({"NORMLAB_MAX_MEMORY_MB": "512"}, root).max_memory_mb == 512
    limits = server_limits({}, root)
    assert limits.max_memory_mb == 2048 and not limits.container_memory
    assert warnings_of(caplog) == []


def test_outside_a_container_the_defaults_stand(tmp_path, caplog):
    root = cgroup(tmp_path, {"memory/memory.limit_in_bytes": V1_NO_LIMIT, "cpu/cpu.cfs_quota_us": "-1",
                             "cpu/cpu.cfs_period_us": "100000"})
    limits = server_limits({}, root)
    assert limits.max_memory_mb == 2048 and not limits.container_memory
    assert max_concurrent({}, root) == settings.DEFAULT_MAX_CONCURRENT
    assert warnings_of(caplog) == []


def test_a_container_too_small_for_the_server_says_every_computation_will_be_refused(tmp_path, caplog):
    root = cgroup(tmp_path, {"memory.max": str(512 * 2**20)})
    assert server_limits({}, root).max_memory_mb == 256
    (warning,) = warnings_of(caplog)
    assert "every computation will be refused; give the container --memory 1g or more" in warning


@pytest.mark.parametrize("files", [
    {"cpu.max": "100000 100000"},
    {"cpu/cpu.cfs_quota_us": "100000", "cpu/cpu.cfs_period_us": "100000"},
], ids=["v2", "v1"])
def test_a_cpu_quota_caps_the_slots_and_threads(tmp_path, caplog, files):
    root = cgroup(tmp_path, files)  # docker run --cpus 1
    assert max_concurrent({}, root) == 1  # the default 2 lowered
    assert max_concurrent({"NORMLAB_MAX_CONCURRENT": "4"}, root) == 1
    assert torch_threads(1, {}, root) == 1
    assert torch_threads(1, {"NORMLAB_TORCH_THREADS": "8"}, root) == 1
    assert server_limits({}, root).threads == 1
    assert warnings_of(caplog) == [
        "NORMLAB_MAX_CONCURRENT's default 2 is more than this container's CPU quota, 1 CPU (docker run "
        "--cpus): 1 computation at a time",
        "NORMLAB_MAX_CONCURRENT=4 is more than this container's CPU quota, 1 CPU (docker run --cpus): "
        "1 computation at a time",
        "NORMLAB_TORCH_THREADS=8 is more than this container's CPU quota, 1 CPU (docker run --cpus): "
        "1 thread per computation"]


def test_a_fractional_quota_rounds_up_to_whole_cpus(tmp_path):
    root = cgroup(tmp_path, {"cpu.max": "150000 100000"})  # --cpus 1.5
    assert max_concurrent({"NORMLAB_MAX_CONCURRENT": "8"}, root) == 2
    assert settings.available_cpus(root) <= 2


def test_the_gate_shares_the_containers_memory_not_the_default(tmp_path, monkeypatch):
    root = cgroup(tmp_path, {"memory.max": str(GIB)})
    monkeypatch.setattr(settings, "CGROUP_ROOT", root)  # the gate reads the process's own cgroup
    assert gate_from_env({}).memory_mb == 768


def test_the_command_line_in_a_container_is_bounded_by_the_container_not_the_hosts_free_memory(tmp_path,
                                                                                             monkeypatch):
    monkeypatch.setattr(settings, "machine_memory_mb", lambda: 20_000.0)  # MemAvailable: the host's
    root = cgroup(tmp_path, {"memory.max": str(GIB)})
    limits = local_limits({}, root)
    assert limits.max_memory_mb == 768 and limits.container_memory and not limits.machine_memory
    with pytest.raises(BudgetExceeded, match="exceeds the memory this container allows"):
        check_budget(*RESNET56, limits)


# --- in the server: said once, at its first run (the launcher's warm-up, before any visitor) --------------


def test_the_server_says_once_in_its_log_that_the_container_lowered_its_limits(tmp_path, monkeypatch, caplog):
    from streamlit.testing.v1 import AppTest

    root = cgroup(tmp_path, {"memory.max": str(GIB), "cpu.max": "100000 100000"})
    monkeypatch.setattr(settings, "CGROUP_ROOT", root)
    monkeypatch.setenv("NORMLAB_MAX_MEMORY_MB", "4096")
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=300)
    at.run()  # the first run says it: the sidebar's cost caption reads the limits
    assert not at.exception
    at.run()
    said = warnings_of(caplog)
    assert len(said) == 2 and len(set(said)) == 2  # memory and slots, once each over both runs
    assert said[0].startswith("NORMLAB_MAX_MEMORY_MB=4096 is more than this container's memory allows")
    assert said[1].startswith("NORMLAB_MAX_CONCURRENT's default 2 is more than this container's CPU quota")
