"""The node's CURVE port against strangers: small frames, a handshake deadline, few half-open connections.

Before the CURVE handshake has authenticated a peer, libzmq already reads its frames, so the
listening socket takes frames of at most `tcp_frames.SOCKET_MAX_BYTES` (senders cut bigger ones
in pieces) and closes connections that have not finished the handshake within
`handshake_timeout_s` (ZMQ_HANDSHAKE_IVL). libzmq has no limit on how many connections it
accepts, so PortGuard watches the socket's monitor and shuts down, at once, each connection
beyond what ConnectionGate allows:

    CURVE ROUTER ──monitor (inproc PAIR)──> PortGuard.drain ──> ConnectionGate.accepted
                                                 └─ refused: shutdown(2) on a duplicate of its fd

Used only by the node manager's thread, like the sockets it watches.
"""

from __future__ import annotations

import os
import socket

import zmq
from zmq.utils.monitor import parse_monitor_message

from . import tcp_frames
from .connection_gate import ConnectionGate

_EVENTS = zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_CLOSED


def configure(router, config) -> None:
    """Options a listening CURVE socket needs before it binds."""
    router.setsockopt(zmq.MAXMSGSIZE, tcp_frames.SOCKET_MAX_BYTES)
    router.setsockopt(zmq.HANDSHAKE_IVL, max(1, int(config.handshake_timeout_s * 1000)))


class PortGuard:
    def __init__(self, router, port: int, config, faults):
        self.router = router
        self.port = port
        self.faults = faults
        self.gate = ConnectionGate(
            config.max_unauthenticated_per_host, config.max_unauthenticated_connections, config.handshake_timeout_s
        )
        self.monitor = router.get_monitor_socket(_EVENTS)

    def drain(self, now: float) -> None:
        """Apply the monitor's events: admit or refuse new connections, forget closed ones."""
        for _ in range(1000):
            try:
                frames = self.monitor.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            event = parse_monitor_message(frames)
            fd = int(event["value"])
            if event["event"] == zmq.EVENT_ACCEPTED:
                self._accepted(fd, now)
            else:
                self.gate.closed(fd)

    def proven(self, fd: int) -> None:
        """A message arrived on the connection with this descriptor (zmq.SRCFD)."""
        self.gate.proven(fd)

    def close(self) -> None:
        try:
            self.router.disable_monitor()
        except zmq.ZMQError:
            pass
        self.monitor.close(linger=0)

    def _accepted(self, fd: int, now: float) -> None:
        connection = _duplicate(fd, self.port)
        if connection is None:
            return  # already closed: its DISCONNECTED event follows
        try:
            try:
                host = connection.getpeername()[0]
            except OSError:
                return
            refusal = self.gate.accepted(fd, host, now)
            if refusal is not None:
                self.gate.closed(fd)
                self.faults.refused_connection(f"{host} on port {self.port}: {refusal}", now)
                try:
                    connection.shutdown(socket.SHUT_RDWR)  # libzmq sees the end and drops it
                except OSError:
                    pass
        finally:
            connection.close()  # closes only the duplicate


def _duplicate(fd: int, port: int) -> socket.socket | None:
    """A duplicate of the descriptor, if it still is a connection accepted on `port`."""
    try:
        copy_fd = os.dup(fd)
    except OSError:
        return None
    try:
        connection = socket.socket(fileno=copy_fd)
    except OSError:
        os.close(copy_fd)
        return None
    try:
        if connection.type != socket.SOCK_STREAM or connection.getsockname()[1] != port:
            connection.close()
            return None
    except OSError:
        connection.close()
        return None
    return connection
