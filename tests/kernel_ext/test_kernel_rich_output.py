"""A real ipykernel: rich output of a `%%remote` cell arrives live as display_data messages with
the cell's parent header, in order with the cell's printed text, and `!cmd` output streams.
"""

from __future__ import annotations

import base64

import pytest

from tests.kernel_ext.test_kernel_routing import STARTUP_TIMEOUT_S, run, run_ok, start_kernel, stop_kernel

pytestmark = pytest.mark.integration

RICH_MIMES = {"text/html", "image/png"}


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    manager, client = start_kernel(str(tmp_path_factory.mktemp("rich-kernel")))
    try:
        run_ok(client, "%load_ext shoal\nimport shoal\nshoal.init(num_cpus=1)", timeout_s=STARTUP_TIMEOUT_S)
        yield client
        run(client, "shoal.shutdown()")
    finally:
        stop_kernel(manager, client)


def outputs(cell) -> list[tuple[float, str, dict]]:
    """(arrival, kind, content) of this cell's stream text and rich display_data, in order."""
    found = []
    for arrived, message in cell.messages:
        if message["parent_header"].get("msg_id") != cell.msg_id:
            continue
        content = message["content"]
        if message["msg_type"] == "stream":
            found.append((arrived, "stream", content))
        elif message["msg_type"] == "display_data" and RICH_MIMES & set(content["data"]):
            found.append((arrived, "display", content))
    return found


def test_rich_output_arrives_live_in_the_cell_in_order(kernel):
    cell = run_ok(
        kernel,
        """
        %%remote --no-push
        import time
        import pandas as pd
        import matplotlib.pyplot as plt
        print("before", flush=True)
        display(pd.DataFrame({"col": [1, 2]}))
        time.sleep(1.5)
        plt.plot([1, 2, 3])
        plt.show()
        print("after", flush=True)
        """,
        timeout_s=60,
    )
    seen = outputs(cell)
    kinds = [kind for _, kind, _ in seen]
    assert kinds == ["stream", "display", "display", "stream"], cell.summary()
    _, _, before = seen[0]
    frame_at, _, frame = seen[1]
    _, _, figure = seen[2]
    assert before["text"] == "before\n" and seen[3][2]["text"] == "after\n"
    assert "<table" in frame["data"]["text/html"]
    assert base64.b64decode(figure["data"]["image/png"]).startswith(b"\x89PNG")
    assert figure["data"]["text/plain"].startswith("<Figure size")
    assert cell.idle_at - frame_at > 1.0, "the table came only at the end of the cell"


def test_shell_command_output_streams_into_the_cell(kernel):
    cell = run_ok(kernel, "%%remote --no-push\n!echo from the worker shell\n")
    text = "".join(content["text"] for _, kind, content in outputs(cell) if kind == "stream")
    assert text == "from the worker shell\n", cell.summary()
