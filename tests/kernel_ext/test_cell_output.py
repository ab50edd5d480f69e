"""CellOutputState: which cell each line goes to, prefixes, folding repeats and rate limits.

Pure state, so these run without a kernel or a cluster; `now` is given explicitly.
"""

from __future__ import annotations

from shoal.kernel_ext.cell_output import CellOutputState, StreamChunk


def record(task_id, text, *, pid=100, name="f", stream="stdout"):
    return {"task_id": task_id, "task_name": name, "pid": pid, "stream": stream, "text": text}


def text_of(chunks, cell=None):
    return "".join(chunk.text for chunk in chunks if cell is None or chunk.cell == cell)


def test_one_task_goes_to_its_cell_without_prefix():
    state = CellOutputState()
    state.submitted("t1", "cell-1")
    chunks = state.receive([record("t1", "a\nb\n")], now=0.0, current_cell="cell-2")
    assert chunks == [StreamChunk("cell-1", "stdout", "a\nb\n")]


def test_partial_lines_wait_for_their_newline():
    state = CellOutputState()
    state.submitted("t1", "cell-1")
    assert state.receive([record("t1", "hel")], now=0.0, current_cell=None) == []
    assert text_of(state.receive([record("t1", "lo\n")], now=0.1, current_cell=None)) == "hello\n"


def test_two_tasks_in_one_cell_are_prefixed():
    state = CellOutputState()
    state.submitted("t1", "cell-1")
    state.submitted("t2", "cell-1")
    chunks = state.receive(
        [record("t1", "x\n", pid=1, name="f"), record("t2", "y\n", pid=2, name="g")], now=0.0, current_cell=None
    )
    assert text_of(chunks) == "(f pid=1) x\n(g pid=2) y\n"


def test_unknown_tasks_go_to_the_current_cell_and_stay_there():
    state = CellOutputState()
    assert text_of(state.receive([record("nested", "a\n")], now=0.0, current_cell="cell-1"), "cell-1") == "a\n"
    assert text_of(state.receive([record("nested", "b\n")], now=0.1, current_cell="cell-2"), "cell-1") == "b\n"


def test_identical_lines_from_many_workers_are_folded():
    state = CellOutputState(dedup_window_s=1.0)
    for index in range(5):
        state.submitted(f"t{index}", "cell-1")
    records = [record(f"t{index}", "loaded model\n", pid=index) for index in range(5)]
    first = state.receive(records, now=0.0, current_cell=None)
    assert text_of(first).count("loaded model") == 1
    assert state.next_due() == 1.0
    assert state.flush_due(0.5) == []
    notes = state.flush_due(1.0)
    assert "loaded model (repeated ×4 across workers)" in text_of(notes)
    assert state.next_due() is None


def test_one_task_repeating_its_own_line_is_not_folded():
    state = CellOutputState()
    state.submitted("t1", "cell-1")
    assert text_of(state.receive([record("t1", "tick\ntick\ntick\n")], now=0.0, current_cell=None)) == "tick\n" * 3


def test_flood_is_rate_limited_with_a_note():
    state = CellOutputState(max_lines_per_window=10, rate_window_s=1.0)
    state.submitted("t1", "cell-1")
    flood = "".join(f"line {index}\n" for index in range(50))
    shown = state.receive([record("t1", flood)], now=0.0, current_cell=None)
    assert text_of(shown).count("\n") == 10
    assert state.next_due() == 1.0
    notes = state.flush_due(1.0)
    assert "… 40 more lines" in text_of(notes)
    # The next window shows lines again.
    assert text_of(state.receive([record("t1", "after\n")], now=1.5, current_cell=None)) == "after\n"


def test_unfinished_line_is_shown_after_the_delay_and_finished_as_it_comes():
    state = CellOutputState(partial_line_delay_s=0.2)
    state.submitted("t1", "cell-1")
    assert state.receive([record("t1", "loading")], now=0.0, current_cell=None) == []
    assert state.next_due() == 0.2
    assert state.flush_due(0.1) == []
    assert state.flush_due(0.2) == [StreamChunk("cell-1", "stdout", "loading")]
    assert state.next_due() is None
    # The rest of the line follows as it is: no second start, never folded.
    assert text_of(state.receive([record("t1", "... done\nnext\n")], now=0.3, current_cell=None)) == "... done\nnext\n"


def test_carriage_returns_pass_through_and_repeat_the_prefix():
    state = CellOutputState(partial_line_delay_s=0.2)
    state.submitted("t1", "cell-1")
    state.submitted("t2", "cell-1")  # two tasks: lines are prefixed
    state.receive([record("t1", "\r 10%", pid=1)], now=0.0, current_cell=None)
    assert text_of(state.flush_due(0.2)) == "(f pid=1) \r(f pid=1)  10%"
    state.receive([record("t1", "\r 50%\r", pid=1)], now=0.3, current_cell=None)
    # A trailing \r waits: a newline after it would undo it.
    assert text_of(state.flush_due(0.5)) == "\r(f pid=1)  50%"
    assert text_of(state.receive([record("t1", "\n", pid=1)], now=0.6, current_cell=None)) == "\n"


def test_another_tasks_line_ends_an_open_line_first():
    state = CellOutputState(partial_line_delay_s=0.2)
    state.submitted("t1", "cell-1")
    state.submitted("t2", "cell-1")
    state.receive([record("t1", "step 1", pid=1)], now=0.0, current_cell=None)
    state.flush_due(0.2)
    other = state.receive([record("t2", "other\n", pid=2)], now=0.3, current_cell=None)
    assert text_of(other) == "\n(f pid=2) other\n"
    # The first task's rest now starts a line of its own.
    rest = state.receive([record("t1", " done\n", pid=1)], now=0.4, current_cell=None)
    assert text_of(rest) == "(f pid=1)  done\n"


def test_flush_partial_lines_sends_what_is_held_at_once():
    state = CellOutputState(partial_line_delay_s=10.0)
    state.submitted("t1", "cell-1")
    state.receive([record("t1", "no newline yet")], now=0.0, current_cell=None)
    assert state.flush_partial_lines() == [StreamChunk("cell-1", "stdout", "no newline yet")]
    assert state.flush_partial_lines() == []
