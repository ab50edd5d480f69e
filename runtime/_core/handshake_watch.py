"""Why a node refused a CURVE connection: a wrong token, or its gate turning this host away.

libzmq reports both alike (EVENT_HANDSHAKE_FAILED_NO_DETAIL: the server closed the connection
during the handshake). They differ in when the node closes: with a wrong token it cannot decrypt
the client's HELLO, so it closes only after reading it; its ConnectionGate (port_guard) closes a
connection from a host with too many unauthenticated ones as soon as it is accepted, before
anything is read. So after a failure the watch opens a plain TCP connection to the port and
sends nothing:

    closed within probe_wait_s  ->  the gate refuses this host: keep waiting (libzmq reconnects)
    still open                  ->  the gate admits this host: twice in a row, the token is wrong

Two admitted probes are needed because a flood can end between a failure and its probe. Used by
the thread that connects (a driver's `connect`, a node joining its head), which owns the monitor.
"""

from __future__ import annotations

import socket
import time

import zmq
from zmq.utils.monitor import recv_monitor_message

PROBE_INTERVAL_S = 1.0  # while the gate refuses this host, probe at most this often
_REFUSED, _ADMITTED, _UNREACHABLE = "refused", "admitted", "unreachable"
_TOKEN_EVENTS = {
    getattr(zmq, name)
    for name in ("EVENT_HANDSHAKE_FAILED_AUTH", "EVENT_HANDSHAKE_FAILED_PROTOCOL")
    if hasattr(zmq, name)
}


class HandshakeWatch:
    def __init__(self, monitor, endpoint: str, probe_wait_s: float):
        self.monitor = monitor
        host, _, port = endpoint.removeprefix("tcp://").rpartition(":")
        self.address = (host.strip("[]"), int(port))
        self.probe_wait_s = probe_wait_s
        self.crowded = False  # the last probe was refused: too many unauthenticated connections from here
        self._admitted = 0  # failures in a row that the gate did not explain
        self._next_probe_at = 0.0

    def token_refused(self) -> bool:
        """Read the monitor's events; True once the failures seen can only be the token's."""
        failed = False
        while self.monitor.poll(0):
            event = recv_monitor_message(self.monitor)["event"]
            if event in _TOKEN_EVENTS:
                return True  # the node read our keys and said no
            if event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
                failed = True
            elif event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._admitted = 0
        if not failed or time.monotonic() < self._next_probe_at:
            return False
        outcome = probe(self.address, self.probe_wait_s)
        self.crowded = outcome == _REFUSED
        if outcome == _ADMITTED:
            self._admitted += 1
        else:
            self._admitted = 0
            self._next_probe_at = time.monotonic() + PROBE_INTERVAL_S
        return self._admitted >= 2


def probe(address: tuple, wait_s: float) -> str:
    """Connect and send nothing: 'refused' if the node closes the connection within `wait_s`,
    'admitted' if it waits for us, 'unreachable' if nothing accepts it."""
    try:
        connection = socket.create_connection(address, timeout=wait_s)
    except OSError:
        return _UNREACHABLE
    deadline = time.monotonic() + wait_s
    try:
        while (remaining := deadline - time.monotonic()) > 0:
            connection.settimeout(remaining)
            if not connection.recv(4096):  # the node's greeting, then the end
                return _REFUSED
    except TimeoutError:
        return _ADMITTED
    except OSError:
        return _REFUSED  # reset
    finally:
        connection.close()
    return _ADMITTED
