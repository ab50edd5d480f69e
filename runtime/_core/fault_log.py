"""What a node manager dropped or survived: counts for the state API, and a log that stays small.

A flood of malformed messages must not become a flood of log lines (one client once wrote
240 KB/s of warnings). Each kind of fault logs its first few occurrences per interval and then
only counts; the next line of that kind, or `flush`, says how many lines were left out.

Pure bookkeeping: no sockets, no threads, no clock (`now` is an argument); the logger is given.
"""

from __future__ import annotations

import logging

DROP_REASONS = (
    "malformed",  # did not decode as a shoal record
    "invalid",  # a field of the wrong type or size
    "unexpected",  # a kind this port does not take
    "unsigned",  # a data-port request without a valid signature
    "oversized",  # pieces of a frame that do not add up, or exceed max_message_bytes
    "unknown_node",  # from a node that is not (or no longer) in the cluster
    "refused",  # a well-formed request this sender may not make
)


class FaultLog:
    """Counters of dropped messages, handler errors and refused connections, logged rate-limited."""

    def __init__(self, log: logging.Logger, interval_s: float = 60.0, lines_per_interval: int = 5):
        self.log = log
        self.interval_s = interval_s
        self.lines_per_interval = lines_per_interval
        self.dropped: dict[str, int] = dict.fromkeys(DROP_REASONS, 0)
        self.handler_errors = 0
        self.refused_connections = 0
        self._windows: dict[str, list] = {}  # kind -> [window start, lines logged, lines left out]

    def drop(self, reason: str, text: str, now: float) -> None:
        """A message was dropped; `text` says what and from whom."""
        self.dropped[reason] += 1
        self._log(reason, logging.WARNING, "dropping %s", text, now)

    def handler_error(self, text: str, now: float) -> None:
        """A handler (or a step of the loop) raised; call from the `except` block (logs the traceback)."""
        self.handler_errors += 1
        self._log("handler_error", logging.ERROR, "error %s (the node manager goes on)", text, now, exc_info=True)

    def refused_connection(self, text: str, now: float) -> None:
        self.refused_connections += 1
        self._log("refused_connection", logging.WARNING, "refusing a connection: %s", text, now)

    def totals(self) -> dict:
        """The counters in the state API's form (node rows, heartbeats)."""
        return {
            "messages_dropped": sum(self.dropped.values()),
            "handler_errors": self.handler_errors,
            "connections_refused": self.refused_connections,
        }

    def flush(self, now: float) -> None:
        """Say how many lines were left out in windows that have ended (call now and then)."""
        for kind, window in list(self._windows.items()):
            if now - window[0] >= self.interval_s:
                del self._windows[kind]
                if window[2]:
                    self.log.warning("%d more %s lines left out in the last %.0f s", window[2], kind, now - window[0])

    def _log(self, kind: str, level: int, template: str, text: str, now: float, exc_info: bool = False) -> None:
        window = self._windows.get(kind)
        left_out = 0
        if window is None or now - window[0] >= self.interval_s:
            left_out = window[2] if window is not None else 0
            window = self._windows[kind] = [now, 0, 0]
        if window[1] >= self.lines_per_interval:
            window[2] += 1
            return
        window[1] += 1
        suffix = f" ({left_out} more like it left out before)" if left_out else ""
        if window[1] == self.lines_per_interval:
            suffix += f" (further {kind} lines are counted, not logged, for {self.interval_s:.0f} s)"
        self.log.log(level, template + "%s", text, suffix, exc_info=exc_info)
