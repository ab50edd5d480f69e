"""What `%shoal status`, `%shoal tasks` and `%shoal actors` show: text and HTML summaries.

Presentation only: the rows come from `shoal.util.state` and the resource calls, read by the
caller; nothing here talks to the cluster, starts threads or imports IPython.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

__all__ = [
    "ACTOR_COLUMNS",
    "TASK_COLUMNS",
    "TASK_STATES",
    "ClusterStatus",
    "StateTable",
    "distinct_suffixes",
    "format_duration_ms",
    "recent_tasks",
    "task_states",
]

TASK_COLUMNS = ("task_id", "name", "state", "type", "worker_pid", "duration")
ACTOR_COLUMNS = ("actor_id", "class_name", "name", "state", "pid", "num_restarts")
# The states of the state API's task rows, in a task's order; `pending` stands for the first two.
TASK_STATES = ("PENDING_ARGS_AVAIL", "PENDING_NODE_ASSIGNMENT", "RUNNING", "FINISHED", "FAILED")
_PENDING_STATES = TASK_STATES[:2]

# Ids are shown by their last hex digits: task and actor ids begin with the owner node's tag and
# a per-process part, the same for every task one driver submits; the counter at the end differs.
_MIN_ID_DIGITS = 8
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


def distinct_suffixes(ids: list[str], min_digits: int = _MIN_ID_DIGITS) -> dict[str, str]:
    """The shortest endings, all of one length (at least `min_digits`), that tell `ids` apart.

    Args:
        ids: Hex ids, such as the task ids of a table's rows.
        min_digits: The fewest digits to show.

    Returns:
        Each id mapped to `…` and its ending (the whole id when that is no longer than the ending).
    """
    distinct = set(ids)
    length = min_digits
    longest = max((len(text) for text in distinct), default=0)
    while length < longest and len({text[-length:] for text in distinct}) < len(distinct):
        length += 1
    return {text: text if len(text) <= length else "…" + text[-length:] for text in distinct}


def task_states(state: str) -> tuple[str, ...]:
    """The row states `state` stands for: one of `TASK_STATES`, or `pending`, in any case.

    Raises:
        ValueError: Not a task state.
    """
    wanted = state.strip().upper()
    if wanted == "PENDING":
        return _PENDING_STATES
    if wanted in TASK_STATES:
        return (wanted,)
    raise ValueError(f"unknown task state {state!r}; use one of {', '.join(TASK_STATES)} or pending")


def recent_tasks(rows, state: str | None = None, name: str | None = None, limit: int | None = None) -> list[dict]:
    """Task rows most recent first, optionally of one state and with a name containing `name`.

    Queued tasks (not started) come first, newest submitted first; then tasks by the time they
    started (or, for those that never started, ended), latest first.

    Args:
        rows: Rows from `shoal.util.state.list_tasks()`, in the order the cluster lists them.
        state: One of `TASK_STATES` or `pending` (either pending state); any case.
        name: Text the task's name contains (any case).
        limit: At most this many rows; None for all.

    Returns:
        The selected rows.

    Raises:
        ValueError: An unknown state, or a limit below 1.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be at least 1, got {limit}")
    states = task_states(state) if state is not None else None
    needle = name.lower() if name is not None else None
    selected = [
        (index, row)
        for index, row in enumerate(rows)
        if (states is None or row.get("state") in states)
        and (needle is None or needle in str(row.get("name") or "").lower())
    ]

    def recency(entry: tuple[int, dict]) -> tuple[float, int]:
        index, row = entry
        moment = row.get("start_time_ms") or row.get("end_time_ms")
        return (float("inf") if not moment else float(moment), index)

    selected.sort(key=recency, reverse=True)
    chosen = [row for _, row in selected]
    return chosen[:limit] if limit is not None else chosen


def _cell(row: dict, column: str, short_ids: dict[str, str]) -> str:
    if column == "duration":
        return format_duration_ms(row)
    value = row.get(column)
    if value is None:
        return ""
    text = str(value)
    if column.endswith("_id"):
        return short_ids.get(text, text)
    return text


@dataclass(frozen=True)
class StateTable:
    """Rows of the state API shown as a table in a notebook (HTML) or a terminal (text).

    Ids are shown by the ending that tells them apart (`…0000002a`); the HTML keeps the whole id
    in each cell's tooltip.

    Attributes:
        title: Such as `"tasks"`.
        columns: The row keys to show, in order (`duration` is computed for tasks).
        rows: Rows from `shoal.util.state.list_*`.
        total: How many rows matched before a limit cut them to `rows` (None: all are shown).
    """

    title: str
    columns: tuple[str, ...]
    rows: tuple[dict, ...]
    total: int | None = None

    def _short_ids(self) -> dict[str, str]:
        id_columns = [column for column in self.columns if column.endswith("_id")]
        return distinct_suffixes([str(row[column]) for row in self.rows for column in id_columns if row.get(column)])

    def cells(self) -> list[list[str]]:
        """The table's body as text cells, one list per row."""
        short_ids = self._short_ids()
        return [[_cell(row, column, short_ids) for column in self.columns] for row in self.rows]

    def caption(self) -> str:
        """Such as `tasks: 12`, or `tasks: 20 most recent of 150` when a limit cut the rows."""
        if self.total is not None and self.total > len(self.rows):
            return f"{self.title}: {len(self.rows)} most recent of {self.total}"
        return f"{self.title}: {len(self.rows)}"

    def __repr__(self) -> str:
        body = self.cells()
        widths = [max([len(column), *(len(line[i]) for line in body)]) for i, column in enumerate(self.columns)]
        lines = [self.caption()]
        lines.append("  ".join(column.ljust(width) for column, width in zip(self.columns, widths)).rstrip())
        for line in body:
            lines.append("  ".join(text.ljust(width) for text, width in zip(line, widths)).rstrip())
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(column)}</th>" for column in self.columns)
        rows = []
        for row, line in zip(self.rows, self.cells()):
            cells = []
            for column, text in zip(self.columns, line):
                full = str(row.get(column) or "")
                tooltip = f" title='{html.escape(full)}'" if column.endswith("_id") and full != text else ""
                cells.append(f"<td{tooltip}>{html.escape(text)}</td>")
            rows.append("<tr>" + "".join(cells) + "</tr>")
        body = "".join(rows)
        caption = f"<caption>shoal {html.escape(self.caption())}</caption>"
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
