"""The progress bar a cell shows while it blocks in get/wait: the widget's state, the rules that
decide when it is drawn (fake clock, fake view), and the runtime's wait hook on a real cluster."""

from __future__ import annotations

import threading

import pytest
import shoal
from shoal._core import session
from shoal.kernel_ext import wait_display
from shoal.kernel_ext.wait_display import WaitDisplays
from shoal.util import output
from shoal.widgets import refresher
from shoal.widgets.progress import WaitProgress, WaitSummary

from tests.waiting import wait_for

# ------------------------------------------------------------------ the widget itself


def test_bar_shows_ready_over_total_and_a_summary_when_done():
    widget = WaitProgress(total=8, num_returns=8, description="shoal.get")
    try:
        widget.update(3, 2.4)
        assert (widget._bar.value, widget._bar.max) == (3, 8)
        assert widget._label.value == "3/8 ready, 2 s"
        summary = widget.summary("done", 8, 3.25)
        assert repr(summary) == "shoal.get: 8/8 ready, finished after 3.2 s"
        assert "finished" in summary._repr_html_()
    finally:
        widget.close()


def test_wait_for_fewer_than_all_says_how_many_it_needs():
    widget = WaitProgress(total=10, num_returns=4, description="shoal.wait")
    try:
        widget.update(1, 1.0)
        assert widget._label.value == "1/10 ready (waiting for 4), 1 s"
        assert "interrupted" in repr(widget.summary("interrupted", 1, 1.5))
    finally:
        widget.close()


def test_remote_cell_bar_shows_elapsed_time_only():
    widget = WaitProgress(total=1, num_returns=1, description="%%remote", elapsed_only=True)
    try:
        assert widget.children == (widget._label,)
        widget.update(0, 4.2)
        assert widget._label.value == "%%remote: running for 4 s"
        assert repr(widget.summary("error", 0, 4.5)) == "%%remote: failed after 4.5 s"
    finally:
        widget.close()


# ------------------------------------------------------------------ when a bar is drawn


class FakeInfo:
    def __init__(self, total: int, num_returns: int | None = None, started_at: float = 100.0, kind: str = "get"):
        self.kind = kind
        self.total = total
        self.num_returns = total if num_returns is None else num_returns
        self.started_at = started_at
        self.ready = 0

    def ready_count(self) -> int:
        return self.ready


class FakeView:
    def __init__(self, info, label):
        self.info, self.label = info, label
        self.updates: list[tuple[int, float]] = []
        self.finished: tuple | None = None

    def update(self, ready, elapsed_s):
        self.updates.append((ready, round(elapsed_s, 3)))

    def finish(self, outcome, ready, elapsed_s):
        self.finished = (outcome, ready)


@pytest.fixture
def displays(monkeypatch, live):
    """WaitDisplays with a fake view and a fake refresher (the test calls tick(now) itself)."""
    registered: list = []
    monkeypatch.setattr(refresher, "register", registered.append)
    monkeypatch.setattr(
        refresher, "unregister", lambda target: registered.remove(target) if target in registered else None
    )
    views: list[FakeView] = []

    def make_view(info, label):
        views.append(FakeView(info, label))
        return views[-1]

    instance = WaitDisplays(delay_s=1.0, min_refs=2, view_factory=make_view, linger_s=30.0)
    instance.registered = registered
    instance.views = views
    yield instance
    instance.close()


def test_a_wait_shorter_than_the_delay_draws_nothing(displays):
    info = FakeInfo(total=4)
    finish = displays.on_wait(info)
    assert finish is not None and displays.registered == [displays]
    displays.tick(100.5)
    finish("done")
    displays.tick(101.5)
    assert displays.views == [] and displays.waiting == 0


def test_a_long_wait_is_shown_updated_and_finalized(displays):
    info = FakeInfo(total=4)
    finish = displays.on_wait(info)
    displays.tick(101.0)
    (view,) = displays.views
    info.ready = 3
    displays.tick(102.0)
    assert view.updates == [(0, 1.0), (3, 2.0)]
    finish("interrupted")
    assert view.finished == ("interrupted", 3)
    displays.tick(103.0)
    assert view.updates[-1] == (3, 2.0), "a finished wait is no longer updated"


def test_gets_of_one_ref_are_ignored_unless_labelled(displays):
    assert displays.on_wait(FakeInfo(total=1)) is None
    assert displays.on_wait(FakeInfo(total=5, num_returns=1, kind="wait")) is None
    with wait_display.labelled("%%remote"):
        finish = displays.on_wait(FakeInfo(total=1))
    displays.tick(102.0)
    (view,) = displays.views
    assert view.label == "%%remote"
    finish("done")
    assert view.finished == ("done", 1)


def test_waits_off_the_main_thread_are_ignored(displays):
    results = []
    thread = threading.Thread(target=lambda: results.append(displays.on_wait(FakeInfo(total=4))))
    thread.start()
    thread.join()
    assert results == [None]


def test_nothing_is_drawn_when_non_interactive(displays, monkeypatch):
    monkeypatch.setenv("SHOAL_NONINTERACTIVE", "1")
    assert displays.on_wait(FakeInfo(total=4)) is None


def test_leaves_the_refresher_after_lingering_idle(displays):
    import time

    displays.on_wait(FakeInfo(total=4))("done")
    displays.tick(time.monotonic() + 1.0)
    assert displays.registered == [displays], "lingers, so a loop of gets keeps the thread"
    displays.tick(time.monotonic() + 31.0)
    assert displays.registered == []


def test_close_finalizes_shown_bars_and_stops_listening(displays):
    displays.install()
    assert displays.on_wait in session.hooks.wait_listeners
    displays.on_wait(FakeInfo(total=4))
    displays.tick(101.0)
    displays.close()
    assert displays.views[0].finished == ("closed", 0)
    assert displays.on_wait not in session.hooks.wait_listeners


# ------------------------------------------------------------------ the runtime's hook, for real


@shoal.remote
def nap(seconds):
    import time

    time.sleep(seconds)
    return seconds


@shoal.remote
def fail():
    raise ValueError("boom")


@pytest.fixture
def recorded():
    events: list = []

    def listener(info):
        events.append(("start", info.kind, info.total, info.num_returns))
        return lambda outcome: events.append(("end", outcome, info.ready_count()))

    output.add_wait_listener(listener)
    yield events
    output.remove_wait_listener(listener)
    assert listener not in session.hooks.wait_listeners


def test_wait_listener_sees_blocking_gets_and_waits_with_outcomes(cluster, recorded):
    refs = [nap.remote(0.05), nap.remote(0.1)]
    assert shoal.get(refs) == [0.05, 0.1]
    shoal.wait(refs, num_returns=2, timeout=0)  # a poll: not reported
    shoal.wait([nap.remote(0.05), nap.remote(5)], num_returns=1)
    with pytest.raises(shoal.exceptions.GetTimeoutError):
        shoal.get(nap.remote(5), timeout=0.05)
    with pytest.raises(ValueError):
        shoal.get(fail.remote())
    assert recorded == [
        ("start", "get", 2, 2),
        ("end", "done", 2),
        ("start", "wait", 2, 1),
        ("end", "done", 1),
        ("start", "get", 1, 1),
        ("end", "timeout", 0),
        ("start", "get", 1, 1),
        ("end", "error", 1),
    ]


def test_failing_listener_does_not_break_get(cluster):
    def broken(info):
        raise RuntimeError("listener bug")

    output.add_wait_listener(broken)
    try:
        assert shoal.get([nap.remote(0), nap.remote(0)]) == [0, 0]
    finally:
        output.remove_wait_listener(broken)


def test_slow_get_shows_a_real_widget_from_the_refresher_thread(cluster, live):
    shown = []

    class Handle:
        def __init__(self, widget):
            self.widget, self.updates = widget, []

        def update(self, value):
            self.updates.append(value)

    def fake_display(widget, display_id=False):
        assert threading.current_thread().name == refresher.THREAD_NAME
        shown.append(Handle(widget))
        return shown[-1]

    displays = WaitDisplays(
        delay_s=0.3, view_factory=lambda info, label: wait_display._NotebookView(info, label, fake_display)
    )
    displays.install()
    try:
        assert shoal.get([nap.remote(2.0), nap.remote(2.0), nap.remote(0)]) == [2.0, 2.0, 0]
        (handle,) = shown
        assert isinstance(handle.widget, WaitProgress) and handle.widget.total == 3
        (summary,) = handle.updates
        assert isinstance(summary, WaitSummary) and repr(summary).startswith("shoal.get: 3/3 ready, finished")
        assert handle.widget.comm is None, "the widget is closed once the summary replaced it"
    finally:
        displays.close()
        refresher.stop_refresher()
    wait_for(lambda: refresher.current_thread() is None, 5)
