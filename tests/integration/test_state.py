"""The state API and the `shoal list` / `shoal summary` commands."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import shoal
from shoal import exceptions
from shoal.util import state
from shoal.widgets.cluster_summary import TASK_WORDS, count_words, task_word
from shoal.widgets.task_timeline import word_counts

from tests.waiting import wait_for


@shoal.remote
def quick(x):
    return x


@shoal.remote
def boom():
    raise ValueError("no")


@shoal.remote(num_cpus=2)
def cancel_hog():
    time.sleep(1)
    return "hog"


@shoal.remote(num_cpus=2)
def cancel_queued():
    return "ran"


@shoal.remote
def cancel_running():
    time.sleep(60)


@shoal.remote
def cancel_forced():
    while True:
        pass


@shoal.remote
def cancel_child():
    time.sleep(60)


@shoal.remote
def cancel_parent():
    return shoal.get(cancel_child.remote())


@shoal.remote
class Holder:
    def ping(self):
        return "pong"


def test_list_nodes_and_workers(cluster):
    (node,) = state.list_nodes()
    assert node.state == "ALIVE" and node["resources_total"]["CPU"] == 2
    shoal.get(quick.remote(1))
    workers = state.list_workers()
    assert workers and all(w.pid > 0 for w in workers)
    assert {w.state for w in workers} <= {"IDLE", "BUSY", "BLOCKED", "ACTOR", "STARTING"}


def test_list_tasks_with_states_and_filters(cluster):
    shoal.get([quick.remote(i) for i in range(5)])
    with pytest.raises(ValueError):
        shoal.get(boom.remote())
    finished = state.list_tasks(filters=[("name", "=", quick._function.__qualname__), ("state", "=", "FINISHED")])
    assert len(finished) >= 5
    failed = state.list_tasks(filters=[("state", "=", "FAILED")])
    assert any(row.error_type == "TASK_EXECUTION_EXCEPTION" and "boom" in row.name for row in failed)
    assert len(state.list_tasks(limit=2)) == 2
    with pytest.raises(ValueError, match="filter"):
        state.list_tasks(filters=[("state", "~", "x")])
    with pytest.raises(ValueError, match="limit"):
        state.list_tasks(limit=0)


def test_running_task_is_listed_as_running(cluster):
    @shoal.remote
    def sleeper():
        time.sleep(2)

    ref = sleeper.remote()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        running = state.list_tasks(filters=[("state", "=", "RUNNING")])
        if any("sleeper" in row.name for row in running):
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the sleeping task never showed as RUNNING")
    shoal.get(ref)


def test_list_and_summarize_actors(cluster):
    holder = Holder.options(name="state-holder").remote()
    shoal.get(holder.ping.remote())
    rows = state.list_actors(filters=[("name", "=", "state-holder")])
    assert len(rows) == 1 and rows[0].state == "ALIVE" and rows[0].class_name == "Holder"
    summary = state.summarize_actors()["cluster"]
    assert summary["summary"]["Holder"]["state_counts"]["ALIVE"] >= 1
    shoal.kill(holder)


def test_list_objects_and_jobs(cluster):
    import numpy as np

    big = shoal.put(np.zeros(1_000_000))
    small = shoal.put("small")
    rows = {row.object_id: row for row in state.list_objects(limit=10_000)}
    assert rows[big.hex()].location == "SHARED_MEMORY" and rows[big.hex()].object_size >= 8_000_000
    assert rows[small.hex()].location == "INLINE"
    jobs = state.list_jobs()
    assert any(job.driver_pid == os.getpid() and job.status == "RUNNING" for job in jobs)
    summary = state.summarize_objects()["cluster"]
    assert summary["summary"]["SHARED_MEMORY"]["count"] >= 1


def test_summarize_tasks(cluster):
    shoal.get([quick.remote(i) for i in range(3)])
    summary = state.summarize_tasks()["cluster"]
    assert summary["total_tasks"] >= 3
    assert summary["summary"][quick._function.__qualname__]["state_counts"]["FINISHED"] >= 3


def test_cli_list_and_summary(tmp_path):
    env = dict(os.environ, TMPDIR=str(tmp_path))
    cli = [sys.executable, "-m", "shoal.cli"]
    subprocess.run(cli + ["start", "--num-cpus", "1"], check=True, capture_output=True, env=env, timeout=60)
    try:
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import shoal; shoal.init(address='auto');"
                "f = shoal.remote(lambda x: x); shoal.get([f.remote(i) for i in range(3)])",
            ],
            check=True,
            capture_output=True,
            env=env,
            timeout=60,
        )
        tasks = subprocess.run(
            cli + ["list", "tasks", "--filter", "state=FINISHED"], capture_output=True, text=True, env=env, timeout=60
        )
        assert tasks.returncode == 0, tasks.stderr
        assert "FINISHED" in tasks.stdout and "3 tasks" in tasks.stdout
        nodes = subprocess.run(cli + ["list", "nodes"], capture_output=True, text=True, env=env, timeout=60)
        assert "ALIVE" in nodes.stdout
        summary = subprocess.run(cli + ["summary", "tasks"], capture_output=True, text=True, env=env, timeout=60)
        assert "FINISHED=3" in summary.stdout, summary.stdout
        status = subprocess.run(cli + ["status"], capture_output=True, text=True, env=env, timeout=60)
        assert "Tasks by state: FINISHED=3" in status.stdout, status.stdout
        bad = subprocess.run(
            cli + ["list", "tasks", "--filter", "nonsense"], capture_output=True, text=True, env=env, timeout=60
        )
        assert bad.returncode == 2 and "KEY=VALUE" in bad.stderr
    finally:
        subprocess.run(cli + ["stop"], capture_output=True, env=env, timeout=60)


def test_event_stream_snapshots(cluster):
    with state.ClusterEvents() as events:
        first = events.next(timeout_s=5)
        assert first is not None and first["resources_total"]["CPU"] == 2
        shoal.get([quick.remote(i) for i in range(20)])
        deadline = time.monotonic() + 10
        latest = first
        while (
            time.monotonic() < deadline
            and latest["tasks_by_state"].get("FINISHED", 0) < first["tasks_by_state"].get("FINISHED", 0) + 20
        ):
            latest = events.next(timeout_s=2) or latest
        assert latest["tasks_by_state"]["FINISHED"] >= first["tasks_by_state"].get("FINISHED", 0) + 20
        assert latest["sequence"] > first["sequence"]
    with pytest.raises(RuntimeError, match="closed"):
        events.next(timeout_s=0)


CANCELLED_NAMES = ("cancel_queued", "cancel_running", "cancel_forced", "cancel_parent", "cancel_child")


def _wait_running(name: str) -> None:
    wait_for(
        lambda: any(row.name == name for row in state.list_tasks(filters=[("state", "=", "RUNNING")])),
        30,
        describe=lambda: f"tasks: {[(row.name, row.state) for row in state.list_tasks()]}",
    )


def _cancelled_rows() -> list | None:
    """The rows of the cancelled tasks, once every one of them has ended."""
    rows = [row for row in state.list_tasks() if row.name in CANCELLED_NAMES]
    ended = {row.name for row in rows if row.state in ("FINISHED", "FAILED")}
    return rows if ended == set(CANCELLED_NAMES) else None


def test_cancelled_tasks_are_listed_as_ray_lists_them(cluster):
    """Queued, running, force-cancelled and recursively cancelled tasks are FAILED with error type
    TASK_CANCELLED (Ray's names), and "cancelled", not "failed", in the widgets' counts."""
    with state.ClusterEvents() as events:
        before = wait_for(lambda: events.next(timeout_s=2), 10)["tasks_by_state"]
        hog = cancel_hog.remote()
        queued = cancel_queued.remote()
        shoal.cancel(queued)
        with pytest.raises(exceptions.TaskCancelledError):
            shoal.get(queued, timeout=30)
        assert shoal.get(hog, timeout=30) == "hog"
        running = cancel_running.remote()
        _wait_running("cancel_running")
        shoal.cancel(running)
        forced = cancel_forced.remote()
        _wait_running("cancel_forced")
        shoal.cancel(forced, force=True)
        parent = cancel_parent.remote()
        _wait_running("cancel_child")
        shoal.cancel(parent, recursive=True)
        for ref in (running, forced, parent):
            with pytest.raises(exceptions.TaskCancelledError):
                shoal.get(ref, timeout=30)

        rows = wait_for(_cancelled_rows, 30, describe=lambda: f"tasks: {state.list_tasks()}")
        assert sorted((row.name, row.state, row.error_type) for row in rows) == [
            (name, "FAILED", "TASK_CANCELLED") for name in sorted(CANCELLED_NAMES)
        ]
        summary = state.summarize_tasks()["cluster"]["summary"]
        assert all(summary[name]["state_counts"] == {"FAILED": 1} for name in CANCELLED_NAMES), summary
        assert summary["cancel_hog"]["state_counts"] == {"FINISHED": 1}
        # TaskView's words for the rows; ClusterView's for the event stream's counts.
        assert word_counts(rows)["cancelled"] == 5 and word_counts(rows)["failed"] == 0

        def counted_all() -> dict | None:
            snapshot = events.next(timeout_s=2)
            if snapshot is None or snapshot["tasks_by_state"]["CANCELLED"] < before["CANCELLED"] + 5:
                return None
            return snapshot["tasks_by_state"]

        after = wait_for(counted_all, 30)
        words_before = count_words(before, task_word, TASK_WORDS)
        words_after = count_words(after, task_word, TASK_WORDS)
        assert words_after["cancelled"] - words_before["cancelled"] == 5
        assert words_after["failed"] == words_before["failed"]
