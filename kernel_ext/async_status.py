"""The status line of a `%%remote --async` cell, in that cell's own output.

Shown in the cell when it is submitted (running), and replaced when the cell's task ends (done
in N s, or failed, with the error) from whichever thread notices: the async watcher's, or the
main thread just before the next cell. Every message carries the async cell's parent header
and the status's display id, so it lands in the async cell, not in the cell running then.
The final line is also sent once more as `shoal.shutdown()` begins, under the cell running then
(`shoal.widgets.final_states`), for frontends that hear only the running cell's messages
(nbclient, so a notebook run by `make notebooks` stores "done", not "running").
Kernel only (it sends on the kernel's iopub socket); nothing here blocks or imports IPython.

    %%remote --async cell ──▶ AsyncCellStatus(kernel) ──▶ display_data(display_id) "running"
    watcher: task ended   ──▶ done(...) / failed(error) ──▶ update_display_data, same parent
    shoal.shutdown() begins ──▶ final_states ──▶ update(...) ──▶ update_display_data, current parent
"""

from __future__ import annotations

import html
import time
import traceback
import uuid

__all__ = ["AsyncCellStatus"]

_COLORS = {"running": "#555", "done": "#2e7d32", "failed": "#c62828"}


def _error_lines(error: BaseException) -> list[str]:
    """The error as IPython would show it: a remote traceback for task errors, else one line."""
    render = getattr(error, "_render_traceback_", None)
    if render is not None:
        try:
            return list(render())
        except Exception:  # a broken renderer must not hide the error itself
            pass
    return "".join(traceback.format_exception_only(type(error), error)).rstrip("\n").splitlines()


class AsyncCellStatus:
    """One async cell's status display; made in the cell (its parent is the current one).

    Args:
        kernel: The ipykernel Kernel (its session, iopub socket and current parent).
        out_ref: The name the cell's value ref is bound to, for the hints.
        clock: Monotonic seconds (tests pass their own).
    """

    def __init__(self, kernel, out_ref: str, clock=time.monotonic) -> None:
        self._kernel = kernel
        self._out_ref = out_ref
        self._clock = clock
        self._started_at = clock()
        self._parent = kernel.get_parent("shell") or {}
        self.display_id = uuid.uuid4().hex
        self.text = ""
        self._show("running", f"%%remote --async: running; shoal.get({out_ref}) waits for its value", update=False)

    def done(self, pushed: list[str], skipped: dict[str, str]) -> None:
        """The cell finished: say how long it took and which names it wrote back.

        Args:
            pushed: The names written into the notebook.
            skipped: Names not written back, with the reason.
        """
        text = f"%%remote --async: done in {self._elapsed_s():.1f} s"
        if pushed:
            text += f"; wrote back {', '.join(pushed)}"
        if skipped:
            text += "; not written back: " + "; ".join(f"{name}: {reason}" for name, reason in skipped.items())
        self._show("done", text)

    def failed(self, error: BaseException) -> None:
        """The cell failed: the status says so and shows the error under it."""
        cause = getattr(error, "cause", None)  # a task error's own exception, as the user raised it
        kind = type(cause if isinstance(cause, BaseException) else error).__name__
        head = (
            f"%%remote --async: failed after {self._elapsed_s():.1f} s "
            f"with {kind}; shoal.get({self._out_ref}) raises it"
        )
        self._show("failed", "\n".join([head, *_error_lines(error)]))

    def abandoned(self, reason: str) -> None:
        """Nothing waits for the cell any more (`reason`, such as a shutdown); it never reports."""
        self._show("failed", f"%%remote --async: not finished after {self._elapsed_s():.1f} s when {reason}")

    def show_displays(self, messages: list) -> None:
        """Rich output the cell returned (not sent live), into the async cell after its status line."""
        for message in messages:
            if "clear" in message:
                continue  # clearing would remove the status line too
            content = {
                "data": message.get("data") or {},
                "metadata": message.get("metadata") or {},
                "transient": message.get("transient") or {},
            }
            self._send("update_display_data" if message.get("update") else "display_data", content)

    # ------------------------------------------------------------------------------ sending

    def _elapsed_s(self) -> float:
        return max(0.0, self._clock() - self._started_at)

    def update(self, data: dict, raw: bool = True) -> None:
        """Show `data` as the status line again, under the cell running now (the display
        handle `final_states` calls as shutdown begins).

        Args:
            data: The mime bundle.
            raw: Always true: `data` is a mime bundle (the display handle's signature).
        """
        content = {"data": data, "metadata": {}, "transient": {"display_id": self.display_id}}
        self._send("update_display_data", content, parent=self._kernel.get_parent("shell") or self._parent)

    def _show(self, state: str, text: str, update: bool = True) -> None:
        from shoal.widgets import final_states

        self.text = text
        first, _, rest = text.partition("\n")
        body = f"<b>{html.escape(first)}</b>" + (f"<pre>{html.escape(rest)}</pre>" if rest else "")
        data = {
            "text/plain": text,
            "text/html": f"<div class='shoal-async' style='color:{_COLORS[state]}'>{body}</div>",
        }
        content = {"data": data, "metadata": {}, "transient": {"display_id": self.display_id}}
        self._send("update_display_data" if update else "display_data", content)
        if state != "running":
            final_states.remember(self, data)

    def _send(self, msg_type: str, content: dict, parent: dict | None = None) -> None:
        kernel = self._kernel
        # The iopub socket queues sends onto ipykernel's I/O thread, so any thread may send.
        parent = self._parent if parent is None else parent
        kernel.session.send(kernel.iopub_socket, msg_type, content, parent=parent, ident=b"display_data")
