"""The Ray backend gives the local backend's frames, resumes; without Ray: a clear message."""

from __future__ import annotations

import builtins
import os

import pandas as pd
import pytest
import torch

from normlab import ModelConfig, ProbeConfig, StudyConfig, TrainConfig, run_study, run_sweep
from normlab.cli import main
from normlab.ops.backends import check_backend, import_ray, start_ray, task_resources
from normlab.ops.store import ResultStore

MODEL = ModelConfig(arch="cnn", depth=2, width=8)
PROBE = ProbeConfig(batch_size=4, image_size=6, seeds=2)
OVER = {"norm": ["batchnorm", "groupnorm", "layernorm"], "depth": [1, 3]}
STUDY = StudyConfig(archs=("cnn",), norms=("batchnorm", "groupnorm"), groups=(2,), seeds=2, width=4,
                    cnn_depth=2, k_steps=4, n_boot=20,
                    train=TrainConfig(steps=8, batch_size=8, image_size=6, eval_every=4, probe_after=4))


@pytest.fixture
def without_ray(monkeypatch):
    real = builtins.__import__

    def refuse(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError(f"No module named {name!r}")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", refuse)


def test_asking_for_ray_without_it_says_what_to_install(without_ray):
    with pytest.raises(ValueError, match=r"needs Ray.*pip install 'normlab\[ray\]'.*requirements-ray.txt"):
        import_ray()
    with pytest.raises(ValueError, match=r"normlab\[ray\]"):
        run_sweep(MODEL, PROBE, {"depth": [1]}, backend="ray")


def test_the_cli_says_what_to_install_before_running_anything(without_ray, capsys, tmp_path):
    code = main(["sweep", "--over", "depth=1,2", "--backend", "ray", "--store", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "normlab[ray]" in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("backend, address, message", [
    ("dask", None, r"Unknown backend 'dask'; expected one of 'local', 'ray'"),
    ("local", "ray://head:10001", r"address 'ray://head:10001' is for the 'ray' backend"),
    ("ray", " ", r"address must be a Ray cluster address"),
])
def test_bad_backends_and_addresses_are_refused_by_name(backend, address, message):
    with pytest.raises(ValueError, match=message):
        check_backend(backend, address)
    with pytest.raises(ValueError, match=message):
        run_sweep(MODEL, PROBE, {"depth": [1]}, backend=backend, address=address)


def test_a_store_that_is_not_a_result_store_is_refused():
    with pytest.raises(ValueError, match="store must be a normlab ResultStore"):
        run_sweep(MODEL, PROBE, {"depth": [1]}, store="/tmp/somewhere")


@pytest.mark.parametrize("device, gpus, asks", [
    ("cuda", False, {"num_gpus": 1, "num_cpus": 0}),
    ("auto", True, {"num_gpus": 1, "num_cpus": 0}),
    ("auto", False, {"num_cpus": 1}),
    ("cpu", True, {"num_cpus": 1}),
    ("mps", False, {"num_cpus": 1}),
])
def test_a_point_asks_ray_for_a_gpu_only_when_it_runs_on_cuda(device, gpus, asks):
    assert task_resources(device, gpus) == asks


# --- with a local Ray of two CPUs ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray", reason="the Ray tests need Ray: pip install -r requirements-ray.txt")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    start_ray(num_cpus=2)
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture
def one_thread():
    """The local side of a comparison at the Ray tasks' one torch thread (more threads reorder sums)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.ray
def test_a_sweep_on_ray_equals_the_local_sweep_with_progress_per_point(ray_cluster, one_thread):
    assert ray_cluster.cluster_resources()["CPU"] == 2
    local = run_sweep(MODEL, PROBE, OVER)
    calls = []
    remote = run_sweep(MODEL, PROBE, OVER, backend="ray", progress=lambda *a: calls.append(a))
    pd.testing.assert_frame_equal(remote, local, check_exact=True)
    total = 6 * PROBE.seeds
    assert [done for done, _, _ in calls] == list(range(PROBE.seeds, total + 1, PROBE.seeds))
    assert {t for _, t, _ in calls} == {total}
    # every point reported once, by its sweep values and its network
    assert sorted(label.split(" (")[0] for _, _, label in calls) == sorted(
        f"norm={n}, depth={d}" for n in OVER["norm"] for d in OVER["depth"])


@pytest.mark.ray
def test_a_study_on_ray_equals_the_local_study(ray_cluster, one_thread):
    local, remote = run_study(STUDY), run_study(STUDY, backend="ray")
    assert len(remote.runs) == len(STUDY.runs()) and not remote.stopped
    for name in ("runs", "curves", "correlations"):
        pd.testing.assert_frame_equal(getattr(remote, name).drop(columns="seconds", errors="ignore"),
                                      getattr(local, name).drop(columns="seconds", errors="ignore"),
                                      check_exact=True)


class Crash(Exception):
    pass


@pytest.mark.ray
def test_a_ray_sweep_killed_half_way_resumes_and_ends_with_the_same_frame(ray_cluster, one_thread,
                                                                         tmp_path):
    store = ResultStore(tmp_path)

    def crash(done, total, label):
        if done >= 3 * PROBE.seeds:
            raise Crash(label)

    with pytest.raises(Crash):
        run_sweep(MODEL, PROBE, OVER, backend="ray", progress=crash, store=store)
    kept = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("part-0.parquet")}
    assert len(kept) == 3  # written as they finished; the rest were cancelled
    calls = []
    frame = run_sweep(MODEL, PROBE, OVER, backend="ray", store=store, progress=lambda *a: calls.append(a))
    assert calls[0][2] == "3 of 6 points found in the store" and len(calls) == 1 + 3  # only the rest ran
    pd.testing.assert_frame_equal(frame, run_sweep(MODEL, PROBE, OVER), check_exact=True)
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())


@pytest.mark.ray
def test_the_cli_runs_a_sweep_on_ray(ray_cluster, one_thread, capsys):
    argv = ["sweep", "--arch", "mlp", "--depth", "1", "--width", "4", "--batch-size", "2",
            "--image-size", "4", "--over", "norm=batchnorm,layernorm", "--store", "off"]
    assert main([*argv, "--backend", "ray"]) == 0
    remote = capsys.readouterr()
    assert main(argv) == 0
    assert remote.out == capsys.readouterr().out
    assert remote.err.splitlines()[-1].startswith("sweep 2/2: ")
