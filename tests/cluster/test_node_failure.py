"""Killing nodes of a three-node cluster: retries elsewhere, lineage rebuilds, lost objects, head loss.

Every test gets its own cluster (head + nodes `a` and `b`, one CPU each) because it kills a
node with SIGKILL, as if the machine had died. Heartbeat timeout: tests/cluster/nodes.py.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import shoal
from shoal.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from tests.cluster.nodes import NODE_TIMEOUT_S, LocalCluster
from tests.waiting import wait_for


@pytest.fixture
def cluster():
    local = LocalCluster()
    try:
        local.start_head({"head_only": 1})
        local.node_a = local.add_node({"node_a": 1, "shared": 1})
        local.node_b = local.add_node({"node_b": 1, "shared": 1})
        shoal.init(address="auto")
        yield local
    finally:
        shoal.shutdown()
        local.stop()


def _node_with(resource: str) -> str:
    return next(n["NodeID"] for n in shoal.nodes() if n["Alive"] and resource in n["Resources"])


def _on(node_id: str):
    return NodeAffinitySchedulingStrategy(node_id, soft=True)


def _runs(path) -> list:
    return path.read_text().split() if path.exists() else []


@shoal.remote
def make(log_path, megabytes, fill):
    with open(log_path, "a") as log:
        log.write(shoal.get_runtime_context().get_node_id() + "\n")
    return np.full(megabytes * 1024 * 1024, fill, dtype=np.uint8)


@shoal.remote
def add(log_path, array, amount):
    with open(log_path, "a") as log:
        log.write(shoal.get_runtime_context().get_node_id() + "\n")
    return array + amount


def _wait_dead(node_id: str) -> None:
    wait_for(
        lambda: any(n["NodeID"] == node_id and not n["Alive"] for n in shoal.nodes()),
        NODE_TIMEOUT_S * 5,
        lambda: f"nodes: {shoal.nodes()}",
    )


def test_a_dead_node_is_declared_dead_and_its_resources_leave(cluster):
    b = _node_with("node_b")
    cluster.kill_node(cluster.node_b)
    _wait_dead(b)
    assert "node_b" not in shoal.cluster_resources()
    assert shoal.cluster_resources()["CPU"] == 2


def test_objects_on_a_dead_node_are_rebuilt_from_lineage(cluster, tmp_path):
    b = _node_with("node_b")
    first_log, second_log = tmp_path / "make.log", tmp_path / "add.log"
    # "shared" is on nodes a and b: the rebuilt tasks run on a, another node than the owner.
    made = make.options(resources={"shared": 0.5}, scheduling_strategy=_on(b)).remote(str(first_log), 8, 5)
    plus = add.options(resources={"shared": 0.5}, scheduling_strategy=_on(b)).remote(str(second_log), made, 2)
    shoal.wait([plus], timeout=60, fetch_local=False)
    assert _runs(first_log) == [b] and _runs(second_log) == [b]
    cluster.kill_node(cluster.node_b)
    array = shoal.get(plus, timeout=60)
    assert array.nbytes == 8 * 1024 * 1024 and array[0] == 7 and array[-1] == 7
    # Both tasks ran again, recursively, on nodes that are alive.
    assert len(_runs(first_log)) == 2 and len(_runs(second_log)) == 2
    assert _runs(first_log)[1:] == _runs(second_log)[1:] == [_node_with("node_a")]
    assert shoal.get(made, timeout=60)[0] == 5
    # Once the refs are gone, nothing is left anywhere: not the values, not their lineage.
    from shoal.util import state

    del made, plus, array
    wait_for(lambda: not state.list_objects(), 30, lambda: str(state.list_objects()))


@shoal.remote
def sleepy(marker_path, seconds):
    with open(marker_path, "a") as marker:
        marker.write(shoal.get_runtime_context().get_node_id() + "\n")
    time.sleep(seconds)
    return shoal.get_runtime_context().get_node_id()


def test_running_tasks_of_a_dead_node_are_retried_elsewhere(cluster, tmp_path):
    b = _node_with("node_b")
    marker = tmp_path / "started"
    refs = [sleepy.options(scheduling_strategy=_on(b)).remote(str(marker), 3) for _ in range(2)]
    wait_for(lambda: _runs(marker), 30)
    cluster.kill_node(cluster.node_b)
    where = shoal.get(refs, timeout=60)
    assert b not in where


def test_a_task_without_retries_fails_with_node_died(cluster, tmp_path):
    b = _node_with("node_b")
    marker = tmp_path / "started"
    ref = sleepy.options(scheduling_strategy=_on(b), max_retries=0).remote(str(marker), 30)
    wait_for(lambda: _runs(marker), 30)
    cluster.kill_node(cluster.node_b)
    with pytest.raises(shoal.exceptions.NodeDiedError):
        shoal.get(ref, timeout=60)


@shoal.remote
def put_inside():
    return [shoal.put(np.ones(2 * 1024 * 1024, dtype=np.uint8))]


def test_an_object_whose_owner_died_raises_object_lost(cluster):
    b = _node_with("node_b")
    [inner] = shoal.get(put_inside.options(scheduling_strategy=_on(b)).remote(), timeout=60)
    cluster.kill_node(cluster.node_b)
    _wait_dead(b)
    with pytest.raises(shoal.exceptions.ObjectLostError, match="owner"):
        shoal.get(inner, timeout=60)


def test_losing_the_head_stops_every_node(cluster, tmp_path):
    head, a, b = cluster.nodes
    waiting = sleepy.options(resources={"node_a": 1}).remote(str(tmp_path / "started"), 60)
    cluster.kill_node(head)
    with pytest.raises(shoal.exceptions.RaySystemError, match="died"):
        shoal.get(waiting, timeout=30)  # the driver notices instead of waiting forever
    deadline = time.monotonic() + NODE_TIMEOUT_S * 10
    for node in (a, b):
        node.process.wait(timeout=max(1.0, deadline - time.monotonic()))
        assert not _pid_alive(node.manager_pid)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@shoal.remote
class Keeper:
    def __init__(self):
        self.calls = 0

    def call(self, seconds=0.0):
        self.calls += 1
        time.sleep(seconds)
        return (
            self.calls,
            shoal.get_runtime_context().get_node_id(),
            shoal.get_runtime_context().was_current_actor_reconstructed,
        )


def test_a_restartable_actor_comes_back_on_another_node(cluster):
    b = _node_with("node_b")
    keeper = Keeper.options(
        resources={"shared": 0.5}, scheduling_strategy=_on(b), max_restarts=1, max_task_retries=1
    ).remote()
    assert shoal.get(keeper.call.remote(), timeout=60) == (1, b, False)
    in_flight = keeper.call.remote(3.0)
    time.sleep(1.0)
    cluster.kill_node(cluster.node_b)
    calls, where, restarted = shoal.get(in_flight, timeout=60)
    assert where == _node_with("node_a") and restarted and calls == 1  # state starts over
    assert shoal.get(keeper.call.remote(), timeout=60)[:2] == (2, where)


def test_an_actor_without_restarts_dies_with_its_node(cluster):
    b = _node_with("node_b")
    keeper = Keeper.options(resources={"node_b": 1}).remote()
    assert shoal.get(keeper.call.remote(), timeout=60)[1] == b
    in_flight = keeper.call.remote(10.0)
    time.sleep(1.0)
    cluster.kill_node(cluster.node_b)
    with pytest.raises((shoal.exceptions.ActorDiedError, shoal.exceptions.ActorUnavailableError)):
        shoal.get(in_flight, timeout=60)
    with pytest.raises(shoal.exceptions.ActorDiedError, match="died"):
        shoal.get(keeper.call.remote(), timeout=60)


def test_a_placement_group_with_bundles_on_a_dead_node_is_placed_again(cluster):
    from shoal.util.placement_group import placement_group, placement_group_table

    b = _node_with("node_b")
    group = placement_group([{"CPU": 0.5}] * 3, strategy="SPREAD")
    assert group.wait(30)
    assert b in placement_group_table(group)["bundles_to_node_id"].values()
    cluster.kill_node(cluster.node_b)
    _wait_dead(b)
    wait_for(
        lambda: (
            placement_group_table(group)["state"] == "CREATED"
            and b not in placement_group_table(group)["bundles_to_node_id"].values()
        ),
        30,
        lambda: str(placement_group_table(group)),
    )
    assert group.wait(10)


def test_a_node_that_stops_leaves_and_a_stopping_head_stops_the_rest(cluster):
    import signal

    a = _node_with("node_a")
    cluster.node_a.process.send_signal(signal.SIGTERM)
    assert cluster.node_a.process.wait(timeout=30) == 0
    _wait_dead(a)
    head, _, b = cluster.nodes
    head.process.send_signal(signal.SIGTERM)
    assert head.process.wait(timeout=30) == 0
    cluster.node_b.process.wait(timeout=NODE_TIMEOUT_S * 10)
    assert not _pid_alive(cluster.node_b.manager_pid)


@shoal.remote
def parent_of_sleepy(marker_path, target):
    child = sleepy.options(scheduling_strategy=_on(target)).remote(marker_path, 3)
    return shoal.get(child), shoal.get_runtime_context().get_node_id()


def test_a_task_sent_from_a_worker_node_to_a_dead_node_runs_again(cluster, tmp_path):
    a, b = _node_with("node_a"), _node_with("node_b")
    marker = tmp_path / "started"
    ref = parent_of_sleepy.options(resources={"node_a": 1}).remote(str(marker), b)
    wait_for(lambda: _runs(marker), 30)
    assert _runs(marker) == [b]
    cluster.kill_node(cluster.node_b)
    child_ran_on, parent_ran_on = shoal.get(ref, timeout=60)
    assert parent_ran_on == a and child_ran_on != b
    assert len(_runs(marker)) == 2
