"""A three-node cluster on 127.0.0.1: joining, spillback, locality, strategies, objects across nodes.

Nodes are separate `shoal start --block` processes with their own stores and different custom
resources (head: `head_only`, the others `node_a` / `node_b`); the driver is this process,
connected with `init(address="auto")`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import shoal
from shoal.util import state
from shoal.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from tests.cluster.nodes import LocalCluster
from tests.waiting import wait_for


@pytest.fixture(scope="module")
def cluster():
    local = LocalCluster()
    try:
        local.start_head({"head_only": 1})
        local.add_node({"node_a": 1, "shared": 1})
        local.add_node({"node_b": 1, "shared": 1})
        shoal.init(address="auto")
        yield local
    finally:
        shoal.shutdown()
        local.stop()


@shoal.remote
def node_of():
    return shoal.get_runtime_context().get_node_id()


@shoal.remote
def slow_node_of(seconds):
    time.sleep(seconds)
    return shoal.get_runtime_context().get_node_id()


def _node_with(resource: str) -> str:
    return next(n["NodeID"] for n in shoal.nodes() if n["Alive"] and resource in n["Resources"])


def test_three_nodes_joined(cluster):
    nodes = shoal.nodes()
    assert len(nodes) == 3
    assert all(n["Alive"] for n in nodes)
    assert sum(n["IsHeadNode"] for n in nodes) == 1
    total = shoal.cluster_resources()
    assert total["CPU"] == 3
    assert total["node_a"] == 1 and total["node_b"] == 1 and total["head_only"] == 1 and total["shared"] == 2


def test_status_and_list_nodes_show_every_node(cluster):
    status = subprocess.run([sys.executable, "-m", "shoal.cli", "status"], capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    assert "3 node(s)" in status.stdout
    listed = subprocess.run(
        [sys.executable, "-m", "shoal.cli", "list", "nodes"], capture_output=True, text=True, timeout=60
    )
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.count("ALIVE") == 3
    from shoal.util import state

    rows = state.list_nodes()
    assert {r["node_id"] for r in rows} == {n["NodeID"] for n in shoal.nodes()}


def test_custom_resources_send_tasks_to_their_node(cluster):
    assert shoal.get(node_of.options(resources={"node_a": 1}).remote(), timeout=30) == _node_with("node_a")
    assert shoal.get(node_of.options(resources={"node_b": 1}).remote(), timeout=30) == _node_with("node_b")
    assert shoal.get(node_of.options(resources={"head_only": 1}).remote(), timeout=30) == _node_with("head_only")


def test_no_infeasible_warning_for_resources_another_node_has(cluster, recwarn):
    shoal.get(node_of.options(resources={"node_b": 1}).remote(), timeout=30)
    assert not [w for w in recwarn if "stay pending" in str(w.message)]


def test_busy_node_spills_back_to_free_nodes(cluster):
    # Three one-CPU nodes: three 2-second tasks only finish together if each ran on its own node.
    started = time.monotonic()
    where = shoal.get([slow_node_of.remote(2.0) for _ in range(3)], timeout=60)
    assert len(set(where)) == 3, where
    assert time.monotonic() - started < 5.5


def test_spread_uses_every_node(cluster):
    where = shoal.get([node_of.options(scheduling_strategy="SPREAD").remote() for _ in range(6)], timeout=60)
    assert {node: where.count(node) for node in set(where)} == {n["NodeID"]: 2 for n in shoal.nodes()}


def test_node_affinity(cluster):
    target = _node_with("node_b")
    hard = NodeAffinitySchedulingStrategy(target, soft=False)
    assert shoal.get([node_of.options(scheduling_strategy=hard).remote() for _ in range(3)], timeout=30) == [target] * 3
    missing = "ab" * 16
    soft = NodeAffinitySchedulingStrategy(missing, soft=True)
    assert shoal.get(node_of.options(scheduling_strategy=soft).remote(), timeout=30) in {
        n["NodeID"] for n in shoal.nodes()
    }
    with pytest.raises(shoal.exceptions.TaskUnschedulableError, match=missing):
        shoal.get(
            node_of.options(scheduling_strategy=NodeAffinitySchedulingStrategy(missing, soft=False)).remote(),
            timeout=30,
        )


@shoal.remote
def make_array(megabytes, fill):
    return np.full(megabytes * 1024 * 1024, fill, dtype=np.uint8)


@shoal.remote
def describe(array):
    return int(array[0]), int(array[-1]), array.nbytes, shoal.get_runtime_context().get_node_id()


def test_cross_node_get_of_a_200mb_array(cluster):
    ref = make_array.options(resources={"node_a": 1}).remote(200, 7)
    array = shoal.get(ref, timeout=120)
    assert array.nbytes == 200 * 1024 * 1024
    assert array[0] == 7 and array[-1] == 7 and int(array[::4096].sum()) == 7 * len(array[::4096])
    assert not array.flags.writeable
    del array, ref


def test_arguments_move_between_nodes(cluster):
    made_on_a = make_array.options(resources={"node_a": 1}).remote(5, 3)
    first, last, size, where = shoal.get(describe.options(resources={"node_b": 1}).remote(made_on_a), timeout=60)
    assert (first, last, size, where) == (3, 3, 5 * 1024 * 1024, _node_with("node_b"))
    put_here = shoal.put(np.arange(1_000_000, dtype=np.int64))
    total = shoal.get(describe.options(resources={"node_a": 1}).remote(put_here), timeout=60)
    assert total[2] == 8_000_000 and total[3] == _node_with("node_a")
    small = shoal.put({"x": 1})
    assert shoal.get(plus_one.options(resources={"node_b": 1}).remote(small), timeout=30) == 2


@shoal.remote
def plus_one(mapping):
    return mapping["x"] + 1


def test_a_task_goes_to_the_node_holding_its_large_argument(cluster):
    big = make_array.options(resources={"node_b": 1}).remote(20, 1)
    shoal.wait([big], timeout=60, fetch_local=False)
    where = shoal.get([describe.options(resources={"shared": 1}).remote(big) for _ in range(2)], timeout=60)
    assert [w[3] for w in where] == [_node_with("node_b")] * 2


@shoal.remote
def put_inside(megabytes):
    return [shoal.put(np.ones(megabytes * 1024 * 1024, dtype=np.uint8))]


def test_refs_made_on_another_node_are_borrowed_and_fetched(cluster):
    outer = put_inside.options(resources={"node_a": 1}).remote(3)
    [inner] = shoal.get(outer, timeout=60)
    del outer
    array = shoal.get(inner, timeout=60)
    assert array.nbytes == 3 * 1024 * 1024 and array[0] == 1
    first, _, _, where = shoal.get(describe.options(resources={"node_b": 1}).remote(inner), timeout=60)
    assert first == 1 and where == _node_with("node_b")


def test_nested_tasks_on_a_worker_node_run_and_return(cluster):
    @shoal.remote(resources={"node_a": 1})
    def parent():
        return shoal.get([node_of.options(resources={"node_b": 0.1}).remote() for _ in range(2)])

    assert shoal.get(parent.remote(), timeout=60) == [_node_with("node_b")] * 2


def test_output_of_a_task_on_another_node_reaches_the_driver(cluster):
    from shoal.util import output

    records = []
    output.set_log_handler(records.extend)
    try:

        @shoal.remote(resources={"node_b": 1})
        def talk():
            print("hello from node b")

        shoal.get(talk.remote(), timeout=30)
        wait_for(lambda: any("hello from node b" in r["text"] for r in records), 10)
    finally:
        output.set_log_handler(None)


def test_cancel_reaches_a_task_on_another_node(cluster):
    ref = slow_node_of.options(resources={"node_a": 1}).remote(30)
    time.sleep(1.0)
    shoal.cancel(ref)
    with pytest.raises(shoal.exceptions.TaskCancelledError):
        shoal.get(ref, timeout=15)
    # Both the node that ran it and the head that forwarded it list it as Ray does.
    task_id = ref.task_id().hex()
    rows = wait_for(lambda: state.list_tasks(filters=[("task_id", "=", task_id)]), 10)
    assert {(row.state, row.error_type) for row in rows} == {("FAILED", "TASK_CANCELLED")}, rows


def test_join_without_the_token_is_refused(cluster):
    env = dict(cluster.env, SHOAL_TOKEN="not-the-token")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "shoal.cli",
            "start",
            "--address",
            cluster.address,
            "--num-cpus",
            "1",
            "--object-store-memory",
            str(64 * 1024 * 1024),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode != 0
    assert "refused this node: the token is wrong" in result.stderr, result.stderr
    assert len([n for n in shoal.nodes() if n["Alive"]]) == 3


def test_random_bytes_to_every_port_leave_the_cluster_working(cluster):
    import psutil

    ports = set()
    for node in cluster.nodes:
        listening = [c.laddr for c in psutil.Process(node.manager_pid).net_connections("tcp") if c.status == "LISTEN"]
        assert listening and all(address.ip == "127.0.0.1" for address in listening)
        ports.update(address.port for address in listening)
    assert {node.port for node in cluster.nodes} < ports  # control ports and data ports
    garbage = os.urandom(4096)
    for port in ports:
        for payload in (garbage, b"\xff" + garbage, b"GET / HTTP/1.1\r\n\r\n"):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
                connection.sendall(payload)
    time.sleep(0.5)
    assert len([n for n in shoal.nodes() if n["Alive"]]) == 3
    where = shoal.get([node_of.options(scheduling_strategy="SPREAD").remote() for _ in range(3)], timeout=60)
    assert len(set(where)) == 3


@shoal.remote
class Counter:
    def __init__(self, start=0):
        self.value = start

    def add(self, amount=1):
        self.value += amount
        return self.value

    def where(self):
        return shoal.get_runtime_context().get_node_id()


def test_an_actor_runs_on_the_node_with_its_resources_and_keeps_call_order(cluster):
    counter = Counter.options(resources={"node_a": 1}).remote(10)
    assert shoal.get(counter.where.remote(), timeout=60) == _node_with("node_a")
    assert shoal.get([counter.add.remote() for _ in range(50)], timeout=60) == list(range(11, 61))
    shoal.kill(counter)
    with pytest.raises(shoal.exceptions.ActorDiedError):
        shoal.get(counter.add.remote(), timeout=30)


@shoal.remote
def use_counter(counter, times):
    return shoal.get([counter.add.remote() for _ in range(times)]), shoal.get_runtime_context().get_node_id()


def test_actor_handles_work_from_tasks_on_other_nodes(cluster):
    counter = Counter.options(resources={"node_a": 1}).remote()
    values, where = shoal.get(use_counter.options(resources={"node_b": 1}).remote(counter, 5), timeout=60)
    assert values == [1, 2, 3, 4, 5] and where == _node_with("node_b")
    assert shoal.get(counter.add.remote(), timeout=30) == 6


def test_named_actor_on_another_node_is_found_from_any_node(cluster):
    Counter.options(name="shared-counter", resources={"node_b": 1}, lifetime="detached").remote(100)

    @shoal.remote(resources={"node_a": 1})
    def bump():
        return shoal.get(shoal.get_actor("shared-counter").add.remote(5))

    assert shoal.get(bump.remote(), timeout=60) == 105
    handle = shoal.get_actor("shared-counter")
    assert shoal.get(handle.where.remote(), timeout=30) == _node_with("node_b")
    shoal.kill(handle)


def test_an_actor_on_another_node_stops_when_its_handles_are_gone(cluster):
    from shoal.util import state

    counter = Counter.options(resources={"node_b": 1}).remote()
    actor_id = counter._actor_id.hex()
    assert shoal.get(counter.add.remote(), timeout=30) == 1
    del counter
    wait_for(lambda: any(a["actor_id"] == actor_id and a["state"] == "DEAD" for a in state.list_actors()), 30)
    node_b = next(n for n in cluster.nodes if "node_b" in n.resources)
    wait_for(
        lambda: len(_worker_pids_of(node_b.manager_pid)) <= 1, 30, lambda: str(_worker_pids_of(node_b.manager_pid))
    )


def _worker_pids_of(manager_pid: int) -> list:
    import psutil

    return [p.pid for p in psutil.Process(manager_pid).children(recursive=True) if "worker" in p.name()]


def _group_nodes(group) -> list:
    from shoal.util.placement_group import placement_group_table

    table = placement_group_table(group)
    return [table["bundles_to_node_id"][index] for index in sorted(table["bundles_to_node_id"])]


def test_placement_groups_spread_and_pack_across_nodes(cluster):
    from shoal.util.placement_group import placement_group, remove_placement_group
    from shoal.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    strict = placement_group([{"CPU": 1}] * 3, strategy="STRICT_SPREAD")
    assert strict.wait(30)
    assert len(set(_group_nodes(strict))) == 3
    in_bundles = [
        node_of.options(scheduling_strategy=PlacementGroupSchedulingStrategy(strict, index)).remote()
        for index in range(3)
    ]
    assert shoal.get(in_bundles, timeout=60) == _group_nodes(strict)
    # Every CPU is in the group now: a fourth STRICT_SPREAD bundle has no node.
    too_many = placement_group([{"CPU": 0.1}] * 4, strategy="STRICT_SPREAD")
    assert not too_many.wait(2)
    remove_placement_group(too_many)
    remove_placement_group(strict)
    wait_for(lambda: shoal.available_resources().get("CPU") == 3, 10, lambda: str(shoal.available_resources()))

    spread = placement_group([{"CPU": 0.5}] * 3, strategy="SPREAD")
    assert spread.wait(30) and len(set(_group_nodes(spread))) == 3
    packed = placement_group([{"CPU": 0.25}] * 2, strategy="STRICT_PACK")
    assert packed.wait(30) and len(set(_group_nodes(packed))) == 1
    # PACK puts bundles together when a node has room, and across nodes when none does.
    wide = placement_group([{"CPU": 0.5}, {"CPU": 0.5}], strategy="PACK")
    assert wide.wait(30) and len(set(_group_nodes(wide))) == 2
    for group in (spread, packed, wide):
        remove_placement_group(group)
    wait_for(lambda: shoal.available_resources().get("CPU") == 3, 10, lambda: str(shoal.available_resources()))


def test_an_actor_in_a_bundle_on_another_node(cluster):
    from shoal.util.placement_group import placement_group, remove_placement_group
    from shoal.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    group = placement_group([{"CPU": 1, "node_b": 1}], strategy="PACK")
    assert group.wait(30)
    assert _group_nodes(group) == [_node_with("node_b")]
    counter = Counter.options(num_cpus=1, scheduling_strategy=PlacementGroupSchedulingStrategy(group, 0)).remote()
    assert shoal.get(counter.where.remote(), timeout=60) == _node_with("node_b")
    remove_placement_group(group)
    with pytest.raises(shoal.exceptions.ActorDiedError, match="placement group"):
        shoal.get(counter.where.remote(), timeout=30)


def test_state_api_lists_tasks_actors_and_workers_of_every_node(cluster):
    from shoal.util import state

    counter = Counter.options(resources={"node_a": 1}, name="listed-counter").remote()
    shoal.get(counter.add.remote(), timeout=30)
    ref = slow_node_of.options(resources={"node_b": 1}, name="listed-task").remote(0.1)
    shoal.get(ref, timeout=30)
    tasks = [t for t in state.list_tasks(limit=10_000) if t["name"] == "listed-task"]
    assert len(tasks) == 1 and tasks[0]["node_id"] == _node_with("node_b") and tasks[0]["worker_pid"]
    actors = [a for a in state.list_actors() if a["name"] == "listed-counter"]
    assert len(actors) == 1 and actors[0]["node_id"] == _node_with("node_a") and actors[0]["pid"]
    assert {w["node_id"] for w in state.list_workers()} == {n["NodeID"] for n in shoal.nodes()}
    assert state.summarize_actors()["cluster"]["total_actors"] >= 1
    shoal.kill(counter)


def test_the_event_stream_carries_every_node(cluster):
    from shoal.util.state import ClusterEvents

    events = ClusterEvents()
    try:
        snapshot = wait_for(lambda: events.next(timeout_s=2.0), 10)
        snapshot = wait_for(lambda: (s := events.next(timeout_s=2.0)) and s.get("nodes") and s, 10)
    finally:
        events.close()
    assert {row["node_id"] for row in snapshot["nodes"]} == {n["NodeID"] for n in shoal.nodes()}
    assert all(row["resources_total"]["CPU"] == 1 for row in snapshot["nodes"] if row["state"] == "ALIVE")
    assert snapshot["tasks_by_state"]["FINISHED"] > 0


def test_a_driver_over_tcp_that_dies_is_dropped_with_its_actors(cluster):
    import signal

    from shoal.util import state

    token = _head_token(cluster)
    source = f"""
import sys, time, shoal
shoal.init(address="{cluster.address}", namespace="over-tcp")
@shoal.remote
class Orphan:
    def ping(self):
        return "pong"
orphan = Orphan.options(name="orphan", resources={{"node_a": 0.1}}).remote()
print(shoal.get(orphan.ping.remote()), flush=True)
time.sleep(60)
"""
    env = dict(os.environ, SHOAL_TOKEN=token)
    driver = subprocess.Popen([sys.executable, "-c", source], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert driver.stdout.readline().strip() == "pong"
        assert shoal.get_actor("orphan", namespace="over-tcp") is not None
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=10)
        wait_for(
            lambda: any(a["name"] == "orphan" and a["state"] == "DEAD" for a in state.list_actors()),
            30,
            lambda: str([a for a in state.list_actors() if a["name"] == "orphan"]),
        )
    finally:
        driver.kill()
        driver.wait()
        driver.stdout.close()


def test_a_named_actor_made_on_another_node_is_found_by_name(cluster):
    @shoal.remote(resources={"node_a": 1})
    def make_named():
        Counter.options(name="made-on-a", namespace="shared-ns", lifetime="detached", num_cpus=0).remote(7)
        return shoal.get_runtime_context().get_node_id()

    assert shoal.get(make_named.remote(), timeout=60) == _node_with("node_a")
    handle = wait_for(lambda: _lookup("made-on-a", "shared-ns"), 10)
    assert shoal.get(handle.add.remote(), timeout=30) == 8
    shoal.kill(handle)


def _head_token(cluster) -> str:
    """The token in the file the head printed (the head prints where it is, never the token)."""
    import re

    with open(re.search(r"token file: (\S+)", cluster.nodes[0].output).group(1)) as handle:
        return handle.read().strip()


def _lookup(name: str, namespace: str):
    try:
        return shoal.get_actor(name, namespace=namespace)
    except ValueError:
        return None


def test_a_driver_on_a_machine_that_only_joined_connects_to_its_node(cluster, tmp_path):
    import re

    token_file = re.search(r"token file: (\S+)", cluster.nodes[0].output).group(1)
    other_machine = dict(cluster.env, TMPDIR=str(tmp_path))  # its own temp dir: another "machine"
    joined = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "shoal.cli",
            "start",
            "--address",
            cluster.address,
            "--token-file",
            token_file,
            "--num-cpus",
            "1",
            "--resources",
            '{"elsewhere": 1}',
            "--object-store-memory",
            str(128 * 1024 * 1024),
            "--block",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=other_machine,
    )
    try:
        from shoal._core.node_launcher import read_until

        assert "Joined" in read_until(joined, "Stop it with", 60)
        source = """
import numpy as np, shoal
shoal.init(address="auto")
here = shoal.get_runtime_context().get_node_id()
@shoal.remote
def where(array):
    return shoal.get_runtime_context().get_node_id(), int(array.sum())
ref = shoal.put(np.ones(1_000_000, dtype=np.int64))
node, total = shoal.get(where.options(resources={"node_a": 1}).remote(ref))
print(len(shoal.nodes()), node != here, total)
shoal.shutdown()
"""
        result = subprocess.run(
            [sys.executable, "-c", source], capture_output=True, text=True, env=other_machine, timeout=120
        )
        assert result.stdout.split() == ["4", "True", "1000000"], result.stderr
    finally:
        joined.terminate()
        joined.wait(timeout=30)
        joined.stdout.close()
    wait_for(lambda: len([n for n in shoal.nodes() if n["Alive"]]) == 3, 30)


def test_the_data_port_serves_no_bytes_without_the_token(cluster):
    import psutil
    import zmq
    from shoal._core import protocol

    ref = shoal.put(np.arange(100_000, dtype=np.int64))  # 800 kB: in the head's shared memory
    head = cluster.nodes[0]
    ports = {c.laddr.port for c in psutil.Process(head.manager_pid).net_connections("tcp") if c.status == "LISTEN"}
    data_ports = ports - {head.port}
    assert data_ports
    context = zmq.Context()
    try:
        for port in data_ports:
            dealer = context.socket(zmq.DEALER)
            dealer.setsockopt(zmq.LINGER, 0)
            dealer.connect(f"tcp://127.0.0.1:{port}")
            for mac in (b"", b"\x00" * 32):
                dealer.send(protocol.encode(protocol.PullChunk(ref.binary(), 0, 4096, mac)))
            assert not dealer.poll(1000), "an unsigned request was answered"
            dealer.close()
    finally:
        context.term()
    assert shoal.get(ref, timeout=30)[-1] == 99_999


def test_a_placement_group_handle_works_in_a_task_on_another_node(cluster):
    from shoal.util.placement_group import placement_group, remove_placement_group

    group = placement_group([{"CPU": 0.5}], strategy="PACK")

    @shoal.remote(resources={"node_b": 1}, num_cpus=0)
    def wait_for_group(group):
        return shoal.get(group.ready(), timeout=30)

    assert shoal.get(wait_for_group.remote(group), timeout=60) is True
    remove_placement_group(group)


def test_objects_moved_between_nodes_are_freed_everywhere(cluster):
    from shoal.util import state

    def store_use():
        return {row["node_id"]: row["object_store_used_bytes"] for row in state.list_nodes() if row["state"] == "ALIVE"}

    before = store_use()
    made = make_array.options(resources={"node_a": 1}).remote(20, 1)
    assert shoal.get(describe.options(resources={"node_b": 1}).remote(made), timeout=60)[0] == 1
    array = shoal.get(made, timeout=60)
    [inner] = shoal.get(put_inside.options(resources={"node_b": 1}).remote(4), timeout=60)
    assert shoal.get(describe.options(resources={"node_a": 1}).remote(inner), timeout=60)[2] == 4 * 1024 * 1024
    assert max(store_use().values()) > 0
    del made, array, inner
    wait_for(lambda: store_use() == before, 30, lambda: f"store use {store_use()} (before: {before})")


def test_zz_every_object_of_this_module_was_freed_on_every_node(cluster):
    """Last in the module: the refs of every test above are gone, so no node keeps an object."""
    import gc

    from shoal.util import state

    gc.collect()
    wait_for(lambda: not state.list_objects(), 30, lambda: str(state.list_objects()))
