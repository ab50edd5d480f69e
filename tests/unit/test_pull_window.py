"""Unit tests for the window of chunks a node asks for while pulling an object, and asking again."""

from __future__ import annotations

from shoal._core.pull_window import PullWindow


def _window(size: int = 10, attempts: int = 3) -> PullWindow:
    return PullWindow(size, chunk_bytes=3, window_chunks=2, timeout_s=5.0, attempts=attempts)


def test_chunks_are_asked_for_a_window_at_a_time_until_all_are_in_place():
    window = _window()
    assert window.to_request(0.0) == [(0, 3), (3, 3)]
    assert window.to_request(0.0) == []  # the window is full
    assert window.arrived(3, 3)
    assert window.to_request(1.0) == [(6, 3)]
    assert window.arrived(0, 3) and window.arrived(6, 3)
    assert window.to_request(1.0) == [(9, 1)]  # the last chunk is short
    assert not window.done
    assert window.arrived(9, 1) and window.done
    assert window.to_request(2.0) == []


def test_a_chunk_that_does_not_come_is_asked_for_again_and_its_late_twin_is_ignored():
    window = _window()
    window.to_request(0.0)
    assert window.arrived(0, 3)
    assert window.overdue(4.9) == []
    assert window.overdue(5.0) == [(3, 3)]  # lost on the way: ask again
    assert window.overdue(9.9) == []  # the clock restarts with each request
    assert window.arrived(3, 3)
    assert not window.arrived(3, 3)  # the first answer, arriving late: already in place
    assert window.received == 6
    assert not window.arrived(4, 3) and not window.arrived(6, 2)  # never asked for
    assert window.received == 6


def test_a_chunk_asked_for_attempts_times_without_answer_fails_the_pull():
    window = _window(attempts=2)
    window.to_request(0.0)
    assert window.overdue(5.0) == [(0, 3), (3, 3)]
    assert window.overdue(9.0) == []
    assert window.overdue(10.0) is None
