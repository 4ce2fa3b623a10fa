"""The serving gate: at most K computations at once, a fair queue with a visible place, shared results."""

import re
import threading
import time

import pytest

from normlab.ops import serving, settings
from normlab.ops.serving import Gate, QueueStatus, QueueTimeout, gate_from_env
from normlab.ops.settings import torch_threads


def _wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting for the gate"
        time.sleep(0.005)


def _start(target, *args):
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


class Holder:
    """Holds one slot of a gate until released: a computation that takes as long as the test wants."""

    def __init__(self, gate: Gate, key="holder") -> None:
        self.release = threading.Event()
        self.thread = _start(gate.compute, key, self.release.wait)
        _wait_until(lambda: gate.running >= 1)


def test_no_more_than_k_computations_run_at_once():
    gate = Gate(max_concurrent=2, queue_timeout=30)
    lock, active, peak, results = threading.Lock(), [0], [0], {}

    def work(i):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.03)
        with lock:
            active[0] -= 1
        return i * i

    def caller(i):
        results[i] = gate.compute(("probe", i), lambda: work(i))

    threads = [_start(caller, i) for i in range(8)]
    for t in threads:
        t.join(10)
    assert results == {i: i * i for i in range(8)}
    assert peak[0] == 2 and gate.peak_running == 2
    assert gate.running == 0 and gate.waiting == 0


def test_identical_keys_are_computed_once_and_shared():
    gate = Gate(max_concurrent=2, queue_timeout=30)
    calls, results = [], []
    barrier = threading.Barrier(6)

    def slow():
        calls.append(1)
        time.sleep(0.2)
        return {"frame": object()}

    def caller():
        barrier.wait()
        results.append(gate.compute(("probe", "same config"), slow))

    threads = [_start(caller) for _ in range(6)]
    for t in threads:
        t.join(10)
    assert len(calls) == 1
    assert len(results) == 6 and all(r is results[0] for r in results)
    # once finished, the key is free again: a later call computes afresh (caching is the caller's job)
    gate.compute(("probe", "same config"), slow)
    assert len(calls) == 2


def test_waiting_past_the_timeout_is_refused_with_a_plain_message():
    gate = Gate(max_concurrent=1, queue_timeout=0.2)
    holder = Holder(gate)
    start = time.monotonic()
    with pytest.raises(QueueTimeout, match=r"^the server is busy: waited 0 s for one of 1 compute slots "
                                           r"\(1 computing, 0 more waiting\)\. Try again in a minute"):
        gate.compute("late", lambda: "never")
    assert 0.2 <= time.monotonic() - start < 2
    holder.release.set()
    holder.thread.join(5)
    assert gate.compute("late", lambda: "now") == "now"  # the refused caller left no slot taken
    assert gate.waiting == 0 and gate.running == 0


def test_callers_wait_in_arrival_order_and_are_told_their_place():
    gate = Gate(max_concurrent=1, queue_timeout=30)
    holder = Holder(gate)
    seen: dict[str, list[QueueStatus]] = {name: [] for name in "abc"}
    order = []

    def caller(name):
        gate.compute(name, lambda: order.append(name), on_wait=seen[name].append)

    threads = []
    for k, name in enumerate("abc", start=1):
        threads.append(_start(caller, name))
        _wait_until(lambda k=k: gate.waiting == k)
    _wait_until(lambda: all(seen[n] for n in "abc"))
    assert [seen[n][0].position for n in "abc"] == [1, 2, 3]
    assert seen["c"][0].message.startswith("queued, position 3 of 3 (1 of 1 probes computing; waited")
    holder.release.set()
    for t in threads:
        t.join(5)
    assert order == ["a", "b", "c"]
    # places only move forward, and each caller hears once that its computation started
    for name in "abc":
        queued = [s.position for s in seen[name] if s.state == "queued"]
        assert queued == sorted(queued, reverse=True)
        assert [s.state for s in seen[name]].count("running") == 1
        assert seen[name][-1].message == "computing"


def test_a_shared_caller_sees_the_place_of_the_computation_it_waits_for():
    gate = Gate(max_concurrent=1, queue_timeout=30)
    holder = Holder(gate)
    leader = _start(gate.compute, "k", lambda: 42)
    _wait_until(lambda: gate.waiting == 1)
    statuses, result = [], []
    follower = _start(lambda: result.append(gate.compute("k", lambda: -1, on_wait=statuses.append)))
    _wait_until(lambda: statuses)
    assert statuses[0].state == "shared" and statuses[0].position == 1
    assert "an identical probe is queued at position 1; its result will be shared" in statuses[0].message
    holder.release.set()
    for t in (leader, follower):
        t.join(5)
    assert result == [42]


def test_an_error_is_shared_with_identical_callers_and_not_remembered():
    gate = Gate(max_concurrent=2, queue_timeout=30)
    barrier = threading.Barrier(3)
    errors, calls = [], []

    def bad():
        calls.append(1)
        time.sleep(0.1)
        raise ValueError("width 4096 exceeds NORMLAB_MAX_WIDTH=1024 by 4x")

    def caller():
        barrier.wait()
        try:
            gate.compute("bad", bad)
        except ValueError as err:
            errors.append(str(err))

    threads = [_start(caller) for _ in range(3)]
    for t in threads:
        t.join(5)
    assert len(calls) == 1
    assert errors == ["width 4096 exceeds NORMLAB_MAX_WIDTH=1024 by 4x"] * 3
    with pytest.raises(ValueError):
        gate.compute("bad", bad)
    assert len(calls) == 2


class Stopped(BaseException):
    """Like Streamlit's StopException: a session going away, not a failure of the computation."""


def test_when_the_waiting_leader_goes_away_an_identical_caller_computes_instead():
    gate = Gate(max_concurrent=1, queue_timeout=30)
    holder = Holder(gate)
    leave = threading.Event()
    calls = []

    def leaving_leader():
        def on_wait(status):
            if leave.is_set():
                raise Stopped

        with pytest.raises(Stopped):
            gate.compute("k", lambda: calls.append("leader"), on_wait=on_wait)

    leader = _start(leaving_leader)
    _wait_until(lambda: gate.waiting == 1)
    result = []
    follower = _start(lambda: result.append(gate.compute("k", lambda: calls.append("follower") or "ok")))
    time.sleep(0.05)
    leave.set()
    leader.join(5)
    _wait_until(lambda: gate.waiting == 1)  # the follower takes the leader's place in the queue
    holder.release.set()
    follower.join(5)
    assert result == ["ok"] and calls == ["follower"]
    assert gate.running == 0 and gate.waiting == 0


def test_a_caller_that_leaves_the_queue_frees_its_place():
    gate = Gate(max_concurrent=1, queue_timeout=30)
    holder = Holder(gate)

    def on_wait(status):
        raise Stopped

    with pytest.raises(Stopped):
        gate.compute("gone", lambda: None, on_wait=on_wait)
    assert gate.waiting == 0
    holder.release.set()
    holder.thread.join(5)
    assert gate.running == 0


@pytest.mark.parametrize(("k", "timeout"), [(0, 1), (-1, 1), (1.5, 1), (True, 1), (1, 0), (1, -2)])
def test_a_gate_refuses_nonsense_settings(k, timeout):
    with pytest.raises(ValueError, match="max_concurrent|queue_timeout"):
        Gate(k, timeout)


def test_settings_come_from_the_documented_environment_variables():
    gate = gate_from_env({"NORMLAB_MAX_CONCURRENT": "3", "NORMLAB_QUEUE_TIMEOUT": "7.5"})
    assert (gate.max_concurrent, gate.queue_timeout) == (3, 7.5)
    default = gate_from_env({})
    assert (default.max_concurrent, default.queue_timeout) == (2, 120.0)
    with pytest.raises(ValueError, match="NORMLAB_MAX_CONCURRENT must be a positive whole number; got 'two'"):
        gate_from_env({"NORMLAB_MAX_CONCURRENT": "two"})
    with pytest.raises(ValueError, match="NORMLAB_QUEUE_TIMEOUT must be a positive number; got '-1'"):
        gate_from_env({"NORMLAB_QUEUE_TIMEOUT": "-1"})


def test_torch_threads_share_the_machine_among_the_slots(monkeypatch):
    monkeypatch.setattr(settings, "available_cpus", lambda cgroup_root=None: 8)
    assert torch_threads(2, {}) == 4
    assert torch_threads(3, {}) == 2
    assert torch_threads(16, {}) == 1
    assert torch_threads(2, {"NORMLAB_TORCH_THREADS": "3"}) == 3


def test_the_default_gate_is_made_once_from_the_environment_and_sets_torchs_threads(monkeypatch):
    import torch

    monkeypatch.setattr(serving, "_default_gate", None)
    monkeypatch.setenv("NORMLAB_MAX_CONCURRENT", "3")
    monkeypatch.setenv("NORMLAB_TORCH_THREADS", "1")
    before = torch.get_num_threads()
    try:
        gate = serving.default_gate()
        assert gate is serving.default_gate() and gate.max_concurrent == 3
        assert torch.get_num_threads() == 1
        assert serving.compute("k", lambda: "value") == "value"
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------------------------------------
# The dashboard's use: the gate inside st.cache_data, the queued status in a placeholder made there


def _cached_app():
    import streamlit as st

    from normlab.ops import serving

    @st.cache_data(show_spinner=False)
    def probe(width: int) -> int:
        status = st.empty()  # made inside: replayed as an empty slot on a cache hit
        try:
            return serving.compute(("probe", width), lambda: width * 2,
                                   on_wait=lambda s: status.info(s.message))
        finally:
            status.empty()

    st.write(f"result {probe(int(st.query_params.get('width', 8)))}")


def test_a_queued_status_inside_a_cached_function_replays_without_error(monkeypatch):
    from streamlit.testing.v1 import AppTest

    gate = Gate(max_concurrent=1, queue_timeout=30)
    monkeypatch.setattr(serving, "_default_gate", gate)
    holder = Holder(gate)
    app = AppTest.from_function(_cached_app, default_timeout=20)
    app.query_params["width"] = "21"
    runner = _start(app.run)
    _wait_until(lambda: gate.waiting == 1)  # the script waits in the queue, showing its place
    holder.release.set()
    runner.join(20)
    assert not app.exception
    assert [m.value for m in app.markdown] == ["result 42"]
    assert not app.info  # the status is gone once the result is there
    app.run()  # a cache hit replays the recorded status messages
    assert not app.exception
    assert [m.value for m in app.markdown] == ["result 42"] and not app.info


# ---------------------------------------------------------------------------------------------
# Operator settings out of range, and a huge timeout


@pytest.mark.parametrize(("name", "raw", "allowed"), [
    ("NORMLAB_QUEUE_TIMEOUT", "1e10", "between 0 (exclusive) and 86400"),
    ("NORMLAB_MAX_CONCURRENT", "100000", "between 1 and 256"),
    ("NORMLAB_TORCH_THREADS", "1099511627776", "between 1 and 1024"),
    ("NORMLAB_HARD_SECONDS", "-5", "positive number"),
])
def test_an_absurd_operator_setting_is_refused_by_name_with_its_range(name, raw, allowed):
    with pytest.raises(ValueError, match=rf"{name} must be .*{re.escape(allowed)}.*got '{raw}'"):
        gate_from_env({name: raw})
        torch_threads(2, {name: raw})


def test_a_huge_queue_timeout_lets_a_caller_without_on_wait_wait_without_error():
    gate = Gate(max_concurrent=1, queue_timeout=1e10)  # Condition.wait(1e10) raises OverflowError
    holder = Holder(gate)
    result, errors = [], []

    def caller():
        try:
            result.append(gate.compute("second", lambda: "done"))
        except Exception as err:  # noqa: BLE001 - the test reports any error
            errors.append(err)

    second = _start(caller)
    _wait_until(lambda: gate.waiting == 1)
    time.sleep(0.1)
    assert second.is_alive() and not errors  # still waiting, nothing raised
    holder.release.set()
    second.join(5)
    assert result == ["done"] and not errors


def test_the_gate_takes_its_hard_stop_from_the_server_limits():
    assert gate_from_env({}).hard_seconds == 240.0
    assert gate_from_env({"NORMLAB_HARD_SECONDS": "9"}).hard_seconds == 9.0


class MemoryHolder:
    """A computation with an estimated memory that holds its slot until released."""

    def __init__(self, gate: Gate, key, memory_mb: float, started: list) -> None:
        self.release = threading.Event()

        def work():
            started.append(key)
            self.release.wait(10)
            return key

        self.thread = _start(gate.compute, key, work, None, memory_mb)


def test_a_computation_starts_only_when_its_memory_fits_beside_the_running_ones():
    # 1,000 MiB for the process, 100 of it its base: 500 + 400 fit together, a further 100 does not
    gate = Gate(max_concurrent=4, queue_timeout=30, memory_mb=1000, base_mb=100)
    started: list = []
    a = MemoryHolder(gate, "a", 600, started)
    _wait_until(lambda: started == ["a"])
    b = MemoryHolder(gate, "b", 500, started)
    _wait_until(lambda: started == ["a", "b"])
    c = MemoryHolder(gate, "c", 200, started)
    _wait_until(lambda: gate.waiting == 1)
    time.sleep(0.1)
    assert started == ["a", "b"] and gate.running == 2  # a slot is free, the memory is not
    a.release.set()
    _wait_until(lambda: started == ["a", "b", "c"])
    assert gate.peak_reserved_mb == 1000
    b.release.set()
    c.release.set()
    for holder in (a, b, c):
        holder.thread.join(5)
    assert gate.running == 0 and gate.waiting == 0 and gate._reserved == 0


def test_a_large_request_at_the_front_is_not_overtaken_by_small_ones():
    gate = Gate(max_concurrent=4, queue_timeout=30, memory_mb=1000, base_mb=100)
    started: list = []
    a = MemoryHolder(gate, "a", 500, started)
    _wait_until(lambda: started == ["a"])
    big = MemoryHolder(gate, "big", 900, started)  # needs the memory a holds
    _wait_until(lambda: gate.waiting == 1)
    small = MemoryHolder(gate, "small", 150, started)  # would fit now, but arrived later
    _wait_until(lambda: gate.waiting == 2)
    time.sleep(0.1)
    assert started == ["a"]
    a.release.set()
    _wait_until(lambda: len(started) == 3)
    assert set(started[1:]) == {"big", "small"}  # granted together, in order: 100 + 800 + 50 fit
    big.release.set()
    small.release.set()
    for holder in (a, big, small):
        holder.thread.join(5)


def test_a_computation_larger_than_the_limit_still_runs_alone():
    gate = Gate(max_concurrent=2, queue_timeout=30, memory_mb=500, base_mb=100)
    assert gate.compute("huge", lambda: "ran", memory_mb=5000) == "ran"  # the budget refuses these first


def test_the_gate_shares_the_servers_memory_limit():
    assert gate_from_env({}).memory_mb == 2048.0
    assert gate_from_env({"NORMLAB_MAX_MEMORY_MB": "3000"}).memory_mb == 3000.0
    with pytest.raises(ValueError, match="memory_mb"):
        Gate(2, 10, memory_mb=-1)


def test_the_dashboards_computations_reserve_their_estimated_memory(monkeypatch):
    import ui.compute.cache
    from normlab import ModelConfig, ProbeConfig
    from normlab.ops.cost import estimate_cost

    asked = []

    def fake_compute(key, fn, on_wait=None, memory_mb=0.0):
        asked.append(memory_mb)
        return fn()

    monkeypatch.setattr(ui.compute.cache, "compute", fake_compute)
    ui.compute.cache.clear()
    model = ModelConfig(arch="mlp", depth=3, width=16, norm="batchnorm")
    probe_config = ProbeConfig(batch_size=8, seeds=1, image_size=4)
    ui.compute.cache.probe(model, probe_config)
    assert asked == [estimate_cost(model, probe_config).memory_mb] and asked[0] > 0


def test_the_default_gate_hands_freed_memory_back_after_each_computation(monkeypatch):
    monkeypatch.setattr(serving, "_default_gate", None)
    trims = []
    monkeypatch.setattr(serving, "release_memory", lambda: trims.append(1))
    gate = serving.default_gate()
    assert gate.compute("x", lambda: 7) == 7 and trims == [1]
    monkeypatch.setattr(serving, "_default_gate", None)


def test_the_allocator_is_tuned_and_trimmed_on_glibc():
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("glibc's mallopt and malloc_trim only")
    assert serving.tune_allocator() is True
    serving.release_memory()  # returns nothing; must not raise
