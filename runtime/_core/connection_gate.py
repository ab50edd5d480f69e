"""Which connections to a CURVE port have not yet proved themselves, and which new ones to refuse.

A connection is unproven from the moment it is accepted until a message arrives on it (libzmq
delivers messages only from connections that passed the handshake) or until the handshake
timeout has passed (libzmq closes a connection whose handshake did not finish by then, so one
still open after it is authenticated). At most `per_host` unproven connections from one
address, and `total` in all: beyond those a new connection is refused, so a flood of half-open
connections costs a bounded amount of memory however long it lasts.

Pure state: no sockets, no clock (`now` is an argument).
"""

from __future__ import annotations


class ConnectionGate:
    def __init__(self, per_host: int, total: int, handshake_timeout_s: float):
        self.per_host = per_host
        self.total = total
        self.handshake_timeout_s = handshake_timeout_s
        self._unproven: dict[int, tuple[str, float]] = {}  # descriptor -> (peer host, accepted at)
        self._by_host: dict[str, int] = {}

    def accepted(self, fd: int, host: str, now: float) -> str | None:
        """A connection was accepted: None to keep it, else why it must be refused."""
        self._forget(fd)  # a descriptor number is reused once its connection has closed
        self.expire(now)
        if self._by_host.get(host, 0) >= self.per_host:
            return f"{self.per_host} connections from {host} have not finished the handshake yet"
        if len(self._unproven) >= self.total:
            return f"{self.total} connections have not finished the handshake yet"
        self._unproven[fd] = (host, now)
        self._by_host[host] = self._by_host.get(host, 0) + 1
        return None

    def proven(self, fd: int) -> None:
        """A message came on this connection: it is authenticated."""
        if fd in self._unproven:
            self._forget(fd)

    def closed(self, fd: int) -> None:
        self._forget(fd)

    def expire(self, now: float) -> None:
        """Connections older than the handshake timeout are authenticated (or already closed)."""
        deadline = now - self.handshake_timeout_s
        for fd in [fd for fd, (_, at) in self._unproven.items() if at <= deadline]:
            self._forget(fd)

    def unproven(self) -> int:
        return len(self._unproven)

    def _forget(self, fd: int) -> None:
        entry = self._unproven.pop(fd, None)
        if entry is not None:
            host = entry[0]
            left = self._by_host[host] - 1
            if left:
                self._by_host[host] = left
            else:
                del self._by_host[host]
