"""(4) A node SIGKILLed in a 3-node cluster mid-job: its objects are rebuilt from lineage, every
value checked; (5) the head SIGKILLed mid-job: the driver gets a clear error instead of waiting,
the other nodes stop by themselves, and nothing is left behind.

Each test gets its own `shoal.cluster_utils.Cluster` on 127.0.0.1 (node manager processes of
this test, one CPU each) with a 2 s heartbeat timeout, so a dead node is noticed in seconds.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import shoal
from shoal.cluster_utils import Cluster

from tests.reliability import faults

NODE_TIMEOUT_S = 2.0
STORE_BYTES = 256 * 1024 * 1024  # cluster_utils' default
JOB_TIMEOUT_S = 120.0
DEATH_NOTICE_S = 10.0  # for every get after a node died; the driver should know within about a second


def _store_bytes(chaos_scale) -> int:
    """Room for both stages of the lineage job twice over, on every node: the scenario is about
    lineage, not store pressure (scenario 10). Rebuilding into full stores is far slower: 200 x 1 MiB
    took 75 s with 256 MiB stores, 0.5 s with 1 GiB ones."""
    return max(STORE_BYTES, 4 * chaos_scale.node_objects * chaos_scale.node_object_bytes)


@pytest.fixture
def cluster(monkeypatch, chaos_scale):
    monkeypatch.setenv("SHOAL_NODE_TIMEOUT_S", str(NODE_TIMEOUT_S))
    head_args = {"num_cpus": 1, "object_store_memory": _store_bytes(chaos_scale)}
    local = Cluster(initialize_head=True, head_node_args=head_args, shutdown_at_exit=False)
    try:
        yield local
    finally:
        local.shutdown()
        shoal.shutdown()


def _log(path, index) -> None:
    with open(path, "a") as log:
        log.write(f"{index} {shoal.get_runtime_context().get_node_id()}\n")


def _runs(path) -> dict[int, list[str]]:
    """index -> the nodes that ran it, in order."""
    runs: dict[int, list[str]] = {}
    if os.path.exists(path):
        with open(path) as log:
            for line in log:
                index, node = line.split()
                runs.setdefault(int(index), []).append(node)
    return runs


@shoal.remote(resources={"shared": 0.01}, scheduling_strategy="SPREAD")
def make(log_path, index, size_bytes):
    _log(log_path, index)
    return np.full(size_bytes, index % 251, dtype=np.uint8)


@shoal.remote(resources={"shared": 0.01}, scheduling_strategy="SPREAD")
def plus_one(log_path, index, array):
    _log(log_path, index)
    return array + 1


def _filled_with(array, fill: int, size_bytes: int) -> bool:
    return (
        array.nbytes == size_bytes and int(array[0]) == fill and int(array[-1]) == fill and bool((array == fill).all())
    )


def test_node_kill_rebuilds_its_objects_from_lineage(cluster, chaos_scale, figures, tmp_path):
    store_bytes = _store_bytes(chaos_scale)
    a = cluster.add_node(num_cpus=1, resources={"shared": 1}, object_store_memory=store_bytes)
    b = cluster.add_node(num_cpus=1, resources={"shared": 1}, object_store_memory=store_bytes)
    cluster.wait_for_nodes()
    cluster.connect()
    count, size = chaos_scale.node_objects, chaos_scale.node_object_bytes
    figures.input_kind = "node SIGKILL"
    figures.parameters = {"nodes": 3, "objects": count, "object_bytes": size, "stages": 2, "store_bytes": store_bytes}
    made_log, plus_log = str(tmp_path / "make.log"), str(tmp_path / "plus.log")
    made = [make.remote(made_log, index, size) for index in range(count)]
    plus = [plus_one.remote(plus_log, index, ref) for index, ref in enumerate(made)]
    ready, _ = shoal.wait(plus, num_returns=count, timeout=JOB_TIMEOUT_S, fetch_local=False)
    assert len(ready) == count
    on_b = sorted(index for index, nodes in _runs(plus_log).items() if nodes == [b.node_id])
    assert on_b and len(on_b) < count, f"SPREAD should use both nodes: {_runs(plus_log)}"
    cluster.remove_node(b, allow_graceful=False)
    figures.inputs = 1
    tally = faults.check_results(plus, lambda index, array: _filled_with(array, index % 251 + 1, size), JOB_TIMEOUT_S)
    made_tally = faults.check_results(made, lambda index, array: _filled_with(array, index % 251, size), JOB_TIMEOUT_S)
    figures.results = tally.checked + made_tally.checked
    figures.correct = tally.correct + made_tally.correct
    figures.hangs = tally.hangs + made_tally.hangs
    rebuilt = [index for index in on_b if len(_runs(plus_log)[index]) >= 2]
    figures.note(f"{len(on_b)} second-stage objects lived only on the killed node; {len(rebuilt)} were rebuilt")
    figures.note(f"second stage: {tally.summary()}; first stage: {made_tally.summary()}")
    figures.crashes = sum(not node.alive() for node in (cluster.head_node, a))
    assert tally.correct == count and made_tally.correct == count, figures.notes
    assert rebuilt == on_b, f"objects of the killed node not run again: {sorted(set(on_b) - set(rebuilt))}"
    assert all(b.node_id not in _runs(plus_log)[index][1:] for index in on_b)
    assert figures.crashes == 0


@shoal.remote
def slow_square(index):
    time.sleep(0.02)
    return index * index


def _gets_after_a_death(refs, figures) -> tuple[int, int]:
    """Get every ref of a job whose node died: (values right, clear RaySystemErrors); hangs go to figures."""
    values = clear_errors = 0
    deadline = time.monotonic() + DEATH_NOTICE_S
    for index, ref in enumerate(refs):
        try:
            value = shoal.get(ref, timeout=max(0.1, deadline - time.monotonic()))
        except shoal.exceptions.GetTimeoutError:
            figures.hangs += 1
        except shoal.exceptions.RaySystemError:
            clear_errors += 1
        else:
            values += value == index * index
    figures.results = len(refs)
    figures.correct = values + clear_errors
    figures.note(f"{values} values before the death, {clear_errors} RaySystemError, {figures.hangs} hangs")
    return values, clear_errors


def test_head_kill_gives_the_driver_an_error_and_stops_every_node(cluster, chaos_scale, figures):
    a = cluster.add_node(num_cpus=1, resources={"node_a": 1})
    cluster.wait_for_nodes()
    cluster.connect()
    figures.input_kind = "head SIGKILL"
    figures.parameters = {"nodes": 2, "tasks": chaos_scale.head_tasks}
    refs = [slow_square.options(resources={"node_a": 0.01}).remote(index) for index in range(chaos_scale.head_tasks)]
    faults.pace(refs, 0.3, JOB_TIMEOUT_S)
    head = cluster.head_node
    a_session = a.process.session_dir
    faults.sigkill(head.process.pid)
    figures.inputs = 1
    _, clear_errors = _gets_after_a_death(refs, figures)
    # The other node notices its head is gone and stops, cleaning up after itself.
    a_stopped = faults.poll(lambda: not faults.alive(a.process.pid), NODE_TIMEOUT_S * 10)  # exited, or a zombie
    a_cleaned = faults.poll(lambda: not os.path.exists(a_session), 10)
    figures.note(f"the other node stopped: {a_stopped}, removed its session directory: {a_cleaned}")
    assert figures.hangs == 0 and figures.correct == len(refs), figures.notes
    assert clear_errors, "the head died mid-job: some results should have failed"
    assert a_stopped and a_cleaned, figures.notes
    shoal.shutdown()


def test_embedded_node_manager_kill_gives_the_driver_an_error(chaos_scale, figures):
    """The single-machine head: `shoal.init()`'s node manager SIGKILLed (as the OOM killer would)."""
    figures.input_kind = "node manager SIGKILL"
    figures.parameters = {"tasks": chaos_scale.head_tasks}
    shoal.init(num_cpus=1)
    try:
        node_pid = faults.embedded_node_pid()
        refs = [slow_square.remote(index) for index in range(chaos_scale.head_tasks)]
        faults.pace(refs, 0.3, JOB_TIMEOUT_S)
        faults.sigkill(node_pid)
        figures.inputs = 1
        _, clear_errors = _gets_after_a_death(refs, figures)
    finally:
        shoal.shutdown()
    assert figures.hangs == 0 and figures.correct == len(refs), figures.notes
    assert clear_errors, "the node manager died mid-job: some results should have failed"
