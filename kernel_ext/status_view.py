"""What `%shoal status`, `%shoal tasks` and `%shoal actors` show: text and HTML summaries.

Presentation only: the rows come from `shoal.util.state` and the resource calls, read by the
caller; nothing here talks to the cluster, starts threads or imports IPython.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

__all__ = ["ClusterStatus", "StateTable", "TASK_COLUMNS", "ACTOR_COLUMNS", "format_duration_ms"]

TASK_COLUMNS = ("task_id", "name", "state", "type", "worker_pid", "duration")
ACTOR_COLUMNS = ("actor_id", "class_name", "name", "state", "pid", "num_restarts")

_SHORT_ID_CHARS = 12
_BYTES_RESOURCES = ("memory", "object_store_memory")


def format_duration_ms(row: dict) -> str:
    """A task row's run time as text (`""` while it has not both started and ended).

    Args:
        row: A row from `shoal.util.state.list_tasks()`.

    Returns:
        Such as `"12 ms"` or `"3.4 s"`.
    """
    start, end = row.get("start_time_ms"), row.get("end_time_ms")
    if not start or not end:
        return ""
    duration_ms = max(0, end - start)
    return f"{duration_ms} ms" if duration_ms < 1000 else f"{duration_ms / 1000:.1f} s"


def _cell(row: dict, column: str) -> str:
    if column == "duration":
        return format_duration_ms(row)
    value = row.get(column)
    if value is None:
        return ""
    text = str(value)
    if column.endswith("_id") and len(text) > _SHORT_ID_CHARS:
        return text[:_SHORT_ID_CHARS]
    return text


@dataclass(frozen=True)
class StateTable:
    """Rows of the state API shown as a table in a notebook (HTML) or a terminal (text).

    Attributes:
        title: Such as `"tasks"`.
        columns: The row keys to show, in order (`duration` is computed for tasks).
        rows: Rows from `shoal.util.state.list_*`.
    """

    title: str
    columns: tuple[str, ...]
    rows: tuple[dict, ...]

    def cells(self) -> list[list[str]]:
        """The table's body as text cells, one list per row."""
        return [[_cell(row, column) for column in self.columns] for row in self.rows]

    def __repr__(self) -> str:
        body = self.cells()
        widths = [max([len(column), *(len(line[i]) for line in body)]) for i, column in enumerate(self.columns)]
        lines = [f"{self.title}: {len(self.rows)}"]
        lines.append("  ".join(column.ljust(width) for column, width in zip(self.columns, widths)).rstrip())
        for line in body:
            lines.append("  ".join(text.ljust(width) for text, width in zip(line, widths)).rstrip())
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(column)}</th>" for column in self.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(text)}</td>" for text in line) + "</tr>" for line in self.cells()
        )
        caption = f"<caption>shoal {html.escape(self.title)}: {len(self.rows)}</caption>"
        return f"<table class='shoal-state'>{caption}<tr>{head}</tr>{body}</table>"


def _resource_text(name: str, value: float) -> str:
    if name in _BYTES_RESOURCES:
        return f"{value / 2**30:.1f} GiB"
    return f"{value:g}"


@dataclass(frozen=True)
class ClusterStatus:
    """A cluster's resources (used / total) and its tasks by state, as text and HTML.

    Attributes:
        total: `shoal.cluster_resources()`, or empty when no cluster is connected.
        available: `shoal.available_resources()`.
        task_counts: Number of tasks in each state, summed over function names.
        connected: Whether a cluster was connected when the status was taken.
    """

    total: dict
    available: dict
    task_counts: dict
    connected: bool = True

    @classmethod
    def from_state(cls, total: dict, available: dict, task_summary: dict) -> ClusterStatus:
        """Builds the status from the public API's answers.

        Args:
            total: `shoal.cluster_resources()`.
            available: `shoal.available_resources()`.
            task_summary: `shoal.util.state.summarize_tasks()`.

        Returns:
            The status, with task counts summed by state.
        """
        counts: dict = {}
        for entry in task_summary.get("cluster", {}).get("summary", {}).values():
            for state, count in entry.get("state_counts", {}).items():
                counts[state] = counts.get(state, 0) + count
        return cls(dict(total), dict(available), dict(sorted(counts.items())))

    def resource_rows(self) -> list[tuple[str, str, str]]:
        """`(resource, used, total)` text for each resource but the per-node markers."""
        rows = []
        for name, total in sorted(self.total.items()):
            if name.startswith("node:"):
                continue
            used = max(0.0, total - self.available.get(name, 0.0))
            rows.append((name, _resource_text(name, used), _resource_text(name, total)))
        return rows

    def __repr__(self) -> str:
        if not self.connected:
            return "shoal: not connected (the cluster starts on first use, or with %shoal init)"
        lines = ["shoal cluster", "resources (used / total):"]
        lines += [f"  {name}: {used} / {total}" for name, used, total in self.resource_rows()]
        tasks = ", ".join(f"{state} {count}" for state, count in self.task_counts.items()) or "none"
        lines.append(f"tasks: {tasks}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        if not self.connected:
            return f"<div class='shoal-status'>{html.escape(repr(self))}</div>"
        resources = "".join(
            f"<tr><td>{html.escape(name)}</td><td>{used}</td><td>{total}</td></tr>"
            for name, used, total in self.resource_rows()
        )
        tasks = "".join(
            f"<tr><td>{html.escape(state)}</td><td>{count}</td></tr>" for state, count in self.task_counts.items()
        )
        return (
            "<div class='shoal-status'><b>shoal cluster</b>"
            f"<table><tr><th>resource</th><th>used</th><th>total</th></tr>{resources}</table>"
            f"<table><tr><th>task state</th><th>count</th></tr>{tasks}</table></div>"
        )
