"""Widget pieces without a cluster: summaries, static reprs, the timeline, the refresher thread."""

from __future__ import annotations

import re
import subprocess
import sys
import threading

from shoal.widgets import refresher
from shoal.widgets.cluster_summary import (
    ClusterSummary,
    TaskRate,
    render_html,
    render_sparkline,
    render_text,
    summarize,
    task_word,
)
from shoal.widgets.task_timeline import recent_tasks, render_legend, render_table, render_timeline

from tests.waiting import wait_for

GIB = 1024**3
SNAPSHOT = {
    "node_id": "abcdef0123456789",
    "resources_total": {"CPU": 2.0, "memory": 4.0 * GIB},
    "resources_available": {"CPU": 0.5, "memory": 3.0 * GIB},
    "object_store_used_bytes": GIB // 2,
    "object_store_total_bytes": 2 * GIB,
    "tasks_by_state": {"FINISHED": 7, "RUNNING": 2, "FAILED": 1, "CANCELLED": 3, "PENDING_NODE_ASSIGNMENT": 10},
    "actors_by_state": {"ALIVE": 1},
    "num_workers": 3,
}
NODE_ROW = {"node_id": "abcdef0123456789", "node_ip": "127.0.0.1", "resources_total": {"CPU": 2.0}}


def _task(task_id, pid, start, end, state="FINISHED", name="f"):
    return {
        "task_id": task_id,
        "name": name,
        "state": state,
        "worker_pid": pid,
        "start_time_ms": start,
        "end_time_ms": end,
    }


def test_summary_from_snapshot_reports_used_and_total():
    summary = summarize(SNAPSHOT, [NODE_ROW])
    (node,) = summary.nodes
    assert node.cpu == (1.5, 2.0)
    assert node.gpu == (0.0, 0.0)
    assert node.memory_bytes == (1.0 * GIB, 4.0 * GIB)
    assert summary.object_store_bytes == (GIB / 2, 2 * GIB)
    assert summary.tasks_by_state["FINISHED"] == 7
    assert summary.actors_by_state == {"ALIVE": 1}


def test_static_text_and_html_summaries():
    summary = summarize(SNAPSHOT, [NODE_ROW])
    text = render_text(summary, rates=(0.5, 4.0))
    assert "1 node, 3 workers, 4.0 tasks/s" in text
    assert "CPU 1.5/2" in text and "memory 1.0/4.0 GiB" in text and "object store 0.50/2.0 GiB" in text
    assert "tasks: 10 pending, 2 running, 7 finished, 1 failed, 3 cancelled" in text
    assert "GPU" not in text and "PENDING_NODE_ASSIGNMENT" not in text
    assert "actors: 1 alive" in text
    page = render_html(summary, rates=(0.5, 4.0))
    assert page.count("class='shoal-node'") == 1
    assert "data-resource='GPU'" not in page  # no GPU column, and no gap for it, without GPUs
    assert "1.5/2</span>" in page and "1.0/4.0 GiB</span>" in page and "width:75%" in page
    assert "<b>3</b> cancelled" in page and "<b>1</b> failed" in page
    assert "class='shoal-sparkline'" in page
    assert "not running" in render_text(ClusterSummary(connected=False))


def test_gpu_column_only_when_a_node_has_gpus():
    snapshot = {**SNAPSHOT, "resources_total": {"CPU": 2.0, "GPU": 1.0}, "resources_available": {"GPU": 0.0}}
    text = render_text(summarize(snapshot, [NODE_ROW]))
    assert "GPU 1/1" in text


def test_task_words_users_know():
    assert task_word("PENDING_NODE_ASSIGNMENT") == task_word("PENDING_ARGS_AVAIL") == "pending"
    assert task_word("RUNNING") == task_word("RUNNING_IN_RAY_GET") == "running"
    assert task_word("FAILED", "TASK_CANCELLED") == "cancelled" == task_word("CANCELLED")
    assert task_word("FAILED", "TASK_EXECUTION_EXCEPTION") == "failed"


def test_task_rate_is_tasks_done_per_second_between_samples():
    rate = TaskRate(samples=3)
    for now_s, done in ((0.0, 0), (1.0, 4), (3.0, 10), (3.0, 99), (4.0, 10), (5.0, 11)):
        rate.add(now_s, done)
    assert rate.rates == (3.0, 0.0, 1.0)  # a repeated time is ignored; only the last 3 are kept
    assert render_sparkline(rate.rates).count("class='shoal-rate-bar'") == 3


def _styles(markup: str, css_class: str) -> list[dict]:
    """The inline style of each element of `css_class`, as {property: value}."""
    styles = re.findall(rf"class='{css_class}'[^>]*style='([^']*)'", markup)
    return [dict(item.split(":", 1) for item in style.split(";") if item) for style in styles]


def _px(value: str) -> float:
    assert value.endswith("px"), value
    return float(value[:-2])


def test_the_sparkline_shows_from_its_first_sample():
    (bar,) = _styles(render_sparkline((22.2,), width=120, height=20), "shoal-rate-bar")
    assert _px(bar["height"]) == 16.0 and _px(bar["width"]) >= 4, "the peak: the track's height"
    assert 115 <= _px(bar["left"]) and _px(bar["left"]) + _px(bar["width"]) <= 120, "the newest sample on the right"
    assert bar["background"] == "#1e88e5"
    idle, busy = _styles(render_sparkline((0.0, 4.0)), "shoal-rate-bar")
    assert _px(idle["height"]) == 1.0 and idle["background"] != busy["background"], "no tasks: a grey tick"
    assert _px(idle["left"]) < _px(busy["left"])
    (track,) = _styles(render_sparkline(()), "shoal-sparkline")
    assert (track["width"], track["height"]) == ("120px", "20px") and track["background"], "a track before samples"


def test_drawings_are_html_a_sanitizer_keeps():
    """JupyterLab strips SVG (and scripts) from the outputs of an untrusted notebook, such as a
    tutorial as cloned: the views' drawings use only spans and divs with inline styles."""
    rows = [_task("t1", 11, 1000, 1500), _task("t2", 12, 1100, 1300, name="g")]
    summary = summarize(SNAPSHOT, [NODE_ROW])
    for markup in (render_html(summary, rates=(0.5, 4.0)), render_timeline(rows, now_ms=2000), render_legend(rows)):
        tags = set(re.findall(r"<(\w+)", markup))
        assert tags <= {"div", "span", "b", "table", "tr", "td"}, tags


def test_task_table_escapes_names_and_shows_duration():
    rows = [_task("t1", 11, 1000, 1250, name="<b>bad</b>")]
    table = render_table(rows, now_ms=5000)
    assert "&lt;b&gt;bad&lt;/b&gt;" in table and "<b>bad</b>" not in table
    assert "0.250 s" in table and "<td>11</td>" in table and "<td>finished</td>" in table


def test_timeline_has_a_row_per_pid_a_bar_per_started_task_and_a_time_axis():
    rows = [
        _task("t1", 11, 1000, 1500),
        _task("t2", 12, 1100, None, state="RUNNING", name="g"),
        _task("t3", 11, 1600, 1700),
        _task("t4", None, None, None, state="PENDING_NODE_ASSIGNMENT"),
    ]
    timeline = render_timeline(rows, now_ms=2000)
    assert timeline.count("class='shoal-worker'") == 2
    assert timeline.count("class='shoal-task'") == 3
    assert "data-worker-pid='11'" in timeline and "data-task-id='t2'" in timeline
    assert timeline.count("<div") == 1, "one drawing, nothing nested to cut it short"
    # 1 s from first start to now: ticks every 0.2 s, labelled from 0
    ticks = re.findall(r"class='shoal-tick'[^>]*>([^<]*)<", timeline)
    assert ticks == ["0.0 s", "0.2 s", "0.4 s", "0.6 s", "0.8 s", "1.0 s"]
    # hovering a bar: name, duration, worker, state
    assert "title='g\nduration 0.900 s\nworker pid 12\nstate running'" in timeline
    bars = _styles(timeline, "shoal-task")
    assert len({bar["background"] for bar in bars}) == 2  # a colour per function
    t1, t3, t2 = bars  # worker 11's, then worker 12's
    assert _px(t1["left"]) == 90.0 and _px(t1["width"]) == 300.0, "from 0 to 0.5 s of 1 s, on 600 px"
    assert _px(t3["left"]) == 90.0 + 360.0 and _px(t2["top"]) > _px(t3["top"])
    assert t2["opacity"] == "0.55" and "opacity" not in t1, "still running"
    legend = render_legend(rows)
    assert "data-function='f'" in legend and "f (2)" in legend and "g (1)" in legend


def test_recent_tasks_are_newest_first():
    rows = [_task("old", 1, 1000, 1100), _task("new", 1, 3000, 3100), _task("mid", 1, 2000, 2100)]
    assert [row["task_id"] for row in recent_tasks(rows, 2)] == ["new", "mid"]


class _CountingTarget:
    def __init__(self, stop_after):
        self.calls = 0
        self.stop_after = stop_after

    def _refresh(self, snapshot):
        self.calls += 1
        return self.calls < self.stop_after

    def _cluster_gone(self):
        pass


def test_refresher_runs_actions_on_its_thread_and_exits_when_idle():
    ran_on = []
    done = threading.Event()
    refresher.submit(lambda: (ran_on.append(threading.current_thread().name), done.set()))
    assert done.wait(5)
    assert ran_on == [refresher.THREAD_NAME]
    wait_for(lambda: refresher.current_thread() is None, 5)


def test_refresher_stops_when_its_last_target_is_done():
    target = _CountingTarget(stop_after=2)
    refresher.register(target)
    assert refresher.current_thread() is not None
    wait_for(lambda: refresher.current_thread() is None, 5, describe=lambda: f"calls={target.calls}")
    assert target.calls == 2


def test_stop_refresher_is_idempotent():
    refresher.register(_CountingTarget(stop_after=1000))
    refresher.stop_refresher()
    refresher.stop_refresher()
    assert refresher.current_thread() is None


def test_import_shoal_does_not_import_ipywidgets():
    code = "import sys, shoal, shoal.widgets; print('ipywidgets' in sys.modules)"
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "False"
