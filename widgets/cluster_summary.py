"""What a `ClusterView` shows, as data and as HTML and text: each node's resources, tasks and
actors counted in plain words, and the recent task rate.

Pure: built from an event snapshot and node rows; no cluster calls, no ipywidgets, no clock
(sample times are arguments). The same drawing is the live view's body and its static summary.
"""

from __future__ import annotations

import html
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

GIB = 1024**3
TASK_WORDS = ("pending", "running", "finished", "failed", "cancelled")
ACTOR_WORDS = ("starting", "alive", "dead")
RATE_SAMPLES = 24  # the sparkline covers the last 24 s at one refresh a second, 5 px a column

_BAR_COLOURS = {"CPU": "#1e88e5", "GPU": "#8e24aa", "memory": "#00897b", "object store": "#f4511e"}
_SPARK_COLOUR, _SPARK_IDLE, _SPARK_TRACK = "#1e88e5", "#b0bec5", "#e8eef4"
_WORD_COLOURS = {"running": "#1e88e5", "finished": "#2e7d32", "failed": "#c62828", "cancelled": "#757575"}


def task_word(state: str, error_type: str | None = None) -> str:
    """The word a user knows for one of Ray's task states (`PENDING_NODE_ASSIGNMENT` is "pending").

    A task that was cancelled is "cancelled", not "failed" (Ray lists it as FAILED with error
    type TASK_CANCELLED).
    """
    if state == "CANCELLED" or error_type == "TASK_CANCELLED":
        return "cancelled"
    if state in ("FINISHED", "FAILED"):
        return state.lower()
    if state.startswith("RUNNING"):
        return "running"
    return "pending"


def actor_word(state: str) -> str:
    if state == "ALIVE":
        return "alive"
    if state == "DEAD":
        return "dead"
    return "starting"


def count_words(counts_by_state: dict, word_of, words: Sequence[str]) -> dict[str, int]:
    """Counts by Ray state summed into counts by word (every word present, zeros included)."""
    by_word = dict.fromkeys(words, 0)
    for state, count in counts_by_state.items():
        word = word_of(state)
        by_word[word] = by_word.get(word, 0) + int(count)
    return by_word


@dataclass(frozen=True)
class NodeUsage:
    """One node's resources: (used, total) pairs in resource units or bytes."""

    node_id: str
    node_ip: str
    cpu: tuple[float, float]
    gpu: tuple[float, float]
    memory_bytes: tuple[float, float]
    object_store_bytes: tuple[float, float]


@dataclass(frozen=True)
class ClusterSummary:
    """What a ClusterView shows; `connected` is False when there is no cluster."""

    connected: bool
    nodes: tuple[NodeUsage, ...] = ()
    tasks_by_state: dict = field(default_factory=dict)
    actors_by_state: dict = field(default_factory=dict)
    num_workers: int = 0

    @property
    def object_store_bytes(self) -> tuple[float, float]:
        return (sum(n.object_store_bytes[0] for n in self.nodes), sum(n.object_store_bytes[1] for n in self.nodes))

    @property
    def task_counts(self) -> dict[str, int]:
        """Tasks by word: pending, running, finished, failed, cancelled."""
        return count_words(self.tasks_by_state, task_word, TASK_WORDS)

    @property
    def actor_counts(self) -> dict[str, int]:
        return count_words(self.actors_by_state, actor_word, ACTOR_WORDS)

    @property
    def tasks_done(self) -> int:
        counts = self.task_counts
        return counts["finished"] + counts["failed"] + counts["cancelled"]


def _used(total: dict, available: dict, key: str) -> tuple[float, float]:
    size = float(total.get(key, 0.0))
    return (max(0.0, size - float(available.get(key, size))), size)


def node_usage(row: dict) -> NodeUsage:
    total, available = row.get("resources_total") or {}, row.get("resources_available") or {}
    return NodeUsage(
        node_id=str(row.get("node_id", "")),
        node_ip=str(row.get("node_ip", "")),
        cpu=_used(total, available, "CPU"),
        gpu=_used(total, available, "GPU"),
        memory_bytes=_used(total, available, "memory"),
        object_store_bytes=(
            float(row.get("object_store_used_bytes", 0)),
            float(row.get("object_store_total_bytes", 0)),
        ),
    )


def summarize(snapshot: dict | None, node_rows: Sequence[dict]) -> ClusterSummary:
    """Combine an event snapshot (newest for its node) with node rows from `list_nodes`."""
    rows = {str(row.get("node_id")): dict(row) for row in node_rows}
    for row in (snapshot or {}).get("nodes") or ():  # a cluster's head sends every node's usage
        rows[str(row.get("node_id"))] = dict(row)
    rows = {node_id: row for node_id, row in rows.items() if row.get("state", "ALIVE") == "ALIVE"}
    if snapshot is not None:
        node_id = str(snapshot.get("node_id"))
        rows[node_id] = {**rows.get(node_id, {"node_id": node_id}), **snapshot}
    return ClusterSummary(
        connected=True,
        nodes=tuple(node_usage(row) for row in rows.values()),
        tasks_by_state=dict((snapshot or {}).get("tasks_by_state") or {}),
        actors_by_state=dict((snapshot or {}).get("actors_by_state") or {}),
        num_workers=int((snapshot or {}).get("num_workers") or sum(r.get("num_workers", 0) for r in rows.values())),
    )


class TaskRate:
    """Tasks done per second between successive samples (the sparkline's data)."""

    def __init__(self, samples: int = RATE_SAMPLES):
        self._last: tuple[float, int] | None = None
        self._rates: deque[float] = deque(maxlen=samples)

    def add(self, now_s: float, tasks_done: int) -> None:
        """Record how many tasks were done at `now_s` (seconds on any monotonic clock)."""
        if self._last is not None:
            then_s, done_then = self._last
            if now_s <= then_s:
                return
            self._rates.append(max(0, tasks_done - done_then) / (now_s - then_s))
        self._last = (now_s, tasks_done)

    @property
    def rates(self) -> tuple[float, ...]:
        return tuple(self._rates)


# ---------------------------------------------------------------------------- drawing


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _number(value: float) -> str:
    return f"{value:.2f}" if 0 < value < 1 else f"{value:.1f}"


def pair_text(name: str, pair: tuple[float, float]) -> str:
    """`2/2` for counted resources, `1.2/7.1 GiB` for bytes."""
    if name in ("memory", "object store"):
        return f"{_number(pair[0] / GIB)}/{_number(pair[1] / GIB)} GiB"
    return f"{pair[0]:g}/{pair[1]:g}"


def _resources(summary: ClusterSummary, node: NodeUsage) -> list[tuple[str, tuple[float, float]]]:
    shown = [("CPU", node.cpu)]
    if any(other.gpu[1] > 0 for other in summary.nodes):  # no GPU column (nor gap) on a CPU-only cluster
        shown.append(("GPU", node.gpu))
    shown += [("memory", node.memory_bytes), ("object store", node.object_store_bytes)]
    return shown


def _rate_text(rates: Sequence[float]) -> str:
    return f"{rates[-1]:.1f} tasks/s" if rates else "0.0 tasks/s"


def _nonzero(counts: dict[str, int]) -> dict[str, int]:
    return {word: count for word, count in counts.items() if count}


def _words_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{count} {word}" for word, count in counts.items())


def render_text(summary: ClusterSummary, rates: Sequence[float] = ()) -> str:
    """A plain-text summary for saved notebooks and terminals."""
    if not summary.connected:
        return "shoal cluster: not running"
    lines = [
        f"shoal cluster: {_plural(len(summary.nodes), 'node')}, {_plural(summary.num_workers, 'worker')}, "
        f"{_rate_text(rates)}"
    ]
    for node in summary.nodes:
        usage = ", ".join(f"{name} {pair_text(name, pair)}" for name, pair in _resources(summary, node))
        lines.append(f"  node {node.node_id[:8]} ({node.node_ip}): {usage}")
    lines.append(f"  tasks: {_words_text(summary.task_counts)}")
    lines.append(f"  actors: {_words_text(_nonzero(summary.actor_counts)) or 'none'}")
    return "\n".join(lines)


def _meter(name: str, pair: tuple[float, float]) -> str:
    used, total = pair
    percent = 0.0 if total <= 0 else min(100.0, 100.0 * used / total)
    return (
        f"<td class='shoal-resource' data-resource='{html.escape(name)}' style='padding:2px 10px 2px 0;"
        "white-space:nowrap'>"
        f"<span style='display:inline-block;min-width:5.5em;color:#555'>{html.escape(name)}</span>"
        "<span style='display:inline-block;width:90px;height:8px;background:#e3e3e3;border-radius:4px;"
        "vertical-align:middle;overflow:hidden'>"
        f"<span class='shoal-fill' style='display:block;height:100%;width:{percent:.0f}%;"
        f"background:{_BAR_COLOURS[name]}'></span></span> "
        f"<span class='shoal-value'>{html.escape(pair_text(name, pair))}</span></td>"
    )


def render_sparkline(rates: Sequence[float], width: int = 120, height: int = 20) -> str:
    """Tasks finished per second as a column chart on a light track: one column per sample, the
    newest on the right, RATE_SAMPLES of them across. A single sample shows, and a sample with no
    tasks is a thin grey tick. Plain HTML (spans with inline styles), not SVG: JupyterLab's
    sanitizer strips SVG from the outputs of a notebook it does not trust, as a cloned one."""
    values = list(rates)[-RATE_SAMPLES:]
    top = max(values, default=0.0)
    column = width / RATE_SAMPLES
    bars = []
    for index, value in enumerate(values):
        x = width - (len(values) - index) * column
        bar_height = 1.0 if value <= 0 or top <= 0 else max(2.0, (value / top) * (height - 4))
        colour = _SPARK_COLOUR if value > 0 else _SPARK_IDLE
        bars.append(
            f"<span class='shoal-rate-bar' style='position:absolute;left:{x:.1f}px;bottom:2px;"
            f"width:{max(column - 1, 1):.1f}px;height:{bar_height:.1f}px;background:{colour}'></span>"
        )
    span = f"last {len(values)} s" if values else "no samples yet"
    return (
        f"<span class='shoal-sparkline' title='tasks finished per second, {span} (peak {top:.1f})' "
        f"style='display:inline-block;position:relative;width:{width}px;height:{height}px;"
        f"background:{_SPARK_TRACK};border-radius:3px;vertical-align:middle;overflow:hidden'>"
        f"{''.join(bars)}</span>"
    )


def _words_html(counts: dict[str, int]) -> str:
    parts = []
    for word, count in counts.items():
        colour = _WORD_COLOURS.get(word, "#555") if count else "#999"
        parts.append(
            f"<span class='shoal-count' data-word='{word}' style='color:{colour};margin-right:10px'>"
            f"<b>{count}</b> {word}</span>"
        )
    return "".join(parts)


def render_html(summary: ClusterSummary, rates: Sequence[float] = ()) -> str:
    """The drawing: a header with the task rate, a compact row per node, counts in words."""
    style = "font-family:var(--jp-ui-font-family,sans-serif);font-size:13px;line-height:1.5"
    if not summary.connected:
        return f"<div class='shoal-cluster' style='{style}'><b>shoal cluster</b>: not running</div>"
    rows = []
    for node in summary.nodes:
        label = (
            f"<td style='padding:2px 14px 2px 0;white-space:nowrap'><b>node {html.escape(node.node_id[:8])}</b> "
            f"<span style='color:#777'>{html.escape(node.node_ip)}</span></td>"
        )
        rows.append(
            "<tr class='shoal-node'>" + label + "".join(_meter(n, p) for n, p in _resources(summary, node)) + "</tr>"
        )
    header = (
        f"<b>shoal cluster</b> · {_plural(len(summary.nodes), 'node')} · {_plural(summary.num_workers, 'worker')}"
        f" · <span class='shoal-rate'>{_rate_text(rates)}</span> {render_sparkline(rates)}"
    )
    return (
        f"<div class='shoal-cluster' style='{style}'>"
        f"<div class='shoal-cluster-header'>{header}</div>"
        f"<table class='shoal-nodes' style='border-collapse:collapse;margin:2px 0'>{''.join(rows)}</table>"
        f"<div class='shoal-tasks-line'><span style='color:#555;margin-right:8px'>tasks</span>"
        f"{_words_html(summary.task_counts)}</div>"
        f"<div class='shoal-actors-line'><span style='color:#555;margin-right:8px'>actors</span>"
        f"{_words_html(_nonzero(summary.actor_counts)) or 'none'}</div>"
        "</div>"
    )
