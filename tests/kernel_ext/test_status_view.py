"""What `%shoal tasks` shows: the most recent tasks first, filtered, with ids that differ on screen.

Pure presentation over state-API rows, so no cluster; the magic itself is tested in test_magics.
"""

from __future__ import annotations

import pytest
from shoal.kernel_ext.status_view import TASK_COLUMNS, StateTable, distinct_suffixes, recent_tasks

# Task ids as one driver makes them: node tag, per-process bytes, then a counter.
PREFIX = "0a1b2c3d" + "e4f5a6b7"


def task_id(counter: int, prefix: str = PREFIX) -> str:
    return prefix + f"{counter:016x}"


def row(counter: int, state: str, name: str = "f", start=None, end=None) -> dict:
    return {
        "task_id": task_id(counter),
        "name": name,
        "state": state,
        "type": "NORMAL_TASK",
        "worker_pid": 10,
        "start_time_ms": start,
        "end_time_ms": end,
    }


def test_ids_of_one_driver_show_their_distinguishing_end():
    ids = [task_id(counter) for counter in (1, 2, 300)]
    short = distinct_suffixes(ids)
    assert [short[i] for i in ids] == ["…00000001", "…00000002", "…0000012c"]


def test_ids_that_share_their_end_show_more_until_they_differ():
    first, second = task_id(5), task_id(5, prefix="0a1b2c3d" + "99999999")
    short = distinct_suffixes([first, second])
    assert short[first] != short[second]
    assert short[first].startswith("…") and first.endswith(short[first][1:])
    assert len(short[first]) == len(short[second])


def test_recent_first_queued_then_by_start_time():
    rows = [
        row(1, "FINISHED", start=1_000, end=1_500),
        row(2, "FAILED", start=2_000, end=2_100),
        row(3, "RUNNING", start=3_000),
        row(4, "PENDING_NODE_ASSIGNMENT"),
        row(5, "PENDING_NODE_ASSIGNMENT"),
        row(6, "FAILED", end=4_000),  # cancelled before it started
    ]
    order = [r["task_id"] for r in recent_tasks(rows)]
    assert order == [task_id(n) for n in (5, 4, 6, 3, 2, 1)]


def test_filters_by_state_and_name_and_limits():
    rows = [
        row(1, "FINISHED", name="cell [3]", start=1),
        row(2, "FAILED", name="load_data", start=2),
        row(3, "PENDING_ARGS_AVAIL", name="cell [4]"),
        row(4, "FINISHED", name="Cell [5]", start=4),
    ]
    assert [r["task_id"] for r in recent_tasks(rows, state="failed")] == [task_id(2)]
    assert [r["task_id"] for r in recent_tasks(rows, state="pending")] == [task_id(3)]
    assert [r["task_id"] for r in recent_tasks(rows, name="CELL")] == [task_id(3), task_id(4), task_id(1)]
    assert [r["task_id"] for r in recent_tasks(rows, limit=2)] == [task_id(3), task_id(4)]
    with pytest.raises(ValueError, match="unknown task state 'done'.*FINISHED"):
        recent_tasks(rows, state="done")
    with pytest.raises(ValueError, match="--limit must be at least 1"):
        recent_tasks(rows, limit=0)


def test_table_says_when_it_shows_only_the_most_recent():
    rows = tuple(recent_tasks([row(n, "FINISHED", start=n, end=n + 3) for n in range(1, 6)], limit=2))
    table = StateTable("tasks", TASK_COLUMNS, rows, total=5)
    text = repr(table)
    assert text.splitlines()[0] == "tasks: 2 most recent of 5"
    assert "…00000005" in text and "…00000004" in text and "…00000003" not in text
    page = table._repr_html_()
    assert "shoal tasks: 2 most recent of 5" in page
    assert f"<td title='{task_id(5)}'>…00000005</td>" in page
    assert repr(StateTable("tasks", TASK_COLUMNS, rows)).splitlines()[0] == "tasks: 2"
