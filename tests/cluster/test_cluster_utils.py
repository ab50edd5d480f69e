"""shoal.cluster_utils.Cluster: several local nodes driven from one process, as Ray's tests do."""

from __future__ import annotations

import pytest
import shoal
from shoal.cluster_utils import Cluster

from tests.cluster.nodes import NODE_TIMEOUT_S
from tests.waiting import wait_for


@pytest.fixture
def quick_timeout(monkeypatch):
    monkeypatch.setenv("SHOAL_NODE_TIMEOUT_S", str(NODE_TIMEOUT_S))


def test_a_cluster_of_local_nodes(quick_timeout):
    cluster = Cluster(initialize_head=True, connect=True, head_node_args={"num_cpus": 1}, shutdown_at_exit=False)
    try:
        worker = cluster.add_node(num_cpus=1, resources={"extra": 1})
        assert {n["NodeID"] for n in shoal.nodes()} == {cluster.head_node.node_id, worker.node_id}
        assert shoal.get_runtime_context().get_node_id() == cluster.head_node.node_id  # over ipc

        @shoal.remote(resources={"extra": 1})
        def where():
            return shoal.get_runtime_context().get_node_id()

        assert shoal.get(where.remote(), timeout=30) == worker.node_id
        cluster.remove_node(worker, allow_graceful=False)
        wait_for(
            lambda: not any(n["Alive"] for n in shoal.nodes() if n["NodeID"] == worker.node_id), NODE_TIMEOUT_S * 5
        )
        assert cluster.list_all_nodes() == [cluster.head_node]
    finally:
        cluster.shutdown()
    assert not shoal.is_initialized()


def test_bad_node_arguments_are_named():
    cluster = Cluster(shutdown_at_exit=False)
    with pytest.raises(TypeError, match="num_cpu"):
        cluster.add_node(num_cpu=1)
    with pytest.raises(RuntimeError, match="no head"):
        _ = cluster.address
    cluster.shutdown()
