"""`ClusterView`: a live ipywidgets view of the cluster's resources, tasks and actors.

Reads only the public state API (`shoal.util.state`). The pure part (`ClusterSummary`, built from
an event snapshot and node rows, rendered to text and HTML) is apart from the widget, which the
refresher thread updates; the shut-down button only queues work for that thread.
"""

from __future__ import annotations

import html
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import ipywidgets

from . import refresher

_GIB = 1024**3
_NODE_ROWS_INTERVAL_S = 10.0


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


def _used(total: dict, available: dict, key: str) -> tuple[float, float]:
    size = float(total.get(key, 0.0))
    return (max(0.0, size - float(available.get(key, size))), size)


def _node_usage(row: dict) -> NodeUsage:
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
        nodes=tuple(_node_usage(row) for row in rows.values()),
        tasks_by_state=dict((snapshot or {}).get("tasks_by_state") or {}),
        actors_by_state=dict((snapshot or {}).get("actors_by_state") or {}),
        num_workers=int((snapshot or {}).get("num_workers") or sum(r.get("num_workers", 0) for r in rows.values())),
    )


def _counts_text(counts: dict) -> str:
    shown = {state: count for state, count in sorted(counts.items()) if count}
    return ", ".join(f"{state} {count}" for state, count in shown.items()) or "none"


def _pair(pair: tuple[float, float], scale: float = 1.0, unit: str = "") -> str:
    return f"{pair[0] / scale:g}/{pair[1] / scale:g}{unit}"


def _bytes_pair(pair: tuple[float, float]) -> str:
    return f"{pair[0] / _GIB:.2f}/{pair[1] / _GIB:.2f} GiB"


def render_text(summary: ClusterSummary) -> str:
    """A plain-text summary for saved notebooks and terminals."""
    if not summary.connected:
        return "shoal cluster: not running"
    lines = [f"shoal cluster: {len(summary.nodes)} node(s), {summary.num_workers} worker(s)"]
    for node in summary.nodes:
        lines.append(
            f"  node {node.node_id[:8]} ({node.node_ip}): CPU {_pair(node.cpu)}, GPU {_pair(node.gpu)}, "
            f"memory {_bytes_pair(node.memory_bytes)}, object store {_bytes_pair(node.object_store_bytes)}"
        )
    lines.append(f"  tasks: {_counts_text(summary.tasks_by_state)}")
    lines.append(f"  actors: {_counts_text(summary.actors_by_state)}")
    return "\n".join(lines)


def render_html(summary: ClusterSummary) -> str:
    """A static HTML summary (a table per node, counts by state) for saved notebooks."""
    if not summary.connected:
        return "<div class='shoal-cluster'><b>shoal cluster</b>: not running</div>"
    rows = []
    for node in summary.nodes:
        cells = [
            html.escape(f"{node.node_id[:8]} ({node.node_ip})"),
            _pair(node.cpu),
            _pair(node.gpu),
            _bytes_pair(node.memory_bytes),
            _bytes_pair(node.object_store_bytes),
        ]
        rows.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    header = "".join(f"<th>{name}</th>" for name in ("node", "CPU", "GPU", "memory", "object store"))
    return (
        "<div class='shoal-cluster'>"
        f"<b>shoal cluster</b>: {len(summary.nodes)} node(s), {summary.num_workers} worker(s)"
        f"<table><tr>{header}</tr>{''.join(rows)}</table>"
        f"<div>tasks: {html.escape(_counts_text(summary.tasks_by_state))}</div>"
        f"<div>actors: {html.escape(_counts_text(summary.actors_by_state))}</div>"
        "</div>"
    )


def fetch_summary() -> ClusterSummary:
    """A summary from the state API alone (no event stream), for the first render."""
    import shoal
    from shoal.util import state

    if not shoal.is_initialized():
        return ClusterSummary(connected=False)
    nodes = state.list_nodes()
    tasks: dict = {}
    for entry in state.summarize_tasks()["cluster"]["summary"].values():
        for task_state, count in entry["state_counts"].items():
            tasks[task_state] = tasks.get(task_state, 0) + count
    actors: dict = {}
    for entry in state.summarize_actors()["cluster"]["summary"].values():
        for actor_state, count in entry["state_counts"].items():
            actors[actor_state] = actors.get(actor_state, 0) + count
    summary = summarize(None, nodes)
    return ClusterSummary(True, summary.nodes, tasks, actors, summary.num_workers)


def _bar(description: str) -> ipywidgets.FloatProgress:
    return ipywidgets.FloatProgress(value=0.0, min=0.0, max=1.0, description=description)


class ClusterView(ipywidgets.VBox):
    """A live view of the cluster: per-node resource bars, object store, tasks and actors.

    Updated about once a second by the refresher thread, unless `SHOAL_NONINTERACTIVE=1`, in
    which case it renders once. Its text/html reprs are a static summary, so saved notebooks
    show something without the widget manager.

    Args:
        live: refresh on the refresher thread; None (default) means "unless non-interactive".

    Example:
        view = shoal.widgets.ClusterView()
        view  # last expression of a cell
    """

    def __init__(self, live: bool | None = None, **kwargs):
        self._summary = ClusterSummary(connected=False)
        self._header = ipywidgets.HTML()
        self._nodes_box = ipywidgets.VBox()
        self._tasks = ipywidgets.HTML()
        self._actors = ipywidgets.HTML()
        self.shutdown_button = ipywidgets.Button(description="Shut down", button_style="danger")
        self.shutdown_button.on_click(self._on_shutdown_clicked)
        super().__init__(
            children=[self._header, self._nodes_box, self._tasks, self._actors, self.shutdown_button], **kwargs
        )
        self._node_bars: dict[str, dict[str, ipywidgets.FloatProgress]] = {}
        self._node_rows: list[dict] = []
        self._nodes_read_at = float("-inf")
        self._apply(fetch_summary())
        self._live = refresher.live_updates_enabled() if live is None else live
        if self._live:
            refresher.register(self)

    @property
    def summary(self) -> ClusterSummary:
        """The state last shown."""
        return self._summary

    @property
    def tasks_by_state(self) -> dict:
        return dict(self._summary.tasks_by_state)

    @property
    def actors_by_state(self) -> dict:
        return dict(self._summary.actors_by_state)

    def _refresh(self, snapshot: dict | None) -> bool:
        import shoal
        from shoal.util import state

        # State queries start a cluster when there is none, so the refresher makes as few as it
        # can: the snapshot carries its node's numbers, node rows are re-read only now and then.
        if snapshot is None or not shoal.is_initialized():
            return True
        now = time.monotonic()
        if now - self._nodes_read_at >= _NODE_ROWS_INTERVAL_S:
            self._node_rows = [dict(row) for row in state.list_nodes()]
            self._nodes_read_at = now
        summary = summarize(snapshot, self._node_rows)
        if summary != self._summary:
            self._apply(summary)
        return True

    def _cluster_gone(self) -> None:
        self._apply(ClusterSummary(connected=False))

    def _apply(self, summary: ClusterSummary) -> None:
        self._summary = summary
        self.shutdown_button.disabled = not summary.connected
        if not summary.connected:
            self._header.value = "<b>shoal cluster</b>: not running"
            self._nodes_box.children = ()
            self._node_bars.clear()
            self._tasks.value = self._actors.value = ""
            return
        self._header.value = (
            f"<b>shoal cluster</b>: {len(summary.nodes)} node(s), {summary.num_workers} worker(s), "
            f"object store {_bytes_pair(summary.object_store_bytes)}"
        )
        for node in summary.nodes:
            bars = self._node_bars.get(node.node_id)
            if bars is None:
                bars = {name: _bar(name) for name in ("CPU", "GPU", "memory", "store")}
                self._node_bars[node.node_id] = bars
                label = ipywidgets.HTML(html.escape(f"node {node.node_id[:8]} ({node.node_ip})"))
                self._nodes_box.children = (*self._nodes_box.children, label, *bars.values())
            for name, pair, text in (
                ("CPU", node.cpu, _pair(node.cpu)),
                ("GPU", node.gpu, _pair(node.gpu)),
                ("memory", node.memory_bytes, _bytes_pair(node.memory_bytes)),
                ("store", node.object_store_bytes, _bytes_pair(node.object_store_bytes)),
            ):
                bar = bars[name]
                bar.max = max(pair[1], 1e-9)
                bar.value = min(pair[0], bar.max)
                bar.tooltip = text
                bar.layout.visibility = "hidden" if name == "GPU" and pair[1] == 0 else "visible"
        self._tasks.value = "tasks: " + html.escape(_counts_text(summary.tasks_by_state))
        self._actors.value = "actors: " + html.escape(_counts_text(summary.actors_by_state))

    def _on_shutdown_clicked(self, _button=None) -> None:
        # Runs on the comm thread: hand the work over, never call into shoal here.
        self.shutdown_button.disabled = True
        refresher.submit(_shutdown_cluster)

    def close(self) -> None:
        refresher.unregister(self)
        for bars in self._node_bars.values():
            for bar in bars.values():
                bar.close()
        super().close()

    def _repr_html_(self) -> str:
        return render_html(self._summary)

    def _repr_mimebundle_(self, **kwargs) -> dict:
        bundle = super()._repr_mimebundle_(**kwargs) or {}
        bundle["text/plain"] = render_text(self._summary)
        bundle["text/html"] = render_html(self._summary)
        return bundle

    def __repr__(self) -> str:
        return render_text(self._summary)


def _shutdown_cluster() -> None:
    import shoal

    shoal.shutdown()
