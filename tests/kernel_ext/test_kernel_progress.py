"""A real ipykernel with live widgets on: a cell blocked on several refs (or a long `%%remote`
cell) shows a progress widget (a live view) under its own parent while it waits; when the wait
ends the widget is blanked and a summary line ends the cell's output, after all it printed.
Short waits draw nothing.
"""

from __future__ import annotations

import queue
import re
import time

import pytest

from tests.kernel_ext.test_kernel_routing import (
    STARTUP_TIMEOUT_S,
    Cell,
    _read_until,
    run,
    run_ok,
    start_kernel,
    stop_kernel,
)

pytestmark = pytest.mark.integration

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
_BLANK = {"text/plain": ""}


@pytest.fixture(scope="module")
def live_kernel(tmp_path_factory):
    manager, client = start_kernel(str(tmp_path_factory.mktemp("live-kernel")), interactive=True)
    try:
        run_ok(
            client,
            """
            %load_ext shoal
            import shoal

            @shoal.remote
            def nap(seconds):
                import time
                time.sleep(seconds)
                return seconds

            def wait_file(path, timeout_s=20.0):
                import os, time
                deadline = time.monotonic() + timeout_s
                while not os.path.exists(path) and time.monotonic() < deadline:
                    time.sleep(0.02)

            shoal.init(num_cpus=2)
            shoal.get([nap.remote(0), nap.remote(0)])
            """,
            timeout_s=STARTUP_TIMEOUT_S,
        )
        client.manager = manager
        yield client
        run(client, "shoal.shutdown()")
    finally:
        stop_kernel(manager, client)


def _own(cell: Cell, msg_type: str) -> list[tuple[float, dict]]:
    """(arrival, message) of one type with this cell's parent header."""
    return [
        (arrived, message)
        for arrived, message in cell.messages
        if message["msg_type"] == msg_type and message["parent_header"].get("msg_id") == cell.msg_id
    ]


def _widget_displays(cell: Cell) -> list[tuple[float, dict]]:
    return [
        (arrived, message)
        for arrived, message in _own(cell, "display_data")
        if WIDGET_VIEW in message["content"]["data"]
    ]


def _summaries(cell: Cell) -> list[str]:
    """The summary lines shown when the cell's waits ended (plain displays, not widgets)."""
    return [
        message["content"]["data"]["text/plain"]
        for _, message in _own(cell, "display_data")
        if WIDGET_VIEW not in message["content"]["data"]
    ]


def _html_models(cell: Cell) -> list[str]:
    """What the cell's HTML widgets drew (a live view's body), as opened and as updated."""
    states = [message["content"]["data"].get("state", {}) for _, message in _own(cell, "comm_open")]
    states = [state for state in states if state.get("_model_name") == "HTMLModel"]
    states += [message["content"]["data"].get("state", {}) for _, message in _own(cell, "comm_msg")]
    return [state["value"] for state in states if isinstance(state.get("value"), str)]


def _blanked(cell: Cell, display: dict) -> bool:
    """Whether the widget shown by `display` was replaced by an empty output."""
    display_id = display["content"]["transient"]["display_id"]
    updates = [message["content"] for _, message in _own(cell, "update_display_data")]
    return any(update["transient"].get("display_id") == display_id and update["data"] == _BLANK for update in updates)


def test_slow_get_of_several_refs_shows_a_widget_while_it_waits(live_kernel):
    cell = run_ok(live_kernel, "values = shoal.get([nap.remote(1.5) for _ in range(4)])")
    opened = [m for _, m in _own(cell, "comm_open") if m["content"].get("target_name") == "jupyter.widget"]
    assert opened, cell.summary()
    displays = _widget_displays(cell)
    assert displays, cell.summary()
    shown_at = displays[0][0]
    assert cell.idle_at - shown_at > 0.3, "the widget should appear while the get still waits"
    # The bar's own state: 4 refs to wait for.
    drawings = _html_models(cell)
    assert any(re.search(r"\d/4 ready \(\d+%\)", drawing) for drawing in drawings), drawings
    (summary,) = _summaries(cell)
    assert "4/4 ready" in summary and "finished" in summary, summary
    assert _blanked(cell, displays[0][1])
    assert _own(cell, "comm_close"), "the widget is closed when the wait ends"


def test_short_get_draws_nothing(live_kernel):
    cell = run_ok(live_kernel, "shoal.get([nap.remote(0.05) for _ in range(4)])")
    assert not _own(cell, "comm_open"), cell.summary()
    assert not _widget_displays(cell)


def test_long_remote_cell_shows_elapsed_time_and_ends_with_its_summary(live_kernel, tmp_path):
    go = tmp_path / "go"
    cell = Cell(
        live_kernel,
        f"""
        %%remote
        print("before", flush=True)
        wait_file({str(go)!r})
        print("after", flush=True)
        print("unfinished line", end="", flush=True)
        slept = True
        """,
    )
    try:
        _read_until(live_kernel, cell, lambda: bool(_widget_displays(cell)), 15)
    finally:
        go.touch()  # the worker waits for this: the bar shows while the cell still runs
    cell.wait()
    drawings = _html_models(cell)
    assert any("%%remote: running for" in drawing for drawing in drawings), drawings
    (summary,) = _summaries(cell)
    assert summary.startswith("%%remote: finished after"), summary
    # In the cell: the text, then the bar (blanked now), the rest of the text, the summary last.
    outputs = [
        "bar" if WIDGET_VIEW in message["content"].get("data", {}) else message["content"].get("text") or "summary"
        for _, message in cell.messages
        if message["parent_header"].get("msg_id") == cell.msg_id and message["msg_type"] in ("stream", "display_data")
    ]
    assert outputs == ["before\n", "bar", "after\n", "unfinished line", "summary"], cell.summary()
    assert _blanked(cell, _widget_displays(cell)[0][1])


def test_interrupted_get_finalizes_the_widget(live_kernel):
    cell = Cell(live_kernel, "shoal.get([nap.remote(30) for _ in range(2)])")
    deadline = time.monotonic() + 15
    while not _widget_displays(cell):
        assert time.monotonic() < deadline, cell.summary()
        try:
            cell.messages.append((time.monotonic(), live_kernel.get_iopub_msg(timeout=0.5)))
        except queue.Empty:
            pass
    live_kernel.manager.interrupt_kernel()
    reply = cell.wait(timeout_s=10)
    assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt", reply
    (summary,) = _summaries(cell)
    assert "0/2 ready, interrupted" in summary, summary
    assert _blanked(cell, _widget_displays(cell)[0][1])


def _async_status_displays(cell: Cell, msg_type: str, parent: Cell) -> dict[str, str]:
    """display id -> text of the `%%remote --async` status lines of one message type in `cell`'s
    messages that were sent under `parent`'s request."""
    return {
        message["content"]["transient"]["display_id"]: message["content"]["data"]["text/plain"]
        for _, message in cell.messages
        if message["msg_type"] == msg_type
        and message["parent_header"].get("msg_id") == parent.msg_id
        and "%%remote --async" in message["content"]["data"].get("text/plain", "")
    }


def test_async_cells_final_status_lines_at_shutdown(live_kernel, tmp_path):
    # Last in the module: it shuts the cluster down (the next use would start one again).
    finished = run_ok(live_kernel, "%%remote --async --no-push\n6 * 7\n")
    assert "42" in run_ok(live_kernel, "print(shoal.get(_remote))").text()
    never = tmp_path / "never"
    pending = run_ok(live_kernel, f"%%remote --async --no-push\nwait_file({str(never)!r})\n")
    stop = run_ok(live_kernel, "%shoal shutdown")
    seen = [message for reader in (pending, stop) for _, message in reader.messages]
    updates = [
        message["content"]["data"]["text/plain"]
        for message in seen
        if message["msg_type"] == "update_display_data" and message["parent_header"].get("msg_id") == pending.msg_id
    ]
    assert len(updates) == 1 and "when the cluster was shut down" in updates[0], updates
    # Both final lines are sent once more under the shutdown cell, for frontends that hear only
    # the running cell's messages (nbclient, `make notebooks`), which dropped the first sends.
    ((finished_id, _),) = _async_status_displays(finished, "display_data", finished).items()
    ((pending_id, _),) = _async_status_displays(pending, "display_data", pending).items()
    resent = _async_status_displays(stop, "update_display_data", stop)
    assert resent.keys() == {finished_id, pending_id}, stop.summary()
    assert resent[finished_id].startswith("%%remote --async: done in "), resent
    assert resent[pending_id] == updates[0]
