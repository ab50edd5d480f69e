"""The data port between nodes: a pull outlives a connection that drops its chunks, and idle
strangers are bounded like on the CURVE port.

Two `shoal start --block` nodes on 127.0.0.1 (head: `head_only`, worker: `node_a`) with a short
chunk timeout and handshake deadline, small limits on unproven connections, and a node timeout
long enough to hold a node manager stopped (SIGSTOP) for a moment without it being declared dead.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket

import numpy as np
import psutil
import pytest
import shoal
import zmq
from shoal._core import protocol

from tests.cluster.nodes import LocalCluster
from tests.waiting import wait_for

HANDSHAKE_TIMEOUT_S = 2.0
PER_HOST = 4
_SYS_PIDFD_GETFD = 438  # the same number on every Linux architecture


@pytest.fixture(scope="module")
def cluster():
    local = LocalCluster(
        env={
            "SHOAL_PULL_CHUNK_TIMEOUT_S": "1",
            "SHOAL_HANDSHAKE_TIMEOUT_S": str(HANDSHAKE_TIMEOUT_S),
            "SHOAL_MAX_UNAUTHENTICATED_PER_HOST": str(PER_HOST),
            "SHOAL_NODE_TIMEOUT_S": "30",
        }
    )
    try:
        local.head = local.start_head({"head_only": 1})
        local.worker = local.add_node({"node_a": 1})
        shoal.init(address="auto")
        yield local
    finally:
        shoal.shutdown()
        local.stop()


@shoal.remote(num_cpus=0, num_returns=2)
def made(floats: int):
    """(a small flag, a big array): once the flag is here the array is stored where it was made."""
    return True, np.arange(floats, dtype=np.float64)


@shoal.remote(num_cpus=0)
def total(values) -> float:
    return float(values.sum())


def _expected(floats: int) -> float:
    return float(np.arange(floats, dtype=np.float64).sum())


def _on(resource: str):
    return {"resources": {resource: 0.01}}


def _data_port(node) -> int:
    listening = {c.laddr.port for c in psutil.Process(node.manager_pid).net_connections("tcp") if c.status == "LISTEN"}
    (port,) = listening - {node.port}
    return port


def _connections_to(pid: int, port: int) -> list:
    return [
        c
        for c in psutil.Process(pid).net_connections("tcp")
        if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
    ]


def _unread_bytes(local_port: int, remote_port: int) -> int:
    """Bytes the kernel holds for the socket local_port <- remote_port that nobody has read yet."""
    with open("/proc/net/tcp") as table:
        for line in list(table)[1:]:
            fields = line.split()
            local, remote, queues = fields[1], fields[2], fields[4]
            if int(local.split(":")[1], 16) == local_port and int(remote.split(":")[1], 16) == remote_port:
                return int(queues.split(":")[1], 16)
    return 0


def _cut(pid: int, fd: int) -> None:
    """Shut down another process's TCP connection (on a duplicate of its descriptor): whatever it
    had sent or was about to receive on it is lost."""
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    try:
        copy = libc.syscall(_SYS_PIDFD_GETFD, pidfd, fd, 0)
        if copy < 0:
            raise OSError(ctypes.get_errno(), f"pidfd_getfd({pid}, {fd})")
    finally:
        os.close(pidfd)
    with socket.socket(fileno=copy) as connection:
        connection.shutdown(socket.SHUT_RDWR)


def _refused(node) -> int:
    from shoal.util import state

    is_head = "head_only" in node.resources
    (row,) = [row for row in state.list_nodes() if row["state"] == "ALIVE" and row["is_head_node"] == is_head]
    return row["connections_refused"]


def test_a_pull_survives_a_connection_that_drops_its_chunk_requests(cluster):
    holder, puller = cluster.worker, cluster.head
    data_port = _data_port(holder)
    # A first pull opens (and proves) the head's connection to the worker's data port.
    flag, warm = made.options(**_on("node_a")).remote(1 << 20)
    assert shoal.get(total.options(**_on("head_only")).remote(warm), timeout=60) == _expected(1 << 20)
    (connection,) = _connections_to(puller.manager_pid, data_port)
    floats = 8 << 20  # 64 MiB: eight chunks, four asked for at once
    flag, big = made.options(**_on("node_a")).remote(floats)
    assert shoal.get(flag, timeout=60)
    os.kill(holder.manager_pid, signal.SIGSTOP)
    try:
        summed = total.options(**_on("head_only")).remote(big)  # the head asks the stopped holder for chunks
        wait_for(
            lambda: _unread_bytes(data_port, connection.laddr.port) > 0,
            30,
            lambda: "the head's chunk requests never reached the holder's socket",
        )
        _cut(puller.manager_pid, connection.fd)  # the requests die with the connection, unanswered
    finally:
        os.kill(holder.manager_pid, signal.SIGCONT)
    assert shoal.get(summed, timeout=60) == _expected(floats)


def _closed_by_server(connection: socket.socket) -> bool:
    try:
        while connection.recv(4096):
            pass
    except BlockingIOError:
        return False
    except OSError:
        return True
    return True


def _made_on(resource: str, floats: int = 1 << 20):
    flag, array = made.options(**_on(resource)).remote(floats)
    assert shoal.get(flag, timeout=60)
    return array


def test_idle_and_unsigned_connections_to_the_data_port_are_bounded_and_closed(cluster):
    flooded, puller = cluster.head, cluster.worker
    data_port = _data_port(flooded)
    # The worker pulls from the head once: its connection to the head's data port proves itself.
    assert shoal.get(total.options(**_on("node_a")).remote(_made_on("head_only")), timeout=60) == _expected(1 << 20)
    (proven,) = _connections_to(puller.manager_pid, data_port)
    before = _refused(flooded)
    idle = [socket.create_connection(("127.0.0.1", data_port), timeout=5) for _ in range(5 * PER_HOST)]
    context = zmq.Context()
    unsigned = context.socket(zmq.DEALER)
    unsigned.setsockopt(zmq.LINGER, 0)
    unsigned.setsockopt(zmq.RECONNECT_IVL, 60_000)  # once closed, it stays closed
    monitor = unsigned.get_monitor_socket(zmq.EVENT_DISCONNECTED)
    try:
        for connection in idle:
            connection.setblocking(False)
        # All but PER_HOST are refused at once ...
        wait_for(lambda: _refused(flooded) >= before + 4 * PER_HOST, 30, lambda: f"refused: {_refused(flooded)}")
        # ... while the worker goes on pulling from the head over the connection proven before.
        during = _made_on("head_only")
        assert shoal.get(total.options(**_on("node_a")).remote(during), timeout=60) == _expected(1 << 20)
        # A stranger that speaks the protocol but cannot sign is a stranger too.
        unsigned.connect(f"tcp://127.0.0.1:{data_port}")
        unsigned.send(protocol.encode(protocol.PullChunk(b"x" * 20, 0, 10, b"m" * 32)))
        # The rest are closed at the deadline, for never sending a signed request.
        wait_for(
            lambda: all(_closed_by_server(connection) for connection in idle),
            HANDSHAKE_TIMEOUT_S + 15,
            lambda: f"{sum(not _closed_by_server(c) for c in idle)} idle connections still open",
        )
        assert monitor.poll(int((HANDSHAKE_TIMEOUT_S + 15) * 1000)), "the unsigned connection was left open"
    finally:
        for connection in idle:
            connection.close()
        unsigned.disable_monitor()
        monitor.close()
        unsigned.close()
        context.term()
    assert _connections_to(puller.manager_pid, data_port) == [proven]  # never closed: it proved itself
    # A new connection from the worker is admitted now: cut its own, and it connects again.
    _cut(puller.manager_pid, proven.fd)
    after = _made_on("head_only")
    assert shoal.get(total.options(**_on("node_a")).remote(after), timeout=60) == _expected(1 << 20)
    assert _connections_to(puller.manager_pid, data_port) != [proven]
