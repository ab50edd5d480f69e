"""Strangers and garbage at every port of a two-node cluster: nothing they send stops a node.

The cluster is two `shoal start --block` nodes on 127.0.0.1 (head and one worker node). The
tests send what a fault and fuzz campaign once used to kill node managers: typed garbage on the
ipc socket, on the CURVE port (as an authenticated client and as a peer) and on the data port.
After each, both nodes still run tasks, and the state API counts what they dropped.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import msgpack
import psutil
import pytest
import shoal
import zmq
from shoal._core import auth, lifecycle

from tests import message_fuzz
from tests.cluster.nodes import LocalCluster
from tests.waiting import wait_for


@pytest.fixture(scope="module")
def cluster():
    local = LocalCluster()
    try:
        local.head = local.start_head({"head_only": 1})
        local.worker = local.add_node({"node_a": 1})
        local.token = re.search(r"token: (\S+)", local.head.output).group(1)
        shoal.init(address="auto")
        yield local
    finally:
        shoal.shutdown()
        local.stop()


@shoal.remote(num_cpus=0)
def pid_here():
    return os.getpid()


def _serves_tasks(cluster) -> None:
    """Both nodes still run tasks, and their node managers are the ones we started."""
    for node, resource in ((cluster.head, "head_only"), (cluster.worker, "node_a")):
        assert psutil.pid_exists(node.manager_pid) and node.alive, node.output
        assert shoal.get(pid_here.options(resources={resource: 0.1}).remote(), timeout=60) > 0


def _session_dir(node) -> str:
    return re.search(r"session: (\S+)", node.output).group(1)


def _data_port(node) -> int:
    listening = {c.laddr.port for c in psutil.Process(node.manager_pid).net_connections("tcp") if c.status == "LISTEN"}
    (port,) = listening - {node.port}
    return port


def _faults(node) -> dict:
    """The node's row of `list_nodes()`: its counters of dropped messages, errors, refusals."""
    from shoal.util import state

    is_head = "head_only" in node.resources
    (row,) = [row for row in state.list_nodes() if row["state"] == "ALIVE" and row["is_head_node"] == is_head]
    return row


def _wait_dropped(node, at_least: int) -> None:
    wait_for(
        lambda: _faults(node)["messages_dropped"] >= at_least,
        60,
        lambda: f"counters: {_faults(node)}, wanted {at_least} dropped",
    )


def _dealer(context, endpoint: str, identity: bytes, token: str | None = None):
    dealer = context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 30_000)
    dealer.setsockopt(zmq.SNDHWM, 0)
    dealer.setsockopt(zmq.IDENTITY, identity)
    if token is not None:
        auth.secure_client(dealer, token)
    dealer.connect(endpoint)
    return dealer


def _identity(size: int) -> bytes:
    return b"z" + os.urandom(size - 1)  # routing ids must not start with a zero byte


def _send_each(dealer, frames: list) -> None:
    for frame in frames:
        dealer.send(frame)
    dealer.close()  # lingers until everything is sent


# -- the data port: requests from anyone ------------------------------------------------------

ISSUE_PAYLOADS = [
    [77, b"x" * 20, 0, 10, 12345],
    [77, b"x" * 20, 0, 10, "mac"],
    [77, b"x" * 20, 0, 10, [1, 2]],
    [77, b"x" * 20, 0, 10, {"mac": 1}],
    [77, 12345, 0, 10, b"m" * 32],
    [77, b"x" * 20, "0", 10, b"m" * 32],
    [77, b"x" * 20, 0, "10", b"m" * 32],
    [77, b"x" * 20, -5, 10, b"m" * 32],
    [77, b"x" * 20, 0, 2**40, b"m" * 32],
    [77, None, None, None, None],
]


@pytest.mark.parametrize("which", ["head", "worker"])
def test_mistyped_pull_requests_do_not_kill_a_node(cluster, which):
    # Each of these once ended the node manager within 60 ms (a TypeError in its loop).
    node = getattr(cluster, which)
    before = _faults(node)["messages_dropped"]
    context = zmq.Context()
    try:
        dealer = _dealer(context, f"tcp://127.0.0.1:{_data_port(node)}", _identity(8))
        _send_each(dealer, [msgpack.packb(payload) for payload in ISSUE_PAYLOADS])
    finally:
        context.term()
    _wait_dropped(node, before + len(ISSUE_PAYLOADS))
    _serves_tasks(cluster)


def test_a_signed_request_with_absurd_numbers_is_dropped_not_served(cluster):
    node = cluster.head
    key = auth.data_key(cluster.token)
    object_id = os.urandom(20)
    before = _faults(node)["messages_dropped"]
    context = zmq.Context()
    try:
        dealer = _dealer(context, f"tcp://127.0.0.1:{_data_port(node)}", _identity(8))
        for offset, length in ((-1, 10), (0, 2**40), (2**63, 1)):
            mac = auth.sign(key, object_id, b"%d" % offset, b"%d" % length)
            dealer.send(msgpack.packb([77, object_id, offset, length, mac]))
        _wait_dropped(node, before + 3)
        assert not dealer.poll(100), "a request with absurd numbers was answered"
        dealer.close()
    finally:
        context.term()
    _serves_tasks(cluster)


# -- typed garbage of every kind on every port --------------------------------------------------


def test_typed_garbage_on_every_port_is_dropped_and_counted(cluster):
    frames = [frame for _, frame in message_fuzz.variants()]
    head, worker = cluster.head, cluster.worker
    head_log = os.path.join(_session_dir(head), "logs", "node_manager.log")
    log_size = os.path.getsize(head_log)
    ports = [
        (
            head,
            [
                (f"ipc://{lifecycle.node_socket_path(_session_dir(head))}", _identity(16), None),
                (f"tcp://127.0.0.1:{head.port}", _identity(16), cluster.token),  # an authenticated client
                (f"tcp://127.0.0.1:{head.port}", _identity(16) + b"P", cluster.token),  # ... and peer
                (f"tcp://127.0.0.1:{_data_port(head)}", _identity(8), None),
            ],
        ),
        (
            worker,
            [
                (f"ipc://{lifecycle.node_socket_path(_session_dir(worker))}", _identity(16), None),
                (f"tcp://127.0.0.1:{worker.port}", _identity(16) + b"P", cluster.token),
                (f"tcp://127.0.0.1:{_data_port(worker)}", _identity(8), None),
            ],
        ),
    ]
    expected = [_faults(node)["messages_dropped"] for node, _ in ports]
    context = zmq.Context()
    try:
        for index, (_, endpoints) in enumerate(ports):
            for endpoint, identity, token in endpoints:
                _send_each(_dealer(context, endpoint, identity, token), frames)  # one message each
                expected[index] += len(frames)
    finally:
        context.term()
    for (node, _), count in zip(ports, expected):
        _wait_dropped(node, count)
    _serves_tasks(cluster)
    # Twenty thousand drops, a few dozen lines: the log is rate-limited, the counters are exact.
    grown = os.path.getsize(head_log) - log_size
    assert grown < 64 * 1024, f"the log grew by {grown} bytes for {len(frames) * 4} dropped messages"


def test_the_counters_show_in_shoal_status(cluster):
    status = subprocess.run(
        [sys.executable, "-m", "shoal.cli", "status"], capture_output=True, text=True, timeout=60, env=cluster.env
    )
    assert status.returncode == 0, status.stderr
    assert re.search(r"Node \w+ dropped \d+ malformed or unexpected message", status.stdout), status.stdout
