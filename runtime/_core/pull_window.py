"""Which chunks of one object being pulled from another node are asked for, in flight, in place.

A chunk request or its answer can be lost on the way (a connection that drops takes what it
carried with it, and nobody resends), so a chunk not here `timeout_s` after it was asked for is
asked for again, up to `attempts` times in all; after that the pull has failed. A late answer to
a chunk asked twice comes twice: only the first counts.

Pure state: no sockets, no clock (`now` is an argument).
"""

from __future__ import annotations


class PullWindow:
    def __init__(self, size: int, chunk_bytes: int, window_chunks: int, timeout_s: float, attempts: int):
        self.size = size
        self.chunk_bytes = chunk_bytes
        self.window_chunks = window_chunks
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.requested = 0  # chunks up to this offset have been asked for
        self.received = 0  # bytes in place
        self.in_flight: dict[int, list] = {}  # offset -> [length, asked at, times asked]

    @property
    def done(self) -> bool:
        return self.received >= self.size

    def to_request(self, now: float) -> list[tuple[int, int]]:
        """The next chunks to ask for, (offset, length) each, at most `window_chunks` in flight."""
        asks = []
        while self.requested < self.size and len(self.in_flight) < self.window_chunks:
            length = min(self.chunk_bytes, self.size - self.requested)
            self.in_flight[self.requested] = [length, now, 1]
            asks.append((self.requested, length))
            self.requested += length
        return asks

    def arrived(self, offset: int, length: int) -> bool:
        """A chunk came: True if it is one in flight (now in place), False if not (a duplicate, or
        not a chunk that was asked for)."""
        entry = self.in_flight.get(offset)
        if entry is None or entry[0] != length:
            return False
        del self.in_flight[offset]
        self.received += length
        return True

    def overdue(self, now: float) -> list[tuple[int, int]] | None:
        """The chunks to ask for again, (offset, length) each; None once one has been asked for
        `attempts` times and `timeout_s` has passed since the last."""
        again = []
        for offset, entry in self.in_flight.items():
            length, asked_at, times = entry
            if now - asked_at < self.timeout_s:
                continue
            if times >= self.attempts:
                return None
            entry[1], entry[2] = now, times + 1
            again.append((offset, length))
        return again
