"""A real ipykernel with live widgets on: a cell blocked on several refs (or a long `%%remote`
cell) shows a progress widget under its own parent while it waits, and a summary line replaces
the widget when the wait ends. Short waits draw nothing.
"""

from __future__ import annotations

import queue
import time

import pytest

from tests.kernel_ext.test_kernel_routing import (
    STARTUP_TIMEOUT_S,
    Cell,
    run,
    run_ok,
    start_kernel,
    stop_kernel,
)

pytestmark = pytest.mark.integration

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


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
    return [message["content"]["data"]["text/plain"] for _, message in _own(cell, "update_display_data")]


def test_slow_get_of_several_refs_shows_a_widget_while_it_waits(live_kernel):
    cell = run_ok(live_kernel, "values = shoal.get([nap.remote(1.5) for _ in range(4)])")
    opened = [m for _, m in _own(cell, "comm_open") if m["content"].get("target_name") == "jupyter.widget"]
    assert opened, cell.summary()
    displays = _widget_displays(cell)
    assert displays, cell.summary()
    shown_at = displays[0][0]
    assert cell.idle_at - shown_at > 0.3, "the widget should appear while the get still waits"
    # The bar's own state: 4 refs to wait for.
    models = [m["content"]["data"]["state"] for _, m in _own(cell, "comm_open")]
    assert any(state.get("_model_name") == "IntProgressModel" and state.get("max") == 4 for state in models), models
    (summary,) = _summaries(cell)
    assert "4/4 ready" in summary and "finished" in summary, summary
    assert _own(cell, "comm_close"), "the widget is closed when the wait ends"


def test_short_get_draws_nothing(live_kernel):
    cell = run_ok(live_kernel, "shoal.get([nap.remote(0.05) for _ in range(4)])")
    assert not _own(cell, "comm_open"), cell.summary()
    assert not _widget_displays(cell)


def test_long_remote_cell_shows_elapsed_time(live_kernel):
    cell = run_ok(live_kernel, "%%remote\nimport time\ntime.sleep(2.5)\nslept = True\n")
    assert _widget_displays(cell), cell.summary()
    labels = [
        m["content"]["data"]["state"].get("value", "")
        for _, m in _own(cell, "comm_open")
        if m["content"]["data"]["state"].get("_model_name") == "LabelModel"
    ]
    assert any("%%remote" in label for label in labels), labels
    (summary,) = _summaries(cell)
    assert summary.startswith("%%remote: finished after"), summary


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
