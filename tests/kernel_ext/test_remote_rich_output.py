"""Rich output and IPython syntax (`!cmd`, `%magic`) in `%%remote` cells.

The first tests run the remote side in this process (`execute_cell`, no cluster); the rest run
cells through the in-process shell on a real cluster, where rich output is shown when the cell
ends (the live path, in a kernel, is in test_kernel_rich_output.py).
"""

from __future__ import annotations

import base64

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output
from shoal.kernel_ext import cell_display, remote_cell
from shoal.kernel_ext.cell_output import CellOutputState

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_here(source: str, **values) -> remote_cell.CellResult:
    request = remote_cell.CellRequest(source=source, filename="<remote-cell-test>", values=values)
    return remote_cell.execute_cell(remote_cell._fresh_namespace(), request, ())


def is_png(text: str) -> bool:
    return base64.b64decode(text).startswith(PNG_MAGIC)


# ------------------------------------------------------------------ the worker side, in-process


def test_display_makes_mime_bundles_in_order():
    result = run_here(
        "import pandas as pd\nfrom IPython.display import HTML\n"
        "display(HTML('<b>bold</b>'))\ndisplay(pd.DataFrame({'a': [1, 2]}))\ndisplay({'text/plain': 'raw'}, raw=True)\n"
    )
    html, frame, raw = result.displays
    assert html["data"]["text/html"] == "<b>bold</b>"
    assert "<table" in frame["data"]["text/html"] and "a" in frame["data"]["text/plain"]
    assert raw["data"] == {"text/plain": "raw"}


def test_figures_become_png_once_each():
    result = run_here(
        "import matplotlib.pyplot as plt\n"
        "plt.plot([1, 2])\nplt.show()\n"  # shown and closed
        "left_open = plt.figure()\nplt.plot([2, 1])\n"  # shown when the cell ends
        "last = plt.figure()\nlast"  # the last expression: shown, not returned
    )
    assert result.has_value is False
    bundles = [message["data"] for message in result.displays]
    assert len(bundles) == 3, bundles
    assert all(is_png(bundle["image/png"]) for bundle in bundles)
    assert bundles[0]["text/plain"].startswith("<Figure size")
    import matplotlib.pyplot as plt

    assert plt.get_fignums() == []


def test_ipython_display_functions_are_restored_after_the_cell():
    import IPython.display

    original = IPython.display.display
    run_here("from IPython.display import display as shown\nshown(1)")
    assert IPython.display.display is original


def test_display_without_ipython_uses_repr_methods():
    class Rich:
        def _repr_html_(self):
            return "<i>rich</i>"

        def __repr__(self):
            return "Rich()"

    data, _ = cell_display._repr_bundle(Rich())
    assert data == {"text/html": "<i>rich</i>", "text/plain": "Rich()"}


def test_display_records_round_trip_and_plain_text_is_not_one():
    message = {"data": {"text/plain": "x"}, "metadata": {}, "transient": {}, "update": False}
    assert cell_display.decode_record(cell_display.encode_record(message)) == message
    assert cell_display.decode_record("plain text\n") is None


def test_display_follows_the_unfinished_line_of_its_task():
    state = CellOutputState()
    state.submitted("t1", "cell-1")
    record = {"task_id": "t1", "task_name": "_run_cell", "pid": 7, "stream": "stdout"}
    assert state.receive([{**record, "text": "loading... "}], 0.0, None) == []
    cell, chunks = state.display(record, None)
    assert cell == "cell-1"
    assert [(chunk.cell, chunk.text) for chunk in chunks] == [("cell-1", "loading... ")]
    assert [chunk.text for chunk in state.receive([{**record, "text": "done\n"}], 0.1, None)] == ["done\n"]


def test_shell_escapes_run_in_process(capfd):
    from IPython.core.inputtransformer2 import TransformerManager

    typed = "!echo streamed $word\nlines = !printf 'one\\ntwo\\n'\n%time timed = 6 * 7\nlines"
    result = run_here(TransformerManager().transform_cell(typed), word="out")
    assert result.value == ["one", "two"]
    assert result.value.n == "one\ntwo"
    out = capfd.readouterr().out
    assert "streamed out" in out and "Wall time:" in out


# ------------------------------------------------------------------ through the magic, on a cluster


@pytest.mark.integration
def test_rich_output_is_shown_in_the_cell(shell):
    with capture_output() as captured:
        shell.run_cell_magic(
            "remote",
            "--no-push",
            "import pandas as pd\nimport matplotlib.pyplot as plt\n"
            "display(pd.DataFrame({'col': [1, 2]}))\nplt.plot([1, 2, 3])\nplt.show()\n",
        )
    frame, figure = captured.outputs
    assert "<table" in frame.data["text/html"] and "col" in frame.data["text/plain"]
    assert is_png(figure.data["image/png"])


@pytest.mark.integration
def test_notebook_display_function_captured_explicitly_still_shows(shell):
    from IPython.display import display

    shell.user_ns["display"] = display
    try:
        with capture_output() as captured:
            shell.run_cell_magic("remote", "--no-push --capture display", "display('shown remotely')")
    finally:
        shell.user_ns.pop("display")
    assert [output.data["text/plain"] for output in captured.outputs] == ["'shown remotely'"]


@pytest.mark.integration
def test_shell_commands_run_on_the_worker(shell):
    import os

    shell.user_ns.update(greeting="hello", count=2)
    shell.user_ns.pop("worker_pid_lines", None)
    shell.run_cell_magic(
        "remote",
        "",
        "worker_pid_lines = !echo $$PPID\nechoed = !echo $greeting {count + 1}\n%time timed_value = count * 21\n",
    )
    assert shell.user_ns["echoed"] == ["hello 3"]
    assert shell.user_ns["timed_value"] == 42
    # The command's parent is the worker process, not this one.
    assert int(shell.user_ns["worker_pid_lines"][0]) != os.getpid()


@pytest.mark.integration
def test_bash_cell_magic_and_exit_code(shell, capfd):
    shell.run_cell_magic("remote", "--no-push", "%%bash\necho from bash\nexit 0\n")
    shell.run_cell_magic("remote", "", "!exit 3\nexit_code_seen = _exit_code\n")
    assert shell.user_ns["exit_code_seen"] == 3
    from tests.waiting import wait_for

    seen = []
    wait_for(lambda: seen.append(capfd.readouterr().out) or "from bash" in "".join(seen), 5, describe=lambda: seen)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("source", "named"),
    [
        ("%cd /tmp\n", "%cd cannot run in a %%remote cell"),
        ("%%writefile x.txt\nhi\n", "%%writefile cannot run"),
        ("len?\n", "help cannot run"),
    ],
)
def test_magics_that_cannot_run_remotely_are_named(shell, source, named):
    with pytest.raises(UsageError, match=named.replace("?", r"\?")):
        shell.run_cell_magic("remote", "", source)


@pytest.mark.integration
def test_ipython_syntax_errors_point_at_the_typed_line(shell):
    with pytest.raises(ZeroDivisionError) as raised:
        shell.run_cell_magic("remote", "", "!true\nvalue = 1 / 0\n")
    text = "\n".join(raised.value._render_traceback_())
    assert "line 2" in text and "value = 1 / 0" in text
