"""Widgets against a real 2-CPU cluster: state after tasks, live updates, reprs, progress."""

from __future__ import annotations

import pytest
import shoal
from shoal.widgets import ClusterView, ProgressBar, TaskView, refresher, track

from tests.waiting import wait_for

pytestmark = pytest.mark.integration


@shoal.remote
def square(x):
    return x * x


@shoal.remote
def pause(seconds):
    import time

    time.sleep(seconds)
    return seconds


def _finished(view) -> int:
    return view.task_counts["finished"]


def test_cluster_view_shows_resources_and_tasks(cluster, closing):
    assert shoal.get([square.remote(i) for i in range(4)]) == [0, 1, 4, 9]
    view = closing(ClusterView())
    (node,) = view.summary.nodes
    assert node.cpu[1] == 2.0
    assert node.object_store_bytes[1] > 0
    assert _finished(view) >= 4
    assert refresher.current_thread() is None  # SHOAL_NONINTERACTIVE=1: rendered once, not live
    assert view.stopped
    assert f"<b>{_finished(view)}</b> finished" in view._body.value
    assert "CPU</span>" in view._body.value and "0/2</span>" in view._body.value


def test_cluster_view_updates_live_after_tasks_finish(cluster, closing, live):
    view = closing(ClusterView())
    assert refresher.current_thread() is not None
    before = _finished(view)
    shoal.get([square.remote(i) for i in range(3)])
    wait_for(lambda: _finished(view) >= before + 3, 5, describe=lambda: f"tasks {view.tasks_by_state}")


def test_cluster_view_shows_running_cpu_use(cluster, closing, live):
    view = closing(ClusterView())
    refs = [pause.remote(1.5) for _ in range(2)]
    wait_for(lambda: view.summary.nodes[0].cpu[0] >= 1.0, 4, describe=lambda: repr(view))
    wait_for(lambda: "running" in view._body.value and view.task_counts["running"] >= 1, 4, describe=lambda: repr(view))
    shoal.get(refs)


def test_static_reprs_carry_a_summary(cluster, closing, live):
    view = closing(ClusterView())
    bundle = view._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle  # live: the widget, with a fallback
    assert bundle["text/plain"].startswith("shoal cluster: 1 node")
    assert "class='shoal-node'" in bundle["text/html"] and "tasks</span>" in bundle["text/html"]
    static = view.static_bundle()
    assert set(static) == {"text/plain", "text/html"}


def test_closing_the_last_widget_stops_the_refresher(cluster, live):
    first, second = ClusterView(), ClusterView()
    thread = refresher.current_thread()
    assert thread is not None and thread.name == "shoal-widgets-refresher"
    first.close()
    assert refresher.current_thread() is thread  # one thread for all widgets, still needed
    second.close()
    wait_for(lambda: not thread.is_alive(), 5)


def test_task_view_table_and_timeline(cluster, closing):
    shoal.get([square.remote(i) for i in range(5)])
    view = closing(TaskView(limit=3))
    assert len(view.rows) == 3
    page = view._repr_html_()
    assert page.count("class='shoal-task-row'") == 3
    pids = {row["worker_pid"] for row in view.rows if row.get("start_time_ms")}
    assert page.count("class='shoal-worker'") == len(pids)
    assert page.count("class='shoal-task'") == sum(1 for row in view.rows if row.get("start_time_ms"))
    assert "class='shoal-axis'" in page and "data-function='square'" in page
    assert "3 recent" in view._repr_mimebundle_()["text/plain"]


def test_task_view_updates_by_itself(cluster, closing, live):
    view = closing(TaskView(limit=100))
    before = len(view.rows)
    shoal.get([square.remote(i) for i in range(4)])
    wait_for(lambda: len(view.rows) >= before + 4, 5, describe=lambda: repr(view))
    assert f"{len(view.rows)} recent task(s)" in view._body.value


def test_progress_bar_reaches_all_ready(cluster, closing, live):
    refs = [pause.remote(0.2) for _ in range(4)]
    bar = closing(ProgressBar(refs))
    assert bar.total == 4
    wait_for(lambda: bar.done, 5, describe=lambda: repr(bar))
    wait_for(lambda: bar.stopped, 5, describe=lambda: repr(bar))
    assert "4/4 ready (100%)" in bar._body.value
    assert bar.static_bundle()["text/plain"] == "tasks: 4/4 ready"
    wait_for(lambda: refresher.current_thread() is None, 5)  # a finished bar stops being refreshed


def test_track_without_live_updates_polls_on_demand(cluster, closing):
    refs = [square.remote(i) for i in range(3)]
    shoal.get(refs)
    bar = closing(track(refs))
    assert refresher.current_thread() is None
    assert bar.update() == 3 and "3/3 ready" in bar._repr_html_()
