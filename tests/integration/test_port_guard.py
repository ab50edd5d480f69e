"""PortGuard on a real ZeroMQ socket in this process: refusing connections beyond the limit and, on
the data port (close_unproven), closing at the deadline those that never proved themselves.

The guard takes the time as an argument, so the deadline is passed by handing it a later `now`.
"""

from __future__ import annotations

import logging
import socket

import pytest
import zmq
from shoal._core import config, port_guard
from shoal._core.fault_log import FaultLog

from tests.waiting import wait_for

PER_HOST = 2


@pytest.fixture
def guarded():
    settings = config.RuntimeConfig(max_unauthenticated_per_host=PER_HOST, handshake_timeout_s=5.0)
    context = zmq.Context()
    router = context.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    faults = FaultLog(logging.getLogger(__name__))
    guard = port_guard.PortGuard(router, port, settings, faults, close_unproven=True)
    opened: list = []
    try:
        yield guard, router, port, faults, opened
    finally:
        for connection in opened:
            connection.close()
        guard.close()
        router.close(linger=0)
        context.term()


def _closed(connection: socket.socket) -> bool:
    connection.setblocking(False)
    try:
        while connection.recv(4096):  # the greeting, then the end
            pass
    except BlockingIOError:
        return False
    except OSError:
        return True
    return True


def _settle(guard, now: float, predicate) -> None:
    wait_for(lambda: guard.drain(now) or predicate(), 10, lambda: f"unproven: {guard.gate.unproven()}")


def test_the_data_ports_guard_closes_connections_that_never_prove_themselves(guarded):
    guard, router, port, faults, opened = guarded
    dealer_context = zmq.Context()
    signer = dealer_context.socket(zmq.DEALER)
    signer.setsockopt(zmq.LINGER, 0)
    try:
        signer.connect(f"tcp://127.0.0.1:{port}")
        signer.send(b"a request the node found correctly signed")
        wait_for(lambda: router.poll(0), 10)
        frames = router.recv_multipart(copy=False)
        _settle(guard, 0.0, lambda: guard.gate.unproven() == 1)
        guard.proven(frames[0].get(zmq.SRCFD))  # what _serve_data_requests does for a signed request
        assert guard.gate.unproven() == 0
        opened += [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(PER_HOST + 1)]
        _settle(guard, 1.0, lambda: faults.refused_connections == 1)
        assert guard.gate.unproven() == PER_HOST
        assert sum(_closed(connection) for connection in opened) == 1  # the one beyond the limit, at once
        _settle(guard, 4.9, lambda: True)
        assert not any(_closed(connection) for connection in opened[:PER_HOST])
        guard.drain(6.0)  # past the deadline: the idle ones go, the one that signed stays
        wait_for(lambda: all(_closed(connection) for connection in opened), 10)
        assert faults.refused_connections == 1 + PER_HOST
        signer.send(b"still connected")
        wait_for(lambda: router.poll(0), 10, lambda: "the proven connection was closed")
    finally:
        signer.close()
        dealer_context.term()
