"""Several nodes in one process's control, for tests and benchmarks (Ray's `ray.cluster_utils`).

    from shoal.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    worker = cluster.add_node(num_cpus=2, resources={"big_mem": 1})
    cluster.wait_for_nodes()
    shoal.init(address=cluster.address)
    ...
    cluster.remove_node(worker, allow_graceful=False)   # as if its machine died
    cluster.shutdown()

Every node is a real node manager process listening on 127.0.0.1 with its own workers and
object store, exactly as `shoal start` makes one. They are children of this process and stop
when it exits, however it exits.
"""

from __future__ import annotations

import atexit
import signal
import socket
import time
from dataclasses import dataclass

from . import api
from ._core import lifecycle, node_launcher, protocol

_NODE_ARGS = {"num_cpus", "num_gpus", "resources", "object_store_memory"}


@dataclass
class ClusterNode:
    """One node of a `Cluster`."""

    process: node_launcher.HeadProcess
    head: bool
    resources: dict

    @property
    def node_id(self) -> str:
        return self.process.node_id

    @property
    def address(self) -> str:
        return self.process.tcp_address or ""

    def alive(self) -> bool:
        return lifecycle.pid_alive(self.process.pid)


class Cluster:
    """A cluster of local nodes: a head, then nodes that join it.

    Args:
        initialize_head: Start the head node now.
        connect: With `initialize_head`, also call `shoal.init(address=...)`.
        head_node_args: Node arguments for the head (see `add_node`).
        shutdown_at_exit: Stop every node when this process exits.
    """

    def __init__(
        self,
        initialize_head: bool = False,
        connect: bool = False,
        head_node_args: dict | None = None,
        shutdown_at_exit: bool = True,
    ):
        self.head_node: ClusterNode | None = None
        self.worker_nodes: list[ClusterNode] = []
        self.connected = False
        self._port = None
        if shutdown_at_exit:
            atexit.register(self.shutdown)
        if initialize_head:
            self.add_node(**(head_node_args or {}))
            if connect:
                self.connect()
        elif connect:
            raise ValueError("connect=True needs initialize_head=True")

    @property
    def address(self) -> str:
        """The head's address for `shoal.init(address=...)` (host:port)."""
        if self.head_node is None:
            raise RuntimeError("the cluster has no head node yet: call add_node() first")
        return self.head_node.address

    def add_node(self, wait: bool = True, **node_args) -> ClusterNode:
        """Start a node: the head first, then nodes that join it.

        Args:
            wait: Return once the head lists the node (always true: a node is ready only
                after the head admitted it).
            num_cpus, num_gpus, resources, object_store_memory: As for `shoal start`.
        """
        unknown = set(node_args) - _NODE_ARGS
        if unknown:
            raise TypeError(f"unknown node arguments {sorted(unknown)}; use {sorted(_NODE_ARGS)}")
        store_bytes = int(node_args.get("object_store_memory") or 256 * 1024 * 1024)
        head = self.head_node is None
        total = node_launcher.node_resources(
            node_args.get("num_cpus", 1),
            node_args.get("num_gpus", 0),
            node_args.get("resources"),
            store_bytes,
            "127.0.0.1",
            head=head,
        )
        if head:
            self._port = _free_port()
            process = node_launcher.start_node(total, store_bytes, None, tcp_port=self._port)
        else:
            assert self.head_node is not None  # not the head: it exists
            process = node_launcher.start_node(
                total, store_bytes, None, head_address=self.address, token=self.head_node.process.token
            )
        node_launcher.remember_local_node(process)
        node = ClusterNode(process, head, total)
        if head:
            self.head_node = node
        else:
            # A joining node reports ready only once the head has admitted it, so `wait` holds.
            self.worker_nodes.append(node)
        return node

    def remove_node(self, node: ClusterNode, allow_graceful: bool = True) -> None:
        """Stop a node; without `allow_graceful` it is killed (SIGKILL), as a machine that dies."""
        if not allow_graceful:
            lifecycle.kill_quietly(node.process.pid, signal.SIGKILL)
        node_launcher.stop_node(node.process)
        node_launcher.forget_local_node(node.process)
        if node is self.head_node:
            self.head_node = None
        elif node in self.worker_nodes:
            self.worker_nodes.remove(node)

    def list_all_nodes(self) -> list[ClusterNode]:
        return ([self.head_node] if self.head_node is not None else []) + list(self.worker_nodes)

    def wait_for_nodes(self, timeout: float = 30) -> None:
        """Wait until the head lists every node of this cluster as alive (read from the
        head's event stream, which lists every node of a cluster).

        Raises:
            TimeoutError: Not all nodes joined in time.
        """
        import zmq

        if self.head_node is None:
            return
        wanted = {node.node_id for node in self.list_all_nodes()}
        events = zmq.Context.instance().socket(zmq.SUB)
        events.setsockopt(zmq.LINGER, 0)
        events.setsockopt(zmq.SUBSCRIBE, b"")
        events.connect(f"ipc://{lifecycle.node_socket_path(self.head_node.process.session_dir, 'events')}")
        deadline = time.monotonic() + timeout
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"not every node joined the cluster within {timeout} s")
                if not events.poll(int(remaining * 1000)):
                    continue
                snapshot = protocol.decode(events.recv())
                rows = snapshot.nodes or [{"node_id": snapshot.node_id, "state": "ALIVE"}]
                if wanted <= {row["node_id"] for row in rows if row.get("state") == "ALIVE"}:
                    return
        finally:
            events.close(linger=0)

    def connect(self, namespace: str | None = None):
        """`shoal.init` against this cluster's head."""
        context = api.init(address=self.address, namespace=namespace)
        self.connected = True
        return context

    def shutdown(self) -> None:
        """Disconnect this process and stop every node."""
        if self.connected:
            api.shutdown()
            self.connected = False
        for node in reversed(self.list_all_nodes()):
            self.remove_node(node)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


__all__ = ["Cluster", "ClusterNode"]
