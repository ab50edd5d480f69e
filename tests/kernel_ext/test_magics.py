"""`%%remote`, `%remote`, `%remote_reset` and `%shoal` in an in-process shell on a real cluster."""

from __future__ import annotations

import re

import pytest
import shoal
from IPython.core.error import UsageError
from shoal.util import state

from tests.waiting import wait_for

pytestmark = pytest.mark.integration


def cell(shell, line: str, source: str):
    """Run `%%remote line` over `source`; returns the magic's value, raises what it raises."""
    return shell.run_cell_magic("remote", line, source)


def test_reads_are_captured_and_assignments_pushed_back(shell):
    shell.user_ns.update(base=10, unrelated=object())
    value = cell(shell, "", "import math\ndoubled = base * 2\nroot = math.sqrt(doubled)\n")
    assert value is None
    assert shell.user_ns["doubled"] == 20
    assert shell.user_ns["root"] == pytest.approx(20**0.5)


def test_modules_are_not_pushed_back(shell):
    shell.user_ns.pop("json", None)
    cell(shell, "", "import json\nencoded = json.dumps([1])\n")
    assert shell.user_ns["encoded"] == "[1]"
    assert "json" not in shell.user_ns


def test_last_expression_is_returned_and_becomes_out(shell):
    shell.user_ns["side"] = 7
    result = shell.run_cell("%%remote\narea = side * side\narea + 1\n", store_history=True)
    assert result.error_in_exec is None and result.error_before_exec is None
    assert result.result == 50
    assert shell.user_ns["Out"][shell.execution_count - 1] == 50


def test_no_push_leaves_the_namespace_alone(shell):
    shell.user_ns.pop("kept_remote", None)
    assert cell(shell, "--no-push", "kept_remote = 1\nkept_remote + 1") == 2
    assert "kept_remote" not in shell.user_ns


def test_out_chooses_the_names(shell):
    for name in ("first_out", "second_out"):
        shell.user_ns.pop(name, None)
    cell(shell, "--out second_out", "first_out = 1\nsecond_out = 2\n")
    assert shell.user_ns["second_out"] == 2
    assert "first_out" not in shell.user_ns


def test_capture_overrides_the_analysis(shell):
    shell.user_ns.update(chosen=3, other=4)
    assert cell(shell, "--capture chosen --no-push", "'other' in globals(), chosen") == (False, 3)
    with pytest.raises(NameError):
        cell(shell, "--no-capture --no-push", "chosen")
    with pytest.raises(UsageError, match="not defined in the notebook: never_defined"):
        cell(shell, "--capture never_defined", "1")


def test_object_refs_are_resolved_on_the_worker(shell):
    shell.user_ns["numbers_ref"] = shoal.put([1, 2, 3])
    assert cell(shell, "--no-push", "sum(numbers_ref)") == 6


def test_functions_defined_in_a_cell_come_back(shell):
    cell(shell, "", "def triple(v):\n    return 3 * v\n")
    assert shell.user_ns["triple"](2) == 6


def test_unpicklable_results_stay_remote(shell, capsys):
    shell.user_ns.pop("lock_remote", None)
    cell(shell, "", "import threading\nlock_remote = threading.Lock()\nplain_remote = 1\n")
    assert "lock_remote" not in shell.user_ns
    assert shell.user_ns["plain_remote"] == 1
    assert "lock_remote: not picklable" in capsys.readouterr().err


def test_task_options_are_applied(shell):
    value = cell(shell, "--num-cpus 1 --memory 0 --retries 1 --name named_cell --resources '{}'", "41 + 1")
    assert value == 42
    names = [row["name"] for row in state.list_tasks()]
    assert "named_cell" in names


@pytest.mark.parametrize(
    ("line", "option"),
    [
        ("--bogus 1", "--bogus"),
        ("--num-cpus many", "--num-cpus"),
        ("--num-cpus -1", "--num-cpus"),
        ("--resources not-json", "--resources"),
        ("--resources '[1, 2]'", "--resources"),
        ("--timeout -2", "--timeout"),
        ("--out a,1b", "'1b'"),
        ("--capture a --no-capture", "--no-capture"),
        ("--out-ref not-a-name --async", "--out-ref"),
    ],
)
def test_bad_options_name_the_option(shell, line, option):
    with pytest.raises(UsageError) as raised:
        cell(shell, line, "1")
    assert option in str(raised.value)


def test_timeout_raises_get_timeout_error(shell):
    with pytest.raises(shoal.exceptions.GetTimeoutError):
        cell(shell, "--timeout 0.3 --no-push", "import time\ntime.sleep(3)\n")


def test_errors_point_at_the_cell_lines(shell):
    source = "a = 1\nb = 2\nc = a + missing_name\n"
    with pytest.raises(NameError) as raised:
        cell(shell, "", source)
    error = raised.value
    assert isinstance(error, shoal.exceptions.RayTaskError)
    text = "\n".join(error._render_traceback_())
    assert re.search(r"^  Cell In\[\d+\], line 3, in <module>$", text, re.M), text
    assert "remote-cell" not in text
    assert "c = a + missing_name" in text


def test_remote_cell_error_shows_only_the_cells_frames_under_its_number(shell):
    result = shell.run_cell("%%remote\na = 1\nb = 2\nc = a + missing_name\n", store_history=True)
    error, number = result.error_in_exec, result.execution_count
    assert isinstance(error, NameError)
    lines = error._render_traceback_()
    assert lines[0].startswith(f"RayTaskError(NameError): Cell In[{number}] on the cluster (pid="), lines
    text = "\n".join(lines)
    assert f"  Cell In[{number}], line 3, in <module>\n    c = a + missing_name" in text
    assert "remote_cell.py" not in text and "_run_cell" not in text and "execute_cell" not in text
    # The cell's task carries the cell's number too (the tests' magic calls outside any cell
    # may have used it before, so only the most recent counts).
    tasks = shell.run_line_magic("shoal", f"tasks --name 'cell [{number}]' --limit 1")
    assert [row["state"] for row in tasks.rows] == ["FAILED"], repr(tasks)


def test_shoal_tasks_shows_the_most_recent_first_with_filters(shell):
    def quick(index):
        return index

    def doomed():
        raise ValueError("doomed")

    def sleeper():
        import time

        time.sleep(60)

    def has_task(name: str, task_state: str) -> bool:
        return any(row["name"] == name and row["state"] == task_state for row in state.list_tasks(limit=10_000))

    # More tasks than a table shows, submitted before the failed and cancelled ones.
    shoal.get([shoal.remote(quick).options(name="quick").remote(index) for index in range(30)])
    with pytest.raises(ValueError):
        shoal.get(shoal.remote(doomed).options(name="doomed", max_retries=0).remote())
    sleeping = shoal.remote(sleeper).options(name="sleeper").remote()
    wait_for(lambda: has_task("sleeper", "RUNNING"), 10)
    shoal.cancel(sleeping)
    with pytest.raises(shoal.exceptions.TaskCancelledError):
        shoal.get(sleeping, timeout=10)
    wait_for(lambda: has_task("sleeper", "FAILED"), 10)

    tasks = shell.run_line_magic("shoal", "tasks")
    assert len(tasks.rows) == 20 and tasks.total > 30
    assert [row["name"] for row in tasks.rows[:2]] == ["sleeper", "doomed"], repr(tasks)
    shown_ids = [line[0] for line in tasks.cells()]
    assert len(set(shown_ids)) == len(shown_ids), shown_ids
    assert repr(tasks).splitlines()[0] == f"tasks: 20 most recent of {tasks.total}"

    failed = shell.run_line_magic("shoal", "tasks --state failed")
    assert {"sleeper", "doomed"} <= {row["name"] for row in failed.rows}
    assert {row["state"] for row in failed.rows} == {"FAILED"}
    one = shell.run_line_magic("shoal", "tasks --name quick --limit 1")
    assert [row["name"] for row in one.rows] == ["quick"]
    for line, message in [
        ("--state done", "unknown task state 'done'"),
        ("--limit 0", "--limit must be at least 1"),
        ("--bogus", "unrecognized arguments: --bogus"),
    ]:
        with pytest.raises(UsageError, match=message):
            shell.run_line_magic("shoal", f"tasks {line}")


def test_a_function_from_a_cell_names_its_cell(shell):
    number = shell.execution_count
    shell.run_cell("def from_cell(x):\n    y = x + 1\n    raise ValueError(f'cell {y}')\n", store_history=True)
    function = shoal.remote(shell.user_ns["from_cell"])
    with pytest.raises(ValueError) as raised:
        shoal.get(function.remote(1))
    text = "\n".join(raised.value._render_traceback_())
    assert f"  Cell In[{number}], line 3, in from_cell\n    raise ValueError(f'cell {{y}}')" in text, text


def test_syntax_error_is_a_usage_error(shell):
    with pytest.raises(UsageError, match="not valid Python"):
        cell(shell, "", "x = (")


def test_line_magic_evaluates_an_expression(shell):
    shell.user_ns.update(left=5, right_ref=shoal.put(6))
    assert shell.run_line_magic("remote", "left * right_ref") == 30
    with pytest.raises(UsageError, match="not a single expression"):
        shell.run_line_magic("remote", "y = 1")
    with pytest.raises(UsageError):
        shell.run_line_magic("remote", "")


def test_async_binds_a_ref_and_pushes_when_done(shell):
    shell.user_ns.pop("async_value", None)
    shell.user_ns["async_input"] = 4
    returned = cell(shell, "--async", "async_value = async_input * 10\nasync_value")
    assert returned is None
    ref = shell.user_ns["_remote"]
    assert isinstance(ref, shoal.ObjectRef)
    wait_for(lambda: shell.user_ns.get("async_value") == 40, 5, describe=lambda: repr(state.list_tasks()[-3:]))
    assert shoal.get(ref) == 40, "the ref gives the cell's value"
    cell(shell, "--async --out-ref custom_ref --no-push", "1")
    assert shoal.get(shell.user_ns["custom_ref"]) == 1
    cell(shell, "--async --out-ref no_value_ref --no-push", "unused = 1")
    assert shoal.get(shell.user_ns["no_value_ref"]) is None


def test_finished_async_cell_names_are_in_place_before_the_next_cell(shell):
    shell.user_ns.pop("late_value", None)
    cell(shell, "--async", "import time\ntime.sleep(0.3)\nlate_value = 7")
    shoal.get(shell.user_ns["_remote"])
    # The very next cell sees the pushed name, without waiting for the watcher thread.
    result = shell.run_cell("seen = late_value")
    assert result.success and shell.user_ns["seen"] == 7


def test_a_get_of_the_async_value_is_followed_by_the_cells_names(shell):
    """`shoal.get(_remote)` returns once the names are written back: in the same cell, the next
    line sees them, even when loading them takes the watcher thread a while (`slow` unpickles
    by sleeping)."""
    shell.user_ns.pop("written_after", None)
    cell(
        shell,
        "--async",
        "import time\n"
        "class SlowToLoad:\n"
        "    def __reduce__(self):\n"
        "        return (time.sleep, (0.5,))\n"
        "time.sleep(0.3)\n"
        "slow = SlowToLoad()\n"
        "written_after = 7\n",
    )
    shell.user_ns["shoal"] = shoal
    result = shell.run_cell("shoal.get(_remote)\nseen = written_after")
    assert result.success and shell.user_ns["seen"] == 7


def test_the_next_cell_waits_for_a_push_the_watcher_thread_began(shell):
    """`deliver_ready` (run before each cell) returns only once a push in progress on the
    watcher thread is done, so the cell sees every name of a finished async cell."""
    import threading

    from shoal.kernel_ext.async_cells import AsyncCellWatcher

    watcher = AsyncCellWatcher()
    pushing, release, pushed, seen = threading.Event(), threading.Event(), [], []

    def on_ready(ref):
        pushing.set()
        release.wait(10)
        pushed.append(ref)

    def before_next_cell():
        watcher.deliver_ready()
        seen.append(list(pushed))

    try:
        watcher.watch(shoal.put(1), on_ready)
        assert pushing.wait(10), "the watcher thread never delivered"
        next_cell = threading.Thread(target=before_next_cell)
        next_cell.start()
        next_cell.join(0.3)  # time for a deliver_ready that does not wait to return (wrongly)
        release.set()
        next_cell.join(10)
        assert len(pushed) == 1 and seen == [pushed]
    finally:
        release.set()
        watcher.close()


def test_async_watcher_thread_ends_when_idle(shell):
    import threading

    cell(shell, "--async --no-push", "0")
    wait_for(
        lambda: not any(thread.name == "shoal-remote-cell-wait" for thread in threading.enumerate()),
        5,
        describe=lambda: str(threading.enumerate()),
    )


def test_actor_namespace_persists_and_resets(shell, capsys):
    shell.user_ns.pop("actor_counter", None)
    cell(shell, "--actor session --no-push", "actor_counter = 1\n")
    assert cell(shell, "--actor session --no-push --no-capture", "actor_counter += 1\nactor_counter") == 2
    assert cell(shell, "--actor session --no-capture", "actor_counter") == 2
    shell.run_line_magic("remote_reset", "session")
    assert "cleared" in capsys.readouterr().out
    assert cell(shell, "--actor session --no-capture --no-push", "'actor_counter' in globals()") is False
    with pytest.raises(UsageError, match="no actor namespace"):
        shell.run_line_magic("remote_reset", "never_used")


def test_shoal_status_tasks_actors(shell):
    cell(shell, "--actor status_probe --no-push", "1")
    status = shell.run_line_magic("shoal", "status")
    assert "CPU: " in repr(status) and "tasks: " in repr(status)
    assert "<table>" in status._repr_html_()
    tasks = shell.run_line_magic("shoal", "tasks")
    assert re.search(r"cell \[\d+\]", repr(tasks)), repr(tasks)
    assert "_run_cell" not in repr(tasks) and "_CellNamespaceActor.run" not in repr(tasks)
    assert "<table class='shoal-state'>" in tasks._repr_html_()
    actors = shell.run_line_magic("shoal", "actors")
    assert "shoal-cell:status_probe" in repr(actors)
    with pytest.raises(UsageError, match="unknown command 'bogus'"):
        shell.run_line_magic("shoal", "bogus")
    with pytest.raises(UsageError, match="takes no options"):
        shell.run_line_magic("shoal", "status --now")


def test_resources_json_is_parsed_without_shell_quotes():
    from shoal.kernel_ext.magic_options import remote_parser, task_options

    args = remote_parser().parse_argstring("""--resources '{"accelerator": 0.5}' --num-gpus 1 --num-cpus 0.5""")
    assert task_options(args) == {"num_cpus": 0.5, "num_gpus": 1, "resources": {"accelerator": 0.5}}


def test_unpicklable_capture_is_a_usage_error(shell):
    import threading

    shell.user_ns["lock_local"] = threading.Lock()
    with pytest.raises(UsageError, match="cannot send 'lock_local'.*--capture"):
        cell(shell, "--no-push", "lock_local")


def test_async_failure_is_reported_and_raised_on_get(shell, capfd):
    cell(shell, "--async --out-ref failing_ref", "raise ValueError('bad async cell')")
    ref = shell.user_ns["failing_ref"]
    with pytest.raises(ValueError, match="bad async cell"):
        shoal.get(ref, timeout=5)
    wait_for(lambda: "shoal.get(failing_ref) shows why" in capfd.readouterr().err, 5)
