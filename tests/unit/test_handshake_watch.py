"""Unit tests for the probe that tells a node's gate refusing this host from a wrong token."""

from __future__ import annotations

import socket
import threading

from shoal._core import handshake_watch


def _listener() -> socket.socket:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    return server


def test_a_port_that_closes_the_connection_at_once_refuses_and_one_that_waits_admits():
    with _listener() as server:
        address = server.getsockname()

        def refuse_one() -> None:
            connection, _ = server.accept()
            connection.sendall(b"\xff greeting")  # the node greets, then its gate shuts the connection
            connection.close()

        refusing = threading.Thread(target=refuse_one)
        refusing.start()
        try:
            assert handshake_watch.probe(address, wait_s=5.0) == "refused"
        finally:
            refusing.join(10)
        # Nobody closes it now (the kernel accepted it into the backlog): the node waits for a handshake.
        assert handshake_watch.probe(address, wait_s=0.2) == "admitted"


def test_a_port_nobody_listens_on_is_unreachable():
    with _listener() as server:
        address = server.getsockname()
    assert handshake_watch.probe(address, wait_s=0.2) == "unreachable"
