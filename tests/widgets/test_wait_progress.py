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
from shoal.widgets.progress import WaitProgress

from tests.waiting import wait_for

WIDGET = "application/vnd.jupyter.widget-view+json"

# ------------------------------------------------------------------ the widget itself


class FakeInfo:
    def __init__(self, total: int, num_returns: int | None = None, started_at: float = 100.0, kind: str = "get"):
        self.kind = kind
        self.total = total
        self.num_returns = total if num_returns is None else num_returns
        self.started_at = started_at
        self.ready = 0

    def ready_count(self) -> int:
        return self.ready


class Clock:
    def __init__(self, now: float = 100.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def no_refresher(monkeypatch, live):
    """Live views register with a list instead of the refresher thread (tests refresh them)."""
    registered: list = []
    monkeypatch.setattr(refresher, "register", registered.append)
    monkeypatch.setattr(
        refresher, "unregister", lambda target: registered.remove(target) if target in registered else None
    )
    return registered


class Shown:
    """What `display` was given: `outputs` (bundles, and handles for those with a display id)
    and `views` (the objects that displayed themselves, with the thread that displayed them)."""

    def __init__(self):
        self.outputs: list = []
        self.views: list = []


class Handle:
    def __init__(self, bundle):
        self.bundle, self.updates = bundle, []

    def update(self, bundle, raw=False):
        assert raw
        self.updates.append(bundle)


@pytest.fixture
def shown(monkeypatch):
    """`display` records what it is given instead of sending it to a kernel."""
    import IPython.display

    record = Shown()

    def display(obj, raw=False, display_id=None):
        if hasattr(obj, "_ipython_display_"):
            record.views.append((threading.current_thread().name, obj))
            return obj._ipython_display_()
        assert raw
        record.outputs.append(Handle(obj) if display_id else obj)
        return record.outputs[-1] if display_id else None

    monkeypatch.setattr(IPython.display, "display", display)
    return record


def test_bar_shows_ready_over_total_and_a_summary_when_done(no_refresher):
    info, clock = FakeInfo(total=8), Clock(102.4)
    widget = WaitProgress(info, "shoal.get", clock=clock)
    try:
        assert no_refresher == [widget], "kept current by the refresher"
        info.ready = 3
        assert widget._refresh(None) is True
        assert repr(widget) == "shoal.get: 3/8 ready, 2 s"
        assert "3/8 ready (38%), 2 s" in widget._body.value and "shoal-fill" in widget._body.value
        widget.finish("done", 8, 3.25)
        assert widget.stopped and no_refresher == []
        summary = widget.static_bundle()
        assert summary["text/plain"] == "shoal.get: 8/8 ready, finished after 3.2 s"
        assert "finished after 3.2 s" in summary["text/html"]
        info.ready, clock.now = 5, 200.0
        assert widget._refresh(None) is False and repr(widget) == summary["text/plain"], "stopped: not read again"
    finally:
        widget.close()


def test_wait_for_fewer_than_all_says_how_many_it_needs(no_refresher):
    info = FakeInfo(total=10, num_returns=4)
    widget = WaitProgress(info, "shoal.wait", clock=Clock(101.0))
    try:
        info.ready = 1
        widget._refresh(None)
        assert repr(widget) == "shoal.wait: 1/10 ready (waiting for 4), 1 s"
        widget.finish("interrupted", 1, 1.5)
        assert widget.static_bundle()["text/plain"] == "shoal.wait: 1/10 ready, interrupted after 1.5 s"
    finally:
        widget.close()


def test_remote_cell_bar_shows_elapsed_time_only(no_refresher):
    widget = WaitProgress(FakeInfo(total=1), "%%remote", elapsed_only=True, clock=Clock(104.2))
    try:
        assert repr(widget) == "%%remote: running for 4 s"
        assert "shoal-fill" not in widget._body.value, "no bar"
        widget.finish("error", 0, 4.5)
        assert widget.static_bundle()["text/plain"] == "%%remote: failed after 4.5 s"
        assert "#c62828" in widget.static_bundle()["text/html"]
    finally:
        widget.close()


def test_the_summary_follows_what_the_cell_printed(no_refresher, shown):
    """The bar's place is left empty and the summary is a new output, after the cell's others."""
    widget = WaitProgress(FakeInfo(total=2), "shoal.get", clock=Clock(101.0))
    widget._ipython_display_()
    (handle,) = shown.outputs
    assert WIDGET in handle.bundle and handle.bundle["text/plain"] == "shoal.get: 0/2 ready, 1 s"
    widget.finish("done", 2, 1.5)
    assert handle.updates == [{"text/plain": ""}]
    assert shown.outputs[1:] == [widget.static_bundle()]
    assert shown.outputs[1]["text/plain"] == "shoal.get: 2/2 ready, finished after 1.5 s"
    assert widget.comm is None, "the widget is closed: its summary took its place"
    widget.finish("error", 2, 9.0)  # a second end changes nothing
    assert len(shown.outputs) == 2 and handle.updates == [{"text/plain": ""}]


def test_a_bar_still_shown_when_shutdown_begins_keeps_its_last_state_in_place(no_refresher, shown):
    from shoal.widgets import live as live_views

    info = FakeInfo(total=3)
    widget = WaitProgress(info, "shoal.get", clock=Clock(102.0))
    widget._ipython_display_()
    (handle,) = shown.outputs
    info.ready = 1
    live_views._shutdown_begins()  # what shoal.shutdown() calls first
    assert handle.updates == [widget.static_bundle()]
    assert handle.updates[0]["text/plain"] == "shoal.get: 1/3 ready, 2 s\n(cluster shut down)"
    widget.finish("error", 1, 2.5)  # the get then raises: nothing more is shown
    assert len(shown.outputs) == 1 and len(handle.updates) == 1


# ------------------------------------------------------------------ when a bar is drawn


class FakeView:
    def __init__(self, info, label):
        self.info, self.label = info, label
        self.finished: tuple | None = None

    def finish(self, outcome, ready, elapsed_s):
        self.finished = (outcome, ready)


@pytest.fixture
def displays(no_refresher):
    """WaitDisplays with a fake view and a fake refresher (the test calls tick(now) itself)."""
    registered = no_refresher
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


def test_a_long_wait_is_shown_once_and_finalized(displays):
    info = FakeInfo(total=4)
    finish = displays.on_wait(info)
    displays.tick(100.9)
    assert displays.views == [], "not before the delay"
    displays.tick(101.0)
    (view,) = displays.views
    assert view.info is info and view.label is None
    displays.tick(102.0)
    assert len(displays.views) == 1, "shown once: the bar keeps itself current"
    info.ready = 3
    finish("interrupted")
    assert view.finished == ("interrupted", 3)
    displays.tick(103.0)
    assert len(displays.views) == 1 and displays.waiting == 0


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


def test_slow_get_shows_a_real_widget_from_the_refresher_thread(cluster, live, shown):
    displays = WaitDisplays(delay_s=0.3)
    displays.install()
    try:
        assert shoal.get([nap.remote(2.0), nap.remote(2.0), nap.remote(0)]) == [2.0, 2.0, 0]
        ((thread_name, view),) = shown.views
        assert thread_name == refresher.THREAD_NAME
        assert isinstance(view, WaitProgress) and view.total == 3 and view.stopped
        bar, summary = shown.outputs
        assert WIDGET in bar.bundle and bar.bundle["text/plain"].startswith("shoal.get: ")
        assert bar.updates == [{"text/plain": ""}], "the bar's place is left empty"
        assert summary == view.static_bundle() and summary["text/plain"].startswith("shoal.get: 3/3 ready, finished")
        assert view.comm is None, "the widget is closed once its summary is shown"
    finally:
        displays.close()
        refresher.stop_refresher()
    wait_for(lambda: refresher.current_thread() is None, 5)
