"""`TaskView`: recent tasks as an HTML table plus an SVG timeline of what ran on which worker.

Reads `shoal.util.state.list_tasks`. Rendering (`render_table`, `render_timeline`) is pure and
takes `now_ms` for tasks still running; the widget only holds the HTML.
"""

from __future__ import annotations

import html
import time

import ipywidgets

_ROW_HEIGHT = 18
_LABEL_WIDTH = 90
_PLOT_WIDTH = 600
_STATE_COLOURS = {"FINISHED": "#4caf50", "FAILED": "#e53935", "RUNNING": "#1e88e5"}


def recent_tasks(rows: list[dict], limit: int) -> list[dict]:
    """The `limit` most recently started tasks, newest first (unstarted ones first of all)."""
    return sorted(rows, key=lambda row: row.get("start_time_ms") or float("inf"), reverse=True)[:limit]


def _duration_s(row: dict, now_ms: int) -> float | None:
    start = row.get("start_time_ms")
    if not start:
        return None
    return ((row.get("end_time_ms") or now_ms) - start) / 1000.0


def render_table(rows: list[dict], now_ms: int) -> str:
    """An HTML table: name, state, worker pid, duration."""
    body = []
    for row in rows:
        duration = _duration_s(row, now_ms)
        cells = (
            row.get("name") or row.get("func_or_class_name") or "?",
            row.get("state", "?"),
            "" if row.get("worker_pid") is None else str(row["worker_pid"]),
            "" if duration is None else f"{duration:.3f} s",
        )
        body.append("<tr class='shoal-task-row'>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    header = "".join(f"<th>{name}</th>" for name in ("name", "state", "worker pid", "duration"))
    return f"<table class='shoal-tasks'><tr>{header}</tr>{''.join(body)}</table>"


def render_timeline(rows: list[dict], now_ms: int) -> str:
    """Inline SVG: one row per worker pid, one bar per started task from start to end time."""
    started = [row for row in rows if row.get("start_time_ms") and row.get("worker_pid") is not None]
    if not started:
        return "<svg class='shoal-timeline' width='0' height='0'></svg>"
    pids = sorted({row["worker_pid"] for row in started})
    begin = min(row["start_time_ms"] for row in started)
    end = max((row.get("end_time_ms") or now_ms) for row in started)
    scale = _PLOT_WIDTH / max(end - begin, 1)
    height = _ROW_HEIGHT * len(pids)
    parts = [
        f"<svg class='shoal-timeline' xmlns='http://www.w3.org/2000/svg' "
        f"width='{_LABEL_WIDTH + _PLOT_WIDTH}' height='{height}'>"
    ]
    for index, pid in enumerate(pids):
        y = index * _ROW_HEIGHT
        parts.append(f"<g class='shoal-worker' data-worker-pid='{pid}'>")
        parts.append(f"<text x='0' y='{y + _ROW_HEIGHT - 5}' font-size='11'>pid {pid}</text>")
        for row in started:
            if row["worker_pid"] != pid:
                continue
            x = _LABEL_WIDTH + (row["start_time_ms"] - begin) * scale
            width = max(((row.get("end_time_ms") or now_ms) - row["start_time_ms"]) * scale, 1.0)
            colour = _STATE_COLOURS.get(row.get("state") or "", "#9e9e9e")
            title = html.escape(f"{row.get('name')} {row.get('state')} {_duration_s(row, now_ms):.3f} s")
            parts.append(
                f"<rect class='shoal-task' data-task-id='{html.escape(str(row.get('task_id')))}' x='{x:.1f}' "
                f"y='{y + 2}' width='{width:.1f}' height='{_ROW_HEIGHT - 4}' fill='{colour}'>"
                f"<title>{title}</title></rect>"
            )
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)


class TaskView(ipywidgets.VBox):
    """Recent tasks (name, state, worker pid, duration) and a timeline of what ran where.

    Static until `refresh()` is called (or the Refresh button is clicked, which re-reads the
    state API on the refresher thread).

    Args:
        limit: how many of the most recent tasks to show.

    Example:
        shoal.widgets.TaskView(limit=20)
    """

    def __init__(self, limit: int = 50, **kwargs):
        if not isinstance(limit, int) or isinstance(limit, bool) or limit <= 0:
            raise ValueError(f"limit must be a positive int, got {limit!r}")
        self.limit = limit
        self.rows: list[dict] = []
        self._html = ipywidgets.HTML()
        self.refresh_button = ipywidgets.Button(description="Refresh")
        self.refresh_button.on_click(self._on_refresh_clicked)
        super().__init__(children=[self._html, self.refresh_button], **kwargs)
        self.refresh()

    def refresh(self) -> None:
        """Re-read recent tasks from the state API and redraw."""
        import shoal
        from shoal.util import state

        rows = state.list_tasks(limit=10_000) if shoal.is_initialized() else []
        self.rows = recent_tasks([dict(row) for row in rows], self.limit)
        self._html.value = self._render()

    def _on_refresh_clicked(self, _button=None) -> None:
        from . import refresher

        refresher.submit(self.refresh)  # never call into shoal from the comm thread

    def _render(self) -> str:
        now_ms = int(time.time() * 1000)
        return (
            f"<div class='shoal-task-view'><b>{len(self.rows)} recent task(s)</b>"
            f"{render_table(self.rows, now_ms)}{render_timeline(self.rows, now_ms)}</div>"
        )

    def _repr_html_(self) -> str:
        return self._html.value

    def _repr_mimebundle_(self, **kwargs) -> dict:
        bundle = super()._repr_mimebundle_(**kwargs) or {}
        bundle["text/html"] = self._html.value
        bundle["text/plain"] = repr(self)
        return bundle

    def __repr__(self) -> str:
        rows = getattr(self, "rows", [])
        lines = [f"shoal tasks: {len(rows)} recent"]
        lines += [f"  {row.get('name')} {row.get('state')} pid={row.get('worker_pid')}" for row in rows[:10]]
        return "\n".join(lines)
