"""`ClusterView`: a live view of the cluster's nodes, tasks and actors, with a shut-down button.

Reads only the public state API (`shoal.util.state`) and the refresher's event snapshots; the
drawing is `cluster_summary`'s. A `LiveView`: drawn by the refresher thread, left as a static
summary when the cluster shuts down. The buttons' callbacks run on the comm thread and only
show or hide the confirmation, or queue the shutdown for the refresher thread.
"""

from __future__ import annotations

import time

import ipywidgets

from . import refresher
from .cluster_summary import ClusterSummary, TaskRate, render_html, render_text, summarize
from .live import LiveView

__all__ = ["ClusterView", "fetch_summary"]

_NODE_ROWS_INTERVAL_S = 10.0
_FINAL_SNAPSHOT_WAIT_S = 1.0  # the node publishes a snapshot about twice a second


def fetch_summary() -> ClusterSummary:
    """A summary from the state API alone (no event stream), for the first and last drawing."""
    import shoal
    from shoal.util import state

    if not shoal.is_initialized():
        return ClusterSummary(connected=False)
    nodes = state.list_nodes()
    tasks: dict = {}
    for row in state.list_tasks(limit=100_000):
        # Ray lists a cancelled task as FAILED; the view counts it apart.
        key = "CANCELLED" if row.get("error_type") == "TASK_CANCELLED" else row.get("state", "")
        tasks[key] = tasks.get(key, 0) + 1
    actors: dict = {}
    for entry in state.summarize_actors()["cluster"]["summary"].values():
        for actor_state, count in entry["state_counts"].items():
            actors[actor_state] = actors.get(actor_state, 0) + count
    summary = summarize(None, nodes)
    return ClusterSummary(True, summary.nodes, tasks, actors, summary.num_workers)


class ClusterView(LiveView):
    """A live view of the cluster: a row per node (CPU, GPU, memory, object store, each with its
    numbers), tasks as pending / running / finished / failed / cancelled, actors, and a
    sparkline of tasks finished per second. "Shut down" asks before it stops the cluster.

    Updated about once a second by the refresher thread, unless `SHOAL_NONINTERACTIVE=1`, in
    which case it renders once. When the cluster shuts down, its output becomes a static summary
    of the last state (HTML and text), which is what a saved notebook shows.

    Args:
        live: refresh on the refresher thread; None (default) means "unless non-interactive".

    Example:
        view = shoal.widgets.ClusterView()
        view  # last expression of a cell
    """

    def __init__(self, live: bool | None = None, **kwargs):
        self._summary = ClusterSummary(connected=False)
        self._rate = TaskRate()
        self._node_rows: list[dict] = []
        self._nodes_read_at = float("-inf")
        super().__init__(live=live, **kwargs)

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

    @property
    def task_counts(self) -> dict:
        """Tasks by word: pending, running, finished, failed, cancelled."""
        return self._summary.task_counts

    # ------------------------------------------------------------------ LiveView

    def _controls(self) -> list:
        self.shutdown_button = ipywidgets.Button(
            description="Shut down", button_style="", icon="power-off", tooltip="Stop the cluster"
        )
        self.shutdown_button.add_class("shoal-shutdown")
        self.confirm_button = ipywidgets.Button(description="Yes, shut down", button_style="danger")
        self.confirm_button.add_class("shoal-shutdown-confirm")
        self.cancel_button = ipywidgets.Button(description="Cancel")
        self.cancel_button.add_class("shoal-shutdown-cancel")
        question = ipywidgets.HTML(
            "Shut the cluster down? Running tasks stop and stored objects are freed; "
            "the next task starts a new cluster."
        )
        self.confirmation = ipywidgets.HBox(
            [question, self.confirm_button, self.cancel_button], layout=ipywidgets.Layout(display="none")
        )
        self.confirmation.add_class("shoal-shutdown-question")
        self.shutdown_button.on_click(self._on_shutdown_clicked)
        self.confirm_button.on_click(self._on_confirm_clicked)
        self.cancel_button.on_click(self._on_cancel_clicked)
        return [self.shutdown_button, self.confirmation]

    def _poll(self, snapshot: dict | None) -> None:
        import shoal
        from shoal.util import state

        # State queries start a cluster when there is none, so the refresher makes as few as it
        # can: the snapshot carries its node's numbers, node rows are re-read only now and then.
        if snapshot is None or not shoal.is_initialized():
            return
        now = time.monotonic()
        if now - self._nodes_read_at >= _NODE_ROWS_INTERVAL_S:
            self._node_rows = [dict(row) for row in state.list_nodes()]
            self._nodes_read_at = now
        self._set(summarize(snapshot, self._node_rows), now)

    def _poll_now(self) -> None:
        self._set(fetch_summary(), time.monotonic())

    def _poll_final(self) -> None:
        # A fresh snapshot: its counts cover every task since the node started, where the task
        # list keeps only the recent history.
        import shoal
        from shoal.util import state

        if not shoal.is_initialized():
            return
        with state.ClusterEvents() as events:
            snapshot = events.next(timeout_s=_FINAL_SNAPSHOT_WAIT_S)
        if snapshot is None:
            self._poll_now()
            return
        self._set(summarize(snapshot, [dict(row) for row in state.list_nodes()]), time.monotonic())

    def _set(self, summary: ClusterSummary, now: float) -> None:
        self._summary = summary
        if summary.connected:
            self._rate.add(now, summary.tasks_done)
        self.shutdown_button.disabled = not summary.connected

    def _render_html(self) -> str:
        return render_html(self._summary, self._rate.rates)

    def _render_text(self) -> str:
        return render_text(self._summary, self._rate.rates)

    def _on_stop(self) -> None:
        self.shutdown_button.disabled = True
        self.confirmation.layout.display = "none"

    # ------------------------------------------------------------------ buttons (comm thread)

    def _on_shutdown_clicked(self, _button=None) -> None:
        self.shutdown_button.disabled = True
        self.confirmation.layout.display = "flex"

    def _on_cancel_clicked(self, _button=None) -> None:
        self.confirmation.layout.display = "none"
        self.shutdown_button.disabled = self.stopped or not self._summary.connected

    def _on_confirm_clicked(self, _button=None) -> None:
        # Never call into shoal here: hand the work to the refresher thread.
        self.confirm_button.disabled = self.cancel_button.disabled = True
        refresher.submit(_shutdown_cluster)


def _shutdown_cluster() -> None:
    import shoal

    shoal.shutdown()
