"""Worker output into the notebook cell that submitted the task, over the kernel's iopub channel.

Wires `cell_output.CellOutputState` to ipykernel: a submit listener records the cell executing
when each task is submitted, and the log handler (on the client's I/O thread) sends each cell's
lines as `stream` messages with that cell's parent header, so they land in that cell even while
a later one runs. Rich output of `%%remote` cells arrives on the same channel as marked records
(`cell_display`) and goes out as `display_data` (or `update_display_data` / `clear_output`),
in order with the text around it. Text without a newline goes out after a short delay (a timer
on `shoal-output-notes`), or at once when a wait's summary line is due (`flush_partial_lines`).
Installed by `%load_ext shoal` only inside an ipykernel; a plain IPython shell keeps the
runtime's own printing. Must not block: the handler runs on the client's I/O
thread and the listener on every submit.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict

from shoal.util import output

from . import cell_display
from .cell_output import CellOutputState, StreamChunk

__all__ = ["KernelOutputRouter", "kernel_of"]

logger = logging.getLogger(__name__)

MAX_TRACKED_PARENTS = 1_000
CLOSE_TIMEOUT_S = 2.0


def kernel_of(shell):
    """The ipykernel Kernel behind `shell`, or None in a plain IPython shell."""
    kernel = getattr(shell, "kernel", None)
    if kernel is None or not all(hasattr(kernel, name) for name in ("session", "iopub_socket", "get_parent")):
        return None
    return kernel


def _display_message(record: dict) -> dict | None:
    if record.get("stream") != "stdout":
        return None
    return cell_display.decode_record(record.get("text"))


class KernelOutputRouter:
    """Routes worker output to the cell that submitted each task; `install()` then `close()`.

    Args:
        kernel: The ipykernel Kernel whose session and iopub socket carry the messages.
    """

    def __init__(self, kernel) -> None:
        self._kernel = kernel
        self._lock = threading.Lock()
        self._state = CellOutputState()
        self._parents: OrderedDict[str, dict] = OrderedDict()
        self._timer: threading.Timer | None = None
        self._closed = False

    def install(self) -> None:
        """Start routing: register the submit listener and the log handler."""
        output.add_submit_listener(self._on_submit)
        output.set_log_handler(self._on_records)

    def close(self) -> None:
        """Stop routing and give printing back to the runtime; idempotent and bounded."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            timer, self._timer = self._timer, None
        output.remove_submit_listener(self._on_submit)
        output.set_log_handler(None)
        if timer is not None:
            timer.cancel()
            if timer is not threading.current_thread():
                timer.join(CLOSE_TIMEOUT_S)

    def flush_partial_lines(self) -> None:
        """Send every unfinished line now (any thread): a line that must follow them is next."""
        try:
            with self._lock:
                if not self._closed:
                    self._send(self._state.flush_partial_lines())
        except Exception:  # output must never break the caller (a cell's wait)
            logger.exception("sending unfinished output lines to the notebook failed")

    # ------------------------------------------------------------------------ callbacks

    def _current_parent(self) -> dict:
        try:
            return self._kernel.get_parent("shell") or {}
        except Exception:  # an older kernel, or one shutting down: route to no cell
            return {}

    def _remember(self, parent: dict) -> str | None:
        msg_id = (parent.get("header") or {}).get("msg_id")
        if msg_id:
            self._parents[msg_id] = parent
            self._parents.move_to_end(msg_id)
            if len(self._parents) > MAX_TRACKED_PARENTS:
                self._parents.popitem(last=False)
        return msg_id

    def _on_submit(self, task_id: str) -> None:
        parent = self._current_parent()
        with self._lock:
            self._state.submitted(task_id, self._remember(parent))

    def _on_records(self, records: list) -> None:
        parent = self._current_parent()
        try:
            with self._lock:
                if self._closed:
                    return
                current_cell = self._remember(parent)
                pending: list = []
                for record in records:
                    message = _display_message(record)
                    if message is None:
                        pending.append(record)
                        continue
                    # Text before the display goes out first, so the cell reads in order.
                    self._send(self._state.receive(pending, time.monotonic(), current_cell))
                    pending = []
                    cell_key, chunks = self._state.display(record, current_cell)
                    self._send(chunks)
                    self._send_display(cell_key, message)
                self._send(self._state.receive(pending, time.monotonic(), current_cell))
                self._schedule_notes()
        except Exception:  # output must never take down the client's I/O thread
            logger.exception("routing worker output to the notebook failed")

    def _flush_notes(self) -> None:
        try:
            with self._lock:
                self._timer = None
                if self._closed:
                    return
                self._send(self._state.flush_due(time.monotonic()))
                self._schedule_notes()
        except Exception:
            logger.exception("sending output notes to the notebook failed")

    # ------------------------------------------------------------------------ with lock held

    def _schedule_notes(self) -> None:
        due = self._state.next_due()
        if due is None or self._timer is not None:
            return
        self._timer = threading.Timer(max(0.0, due - time.monotonic()) + 0.01, self._flush_notes)
        self._timer.name = "shoal-output-notes"
        self._timer.daemon = True
        self._timer.start()

    def _send(self, chunks: list[StreamChunk]) -> None:
        kernel = self._kernel
        for chunk in chunks:
            parent = self._parents.get(chunk.cell, {}) if chunk.cell else {}
            # The iopub socket queues sends onto ipykernel's I/O thread, so any thread may send.
            kernel.session.send(
                kernel.iopub_socket,
                "stream",
                {"name": chunk.stream, "text": chunk.text},
                parent=parent,
                ident=b"stream." + chunk.stream.encode(),
            )

    def _send_display(self, cell_key: str | None, message: dict) -> None:
        parent = self._parents.get(cell_key, {}) if cell_key else {}
        if "clear" in message:
            msg_type, content = "clear_output", {"wait": bool(message["clear"])}
        else:
            msg_type = "update_display_data" if message.get("update") else "display_data"
            content = {
                "data": message.get("data") or {},
                "metadata": message.get("metadata") or {},
                "transient": message.get("transient") or {},
            }
        self._kernel.session.send(self._kernel.iopub_socket, msg_type, content, parent=parent, ident=b"display_data")
