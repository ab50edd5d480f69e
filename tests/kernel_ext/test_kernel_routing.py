"""A real ipykernel through jupyter_client: worker output lands in the cell that submitted the
task (unfinished lines too), interrupts cancel what a cell waits on and show as a local one,
`%%remote` errors name their cell, `--async` cells keep their own status line, and a killed
kernel leaves no process behind.

The kernel runs this interpreter (a kernel spec written to a temporary directory), with the
suite's environment (`SHOAL_NONINTERACTIVE=1`, the run id the leak check looks for).
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import sys
import textwrap
import time

import ipykernel  # noqa: F401  (the kernel these tests start)
import psutil
import pytest

from tests.waiting import wait_for

pytestmark = pytest.mark.integration

KERNEL_NAME = "shoal-test-python"
STARTUP_TIMEOUT_S = 60.0
CELL_TIMEOUT_S = 30.0

# The module's kernel manager by its client's id, for the interrupt test.
_MANAGERS: dict[int, object] = {}


def _kernel_manager(tmp_dir):
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    spec_dir = os.path.join(tmp_dir, "kernels", KERNEL_NAME)
    os.makedirs(spec_dir, exist_ok=True)
    with open(os.path.join(spec_dir, "kernel.json"), "w") as file:
        json.dump(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "shoal test",
                "language": "python",
            },
            file,
        )
    specs = KernelSpecManager(kernel_dirs=[os.path.join(tmp_dir, "kernels")])
    return KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=specs)


def start_kernel(tmp_dir, interactive: bool = False, manager=None, env: dict | None = None):
    """A started kernel and its client; `interactive` leaves live widget updates on.

    `manager` starts a kernel of another spec than this interpreter's; `env` replaces entries of
    the suite's environment for it.
    """
    manager = manager if manager is not None else _kernel_manager(tmp_dir)
    env = dict(os.environ, SHOAL_NONINTERACTIVE="1", PYTHONUNBUFFERED="1", **(env or {}))
    if interactive:
        env.pop("SHOAL_NONINTERACTIVE")
    manager.start_kernel(env=env, cwd=os.getcwd())
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=STARTUP_TIMEOUT_S)
    except BaseException:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
        raise
    return manager, client


def stop_kernel(manager, client):
    client.stop_channels()
    manager.shutdown_kernel(now=False)


class Cell:
    """One execute request and the iopub messages seen while it ran (of any parent)."""

    def __init__(self, client, code: str) -> None:
        self.client = client
        self.msg_id = client.execute(textwrap.dedent(code), store_history=True)
        self.messages: list[tuple[float, dict]] = []
        self.idle_at: float | None = None

    def wait(self, timeout_s: float = CELL_TIMEOUT_S) -> dict:
        """Read iopub until this cell's kernel status is idle; return its execute_reply content."""
        deadline = time.monotonic() + timeout_s
        while self.idle_at is None:
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0:
                raise AssertionError(f"cell did not finish within {timeout_s} s; saw {self.summary()}")
            try:
                message = self.client.get_iopub_msg(timeout=min(remaining_s, 1.0))
            except queue.Empty:
                continue
            self.messages.append((time.monotonic(), message))
            if (
                message["msg_type"] == "status"
                and message["parent_header"].get("msg_id") == self.msg_id
                and message["content"]["execution_state"] == "idle"
            ):
                self.idle_at = time.monotonic()
        reply = self.client.get_shell_msg(timeout=max(1.0, deadline - time.monotonic()))
        while reply["parent_header"].get("msg_id") != self.msg_id:
            reply = self.client.get_shell_msg(timeout=max(1.0, deadline - time.monotonic()))
        return reply["content"]

    def streams(self, parent_msg_id: str | None = None) -> list[tuple[float, dict]]:
        """The (arrival time, content) of stream messages, optionally for one parent only."""
        return [
            (arrived, message["content"])
            for arrived, message in self.messages
            if message["msg_type"] == "stream"
            and (parent_msg_id is None or message["parent_header"].get("msg_id") == parent_msg_id)
        ]

    def text(self, parent_msg_id: str | None = None) -> str:
        return "".join(content["text"] for _, content in self.streams(parent_msg_id))

    def number(self) -> int:
        """The cell's `[N]`, as the kernel announced it."""
        for _, message in self.messages:
            if message["msg_type"] == "execute_input" and message["parent_header"].get("msg_id") == self.msg_id:
                return message["content"]["execution_count"]
        raise AssertionError(f"no execute_input seen; saw {self.summary()}")

    def summary(self) -> str:
        return "; ".join(f"{message['msg_type']}:{str(message['content'])[:200]}" for _, message in self.messages[-20:])


def run(client, code: str, timeout_s: float = CELL_TIMEOUT_S) -> Cell:
    cell = Cell(client, code)
    reply = cell.wait(timeout_s)
    cell.reply = reply
    return cell


def run_ok(client, code: str, timeout_s: float = CELL_TIMEOUT_S) -> Cell:
    cell = run(client, code, timeout_s)
    assert cell.reply["status"] == "ok", (cell.reply, cell.summary())
    return cell


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    manager, client = start_kernel(str(tmp_path_factory.mktemp("kernel")))
    try:
        run_ok(
            client,
            """
            %load_ext shoal
            import time, shoal
            shoal.init(num_cpus=2)

            @shoal.remote
            def say(*lines, pause_s=0.0):
                import time
                for line in lines:
                    print(line, flush=True)
                    time.sleep(pause_s)
                return len(lines)

            def wait_file(path, timeout_s=20.0):
                import os, time
                deadline = time.monotonic() + timeout_s
                while not os.path.exists(path) and time.monotonic() < deadline:
                    time.sleep(0.02)
            """,
            timeout_s=STARTUP_TIMEOUT_S,
        )
        # Warm both workers so the timings below do not include a worker start.
        run_ok(client, "shoal.get([say.remote(), say.remote()])")
        _MANAGERS[id(client)] = manager
        yield client
        run(client, "shoal.shutdown()")
    finally:
        _MANAGERS.pop(id(client), None)
        stop_kernel(manager, client)


def test_output_arrives_in_the_running_cell_before_it_ends(kernel):
    cell = run_ok(kernel, "shoal.get(say.remote('first', 'second', pause_s=1.5))")
    streams = cell.streams(cell.msg_id)
    assert [content["text"] for _, content in streams] == ["first\n", "second\n"], cell.summary()
    first_arrived, _ = streams[0]
    assert cell.idle_at - first_arrived > 1.0, "the first line came only at the end of the cell"


def test_output_of_an_earlier_cell_stays_in_that_cell(kernel):
    first = run_ok(kernel, "ref = say.remote('early', 'late line', pause_s=1.0)")
    second = run_ok(kernel, "time.sleep(2.5)")
    late = [content for _, content in second.streams() if "late line" in content["text"]]
    assert late, (first.summary(), second.summary())
    assert "late line" in second.text(first.msg_id)
    assert "late line" not in second.text(second.msg_id)
    run_ok(kernel, "shoal.get(ref)")


def test_prefix_only_when_several_tasks_stream_into_a_cell(kernel):
    two = run_ok(kernel, "shoal.get([say.remote('from a'), say.remote('from b')])")
    text = two.text(two.msg_id)
    assert re.search(r"^\(say pid=\d+\) from a$", text, re.M), text
    assert re.search(r"^\(say pid=\d+\) from b$", text, re.M), text
    one = run_ok(kernel, "shoal.get(say.remote('alone'))")
    assert one.text(one.msg_id) == "alone\n"


def test_identical_lines_from_several_tasks_are_folded(kernel):
    cell = run_ok(kernel, "shoal.get([say.remote('same line'), say.remote('same line')])\ntime.sleep(1.3)")
    text = cell.text(cell.msg_id)
    assert len(re.findall(r"^\(say pid=\d+\) same line$", text, re.M)) == 1, text
    assert "same line (repeated ×1 across workers)" in text


def test_remote_cell_output_streams_live_into_its_cell(kernel):
    cell = run_ok(
        kernel,
        """
        %%remote --no-push
        import time
        print("remote one", flush=True)
        time.sleep(1.5)
        print("remote two", flush=True)
        """,
    )
    streams = cell.streams(cell.msg_id)
    assert [content["text"] for _, content in streams] == ["remote one\n", "remote two\n"], cell.summary()
    assert cell.idle_at - streams[0][0] > 1.0, "the first line came only at the end of the cell"


def test_flood_is_rate_limited_with_a_note(kernel):
    cell = run_ok(
        kernel,
        """
        shoal.get(say.remote(*[f"flood {index}" for index in range(1000)]))
        time.sleep(1.5)  # the note comes when the rate window ends
        """,
    )
    text = cell.text(cell.msg_id)
    shown = len(re.findall(r"^flood \d+$", text, re.M))
    more = sum(int(count) for count in re.findall(r"^… (\d+) more lines", text, re.M))
    assert more > 0, text[-500:]
    assert shown <= 400
    assert shown + more == 1000


def test_interrupt_cancels_the_awaited_task_and_the_next_cell_works(kernel):
    manager_client = kernel  # the fixture's client; its manager is in _MANAGERS
    cell = Cell(
        manager_client,
        """
        finished = [say.remote(), say.remote()]
        shoal.get(finished)
        ref = say.remote('started', 'never', pause_s=60)
        shoal.get(finished + [ref])
        """,
    )
    started = time.monotonic()
    deadline = started + 15
    while "started" not in cell.text(cell.msg_id):
        assert time.monotonic() < deadline, cell.summary()
        try:
            cell.messages.append((time.monotonic(), manager_client.get_iopub_msg(timeout=0.5)))
        except queue.Empty:
            pass
    interrupted_at = time.monotonic()
    _interrupt(manager_client)
    reply = cell.wait(timeout_s=10)
    assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt", reply
    assert cell.idle_at - interrupted_at < 3.0
    # One line says what was cancelled, counting only what had not finished.
    note = "shoal: interrupted; cancelled 1 task still running or queued (2 of the 3 waited on had finished).\n"
    assert note in cell.text(), cell.summary()
    # The traceback is what IPython shows for a local interrupt: the cell's frame, none of shoal's.
    shown = _plain(reply["traceback"])
    assert f"Cell In[{cell.number()}], line 4" in shown and "shoal.get(finished + [ref])" in shown, shown
    assert "File " not in shown and "api.py" not in shown and "_core" not in shown, shown
    check = run_ok(
        manager_client,
        """
        try:
            shoal.get(ref, timeout=10)
        except shoal.exceptions.TaskCancelledError:
            print("task was cancelled")
        """,
    )
    assert "task was cancelled" in check.text(check.msg_id)
    again = run_ok(manager_client, "shoal.get(say.remote('works again'))")
    assert "works again" in again.text(again.msg_id)


def test_interrupted_remote_cell_shows_no_frames_of_shoal_or_the_magic(kernel):
    cell = Cell(kernel, "%%remote --no-push\nprint('remote started', flush=True)\nimport time\ntime.sleep(60)\n")
    _read_until(kernel, cell, lambda: "remote started" in cell.text(cell.msg_id), 15)
    _interrupt(kernel)
    reply = cell.wait(timeout_s=10)
    assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt", reply
    shown = _plain(reply["traceback"])
    assert "File " not in shown and "run_cell_magic" not in shown and "Cell In[" not in shown, shown
    assert "shoal: interrupted; cancelled 1 task still running or queued.\n" in cell.text(), cell.summary()


def _plain(traceback_lines: list[str]) -> str:
    """A traceback as IPython sent it, without its colours."""
    return re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(traceback_lines))


def test_remote_cell_error_names_the_cell_by_its_number(kernel):
    cell = run(kernel, "%%remote\na = 1\nb = a + missing_name\n")
    reply = cell.reply
    assert reply["status"] == "error" and reply["ename"] == "RayTaskError(NameError)", reply
    number = cell.number()
    assert reply["execution_count"] == number
    lines = _plain(reply["traceback"]).splitlines()
    assert lines[0].startswith(f"RayTaskError(NameError): Cell In[{number}] on the cluster (pid="), lines
    assert lines[1:3] == [f"  Cell In[{number}], line 2, in <module>", "    b = a + missing_name"], lines
    assert lines[-1] == "NameError: name 'missing_name' is not defined"
    assert not [line for line in lines if "remote_cell" in line or "_run_cell" in line or "execute_cell" in line]


def test_unfinished_lines_stream_and_carriage_returns_pass_through(kernel, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    cell = Cell(
        kernel,
        f"""
        %%remote --no-push
        print("step 1", end="", flush=True)
        wait_file({str(first)!r})
        print("\\rstep 2", end="", flush=True)
        wait_file({str(second)!r})
        print(" done")
        """,
    )
    try:
        # Each part shows while the worker waits for the test: nothing waits for a newline.
        _read_until(kernel, cell, lambda: cell.text(cell.msg_id) == "step 1", 10)
        first.touch()
        _read_until(kernel, cell, lambda: cell.text(cell.msg_id) == "step 1\rstep 2", 10)
        assert cell.idle_at is None
        second.touch()
        cell.wait()
    finally:
        first.touch()
        second.touch()
    assert cell.text(cell.msg_id) == "step 1\rstep 2 done\n", cell.summary()


def _status_lines(cell: Cell, msg_type: str, *readers: Cell) -> list[dict]:
    """Contents of `cell`'s messages of one type that carry a `%%remote --async` status line,
    among those read while it ran and while the `readers` (later cells) ran."""
    seen = [message for reader in (cell, *readers) for _, message in reader.messages]
    return [
        message["content"]
        for message in seen
        if message["msg_type"] == msg_type
        and message["parent_header"].get("msg_id") == cell.msg_id
        and "%%remote --async" in message["content"]["data"].get("text/plain", "")
    ]


def test_async_cell_keeps_its_status_and_its_error(kernel):
    failing = run_ok(kernel, "%%remote --async --out-ref failing_ref\nx = 1\nraise ValueError('bad async cell')\n")
    (shown,) = _status_lines(failing, "display_data")
    assert "running" in shown["data"]["text/plain"]
    # A later cell runs while the async one fails: the failure goes to the async cell's status.
    later = run_ok(kernel, "shoal.wait([failing_ref], timeout=10)\nprint('later cell')")
    _read_until(kernel, later, lambda: _status_lines(failing, "update_display_data", later), 10)
    (update,) = _status_lines(failing, "update_display_data", later)
    assert update["transient"]["display_id"] == shown["transient"]["display_id"]
    text = update["data"]["text/plain"]
    assert text.startswith("%%remote --async: failed after "), text
    assert "with ValueError; shoal.get(failing_ref) raises it" in text
    assert f"Cell In[{failing.number()}], line 2, in <module>" in text and "ValueError: bad async cell" in text
    assert later.text(later.msg_id) == "later cell\n"
    own = [message for _, message in later.messages if message["parent_header"].get("msg_id") == later.msg_id]
    assert not [message for message in own if "bad async cell" in str(message["content"])]

    done = run_ok(kernel, "%%remote --async\nasync_value = 6 * 7\nasync_value\n")
    value = run_ok(kernel, "print(shoal.get(_remote), async_value)")
    assert value.text(value.msg_id) == "42 42\n", value.summary()
    _read_until(kernel, value, lambda: _status_lines(done, "update_display_data", value), 10)
    (finished,) = _status_lines(done, "update_display_data", value)
    text = finished["data"]["text/plain"]
    assert re.match(r"%%remote --async: done in \d+\.\d s; wrote back async_value$", text), text


def _interrupt(client) -> None:
    _MANAGERS[id(client)].interrupt_kernel()


def _wait_for_text(client, cell: Cell, text: str, timeout_s: float) -> None:
    """Read iopub into `cell` until stream output (of any cell) contains `text`."""
    _read_until(client, cell, lambda: text in cell.text(), timeout_s)


def _read_until(client, cell: Cell, condition, timeout_s: float) -> None:
    """Read iopub into `cell` until `condition()` holds."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, cell.summary()
        try:
            cell.messages.append((time.monotonic(), client.get_iopub_msg(timeout=0.5)))
        except queue.Empty:
            pass


def test_second_interrupt_kills_the_worker_of_a_task_that_ignores_cancel(kernel, tmp_path):
    pid_file = tmp_path / "stubborn.pid"
    run_ok(
        kernel,
        f"""
        @shoal.remote(max_retries=0)
        def stubborn(path):
            import os, time
            with open(path, "w") as file:
                file.write(str(os.getpid()))
            print("stubborn started", flush=True)
            while True:  # swallows the cancellation (and any KeyboardInterrupt)
                try:
                    time.sleep(0.05)
                except BaseException:
                    pass

        stubborn_ref = stubborn.remote({str(pid_file)!r})
        """,
    )
    first = Cell(kernel, "shoal.get(stubborn_ref)")

    # The task may print before this cell starts (its output then belongs to the cell that
    # submitted it): wait for the file it writes, and for this cell to be running.
    def running() -> bool:
        started = any(
            message["msg_type"] == "execute_input" and message["parent_header"].get("msg_id") == first.msg_id
            for _, message in first.messages
        )
        return started and pid_file.exists() and bool(pid_file.read_text())

    _read_until(kernel, first, running, 15)
    time.sleep(0.5)  # let the get start blocking
    worker = psutil.Process(int(pid_file.read_text()))
    _interrupt(kernel)
    reply = first.wait(timeout_s=10)
    assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt", reply
    assert "cancelled 1 task still running or queued." in first.text(), first.summary()
    # The task ignored the cancel: its worker still runs it.
    assert _alive(worker)
    check = run_ok(kernel, "print('still running:', shoal.wait([stubborn_ref], timeout=1)[1] == [stubborn_ref])")
    assert "still running: True" in check.text(check.msg_id), check.summary()
    assert _alive(worker)

    second = Cell(kernel, "shoal.get(stubborn_ref)")
    time.sleep(0.5)  # let the get start blocking; an interrupt before it only ends the cell
    interrupted_at = time.monotonic()
    _interrupt(kernel)
    reply = second.wait(timeout_s=10)
    assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt", reply
    assert "killed the workers of 1 task still running after the first interrupt." in second.text(), second.summary()
    wait_for(lambda: not _alive(worker), 5, describe=lambda: f"worker {worker.pid} still alive")
    assert time.monotonic() - interrupted_at < 8
    # The kernel and the cluster stay usable.
    after = run_ok(
        kernel,
        """
        try:
            shoal.get(stubborn_ref, timeout=10)
        except (shoal.exceptions.TaskCancelledError, shoal.exceptions.WorkerCrashedError) as error:
            print("stubborn ended:", type(error).__name__)
        """,
    )
    assert "stubborn ended:" in after.text(after.msg_id), after.summary()
    again = run_ok(kernel, "shoal.get(say.remote('works after the kill'))")
    assert "works after the kill" in again.text(again.msg_id)


def test_sigkill_of_the_kernel_leaves_no_process(tmp_path):
    manager, client = start_kernel(str(tmp_path))
    try:
        run_ok(
            client,
            """
            import shoal
            shoal.init(num_cpus=1)
            shoal.get(shoal.remote(lambda: 1).remote())
            """,
            timeout_s=STARTUP_TIMEOUT_S,
        )
        kernel_process = psutil.Process(manager.provisioner.process.pid)
        children = kernel_process.children(recursive=True)
        assert children, "the cluster should run as the kernel's children"
        kernel_process.send_signal(signal.SIGKILL)
        kernel_process.wait(timeout=5)

        def all_gone():
            return not [child for child in children if _alive(child)]

        wait_for(all_gone, 10, describe=lambda: [(c.pid, c.name()) for c in children if _alive(c)])
    finally:
        client.stop_channels()
        try:
            manager.shutdown_kernel(now=True)
        except Exception:
            manager.cleanup_resources()


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_shoal_status_shows_the_cluster_widget_in_a_kernel(kernel):
    cell = run_ok(
        kernel,
        """
        view = get_ipython().run_line_magic("shoal", "status")
        print(type(view).__name__, "CPU" in repr(view))
        view.close()
        """,
    )
    text = "".join(content.get("text", "") for _, content in cell.streams(cell.msg_id))
    assert "ClusterView True" in text, cell.summary()
