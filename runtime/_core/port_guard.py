"""The node's TCP ports against strangers: small frames, a deadline, few half-open connections.

Before the CURVE handshake has authenticated a peer, libzmq already reads its frames, so the
listening socket takes frames of at most `tcp_frames.SOCKET_MAX_BYTES` (senders cut bigger ones
in pieces) and closes connections that have not finished the handshake within
`handshake_timeout_s` (ZMQ_HANDSHAKE_IVL). libzmq has no limit on how many connections it
accepts, so PortGuard watches the socket's monitor and shuts down, at once, each connection
beyond what ConnectionGate allows:

    CURVE ROUTER ──monitor (inproc PAIR)──> PortGuard.drain ──> ConnectionGate.accepted
                                                 └─ refused: shutdown(2) on a duplicate of its fd

The data port has no handshake to wait for (anyone can send it a request; only signed ones are
served), so its guard (`close_unproven`) also shuts down, at the deadline, each connection that
has not sent a signed request by then.

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
    def __init__(self, router, port: int, config, faults, close_unproven: bool = False):
        self.router = router
        self.port = port
        self.faults = faults
        self.close_unproven = close_unproven
        self.gate = ConnectionGate(
            config.max_unauthenticated_per_host,
            config.max_unauthenticated_connections,
            config.handshake_timeout_s,
            "sent a signed request" if close_unproven else "finished the handshake",
        )
        self.peers: dict[int, tuple] = {}  # with close_unproven: descriptor -> peer address, while unproven
        self.monitor = router.get_monitor_socket(_EVENTS)

    def drain(self, now: float) -> None:
        """Apply the monitor's events: admit or refuse new connections, forget closed ones; then
        let the unproven connections past their deadline go (closing them, with `close_unproven`)."""
        for _ in range(1000):
            try:
                frames = self.monitor.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            event = parse_monitor_message(frames)
            fd = int(event["value"])
            if event["event"] == zmq.EVENT_ACCEPTED:
                self._lapse(now)
                self._accepted(fd, now)
            else:
                self.gate.closed(fd)
                self.peers.pop(fd, None)
        self._lapse(now)

    def proven(self, fd: int) -> None:
        """The connection with this descriptor (zmq.SRCFD) proved itself: a message on a CURVE
        port, a signed request on the data port."""
        self.gate.proven(fd)
        self.peers.pop(fd, None)

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
            peer = connection.getpeername()
        except OSError:
            connection.close()
            return
        try:
            refusal = self.gate.accepted(fd, peer[0], now)
            if refusal is not None:
                self.gate.closed(fd)
                self.faults.refused_connection(f"{peer[0]} on port {self.port}: {refusal}", now)
                _shut(connection)
            elif self.close_unproven:
                self.peers[fd] = peer
        finally:
            connection.close()  # closes only the duplicate

    def _lapse(self, now: float) -> None:
        """Unproven connections past the deadline: on the data port, shut down if still the same."""
        for fd in self.gate.expire(now):
            peer = self.peers.pop(fd, None)
            if peer is None:
                continue
            connection = _duplicate(fd, self.port)
            if connection is None:
                continue
            try:
                if connection.getpeername() == peer:  # not a later connection that reused the number
                    self.faults.refused_connection(
                        f"{peer[0]} on port {self.port}: no signed request within {self.gate.handshake_timeout_s:g} s",
                        now,
                    )
                    _shut(connection)
            except OSError:
                pass
            finally:
                connection.close()


def _shut(connection: socket.socket) -> None:
    try:
        connection.shutdown(socket.SHUT_RDWR)  # libzmq sees the end and drops it
    except OSError:
        pass


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
