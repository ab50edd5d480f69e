"""Every frame a node manager receives passes here before any handler sees it.

A mixin of NodeManagerService. A frame must decode and pass the schema (message_schema) to reach
its handler; what fails is dropped, and what a handler (or any step of a loop turn) raises is
survived. Both are counted for the state API and logged rate-limited (fault_log), so no message,
on any port, ends the node manager's loop.
"""

from __future__ import annotations

import time

from . import message_schema
from .fault_log import FaultLog


class MessageIntake:
    faults: FaultLog

    def _guarded(self, step, *args) -> None:
        """Run one step of a loop turn; what it raises is logged (rate-limited), counted, and survived."""
        try:
            step(*args)
        except Exception:
            self.survived(f"in {getattr(step, '__name__', 'a socket handler')}")

    def dropped(self, reason: str, text: str) -> None:
        self.faults.drop(reason, text, time.monotonic())

    def survived(self, text: str) -> None:
        """Call in an `except` block: count the handler error and log it with its traceback."""
        self.faults.handler_error(text, time.monotonic())

    def checked_message(self, frame: bytes, sender: bytes, what: str = "client"):
        """The record in `frame` if it decodes and passes the schema, else None (dropped, counted)."""
        message, reason, problem = message_schema.checked(frame)
        if message is None:
            assert reason is not None  # checked() names why it refused a frame
            self.dropped(reason, f"a {reason} message from {what} {sender[:20].hex()}: {problem}")
        return message
