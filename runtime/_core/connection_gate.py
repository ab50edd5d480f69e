"""Which connections to a port have not yet proved themselves, and which new ones to refuse.

A connection is unproven from the moment it is accepted until it proves itself (on a CURVE port
any message does: libzmq delivers messages only from connections that passed the handshake; on
the data port a signed request) or until the deadline has passed (`expire` returns those: a
CURVE port's libzmq closed it by then, or it is authenticated; the data port's guard closes
it). At most `per_host` unproven connections from one address, and `total` in all: beyond
those a new connection is refused, so a flood of half-open connections costs a bounded amount
of memory however long it lasts.

Pure state: no sockets, no clock (`now` is an argument).
"""

from __future__ import annotations


class ConnectionGate:
    def __init__(self, per_host: int, total: int, handshake_timeout_s: float, pending: str = "finished the handshake"):
        self.per_host = per_host
        self.total = total
        self.handshake_timeout_s = handshake_timeout_s
        self.pending = pending  # what an unproven connection has not done yet, for refusals
        self._unproven: dict[int, tuple[str, float]] = {}  # descriptor -> (peer host, accepted at)
        self._by_host: dict[str, int] = {}

    def accepted(self, fd: int, host: str, now: float) -> str | None:
        """A connection was accepted: None to keep it, else why it must be refused.

        Call `expire(now)` first, so connections past their deadline no longer count.
        """
        self._forget(fd)  # a descriptor number is reused once its connection has closed
        if self._by_host.get(host, 0) >= self.per_host:
            return f"{self.per_host} connections from {host} have not {self.pending} yet"
        if len(self._unproven) >= self.total:
            return f"{self.total} connections have not {self.pending} yet"
        self._unproven[fd] = (host, now)
        self._by_host[host] = self._by_host.get(host, 0) + 1
        return None

    def proven(self, fd: int) -> None:
        """A message came on this connection: it is authenticated."""
        if fd in self._unproven:
            self._forget(fd)

    def closed(self, fd: int) -> None:
        self._forget(fd)

    def expire(self, now: float) -> list[int]:
        """Forget the unproven connections older than the deadline; returns their descriptors."""
        deadline = now - self.handshake_timeout_s
        lapsed = [fd for fd, (_, at) in self._unproven.items() if at <= deadline]
        for fd in lapsed:
            self._forget(fd)
        return lapsed

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
