"""How a driver with no front end (a script, a terminal) prints its workers' output.

Each line goes to the driver's stdout or stderr, as the worker wrote it, after a
`(task_name pid=N) ` prefix. Text without a newline (`print(..., end="")`, a progress line
redrawn with `\r`) is printed once it has waited `PARTIAL_LINE_DELAY_S`, as ipykernel holds a
local print and the kernel extension a worker's; the rest of that line then follows as it comes,
without a second prefix. Another task's text on the same stream ends such an open line first,
and after a `\r` the prefix is repeated, so a redrawn line keeps it.

    client I/O thread ──print_records(records)──▶ whole lines written, the rest held
    shoal-driver-logs (a timer, only while text is held) ──▶ held text written, its line left open
    shutdown ──close()──▶ held text written, open lines ended

The Jupyter layer replaces this printing with its own (`shoal.util.output.set_log_handler`).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

PARTIAL_LINE_DELAY_S = 0.2  # as long as ipykernel holds a local print before sending it
_CLOSE_TIMEOUT_S = 2.0


@dataclass
class _Held:
    """The text of a task's line (on one stream) not printed yet."""

    prefix: str
    text: str = ""
    since: float = 0.0


class DriverLogPrinter:
    """Prints worker output records; `close()` at shutdown. Any thread may call it.

    Args:
        rename_stderr: Rewrites a whole stderr line before it is printed (a warning's location
            named as IPython names a notebook cell); None leaves lines as they are.
        streams: Returns the file for "stdout" or "stderr" (looked up at each write, so a
            redirected `sys.stdout` is honoured).
        delay_s: How long text without a newline waits for the rest of its line.
        clock: Monotonic seconds (tests pass their own).
    """

    def __init__(
        self,
        rename_stderr: Callable[[str], str] | None = None,
        streams: Callable[[str], TextIO] | None = None,
        delay_s: float = PARTIAL_LINE_DELAY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rename_stderr = rename_stderr
        self._streams = streams or (lambda name: sys.stderr if name == "stderr" else sys.stdout)
        self.delay_s = delay_s
        self._clock = clock
        self._lock = threading.Lock()
        self._held: dict[tuple, _Held] = {}  # (task_id, stream) -> its line's unprinted text
        self._open: dict[str, tuple] = {}  # stream -> the key whose line is printed but not ended
        self._timer: threading.Timer | None = None
        self._closed = False

    def print_records(self, records: list) -> None:
        """Print what the records complete; hold the rest of each line (the client's I/O thread)."""
        with self._lock:
            if self._closed:
                return
            now = self._clock()
            for record in records:
                self._take(record, now)
            self._schedule(now)

    def flush_due(self) -> None:
        """Print the held text that has waited `delay_s` (the timer calls this)."""
        with self._lock:
            self._timer = None
            if self._closed:
                return
            now = self._clock()
            for key, held in list(self._held.items()):
                if held.text and now - held.since >= self.delay_s:
                    self._write(key, held, held.text, ends_line=False)
            self._schedule(now)

    def close(self) -> None:
        """Print all held text, end open lines and stop the timer; idempotent, bounded."""
        with self._lock:
            if self._closed:
                return
            for key, held in list(self._held.items()):
                if held.text:
                    self._write(key, held, held.text, ends_line=False)
            for stream in list(self._open):
                self._end_open_line(stream)
            self._closed = True
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
            if timer is not threading.current_thread():
                timer.join(_CLOSE_TIMEOUT_S)

    # ------------------------------------------------------------------------ with the lock held

    def _take(self, record, now: float) -> None:
        key = (record.task_id, record.stream)
        held = self._held.get(key)
        if held is None:
            held = self._held[key] = _Held(f"({record.task_name} pid={record.pid}) ")
        text = held.text + record.text
        *whole_lines, rest = text.split("\n")
        for line in whole_lines:
            if record.stream == "stderr" and self._rename_stderr is not None:
                line = self._rename_stderr(line)
            self._write(key, held, line, ends_line=True)
        if not rest:
            held.text = ""
            if self._open.get(record.stream) != key:
                del self._held[key]  # nothing pending for this task's stream
        elif self._open.get(record.stream) == key:
            self._write(key, held, rest, ends_line=False)  # its start is printed: continue it
        else:
            if not held.text or whole_lines:
                held.since = now  # the wait starts with the line's first unprinted text
            held.text = rest

    def _write(self, key: tuple, held: _Held, text: str, ends_line: bool) -> None:
        """Write `text` of `key`'s line: its prefix first unless the line is already open."""
        stream = key[1]
        start = ""
        if self._open.get(stream) != key:
            if stream in self._open:
                start = "\n"  # another task's line is open: end it, so this one starts a line
                self._drop_open(stream)
            start += held.prefix
        out = start + text.replace("\r", "\r" + held.prefix) + ("\n" if ends_line else "")
        held.text = ""
        if ends_line:
            self._open.pop(stream, None)
        else:
            self._open[stream] = key
        self._emit(stream, out)

    def _end_open_line(self, stream: str) -> None:
        self._drop_open(stream)
        self._emit(stream, "\n")

    def _drop_open(self, stream: str) -> None:
        key = self._open.pop(stream)
        held = self._held.get(key)
        if held is not None and not held.text:
            del self._held[key]

    def _emit(self, stream: str, text: str) -> None:
        try:
            out = self._streams(stream)
            out.write(text)
            out.flush()
        except Exception:  # a closed or broken stdout must not stop the client's I/O thread
            pass

    def _schedule(self, now: float) -> None:
        if self._timer is not None:
            return
        waiting = [held.since for held in self._held.values() if held.text]
        if not waiting:
            return
        self._timer = threading.Timer(max(0.0, min(waiting) + self.delay_s - now) + 0.01, self.flush_due)
        self._timer.name = "shoal-driver-logs"
        self._timer.daemon = True
        self._timer.start()
