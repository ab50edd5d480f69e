"""`TaskView`: recent tasks as a table plus a timeline of what ran on which worker, kept live.

Reads `shoal.util.state.list_tasks`; the drawing is `task_timeline`'s. A `LiveView`: the
refresher thread re-reads the task list when the event snapshot says tasks changed (or while
some run), and the view is left as a static summary when the cluster shuts down.
"""

from __future__ import annotations

import html
import time

import ipywidgets

from . import refresher
from .live import LiveView
from .task_timeline import (
    TABLE_ROWS,
    recent_tasks,
    render_legend,
    render_table,
    render_timeline,
    row_word,
    task_name,
    word_counts,
)

__all__ = ["TaskView"]

_STYLE = "font-family:var(--jp-ui-font-family,sans-serif);font-size:13px"


class TaskView(LiveView):
    """Recent tasks (name, state, worker pid, duration) and a timeline of what ran where, with a
    time axis, a legend by function, and details when hovering a task.

    Updates by itself about once a second while tasks change, unless `SHOAL_NONINTERACTIVE=1`;
    Refresh re-reads at once. When the cluster shuts down its output becomes a static summary.

    Args:
        limit: how many of the most recent tasks to show.
        live: refresh on the refresher thread; None (default) means "unless non-interactive".

    Example:
        shoal.widgets.TaskView(limit=20)
    """

    def __init__(self, limit: int = 50, live: bool | None = None, **kwargs):
        if not isinstance(limit, int) or isinstance(limit, bool) or limit <= 0:
            raise ValueError(f"limit must be a positive int, got {limit!r}")
        self.limit = limit
        self.rows: list[dict] = []
        self._seen_counts: dict | None = None
        self._now_ms = int(time.time() * 1000)
        super().__init__(live=live, **kwargs)

    def refresh(self) -> None:
        """Re-read recent tasks from the state API and redraw."""
        with self._lock:
            if self.stopped:
                return  # the cluster is gone: keep the last state
            self._poll_now()
            self._draw()

    # ------------------------------------------------------------------ LiveView

    def _controls(self) -> list:
        self.refresh_button = ipywidgets.Button(description="Refresh", icon="refresh")
        self.refresh_button.on_click(self._on_refresh_clicked)
        return [self.refresh_button]

    def _poll(self, snapshot: dict | None) -> None:
        if snapshot is None:
            return
        counts = dict(snapshot.get("tasks_by_state") or {})
        running = any(row.get("start_time_ms") and not row.get("end_time_ms") for row in self.rows)
        # The task list is read only when the counts moved (a task started or ended) or while
        # a task runs (its bar grows); an idle cluster costs one dict comparison a second.
        if counts != self._seen_counts or running:
            self._seen_counts = counts
            self._poll_now()

    def _poll_now(self) -> None:
        import shoal
        from shoal.util import state

        rows = state.list_tasks(limit=10_000) if shoal.is_initialized() else []
        self.rows = recent_tasks([dict(row) for row in rows], self.limit)
        self._now_ms = int(time.time() * 1000)

    def _on_stop(self) -> None:
        self.refresh_button.disabled = True

    def _render_html(self) -> str:
        counts = word_counts(self.rows)
        summary = ", ".join(f"{count} {word}" for word, count in counts.items() if count)
        return (
            f"<div class='shoal-task-view' style='{_STYLE}'><b>{len(self.rows)} recent task(s)</b>"
            f"{html.escape(': ' + summary) if summary else ''}"
            f"{render_legend(self.rows)}{render_timeline(self.rows, self._now_ms)}"
            f"{render_table(self.rows, self._now_ms)}</div>"
        )

    def _render_text(self) -> str:
        counts = word_counts(self.rows)
        summary = ", ".join(f"{count} {word}" for word, count in counts.items() if count)
        lines = [f"shoal tasks: {len(self.rows)} recent" + (f" ({summary})" if summary else "")]
        lines += [f"  {task_name(row)} {row_word(row)} pid={row.get('worker_pid')}" for row in self.rows[:TABLE_ROWS]]
        return "\n".join(lines)

    def _on_refresh_clicked(self, _button=None) -> None:
        refresher.submit(self.refresh)  # never call into shoal from the comm thread
