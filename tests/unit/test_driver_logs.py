"""A driver's printing of worker output without a front end: prefixes, partial lines shown after
a short delay and continued as they come, `\r`, another task's line, what shutdown prints. A fake
clock; `flush_due` is called as the timer would."""

from __future__ import annotations

import io

import pytest
from shoal._core.driver_logs import DriverLogPrinter
from shoal._core.protocol import LogRecord


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def record(text: str, task: bytes = b"a", name: str = "work", pid: int = 7, stream: str = "stdout") -> LogRecord:
    return LogRecord(task_id=task, owner_id=None, task_name=name, pid=pid, stream=stream, text=text)


@pytest.fixture
def printed():
    """A printer writing to two StringIOs; yields (printer, clock, {"stdout": ..., "stderr": ...})."""
    outputs = {"stdout": io.StringIO(), "stderr": io.StringIO()}
    clock = Clock()
    printer = DriverLogPrinter(rename_stderr=lambda line: line.replace("<cell>", "Cell In[3]"),
                               streams=outputs.__getitem__, clock=clock)  # fmt: skip
    yield printer, clock, outputs
    printer.close()


def test_whole_lines_get_the_task_prefix_on_their_stream(printed):
    printer, _, outputs = printed
    printer.print_records([record("one\ntwo\n"), record("at <cell>: UserWarning\n", stream="stderr")])
    assert outputs["stdout"].getvalue() == "(work pid=7) one\n(work pid=7) two\n"
    assert outputs["stderr"].getvalue() == "(work pid=7) at Cell In[3]: UserWarning\n"


def test_a_partial_line_shows_after_the_delay_and_its_rest_follows_without_a_prefix(printed):
    printer, clock, outputs = printed
    printer.print_records([record("working")])
    clock.now += 0.1
    printer.print_records([record("...")])
    printer.flush_due()
    assert outputs["stdout"].getvalue() == "", "held: its line may still end soon"
    clock.now = 100.25  # 0.2 s and more since the line's first text
    printer.flush_due()
    assert outputs["stdout"].getvalue() == "(work pid=7) working..."
    printer.print_records([record(" still")])
    assert outputs["stdout"].getvalue() == "(work pid=7) working... still", "an open line continues at once"
    printer.print_records([record(" done\nnext")])
    assert outputs["stdout"].getvalue() == "(work pid=7) working... still done\n"
    clock.now += 0.25
    printer.flush_due()
    assert outputs["stdout"].getvalue().endswith("done\n(work pid=7) next")


def test_a_line_that_ends_before_the_delay_prints_once_with_one_prefix(printed):
    printer, clock, outputs = printed
    printer.print_records([record("half")])
    clock.now += 0.05
    printer.print_records([record(" and half\n")])
    clock.now += 1
    printer.flush_due()
    assert outputs["stdout"].getvalue() == "(work pid=7) half and half\n"


def test_another_tasks_line_ends_an_open_line_first(printed):
    printer, clock, outputs = printed
    printer.print_records([record("loading")])
    clock.now += 0.25
    printer.flush_due()
    printer.print_records([record("ready\n", task=b"b", name="other", pid=8)])
    printer.print_records([record(" done\n")])
    assert outputs["stdout"].getvalue() == "(work pid=7) loading\n(other pid=8) ready\n(work pid=7)  done\n"


def test_carriage_returns_repeat_the_prefix(printed):
    printer, clock, outputs = printed
    printer.print_records([record("step 1\rstep 2\r")])
    clock.now += 0.25
    printer.flush_due()
    printer.print_records([record("step 3\n")])
    assert outputs["stdout"].getvalue() == "(work pid=7) step 1\r(work pid=7) step 2\r(work pid=7) step 3\n"


def test_close_prints_what_is_held_and_ends_open_lines(printed):
    printer, clock, outputs = printed
    printer.print_records([record("shown"), record("held", task=b"b", stream="stderr")])
    clock.now += 0.25
    printer.flush_due()
    printer.print_records([record(" more")])
    printer.print_records([record("late", task=b"c")])
    printer.close()
    assert outputs["stdout"].getvalue() == "(work pid=7) shown more\n(work pid=7) late\n"
    assert outputs["stderr"].getvalue() == "(work pid=7) held\n"
    printer.print_records([record("after shutdown\n")])
    assert "after shutdown" not in outputs["stdout"].getvalue()
